#!/usr/bin/env python3
"""Forwarding and replica moves measured on a 4-member loopback cluster
(docs/PERFORMANCE.md).

    scripts/route-measure.py [--binary build/release/conclave] [--seconds 10] [--rounds 3]

One user range of three replicas on four members (the placement driver off),
so one member holds no replica of it.

1. forwarding: `conclave bench native-put` (32 clients, 256-byte values)
   through the range's leader, through a follower holding a replica, and
   through the member without one (every request forwarded over the peer
   listener), and by a client given all four members, which routes each
   request to the range's leader; rounds interleaved; throughput, latency
   and the server CPU
   per operation (all four members' user and system time, the generator
   excluded), medians over the rounds.
2. moves: the range filled with 16 MiB, then its replica moved from a
   follower to the member without one and back, `--rounds` times each way;
   the MoveReplica call's duration (learner, snapshot, catch-up, promotion,
   removal).

Clusters run on loopback ports from tests/integration/cluster.py; every
process started here is stopped by its pid.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.path.insert(0, os.path.join(ROOT, "clients", "python"))

import cluster  # noqa: E402
import conclave  # noqa: E402
from cgroup_caps import cpu_seconds  # noqa: E402


def bench(binary, endpoint, seconds, pids):
    before = cpu_seconds(pids)
    out = subprocess.run(
        [binary, "bench", "native-put", "--endpoints", endpoint, "--clients", "32", "--conns",
         "8", "--duration", "%ds" % seconds, "--val-size", "256", "-w", "json"],
        capture_output=True, text=True, timeout=seconds + 60)
    cpu = cpu_seconds(pids) - before
    if out.returncode != 0:
        raise RuntimeError("bench failed: %s" % out.stderr[-500:])
    r = json.loads(out.stdout)
    return {"ops_per_s": r["throughput_ops_per_s"], "p50_ms": r["latency_ms"]["p50"],
            "p99_ms": r["latency_ms"]["p99"], "errors": r["errors"],
            "cpu_us_per_op": 1e6 * cpu / max(r["ops"], 1)}


def medians(rows):
    return {k: round(statistics.median(row[k] for row in rows), 2) for k in rows[0]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(ROOT, "build", "release", "conclave"))
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    workdir = tempfile.mkdtemp(prefix="conclave-route-")
    c = cluster.Cluster(args.binary, 4, workdir, extra_flags=[
        "--initial-range-count", "1", "--range-replicas", "3", "--range-placement-interval", "0",
        "--range-split-bytes", "0", "--range-split-qps", "0"])
    c.start()
    try:
        eps = {c.member_id(i): "127.0.0.1:%d" % c.members[i].client_port for i in range(4)}
        pids = [m.proc.pid for m in c.members]
        client = conclave.Client(list(eps.values()))
        cluster.wait_until(lambda: client.put(b"warm-up", b"1"), 30, what="a first put")
        r = next(r for r in client.ranges(cluster=True) if r.range_id == 16)
        holders = [p.node_id for p in r.replicas]
        lacking = next(n for n in eps if n not in holders)

        def leader():
            with conclave.Client([eps[holders[0]]]) as h:
                return next(x for x in h.ranges() if x.range_id == 16).leader_node
        lead = leader()
        follower = next(n for n in holders if n != lead)
        paths = {"leader": eps[lead], "follower": eps[follower], "forwarded": eps[lacking],
                 "routed": ",".join(eps.values())}
        rows = {k: [] for k in paths}
        for _ in range(args.rounds):
            for name, endpoint in paths.items():
                rows[name].append(bench(args.binary, endpoint, args.seconds, pids))
        forwarding = {k: medians(v) for k, v in rows.items()}

        # Moves of a 16 MiB range.
        value = os.urandom(4096)
        for i in range(4096):
            client.put(b"move/%05d" % i, value)
        size = next(x for x in client.ranges(cluster=True) if x.range_id == 16)
        moves = []
        a, b = follower, lacking
        for _ in range(args.rounds):
            for src, dst in ((a, b), (b, a)):
                with conclave.Client([eps[lead]]) as coord:
                    t0 = time.monotonic()
                    coord.move_replica(16, src, dst)
                    moves.append((time.monotonic() - t0) * 1000)
        with conclave.Client([eps[lead]]) as h:
            bytes_ = next(x for x in h.ranges() if x.range_id == 16).bytes
        moves.sort()
        print(json.dumps({
            "forwarding": forwarding,
            "moves": {"range_bytes": bytes_, "count": len(moves),
                      "p50_ms": round(statistics.median(moves), 1),
                      "max_ms": round(moves[-1], 1)},
            "generation_before_moves": size.generation,
        }, indent=2))
        client.close()
    finally:
        c.close()


if __name__ == "__main__":
    main()
