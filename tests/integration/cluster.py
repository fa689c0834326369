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

import ctypes
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


_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def die_with_parent():
    """Runs in the child before exec: SIGKILL it when the test runner dies.

    ctest kills a test that overruns its timeout, and a runner killed by a
    signal runs no teardown; without this its members would outlive it and
    keep their ports.
    """
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


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
        initial_cluster = ",".join("%s=%s" % (o.name, o.peer_url) for o in self.members)
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
            "--initial-cluster-state", "new",
            "--initial-cluster-token", "itest",
            "--listen-metrics-urls", m.metrics_url,
            "--heartbeat-interval", str(HEARTBEAT_INTERVAL_MS),
            "--election-timeout", str(ELECTION_TIMEOUT_MS),
        ]
        return cmd + self.extra_flags

    def _spawn(self, i):
        m = self.members[i]
        assert m.proc is None, "%s was started and not stopped" % m.name
        with open(m.log_path, "ab") as log:
            log.write(("=== start: %s\n" % " ".join(self._command(m))).encode())
            log.flush()
            m.proc = subprocess.Popen(self._command(m), stdout=log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)

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

        Uses client.status() (which also calls MemberList) and compares the
        leader's id with each running member's own id. Members in `exclude`
        (say, a leader just stopped) are neither asked nor accepted.
        """
        def find():
            running = [i for i in self.running_indexes() if i not in exclude]
            ids = {self.member_id(i): i for i in running}
            named = set()
            for i in running:
                st = self.client(i).status()
                named.add(st.leader.id if st.leader is not None else None)
            if len(named) == 1:
                leader = ids.get(named.pop())
                if leader is not None:
                    return (leader,)  # a tuple, so that index 0 counts as found
            return None
        return wait_until(find, timeout_s, interval_s=0.1, what="one agreed leader")[0]

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

    Subclasses set CLUSTER_SIZE and optionally EXTRA_FLAGS.
    """

    CLUSTER_SIZE = 3
    EXTRA_FLAGS = ()
    cluster = None

    @classmethod
    def setUpClass(cls):
        cls.binary = binary_from_env()
        cls.cluster = make_cluster(cls.binary, cls.CLUSTER_SIZE, cls.__name__, cls.EXTRA_FLAGS)

    @classmethod
    def tearDownClass(cls):
        if cls.cluster is not None:
            cls.cluster.close()
            cls.cluster = None

    def run(self, result=None):
        # unittest gives no hook that sees the outcome, so compare the
        # failure counts around the test: the cluster is still up here.
        if result is None:
            return super().run(result)
        before = len(result.failures) + len(result.errors)
        out = super().run(result)
        if len(result.failures) + len(result.errors) > before and self.cluster is not None:
            self.cluster.print_logs()
        return out


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
