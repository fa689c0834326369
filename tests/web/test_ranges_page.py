"""The ranges web page (GET /ranges on a member's metrics port) in a real
browser: headless Chromium loads it from a 4-member cluster where a range was
split, moved and merged, runs its script, and the test reads what the page
then shows (the DOM after the script drew it).

Run by `make test-web` (which installs Debian's chromium first) with
CONCLAVE_BIN set; CONCLAVE_WEB_SCREENSHOT=PATH also saves a screenshot (the
one in docs/SERVER.md).
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, os.pardir, os.pardir)
sys.path.insert(0, os.path.join(ROOT, "clients", "python"))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

import cluster  # noqa: E402
import conclave  # noqa: E402


def browser():
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    raise RuntimeError("no chromium: `make test-web` installs it (Debian package chromium)")


def load(url, extra=(), budget_ms=6000):
    """Chromium's rendering of `url` after its scripts ran for `budget_ms` of
    virtual time: the DOM as HTML (or what `extra` asks for instead)."""
    with tempfile.TemporaryDirectory() as profile:
        cmd = [browser(), "--headless", "--no-sandbox", "--disable-gpu",
               "--user-data-dir=" + profile, "--virtual-time-budget=%d" % budget_ms]
        cmd += list(extra) or ["--dump-dom"]
        out = subprocess.run(cmd + [url], capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise RuntimeError("chromium failed (%d): %s" % (out.returncode, out.stderr[-2000:]))
    return out.stdout


def rows(dom, table_id):
    """The text of each body row of table `table_id`, cells joined by |."""
    body = re.search(r'<table id="%s">.*?<tbody>(.*?)</tbody>' % table_id, dom, re.S)
    assert body, "no table %s in the page" % table_id
    out = []
    for row in re.findall(r"<tr>(.*?)</tr>", body.group(1), re.S):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        out.append("|".join(re.sub(r"<[^>]+>", "", c) for c in cells))
    return out


class RangesPageTest(cluster.ClusterTestCase):
    CLUSTER_SIZE = 4
    EXTRA_FLAGS = ("--initial-range-count", "2", "--range-replicas", "3",
                   "--range-placement-interval", "0", "--labels", "zone=z1,rack=r1",
                   "--range-split-bytes", "0", "--range-split-qps", "0")

    def test_the_page_shows_members_ranges_and_the_timeline(self):
        members = self.cluster.members
        nodes = sorted(self.cluster.member_id(k) for k in range(4))
        ids = {self.cluster.member_id(k): k for k in range(4)}
        eps = ["127.0.0.1:%d" % m.client_port for m in members]
        with conclave.Client(eps) as c:
            cluster.wait_until(lambda: c.put(b"web/a", b"1"), 30, what="a first put")
            for i in range(50):
                c.put(b"web/%02d" % i, b"x" * 100)
            left, right = c.split(b"web/25")
            holder = next(p.node_id for p in right.replicas)
            outside = next(n for n in nodes if n not in [p.node_id for p in right.replicas])
            with conclave.Client([eps[ids[holder]]]) as hc:
                hc.move_replica(right.range_id, holder, outside)
            merged = c.merge(b"web/00")
        url = members[0].metrics_url + "/ranges"
        dom = load(url)
        # The script ran: the status line names the member asked.
        self.assertIn("as member %x sees it" % self.cluster.member_id(0), dom)
        # Members: all four, up, with their replica counts.
        member_rows = rows(dom, "nodes")
        self.assertEqual(sorted(r.split("|")[0] for r in member_rows), ["%x" % n for n in nodes])
        self.assertTrue(all(r.split("|")[1].startswith("up") for r in member_rows), member_rows)
        self.assertTrue(all(r.split("|")[2] == "zone=z1,rack=r1" for r in member_rows), member_rows)
        # Ranges: the merged one with its leader and replicas, not the one it took in.
        range_rows = {r.split("|")[0]: r.split("|") for r in rows(dom, "ranges")}
        self.assertIn(str(merged.range_id), range_rows)
        self.assertNotIn(str(right.range_id), range_rows)
        shown = range_rows[str(merged.range_id)]
        self.assertEqual(shown[2], conclave_key(merged.end))
        self.assertIn(shown[4], ["%x" % n for n in nodes])  # its leader
        # The timeline: the split, the move and the merge, as markers and rows.
        kinds = [r.split("|")[1] for r in rows(dom, "events")]
        for kind in ("split", "move", "merge"):
            self.assertIn(kind, kinds)
        for cls in ("split", "move", "merge"):
            self.assertRegex(dom, r'<circle [^>]*class="%s"' % cls)
        shot = os.environ.get("CONCLAVE_WEB_SCREENSHOT")
        if shot:
            load(url, ["--screenshot=" + os.path.abspath(shot), "--window-size=1000,1000",
                       "--hide-scrollbars"])
            self.assertTrue(os.path.getsize(shot) > 0)


def conclave_key(b):
    """A key as the page prints it: printable ASCII but the backslash, \\xNN otherwise."""
    return "".join(chr(c) if 0x20 <= c < 0x7f and c != 0x5c else "\\x%02x" % c for c in b)


if __name__ == "__main__":
    unittest.main()
