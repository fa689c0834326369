// LogStorage: the Raft core's read-only view of what the caller has persisted.
//
// The core never writes storage. Its caller persists each Ready (entries,
// hard state, snapshot) and then makes them visible here before calling
// Advance. The core reads back stable entries, terms and the latest snapshot
// through this interface.
//
// MemoryStorage keeps everything in memory. Tests and the simulator use it
// as the "disk" of a node (a simulated crash keeps the MemoryStorage and
// throws the core away); src/storage provides the durable implementation.
//
// Thread-safety: the core calls LogStorage from one thread. MemoryStorage is
// not internally synchronized.
#pragma once

#include <cstdint>
#include <vector>

#include "base/status.h"
#include "raft/types.h"

namespace conclave::raft {

class LogStorage {
 public:
  virtual ~LogStorage() = default;

  // The persisted hard state and the configuration of the latest snapshot.
  virtual HardState InitialHardState() const = 0;
  virtual ConfState InitialConfState() const = 0;

  // Entries in [lo, hi), at least one if any, then stopping before the total
  // payload would exceed max_bytes. kOutOfRange if lo was compacted away.
  virtual Result<std::vector<Entry>> Entries(uint64_t lo, uint64_t hi,
                                             uint64_t max_bytes) const = 0;
  // Term of entry i, for i in [FirstIndex()-1, LastIndex()]. kOutOfRange
  // when compacted, kNotFound when beyond the last index.
  virtual Result<uint64_t> Term(uint64_t i) const = 0;
  // Index of the first entry still held (snapshot index + 1).
  virtual uint64_t FirstIndex() const = 0;
  virtual uint64_t LastIndex() const = 0;
  // The latest snapshot (metadata and data).
  virtual Snapshot LatestSnapshot() const = 0;
};

class MemoryStorage final : public LogStorage {
 public:
  MemoryStorage();

  HardState InitialHardState() const override { return hard_state_; }
  ConfState InitialConfState() const override { return snapshot_.metadata.conf_state; }
  Result<std::vector<Entry>> Entries(uint64_t lo, uint64_t hi, uint64_t max_bytes) const override;
  Result<uint64_t> Term(uint64_t i) const override;
  uint64_t FirstIndex() const override { return entries_.front().index + 1; }
  uint64_t LastIndex() const override { return entries_.front().index + entries_.size() - 1; }
  Snapshot LatestSnapshot() const override { return snapshot_; }

  // Writers, called by the owner while handling a Ready.
  void SetHardState(const HardState& hs) { hard_state_ = hs; }
  // Appends entries, replacing any existing suffix they conflict with.
  // Entries must be contiguous and must not leave a gap after LastIndex().
  void Append(const std::vector<Entry>& entries);
  // Replaces the whole log with a snapshot. Older snapshots are refused.
  Status ApplySnapshot(const Snapshot& snapshot);
  // Creates a snapshot at applied index `index` with the application's
  // image; entries after it are kept.
  Status CreateSnapshot(uint64_t index, const ConfState& cs, std::string data);
  // Discards entries before `index` (which must be <= the snapshot index
  // the caller has taken, or <= LastIndex()).
  Status Compact(uint64_t index);

  // Seeds a brand-new group: a snapshot at index 1, term 1 naming its first
  // members, with an empty application image.
  void Bootstrap(const ConfState& cs);

 private:
  HardState hard_state_;
  Snapshot snapshot_;
  // entries_[0] is a dummy holding the index and term of the last compacted
  // entry (the snapshot point); real entries follow.
  std::vector<Entry> entries_;
};

}  // namespace conclave::raft
