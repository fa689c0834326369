"""Lease: grant, timetolive, keep-alive, revoke and expiry, through etcdctl and python."""

import json
import re
import time
import unittest

import etcd3.etcdrpc as etcdrpc

import compat
from compat import scenario


def sorted_keys(out, err):
    """etcd lists a lease's keys in no particular order; sort them."""
    def fix_simple(m):
        return "attached keys([%s])" % " ".join(sorted(m.group(1).split(" ")))
    out = re.sub(r"attached keys\(\[(.*)\]\)", fix_simple, out)

    def fix_json(m):
        return '"keys":%s' % json.dumps(sorted(json.loads(m.group(1))), separators=(",", ":"))
    out = re.sub(r'"keys":(\[[^\]]*\])', fix_json, out)
    return out, err


def grant(r, ttl, member=0):
    """etcdctl lease grant; returns the hex id, or aborts the scenario."""
    out = r.ctl_ok("lease", "grant", str(ttl), member=member)
    m = re.match(r"lease ([0-9a-f]+) granted", out)
    if not m:
        raise compat.ScenarioAbort("unexpected grant output %r" % out)
    return m.group(1)


def wait_expired(r, lease, timeout_s=15):
    """Waits (unrecorded, bounded) until timetolive says the lease is gone."""
    def gone():
        res = r.ctl("lease", "timetolive", lease, record=False)
        return "already expired" in res.stdout
    ok = compat.wait_for(gone, timeout_s, interval_s=0.2)
    r.note("lease gone within %ss" % timeout_s, bool(ok))


class LeaseCompat(compat.CompatTestCase):

    @scenario
    def test_grant_ttl_revoke(r):
        p = "lease-basic/"
        lease = grant(r, 100)
        other = grant(r, 60, member=1)
        r.ctl("put", "--lease=" + lease, p + "k1", "v")
        r.ctl("put", "--lease=" + lease, p + "k2", "v", member=2)
        r.ctl("lease", "timetolive", lease)
        r.ctl("lease", "timetolive", lease, "--keys", member=2, mask=sorted_keys)
        r.ctl("lease", "timetolive", lease, "--keys", "-w", "json", mask=sorted_keys)
        r.ctl("lease", "timetolive", other, "--keys")
        r.ctl("lease", "list", member=1, sort=True)
        r.ctl("lease", "keep-alive", "--once", lease)
        r.ctl("lease", "keep-alive", "--once", other, "-w", "json", member=2)
        r.ctl("lease", "revoke", lease)
        r.ctl("get", p, "--prefix")
        r.ctl("lease", "timetolive", lease)
        r.ctl("lease", "timetolive", lease, "-w", "json")
        r.ctl("lease", "revoke", lease)
        r.ctl("lease", "keep-alive", "--once", lease)
        r.ctl("put", "--lease=" + lease, p + "k3", "v")
        r.ctl("lease", "revoke", other, member=1)
        r.ctl("lease", "list", sort=True)

    @scenario
    def test_keys_follow_leases(r):
        p = "lease-keys/"
        a = grant(r, 100)
        b = grant(r, 100)
        r.ctl("put", "--lease=" + a, p + "k", "1")
        r.ctl("get", p + "k", "-w", "json")
        r.ctl("put", "--lease=" + b, p + "k", "2")
        r.ctl("lease", "timetolive", a, "--keys")
        r.ctl("lease", "timetolive", b, "--keys")
        r.ctl("put", "--ignore-lease", p + "k", "3")
        r.ctl("get", p + "k", "-w", "json")
        r.ctl("put", p + "k", "4")
        r.ctl("lease", "timetolive", b, "--keys")
        r.ctl("put", "--lease=" + a, p + "x", "1")
        r.ctl("put", "--lease=" + a, p + "y", "2")
        start = r.revision() + 1
        r.ctl("lease", "revoke", a)
        r.ctl("get", p, "--prefix", "-w", "json")
        b_watch = r.bg("watch", p, "--prefix", "--rev=%d" % start)
        b_watch.wait_lines(6, 10)
        b_watch.stop()
        b_watch.record()
        r.ctl("lease", "revoke", b)
        r.ctl("put", "--lease=zz", p + "bad", "1")
        r.ctl("put", "--lease=0", p + "zero", "1")
        r.ctl("get", p + "zero", "-w", "json")

    @scenario
    def test_expiry(r):
        p = "lease-expiry/"
        lease = grant(r, 1)
        r.ctl("put", "--lease=" + lease, p + "k", "v")
        r.ctl("put", "--lease=" + lease, p + "k2", "v")
        rev = r.revision()
        wait_expired(r, lease)
        r.py("revision after expiry", lambda c: c.get(p + "k")[1] is None and
             r.revision() - rev)
        r.ctl("lease", "timetolive", lease)
        r.ctl("get", p, "--prefix")
        r.ctl("put", "--lease=" + lease, p + "k", "v")
        r.ctl("lease", "keep-alive", "--once", lease)
        r.ctl("lease", "revoke", lease)
        r.py("get_lease_info", lambda c: c.get_lease_info(int(lease, 16)))
        r.py("put with expired lease", lambda c: c.put(p + "k", "v", lease=int(lease, 16)))

    @scenario
    def test_grant_edges(r):
        for ttl in ("0", "1", "-1", "9000000000", "9000000001", "abc"):
            res = r.ctl("lease", "grant", "--", ttl)
            m = re.match(r"lease ([0-9a-f]+) granted", res.stdout)
            if m:
                r.ctl("lease", "revoke", m.group(1))
        for cmd in (("timetolive", "1234"), ("keep-alive", "--once", "1234"), ("revoke", "1234"),
                    ("timetolive", "xyz"), ("revoke",), ("timetolive",)):
            r.ctl("lease", *cmd)
        r.py("grant ttl 1", lambda c: (lambda ls: (ls.ttl, c.revoke_lease(ls.id)))(c.lease(1)))
        r.py("grant ttl 0", lambda c: (lambda ls: (ls.ttl, c.revoke_lease(ls.id)))(c.lease(0)))
        r.py("grant ttl -5", lambda c: (lambda ls: (ls.ttl, c.revoke_lease(ls.id)))(c.lease(-5)))

    @scenario
    def test_python_leases(r):
        p = "lease-py/"
        lease = r.py_ok("lease(100)", lambda c: c.lease(100))
        r.py("granted_ttl", lambda c: lease.granted_ttl)
        r.py("0 < remaining_ttl <= 100", lambda c: 0 < lease.remaining_ttl <= 100)
        r.py("put with lease", lambda c: c.put(p + "a", "1", lease=lease).header.revision)
        r.py("put with lease id", lambda c: c.put(p + "b", "2", lease=lease.id).header.revision)
        r.py("keys", lambda c: sorted(lease.keys))
        r.py("get metadata lease", lambda c: c.get(p + "a")[1].lease_id == lease.id)
        r.py("refresh", lambda c: [(resp.ID == lease.id, resp.TTL) for resp in lease.refresh()])
        r.py("get_lease_info", lambda c: (lambda info: (info.ID == lease.id, info.grantedTTL,
                                                        sorted(info.keys)))(
            c.get_lease_info(lease.id)))
        r.py("leases", lambda c: lease.id in [ls.ID for ls in c.leasestub.LeaseLeases(
            etcdrpc.LeaseLeasesRequest(), 5).leases])
        r.py("revoke", lambda c: lease.revoke())
        r.py("get_lease_info after revoke", lambda c: (lambda info: (info.TTL, info.grantedTTL,
                                                                     list(info.keys)))(
            c.get_lease_info(lease.id)))
        r.py("revoke again", lambda c: lease.revoke())
        r.py("refresh revoked", lambda c: [(resp.ID == lease.id, resp.TTL)
                                           for resp in lease.refresh()])
        r.py("keys gone", lambda c: list(c.get_prefix(p)))
        chosen = 0x7000_0000_1234
        r.py("lease with chosen id", lambda c: c.lease(50, lease_id=chosen))
        r.py("same id again", lambda c: c.lease(50, lease_id=chosen))
        r.py("revoke chosen", lambda c: c.revoke_lease(chosen))
        r.py("revoke unknown", lambda c: c.revoke_lease(0x7000_0000_9999))

    @scenario
    def test_keepalive_stream(r):
        lease = grant(r, 5)
        b = r.bg("lease", "keep-alive", lease)
        b.wait_lines(1, 10)
        time.sleep(0.2)
        b.stop()
        first = b.output().splitlines()[:1]
        r.note("first keep-alive line", first)
        r.ctl("lease", "revoke", lease)
        b = r.bg("lease", "keep-alive", lease)
        compat.wait_for(lambda: b.proc.poll() is not None, 10)
        b.stop()
        b.record(exit_code=True)


if __name__ == "__main__":
    unittest.main()
