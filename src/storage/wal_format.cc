#include "storage/wal_format.h"

#include <algorithm>

#include <fmt/format.h>

#include "base/coding.h"
#include "base/crc32c.h"

namespace conclave::storage {
namespace {

constexpr size_t kHeaderCrcOffset = 0;
constexpr size_t kPayloadCrcOffset = 4;
constexpr size_t kLengthOffset = 8;
constexpr size_t kTypeOffset = 12;
// Smallest encoded entry: a one-byte term, the type, a one-byte length.
constexpr size_t kMinEncodedEntryBytes = 3;

constexpr std::string_view kSegmentSuffix = ".log";
constexpr std::string_view kTempSuffix = ".tmp";
constexpr size_t kSequenceDigits = 20;

uint32_t HeaderCrc(const char* header) {
  return Crc32c(
      std::string_view(header + kPayloadCrcOffset, kRecordHeaderBytes - kPayloadCrcOffset));
}

void StoreFixed32(char* p, uint32_t v) {
  for (int i = 0; i < 4; ++i)
    p[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}

bool AllZero(std::string_view bytes) {
  return std::all_of(bytes.begin(), bytes.end(), [](char c) { return c == 0; });
}

// Index of the first non-zero byte at or after `from`, or npos.
size_t FindNonZero(std::string_view data, size_t from) {
  for (size_t i = from; i < data.size(); ++i) {
    if (data[i] != 0) return i;
  }
  return std::string_view::npos;
}

enum class FrameKind { kIntact, kZeros, kBad };

struct Frame {
  FrameKind kind = FrameKind::kBad;
  WalRecordType type = WalRecordType::kSegmentHeader;
  std::string_view payload;
  // kBad only.
  std::string reason;
  bool checksummed = false;
  uint64_t resume_offset = 0;  // where a search for later intact records starts
};

Frame Bad(std::string reason, uint64_t resume_offset, bool checksummed = false) {
  Frame f;
  f.kind = FrameKind::kBad;
  f.reason = std::move(reason);
  f.resume_offset = resume_offset;
  f.checksummed = checksummed;
  return f;
}

Frame ReadFrame(std::string_view data, uint64_t pos) {
  const uint64_t remaining = data.size() - pos;
  const std::string_view rest = data.substr(pos);
  if (remaining < kRecordHeaderBytes) {
    if (AllZero(rest)) return Frame{.kind = FrameKind::kZeros};
    return Bad(fmt::format("truncated record header: {} bytes left, a header needs {}", remaining,
                           kRecordHeaderBytes),
               pos + 1);
  }
  const char* h = rest.data();
  if (AllZero(rest.substr(0, kRecordHeaderBytes))) return Frame{.kind = FrameKind::kZeros};
  const uint32_t stored_header_crc = DecodeFixed32(h + kHeaderCrcOffset);
  const uint32_t actual_header_crc = HeaderCrc(h);
  if (stored_header_crc != actual_header_crc) {
    return Bad(fmt::format("header checksum mismatch, expected {:#010x} got {:#010x}",
                           stored_header_crc, actual_header_crc),
               pos + 1);
  }
  const uint32_t length = DecodeFixed32(h + kLengthOffset);
  const auto type = static_cast<uint8_t>(h[kTypeOffset]);
  if (length > kMaxRecordPayloadBytes) {
    return Bad(fmt::format("record length {} exceeds the limit {}", length, kMaxRecordPayloadBytes),
               pos + 1, /*checksummed=*/true);
  }
  if (!IsKnownRecordType(type)) {
    return Bad(fmt::format("unknown record type {}", type), pos + 1, /*checksummed=*/true);
  }
  if (length > remaining - kRecordHeaderBytes) {
    // The header is intact, so the record really does run past the end.
    return Bad(fmt::format("record of {} bytes runs past the end of the file ({} bytes left)",
                           length, remaining - kRecordHeaderBytes),
               data.size());
  }
  const std::string_view payload = rest.substr(kRecordHeaderBytes, length);
  const uint32_t stored_crc = DecodeFixed32(h + kPayloadCrcOffset);
  const uint32_t actual_crc = Crc32c(payload);
  if (stored_crc != actual_crc) {
    // The header (and so the length) checked out: later records start after
    // this one's payload.
    return Bad(
        fmt::format("checksum mismatch, expected {:#010x} got {:#010x}", stored_crc, actual_crc),
        pos + kRecordHeaderBytes + length);
  }
  Frame f;
  f.kind = FrameKind::kIntact;
  f.type = static_cast<WalRecordType>(type);
  f.payload = payload;
  return f;
}

// The first offset at or after `from` holding an intact record. Runs of
// zeros are skipped without checksumming: an all-zero header never checks out.
std::optional<uint64_t> FindIntactRecord(std::string_view data, uint64_t from) {
  uint64_t pos = from;
  size_t nonzero = FindNonZero(data, pos);
  while (nonzero != std::string_view::npos && pos + kRecordHeaderBytes <= data.size()) {
    // A header must include a non-zero byte, so it starts at most
    // kRecordHeaderBytes - 1 bytes before the next one.
    if (nonzero > pos + kRecordHeaderBytes - 1) pos = nonzero - (kRecordHeaderBytes - 1);
    if (pos + kRecordHeaderBytes > data.size()) break;
    if (ReadFrame(data, pos).kind == FrameKind::kIntact) return pos;
    ++pos;
    if (pos > nonzero) nonzero = FindNonZero(data, pos);
  }
  return std::nullopt;
}

bool Fail(std::string* why, std::string message) {
  *why = std::move(message);
  return false;
}

}  // namespace

bool IsKnownRecordType(uint8_t type) {
  return type >= static_cast<uint8_t>(WalRecordType::kSegmentHeader) &&
         type <= static_cast<uint8_t>(WalRecordType::kSnapshotMarker);
}

void AppendFramedRecord(std::string* dst, WalRecordType type, std::string_view payload) {
  CHECK_LE(payload.size(), kMaxRecordPayloadBytes);
  char header[kRecordHeaderBytes];
  StoreFixed32(header + kPayloadCrcOffset, Crc32c(payload));
  StoreFixed32(header + kLengthOffset, static_cast<uint32_t>(payload.size()));
  header[kTypeOffset] = static_cast<char>(type);
  StoreFixed32(header + kHeaderCrcOffset, HeaderCrc(header));
  dst->append(header, kRecordHeaderBytes);
  dst->append(payload);
}

std::string SegmentFileName(uint64_t sequence) {
  return fmt::format("{:020}{}", sequence, kSegmentSuffix);
}

bool ParseSegmentFileName(std::string_view name, uint64_t* sequence, bool* is_temp) {
  *is_temp = false;
  if (name.size() == kSequenceDigits + kSegmentSuffix.size() + kTempSuffix.size() &&
      name.substr(kSequenceDigits + kSegmentSuffix.size()) == kTempSuffix) {
    *is_temp = true;
    name.remove_suffix(kTempSuffix.size());
  }
  if (name.size() != kSequenceDigits + kSegmentSuffix.size() ||
      name.substr(kSequenceDigits) != kSegmentSuffix) {
    return false;
  }
  uint64_t value = 0;
  for (size_t i = 0; i < kSequenceDigits; ++i) {
    const char c = name[i];
    if (c < '0' || c > '9') return false;
    const uint64_t digit = static_cast<uint64_t>(c - '0');
    if (value > (UINT64_MAX - digit) / 10) return false;
    value = value * 10 + digit;
  }
  *sequence = value;
  return true;
}

std::string EncodeSegmentHeader(const SegmentHeaderPayload& header) {
  std::string out(kWalMagic);
  PutVarint64(&out, kWalFormatVersion);
  PutVarint64(&out, header.sequence);
  PutVarint64(&out, header.preamble_bytes);
  return out;
}

size_t VarintLength(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

size_t EncodedEntryBytes(const raft::Entry& entry) {
  return VarintLength(entry.term) + 1 + VarintLength(entry.data.size()) + entry.data.size();
}

void EncodeEntries(std::string* dst, raft::GroupId group, uint64_t first_index,
                   std::span<const raft::Entry> entries) {
  PutVarint64(dst, group);
  PutVarint64(dst, first_index);
  PutVarint64(dst, entries.size());
  for (const raft::Entry& e : entries) {
    PutVarint64(dst, e.term);
    dst->push_back(static_cast<char>(e.type));
    PutLengthPrefixed(dst, e.data);
  }
}

std::string EncodeHardState(const HardStatePayload& payload) {
  std::string out;
  PutVarint64(&out, payload.group);
  PutVarint64(&out, payload.hard_state.term);
  PutVarint64(&out, payload.hard_state.vote);
  PutVarint64(&out, payload.hard_state.commit);
  return out;
}

std::string EncodeSnapshotMarker(const SnapshotMarkerPayload& payload) {
  std::string out;
  PutVarint64(&out, payload.group);
  PutVarint64(&out, payload.index);
  PutVarint64(&out, payload.term);
  return out;
}

bool DecodeSegmentHeader(std::string_view payload, SegmentHeaderPayload* out, std::string* why) {
  Decoder d(payload);
  std::string_view magic;
  if (!d.ReadBytes(kWalMagic.size(), &magic) || magic != kWalMagic) {
    return Fail(why, fmt::format("bad segment magic, expected \"{}\"", kWalMagic));
  }
  uint64_t version = 0;
  if (!d.ReadVarint64(&version)) return Fail(why, "segment header: unreadable format version");
  if (version != kWalFormatVersion) {
    return Fail(
        why, fmt::format("unsupported format version {}, expected {}", version, kWalFormatVersion));
  }
  if (!d.ReadVarint64(&out->sequence) || !d.ReadVarint64(&out->preamble_bytes) || !d.empty()) {
    return Fail(why, "malformed segment header");
  }
  return true;
}

bool DecodeEntries(std::string_view payload, EntriesPayload* out, std::string* why) {
  Decoder d(payload);
  uint64_t count = 0;
  if (!d.ReadVarint64(&out->group) || !d.ReadVarint64(&out->first_index) ||
      !d.ReadVarint64(&count)) {
    return Fail(why, "entries record: malformed header");
  }
  if (out->first_index == 0) return Fail(why, "entries record: first index 0");
  if (count > d.remaining() / kMinEncodedEntryBytes) {
    return Fail(why, fmt::format("entries record: {} entries cannot fit in {} bytes", count,
                                 d.remaining()));
  }
  if (out->first_index > UINT64_MAX - count) {
    return Fail(why, "entries record: index overflows");
  }
  out->entries.clear();
  out->entries.reserve(count);
  for (uint64_t i = 0; i < count; ++i) {
    raft::Entry e;
    uint8_t type = 0;
    std::string_view data;
    if (!d.ReadVarint64(&e.term) || !d.ReadByte(&type) || !d.ReadLengthPrefixed(&data)) {
      return Fail(why, fmt::format("entries record: malformed entry #{}", i));
    }
    if (type > static_cast<uint8_t>(raft::EntryType::kConfChange)) {
      return Fail(why, fmt::format("entries record: entry #{} has unknown type {}", i, type));
    }
    e.index = out->first_index + i;
    e.type = static_cast<raft::EntryType>(type);
    e.data = std::string(data);
    out->entries.push_back(std::move(e));
  }
  if (!d.empty()) {
    return Fail(why,
                fmt::format("entries record: {} stray bytes after the entries", d.remaining()));
  }
  return true;
}

bool DecodeHardState(std::string_view payload, HardStatePayload* out, std::string* why) {
  Decoder d(payload);
  if (!d.ReadVarint64(&out->group) || !d.ReadVarint64(&out->hard_state.term) ||
      !d.ReadVarint64(&out->hard_state.vote) || !d.ReadVarint64(&out->hard_state.commit) ||
      !d.empty()) {
    return Fail(why, "malformed hard state record");
  }
  return true;
}

bool DecodeSnapshotMarker(std::string_view payload, SnapshotMarkerPayload* out, std::string* why) {
  Decoder d(payload);
  if (!d.ReadVarint64(&out->group) || !d.ReadVarint64(&out->index) || !d.ReadVarint64(&out->term) ||
      !d.empty()) {
    return Fail(why, "malformed snapshot marker record");
  }
  if (out->index == 0) return Fail(why, "snapshot marker at index 0");
  return true;
}

SegmentScan ScanSegment(std::string_view data) {
  SegmentScan scan;
  uint64_t pos = 0;
  while (pos < data.size()) {
    Frame f = ReadFrame(data, pos);
    if (f.kind == FrameKind::kIntact) {
      scan.records.push_back(ScannedRecord{f.type, pos, f.payload});
      pos += kRecordHeaderBytes + f.payload.size();
      continue;
    }
    if (f.kind == FrameKind::kZeros) {
      const size_t nonzero = FindNonZero(data, pos);
      if (nonzero == std::string_view::npos) break;  // preallocated zero fill: a clean end
      f = Bad(fmt::format("zero-filled record header, but data follows at offset {}", nonzero),
              pos + 1);
    }
    BadRecord bad;
    bad.offset = pos;
    bad.reason = std::move(f.reason);
    bad.checksummed = f.checksummed;
    bad.next_valid_offset = FindIntactRecord(data, f.resume_offset);
    scan.bad = std::move(bad);
    break;
  }
  scan.end_offset = pos;
  return scan;
}

}  // namespace conclave::storage
