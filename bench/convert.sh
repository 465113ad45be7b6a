#!/usr/bin/env bash
# Conversion benchmark: one phone photo to one DICOM file, side by side in one run on this
# machine, for a 12 MP (4032x3024) and a 48 MP (8064x6048) phone-like JPEG
# (bench/make-photos.sh):
#   ours       target/release/photo-pacs convert (LOCAL_RESIZE_MAX 1024, Implicit VR LE)
#   reference  bench/reference_convert.py (Pillow thumbnail((1024,1024)) + pydicom, the
#              reference's code path)
#   floor      djpeg -scale 1/N -outfile /dev/null: libjpeg-turbo decoding at the DCT scale
#              WE decode at for that size (1/4 at 12 MP, 1/8 at 48 MP), nothing else
# Each row says what it measures:
#   whole process  hyperfine median of $RUNS runs after 2 warm-ups, process start-up
#                  included (Python's start-up and imports are about 0.7 s of the reference's)
#   in process     median inside one process after 2 warm-ups: ours from
#                  `cargo bench --bench convert` (probe + convert, output kept in memory),
#                  the reference's from `reference_convert.py --repeat` (open + thumbnail +
#                  pydicom write to the file)
#   peak MiB       GNU time's maximum RSS, highest of 5 whole-process runs
#   output         the picture each tool produces (they differ: the reference resamples to
#                  1024 px, we stop at the DCT scale when it lands within 5% under the limit)
#   decoded at     the JPEG DCT scale the decode ran at
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
# The reference's pinned Pillow and pydicom (what the labels above were checked against).
python3 -c 'import PIL, pydicom, numpy' 2>/dev/null || python3 -m pip install -q -r bench/requirements-reference.txt numpy
bench/make-photos.sh target/bench-photos >/dev/null
cargo build --release --quiet
ours="$PWD/target/release/photo-pacs"
# The real interpreter: a pyenv shim would add about 0.1 s of bash to every Python run.
py="$(python3 -c 'import sys; print(sys.executable)')"

# In-process figures for ours, from the bench binary (one JSON line per photo and syntax).
inproc="$(cargo bench --quiet --bench convert -- --json 2>/dev/null | grep '"ts":"ImplicitVrLittleEndian"')"

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
field() { # JSON text, key -> value (lists as WxH)
    python3 -c 'import json,sys; v=json.loads(sys.argv[1])[sys.argv[2]]; print("x".join(map(str, v)) if isinstance(v, list) else v)' "$1" "$2"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == "" || b == "-") print "-"; else printf "%.2f", a / b }'; }
row() { printf '| %-14s | %-26s | %-9s | %-16s | %13s | %10s | %8s | %14s | %13s |\n' "$@"; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "runs per command: $runs; Pillow $("$py" -c 'import PIL; print(PIL.__version__)'), pydicom $("$py" -c 'import pydicom; print(pydicom.__version__)'), $(djpeg -version 2>&1 | head -n 1)"
echo
row photo tool output "decoded at" "whole proc ms" "in proc ms" "peak MiB" "ours/it whole" "ours/it in-p"
printf '|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n' ---------------- ---------------------------- ----------- ------------------ --------------- ------------ ---------- ---------------- ---------------
for photo in "$OLDPWD"/target/bench-photos/phone-12mp.jpg "$OLDPWD"/target/bench-photos/phone-48mp.jpg; do
    name=$(basename "$photo")
    ours_json=$(grep "\"photo\":\"$name\"" <<<"$inproc")
    [ -n "$ours_json" ] || { echo "no in-process figure for $name from cargo bench" >&2; exit 1; }
    scale=$(field "$ours_json" decoded_at)
    case "$scale" in
        1/[1248]) ;;
        *) echo "$name: we resample after the decode ($scale); no single djpeg scale is our floor" >&2; exit 1 ;;
    esac
    ref_json=$("$py" "$OLDPWD/bench/reference_convert.py" --repeat "$runs" "$photo" "$tmp/ref.dcm")
    cmd_ours=("$ours" convert --patient-id BENCH --out "$tmp/ours" "$photo")
    cmd_ref=("$py" "$OLDPWD/bench/reference_convert.py" "$photo" "$tmp/ref.dcm")
    cmd_floor=(djpeg -scale "$scale" -outfile /dev/null "$photo")
    hyperfine -N --style none --warmup 2 --runs "$runs" --export-json "$tmp/h.json" \
        "$(printf '%q ' "${cmd_ours[@]}")" "$(printf '%q ' "${cmd_ref[@]}")" "$(printf '%q ' "${cmd_floor[@]}")" >/dev/null
    read -r t_ours t_ref t_floor < <(median_ms "$tmp/h.json")
    m_ours=$(peak_rss_mib "${cmd_ours[@]}")
    m_ref=$(peak_rss_mib "${cmd_ref[@]}")
    m_floor=$(peak_rss_mib "${cmd_floor[@]}")
    # djpeg is cut off by head after the header (SIGPIPE): only the size is wanted.
    floor_size=$( (djpeg -scale "$scale" -pnm "$photo" 2>/dev/null || true) | head -c 32 | sed -n 2p | tr ' ' x)
    i_ours=$(field "$ours_json" total_median_ms)
    i_ref=$(field "$ref_json" total_median_ms)
    row "$name" "ours" "$(field "$ours_json" output)" "$scale" "$t_ours" "$i_ours" "$m_ours" "" ""
    src_w=$(field "$ours_json" source | cut -dx -f1)
    ref_w=$(field "$ref_json" decoded_at | cut -dx -f1)
    row "$name" "reference (Pillow+pydicom)" "$(field "$ref_json" output)" \
        "$(awk -v s="$src_w" -v d="$ref_w" 'BEGIN { if (s == d) print "full"; else printf "1/%d", s / d }')" \
        "$t_ref" "$i_ref" "$m_ref" "$(ratio "$t_ours" "$t_ref")" "$(ratio "$i_ours" "$i_ref")"
    row "$name" "floor: djpeg -scale $scale" "$floor_size" "$scale" "$t_floor" "-" "$m_floor" "$(ratio "$t_ours" "$t_floor")" "-"
done
echo
echo "whole proc: process start-up included; in proc: median inside one warm process (ours:"
echo "probe + convert in memory; reference: open + thumbnail + pydicom write). The floor only"
echo "decodes (no resize, no DICOM, output to /dev/null); djpeg's own start-up is about 1 ms."
echo "targets: ours <= 1/5 of reference (whole-process ratio <= 0.20), <= 2x the floor at our"
echo "own scale (ratio <= 2.00); peak RSS <= 40 MiB at 12 MP and <= 64 MiB at 48 MP"
