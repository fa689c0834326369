// Opening the WAL: listing segments, recovering each one, truncating a torn
// tail, rebuilding what Replay() returns and what release needs to know.
#include <algorithm>

#include <fmt/format.h>

#include "base/logging.h"
#include "storage/wal.h"
#include "storage/wal_format.h"
#include "storage/wal_replay.h"

namespace conclave::storage {

Result<std::unique_ptr<Wal>> Wal::Open(FileSystem* fs, std::string dir, WalOptions options) {
  RETURN_IF_ERROR(options.Validate());
  std::unique_ptr<Wal> wal(new Wal(fs, std::move(dir), options));
  RETURN_IF_ERROR(wal->Recover());
  return wal;
}

namespace {

// "a/b/wal" -> "a/b"; "wal" -> "."; "/wal" -> "/".
std::string ParentDir(const std::string& dir) {
  const size_t slash = dir.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return dir.substr(0, slash);
}

}  // namespace

Status Wal::Recover() {
  ASSIGN_OR_RETURN(const bool existed, fs_->Exists(dir_));
  if (!existed) {
    // The log's directory entry must be durable before anything in it is
    // acknowledged. Directories above the parent must already be durable.
    RETURN_IF_ERROR(fs_->CreateDirs(dir_));
    RETURN_IF_ERROR(fs_->SyncDir(ParentDir(dir_)));
  }
  ASSIGN_OR_RETURN(std::vector<std::string> names, fs_->ListDir(dir_));
  std::vector<uint64_t> sequences;
  bool removed_temp = false;
  for (const std::string& name : names) {
    uint64_t sequence = 0;
    bool is_temp = false;
    if (!ParseSegmentFileName(name, &sequence, &is_temp)) continue;
    if (is_temp) {
      // A segment that was never published: nothing in it was acknowledged.
      RETURN_IF_ERROR(fs_->RemoveFile(JoinPath(dir_, name)));
      removed_temp = true;
      continue;
    }
    sequences.push_back(sequence);
  }
  if (removed_temp) RETURN_IF_ERROR(fs_->SyncDir(dir_));
  std::sort(sequences.begin(), sequences.end());
  for (size_t i = 1; i < sequences.size(); ++i) {
    if (sequences[i] != sequences[i - 1] + 1) {
      return Status::Corruption(fmt::format("{}: segment {} is missing (found {} and {})", dir_,
                                            SegmentFileName(sequences[i - 1] + 1),
                                            SegmentFileName(sequences[i - 1]),
                                            SegmentFileName(sequences[i])));
    }
  }

  WalReplayBuilder builder;
  for (size_t i = 0; i < sequences.size(); ++i) {
    RETURN_IF_ERROR(RecoverSegment(sequences[i], i + 1 == sequences.size(), &builder));
  }
  ASSIGN_OR_RETURN(WalReplay replay, builder.Finish(dir_));

  for (const auto& [g, state] : replay.groups) {
    GroupLog& log = group_logs_[g];
    log.snapshot_index = state.snapshot_index;
    log.snapshot_term = state.snapshot_term;
    log.last_index = state.entries.empty()
                         ? state.snapshot_index
                         : std::max(state.snapshot_index, state.entries.back().index);
    log.hard_state = state.hard_state;
  }
  {
    std::lock_guard lock(mu_);
    for (const auto& [g, state] : replay.groups) {
      if (state.snapshot_index > 0) durable_markers_[g] = state.snapshot_index;
    }
    replay_ = std::move(replay);
  }
  LOG_DEBUG("wal: {}: recovered {} segments", dir_, sequences.size());
  // Appends never go to a recovered segment: a fresh one starts after the
  // last, so a recovered tail is never written again.
  return StartSegment(sequences.empty() ? 1 : sequences.back() + 1);
}

Status Wal::RecoverSegment(uint64_t sequence, bool is_last, WalReplayBuilder* builder) {
  const std::string path = SegmentPath(sequence);
  ASSIGN_OR_RETURN(std::string data, fs_->ReadFile(path));
  const SegmentScan scan = ScanSegment(data);

  // The header, written and synced before the segment got its name.
  if (scan.records.empty()) {
    if (scan.bad) {
      return Status::Corruption(
          fmt::format("{} offset {}: {}", path, scan.bad->offset, scan.bad->reason));
    }
    return Status::Corruption(fmt::format("{} offset 0: empty segment, expected a header", path));
  }
  const ScannedRecord& first = scan.records.front();
  if (first.type != WalRecordType::kSegmentHeader) {
    return Status::Corruption(fmt::format("{} offset 0: expected a segment header, found type {}",
                                          path, static_cast<int>(first.type)));
  }
  SegmentHeaderPayload header;
  std::string why;
  if (!DecodeSegmentHeader(first.payload, &header, &why)) {
    return Status::Corruption(fmt::format("{} offset 0: {}", path, why));
  }
  if (header.sequence != sequence) {
    return Status::Corruption(
        fmt::format("{} offset 0: segment header names sequence {}, expected {}", path,
                    header.sequence, sequence));
  }
  if (header.preamble_bytes > data.size()) {
    return Status::Corruption(
        fmt::format("{} offset 0: segment header claims a preamble of {} bytes in a {}-byte file",
                    path, header.preamble_bytes, data.size()));
  }
  const uint64_t preamble_end = kRecordHeaderBytes + first.payload.size() + header.preamble_bytes;

  // A torn tail is damage that only the last write could have caused: at the
  // end of the last segment, after the preamble, with nothing intact behind
  // it. Anything else is corruption.
  if (scan.bad) {
    const BadRecord& bad = *scan.bad;
    const bool torn =
        is_last && !bad.checksummed && bad.offset >= preamble_end && !bad.next_valid_offset;
    if (torn) {
      LOG_WARN("wal: {} offset {}: {}; truncating the torn tail ({} bytes)", path, bad.offset,
               bad.reason, data.size() - bad.offset);
    } else {
      std::string detail;
      if (is_last && !bad.checksummed && bad.offset < preamble_end) {
        detail = fmt::format(
            " (inside the preamble, which ends at offset {} and was synced before the segment "
            "was named)",
            preamble_end);
      } else if (is_last && !bad.checksummed) {
        detail = fmt::format(" (an intact record follows at offset {}, so this is not a torn tail)",
                             *bad.next_valid_offset);
      }
      return Status::Corruption(
          fmt::format("{} offset {}: {}{}", path, bad.offset, bad.reason, detail));
    }
  } else if (scan.end_offset < preamble_end) {
    return Status::Corruption(
        fmt::format("{} offset {}: the preamble should run to offset {}, but the segment ends",
                    path, scan.end_offset, preamble_end));
  }

  Segment segment{.sequence = sequence};
  for (size_t i = 1; i < scan.records.size(); ++i) {
    ASSIGN_OR_RETURN(WalReplayBuilder::Applied applied, builder->Apply(scan.records[i], path));
    if (applied.max_entry_index > 0) {
      uint64_t& max = segment.max_entry_index[applied.group];
      max = std::max(max, applied.max_entry_index);
    }
  }
  {
    std::lock_guard lock(mu_);
    segments_.push_back(std::move(segment));
  }

  // Cut the last segment after its last intact record (a torn tail, or unused
  // preallocated space) and make that durable before a new segment follows
  // it: once it is no longer last, damage at its end would be corruption.
  if (is_last && data.size() > scan.end_offset) {
    ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> file,
                     fs_->OpenWritable(path, OpenMode::kOpenExisting));
    RETURN_IF_ERROR(file->Truncate(scan.end_offset));
    RETURN_IF_ERROR(file->Sync());
    RETURN_IF_ERROR(file->Close());
  }
  return Status::Ok();
}

}  // namespace conclave::storage
