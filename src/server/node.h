// Node: one Conclave member's replicated key-value group, running.
//
// It owns the group's Raft core (raft::Node), its in-memory log view
// (raft::MemoryStorage, rebuilt from the write-ahead log at start), the
// node's write-ahead log (storage::Wal), the MVCC store, the watch hub and
// the lessor, and two threads:
//
//   driver  ticks the core, steps incoming messages, proposes, issues read
//           rounds, and handles each Ready in the core's order: persist
//           (one WAL append and sync), send, hand committed entries to the
//           apply thread, hand read states to the read waiters, Advance. It
//           also makes the leader's lease decisions (expiry, checkpoints)
//           and compacts the log once enough has been applied.
//   apply   applies committed entries in order, one RocksDB batch per
//           handful of entries (recording the applied index and term in the
//           same batch), feeds the watch hub, completes the waiting
//           requests, and releases reads whose index has been applied.
//
// Order of effects: nothing is sent before the Ready's entries and hard
// state are durable; a client is answered only after its command has been
// applied here; a linearizable read runs only after this member has applied
// the index its read round confirmed. The apply thread never touches the
// core; conf changes are given to the core by the driver when committed.
//
// Requests enter from gRPC threads (Propose, ReadBarrier, Renew...) and
// messages from the transport's threads (Receive); both go through the
// driver's inbox, so the core stays single-threaded.
//
// Restart: the store records its applied index, its term and the group's
// configuration atomically with every batch. The log view is rebuilt as a
// snapshot at that point plus the WAL's entries after it. When the WAL's
// snapshot marker is ahead of the store (a crash during a snapshot
// install), the received image is installed first.
//
// Today a node runs one group (kGroup); group ids are carried everywhere so
// that a driver for many groups can replace this one (docs/ARCHITECTURE.md).
//
// Thread-safety: public methods are thread-safe unless noted.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "base/clock.h"
#include "base/status.h"
#include "conclave/serverpb/server.pb.h"
#include "lease/lessor.h"
#include "mvcc/kv.h"
#include "mvcc/store.h"
#include "mvcc/watch_hub.h"
#include "raft/raft.h"
#include "raft/storage.h"
#include "storage/engine.h"
#include "storage/file_system.h"
#include "storage/wal.h"

namespace conclave::server {

inline constexpr raft::GroupId kGroup = 1;

// What the member keeps in its store as application metadata
// (mvcc::ApplyBatch::PutMeta), so that restarts and snapshots carry it: the
// group's Raft configuration, one record per lease, one per member, one
// marker per removed member (a removed id never returns), one per alarm.
inline constexpr std::string_view kConfStateMeta = "raft/conf_state";
// At most this many queued commands (or bytes of them) go in one proposal.
inline constexpr size_t kProposalBatchMax = 512;
inline constexpr size_t kProposalBatchBytes = 1 << 20;
inline constexpr std::string_view kLeaseMetaPrefix = "lease/";
inline constexpr std::string_view kMemberMetaPrefix = "member/";
inline constexpr std::string_view kRemovedMetaPrefix = "removed/";
inline constexpr std::string_view kAlarmMetaPrefix = "alarm/";
std::string MemberMetaName(uint64_t id);

struct NodeOptions {
  std::string data_dir;
  uint64_t member_id = 0;
  uint64_t cluster_id = 0;
  // Members of a new cluster, all voters (ignored on restart). Empty: join
  // an existing cluster, empty, and wait for the leader's snapshot.
  std::vector<serverpb::MemberRecord> initial_members;
  std::chrono::milliseconds tick_interval{100};
  int election_ticks = 10;
  int heartbeat_ticks = 1;
  // Compact the log (and release WAL segments) after this many applied entries.
  uint64_t snapshot_count = 100'000;
  // Entries kept behind a compaction for slightly lagging followers.
  uint64_t snapshot_catchup_entries = 5'000;
  // A request not applied by then fails with "etcdserver: request timed out".
  std::chrono::milliseconds request_timeout{7000};
  // Lease checkpoints: every interval the leader records the remaining TTL
  // of its leases (up to lease_checkpoint_leases_max per round), so a new
  // leader is at most one interval generous.
  std::chrono::milliseconds lease_checkpoint_interval{1000};
  size_t lease_checkpoint_leases_max = 1000;
  int64_t lease_min_ttl_seconds = 2;
  // Bounds on queued work; beyond them requests fail fast.
  size_t proposals_pending_max = 10'000;
  size_t apply_batch_entries_max = 256;
  // Test-only planted bug: ReadBarrier returns at once, so every member
  // answers "linearizable" reads from whatever it has applied (a follower
  // cut off from the leader serves stale data). The fault-injection harness
  // (tests/faults) must report it.
  bool test_bug_local_reads = false;
};

// What applying one command produced.
struct ApplyResult {
  Status status;
  int64_t revision = 0;  // the store's revision after the command
  std::variant<std::monostate, mvcc::PutResponse, mvcc::DeleteRangeResponse, mvcc::TxnResponse,
               lease::GrantResult, etcdserverpb::AlarmResponse>
      response;
};

// What the leader knows of a peer's replication (for membership checks).
struct PeerProgress {
  uint64_t match = 0;
  bool recent_active = false;
  bool is_learner = false;
};

// The transport as the node sees it (Transport implements it; tests fake it).
class MessageSender {
 public:
  virtual ~MessageSender() = default;
  // Queues messages for their peers; never blocks on the network.
  virtual void Send(std::vector<raft::Message> messages) = 0;
  // Streams the store's current image to m.to; reports the outcome through
  // Node::ReportSnapshot.
  virtual void SendSnapshot(raft::Message m) = 0;
};

struct NodeStats {
  uint64_t term = 0;
  uint64_t leader = 0;
  uint64_t commit_index = 0;
  uint64_t applied_index = 0;
  uint64_t proposals_committed = 0;
  uint64_t proposals_failed = 0;
  uint64_t leader_changes = 0;
  uint64_t snapshots_sent = 0;
  uint64_t snapshots_installed = 0;
  uint64_t wal_syncs = 0;
};

// "etcdserver: request timed out", etcd's answer to a request that was not
// applied in time.
Status RequestTimedOut();
// Whether a txn may put, in either branch (nested txns included): what the
// NOSPACE alarm refuses. Reads and deletes stay allowed, as with etcd.
bool TxnPuts(const etcdserverpb::TxnRequest& txn);

// "etcdserver: member not found".
Status MemberNotFound();

class Node {
 public:
  // Opens (or creates) the data directory and recovers. Does not start threads.
  static Result<std::unique_ptr<Node>> Open(const NodeOptions& options, Clock& clock);
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // Starts the driver and apply threads. `sender` must outlive Stop().
  void Start(MessageSender* sender);
  // Stops both threads; pending requests fail with kUnavailable. Idempotent.
  void Stop();

  // Proposes `command` (proposer and request_id are filled in here) and
  // waits until this member has applied it. kDeadlineExceeded with etcd's
  // "request timed out" when that takes longer than request_timeout.
  Result<ApplyResult> Propose(serverpb::Command command);
  // The same without blocking the caller: `done` runs exactly once, on the
  // apply thread when the command is applied, on the driver thread when it
  // times out or is refused there, or right here when it is refused at once.
  // It must not block or call back into the node.
  void ProposeAsync(serverpb::Command command, std::function<void(Result<ApplyResult>)> done);
  // Returns once this member has applied every entry committed before the
  // call (a ReadIndex round, shared with the reads that arrive meanwhile).
  Status ReadBarrier();
  // The same without blocking the caller: `done` runs exactly once, with Ok
  // or the error, on the driver or apply thread (or right here when the node
  // is stopping). It must not block or call back into the node.
  void ReadBarrierAsync(std::function<void(Status)> done);

  // Leases: keep-alive and TTL queries are answered by the leader's lessor;
  // on a follower they return kNotLeader and the api layer forwards them.
  Result<int64_t> RenewLease(lease::LeaseId id);
  Result<lease::TimeToLiveResult> LeaseTimeToLive(lease::LeaseId id, bool with_keys);
  std::vector<lease::LeaseId> Leases() const { return lessor_->Leases(); }
  Status ValidateLeaseGrant(int64_t ttl_seconds) const {
    return lessor_->ValidateGrant(ttl_seconds);
  }

  // Membership (node_members.cc). The members as this member has applied
  // them, in id order.
  Result<std::vector<serverpb::MemberRecord>> Members() const;
  // Whether `id` was removed from the cluster (as applied here).
  bool IsRemoved(uint64_t id) const;
  // Proposes a membership change (joint consensus underneath: the core
  // enters a joint configuration and leaves it automatically) carrying
  // `member` as its context, and waits until it is applied here.
  Status ProposeMembership(raft::ConfChangeType type, const serverpb::MemberRecord& member);
  // Called on the apply thread after membership records changed (a conf
  // change or a published attribute applied, a snapshot installed). Set
  // before Start().
  void SetMembershipObserver(std::function<void()> observer) {
    membership_observer_ = std::move(observer);
  }
  // On the leader: its view of every peer's replication; empty elsewhere.
  std::map<uint64_t, PeerProgress> PeersProgress() const;
  // The leader's own last log index (its match), 0 off the leader.
  uint64_t LeaderLastIndex() const;
  // Hands leadership to `transferee` and waits (up to the request timeout)
  // until it has it. Only on the leader.
  Status TransferLeadership(uint64_t transferee);

  // Alarms raised and not disarmed, as applied here.
  Result<std::vector<etcdserverpb::AlarmMember>> Alarms() const;
  bool NoSpaceAlarm() const { return nospace_alarm_.load(std::memory_order_acquire); }

  // From the transport.
  // Messages from peers, handed to the driver in one go.
  void Receive(std::vector<raft::Message> messages);
  void ReportUnreachable(uint64_t peer);
  void ReportSnapshot(uint64_t peer, bool ok);
  // A snapshot image received into `path` (see Transport); steps `m` (a
  // kSnapshot whose data is set to the path) once the image is whole.
  std::string snapshot_dir() const;
  storage::FileSystem* fs() { return fs_.get(); }

  // Accessors for the api layer.
  mvcc::Store* store() { return store_.get(); }
  mvcc::WatchHub* hub() { return hub_.get(); }
  uint64_t member_id() const { return options_.member_id; }
  uint64_t cluster_id() const { return options_.cluster_id; }
  uint64_t term() const { return term_.load(std::memory_order_acquire); }
  uint64_t leader() const { return leader_.load(std::memory_order_acquire); }
  bool is_leader() const { return leader() == member_id(); }
  // Whether this member is a learner in the configuration it has applied.
  bool is_learner() const { return is_learner_.load(std::memory_order_acquire); }
  // Set once Stop() has begun.
  bool stopping() const { return stopping_flag_.load(std::memory_order_acquire); }
  NodeStats stats() const;
  const NodeOptions& options() const { return options_; }

 private:
  using SteadyClock = std::chrono::steady_clock;
  // A client request waiting for its command to be applied, or for a read
  // round. Completed exactly once, by whichever thread finishes it.
  struct Waiter {
    uint64_t request_id = 0;
    std::string data;                             // the encoded command (proposals only)
    std::optional<raft::ConfChange> conf_change;  // a membership proposal instead
    SteadyClock::time_point deadline;

    std::mutex mu;
    std::condition_variable cv;
    std::optional<Result<ApplyResult>> result;  // guarded by mu
    // Set for ProposeAsync: called (outside mu) by Complete instead of
    // waking a waiting thread.
    std::function<void(Result<ApplyResult>)> on_done;

    bool Complete(Result<ApplyResult> r);
    bool done();
    // Waits until completed or the deadline passes (then completes it with a timeout).
    Result<ApplyResult> Wait();
  };
  struct ReadBatch {
    std::vector<std::shared_ptr<Waiter>> waiters;
    SteadyClock::time_point issued;
  };
  // One unit of work for the apply thread, in log order.
  struct ApplyItem {
    std::vector<raft::Entry> entries;
    // Resulting configuration for each conf-change entry in `entries`, and
    // the conf changes the core refused (they leave the configuration as is).
    std::map<uint64_t, raft::ConfState> conf_states;
    std::set<uint64_t> refused_conf_changes;
    std::optional<raft::Snapshot> snapshot;  // data: the image file's path
  };
  // A read round whose index is known, waiting for apply.
  struct PendingRead {
    uint64_t index = 0;
    std::vector<std::shared_ptr<Waiter>> waiters;
  };

  Node(const NodeOptions& options, Clock& clock);
  Status Recover();
  Status Bootstrap();
  // A waiter for `command`, which it stamps with this member and a fresh
  // request id before serializing it.
  std::shared_ptr<Waiter> NewProposal(serverpb::Command& command);
  // Queues a proposal and waits for its result.
  Result<ApplyResult> Submit(const std::shared_ptr<Waiter>& w);
  // Registers `w` and queues it for the driver; false (and `w` completed
  // with the refusal) when the node is stopping or too many are pending.
  bool Enqueue(const std::shared_ptr<Waiter>& w);
  // Queues a read barrier's waiter for the driver; false when stopping.
  bool EnqueueRead(const std::shared_ptr<Waiter>& w);
  // Completes (with a timeout) the registered waiters and the pending reads
  // whose deadline passed.
  void ExpireWaiters();

  // node.cc: the driver.
  void DriverLoop();
  void DrainInbox();
  void ProposePending();
  void IssueReads();
  // Starts a ReadIndex round for `batch` under a fresh context.
  void StartReadRound(std::shared_ptr<ReadBatch> batch);
  void TickHousekeeping();
  void HandleReady();
  Status Persist(const raft::Ready& rd);
  // Hands `out` (emptied) to the transport.
  void SendMessages(std::vector<raft::Message>& out);
  void MaybeCompactLog();
  void OnSoftState(const raft::SoftState& ss);
  void ProposeInternal(const serverpb::Command& command);
  void FailAll(const Status& status);

  // node_apply.cc: the apply thread.
  void ApplyLoop();
  void ApplyEntries(ApplyItem& item);
  void InstallSnapshotImage(const raft::Snapshot& snap);
  ApplyResult ApplyCommand(mvcc::ApplyBatch* batch, const serverpb::Command& command);
  Status CheckLeases(const serverpb::Command& command) const;
  void TrackLeaseAttachments(const std::vector<mvcc::Event>& events, size_t from);
  Status ReloadLessor();
  void ReleaseReads(uint64_t applied);
  // node_members.cc
  // Members the resulting configuration no longer holds (in any of its
  // parts) are removed by the entry that drops them.
  ApplyResult ApplyConfChangeEntry(mvcc::ApplyBatch* batch, const raft::Entry& e,
                                   const raft::ConfState& result, bool refused, uint64_t* proposer,
                                   uint64_t* request_id);
  Status ApplyMemberAttributes(mvcc::ApplyBatch* batch, const serverpb::MemberAttributes& m);
  Status ApplyMemberPeerUrls(mvcc::ApplyBatch* batch, const serverpb::MemberPeerUrls& m);
  ApplyResult ApplyAlarm(mvcc::ApplyBatch* batch, const etcdserverpb::AlarmRequest& a);
  static Result<std::vector<etcdserverpb::AlarmMember>> AlarmsIn(
      Result<std::vector<std::pair<std::string, std::string>>> scanned);
  // Refreshes removed_ids_ from the store (after a commit, a snapshot, at start).
  Status ReloadRemoved();
  void PublishProgress();
  // Mirrors conf_state_ into is_learner_ (driver thread).
  void PublishConfState();
  Status ReloadAlarms();

  NodeOptions options_;
  Clock& clock_;
  std::unique_ptr<storage::FileSystem> fs_;
  std::unique_ptr<storage::Wal> wal_;
  // The store's engine: declared first, so it closes after the store.
  std::unique_ptr<storage::Engine> engine_;
  std::unique_ptr<mvcc::Store> store_;
  std::unique_ptr<mvcc::WatchHub> hub_;
  std::unique_ptr<lease::Lessor> lessor_;
  // Driver thread only (after Start).
  raft::MemoryStorage log_;
  std::unique_ptr<raft::Node> raft_;
  raft::ConfState conf_state_;
  uint64_t last_compact_index_ = 0;
  raft::SoftState soft_state_;
  Duration next_checkpoint_{0};
  uint64_t next_read_context_ = 1;
  std::map<uint64_t, std::shared_ptr<ReadBatch>> reads_in_flight_;
  MessageSender* sender_ = nullptr;

  // Inbox: guarded by inbox_mu_; the driver waits on inbox_cv_.
  std::mutex inbox_mu_;
  std::condition_variable inbox_cv_;
  std::vector<raft::Message> inbox_messages_;
  std::deque<std::shared_ptr<Waiter>> inbox_proposals_;
  std::vector<std::shared_ptr<Waiter>> inbox_reads_;
  std::vector<std::pair<uint64_t, bool>> inbox_snapshot_reports_;
  std::vector<uint64_t> inbox_unreachable_;
  bool stopping_ = false;

  // Proposals the core refused for want of a leader; retried every tick.
  std::deque<std::shared_ptr<Waiter>> unproposed_;

  // Requests waiting for their command to be applied, by request id.
  std::mutex waiters_mu_;
  std::map<uint64_t, std::shared_ptr<Waiter>> waiters_;  // guarded by waiters_mu_
  std::atomic<uint64_t> next_request_id_{1};

  // Apply queue: guarded by apply_mu_.
  std::mutex apply_mu_;
  std::condition_variable apply_cv_;
  std::deque<ApplyItem> apply_queue_;
  std::deque<PendingRead> pending_reads_;  // in index order
  bool apply_stopping_ = false;

  std::atomic<bool> stopping_flag_{false};
  std::atomic<bool> nospace_alarm_{false};
  std::atomic<bool> is_learner_{false};
  mutable std::mutex removed_mu_;
  std::set<uint64_t> removed_ids_;  // guarded by removed_mu_
  std::function<void()> membership_observer_;
  mutable std::mutex progress_mu_;
  std::map<uint64_t, PeerProgress> progress_;                // guarded by progress_mu_
  uint64_t leader_last_index_ = 0;                           // guarded by progress_mu_
  std::map<uint64_t, SteadyClock::time_point> last_active_;  // driver thread only
  // Leadership transfers waiting for the driver to start them.
  std::vector<uint64_t> inbox_transfers_;  // guarded by inbox_mu_
  std::atomic<uint64_t> term_{0};
  std::atomic<uint64_t> leader_{0};
  std::atomic<uint64_t> commit_index_{0};
  std::atomic<uint64_t> applied_index_{0};
  std::atomic<uint64_t> proposals_committed_{0};
  std::atomic<uint64_t> proposals_failed_{0};
  std::atomic<uint64_t> leader_changes_{0};
  std::atomic<uint64_t> snapshots_sent_{0};
  std::atomic<uint64_t> snapshots_installed_{0};

  std::thread driver_;
  std::thread applier_;
  bool started_ = false;
};

}  // namespace conclave::server
