#!/usr/bin/env bash
# `make run`: starts a local three-member Conclave cluster on loopback, with
# the native keyspace in four ranges, and keeps it in the foreground; Ctrl-C
# stops all three.
#
# Data lives under $CONCLAVE_RUN_DIR (default: ./run-data); a second run
# reuses it, so the cluster restarts with its data. Remove the directory for
# a fresh cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${CONCLAVE_BIN:-build/release/conclave}
DIR=${CONCLAVE_RUN_DIR:-$PWD/run-data}
mkdir -p "$DIR"

names=(m1 m2 m3)
client_ports=(2379 22379 32379)
peer_ports=(2380 22380 32380)
metrics_ports=(2381 22381 32381)
cluster=""
for i in 0 1 2; do
  cluster+="${cluster:+,}${names[$i]}=http://127.0.0.1:${peer_ports[$i]}"
done

pids=()
stop() {
  trap - INT TERM
  echo
  echo "stopping the cluster..."
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait || true
  echo "stopped; data kept in $DIR"
}
trap stop INT TERM

for i in 0 1 2; do
  "$BIN" serve --name "${names[$i]}" --data-dir "$DIR/${names[$i]}" \
    --listen-client-urls "http://127.0.0.1:${client_ports[$i]}" \
    --advertise-client-urls "http://127.0.0.1:${client_ports[$i]}" \
    --listen-peer-urls "http://127.0.0.1:${peer_ports[$i]}" \
    --initial-advertise-peer-urls "http://127.0.0.1:${peer_ports[$i]}" \
    --listen-metrics-urls "http://127.0.0.1:${metrics_ports[$i]}" \
    --initial-cluster "$cluster" --initial-cluster-token conclave-run \
    --initial-cluster-state new --initial-range-count 4 "$@" >"$DIR/${names[$i]}.log" 2>&1 &
  pids+=($!)
done

endpoints="127.0.0.1:${client_ports[0]},127.0.0.1:${client_ports[1]},127.0.0.1:${client_ports[2]}"
cat <<MSG
Conclave: a 3-member cluster is running (logs and data in $DIR).
  client endpoints: $endpoints
  metrics/health:   http://127.0.0.1:${metrics_ports[0]}/metrics  http://127.0.0.1:${metrics_ports[0]}/health
  ranges page:      http://127.0.0.1:${metrics_ports[0]}/ranges
  try:              $BIN --endpoints=$endpoints put greeting hello
                    $BIN --endpoints=$endpoints get greeting
                    $BIN --endpoints=$endpoints lock mylock -- echo "holding mylock"
                    $BIN --endpoints=$endpoints kv put k1 v1; $BIN --endpoints=$endpoints range list
                    (etcdctl works too: ETCDCTL_API=3 etcdctl --endpoints=$endpoints get greeting)
  Ctrl-C stops all three.
MSG
wait -n "${pids[@]}" || true
echo "a member exited; see its log in $DIR" >&2
stop
