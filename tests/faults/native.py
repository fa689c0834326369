"""The fault harness over Conclave's native, sharded keyspace.

The cluster starts with a few native ranges (--initial-range-count) and the
"split" fault splits them at random keys while the faults go on, so the
workloads below run across ranges that change under them:

- NativeRegisterWorkload: get / put / conditional put on keys spread over
  the whole keyspace (their first bytes differ), checked for per-key
  linearizability like the etcd register workload.
- NativeSetWorkload: one client puts unique keys, another scans them in
  small pages. check_native_set: every acknowledged put is in the final
  read (no lost write); every scan returns keys in order, each once, none
  that was never written, and every key acknowledged before it began.

Operations are recorded as in workloads.py ("ok", "fail", "unknown") and
never retried.
"""

import os
import re
import sys
import time

import grpc

import workloads

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, os.pardir, os.pardir, "clients", "python"))

from conclave.kvpb import kv_pb2  # noqa: E402

RANGE_COUNT = 4
# Keys of the set workload, and the span it scans.
SYSTEM_KEYS = b"\xff\xff"
SET_PREFIX = b"nset/"
SET_END = b"nset0"


class NativeStub:
    """The conclave.kvpb.KV calls on one channel, without retries."""

    def __init__(self, channel):
        def call(name, req, resp):
            return channel.unary_unary("/conclave.kvpb.KV/" + name,
                                       request_serializer=req.SerializeToString,
                                       response_deserializer=resp.FromString)
        self.Put = call("Put", kv_pb2.PutRequest, kv_pb2.PutResponse)
        self.Get = call("Get", kv_pb2.GetRequest, kv_pb2.GetResponse)
        self.Scan = call("Scan", kv_pb2.ScanRequest, kv_pb2.ScanResponse)
        self.Split = call("Split", kv_pb2.SplitRequest, kv_pb2.SplitResponse)
        self.Merge = call("Merge", kv_pb2.MergeRequest, kv_pb2.MergeResponse)
        self.Ranges = call("Ranges", kv_pb2.RangesRequest, kv_pb2.RangesResponse)
        self.MoveReplica = call("MoveReplica", kv_pb2.MoveReplicaRequest,
                                kv_pb2.MoveReplicaResponse)
        self.DrainNode = call("DrainNode", kv_pb2.DrainNodeRequest, kv_pb2.DrainNodeResponse)
        self.TransferLeader = call("TransferLeader", kv_pb2.TransferLeaderRequest,
                                   kv_pb2.TransferLeaderResponse)


def write_status(e):
    """A native write's outcome from its error: the server's own refusals
    (no range of the key on that member, a key that kept moving between
    ranges, a bad request) change nothing; otherwise as workloads.py says."""
    if e.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.OUT_OF_RANGE,
                    grpc.StatusCode.INVALID_ARGUMENT):
        return "fail"
    return workloads.write_status(e)


class _Workload(workloads.Workload):
    """Counts errors without the key they name, so the report groups them."""

    def note_error(self, e, stop=None):
        text = re.sub(r'key "[^"]*"', 'key "..."', workloads.error_text(e))
        with self._elock:
            self.errors[text[:160]] = self.errors.get(text[:160], 0) + 1
        if stop is not None:
            stop.wait(0.1)


def register_key(k):
    """Key k of the register workload: its first byte spreads the keys over
    the keyspace, so over the initial ranges and the splits between them."""
    return bytes([(k * 21 + 7) % 255]) + b"/nreg/k%02d" % k


def split_key(rng, stub=None):
    """Where the split fault cuts: among the register keys, or inside the
    set workload's span, at a key written there when `stub` can read some
    (so that the new boundary is a key scans must return once)."""
    if rng.random() < 0.5:
        return bytes([rng.randrange(255)]) + b"/nreg/k%02d" % rng.randrange(100)
    if stub is not None:
        try:
            resp = stub.Scan(kv_pb2.ScanRequest(start=SET_PREFIX + b"c0.%d" % rng.randrange(10),
                                                end=SET_END, limit=100), timeout=2)
            if resp.kvs:
                return rng.choice(resp.kvs).key
        except grpc.RpcError:
            pass
    return SET_PREFIX + b"c%d.%d" % (rng.randrange(2), rng.randrange(2000))


class NativeRegisterWorkload(_Workload):
    name = "native register"

    def __init__(self, cluster, seed, clients=4, keys=12):
        super().__init__(cluster, seed, clients)
        self.keys = keys

    def run_client(self, c, rng, stop):
        seen = {}
        stub = NativeStub(self.cluster.channel(self.member_for(c)))
        timeout = workloads.OP_TIMEOUT_S
        while not stop.is_set():
            kb = register_key(rng.randrange(self.keys))
            key = kb.hex()
            r = rng.random()
            value = "c%d.%d" % (c, self.next_seq(c))
            t0 = workloads.now()
            if r < 0.5:
                try:
                    resp = stub.Get(kv_pb2.GetRequest(key=kb), timeout=timeout)
                    v = resp.value.decode() if resp.found else None
                    seen[key] = v
                    self.history.record(client=c, key=key, f="read", value=v, invoke=t0,
                                        complete=workloads.now(), status="ok")
                except grpc.RpcError as e:
                    self.note_error(e, stop)
                    self.history.record(client=c, key=key, f="read", value=None, invoke=t0,
                                        complete=workloads.now(), status="fail")
                continue
            req = kv_pb2.PutRequest(key=kb, value=value.encode())
            cas = r >= 0.75
            expected = seen.get(key)
            if cas:
                if expected is None:
                    req.precondition.absent = True
                else:
                    req.precondition.value = expected.encode()
            try:
                stub.Put(req, timeout=timeout)
                seen[key] = value
                if cas:
                    self.history.record(client=c, key=key, f="cas", value=value,
                                        expected=expected, succeeded=True, invoke=t0,
                                        complete=workloads.now(), status="ok")
                else:
                    self.history.record(client=c, key=key, f="write", value=value, invoke=t0,
                                        complete=workloads.now(), status="ok")
            except grpc.RpcError as e:
                if cas and e.code() == grpc.StatusCode.FAILED_PRECONDITION:
                    # Refused as it applied: certainly not written.
                    seen.pop(key, None)
                    self.history.record(client=c, key=key, f="cas", value=value,
                                        expected=expected, succeeded=False, invoke=t0,
                                        complete=workloads.now(), status="ok")
                else:
                    self.note_error(e, stop)
                    self.history.record(client=c, key=key, f="cas" if cas else "write",
                                        value=value, expected=expected, invoke=t0,
                                        complete=None, status=write_status(e))
            stop.wait(rng.uniform(0, 0.02))


class NativeSetWorkload(_Workload):
    """Client 0 puts unique keys; client 1 scans them in pages of 7."""
    name = "native set"

    def __init__(self, cluster, seed):
        super().__init__(cluster, seed, clients=2)
        self.scans = []

    def run_client(self, c, rng, stop):
        stub = NativeStub(self.cluster.channel(self.member_for(c)))
        timeout = workloads.OP_TIMEOUT_S
        while not stop.is_set():
            if c == 0:
                key = SET_PREFIX + b"c%d.%d" % (c, self.next_seq(c))
                t0 = workloads.now()
                try:
                    stub.Put(kv_pb2.PutRequest(key=key, value=key), timeout=timeout)
                    self.history.record(client=c, key=key.decode(), invoke=t0,
                                        complete=workloads.now(), status="ok")
                except grpc.RpcError as e:
                    self.note_error(e, stop)
                    self.history.record(client=c, key=key.decode(), invoke=t0, complete=None,
                                        status=write_status(e))
                stop.wait(rng.uniform(0.005, 0.02))
                continue
            t0 = workloads.now()
            try:
                keys = scan_all(stub, timeout)
                self.scans.append({"invoke": t0, "complete": workloads.now(), "keys": keys})
            except grpc.RpcError as e:
                self.note_error(e, stop)
            stop.wait(rng.uniform(0.1, 0.3))

    def final_read(self, member):
        """Through `member`, or the next one when it cannot answer (holds none
        of the ranges, or had a replica moved away under the read: the
        placement driver may still be moving replicas after the healing)."""
        members = [member] + [i for i in self.cluster.running() if i != member]
        for attempt in range(3 * len(members)):
            i = members[attempt % len(members)]
            try:
                return set(scan_all(NativeStub(self.cluster.channel(i)), 30))
            except grpc.RpcError as e:
                retry = (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE)
                if e.code() not in retry or attempt + 1 == 3 * len(members):
                    raise
                time.sleep(1)
        return set()


def scan_all(stub, timeout):
    """The set workload's keys, page after page (pages of 7 cross range
    boundaries and splits often)."""
    keys = []
    start = SET_PREFIX
    while True:
        resp = stub.Scan(kv_pb2.ScanRequest(start=start, end=SET_END, limit=7), timeout=timeout)
        keys += [kv.key.decode() for kv in resp.kvs]
        if not resp.more:
            return keys
        start = resp.resume_key


def check_native_set(adds, scans, final_keys):
    """Acknowledged puts are never lost; every scan has each key once, in
    order, only keys that were written, and every key acknowledged before
    it began."""
    violations = []
    attempted = {o["key"] for o in adds}
    acked = [o for o in adds if o["status"] == "ok"]
    lost = sorted(o["key"] for o in acked if o["key"] not in final_keys)
    if lost:
        violations.append("%d acknowledged puts missing at the end: %s" % (len(lost), lost[:5]))
    phantom = sorted(final_keys - attempted)
    if phantom:
        violations.append("keys never written at the end: %s" % phantom[:5])
    for i, s in enumerate(scans):
        keys = s["keys"]
        if keys != sorted(set(keys)):
            dup = sorted({k for k in keys if keys.count(k) > 1})
            violations.append("scan %d: keys out of order or twice (%s)" % (i, dup[:5]))
        before = [o["key"] for o in acked if o["complete"] < s["invoke"]]
        missing = sorted(set(before) - set(keys))
        if missing:
            violations.append("scan %d: %d keys acknowledged before it are missing: %s"
                              % (i, len(missing), missing[:5]))
        unknown = sorted(set(keys) - attempted)
        if unknown:
            violations.append("scan %d: keys never written: %s" % (i, unknown[:5]))
    return {"valid": not violations, "violations": violations[:20],
            "violation_count": len(violations), "puts": len(adds), "acknowledged": len(acked),
            "scans": len(scans), "final_keys": len(final_keys)}
