"""Unit tests for the Conclave register linearizability checker.

Run: cd tests/faults && python3 -m unittest -v test_linearizability
"""

import random
import time
import unittest

from linearizability import check_register, render_violation


def R(c, inv, comp, value, key="x", status="ok"):
    return dict(client=c, key=key, f="read", value=value, invoke=inv,
                complete=comp, status=status)


def W(c, inv, comp, value, key="x", status="ok"):
    return dict(client=c, key=key, f="write", value=value, invoke=inv,
                complete=comp, status=status)


def C(c, inv, comp, expected, new, succeeded=None, key="x", status="ok"):
    return dict(client=c, key=key, f="cas", expected=expected, value=new,
                succeeded=succeeded, invoke=inv, complete=comp, status=status)


def U(op):
    """Mark an op as timed out: outcome unknown, never completed."""
    op = dict(op, status="unknown", complete=None)
    op.pop("succeeded", None)
    return op


def hist(*ops):
    return [dict(o, id=i + 1) for i, o in enumerate(ops)]


def generate(seed, n_ops=2000, clients=5, p_unknown=0.025, p_fail=0.01, keys=("k",)):
    """Simulate a linearizable register: every op takes effect atomically at a
    random point inside its interval (timed-out ops: maybe, at any later time)."""
    rng = random.Random(seed)
    free = [0.0] * clients
    pending = []  # (linearization point or None, op)
    for n in range(n_ops):
        c = min(range(clients), key=free.__getitem__)
        inv = free[c] + rng.uniform(0.0, 0.3)
        dur = rng.uniform(0.02, 1.0)
        r = rng.random()
        f = "read" if r < 0.45 else ("write" if r < 0.8 else "cas")
        op = dict(id=n + 1, client=c, key=rng.choice(keys), f=f, value=None,
                  invoke=inv, complete=inv + dur, status="ok")
        if f != "read":
            op["value"] = f"v{n + 1}"
        lin = inv + rng.uniform(0.0, dur)
        u = rng.random()
        if u < p_unknown:
            op["status"], op["complete"] = "unknown", None
            free[c] = inv + 2.0  # client timeout
            lin = inv + rng.uniform(0.0, 6.0) if rng.random() < 0.5 else None
        elif u < p_unknown + p_fail:
            op["status"], lin = "fail", None
            free[c] = op["complete"]
        else:
            free[c] = op["complete"]
        pending.append((lin, op))
    current = {k: None for k in keys}
    recent = {k: [None] for k in keys}
    for lin, op in sorted(pending, key=lambda p: (p[0] is None, p[0] or 0.0)):
        k = op["key"]
        if op["f"] == "cas":
            # expected is chosen at the linearization point: ~half succeed
            if rng.random() < 0.5:
                op["expected"] = current[k]
            else:
                op["expected"] = rng.choice(recent[k][-6:])
        if lin is None:
            continue
        if op["f"] == "read":
            op["value"] = current[k]
        elif op["f"] == "write":
            current[k] = op["value"]
            recent[k].append(op["value"])
        else:
            ok = op["expected"] == current[k]
            if op["status"] == "ok":
                op["succeeded"] = ok
            if ok:
                current[k] = op["value"]
                recent[k].append(op["value"])
    return [op for _, op in sorted(pending, key=lambda p: p[1]["id"])]


def inject_stale_read(ops):
    """Make one mid-history ok read return the value of an early ok write that
    a later ok write provably overwrote before the read started."""
    writes = [o for o in ops if o["f"] == "write" and o["status"] == "ok"]
    w1 = writes[0]
    w2 = next(w for w in writes if w["invoke"] > w1["complete"])
    reads = [o for o in ops if o["f"] == "read" and o["status"] == "ok"
             and o["invoke"] > w2["complete"] and o["value"] != w1["value"]]
    r = reads[len(reads) // 2]
    r["value"] = w1["value"]
    return r


def brute_force(ops):
    """Reference answer by exhaustive search over orders (tiny histories)."""
    kept = [o for o in ops if o["status"] == "ok" or
            (o["status"] == "unknown" and o["f"] != "read")]
    for key in {o["key"] for o in kept}:
        kops = [o for o in kept if o["key"] == key]
        end = [o["complete"] if o["status"] == "ok" else float("inf") for o in kops]
        must = {i for i, o in enumerate(kops) if o["status"] == "ok"}

        def search(done, value):
            if must <= done:
                return True
            for i, o in enumerate(kops):
                if i in done or any(j not in done and end[j] < o["invoke"] for j in must):
                    continue
                nxt = value
                if o["f"] == "read" and value != o["value"]:
                    continue
                if o["f"] == "write":
                    nxt = o["value"]
                elif o["f"] == "cas":
                    holds = value == o["expected"]
                    if o["status"] == "ok" and holds != o["succeeded"]:
                        continue
                    nxt = o["value"] if holds else value
                if search(done | {i}, nxt):
                    return True
            return False

        if not search(frozenset(), None):
            return False
    return True


def random_small_history(rng, n):
    ops = []
    for i in range(n):
        inv = float(rng.randrange(10))
        status = rng.choices(["ok", "unknown", "fail"], [6, 3, 1])[0]
        o = dict(id=i + 1, client=i, key=rng.choice("xxy"), f=rng.choice(["read", "write", "cas"]),
                 invoke=inv, complete=None if status == "unknown" else inv + rng.randrange(4),
                 status=status, value=rng.choice(["a", "b", "c", None]))
        if o["f"] != "read":
            o["value"] = rng.choice("abc")
        if o["f"] == "cas":
            o["expected"] = rng.choice(["a", "b", "c", None])
            if status == "ok":
                o["succeeded"] = rng.random() < 0.5
        ops.append(o)
    return ops


class Basics(unittest.TestCase):
    def check(self, ops, valid, **kw):
        res = check_register(ops, **kw)
        self.assertEqual(res["valid"], valid, res)
        return res

    def test_empty_history(self):
        res = self.check([], True)
        self.assertEqual((res["ops"], res["keys"]), (0, 0))

    def test_write_then_read(self):
        self.check(hist(W(1, 0, 1, "a"), R(2, 2, 3, "a")), True)

    def test_read_never_written_key_is_none(self):
        self.check(hist(R(1, 0, 1, None)), True)
        self.check(hist(R(1, 0, 1, None, key="y"), W(2, 0, 1, "a", key="x")), True)

    def test_stale_read_after_completed_write(self):
        self.check(hist(W(1, 0, 1, "a"), W(1, 2, 3, "b"), R(2, 4, 5, "a")), False)
        self.check(hist(W(1, 0, 1, "a"), R(2, 2, 3, None)), False)

    def test_concurrent_write_and_read_either_value(self):
        self.check(hist(W(1, 0, 1, "a"), W(1, 2, 6, "b"), R(2, 3, 4, "a")), True)
        self.check(hist(W(1, 0, 1, "a"), W(1, 2, 6, "b"), R(2, 3, 4, "b")), True)

    def test_two_concurrent_writes_either_order(self):
        base = (W(1, 0, 5, "a"), W(2, 0, 5, "b"))
        self.check(hist(*base, R(3, 6, 7, "a")), True)
        self.check(hist(*base, R(3, 6, 7, "b")), True)
        self.check(hist(*base, R(3, 6, 7, "a"), R(3, 8, 9, "b")), False)

    def test_read_of_value_never_written(self):
        self.check(hist(W(1, 0, 1, "a"), R(2, 0, 5, "zz")), False)

    def test_flip_flop(self):
        self.check(hist(W(1, 0, 1, "a"), W(1, 2, 10, "b"), R(2, 3, 4, "b"),
                        R(2, 5, 6, "a")), False)

    def test_sequentially_consistent_but_not_linearizable(self):
        # reordering the clients' ops would explain it, real time forbids it
        self.check(hist(W(1, 0, 1, "a"), R(2, 2, 3, None)), False)
        self.check(hist(W(1, 0, 1, "a"), W(1, 2, 3, "b"), R(2, 4, 5, "b"),
                        R(3, 6, 7, "a")), False)

    def test_equal_timestamps_are_concurrent(self):
        self.check(hist(W(1, 0, 2, "a"), R(2, 2, 3, None)), True)
        self.check(hist(W(1, 0, 2, "a"), R(2, 2.001, 3, None)), False)

    def test_backtracking_needed(self):
        # greedy (invoke order) linearizes w-a before w-b; only b, r-b, a, r-a works
        self.check(hist(W(1, 0, 10, "a"), W(2, 0.5, 10, "b"), R(3, 1, 2, "b"),
                        R(3, 11, 12, "a")), True)
        self.check(hist(W(1, 0, 10, "a"), W(2, 0.5, 10, "b"), R(3, 11, 12, "a")), True)

    def test_long_sequential_history(self):
        ops, t = [], 0.0
        for n in range(3000):
            ops.append(W(n % 3, t, t + 0.5, f"v{n}") if n % 2 == 0
                       else R(n % 3, t, t + 0.5, f"v{n - 1}"))
            t += 1.0
        start = time.monotonic()
        res = self.check(hist(*ops), True)
        self.assertEqual(res["ops"], 3000)
        self.assertLess(time.monotonic() - start, 5.0)


class Cas(unittest.TestCase):
    def check(self, ops, valid):
        self.assertEqual(check_register(ops)["valid"], valid)

    def test_cas_success(self):
        self.check(hist(W(1, 0, 1, "a"), C(2, 2, 3, "a", "b", True), R(3, 4, 5, "b")), True)
        self.check(hist(C(1, 0, 1, None, "a", True), R(2, 2, 3, "a")), True)

    def test_cas_success_but_expected_never_current(self):
        self.check(hist(W(1, 0, 1, "a"), C(2, 2, 3, "x", "y", True)), False)

    def test_cas_failure(self):
        self.check(hist(W(1, 0, 1, "a"), C(2, 2, 3, "x", "y", False), R(3, 4, 5, "a")), True)

    def test_cas_failed_although_value_equalled_expected(self):
        self.check(hist(W(1, 0, 1, "a"), C(2, 2, 3, "a", "b", False)), False)
        # a concurrent write could explain the failure
        self.check(hist(W(1, 0, 1, "a"), C(2, 2, 3, "a", "b", False), W(3, 2, 3, "c")), True)

    def test_concurrent_cas_race(self):
        base = W(1, 0, 1, "a")
        self.check(hist(base, C(2, 2, 5, "a", "b", True), C(3, 2, 5, "a", "c", False)), True)
        self.check(hist(base, C(2, 2, 5, "a", "b", True), C(3, 2, 5, "a", "c", True)), False)


class Unknown(unittest.TestCase):
    def check(self, ops, valid):
        res = check_register(ops)
        self.assertEqual(res["valid"], valid, res)
        return res

    def test_unknown_write_took_effect(self):
        self.check(hist(W(1, 0, 1, "a"), U(W(2, 2, 3, "b")), R(3, 5, 6, "b")), True)

    def test_unknown_write_never_seen(self):
        self.check(hist(W(1, 0, 1, "a"), U(W(2, 2, 3, "b")), R(3, 5, 6, "a"),
                        R(3, 7, 8, "a")), True)

    def test_unknown_write_seen_then_gone(self):
        self.check(hist(W(1, 0, 1, "a"), U(W(2, 2, 3, "b")), R(3, 5, 6, "b"),
                        R(3, 7, 8, "a")), False)

    def test_unknown_write_seen_before_invoked(self):
        self.check(hist(R(1, 0, 1, "b"), U(W(2, 2, 3, "b"))), False)

    def test_unknown_write_explains_failed_cas(self):
        ops = [W(1, 0, 1, "a"), U(W(2, 2, 3, "z")), C(3, 4, 5, "a", "c", False)]
        self.check(hist(*ops), True)
        self.check(hist(*ops, R(3, 6, 7, "a")), False)

    def test_unknown_cas(self):
        self.check(hist(W(1, 0, 1, "a"), U(C(2, 2, 3, "a", "b")), R(3, 4, 5, "b")), True)
        self.check(hist(W(1, 0, 1, "a"), U(C(2, 2, 3, "a", "b")), R(3, 4, 5, "a")), True)
        # compare could never hold, so its value cannot appear
        self.check(hist(W(1, 0, 1, "a"), U(C(2, 2, 3, "x", "b")), R(3, 4, 5, "b")), False)

    def test_unknown_read_ignored(self):
        res = self.check(hist(W(1, 0, 1, "a"), U(R(2, 2, 3, "zz"))), True)
        self.assertEqual(res["ops"], 1)

    def test_failed_ops_ignored(self):
        self.check(hist(W(1, 0, 1, "a"), W(2, 2, 3, "b", status="fail"), R(3, 4, 5, "a")), True)
        self.check(hist(W(1, 0, 1, "a"), W(2, 2, 3, "b", status="fail"), R(3, 4, 5, "b")), False)

    def test_many_pending_unknown_writes(self):
        # 40 timed-out writes stay pending forever; none observed except one
        ops = [W(0, 0, 1, "a")]
        ops += [U(W(1 + n % 4, 2 + n, 3 + n, f"u{n}")) for n in range(40)]
        t = 50.0
        for n in range(200):
            ops.append(C(5, t, t + 1, "zz", f"c{n}", False))
            ops.append(R(6, t, t + 1, "u7" if n >= 100 else "a"))
            t += 2
        start = time.monotonic()
        self.check(hist(*ops), True)
        self.assertLess(time.monotonic() - start, 2.0)


class Keys(unittest.TestCase):
    def test_only_one_key_invalid(self):
        ops = hist(W(1, 0, 1, "a", key="x"), R(2, 2, 3, "a", key="x"),
                   W(1, 0, 1, "b", key="y"), W(1, 2, 3, "c", key="y"), R(2, 4, 5, "b", key="y"))
        res = check_register(ops)
        self.assertIs(res["valid"], False)
        self.assertEqual(res["invalid_keys"], ["y"])
        self.assertEqual(res["keys"], 2)
        v = res["violations"][0]
        self.assertEqual(v["key"], "y")
        self.assertEqual(v["stuck_op"], 5)
        self.assertIn(5, v["ops"])
        self.assertIn("op id 5", v["message"])
        self.assertIn("'c' current", v["message"])
        text = render_violation(ops, v)
        self.assertIn("'y'", text)
        self.assertIn("id=5", text)

    def test_keys_are_independent(self):
        # invalid if x and y were one register, valid per key
        ops = hist(W(1, 0, 1, "1", key="x"), W(2, 2, 3, "2", key="y"), R(3, 4, 5, "1", key="x"),
                   R(3, 6, 7, "2", key="y"))
        res = check_register(ops)
        self.assertIs(res["valid"], True)
        self.assertEqual((res["keys"], res["ops"]), (2, 4))


class Budget(unittest.TestCase):
    def test_budget_exceeded_is_unknown(self):
        ops = hist(*[W(c, 0, 10, f"w{c}") for c in range(8)], R(9, 11, 12, "nope"),
                   W(1, 0, 1, "a", key="ok"))
        res = check_register(ops, max_states_per_key=3)
        self.assertEqual(res["valid"], "unknown")
        self.assertEqual(res["unknown_keys"], ["x"])
        self.assertEqual(res["invalid_keys"], [])
        self.assertIs(check_register(ops)["valid"], False)

    def test_invalid_key_wins_over_unknown(self):
        ops = hist(*[W(c, 0, 10, f"w{c}") for c in range(8)], R(9, 11, 12, None),
                   W(1, 0, 1, "a", key="z"), R(1, 2, 3, "b", key="z"))
        res = check_register(ops, max_states_per_key=3)
        self.assertIs(res["valid"], False)
        self.assertEqual((res["invalid_keys"], res["unknown_keys"]), (["z"], ["x"]))


class Generated(unittest.TestCase):
    def test_random_linearizable_histories_pass(self):
        for seed in (1, 2, 3, 4):
            ops = generate(seed)
            n_unknown = sum(o["status"] == "unknown" and o["f"] != "read" for o in ops)
            start = time.monotonic()
            res = check_register(ops)
            took = time.monotonic() - start
            self.assertIs(res["valid"], True, (seed, res["violations"]))
            self.assertGreater(n_unknown, 10)
            self.assertLess(took, 3.0, seed)

    def test_random_multi_key_history_passes(self):
        ops = generate(7, n_ops=3000, clients=8, p_unknown=0.03, keys=("a", "b", "c"))
        res = check_register(ops)
        self.assertIs(res["valid"], True, res["violations"])
        self.assertEqual(res["keys"], 3)

    def test_high_concurrency_history_passes(self):
        ops = generate(5, n_ops=2000, clients=10, p_unknown=0.03)
        start = time.monotonic()
        self.assertIs(check_register(ops)["valid"], True)
        self.assertLess(time.monotonic() - start, 3.0)

    def test_agrees_with_brute_force(self):
        rng = random.Random(42)
        verdicts = {True: 0, False: 0}
        for _ in range(3000):
            ops = random_small_history(rng, rng.randint(1, 8))
            expected = brute_force(ops)
            verdicts[expected] += 1
            self.assertIs(check_register(ops)["valid"], expected, ops)
        self.assertGreater(min(verdicts.values()), 500)

    def test_injected_stale_read_fails(self):
        for seed in (11, 12):
            ops = generate(seed)
            bad = inject_stale_read(ops)
            start = time.monotonic()
            res = check_register(ops)
            self.assertLess(time.monotonic() - start, 5.0, seed)
            self.assertIs(res["valid"], False, seed)
            self.assertEqual(res["invalid_keys"], ["k"])
            v = res["violations"][0]
            self.assertIn(bad["id"], v["ops"])
            self.assertIn(f"op id {bad['id']}", v["message"])
            self.assertIn(f"id={bad['id']}", render_violation(ops, v))


if __name__ == "__main__":
    unittest.main()
