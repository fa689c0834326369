// The values the Raft core exchanges with its caller: log entries, messages,
// persistent state, snapshots and configuration changes.
//
// These are plain values with no behaviour beyond encoding. The wire and disk
// formats for them belong to src/server and src/storage; only ConfChange has
// an encoding here, because it travels inside log entries that every member
// must decode identically (docs/RAFT.md describes it).
//
// Every Message carries a group id so that one process can host many groups;
// the core only checks that messages reach the group they were sent to.
//
// Thread-safety: values.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace conclave::raft {

using NodeId = uint64_t;
using GroupId = uint64_t;
constexpr NodeId kNoNode = 0;

enum class EntryType : uint8_t {
  kNormal = 0,
  kConfChange = 1,
};

struct Entry {
  uint64_t term = 0;
  uint64_t index = 0;
  EntryType type = EntryType::kNormal;
  std::string data;

  // Bytes counted against message and uncommitted-log limits.
  uint64_t PayloadBytes() const { return data.size(); }
  bool operator==(const Entry&) const = default;
};

// Members of a group. While a joint configuration is in force,
// voters_outgoing holds the old voters and learners_next the voters that will
// become learners when the joint configuration is left.
struct ConfState {
  std::vector<NodeId> voters;
  std::vector<NodeId> learners;
  std::vector<NodeId> voters_outgoing;
  std::vector<NodeId> learners_next;
  bool auto_leave = false;

  bool operator==(const ConfState&) const = default;
  std::string ToString() const;
};

struct SnapshotMetadata {
  uint64_t index = 0;
  uint64_t term = 0;
  ConfState conf_state;
  bool operator==(const SnapshotMetadata&) const = default;
};

struct Snapshot {
  SnapshotMetadata metadata;
  std::string data;  // the application's state machine image
  bool IsEmpty() const { return metadata.index == 0; }
};

// State that must be on stable storage before any message that depends on
// it is sent.
struct HardState {
  uint64_t term = 0;
  NodeId vote = kNoNode;
  uint64_t commit = 0;

  bool IsEmpty() const { return term == 0 && vote == kNoNode && commit == 0; }
  bool operator==(const HardState&) const = default;
};

enum class ConfChangeType : uint8_t {
  kAddVoter = 0,
  kAddLearner = 1,
  kRemoveNode = 2,
};

struct ConfChangeSingle {
  ConfChangeType type = ConfChangeType::kAddVoter;
  NodeId node = kNoNode;
  bool operator==(const ConfChangeSingle&) const = default;
};

enum class ConfChangeTransition : uint8_t {
  // A single voter change is applied directly; anything larger goes through a
  // joint configuration that the leader leaves automatically.
  kAuto = 0,
  // Always joint; left automatically once applied.
  kJointImplicit = 1,
  // Always joint; stays joint until the application proposes an empty change.
  kJointExplicit = 2,
};

struct ConfChange {
  ConfChangeTransition transition = ConfChangeTransition::kAuto;
  std::vector<ConfChangeSingle> changes;
  std::string context;  // opaque to the core (e.g. the new member's URLs)

  // An empty change with kAuto leaves a joint configuration.
  bool IsLeaveJoint() const { return changes.empty() && transition == ConfChangeTransition::kAuto; }
  // Whether applying this change enters a joint configuration, and whether
  // that joint configuration is left automatically.
  bool EntersJoint(bool* auto_leave) const;

  std::string Encode() const;
  static Result<ConfChange> Decode(std::string_view bytes);
  bool operator==(const ConfChange&) const = default;
};

enum class MessageType : uint8_t {
  // Local messages: never sent over the network.
  kHup = 0,             // start an election
  kBeat = 1,            // leader: send heartbeats
  kPropose = 2,         // append entries (also forwarded follower -> leader)
  kCheckQuorum = 3,     // leader: step down without a recently active quorum
  kUnreachable = 4,     // the transport could not reach `from`
  kSnapshotStatus = 5,  // the transport finished (reject = failed) sending a snapshot
  // Network messages.
  kAppend = 10,
  kAppendResponse = 11,
  kVote = 12,
  kVoteResponse = 13,
  kPreVote = 14,
  kPreVoteResponse = 15,
  kSnapshot = 16,
  kHeartbeat = 17,
  kHeartbeatResponse = 18,
  kTransferLeader = 19,
  kTimeoutNow = 20,
  kReadIndex = 21,
  kReadIndexResponse = 22,
};

std::string_view MessageTypeName(MessageType type);
bool IsLocalMessage(MessageType type);
// Responses carry the sender's term but never raise the receiver's term on
// their own account (a pre-vote response at a higher term is a rejection).
bool IsResponseMessage(MessageType type);

struct Message {
  MessageType type = MessageType::kHup;
  GroupId group = 0;
  NodeId from = kNoNode;
  NodeId to = kNoNode;
  uint64_t term = 0;
  uint64_t log_term = 0;  // term of the entry at `index` (append, vote: last entry)
  uint64_t index = 0;
  uint64_t commit = 0;
  std::vector<Entry> entries;
  std::shared_ptr<const Snapshot> snapshot;  // kSnapshot only
  bool reject = false;
  uint64_t reject_hint = 0;  // append rejection: the follower's best guess of the match
  std::string context;       // read rounds, forced campaigns
  // A heartbeat after which the leader stops ticking because its group is
  // idle (Node::Quiesce); the follower may stop ticking too.
  bool quiesce = false;

  std::string ToString() const;
};

// Released when a read request is confirmed: a read that waits until the
// state machine has applied `index` observes every write committed before the
// request was made.
struct ReadState {
  uint64_t index = 0;
  std::string request_context;
};

}  // namespace conclave::raft
