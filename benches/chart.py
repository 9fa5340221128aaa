#!/usr/bin/env python3
"""Charts and the ratio table of a benchmark matrix (benches/matrix.py's JSON lines).

    python3 benches/chart.py RESULTS.jsonl [--out-dir docs] [--table]

Writes docs/benchmarks-throughput.svg (MB/s against block size, buddy-blocks configurations and
nginx, one panel per operation and connection count) and docs/benchmarks-latency.svg (p50 and
p99 the same way). With --table, prints the Markdown table of buddy/nginx ratios that
docs/benchmarks.md holds. Runs repeated over rounds are reduced to their median. Needs matplotlib
(`pip install matplotlib`).
"""

import argparse
import json
import os
import statistics
import sys
from collections import defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPS = [("put", "PUT"), ("get", "GET"), ("mixed", "mixed 90/10")]
SIZES = ["4k", "64k", "512k"]
SIZE_LABEL = {"4k": "4 KiB", "64k": "64 KiB", "512k": "512 KiB"}
COLORS = {
    "nginx": "#555555",
    "buddy full/crc32c": "#1f77b4",
    "buddy relaxed/crc32c": "#ff7f0e",
    "buddy full/sha256": "#2ca02c",
    "buddy full/off": "#d62728",
}


def label(r):
    if r.get("server") == "nginx":
        return "nginx"
    return f"buddy {r.get('durability')}/{r.get('verify')}"


def load(path):
    runs = []
    meta = None
    idle = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            r = json.loads(line)
            if r.get("tool") == "matrix-meta":
                meta = meta or r
            elif r.get("tool") == "matrix-idle":
                idle.append(r)
            elif r.get("tool") == "buddy-bench" and not r.get("failed"):
                runs.append(r)
    return meta, runs, idle


def reduce(runs):
    """(op, size, conns, label) -> median figures over rounds."""
    groups = defaultdict(list)
    for r in runs:
        groups[(r["matrix_op"], r["size"], r["connections"], label(r))].append(r)
    out = {}
    for key, rs in groups.items():
        def med(f):
            vals = [f(r) for r in rs if f(r) is not None]
            return statistics.median(vals) if vals else None
        out[key] = {
            "rps": med(lambda r: r["rps"]),
            "mbps": med(lambda r: r["mbps"]),
            "p50": med(lambda r: r["latency_us"]["p50"]),
            "p99": med(lambda r: r["latency_us"]["p99"]),
            "errors": sum(r["errors"] for r in rs),
            "client_cores": med(lambda r: r.get("client_cores")),
            "server_cores": med(lambda r: r.get("server_cores")),
            "other_cores": med(lambda r: r.get("other_cores")),
            "rss": med(lambda r: r.get("server_rss_mb")),
            "n": len(rs),
        }
    return out


def labels_for(op, data):
    found = {k[3] for k in data if k[0] == op}
    order = list(COLORS)[1:] + ["nginx"]
    return [s for s in order if s in found] + sorted(found - set(order))


def draw(data, meta, out_dir, png=False):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("chart.py needs matplotlib: pip install matplotlib")
    plt.rcParams["svg.hashsalt"] = "buddy-blocks"  # stable ids: reruns diff cleanly
    conns = sorted({k[2] for k in data})
    when = f" ({meta['started'][:10]}, {meta['cpus']} vCPU, client on the same cores)" if meta else ""

    def grid(metric_fn, ylabel, title, fname):
        fig, axes = plt.subplots(len(conns), len(OPS), figsize=(4.2 * len(OPS), 3.4 * len(conns)),
                                 squeeze=False, sharex=True)
        for row, c in enumerate(conns):
            for col, (op, op_title) in enumerate(OPS):
                ax = axes[row][col]
                for lab in labels_for(op, data):
                    xs, series = [], defaultdict(list)
                    for i, size in enumerate(SIZES):
                        d = data.get((op, size, c, lab))
                        if not d:
                            continue
                        xs.append(i)
                        for name, v in metric_fn(d):
                            series[name].append(v)
                    for name, ys in series.items():
                        style = "--" if name == "p99" else "-"
                        marker = "^" if name == "p99" else "o"
                        lw = 2.4 if lab == "nginx" else 1.6
                        ax.plot(xs, ys, style, marker=marker, color=COLORS.get(lab, None),
                                linewidth=lw, label=f"{lab} {name}".strip())
                ax.set_yscale("log")
                ax.set_xticks(range(len(SIZES)), [SIZE_LABEL[s] for s in SIZES])
                ax.set_title(f"{op_title}, {c} connection{'s' if c != 1 else ''}", fontsize=10)
                ax.grid(True, which="both", alpha=0.3)
                if col == 0:
                    ax.set_ylabel(ylabel)
                ax.legend(fontsize=7, loc="best")
        fig.suptitle(title + when, fontsize=11)
        fig.tight_layout()
        path = os.path.join(out_dir, fname)
        fig.savefig(path, format="svg", metadata={"Date": None})
        if png:
            fig.savefig(path.removesuffix(".svg") + ".png", format="png", dpi=80)
        plt.close(fig)
        print(f"wrote {path}", file=sys.stderr)

    grid(lambda d: [("", d["mbps"])], "MB/s (body bytes)",
         "buddy-blocks vs nginx WebDAV: throughput by block size", "benchmarks-throughput.svg")
    grid(lambda d: [("p50", d["p50"]), ("p99", d["p99"])], "latency (us)",
         "buddy-blocks vs nginx WebDAV: p50 (solid) and p99 (dashed) latency",
         "benchmarks-latency.svg")


def fmt_rate(x):
    if x is None:
        return "-"
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}"


def table(data):
    lines = [
        "| op | size | conns | buddy config | buddy req/s | nginx req/s | **ratio** | MB/s buddy / nginx"
        " | p50 buddy / nginx (us) | p99 buddy / nginx (us) | p99 ratio | CPU buddy / nginx"
        " / client (cores) | others (cores) |",
        "|---|---|---|---|---:|---:|---:|---:|---|---|---:|---|---:|",
    ]
    conns = sorted({k[2] for k in data})
    for op, _ in OPS:
        for size in SIZES:
            for c in conns:
                n = data.get((op, size, c, "nginx"))
                for lab in labels_for(op, data):
                    if lab == "nginx":
                        continue
                    b = data.get((op, size, c, lab))
                    if not b:
                        continue
                    ratio = b["rps"] / n["rps"] if n and n["rps"] else None
                    p99r = b["p99"] / n["p99"] if n and n["p99"] else None
                    err = f" ({b['errors']} errors)" if b["errors"] else ""
                    cpu = (f"{b['server_cores'] or 0:.2f} / {n['server_cores'] or 0:.2f} / "
                           f"{b['client_cores']:.2f}") if n else "-"
                    lines.append(
                        f"| {op} | {size} | {c} | {lab.removeprefix('buddy ')}{err} | "
                        f"{fmt_rate(b['rps'])} | {fmt_rate(n['rps']) if n else '-'} | "
                        f"**{ratio:.2f}x** | {fmt_rate(b['mbps'])} / {fmt_rate(n['mbps'])} | "
                        f"{b['p50']} / {n['p50'] if n else '-'} | "
                        f"{b['p99']} / {n['p99'] if n else '-'} | "
                        f"{p99r:.2f}x | {cpu} | {b['other_cores'] or 0:.2f} |"
                        if n else
                        f"| {op} | {size} | {c} | {lab} | {fmt_rate(b['rps'])} | - | - | - | "
                        f"{b['p50']} / - | {b['p99']} / - | - | - | - |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results")
    ap.add_argument("--out-dir", default=os.path.join(ROOT, "docs"))
    ap.add_argument("--table", action="store_true", help="print the ratio table (Markdown)")
    ap.add_argument("--no-charts", action="store_true")
    ap.add_argument("--png", action="store_true", help="also write PNG copies (for a quick look)")
    args = ap.parse_args()
    meta, runs, idle = load(args.results)
    if not runs:
        sys.exit(f"{args.results}: no benchmark runs")
    data = reduce(runs)
    if not args.no_charts:
        draw(data, meta, args.out_dir, args.png)
    if args.table:
        print(table(data))
        for r in idle:
            print(f"\nidle {r['server']}: {r['idle_cores'] * 100:.2f}% of a core"
                  + (f", startup {r['startup_s']} s with {r['blocks']} blocks"
                     if r.get("startup_s") is not None else ""))


if __name__ == "__main__":
    main()
