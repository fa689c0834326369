#!/usr/bin/env python3
"""Scale-out of the native keyspace: 3, 6 and 9 members, each capped to a
slice of a core, under put and linearizable get load (docs/PERFORMANCE.md).

    scripts/scale-measure.py [--binary build/release/conclave] [--sizes 3,6,9]
        [--cap 0.1] [--seconds 15] [--rounds 3] [--clients-per-member 32]

Runs as root: every member goes into a cgroup of its own (cgroup v1 `cpu`,
cpu.cfs_quota_us; or v2 cpu.max) holding it to `--cap` of a core; the load
generator (`conclave bench native-put`, then `native-get`) stays outside the
caps and is given every member, so it routes each key to its range's leader;
it keeps 32 requests in flight per member (a bigger cluster serves more
clients: with a fixed number, each of the bigger cluster's ranges sees
fewer requests at once, batches less, and costs more CPU per request).
Each cluster has 6 ranges per member, three replicas each, spread round
robin, no splits; keys are uniform over the keyspace (the benchmark's
spread), so every range gets its share. Before measuring, the script waits
(up to --balance-wait seconds) until the members' leader counts differ by
at most one (leader balancing), and records the counts.

Per size and round: throughput, latency, the members' CPU per operation
(user + system, all members, generator excluded), how much of their caps
the members used, and the generator's own CPU. Sizes are interleaved within
each round; medians over the rounds. A last run at the largest size with
twice the clients shows whether the generator was the limit.

Members listen on loopback ports (tests/integration/cluster.py); every
process and cgroup made here is removed again, processes by their pid.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, os.pardir)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.path.insert(0, os.path.join(ROOT, "clients", "python"))

import cluster  # noqa: E402
import conclave  # noqa: E402
from cgroup_caps import Caps, cpu_seconds  # noqa: E402

def bench(binary, workload, endpoints, seconds, clients, pids):
    """Runs the benchmark; the members' CPU is sampled while it runs and
    counted over its last `seconds` (the measured phase, after any setup)."""
    conns = max(1, clients // 4)
    cmd = [binary, "bench", workload, "--endpoints", ",".join(endpoints), "--clients",
           str(clients), "--conns", str(conns), "--duration", "%ds" % seconds,
           "--val-size", "256", "--key-space", "20000", "-w", "json"]
    samples = []  # (time, the members' CPU, the generator's CPU)
    # Progress lines go to a file: a full pipe would stall the generator.
    errfile = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errfile, text=True)
    deadline = time.monotonic() + seconds + 300
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            gen = cpu_seconds([proc.pid])
        except OSError:
            break  # it just exited
        samples.append((time.monotonic(), cpu_seconds(pids), gen))
        time.sleep(0.2)
    if proc.poll() is None:
        proc.kill()
    out, _ = proc.communicate()
    if proc.returncode != 0:
        errfile.seek(0)
        raise RuntimeError("bench failed: %s" % errfile.read()[-800:])
    r = json.loads(out)
    # The last sample is within 0.2 s of the end; the measured phase is the
    # `duration_s` before it.
    last = samples[-1]
    first = next(x for x in samples if x[0] >= last[0] - r["duration_s"])
    window = max(last[0] - first[0], 1e-9)
    return r, last[1] - first[1], window, (last[2] - first[2]) / window


def measure(binary, size, args, caps_cap):
    workdir = tempfile.mkdtemp(prefix="conclave-scale-%d-" % size)
    c = cluster.Cluster(binary, size, workdir, extra_flags=[
        "--initial-range-count", str(6 * size), "--range-replicas", "3",
        "--range-placement-interval", "1",
        "--range-split-bytes", "0", "--range-split-qps", "0"])
    c.start()
    caps = Caps(caps_cap)
    try:
        pids = [m.proc.pid for m in c.members]
        for pid in pids:
            caps.add(pid)
        eps = ["127.0.0.1:%d" % m.client_port for m in c.members]
        client = conclave.Client(eps, timeout=10)
        cluster.wait_until(lambda: client.put(b"warm-up", b"1"), 60, what="a first put")

        def leader_counts():
            nodes = client.nodes()
            if len(nodes) != size or any(n.state != "up" for n in nodes):
                return None
            return [n.leaders for n in nodes]

        def balanced():
            leaders = leader_counts()
            return leaders and sum(leaders) == 6 * size + 1 and max(leaders) - min(leaders) <= 1
        # Balancing hands leaderships only between members sharing a range,
        # so it may settle a little short of even: then the run goes on,
        # and the counts are in the result.
        t0 = time.monotonic()
        try:
            cluster.wait_until(balanced, args.balance_wait, interval_s=1, what="balanced leaders")
        except TimeoutError:
            pass
        balance_s = time.monotonic() - t0
        leaders = cluster.wait_until(leader_counts, 30, what="the members' reports")
        rows = {}
        for workload in ("native-put", "native-get"):
            r, cpu, wall, gen_cores = bench(binary, workload, eps, args.seconds,
                                            args.clients_per_member * size, pids)
            ops = max(r["ops"], 1)
            rows[workload] = {
                "ops_per_s": r["throughput_ops_per_s"],
                "p50_ms": r["latency_ms"]["p50"],
                "p99_ms": r["latency_ms"]["p99"],
                "errors": r["errors"],
                "cpu_us_per_op": 1e6 * cpu / ops,
                # Of the members' caps over the measured phase.
                "cap_used": cpu / (wall * caps_cap * size),
                "generator_cores": gen_cores,
            }
        client.close()
        return {"leaders": leaders, "balance_s": balance_s, **rows}
    finally:
        caps.close()
        c.close()


def medians(rows):
    out = {}
    for k in rows[0]:
        vals = [row[k] for row in rows]
        out[k] = round(statistics.median(vals), 3) if isinstance(vals[0], (int, float)) else vals
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(ROOT, "build", "release", "conclave"))
    ap.add_argument("--sizes", default="3,6,9")
    ap.add_argument("--cap", type=float, default=0.1, help="of a core, per member")
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients-per-member", type=int, default=32,
                    help="concurrent requests the generator keeps in flight, per member")
    ap.add_argument("--balance-wait", type=int, default=90,
                    help="seconds to wait for the leader counts to even out")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("cgroups need root")
    # The server's defaults: capped members miss 50 ms heartbeats.
    cluster.HEARTBEAT_INTERVAL_MS = 100
    cluster.ELECTION_TIMEOUT_MS = 1000
    sizes = [int(s) for s in args.sizes.split(",")]
    runs = {n: [] for n in sizes}
    for rnd in range(args.rounds):
        for n in sizes:
            result = measure(args.binary, n, args, args.cap)
            print("round %d, %d members: %s" % (rnd + 1, n, json.dumps(result)), file=sys.stderr)
            runs[n].append(result)
    summary = {}
    for n in sizes:
        summary[n] = {w: medians([r[w] for r in runs[n]]) for w in ("native-put", "native-get")}
        summary[n]["balance_s"] = round(statistics.median(r["balance_s"] for r in runs[n]), 1)
    base = sizes[0]
    for n in sizes:
        for w in ("native-put", "native-get"):
            summary[n][w]["vs_%d" % base] = round(
                summary[n][w]["ops_per_s"] / summary[base][w]["ops_per_s"], 2)
            summary[n][w]["linear_fraction"] = round(
                summary[n][w]["vs_%d" % base] / (n / base), 2)
    # Is the generator the limit? The largest size again with twice the
    # clients: if throughput does not rise, the members are.
    args2 = argparse.Namespace(**vars(args))
    args2.clients_per_member = 2 * args.clients_per_member
    double = measure(args.binary, sizes[-1], args2, args.cap)
    summary["largest_with_twice_the_clients"] = {
        w: {k: round(v, 3) for k, v in double[w].items()} for w in ("native-put", "native-get")}
    summary["cap_of_a_core_per_member"] = args.cap
    summary["clients_per_member"] = args.clients_per_member
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
