// Host: one Conclave node, hosting any number of Raft groups (Replicas)
// over one write-ahead log and one storage engine.
//
// It owns what the groups share:
//   - the write-ahead log (storage::Wal), written by one log-writer thread
//     that appends whatever every group has queued and syncs once for all of
//     them (group commit across groups). When the driver has nothing else to
//     do until the write is durable, and syncs are fast (under a quarter of
//     a tick), it writes the queued Readies itself instead of handing them
//     over: the same one sync, without two thread hand-offs (on a small
//     machine they cost more than the sync). Either way one write at a
//     time, so each replica's Readies stay in order;
//   - the storage engine (storage::Engine, RocksDB in <data-dir>/db) that
//     every state machine keeps its state in, under keys of its own;
//   - the driver thread, which runs every replica's Raft core: it steps the
//     messages the transport delivers, ticks, proposes, takes each core's
//     Ready, hands what must be persisted to the log writer, and finishes
//     the Ready once it is durable;
//   - the apply thread, which applies committed entries of every group in
//     order and completes the requests waiting for them;
//   - the router from group id to replica, for the transport and the front
//     ends, and node liveness: which peer nodes were heard from lately.
//
// Time comes from the injected Clock, files from the injected FileSystem,
// the engine may be injected, and the network is the MessageSender the
// host is started with; so the simulator runs hosts in one thread of its
// own by building them with `manual` set and calling RunDriver,
// RunLogWrite, RunLogSync and RunApply itself.
//
// Boot epoch: every Open increments a counter kept (synced) in the engine;
// replicas stamp their proposals with it (proposal.h).
//
// Thread-safety: public methods are thread-safe unless noted. Lock order:
// replicas_mu_, then inbox_mu_; a replica's own locks are never held while
// taking the host's.
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
#include <shared_mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "base/clock.h"
#include "base/status.h"
#include "raft/raft.h"
#include "server/replica.h"
#include "storage/storage.h"

namespace conclave::server {

// The network as the host sees it (Transport implements it; the simulator
// has its own). Node ids name hosts; messages name replicas.
class MessageSender {
 public:
  virtual ~MessageSender() = default;
  // Queues messages for node `to`; never blocks on the network.
  virtual void Send(uint64_t to, std::vector<raft::Message> messages) = 0;
  // Streams replica m.group's state machine image to node `to`; reports the
  // outcome through Host::ReportSnapshot.
  virtual void SendSnapshot(uint64_t to, raft::Message m) = 0;
  // Tells node `to` that this node is alive (an empty batch): what keeps
  // quiesced followers of this node's leaders asleep.
  virtual void Ping(uint64_t to) = 0;
};

// Test-only planted bugs in the node (not in the Raft core), each breaking one
// rule this layer keeps; the simulator must catch every one of them.
struct NodeBugs {
  // The boot epoch never changes, so request ids repeat after a restart and
  // an entry of the previous incarnation completes a request of this one.
  bool reuse_request_ids = false;
  // Followers send their messages (append acknowledgements, votes) before
  // the Ready that they promise is durable.
  bool send_before_persist = false;
  // The log forgets applied entries without the state machine synced first.
  bool compact_without_sync = false;
  // The state machine writes the applied index in a batch of its own, after
  // the batch it applied.
  bool applied_index_apart = false;
};

struct HostOptions {
  std::string data_dir;
  uint64_t node_id = 0;
  std::chrono::milliseconds tick_interval{100};
  // A peer node not heard from for this many ticks is taken for dead: the
  // quiesced followers of its leaders wake up and may elect another.
  int liveness_ticks = 10;
  // Past this many WAL segments, the groups that keep the oldest one alive
  // are made to compact their logs, so that idle groups do not pin old
  // segments (and their disk) forever.
  size_t wal_segments_max = 8;
  // No threads: the owner calls RunDriver, RunLogWrite, RunLogSync and
  // RunApply (the simulator).
  bool manual = false;
  storage::WalOptions wal;
  storage::RocksEngineOptions engine;
  NodeBugs bugs;
  // Test-only: sees every entry a replica applies, with its result, on the
  // apply thread right after the state machine applied it.
  std::function<void(raft::GroupId, const CommittedEntry&, const std::any&)> apply_observer;
};

// What a host in manual mode has left to do.
struct HostWork {
  bool driver = false;     // inbox or finished log writes waiting
  bool log_write = false;  // Readies queued for the log writer
  bool log_sync = false;   // written, not yet synced
  bool apply = false;      // committed entries queued
};

// What the host uses instead of the real world, when given (the simulator).
struct HostEnv {
  Clock* clock = nullptr;             // required
  storage::FileSystem* fs = nullptr;  // null: the operating system's
  storage::Engine* engine = nullptr;  // null: RocksDB in <data_dir>/db
};

struct HostStats {
  uint64_t wal_appends = 0;
  uint64_t wal_syncs = 0;
  uint64_t wal_bytes = 0;
  uint64_t wal_segments = 0;
  uint64_t wal_segments_removed = 0;
  // Log writes and the groups they carried (each write syncs once).
  uint64_t log_writes = 0;
  uint64_t log_write_groups = 0;  // summed over writes: groups per sync = this / log_writes
  uint64_t log_write_groups_max = 0;
  uint64_t replicas = 0;
  uint64_t replicas_quiesced = 0;
  uint64_t ticks = 0;
};

class Host {
 public:
  // Opens (or creates) the data directory: the log, the engine, the epoch.
  static Result<std::unique_ptr<Host>> Open(const HostOptions& options, const HostEnv& env);
  ~Host();
  Host(const Host&) = delete;
  Host& operator=(const Host&) = delete;

  // Adds a replica and recovers it from its state machine and the log (or
  // bootstraps it, see ReplicaOptions). Before or after Start.
  Result<std::shared_ptr<Replica>> AddReplica(const ReplicaOptions& options,
                                              std::unique_ptr<StateMachine> sm);
  // Takes `group`'s replica off the host (its node's copy of the group was
  // removed): the driver drops it, fails what waits on it, and releases its
  // log in the WAL. Its state machine's data is the caller's to delete.
  void RemoveReplica(raft::GroupId group);
  // Runs `task` on the apply thread, after what is queued there now (so
  // never while a replica applies). Dropped when the host stops first.
  void RunOnApplyThread(std::function<void()> task);
  // Forgets what the WAL replayed of `group` at open: it belonged to a
  // replica removed from this node, and a new one starts afresh. What the
  // WAL holds of it is released, so that it pins no segment.
  Status DiscardReplay(raft::GroupId group);
  // The groups the WAL replayed that have no replica here (yet).
  std::vector<raft::GroupId> ReplayedGroups() const;
  std::shared_ptr<Replica> FindReplica(raft::GroupId group) const;
  std::vector<std::shared_ptr<Replica>> Replicas() const;

  // Makes a replica when a leader's message (an append, a heartbeat, a
  // snapshot) comes for a group the host has none of: `group`'s replica
  // `replica_id`, for the leader `from_replica` on node `from_node`. The
  // new replica is empty and the leader sends it a snapshot. Returns null
  // to refuse (the message is dropped). Called on the driver thread and the
  // transport's threads; set before Start.
  using ReplicaMaker = std::function<std::shared_ptr<Replica>(
      raft::GroupId group, raft::NodeId replica_id, raft::NodeId from_replica, uint64_t from_node)>;
  void SetReplicaMaker(ReplicaMaker maker) { replica_maker_ = std::move(maker); }

  // Starts the threads (unless manual). `sender` must outlive Stop().
  void Start(MessageSender* sender);
  // Stops the threads; pending requests fail with kUnavailable. Idempotent.
  void Stop();

  // From the transport: messages from node `from`, handed to the driver in
  // one go (an empty batch is a ping).
  void Receive(uint64_t from, std::vector<raft::Message> messages);
  void ReportUnreachable(uint64_t node);
  void ReportSnapshot(raft::GroupId group, raft::NodeId to, bool ok);
  // A snapshot image for one of this host's replicas, from node `from`: `m`
  // is the kSnapshot message that carries its metadata; `next` yields the
  // image's chunks until it returns false. The image is staged, checked and
  // made durable (mvcc::SnapshotReceiver), then `m` goes to the replica with
  // the image's path as its data.
  Status ReceiveSnapshot(uint64_t from, raft::Message m,
                         const std::function<Result<bool>(std::string*)>& next);

  // Manual mode (the simulator), each returns whether it did anything.
  bool RunDriver();
  // Writes what the driver queued for the log, without syncing.
  bool RunLogWrite();
  // Syncs what RunLogWrite wrote and hands the Readies back to the driver.
  bool RunLogSync();
  bool RunApply();
  // When the driver next needs to run for a tick (the clock's monotonic time).
  Duration NextTick() const;
  HostWork PendingWork();

  uint64_t node_id() const { return options_.node_id; }
  uint64_t epoch() const { return epoch_; }
  Clock& clock() const { return clock_; }
  storage::FileSystem* fs() const { return fs_; }
  storage::Engine* engine() const { return engine_; }
  const std::string& snapshot_dir() const { return snapshot_dir_; }
  // Where a received snapshot image of `group` at (index, term) is kept.
  std::string SnapshotPath(raft::GroupId group, uint64_t index, uint64_t term) const;
  const HostOptions& options() const { return options_; }
  HostStats stats() const;
  bool stopping() const { return stopping_.load(std::memory_order_acquire); }

 private:
  friend class Replica;

  // Work for the driver, from any thread.
  struct Inbox {
    std::vector<std::pair<uint64_t, std::vector<raft::Message>>> messages;  // by sender node
    std::vector<std::pair<raft::GroupId, std::shared_ptr<Replica::Waiter>>> proposals;
    std::vector<std::pair<raft::GroupId, std::shared_ptr<Replica::Waiter>>> reads;
    struct SnapshotReport {
      raft::GroupId group;
      raft::NodeId to;
      bool ok;
    };
    std::vector<SnapshotReport> snapshot_reports;
    std::vector<uint64_t> unreachable;
    std::vector<std::pair<raft::GroupId, raft::NodeId>> transfers;
    std::vector<std::shared_ptr<Replica>> added;
    std::vector<raft::GroupId> removed;
    bool empty() const {
      return messages.empty() && proposals.empty() && reads.empty() && snapshot_reports.empty() &&
             unreachable.empty() && transfers.empty() && added.empty() && removed.empty();
    }
    // Empties every list, keeping their capacity.
    void Clear() {
      messages.clear();
      proposals.clear();
      reads.clear();
      snapshot_reports.clear();
      unreachable.clear();
      transfers.clear();
      added.clear();
      removed.clear();
    }
  };
  // One log write: the records of several replicas' Readies, one sync.
  struct LogJob {
    storage::WalBatch batch;
    std::vector<std::shared_ptr<Replica>> replicas;  // whose Readies it persists
  };
  struct ApplyJob {
    std::shared_ptr<Replica> replica;
    Replica::ApplyItem item;
    std::function<void()> task;  // instead of an item: RunOnApplyThread's
  };

  Host(const HostOptions& options, const HostEnv& env);
  Status OpenStorage();
  Status BumpEpoch();

  // Called by replicas (any thread).
  void PostProposal(raft::GroupId group, std::shared_ptr<Replica::Waiter> w);
  void PostRead(raft::GroupId group, std::shared_ptr<Replica::Waiter> w);
  void PostTransfer(raft::GroupId group, raft::NodeId transferee);
  // Called by replicas (driver thread).
  void QueueApply(std::shared_ptr<Replica> replica, Replica::ApplyItem item);
  void SendTo(Replica& replica, std::vector<raft::Message> messages);
  // A replica starts or stops ticking (quiescence).
  void Activate(Replica& replica);
  void Deactivate(Replica& replica);
  storage::Wal* wal() const { return wal_.get(); }
  size_t replicas_size() const;

  // ---- the driver ----
  void DriverLoop();
  // One round: the inbox, ticks, Readies; returns whether it did anything.
  bool DriverRound();
  void Dispatch(Inbox& inbox);
  // Calls visit(replica, first, last) for each run of `items` ((group,
  // waiter) pairs sorted by group) whose group has a replica here, and
  // fails the waiters of the others.
  template <typename Items, typename Visit>
  void ForEachGroupRun(Items& items, const Visit& visit);
  void TickAll();
  void CheckLiveness();
  // Past wal_segments_max: the groups pinning the oldest segment compact.
  void ReleaseOldSegments();
  // Finishes the Readies the log writer made durable.
  bool FinishPersisted();
  // Takes the Readies of dirty replicas and queues one log job.
  bool CollectReadies();
  void MarkDirty(const std::shared_ptr<Replica>& replica);

  // At the end of a driver round with log jobs queued: when nothing else
  // waits for the driver, it writes and syncs them itself (no hand-off);
  // otherwise the log writer thread does, while the driver goes on.
  void WriteOrHandOff();

  // ---- the log writer ----
  void LogWriterLoop();
  // After a write (by either thread): hands its jobs back to the driver,
  // then lets the next write start.
  void FinishWrite(std::vector<LogJob>& jobs);
  // Takes every queued job; merges them into one write.
  bool TakeLogJobs(std::vector<LogJob>* jobs);
  Status WriteJobs(std::vector<LogJob>& jobs, bool sync);
  void CompleteJobs(std::vector<LogJob>& jobs);

  // ---- the apply thread ----
  void ApplyLoop();
  bool ApplyOne();

  const HostOptions options_;
  Clock& clock_;
  std::unique_ptr<storage::FileSystem> owned_fs_;
  storage::FileSystem* fs_ = nullptr;
  std::unique_ptr<storage::Engine> owned_engine_;
  storage::Engine* engine_ = nullptr;
  std::unique_ptr<storage::Wal> wal_;
  std::map<raft::GroupId, storage::WalGroupState> replayed_;  // until each group is added
  std::string snapshot_dir_;
  uint64_t epoch_ = 0;
  MessageSender* sender_ = nullptr;
  ReplicaMaker replica_maker_;

  mutable std::shared_mutex replicas_mu_;
  // A hash map: every message and every apply looks its group up here, and
  // an ordered map of thousands of groups cost several percent of a
  // member's CPU (docs/PERFORMANCE.md).
  std::unordered_map<raft::GroupId, std::shared_ptr<Replica>> replicas_;  // guarded by replicas_mu_

  std::mutex inbox_mu_;
  std::condition_variable inbox_cv_;  // the driver waits here
  Inbox inbox_;                       // guarded by inbox_mu_
  Inbox spare_inbox_;                 // driver thread only: the last inbox taken, emptied
  std::deque<LogJob> persisted_;      // guarded by inbox_mu_: durable, to finish

  // Driver thread only.
  std::map<raft::GroupId, std::shared_ptr<Replica>> active_;  // ticking (not quiesced)
  std::vector<std::shared_ptr<Replica>> dirty_;
  std::set<raft::GroupId> dirty_set_;
  Duration next_tick_{0};
  Duration started_at_{0};
  std::map<uint64_t, Duration> last_heard_;  // peer node -> when
  std::set<uint64_t> dead_nodes_;
  // CheckLiveness's pass over the replicas, made every few ticks: the
  // nodes of quiesced leaders' followers (pinged every tick), and the nodes
  // leading quiesced followers here (checked every tick).
  uint64_t liveness_scan_tick_ = 0;
  std::set<uint64_t> ping_nodes_;
  std::set<uint64_t> followed_nodes_;

  std::mutex log_mu_;
  std::condition_variable log_cv_;
  std::deque<LogJob> log_queue_;  // guarded by log_mu_
  // A write is in progress (by the log writer or the driver): one at a time,
  // so that jobs of one replica complete in order. Guarded by log_mu_.
  bool log_writing_ = false;
  // How long the last synced write took: the driver writes inline only
  // while syncs take under a quarter of a tick.
  std::atomic<int64_t> last_sync_us_{0};
  std::vector<LogJob> log_written_;  // manual mode: written, not yet synced

  std::mutex apply_mu_;
  std::condition_variable apply_cv_;
  std::deque<ApplyJob> apply_queue_;  // guarded by apply_mu_

  std::atomic<bool> stopping_{false};
  bool started_ = false;
  std::atomic<uint64_t> log_writes_{0};
  std::atomic<uint64_t> log_write_groups_{0};
  std::atomic<uint64_t> log_write_groups_max_{0};
  std::atomic<uint64_t> ticks_{0};
  std::thread driver_;
  std::thread log_writer_;
  std::thread applier_;
};

}  // namespace conclave::server
