#!/usr/bin/env bash
# Conversion benchmark: one phone photo to one DICOM file, as whole processes, side by side
# in one run on this machine:
#   ours       target/release/photo-pacs convert (LOCAL_RESIZE_MAX 1024, Implicit VR LE)
#   reference  python3 bench/reference_convert.py (Pillow + pydicom, the reference's code path)
#   floor      djpeg -scale 1/4 -outfile /dev/null (libjpeg-turbo decoding at quarter size)
# for a 12 MP (4032x3024) and a 48 MP (8064x6048) phone-like JPEG (bench/make-photos.sh).
# Prints median wall time (hyperfine, 2 warm-ups, $RUNS runs) and peak RSS (GNU time,
# highest of 5 runs), and our ratios to the other two.
#
#   bench/convert.sh            RUNS=21 bench/convert.sh
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${RUNS:-15}"

need=()
command -v djpeg >/dev/null || need+=(libjpeg-turbo-progs)
command -v hyperfine >/dev/null || need+=(hyperfine)
[ -x /usr/bin/time ] || need+=(time)
if [ ${#need[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
python3 -c 'import PIL, pydicom, numpy' 2>/dev/null || python3 -m pip install -q pillow pydicom numpy
bench/make-photos.sh target/bench-photos >/dev/null
cargo build --release --quiet
ours="$PWD/target/release/photo-pacs"
# The real interpreter: a pyenv shim would add about 0.1 s of bash to every Python run.
py="$(python3 -c 'import sys; print(sys.executable)')"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"

median_ms() {
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"]; print(" ".join("%.1f" % (x["median"]*1000) for x in r))' "$1"
}
peak_rss_mib() {
    local max=0 kb
    for _ in 1 2 3 4 5; do
        kb=$(/usr/bin/time -f '%M' "$@" 2>&1 >/dev/null | tail -n 1)
        [ "$kb" -gt "$max" ] && max=$kb
    done
    awk -v k="$max" 'BEGIN { printf "%.1f", k / 1024 }'
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "runs per command: $runs"
echo
printf '| %-14s | %-10s | %9s | %9s | %10s |\n' photo tool "median ms" "peak MiB" "ours / it"
printf '|%s|%s|%s|%s|%s|\n' ---------------- ------------ ----------- ----------- ------------
for photo in "$OLDPWD"/target/bench-photos/phone-12mp.jpg "$OLDPWD"/target/bench-photos/phone-48mp.jpg; do
    name=$(basename "$photo")
    cmd_ours=("$ours" convert --patient-id BENCH --out "$tmp/ours" "$photo")
    cmd_ref=("$py" "$OLDPWD/bench/reference_convert.py" "$photo" "$tmp/ref.dcm")
    cmd_floor=(djpeg -scale 1/4 -outfile /dev/null "$photo")
    hyperfine -N --style none --warmup 2 --runs "$runs" --export-json "$tmp/h.json" \
        "$(printf '%q ' "${cmd_ours[@]}")" "$(printf '%q ' "${cmd_ref[@]}")" "$(printf '%q ' "${cmd_floor[@]}")" >/dev/null
    read -r t_ours t_ref t_floor < <(median_ms "$tmp/h.json")
    m_ours=$(peak_rss_mib "${cmd_ours[@]}")
    m_ref=$(peak_rss_mib "${cmd_ref[@]}")
    m_floor=$(peak_rss_mib "${cmd_floor[@]}")
    ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
    printf '| %-14s | %-10s | %9s | %9s | %10s |\n' "$name" ours "$t_ours" "$m_ours" ""
    printf '| %-14s | %-10s | %9s | %9s | %10s |\n' "$name" reference "$t_ref" "$m_ref" "$(ratio "$t_ours" "$t_ref")"
    printf '| %-14s | %-10s | %9s | %9s | %10s |\n' "$name" "djpeg 1/4" "$t_floor" "$m_floor" "$(ratio "$t_ours" "$t_floor")"
done
echo
echo "targets: ours <= 1/5 of reference (ratio <= 0.20), <= 2x the djpeg floor (ratio <= 2.00);"
echo "peak RSS <= 40 MiB at 12 MP and <= 64 MiB at 48 MP"
