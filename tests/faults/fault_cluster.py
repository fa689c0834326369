"""Real server processes for the fault harness, each behind its delay proxy.

FaultCluster starts `size` members of an etcd-compatible server (conclave
serve, or etcd 3.4 itself: the harness runs the same faults against both) on
a network from network.py, and gives the nemeses what they act on: kill -9,
SIGSTOP/SIGCONT, restart, wipe and re-join, the delay file of each proxy and
a size-limited tmpfs under one member's data directory.

Each member keeps its name, address and ports for the whole run; a member
removed and added again is a new member (new id, empty data dir) at the same
address. Every wait is bounded.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import etcd3.etcdrpc as etcdrpc
import grpc

import network as network_module

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import cluster as itest  # noqa: E402  (shared helpers of the integration suites)

HEARTBEAT_INTERVAL_MS = 100
ELECTION_TIMEOUT_MS = 1000
RPC_TIMEOUT_S = 3
SNAPSHOT_COUNT = 5000


def python_for_proxy():
    return sys.executable or "/usr/bin/python3"


class FaultMember:
    def __init__(self, index, endpoint, workdir):
        self.index = index
        self.name = "n%d" % (index + 1)
        self.ep = endpoint
        self.data_dir = os.path.join(workdir, self.name, "data")
        self.log_path = os.path.join(workdir, self.name + ".log")
        self.control_path = os.path.join(workdir, self.name + ".delay.json")
        self.proc = None
        self.proxy = None
        self.paused = False
        self.initial_state = "new"
        self.initial_cluster = None
        self.removed = False
        self.mount = None  # tmpfs mounted at data_dir's parent, for disk-full


class FaultCluster:
    def __init__(self, binary, network, workdir, extra_flags=(), disk_full_member=None,
                 disk_mb=512):
        self.binary = binary
        self.is_etcd = itest.is_etcd(binary)
        self.net = network
        self.workdir = workdir
        self.extra_flags = list(extra_flags)
        self.members = [FaultMember(i, ep, workdir) for i, ep in enumerate(network.endpoints)]
        self.size = len(self.members)
        self.lock = threading.RLock()  # nemeses act from one thread; workloads read state
        self._channels = {}
        self.disk_full_member = disk_full_member
        self.disk_mb = disk_mb
        self.disk_note = None
        for m in self.members:
            os.makedirs(os.path.dirname(m.data_dir), exist_ok=True)
            with open(m.control_path, "w") as f:
                json.dump({"delay_ms": 0, "jitter_ms": 0}, f)
        if disk_full_member is not None:
            m = self.members[disk_full_member]
            mount_dir = os.path.dirname(m.data_dir)
            r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%dm" % disk_mb, "tmpfs",
                                mount_dir], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, timeout=20)
            if r.returncode == 0:
                m.mount = mount_dir
                if os.geteuid() == 0:
                    network_module.record_made(network.tag, mounts=mount_dir)
            else:
                self.disk_full_member = None
                self.disk_note = "no tmpfs for disk-full (%s)" % r.stderr.strip()

    # ---- processes -------------------------------------------------------

    def _command(self, m):
        initial_cluster = m.initial_cluster or ",".join(
            "%s=%s" % (o.name, o.ep.peer_url) for o in self.members)
        cmd = [self.binary]
        if not self.is_etcd:
            cmd.append("serve")
        cmd += [
            "--name", m.name,
            "--data-dir", m.data_dir,
            "--listen-client-urls", m.ep.client_url,
            "--advertise-client-urls", m.ep.client_url,
            "--listen-peer-urls", m.ep.member_peer_url,
            "--initial-advertise-peer-urls", m.ep.peer_url,
            "--initial-cluster", initial_cluster,
            "--initial-cluster-state", m.initial_state,
            "--initial-cluster-token", "faults",
            "--listen-metrics-urls", m.ep.metrics_url,
            "--heartbeat-interval", str(HEARTBEAT_INTERVAL_MS),
            "--election-timeout", str(ELECTION_TIMEOUT_MS),
            # Snapshots and log compaction happen within a run, and re-added
            # members catch up from a snapshot.
            "--snapshot-count", str(SNAPSHOT_COUNT),
        ]
        return m.ep.wrap(cmd + self.extra_flags)

    def _start_proxy(self, m):
        cmd = m.ep.wrap([python_for_proxy(), os.path.join(HERE, "delay_proxy.py"), m.ep.host,
                         str(m.ep.peer_port), "127.0.0.1", str(m.ep.member_peer_port),
                         m.control_path])
        with open(m.log_path + ".proxy", "ab") as log:
            m.proxy = subprocess.Popen(itest.dies_with_parent(cmd), stdout=log,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    # The parent-death signal follows the thread that starts a child: every
    # member and proxy is started from the run's main thread.
    def spawn(self, i):
        m = self.members[i]
        with self.lock:
            assert m.proc is None and not m.removed
            with open(m.log_path, "ab") as log:
                log.write(("=== %.3f start: %s\n" % (time.monotonic(), " ".join(self._command(m))))
                          .encode())
                log.flush()
                m.proc = subprocess.Popen(itest.dies_with_parent(self._command(m)), stdout=log,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            m.paused = False

    def start(self, timeout_s=60):
        for m in self.members:
            self._start_proxy(m)
        for i in range(self.size):
            self.spawn(i)
        try:
            self.wait_healthy(timeout_s / 2)
        except TimeoutError:
            # Once seen under heavy load: channels dialled before the members
            # listened kept failing. Fresh ones (nothing else holds them yet).
            with self.lock:
                self._channels = {}
            self.wait_healthy(timeout_s / 2)

    def kill(self, i):
        """SIGKILL (a paused member too); returns False if it was not running."""
        m = self.members[i]
        with self.lock:
            proc, m.proc = m.proc, None
            m.paused = False
            if proc is None:
                return False
            proc.kill()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            return True

    def pause(self, i):
        m = self.members[i]
        with self.lock:
            if m.proc is None or m.paused or m.proc.poll() is not None:
                return False
            m.proc.send_signal(signal.SIGSTOP)
            m.paused = True
            return True

    def resume(self, i):
        m = self.members[i]
        with self.lock:
            if m.proc is None or not m.paused:
                return False
            m.proc.send_signal(signal.SIGCONT)
            m.paused = False
            return True

    def exited(self):
        """Members whose process ended on its own: (index, status)."""
        with self.lock:
            return [(m.index, m.proc.returncode) for m in self.members
                    if m.proc is not None and m.proc.poll() is not None]

    def reap(self, i):
        """Forgets member i's process after it exited on its own."""
        with self.lock:
            self.members[i].proc = None
            self.members[i].paused = False

    def running(self):
        with self.lock:
            return [m.index for m in self.members if m.proc is not None and not m.removed]

    def set_delay(self, i, delay_ms, jitter_ms):
        m = self.members[i]
        tmp = m.control_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"delay_ms": delay_ms, "jitter_ms": jitter_ms}, f)
        os.replace(tmp, m.control_path)

    def close(self):
        with self.lock:
            for ch in self._channels.values():
                ch.close()
            self._channels = {}
            for m in self.members:
                for p in (m.proc, m.proxy):
                    if p is not None and p.poll() is None:
                        if m.paused:
                            p.send_signal(signal.SIGCONT)
                        p.kill()
                        try:
                            p.wait(timeout=10)
                        except subprocess.TimeoutExpired:
                            pass
                m.proc = m.proxy = None
                if m.mount:
                    subprocess.run(["umount", "-l", m.mount], timeout=20)
                    m.mount = None

    # ---- clients ---------------------------------------------------------

    def channel(self, i):
        """Member i's channel, kept for the whole run (never closed while
        workload threads may use it); it redials quickly after a restart."""
        with self.lock:
            ch = self._channels.get(i)
            if ch is None:
                ch = grpc.insecure_channel(self.members[i].ep.client_target, options=[
                    ("grpc.initial_reconnect_backoff_ms", 100),
                    ("grpc.min_reconnect_backoff_ms", 1000),
                    ("grpc.max_reconnect_backoff_ms", 1000),
                    ("grpc.max_receive_message_length", 256 << 20)])
                self._channels[i] = ch
            return ch

    def status(self, i, timeout_s=RPC_TIMEOUT_S):
        stub = etcdrpc.MaintenanceStub(self.channel(i))
        return stub.Status(etcdrpc.StatusRequest(), timeout=timeout_s)

    def leader(self, timeout_s=RPC_TIMEOUT_S):
        """(leader index, term) as the first member that answers states it; None if none do."""
        ids = self.member_ids()
        for i in self.running():
            try:
                st = self.status(i, timeout_s)
            except grpc.RpcError:
                continue
            if st.leader and st.leader in ids:
                return ids[st.leader], st.raftTerm
        return None

    def member_ids(self):
        """{member id: index} for the members that answer Status."""
        out = {}
        for i in self.running():
            try:
                out[self.status(i, 1).header.member_id] = i
            except grpc.RpcError:
                pass
        return out

    def healthy(self, i):
        """A linearizable read through member i succeeds."""
        try:
            etcdrpc.KVStub(self.channel(i)).Range(etcdrpc.RangeRequest(key=b"health"),
                                                  timeout=RPC_TIMEOUT_S)
            return True
        except grpc.RpcError as e:
            self.last_health_error = "n%d: %s %s" % (i + 1, e.code().name, e.details())
            return False

    def wait_healthy(self, timeout_s=60, members=None):
        members = self.running() if members is None else members
        self.last_health_error = None
        try:
            itest.wait_until(lambda: all(self.healthy(i) for i in members), timeout_s,
                             interval_s=0.2, what="members %s healthy" % members)
        except TimeoutError as e:
            raise TimeoutError("%s; last read error: %s" % (e, self.last_health_error)) from None

    # ---- membership ------------------------------------------------------

    def member_list(self, via):
        return itest.member_list(self.channel(via), timeout_s=RPC_TIMEOUT_S).members

    def remove_member(self, via, i):
        """MemberRemove of member i (looked up by its peer URL); True if done."""
        target = self.members[i].ep.peer_url
        for mem in self.member_list(via):
            if target in mem.peerURLs:
                itest.member_remove(self.channel(via), mem.ID, timeout_s=10)
                with self.lock:
                    self.members[i].removed = True
                return True
        with self.lock:
            self.members[i].removed = True
        return True

    def add_member(self, via, i):
        """MemberAdd at member i's address; it then starts with an empty data dir."""
        m = self.members[i]
        resp = itest.member_add(self.channel(via), [m.ep.peer_url], timeout_s=10)
        names = {}
        for mem in resp.members:
            for o in self.members:
                if o.ep.peer_url in mem.peerURLs:
                    names[o.ep.peer_url] = o.name
        m.initial_cluster = ",".join("%s=%s" % (names.get(u, m.name), u)
                                     for mem in resp.members for u in mem.peerURLs)
        m.initial_state = "existing"
        with self.lock:
            m.removed = False

    def wipe(self, i):
        m = self.members[i]
        subprocess.run(["rm", "-rf", m.data_dir], timeout=60)

    def print_logs(self, lines=30, out=sys.stderr):
        for m in self.members:
            try:
                with open(m.log_path, errors="replace") as f:
                    tail = f.readlines()[-lines:]
            except OSError:
                continue
            out.write("---- %s (%s) ----\n%s" % (m.name, m.log_path, "".join(tail)))
