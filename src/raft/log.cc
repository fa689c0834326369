#include "raft/log.h"

#include <fmt/format.h>

#include <algorithm>

namespace conclave::raft {

// ---- Unstable ----

std::optional<uint64_t> Unstable::MaybeFirstIndex() const {
  if (snapshot_) return snapshot_->metadata.index + 1;
  return std::nullopt;
}

std::optional<uint64_t> Unstable::MaybeLastIndex() const {
  if (!entries_.empty()) return offset_ + entries_.size() - 1;
  if (snapshot_) return snapshot_->metadata.index;
  return std::nullopt;
}

std::optional<uint64_t> Unstable::MaybeTerm(uint64_t i) const {
  if (i < offset_) {
    if (snapshot_ && snapshot_->metadata.index == i) return snapshot_->metadata.term;
    return std::nullopt;
  }
  auto last = MaybeLastIndex();
  if (!last || i > *last) return std::nullopt;
  if (entries_.empty()) return snapshot_->metadata.term;  // i == snapshot index == offset - 1
  return entries_[i - offset_].term;
}

void Unstable::StableTo(uint64_t index, uint64_t term) {
  auto t = MaybeTerm(index);
  // Only entries still in the unstable part and unchanged since they were
  // handed out become stable; a newer leader may have replaced them.
  if (!t || *t != term || index < offset_) return;
  entries_.erase(entries_.begin(), entries_.begin() + static_cast<long>(index + 1 - offset_));
  offset_ = index + 1;
}

void Unstable::StableSnapshotTo(uint64_t index) {
  if (snapshot_ && snapshot_->metadata.index == index) snapshot_.reset();
}

void Unstable::Restore(const Snapshot& s) {
  offset_ = s.metadata.index + 1;
  entries_.clear();
  snapshot_ = s;
}

void Unstable::TruncateAndAppend(const std::vector<Entry>& entries) {
  if (entries.empty()) return;
  const uint64_t after = entries.front().index;
  if (after == offset_ + entries_.size()) {
    entries_.insert(entries_.end(), entries.begin(), entries.end());
  } else if (after <= offset_) {
    // Replaces everything unstable (and, once persisted, the stable suffix).
    offset_ = after;
    entries_ = entries;
  } else {
    entries_.resize(after - offset_);
    entries_.insert(entries_.end(), entries.begin(), entries.end());
  }
}

std::vector<Entry> Unstable::Slice(uint64_t lo, uint64_t hi) const {
  CHECK_MSG(lo >= offset_ && hi <= offset_ + entries_.size() && lo <= hi,
            "unstable slice [{}, {}) outside [{}, {})", lo, hi, offset_, offset_ + entries_.size());
  return std::vector<Entry>(entries_.begin() + static_cast<long>(lo - offset_),
                            entries_.begin() + static_cast<long>(hi - offset_));
}

// ---- RaftLog ----

RaftLog::RaftLog(const LogStorage* storage, uint64_t max_apply_bytes)
    : storage_(storage), max_apply_bytes_(max_apply_bytes) {
  const uint64_t first = storage_->FirstIndex();
  const uint64_t last = storage_->LastIndex();
  unstable_.set_offset(last + 1);
  // Everything up to the snapshot is committed and applied by definition.
  committed_ = first - 1;
  applied_ = first - 1;
}

uint64_t RaftLog::FirstIndex() const {
  if (auto i = unstable_.MaybeFirstIndex()) return *i;
  return storage_->FirstIndex();
}

uint64_t RaftLog::LastIndex() const {
  if (auto i = unstable_.MaybeLastIndex()) return *i;
  return storage_->LastIndex();
}

uint64_t RaftLog::LastTerm() const {
  return Term(LastIndex());
}

Result<uint64_t> RaftLog::TermOrError(uint64_t i) const {
  const uint64_t dummy = FirstIndex() - 1;
  if (i < dummy) return Status::OutOfRange(fmt::format("entry {} compacted", i));
  if (i > LastIndex()) return Status::NotFound(fmt::format("entry {} beyond last", i));
  if (auto t = unstable_.MaybeTerm(i)) return *t;
  return storage_->Term(i);
}

uint64_t RaftLog::Term(uint64_t i) const {
  Result<uint64_t> t = TermOrError(i);
  return t.ok() ? *t : 0;
}

bool RaftLog::MatchTerm(uint64_t i, uint64_t term) const {
  Result<uint64_t> t = TermOrError(i);
  return t.ok() && *t == term;
}

std::optional<uint64_t> RaftLog::MaybeAppend(uint64_t index, uint64_t log_term, uint64_t committed,
                                             const std::vector<Entry>& entries) {
  if (!MatchTerm(index, log_term)) return std::nullopt;
  const uint64_t last_new = index + entries.size();
  const uint64_t conflict = FindConflict(entries);
  if (conflict != 0) {
    CHECK_MSG(conflict > committed_, "entry {} conflicts with committed entry (committed {})",
              conflict, committed_);
    std::vector<Entry> rest(entries.begin() + static_cast<long>(conflict - (index + 1)),
                            entries.end());
    Append(rest);
  }
  CommitTo(std::min(committed, last_new));
  return last_new;
}

uint64_t RaftLog::Append(const std::vector<Entry>& entries) {
  if (entries.empty()) return LastIndex();
  CHECK_MSG(entries.front().index - 1 >= committed_, "append at {} would overwrite committed {}",
            entries.front().index, committed_);
  unstable_.TruncateAndAppend(entries);
  return LastIndex();
}

uint64_t RaftLog::FindConflict(const std::vector<Entry>& entries) const {
  for (const Entry& e : entries) {
    if (!MatchTerm(e.index, e.term)) return e.index;
  }
  return 0;
}

uint64_t RaftLog::FindConflictByTerm(uint64_t index, uint64_t term) const {
  index = std::min(index, LastIndex());
  while (true) {
    Result<uint64_t> t = TermOrError(index);
    if (!t.ok() || *t <= term) return index;
    if (index == 0) return 0;
    --index;
  }
}

bool RaftLog::IsUpToDate(uint64_t last_index, uint64_t term) const {
  const uint64_t my_term = LastTerm();
  return term > my_term || (term == my_term && last_index >= LastIndex());
}

Result<std::vector<Entry>> RaftLog::Slice(uint64_t lo, uint64_t hi, uint64_t max_bytes) const {
  if (lo >= hi) return std::vector<Entry>{};
  if (lo < FirstIndex()) {
    return Status::OutOfRange(fmt::format("entry {} compacted (first {})", lo, FirstIndex()));
  }
  CHECK_MSG(hi <= LastIndex() + 1, "slice [{}, {}) beyond last {}", lo, hi, LastIndex());
  std::vector<Entry> out;
  const uint64_t unstable_start = unstable_.offset();
  if (lo < unstable_start) {
    ASSIGN_OR_RETURN(out, storage_->Entries(lo, std::min(hi, unstable_start), max_bytes));
    // Storage stopped early on the byte limit: the unstable part is not needed.
    if (out.size() < std::min(hi, unstable_start) - lo) return out;
  }
  if (hi > unstable_start) {
    uint64_t bytes = 0;
    for (const Entry& e : out)
      bytes += e.PayloadBytes();
    for (const Entry& e : unstable_.Slice(std::max(lo, unstable_start), hi)) {
      bytes += e.PayloadBytes();
      if (!out.empty() && bytes > max_bytes) break;
      out.push_back(e);
    }
  }
  return out;
}

Result<std::vector<Entry>> RaftLog::EntriesFrom(uint64_t lo, uint64_t max_bytes) const {
  if (lo > LastIndex()) return std::vector<Entry>{};
  return Slice(lo, LastIndex() + 1, max_bytes);
}

void RaftLog::CommitTo(uint64_t committed) {
  if (committed <= committed_) return;
  CHECK_MSG(committed <= LastIndex(), "commit {} beyond last index {}", committed, LastIndex());
  committed_ = committed;
}

bool RaftLog::MaybeCommit(uint64_t max_index, uint64_t term) {
  if (max_index > committed_ && Term(max_index) == term) {
    CommitTo(max_index);
    return true;
  }
  return false;
}

void RaftLog::AppliedTo(uint64_t applied) {
  if (applied == 0) return;
  CHECK_MSG(applied <= committed_ && applied >= applied_, "applied {} outside [{}, {}]", applied,
            applied_, committed_);
  applied_ = applied;
}

void RaftLog::Restore(const Snapshot& s) {
  committed_ = s.metadata.index;
  unstable_.Restore(s);
}

bool RaftLog::HasNextCommittedEntries() const {
  return committed_ > applied_ && !HasPendingSnapshot() && applied_ + 1 >= FirstIndex();
}

std::vector<Entry> RaftLog::NextCommittedEntries() const {
  if (!HasNextCommittedEntries()) return {};
  Result<std::vector<Entry>> r = Slice(applied_ + 1, committed_ + 1, max_apply_bytes_);
  CHECK_MSG(r.ok(), "committed entries [{}, {}] unavailable: {}", applied_ + 1, committed_,
            r.status().ToString());
  return std::move(r).value();
}

Snapshot RaftLog::CurrentSnapshot() const {
  if (unstable_.snapshot()) return *unstable_.snapshot();
  return storage_->LatestSnapshot();
}

}  // namespace conclave::raft
