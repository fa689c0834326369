"""python-etcd3 0.12 (Debian's python3-etcd3) against a 3-member cluster.

The client is used as applications use it; where it hides something the
server must get right (count_only, which this client version silently drops)
the raw stubs it ships (etcd3.etcdrpc) make the request instead.

python-etcd3's watch iterators block without a deadline; every watch here is
either read through a callback into a queue with timeouts, or cancelled by a
timer so that iteration always ends.
"""

import queue
import threading
import time
import unittest

import etcd3
import etcd3.events
import etcd3.exceptions

import cluster
from cluster import RPC_TIMEOUT_S, etcdrpc, wait_until

EVENT_TIMEOUT_S = 10


class PythonEtcd3Test(cluster.ClusterTestCase):
    CLUSTER_SIZE = 3

    def setUp(self):
        self.c = self.cluster.client(0)
        # Every test has its own prefix; the name keeps failures readable.
        self.p = "%s/%d/" % (self._testMethodName, time.monotonic_ns())

    def collect_watch(self, iterator, cancel, count, timeout_s=EVENT_TIMEOUT_S):
        """Reads count events from a python-etcd3 event iterator, bounded.

        A timer cancels the watch at the deadline, which ends the iteration,
        so a missing event fails the test instead of hanging it.
        """
        timer = threading.Timer(timeout_s, cancel)
        timer.start()
        events = []
        try:
            for event in iterator:
                events.append(event)
                if len(events) >= count:
                    break
        finally:
            timer.cancel()
            cancel()
        self.assertEqual(len(events), count, "watch ended after %d events" % len(events))
        return events

    # ---- KV ------------------------------------------------------------------

    def test_put_and_get(self):
        p = self.p
        resp = self.c.put(p + "k", "v1")
        value, meta = self.c.get(p + "k")
        self.assertEqual(value, b"v1")
        self.assertEqual(meta.key, (p + "k").encode())
        self.assertEqual((meta.version, meta.lease_id), (1, 0))
        self.assertEqual(meta.create_revision, resp.header.revision)
        self.assertEqual(meta.mod_revision, resp.header.revision)

        resp2 = self.c.put(p + "k", b"v2\x00\xff", prev_kv=True)
        self.assertEqual((resp2.prev_kv.key, resp2.prev_kv.value), ((p + "k").encode(), b"v1"))
        self.assertEqual(resp2.header.revision, resp.header.revision + 1)
        for i in range(self.cluster.size):
            value, meta = self.cluster.client(i).get(p + "k")
            self.assertEqual(value, b"v2\x00\xff")
            self.assertEqual((meta.version, meta.create_revision, meta.mod_revision),
                             (2, resp.header.revision, resp2.header.revision))
        self.assertEqual(self.c.get(p + "missing"), (None, None))
        # A put without prev_kv returns none.
        self.assertFalse(self.c.put(p + "k", "v3").HasField("prev_kv"))

    def test_prefix_and_range(self):
        p = self.p
        for name, value in (("c", "1"), ("a", "3"), ("b", "2"), ("d", "0")):
            self.c.put(p + name, value)
        self.c.put(p[:-1] + "0", "outside")  # the byte after '/' is '0'

        def keys(results):
            return [meta.key.decode()[len(p):] for _, meta in results]

        self.assertEqual(keys(self.c.get_prefix(p)), ["a", "b", "c", "d"])
        self.assertEqual(keys(self.c.get_prefix(p, sort_order="descend")), ["d", "c", "b", "a"])
        self.assertEqual(keys(self.c.get_prefix(p, sort_order="ascend", sort_target="value")),
                         ["d", "c", "b", "a"])
        self.assertEqual(keys(self.c.get_prefix(p, sort_order="ascend", sort_target="create")),
                         ["c", "a", "b", "d"])
        self.assertEqual(keys(self.c.get_range(p + "b", p + "d")), ["b", "c"])
        self.assertEqual(keys(self.c.get_range(p + "b", p + "d", sort_order="descend")),
                         ["c", "b"])
        keys_only = list(self.c.get_prefix(p, keys_only=True))
        self.assertEqual([v for v, _ in keys_only], [b""] * 4)
        self.assertEqual(keys(keys_only), ["a", "b", "c", "d"])

        # python-etcd3 0.12 accepts limit and count_only but never sends
        # them; the raw request carries them.
        end = etcd3.utils.increment_last_byte(p.encode())
        resp = self.c.kvstub.Range(etcdrpc.RangeRequest(key=p.encode(), range_end=end, limit=2),
                                   RPC_TIMEOUT_S)
        self.assertEqual((resp.count, resp.more, [kv.key for kv in resp.kvs]),
                         (4, True, [(p + "a").encode(), (p + "b").encode()]))
        resp = self.c.kvstub.Range(etcdrpc.RangeRequest(key=p.encode(), range_end=end,
                                                        count_only=True), RPC_TIMEOUT_S)
        self.assertEqual((resp.count, resp.more, len(resp.kvs)), (4, False, 0))

        # A serializable read on a follower, once it has caught up.
        wait_until(lambda: keys(self.cluster.client(2).get_prefix(p, serializable=True))
                   == ["a", "b", "c", "d"], 10, what="follower catch-up")

    def test_delete(self):
        p = self.p
        self.c.put(p + "a", "1")
        self.assertTrue(self.c.delete(p + "a"))
        self.assertFalse(self.c.delete(p + "a"))
        self.c.put(p + "b", "2")
        resp = self.c.delete(p + "b", prev_kv=True, return_response=True)
        self.assertEqual(resp.deleted, 1)
        self.assertEqual([(kv.key, kv.value) for kv in resp.prev_kvs], [((p + "b").encode(), b"2")])
        for n in range(3):
            self.c.put("%sx/%d" % (p, n), "v")
        self.c.put(p + "y", "kept")
        resp = self.c.delete_prefix(p + "x/")
        self.assertEqual(resp.deleted, 3)
        self.assertEqual([m.key for _, m in self.c.get_prefix(p)], [(p + "y").encode()])
        self.assertEqual(self.c.delete_prefix(p + "x/").deleted, 0)

    def test_replace_and_put_if_not_exists(self):
        p = self.p
        self.assertTrue(self.c.put_if_not_exists(p + "k", "first"))
        self.assertFalse(self.c.put_if_not_exists(p + "k", "second"))
        self.assertTrue(self.c.replace(p + "k", "first", "third"))
        self.assertFalse(self.c.replace(p + "k", "first", "fourth"))
        self.assertEqual(self.cluster.client(1).get(p + "k")[0], b"third")

    # ---- transactions -----------------------------------------------------------

    def test_transaction_compares(self):
        p, t = self.p, self.c.transactions
        put = self.c.put(p + "k", "v")
        rev = put.header.revision
        self.c.put(p + "k", "w")  # version 2, mod rev+1, create rev
        true_compares = [
            t.value(p + "k") == "w", t.value(p + "k") != "v",
            t.value(p + "k") > "v", t.value(p + "k") < "x",
            t.version(p + "k") == 2, t.version(p + "k") > 1, t.version(p + "k") < 3,
            t.create(p + "k") == rev, t.create(p + "k") < rev + 1,
            t.mod(p + "k") == rev + 1, t.mod(p + "k") > rev,
            t.version(p + "missing") == 0, t.create(p + "missing") == 0,
        ]
        false_compares = [
            t.value(p + "k") == "v", t.version(p + "k") == 1, t.version(p + "k") > 2,
            t.create(p + "k") > rev, t.mod(p + "k") == rev, t.mod(p + "k") < rev + 1,
            t.version(p + "missing") > 0,
        ]
        for cmp in true_compares:
            with self.subTest(repr(cmp)):
                ok, _ = self.c.transaction(compare=[cmp], success=[], failure=[])
                self.assertTrue(ok)
        for cmp in false_compares:
            with self.subTest(repr(cmp)):
                ok, _ = self.c.transaction(compare=[cmp], success=[], failure=[])
                self.assertFalse(ok)
        # All compares must hold.
        ok, _ = self.c.transaction(compare=true_compares + false_compares[:1],
                                   success=[], failure=[])
        self.assertFalse(ok)

    def test_transaction_branches(self):
        p, t = self.p, self.c.transactions
        self.c.put(p + "k", "v")
        self.c.put(p + "gone", "x")
        ok, responses = self.c.transaction(
            compare=[t.value(p + "k") == "v"],
            # Every compare, nested ones included, is evaluated against the
            # state before the txn: the nested txn does not see the put of s.
            success=[t.put(p + "s", "yes"), t.get(p + "k"), t.delete(p + "gone"),
                     t.txn(compare=[t.version(p + "s") == 1],
                           success=[t.put(p + "nested", "saw-s")],
                           failure=[t.put(p + "nested", "before-s")])],
            failure=[t.put(p + "f", "no")])
        self.assertTrue(ok)
        self.assertEqual(len(responses), 4)
        self.assertTrue(responses[0].HasField("response_put"))
        self.assertEqual([(v, m.key) for v, m in responses[1]], [(b"v", (p + "k").encode())])
        self.assertEqual(responses[2].response_delete_range.deleted, 1)
        self.assertFalse(responses[3].response_txn.succeeded)
        got = {m.key.decode()[len(p):]: v for v, m in self.c.get_prefix(p)}
        self.assertEqual(got, {"k": b"v", "s": b"yes", "nested": b"before-s"})
        # All writes of one txn share one revision.
        revs = {m.mod_revision for _, m in self.c.get_prefix(p) if m.key != (p + "k").encode()}
        self.assertEqual(len(revs), 1)

        ok, responses = self.c.transaction(
            compare=[t.value(p + "k") == "nope"],
            success=[t.put(p + "s", "again")],
            failure=[t.put(p + "f", "no"), t.get(p + "s")])
        self.assertFalse(ok)
        self.assertEqual([v for v, _ in responses[1]], [b"yes"])
        self.assertEqual(self.c.get(p + "f")[0], b"no")
        self.assertEqual(self.c.get(p + "s")[0], b"yes")

    # ---- watch -------------------------------------------------------------------

    def test_watch_key_and_prefix(self):
        p = self.p
        start = self.c.put(p + "probe", "x").header.revision + 1
        events, cancel = self.c.watch(p + "k", start_revision=start)
        self.c.put(p + "other", "1")
        self.c.put(p + "k", "1")
        self.c.delete(p + "k")
        got = self.collect_watch(events, cancel, 2)
        self.assertIsInstance(got[0], etcd3.events.PutEvent)
        self.assertIsInstance(got[1], etcd3.events.DeleteEvent)
        self.assertEqual([(e.key, e.value) for e in got],
                         [((p + "k").encode(), b"1"), ((p + "k").encode(), b"")])

        start = self.c.put(p + "probe", "y").header.revision + 1
        events, cancel = self.cluster.client(1).watch_prefix(p + "dir/", start_revision=start)
        for n in range(5):
            self.cluster.client(n % 3).put("%sdir/%d" % (p, n), str(n))
        self.c.put(p + "dir", "not in prefix")
        got = self.collect_watch(events, cancel, 5)
        self.assertEqual([e.key for e in got], [("%sdir/%d" % (p, n)).encode() for n in range(5)])
        self.assertEqual([e.mod_revision for e in got], list(range(start, start + 5)))

    def test_watch_from_revision_with_prev_kv(self):
        p = self.p
        first = self.c.put(p + "k", "a").header.revision
        self.c.put(p + "k", "b")
        self.c.delete(p + "k")
        events, cancel = self.c.watch(p + "k", start_revision=first, prev_kv=True)
        got = self.collect_watch(events, cancel, 3)
        self.assertEqual([type(e) for e in got],
                         [etcd3.events.PutEvent, etcd3.events.PutEvent, etcd3.events.DeleteEvent])
        self.assertEqual([(e.value, e.prev_value) for e in got],
                         [(b"a", b""), (b"b", b"a"), (b"", b"b")])
        self.assertEqual([e.mod_revision for e in got], [first, first + 1, first + 2])
        self.assertEqual([e.version for e in got], [1, 2, 0])

    def test_watch_callback_and_cancel(self):
        p = self.p
        responses = queue.Queue()
        watch_id = self.c.add_watch_prefix_callback(p, responses.put)
        self.c.put(p + "a", "1")
        resp = responses.get(timeout=EVENT_TIMEOUT_S)
        self.assertNotIsInstance(resp, Exception)
        self.assertEqual([e.key for e in resp.events], [(p + "a").encode()])
        self.c.cancel_watch(watch_id)
        # After the cancel, a second watch sees a later write; the first
        # callback must not have been called for it.
        second = queue.Queue()
        watch_id2 = self.c.add_watch_callback(p + "b", second.put)
        self.assertNotEqual(watch_id2, watch_id)
        self.c.put(p + "b", "2")
        resp = second.get(timeout=EVENT_TIMEOUT_S)
        self.assertEqual([e.key for e in resp.events], [(p + "b").encode()])
        self.c.cancel_watch(watch_id2)
        self.assertTrue(responses.empty(), "cancelled watch still delivered")

        event = None
        timer = threading.Timer(0.3, lambda: self.cluster.client(1).put(p + "once", "1"))
        timer.start()
        try:
            event = self.c.watch_once(p + "once", timeout=EVENT_TIMEOUT_S)
        finally:
            timer.cancel()
        self.assertEqual((event.key, event.value), ((p + "once").encode(), b"1"))
        with self.assertRaises(etcd3.exceptions.WatchTimedOut):
            self.c.watch_once(p + "never", timeout=0.5)

    def test_compaction_and_compacted_watch(self):
        p = self.p
        old = self.c.put(p + "k", "1").header.revision
        rev = self.c.put(p + "k", "2").header.revision
        self.c.compact(rev)
        # etcd confirms the watch (created) and then cancels it with the
        # compact revision; python-etcd3 hands that to the callback.
        responses = queue.Queue()
        self.c.add_watch_callback(p + "k", responses.put, start_revision=old)
        err = responses.get(timeout=EVENT_TIMEOUT_S)
        self.assertIsInstance(err, etcd3.exceptions.RevisionCompactedError)
        self.assertEqual(err.compacted_revision, rev)
        self.assertEqual(self.c.get(p + "k")[0], b"2")
        # From the compact revision itself the history is still there.
        events, cancel = self.c.watch(p + "k", start_revision=rev)
        got = self.collect_watch(events, cancel, 1)
        self.assertEqual((got[0].value, got[0].mod_revision), (b"2", rev))

    # ---- leases --------------------------------------------------------------------

    def test_lease_lifecycle(self):
        p = self.p
        lease = self.c.lease(60)
        self.assertEqual(lease.ttl, 60)
        self.assertNotEqual(lease.id, 0)
        self.c.put(p + "a", "1", lease=lease)
        self.c.put(p + "b", "2", lease=lease.id)
        self.assertEqual(self.c.get(p + "a")[1].lease_id, lease.id)
        self.assertEqual(lease.granted_ttl, 60)
        self.assertTrue(0 < lease.remaining_ttl <= 60)
        self.assertEqual(sorted(lease.keys), [(p + "a").encode(), (p + "b").encode()])
        refreshed = lease.refresh()
        self.assertEqual([(r.ID, r.TTL) for r in refreshed], [(lease.id, 60)])
        # Any member answers for the lease.
        info = self.cluster.client(2).get_lease_info(lease.id)
        self.assertEqual((info.ID, info.grantedTTL), (lease.id, 60))

        # A key moved to no lease survives the revoke.
        self.c.put(p + "b", "3")
        lease.revoke()
        self.assertEqual([m.key for _, m in self.c.get_prefix(p)], [(p + "b").encode()])
        self.assertEqual(lease.remaining_ttl, -1)
        self.assertEqual(list(lease.keys), [])

    def test_lease_with_chosen_id_and_expiry(self):
        p = self.p
        lease_id = 0x1000 + (time.monotonic_ns() & 0xffffff)
        lease = self.c.lease(2, lease_id=lease_id)
        self.assertEqual(lease.id, lease_id)
        self.c.put(p + "k", "v", lease=lease)
        # Kept alive it stays beyond its TTL...
        deadline = time.monotonic() + lease.ttl + 1.5
        while time.monotonic() < deadline:
            self.assertEqual(lease.refresh()[0].TTL, lease.ttl)
            time.sleep(0.5)
        self.assertEqual(self.c.get(p + "k")[0], b"v")
        # ...and left alone it expires with its key.
        wait_until(lambda: lease.remaining_ttl == -1, lease.ttl + 10, what="lease expiry")
        self.assertEqual(self.c.get(p + "k"), (None, None))

    def test_refresh_of_unknown_lease(self):
        # LeaseKeepAlive on an unknown id answers with TTL 0 on the stream.
        responses = list(self.c.refresh_lease(0x7ee7beef))
        self.assertEqual([(r.ID, r.TTL) for r in responses], [(0x7ee7beef, 0)])

    # ---- cluster ---------------------------------------------------------------------

    def test_status_and_members(self):
        members = list(self.c.members)
        self.assertEqual(sorted(m.name for m in members),
                         ["n%d" % (i + 1) for i in range(self.cluster.size)])
        by_name = {m.name: m for m in members}
        for i, m in enumerate(self.cluster.members):
            got = by_name[m.name]
            self.assertEqual(got.id, self.cluster.member_id(i))
            self.assertEqual(list(got.peer_urls), [m.peer_url])
            self.assertEqual(list(got.client_urls), [m.client_url])

        leader = self.cluster.leader_index()
        terms = set()
        for i in range(self.cluster.size):
            st = self.cluster.client(i).status()
            self.assertEqual(st.leader.id, self.cluster.member_id(leader))
            self.assertEqual(st.leader.name, "n%d" % (leader + 1))
            self.assertTrue(st.version)
            self.assertGreater(st.db_size, 0)
            self.assertGreater(st.raft_index, 0)
            terms.add(st.raft_term)
        self.assertEqual(len(terms), 1)

    def test_lock_uncontended(self):
        # Debian's tenacity breaks a contended acquire(timeout=...); an
        # uncontended one is a create-if-absent txn with a lease.
        lock = self.c.lock(self.p + "lock", ttl=10)
        self.assertTrue(lock.acquire(timeout=5))
        self.assertTrue(lock.is_acquired())
        other = self.cluster.client(1).lock(self.p + "lock", ttl=10)
        self.assertFalse(other.is_acquired())
        lock.release()
        self.assertFalse(lock.is_acquired())


if __name__ == "__main__":
    unittest.main()
