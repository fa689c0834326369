"""The `conclave` client commands against a 3-member cluster.

Runs every client command of the CLI (put, get, del, txn, watch, lease, lock,
elect, member, endpoint, snapshot, compaction, defrag, alarm, move-leader)
and checks its output, in etcdctl 3.4's formats, and its exit code. The
server is CONCLAVE_BIN as for every suite (etcd 3.4 checks the suite); the
CLI is CONCLAVE_CLI, or CONCLAVE_BIN when that is a conclave binary.

Every process started here has a timeout; long-running commands (watch,
lock, elect, keep-alive) are read line by line with deadlines and stopped
with SIGINT.
"""

import base64
import json
import os
import queue
import signal
import subprocess
import tempfile
import threading
import time
import unittest

from cluster import ClusterTestCase, binary_from_env, is_etcd, wait_until

CLI_TIMEOUT_S = 30
LINE_TIMEOUT_S = 15

# etcdctl's (and the CLI's) exit codes.
EXIT_ERROR = 1
EXIT_BAD_CONNECTION = 2
EXIT_INVALID_INPUT = 3
EXIT_INTERRUPTED = 5
EXIT_BAD_ARGS = 128


def cli_from_env():
    cli = os.environ.get("CONCLAVE_CLI")
    if cli:
        return cli
    server = binary_from_env()
    if not is_etcd(server):
        return server
    raise unittest.SkipTest("set CONCLAVE_CLI to the conclave binary")


class Background:
    """A long-running CLI command whose stdout is read line by line."""

    def __init__(self, cmd, stdin=None):
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=stdin or subprocess.DEVNULL, text=True)
        self._lines = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def line(self, timeout_s=LINE_TIMEOUT_S):
        try:
            line = self._lines.get(timeout=timeout_s)
        except queue.Empty:
            raise AssertionError("no output line within %.1fs" % timeout_s) from None
        if line is None:
            raise AssertionError("command ended (status %s): %s"
                                 % (self.proc.wait(timeout=5), self.proc.stderr.read()))
        return line

    def lines(self, n, timeout_s=LINE_TIMEOUT_S):
        return [self.line(timeout_s) for _ in range(n)]

    def no_line(self, wait_s):
        """Asserts that nothing is printed for wait_s seconds."""
        try:
            line = self._lines.get(timeout=wait_s)
        except queue.Empty:
            return
        raise AssertionError("unexpected output: %r" % line)

    def interrupt(self, timeout_s=CLI_TIMEOUT_S):
        """SIGINT, then the exit status (killed if it does not exit in time)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
            raise AssertionError("command did not exit within %ss of SIGINT" % timeout_s)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self.proc.stdout.close()
        self.proc.stderr.close()


class ConclaveCliTest(ClusterTestCase):
    CLUSTER_SIZE = 3

    @classmethod
    def setUpClass(cls):
        cls.cli_binary = cli_from_env()
        super().setUpClass()

    def setUp(self):
        self.background = []
        self.tmp = tempfile.mkdtemp(prefix="conclave-cli-test-", dir="/tmp")

    def tearDown(self):
        for b in self.background:
            b.close()
        for name in os.listdir(self.tmp):
            os.remove(os.path.join(self.tmp, name))
        os.rmdir(self.tmp)

    # ---- helpers -----------------------------------------------------------

    def command(self, *args, endpoints=None):
        eps = endpoints if endpoints is not None else ",".join(self.cluster.endpoints)
        return [self.cli_binary, "--endpoints=" + eps] + list(args)

    def run_cli(self, *args, input=None, endpoints=None, timeout_s=CLI_TIMEOUT_S):
        return subprocess.run(self.command(*args, endpoints=endpoints), input=input,
                              capture_output=True, text=True, timeout=timeout_s)

    def ok(self, *args, **kwargs):
        """Runs the CLI, expects exit 0, returns stdout."""
        res = self.run_cli(*args, **kwargs)
        self.assertEqual(res.returncode, 0, "conclave %s: %s" % (" ".join(args), res.stderr))
        return res.stdout

    def fails(self, code, *args, **kwargs):
        """Runs the CLI, expects exit `code`, returns stderr."""
        res = self.run_cli(*args, **kwargs)
        self.assertEqual(res.returncode, code, "conclave %s: out=%r err=%r"
                         % (" ".join(args), res.stdout, res.stderr))
        self.assertTrue(res.stderr.startswith("Error: "), res.stderr)
        return res.stderr

    def start(self, *args, endpoints=None):
        b = Background(self.command(*args, endpoints=endpoints))
        self.background.append(b)
        return b

    def revision(self):
        out = json.loads(self.ok("get", "any-key", "-w", "json"))
        return out["header"]["revision"]

    def member_ids(self):
        """{member name: id} from member list -w json."""
        out = json.loads(self.ok("member", "list", "-w", "json"))
        return {m.get("name", ""): m["ID"] for m in out["members"]}

    # ---- KV ------------------------------------------------------------------

    def test_put_get_del(self):
        self.assertEqual(self.ok("put", "kv/a", "1"), "OK\n")
        self.assertEqual(self.ok("put", "kv/b", "2"), "OK\n")
        self.assertEqual(self.ok("put", "kv/c", "three words"), "OK\n")
        self.assertEqual(self.ok("put", "kv/a", "1b", "--prev-kv"), "OK\nkv/a\n1\n")
        self.assertEqual(self.ok("put", "kv/stdin", input="from stdin"), "OK\n")
        self.assertEqual(self.ok("get", "kv/stdin"), "kv/stdin\nfrom stdin\n")

        self.assertEqual(self.ok("get", "kv/a"), "kv/a\n1b\n")
        self.assertEqual(self.ok("get", "kv/missing"), "")
        self.assertEqual(self.ok("get", "kv/", "--prefix"),
                         "kv/a\n1b\nkv/b\n2\nkv/c\nthree words\nkv/stdin\nfrom stdin\n")
        self.assertEqual(self.ok("get", "kv/a", "kv/c"), "kv/a\n1b\nkv/b\n2\n")
        self.assertEqual(self.ok("get", "kv/", "--prefix", "--print-value-only"),
                         "1b\n2\nthree words\nfrom stdin\n")
        self.assertEqual(self.ok("get", "kv/", "--prefix", "--keys-only"),
                         "kv/a\n\nkv/b\n\nkv/c\n\nkv/stdin\n\n")
        self.assertEqual(self.ok("get", "kv/", "--prefix", "--limit", "1"), "kv/a\n1b\n")
        self.assertEqual(self.ok("get", "kv/", "--prefix", "--sort-by", "KEY", "--order",
                                 "DESCEND", "--limit", "2"),
                         "kv/stdin\nfrom stdin\nkv/c\nthree words\n")
        self.assertEqual(self.ok("get", "kv/", "--prefix", "--sort-by", "VALUE",
                                 "--print-value-only"),
                         "1b\n2\nfrom stdin\nthree words\n")
        self.assertEqual(self.ok("get", "kv/c", "--from-key", "--keys-only"),
                         "kv/c\n\nkv/stdin\n\n")
        self.assertEqual(self.ok("get", "kv/b", "--consistency", "s"), "kv/b\n2\n")
        self.assertEqual(self.ok("get", "kv/b", "--hex"), "\\x6b\\x76\\x2f\\x62\n\\x32\n")

        # --rev reads the past.
        rev = json.loads(self.ok("get", "kv/a", "-w", "json"))["kvs"][0]["mod_revision"]
        self.ok("put", "kv/a", "newer")
        self.assertEqual(self.ok("get", "kv/a", "--rev", str(rev)), "kv/a\n1b\n")

        self.assertEqual(self.ok("del", "kv/a"), "1\n")
        self.assertEqual(self.ok("del", "kv/a"), "0\n")
        self.assertEqual(self.ok("del", "kv/b", "--prev-kv"), "1\nkv/b\n2\n")
        self.assertEqual(self.ok("del", "kv/", "--prefix"), "2\n")
        self.assertEqual(self.ok("get", "kv/", "--prefix"), "")
        self.ok("put", "kw/x", "1")
        self.ok("put", "kw/y", "2")
        self.assertEqual(self.ok("del", "kw/y", "--from-key"), "1\n")
        self.assertEqual(self.ok("del", "kw/x"), "1\n")

    def test_json_output(self):
        self.ok("put", "json/k", "v")
        out = json.loads(self.ok("get", "json/k", "-w", "json"))
        self.assertEqual(out["count"], 1)
        kv = out["kvs"][0]
        self.assertEqual(kv["key"], "anNvbi9r")  # base64 of json/k
        self.assertEqual(kv["value"], "dg==")
        self.assertIsInstance(out["header"]["revision"], int)
        self.assertIn("cluster_id", out["header"])
        put = json.loads(self.ok("put", "json/k", "w", "-w", "json"))
        self.assertGreater(put["header"]["revision"], kv["mod_revision"])
        deleted = json.loads(self.ok("del", "json/k", "-w", "json"))
        self.assertEqual(deleted["deleted"], 1)

    def test_txn(self):
        self.ok("put", "txn/k1", "v1")
        txn = ('value("txn/k1") = "v1"\n'
               'version("txn/k2") = "0"\n'
               '\n'
               'put txn/k2 "two words"\n'
               'get txn/k1\n'
               '\n'
               'del txn/k1\n'
               '\n')
        self.assertEqual(self.ok("txn", input=txn),
                         "SUCCESS\n\nOK\n\ntxn/k1\nv1\n")
        self.assertEqual(self.ok("get", "txn/k2"), "txn/k2\ntwo words\n")
        # The same compares fail now: txn/k2 exists.
        self.assertEqual(self.ok("txn", input=txn), "FAILURE\n\n1\n")
        self.assertEqual(self.ok("get", "txn/k1"), "")

        interactive = self.ok("txn", "-i", input='mod("txn/k2") > "0"\n\nget txn/k2\n\n\n')
        self.assertIn("compares:", interactive)
        self.assertIn("success requests (get, put, del):", interactive)
        self.assertIn("failure requests (get, put, del):", interactive)
        self.assertIn("SUCCESS\n\ntxn/k2\ntwo words\n", interactive)

        out = json.loads(self.ok("txn", "-w", "json", input='\nget txn/k2\n\n\n'))
        self.assertTrue(out["succeeded"])
        self.assertEqual(len(out["responses"]), 1)

        self.assertIn("malformed comparison",
                      self.fails(EXIT_INVALID_INPUT, "txn", input='nonsense\n\n\n'))
        self.assertIn("invalid txn request",
                      self.fails(EXIT_INVALID_INPUT, "txn", input='\nfrobnicate k\n\n\n'))

    def wait_watching(self, w, key, endpoints=None):
        """The watch `w` is created asynchronously: writes `key` until it
        prints a PUT."""
        def seen():
            self.ok("put", key, "1", endpoints=endpoints)
            try:
                return w.line(timeout_s=1) == "PUT"
            except AssertionError:
                if w.proc.poll() is not None:
                    raise
                return False
        wait_until(seen, LINE_TIMEOUT_S, what="watch to deliver a PUT")

    def test_watch_carries_on_when_its_member_stops(self):
        eps = self.cluster.endpoints
        w = self.start("watch", "failover/k", endpoints=eps[0] + "," + eps[1])
        self.wait_watching(w, "failover/k", endpoints=eps[1])

        def shows(value):
            while True:
                line = w.line()
                if line == value:
                    return
        self.cluster.stop(0)
        try:
            # Written while the first member is down: the watch carries on
            # through the second, from the revision after the last it showed.
            self.ok("put", "failover/k", "while-down", endpoints=eps[1])
            shows("while-down")
        finally:
            self.cluster.restart(0)
        self.ok("put", "failover/k", "after", endpoints=eps[1])
        shows("after")
        self.assertEqual(w.interrupt(), 0)

    def test_watch(self):
        self.ok("put", "watch/old", "0")
        first_rev = self.revision()
        w = self.start("watch", "watch/", "--prefix", "--prev-kv")
        self.wait_watching(w, "watch/a")
        # Possibly several PUT events of watch/a were queued; skip to a marker.
        self.ok("put", "watch/marker", "m")
        while w.line() != "watch/marker":
            pass
        self.assertEqual(w.line(), "m")
        self.ok("del", "watch/marker")
        self.assertEqual(w.lines(5), ["DELETE", "watch/marker", "m", "watch/marker", ""])
        self.assertEqual(w.interrupt(), 0)

        # From a past revision: the history is replayed.
        h = self.start("watch", "watch/old", "--rev", str(first_rev))
        self.assertEqual(h.lines(3), ["PUT", "watch/old", "0"])
        self.assertEqual(h.interrupt(), 0)

        self.assertIn("requires one or two arguments", self.fails(EXIT_BAD_ARGS, "watch"))

    # ---- leases ----------------------------------------------------------------

    def test_lease(self):
        out = self.ok("lease", "grant", "100")
        self.assertRegex(out, r"^lease [0-9a-f]{16} granted with TTL\(100s\)\n$")
        lease = out.split()[1]
        self.ok("put", "lease/k", "v", "--lease=" + lease)
        ttl = self.ok("lease", "timetolive", lease, "--keys")
        self.assertRegex(ttl, r"^lease %s granted with TTL\(100s\), remaining\(\d+s\), "
                              r"attached keys\(\[lease/k\]\)\n$" % lease)
        self.assertRegex(self.ok("lease", "timetolive", lease),
                         r"^lease %s granted with TTL\(100s\), remaining\(\d+s\)\n$" % lease)
        listed = self.ok("lease", "list")
        self.assertRegex(listed, r"^found \d+ leases\n")
        self.assertIn(lease + "\n", listed)
        self.assertEqual(self.ok("lease", "keep-alive", "--once", lease),
                         "lease %s keepalived with TTL(100)\n" % lease)

        k = self.start("lease", "keep-alive", lease)
        self.assertEqual(k.line(), "lease %s keepalived with TTL(100)" % lease)
        self.assertEqual(k.interrupt(), 0)

        self.assertEqual(self.ok("lease", "revoke", lease), "lease %s revoked\n" % lease)
        self.assertEqual(self.ok("get", "lease/k"), "")
        self.assertEqual(self.ok("lease", "timetolive", lease),
                         "lease %s already expired\n" % lease)
        err = self.fails(EXIT_ERROR, "lease", "revoke", lease)
        self.assertIn("etcdserver: requested lease not found", err)
        # A revoked lease: the renewing stream ends at once, as etcdctl's does;
        # --once fails.
        self.assertEqual(self.ok("lease", "keep-alive", lease),
                         "lease %s expired or revoked.\n" % lease)
        self.assertIn("requested lease not found",
                      self.fails(EXIT_ERROR, "lease", "keep-alive", "--once", lease))
        self.assertIn("expecting ID in Hex", self.fails(EXIT_BAD_ARGS, "lease", "revoke", "xyz"))

    # ---- lock and elect ----------------------------------------------------------

    def test_lock_runs_a_command_and_exits_with_its_code(self):
        script = 'echo "key=$ETCD_LOCK_KEY"; exit 7'
        res = self.run_cli("lock", "lock/cmd", "--", "sh", "-c", script)
        self.assertEqual(res.returncode, 7, res.stderr)
        self.assertRegex(res.stdout, r"^key=lock/cmd/[0-9a-f]+\n$")
        # The lock was released: it can be taken again at once.
        res = self.run_cli("lock", "lock/cmd", "--", "true", timeout_s=15)
        self.assertEqual(res.returncode, 0, res.stderr)

    def test_lock_is_exclusive_until_interrupted(self):
        holder = self.start("lock", "lock/x", "--ttl", "10")
        key = holder.line()
        self.assertTrue(key.startswith("lock/x/"), key)
        waiter = self.start("lock", "lock/x")
        waiter.no_line(1.5)
        self.assertEqual(holder.interrupt(), 0)
        second = waiter.line()
        self.assertTrue(second.startswith("lock/x/"), second)
        self.assertNotEqual(second, key)
        # A waiter interrupted before it gets the lock exits 5.
        late = self.start("lock", "lock/x")
        late.no_line(1.0)
        self.assertEqual(late.interrupt(), EXIT_INTERRUPTED)
        self.assertEqual(waiter.interrupt(), 0)
        self.assertEqual(self.ok("get", "lock/x", "--prefix"), "")

    def test_elect(self):
        observer = self.start("elect", "elect/e", "-l")
        leader = self.start("elect", "elect/e", "first")
        key = leader.line()
        self.assertTrue(key.startswith("elect/e/"), key)
        self.assertEqual(leader.line(), "first")
        self.assertEqual(observer.lines(2), [key, "first"])
        second = self.start("elect", "elect/e", "second")
        second.no_line(1.0)
        self.assertEqual(leader.interrupt(), 0)
        key2 = second.line()
        self.assertEqual(second.line(), "second")
        self.assertEqual(observer.lines(2), [key2, "second"])
        self.assertEqual(second.interrupt(), 0)
        self.assertEqual(observer.interrupt(), 0)
        self.assertIn("no proposal argument but -l not set",
                      self.fails(EXIT_BAD_ARGS, "elect", "elect/e"))

    def test_elect_observer_carries_on_when_its_member_stops(self):
        eps = self.cluster.endpoints
        observer = self.start("elect", "elect/f", "-l", endpoints=eps[0] + "," + eps[1])
        leader = self.start("elect", "elect/f", "first", endpoints=eps[1])
        key = leader.line()
        self.assertEqual(observer.lines(2), [key, "first"])
        self.cluster.stop(0)
        try:
            second = self.start("elect", "elect/f", "second", endpoints=eps[1])
            self.assertEqual(leader.interrupt(), 0)
            key2 = second.line()
            self.assertEqual(second.line(), "second")
            # The leader the observation starts with again is not shown twice.
            self.assertEqual(observer.lines(2), [key2, "second"])
            self.assertEqual(second.interrupt(), 0)
        finally:
            self.cluster.restart(0)
        self.assertEqual(observer.interrupt(), 0)

    # ---- cluster ---------------------------------------------------------------

    def test_member_list(self):
        lines = self.ok("member", "list").splitlines()
        self.assertEqual(len(lines), 3)
        names = set()
        for line in lines:
            fields = line.split(", ")
            self.assertEqual(len(fields), 6, line)
            self.assertRegex(fields[0], r"^[0-9a-f]+$")
            self.assertEqual(fields[1], "started")
            self.assertEqual(fields[5], "false")
            names.add(fields[2])
        self.assertEqual(names, {"n1", "n2", "n3"})
        table = self.ok("member", "list", "-w", "table").splitlines()
        self.assertEqual(len(table), 3 + 4)
        self.assertRegex(table[1], r"^\|\s+ID\s+\|\s+STATUS\s+\|\s+NAME\s+\|\s+PEER ADDRS\s+\|"
                                   r"\s+CLIENT ADDRS\s+\|\s+IS LEARNER\s+\|$")
        self.assertEqual(len(json.loads(self.ok("member", "list", "-w", "json"))["members"]), 3)

    def test_member_add_update_promote_remove(self):
        peer = "http://127.0.0.1:1"
        out = self.ok("member", "add", "learner1", "--peer-urls=" + peer, "--learner")
        lines = out.splitlines()
        self.assertRegex(lines[0], r"^Member +[0-9a-f]+ added as learner to cluster +[0-9a-f]+$")
        new_id = lines[0].split()[1]
        self.assertEqual(lines[1], "")
        self.assertEqual(lines[2], 'ETCD_NAME="learner1"')
        self.assertTrue(lines[3].startswith('ETCD_INITIAL_CLUSTER="'), lines[3])
        self.assertIn("learner1=" + peer, lines[3])
        for m in self.cluster.members:
            self.assertIn("%s=%s" % (m.name, m.peer_url), lines[3])
        self.assertEqual(lines[4], 'ETCD_INITIAL_ADVERTISE_PEER_URLS="%s"' % peer)
        self.assertEqual(lines[5], 'ETCD_INITIAL_CLUSTER_STATE="existing"')
        listed = self.ok("member", "list")
        self.assertIn("%s, unstarted, , %s, , true" % (new_id, peer), listed)

        peer2 = "http://127.0.0.1:2"
        self.assertRegex(self.ok("member", "update", new_id, "--peer-urls=" + peer2),
                         r"^Member +%s updated in cluster +[0-9a-f]+\n$" % new_id)
        self.assertIn(peer2, self.ok("member", "list"))
        # A learner that never started is not in sync with the leader.
        err = self.fails(EXIT_ERROR, "member", "promote", new_id)
        self.assertIn("etcdserver: can only promote a learner member", err)
        self.assertRegex(self.ok("member", "remove", new_id),
                         r"^Member +%s removed from cluster +[0-9a-f]+\n$" % new_id)
        self.assertEqual(len(self.ok("member", "list").splitlines()), 3)
        self.assertIn("member not found", self.fails(EXIT_ERROR, "member", "remove", new_id))
        self.assertIn("peer urls not provided", self.fails(EXIT_BAD_ARGS, "member", "add", "x"))

    def test_endpoint_status_and_health(self):
        lines = self.ok("endpoint", "status").splitlines()
        self.assertEqual(len(lines), 3)
        leaders = 0
        for line, ep in zip(lines, self.cluster.endpoints):
            fields = line.split(", ")
            self.assertEqual(fields[0], ep)
            self.assertRegex(fields[3], r"^\d+(\.\d)? [kMG]?B$")
            leaders += fields[4] == "true"
        self.assertEqual(leaders, 1)
        table = self.ok("endpoint", "status", "-w", "table")
        self.assertIn("RAFT APPLIED INDEX", table)
        statuses = json.loads(self.ok("endpoint", "status", "-w", "json"))
        self.assertEqual([s["Endpoint"] for s in statuses], self.cluster.endpoints)
        cluster_wide = self.ok("endpoint", "status", "--cluster").splitlines()
        self.assertEqual(sorted(l.split(", ")[0] for l in cluster_wide),
                         sorted(m.client_url for m in self.cluster.members))

        res = self.run_cli("endpoint", "health")
        self.assertEqual(res.returncode, 0, res.stderr)
        for ep in self.cluster.endpoints:
            self.assertRegex(res.stderr, r"%s is healthy: successfully committed proposal: "
                                         r"took = \d" % ep)
        health = json.loads(self.ok("endpoint", "health", "--cluster", "-w", "json"))
        self.assertEqual(len(health), 3)
        self.assertTrue(all(h["health"] for h in health))

        down = "127.0.0.1:1"
        res = self.run_cli("endpoint", "health", "--dial-timeout=500ms",
                           endpoints=self.cluster.endpoints[0] + "," + down)
        self.assertEqual(res.returncode, EXIT_ERROR)
        self.assertIn("%s is unhealthy: failed to commit proposal" % down, res.stderr)
        self.assertIn("Error: unhealthy cluster", res.stderr)

    def test_endpoint_hashkv(self):
        self.ok("put", "hash/k", "1")
        rev = self.revision()

        def same():
            res = self.run_cli("endpoint", "hashkv", "--cluster", "--rev", str(rev))
            lines = res.stdout.splitlines()
            hashes = {line.split(", ")[1] for line in lines}
            return res.returncode == 0 and len(lines) == 3 and len(hashes) == 1 and lines

        lines = wait_until(same, 15, interval_s=0.5, what="the members' hashes at one revision")
        self.assertEqual(sorted(line.split(", ")[0] for line in lines),
                         sorted(m.client_url for m in self.cluster.members))
        self.assertRegex(lines[0], r"^\S+, \d+$")
        self.assertIn("HASH", self.ok("endpoint", "hashkv", "-w", "table"))
        hashes = json.loads(self.ok("endpoint", "hashkv", "-w", "json"))
        self.assertEqual([h["Endpoint"] for h in hashes], self.cluster.endpoints)
        self.assertTrue(all("hash" in h["HashKV"] for h in hashes))
        down = "127.0.0.1:1"
        res = self.run_cli("endpoint", "hashkv", "--dial-timeout=500ms",
                           endpoints=self.cluster.endpoints[0] + "," + down)
        self.assertEqual(res.returncode, EXIT_ERROR)
        self.assertIn("Failed to get the hash of endpoint %s" % down, res.stderr)

    def test_unknown_commands_and_flags_are_bad_arguments(self):
        self.fails(EXIT_BAD_ARGS, "no-such-command")
        self.fails(EXIT_BAD_ARGS, "get", "k", "--no-such-flag")
        self.assertIn("unknown output format", self.fails(EXIT_BAD_ARGS, "get", "k", "-w", "yaml"))

    def test_endpoints_given_twice_add_up(self):
        eps = self.cluster.endpoints
        res = subprocess.run([self.cli_binary, "--endpoints", eps[0], "--endpoints",
                              ",".join(eps[1:]), "endpoint", "status"],
                             capture_output=True, text=True, timeout=CLI_TIMEOUT_S)
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertEqual([line.split(", ")[0] for line in res.stdout.splitlines()], eps)

    def test_snapshot_save(self):
        path = os.path.join(self.tmp, "snap.db")
        out = self.ok("snapshot", "save", path, endpoints=self.cluster.endpoints[0])
        self.assertEqual(out, "Snapshot saved at %s\n" % path)
        self.assertGreater(os.path.getsize(path), 0)
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)  # the whole keyspace
        self.assertFalse(os.path.exists(path + ".part"))
        self.assertIn("one selected node", self.fails(EXIT_BAD_ARGS, "snapshot", "save", path))

    def test_compaction(self):
        self.ok("put", "compact/k", "1")
        old = self.revision()
        self.ok("put", "compact/k", "2")
        now = self.revision()
        self.assertEqual(self.ok("compaction", str(now), "--physical"),
                         "compacted revision %d\n" % now)
        err = self.fails(EXIT_ERROR, "get", "compact/k", "--rev", str(old))
        self.assertIn("Error: etcdserver: mvcc: required revision has been compacted", err)
        self.assertIn("bad revision", self.fails(EXIT_BAD_ARGS, "compaction", "x"))

    def test_defrag_and_alarms(self):
        out = self.ok("defrag", endpoints=self.cluster.endpoints[1])
        self.assertEqual(out, "Finished defragmenting etcd member[%s]\n"
                         % self.cluster.endpoints[1])
        self.assertEqual(self.ok("alarm", "list"), "")
        self.assertEqual(self.ok("alarm", "disarm"), "")

    def test_move_leader(self):
        leader = self.cluster.leader_index()
        target = (leader + 1) % 3
        leader_id = self.cluster.member_id(leader)
        target_id = self.cluster.member_id(target)
        out = self.ok("move-leader", "%x" % target_id)
        self.assertEqual(out, "Leadership transferred from %x to %x\n" % (leader_id, target_id))
        self.assertEqual(self.cluster.leader_index(), target)
        # Asked of followers only, nobody can transfer.
        followers = ",".join(ep for i, ep in enumerate(self.cluster.endpoints) if i != target)
        self.assertIn("no leader endpoint",
                      self.fails(EXIT_ERROR, "move-leader", "%x" % leader_id,
                                 endpoints=followers))

    # ---- exit codes -----------------------------------------------------------------

    def test_environment_sets_the_global_flags(self):
        """ETCDCTL_* (and CONCLAVE_*) set what the flags would; a shadowed one is an error."""
        self.ok("put", "env/k", "v")
        eps = ",".join(self.cluster.endpoints)

        def run(args, **env):
            return subprocess.run([self.cli_binary] + args, capture_output=True, text=True,
                                  timeout=CLI_TIMEOUT_S, env=dict(os.environ, **env))
        res = run(["get", "env/k"], ETCDCTL_ENDPOINTS=eps)
        self.assertEqual((res.returncode, res.stdout), (0, "env/k\nv\n"), res.stderr)
        res = run(["get", "env/k"], CONCLAVE_ENDPOINTS=eps, ETCDCTL_WRITE_OUT="json")
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertEqual(json.loads(res.stdout)["count"], 1)
        res = run(["get", "env/k"], ETCDCTL_ENDPOINTS=eps, ETCDCTL_HEX="true")
        self.assertEqual(res.stdout, "\\x65\\x6e\\x76\\x2f\\x6b\n\\x76\n", res.stderr)
        # CONCLAVE_ wins over ETCDCTL_.
        res = run(["get", "env/k"], CONCLAVE_ENDPOINTS=eps, ETCDCTL_ENDPOINTS="127.0.0.1:1")
        self.assertEqual(res.returncode, 0, res.stderr)
        # A flag given on the command line and in the environment: refused, as etcdctl does.
        res = run(["--endpoints=" + eps, "get", "env/k"], ETCDCTL_ENDPOINTS=eps)
        self.assertEqual(res.returncode, EXIT_ERROR)
        self.assertIn('conflicting environment variable "ETCDCTL_ENDPOINTS" is shadowed',
                      res.stderr)
        res = run(["get", "env/k"], ETCDCTL_ENDPOINTS=eps, ETCDCTL_WRITE_OUT="bogus")
        self.assertNotEqual(res.returncode, 0)
        self.assertIn("output format", res.stderr)

    def test_exit_codes(self):
        # Nothing listens on port 1.
        err = self.fails(EXIT_BAD_CONNECTION, "get", "k", "--dial-timeout=300ms",
                         endpoints="127.0.0.1:1")
        self.assertIn("cannot connect", err)
        self.fails(EXIT_BAD_ARGS, "get")
        self.fails(EXIT_BAD_ARGS, "get", "k", "--no-such-flag")
        self.fails(EXIT_BAD_ARGS, "get", "k", "-w", "yaml")
        self.fails(EXIT_BAD_ARGS, "put", "k", "v", "--lease", "nothex")
        self.fails(EXIT_BAD_ARGS, "lease")
        self.fails(EXIT_INVALID_INPUT, "get", "k", "--consistency", "x")
        self.fails(EXIT_INVALID_INPUT, "get", "k", "-w", "table")
        self.fails(EXIT_INVALID_INPUT, "txn", input="bad compare\n\n\n")
        # Global flags work before the command too.
        res = subprocess.run([self.cli_binary, "--endpoints=" + self.cluster.endpoints[0],
                              "-w", "json", "get", "nothing"],
                             capture_output=True, text=True, timeout=CLI_TIMEOUT_S)
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertNotIn("kvs", json.loads(res.stdout))

    def test_failover_to_a_live_endpoint(self):
        eps = "127.0.0.1:1," + ",".join(self.cluster.endpoints)
        self.assertEqual(self.ok("put", "failover/k", "v", endpoints=eps), "OK\n")
        self.assertEqual(self.ok("get", "failover/k", endpoints=eps), "failover/k\nv\n")


class NativeKvCliTest(ClusterTestCase):
    """`conclave kv ...` and `conclave range list` on a cluster with 4 native ranges."""
    CLUSTER_SIZE = 3
    EXTRA_FLAGS = ("--initial-range-count", "4")

    @classmethod
    def setUpClass(cls):
        cls.cli_binary = cli_from_env()
        if is_etcd(binary_from_env()):
            raise unittest.SkipTest("the native keyspace is Conclave's own")
        super().setUpClass()

    def run_cli(self, *args):
        return subprocess.run([self.cli_binary, "--endpoints=" + ",".join(self.cluster.endpoints)]
                              + list(args), capture_output=True, text=True,
                              timeout=CLI_TIMEOUT_S)

    def ok(self, *args):
        res = self.run_cli(*args)
        self.assertEqual(res.returncode, 0, "conclave %s: %s" % (" ".join(args), res.stderr))
        return res.stdout

    def test_put_get_scan_delete(self):
        wait_until(lambda: self.run_cli("kv", "put", "nk/a", "1").returncode == 0, 30,
                   what="the ranges' first leaders")
        self.assertTrue(self.ok("kv", "put", "nk/b", "2").startswith("OK range="))
        self.assertEqual(self.ok("kv", "get", "nk/a"), "nk/a\n1\n")
        self.assertEqual(self.ok("kv", "get", "nk/missing"), "")
        # Keys in different ranges (the first byte decides), one page at a time.
        self.ok("kv", "put", "\u00e0far", "3")
        self.assertEqual(self.ok("kv", "scan", "nk/", "\u00ff"),
                         "nk/a\n1\nnk/b\n2\n\u00e0far\n3\n")
        self.assertEqual(self.ok("kv", "scan", "nk/", "--limit", "1"), "nk/a\n1\n")
        entry = json.loads(self.ok("kv", "get", "nk/a", "-w", "json"))
        self.assertTrue(entry["found"])
        table = self.ok("kv", "scan", "nk/", "nk0", "-w", "table")
        self.assertIn("KEY", table)
        self.assertIn("nk/b", table)

        # Conditional writes: a failed condition exits 1 and changes nothing.
        res = self.run_cli("kv", "put", "nk/a", "x", "--if-absent")
        self.assertEqual(res.returncode, EXIT_ERROR)
        self.assertIn("precondition failed", res.stderr)
        self.ok("kv", "put", "nk/a", "1b", "--if-value", "1")
        self.assertEqual(self.ok("kv", "get", "nk/a"), "nk/a\n1b\n")
        res = self.run_cli("kv", "put", "nk/a", "x", "--if-absent", "--if-value", "1b")
        self.assertEqual(res.returncode, EXIT_BAD_ARGS)

        self.assertEqual(self.ok("kv", "del", "nk/a"), "1\n")
        self.assertEqual(self.ok("kv", "del", "nk/a"), "0\n")
        self.assertEqual(self.ok("kv", "del-range", "nk/", "\u00ff"), "2\n")
        self.assertEqual(self.ok("kv", "scan", "nk/", "\u00ff"), "")
        res = self.run_cli("kv", "del-range", "b", "a")
        self.assertEqual(res.returncode, EXIT_ERROR)
        self.assertIn("end key must be after the start key", res.stderr)

        ranges = json.loads(self.ok("range", "list", "-w", "json"))["ranges"]
        self.assertEqual(len(ranges), 5)  # 4 and the meta range
        self.assertIn(2, [int(r["range_id"]) for r in ranges])

    def test_range_split(self):
        wait_until(lambda: self.run_cli("kv", "put", "rs/a", "1").returncode == 0, 30,
                   what="the ranges' first leaders")
        self.ok("kv", "put", "rs/z", "2")
        table = self.ok("range", "split", "rs/m", "-w", "table")
        self.assertIn("GENERATION", table)
        self.assertIn("rs/m", table)
        halves = json.loads(self.ok("range", "split", "rs/t", "-w", "json"))
        self.assertEqual(base64.b64decode(halves["right"]["start"]), b"rs/t")
        self.assertEqual(base64.b64decode(halves["left"]["end"]), b"rs/t")
        self.assertIn("starts there", self.ok("range", "split", "rs/p"))
        self.assertEqual(self.ok("kv", "scan", "rs/", "rs0"), "rs/a\n1\nrs/z\n2\n")
        res = self.run_cli("range", "split", "rs/m")
        self.assertEqual(res.returncode, EXIT_ERROR)
        self.assertIn("already starts range", res.stderr)
        # [rs/p, rs/t) takes [rs/t, ...) in, then [rs/m, rs/p) takes that in.
        merged = json.loads(self.ok("range", "merge", "rs/p", "-w", "json"))["range"]
        self.assertEqual(base64.b64decode(merged["start"]), b"rs/p")
        self.assertNotEqual(base64.b64decode(merged["end"]), b"rs/t")
        self.assertIn("merged into range", self.ok("range", "merge", "rs/m"))
        self.assertIn("rs/m", self.ok("range", "list", "-w", "table"))
        self.assertEqual(self.ok("kv", "scan", "rs/", "rs0"), "rs/a\n1\nrs/z\n2\n")
        res = self.run_cli("range", "merge", "\u00f0")
        self.assertEqual(res.returncode, EXIT_ERROR)
        self.assertIn("last user range", res.stderr)

    def test_range_transfer_leader(self):
        wait_until(lambda: self.run_cli("kv", "put", "tl/a", "1").returncode == 0, 30,
                   what="the ranges' first leaders")
        r = next(x for x in json.loads(self.ok("range", "list", "-w", "json"))["ranges"]
                 if int(x["range_id"]) == 16)
        for p in r["replicas"]:
            node = "%x" % int(p["node_id"])
            self.assertIn("range 16 is led by node %s" % node,
                          self.ok("range", "transfer-leader", "16", node))
            out = json.loads(self.ok("range", "transfer-leader", "16", node, "-w", "json"))
            self.assertEqual(int(out["range"]["leader_node"]), int(p["node_id"]))
        res = self.run_cli("range", "transfer-leader", "16", "zz")
        self.assertEqual(res.returncode, EXIT_BAD_ARGS, res.stderr)
        res = self.run_cli("range", "transfer-leader", "16", "1234")
        self.assertEqual(res.returncode, EXIT_ERROR)
        self.assertIn("is not a member", res.stderr)

    def test_node_list(self):
        # Every member reports within a status interval (3 s) of starting.
        def reported():
            nodes = json.loads(self.ok("node", "list", "-w", "json"))["nodes"]
            return (len(nodes) == 3 and all(n["state"] == "up" for n in nodes)
                    and len({n["ranges"] for n in nodes}) == 1 and nodes)
        nodes = wait_until(reported, 30, interval_s=0.5, what="three members reporting")
        # 4 ranges and the meta range (and any split off since), on every member.
        counts = [int(n["ranges"]) for n in nodes]
        self.assertGreaterEqual(counts[0], 5)
        # Fractions are JSON numbers; a zero is left out, as etcdctl does.
        for n in nodes:
            self.assertIsInstance(n.get("report_age_seconds", 0.0), (int, float))
        self.assertTrue(any(isinstance(n.get("report_age_seconds"), float) for n in nodes))
        # A drain: bad ids refused; with three members and ranges of three
        # replicas, no member can be drained; a cancel is always taken.
        res = self.run_cli("node", "drain", "zz")
        self.assertEqual(res.returncode, EXIT_BAD_ARGS, res.stderr)
        res = self.run_cli("node", "drain", "dead")
        self.assertEqual(res.returncode, 1)
        self.assertIn("is not a member", res.stderr)
        node = "%x" % int(nodes[0]["node_id"])
        res = self.run_cli("node", "drain", node)
        self.assertEqual(res.returncode, 1)
        self.assertIn("add a member first", res.stderr)
        self.assertIn("cancelled", self.ok("node", "drain", "dead", "--cancel"))
        self.assertNotIn("draining", self.ok("node", "list"))
        table = self.ok("node", "list", "-w", "table")
        for column in ("NODE", "STATE", "REPLICAS", "LEADERS", "REPORTED"):
            self.assertIn(column, table)
        self.assertEqual(self.ok("node", "list").count(", up, %d, " % counts[0]), 3)


if __name__ == "__main__":
    unittest.main()
