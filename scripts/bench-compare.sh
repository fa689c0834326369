#!/usr/bin/env bash
# `make bench-compare`: etcd 3.4 and Conclave side by side on this machine.
#
# Starts a 3-member etcd cluster (Debian's `etcd`), runs the workloads below
# with `conclave bench`, stops it; then does the same with a 3-member
# Conclave cluster (`conclave serve`). One system runs at a time, on the same
# disk (data under one temporary directory), loopback ports and the same
# server flags; both sync their logs to disk (their defaults). Prints one
# table: throughput and p99 latency of each workload on each system, and
# each system's peak memory (the sum of VmHWM of its three processes).
#
# Workloads: put at several client counts (BENCH_PUT_CLIENTS), linearizable
# and serializable range, txn-cas, put at half of etcd's peak put rate (a
# latency run at a fixed load), and a load of BENCH_KEYS keys with 256-byte
# values (the memory run).
#
# Environment:
#   BENCH_KEYS          keys loaded by the memory run (default 1000000)
#   BENCH_SECONDS       length of each timed run (default 10)
#   BENCH_LOAD_SECONDS  upper bound of the memory run (default 900)
#   BENCH_PUT_CLIENTS   client counts of the put runs (default "1 16 64 256")
#   BENCH_CLIENTS       clients of the range and txn-cas runs (default 64)
#   BENCH_SYSTEMS       which systems, in order (default "etcd conclave")
#   BENCH_PORT_BASE     first of six loopback ports (default 43379)
#   BENCH_DIR           parent of the data directory (default build/)
#   BENCH_KEEP=1        keep data, logs and reports afterwards (kept anyway
#                       when the script fails)
#   CONCLAVE_BIN, ETCD_BIN
#
# Every process this script starts is stopped on exit by its pid; every wait
# is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."

CONCLAVE_BIN=${CONCLAVE_BIN:-build/release/conclave}
ETCD_BIN=${ETCD_BIN:-etcd}
BENCH_KEYS=${BENCH_KEYS:-1000000}
BENCH_SECONDS=${BENCH_SECONDS:-10}
BENCH_LOAD_SECONDS=${BENCH_LOAD_SECONDS:-900}
BENCH_PUT_CLIENTS=${BENCH_PUT_CLIENTS:-"1 16 64 256"}
BENCH_CLIENTS=${BENCH_CLIENTS:-64}
BENCH_SYSTEMS=${BENCH_SYSTEMS:-"etcd conclave"}
BENCH_PORT_BASE=${BENCH_PORT_BASE:-43379}
BENCH_DIR=${BENCH_DIR:-build}
BENCH_KEEP=${BENCH_KEEP:-0}

# Seconds allowed beyond a run's own duration (setup, connecting, the last
# calls' timeouts).
readonly RUN_SLACK_SECONDS=120
readonly START_WAIT_SECONDS=30
readonly STOP_WAIT_SECONDS=15
# The same server flags for both systems: etcd 3.4's defaults spelled out,
# and a quota large enough for the memory run.
readonly SERVER_FLAGS=(--heartbeat-interval 100 --election-timeout 1000 --snapshot-count 100000
  --quota-backend-bytes 8589934592)
readonly KV_FLAGS=(--key-size 16 --val-size 256)

die() {
  echo "bench-compare: $*" >&2
  exit 1
}

for tool in jq timeout "$ETCD_BIN"; do
  command -v "$tool" >/dev/null || die "$tool not found"
done
[ -x "$CONCLAVE_BIN" ] || die "$CONCLAVE_BIN not built (make build)"
if ! [[ "$BENCH_KEYS" =~ ^[1-9][0-9]*$ ]]; then die "BENCH_KEYS must be a positive number"; fi

mkdir -p "$BENCH_DIR"
WORK=$(mktemp -d "$BENCH_DIR/bench-compare.XXXXXX")
WORK=$(cd "$WORK" && pwd)
RESULTS="$WORK/results"
mkdir -p "$RESULTS"

pids=()

# Stops the members still running: SIGTERM, then SIGKILL after a bounded wait.
stop_members() {
  local pid deadline
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  deadline=$((SECONDS + STOP_WAIT_SECONDS))
  for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "bench-compare: member $pid did not stop; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
  pids=()
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_members
  # A failure keeps the logs for a look; an interrupted run leaves nothing.
  if [ "$BENCH_KEEP" = 1 ] || { [ "$rc" -ne 0 ] && [ "$rc" -ne 130 ]; }; then
    echo "bench-compare: data, logs and results kept in $WORK" >&2
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

client_port() { echo $((BENCH_PORT_BASE + 2 * $1)); }
peer_port() { echo $((BENCH_PORT_BASE + 2 * $1 + 1)); }

endpoints() {
  local i out=""
  for i in 0 1 2; do out+="${out:+,}127.0.0.1:$(client_port "$i")"; done
  echo "$out"
}

# start_cluster etcd|conclave: three members, then waits for a write to
# succeed (a leader exists and the members talk).
start_cluster() {
  local system=$1 i cluster="" cmd
  for i in 0 1 2; do cluster+="${cluster:+,}m$i=http://127.0.0.1:$(peer_port "$i")"; done
  mkdir -p "$WORK/$system"
  for i in 0 1 2; do
    if [ "$system" = etcd ]; then cmd=("$ETCD_BIN"); else cmd=("$CONCLAVE_BIN" serve); fi
    "${cmd[@]}" --name "m$i" --data-dir "$WORK/$system/m$i" \
      --listen-client-urls "http://127.0.0.1:$(client_port "$i")" \
      --advertise-client-urls "http://127.0.0.1:$(client_port "$i")" \
      --listen-peer-urls "http://127.0.0.1:$(peer_port "$i")" \
      --initial-advertise-peer-urls "http://127.0.0.1:$(peer_port "$i")" \
      --initial-cluster "$cluster" --initial-cluster-token "bench-compare-$system" \
      --initial-cluster-state new "${SERVER_FLAGS[@]}" >"$WORK/$system/m$i.log" 2>&1 &
    pids+=($!)
  done
  local deadline=$((SECONDS + START_WAIT_SECONDS))
  until timeout 5 "$CONCLAVE_BIN" --endpoints "$(endpoints)" --command-timeout 2s \
    put /bench-compare/ready yes >/dev/null 2>&1; do
    for i in "${!pids[@]}"; do
      kill -0 "${pids[$i]}" 2>/dev/null || die "$system member m$i exited; see $WORK/$system/m$i.log"
    done
    [ "$SECONDS" -lt "$deadline" ] || die "$system cluster not ready within ${START_WAIT_SECONDS}s"
    sleep 0.5
  done
}

# Sum of the members' peak resident memory, in KiB.
peak_memory_kib() {
  local pid total=0 kib
  for pid in "${pids[@]}"; do
    kib=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
    total=$((total + ${kib:-0}))
  done
  echo "$total"
}

# run SYSTEM NAME SECONDS_BOUND BENCH_ARGS...: one `conclave bench` run, its
# JSON report saved as results/SYSTEM.NAME.json (missing if it failed).
run() {
  local system=$1 name=$2 bound=$3
  shift 3
  local out="$RESULTS/$system.$name.json"
  echo "  $name: conclave bench $*" >&2
  if ! timeout -k 10 $((bound + RUN_SLACK_SECONDS)) "$CONCLAVE_BIN" bench "$@" \
    --endpoints "$(endpoints)" -w json >"$out.tmp" 2>"$RESULTS/$system.$name.err"; then
    echo "  $name failed: $(tail -n 3 "$RESULTS/$system.$name.err")" >&2
  fi
  # A run ended by `timeout` still prints its report (it stops on SIGTERM).
  if [ -s "$out.tmp" ] && jq -e . "$out.tmp" >/dev/null 2>&1; then mv "$out.tmp" "$out"; fi
  rm -f "$out.tmp"
}

field() { # field FILE JQ_PATH
  [ -f "$1" ] && jq -r "$2" "$1" || echo "-"
}

conns_for() { # a connection per 4 clients
  echo $((($1 + 3) / 4))
}

# etcd's best put run: "clients ops_per_s" (the first system measured sets
# the rate of the fixed-load latency run).
peak_put() {
  local system=$1 best_c=1 best_t=0 c t
  for c in $BENCH_PUT_CLIENTS; do
    t=$(field "$RESULTS/$system.put-c$c.json" '.throughput_ops_per_s')
    [ "$t" = "-" ] && continue
    if awk -v a="$t" -v b="$best_t" 'BEGIN { exit !(a > b) }'; then
      best_c=$c
      best_t=$t
    fi
  done
  echo "$best_c $best_t"
}

fixed_rate=""
fixed_clients=""

run_system() {
  local system=$1 c
  echo "== $system" >&2
  start_cluster "$system"
  for c in $BENCH_PUT_CLIENTS; do
    run "$system" "put-c$c" "$BENCH_SECONDS" put --clients "$c" --conns "$(conns_for "$c")" \
      --duration "${BENCH_SECONDS}s" --key-space 100000 "${KV_FLAGS[@]}"
  done
  if [ -z "$fixed_rate" ]; then
    read -r fixed_clients peak < <(peak_put "$system")
    fixed_rate=$(awk -v p="$peak" 'BEGIN { printf "%d", p / 2 }')
    [ "$fixed_rate" -ge 1 ] || fixed_rate=1
    echo "  $system peaks at $peak puts/s with $fixed_clients clients; fixed-load rate $fixed_rate/s" >&2
  fi
  local cc=$BENCH_CLIENTS ccn
  ccn=$(conns_for "$cc")
  run "$system" range-l "$BENCH_SECONDS" range --consistency l --clients "$cc" --conns "$ccn" \
    --duration "${BENCH_SECONDS}s" --key-space 10000 "${KV_FLAGS[@]}"
  run "$system" range-s "$BENCH_SECONDS" range --consistency s --clients "$cc" --conns "$ccn" \
    --duration "${BENCH_SECONDS}s" --key-space 10000 "${KV_FLAGS[@]}"
  run "$system" txn-cas "$BENCH_SECONDS" txn-cas --clients "$cc" --conns "$ccn" \
    --duration "${BENCH_SECONDS}s" --key-space 1000 "${KV_FLAGS[@]}"
  run "$system" put-fixed "$BENCH_SECONDS" put --clients "$fixed_clients" \
    --conns "$(conns_for "$fixed_clients")" --rate "$fixed_rate" --duration "${BENCH_SECONDS}s" \
    --key-space 100000 "${KV_FLAGS[@]}"
  run "$system" load "$BENCH_LOAD_SECONDS" put --clients 64 --conns 16 --prefix /load/ \
    --sequential-keys --key-space "$BENCH_KEYS" --total "$BENCH_KEYS" \
    --duration "${BENCH_LOAD_SECONDS}s" "${KV_FLAGS[@]}"
  peak_memory_kib >"$RESULTS/$system.memory"
  stop_members
}

ratio() { # ratio CONCLAVE ETCD
  if [ "$1" = "-" ] || [ "$2" = "-" ]; then echo "-"; return; fi
  awk -v c="$1" -v e="$2" 'BEGIN { if (e > 0) printf "%.2f", c / e; else print "-" }'
}

fmt_num() { # fmt_num VALUE DECIMALS
  if [ "$1" = "-" ]; then echo "-"; else awk -v v="$1" -v d="$2" 'BEGIN { printf "%.*f", d, v }'; fi
}

print_row() { # print_row LABEL NAME
  local e="$RESULTS/etcd.$2.json" c="$RESULTS/conclave.$2.json"
  local et ct ep cp ee ce
  et=$(field "$e" '.throughput_ops_per_s')
  ct=$(field "$c" '.throughput_ops_per_s')
  ep=$(field "$e" '.latency_ms.p99')
  cp=$(field "$c" '.latency_ms.p99')
  ee=$(field "$e" '.errors')
  ce=$(field "$c" '.errors')
  printf '| %-28s | %12s | %14s | %6s | %10s | %10s | %6s | %10s |\n' "$1" \
    "$(fmt_num "$et" 0)" "$(fmt_num "$ct" 0)" "$(ratio "$ct" "$et")" \
    "$(fmt_num "$ep" 2)" "$(fmt_num "$cp" 2)" "$(ratio "$cp" "$ep")" "$ee/$ce"
}

print_table() {
  echo
  echo "etcd $("$ETCD_BIN" --version 2>/dev/null | awk '/etcd Version/ {print $3}') vs" \
    "$("$CONCLAVE_BIN" version): 3 members each on 127.0.0.1, $(nproc) CPUs," \
    "data in $WORK ($(df -PT "$WORK" | awk 'NR == 2 {print $2}')), ${BENCH_SECONDS}s per run," \
    "key 16 B, value 256 B. Ratios are Conclave / etcd."
  echo
  printf '| %-28s | %12s | %14s | %6s | %10s | %10s | %6s | %10s |\n' workload "etcd ops/s" \
    "Conclave ops/s" ratio "etcd p99" "Concl. p99" ratio "errors e/c"
  printf '|%s|%s|%s|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..30})" \
    "$(printf -- '-%.0s' {1..14})" "$(printf -- '-%.0s' {1..16})" "$(printf -- '-%.0s' {1..8})" \
    "$(printf -- '-%.0s' {1..12})" "$(printf -- '-%.0s' {1..12})" "$(printf -- '-%.0s' {1..8})" \
    "$(printf -- '-%.0s' {1..12})"
  local c
  for c in $BENCH_PUT_CLIENTS; do print_row "put, $c clients" "put-c$c"; done
  print_row "range linearizable, $BENCH_CLIENTS cl." range-l
  print_row "range serializable, $BENCH_CLIENTS cl." range-s
  print_row "txn-cas, $BENCH_CLIENTS clients" txn-cas
  print_row "put at ${fixed_rate:-?}/s, ${fixed_clients:-?} cl." put-fixed
  print_row "load $BENCH_KEYS keys, 64 cl." load
  echo
  echo "p99 in ms. Memory run: BENCH_KEYS=$BENCH_KEYS;" \
    "keys written: etcd $(field "$RESULTS/etcd.load.json" '.ops')," \
    "Conclave $(field "$RESULTS/conclave.load.json" '.ops')."
  local em cm
  em=$(cat "$RESULTS/etcd.memory" 2>/dev/null || echo "-")
  cm=$(cat "$RESULTS/conclave.memory" 2>/dev/null || echo "-")
  printf 'Peak memory (sum of VmHWM of 3 members): etcd %s MiB, Conclave %s MiB, ratio %s\n' \
    "$([ "$em" = "-" ] && echo - || echo $((em / 1024)))" \
    "$([ "$cm" = "-" ] && echo - || echo $((cm / 1024)))" "$(ratio "$cm" "$em")"
}

for system in $BENCH_SYSTEMS; do
  case "$system" in
    etcd | conclave) run_system "$system" ;;
    *) die "unknown system $system in BENCH_SYSTEMS (use etcd and/or conclave)" ;;
  esac
done
print_table
