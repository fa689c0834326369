#!/usr/bin/env python3
"""Moves a replica of a range holding about 64 MiB to a fourth member, with
snapshot sends limited and unlimited, and reports how long each move took and
what the metrics say (docs/PERFORMANCE.md, "Snapshot throttling").

    scripts/snapshot-throttle-measure.py [--binary build/release/conclave] [--mib 64]
"""

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
sys.path.insert(0, os.path.join(ROOT, "clients", "python"))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

import cluster  # noqa: E402
import conclave  # noqa: E402


def metric(member, name):
    with urllib.request.urlopen(member.metrics_url + "/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


def one(binary, limit, mib):
    flags = ("--initial-range-count", "1", "--range-replicas", "3", "--range-split-bytes", "0",
             "--range-split-qps", "0", "--range-placement-interval", "0",
             "--snapshot-send-bytes-per-second", str(limit))
    c = cluster.make_cluster(binary, 4, "throttle%d" % limit, flags)
    try:
        ids = sorted(c.member_id(k) for k in range(4))
        index = {c.member_id(k): k for k in range(4)}
        eps = ["127.0.0.1:%d" % m.client_port for m in c.members]
        with conclave.Client(eps) as cl:
            cluster.wait_until(lambda: cl.put(b"warm", b"1"), 30, what="a first put")
            n = mib * 64  # 16 KiB values
            subprocess.run([binary, "bench", "native-put", "--endpoints", ",".join(eps),
                            "--clients", "8", "--conns", "4", "--total", str(n),
                            "--key-space", str(n), "--sequential-keys", "--val-size", "16384",
                            "-w", "json"], check=True, capture_output=True, timeout=600)
            r = next(x for x in cl.ranges(cluster=True) if x.range_id == 16)
            holders = [p.node_id for p in r.replicas]
            with conclave.Client([eps[index[holders[0]]]]) as hc:
                r = next(x for x in hc.ranges() if x.range_id == 16)
            src = holders[0]
            dst = next(x for x in ids if x not in holders)
            coord = holders[1]
            with conclave.Client([eps[index[coord]]], timeout=600) as cc:
                t0 = time.monotonic()
                cc.move_replica(16, src, dst, timeout=600)
                took = time.monotonic() - t0
        sent = sum(metric(m, "conclave_snapshot_sent_bytes_total") for m in c.members)
        waited = sum(metric(m, "conclave_snapshot_throttled_seconds_total") for m in c.members)
        return {"limit_bytes_per_s": limit, "range_bytes": r.bytes, "move_s": round(took, 2),
                "snapshot_bytes_sent": int(sent), "throttled_s": round(waited, 2)}
    finally:
        c.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--binary", default=os.path.join(ROOT, "build", "release", "conclave"))
    p.add_argument("--mib", type=int, default=64)
    args = p.parse_args()
    for limit in (0, 32 << 20, 8 << 20):
        print(json.dumps(one(os.path.abspath(args.binary), limit, args.mib)), flush=True)


if __name__ == "__main__":
    main()
