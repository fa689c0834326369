"""The Python client against a 3-member Conclave cluster with 8 native ranges.

Run by ctest (entry python_client) with CONCLAVE_BIN set; the cluster is
started and stopped by tests/integration/cluster.py on loopback ports.
"""

import base64
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.request

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, os.pardir, os.pardir, os.pardir)
sys.path.insert(0, os.path.join(HERE, os.pardir))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

import cluster  # noqa: E402
import conclave  # noqa: E402


def endpoints(members):
    return ["127.0.0.1:%d" % m.client_port for m in members]


def ready_client(members):
    """A client of `members` once the ranges have elected their first leaders."""
    client = conclave.Client(endpoints(members))
    cluster.wait_until(lambda: client.put(b"warm-up", b"1"), 30, what="a first put")
    return client


class GeneratedCodeTest(unittest.TestCase):

    def test_kv_pb2_matches_the_proto(self):
        protoc = os.environ.get("CONCLAVE_PROTOC", "protoc")
        with tempfile.TemporaryDirectory() as out:
            subprocess.run([protoc, "--python_out=" + out, "conclave/kvpb/kv.proto"],
                           cwd=os.path.join(ROOT, "proto"), check=True, timeout=60)
            with open(os.path.join(out, "conclave", "kvpb", "kv_pb2.py")) as f:
                fresh = f.read()
        with open(os.path.join(HERE, os.pardir, "conclave", "kvpb", "kv_pb2.py")) as f:
            committed = f.read()
        self.assertEqual(committed, fresh,
                         "clients/python/conclave/kvpb/kv_pb2.py is out of date: "
                         "run `make python-client`")


def under_writes(test, prefix, actions):
    """Runs each of `actions` (callables) while three writers put keys
    prefix + 000..199 (one writer per key) and a reader scans the prefix in
    pages of 7, waiting for 30 more acknowledged writes after each. Every scan
    must see each key once, in order, with the even keys written before.
    Returns the actions' results and the last value acknowledged per key."""
    acked = {}
    done = [0]  # writes acknowledged
    stop = threading.Event()
    errors = []
    eps = endpoints(test.cluster.members)

    def writer(w):
        mine = [i for i in range(200) if i % 3 == w]  # one writer per key
        n = 0
        with conclave.Client(eps) as wc:
            while not stop.is_set() and n < 5000:
                key = prefix + b"%03d" % mine[(n * 7) % len(mine)]
                value = b"w%d-%d" % (w, n)
                try:
                    wc.put(key, value)
                    acked[key] = value
                    done[0] += 1
                except conclave.ConclaveError as e:  # pragma: no cover
                    errors.append(e)
                    return
                n += 1

    even = [prefix + b"%03d" % i for i in range(0, 200, 2)]
    end = prefix[:-1] + bytes([prefix[-1] + 1])
    scans = [0]

    def scanner():
        with conclave.Client(eps) as sc:
            while not stop.is_set() and scans[0] < 1000:
                keys = [kv.key for kv in sc.scan(prefix, end, page_size=7)]
                if keys != sorted(set(keys)) or not set(even) <= set(keys):
                    errors.append("scan %d saw %r" % (scans[0], keys))
                    return
                scans[0] += 1

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(3)]
    threads.append(threading.Thread(target=scanner))
    for t in threads:
        t.start()
    results = []
    try:
        cluster.wait_until(lambda: done[0] >= 30 or errors, 30, what="writes under way")
        for action in actions:
            results.append(action())
            writes = done[0]
            cluster.wait_until(lambda: done[0] >= writes + 30 or errors, 30,
                               what="writes after the change")
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    test.assertEqual(errors, [])
    test.assertGreater(scans[0], 0)
    return results, acked


class ClientTest(cluster.ClusterTestCase):
    CLUSTER_SIZE = 3
    EXTRA_FLAGS = ("--initial-range-count", "8")

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.client = ready_client(cls.cluster.members)

    @classmethod
    def tearDownClass(cls):
        cls.client.close()
        super().tearDownClass()

    def test_put_get_delete(self):
        c = self.client
        ts = c.put(b"pgd/a", b"1")
        self.assertIsInstance(ts, conclave.Timestamp)
        self.assertEqual(c.get(b"pgd/a"), b"1")
        self.assertEqual(c.get("pgd/a"), b"1")  # str keys are UTF-8
        entry = c.get_entry(b"pgd/a")
        self.assertEqual(entry.timestamp, ts)
        later = c.put(b"pgd/a", b"2")
        self.assertGreater(later, ts)
        self.assertTrue(c.delete(b"pgd/a"))
        self.assertIsNone(c.get(b"pgd/a"))
        self.assertFalse(c.delete(b"pgd/a"))

    def test_conditional_writes(self):
        c = self.client
        c.put(b"cas/k", b"v1", if_absent=True)
        with self.assertRaises(conclave.ConditionFailed):
            c.put(b"cas/k", b"v2", if_absent=True)
        with self.assertRaises(conclave.ConditionFailed):
            c.put(b"cas/k", b"v2", if_value=b"nope")
        ts = c.put(b"cas/k", b"v2", if_value=b"v1")
        with self.assertRaises(conclave.ConditionFailed):
            c.delete(b"cas/k", if_timestamp=conclave.Timestamp(ts.wall_nanos, ts.logical + 1))
        self.assertEqual(c.get(b"cas/k"), b"v2")
        self.assertTrue(c.delete(b"cas/k", if_timestamp=ts))
        with self.assertRaises(ValueError):
            c.put(b"cas/k", b"x", if_absent=True, if_value=b"y")

    def test_scan_pages_across_ranges(self):
        c = self.client
        # Keys spread over the first byte, so over all 8 ranges.
        keys = [bytes([b]) + b"scan" for b in range(0, 256, 5)]
        for i, k in enumerate(keys):
            c.put(k, str(i))
        got = c.scan(b"", page_size=7)
        mine = [kv for kv in got if kv.key.endswith(b"scan")]
        self.assertEqual([kv.key for kv in mine], keys)
        self.assertEqual([kv.value for kv in mine], [str(i).encode() for i in range(len(keys))])
        # Every key exactly once, in order, whatever the page size.
        self.assertEqual(c.scan(b"", page_size=1000), got)
        self.assertEqual([kv.key for kv in got], sorted(kv.key for kv in got))
        self.assertEqual(len(c.scan(b"", limit=5, page_size=2)), 5)
        self.assertEqual(c.scan(keys[3], keys[6]), [kv for kv in got
                                                    if keys[3] <= kv.key < keys[6]])
        ids = {r.range_id for r in c.ranges() if r.start < conclave.SYSTEM_KEYS}
        self.assertGreaterEqual(len(ids), 8)  # more once a test split one
        # A page that ends exactly at the scan's end is the last one.
        self.assertEqual([kv.key for kv in c.scan(keys[3], keys[3] + b"\0", page_size=1)],
                         [keys[3]])
        with self.assertRaises(ValueError):
            c.scan(b"", page_size=0)

    def test_delete_range_across_ranges(self):
        c = self.client
        for b in range(0x40, 0xC0, 8):
            c.put(bytes([b]) + b"dr", b"x")
        c.put(bytes([0xC8]) + b"dr", b"kept")
        n = c.delete_range(bytes([0x40]), bytes([0xC0]))
        self.assertGreaterEqual(n, 16)
        self.assertEqual(c.scan(bytes([0x40]), bytes([0xC0])), [])
        self.assertEqual(c.get(bytes([0xC8]) + b"dr"), b"kept")
        self.assertEqual(c.delete_range(bytes([0x40]), bytes([0xC0])), 0)

    def test_bad_requests_are_refused_clearly(self):
        c = self.client
        with self.assertRaises(conclave.InvalidArgument) as e:
            c.put(b"", b"v")
        self.assertIn("key is not provided", e.exception.details)
        with self.assertRaises(conclave.InvalidArgument):
            c.scan(b"b", b"a")
        with self.assertRaises(conclave.InvalidArgument):
            c.delete_range(b"b", b"b")
        with self.assertRaises(TypeError):
            c.put(1, b"v")
        # The system's keys (the meta range) are not the client's.
        with self.assertRaises(conclave.InvalidArgument) as e:
            c.put(b"\xff\xffmeta/next_range_id", b"1")
        self.assertIn("reserved for the system", e.exception.details)
        with self.assertRaises(conclave.InvalidArgument):
            c.split(b"\xff\xff")

    def test_split_under_writes_loses_nothing(self):
        c = self.client
        # All under "sp/": one initial range.
        for i in range(0, 200, 2):
            c.put(b"sp/%03d" % i, b"v%d" % i)
        before = {r.range_id for r in c.ranges()}

        # Writers and a scanner keep going while the range splits three
        # times; each writer remembers the last value acknowledged per key.
        halves, acked = under_writes(
            self, b"sp/", [lambda k=k: c.split(k) for k in (b"sp/100", b"sp/050", b"sp/150")])
        left, right = halves[0]
        self.assertEqual(left.end, b"sp/100")
        self.assertEqual(right.start, b"sp/100")
        self.assertEqual(right.generation, left.generation)
        self.assertNotIn(right.range_id, before)
        new_ids = {r.range_id for _, r in halves}
        self.assertEqual(len(new_ids), 3)

        # No acknowledged write is lost; every key is seen exactly once.
        for key, value in acked.items():
            self.assertEqual(c.get(key), value, key)
        got = c.scan(b"sp/", b"sp0", page_size=17)
        self.assertEqual([kv.key for kv in got], [b"sp/%03d" % i for i in range(200)
                                                  if i % 2 == 0 or b"sp/%03d" % i in acked])
        # The new ranges live on every member, with their leaders.
        for m in self.cluster.members:
            with conclave.Client(endpoints([m])) as mc:
                cluster.wait_until(
                    lambda: new_ids <= {r.range_id for r in mc.ranges()}, 30,
                    what="the new ranges on member %s" % m.name)
        with self.assertRaises(conclave.ConclaveError) as e:
            c.split(b"sp/100")
        self.assertEqual(e.exception.code, grpc.StatusCode.ALREADY_EXISTS)
        # Scans stop short of the system keys, which now hold the counter.
        self.assertFalse([kv for kv in c.scan(b"") if kv.key >= conclave.SYSTEM_KEYS])

        # A member restarted after the splits reopens the new ranges.
        self.cluster.restart(1)
        with conclave.Client(endpoints(self.cluster.members[1:2])) as mc:
            cluster.wait_until(lambda: mc.get(b"sp/120") is not None, 30,
                               what="a read on the restarted member")
            self.assertTrue(new_ids <= {r.range_id for r in mc.ranges()})
            self.assertEqual(mc.scan(b"sp/", b"sp0"), c.scan(b"sp/", b"sp0"))

    def test_an_unreachable_endpoint_is_skipped(self):
        eps = ["127.0.0.1:1"] + endpoints(self.cluster.members)
        with conclave.Client(eps, timeout=5) as c:
            c.put(b"failover/k", b"v")
            self.assertEqual(c.get(b"failover/k"), b"v")
        with conclave.Client(["127.0.0.1:1"], timeout=2) as c:
            with self.assertRaises(conclave.Unavailable):
                c.get(b"failover/k")


def metric_sum(c, name):
    """The sum over the members of a metric from /metrics."""
    total = 0.0
    for m in c.members:
        with urllib.request.urlopen(m.metrics_url + "/metrics", timeout=10) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " "):
                    total += float(line.split()[1])
    return total


def page_json(member):
    """What the member's web page draws: GET /ranges.json on its metrics port."""
    with urllib.request.urlopen(member.metrics_url + "/ranges.json", timeout=30) as r:
        return json.loads(r.read().decode())


class SizeSplitTest(cluster.ClusterTestCase):
    """Ranges split by themselves once their data passes --range-split-bytes."""
    CLUSTER_SIZE = 3
    EXTRA_FLAGS = ("--initial-range-count", "2", "--range-split-bytes", "65536",
                   "--range-split-qps", "0", "--range-load-window", "1")

    def test_a_growing_range_splits_and_keeps_every_key(self):
        with ready_client(self.cluster.members) as c:
            before = [r for r in c.ranges() if r.start < conclave.SYSTEM_KEYS]
            self.assertEqual(len(before), 2)
            value = b"x" * 1024
            for i in range(400):  # about 400 KiB into the first range
                c.put(b"grow/%04d" % i, value + b"%d" % i)

            # Every range ends at or under the limit (about 400 KiB in
            # 64 KiB ranges: at least 7).
            def settled():
                rs = [r for r in c.ranges() if r.start < conclave.SYSTEM_KEYS]
                return len(rs) >= 7 and all(r.bytes <= 65536 for r in rs)
            cluster.wait_until(settled, 60, what="size splits")
            ranges = sorted(c.ranges(), key=lambda r: r.start)
            grown = [r for r in ranges if r.start < b"grow0" and (r.end == b"" or r.end > b"grow/")]
            self.assertGreaterEqual(sum(r.bytes for r in grown), 400 * 1024)
            # They cover the keyspace without gaps, and the grown one is cut
            # inside the written keys.
            self.assertEqual(ranges[0].start, b"")
            for a, b in zip(ranges, ranges[1:]):
                self.assertEqual(a.end, b.start)
            self.assertTrue(any(r.start.startswith(b"grow/") for r in ranges))
            got = c.scan(b"grow/", b"grow0", page_size=50)
            self.assertEqual([kv.key for kv in got], [b"grow/%04d" % i for i in range(400)])
            self.assertEqual(got[123].value, value + b"123")
            self.assertGreaterEqual(metric_sum(self.cluster, "conclave_native_splits_by_size_total"),
                                    3)
            self.assertEqual(metric_sum(self.cluster, "conclave_native_splits_by_load_total"), 0)


class LoadSplitTest(cluster.ClusterTestCase):
    """A range busier than --range-split-qps splits where its load halves, and its
    parts merge back once the load is gone."""
    CLUSTER_SIZE = 3
    EXTRA_FLAGS = ("--initial-range-count", "2", "--range-split-bytes", "0",
                   "--range-split-qps", "40", "--range-load-window", "1")

    def test_a_busy_range_splits_inside_its_hot_keys(self):
        with ready_client(self.cluster.members) as c:
            keys = [b"hot/%03d" % i for i in range(100)]
            for k in keys:
                c.put(k, k)
            stop = threading.Event()
            reads = [0]

            def reader():
                with conclave.Client(endpoints(self.cluster.members)) as rc:
                    while not stop.is_set() and reads[0] < 100000:
                        for k in keys[::7]:
                            rc.get(k)
                            reads[0] += 1

            threads = [threading.Thread(target=reader) for _ in range(2)]
            for t in threads:
                t.start()
            try:
                cluster.wait_until(
                    lambda: any(r.start.startswith(b"hot/") for r in c.ranges()), 60,
                    what="a load split inside the hot keys")
                # Each member counts what it served; a routing reader goes
                # to the hot ranges' leaders, wherever they are.
                busy = []
                for i in range(len(self.cluster.members)):
                    with conclave.Client(endpoints(self.cluster.members[i:i + 1])) as one:
                        busy += [r for r in one.ranges() if r.requests_per_second > 0]
            finally:
                stop.set()
                for t in threads:
                    t.join(30)
            self.assertTrue(busy)
            self.assertEqual([kv.key for kv in c.scan(b"hot/", b"hot0")], keys)
            self.assertGreaterEqual(metric_sum(self.cluster, "conclave_native_splits_by_load_total"),
                                    1)
            # Cold again, the ranges the load made merge back (the initial
            # ranges' boundary, chosen by hand, stays).
            cluster.wait_until(
                lambda: not any(r.start.startswith(b"hot/") for r in c.ranges()), 60,
                what="the load's ranges merged back")
            self.assertEqual(len([r for r in c.ranges() if r.start < conclave.SYSTEM_KEYS]), 2)
            self.assertEqual([kv.key for kv in c.scan(b"hot/", b"hot0")], keys)
            self.assertGreaterEqual(metric_sum(self.cluster, "conclave_native_ranges_merged_total"),
                                    1)


class MissedSplitTest(cluster.ClusterTestCase):
    """A member down while a range splits and both halves move on (their
    logs compacted past what it has) gets both halves back."""
    CLUSTER_SIZE = 3
    EXTRA_FLAGS = ("--initial-range-count", "2", "--snapshot-count", "50",
                   "--range-split-bytes", "0", "--range-split-qps", "0")

    def test_a_member_that_missed_a_split_gets_the_new_range(self):
        with ready_client(self.cluster.members[:2]) as c:
            c.put(b"lag/a0", b"before")
            stopped = self.cluster.member_id(2)
            self.cluster.stop(2)

            # The split needs the meta range and the split range: wait until
            # both have a leader on a running member.
            def led_elsewhere():
                rs = [r for r in c.ranges() if r.range_id == 2 or (
                    r.start <= b"lag/m" and (r.end == b"" or r.end > b"lag/m"))]
                return len(rs) == 2 and all(r.leader_node not in (0, stopped) for r in rs)
            cluster.wait_until(led_elsewhere, 30, what="leaders on the running members")
            left, right = c.split(b"lag/m")
            # Past the 50 entries a range's log keeps: both logs compact.
            for i in range(150):
                c.put(b"lag/a%03d" % i, b"L%d" % i)
                c.put(b"lag/z%03d" % i, b"R%d" % i)
            self.cluster.restart(2)
            third = endpoints(self.cluster.members[2:])
            with conclave.Client(third) as tc:
                def has_both():
                    ids = {r.range_id for r in tc.ranges()}
                    return left.range_id in ids and right.range_id in ids
                cluster.wait_until(has_both, 60, what="both halves on the restarted member")
                cluster.wait_until(lambda: tc.get(b"lag/z149") == b"R149", 30,
                                   what="the new range's data on the restarted member")
                self.assertEqual(tc.get(b"lag/a149"), b"L149")
                self.assertEqual(tc.scan(b"lag/", b"lag0"), c.scan(b"lag/", b"lag0"))
                mine = {r.range_id: r for r in tc.ranges()}
                self.assertEqual(mine[left.range_id].end, b"lag/m")
                self.assertEqual(mine[right.range_id].start, b"lag/m")


class ReplicaMoveTest(cluster.ClusterTestCase):
    """Four members, ranges of three replicas: a range's replica moves to the
    member that had none, the old member deletes its copy and keeps it
    deleted across a restart, and the replica moves back."""
    CLUSTER_SIZE = 4
    # Moves by hand only: the placement driver would even out the counts.
    EXTRA_FLAGS = ("--initial-range-count", "2", "--range-replicas", "3",
                   "--range-placement-interval", "0",
                   "--range-split-bytes", "0", "--range-split-qps", "0")

    def member_client(self, node):
        i = [self.cluster.member_id(k) for k in range(4)].index(node)
        return conclave.Client(endpoints(self.cluster.members[i:i + 1]))

    def range_of(self, client, range_id):
        return next((r for r in client.ranges() if r.range_id == range_id), None)

    def test_move_a_replica_away_and_back(self):
        nodes = sorted(self.cluster.member_id(k) for k in range(4))
        # Round robin from the member with the smallest id: the first range
        # is on the three smallest, the meta range on all four.
        first, second, third, fourth = nodes
        a, b, d = (self.member_client(n) for n in (first, second, fourth))
        try:
            cluster.wait_until(lambda: a.put(b"mv/warm", b"1"), 30, what="a first put")
            r = self.range_of(a, 16)
            self.assertEqual(sorted(p.node_id for p in r.replicas), [first, second, third])
            self.assertIsNone(self.range_of(d, 16))
            self.assertIsNotNone(self.range_of(d, 2))
            for i in range(200):
                a.put(b"mv/%03d" % i, b"v%d" % i)

            # Refusals, each leaving the range as it was.
            with self.assertRaises(conclave.ConclaveError) as e:
                a.move_replica(16, first, 0x1234)
            self.assertEqual(e.exception.code, grpc.StatusCode.NOT_FOUND)
            with self.assertRaises(conclave.ConclaveError) as e:
                a.move_replica(16, fourth, first)
            self.assertEqual(e.exception.code, grpc.StatusCode.FAILED_PRECONDITION)
            with self.assertRaises(conclave.ConclaveError) as e:
                a.move_replica(16, first, second)
            self.assertEqual(e.exception.code, grpc.StatusCode.ALREADY_EXISTS)
            with self.assertRaises(conclave.ConclaveError) as e:
                d.move_replica(16, first, fourth)  # d holds no replica of it
            self.assertEqual(e.exception.code, grpc.StatusCode.NOT_FOUND)
            self.assertEqual(self.range_of(a, 16).generation, r.generation)

            # The coordinator moves its own replica away: it hands off the
            # leadership first.
            moved = a.move_replica(16, first, fourth)
            self.assertEqual(sorted(p.node_id for p in moved.replicas), [second, third, fourth])
            self.assertFalse(any(p.learner for p in moved.replicas))
            self.assertGreater(moved.generation, r.generation)
            cluster.wait_until(lambda: self.range_of(d, 16) is not None, 30,
                               what="the range on the fourth member")
            cluster.wait_until(
                lambda: sorted(p.node_id for p in next(
                    r for r in b.ranges(cluster=True) if r.range_id == 16).replicas)
                == [second, third, fourth], 30, what="the move in the range map")
            self.assertEqual(d.get(b"mv/199"), b"v199")
            self.assertEqual(len(d.scan(b"mv/", b"mv0")), 201)  # and mv/warm
            cluster.wait_until(lambda: self.range_of(a, 16) is None, 30,
                               what="the first member to drop its replica")
            # The first member no longer holds it, and forwards to one that does.
            self.assertEqual(a.get(b"mv/000"), b"v0")
            b.put(b"mv/after", b"moved")

            # Deleted for good: a restart does not bring it back.
            i = [self.cluster.member_id(k) for k in range(4)].index(first)
            a.close()
            self.cluster.restart(i)
            a = self.member_client(first)
            cluster.wait_until(lambda: self.range_of(a, 2) is not None, 30,
                               what="the restarted member's ranges")
            self.assertIsNone(self.range_of(a, 16))

            # And back, coordinated by another member: a new replica id.
            back = b.move_replica(16, fourth, first)
            self.assertEqual(sorted(p.node_id for p in back.replicas), [first, second, third])
            self.assertGreater(max(p.replica_id for p in back.replicas), 4)
            cluster.wait_until(lambda: self.range_of(a, 16) is not None, 30,
                               what="the range back on the first member")
            self.assertEqual(a.get(b"mv/after"), b"moved")
            self.assertEqual(len(a.scan(b"mv/", b"mv0")), 202)
            cluster.wait_until(lambda: self.range_of(d, 16) is None, 30,
                               what="the fourth member to drop its replica")
            # (The first member's counters restarted with it.)
            self.assertEqual(metric_sum(self.cluster, "conclave_native_replicas_removed_total"), 1)
            self.assertEqual(metric_sum(self.cluster, "conclave_native_replicas_moved_total"), 1)
        finally:
            for c in (a, b, d):
                c.close()


class TransferLeaderTest(cluster.ClusterTestCase):
    """A range's leadership goes where it is asked, through any member, and
    refusals leave it where it was."""
    CLUSTER_SIZE = 4
    # No balancing, so that the leaderships stay where they are put.
    EXTRA_FLAGS = ("--initial-range-count", "2", "--range-replicas", "3",
                   "--range-placement-interval", "0",
                   "--range-split-bytes", "0", "--range-split-qps", "0")

    def test_transfer_leader(self):
        ids = [self.cluster.member_id(k) for k in range(4)]
        eps = endpoints(self.cluster.members)
        with conclave.Client(eps) as c:
            cluster.wait_until(lambda: c.put(b"tl/warm", b"1"), 30, what="a first put")
            r = next(x for x in c.ranges(cluster=True) if x.range_id == 16)
            voters = [p.node_id for p in r.replicas]
            outsider = next(n for n in ids if n not in voters)
            # Asked of the member holding no replica: passed to the node named.
            with conclave.Client([eps[ids.index(outsider)]]) as o:
                for round_ in range(2):
                    for n in voters:
                        moved = o.transfer_leader(16, n)
                        self.assertEqual(moved.leader_node, n)
                        with conclave.Client([eps[ids.index(n)]]) as holder:
                            here = next(x for x in holder.ranges() if x.range_id == 16)
                            self.assertEqual(here.leader_node, n)
                        c.put(b"tl/%d/%x" % (round_, n), b"1")
                        self.assertEqual(c.get(b"tl/%d/%x" % (round_, n)), b"1")
                leader = voters[-1]
                for asked in (o, c):  # the outsider itself, or any member
                    with self.assertRaises(conclave.ConclaveError) as e:
                        asked.transfer_leader(16, outsider)  # no replica there
                    self.assertEqual(e.exception.code, grpc.StatusCode.NOT_FOUND)
                with self.assertRaises(conclave.ConclaveError) as e:
                    o.transfer_leader(16, 0x1234)  # not a member
                self.assertEqual(e.exception.code, grpc.StatusCode.NOT_FOUND)
                with self.assertRaises(conclave.ConclaveError) as e:
                    o.transfer_leader(999, voters[0])  # no such range
                self.assertEqual(e.exception.code, grpc.StatusCode.NOT_FOUND)
                with conclave.Client([eps[ids.index(leader)]]) as holder:
                    here = next(x for x in holder.ranges() if x.range_id == 16)
                    self.assertEqual(here.leader_node, leader)


class MergeTest(cluster.ClusterTestCase):
    """Four members, ranges of three replicas: a range merges with its right-hand
    neighbour under writes and scans after the neighbour's replicas moved onto its
    nodes; no acknowledged write is lost, every scan sees each key once, and the
    neighbour is gone from every member and from the range map, also after a
    restart."""
    CLUSTER_SIZE = 4
    EXTRA_FLAGS = ("--initial-range-count", "2", "--range-replicas", "3",
                   "--range-placement-interval", "0",
                   "--range-split-bytes", "0", "--range-split-qps", "0")

    def test_merge_under_writes_loses_nothing(self):
        nodes = sorted(self.cluster.member_id(k) for k in range(4))
        first, second, third, fourth = nodes
        c = ready_client(self.cluster.members)
        index = {self.cluster.member_id(k): k for k in range(4)}
        second_client = conclave.Client(endpoints([self.cluster.members[index[second]]]))
        try:
            for i in range(0, 200, 2):
                c.put(b"mg/%03d" % i, b"v%d" % i)
            left, right = c.split(b"mg/100")
            self.assertTrue(right.sticky)
            # The neighbour lives elsewhere in part: the merge moves it back.
            moved = second_client.move_replica(right.range_id, first, fourth)
            self.assertEqual(sorted(p.node_id for p in moved.replicas), [second, third, fourth])

            [merged], acked = under_writes(self, b"mg/", [lambda: c.merge(b"mg/000")])
            self.assertEqual(merged.range_id, left.range_id)
            self.assertEqual((merged.start, merged.end), (left.start, right.end))
            self.assertGreater(merged.generation, moved.generation)
            self.assertEqual(sorted(p.node_id for p in merged.replicas),
                             sorted(p.node_id for p in left.replicas))
            for key, value in acked.items():
                self.assertEqual(c.get(key), value, key)
            got = c.scan(b"mg/", b"mg0", page_size=17)
            self.assertEqual([kv.key for kv in got], [b"mg/%03d" % i for i in range(200)
                                                      if i % 2 == 0 or b"mg/%03d" % i in acked])
            # The neighbour is gone everywhere, the range map included.
            for m in self.cluster.members:
                with conclave.Client(endpoints([m])) as mc:
                    cluster.wait_until(
                        lambda: right.range_id not in {r.range_id for r in mc.ranges()}, 30,
                        what="range %d gone from member %s" % (right.range_id, m.name))
            cluster.wait_until(
                lambda: [(r.range_id, r.end) for r in c.ranges(cluster=True)
                         if r.start < conclave.SYSTEM_KEYS][:1] == [(left.range_id, right.end)],
                30, what="the merge in the range map")
            self.assertGreaterEqual(
                metric_sum(self.cluster, "conclave_native_ranges_merged_total"), 1)
            # The web page's data: every member, the merged range as its leader
            # sees it, and the split, the move and the merge on the timeline.
            view = page_json(self.cluster.members[index[fourth]])
            self.assertEqual(sorted(int(n["node_id"]) for n in view["nodes"]), nodes)
            shown = {int(r["range_id"]): r for r in view["ranges"]}
            self.assertNotIn(right.range_id, shown)
            mine = shown[left.range_id]
            self.assertEqual(base64.b64decode(mine["end"]), right.end)
            self.assertIn(int(mine["leader_node"]), nodes)
            kinds = [(e["kind"], int(e["range_id"])) for e in view["events"]]
            self.assertIn(("split", left.range_id), kinds)
            self.assertIn(("move", right.range_id), kinds)
            self.assertIn(("merge", left.range_id), kinds)
            merge_event = next(e for e in view["events"] if e["kind"] == "merge")
            self.assertEqual(int(merge_event["other_range_id"]), right.range_id)
            self.assertEqual(base64.b64decode(merge_event["key"]), right.start)
            with urllib.request.urlopen(self.cluster.members[0].metrics_url + "/ranges",
                                        timeout=10) as r:
                page = r.read().decode()
            self.assertIn('<svg id="timeline"', page)
            self.assertIn("/ranges.json", page)
            # Refusals: the last user range has no right neighbour; system keys.
            with self.assertRaises(conclave.ConclaveError) as e:
                c.merge(b"\xf0")
            self.assertEqual(e.exception.code, grpc.StatusCode.FAILED_PRECONDITION)
            with self.assertRaises(conclave.ConclaveError) as e:
                c.merge(conclave.SYSTEM_KEYS + b"x")
            self.assertEqual(e.exception.code, grpc.StatusCode.INVALID_ARGUMENT)

            # A restarted member reopens the merged range, not the old one.
            self.cluster.restart(index[second])
            second_client.close()
            second_client = conclave.Client(endpoints([self.cluster.members[index[second]]]))
            cluster.wait_until(lambda: second_client.get(b"mg/150") is not None, 30,
                               what="a read on the restarted member")
            ids = {r.range_id for r in second_client.ranges()}
            self.assertIn(left.range_id, ids)
            self.assertNotIn(right.range_id, ids)
            self.assertEqual(second_client.scan(b"mg/", b"mg0"), got)
        finally:
            second_client.close()
            c.close()


class RoutingTest(cluster.ClusterTestCase):
    """Four members, ranges of three replicas: every member serves every key,
    forwarding what it does not hold, and follows the range map after splits."""
    CLUSTER_SIZE = 4
    EXTRA_FLAGS = ("--initial-range-count", "4", "--range-replicas", "3",
                   "--range-placement-interval", "0",
                   "--range-split-bytes", "0", "--range-split-qps", "0")

    def test_every_member_serves_every_key(self):
        clients = [conclave.Client(endpoints(self.cluster.members[i:i + 1])) for i in range(4)]
        try:
            cluster.wait_until(lambda: all(c.put(b"rt/warm", b"1") for c in clients), 30,
                               what="a first put through every member")
            held = [{r.range_id for r in c.ranges()} for c in clients]
            self.assertTrue(all(2 in h for h in held))
            self.assertTrue(all(len(h) == 4 for h in held))  # 3 of the 4 user ranges, and meta
            # Keys over the whole keyspace, each written through a member
            # chosen by its index, read back through every member.
            keys = [bytes([b]) + b"rt%03d" % i for i, b in enumerate(range(0, 256, 4))]
            for i, k in enumerate(keys):
                clients[i % 4].put(k, b"v%d" % i)
            for c in clients:
                self.assertEqual([c.get(k) for k in keys], [b"v%d" % i for i in range(len(keys))])
                self.assertEqual([kv.key for kv in c.scan(b"", limit=0)],
                                 sorted(keys + [b"rt/warm"]))
                # Pages that end inside ranges held elsewhere.
                self.assertEqual([kv.key for kv in c.scan(b"", page_size=7)],
                                 sorted(keys + [b"rt/warm"]))
            self.assertGreater(metric_sum(self.cluster, "conclave_native_forwarded_total"), 0)
            # Conditions are checked where the range is.
            lacking = next(i for i in range(4) if 16 not in held[i])
            with self.assertRaises(conclave.ConditionFailed):
                clients[lacking].put(keys[0], b"x", if_absent=True)
            self.assertTrue(clients[lacking].delete(keys[0]))
            self.assertIsNone(clients[(lacking + 1) % 4].get(keys[0]))

            # A split: the range map learns both halves, and a member with
            # neither routes to each.
            holder = next(i for i in range(4) if 16 in held[i])
            left, right = clients[holder].split(b"\x20")
            lo, hi = keys[1], keys[12]  # in range 16, either side of the split
            self.assertLess(lo, b"\x20")
            self.assertGreaterEqual(hi, b"\x20")
            def mapped():
                return {r.range_id: r for r in clients[lacking].ranges(cluster=True)}
            def both_halves():
                m = mapped()
                r = m.get(right.range_id)
                return (r is not None and (r.start, r.end) == (right.start, right.end)
                        and r.generation == right.generation and m[16].end == b"\x20"
                        and sorted(p.node_id for p in r.replicas)
                        == sorted(p.node_id for p in right.replicas))
            cluster.wait_until(both_halves, 30, what="both halves in the range map")
            self.assertEqual(sorted(mapped()), [16, 17, 18, 19, right.range_id])
            self.assertEqual(clients[lacking].get(hi), b"v12")
            self.assertEqual(clients[lacking].get(lo), b"v1")
            self.assertEqual(clients[lacking].delete_range(b"\x10", b"\x30"),
                             len([k for k in keys if b"\x10" <= k < b"\x30"]))
            self.assertEqual(clients[holder].scan(b"\x10", b"\x30"), [])
            # A split asked of a member without the range: one holding it splits.
            left2, right2 = clients[lacking].split(b"\x18")
            self.assertEqual((left2.range_id, left2.end, right2.start), (16, b"\x18", b"\x18"))
            with self.assertRaises(conclave.ConclaveError) as e:
                clients[lacking].split(b"\x18")
            self.assertEqual(e.exception.code, grpc.StatusCode.ALREADY_EXISTS)
        finally:
            for c in clients:
                c.close()


class RouteCacheTest(cluster.ClusterTestCase):
    """Four members, ranges of three replicas: a client given every member
    sends each key's requests to its range's leader, and follows a move."""
    CLUSTER_SIZE = 4
    EXTRA_FLAGS = RoutingTest.EXTRA_FLAGS

    def test_a_client_of_every_member_sends_each_key_to_its_leader(self):
        members = self.cluster.members
        routed = conclave.Client(endpoints(members))
        single = [conclave.Client(endpoints(members[i:i + 1])) for i in range(4)]
        keys = [bytes([b]) + b"rl%03d" % i for i, b in enumerate(range(0, 256, 8))]
        try:
            cluster.wait_until(lambda: routed.put(b"rl/warm", b"1"), 30, what="a first put")
            for k in keys:
                routed.put(k, b"first")

            def leaders():
                out = {}
                for c in single:
                    for r in c.ranges():
                        if r.leader_node:
                            out[r.range_id] = r.leader_node
                return out

            node_of = {self.cluster.member_id(k): k for k in range(4)}
            ranges = sorted(single[0].ranges(cluster=True), key=lambda r: r.start)

            def range_of(k):
                return next(r for r in ranges if r.start <= k and (not r.end or k < r.end))

            # Once every range's leader is known, each key's request goes
            # to the member that leads its range, and nothing is forwarded.
            def routed_to_leaders():
                lead = leaders()
                for k in keys:
                    routed.get(k)
                return all(range_of(k).range_id in lead
                           and routed._router.pick(k) == node_of[lead[range_of(k).range_id]]
                           for k in keys)
            cluster.wait_until(routed_to_leaders, 20, what="routes to every range's leader")
            before = metric_sum(self.cluster, "conclave_native_forwarded_total")
            for i, k in enumerate(keys):
                routed.put(k, b"second%d" % i)
                self.assertEqual(routed.get(k), b"second%d" % i)
            self.assertEqual(metric_sum(self.cluster, "conclave_native_forwarded_total"), before)

            # The leader of range 16 moves away from its member: the hint
            # in the next answer sends the key's requests to the new one.
            k16 = next(k for k in keys if range_of(k).range_id == 16)
            lead16 = leaders()[16]
            spare = next(n for n in node_of
                         if not any(p.node_id == n for p in range_of(k16).replicas))
            single[node_of[lead16]].move_replica(16, lead16, spare)

            def follows():
                routed.put(k16, b"after")
                lead = leaders().get(16)
                return lead is not None and routed._router.pick(k16) == node_of[lead]
            cluster.wait_until(follows, 20, what="the route to follow the move")
            before = metric_sum(self.cluster, "conclave_native_forwarded_total")
            for _ in range(20):
                routed.put(k16, b"after")
            self.assertEqual(metric_sum(self.cluster, "conclave_native_forwarded_total"), before)
            self.assertEqual(single[node_of[lead16]].get(k16), b"after")
        finally:
            routed.close()
            for c in single:
                c.close()


class PlacementTest(cluster.ClusterTestCase):
    """Four members, ranges of three replicas: a member killed for longer than
    --range-replica-down-time has its replicas re-created on the others, and
    no acknowledged write is lost."""
    CLUSTER_SIZE = 4
    EXTRA_FLAGS = ("--initial-range-count", "2", "--range-replicas", "3",
                   "--range-replica-down-time", "3",
                   "--range-split-bytes", "0", "--range-split-qps", "0")

    def test_a_down_members_replicas_are_made_again_elsewhere(self):
        nodes = sorted(self.cluster.member_id(k) for k in range(4))
        index = {self.cluster.member_id(k): k for k in range(4)}
        # The second smallest id holds a replica of both user ranges.
        down = nodes[1]
        others = [index[n] for n in nodes if n != down]
        with ready_client([self.cluster.members[i] for i in others]) as c:
            written = {}
            for i in range(100):
                for prefix in (b"\x10", b"\xa0"):  # one key in each user range
                    k = prefix + b"pl%03d" % i
                    c.put(k, b"v%d" % i)
                    written[k] = b"v%d" % i
            before = {r.range_id: r for r in c.ranges(cluster=True)}
            self.assertTrue(all(any(p.node_id == down for p in before[r].replicas)
                                for r in (16, 17)))
            self.cluster.kill(index[down])

            def replaced():
                m = {r.range_id: r for r in c.ranges(cluster=True)}
                return all(len(m[r].replicas) == 3 and not any(
                    p.node_id == down or p.learner for p in m[r].replicas) for r in (16, 17))
            cluster.wait_until(replaced, 60, what="the down member's replicas made elsewhere")
            after = {r.range_id: r for r in c.ranges(cluster=True)}
            # Each range kept the replicas it had on live members, and each
            # live member holds one or two.
            for r in (16, 17):
                kept = {p.node_id for p in before[r].replicas} - {down}
                self.assertTrue(kept <= {p.node_id for p in after[r].replicas})
            for k, v in written.items():
                self.assertEqual(c.get(k), v)
            c.put(b"\x10after", b"1")
            self.assertEqual(c.get(b"\x10after"), b"1")
            self.assertGreaterEqual(
                metric_sum_running(self.cluster, "conclave_native_replicas_rereplicated_total"), 2)

            # Back: it deletes its stale copies (the range map has the ranges
            # without it) and, holding nothing, receives a replica to even
            # out the members.
            self.cluster.restart(index[down])
            with conclave.Client(endpoints(self.cluster.members[index[down]:index[down] + 1])) as back:
                def settled():
                    m = {r.range_id: r for r in c.ranges(cluster=True)}
                    mine = {r.range_id for r in back.ranges() if r.range_id != 2}
                    mapped = {r for r in (16, 17) if any(p.node_id == down and not p.learner
                                                           for p in m[r].replicas)}
                    return mine == mapped and len(mapped) == 1
                cluster.wait_until(settled, 60, what="stale copies gone and one replica back")
                for k, v in written.items():
                    self.assertEqual(back.get(k), v)


class RemovedMemberTest(cluster.ClusterTestCase):
    """Four members, the down time at its five-minute default: a member removed
    from the cluster is gone for good, and its replicas (the meta range's too)
    are made again on the others at once, side by side; nothing acknowledged
    is lost."""
    CLUSTER_SIZE = 4
    EXTRA_FLAGS = ("--initial-range-count", "2", "--range-replicas", "3",
                   "--range-split-bytes", "0", "--range-split-qps", "0")

    def test_a_removed_members_replicas_are_made_again_at_once(self):
        index = {self.cluster.member_id(k): k for k in range(4)}
        with ready_client(self.cluster.members) as c:
            written = {}
            for i in range(50):
                for prefix in (b"\x10", b"\xa0"):  # one key in each user range
                    k = prefix + b"rm%03d" % i
                    c.put(k, b"v%d" % i)
                    written[k] = b"v%d" % i
            mapped = c.ranges(cluster=True)
            # The member holding the most: a replica of the meta range and of
            # a user range at least (three of four members hold each).
            held = {n: sum(any(p.node_id == n for p in r.replicas) for r in mapped)
                    for n in index}
            meta_holders = set()
            for n, k in index.items():
                with conclave.Client(endpoints([self.cluster.members[k]])) as one:
                    if any(r.range_id == 2 for r in one.ranges()):
                        meta_holders.add(n)
            gone = max(meta_holders, key=lambda n: held[n])
            self.assertGreaterEqual(held[gone], 1)
            stay = [k for n, k in index.items() if n != gone]
            self.cluster.remove_member(stay[0], index[gone])
            self.cluster.wait_removed_exit(index[gone])
            c.close()

        with ready_client([self.cluster.members[k] for k in stay]) as c:
            def whole():
                ranges = list(c.ranges(cluster=True))
                for k in stay:
                    with conclave.Client(endpoints([self.cluster.members[k]])) as one:
                        ranges += [r for r in one.ranges() if r.range_id == 2]
                return len(ranges) == len(mapped) + 3 and all(
                    len(r.replicas) == 3 and not any(p.node_id == gone or p.learner
                                                     for p in r.replicas) for r in ranges)
            cluster.wait_until(whole, 60, what="the removed member's replicas made elsewhere")
            for k, v in written.items():
                self.assertEqual(c.get(k), v)
            self.assertGreaterEqual(
                metric_sum_running(self.cluster, "conclave_native_replicas_rereplicated_total"),
                held[gone] + 1)


class ZoneTest(cluster.ClusterTestCase):
    """Four members given --labels, two of them in one zone: each range's
    replicas end up in three different zones, and stay there while the
    replica counts are evened out; nodes() and `conclave node list` show the
    labels."""
    CLUSTER_SIZE = 4
    EXTRA_FLAGS = ("--initial-range-count", "2", "--range-replicas", "3",
                   "--range-placement-interval", "1",
                   "--range-split-bytes", "0", "--range-split-qps", "0")

    def test_replicas_go_to_different_zones(self):
        nodes = sorted(self.cluster.member_id(k) for k in range(4))
        index = {self.cluster.member_id(k): k for k in range(4)}
        # The initial ranges are on the first three and the last three
        # members by id: the middle two share zone a, so both ranges start
        # with two replicas there, and the replica counts (1, 2, 2, 1) are
        # even enough that only the labels move anything.
        zone = {nodes[0]: "b", nodes[1]: "a", nodes[2]: "a", nodes[3]: "c"}
        with ready_client(self.cluster.members) as c:
            for i in range(50):
                c.put(b"\x10z%03d" % i, b"v%d" % i)
                c.put(b"\xa0z%03d" % i, b"v%d" % i)
            start = {r.range_id: r for r in c.ranges(cluster=True)}
            self.assertTrue(all(sum(zone[p.node_id] == "a" for p in start[r].replicas) == 2
                                for r in (16, 17)))
        for n in nodes:
            m = self.cluster.members[index[n]]
            m.extra_flags = ["--labels", "zone=%s,host=h%d" % (zone[n], index[n])]
            self.cluster.restart(index[n])

        with ready_client(self.cluster.members) as c:
            def labelled():
                return {n.node_id: dict(n.labels) for n in c.nodes()}
            cluster.wait_until(lambda: all(labelled()[n].get("zone") == zone[n] for n in nodes),
                               30, what="the labels reported")
            self.assertEqual([k for k, _ in next(iter(c.nodes())).labels], ["zone", "host"])

            def spread():
                ranges = c.ranges(cluster=True)
                return all(len(r.replicas) == 3 and not any(p.learner for p in r.replicas) and
                           len({zone[p.node_id] for p in r.replicas}) == 3 for r in ranges)
            cluster.wait_until(spread, 60, what="each range in three zones")
            # Still spread a while later (the count balancing keeps it so).
            time.sleep(4)
            self.assertTrue(spread())
            for i in range(50):
                self.assertEqual(c.get(b"\x10z%03d" % i), b"v%d" % i)
                self.assertEqual(c.get(b"\xa0z%03d" % i), b"v%d" % i)
        out = subprocess.run([os.environ["CONCLAVE_BIN"], "--endpoints",
                              endpoints(self.cluster.members)[0], "-w", "table", "node", "list"],
                             capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("LABELS", out.stdout)
        self.assertIn("zone=a,host=h%d" % index[nodes[1]], out.stdout)


class BytesBalanceTest(cluster.ClusterTestCase):
    """Four members with equal replica counts but not equal bytes (one member
    holds all four ranges with data, another two): the placement driver moves
    a range with data from the fuller to the emptier, and the replica counts
    are evened out again with ranges without data."""
    CLUSTER_SIZE = 4
    EXTRA_FLAGS = ("--initial-range-count", "8", "--range-replicas", "3",
                   "--range-placement-interval", "0",
                   "--range-split-bytes", "0", "--range-split-qps", "0")

    def test_members_bytes_are_evened_out(self):
        a, b, c_, d = sorted(self.cluster.member_id(k) for k in range(4))
        index = {self.cluster.member_id(k): k for k in range(4)}
        value = b"x" * (64 << 10)

        def big_held(c):
            ranges = {r.range_id: r for r in c.ranges(cluster=True)}
            return {n: sum(any(p.node_id == n and not p.learner for p in ranges[r].replicas)
                           for r in (16, 17, 18, 19)) for n in (a, b, c_, d)}
        # Ranges 16-19 start at 0x0000, 0x2000, 0x4000 and 0x6000; each gets
        # 2 MiB. The initial ranges go round the members by id: 16 on a, b, c;
        # 17 on b, c, d; 18 on c, d, a; 19 on d, a, b; 20 on a, b, c.
        with ready_client(self.cluster.members) as c:
            for prefix in (b"\x10", b"\x30", b"\x50", b"\x70"):
                for i in range(32):
                    c.put(prefix + b"big%02d" % i, value)
            with conclave.Client(endpoints([self.cluster.members[index[b]]])) as via_b:
                via_b.move_replica(17, d, a)  # a: all four ranges with data, d: two
                via_b.move_replica(20, a, d)  # six replicas each again
            cluster.wait_until(lambda: [n.ranges for n in c.nodes()] == [7] * 4, 30,
                               what="seven replicas each reported (the meta range's too)")
            self.assertEqual(big_held(c), {a: 4, b: 3, c_: 3, d: 2})

        # The placement driver starts now, looking every second.
        flags = self.cluster.extra_flags
        flags[flags.index("--range-placement-interval") + 1] = "1"
        for k in range(4):
            self.cluster.restart(k)
        with ready_client(self.cluster.members) as c:
            cluster.wait_until(lambda: sorted(big_held(c).values()) == [3, 3, 3, 3], 60,
                               what="each member holding three ranges with data")

            def counts_even():
                held = [n.ranges for n in c.nodes()]
                return max(held) - min(held) <= 1
            cluster.wait_until(counts_even, 60, what="the replica counts even again")
            self.assertEqual(sorted(big_held(c).values()), [3, 3, 3, 3])

            def bytes_even():
                sizes = [n.bytes for n in c.nodes()]
                return max(sizes) - min(sizes) < 1 << 20
            cluster.wait_until(bytes_even, 30, what="the members' bytes reported even")
            for prefix in (b"\x10", b"\x30", b"\x50", b"\x70"):
                self.assertEqual(c.get(prefix + b"big31"), value)
            self.assertGreaterEqual(
                metric_sum(self.cluster, "conclave_native_replicas_rebalanced_total"), 1)


class LeaderBalanceTest(cluster.ClusterTestCase):
    """Three members, six ranges on all three: a member that comes back from a
    crash leads nothing until the others hand it leaderships, one at a time,
    until no member leads two more than another."""
    EXTRA_FLAGS = ("--initial-range-count", "6", "--range-replicas", "3",
                   "--range-placement-interval", "1",
                   "--range-split-bytes", "0", "--range-split-qps", "0")

    def led(self):
        """Per member index, the ranges (the meta range too) it says it leads."""
        out = {}
        for i in self.cluster.running_indexes():
            node = self.cluster.member_id(i)
            with conclave.Client(endpoints(self.cluster.members[i:i + 1])) as c:
                out[i] = sum(1 for r in c.ranges() if r.leader_node == node)
        return out

    def index_of(self, node):
        return [self.cluster.member_id(k) for k in range(3)].index(node)

    def test_a_member_back_from_a_crash_is_handed_leaderships(self):
        client = ready_client(self.cluster.members)
        try:
            keys = [bytes([b]) + b"lb" for b in range(0, 256, 16)]
            for k in keys:
                client.put(k, b"1")
            self.cluster.kill(0)
            # Its ranges elect leaders among the other two.
            cluster.wait_until(lambda: sum(self.led().values()) == 7, 30,
                               what="every range led by the two left")
            # Back, it wins no election (the ranges have live leaders): what
            # it leads, it was handed.
            self.cluster.restart(0)
            for k in keys:
                client.put(k, b"2")

            def balanced():
                counts = self.led()
                return (len(counts) == 3 and sum(counts.values()) == 7
                        and max(counts.values()) - min(counts.values()) <= 1)
            cluster.wait_until(balanced, 60, interval_s=0.5, what="leaders spread over the three")
            self.assertGreaterEqual(metric_sum(self.cluster, "conclave_native_leaders_moved_total"),
                                    2)
            self.assertEqual([client.get(k) for k in keys], [b"2"] * len(keys))

            # The members' reports agree, a few seconds later.
            ids = sorted(self.cluster.member_id(i) for i in range(3))
            def reported():
                nodes = client.nodes()
                counts = self.led()
                return ([n.node_id for n in nodes] == ids and all(n.state == "up" for n in nodes)
                        and all(n.ranges == 7 for n in nodes)
                        and sum(n.leaders for n in nodes) == 7
                        and all(0 <= n.report_age_seconds < 10 for n in nodes)
                        and [n.leaders for n in nodes] == [counts[self.index_of(n.node_id)]
                                                           for n in nodes])
            cluster.wait_until(reported, 20, interval_s=0.5, what="the members' reports")
        finally:
            client.close()


class LeaderLoadTest(cluster.ClusterTestCase):
    """Three members, six ranges on all three: of two busy ranges led by one member,
    one's leadership is handed to a member serving less, and they stay apart."""
    EXTRA_FLAGS = ("--initial-range-count", "6", "--range-replicas", "3",
                   "--range-placement-interval", "1", "--range-load-window", "1",
                   "--range-split-bytes", "0", "--range-split-qps", "0",
                   "--range-merge-bytes", "0")

    def leaders(self):
        """Per range id, the members that say they lead it."""
        out = {}
        for i in self.cluster.running_indexes():
            node = self.cluster.member_id(i)
            with conclave.Client(endpoints(self.cluster.members[i:i + 1])) as c:
                for r in c.ranges():
                    if r.leader_node == node:
                        out.setdefault(r.range_id, set()).add(node)
        return out

    def test_busy_ranges_led_by_one_member_are_spread(self):
        with ready_client(self.cluster.members) as c:
            native = [r for r in c.ranges() if r.start < conclave.SYSTEM_KEYS]
            self.assertEqual(len(native), 6)
            # Six ranges over three members: one leads at least two.
            cluster.wait_until(lambda: all(len(self.leaders().get(r.range_id, ())) == 1
                                           for r in native), 30, what="every range led")
            by_node = {}
            for rid, nodes in self.leaders().items():
                if rid in [r.range_id for r in native]:
                    by_node.setdefault(next(iter(nodes)), []).append(rid)
            hot = max(by_node.values(), key=len)
            self.assertGreaterEqual(len(hot), 2)
            hot = hot[:2]
            keys = [r.start + b"\x00busy" for r in native if r.range_id in hot]
            for k in keys:
                c.put(k, b"1")
            stop = threading.Event()
            gets = [0]

            def reader(key):
                with conclave.Client(endpoints(self.cluster.members)) as rc:
                    while not stop.is_set() and gets[0] < 200000:
                        rc.get(key)
                        gets[0] += 1

            threads = [threading.Thread(target=reader, args=(k,)) for k in keys]
            for t in threads:
                t.start()

            def apart():
                led = self.leaders()
                owners = [led.get(rid, set()) for rid in hot]
                return all(len(o) == 1 for o in owners) and owners[0] != owners[1]
            try:
                cluster.wait_until(apart, 60, interval_s=0.5,
                                   what="the busy ranges led by different members")
                moved = metric_sum(self.cluster, "conclave_native_leaders_moved_by_load_total")
                self.assertGreaterEqual(moved, 1)
                # And they stay apart: neither goes back while both stay busy.
                for _ in range(8):
                    time.sleep(1)
                    self.assertTrue(apart())
                self.assertLessEqual(
                    metric_sum(self.cluster, "conclave_native_leaders_moved_by_load_total"),
                    moved + 1)
            finally:
                stop.set()
                for t in threads:
                    t.join(30)
            self.assertGreater(gets[0], 0)
            self.assertEqual([c.get(k) for k in keys], [b"1", b"1"])


def metric_sum_running(c, name):
    """metric_sum over the members that run."""
    total = 0.0
    for i in c.running_indexes():
        with urllib.request.urlopen(c.members[i].metrics_url + "/metrics", timeout=10) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " "):
                    total += float(line.split()[1])
    return total



class DrainTest(cluster.ClusterTestCase):
    """Four members, four ranges of three replicas, the meta range on all four: a
    member drained with `conclave node drain` while a writer runs ends with no
    replica (its meta range replica is removed: every other member holds one),
    gets none back, and is then removed; no acknowledged write is lost."""
    CLUSTER_SIZE = 4
    EXTRA_FLAGS = ("--initial-range-count", "4", "--range-replicas", "3",
                   "--range-placement-interval", "1", "--range-split-bytes", "0",
                   "--range-split-qps", "0")

    def test_a_drained_member_ends_with_no_replica(self):
        index = {self.cluster.member_id(k): k for k in range(4)}
        drained = sorted(index)[0]
        others = [self.cluster.members[index[n]] for n in sorted(index) if n != drained]
        c = ready_client(others)
        writer = conclave.Client(endpoints(others))
        info = lambda: next(n for n in c.nodes() if n.node_id == drained)  # noqa: E731
        acked = {}
        stop = threading.Event()

        def write():
            for i in range(20000):
                if stop.is_set():
                    return
                k = bytes([(i * 37) % 256]) + b"dr%05d" % i
                try:
                    writer.put(k, b"v%d" % i)
                    acked[k] = b"v%d" % i
                except conclave.ConclaveError:
                    pass  # not acknowledged: either outcome is right
        try:
            with self.assertRaises(conclave.ConclaveError) as e:
                c.drain_node(0xdead)
            self.assertEqual(e.exception.code, grpc.StatusCode.NOT_FOUND)
            self.assertFalse(info().draining)
            cluster.wait_until(lambda: info().ranges,
                               30, what="the member's first report")
            t = threading.Thread(target=write)
            t.start()
            try:
                out = subprocess.run(
                    [os.environ["CONCLAVE_BIN"], "--endpoints", ",".join(endpoints(others)),
                     "-w", "json", "node", "drain", "%x" % drained, "--wait-timeout", "120"],
                    capture_output=True, text=True, timeout=150)
            finally:
                stop.set()
                t.join()
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertIn("replicas", out.stderr)  # progress lines
            self.assertIn('"draining":true', out.stdout)
            self.assertGreater(len(acked), 0)
            mine = info()
            self.assertTrue(mine.draining)
            self.assertEqual(mine.ranges, 0)
            # A second drain would leave two members for ranges of three.
            with self.assertRaises(conclave.ConclaveError) as e:
                c.drain_node(sorted(index)[1])
            self.assertEqual(e.exception.code, grpc.StatusCode.FAILED_PRECONDITION)
            self.assertGreaterEqual(
                metric_sum(self.cluster, "conclave_native_replicas_drained_total"), 1)
            # Nothing comes back while it is drained, and nothing is lost.
            placed = lambda: [r.range_id for r in c.ranges(cluster=True)
                              if any(p.node_id == drained for p in r.replicas)]
            cluster.wait_until(lambda: placed() == [], 30, what="the range map without it")
            for k, v in acked.items():
                self.assertEqual(c.get(k), v, k)
            with conclave.Client(endpoints([self.cluster.members[index[drained]]])) as alone:
                self.assertEqual(alone.ranges(), [])
            self.assertEqual(placed(), [])

            self.cluster.remove_member(index[sorted(index)[1]], index[drained])
            self.cluster.wait_removed_exit(index[drained])
            c.put(b"\x10after", b"1")
            self.assertEqual(c.get(b"\x10after"), b"1")
            cluster.wait_until(lambda: len(c.nodes()) == 3, 30, what="three members listed")
            c.drain_node(drained, cancel=True)  # its record goes too
        finally:
            writer.close()
            c.close()


if __name__ == "__main__":
    unittest.main()
