"""The Lock (v3lockpb) and Election (v3electionpb) services on a 3-member cluster.

python etcd3 has no stubs for either service, so both are called through
generic gRPC methods with messages declared here (cluster.build_messages) by
the field numbers of proto/etcd/server/v3lock/v3lockpb/v3lock.proto and
proto/etcd/server/v3election/v3electionpb/v3election.proto.

A lock is held by a key: Lock(name, lease) creates name/<lease id in hex> under
the lease and returns once that key has the lowest create revision under
name/; Unlock deletes it. The key's create revision is the fencing token: a
holder's writes are Txns that compare it, so they fail once the key is gone.

Codes and messages are asserted as etcd 3.4 gives them: both services answer
errors with code UNKNOWN.
"""

import queue
import threading
import time
import unittest

import etcd3
import grpc

import cluster
from cluster import RPC_TIMEOUT_S, WatchStream, etcdrpc, wait_until

M = cluster.build_messages("itest_v3lock", {
    "ResponseHeader": cluster.HEADER_FIELDS,
    "KeyValue": cluster.KEY_VALUE_FIELDS,
    "LockRequest": [("name", 1, "bytes"), ("lease", 2, "int64")],
    "LockResponse": [("header", 1, "ResponseHeader"), ("key", 2, "bytes")],
    "UnlockRequest": [("key", 1, "bytes")],
    "UnlockResponse": [("header", 1, "ResponseHeader")],
    "CampaignRequest": [("name", 1, "bytes"), ("lease", 2, "int64"), ("value", 3, "bytes")],
    "LeaderKey": [("name", 1, "bytes"), ("key", 2, "bytes"), ("rev", 3, "int64"),
                  ("lease", 4, "int64")],
    "CampaignResponse": [("header", 1, "ResponseHeader"), ("leader", 2, "LeaderKey")],
    "LeaderRequest": [("name", 1, "bytes")],
    "LeaderResponse": [("header", 1, "ResponseHeader"), ("kv", 2, "KeyValue")],
    "ResignRequest": [("leader", 1, "LeaderKey")],
    "ResignResponse": [("header", 1, "ResponseHeader")],
    "ProclaimRequest": [("leader", 1, "LeaderKey"), ("value", 2, "bytes")],
    "ProclaimResponse": [("header", 1, "ResponseHeader")],
})

LOCK_TIMEOUT_S = 30
THREADS = 8
ROUNDS = 10
WRITES_PER_HOLD = 3
CONTENDED_TIMEOUT_S = 90
SHORT_TTL = 3
LONG_TTL = 60
EXPIRY_TIMEOUT_S = 20
EVENT_TIMEOUT_S = 10
UNKNOWN = grpc.StatusCode.UNKNOWN


def lock(channel, name, lease, timeout_s=LOCK_TIMEOUT_S):
    return cluster.unary(channel, "/v3lockpb.Lock/Lock", M["LockRequest"](name=name, lease=lease),
                         M["LockResponse"], timeout_s)


def unlock(channel, key, timeout_s=RPC_TIMEOUT_S):
    return cluster.unary(channel, "/v3lockpb.Lock/Unlock", M["UnlockRequest"](key=key),
                         M["UnlockResponse"], timeout_s)


def election(channel, method, request, timeout_s=RPC_TIMEOUT_S):
    """A unary Election call: Campaign, Proclaim, Leader or Resign."""
    response = {"Campaign": "CampaignResponse", "Proclaim": "ProclaimResponse",
                "Leader": "LeaderResponse", "Resign": "ResignResponse"}[method]
    return cluster.unary(channel, "/v3electionpb.Election/" + method, request, M[response],
                         timeout_s)


def fenced_txn(client, lock_key, token, puts):
    """Txn: if lock_key's create revision is token, put each (key, value)."""
    req = etcdrpc.TxnRequest(
        compare=[etcdrpc.Compare(key=lock_key, target=etcdrpc.Compare.CREATE,
                                 result=etcdrpc.Compare.EQUAL, create_revision=token)],
        success=[etcdrpc.RequestOp(request_put=etcdrpc.PutRequest(key=k, value=v))
                 for k, v in puts])
    return client.kvstub.Txn(req, RPC_TIMEOUT_S)


def create_revision(client, key):
    """key's create revision (linearizable read), 0 when it does not exist."""
    resp = client.kvstub.Range(etcdrpc.RangeRequest(key=key), RPC_TIMEOUT_S)
    return resp.kvs[0].create_revision if resp.kvs else 0


class Background:
    """Runs fn in a thread; result() gives its return value or its exception."""

    def __init__(self, fn, name):
        self._outcome = queue.Queue()
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True, name=name)
        self.thread.start()

    def _run(self, fn):
        try:
            self._outcome.put((True, fn()))
        except Exception as e:  # noqa: BLE001 - handed to the test thread
            self._outcome.put((False, e))

    def done(self):
        return not self.thread.is_alive()

    def outcome(self, timeout_s):
        """(True, value) or (False, exception); TimeoutError if still running."""
        try:
            return self._outcome.get(timeout=timeout_s)
        except queue.Empty:
            raise TimeoutError("still running after %.1fs" % timeout_s) from None

    def result(self, timeout_s):
        ok, value = self.outcome(timeout_s)
        if not ok:
            raise value
        return value


class Observer:
    """An Election.Observe stream read by a thread into a queue."""

    def __init__(self, channel, name):
        call = channel.unary_stream("/v3electionpb.Election/Observe",
                                    request_serializer=lambda m: m.SerializeToString(),
                                    response_deserializer=M["LeaderResponse"].FromString)
        self._call = call(M["LeaderRequest"](name=name), timeout=CONTENDED_TIMEOUT_S)
        self._responses = queue.Queue()
        self._thread = threading.Thread(target=self._read, daemon=True, name="observe")
        self._thread.start()

    def _read(self):
        try:
            for resp in self._call:
                self._responses.put(resp)
        except grpc.RpcError as e:
            self._responses.put(e)

    def next_value(self, timeout_s=EVENT_TIMEOUT_S):
        """The leader value in the next response."""
        try:
            item = self._responses.get(timeout=timeout_s)
        except queue.Empty:
            raise TimeoutError("no Observe response within %.1fs" % timeout_s) from None
        if isinstance(item, Exception):
            raise item
        return item.kv.value

    def close(self):
        self._call.cancel()
        self._thread.join(timeout=RPC_TIMEOUT_S)


class LockTest(cluster.ClusterTestCase):
    CLUSTER_SIZE = 3

    def setUp(self):
        self.prefix = ("%s/%d/" % (self._testMethodName, time.monotonic_ns())).encode()
        self.own_clients = []

    def tearDown(self):
        for c in self.own_clients:
            c.close()

    def new_client(self, i):
        """A client of its own (with its own channel) to member i, for one thread."""
        c = etcd3.client(host="127.0.0.1", port=self.cluster.members[i].client_port,
                         timeout=RPC_TIMEOUT_S)
        self.own_clients.append(c)
        return c

    def rpc_error(self, fn):
        with self.assertRaises(grpc.RpcError) as ctx:
            fn()
        return ctx.exception.code(), ctx.exception.details()

    def lock_keys(self, client, name):
        """{key: create revision} of the keys under name/ (linearizable)."""
        return {m.key: m.create_revision for _, m in client.get_prefix(name + b"/")}

    # ---- the Lock service ----------------------------------------------------

    def test_contended_lock_is_exclusive_and_fifo(self):
        c = self.cluster
        name, register, log = self.prefix + b"lock", self.prefix + b"owner", self.prefix + b"log"
        start_rev = c.client(0).put(self.prefix + b"start", b"s").header.revision
        clients = [self.new_client(t % c.size) for t in range(THREADS)]
        problems = []     # failures seen by the threads, reported by the test thread
        most_waiting = []
        stop = threading.Event()

        def run(t):
            cl = clients[t]
            lease = cl.lease(LONG_TTL)
            try:
                for r in range(ROUNDS):
                    if stop.is_set():
                        return
                    cl.refresh_lease(lease.id)
                    key = lock(cl.channel, name, lease.id).key
                    if not key.startswith(name + b"/"):
                        problems.append("lock key %r is not under %r" % (key, name))
                    token = create_revision(cl, key)
                    # The holder's key is the oldest under name/; any others wait.
                    keys = self.lock_keys(cl, name)
                    if token == 0 or min(keys.values()) != token:
                        problems.append("client %d holds %r (token %d) but keys are %r"
                                        % (t, key, token, keys))
                    most_waiting.append(len(keys) - 1)
                    for j in range(WRITES_PER_HOLD):
                        owner = b"%d,%d" % (t, r)
                        entry = b"%d,%d,%d,%d" % (t, r, j, token)
                        if not fenced_txn(cl, key, token, [(register, owner),
                                                           (log, entry)]).succeeded:
                            problems.append("fenced write %r of a holder failed" % entry)
                    unlock(cl.channel, key)
            finally:
                cl.revoke_lease(lease.id)

        workers = [Background(lambda t=t: run(t), "locker-%d" % t) for t in range(THREADS)]
        deadline = time.monotonic() + CONTENDED_TIMEOUT_S
        errors = []
        for w in workers:
            try:
                w.result(max(0.1, deadline - time.monotonic()))
            except Exception as e:  # noqa: BLE001 - collected, then reported together
                stop.set()
                errors.append(e)
        self.assertEqual(errors, [])
        self.assertEqual((len(problems), problems[:3]), (0, []))
        self.assertGreater(max(most_waiting), 0, "the lock was never contended")

        # The log key's history: one event per fenced write, in revision order.
        holds = THREADS * ROUNDS
        stream = WatchStream(c.members[1])
        try:
            stream.create(log, start_revision=start_rev)
            events = stream.events_until(lambda ev: len(ev) >= holds * WRITES_PER_HOLD,
                                         EVENT_TIMEOUT_S)
        finally:
            stream.close()
        entries = [tuple(int(x) for x in e.kv.value.split(b",")) for e in events]
        self.assertEqual(len(entries), holds * WRITES_PER_HOLD)
        # Mutual exclusion: each hold's writes are consecutive, never interleaved.
        blocks = [entries[n:n + WRITES_PER_HOLD] for n in range(0, len(entries), WRITES_PER_HOLD)]
        for block in blocks:
            t, r, _, token = block[0]
            self.assertEqual(block, [(t, r, j, token) for j in range(WRITES_PER_HOLD)],
                             "writes of different holders interleave")
        self.assertEqual(sorted((b[0][0], b[0][1]) for b in blocks),
                         sorted((t, r) for t in range(THREADS) for r in range(ROUNDS)))
        # FIFO: holders were granted the lock in the order of their keys'
        # create revisions (the tokens), and each thread's rounds in order.
        tokens = [b[0][3] for b in blocks]
        self.assertEqual(tokens, sorted(set(tokens)), "grants out of create-revision order")
        for t in range(THREADS):
            self.assertEqual([b[0][1] for b in blocks if b[0][0] == t], list(range(ROUNDS)))
        last = blocks[-1][0]
        self.assertEqual(c.client(2).get(register)[0], b"%d,%d" % (last[0], last[1]))
        self.assertEqual(self.lock_keys(c.client(0), name), {})

    def test_holder_whose_lease_expires_loses_the_lock(self):
        c = self.cluster
        name, register = self.prefix + b"lock", self.prefix + b"owner"
        a, b = self.new_client(0), self.new_client(1)
        lease_a = a.lease(SHORT_TTL)     # never kept alive
        lease_b = b.lease(LONG_TTL)
        key_a = lock(a.channel, name, lease_a.id).key
        granted_a = time.monotonic()
        token_a = create_revision(a, key_a)
        self.assertTrue(fenced_txn(a, key_a, token_a, [(register, b"A")]).succeeded)

        waiter = Background(lambda: lock(b.channel, name, lease_b.id), "lock-B")
        key_b = lock_b_granted = None
        try:
            key_b = waiter.result(SHORT_TTL + EXPIRY_TIMEOUT_S).key
            lock_b_granted = time.monotonic()
        finally:
            if key_b is None:
                b.revoke_lease(lease_b.id)
        # B got it only because A's lease expired and took A's key with it.
        self.assertGreaterEqual(lock_b_granted - granted_a, SHORT_TTL - 1)
        self.assertEqual(create_revision(b, key_a), 0)
        self.assertEqual(c.client(2).get_lease_info(lease_a.id).TTL, -1)
        token_b = create_revision(b, key_b)
        self.assertGreater(token_b, token_a)
        # A's fenced write is refused, B's goes through.
        self.assertFalse(fenced_txn(a, key_a, token_a, [(register, b"A-late")]).succeeded)
        self.assertTrue(fenced_txn(b, key_b, token_b, [(register, b"B")]).succeeded)
        self.assertEqual(c.client(0).get(register)[0], b"B")
        unlock(b.channel, key_b)
        b.revoke_lease(lease_b.id)
        self.assertEqual(self.lock_keys(c.client(0), name), {})

    def test_waiter_whose_lease_expired_is_not_granted(self):
        name = self.prefix + b"lock"
        a, b, third = self.new_client(0), self.new_client(1), self.new_client(2)
        lease_a = a.lease(LONG_TTL)
        lease_b = b.lease(SHORT_TTL)     # never kept alive
        key_a = lock(a.channel, name, lease_a.id).key
        waiter = Background(lambda: lock(b.channel, name, lease_b.id, timeout_s=60), "lock-B")
        wait_until(lambda: len(self.lock_keys(a, name)) == 2, EVENT_TIMEOUT_S,
                   what="B's key to be created")
        # B's lease runs out while it waits; its key goes with it.
        wait_until(lambda: a.get_lease_info(lease_b.id).TTL == -1, SHORT_TTL + EXPIRY_TIMEOUT_S,
                   what="B's lease to expire")
        wait_until(lambda: list(self.lock_keys(a, name)) == [key_a], EVENT_TIMEOUT_S,
                   what="B's key to vanish")
        unlock(a.channel, key_a)

        try:
            ok, value = waiter.outcome(EXPIRY_TIMEOUT_S)
        except TimeoutError:
            self.fail("B's Lock is still waiting %ds after the lock was freed"
                      % EXPIRY_TIMEOUT_S)
        if ok:
            # etcd 3.4 answers with the key B had: B must not hold a live one.
            self.assertEqual(create_revision(a, value.key), 0,
                             "a waiter whose lease expired was granted a live key")
        else:
            self.assertIsInstance(value, grpc.RpcError)
            self.assertNotEqual(value.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
        # The lock is free: someone else takes it at once.
        lease_c = third.lease(LONG_TTL)
        key_c = lock(third.channel, name, lease_c.id, timeout_s=RPC_TIMEOUT_S).key
        self.assertEqual(list(self.lock_keys(third, name)), [key_c])
        unlock(third.channel, key_c)
        third.revoke_lease(lease_c.id)
        a.revoke_lease(lease_a.id)

    def test_lock_errors_and_unlock_of_a_key_not_held(self):
        c = self.cluster
        name = self.prefix + b"lock"
        with self.subTest("Lock with a lease that does not exist"):
            self.assertEqual(self.rpc_error(lambda: lock(c.channel(0), name, 0x7eadbeef,
                                                         timeout_s=RPC_TIMEOUT_S)),
                             (UNKNOWN, "etcdserver: requested lease not found"))
        self.assertEqual(self.lock_keys(c.client(0), name), {})

        # Unlock is a delete of the key given: of a key that is not held it
        # succeeds and changes nothing; the holder keeps the lock.
        lease = c.client(1).lease(LONG_TTL)
        key = lock(c.channel(1), name, lease.id).key
        token = create_revision(c.client(1), key)
        stranger = name + b"/%x" % (lease.id + 1)
        resp = unlock(c.channel(2), stranger)
        self.assertGreaterEqual(resp.header.revision, token)
        self.assertEqual(self.lock_keys(c.client(0), name), {key: token})
        self.assertTrue(fenced_txn(c.client(1), key, token,
                                   [(self.prefix + b"owner", b"holder")]).succeeded)
        unlock(c.channel(1), key)
        # Unlocking twice is no error either.
        unlock(c.channel(1), key)
        self.assertEqual(self.lock_keys(c.client(0), name), {})
        c.client(1).revoke_lease(lease.id)

    # ---- the Election service -------------------------------------------------

    def test_election(self):
        c = self.cluster
        name = self.prefix + b"election"
        ch0, ch1, ch2 = c.channel(0), c.channel(1), c.channel(2)
        leader_req = M["LeaderRequest"](name=name)
        self.assertEqual(self.rpc_error(lambda: election(ch2, "Leader", leader_req)),
                         (UNKNOWN, "election: no leader"))

        observer = Observer(ch2, name)
        try:
            lease1, lease2 = c.client(0).lease(LONG_TTL), c.client(1).lease(LONG_TTL)
            first = election(ch0, "Campaign", M["CampaignRequest"](
                name=name, lease=lease1.id, value=b"one"), LOCK_TIMEOUT_S).leader
            self.assertEqual((first.name, first.lease), (name, lease1.id))
            self.assertTrue(first.key.startswith(name + b"/"))
            self.assertEqual(create_revision(c.client(0), first.key), first.rev)
            self.assertEqual(observer.next_value(), b"one")

            second_campaign = Background(lambda: election(ch1, "Campaign", M["CampaignRequest"](
                name=name, lease=lease2.id, value=b"two"), LOCK_TIMEOUT_S), "campaign-2")
            wait_until(lambda: len(self.lock_keys(c.client(1), name)) == 2, EVENT_TIMEOUT_S,
                       what="the second candidate's key")
            time.sleep(0.5)
            self.assertFalse(second_campaign.done(), "second campaigner won while first leads")
            got = election(ch1, "Leader", leader_req)
            self.assertEqual((got.kv.key, got.kv.value), (first.key, b"one"))

            election(ch0, "Proclaim", M["ProclaimRequest"](leader=first, value=b"one-again"))
            self.assertEqual(observer.next_value(), b"one-again")
            self.assertEqual(election(ch2, "Leader", leader_req).kv.value, b"one-again")
            self.assertFalse(second_campaign.done())

            # A leader key whose revision is not the key's may not proclaim.
            impostor = M["LeaderKey"](name=name, key=first.key, rev=first.rev + 1000000,
                                      lease=lease1.id)
            self.assertEqual(self.rpc_error(lambda: election(ch1, "Proclaim", M["ProclaimRequest"](
                leader=impostor, value=b"usurp"))), (UNKNOWN, "election: not leader"))

            election(ch0, "Resign", M["ResignRequest"](leader=first))
            second = second_campaign.result(EVENT_TIMEOUT_S).leader
            self.assertEqual((second.name, second.lease), (name, lease2.id))
            self.assertGreater(second.rev, first.rev)
            self.assertEqual(observer.next_value(), b"two")
            got = election(ch0, "Leader", leader_req)
            self.assertEqual((got.kv.key, got.kv.value), (second.key, b"two"))
            # The first leader, having resigned, is not leader any more.
            self.assertEqual(self.rpc_error(lambda: election(ch0, "Proclaim", M["ProclaimRequest"](
                leader=first, value=b"stale"))), (UNKNOWN, "election: not leader"))
            self.assertEqual(election(ch2, "Leader", leader_req).kv.value, b"two")

            election(ch1, "Resign", M["ResignRequest"](leader=second))
            self.assertEqual(self.rpc_error(lambda: election(ch2, "Leader", leader_req)),
                             (UNKNOWN, "election: no leader"))
            c.client(0).revoke_lease(lease1.id)
            c.client(1).revoke_lease(lease2.id)
        finally:
            observer.close()


if __name__ == "__main__":
    unittest.main()
