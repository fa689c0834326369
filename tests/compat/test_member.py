"""Member: list, add (voter and learner), promote, update and remove.

Members added here are never started: what is compared is the API's answers
and the lists that result. Their peer URLs point at closed local ports.
"""

import json
import re
import time
import unittest

import compat
from compat import scenario


def sort_initial_cluster(out, err):
    """ETCD_INITIAL_CLUSTER follows the member list's (id) order; sort it."""
    def fix(m):
        return 'ETCD_INITIAL_CLUSTER="%s"' % ",".join(sorted(m.group(1).split(",")))
    return re.sub(r'ETCD_INITIAL_CLUSTER="([^"]*)"', fix, out), err


def sort_members_json(out, err):
    """members in -w json come in id order; sort them by name and peer URLs."""
    try:
        doc = json.loads(out)
    except ValueError:
        return out, err
    if isinstance(doc, dict) and "members" in doc:
        doc["members"].sort(key=lambda m: (m.get("name", ""), m.get("peerURLs", [])))
    return json.dumps(doc, separators=(",", ":")) + "\n", err


def member_add(r, *args, member=0):
    """etcdctl member add; returns the new member's hex id (or None)."""
    res = r.ctl("member", "add", *args, member=member, mask=sort_initial_cluster)
    m = re.match(r"Member\s+([0-9a-f]+) added", res.stdout)
    if m:
        r.register_id(int(m.group(1), 16))
        return m.group(1)
    return None


def member_list(r, member=0):
    r.ctl("member", "list", member=member, sort=True)


def members_when(client, done, timeout_s=5.0):
    """The sorted (name, peer URLs) of the members, read until done(list) holds
    or timeout_s passes (then the last list read)."""
    deadline = time.monotonic() + timeout_s
    while True:
        ms = sorted((m.name, list(m.peer_urls)) for m in client.members)
        if done(ms) or time.monotonic() >= deadline:
            return ms
        time.sleep(0.1)


class MemberCompat(compat.CompatTestCase):
    # etcd refuses reconfiguration ("unhealthy cluster") until every member
    # has been connected for its health interval, five seconds.
    SETTLE_S = 6

    @scenario
    def test_list(r):
        for i in range(3):
            member_list(r, member=i)
        r.ctl("member", "list", "-w", "json", mask=sort_members_json)
        r.ctl("member", "list", "-w", "json", member=2, mask=sort_members_json)
        r.py("members", lambda c: sorted((m.name, list(m.peer_urls), list(m.client_urls))
                                         for m in c.members))

    @scenario
    def test_add_remove_voter(r):
        new = member_add(r, "n4", "--peer-urls=http://127.0.0.1:1")
        member_list(r)
        member_list(r, member=2)
        r.ctl("endpoint", "health")
        if new:
            r.ctl("member", "remove", new, member=1)
            r.ctl("member", "remove", new)
        member_list(r)
        r.ctl("member", "add", "n5")
        r.ctl("member", "add", "n5", "--peer-urls=not a url")
        r.ctl("member", "add", "n5", "--peer-urls=%s" % r.cluster.members[1].peer_url)
        r.ctl("member", "remove", "abcdef")
        r.ctl("member", "remove", "zz")
        r.ctl("member", "remove")

    @scenario
    def test_learner(r):
        learner = member_add(r, "learner1", "--peer-urls=http://127.0.0.1:2", "--learner")
        member_list(r)
        r.ctl("member", "list", "-w", "json", mask=sort_members_json)
        if learner:
            r.ctl("member", "promote", learner)
            r.ctl("member", "promote", learner, member=2)
        member_add(r, "learner2", "--peer-urls=http://127.0.0.1:3", "--learner")
        member_list(r)
        r.ctl("member", "promote", "%x" % r.system.member_ids[0])
        r.ctl("member", "promote", "abcdef")
        if learner:
            r.ctl("member", "remove", learner)
        member_list(r)

    @scenario
    def test_update(r):
        new = member_add(r, "n6", "--peer-urls=http://127.0.0.1:4")
        if new:
            r.ctl("member", "update", new, "--peer-urls=http://127.0.0.1:5,http://127.0.0.1:6")
            member_list(r, member=1)
            r.ctl("member", "update", new,
                  "--peer-urls=%s" % r.cluster.members[2].peer_url)
            r.ctl("member", "remove", new)
        r.ctl("member", "update", "abcdef", "--peer-urls=http://127.0.0.1:7")
        r.ctl("member", "update", "%x" % r.system.member_ids[0],
              "--peer-urls=%s" % r.cluster.members[0].peer_url)
        member_list(r)

    @scenario
    def test_python_members(r):
        added = r.py("add_member", lambda c: (lambda m: (m.name, list(m.peer_urls),
                                                         list(m.client_urls)))(
            c.add_member(["http://127.0.0.1:8"])))
        ids = [m.id for m in r.client(0).members if not m.name]
        for i in ids:
            r.register_id(i)
        r.py("members", lambda c: sorted((m.name, list(m.peer_urls)) for m in c.members))
        for i in ids:
            r.py("update_member", lambda c: c.update_member(i, ["http://127.0.0.1:9"]))
            # Another member's list, once it has applied the update (etcd
            # serves it from that member's own view, which a loaded machine
            # may leave behind for a moment).
            r.py("members after update", lambda c: members_when(
                c, lambda ms: any("http://127.0.0.1:9" in urls for _, urls in ms)), member=1)
            r.py("remove_member", lambda c: c.remove_member(i))
            # Answered after a consensus round on etcd, which a loaded
            # machine can take longer than the client waits for.
            r.py("remove_member again", lambda c: c.remove_member(i), timeout_retries=2)
        r.note("added one member", len(ids) == 1 and not isinstance(added, Exception))
        r.py("members at the end", lambda c: sorted(m.name for m in c.members))


if __name__ == "__main__":
    unittest.main()
