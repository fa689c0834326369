// Where a client sends a native KV request for one key: the cached ranges
// of the native keyspace and, per range, the endpoint of its leader.
//
// Any member serves any key (a member holding no replica forwards the
// request), so a route only saves hops: a request sent to the range's
// leader is served there; one sent to a follower is proposed through it;
// one sent to a member without a replica costs another round trip. A stale
// route is therefore never wrong, only slower, and the router learns from
// the answers:
//
//  - Refresh() takes the ranges each endpoint holds (Ranges, this node
//    only) and learns which node each endpoint is, which ranges it holds
//    and which leader each range has as far as that node knows.
//  - Every point answer carries the trailing metadata "conclave-route"
//    (kRouteHintHeader): "<range id> <generation> <leader node, hex>" from a
//    member holding a replica of the key's range, "forwarded" from one that
//    holds none. Learn() takes the leader from a hint about the range it
//    has at that generation, and marks the routes stale for anything else
//    (a split, a move, a range it did not know), so the next request reads
//    them again; reads of the map are at least kRefreshGap apart.
//
// Only the client's own endpoints are routed to: a client given one member
// sends everything there. Thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "conclave/kvpb/kv.pb.h"

namespace conclave::client {

inline constexpr std::string_view kRouteHintHeader = "conclave-route";

class RangeRouter {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::milliseconds kRefreshGap{1000};

  // The endpoint (its index in the client's list) for `key`'s request, if
  // a route is known.
  std::optional<size_t> Pick(std::string_view key) const;

  // Whether the routes should be read again now (stale, and the last read
  // is kRefreshGap old); true for one caller at a time, who then calls
  // Refresh.
  bool ClaimRefresh(Clock::time_point now);
  // Replaces the routes with what the endpoints answered: `answers[i]` is
  // endpoint i's Ranges answer, absent when it did not answer.
  void Refresh(const std::vector<std::optional<kvpb::RangesResponse>>& answers,
               Clock::time_point now);

  // Takes in a "conclave-route" hint that came back with `key`'s answer.
  void Learn(std::string_view key, std::string_view hint);

  // Routes known (ranges) and endpoints whose node is known; for tests.
  size_t ranges() const;
  bool stale() const;

 private:
  struct Route {
    std::string start;
    uint64_t range_id = 0;
    uint64_t generation = 0;
    uint64_t leader_node = 0;           // 0: not known
    std::vector<uint64_t> voter_nodes;  // the range's voters' nodes
  };
  // Orders range ends, the empty end (no bound) last.
  struct EndLess {
    using is_transparent = void;
    bool operator()(std::string_view a, std::string_view b) const {
      if (a.empty()) return false;
      if (b.empty()) return true;
      return a < b;
    }
  };
  const Route* Find(std::string_view key) const;

  mutable std::mutex mu_;
  std::map<std::string, Route, EndLess> routes_;  // by end key
  std::map<uint64_t, size_t> endpoint_of_node_;
  bool stale_ = true;
  bool refreshing_ = false;
  Clock::time_point refreshed_{};
};

}  // namespace conclave::client
