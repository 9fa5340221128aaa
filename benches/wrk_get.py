#!/usr/bin/env python3
"""Reads and writes side by side with wrk: buddy-blocks builds (and nginx WebDAV) in interleaved
rounds.

    python3 benches/wrk_get.py --buddy after=target/release/buddy-blocks \
        --buddy before=/path/to/older/buddy-blocks --nginx --conns 32,64 --rounds 2 \
        --case get,mixed,missing

Cases: `get` of the preloaded blocks, `mixed` (nine GETs, then a PUT of a new 4 KiB body; both
benches/wrk/get.lua), `missing` (benches/wrk/missing.lua: `POST
/blocks/missing` of 1,000 hashes, half stored; buddy-blocks only: nginx has no such endpoint),
`put4k`, `put64k`, `put512k` (benches/wrk/put.lua: every request a PUT of a new block of that
size, `PUT /block` to buddy-blocks, a new file per request to nginx). Each run also reports the
server's CPU per response (utime + stime of its process(es) from /proc over the run, divided by
the responses), and p50 and p99 latency.

    python3 benches/wrk_get.py --buddy now=target/release/buddy-blocks --nginx --relaxed \
        --conns 32 --rounds 2 --case put4k,put64k,put512k --capacity 32GiB

`--relaxed` runs every buddy-blocks binary a second time as `<label>-relaxed`, started with
`--durability relaxed`. PUT cases fill the store: at `--capacity` (default 4GiB) a run that gets
a 507 is refused, so give 512 KiB PUTs room (about rate x duration x rounds x connection counts
x 512 KiB).

Each server gets a fresh data directory and --blocks preloaded blocks of --size bytes (random,
so no dedup); then, round after round, every server in turn takes `wrk -t2 -cC -dD --latency`
with the case's script over its preloaded paths. Prints one line per run and a summary of
req/s and p50 per server and connection count, with each ratio to the first server (or to
nginx with --nginx). Every run starts after a `sync` (no dirty pages of the run before: nginx's
writeback would otherwise land on the next server's flushes). buddy-blocks runs on its defaults but durability full and verify crc32c
(the issue's setting; `--relaxed` adds relaxed). A run with any non-2xx answer or socket error is
refused. Not part of CI.
"""
import argparse
import http.client
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
WRK = os.path.join(HERE, "wrk")


# PUT cases: the body size of each.
PUT_CASES = {"put4k": 4096, "put64k": 65536, "put512k": 524288}


def wrk_script(case, server):
    """The Lua script and its arguments for `case` against `server`."""
    if case == "get":
        return os.path.join(WRK, "get.lua"), [server.paths]
    if case == "mixed":
        put_path = "/m" if server.label == "nginx" else "/block"
        return os.path.join(WRK, "get.lua"), [server.paths, "MIXED", put_path]
    if case == "missing":
        return os.path.join(WRK, "missing.lua"), [server.paths]
    if case in PUT_CASES:
        put_path = "/p" if server.label == "nginx" else "/block"
        return os.path.join(WRK, "put.lua"), [str(PUT_CASES[case]), put_path]
    sys.exit(f"unknown case {case}")


def cpu_ticks(pids):
    """utime + stime of the processes `pids` (all their threads), in clock ticks."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total
PEER = os.path.join(HERE, "nginx", "run-peer.sh")


def wait_port(port, deadline_s=30.0):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/health")
            c.getresponse().read()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"server on port {port} did not answer within {deadline_s} s")


class Buddy:
    def __init__(self, label, binary, port, root, durability, capacity):
        self.label, self.port = label, port
        self.dir = os.path.join(root, label)
        os.makedirs(self.dir)
        self.proc = subprocess.Popen(
            [binary, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", self.dir,
             "--capacity", capacity, "--durability", durability, "--verify-reads", "crc32c"],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(root, label + ".log"), "w"))
        wait_port(port)

    def pids(self):
        return [self.proc.pid]

    def put(self, conn, body):
        conn.request("PUT", "/block", body=body)
        r = conn.getresponse()
        text = r.read().decode().strip()
        if r.status not in (200, 201):
            sys.exit(f"{self.label}: PUT answered {r.status}: {text}")
        return "/block/" + text

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)


class Nginx:
    label = "nginx"

    def __init__(self, port, root):
        self.port = port
        self.dir = os.path.join(root, "nginx")
        subprocess.run([PEER, "start", str(port), self.dir], check=True, stdout=subprocess.DEVNULL)
        wait_port(port)
        self.n = 0

    def pids(self):
        out = subprocess.run([PEER, "pids", self.dir], check=True, capture_output=True, text=True)
        return [int(p) for p in out.stdout.strip().split(",") if p]

    def put(self, conn, body):
        self.n += 1
        path = f"/b{self.n:08d}"
        conn.request("PUT", path, body=body)
        r = conn.getresponse()
        r.read()
        if r.status not in (201, 204):
            sys.exit(f"nginx: PUT answered {r.status}")
        return path

    def stop(self):
        subprocess.run([PEER, "stop", self.dir], check=False, stdout=subprocess.DEVNULL)


def preload(server, blocks, size, paths_file):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    with open(paths_file, "w") as f:
        for _ in range(blocks):
            f.write(server.put(conn, os.urandom(size)) + "\n")
    conn.close()


def percentile_us(out, pct):
    """wrk's --latency line for `pct` (50, 99), in microseconds."""
    m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    scale = {"us": 1.0, "ms": 1000.0, "s": 1e6}[m.group(2)]
    return float(m.group(1)) * scale


def parse_wrk(out):
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errs = re.search(r"Socket errors: (.*)", out)
    return (rps, percentile_us(out, 50), percentile_us(out, 99), (bad.group(1) if bad else None),
            (errs.group(1) if errs else None))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--buddy", action="append", default=[], metavar="LABEL=BINARY")
    ap.add_argument("--nginx", action="store_true")
    ap.add_argument("--conns", default="32,64")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--duration", default="10s")
    ap.add_argument("--blocks", type=int, default=2000)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--base-port", type=int, default=18400)
    ap.add_argument("--case", default="get",
                    help="comma separated: get, mixed, missing, put4k, put64k, put512k")
    ap.add_argument("--relaxed", action="store_true",
                    help="also run every buddy-blocks binary with --durability relaxed")
    ap.add_argument("--capacity", default="4GiB", help="buddy-blocks' --capacity")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk missing: sudo apt-get install -y wrk")
    root = tempfile.mkdtemp(prefix="wrk-get-", dir=os.environ.get("WRK_GET_DIR", "/var/tmp"))
    servers, port = [], args.base_port
    try:
        durabilities = ["full", "relaxed"] if args.relaxed else ["full"]
        for spec in args.buddy:
            label, binary = spec.split("=", 1)
            for durability in durabilities:
                name = label if durability == "full" else f"{label}-relaxed"
                servers.append(Buddy(name, binary, port, root, durability, args.capacity))
                port += 1
        if args.nginx:
            servers.append(Nginx(port, root))
        cases = args.case.split(",")
        reads = any(case not in PUT_CASES for case in cases)
        for s in servers:
            s.paths = os.path.join(root, s.label + ".paths")
            if reads:
                preload(s, args.blocks, args.size, s.paths)
        results = {}
        tick_us = 1e6 / os.sysconf("SC_CLK_TCK")
        for rnd in range(1, args.rounds + 1):
            for case in cases:
                for c in [int(x) for x in args.conns.split(",")]:
                    for s in servers:
                        if case == "missing" and s.label == "nginx":
                            continue
                        lua, extra = wrk_script(case, s)
                        # Each run starts with no dirty pages left by the one before (nginx
                        # never syncs: its writeback would otherwise land in the next
                        # server's run, on its flushes).
                        os.sync()
                        time.sleep(1)
                        pids = s.pids()
                        before = cpu_ticks(pids)
                        out = subprocess.run(
                            ["wrk", "-t2", f"-c{c}", f"-d{args.duration}", "--latency", "-s", lua,
                             f"http://127.0.0.1:{s.port}", "--", *extra],
                            check=True, capture_output=True, text=True).stdout
                        cpu_us = (cpu_ticks(pids) - before) * tick_us
                        rps, p50, p99, bad, errs = parse_wrk(out)
                        if bad or errs:
                            sys.exit(f"{s.label} {case} c={c}: non-2xx {bad}, socket errors {errs}\n{out}")
                        total = int(re.search(r"(\d+) requests in", out).group(1))
                        cpu = cpu_us / max(total, 1)
                        results.setdefault((case, s.label, c), []).append((rps, p50, p99, cpu))
                        print(f"round {rnd} {case} c={c} {s.label}: {rps:,.0f} req/s, p50 {p50:.0f} us, "
                              f"p99 {p99:.0f} us, server CPU {cpu:.1f} us/response", flush=True)
        ref = "nginx" if args.nginx else servers[0].label
        print(f"\nsummary (mean of {args.rounds} rounds; ratio to {ref} where it ran the case):")
        mean = lambda xs, i: sum(x[i] for x in xs) / len(xs)
        for case in cases:
            for c in [int(x) for x in args.conns.split(",")]:
                r = results.get((case, ref, c))
                for s in servers:
                    xs = results.get((case, s.label, c))
                    if not xs:
                        continue
                    rps, p50, p99, cpu = mean(xs, 0), mean(xs, 1), mean(xs, 2), mean(xs, 3)
                    ratio = (f"{rps / mean(r, 0):5.2f}x  p50 {p50 / mean(r, 1):4.2f}x  "
                             f"p99 {p99 / mean(r, 2):4.2f}x") if r else "   -"
                    print(f"  {case:<7} c={c:<3} {s.label:<14} {rps:>10,.0f} req/s  "
                          f"p50 {p50:6.0f} us  p99 {p99:7.0f} us  cpu {cpu:5.1f} us/resp  {ratio}")
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
