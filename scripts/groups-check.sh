#!/usr/bin/env bash
# `make groups-check`: many Raft groups per process, measured.
#
# 1. Idle: three members on loopback whose new cluster has RANGES native
#    ranges (default 1000), each a Raft group with a replica on every member.
#    Once every range has a leader and has quiesced, each member's CPU (user +
#    system, from /proc/PID/stat) over IDLE_SECONDS and its resident memory
#    are reported.
# 2. Load: a new cluster with LOAD_RANGES ranges (default 100) under
#    `conclave bench native-put` for LOAD_SECONDS; the members' log-writer
#    counters (/metrics) show how many groups one WAL sync carried.
#
# Everything runs from build/release, on ports 42379.. that this script
# uses alone; every process it started is stopped by its pid on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${CONCLAVE_BIN:-build/release/conclave}
RANGES=${RANGES:-1000}
LOAD_RANGES=${LOAD_RANGES:-100}
IDLE_SECONDS=${IDLE_SECONDS:-60}
LOAD_SECONDS=${LOAD_SECONDS:-15}
DIR=$(mktemp -d /tmp/conclave-groups-XXXXXX)
TICKS=$(getconf CLK_TCK)

names=(g1 g2 g3)
client_ports=(42379 42479 42579)
peer_ports=(42380 42480 42580)
metrics_ports=(42381 42481 42581)
pids=()

cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
}
trap 'cleanup; rm -rf "$DIR"' EXIT

start_cluster() {  # $1: ranges, $2: data dir
  mkdir -p "$2"
  local cluster=""
  for i in 0 1 2; do cluster+="${cluster:+,}${names[$i]}=http://127.0.0.1:${peer_ports[$i]}"; done
  for i in 0 1 2; do
    "$BIN" serve --name "${names[$i]}" --data-dir "$2/${names[$i]}" \
      --listen-client-urls "http://127.0.0.1:${client_ports[$i]}" \
      --advertise-client-urls "http://127.0.0.1:${client_ports[$i]}" \
      --listen-peer-urls "http://127.0.0.1:${peer_ports[$i]}" \
      --initial-advertise-peer-urls "http://127.0.0.1:${peer_ports[$i]}" \
      --listen-metrics-urls "http://127.0.0.1:${metrics_ports[$i]}" \
      --initial-cluster "$cluster" --initial-cluster-token groups-check \
      --initial-cluster-state new --initial-range-count "$1" \
      --log-level warn >"$2/${names[$i]}.log" 2>&1 &
    pids+=($!)
  done
}

cpu_ticks() {  # utime + stime of pid $1
  awk '{print $14 + $15}' "/proc/$1/stat"
}

rss_mib() {
  awk '/VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"
}

# Waits (bounded) until every member reports every range led and quiesced
# (the user ranges and the meta range).
wait_quiesced() {  # $1: user ranges
  local deadline=$((SECONDS + 300))
  local all_ranges=$(($1 + 1))
  while ((SECONDS < deadline)); do
    local all=1
    for i in 0 1 2; do
      local line
      line=$("$BIN" --endpoints "127.0.0.1:${client_ports[$i]}" range list 2>/dev/null | tail -1 || true)
      [[ "$line" == "$all_ranges ranges, $all_ranges quiesced" ]] || all=0
    done
    ((all)) && return 0
    sleep 2
  done
  echo "groups-check: the ranges did not all quiesce within 300 s" >&2
  return 1
}

echo "== idle: $RANGES ranges on 3 members"
start_cluster "$RANGES" "$DIR/idle"
t0=$SECONDS
wait_quiesced "$RANGES"
echo "every range led and quiesced $((SECONDS - t0)) s after start"
sleep 5
before=()
for i in 0 1 2; do before+=("$(cpu_ticks "${pids[$i]}")"); done
sleep "$IDLE_SECONDS"
printf "%-8s %12s %10s\n" member "cpu %" "rss MiB"
for i in 0 1 2; do
  used=$(($(cpu_ticks "${pids[$i]}") - before[i]))
  pct=$(awk -v t="$used" -v hz="$TICKS" -v s="$IDLE_SECONDS" 'BEGIN {printf "%.2f", 100 * t / hz / s}')
  printf "%-8s %12s %10s\n" "${names[$i]}" "$pct" "$(rss_mib "${pids[$i]}")"
done
cleanup

echo "== load: $LOAD_RANGES ranges, native-put for ${LOAD_SECONDS}s"
start_cluster "$LOAD_RANGES" "$DIR/load"
wait_quiesced "$LOAD_RANGES"
endpoints="127.0.0.1:${client_ports[0]},127.0.0.1:${client_ports[1]},127.0.0.1:${client_ports[2]}"
metrics() {  # $1: member index
  python3 -c "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode())" \
    "http://127.0.0.1:${metrics_ports[$1]}/metrics"
}
metric() { awk -v m="$1" '$1 == m {print $2}'; }  # stdin: a member's metrics
before=()
sent_before=()
for i in 0 1 2; do
  before+=("$(cpu_ticks "${pids[$i]}")")
  sent_before+=("$(metrics "$i" | metric conclave_network_messages_sent_total)")
done
"$BIN" bench native-put --endpoints "$endpoints" --clients 64 --conns 16 \
  --duration "${LOAD_SECONDS}s" --key-space 100000 --val-size 256 | tee "$DIR/bench.txt"
# Server CPU per put: the three members' user + system time (the generator
# excluded) over the puts done.
used=0
for i in 0 1 2; do used=$((used + $(cpu_ticks "${pids[$i]}") - before[i])); done
ops=$(awk '$1 == "ops:" {print $2; exit}' "$DIR/bench.txt")
awk -v t="$used" -v hz="$TICKS" -v n="$ops" \
  'BEGIN {printf "server CPU: %.1f s for %d puts, %.0f us per put\n", t / hz, n, n ? 1e6 * t / hz / n : 0}'
# Peer messages per put: what each member sent to the others during the puts
# (Raft appends, acknowledgements, heartbeats, forwarded requests).
printf "%-8s %12s %12s %16s %12s %14s\n" member "wal syncs" "log writes" "groups/write" "max groups" \
  "msgs/put"
for i in 0 1 2; do
  m=$(metrics "$i")
  writes=$(metric conclave_host_log_writes_total <<<"$m")
  groups=$(metric conclave_host_log_write_groups_total <<<"$m")
  sent=$(($(metric conclave_network_messages_sent_total <<<"$m") - sent_before[i]))
  printf "%-8s %12s %12s %16s %12s %14s\n" "${names[$i]}" "$(metric conclave_wal_syncs_total <<<"$m")" \
    "$writes" "$(awk -v g="$groups" -v w="$writes" 'BEGIN {printf "%.2f", w ? g / w : 0}')" \
    "$(metric conclave_host_log_write_groups_max <<<"$m")" \
    "$(awk -v s="$sent" -v n="$ops" 'BEGIN {printf "%.2f", n ? s / n : 0}')"
done
