#!/usr/bin/env bash
# Checks ci/setup.sh itself (called by .ci/run after the set-up):
#   1. with everything installed it is silent and succeeds, as root;
#   2. for a user without root or sudo, on a machine that lacks what the tests need, it stops
#      at once with the one line saying exactly what to run, and installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(bash ci/setup.sh test 2>&1)
if [ -n "$out" ]; then
  echo "ci/setup-test: setup.sh is not silent with everything installed: $out"
  exit 1
fi
if [ "$(id -u)" != 0 ] || ! id nobody >/dev/null 2>&1; then
  echo "ci/setup-test: not root or no user 'nobody': the no-root case is not checked"
  exit 0
fi
# A PATH with apt-get but without etcd, protoc, node and npm, for a user with no sudo.
fake=$(mktemp -d)
trap 'rm -rf "$fake"' EXIT
for tool in apt-get id cc; do ln -s "$(command -v "$tool")" "$fake/$tool"; done
chmod 755 "$fake"
set +e
line=$(su -s /bin/bash nobody -c "PATH=$fake /bin/bash $PWD/ci/setup.sh test" 2>&1)
status=$?
set -e
expected="buddy-blocks setup: missing etcd-server protobuf-compiler nodejs npm; run: sudo apt-get update && sudo apt-get install -y etcd-server protobuf-compiler nodejs npm"
if [ "$status" != 1 ] || [ "$line" != "$expected" ]; then
  echo "ci/setup-test: without root, expected exit 1 and one line, got exit $status: $line"
  exit 1
fi
echo "ci/setup-test: silent when all is there; one line saying what to run without root"
