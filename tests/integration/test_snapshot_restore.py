"""Backup and restore: a snapshot saved from a running cluster with
`etcdctl snapshot save` becomes a new three-member cluster with the same keys,
revisions and leases (`conclave snapshot restore`, or `etcdctl snapshot
restore` when the suite runs against etcd).
"""

import os
import shutil
import subprocess
import unittest

import etcd3
import etcd3.etcdrpc as etcdrpc

import cluster
from cluster import (Cluster, binary_from_env, is_etcd, make_cluster, new_workdir, put_once,
                     retry, wait_until)

KEYS = 200
RESTORE_TIMEOUT_S = 60


def everything(cluster, i):
    """Member i's whole key space: (key, value, create, mod, version, lease) tuples."""
    resp = cluster.client(i).kvstub.Range(
        etcdrpc.RangeRequest(key=b"\0", range_end=b"\0", serializable=True), 5)
    return [(kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease)
            for kv in resp.kvs], resp.header.revision


class SnapshotRestoreTest(unittest.TestCase):

    def test_restored_cluster_has_identical_data(self):
        binary = binary_from_env()
        target_dir = new_workdir("restore-target")  # the backup lives here
        source = make_cluster(binary, 3, "restore-source")
        try:
            kv = source.client(0).kvstub
            for i in range(KEYS):
                put_once(kv, b"restore/%04d" % i, b"value-%d" % i)
            for i in range(0, KEYS, 10):  # some history: overwrites and deletes
                kv.Put(etcdrpc.PutRequest(key=b"restore/%04d" % i, value=b"again-%d" % i), 5)
            kv.DeleteRange(etcdrpc.DeleteRangeRequest(key=b"restore/0001"), 5)
            lease = source.client(0).leasestub.LeaseGrant(etcdrpc.LeaseGrantRequest(TTL=600), 5)
            kv.Put(etcdrpc.PutRequest(key=b"restore/leased", value=b"x", lease=lease.ID), 5)
            source.etcdctl(0, "get", "restore/0002")  # a linearizable barrier on member 0
            before, revision = everything(source, 0)
            hash_before = source.hash_kv(0, revision)[0]
            path = os.path.join(target_dir, "backup.db")
            source.etcdctl(0, "snapshot", "save", path)
            self.assertTrue(os.path.getsize(path) > 0)
            with open(path, "rb") as f:
                data = f.read()
            # Every saved snapshot ends with its SHA-256 after a 512-byte boundary.
            self.assertEqual(len(data) % 512, 32)
        finally:
            source.close()

        restored = Cluster(binary, 3, target_dir)
        try:
            initial = ",".join("%s=%s" % (m.name, m.peer_url) for m in restored.members)
            for m in restored.members:
                tool = (["etcdctl"] if is_etcd(binary) else [binary])
                cmd = tool + ["snapshot", "restore", path, "--name", m.name,
                              "--data-dir", m.data_dir, "--initial-cluster", initial,
                              "--initial-cluster-token", "itest",
                              "--initial-advertise-peer-urls", m.peer_url]
                res = subprocess.run(cmd, capture_output=True, text=True,
                                     timeout=RESTORE_TIMEOUT_S,
                                     env=dict(os.environ, ETCDCTL_API="3"))
                self.assertEqual(res.returncode, 0, res.stderr)
            restored.start()
            restored.wait_healthy()
            for i in range(3):
                wait_until(lambda i=i: everything(restored, i)[0] == before, 20,
                           what="member %d to serve the restored keys" % i)
                self.assertEqual(restored.hash_kv(i, revision)[0], hash_before)
            # The lease came along, and the cluster takes writes after the old revision.
            ttl = restored.client(0).leasestub.LeaseTimeToLive(
                etcdrpc.LeaseTimeToLiveRequest(ID=lease.ID), 5)
            self.assertGreater(ttl.TTL, 0)
            resp = retry(lambda: restored.client(1).kvstub.Put(
                etcdrpc.PutRequest(key=b"restore/after", value=b"y"), 5))
            self.assertGreater(resp.header.revision, revision)
            # The backup lives in the restored cluster's directory, removed with it.
            self.check_default_data_dir(binary, path, before)
        except BaseException:
            restored.print_logs()
            raise
        finally:
            restored.close()

    def check_default_data_dir(self, binary, path, want):
        """Restored without --data-dir, a member started without it finds the data."""
        cwd = new_workdir("restore-default-dir")
        os.makedirs(cwd, exist_ok=True)
        client_port, peer_port = cluster._free_ports(2)
        peer = "http://127.0.0.1:%d" % peer_port
        client = "http://127.0.0.1:%d" % client_port
        tool = ["etcdctl"] if is_etcd(binary) else [binary]
        res = subprocess.run(tool + ["snapshot", "restore", path, "--name", "solo",
                                     "--initial-cluster", "solo=" + peer,
                                     "--initial-cluster-token", "itest",
                                     "--initial-advertise-peer-urls", peer],
                             capture_output=True, text=True, timeout=RESTORE_TIMEOUT_S,
                             cwd=cwd, env=dict(os.environ, ETCDCTL_API="3"))
        self.assertEqual(res.returncode, 0, res.stderr)
        serve = [binary] + ([] if is_etcd(binary) else ["serve"]) + [
            "--name", "solo", "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", "solo=" + peer, "--initial-cluster-token", "itest"]
        with open(os.path.join(cwd, "solo.log"), "wb") as log:
            proc = subprocess.Popen(cluster.dies_with_parent(serve), cwd=cwd, stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            c = etcd3.client(host="127.0.0.1", port=client_port, timeout=5)

            def keys():
                resp = c.kvstub.Range(etcdrpc.RangeRequest(key=b"\0", range_end=b"\0"), 5)
                return [kv.key for kv in resp.kvs]
            wait_until(lambda: keys() == [k[0] for k in want], 30,
                       what="the member started without --data-dir to serve the restored keys")
            c.close()
        except BaseException:
            with open(os.path.join(cwd, "solo.log"), errors="replace") as f:
                print(f.read()[-4000:])
            raise
        finally:
            proc.kill()
            proc.wait(timeout=10)
            if not os.environ.get("CONCLAVE_KEEP_TEST_DIRS"):
                shutil.rmtree(cwd, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
