#!/usr/bin/env python3
"""Make one phone-like JPEG from a wallpaper photo.

usage: make_photo.py SOURCE OUTPUT WIDTH HEIGHT MODEL

The source is centre-cropped to the WIDTHxHEIGHT aspect ratio, resized with
Lanczos, given sensor-like grain, and saved as a baseline (non-progressive)
JPEG, quality 92, 4:2:0 chroma subsampling, with a small EXIF block (Make,
Model, Orientation=1, ...) as a phone camera would write.

Why the grain: an upscaled wallpaper is smoother than any camera picture and
compresses to a third of a real phone JPEG's size, which would flatter every
decoder. Gaussian noise of sigma 4 brings it to about 0.2 bytes per pixel
(2.4 MB at 12 MP), the low end of real phone photos.
"""
import os
import sys

import numpy as np
from PIL import Image, JpegImagePlugin

GRAIN_SIGMA = 4.0


def main():
    src, out, width, height, model = sys.argv[1:6]
    width, height = int(width), int(height)

    img = Image.open(src).convert("RGB")
    w, h = img.size
    # largest centred box with the target aspect ratio
    if w * height > h * width:
        cw, ch = h * width / height, h
    else:
        cw, ch = w, w * height / width
    left, top = (w - cw) / 2, (h - ch) / 2
    box = (left, top, left + cw, top + ch)
    img = img.resize((width, height), Image.Resampling.LANCZOS, box=box)
    rng = np.random.default_rng(20261128)
    pixels = np.asarray(img, dtype=np.float32)
    # Row by row keeps the float copy of a 48 MP picture out of memory.
    for y in range(pixels.shape[0]):
        pixels[y] += rng.normal(0.0, GRAIN_SIGMA, pixels[y].shape)
    img = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    del pixels

    exif = Image.Exif()
    exif[0x010F] = "BenchPhone"            # Make
    exif[0x0110] = model                   # Model
    exif[0x0112] = 1                       # Orientation: top-left (normal)
    exif[0x0131] = "bench/make-photos.sh"  # Software
    exif[0x0132] = "2024:01:01 12:00:00"   # DateTime
    exif[0x011A] = 72.0                    # XResolution
    exif[0x011B] = 72.0                    # YResolution
    exif[0x0128] = 2                       # ResolutionUnit: inch

    tmp = out + ".tmp"
    img.save(tmp, "JPEG", quality=92, subsampling=2, progressive=False,
             optimize=False, exif=exif.tobytes())

    # check what we wrote before putting it in place
    chk = Image.open(tmp)
    assert chk.size == (width, height), chk.size
    assert not chk.info.get("progressive"), "progressive JPEG"
    assert JpegImagePlugin.get_sampling(chk) == 2, "not 4:2:0"
    assert chk.getexif().get(0x0112) == 1, "no Orientation"
    os.replace(tmp, out)


if __name__ == "__main__":
    main()
