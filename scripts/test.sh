#!/usr/bin/env bash
# The project's test command (README.md): the whole workspace, every test
# (unit, integration and doc tests; benchmarks are built by clippy in CI).
# Tests run with opt-level 2 (see [profile.test]) because the simulator
# scenarios move hundreds of megabytes of virtual traffic.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo test --workspace "$@"
