"""Client of the conclave.kvpb.KV service (proto/conclave/kvpb/kv.proto)."""

import collections
import threading

import grpc

from conclave import routing
from conclave.kvpb import kv_pb2

_SERVICE = "/conclave.kvpb.KV/"

# Keys from here on belong to the system (the meta range); the server refuses
# them.
SYSTEM_KEYS = b"\xff\xff"

Timestamp = collections.namedtuple("Timestamp", ["wall_nanos", "logical"])
KeyValue = collections.namedtuple("KeyValue", ["key", "value", "timestamp"])
RangeInfo = collections.namedtuple(
    "RangeInfo",
    ["range_id", "start", "end", "leader_node", "applied_index", "quiesced", "generation",
     "bytes", "requests_per_second", "replicas", "frozen_into", "sticky"],
    defaults=[0, False])
# A member as the native keyspace sees it (NodeInfo in kv.proto): state is
# "up", "late", "down" or "unreported"; draining: drain_node was asked for it;
# labels: its --labels as (key, value) pairs, most general first; the rest
# is its last status report.
NodeInfo = collections.namedtuple(
    "NodeInfo",
    ["node_id", "state", "ranges", "leaders", "bytes", "requests_per_second",
     "report_age_seconds", "draining", "labels"],
    defaults=[()])
# A replica of a range: the node it lives on, its id in the range's group,
# and whether it is a learner (receives the log, does not vote yet).
Replica = collections.namedtuple("Replica", ["node_id", "replica_id", "learner"])


class ConclaveError(Exception):
    """A call the server refused or that could not complete: .code, .details."""

    def __init__(self, code, details):
        super().__init__("%s: %s" % (code.name, details))
        self.code = code
        self.details = details


class ConditionFailed(ConclaveError):
    """A conditional write whose precondition did not hold; nothing changed."""


class InvalidArgument(ConclaveError):
    """A request the server refuses as malformed (an empty key, say)."""


class Unavailable(ConclaveError):
    """No endpoint answered; a write may or may not have been applied."""


_ERRORS = {
    grpc.StatusCode.FAILED_PRECONDITION: ConditionFailed,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
}


def _bytes(b):
    if isinstance(b, str):
        return b.encode("utf-8")
    if isinstance(b, (bytes, bytearray, memoryview)):
        return bytes(b)
    raise TypeError("keys and values are bytes or str, not %s" % type(b).__name__)


def _ts(t):
    return Timestamp(t.wall_nanos, t.logical)


def _kv(kv):
    return KeyValue(kv.key, kv.value, _ts(kv.timestamp))


def _range(r):
    return RangeInfo(r.range_id, r.start, r.end, r.leader_node, r.applied_index, r.quiesced,
                     r.generation, r.bytes, r.requests_per_second,
                     [Replica(p.node_id, p.replica_id, p.learner) for p in r.replicas],
                     r.frozen_into, r.sticky)


def _never_sent(err):
    # The connection could not be made: the request never left this process.
    return (err.code() == grpc.StatusCode.UNAVAILABLE
            and "failed to connect" in (err.details() or ""))


class Client:
    """A client of one or more members ("host:port", the client URL's address).

    Put, get and delete go to the endpoint of the key's range leader when the
    client has several endpoints and knows it (see conclave.routing; route=False
    sends them to the current endpoint, which forwards them). Other calls go
    to one endpoint at a time. When it cannot be reached or does not
    answer in time, reads move on to the next endpoint and retry; writes do
    too when the request was never sent, and otherwise raise (Unavailable, or
    ConclaveError with DEADLINE_EXCEEDED: the write may have applied).
    Every call has `timeout` seconds. Thread-safe.
    """

    def __init__(self, endpoints, timeout=5.0, route=True):
        if isinstance(endpoints, str):
            endpoints = [endpoints]
        if not endpoints:
            raise ValueError("at least one endpoint")
        self._endpoints = list(endpoints)
        self._timeout = timeout
        self._lock = threading.Lock()
        self._current = 0
        self._channels = {}
        self._router = routing.Router() if route and len(self._endpoints) > 1 else None

    # ---- connection -------------------------------------------------------

    def _channel(self, i):
        with self._lock:
            ch = self._channels.get(i)
            if ch is None:
                ch = grpc.insecure_channel(self._endpoints[i])
                self._channels[i] = ch
            return ch

    def _multicallable(self, i, method, request_class, response_class):
        return self._channel(i).unary_unary(
            _SERVICE + method,
            request_serializer=request_class.SerializeToString,
            response_deserializer=response_class.FromString)

    def _refresh_routes(self):
        if not self._router.claim_refresh():
            return
        try:
            answers = []
            for i in range(len(self._endpoints)):
                call = self._multicallable(i, "Ranges", kv_pb2.RangesRequest,
                                           kv_pb2.RangesResponse)
                try:
                    answers.append(call(kv_pb2.RangesRequest(), timeout=min(self._timeout, 1.0)))
                except grpc.RpcError:
                    answers.append(None)
            self._router.refresh(answers)
        finally:
            self._router.abandon_refresh()

    def _call(self, method, request, response_class, idempotent, timeout=None, key=None):
        # A point request goes to its range's leader when the router knows it.
        routed = key is not None and self._router is not None
        prefer = None
        if routed:
            self._refresh_routes()
            prefer = self._router.pick(key)
        with self._lock:
            first = self._current if prefer is None else prefer
        last_err = None
        for attempt in range(len(self._endpoints)):
            i = (first + attempt) % len(self._endpoints)
            call = self._multicallable(i, method, type(request), response_class)
            try:
                if routed:
                    resp, rpc = call.with_call(request, timeout=timeout or self._timeout)
                    for k, v in rpc.trailing_metadata() or ():
                        if k == routing.ROUTE_HINT_HEADER:
                            self._router.learn(key, v)
                else:
                    resp = call(request, timeout=timeout or self._timeout)
            except grpc.RpcError as err:
                last_err = err
                # An unreachable member, or one that could not answer in
                # time (cut off from its ranges' quorum): the next call goes
                # elsewhere; a read moves on now.
                if err.code() not in (grpc.StatusCode.UNAVAILABLE,
                                      grpc.StatusCode.DEADLINE_EXCEEDED):
                    break
                with self._lock:
                    self._current = (i + 1) % len(self._endpoints)
                if idempotent or _never_sent(err):
                    continue
                break
            if prefer is None or i != prefer:
                with self._lock:
                    self._current = i
            return resp
        cls = _ERRORS.get(last_err.code(), ConclaveError)
        raise cls(last_err.code(), last_err.details()) from None

    def close(self):
        with self._lock:
            for ch in self._channels.values():
                ch.close()
            self._channels = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- the keyspace ------------------------------------------------------

    @staticmethod
    def _precondition(msg, if_absent=False, if_value=None, if_timestamp=None):
        given = [c for c in (if_absent or None, if_value, if_timestamp) if c is not None]
        if len(given) > 1:
            raise ValueError("at most one of if_absent, if_value and if_timestamp")
        if if_absent:
            msg.precondition.absent = True
        elif if_value is not None:
            msg.precondition.value = _bytes(if_value)
        elif if_timestamp is not None:
            msg.precondition.timestamp.wall_nanos = if_timestamp[0]
            msg.precondition.timestamp.logical = if_timestamp[1]

    def put(self, key, value, if_absent=False, if_value=None, if_timestamp=None):
        """Writes key = value; returns the new version's Timestamp.

        With if_absent, if_value or if_timestamp (a Timestamp) the write
        happens only if the key has no live value, has exactly that value,
        or its live version has that timestamp; otherwise ConditionFailed.
        """
        req = kv_pb2.PutRequest(key=_bytes(key), value=_bytes(value))
        self._precondition(req, if_absent, if_value, if_timestamp)
        return _ts(self._call("Put", req, kv_pb2.PutResponse, idempotent=False,
                              key=req.key).timestamp)

    def get(self, key):
        """The key's value, or None (a linearizable read)."""
        kv = self.get_entry(key)
        return None if kv is None else kv.value

    def get_entry(self, key):
        """The key's KeyValue (with its version's timestamp), or None."""
        req = kv_pb2.GetRequest(key=_bytes(key))
        resp = self._call("Get", req, kv_pb2.GetResponse, idempotent=True, key=req.key)
        if not resp.found:
            return None
        return KeyValue(req.key, resp.value, _ts(resp.timestamp))

    def delete(self, key, if_value=None, if_timestamp=None):
        """Deletes the key; returns whether it had a live value."""
        req = kv_pb2.DeleteRequest(key=_bytes(key))
        self._precondition(req, False, if_value, if_timestamp)
        return self._call("Delete", req, kv_pb2.DeleteResponse, idempotent=False,
                          key=req.key).deleted

    def delete_range(self, start, end=b""):
        """Deletes every key in [start, end) (end empty: to the end); returns how many.

        Atomic within each range, one range after another across ranges.
        """
        req = kv_pb2.DeleteRangeRequest(start=_bytes(start), end=_bytes(end))
        return self._call("DeleteRange", req, kv_pb2.DeleteRangeResponse,
                          idempotent=False).deleted

    def iter_scan(self, start, end=b"", limit=0, page_size=1000):
        """Yields the KeyValues of [start, end) in key order, page by page."""
        if page_size <= 0 or limit < 0:
            raise ValueError("page_size must be positive and limit not negative")
        start, end = _bytes(start), _bytes(end)
        returned = 0
        while True:
            want = page_size if limit == 0 else min(page_size, limit - returned)
            req = kv_pb2.ScanRequest(start=start, end=end, limit=want)
            resp = self._call("Scan", req, kv_pb2.ScanResponse, idempotent=True)
            for kv in resp.kvs:
                yield _kv(kv)
            returned += len(resp.kvs)
            if not resp.more or (limit and returned >= limit):
                return
            start = resp.resume_key

    def scan(self, start, end=b"", limit=0, page_size=1000):
        """The KeyValues of [start, end) (end empty: to the end), at most limit (0: all)."""
        return list(self.iter_scan(start, end, limit, page_size))

    def ranges(self, cluster=False):
        """The ranges the current endpoint holds a replica of, as RangeInfo; with
        cluster=True, every range of the cluster as the range map records it."""
        resp = self._call("Ranges", kv_pb2.RangesRequest(cluster=cluster), kv_pb2.RangesResponse,
                          idempotent=True)
        return [_range(r) for r in resp.ranges]

    def nodes(self):
        """The members, as NodeInfo, with what each last reported to the meta range."""
        resp = self._call("Nodes", kv_pb2.NodesRequest(), kv_pb2.NodesResponse, idempotent=True)
        return [NodeInfo(n.node_id, n.state, n.ranges, n.leaders, n.bytes,
                         n.requests_per_second, n.report_age_seconds, n.draining,
                         tuple((label.key, label.value) for label in n.labels))
                for n in resp.nodes]

    def drain_node(self, node_id, cancel=False):
        """Starts draining member `node_id` (an int): the placement driver moves every
        replica and leadership it holds to the other members and gives it none, until
        drain_node(node_id, cancel=True). Returns at once; nodes() shows the progress.
        Raises ConclaveError with NOT_FOUND for a node that is not a member.
        """
        self._call("DrainNode", kv_pb2.DrainNodeRequest(node_id=node_id, cancel=cancel),
                   kv_pb2.DrainNodeResponse, idempotent=True)

    def split(self, key):
        """Splits the range holding `key` at `key`; returns the (left, right) RangeInfo.

        Raises ConclaveError with ALREADY_EXISTS when a range starts at `key`.
        """
        resp = self._call("Split", kv_pb2.SplitRequest(key=_bytes(key)), kv_pb2.SplitResponse,
                          idempotent=False)
        return _range(resp.left), _range(resp.right)

    def merge(self, key, timeout=120.0):
        """Merges the range holding `key` with the range to its right; returns the merged
        RangeInfo. The right range's replicas first move onto the left range's nodes when
        they live elsewhere (up to `timeout` seconds). Raises ConclaveError with
        FAILED_PRECONDITION for the last user range (nothing is to its right).
        """
        resp = self._call("Merge", kv_pb2.MergeRequest(key=_bytes(key)), kv_pb2.MergeResponse,
                          idempotent=False, timeout=timeout)
        return _range(resp.range)

    def transfer_leader(self, range_id, to_node, timeout=30.0):
        """Makes node `to_node`'s replica of range `range_id` (a voter) the range's leader
        and waits until it leads; returns the RangeInfo after the transfer. Any member may
        be asked.
        """
        req = kv_pb2.TransferLeaderRequest(range_id=range_id, to_node=to_node)
        resp = self._call("TransferLeader", req, kv_pb2.TransferLeaderResponse, idempotent=False,
                          timeout=timeout)
        return _range(resp.range)

    def move_replica(self, range_id, from_node, to_node, timeout=120.0):
        """Moves range `range_id`'s replica from node `from_node` to `to_node` (node ids as
        ints); returns the RangeInfo after the move. Ask a node that holds a voter of the
        range: it coordinates the move. Waits (up to `timeout` seconds) while the new
        replica receives a snapshot and catches up.
        """
        req = kv_pb2.MoveReplicaRequest(range_id=range_id, from_node=from_node, to_node=to_node)
        resp = self._call("MoveReplica", req, kv_pb2.MoveReplicaResponse, idempotent=False,
                          timeout=timeout)
        return _range(resp.range)
