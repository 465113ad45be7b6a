#!/usr/bin/env python3
"""Copy a JPEG with its EXIF Orientation changed, nothing else touched.

usage: set_orientation.py INPUT OUTPUT ORIENTATION

The photos bench/make_photo.py writes carry an EXIF block with Orientation=1 in IFD0.
This rewrites the value of that entry in place (a SHORT, 1 to 8), so the scan data and
every other byte stay as they are: what a phone held sideways writes is the same picture
with Orientation 6. No exiftool or piexif needed. Fails if the file has no Orientation
entry to change.
"""
import struct
import sys


def app1_exif(data):
    """Offset of the TIFF header inside the first APP1 'Exif' segment."""
    if data[:2] != b"\xff\xd8":
        raise SystemExit("not a JPEG")
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise SystemExit("bad marker at %d" % pos)
        marker = data[pos + 1]
        if marker in (0xDA, 0xD9):  # start of scan, end of image: no EXIF before it
            break
        length = struct.unpack(">H", data[pos + 2:pos + 4])[0]
        if marker == 0xE1 and data[pos + 4:pos + 10] == b"Exif\x00\x00":
            return pos + 10
        pos += 2 + length
    raise SystemExit("no EXIF APP1 segment")


def main():
    src, out, orientation = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if not 1 <= orientation <= 8:
        raise SystemExit("orientation must be 1 to 8")
    data = bytearray(open(src, "rb").read())
    tiff = app1_exif(data)
    order = {b"II": "<", b"MM": ">"}.get(bytes(data[tiff:tiff + 2]))
    if order is None:
        raise SystemExit("bad TIFF byte order")
    ifd0 = tiff + struct.unpack(order + "I", data[tiff + 4:tiff + 8])[0]
    count = struct.unpack(order + "H", data[ifd0:ifd0 + 2])[0]
    for i in range(count):
        entry = ifd0 + 2 + 12 * i
        tag, typ, n = struct.unpack(order + "HHI", data[entry:entry + 8])
        if tag == 0x0112:
            if typ != 3 or n != 1:
                raise SystemExit("Orientation is not one SHORT")
            data[entry + 8:entry + 10] = struct.pack(order + "H", orientation)
            with open(out, "wb") as f:
                f.write(data)
            return
    raise SystemExit("no Orientation entry in IFD0")


if __name__ == "__main__":
    main()
