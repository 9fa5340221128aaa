#!/usr/bin/env python3
"""Memory under many slow uploads: N connections each PUT a 512 KiB body in slices with pauses
(default 16 KiB every 50 ms), while the server's peak RSS is sampled from /proc.

    benches/slow-uploads.py --url http://127.0.0.1:10001 --pid $(pidof buddy-blocks) [-c 1000]

Every answer must be 201 (or 200 for a duplicate) with the body's SHA-256; prints the statuses,
the time the slowest upload took, and the server's peak RSS (VmRSS sampled every 50 ms, and
VmHWM). Exit status 1 if any upload failed.
"""

import argparse
import asyncio
import hashlib
import os
import time
from urllib.parse import urlparse


def rss_kb(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


async def upload(host, port, body, slice_bytes, pause_s, results):
    start = time.monotonic()
    try:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(
            b"PUT /block HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        for i in range(0, len(body), slice_bytes):
            writer.write(body[i : i + slice_bytes])
            await writer.drain()
            await asyncio.sleep(pause_s)
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        answer = await reader.readexactly(length)
        writer.close()
        ok = status in (200, 201) and answer.strip() == hashlib.sha256(body).hexdigest().encode()
        results.append((status if ok else -status, time.monotonic() - start))
    except Exception as e:  # a reset or timeout is a failure to report, not to hide
        results.append((f"error {type(e).__name__}", time.monotonic() - start))


async def sample(pid, peak, stop):
    while not stop.is_set():
        peak[0] = max(peak[0], rss_kb(pid, "VmRSS"))
        await asyncio.sleep(0.05)


async def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="http://127.0.0.1:10001")
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("-c", "--connections", type=int, default=1000)
    p.add_argument("--size", type=int, default=512 * 1024)
    p.add_argument("--slice", type=int, default=16 * 1024)
    p.add_argument("--pause-ms", type=float, default=50)
    a = p.parse_args()
    u = urlparse(a.url)
    results, peak, stop = [], [0], asyncio.Event()
    sampler = asyncio.create_task(sample(a.pid, peak, stop))
    start = time.monotonic()
    await asyncio.gather(
        *(
            upload(u.hostname, u.port, os.urandom(a.size), a.slice, a.pause_ms / 1000, results)
            for _ in range(a.connections)
        )
    )
    wall = time.monotonic() - start
    stop.set()
    await sampler
    statuses = {}
    for s, _ in results:
        statuses[s] = statuses.get(s, 0) + 1
    slowest = max(t for _, t in results)
    print(
        f"{a.connections} uploads of {a.size} bytes ({a.slice} bytes per {a.pause_ms:g} ms): "
        f"statuses {statuses}; slowest {slowest:.1f} s, all done in {wall:.1f} s; "
        f"server peak RSS {peak[0] / 1024:.1f} MB (VmHWM {rss_kb(a.pid, 'VmHWM') / 1024:.1f} MB)"
    )
    return 0 if all(s in (200, 201) for s, _ in results) else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
