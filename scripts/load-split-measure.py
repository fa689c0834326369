#!/usr/bin/env python3
"""A hot range splits by load and its leaders spread, with the members capped
to a slice of a core each (docs/PERFORMANCE.md).

    scripts/load-split-measure.py [--binary build/release/conclave] [--members 3]
        [--cap 0.1] [--seconds 60] [--split-qps 100] [--svg docs/img/load-split.svg]

Runs as root (cgroup caps, scripts/cgroup_caps.py). A new cluster with one
user range (three replicas), load splits at --split-qps requests per second
per member over 2-second windows, leader balancing every second, no size
splits. `conclave bench native-put` (32 requests in flight per member,
uniform keys, given every member) runs outside the caps for --seconds; its
per-second progress gives the throughput, and the members' Nodes reports
(every second) give the user ranges and each member's leader count. Prints
a table every 5 s and a JSON summary; writes the figure as SVG.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, os.pardir)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.path.insert(0, os.path.join(ROOT, "clients", "python"))

import cluster  # noqa: E402
import conclave  # noqa: E402
from cgroup_caps import Caps  # noqa: E402

PROGRESS = re.compile(r"native-put: (\d+)s\s+(\d+) ok\s+(\d+) errors\s+(\d+)/s")


def svg(samples, rate, path):
    """Throughput (line) and user ranges and the busiest member's leader
    share (steps) over time."""
    w, h, left, bottom, top = 720, 300, 60, 40, 20
    t_max = max(max((s["t"] for s in samples), default=1), max((t for t, _ in rate), default=1))
    r_max = max((r for _, r in rate), default=1) * 1.1 or 1
    n_max = max((s["ranges"] for s in samples), default=1) + 1

    def x(t):
        return left + (w - left - 20) * t / t_max

    def y(v, top_v):
        return h - bottom - (h - bottom - top) * v / top_v

    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
           'font-family="sans-serif" font-size="11">' % (w, h),
           '<rect width="100%" height="100%" fill="white"/>',
           '<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>' % (left, h - bottom, w - 20,
                                                                      h - bottom),
           '<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>' % (left, top, left, h - bottom)]
    for i in range(6):
        v = r_max * i / 5
        out.append('<text x="%d" y="%.0f" text-anchor="end">%.0f</text>' % (left - 4, y(v, r_max) + 4,
                                                                            v))
    for i in range(0, int(t_max) + 1, 10):
        out.append('<text x="%.0f" y="%d" text-anchor="middle">%ds</text>' % (x(i), h - bottom + 14,
                                                                               i))
    pts = " ".join("%.1f,%.1f" % (x(t), y(r, r_max)) for t, r in rate)
    out.append('<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="%s"/>' % pts)
    pts = " ".join("%.1f,%.1f" % (x(s["t"]), y(s["ranges"], n_max)) for s in samples)
    out.append('<polyline fill="none" stroke="#d62728" stroke-width="1.5" points="%s"/>' % pts)
    pts = " ".join("%.1f,%.1f" % (x(s["t"]), y(s["max_leader_share"] * (n_max - 1), n_max))
                   for s in samples)
    out.append('<polyline fill="none" stroke="#2ca02c" stroke-width="1.5" '
               'stroke-dasharray="4 3" points="%s"/>' % pts)
    out.append('<text x="%d" y="14" fill="#1f77b4">puts/s (left axis)</text>' % left)
    out.append('<text x="%d" y="14" fill="#d62728">user ranges (0-%d)</text>' % (left + 140,
                                                                                  n_max))
    out.append('<text x="%d" y="14" fill="#2ca02c">busiest member\'s share of the leaders '
               '(same scale, 1 = top)</text>' % (left + 280))
    out.append('</svg>')
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(ROOT, "build", "release", "conclave"))
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--cap", type=float, default=0.1)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--split-qps", type=int, default=100)
    ap.add_argument("--svg", default=os.path.join(ROOT, "docs", "img", "load-split.svg"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("cgroups need root")
    cluster.HEARTBEAT_INTERVAL_MS = 100
    cluster.ELECTION_TIMEOUT_MS = 1000
    n = args.members
    c = cluster.Cluster(args.binary, n, tempfile.mkdtemp(prefix="conclave-load-split-"),
                        extra_flags=[
                            "--initial-range-count", "1", "--range-replicas", "3",
                            "--range-split-qps", str(args.split_qps), "--range-load-window", "2",
                            "--range-placement-interval", "1", "--range-split-bytes", "0"])
    c.start()
    caps = Caps(args.cap)
    try:
        for m in c.members:
            caps.add(m.proc.pid)
        eps = ["127.0.0.1:%d" % m.client_port for m in c.members]
        client = conclave.Client(eps, timeout=10)
        cluster.wait_until(lambda: client.put(b"warm-up", b"1"), 60, what="a first put")
        errfile = tempfile.NamedTemporaryFile(mode="w+", delete=False)
        clients = 32 * n
        cmd = [args.binary, "bench", "native-put", "--endpoints", ",".join(eps), "--clients",
               str(clients), "--conns", str(max(1, clients // 4)), "--duration",
               "%ds" % args.seconds, "--val-size", "256", "--key-space", "20000", "--progress",
               "-w", "json"]
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errfile, text=True)
        samples = []
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                try:
                    nodes = client.nodes()
                    ranges = client.ranges(cluster=True)
                    leaders = [x.leaders for x in nodes]
                    samples.append({
                        "t": round(time.monotonic() - t0, 1),
                        "ranges": sum(1 for r in ranges if r.start < conclave.SYSTEM_KEYS),
                        "leaders": leaders,
                        "max_leader_share": max(leaders) / max(sum(leaders), 1),
                    })
                except conclave.ConclaveError:
                    pass
                stop.wait(1.0)
        th = threading.Thread(target=sample, daemon=True)
        th.start()
        out, _ = proc.communicate(timeout=args.seconds + 120)
        stop.set()
        th.join()
        if proc.returncode != 0:
            errfile.seek(0)
            raise SystemExit("bench failed: %s" % errfile.read()[-800:])
        errfile.seek(0)
        # The bench's clock starts after its connections are made; close
        # enough to the sampler's for a figure in seconds.
        rate = [(int(m.group(1)), int(m.group(4))) for m in map(PROGRESS.search, errfile)
                if m is not None]
        os.unlink(errfile.name)
        result = json.loads(out)
        print("%5s %8s %7s  %s" % ("t", "puts/s", "ranges", "leaders per member"))
        for t in range(0, args.seconds + 1, 5):
            r = next((v for s, v in rate if s >= t), None)
            s = next((x for x in samples if x["t"] >= t), None)
            if r is None or s is None:
                continue
            print("%4ds %8d %7d  %s" % (t, r, s["ranges"], s["leaders"]))
        first = [v for s, v in rate if s <= 5]
        last = [v for s, v in rate if s > args.seconds - 10]
        split_done = next((s["t"] for s in samples if s["ranges"] == samples[-1]["ranges"]), None)
        print(json.dumps({
            "members": n, "cap": args.cap, "split_qps": args.split_qps, "clients": clients,
            "ops_per_s_first_5s": round(sum(first) / max(len(first), 1)),
            "ops_per_s_last_10s": round(sum(last) / max(len(last), 1)),
            "user_ranges_at_end": samples[-1]["ranges"] if samples else None,
            "ranges_final_count_reached_at_s": split_done,
            "leaders_at_end": samples[-1]["leaders"] if samples else None,
            "whole_run_ops_per_s": result["throughput_ops_per_s"],
            "errors": result["errors"],
        }, indent=2))
        svg(samples, rate, args.svg)
        client.close()
    finally:
        caps.close()
        c.close()


if __name__ == "__main__":
    main()
