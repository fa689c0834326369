// Record framing, payload codecs, segment names and the segment scanner's
// classification of clean ends, torn tails and corruption.
#include "storage/wal_format.h"

#include <gtest/gtest.h>

#include "base/coding.h"
#include "base/random.h"

namespace conclave::storage {
namespace {

raft::Entry E(uint64_t index, uint64_t term, std::string data,
              raft::EntryType type = raft::EntryType::kNormal) {
  return raft::Entry{.term = term, .index = index, .type = type, .data = std::move(data)};
}

// A segment: header (sequence 1, no preamble) then the given records.
std::string Segment(const std::vector<std::pair<WalRecordType, std::string>>& records) {
  std::string out;
  AppendFramedRecord(&out, WalRecordType::kSegmentHeader, EncodeSegmentHeader({1, 0}));
  for (const auto& [type, payload] : records)
    AppendFramedRecord(&out, type, payload);
  return out;
}

std::string EntriesPayloadOf(raft::GroupId group, const std::vector<raft::Entry>& entries) {
  std::string payload;
  EncodeEntries(&payload, group, entries.front().index, entries);
  return payload;
}

TEST(WalFormatTest, FrameLayout) {
  std::string out;
  AppendFramedRecord(&out, WalRecordType::kHardState, "abc");
  ASSERT_EQ(out.size(), kRecordHeaderBytes + 3);
  EXPECT_EQ(DecodeFixed32(out.data() + 8), 3u);  // length
  EXPECT_EQ(out[12], static_cast<char>(WalRecordType::kHardState));
  EXPECT_EQ(out.substr(13), "abc");
}

TEST(WalFormatTest, SegmentNames) {
  EXPECT_EQ(SegmentFileName(7), "00000000000000000007.log");
  uint64_t seq = 0;
  bool temp = true;
  ASSERT_TRUE(ParseSegmentFileName("00000000000000000007.log", &seq, &temp));
  EXPECT_EQ(seq, 7u);
  EXPECT_FALSE(temp);
  ASSERT_TRUE(ParseSegmentFileName("18446744073709551615.log.tmp", &seq, &temp));
  EXPECT_EQ(seq, UINT64_MAX);
  EXPECT_TRUE(temp);
  for (const char* bad : {"7.log", "0000000000000000000a.log", "00000000000000000007.txt",
                          "99999999999999999999.log", "00000000000000000007.log.bak", ""}) {
    EXPECT_FALSE(ParseSegmentFileName(bad, &seq, &temp)) << bad;
  }
}

TEST(WalFormatTest, PayloadsRoundTrip) {
  std::string why;
  SegmentHeaderPayload header;
  ASSERT_TRUE(DecodeSegmentHeader(EncodeSegmentHeader({9, 1234}), &header, &why)) << why;
  EXPECT_EQ(header.sequence, 9u);
  EXPECT_EQ(header.preamble_bytes, 1234u);

  const std::vector<raft::Entry> entries = {
      E(5, 2, "x"), E(6, 2, ""), E(7, 3, std::string(300, 'z'), raft::EntryType::kConfChange)};
  EntriesPayload decoded;
  ASSERT_TRUE(DecodeEntries(EntriesPayloadOf(77, entries), &decoded, &why)) << why;
  EXPECT_EQ(decoded.group, 77u);
  EXPECT_EQ(decoded.first_index, 5u);
  EXPECT_EQ(decoded.entries, entries);
  size_t expected_bytes = 0;
  for (const auto& e : entries)
    expected_bytes += EncodedEntryBytes(e);
  EXPECT_EQ(EntriesPayloadOf(77, entries).size(), 3 + expected_bytes);

  std::string truncation;
  EncodeEntries(&truncation, 3, 42, {});
  ASSERT_TRUE(DecodeEntries(truncation, &decoded, &why));
  EXPECT_EQ(decoded.first_index, 42u);
  EXPECT_TRUE(decoded.entries.empty());

  HardStatePayload hs;
  ASSERT_TRUE(
      DecodeHardState(EncodeHardState({4, {.term = 9, .vote = 2, .commit = 100}}), &hs, &why));
  EXPECT_EQ(hs.group, 4u);
  EXPECT_EQ(hs.hard_state, (raft::HardState{.term = 9, .vote = 2, .commit = 100}));

  SnapshotMarkerPayload marker;
  ASSERT_TRUE(DecodeSnapshotMarker(EncodeSnapshotMarker({4, 50, 7}), &marker, &why));
  EXPECT_EQ(marker.index, 50u);
  EXPECT_EQ(marker.term, 7u);
}

TEST(WalFormatTest, MalformedPayloadsAreRefused) {
  std::string why;
  SegmentHeaderPayload header;
  EXPECT_FALSE(DecodeSegmentHeader("NOTAWALX\x01\x01\x00", &header, &why));
  EXPECT_NE(why.find("magic"), std::string::npos);
  std::string v2(kWalMagic);
  PutVarint64(&v2, 2);
  PutVarint64(&v2, 1);
  PutVarint64(&v2, 0);
  EXPECT_FALSE(DecodeSegmentHeader(v2, &header, &why));
  EXPECT_EQ(why, "unsupported format version 2, expected 1");

  EntriesPayload entries;
  std::string huge_count;
  PutVarint64(&huge_count, 1);
  PutVarint64(&huge_count, 1);
  PutVarint64(&huge_count, 1ull << 60);  // must not reserve that much
  EXPECT_FALSE(DecodeEntries(huge_count, &entries, &why));
  std::string zero_index;
  EncodeEntries(&zero_index, 1, 0, {});
  EXPECT_FALSE(DecodeEntries(zero_index, &entries, &why));
  std::string bad_type = EntriesPayloadOf(1, {E(1, 1, "a")});
  bad_type[4] = 9;  // group, first, count, term, then the type byte
  EXPECT_FALSE(DecodeEntries(bad_type, &entries, &why));
  EXPECT_NE(why.find("unknown type 9"), std::string::npos);
  std::string trailing = EntriesPayloadOf(1, {E(1, 1, "a")}) + "x";
  EXPECT_FALSE(DecodeEntries(trailing, &entries, &why));
  std::string overflow;
  PutVarint64(&overflow, 1);
  PutVarint64(&overflow, UINT64_MAX);
  PutVarint64(&overflow, 2);
  overflow += std::string(6, '\x01');
  EXPECT_FALSE(DecodeEntries(overflow, &entries, &why));

  HardStatePayload hs;
  EXPECT_FALSE(DecodeHardState("\x01\x02", &hs, &why));
  SnapshotMarkerPayload marker;
  EXPECT_FALSE(DecodeSnapshotMarker(EncodeSnapshotMarker({1, 0, 1}), &marker, &why));
}

TEST(WalFormatTest, ScanCleanSegment) {
  const std::string seg = Segment({{WalRecordType::kEntries, EntriesPayloadOf(1, {E(1, 1, "a")})},
                                   {WalRecordType::kHardState, EncodeHardState({1, {1, 1, 1}})}});
  SegmentScan scan = ScanSegment(seg);
  EXPECT_FALSE(scan.bad);
  ASSERT_EQ(scan.records.size(), 3u);
  EXPECT_EQ(scan.records[0].type, WalRecordType::kSegmentHeader);
  EXPECT_EQ(scan.records[1].type, WalRecordType::kEntries);
  EXPECT_EQ(scan.records[2].type, WalRecordType::kHardState);
  EXPECT_EQ(scan.end_offset, seg.size());

  // Preallocated zeros after the records are a clean end too.
  scan = ScanSegment(seg + std::string(1000, '\0'));
  EXPECT_FALSE(scan.bad);
  EXPECT_EQ(scan.records.size(), 3u);
  EXPECT_EQ(scan.end_offset, seg.size());
  scan = ScanSegment(seg + std::string(5, '\0'));
  EXPECT_FALSE(scan.bad);
}

TEST(WalFormatTest, ScanTornRecordAtEveryCut) {
  const std::string good = Segment({{WalRecordType::kHardState, EncodeHardState({1, {1, 1, 1}})}});
  std::string last;
  AppendFramedRecord(&last, WalRecordType::kEntries,
                     EntriesPayloadOf(1, {E(1, 1, "payload"), E(2, 1, "more")}));
  for (size_t cut = 1; cut < last.size(); ++cut) {
    for (size_t zeros : {0, 64}) {
      const std::string kept = last.substr(0, cut);
      const SegmentScan scan = ScanSegment(good + kept + std::string(zeros, '\0'));
      if (kept.find_first_not_of('\0') == std::string::npos) {
        EXPECT_FALSE(scan.bad);  // only zeros reached the disk: a clean end
        continue;
      }
      ASSERT_TRUE(scan.bad) << "cut " << cut;
      EXPECT_EQ(scan.bad->offset, good.size());
      EXPECT_FALSE(scan.bad->checksummed);
      EXPECT_FALSE(scan.bad->next_valid_offset) << "cut " << cut << ": " << scan.bad->reason;
      EXPECT_EQ(scan.records.size(), 2u);
      EXPECT_EQ(scan.end_offset, good.size());
    }
  }
}

TEST(WalFormatTest, ScanFlippedByteFindsTheNextIntactRecord) {
  std::vector<std::pair<WalRecordType, std::string>> records;
  for (uint64_t i = 1; i <= 3; ++i) {
    records.push_back({WalRecordType::kEntries, EntriesPayloadOf(1, {E(i, 1, "entry")})});
  }
  const std::string seg = Segment(records);
  const SegmentScan clean = ScanSegment(seg);
  ASSERT_EQ(clean.records.size(), 4u);
  const uint64_t victim = clean.records[2].offset;
  const uint64_t next = clean.records[3].offset;
  // Every byte of the middle record, header and payload alike.
  for (uint64_t at = victim; at < next; ++at) {
    std::string bad = seg;
    bad[at] ^= 0x10;
    const SegmentScan scan = ScanSegment(bad + std::string(100, '\0'));
    ASSERT_TRUE(scan.bad) << "byte " << at;
    EXPECT_EQ(scan.bad->offset, victim);
    EXPECT_EQ(scan.bad->next_valid_offset, std::optional<uint64_t>(next)) << scan.bad->reason;
    EXPECT_EQ(scan.records.size(), 2u);
  }
  std::string payload_flip = seg;
  payload_flip[next - 1] ^= 0x01;
  const SegmentScan scan = ScanSegment(payload_flip);
  ASSERT_TRUE(scan.bad);
  EXPECT_EQ(scan.bad->reason.rfind("checksum mismatch, expected 0x", 0), 0u) << scan.bad->reason;
  std::string header_flip = seg;
  header_flip[victim + 1] ^= 0x01;
  EXPECT_EQ(ScanSegment(header_flip).bad->reason.rfind("header checksum mismatch, expected 0x", 0),
            0u);
}

TEST(WalFormatTest, ScanChecksummedButInvalidRecords) {
  // A record type this version does not know, with valid checksums.
  std::string seg = Segment({});
  AppendFramedRecord(&seg, static_cast<WalRecordType>(9), "x");
  SegmentScan scan = ScanSegment(seg);
  ASSERT_TRUE(scan.bad);
  EXPECT_TRUE(scan.bad->checksummed);
  EXPECT_EQ(scan.bad->reason, "unknown record type 9");
}

TEST(WalFormatTest, ScanZeroGapFollowedByData) {
  const std::string seg = Segment({});
  std::string tail;
  AppendFramedRecord(&tail, WalRecordType::kHardState, EncodeHardState({1, {1, 1, 1}}));
  const SegmentScan scan = ScanSegment(seg + std::string(40, '\0') + tail);
  ASSERT_TRUE(scan.bad);
  EXPECT_EQ(scan.bad->offset, seg.size());
  EXPECT_EQ(scan.bad->next_valid_offset, std::optional<uint64_t>(seg.size() + 40));
}

TEST(WalFormatTest, ScanNeverCrashesOnRandomBytes) {
  SeededRandom rnd(11);
  for (int i = 0; i < 2000; ++i) {
    std::string junk(rnd.Uniform(200), '\0');
    for (char& c : junk)
      c = static_cast<char>(rnd.OneIn(3) ? 0 : rnd.Next());
    const SegmentScan scan = ScanSegment(junk);
    EXPECT_LE(scan.end_offset, junk.size());
  }
}

}  // namespace
}  // namespace conclave::storage
