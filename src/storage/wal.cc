// The write path of the WAL: batches, group commit, segment rollover and
// release. Opening and recovery are in wal_open.cc.
#include "storage/wal.h"

#include <algorithm>

#include <fmt/format.h>

#include "base/logging.h"
#include "storage/wal_format.h"

namespace conclave::storage {
namespace {

// Room for an entries payload's group, first index and count varints.
constexpr size_t kEntriesPayloadHeaderBytesMax = 30;

}  // namespace

// ---- WalOptions ----

Status WalOptions::Validate() const {
  if (segment_bytes_target < 256 || segment_bytes_target > (1ull << 40)) {
    return Status::InvalidArgument(
        fmt::format("wal: segment_bytes_target {} is outside [256, 2^40]", segment_bytes_target));
  }
  if (group_commit_bytes_max == 0) {
    return Status::InvalidArgument("wal: group_commit_bytes_max must be positive");
  }
  return Status::Ok();
}

// ---- WalBatch ----

void WalBatch::AddEntries(raft::GroupId group, std::span<const raft::Entry> entries) {
  if (!error_.ok() || entries.empty()) return;
  const uint64_t first = entries.front().index;
  if (first == 0) {
    error_ = Status::InvalidArgument(fmt::format("wal: group {}: entry index 0", group));
    return;
  }
  for (size_t i = 1; i < entries.size(); ++i) {
    if (entries[i].index != first + i) {
      error_ = Status::InvalidArgument(
          fmt::format("wal: group {}: entry index {} follows {}; entries must be consecutive",
                      group, entries[i].index, entries[i - 1].index));
      return;
    }
  }
  // Split runs that would not fit in one record.
  size_t begin = 0;
  size_t bytes = kEntriesPayloadHeaderBytesMax;
  for (size_t i = 0; i < entries.size(); ++i) {
    const size_t entry_bytes = EncodedEntryBytes(entries[i]);
    if (entry_bytes > kMaxRecordPayloadBytes - kEntriesPayloadHeaderBytesMax) {
      error_ = Status::InvalidArgument(
          fmt::format("wal: group {}: entry {} is {} bytes, more than a record holds ({})", group,
                      entries[i].index, entry_bytes, kMaxRecordPayloadBytes));
      return;
    }
    if (i > begin && bytes + entry_bytes > kMaxRecordPayloadBytes) {
      AddEntriesRecord(group, entries.subspan(begin, i - begin));
      begin = i;
      bytes = kEntriesPayloadHeaderBytesMax;
    }
    bytes += entry_bytes;
  }
  AddEntriesRecord(group, entries.subspan(begin));
}

void WalBatch::AddEntriesRecord(raft::GroupId group, std::span<const raft::Entry> entries) {
  std::string payload;
  EncodeEntries(&payload, group, entries.front().index, entries);
  AppendFramedRecord(&records_, WalRecordType::kEntries, payload);
  ops_.push_back(Op{.kind = OpKind::kEntries,
                    .group = group,
                    .first_index = entries.front().index,
                    .last_index = entries.back().index});
}

void WalBatch::TruncateFrom(raft::GroupId group, uint64_t index) {
  if (!error_.ok()) return;
  if (index == 0) {
    error_ = Status::InvalidArgument(fmt::format("wal: group {}: truncation at index 0", group));
    return;
  }
  std::string payload;
  EncodeEntries(&payload, group, index, {});
  AppendFramedRecord(&records_, WalRecordType::kEntries, payload);
  ops_.push_back(
      Op{.kind = OpKind::kEntries, .group = group, .first_index = index, .last_index = index - 1});
}

void WalBatch::SetHardState(raft::GroupId group, const raft::HardState& hard_state) {
  if (!error_.ok()) return;
  AppendFramedRecord(&records_, WalRecordType::kHardState,
                     EncodeHardState(HardStatePayload{group, hard_state}));
  ops_.push_back(Op{.kind = OpKind::kHardState, .group = group, .hard_state = hard_state});
}

void WalBatch::AddSnapshotMarker(raft::GroupId group, uint64_t index, uint64_t term) {
  if (!error_.ok()) return;
  if (index == 0) {
    error_ =
        Status::InvalidArgument(fmt::format("wal: group {}: snapshot marker at index 0", group));
    return;
  }
  AppendFramedRecord(&records_, WalRecordType::kSnapshotMarker,
                     EncodeSnapshotMarker(SnapshotMarkerPayload{group, index, term}));
  ops_.push_back(
      Op{.kind = OpKind::kSnapshotMarker, .group = group, .first_index = index, .term = term});
}

void WalBatch::Append(const WalBatch& other) {
  if (!error_.ok()) return;
  if (!other.error_.ok()) {
    error_ = other.error_;
    return;
  }
  records_ += other.records_;
  ops_.insert(ops_.end(), other.ops_.begin(), other.ops_.end());
}

void WalBatch::Clear() {
  records_.clear();
  ops_.clear();
  error_ = Status::Ok();
}

// ---- Wal: group commit ----

struct Wal::Waiter {
  const WalBatch* batch = nullptr;
  bool sync = true;
  // Written by the writer that takes this waiter; read by its owner once
  // `done` is set (both under mu_).
  Status status;
  bool done = false;
  std::condition_variable cv;
};

Wal::Wal(FileSystem* fs, std::string dir, WalOptions options)
    : fs_(fs), dir_(std::move(dir)), options_(options) {}

Wal::~Wal() {
  std::lock_guard lock(mu_);
  CHECK_MSG(queue_.empty(), "wal: destroyed with {} appends in flight", queue_.size());
  if (file_ != nullptr) (void)file_->Close();  // nothing unsynced was acknowledged
}

std::string Wal::SegmentPath(uint64_t sequence) const {
  return JoinPath(dir_, SegmentFileName(sequence));
}

Status Wal::Sync() {
  const WalBatch empty;
  Waiter self;
  self.batch = &empty;
  self.sync = true;
  return RunAppend(&self);
}

Status Wal::Append(const WalBatch& batch, bool sync) {
  if (!batch.error_.ok()) return batch.error_;
  if (batch.ops_.empty()) return Status::Ok();
  Waiter self;
  self.batch = &batch;
  self.sync = sync;
  return RunAppend(&self);
}

Status Wal::RunAppend(Waiter* waiter) {
  Waiter& self = *waiter;
  std::unique_lock lock(mu_);
  queue_.push_back(&self);
  self.cv.wait(lock, [&] { return self.done || queue_.front() == &self; });
  if (self.done) return self.status;

  // This appender is the writer: it takes itself and the appenders queued
  // behind it, up to the byte limit.
  size_t n = 0;
  uint64_t bytes = 0;
  while (n < queue_.size()) {
    const uint64_t b = queue_[n]->batch->ByteSize();
    if (n > 0 && bytes + b > options_.group_commit_bytes_max) break;
    bytes += b;
    ++n;
  }
  std::vector<Waiter*> group(queue_.begin(), queue_.begin() + static_cast<ptrdiff_t>(n));
  const Status already_failed = failed_;
  lock.unlock();

  std::map<raft::GroupId, uint64_t> entry_maxima;
  std::map<raft::GroupId, uint64_t> markers;
  bool synced = false;
  const Status written =
      already_failed.ok() ? WriteGroup(group, &entry_maxima, &markers, &synced) : already_failed;

  lock.lock();
  if (!written.ok() && failed_.ok()) {
    failed_ = written;
    LOG_ERROR("wal: {}: writes stop until the log is reopened: {}", dir_, written.ToString());
  }
  if (written.ok()) {
    Segment& segment = segments_.back();
    for (const auto& [g, index] : entry_maxima) {
      uint64_t& max = segment.max_entry_index[g];
      max = std::max(max, index);
    }
    for (const auto& [g, index] : markers) {
      uint64_t& durable = durable_markers_[g];
      durable = std::max(durable, index);
    }
    if (synced) ++stats_.syncs;
    stats_.bytes_written += write_buffer_.size();
  }
  for (Waiter* w : group) {
    CHECK(queue_.front() == w);
    queue_.pop_front();
    if (w->status.ok()) w->status = written;
    if (w->status.ok() && !w->batch->ops_.empty()) ++stats_.appends;
    if (w != &self) {
      w->done = true;
      // Under mu_, so the waiter cannot return and destroy its cv first.
      w->cv.notify_one();
    }
  }
  if (!queue_.empty()) queue_.front()->cv.notify_one();
  return self.status;
}

Status Wal::WriteGroup(std::span<Waiter*> group, std::map<raft::GroupId, uint64_t>* entry_maxima,
                       std::map<raft::GroupId, uint64_t>* markers, bool* synced) {
  // Roll over before validating: a new segment's preamble must describe only
  // records already written, never this group's.
  if (file_offset_ >= options_.segment_bytes_target) {
    RETURN_IF_ERROR(StartSegment(file_sequence_ + 1));
  }
  write_buffer_.clear();
  bool sync = false;
  for (Waiter* w : group) {
    sync = sync || w->sync;
    w->status = ValidateAndApply(*w->batch);
    if (!w->status.ok()) continue;
    write_buffer_ += w->batch->records_;
    for (const WalBatch::Op& op : w->batch->ops_) {
      if (op.kind == WalBatch::OpKind::kEntries && op.last_index >= op.first_index) {
        // Counted for the segment written now, synced or not: that only
        // keeps the segment longer.
        uint64_t& max = (*entry_maxima)[op.group];
        max = std::max(max, op.last_index);
      } else if (op.kind == WalBatch::OpKind::kSnapshotMarker) {
        // A marker releases segments only once it is durable.
        uint64_t& marker = unsynced_markers_[op.group];
        marker = std::max(marker, op.first_index);
      }
    }
  }
  if (!write_buffer_.empty()) {
    RETURN_IF_ERROR(file_->WriteAt(file_offset_, write_buffer_));
    file_offset_ += write_buffer_.size();
    unsynced_ = true;
  }
  if (!sync || !unsynced_) return Status::Ok();
  RETURN_IF_ERROR(file_->Sync());
  unsynced_ = false;
  *synced = true;
  markers->swap(unsynced_markers_);
  unsynced_markers_.clear();
  return Status::Ok();
}

Status Wal::ValidateAndApply(const WalBatch& batch) {
  // Checked against copies, so that a refused batch changes nothing.
  std::map<raft::GroupId, GroupLog> touched;
  for (const WalBatch::Op& op : batch.ops_) {
    auto it = touched.find(op.group);
    if (it == touched.end()) {
      auto existing = group_logs_.find(op.group);
      it = touched.emplace(op.group, existing == group_logs_.end() ? GroupLog{} : existing->second)
               .first;
    }
    GroupLog& log = it->second;
    switch (op.kind) {
      case WalBatch::OpKind::kEntries:
        if (op.last_index < op.first_index) {  // a truncation
          log.last_index =
              std::min(log.last_index, std::max(op.first_index - 1, log.snapshot_index));
          break;
        }
        if (log.last_index > 0 && op.first_index > log.last_index + 1) {
          return Status::InvalidArgument(fmt::format(
              "wal: group {}: entries start at index {}, leaving a gap after its last index {}",
              op.group, op.first_index, log.last_index));
        }
        log.last_index = std::max(op.last_index, log.snapshot_index);
        break;
      case WalBatch::OpKind::kHardState:
        if (op.hard_state.term < log.hard_state.term) {
          return Status::InvalidArgument(
              fmt::format("wal: group {}: hard state term {} is below the logged term {}", op.group,
                          op.hard_state.term, log.hard_state.term));
        }
        log.hard_state = op.hard_state;
        break;
      case WalBatch::OpKind::kSnapshotMarker:
        if (op.first_index < log.snapshot_index) {
          return Status::InvalidArgument(
              fmt::format("wal: group {}: snapshot marker at {} is below the previous one at {}",
                          op.group, op.first_index, log.snapshot_index));
        }
        log.snapshot_index = op.first_index;
        log.snapshot_term = op.term;
        log.last_index = std::max(log.last_index, op.first_index);
        break;
    }
  }
  for (auto& [g, log] : touched)
    group_logs_[g] = log;
  return Status::Ok();
}

// ---- Segments ----

std::string Wal::EncodePreamble() const {
  std::string out;
  for (const auto& [g, log] : group_logs_) {
    if (log.snapshot_index > 0) {
      AppendFramedRecord(
          &out, WalRecordType::kSnapshotMarker,
          EncodeSnapshotMarker(SnapshotMarkerPayload{g, log.snapshot_index, log.snapshot_term}));
    }
    if (!log.hard_state.IsEmpty()) {
      AppendFramedRecord(&out, WalRecordType::kHardState,
                         EncodeHardState(HardStatePayload{g, log.hard_state}));
    }
  }
  return out;
}

Status Wal::StartSegment(uint64_t sequence) {
  if (file_ != nullptr && unsynced_) {
    // Records appended without a sync must not be left behind unsynced in a
    // closed segment: sync them now. (Their markers count for release from
    // the next sync on, which is only conservative.)
    RETURN_IF_ERROR(file_->Sync());
    unsynced_ = false;
  }
  if (file_ != nullptr) {
    // Drop the unused preallocated tail. No sync needed: if a crash undoes
    // the truncation, the zeros read as a clean end of the segment.
    if (file_->Size() > file_offset_) RETURN_IF_ERROR(file_->Truncate(file_offset_));
    RETURN_IF_ERROR(file_->Close());
    file_.reset();
  }
  // The segment is written and synced under a temporary name, then renamed:
  // a segment with its final name always has its whole header and preamble.
  const std::string path = SegmentPath(sequence);
  const std::string temp = path + ".tmp";
  ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> file,
                   fs_->OpenWritable(temp, OpenMode::kCreateOrTruncate));
  const std::string preamble = EncodePreamble();
  std::string content;
  AppendFramedRecord(&content, WalRecordType::kSegmentHeader,
                     EncodeSegmentHeader(SegmentHeaderPayload{sequence, preamble.size()}));
  content += preamble;
  RETURN_IF_ERROR(file->WriteAt(0, content));
  if (options_.preallocate && content.size() < options_.segment_bytes_target) {
    const Status s =
        file->Preallocate(content.size(), options_.segment_bytes_target - content.size());
    if (!s.ok()) LOG_WARN("wal: {}: preallocation failed, continuing: {}", temp, s.ToString());
  }
  RETURN_IF_ERROR(file->Sync());
  RETURN_IF_ERROR(fs_->Rename(temp, path));
  RETURN_IF_ERROR(fs_->SyncDir(dir_));
  file_ = std::move(file);
  file_sequence_ = sequence;
  file_offset_ = content.size();
  std::lock_guard lock(mu_);
  segments_.push_back(Segment{.sequence = sequence});
  ++stats_.segments_created;
  stats_.bytes_written += content.size();
  return Status::Ok();
}

Status Wal::ReleaseTo(raft::GroupId group, uint64_t index, uint64_t term) {
  WalBatch batch;
  batch.AddSnapshotMarker(group, index, term);
  RETURN_IF_ERROR(Append(batch));
  return RemoveObsoleteSegments();
}

Status Wal::RemoveObsoleteSegments() {
  std::lock_guard gc_lock(gc_mu_);
  std::vector<Segment> doomed;
  {
    std::lock_guard lock(mu_);
    // Oldest first, and never the segment being written. Removing only a
    // prefix keeps replay exact: a later record may truncate entries that an
    // older one wrote, and that older record must not outlive the newer.
    while (segments_.size() > 1) {
      const Segment& oldest = segments_.front();
      const bool covered = std::all_of(
          oldest.max_entry_index.begin(), oldest.max_entry_index.end(), [&](const auto& kv) {
            auto it = durable_markers_.find(kv.first);
            return it != durable_markers_.end() && kv.second <= it->second;
          });
      if (!covered) break;
      doomed.push_back(oldest);
      segments_.pop_front();
    }
  }
  if (doomed.empty()) return Status::Ok();
  Status status;
  size_t removed = 0;
  for (const Segment& segment : doomed) {
    status = fs_->RemoveFile(SegmentPath(segment.sequence));
    if (!status.ok()) break;
    ++removed;
  }
  if (removed > 0) {
    const Status synced = fs_->SyncDir(dir_);
    if (status.ok()) status = synced;
  }
  std::lock_guard lock(mu_);
  // Segments that could not be removed stay listed, in order, so that the
  // files on disk remain a contiguous run.
  for (size_t i = doomed.size(); i > removed; --i)
    segments_.push_front(doomed[i - 1]);
  stats_.segments_removed += removed;
  if (removed > 0) {
    LOG_DEBUG("wal: {}: released segments {}..{}", dir_, doomed.front().sequence,
              doomed[removed - 1].sequence);
  }
  return status;
}

// ---- Introspection ----

WalReplay Wal::Replay() {
  std::lock_guard lock(mu_);
  WalReplay out = std::move(replay_);
  replay_ = WalReplay{};
  return out;
}

WalStats Wal::stats() const {
  std::lock_guard lock(mu_);
  WalStats out = stats_;
  out.queue_depth = queue_.size();
  return out;
}

size_t Wal::SegmentCount() const {
  std::lock_guard lock(mu_);
  return segments_.size();
}

std::vector<raft::GroupId> Wal::PinningGroups() const {
  std::lock_guard lock(mu_);
  std::vector<raft::GroupId> out;
  if (segments_.size() < 2) return out;
  for (const auto& [g, max] : segments_.front().max_entry_index) {
    auto marker = durable_markers_.find(g);
    if (marker == durable_markers_.end() || max > marker->second) out.push_back(g);
  }
  return out;
}

std::vector<uint64_t> Wal::SegmentSequences() const {
  std::lock_guard lock(mu_);
  std::vector<uint64_t> out;
  for (const Segment& s : segments_)
    out.push_back(s.sequence);
  return out;
}

}  // namespace conclave::storage
