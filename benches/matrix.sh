#!/usr/bin/env bash
# Issue 6's benchmark: builds the release binaries, runs the matrix against buddy-blocks and nginx
# WebDAV (benches/matrix.py, ~8 minutes), then draws the charts from its JSON lines
# (benches/chart.py -> docs/benchmarks-*.svg). Extra arguments go to matrix.py
# (e.g. --rounds 3, --ops put --sizes 4k). Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p server -p benches
out=benches/results/matrix-$(date +%Y%m%d-%H%M%S).jsonl
python3 benches/matrix.py --out "$out" "$@"
python3 benches/chart.py "$out"
