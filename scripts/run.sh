#!/usr/bin/env bash
# `make run`: starts Conclave's main job on sensible defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=build/release/conclave
echo "The Conclave server is not built yet; running what exists."
exec "$BIN" version
