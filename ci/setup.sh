#!/usr/bin/env bash
# Installs what this project needs from the system, on Debian or Ubuntu. Idempotent; prints
# nothing when everything is already there.
#
#   bash ci/setup.sh build   what building the server needs (libclang, for libmdbx's bindings)
#   bash ci/setup.sh test    the above, plus what the tests need (default)
#
# It checks for the thing a build or test really loads, not for a package name: bindgen loads
# `libclang.so` (or `libclang-<ver>.so*`), so the image's `libclang-cpp.so.14` does not count.
# Without root and without password-less sudo it installs nothing and stops with one line that
# says exactly what to run.
set -euo pipefail
mode="${1:-test}"
case "$mode" in build | test) ;; *)
  echo "ci/setup.sh: unknown mode '$mode' (use 'build' or 'test')" >&2
  exit 2
  ;;
esac

# True when a libclang that clang-sys (bindgen's loader) accepts is installed. Mirrors its
# search: LIBCLANG_PATH, `llvm-config --libdir`, then the system library folders; files named
# libclang.so, libclang-*.so, libclang.so.*, libclang-*.so.*, but never libclang-cpp (the C++
# library, which is not what bindgen loads).
have_libclang() {
  local dirs=()
  [ -n "${LIBCLANG_PATH:-}" ] && dirs+=("$LIBCLANG_PATH")
  command -v llvm-config >/dev/null 2>&1 && dirs+=("$(llvm-config --libdir 2>/dev/null)")
  dirs+=(/usr/lib/llvm-*/lib /usr/local/lib /usr/local/lib64 /usr/lib /usr/lib64 /usr/lib/*-linux-gnu)
  local d f
  for d in "${dirs[@]}"; do
    [ -d "$d" ] || continue
    for f in "$d"/libclang.so "$d"/libclang-*.so "$d"/libclang.so.* "$d"/libclang-*.so.*; do
      [ -e "$f" ] || continue
      case "${f##*/}" in *-cpp.* | libclang-cpp*) continue ;; esac
      # bindgen also needs clang's own headers (stddef.h), shipped beside the library.
      local h
      for h in /usr/lib/llvm-*/lib/clang/*/include/stddef.h /usr/lib/clang/*/include/stddef.h \
        /usr/local/lib/clang/*/include/stddef.h; do
        [ -e "$h" ] && return 0
      done
    done
  done
  return 1
}

packages=()
have_libclang || packages+=(libclang-dev)
command -v cc >/dev/null 2>&1 || packages+=(gcc)
if [ "$mode" = test ]; then
  # The cluster tests start a real etcd; the etcd client is generated from .proto files.
  command -v etcd >/dev/null 2>&1 || packages+=(etcd-server)
  # protoc, and the well-known types it imports (google/protobuf/*.proto: libprotobuf-dev,
  # only a recommendation of protobuf-compiler).
  command -v protoc >/dev/null 2>&1 || packages+=(protobuf-compiler)
  [ -e /usr/include/google/protobuf/descriptor.proto ] || packages+=(libprotobuf-dev)
  # The IPFS client tests run third-party JavaScript libraries under Node.js.
  command -v node >/dev/null 2>&1 || packages+=(nodejs)
  command -v npm >/dev/null 2>&1 || packages+=(npm)
fi
[ ${#packages[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "buddy-blocks setup: missing ${packages[*]} (Debian package names) and no apt-get here; install their equivalents with your package manager, then run this again" >&2
  exit 1
fi
if [ "$(id -u)" = 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo=(sudo -n)
else
  echo "buddy-blocks setup: missing ${packages[*]}; run: sudo apt-get update && sudo apt-get install -y ${packages[*]}" >&2
  exit 1
fi
echo "buddy-blocks setup: installing ${packages[*]} (apt-get)"
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
  "${packages[@]}" >/dev/null
