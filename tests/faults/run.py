"""One fault-injection run: cluster, workloads, faults, checks, report.

    run.py --binary build/release/conclave --duration 120 [--nodes 3|4|5]
           [--faults kill,pause,...|all] [--seed N] [--report DIR]
           [--expect-violations] [--server-flag=--unsafe-test-bug=local-reads]

Starts the cluster (network namespaces when root, else loopback ports),
runs every workload while the scheduler keeps up to --overlap faults active,
heals everything, reads the end state, and checks the histories. The report
(report.json and report.txt in --report) has the operations, the faults with
their times, the violations and the latency with and without faults. The
work directory (histories, member logs, data) is kept when anything fails or
with --keep, and removed otherwise.

Exit status: 0 when the histories pass (with --expect-violations: when the
checkers found at least one violation), 1 otherwise, 2 when the run itself
could not be carried out (the cluster never became healthy, say).
"""

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback

import etcd3.etcdrpc as etcdrpc
import grpc

import checkers
import fault_cluster
import linearizability
import native
import nemesis
import network
import workloads

LEASE_TTL_S = 3
# How late past its latest possible expiry a lease's key may still be read:
# the leader checks expiry every 500 ms, revokes through the log, and a new
# leader may be a checkpoint interval (1 s) generous; plus two elections.
LEASE_SLACK_S = 2
# A revocation refused (say, during a leader transfer) is proposed again
# after the lessor's retry interval.
LEASE_SLACK_S += 3


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--binary", required=True, help="conclave, or etcd for the reference run")
    p.add_argument("--nodes", type=int, default=3, choices=(3, 4, 5))
    p.add_argument("--replica-down-time", type=int, default=0,
                   help="Conclave: seconds after which a silent member's replicas are made "
                        "again elsewhere, so that long kills, pauses and partitions re-replicate "
                        "(0: the server's default, 300, longer than any fault)")
    p.add_argument("--duration", type=float, default=60, help="seconds of faults")
    p.add_argument("--faults", default="all", help="comma list of %s, or all"
                   % ",".join(nemesis.ALL_FAULTS))
    p.add_argument("--overlap", type=int, default=3, help="faults active at once")
    p.add_argument("--interval", default="3,6", help="seconds between fault steps: MIN,MAX")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--report", default=None, help="directory for report.json/report.txt")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--loopback", action="store_true", help="do not use network namespaces")
    p.add_argument("--expect-violations", action="store_true",
                   help="succeed only if the checkers report a violation (broken builds)")
    p.add_argument("--expect-violation-in", action="append", default=[], metavar="CHECKER",
                   help="with --expect-violations: this checker must be among those reporting "
                        "one (repeatable; e.g. register, \"native set\")")
    p.add_argument("--server-flag", action="append", default=[],
                   help="extra server flag (repeatable)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    if args.faults == "all":
        args.faults = list(nemesis.ALL_FAULTS)
    else:
        args.faults = [f for f in args.faults.split(",") if f]
        unknown = [f for f in args.faults if f not in nemesis.ALL_FAULTS]
        if unknown:
            p.error("unknown faults: %s" % ", ".join(unknown))
    if args.expect_violation_in and not args.expect_violations:
        p.error("--expect-violation-in goes with --expect-violations")
    lo, hi = (float(x) for x in args.interval.split(","))
    args.interval = (lo, hi)
    if args.seed is None:
        args.seed = int(time.time() * 1000) % 1_000_000
    return args


class Monitor:
    """Polls the members' Status: terms and leaders over time."""

    def __init__(self, cluster, log):
        self.cluster = cluster
        self.log = log
        self.term = 0
        self.leader_changes = []  # times a higher term was first seen
        self.samples = []

    def run(self, stop):
        while not stop.wait(0.5):
            for i in self.cluster.running():
                if self.cluster.members[i].paused:
                    continue
                try:
                    st = self.cluster.status(i, timeout_s=0.5)
                except Exception:  # noqa: BLE001 - the monitor must outlive any error
                    continue
                if st.raftTerm > self.term:
                    self.term = st.raftTerm
                    self.leader_changes.append(time.monotonic())


def percentile(values, q):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def latency_split(ops, timeline, end_time):
    """Register latency (ms) of ok ops invoked with and without a fault active."""
    intervals, open_at = [], {}
    for e in timeline:
        if e["event"] == "begin":
            open_at.setdefault(e["text"], []).append(e["t"])
        elif e["event"] == "end" and open_at.get(e["text"]):
            intervals.append((open_at[e["text"]].pop(0), e["t"]))
    for starts in open_at.values():
        intervals += [(s, end_time) for s in starts]

    def faulty(t):
        return any(a <= t <= b for a, b in intervals)

    groups = {"during faults": [], "no fault active": []}
    for op in ops:
        if op["status"] == "ok":
            key = "during faults" if faulty(op["invoke"]) else "no fault active"
            groups[key].append(1000 * (op["complete"] - op["invoke"]))
    return {k: {"ops": len(v), "p50_ms": percentile(v, 0.5), "p99_ms": percentile(v, 0.99),
                "max_ms": max(v) if v else None} for k, v in groups.items()}


def current_revision(cluster, timeout_s=30):
    deadline = time.monotonic() + timeout_s
    while True:
        for i in cluster.running():
            try:
                return i, etcdrpc.KVStub(cluster.channel(i)).Range(
                    etcdrpc.RangeRequest(key=b"health"), timeout=3).header.revision
            except grpc.RpcError:
                continue
        if time.monotonic() > deadline:
            raise RuntimeError("no member answers a linearizable read")
        time.sleep(0.5)


def run(args):
    t_start = time.monotonic()
    lines = []

    def log(text):
        line = "[%7.2f] %s" % (time.monotonic() - t_start, text)
        lines.append(line)
        if not args.quiet:
            print(line, flush=True)

    # Conclave also serves its native, sharded keyspace: a few ranges of
    # three replicas to start with, its workloads, and the split, merge, move
    # and drain faults (the last two need a fourth member to move a replica to).
    # etcd has none of it. The placement driver looks every second.
    conclave = not fault_cluster.itest.is_etcd(args.binary)
    if conclave:
        args.server_flag = args.server_flag + [
            "--initial-range-count=%d" % native.RANGE_COUNT, "--range-placement-interval=1"]
        if args.replica_down_time > 0:
            # A member down, paused or cut off this long has its replicas
            # made again elsewhere: kills and partitions that outlast it
            # re-replicate, and the member comes back to copies it must drop.
            args.server_flag.append("--range-replica-down-time=%d" % args.replica_down_time)
    else:
        args.faults = [f for f in args.faults if f not in nemesis.CONCLAVE_FAULTS]
    tag = "%05d%d" % (os.getpid() % 100000, args.seed % 10)
    net, net_note = network.make_network(tag, args.nodes, want_namespaces=not args.loopback)
    log("network: %s" % net_note)
    workdir = tempfile.mkdtemp(prefix="conclave-faults-", dir="/tmp")
    disk_member = args.nodes - 1 if "disk-full" in args.faults else None
    report = {"binary": args.binary, "nodes": args.nodes, "seed": args.seed,
              "duration_s": args.duration, "faults_enabled": args.faults, "network": net_note,
              "workdir": workdir, "server_flags": args.server_flag}
    ok = False
    cluster = None
    try:
        cluster = fault_cluster.FaultCluster(args.binary, net, workdir, args.server_flag,
                                             disk_full_member=disk_member)
        if cluster.disk_note:
            log(cluster.disk_note)
            report["disk_full"] = cluster.disk_note
        try:
            cluster.start()
        except Exception as e:  # noqa: BLE001
            cluster.print_logs()
            report["error"] = "cluster did not start: %s" % e
            return report, 2
        log("cluster of %d started in %s" % (args.nodes, workdir))
        _, start_rev = current_revision(cluster)
        start_rev += 1
        stop_work, stop_faults = threading.Event(), threading.Event()
        regs = workloads.RegisterWorkload(cluster, args.seed)
        sets = workloads.SetWorkload(cluster, args.seed + 1)
        locks = workloads.LockWorkload(cluster, args.seed + 2)
        watches = workloads.WatchWorkload(cluster, args.seed + 3, start_rev)
        leases = workloads.LeaseWorkload(cluster, args.seed + 4, ttl=LEASE_TTL_S)
        all_workloads = [regs, sets, locks, watches, leases]
        nregs = nsets = None
        if conclave:
            nregs = native.NativeRegisterWorkload(cluster, args.seed + 5)
            nsets = native.NativeSetWorkload(cluster, args.seed + 6)
            all_workloads += [nregs, nsets]
        monitor = Monitor(cluster, log)
        threading.Thread(target=monitor.run, args=(stop_work,), daemon=True).start()
        for w in all_workloads:
            w.start(stop_work)
        sched = nemesis.Scheduler(cluster, args.faults, args.seed, args.interval, args.overlap,
                                  log)
        # The scheduler runs on this thread: members are started with
        # PR_SET_PDEATHSIG, which fires when the starting thread ends.
        timer = threading.Timer(args.duration, stop_faults.set)
        timer.daemon = True
        timer.start()
        sched.run(stop_faults)
        log("healing")
        t_heal = time.monotonic()
        missing = sched.heal_all()
        if missing:
            cluster.print_logs()
            report["error"] = "members not back after healing: %s" % missing
            return report, 2
        try:
            cluster.wait_healthy(90, members=[m.index for m in cluster.members
                                              if not m.removed])
        except Exception as e:  # noqa: BLE001
            cluster.print_logs()
            report["error"] = "cluster not healthy after healing: %s" % e
            return report, 2
        report["recovery_s"] = round(time.monotonic() - t_heal, 1)
        log("healthy %.1fs after healing began; workloads run 5 s more without faults"
            % report["recovery_s"])
        _, caught_up_rev = current_revision(cluster)
        time.sleep(5)
        stop_work.set()
        for w in all_workloads:
            w.join(30)
        stuck = [t.name for w in all_workloads for t in w.threads if t.is_alive()]
        if stuck:
            report["error"] = "client threads did not stop: %s" % stuck
            return report, 2
        end_time = time.monotonic()

        # ---- the end state --------------------------------------------------
        via, end_rev = current_revision(cluster)
        final_sets = sets.final_read(via)
        final_nsets = nsets.final_read(via) if nsets else None
        truth = workloads.read_all_events(cluster, via, start_rev, end_rev, timeout_s=60)
        fence = [(r, v) for r, k, t, v, _ in truth
                 if k == workloads.FENCE_KEY.decode() and t == "PUT"]

        # ---- checks ------------------------------------------------------------
        log("checking")
        reg_ops = regs.history.ops
        results = {}
        t0 = time.monotonic()
        results["register"] = linearizability.check_register(reg_ops)
        results["register"]["check_s"] = round(time.monotonic() - t0, 2)
        results["set"] = checkers.check_set(sets.history.ops, final_sets)
        fenced = [o for o in locks.history.ops if o.get("f") == "fenced"]
        results["lock"] = checkers.check_lock(fenced, fence, end_rev)
        results["lock"]["acquisitions"] = locks.acquired
        results["lock exclusion"] = checkers.check_lock_exclusion(
            [o for o in locks.history.ops if o.get("f") == "acquire"], truth,
            workloads.LOCK_NAME.decode() + "/")
        writes = [{"key": o["key"], "value": o["value"], "revision": o["revision"]}
                  for o in reg_ops if o["status"] == "ok" and (
                      o["f"] == "write" or (o["f"] == "cas" and o["succeeded"]))]
        writes += [{"key": k, "value": k, "revision": o["revision"]}
                   for o in sets.history.ops if o["status"] == "ok" for k in o["keys"]]
        writes += [{"key": workloads.FENCE_KEY.decode(), "value": o["value"],
                    "revision": o["revision"]} for o in fenced
                   if o["status"] == "ok" and o["succeeded"]]
        results["watch"] = checkers.check_watch(watches.events, truth, writes, start_rev,
                                                caught_up_rev, watches.canceled)
        results["read revisions"] = checkers.check_read_revisions(reg_ops, truth, start_rev,
                                                                  end_rev)
        results["watch"]["reconnects"] = watches.reconnects
        slack = LEASE_SLACK_S + 2 * fault_cluster.ELECTION_TIMEOUT_MS / 1000
        results["lease"] = checkers.check_lease(leases.leases, monitor.leader_changes, slack,
                                                sched.disruptions())
        results["lease"]["slack_s"] = slack

        if nregs:
            t0 = time.monotonic()
            results["native register"] = linearizability.check_register(nregs.history.ops)
            results["native register"]["check_s"] = round(time.monotonic() - t0, 2)
            results["native set"] = native.check_native_set(nsets.history.ops, nsets.scans,
                                                            final_nsets)
        counts = {w.name: len(w.history.ops) for w in (regs, sets, locks)}
        if nregs:
            counts.update({w.name: len(w.history.ops) for w in (nregs, nsets)})
            counts["native scans"] = len(nsets.scans)
        counts["watch events"] = sum(len(e) for e in watches.events.values())
        counts["leases"] = len(leases.leases)
        report.update({
            "operations": counts,
            "register_ops_by_status": {s: sum(1 for o in reg_ops if o["status"] == s)
                                       for s in ("ok", "fail", "unknown")},
            "faults_injected": sched.counts,
            "faults_total": sum(sched.counts.values()),
            "leader_changes": len(monitor.leader_changes),
            "timeline": [dict(e, t=round(e["t"] - t_start, 3)) for e in sched.timeline],
            "results": results,
            "latency": latency_split(reg_ops, sched.timeline, end_time),
            "client_errors": {w.name: w.errors for w in all_workloads},
            "end_revision": end_rev,
            "elapsed_s": round(time.monotonic() - t_start, 1),
        })
        violations = sum(1 for r in results.values() if r["valid"] is False)
        inconclusive = [k for k, r in results.items() if r["valid"] == "unknown"]
        report["inconclusive"] = inconclusive
        report["violations"] = {k: (r.get("violation_count", len(r.get("violations", [])))
                                    if r["valid"] is False else 0)
                                for k, r in results.items()}
        if results["register"]["valid"] is False:
            report["register_violation_windows"] = [
                linearizability.render_violation(reg_ops, v)
                for v in results["register"]["violations"][:3]]
        if nregs and results["native register"]["valid"] is False:
            report["native_register_violation_windows"] = [
                linearizability.render_violation(nregs.history.ops, v)
                for v in results["native register"]["violations"][:3]]
        found = violations > 0
        unknown = [k for k in args.expect_violation_in if k not in results]
        missing = [k for k in args.expect_violation_in if not report["violations"].get(k)]
        if unknown:
            report["error"] = "--expect-violation-in names no checker of this run: %s" % (
                ", ".join(unknown))
            return report, 2
        report["expected_violations_missing"] = missing
        # A check that ran out of search budget proves nothing either way.
        ok = found and not missing if args.expect_violations else not found and not inconclusive
        with open(os.path.join(workdir, "history.json"), "w") as f:
            json.dump({"register": reg_ops, "set": sets.history.ops,
                       "lock": locks.history.ops, "watch": watches.events,
                       "lease": leases.leases, "truth": truth,
                       "native register": nregs.history.ops if nregs else [],
                       "native set": nsets.history.ops if nsets else [],
                       "native scans": nsets.scans if nsets else []}, f)
        return report, 0 if ok else 1
    except Exception:  # noqa: BLE001
        report["error"] = traceback.format_exc()
        return report, 2
    finally:
        report["log"] = lines
        try:
            if cluster is not None:
                cluster.close()
        finally:
            net.close()
        keep = args.keep or not ok
        report["kept"] = keep
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


def summary(report):
    out = ["fault-injection run: %s, %d members, seed %d, %s" % (
        os.path.basename(report["binary"]), report["nodes"], report["seed"], report["network"])]
    if "error" in report:
        out.append("ERROR: %s" % report["error"])
        return "\n".join(out)
    out.append("operations: %s" % ", ".join("%s %d" % kv for kv in report["operations"].items()))
    out.append("register ops by status: %s" % report["register_ops_by_status"])
    out.append("recovery after healing: %.1fs" % report["recovery_s"])
    out.append("faults injected: %d (%s); leader changes seen: %d" % (
        report["faults_total"], ", ".join("%s %d" % kv for kv in
                                         sorted(report["faults_injected"].items())),
        report["leader_changes"]))
    for name, r in report["results"].items():
        figures = {k: v for k, v in r.items() if k not in ("violations", "valid")}
        out.append("%-8s %s  %s" % (name, "ok" if r["valid"] is True else
                                    ("UNKNOWN" if r["valid"] == "unknown" else "VIOLATION"),
                                    json.dumps(figures, default=str)[:300]))
        for v in r.get("violations", [])[:5]:
            out.append("    - %s" % (v if isinstance(v, str) else v.get("message", v)))
    for window in report.get("register_violation_windows", [])[:1]:
        out.append(window)
    for k, v in report["latency"].items():
        out.append("register latency %s: %s" % (k, v))
    out.append("elapsed %.0fs; work directory %s%s" % (
        report["elapsed_s"], report["workdir"], " (kept)" if report["kept"] else " (removed)"))
    return "\n".join(out)


def _exit_on_sigterm(signum, frame):
    # Through SystemExit, so that the cluster, namespaces and mounts are
    # removed by run()'s cleanup.
    raise SystemExit(128 + signum)


def main(argv=None):
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    args = parse_args(argv if argv is not None else sys.argv[1:])
    report, code = run(args)
    text = summary(report)
    print(text, flush=True)
    if args.report:
        os.makedirs(args.report, exist_ok=True)
        with open(os.path.join(args.report, "report.json"), "w") as f:
            json.dump(report, f, indent=1, default=str)
        with open(os.path.join(args.report, "report.txt"), "w") as f:
            f.write(text + "\n")
    if args.expect_violations:
        missing = report.get("expected_violations_missing") or []
        print("expected violations: %s%s" % (
            "found" if code == 0 else "NOT found",
            " (none from: %s)" % ", ".join(missing) if missing else ""))
    return code


if __name__ == "__main__":
    sys.exit(main())
