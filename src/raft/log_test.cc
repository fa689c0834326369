// Unit tests for Unstable, RaftLog and MemoryStorage: the log's index
// arithmetic, conflict handling and the split between stable and unstable
// entries.
#include "raft/log.h"

#include <gtest/gtest.h>

#include "raft/storage.h"
#include "raft/test_network.h"  // value printers

namespace conclave::raft {
namespace {

Entry E(uint64_t index, uint64_t term, std::string data = "") {
  return Entry{.term = term, .index = index, .data = std::move(data)};
}

// Entries [first, first + terms.size()) with the given terms.
std::vector<Entry> MakeRun(uint64_t first, const std::vector<uint64_t>& terms) {
  std::vector<Entry> out;
  for (uint64_t t : terms)
    out.push_back(E(first++, t));
  return out;
}

Snapshot Snap(uint64_t index, uint64_t term, ConfState cs = {}) {
  return Snapshot{SnapshotMetadata{index, term, std::move(cs)}, "image"};
}

std::vector<uint64_t> Indexes(const std::vector<Entry>& entries) {
  std::vector<uint64_t> out;
  for (const Entry& e : entries)
    out.push_back(e.index);
  return out;
}

// ---- Unstable ----

TEST(UnstableTest, IndexesWithoutSnapshotComeFromEntries) {
  Unstable u;
  u.set_offset(5);
  EXPECT_EQ(u.MaybeFirstIndex(), std::nullopt);  // only a snapshot tells the first index
  EXPECT_EQ(u.MaybeLastIndex(), std::nullopt);
  u.TruncateAndAppend(MakeRun(5, {1, 1, 2}));
  EXPECT_EQ(u.MaybeFirstIndex(), std::nullopt);
  EXPECT_EQ(u.MaybeLastIndex(), 7u);
  EXPECT_EQ(u.MaybeTerm(5), 1u);
  EXPECT_EQ(u.MaybeTerm(7), 2u);
  EXPECT_EQ(u.MaybeTerm(4), std::nullopt);  // stable: ask storage
  EXPECT_EQ(u.MaybeTerm(8), std::nullopt);
}

TEST(UnstableTest, SnapshotGivesFirstIndexAndTerm) {
  Unstable u;
  u.set_offset(3);
  u.TruncateAndAppend(MakeRun(3, {1, 1}));
  u.Restore(Snap(10, 4));
  EXPECT_EQ(u.offset(), 11u);
  EXPECT_TRUE(u.entries().empty());
  EXPECT_EQ(u.MaybeFirstIndex(), 11u);
  EXPECT_EQ(u.MaybeLastIndex(), 10u);
  EXPECT_EQ(u.MaybeTerm(10), 4u);
  EXPECT_EQ(u.MaybeTerm(9), std::nullopt);
  EXPECT_EQ(u.MaybeTerm(11), std::nullopt);

  u.TruncateAndAppend(MakeRun(11, {4, 5}));
  EXPECT_EQ(u.MaybeFirstIndex(), 11u);
  EXPECT_EQ(u.MaybeLastIndex(), 12u);
  EXPECT_EQ(u.MaybeTerm(10), 4u);
  EXPECT_EQ(u.MaybeTerm(12), 5u);

  u.StableSnapshotTo(9);  // not the pending snapshot
  EXPECT_TRUE(u.snapshot().has_value());
  u.StableSnapshotTo(10);
  EXPECT_FALSE(u.snapshot().has_value());
  EXPECT_EQ(u.MaybeFirstIndex(), std::nullopt);
  EXPECT_EQ(u.MaybeLastIndex(), 12u);
}

TEST(UnstableTest, TruncateAndAppend) {
  struct Case {
    std::vector<Entry> append;
    uint64_t want_offset;
    std::vector<uint64_t> want_terms;
  };
  const std::vector<Case> cases = {
      {MakeRun(8, {1, 1}), 5, {1, 1, 1, 1, 1}},  // at the end
      {MakeRun(6, {2, 2}), 5, {1, 2, 2}},        // inside: truncates the suffix
      {MakeRun(5, {2}), 5, {2}},                 // at the offset: replaces everything
      {MakeRun(4, {2, 2, 2}), 4, {2, 2, 2}},     // before the offset: replaces stable entries too
      {{}, 5, {1, 1, 1}},                        // nothing
  };
  for (const Case& c : cases) {
    Unstable u;
    u.set_offset(5);
    u.TruncateAndAppend(MakeRun(5, {1, 1, 1}));
    u.TruncateAndAppend(c.append);
    EXPECT_EQ(u.offset(), c.want_offset);
    std::vector<uint64_t> terms;
    for (const Entry& e : u.entries())
      terms.push_back(e.term);
    EXPECT_EQ(terms, c.want_terms);
  }
}

TEST(UnstableTest, StableToDropsOnlyMatchingPrefix) {
  Unstable u;
  u.set_offset(5);
  u.TruncateAndAppend(MakeRun(5, {1, 1, 2}));
  u.StableTo(6, 2);  // term changed since the entries were handed out
  EXPECT_EQ(u.offset(), 5u);
  u.StableTo(4, 1);  // already stable
  EXPECT_EQ(u.offset(), 5u);
  u.StableTo(9, 2);  // beyond the log
  EXPECT_EQ(u.offset(), 5u);
  u.StableTo(6, 1);
  EXPECT_EQ(u.offset(), 7u);
  EXPECT_EQ(Indexes(u.entries()), (std::vector<uint64_t>{7}));
  u.StableTo(7, 2);
  EXPECT_EQ(u.offset(), 8u);
  EXPECT_TRUE(u.entries().empty());
}

TEST(UnstableTest, StableToIgnoresSnapshotIndex) {
  Unstable u;
  u.Restore(Snap(10, 3));
  u.StableTo(10, 3);  // the snapshot is persisted through StableSnapshotTo, not this
  EXPECT_EQ(u.offset(), 11u);
  EXPECT_TRUE(u.snapshot().has_value());
}

TEST(UnstableTest, Slice) {
  Unstable u;
  u.set_offset(5);
  u.TruncateAndAppend(MakeRun(5, {1, 2, 3}));
  EXPECT_EQ(Indexes(u.Slice(5, 8)), (std::vector<uint64_t>{5, 6, 7}));
  EXPECT_EQ(Indexes(u.Slice(6, 7)), (std::vector<uint64_t>{6}));
  EXPECT_TRUE(u.Slice(6, 6).empty());
  EXPECT_DEATH((void)u.Slice(4, 6), "outside");
  EXPECT_DEATH((void)u.Slice(6, 9), "outside");
}

// ---- MemoryStorage ----

TEST(MemoryStorageTest, EmptyStorage) {
  MemoryStorage s;
  EXPECT_EQ(s.FirstIndex(), 1u);
  EXPECT_EQ(s.LastIndex(), 0u);
  EXPECT_EQ(*s.Term(0), 0u);
  EXPECT_EQ(s.Term(1).status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(s.InitialHardState().IsEmpty());
  EXPECT_TRUE(s.LatestSnapshot().IsEmpty());
}

// A new group starts from a snapshot at index 1, term 1 that names its
// members, so that members added later can be sent that snapshot.
TEST(MemoryStorageTest, BootstrapCreatesSnapshotAtIndexOne) {
  MemoryStorage s;
  const ConfState cs{.voters = {1, 2, 3}};
  s.Bootstrap(cs);
  EXPECT_EQ(s.LatestSnapshot().metadata, (SnapshotMetadata{1, 1, cs}));
  EXPECT_TRUE(s.LatestSnapshot().data.empty());
  EXPECT_EQ(s.InitialConfState(), cs);
  EXPECT_EQ(s.InitialHardState(), (HardState{1, kNoNode, 1}));
  EXPECT_EQ(s.FirstIndex(), 2u);
  EXPECT_EQ(s.LastIndex(), 1u);
  EXPECT_EQ(*s.Term(1), 1u);
  EXPECT_EQ(s.Term(0).status().code(), StatusCode::kOutOfRange);
  EXPECT_EQ(s.Entries(1, 2, UINT64_MAX).status().code(), StatusCode::kOutOfRange);
}

TEST(MemoryStorageTest, AppendTruncatesConflictingSuffix) {
  struct Case {
    std::vector<Entry> append;
    std::vector<std::pair<uint64_t, uint64_t>> want;  // (index, term) after the dummy
  };
  // Storage holds a snapshot at 3 (term 3) and entries 4, 5 of terms 4, 5.
  const std::vector<Case> cases = {
      {MakeRun(4, {4, 5}), {{4, 4}, {5, 5}}},             // same entries
      {MakeRun(4, {4, 6, 6}), {{4, 4}, {5, 6}, {6, 6}}},  // conflict at 5
      {MakeRun(6, {5}), {{4, 4}, {5, 5}, {6, 5}}},        // at the end
      {MakeRun(5, {7}), {{4, 4}, {5, 7}}},                // replaces the last
      {MakeRun(2, {3, 3, 5}), {{4, 5}}},                  // compacted part skipped
      {MakeRun(1, {1, 1}), {{4, 4}, {5, 5}}},             // all compacted: ignored
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    MemoryStorage s;
    ASSERT_TRUE(s.ApplySnapshot(Snap(3, 3)).ok());
    s.Append(MakeRun(4, {4, 5}));
    s.Append(cases[i].append);
    std::vector<std::pair<uint64_t, uint64_t>> got;
    for (uint64_t j = s.FirstIndex(); j <= s.LastIndex(); ++j)
      got.emplace_back(j, *s.Term(j));
    EXPECT_EQ(got, cases[i].want) << "case " << i;
    EXPECT_EQ(*s.Term(3), 3u) << "case " << i;
  }
}

TEST(MemoryStorageTest, AppendWithGapDies) {
  MemoryStorage s;
  s.Append(MakeRun(1, {1, 1}));
  EXPECT_DEATH(s.Append(MakeRun(4, {1})), "gap");
}

TEST(MemoryStorageTest, EntriesHonourByteLimitAndCompaction) {
  MemoryStorage s;
  s.Append({E(1, 1, "aaaa"), E(2, 1, "bbbb"), E(3, 1, "cccc"), E(4, 1, "dddd")});
  EXPECT_EQ(Indexes(*s.Entries(1, 5, UINT64_MAX)), (std::vector<uint64_t>{1, 2, 3, 4}));
  EXPECT_EQ(Indexes(*s.Entries(1, 5, 8)), (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(Indexes(*s.Entries(1, 5, 11)), (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(Indexes(*s.Entries(2, 5, 0)), (std::vector<uint64_t>{2}));  // at least one
  EXPECT_EQ(Indexes(*s.Entries(2, 3, UINT64_MAX)), (std::vector<uint64_t>{2}));
  EXPECT_DEATH((void)s.Entries(2, 6, UINT64_MAX), "beyond last index");

  ASSERT_TRUE(s.CreateSnapshot(2, ConfState{.voters = {1}}, "img").ok());
  ASSERT_TRUE(s.Compact(2).ok());
  EXPECT_EQ(s.Entries(2, 4, UINT64_MAX).status().code(), StatusCode::kOutOfRange);
  EXPECT_EQ(Indexes(*s.Entries(3, 5, UINT64_MAX)), (std::vector<uint64_t>{3, 4}));
  EXPECT_EQ(s.Entries(3, 5, UINT64_MAX)->front().data, "cccc");
}

TEST(MemoryStorageTest, CreateSnapshotKeepsEntries) {
  MemoryStorage s;
  s.Append(MakeRun(1, {1, 2, 2, 3}));
  const ConfState cs{.voters = {1, 2}, .learners = {3}};
  ASSERT_TRUE(s.CreateSnapshot(3, cs, "state@3").ok());
  Snapshot snap = s.LatestSnapshot();
  EXPECT_EQ(snap.metadata, (SnapshotMetadata{3, 2, cs}));
  EXPECT_EQ(snap.data, "state@3");
  EXPECT_EQ(s.InitialConfState(), cs);
  EXPECT_EQ(s.FirstIndex(), 1u);  // compaction is a separate step
  EXPECT_EQ(s.LastIndex(), 4u);

  EXPECT_EQ(s.CreateSnapshot(3, cs, "").code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.CreateSnapshot(2, cs, "").code(), StatusCode::kFailedPrecondition);
  EXPECT_DEATH((void)s.CreateSnapshot(5, cs, ""), "beyond last index");
}

TEST(MemoryStorageTest, Compact) {
  MemoryStorage s;
  s.Append(MakeRun(1, {1, 2, 3, 4, 5}));
  ASSERT_TRUE(s.Compact(3).ok());
  EXPECT_EQ(s.FirstIndex(), 4u);
  EXPECT_EQ(s.LastIndex(), 5u);
  EXPECT_EQ(*s.Term(3), 3u);  // the compaction point keeps its term
  EXPECT_EQ(s.Term(2).status().code(), StatusCode::kOutOfRange);
  EXPECT_EQ(*s.Term(5), 5u);
  EXPECT_EQ(s.Compact(3).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.Compact(2).code(), StatusCode::kFailedPrecondition);
  ASSERT_TRUE(s.Compact(5).ok());
  EXPECT_EQ(s.FirstIndex(), 6u);
  EXPECT_EQ(s.LastIndex(), 5u);
  EXPECT_DEATH((void)s.Compact(6), "beyond last index");
  // The log continues after a full compaction.
  s.Append(MakeRun(6, {5}));
  EXPECT_EQ(s.LastIndex(), 6u);
}

TEST(MemoryStorageTest, ApplySnapshotReplacesLog) {
  MemoryStorage s;
  s.Append(MakeRun(1, {1, 1, 1}));
  const ConfState cs{.voters = {1, 2, 3}};
  ASSERT_TRUE(s.ApplySnapshot(Snapshot{SnapshotMetadata{10, 4, cs}, "ten"}).ok());
  EXPECT_EQ(s.FirstIndex(), 11u);
  EXPECT_EQ(s.LastIndex(), 10u);
  EXPECT_EQ(*s.Term(10), 4u);
  EXPECT_EQ(s.LatestSnapshot().data, "ten");
  EXPECT_EQ(s.InitialConfState(), cs);
  EXPECT_EQ(s.ApplySnapshot(Snap(10, 4)).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.ApplySnapshot(Snap(9, 5)).code(), StatusCode::kFailedPrecondition);
  s.Append(MakeRun(11, {4}));
  EXPECT_EQ(s.LastIndex(), 11u);
}

// ---- RaftLog ----

// A storage holding entries 1..3 of terms 1, 2, 3.
class RaftLogTest : public ::testing::Test {
 protected:
  RaftLogTest() { storage_.Append(MakeRun(1, {1, 2, 3})); }
  MemoryStorage storage_;
};

TEST_F(RaftLogTest, StartsCommittedAtSnapshot) {
  RaftLog log(&storage_, UINT64_MAX);
  EXPECT_EQ(log.FirstIndex(), 1u);
  EXPECT_EQ(log.LastIndex(), 3u);
  EXPECT_EQ(log.LastTerm(), 3u);
  EXPECT_EQ(log.committed(), 0u);
  EXPECT_EQ(log.applied(), 0u);

  MemoryStorage boot;
  boot.Bootstrap(ConfState{.voters = {1}});
  RaftLog booted(&boot, UINT64_MAX);
  EXPECT_EQ(booted.committed(), 1u);
  EXPECT_EQ(booted.applied(), 1u);
  EXPECT_EQ(booted.LastIndex(), 1u);
  EXPECT_EQ(booted.LastTerm(), 1u);
}

TEST_F(RaftLogTest, FindConflict) {
  RaftLog log(&storage_, UINT64_MAX);
  struct Case {
    std::vector<Entry> entries;
    uint64_t want;
  };
  const std::vector<Case> cases = {
      {{}, 0},
      {MakeRun(1, {1, 2, 3}), 0},
      {MakeRun(2, {2, 3}), 0},
      {MakeRun(3, {3}), 0},
      {MakeRun(1, {1, 2, 3, 4, 4}), 4},  // new entries count as a conflict
      {MakeRun(3, {3, 4}), 4},
      {MakeRun(4, {4, 4}), 4},
      {MakeRun(1, {4, 4}), 1},
      {MakeRun(2, {1, 4, 4}), 2},
      {MakeRun(3, {1, 2, 4, 4}), 3},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    EXPECT_EQ(log.FindConflict(cases[i].entries), cases[i].want) << "case " << i;
  }
}

TEST_F(RaftLogTest, MaybeAppend) {
  struct Case {
    uint64_t index, log_term, commit;
    std::vector<Entry> entries;
    std::optional<uint64_t> want_last_new;
    uint64_t want_commit;
    std::vector<uint64_t> want_terms;  // whole log after the call
  };
  const std::vector<Case> cases = {
      // The entry before the new ones does not match: refused.
      {3, 2, 3, MakeRun(4, {4}), std::nullopt, 1, {1, 2, 3}},
      {4, 3, 3, MakeRun(5, {4}), std::nullopt, 1, {1, 2, 3}},
      // Heartbeat-like appends only move the commit index, never past the
      // last index the leader vouched for.
      {3, 3, 3, {}, 3, 3, {1, 2, 3}},
      {3, 3, 4, {}, 3, 3, {1, 2, 3}},
      {3, 3, 2, {}, 3, 2, {1, 2, 3}},
      {3, 3, 0, {}, 3, 1, {1, 2, 3}},  // commit never moves back
      {0, 0, 3, MakeRun(1, {1}), 1, 1, {1, 2, 3}},
      // New entries at the end.
      {3, 3, 3, MakeRun(4, {4}), 4, 3, {1, 2, 3, 4}},
      {3, 3, 4, MakeRun(4, {4}), 4, 4, {1, 2, 3, 4}},
      {3, 3, 5, MakeRun(4, {4}), 4, 4, {1, 2, 3, 4}},
      {3, 3, 5, MakeRun(4, {4, 4}), 5, 5, {1, 2, 3, 4, 4}},
      // A conflict truncates our suffix from the conflicting entry on.
      {2, 2, 3, MakeRun(3, {4}), 3, 3, {1, 2, 4}},
      {1, 1, 3, MakeRun(2, {4}), 2, 2, {1, 4}},
      // Matching entries shorter than our log: our extra entries stay, but
      // are not committed on the leader's word.
      {1, 1, 3, MakeRun(2, {2}), 2, 2, {1, 2, 3}},
      {1, 1, 3, MakeRun(2, {2, 3}), 3, 3, {1, 2, 3}},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    RaftLog log(&storage_, UINT64_MAX);
    log.CommitTo(1);
    EXPECT_EQ(log.MaybeAppend(c.index, c.log_term, c.commit, c.entries), c.want_last_new)
        << "case " << i;
    EXPECT_EQ(log.committed(), c.want_commit) << "case " << i;
    std::vector<uint64_t> terms;
    for (uint64_t j = 1; j <= log.LastIndex(); ++j)
      terms.push_back(log.Term(j));
    EXPECT_EQ(terms, c.want_terms) << "case " << i;
  }
}

TEST_F(RaftLogTest, ConflictWithCommittedEntryDies) {
  RaftLog log(&storage_, UINT64_MAX);
  log.CommitTo(2);
  EXPECT_DEATH((void)log.MaybeAppend(1, 1, 3, MakeRun(2, {4})), "conflicts with committed");
  EXPECT_DEATH((void)log.Append(MakeRun(2, {4})), "overwrite committed");
}

TEST_F(RaftLogTest, AppendReplacesUnstableAndStableSuffix) {
  RaftLog log(&storage_, UINT64_MAX);
  EXPECT_EQ(log.Append(MakeRun(4, {3, 3})), 5u);
  EXPECT_EQ(log.unstable().offset(), 4u);
  // Replacing part of the stable log: the unstable part now starts at 3 and
  // hides storage's entry 3 until the caller persists the replacement.
  EXPECT_EQ(log.Append(MakeRun(3, {5})), 3u);
  EXPECT_EQ(log.unstable().offset(), 3u);
  EXPECT_EQ(log.Term(3), 5u);
  EXPECT_EQ(log.Term(2), 2u);
  EXPECT_EQ(log.LastIndex(), 3u);
}

TEST(RaftLogFindConflictByTermTest, SkipsWholeTerms) {
  // Snapshot at 10 (term 3), stable 11..15, unstable 16..17.
  MemoryStorage storage;
  ASSERT_TRUE(storage.ApplySnapshot(Snap(10, 3)).ok());
  storage.Append(MakeRun(11, {3, 3, 4, 4, 5}));
  RaftLog log(&storage, UINT64_MAX);
  log.Append(MakeRun(16, {5, 6}));
  struct Case {
    uint64_t index, term, want;
  };
  const std::vector<Case> cases = {
      {17, 6, 17}, {17, 7, 17}, {17, 5, 16}, {17, 4, 14}, {17, 3, 12},
      {15, 4, 14}, {13, 4, 13}, {12, 4, 12}, {20, 5, 16},  // beyond the last index
      {10, 3, 10},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(log.FindConflictByTerm(c.index, c.term), c.want) << c.index << "/" << c.term;
  }
  // Every term we still hold is larger: the answer lies in the compacted
  // part, below the snapshot.
  EXPECT_LT(log.FindConflictByTerm(17, 2), 10u);
}

TEST(RaftLogIsUpToDateTest, ComparesLastTermThenIndex) {
  MemoryStorage storage;
  storage.Append(MakeRun(1, {1, 2, 2}));
  RaftLog log(&storage, UINT64_MAX);
  EXPECT_TRUE(log.IsUpToDate(3, 2));    // equal
  EXPECT_TRUE(log.IsUpToDate(4, 2));    // longer, same term
  EXPECT_FALSE(log.IsUpToDate(2, 2));   // shorter, same term
  EXPECT_TRUE(log.IsUpToDate(1, 3));    // higher term wins even if shorter
  EXPECT_FALSE(log.IsUpToDate(10, 1));  // lower term loses even if longer
}

// Storage holds 11..15 after a snapshot at 10, the unstable part 16..17;
// every payload is 10 bytes.
class RaftLogSliceTest : public ::testing::Test {
 protected:
  RaftLogSliceTest() {
    EXPECT_TRUE(storage_.ApplySnapshot(Snap(10, 1)).ok());
    std::vector<Entry> stable;
    for (uint64_t i = 11; i <= 15; ++i)
      stable.push_back(E(i, 1, std::string(10, 'a' + i % 26)));
    storage_.Append(stable);
    log_ = std::make_unique<RaftLog>(&storage_, 25);
    log_->Append({E(16, 2, std::string(10, 'x')), E(17, 2, std::string(10, 'y'))});
  }
  MemoryStorage storage_;
  std::unique_ptr<RaftLog> log_;
};

TEST_F(RaftLogSliceTest, AcrossStorageAndUnstable) {
  struct Case {
    uint64_t lo, hi, max_bytes;
    std::vector<uint64_t> want;
  };
  const std::vector<Case> cases = {
      {11, 18, UINT64_MAX, {11, 12, 13, 14, 15, 16, 17}},
      {11, 18, 0, {11}},           // at least one entry
      {11, 18, 25, {11, 12}},      // limit inside storage
      {14, 18, 20, {14, 15}},      // exactly at the limit, stops before unstable
      {15, 18, 25, {15, 16}},      // limit crosses into unstable
      {15, 18, 30, {15, 16, 17}},  // exactly fills
      {16, 18, 15, {16}},          // unstable only
      {16, 17, UINT64_MAX, {16}},
      {13, 16, UINT64_MAX, {13, 14, 15}},  // storage only
      {12, 12, UINT64_MAX, {}},
  };
  for (const Case& c : cases) {
    Result<std::vector<Entry>> got = log_->Slice(c.lo, c.hi, c.max_bytes);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_EQ(Indexes(*got), c.want) << "[" << c.lo << ", " << c.hi << ") max " << c.max_bytes;
  }
  EXPECT_EQ(log_->Slice(10, 12, UINT64_MAX).status().code(), StatusCode::kOutOfRange);
  EXPECT_DEATH((void)log_->Slice(16, 19, UINT64_MAX), "beyond last");
  EXPECT_EQ(Indexes(*log_->EntriesFrom(17, UINT64_MAX)), (std::vector<uint64_t>{17}));
  EXPECT_TRUE(log_->EntriesFrom(18, UINT64_MAX)->empty());
}

TEST_F(RaftLogSliceTest, Terms) {
  EXPECT_EQ(log_->FirstIndex(), 11u);
  EXPECT_EQ(log_->LastIndex(), 17u);
  EXPECT_EQ(*log_->TermOrError(10), 1u);  // the snapshot point
  EXPECT_EQ(*log_->TermOrError(17), 2u);
  EXPECT_EQ(log_->TermOrError(9).status().code(), StatusCode::kOutOfRange);
  EXPECT_EQ(log_->TermOrError(18).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(log_->Term(9), 0u);
  EXPECT_EQ(log_->Term(18), 0u);
  EXPECT_TRUE(log_->MatchTerm(16, 2));
  EXPECT_FALSE(log_->MatchTerm(16, 1));
  EXPECT_FALSE(log_->MatchTerm(18, 0));
}

TEST_F(RaftLogSliceTest, CommitAndApply) {
  EXPECT_EQ(log_->committed(), 10u);
  EXPECT_FALSE(log_->HasNextCommittedEntries());
  EXPECT_FALSE(log_->MaybeCommit(16, 1));  // entry 16 has term 2
  EXPECT_EQ(log_->committed(), 10u);
  EXPECT_TRUE(log_->MaybeCommit(16, 2));
  EXPECT_FALSE(log_->MaybeCommit(15, 1));  // never backwards
  EXPECT_EQ(log_->committed(), 16u);
  log_->CommitTo(12);  // ignored: commit only grows
  EXPECT_EQ(log_->committed(), 16u);
  EXPECT_DEATH(log_->CommitTo(18), "beyond last index");

  // Apply is limited to max_apply_bytes (25) per batch, at least one entry.
  ASSERT_TRUE(log_->HasNextCommittedEntries());
  EXPECT_EQ(Indexes(log_->NextCommittedEntries()), (std::vector<uint64_t>{11, 12}));
  log_->AppliedTo(12);
  EXPECT_EQ(Indexes(log_->NextCommittedEntries()), (std::vector<uint64_t>{13, 14}));
  log_->AppliedTo(14);
  EXPECT_EQ(Indexes(log_->NextCommittedEntries()), (std::vector<uint64_t>{15, 16}));
  log_->AppliedTo(16);
  EXPECT_FALSE(log_->HasNextCommittedEntries());
  EXPECT_TRUE(log_->NextCommittedEntries().empty());
  EXPECT_DEATH(log_->AppliedTo(17), "applied 17 outside");
  EXPECT_DEATH(log_->AppliedTo(15), "applied 15 outside");
}

TEST_F(RaftLogSliceTest, StableToMovesEntriesToStorage) {
  storage_.Append(log_->unstable().entries());
  log_->StableTo(17, 1);  // wrong term: nothing
  EXPECT_EQ(log_->unstable().entries().size(), 2u);
  log_->StableTo(17, 2);
  EXPECT_TRUE(log_->unstable().entries().empty());
  EXPECT_EQ(log_->unstable().offset(), 18u);
  EXPECT_EQ(log_->LastIndex(), 17u);
  EXPECT_EQ(Indexes(*log_->Slice(15, 18, UINT64_MAX)), (std::vector<uint64_t>{15, 16, 17}));
}

TEST_F(RaftLogSliceTest, RestoreSnapshot) {
  log_->CommitTo(12);
  log_->AppliedTo(11);
  const ConfState cs{.voters = {1, 2, 3}};
  log_->Restore(Snapshot{SnapshotMetadata{30, 5, cs}, "thirty"});
  EXPECT_TRUE(log_->HasPendingSnapshot());
  EXPECT_EQ(log_->FirstIndex(), 31u);
  EXPECT_EQ(log_->LastIndex(), 30u);
  EXPECT_EQ(log_->LastTerm(), 5u);
  EXPECT_EQ(log_->committed(), 30u);
  EXPECT_EQ(log_->applied(), 11u);  // the application installs the snapshot first
  EXPECT_FALSE(log_->HasNextCommittedEntries());
  EXPECT_EQ(log_->CurrentSnapshot().metadata.index, 30u);
  EXPECT_EQ(log_->CurrentSnapshot().data, "thirty");

  // New entries may follow the snapshot before it is persisted.
  log_->Append(MakeRun(31, {5}));
  EXPECT_EQ(log_->LastIndex(), 31u);
  EXPECT_EQ(log_->Term(30), 5u);

  // The caller persists it and reports it stable.
  ASSERT_TRUE(storage_.ApplySnapshot(log_->CurrentSnapshot()).ok());
  log_->StableSnapshotTo(30);
  EXPECT_FALSE(log_->HasPendingSnapshot());
  log_->AppliedTo(30);
  EXPECT_EQ(log_->FirstIndex(), 31u);
  EXPECT_EQ(log_->Term(30), 5u);
  EXPECT_EQ(log_->CurrentSnapshot().metadata, (SnapshotMetadata{30, 5, cs}));
}

}  // namespace
}  // namespace conclave::raft
