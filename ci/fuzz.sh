#!/usr/bin/env bash
# Runs every cargo-fuzz target for a budget (seconds each, default 60) on stable (`-s none`).
set -euo pipefail
budget="${1:-60}"
cd "$(dirname "$0")/../fuzz"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "ci/fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked -q
fi
for target in $(cargo fuzz list); do
  echo "== fuzz $target (${budget}s)"
  mkdir -p "corpus/$target"
  # Work on a copy so CI does not grow the committed seed corpus.
  work="$(mktemp -d)"
  cp -r "corpus/$target/." "$work/" 2>/dev/null || true
  cargo fuzz run -s none "$target" "$work" "corpus/$target" -- \
    -max_total_time="$budget" -print_final_stats=1 2>&1 | tail -n 12
  rm -rf "$work"
done
