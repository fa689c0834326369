#!/usr/bin/env bash
# Runs every Google Benchmark binary of the release build.
set -euo pipefail
cd "$(dirname "$0")/.."
found=0
for b in build/release/bench/*_bench; do
  [ -x "$b" ] || continue
  found=1
  echo "== $b"
  "$b" "$@"
done
if [ "$found" -eq 0 ]; then
  echo "bench: no benchmarks built yet"
fi
