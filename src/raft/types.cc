#include "raft/types.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "base/coding.h"

namespace conclave::raft {

std::string ConfState::ToString() const {
  std::string s = fmt::format("voters=({})", fmt::join(voters, " "));
  if (!voters_outgoing.empty()) s += fmt::format("&&({})", fmt::join(voters_outgoing, " "));
  if (!learners.empty()) s += fmt::format(" learners=({})", fmt::join(learners, " "));
  if (!learners_next.empty())
    s += fmt::format(" learners_next=({})", fmt::join(learners_next, " "));
  if (auto_leave) s += " autoleave";
  return s;
}

bool ConfChange::EntersJoint(bool* auto_leave) const {
  // A change of more than one member, or an explicit request, goes through
  // a joint configuration.
  if (transition != ConfChangeTransition::kAuto || changes.size() > 1) {
    *auto_leave = transition != ConfChangeTransition::kJointExplicit;
    return true;
  }
  *auto_leave = false;
  return false;
}

// Format (docs/RAFT.md): version byte 1, transition byte, varint count,
// then per change a type byte and a varint node id, then the
// length-prefixed context.
std::string ConfChange::Encode() const {
  std::string out;
  out.push_back(1);
  out.push_back(static_cast<char>(transition));
  PutVarint64(&out, changes.size());
  for (const ConfChangeSingle& c : changes) {
    out.push_back(static_cast<char>(c.type));
    PutVarint64(&out, c.node);
  }
  PutLengthPrefixed(&out, context);
  return out;
}

Result<ConfChange> ConfChange::Decode(std::string_view bytes) {
  Decoder d(bytes);
  uint8_t version = 0;
  uint8_t transition = 0;
  uint64_t count = 0;
  if (!d.ReadByte(&version) || version != 1) {
    return Status::Corruption("conf change: unknown encoding version");
  }
  if (!d.ReadByte(&transition) || transition > 2) {
    return Status::Corruption("conf change: bad transition");
  }
  if (!d.ReadVarint64(&count) || count > d.remaining()) {
    return Status::Corruption("conf change: bad change count");
  }
  ConfChange cc;
  cc.transition = static_cast<ConfChangeTransition>(transition);
  for (uint64_t i = 0; i < count; ++i) {
    uint8_t type = 0;
    uint64_t node = 0;
    if (!d.ReadByte(&type) || type > 2 || !d.ReadVarint64(&node) || node == kNoNode) {
      return Status::Corruption(fmt::format("conf change: bad change #{}", i));
    }
    cc.changes.push_back({static_cast<ConfChangeType>(type), node});
  }
  std::string_view context;
  if (!d.ReadLengthPrefixed(&context) || !d.empty()) {
    return Status::Corruption("conf change: bad context");
  }
  cc.context = std::string(context);
  return cc;
}

std::string_view MessageTypeName(MessageType type) {
  switch (type) {
    case MessageType::kHup:
      return "Hup";
    case MessageType::kBeat:
      return "Beat";
    case MessageType::kPropose:
      return "Propose";
    case MessageType::kCheckQuorum:
      return "CheckQuorum";
    case MessageType::kUnreachable:
      return "Unreachable";
    case MessageType::kSnapshotStatus:
      return "SnapshotStatus";
    case MessageType::kAppend:
      return "Append";
    case MessageType::kAppendResponse:
      return "AppendResp";
    case MessageType::kVote:
      return "Vote";
    case MessageType::kVoteResponse:
      return "VoteResp";
    case MessageType::kPreVote:
      return "PreVote";
    case MessageType::kPreVoteResponse:
      return "PreVoteResp";
    case MessageType::kSnapshot:
      return "Snapshot";
    case MessageType::kHeartbeat:
      return "Heartbeat";
    case MessageType::kHeartbeatResponse:
      return "HeartbeatResp";
    case MessageType::kTransferLeader:
      return "TransferLeader";
    case MessageType::kTimeoutNow:
      return "TimeoutNow";
    case MessageType::kReadIndex:
      return "ReadIndex";
    case MessageType::kReadIndexResponse:
      return "ReadIndexResp";
  }
  return "Unknown";
}

bool IsLocalMessage(MessageType type) {
  return static_cast<uint8_t>(type) < 10;
}

bool IsResponseMessage(MessageType type) {
  switch (type) {
    case MessageType::kAppendResponse:
    case MessageType::kVoteResponse:
    case MessageType::kPreVoteResponse:
    case MessageType::kHeartbeatResponse:
    case MessageType::kReadIndexResponse:
      return true;
    default:
      return false;
  }
}

std::string Message::ToString() const {
  std::string s = fmt::format("{}->{} {} term={} log_term={} index={} commit={}", from, to,
                              MessageTypeName(type), term, log_term, index, commit);
  if (!entries.empty()) {
    s += fmt::format(" entries=[{}..{}]", entries.front().index, entries.back().index);
  }
  if (snapshot) {
    s += fmt::format(" snapshot@{}/{}", snapshot->metadata.index, snapshot->metadata.term);
  }
  if (reject) s += fmt::format(" reject hint={}", reject_hint);
  if (!context.empty()) s += fmt::format(" ctx={}B", context.size());
  if (quiesce) s += " quiesce";
  return s;
}

}  // namespace conclave::raft
