#include "raft/confchange.h"

#include <fmt/format.h>

#include <algorithm>

namespace conclave::raft {
namespace {

size_t SymmetricDifference(const std::set<NodeId>& a, const std::set<NodeId>& b) {
  size_t n = 0;
  for (NodeId id : a)
    n += b.count(id) == 0;
  for (NodeId id : b)
    n += a.count(id) == 0;
  return n;
}

}  // namespace

Result<ChangeResult> Changer::EnterJoint(bool auto_leave,
                                         const std::vector<ConfChangeSingle>& changes) const {
  ChangeResult r{tracker_.config(), tracker_.progress()};
  if (r.config.IsJoint()) return Status::FailedPrecondition("configuration is already joint");
  if (r.config.voters.incoming.empty()) {
    return Status::FailedPrecondition("cannot make a configuration with no voters joint");
  }
  r.config.voters.outgoing = r.config.voters.incoming;
  RETURN_IF_ERROR(Apply(&r, changes));
  r.config.auto_leave = auto_leave;
  RETURN_IF_ERROR(CheckInvariants(r));
  return r;
}

Result<ChangeResult> Changer::LeaveJoint() const {
  ChangeResult r{tracker_.config(), tracker_.progress()};
  if (!r.config.IsJoint()) return Status::FailedPrecondition("configuration is not joint");
  for (NodeId id : r.config.learners_next) {
    r.config.learners.insert(id);
    r.progress.at(id).is_learner = true;
  }
  r.config.learners_next.clear();
  for (NodeId id : r.config.voters.outgoing.ids()) {
    const bool still_member =
        r.config.voters.incoming.Contains(id) || r.config.learners.count(id) != 0;
    if (!still_member) r.progress.erase(id);
  }
  r.config.voters.outgoing = MajorityConfig();
  r.config.auto_leave = false;
  RETURN_IF_ERROR(CheckInvariants(r));
  return r;
}

Result<ChangeResult> Changer::Simple(const std::vector<ConfChangeSingle>& changes) const {
  ChangeResult r{tracker_.config(), tracker_.progress()};
  if (r.config.IsJoint()) {
    return Status::FailedPrecondition("cannot apply a simple change to a joint configuration");
  }
  RETURN_IF_ERROR(Apply(&r, changes));
  if (SymmetricDifference(tracker_.config().voters.incoming.ids(), r.config.voters.incoming.ids()) >
      1) {
    return Status::InvalidArgument("more than one voter changed without a joint configuration");
  }
  RETURN_IF_ERROR(CheckInvariants(r));
  return r;
}

Status Changer::Apply(ChangeResult* r, const std::vector<ConfChangeSingle>& changes) const {
  for (const ConfChangeSingle& c : changes) {
    if (c.node == kNoNode) return Status::InvalidArgument("conf change names node 0");
    switch (c.type) {
      case ConfChangeType::kAddVoter:
        MakeVoter(r, c.node);
        break;
      case ConfChangeType::kAddLearner:
        MakeLearner(r, c.node);
        break;
      case ConfChangeType::kRemoveNode:
        Remove(r, c.node);
        break;
    }
  }
  if (r->config.voters.incoming.empty()) return Status::InvalidArgument("removed all voters");
  return Status::Ok();
}

void Changer::MakeVoter(ChangeResult* r, NodeId id) const {
  auto it = r->progress.find(id);
  if (it == r->progress.end()) {
    InitProgress(r, id, /*learner=*/false);
  } else {
    it->second.is_learner = false;
  }
  r->config.learners.erase(id);
  r->config.learners_next.erase(id);
  r->config.voters.incoming.mutable_ids().insert(id);
}

void Changer::MakeLearner(ChangeResult* r, NodeId id) const {
  auto it = r->progress.find(id);
  if (it == r->progress.end()) {
    InitProgress(r, id, /*learner=*/true);
    r->config.learners.insert(id);
    return;
  }
  if (it->second.is_learner) return;
  Progress kept = it->second;
  Remove(r, id);
  r->progress.insert_or_assign(id, kept);
  // A voter of the outgoing config keeps voting there until the joint config
  // is left, so it becomes a learner only then.
  if (r->config.voters.outgoing.Contains(id)) {
    r->config.learners_next.insert(id);
  } else {
    r->progress.at(id).is_learner = true;
    r->config.learners.insert(id);
  }
}

void Changer::Remove(ChangeResult* r, NodeId id) const {
  if (r->progress.find(id) == r->progress.end()) return;
  r->config.voters.incoming.mutable_ids().erase(id);
  r->config.learners.erase(id);
  r->config.learners_next.erase(id);
  if (!r->config.voters.outgoing.Contains(id)) r->progress.erase(id);
}

void Changer::InitProgress(ChangeResult* r, NodeId id, bool learner) const {
  Progress pr(std::max<uint64_t>(last_index_, 1), tracker_.max_inflight(),
              tracker_.max_inflight_bytes(), learner);
  // A new member counts as active so that the leader's next quorum check does
  // not step down before it has had a chance to hear from it.
  pr.recent_active = true;
  r->progress.insert_or_assign(id, std::move(pr));
}

Status Changer::CheckInvariants(const ChangeResult& r) {
  const TrackerConfig& c = r.config;
  auto has_progress = [&](NodeId id) { return r.progress.count(id) != 0; };
  for (NodeId id : c.voters.Ids()) {
    if (!has_progress(id)) return Status::Internal(fmt::format("voter {} has no progress", id));
  }
  for (NodeId id : c.learners) {
    if (!has_progress(id)) return Status::Internal(fmt::format("learner {} has no progress", id));
    if (c.voters.Contains(id)) {
      return Status::InvalidArgument(fmt::format("node {} is both voter and learner", id));
    }
    if (!r.progress.at(id).is_learner) {
      return Status::Internal(fmt::format("learner {} not marked as learner", id));
    }
  }
  for (NodeId id : c.learners_next) {
    if (!c.voters.outgoing.Contains(id)) {
      return Status::Internal(fmt::format("next learner {} is not an outgoing voter", id));
    }
  }
  if (!c.IsJoint() && (!c.learners_next.empty() || c.auto_leave)) {
    return Status::Internal("non-joint configuration with joint-only state");
  }
  return Status::Ok();
}

Result<ChangeResult> Changer::Restore(const ConfState& cs, const ProgressTracker& empty_tracker,
                                      uint64_t last_index) {
  ChangeResult r{TrackerConfig{}, {}};
  for (NodeId id : cs.learners) {
    const bool voter = std::find(cs.voters.begin(), cs.voters.end(), id) != cs.voters.end() ||
                       std::find(cs.voters_outgoing.begin(), cs.voters_outgoing.end(), id) !=
                           cs.voters_outgoing.end();
    if (voter) {
      return Status::Corruption(fmt::format("conf state lists node {} as voter and learner", id));
    }
  }
  Changer ch(empty_tracker, last_index);
  for (NodeId id : cs.voters)
    ch.MakeVoter(&r, id);
  for (NodeId id : cs.learners)
    ch.MakeLearner(&r, id);
  for (NodeId id : cs.voters_outgoing) {
    if (r.progress.count(id) == 0) ch.InitProgress(&r, id, false);
    r.config.voters.outgoing.mutable_ids().insert(id);
  }
  for (NodeId id : cs.learners_next) {
    if (r.progress.count(id) == 0) ch.InitProgress(&r, id, false);
    r.config.learners_next.insert(id);
  }
  r.config.auto_leave = cs.auto_leave;
  if (!r.config.voters.outgoing.empty() || !cs.voters.empty()) {
    RETURN_IF_ERROR(CheckInvariants(r));
  }
  return r;
}

}  // namespace conclave::raft
