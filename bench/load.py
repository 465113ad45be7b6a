#!/usr/bin/env python3
"""Load on loopback: N clients upload a phone photo in a loop while M slow-loris
connections trickle request headers one byte at a time.

    bench/load.py --port P --pid PID --photo phone-12mp.jpg [--clients 20] [--seconds 120]
                  [--slow 200] [--slow-interval 10] [--header-timeout 30]

Standard library only. Each client keeps one connection alive (like a phone's browser) and
posts one image per request; latency is request start to complete answer. The slow-loris
side opens --slow connections, writes one header byte every --slow-interval seconds and
opens a new one whenever the gateway drops one, so the pressure lasts the whole run.
The gateway's memory comes from /proc/PID/status (VmRSS sampled every 50 ms, VmHWM at
the end). Exits 1 when any upload failed, or when a slow connection lived longer than the
header timeout plus one interval, whether the gateway dropped it late or never dropped it
at all before the run ended.
"""

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid

# Valid header lines only, long enough to outlast any run at one byte per interval.
SLOW_REQUEST = b"POST /api/studies HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"".join(
    b"X-Pad-%d: slow\r\n" % i for i in range(40)
)


def multipart(photo: bytes, n: int) -> tuple[bytes, str]:
    boundary = "load" + uuid.uuid4().hex
    parts = []
    for name, value in (("patientId", f"LOAD{n:06d}"), ("examDescription", "load test")):
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        )
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="images[]"; filename="p.jpg"\r\n'
        f"Content-Type: image/jpeg\r\n\r\n".encode()
        + photo
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), boundary


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    close = False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value.strip())
        elif name == "connection" and "close" in value.lower():
            close = True
    body = await reader.readexactly(length)
    return status, body, close


class Stats:
    def __init__(self):
        self.latencies = []
        self.statuses = {}
        self.errors = []
        self.slow_opened = 0
        self.slow_dropped = []  # seconds from open to drop
        self.slow_survived = []  # seconds open when the run ended, never dropped
        self.slow_refused = 0
        self.rss_kib = []


async def uploader(i, args, photo, stats, deadline):
    reader = writer = None
    n = 0
    while time.monotonic() < deadline:
        n += 1
        body, boundary = multipart(photo, i * 100000 + n)
        head = (
            f"POST /api/studies HTTP/1.1\r\nHost: 127.0.0.1:{args.port}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        start = time.monotonic()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", args.port)
            writer.write(head)
            writer.write(body)
            await writer.drain()
            status, answer, close = await asyncio.wait_for(read_response(reader), 300)
        except Exception as e:  # noqa: BLE001 - every failure is counted and reported
            stats.errors.append(f"client {i} request {n}: {type(e).__name__}: {e}")
            if writer is not None:
                writer.close()
            reader = writer = None
            continue
        stats.latencies.append(time.monotonic() - start)
        stats.statuses[status] = stats.statuses.get(status, 0) + 1
        if status != 200:
            stats.errors.append(f"client {i} request {n}: HTTP {status} {answer[:200]!r}")
        else:
            result = json.loads(answer)
            if len(result.get("instances", [])) != 1:
                stats.errors.append(f"client {i} request {n}: answer without one instance")
        if close:
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


async def slow_client(args, stats, deadline):
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", args.port)
        except OSError:
            stats.slow_refused += 1
            await asyncio.sleep(1)
            continue
        stats.slow_opened += 1
        opened = time.monotonic()
        dropped = False
        for byte in SLOW_REQUEST:
            try:
                writer.write(bytes([byte]))
                await writer.drain()
                # The gateway closing the socket shows as EOF (or an answer) on read.
                data = await asyncio.wait_for(reader.read(4096), args.slow_interval)
                dropped = True
                break
            except asyncio.TimeoutError:
                if time.monotonic() >= deadline:
                    break
                continue
            except OSError:
                dropped = True
                break
        writer.close()
        if dropped:
            stats.slow_dropped.append(time.monotonic() - opened)
        else:
            # The run ended (or every header byte went out) with the connection still open.
            stats.slow_survived.append(time.monotonic() - opened)
            break


async def sample_rss(pid, stats, deadline):
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    stats.rss_kib.append(int(line.split()[1]))
        await asyncio.sleep(0.05)


def vm(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def pct(values, p):
    values = sorted(values)
    k = max(0, min(len(values) - 1, round(p / 100 * len(values) + 0.5) - 1))
    return values[k]


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--photo", required=True)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--slow", type=int, default=200)
    ap.add_argument("--slow-interval", type=float, default=10)
    ap.add_argument("--header-timeout", type=float, default=30)
    args = ap.parse_args()
    photo = open(args.photo, "rb").read()
    stats = Stats()
    rss_before = vm(args.pid, "VmRSS")

    start = time.monotonic()
    deadline = start + args.seconds + 2
    tasks = [asyncio.create_task(sample_rss(args.pid, stats, deadline + 5))]
    tasks += [asyncio.create_task(slow_client(args, stats, deadline)) for _ in range(args.slow)]
    # Uploads start once every slow connection is open, so they compete with all of them.
    await asyncio.sleep(2)
    slow_open_at_start = stats.slow_opened
    upload_deadline = time.monotonic() + args.seconds
    tasks += [
        asyncio.create_task(uploader(i, args, photo, stats, upload_deadline))
        for i in range(args.clients)
    ]
    await asyncio.gather(*tasks)
    elapsed = time.monotonic() - start

    lat = stats.latencies
    report = {
        "photo_bytes": len(photo),
        "clients": args.clients,
        "upload_seconds": args.seconds,
        "uploads_ok": stats.statuses.get(200, 0),
        "statuses": stats.statuses,
        "errors": len(stats.errors),
        "throughput_per_s": round(len(lat) / args.seconds, 2),
        "latency_p50_s": round(statistics.median(lat), 3) if lat else None,
        "latency_p99_s": round(pct(lat, 99), 3) if lat else None,
        "latency_max_s": round(max(lat), 3) if lat else None,
        "rss_before_mib": round(rss_before / 1024, 1),
        "rss_peak_sampled_mib": round(max(stats.rss_kib) / 1024, 1) if stats.rss_kib else None,
        "vm_hwm_mib": round(vm(args.pid, "VmHWM") / 1024, 1),
        "slow_connections": args.slow,
        "slow_open_when_uploads_started": slow_open_at_start,
        "slow_opened_total": stats.slow_opened,
        "slow_dropped": len(stats.slow_dropped),
        "slow_drop_after_s_min": round(min(stats.slow_dropped), 1) if stats.slow_dropped else None,
        "slow_drop_after_s_median": round(statistics.median(stats.slow_dropped), 1)
        if stats.slow_dropped
        else None,
        "slow_drop_after_s_max": round(max(stats.slow_dropped), 1) if stats.slow_dropped else None,
        "slow_never_dropped": len(stats.slow_survived),
        "slow_never_dropped_longest_s": round(max(stats.slow_survived), 1)
        if stats.slow_survived
        else None,
        "slow_refused": stats.slow_refused,
        "wall_s": round(elapsed, 1),
    }
    print(json.dumps(report, indent=2))
    for e in stats.errors[:20]:
        print("error:", e, file=sys.stderr)
    bad = bool(stats.errors) or not lat
    limit = args.header_timeout + args.slow_interval + 1
    late = [t for t in stats.slow_dropped if t > limit]
    # A connection the run ended on is only a failure once it has outlived the limit: one
    # opened in the last seconds had no chance to be dropped yet.
    never = [t for t in stats.slow_survived if t > limit]
    if args.slow and (not stats.slow_dropped or late or never):
        print(
            f"slow connections not dropped within {limit} s: {len(late)} dropped late, "
            f"{len(never)} never dropped (open {max(never, default=0):.0f} s at the end)",
            file=sys.stderr,
        )
        bad = True
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
