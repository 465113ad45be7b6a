#!/usr/bin/env bash
# The hostile-client suite (tests/hostile/hostile.py) against the release binary, as a
# benchmark: every attack of issue 14 with /healthz held to 1 s and peak RSS to 200 MB.
# Prints one line per attack (answer, peak RSS, slowest health answer) and fails on any
# attack not withstood. BIN= measures another build (an older release, for a before-and-
# after table; add REPORT=1 to print without failing).
#
#   bench/hostile.sh        BIN=/path/to/old/photo-pacs REPORT=1 bench/hostile.sh
#
# Run it on a quiet machine: the health timings are shared with whatever else runs.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${BIN:-}" ]; then cargo build --release --quiet; fi
bin="${BIN:-$PWD/target/release/photo-pacs}"
echo "binary $bin, $(nproc) cores" >&2
exec python3 tests/hostile/hostile.py --binary "$bin" --health-limit 1 ${REPORT:+--report}
