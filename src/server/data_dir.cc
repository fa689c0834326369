#include "server/data_dir.h"

#include <fmt/format.h>

#include <filesystem>

#include "mvcc/mvcc.h"
#include "server/etcd_state_machine.h"
#include "server/raft_codec.h"
#include "storage/storage.h"

namespace conclave::server {

namespace {

constexpr const char* kIdentityFile = "identity";

}  // namespace

Result<std::optional<Identity>> LoadIdentity(const std::string& data_dir) {
  auto fs = storage::NewPosixFileSystem();
  const std::string path = storage::JoinPath(data_dir, kIdentityFile);
  ASSIGN_OR_RETURN(bool exists, fs->Exists(path));
  if (!exists) return std::optional<Identity>();
  ASSIGN_OR_RETURN(std::string text, fs->ReadFile(path));
  Identity id;
  unsigned long long member = 0;
  unsigned long long cluster = 0;
  if (std::sscanf(text.c_str(), "member %llx cluster %llx", &member, &cluster) != 2 ||
      member == 0 || cluster == 0) {
    return Status::Corruption("data dir: unreadable identity file " + path);
  }
  id.member_id = member;
  id.cluster_id = cluster;
  return std::optional<Identity>(id);
}

Status SaveIdentity(const std::string& data_dir, const Identity& identity) {
  auto fs = storage::NewPosixFileSystem();
  RETURN_IF_ERROR(fs->CreateDirs(data_dir));
  const std::string path = storage::JoinPath(data_dir, kIdentityFile);
  const std::string tmp = path + ".tmp";
  ASSIGN_OR_RETURN(auto f, fs->OpenWritable(tmp, storage::OpenMode::kCreateOrTruncate));
  RETURN_IF_ERROR(f->Append(
      fmt::format("member {:x} cluster {:x}\n", identity.member_id, identity.cluster_id)));
  RETURN_IF_ERROR(f->Sync());
  RETURN_IF_ERROR(f->Close());
  RETURN_IF_ERROR(fs->Rename(tmp, path));
  return fs->SyncDir(data_dir);
}

namespace {

Status BuildFromSnapshot(storage::FileSystem* fs, const RestoreOptions& options);

}  // namespace

Status RestoreSnapshot(const RestoreOptions& options) {
  auto fs = storage::NewPosixFileSystem();
  ASSIGN_OR_RETURN(bool exists, fs->Exists(options.data_dir));
  if (exists) {
    ASSIGN_OR_RETURN(auto entries, fs->ListDir(options.data_dir));
    if (!entries.empty())
      return Status::AlreadyExists("data dir " + options.data_dir + " exists and is not empty");
  }
  if (options.members.empty()) return Status::InvalidArgument("restore: no members given");
  Status s = BuildFromSnapshot(fs.get(), options);
  if (!s.ok()) {
    // Leave nothing half-built behind: a retry needs an empty directory.
    std::error_code ignored;
    std::filesystem::remove_all(options.data_dir, ignored);
  }
  return s;
}

namespace {

// Restores into options.data_dir, which is empty or absent. The whole saved
// file is read into memory (twice its size at the peak).
Status BuildFromSnapshot(storage::FileSystem* fs, const RestoreOptions& options) {
  RETURN_IF_ERROR(fs->CreateDirs(options.data_dir));
  // Declared before the store, so it closes after it.
  ASSIGN_OR_RETURN(std::unique_ptr<storage::Engine> engine,
                   storage::OpenRocksEngine(storage::JoinPath(options.data_dir, "db"),
                                            mvcc::StoreRocksEngineOptions()));
  ASSIGN_OR_RETURN(
      auto store,
      mvcc::Store::Open(engine.get(), mvcc::StoreOptions{.group = kEtcdGroup, .sync = true}));
  ASSIGN_OR_RETURN(std::string saved, fs->ReadFile(options.snapshot_path));
  ASSIGN_OR_RETURN(std::string image, mvcc::DecodeSavedSnapshot(saved));
  const std::string snap_dir = storage::JoinPath(options.data_dir, "snap");
  const std::string image_path = storage::JoinPath(snap_dir, "restore.snap");
  RETURN_IF_ERROR(fs->CreateDirs(snap_dir));
  {
    ASSIGN_OR_RETURN(auto f, fs->OpenWritable(image_path, storage::OpenMode::kCreateNew));
    RETURN_IF_ERROR(f->Append(image));
    RETURN_IF_ERROR(f->Sync());
    RETURN_IF_ERROR(f->Close());
  }
  RETURN_IF_ERROR(mvcc::InstallSnapshot(store.get(), fs, image_path));
  RETURN_IF_ERROR(fs->RemoveFile(image_path));
  const uint64_t index = store->AppliedIndex();
  const uint64_t term = store->AppliedTerm();
  if (index == 0) return Status::Corruption("restore: the snapshot has no applied index");

  // The old cluster's membership does not come along.
  auto batch = store->NewBatch();
  for (std::string_view prefix : {kMemberMetaPrefix, kRemovedMetaPrefix, kAlarmMetaPrefix}) {
    ASSIGN_OR_RETURN(auto records, store->ScanMeta(prefix));
    for (const auto& [name, value] : records)
      batch->DeleteMeta(name);
  }
  raft::ConfState cs;
  for (const serverpb::MemberRecord& m : options.members) {
    serverpb::MemberRecord rec = m;
    rec.set_is_learner(false);
    rec.clear_client_urls();
    batch->PutMeta(MemberMetaName(m.id()), rec.SerializeAsString());
    cs.voters.push_back(m.id());
  }
  std::sort(cs.voters.begin(), cs.voters.end());
  raftpb::ConfState cs_pb;
  EncodeConfState(cs, &cs_pb);
  batch->PutMeta(kConfStateMeta, cs_pb.SerializeAsString());
  batch->SetApplied(index, term);
  RETURN_IF_ERROR(store->Commit(std::move(batch)));
  RETURN_IF_ERROR(store->Sync());

  // The log starts at the snapshot, committed.
  ASSIGN_OR_RETURN(auto wal, storage::Wal::Open(fs, storage::JoinPath(options.data_dir, "wal")));
  storage::WalBatch wb;
  wb.AddSnapshotMarker(kEtcdGroup, index, term);
  wb.SetHardState(kEtcdGroup, raft::HardState{term, raft::kNoNode, index});
  RETURN_IF_ERROR(wal->Append(wb));
  return SaveIdentity(options.data_dir, Identity{options.member_id, options.cluster_id});
}

}  // namespace

}  // namespace conclave::server
