// The Raft consensus core: one member of one Raft group, as a pure state
// machine.
//
// The Node has no threads, no clock, no disk and no network. Time enters as
// Tick(), messages from peers as Step(), requests as Propose() / ReadIndex() /
// ProposeConfChange() / TransferLeadership(). Everything the node needs done
// comes out as one Ready batch, which the caller handles in this order:
//
//   1. Persist: write ready.snapshot (if any), then ready.entries
//      (replacing any conflicting suffix), then ready.hard_state, and make
//      them durable (one sync when ready.must_sync). Make them visible
//      through the LogStorage the node was created with.
//   2. Send ready.messages. They may depend on step 1 (a vote granted, an
//      append acknowledged), so never before it.
//   3. Apply ready.committed_entries in order, calling ApplyConfChange for
//      each conf-change entry; install ready.snapshot into the state machine
//      if present. Only committed entries ever appear here.
//   4. Serve ready.read_states: a read with ReadState{index} may run once
//      the state machine has applied `index`.
//   5. Call Advance(ready). Until then GetReady must not be called again.
//
// The leader counts its own log towards a quorum only up to what step 1 has
// made durable (it learns that from Advance), so an entry is committed only
// once a majority holds it on stable storage.
//
// Reads: ReadIndex(context) yields a ReadState once leadership has been
// confirmed for it. With ReadOnlyOption::kSafe the confirmation is a round
// of heartbeats that every read pending at the time shares. With kLeaseBased
// the leader answers without a round while its lease holds: the lease lasts
// lease_ticks from the moment a quorum acknowledged a heartbeat, and is
// sound only if no member's clock runs more than (election_ticks -
// lease_ticks) / election_ticks faster than another's (docs/RAFT.md).
//
// Nodes carry a group id; every message they emit carries it, and Step
// refuses messages for another group. One process hosts many groups by
// running many Nodes.
//
// Thread-safety: none. One thread owns a Node and everything it is handed.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/random.h"
#include "base/status.h"
#include "raft/confchange.h"
#include "raft/log.h"
#include "raft/storage.h"
#include "raft/tracker.h"
#include "raft/types.h"

namespace conclave::raft {

enum class Role : uint8_t { kFollower, kPreCandidate, kCandidate, kLeader };
std::string_view RoleName(Role role);

enum class ReadOnlyOption : uint8_t { kSafe, kLeaseBased };

// Deliberate bugs for proving that the simulator's checker can fail. Only
// tests turn these on; each is named after the rule it breaks.
struct PlantedBugs {
  bool vote_without_log_check = false;            // grant votes to stale logs
  bool commit_previous_term_by_counting = false;  // Figure 8: count old-term replicas
  bool skip_log_matching_check = false;           // append without the prev-entry check
  bool read_index_without_heartbeat = false;      // answer reads unconfirmed
  bool lease_read_ignores_expiry = false;         // lease reads after the lease ran out
  bool vote_not_persisted = false;                // hard state forgets the vote

  bool Any() const {
    return vote_without_log_check || commit_previous_term_by_counting || skip_log_matching_check ||
           read_index_without_heartbeat || lease_read_ignores_expiry || vote_not_persisted;
  }
};

struct Config {
  NodeId id = kNoNode;
  GroupId group = 0;
  // A follower that hears nothing from a leader for a random number of
  // ticks in [election_ticks, 2 * election_ticks) starts an election.
  int election_ticks = 10;
  int heartbeat_ticks = 1;
  // Lease duration for kLeaseBased reads; 0 means election_ticks * 3 / 4.
  int lease_ticks = 0;
  // The last index the application has applied (on restart).
  uint64_t applied = 0;
  // Limits. Units are in the names.
  uint64_t max_message_bytes = 1 << 20;       // payload per append message
  size_t max_inflight_messages = 256;         // appends in flight per follower
  uint64_t max_inflight_bytes = 0;            // 0: unlimited
  uint64_t max_uncommitted_bytes = 64 << 20;  // leader refuses proposals beyond this
  uint64_t max_committed_bytes_per_ready = 64 << 20;
  bool pre_vote = true;
  bool check_quorum = true;
  // A node that starts refuses votes for an election timeout (it may have
  // acknowledged a leader whose lease counts on it). With this set, a node
  // that starts at term 1 votes at once: at term 1 it never acknowledged a
  // leader (leaders are elected at term 2 and later), so no lease counts on
  // it. Lets a group just made by a split elect its first leader without
  // waiting a timeout.
  bool vote_at_once_at_term_one = false;
  ReadOnlyOption read_only = ReadOnlyOption::kSafe;
  bool disable_proposal_forwarding = false;
  // Seed for the randomized election timeout.
  uint64_t random_seed = 0;
  PlantedBugs bugs;

  Status Validate() const;
};

struct SoftState {
  NodeId leader = kNoNode;
  Role role = Role::kFollower;
  bool operator==(const SoftState&) const = default;
};

struct Ready {
  std::optional<SoftState> soft_state;
  std::optional<HardState> hard_state;
  std::vector<Entry> entries;
  std::optional<Snapshot> snapshot;
  std::vector<Entry> committed_entries;
  std::vector<Message> messages;
  std::vector<ReadState> read_states;
  bool must_sync = false;
};

struct NodeStatus {
  NodeId id = kNoNode;
  uint64_t term = 0;
  NodeId vote = kNoNode;
  NodeId leader = kNoNode;
  Role role = Role::kFollower;
  uint64_t commit = 0;
  uint64_t applied = 0;
  uint64_t last_index = 0;
  ConfState conf_state;
  NodeId lead_transferee = kNoNode;
  std::map<NodeId, std::string> progress;  // leader only
};

class Node {
 public:
  // Restores from `storage` (hard state, snapshot, log) and starts as a
  // follower. `storage` must outlive the node.
  static Result<std::unique_ptr<Node>> Create(const Config& config, const LogStorage* storage);

  void Tick();
  // Starts an election now (tests and operators).
  Status Campaign();
  // Appends `data` to the log through the leader. Errors: kUnavailable when
  // there is no leader or a leadership transfer is under way,
  // kResourceExhausted over max_uncommitted_bytes.
  Status Propose(std::string data);
  // Several entries in one proposal (one message to the leader, one append
  // round to the followers): all are appended, or none.
  Status Propose(std::vector<std::string> data);
  Status ProposeConfChange(const ConfChange& cc);
  // Requests a linearizable read; `context` comes back in the ReadState.
  Status ReadIndex(std::string context);
  // Asks the leader to hand leadership to `transferee`.
  void TransferLeadership(NodeId transferee);
  // Applies a committed conf change; returns the new configuration.
  Result<ConfState> ApplyConfChange(const ConfChange& cc);
  Status Step(Message m);
  // The transport reports peers it could not reach, and the outcome of every
  // kSnapshot message it was handed: until then the leader sends that
  // follower nothing but heartbeats.
  void ReportUnreachable(NodeId id);
  void ReportSnapshot(NodeId id, bool ok);

  bool HasReady() const;
  Ready GetReady();
  void Advance(const Ready& ready);

  // Quiescence, for hosts of many mostly idle groups. CanQuiesce: this is
  // the leader, every entry of its log is committed, durable here, handed
  // out for applying and held by every follower and learner, and nothing is
  // pending (reads, a configuration change, a transfer, messages). Then
  // Quiesce sends each peer a last heartbeat marked `quiesce` (carrying the
  // commit index), after which the caller may stop ticking this node, and
  // the followers theirs, until something happens to the group. Ticks may
  // resume at any time; the core needs no word about it. Quiescing gives up
  // the leader's read lease (kLeaseBased): it is won again by heartbeats
  // after the ticks resume.
  bool CanQuiesce() const;
  void Quiesce();

  NodeStatus GetStatus() const;
  NodeId id() const { return id_; }
  uint64_t term() const { return term_; }
  Role role() const { return role_; }
  NodeId leader() const { return lead_; }
  const RaftLog& log() const { return log_; }
  const ProgressTracker& tracker() const { return tracker_; }

 private:
  struct ReadRequest {
    NodeId from;
    std::string context;
  };
  struct ReadRound {
    uint64_t id;
    uint64_t index;
    std::vector<ReadRequest> requests;
  };

  Node(const Config& config, const LogStorage* storage);
  Status Init();

  // node.cc: roles, ticks and Ready.
  void Reset(uint64_t term);
  void BecomeFollower(uint64_t term, NodeId lead);
  void BecomePreCandidate();
  void BecomeCandidate();
  void BecomeLeader();
  void TickElection();
  void TickHeartbeat();
  bool Promotable() const;
  void ResetRandomizedElectionTimeout();
  void Send(Message m);
  HardState CurrentHardState() const;
  SoftState CurrentSoftState() const { return {lead_, role_}; }
  uint64_t StableLastIndex() const { return log_.unstable().offset() - 1; }

  // node_election.cc
  Status StepTermCheck(const Message& m, bool* handled);
  void Hup(bool transfer);
  void StartCampaign(bool pre_vote, bool transfer);
  VoteResult Poll(NodeId id, bool granted);
  void HandleVoteRequest(const Message& m);
  bool HasUnappliedConfChanges() const;
  bool InLease() const;

  // node_replication.cc
  Status StepLeader(Message& m);
  Status StepCandidate(Message& m);
  Status StepFollower(Message& m);
  Status HandlePropose(Message& m);
  bool AppendEntries(std::vector<Entry>* entries);
  bool MaybeSendAppend(NodeId to, bool send_if_empty);
  void SendAppend(NodeId to) { MaybeSendAppend(to, true); }
  void BroadcastAppend();
  void SendHeartbeat(NodeId to, const std::string& context);
  void BroadcastHeartbeat(const std::string& context);
  bool MaybeCommit();
  void HandleAppendResponse(const Message& m, Progress* pr);
  void HandleHeartbeatResponse(const Message& m, Progress* pr);
  void HandleAppend(const Message& m);
  void HandleHeartbeat(const Message& m);
  void HandleSnapshot(const Message& m);
  bool Restore(const Snapshot& s);
  bool CommittedEntryInCurrentTerm() const;

  // node_read.cc
  void HandleReadRequest(NodeId from, std::string context);
  void RespondToRead(const ReadRequest& r, uint64_t index);
  bool CanStartReadRound() const;
  void StartReadRound();
  void AdvanceReadRounds();
  bool LeaseValid() const;
  void ClearReads();

  // node_membership.cc
  Status CheckConfChangeProposal(const Entry& e) const;
  // The configuration `cc` would produce from the current one, or why not.
  Result<ChangeResult> PlanConfChange(const ConfChange& cc) const;
  void SwitchToConfig(const ChangeResult& r);
  void HandleTransferLeader(const Message& m);
  void SendTimeoutNow(NodeId to);
  void AbortLeaderTransfer() { lead_transferee_ = kNoNode; }
  void MaybeAutoLeaveJoint();

  Config config_;
  NodeId id_;
  GroupId group_;
  uint64_t term_ = 0;
  NodeId vote_ = kNoNode;
  NodeId lead_ = kNoNode;
  Role role_ = Role::kFollower;
  bool is_learner_ = false;
  RaftLog log_;
  ProgressTracker tracker_;
  SeededRandom random_;

  int election_elapsed_ = 0;
  int heartbeat_elapsed_ = 0;
  int randomized_election_timeout_ = 0;
  // Ticks since a leader last proved itself alive to this node (or since
  // start). While below election_ticks the node refuses votes (leader
  // stickiness, and what makes leases sound).
  int ticks_since_leader_contact_ = 0;
  // Local monotonic tick counter (lease bookkeeping).
  uint64_t tick_count_ = 1;
  // tick_count_ when the node last quiesced (0: never): acknowledgements of
  // heartbeats sent up to then grant no read lease.
  uint64_t quiesced_at_tick_ = 0;

  NodeId lead_transferee_ = kNoNode;
  uint64_t pending_conf_index_ = 0;
  uint64_t uncommitted_bytes_ = 0;
  bool lease_revoked_in_term_ = false;

  std::vector<Message> msgs_;
  std::vector<ReadState> read_states_;
  std::vector<ReadRequest> pending_reads_;
  std::deque<ReadRound> read_rounds_;
  std::map<NodeId, uint64_t> read_acks_;   // highest round acknowledged
  std::map<NodeId, uint64_t> lease_acks_;  // tick of the latest acknowledged heartbeat
  uint64_t next_read_round_ = 0;

  HardState prev_hard_state_;
  HardState ready_hard_state_;  // the hard state handed out in the pending Ready
  SoftState prev_soft_state_;
  bool awaiting_advance_ = false;
};

}  // namespace conclave::raft
