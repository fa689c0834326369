// Linearizable reads without log writes: ReadIndex rounds and leases.
//
// A read is safe to serve at index i if i is at least the commit index at
// the moment the read arrived and this node was still the leader after it
// arrived. The leader proves the second half with a heartbeat round that
// starts after the read arrived and that a quorum acknowledges; all reads
// pending when a round starts share it. Rounds are numbered; an
// acknowledgement of round r also acknowledges every earlier round, since
// it was sent later.
#include <cstring>

#include "raft/raft.h"

namespace conclave::raft {

void Node::HandleReadRequest(NodeId from, std::string context) {
  ReadRequest req{from, std::move(context)};
  if (!CommittedEntryInCurrentTerm()) {
    // Our commit index may lag behind what an earlier leader committed;
    // wait until an entry of our own term commits (it is proposed on
    // election) so the read index covers every acknowledged write.
    pending_reads_.push_back(std::move(req));
    return;
  }
  if (tracker_.IsSingleton() || config_.bugs.read_index_without_heartbeat || LeaseValid()) {
    RespondToRead(req, log_.committed());
    return;
  }
  pending_reads_.push_back(std::move(req));
}

void Node::RespondToRead(const ReadRequest& r, uint64_t index) {
  if (r.from == id_ || r.from == kNoNode) {
    read_states_.push_back(ReadState{index, r.context});
  } else {
    Send(Message{.type = MessageType::kReadIndexResponse,
                 .to = r.from,
                 .index = index,
                 .context = r.context});
  }
}

bool Node::CanStartReadRound() const {
  return role_ == Role::kLeader && !pending_reads_.empty() && CommittedEntryInCurrentTerm();
}

void Node::StartReadRound() {
  const uint64_t index = log_.committed();
  if (tracker_.IsSingleton() || config_.bugs.read_index_without_heartbeat || LeaseValid()) {
    for (const ReadRequest& r : pending_reads_)
      RespondToRead(r, index);
    pending_reads_.clear();
    return;
  }
  ReadRound round{++next_read_round_, index, std::move(pending_reads_)};
  pending_reads_.clear();
  std::string ctx(sizeof(round.id), '\0');
  std::memcpy(ctx.data(), &round.id, sizeof(round.id));
  read_acks_[id_] = round.id;
  read_rounds_.push_back(std::move(round));
  BroadcastHeartbeat(ctx);
}

void Node::AdvanceReadRounds() {
  const uint64_t confirmed =
      tracker_.config().voters.CommittedIndex([this](NodeId id) -> std::optional<uint64_t> {
        auto it = read_acks_.find(id);
        if (it == read_acks_.end()) return std::nullopt;
        return it->second;
      });
  while (!read_rounds_.empty() && read_rounds_.front().id <= confirmed) {
    const ReadRound& round = read_rounds_.front();
    for (const ReadRequest& r : round.requests)
      RespondToRead(r, round.index);
    read_rounds_.pop_front();
  }
}

bool Node::LeaseValid() const {
  if (config_.read_only != ReadOnlyOption::kLeaseBased || role_ != Role::kLeader) return false;
  if (config_.bugs.lease_read_ignores_expiry) return true;
  // After TimeoutNow the transferee may win votes that ignore stickiness, so
  // the lease is gone for the rest of the term.
  if (lead_transferee_ != kNoNode || lease_revoked_in_term_) return false;
  const uint64_t quorum_tick =
      tracker_.config().voters.CommittedIndex([this](NodeId id) -> std::optional<uint64_t> {
        if (id == id_) return tick_count_;
        auto it = lease_acks_.find(id);
        if (it == lease_acks_.end()) return std::nullopt;
        return it->second;
      });
  // Every voter of a quorum acknowledged a heartbeat sent at or after
  // quorum_tick, and will ignore candidates for election_ticks of its own
  // ticks after receiving it. A heartbeat sent before the node last
  // quiesced does not count: ticks stopped while time went on.
  return quorum_tick > quiesced_at_tick_ &&
         quorum_tick + static_cast<uint64_t>(config_.lease_ticks) > tick_count_;
}

void Node::ClearReads() {
  // Reads pending on a node that stops being leader are dropped; the caller
  // times out and retries (possibly elsewhere).
  pending_reads_.clear();
  read_rounds_.clear();
  read_acks_.clear();
  lease_acks_.clear();
}

}  // namespace conclave::raft
