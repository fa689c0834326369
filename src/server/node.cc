// Node: opening, recovery and the driver thread. The apply thread is in
// node_apply.cc.
#include "server/node.h"

#include <fmt/format.h>

#include <algorithm>
#include <utility>

#include "base/assert.h"
#include "base/coding.h"
#include "base/logging.h"
#include "base/thread.h"
#include "mvcc/snapshot.h"
#include "server/raft_codec.h"

namespace conclave::server {

namespace {

Status Stopped() {
  return Status::Unavailable("etcdserver: server stopped");
}

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

Status RequestTimedOut() {
  return Status::DeadlineExceeded("etcdserver: request timed out");
}

bool Node::Waiter::Complete(Result<ApplyResult> r) {
  std::function<void(Result<ApplyResult>)> callback;
  {
    std::lock_guard<std::mutex> lock(mu);
    if (result) return false;
    if (on_done) {
      // Nobody waits on an asynchronous waiter: the result goes to the
      // callback, and an empty one only marks it done.
      callback.swap(on_done);
      result.emplace(ApplyResult{});
    } else {
      result.emplace(std::move(r));
    }
  }
  if (callback) {
    callback(std::move(r));
  } else {
    cv.notify_all();
  }
  return true;
}

bool Node::Waiter::done() {
  std::lock_guard<std::mutex> lock(mu);
  return result.has_value();
}

Result<ApplyResult> Node::Waiter::Wait() {
  std::unique_lock<std::mutex> lock(mu);
  if (!cv.wait_until(lock, deadline, [&] { return result.has_value(); })) {
    result.emplace(RequestTimedOut());
  }
  return *result;
}

Node::Node(const NodeOptions& options, Clock& clock) : options_(options), clock_(clock) {}

Node::~Node() {
  Stop();
}

std::string Node::snapshot_dir() const {
  return storage::JoinPath(options_.data_dir, "snap");
}

Result<std::unique_ptr<Node>> Node::Open(const NodeOptions& options, Clock& clock) {
  if (options.member_id == 0) return Status::InvalidArgument("node: member id 0");
  std::unique_ptr<Node> node(new Node(options, clock));
  RETURN_IF_ERROR(node->Recover());
  return node;
}

Status Node::Recover() {
  fs_ = storage::NewPosixFileSystem();
  RETURN_IF_ERROR(fs_->CreateDirs(options_.data_dir));
  ASSIGN_OR_RETURN(wal_,
                   storage::Wal::Open(fs_.get(), storage::JoinPath(options_.data_dir, "wal")));
  storage::WalReplay replay = wal_->Replay();
  ASSIGN_OR_RETURN(engine_, storage::OpenRocksEngine(storage::JoinPath(options_.data_dir, "db"),
                                                     mvcc::StoreRocksEngineOptions()));
  ASSIGN_OR_RETURN(
      store_, mvcc::Store::Open(engine_.get(), mvcc::StoreOptions{.group = kGroup, .sync = false}));
  RETURN_IF_ERROR(fs_->CreateDirs(snapshot_dir()));
  RETURN_IF_ERROR(mvcc::RemoveStaleParts(fs_.get(), snapshot_dir()));

  lease::LessorOptions lessor_options;
  lessor_options.min_ttl_seconds = options_.lease_min_ttl_seconds;
  lessor_ = std::make_unique<lease::Lessor>(clock_, lessor_options);

  auto group = replay.groups.find(kGroup);
  const bool fresh = group == replay.groups.end() && store_->AppliedIndex() == 0;
  if (fresh && !options_.initial_members.empty()) {
    RETURN_IF_ERROR(Bootstrap());
    replay = storage::WalReplay{};
    replay.groups[kGroup].snapshot_index = 1;
    replay.groups[kGroup].snapshot_term = 1;
    replay.groups[kGroup].hard_state = raft::HardState{1, raft::kNoNode, 1};
    group = replay.groups.find(kGroup);
  }
  if (group != replay.groups.end()) {
    const storage::WalGroupState& gs = group->second;
    if (gs.snapshot_index > store_->AppliedIndex()) {
      // A crash after the snapshot marker was logged but before the image
      // was installed: the image is on disk; install it now.
      const std::string path = mvcc::SnapshotPath(
          snapshot_dir(), mvcc::SnapshotId{kGroup, gs.snapshot_index, gs.snapshot_term});
      LOG_INFO("node: installing snapshot {} left by an interrupted install", path);
      RETURN_IF_ERROR(mvcc::InstallSnapshot(store_.get(), fs_.get(), path));
    }
    const uint64_t applied = store_->AppliedIndex();
    ASSIGN_OR_RETURN(std::optional<std::string> cs_bytes, store_->GetMeta(kConfStateMeta));
    raftpb::ConfState cs_pb;
    if (!cs_bytes || !cs_pb.ParseFromString(*cs_bytes)) {
      return Status::Corruption("node: the store has no raft configuration at index " +
                                std::to_string(applied));
    }
    conf_state_ = DecodeConfState(cs_pb);
    PublishConfState();
    RETURN_IF_ERROR(log_.ApplySnapshot(
        raft::Snapshot{raft::SnapshotMetadata{applied, store_->AppliedTerm(), conf_state_}, ""}));
    std::vector<raft::Entry> tail;
    for (const raft::Entry& e : gs.entries) {
      if (e.index > applied) tail.push_back(e);
    }
    if (!tail.empty() && tail.front().index != applied + 1) {
      return Status::Corruption(
          fmt::format("node: the log resumes at index {} but the store has applied only up to {}",
                      tail.front().index, applied));
    }
    if (!tail.empty()) log_.Append(tail);
    raft::HardState hs = gs.hard_state;
    hs.commit = std::max(hs.commit, applied);
    log_.SetHardState(hs);
    last_compact_index_ = applied;
  }
  applied_index_.store(store_->AppliedIndex());
  RETURN_IF_ERROR(ReloadLessor());
  RETURN_IF_ERROR(ReloadAlarms());
  RETURN_IF_ERROR(ReloadRemoved());
  hub_ = std::make_unique<mvcc::WatchHub>(store_.get(), mvcc::WatchHubOptions{});

  raft::Config config;
  config.id = options_.member_id;
  config.group = kGroup;
  config.election_ticks = options_.election_ticks;
  config.heartbeat_ticks = options_.heartbeat_ticks;
  config.applied = store_->AppliedIndex();
  config.pre_vote = true;
  config.check_quorum = true;
  config.random_seed =
      options_.member_id ^ static_cast<uint64_t>(SteadyClock::now().time_since_epoch().count());
  ASSIGN_OR_RETURN(raft_, raft::Node::Create(config, &log_));
  term_.store(raft_->term());
  commit_index_.store(log_.InitialHardState().commit);
  LOG_INFO("node {:x}: recovered at applied index {}, revision {}, last log index {}, term {}",
           options_.member_id, store_->AppliedIndex(), store_->CurrentRevision(), log_.LastIndex(),
           raft_->term());
  return Status::Ok();
}

Status Node::Bootstrap() {
  raft::ConfState cs;
  for (const serverpb::MemberRecord& m : options_.initial_members)
    cs.voters.push_back(m.id());
  std::sort(cs.voters.begin(), cs.voters.end());
  raftpb::ConfState cs_pb;
  EncodeConfState(cs, &cs_pb);
  // The store first: if we crash before the WAL has the marker, the next
  // start sees an empty WAL and a store at index 1, and finishes the job.
  if (store_->AppliedIndex() == 0) {
    auto batch = store_->NewBatch();
    batch->PutMeta(kConfStateMeta, cs_pb.SerializeAsString());
    for (const serverpb::MemberRecord& m : options_.initial_members)
      batch->PutMeta(MemberMetaName(m.id()), m.SerializeAsString());
    batch->SetApplied(1, 1);
    RETURN_IF_ERROR(store_->Commit(std::move(batch)));
    RETURN_IF_ERROR(store_->Sync());
  }
  storage::WalBatch wb;
  wb.AddSnapshotMarker(kGroup, 1, 1);
  wb.SetHardState(kGroup, raft::HardState{1, raft::kNoNode, 1});
  RETURN_IF_ERROR(wal_->Append(wb));
  LOG_INFO("node {:x}: bootstrapped a new cluster with voters {}", options_.member_id,
           cs.ToString());
  return Status::Ok();
}

void Node::Start(MessageSender* sender) {
  CHECK(!started_);
  started_ = true;
  sender_ = sender;
  applier_ = std::thread([this] {
    SetThreadName("raft-apply");
    ApplyLoop();
  });
  driver_ = std::thread([this] {
    SetThreadName("raft-driver");
    DriverLoop();
  });
}

void Node::Stop() {
  {
    std::lock_guard<std::mutex> lock(inbox_mu_);
    if (stopping_) return;
    stopping_ = true;
    stopping_flag_.store(true, std::memory_order_release);
  }
  inbox_cv_.notify_all();
  if (driver_.joinable()) driver_.join();
  {
    std::lock_guard<std::mutex> lock(apply_mu_);
    apply_stopping_ = true;
  }
  apply_cv_.notify_all();
  if (applier_.joinable()) applier_.join();
  FailAll(Stopped());
}

void Node::FailAll(const Status& status) {
  std::map<uint64_t, std::shared_ptr<Waiter>> waiters;
  {
    std::lock_guard<std::mutex> lock(waiters_mu_);
    waiters.swap(waiters_);
  }
  for (auto& [id, w] : waiters)
    w->Complete(status);
  std::vector<std::shared_ptr<Waiter>> reads;
  {
    std::lock_guard<std::mutex> lock(inbox_mu_);
    reads.swap(inbox_reads_);
  }
  for (auto& [ctx, batch] : reads_in_flight_)
    reads.insert(reads.end(), batch->waiters.begin(), batch->waiters.end());
  reads_in_flight_.clear();
  {
    std::lock_guard<std::mutex> lock(apply_mu_);
    for (PendingRead& p : pending_reads_)
      reads.insert(reads.end(), p.waiters.begin(), p.waiters.end());
    pending_reads_.clear();
  }
  for (auto& w : reads)
    w->Complete(status);
}

// ---- requests from gRPC threads ----

std::shared_ptr<Node::Waiter> Node::NewProposal(serverpb::Command& command) {
  auto w = std::make_shared<Waiter>();
  w->request_id = next_request_id_.fetch_add(1);
  command.set_proposer(options_.member_id);
  command.set_request_id(w->request_id);
  w->data = command.SerializeAsString();
  return w;
}

Result<ApplyResult> Node::Propose(serverpb::Command command) {
  return Submit(NewProposal(command));
}

void Node::ProposeAsync(serverpb::Command command, std::function<void(Result<ApplyResult>)> done) {
  std::shared_ptr<Waiter> w = NewProposal(command);
  w->on_done = [this, id = w->request_id, done = std::move(done)](Result<ApplyResult> r) {
    {
      std::lock_guard<std::mutex> lock(waiters_mu_);
      waiters_.erase(id);
    }
    if (!r.ok()) proposals_failed_.fetch_add(1);
    done(std::move(r));
  };
  Enqueue(w);
}

bool Node::Enqueue(const std::shared_ptr<Waiter>& w) {
  w->deadline = SteadyClock::now() + options_.request_timeout;
  {
    std::lock_guard<std::mutex> lock(waiters_mu_);
    waiters_[w->request_id] = w;
  }
  Status refused;
  {
    std::lock_guard<std::mutex> lock(inbox_mu_);
    if (stopping_) {
      refused = Stopped();
    } else if (inbox_proposals_.size() >= options_.proposals_pending_max) {
      refused = Status::ResourceExhausted("etcdserver: too many requests");
    } else {
      inbox_proposals_.push_back(w);
    }
  }
  if (!refused.ok()) {
    {
      std::lock_guard<std::mutex> lock(waiters_mu_);
      waiters_.erase(w->request_id);
    }
    w->Complete(refused);
    return false;
  }
  inbox_cv_.notify_one();
  return true;
}

Result<ApplyResult> Node::Submit(const std::shared_ptr<Waiter>& w) {
  if (!Enqueue(w)) {
    proposals_failed_.fetch_add(1);
    return w->Wait();
  }
  Result<ApplyResult> r = w->Wait();
  {
    std::lock_guard<std::mutex> lock(waiters_mu_);
    waiters_.erase(w->request_id);
  }
  if (!r.ok()) proposals_failed_.fetch_add(1);
  return r;
}

void Node::ExpireWaiters() {
  const auto now = SteadyClock::now();
  std::vector<std::shared_ptr<Waiter>> expired;
  {
    std::lock_guard<std::mutex> lock(waiters_mu_);
    for (const auto& [id, w] : waiters_) {
      if (w->on_done && now >= w->deadline) expired.push_back(w);
    }
  }
  {
    // Reads whose index is known but not yet applied.
    std::lock_guard<std::mutex> lock(apply_mu_);
    for (PendingRead& p : pending_reads_) {
      for (const auto& w : p.waiters) {
        if (now >= w->deadline) expired.push_back(w);
      }
    }
  }
  for (auto& w : expired)
    w->Complete(RequestTimedOut());
}

Status Node::ReadBarrier() {
  if (options_.test_bug_local_reads) return Status::Ok();
  auto w = std::make_shared<Waiter>();
  if (!EnqueueRead(w)) return Stopped();
  return w->Wait().status();
}

void Node::ReadBarrierAsync(std::function<void(Status)> done) {
  if (options_.test_bug_local_reads) return done(Status::Ok());
  auto w = std::make_shared<Waiter>();
  w->on_done = [done = std::move(done)](Result<ApplyResult> r) { done(r.status()); };
  if (!EnqueueRead(w)) w->Complete(Stopped());
}

bool Node::EnqueueRead(const std::shared_ptr<Waiter>& w) {
  w->deadline = SteadyClock::now() + options_.request_timeout;
  {
    std::lock_guard<std::mutex> lock(inbox_mu_);
    if (stopping_) return false;
    inbox_reads_.push_back(w);
  }
  inbox_cv_.notify_one();
  return true;
}

Result<int64_t> Node::RenewLease(lease::LeaseId id) {
  return lessor_->Renew(id);
}

Result<lease::TimeToLiveResult> Node::LeaseTimeToLive(lease::LeaseId id, bool with_keys) {
  if (!lessor_->primary()) return lease::errors::NotLeader();
  return lessor_->TimeToLive(id, with_keys);
}

void Node::Receive(std::vector<raft::Message> messages) {
  if (messages.empty()) return;
  {
    std::lock_guard<std::mutex> lock(inbox_mu_);
    if (stopping_) return;
    if (inbox_messages_.empty()) {
      inbox_messages_.swap(messages);
    } else {
      std::move(messages.begin(), messages.end(), std::back_inserter(inbox_messages_));
    }
  }
  inbox_cv_.notify_one();
}

void Node::ReportUnreachable(uint64_t peer) {
  {
    std::lock_guard<std::mutex> lock(inbox_mu_);
    inbox_unreachable_.push_back(peer);
  }
  inbox_cv_.notify_one();
}

void Node::ReportSnapshot(uint64_t peer, bool ok) {
  if (ok) snapshots_sent_.fetch_add(1);
  {
    std::lock_guard<std::mutex> lock(inbox_mu_);
    inbox_snapshot_reports_.emplace_back(peer, ok);
  }
  inbox_cv_.notify_one();
}

NodeStats Node::stats() const {
  NodeStats s;
  s.term = term();
  s.leader = leader();
  s.commit_index = commit_index_.load();
  s.applied_index = applied_index_.load();
  s.proposals_committed = proposals_committed_.load();
  s.proposals_failed = proposals_failed_.load();
  s.leader_changes = leader_changes_.load();
  s.snapshots_sent = snapshots_sent_.load();
  s.snapshots_installed = snapshots_installed_.load();
  s.wal_syncs = wal_->stats().syncs;
  return s;
}

// ---- the driver thread ----

void Node::DriverLoop() {
  const auto tick = options_.tick_interval;
  auto next_tick = SteadyClock::now() + tick;
  while (true) {
    {
      std::unique_lock<std::mutex> lock(inbox_mu_);
      inbox_cv_.wait_until(lock, next_tick, [&] {
        return stopping_ || !inbox_messages_.empty() || !inbox_proposals_.empty() ||
               !inbox_reads_.empty() || !inbox_snapshot_reports_.empty() ||
               !inbox_unreachable_.empty();
      });
      if (stopping_) break;
    }
    DrainInbox();
    const auto now = SteadyClock::now();
    if (now >= next_tick) {
      raft_->Tick();
      next_tick += tick;
      if (next_tick <= now) next_tick = now + tick;
      TickHousekeeping();
    }
    while (raft_->HasReady())
      HandleReady();
    MaybeCompactLog();
  }
}

void Node::DrainInbox() {
  std::vector<raft::Message> messages;
  std::deque<std::shared_ptr<Waiter>> proposals;
  std::vector<std::shared_ptr<Waiter>> reads;
  std::vector<std::pair<uint64_t, bool>> reports;
  std::vector<uint64_t> unreachable;
  std::vector<uint64_t> transfers;
  {
    std::lock_guard<std::mutex> lock(inbox_mu_);
    transfers.swap(inbox_transfers_);
    messages.swap(inbox_messages_);
    proposals.swap(inbox_proposals_);
    reads.swap(inbox_reads_);
    reports.swap(inbox_snapshot_reports_);
    unreachable.swap(inbox_unreachable_);
  }
  for (raft::Message& m : messages) {
    Status s = raft_->Step(std::move(m));
    if (!s.ok()) LOG_DEBUG("node: step: {}", s.ToString());
  }
  for (auto& [peer, ok] : reports)
    raft_->ReportSnapshot(peer, ok);
  for (uint64_t peer : unreachable)
    raft_->ReportUnreachable(peer);
  for (uint64_t transferee : transfers)
    raft_->TransferLeadership(transferee);
  for (auto& w : proposals)
    unproposed_.push_back(std::move(w));
  ProposePending();
  if (!reads.empty()) {
    auto batch = std::make_shared<ReadBatch>();
    batch->waiters = std::move(reads);
    StartReadRound(std::move(batch));
  }
}

void Node::StartReadRound(std::shared_ptr<ReadBatch> batch) {
  const uint64_t ctx = next_read_context_++;
  batch->issued = SteadyClock::now();
  // Without a leader the core refuses; the zero issue time makes IssueReads
  // retry the round on the next tick.
  if (!raft_->ReadIndex(ReadContext(ctx)).ok()) batch->issued = SteadyClock::time_point{};
  reads_in_flight_[ctx] = std::move(batch);
}

void Node::ProposePending() {
  const auto now = SteadyClock::now();
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

void Node::IssueReads() {
  // A round that got no answer within an election timeout is lost (the
  // leader changed, a message was dropped): issue it again.
  const auto now = SteadyClock::now();
  const auto retry_after = options_.tick_interval * options_.election_ticks;
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

void Node::TickHousekeeping() {
  term_.store(raft_->term(), std::memory_order_release);
  ExpireWaiters();
  PublishProgress();
  ProposePending();
  IssueReads();
  if (raft_->role() != raft::Role::kLeader || !lessor_->primary()) return;
  for (lease::LeaseId id : lessor_->ExpiredLeases(64)) {
    serverpb::Command c;
    c.mutable_lease_revoke()->set_id(id);
    ProposeInternal(c);
  }
  const Duration now = clock_.Monotonic();
  if (now >= next_checkpoint_) {
    next_checkpoint_ = now + options_.lease_checkpoint_interval;
    std::vector<lease::Checkpoint> cps =
        lessor_->Checkpoints(options_.lease_checkpoint_leases_max, /*all=*/true);
    if (!cps.empty()) {
      serverpb::Command c;
      for (const lease::Checkpoint& cp : cps) {
        etcdserverpb::LeaseCheckpoint* pc = c.mutable_lease_checkpoints()->add_checkpoints();
        pc->set_id(cp.id);
        pc->set_remaining_ttl(cp.remaining_ttl_seconds);
      }
      ProposeInternal(c);
    }
  }
}

void Node::ProposeInternal(const serverpb::Command& command) {
  Status s = raft_->Propose(command.SerializeAsString());
  if (!s.ok()) LOG_DEBUG("node: internal proposal refused: {}", s.ToString());
}

void Node::OnSoftState(const raft::SoftState& ss) {
  const bool was_leader = soft_state_.role == raft::Role::kLeader;
  const bool is_leader = ss.role == raft::Role::kLeader;
  if (ss.leader != soft_state_.leader) {
    leader_changes_.fetch_add(1);
    LOG_INFO("node {:x}: leader is now {:x} at term {}", options_.member_id, ss.leader,
             raft_->term());
  }
  soft_state_ = ss;
  leader_.store(ss.leader, std::memory_order_release);
  term_.store(raft_->term(), std::memory_order_release);
  if (is_leader && !was_leader) {
    lessor_->Promote();
    next_checkpoint_ = clock_.Monotonic() + options_.lease_checkpoint_interval;
  } else if (was_leader && !is_leader) {
    lessor_->Demote();
  }
}

void Node::HandleReady() {
  raft::Ready rd = raft_->GetReady();
  if (rd.soft_state) OnSoftState(*rd.soft_state);
  // A leader's messages (appends, heartbeats, snapshots) promise nothing
  // about its own log: it counts its own copy of the new entries only once
  // Advance reports them durable. So it sends them first, and the followers
  // write while it writes. Everyone else persists before answering.
  const bool leader = soft_state_.role == raft::Role::kLeader;
  if (leader) SendMessages(rd.messages);
  Status persisted = Persist(rd);
  // The log is the node's memory: without it nothing may be acknowledged.
  CHECK_MSG(persisted.ok(), "node: persisting the raft log failed: {}", persisted.ToString());
  if (!leader) SendMessages(rd.messages);

  ApplyItem item;
  if (rd.snapshot) {
    item.snapshot = *rd.snapshot;
    conf_state_ = rd.snapshot->metadata.conf_state;
    PublishConfState();
  }
  for (const raft::Entry& e : rd.committed_entries) {
    if (e.type != raft::EntryType::kConfChange) continue;
    auto cc = raft::ConfChange::Decode(e.data);
    CHECK_MSG(cc.ok(), "node: committed conf change {} does not decode", e.index);
    auto cs = raft_->ApplyConfChange(*cc);
    if (cs.ok()) {
      conf_state_ = *cs;
      PublishConfState();
      item.conf_states[e.index] = *cs;
    } else {
      LOG_WARN("node: conf change at {} not applied: {}", e.index, cs.status().ToString());
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
  if (item.snapshot || !item.entries.empty() || !reads.empty()) {
    {
      std::lock_guard<std::mutex> lock(apply_mu_);
      if (item.snapshot || !item.entries.empty()) apply_queue_.push_back(std::move(item));
      for (PendingRead& r : reads) {
        auto pos =
            std::upper_bound(pending_reads_.begin(), pending_reads_.end(), r.index,
                             [](uint64_t index, const PendingRead& p) { return index < p.index; });
        pending_reads_.insert(pos, std::move(r));
      }
    }
    apply_cv_.notify_one();
    // Reads whose index is already applied go now; the apply thread
    // releases the rest as it catches up.
    if (!reads.empty()) ReleaseReads(applied_index_.load(std::memory_order_acquire));
  }
  raft_->Advance(rd);
}

void Node::SendMessages(std::vector<raft::Message>& out) {
  std::vector<raft::Message> messages;
  messages.reserve(out.size());
  for (raft::Message& m : out) {
    if (m.type == raft::MessageType::kSnapshot) {
      sender_->SendSnapshot(std::move(m));
    } else {
      messages.push_back(std::move(m));
    }
  }
  out.clear();
  if (!messages.empty()) sender_->Send(std::move(messages));
}

Status Node::Persist(const raft::Ready& rd) {
  storage::WalBatch batch;
  if (rd.snapshot) {
    const raft::SnapshotMetadata& md = rd.snapshot->metadata;
    batch.AddSnapshotMarker(kGroup, md.index, md.term);
    batch.TruncateFrom(kGroup, md.index + 1);
  }
  if (!rd.entries.empty()) batch.AddEntries(kGroup, rd.entries);
  if (rd.hard_state) batch.SetHardState(kGroup, *rd.hard_state);
  if (!batch.empty()) RETURN_IF_ERROR(wal_->Append(batch));
  if (rd.snapshot) RETURN_IF_ERROR(log_.ApplySnapshot(*rd.snapshot));
  if (!rd.entries.empty()) log_.Append(rd.entries);
  if (rd.hard_state) log_.SetHardState(*rd.hard_state);
  return Status::Ok();
}

void Node::MaybeCompactLog() {
  const uint64_t applied = applied_index_.load(std::memory_order_acquire);
  if (applied < last_compact_index_ + options_.snapshot_count) return;
  // The store must hold everything up to the point the log forgets.
  Status synced = store_->Sync();
  auto meta = store_->MetaAt(nullptr);
  if (!synced.ok() || !meta.ok()) {
    LOG_WARN("node: log compaction postponed: {}",
             synced.ok() ? meta.status().ToString() : synced.ToString());
    return;
  }
  const uint64_t index = std::min(meta->applied_index, log_.LastIndex());
  if (index <= log_.LatestSnapshot().metadata.index) return;
  Status s = log_.CreateSnapshot(index, conf_state_, "");
  if (s.ok() && index > options_.snapshot_catchup_entries) {
    const uint64_t compact_to = index - options_.snapshot_catchup_entries;
    if (compact_to > log_.FirstIndex()) s = log_.Compact(compact_to);
  }
  if (s.ok()) s = wal_->ReleaseTo(kGroup, index, meta->applied_term);
  if (!s.ok()) {
    LOG_WARN("node: log compaction at {} failed: {}", index, s.ToString());
    return;
  }
  last_compact_index_ = index;
  LOG_INFO("node: log compacted at index {} (first kept {})", index, log_.FirstIndex());
}

}  // namespace conclave::server
