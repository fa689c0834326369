// The WAL's behaviour: replay, conflicts, truncation, markers, rollover,
// release, torn tails and corruption, I/O failures, concurrency and group
// commit. The randomized crash-consistency test is wal_crash_test.cc.
#include "storage/wal.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <sstream>
#include <thread>

#include "storage/fault_injection_file_system.h"
#include "storage/test_util.h"
#include "storage/wal_format.h"

namespace conclave::storage {
namespace {

using test::E;
using test::EntryRun;

constexpr char kDir[] = "/data/wal";

std::string SegPath(uint64_t sequence) {
  return JoinPath(kDir, SegmentFileName(sequence));
}

class WalTest : public ::testing::Test {
 protected:
  // Segments of 64 KiB: the in-memory file system holds preallocated space.
  static WalOptions Defaults() { return Small(64 << 10); }

  std::unique_ptr<Wal> OpenWal(WalOptions options = Defaults()) {
    auto wal = Wal::Open(&fs_, kDir, options);
    CHECK_MSG(wal.ok(), "{}", wal.status().ToString());
    return std::move(wal).value();
  }

  // Closes `wal` and opens the log again, returning what it replays.
  WalReplay Reopen(std::unique_ptr<Wal>& wal, WalOptions options = Defaults()) {
    wal.reset();
    wal = OpenWal(options);
    return wal->Replay();
  }

  static Status AppendEntries(Wal& wal, raft::GroupId group, std::vector<raft::Entry> entries) {
    WalBatch batch;
    batch.AddEntries(group, entries);
    return wal.Append(batch);
  }

  static WalOptions Small(uint64_t segment_bytes = 512) {
    WalOptions o;
    o.segment_bytes_target = segment_bytes;
    return o;
  }

  FaultInjectionFileSystem fs_{7};
};

TEST_F(WalTest, EmptyLogReplaysNothing) {
  auto wal = OpenWal();
  EXPECT_TRUE(wal->Replay().groups.empty());
  EXPECT_EQ(wal->SegmentSequences(), std::vector<uint64_t>{1});
  EXPECT_TRUE(*fs_.Exists(SegPath(1)));
  // Every open starts a new segment after the last.
  EXPECT_TRUE(Reopen(wal).groups.empty());
  EXPECT_EQ(wal->SegmentSequences(), (std::vector<uint64_t>{1, 2}));
}

// Appends without sync become durable with the next sync and not before:
// a crash in between keeps none of them (or, torn, some prefix), and their
// snapshot markers release no segment until synced.
TEST_F(WalTest, UnsyncedAppendsWaitForTheNextSync) {
  auto wal = OpenWal();
  ASSERT_TRUE(AppendEntries(*wal, 1, EntryRun(1, 2, 1, "synced")).ok());
  WalBatch more;
  more.AddEntries(1, EntryRun(3, 2, 1, "unsynced"));
  const uint64_t syncs = wal->stats().syncs;
  ASSERT_TRUE(wal->Append(more, /*sync=*/false).ok());
  EXPECT_EQ(wal->stats().syncs, syncs);
  wal.reset();
  fs_.Crash();
  wal = OpenWal();
  WalReplay replay = wal->Replay();
  EXPECT_EQ(replay.groups[1].entries, EntryRun(1, 2, 1, "synced"));

  const uint64_t syncs_now = wal->stats().syncs;
  ASSERT_TRUE(wal->Append(more, /*sync=*/false).ok());
  ASSERT_TRUE(wal->Sync().ok());
  EXPECT_EQ(wal->stats().syncs, syncs_now + 1);
  ASSERT_TRUE(wal->Sync().ok());  // nothing new: no sync
  EXPECT_EQ(wal->stats().syncs, syncs_now + 1);
  wal.reset();
  fs_.Crash();
  wal = OpenWal();
  replay = wal->Replay();
  ASSERT_EQ(replay.groups[1].entries.size(), 4u);
  EXPECT_EQ(replay.groups[1].entries.back(), EntryRun(4, 1, 1, "unsynced").front());
}

TEST_F(WalTest, AnUnsyncedMarkerReleasesNothing) {
  auto wal = OpenWal(Small(256));
  for (uint64_t i = 1; i <= 20; ++i)
    ASSERT_TRUE(AppendEntries(*wal, 1, EntryRun(i, 1, 1, std::string(40, 'x'))).ok());
  ASSERT_GT(wal->SegmentSequences().size(), 2u);
  const std::vector<uint64_t> segments = wal->SegmentSequences();
  WalBatch marker;
  marker.AddSnapshotMarker(1, 20, 1);
  ASSERT_TRUE(wal->Append(marker, /*sync=*/false).ok());
  ASSERT_TRUE(wal->RemoveObsoleteSegments().ok());
  EXPECT_EQ(wal->SegmentSequences().front(), segments.front());
  ASSERT_TRUE(wal->Sync().ok());
  ASSERT_TRUE(wal->RemoveObsoleteSegments().ok());
  EXPECT_GT(wal->SegmentSequences().front(), segments.front());
}

TEST_F(WalTest, AppendAndReplayManyGroups) {
  auto wal = OpenWal();
  WalBatch batch;
  batch.AddEntries(1, EntryRun(1, 3, 1, "a"));
  batch.AddEntries(2, EntryRun(10, 2, 4, "b"));
  batch.SetHardState(1, {.term = 1, .vote = 3, .commit = 2});
  batch.AddSnapshotMarker(3, 100, 9);
  ASSERT_TRUE(wal->Append(batch).ok());
  ASSERT_TRUE(AppendEntries(*wal, 1, EntryRun(4, 2, 2, "a")).ok());
  EXPECT_EQ(wal->stats().appends, 2u);

  const WalReplay replay = Reopen(wal);
  ASSERT_EQ(replay.groups.size(), 3u);
  std::vector<raft::Entry> expected = EntryRun(1, 3, 1, "a");
  for (auto& e : EntryRun(4, 2, 2, "a"))
    expected.push_back(e);
  EXPECT_EQ(replay.groups.at(1).entries, expected);
  EXPECT_EQ(replay.groups.at(1).hard_state, (raft::HardState{.term = 1, .vote = 3, .commit = 2}));
  EXPECT_EQ(replay.groups.at(2).entries, EntryRun(10, 2, 4, "b"));
  EXPECT_EQ(replay.groups.at(3).snapshot_index, 100u);
  EXPECT_EQ(replay.groups.at(3).snapshot_term, 9u);
  EXPECT_TRUE(replay.groups.at(3).entries.empty());
}

TEST_F(WalTest, ReplayIsHandedOverOnce) {
  auto wal = OpenWal();
  ASSERT_TRUE(AppendEntries(*wal, 1, EntryRun(1, 1, 1)).ok());
  EXPECT_EQ(Reopen(wal).groups.size(), 1u);
  EXPECT_TRUE(wal->Replay().groups.empty());
}

TEST_F(WalTest, ConflictingAppendReplacesTheSuffix) {
  auto wal = OpenWal(Small());
  ASSERT_TRUE(AppendEntries(*wal, 1, EntryRun(1, 10, 1)).ok());
  // Fill a few segments so that the conflict lands in a later one.
  for (uint64_t i = 0; i < 60; ++i)
    ASSERT_TRUE(AppendEntries(*wal, 2, EntryRun(i + 1, 1, 1)).ok());
  ASSERT_GT(wal->SegmentSequences().size(), 2u);
  ASSERT_TRUE(AppendEntries(*wal, 1, EntryRun(6, 3, 2)).ok());  // replaces 6..10

  WalReplay replay = Reopen(wal, Small());
  std::vector<raft::Entry> expected = EntryRun(1, 5, 1);
  for (auto& e : EntryRun(6, 3, 2))
    expected.push_back(e);
  EXPECT_EQ(replay.groups.at(1).entries, expected);

  // A later append may extend the new suffix, never resurrect the old one.
  ASSERT_TRUE(AppendEntries(*wal, 1, EntryRun(9, 1, 3)).ok());
  replay = Reopen(wal, Small());
  expected.push_back(EntryRun(9, 1, 3).front());
  EXPECT_EQ(replay.groups.at(1).entries, expected);
}

TEST_F(WalTest, SnapshotMarkerReleasesEntriesAtOrBelowIt) {
  auto wal = OpenWal();
  ASSERT_TRUE(AppendEntries(*wal, 1, EntryRun(1, 10, 1)).ok());
  ASSERT_TRUE(wal->ReleaseTo(1, 4, 1).ok());
  const WalReplay replay = Reopen(wal);
  EXPECT_EQ(replay.groups.at(1).snapshot_index, 4u);
  EXPECT_EQ(replay.groups.at(1).entries, EntryRun(5, 6, 1));
}

TEST_F(WalTest, InstallingASnapshotTruncatesTheOldLog) {
  auto wal = OpenWal();
  ASSERT_TRUE(AppendEntries(*wal, 1, EntryRun(1, 10, 1)).ok());
  // A snapshot at 7 from a leader whose log differs: the follower's entries
  // above it are stale.
  WalBatch install;
  install.AddSnapshotMarker(1, 7, 3);
  install.TruncateFrom(1, 8);
  install.SetHardState(1, {.term = 3, .vote = 0, .commit = 7});
  ASSERT_TRUE(wal->Append(install).ok());
  WalReplay replay = Reopen(wal);
  EXPECT_EQ(replay.groups.at(1).snapshot_index, 7u);
  EXPECT_EQ(replay.groups.at(1).snapshot_term, 3u);
  EXPECT_TRUE(replay.groups.at(1).entries.empty());
  ASSERT_TRUE(AppendEntries(*wal, 1, EntryRun(8, 2, 3)).ok());
  replay = Reopen(wal);
  EXPECT_EQ(replay.groups.at(1).entries, EntryRun(8, 2, 3));
}

TEST_F(WalTest, OutOfOrderBatchesAreRefusedAndChangeNothing) {
  auto wal = OpenWal();
  WalBatch first;
  first.AddEntries(1, EntryRun(1, 5, 2));
  first.AddSnapshotMarker(1, 3, 2);
  first.SetHardState(1, {.term = 2, .vote = 1, .commit = 3});
  ASSERT_TRUE(wal->Append(first).ok());

  auto refused = [&](const WalBatch& batch, std::string_view fragment) {
    const Status s = wal->Append(batch);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
    EXPECT_NE(s.message().find(fragment), std::string::npos) << s.message();
  };
  WalBatch gap;
  gap.AddEntries(1, EntryRun(7, 1, 2));
  refused(gap, "leaving a gap after its last index 5");
  WalBatch backwards;
  backwards.AddSnapshotMarker(1, 2, 2);
  refused(backwards, "below the previous one at 3");
  WalBatch old_term;
  old_term.SetHardState(1, {.term = 1});
  refused(old_term, "below the logged term 2");
  WalBatch holes;
  holes.AddEntries(1, std::vector<raft::Entry>{E(6, 2), E(8, 2)});
  refused(holes, "must be consecutive");
  WalBatch zero;
  zero.AddEntries(1, std::vector<raft::Entry>{E(0, 2)});
  refused(zero, "index 0");
  // A refused batch is refused whole: its valid part is not written either.
  WalBatch mixed;
  mixed.AddEntries(1, EntryRun(6, 1, 2));
  mixed.AddSnapshotMarker(1, 1, 1);
  refused(mixed, "below the previous one");

  // The log still works, and replays only what was accepted.
  ASSERT_TRUE(AppendEntries(*wal, 1, EntryRun(6, 1, 2)).ok());
  const WalReplay replay = Reopen(wal);
  EXPECT_EQ(replay.groups.at(1).entries, EntryRun(4, 3, 2));
  EXPECT_EQ(replay.groups.at(1).snapshot_index, 3u);
  EXPECT_EQ(replay.groups.at(1).hard_state.commit, 3u);
}

TEST_F(WalTest, EmptyBatchIsANoOp) {
  auto wal = OpenWal();
  WalBatch batch;
  EXPECT_TRUE(batch.empty());
  ASSERT_TRUE(wal->Append(batch).ok());
  EXPECT_EQ(wal->stats().syncs, 0u);
}

TEST_F(WalTest, SegmentsRollOverAndReplayInOrder) {
  auto wal = OpenWal(Small(400));
  for (uint64_t i = 1; i <= 200; ++i) {
    WalBatch batch;
    batch.AddEntries(i % 3, EntryRun(i / 3 + 1, 1, 1, "r"));
    batch.SetHardState(i % 3, {.term = 1, .commit = i / 3});
    ASSERT_TRUE(wal->Append(batch).ok()) << i;
  }
  const std::vector<uint64_t> segments = wal->SegmentSequences();
  ASSERT_GT(segments.size(), 10u);
  for (size_t i = 1; i < segments.size(); ++i)
    EXPECT_EQ(segments[i], segments[i - 1] + 1);
  EXPECT_EQ(wal->stats().segments_created, segments.size());
  // Closed segments lost their preallocated tail; none is far past the target.
  for (size_t i = 0; i + 1 < segments.size(); ++i) {
    EXPECT_LT(*fs_.FileSize(SegPath(segments[i])), 400u + 200u);
  }

  const WalReplay replay = Reopen(wal, Small(400));
  for (uint64_t g = 0; g < 3; ++g) {
    const auto& entries = replay.groups.at(g).entries;
    ASSERT_FALSE(entries.empty());
    for (size_t i = 0; i < entries.size(); ++i) {
      EXPECT_EQ(entries[i].index, (g == 0 ? 2 : 1) + i);
    }
  }
}

TEST_F(WalTest, ReleaseRemovesCoveredSegmentsOldestFirst) {
  auto wal = OpenWal(Small(300));
  // Group 2 writes once, early; group 1 fills many segments.
  ASSERT_TRUE(AppendEntries(*wal, 2, EntryRun(1, 1, 1)).ok());
  for (uint64_t i = 1; i <= 60; ++i)
    ASSERT_TRUE(AppendEntries(*wal, 1, EntryRun(i, 1, 1)).ok());
  const size_t before = wal->SegmentSequences().size();
  ASSERT_GT(before, 5u);

  // Group 1's snapshot covers all of its entries, but group 2 pins segment 1
  // and so every later one: only a prefix may go.
  ASSERT_TRUE(wal->ReleaseTo(1, 60, 1).ok());
  EXPECT_EQ(wal->SegmentSequences().size(), before);
  EXPECT_EQ(wal->stats().segments_removed, 0u);

  ASSERT_TRUE(wal->ReleaseTo(2, 1, 1).ok());
  const std::vector<uint64_t> after = wal->SegmentSequences();
  EXPECT_EQ(after.size(), 1u);  // only the segment being written stays
  EXPECT_EQ(wal->stats().segments_removed, before - 1);
  EXPECT_FALSE(*fs_.Exists(SegPath(1)));

  // Nothing needed was lost: markers survive in the new segment's preamble.
  const WalReplay replay = Reopen(wal, Small(300));
  EXPECT_EQ(replay.groups.at(1).snapshot_index, 60u);
  EXPECT_TRUE(replay.groups.at(1).entries.empty());
  EXPECT_EQ(replay.groups.at(2).snapshot_index, 1u);
}

TEST_F(WalTest, ReleaseKeepsEntriesAboveTheMarker) {
  auto wal = OpenWal(Small(300));
  for (uint64_t i = 1; i <= 80; ++i)
    ASSERT_TRUE(AppendEntries(*wal, 1, EntryRun(i, 1, 1)).ok());
  ASSERT_TRUE(wal->ReleaseTo(1, 40, 1).ok());
  EXPECT_GT(wal->stats().segments_removed, 0u);
  // A segment holding entries above 40 must still be there.
  const WalReplay replay = Reopen(wal, Small(300));
  EXPECT_EQ(replay.groups.at(1).snapshot_index, 40u);
  EXPECT_EQ(replay.groups.at(1).entries, EntryRun(41, 40, 1));
}

TEST_F(WalTest, HardStateSurvivesTheReleaseOfItsSegment) {
  auto wal = OpenWal(Small(300));
  WalBatch first;
  first.AddEntries(1, EntryRun(1, 1, 5));
  first.SetHardState(1, {.term = 5, .vote = 2, .commit = 1});
  ASSERT_TRUE(wal->Append(first).ok());
  for (uint64_t i = 1; i <= 40; ++i)
    ASSERT_TRUE(AppendEntries(*wal, 9, EntryRun(i, 1, 1)).ok());
  ASSERT_TRUE(wal->ReleaseTo(1, 1, 5).ok());
  ASSERT_TRUE(wal->ReleaseTo(9, 40, 1).ok());
  EXPECT_FALSE(*fs_.Exists(SegPath(1)));
  const WalReplay replay = Reopen(wal, Small(300));
  EXPECT_EQ(replay.groups.at(1).hard_state, (raft::HardState{.term = 5, .vote = 2, .commit = 1}));
}

// Captures what the WAL logs.
class LogCapture {
 public:
  LogCapture() : previous_(spdlog::default_logger()) {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out_);
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("capture", sink));
  }
  ~LogCapture() { spdlog::set_default_logger(previous_); }
  std::string text() const { return out_.str(); }

 private:
  std::shared_ptr<spdlog::logger> previous_;
  std::ostringstream out_;
};

// The intact records of a segment as it is on disk.
SegmentScan ScanFile(FileSystem& fs, const std::string& path, std::string* data) {
  *data = std::move(fs.ReadFile(path)).value();
  return ScanSegment(*data);
}

TEST_F(WalTest, TornTailIsTruncatedAndLogged) {
  auto wal = OpenWal();
  ASSERT_TRUE(AppendEntries(*wal, 1, EntryRun(1, 3, 1)).ok());
  wal.reset();
  // Half of a record after the last intact one, as a crash mid-write leaves.
  std::string data;
  const uint64_t end = ScanFile(fs_, SegPath(1), &data).end_offset;
  std::string payload;
  EncodeEntries(&payload, 1, 4, EntryRun(4, 1, 1));
  std::string torn;
  AppendFramedRecord(&torn, WalRecordType::kEntries, payload);
  {
    auto file = std::move(fs_.OpenWritable(SegPath(1), OpenMode::kOpenExisting)).value();
    ASSERT_TRUE(file->WriteAt(end, torn.substr(0, torn.size() / 2)).ok());
    ASSERT_TRUE(file->Sync().ok());
  }
  LogCapture capture;
  WalReplay replay;
  {
    wal = OpenWal();
    replay = wal->Replay();
  }
  EXPECT_EQ(replay.groups.at(1).entries, EntryRun(1, 3, 1));
  EXPECT_NE(capture.text().find(fmt::format("{} offset {}", SegPath(1), end)), std::string::npos)
      << capture.text();
  EXPECT_NE(capture.text().find("truncating the torn tail"), std::string::npos);
  EXPECT_EQ(*fs_.FileSize(SegPath(1)), end);  // cut back to the last intact record
  // The log goes on, and reopens cleanly.
  ASSERT_TRUE(AppendEntries(*wal, 1, EntryRun(4, 1, 1)).ok());
  EXPECT_EQ(Reopen(wal).groups.at(1).entries, EntryRun(1, 4, 1));
}

TEST_F(WalTest, CorruptionBeforeTheTailIsRefusedWithFileOffsetAndExpectation) {
  auto wal = OpenWal();
  for (uint64_t i = 1; i <= 3; ++i)
    ASSERT_TRUE(AppendEntries(*wal, 1, EntryRun(i, 1, 1)).ok());
  Reopen(wal);  // segment 2 follows now, so segment 1 is not the last
  wal.reset();
  fs_.Crash();  // settles unsynced truncations, so a byte can be flipped durably
  std::string data;
  const SegmentScan scan = ScanFile(fs_, SegPath(1), &data);
  ASSERT_EQ(scan.records.size(), 4u);  // the header and three entries records
  // Even the final record of a segment that is not the last is not a tail.
  const ScannedRecord& victim = scan.records[3];
  const uint64_t at = victim.offset + kRecordHeaderBytes + 1;
  ASSERT_TRUE(fs_.CorruptByte(SegPath(1), at, 0x04).ok());

  auto opened = Wal::Open(&fs_, kDir, Defaults());
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().code(), StatusCode::kCorruption);
  const std::string message = opened.status().message();
  EXPECT_EQ(message.rfind(fmt::format("{} offset {}: checksum mismatch, expected 0x", SegPath(1),
                                      victim.offset),
                          0),
            0u)
      << message;
  // Refusing changed nothing: with the byte restored the log opens whole.
  ASSERT_TRUE(fs_.CorruptByte(SegPath(1), at, 0x04).ok());
  EXPECT_EQ(Reopen(wal).groups.at(1).entries, EntryRun(1, 3, 1));
}

TEST_F(WalTest, DamageInTheLastSegmentFollowedByIntactDataIsCorruption) {
  auto wal = OpenWal();
  for (uint64_t i = 1; i <= 3; ++i)
    ASSERT_TRUE(AppendEntries(*wal, 1, EntryRun(i, 1, 1)).ok());
  wal.reset();
  fs_.Crash();
  std::string data;
  const SegmentScan scan = ScanFile(fs_, SegPath(1), &data);
  ASSERT_EQ(scan.records.size(), 4u);
  ASSERT_TRUE(fs_.CorruptByte(SegPath(1), scan.records[1].offset + 2, 0x80).ok());
  auto opened = Wal::Open(&fs_, kDir, Defaults());
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().code(), StatusCode::kCorruption);
  EXPECT_NE(opened.status().message().find(
                fmt::format("offset {}: header checksum mismatch", scan.records[1].offset)),
            std::string::npos)
      << opened.status().message();
  EXPECT_NE(opened.status().message().find(
                fmt::format("an intact record follows at offset {}, so this is not a torn tail",
                            scan.records[2].offset)),
            std::string::npos)
      << opened.status().message();
}

TEST_F(WalTest, DamagedPreambleIsCorruptionEvenAtTheEnd) {
  auto wal = OpenWal();
  WalBatch batch;
  batch.SetHardState(1, {.term = 3, .vote = 1});
  ASSERT_TRUE(wal->Append(batch).ok());
  wal.reset();
  wal = OpenWal();  // segment 2 starts with group 1's hard state in its preamble
  wal.reset();
  fs_.Crash();
  std::string data;
  const SegmentScan scan = ScanFile(fs_, SegPath(2), &data);
  ASSERT_EQ(scan.records.size(), 2u);
  ASSERT_TRUE(fs_.CorruptByte(SegPath(2), scan.records[1].offset + 14, 0x01).ok());
  auto opened = Wal::Open(&fs_, kDir, Defaults());
  ASSERT_FALSE(opened.ok());
  EXPECT_NE(opened.status().message().find("inside the preamble"), std::string::npos)
      << opened.status().message();
}

TEST_F(WalTest, MissingSegmentIsRefused) {
  auto wal = OpenWal(Small(300));
  for (uint64_t i = 1; i <= 40; ++i)
    ASSERT_TRUE(AppendEntries(*wal, 1, EntryRun(i, 1, 1)).ok());
  wal.reset();
  ASSERT_TRUE(fs_.RemoveFile(SegPath(2)).ok());
  auto opened = Wal::Open(&fs_, kDir, Small(300));
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().code(), StatusCode::kCorruption);
  EXPECT_NE(opened.status().message().find(SegmentFileName(2) + " is missing"), std::string::npos)
      << opened.status().message();
}

TEST_F(WalTest, UnpublishedSegmentIsRemovedOnOpen) {
  auto wal = OpenWal();
  wal.reset();
  const std::string temp = SegPath(2) + ".tmp";
  ASSERT_TRUE(fs_.OpenWritable(temp, OpenMode::kCreateNew).ok());
  wal = OpenWal();
  EXPECT_FALSE(*fs_.Exists(temp));
  EXPECT_EQ(wal->SegmentSequences(), (std::vector<uint64_t>{1, 2}));
}

TEST_F(WalTest, WriteFailureStopsTheLogAndLosesNothingAcknowledged) {
  auto wal = OpenWal();
  ASSERT_TRUE(AppendEntries(*wal, 1, EntryRun(1, 2, 1)).ok());
  fs_.FailNextWrite();
  const Status failed = AppendEntries(*wal, 1, EntryRun(3, 1, 1));
  EXPECT_EQ(failed.code(), StatusCode::kIOError);
  // Sticky: the file's state is unknown, so nothing more is accepted.
  EXPECT_EQ(AppendEntries(*wal, 1, EntryRun(3, 1, 1)), failed);
  EXPECT_EQ(wal->ReleaseTo(1, 1, 1), failed);
  EXPECT_EQ(Reopen(wal).groups.at(1).entries, EntryRun(1, 2, 1));
  ASSERT_TRUE(AppendEntries(*wal, 1, EntryRun(3, 1, 1)).ok());
}

TEST_F(WalTest, SyncFailureLosesNothingAcknowledged) {
  auto wal = OpenWal();
  ASSERT_TRUE(AppendEntries(*wal, 1, EntryRun(1, 2, 1)).ok());
  fs_.FailNextSync();
  EXPECT_EQ(AppendEntries(*wal, 1, EntryRun(3, 5, 1)).code(), StatusCode::kIOError);
  EXPECT_EQ(AppendEntries(*wal, 1, EntryRun(3, 5, 1)).code(), StatusCode::kIOError);
  wal.reset();
  fs_.Crash();  // the unsynced write is gone
  EXPECT_EQ(Reopen(wal).groups.at(1).entries, EntryRun(1, 2, 1));
}

TEST(WalRolloverTest, FailureAtAnyAppendStopsTheLogAndLosesNothingAcknowledged) {
  // The n-th append fails at its first write, which is a new segment's header
  // when a rollover is due and the batch itself otherwise.
  int rollovers_failed = 0;
  for (uint64_t n = 0; n < 40; ++n) {
    FaultInjectionFileSystem fs(n);
    WalOptions options;
    options.segment_bytes_target = 300;
    auto wal = std::move(Wal::Open(&fs, kDir, options)).value();
    for (uint64_t i = 1; i <= n; ++i) {
      WalBatch batch;
      batch.AddEntries(1, EntryRun(i, 1, 1));
      ASSERT_TRUE(wal->Append(batch).ok());
    }
    const size_t segments = wal->SegmentSequences().size();
    fs.FailWritesAfter(0);
    WalBatch batch;
    batch.AddEntries(1, EntryRun(n + 1, 1, 1));
    ASSERT_EQ(wal->Append(batch).code(), StatusCode::kIOError);
    fs.ClearFaults();
    ASSERT_EQ(wal->Append(batch).code(), StatusCode::kIOError);  // stopped
    EXPECT_EQ(wal->SegmentSequences().size(), segments);
    const auto names = std::move(fs.ListDir(kDir)).value();
    rollovers_failed += std::count_if(
        names.begin(), names.end(), [](const std::string& name) { return name.ends_with(".tmp"); });
    wal.reset();
    fs.Crash(CrashOptions{.tear_unsynced_writes = true});
    wal = std::move(Wal::Open(&fs, kDir, options)).value();
    const WalReplay replay = wal->Replay();
    if (n == 0) {
      EXPECT_TRUE(replay.groups.empty());
    } else {
      EXPECT_EQ(replay.groups.at(1).entries, EntryRun(1, n, 1)) << "n " << n;
    }
    const std::vector<std::string> after = std::move(fs.ListDir(kDir)).value();
    for (const std::string& name : after) {
      EXPECT_FALSE(name.ends_with(".tmp")) << name;  // removed on open
    }
  }
  EXPECT_GT(rollovers_failed, 0);
}

TEST_F(WalTest, LargeEntryRunsAreSplitAcrossRecords) {
  auto wal = OpenWal(Small(1 << 20));
  std::vector<raft::Entry> big;
  for (uint64_t i = 1; i <= 3; ++i)
    big.push_back(E(i, 1, std::string(12 << 20, 'a' + i)));
  WalBatch batch;
  batch.AddEntries(1, big);
  ASSERT_TRUE(wal->Append(batch).ok());
  EXPECT_EQ(Reopen(wal, Small(1 << 20)).groups.at(1).entries, big);

  WalBatch too_big;
  too_big.AddEntries(1,
                     std::vector<raft::Entry>{E(4, 1, std::string(kMaxRecordPayloadBytes, 'x'))});
  EXPECT_EQ(wal->Append(too_big).code(), StatusCode::kInvalidArgument);
}

TEST_F(WalTest, OptionsAreValidated) {
  WalOptions tiny;
  tiny.segment_bytes_target = 10;
  EXPECT_EQ(Wal::Open(&fs_, kDir, tiny).status().code(), StatusCode::kInvalidArgument);
  WalOptions no_batch;
  no_batch.group_commit_bytes_max = 0;
  EXPECT_EQ(Wal::Open(&fs_, kDir, no_batch).status().code(), StatusCode::kInvalidArgument);
}

// ---- Concurrency ----

// Appends `per_thread` single-entry batches to group `group` from 1 on.
void AppendMany(Wal* wal, raft::GroupId group, uint64_t per_thread, std::atomic<int>* failures) {
  for (uint64_t i = 1; i <= per_thread; ++i) {
    WalBatch batch;
    batch.AddEntries(group, EntryRun(i, 1, 1, "c"));
    if (i % 10 == 0) batch.SetHardState(group, {.term = 1, .commit = i});
    if (!wal->Append(batch).ok()) failures->fetch_add(1);
  }
}

TEST_F(WalTest, ConcurrentAppendsAreAllReplayed) {
  constexpr int kThreads = 16;
  constexpr uint64_t kPerThread = 100;
  auto wal = OpenWal(Small(4096));
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back(AppendMany, wal.get(), t, kPerThread, &failures);
  }
  // Meanwhile a seventeenth group writes and releases behind itself.
  threads.emplace_back([&] {
    for (uint64_t i = 1; i <= 50; ++i) {
      if (!AppendEntries(*wal, 99, EntryRun(i, 1, 1)).ok()) failures.fetch_add(1);
      if (i % 10 == 0 && !wal->ReleaseTo(99, i, 1).ok()) failures.fetch_add(1);
    }
  });
  for (auto& t : threads)
    t.join();
  ASSERT_EQ(failures.load(), 0);
  const WalStats stats = wal->stats();
  EXPECT_EQ(stats.appends, kThreads * kPerThread + 50 + 5);
  EXPECT_LE(stats.syncs, stats.appends);

  const WalReplay replay = Reopen(wal, Small(4096));
  for (raft::GroupId g = 0; g < kThreads; ++g) {
    EXPECT_EQ(replay.groups.at(g).entries, EntryRun(1, kPerThread, 1, "c")) << "group " << g;
    EXPECT_EQ(replay.groups.at(g).hard_state.commit, kPerThread);
  }
  EXPECT_EQ(replay.groups.at(99).snapshot_index, 50u);
}

TEST(WalPosixTest, ConcurrentAppendsOnARealDiskAreAllReplayed) {
  test::TempDir temp;
  auto fs = NewPosixFileSystem();
  const std::string dir = JoinPath(temp.path(), "wal");
  WalOptions options;
  options.segment_bytes_target = 64 << 10;
  constexpr int kThreads = 16;
  constexpr uint64_t kPerThread = 25;
  {
    auto wal = std::move(Wal::Open(fs.get(), dir, options)).value();
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back(AppendMany, wal.get(), t, kPerThread, &failures);
    }
    for (auto& t : threads)
      t.join();
    ASSERT_EQ(failures.load(), 0);
    EXPECT_EQ(wal->stats().appends, kThreads * kPerThread);
    // Preallocated: the segment being written has its full size already.
    EXPECT_EQ(*fs->FileSize(JoinPath(dir, SegmentFileName(wal->SegmentSequences().back()))),
              options.segment_bytes_target);
  }
  auto wal = std::move(Wal::Open(fs.get(), dir, options)).value();
  const WalReplay replay = wal->Replay();
  for (raft::GroupId g = 0; g < kThreads; ++g) {
    EXPECT_EQ(replay.groups.at(g).entries, EntryRun(1, kPerThread, 1, "c")) << "group " << g;
  }
  // The recovered segment was cut back to its records.
  std::string data = std::move(fs->ReadFile(JoinPath(dir, SegmentFileName(1)))).value();
  EXPECT_EQ(ScanSegment(data).end_offset, data.size());
}

// A FileSystem whose data syncs wait while a gate is closed, so a test can
// hold the writer inside its sync while other appenders queue up.
class GatedFileSystem final : public FileSystem {
 public:
  explicit GatedFileSystem(FileSystem* base) : base_(base) {}

  void CloseGate() {
    std::lock_guard lock(mu_);
    closed_ = true;
  }
  void OpenGate() {
    std::lock_guard lock(mu_);
    closed_ = false;
    cv_.notify_all();
  }
  // Waits until `n` syncs are held at the gate, up to a deadline.
  bool AwaitWaiting(int n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(30), [&] { return waiting_ == n; });
  }

  Result<std::unique_ptr<WritableFile>> OpenWritable(const std::string& path,
                                                     OpenMode mode) override {
    ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> file, base_->OpenWritable(path, mode));
    return std::unique_ptr<WritableFile>(std::make_unique<GatedFile>(this, std::move(file)));
  }
  Result<std::string> ReadFile(const std::string& p) override { return base_->ReadFile(p); }
  Result<std::string> ReadFileAt(const std::string& p, uint64_t o, uint64_t n) override {
    return base_->ReadFileAt(p, o, n);
  }
  Result<std::vector<std::string>> ListDir(const std::string& d) override {
    return base_->ListDir(d);
  }
  Status Rename(const std::string& f, const std::string& t) override { return base_->Rename(f, t); }
  Status RemoveFile(const std::string& p) override { return base_->RemoveFile(p); }
  Status CreateDirs(const std::string& d) override { return base_->CreateDirs(d); }
  Status SyncDir(const std::string& d) override { return base_->SyncDir(d); }
  Result<uint64_t> FileSize(const std::string& p) override { return base_->FileSize(p); }
  Result<bool> Exists(const std::string& p) override { return base_->Exists(p); }

 private:
  class GatedFile final : public WritableFile {
   public:
    GatedFile(GatedFileSystem* fs, std::unique_ptr<WritableFile> base)
        : fs_(fs), base_(std::move(base)) {}
    Status Append(std::string_view d) override { return base_->Append(d); }
    Status WriteAt(uint64_t o, std::string_view d) override { return base_->WriteAt(o, d); }
    Status Sync() override {
      {
        std::unique_lock lock(fs_->mu_);
        ++fs_->waiting_;
        fs_->cv_.notify_all();
        fs_->cv_.wait(lock, [&] { return !fs_->closed_; });
        --fs_->waiting_;
      }
      return base_->Sync();
    }
    Status Preallocate(uint64_t o, uint64_t n) override { return base_->Preallocate(o, n); }
    Status Truncate(uint64_t s) override { return base_->Truncate(s); }
    Status Close() override { return base_->Close(); }
    uint64_t Size() const override { return base_->Size(); }

   private:
    GatedFileSystem* fs_;
    std::unique_ptr<WritableFile> base_;
  };

  FileSystem* base_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool closed_ = false;
  int waiting_ = 0;
};

TEST(WalGroupCommitTest, AppendersQueuedBehindASyncShareTheNextOne) {
  FaultInjectionFileSystem base(3);
  GatedFileSystem fs(&base);
  WalOptions options;
  options.segment_bytes_target = 64 << 10;
  auto wal = std::move(Wal::Open(&fs, kDir, options)).value();
  const uint64_t syncs_before = wal->stats().syncs;
  fs.CloseGate();
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  threads.emplace_back(AppendMany, wal.get(), 0, 1, &failures);
  ASSERT_TRUE(fs.AwaitWaiting(1));  // the first appender is the writer, held in its sync
  constexpr int kQueued = 15;
  for (int t = 1; t <= kQueued; ++t)
    threads.emplace_back(AppendMany, wal.get(), t, 1, &failures);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (wal->stats().queue_depth < kQueued + 1 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  ASSERT_EQ(wal->stats().queue_depth, kQueued + 1u);
  fs.OpenGate();
  for (auto& t : threads)
    t.join();
  ASSERT_EQ(failures.load(), 0);
  // One sync for the first appender, one for the fifteen queued behind it.
  EXPECT_EQ(wal->stats().syncs - syncs_before, 2u);
  EXPECT_EQ(wal->stats().appends, kQueued + 1u);
  wal.reset();
  wal = std::move(Wal::Open(&fs, kDir, options)).value();
  EXPECT_EQ(wal->Replay().groups.size(), kQueued + 1u);
}

TEST(WalGroupCommitTest, GroupCommitRespectsTheByteLimit) {
  FaultInjectionFileSystem base(4);
  GatedFileSystem fs(&base);
  WalOptions options;
  options.segment_bytes_target = 64 << 10;
  options.group_commit_bytes_max = 1;  // every batch is its own group commit
  auto wal = std::move(Wal::Open(&fs, kDir, options)).value();
  const uint64_t syncs_before = wal->stats().syncs;
  fs.CloseGate();
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back(AppendMany, wal.get(), t, 1, &failures);
  ASSERT_TRUE(fs.AwaitWaiting(1));
  fs.OpenGate();
  for (auto& t : threads)
    t.join();
  EXPECT_EQ(wal->stats().syncs - syncs_before, 4u);
}

}  // namespace
}  // namespace conclave::storage
