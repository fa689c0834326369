#include "raft/storage.h"

#include <fmt/format.h>

namespace conclave::raft {

MemoryStorage::MemoryStorage() {
  entries_.push_back(Entry{});
}

void MemoryStorage::Bootstrap(const ConfState& cs) {
  // A snapshot at index 1, term 1 holding the first configuration and an
  // empty state machine. Members added later start empty and receive a
  // snapshot that tells them who the voters are.
  snapshot_ = Snapshot{SnapshotMetadata{1, 1, cs}, std::string()};
  entries_.assign(1, Entry{1, 1});
  hard_state_ = HardState{1, kNoNode, 1};
}

Result<std::vector<Entry>> MemoryStorage::Entries(uint64_t lo, uint64_t hi,
                                                  uint64_t max_bytes) const {
  const uint64_t offset = entries_.front().index;
  if (lo <= offset) {
    return Status::OutOfRange(fmt::format("entry {} is compacted (first is {})", lo, offset + 1));
  }
  CHECK_MSG(hi <= LastIndex() + 1, "entries [{}, {}) beyond last index {}", lo, hi, LastIndex());
  std::vector<Entry> out;
  uint64_t bytes = 0;
  for (uint64_t i = lo; i < hi; ++i) {
    const Entry& e = entries_[i - offset];
    bytes += e.PayloadBytes();
    if (!out.empty() && bytes > max_bytes) break;
    out.push_back(e);
  }
  return out;
}

Result<uint64_t> MemoryStorage::Term(uint64_t i) const {
  const uint64_t offset = entries_.front().index;
  if (i < offset) return Status::OutOfRange(fmt::format("term of {} is compacted", i));
  if (i - offset >= entries_.size()) return Status::NotFound(fmt::format("entry {} not yet", i));
  return entries_[i - offset].term;
}

void MemoryStorage::Append(const std::vector<Entry>& entries) {
  if (entries.empty()) return;
  const uint64_t first = FirstIndex();
  const uint64_t last = entries.back().index;
  if (last < first) return;  // all already compacted
  // Skip the part that is already compacted.
  size_t skip = 0;
  if (entries.front().index < first) skip = first - entries.front().index;
  const uint64_t start = entries[skip].index;
  const uint64_t offset = entries_.front().index;
  CHECK_MSG(start <= LastIndex() + 1, "append at {} leaves a gap after {}", start, LastIndex());
  entries_.resize(start - offset);  // truncate any conflicting suffix
  for (size_t i = skip; i < entries.size(); ++i)
    entries_.push_back(entries[i]);
}

Status MemoryStorage::ApplySnapshot(const Snapshot& snapshot) {
  if (snapshot.metadata.index <= snapshot_.metadata.index) {
    return Status::FailedPrecondition(fmt::format(
        "snapshot {} is not newer than {}", snapshot.metadata.index, snapshot_.metadata.index));
  }
  snapshot_ = snapshot;
  entries_.clear();
  entries_.push_back(Entry{snapshot.metadata.term, snapshot.metadata.index});
  return Status::Ok();
}

Status MemoryStorage::CreateSnapshot(uint64_t index, const ConfState& cs, std::string data) {
  if (index <= snapshot_.metadata.index) {
    return Status::FailedPrecondition(
        fmt::format("snapshot at {} is not newer than {}", index, snapshot_.metadata.index));
  }
  CHECK_MSG(index <= LastIndex(), "snapshot at {} beyond last index {}", index, LastIndex());
  snapshot_.metadata.index = index;
  snapshot_.metadata.term = entries_[index - entries_.front().index].term;
  snapshot_.metadata.conf_state = cs;
  snapshot_.data = std::move(data);
  return Status::Ok();
}

Status MemoryStorage::Compact(uint64_t index) {
  const uint64_t offset = entries_.front().index;
  if (index <= offset) return Status::FailedPrecondition("already compacted");
  CHECK_MSG(index <= LastIndex(), "compact {} beyond last index {}", index, LastIndex());
  const size_t cut = index - offset;
  Entry dummy{entries_[cut].term, entries_[cut].index};
  std::vector<Entry> rest;
  rest.reserve(entries_.size() - cut);
  rest.push_back(dummy);
  for (size_t i = cut + 1; i < entries_.size(); ++i)
    rest.push_back(std::move(entries_[i]));
  entries_ = std::move(rest);
  return Status::Ok();
}

}  // namespace conclave::raft
