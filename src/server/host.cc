// Host: opening, the router, and the three loops (driver, log writer,
// apply).
#include "server/host.h"

#include <fmt/format.h>

#include <algorithm>
#include <utility>

#include "base/assert.h"
#include "base/coding.h"
#include "base/logging.h"
#include "base/thread.h"
#include "keys/keys.h"
#include "mvcc/mvcc.h"

namespace conclave::server {

namespace {

// The boot counter: node-local, never replicated (docs/KEYS.md); its value
// is a fixed64.
std::string BootCounterKey() {
  return keys::EncodeKey(keys::NodeLocalKey{std::string(keys::kBootCounterName)});
}

}  // namespace

Host::Host(const HostOptions& options, const HostEnv& env)
    : options_(options), clock_(*env.clock), fs_(env.fs), engine_(env.engine) {}

Host::~Host() {
  Stop();
}

Result<std::unique_ptr<Host>> Host::Open(const HostOptions& options, const HostEnv& env) {
  CHECK_MSG(env.clock != nullptr, "host: a clock is required");
  if (options.node_id == 0) return Status::InvalidArgument("host: node id 0");
  std::unique_ptr<Host> host(new Host(options, env));
  RETURN_IF_ERROR(host->OpenStorage());
  return host;
}

Status Host::OpenStorage() {
  if (fs_ == nullptr) {
    owned_fs_ = storage::NewPosixFileSystem();
    fs_ = owned_fs_.get();
  }
  RETURN_IF_ERROR(fs_->CreateDirs(options_.data_dir));
  ASSIGN_OR_RETURN(
      wal_, storage::Wal::Open(fs_, storage::JoinPath(options_.data_dir, "wal"), options_.wal));
  replayed_ = wal_->Replay().groups;
  if (engine_ == nullptr) {
    ASSIGN_OR_RETURN(
        owned_engine_,
        storage::OpenRocksEngine(storage::JoinPath(options_.data_dir, "db"), options_.engine));
    engine_ = owned_engine_.get();
  }
  snapshot_dir_ = storage::JoinPath(options_.data_dir, "snap");
  RETURN_IF_ERROR(fs_->CreateDirs(snapshot_dir_));
  RETURN_IF_ERROR(mvcc::RemoveStaleParts(fs_, snapshot_dir_));
  return BumpEpoch();
}

Status Host::BumpEpoch() {
  ASSIGN_OR_RETURN(std::optional<std::string> saved, engine_->Get(BootCounterKey()));
  uint64_t previous = 0;
  if (saved) {
    if (saved->size() != 8) return Status::Corruption("host: malformed boot epoch");
    previous = DecodeFixed64(saved->data());
  }
  epoch_ = options_.bugs.reuse_request_ids ? 1 : previous + 1;
  std::string value;
  PutFixed64(&value, epoch_);
  std::unique_ptr<storage::EngineBatch> batch = engine_->NewBatch();
  batch->Put(BootCounterKey(), value);
  // Synced before any replica proposes under the new epoch.
  return engine_->Write(batch.get(), /*sync=*/true);
}

std::string Host::SnapshotPath(raft::GroupId group, uint64_t index, uint64_t term) const {
  return mvcc::SnapshotPath(snapshot_dir_, mvcc::SnapshotId{group, index, term});
}

// ---- replicas ----

Result<std::shared_ptr<Replica>> Host::AddReplica(const ReplicaOptions& options,
                                                  std::unique_ptr<StateMachine> sm) {
  if (options.replica_id == 0) return Status::InvalidArgument("host: replica id 0");
  std::shared_ptr<Replica> replica(new Replica(this, options, std::move(sm)));
  std::optional<storage::WalGroupState> replay;
  {
    std::shared_lock<std::shared_mutex> lock(replicas_mu_);
    if (replicas_.contains(options.group)) {
      return Status::AlreadyExists(
          fmt::format("host: group {} already has a replica here", options.group));
    }
    auto it = replayed_.find(options.group);
    if (it != replayed_.end()) replay = it->second;
  }
  RETURN_IF_ERROR(replica->Recover(replay ? &*replay : nullptr));
  {
    std::unique_lock<std::shared_mutex> lock(replicas_mu_);
    if (!replicas_.emplace(options.group, replica).second) {
      return Status::AlreadyExists(
          fmt::format("host: group {} already has a replica here", options.group));
    }
    replayed_.erase(options.group);
  }
  {
    std::lock_guard<std::mutex> lock(inbox_mu_);
    inbox_.added.push_back(replica);
  }
  inbox_cv_.notify_one();
  return replica;
}

void Host::RemoveReplica(raft::GroupId group) {
  {
    std::lock_guard<std::mutex> lock(inbox_mu_);
    inbox_.removed.push_back(group);
  }
  inbox_cv_.notify_one();
}

Status Host::DiscardReplay(raft::GroupId group) {
  storage::WalGroupState gone;
  {
    std::unique_lock<std::shared_mutex> lock(replicas_mu_);
    auto it = replayed_.find(group);
    if (it == replayed_.end()) return Status::Ok();
    gone = std::move(it->second);
    replayed_.erase(it);
  }
  uint64_t last = gone.snapshot_index;
  uint64_t term = gone.snapshot_term;
  if (!gone.entries.empty()) {
    last = gone.entries.back().index;
    term = gone.entries.back().term;
  }
  if (last == 0) return Status::Ok();
  return wal_->ReleaseTo(group, last, term);
}

std::vector<raft::GroupId> Host::ReplayedGroups() const {
  std::shared_lock<std::shared_mutex> lock(replicas_mu_);
  std::vector<raft::GroupId> out;
  for (const auto& [group, state] : replayed_)
    out.push_back(group);
  return out;
}

std::shared_ptr<Replica> Host::FindReplica(raft::GroupId group) const {
  std::shared_lock<std::shared_mutex> lock(replicas_mu_);
  auto it = replicas_.find(group);
  return it == replicas_.end() ? nullptr : it->second;
}

std::vector<std::shared_ptr<Replica>> Host::Replicas() const {
  std::shared_lock<std::shared_mutex> lock(replicas_mu_);
  std::vector<std::shared_ptr<Replica>> out;
  out.reserve(replicas_.size());
  for (const auto& [group, r] : replicas_)
    out.push_back(r);
  return out;
}

// ---- lifecycle ----

void Host::Start(MessageSender* sender) {
  CHECK(!started_);
  started_ = true;
  sender_ = sender;
  started_at_ = clock_.Monotonic();
  next_tick_ = started_at_ + options_.tick_interval;
  if (options_.manual) return;
  applier_ = std::thread([this] {
    SetThreadName("raft-apply");
    ApplyLoop();
  });
  log_writer_ = std::thread([this] {
    SetThreadName("raft-log");
    LogWriterLoop();
  });
  driver_ = std::thread([this] {
    SetThreadName("raft-driver");
    DriverLoop();
  });
}

void Host::Stop() {
  if (stopping_.exchange(true)) return;
  inbox_cv_.notify_all();
  if (driver_.joinable()) driver_.join();
  log_cv_.notify_all();
  if (log_writer_.joinable()) log_writer_.join();
  apply_cv_.notify_all();
  if (applier_.joinable()) applier_.join();
  for (const std::shared_ptr<Replica>& r : Replicas())
    r->FailAll(Stopped());
  // Requests that were queued for the driver and never reached a replica.
  Inbox left;
  {
    std::lock_guard<std::mutex> lock(inbox_mu_);
    std::swap(left, inbox_);
  }
  for (auto& [group, w] : left.proposals)
    w->Complete(Stopped());
  for (auto& [group, w] : left.reads)
    w->Complete(Stopped());
}

HostStats Host::stats() const {
  HostStats s;
  const storage::WalStats w = wal_->stats();
  s.wal_appends = w.appends;
  s.wal_syncs = w.syncs;
  s.wal_bytes = w.bytes_written;
  s.wal_segments = wal_->SegmentCount();
  s.wal_segments_removed = w.segments_removed;
  s.log_writes = log_writes_.load();
  s.log_write_groups = log_write_groups_.load();
  s.log_write_groups_max = log_write_groups_max_.load();
  s.ticks = ticks_.load();
  for (const std::shared_ptr<Replica>& r : Replicas()) {
    ++s.replicas;
    if (r->stats().quiesced) ++s.replicas_quiesced;
  }
  return s;
}

// ---- from other threads ----

void Host::Receive(uint64_t from, std::vector<raft::Message> messages) {
  {
    std::lock_guard<std::mutex> lock(inbox_mu_);
    if (stopping()) return;
    inbox_.messages.emplace_back(from, std::move(messages));
  }
  inbox_cv_.notify_one();
}

void Host::ReportUnreachable(uint64_t node) {
  {
    std::lock_guard<std::mutex> lock(inbox_mu_);
    inbox_.unreachable.push_back(node);
  }
  inbox_cv_.notify_one();
}

void Host::ReportSnapshot(raft::GroupId group, raft::NodeId to, bool ok) {
  {
    std::lock_guard<std::mutex> lock(inbox_mu_);
    inbox_.snapshot_reports.push_back({group, to, ok});
  }
  inbox_cv_.notify_one();
}

void Host::PostProposal(raft::GroupId group, std::shared_ptr<Replica::Waiter> w) {
  {
    std::lock_guard<std::mutex> lock(inbox_mu_);
    inbox_.proposals.emplace_back(group, std::move(w));
  }
  inbox_cv_.notify_one();
}

void Host::PostRead(raft::GroupId group, std::shared_ptr<Replica::Waiter> w) {
  {
    std::lock_guard<std::mutex> lock(inbox_mu_);
    inbox_.reads.emplace_back(group, std::move(w));
  }
  inbox_cv_.notify_one();
}

void Host::PostTransfer(raft::GroupId group, raft::NodeId transferee) {
  {
    std::lock_guard<std::mutex> lock(inbox_mu_);
    inbox_.transfers.emplace_back(group, transferee);
  }
  inbox_cv_.notify_one();
}

Status Host::ReceiveSnapshot(uint64_t from, raft::Message m,
                             const std::function<Result<bool>(std::string*)>& next) {
  std::shared_ptr<Replica> replica = FindReplica(m.group);
  if (replica == nullptr && m.type == raft::MessageType::kSnapshot && m.snapshot &&
      replica_maker_) {
    // A group this node has no replica of yet (it missed the split that
    // made it, say): its replica starts empty, from this image.
    replica = replica_maker_(m.group, m.to, m.from, from);
  }
  if (m.type != raft::MessageType::kSnapshot || !m.snapshot || replica == nullptr ||
      m.to != replica->replica_id()) {
    return Status::InvalidArgument("snapshot: header is not a snapshot for us");
  }
  const mvcc::SnapshotId id{m.group, m.snapshot->metadata.index, m.snapshot->metadata.term};
  mvcc::SnapshotReceiver receiver(fs_, snapshot_dir_, id);
  std::string chunk;
  while (true) {
    ASSIGN_OR_RETURN(bool more, next(&chunk));
    if (!more) break;
    RETURN_IF_ERROR(receiver.Add(chunk));
  }
  if (!receiver.complete()) {
    return Status::InvalidArgument("snapshot: the stream ended before the image");
  }
  ASSIGN_OR_RETURN(std::string path, receiver.Finish());
  auto snap = std::make_shared<raft::Snapshot>(*m.snapshot);
  snap->data = path;
  m.snapshot = std::move(snap);
  LOG_INFO("snapshot: received group {} index {} term {} from {:x}", id.group, id.index, id.term,
           from);
  std::vector<raft::Message> messages;
  messages.push_back(std::move(m));
  Receive(from, std::move(messages));
  return Status::Ok();
}

HostWork Host::PendingWork() {
  HostWork w;
  {
    std::lock_guard<std::mutex> lock(inbox_mu_);
    w.driver = !inbox_.empty() || !persisted_.empty();
  }
  {
    std::lock_guard<std::mutex> lock(log_mu_);
    w.log_write = !log_queue_.empty();
    w.log_sync = !log_written_.empty();
  }
  std::lock_guard<std::mutex> lock(apply_mu_);
  w.apply = !apply_queue_.empty();
  return w;
}

// ---- the driver ----

void Host::DriverLoop() {
  while (true) {
    {
      std::unique_lock<std::mutex> lock(inbox_mu_);
      const Duration until_tick = next_tick_ - clock_.Monotonic();
      inbox_cv_.wait_for(lock, std::max(until_tick, Duration(0)),
                         [&] { return stopping() || !inbox_.empty() || !persisted_.empty(); });
      if (stopping()) break;
    }
    DriverRound();
    WriteOrHandOff();
  }
}

void Host::WriteOrHandOff() {
  bool more_to_do = false;
  {
    std::lock_guard<std::mutex> lock(inbox_mu_);
    more_to_do = !inbox_.empty() || !persisted_.empty();
  }
  std::vector<LogJob> jobs;
  {
    std::lock_guard<std::mutex> lock(log_mu_);
    if (log_queue_.empty()) return;
    // A slow disk would hold the driver, and with it every group's ticks
    // and heartbeats, for the whole sync: then the log writer syncs.
    const int64_t tick_us =
        std::chrono::duration_cast<std::chrono::microseconds>(options_.tick_interval).count();
    const bool slow_disk = last_sync_us_.load(std::memory_order_relaxed) * 4 > tick_us;
    if (more_to_do || log_writing_ || slow_disk) {
      // Busy (or the log writer already is): the log writer syncs while the
      // driver goes on; it takes what is queued once its current write ends.
      log_cv_.notify_one();
      return;
    }
    // Nothing else to do until this write is durable: writing it here saves
    // two thread hand-offs (on this machine, more than a small sync costs).
    while (!log_queue_.empty()) {
      jobs.push_back(std::move(log_queue_.front()));
      log_queue_.pop_front();
    }
    log_writing_ = true;
  }
  Status s = WriteJobs(jobs, /*sync=*/true);
  CHECK_MSG(s.ok(), "host: persisting the raft log failed: {}", s.ToString());
  FinishWrite(jobs);
}

void Host::FinishWrite(std::vector<LogJob>& jobs) {
  // Handed back before the next write may start: persisted_ keeps the jobs
  // in the order they were written.
  CompleteJobs(jobs);
  {
    std::lock_guard<std::mutex> lock(log_mu_);
    log_writing_ = false;
  }
  log_cv_.notify_one();  // the log writer may wait for the write to end
}

bool Host::RunDriver() {
  return DriverRound();
}

Duration Host::NextTick() const {
  return next_tick_;
}

bool Host::DriverRound() {
  // The inbox is swapped with a spare that keeps its capacity: a busy
  // driver allocates nothing to take its work.
  Inbox& inbox = spare_inbox_;
  std::deque<LogJob> persisted;
  {
    std::lock_guard<std::mutex> lock(inbox_mu_);
    std::swap(inbox, inbox_);
    persisted.swap(persisted_);
  }
  bool did = !inbox.empty() || !persisted.empty();
  Dispatch(inbox);
  for (LogJob& job : persisted) {
    for (std::shared_ptr<Replica>& r : job.replicas) {
      r->FinishReady();
      MarkDirty(r);
    }
  }
  inbox.Clear();
  if (clock_.Monotonic() >= next_tick_) {
    TickAll();
    did = true;
  }
  return CollectReadies() || did;
}

void Host::MarkDirty(const std::shared_ptr<Replica>& replica) {
  if (replica->retired()) return;  // its last log writes finish without it
  if (dirty_set_.insert(replica->group()).second) dirty_.push_back(replica);
}

template <typename Items, typename Visit>
void Host::ForEachGroupRun(Items& items, const Visit& visit) {
  for (auto first = items.begin(); first != items.end();) {
    auto last = first;
    while (last != items.end() && last->first == first->first)
      ++last;
    std::shared_ptr<Replica> replica = FindReplica(first->first);
    if (replica == nullptr) {
      for (auto it = first; it != last; ++it) {
        it->second->Complete(
            Status::NotFound(fmt::format("group {} has no replica here", it->first))
                .WithReason(ErrorReason::kGroupNotFound));
      }
    } else {
      visit(replica, first, last);
    }
    first = last;
  }
}

void Host::Dispatch(Inbox& inbox) {
  for (std::shared_ptr<Replica>& r : inbox.added) {
    active_[r->group()] = r;
    r->CampaignIfAsked();
    MarkDirty(r);
  }
  for (raft::GroupId group : inbox.removed) {
    std::shared_ptr<Replica> gone;
    {
      std::unique_lock<std::shared_mutex> lock(replicas_mu_);
      auto it = replicas_.find(group);
      if (it == replicas_.end()) continue;
      gone = std::move(it->second);
      replicas_.erase(it);
    }
    active_.erase(group);
    dirty_set_.erase(group);
    std::erase(dirty_, gone);
    gone->Retire();
  }
  const Duration now = clock_.Monotonic();
  std::shared_ptr<Replica> r;
  for (auto& [from, messages] : inbox.messages) {
    last_heard_[from] = now;
    dead_nodes_.erase(from);
    for (raft::Message& m : messages) {
      if (r == nullptr || r->group() != m.group) r = FindReplica(m.group);
      if (r == nullptr && replica_maker_ &&
          (m.type == raft::MessageType::kAppend || m.type == raft::MessageType::kHeartbeat)) {
        // A leader of a group this node has no replica of: an empty one
        // answers it, and the leader sends it a snapshot.
        r = replica_maker_(m.group, m.to, m.from, from);
      }
      if (r == nullptr) continue;  // no replica here (yet, or any more)
      r->Step(std::move(m));
      MarkDirty(r);
    }
  }
  // Proposals and reads, grouped per replica (in arrival order within a
  // group) so each replica gets one batch of each.
  auto by_group = [](const auto& a, const auto& b) { return a.first < b.first; };
  std::stable_sort(inbox.proposals.begin(), inbox.proposals.end(), by_group);
  std::stable_sort(inbox.reads.begin(), inbox.reads.end(), by_group);
  ForEachGroupRun(inbox.proposals,
                  [&](const std::shared_ptr<Replica>& replica, auto first, auto last) {
                    replica->AddProposals(first, last);
                    replica->ProposePending();
                    MarkDirty(replica);
                  });
  ForEachGroupRun(inbox.reads, [&](const std::shared_ptr<Replica>& replica, auto first, auto last) {
    std::vector<std::shared_ptr<Replica::Waiter>> waiters;
    waiters.reserve(static_cast<size_t>(last - first));
    for (auto it = first; it != last; ++it)
      waiters.push_back(std::move(it->second));
    replica->AddReads(std::move(waiters));
    MarkDirty(replica);
  });
  for (const Inbox::SnapshotReport& report : inbox.snapshot_reports) {
    r = FindReplica(report.group);
    if (r == nullptr) continue;
    r->ReportSnapshot(report.to, report.ok);
    MarkDirty(r);
  }
  for (uint64_t node : inbox.unreachable) {
    for (const std::shared_ptr<Replica>& replica : Replicas()) {
      for (raft::NodeId peer : replica->PeersOn(node)) {
        replica->ReportUnreachable(peer);
        MarkDirty(replica);
      }
    }
  }
  for (const auto& [group, transferee] : inbox.transfers) {
    r = FindReplica(group);
    if (r == nullptr) continue;
    r->StartTransfer(transferee);
    MarkDirty(r);
  }
}

void Host::TickAll() {
  const Duration now = clock_.Monotonic();
  next_tick_ += options_.tick_interval;
  if (next_tick_ <= now) next_tick_ = now + options_.tick_interval;
  ticks_.fetch_add(1, std::memory_order_relaxed);
  std::vector<std::shared_ptr<Replica>> ticking;
  ticking.reserve(active_.size());
  for (const auto& [group, r] : active_)
    ticking.push_back(r);
  for (const std::shared_ptr<Replica>& r : ticking) {
    // An idle group quiesces before this tick's heartbeat, which it no
    // longer needs.
    r->MaybeQuiesce();
    if (!r->quiesced()) {
      r->TickNow();
      r->Housekeeping();
    }
    MarkDirty(r);
  }
  CheckLiveness();
  ReleaseOldSegments();
}

void Host::ReleaseOldSegments() {
  if (wal_->SegmentCount() <= options_.wal_segments_max) return;
  for (raft::GroupId g : wal_->PinningGroups()) {
    std::shared_ptr<Replica> r = FindReplica(g);
    if (r != nullptr) r->MaybeCompactLog(/*force=*/true);
  }
}

void Host::Activate(Replica& replica) {
  active_[replica.group()] = replica.shared_from_this();
}

void Host::Deactivate(Replica& replica) {
  active_.erase(replica.group());
}

void Host::CheckLiveness() {
  // Quiesced leaders here keep their followers' nodes informed that this
  // node lives; a node not heard from for a while is taken for dead and
  // the quiesced followers of its leaders wake up.
  if (active_.size() == replicas_size()) return;  // nothing quiesced
  const Duration now = clock_.Monotonic();
  const Duration window = options_.tick_interval * options_.liveness_ticks;
  auto silent = [&](uint64_t node) {
    auto heard = last_heard_.find(node);
    const Duration since = heard == last_heard_.end() ? started_at_ : heard->second;
    return now - since >= window;
  };
  // Which nodes those are changes only as groups quiesce, wake or change
  // their replicas, so the pass over every replica is made every few
  // ticks (within half the liveness window), not every tick: with
  // thousands of quiesced groups it is most of an idle node's work.
  const uint64_t tick = ticks_.load(std::memory_order_relaxed);
  const uint64_t every = std::max<uint64_t>(1, static_cast<uint64_t>(options_.liveness_ticks) / 2);
  bool scan = tick - liveness_scan_tick_ >= every;
  if (!scan) {
    for (uint64_t node : followed_nodes_) {
      if (silent(node)) {  // never this node: the scan leaves it out
        scan = true;       // some quiesced followers may need waking now
        break;
      }
    }
  }
  if (scan) {
    liveness_scan_tick_ = tick;
    ping_nodes_.clear();
    followed_nodes_.clear();
    for (const std::shared_ptr<Replica>& r : Replicas()) {
      if (!r->quiesced()) continue;
      if (r->is_leader()) {
        for (uint64_t node : r->PeerNodes())
          ping_nodes_.insert(node);
        continue;
      }
      const uint64_t node = r->NodeOf(r->leader());
      if (node == options_.node_id) continue;
      if (!silent(node)) {
        followed_nodes_.insert(node);
        continue;
      }
      if (dead_nodes_.insert(node).second) {
        LOG_INFO("host {:x}: node {:x} silent for {} ms; waking the groups it leads",
                 options_.node_id, node,
                 std::chrono::duration_cast<std::chrono::milliseconds>(window).count());
      }
      r->Wake();
      MarkDirty(r);
    }
  }
  for (uint64_t node : ping_nodes_) {
    if (node != options_.node_id) sender_->Ping(node);
  }
}

size_t Host::replicas_size() const {
  std::shared_lock<std::shared_mutex> lock(replicas_mu_);
  return replicas_.size();
}

bool Host::CollectReadies() {
  LogJob job;
  bool did = false;
  // A Ready that needs no write is finished at once, and the replica may
  // have another: go round until every dirty replica is idle or writing.
  for (int round = 0; round < 4 && !dirty_.empty(); ++round) {
    std::vector<std::shared_ptr<Replica>> again;
    for (std::shared_ptr<Replica>& r : dirty_) {
      if (!r->ReadyPending()) continue;
      did = true;
      if (r->BeginReady(&job.batch)) {
        job.replicas.push_back(r);
      } else {
        r->FinishReady();
        again.push_back(r);
      }
    }
    dirty_.swap(again);
    dirty_set_.clear();
    for (const std::shared_ptr<Replica>& r : dirty_)
      dirty_set_.insert(r->group());
  }
  if (!job.replicas.empty()) {
    // Queued only: the driver decides at the end of its round whether it
    // writes the job itself or hands it to the log writer (WriteOrHandOff).
    std::lock_guard<std::mutex> lock(log_mu_);
    log_queue_.push_back(std::move(job));
  }
  return did;
}

void Host::SendTo(Replica& replica, std::vector<raft::Message> messages) {
  CHECK_MSG(sender_ != nullptr, "host: sending before Start");
  // A Ready's messages go to a handful of nodes: a short list, no map.
  std::vector<std::pair<uint64_t, std::vector<raft::Message>>> by_node;
  for (raft::Message& m : messages) {
    const uint64_t node = replica.NodeOf(m.to);
    if (node == 0) continue;  // a replica this group does not place anywhere
    if (m.type == raft::MessageType::kSnapshot) {
      sender_->SendSnapshot(node, std::move(m));
      continue;
    }
    auto it = std::find_if(by_node.begin(), by_node.end(),
                           [&](const auto& b) { return b.first == node; });
    if (it == by_node.end()) it = by_node.insert(by_node.end(), {node, {}});
    it->second.push_back(std::move(m));
  }
  for (auto& [node, batch] : by_node)
    sender_->Send(node, std::move(batch));
}

void Host::QueueApply(std::shared_ptr<Replica> replica, Replica::ApplyItem item) {
  {
    std::lock_guard<std::mutex> lock(apply_mu_);
    apply_queue_.push_back(ApplyJob{std::move(replica), std::move(item)});
  }
  apply_cv_.notify_one();
}

void Host::RunOnApplyThread(std::function<void()> task) {
  {
    std::lock_guard<std::mutex> lock(apply_mu_);
    apply_queue_.push_back(ApplyJob{nullptr, {}, std::move(task)});
  }
  apply_cv_.notify_one();
}

// ---- the log writer ----

void Host::LogWriterLoop() {
  while (true) {
    std::vector<LogJob> jobs;
    {
      std::unique_lock<std::mutex> lock(log_mu_);
      log_cv_.wait(lock, [&] { return stopping() || (!log_queue_.empty() && !log_writing_); });
      if (stopping()) break;
      while (!log_queue_.empty()) {
        jobs.push_back(std::move(log_queue_.front()));
        log_queue_.pop_front();
      }
      log_writing_ = true;
    }
    Status s = WriteJobs(jobs, /*sync=*/true);
    // The log is the node's memory: without it nothing may be acknowledged.
    CHECK_MSG(s.ok(), "host: persisting the raft log failed: {}", s.ToString());
    FinishWrite(jobs);
  }
}

Status Host::WriteJobs(std::vector<LogJob>& jobs, bool sync) {
  if (jobs.empty()) return Status::Ok();
  storage::WalBatch merged;
  std::set<raft::GroupId> groups;
  for (LogJob& job : jobs) {
    merged.Append(job.batch);
    for (const std::shared_ptr<Replica>& r : job.replicas)
      groups.insert(r->group());
  }
  const auto started = std::chrono::steady_clock::now();
  RETURN_IF_ERROR(wal_->Append(merged, sync));
  if (sync) {
    last_sync_us_.store(std::chrono::duration_cast<std::chrono::microseconds>(
                            std::chrono::steady_clock::now() - started)
                            .count(),
                        std::memory_order_relaxed);
  }
  log_writes_.fetch_add(1, std::memory_order_relaxed);
  log_write_groups_.fetch_add(groups.size(), std::memory_order_relaxed);
  uint64_t max = log_write_groups_max_.load(std::memory_order_relaxed);
  while (groups.size() > max && !log_write_groups_max_.compare_exchange_weak(max, groups.size())) {
  }
  return Status::Ok();
}

void Host::CompleteJobs(std::vector<LogJob>& jobs) {
  {
    std::lock_guard<std::mutex> lock(inbox_mu_);
    for (LogJob& job : jobs)
      persisted_.push_back(std::move(job));
  }
  jobs.clear();
  inbox_cv_.notify_one();
}

bool Host::RunLogWrite() {
  // Manual mode has no driver loop to write inline: the owner calls this.
  std::vector<LogJob> jobs;
  {
    std::lock_guard<std::mutex> lock(log_mu_);
    while (!log_queue_.empty()) {
      jobs.push_back(std::move(log_queue_.front()));
      log_queue_.pop_front();
    }
  }
  if (jobs.empty()) return false;
  Status s = WriteJobs(jobs, /*sync=*/false);
  CHECK_MSG(s.ok(), "host: writing the raft log failed: {}", s.ToString());
  for (LogJob& job : jobs)
    log_written_.push_back(std::move(job));
  return true;
}

bool Host::RunLogSync() {
  if (log_written_.empty()) return false;
  Status s = wal_->Sync();
  CHECK_MSG(s.ok(), "host: syncing the raft log failed: {}", s.ToString());
  CompleteJobs(log_written_);
  return true;
}

// ---- the apply thread ----

void Host::ApplyLoop() {
  while (true) {
    {
      std::unique_lock<std::mutex> lock(apply_mu_);
      apply_cv_.wait(lock, [&] { return stopping() || !apply_queue_.empty(); });
      // What the driver handed over before stopping is still applied, so
      // the requests waiting for it complete.
      if (apply_queue_.empty()) break;
    }
    while (ApplyOne()) {
    }
  }
}

bool Host::ApplyOne() {
  ApplyJob job;
  {
    std::lock_guard<std::mutex> lock(apply_mu_);
    if (apply_queue_.empty()) return false;
    job = std::move(apply_queue_.front());
    apply_queue_.pop_front();
  }
  if (job.task) {
    job.task();
  } else {
    job.replica->Apply(job.item);
  }
  return true;
}

bool Host::RunApply() {
  bool did = false;
  while (ApplyOne())
    did = true;
  return did;
}

}  // namespace conclave::server
