// A member's data directory beyond the log and the store: its identity
// (which member of which cluster it is), and building a directory from a
// snapshot file for a new cluster (`conclave snapshot restore`).
//
// Layout: <data-dir>/wal (storage::Wal), <data-dir>/db (mvcc::Store),
// <data-dir>/snap (received images), <data-dir>/identity (this file's).
//
// Thread-safety: functions on directories no running member uses.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "conclave/serverpb/server.pb.h"

namespace conclave::server {

struct Identity {
  uint64_t member_id = 0;
  uint64_t cluster_id = 0;
};

// nullopt when the directory has no identity yet.
Result<std::optional<Identity>> LoadIdentity(const std::string& data_dir);
// Written once, durably (temp file, sync, rename, sync the directory).
Status SaveIdentity(const std::string& data_dir, const Identity& identity);

struct RestoreOptions {
  std::string snapshot_path;  // as `snapshot save` wrote it
  std::string data_dir;       // must not exist or be empty
  // The new cluster's members (the first peer URL of each is dialled).
  std::vector<serverpb::MemberRecord> members;
  uint64_t member_id = 0;
  uint64_t cluster_id = 0;
};

// Installs the snapshot's keys, leases and revisions into a new data
// directory, replacing the old cluster's members, removed ids and alarms
// by `members` (all voters), and starts the log at the snapshot's index, so
// that members restored from the same file with the same flags agree.
Status RestoreSnapshot(const RestoreOptions& options);

}  // namespace conclave::server
