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
    never_sent = {k for a in adds if a["status"] == "fail" for k in a["keys"]}
    violations += ["present although its write never reached a server: %s" % k
                   for k in sorted(never_sent & final_keys)]
    violations += ["present but never written: %s" % k for k in phantom]
    # A txn's keys are one write: all present or none.
    for a in adds:
        present = [k in final_keys for k in a["keys"]]
        if any(present) and not all(present):
            violations.append("txn applied in part: %s" % a["keys"])
    return _result(violations, attempted=len(adds), acknowledged=sum(
        1 for a in adds if a["status"] == "ok"), lost=len(lost), unknown=len(unknown),
        unknown_present=unknown_present)


def check_lock(fenced, fence_history, end_revision=None):
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
        if end_revision is not None and f["revision"] > end_revision:
            continue  # acknowledged after the end state was read
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


def check_watch(watchers, truth, writes, start_revision, caught_up_revision=None,
                canceled=None):
    """watchers: {client: [(revision, key, type, value, response#)]}; truth:
    the same from one fresh stream after healing, covering every revision the
    watchers saw; writes: acknowledged writes [{"key", "value", "revision"}].

    Each watcher's events: revisions never go back, no event twice, the events
    of one revision arrive in one response, and they are exactly the truth's
    events from start_revision through the last revision it saw (no gaps).
    After the fault-free tail every watcher has seen caught_up_revision (the
    revision when the cluster was healthy again), and no watch was canceled
    (nothing is compacted during a run). Every acknowledged write is in the
    truth at its revision.
    """
    violations = []
    for c, reasons in (canceled or {}).items():
        for reason in reasons:
            violations.append("watcher %d: canceled by the server (%s)" % (c, reason))
    if caught_up_revision is not None:
        truth_revs = [r for r, _, _, _, _ in truth if r <= caught_up_revision]
        need = truth_revs[-1] if truth_revs else None
        for c, events in watchers.items():
            last = events[-1][0] if events else None
            if need is not None and (last is None or last < need):
                violations.append("watcher %d: stuck at revision %s; the history had reached "
                                  "%d before the faults ended" % (c, last, need))
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


def _applied_by(renewal, windows):
    """The latest time an unanswered renewal may take effect: when it timed
    out, or when a disruption it overlapped ended (a paused member, the one
    it was sent to or the leader it forwarded to, handles it on resuming)."""
    t = renewal["complete"]
    for begin, end in windows:
        if begin <= t and end >= renewal["invoke"]:
            t = max(t, end)
    return t


def check_lease(leases, leader_changes, slack_s, windows=()):
    """leases: the lease workload's records; leader_changes: times a new term
    was first observed; windows: (begin, end) of disruptions during which no
    revocation can commit although no new leader is elected (a paused member,
    leader transfers).

    Early: a key read absent (by a read that completed) before
    max(grant invoke, acknowledged renewal invoke) + TTL. Late: a key read
    present by a read invoked more than slack_s after its latest expiry:
    max(last renewal's completion (an unanswered one: its timeout, or the end
    of a disruption it overlapped), a leader change, the end of a disruption)
    + TTL (a new leader may give leases a full TTL again).
    """
    violations = []
    checked = 0
    for rec in leases:
        if rec["put"]["status"] != "ok" or rec["ttl"] <= 0:
            continue
        ttl = rec["ttl"]
        earliest = rec["grant_invoke"] + ttl
        latest_renewal = rec["grant_complete"]
        # A response in a term not seen before in this record: the election
        # that began that term happened before the response arrived.
        terms = {}
        if rec.get("grant_term") is not None:
            terms[rec["grant_term"]] = rec["grant_complete"]
        for r in rec["renewals"]:
            if r["status"] == "ok" and r["ttl"] and r["ttl"] > 0:
                earliest = max(earliest, r["invoke"] + r["ttl"])
                if r.get("term") is not None:
                    terms.setdefault(r["term"], r["complete"])
            applied = r["complete"] if r["status"] == "ok" else _applied_by(r, windows)
            latest_renewal = max(latest_renewal, applied)
        for rd in rec["reads"]:
            if rd.get("term") is not None:
                terms.setdefault(rd["term"], rd["complete"])
            if rd["invoke"] < rec["put"]["complete"]:
                continue
            checked += 1
            if not rd["found"] and rd["complete"] < earliest:
                violations.append("%s (lease %x, TTL %ds) gone at %.3f, %.3fs before its "
                                  "earliest expiry" % (rec["key"], rec["lease"], ttl,
                                                       rd["complete"], earliest - rd["complete"]))
            if rd["found"]:
                first_term = min(terms) if terms else None
                extended = [t for t in leader_changes if rec["grant_invoke"] <= t <= rd["invoke"]]
                extended += [t for term, t in terms.items()
                             if term != first_term and t <= rd["complete"]]
                extended += [end for begin, end in windows
                             if begin <= rd["invoke"] and end >= rec["grant_invoke"]]
                latest = max([latest_renewal] + extended) + ttl
                if rd["invoke"] > latest + slack_s:
                    violations.append("%s (lease %x, TTL %ds) still present at %.3f, %.3fs after "
                                      "its latest expiry" % (rec["key"], rec["lease"], ttl,
                                                             rd["invoke"], rd["invoke"] - latest))
    return _result(violations, leases=len(leases), reads_checked=checked)


def check_read_revisions(ops, truth, start_revision, end_revision):
    """Register reads against the revisions their headers name.

    A read's value is the key's value in the truth as of its header revision
    (the state it claims to have read), and revisions respect real time: an
    operation invoked after another completed never reports a lower revision.
    Catches stale reads without a search.
    """
    violations = []
    history = {}
    for r, k, t, v, _ in truth:
        history.setdefault(k, []).append((r, v if t == "PUT" else None))
    checked = 0
    for op in ops:
        if op["status"] != "ok" or op["f"] != "read":
            continue
        rev = op.get("revision")
        if rev is None or rev < start_revision or rev > end_revision:
            continue
        checked += 1
        value = None
        for r, v in history.get(op["key"], []):
            if r > rev:
                break
            value = v
        if value != op["value"]:
            violations.append("read %d of %s at revision %d returned %r; the history has %r"
                              % (op["id"], op["key"], rev, op["value"], value))
    done = sorted((op["complete"], op["revision"], op["id"]) for op in ops
                  if op["status"] == "ok" and op.get("revision") is not None)
    j, highest, by = 0, 0, None
    for op in sorted((o for o in ops if o["status"] == "ok" and o.get("revision") is not None),
                     key=lambda o: o["invoke"]):
        while j < len(done) and done[j][0] < op["invoke"]:
            if done[j][1] > highest:
                highest, by = done[j][1], done[j][2]
            j += 1
        if op["revision"] < highest:
            violations.append("op %d (%s %s) reports revision %d after op %d completed at "
                              "revision %d" % (op["id"], op["f"], op["key"], op["revision"], by,
                                               highest))
    return _result(violations, reads_checked=checked)


def check_lock_exclusion(acquires, truth, prefix):
    """acquires: Lock replies [{"key", "revision"}]; truth: the event stream.

    When Lock answers at revision R with key K, no other key of the lock
    created before K still exists at R (K is the oldest waiter: the holder).
    Replies whose key was already gone at R (its lease expired) say nothing.
    """
    created, deleted = {}, {}
    for r, k, t, _, _ in truth:
        if not k.startswith(prefix):
            continue
        if t == "PUT":
            created.setdefault(k, r)
        else:
            deleted[k] = r
    violations = []
    checked = 0
    for a in acquires:
        k, rev = a["key"], a["revision"]
        mine = created.get(k)
        if mine is None or mine > rev or deleted.get(k, float("inf")) <= rev:
            continue
        checked += 1
        for other, c in created.items():
            if other != k and c < mine and deleted.get(other, float("inf")) > rev:
                violations.append("Lock granted %s at revision %d while %s (created at %d, "
                                  "older) still existed" % (k, rev, other, c))
                break
    return _result(violations, grants_checked=checked)
