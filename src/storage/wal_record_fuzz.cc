// Fuzz target: arbitrary bytes decoded as a write-ahead log segment.
//
// Four ways in, all of which must only ever return errors:
//   0. every payload decoder and the replay rules, on the raw bytes;
//   1. the segment scanner and every record decoder, directly;
//   2. Wal::Open on an in-memory log whose only segment holds the bytes (the
//      last segment: torn-tail truncation applies);
//   3. the same bytes as the first of two segments (not the last: any damage
//      is corruption).
// When an open succeeds, opening the repaired log again must succeed and
// replay the same state: recovery is idempotent.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "base/assert.h"
#include "base/logging.h"
#include "storage/fault_injection_file_system.h"
#include "storage/wal.h"
#include "storage/wal_format.h"
#include "storage/wal_replay.h"

namespace conclave::storage {
namespace {

constexpr char kDir[] = "/wal";

// The payload decoders and the replay rules see the bytes as a payload too,
// without having to get past the checksums first.
void DecodeAsPayload(std::string_view bytes) {
  std::string why;
  SegmentHeaderPayload header;
  (void)DecodeSegmentHeader(bytes, &header, &why);
  WalReplayBuilder builder;
  for (WalRecordType type : {WalRecordType::kEntries, WalRecordType::kHardState,
                             WalRecordType::kSnapshotMarker, WalRecordType::kEntries}) {
    (void)builder.Apply(ScannedRecord{type, 0, bytes}, "fuzz");
  }
  (void)builder.Finish("fuzz");
}

void DecodeDirectly(std::string_view bytes) {
  const SegmentScan scan = ScanSegment(bytes);
  CHECK_LE(scan.end_offset, bytes.size());
  WalReplayBuilder builder;
  std::string why;
  for (const ScannedRecord& record : scan.records) {
    if (record.type == WalRecordType::kSegmentHeader) {
      SegmentHeaderPayload header;
      (void)DecodeSegmentHeader(record.payload, &header, &why);
      continue;
    }
    if (!builder.Apply(record, "fuzz").ok()) return;
  }
  (void)builder.Finish("fuzz");
}

WalOptions Options() {
  WalOptions options;
  options.segment_bytes_target = 4096;
  options.preallocate = false;
  return options;
}

void OpenAsLog(std::string_view bytes, bool followed_by_another) {
  FaultInjectionFileSystem fs(1);
  CHECK(fs.CreateDirs(kDir).ok());
  auto write = [&](uint64_t sequence, std::string_view content) {
    auto file = fs.OpenWritable(JoinPath(kDir, SegmentFileName(sequence)), OpenMode::kCreateNew);
    CHECK(file.ok());
    CHECK((*file)->Append(content).ok());
    CHECK((*file)->Sync().ok());
  };
  write(1, bytes);
  if (followed_by_another) {
    std::string second;
    AppendFramedRecord(&second, WalRecordType::kSegmentHeader,
                       EncodeSegmentHeader(SegmentHeaderPayload{2, 0}));
    write(2, second);
  }
  CHECK(fs.SyncDir(kDir).ok());

  WalReplay replay;
  {
    auto first = Wal::Open(&fs, kDir, Options());
    if (!first.ok()) {
      CHECK_MSG(first.status().code() == StatusCode::kCorruption, "{}", first.status().ToString());
      return;
    }
    replay = (*first)->Replay();
  }
  auto second = Wal::Open(&fs, kDir, Options());
  CHECK_MSG(second.ok(), "a recovered log failed to reopen: {}", second.status().ToString());
  const WalReplay again = (*second)->Replay();
  CHECK(again.groups == replay.groups);
}

}  // namespace
}  // namespace conclave::storage

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  // Torn tails are logged as warnings; thousands of them per second are noise.
  spdlog::set_level(spdlog::level::off);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  conclave::storage::DecodeAsPayload(bytes);
  conclave::storage::DecodeDirectly(bytes);
  conclave::storage::OpenAsLog(bytes, /*followed_by_another=*/false);
  conclave::storage::OpenAsLog(bytes, /*followed_by_another=*/true);
  return 0;
}
