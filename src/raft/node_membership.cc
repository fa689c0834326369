// Membership changes (joint consensus, learners) and leadership transfer.
#include <fmt/format.h>

#include "base/logging.h"
#include "raft/confchange.h"
#include "raft/raft.h"

namespace conclave::raft {

Status Node::CheckConfChangeProposal(const Entry& e) const {
  if (pending_conf_index_ > log_.applied()) {
    return Status::FailedPrecondition(
               fmt::format(
                   "raft: a configuration change is already in progress (index {}, applied {})",
                   pending_conf_index_, log_.applied()))
        .WithReason(ErrorReason::kConfChangeInProgress);
  }
  ASSIGN_OR_RETURN(ConfChange cc, ConfChange::Decode(e.data));
  // Validate against the current configuration, which is the one the change
  // will be applied to: pending_conf_index_ <= applied guarantees that.
  Result<ChangeResult> r = PlanConfChange(cc);
  if (!r.ok()) return Status::InvalidArgument("raft: " + r.status().message());
  return Status::Ok();
}

Result<ChangeResult> Node::PlanConfChange(const ConfChange& cc) const {
  Changer changer(tracker_, log_.LastIndex());
  bool auto_leave = false;
  if (cc.IsLeaveJoint()) return changer.LeaveJoint();
  if (cc.EntersJoint(&auto_leave)) return changer.EnterJoint(auto_leave, cc.changes);
  return changer.Simple(cc.changes);
}

Result<ConfState> Node::ApplyConfChange(const ConfChange& cc) {
  Result<ChangeResult> r = PlanConfChange(cc);
  // Every member applies the same changes to the same configuration, so a
  // refusal here is the same everywhere and the configuration stays put.
  if (!r.ok()) return r.status();
  SwitchToConfig(*r);
  return tracker_.config().ToConfState();
}

void Node::SwitchToConfig(const ChangeResult& r) {
  tracker_.config() = r.config;
  tracker_.progress() = r.progress;
  const Progress* self = tracker_.Find(id_);
  is_learner_ = self != nullptr && self->is_learner;
  if (role_ != Role::kLeader) return;
  if (self == nullptr || is_learner_) {
    // Removed (or demoted): step down so the remaining voters elect a leader.
    LOG_DEBUG("raft: {} leaving leadership, no longer a voter group={}", id_, group_);
    BecomeFollower(term_, kNoNode);
    return;
  }
  if (lead_transferee_ != kNoNode && tracker_.Find(lead_transferee_) == nullptr) {
    AbortLeaderTransfer();
  }
  // The quorum may have shrunk; and new members need their first append.
  if (MaybeCommit()) {
    BroadcastAppend();
  } else {
    for (NodeId id : tracker_.AllIds()) {
      if (id != id_) MaybeSendAppend(id, false);
    }
  }
  // Read rounds in flight were counted against the old voters; restart them.
  AdvanceReadRounds();
}

void Node::MaybeAutoLeaveJoint() {
  const TrackerConfig& c = tracker_.config();
  if (!c.IsJoint() || !c.auto_leave || pending_conf_index_ > log_.applied()) return;
  if (lead_transferee_ != kNoNode) return;
  std::vector<Entry> leave{Entry{.type = EntryType::kConfChange, .data = ConfChange{}.Encode()}};
  if (AppendEntries(&leave)) {
    pending_conf_index_ = log_.LastIndex();
    BroadcastAppend();
  }
}

void Node::HandleTransferLeader(const Message& m) {
  const NodeId transferee = m.from;
  const Progress* pr = tracker_.Find(transferee);
  if (pr == nullptr || pr->is_learner || transferee == id_) return;
  if (lead_transferee_ == transferee) return;  // already under way
  lead_transferee_ = transferee;
  // The transfer must finish within an election timeout (TickHeartbeat).
  election_elapsed_ = 0;
  if (pr->match == log_.LastIndex()) {
    SendTimeoutNow(transferee);
  } else {
    SendAppend(transferee);
  }
}

void Node::SendTimeoutNow(NodeId to) {
  lease_revoked_in_term_ = true;
  Send(Message{.type = MessageType::kTimeoutNow, .to = to});
}

}  // namespace conclave::raft
