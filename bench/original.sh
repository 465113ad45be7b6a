#!/usr/bin/env bash
# Originals benchmark (issue 16): side by side in one run on this machine, for a 12 MP
# (4032x3024) and a 48 MP (8064x6048) phone-like JPEG (bench/make-photos.sh).
#
# Part 1, the photo kept at full resolution (PHOTO_PACS_LOCAL_RESIZE_MAX=0, transfer syntax
# JPEG Baseline 1.2.840.10008.1.2.4.50), for three copies of each photo:
#   baseline     the photo as made (baseline, EXIF Orientation 1): we copy its segments
#                without decoding, metadata removed ("kept")
#   orientation6 the same bytes with EXIF Orientation 6 (bench/set_orientation.py): we
#                turn it upright with libjpeg-turbo's lossless transform ("transformed")
#   progressive  jpegtran -progressive -copy all: libjpeg-turbo re-codes it as baseline on
#                its DCT coefficients ("transformed")
# and for each copy:
#   ours         photo-pacs convert, whole process
#   img2dcm      dcmtk img2dcm -i JPEG -rc -k PatientID=BENCH (Secondary Capture, as ours):
#                the baseline the target is measured against. It never decodes either: it
#                wraps the JPEG as it is, so it neither turns an Orientation 6 photo upright
#                nor makes a progressive one baseline (it writes it under the retired JPEG
#                Progressive syntax 1.2.840.10008.1.2.4.55, which few PACS accept).
#   jpegtran     for the transformed copies only, the lossless transform alone (-rot 90
#                -perfect, or the plain progressive-to-baseline re-code; -copy none), output
#                to /dev/null: libjpeg-turbo's own cost of our transform, nothing else
#
# Part 2, the resized path (LOCAL_RESIZE_MAX 1024, Implicit VR Little Endian), baseline copy:
#   before       photo-pacs at BEFORE_REV (default 8c7472a, main before issue 16: pure-Rust
#                jpeg-decoder with DCT scaling)
#   after        photo-pacs of this tree (libjpeg-turbo's TurboJPEG, DCT scaling)
#   djpeg        djpeg -scale 1/N -outfile /dev/null, libjpeg-turbo decoding at the scale we
#                decode at (1/4 at 12 MP, 1/8 at 48 MP), nothing else
#
# Each row says:
#   median/min ms  hyperfine over $RUNS runs after 2 warm-ups, whole process (start-up
#                  included); the rows of one photo and copy run in one hyperfine call
#   cpu ms         hyperfine's mean user + system time: what the work costs, less swayed
#                  than wall time when others share the machine
#   ours/this      part 1: ours' median divided by this row's (target <= 1.50 for img2dcm)
#   /djpeg         part 2: this row's median divided by djpeg's (target <= 1.30 for after)
#   after/this     part 2: after's median divided by this row's
#   peak MiB       GNU time's maximum RSS, highest of 5 runs
#   output         what the command wrote: size in pixels, transfer syntax and for ours
#                  how the pixels got there: "as is" (the photo's scan data is in the object
#                  byte for byte), "lossless" (one lossy step in (0028,2112), other scan
#                  data: libjpeg-turbo's transform) or "re-encoded" (two lossy steps)
#   load           1-minute load average when that photo's hyperfine call started
#
#   bench/original.sh                  RUNS=21 bench/original.sh
#   BEFORE_BIN=/path/to/photo-pacs AFTER_BIN=/path/to/photo-pacs bench/original.sh
#
# Binaries: AFTER_BIN, else `cargo build --release` of this tree (into $CARGO_TARGET_DIR when
# set). BEFORE_BIN, else BEFORE_REV is built once from a temporary git worktree into
# target/bench-before (kept for the next run; the commit is in target/bench-before/rev).
# Memory: a 48 MP lossless transform needs more than the default 128 MB conversion budget,
# which refuses it; every `ours` row runs with PHOTO_PACS_CONVERT_MEMORY_MB=$CONVERT_MEMORY_MB
# (default 512) and the table notes which photos the default budget refuses.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${RUNS:-15}"
budget="${CONVERT_MEMORY_MB:-512}"
# shellcheck source=bench/lib.sh
source bench/lib.sh
tmp="${tmp:?bench/lib.sh makes the scratch folder}"

apt_need djpeg:libjpeg-turbo-progs jpegtran:libjpeg-turbo-progs hyperfine:hyperfine \
    /usr/bin/time:time img2dcm:dcmtk dcmdump:dcmtk
bench/make-photos.sh target/bench-photos >/dev/null

if [ -n "${AFTER_BIN:-}" ]; then
    after="$(realpath "$AFTER_BIN")"
    after_rev="(AFTER_BIN)"
else
    cargo build --release --quiet --bin photo-pacs
    after="$(realpath "${CARGO_TARGET_DIR:-target}/release/photo-pacs")"
    after_rev="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo '+dirty')"
fi
before_rev="${BEFORE_REV:-8c7472a}"
before_from="built here"
if [ -n "${BEFORE_BIN:-}" ]; then
    before="$(realpath "$BEFORE_BIN")"
    before_from="BEFORE_BIN, taken to be $before_rev"
else
    before_dir="$PWD/target/bench-before"
    before="$before_dir/release/photo-pacs"
    want="$(git rev-parse "$before_rev^{commit}")"
    if [ ! -x "$before" ] || [ "$(cat "$before_dir/rev" 2>/dev/null)" != "$want" ]; then
        echo "building $before_rev into $before_dir (once)" >&2
        git worktree add --detach -q "$tmp/before-src" "$want"
        if ! (cd "$tmp/before-src" && CARGO_TARGET_DIR="$before_dir" cargo build --release --quiet --bin photo-pacs); then
            git worktree remove --force "$tmp/before-src"
            exit 1
        fi
        git worktree remove --force "$tmp/before-src"
        echo "$want" >"$before_dir/rev"
    fi
fi

repo="$PWD"
photos="$repo/target/bench-photos"
mkdir -p "$tmp/in" "$tmp/run"
# photo-pacs reads ./data for its settings: run everything from an empty folder.
cd "$tmp/run"

# read_times HYPERFINE-JSON: sets med[i], min[i] and cpu[i] (mean user + system), in ms, for
# the i-th command.
read_times() {
    local r
    r=$(python3 -c 'import json,sys
r = json.load(open(sys.argv[1]))["results"]
for f in (lambda x: x["median"], lambda x: x["min"], lambda x: x["user"] + x["system"]):
    print(" ".join("%.1f" % (f(x) * 1000) for x in r))' "$1")
    read -r -a med <<<"$(sed -n 1p <<<"$r")"
    read -r -a min <<<"$(sed -n 2p <<<"$r")"
    read -r -a cpu <<<"$(sed -n 3p <<<"$r")"
}
peak_rss_mib() {
    local max=0 kb
    for _ in 1 2 3 4 5; do
        kb=$(/usr/bin/time -f '%M' "$@" 2>&1 >/dev/null | tail -n 1)
        [ "$kb" -gt "$max" ] && max=$kb
    done
    awk -v k="$max" 'BEGIN { printf "%.1f", k / 1024 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
mb() { awk -v b="$(stat -c %s "$1")" 'BEGIN { printf "%.2f", b / 1e6 }'; }
load1() { cut -d' ' -f1 /proc/loadavg; }
# describe DICOM-FILE [SOURCE-JPEG]: "WxH syntax", and with the source, how the pixels got
# there: "as is" when the source's scan data (first SOS to EOI) is in the object byte for
# byte, "lossless" when the object still holds one lossy step (0028,2112) but other scan
# data (a lossless transform), "re-encoded" when it holds two.
describe() {
    local d how=""
    d=$(dcmdump -q -Un +P 0002,0010 +P 0028,0010 +P 0028,0011 +P 0028,2112 "$1" | awk '
        /^\(0002,0010\)/ { ts = $3; gsub(/[=\[\]]/, "", ts) }
        /^\(0028,0010\)/ { rows = $3 }
        /^\(0028,0011\)/ { cols = $3 }
        /^\(0028,2112\)/ { steps = gsub(/\\/, "&", $3) + 1 }
        END {
            name["1.2.840.10008.1.2"] = "Implicit LE"
            name["1.2.840.10008.1.2.1"] = "Explicit LE"
            name["1.2.840.10008.1.2.4.50"] = "JPEG Baseline"
            name["1.2.840.10008.1.2.4.55"] = "JPEG Progressive (retired)"
            print cols "x" rows " " (ts in name ? name[ts] : ts) " " steps
        }')
    if [ -n "${2:-}" ]; then
        if [ "${d##* }" = 1 ]; then
            how=$(python3 -c 'import sys
src, dcm = (open(p, "rb").read() for p in sys.argv[1:3])
print(", as is" if src[src.index(b"\xff\xda"):] in dcm else ", lossless")' "$2" "$1")
        else
            how=", re-encoded"
        fi
    fi
    echo "${d% *}$how"
}
# Decoded size of a JPEG at a djpeg scale ("WxH"); djpeg is cut off by head (SIGPIPE).
scaled_size() { (djpeg -scale "$1" -pnm "$2" 2>/dev/null || true) | head -c 32 | sed -n 2p | tr ' ' x; }
# ours_env RESIZE SYNTAX CMD...: runs CMD with our settings (the binaries read PHOTO_PACS_*).
ours_env() {
    PHOTO_PACS_LOCAL_RESIZE_MAX="$1" PHOTO_PACS_LOCAL_TRANSFER_SYNTAX="$2" \
        PHOTO_PACS_CONVERT_MEMORY_MB="$budget" "${@:3}"
}
q() { printf '%q ' "$@"; }

row1() { printf '| %-20s | %-12s | %-18s | %-36s | %6s | %9s | %8s | %6s | %8s | %9s | %5s |\n' "$@"; }
row2() { printf '| %-20s | %-16s | %-26s | %6s | %9s | %8s | %6s | %8s | %7s | %10s | %5s |\n' "$@"; }
notes=()
summary=()

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/^Mem:/ { print $2 }') GiB"
echo "load at start: $(cut -d' ' -f1-3 /proc/loadavg); runs per command: ${runs} after 2 warm-ups"
echo "ours/after: $after ($after_rev); before: $before ($before_from)"
echo "$(djpeg -version 2>&1 | head -n 1); $(img2dcm --version 2>&1 | grep -m1 -o 'img2dcm v[^ ]*'); $(hyperfine --version)"
echo
echo "Part 1: full resolution, LOCAL_RESIZE_MAX=0, JPEG Baseline (.4.50)"
echo
row1 photo input command output "out MB" "median ms" "min ms" "cpu ms" "peak MiB" "ours/this" load
row1 "" "" "" "" "" "" "" "" "" "" "" | tr ' ' -
for photo in "$photos/phone-12mp.jpg" "$photos/phone-48mp.jpg"; do
    name=$(basename "$photo" .jpg)
    cp "$photo" "$tmp/in/$name.jpg"
    python3 "$repo/bench/set_orientation.py" "$photo" "$tmp/in/$name-orientation6.jpg" 6
    jpegtran -progressive -copy all -outfile "$tmp/in/$name-progressive.jpg" "$photo"
    for variant in baseline orientation6 progressive; do
        case $variant in
            baseline) in="$tmp/in/$name.jpg"; floor=() ;;
            orientation6)
                in="$tmp/in/$name-orientation6.jpg"
                floor=(jpegtran -rot 90 -perfect -copy none -outfile /dev/null "$in")
                floor_label="jpegtran -rot 90" ;;
            progressive)
                in="$tmp/in/$name-progressive.jpg"
                floor=(jpegtran -copy none -outfile /dev/null "$in")
                floor_label="jpegtran (re-code)" ;;
        esac
        stem=$(basename "$in" .jpg)
        cmd_ours=("$after" convert --patient-id BENCH --out "$tmp/ours" "$in")
        cmd_dcmtk=(img2dcm -q -i JPEG -rc -k PatientID=BENCH "$in" "$tmp/img2dcm.dcm")
        # Once with the default memory budget, to note a refusal; then the timed settings.
        if ! err=$(PHOTO_PACS_LOCAL_RESIZE_MAX=0 PHOTO_PACS_LOCAL_TRANSFER_SYNTAX=1.2.840.10008.1.2.4.50 \
            "${cmd_ours[@]}" 2>&1 >/dev/null); then
            notes+=("$stem: the default 128 MB conversion budget refuses it ($(grep -o 'needs about [0-9]* MB' <<<"$err" || echo "$err")); timed with PHOTO_PACS_CONVERT_MEMORY_MB=$budget")
        fi
        ours_env 0 1.2.840.10008.1.2.4.50 "${cmd_ours[@]}" >/dev/null
        cmds=("$(q "${cmd_ours[@]}")" "$(q "${cmd_dcmtk[@]}")")
        [ ${#floor[@]} -gt 0 ] && cmds+=("$(q "${floor[@]}")")
        load=$(load1)
        ours_env 0 1.2.840.10008.1.2.4.50 hyperfine -N --style none --warmup 2 --runs "$runs" \
            --export-json "$tmp/h.json" "${cmds[@]}" >/dev/null
        read_times "$tmp/h.json"
        m_ours=$(ours_env 0 1.2.840.10008.1.2.4.50 peak_rss_mib "${cmd_ours[@]}")
        m_dcmtk=$(peak_rss_mib "${cmd_dcmtk[@]}")
        out_ours="$tmp/ours/001_$stem.dcm"
        label="$name ($(mb "$in") MB)"
        row1 "$label" "$variant" "ours (photo-pacs)" "$(describe "$out_ours" "$in")" "$(mb "$out_ours")" \
            "${med[0]}" "${min[0]}" "${cpu[0]}" "$m_ours" "" "$load"
        r=$(ratio "${med[0]}" "${med[1]}")
        row1 "$label" "$variant" "img2dcm" "$(describe "$tmp/img2dcm.dcm")" "$(mb "$tmp/img2dcm.dcm")" \
            "${med[1]}" "${min[1]}" "${cpu[1]}" "$m_dcmtk" "$r" "$load"
        summary+=("$(awk -v r="$r" -v v="$variant" -v n="$name" 'BEGIN { printf "  %-12s %-12s ours/img2dcm %s  %s", n, v, r, (r <= 1.5 ? "met" : "MISSED") }')")
        if [ ${#floor[@]} -gt 0 ]; then
            m_floor=$(peak_rss_mib "${floor[@]}")
            row1 "$label" "$variant" "$floor_label" \
                "baseline JPEG to /dev/null" "-" "${med[2]}" "${min[2]}" "${cpu[2]}" "$m_floor" "$(ratio "${med[0]}" "${med[2]}")" "$load"
        fi
    done
done
echo
echo "Part 2: resized, LOCAL_RESIZE_MAX=1024, Implicit VR Little Endian (baseline copy)"
echo
row2 photo command output "out MB" "median ms" "min ms" "cpu ms" "peak MiB" "/djpeg" "after/this" load
row2 "" "" "" "" "" "" "" "" "" "" "" | tr ' ' -
for photo in "$photos/phone-12mp.jpg" "$photos/phone-48mp.jpg"; do
    name=$(basename "$photo" .jpg)
    case $name in *12mp) scale=1/4 ;; *) scale=1/8 ;; esac
    cmd_before=("$before" convert --patient-id BENCH --out "$tmp/before" "$photo")
    cmd_after=("$after" convert --patient-id BENCH --out "$tmp/after" "$photo")
    cmd_floor=(djpeg -scale "$scale" -outfile /dev/null "$photo")
    ours_env 1024 1.2.840.10008.1.2 "${cmd_before[@]}" >/dev/null
    ours_env 1024 1.2.840.10008.1.2 "${cmd_after[@]}" >/dev/null
    load=$(load1)
    ours_env 1024 1.2.840.10008.1.2 hyperfine -N --style none --warmup 2 --runs "$runs" \
        --export-json "$tmp/h.json" "$(q "${cmd_before[@]}")" "$(q "${cmd_after[@]}")" "$(q "${cmd_floor[@]}")" >/dev/null
    read_times "$tmp/h.json"
    m_before=$(ours_env 1024 1.2.840.10008.1.2 peak_rss_mib "${cmd_before[@]}")
    m_after=$(ours_env 1024 1.2.840.10008.1.2 peak_rss_mib "${cmd_after[@]}")
    m_floor=$(peak_rss_mib "${cmd_floor[@]}")
    label="$name ($(mb "$photo") MB)"
    d_before="$(describe "$tmp/before/001_$name.dcm")"
    d_after="$(describe "$tmp/after/001_$name.dcm")"
    floor_size=$(scaled_size "$scale" "$photo")
    [ "${d_after%% *}" = "$floor_size" ] || notes+=("$name: ours wrote ${d_after%% *}, djpeg -scale $scale decodes $floor_size: the floor is not our decode")
    r_after=$(ratio "${med[1]}" "${med[2]}")
    row2 "$label" "before ($before_rev)" "$d_before" "$(mb "$tmp/before/001_$name.dcm")" "${med[0]}" "${min[0]}" "${cpu[0]}" "$m_before" \
        "$(ratio "${med[0]}" "${med[2]}")" "$(ratio "${med[1]}" "${med[0]}")" "$load"
    row2 "$label" "after ($after_rev)" "$d_after" "$(mb "$tmp/after/001_$name.dcm")" "${med[1]}" "${min[1]}" "${cpu[1]}" "$m_after" \
        "$r_after" "" "$load"
    row2 "$label" "djpeg -scale $scale" "$floor_size RGB to /dev/null" "-" "${med[2]}" "${min[2]}" "${cpu[2]}" "$m_floor" "1.00" "$r_after" "$load"
    summary+=("$(awk -v r="$r_after" -v n="$name" 'BEGIN { printf "  %-12s resized 1024 after/djpeg  %s  %s", n, r, (r <= 1.3 ? "met" : "MISSED") }')")
done
echo
echo "median/min: whole process, hyperfine -N over $runs runs after 2 warm-ups; cpu: mean"
echo "user + system time of those runs; peak: GNU time's maximum RSS, highest of 5 runs."
echo "ours, before, after and img2dcm write a DICOM file; jpegtran and djpeg write to /dev/null."
echo "img2dcm wraps any JPEG as it is: it does not turn an Orientation 6 photo upright, and it"
echo "puts a progressive one under the retired JPEG Progressive syntax, so in those rows it does"
echo "less than ours (jpegtran is the like-for-like floor)."
echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "targets: part 1 ours <= 1.5x img2dcm's median; part 2 after <= 1.3x djpeg's median"
printf '%s\n' "${summary[@]}"
[ ${#notes[@]} -eq 0 ] || { echo "notes:"; printf '  %s\n' "${notes[@]}"; }
