#!/usr/bin/env bash
# Load on loopback against the release binary with the mock backend and default limits:
# 20 clients upload a 12 MP phone photo (bench/make-photos.sh) in a loop for 2 minutes,
# while 200 slow-loris connections send request headers one byte every 10 s
# (bench/load.py). Prints one JSON report: errors, p50/p99 latency, peak RSS, drops. Fails
# on any failed upload, a slow connection dropped late or never, a file left behind, or a
# panic or error line in the gateway's log.
#
#   bench/load.sh        CLIENTS=20 DURATION=120 SLOW=200 SLOW_INTERVAL=10 bench/load.sh
#
# Run it on a quiet machine: latency is shared with whatever else runs.
set -euo pipefail
cd "$(dirname "$0")/.."
clients="${CLIENTS:-20}"
seconds="${DURATION:-120}"
slow="${SLOW:-200}"
interval="${SLOW_INTERVAL:-10}"
header_timeout="${PHOTO_PACS_HEADER_TIMEOUT_S:-30}"

bench/make-photos.sh target/bench-photos >/dev/null
# BIN: another build to measure (an older release, for a before-and-after figure).
if [ -z "${BIN:-}" ]; then cargo build --release --quiet; fi
bin="${BIN:-$PWD/target/release/photo-pacs}"
photo="$PWD/target/bench-photos/phone-12mp.jpg"

# The client side holds 200+ sockets; the gateway's default connection limit is 256.
ulimit -n 4096
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
tmp="$(mktemp -d)"
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
(cd "$tmp" && exec env PHOTO_PACS_LISTEN="127.0.0.1:$port" PHOTO_PACS_HEADER_TIMEOUT_S="$header_timeout" \
    "$bin" 2>"$tmp/gateway.log") &
pid=$!
for i in $(seq 100); do
    (echo >/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break
    [ "$i" = 100 ] && { echo "the gateway did not start" >&2; cat "$tmp/gateway.log" >&2; exit 1; }
    sleep 0.1
done
echo "gateway pid $pid on 127.0.0.1:$port, $(nproc) cores, photo $(stat -c %s "$photo") bytes" >&2
status=0
python3 bench/load.py --port "$port" --pid "$pid" --photo "$photo" --clients "$clients" \
    --seconds "$seconds" --slow "$slow" --slow-interval "$interval" --header-timeout "$header_timeout" || status=$?
# Mock delivery succeeds, so no photo and no DICOM object may stay behind. (A stored study
# keeps its small record and state files in the outbox, without its objects.)
left=$( { find "$tmp/data/uploads" -type f; find "$tmp/data/dicom" -type f -name '*.dcm'; } 2>/dev/null | wc -l)
echo "photos and DICOM objects left in data/uploads and data/dicom: $left" >&2
# A panic, or a line the gateway logged at error level, fails the run: under this load every
# request is one the gateway should handle.
bad_lines=$(grep -ciE "panic|error" "$tmp/gateway.log" || true)
echo "gateway log lines with panic or error: $bad_lines" >&2
if [ "$bad_lines" != 0 ]; then
    grep -iE "panic|error" "$tmp/gateway.log" | head -n 20 >&2
    status=1
fi
[ "$left" = 0 ] || status=1
exit "$status"
