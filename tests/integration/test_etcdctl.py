"""etcdctl 3.4 (ETCDCTL_API=3) against a 3-member cluster.

Each test talks to one member through the real etcdctl binary and asserts its
output text exactly where etcd's is deterministic. Tests use their own key
prefixes so they can share one cluster. What etcdctl calls underneath is noted
per test: a server that passes these serves those RPCs as etcd does.

etcdctl 3.4 has no `get --count-only` (3.5 added it); the count is checked
through `-w json` instead, and python's count_only in test_python_etcd3.
"""

import base64
import json
import os
import re
import subprocess
import time
import unittest

import cluster
from cluster import wait_until

LEASE_ID = r"([0-9a-f]{16})"


def b64(s):
    return base64.b64encode(s.encode()).decode()


class EtcdctlTest(cluster.ClusterTestCase):
    CLUSTER_SIZE = 3

    def ctl(self, *args, member=0, **kwargs):
        return self.cluster.etcdctl(member, *args, **kwargs)

    def ctl_fails(self, *args, member=0, input=None):
        """Runs etcdctl expecting failure; returns its stderr's Error: line."""
        res = self.cluster.etcdctl_result(member, *args, input=input)
        self.assertNotEqual(res.returncode, 0, "etcdctl %s succeeded: %r" % (args, res.stdout))
        errors = [line for line in res.stderr.splitlines() if line.startswith("Error:")]
        self.assertTrue(errors, "no Error: line in %r" % res.stderr)
        return errors[-1]

    def revision(self):
        return self.cluster.client(0).put("etcdctl-revision-probe", "x").header.revision

    # ---- put / get ---------------------------------------------------------
    # KV.Put and KV.Range.

    def test_put_and_get(self):
        self.assertEqual(self.ctl("put", "basic/k", "v1"), "OK\n")
        for i in range(self.cluster.size):
            self.assertEqual(self.ctl("get", "basic/k", member=i), "basic/k\nv1\n")
        self.assertEqual(self.ctl("get", "basic/missing"), "")
        self.assertEqual(self.ctl("put", "basic/k", "v2", "--prev-kv"), "OK\nbasic/k\nv1\n")
        self.assertEqual(self.ctl("get", "basic/k", "--consistency=s", member=2), "basic/k\nv2\n")

        doc = json.loads(self.ctl("get", "basic/k", "-w", "json"))
        self.assertEqual(doc["count"], 1)
        kv = doc["kvs"][0]
        self.assertEqual((kv["key"], kv["value"], kv["version"]), (b64("basic/k"), b64("v2"), 2))
        self.assertLess(kv["create_revision"], kv["mod_revision"])
        self.assertGreaterEqual(doc["header"]["revision"], kv["mod_revision"])
        self.assertEqual(doc["header"]["member_id"], self.cluster.member_id(0))
        self.assertGreaterEqual(doc["header"]["raft_term"], 1)
        other = json.loads(self.ctl("get", "basic/k", "-w", "json", member=1))
        self.assertEqual(other["header"]["cluster_id"], doc["header"]["cluster_id"])
        self.assertEqual(other["header"]["member_id"], self.cluster.member_id(1))

        # A missing key: a header, no kvs, and count left out as zero.
        self.assertEqual(set(json.loads(self.ctl("get", "basic/missing", "-w", "json"))),
                         {"header"})
        self.assertEqual(self.ctl_fails("put", "", "x"), "Error: etcdserver: key is not provided")

    def test_get_range_options(self):
        # '~' sorts after every other key the suite writes, so --from-key
        # sees only this test's keys.
        p = "~range/"
        values = {"a": "3", "b": "1", "c": "5", "d": "2", "e": "4"}
        for name in ("c", "a", "e", "b", "d"):  # creation order differs from key order
            self.ctl("put", p + name, values[name])
        self.ctl("put", p + "a", "3")  # a has version 2 and the newest mod revision

        def pairs(*names):
            return "".join("%s%s\n%s\n" % (p, n, values[n]) for n in names)

        self.assertEqual(self.ctl("get", p, "--prefix"), pairs("a", "b", "c", "d", "e"))
        self.assertEqual(self.ctl("get", p + "c", "--from-key"), pairs("c", "d", "e"))
        self.assertEqual(self.ctl("get", p + "b", p + "d"), pairs("b", "c"))
        self.assertEqual(self.ctl("get", p, "--prefix", "--limit", "2"), pairs("a", "b"))
        self.assertEqual(self.ctl("get", p, "--prefix", "--sort-by=value", "--order=descend"),
                         pairs("c", "e", "a", "d", "b"))
        self.assertEqual(self.ctl("get", p, "--prefix", "--sort-by=value", "--order=ascend"),
                         pairs("b", "d", "a", "e", "c"))
        self.assertEqual(self.ctl("get", p, "--prefix", "--sort-by=create", "--order=ascend"),
                         pairs("c", "a", "e", "b", "d"))
        self.assertEqual(self.ctl("get", p, "--prefix", "--sort-by=modify", "--order=descend"),
                         pairs("a", "d", "b", "e", "c"))
        self.assertEqual(self.ctl("get", p, "--prefix", "--sort-by=version", "--order=descend",
                                  "--limit", "1"), pairs("a"))
        self.assertEqual(self.ctl("get", p, "--prefix", "--order=descend"),
                         pairs("e", "d", "c", "b", "a"))
        self.assertEqual(self.ctl("get", p, "--prefix", "--keys-only"),
                         "".join("%s%s\n\n" % (p, n) for n in "abcde"))
        self.assertEqual(self.ctl("get", p, "--prefix", "--print-value-only"),
                         "".join("%s\n" % values[n] for n in "abcde"))

        limited = json.loads(self.ctl("get", p, "--prefix", "--limit", "2", "-w", "json"))
        self.assertEqual(limited["count"], 5)
        self.assertTrue(limited["more"])
        self.assertEqual([kv["key"] for kv in limited["kvs"]], [b64(p + "a"), b64(p + "b")])
        keys_only = json.loads(self.ctl("get", p, "--prefix", "--keys-only", "-w", "json"))
        self.assertEqual(keys_only["count"], 5)
        self.assertTrue(all("value" not in kv for kv in keys_only["kvs"]))

        # --rev reads the past.
        old_rev = json.loads(self.ctl("get", p + "b", "-w", "json"))["kvs"][0]["mod_revision"]
        self.ctl("put", p + "b", "changed")
        self.assertEqual(self.ctl("get", p + "b", "--rev=%d" % old_rev), p + "b\n1\n")
        self.assertEqual(self.ctl("get", p + "b", "--rev=%d" % (old_rev - 1)), "")
        self.assertEqual(self.ctl("get", p + "b"), p + "b\nchanged\n")
        self.assertEqual(self.ctl_fails("get", p + "b", "--rev=%d" % (self.revision() + 1000)),
                         "Error: etcdserver: mvcc: required revision is a future revision")

    # ---- del ---------------------------------------------------------------
    # KV.DeleteRange.

    def test_del(self):
        p = "del/"
        for n in range(4):
            self.ctl("put", "%s%d" % (p, n), "v%d" % n)
        self.assertEqual(self.ctl("del", p + "0"), "1\n")
        self.assertEqual(self.ctl("del", p + "0"), "0\n")
        self.assertEqual(self.ctl("del", p + "1", "--prev-kv"), "1\n%s1\nv1\n" % p)
        self.assertEqual(self.ctl("del", p, "--prefix", "--prev-kv"),
                         "2\n%s2\nv2\n%s3\nv3\n" % (p, p))
        self.assertEqual(self.ctl("get", p, "--prefix"), "")
        self.ctl("put", p + "x", "1")
        self.ctl("put", p + "y", "2")
        self.assertEqual(self.ctl("del", p, "--prefix"), "2\n")
        self.assertEqual(self.ctl("del", p, "--prefix"), "0\n")

    # ---- txn ---------------------------------------------------------------
    # KV.Txn; stdin holds compares, a blank line, success ops, a blank line,
    # failure ops, a blank line.

    def test_txn_from_stdin(self):
        p = "txn/"
        self.ctl("put", p + "k", "a")
        script = 'value("%sk") = "a"\n\nput %sres yes\nget %sk\n\nput %sres no\n\n' % ((p,) * 4)
        self.assertEqual(self.ctl("txn", input=script), "SUCCESS\n\nOK\n\n%sk\na\n" % p)
        self.assertEqual(self.ctl("get", p + "res"), p + "res\nyes\n")

        script = 'value("%sk") = "b"\n\nput %sres yes\n\nput %sres no\ndel %sk\n\n' % ((p,) * 4)
        self.assertEqual(self.ctl("txn", input=script), "FAILURE\n\nOK\n\n1\n")
        self.assertEqual(self.ctl("get", p + "res"), p + "res\nno\n")
        self.assertEqual(self.ctl("get", p + "k"), "")

        # Interactive mode prints its prompts on stdout.
        script = 'version("%sres") = "2"\n\nget %sres\n\n\n' % (p, p)
        self.assertEqual(self.ctl("txn", "-i", input=script),
                         "compares:\nsuccess requests (get, put, del):\n"
                         "failure requests (get, put, del):\nSUCCESS\n\n%sres\nno\n" % p)

        # mod, create and version compares, and the json form.
        res = json.loads(self.ctl("get", p + "res", "-w", "json"))["kvs"][0]
        script = ('mod("%sres") = "%d"\ncreate("%sres") < "%d"\nversion("%sres") > "1"\n\n'
                  'get %sres\n\n\n' % (p, res["mod_revision"], p, res["create_revision"] + 1,
                                       p, p))
        doc = json.loads(self.ctl("txn", "-w", "json", input=script))
        self.assertTrue(doc["succeeded"])
        got = doc["responses"][0]["Response"]["ResponseRange"]["kvs"][0]
        self.assertEqual((got["key"], got["value"]), (b64(p + "res"), b64("no")))
        script = 'mod("%sres") > "%d"\n\n\nget %sres\n\n' % (p, res["mod_revision"], p)
        doc = json.loads(self.ctl("txn", "-w", "json", input=script))
        self.assertFalse(doc.get("succeeded", False))

        self.assertEqual(self.ctl_fails("txn", input='bogus("a") = "1"\n\n\n\n'),
                         'Error: malformed comparison: bogus("a") = "1" (unknown target bogus)')

    # ---- watch ---------------------------------------------------------------
    # Watch.Watch, a bidirectional stream.

    def start_watch(self, args):
        """Starts `etcdctl watch args` in the background; (process, output path)."""
        out_path = os.path.join(self.cluster.workdir, "watch-%d.out" % time.monotonic_ns())
        cmd = ["etcdctl", "--endpoints=" + self.cluster.members[0].client_url, "watch"] + args
        with open(out_path, "w") as out:
            proc = subprocess.Popen(cluster.dies_with_parent(cmd), stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=dict(os.environ, ETCDCTL_API="3"))
        return proc, out_path

    def run_watch(self, args, done, timeout_s=15):
        """Runs `etcdctl watch args` in the background until done(output)."""
        proc, out_path = self.start_watch(args)
        try:
            def read():
                with open(out_path) as f:
                    text = f.read()
                return text if done(text) else None
            return wait_until(read, timeout_s, what="etcdctl watch output")
        finally:
            proc.kill()
            proc.wait(timeout=10)

    def test_watch(self):
        p = "watch/"
        # Starting at a revision makes the output independent of how soon
        # the watch is established.
        start = self.revision() + 1
        self.ctl("put", p + "a", "1", member=1)
        self.ctl("put", p + "b", "2", member=2)
        self.ctl("put", p + "a", "3")
        self.ctl("del", p + "a")
        self.ctl("put", "unwatched", "x")
        want = "PUT\n%sa\n1\nPUT\n%sb\n2\nPUT\n%sa\n3\nDELETE\n%sa\n\n" % ((p,) * 4)
        out = self.run_watch([p, "--prefix", "--rev=%d" % start],
                             lambda text: text.count("\n") >= want.count("\n"))
        self.assertEqual(out, want)

        want = ("PUT\n%sa\n1\nPUT\n%sa\n1\n%sa\n3\nDELETE\n%sa\n3\n%sa\n\n" % ((p,) * 5))
        out = self.run_watch([p + "a", "--prev-kv", "--rev=%d" % start],
                             lambda text: text.count("\n") >= want.count("\n"))
        self.assertEqual(out, want)

        # A live watch sees writes made after it started.
        proc, out_path = self.start_watch([p + "live"])
        try:
            # Writes repeat until the watch, once established, reports one.
            def wrote_and_seen():
                self.ctl("put", p + "live", "v", member=1)
                with open(out_path) as f:
                    return f.read().startswith("PUT\n%slive\nv\n" % p)
            wait_until(wrote_and_seen, 15, interval_s=0.2, what="live watch event")
        finally:
            proc.kill()
            proc.wait(timeout=10)

    # ---- compaction -----------------------------------------------------------
    # KV.Compact.

    def test_compaction(self):
        p = "compact/"
        first = self.cluster.client(0).put(p + "k", "old").header.revision
        self.ctl("put", p + "k", "new")
        rev = self.revision()
        self.assertEqual(self.ctl("get", p + "k", "--rev=%d" % first), p + "k\nold\n")
        self.assertEqual(self.ctl("compaction", str(rev)), "compacted revision %d\n" % rev)
        self.assertEqual(self.ctl_fails("get", p + "k", "--rev=%d" % first),
                         "Error: etcdserver: mvcc: required revision has been compacted")
        self.assertEqual(self.ctl_fails("compaction", str(rev)),
                         "Error: etcdserver: mvcc: required revision has been compacted")
        self.assertEqual(self.ctl_fails("compaction", str(rev + 1000)),
                         "Error: etcdserver: mvcc: required revision is a future revision")
        self.assertEqual(self.ctl("get", p + "k", member=2), p + "k\nnew\n")
        rev = self.revision()
        self.assertEqual(self.ctl("compaction", "--physical", str(rev)),
                         "compacted revision %d\n" % rev)
        self.assertEqual(self.ctl("get", p + "k"), p + "k\nnew\n")

    # ---- leases ----------------------------------------------------------------
    # Lease.LeaseGrant, LeaseRevoke, LeaseTimeToLive, LeaseLeases, LeaseKeepAlive.

    def grant(self, ttl):
        out = self.ctl("lease", "grant", str(ttl))
        m = re.fullmatch(r"lease %s granted with TTL\(%ds\)\n" % (LEASE_ID, ttl), out)
        self.assertIsNotNone(m, out)
        return m.group(1)

    def test_lease_commands(self):
        p = "lease/"
        lease = self.grant(100)
        other = self.grant(60)
        self.assertNotEqual(lease, other)
        self.ctl("put", "--lease=" + lease, p + "k1", "v")
        self.ctl("put", "--lease=" + lease, p + "k2", "v")

        out = self.ctl("lease", "timetolive", lease)
        m = re.fullmatch(r"lease %s granted with TTL\(100s\), remaining\((\d+)s\)\n" % lease, out)
        self.assertIsNotNone(m, out)
        self.assertTrue(90 <= int(m.group(1)) <= 100, out)
        out = self.ctl("lease", "timetolive", lease, "--keys", member=2)
        m = re.fullmatch(r"lease %s granted with TTL\(100s\), remaining\(\d+s\), "
                         r"attached keys\(\[(.*)\]\)\n" % lease, out)
        self.assertIsNotNone(m, out)
        # etcd lists attached keys in no particular order.
        self.assertEqual(sorted(m.group(1).split(" ")), [p + "k1", p + "k2"])
        doc = json.loads(self.ctl("lease", "timetolive", lease, "--keys", "-w", "json"))
        self.assertEqual(doc["id"], int(lease, 16))
        self.assertEqual(doc["granted-ttl"], 100)
        self.assertEqual(sorted(base64.b64decode(k).decode() for k in doc["keys"]),
                         [p + "k1", p + "k2"])

        out = self.ctl("lease", "list", member=1).splitlines()
        m = re.fullmatch(r"found (\d+) leases", out[0])
        self.assertIsNotNone(m, out)
        self.assertEqual(int(m.group(1)), len(out) - 1)
        self.assertLessEqual({lease, other}, set(out[1:]))

        self.assertEqual(self.ctl("lease", "keep-alive", "--once", lease),
                         "lease %s keepalived with TTL(100)\n" % lease)
        doc = json.loads(self.ctl("lease", "keep-alive", "--once", other, "-w", "json"))
        self.assertEqual((doc["ID"], doc["TTL"]), (int(other, 16), 60))

        self.assertEqual(self.ctl("lease", "revoke", lease), "lease %s revoked\n" % lease)
        self.assertEqual(self.ctl("get", p, "--prefix"), "")
        self.assertEqual(self.ctl("lease", "timetolive", lease),
                         "lease %s already expired\n" % lease)
        self.assertEqual(self.ctl_fails("lease", "revoke", lease),
                         "Error: failed to revoke lease (etcdserver: requested lease not found)")
        self.assertEqual(self.ctl_fails("lease", "keep-alive", "--once", lease),
                         "Error: etcdserver: requested lease not found")
        self.assertEqual(self.ctl_fails("put", "--lease=" + lease, p + "k3", "v"),
                         "Error: etcdserver: requested lease not found")
        self.assertNotIn(lease, self.ctl("lease", "list").splitlines()[1:])
        self.ctl("lease", "revoke", other)

    # ---- endpoint and member --------------------------------------------------
    # Maintenance.Status, KV.Range (health reads the key "health"), Cluster.MemberList.

    def member_lines(self):
        lines = self.ctl("member", "list").splitlines()
        return [line.split(", ") for line in lines]

    def test_member_list(self):
        rows = self.member_lines()
        self.assertEqual(len(rows), self.cluster.size)
        want = set()
        for i, m in enumerate(self.cluster.members):
            want.add(("%x" % self.cluster.member_id(i), "started", m.name, m.peer_url,
                      m.client_url, "false"))
        self.assertEqual({tuple(r) for r in rows}, want)
        # Every member answers with the same list.
        for i in range(1, self.cluster.size):
            self.assertEqual(sorted(map(tuple, self.member_lines())),
                             sorted(tuple(line.split(", ")) for line in
                                    self.ctl("member", "list", member=i).splitlines()))
        doc = json.loads(self.ctl("member", "list", "-w", "json"))
        self.assertEqual({(m["ID"], m["name"], tuple(m["peerURLs"]), tuple(m["clientURLs"]))
                          for m in doc["members"]},
                         {(self.cluster.member_id(i), m.name, (m.peer_url,), (m.client_url,))
                          for i, m in enumerate(self.cluster.members)})
        self.assertEqual(doc["header"]["member_id"], self.cluster.member_id(0))

    def test_endpoint_status(self):
        leaders = []
        terms = set()
        for i, m in enumerate(self.cluster.members):
            fields = self.ctl("endpoint", "status", member=i).rstrip("\n").split(", ")
            # endpoint, id, version, db size, is leader, is learner, raft term,
            # raft index, raft applied index, errors
            self.assertEqual(len(fields), 10, fields)
            self.assertEqual(fields[0], m.client_url)
            self.assertEqual(fields[1], "%x" % self.cluster.member_id(i))
            self.assertRegex(fields[3], r"^\d+(\.\d+)? [kMG]?B$")
            self.assertIn(fields[4], ("true", "false"))
            self.assertEqual(fields[5], "false")
            self.assertGreaterEqual(int(fields[7]), 1)
            self.assertEqual(fields[9], "")
            if fields[4] == "true":
                leaders.append(i)
            terms.add(fields[6])
        self.assertEqual(leaders, [self.cluster.leader_index()])
        self.assertEqual(len(terms), 1)

        doc = json.loads(self.ctl("endpoint", "status", "-w", "json", member=1))
        self.assertEqual(len(doc), 1)
        st = doc[0]["Status"]
        self.assertEqual(doc[0]["Endpoint"], self.cluster.members[1].client_url)
        self.assertEqual(st["header"]["member_id"], self.cluster.member_id(1))
        self.assertEqual(st["leader"], self.cluster.member_id(leaders[0]))
        self.assertGreaterEqual(st["raftIndex"], 1)
        self.assertGreater(st["dbSize"], 0)

        # --cluster asks MemberList for the client URLs, then each member.
        out = self.ctl("endpoint", "status", "--cluster")
        self.assertEqual(sorted(line.split(", ")[0] for line in out.splitlines()),
                         sorted(m.client_url for m in self.cluster.members))

    def test_endpoint_health(self):
        for i, m in enumerate(self.cluster.members):
            res = self.cluster.etcdctl_result(i, "endpoint", "health")
            self.assertEqual(res.returncode, 0, res.stderr)
            # etcdctl 3.4 prints the health line on stderr.
            self.assertRegex(res.stderr, r"^%s is healthy: successfully committed proposal: "
                             r"took = \S+\n$" % re.escape(m.client_url))
        doc = json.loads(self.ctl("endpoint", "health", "-w", "json"))
        self.assertEqual(len(doc), 1)
        self.assertEqual((doc[0]["endpoint"], doc[0]["health"]),
                         (self.cluster.members[0].client_url, True))
        res = self.cluster.etcdctl_result(0, "endpoint", "health", "--cluster")
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertEqual(sorted(re.findall(r"^(\S+) is healthy", res.stderr, re.M)),
                         sorted(m.client_url for m in self.cluster.members))


if __name__ == "__main__":
    unittest.main()
