"""Election: etcdctl elect (campaign and observe) and raw v3election RPCs."""

import threading
import unittest

import compat
from compat import MSG, scenario

ELECTION = "/v3electionpb.Election/"


def call(r, title, method, request, response, member=0, timeout_s=5):
    return r.py(title, lambda c: compat.unary(r.grpc(member), ELECTION + method, request,
                                              response, timeout_s), member=member)


def leader_key(resp):
    return resp.leader if not isinstance(resp, Exception) else MSG["LeaderKey"]()


class Observer:
    """A raw Observe stream read by a thread into a list, with a deadline."""

    def __init__(self, r, name, member=0, timeout_s=15):
        self.items = []
        self._cond = threading.Condition()
        self._call = compat.server_stream(r.grpc(member), ELECTION + "Observe",
                                          MSG["LeaderRequest"](name=name.encode()),
                                          "LeaderResponse")
        self._timer = threading.Timer(timeout_s, self._call.cancel)
        self._timer.start()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        try:
            for resp in self._call:
                self._add("%s=%s rev=%d" % (resp.kv.key.decode(), resp.kv.value.decode(),
                                            resp.kv.mod_revision))
        except Exception as e:  # noqa: BLE001 - the stream's end is recorded
            self._add(compat.describe_exception(e))

    def _add(self, item):
        with self._cond:
            self.items.append(item)
            self._cond.notify_all()

    def wait(self, count, timeout_s=10):
        with self._cond:
            self._cond.wait_for(lambda: len(self.items) >= count, timeout_s)
            return list(self.items)

    def close(self):
        self._timer.cancel()
        self._call.cancel()
        self._thread.join(timeout=10)


class ElectionCompat(compat.CompatTestCase):

    @scenario
    def test_elect_and_observe(r):
        name = "elect-obs"
        obs = r.bg("elect", "-l", name, member=2, title="observer")
        a = r.bg("elect", name, "proposal-a", title="candidate A")
        a.wait_lines(2, 10)
        a.record()
        obs.wait_lines(2, 10)
        obs.record("observer after A won")
        b = r.bg("elect", name, "proposal-b", member=1, title="candidate B")
        compat.wait_for(lambda: b.output(), 1.0)
        b.record("candidate B while A leads")
        r.ctl("get", name, "--prefix", "--sort-by=create")
        a.stop()
        a.record("candidate A after SIGTERM", exit_code=True)
        b.wait_lines(2, 10)
        b.record("candidate B after A resigned")
        obs.wait_lines(4, 10)
        obs.record("observer after B won")
        b.stop()
        obs.stop()
        r.ctl("get", name, "--prefix")

    @scenario
    def test_observe_existing_leader(r):
        name = "elect-existing"
        a = r.bg("elect", name, "first", title="candidate")
        a.wait_lines(2, 10)
        for i in range(3):
            obs = r.bg("elect", "-l", name, member=i, title="observer %d" % i)
            obs.wait_lines(2, 10)
            obs.stop()
            obs.record()
        a.stop()
        a.record("candidate after SIGTERM", exit_code=True)
        r.ctl("elect")
        r.ctl("elect", name, "a", "b")

    @scenario
    def test_raw_campaign_proclaim_resign(r):
        name = "elect-raw"
        lease = r.py_ok("lease", lambda c: c.lease(60)).id
        r.register_id(lease)
        call(r, "Leader with no candidates", "Leader",
             MSG["LeaderRequest"](name=name.encode()), "LeaderResponse")
        won = call(r, "Campaign", "Campaign",
                   MSG["CampaignRequest"](name=name.encode(), lease=lease, value=b"v1"),
                   "CampaignResponse")
        lk = leader_key(won)
        call(r, "Leader", "Leader", MSG["LeaderRequest"](name=name.encode()), "LeaderResponse",
             member=1)
        call(r, "Proclaim", "Proclaim", MSG["ProclaimRequest"](leader=lk, value=b"v2"),
             "ProclaimResponse")
        call(r, "Leader after Proclaim", "Leader", MSG["LeaderRequest"](name=name.encode()),
             "LeaderResponse", member=2)
        call(r, "Campaign again with the same lease", "Campaign",
             MSG["CampaignRequest"](name=name.encode(), lease=lease, value=b"v3"),
             "CampaignResponse")
        call(r, "Leader after second Campaign", "Leader",
             MSG["LeaderRequest"](name=name.encode()), "LeaderResponse")
        bad = MSG["LeaderKey"](name=name.encode(), key=lk.key + b"x", rev=lk.rev,
                               lease=lk.lease)
        call(r, "Proclaim with a wrong key", "Proclaim",
             MSG["ProclaimRequest"](leader=bad, value=b"nope"), "ProclaimResponse")
        call(r, "Resign with a wrong key", "Resign", MSG["ResignRequest"](leader=bad),
             "ResignResponse")
        call(r, "Resign", "Resign", MSG["ResignRequest"](leader=lk), "ResignResponse")
        call(r, "Leader after Resign", "Leader", MSG["LeaderRequest"](name=name.encode()),
             "LeaderResponse")
        call(r, "Proclaim after Resign", "Proclaim",
             MSG["ProclaimRequest"](leader=lk, value=b"late"), "ProclaimResponse")
        call(r, "Campaign with a missing lease", "Campaign",
             MSG["CampaignRequest"](name=name.encode(), lease=0x7000_0000_4343, value=b"x"),
             "CampaignResponse")
        r.py("revoke", lambda c: c.revoke_lease(lease))

    @scenario
    def test_raw_observe_and_queue(r):
        name = "elect-queue"
        l1 = r.py_ok("lease 1", lambda c: c.lease(60)).id
        l2 = r.py_ok("lease 2", lambda c: c.lease(60)).id
        r.register_id(l1)
        r.register_id(l2)
        obs = Observer(r, name, member=1)
        try:
            won = call(r, "Campaign 1", "Campaign",
                       MSG["CampaignRequest"](name=name.encode(), lease=l1, value=b"one"),
                       "CampaignResponse")
            r.note("observed", obs.wait(1))
            call(r, "Campaign 2 waits (deadline)", "Campaign",
                 MSG["CampaignRequest"](name=name.encode(), lease=l2, value=b"two"),
                 "CampaignResponse", timeout_s=1)
            # The server withdraws the timed-out campaign's key on its own time.
            compat.wait_for(lambda: len(list(r.client(0).get_prefix(name))) == 1, 5)
            call(r, "Proclaim 1", "Proclaim",
                 MSG["ProclaimRequest"](leader=leader_key(won), value=b"one-b"),
                 "ProclaimResponse")
            r.note("observed", obs.wait(2))
            r.py("revoke lease 1", lambda c: c.revoke_lease(l1))
            call(r, "Leader after revoke", "Leader", MSG["LeaderRequest"](name=name.encode()),
                 "LeaderResponse")
            won2 = call(r, "Campaign 2 again", "Campaign",
                        MSG["CampaignRequest"](name=name.encode(), lease=l2, value=b"two"),
                        "CampaignResponse")
            r.note("observed", obs.wait(3))
            call(r, "Resign 2", "Resign", MSG["ResignRequest"](leader=leader_key(won2)),
                 "ResignResponse")
        finally:
            obs.close()
        r.py("revoke lease 2", lambda c: c.revoke_lease(l2))
        r.ctl("get", name, "--prefix")


if __name__ == "__main__":
    unittest.main()
