#!/usr/bin/env bash
# The project's test command (README.md): the whole workspace, every test
# (unit, integration and doc tests; benchmarks are built by clippy in CI).
# Tests run with opt-level 2 (see [profile.test]) because the simulator
# scenarios move hundreds of megabytes of virtual traffic.
#
# It does its own set-up, so that it works on a fresh Debian machine: the
# UDT4 interop tests build C++ peers against Debian's libudt (UDT 4.11) and
# fail, never skip, without it; the `udt` program's terminal tests (progress
# bar, Ctrl-C) run it under tmux. What is missing is installed with apt, which
# needs root (as in CI); nothing is installed, and apt's index is not
# refreshed, when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v g++ >/dev/null 2>&1 || need_apt+=(g++)
[ -f /usr/include/udt/udt.h ] || need_apt+=(libudt-dev)
command -v tmux >/dev/null 2>&1 || need_apt+=(tmux)
# The NAT lab (udt-cli/tests/nat_lab.rs) builds namespaces with ip and nft.
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v nft >/dev/null 2>&1 || need_apt+=(nftables)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "scripts/test.sh: the tests need ${need_apt[*]}; run this script as root on a" \
      "Debian-like system to install them with apt-get, or install them yourself" >&2
    exit 1
  fi
  echo "scripts/test.sh: installing ${need_apt[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi

# Incremental caches would add ~1 GB of disk beside the test binaries, and a
# one-shot CI build never reuses them.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
exec cargo test --workspace "$@"
