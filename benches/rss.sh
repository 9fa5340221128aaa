#!/usr/bin/env bash
# Server memory under 1,000 connections (issue 6: RSS <= 64 MB): for each workload a fresh
# release server (2 workers, 4 GiB data file), buddy-bench with 1,000 keep-alive connections,
# and the server's RSS sampled every 100 ms from /proc (peak VmRSS; VmHWM at the end).
#
#   bash benches/rss.sh                     # the tree's release build
#   BINS="/old/target/release /new/target/release" bash benches/rss.sh   # side by side
#
# Knobs: CONNS (1000), DURATION (5s), ROUNDS (1), WORKLOADS ("put:4k put:512k get:4k get:512k
# get=50,put=50:512k"), SERVER_FLAGS (extra `serve` flags), DIR (/var/tmp/bb-rss).
set -euo pipefail
cd "$(dirname "$0")/.."
BINS=${BINS:-target/release}
CONNS=${CONNS:-1000}
DURATION=${DURATION:-5s}
ROUNDS=${ROUNDS:-1}
WORKLOADS=${WORKLOADS:-"put:4k put:512k get:4k get:512k get=50,put=50:512k"}
DIR=${DIR:-/var/tmp/bb-rss}
PORT=${PORT:-10091}
ulimit -n 16384
[ -n "${BINS_BUILT:-}" ] || cargo build --release -q -p server -p benches
bench=target/release/buddy-bench
[ -x "$bench" ] || bench="$(echo "$BINS" | awk '{print $1}')/buddy-bench"

peak_sampler() { # pid -> prints the peak VmRSS in kB when killed
  local pid=$1 peak=0 v
  trap 'echo $peak; exit 0' TERM
  while v=$(awk '/^VmRSS/{print $2}' "/proc/$pid/status" 2>/dev/null); do
    [ "${v:-0}" -gt "$peak" ] && peak=$v
    sleep 0.1
  done
  echo $peak
}

for round in $(seq "$ROUNDS"); do
  for w in $WORKLOADS; do
    mix=${w%%:*}
    size=${w##*:}
    for bin in $BINS; do
      rm -rf "$DIR"
      mkdir -p "$DIR"
      # shellcheck disable=SC2086
      "$bin/buddy-blocks" serve --data-dir "$DIR" --capacity 4GiB --workers 2 \
        --listen "127.0.0.1:$PORT" --log-level warn ${SERVER_FLAGS:-} &
      pid=$!
      for _ in $(seq 50); do curl -sf "127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done
      peak_sampler "$pid" >"$DIR.peak" &
      sampler=$!
      out=$("$bench" --url "http://127.0.0.1:$PORT" --mix "$mix" --size "$size" -c "$CONNS" \
        --duration "$DURATION" --warmup 1s --preload 1000 2>&1 | grep -E "req/s" | tr -s ' ')
      kill -TERM "$sampler"
      wait "$sampler" || true
      hwm=$(awk '/^VmHWM/{print $2}' "/proc/$pid/status")
      kill "$pid"
      wait "$pid" || true
      awk -v r="$round" -v w="$mix $size" -v b="$bin" -v p="$(cat "$DIR.peak")" -v h="$hwm" \
        -v o="$out" 'BEGIN { printf "round %s %-18s %-24s peak VmRSS %6.1f MB  VmHWM %6.1f MB |%s\n",
        r, w, b, p / 1024, h / 1024, o }'
      rm -rf "$DIR" "$DIR.peak"
    done
  done
done
