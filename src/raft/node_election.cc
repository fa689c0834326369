// Elections: term checks on every message, PreVote, votes, leader stickiness.
#include <fmt/format.h>

#include "base/logging.h"
#include "raft/raft.h"

namespace conclave::raft {
namespace {

constexpr char kTransferContext[] = "transfer";

}  // namespace

bool Node::InLease() const {
  return config_.check_quorum && ticks_since_leader_contact_ < config_.election_ticks;
}

// Handles what a message's term implies before its type is looked at. Sets
// *handled when nothing more is to be done with it.
Status Node::StepTermCheck(const Message& m, bool* handled) {
  if (m.term == 0) return Status::Ok();  // local, or forwarded proposal/read
  if (m.term > term_) {
    if (m.type == MessageType::kVote || m.type == MessageType::kPreVote) {
      const bool force = m.context == kTransferContext;
      // Leader stickiness: a node that recently heard from a live leader
      // ignores candidates, unless the leader itself asked for the election.
      // Leases rely on this.
      if (!force && InLease()) {
        *handled = true;
        return Status::Ok();
      }
    }
    if (m.type == MessageType::kPreVote) {
      // Never raise our term for a pre-vote.
    } else if (m.type == MessageType::kPreVoteResponse && !m.reject) {
      // A granted pre-vote carries the term the candidate will use.
    } else if (m.type == MessageType::kAppend || m.type == MessageType::kHeartbeat ||
               m.type == MessageType::kSnapshot) {
      BecomeFollower(m.term, m.from);
    } else {
      BecomeFollower(m.term, kNoNode);
    }
    return Status::Ok();
  }
  if (m.term < term_) {
    *handled = true;
    if ((config_.check_quorum || config_.pre_vote) &&
        (m.type == MessageType::kHeartbeat || m.type == MessageType::kAppend)) {
      // A stale leader (say, one that was partitioned away) learns our term
      // and steps down; without this it could stay stuck with pre-vote on.
      Send(Message{.type = MessageType::kAppendResponse, .to = m.from});
    } else if (m.type == MessageType::kPreVote) {
      Send(Message{
          .type = MessageType::kPreVoteResponse, .to = m.from, .term = term_, .reject = true});
    }
    return Status::Ok();
  }
  return Status::Ok();
}

bool Node::HasUnappliedConfChanges() const {
  if (log_.applied() >= log_.committed()) return false;
  Result<std::vector<Entry>> ents =
      log_.Slice(log_.applied() + 1, log_.committed() + 1, UINT64_MAX);
  if (!ents.ok()) return true;  // be conservative
  for (const Entry& e : *ents) {
    if (e.type == EntryType::kConfChange) return true;
  }
  return false;
}

void Node::Hup(bool transfer) {
  if (role_ == Role::kLeader) return;
  if (!Promotable()) return;
  // A conf change that is committed but not applied may change who votes;
  // campaigning before it is applied could count the wrong quorum.
  if (HasUnappliedConfChanges()) return;
  StartCampaign(config_.pre_vote && !transfer, transfer);
}

void Node::StartCampaign(bool pre_vote, bool transfer) {
  uint64_t vote_term;
  MessageType type;
  if (pre_vote) {
    BecomePreCandidate();
    type = MessageType::kPreVote;
    vote_term = term_ + 1;
  } else {
    BecomeCandidate();
    type = MessageType::kVote;
    vote_term = term_;
  }
  if (Poll(id_, true) == VoteResult::kWon) {
    // A single voter wins at once.
    if (pre_vote) {
      StartCampaign(false, transfer);
    } else {
      BecomeLeader();
    }
    return;
  }
  for (NodeId id : tracker_.VoterIds()) {
    if (id == id_) continue;
    Message m{.type = type,
              .to = id,
              .term = vote_term,
              .log_term = log_.LastTerm(),
              .index = log_.LastIndex()};
    if (transfer) m.context = kTransferContext;
    Send(std::move(m));
  }
}

VoteResult Node::Poll(NodeId id, bool granted) {
  tracker_.RecordVote(id, granted);
  int yes = 0;
  int no = 0;
  return tracker_.TallyVotes(&yes, &no);
}

void Node::HandleVoteRequest(const Message& m) {
  const bool pre = m.type == MessageType::kPreVote;
  // We may vote again for the node we already voted for (a duplicate
  // request), for anyone if we have neither voted nor know a leader in this
  // term, and in a pre-vote for any future term.
  const bool can_vote =
      vote_ == m.from || (vote_ == kNoNode && lead_ == kNoNode) || (pre && m.term > term_);
  const bool up_to_date =
      config_.bugs.vote_without_log_check || log_.IsUpToDate(m.index, m.log_term);
  const MessageType resp = pre ? MessageType::kPreVoteResponse : MessageType::kVoteResponse;
  if (can_vote && up_to_date) {
    // The response carries the request's term so that a pre-candidate can
    // tell the grant from a stale answer.
    Send(Message{.type = resp, .to = m.from, .term = m.term});
    if (!pre) {
      election_elapsed_ = 0;
      vote_ = m.from;
    }
  } else {
    Send(Message{.type = resp, .to = m.from, .term = term_, .reject = true});
  }
}

Status Node::StepCandidate(Message& m) {
  const MessageType my_response =
      role_ == Role::kPreCandidate ? MessageType::kPreVoteResponse : MessageType::kVoteResponse;
  switch (m.type) {
    case MessageType::kPropose:
      return Status::Unavailable("raft: proposal dropped, no leader")
          .WithReason(ErrorReason::kNoLeader);
    case MessageType::kReadIndex:
      return Status::Unavailable("raft: read dropped, no leader")
          .WithReason(ErrorReason::kNoLeader);
    case MessageType::kAppend:
      BecomeFollower(m.term, m.from);
      HandleAppend(m);
      return Status::Ok();
    case MessageType::kHeartbeat:
      BecomeFollower(m.term, m.from);
      HandleHeartbeat(m);
      return Status::Ok();
    case MessageType::kSnapshot:
      BecomeFollower(m.term, m.from);
      HandleSnapshot(m);
      return Status::Ok();
    default:
      break;
  }
  if (m.type == my_response) {
    switch (Poll(m.from, !m.reject)) {
      case VoteResult::kWon:
        if (role_ == Role::kPreCandidate) {
          StartCampaign(false, m.context == kTransferContext);
        } else {
          BecomeLeader();
          BroadcastAppend();
        }
        break;
      case VoteResult::kLost:
        // Back to follower at our current term (a rejection at a higher term
        // already raised it in StepTermCheck).
        BecomeFollower(term_, kNoNode);
        break;
      case VoteResult::kPending:
        break;
    }
  }
  return Status::Ok();
}

}  // namespace conclave::raft
