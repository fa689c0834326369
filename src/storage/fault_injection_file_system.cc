#include "storage/fault_injection_file_system.h"

#include <algorithm>
#include <set>
#include <utility>

#include <fmt/format.h>

namespace conclave::storage {
namespace {

// "a/b/c" -> {"a/b", "c"}; "c" -> {"", "c"}; "/c" -> {"", "c"}.
std::pair<std::string, std::string> SplitPath(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return {"", path};
  return {path.substr(0, slash), path.substr(slash + 1)};
}

}  // namespace

class FaultInjectionFileSystem::File final : public WritableFile {
 public:
  File(FaultInjectionFileSystem* fs, std::string path, std::shared_ptr<Inode> inode, uint64_t epoch)
      : fs_(fs), path_(std::move(path)), inode_(std::move(inode)), epoch_(epoch) {}

  Status Append(std::string_view data) override {
    if (closed_) return Closed();
    return fs_->FileWrite(inode_.get(), epoch_, std::nullopt, data);
  }
  Status WriteAt(uint64_t offset, std::string_view data) override {
    if (closed_) return Closed();
    return fs_->FileWrite(inode_.get(), epoch_, offset, data);
  }
  Status Sync() override {
    if (closed_) return Closed();
    return fs_->FileSync(inode_.get(), epoch_);
  }
  Status Preallocate(uint64_t offset, uint64_t length) override {
    if (closed_) return Closed();
    return fs_->FileResize(inode_.get(), epoch_, offset + length, /*grow_only=*/true);
  }
  Status Truncate(uint64_t size) override {
    if (closed_) return Closed();
    return fs_->FileResize(inode_.get(), epoch_, size, /*grow_only=*/false);
  }
  Status Close() override {
    if (closed_) return Closed();
    closed_ = true;
    return Status::Ok();
  }
  uint64_t Size() const override { return fs_->FileSizeOf(inode_.get()); }

 private:
  Status Closed() const {
    return Status::FailedPrecondition(fmt::format("{}: file is closed", path_));
  }

  FaultInjectionFileSystem* const fs_;
  const std::string path_;
  const std::shared_ptr<Inode> inode_;
  const uint64_t epoch_;
  bool closed_ = false;
};

namespace {

void ApplyWrite(std::string* content, uint64_t offset, std::string_view data) {
  if (data.empty()) return;
  if (content->size() < offset + data.size()) content->resize(offset + data.size(), '\0');
  std::copy(data.begin(), data.end(), content->begin() + static_cast<ptrdiff_t>(offset));
}

}  // namespace

FaultInjectionFileSystem::FaultInjectionFileSystem(uint64_t seed) : rnd_(seed) {
  dirs_[""];  // the root, parent of "/x" and of relative names
}

FaultInjectionFileSystem::~FaultInjectionFileSystem() = default;

Status FaultInjectionFileSystem::CheckEpoch(uint64_t epoch) const {
  if (epoch != epoch_) return Status::IOError("file handle opened before a crash");
  return Status::Ok();
}

FaultInjectionFileSystem::Dir* FaultInjectionFileSystem::FindDir(const std::string& dir) {
  // The root is "", which "/" and "." also name.
  auto it = dirs_.find(dir == "/" || dir == "." ? std::string() : dir);
  return it == dirs_.end() ? nullptr : &it->second;
}

FaultInjectionFileSystem::Inode* FaultInjectionFileSystem::FindFile(const std::string& path) {
  const auto [dir_name, name] = SplitPath(path);
  Dir* dir = FindDir(dir_name);
  if (dir == nullptr) return nullptr;
  auto it = dir->live.find(name);
  return it == dir->live.end() ? nullptr : it->second.get();
}

Result<std::unique_ptr<WritableFile>> FaultInjectionFileSystem::OpenWritable(
    const std::string& path, OpenMode mode) {
  std::lock_guard lock(mu_);
  const auto [dir_name, name] = SplitPath(path);
  Dir* dir = FindDir(dir_name);
  if (dir == nullptr) return Status::NotFound(fmt::format("open {}: no such directory", path));
  if (name.empty() || dirs_.count(path) > 0) {
    return Status::IOError(fmt::format("open {}: is a directory", path));
  }
  auto it = dir->live.find(name);
  std::shared_ptr<Inode> inode;
  if (it == dir->live.end()) {
    if (mode == OpenMode::kOpenExisting) {
      return Status::NotFound(fmt::format("open {}: no such file", path));
    }
    inode = std::make_shared<Inode>();
    dir->live[name] = inode;
  } else {
    if (mode == OpenMode::kCreateNew) {
      return Status::AlreadyExists(fmt::format("open {}: file exists", path));
    }
    inode = it->second;
    if (mode == OpenMode::kCreateOrTruncate && !inode->data.empty()) {
      inode->data.clear();
      inode->pending.push_back(PendingOp{.is_write = false, .size = 0});
    }
  }
  return std::unique_ptr<WritableFile>(std::make_unique<File>(this, path, inode, epoch_));
}

Status FaultInjectionFileSystem::FileWrite(Inode* inode, uint64_t epoch,
                                           std::optional<uint64_t> offset, std::string_view data) {
  std::lock_guard lock(mu_);
  RETURN_IF_ERROR(CheckEpoch(epoch));
  ++write_count_;
  if (fail_next_write_) {
    fail_next_write_ = false;
    return Status::IOError("injected write failure");
  }
  if (writes_before_failure_) {
    if (*writes_before_failure_ == 0) return Status::IOError("injected write failure");
    --*writes_before_failure_;
  }
  const uint64_t at = offset.value_or(inode->data.size());
  ApplyWrite(&inode->data, at, data);
  inode->pending.push_back(PendingOp{.is_write = true, .offset = at, .data = std::string(data)});
  return Status::Ok();
}

Status FaultInjectionFileSystem::FileSync(Inode* inode, uint64_t epoch) {
  std::lock_guard lock(mu_);
  RETURN_IF_ERROR(CheckEpoch(epoch));
  if (fail_next_sync_) {
    fail_next_sync_ = false;
    return Status::IOError("injected sync failure");
  }
  ++sync_count_;
  inode->synced = inode->data;
  inode->pending.clear();
  return Status::Ok();
}

Status FaultInjectionFileSystem::FileResize(Inode* inode, uint64_t epoch, uint64_t size,
                                            bool grow_only) {
  std::lock_guard lock(mu_);
  RETURN_IF_ERROR(CheckEpoch(epoch));
  if (grow_only && size <= inode->data.size()) return Status::Ok();
  inode->data.resize(size, '\0');
  inode->pending.push_back(PendingOp{.is_write = false, .size = size});
  return Status::Ok();
}

uint64_t FaultInjectionFileSystem::FileSizeOf(const Inode* inode) const {
  std::lock_guard lock(mu_);
  return inode->data.size();
}

Result<std::string> FaultInjectionFileSystem::ReadFile(const std::string& path) {
  return ReadFileAt(path, 0, UINT64_MAX);
}

Result<std::string> FaultInjectionFileSystem::ReadFileAt(const std::string& path, uint64_t offset,
                                                         uint64_t length) {
  std::lock_guard lock(mu_);
  const Inode* inode = FindFile(path);
  if (inode == nullptr) return Status::NotFound(fmt::format("read {}: no such file", path));
  const std::string& data = inode->data;
  if (offset >= data.size()) return std::string();
  return data.substr(offset, std::min<uint64_t>(length, data.size() - offset));
}

Result<std::vector<std::string>> FaultInjectionFileSystem::ListDir(const std::string& dir_name) {
  std::lock_guard lock(mu_);
  Dir* dir = FindDir(dir_name);
  if (dir == nullptr) return Status::NotFound(fmt::format("list {}: no such directory", dir_name));
  std::vector<std::string> names;
  for (const auto& [name, inode] : dir->live)
    names.push_back(name);
  for (const auto& [path, unused] : dirs_) {
    if (path.empty()) continue;
    const auto [parent, name] = SplitPath(path);
    if (parent == dir_name) names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

Status FaultInjectionFileSystem::Rename(const std::string& from, const std::string& to) {
  std::lock_guard lock(mu_);
  const auto [from_dir_name, from_name] = SplitPath(from);
  const auto [to_dir_name, to_name] = SplitPath(to);
  Dir* from_dir = FindDir(from_dir_name);
  Dir* to_dir = FindDir(to_dir_name);
  if (from_dir == nullptr || from_dir->live.count(from_name) == 0) {
    return Status::NotFound(fmt::format("rename {}: no such file", from));
  }
  if (to_dir == nullptr)
    return Status::NotFound(fmt::format("rename to {}: no such directory", to));
  if (dirs_.count(to) > 0) return Status::IOError(fmt::format("rename to {}: is a directory", to));
  std::shared_ptr<Inode> inode = from_dir->live[from_name];
  from_dir->live.erase(from_name);
  to_dir->live[to_name] = std::move(inode);
  return Status::Ok();
}

Status FaultInjectionFileSystem::RemoveFile(const std::string& path) {
  std::lock_guard lock(mu_);
  const auto [dir_name, name] = SplitPath(path);
  Dir* dir = FindDir(dir_name);
  if (dir == nullptr || dir->live.erase(name) == 0) {
    return Status::NotFound(fmt::format("remove {}: no such file", path));
  }
  return Status::Ok();
}

Status FaultInjectionFileSystem::CreateDirs(const std::string& path) {
  std::lock_guard lock(mu_);
  if (path.empty()) return Status::InvalidArgument("mkdir: empty path");
  for (size_t pos = path.find('/', 1);; pos = path.find('/', pos + 1)) {
    const std::string prefix = pos == std::string::npos ? path : path.substr(0, pos);
    const auto [parent, name] = SplitPath(prefix);
    Dir* parent_dir = FindDir(parent);
    if (parent_dir != nullptr && parent_dir->live.count(name) > 0) {
      return Status::IOError(fmt::format("mkdir {}: a file has that name", prefix));
    }
    dirs_[prefix];
    if (pos == std::string::npos) break;
  }
  return Status::Ok();
}

Status FaultInjectionFileSystem::SyncDir(const std::string& dir_name) {
  std::lock_guard lock(mu_);
  Dir* dir = FindDir(dir_name);
  if (dir == nullptr) return Status::NotFound(fmt::format("sync {}: no such directory", dir_name));
  if (fail_next_sync_) {
    fail_next_sync_ = false;
    return Status::IOError("injected directory sync failure");
  }
  ++sync_count_;
  dir->synced = dir->live;
  return Status::Ok();
}

Result<uint64_t> FaultInjectionFileSystem::FileSize(const std::string& path) {
  std::lock_guard lock(mu_);
  const Inode* inode = FindFile(path);
  if (inode == nullptr) return Status::NotFound(fmt::format("stat {}: no such file", path));
  return static_cast<uint64_t>(inode->data.size());
}

Result<bool> FaultInjectionFileSystem::Exists(const std::string& path) {
  std::lock_guard lock(mu_);
  return dirs_.count(path) > 0 || FindFile(path) != nullptr;
}

void FaultInjectionFileSystem::TearInto(Inode* inode, const CrashOptions& options) {
  std::string content = inode->synced;
  const std::vector<PendingOp>& ops = inode->pending;
  if (options.tear_unsynced_writes && !ops.empty()) {
    const size_t kept = rnd_.Uniform(ops.size() + 1);
    for (size_t i = 0; i < kept; ++i) {
      if (ops[i].is_write) {
        ApplyWrite(&content, ops[i].offset, ops[i].data);
      } else {
        content.resize(ops[i].size, '\0');
      }
    }
    if (kept < ops.size() && ops[kept].is_write && !ops[kept].data.empty()) {
      const PendingOp& torn = ops[kept];
      const uint64_t cut = rnd_.Uniform(torn.data.size());
      ApplyWrite(&content, torn.offset, std::string_view(torn.data).substr(0, cut));
      if (options.junk_after_tear) {
        std::string junk(rnd_.Uniform(torn.data.size() - cut + 1), '\0');
        for (char& c : junk)
          c = static_cast<char>(rnd_.Next());
        ApplyWrite(&content, torn.offset + cut, junk);
      }
    }
  }
  inode->data = content;
  inode->synced = std::move(content);
  inode->pending.clear();
}

void FaultInjectionFileSystem::Crash(const CrashOptions& options) {
  std::lock_guard lock(mu_);
  ++epoch_;
  std::set<Inode*> done;
  for (auto& [dir_name, dir] : dirs_) {
    dir.live = dir.synced;
    for (auto& [name, inode] : dir.live) {
      if (done.insert(inode.get()).second) TearInto(inode.get(), options);
    }
  }
}

void FaultInjectionFileSystem::FailNextSync() {
  std::lock_guard lock(mu_);
  fail_next_sync_ = true;
}

void FaultInjectionFileSystem::FailNextWrite() {
  std::lock_guard lock(mu_);
  fail_next_write_ = true;
}

void FaultInjectionFileSystem::FailWritesAfter(uint64_t n) {
  std::lock_guard lock(mu_);
  writes_before_failure_ = n;
}

void FaultInjectionFileSystem::ClearFaults() {
  std::lock_guard lock(mu_);
  fail_next_sync_ = false;
  fail_next_write_ = false;
  writes_before_failure_.reset();
}

Status FaultInjectionFileSystem::CorruptByte(const std::string& path, uint64_t offset,
                                             uint8_t mask) {
  std::lock_guard lock(mu_);
  Inode* inode = FindFile(path);
  if (inode == nullptr) return Status::NotFound(fmt::format("corrupt {}: no such file", path));
  if (!inode->pending.empty()) {
    return Status::FailedPrecondition(fmt::format("corrupt {}: file has unsynced writes", path));
  }
  if (offset >= inode->data.size()) {
    return Status::OutOfRange(fmt::format("corrupt {}: offset {} is past the end", path, offset));
  }
  inode->data[offset] = static_cast<char>(inode->data[offset] ^ mask);
  inode->synced = inode->data;
  return Status::Ok();
}

uint64_t FaultInjectionFileSystem::UnsyncedBytes() const {
  std::lock_guard lock(mu_);
  uint64_t total = 0;
  std::set<const Inode*> seen;
  for (const auto& [dir_name, dir] : dirs_) {
    for (const auto& [name, inode] : dir.live) {
      if (!seen.insert(inode.get()).second) continue;
      for (const PendingOp& op : inode->pending)
        total += op.data.size();
    }
  }
  return total;
}

uint64_t FaultInjectionFileSystem::sync_count() const {
  std::lock_guard lock(mu_);
  return sync_count_;
}

uint64_t FaultInjectionFileSystem::write_count() const {
  std::lock_guard lock(mu_);
  return write_count_;
}

}  // namespace conclave::storage
