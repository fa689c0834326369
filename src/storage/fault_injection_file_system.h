// FaultInjectionFileSystem: an in-memory FileSystem that remembers what has
// been made durable, for crash-consistency tests and the simulator.
//
// Every file keeps two images: what reads see now, and what would survive a
// crash (its contents as of its last successful Sync). Writes, truncations and
// preallocations made since that Sync are kept, in order, as pending
// operations. Every directory likewise keeps its live entries and the entries
// as of its last SyncDir, so an unsynced create, rename or remove is undone
// by a crash.
//
// Crash() turns the durable images into the live ones: unsynced data and
// unsynced directory changes vanish. With CrashOptions::tear_unsynced_writes
// a random prefix of each file's pending operations survives instead, the
// last surviving write cut at a random byte (optionally followed by junk), the
// way a disk that loses power mid-write leaves a torn tail. Open WritableFiles
// from before a crash fail every later call.
//
// Faults on demand: FailNextSync, FailNextWrite and FailWritesAfter make the
// chosen operation return kIOError without effect (a failed sync leaves its
// data unsynced, so a later crash drops it). Every random choice comes from
// the seed, so a failing run replays exactly.
//
// Simplifications: directories themselves are durable as soon as
// CreateDirs returns; a rename between two directories is made durable by
// syncing the destination's directory.
//
// Thread-safety: all methods are thread-safe (one internal mutex).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "base/random.h"
#include "storage/file_system.h"

namespace conclave::storage {

struct CrashOptions {
  // Keep a random prefix of each file's unsynced operations, the last kept
  // write cut at a random byte, instead of dropping them all.
  bool tear_unsynced_writes = false;
  // With tear_unsynced_writes: after the cut, overwrite a random number of
  // the torn write's remaining bytes with junk (a half-written sector).
  bool junk_after_tear = false;
};

class FaultInjectionFileSystem final : public FileSystem {
 public:
  explicit FaultInjectionFileSystem(uint64_t seed);
  ~FaultInjectionFileSystem() override;

  Result<std::unique_ptr<WritableFile>> OpenWritable(const std::string& path,
                                                     OpenMode mode) override;
  Result<std::string> ReadFile(const std::string& path) override;
  Result<std::string> ReadFileAt(const std::string& path, uint64_t offset,
                                 uint64_t length) override;
  Result<std::vector<std::string>> ListDir(const std::string& dir) override;
  Status Rename(const std::string& from, const std::string& to) override;
  Status RemoveFile(const std::string& path) override;
  Status CreateDirs(const std::string& dir) override;
  Status SyncDir(const std::string& dir) override;
  Result<uint64_t> FileSize(const std::string& path) override;
  Result<bool> Exists(const std::string& path) override;

  // Loses everything not yet durable (see the file comment).
  void Crash(const CrashOptions& options = {});

  // The next Sync() or SyncDir() fails with kIOError.
  void FailNextSync();
  // The next write (Append or WriteAt) fails with kIOError, writing nothing.
  void FailNextWrite();
  // `n` more writes succeed; every write after them fails until ClearFaults.
  void FailWritesAfter(uint64_t n);
  void ClearFaults();

  // Flips the bits of `mask` in the byte at `offset`, in both the live and the
  // durable image, as a decaying disk would. The file must have no unsynced
  // operations.
  Status CorruptByte(const std::string& path, uint64_t offset, uint8_t mask);

  // Bytes that a crash without tearing would drop, summed over all files.
  uint64_t UnsyncedBytes() const;
  uint64_t sync_count() const;
  uint64_t write_count() const;

 private:
  class File;

  // An operation made since the file's last Sync.
  struct PendingOp {
    bool is_write = true;  // a write of `data` at `offset`, else a resize to `size`
    uint64_t offset = 0;
    std::string data;
    uint64_t size = 0;
  };
  struct Inode {
    std::string data;    // what reads see
    std::string synced;  // what survives a crash
    std::vector<PendingOp> pending;
  };
  struct Dir {
    std::map<std::string, std::shared_ptr<Inode>> live;
    std::map<std::string, std::shared_ptr<Inode>> synced;
  };

  // Callbacks from File, with mu_ not held.
  Status FileWrite(Inode* inode, uint64_t epoch, std::optional<uint64_t> offset,
                   std::string_view data);
  Status FileSync(Inode* inode, uint64_t epoch);
  Status FileResize(Inode* inode, uint64_t epoch, uint64_t size, bool grow_only);
  uint64_t FileSizeOf(const Inode* inode) const;

  Status CheckEpoch(uint64_t epoch) const;                   // mu_ held
  Dir* FindDir(const std::string& dir);                      // mu_ held
  Inode* FindFile(const std::string& path);                  // mu_ held
  void TearInto(Inode* inode, const CrashOptions& options);  // mu_ held

  mutable std::mutex mu_;
  SeededRandom rnd_;
  std::map<std::string, Dir> dirs_;
  uint64_t epoch_ = 0;  // bumped by Crash; handles from older epochs are dead
  bool fail_next_sync_ = false;
  bool fail_next_write_ = false;
  std::optional<uint64_t> writes_before_failure_;
  uint64_t sync_count_ = 0;
  uint64_t write_count_ = 0;
};

}  // namespace conclave::storage
