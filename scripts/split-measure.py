#!/usr/bin/env python3
"""Range splits measured on 3-member loopback clusters (docs/PERFORMANCE.md).

    scripts/split-measure.py [--binary build/release/conclave] [--seconds 10]

1. latency: 30 splits by hand, one after another (the Split call: a
   conditional put in the meta range, then the split in the range's log),
   each followed by a write to the new range (which waits for its first
   leader).
2. writes under splits: `conclave bench native-put` (32 clients) without
   splits, then with a split every half second; throughput and errors.
3. load splits: one user range, --range-split-qps 400 over a 2 s window,
   native-put at full speed; the user ranges every second.

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
import threading
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.path.insert(0, os.path.join(ROOT, "clients", "python"))

import cluster  # noqa: E402
import conclave  # noqa: E402


def start(binary, flags):
    workdir = tempfile.mkdtemp(prefix="conclave-split-")
    c = cluster.Cluster(binary, 3, workdir, extra_flags=flags)
    c.start()
    eps = ["127.0.0.1:%d" % m.client_port for m in c.members]
    client = conclave.Client(eps)
    cluster.wait_until(lambda: client.put(b"warm-up", b"1"), 30, what="a first put")
    return c, client, eps


def bench(binary, eps, seconds):
    out = subprocess.run(
        [binary, "bench", "native-put", "--endpoints", ",".join(eps), "--clients", "32",
         "--conns", "8", "--duration", "%ds" % seconds, "--val-size", "256", "-w", "json"],
        capture_output=True, text=True, timeout=seconds + 60)
    if out.returncode != 0:
        raise RuntimeError("bench failed: %s" % out.stderr[-500:])
    return json.loads(out.stdout)


def user_ranges(client):
    return [r for r in client.ranges() if r.start < conclave.SYSTEM_KEYS]


def latency(binary):
    c, client, _ = start(binary, ["--initial-range-count", "8"])
    try:
        splits, first_writes = [], []
        for i in range(30):
            t0 = time.monotonic()
            client.split(b"lat/%03d" % i)
            t1 = time.monotonic()
            # The first write to the new range waits for its first leader.
            client.put(b"lat/%03d/x" % i, b"v")
            splits.append((t1 - t0) * 1000)
            first_writes.append((time.monotonic() - t1) * 1000)
        return {"splits": len(splits), "split_ms": figures(splits),
                "first_write_to_new_range_ms": figures(first_writes)}
    finally:
        client.close()
        c.close()


def figures(values):
    values = sorted(values)
    return {"p50": round(statistics.median(values), 2),
            "p90": round(values[int(len(values) * 0.9)], 2), "max": round(values[-1], 2)}


def under_splits(binary, seconds):
    c, client, eps = start(binary, ["--initial-range-count", "8"])
    try:
        quiet = bench(binary, eps, seconds)
        stop = threading.Event()
        done = []

        def splitter():
            i = 0
            while not stop.wait(0.5):
                # Keys spread like native-put's, so the splits land in its ranges.
                client.split(bytes([(i * 37) % 255, (i * 91) % 256]) + b"split")
                done.append(i)
                i += 1

        t = threading.Thread(target=splitter)
        t.start()
        try:
            busy = bench(binary, eps, seconds)
        finally:
            stop.set()
            t.join(30)
        return {"without_splits": summary(quiet), "with_splits": summary(busy),
                "splits_during_run": len(done), "ranges_after": len(user_ranges(client))}
    finally:
        client.close()
        c.close()


def summary(report):
    lat = report["latency_ms"]
    return {"ops_per_s": round(report["throughput_ops_per_s"]), "ops": report["ops"],
            "errors": report["errors"], "p50_ms": round(lat["p50"], 2),
            "p99_ms": round(lat["p99"], 2), "error_messages": report["error_messages"]}


def load_splits(binary, seconds):
    c, client, eps = start(binary, ["--initial-range-count", "1", "--range-split-qps", "400",
                                    "--range-load-window", "2", "--range-split-bytes", "0"])
    try:
        timeline = []
        stop = threading.Event()
        t0 = time.monotonic()

        def watch():
            while not stop.wait(1.0):
                timeline.append((round(time.monotonic() - t0, 1), len(user_ranges(client))))

        t = threading.Thread(target=watch)
        t.start()
        try:
            report = bench(binary, eps, 3 * seconds)
        finally:
            stop.set()
            t.join(30)
        return {"bench": summary(report), "user_ranges_over_time": timeline}
    finally:
        client.close()
        c.close()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--binary", default=os.path.join(ROOT, "build", "release", "conclave"))
    p.add_argument("--seconds", type=int, default=10)
    args = p.parse_args()
    binary = os.path.abspath(args.binary)
    out = {"latency": latency(binary), "writes_under_splits": under_splits(binary, args.seconds),
           "load_splits": load_splits(binary, args.seconds)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
