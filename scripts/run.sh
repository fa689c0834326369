#!/usr/bin/env bash
# `make run`: starts Conclave's main job on sensible defaults.
#
# The network server is not built yet. What exists is the Raft core and its
# deterministic whole-cluster simulator, so this runs the simulator over new
# seeds (3- and 5-node clusters under every fault profile) until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=build/release/conclave
cat <<MSG
Conclave: the server is not built yet; running the deterministic cluster simulator.
  seeds run one after another; every 500 a progress line; Ctrl-C stops and prints the totals.
  replay any seed:   $BIN sim --seed N --seeds 1 --trace
  other profiles:    $BIN sim --help
MSG
exec "$BIN" sim --forever "$@"
