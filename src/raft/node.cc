// Node lifecycle: creation, roles, ticks and the Ready/Advance handshake.
#include <fmt/format.h>

#include "base/logging.h"
#include "raft/confchange.h"
#include "raft/raft.h"

namespace conclave::raft {

std::string_view RoleName(Role role) {
  switch (role) {
    case Role::kFollower:
      return "follower";
    case Role::kPreCandidate:
      return "pre-candidate";
    case Role::kCandidate:
      return "candidate";
    case Role::kLeader:
      return "leader";
  }
  return "?";
}

Status Config::Validate() const {
  if (id == kNoNode) return Status::InvalidArgument("raft: node id must not be 0");
  if (heartbeat_ticks <= 0) return Status::InvalidArgument("raft: heartbeat_ticks must be > 0");
  if (election_ticks <= heartbeat_ticks) {
    return Status::InvalidArgument("raft: election_ticks must exceed heartbeat_ticks");
  }
  if (max_inflight_messages == 0) {
    return Status::InvalidArgument("raft: max_inflight_messages must be > 0");
  }
  if (read_only == ReadOnlyOption::kLeaseBased && !check_quorum) {
    return Status::InvalidArgument("raft: lease-based reads require check_quorum");
  }
  if (lease_ticks < 0 || lease_ticks >= election_ticks) {
    return Status::InvalidArgument("raft: lease_ticks must be in [0, election_ticks)");
  }
  return Status::Ok();
}

Node::Node(const Config& config, const LogStorage* storage)
    : config_(config),
      id_(config.id),
      group_(config.group),
      log_(storage, config.max_committed_bytes_per_ready),
      tracker_(config.max_inflight_messages, config.max_inflight_bytes),
      random_(config.random_seed ^ (config.id * 0x9e3779b97f4a7c15ULL)) {
  if (config_.lease_ticks == 0) config_.lease_ticks = config_.election_ticks * 3 / 4;
}

Result<std::unique_ptr<Node>> Node::Create(const Config& config, const LogStorage* storage) {
  RETURN_IF_ERROR(config.Validate());
  std::unique_ptr<Node> node(new Node(config, storage));
  RETURN_IF_ERROR(node->Init());
  return node;
}

Status Node::Init() {
  const LogStorage* storage = log_.storage();
  ASSIGN_OR_RETURN(ChangeResult restored,
                   Changer::Restore(storage->InitialConfState(), tracker_, log_.LastIndex()));
  SwitchToConfig(restored);

  const HardState hs = storage->InitialHardState();
  if (!hs.IsEmpty()) {
    // A commit below the snapshot is fine (a snapshot holds only committed
    // entries, and the hard state may have been written before it); one
    // beyond the log is not.
    if (hs.commit > log_.LastIndex()) {
      return Status::Corruption(fmt::format("raft: hard state commit {} beyond last index {}",
                                            hs.commit, log_.LastIndex()));
    }
    log_.CommitTo(hs.commit);
    term_ = hs.term;
    vote_ = hs.vote;
  }
  if (config_.applied > 0) {
    if (config_.applied > log_.committed()) {
      return Status::InvalidArgument(
          fmt::format("raft: applied {} beyond commit {}", config_.applied, log_.committed()));
    }
    if (config_.applied > log_.applied()) log_.AppliedTo(config_.applied);
  }
  BecomeFollower(term_, kNoNode);
  if (config_.vote_at_once_at_term_one && term_ <= 1) {
    ticks_since_leader_contact_ = config_.election_ticks;
  }
  prev_hard_state_ = CurrentHardState();
  prev_soft_state_ = CurrentSoftState();
  return Status::Ok();
}

// ---- roles ----

void Node::Reset(uint64_t term) {
  if (term_ != term) {
    term_ = term;
    vote_ = kNoNode;
    lease_revoked_in_term_ = false;
  }
  lead_ = kNoNode;
  election_elapsed_ = 0;
  heartbeat_elapsed_ = 0;
  ResetRandomizedElectionTimeout();
  AbortLeaderTransfer();
  tracker_.ResetVotes();
  const uint64_t last = log_.LastIndex();
  for (auto& [id, pr] : tracker_.progress()) {
    const bool learner = pr.is_learner;
    pr = Progress(last + 1, tracker_.max_inflight(), tracker_.max_inflight_bytes(), learner);
    if (id == id_) pr.match = StableLastIndex();
  }
  pending_conf_index_ = 0;
  uncommitted_bytes_ = 0;
  ClearReads();
}

void Node::BecomeFollower(uint64_t term, NodeId lead) {
  Reset(term);
  lead_ = lead;
  role_ = Role::kFollower;
}

void Node::BecomePreCandidate() {
  CHECK_MSG(role_ != Role::kLeader, "node {}: leader cannot become pre-candidate", id_);
  // A pre-candidate does not change its term or vote; it only asks whether
  // it could win.
  tracker_.ResetVotes();
  lead_ = kNoNode;
  role_ = Role::kPreCandidate;
}

void Node::BecomeCandidate() {
  CHECK_MSG(role_ != Role::kLeader, "node {}: leader cannot become candidate", id_);
  Reset(term_ + 1);
  vote_ = id_;
  role_ = Role::kCandidate;
}

void Node::BecomeLeader() {
  CHECK_MSG(role_ != Role::kFollower, "node {}: follower cannot become leader", id_);
  Reset(term_);
  lead_ = id_;
  role_ = Role::kLeader;
  ticks_since_leader_contact_ = 0;
  if (Progress* self = tracker_.Find(id_)) self->BecomeReplicate();
  // Conf changes in the log that are not yet applied may exist; the new
  // leader must not propose another until they are.
  pending_conf_index_ = log_.LastIndex();
  // An empty entry of the new term: committing it commits everything before
  // it (Figure 8), and tells the leader its commit index is current.
  std::vector<Entry> empty{Entry{}};
  CHECK(AppendEntries(&empty));
  LOG_DEBUG("raft: {} became leader group={} term={}", id_, group_, term_);
}

bool Node::Promotable() const {
  const Progress* self = tracker_.Find(id_);
  return self != nullptr && !self->is_learner && !log_.HasPendingSnapshot();
}

void Node::ResetRandomizedElectionTimeout() {
  randomized_election_timeout_ =
      config_.election_ticks + static_cast<int>(random_.Uniform(config_.election_ticks));
}

// ---- ticks ----

void Node::Tick() {
  ++tick_count_;
  if (role_ == Role::kLeader) {
    TickHeartbeat();
  } else {
    TickElection();
  }
}

void Node::TickElection() {
  ++election_elapsed_;
  ++ticks_since_leader_contact_;
  if (Promotable() && election_elapsed_ >= randomized_election_timeout_) {
    election_elapsed_ = 0;
    (void)Step(Message{.type = MessageType::kHup, .from = id_});
  }
}

void Node::TickHeartbeat() {
  // A leader is in contact with itself: if it steps down it still refuses
  // votes for an election timeout, like any member that just heard a leader.
  ticks_since_leader_contact_ = 0;
  ++heartbeat_elapsed_;
  ++election_elapsed_;
  if (election_elapsed_ >= config_.election_ticks) {
    election_elapsed_ = 0;
    if (config_.check_quorum) {
      (void)Step(Message{.type = MessageType::kCheckQuorum, .from = id_});
    }
    // A transfer that did not finish within an election timeout is abandoned.
    if (role_ == Role::kLeader && lead_transferee_ != kNoNode) AbortLeaderTransfer();
  }
  if (role_ != Role::kLeader) return;
  if (heartbeat_elapsed_ >= config_.heartbeat_ticks) {
    heartbeat_elapsed_ = 0;
    (void)Step(Message{.type = MessageType::kBeat, .from = id_});
  }
}

// ---- requests ----

Status Node::Campaign() {
  return Step(Message{.type = MessageType::kHup, .from = id_});
}

Status Node::Propose(std::string data) {
  Message m{.type = MessageType::kPropose, .group = group_, .from = id_};
  m.entries.push_back(Entry{.type = EntryType::kNormal, .data = std::move(data)});
  return Step(std::move(m));
}

Status Node::Propose(std::vector<std::string> data) {
  Message m{.type = MessageType::kPropose, .group = group_, .from = id_};
  m.entries.reserve(data.size());
  for (std::string& d : data)
    m.entries.push_back(Entry{.type = EntryType::kNormal, .data = std::move(d)});
  return Step(std::move(m));
}

Status Node::ProposeConfChange(const ConfChange& cc) {
  Message m{.type = MessageType::kPropose, .group = group_, .from = id_};
  m.entries.push_back(Entry{.type = EntryType::kConfChange, .data = cc.Encode()});
  return Step(std::move(m));
}

Status Node::ReadIndex(std::string context) {
  return Step(Message{.type = MessageType::kReadIndex,
                      .group = group_,
                      .from = id_,
                      .context = std::move(context)});
}

void Node::TransferLeadership(NodeId transferee) {
  (void)Step(Message{
      .type = MessageType::kTransferLeader, .group = group_, .from = transferee, .to = lead_});
}

void Node::ReportUnreachable(NodeId id) {
  (void)Step(Message{.type = MessageType::kUnreachable, .from = id});
}

void Node::ReportSnapshot(NodeId id, bool ok) {
  (void)Step(Message{.type = MessageType::kSnapshotStatus, .from = id, .reject = !ok});
}

void Node::Send(Message m) {
  m.group = group_;
  // Requests forwarded to the leader keep their originator: a forwarded
  // kTransferLeader names the transferee in `from`.
  if (m.from == kNoNode) m.from = id_;
  // Every network message carries a term, except proposals and read
  // requests forwarded to the leader, which carry 0.
  if (m.type == MessageType::kVote || m.type == MessageType::kVoteResponse ||
      m.type == MessageType::kPreVote || m.type == MessageType::kPreVoteResponse) {
    CHECK_MSG(m.term != 0, "vote message without a term: {}", m.ToString());
  } else if (m.type == MessageType::kPropose || m.type == MessageType::kReadIndex) {
    m.term = 0;
  } else {
    m.term = term_;
  }
  msgs_.push_back(std::move(m));
}

// ---- Step ----

Status Node::Step(Message m) {
  // A proposal is local when made here but travels when a follower
  // forwards it, so its group is checked too.
  if ((!IsLocalMessage(m.type) || m.type == MessageType::kPropose) && m.group != group_) {
    return Status::InvalidArgument(
        fmt::format("raft: message for group {} reached group {}", m.group, group_));
  }
  bool handled = false;
  RETURN_IF_ERROR(StepTermCheck(m, &handled));
  if (handled) return Status::Ok();

  switch (m.type) {
    case MessageType::kHup:
      Hup(/*transfer=*/false);
      return Status::Ok();
    case MessageType::kVote:
    case MessageType::kPreVote:
      HandleVoteRequest(m);
      return Status::Ok();
    default:
      break;
  }
  switch (role_) {
    case Role::kLeader:
      return StepLeader(m);
    case Role::kPreCandidate:
    case Role::kCandidate:
      return StepCandidate(m);
    case Role::kFollower:
      return StepFollower(m);
  }
  return Status::Ok();
}

// ---- Ready ----

HardState Node::CurrentHardState() const {
  return {term_, vote_, log_.committed()};
}

bool Node::HasReady() const {
  CHECK_MSG(!awaiting_advance_, "node {}: HasReady before Advance", id_);
  if (CurrentSoftState() != prev_soft_state_) return true;
  const HardState hs = CurrentHardState();
  if (!hs.IsEmpty() && hs != prev_hard_state_) return true;
  if (log_.HasPendingSnapshot() || !log_.unstable().entries().empty()) return true;
  if (!msgs_.empty() || !read_states_.empty()) return true;
  if (log_.HasNextCommittedEntries()) return true;
  return CanStartReadRound();
}

Ready Node::GetReady() {
  CHECK_MSG(!awaiting_advance_, "node {}: GetReady twice without Advance", id_);
  if (CanStartReadRound()) StartReadRound();
  Ready rd;
  const SoftState ss = CurrentSoftState();
  if (ss != prev_soft_state_) rd.soft_state = ss;
  const HardState hs = CurrentHardState();
  if (!hs.IsEmpty() && hs != prev_hard_state_) {
    rd.hard_state = hs;
    // Planted bug: the vote never reaches the disk.
    if (config_.bugs.vote_not_persisted) rd.hard_state->vote = kNoNode;
    ready_hard_state_ = hs;
  }
  rd.entries = log_.unstable().entries();
  if (log_.unstable().snapshot()) rd.snapshot = *log_.unstable().snapshot();
  rd.committed_entries = log_.NextCommittedEntries();
  rd.messages = std::move(msgs_);
  msgs_.clear();
  rd.read_states = std::move(read_states_);
  read_states_.clear();
  rd.must_sync = !rd.entries.empty() || rd.snapshot.has_value() ||
                 (rd.hard_state && (rd.hard_state->term != prev_hard_state_.term ||
                                    rd.hard_state->vote != prev_hard_state_.vote));
  awaiting_advance_ = true;
  return rd;
}

void Node::Advance(const Ready& rd) {
  CHECK_MSG(awaiting_advance_, "node {}: Advance without GetReady", id_);
  awaiting_advance_ = false;
  if (rd.soft_state) prev_soft_state_ = *rd.soft_state;
  if (rd.hard_state) prev_hard_state_ = ready_hard_state_;
  if (rd.snapshot) {
    log_.StableSnapshotTo(rd.snapshot->metadata.index);
    if (rd.snapshot->metadata.index > log_.applied()) log_.AppliedTo(rd.snapshot->metadata.index);
  }
  if (!rd.entries.empty()) log_.StableTo(rd.entries.back().index, rd.entries.back().term);
  if (!rd.committed_entries.empty()) {
    // Only this leader's own entries were counted as uncommitted; entries of
    // earlier terms that commit now must not shrink the count.
    uint64_t applied_bytes = 0;
    for (const Entry& e : rd.committed_entries) {
      if (e.term == term_) applied_bytes += e.PayloadBytes();
    }
    uncommitted_bytes_ =
        applied_bytes >= uncommitted_bytes_ ? 0 : uncommitted_bytes_ - applied_bytes;
    log_.AppliedTo(rd.committed_entries.back().index);
  }
  if (role_ == Role::kLeader) {
    // What step 1 made durable now counts towards the leader's quorum.
    Progress* self = tracker_.Find(id_);
    if (self != nullptr && self->MaybeUpdate(StableLastIndex()) && MaybeCommit()) {
      BroadcastAppend();
    }
    MaybeAutoLeaveJoint();
  }
}

NodeStatus Node::GetStatus() const {
  NodeStatus s;
  s.id = id_;
  s.term = term_;
  s.vote = vote_;
  s.leader = lead_;
  s.role = role_;
  s.commit = log_.committed();
  s.applied = log_.applied();
  s.last_index = log_.LastIndex();
  s.conf_state = tracker_.config().ToConfState();
  s.lead_transferee = lead_transferee_;
  if (role_ == Role::kLeader) {
    for (const auto& [id, pr] : tracker_.progress())
      s.progress[id] = pr.ToString();
  }
  return s;
}

}  // namespace conclave::raft
