"""KV: put, get and del through etcdctl and python-etcd3, compared with etcd."""

import hashlib
import json
import unittest

import etcd3.etcdrpc as etcdrpc

import compat
from compat import scenario


def values_digest(out, err):
    """Replaces long output lines by their length and sha256 (big values)."""
    def short(text):
        lines = []
        for line in text.splitlines():
            if len(line) > 200:
                line = "<%d bytes sha256 %s>" % (len(line), hashlib.sha256(line.encode()).hexdigest())
            lines.append(line)
        return "\n".join(lines) + ("\n" if text.endswith("\n") else "")
    return short(out), short(err)


class KvCompat(compat.CompatTestCase):

    @scenario
    def test_put_get_basic(r):
        p = "kv-basic/"
        r.ctl("put", p + "k", "v1")
        for i in range(3):
            r.ctl("get", p + "k", member=i)
        r.ctl("get", p + "missing")
        r.ctl("put", p + "k", "v2", "--prev-kv")
        r.ctl("put", p + "k", "v3", "--prev-kv", "-w", "json")
        r.ctl("get", p + "k", "--consistency=s", member=2)
        r.ctl("get", p + "k", "-w", "json")
        r.ctl("get", p + "missing", "-w", "json")
        r.ctl("get", p + "k", "-w", "fields")
        r.ctl("get", p + "k", "--hex")
        r.ctl("put", "", "x")
        r.ctl("get", "")
        r.ctl("put", p + "spaces", "a value with  spaces")
        r.ctl("get", p + "spaces", "--print-value-only")
        r.ctl("put", p + "empty", "")
        r.ctl("get", p + "empty", "-w", "json")
        r.ctl("put", p + "k")

    @scenario
    def test_put_ignore_flags(r):
        p = "kv-ignore/"
        r.ctl("put", p + "k", "--ignore-value")
        r.ctl("put", p + "k", "v1")
        r.ctl("put", p + "k", "--ignore-value")
        r.ctl("get", p + "k", "-w", "json")
        r.ctl("put", p + "k", "v2", "--ignore-lease")
        r.ctl("put", p + "k", "--ignore-value", "--ignore-lease")
        r.ctl("put", p + "missing", "v", "--ignore-lease")
        r.ctl("get", p, "--prefix")

    @scenario
    def test_range_options(r):
        p = "~kv-range/"  # '~' sorts after every other prefix: --from-key sees only these
        values = {"a": "3", "b": "1", "c": "5", "d": "2", "e": "4"}
        for name in ("c", "a", "e", "b", "d"):
            r.ctl("put", p + name, values[name])
        r.ctl("put", p + "a", "3")
        r.ctl("get", p, "--prefix")
        r.ctl("get", p + "c", "--from-key")
        r.ctl("get", p + "b", p + "d")
        r.ctl("get", p, "--prefix", "--limit", "2")
        r.ctl("get", p, "--prefix", "--limit", "2", "-w", "json")
        for target in ("key", "value", "create", "modify", "version"):
            for order in ("ascend", "descend"):
                r.ctl("get", p, "--prefix", "--sort-by=" + target, "--order=" + order)
        r.ctl("get", p, "--prefix", "--sort-by=version", "--order=descend", "--limit", "1")
        r.ctl("get", p, "--prefix", "--order=descend")
        r.ctl("get", p, "--prefix", "--keys-only")
        r.ctl("get", p, "--prefix", "--keys-only", "-w", "json")
        r.ctl("get", p, "--prefix", "--print-value-only")
        r.ctl("get", p, "--prefix", "--sort-by=bogus")
        r.ctl("get", p, "--prefix", "--order=sideways")
        r.ctl("get", p + "a", "--prefix", "--from-key")
        r.ctl("get", p, "--prefix", "--limit", "-1")

    @scenario
    def test_range_end_edges(r):
        p = "kv-edge/"
        for k in ("a", "b", "b\x00", "c", "ca", "d"):
            r.py("put %r" % (p + k), lambda c, k=k: c.put(p + k, k.encode().hex()).header.revision)
        r.ctl("get", p + "b", p + "c")
        r.ctl("get", p + "b", p + "b")
        r.ctl("get", p + "c", p + "b")
        r.ctl("get", p + "c", p + "ca")

        def rng(key, end, **kw):
            return lambda c: [kv.key for kv in c.kvstub.Range(etcdrpc.RangeRequest(
                key=key.encode(), range_end=end.encode(), **kw), 5).kvs]
        r.py("range [b, b\\0)", rng(p + "b", p + "b\x00"))
        r.py("range [b\\0, c)", rng(p + "b\x00", p + "c"))
        r.py("range [d, \\0) from key", rng(p + "d", "\x00"))
        r.py("range [c, c)", rng(p + "c", p + "c"))
        r.py("range [d, a) reversed", rng(p + "d", p + "a"))
        r.py("range [a, e) min_mod_revision", lambda c: [
            (kv.key, kv.mod_revision) for kv in c.kvstub.Range(etcdrpc.RangeRequest(
                key=(p + "a").encode(), range_end=(p + "e").encode()), 5).kvs])
        r.py("count_only [a, e)", lambda c: c.kvstub.Range(etcdrpc.RangeRequest(
            key=(p + "a").encode(), range_end=(p + "e").encode(), count_only=True), 5).count)
        r.py("get_range a..c", lambda c: list(c.get_range(p + "a", p + "c")))
        r.py("delete range [b, c)", lambda c: c.kvstub.DeleteRange(etcdrpc.DeleteRangeRequest(
            key=(p + "b").encode(), range_end=(p + "c").encode()), 5).deleted)
        r.ctl("get", p, "--prefix", "--keys-only")

    @scenario
    def test_revisions_and_versions(r):
        p = "kv-rev/"
        first = json.loads(r.ctl_ok("put", p + "k", "one", "-w", "json"))["header"]["revision"]
        r.ctl("put", p + "k", "two")
        r.ctl("put", p + "k", "three")
        r.ctl("get", p + "k", "-w", "json")
        for delta in (-1, 0, 1, 2):
            r.ctl("get", p + "k", "--rev=%d" % (first + delta))
        r.ctl("get", p + "k", "--rev=%d" % (first + 1000))
        r.ctl("del", p + "k")
        r.ctl("get", p + "k", "--rev=%d" % (first + 2))
        r.ctl("put", p + "k", "reborn")
        r.ctl("get", p + "k", "-w", "json")
        r.py("get with metadata", lambda c: c.get(p + "k"))
        r.py("min_create_revision filter", lambda c: [
            kv.key for kv in c.kvstub.Range(etcdrpc.RangeRequest(
                key=p.encode(), range_end=b"kv-rev0", min_create_revision=first + 1), 5).kvs])
        r.py("max_mod_revision filter", lambda c: [
            kv.key for kv in c.kvstub.Range(etcdrpc.RangeRequest(
                key=p.encode(), range_end=b"kv-rev0", max_mod_revision=first), 5).kvs])
        r.py("range at rev", lambda c: [
            (kv.key, kv.value, kv.version) for kv in c.kvstub.Range(etcdrpc.RangeRequest(
                key=(p + "k").encode(), revision=first + 1), 5).kvs])

    @scenario
    def test_delete(r):
        p = "kv-del/"
        for n in range(6):
            r.ctl("put", "%s%d" % (p, n), "v%d" % n)
        r.ctl("del", p + "0")
        r.ctl("del", p + "0")
        r.ctl("del", p + "1", "--prev-kv")
        r.ctl("del", p + "2", p + "4", "--prev-kv")
        r.ctl("del", p + "4", "--prev-kv", "-w", "json")
        r.ctl("del", p, "--prefix", "--prev-kv")
        r.ctl("get", p, "--prefix")
        r.ctl("put", "~~kv-del/x", "1")
        r.ctl("put", "~~kv-del/y", "2")
        r.ctl("del", "~~kv-del/", "--from-key")
        r.ctl("del", "~~kv-del/", "--from-key")
        r.ctl("del", "")
        r.ctl("del", p + "a", "--prefix", "--from-key")
        r.py("put", lambda c: c.put(p + "py", "v").header.revision)
        r.py("delete prev_kv", lambda c: c.delete(p + "py", prev_kv=True, return_response=True))
        r.py("delete missing", lambda c: c.delete(p + "py"))
        r.py("put again", lambda c: c.put(p + "py2", "w").header.revision)
        r.py("delete_prefix", lambda c: c.delete_prefix(p).deleted)

    @scenario
    def test_compaction(r):
        p = "kv-compact/"
        first = r.py_ok("put old", lambda c: c.put(p + "k", "old").header.revision)
        r.ctl("put", p + "k", "new")
        rev = r.py_ok("put probe", lambda c: c.put(p + "probe", "x").header.revision)
        r.ctl("get", p + "k", "--rev=%d" % first)
        r.ctl("compaction", str(rev))
        r.ctl("get", p + "k", "--rev=%d" % first)
        r.ctl("get", p + "k", "--rev=%d" % (rev - 1))
        r.ctl("get", p + "k", "--rev=%d" % rev)
        r.ctl("compaction", str(rev))
        r.ctl("compaction", str(rev - 1))
        r.ctl("compaction", str(rev + 1000))
        r.ctl("get", p + "k", member=2)
        r.py("range at compacted rev", lambda c: c.kvstub.Range(
            etcdrpc.RangeRequest(key=(p + "k").encode(), revision=first), 5))
        rev2 = r.py_ok("put probe", lambda c: c.put(p + "probe", "y").header.revision)
        r.ctl("compaction", "--physical", str(rev2))
        r.py("python compact again", lambda c: c.compact(rev2))
        r.ctl("get", p, "--prefix")
        r.ctl("get", p + "k", "--rev=%d" % rev2, member=1)

    @scenario
    def test_big_values(r):
        p = "kv-big/"
        big = "".join(chr(ord("a") + i % 26) for i in range(100 * 1024))
        r.ctl("put", p + "etcdctl", big)
        r.ctl("get", p + "etcdctl", mask=values_digest)
        r.py("put 1 MiB", lambda c: c.put(p + "py", b"\xfe" * (1024 * 1024)).header.revision)
        r.py("get 1 MiB", lambda c: (lambda v: (len(v[0]), hashlib.sha256(v[0]).hexdigest(),
                                                v[1].version))(c.get(p + "py")))
        r.py("put over the request limit", lambda c: c.put(p + "huge", b"x" * (1600 * 1024)))
        r.ctl("get", p + "huge")
        r.py("binary key", lambda c: c.put(b"kv-big/\x00\xff\x01", b"\x00\x01").header.revision)
        r.py("get binary key", lambda c: c.get(b"kv-big/\x00\xff\x01"))
        r.ctl("get", p, "--prefix", "--keys-only", "--hex")
        r.py("count", lambda c: c.kvstub.Range(etcdrpc.RangeRequest(
            key=p.encode(), range_end=b"kv-big0", count_only=True), 5).count)

    @scenario
    def test_python_kv(r):
        p = "kv-py/"
        r.py("put", lambda c: c.put(p + "a", "1").header.revision)
        r.py("put prev_kv", lambda c: c.put(p + "a", "2", prev_kv=True))
        r.py("get", lambda c: c.get(p + "a"))
        r.py("get missing", lambda c: c.get(p + "none"))
        r.py("put_if_not_exists new", lambda c: c.put_if_not_exists(p + "b", "x"))
        r.py("put_if_not_exists existing", lambda c: c.put_if_not_exists(p + "b", "y"))
        r.py("replace right", lambda c: c.replace(p + "b", "x", "z"))
        r.py("replace wrong", lambda c: c.replace(p + "b", "x", "w"))
        for n in range(5):
            r.py("put c%d" % n, lambda c, n=n: c.put(p + "c%d" % n, str(9 - n)).header.revision)
        r.py("get_prefix", lambda c: list(c.get_prefix(p)))
        r.py("get_prefix value descend", lambda c: list(
            c.get_prefix(p, sort_order="descend", sort_target="value")))
        r.py("get_prefix keys_only", lambda c: [m.key for _, m in c.get_prefix(p, keys_only=True)])
        r.py("get_prefix_response limit", lambda c: (lambda resp: (resp.count, resp.more,
                                                                   len(resp.kvs)))(
            c.kvstub.Range(etcdrpc.RangeRequest(key=p.encode(), range_end=b"kv-py0", limit=3), 5)))
        r.py("serializable get", lambda c: c.get(p + "a", serializable=True), member=1)
        r.py("get with bad sort", lambda c: list(c.get_prefix(p, sort_order="sideways")))
        r.py("empty key put", lambda c: c.put("", "v"))
        r.py("empty key range", lambda c: c.kvstub.Range(etcdrpc.RangeRequest(key=b""), 5))
        r.py("delete empty key", lambda c: c.kvstub.DeleteRange(
            etcdrpc.DeleteRangeRequest(key=b""), 5))
        r.py("put with missing lease", lambda c: c.put(p + "l", "v", lease=123456789))


if __name__ == "__main__":
    unittest.main()
