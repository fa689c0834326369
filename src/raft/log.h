// RaftLog: the core's view of its log, joining what is stable (in
// LogStorage) with what has been appended but not yet persisted (Unstable).
//
// Index space, low to high:
//
//   [ compacted | stable (LogStorage) | unstable (in memory) ]
//                 ^ FirstIndex()                      LastIndex() ^
//
// applied <= committed <= LastIndex() always holds. The unstable part may
// begin with a snapshot received from the leader that the caller has not
// persisted yet.
//
// Internal to src/raft. Thread-safety: none; owned by one Node.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "raft/storage.h"
#include "raft/types.h"

namespace conclave::raft {

class Unstable {
 public:
  std::optional<uint64_t> MaybeFirstIndex() const;
  std::optional<uint64_t> MaybeLastIndex() const;
  std::optional<uint64_t> MaybeTerm(uint64_t i) const;

  void StableTo(uint64_t index, uint64_t term);
  void StableSnapshotTo(uint64_t index);
  void Restore(const Snapshot& s);
  void TruncateAndAppend(const std::vector<Entry>& entries);
  // Entries in [lo, hi); both must lie within the unstable part.
  std::vector<Entry> Slice(uint64_t lo, uint64_t hi) const;

  const std::vector<Entry>& entries() const { return entries_; }
  const std::optional<Snapshot>& snapshot() const { return snapshot_; }
  uint64_t offset() const { return offset_; }
  void set_offset(uint64_t offset) { offset_ = offset; }

 private:
  std::optional<Snapshot> snapshot_;
  std::vector<Entry> entries_;
  uint64_t offset_ = 0;  // index of entries_[0]
};

class RaftLog {
 public:
  RaftLog(const LogStorage* storage, uint64_t max_apply_bytes);

  uint64_t FirstIndex() const;
  uint64_t LastIndex() const;
  uint64_t LastTerm() const;
  // Term of entry i; 0 when i is beyond the log or compacted away (callers
  // that must distinguish use TermOrError).
  uint64_t Term(uint64_t i) const;
  Result<uint64_t> TermOrError(uint64_t i) const;
  bool MatchTerm(uint64_t i, uint64_t term) const;

  // Follower append: if the entry at `index` has `log_term`, appends
  // `entries` (truncating a conflicting suffix), commits up to
  // min(committed, last new index) and returns the last new index.
  std::optional<uint64_t> MaybeAppend(uint64_t index, uint64_t log_term, uint64_t committed,
                                      const std::vector<Entry>& entries);
  // Leader/local append at the end. Returns the new last index.
  uint64_t Append(const std::vector<Entry>& entries);

  // First index whose term differs from an existing entry, or 0 when every
  // given entry matches (new entries past the end count as a conflict).
  uint64_t FindConflict(const std::vector<Entry>& entries) const;
  // The largest index <= `index` whose term is <= `term`: where a leader's
  // and a follower's logs could agree (fast back-tracking).
  uint64_t FindConflictByTerm(uint64_t index, uint64_t term) const;

  bool IsUpToDate(uint64_t last_index, uint64_t term) const;

  // Entries in [lo, hi) with total payload at most max_bytes (at least one).
  Result<std::vector<Entry>> Slice(uint64_t lo, uint64_t hi, uint64_t max_bytes) const;
  Result<std::vector<Entry>> EntriesFrom(uint64_t lo, uint64_t max_bytes) const;

  void CommitTo(uint64_t committed);
  bool MaybeCommit(uint64_t max_index, uint64_t term);
  void AppliedTo(uint64_t applied);
  void StableTo(uint64_t index, uint64_t term) { unstable_.StableTo(index, term); }
  void StableSnapshotTo(uint64_t index) { unstable_.StableSnapshotTo(index); }
  void Restore(const Snapshot& s);

  // Committed entries not yet handed out for apply, up to max_apply_bytes.
  std::vector<Entry> NextCommittedEntries() const;
  bool HasNextCommittedEntries() const;
  // The unstable snapshot if any, else the storage's latest.
  Snapshot CurrentSnapshot() const;
  bool HasPendingSnapshot() const { return unstable_.snapshot().has_value(); }

  const Unstable& unstable() const { return unstable_; }
  uint64_t committed() const { return committed_; }
  uint64_t applied() const { return applied_; }
  const LogStorage* storage() const { return storage_; }

 private:
  const LogStorage* storage_;
  Unstable unstable_;
  uint64_t committed_ = 0;
  uint64_t applied_ = 0;
  uint64_t max_apply_bytes_;
};

}  // namespace conclave::raft
