#include "storage/engine.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <map>
#include <set>
#include <thread>

#include "base/random.h"
#include "storage/engine_test_util.h"

namespace conclave::storage {
namespace {

using test::EngineKind;
using KeyValues = std::map<std::string, std::string>;

// Every key and value an iterator shows from its first position on.
KeyValues Drain(EngineIterator* it) {
  KeyValues out;
  std::string previous;
  for (it->Seek(""); it->Valid(); it->Next()) {
    EXPECT_TRUE(out.empty() || previous < it->key()) << "out of order at " << it->key();
    previous = std::string(it->key());
    out.emplace(it->key(), it->value());
  }
  EXPECT_TRUE(it->status().ok()) << it->status().ToString();
  return out;
}

KeyValues Dump(const Engine& engine, const EngineSnapshot* snapshot = nullptr) {
  std::unique_ptr<EngineIterator> it = engine.NewIterator(snapshot);
  return Drain(it.get());
}

KeyValues DumpBatch(EngineBatch* batch) {
  std::unique_ptr<EngineIterator> it = batch->NewIterator();
  return Drain(it.get());
}

std::optional<std::string> GetOrDie(const Engine& engine, std::string_view key,
                                    const EngineSnapshot* snapshot = nullptr) {
  auto r = engine.Get(key, snapshot);
  CHECK_MSG(r.ok(), "get: {}", r.status().ToString());
  return *r;
}

std::optional<std::string> BatchGet(EngineBatch* batch, std::string_view key) {
  auto r = batch->Get(key);
  CHECK_MSG(r.ok(), "batch get: {}", r.status().ToString());
  return *r;
}

class EngineTest : public ::testing::TestWithParam<EngineKind> {
 protected:
  void SetUp() override {
    std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::replace(name.begin(), name.end(), '/', '-');
    dir_ = std::filesystem::temp_directory_path() /
           ("conclave-engine-" + std::to_string(::getpid()) + "-" + name);
    std::filesystem::remove_all(dir_);
    engine_ = test::OpenTestEngine(GetParam(), dir_.string());
  }
  void TearDown() override {
    engine_.reset();
    std::filesystem::remove_all(dir_);
  }

  // What a restart leaves: RocksDB reopened from its files; MemEngine
  // crashed, which keeps at least every synced batch.
  void Restart() {
    if (GetParam() == EngineKind::kMem) {
      static_cast<MemEngine*>(engine_.get())->Crash(random_);
      return;
    }
    engine_.reset();
    engine_ = test::OpenTestEngine(GetParam(), dir_.string());
  }

  void Write(std::initializer_list<std::pair<std::string, std::string>> puts, bool sync = false) {
    std::unique_ptr<EngineBatch> batch = engine_->NewBatch();
    for (const auto& [k, v] : puts)
      batch->Put(k, v);
    ASSERT_TRUE(engine_->Write(batch.get(), sync).ok());
  }
  void Commit(std::unique_ptr<EngineBatch> batch, bool sync = false) {
    Status s = engine_->Write(batch.get(), sync);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }

  std::filesystem::path dir_;
  std::unique_ptr<Engine> engine_;
  SeededRandom random_{42};
};

TEST_P(EngineTest, PutGetDelete) {
  EXPECT_EQ(GetOrDie(*engine_, "a"), std::nullopt);
  Write({{"a", "1"}, {"b", ""}});
  EXPECT_EQ(GetOrDie(*engine_, "a"), "1");
  // An empty value is a value, not an absent key.
  EXPECT_EQ(GetOrDie(*engine_, "b"), "");
  Write({{"a", "2"}});
  EXPECT_EQ(GetOrDie(*engine_, "a"), "2");
  auto batch = engine_->NewBatch();
  batch->Delete("a");
  batch->Delete("never-written");
  Commit(std::move(batch));
  EXPECT_EQ(GetOrDie(*engine_, "a"), std::nullopt);
  EXPECT_EQ(Dump(*engine_), (KeyValues{{"b", ""}}));
}

TEST_P(EngineTest, IteratesInBytewiseOrderAndSeeks) {
  const std::string zero("\0", 1);
  const std::string high("\xff", 1);
  Write({{"b", "2"}, {"a", "1"}, {high, "h"}, {"ab", "3"}, {zero, "z"}, {"a" + zero, "4"}});
  std::unique_ptr<EngineIterator> it = engine_->NewIterator();
  std::vector<std::string> order;
  for (it->Seek(""); it->Valid(); it->Next())
    order.emplace_back(it->key());
  // Unsigned bytes: 0x00 first, 0xff last.
  EXPECT_EQ(order, (std::vector<std::string>{zero, "a", "a" + zero, "ab", "b", high}));

  it->Seek("aa");  // between keys: the next one
  ASSERT_TRUE(it->Valid());
  EXPECT_EQ(it->key(), "ab");
  EXPECT_EQ(it->value(), "3");
  it->Seek("b");  // exactly a key
  ASSERT_TRUE(it->Valid());
  EXPECT_EQ(it->key(), "b");
  it->Next();
  ASSERT_TRUE(it->Valid());
  EXPECT_EQ(it->key(), high);
  it->Next();
  EXPECT_FALSE(it->Valid());
  it->Seek(high + "x");  // past the last key
  EXPECT_FALSE(it->Valid());
  EXPECT_TRUE(it->status().ok());
}

TEST_P(EngineTest, IteratorSeesTheStateAsOfItsCreation) {
  Write({{"a", "1"}, {"c", "3"}});
  std::unique_ptr<EngineIterator> it = engine_->NewIterator();
  Write({{"b", "2"}, {"c", "new"}});
  EXPECT_EQ(Drain(it.get()), (KeyValues{{"a", "1"}, {"c", "3"}}));
}

TEST_P(EngineTest, BatchReadsSeeItsWritesOverTheEngine) {
  Write({{"a", "1"}, {"b", "2"}, {"c", "3"}});
  auto batch = engine_->NewBatch();
  batch->Put("b", "batch");
  batch->Delete("c");
  batch->Put("d", "first");
  batch->Put("d", "second");  // overwrites within the batch
  batch->Put("e", "gone");
  batch->Delete("e");  // a put taken back by a delete
  batch->Delete("f");  // deleting what does not exist
  batch->Delete("g");
  batch->Put("g", "back");  // a delete taken back by a put

  EXPECT_EQ(BatchGet(batch.get(), "a"), "1");
  EXPECT_EQ(BatchGet(batch.get(), "b"), "batch");
  EXPECT_EQ(BatchGet(batch.get(), "c"), std::nullopt);
  EXPECT_EQ(BatchGet(batch.get(), "d"), "second");
  EXPECT_EQ(BatchGet(batch.get(), "e"), std::nullopt);
  EXPECT_EQ(BatchGet(batch.get(), "f"), std::nullopt);
  EXPECT_EQ(BatchGet(batch.get(), "g"), "back");
  const KeyValues merged{{"a", "1"}, {"b", "batch"}, {"d", "second"}, {"g", "back"}};
  EXPECT_EQ(DumpBatch(batch.get()), merged);
  // Seeking into the middle of the merge, onto a key the batch deleted.
  std::unique_ptr<EngineIterator> it = batch->NewIterator();
  it->Seek("c");
  ASSERT_TRUE(it->Valid());
  EXPECT_EQ(it->key(), "d");
  EXPECT_EQ(it->value(), "second");
  it.reset();

  // The engine sees nothing of the batch until it is written.
  EXPECT_EQ(Dump(*engine_), (KeyValues{{"a", "1"}, {"b", "2"}, {"c", "3"}}));
  EXPECT_EQ(batch->Count(), 9u);
  Commit(std::move(batch));
  EXPECT_EQ(Dump(*engine_), merged);
}

TEST_P(EngineTest, BatchReadsFollowTheEnginesLatestState) {
  Write({{"a", "1"}});
  auto batch = engine_->NewBatch();
  batch->Put("b", "batch");
  Write({{"a", "2"}, {"c", "3"}});
  EXPECT_EQ(BatchGet(batch.get(), "a"), "2");
  EXPECT_EQ(DumpBatch(batch.get()), (KeyValues{{"a", "2"}, {"b", "batch"}, {"c", "3"}}));
}

// A range deletion applies when the batch is written, in order: it removes
// what was there and what the batch put before it, not what the batch puts
// after it. Reads through the batch do not see it.
TEST_P(EngineTest, DeleteRangeAppliesAtWriteInOrderAndIsInvisibleToBatchReads) {
  Write({{"a", "1"}, {"b", "2"}, {"c", "3"}, {"d", "4"}});
  auto batch = engine_->NewBatch();
  batch->Put("bb", "before");
  batch->DeleteRange("b", "d");
  batch->Put("c", "after");
  batch->Put("z", "outside");

  EXPECT_EQ(BatchGet(batch.get(), "b"), "2");
  EXPECT_EQ(BatchGet(batch.get(), "bb"), "before");
  EXPECT_EQ(
      DumpBatch(batch.get()),
      (KeyValues{
          {"a", "1"}, {"b", "2"}, {"bb", "before"}, {"c", "after"}, {"d", "4"}, {"z", "outside"}}));
  EXPECT_EQ(batch->Count(), 4u);
  Commit(std::move(batch));
  // [b, d): b and bb go, c is put again after, d is the exclusive end.
  EXPECT_EQ(Dump(*engine_), (KeyValues{{"a", "1"}, {"c", "after"}, {"d", "4"}, {"z", "outside"}}));
}

TEST_P(EngineTest, EmptyDeleteRangeDeletesNothing) {
  Write({{"a", "1"}, {"b", "2"}});
  auto batch = engine_->NewBatch();
  batch->DeleteRange("b", "b");
  batch->DeleteRange("x", "z");
  Commit(std::move(batch));
  EXPECT_EQ(Dump(*engine_), (KeyValues{{"a", "1"}, {"b", "2"}}));
}

TEST_P(EngineTest, RollbackUndoesPutsDeletesAndRangeDeletes) {
  Write({{"a", "1"}, {"b", "2"}, {"c", "3"}});
  auto batch = engine_->NewBatch();
  batch->Put("kept", "k");
  batch->SetSavePoint();
  batch->Put("a", "changed");
  batch->Put("new", "n");
  batch->Delete("b");
  batch->DeleteRange("a", "z");
  EXPECT_EQ(batch->Count(), 5u);
  batch->RollbackToSavePoint();

  EXPECT_EQ(batch->Count(), 1u);
  EXPECT_EQ(BatchGet(batch.get(), "a"), "1");
  EXPECT_EQ(BatchGet(batch.get(), "b"), "2");
  EXPECT_EQ(BatchGet(batch.get(), "new"), std::nullopt);
  EXPECT_EQ(BatchGet(batch.get(), "kept"), "k");
  const KeyValues want{{"a", "1"}, {"b", "2"}, {"c", "3"}, {"kept", "k"}};
  EXPECT_EQ(DumpBatch(batch.get()), want);
  Commit(std::move(batch));
  EXPECT_EQ(Dump(*engine_), want);
}

TEST_P(EngineTest, NestedSavePoints) {
  auto batch = engine_->NewBatch();
  batch->Put("a", "1");
  batch->SetSavePoint();  // outer
  batch->Put("b", "2");
  batch->Put("a", "outer");
  batch->SetSavePoint();  // inner
  batch->Put("c", "3");
  batch->Delete("b");
  batch->RollbackToSavePoint();  // inner: c and the delete of b go
  EXPECT_EQ(DumpBatch(batch.get()), (KeyValues{{"a", "outer"}, {"b", "2"}}));
  batch->SetSavePoint();  // inner again
  batch->Put("d", "4");
  batch->PopSavePoint();         // keeps d
  batch->RollbackToSavePoint();  // outer: b, a=outer and d go
  EXPECT_EQ(DumpBatch(batch.get()), (KeyValues{{"a", "1"}}));
  EXPECT_EQ(batch->Count(), 1u);

  batch->SetSavePoint();
  batch->Put("e", "5");
  batch->SetSavePoint();
  batch->Put("f", "6");
  batch->PopSavePoint();
  batch->PopSavePoint();  // both popped: everything stays
  Commit(std::move(batch));
  EXPECT_EQ(Dump(*engine_), (KeyValues{{"a", "1"}, {"e", "5"}, {"f", "6"}}));
}

// A range deletion recorded before a save point stays through a rollback to
// it, and so do the batch's reads and the save points below it.
TEST_P(EngineTest, RollbackKeepsARangeDeleteFromBeforeTheSavePoint) {
  Write({{"a", "1"}, {"b", "2"}, {"c", "3"}});
  auto batch = engine_->NewBatch();
  batch->DeleteRange("a", "c");
  batch->Put("b", "after-range");
  batch->SetSavePoint();  // outer
  batch->Put("x", "outer");
  batch->SetSavePoint();  // inner
  batch->Put("b", "inner");
  batch->DeleteRange("c", "d");
  batch->RollbackToSavePoint();  // inner

  EXPECT_EQ(batch->Count(), 3u);
  EXPECT_EQ(BatchGet(batch.get(), "b"), "after-range");
  EXPECT_EQ(BatchGet(batch.get(), "x"), "outer");
  EXPECT_EQ(DumpBatch(batch.get()),
            (KeyValues{{"a", "1"}, {"b", "after-range"}, {"c", "3"}, {"x", "outer"}}));
  batch->RollbackToSavePoint();  // outer, still there
  EXPECT_EQ(batch->Count(), 2u);
  EXPECT_EQ(BatchGet(batch.get(), "x"), std::nullopt);
  batch->Put("y", "last");
  Commit(std::move(batch));
  EXPECT_EQ(Dump(*engine_), (KeyValues{{"b", "after-range"}, {"c", "3"}, {"y", "last"}}));
}

TEST_P(EngineTest, SnapshotsIsolateReadsFromLaterWrites) {
  Write({{"a", "1"}, {"b", "2"}});
  std::shared_ptr<const EngineSnapshot> first = engine_->GetSnapshot();
  auto batch = engine_->NewBatch();
  batch->Put("a", "changed");
  batch->Delete("b");
  batch->Put("c", "3");
  Commit(std::move(batch));
  std::shared_ptr<const EngineSnapshot> second = engine_->GetSnapshot();
  auto range = engine_->NewBatch();
  range->DeleteRange("a", "z");
  Commit(std::move(range));

  EXPECT_EQ(GetOrDie(*engine_, "a", first.get()), "1");
  EXPECT_EQ(GetOrDie(*engine_, "b", first.get()), "2");
  EXPECT_EQ(GetOrDie(*engine_, "c", first.get()), std::nullopt);
  EXPECT_EQ(Dump(*engine_, first.get()), (KeyValues{{"a", "1"}, {"b", "2"}}));
  EXPECT_EQ(Dump(*engine_, second.get()), (KeyValues{{"a", "changed"}, {"c", "3"}}));
  EXPECT_EQ(Dump(*engine_), KeyValues{});
  // Compaction drops what no snapshot needs, never what one does.
  ASSERT_TRUE(engine_->Compact().ok());
  EXPECT_EQ(Dump(*engine_, first.get()), (KeyValues{{"a", "1"}, {"b", "2"}}));
  first.reset();
  EXPECT_EQ(Dump(*engine_, second.get()), (KeyValues{{"a", "changed"}, {"c", "3"}}));
}

// Two keys always written together: a reader on a snapshot, or on an
// iterator, never sees one without the other.
TEST_P(EngineTest, ReadersNeverSeeHalfABatch) {
  constexpr int kBatches = 500;
  std::atomic<bool> done{false};
  std::atomic<int> torn{0};
  std::atomic<int> reads{0};
  auto reader = [&] {
    while (!done.load()) {
      std::shared_ptr<const EngineSnapshot> snap = engine_->GetSnapshot();
      auto x = engine_->Get("x", snap.get());
      auto y = engine_->Get("y", snap.get());
      if (!x.ok() || !y.ok() || *x != *y) torn.fetch_add(1);
      KeyValues seen = Dump(*engine_);
      if (seen["x"] != seen["y"]) torn.fetch_add(1);
      reads.fetch_add(1);
    }
  };
  std::thread r1(reader);
  std::thread r2(reader);
  for (int i = 0; i < kBatches; ++i) {
    auto batch = engine_->NewBatch();
    if (i % 7 == 0) batch->DeleteRange("a", "z");
    batch->Put("x", std::to_string(i));
    batch->Put("y", std::to_string(i));
    Commit(std::move(batch));
  }
  done.store(true);
  r1.join();
  r2.join();
  EXPECT_EQ(torn.load(), 0) << "of " << reads.load() << " reads";
  EXPECT_EQ(GetOrDie(*engine_, "y"), std::to_string(kBatches - 1));
}

TEST_P(EngineTest, SyncedWritesSurviveARestart) {
  Write({{"a", "1"}}, /*sync=*/true);
  Write({{"b", "2"}});
  Write({{"c", "3"}});
  ASSERT_TRUE(engine_->Sync().ok());
  auto batch = engine_->NewBatch();
  batch->DeleteRange("a", "b");
  batch->Put("d", "4");
  Commit(std::move(batch), /*sync=*/true);
  Restart();
  EXPECT_EQ(Dump(*engine_), (KeyValues{{"b", "2"}, {"c", "3"}, {"d", "4"}}));
}

TEST_P(EngineTest, CompactKeepsTheDataAndApproximateBytesCountsIt) {
  const std::string value(1000, 'v');
  for (int i = 0; i < 100; ++i)
    Write({{"key" + std::to_string(i), value}}, /*sync=*/true);
  EXPECT_GE(engine_->ApproximateBytes(), 1000u);
  auto batch = engine_->NewBatch();
  batch->DeleteRange("key1", "key2");
  Commit(std::move(batch), /*sync=*/true);
  ASSERT_TRUE(engine_->Compact().ok());
  KeyValues left = Dump(*engine_);
  EXPECT_EQ(left.size(), 89u);  // key1 and key10..key19 are gone
  EXPECT_FALSE(left.contains("key1"));
  EXPECT_EQ(left["key2"], value);
}

INSTANTIATE_TEST_SUITE_P(Engines, EngineTest,
                         ::testing::Values(EngineKind::kRocks, EngineKind::kMem),
                         [](const ::testing::TestParamInfo<EngineKind>& info) {
                           return test::EngineKindName(info.param);
                         });

// ---- MemEngine only: crashes and memory ----

// The batch whose keys are "<n>/0".."<n>/4", each valued "<n>".
std::unique_ptr<EngineBatch> NumberedBatch(Engine* engine, int n) {
  auto batch = engine->NewBatch();
  for (int i = 0; i < 5; ++i)
    batch->Put(std::to_string(n) + "/" + std::to_string(i), std::to_string(n));
  return batch;
}

// Which numbered batches an engine holds, each checked to be whole.
std::set<int> BatchesPresent(const Engine& engine) {
  std::map<int, int> keys_of;
  for (const auto& [k, v] : Dump(engine)) {
    const int n = std::stoi(k.substr(0, k.find('/')));
    EXPECT_EQ(v, std::to_string(n));
    ++keys_of[n];
  }
  std::set<int> out;
  for (const auto& [n, count] : keys_of) {
    EXPECT_EQ(count, 5) << "batch " << n << " is torn";
    out.insert(n);
  }
  return out;
}

TEST(MemEngineTest, CrashKeepsEverySyncedBatch) {
  for (uint64_t seed = 0; seed < 20; ++seed) {
    MemEngine engine;
    SeededRandom random(seed);
    for (int n = 0; n < 10; ++n) {
      auto batch = NumberedBatch(&engine, n);
      // Either way of making a batch durable.
      ASSERT_TRUE(engine.Write(batch.get(), /*sync=*/n % 2 == 0).ok());
      if (n % 2 == 1) {
        ASSERT_TRUE(engine.Sync().ok());
      }
    }
    EXPECT_EQ(engine.unsynced_batches(), 0u);
    engine.Crash(random);
    EXPECT_EQ(BatchesPresent(engine).size(), 10u);
  }
}

// Batches 0..4 synced, 5..14 not: a crash keeps 0..4 and then a prefix of
// 5..14, each batch whole; over many seeds every prefix length turns up.
TEST(MemEngineTest, CrashKeepsAPrefixOfTheUnsyncedBatchesEachWhole) {
  std::set<size_t> kept_counts;
  for (uint64_t seed = 0; seed < 300; ++seed) {
    MemEngine engine;
    SeededRandom random(seed);
    for (int n = 0; n < 15; ++n) {
      auto batch = NumberedBatch(&engine, n);
      ASSERT_TRUE(engine.Write(batch.get(), /*sync=*/n == 4).ok());
    }
    EXPECT_EQ(engine.unsynced_batches(), 10u);
    engine.Crash(random);
    EXPECT_EQ(engine.unsynced_batches(), 0u);
    const std::set<int> present = BatchesPresent(engine);
    ASSERT_GE(present.size(), 5u);
    // A prefix: 0..k-1 with nothing missing in between.
    EXPECT_EQ(*present.rbegin(), static_cast<int>(present.size()) - 1) << "seed " << seed;
    kept_counts.insert(present.size());
  }
  for (size_t k = 5; k <= 15; ++k)
    EXPECT_TRUE(kept_counts.contains(k)) << k << " batches never kept";
}

TEST(MemEngineTest, WritesAfterACrashGoOnAndCanCrashAgain) {
  MemEngine engine;
  SeededRandom random(3);
  auto first = NumberedBatch(&engine, 0);
  ASSERT_TRUE(engine.Write(first.get(), /*sync=*/true).ok());
  engine.Crash(random);
  for (int n = 1; n < 4; ++n) {
    auto batch = NumberedBatch(&engine, n);
    ASSERT_TRUE(engine.Write(batch.get(), /*sync=*/false).ok());
  }
  EXPECT_EQ(engine.unsynced_batches(), 3u);
  ASSERT_TRUE(engine.Sync().ok());
  engine.Crash(random);
  EXPECT_EQ(BatchesPresent(engine), (std::set<int>{0, 1, 2, 3}));
}

// The engine against a model: random batches (puts, deletes, range
// deletes, rolled-back save points), random syncs and crashes. After every
// crash the engine must equal the model after some batch written since the
// last sync (or that sync itself), and it goes on from there.
TEST(MemEngineTest, RandomCrashesLeaveAModelPrefix) {
  SeededRandom random(20260101);
  MemEngine engine;
  // history[i]: the model after the i-th batch (history[0]: empty).
  std::vector<KeyValues> history{KeyValues{}};
  size_t synced = 0;
  auto random_key = [&] { return std::string(1, static_cast<char>('a' + random.Uniform(12))); };
  int crashes = 0;
  for (int step = 0; step < 3000; ++step) {
    const uint64_t action = random.Uniform(20);
    if (action == 0) {
      engine.Crash(random);
      ++crashes;
      const KeyValues now = Dump(engine);
      size_t found = history.size();
      for (size_t i = synced; i < history.size(); ++i) {
        if (history[i] == now) found = i;
      }
      ASSERT_LT(found, history.size()) << "after crash " << crashes << " at step " << step
                                       << ": not the model after any batch since the last sync";
      history.resize(found + 1);
      synced = found;
      continue;
    }
    if (action == 1) {
      ASSERT_TRUE(engine.Sync().ok());
      synced = history.size() - 1;
      continue;
    }
    KeyValues model = history.back();
    auto batch = engine.NewBatch();
    const uint64_t ops = 1 + random.Uniform(6);
    for (uint64_t i = 0; i < ops; ++i) {
      const bool rolled_back = random.OneIn(4);
      if (rolled_back) batch->SetSavePoint();
      KeyValues before = model;
      const uint64_t kind = random.Uniform(10);
      if (kind < 6) {
        const std::string k = random_key();
        const std::string v = std::to_string(step) + "." + std::to_string(i);
        batch->Put(k, v);
        model[k] = v;
      } else if (kind < 9) {
        const std::string k = random_key();
        batch->Delete(k);
        model.erase(k);
      } else {
        std::string b = random_key();
        std::string e = random_key();
        if (e < b) std::swap(b, e);
        batch->DeleteRange(b, e);
        model.erase(model.lower_bound(b), model.lower_bound(e));
      }
      if (rolled_back) {
        batch->RollbackToSavePoint();
        model = std::move(before);
      }
    }
    const bool sync = random.OneIn(8);
    ASSERT_TRUE(engine.Write(batch.get(), sync).ok());
    history.push_back(std::move(model));
    if (sync) synced = history.size() - 1;
    ASSERT_EQ(engine.unsynced_batches(), history.size() - 1 - synced);
    ASSERT_EQ(Dump(engine), history.back()) << "step " << step;
  }
  EXPECT_GT(crashes, 100);
}

// Compaction must not drop a synced version that only an unsynced one
// shadows: the crash may lose the unsynced one.
TEST(MemEngineTest, CompactionKeepsWhatACrashMayFallBackTo) {
  std::set<std::string> outcomes;
  for (uint64_t seed = 0; seed < 40; ++seed) {
    MemEngine engine;
    SeededRandom random(seed);
    auto put = [&](const std::string& value, bool sync) {
      auto batch = engine.NewBatch();
      batch->Put("k", value);
      ASSERT_TRUE(engine.Write(batch.get(), sync).ok());
    };
    put("synced", true);
    put("unsynced", false);
    ASSERT_TRUE(engine.Compact().ok());
    engine.Crash(random);
    const std::optional<std::string> value = GetOrDie(engine, "k");
    ASSERT_TRUE(value.has_value()) << "seed " << seed;
    outcomes.insert(*value);
  }
  EXPECT_EQ(outcomes, (std::set<std::string>{"synced", "unsynced"}));
}

// One key overwritten again and again, each write synced, no snapshot open:
// the engine drops the shadowed versions as it goes.
TEST(MemEngineTest, OverwritesKeepMemoryBoundedWithoutSnapshots) {
  MemEngine engine;
  const std::string value(1024, 'v');
  constexpr uint64_t kBoundBytes = 4 << 20;
  for (int i = 0; i < 20000; ++i) {
    auto batch = engine.NewBatch();
    batch->Put("key", value);
    batch->Put("key" + std::to_string(i % 10), value);
    ASSERT_TRUE(engine.Write(batch.get(), /*sync=*/true).ok());
    ASSERT_LE(engine.ApproximateBytes(), kBoundBytes) << "after " << i + 1 << " writes";
  }
  ASSERT_TRUE(engine.Compact().ok());
  // The newest versions only: "key" and key0..key9.
  EXPECT_EQ(engine.ApproximateBytes(), 11 * value.size() + 3 + 10 * 4);
}

// What bounds memory: a live snapshot keeps the versions it sees, and
// unsynced batches stay whole until a sync since a crash may keep any of
// them; once both are gone, compaction gives the space back.
TEST(MemEngineTest, SnapshotsAndUnsyncedBatchesHoldVersionsUntilReleased) {
  MemEngine engine;
  const std::string value(1000, 'v');
  auto put = [&](std::string v, bool sync) {
    auto batch = engine.NewBatch();
    batch->Put("k", v);
    ASSERT_TRUE(engine.Write(batch.get(), sync).ok());
  };
  put("old", true);
  std::shared_ptr<const EngineSnapshot> snap = engine.GetSnapshot();
  for (int i = 0; i < 3000; ++i)
    put(value, true);
  ASSERT_TRUE(engine.Compact().ok());
  EXPECT_EQ(GetOrDie(engine, "k", snap.get()), "old");
  snap.reset();
  ASSERT_TRUE(engine.Compact().ok());
  EXPECT_EQ(engine.ApproximateBytes(), 1 + value.size());

  for (int i = 0; i < 3000; ++i)
    put(value, false);
  ASSERT_TRUE(engine.Compact().ok());
  EXPECT_GT(engine.ApproximateBytes(), 3000 * value.size());
  ASSERT_TRUE(engine.Sync().ok());
  ASSERT_TRUE(engine.Compact().ok());
  EXPECT_EQ(engine.ApproximateBytes(), 1 + value.size());
}

}  // namespace
}  // namespace conclave::storage
