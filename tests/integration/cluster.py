"""A multi-process cluster for the integration suites.

Cluster starts `size` members of an etcd-compatible server as separate
processes on loopback ports, with etcd 3.4's flags, so the same suite runs
against conclave and against the real etcd (which is how the suite itself is
checked). The binary comes from CONCLAVE_BIN (default: `etcd` on PATH).

Members are numbered from 0 in every method (`client(0)`); their names are
n1..nK. A Cluster owns its processes, its gRPC clients and its work directory:
close() kills every process and removes the directory unless
CONCLAVE_KEEP_TEST_DIRS is set. Not thread-safe: one test thread drives it.

Every wait here has a deadline; nothing loops without a bound.
"""

import faulthandler
import http.client
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import etcd3
import etcd3.etcdrpc as etcdrpc
import etcd3.exceptions
import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

# Tick settings that every member gets: short so that elections after a kill
# finish within a second on a loaded two-core machine.
HEARTBEAT_INTERVAL_MS = 50
ELECTION_TIMEOUT_MS = 500

START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 10
RPC_TIMEOUT_S = 5
ETCDCTL_TIMEOUT_S = 20
LOG_TAIL_LINES = 40


def _quiet_closed_watch_threads(args):
    """python-etcd3's watch thread retries forever and dies with a ValueError
    once its client's channel is closed; that end is expected at teardown."""
    if (args.exc_type is ValueError and args.thread is not None
            and args.thread.name.startswith("etcd3_watch_")
            and "Channel closed" in str(args.exc_value)):
        return
    _default_excepthook(args)


_default_excepthook = threading.excepthook
threading.excepthook = _quiet_closed_watch_threads

# A suite that hangs is killed by ctest's timeout with nothing to show for it:
# the ctest entries set CONCLAVE_ITEST_STACKS_AFTER_S below their timeout, and
# from then on every thread's stack goes to stderr, so the log says where the
# suite waited. Unset or 0 (a soak run): never.
_STACKS_AFTER_S = float(os.environ.get("CONCLAVE_ITEST_STACKS_AFTER_S", "0"))
if _STACKS_AFTER_S > 0:
    faulthandler.dump_traceback_later(_STACKS_AFTER_S, repeat=True)


def dies_with_parent(cmd):
    """`cmd`, SIGKILLed when the test runner dies.

    ctest kills a test that overruns its timeout, and a runner killed by a
    signal runs no teardown; without this its members would outlive it and
    keep their ports. setpriv (util-linux) sets the parent-death signal and
    execs the command, so the process keeps its pid. Not a preexec_fn: Python
    code between fork and exec in a process with other threads (gRPC's) can
    deadlock the child before it execs, and Popen then waits forever.
    """
    return ["setpriv", "--pdeathsig", "KILL", "--"] + list(cmd)


def binary_from_env():
    """The server under test: CONCLAVE_BIN, else etcd from PATH."""
    binary = os.environ.get("CONCLAVE_BIN") or shutil.which("etcd")
    if not binary:
        raise RuntimeError("set CONCLAVE_BIN or put etcd on PATH")
    return binary


def is_etcd(binary):
    return os.path.basename(binary).startswith("etcd")


def new_workdir(tag):
    """A fresh directory under /tmp for one cluster."""
    return tempfile.mkdtemp(prefix="conclave-itest-%s-" % tag, dir="/tmp")


def wait_until(predicate, timeout_s, interval_s=0.05, what="condition"):
    """Polls predicate() until it returns a truthy value; returns that value.

    Exceptions from predicate count as "not yet" (the last one is reported
    when the deadline passes), except AssertionError, which fails at once:
    predicates raise it when waiting longer cannot help (a member died).
    """
    deadline = time.monotonic() + timeout_s
    last_error = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except AssertionError:
            raise
        except Exception as e:  # noqa: BLE001 - any other failure means "not yet"
            last_error = e
        if time.monotonic() >= deadline:
            raise TimeoutError("timed out after %.1fs waiting for %s (last error: %r)"
                               % (timeout_s, what, last_error))
        time.sleep(interval_s)


# Failures that mean "the cluster cannot serve this right now" (no leader yet,
# member down, request timed out inside the server): worth a bounded retry.
RETRYABLE_ERRORS = (grpc.RpcError, etcd3.exceptions.Etcd3Exception)


def retry(fn, timeout_s=20, interval_s=0.1, what="request"):
    """Calls fn() until it returns without a retryable error; returns its value."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return fn()
        except RETRYABLE_ERRORS as e:
            if time.monotonic() >= deadline:
                e.add_note("gave up retrying %s after %.1fs" % (what, timeout_s))
                raise
        time.sleep(interval_s)


def put_once(kv_stub, key, value, timeout_s=RPC_TIMEOUT_S):
    """Creates key=value exactly once, safe to retry; returns the put's revision.

    A plain put retried after a timeout may commit twice and add a revision the
    caller never saw. This is a create-if-absent txn instead: when a previous
    attempt did commit, the failure branch reads the key back, and the revision
    returned is that attempt's.
    """
    key, value = etcd3.utils.to_bytes(key), etcd3.utils.to_bytes(value)
    req = etcdrpc.TxnRequest(
        compare=[etcdrpc.Compare(key=key, target=etcdrpc.Compare.CREATE,
                                 result=etcdrpc.Compare.EQUAL, create_revision=0)],
        success=[etcdrpc.RequestOp(request_put=etcdrpc.PutRequest(key=key, value=value))],
        failure=[etcdrpc.RequestOp(request_range=etcdrpc.RangeRequest(key=key))])
    resp = kv_stub.Txn(req, timeout_s)
    if resp.succeeded:
        return resp.header.revision
    kv = resp.responses[0].response_range.kvs[0]
    if kv.value != value:
        raise AssertionError("key %r exists with value %r, not %r" % (key, kv.value, value))
    return kv.mod_revision


# ---- messages python etcd3 does not have --------------------------------
#
# python etcd3 ships etcd 3.3's stubs: no learners, no MemberPromote, no v3lock
# or v3election. Only field numbers and wire types matter on the wire, so the
# messages the suites need are declared here, in a private descriptor pool and
# a package of their own, and called through generic gRPC methods by full name.

_SCALAR_TYPES = {
    "bytes": descriptor_pb2.FieldDescriptorProto.TYPE_BYTES,
    "string": descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
    "int64": descriptor_pb2.FieldDescriptorProto.TYPE_INT64,
    "uint64": descriptor_pb2.FieldDescriptorProto.TYPE_UINT64,
    "uint32": descriptor_pb2.FieldDescriptorProto.TYPE_UINT32,
    "bool": descriptor_pb2.FieldDescriptorProto.TYPE_BOOL,
}


def build_messages(package, messages):
    """Message classes from a compact description; returns {name: class}.

    messages maps a message name to its fields, each (name, number, type) or
    (name, number, type, "repeated"); type is a scalar name from _SCALAR_TYPES
    or the name of another message in the same description.
    """
    f = descriptor_pb2.FileDescriptorProto(name="itest_%s.proto" % package, package=package,
                                           syntax="proto3")
    for msg_name, fields in messages.items():
        m = f.message_type.add(name=msg_name)
        for spec in fields:
            fname, number, ftype = spec[:3]
            repeated = len(spec) > 3 and spec[3] == "repeated"
            field = m.field.add(name=fname, number=number, json_name=fname)
            field.label = (descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED if repeated
                           else descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
            if ftype in _SCALAR_TYPES:
                field.type = _SCALAR_TYPES[ftype]
            else:
                assert ftype in messages, "unknown type %s" % ftype
                field.type = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE
                field.type_name = ".%s.%s" % (package, ftype)
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(f.SerializeToString())
    if hasattr(message_factory, "GetMessageClass"):
        make = message_factory.GetMessageClass
    else:
        make = message_factory.MessageFactory(pool).GetPrototype
    return {name: make(pool.FindMessageTypeByName("%s.%s" % (package, name)))
            for name in messages}


# Shared by every description that returns a header or a key-value.
HEADER_FIELDS = [("cluster_id", 1, "uint64"), ("member_id", 2, "uint64"),
                 ("revision", 3, "int64"), ("raft_term", 4, "uint64")]
KEY_VALUE_FIELDS = [("key", 1, "bytes"), ("create_revision", 2, "int64"),
                    ("mod_revision", 3, "int64"), ("version", 4, "int64"),
                    ("value", 5, "bytes"), ("lease", 6, "int64")]

_MEMBERSHIP = build_messages("itest_cluster", {
    "ResponseHeader": HEADER_FIELDS,
    "Member": [("ID", 1, "uint64"), ("name", 2, "string"),
               ("peerURLs", 3, "string", "repeated"), ("clientURLs", 4, "string", "repeated"),
               ("isLearner", 5, "bool")],
    "MemberAddRequest": [("peerURLs", 1, "string", "repeated"), ("isLearner", 2, "bool")],
    "MemberAddResponse": [("header", 1, "ResponseHeader"), ("member", 2, "Member"),
                          ("members", 3, "Member", "repeated")],
    "MemberRemoveRequest": [("ID", 1, "uint64")],
    "MemberUpdateRequest": [("ID", 1, "uint64"), ("peerURLs", 2, "string", "repeated")],
    "MemberListRequest": [],
    "MemberPromoteRequest": [("ID", 1, "uint64")],
    # Remove, update, list and promote all answer a header and the members.
    "MembersResponse": [("header", 1, "ResponseHeader"), ("members", 2, "Member", "repeated")],
})


def unary(channel, method, request, response_class, timeout_s=RPC_TIMEOUT_S):
    """One unary call by full method name ("/pkg.Service/Method")."""
    call = channel.unary_unary(method, request_serializer=lambda m: m.SerializeToString(),
                               response_deserializer=response_class.FromString)
    return call(request, timeout=timeout_s)


def member_add(channel, peer_urls, is_learner=False, timeout_s=RPC_TIMEOUT_S):
    m = _MEMBERSHIP
    return unary(channel, "/etcdserverpb.Cluster/MemberAdd",
                 m["MemberAddRequest"](peerURLs=list(peer_urls), isLearner=is_learner),
                 m["MemberAddResponse"], timeout_s)


def member_remove(channel, member_id, timeout_s=RPC_TIMEOUT_S):
    m = _MEMBERSHIP
    return unary(channel, "/etcdserverpb.Cluster/MemberRemove",
                 m["MemberRemoveRequest"](ID=member_id), m["MembersResponse"], timeout_s)


def member_update(channel, member_id, peer_urls, timeout_s=RPC_TIMEOUT_S):
    m = _MEMBERSHIP
    return unary(channel, "/etcdserverpb.Cluster/MemberUpdate",
                 m["MemberUpdateRequest"](ID=member_id, peerURLs=list(peer_urls)),
                 m["MembersResponse"], timeout_s)


def member_list(channel, timeout_s=RPC_TIMEOUT_S):
    m = _MEMBERSHIP
    return unary(channel, "/etcdserverpb.Cluster/MemberList", m["MemberListRequest"](),
                 m["MembersResponse"], timeout_s)


def member_promote(channel, member_id, timeout_s=RPC_TIMEOUT_S):
    m = _MEMBERSHIP
    return unary(channel, "/etcdserverpb.Cluster/MemberPromote",
                 m["MemberPromoteRequest"](ID=member_id), m["MembersResponse"], timeout_s)


# Refusals of a membership change that are made before anything is proposed
# (the server waits until members have been connected for a while, and keeps
# quorum safe): retrying them cannot apply a change twice.
RECONFIG_NOT_YET = ("etcdserver: unhealthy cluster",
                    "etcdserver: re-configuration failed due to not enough started members")


def _free_ports(count):
    """Distinct loopback ports that were free a moment ago.

    All sockets stay bound until every port is chosen so that no two are equal.
    """
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class Member:
    """One member's ports, paths and (when running) its process."""

    def __init__(self, index, workdir, client_port, peer_port, metrics_port):
        self.index = index
        self.name = "n%d" % (index + 1)
        self.client_port = client_port
        self.peer_port = peer_port
        self.metrics_port = metrics_port
        self.data_dir = os.path.join(workdir, self.name)
        self.log_path = os.path.join(workdir, self.name + ".log")
        self.proc = None
        # A member added to a running cluster joins it: --initial-cluster-state
        # existing and the membership as the cluster stated it when adding it.
        self.initial_state = "new"
        self.initial_cluster = None
        # Removed from the cluster's membership (until added again).
        self.removed = False
        # Flags for this member only, after the cluster's.
        self.extra_flags = []

    @property
    def client_url(self):
        return "http://127.0.0.1:%d" % self.client_port

    @property
    def peer_url(self):
        return "http://127.0.0.1:%d" % self.peer_port

    @property
    def metrics_url(self):
        return "http://127.0.0.1:%d" % self.metrics_port

    def running(self):
        """Started, not stopped by the test, and not exited on its own."""
        return self.proc is not None and self.proc.poll() is None


class Cluster:
    """The members of one cluster, their processes, clients and work directory."""

    def __init__(self, binary, size, workdir, extra_flags=()):
        self.binary = binary
        self.size = size
        self.workdir = workdir
        self.extra_flags = list(extra_flags)
        ports = _free_ports(3 * size)
        self.members = [Member(i, workdir, ports[3 * i], ports[3 * i + 1], ports[3 * i + 2])
                        for i in range(size)]
        self._clients = {}
        self._member_ids = {}
        os.makedirs(workdir, exist_ok=True)

    # ---- processes -------------------------------------------------------

    def _command(self, m):
        initial_cluster = m.initial_cluster or ",".join(
            "%s=%s" % (o.name, o.peer_url) for o in self.members)
        cmd = [self.binary]
        if not is_etcd(self.binary):
            cmd.append("serve")
        cmd += [
            "--name", m.name,
            "--data-dir", m.data_dir,
            "--listen-client-urls", m.client_url,
            "--advertise-client-urls", m.client_url,
            "--listen-peer-urls", m.peer_url,
            "--initial-advertise-peer-urls", m.peer_url,
            "--initial-cluster", initial_cluster,
            "--initial-cluster-state", m.initial_state,
            "--initial-cluster-token", "itest",
            "--listen-metrics-urls", m.metrics_url,
            "--heartbeat-interval", str(HEARTBEAT_INTERVAL_MS),
            "--election-timeout", str(ELECTION_TIMEOUT_MS),
        ]
        return cmd + self.extra_flags + m.extra_flags

    def _spawn(self, i):
        m = self.members[i]
        assert m.proc is None, "%s was started and not stopped" % m.name
        assert not m.removed, "%s was removed from the cluster" % m.name
        with open(m.log_path, "ab") as log:
            log.write(("=== start: %s\n" % " ".join(self._command(m))).encode())
            log.flush()
            m.proc = subprocess.Popen(dies_with_parent(self._command(m)), stdout=log,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def start(self):
        """Starts every member and waits until all report healthy."""
        for i in range(self.size):
            self._spawn(i)
        try:
            self.wait_healthy()
        except Exception:
            self.print_logs()
            raise

    def _take_process(self, i):
        """Detaches member i's process for stopping; None if it was not started.

        A member that already exited on its own is a failure the test must
        see, not something a stop should hide.
        """
        self._drop_client(i)
        m = self.members[i]
        proc, m.proc = m.proc, None
        if proc is not None and proc.poll() is not None:
            raise AssertionError("%s had already exited with status %s"
                                 % (m.name, proc.returncode))
        return proc

    def stop(self, i, timeout_s=STOP_TIMEOUT_S):
        """SIGTERM, then waits (bounded) for the exit; SIGKILL if it hangs."""
        proc = self._take_process(i)
        if proc is None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout_s)
            raise AssertionError("%s did not exit within %ss of SIGTERM"
                                 % (self.members[i].name, timeout_s))
        # A clean exit is 0 (Conclave) or the re-raised SIGTERM (etcd); a
        # crash on the way out (SIGABRT from a double free, SIGSEGV) is a bug
        # that the shutdown must not hide.
        if proc.returncode not in (0, -signal.SIGTERM):
            raise AssertionError("%s exited with status %s after SIGTERM"
                                 % (self.members[i].name, proc.returncode))

    def kill(self, i):
        """SIGKILL: no chance to flush or say goodbye."""
        proc = self._take_process(i)
        if proc is None:
            return
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT_S)

    def restart(self, i, wait=True):
        """Starts a stopped member again on the same ports and data dir."""
        if self.members[i].proc is not None:
            self.stop(i)
        self._spawn(i)
        if wait:
            self.wait_healthy()

    def running_indexes(self):
        """Members that the test started and has not stopped or killed."""
        return [m.index for m in self.members if m.proc is not None]

    def check_alive(self):
        """Fails if a member that should be up has exited on its own."""
        for m in self.members:
            if m.proc is not None and m.proc.poll() is not None:
                raise AssertionError("%s exited unexpectedly with status %s"
                                     % (m.name, m.proc.returncode))

    def close(self):
        """Kills every member and removes the work directory."""
        for i in list(self._clients):
            self._drop_client(i)
        for m in self.members:
            proc, m.proc = m.proc, None
            if proc is not None and proc.poll() is None:
                proc.kill()
                try:
                    proc.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    pass
        if os.environ.get("CONCLAVE_KEEP_TEST_DIRS"):
            sys.stderr.write("keeping %s\n" % self.workdir)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # ---- addresses and clients ------------------------------------------

    @property
    def endpoints(self):
        return ["127.0.0.1:%d" % m.client_port for m in self.members]

    def client(self, i):
        """A python etcd3 client bound to member i only (cached until stop/kill)."""
        if i not in self._clients:
            self._clients[i] = etcd3.client(host="127.0.0.1", port=self.members[i].client_port,
                                            timeout=RPC_TIMEOUT_S)
        return self._clients[i]

    def _drop_client(self, i):
        c = self._clients.pop(i, None)
        if c is not None:
            c.close()

    # ---- health and leadership -------------------------------------------

    def health(self, i):
        """(HTTP status, parsed JSON) of member i's /health, or raises."""
        conn = http.client.HTTPConnection("127.0.0.1", self.members[i].metrics_port, timeout=2)
        try:
            conn.request("GET", "/health")
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read().decode())
        finally:
            conn.close()

    def _healthy(self, i):
        status, body = self.health(i)
        return status == 200 and body.get("health") == "true"

    def wait_healthy(self, timeout_s=START_TIMEOUT_S):
        """Waits until every running member's /health says true."""
        def all_healthy():
            self.check_alive()
            return all(self._healthy(i) for i in self.running_indexes())
        wait_until(all_healthy, timeout_s, interval_s=0.1, what="all members healthy")

    def status(self, i):
        """Member i's raw Maintenance.Status response."""
        return self.client(i).maintenancestub.Status(etcdrpc.StatusRequest(),
                                                      RPC_TIMEOUT_S)

    def member_id(self, i):
        """Member i's own id (from the header of its Status response)."""
        if i not in self._member_ids:
            self._member_ids[i] = self.status(i).header.member_id
        return self._member_ids[i]

    def leader_index(self, timeout_s=15, exclude=()):
        """Index of the leader, once every running member names the same one.

        Asks each running member's Status for the leader's id (Status only:
        a learner answers it but refuses MemberList) and compares it with each
        running member's own id. Members in `exclude` (say, a leader just
        stopped) are neither asked nor accepted.
        """
        def find():
            running = [i for i in self.running_indexes() if i not in exclude]
            ids = {self.member_id(i): i for i in running}
            named = set()
            for i in running:
                named.add(self.status(i).leader or None)
            if len(named) == 1:
                leader = ids.get(named.pop())
                if leader is not None:
                    return (leader,)  # a tuple, so that index 0 counts as found
            return None
        return wait_until(find, timeout_s, interval_s=0.1, what="one agreed leader")[0]

    # ---- membership changes -------------------------------------------------

    def channel(self, i):
        """The gRPC channel of member i's cached client."""
        return self.client(i).channel

    def new_member(self):
        """Index of a new member with fresh ports; not in the cluster, not started.

        It counts in `size` and `members` from now on, like the initial ones.
        """
        client_port, peer_port, metrics_port = _free_ports(3)
        m = Member(len(self.members), self.workdir, client_port, peer_port, metrics_port)
        self.members.append(m)
        self.size = len(self.members)
        return m.index

    def member_list(self, via, timeout_s=RPC_TIMEOUT_S):
        """Members as member `via` lists them (hand-built messages: with isLearner)."""
        return list(member_list(self.channel(via), timeout_s).members)

    def _reconfigure(self, via, change, applied, timeout_s, what):
        """Runs change() through member `via` until the cluster takes it.

        Refusals in RECONFIG_NOT_YET are retried. Once an attempt has failed
        without a definite answer (a timeout, say), that change may have been
        applied after all, so from then on every failure asks applied() (a
        check against MemberList), and its non-None answer is returned. Any
        other error is raised.
        """
        deadline = time.monotonic() + timeout_s
        ambiguous = False
        while True:
            try:
                return change()
            except grpc.RpcError as e:
                if e.details() not in RECONFIG_NOT_YET:
                    definite = e.code() not in (grpc.StatusCode.DEADLINE_EXCEEDED,
                                                grpc.StatusCode.UNAVAILABLE,
                                                grpc.StatusCode.UNKNOWN)
                    ambiguous = ambiguous or not definite
                    if ambiguous:
                        try:
                            done = applied()
                        except grpc.RpcError:
                            done = None
                        if done is not None:
                            return done
                    if definite:
                        raise
                if time.monotonic() >= deadline:
                    e.add_note("gave up retrying %s after %.1fs" % (what, timeout_s))
                    raise
            time.sleep(0.2)

    def add_member(self, via, index=None, is_learner=False, timeout_s=30):
        """MemberAdd through member `via`; returns (index, new member id).

        index is a member that was removed earlier (to add it again, same name
        and URLs), or None for a new one. The member is not started; its
        command line is set up to join the cluster, with --initial-cluster
        built from the membership that MemberAdd answered (names from this
        Cluster's records, since members that never started have none).
        """
        if index is None:
            index = self.new_member()
        m = self.members[index]
        assert m.proc is None, "%s is running" % m.name

        def find_added():
            for got in self.member_list(via):
                if m.peer_url in got.peerURLs:
                    return got.ID, self.member_list(via)
            return None

        resp = self._reconfigure(
            via, lambda: member_add(self.channel(via), [m.peer_url], is_learner),
            find_added, timeout_s, "MemberAdd of %s" % m.name)
        if isinstance(resp, tuple):
            new_id, members = resp
        else:
            new_id, members = resp.member.ID, resp.members
        names = {o.peer_url: o.name for o in self.members}
        parts = []
        for got in members:
            for url in got.peerURLs:
                parts.append("%s=%s" % (m.name if got.ID == new_id
                                        else names.get(url, got.name), url))
        m.initial_cluster = ",".join(parts)
        m.initial_state = "existing"
        m.removed = False
        self._member_ids[index] = new_id
        return index, new_id

    def start_member(self, i, timeout_s=START_TIMEOUT_S):
        """Starts member i (say, one just added) and waits until it serves.

        That is: every member is healthy and member i answers Status (which a
        learner answers too). A joining member can report healthy before it
        takes client requests, while its own attributes are not yet committed.
        """
        self._spawn(i)
        try:
            self.wait_healthy(timeout_s)

            def serves():
                self.check_alive()
                return self.client(i).maintenancestub.Status(etcdrpc.StatusRequest(), 2)
            wait_until(serves, timeout_s, interval_s=0.1,
                       what="%s to serve" % self.members[i].name)
        except Exception:
            self.print_logs()
            raise

    def remove_member(self, via, i, timeout_s=30):
        """MemberRemove of member i through member `via`; returns the response.

        Member i is only marked removed: its process, if running, is left to
        the caller (see wait_removed_exit).
        """
        member_id = self.member_id(i)

        def gone():
            ids = [got.ID for got in self.member_list(via)]
            return None if member_id in ids else ids
        resp = self._reconfigure(via, lambda: member_remove(self.channel(via), member_id),
                                 gone, timeout_s, "MemberRemove of %s" % self.members[i].name)
        self.members[i].removed = True
        return resp

    def wait_removed_exit(self, i, timeout_s=STOP_TIMEOUT_S):
        """Waits (bounded) for a removed member's process to end on its own.

        Returns its exit status, or None when it was still running at the
        deadline (it is killed then). Either way the member no longer counts
        as running.
        """
        self._drop_client(i)
        m = self.members[i]
        proc, m.proc = m.proc, None
        if proc is None:
            return None
        try:
            return proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT_S)
            return None

    def set_peer_port(self, i, port):
        """Moves a stopped member to another peer port (its next start uses it)."""
        assert self.members[i].proc is None, "%s is running" % self.members[i].name
        self.members[i].peer_port = port

    def wipe(self, i):
        """Deletes a stopped member's data directory."""
        assert self.members[i].proc is None, "%s is running" % self.members[i].name
        shutil.rmtree(self.members[i].data_dir, ignore_errors=True)

    def forget_member_id(self, i):
        self._member_ids.pop(i, None)

    def hash_kv(self, i, revision, timeout_s=RPC_TIMEOUT_S):
        """Member i's Maintenance.HashKV at revision: (hash, compact revision)."""
        resp = self.client(i).maintenancestub.HashKV(etcdrpc.HashKVRequest(revision=revision),
                                                     timeout_s)
        return resp.hash, resp.compact_revision

    # ---- etcdctl -----------------------------------------------------------

    def etcdctl_result(self, i, *args, input=None, timeout_s=ETCDCTL_TIMEOUT_S):
        """Runs etcdctl against member i only; returns the CompletedProcess."""
        cmd = ["etcdctl", "--endpoints=" + self.members[i].client_url,
               "--command-timeout=5s"] + list(args)
        env = dict(os.environ, ETCDCTL_API="3")
        return subprocess.run(cmd, input=input, capture_output=True, text=True,
                              timeout=timeout_s, env=env)

    def etcdctl(self, i, *args, input=None, timeout_s=ETCDCTL_TIMEOUT_S):
        """Runs etcdctl against member i only; returns stdout.

        Raises AssertionError carrying stderr when etcdctl exits non-zero.
        """
        res = self.etcdctl_result(i, *args, input=input, timeout_s=timeout_s)
        if res.returncode != 0:
            raise AssertionError("etcdctl %s failed (%d): %s" % (" ".join(args), res.returncode,
                                                                 res.stderr.strip()))
        return res.stdout

    # ---- diagnostics -------------------------------------------------------

    def print_logs(self, lines=LOG_TAIL_LINES):
        for m in self.members:
            sys.stderr.write("\n----- tail of %s (%s) -----\n" % (m.log_path,
                             "running" if m.running() else "not running"))
            try:
                with open(m.log_path, "rb") as f:
                    tail = f.read().decode(errors="replace").splitlines()[-lines:]
                sys.stderr.write("\n".join(tail) + "\n")
            except OSError as e:
                sys.stderr.write("(no log: %s)\n" % e)


class ClusterTestCase(unittest.TestCase):
    """Base class: one cluster per test class, logs printed when a test fails.

    Subclasses set CLUSTER_SIZE and optionally EXTRA_FLAGS. With
    CLUSTER_PER_TEST every test gets a cluster of its own instead (for tests
    that change the membership), started in setUp and closed after the logs
    of a failure are printed.
    """

    CLUSTER_SIZE = 3
    EXTRA_FLAGS = ()
    CLUSTER_PER_TEST = False
    cluster = None

    @classmethod
    def setUpClass(cls):
        cls.binary = binary_from_env()
        if not cls.CLUSTER_PER_TEST:
            cls.cluster = make_cluster(cls.binary, cls.CLUSTER_SIZE, cls.__name__,
                                       cls.EXTRA_FLAGS)

    @classmethod
    def tearDownClass(cls):
        if cls.cluster is not None:
            cls.cluster.close()
            cls.cluster = None

    def setUp(self):
        # Subclasses with CLUSTER_PER_TEST that define setUp call this first.
        if self.CLUSTER_PER_TEST:
            self.cluster = make_cluster(self.binary, self.CLUSTER_SIZE, self._testMethodName,
                                        self.EXTRA_FLAGS)

    def run(self, result=None):
        # unittest gives no hook that sees the outcome, so compare the
        # failure counts around the test: the cluster is still up here.
        try:
            if result is None:
                return super().run(result)
            before = len(result.failures) + len(result.errors)
            out = super().run(result)
            if len(result.failures) + len(result.errors) > before and self.cluster is not None:
                self.cluster.print_logs()
            return out
        finally:
            if self.CLUSTER_PER_TEST and "cluster" in self.__dict__:
                self.__dict__.pop("cluster").close()


def make_cluster(binary, size, tag, extra_flags=()):
    """A started cluster; on start-up failure its logs are printed and it is closed."""
    c = Cluster(binary, size, new_workdir(tag), extra_flags)
    try:
        c.start()
    except BaseException:
        c.close()
        raise
    return c


class WatchStream:
    """One raw Watch stream to one member, read with deadlines.

    python etcd3 hides the created/canceled responses and reconnects on its
    own; the scenarios that count events need to see exactly what one stream
    delivered. A reader thread moves responses (or the stream's final error)
    into a queue; the test thread reads that queue with timeouts.
    """

    def __init__(self, member):
        self.channel = grpc.insecure_channel("127.0.0.1:%d" % member.client_port)
        self._requests = queue.Queue()
        self._responses = queue.Queue()
        self._call = etcdrpc.WatchStub(self.channel).Watch(self._request_iter())
        self._reader = threading.Thread(target=self._read, daemon=True,
                                        name="watch-%s" % member.name)
        self._reader.start()
        self.pending_events = []

    def _request_iter(self):
        while True:
            req = self._requests.get()
            if req is None:
                return
            yield req

    def _read(self):
        try:
            for resp in self._call:
                self._responses.put(resp)
        except grpc.RpcError as e:
            self._responses.put(e)

    def next_response(self, timeout_s):
        """The next WatchResponse; raises the stream's error or TimeoutError."""
        try:
            item = self._responses.get(timeout=timeout_s)
        except queue.Empty:
            raise TimeoutError("no watch response within %.1fs" % timeout_s) from None
        if isinstance(item, Exception):
            raise item
        return item

    def create(self, key, range_end=None, start_revision=0, prev_kv=False,
               timeout_s=RPC_TIMEOUT_S):
        """Creates a watch and returns its id, once the member confirms it."""
        req = etcdrpc.WatchCreateRequest(key=etcd3.utils.to_bytes(key),
                                         start_revision=start_revision, prev_kv=prev_kv)
        if range_end is not None:
            req.range_end = etcd3.utils.to_bytes(range_end)
        self._requests.put(etcdrpc.WatchRequest(create_request=req))
        deadline = time.monotonic() + timeout_s
        while True:
            resp = self.next_response(max(0.0, deadline - time.monotonic()))
            if resp.created:
                if resp.canceled:
                    raise AssertionError("watch create canceled: %r" % resp.cancel_reason)
                self.pending_events.extend(resp.events)
                return resp.watch_id
            self.pending_events.extend(resp.events)

    def create_prefix(self, prefix, **kwargs):
        prefix = etcd3.utils.to_bytes(prefix)
        return self.create(prefix, range_end=etcd3.utils.increment_last_byte(prefix), **kwargs)

    def cancel(self, watch_id):
        self._requests.put(etcdrpc.WatchRequest(
            cancel_request=etcdrpc.WatchCancelRequest(watch_id=watch_id)))

    def events_until(self, done, timeout_s):
        """Collects events until done(events) is true; returns them all.

        Responses that carry no events (progress, cancel) are ignored; a
        compacted or canceled watch fails the call.
        """
        events, self.pending_events = self.pending_events, []
        deadline = time.monotonic() + timeout_s
        while not done(events):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("watch delivered %d events, condition not met: %r"
                                   % (len(events), [(e.kv.key, e.kv.mod_revision)
                                                    for e in events]))
            resp = self.next_response(remaining)
            if resp.compact_revision:
                raise AssertionError("watch compacted at %d" % resp.compact_revision)
            if resp.canceled:
                raise AssertionError("watch canceled: %r" % resp.cancel_reason)
            events.extend(resp.events)
        return events

    def close(self):
        self._requests.put(None)
        self._call.cancel()
        self.channel.close()
        self._reader.join(timeout=STOP_TIMEOUT_S)
