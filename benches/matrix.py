#!/usr/bin/env python3
"""Issue 6's benchmark matrix: buddy-blocks against nginx WebDAV, same client, interleaved.

Cells: PUT, GET and mixed 90/10 (GET/PUT) x 4 KiB, 64 KiB, 512 KiB x 1 and 64 connections.
In each cell buddy-blocks runs in every configuration that cell varies (PUT: durability full and
relaxed; GET: verify-reads crc32c, sha256 and off; mixed: the defaults, full + crc32c) and nginx
once; the order (buddy first or nginx first) alternates from cell to cell and round to round.
Each run is one `buddy-bench --json` invocation; its JSON object, plus the matrix's tags, is one
line of the results file. A first line (tool "matrix-meta") describes the machine and the build;
closing lines (tool "matrix-idle") give each server's idle CPU.

buddy-blocks is restarted for every run (its flags differ between runs): PUT runs get a fresh data
directory (deleted after the run: one big file, which is cheap), GET and mixed runs share one.
nginx runs for the whole matrix on one file-per-block store (benches/nginx/run-peer.sh) which is
deleted at the end: on this ext4 creating files is slow for minutes after a mass delete, so do
not start another matrix right after one (see docs/benchmarks.md).

Usage: python3 benches/matrix.py [--rounds 1] [--duration 5s] [--warmup 1s] [--out FILE]
Needs the release binaries: cargo build --release -p server -p benches
"""

import argparse
import datetime
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUDDY = os.path.join(ROOT, "target", "release", "buddy-blocks")
BENCH = os.path.join(ROOT, "target", "release", "buddy-bench")
PEER = os.path.join(ROOT, "benches", "nginx", "run-peer.sh")

SIZES = ["4k", "64k", "512k"]
CONNS = [1, 64]
# Blocks preloaded for GET and mixed runs (512 KiB: fewer, to keep the preload short).
PRELOAD = {"4k": 1000, "64k": 1000, "512k": 400}
# Data file size for a PUT run's fresh directory: room for ~6 s of writes at full speed.
PUT_CAPACITY = {"4k": "2GiB", "64k": "4GiB", "512k": "10GiB"}
READ_CAPACITY = "8GiB"


def log(msg):
    print(f"[matrix {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(port, path, timeout=60.0):
    """Until anything answers `path` on the port; returns the seconds waited."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", path)
            c.getresponse().read()
            c.close()
            return time.monotonic() - start
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing answered on port {port} within {timeout}s")


def http_json(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", path)
    body = c.getresponse().read()
    c.close()
    return json.loads(body)


def cpu_secs(pids):
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        total += (int(rest[11]) + int(rest[12])) / ticks
    return total


class Buddy:
    """One buddy-blocks process."""

    def __init__(self, data_dir, capacity, durability, verify, log_path):
        self.port = free_port()
        self.log = open(log_path, "ab")
        started = time.monotonic()
        self.proc = subprocess.Popen(
            [BUDDY, "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", data_dir,
             "--capacity", capacity, "--durability", durability, "--verify-reads", verify],
            stdout=self.log, stderr=self.log)
        try:
            wait_http(self.port, "/health")
        except RuntimeError:
            self.stop()
            raise
        self.startup_s = time.monotonic() - started

    @property
    def pids(self):
        return [self.proc.pid]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class Nginx:
    def __init__(self, work_dir):
        self.dir = work_dir
        self.port = free_port()
        subprocess.run([PEER, "start", str(self.port), self.dir], check=True,
                       stdout=subprocess.DEVNULL)
        out = subprocess.run([PEER, "pids", self.dir], check=True, capture_output=True,
                             text=True).stdout.strip()
        self.pids = [int(p) for p in out.split(",") if p]

    def stop(self):
        subprocess.run([PEER, "stop", self.dir], check=False)


def bench(url, target, mix, size, conns, args, pids, tags, preload=None):
    cmd = [BENCH, "--url", url, "--target", target, "--mix", mix, "--size", size,
           "-c", str(conns), "--duration", args.duration, "--warmup", args.warmup, "--json",
           "--server-pid", ",".join(str(p) for p in pids)]
    if preload is not None:
        cmd += ["--preload", str(preload)]
    for k, v in tags.items():
        cmd += ["--tag", f"{k}={v}"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    sys.stderr.write(p.stderr)
    line = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ""
    if not line:
        return dict(tags, tool="buddy-bench", failed=True, exit_code=p.returncode,
                    stderr=p.stderr[-2000:])
    rec = json.loads(line)
    rec["exit_code"] = p.returncode
    return rec


def machine_meta(args):
    def sh(cmd):
        try:
            return subprocess.run(cmd, shell=True, capture_output=True, text=True,
                                  cwd=ROOT).stdout.strip()
        except OSError:
            return ""
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "tool": "matrix-meta",
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "git_commit": sh("git rev-parse --short HEAD"),
        "git_dirty": bool(sh("git status --porcelain --untracked-files=no")),
        "nginx": sh("nginx -v 2>&1"),
        "rustc": sh("rustc --version"),
        "loadavg": open("/proc/loadavg").read().split()[:3],
        "duration": args.duration,
        "warmup": args.warmup,
        "rounds": args.rounds,
    }


def cells(args):
    for op in args.ops:
        for size in args.sizes:
            for conns in args.conns:
                yield op, size, conns


def buddy_configs(op):
    if op == "put":
        return [("full", "crc32c"), ("relaxed", "crc32c")]
    if op == "get":
        return [("full", "crc32c"), ("full", "sha256"), ("full", "off")]
    return [("full", "crc32c")]


MIX = {"put": "put", "get": "get", "mixed": "get=90,put=10"}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--duration", default="5s")
    ap.add_argument("--warmup", default="1s")
    ap.add_argument("--ops", default="put,get,mixed", type=lambda s: s.split(","))
    ap.add_argument("--sizes", default=",".join(SIZES), type=lambda s: s.split(","))
    ap.add_argument("--conns", default="1,64", type=lambda s: [int(x) for x in s.split(",")])
    ap.add_argument("--out", default=None,
                    help="results file (JSON lines); default benches/results/matrix-DATE.jsonl")
    ap.add_argument("--work-dir", default=None, help="where data lives (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the work dir")
    args = ap.parse_args()

    for b in (BUDDY, BENCH):
        if not os.path.exists(b):
            sys.exit(f"{b} missing: cargo build --release -p server -p benches")
    out = args.out or os.path.join(
        ROOT, "benches", "results", time.strftime("matrix-%Y%m%d-%H%M%S.jsonl"))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    work = args.work_dir or tempfile.mkdtemp(prefix="buddy-matrix-")
    os.makedirs(work, exist_ok=True)
    log(f"work dir {work}, results {out}")

    read_dir = os.path.join(work, "buddy-read")
    nginx = Nginx(os.path.join(work, "nginx"))
    nginx_url = f"http://127.0.0.1:{nginx.port}"
    started = time.monotonic()
    n_put = 0
    with open(out, "a") as results:
        def settle(rec):
            # Flush what the run left dirty in the page cache before the next run starts, so
            # no server pays for another's deferred writeback (nginx never fsyncs: after a
            # PUT run its bytes are still being written back while the next run measures).
            # How long that took is recorded: writeback the run's own figures did not pay.
            t0 = time.monotonic()
            os.sync()
            rec["settle_sync_s"] = round(time.monotonic() - t0, 3)
            return rec

        def emit(rec):
            results.write(json.dumps(rec, sort_keys=True) + "\n")
            results.flush()

        emit(machine_meta(args))
        os.sync()
        try:
            for rnd in range(args.rounds):
                for i, (op, size, conns) in enumerate(cells(args)):
                    buddy_first = (rnd + i) % 2 == 0
                    order = ["buddy", "nginx"] if buddy_first else ["nginx", "buddy"]
                    preload = PRELOAD[size] if op in ("get", "mixed") else None
                    for server in order:
                        base = {"matrix_op": op, "round": rnd, "cell": i,
                                "order": "buddy-first" if buddy_first else "nginx-first"}
                        if server == "nginx":
                            tags = dict(base, server="nginx", durability="none", verify="none")
                            log(f"round {rnd} {op} {size} c{conns} nginx")
                            emit(settle(bench(nginx_url, "webdav", MIX[op], size, conns,
                                             args, nginx.pids, tags, preload)))
                            continue
                        for durability, verify in buddy_configs(op):
                            tags = dict(base, server="buddy", durability=durability,
                                        verify=verify)
                            log(f"round {rnd} {op} {size} c{conns} buddy "
                                f"{durability}/{verify}")
                            if op == "put":
                                n_put += 1
                                data = os.path.join(work, f"buddy-put-{n_put}")
                                cap = PUT_CAPACITY[size]
                            else:
                                data, cap = read_dir, READ_CAPACITY
                            srv = Buddy(data, cap, durability, verify,
                                        os.path.join(work, "buddy.log"))
                            try:
                                rec = bench(f"http://127.0.0.1:{srv.port}", "buddy", MIX[op],
                                            size, conns, args, srv.pids, tags, preload)
                                rec["server_startup_s"] = round(srv.startup_s, 3)
                            finally:
                                srv.stop()
                            emit(settle(rec))
                            if op == "put":
                                shutil.rmtree(data, ignore_errors=True)

            # Idle CPU: buddy-blocks on the read directory, and nginx, each for 5 s.
            for server in ("buddy", "nginx"):
                if server == "buddy":
                    srv = Buddy(read_dir, READ_CAPACITY, "full", "crc32c",
                                os.path.join(work, "buddy.log"))
                    pids, startup = srv.pids, srv.startup_s
                    blocks = http_json(srv.port, "/stats").get("blocks")
                else:
                    srv, pids, startup, blocks = None, nginx.pids, None, None
                time.sleep(2)
                c0, t0 = cpu_secs(pids), time.monotonic()
                time.sleep(5)
                idle = (cpu_secs(pids) - c0) / (time.monotonic() - t0)
                if srv:
                    srv.stop()
                emit({"tool": "matrix-idle", "server": server, "idle_cores": round(idle, 4),
                      "startup_s": None if startup is None else round(startup, 3),
                      "blocks": blocks})
                log(f"idle {server}: {idle * 100:.2f}% of a core")
        finally:
            nginx.stop()
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)
    log(f"done in {time.monotonic() - started:.0f} s: {out}")


if __name__ == "__main__":
    main()
