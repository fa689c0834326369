"""Hand-built histories for the set, lock, watch, lease and native set checkers."""

import unittest

import checkers
import native


def add(keys, status="ok"):
    return {"keys": keys, "status": status}


class SetCheckerTest(unittest.TestCase):
    def test_everything_acknowledged_present(self):
        r = checkers.check_set([add(["a"]), add(["b", "c"]), add(["d"], "unknown")],
                               {"a", "b", "c"})
        self.assertTrue(r["valid"])
        self.assertEqual(r["unknown_present"], 0)

    def test_lost_acknowledged_write(self):
        r = checkers.check_set([add(["a"]), add(["b"])], {"a"})
        self.assertFalse(r["valid"])
        self.assertIn("acknowledged but lost: b", r["violations"])

    def test_unknown_may_be_present(self):
        r = checkers.check_set([add(["a"], "unknown")], {"a"})
        self.assertTrue(r["valid"])
        self.assertEqual(r["unknown_present"], 1)

    def test_phantom_key(self):
        r = checkers.check_set([add(["a"])], {"a", "z"})
        self.assertFalse(r["valid"])

    def test_txn_applied_in_part(self):
        r = checkers.check_set([add(["a", "a.b"], "unknown")], {"a"})
        self.assertFalse(r["valid"])
        self.assertIn("in part", r["violations"][0])

    def test_never_sent_write_is_not_required(self):
        # A "fail" (never sent) write counts as attempted, not acknowledged.
        r = checkers.check_set([add(["a"], "fail")], set())
        self.assertTrue(r["valid"])

    def test_never_sent_write_present(self):
        r = checkers.check_set([add(["a"], "fail")], {"a"})
        self.assertFalse(r["valid"])


def fenced(token, client, i, status="ok", succeeded=True, revision=None):
    return {"token": token, "value": "t%d.c%d.%d" % (token, client, i), "status": status,
            "succeeded": succeeded, "revision": revision}


def put(key, status="ok", complete=1.0):
    return {"key": key, "status": status, "complete": complete if status == "ok" else None}


def scan(keys, invoke=2.0):
    return {"invoke": invoke, "complete": invoke + 0.1, "keys": keys}


class NativeSetCheckerTest(unittest.TestCase):
    def test_consistent(self):
        adds = [put("a"), put("b"), put("c", complete=3.0), put("d", "unknown")]
        r = native.check_native_set(adds, [scan(["a", "b"]), scan(["a", "b", "c", "d"], 4.0)],
                                    {"a", "b", "c"})
        self.assertTrue(r["valid"], r["violations"])

    def test_lost_acknowledged_put(self):
        r = native.check_native_set([put("a"), put("b")], [], {"a"})
        self.assertFalse(r["valid"])
        self.assertIn("missing at the end", r["violations"][0])

    def test_a_key_seen_twice(self):
        # What a scan that re-reads a range after a split would return.
        r = native.check_native_set([put("a"), put("b")], [scan(["a", "b", "b"])], {"a", "b"})
        self.assertFalse(r["valid"])
        self.assertIn("twice", r["violations"][0])

    def test_a_key_skipped(self):
        # What a scan that misses the right half of a split would return.
        r = native.check_native_set([put("a"), put("b"), put("c")], [scan(["a", "c"])],
                                    {"a", "b", "c"})
        self.assertFalse(r["valid"])
        self.assertIn("acknowledged before it are missing", r["violations"][0])

    def test_a_key_acknowledged_after_the_scan_began_may_be_missing(self):
        r = native.check_native_set([put("a"), put("b", complete=2.05)], [scan(["a"])],
                                    {"a", "b"})
        self.assertTrue(r["valid"], r["violations"])

    def test_a_key_never_written(self):
        r = native.check_native_set([put("a")], [scan(["a", "z"])], {"a", "z"})
        self.assertFalse(r["valid"])
        self.assertEqual(r["violation_count"], 2)


class LockCheckerTest(unittest.TestCase):
    def test_runs_of_one_token(self):
        writes = [fenced(5, 0, 0, revision=6), fenced(5, 0, 1, revision=7),
                  fenced(9, 1, 0, revision=10)]
        history = [(6, "t5.c0.0"), (7, "t5.c0.1"), (10, "t9.c1.0")]
        r = checkers.check_lock(writes, history)
        self.assertTrue(r["valid"], r)
        self.assertEqual(r["holders"], 2)

    def test_interleaved_holders(self):
        history = [(6, "t5.c0.0"), (10, "t9.c1.0"), (11, "t5.c0.1")]
        r = checkers.check_lock([], history)
        self.assertFalse(r["valid"])
        self.assertIn("interleave", r["violations"][0])

    def test_acknowledged_fenced_write_missing(self):
        r = checkers.check_lock([fenced(5, 0, 0, revision=6)], [])
        self.assertFalse(r["valid"])

    def test_refused_write_applied(self):
        r = checkers.check_lock([fenced(5, 0, 0, succeeded=False, revision=7)],
                                [(6, "t5.c0.0")])
        self.assertFalse(r["valid"])

    def test_unknown_write_may_be_missing(self):
        r = checkers.check_lock([fenced(5, 0, 0, status="unknown")], [])
        self.assertTrue(r["valid"])


class LockExclusionTest(unittest.TestCase):
    TRUTH = [(5, "l/a", "PUT", "", 1), (6, "l/b", "PUT", "", 2), (9, "l/a", "DELETE", "", 3),
             (12, "l/b", "DELETE", "", 4)]

    def test_fifo_grants(self):
        r = checkers.check_lock_exclusion([{"key": "l/a", "revision": 5},
                                           {"key": "l/b", "revision": 9}], self.TRUTH, "l/")
        self.assertTrue(r["valid"], r)
        self.assertEqual(r["grants_checked"], 2)

    def test_granted_while_older_waiter_holds(self):
        r = checkers.check_lock_exclusion([{"key": "l/b", "revision": 7}], self.TRUTH, "l/")
        self.assertFalse(r["valid"])

    def test_grant_of_a_vanished_key_is_not_judged(self):
        r = checkers.check_lock_exclusion([{"key": "l/a", "revision": 10}], self.TRUTH, "l/")
        self.assertTrue(r["valid"])
        self.assertEqual(r["grants_checked"], 0)


def ev(rev, key, value, resp, typ="PUT"):
    return (rev, key, typ, value, resp)


class WatchCheckerTest(unittest.TestCase):
    TRUTH = [ev(5, "a", "1", 1), ev(6, "b", "2", 1), ev(6, "c", "3", 1), ev(8, "a", "4", 2)]

    def test_identical_to_history(self):
        watchers = {0: list(self.TRUTH), 1: [ev(5, "a", "1", 1), ev(6, "b", "2", 2),
                                             ev(6, "c", "3", 2)]}
        writes = [{"key": "a", "value": "1", "revision": 5}, {"key": "a", "value": "4",
                                                              "revision": 8}]
        r = checkers.check_watch(watchers, self.TRUTH, writes, 5)
        self.assertTrue(r["valid"], r)

    def test_gap(self):
        r = checkers.check_watch({0: [ev(5, "a", "1", 1), ev(8, "a", "4", 2)]}, self.TRUTH,
                                 [], 5)
        self.assertFalse(r["valid"])
        self.assertIn("missing", r["violations"][0])

    def test_duplicate(self):
        w = list(self.TRUTH[:3]) + [ev(6, "c", "3", 2)] + [self.TRUTH[3]]
        r = checkers.check_watch({0: w}, self.TRUTH, [], 5)
        self.assertFalse(r["valid"])
        self.assertTrue(any("twice" in v for v in r["violations"]))

    def test_out_of_order(self):
        w = [self.TRUTH[3], self.TRUTH[0]]
        r = checkers.check_watch({0: w}, self.TRUTH, [], 5)
        self.assertFalse(r["valid"])

    def test_revision_split_over_responses(self):
        w = [ev(5, "a", "1", 1), ev(6, "b", "2", 1), ev(6, "c", "3", 2), ev(8, "a", "4", 3)]
        r = checkers.check_watch({0: w}, self.TRUTH, [], 5)
        self.assertFalse(r["valid"])
        self.assertTrue(any("split" in v for v in r["violations"]))

    def test_acknowledged_write_not_in_history(self):
        r = checkers.check_watch({}, self.TRUTH, [{"key": "b", "value": "9", "revision": 6}], 5)
        self.assertFalse(r["valid"])

    def test_wrong_value(self):
        w = [ev(5, "a", "x", 1)]
        r = checkers.check_watch({0: w}, self.TRUTH, [], 5)
        self.assertFalse(r["valid"])


class WatchCaughtUpTest(unittest.TestCase):
    TRUTH = WatchCheckerTest.TRUTH

    def test_stuck_watcher(self):
        r = checkers.check_watch({0: list(self.TRUTH[:1])}, self.TRUTH, [], 5,
                                 caught_up_revision=8)
        self.assertFalse(r["valid"])
        self.assertIn("stuck", r["violations"][0])

    def test_caught_up(self):
        r = checkers.check_watch({0: list(self.TRUTH)}, self.TRUTH, [], 5, caught_up_revision=8)
        self.assertTrue(r["valid"], r)

    def test_canceled(self):
        r = checkers.check_watch({0: list(self.TRUTH)}, self.TRUTH, [], 5,
                                 canceled={0: ["compacted"]})
        self.assertFalse(r["valid"])


def rop(i, f, key, value, rev, invoke, complete):
    return {"id": i, "f": f, "key": key, "value": value, "revision": rev, "invoke": invoke,
            "complete": complete, "status": "ok"}


class ReadRevisionTest(unittest.TestCase):
    TRUTH = [ev(5, "k", "a", 1), ev(7, "k", "b", 2)]

    def test_reads_match_their_revisions(self):
        ops = [rop(1, "write", "k", "a", 5, 0, 1), rop(2, "read", "k", "a", 6, 2, 3),
               rop(3, "write", "k", "b", 7, 4, 5), rop(4, "read", "k", "b", 7, 6, 7),
               rop(5, "read", "k", None, 4, 0.5, 0.6)]
        r = checkers.check_read_revisions(ops, self.TRUTH, 4, 7)
        self.assertTrue(r["valid"], r)

    def test_value_differs_from_history(self):
        ops = [rop(1, "read", "k", "a", 7, 0, 1)]
        r = checkers.check_read_revisions(ops, self.TRUTH, 4, 7)
        self.assertFalse(r["valid"])

    def test_revision_goes_back_in_real_time(self):
        ops = [rop(1, "write", "k", "b", 7, 0, 1), rop(2, "read", "k", "a", 5, 2, 3)]
        r = checkers.check_read_revisions(ops, self.TRUTH, 4, 7)
        self.assertFalse(r["valid"])
        self.assertIn("after op 1", r["violations"][0])

    def test_concurrent_ops_may_differ(self):
        ops = [rop(1, "write", "k", "b", 7, 0, 3), rop(2, "read", "k", "a", 5, 1, 2)]
        self.assertTrue(checkers.check_read_revisions(ops, self.TRUTH, 4, 7)["valid"])


def lease(reads, renewals=(), ttl=3, grant=100.0, put_done=100.1, member=0):
    return {"key": "k", "lease": 1, "ttl": ttl, "member": member, "grant_invoke": grant,
            "grant_complete": grant + 0.01, "put": {"status": "ok", "complete": put_done},
            "renewals": list(renewals), "reads": list(reads)}


def read(t, found, term=2, dur=0.01):
    return {"invoke": t, "complete": t + dur, "found": found, "term": term}


class LeaseCheckerTest(unittest.TestCase):
    def test_expires_in_time(self):
        r = checkers.check_lease([lease([read(101, True), read(103.5, False)])], [], 2)
        self.assertTrue(r["valid"], r)

    def test_expired_early(self):
        r = checkers.check_lease([lease([read(101, True), read(102, False)])], [], 2)
        self.assertFalse(r["valid"])
        self.assertIn("before its earliest expiry", r["violations"][0])

    def test_renewal_moves_earliest_expiry(self):
        renew = {"invoke": 102, "complete": 102.01, "ttl": 3, "status": "ok"}
        r = checkers.check_lease([lease([read(104, False)], [renew])], [], 2)
        self.assertFalse(r["valid"])  # renewed at 102: alive until 105 at least

    def test_outlives_its_lease(self):
        r = checkers.check_lease([lease([read(101, True), read(110, True)])], [], 2)
        self.assertFalse(r["valid"])
        self.assertIn("after its latest expiry", r["violations"][0])

    def test_leader_change_extends(self):
        r = checkers.check_lease([lease([read(101, True), read(108, True), read(110, False)])],
                                 [106.0], 2)
        self.assertTrue(r["valid"], r)

    def test_new_term_seen_by_the_read_extends(self):
        # The monitor had not seen the election yet; the read's term had.
        r = checkers.check_lease([lease([read(101, True, term=2), read(108, True, term=3),
                                         read(110, False, term=3)])], [], 2)
        self.assertTrue(r["valid"], r)

    def test_disruption_without_election_extends(self):
        # The leader was paused 104..109 and nobody else was elected.
        reads = [read(101, True), read(111, True), read(113, False)]
        self.assertFalse(checkers.check_lease([lease(reads)], [], 2)["valid"])
        self.assertTrue(checkers.check_lease([lease(reads)], [], 2,
                                             windows=[(104, 109)])["valid"])

    def test_unanswered_renewal_to_paused_member(self):
        renew = {"invoke": 102, "complete": 105, "ttl": None, "status": "unknown"}
        reads = [read(101, True), read(112, True), read(115, False)]
        self.assertFalse(checkers.check_lease([lease(reads, [renew])], [], 2)["valid"])
        # A member was paused from 101 to 110: the renewal may have landed then.
        r = checkers.check_lease([lease(reads, [renew])], [], 2, windows=[(101, 110)])
        self.assertTrue(r["valid"], r)

    def test_unknown_put_not_checked(self):
        rec = lease([read(100.5, False)])
        rec["put"] = {"status": "unknown", "complete": None}
        self.assertTrue(checkers.check_lease([rec], [], 2)["valid"])


if __name__ == "__main__":
    unittest.main()
