#!/usr/bin/env python3
"""Make the real photos the phone-shrinking browser test sends.

usage: phone_photos.py OUTDIR

From the photographs of Debian's mate-backgrounds (/usr/share/backgrounds/mate/nature):
- phone-1.jpg .. phone-3.jpg: 4032x3024 phone-like JPEGs (bench/make_photo.py: Lanczos,
  sensor grain, quality 92, 4:2:0, EXIF Orientation 1) of Wood, Garden and LadyBird;
- turned-1.jpg .. turned-8.jpg: TwoWings (2560x1600, larger than the phone's 2048 long
  edge so the page shrinks them) stored the way a camera held in each of the 8 EXIF
  orientations stores it, with that Orientation: each shows the same upright picture.
Existing files are kept.
"""
import os
import subprocess
import sys

from PIL import Image

SOURCE = "/usr/share/backgrounds/mate/nature"
HERE = os.path.dirname(os.path.abspath(__file__))
MAKE_PHOTO = os.path.join(HERE, "..", "..", "bench", "make_photo.py")

# What a viewer does to the stored pixels for each orientation (Pillow's exif_transpose);
# the camera stored the inverse of it. 6 and 8 are each other's inverse, the rest their own.
T = Image.Transpose
SHOW = {2: T.FLIP_LEFT_RIGHT, 3: T.ROTATE_180, 4: T.FLIP_TOP_BOTTOM, 5: T.TRANSPOSE,
        6: T.ROTATE_270, 7: T.TRANSVERSE, 8: T.ROTATE_90}
STORE = {**SHOW, 6: T.ROTATE_90, 8: T.ROTATE_270}


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for i, name in enumerate(["Wood", "Garden", "LadyBird"], 1):
        dest = os.path.join(out, f"phone-{i}.jpg")
        if not os.path.exists(dest):
            subprocess.run([sys.executable, MAKE_PHOTO, f"{SOURCE}/{name}.jpg", dest,
                            "4032", "3024", "BP-12MP"], check=True)
    upright = Image.open(f"{SOURCE}/TwoWings.jpg").convert("RGB")
    for k in range(1, 9):
        dest = os.path.join(out, f"turned-{k}.jpg")
        if os.path.exists(dest):
            continue
        stored = upright if k == 1 else upright.transpose(STORE[k])
        exif = Image.Exif()
        exif[0x0112] = k
        stored.save(dest + ".tmp", "JPEG", quality=92, subsampling=2, exif=exif.tobytes())
        # The check a viewer would make: turned back, it is the upright picture.
        back = Image.open(dest + ".tmp")
        shown = back if k == 1 else back.transpose(SHOW[k])
        assert shown.size == upright.size, (k, shown.size)
        os.replace(dest + ".tmp", dest)


if __name__ == "__main__":
    main()
