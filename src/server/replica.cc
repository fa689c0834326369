// Replica: requests from any thread, and recovery. The driver's side is in
// replica_driver.cc, the apply thread's in replica_apply.cc.
#include "server/replica.h"

#include <fmt/format.h>

#include <algorithm>
#include <utility>

#include "base/assert.h"
#include "base/logging.h"
#include "server/host.h"
#include "storage/storage.h"

namespace conclave::server {

Status RequestTimedOut() {
  return Status::DeadlineExceeded("etcdserver: request timed out")
      .WithReason(ErrorReason::kRequestTimedOut);
}

Status Stopped() {
  return Status::Unavailable("etcdserver: server stopped").WithReason(ErrorReason::kStopped);
}

bool Replica::Waiter::Complete(Result<std::any> r) {
  Callback callback;
  {
    std::lock_guard<std::mutex> lock(mu);
    if (result) return false;
    if (on_done) {
      // Nobody waits on an asynchronous waiter: the result goes to the
      // callback, and an empty one only marks it done.
      callback.swap(on_done);
      result.emplace(std::any());
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

bool Replica::Waiter::done() {
  std::lock_guard<std::mutex> lock(mu);
  return result.has_value();
}

Replica::Replica(Host* host, const ReplicaOptions& options, std::unique_ptr<StateMachine> sm)
    : host_(host), options_(options), sm_(std::move(sm)) {}

Replica::~Replica() = default;

raft::ConfState Replica::applied_conf_state() const {
  std::lock_guard<std::mutex> lock(progress_mu_);
  return applied_conf_state_;
}

ReplicaStats Replica::stats() const {
  ReplicaStats s;
  s.term = term();
  s.leader = leader();
  s.commit_index = commit_index_.load();
  s.applied_index = applied_index();
  s.proposals_committed = proposals_committed_.load();
  s.proposals_failed = proposals_failed_.load();
  s.leader_changes = leader_changes_.load();
  s.snapshots_sent = snapshots_sent_.load();
  s.snapshots_installed = snapshots_installed_.load();
  s.quiesced = quiesced_flag_.load();
  return s;
}

std::map<raft::NodeId, PeerProgress> Replica::PeersProgress() const {
  std::lock_guard<std::mutex> lock(progress_mu_);
  return progress_;
}

uint64_t Replica::LeaderLastIndex() const {
  std::lock_guard<std::mutex> lock(progress_mu_);
  return leader_last_index_;
}

uint64_t Replica::NodeOf(raft::NodeId replica) const {
  return options_.node_of ? options_.node_of(replica) : replica;
}

// ---- proposals ----

std::shared_ptr<Replica::Waiter> Replica::NewProposal(std::string command) {
  auto w = std::make_shared<Waiter>();
  w->id = ProposalId{options_.replica_id, host_->epoch(), next_request_id_.fetch_add(1)};
  w->data = EncodeProposal(w->id, command);
  return w;
}

Result<std::any> Replica::Propose(std::string command) {
  std::shared_ptr<Waiter> w = NewProposal(std::move(command));
  Enqueue(w);
  return Wait(w);
}

void Replica::SetCallback(const std::shared_ptr<Waiter>& w, Callback done) {
  w->on_done = [this, id = w->id, done = std::move(done)](Result<std::any> r) {
    Unregister(id);
    if (!r.ok()) proposals_failed_.fetch_add(1);
    done(std::move(r));
  };
}

void Replica::ProposeAsync(std::string command, Callback done) {
  std::shared_ptr<Waiter> w = NewProposal(std::move(command));
  SetCallback(w, std::move(done));
  Enqueue(w);
}

std::shared_ptr<Replica::Waiter> Replica::NewConfChange(raft::ConfChange cc, std::string context) {
  auto w = std::make_shared<Waiter>();
  w->id = ProposalId{options_.replica_id, host_->epoch(), next_request_id_.fetch_add(1)};
  cc.context = EncodeProposal(w->id, context);
  w->conf_change = std::move(cc);
  return w;
}

Result<std::any> Replica::ProposeConfChange(raft::ConfChange cc, std::string context) {
  std::shared_ptr<Waiter> w = NewConfChange(std::move(cc), std::move(context));
  Enqueue(w);
  return Wait(w);
}

void Replica::ProposeConfChangeAsync(raft::ConfChange cc, std::string context, Callback done) {
  std::shared_ptr<Waiter> w = NewConfChange(std::move(cc), std::move(context));
  SetCallback(w, std::move(done));
  Enqueue(w);
}

bool Replica::Enqueue(const std::shared_ptr<Waiter>& w) {
  w->deadline = host_->clock().Monotonic() + options_.request_timeout;
  Status refused;
  if (stopping() || host_->stopping()) {
    refused = Stopped();
  } else if (queued_proposals_.load(std::memory_order_relaxed) >= options_.proposals_pending_max) {
    refused = Status::ResourceExhausted("etcdserver: too many requests")
                  .WithReason(ErrorReason::kTooManyRequests);
  }
  if (!refused.ok()) {
    w->Complete(refused);
    return false;
  }
  {
    std::lock_guard<std::mutex> lock(waiters_mu_);
    waiters_[w->id] = w;
  }
  queued_proposals_.fetch_add(1, std::memory_order_relaxed);
  host_->PostProposal(options_.group, w);
  return true;
}

Result<std::any> Replica::Wait(const std::shared_ptr<Waiter>& w) {
  Result<std::any> r = Status::Unknown("unset");
  {
    std::unique_lock<std::mutex> lock(w->mu);
    // The deadline is on the host's clock; the wait itself uses the real
    // one (blocking waits never run under simulation).
    const Duration left = w->deadline - host_->clock().Monotonic();
    if (!w->cv.wait_for(lock, std::max(left, Duration(0)), [&] { return w->result.has_value(); })) {
      w->result.emplace(RequestTimedOut());
    }
    r = *w->result;
  }
  Unregister(w->id);
  if (!r.ok()) proposals_failed_.fetch_add(1);
  return r;
}

void Replica::Unregister(const ProposalId& id) {
  std::lock_guard<std::mutex> lock(waiters_mu_);
  waiters_.erase(id);
}

// ---- reads ----

Status Replica::ReadBarrier() {
  if (options_.test_bug_local_reads) return Status::Ok();
  auto w = std::make_shared<Waiter>();
  if (!EnqueueRead(w)) return Stopped();
  return Wait(w).status();
}

void Replica::ReadBarrierAsync(std::function<void(Status)> done) {
  if (options_.test_bug_local_reads) return done(Status::Ok());
  auto w = std::make_shared<Waiter>();
  w->on_done = [done = std::move(done)](Result<std::any> r) { done(r.status()); };
  if (!EnqueueRead(w)) w->Complete(Stopped());
}

Status Replica::AwaitApplied() {
  const uint64_t target = commit_index_.load(std::memory_order_seq_cst);
  if (applied_index_.load(std::memory_order_seq_cst) >= target) return Status::Ok();
  apply_waiters_.fetch_add(1, std::memory_order_seq_cst);
  std::unique_lock<std::mutex> lock(state_mu_);
  const bool met = state_cv_.wait_for(lock, options_.request_timeout, [&] {
    return stopping() || applied_index_.load(std::memory_order_seq_cst) >= target;
  });
  lock.unlock();
  apply_waiters_.fetch_sub(1, std::memory_order_seq_cst);
  if (stopping()) return Stopped();
  return met ? Status::Ok() : RequestTimedOut();
}

bool Replica::EnqueueRead(const std::shared_ptr<Waiter>& w) {
  w->deadline = host_->clock().Monotonic() + options_.request_timeout;
  if (stopping() || host_->stopping()) return false;
  host_->PostRead(options_.group, w);
  return true;
}

// ---- waiting on state ----

void Replica::NotifyStateChange() {
  { std::lock_guard<std::mutex> lock(state_mu_); }
  state_cv_.notify_all();
}

void Replica::StartTransferLeadership(raft::NodeId transferee) {
  if (!stopping()) host_->PostTransfer(options_.group, transferee);
}

Status Replica::TransferLeadership(raft::NodeId transferee) {
  if (!is_leader()) return Status::FailedPrecondition("etcdserver: not leader");
  if (transferee == replica_id()) return Status::Ok();
  if (stopping()) return Stopped();
  if (AwaitLeadershipMove(transferee)) return Status::Ok();
  if (stopping()) return Stopped();
  return Status::Unavailable("etcdserver: request timed out, leader transfer took too long");
}

Status Replica::TakeLeadership() {
  if (is_leader()) return Status::Ok();
  if (stopping()) return Stopped();
  if (AwaitLeadershipMove(replica_id())) return Status::Ok();
  if (stopping()) return Stopped();
  return Status::Unavailable(fmt::format("group {}: leadership did not come to replica {} in time",
                                         options_.group, replica_id()));
}

bool Replica::AwaitLeadershipMove(raft::NodeId to) {
  // The transferee ignores the leader's call while it has not yet applied
  // a change to the configuration (the one that made it a voter, for a
  // replica just promoted), and the leader gives up after an election
  // timeout; so the request goes again, a few times: the leader refuses
  // proposals while a transfer is under way, and a transferee that cannot
  // take over (down, cut off) must not hold the group's writes for long.
  // Asked again only while the transferee is heard from, and never after
  // a third replica took the lead.
  constexpr int kAttempts = 3;
  const Duration retry = host_->options().tick_interval * (options_.election_ticks + 1);
  const auto deadline = std::chrono::steady_clock::now() + options_.request_timeout;
  std::unique_lock<std::mutex> lock(state_mu_);
  auto moved_or_over = [&] {
    const raft::NodeId now = leader();
    return now == to || stopping() ||
           (now != raft::kNoNode && now != replica_id() && to != replica_id());
  };
  for (int attempt = 0; attempt < kAttempts && !moved_or_over(); ++attempt) {
    if (attempt > 0 && to != replica_id()) {
      const std::map<raft::NodeId, PeerProgress> progress = PeersProgress();
      auto it = progress.find(to);
      if (it == progress.end() || !it->second.recent_active) break;
    }
    host_->PostTransfer(options_.group, to);
    const auto until = std::min(deadline, std::chrono::steady_clock::now() + retry);
    state_cv_.wait_until(lock, until, moved_or_over);
    if (std::chrono::steady_clock::now() >= deadline) break;
  }
  // The last request may still be under way.
  state_cv_.wait_until(lock, deadline, moved_or_over);
  return leader() == to;
}

Status Replica::AwaitPeerMatch(raft::NodeId peer, uint64_t index, Duration timeout) {
  progress_waiters_.fetch_add(1);
  std::unique_lock<std::mutex> lock(state_mu_);
  auto caught_up = [&] {
    std::map<raft::NodeId, PeerProgress> progress = PeersProgress();
    auto it = progress.find(peer);
    return it != progress.end() && it->second.match >= index;
  };
  const bool met =
      state_cv_.wait_for(lock, timeout, [&] { return stopping() || !is_leader() || caught_up(); });
  lock.unlock();
  progress_waiters_.fetch_sub(1);
  if (stopping()) return Stopped();
  if (!is_leader()) {
    return Status::Unavailable(
        fmt::format("group {}: replica {} lost the leadership", options_.group, replica_id()));
  }
  if (!met) {
    return Status::DeadlineExceeded(fmt::format(
        "group {}: replica {} did not catch up to index {} in time", options_.group, peer, index));
  }
  return Status::Ok();
}

Status Replica::AwaitConfState(const std::function<bool(const raft::ConfState&)>& pred) {
  std::unique_lock<std::mutex> lock(state_mu_);
  const bool met = state_cv_.wait_for(lock, options_.request_timeout,
                                      [&] { return stopping() || pred(applied_conf_state()); });
  if (stopping()) return Stopped();
  return met ? Status::Ok() : RequestTimedOut();
}

// ---- recovery ----

Status Replica::Recover(const storage::WalGroupState* replay) {
  snapshot_dir_ = host_->snapshot_dir();
  const raft::GroupId group = options_.group;
  storage::WalGroupState bootstrapped;
  if (replay == nullptr && sm_->AppliedIndex() == 0 && !options_.bootstrap_voters.empty()) {
    raft::ConfState cs;
    cs.voters = options_.bootstrap_voters;
    std::sort(cs.voters.begin(), cs.voters.end());
    // The state machine first: if we crash before the log has the marker,
    // the next start sees no log and a state machine at index 1, and
    // finishes the job below.
    RETURN_IF_ERROR(sm_->Bootstrap(cs));
  }
  if (replay == nullptr && sm_->AppliedIndex() == 1) {
    // A new group whose state machine starts at index 1 (bootstrapped
    // above, or written by a split) and whose log is still empty: the log
    // starts there too.
    ASSIGN_OR_RETURN(const raft::ConfState cs, sm_->AppliedConfState());
    storage::WalBatch wb;
    wb.AddSnapshotMarker(group, 1, 1);
    wb.SetHardState(group, raft::HardState{1, raft::kNoNode, 1});
    RETURN_IF_ERROR(host_->wal()->Append(wb));
    bootstrapped.snapshot_index = 1;
    bootstrapped.snapshot_term = 1;
    bootstrapped.hard_state = raft::HardState{1, raft::kNoNode, 1};
    replay = &bootstrapped;
    LOG_INFO("group {}: bootstrapped with voters {}", group, cs.ToString());
  }
  if (replay != nullptr && replay->snapshot_index == 0 && sm_->AppliedIndex() == 0) {
    // A member that joined and has not received its first snapshot: the log
    // holds its votes and terms but no entries (a leader sends a joiner a
    // snapshot first), and the state machine is empty. Keep the hard state;
    // the configuration comes with the snapshot.
    if (!replay->entries.empty()) {
      return Status::Corruption(
          fmt::format("group {}: the log holds entries from index {} but nothing it builds on",
                      group, replay->entries.front().index));
    }
    raft::HardState hs = replay->hard_state;
    hs.commit = 0;
    log_.SetHardState(hs);
  } else if (replay != nullptr) {
    if (replay->snapshot_index > sm_->AppliedIndex()) {
      // A crash after the snapshot marker was logged but before the image
      // was installed: the image is on disk; install it now.
      const std::string path =
          host_->SnapshotPath(group, replay->snapshot_index, replay->snapshot_term);
      LOG_INFO("group {}: installing snapshot {} left by an interrupted install", group, path);
      RETURN_IF_ERROR(sm_->InstallSnapshot(path));
    }
    const uint64_t applied = sm_->AppliedIndex();
    ASSIGN_OR_RETURN(conf_state_, sm_->AppliedConfState());
    RETURN_IF_ERROR(log_.ApplySnapshot(
        raft::Snapshot{raft::SnapshotMetadata{applied, sm_->AppliedTerm(), conf_state_}, ""}));
    std::vector<raft::Entry> tail;
    for (const raft::Entry& e : replay->entries) {
      if (e.index > applied) tail.push_back(e);
    }
    if (!tail.empty() && tail.front().index != applied + 1) {
      return Status::Corruption(fmt::format(
          "group {}: the log resumes at index {} but the state machine has applied only up to {}",
          group, tail.front().index, applied));
    }
    if (!tail.empty()) log_.Append(tail);
    raft::HardState hs = replay->hard_state;
    hs.commit = std::max(hs.commit, applied);
    log_.SetHardState(hs);
    last_compact_index_ = applied;
  }
  applied_index_.store(sm_->AppliedIndex());
  {
    std::lock_guard<std::mutex> lock(progress_mu_);
    applied_conf_state_ = conf_state_;
  }
  PublishConfState();

  raft::Config config;
  config.id = options_.replica_id;
  config.group = group;
  config.election_ticks = options_.election_ticks;
  config.heartbeat_ticks = options_.heartbeat_ticks;
  config.applied = sm_->AppliedIndex();
  config.pre_vote = true;
  config.check_quorum = true;
  config.vote_at_once_at_term_one = options_.vote_at_once_at_term_one;
  config.read_only = options_.read_only;
  config.max_message_bytes = options_.max_message_bytes;
  config.max_inflight_messages = options_.max_inflight_messages;
  config.max_uncommitted_bytes = options_.max_uncommitted_bytes;
  config.bugs = options_.raft_bugs;
  config.random_seed = options_.replica_id ^ (host_->epoch() << 32) ^ group;
  ASSIGN_OR_RETURN(raft_, raft::Node::Create(config, &log_));
  term_.store(raft_->term());
  commit_index_.store(log_.InitialHardState().commit);
  LOG_INFO("group {} replica {:x}: recovered at applied index {}, last log index {}, term {}",
           group, options_.replica_id, sm_->AppliedIndex(), log_.LastIndex(), raft_->term());
  return Status::Ok();
}

}  // namespace conclave::server
