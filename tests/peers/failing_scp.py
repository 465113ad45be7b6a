"""A storage SCP (pynetdicom) that answers a failure status for chosen instances.

Usage: failing_scp.py PORT AET FAIL OUTDIR

FAIL is a comma-separated list of 1-based positions, in order of arrival, whose C-STORE
is answered with status A700 (out of resources); the others are stored in OUTDIR and
answered 0000. Listens on 127.0.0.1 only and prints "ready" once it accepts associations.
"""
import os
import sys

from pynetdicom import AE, StoragePresentationContexts, evt
from pynetdicom.sop_class import Verification


def main(port, aet, fail, outdir):
    failing = {int(n) for n in fail.split(",") if n}
    seen = {"count": 0}

    def on_store(event):
        seen["count"] += 1
        if seen["count"] in failing:
            return 0xA700
        ds = event.dataset
        ds.file_meta = event.file_meta
        ds.save_as(os.path.join(outdir, ds.SOPInstanceUID + ".dcm"), enforce_file_format=True)
        return 0x0000

    ae = AE(ae_title=aet)
    ae.supported_contexts = StoragePresentationContexts
    ae.add_supported_context(Verification)
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    print("ready", flush=True)
    try:
        sys.stdin.read()  # runs until the test closes our stdin or kills us
    finally:
        server.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4])
