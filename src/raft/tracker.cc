#include "raft/tracker.h"

#include <fmt/format.h>

#include <algorithm>
#include <limits>

#include "base/assert.h"

namespace conclave::raft {

uint64_t MajorityConfig::CommittedIndex(
    const std::function<std::optional<uint64_t>(NodeId)>& acked) const {
  if (ids_.empty()) return std::numeric_limits<uint64_t>::max();
  std::vector<uint64_t> indexes;
  indexes.reserve(ids_.size());
  for (NodeId id : ids_)
    indexes.push_back(acked(id).value_or(0));
  std::sort(indexes.begin(), indexes.end(), std::greater<>());
  // The majority-th largest index is held by a majority.
  return indexes[ids_.size() / 2];
}

VoteResult MajorityConfig::Vote(const std::map<NodeId, bool>& votes) const {
  if (ids_.empty()) return VoteResult::kWon;  // no say in a joint decision
  size_t yes = 0;
  size_t missing = 0;
  for (NodeId id : ids_) {
    auto it = votes.find(id);
    if (it == votes.end()) {
      ++missing;
    } else if (it->second) {
      ++yes;
    }
  }
  const size_t quorum = ids_.size() / 2 + 1;
  if (yes >= quorum) return VoteResult::kWon;
  if (yes + missing >= quorum) return VoteResult::kPending;
  return VoteResult::kLost;
}

uint64_t JointConfig::CommittedIndex(
    const std::function<std::optional<uint64_t>(NodeId)>& acked) const {
  return std::min(incoming.CommittedIndex(acked), outgoing.CommittedIndex(acked));
}

VoteResult JointConfig::Vote(const std::map<NodeId, bool>& votes) const {
  VoteResult a = incoming.Vote(votes);
  VoteResult b = outgoing.Vote(votes);
  if (a == b) return a;
  if (a == VoteResult::kLost || b == VoteResult::kLost) return VoteResult::kLost;
  return VoteResult::kPending;
}

std::set<NodeId> JointConfig::Ids() const {
  std::set<NodeId> ids = incoming.ids();
  ids.insert(outgoing.ids().begin(), outgoing.ids().end());
  return ids;
}

ConfState TrackerConfig::ToConfState() const {
  ConfState cs;
  cs.voters.assign(voters.incoming.ids().begin(), voters.incoming.ids().end());
  cs.voters_outgoing.assign(voters.outgoing.ids().begin(), voters.outgoing.ids().end());
  cs.learners.assign(learners.begin(), learners.end());
  cs.learners_next.assign(learners_next.begin(), learners_next.end());
  cs.auto_leave = auto_leave;
  return cs;
}

void Inflights::Add(uint64_t last_index, uint64_t bytes) {
  CHECK_MSG(items_.size() < max_count_, "in-flight window overflow");
  CHECK_MSG(items_.empty() || items_.back().first < last_index, "in-flight append {} not after {}",
            last_index, items_.back().first);
  items_.emplace_back(last_index, bytes);
  bytes_ += bytes;
}

void Inflights::FreeLE(uint64_t index) {
  size_t n = 0;
  while (n < items_.size() && items_[n].first <= index) {
    bytes_ -= items_[n].second;
    ++n;
  }
  items_.erase(items_.begin(), items_.begin() + static_cast<long>(n));
}

std::string_view ProgressStateName(ProgressState s) {
  switch (s) {
    case ProgressState::kProbe:
      return "probe";
    case ProgressState::kReplicate:
      return "replicate";
    case ProgressState::kSnapshot:
      return "snapshot";
  }
  return "?";
}

void Progress::ResetState(ProgressState s) {
  probe_sent = false;
  pending_snapshot = 0;
  state = s;
  inflights.Reset();
}

void Progress::BecomeProbe() {
  if (state == ProgressState::kSnapshot) {
    // Resume right after the snapshot (or the match, if it moved further).
    const uint64_t snap = pending_snapshot;
    ResetState(ProgressState::kProbe);
    next = std::max(match + 1, snap + 1);
  } else {
    ResetState(ProgressState::kProbe);
    next = match + 1;
  }
}

void Progress::BecomeReplicate() {
  ResetState(ProgressState::kReplicate);
  next = match + 1;
}

void Progress::BecomeSnapshot(uint64_t snapshot_index) {
  ResetState(ProgressState::kSnapshot);
  pending_snapshot = snapshot_index;
}

bool Progress::MaybeUpdate(uint64_t n) {
  bool updated = false;
  if (match < n) {
    match = n;
    updated = true;
    probe_sent = false;
  }
  next = std::max(next, n + 1);
  return updated;
}

bool Progress::MaybeDecreaseTo(uint64_t rejected, uint64_t match_hint) {
  if (state == ProgressState::kReplicate) {
    // Stale if the rejection is for something already matched.
    if (rejected <= match) return false;
    next = match + 1;
    return true;
  }
  // In probe, only the answer to the last probe counts.
  if (next - 1 != rejected) return false;
  next = std::max(std::min(rejected, match_hint + 1), match + 1);
  probe_sent = false;
  return true;
}

void Progress::SentEntries(uint64_t last_index, size_t count, uint64_t bytes) {
  switch (state) {
    case ProgressState::kReplicate:
      if (count > 0) {
        next = last_index + 1;
        inflights.Add(last_index, bytes);
      }
      break;
    case ProgressState::kProbe:
      probe_sent = true;
      break;
    case ProgressState::kSnapshot:
      UNREACHABLE();
  }
}

bool Progress::IsPaused() const {
  switch (state) {
    case ProgressState::kProbe:
      return probe_sent;
    case ProgressState::kReplicate:
      return inflights.Full();
    case ProgressState::kSnapshot:
      return true;
  }
  return true;
}

std::string Progress::ToString() const {
  std::string s = fmt::format("{} match={} next={}", ProgressStateName(state), match, next);
  if (is_learner) s += " learner";
  if (state == ProgressState::kSnapshot) s += fmt::format(" pending_snap={}", pending_snapshot);
  if (inflights.Count()) s += fmt::format(" inflight={}", inflights.Count());
  return s;
}

uint64_t ProgressTracker::Committed() const {
  return config_.voters.CommittedIndex([this](NodeId id) -> std::optional<uint64_t> {
    auto it = progress_.find(id);
    if (it == progress_.end()) return std::nullopt;
    return it->second.match;
  });
}

bool ProgressTracker::QuorumActive() const {
  std::map<NodeId, bool> votes;
  for (const auto& [id, pr] : progress_) {
    if (!pr.is_learner) votes[id] = pr.recent_active;
  }
  return config_.voters.Vote(votes) == VoteResult::kWon;
}

void ProgressTracker::RecordVote(NodeId id, bool granted) {
  votes_.emplace(id, granted);
}

VoteResult ProgressTracker::TallyVotes(int* granted, int* rejected) const {
  *granted = 0;
  *rejected = 0;
  for (const auto& [id, pr] : progress_) {
    if (pr.is_learner) continue;
    auto it = votes_.find(id);
    if (it == votes_.end()) continue;
    (it->second ? *granted : *rejected) += 1;
  }
  return config_.voters.Vote(votes_);
}

Progress* ProgressTracker::Find(NodeId id) {
  auto it = progress_.find(id);
  return it == progress_.end() ? nullptr : &it->second;
}

const Progress* ProgressTracker::Find(NodeId id) const {
  auto it = progress_.find(id);
  return it == progress_.end() ? nullptr : &it->second;
}

std::vector<NodeId> ProgressTracker::VoterIds() const {
  std::set<NodeId> ids = config_.voters.Ids();
  return {ids.begin(), ids.end()};
}

std::vector<NodeId> ProgressTracker::AllIds() const {
  std::vector<NodeId> ids;
  for (const auto& [id, pr] : progress_)
    ids.push_back(id);
  return ids;
}

}  // namespace conclave::raft
