"""CPU caps for measurements: a cgroup per process, each held to a slice of a
core (cgroup v1 `cpu`, cpu.cfs_quota_us; or v2 cpu.max), and the CPU time
processes used. Used by route-measure.py, scale-measure.py and
load-split-measure.py; the caps need root."""

import os
import sys

TICKS = os.sysconf("SC_CLK_TCK")
PERIOD_US = 100_000
V1_CPU = "/sys/fs/cgroup/cpu"
V2_ROOT = "/sys/fs/cgroup"


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


class Caps:
    """One cgroup per member, each limited to `cap` of a core."""

    def __init__(self, cap):
        self.cap = cap
        self.v1 = os.path.isfile(os.path.join(V1_CPU, "cpu.cfs_quota_us"))
        if not self.v1 and not os.path.isfile(os.path.join(V2_ROOT, "cgroup.controllers")):
            raise SystemExit("no cgroup cpu controller found (v1 %s or v2 %s)" % (V1_CPU, V2_ROOT))
        self.dirs = []

    def add(self, pid):
        base = V1_CPU if self.v1 else V2_ROOT
        d = os.path.join(base, "conclave-scale-%d" % pid)
        os.mkdir(d)
        self.dirs.append(d)
        quota = int(self.cap * PERIOD_US)
        if self.v1:
            with open(os.path.join(d, "cpu.cfs_period_us"), "w") as f:
                f.write(str(PERIOD_US))
            with open(os.path.join(d, "cpu.cfs_quota_us"), "w") as f:
                f.write(str(quota))
        else:
            with open(os.path.join(d, "cpu.max"), "w") as f:
                f.write("%d %d" % (quota, PERIOD_US))
        # Every thread of the process, and those it starts later.
        with open(os.path.join(d, "cgroup.procs"), "w") as f:
            f.write(str(pid))

    def throttled_seconds(self):
        total = 0
        for d in self.dirs:
            try:
                with open(os.path.join(d, "cpu.stat")) as f:
                    for line in f:
                        k, v = line.split()
                        if k == "throttled_time":       # v1, nanoseconds
                            total += int(v) / 1e9
                        elif k == "throttled_usec":     # v2
                            total += int(v) / 1e6
            except OSError:
                pass
        return total

    def close(self):
        parent = V1_CPU if self.v1 else V2_ROOT
        for d in self.dirs:
            # Whatever is left in it (the member exited) goes back to the root.
            try:
                with open(os.path.join(d, "cgroup.procs")) as f:
                    pids = [p.strip() for p in f if p.strip()]
                for p in pids:
                    with open(os.path.join(parent, "cgroup.procs"), "w") as f:
                        f.write(p)
                os.rmdir(d)
            except OSError as e:
                print("could not remove %s: %s" % (d, e), file=sys.stderr)
        self.dirs = []


