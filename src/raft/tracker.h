// Progress tracking and quorum arithmetic for the leader, and the group
// configuration (voters, possibly joint, and learners).
//
// A MajorityConfig is a set of voters; a JointConfig is the incoming and
// (while changing membership) the outgoing set, and every decision needs a
// majority of both. Progress is the leader's view of one follower's log.
//
// Internal to src/raft. Thread-safety: none; owned by one Node.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "raft/types.h"

namespace conclave::raft {

enum class VoteResult { kPending, kLost, kWon };

class MajorityConfig {
 public:
  MajorityConfig() = default;
  explicit MajorityConfig(std::set<NodeId> ids) : ids_(std::move(ids)) {}

  // The largest index acknowledged by a majority. An empty config has no
  // say in a joint decision and returns UINT64_MAX.
  uint64_t CommittedIndex(const std::function<std::optional<uint64_t>(NodeId)>& acked) const;
  VoteResult Vote(const std::map<NodeId, bool>& votes) const;

  const std::set<NodeId>& ids() const { return ids_; }
  std::set<NodeId>& mutable_ids() { return ids_; }
  bool Contains(NodeId id) const { return ids_.count(id) != 0; }
  bool empty() const { return ids_.empty(); }
  size_t size() const { return ids_.size(); }

 private:
  std::set<NodeId> ids_;
};

struct JointConfig {
  MajorityConfig incoming;
  MajorityConfig outgoing;  // empty unless joint

  uint64_t CommittedIndex(const std::function<std::optional<uint64_t>(NodeId)>& acked) const;
  VoteResult Vote(const std::map<NodeId, bool>& votes) const;
  bool Contains(NodeId id) const { return incoming.Contains(id) || outgoing.Contains(id); }
  std::set<NodeId> Ids() const;
};

struct TrackerConfig {
  JointConfig voters;
  std::set<NodeId> learners;
  std::set<NodeId> learners_next;
  bool auto_leave = false;

  bool IsJoint() const { return !voters.outgoing.empty(); }
  ConfState ToConfState() const;
  std::string ToString() const { return ToConfState().ToString(); }
};

// A bounded window of in-flight append messages to one follower, recorded by
// the last index each carries, and their payload bytes.
class Inflights {
 public:
  Inflights(size_t max_count, uint64_t max_bytes) : max_count_(max_count), max_bytes_(max_bytes) {}

  void Add(uint64_t last_index, uint64_t bytes);
  // Frees every message whose last index is <= `index`.
  void FreeLE(uint64_t index);
  // Frees the oldest message, whatever its index.
  void FreeFirstOne() {
    if (!items_.empty()) FreeLE(items_.front().first);
  }
  bool Full() const { return items_.size() >= max_count_ || (max_bytes_ && bytes_ >= max_bytes_); }
  size_t Count() const { return items_.size(); }
  void Reset() {
    items_.clear();
    bytes_ = 0;
  }

 private:
  size_t max_count_;
  uint64_t max_bytes_;
  std::vector<std::pair<uint64_t, uint64_t>> items_;  // (last index, bytes), ascending
  uint64_t bytes_ = 0;
};

enum class ProgressState {
  // Unknown match: send one append at a time and learn where logs agree.
  kProbe,
  // Match known: stream appends optimistically, up to the in-flight window.
  kReplicate,
  // The entries the follower needs are compacted; a snapshot is on its way.
  kSnapshot,
};

std::string_view ProgressStateName(ProgressState s);

struct Progress {
  Progress(uint64_t next_index, size_t max_inflight, uint64_t max_inflight_bytes, bool learner)
      : next(next_index), inflights(max_inflight, max_inflight_bytes), is_learner(learner) {}

  uint64_t match = 0;
  uint64_t next = 1;
  ProgressState state = ProgressState::kProbe;
  uint64_t pending_snapshot = 0;  // index of the snapshot in flight (kSnapshot)
  bool recent_active = true;      // heard from since the last quorum check
  bool probe_sent = false;        // kProbe: an append is out, wait for its answer
  Inflights inflights;
  bool is_learner = false;

  void ResetState(ProgressState s);
  void BecomeProbe();
  void BecomeReplicate();
  void BecomeSnapshot(uint64_t snapshot_index);
  // An acknowledgement up to n. Returns whether it told us anything new.
  bool MaybeUpdate(uint64_t n);
  // A rejection of an append at `rejected`; `match_hint` is the follower's
  // guess. Returns false when the rejection is stale.
  bool MaybeDecreaseTo(uint64_t rejected, uint64_t match_hint);
  // Records an append carrying entries up to last_index (bytes of payload).
  void SentEntries(uint64_t last_index, size_t count, uint64_t bytes);
  bool IsPaused() const;
  std::string ToString() const;
};

class ProgressTracker {
 public:
  ProgressTracker(size_t max_inflight, uint64_t max_inflight_bytes)
      : max_inflight_(max_inflight), max_inflight_bytes_(max_inflight_bytes) {}

  uint64_t Committed() const;
  bool IsSingleton() const {
    return config_.voters.incoming.size() == 1 && config_.voters.outgoing.empty();
  }
  // Whether a quorum of voters has been recently active (the leader counts).
  bool QuorumActive() const;

  void ResetVotes() { votes_.clear(); }
  void RecordVote(NodeId id, bool granted);
  VoteResult TallyVotes(int* granted, int* rejected) const;

  Progress* Find(NodeId id);
  const Progress* Find(NodeId id) const;
  std::vector<NodeId> VoterIds() const;  // sorted
  std::vector<NodeId> AllIds() const;    // sorted, voters and learners

  TrackerConfig& config() { return config_; }
  const TrackerConfig& config() const { return config_; }
  std::map<NodeId, Progress>& progress() { return progress_; }
  const std::map<NodeId, Progress>& progress() const { return progress_; }
  size_t max_inflight() const { return max_inflight_; }
  uint64_t max_inflight_bytes() const { return max_inflight_bytes_; }

 private:
  TrackerConfig config_;
  std::map<NodeId, Progress> progress_;
  std::map<NodeId, bool> votes_;
  size_t max_inflight_;
  uint64_t max_inflight_bytes_;
};

}  // namespace conclave::raft
