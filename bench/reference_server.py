#!/usr/bin/env python3
"""Benchmark peer: a plain FastAPI + Pillow + pydicom + pynetdicom gateway that
behaves like the reference system photo-pacs replaces, on the API we compare:

    POST /api/studies   multipart/form-data
        patientId (required), images[] (one or more files),
        patientName, birthDate (YYYY-MM-DD), sex, examDateTime (ISO 8601),
        examDescription (all optional)

Each image: Pillow open, thumbnail((1024, 1024)), convert("RGB"), one RGB
Secondary Capture dataset (Implicit VR Little Endian).  All of them go to the
PACS by C-STORE in one pynetdicom association (calling AE PHOTO_PACS).

usage:
    REF_PACS_HOST=127.0.0.1 REF_PACS_PORT=11112 REF_PACS_AET=STORESCP \
        python3 bench/reference_server.py --port 9471

Stock pynetdicom (3.0.4) never sets TCP_NODELAY on its sockets, so Nagle plus
the peer's delayed ACK can stall a C-STORE by about 40 ms on loopback.  That is
what the reference does and it is the default here; REF_TCP_NODELAY=1 sets
TCP_NODELAY on the association socket (through a pynetdicom private method).

needs: pip install -r bench/requirements-reference.txt
"""
import argparse
import io
import os
import socket
from datetime import datetime
from typing import List, Optional

import uvicorn
from fastapi import FastAPI, File, Form, UploadFile
from fastapi.responses import JSONResponse
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ImplicitVRLittleEndian, generate_uid
from pynetdicom import AE

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
CALLING_AET = "PHOTO_PACS"

if os.environ.get("REF_TCP_NODELAY") == "1":
    from pynetdicom import transport

    _create_socket = transport.AssociationSocket._create_socket

    def _create_socket_nodelay(self, address):
        sock = _create_socket(self, address)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    transport.AssociationSocket._create_socket = _create_socket_nodelay

app = FastAPI(title="reference photo gateway (benchmark peer)")


def error(status, code, message):
    return JSONResponse(status_code=status, content={"code": code, "message": message})


def to_dicom(data, index, study_uid, series_uid, patient, when, description):
    img = Image.open(io.BytesIO(data))
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
    ds.StudyDate = when.strftime("%Y%m%d")
    ds.StudyTime = when.strftime("%H%M%S")
    ds.Modality = "OT"
    ds.StudyDescription = description
    ds.PatientName = patient["name"]
    ds.PatientID = patient["id"]
    ds.PatientBirthDate = patient["birth_date"]
    ds.PatientSex = patient["sex"]
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.InstanceNumber = index
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
    return ds


# A sync endpoint: FastAPI runs it in its threadpool, as a simple gateway would.
@app.post("/api/studies")
def create_study(
    patientId: str = Form(...),
    images: List[UploadFile] = File(..., alias="images[]"),
    patientName: Optional[str] = Form(None),
    birthDate: Optional[str] = Form(None),
    sex: Optional[str] = Form(None),
    examDateTime: Optional[str] = Form(None),
    examDescription: Optional[str] = Form(None),
):
    if not patientId.strip():
        return error(400, "VALIDATION_ERROR", "patientId is required")
    try:
        birth = datetime.strptime(birthDate, "%Y-%m-%d").strftime("%Y%m%d") if birthDate else ""
        when = datetime.fromisoformat(examDateTime) if examDateTime else datetime.now()
    except ValueError as e:
        return error(400, "VALIDATION_ERROR", str(e))
    patient = {
        "id": patientId,
        "name": patientName or "",
        "birth_date": birth,
        "sex": (sex or "")[:1].upper(),
    }

    study_uid = generate_uid()
    series_uid = generate_uid()
    datasets = []
    for i, upload in enumerate(images, start=1):
        try:
            datasets.append(
                to_dicom(upload.file.read(), i, study_uid, series_uid, patient, when,
                         examDescription or "")
            )
        except Exception as e:  # Pillow could not read it
            return error(400, "INVALID_IMAGE", f"image {i}: {e}")

    ae = AE(ae_title=CALLING_AET)
    ae.add_requested_context(SECONDARY_CAPTURE, ImplicitVRLittleEndian)
    assoc = ae.associate(
        os.environ.get("REF_PACS_HOST", "127.0.0.1"),
        int(os.environ.get("REF_PACS_PORT", "11112")),
        ae_title=os.environ.get("REF_PACS_AET", "PACS"),
    )
    if not assoc.is_established:
        return error(502, "PACS_REJECTED", "association with the PACS failed")

    instances = []
    try:
        for i, ds in enumerate(datasets, start=1):
            status = assoc.send_c_store(ds)
            ok = status is not None and "Status" in status and status.Status in (
                0x0000, 0xB000, 0xB007, 0xB006)
            instances.append({
                "index": i,
                "sopInstanceUID": str(ds.SOPInstanceUID),
                "status": "success" if ok else "failed",
            })
    finally:
        assoc.release()

    stored = sum(x["status"] == "success" for x in instances)
    return {
        "status": "success" if stored == len(instances) else ("partial" if stored else "failed"),
        "studyInstanceUID": str(study_uid),
        "seriesInstanceUID": str(series_uid),
        "instances": instances,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("REF_PORT", "9471")))
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
