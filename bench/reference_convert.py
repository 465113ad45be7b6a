#!/usr/bin/env python3
"""Baseline: what the reference Python gateway does with one photo.

usage: python3 bench/reference_convert.py INPUT OUTPUT.dcm

Pillow opens the photo, thumbnail((1024, 1024)) with Pillow's defaults
(BICUBIC, reducing_gap=2.0, so JPEGs are DCT-downscaled on decode), convert to
RGB, then pydicom writes an uncompressed RGB Secondary Capture file in
Implicit VR Little Endian.  Needs: pip install pillow pydicom
"""
import sys

import pydicom
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ImplicitVRLittleEndian, generate_uid

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


def convert(src, dst):
    img = Image.open(src)
    img.thumbnail((1024, 1024))
    img = img.convert("RGB")

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


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: reference_convert.py INPUT OUTPUT.dcm")
    convert(sys.argv[1], sys.argv[2])
