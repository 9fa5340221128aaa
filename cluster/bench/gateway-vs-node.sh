#!/usr/bin/env bash
# The gateway in front of three local nodes against one node alone: PUT and GET of 4 KiB blocks
# with buddy-bench, interleaved in one run (node, cluster, node, cluster ...), as ratios.
#
# Everything (etcd, 4 nodes, the gateway, the load generator) shares this machine's cores, so
# the cluster figure pays for three nodes and a gateway on the same CPUs: it measures the
# gateway's overhead, not a scale-out. Usage (from the repository root, release binaries built):
#   cargo build --release -p server --bin buddy-blocks -p cluster -p benches --bin buddy-bench
#   bash cluster/bench/gateway-vs-node.sh [ROUNDS] [SECONDS] [CONNECTIONS]
set -euo pipefail
rounds=${1:-2}
seconds=${2:-8}
conns=${3:-16}
bin=${CARGO_TARGET_DIR:-target}/release
for b in buddy-blocks buddy-cluster buddy-bench; do
  [ -x "$bin/$b" ] || { echo "missing $bin/$b (build it first, see the header)"; exit 1; }
done
command -v etcd >/dev/null || { echo "etcd is not installed (apt-get install etcd-server)"; exit 1; }

dir=$(mktemp -d /tmp/buddy-cluster-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on $1"; exit 1
}

ec=$(port); ep=$(port)
etcd --name b --data-dir "$dir/etcd" --listen-client-urls "http://127.0.0.1:$ec" \
  --advertise-client-urls "http://127.0.0.1:$ec" --listen-peer-urls "http://127.0.0.1:$ep" \
  --initial-advertise-peer-urls "http://127.0.0.1:$ep" --initial-cluster "b=http://127.0.0.1:$ep" \
  2>"$dir/etcd.log" & pids+=($!); disown
wait_port "$ec"

declare -A node_port node_pid
for n in alone a b c; do
  node_port[$n]=$(port)
  "$bin/buddy-blocks" serve --listen "127.0.0.1:${node_port[$n]}" --data-dir "$dir/$n" \
    --capacity 2GiB --workers 1 2>"$dir/$n.log" & node_pid[$n]=$!; pids+=($!); disown
done
for n in alone a b c; do wait_port "${node_port[$n]}"; done

export BUDDY_CLUSTER_ETCD="http://127.0.0.1:$ec"
for n in a b c; do
  "$bin/buddy-cluster" --log-level warn node add "$n" "127.0.0.1:${node_port[$n]}" --active >/dev/null
done
gp=$(port)
"$bin/buddy-cluster" serve --listen "127.0.0.1:$gp" 2>"$dir/gateway.log" & gw_pid=$!; pids+=($!); disown
wait_port "$gp"
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$gp/health" >/dev/null && break
  sleep 0.1
done

run() { # target op round
  local url pids_csv
  if [ "$1" = node ]; then
    url="http://127.0.0.1:${node_port[alone]}"; pids_csv=${node_pid[alone]}
  else
    url="http://127.0.0.1:$gp"; pids_csv="$gw_pid,${node_pid[a]},${node_pid[b]},${node_pid[c]}"
  fi
  local extra=()
  [ "$2" = get ] && extra=(--preload 5000)
  "$bin/buddy-bench" --url "$url" --mix "$2" --size 4k -c "$conns" --duration "${seconds}s" \
    --warmup 1s --json --server-pid "$pids_csv" "${extra[@]}" \
    --tag "target=$1" --tag "round=$3" 2>/dev/null >>"$dir/results.jsonl"
}

for r in $(seq 1 "$rounds"); do
  for op in put get; do
    if [ $((r % 2)) = 1 ]; then run node "$op" "$r"; run cluster "$op" "$r"
    else run cluster "$op" "$r"; run node "$op" "$r"; fi
  done
done

python3 - "$dir/results.jsonl" "$conns" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"4 KiB blocks, {sys.argv[2]} connections, buddy-bench; server cores = CPU of the node "
      "(alone) or of gateway + 3 nodes (cluster); other = busy cores of everything else")
print(f"{'op':4} {'round':5} {'target':8} {'req/s':>9} {'p50 us':>7} {'p99 us':>7} "
      f"{'server cores':>12} {'client cores':>12} {'other':>6} {'errors':>6}")
for r in rows:
    lat = r["latency_us"]
    print(f"{r['mix']:4} {r['round']:5} {r['target']:8} {r['rps']:9.0f} {lat['p50']:7} {lat['p99']:7} "
          f"{r['server_cores'] or 0:12.2f} {r['client_cores']:12.2f} {r['other_cores'] or 0:6.2f} {r['errors']:6}")
print()
for op in ("put", "get"):
    node = [r["rps"] for r in rows if r["mix"] == op and r["target"] == "node"]
    clus = [r["rps"] for r in rows if r["mix"] == op and r["target"] == "cluster"]
    if node and clus:
        n, c = sum(node) / len(node), sum(clus) / len(clus)
        print(f"{op}: cluster/node = {c:.0f}/{n:.0f} req/s = {c / n:.2f}")
PY
