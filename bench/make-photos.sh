#!/usr/bin/env bash
# Make two phone-like test photos for the conversion benchmark.
#
#   bench/make-photos.sh [OUTDIR]      (default: target/bench-photos)
#
# Source: Debian bookworm package `mate-backgrounds` (1.26.0-1), file
#   /usr/share/backgrounds/mate/nature/Wood.jpg
# a real photograph (close-up of a wooden plank), 2560x1920, already 4:3 like
# a phone sensor, and the largest real photo among the candidates checked
# (gnome-backgrounds 43.1 only ships rendered/vector-style WebP art;
# lomiri-wallpapers only one 2.6 MB PNG artwork; mate-backgrounds' 5640x3172
# Elephants JPEG is a painting, not a photo).
#
# Outputs (skipped if they already exist):
#   phone-12mp.jpg  4032x3024
#   phone-48mp.jpg  8064x6048
# baseline JPEG, quality 92, 4:2:0, EXIF Make/Model/Orientation=1, with
# sensor-like grain so they are as hard to decode as real phone photos.
# Resized with Pillow's Lanczos filter (bench/make_photo.py).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
outdir="${1:-target/bench-photos}"
pkg=mate-backgrounds
src="${BENCH_PHOTO_SOURCE:-/usr/share/backgrounds/mate/nature/Wood.jpg}"

if [ ! -f "$src" ]; then
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null
    fi
fi
[ -f "$src" ] || { echo "source photo $src not found" >&2; exit 1; }

if ! python3 -c 'import PIL, numpy' 2>/dev/null; then
    python3 -m pip install -q pillow numpy
fi

mkdir -p "$outdir"
make_one() {
    local name="$1" w="$2" h="$3" model="$4"
    local out="$outdir/$name"
    if [ -e "$out" ]; then
        echo "exists:  $out"
    else
        python3 "$here/make_photo.py" "$src" "$out" "$w" "$h" "$model"
        echo "made:    $out"
    fi
}
make_one phone-12mp.jpg 4032 3024 "BP-12MP"
make_one phone-48mp.jpg 8064 6048 "BP-48MP"

for f in "$outdir/phone-12mp.jpg" "$outdir/phone-48mp.jpg"; do
    printf '%s\t%s bytes\n' "$(realpath "$f")" "$(stat -c %s "$f")"
done
