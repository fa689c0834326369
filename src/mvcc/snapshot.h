// State machine snapshots of one group: produced from a Store as a stream of
// self-checking chunks, received into a staging file, installed atomically
// (docs/SNAPSHOT.md).
//
//   SnapshotWriter   reads a Store at one committed batch (an engine
//                    snapshot) and cuts its keyspace into chunks of about
//                    chunk_bytes each, for the transport to stream.
//   SnapshotReceiver checks each arriving chunk (checksum, order, identity)
//                    and appends it to a staging file; Finish syncs it and
//                    renames it into place, so a crash leaves either a whole
//                    snapshot file or a part file that is discarded.
//   InstallSnapshot  checks a whole snapshot file again and replaces the
//                    group's keyspace with it in one engine write batch: a
//                    crash leaves the old state or the new, never a mix.
//
// Staging files go through storage::FileSystem, so tests can crash, tear and
// corrupt them.
//
// Thread-safety: a writer or a receiver is used by one thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "mvcc/store.h"
#include "storage/storage.h"

namespace conclave::mvcc {

// Identifies a snapshot: the group, and the Raft index and term of the last
// entry applied to the state it holds.
struct SnapshotId {
  uint64_t group = 0;
  uint64_t index = 0;
  uint64_t term = 0;
  bool operator==(const SnapshotId&) const = default;
};

struct SnapshotChunk {
  SnapshotId id;
  uint32_t seq = 0;
  bool last = false;
  uint64_t total_records = 0;  // last chunk only: records in the whole snapshot
  std::vector<std::pair<std::string, std::string>> records;
};

std::string EncodeChunk(const SnapshotChunk& chunk);
// Never crashes on arbitrary bytes: returns kCorruption with what was wrong.
Result<SnapshotChunk> DecodeChunk(std::string_view bytes);

class SnapshotWriter {
 public:
  // The store's state as of its last committed batch, identified by the
  // applied index and term that batch recorded.
  static Result<std::unique_ptr<SnapshotWriter>> Create(Store* store, size_t chunk_bytes = 1 << 20);
  // Any state machine's image: every engine key of `spans` ([begin, end)
  // pairs, in order, not overlapping) as of `snapshot`, named `id`.
  static std::unique_ptr<SnapshotWriter> ForSpans(
      const storage::Engine* engine, std::shared_ptr<const storage::EngineSnapshot> snapshot,
      SnapshotId id, std::vector<std::pair<std::string, std::string>> spans,
      size_t chunk_bytes = 1 << 20);
  ~SnapshotWriter();

  const SnapshotId& id() const { return id_; }
  // Application metadata (Store::GetMeta) as of the image; a writer made by
  // Create only.
  Result<std::optional<std::string>> GetMeta(std::string_view name) const {
    return store_->GetMeta(name, snapshot_.get());
  }
  // The next encoded chunk; false when the last one has been returned.
  Result<bool> Next(std::string* chunk);

 private:
  SnapshotWriter(const storage::Engine* engine, std::shared_ptr<const storage::EngineSnapshot> snap,
                 SnapshotId id, std::vector<std::pair<std::string, std::string>> spans,
                 size_t chunk_bytes);
  // Positions it_ at the start of spans_[span_] (or past the last span).
  void SeekSpan();

  Store* store_ = nullptr;
  SnapshotId id_;
  size_t chunk_bytes_;
  std::shared_ptr<const storage::EngineSnapshot> snapshot_;
  std::vector<std::pair<std::string, std::string>> spans_;
  size_t span_ = 0;
  // Reads snapshot_, so it goes first.
  std::unique_ptr<storage::EngineIterator> it_;
  uint32_t seq_ = 0;
  uint64_t records_ = 0;
  bool done_ = false;
};

class SnapshotReceiver {
 public:
  // Stages into `dir`; the finished file is SnapshotPath(dir, id).
  SnapshotReceiver(storage::FileSystem* fs, std::string dir, SnapshotId id);
  ~SnapshotReceiver();

  // Checks and stages one chunk; chunks must arrive in order.
  Status Add(std::string_view chunk);
  bool complete() const { return complete_; }
  // After the last chunk: syncs, renames into place, syncs the directory.
  // Returns the snapshot file's path.
  Result<std::string> Finish();

 private:
  storage::FileSystem* fs_;
  std::string dir_;
  SnapshotId id_;
  std::unique_ptr<storage::WritableFile> file_;
  uint32_t next_seq_ = 0;
  uint64_t records_ = 0;
  bool complete_ = false;
  bool failed_ = false;
};

std::string SnapshotPath(const std::string& dir, const SnapshotId& id);
// Removes part files left by receivers that did not finish (after a crash).
Status RemoveStaleParts(storage::FileSystem* fs, const std::string& dir);

// Reads a snapshot file, checking every chunk (framing, checksum, order, one
// id throughout, the declared record count), and hands each record to
// `record` in order. *id gets the snapshot's id. kCorruption naming the
// file and offset of the first fault; an error from `record` stops the walk.
Status ReadSnapshotFile(
    storage::FileSystem* fs, const std::string& path, SnapshotId* id,
    const std::function<Status(std::string_view key, std::string_view value)>& record);

// Verifies every chunk of the snapshot file and replaces the store's group
// state with it, atomically. The store's applied index becomes id.index.
Status InstallSnapshot(Store* store, storage::FileSystem* fs, const std::string& path);

// A snapshot saved by a client (Maintenance.Snapshot, `snapshot save`): the
// image as in a .snap file (length-prefixed chunks), zero bytes up to a
// multiple of 512, then the SHA-256 of everything before it (so a saved file
// is 32 bytes past a multiple of 512, which etcd's tools check for).
inline constexpr size_t kSavedSnapshotAlign = 512;
// The zero padding to append after `image_bytes` bytes of image.
std::string SavedSnapshotPadding(uint64_t image_bytes);
// Checks the digest and the padding of a saved file's contents and returns
// the image (a .snap file's contents). kCorruption with the reason.
Result<std::string> DecodeSavedSnapshot(std::string_view file);

}  // namespace conclave::mvcc
