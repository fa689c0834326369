#!/usr/bin/env python3
"""Moves a replica of a range holding about 64 MiB to a fourth member, with
snapshot sends limited and unlimited, and reports how long each move took and
what the metrics say (docs/PERFORMANCE.md, "Snapshot pacing").

    scripts/snapshot-throttle-measure.py [--binary build/release/conclave] [--mib 64]
        [--cap 0.25 --foreground 4] [--rounds 3]

With --foreground N, N clients put 256-byte values into the same range, one
put at a time each, from 3 s before the move until 1 s after it, and the
latencies of the puts that started before the move and during it are
reported. With --cap C every member is held to C of a core (a cgroup each,
the clients outside; needs root), so the snapshot's sending and the
foreground's puts compete for the leader's CPU as on a busy machine.
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
sys.path.insert(0, os.path.join(ROOT, "clients", "python"))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

import cluster  # noqa: E402
import conclave  # noqa: E402
from cgroup_caps import Caps  # noqa: E402


def metric(member, name):
    with urllib.request.urlopen(member.metrics_url + "/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


def percentile(values, q):
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 1)


class Foreground:
    """`n` clients putting into the range one put at a time each; every put's
    start (monotonic) and latency are kept."""

    def __init__(self, endpoints, n):
        self.samples = []
        self.errors = 0
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(endpoints, i)) for i in range(n)]
        for t in self.threads:
            t.start()

    def run(self, endpoints, i):
        value = b"f" * 256
        with conclave.Client(endpoints, timeout=30) as cl:
            k = 0
            while not self.stop.is_set():
                t0 = time.monotonic()
                try:
                    cl.put(b"fg/%d/%d" % (i, k % 1000), value)
                except Exception:  # noqa: BLE001 (counted; the run reports them)
                    with self.lock:
                        self.errors += 1
                    time.sleep(0.05)
                    continue
                with self.lock:
                    self.samples.append((t0, time.monotonic() - t0))
                k += 1

    def close(self):
        self.stop.set()
        for t in self.threads:
            t.join()

    def window(self, start, end):
        lat = [d for (t, d) in self.samples if start <= t < end]
        span = max(end - start, 1e-9)
        return {"puts_per_s": round(len(lat) / span), "p50_ms": percentile(lat, 0.50),
                "p99_ms": percentile(lat, 0.99),
                "max_ms": round(max(lat) * 1000, 1) if lat else None}


def one(binary, limit, mib, cap, foreground):
    flags = ("--initial-range-count", "1", "--range-replicas", "3", "--range-split-bytes", "0",
             "--range-split-qps", "0", "--range-placement-interval", "0",
             "--snapshot-send-bytes-per-second", str(limit))
    c = cluster.make_cluster(binary, 4, "throttle%d" % limit, flags)
    caps = Caps(cap) if cap else None
    fg = None
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
            if caps:
                for m in c.members:
                    caps.add(m.proc.pid)
            if foreground:
                fg = Foreground(eps, foreground)
                time.sleep(3)
            with conclave.Client([eps[index[coord]]], timeout=600) as cc:
                t0 = time.monotonic()
                cc.move_replica(16, src, dst, timeout=600)
                took = time.monotonic() - t0
            if fg:
                time.sleep(1)
                fg.close()
        sent = sum(metric(m, "conclave_snapshot_sent_bytes_total") for m in c.members)
        waited = sum(metric(m, "conclave_snapshot_throttled_seconds_total") for m in c.members)
        out = {"limit_bytes_per_s": limit, "range_bytes": r.bytes, "move_s": round(took, 2),
               "snapshot_bytes_sent": int(sent), "throttled_s": round(waited, 2)}
        if cap:
            out["cap"] = cap
        if fg:
            out["foreground_before"] = fg.window(t0 - 3, t0)
            out["foreground_during"] = fg.window(t0, t0 + took)
            out["foreground_errors"] = fg.errors
        return out
    finally:
        if fg:
            fg.close()
        if caps:
            caps.close()
        c.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--binary", default=os.path.join(ROOT, "build", "release", "conclave"))
    p.add_argument("--mib", type=int, default=64)
    p.add_argument("--cap", type=float, default=0.0, help="each member's share of a core (root)")
    p.add_argument("--foreground", type=int, default=0, help="clients putting during the move")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--limits", default="0,33554432,8388608", help="bytes per second, 0: none")
    args = p.parse_args()
    if args.cap and os.geteuid() != 0:
        raise SystemExit("--cap needs root (cgroups)")
    for _ in range(args.rounds):
        for limit in (int(x) for x in args.limits.split(",")):
            print(json.dumps(one(os.path.abspath(args.binary), limit, args.mib, args.cap,
                                 args.foreground)), flush=True)


if __name__ == "__main__":
    main()
