// Replica: this node's member of one Raft group, running on a Host.
//
// It owns the group's Raft core (raft::Node), the core's view of the log
// (raft::MemoryStorage: a snapshot point plus the entries after it, rebuilt
// from the write-ahead log at start), the requests waiting for their
// entries to be applied or for a read round, and the group's StateMachine.
// The Host (host.h) runs it: its driver thread owns the core, its log
// writer makes the core's entries durable, its apply thread applies
// committed entries. A replica never starts a thread of its own.
//
// Order of effects, per Ready (the core's batch of work):
//   - a leader sends its messages at once and writes meanwhile: the core
//     counts the leader's own copy of new entries only once Advance reports
//     them durable, so sending first is safe (and lets followers write in
//     parallel); any other replica sends only after the Ready is durable,
//     because its messages (votes, append acknowledgements) promise that;
//   - committed entries go to the apply thread only after the Ready is
//     durable, then Advance;
//   - a client is answered only after its entry has been applied here; a
//     linearizable read runs only after this replica has applied the index
//     its read round confirmed.
//
// Proposals carry (this replica, the host's boot epoch, a request id)
// (proposal.h), so a result goes to the request that proposed the entry
// and to nothing else, even across restarts.
//
// Quiescence: a group with `quiesce` set stops ticking once it is idle (the
// leader has every entry acknowledged and applied, nothing pending): the
// leader sends one last heartbeat marked `quiesce`, and a follower whose log
// is complete stops too. Anything for the group (a message, a proposal, a
// read) wakes it; the host wakes followers whose leader's node goes silent,
// so a failed leader is still replaced.
//
// Thread-safety: the public methods are thread-safe. The private ones say
// which of the host's threads calls them.
#pragma once

#include <any>
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
#include <vector>

#include "base/clock.h"
#include "base/status.h"
#include "raft/raft.h"
#include "server/proposal.h"
#include "server/state_machine.h"

namespace conclave::storage {
class WalBatch;
struct WalGroupState;
}  // namespace conclave::storage

namespace conclave::server {

class Host;

struct ReplicaOptions {
  raft::GroupId group = 0;
  raft::NodeId replica_id = 0;
  // The node each replica of the group lives on (0: nowhere known). Unset:
  // replica ids are node ids (the etcd group, whose replicas are its
  // members). Called from any thread.
  std::function<uint64_t(raft::NodeId)> node_of;
  // A new group's voters; ignored when the group already has state here.
  // Neither: the replica waits for the leader to send it a snapshot.
  std::vector<raft::NodeId> bootstrap_voters;

  int election_ticks = 10;
  int heartbeat_ticks = 1;
  // Compact the log (and release WAL segments) after this many applied
  // entries, or once the entries appended since the last compaction hold
  // this many bytes (what bounds a group's memory: the log view keeps them).
  uint64_t snapshot_count = 100'000;
  uint64_t log_bytes_max = 256ull << 20;
  // Entries kept behind a compaction for slightly lagging followers.
  uint64_t snapshot_catchup_entries = 5'000;
  // A request not applied by then fails with "etcdserver: request timed out".
  Duration request_timeout = std::chrono::seconds(7);
  // Bounds on queued work; beyond them requests fail fast.
  size_t proposals_pending_max = 10'000;
  size_t apply_batch_entries_max = 256;
  // Stop ticking while idle (see the file comment).
  bool quiesce = false;
  // Elect the first leader of a new group quickly: replicas at term 1 vote
  // at once (raft::Config::vote_at_once_at_term_one), and with
  // campaign_at_start this one starts an election two heartbeats after the
  // driver takes it on, rather than after an election timeout. For a range
  // just split off, on the node of its left half's leader: writes to it
  // wait for its first leader, and the two heartbeats let the other nodes
  // apply the split and make the replicas that vote.
  bool vote_at_once_at_term_one = false;
  bool campaign_at_start = false;
  // The Raft core's read mode and limits (raft::Config); the defaults suit
  // the server, the simulator shrinks them.
  raft::ReadOnlyOption read_only = raft::ReadOnlyOption::kSafe;
  uint64_t max_message_bytes = 1 << 20;
  size_t max_inflight_messages = 256;
  uint64_t max_uncommitted_bytes = 64 << 20;
  // Test-only planted bugs in the Raft core (the simulator's checker's own
  // tests).
  raft::PlantedBugs raft_bugs;
  // Test-only planted bug: ReadBarrier returns at once, so every replica
  // answers "linearizable" reads from whatever it has applied. The fault
  // harness (tests/faults) must report it.
  bool test_bug_local_reads = false;
};

// What the leader knows of a peer's replication (for membership checks).
struct PeerProgress {
  uint64_t match = 0;
  bool recent_active = false;
  bool is_learner = false;
};

struct ReplicaStats {
  uint64_t term = 0;
  uint64_t leader = 0;
  uint64_t commit_index = 0;
  uint64_t applied_index = 0;
  uint64_t proposals_committed = 0;
  uint64_t proposals_failed = 0;
  uint64_t leader_changes = 0;
  uint64_t snapshots_sent = 0;
  uint64_t snapshots_installed = 0;
  bool quiesced = false;
};

// "etcdserver: request timed out", etcd's answer to a request that was not
// applied in time.
Status RequestTimedOut();
// "etcdserver: server stopped".
Status Stopped();

class Replica : public std::enable_shared_from_this<Replica> {
 public:
  using Callback = std::function<void(Result<std::any>)>;

  ~Replica();
  Replica(const Replica&) = delete;
  Replica& operator=(const Replica&) = delete;

  raft::GroupId group() const { return options_.group; }
  raft::NodeId replica_id() const { return options_.replica_id; }
  StateMachine* state_machine() const { return sm_.get(); }
  const ReplicaOptions& options() const { return options_; }

  // Proposes `command` and waits until this replica has applied it; the
  // result is what the state machine returned for it. kDeadlineExceeded
  // ("request timed out") after request_timeout.
  Result<std::any> Propose(std::string command);
  // The same without blocking: `done` runs exactly once, on the apply
  // thread when applied, on the driver thread when it times out or is
  // refused there, or right here when refused at once. It must not block.
  void ProposeAsync(std::string command, Callback done);
  // A configuration change whose context carries `context` (the state
  // machine sees it as the entry's command), joint consensus as `cc` says.
  // Waits until it is applied here.
  Result<std::any> ProposeConfChange(raft::ConfChange cc, std::string context);
  void ProposeConfChangeAsync(raft::ConfChange cc, std::string context, Callback done);

  // Returns once this replica has applied every entry committed before the
  // call (a ReadIndex round, shared with the reads that arrive meanwhile).
  Status ReadBarrier();
  // The same without blocking; `done` runs exactly once, on the driver or
  // apply thread (or right here when stopping). It must not block.
  void ReadBarrierAsync(std::function<void(Status)> done);
  // Returns once this replica has applied every entry it knew committed at
  // the call, without a round trip (on the leader: everything acknowledged
  // anywhere, except just after an election). Up to the request timeout.
  Status AwaitApplied();

  // Hands leadership to `transferee` and waits (up to the request timeout)
  // until it has it. Only on the leader.
  Status TransferLeadership(raft::NodeId transferee);
  // Asks for the transfer without waiting.
  void StartTransferLeadership(raft::NodeId transferee);
  // Makes this replica the group's leader (the request goes to the leader,
  // which hands over) and waits until it is, up to the request timeout.
  Status TakeLeadership();
  // On the leader: waits until `peer` holds the log up to `index`, or
  // `timeout` passes (kDeadlineExceeded), or this replica stops leading.
  Status AwaitPeerMatch(raft::NodeId peer, uint64_t index, Duration timeout);
  // Waits until the configuration applied here satisfies `pred`, or the
  // request timeout passes (kDeadlineExceeded), or the replica stops.
  Status AwaitConfState(const std::function<bool(const raft::ConfState&)>& pred);

  uint64_t term() const { return term_.load(std::memory_order_acquire); }
  raft::NodeId leader() const { return leader_.load(std::memory_order_acquire); }
  bool is_leader() const { return leader() == replica_id(); }
  // Whether this replica is a learner in the configuration it has applied.
  bool is_learner() const { return is_learner_.load(std::memory_order_acquire); }
  bool stopping() const { return stopping_.load(std::memory_order_acquire); }
  uint64_t applied_index() const { return applied_index_.load(std::memory_order_acquire); }
  raft::ConfState applied_conf_state() const;
  ReplicaStats stats() const;
  // On the leader: its view of every peer's replication; empty elsewhere.
  std::map<raft::NodeId, PeerProgress> PeersProgress() const;
  // The leader's own last log index (its match), 0 off the leader.
  uint64_t LeaderLastIndex() const;
  // The node a replica of this group lives on.
  uint64_t NodeOf(raft::NodeId replica) const;

  // The Raft core, for inspection by the simulator and tests that drive the
  // host by hand (manual mode, one thread). Never from a running host.
  const raft::Node& raft_for_testing() const { return *raft_; }

 private:
  friend class Host;

  using SteadyTime = Duration;  // the host clock's monotonic time

  // A request waiting for its entry to be applied, or for a read round.
  // Completed exactly once, by whichever thread finishes it.
  struct Waiter {
    ProposalId id;
    std::string data;                             // the encoded entry (proposals only)
    std::optional<raft::ConfChange> conf_change;  // a conf change instead
    SteadyTime deadline{0};

    std::mutex mu;
    std::condition_variable cv;
    std::optional<Result<std::any>> result;  // guarded by mu
    // Set for the asynchronous forms: called (outside mu) by Complete
    // instead of waking a waiting thread.
    Callback on_done;

    bool Complete(Result<std::any> r);
    bool done();
  };
  struct ReadBatch {
    std::vector<std::shared_ptr<Waiter>> waiters;
    SteadyTime issued{0};
  };
  // A read round whose index is known, waiting for apply.
  struct PendingRead {
    uint64_t index = 0;
    std::vector<std::shared_ptr<Waiter>> waiters;
  };

 public:
  // What the driver hands the apply thread, in log order (host internal).
  struct ApplyItem {
    std::vector<raft::Entry> entries;
    // The configuration each conf-change entry left, and those refused.
    std::map<uint64_t, raft::ConfState> conf_states;
    std::set<uint64_t> refused_conf_changes;
    std::optional<raft::Snapshot> snapshot;  // data: the image file's path
  };

 private:
  Replica(Host* host, const ReplicaOptions& options, std::unique_ptr<StateMachine> sm);

  // ---- any thread (replica.cc) ----
  std::shared_ptr<Waiter> NewProposal(std::string command);
  std::shared_ptr<Waiter> NewConfChange(raft::ConfChange cc, std::string context);
  // Wraps `done` so the waiter unregisters itself and counts failures.
  void SetCallback(const std::shared_ptr<Waiter>& w, Callback done);
  // Registers `w` and queues it for the driver; false (and `w` completed
  // with the refusal) when stopping or too many are pending.
  bool Enqueue(const std::shared_ptr<Waiter>& w);
  bool EnqueueRead(const std::shared_ptr<Waiter>& w);
  // Asks for the leadership to go to replica `to` until it has (true), a
  // third replica leads, the request timeout passes or the replica stops.
  bool AwaitLeadershipMove(raft::NodeId to);
  Result<std::any> Wait(const std::shared_ptr<Waiter>& w);
  void Unregister(const ProposalId& id);
  // Wakes the threads blocked in TransferLeadership / AwaitConfState.
  void NotifyStateChange();

  // ---- before Start, or on the driver thread when added later ----
  // Recovers from the state machine and the group's replayed log (or
  // bootstraps a new group, durably); `replay` is the WAL's view of the
  // group (null when the WAL holds nothing of it).
  Status Recover(const storage::WalGroupState* replay);

  // ---- driver thread (replica_driver.cc) ----
  void Step(raft::Message m);
  void TickNow();
  // Tick-time housekeeping: expire waiters, retry proposals and reads,
  // publish progress, the state machine's leader work, log compaction.
  // (MaybeQuiesce runs before the tick.)
  void Housekeeping();
  // Takes the waiters of (group, waiter) pairs [first, last).
  template <typename It>
  void AddProposals(It first, It last) {
    Wake();
    for (It it = first; it != last; ++it) {
      queued_proposals_.fetch_sub(1, std::memory_order_relaxed);
      unproposed_.push_back(std::move(it->second));
    }
  }
  void AddReads(std::vector<std::shared_ptr<Waiter>> reads);
  void ProposePending();
  void StartReadRound(std::shared_ptr<ReadBatch> batch);
  void IssueReads();
  void ExpireWaiters();
  void ReportUnreachable(raft::NodeId peer);
  // This group's replicas (other than this one) on `node`, and the nodes
  // of all of them, as of the configuration the core has.
  std::vector<raft::NodeId> PeersOn(uint64_t node) const;
  std::set<uint64_t> PeerNodes() const;
  void ReportSnapshot(raft::NodeId peer, bool ok);
  void StartTransfer(raft::NodeId transferee);
  // Driver thread: a new replica with campaign_at_start counts down to its
  // election.
  void CampaignIfAsked();
  // Whether the core has a Ready to take (and none is in flight).
  bool ReadyPending() const;
  // Takes the core's Ready: records what must be persisted in `wal`, sends
  // a leader's messages; returns whether `wal` must be synced before
  // FinishReady (false: FinishReady may run at once).
  bool BeginReady(storage::WalBatch* wal);
  // The Ready is durable: update the log view, send, hand committed entries
  // and read states on, Advance.
  void FinishReady();
  void OnSoftState(const raft::SoftState& ss);
  void SendMessages(std::vector<raft::Message>& out);
  // Compacts once snapshot_count entries were applied or log_bytes_max
  // appended since the last time; `force`: whenever anything was applied
  // since (the host asks when this group keeps old WAL segments alive).
  void MaybeCompactLog(bool force = false);
  void PublishProgress();
  void PublishConfState();
  // Quiescence (driver thread).
  bool quiesced() const { return quiesced_; }
  // Retired (driver thread): taken off the host; it takes no more Readies.
  bool retired() const { return retired_; }
  // Nothing pending: no proposal, read, Ready or unapplied entry.
  bool Idle();
  // No request of this replica's own waits (proposal or read).
  bool NothingPending();
  void Wake();
  void MaybeQuiesce();
  // After stepping a heartbeat marked quiesce from `from`.
  void OnQuiesceHeartbeat(raft::NodeId from);
  // Stop: fail every waiter and read with `status`.
  void FailAll(const Status& status);
  // The host dropped this replica (its node's copy of the group was
  // removed): fail what waits, and release the group's log in the WAL so
  // that it pins no segment.
  void Retire();

  // ---- apply thread (replica_apply.cc) ----
  void Apply(ApplyItem& item);
  void InstallSnapshotImage(const raft::Snapshot& snap);
  void ApplyEntries(ApplyItem& item);
  void ReleaseReads(uint64_t applied);
  void QueuePendingReads(std::vector<PendingRead> reads);

  Host* const host_;
  const ReplicaOptions options_;
  std::unique_ptr<StateMachine> sm_;
  std::string snapshot_dir_;

  // Driver thread only (after Recover).
  raft::MemoryStorage log_;
  std::unique_ptr<raft::Node> raft_;
  raft::ConfState conf_state_;
  uint64_t last_compact_index_ = 0;
  int campaign_in_ticks_ = 0;  // campaign_at_start: ticks until the election
  uint64_t log_bytes_ = 0;     // entry bytes appended since the last compaction
  raft::SoftState soft_state_;
  uint64_t next_read_context_ = 1;
  std::map<uint64_t, std::shared_ptr<ReadBatch>> reads_in_flight_;
  std::deque<std::shared_ptr<Waiter>> unproposed_;
  std::vector<std::shared_ptr<Waiter>> reads_to_issue_;
  std::optional<raft::Ready> ready_;  // taken from the core, not yet advanced
  std::map<raft::NodeId, SteadyTime> last_active_;
  bool quiesced_ = false;
  bool retired_ = false;

  // Requests waiting for their entry to be applied.
  std::mutex waiters_mu_;
  std::map<ProposalId, std::shared_ptr<Waiter>> waiters_;  // guarded by waiters_mu_
  std::atomic<uint64_t> next_request_id_{1};
  std::atomic<size_t> queued_proposals_{0};

  // Reads whose index is known, in index order: guarded by reads_mu_.
  std::mutex reads_mu_;
  std::deque<PendingRead> pending_reads_;

  // Published for other threads.
  std::atomic<bool> stopping_{false};
  std::atomic<bool> is_learner_{false};
  std::atomic<uint64_t> term_{0};
  std::atomic<uint64_t> leader_{0};
  std::atomic<uint64_t> commit_index_{0};
  std::atomic<uint64_t> applied_index_{0};
  std::atomic<uint64_t> proposals_committed_{0};
  std::atomic<uint64_t> proposals_failed_{0};
  std::atomic<uint64_t> leader_changes_{0};
  std::atomic<uint64_t> snapshots_sent_{0};
  std::atomic<uint64_t> snapshots_installed_{0};
  std::atomic<bool> quiesced_flag_{false};
  mutable std::mutex progress_mu_;
  std::map<raft::NodeId, PeerProgress> progress_;  // guarded by progress_mu_
  uint64_t leader_last_index_ = 0;                 // guarded by progress_mu_
  raft::ConfState applied_conf_state_;             // guarded by progress_mu_

  // TransferLeadership and AwaitConfState wait here; the driver (leader
  // changes) and the apply thread (configuration changes) notify.
  std::mutex state_mu_;
  std::condition_variable state_cv_;
  // Threads in AwaitPeerMatch: the driver notifies after publishing progress.
  std::atomic<int> progress_waiters_{0};
  // Threads in AwaitApplied; the apply thread wakes them only when there are.
  std::atomic<int> apply_waiters_{0};
};

}  // namespace conclave::server
