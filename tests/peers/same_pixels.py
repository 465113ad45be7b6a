"""Decodes a DICOM object with pydicom and a JPEG file with Pillow, both to the samples the
JPEG stores (YCbCr or gray, before any colour conversion), and prints how far apart they are.

Usage: same_pixels.py OBJECT.dcm SOURCE.jpg   ->   {"maxDiff": N, "shape": [...]}

pydicom's own YBR-to-RGB conversion rounds differently from libjpeg's by at most 1, whatever
the JPEG, so "the same picture" is checked on the decoded samples themselves.
Used by tests/photographs.rs.
"""
import io
import json
import sys

import numpy as np
import pydicom
from PIL import Image


def main(obj, src):
    ds = pydicom.dcmread(obj)
    ds.pixel_array_options(as_rgb=False)
    a = ds.pixel_array.astype(np.int32)
    with open(src, "rb") as f:
        im = Image.open(io.BytesIO(f.read()))
        if im.mode != "L":
            im.draft("YCbCr", im.size)
        b = np.asarray(im).astype(np.int32)
    diff = int(np.abs(a - b).max()) if a.shape == b.shape else -1
    print(json.dumps({"maxDiff": diff, "shape": list(a.shape), "sourceShape": list(b.shape)}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
