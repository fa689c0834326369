// Log replication: proposals, appends and their responses, heartbeats,
// snapshots, and the commit rule.
#include <fmt/format.h>

#include <cstring>

#include "base/logging.h"
#include "raft/confchange.h"
#include "raft/raft.h"

namespace conclave::raft {

// ---- leader ----

Status Node::StepLeader(Message& m) {
  switch (m.type) {
    case MessageType::kBeat: {
      // Regular heartbeats repeat the newest pending read round: they are
      // sent after it started, so their acknowledgements confirm it even if
      // the round's own heartbeats were lost.
      std::string ctx;
      if (!read_rounds_.empty()) {
        ctx.resize(sizeof(uint64_t));
        std::memcpy(ctx.data(), &read_rounds_.back().id, sizeof(uint64_t));
      }
      BroadcastHeartbeat(ctx);
      return Status::Ok();
    }
    case MessageType::kCheckQuorum:
      if (!tracker_.QuorumActive()) {
        LOG_DEBUG("raft: {} stepping down, quorum inactive group={} term={}", id_, group_, term_);
        BecomeFollower(term_, kNoNode);
        return Status::Ok();
      }
      for (auto& [id, pr] : tracker_.progress()) {
        if (id != id_) pr.recent_active = false;
      }
      return Status::Ok();
    case MessageType::kPropose:
      return HandlePropose(m);
    case MessageType::kReadIndex:
      HandleReadRequest(m.from, std::move(m.context));
      return Status::Ok();
    case MessageType::kTransferLeader:
      HandleTransferLeader(m);
      return Status::Ok();
    default:
      break;
  }

  Progress* pr = tracker_.Find(m.from);
  if (pr == nullptr) return Status::Ok();  // not (or no longer) a member
  switch (m.type) {
    case MessageType::kAppendResponse:
      HandleAppendResponse(m, pr);
      break;
    case MessageType::kHeartbeatResponse:
      HandleHeartbeatResponse(m, pr);
      break;
    case MessageType::kSnapshotStatus:
      if (pr->state != ProgressState::kSnapshot) break;
      // Success or failure, go back to probing; on success wait for the
      // follower's next answer before sending more.
      pr->BecomeProbe();
      pr->probe_sent = !m.reject;
      break;
    case MessageType::kUnreachable:
      if (pr->state == ProgressState::kReplicate) pr->BecomeProbe();
      break;
    default:
      break;
  }
  return Status::Ok();
}

Status Node::HandlePropose(Message& m) {
  if (m.entries.empty()) return Status::InvalidArgument("raft: empty proposal");
  if (tracker_.Find(id_) == nullptr) {
    return Status::Unavailable("raft: proposal dropped, leader was removed from the group")
        .WithReason(ErrorReason::kNoLeader);
  }
  if (lead_transferee_ != kNoNode) {
    return Status::Unavailable("raft: proposal dropped, leadership transfer in progress")
        .WithReason(ErrorReason::kNoLeader);
  }
  // A refused proposal is dropped whole; no change is pending on its account.
  const uint64_t pending_conf_before = pending_conf_index_;
  for (size_t i = 0; i < m.entries.size(); ++i) {
    if (m.entries[i].type != EntryType::kConfChange) continue;
    Status s = CheckConfChangeProposal(m.entries[i]);
    if (!s.ok()) {
      pending_conf_index_ = pending_conf_before;
      return s;
    }
    // The index this entry will get once appended.
    pending_conf_index_ = log_.LastIndex() + 1 + i;
  }
  if (!AppendEntries(&m.entries)) {
    pending_conf_index_ = pending_conf_before;
    return Status::ResourceExhausted("raft: proposal dropped, too many uncommitted bytes");
  }
  BroadcastAppend();
  return Status::Ok();
}

// Leader-side append of new entries at the end of the log.
bool Node::AppendEntries(std::vector<Entry>* entries) {
  uint64_t bytes = 0;
  for (const Entry& e : *entries)
    bytes += e.PayloadBytes();
  if (config_.max_uncommitted_bytes > 0 && uncommitted_bytes_ > 0 && bytes > 0 &&
      uncommitted_bytes_ + bytes > config_.max_uncommitted_bytes) {
    return false;
  }
  uncommitted_bytes_ += bytes;
  uint64_t index = log_.LastIndex();
  for (Entry& e : *entries) {
    e.term = term_;
    e.index = ++index;
  }
  log_.Append(*entries);
  // The leader's own progress advances only when Advance reports these
  // entries durable; a single-member group commits then.
  return true;
}

bool Node::MaybeSendAppend(NodeId to, bool send_if_empty) {
  Progress* pr = tracker_.Find(to);
  if (pr == nullptr || pr->IsPaused()) return false;
  Result<uint64_t> prev_term = log_.TermOrError(pr->next - 1);
  Result<std::vector<Entry>> entries = prev_term.ok()
                                           ? log_.EntriesFrom(pr->next, config_.max_message_bytes)
                                           : Result<std::vector<Entry>>(prev_term.status());
  if (prev_term.ok() && entries.ok()) {
    if (entries->empty() && !send_if_empty) return false;
    uint64_t bytes = 0;
    for (const Entry& e : *entries)
      bytes += e.PayloadBytes();
    const size_t count = entries->size();
    const uint64_t last = count ? entries->back().index : pr->next - 1;
    Message m{.type = MessageType::kAppend,
              .to = to,
              .log_term = *prev_term,
              .index = pr->next - 1,
              .commit = log_.committed()};
    m.entries = std::move(entries).value();
    Send(std::move(m));
    pr->SentEntries(last, count, bytes);
    return true;
  }
  // The entries this follower needs are compacted: send a snapshot. Only to
  // followers that answer, or a dead one would cost a snapshot per tick.
  if (!pr->recent_active) return false;
  Snapshot snap = log_.CurrentSnapshot();
  CHECK_MSG(!snap.IsEmpty(), "node {}: follower {} needs compacted entries but no snapshot", id_,
            to);
  const uint64_t snap_index = snap.metadata.index;
  Message m{.type = MessageType::kSnapshot, .to = to};
  m.snapshot = std::make_shared<const Snapshot>(std::move(snap));
  Send(std::move(m));
  pr->BecomeSnapshot(snap_index);
  return true;
}

void Node::BroadcastAppend() {
  for (NodeId id : tracker_.AllIds()) {
    if (id != id_) SendAppend(id);
  }
}

void Node::SendHeartbeat(NodeId to, const std::string& context) {
  const Progress* pr = tracker_.Find(to);
  // Never tell a follower to commit beyond what it is known to hold.
  const uint64_t commit = std::min(pr ? pr->match : 0, log_.committed());
  Send(Message{.type = MessageType::kHeartbeat,
               .to = to,
               .index = tick_count_,
               .commit = commit,
               .context = context});
}

bool Node::CanQuiesce() const {
  if (role_ != Role::kLeader || lead_transferee_ != kNoNode || awaiting_advance_) return false;
  if (!msgs_.empty() || !pending_reads_.empty() || !read_rounds_.empty()) return false;
  const uint64_t last = log_.LastIndex();
  if (pending_conf_index_ > log_.applied() || log_.committed() != last || log_.applied() != last ||
      StableLastIndex() != last || !CommittedEntryInCurrentTerm()) {
    return false;
  }
  for (const auto& [id, pr] : tracker_.progress()) {
    if (pr.match != last) return false;
  }
  return true;
}

void Node::Quiesce() {
  // Ticks stop now and time does not: the read lease must be won again
  // with heartbeats sent after the group wakes.
  quiesced_at_tick_ = tick_count_;
  for (NodeId id : tracker_.AllIds()) {
    if (id == id_) continue;
    SendHeartbeat(id, "");
    msgs_.back().quiesce = true;
  }
}

void Node::BroadcastHeartbeat(const std::string& context) {
  for (NodeId id : tracker_.AllIds()) {
    if (id != id_) SendHeartbeat(id, context);
  }
}

bool Node::MaybeCommit() {
  if (config_.bugs.commit_previous_term_by_counting) {
    const uint64_t index = tracker_.Committed();
    if (index > log_.committed() && index <= log_.LastIndex()) {
      log_.CommitTo(index);
      return true;
    }
    return false;
  }
  // Only an entry of the current term is committed by counting replicas;
  // earlier entries are committed with it (Raft paper, Figure 8).
  return log_.MaybeCommit(tracker_.Committed(), term_);
}

bool Node::CommittedEntryInCurrentTerm() const {
  return log_.Term(log_.committed()) == term_;
}

void Node::HandleAppendResponse(const Message& m, Progress* pr) {
  pr->recent_active = true;
  if (m.reject) {
    // Fast back-tracking: the follower told us its last index at or below
    // the rejected one and that entry's term; skip every entry of ours with
    // a larger term in one step.
    uint64_t next_probe = m.reject_hint;
    if (m.log_term > 0) next_probe = log_.FindConflictByTerm(m.reject_hint, m.log_term);
    if (pr->MaybeDecreaseTo(m.index, next_probe)) {
      if (pr->state == ProgressState::kReplicate) pr->BecomeProbe();
      SendAppend(m.from);
    }
    return;
  }
  const bool was_paused = pr->IsPaused();
  if (!pr->MaybeUpdate(m.index)) return;
  switch (pr->state) {
    case ProgressState::kProbe:
      pr->BecomeReplicate();
      break;
    case ProgressState::kSnapshot:
      if (pr->match + 1 >= log_.FirstIndex()) {
        pr->BecomeProbe();
        pr->BecomeReplicate();
      }
      break;
    case ProgressState::kReplicate:
      pr->inflights.FreeLE(m.index);
      break;
  }
  if (MaybeCommit()) {
    BroadcastAppend();
  } else if (was_paused) {
    SendAppend(m.from);
  }
  // Keep the pipeline full.
  while (MaybeSendAppend(m.from, false)) {
  }
  if (m.from == lead_transferee_ && pr->match == log_.LastIndex()) SendTimeoutNow(m.from);
}

void Node::HandleHeartbeatResponse(const Message& m, Progress* pr) {
  pr->recent_active = true;
  pr->probe_sent = false;
  if (pr->state == ProgressState::kReplicate && pr->inflights.Full()) {
    // The follower is alive: let one more append through so a lost message
    // cannot stall the pipeline forever.
    pr->inflights.FreeFirstOne();
  }
  if (pr->match < log_.LastIndex()) SendAppend(m.from);
  if (!pr->is_learner) {
    uint64_t& ack = lease_acks_[m.from];
    ack = std::max(ack, m.index);
  }
  if (!m.context.empty()) {
    uint64_t round = 0;
    if (m.context.size() == sizeof(round)) {
      std::memcpy(&round, m.context.data(), sizeof(round));
      uint64_t& acked = read_acks_[m.from];
      acked = std::max(acked, round);
      AdvanceReadRounds();
    }
  }
}

// ---- follower ----

Status Node::StepFollower(Message& m) {
  switch (m.type) {
    case MessageType::kPropose:
      if (lead_ == kNoNode)
        return Status::Unavailable("raft: proposal dropped, no leader")
            .WithReason(ErrorReason::kNoLeader);
      if (config_.disable_proposal_forwarding) {
        return Status::Unavailable("raft: proposal dropped, forwarding disabled");
      }
      m.to = lead_;
      Send(std::move(m));
      return Status::Ok();
    case MessageType::kAppend:
      election_elapsed_ = 0;
      ticks_since_leader_contact_ = 0;
      lead_ = m.from;
      HandleAppend(m);
      return Status::Ok();
    case MessageType::kHeartbeat:
      election_elapsed_ = 0;
      ticks_since_leader_contact_ = 0;
      lead_ = m.from;
      HandleHeartbeat(m);
      return Status::Ok();
    case MessageType::kSnapshot:
      election_elapsed_ = 0;
      ticks_since_leader_contact_ = 0;
      lead_ = m.from;
      HandleSnapshot(m);
      return Status::Ok();
    case MessageType::kTransferLeader:
      if (lead_ == kNoNode)
        return Status::Unavailable("raft: transfer dropped, no leader")
            .WithReason(ErrorReason::kNoLeader);
      m.to = lead_;
      Send(std::move(m));
      return Status::Ok();
    case MessageType::kTimeoutNow:
      // The leader asked us to take over: campaign at once, skipping the
      // pre-vote and the voters' leader stickiness.
      Hup(/*transfer=*/true);
      return Status::Ok();
    case MessageType::kReadIndex:
      if (lead_ == kNoNode)
        return Status::Unavailable("raft: read dropped, no leader")
            .WithReason(ErrorReason::kNoLeader);
      m.to = lead_;
      Send(std::move(m));
      return Status::Ok();
    case MessageType::kReadIndexResponse:
      read_states_.push_back(ReadState{m.index, std::move(m.context)});
      return Status::Ok();
    default:
      return Status::Ok();
  }
}

void Node::HandleAppend(const Message& m) {
  if (m.index < log_.committed()) {
    Send(Message{.type = MessageType::kAppendResponse, .to = m.from, .index = log_.committed()});
    return;
  }
  std::optional<uint64_t> last_new;
  if (config_.bugs.skip_log_matching_check && !log_.MatchTerm(m.index, m.log_term) &&
      m.index <= log_.LastIndex() && !m.entries.empty()) {
    // Planted bug: take the leader's entries without checking that our
    // entry before them matches.
    std::vector<Entry> ents;
    for (const Entry& e : m.entries) {
      if (e.index > log_.committed()) ents.push_back(e);
    }
    if (!ents.empty() && log_.FindConflict(ents) != 0) log_.Append(ents);
    last_new = m.index + m.entries.size();
    log_.CommitTo(std::min(m.commit, *last_new));
  } else {
    last_new = log_.MaybeAppend(m.index, m.log_term, m.commit, m.entries);
  }
  if (last_new) {
    Send(Message{.type = MessageType::kAppendResponse, .to = m.from, .index = *last_new});
    return;
  }
  // Reject, with a hint: the last index at or below m.index whose term is at
  // most m.log_term. The leader jumps there instead of probing one by one.
  uint64_t hint = std::min(m.index, log_.LastIndex());
  hint = log_.FindConflictByTerm(hint, m.log_term);
  Send(Message{.type = MessageType::kAppendResponse,
               .to = m.from,
               .log_term = log_.Term(hint),
               .index = m.index,
               .reject = true,
               .reject_hint = hint});
}

void Node::HandleHeartbeat(const Message& m) {
  log_.CommitTo(std::min(m.commit, log_.LastIndex()));
  Send(Message{.type = MessageType::kHeartbeatResponse,
               .to = m.from,
               .index = m.index,
               .context = m.context});
}

void Node::HandleSnapshot(const Message& m) {
  if (m.snapshot && Restore(*m.snapshot)) {
    Send(Message{.type = MessageType::kAppendResponse, .to = m.from, .index = log_.LastIndex()});
  } else {
    Send(Message{.type = MessageType::kAppendResponse, .to = m.from, .index = log_.committed()});
  }
}

// Installs a snapshot from the leader. Returns false when it brings nothing
// new (the follower then only reports its commit index).
bool Node::Restore(const Snapshot& s) {
  if (s.metadata.index <= log_.committed()) return false;
  if (role_ != Role::kFollower) {
    // Only a follower installs snapshots; anything else is a bug upstream.
    BecomeFollower(term_ + 1, kNoNode);
    return false;
  }
  if (log_.MatchTerm(s.metadata.index, s.metadata.term)) {
    // We already hold the snapshot's last entry: just commit up to it.
    log_.CommitTo(s.metadata.index);
    return false;
  }
  log_.Restore(s);
  Result<ChangeResult> r = Changer::Restore(s.metadata.conf_state, tracker_, log_.LastIndex());
  CHECK_MSG(r.ok(), "node {}: snapshot with invalid configuration {}: {}", id_,
            s.metadata.conf_state.ToString(), r.status().ToString());
  SwitchToConfig(*r);
  return true;
}

}  // namespace conclave::raft
