"""A query SCP (pynetdicom) for the C-FIND tests.

Usage: find_scp.py PORT AET MODE [--tls-cert PEM --tls-key PEM [--tls-ca PEM]... [--peer-cert P]]

MODE is one of:
  worklist:N:K  Modality Worklist FIND: answers every query with N matches (pending
                statuses alternating FF00 and FF01), patient IDs P0..P{N-1}, modality XC,
                dated the first day of the asked range. After K matches it waits (up to
                60 s) for a C-CANCEL before going on: a client that cancels on seeing the
                K-th does so before the rest is sent, whatever the timing.
  studyroot     Study Root FIND only (Patient Root is not accepted): a STUDY level query
                for Patient ID A123 gets two studies of WANG^DA MING (UTF-8, 王^大明),
                any other ID nothing; any other level fails with A900.

With --tls-cert and --tls-key it speaks DICOM over TLS only (no plain associations), with
that server certificate. Client certificates are checked against the --tls-ca files (any
number) as --peer-cert says: "require" (the default: no certificate, no association),
"verify" (checked if one is sent) or "ignore" (not asked for), like dcmtk's -rc, -vc, -ic.
Without them it speaks plain DICOM.

Listens on 127.0.0.1 only and prints "ready" once it accepts associations. For each query
it prints "query <identifier as DICOM JSON>", and "cancelled after <n>" when a C-CANCEL
stops one. Runs until stdin closes.
"""
import argparse
import ssl
import sys
import time

from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import (
    ModalityWorklistInformationFind,
    StudyRootQueryRetrieveInformationModelFind,
    Verification,
)


def say(line):
    print(line, flush=True)


def worklist_handler(n, k):
    def on_find(event):
        query = event.identifier
        say("query " + query.to_json())
        first_day = "20240101"
        steps = query.get("ScheduledProcedureStepSequence")
        if steps and steps[0].get("ScheduledProcedureStepStartDate"):
            first_day = str(steps[0].ScheduledProcedureStepStartDate)[:8]
        # pynetdicom forgets a cancel once asked about it: remember it here.
        cancelled = False
        for i in range(n):
            cancelled = cancelled or event.is_cancelled
            if i == k:
                deadline = time.monotonic() + 60
                while not cancelled and time.monotonic() < deadline:
                    time.sleep(0.01)
                    cancelled = event.is_cancelled
            if cancelled:
                say(f"cancelled after {i}")
                yield 0xFE00, None
                return
            ds = Dataset()
            ds.SpecificCharacterSet = "ISO_IR 192"
            ds.PatientID = f"P{i}"
            ds.PatientName = f"PATIENT^{i}"
            ds.StudyInstanceUID = f"1.2.826.0.1.3680043.10.1.{i + 1}"
            ds.AccessionNumber = f"ACC{i}"
            step = Dataset()
            step.Modality = "XC"
            step.ScheduledStationAETitle = ""
            step.ScheduledProcedureStepStartDate = first_day
            step.ScheduledProcedureStepStartTime = f"{8 + i % 10:02d}0000"
            step.ScheduledProcedureStepID = f"SPS{i}"
            ds.ScheduledProcedureStepSequence = [step]
            yield (0xFF00 if i % 2 == 0 else 0xFF01), ds

    return on_find


def study_root_handler():
    def on_find(event):
        query = event.identifier
        say("query " + query.to_json())
        if query.get("QueryRetrieveLevel") != "STUDY":
            yield 0xA900, None
            return
        if query.get("PatientID") != "A123":
            return
        for uid in ("1.2.826.0.1.3680043.10.2.1", "1.2.826.0.1.3680043.10.2.2"):
            ds = Dataset()
            ds.SpecificCharacterSet = "ISO_IR 192"
            ds.QueryRetrieveLevel = "STUDY"
            ds.PatientID = "A123"
            ds.PatientName = "WANG^DA MING=王^大明"
            ds.PatientBirthDate = "19900115"
            ds.PatientSex = "M"
            ds.IssuerOfPatientID = ""
            ds.StudyInstanceUID = uid
            yield 0xFF00, ds

    return on_find


PEER_CERT = {"require": ssl.CERT_REQUIRED, "verify": ssl.CERT_OPTIONAL, "ignore": ssl.CERT_NONE}


def tls_context(cert, key, cas, peer_cert):
    """A server context as a hospital PACS would set one up: its own certificate, and
    client certificates checked against the CAs it was given."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certfile=cert, keyfile=key)
    for ca in cas:
        ctx.load_verify_locations(cafile=ca)
    ctx.verify_mode = PEER_CERT[peer_cert]
    return ctx


def main(port, aet, mode, ssl_context=None):
    ae = AE(ae_title=aet)
    ae.add_supported_context(Verification)
    if mode.startswith("worklist:"):
        _, n, k = mode.split(":")
        ae.add_supported_context(ModalityWorklistInformationFind)
        handler = worklist_handler(int(n), int(k))
    elif mode == "studyroot":
        ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
        handler = study_root_handler()
    else:
        raise SystemExit(f"unknown mode {mode}")
    server = ae.start_server(
        ("127.0.0.1", port),
        block=False,
        ssl_context=ssl_context,
        evt_handlers=[(evt.EVT_C_FIND, handler)],
    )
    say("ready")
    try:
        for _ in sys.stdin:
            pass
    finally:
        server.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="A pynetdicom query SCP for the C-FIND tests.")
    parser.add_argument("port", type=int)
    parser.add_argument("aet")
    parser.add_argument("mode")
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--tls-ca", action="append", default=[])
    parser.add_argument("--peer-cert", choices=sorted(PEER_CERT), default="require")
    args = parser.parse_args()
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    ctx = None
    if args.tls_cert:
        ctx = tls_context(args.tls_cert, args.tls_key, args.tls_ca, args.peer_cert)
    main(args.port, args.aet, args.mode, ctx)
