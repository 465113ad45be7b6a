#!/usr/bin/env bash
# Make ten different phone-like 12-megapixel JPEGs for the upload benchmark
# (bench/phone_shrink.mjs).
#
#   bench/make-phone-set.sh [OUTDIR]      (default: target/bench-photos/set)
#
# Sources: the photographs in Debian bookworm's `mate-backgrounds` (1.26.0-1),
# /usr/share/backgrounds/mate/nature/ (GreenMeadow, the smallest at 1280x1024,
# left out), each made 4032x3024 like a phone sensor by bench/make_photo.py:
# Lanczos, sensor-like grain, baseline JPEG quality 92, 4:2:0, EXIF with
# Orientation=1. Files that exist are kept.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
outdir="${1:-target/bench-photos/set}"
pkg=mate-backgrounds
srcdir=/usr/share/backgrounds/mate/nature
names=(Aqua Blinds Dune FreshFlower Garden LadyBird RainDrops Storm TwoWings Wood)

if [ ! -f "$srcdir/Wood.jpg" ]; then
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null
    fi
fi
if ! python3 -c 'import PIL, numpy' 2>/dev/null; then
    python3 -m pip install -q pillow numpy
fi

mkdir -p "$outdir"
i=0
for name in "${names[@]}"; do
    i=$((i + 1))
    out="$outdir/$(printf '%02d' "$i")-${name,,}.jpg"
    [ -e "$out" ] || python3 "$here/make_photo.py" "$srcdir/$name.jpg" "$out" 4032 3024 "BP-12MP"
    printf '%s\t%s bytes\n' "$out" "$(stat -c %s "$out")"
done
