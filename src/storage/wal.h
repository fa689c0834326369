// Wal: the write-ahead log that one Conclave node shares among all of its
// Raft groups.
//
// What it stores. Records of four kinds, each tagged with its Raft group:
// log entries, hard states, snapshot markers ("entries at or below this index
// are in a snapshot and may be released") and truncations. A WalBatch collects
// records for any number of groups; Append makes a batch durable, and one
// sync serves every batch that was waiting (group commit). The format is in
// docs/WAL.md.
//
// Order of effects. Append returns OK only after the batch's records are on
// stable storage, so a caller may send messages that depend on them (a vote,
// an append acknowledgement) once it returns. Records are durable in the
// order they were appended: after a crash, if a record is replayed then so is
// every record appended before it. An Append that did not return OK may have
// left any prefix of its records behind. So within a batch, put a group's
// entries before the hard state whose commit index covers them.
//
// Replay. Open reads every segment, truncates a torn tail (a damaged final
// record at the very end of the last segment, logged as a warning) and
// refuses with kCorruption any damage before that, naming the file, the
// offset and what was expected. Replay() then hands over, per group, the
// latest hard state, the latest snapshot marker and the entries after it.
// Entries are replayed as written: a later record for indexes a group has
// already logged replaces that suffix, exactly as a Raft follower's log
// replaces a conflicting suffix.
//
// Release. Segments are removed oldest first once every entry in them is at
// or below its group's latest durable snapshot marker (ReleaseTo,
// RemoveObsoleteSegments). Each new segment starts with a copy of every
// group's hard state and snapshot marker, so old segments never hold the
// only copy of either.
//
// Errors. After a failed write or sync the log stops: that Append and every
// later one fail with the same kIOError, because the state of the file is
// no longer known. Reopen to recover; nothing acknowledged is lost.
//
// Thread-safety: Append, ReleaseTo, RemoveObsoleteSegments and stats() may
// be called from any number of threads at once. The appender that finds no
// write in progress becomes the writer for itself and every appender queued
// behind it (one write, one sync), then hands the role to the next in line;
// the WAL has no thread of its own, so a single-threaded caller (the
// simulator) drives all of its I/O. Lock order: gc_mu_ before mu_; no lock
// is held during I/O except gc_mu_ while removing segments.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "base/status.h"
#include "raft/raft.h"
#include "storage/file_system.h"

namespace conclave::storage {

struct WalOptions {
  // A segment is closed and a new one started once a write takes it past
  // this size; it is preallocated to this size when created.
  uint64_t segment_bytes_target = 64ull << 20;
  // One group commit writes at most this much (at least one whole batch).
  uint64_t group_commit_bytes_max = 4ull << 20;
  // Reserve each new segment's space up front (fallocate).
  bool preallocate = true;

  Status Validate() const;
};

// A set of records to append together. Building one does the encoding and
// checksumming, so appenders do that work in parallel before they queue.
class WalBatch {
 public:
  // Entries with consecutive indexes. When replayed they replace the group's
  // log from entries.front().index onward.
  void AddEntries(raft::GroupId group, std::span<const raft::Entry> entries);
  // Drops the group's entries at `index` and above (after installing a
  // snapshot at index - 1, say, whose log replaces the old one).
  void TruncateFrom(raft::GroupId group, uint64_t index);
  void SetHardState(raft::GroupId group, const raft::HardState& hard_state);
  // Entries at or below `index` are covered by a snapshot whose last entry
  // has term `term`. Markers of a group must not go backwards.
  void AddSnapshotMarker(raft::GroupId group, uint64_t index, uint64_t term);

  // Appends `other`'s records after this batch's (one write for both).
  void Append(const WalBatch& other);

  bool empty() const { return ops_.empty() && error_.ok(); }
  uint64_t ByteSize() const { return records_.size(); }
  void Clear();

 private:
  friend class Wal;

  enum class OpKind : uint8_t { kEntries, kHardState, kSnapshotMarker };
  // What Append needs to know about a record without decoding it.
  struct Op {
    OpKind kind = OpKind::kEntries;
    raft::GroupId group = 0;
    uint64_t first_index = 0;  // entries: replaced from here
    uint64_t last_index = 0;   // entries: last written (first_index - 1 for a truncation)
    uint64_t term = 0;         // snapshot marker
    raft::HardState hard_state;
  };

  void AddEntriesRecord(raft::GroupId group, std::span<const raft::Entry> entries);

  std::string records_;  // framed records, ready to write
  std::vector<Op> ops_;
  Status error_;  // the first invalid call; Append refuses the batch
};

// One group's state as replayed.
struct WalGroupState {
  raft::HardState hard_state;
  // The latest snapshot marker; 0 if the group has none.
  uint64_t snapshot_index = 0;
  uint64_t snapshot_term = 0;
  // Consecutive entries; when there is a marker, the first is
  // snapshot_index + 1.
  std::vector<raft::Entry> entries;

  bool operator==(const WalGroupState&) const = default;
};

struct WalReplay {
  std::map<raft::GroupId, WalGroupState> groups;
};

struct WalStats {
  uint64_t appends = 0;        // Append calls that returned OK with records
  uint64_t syncs = 0;          // group commits (one data sync each)
  uint64_t bytes_written = 0;  // record bytes, including preambles
  uint64_t segments_created = 0;
  uint64_t segments_removed = 0;
  uint64_t queue_depth = 0;  // appends waiting or being written right now
};

class Wal {
 public:
  // Opens the log in directory `dir` of `fs`, recovers it and starts a new
  // segment. A missing `dir` is created and its parent synced (the parent
  // itself must already be durable). `fs` must outlive the Wal. Only one Wal
  // may have a directory open at a time.
  static Result<std::unique_ptr<Wal>> Open(FileSystem* fs, std::string dir,
                                           WalOptions options = {});
  ~Wal();
  Wal(const Wal&) = delete;
  Wal& operator=(const Wal&) = delete;

  // What the log held when it was opened. The first call hands it over;
  // later calls return an empty replay.
  WalReplay Replay();

  // Makes `batch` durable; see the file comment. kInvalidArgument (and
  // nothing written) if the batch breaks a group's order: entries that leave
  // a gap after the group's last index, a snapshot marker below the previous
  // one, a hard state with a lower term.
  //
  // With `sync` false the records are written but not synced: they become
  // durable with the next sync (a later Append with sync, or Sync), and a
  // crash before it may keep any prefix of them. The simulator writes this
  // way so that a crash can land between a write and its sync.
  Status Append(const WalBatch& batch, bool sync = true);
  // Makes every record appended so far durable.
  Status Sync();

  // Durably marks entries of `group` up to `index` (whose term is `term`) as
  // covered by a snapshot, then removes segments nothing needs any more.
  Status ReleaseTo(raft::GroupId group, uint64_t index, uint64_t term);
  // Removes, oldest first, every segment before the one being written whose
  // entries are all at or below their groups' durable snapshot markers.
  Status RemoveObsoleteSegments();

  WalStats stats() const;
  // Sequence numbers of the segments on disk, oldest first.
  std::vector<uint64_t> SegmentSequences() const;
  size_t SegmentCount() const;
  // The groups that keep the oldest segment from being removed: it holds
  // entries of theirs above their durable snapshot marker. Empty when only
  // the segment being written is left.
  std::vector<raft::GroupId> PinningGroups() const;
  const std::string& dir() const { return dir_; }

 private:
  // What the writer knows of a group (writer-only, see Writer).
  struct GroupLog {
    uint64_t snapshot_index = 0;
    uint64_t snapshot_term = 0;
    uint64_t last_index = 0;  // max(snapshot_index, last entry's index)
    raft::HardState hard_state;
  };
  // Per segment: for every group with entries in it, the highest index.
  struct Segment {
    uint64_t sequence = 0;
    std::map<raft::GroupId, uint64_t> max_entry_index;
  };
  // An Append waiting in the queue.
  struct Waiter;

  Wal(FileSystem* fs, std::string dir, WalOptions options);

  Status Recover();
  Status RecoverSegment(uint64_t sequence, bool is_last, class WalReplayBuilder* builder);
  Status StartSegment(uint64_t sequence);

  // Queues `self`, becomes the writer when it is first in line, writes the
  // group and hands the role on.
  Status RunAppend(Waiter* self);
  // The writer's part of Append: validates each batch, writes the valid ones
  // and syncs once if any of them asked for it (*synced then set). Runs
  // without mu_; only the writer of the moment calls it.
  Status WriteGroup(std::span<Waiter*> group, std::map<raft::GroupId, uint64_t>* entry_maxima,
                    std::map<raft::GroupId, uint64_t>* markers, bool* synced);
  Status ValidateAndApply(const WalBatch& batch);
  std::string EncodePreamble() const;
  std::string SegmentPath(uint64_t sequence) const;

  FileSystem* const fs_;
  const std::string dir_;
  const WalOptions options_;

  // Writer-only state: touched by whichever appender is the writer, and by
  // Open before the Wal is shared; handed between writers under mu_.
  std::unique_ptr<WritableFile> file_;
  uint64_t file_sequence_ = 0;
  uint64_t file_offset_ = 0;
  std::map<raft::GroupId, GroupLog> group_logs_;
  std::string write_buffer_;
  // Records written to file_ since its last sync (Append without sync).
  bool unsynced_ = false;
  // Per group, the highest snapshot marker among them: markers release
  // segments only once synced.
  std::map<raft::GroupId, uint64_t> unsynced_markers_;

  std::mutex gc_mu_;  // serializes segment removal
  mutable std::mutex mu_;
  std::deque<Waiter*> queue_;                          // guarded by mu_; front is the writer
  Status failed_;                                      // guarded by mu_; sticky I/O error
  std::deque<Segment> segments_;                       // guarded by mu_; back is being written
  std::map<raft::GroupId, uint64_t> durable_markers_;  // guarded by mu_
  WalStats stats_;                                     // guarded by mu_
  WalReplay replay_;                                   // guarded by mu_
};

}  // namespace conclave::storage
