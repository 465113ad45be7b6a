#!/usr/bin/env python3
"""Baseline: what the reference Python gateway does with one photo.

usage: python3 bench/reference_convert.py INPUT OUTPUT.dcm
       python3 bench/reference_convert.py --repeat N INPUT OUTPUT.dcm

Pillow opens the photo, thumbnail((1024, 1024)) with Pillow's defaults
(BICUBIC, reducing_gap=2.0), convert to RGB, then pydicom writes an uncompressed
RGB Secondary Capture file in Implicit VR Little Endian.

How much JPEG DCT scaling that gets: with reducing_gap=2.0, thumbnail() asks the
decoder for at least twice the target box, 2048x2048, and libjpeg may only scale
by 1/2, 1/4 or 1/8 while staying at or above that box.  A 12 MP photo
(4032x3024) halved would be 2016x1512, under 2048, so it is decoded at FULL
size; a 48 MP photo (8064x6048) is decoded at 1/2 (4032x3024).  Either way the
result is 1024 pixels on the long edge (1024x768 for a 4:3 photo).

With --repeat N the conversion runs N times inside one process after two warm-up
runs (imports done once) and one JSON line is printed: the output size, the size
the JPEG was decoded at, and the median milliseconds of decode + thumbnail and of
the whole conversion.  Without it, one conversion and nothing printed: what a
whole-process timing measures, Python's start-up and imports included.

Needs: pip install pillow pydicom
"""
import json
import statistics
import sys
import time

import pydicom
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ImplicitVRLittleEndian, generate_uid

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
BOX = (1024, 1024)
REDUCING_GAP = 2.0


def load(src):
    img = Image.open(src)
    img.thumbnail(BOX)
    return img.convert("RGB")


def decoded_size(src):
    """The size Pillow's JPEG draft mode decodes at for thumbnail(BOX)."""
    img = Image.open(src)
    if img.format != "JPEG":
        return img.size
    img.draft(None, (int(BOX[0] * REDUCING_GAP), int(BOX[1] * REDUCING_GAP)))
    return img.size


def write(img, dst):
    sop_uid = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SECONDARY_CAPTURE
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ImplicitVRLittleEndian

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = SECONDARY_CAPTURE
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = "BENCH001"
    ds.PatientName = "Bench^Photo"
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.Rows = img.height
    ds.Columns = img.width
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = img.tobytes()

    if int(pydicom.__version__.split(".")[0]) >= 3:
        ds.save_as(dst, enforce_file_format=True)
    else:  # pydicom 2.x
        ds.is_little_endian = True
        ds.is_implicit_VR = True
        ds.save_as(dst, write_like_original=False)


def convert(src, dst):
    img = load(src)
    write(img, dst)
    return img.size


def repeat(n, src, dst):
    decode_ms, total_ms = [], []
    size = None
    for i in range(n + 2):
        start = time.perf_counter()
        img = load(src)
        loaded = time.perf_counter()
        write(img, dst)
        done = time.perf_counter()
        size = img.size
        if i >= 2:
            decode_ms.append((loaded - start) * 1000)
            total_ms.append((done - start) * 1000)
    print(
        json.dumps(
            {
                "output": list(size),
                "decoded_at": list(decoded_size(src)),
                "decode_thumbnail_median_ms": round(statistics.median(decode_ms), 1),
                "total_median_ms": round(statistics.median(total_ms), 1),
                "runs": n,
                "pillow": Image.__version__,
                "pydicom": pydicom.__version__,
            }
        )
    )


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) == 4 and args[0] == "--repeat":
        repeat(int(args[1]), args[2], args[3])
    elif len(args) == 2:
        convert(args[0], args[1])
    else:
        sys.exit("usage: reference_convert.py [--repeat N] INPUT OUTPUT.dcm")
