"""Faults, composed: a scheduler keeps several of them active at once.

Each Fault has begin() (returns a description, or None when it cannot act
now, e.g. no member to kill) and end() (undo). The Scheduler, every few
seconds, ends the oldest active fault and begins a new random one, keeping up
to `overlap` active, and logs every step with its time. At the end it ends
everything and brings every member back (restarting ones that died, re-adding
removed ones), so the checkers read a whole cluster.

Faults: kill (-9, restart later), pause (SIGSTOP/SIGCONT), partition (random
halves, isolated leader, bridge, one way), netem (delay, jitter and loss),
membership (remove and re-add; replace a wiped member), disk-full (fill the
member's small tmpfs), leader-transfer storm, and for Conclave's native
ranges (not for etcd): split storm (ranges split at random keys), merge storm
(ranges merged with their right-hand neighbours, whose replicas move onto
theirs first), replica moves (a range's replica from one member to another),
drain (a member's replicas and leaderships moved off it, until the drain is
cancelled).
"""

import os
import random
import threading
import time

import etcd3.etcdrpc as etcdrpc
import grpc

import fault_cluster
import native

# Membership answers that say nothing was proposed.
REFUSALS = ("unhealthy cluster", "not enough started members", "member not found",
            "failed to connect")

ALL_FAULTS = ("kill", "pause", "partition", "netem", "membership", "disk-full", "leader-transfer",
              "split", "merge", "move", "range-leader", "drain")
# Faults that only Conclave has a target for.
CONCLAVE_FAULTS = ("split", "merge", "move", "range-leader", "drain")


class Fault:
    name = "fault"
    members = ()  # members it holds (no other fault may target them)

    def __init__(self, h):
        self.h = h
        self.c = h.cluster

    def live(self):
        return [i for i in self.c.running() if not self.c.members[i].paused]

    def range_map(self, done):
        """A random live member and the range map it reads: (via, ranges);
        (None, None) with no live member; ranges None (noted in `done`) when
        the member cannot read the map."""
        live = self.live()
        if not live:
            return None, None
        via = self.h.rng.choice(live)
        try:
            return via, native.NativeStub(self.c.channel(via)).Ranges(
                native.kv_pb2.RangesRequest(cluster=True), timeout=5).ranges
        except grpc.RpcError as e:
            done.append("no range map via n%d (%s)" % (via + 1, e.code().name))
            return via, None

    def free_members(self):
        """Members this fault may take down: none when a minority already is
        down (killed, paused, removed, out of disk), so the cluster keeps a
        quorum for membership changes; partitions may still split it."""
        busy = self.h.busy()
        running = self.c.running()
        down = busy | {i for i in range(self.c.size) if i not in running}
        if len(down) >= (self.c.size - 1) // 2:
            return []
        return [i for i in running if i not in busy]


class Kill(Fault):
    name = "kill"

    def begin(self):
        free = self.free_members()
        if not free:
            return None
        i = self.h.rng.choice(free)
        self.members = (i,)
        self.c.kill(i)
        return "kill -9 n%d" % (i + 1)

    def end(self):
        i = self.members[0]
        self.h.restart(i)


class Pause(Fault):
    name = "pause"

    def begin(self):
        free = self.free_members()
        leader = self.h.leader_index()
        if leader in free and self.h.rng.random() < 0.5:
            i = leader
        elif free:
            i = self.h.rng.choice(free)
        else:
            return None
        self.members = (i,)
        self.c.pause(i)
        return "SIGSTOP n%d%s" % (i + 1, " (leader)" if i == leader else "")

    def end(self):
        self.c.resume(self.members[0])


class Partition(Fault):
    name = "partition"

    def begin(self):
        net, n, rng = self.c.net, self.c.size, self.h.rng
        if not net.can_partition or self.h.active_named("partition"):
            return None
        nodes = list(range(n))
        mode = rng.choice(["halves", "leader", "bridge", "one-way"])
        if mode == "halves":
            rng.shuffle(nodes)
            k = rng.randint(1, n // 2)
            groups = [nodes[:k], nodes[k:]]
            net.partition(groups)
            return "partition %s" % _groups(groups)
        if mode == "leader":
            leader = self.h.leader_index()
            if leader is None:
                leader = rng.choice(nodes)
            groups = [[leader], [i for i in nodes if i != leader]]
            net.partition(groups)
            return "isolate leader %s" % _groups(groups)
        if mode == "bridge":
            rng.shuffle(nodes)
            bridge = nodes[0]
            rest = nodes[1:]
            half = len(rest) // 2
            a, b = rest[:half], rest[half:]
            net.partition([a, b])
            return "bridge n%d between %s" % (bridge + 1, _groups([a, b]))
        # one-way: the leader (or a random member) stops hearing from the others
        dst = self.h.leader_index()
        if dst is None:
            dst = rng.choice(nodes)
        for src in nodes:
            if src != dst:
                net.block(dst, src)
        return "one-way: n%d hears nobody" % (dst + 1)

    def end(self):
        self.c.net.heal("partition")


class Netem(Fault):
    name = "netem"

    def begin(self):
        if self.h.active_named("netem"):
            return None
        rng = self.h.rng
        delay, jitter = rng.choice([10, 30, 60]), rng.choice([0, 20, 80])
        for i in range(self.c.size):
            self.c.set_delay(i, delay, jitter)
        text = "peer delay %d ms + jitter %d ms" % (delay, jitter)
        if self.c.net.can_partition:
            p = rng.choice([0.02, 0.05, 0.1])
            for i in range(self.c.size):
                self.c.net.lose(i, p)
            text += ", loss %.0f%%" % (100 * p)
        return text

    def end(self):
        for i in range(self.c.size):
            self.c.set_delay(i, 0, 0)
        self.c.net.heal("loss")


class Membership(Fault):
    """Removes a member; end() wipes it and adds it back as a new member.

    "replace" kills it first (its disk is lost), then removes it.
    """
    name = "membership"

    def begin(self):
        if self.h.active_named("membership"):
            return None
        free = [i for i in self.free_members() if i != self.c.disk_full_member]
        if not free or self.h.pending_readd:
            return None
        # As an operator would: only while every member serves (a member just
        # added may still be catching up; losing another then leaves no quorum).
        if not all(self.c.healthy(i) for i in range(self.c.size)):
            return None
        # Likewise Conclave's ranges: a removed member's replicas are gone
        # for good, and a second loss before they are made again elsewhere
        # could take two of a range's three.
        if not self.c.is_etcd and not self.ranges_whole():
            return None
        i = self.h.rng.choice(free)
        self.members = (i,)
        replace = self.h.rng.random() < 0.5
        if replace:
            # Marked first: from here on it may only come back as a new member.
            self.c.members[i].removed = True
            self.h.pending_readd.add(i)
            self.c.kill(i)
            self.c.wipe(i)
        outcome = self.h.remove_member(i)
        if replace:
            self.h.pending_readd.discard(i)
        if outcome == "refused":
            if replace:
                self.h.pending_readd.add(i)
            self.members = ()
            return None
        if outcome == "unknown":
            # Removed or not, nobody knows: it comes back only through
            # readd_member, which looks at the member list first.
            self.c.kill(i)
            self.c.wipe(i)
            self.c.members[i].removed = True
            self.h.pending_readd.add(i)
            self.members = ()
            return "n%d removal timed out; re-adding it later" % (i + 1)
        return ("replace wiped n%d (removed)" if replace else "remove n%d") % (i + 1)

    def end(self):
        if self.members:
            self.h.readd_member(self.members[0], timeout_s=10)

    def ranges_whole(self):
        """Every range's voters are on members of the cluster."""
        via, ranges = self.range_map([])
        if ranges is None:
            return False
        try:
            members = {m.ID for m in self.c.member_list(via)}
        except grpc.RpcError:
            return False
        return all(p.learner or p.node_id in members for r in ranges for p in r.replicas)


class DiskFull(Fault):
    name = "disk-full"

    def begin(self):
        i = self.c.disk_full_member
        if i is None or i not in self.free_members():
            return None
        self.members = (i,)
        path = os.path.join(self.c.members[i].mount, "filler")
        try:
            with open(path, "wb") as f:
                chunk = b"\0" * (1 << 20)
                for _ in range(self.c.disk_mb + 16):
                    f.write(chunk)
                    f.flush()
        except OSError:
            pass
        return "disk full on n%d" % (i + 1)

    def end(self):
        i = self.members[0]
        try:
            os.remove(os.path.join(self.c.members[i].mount, "filler"))
        except OSError:
            pass
        self.h.revive_exited()
        m = self.c.members[i]
        if m.proc is None and not m.removed:  # it died of the full disk
            self.c.spawn(i)
            self.h.note("restarted n%d after its disk filled" % (i + 1))


class LeaderTransfer(Fault):
    name = "leader-transfer"

    def begin(self):
        moves = []
        for _ in range(4):
            found = self.c.leader(timeout_s=1)
            if found is None:
                break
            leader = found[0]
            ids = {i: mid for mid, i in self.c.member_ids().items()}
            targets = [i for i in ids if i != leader]
            if leader not in ids or not targets:
                break
            t = self.h.rng.choice(targets)
            try:
                etcdrpc.MaintenanceStub(self.c.channel(leader)).MoveLeader(
                    etcdrpc.MoveLeaderRequest(targetID=ids[t]), timeout=5)
                moves.append("n%d->n%d" % (leader + 1, t + 1))
            except grpc.RpcError as e:
                moves.append("n%d->n%d failed (%s)" % (leader + 1, t + 1, e.code().name))
            time.sleep(0.3)
        return "leader transfers: %s" % (", ".join(moves) or "no leader")

    def end(self):
        pass


class SplitStorm(Fault):
    """One to four native range splits in quick succession, each through a
    random live member, at keys the native workloads use."""
    name = "split"

    def begin(self):
        done = []
        # Bounded as a whole (the scheduler waits for begin(), and ends no
        # other fault meanwhile), and over at the first split that fails:
        # the cluster cannot split now.
        deadline = time.monotonic() + 10
        for _ in range(self.h.rng.randint(1, 4)):
            via = self.live()
            if not via or time.monotonic() > deadline:
                break
            i = self.h.rng.choice(via)
            key = native.split_key(self.h.rng, native.NativeStub(self.c.channel(i)))
            try:
                resp = native.NativeStub(self.c.channel(i)).Split(
                    native.kv_pb2.SplitRequest(key=key),
                    timeout=max(1.0, min(5.0, deadline - time.monotonic())))
                done.append("%r -> range %d (via n%d)" % (key, resp.right.range_id, i + 1))
            except grpc.RpcError as e:
                done.append("%r failed via n%d (%s)" % (key, i + 1, e.code().name))
                break
        return "splits: %s" % ("; ".join(done) or "no live member")

    def end(self):
        pass


class MergeStorm(Fault):
    """One to three native range merges in a row, each of a random user range
    (not the last) with its right-hand neighbour, through a random live member;
    the neighbour's replicas move onto the range's nodes first when they live
    elsewhere."""
    name = "merge"

    def begin(self):
        done = []
        attempted = False
        # Bounded as a whole: the scheduler waits for begin().
        deadline = time.monotonic() + 30
        for _ in range(self.h.rng.randint(1, 3)):
            if time.monotonic() > deadline:
                break
            via, ranges = self.range_map(done)
            if via is None:
                break
            if ranges is None:
                continue
            stub = native.NativeStub(self.c.channel(via))
            lefts = [r for r in ranges if r.end and r.end < native.SYSTEM_KEYS]
            if not lefts:
                break  # one user range: nothing to merge
            r = self.h.rng.choice(lefts)
            key = r.start or b"\x00"
            attempted = True
            try:
                merged = stub.Merge(native.kv_pb2.MergeRequest(key=key),
                                    timeout=max(1.0, deadline - time.monotonic()))
                done.append("range %d took in the range at %r (via n%d)" % (
                    merged.range.range_id, r.end, via + 1))
            except grpc.RpcError as e:
                done.append("range %d with its neighbour failed via n%d (%s)" % (
                    r.range_id, via + 1, e.code().name))
                if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                    break  # the cluster cannot merge now
        return "merges: %s" % "; ".join(done) if attempted else None

    def end(self):
        pass


class ReplicaMoves(Fault):
    """One to three native replica moves in a row: a random range's replica
    from a member holding it to a running one that does not, asked of a member
    holding a voter of the range (one that keeps its replica, when there is
    one), which coordinates the move: learner, snapshot, promotion, removal."""
    name = "move"

    def begin(self):
        done = []
        attempted = False
        # Bounded as a whole: the scheduler waits for begin().
        deadline = time.monotonic() + 30
        for _ in range(self.h.rng.randint(1, 3)):
            index = self.c.member_ids()  # node id -> member index
            if not index or time.monotonic() > deadline:
                break
            via, ranges = self.range_map(done)
            if via is None:
                break
            if ranges is None:
                continue
            live = self.live()
            choices = []
            for r in ranges:
                holders = [p.node_id for p in r.replicas]
                voters = [p.node_id for p in r.replicas if not p.learner and p.node_id in index]
                targets = [n for n, i in index.items() if n not in holders and i in live]
                if voters and targets and not any(p.learner for p in r.replicas):
                    choices.append((r.range_id, holders, voters, targets))
            if not choices:
                break  # three members, say: nowhere to move a replica
            range_id, holders, voters, targets = self.h.rng.choice(choices)
            src = self.h.rng.choice(holders)
            dst = self.h.rng.choice(targets)
            stay = [v for v in voters if v != src and index[v] in live]
            if not stay and src not in index:
                continue
            coord = index[self.h.rng.choice(stay)] if stay else index[src]
            attempted = True
            try:
                native.NativeStub(self.c.channel(coord)).MoveReplica(
                    native.kv_pb2.MoveReplicaRequest(range_id=range_id, from_node=src,
                                                     to_node=dst), timeout=15)
                done.append("range %d n%s->n%d (via n%d)" % (
                    range_id, index[src] + 1 if src in index else "?", index[dst] + 1,
                    coord + 1))
            except grpc.RpcError as e:
                done.append("range %d to n%d failed via n%d (%s)" % (
                    range_id, index[dst] + 1, coord + 1, e.code().name))
        # Nothing tried: not a fault (another is begun instead).
        return "replica moves: %s" % "; ".join(done) if attempted else None

    def end(self):
        pass


class RangeLeaders(Fault):
    """Two to six native leadership transfers in a row: a random range's
    leadership to a random other voter of it, asked of a random live member
    (which passes the request on when it neither leads the range nor is the
    voter named)."""
    name = "range-leader"

    def begin(self):
        done = []
        deadline = time.monotonic() + 20  # bounded: the scheduler waits for begin()
        for _ in range(self.h.rng.randint(2, 6)):
            index = self.c.member_ids()  # node id -> member index
            if not index or time.monotonic() > deadline:
                break
            via, ranges = self.range_map(done)
            if via is None:
                break
            if ranges is None:
                continue
            choices = []
            for r in ranges:
                voters = [p.node_id for p in r.replicas if not p.learner and p.node_id in index]
                others = [v for v in voters if v != r.leader_node]
                if others:
                    choices.append((r.range_id, others))
            if not choices:
                break
            range_id, others = self.h.rng.choice(choices)
            to = self.h.rng.choice(others)
            try:
                native.NativeStub(self.c.channel(via)).TransferLeader(
                    native.kv_pb2.TransferLeaderRequest(range_id=range_id, to_node=to), timeout=10)
                done.append("range %d to n%d (via n%d)" % (range_id, index[to] + 1, via + 1))
            except grpc.RpcError as e:
                done.append("range %d to n%d failed via n%d (%s)" % (
                    range_id, index[to] + 1, via + 1, e.code().name))
            time.sleep(0.2)
        return "range leaderships: %s" % ("; ".join(done) or "no range")

    def end(self):
        pass


class Drain(Fault):
    """Drains a running member: the placement driver moves its native replicas
    and leaderships to the others while it keeps serving; the drain is
    cancelled at the end, and the member receives replicas again."""
    name = "drain"

    def begin(self):
        if self.h.active_named("drain"):
            return None
        live = self.live()
        ids = {i: mid for mid, i in self.c.member_ids().items()}
        candidates = [i for i in live if i in ids]
        if not candidates:
            return None
        self.target = self.h.rng.choice(candidates)
        self.node = ids[self.target]
        via = self.h.rng.choice(live)
        try:
            native.NativeStub(self.c.channel(via)).DrainNode(
                native.kv_pb2.DrainNodeRequest(node_id=self.node), timeout=5)
            return "drain n%d (via n%d)" % (self.target + 1, via + 1)
        except grpc.RpcError as e:
            self.node = None
            return "drain n%d refused via n%d (%s: %s)" % (self.target + 1, via + 1,
                                                           e.code().name, e.details())

    def end(self):
        if self.node is None:
            return
        if not cancel_drain(self.c, self.node):
            # Healing retries it once the network is whole.
            self.h.pending_undrain.add(self.node)
            self.h.note("drain of n%d: no member took the cancel yet" % (self.target + 1))


def cancel_drain(c, node):
    """Ends `node`'s drain through the first running member that answers
    (cancelling is idempotent); whether one did."""
    for i in c.running():
        if c.members[i].paused:
            continue
        try:
            native.NativeStub(c.channel(i)).DrainNode(
                native.kv_pb2.DrainNodeRequest(node_id=node, cancel=True), timeout=5)
            return True
        except grpc.RpcError:
            continue
    return False


FAULT_CLASSES = {c.name: c for c in (Kill, Pause, Partition, Netem, Membership, DiskFull,
                                     LeaderTransfer, SplitStorm, MergeStorm, ReplicaMoves,
                                     RangeLeaders, Drain)}


def _groups(groups):
    return " | ".join(",".join("n%d" % (i + 1) for i in sorted(g)) for g in groups)


class Scheduler:
    def __init__(self, cluster, faults, seed, interval_s=(3.0, 6.0), overlap=3, log=None):
        self.cluster = cluster
        self.faults = list(faults)
        self.rng = random.Random(seed)
        self.interval_s = interval_s
        self.overlap = overlap
        self.active = []   # (fault, description, begin time)
        self.timeline = []  # {"t", "event": begin|end|note, "fault", "text"}
        self.counts = {}
        self.pending_readd = set()
        self.pending_undrain = set()  # node ids whose drain is still to cancel
        self.log = log or (lambda text: None)
        self.lock = threading.Lock()

    # ---- helpers for the faults ------------------------------------------

    def busy(self):
        out = set(self.pending_readd)
        for f, _, _ in self.active:
            out.update(f.members)
        return out

    def active_named(self, name):
        return any(f.name == name for f, _, _ in self.active)

    def leader_index(self):
        found = self.cluster.leader(timeout_s=1)
        return found[0] if found else None

    def note(self, text):
        self.timeline.append({"t": time.monotonic(), "event": "note", "text": text})
        self.log(text)

    def restart(self, i):
        c = self.cluster
        m = c.members[i]
        if m.removed:
            return
        if m.proc is not None:
            c.kill(i)
        c.spawn(i)

    def revive_exited(self):
        """Restarts members that exited on their own (crash on a full disk,
        or a removed member shutting down)."""
        for i, status in self.cluster.exited():
            self.cluster.reap(i)
            m = self.cluster.members[i]
            self.note("n%d had exited with status %s" % (i + 1, status))
            if not m.removed and i not in self.busy():
                self.cluster.spawn(i)
                self.note("restarted n%d" % (i + 1))

    def _via(self, exclude):
        members = [i for i in self.cluster.running() if i != exclude
                   and not self.cluster.members[i].paused]
        self.rng.shuffle(members)
        return members

    def remove_member(self, i, timeout_s=12):
        """"removed", "refused" (the cluster said no: nothing changed) or
        "unknown" (a request may have been applied)."""
        deadline = time.monotonic() + timeout_s
        url = self.cluster.members[i].ep.peer_url
        outcome = "refused"
        while time.monotonic() < deadline:
            for via in self._via(i):
                try:
                    listed = self.cluster.member_list(via)
                except grpc.RpcError:
                    continue  # a read: nothing was proposed
                try:
                    if not any(url in mem.peerURLs for mem in listed):
                        self.cluster.members[i].removed = True
                        self.cluster.kill(i)
                        return "removed"
                    self.cluster.remove_member(via, i)
                    self.cluster.kill(i)
                    return "removed"
                except grpc.RpcError as e:
                    if not any(t in (e.details() or "") for t in REFUSALS):
                        outcome = "unknown"
                    continue
            time.sleep(0.5)
        self.note("removing n%d did not finish in %ds (%s)" % (i + 1, timeout_s, outcome))
        return outcome

    def readd_member(self, i, timeout_s=30):
        c = self.cluster
        deadline = time.monotonic() + timeout_s
        url = c.members[i].ep.peer_url
        c.kill(i)
        c.wipe(i)
        while time.monotonic() < deadline:
            for via in self._via(i):
                try:
                    listed = c.member_list(via)
                    if any(url in mem.peerURLs for mem in listed):
                        # Added by an earlier attempt that timed out: drop it again.
                        c.remove_member(via, i)
                        continue
                    c.add_member(via, i)
                    c.spawn(i)
                    self.pending_readd.discard(i)
                    self.note("re-added n%d as a new member" % (i + 1))
                    return True
                except grpc.RpcError:
                    continue
            time.sleep(0.5)
        self.pending_readd.add(i)
        c.members[i].removed = True
        self.note("re-adding n%d did not finish in %ds; will retry" % (i + 1, timeout_s))
        return False

    def disruptions(self):
        """(begin, end) of the faults that can hold a revocation back without
        an election: pauses and leader transfers."""
        out, open_at = [], {}
        for e in self.timeline:
            if e.get("fault") not in ("pause", "leader-transfer"):
                continue
            if e["event"] == "begin":
                open_at[e["text"]] = e["t"]
            elif e["event"] == "end" and e["text"] in open_at:
                out.append((open_at.pop(e["text"]), e["t"]))
        out += [(t, float("inf")) for t in open_at.values()]
        return out

    # ---- the loop --------------------------------------------------------

    def _begin_one(self):
        names = [n for n in self.faults]
        self.rng.shuffle(names)
        for name in names:
            fault = FAULT_CLASSES[name](self)
            t = time.monotonic()  # begin() may act for a while (leader transfers)
            try:
                text = fault.begin()
            except Exception as e:  # noqa: BLE001 - a fault that cannot act is skipped
                self.note("%s could not begin: %r" % (name, e))
                text = None
            if text is not None:
                self.active.append((fault, text, t))
                self.timeline.append({"t": t, "event": "begin", "fault": name, "text": text})
                self.counts[name] = self.counts.get(name, 0) + 1
                self.log("begin %s" % text)
                return True
        return False

    def _end_oldest(self):
        fault, text, _ = self.active.pop(0)
        try:
            fault.end()
        except Exception as e:  # noqa: BLE001
            self.note("ending %s failed: %r" % (text, e))
        self.timeline.append({"t": time.monotonic(), "event": "end", "fault": fault.name,
                              "text": text})
        self.log("end %s" % text)

    def run(self, stop):
        while not stop.is_set():
            self.revive_exited()
            for i in list(self.pending_readd):
                self.readd_member(i, timeout_s=10)
            oldest_age = time.monotonic() - self.active[0][2] if self.active else 0
            if len(self.active) >= self.overlap or oldest_age > self.overlap * max(
                    self.interval_s):
                self._end_oldest()
            # Nothing could begin (say, the faults that are left all need a
            # member up that is down): end the oldest and try again.
            if not self._begin_one() and self.active:
                self._end_oldest()
                self._begin_one()
            if stop.wait(self.rng.uniform(*self.interval_s)):
                break

    def heal_all(self, timeout_s=90):
        while self.active:
            self._end_oldest()
        self.cluster.net.heal()
        for i in range(self.cluster.size):
            self.cluster.set_delay(i, 0, 0)
            self.cluster.resume(i)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.revive_exited()
            for i in list(self.pending_readd):
                self.readd_member(i, timeout_s=20)
            for m in self.cluster.members:
                if m.proc is None and not m.removed:
                    self.cluster.spawn(m.index)
            for node in list(self.pending_undrain):
                if cancel_drain(self.cluster, node):
                    self.pending_undrain.discard(node)
            if not self.pending_readd and not self.pending_undrain and not self.cluster.exited():
                break
            time.sleep(1)
        missing = sorted(self.pending_readd | {i for i, _ in self.cluster.exited()})
        self.note("healed" if not missing else "healing left members out: %s"
                  % ", ".join("n%d" % (i + 1) for i in missing))
        return missing
