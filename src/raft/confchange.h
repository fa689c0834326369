// Membership changes: computes the configuration that results from a
// ConfChange, refusing the transitions that joint consensus forbids.
//
//   Simple      at most one voter added or removed, outside a joint config
//   EnterJoint  any set of changes: old voters stay as the outgoing config
//   LeaveJoint  drop the outgoing config; demoted voters become learners
//
// The Changer works on copies and returns the new configuration and
// progress map; the Node swaps them in only when the change is valid.
//
// Internal to src/raft. Thread-safety: none.
#pragma once

#include <map>
#include <vector>

#include "base/status.h"
#include "raft/tracker.h"

namespace conclave::raft {

struct ChangeResult {
  TrackerConfig config;
  std::map<NodeId, Progress> progress;
};

class Changer {
 public:
  Changer(const ProgressTracker& tracker, uint64_t last_index)
      : tracker_(tracker), last_index_(last_index) {}

  Result<ChangeResult> EnterJoint(bool auto_leave,
                                  const std::vector<ConfChangeSingle>& changes) const;
  Result<ChangeResult> LeaveJoint() const;
  Result<ChangeResult> Simple(const std::vector<ConfChangeSingle>& changes) const;

  // Builds the configuration a snapshot describes, from scratch.
  static Result<ChangeResult> Restore(const ConfState& cs, const ProgressTracker& empty_tracker,
                                      uint64_t last_index);

 private:
  Status Apply(ChangeResult* r, const std::vector<ConfChangeSingle>& changes) const;
  void MakeVoter(ChangeResult* r, NodeId id) const;
  void MakeLearner(ChangeResult* r, NodeId id) const;
  void Remove(ChangeResult* r, NodeId id) const;
  void InitProgress(ChangeResult* r, NodeId id, bool learner) const;
  static Status CheckInvariants(const ChangeResult& r);

  const ProgressTracker& tracker_;
  uint64_t last_index_;
};

}  // namespace conclave::raft
