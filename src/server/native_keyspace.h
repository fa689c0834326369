// NativeKeyspace: the native ranges this node holds a replica of, found by
// key, with the operations of the native KV API (proto/conclave/kvpb).
//
// Today the ranges are fixed when a cluster is created (--initial-range-count):
// the keyspace is cut into that many ranges at evenly spaced two-byte
// boundaries, each a Raft group (group id = range id, from kFirstRangeId)
// with a replica on every initial member; a range's replica ids are its own
// (1, 2, 3 for the members in id order) and its descriptor says which node
// each lives on. On restart the node finds its ranges by their descriptors
// in the engine. Ranges quiesce when idle. Splitting, merging and moving
// ranges, and routing to ranges this node does not hold, come next.
//
// Writes go through the key's range: any replica may propose (a follower's
// core forwards to the leader) and the caller is answered once this replica
// applied the write. Reads are linearizable: a read round on the range, then
// the newest versions.
//
// Thread-safety: every method is thread-safe; callbacks run on the host's
// threads and must not block.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "conclave/kvpb/kv.pb.h"
#include "conclave/serverpb/server.pb.h"
#include "keys/keys.h"
#include "server/host.h"
#include "server/range_state_machine.h"
#include "server/replica.h"

namespace conclave::server {

// Range ids below this are kept for the node's own groups (1: the etcd
// keyspace).
inline constexpr keys::RangeId kFirstRangeId = 16;

struct NativeKeyspaceOptions {
  // A new cluster: divide the keyspace into this many ranges (0: none).
  int64_t initial_ranges = 0;
  // The cluster's initial members (node ids): each range gets a replica on
  // every one of them.
  std::vector<uint64_t> initial_members;
  // Timing and limits for every range's replica (group, ids and placement
  // are filled in per range).
  ReplicaOptions replica;
};

// The evenly spaced ranges a new cluster starts with.
std::vector<keys::RangeDescriptor> InitialRanges(int64_t count, std::vector<uint64_t> members);

class NativeKeyspace {
 public:
  struct Range {
    std::shared_ptr<Replica> replica;
    RangeStateMachine* sm = nullptr;
  };

  // Adds a replica to `host` for every range the engine holds; when it holds
  // none and `bootstrap` is set, creates options.initial_ranges ranges.
  static Result<std::unique_ptr<NativeKeyspace>> Open(Host* host, uint64_t node_id,
                                                      const NativeKeyspaceOptions& options,
                                                      bool bootstrap);

  // The range holding `key`; kNotFound when this node holds none.
  Result<Range> Find(std::string_view key) const;
  // The ranges overlapping [start, end) (end empty: no bound), in key order.
  std::vector<Range> Overlapping(std::string_view start, std::string_view end) const;
  std::vector<Range> All() const;
  size_t size() const;

  using WriteDone = std::function<void(Result<RangeWriteResult>, keys::RangeId)>;
  // A put or a delete, with the request's precondition if it has one.
  void Put(kvpb::PutRequest request, WriteDone done);
  void Delete(kvpb::DeleteRequest request, WriteDone done);
  // Deletes the live keys of [start, end) (end empty: no bound), one range
  // after another, each range's part atomic; blocks until all are done.
  // Returns how many keys it deleted.
  Result<uint64_t> DeleteRange(const std::string& start, const std::string& end);
  using ReadDone = std::function<void(Result<std::optional<RangeValue>>, keys::RangeId)>;
  void Get(std::string key, ReadDone done);

 private:
  NativeKeyspace(Host* host, uint64_t node_id) : host_(host), node_id_(node_id) {}
  Status AddRange(const keys::RangeDescriptor& d, const NativeKeyspaceOptions& options,
                  bool create);
  void Write(std::string key, serverpb::RangeCommand command, WriteDone done);

  Host* const host_;
  const uint64_t node_id_;
  mutable std::mutex mu_;
  std::map<std::string, Range> by_start_;  // guarded by mu_
};

}  // namespace conclave::server
