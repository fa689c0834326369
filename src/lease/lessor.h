// Lessor: the leases of one Raft group, with etcd v3's semantics
// (docs/LEASE.md).
//
// A lease has an id, a granted TTL in seconds and a set of attached keys.
// Everything every member must agree on is *replicated state* and changes
// only through applied commands: Grant, Revoke, Checkpoint (a lease's
// remaining TTL as the leader saw it), Attach and Detach. Applying the same
// commands in the same order gives the same state on every member.
//
// Time is *leader-local*. Only the primary lessor (the one on the leader,
// after Promote) keeps deadlines, read from the injected Clock; it decides
// which leases expired (ExpiredLeases) and the server proposes their
// revocation through the log, so a lease disappears at the same log index
// everywhere. Renew (keep-alive) only moves the leader's deadline, as in
// etcd; the leader checkpoints remaining TTLs through the log (Checkpoints)
// so a new leader neither resets TTLs to full nor expires leases early:
// Promote gives every lease its checkpointed remaining TTL (or its full TTL
// when none was recorded) plus `promote_extend`, which covers the election.
//
// Revoke returns the keys the lease held; the caller deletes them in the
// same apply batch, so the revocation and the deletions are one atomic
// change (and one revision) for readers and watchers.
//
// The server keeps the replicated state in its store as well (one record per
// lease, written in the same apply batch as the command) and rebuilds a
// Lessor from it with Reset after a restart or a snapshot install.
//
// Thread-safety: every method is thread-safe (one internal mutex, never held
// while calling out). The apply thread calls the command methods, the
// driver thread ExpiredLeases/Checkpoints/Promote/Demote, gRPC threads
// Renew/TimeToLive/Leases.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "base/clock.h"
#include "base/status.h"

namespace conclave::lease {

using LeaseId = int64_t;

// etcd's error texts; clients match on them.
namespace errors {
inline constexpr std::string_view kLeaseNotFound = "etcdserver: requested lease not found";
inline constexpr std::string_view kLeaseExists = "etcdserver: lease already exists";
inline constexpr std::string_view kTTLTooLarge = "etcdserver: too large lease TTL";
inline constexpr std::string_view kNotLeader = "etcdserver: not leader";

// The gRPC codes are etcd's (rpctypes/error.go).
inline Status LeaseNotFound() {
  return Status::NotFound(std::string(kLeaseNotFound));
}
inline Status LeaseExists() {
  return Status::FailedPrecondition(std::string(kLeaseExists));
}
inline Status TTLTooLarge() {
  return Status::OutOfRange(std::string(kTTLTooLarge));
}
inline Status NotLeader() {
  return Status::FailedPrecondition(std::string(kNotLeader));
}
}  // namespace errors

struct LessorOptions {
  // A granted TTL below this is raised to it (etcd: 1.5 election timeouts).
  int64_t min_ttl_seconds = 2;
  // etcd's MaxLeaseTTL.
  int64_t max_ttl_seconds = 9'000'000'000;
  // Added to every deadline on Promote, to cover the election that passed
  // without keep-alives reaching anyone.
  Duration promote_extend = std::chrono::seconds(1);
  // ExpiredLeases reports a lease again after this long if its revocation
  // has not been applied (the proposal may have been lost).
  Duration expired_retry = std::chrono::seconds(3);
};

struct GrantResult {
  LeaseId id = 0;
  int64_t ttl_seconds = 0;  // as granted: at least min_ttl_seconds
};

struct TimeToLiveResult {
  LeaseId id = 0;
  int64_t granted_ttl_seconds = 0;
  // Seconds left, rounded up. On a primary, from the deadline; elsewhere the
  // checkpointed remaining TTL or the granted TTL. 0 once the deadline has
  // passed and until the revocation is applied (as etcd); the api layer
  // answers -1 only for a lease that is gone.
  int64_t ttl_seconds = 0;
  std::vector<std::string> keys;  // sorted; filled only when asked for
};

struct Checkpoint {
  LeaseId id = 0;
  int64_t remaining_ttl_seconds = 0;
  bool operator==(const Checkpoint&) const = default;
};

class Lessor {
 public:
  Lessor(Clock& clock, LessorOptions options);
  Lessor(const Lessor&) = delete;
  Lessor& operator=(const Lessor&) = delete;

  // Stateless checks run before proposing a grant.
  Status ValidateGrant(int64_t ttl_seconds) const;

  // --- Applied commands (apply thread; deterministic) ---

  // Grants lease `id` (0: the lowest positive id above every id this lessor
  // has granted that is free, a deterministic choice). kLeaseExists when id
  // is taken, kTTLTooLarge above max_ttl_seconds.
  Result<GrantResult> Grant(LeaseId id, int64_t ttl_seconds);
  // Removes the lease and returns its keys, sorted, for the caller to delete
  // in the same apply batch.
  Result<std::vector<std::string>> Revoke(LeaseId id);
  // Records the remaining TTL the leader saw. Unknown ids are ignored: the
  // lease may have been revoked after the checkpoint was proposed.
  void ApplyCheckpoint(const Checkpoint& c);
  // Attaches `key` to lease `id`, taking it off any other lease first.
  Status Attach(LeaseId id, const std::string& key);
  // Takes `key` off whatever lease holds it (no-op when none does).
  void Detach(const std::string& key);

  // Replaces the replicated state: these leases with no keys (the caller
  // re-attaches keys with Attach). Deadlines restart as on Promote if primary.
  struct Restored {
    LeaseId id = 0;
    int64_t ttl_seconds = 0;
    int64_t remaining_ttl_seconds = 0;
  };
  void Reset(const std::vector<Restored>& leases);

  // --- Leader-local decisions (driver thread) ---

  // Becomes primary: every lease gets a deadline now + (checkpointed
  // remaining TTL, or granted TTL) + promote_extend.
  void Promote();
  // Stops keeping deadlines and deciding expiry.
  void Demote();
  bool primary() const;

  // Up to `limit` (0: all) leases whose deadline has passed, oldest deadline
  // first, to propose revoking. Each is reported once, and again only after
  // expired_retry if its revocation has not been applied by then. Empty
  // unless primary.
  std::vector<LeaseId> ExpiredLeases(size_t limit);
  // Up to `limit` (0: all) remaining TTLs to propose as checkpoints: the
  // leases renewed since their last checkpoint plus, when `all`, every
  // lease. Empty unless primary.
  std::vector<Checkpoint> Checkpoints(size_t limit, bool all);

  // --- Queries (any thread) ---

  // Keep-alive: on the primary, moves the deadline to now + granted TTL and
  // returns the granted TTL. kLeaseNotFound, or kNotLeader off the primary.
  Result<int64_t> Renew(LeaseId id);
  Result<TimeToLiveResult> TimeToLive(LeaseId id, bool with_keys) const;
  std::vector<LeaseId> Leases() const;  // sorted
  // The lease `key` is attached to, 0 if none.
  LeaseId LeaseOf(const std::string& key) const;

 private:
  struct Lease {
    int64_t ttl_seconds = 0;
    // Replicated: the last checkpoint's remaining TTL, 0 if none since the
    // grant. Promote prefers it to the full TTL.
    int64_t remaining_ttl_seconds = 0;
    std::set<std::string> keys;
    // Leader-local.
    Duration deadline{0};
    Duration reported_expired_at{-1};  // < 0: not reported since the deadline moved
    bool renewed_since_checkpoint = false;
  };

  Duration Now() const { return clock_.Monotonic(); }
  static int64_t SecondsCeil(Duration d);

  Clock& clock_;
  const LessorOptions options_;
  mutable std::mutex mu_;
  std::map<LeaseId, Lease> leases_;           // guarded by mu_
  std::map<std::string, LeaseId> key_lease_;  // guarded by mu_
  LeaseId highest_granted_ = 0;               // guarded by mu_
  bool primary_ = false;                      // guarded by mu_
};

}  // namespace conclave::lease
