"""Lock: etcdctl lock (the v3lock service), python-etcd3 locks and raw Lock RPCs."""

import unittest

import etcd3.etcdrpc as etcdrpc

import compat
from compat import MSG, scenario


def lock_rpc(r, title, name, lease, member=0, timeout_s=5):
    return r.py(title, lambda c: compat.unary(r.grpc(member), "/v3lockpb.Lock/Lock",
                                              MSG["LockRequest"](name=name.encode(), lease=lease),
                                              "LockResponse", timeout_s), member=member)


def unlock_rpc(r, title, key, member=0):
    return r.py(title, lambda c: compat.unary(r.grpc(member), "/v3lockpb.Lock/Unlock",
                                              MSG["UnlockRequest"](key=key), "UnlockResponse"),
                member=member)


class LockCompat(compat.CompatTestCase):

    @scenario
    def test_lock_with_command(r):
        p = "lock-cmd"
        r.ctl("lock", p, "echo", "hi")
        r.ctl("lock", p, "--", "sh", "-c", "echo $ETCD_LOCK_KEY $ETCD_LOCK_REV")
        r.ctl("lock", p, "--", "sh", "-c", "echo out; echo err >&2; exit 3")
        r.ctl("lock", "--ttl=5", p, "--", "sh", "-c", "echo ttl $ETCD_LOCK_REV")
        r.ctl("get", p, "--prefix")
        r.ctl("lock")
        r.ctl("lock", p, "/nonexistent/command")

    @scenario
    def test_two_contenders(r):
        p = "lock-two"
        a = r.bg("lock", p, title="contender A")
        a.wait_lines(1, 10)
        a.record()
        b = r.bg("lock", p, member=1, title="contender B")
        compat.wait_for(lambda: b.output(), 1.0)
        b.record("contender B while A holds the lock")
        r.ctl("get", p, "--prefix", "--keys-only", "--sort-by=create", member=2)
        a.stop()
        a.record("contender A after SIGTERM", exit_code=True)
        b.wait_lines(1, 10)
        b.record("contender B after A released")
        r.ctl("get", p, "--prefix", "--keys-only", "--sort-by=create", member=2)
        b.stop()
        b.record("contender B after SIGTERM", exit_code=True)
        r.ctl("get", p, "--prefix", "--keys-only")
        r.ctl("lock", p, "echo", "free again")

    @scenario
    def test_python_lock(r):
        name = "compat-py-lock"
        lock = r.py_ok("lock()", lambda c: c.lock(name, ttl=30))
        other = r.py_ok("second lock()", lambda c: c.lock(name, ttl=30), member=1)
        r.py("is_acquired before", lambda c: lock.is_acquired())
        r.py("acquire", lambda c: lock.acquire(timeout=5))
        r.py("is_acquired", lambda c: lock.is_acquired())
        r.py("lock key metadata", lambda c: (lambda v, m: (m.version, m.lease_id == lock.lease.id))(
            *c.get("/locks/" + name)))
        r.py("other acquire times out", lambda c: other.acquire(timeout=1), member=1)
        r.py("other is_acquired", lambda c: other.is_acquired(), member=1)
        r.py("release", lambda c: lock.release())
        r.py("release again", lambda c: lock.release())
        r.py("other acquire", lambda c: other.acquire(timeout=5), member=1)
        r.py("first is_acquired", lambda c: lock.is_acquired())
        r.py("other release", lambda c: other.release(), member=1)
        r.py("lock key gone", lambda c: c.get("/locks/" + name))
        r.py("revoke leases", lambda c: [c.revoke_lease(l.lease.id) for l in (lock, other)
                                         if l.lease is not None] and None)

    @scenario
    def test_raw_lock_rpc(r):
        name = "lock-raw"
        lease = r.py_ok("lease", lambda c: c.lease(60)).id
        r.register_id(lease)
        got = lock_rpc(r, "Lock", name, lease)
        r.ctl("get", name, "--prefix", "-w", "json")
        r.py("lock key matches", lambda c: got.key == ("%s/%x" % (name, lease)).encode())
        lease2 = r.py_ok("lease 2", lambda c: c.lease(60)).id
        r.register_id(lease2)
        lock_rpc(r, "Lock while held (times out)", name, lease2, member=1, timeout_s=1)
        compat.wait_for(lambda: len(list(r.client(0).get_prefix(name))) == 1, 5)
        r.ctl("get", name, "--prefix", "--keys-only")
        if not isinstance(got, Exception):
            unlock_rpc(r, "Unlock", got.key)
            unlock_rpc(r, "Unlock again", got.key)
        lock_rpc(r, "Lock by lease 2", name, lease2, member=2)
        r.ctl("get", name, "--prefix", "--keys-only")
        lock_rpc(r, "Lock with a missing lease", name, 0x7000_0000_4242)
        lock_rpc(r, "Lock with an empty name", "", lease)
        r.py("revoke lease 2", lambda c: c.revoke_lease(lease2))
        r.ctl("get", name, "--prefix", "--keys-only")
        r.py("revoke lease", lambda c: c.revoke_lease(lease))


if __name__ == "__main__":
    unittest.main()
