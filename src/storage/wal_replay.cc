#include "storage/wal_replay.h"

#include <fmt/format.h>

namespace conclave::storage {

Result<WalReplayBuilder::Applied> WalReplayBuilder::Apply(const ScannedRecord& record,
                                                          std::string_view path) {
  const std::string where = fmt::format("{} offset {}", path, record.offset);
  std::string why;
  Applied applied;
  switch (record.type) {
    case WalRecordType::kEntries: {
      EntriesPayload entries;
      if (!DecodeEntries(record.payload, &entries, &why)) {
        return Status::Corruption(fmt::format("{}: {}", where, why));
      }
      applied.group = entries.group;
      if (!entries.entries.empty()) applied.max_entry_index = entries.entries.back().index;
      RETURN_IF_ERROR(ApplyEntries(std::move(entries), where));
      return applied;
    }
    case WalRecordType::kHardState: {
      HardStatePayload hs;
      if (!DecodeHardState(record.payload, &hs, &why)) {
        return Status::Corruption(fmt::format("{}: {}", where, why));
      }
      replay_.groups[hs.group].hard_state = hs.hard_state;
      applied.group = hs.group;
      return applied;
    }
    case WalRecordType::kSnapshotMarker: {
      SnapshotMarkerPayload marker;
      if (!DecodeSnapshotMarker(record.payload, &marker, &why)) {
        return Status::Corruption(fmt::format("{}: {}", where, why));
      }
      ApplyMarker(marker);
      applied.group = marker.group;
      return applied;
    }
    case WalRecordType::kSegmentHeader:
      break;
  }
  return Status::Corruption(fmt::format("{}: a segment header in the middle of a segment", where));
}

Status WalReplayBuilder::ApplyEntries(EntriesPayload entries, std::string_view where) {
  WalGroupState& group = replay_.groups[entries.group];
  std::vector<raft::Entry>& log = group.entries;
  const uint64_t first = entries.first_index;
  if (!log.empty()) {
    const uint64_t log_first = log.front().index;
    const uint64_t log_last = log.back().index;
    if (first > log_last + 1) {
      return Status::Corruption(
          fmt::format("{}: entries of group {} start at index {}, but its log ends at {}", where,
                      entries.group, first, log_last));
    }
    // Log entries are all above the snapshot marker, so this also covers a
    // record that starts at or below it.
    if (first <= log_first) {
      log.clear();
    } else {
      log.resize(first - log_first);
    }
  }
  for (raft::Entry& e : entries.entries) {
    if (e.index > group.snapshot_index) log.push_back(std::move(e));
  }
  return Status::Ok();
}

void WalReplayBuilder::ApplyMarker(const SnapshotMarkerPayload& marker) {
  WalGroupState& group = replay_.groups[marker.group];
  if (marker.index < group.snapshot_index) return;
  group.snapshot_index = marker.index;
  group.snapshot_term = marker.term;
  std::vector<raft::Entry>& log = group.entries;
  if (log.empty() || marker.index < log.front().index) return;
  if (marker.index >= log.back().index) {
    log.clear();
  } else {
    log.erase(log.begin(),
              log.begin() + static_cast<ptrdiff_t>(marker.index - log.front().index + 1));
  }
}

Result<WalReplay> WalReplayBuilder::Finish(std::string_view dir) {
  for (const auto& [id, group] : replay_.groups) {
    if (group.snapshot_index > 0 && !group.entries.empty() &&
        group.entries.front().index != group.snapshot_index + 1) {
      return Status::Corruption(
          fmt::format("{}: entries of group {} resume at index {} after a snapshot marker at {}",
                      dir, id, group.entries.front().index, group.snapshot_index));
    }
  }
  return std::move(replay_);
}

}  // namespace conclave::storage
