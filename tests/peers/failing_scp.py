"""A storage SCP (pynetdicom) that answers a failure status for chosen instances.

Usage: failing_scp.py PORT AET FAIL OUTDIR [STATUS]

FAIL is a comma-separated list of 1-based positions, in order of arrival, whose C-STORE
is answered with STATUS (hex, default A700: out of resources), or "all"; the others are
stored in OUTDIR and answered 0000. Listens on 127.0.0.1 only and prints "ready" once it
accepts associations. A line "fixed" on stdin stops the failures (the PACS was repaired);
the SCP runs until stdin closes.
"""
import os
import sys

from pynetdicom import AE, StoragePresentationContexts, evt
from pynetdicom.sop_class import Verification


def main(port, aet, fail, outdir, status):
    every = fail == "all"
    failing = set() if every else {int(n) for n in fail.split(",") if n}
    seen = {"count": 0, "fixed": False}

    def on_store(event):
        seen["count"] += 1
        if not seen["fixed"] and (every or seen["count"] in failing):
            return status
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
        # Runs until the test closes our stdin or kills us.
        for line in sys.stdin:
            if line.strip() == "fixed":
                seen["fixed"] = True
                print("fixed", flush=True)
    finally:
        server.shutdown()


if __name__ == "__main__":
    code = int(sys.argv[5], 16) if len(sys.argv) > 5 else 0xA700
    main(int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], code)
