// The write-ahead log's on-disk format: segment names, record framing, the
// payload of each record type, and the scanner that splits a segment into
// records and classifies what stops it. docs/WAL.md is the prose version.
//
// Internal to src/storage (the WAL, its tests and its fuzz target); other
// modules use wal.h. Every decoder here is safe on arbitrary bytes: malformed
// input yields a reason string, never a crash or an unbounded allocation.
//
// Thread-safety: pure functions and values.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "raft/raft.h"

namespace conclave::storage {

// First bytes of every segment's header payload.
constexpr std::string_view kWalMagic = "CNCLVWAL";
constexpr uint64_t kWalFormatVersion = 1;

// header_crc (4) | payload_crc (4) | length (4) | type (1), all little-endian.
constexpr size_t kRecordHeaderBytes = 13;
// A record's payload is at most this long; WalBatch splits longer entry runs.
constexpr uint32_t kMaxRecordPayloadBytes = 32u << 20;

enum class WalRecordType : uint8_t {
  kSegmentHeader = 1,
  kEntries = 2,
  kHardState = 3,
  kSnapshotMarker = 4,
};

bool IsKnownRecordType(uint8_t type);

// Appends the framed record (header, then payload) to `dst`.
void AppendFramedRecord(std::string* dst, WalRecordType type, std::string_view payload);

// ---- Segment names ----

// "00000000000000000007.log" for sequence 7.
std::string SegmentFileName(uint64_t sequence);
// Recognizes "<20 digits>.log" and, with *is_temp set, "<20 digits>.log.tmp".
bool ParseSegmentFileName(std::string_view name, uint64_t* sequence, bool* is_temp);

// ---- Payloads ----

struct SegmentHeaderPayload {
  uint64_t sequence = 0;
  // Bytes of records after the header that were synced before the segment
  // got its final name (the preamble): damage there is never a torn write.
  uint64_t preamble_bytes = 0;
};

struct EntriesPayload {
  raft::GroupId group = 0;
  // Replaces the group's log from first_index onward. With no entries it only
  // truncates.
  uint64_t first_index = 0;
  std::vector<raft::Entry> entries;  // indexes first_index, first_index + 1, ...
};

struct HardStatePayload {
  raft::GroupId group = 0;
  raft::HardState hard_state;
};

struct SnapshotMarkerPayload {
  raft::GroupId group = 0;
  uint64_t index = 0;
  uint64_t term = 0;
};

std::string EncodeSegmentHeader(const SegmentHeaderPayload& header);
// Entries' own index fields are not stored; they follow from first_index.
void EncodeEntries(std::string* dst, raft::GroupId group, uint64_t first_index,
                   std::span<const raft::Entry> entries);
// Bytes one entry adds to an entries payload.
size_t EncodedEntryBytes(const raft::Entry& entry);
// Bytes PutVarint64 writes for `v`.
size_t VarintLength(uint64_t v);
std::string EncodeHardState(const HardStatePayload& payload);
std::string EncodeSnapshotMarker(const SnapshotMarkerPayload& payload);

// Each returns false with *why set when the payload is malformed.
bool DecodeSegmentHeader(std::string_view payload, SegmentHeaderPayload* out, std::string* why);
bool DecodeEntries(std::string_view payload, EntriesPayload* out, std::string* why);
bool DecodeHardState(std::string_view payload, HardStatePayload* out, std::string* why);
bool DecodeSnapshotMarker(std::string_view payload, SnapshotMarkerPayload* out, std::string* why);

// ---- Scanning a segment ----

struct ScannedRecord {
  WalRecordType type = WalRecordType::kSegmentHeader;
  uint64_t offset = 0;       // of the record header in the segment
  std::string_view payload;  // points into the scanned bytes
};

// The record at `offset` that stopped the scan.
struct BadRecord {
  uint64_t offset = 0;
  // What was expected and what was found, e.g. "checksum mismatch, expected
  // 0x1234abcd got 0x89ef0123".
  std::string reason;
  // The record's checksums held but its contents are invalid (unknown type,
  // absurd length): a torn write cannot produce that, so it is corruption
  // wherever it is.
  bool checksummed = false;
  // Offset of the first intact record found after the bad one, if any. One
  // means the damage is followed by data that was written later, so it is not
  // a torn tail.
  std::optional<uint64_t> next_valid_offset;
};

struct SegmentScan {
  std::vector<ScannedRecord> records;  // the intact records before any bad one
  uint64_t end_offset = 0;             // just past the last intact record
  // Set when bytes other than zeros follow end_offset. Unset means the
  // segment ends cleanly (at the end of the file, or in zero fill from
  // preallocation).
  std::optional<BadRecord> bad;
};

SegmentScan ScanSegment(std::string_view data);

}  // namespace conclave::storage
