#!/usr/bin/env python3
"""Removes one of four members from a cluster whose native keyspace starts as
RANGES ranges of three replicas (each holding KIB KiB), and reports how long
the placement driver took to make the removed member's replicas again on the
other three (docs/PERFORMANCE.md, "Re-replication"), with each move's
duration from the members' logs.

    scripts/rereplication-measure.py [--binary build/release/conclave] [--ranges 24] [--kib 256]
"""

import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
sys.path.insert(0, os.path.join(ROOT, "clients", "python"))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

import cluster  # noqa: E402
import conclave  # noqa: E402

MOVING = re.compile(r"^(\S+)Z info range (\d+): moving replica \d+ from node")
MOVED = re.compile(r"^(\S+)Z info range (\d+): moved replica from node")


def log_moves(c):
    """{range id: seconds} from each move's start to its end in the logs."""
    began, took = {}, {}
    for m in c.members:
        with open(m.log_path, errors="replace") as f:
            for line in f:
                for pattern, into in ((MOVING, began), (MOVED, took)):
                    hit = pattern.match(line)
                    if hit:
                        t = datetime.datetime.fromisoformat(hit.group(1)).timestamp()
                        into[int(hit.group(2))] = t
    return {r: took[r] - began[r] for r in took if r in began}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--binary", default=os.path.join(ROOT, "build", "release", "conclave"))
    p.add_argument("--ranges", type=int, default=24)
    p.add_argument("--kib", type=int, default=256)
    args = p.parse_args()
    binary = os.path.abspath(args.binary)
    flags = ("--initial-range-count", str(args.ranges), "--range-replicas", "3",
             "--range-split-bytes", "0", "--range-split-qps", "0",
             "--range-placement-interval", "1")
    c = cluster.make_cluster(binary, 4, "rereplication", flags)
    try:
        eps = ["127.0.0.1:%d" % m.client_port for m in c.members]
        with conclave.Client(eps) as cl:
            cluster.wait_until(lambda: cl.put(b"warm", b"1"), 30, what="a first put")
            # KIB KiB in every range: keys spread evenly over the first two bytes.
            n = args.ranges * args.kib // 16
            subprocess.run([binary, "bench", "native-put", "--endpoints", ",".join(eps),
                            "--clients", "8", "--conns", "4", "--total", str(n),
                            "--key-space", str(n), "--val-size", "16384", "-w", "json"],
                           check=True, capture_output=True, timeout=600)
            gone_index = 3
            gone = c.member_id(gone_index)
            held = sum(any(p.node_id == gone for p in r.replicas) for r in cl.ranges(cluster=True))
            t0 = time.monotonic()
            c.remove_member(0, gone_index)
            c.wait_removed_exit(gone_index)
        with conclave.Client(eps[:3]) as cl:
            def whole():
                return all(len(r.replicas) == 3 and not any(p.node_id == gone or p.learner
                                                             for p in r.replicas)
                           for r in cl.ranges(cluster=True))
            cluster.wait_until(whole, 600, interval_s=0.2, what="every range whole again")
            took = time.monotonic() - t0
        moves = sorted(log_moves(c).values())
        print(json.dumps({
            "ranges": args.ranges, "kib_per_range": args.kib, "replicas_remade": held,
            "seconds_until_whole": round(took, 2), "moves_logged": len(moves),
            "move_s_median": round(moves[len(moves) // 2], 2) if moves else None,
            "move_s_sum": round(sum(moves), 2)}), flush=True)
    finally:
        c.close()


if __name__ == "__main__":
    main()
