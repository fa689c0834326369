#include "client/range_router.h"

#include <algorithm>
#include <charconv>

namespace conclave::client {

namespace {

// "<range id> <generation> <leader node, hex>"
struct Hint {
  uint64_t range_id = 0;
  uint64_t generation = 0;
  uint64_t leader_node = 0;
};

bool ParseField(std::string_view* rest, int base, uint64_t* out) {
  const size_t end = std::min(rest->find(' '), rest->size());
  const std::string_view field = rest->substr(0, end);
  auto [ptr, ec] = std::from_chars(field.data(), field.data() + field.size(), *out, base);
  if (field.empty() || ec != std::errc() || ptr != field.data() + field.size()) return false;
  rest->remove_prefix(end == rest->size() ? end : end + 1);
  return true;
}

std::optional<Hint> ParseHint(std::string_view s) {
  Hint h;
  if (!ParseField(&s, 10, &h.range_id) || !ParseField(&s, 10, &h.generation) ||
      !ParseField(&s, 16, &h.leader_node) || !s.empty()) {
    return std::nullopt;
  }
  return h;
}

}  // namespace

const RangeRouter::Route* RangeRouter::Find(std::string_view key) const {
  auto it = routes_.upper_bound(key);
  if (it == routes_.end() || key < it->second.start) return nullptr;
  return &it->second;
}

std::optional<size_t> RangeRouter::Pick(std::string_view key) const {
  std::lock_guard lock(mu_);
  const Route* r = Find(key);
  if (r == nullptr) return std::nullopt;
  if (r->leader_node != 0) {
    if (auto it = endpoint_of_node_.find(r->leader_node); it != endpoint_of_node_.end()) {
      return it->second;
    }
  }
  // No leader known: a voter's node proposes through the leader, which is
  // still cheaper than a member that forwards.
  for (uint64_t node : r->voter_nodes) {
    if (auto it = endpoint_of_node_.find(node); it != endpoint_of_node_.end()) return it->second;
  }
  return std::nullopt;
}

bool RangeRouter::ClaimRefresh(Clock::time_point now) {
  std::lock_guard lock(mu_);
  if (!stale_ || refreshing_ || now - refreshed_ < kRefreshGap) return false;
  refreshing_ = true;
  return true;
}

void RangeRouter::Refresh(const std::vector<std::optional<kvpb::RangesResponse>>& answers,
                          Clock::time_point now) {
  // Each range at the latest generation any holder reports (holders may
  // lag each other), with the leader its holders name, the leader's own
  // word first.
  struct Candidate {
    Route route;
    std::string end;
    bool leader_says = false;
  };
  std::map<uint64_t, Candidate> by_id;
  std::map<uint64_t, size_t> endpoints;
  for (size_t i = 0; i < answers.size(); ++i) {
    if (!answers[i].has_value()) continue;
    const kvpb::RangesResponse& a = *answers[i];
    endpoints.emplace(a.node_id(), i);
    for (const kvpb::RangeInfo& info : a.ranges()) {
      Candidate c;
      c.route.start = info.start();
      c.route.range_id = info.range_id();
      c.route.generation = info.generation();
      c.route.leader_node = info.leader_node();
      for (const kvpb::Replica& rep : info.replicas()) {
        if (!rep.learner()) c.route.voter_nodes.push_back(rep.node_id());
      }
      c.end = info.end();
      c.leader_says = info.leader_node() == a.node_id();
      auto [it, added] = by_id.try_emplace(info.range_id(), c);
      if (added) continue;
      Candidate& have = it->second;
      if (c.route.generation > have.route.generation) {
        have = std::move(c);
      } else if (c.route.generation == have.route.generation && !have.leader_says &&
                 (c.leader_says || have.route.leader_node == 0)) {
        have.route.leader_node = c.route.leader_node;
        have.leader_says = c.leader_says;
      }
    }
  }
  // A split gives both halves the next generation, so of two ranges whose
  // spans overlap (one holder saw a split another did not) the later
  // generation is the current one.
  std::vector<Candidate*> order;
  for (auto& [id, c] : by_id)
    order.push_back(&c);
  std::stable_sort(order.begin(), order.end(), [](const Candidate* a, const Candidate* b) {
    return a->route.generation > b->route.generation;
  });
  std::map<std::string, Route, EndLess> routes;
  for (Candidate* c : order) {
    // The first route ending after this one's start must start at or after
    // its end, or the spans overlap.
    auto next = c->route.start.empty() ? routes.begin() : routes.upper_bound(c->route.start);
    if (next != routes.end() && (c->end.empty() || next->second.start < c->end)) continue;
    routes.emplace(std::move(c->end), std::move(c->route));
  }
  std::lock_guard lock(mu_);
  refreshed_ = now;
  refreshing_ = false;
  // With nothing learned (no endpoint answered) the routes it had stay,
  // and the next request tries again after the gap.
  if (routes.empty()) return;
  routes_ = std::move(routes);
  endpoint_of_node_ = std::move(endpoints);
  stale_ = false;
}

void RangeRouter::Learn(std::string_view key, std::string_view hint) {
  std::lock_guard lock(mu_);
  const std::optional<Hint> h = ParseHint(hint);
  Route* r = const_cast<Route*>(Find(key));
  // "forwarded" for a key none of the endpoints holds says nothing new.
  if (!h.has_value() && r == nullptr) return;
  if (!h.has_value() || r == nullptr || r->range_id != h->range_id ||
      r->generation != h->generation) {
    // "forwarded", a range split or moved since, or one not known: read
    // the ranges again. A hint about an older generation than the route's
    // (from a lagging replica) is only ignored.
    if (!(h.has_value() && r != nullptr && r->range_id == h->range_id &&
          r->generation > h->generation)) {
      stale_ = true;
    }
    return;
  }
  if (h->leader_node == 0) return;
  r->leader_node = h->leader_node;
  // A leader on a node none of the endpoints answered for: perhaps one
  // that did not answer the last read.
  if (!endpoint_of_node_.contains(h->leader_node)) stale_ = true;
}

size_t RangeRouter::ranges() const {
  std::lock_guard lock(mu_);
  return routes_.size();
}

bool RangeRouter::stale() const {
  std::lock_guard lock(mu_);
  return stale_;
}

}  // namespace conclave::client
