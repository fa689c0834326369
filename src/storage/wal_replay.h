// WalReplayBuilder: turns the write-ahead log's records, applied in log
// order, into each group's replayed state (wal.h's WalReplay).
//
// The rules (docs/WAL.md, "Replay"):
//   - entries starting at index f replace the group's log from f onward (a
//     record with no entries only truncates); entries at or below the
//     group's snapshot marker are dropped as they arrive;
//   - a snapshot marker at index i drops the entries at or below i and keeps
//     the rest; a marker below the current one changes nothing;
//   - the latest hard state wins.
// Entries that would leave a hole after the entries held are corruption. An
// empty log takes entries from any index: when old segments have been
// released, the first surviving entries of a group may come before the
// marker that covers what was released ahead of them.
//
// Internal to src/storage. Thread-safety: none; one replay at a time.
#pragma once

#include <string_view>

#include "base/status.h"
#include "storage/wal.h"
#include "storage/wal_format.h"

namespace conclave::storage {

class WalReplayBuilder {
 public:
  // What a record means for releasing its segment.
  struct Applied {
    raft::GroupId group = 0;
    uint64_t max_entry_index = 0;  // 0 if the record holds no entries
  };

  // Applies one intact record other than a segment header. `path` names
  // the segment in error messages.
  Result<Applied> Apply(const ScannedRecord& record, std::string_view path);

  // Checks the final state and hands it over. `dir` names the log in errors.
  Result<WalReplay> Finish(std::string_view dir);

 private:
  Status ApplyEntries(EntriesPayload entries, std::string_view where);
  void ApplyMarker(const SnapshotMarkerPayload& marker);

  WalReplay replay_;
};

}  // namespace conclave::storage
