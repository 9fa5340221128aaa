#!/usr/bin/env bash
# Seeded simulation (issue 4), called by .ci/run:
#   1. a soak range of seeds (default 200 seeds x 2000 requests, each with at least one crash);
#   2. determinism: a sample of seeds run twice must give the same trace hashes;
#   3. teeth: every known bug of engine/src/bugs.rs must be caught within a bounded seed range;
#   4. every seed ends: seed 70000 with drop_reply_when_full (once a livelock that ran for
#      minutes) must fail within seconds (the progress watchdog of sim/src/world/watchdog.rs).
# Knobs (environment): SIM_SEEDS, SIM_REQUESTS, SIM_JOBS, SIM_TEETH_SEEDS, SIM_PROFILE.
set -euo pipefail
cd "$(dirname "$0")/.."

seeds="${SIM_SEEDS:-1..=200}"
requests="${SIM_REQUESTS:-2000}"
jobs="${SIM_JOBS:-$(nproc 2>/dev/null || echo 2)}"
teeth_seeds="${SIM_TEETH_SEEDS:-1..=30}"
profile="${SIM_PROFILE:-sim}"

start=$(date +%s)
echo "== sim: build (profile $profile: release speed with debug assertions and overflow checks)"
cargo build --profile "$profile" -p sim -q
# Where cargo put it: CARGO_TARGET_DIR when set, else ./target.
target_dir="${CARGO_TARGET_DIR:-target}"
case "$profile" in
  dev) sim="$target_dir/debug/buddy-sim" ;;
  *) sim="$target_dir/$profile/buddy-sim" ;;
esac

echo "== sim: seeds $seeds, $requests requests each, $jobs jobs"
out=$("$sim" --seeds "$seeds" --requests "$requests" --jobs "$jobs" --quiet) || {
  status=$?
  echo "$out"
  echo "ci/sim: a seed failed (exit $status); replay it with the reproduce line above"
  exit "$status"
}
echo "$out" | tail -n 1
if echo "$out" | grep -q "fewest crashes in a passing seed: 0"; then
  echo "ci/sim: a seed passed without any crash"
  exit 1
fi

echo "== sim: determinism (seeds 1..=12 run twice)"
"$sim" --seeds 1..=12 --requests "$requests" --jobs "$jobs" --determinism --quiet | tail -n 1

for bug in ack_before_durable skip_reservation_recovery reuse_while_reading \
  drop_reply_when_full skip_merge; do
  echo "== sim: bug $bug must be caught within seeds $teeth_seeds"
  "$sim" --seeds "$teeth_seeds" --requests "$requests" --jobs "$jobs" --bug "$bug" \
    --expect-failure --stop-at-first-failure --quiet | tail -n 2
done
echo "== sim: seed 70000 with drop_reply_when_full must end (fail) within 30 s"
timeout 30 "$sim" --seed 70000 --bug drop_reply_when_full --expect-failure | tail -n 2 || {
  echo "ci/sim: seed 70000 did not end with a failure within 30 s"
  exit 1
}
echo "== sim: passed in $(( $(date +%s) - start )) s"
