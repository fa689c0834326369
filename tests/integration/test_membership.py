"""Membership changes on a running cluster, under write load.

Every test starts a 3-member cluster of its own (CLUSTER_PER_TEST), since each
leaves the membership changed. The clusters take a snapshot every 100 entries
and every test writes a few hundred keys before it changes anything, so that a
member that joins late has to be brought up to date from a snapshot rather
than only from the log.

What every change must preserve is checked the same way: each key a writer
had acknowledged is on every member (a serializable read of the member's own
store, after a linearizable read through that member has made it catch up),
and Maintenance.HashKV at one revision is equal on all members.

Codes and messages are asserted as etcd 3.4 gives them.
"""

import threading
import time
import unittest

import etcd3
import grpc

import cluster
from cluster import (RETRYABLE_ERRORS, RPC_TIMEOUT_S, member_add, member_promote,
                     member_remove, member_update, put_once, retry, wait_until)

PREFILL_KEYS = 300
# The writer's bounds: it stops at whichever comes first. It is paced to at
# most WRITER_RATE puts a second, steady load that leaves the two cores some
# room for the members' elections and snapshots.
WRITER_MAX_KEYS = 40000
WRITER_MAX_S = 120
WRITER_RATE = 300
WRITER_PUT_TIMEOUT_S = 2
# How long a writer may go without an acknowledged write while the cluster
# changes under it (an election included) before the test calls it stuck.
PROGRESS_TIMEOUT_S = 20
PROGRESS_KEYS = 20
PROMOTE_TIMEOUT_S = 30
REMOVED_EXIT_TIMEOUT_S = 15
CATCH_UP_TIMEOUT_S = 30


class Writer:
    """A thread that puts sequential keys through one member until stopped.

    Each key is written with put_once (create-if-absent, so a retry after an
    ambiguous failure cannot write twice) and retried until acknowledged;
    `acked` lists the acknowledged keys in order. It has a client of its own:
    the Cluster's clients belong to the test thread.
    """

    def __init__(self, member, prefix):
        self.prefix = prefix
        self.acked = []
        self.failures = 0
        self.error = None
        self._stop = threading.Event()
        self._client = etcd3.client(host="127.0.0.1", port=member.client_port,
                                    timeout=RPC_TIMEOUT_S)
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="writer-%s" % member.name)
        self._thread.start()

    @staticmethod
    def value(key):
        return b"v-" + key

    def _run(self):
        start = time.monotonic()
        deadline = start + WRITER_MAX_S
        n = 0
        try:
            while (not self._stop.is_set() and n < WRITER_MAX_KEYS
                   and time.monotonic() < deadline):
                ahead = start + n / WRITER_RATE - time.monotonic()
                if ahead > 0:
                    self._stop.wait(ahead)
                key = ("%s%06d" % (self.prefix, n)).encode()
                try:
                    put_once(self._client.kvstub, key, self.value(key), WRITER_PUT_TIMEOUT_S)
                except RETRYABLE_ERRORS:
                    self.failures += 1
                    self._stop.wait(0.05)
                    continue
                self.acked.append(key)
                n += 1
        except Exception as e:  # noqa: BLE001 - reported by stop()
            self.error = e

    def wait_progress(self, count=PROGRESS_KEYS, timeout_s=PROGRESS_TIMEOUT_S):
        """Waits until `count` more writes than now are acknowledged."""
        if not self._thread.is_alive():
            self._raise_error()
            raise AssertionError("writer reached its bounds (%d keys)" % len(self.acked))
        target = len(self.acked) + count
        wait_until(lambda: self.error is None and len(self.acked) >= target
                   or self._raise_error(), timeout_s,
                   what="%d more acknowledged writes (have %d, %d failures)"
                   % (count, len(self.acked), self.failures))

    def _raise_error(self):
        if self.error is not None:
            raise AssertionError("writer failed: %r" % self.error)
        return False

    def stop(self):
        """Stops the thread; returns the acknowledged keys."""
        self._stop.set()
        self._thread.join(timeout=WRITER_PUT_TIMEOUT_S * 3 + 5)
        alive = self._thread.is_alive()
        self._client.close()
        if alive:
            raise AssertionError("writer thread did not stop")
        self._raise_error()
        return list(self.acked)


class MembershipTest(cluster.ClusterTestCase):
    CLUSTER_SIZE = 3
    CLUSTER_PER_TEST = True
    EXTRA_FLAGS = ("--snapshot-count", "100")

    def setUp(self):
        super().setUp()
        self.prefix = "%s/%d/" % (self._testMethodName, time.monotonic_ns())
        self.writers = []

    def tearDown(self):
        for w in self.writers:
            try:
                w.stop()
            except AssertionError:
                pass

    # ---- helpers -------------------------------------------------------------

    def start_writer(self, i):
        w = Writer(self.cluster.members[i], self.prefix + "w/")
        self.writers.append(w)
        w.wait_progress()
        return w

    def stop_writer(self, w):
        self.writers.remove(w)
        acked = w.stop()
        self.assertGreater(len(acked), 0)
        return acked

    def prefill(self, count=PREFILL_KEYS):
        """Writes `count` keys, one entry each: enough to pass a snapshot or two."""
        c = self.cluster
        i = c.running_indexes()[0]
        for n in range(count):
            key = "%sfill/%04d" % (self.prefix, n)
            retry(lambda: put_once(c.client(i).kvstub, key, "f%d" % n), what="prefill put")

    def check_members(self, via, want):
        """MemberList through `via` comes to be exactly `want`, URLs included.

        want is {member id: (name, learner)}; the URLs expected are those of
        this Cluster's records. A member's client URLs are published after it
        starts and reach the others a moment later, hence the bounded wait.
        """
        c = self.cluster
        urls = {c.member_id(i): ([c.members[i].peer_url], [c.members[i].client_url])
                for i in c.running_indexes() if c.member_id(i) in want}

        def view():
            got = {m.ID: m for m in c.member_list(via)}
            return ({mid: (m.name, m.isLearner) for mid, m in got.items()},
                    {mid: (list(got[mid].peerURLs), list(got[mid].clientURLs))
                     for mid in urls if mid in got})
        try:
            wait_until(lambda: view() == (want, urls), CATCH_UP_TIMEOUT_S,
                       what="MemberList through %s" % c.members[via].name)
        except TimeoutError:
            self.assertEqual(view(), (want, urls))

    def wait_started_voters(self, via, indexes):
        """Waits until MemberList through `via` is `indexes`, all started voters."""
        c = self.cluster
        self.check_members(via, {c.member_id(i): (c.members[i].name, False) for i in indexes})

    def check_converged(self, acked, indexes):
        """Every acknowledged key on every member in `indexes`; HashKV equal."""
        c = self.cluster
        barrier_key = self.prefix + "barrier"
        revision = retry(lambda: c.client(indexes[0]).put(barrier_key, "b"),
                         what="barrier put").header.revision
        expected = {k: Writer.value(k) for k in acked}
        for i in indexes:
            # A linearizable read through member i returns only once i has
            # applied everything committed before it, so the serializable read
            # after it sees all acknowledged writes if i has them.
            _, meta = retry(lambda: c.client(i).get(barrier_key), what="linearizable barrier")
            self.assertGreaterEqual(meta.response_header.revision, revision)
            got = {m.key: v for v, m in c.client(i).get_prefix(self.prefix + "w/",
                                                               serializable=True)}
            missing = sorted(set(expected) - set(got))
            wrong = sorted(k for k in expected if k in got and got[k] != expected[k])
            self.assertEqual((missing[:5], len(missing), wrong[:5]), ([], 0, []),
                             "member %s lost acknowledged writes" % c.members[i].name)
            fill = list(c.client(i).get_prefix(self.prefix + "fill/", serializable=True))
            self.assertEqual(len(fill), PREFILL_KEYS, "member %s" % c.members[i].name)
        hashes = {}
        for i in indexes:
            hashes[c.members[i].name] = retry(lambda: c.hash_kv(i, revision),
                                              what="HashKV at %d" % revision)
        self.assertEqual(len(set(hashes.values())), 1,
                         "HashKV at revision %d differs: %r" % (revision, hashes))

    def listed_after_add(self, via, new_id):
        """MemberList through `via`, which must show new_id, just added through it.

        etcd answers MemberAdd once the change is applied on the member that
        took it, so a MemberList through that member right after shows it.
        """
        c = self.cluster
        listed = {m.ID: m for m in c.member_list(via)}
        if new_id not in listed:
            try:
                wait_until(lambda: new_id in {m.ID for m in c.member_list(via)},
                           CATCH_UP_TIMEOUT_S, what="the new member in MemberList")
                later = "it appeared later"
            except TimeoutError:
                later = "nor %ds later" % CATCH_UP_TIMEOUT_S
            self.fail("MemberList through %s right after MemberAdd through it lacks the new "
                      "member %x (%s)" % (c.members[via].name, new_id, later))
        return listed

    def add_and_start(self, via, index=None):
        c = self.cluster
        before = {m.ID for m in c.member_list(via)}
        index, new_id = c.add_member(via, index=index)
        self.assertNotIn(new_id, before)
        listed = self.listed_after_add(via, new_id)
        added = listed[new_id]
        # Added, not started: no name and no client URLs yet.
        self.assertEqual((added.name, list(added.peerURLs), list(added.clientURLs),
                          added.isLearner), ("", [c.members[index].peer_url], [], False))
        c.start_member(index)
        # It serves: a linearizable read through it.
        retry(lambda: c.client(index).get(self.prefix + "probe"), what="read via new member")
        return index, new_id

    # ---- scenarios ---------------------------------------------------------

    def test_grow_three_to_five_under_write_load(self):
        c = self.cluster
        self.prefill()
        w = self.start_writer(0)
        n4, _ = self.add_and_start(1)
        w.wait_progress()
        self.wait_started_voters(0, [0, 1, 2, n4])
        n5, _ = self.add_and_start(2)
        w.wait_progress()
        acked = self.stop_writer(w)
        self.assertEqual(c.size, 5)
        for via in range(5):
            self.wait_started_voters(via, range(5))
        self.check_converged(acked, list(range(5)))
        self.assertIn(c.leader_index(), range(5))

    def test_promote_learner(self):
        c = self.cluster
        self.prefill()
        w = self.start_writer(0)
        n4, learner_id = c.add_member(1, is_learner=True)
        got = self.listed_after_add(1, learner_id)
        self.assertEqual((got[learner_id].name, got[learner_id].isLearner), ("", True))
        c.start_member(n4)
        # A learner answers Status and serializable reads, and refuses the rest
        # (a subtest: the promotion below is checked either way).
        self.assertEqual(c.status(n4).header.member_id, learner_id)
        c.client(n4).kvstub.Range(cluster.etcdrpc.RangeRequest(key=b"k", serializable=True),
                                  RPC_TIMEOUT_S)
        with self.subTest("a learner refuses a linearizable read"):
            with self.assertRaises(grpc.RpcError) as ctx:
                c.client(n4).kvstub.Range(cluster.etcdrpc.RangeRequest(key=b"k"), RPC_TIMEOUT_S)
            self.assertEqual((ctx.exception.code(), ctx.exception.details()),
                             (grpc.StatusCode.UNAVAILABLE,
                              "etcdserver: rpc not supported for learner"))

        not_ready = "etcdserver: can only promote a learner member which is in sync with leader"
        deadline = time.monotonic() + PROMOTE_TIMEOUT_S
        refusals = 0
        while True:
            try:
                resp = member_promote(c.channel(2), learner_id)
                break
            except grpc.RpcError as e:
                if e.details() != not_ready or time.monotonic() >= deadline:
                    raise
                self.assertEqual(e.code(), grpc.StatusCode.FAILED_PRECONDITION)
                refusals += 1
                time.sleep(0.1)
        self.assertEqual({m.ID: m.isLearner for m in resp.members}[learner_id], False)
        w.wait_progress()
        acked = self.stop_writer(w)
        for via in range(4):
            self.wait_started_voters(via, range(4))
        self.check_converged(acked, list(range(4)))
        # Promoting it again: it is no learner now.
        with self.assertRaises(grpc.RpcError) as ctx:
            member_promote(c.channel(0), learner_id)
        self.assertEqual((ctx.exception.code(), ctx.exception.details()),
                         (grpc.StatusCode.FAILED_PRECONDITION,
                          "etcdserver: can only promote a learner member"))

    def test_remove_leader(self):
        c = self.cluster
        self.prefill()
        leader = c.leader_index()
        via, writer_at = [i for i in range(3) if i != leader]
        w = self.start_writer(writer_at)
        leader_id = c.member_id(leader)
        resp = c.remove_member(via, leader)
        self.assertNotIn(leader_id, [m.ID for m in resp.members])

        # The removed member stops: etcd's process exits (status 0). One that
        # kept running would at least have to stop taking writes.
        proc = c.members[leader].proc
        try:
            wait_until(lambda: proc.poll() is not None, REMOVED_EXIT_TIMEOUT_S,
                       what="the removed leader to exit")
        except TimeoutError:
            with self.assertRaises(RETRYABLE_ERRORS, msg="removed member still takes writes"):
                c.client(leader).put(self.prefix + "via-removed", "x")
        c.wait_removed_exit(leader, timeout_s=1)

        new_leader = c.leader_index(exclude=(leader,))
        self.assertIn(new_leader, (via, writer_at))
        w.wait_progress()
        acked = self.stop_writer(w)
        for i in (via, writer_at):
            self.wait_started_voters(i, [via, writer_at])
        self.check_converged(acked, [via, writer_at])
        c.client(via).put(self.prefix + "after", "a")
        self.assertEqual(c.client(writer_at).get(self.prefix + "after")[0], b"a")

    def test_replace_member_with_wiped_data_dir(self):
        c = self.cluster
        self.prefill()
        leader = c.leader_index()
        victim = [i for i in range(3) if i != leader][0]
        survivor = [i for i in range(3) if i not in (leader, victim)][0]
        w = self.start_writer(leader)
        old_id = c.member_id(victim)
        c.kill(victim)
        c.wipe(victim)
        w.wait_progress()
        c.remove_member(survivor, victim)
        c.forget_member_id(victim)
        self.wait_started_voters(survivor, [leader, survivor])
        w.wait_progress()
        # It comes back empty, behind by the prefill and all the writer's keys.
        _, new_id = self.add_and_start(survivor, index=victim)
        self.assertNotEqual(new_id, old_id)
        self.assertEqual(c.status(victim).header.member_id, new_id)
        w.wait_progress()
        acked = self.stop_writer(w)
        for i in range(3):
            self.wait_started_voters(i, range(3))
        self.check_converged(acked, list(range(3)))

    def test_member_update_moves_a_member(self):
        # MemberUpdate, then the member restarted on its new peer URL: that is
        # how a member moves, the cluster told first, then the member back
        # listening where the cluster now sends to. Until then only the other
        # members are expected to list the new URL: the moved member may be
        # cut off and not learn of the change before its restart.
        c = self.cluster
        leader = c.leader_index()
        target = [i for i in range(3) if i != leader][0]
        others = [i for i in range(3) if i != target]
        (new_port,) = cluster._free_ports(1)
        new_url = "http://127.0.0.1:%d" % new_port
        mid = c.member_id(target)
        c.client(leader).put(self.prefix + "before-move", "b")

        def peer_urls(via):
            return {m.ID: list(m.peerURLs) for m in c.member_list(via)}[mid]

        resp = retry(lambda: member_update(c.channel(others[1]), mid, [new_url]),
                     what="MemberUpdate")
        self.assertEqual({m.ID: list(m.peerURLs) for m in resp.members}[mid], [new_url])
        # Applied on the member that took it before the answer, as in etcd.
        self.assertEqual(peer_urls(others[1]), [new_url],
                         "MemberList through %s right after MemberUpdate through it"
                         % c.members[others[1]].name)
        wait_until(lambda: peer_urls(others[0]) == [new_url], CATCH_UP_TIMEOUT_S,
                   what="%s to list the new peer URL" % c.members[others[0]].name)

        c.stop(target)
        c.set_peer_port(target, new_port)
        c.restart(target)
        for via in range(3):
            wait_until(lambda: peer_urls(via) == [new_url], CATCH_UP_TIMEOUT_S,
                       what="%s to list the new peer URL" % c.members[via].name)
        self.check_members(target, {c.member_id(i): (c.members[i].name, False)
                                    for i in range(3)})
        # The moved member takes part again: it has what was written before and
        # after, and writes through it reach the others.
        c.client(others[0]).put(self.prefix + "after-move", "a")
        c.client(target).put(self.prefix + "via-moved", "m")
        for i in range(3):
            got = {m.key: v for v, m in c.client(i).get_prefix(self.prefix)}
            self.assertEqual(got, {(self.prefix + "before-move").encode(): b"b",
                                   (self.prefix + "after-move").encode(): b"a",
                                   (self.prefix + "via-moved").encode(): b"m"})

    def test_membership_errors(self):
        c = self.cluster

        def error(fn):
            with self.assertRaises(grpc.RpcError) as ctx:
                fn()
            return ctx.exception.code(), ctx.exception.details()

        unknown = 0x1234567
        self.assertNotIn(unknown, [c.member_id(i) for i in range(3)])
        self.assertEqual(error(lambda: member_remove(c.channel(0), unknown)),
                         (grpc.StatusCode.NOT_FOUND, "etcdserver: member not found"))
        self.assertEqual(error(lambda: member_update(c.channel(0), unknown,
                                                     ["http://127.0.0.1:1"])),
                         (grpc.StatusCode.NOT_FOUND, "etcdserver: member not found"))
        self.assertEqual(error(lambda: member_promote(c.channel(0), unknown)),
                         (grpc.StatusCode.NOT_FOUND, "etcdserver: member not found"))
        self.assertEqual(error(lambda: member_promote(c.channel(0), c.member_id(1))),
                         (grpc.StatusCode.FAILED_PRECONDITION,
                          "etcdserver: can only promote a learner member"))
        self.assertEqual(error(lambda: member_update(c.channel(0), c.member_id(0),
                                                     [c.members[1].peer_url])),
                         (grpc.StatusCode.FAILED_PRECONDITION,
                          "etcdserver: Peer URLs already exists"))

        # Adding a peer URL that a member has. Right after start-up etcd first
        # refuses any voter as "unhealthy cluster" (its members have not been
        # connected long enough); that refusal is waited out.
        def add_existing():
            deadline = time.monotonic() + 30
            while True:
                try:
                    return member_add(c.channel(2), [c.members[0].peer_url])
                except grpc.RpcError as e:
                    if e.details() not in cluster.RECONFIG_NOT_YET or time.monotonic() > deadline:
                        raise
                time.sleep(0.2)
        self.assertEqual(error(add_existing),
                         (grpc.StatusCode.FAILED_PRECONDITION,
                          "etcdserver: Peer URLs already exists"))
        self.assertEqual(error(lambda: member_add(c.channel(0), [c.members[2].peer_url],
                                                  is_learner=True)),
                         (grpc.StatusCode.FAILED_PRECONDITION,
                          "etcdserver: Peer URLs already exists"))
        # None of that changed the membership.
        self.check_members(1, {c.member_id(i): (c.members[i].name, False) for i in range(3)})


if __name__ == "__main__":
    unittest.main()
