"""Where the client sends a point request: the cached ranges and their leaders.

Any member serves any key (one that holds no replica of the key's range
forwards the request), so a route only saves hops, and a stale one is slower,
never wrong. The router reads each endpoint's ranges (Ranges, that node's
only), which tells it the endpoint's node id, the ranges it holds and their
leaders as it sees them. Every Put, Get and Delete answer carries the trailing
metadata "conclave-route": "<range id> <generation> <leader node, hex>" from
a member holding a replica of the key's range, "forwarded" from one that
holds none. A hint about the range the router has, at its generation, moves
the leader; anything else (a split, a move, an unknown range) makes the
routes stale, and the next request reads them again, at most once a second.
Only the client's own endpoints are routed to.
"""

import bisect
import threading
import time

ROUTE_HINT_HEADER = "conclave-route"
REFRESH_GAP_S = 1.0


class _Route:
    __slots__ = ("start", "end", "range_id", "generation", "leader_node", "voter_nodes")

    def __init__(self, info):
        self.start = info.start
        self.end = info.end
        self.range_id = info.range_id
        self.generation = info.generation
        self.leader_node = info.leader_node
        self.voter_nodes = [r.node_id for r in info.replicas if not r.learner]


def _parse_hint(hint):
    parts = hint.split(" ")
    if len(parts) != 3:
        return None
    try:
        return int(parts[0]), int(parts[1]), int(parts[2], 16)
    except ValueError:
        return None


class Router:
    def __init__(self):
        self._lock = threading.Lock()
        self._starts = []   # sorted range starts
        self._routes = []   # _Route per start
        self._endpoint_of_node = {}
        self._stale = True
        self._refreshing = False
        self._refreshed = float("-inf")

    def _find(self, key):
        i = bisect.bisect_right(self._starts, key) - 1
        if i < 0:
            return None
        r = self._routes[i]
        if r.end and key >= r.end:
            return None
        return r

    def pick(self, key):
        """The endpoint index for `key`'s request, or None."""
        with self._lock:
            r = self._find(key)
            if r is None:
                return None
            if r.leader_node and r.leader_node in self._endpoint_of_node:
                return self._endpoint_of_node[r.leader_node]
            for node in r.voter_nodes:
                if node in self._endpoint_of_node:
                    return self._endpoint_of_node[node]
            return None

    def claim_refresh(self, now=None):
        """True for the one caller that should read the ranges again now."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if not self._stale or self._refreshing or now - self._refreshed < REFRESH_GAP_S:
                return False
            self._refreshing = True
            return True

    def refresh(self, answers, now=None):
        """answers[i]: endpoint i's RangesResponse, or None when it did not answer."""
        now = time.monotonic() if now is None else now
        best = {}  # range id -> (route, the leader's own word)
        endpoints = {}
        for i, a in enumerate(answers):
            if a is None:
                continue
            endpoints.setdefault(a.node_id, i)
            for info in a.ranges:
                route = _Route(info)
                says = info.leader_node == a.node_id
                have = best.get(info.range_id)
                if have is None or route.generation > have[0].generation:
                    best[info.range_id] = (route, says)
                elif (route.generation == have[0].generation and not have[1]
                      and (says or have[0].leader_node == 0)):
                    have[0].leader_node = route.leader_node
                    best[info.range_id] = (have[0], says)
        # Both halves of a split take the next generation: of two ranges
        # whose spans overlap, the later generation is current.
        starts, chosen = [], []  # kept sorted by start
        for route, _ in sorted(best.values(), key=lambda rs: -rs[0].generation):
            i = bisect.bisect_right(starts, route.start)
            if i > 0 and (not chosen[i - 1].end or chosen[i - 1].end > route.start):
                continue  # the one before reaches into it
            if i < len(chosen) and (not route.end or chosen[i].start < route.end):
                continue  # it reaches into the one after
            starts.insert(i, route.start)
            chosen.insert(i, route)
        with self._lock:
            self._refreshed = now
            self._refreshing = False
            # Nobody answered: the routes there were stay.
            if not chosen:
                return
            self._routes = chosen
            self._starts = starts
            self._endpoint_of_node = endpoints
            self._stale = False

    def abandon_refresh(self):
        """The claimed refresh could not be made."""
        with self._lock:
            self._refreshing = False

    def learn(self, key, hint):
        """Takes in the route hint that came back with `key`'s answer."""
        h = _parse_hint(hint)
        with self._lock:
            r = self._find(key)
            if h is None and r is None:
                return  # "forwarded" for a key none of the endpoints holds
            if h is not None and r is not None and h[0] == r.range_id:
                if h[1] == r.generation:
                    if h[2]:
                        r.leader_node = h[2]
                        # A leader none of the endpoints answered for.
                        if h[2] not in self._endpoint_of_node:
                            self._stale = True
                    return
                if h[1] < r.generation:
                    return  # a lagging replica's word
            self._stale = True

    @property
    def stale(self):
        with self._lock:
            return self._stale

    def __len__(self):
        with self._lock:
            return len(self._routes)
