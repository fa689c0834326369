#!/usr/bin/env bash
# A long fault-injection run (tests/faults/run.py) against the release build:
#   scripts/soak.sh [DURATION_S] [NODES] [more run.py flags]
# Every fault, overlapping; the report goes to build/soak/report.{txt,json}.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-3600}
nodes=${2:-4}
shift $(( $# > 2 ? 2 : $# ))
# The harness needs python3 with etcd3 and grpc (Debian's python3-etcd3).
python=python3
if ! "$python" -c "import etcd3, grpc" 2>/dev/null; then
  python=/usr/bin/python3
fi
# Members silent for 8 s have their replicas made again elsewhere (the
# node-down fault: long kills, pauses and partitions re-replicate).
exec "$python" tests/faults/run.py --binary build/release/conclave --duration "$duration" \
  --nodes "$nodes" --replica-down-time 8 --report build/soak "$@"
