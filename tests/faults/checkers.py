"""The set, lock, watch and lease checkers (linearizability.py has the register's).

Each returns {"valid": bool, ...figures..., "violations": [text, ...]}.
Inputs are the workloads' records (workloads.py) and what was read from the
cluster after every fault was healed.
"""


def _result(violations, **figures):
    out = {"valid": not violations, "violations": violations[:50],
           "violation_count": len(violations)}
    out.update(figures)
    return out


def check_set(adds, final_keys):
    """adds: [{"keys", "status"}]; final_keys: the set/ keys read at the end.

    Every acknowledged key must be present; no key may be present that was
    never attempted.
    """
    attempted, acked = set(), set()
    for a in adds:
        attempted.update(a["keys"])
        if a["status"] == "ok":
            acked.update(a["keys"])
    lost = sorted(acked - final_keys)
    phantom = sorted(final_keys - attempted)
    unknown = [a for a in adds if a["status"] == "unknown"]
    unknown_present = sum(1 for a in unknown if all(k in final_keys for k in a["keys"]))
    violations = ["acknowledged but lost: %s" % k for k in lost]
    violations += ["present but never written: %s" % k for k in phantom]
    # A txn's keys are one write: all present or none.
    for a in adds:
        present = [k in final_keys for k in a["keys"]]
        if any(present) and not all(present):
            violations.append("txn applied in part: %s" % a["keys"])
    return _result(violations, attempted=len(adds), acknowledged=sum(
        1 for a in adds if a["status"] == "ok"), lost=len(lost), unknown=len(unknown),
        unknown_present=unknown_present)


def check_lock(fenced, fence_history):
    """fenced: the lock workload's fenced-write records; fence_history: the
    fence key's applied values in revision order [(revision, value)].

    Applied fenced writes come in runs of one token at a time, tokens only
    growing (two holders' writes never interleave), and every acknowledged
    successful fenced write is in the history at its revision.
    """
    violations = []
    last_token, seen_tokens = 0, set()
    for rev, value in fence_history:
        token = int(value.split(".")[0][1:])
        if token < last_token:
            violations.append("fenced write %s at revision %d after a write with token %d: "
                              "two holders' writes interleave" % (value, rev, last_token))
        elif token != last_token and token in seen_tokens:
            violations.append("token %d writes again at revision %d after another holder"
                              % (token, rev))
        seen_tokens.add(token)
        last_token = max(last_token, token)
    applied = {value: rev for rev, value in fence_history}
    acked = [f for f in fenced if f["status"] == "ok" and f.get("succeeded")]
    for f in acked:
        if applied.get(f["value"]) != f["revision"]:
            violations.append("acknowledged fenced write %s (revision %d) is not in the "
                              "history" % (f["value"], f["revision"]))
    for f in fenced:
        if f["status"] == "ok" and not f.get("succeeded") and f["value"] in applied:
            violations.append("fenced write %s reported failed but was applied" % f["value"])
    return _result(violations, fenced_writes=len(fenced), acknowledged=len(acked),
                   refused=sum(1 for f in fenced if f["status"] == "ok"
                               and not f.get("succeeded")),
                   holders=len(seen_tokens))


def check_watch(watchers, truth, writes, start_revision):
    """watchers: {client: [(revision, key, type, value, response#)]}; truth:
    the same from one fresh stream after healing, covering every revision the
    watchers saw; writes: acknowledged writes [{"key", "value", "revision"}].

    Each watcher's events: revisions never go back, no event twice, the events
    of one revision arrive in one response, and they are exactly the truth's
    events from start_revision through the last revision it saw (no gaps).
    Every acknowledged write is in the truth at its revision.
    """
    violations = []
    truth_keyed = [(r, k, t, v) for r, k, t, v, _ in truth]
    for c, events in watchers.items():
        last = None
        seen = set()
        resp_of_rev = {}
        for rev, key, typ, value, resp in events:
            if last is not None and rev < last:
                violations.append("watcher %d: revision %d after %d" % (c, rev, last))
            if (rev, key) in seen:
                violations.append("watcher %d: event %s@%d delivered twice" % (c, key, rev))
            seen.add((rev, key))
            if resp_of_rev.setdefault(rev, resp) != resp:
                violations.append("watcher %d: revision %d split over two responses" % (c, rev))
            last = rev if last is None else max(last, rev)
        if last is None:
            continue
        expect = [e for e in truth_keyed if start_revision <= e[0] <= last]
        got = [(r, k, t, v) for r, k, t, v, _ in events]
        if got != expect:
            gs, es = set(got), set(expect)
            missing, extra = sorted(es - gs)[:5], sorted(gs - es)[:5]
            violations.append("watcher %d: %d events differ from the history through revision "
                              "%d (missing %s, unexpected %s)" % (c, len(es ^ gs), last,
                                                                  missing, extra))
    at = {(r, k): v for r, k, t, v in truth_keyed if t == "PUT"}
    truth_end = truth_keyed[-1][0] if truth_keyed else 0
    for w in writes:
        if w["revision"] > truth_end or w["revision"] < start_revision:
            continue
        if at.get((w["revision"], w["key"])) != w["value"]:
            violations.append("acknowledged write %s=%s at revision %d is not in the watch "
                              "history" % (w["key"], w["value"], w["revision"]))
    return _result(violations, watchers=len(watchers),
                   events={c: len(e) for c, e in watchers.items()}, truth_events=len(truth),
                   writes_checked=len(writes))


def _applied_by(renewal, member, pauses):
    """The latest time an unanswered renewal may take effect: when it timed
    out, or when the member it was sent to resumed from a pause it was in."""
    t = renewal["complete"]
    for m, begin, end in pauses:
        if m == member and begin <= t and end >= renewal["invoke"]:
            t = max(t, end)
    return t


def check_lease(leases, leader_changes, slack_s, pauses=()):
    """leases: the lease workload's records; leader_changes: times a new term
    was first observed.

    Early: a key read absent (by a read that completed) before
    max(grant invoke, acknowledged renewal invoke) + TTL. Late: a key read
    present by a read invoked later than slack_s after its expiry at the
    latest: max(last renewal's completion (an unanswered one: its timeout, or
    the end of a pause of its member), leader change) + TTL (a new leader may
    give leases a full TTL again).
    """
    violations = []
    checked = late_checked = 0
    for rec in leases:
        if rec["put"]["status"] != "ok" or rec["ttl"] <= 0:
            continue
        ttl = rec["ttl"]
        earliest = rec["grant_invoke"] + ttl
        latest_renewal = rec["grant_complete"]
        for r in rec["renewals"]:
            if r["status"] == "ok" and r["ttl"] and r["ttl"] > 0:
                earliest = max(earliest, r["invoke"] + r["ttl"])
            applied = r["complete"] if r["status"] == "ok" else _applied_by(
                r, rec.get("member"), pauses)
            latest_renewal = max(latest_renewal, applied)
        first_in_term = {}
        for rd in rec["reads"]:
            # A read answered in a term not seen before: the election that
            # began it happened before the read completed.
            if rd.get("term") is not None:
                first_in_term.setdefault(rd["term"], rd["complete"])
            if rd["invoke"] < rec["put"]["complete"]:
                continue
            checked += 1
            if not rd["found"] and rd["complete"] < earliest:
                violations.append("%s (lease %x, TTL %ds) gone at %.3f, %.3fs before its "
                                  "earliest expiry" % (rec["key"], rec["lease"], ttl,
                                                       rd["complete"], earliest - rd["complete"]))
            if rd["found"]:
                extended = [t for t in leader_changes if rec["grant_invoke"] <= t <= rd["invoke"]]
                if len(first_in_term) > 1 and rd.get("term") is not None:
                    extended.append(first_in_term[rd["term"]])
                latest = max([latest_renewal] + extended) + ttl
                late_checked += 1
                if rd["invoke"] > latest + slack_s:
                    violations.append("%s (lease %x, TTL %ds) still present at %.3f, %.3fs after "
                                      "its latest expiry" % (rec["key"], rec["lease"], ttl,
                                                             rd["invoke"], rd["invoke"] - latest))
    return _result(violations, leases=len(leases), reads_checked=checked)
