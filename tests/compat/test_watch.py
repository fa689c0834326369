"""Watch: etcdctl watch in the background, python-etcd3 watches and raw Watch streams.

Watches start at an explicit revision wherever possible, so that what they
report does not depend on how soon the stream is established. A raw stream's
responses are written event by event: how a server batches events into
responses is its own business.
"""

import threading
import time
import unittest

import etcd3.etcdrpc as etcdrpc
from etcd3.etcdrpc import kv_pb2

import compat
from compat import cluster
from compat import scenario


def put(r, key, value, member=0):
    return r.py_ok("put %s=%s" % (key, value),
                   lambda c: c.put(key, value).header.revision, member=member)


def watch_ctl(r, args, lines, member=0, timeout_s=10):
    """Runs `etcdctl watch args` until `lines` lines arrived (bounded), records it.

    lines=None waits for etcdctl to exit by itself (a watch the server ends).
    """
    b = r.bg("watch", *args, member=member)
    if lines is None:
        ok = compat.wait_for(lambda: b.proc.poll() is not None, timeout_s)
    else:
        ok = b.wait_lines(lines, timeout_s)
    b.stop()
    b.record(exit_code=lines is None)
    if not ok:
        r.note("watch output incomplete after %ss" % timeout_s)


class RawWatch:
    """A raw Watch stream whose responses are written as flat items."""

    def __init__(self, r, member=0):
        self.r = r
        self.stream = cluster.WatchStream(r.cluster.members[member])
        self.items = []

    def send(self, req):
        self.stream._requests.put(req)

    def create(self, key, range_end=None, **kw):
        req = etcdrpc.WatchCreateRequest(key=key.encode(), **kw)
        if range_end is not None:
            req.range_end = range_end.encode()
        self.send(etcdrpc.WatchRequest(create_request=req))

    def cancel(self, watch_id):
        self.send(etcdrpc.WatchRequest(cancel_request=etcdrpc.WatchCancelRequest(
            watch_id=watch_id)))

    def _flatten(self, resp):
        out = []
        if resp.created:
            out.append("created watch %d" % resp.watch_id)
        for ev in resp.events:
            item = "watch %d: %s %s=%s create=%d mod=%d version=%d" % (
                resp.watch_id, kv_pb2.Event.EventType.Name(ev.type), ev.kv.key.decode(),
                ev.kv.value.decode(), ev.kv.create_revision, ev.kv.mod_revision, ev.kv.version)
            if ev.HasField("prev_kv"):
                item += " prev=%s@%d" % (ev.prev_kv.value.decode(), ev.prev_kv.mod_revision)
            out.append(item)
        if resp.compact_revision:
            out.append("watch %d: compact_revision %d" % (resp.watch_id, resp.compact_revision))
        if resp.canceled:
            out.append("watch %d: canceled %r" % (resp.watch_id, resp.cancel_reason))
        if not out:
            out.append("watch %d: no events, header revision %d" % (resp.watch_id,
                                                                   resp.header.revision))
        return out

    def read(self, count, timeout_s=10):
        """Reads until `count` items in all (bounded); returns the new ones."""
        start = len(self.items)
        deadline = time.monotonic() + timeout_s
        while len(self.items) < count:
            try:
                resp = self.stream.next_response(max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                self.items.append("(no more responses within %ss)" % timeout_s)
                break
            except Exception as e:  # noqa: BLE001 - the stream's end is recorded
                self.items.append(compat.describe_exception(e))
                break
            self.items.extend(self._flatten(resp))
        # Streams interleave their watches as they like; each watch's own
        # order is what counts.
        new = sorted(self.items[start:], key=lambda item: item.split(":")[0])
        self.r.note("raw watch responses", new)
        return new

    def close(self):
        self.stream.close()


class WatchCompat(compat.CompatTestCase):

    @scenario
    def test_history_prefix(r):
        p = "watch-hist/"
        start = r.revision() + 1
        put(r, p + "a", "1", member=1)
        put(r, p + "b", "2", member=2)
        put(r, p + "a", "3")
        r.ctl("del", p + "a")
        put(r, "watch-hist-other", "x")
        put(r, p + "c/d", "4")
        watch_ctl(r, [p, "--prefix", "--rev=%d" % start], 14)
        watch_ctl(r, [p + "a", "--rev=%d" % start], 8, member=2)
        watch_ctl(r, [p + "b", p + "c", "--rev=%d" % start], 3, member=1)
        watch_ctl(r, [p + "a", "--rev=%d" % (start + 3)], 2)

    @scenario
    def test_prev_kv(r):
        p = "watch-prev/"
        start = r.revision() + 1
        put(r, p + "k", "1")
        put(r, p + "k", "2")
        r.ctl("del", p + "k")
        put(r, p + "k", "3")
        watch_ctl(r, [p + "k", "--prev-kv", "--rev=%d" % start], 14)
        watch_ctl(r, [p, "--prefix", "--prev-kv", "--rev=%d" % (start + 2)], 7)

    @scenario
    def test_live_and_json(r):
        p = "watch-live/"
        start = r.revision() + 1
        b = r.bg("watch", p, "--prefix", "--rev=%d" % start)
        put(r, p + "x", "1")
        put(r, p + "y", "2", member=2)
        r.ctl("del", p + "x", member=1)
        b.wait_lines(8, 10)
        b.stop()
        b.record()
        single = put(r, p + "single", "v")
        put(r, "watch-live-other", "x")
        watch_ctl(r, [p + "single", "--rev=%d" % single, "-w", "json"], 1)

    @scenario
    def test_compacted(r):
        p = "watch-compact/"
        first = put(r, p + "k", "1")
        put(r, p + "k", "2")
        last = put(r, p + "k", "3")
        r.ctl("compaction", str(last))
        watch_ctl(r, [p + "k", "--rev=%d" % first], None)
        watch_ctl(r, [p + "k", "--rev=%d" % last], 3)
        w = RawWatch(r)
        try:
            w.create(p + "k", start_revision=first)
            w.read(3)
            w.create(p + "k", start_revision=last)
            w.read(5)
        finally:
            w.close()
        r.py("python watch at compacted revision",
             lambda c: c.add_watch_callback(p + "k", lambda resp: None, start_revision=first))

    @scenario
    def test_raw_stream(r):
        p = "watch-raw/"
        w = RawWatch(r, member=1)
        try:
            start = r.revision() + 1
            w.create(p + "a", start_revision=start)
            w.read(1)
            w.create(p, range_end=p[:-1] + "0", start_revision=start, prev_kv=True)
            w.read(2)
            w.create(p, range_end=p[:-1] + "0", start_revision=start,
                     filters=[etcdrpc.WatchCreateRequest.NOPUT])
            w.read(3)
            put(r, p + "a", "1")
            put(r, p + "b", "2")
            r.ctl("del", p + "a")
            w.read(3 + 2 + 3 + 1)
            w.cancel(1)
            w.read(10)
            put(r, p + "a", "again")
            w.read(11)
            w.cancel(77)
            w.read(12, timeout_s=2)
            w.create(p + "future", start_revision=r.revision() + 2)
            w.read(13)
            put(r, p + "future", "skipped")
            put(r, p + "future", "seen")
            w.read(14)
        finally:
            w.close()

    @scenario
    def test_python_watch(r):
        p = "watch-py/"
        start = r.revision() + 1
        put(r, p + "a", "1")
        put(r, p + "b", "2")
        r.ctl("del", p + "a")
        put(r, p + "a", "3")
        for title, add, want in (
                ("key", lambda c, col: c.add_watch_callback(p + "a", col,
                                                            start_revision=start), 3),
                ("prefix", lambda c, col: c.add_watch_prefix_callback(
                    p, col, start_revision=start), 4),
                ("prefix prev_kv", lambda c, col: c.add_watch_prefix_callback(
                    p, col, start_revision=start + 1, prev_kv=True), 3),
                ("range", lambda c, col: c.add_watch_callback(
                    p + "b", col, range_end=p + "c", start_revision=start), 1)):
            col = compat.Collector()
            ids = []
            r.py("add_watch (%s)" % title, lambda c: ids.append(add(c, col)) or
                 isinstance(ids[0], int))
            r.note("events (%s)" % title, col.wait(want))
            r.py("cancel_watch", lambda c: [c.cancel_watch(i) for i in ids])
        iterator_events = []

        def iterate(c):
            # python-etcd3's iterator waits for events without a bound: it
            # runs on its own thread, and a missing event ends it by cancel.
            events, cancel = c.watch(p + "b", start_revision=start)

            def first():
                for ev in events:
                    iterator_events.append(compat.plain(ev))
                    break
            t = threading.Thread(target=first, daemon=True)
            t.start()
            t.join(10)
            cancel()
            t.join(10)
            if not iterator_events:
                raise TimeoutError("no event from the watch iterator within 10s")
            return iterator_events
        r.py("watch iterator first event", iterate)
        r.py("watch_once with start revision",
             lambda c: c.watch_once(p + "a", timeout=5, start_revision=start))


if __name__ == "__main__":
    unittest.main()
