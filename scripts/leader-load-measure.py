#!/usr/bin/env python3
"""Two busy ranges led by one member: the member hands one leadership over to
a member serving less, with the members capped to a slice of a core each
(docs/PERFORMANCE.md).

    scripts/leader-load-measure.py [--binary build/release/conclave] [--cap 0.1]
        [--seconds 40] [--clients 48] [--rounds 1]

Runs as root (cgroup caps, scripts/cgroup_caps.py). A new cluster of three
members with six user ranges (three replicas each), leader balancing every
second, 1-second load windows, no splits or merges. Once the leader counts
have settled, two ranges led by the same member get the load: one `conclave bench
native-get` per range (linearizable gets of 1,000 keys inside it, --clients
each, outside the caps) for --seconds. Samples which member leads each busy
range twice a second; prints the combined gets per second every 5 s and a
JSON summary (throughput before and after the hand-over, when it happened).

--rounds N runs N rounds of two clusters each, interleaved: leaders balanced
by count only (--range-leader-balance=count: the busy ranges stay together)
and by load; the medians of the gets per second from 15 s on compare them.
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
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, os.pardir)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.path.insert(0, os.path.join(ROOT, "clients", "python"))

import cluster  # noqa: E402
import conclave  # noqa: E402
from cgroup_caps import Caps  # noqa: E402

PROGRESS = re.compile(r"native-get: (\d+)s\s+(\d+) ok\s+(\d+) errors\s+(\d+)/s")


def leaders(c):
    """Per range id, the node that says it leads it (asked of every member)."""
    out = {}
    for m in c.members:
        with conclave.Client(["127.0.0.1:%d" % m.client_port], timeout=5) as one:
            for r in one.ranges():
                if r.leader_node == c.member_id(c.members.index(m)):
                    out[r.range_id] = r.leader_node
    return out


def run_once(args, mode):
    """One cluster, --range-leader-balance `mode`: the table and the summary."""
    c = cluster.Cluster(args.binary, 3, tempfile.mkdtemp(prefix="conclave-leader-load-"),
                        extra_flags=[
                            "--initial-range-count", "6", "--range-replicas", "3",
                            "--range-placement-interval", "1", "--range-load-window", "1",
                            "--range-split-bytes", "0", "--range-split-qps", "0",
                            "--range-merge-bytes", "0", "--range-leader-balance", mode])
    c.start()
    caps = Caps(args.cap)
    try:
        for m in c.members:
            caps.add(m.proc.pid)
        eps = ["127.0.0.1:%d" % m.client_port for m in c.members]
        client = conclave.Client(eps, timeout=10)
        cluster.wait_until(lambda: client.put(b"warm-up", b"1"), 60, what="a first put")
        native = [r for r in client.ranges(cluster=True) if r.start < conclave.SYSTEM_KEYS]
        ids = [r.range_id for r in native]
        cluster.wait_until(lambda: all(i in leaders(c) for i in ids), 60, what="every range led")

        # The leader counts settle first (no member leads two more than
        # another, unchanged for 5 s): the busy ranges are chosen after.
        def counts():
            per = {}
            for node in leaders(c).values():
                per[node] = per.get(node, 0) + 1
            return sorted(per.items())
        last = [None, time.monotonic()]

        def settled():
            now = counts()
            if now != last[0]:
                last[0], last[1] = now, time.monotonic()
            spread = [n for _, n in now]
            return (len(spread) == 3 and max(spread) - min(spread) <= 1
                    and time.monotonic() - last[1] >= 5)
        cluster.wait_until(settled, 120, interval_s=0.5, what="the leader counts settled")
        by_node = {}
        for rid, node in leaders(c).items():
            if rid in ids:
                by_node.setdefault(node, []).append(rid)
        hot = max(by_node.values(), key=len)[:2]
        busy = [r for r in native if r.range_id in hot]
        errfiles, procs = [], []
        t0 = time.monotonic()
        for r in busy:
            errfile = tempfile.NamedTemporaryFile(mode="w+", delete=False)
            errfiles.append(errfile)
            cmd = [args.binary.encode(), b"bench", b"native-get", b"--endpoints",
                   ",".join(eps).encode(), b"--clients", str(args.clients).encode(), b"--conns",
                   b"4", b"--duration", b"%ds" % args.seconds, b"--key-space", b"1000",
                   b"--key-size", b"24", b"--prefix", r.start + b"\x01lb/", b"--no-spread", b"--progress",
                   b"-w", b"json"]
            procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errfile))
        samples = []
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                try:
                    led = leaders(c)
                    samples.append((round(time.monotonic() - t0, 1),
                                    [led.get(rid) for rid in hot]))
                except Exception:  # noqa: BLE001 (a slow capped member: try again)
                    pass
                stop.wait(0.5)
        th = threading.Thread(target=sample, daemon=True)
        th.start()
        results = []
        for p in procs:
            out, _ = p.communicate(timeout=args.seconds + 180)
            if p.returncode != 0:
                raise SystemExit("bench failed (exit %d)" % p.returncode)
            results.append(json.loads(out))
        stop.set()
        th.join()
        # Per second, the two benches' gets added up (each counts from its
        # own start, a few hundred milliseconds apart at most).
        per_second = {}
        for f in errfiles:
            f.seek(0)
            for m in map(PROGRESS.search, f):
                if m is not None:
                    per_second[int(m.group(1))] = per_second.get(int(m.group(1)), 0) + \
                        int(m.group(4))
            os.unlink(f.name)
        apart = next((t for t, owners in samples
                      if None not in owners and owners[0] != owners[1]), None)
        table = ["%5s %8s  %s" % ("t", "gets/s", "leaders of the two busy ranges")]
        for t in range(0, args.seconds + 1, 5):
            r = next((v for s, v in sorted(per_second.items()) if s >= t), None)
            s = next((o for st, o in samples if st >= t), None)
            if r is None or s is None:
                continue
            table.append("%4ds %8d  %s" % (t, r, ["%x" % n if n else "-" for n in s]))
        before = [v for s, v in per_second.items() if apart is not None and s < apart]
        after = [v for s, v in per_second.items()
                 if apart is not None and s > apart + 3]
        # The steady part of the run, the same seconds in either mode.
        steady = [v for s, v in per_second.items() if 15 <= s < args.seconds - 2]
        moved = 0.0
        for m in c.members:
            with urllib.request.urlopen(m.metrics_url + "/metrics", timeout=10) as resp:
                for line in resp.read().decode().splitlines():
                    if line.startswith("conclave_native_leaders_moved_by_load_total "):
                        moved += float(line.split()[1])
        client.close()
        return table, {
            "mode": mode, "cap": args.cap, "clients_per_range": args.clients, "busy_ranges": hot,
            "handed_over_at_s": apart,
            "gets_per_s_before": round(sum(before) / max(len(before), 1)),
            "gets_per_s_after": round(sum(after) / max(len(after), 1)),
            "gets_per_s_whole_run": round(sum(r["throughput_ops_per_s"] for r in results)),
            "errors": sum(r["errors"] for r in results),
            "leaders_at_end": samples[-1][1] if samples else None,
            "gets_per_s_from_15s": round(sum(steady) / max(len(steady), 1)),
            "leaderships_handed_over_by_load": moved,
        }
    finally:
        caps.close()
        c.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(ROOT, "build", "release", "conclave"))
    ap.add_argument("--cap", type=float, default=0.1)
    ap.add_argument("--seconds", type=int, default=40)
    ap.add_argument("--clients", type=int, default=48)
    ap.add_argument("--rounds", type=int, default=1,
                    help="rounds of a count-only run then a by-load run")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("cgroups need root")
    cluster.HEARTBEAT_INTERVAL_MS = 100
    cluster.ELECTION_TIMEOUT_MS = 1000
    runs = []
    for _ in range(args.rounds):
        for mode in ("count", "load"):
            table, summary = run_once(args, mode)
            print("--range-leader-balance=%s" % mode)
            print("\n".join(table))
            print(json.dumps(summary))
            runs.append(summary)
    med = {}
    for mode in ("count", "load"):
        steady = sorted(r["gets_per_s_from_15s"] for r in runs if r["mode"] == mode)
        med[mode] = steady[len(steady) // 2]
    print(json.dumps({"median_gets_per_s_from_15s": med,
                      "ratio_load_to_count": round(med["load"] / max(med["count"], 1), 2),
                      "errors": sum(r["errors"] for r in runs)}, indent=2))


if __name__ == "__main__":
    main()
