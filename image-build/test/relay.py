#!/usr/bin/env python3
"""qemu guestfwd helper: joins one guest connection (stdin/stdout) to 127.0.0.1:PORT.

test-update.sh gives the box a PACS at 10.0.2.100:11112 this way; qemu's restrict=on
lets the guest reach nothing else. qemu has already accepted the guest's connection when
this runs, so a PACS that is down cannot refuse it: when nothing listens on PORT the
connection gets no answer for two minutes, as from a PACS host that is switched off (the
gateway's timeout ends it first and the photos wait in the outbox).
"""
import os
import selectors
import socket
import sys
import time

host, port = sys.argv[1], int(sys.argv[2])
try:
    peer = socket.create_connection((host, port), timeout=10)
except OSError:
    deadline = time.monotonic() + 120
    sel = selectors.DefaultSelector()
    sel.register(0, selectors.EVENT_READ)
    while time.monotonic() < deadline:
        if sel.select(timeout=1) and not os.read(0, 65536):
            break
    sys.exit(0)
peer.settimeout(None)
sel = selectors.DefaultSelector()
sel.register(0, selectors.EVENT_READ, "guest")
sel.register(peer, selectors.EVENT_READ, "peer")
while True:
    for key, _ in sel.select():
        if key.data == "guest":
            data = os.read(0, 65536)
            if not data:
                peer.shutdown(socket.SHUT_WR)
                sel.unregister(0)
                continue
            peer.sendall(data)
        else:
            data = peer.recv(65536)
            if not data:
                sys.exit(0)
            view = memoryview(data)
            while view:
                view = view[os.write(1, view):]
