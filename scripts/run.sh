#!/usr/bin/env bash
# `make run`: starts a local three-member Conclave cluster on loopback, with
# the native keyspace in four ranges, and keeps it in the foreground; Ctrl-C
# stops all three. A member that exits (or is killed, to try a failover) is
# reported and the others keep serving; typing `restart` (or `restart m2`)
# starts it again, `stop` stops them all.
#
# Data lives under $CONCLAVE_RUN_DIR (default: ./run-data); a second run
# reuses it, so the cluster restarts with its data. Remove the directory for
# a fresh cluster. Each run's logs go to a directory of their own under
# $CONCLAVE_RUN_DIR/logs, so the logs of an earlier run are kept.
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
  for i in "${!pids[@]}"; do
    if ((up[i])); then kill -TERM "${pids[$i]}" 2>/dev/null || true; fi
  done
  wait || true
  echo "stopped; data kept in $DIR"
}
trap 'stop; exit 0' INT TERM

alive() {  # $1: pid; a child that exited and was not waited for is a zombie
  kill -0 "$1" 2>/dev/null || return 1
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 0
  [[ "$state" != Z ]]
}

LOGS="$DIR/logs/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$LOGS"

start_member() {  # $1: index
  local i=$1
  "$BIN" serve --name "${names[$i]}" --data-dir "$DIR/${names[$i]}" \
    --listen-client-urls "http://127.0.0.1:${client_ports[$i]}" \
    --advertise-client-urls "http://127.0.0.1:${client_ports[$i]}" \
    --listen-peer-urls "http://127.0.0.1:${peer_ports[$i]}" \
    --initial-advertise-peer-urls "http://127.0.0.1:${peer_ports[$i]}" \
    --listen-metrics-urls "http://127.0.0.1:${metrics_ports[$i]}" \
    --initial-cluster "$cluster" --initial-cluster-token conclave-run \
    --initial-cluster-state new --initial-range-count 4 "${serve_args[@]}" \
    >>"$LOGS/${names[$i]}.log" 2>&1 &
  pids[i]=$!
  up[i]=1
}

serve_args=("$@")
up=()
for i in 0 1 2; do start_member "$i"; done

endpoints="127.0.0.1:${client_ports[0]},127.0.0.1:${client_ports[1]},127.0.0.1:${client_ports[2]}"
cat <<MSG
Conclave: a 3-member cluster is running (data in $DIR, logs in $LOGS).
  client endpoints: $endpoints
  metrics/health:   http://127.0.0.1:${metrics_ports[0]}/metrics  http://127.0.0.1:${metrics_ports[0]}/health
  ranges page:      http://127.0.0.1:${metrics_ports[0]}/ranges
  try:              $BIN --endpoints=$endpoints put greeting hello
                    $BIN --endpoints=$endpoints get greeting
                    $BIN --endpoints=$endpoints lock mylock -- echo "holding mylock"
                    $BIN --endpoints=$endpoints kv put k1 v1; $BIN --endpoints=$endpoints range list
                    (etcdctl works too: ETCDCTL_API=3 etcdctl --endpoints=$endpoints get greeting)
  A member that exits is reported and the others keep serving (kill one to
  try a failover); type "restart" (or "restart m2") to start it again,
  "stop" or Ctrl-C to stop all three.
MSG

# Watches the members and reads commands, once a second.
stdin_open=1
while :; do
  for i in 0 1 2; do
    if ((up[i])) && ! alive "${pids[$i]}"; then
      up[i]=0
      code=0
      wait "${pids[$i]}" || code=$?
      echo "member ${names[$i]} exited (code $code; log: $LOGS/${names[$i]}.log);" \
        "the others keep serving. Type \"restart ${names[$i]}\" to start it again." >&2
    fi
  done
  if ((stdin_open)); then
    line=""
    if read -r -t 1 line; then
      case "$line" in
        restart | "restart "*)
          want=${line#restart}
          want=${want# }
          started=0
          for i in 0 1 2; do
            if [[ -z "$want" || "$want" == "${names[$i]}" ]] && ((!up[i])); then
              start_member "$i"
              echo "member ${names[$i]} started again (pid ${pids[$i]})"
              started=1
            fi
          done
          ((started)) || echo "no member to restart: ${want:-all are running}" >&2
          ;;
        stop | quit | exit) break ;;
        "") ;;
        *) echo "commands: restart [m1|m2|m3], stop" >&2 ;;
      esac
    elif (($? <= 128)); then
      stdin_open=0  # end of input (not a terminal): just watch
    fi
  else
    sleep 1
  fi
done
stop
