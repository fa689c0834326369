// Replica: the driver thread's side. The core, proposals and read rounds,
// each Ready from the core to durable to applied, log compaction,
// quiescence.
#include <fmt/format.h>

#include <algorithm>
#include <utility>

#include "base/assert.h"
#include "base/coding.h"
#include "base/logging.h"
#include "server/host.h"
#include "server/replica.h"
#include "storage/storage.h"

namespace conclave::server {

namespace {

// At most this many queued commands (or bytes of them) go in one proposal.
constexpr size_t kProposalBatchMax = 512;
constexpr size_t kProposalBatchBytes = 1 << 20;

std::string ReadContext(uint64_t id) {
  std::string out;
  PutFixed64(&out, id);
  return out;
}

uint64_t DecodeReadContext(const std::string& s) {
  Decoder d(s);
  uint64_t id = 0;
  if (!d.ReadFixed64(&id)) return 0;
  return id;
}

}  // namespace

void Replica::Step(raft::Message m) {
  const bool quiesce = m.quiesce;
  const raft::NodeId from = m.from;
  // The followers' answers to the last heartbeat before quiescing carry
  // nothing a quiesced leader must act on; anything else wakes the group.
  if (!quiesce && m.type != raft::MessageType::kHeartbeatResponse) Wake();
  Status s = raft_->Step(std::move(m));
  if (!s.ok()) LOG_DEBUG("group {}: step: {}", options_.group, s.ToString());
  if (quiesce) OnQuiesceHeartbeat(from);
}

void Replica::TickNow() {
  raft_->Tick();
  if (campaign_in_ticks_ > 0 && --campaign_in_ticks_ == 0 && raft_->leader() == raft::kNoNode) {
    if (Status s = raft_->Campaign(); !s.ok()) {
      LOG_INFO("group {} replica {:x}: no early election: {}", options_.group, options_.replica_id,
               s.ToString());
    }
  }
}

void Replica::AddReads(std::vector<std::shared_ptr<Waiter>> reads) {
  Wake();
  if (reads.empty()) return;
  auto batch = std::make_shared<ReadBatch>();
  batch->waiters = std::move(reads);
  StartReadRound(std::move(batch));
}

void Replica::StartReadRound(std::shared_ptr<ReadBatch> batch) {
  const uint64_t ctx = next_read_context_++;
  batch->issued = host_->clock().Monotonic();
  // Without a leader the core refuses; the zero issue time makes IssueReads
  // retry the round on the next tick.
  if (!raft_->ReadIndex(ReadContext(ctx)).ok()) batch->issued = Duration(0);
  reads_in_flight_[ctx] = std::move(batch);
}

void Replica::ProposePending() {
  const Duration now = host_->clock().Monotonic();
  while (!unproposed_.empty()) {
    std::shared_ptr<Waiter>& w = unproposed_.front();
    if (w->done() || now >= w->deadline) {
      unproposed_.pop_front();
      continue;
    }
    if (w->conf_change) {
      Status s = raft_->ProposeConfChange(*w->conf_change);
      if (s.code() == StatusCode::kUnavailable) break;  // no leader yet: retry on the next tick
      if (!s.ok()) w->Complete(s);
      unproposed_.pop_front();
      continue;
    }
    // The commands queued since the last round go as one proposal: one
    // append message per follower instead of one per command.
    std::vector<std::string> data;
    size_t taken = 0;
    size_t bytes = 0;
    for (; taken < unproposed_.size() && taken < kProposalBatchMax && bytes < kProposalBatchBytes;
         ++taken) {
      const std::shared_ptr<Waiter>& next = unproposed_[taken];
      if (next->conf_change) break;
      if (next->done() || now >= next->deadline) continue;  // dropped below
      data.push_back(next->data);
      bytes += next->data.size();
    }
    Status s = data.empty() ? Status::Ok() : raft_->Propose(std::move(data));
    if (s.code() == StatusCode::kUnavailable) break;  // no leader yet: retry on the next tick
    for (size_t i = 0; i < taken; ++i) {
      if (!s.ok()) unproposed_.front()->Complete(s);
      unproposed_.pop_front();
    }
  }
}

void Replica::IssueReads() {
  // A round that got no answer within an election timeout is lost (the
  // leader changed, a message was dropped): issue it again.
  const Duration now = host_->clock().Monotonic();
  const Duration retry_after = host_->options().tick_interval * options_.election_ticks;
  std::vector<uint64_t> stale;
  for (auto& [ctx, batch] : reads_in_flight_) {
    std::erase_if(batch->waiters, [&](const auto& w) {
      if (now >= w->deadline) w->Complete(RequestTimedOut());
      return w->done();
    });
    if (batch->waiters.empty() || now - batch->issued >= retry_after) stale.push_back(ctx);
  }
  for (uint64_t ctx : stale) {
    auto batch = std::move(reads_in_flight_[ctx]);
    reads_in_flight_.erase(ctx);
    if (!batch->waiters.empty()) StartReadRound(std::move(batch));
  }
}

void Replica::ExpireWaiters() {
  const Duration now = host_->clock().Monotonic();
  std::vector<std::shared_ptr<Waiter>> expired;
  {
    std::lock_guard<std::mutex> lock(waiters_mu_);
    for (const auto& [id, w] : waiters_) {
      if (w->on_done && now >= w->deadline) expired.push_back(w);
    }
  }
  {
    // Reads whose index is known but not yet applied.
    std::lock_guard<std::mutex> lock(reads_mu_);
    for (PendingRead& p : pending_reads_) {
      for (const auto& w : p.waiters) {
        if (now >= w->deadline) expired.push_back(w);
      }
    }
  }
  for (auto& w : expired)
    w->Complete(RequestTimedOut());
}

void Replica::Housekeeping() {
  term_.store(raft_->term(), std::memory_order_release);
  ExpireWaiters();
  PublishProgress();
  ProposePending();
  IssueReads();
  if (raft_->role() == raft::Role::kLeader) {
    std::vector<std::string> proposals;
    sm_->Tick(&proposals);
    for (std::string& p : proposals) {
      Status s = raft_->Propose(EncodeProposal(ProposalId{}, p));
      if (!s.ok())
        LOG_DEBUG("group {}: internal proposal refused: {}", options_.group, s.ToString());
    }
  }
  MaybeCompactLog();
}

void Replica::ReportUnreachable(raft::NodeId peer) {
  raft_->ReportUnreachable(peer);
}

std::vector<raft::NodeId> Replica::PeersOn(uint64_t node) const {
  std::vector<raft::NodeId> out;
  for (raft::NodeId id : raft_->tracker().AllIds()) {
    if (id != options_.replica_id && NodeOf(id) == node) out.push_back(id);
  }
  return out;
}

std::set<uint64_t> Replica::PeerNodes() const {
  std::set<uint64_t> out;
  for (raft::NodeId id : raft_->tracker().AllIds()) {
    if (id != options_.replica_id) out.insert(NodeOf(id));
  }
  return out;
}

void Replica::ReportSnapshot(raft::NodeId peer, bool ok) {
  if (ok) snapshots_sent_.fetch_add(1);
  Wake();
  raft_->ReportSnapshot(peer, ok);
}

void Replica::CampaignIfAsked() {
  if (options_.campaign_at_start) campaign_in_ticks_ = 2 * options_.heartbeat_ticks;
}

void Replica::StartTransfer(raft::NodeId transferee) {
  Wake();
  raft_->TransferLeadership(transferee);
}

void Replica::OnSoftState(const raft::SoftState& ss) {
  const bool was_leader = soft_state_.role == raft::Role::kLeader;
  const bool is_leader = ss.role == raft::Role::kLeader;
  if (ss.leader != soft_state_.leader) {
    leader_changes_.fetch_add(1);
    LOG_INFO("group {} replica {:x}: leader is now {:x} at term {}", options_.group,
             options_.replica_id, ss.leader, raft_->term());
  }
  soft_state_ = ss;
  leader_.store(ss.leader, std::memory_order_release);
  term_.store(raft_->term(), std::memory_order_release);
  if (is_leader != was_leader) sm_->OnLeaderChange(is_leader);
  NotifyStateChange();
}

// ---- Ready ----

bool Replica::ReadyPending() const {
  return !retired_ && !ready_ && raft_->HasReady();
}

bool Replica::BeginReady(storage::WalBatch* wal) {
  CHECK(!ready_);
  ready_ = raft_->GetReady();
  raft::Ready& rd = *ready_;
  if (rd.soft_state) OnSoftState(*rd.soft_state);
  // A leader's messages (appends, heartbeats, snapshots) promise nothing
  // about its own log: it counts its own copy of the new entries only once
  // Advance reports them durable. So it sends them first, and the followers
  // write while it writes. Everyone else persists before answering.
  if (soft_state_.role == raft::Role::kLeader || host_->options().bugs.send_before_persist) {
    SendMessages(rd.messages);
  }
  const raft::GroupId group = options_.group;
  if (rd.snapshot) {
    const raft::SnapshotMetadata& md = rd.snapshot->metadata;
    wal->AddSnapshotMarker(group, md.index, md.term);
    wal->TruncateFrom(group, md.index + 1);
  }
  if (!rd.entries.empty()) wal->AddEntries(group, rd.entries);
  if (rd.hard_state) wal->SetHardState(group, *rd.hard_state);
  // Entries, a snapshot, a new term or vote must be durable before anything
  // this Ready holds is sent or applied. A commit index alone need not be
  // (the core's must_sync, as etcd's MustSync): it is written with whatever
  // this round writes, unsynced, and the Ready goes on at once, so applying
  // a committed entry waits for no second sync. A crash may lose it;
  // recovery takes the larger of it and the applied index, and the leader
  // tells the rest again.
  return rd.must_sync;
}

void Replica::FinishReady() {
  CHECK(ready_);
  raft::Ready& rd = *ready_;
  if (rd.snapshot) {
    Status s = log_.ApplySnapshot(*rd.snapshot);
    CHECK_MSG(s.ok(), "group {}: snapshot into the log view: {}", options_.group, s.ToString());
  }
  if (!rd.entries.empty()) {
    log_.Append(rd.entries);
    for (const raft::Entry& e : rd.entries)
      log_bytes_ += e.data.size();
  }
  if (rd.hard_state) log_.SetHardState(*rd.hard_state);
  SendMessages(rd.messages);  // a leader's went out already

  ApplyItem item;
  if (rd.snapshot) {
    item.snapshot = *rd.snapshot;
    conf_state_ = rd.snapshot->metadata.conf_state;
    PublishConfState();
  }
  for (const raft::Entry& e : rd.committed_entries) {
    if (e.type != raft::EntryType::kConfChange) continue;
    auto cc = raft::ConfChange::Decode(e.data);
    CHECK_MSG(cc.ok(), "group {}: committed conf change {} does not decode", options_.group,
              e.index);
    auto cs = raft_->ApplyConfChange(*cc);
    if (cs.ok()) {
      conf_state_ = *cs;
      PublishConfState();
      item.conf_states[e.index] = *cs;
    } else {
      LOG_WARN("group {}: conf change at {} not applied: {}", options_.group, e.index,
               cs.status().ToString());
      item.conf_states[e.index] = conf_state_;
      item.refused_conf_changes.insert(e.index);
    }
  }
  item.entries = rd.committed_entries;  // Advance reads them too
  if (rd.hard_state) commit_index_.store(rd.hard_state->commit, std::memory_order_release);

  std::vector<PendingRead> reads;
  for (const raft::ReadState& rs : rd.read_states) {
    auto it = reads_in_flight_.find(DecodeReadContext(rs.request_context));
    if (it == reads_in_flight_.end()) continue;
    reads.push_back(PendingRead{rs.index, std::move(it->second->waiters)});
    reads_in_flight_.erase(it);
  }
  if (!reads.empty()) QueuePendingReads(std::move(reads));
  if (item.snapshot || !item.entries.empty()) {
    host_->QueueApply(shared_from_this(), std::move(item));
  }
  raft_->Advance(rd);
  ready_.reset();
}

void Replica::SendMessages(std::vector<raft::Message>& out) {
  if (out.empty()) return;
  host_->SendTo(*this, std::move(out));
  out.clear();
}

void Replica::MaybeCompactLog(bool force) {
  const uint64_t applied = applied_index_.load(std::memory_order_acquire);
  const bool due = applied >= last_compact_index_ + options_.snapshot_count ||
                   log_bytes_ >= options_.log_bytes_max;
  if (!due && !(force && applied > last_compact_index_)) return;
  // The state machine must hold everything up to the point the log forgets.
  Status synced = host_->options().bugs.compact_without_sync ? Status::Ok() : sm_->Sync();
  if (!synced.ok()) {
    LOG_WARN("group {}: log compaction postponed: {}", options_.group, synced.ToString());
    return;
  }
  // What the sync covered: everything applied before it.
  const uint64_t index = std::min(applied, log_.LastIndex());
  if (index <= log_.LatestSnapshot().metadata.index) return;
  auto term = log_.Term(index);
  if (!term.ok()) return;
  Status s = log_.CreateSnapshot(index, conf_state_, "");
  if (s.ok() && index > options_.snapshot_catchup_entries) {
    const uint64_t compact_to = index - options_.snapshot_catchup_entries;
    if (compact_to > log_.FirstIndex()) s = log_.Compact(compact_to);
  }
  if (s.ok()) s = host_->wal()->ReleaseTo(options_.group, index, *term);
  if (!s.ok()) {
    LOG_WARN("group {}: log compaction at {} failed: {}", options_.group, index, s.ToString());
    return;
  }
  last_compact_index_ = index;
  log_bytes_ = 0;
  LOG_INFO("group {}: log compacted at index {} (first kept {})", options_.group, index,
           log_.FirstIndex());
}

void Replica::PublishConfState() {
  const auto& l = conf_state_.learners;
  is_learner_.store(std::find(l.begin(), l.end(), options_.replica_id) != l.end(),
                    std::memory_order_release);
}

void Replica::PublishProgress() {
  std::map<raft::NodeId, PeerProgress> progress;
  uint64_t last = 0;
  if (raft_->role() == raft::Role::kLeader) {
    // The core's recent_active flag is cleared at every quorum check; a peer
    // counts as active if it answered within two election timeouts.
    const Duration now = host_->clock().Monotonic();
    const Duration window = 2 * host_->options().tick_interval * options_.election_ticks;
    for (const auto& [id, pr] : raft_->tracker().progress()) {
      if (id == options_.replica_id) continue;
      if (pr.recent_active && pr.match > 0) last_active_[id] = now;
      auto seen = last_active_.find(id);
      const bool active = seen != last_active_.end() && now - seen->second < window;
      progress[id] = PeerProgress{pr.match, active, pr.is_learner};
    }
    last = raft_->log().LastIndex();
  } else {
    last_active_.clear();
  }
  {
    std::lock_guard<std::mutex> lock(progress_mu_);
    progress_ = std::move(progress);
    leader_last_index_ = last;
  }
  if (progress_waiters_.load(std::memory_order_acquire) > 0) NotifyStateChange();
}

// ---- quiescence ----

void Replica::Wake() {
  if (!quiesced_) return;
  quiesced_ = false;
  quiesced_flag_.store(false, std::memory_order_release);
  host_->Activate(*this);
}

bool Replica::Idle() {
  if (ready_ || raft_->HasReady()) return false;
  if (applied_index() < raft_->log().committed()) return false;
  return NothingPending();
}

bool Replica::NothingPending() {
  if (!unproposed_.empty() || !reads_in_flight_.empty()) return false;
  {
    std::lock_guard<std::mutex> lock(waiters_mu_);
    if (!waiters_.empty()) return false;
  }
  std::lock_guard<std::mutex> lock(reads_mu_);
  return pending_reads_.empty();
}

void Replica::MaybeQuiesce() {
  if (!options_.quiesce || quiesced_ || raft_->role() != raft::Role::kLeader) return;
  if (!sm_->Quiescable() || !raft_->CanQuiesce() || !Idle()) return;
  raft_->Quiesce();
  quiesced_ = true;
  quiesced_flag_.store(true, std::memory_order_release);
  // Progress as of now (every peer holds the whole log): ticks stop, and
  // with them the publishing.
  PublishProgress();
  host_->Deactivate(*this);
}

void Replica::OnQuiesceHeartbeat(raft::NodeId from) {
  // A follower stops ticking with its leader only when it holds the whole
  // log the leader committed, so that nothing is left for it to learn, and
  // waits for nothing of its own. (What it has yet to apply is applied all
  // the same: its Readies are taken whether it ticks or not.)
  if (!options_.quiesce || quiesced_ || raft_->role() != raft::Role::kFollower) return;
  if (raft_->leader() != from) return;
  if (raft_->log().committed() != raft_->log().LastIndex() || !NothingPending()) return;
  quiesced_ = true;
  quiesced_flag_.store(true, std::memory_order_release);
  host_->Deactivate(*this);
}

void Replica::Retire() {
  retired_ = true;
  // What waits here may still be applied by the group's other replicas.
  FailAll(Status::Unavailable(fmt::format(
      "group {}: its replica left this node; the request may or may not have been applied",
      options_.group)));
  const uint64_t last = raft_->log().LastIndex();
  Status s = last == 0 ? Status::Ok()
                       : host_->wal()->ReleaseTo(options_.group, last, raft_->log().LastTerm());
  if (!s.ok()) {
    LOG_WARN("group {}: releasing the log of a removed replica: {}", options_.group, s.ToString());
  }
  LOG_INFO("group {}: replica {} removed from this node", options_.group, options_.replica_id);
}

void Replica::FailAll(const Status& status) {
  stopping_.store(true, std::memory_order_release);
  NotifyStateChange();
  std::map<ProposalId, std::shared_ptr<Waiter>> waiters;
  {
    std::lock_guard<std::mutex> lock(waiters_mu_);
    waiters.swap(waiters_);
  }
  for (auto& [id, w] : waiters)
    w->Complete(status);
  std::vector<std::shared_ptr<Waiter>> reads;
  for (auto& [ctx, batch] : reads_in_flight_)
    reads.insert(reads.end(), batch->waiters.begin(), batch->waiters.end());
  reads_in_flight_.clear();
  {
    std::lock_guard<std::mutex> lock(reads_mu_);
    for (PendingRead& p : pending_reads_)
      reads.insert(reads.end(), p.waiters.begin(), p.waiters.end());
    pending_reads_.clear();
  }
  for (auto& w : reads)
    w->Complete(status);
}

}  // namespace conclave::server
