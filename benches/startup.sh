#!/usr/bin/env bash
# Issue 6's startup target: how long `buddy-blocks serve` takes to be ready with many stored
# blocks. Fills a fresh data directory with BLOCKS unique 4 KiB blocks through the HTTP API
# (buddy-bench, durability relaxed to fill fast), stops the server (SIGTERM), then starts it
# RUNS times and measures, each time, the wall time from exec to the first `GET /health` 200
# (opening libmdbx, rebuilding the allocator from the index, returning reservations, starting
# the workers). Prints one JSON line per run. Not part of CI.
#
#   bash benches/startup.sh                 # 1,000,000 blocks (4 GiB data file, ~2 minutes to fill)
#   BLOCKS=100000 RUNS=3 bash benches/startup.sh
#   KEEP=1 DIR=/var/tmp/bb-startup bash benches/startup.sh   # keep (or reuse) the filled directory
set -euo pipefail
cd "$(dirname "$0")/.."

blocks="${BLOCKS:-1000000}"
runs="${RUNS:-3}"
port="${PORT:-10071}"
dir="${DIR:-$(mktemp -d /var/tmp/buddy-startup.XXXXXX)}"
mkdir -p "$dir"
# Capacity: the blocks plus room, rounded to whole GiB.
capacity_gib=$(( (blocks * 4096 / 1073741824) + 1 ))
bin=target/release/buddy-blocks
bench=target/release/buddy-bench
cargo build --release -q -p server -p benches

pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  [ -z "${KEEP:-}" ] && rm -rf "$dir"
}
trap cleanup EXIT

start_server() {
  "$bin" serve --listen "127.0.0.1:$port" --data-dir "$dir" --capacity "${capacity_gib}GiB" \
    --durability "$1" --log-level warn >"$dir/log" 2>&1 &
  pid=$!
}

stop_server() {
  kill -TERM "$pid"
  wait "$pid" || true
  pid=""
}

stored() {
  curl -sf "http://127.0.0.1:$port/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["blocks"])'
}

wait_ready() {
  until curl -sf "http://127.0.0.1:$port/health" >/dev/null; do
    kill -0 "$pid" 2>/dev/null || { echo "the server exited:" >&2; cat "$dir/log" >&2; exit 1; }
    sleep "$1"
  done
}

start_server relaxed
wait_ready 0.05
have=$(stored)
if [ "$have" -lt "$blocks" ]; then
  echo "filling $dir with $((blocks - have)) blocks of 4 KiB ..." >&2
  "$bench" --url "http://127.0.0.1:$port" --mix put --size 4k -c 32 -w 0s \
    -n "$((blocks - have))" >&2
fi
have=$(stored)
echo "stored blocks: $have" >&2
stop_server

for run in $(seq 1 "$runs"); do
  sync
  t0=$(date +%s%N)
  start_server full
  wait_ready 0.002
  t1=$(date +%s%N)
  n=$(stored)
  stop_server
  echo "{\"run\": $run, \"blocks\": $n, \"exec_to_health_ms\": $(( (t1 - t0) / 1000000 ))}"
done
