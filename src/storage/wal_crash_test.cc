// Crash consistency of the WAL under randomized workloads.
//
// Each scenario runs a seeded random workload (entries with conflicting
// rewrites, hard states, snapshot markers, snapshot installs, segment
// rollovers and releases over a few groups) against a FaultInjectionFileSystem,
// then crashes at a random point: between appends, in an append whose write
// or sync fails, in a release whose directory sync fails, or while the log is
// being opened and repaired after the previous crash. The crash drops
// everything unsynced, often keeping a torn prefix of the last write (with
// junk after it, sometimes). The log is then reopened and must replay exactly
// one of the states a correct log could be in:
//   - everything acknowledged, plus
//   - the first k records of the batch that was in flight, for some k.
// An acknowledged entry that is missing, a suffix that a later conflicting
// append truncated but that comes back, or a record surviving while one
// appended before it did not, all fail the comparison.
//
// Before some of the reopens (always the last), one byte of a record that is
// not the tail of the crashed log is flipped: the open must be refused with
// kCorruption naming the file and the record's offset. The byte is then
// flipped back and the reopen goes ahead as usual.
//
// Every choice comes from the scenario's seed; a failure prints it.
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <optional>

#include "base/logging.h"
#include "base/random.h"
#include "storage/fault_injection_file_system.h"
#include "storage/test_util.h"
#include "storage/wal.h"
#include "storage/wal_format.h"

namespace conclave::storage {
namespace {

constexpr char kDir[] = "/node/wal";
constexpr raft::GroupId kGroups = 4;

// ---- The reference model: what a correct log replays ----

struct ModelGroup {
  std::map<uint64_t, raft::Entry> log;
  uint64_t snapshot_index = 0;
  uint64_t snapshot_term = 0;
  raft::HardState hard_state;
};
using Model = std::map<raft::GroupId, ModelGroup>;

struct Op {
  enum Kind { kEntries, kTruncate, kHardState, kMarker } kind = kEntries;
  raft::GroupId group = 0;
  std::vector<raft::Entry> entries;  // kEntries
  uint64_t index = 0;                // kTruncate: from; kMarker: the marker
  uint64_t term = 0;                 // kMarker
  raft::HardState hard_state;        // kHardState

  std::string ToString() const {
    switch (kind) {
      case kEntries:
        return fmt::format("entries g{} [{}..{}] t{}", group, entries.front().index,
                           entries.back().index, entries.front().term);
      case kTruncate:
        return fmt::format("truncate g{} from {}", group, index);
      case kHardState:
        return fmt::format("hardstate g{} t{} v{} c{}", group, hard_state.term, hard_state.vote,
                           hard_state.commit);
      case kMarker:
        return fmt::format("marker g{} {}@t{}", group, index, term);
    }
    return "?";
  }
};

// The replay rules written as simply as possible: the log is a map from
// index to entry.
void ApplyOp(Model& model, const Op& op) {
  ModelGroup& g = model[op.group];
  switch (op.kind) {
    case Op::kEntries:
    case Op::kTruncate: {
      const uint64_t from = op.kind == Op::kEntries ? op.entries.front().index : op.index;
      g.log.erase(g.log.lower_bound(from), g.log.end());
      for (const raft::Entry& e : op.entries) {
        if (e.index > g.snapshot_index) g.log[e.index] = e;
      }
      break;
    }
    case Op::kHardState:
      g.hard_state = op.hard_state;
      break;
    case Op::kMarker:
      if (op.index < g.snapshot_index) break;
      g.snapshot_index = op.index;
      g.snapshot_term = op.term;
      g.log.erase(g.log.begin(), g.log.upper_bound(op.index));
      break;
  }
}

WalGroupState ToState(const ModelGroup& g) {
  WalGroupState s;
  s.hard_state = g.hard_state;
  s.snapshot_index = g.snapshot_index;
  s.snapshot_term = g.snapshot_term;
  for (const auto& [index, e] : g.log)
    s.entries.push_back(e);
  return s;
}

// Groups with nothing in them are left out on both sides.
std::map<raft::GroupId, WalGroupState> Normalize(const Model& model) {
  std::map<raft::GroupId, WalGroupState> out;
  for (const auto& [id, g] : model) {
    WalGroupState s = ToState(g);
    if (!(s == WalGroupState{})) out[id] = std::move(s);
  }
  return out;
}

std::map<raft::GroupId, WalGroupState> Normalize(const WalReplay& replay) {
  std::map<raft::GroupId, WalGroupState> out;
  for (const auto& [id, s] : replay.groups) {
    if (!(s == WalGroupState{})) out[id] = s;
  }
  return out;
}

std::string Describe(const std::map<raft::GroupId, WalGroupState>& state) {
  std::string out;
  for (const auto& [id, s] : state) {
    out += fmt::format("  g{}: hs(t{} v{} c{}) snap {}@t{} entries", id, s.hard_state.term,
                       s.hard_state.vote, s.hard_state.commit, s.snapshot_index, s.snapshot_term);
    for (const raft::Entry& e : s.entries)
      out += fmt::format(" {}t{}", e.index, e.term);
    out += "\n";
  }
  return out;
}

// ---- The workload ----

class Workload {
 public:
  explicit Workload(Random& rnd) : rnd_(rnd) {}

  // A batch of 1..3 ops, each valid after the ones before it.
  std::vector<Op> NextBatch(Model scratch) {
    std::vector<Op> ops;
    const int n = static_cast<int>(rnd_.Range(1, 3));
    for (int i = 0; i < n; ++i) {
      for (Op& op : NextOps(scratch)) {
        ApplyOp(scratch, op);
        ops.push_back(std::move(op));
      }
    }
    return ops;
  }

 private:
  static uint64_t LastIndex(const ModelGroup& g) {
    return g.log.empty() ? g.snapshot_index : std::max(g.snapshot_index, g.log.rbegin()->first);
  }
  static uint64_t CurrentTerm(const ModelGroup& g) {
    uint64_t t = std::max<uint64_t>({1, g.hard_state.term, g.snapshot_term});
    for (const auto& [index, e] : g.log)
      t = std::max(t, e.term);
    return t;
  }

  std::string Data() {
    std::string s(rnd_.Uniform(48), '\0');
    for (char& c : s)
      c = static_cast<char>('a' + rnd_.Uniform(26));
    return s;
  }

  std::vector<Op> NextOps(Model& model) {
    const raft::GroupId group = rnd_.Uniform(kGroups);
    const ModelGroup& g = model[group];
    const uint64_t last = LastIndex(g);
    const uint64_t term = CurrentTerm(g);
    const uint64_t roll = rnd_.Uniform(100);
    if (roll < 55 || last == 0) {
      uint64_t first = last + 1;
      if (rnd_.OneIn(4)) {
        // A conflicting rewrite of the last few entries.
        const uint64_t lo = std::max<uint64_t>(g.snapshot_index + 1, last > 5 ? last - 5 : 1);
        first = static_cast<uint64_t>(
            rnd_.Range(static_cast<int64_t>(lo), static_cast<int64_t>(last + 1)));
      }
      const uint64_t entry_term = term + (rnd_.OneIn(4) ? 1 : 0);
      Op op{.kind = Op::kEntries, .group = group};
      const uint64_t count = rnd_.Range(1, 4);
      for (uint64_t i = 0; i < count; ++i)
        op.entries.push_back(test::E(first + i, entry_term, Data()));
      return {op};
    }
    if (roll < 75) {
      raft::HardState hs{.term = std::max(g.hard_state.term, term) + (rnd_.OneIn(5) ? 1 : 0),
                         .vote = rnd_.Uniform(4),
                         .commit = rnd_.Uniform(last + 1)};
      return {Op{.kind = Op::kHardState, .group = group, .hard_state = hs}};
    }
    if (roll < 90) {
      // Compaction: a marker at or after the current one, within the log.
      const uint64_t index = static_cast<uint64_t>(
          rnd_.Range(static_cast<int64_t>(std::max<uint64_t>(g.snapshot_index, 1)),
                     static_cast<int64_t>(last)));
      auto it = g.log.find(index);
      const uint64_t marker_term = it != g.log.end() ? it->second.term : term;
      return {Op{.kind = Op::kMarker, .group = group, .index = index, .term = marker_term}};
    }
    if (roll < 95) {
      // Installing a snapshot from a leader: a marker past the log, and the
      // old log truncated.
      const uint64_t index = last + rnd_.Range(1, 5);
      return {Op{.kind = Op::kMarker, .group = group, .index = index, .term = term + 1},
              Op{.kind = Op::kTruncate, .group = group, .index = index + 1}};
    }
    const uint64_t from = static_cast<uint64_t>(
        rnd_.Range(static_cast<int64_t>(g.snapshot_index + 1), static_cast<int64_t>(last + 1)));
    return {Op{.kind = Op::kTruncate, .group = group, .index = from}};
  }

  Random& rnd_;
};

WalBatch ToBatch(const std::vector<Op>& ops) {
  WalBatch batch;
  for (const Op& op : ops) {
    switch (op.kind) {
      case Op::kEntries:
        batch.AddEntries(op.group, op.entries);
        break;
      case Op::kTruncate:
        batch.TruncateFrom(op.group, op.index);
        break;
      case Op::kHardState:
        batch.SetHardState(op.group, op.hard_state);
        break;
      case Op::kMarker:
        batch.AddSnapshotMarker(op.group, op.index, op.term);
        break;
    }
  }
  return batch;
}

// ---- Scenarios ----

struct Tally {
  int crash_points = 0;
  int torn_crashes = 0;
  int in_flight_none = 0;     // the in-flight batch left nothing behind
  int in_flight_partial = 0;  // some of its records survived, not all
  int in_flight_whole = 0;
  int releases = 0;
  int corruptions_refused = 0;
  int recovery_crashes = 0;  // crashes while the log was being opened
};

class WalCrashTest : public ::testing::TestWithParam<int> {
 protected:
  static constexpr int kScenariosPerShard = 250;

  // Runs one scenario; a violation fails the test with the seed and history.
  void RunScenario(uint64_t seed, Tally* tally);
  // Flips one byte of a record that is not the tail of a crashed log, expects
  // the open to be refused, and flips it back.
  void CheckCorruptionIsRefused(FaultInjectionFileSystem& fs, const WalOptions& options,
                                Random& rnd, uint64_t seed, Tally* tally);
};

void WalCrashTest::RunScenario(uint64_t seed, Tally* tally) {
  SeededRandom rnd(seed);
  FaultInjectionFileSystem fs(seed * 7919 + 17);
  WalOptions options;
  options.segment_bytes_target = rnd.Range(256, 2048);
  options.preallocate = rnd.OneIn(2);
  Workload workload(rnd);
  Model durable;
  std::vector<Model> candidates = {durable};
  std::vector<std::string> history;  // for the failure report
  const int crashes = static_cast<int>(rnd.Range(2, 4));

  for (int round = 0; round <= crashes; ++round) {
    if (round > 0 && (round == crashes || rnd.OneIn(2))) {
      CheckCorruptionIsRefused(fs, options, rnd, seed, tally);
      if (HasFatalFailure()) return;
    }
    if (round > 0 && rnd.OneIn(4)) {
      // A crash during recovery itself: the open fails at a random write or
      // sync, and the next one must come to the same state.
      if (rnd.OneIn(2)) {
        fs.FailNextSync();
      } else {
        fs.FailWritesAfter(rnd.Uniform(2));
      }
      {
        auto interrupted = Wal::Open(&fs, kDir, options);
        if (!interrupted.ok()) {
          ASSERT_EQ(interrupted.status().code(), StatusCode::kIOError)
              << "seed " << seed << ": " << interrupted.status().ToString();
        }
      }
      fs.ClearFaults();
      fs.Crash(CrashOptions{.tear_unsynced_writes = rnd.OneIn(2)});
      history.push_back("-- crash during recovery");
      ++tally->crash_points;
      ++tally->recovery_crashes;
    }
    auto opened = Wal::Open(&fs, kDir, options);
    ASSERT_TRUE(opened.ok()) << "seed " << seed << " round " << round << ": "
                             << opened.status().ToString();
    std::unique_ptr<Wal> wal = std::move(opened).value();
    // The replay must be one of the states a correct log could be in.
    const auto replayed = Normalize(wal->Replay());
    std::optional<size_t> match;
    for (size_t k = 0; k < candidates.size() && !match; ++k) {
      if (Normalize(candidates[k]) == replayed) match = k;
    }
    if (!match) {
      std::string report =
          fmt::format("seed {} round {}: replay matches no allowed state\n", seed, round);
      report += "replayed:\n" + Describe(replayed);
      for (size_t k = 0; k < candidates.size(); ++k) {
        report += fmt::format("allowed #{}:\n{}", k, Describe(Normalize(candidates[k])));
      }
      for (const std::string& line : history)
        report += line + "\n";
      FAIL() << report;
    }
    if (candidates.size() > 1) {
      if (*match == 0) {
        ++tally->in_flight_none;
      } else if (*match + 1 == candidates.size()) {
        ++tally->in_flight_whole;
      } else {
        ++tally->in_flight_partial;
      }
    }
    durable = candidates[*match];
    if (round == crashes) break;

    // Acknowledged work.
    const int ops = static_cast<int>(rnd.Range(0, 40));
    for (int i = 0; i < ops; ++i) {
      const std::vector<Op> batch = workload.NextBatch(durable);
      for (const Op& op : batch)
        history.push_back(op.ToString());
      const Status s = wal->Append(ToBatch(batch));
      ASSERT_TRUE(s.ok()) << "seed " << seed << ": " << s.ToString();
      for (const Op& op : batch)
        ApplyOp(durable, op);
      if (rnd.OneIn(5)) {
        const uint64_t removed = wal->stats().segments_removed;
        ASSERT_TRUE(wal->RemoveObsoleteSegments().ok());
        tally->releases += static_cast<int>(wal->stats().segments_removed - removed);
      }
    }

    // The crash point.
    candidates = {durable};
    const std::vector<Op> in_flight = workload.NextBatch(durable);
    switch (rnd.Uniform(4)) {
      case 0:
        history.push_back("crash between appends");
        break;
      case 1:
      case 2: {
        if (rnd.OneIn(2)) {
          fs.FailNextSync();
          history.push_back("crash: failing sync");
        } else {
          fs.FailWritesAfter(rnd.Uniform(3));
          history.push_back("crash: failing writes");
        }
        for (const Op& op : in_flight)
          history.push_back("  in flight: " + op.ToString());
        const Status s = wal->Append(ToBatch(in_flight));
        Model with = durable;
        if (s.ok()) {
          for (const Op& op : in_flight)
            ApplyOp(with, op);
          durable = with;
          candidates = {durable};
          history.push_back("  (acknowledged anyway)");
          break;
        }
        ASSERT_EQ(s.code(), StatusCode::kIOError) << s.ToString();
        for (const Op& op : in_flight) {
          ApplyOp(with, op);
          candidates.push_back(with);
        }
        break;
      }
      case 3:
        history.push_back("crash: failing release");
        fs.FailNextSync();
        (void)wal->RemoveObsoleteSegments();  // may fail; nothing it does is acknowledged
        break;
    }
    fs.ClearFaults();
    wal.reset();
    CrashOptions crash;
    crash.tear_unsynced_writes = !rnd.OneIn(4);
    crash.junk_after_tear = rnd.OneIn(3);
    fs.Crash(crash);
    history.push_back(fmt::format("-- crash (tear {}, junk {})", crash.tear_unsynced_writes,
                                  crash.junk_after_tear));
    ++tally->crash_points;
    tally->torn_crashes += crash.tear_unsynced_writes ? 1 : 0;
  }
}

void WalCrashTest::CheckCorruptionIsRefused(FaultInjectionFileSystem& fs, const WalOptions& options,
                                            Random& rnd, uint64_t seed, Tally* tally) {
  // Every intact record but the last one of the last segment: damage there is
  // indistinguishable from a torn write.
  struct Target {
    uint64_t sequence;
    uint64_t offset;
    uint64_t size;
  };
  std::vector<Target> targets;
  std::vector<std::string> names = std::move(fs.ListDir(kDir)).value();
  std::vector<uint64_t> sequences;
  for (const std::string& name : names) {
    uint64_t sequence = 0;
    bool temp = false;
    if (ParseSegmentFileName(name, &sequence, &temp) && !temp) sequences.push_back(sequence);
  }
  for (uint64_t sequence : sequences) {
    const std::string data =
        std::move(fs.ReadFile(JoinPath(kDir, SegmentFileName(sequence)))).value();
    for (const ScannedRecord& r : ScanSegment(data).records) {
      targets.push_back(Target{sequence, r.offset, kRecordHeaderBytes + r.payload.size()});
    }
  }
  if (targets.size() < 2) return;
  targets.pop_back();
  const Target& t = targets[rnd.Uniform(targets.size())];
  const std::string path = JoinPath(kDir, SegmentFileName(t.sequence));
  const uint64_t at = t.offset + rnd.Uniform(t.size);
  const auto mask = static_cast<uint8_t>(1u << rnd.Uniform(8));
  ASSERT_TRUE(fs.CorruptByte(path, at, mask).ok());

  auto refused = Wal::Open(&fs, kDir, options);
  ASSERT_FALSE(refused.ok()) << "seed " << seed << ": a flipped byte at " << path << " offset "
                             << at << " was not noticed";
  EXPECT_EQ(refused.status().code(), StatusCode::kCorruption) << refused.status().ToString();
  const std::string expected = fmt::format("{} offset {}: ", path, t.offset);
  EXPECT_EQ(refused.status().message().rfind(expected, 0), 0u)
      << "seed " << seed << ": " << refused.status().message() << "\nexpected it to start with "
      << expected;
  ++tally->corruptions_refused;

  // Restored; the open that follows checks the log as usual.
  ASSERT_TRUE(fs.CorruptByte(path, at, mask).ok());
}

TEST_P(WalCrashTest, RandomCrashesLoseNothingAcknowledgedAndResurrectNothing) {
  // Torn tails and stopped logs are expected here by the hundred; keep the output readable.
  const auto level = spdlog::get_level();
  spdlog::set_level(spdlog::level::off);
  const auto start = std::chrono::steady_clock::now();
  Tally tally;
  const uint64_t first_seed = static_cast<uint64_t>(GetParam()) * kScenariosPerShard;
  for (uint64_t seed = first_seed; seed < first_seed + kScenariosPerShard; ++seed) {
    RunScenario(seed, &tally);
    if (HasFatalFailure() || HasFailure()) break;
  }
  spdlog::set_level(level);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf(
      "shard %d: %d crash points (%d torn, %d during recovery) in %.1f s; in-flight batch "
      "survived none/part/all: %d/%d/%d; segments released %d; corruptions refused %d\n",
      GetParam(), tally.crash_points, tally.torn_crashes, tally.recovery_crashes, seconds,
      tally.in_flight_none, tally.in_flight_partial, tally.in_flight_whole, tally.releases,
      tally.corruptions_refused);
  // The scenarios must reach the cases they exist for.
  EXPECT_GE(tally.crash_points, 600);
  EXPECT_GT(tally.in_flight_partial, 0);
  EXPECT_GT(tally.in_flight_none, 0);
  EXPECT_GT(tally.releases, 0);
  EXPECT_GT(tally.recovery_crashes, 0);
  EXPECT_GE(tally.corruptions_refused, kScenariosPerShard);
}

INSTANTIATE_TEST_SUITE_P(Shards, WalCrashTest, ::testing::Range(0, 4));

}  // namespace
}  // namespace conclave::storage
