"""Client workloads of the fault harness; each records a history.

Every operation is recorded with its invoke and completion times from
time.monotonic() (one clock for every thread) and a status: "ok" (the reply
arrived), "fail" (it certainly did not happen: only reads, whose errors change
nothing) or "unknown" (a write that timed out or lost its connection: it may
have happened, now or later). Clients are bound to one member each, spread
over the members, and never retry an operation: a retry would hide exactly
the outcomes the checkers are looking for.

- RegisterWorkload: read / write / compare-and-set (Txn) on a few keys.
- SetWorkload: puts of unique keys (every tenth a two-key txn); all acknowledged
  ones must be present at the end.
- LockWorkload: Lock with a lease, then fenced writes (a Txn that compares the
  lock key's create revision, the fencing token) to one key.
- WatchWorkload: watchers of the whole key space that resume from the next
  revision after every broken stream.
- LeaseWorkload: keys attached to leases kept alive for a while, then polled
  until they vanish.

Every loop ends when `stop` is set; every call has a deadline.
"""

import random
import threading
import time

import etcd3.etcdrpc as etcdrpc
import grpc

import fault_cluster

OP_TIMEOUT_S = 3.0
ALL_KEYS = (b"\0", b"\0")  # key, range_end: every key


def now():
    return time.monotonic()


class History:
    """Thread-safe list of operation records (dicts)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._next_id = 0
        self.ops = []

    def record(self, **op):
        with self._lock:
            op["id"] = self._next_id
            self._next_id += 1
            self.ops.append(op)
        return op


def not_sent(e):
    """The call never reached a server: it certainly changed nothing."""
    return (isinstance(e, grpc.RpcError) and e.code() == grpc.StatusCode.UNAVAILABLE
            and "failed to connect" in (e.details() or ""))


def write_status(e):
    return "fail" if not_sent(e) else "unknown"


def error_text(e):
    if isinstance(e, str):
        return e
    if isinstance(e, grpc.RpcError):
        return "%s: %s" % (e.code().name, e.details())
    return repr(e)


class Workload:
    name = "workload"

    def __init__(self, cluster, rng_seed, clients):
        self.cluster = cluster
        self.history = History()
        self.clients = clients
        self.seed = rng_seed
        self.threads = []
        self.errors = {}  # error text -> count, for the report
        self._elock = threading.Lock()
        self._seq = {}

    def note_error(self, e, stop=None):
        """Counts the error; with `stop`, also backs off a little (a client
        of a dead member would otherwise spin)."""
        text = error_text(e)
        if len(text) > 160:
            text = text[:160] + "..."
        with self._elock:
            self.errors[text] = self.errors.get(text, 0) + 1
        if stop is not None:
            stop.wait(0.1)

    def next_seq(self, client):
        """A per-client counter that survives the client loop's restarts, so
        names and values are never reused."""
        with self._elock:
            n = self._seq.get(client, 0) + 1
            self._seq[client] = n
            return n

    def member_for(self, client):
        return client % self.cluster.size

    def kv(self, client):
        return etcdrpc.KVStub(self.cluster.channel(self.member_for(client)))

    def start(self, stop):
        for c in range(self.clients):
            t = threading.Thread(target=self._guarded, args=(c, stop),
                                 name="%s-%d" % (self.name, c), daemon=True)
            t.start()
            self.threads.append(t)

    def _guarded(self, c, stop):
        rng = random.Random(self.seed * 1000 + c)
        while not stop.is_set():
            try:
                self.run_client(c, rng, stop)
            except Exception as e:  # noqa: BLE001 - a broken client restarts its loop
                self.note_error(e)
                stop.wait(0.2)

    def join(self, timeout_s=30):
        deadline = now() + timeout_s
        for t in self.threads:
            t.join(max(0.1, deadline - now()))


class RegisterWorkload(Workload):
    name = "register"

    def __init__(self, cluster, seed, clients=6, keys=12, epoch_s=300):
        super().__init__(cluster, seed, clients)
        self.keys = keys
        # Every epoch_s the clients move to fresh keys, so that a long run's
        # per-key histories stay small enough to check.
        self.epoch_s = epoch_s
        self.t0 = now()

    def run_client(self, c, rng, stop):
        seen = {}
        while not stop.is_set():
            epoch = int((now() - self.t0) / self.epoch_s)
            key = "reg/e%d/k%02d" % (epoch, rng.randrange(self.keys))
            kb = key.encode()
            r = rng.random()
            seq = self.next_seq(c)
            value = "c%d.%d" % (c, seq)
            t0 = now()
            if r < 0.5:
                try:
                    resp = self.kv(c).Range(etcdrpc.RangeRequest(key=kb), timeout=OP_TIMEOUT_S)
                    v = resp.kvs[0].value.decode() if resp.kvs else None
                    seen[key] = v
                    self.history.record(client=c, key=key, f="read", value=v, invoke=t0,
                                        complete=now(), status="ok",
                                        revision=resp.header.revision)
                except grpc.RpcError as e:
                    self.note_error(e, stop)
                    self.history.record(client=c, key=key, f="read", value=None, invoke=t0,
                                        complete=now(), status="fail")
            elif r < 0.75:
                try:
                    resp = self.kv(c).Put(etcdrpc.PutRequest(key=kb, value=value.encode()),
                                          timeout=OP_TIMEOUT_S)
                    seen[key] = value
                    self.history.record(client=c, key=key, f="write", value=value, invoke=t0,
                                        complete=now(), status="ok",
                                        revision=resp.header.revision)
                except grpc.RpcError as e:
                    self.note_error(e, stop)
                    self.history.record(client=c, key=key, f="write", value=value, invoke=t0,
                                        complete=None, status=write_status(e))
            else:
                expected = seen.get(key)
                if expected is None:
                    cmp = etcdrpc.Compare(key=kb, target=etcdrpc.Compare.CREATE,
                                          result=etcdrpc.Compare.EQUAL, create_revision=0)
                else:
                    cmp = etcdrpc.Compare(key=kb, target=etcdrpc.Compare.VALUE,
                                          result=etcdrpc.Compare.EQUAL,
                                          value=expected.encode())
                req = etcdrpc.TxnRequest(
                    compare=[cmp],
                    success=[etcdrpc.RequestOp(request_put=etcdrpc.PutRequest(
                        key=kb, value=value.encode()))])
                try:
                    resp = self.kv(c).Txn(req, timeout=OP_TIMEOUT_S)
                    if resp.succeeded:
                        seen[key] = value
                    else:
                        seen.pop(key, None)
                    self.history.record(client=c, key=key, f="cas", value=value,
                                        expected=expected, succeeded=resp.succeeded,
                                        invoke=t0, complete=now(), status="ok",
                                        revision=resp.header.revision)
                except grpc.RpcError as e:
                    self.note_error(e, stop)
                    self.history.record(client=c, key=key, f="cas", value=value,
                                        expected=expected, invoke=t0, complete=None,
                                        status=write_status(e))
            stop.wait(rng.uniform(0, 0.02))


class SetWorkload(Workload):
    name = "set"

    def __init__(self, cluster, seed, clients=2):
        super().__init__(cluster, seed, clients)

    def run_client(self, c, rng, stop):
        while not stop.is_set():
            seq = self.next_seq(c)
            keys = ["set/c%d.%d" % (c, seq)]
            if seq % 10 == 0:  # two keys at one revision, for the watch checker
                keys.append("set/c%d.%d.b" % (c, seq))
            ops = [etcdrpc.RequestOp(request_put=etcdrpc.PutRequest(key=k.encode(),
                                                                    value=k.encode()))
                   for k in keys]
            t0 = now()
            try:
                resp = self.kv(c).Txn(etcdrpc.TxnRequest(success=ops), timeout=OP_TIMEOUT_S)
                self.history.record(client=c, keys=keys, invoke=t0, complete=now(), status="ok",
                                    revision=resp.header.revision)
            except grpc.RpcError as e:
                self.note_error(e, stop)
                self.history.record(client=c, keys=keys, invoke=t0, complete=None,
                                    status=write_status(e))
            stop.wait(rng.uniform(0.01, 0.05))

    def final_read(self, member):
        resp = etcdrpc.KVStub(self.cluster.channel(member)).Range(
            etcdrpc.RangeRequest(key=b"set/", range_end=b"set0", keys_only=True),
            timeout=10)
        return {kv.key.decode() for kv in resp.kvs}


# v3lock messages (python etcd3 has no stubs for them).
LOCK = fault_cluster.itest.build_messages("faults_v3lock", {
    "ResponseHeader": fault_cluster.itest.HEADER_FIELDS,
    "LockRequest": [("name", 1, "bytes"), ("lease", 2, "int64")],
    "LockResponse": [("header", 1, "ResponseHeader"), ("key", 2, "bytes")],
    "UnlockRequest": [("key", 1, "bytes")],
    "UnlockResponse": [("header", 1, "ResponseHeader")],
})

LOCK_NAME = b"faults-lock"
FENCE_KEY = b"fence"


class LockWorkload(Workload):
    """Acquire, three fenced writes, release; one shared lock.

    The fencing token is the lock key's create revision; a fenced write is
    applied only while that key exists, so applied fenced writes must come in
    runs of one token at a time, tokens increasing.
    """
    name = "lock"

    def __init__(self, cluster, seed, clients=3, lease_ttl=4):
        super().__init__(cluster, seed, clients)
        self.lease_ttl = lease_ttl
        self.acquired = 0

    def run_client(self, c, rng, stop):
        ch = lambda: self.cluster.channel(self.member_for(c))  # noqa: E731
        while not stop.is_set():
            lease = etcdrpc.LeaseStub(ch()).LeaseGrant(
                etcdrpc.LeaseGrantRequest(TTL=self.lease_ttl), timeout=OP_TIMEOUT_S).ID
            try:
                resp = fault_cluster.itest.unary(ch(), "/v3lockpb.Lock/Lock",
                                                 LOCK["LockRequest"](name=LOCK_NAME, lease=lease),
                                                 LOCK["LockResponse"], timeout_s=10)
            except grpc.RpcError as e:
                self.note_error(e, stop)
                self._revoke(ch, lease)
                stop.wait(0.1)
                continue
            key = resp.key
            self.history.record(client=c, f="acquire", key=key.decode(),
                                revision=resp.header.revision, invoke=now(), complete=now(),
                                status="ok")
            got = self.kv(c).Range(etcdrpc.RangeRequest(key=key), timeout=OP_TIMEOUT_S)
            if not got.kvs:
                self.history.record(client=c, f="lost", key=key.decode(), invoke=now(),
                                    complete=now(), status="ok")
                continue
            token = got.kvs[0].create_revision
            self.acquired += 1
            for i in range(3):
                if stop.is_set():
                    break
                value = "t%d.c%d.%d" % (token, c, i)
                req = etcdrpc.TxnRequest(
                    compare=[etcdrpc.Compare(key=key, target=etcdrpc.Compare.CREATE,
                                             result=etcdrpc.Compare.EQUAL,
                                             create_revision=token)],
                    success=[etcdrpc.RequestOp(request_put=etcdrpc.PutRequest(
                        key=FENCE_KEY, value=value.encode()))])
                t0 = now()
                try:
                    r = self.kv(c).Txn(req, timeout=OP_TIMEOUT_S)
                    self.history.record(client=c, f="fenced", token=token, value=value,
                                        succeeded=r.succeeded, invoke=t0, complete=now(),
                                        status="ok", revision=r.header.revision)
                except grpc.RpcError as e:
                    self.note_error(e, stop)
                    self.history.record(client=c, f="fenced", token=token, value=value,
                                        invoke=t0, complete=None, status=write_status(e))
                stop.wait(rng.uniform(0, 0.05))
            try:
                fault_cluster.itest.unary(ch(), "/v3lockpb.Lock/Unlock",
                                          LOCK["UnlockRequest"](key=key), LOCK["UnlockResponse"],
                                          timeout_s=OP_TIMEOUT_S)
            except grpc.RpcError as e:
                self.note_error(e, stop)
            self._revoke(ch, lease)

    def _revoke(self, ch, lease):
        try:
            etcdrpc.LeaseStub(ch()).LeaseRevoke(etcdrpc.LeaseRevokeRequest(ID=lease),
                                                timeout=OP_TIMEOUT_S)
        except grpc.RpcError as e:
            self.note_error(e)


class WatchStream:
    """One Watch stream; responses land in a queue read by the owner."""

    def __init__(self, channel, start_revision):
        import queue
        self.responses = queue.Queue()
        self._requests = queue.Queue()
        self._requests.put(etcdrpc.WatchRequest(create_request=etcdrpc.WatchCreateRequest(
            key=ALL_KEYS[0], range_end=ALL_KEYS[1], start_revision=start_revision)))
        self.call = etcdrpc.WatchStub(channel).Watch(self._iter())
        threading.Thread(target=self._read, daemon=True).start()

    def _iter(self):
        while True:
            r = self._requests.get()
            if r is None:
                return
            yield r

    def _read(self):
        try:
            for resp in self.call:
                self.responses.put(resp)
        except grpc.RpcError as e:
            self.responses.put(e)
        except Exception as e:  # noqa: BLE001
            self.responses.put(e)
        self.responses.put(None)

    def close(self):
        self._requests.put(None)
        self.call.cancel()


class WatchWorkload(Workload):
    """Watchers of every key from start_revision, resuming after breaks.

    A watcher that hears nothing for a while (its member paused or cut off)
    reconnects too, to the next member, as a client with a keep-alive would.
    """
    name = "watch"

    def __init__(self, cluster, seed, start_revision, clients=2, silence_s=4.0):
        super().__init__(cluster, seed, clients)
        self.start_revision = start_revision
        self.silence_s = silence_s
        self.events = {c: [] for c in range(clients)}   # (revision, key, type, value, response#)
        self.reconnects = {c: 0 for c in range(clients)}
        self.canceled = {c: [] for c in range(clients)}
        self.last_revision = {c: start_revision - 1 for c in range(clients)}

    def run_client(self, c, rng, stop):
        import queue
        member = self.member_for(c)
        response_no = 0
        while not stop.is_set():
            stream = WatchStream(self.cluster.channel(member),
                                 self.last_revision[c] + 1)
            last_heard = now()
            try:
                while not stop.is_set():
                    try:
                        item = stream.responses.get(timeout=0.2)
                    except queue.Empty:
                        if now() - last_heard > self.silence_s:
                            self.note_error("no response for %.0fs" % self.silence_s)
                            break
                        continue
                    if item is None or isinstance(item, Exception):
                        if item is not None:
                            self.note_error(item)
                        break
                    last_heard = now()
                    if item.canceled:
                        self.canceled[c].append(item.cancel_reason or "canceled")
                        break
                    response_no += 1
                    for ev in item.events:
                        self.events[c].append((ev.kv.mod_revision, ev.kv.key.decode(),
                                               "DELETE" if ev.type == 1 else "PUT",
                                               ev.kv.value.decode(errors="replace"),
                                               response_no))
                        self.last_revision[c] = max(self.last_revision[c], ev.kv.mod_revision)
            finally:
                stream.close()
            if stop.is_set():
                return
            self.reconnects[c] += 1
            member = (member + 1) % self.cluster.size
            stop.wait(0.1)


def read_all_events(cluster, member, start_revision, end_revision, timeout_s=30):
    """Every event from start_revision through end_revision, from a fresh stream."""
    import queue
    stream = WatchStream(cluster.channel(member), start_revision)
    events, response_no = [], 0
    deadline = now() + timeout_s
    try:
        while now() < deadline:
            if events and events[-1][0] >= end_revision:
                break
            try:
                item = stream.responses.get(timeout=0.5)
            except queue.Empty:
                continue
            if item is None or isinstance(item, Exception):
                raise RuntimeError("ground-truth watch broke: %r" % (item,))
            response_no += 1
            for ev in item.events:
                if ev.kv.mod_revision > end_revision:
                    continue
                events.append((ev.kv.mod_revision, ev.kv.key.decode(),
                               "DELETE" if ev.type == 1 else "PUT",
                               ev.kv.value.decode(errors="replace"), response_no))
        else:
            raise RuntimeError("ground-truth watch did not reach revision %d in %ds"
                               % (end_revision, timeout_s))
    finally:
        stream.close()
    return events


class LeaseWorkload(Workload):
    """Grant, attach a key, keep alive for a while, stop, poll until gone."""
    name = "lease"

    def __init__(self, cluster, seed, clients=2, ttl=3):
        super().__init__(cluster, seed, clients)
        self.ttl = ttl
        self.leases = []  # one record per lease: grant, put, renewals, reads
        self._llock = threading.Lock()

    def run_client(self, c, rng, stop):
        ch = self.cluster.channel(self.member_for(c))
        lstub, kv = etcdrpc.LeaseStub(ch), etcdrpc.KVStub(ch)
        while not stop.is_set():
            n = self.next_seq(c)
            key = ("lease/c%d.%d" % (c, n)).encode()
            t0 = now()
            try:
                grant = lstub.LeaseGrant(etcdrpc.LeaseGrantRequest(TTL=self.ttl),
                                         timeout=OP_TIMEOUT_S)
            except grpc.RpcError as e:
                self.note_error(e, stop)
                stop.wait(0.2)
                continue
            rec = {"client": c, "member": self.member_for(c), "key": key.decode(),
                   "lease": grant.ID, "ttl": grant.TTL, "grant_invoke": t0,
                   "grant_complete": now(), "grant_term": grant.header.raft_term,
                   "renewals": [], "reads": []}
            t1 = now()
            try:
                kv.Put(etcdrpc.PutRequest(key=key, value=b"x", lease=grant.ID),
                       timeout=OP_TIMEOUT_S)
                rec["put"] = {"invoke": t1, "complete": now(), "status": "ok"}
            except grpc.RpcError as e:
                self.note_error(e, stop)
                rec["put"] = {"invoke": t1, "complete": None, "status": "unknown"}
            with self._llock:
                self.leases.append(rec)
            # Keep alive for 0..3 renewals, one per second.
            for _ in range(rng.randint(0, 3)):
                if stop.wait(1.0):
                    break
                t2 = now()
                try:
                    it = lstub.LeaseKeepAlive(iter([etcdrpc.LeaseKeepAliveRequest(ID=grant.ID)]),
                                              timeout=OP_TIMEOUT_S)
                    resp = next(it)
                    rec["renewals"].append({"invoke": t2, "complete": now(), "ttl": resp.TTL,
                                            "status": "ok", "term": resp.header.raft_term})
                    it.cancel()
                except (grpc.RpcError, StopIteration) as e:
                    self.note_error(e, stop)
                    rec["renewals"].append({"invoke": t2, "complete": now(), "ttl": None,
                                            "status": "unknown"})
                    stop.wait(0.1)
            # Poll until the key is gone (bounded).
            deadline = now() + self.ttl + 30
            while now() < deadline and not stop.is_set():
                t3 = now()
                try:
                    r = kv.Range(etcdrpc.RangeRequest(key=key), timeout=OP_TIMEOUT_S)
                    rec["reads"].append({"invoke": t3, "complete": now(), "found": bool(r.kvs),
                                         "term": r.header.raft_term})
                    if not r.kvs:
                        break
                except grpc.RpcError as e:
                    self.note_error(e, stop)
                stop.wait(0.25)
