// The POSIX implementation of FileSystem: the only code in Conclave's storage
// that makes file system calls.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "storage/file_system.h"

namespace conclave::storage {
namespace {

Status ErrnoStatus(std::string_view op, const std::string& path, int err) {
  std::string message = fmt::format("{} {}: {}", op, path, std::strerror(err));
  if (err == ENOENT) return Status::NotFound(std::move(message));
  if (err == EEXIST) return Status::AlreadyExists(std::move(message));
  return Status::IOError(std::move(message));
}

class PosixWritableFile final : public WritableFile {
 public:
  PosixWritableFile(std::string path, int fd, uint64_t size)
      : path_(std::move(path)), fd_(fd), size_(size) {}

  ~PosixWritableFile() override {
    if (fd_ >= 0) ::close(fd_);
  }

  Status Append(std::string_view data) override { return WriteAt(size_, data); }

  Status WriteAt(uint64_t offset, std::string_view data) override {
    if (fd_ < 0) return Closed("write");
    const char* p = data.data();
    size_t left = data.size();
    uint64_t at = offset;
    while (left > 0) {
      const ssize_t n = ::pwrite(fd_, p, left, static_cast<off_t>(at));
      if (n < 0) {
        if (errno == EINTR) continue;
        return ErrnoStatus("pwrite", path_, errno);
      }
      p += n;
      left -= static_cast<size_t>(n);
      at += static_cast<uint64_t>(n);
    }
    size_ = std::max(size_, at);
    return Status::Ok();
  }

  Status Sync() override {
    if (fd_ < 0) return Closed("sync");
    while (::fdatasync(fd_) != 0) {
      if (errno != EINTR) return ErrnoStatus("fdatasync", path_, errno);
    }
    return Status::Ok();
  }

  Status Preallocate(uint64_t offset, uint64_t length) override {
    if (fd_ < 0) return Closed("preallocate");
    if (length == 0) return Status::Ok();
    // Mode 0 extends the file size, so that a later fdatasync has no size
    // change to journal.
    int rc;
    do {
      rc = ::fallocate(fd_, 0, static_cast<off_t>(offset), static_cast<off_t>(length));
    } while (rc != 0 && errno == EINTR);
    if (rc != 0) {
      if (errno == EOPNOTSUPP || errno == ENOSYS) return Status::Ok();
      return ErrnoStatus("fallocate", path_, errno);
    }
    size_ = std::max(size_, offset + length);
    return Status::Ok();
  }

  Status Truncate(uint64_t size) override {
    if (fd_ < 0) return Closed("truncate");
    int rc;
    do {
      rc = ::ftruncate(fd_, static_cast<off_t>(size));
    } while (rc != 0 && errno == EINTR);
    if (rc != 0) return ErrnoStatus("ftruncate", path_, errno);
    size_ = size;
    return Status::Ok();
  }

  Status Close() override {
    if (fd_ < 0) return Closed("close");
    const int fd = fd_;
    fd_ = -1;
    // No retry on EINTR: the descriptor is released either way on Linux.
    if (::close(fd) != 0 && errno != EINTR) return ErrnoStatus("close", path_, errno);
    return Status::Ok();
  }

  uint64_t Size() const override { return size_; }

 private:
  Status Closed(std::string_view op) const {
    return Status::FailedPrecondition(fmt::format("{} {}: file is closed", op, path_));
  }

  const std::string path_;
  int fd_;
  uint64_t size_;
};

// Closes a descriptor on every return path.
class FdCloser {
 public:
  explicit FdCloser(int fd) : fd_(fd) {}
  ~FdCloser() {
    if (fd_ >= 0) ::close(fd_);
  }
  FdCloser(const FdCloser&) = delete;
  FdCloser& operator=(const FdCloser&) = delete;

 private:
  int fd_;
};

Result<std::string> PreadAll(int fd, const std::string& path, uint64_t offset, uint64_t length) {
  std::string out(length, '\0');
  uint64_t done = 0;
  while (done < length) {
    const ssize_t n =
        ::pread(fd, out.data() + done, length - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus("pread", path, errno);
    }
    if (n == 0) break;  // end of file
    done += static_cast<uint64_t>(n);
  }
  out.resize(done);
  return out;
}

class PosixFileSystem final : public FileSystem {
 public:
  Result<std::unique_ptr<WritableFile>> OpenWritable(const std::string& path,
                                                     OpenMode mode) override {
    int flags = O_WRONLY | O_CLOEXEC;
    switch (mode) {
      case OpenMode::kCreateNew:
        flags |= O_CREAT | O_EXCL;
        break;
      case OpenMode::kCreateOrTruncate:
        flags |= O_CREAT | O_TRUNC;
        break;
      case OpenMode::kOpenExisting:
        break;
    }
    int fd;
    do {
      fd = ::open(path.c_str(), flags, 0644);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) return ErrnoStatus("open", path, errno);
    struct stat st;
    if (::fstat(fd, &st) != 0) {
      const int err = errno;
      ::close(fd);
      return ErrnoStatus("fstat", path, err);
    }
    return std::unique_ptr<WritableFile>(
        std::make_unique<PosixWritableFile>(path, fd, static_cast<uint64_t>(st.st_size)));
  }

  Result<std::string> ReadFile(const std::string& path) override {
    const int fd = OpenForRead(path);
    if (fd < 0) return ErrnoStatus("open", path, errno);
    FdCloser closer(fd);
    struct stat st;
    if (::fstat(fd, &st) != 0) return ErrnoStatus("fstat", path, errno);
    return PreadAll(fd, path, 0, static_cast<uint64_t>(st.st_size));
  }

  Result<std::string> ReadFileAt(const std::string& path, uint64_t offset,
                                 uint64_t length) override {
    const int fd = OpenForRead(path);
    if (fd < 0) return ErrnoStatus("open", path, errno);
    FdCloser closer(fd);
    struct stat st;
    if (::fstat(fd, &st) != 0) return ErrnoStatus("fstat", path, errno);
    const auto size = static_cast<uint64_t>(st.st_size);
    if (offset >= size) return std::string();
    return PreadAll(fd, path, offset, std::min(length, size - offset));
  }

  Result<std::vector<std::string>> ListDir(const std::string& dir) override {
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) return ErrnoStatus("opendir", dir, errno);
    std::vector<std::string> names;
    errno = 0;
    while (struct dirent* ent = ::readdir(d)) {
      const std::string_view name(ent->d_name);
      if (name != "." && name != "..") names.emplace_back(name);
    }
    const int err = errno;
    ::closedir(d);
    if (err != 0) return ErrnoStatus("readdir", dir, err);
    std::sort(names.begin(), names.end());
    return names;
  }

  Status Rename(const std::string& from, const std::string& to) override {
    if (::rename(from.c_str(), to.c_str()) != 0) {
      return ErrnoStatus("rename", from + " -> " + to, errno);
    }
    return Status::Ok();
  }

  Status RemoveFile(const std::string& path) override {
    if (::unlink(path.c_str()) != 0) return ErrnoStatus("unlink", path, errno);
    return Status::Ok();
  }

  Status CreateDirs(const std::string& dir) override {
    if (dir.empty()) return Status::InvalidArgument("mkdir: empty path");
    // Each prefix ending before a '/', then the whole path.
    for (size_t pos = dir.find('/', 1);; pos = dir.find('/', pos + 1)) {
      const std::string prefix = pos == std::string::npos ? dir : dir.substr(0, pos);
      if (::mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST) {
        return ErrnoStatus("mkdir", prefix, errno);
      }
      if (pos == std::string::npos) break;
    }
    struct stat st;
    if (::stat(dir.c_str(), &st) != 0) return ErrnoStatus("stat", dir, errno);
    if (!S_ISDIR(st.st_mode)) return Status::IOError(fmt::format("mkdir {}: not a directory", dir));
    return Status::Ok();
  }

  Status SyncDir(const std::string& dir) override {
    int fd;
    do {
      fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) return ErrnoStatus("open", dir, errno);
    FdCloser closer(fd);
    while (::fsync(fd) != 0) {
      if (errno != EINTR) return ErrnoStatus("fsync", dir, errno);
    }
    return Status::Ok();
  }

  Result<uint64_t> FileSize(const std::string& path) override {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) return ErrnoStatus("stat", path, errno);
    return static_cast<uint64_t>(st.st_size);
  }

  Result<bool> Exists(const std::string& path) override {
    struct stat st;
    if (::stat(path.c_str(), &st) == 0) return true;
    if (errno == ENOENT) return false;
    return ErrnoStatus("stat", path, errno);
  }

 private:
  static int OpenForRead(const std::string& path) {
    int fd;
    do {
      fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    return fd;
  }
};

}  // namespace

std::unique_ptr<FileSystem> NewPosixFileSystem() {
  return std::make_unique<PosixFileSystem>();
}

}  // namespace conclave::storage
