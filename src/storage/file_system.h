// FileSystem: the one seam through which Conclave's storage touches files.
//
// Everything under src/storage reads and writes through a FileSystem handed to
// it, never through POSIX calls of its own. NewPosixFileSystem() is the real
// one (the only code that calls open/pwrite/fdatasync/...);
// FaultInjectionFileSystem (fault_injection_file_system.h) keeps files in
// memory, remembers what has been synced, and can crash, tear writes and fail
// operations on demand, so tests and the simulator can check what survives.
//
// Durability contract, the same for every implementation:
//   - data written to a WritableFile survives a crash only after a Sync() of
//     that file has returned OK;
//   - creating, renaming or removing a directory entry survives a crash only
//     after SyncDir() of the directory holding it has returned OK;
//   - a failed Sync() says nothing about which bytes reached the disk; callers
//     must treat the file as suspect (the WAL stops accepting writes).
//
// Paths are plain strings joined with '/'. Expected failures come back as
// Status: kNotFound for a missing file or directory, kAlreadyExists for
// kCreateNew on an existing file, kIOError for anything the system refused.
//
// Thread-safety: a FileSystem may be called from any thread. A WritableFile
// is used by one thread at a time (its owner serializes access).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace conclave::storage {

class WritableFile {
 public:
  virtual ~WritableFile() = default;

  // Writes at the current end of the file (which preallocation may have
  // moved: Preallocate extends the file with zeros).
  virtual Status Append(std::string_view data) = 0;
  // Writes at `offset`, extending the file if needed.
  virtual Status WriteAt(uint64_t offset, std::string_view data) = 0;
  // Makes written data and the file size durable (fdatasync).
  virtual Status Sync() = 0;
  // Reserves [offset, offset + length) and extends the file to cover it with
  // zeros, so later writes there need no allocation and syncs need no size
  // update. Best effort: where the file system cannot preallocate it returns
  // OK and does nothing.
  virtual Status Preallocate(uint64_t offset, uint64_t length) = 0;
  // Sets the file size, dropping bytes beyond it or adding zeros.
  virtual Status Truncate(uint64_t size) = 0;
  // Releases the handle. Does not sync. Further calls fail.
  virtual Status Close() = 0;
  // The file's size as this handle last saw it.
  virtual uint64_t Size() const = 0;
};

enum class OpenMode : uint8_t {
  kCreateNew,  // fails with kAlreadyExists if the file exists
  kCreateOrTruncate,
  kOpenExisting,  // fails with kNotFound if it does not; keeps the contents
};

class FileSystem {
 public:
  virtual ~FileSystem() = default;

  virtual Result<std::unique_ptr<WritableFile>> OpenWritable(const std::string& path,
                                                             OpenMode mode) = 0;
  // The whole file.
  virtual Result<std::string> ReadFile(const std::string& path) = 0;
  // Up to `length` bytes from `offset`; fewer at the end of the file.
  virtual Result<std::string> ReadFileAt(const std::string& path, uint64_t offset,
                                         uint64_t length) = 0;
  // Names in `dir` (without "." and ".."), sorted.
  virtual Result<std::vector<std::string>> ListDir(const std::string& dir) = 0;
  // Atomically replaces `to` if it exists.
  virtual Status Rename(const std::string& from, const std::string& to) = 0;
  virtual Status RemoveFile(const std::string& path) = 0;
  // Creates `dir` and any missing parents; OK if it exists.
  virtual Status CreateDirs(const std::string& dir) = 0;
  // Makes the entries of `dir` (creates, renames, removes) durable.
  virtual Status SyncDir(const std::string& dir) = 0;
  virtual Result<uint64_t> FileSize(const std::string& path) = 0;
  virtual Result<bool> Exists(const std::string& path) = 0;
};

// The operating system's file system. The returned object is stateless;
// many may exist.
std::unique_ptr<FileSystem> NewPosixFileSystem();

// "a/b" + "c" -> "a/b/c".
std::string JoinPath(std::string_view dir, std::string_view name);

}  // namespace conclave::storage
