#!/usr/bin/env bash
# `make ab-compare A_BIN=... [B_BIN=...]`: two builds of Conclave side by side.
#
# Runs a 3-member cluster of build A, then one of build B, then A, then B...
# (ROUNDS rounds, the systems interleaved so that drift of this machine
# between minutes falls on both), each under the same `conclave bench`
# workloads (B's generator for both). For every workload it reports, per
# build, the median over the rounds of the throughput, the p50 and p99
# latency and the server CPU per operation (user + system time of the three
# members, read from /proc, over the run, divided by the operations it
# completed; the generator's own CPU is not counted), and B's ratios to A.
#
# Environment:
#   A_BIN, B_BIN        the two `conclave` binaries (B defaults to build/release/conclave)
#   ROUNDS              rounds of A-then-B (default 3)
#   BENCH_SECONDS       length of each run (default 10)
#   AB_WORKLOADS        "name:bench args" items separated by ';' (default: put with 1, 64 and
#                       256 clients, linearizable range with 64)
#   AB_PORT_BASE        first of six loopback ports (default 44379)
#
# Every process this script starts is stopped by its pid on exit; every wait
# is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."

A_BIN=${A_BIN:?set A_BIN to the baseline conclave binary}
B_BIN=${B_BIN:-build/release/conclave}
ROUNDS=${ROUNDS:-3}
BENCH_SECONDS=${BENCH_SECONDS:-10}
AB_PORT_BASE=${AB_PORT_BASE:-44379}
AB_WORKLOADS=${AB_WORKLOADS:-"put-c1:put --clients 1 --conns 1;put-c64:put --clients 64 --conns 16;put-c256:put --clients 256 --conns 64;range-l-c64:range --consistency l --clients 64 --conns 16"}
readonly KV_FLAGS=(--key-size 16 --val-size 256 --key-space 10000)
readonly SERVER_FLAGS=(--heartbeat-interval 100 --election-timeout 1000 --snapshot-count 100000)
TICKS=$(getconf CLK_TCK)

for tool in jq timeout; do command -v "$tool" >/dev/null || { echo "$tool not found" >&2; exit 1; }; done
for bin in "$A_BIN" "$B_BIN"; do [ -x "$bin" ] || { echo "$bin is not executable" >&2; exit 1; }; done

WORK=$(mktemp -d /tmp/conclave-ab-XXXXXX)
pids=()
stop_members() {
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    timeout 15 tail --pid="$pid" -f /dev/null 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  pids=()
}
trap 'stop_members; rm -rf "$WORK"' EXIT

port() { echo $((AB_PORT_BASE + $1)); }
endpoints() { echo "127.0.0.1:$(port 0),127.0.0.1:$(port 2),127.0.0.1:$(port 4)"; }

start_cluster() {  # $1: binary, $2: data dir
  local i cluster=""
  for i in 0 1 2; do cluster+="${cluster:+,}m$i=http://127.0.0.1:$(port $((2 * i + 1)))"; done
  mkdir -p "$2"
  for i in 0 1 2; do
    "$1" serve --name "m$i" --data-dir "$2/m$i" \
      --listen-client-urls "http://127.0.0.1:$(port $((2 * i)))" \
      --advertise-client-urls "http://127.0.0.1:$(port $((2 * i)))" \
      --listen-peer-urls "http://127.0.0.1:$(port $((2 * i + 1)))" \
      --initial-advertise-peer-urls "http://127.0.0.1:$(port $((2 * i + 1)))" \
      --initial-cluster "$cluster" --initial-cluster-token ab --initial-cluster-state new \
      "${SERVER_FLAGS[@]}" --log-level warn >"$2/m$i.log" 2>&1 &
    pids+=($!)
  done
  local deadline=$((SECONDS + 30))
  until timeout 5 "$B_BIN" --endpoints "$(endpoints)" --command-timeout 2s put /ab/ready yes \
    >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || { echo "cluster of $1 not ready" >&2; exit 1; }
    sleep 0.5
  done
}

members_cpu_ticks() {
  local pid total=0
  for pid in "${pids[@]}"; do total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat"))); done
  echo "$total"
}

IFS=';' read -r -a workloads <<<"$AB_WORKLOADS"
for round in $(seq 1 "$ROUNDS"); do
  for sys in A B; do
    bin=$A_BIN
    [ "$sys" = B ] && bin=$B_BIN
    echo "== round $round, build $sys" >&2
    start_cluster "$bin" "$WORK/$sys.$round"
    for w in "${workloads[@]}"; do
      name=${w%%:*}
      read -r -a args <<<"${w#*:}"
      before=$(members_cpu_ticks)
      timeout -k 10 $((BENCH_SECONDS + 120)) "$B_BIN" bench "${args[@]}" "${KV_FLAGS[@]}" \
        --endpoints "$(endpoints)" --duration "${BENCH_SECONDS}s" -w json \
        >"$WORK/$sys.$round.$name.json" 2>/dev/null || true
      after=$(members_cpu_ticks)
      ops=$(jq -r '.ops // 0' "$WORK/$sys.$round.$name.json" 2>/dev/null || echo 0)
      awk -v t=$((after - before)) -v hz="$TICKS" -v n="$ops" \
        'BEGIN { if (n > 0) printf "%.1f\n", 1e6 * t / hz / n; else print "-" }' \
        >"$WORK/$sys.$round.$name.cpu"
    done
    stop_members
  done
done

median() {  # values on stdin, "-" skipped
  grep -v '^-$' | sort -g | awk '{v[NR] = $1} END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
stat() {  # stat SYS NAME JQ
  local r
  for r in $(seq 1 "$ROUNDS"); do
    jq -r "$3 // \"-\"" "$WORK/$1.$r.$2.json" 2>/dev/null || echo "-"
  done | median
}
cpu() {
  local r
  for r in $(seq 1 "$ROUNDS"); do cat "$WORK/$1.$r.$2.cpu" 2>/dev/null || echo "-"; done | median
}
ratio() { awk -v b="$1" -v a="$2" 'BEGIN { if (a > 0 && b != "-") printf "%.2f", b / a; else print "-" }'; }

echo
echo "A = $A_BIN ($("$A_BIN" version 2>/dev/null | head -1)), B = $B_BIN ($("$B_BIN" version 2>/dev/null | head -1));" \
  "$ROUNDS rounds A,B interleaved, ${BENCH_SECONDS}s per run, medians; CPU = server CPU per op (3 members)."
echo
printf '| %-12s | %9s | %9s | %5s | %8s | %8s | %8s | %8s | %9s | %9s | %5s |\n' workload "A ops/s" "B ops/s" "B/A" \
  "A p50 ms" "B p50 ms" "A p99 ms" "B p99 ms" "A cpu us" "B cpu us" "B/A"
printf '|%s|\n' "--------------|-----------|-----------|-------|----------|----------|----------|----------|-----------|-----------|-------"
for w in "${workloads[@]}"; do
  name=${w%%:*}
  at=$(stat A "$name" .throughput_ops_per_s)
  bt=$(stat B "$name" .throughput_ops_per_s)
  ac=$(cpu A "$name")
  bc=$(cpu B "$name")
  printf '| %-12s | %9.0f | %9.0f | %5s | %8.2f | %8.2f | %8.2f | %8.2f | %9s | %9s | %5s |\n' "$name" \
    "$at" "$bt" "$(ratio "$bt" "$at")" "$(stat A "$name" .latency_ms.p50)" \
    "$(stat B "$name" .latency_ms.p50)" "$(stat A "$name" .latency_ms.p99)" \
    "$(stat B "$name" .latency_ms.p99)" "$ac" "$bc" "$(ratio "$bc" "$ac")"
done
