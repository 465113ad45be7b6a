#!/usr/bin/env bash
# End to end, one run: POST /api/studies with 1 and with 10 phone photos of 12 MP
# (bench/make-photos.sh) to our gateway and to the Python reference peer
# (bench/reference_server.py: FastAPI + Pillow + pydicom + pynetdicom), each converting and
# sending by C-STORE in one association to dcmtk's storescp with Nagle off (TCP_NODELAY=1),
# all on loopback. Wall time from request to response (curl time_total), median of $RUNS
# runs after one warm-up of each size; every run checks HTTP 200 and the files received.
#
# Nagle is off on every side by default: storescp (TCP_NODELAY=1), our gateway (always)
# and the reference's pynetdicom socket (REF_TCP_NODELAY=1). Stock pynetdicom leaves Nagle
# on, which costs about 40 ms per C-STORE on loopback; REF_TCP_NODELAY=0 measures that.
# The setting is printed with the figures.
#
#   bench/e2e.sh            RUNS=9 bench/e2e.sh            REF_TCP_NODELAY=0 bench/e2e.sh
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${RUNS:-5}"
ref_nodelay="${REF_TCP_NODELAY:-1}"
case "$ref_nodelay" in 0 | 1) ;; *) echo "REF_TCP_NODELAY must be 0 or 1" >&2; exit 2 ;; esac

# shellcheck source=bench/lib.sh
source bench/lib.sh
apt_need "/usr/bin/storescp:dcmtk" "cc:gcc"
python3 -c 'import fastapi, uvicorn, multipart, PIL, pydicom, pynetdicom' 2>/dev/null ||
    python3 -m pip install -q -r bench/requirements-reference.txt
bench/make-photos.sh target/bench-photos >/dev/null
cargo build --release --quiet
ours="$PWD/target/release/photo-pacs"
photo="$PWD/target/bench-photos/phone-12mp.jpg"
shim="$(loopback_shim)"


pacs_port=$(free_port)
out=$(mktemp -d -p /dev/shm)
TCP_NODELAY=1 LD_PRELOAD="$shim" /usr/bin/storescp -aet STORESCP -od "$out" "$pacs_port" >"$tmp/storescp.log" 2>&1 &
pids+=($!)

ours_port=$(free_port)
mkdir "$tmp/ours"
(cd "$tmp/ours" && exec env PHOTO_PACS_LISTEN="127.0.0.1:$ours_port" PHOTO_PACS_PACS_BACKEND=cstore \
    PHOTO_PACS_PACS_HOST=127.0.0.1 PHOTO_PACS_PACS_PORT="$pacs_port" PHOTO_PACS_PACS_CALLED_AET=STORESCP \
    "$ours" 2>"$tmp/ours.log") &
pids+=($!)

ref_port=$(free_port)
REF_TCP_NODELAY="$ref_nodelay" REF_PACS_HOST=127.0.0.1 REF_PACS_PORT="$pacs_port" REF_PACS_AET=STORESCP \
    python3 bench/reference_server.py --port "$ref_port" >"$tmp/ref.log" 2>&1 &
pids+=($!)
for port in "$ours_port" "$ref_port"; do
    for i in $(seq 150); do
        (echo >/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break
        [ "$i" = 150 ] && { echo "a server on $port did not start" >&2; cat "$tmp/ours.log" "$tmp/ref.log" >&2; exit 1; }
        sleep 0.1
    done
done

post() { # port, number of photos -> "http_code time_total"
    local args=() i
    for ((i = 0; i < $2; i++)); do args+=(-F "images[]=@$photo"); done
    curl -s -o "$tmp/resp.json" -w '%{http_code} %{time_total}\n' \
        -F patientId=BENCH001 -F patientName='Bench^Photo' -F birthDate=1980-01-01 -F sex=F \
        "${args[@]}" "http://127.0.0.1:$1/api/studies"
}

median_run() { # port, photos -> median seconds
    local port=$1 n=$2 times=() r code t stored
    post "$port" "$n" >/dev/null
    for ((r = 0; r < runs; r++)); do
        find "$out" -type f -delete
        read -r code t < <(post "$port" "$n")
        stored=$(find "$out" -type f | wc -l)
        if [ "$code" != 200 ] || [ "$stored" != "$n" ]; then
            echo "run failed on port $port: HTTP $code, $stored of $n stored" >&2
            cat "$tmp/resp.json" "$tmp/ours.log" "$tmp/ref.log" >&2
            exit 1
        fi
        times+=("$t")
    done
    printf '%s\n' "${times[@]}" | sort -n | awk '{ t[NR] = $1 } END { printf "%.3f", t[int((NR + 1) / 2)] }'
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "runs per cell: $runs; photo: $(stat -c %s "$photo") bytes, 4032x3024"
echo "Nagle: storescp TCP_NODELAY=1 (off); ours TCP_NODELAY (off); reference REF_TCP_NODELAY=$ref_nodelay ($([ "$ref_nodelay" = 1 ] && echo off || echo "on, stock pynetdicom"))"
echo
printf '| %-8s | %10s | %13s | %14s |\n' photos "ours s" "reference s" "reference / ours"
printf '|%s|%s|%s|%s|\n' ---------- ------------ --------------- ------------------
for n in 1 10; do
    t_ours=$(median_run "$ours_port" "$n")
    t_ref=$(median_run "$ref_port" "$n")
    printf '| %-8s | %10s | %13s | %14s |\n' "$n" "$t_ours" "$t_ref" \
        "$(awk -v a="$t_ref" -v b="$t_ours" 'BEGIN { printf "%.1fx", a / b }')"
done
echo
echo "target: reference / ours >= 5x for 10 photos"
