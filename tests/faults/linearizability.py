"""Linearizability checker for Conclave key-value register histories.

A history is a list of client operations (read / write / cas on a key), each
an invocation paired with its outcome. Each key is checked on its own against a register that starts absent
(None), using a Wing-Gong depth-first search with memoization over a doubly
linked list of invoke/return events. Under concurrency, a pending ok read or
failed cas that holds now is linearized without branching (always safe), and
other candidates are tried earliest-return first (order only affects speed).

Operations with status "unknown" (timeouts, lost connections) are optional:
they may take effect at any point after their invocation, or never. The
search stays exact but avoids blowing up on them by:
  * collapsing written values that no read or cas ever compares against into
    one placeholder value (behaviour only depends on those comparisons);
  * never linearizing an optional op where it would change nothing;
  * never linearizing a blind write directly after an optional op (skipping
    the optional op gives the same state);
  * trying only the earliest pending optional op of each effect class
    (same f, expected and value): such ops are interchangeable;
  * treating a memo entry (ok ops done, value) reached with a subset of the
    optional ops already used as covering one that used more of them.
"""

import math
from collections import defaultdict

__all__ = ["check_register", "render_violation"]

READ, WRITE, CAS = "read", "write", "cas"
_WINDOW = 16  # max ops listed per violation


class _Unread:
    """Placeholder for written values no read or cas ever compares against."""
    __slots__ = ()

    def __repr__(self):
        return "<unread value>"


_UNREAD = _Unread()


class _Entry:
    """Invoke (is_call) or return event of op index `op` in the event list."""
    __slots__ = ("op", "is_call", "match", "prev", "next")

    def __init__(self, op, is_call):
        self.op = op
        self.is_call = is_call
        self.match = None  # call -> its return entry (None for optional ops)
        self.prev = None
        self.next = None


def _unlink(e):
    e.prev.next = e.next
    if e.next is not None:
        e.next.prev = e.prev


def _relink(e):
    e.prev.next = e
    if e.next is not None:
        e.next.prev = e


def _lift(call):
    _unlink(call)
    if call.match is not None:
        _unlink(call.match)


def _unlift(call):
    # Exact reverse of _lift, so the pointers kept in removed entries are valid.
    if call.match is not None:
        _relink(call.match)
    _relink(call)


def _build_events(kops, optional):
    """Doubly linked event list sorted by time (invokes before returns at equal
    times: complete == invoke means concurrent) and each op's return time."""
    events, deadline = [], [math.inf] * len(kops)
    for i, o in enumerate(kops):
        inv = float(o["invoke"])
        call = _Entry(i, True)
        events.append((inv, 0, i, call))
        if not optional[i]:
            comp = o.get("complete")
            comp = math.inf if comp is None else max(float(comp), inv)
            call.match = _Entry(i, False)
            events.append((comp, 1, i, call.match))
            deadline[i] = comp
    events.sort(key=lambda ev: ev[:3])
    head = prev = _Entry(-1, False)
    for ev in events:
        ev[3].prev = prev
        prev.next = ev[3]
        prev = ev[3]
    return head, deadline


def _frontier(head, optional, klass):
    """Calls that may be linearized next (ok ops first, then the earliest
    optional op of each class) and the op whose return entry bounds them."""
    oks, opts, seen = [], [], set()
    e = head.next
    while e is not None and e.is_call:
        i = e.op
        if not optional[i]:
            oks.append(e)
        elif klass[i] not in seen:
            seen.add(klass[i])
            opts.append(e)
        e = e.next
    return oks, opts, (e.op if e is not None else None)


def _check_key(kops, budget):
    """Search one key. Returns (verdict, states, best) where verdict is
    "valid" / "invalid" / "unknown" and best describes the deepest prefix."""
    n = len(kops)
    fs = [o["f"] for o in kops]
    optional = [o["status"] == "unknown" for o in kops]
    observed = {o.get("value") for o in kops if o["f"] == READ}
    observed.update(o.get("expected") for o in kops if o["f"] == CAS)
    vals, exps, succ, klass = [], [], [], []
    for o in kops:
        v = o.get("value")
        if o["f"] != READ and v not in observed:
            v = _UNREAD
        vals.append(v)
        exps.append(o.get("expected"))
        succ.append(bool(o.get("succeeded")))
        klass.append((o["f"], o.get("expected") if o["f"] == CAS else None, v))
    total_ok = n - sum(optional)
    if total_ok == 0:
        return "valid", 1, None

    def choices(oks, opts, state):
        # A pending ok read or failed cas that holds in `state` can be
        # linearized first without loss (it changes nothing and every op it
        # could have to follow is already done), so it is the only choice.
        for c in oks:
            j = c.op
            if fs[j] == READ:
                if vals[j] == state:
                    return [c]
            elif fs[j] == CAS and not succ[j] and exps[j] != state:
                return [c]
        oks.sort(key=lambda c: deadline[c.op])  # earliest return first
        return oks + opts

    head, deadline = _build_events(kops, optional)
    bits = [1 << i for i in range(n)]
    # (okmask, value) -> [(optional ops used, last op was optional)]
    cache = {(0, None): [(0, False)]}
    oks, opts, blocker = _frontier(head, optional, klass)
    best = (0, None, blocker, [e.op for e in oks], [], [e.op for e in opts])
    # frame: [candidates, next index, value, writer, last-was-optional,
    #         okmask, optional mask, ok count, call entry that led here]
    stack = [[choices(oks, opts, None), 0, None, None, False, 0, 0, 0, None]]
    states = 1
    while stack:
        fr = stack[-1]
        cands = fr[0]
        if fr[1] == len(cands):
            stack.pop()
            if fr[8] is not None:
                _unlift(fr[8])
            continue
        e = cands[fr[1]]
        fr[1] += 1
        _, _, state, writer, after_opt, okmask, umask, nok, _ = fr
        i = e.op
        f, opt = fs[i], optional[i]
        new, nwriter = state, writer
        if f == READ:
            if state != vals[i]:
                continue
        elif f == WRITE:
            if after_opt or (opt and vals[i] == state):
                continue
            new, nwriter = vals[i], i
        elif opt or succ[i]:  # cas that applies (optional cas only if it matches)
            if state != exps[i] or (opt and vals[i] == state):
                continue
            new, nwriter = vals[i], i
        elif state == exps[i]:  # ok cas that reported a failed compare
            continue
        if opt:
            nok2, umask2, key = nok, umask | bits[i], (okmask, new)
        else:
            nok2, umask2, key = nok + 1, umask, (okmask | bits[i], new)
            if nok2 == total_ok:
                return "valid", states, None
        seen = cache.get(key)
        if seen is None:
            cache[key] = [(umask2, opt)]
        elif any(not (u & ~umask2) and (opt or not fl) for u, fl in seen):
            continue
        else:
            seen.append((umask2, opt))
        states += 1
        if states > budget:
            return "unknown", states, None
        _lift(e)
        oks, opts, blocker = _frontier(head, optional, klass)
        if nok2 > best[0]:
            recent = [s[8].op for s in stack[-3:] if s[8] is not None] + [i]
            best = (nok2, nwriter, blocker, [c.op for c in oks], recent,
                    [c.op for c in opts])
        stack.append([choices(oks, opts, new), 0, new, nwriter, opt, key[0],
                      umask2, nok2, e])
    return "invalid", states, best


def _describe(o):
    k, f = o["key"], o["f"]
    if f == READ:
        return f"read {k} -> {o.get('value')!r}"
    if f == WRITE:
        return f"write {k} {o.get('value')!r}"
    if o["status"] == "unknown":
        outcome = "outcome unknown"
    else:
        outcome = "succeeded" if o.get("succeeded") else "failed"
    return f"cas {k} {o.get('expected')!r} -> {o.get('value')!r} {outcome}"


def _violation(key, kops, best):
    total_ok = sum(1 for o in kops if o["status"] == "ok")
    nok, writer, blocker, ok_cands, recent, opt_cands = best
    stuck = kops[blocker]
    current = None if writer is None else kops[writer].get("value")
    window = []
    # long-pending unknown ops are rarely relevant: keep the latest few
    opt_cands = sorted(opt_cands, key=lambda j: kops[j]["invoke"])[-4:]
    for i in [blocker] + ok_cands + recent + opt_cands:
        if i not in window:
            window.append(i)
    window = sorted(window[:_WINDOW], key=lambda j: (kops[j]["invoke"], kops[j]["id"]))
    msg = (f"no linearization: longest prefix linearizes {nok} of {total_ok} ok ops; "
           f"stuck at op id {stuck['id']} ({_describe(stuck)}) with value "
           f"{current!r} current")
    if writer is not None:
        msg += f" (written by op id {kops[writer]['id']})"
    return {"key": key, "message": msg, "stuck_op": stuck["id"],
            "ops": [kops[j]["id"] for j in window]}


def check_register(ops, max_states_per_key=2_000_000):
    """Check a read/write/cas register history for linearizability.

    Returns {"valid": True | False | "unknown", "ops", "keys", "invalid_keys",
    "unknown_keys", "violations", "states"}; see the module docstring."""
    by_key = defaultdict(list)
    for o in ops:
        f, status = o.get("f"), o.get("status")
        if f not in (READ, WRITE, CAS):
            raise ValueError(f"op {o.get('id')}: unsupported f {f!r}")
        if status not in ("ok", "fail", "unknown"):
            raise ValueError(f"op {o.get('id')}: unsupported status {status!r}")
        if status == "fail" or (status == "unknown" and f == READ):
            continue  # never applied / constrains nothing
        by_key[o["key"]].append(o)
    result = {"valid": True, "ops": sum(len(v) for v in by_key.values()),
              "keys": len(by_key), "invalid_keys": [], "unknown_keys": [],
              "violations": [], "states": 0}
    for key in sorted(by_key, key=repr):
        kops = by_key[key]
        verdict, states, best = _check_key(kops, max_states_per_key)
        result["states"] += states
        if verdict == "invalid":
            result["invalid_keys"].append(key)
            result["violations"].append(_violation(key, kops, best))
        elif verdict == "unknown":
            result["unknown_keys"].append(key)
    if result["invalid_keys"]:
        result["valid"] = False
    elif result["unknown_keys"]:
        result["valid"] = "unknown"
    return result


def render_violation(ops, violation):
    """Short multi-line text of a violation's op window ('*' marks the op the
    search got stuck on)."""
    by_id = {o["id"]: o for o in ops}
    lines = [f"key {violation['key']!r}: {violation['message']}"]
    for op_id in violation["ops"]:
        o = by_id.get(op_id)
        if o is None:
            lines.append(f"    id={op_id} (not in history)")
            continue
        f, status = o["f"], o["status"]
        if f == READ:
            args, res = "", repr(o.get("value"))
        elif f == WRITE:
            args, res = repr(o.get("value")), "ok"
        else:
            args = f"{o.get('expected')!r}, {o.get('value')!r}"
            res = "succeeded" if o.get("succeeded") else "failed"
        if status != "ok":
            res = "?"
        comp = o.get("complete")
        comp_s = "inf" if comp is None else f"{comp:.6f}"
        mark = "*" if op_id == violation.get("stuck_op") else " "
        lines.append(f"  {mark} id={o['id']} client={o.get('client')} {f}({args}) -> {res}"
                     f"  invoke={o['invoke']:.6f} complete={comp_s} status={status}")
    return "\n".join(lines)
