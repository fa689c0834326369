"""The Python client against a 3-member Conclave cluster with 8 native ranges.

Run by ctest (entry python_client) with CONCLAVE_BIN set; the cluster is
started and stopped by tests/integration/cluster.py on loopback ports.
"""

import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, os.pardir, os.pardir, os.pardir)
sys.path.insert(0, os.path.join(HERE, os.pardir))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

import cluster  # noqa: E402
import conclave  # noqa: E402


class GeneratedCodeTest(unittest.TestCase):

    def test_kv_pb2_matches_the_proto(self):
        protoc = os.environ.get("CONCLAVE_PROTOC", "protoc")
        with tempfile.TemporaryDirectory() as out:
            subprocess.run([protoc, "--python_out=" + out, "conclave/kvpb/kv.proto"],
                           cwd=os.path.join(ROOT, "proto"), check=True, timeout=60)
            with open(os.path.join(out, "conclave", "kvpb", "kv_pb2.py")) as f:
                fresh = f.read()
        with open(os.path.join(HERE, os.pardir, "conclave", "kvpb", "kv_pb2.py")) as f:
            committed = f.read()
        self.assertEqual(committed, fresh,
                         "clients/python/conclave/kvpb/kv_pb2.py is out of date: "
                         "run `make python-client`")


class ClientTest(cluster.ClusterTestCase):
    CLUSTER_SIZE = 3
    EXTRA_FLAGS = ("--initial-range-count", "8")

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        eps = ["127.0.0.1:%d" % m.client_port for m in cls.cluster.members]
        cls.client = conclave.Client(eps)
        # The ranges elect their leaders after start; the first write waits.
        cluster.wait_until(lambda: cls.client.put(b"warm-up", b"1"), 30, what="a first put")

    @classmethod
    def tearDownClass(cls):
        cls.client.close()
        super().tearDownClass()

    def test_put_get_delete(self):
        c = self.client
        ts = c.put(b"pgd/a", b"1")
        self.assertIsInstance(ts, conclave.Timestamp)
        self.assertEqual(c.get(b"pgd/a"), b"1")
        self.assertEqual(c.get("pgd/a"), b"1")  # str keys are UTF-8
        entry = c.get_entry(b"pgd/a")
        self.assertEqual(entry.timestamp, ts)
        later = c.put(b"pgd/a", b"2")
        self.assertGreater(later, ts)
        self.assertTrue(c.delete(b"pgd/a"))
        self.assertIsNone(c.get(b"pgd/a"))
        self.assertFalse(c.delete(b"pgd/a"))

    def test_conditional_writes(self):
        c = self.client
        c.put(b"cas/k", b"v1", if_absent=True)
        with self.assertRaises(conclave.ConditionFailed):
            c.put(b"cas/k", b"v2", if_absent=True)
        with self.assertRaises(conclave.ConditionFailed):
            c.put(b"cas/k", b"v2", if_value=b"nope")
        ts = c.put(b"cas/k", b"v2", if_value=b"v1")
        with self.assertRaises(conclave.ConditionFailed):
            c.delete(b"cas/k", if_timestamp=conclave.Timestamp(ts.wall_nanos, ts.logical + 1))
        self.assertEqual(c.get(b"cas/k"), b"v2")
        self.assertTrue(c.delete(b"cas/k", if_timestamp=ts))
        with self.assertRaises(ValueError):
            c.put(b"cas/k", b"x", if_absent=True, if_value=b"y")

    def test_scan_pages_across_ranges(self):
        c = self.client
        # Keys spread over the first byte, so over all 8 ranges.
        keys = [bytes([b]) + b"scan" for b in range(0, 256, 5)]
        for i, k in enumerate(keys):
            c.put(k, str(i))
        got = c.scan(b"", page_size=7)
        mine = [kv for kv in got if kv.key.endswith(b"scan")]
        self.assertEqual([kv.key for kv in mine], keys)
        self.assertEqual([kv.value for kv in mine], [str(i).encode() for i in range(len(keys))])
        # Every key exactly once, in order, whatever the page size.
        self.assertEqual(c.scan(b"", page_size=1000), got)
        self.assertEqual([kv.key for kv in got], sorted(kv.key for kv in got))
        self.assertEqual(len(c.scan(b"", limit=5, page_size=2)), 5)
        self.assertEqual(c.scan(keys[3], keys[6]), [kv for kv in got
                                                    if keys[3] <= kv.key < keys[6]])
        self.assertEqual(len({r.range_id for r in c.ranges()}), 8)
        # A page that ends exactly at the scan's end is the last one.
        self.assertEqual([kv.key for kv in c.scan(keys[3], keys[3] + b"\0", page_size=1)],
                         [keys[3]])
        with self.assertRaises(ValueError):
            c.scan(b"", page_size=0)

    def test_delete_range_across_ranges(self):
        c = self.client
        for b in range(0x40, 0xC0, 8):
            c.put(bytes([b]) + b"dr", b"x")
        c.put(bytes([0xC8]) + b"dr", b"kept")
        n = c.delete_range(bytes([0x40]), bytes([0xC0]))
        self.assertGreaterEqual(n, 16)
        self.assertEqual(c.scan(bytes([0x40]), bytes([0xC0])), [])
        self.assertEqual(c.get(bytes([0xC8]) + b"dr"), b"kept")
        self.assertEqual(c.delete_range(bytes([0x40]), bytes([0xC0])), 0)

    def test_bad_requests_are_refused_clearly(self):
        c = self.client
        with self.assertRaises(conclave.InvalidArgument) as e:
            c.put(b"", b"v")
        self.assertIn("key is not provided", e.exception.details)
        with self.assertRaises(conclave.InvalidArgument):
            c.scan(b"b", b"a")
        with self.assertRaises(conclave.InvalidArgument):
            c.delete_range(b"b", b"b")
        with self.assertRaises(TypeError):
            c.put(1, b"v")

    def test_an_unreachable_endpoint_is_skipped(self):
        eps = ["127.0.0.1:1"] + ["127.0.0.1:%d" % m.client_port for m in self.cluster.members]
        with conclave.Client(eps, timeout=5) as c:
            c.put(b"failover/k", b"v")
            self.assertEqual(c.get(b"failover/k"), b"v")
        with conclave.Client(["127.0.0.1:1"], timeout=2) as c:
            with self.assertRaises(conclave.Unavailable):
                c.get(b"failover/k")


if __name__ == "__main__":
    unittest.main()
