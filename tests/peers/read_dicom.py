"""Reads DICOM files with pydicom, as a PACS or viewer would.

Usage: read_dicom.py IN.dcm OUT.raw [IN.dcm OUT.raw ...]

For each pair, writes the decoded pixels (8-bit, RGB or gray, row by row) to OUT.raw and
prints one JSON line with the attributes the tests check. Used by tests/convert_peers.rs.
"""
import json
import sys

import numpy as np
import pydicom


def main(args):
    for src, dst in zip(args[0::2], args[1::2]):
        ds = pydicom.dcmread(src)
        # pixel_array turns YBR_FULL_422 JPEG data into RGB, as a viewer shows it.
        pixels = ds.pixel_array.astype(np.uint8)
        with open(dst, "wb") as f:
            f.write(pixels.tobytes())
        print(json.dumps({
            "file": src,
            "transferSyntax": str(ds.file_meta.TransferSyntaxUID),
            "patientId": str(ds.PatientID),
            "patientName": str(ds.PatientName),
            "studyDescription": str(ds.StudyDescription),
            "photometric": str(ds.PhotometricInterpretation),
            "rows": int(ds.Rows),
            "columns": int(ds.Columns),
            "shape": list(pixels.shape),
        }, ensure_ascii=False))


if __name__ == "__main__":
    main(sys.argv[1:])
