#include "mvcc/store.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <ostream>
#include <thread>

#include "mvcc/keys.h"
#include "storage/engine_test_util.h"

namespace conclave::mvcc {

// Readable failure messages (found by gtest through argument-dependent lookup).
[[maybe_unused]] static void PrintTo(const KeyValue& kv, std::ostream* os) {
  *os << "{" << testing::PrintToString(kv.key) << " create=" << kv.create_revision
      << " mod=" << kv.mod_revision << " version=" << kv.version
      << " value=" << testing::PrintToString(kv.value) << " lease=" << kv.lease << "}";
}
[[maybe_unused]] static void PrintTo(const Event& e, std::ostream* os) {
  *os << (e.type == EventType::kPut ? "PUT " : "DELETE ");
  PrintTo(e.kv, os);
}

namespace {

std::vector<std::string> Keys(const RangeResponse& r) {
  std::vector<std::string> out;
  for (const KeyValue& kv : r.kvs)
    out.push_back(kv.key);
  return out;
}

RequestOp PutOp(const std::string& k, const std::string& v, int64_t lease = 0) {
  return RequestOp{PutRequest{.key = k, .value = v, .lease = lease}};
}
RequestOp RangeOp(const RangeRequest& r) {
  return RequestOp{r};
}
RequestOp DeleteOp(const std::string& k, const std::string& end = "", bool prev_kv = false) {
  return RequestOp{DeleteRangeRequest{.key = k, .range_end = end, .prev_kv = prev_kv}};
}
RequestOp TxnOp(TxnRequest t) {
  return RequestOp{std::make_shared<TxnRequest>(std::move(t))};
}

TxnRequest MakeTxn(std::vector<RequestOp> success, std::vector<RequestOp> failure = {},
                   std::vector<Compare> compare = {}) {
  return TxnRequest{
      .compare = std::move(compare), .success = std::move(success), .failure = std::move(failure)};
}

// A compare of `target` against `n` (or `value` for kValue).
Compare Cmp(const std::string& key, Compare::Target target, Compare::Result result, int64_t n,
            const std::string& value = "", const std::string& range_end = "") {
  Compare c{.result = result, .target = target, .key = key, .range_end = range_end};
  switch (target) {
    case Compare::Target::kVersion:
      c.version = n;
      break;
    case Compare::Target::kCreate:
      c.create_revision = n;
      break;
    case Compare::Target::kMod:
      c.mod_revision = n;
      break;
    case Compare::Target::kLease:
      c.lease = n;
      break;
    case Compare::Target::kValue:
      c.value = value;
      break;
  }
  return c;
}

const RangeResponse& AsRange(const ResponseOp& op) {
  return std::get<RangeResponse>(op.op);
}
const PutResponse& AsPut(const ResponseOp& op) {
  return std::get<PutResponse>(op.op);
}
const DeleteRangeResponse& AsDelete(const ResponseOp& op) {
  return std::get<DeleteRangeResponse>(op.op);
}
const TxnResponse& AsTxn(const ResponseOp& op) {
  return *std::get<std::shared_ptr<TxnResponse>>(op.op);
}

using storage::test::EngineKind;

// Every store test runs on RocksDB and on MemEngine.
class StoreTest : public ::testing::TestWithParam<EngineKind> {
 protected:
  void SetUp() override {
    std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::replace(name.begin(), name.end(), '/', '-');
    dir_ = std::filesystem::temp_directory_path() /
           ("conclave-mvcc-" + std::to_string(::getpid()) + "-" + name);
    std::filesystem::remove_all(dir_);
    engine_ = storage::test::OpenTestEngine(GetParam(), dir_.string(), StoreRocksEngineOptions());
    Reopen();
  }
  void TearDown() override {
    store_.reset();
    engine_.reset();
    std::filesystem::remove_all(dir_);
  }
  // Opens the store again from what the engine holds: RocksDB is reopened
  // from its files too; MemEngine stays as it is (nothing crashes).
  void Reopen() {
    store_.reset();
    if (GetParam() == EngineKind::kRocks) {
      engine_.reset();
      engine_ = storage::test::OpenTestEngine(GetParam(), dir_.string(), StoreRocksEngineOptions());
    }
    auto s = Store::Open(engine_.get(), StoreOptions{.group = 3});
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(s).value();
  }
  // Applies one command as its own batch.
  template <typename Fn>
  auto Apply(Fn fn) {
    auto batch = store_->NewBatch();
    auto result = fn(*batch);
    batch->SetApplied(++index_, 7);
    EXPECT_TRUE(store_->Commit(std::move(batch)).ok());
    return result;
  }
  PutResponse Put(const std::string& k, const std::string& v, int64_t lease = 0) {
    auto r = Apply(
        [&](ApplyBatch& b) { return b.Put(PutRequest{.key = k, .value = v, .lease = lease}); });
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : PutResponse{};
  }
  RangeResponse Get(const RangeRequest& r) {
    auto out = store_->Range(r);
    EXPECT_TRUE(out.ok()) << out.status().ToString();
    return out.ok() ? *out : RangeResponse{};
  }

  Result<PutResponse> TryPut(const PutRequest& r) {
    return Apply([&](ApplyBatch& b) { return b.Put(r); });
  }
  Result<DeleteRangeResponse> TryDelete(const DeleteRangeRequest& r) {
    return Apply([&](ApplyBatch& b) { return b.DeleteRange(r); });
  }
  DeleteRangeResponse Delete(const std::string& k, const std::string& end = "",
                             bool prev_kv = false) {
    auto r = TryDelete(DeleteRangeRequest{.key = k, .range_end = end, .prev_kv = prev_kv});
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : DeleteRangeResponse{};
  }
  Result<TxnResponse> Txn(const TxnRequest& t) {
    return Apply([&](ApplyBatch& b) { return b.Txn(t); });
  }
  Result<int64_t> Compact(int64_t rev) {
    return Apply([&](ApplyBatch& b) { return b.Compact(CompactionRequest{.revision = rev}); });
  }
  // The value of `key` now, or "<absent>".
  std::string ValueOf(const std::string& key) {
    RangeResponse r = Get({.key = key});
    return r.kvs.empty() ? "<absent>" : r.kvs[0].value;
  }
  // How many stored versions (live or tombstone) `key` has in the engine.
  int CountVersions(const std::string& key) {
    std::unique_ptr<storage::EngineIterator> it = store_->engine()->NewIterator();
    const std::string end = keys::VersionPrefixEnd(store_->group(), key);
    int n = 0;
    for (it->Seek(keys::VersionPrefix(store_->group(), key)); it->Valid(); it->Next()) {
      if (it->key().compare(end) >= 0) break;
      ++n;
    }
    return n;
  }
  // How many change records with main revision <= `rev` the engine holds.
  int CountEventsThrough(int64_t rev) {
    std::unique_ptr<storage::EngineIterator> it = store_->engine()->NewIterator();
    const std::string end = keys::EventKey(store_->group(), Revision{rev + 1, 0});
    int n = 0;
    for (it->Seek(keys::EventSpaceStart(store_->group())); it->Valid(); it->Next()) {
      if (it->key().compare(end) >= 0) break;
      ++n;
    }
    return n;
  }

  std::filesystem::path dir_;
  std::unique_ptr<storage::Engine> engine_;
  std::unique_ptr<Store> store_;
  uint64_t index_ = 0;
};

TEST_P(StoreTest, PutAssignsRevisionsAndVersions) {
  EXPECT_EQ(store_->CurrentRevision(), 1);
  EXPECT_EQ(Put("a", "1").revision, 2);
  EXPECT_EQ(Put("a", "2").revision, 3);
  EXPECT_EQ(Put("b", "x").revision, 4);
  RangeResponse r = Get({.key = "a"});
  ASSERT_EQ(r.kvs.size(), 1u);
  EXPECT_EQ(r.kvs[0].value, "2");
  EXPECT_EQ(r.kvs[0].create_revision, 2);
  EXPECT_EQ(r.kvs[0].mod_revision, 3);
  EXPECT_EQ(r.kvs[0].version, 2);
  EXPECT_EQ(r.revision, 4);
  RangeResponse old = Get({.key = "a", .revision = 2});
  ASSERT_EQ(old.kvs.size(), 1u);
  EXPECT_EQ(old.kvs[0].value, "1");
}

// A put takes the key's version, create revision and lease from the key
// index; the index must follow deletes, same-batch writes, txns, lease
// revocation-style deletes and a reopen exactly as the stored versions do.
TEST_P(StoreTest, KeyIndexAgreesWithTheStoredVersions) {
  auto expect = [&](const std::string& key, int64_t version, int64_t create, int64_t lease) {
    RangeResponse r = Get({.key = key});
    ASSERT_EQ(r.kvs.size(), 1u) << key;
    EXPECT_EQ(r.kvs[0].version, version) << key;
    EXPECT_EQ(r.kvs[0].create_revision, create) << key;
    EXPECT_EQ(r.kvs[0].lease, lease) << key;
  };
  Put("a", "1", 9);  // rev 2
  Put("a", "2", 9);  // rev 3
  expect("a", 2, 2, 9);
  Delete("a");    // rev 4
  Put("a", "3");  // rev 5: a new life
  expect("a", 1, 5, 0);
  // Two puts of one key in one batch: the second sees the first.
  Apply([&](ApplyBatch& b) {
    EXPECT_TRUE(b.Put(PutRequest{.key = "b", .value = "x"}).ok());
    EXPECT_TRUE(b.Put(PutRequest{.key = "b", .value = "y", .lease = 4}).ok());
    return 0;
  });  // revs 6, 7
  expect("b", 2, 6, 4);
  ASSERT_TRUE(TryPut({.key = "b", .value = "z", .ignore_lease = true}).ok());  // rev 8
  expect("b", 3, 6, 4);
  // A txn that deletes and re-puts in one go.
  ASSERT_TRUE(Txn(MakeTxn({DeleteOp("b"), PutOp("c", "1")}, {}, {})).ok());  // rev 9
  Put("b", "again");                                                         // rev 10
  expect("b", 1, 10, 0);
  expect("c", 1, 9, 0);
  Reopen();
  Put("a", "4");
  Put("c", "2");
  expect("a", 2, 5, 0);
  expect("c", 2, 9, 0);
  Delete("a", "d");  // a range delete of everything
  Put("b", "new");
  expect("b", 1, store_->CurrentRevision(), 0);
}

TEST_P(StoreTest, SurvivesReopen) {
  Put("k", "v");
  Put("k2", "v2");
  Reopen();
  EXPECT_EQ(store_->CurrentRevision(), 3);
  EXPECT_EQ(store_->AppliedIndex(), 2u);
  EXPECT_EQ(Get({.key = "k", .range_end = "l"}).count, 2);
}

// Stores of two groups on one engine: each sees only its own keys,
// revisions, history and metadata, before and after a reopen.
TEST_P(StoreTest, GroupsShareOneEngine) {
  auto opened = Store::Open(engine_.get(), StoreOptions{.group = 4});
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  std::unique_ptr<Store> other = std::move(opened).value();
  Put("k", "three");
  auto batch = other->NewBatch();
  ASSERT_TRUE(batch->Put({.key = "k", .value = "four"}).ok());
  ASSERT_TRUE(batch->Put({.key = "only-four", .value = "x"}).ok());
  batch->PutMeta("name", "four");
  batch->SetApplied(9, 2);
  ASSERT_TRUE(other->Commit(std::move(batch)).ok());

  auto check = [&] {
    EXPECT_EQ(ValueOf("k"), "three");
    EXPECT_EQ(Get({.key = "a", .range_end = "z"}).count, 1);
    EXPECT_EQ(store_->CurrentRevision(), 2);
    EXPECT_EQ(store_->AppliedIndex(), 1u);
    EXPECT_EQ(*store_->GetMeta("name"), std::nullopt);
    EXPECT_EQ(store_->Events(1, 0, 0)->size(), 1u);
    auto theirs = other->Range({.key = "a", .range_end = "z"});
    ASSERT_TRUE(theirs.ok());
    EXPECT_EQ(Keys(*theirs), (std::vector<std::string>{"k", "only-four"}));
    EXPECT_EQ(theirs->kvs[0].value, "four");
    EXPECT_EQ(other->CurrentRevision(), 3);
    EXPECT_EQ(other->AppliedIndex(), 9u);
    EXPECT_EQ(*other->GetMeta("name"), "four");
    EXPECT_EQ(other->Events(1, 0, 0)->size(), 2u);
  };
  check();
  other.reset();
  Reopen();
  opened = Store::Open(engine_.get(), StoreOptions{.group = 4});
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  other = std::move(opened).value();
  check();
}

// ---- Range ----

class RangeTest : public StoreTest {
 protected:
  void SetUp() override {
    StoreTest::SetUp();
    for (const char* k : {"a", "ab", "b", "c", "d"})
      Put(k, std::string("v-") + k);
  }
};

TEST_P(RangeTest, SingleKey) {
  RangeResponse r = Get({.key = "a"});
  EXPECT_EQ(Keys(r), (std::vector<std::string>{"a"}));
  EXPECT_EQ(r.count, 1);
  EXPECT_FALSE(r.more);
  EXPECT_EQ(r.revision, 6);
  EXPECT_EQ(r.kvs[0].value, "v-a");
  RangeResponse missing = Get({.key = "aa"});
  EXPECT_TRUE(missing.kvs.empty());
  EXPECT_EQ(missing.count, 0);
  EXPECT_EQ(missing.revision, 6);
}

TEST_P(RangeTest, RangeEndIsExclusive) {
  EXPECT_EQ(Keys(Get({.key = "ab", .range_end = "c"})), (std::vector<std::string>{"ab", "b"}));
  EXPECT_EQ(Keys(Get({.key = "a", .range_end = "b"})), (std::vector<std::string>{"a", "ab"}));
  // An end at or before the key selects nothing.
  EXPECT_TRUE(Get({.key = "b", .range_end = "b"}).kvs.empty());
  EXPECT_TRUE(Get({.key = "c", .range_end = "a"}).kvs.empty());
  EXPECT_EQ(Get({.key = "c", .range_end = "a"}).count, 0);
}

TEST_P(RangeTest, Prefix) {
  Put("a/x", "1");
  Put("a/y", "2");
  Put("a0", "3");  // '0' follows '/': not in the prefix
  EXPECT_EQ(PrefixEnd("a/"), "a0");
  EXPECT_EQ(Keys(Get({.key = "a/", .range_end = PrefixEnd("a/")})),
            (std::vector<std::string>{"a/x", "a/y"}));
  EXPECT_EQ(Keys(Get({.key = "a", .range_end = PrefixEnd("a")})),
            (std::vector<std::string>{"a", "a/x", "a/y", "a0", "ab"}));
}

TEST_P(RangeTest, FromKey) {
  const std::string from_key(1, '\0');
  EXPECT_EQ(Keys(Get({.key = "b", .range_end = from_key})),
            (std::vector<std::string>{"b", "c", "d"}));
  EXPECT_EQ(Keys(Get({.key = "ab", .range_end = from_key})),
            (std::vector<std::string>{"ab", "b", "c", "d"}));
  EXPECT_TRUE(Get({.key = "e", .range_end = from_key}).kvs.empty());
}

TEST_P(RangeTest, AllKeys) {
  Put(std::string("\0", 1), "zero");
  Put("\xff", "ff");
  RangeResponse r = Get({.key = std::string(1, '\0'), .range_end = std::string(1, '\0')});
  EXPECT_EQ(Keys(r),
            (std::vector<std::string>{std::string("\0", 1), "a", "ab", "b", "c", "d", "\xff"}));
  EXPECT_EQ(r.count, 7);
}

TEST_P(RangeTest, LimitSetsMore) {
  RangeResponse r = Get({.key = "a", .range_end = "z", .limit = 2});
  EXPECT_EQ(Keys(r), (std::vector<std::string>{"a", "ab"}));
  EXPECT_TRUE(r.more);
  EXPECT_EQ(r.count, 5);  // every key in the range, not just those returned

  r = Get({.key = "a", .range_end = "z", .limit = 5});
  EXPECT_EQ(r.kvs.size(), 5u);
  EXPECT_FALSE(r.more);
  r = Get({.key = "a", .range_end = "z", .limit = 6});
  EXPECT_EQ(r.kvs.size(), 5u);
  EXPECT_FALSE(r.more);
  r = Get({.key = "a", .range_end = "z", .limit = 0});
  EXPECT_EQ(r.kvs.size(), 5u);
  EXPECT_FALSE(r.more);
  r = Get({.key = "a", .range_end = "z", .limit = 1, .count_only = true});
  EXPECT_TRUE(r.kvs.empty());
  EXPECT_FALSE(r.more);
  EXPECT_EQ(r.count, 5);
}

// etcd (checked against 3.4): a negative limit means no limit and a
// negative revision means the current one ("less or equal to zero").
TEST_P(RangeTest, NegativeLimitAndRevisionAreLikeZero) {
  RangeResponse r = Get({.key = "a", .range_end = "z", .limit = -1});
  EXPECT_EQ(r.kvs.size(), 5u);
  EXPECT_FALSE(r.more);
  r = Get({.key = "a", .revision = -1});
  ASSERT_EQ(r.kvs.size(), 1u);
  EXPECT_EQ(r.kvs[0].value, "v-a");
  EXPECT_EQ(r.revision, 6);
}

TEST_P(StoreTest, HistoricalReads) {
  Put("a", "1");  // 2
  Put("a", "2");  // 3
  Put("b", "x");  // 4
  Delete("a");    // 5
  Put("a", "3");  // 6
  auto at = [&](int64_t rev) { return Get({.key = "a", .range_end = "c", .revision = rev}); };
  EXPECT_TRUE(at(1).kvs.empty());
  EXPECT_EQ(at(1).revision, 6);  // the header carries the current revision
  ASSERT_EQ(at(2).kvs.size(), 1u);
  EXPECT_EQ(at(2).kvs[0], (KeyValue{"a", 2, 2, 1, "1", 0}));
  ASSERT_EQ(at(3).kvs.size(), 1u);
  EXPECT_EQ(at(3).kvs[0], (KeyValue{"a", 2, 3, 2, "2", 0}));
  EXPECT_EQ(Keys(at(4)), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(Keys(at(5)), (std::vector<std::string>{"b"}));
  EXPECT_EQ(at(5).count, 1);
  ASSERT_EQ(at(6).kvs.size(), 2u);
  EXPECT_EQ(at(6).kvs[0], (KeyValue{"a", 6, 6, 1, "3", 0}));
  EXPECT_EQ(at(0).kvs, at(6).kvs);  // revision 0: the current revision
}

TEST_P(StoreTest, FutureRevisionIsOutOfRange) {
  Put("a", "1");
  auto r = store_->Range({.key = "a", .revision = 3});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kOutOfRange);
  EXPECT_EQ(r.status().message(), "mvcc: required revision is a future revision");
  EXPECT_TRUE(store_->Range({.key = "a", .revision = 2}).ok());
}

TEST_P(StoreTest, CompactedRevisionIsOutOfRangeButTheCompactedOneReads) {
  Put("a", "1");  // 2
  Put("a", "2");  // 3
  Put("a", "3");  // 4
  ASSERT_TRUE(Compact(3).ok());
  RangeResponse at = Get({.key = "a", .revision = 3});
  ASSERT_EQ(at.kvs.size(), 1u);
  EXPECT_EQ(at.kvs[0].value, "2");
  auto below = store_->Range({.key = "a", .revision = 2});
  ASSERT_FALSE(below.ok());
  EXPECT_EQ(below.status().code(), StatusCode::kOutOfRange);
  EXPECT_EQ(below.status().message(), "mvcc: required revision has been compacted");
  EXPECT_EQ(Get({.key = "a"}).kvs[0].value, "3");
}

// Keys whose every field orders them differently:
//   a: create 3, mod 7, version 2, value "k"
//   b: create 4, mod 4, version 1, value "q"
//   c: create 2, mod 6, version 3, value "m"
class SortTest : public StoreTest {
 protected:
  void SetUp() override {
    StoreTest::SetUp();
    Put("c", "x");  // 2
    Put("a", "z");  // 3
    Put("b", "q");  // 4
    Put("c", "y");  // 5
    Put("c", "m");  // 6
    Put("a", "k");  // 7
  }
  std::vector<std::string> Sorted(SortTarget target, SortOrder order, int64_t limit = 0) {
    return Keys(Get({.key = "a",
                     .range_end = "z",
                     .limit = limit,
                     .sort_order = order,
                     .sort_target = target}));
  }
};

TEST_P(SortTest, EveryTargetAndOrder) {
  using V = std::vector<std::string>;
  struct Case {
    SortTarget target;
    V ascend;
    V descend;
  };
  const Case cases[] = {
      {SortTarget::kKey, {"a", "b", "c"}, {"c", "b", "a"}},
      {SortTarget::kVersion, {"b", "a", "c"}, {"c", "a", "b"}},
      {SortTarget::kCreate, {"c", "a", "b"}, {"b", "a", "c"}},
      {SortTarget::kMod, {"b", "c", "a"}, {"a", "c", "b"}},
      {SortTarget::kValue, {"a", "c", "b"}, {"b", "c", "a"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(static_cast<int>(c.target));
    EXPECT_EQ(Sorted(c.target, SortOrder::kAscend), c.ascend);
    EXPECT_EQ(Sorted(c.target, SortOrder::kDescend), c.descend);
    // Order NONE: key order for KEY, ascending for every other target.
    EXPECT_EQ(Sorted(c.target, SortOrder::kNone),
              c.target == SortTarget::kKey ? (V{"a", "b", "c"}) : c.ascend);
  }
}

TEST_P(SortTest, SortsTheWholeRangeBeforeTheLimit) {
  using V = std::vector<std::string>;
  EXPECT_EQ(Sorted(SortTarget::kMod, SortOrder::kDescend, 1), V{"a"});
  EXPECT_EQ(Sorted(SortTarget::kKey, SortOrder::kDescend, 2), (V{"c", "b"}));
  EXPECT_EQ(Sorted(SortTarget::kVersion, SortOrder::kNone, 2), (V{"b", "a"}));
  EXPECT_EQ(Sorted(SortTarget::kValue, SortOrder::kDescend, 1), V{"b"});
  RangeResponse r = Get({.key = "a",
                         .range_end = "z",
                         .limit = 2,
                         .sort_order = SortOrder::kAscend,
                         .sort_target = SortTarget::kCreate});
  EXPECT_EQ(Keys(r), (V{"c", "a"}));
  EXPECT_TRUE(r.more);
  EXPECT_EQ(r.count, 3);
  r = Get({.key = "a",
           .range_end = "z",
           .limit = 3,
           .sort_order = SortOrder::kDescend,
           .sort_target = SortTarget::kCreate});
  EXPECT_FALSE(r.more);
  EXPECT_EQ(r.count, 3);
}

TEST_P(SortTest, SortsHistoricalReads) {
  // At revision 5: a(create 3, mod 3, "z"), b(4, 4, "q"), c(2, 5, "y").
  RangeResponse r = Get({.key = "a",
                         .range_end = "z",
                         .revision = 5,
                         .sort_order = SortOrder::kDescend,
                         .sort_target = SortTarget::kValue});
  EXPECT_EQ(Keys(r), (std::vector<std::string>{"a", "c", "b"}));
}

TEST_P(SortTest, CountOnly) {
  RangeResponse r = Get({.key = "a", .range_end = "z", .count_only = true});
  EXPECT_TRUE(r.kvs.empty());
  EXPECT_EQ(r.count, 3);
  EXPECT_FALSE(r.more);
  EXPECT_EQ(r.revision, 7);
  EXPECT_EQ(Get({.key = "a", .range_end = "z", .revision = 3, .count_only = true}).count, 2);
  EXPECT_EQ(Get({.key = "q", .count_only = true}).count, 0);
}

TEST_P(SortTest, KeysOnly) {
  RangeResponse r = Get({.key = "a", .range_end = "z", .keys_only = true});
  ASSERT_EQ(r.kvs.size(), 3u);
  EXPECT_EQ(r.kvs[0], (KeyValue{"a", 3, 7, 2, "", 0}));
  EXPECT_EQ(r.kvs[2], (KeyValue{"c", 2, 6, 3, "", 0}));
  // Sorting by value still uses the values.
  r = Get({.key = "a",
           .range_end = "z",
           .sort_order = SortOrder::kAscend,
           .sort_target = SortTarget::kValue,
           .keys_only = true});
  EXPECT_EQ(Keys(r), (std::vector<std::string>{"a", "c", "b"}));
}

TEST_P(SortTest, RevisionFilters) {
  using V = std::vector<std::string>;
  auto range = [&](RangeRequest r) {
    r.key = "a";
    r.range_end = "z";
    return Get(r);
  };
  EXPECT_EQ(Keys(range({.min_mod_revision = 5})), (V{"a", "c"}));
  EXPECT_EQ(Keys(range({.max_mod_revision = 6})), (V{"b", "c"}));
  EXPECT_EQ(Keys(range({.min_create_revision = 3})), (V{"a", "b"}));
  EXPECT_EQ(Keys(range({.max_create_revision = 3})), (V{"a", "c"}));
  EXPECT_EQ(Keys(range({.min_mod_revision = 5, .max_create_revision = 2})), V{"c"});
  EXPECT_EQ(Keys(range({.min_mod_revision = 4, .max_mod_revision = 6})), (V{"b", "c"}));
  EXPECT_TRUE(range({.min_mod_revision = 8}).kvs.empty());
  // The count is of the range, before filtering (as etcd does).
  EXPECT_EQ(range({.min_mod_revision = 8}).count, 3);

  // With a limit the filter runs first, then the limit.
  RangeResponse r = range({.limit = 1, .min_mod_revision = 5});
  EXPECT_EQ(Keys(r), V{"a"});
  EXPECT_TRUE(r.more);
  EXPECT_EQ(r.count, 3);
  r = range({.limit = 2, .min_mod_revision = 5});
  EXPECT_EQ(Keys(r), (V{"a", "c"}));
  EXPECT_FALSE(r.more);
  r = range({.limit = 1,
             .sort_order = SortOrder::kAscend,
             .sort_target = SortTarget::kMod,
             .min_mod_revision = 5});
  EXPECT_EQ(Keys(r), V{"c"});
  EXPECT_TRUE(r.more);
  // Filters apply to the versions at the requested revision.
  EXPECT_EQ(Keys(range({.revision = 5, .min_mod_revision = 4})), (V{"b", "c"}));
}

TEST_P(StoreTest, RangeRejectsAnEmptyKey) {
  auto r = store_->Range({.key = ""});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "etcdserver: key is not provided");
}

// ---- Put ----

TEST_P(StoreTest, PutPrevKv) {
  auto first = TryPut({.key = "k", .value = "1", .lease = 9, .prev_kv = true});
  ASSERT_TRUE(first.ok());
  EXPECT_FALSE(first->has_prev_kv);
  EXPECT_EQ(first->revision, 2);
  auto second = TryPut({.key = "k", .value = "2", .prev_kv = true});
  ASSERT_TRUE(second.ok());
  ASSERT_TRUE(second->has_prev_kv);
  EXPECT_EQ(second->prev_kv, (KeyValue{"k", 2, 2, 1, "1", 9}));
  EXPECT_EQ(second->revision, 3);
  // Without prev_kv nothing comes back.
  auto third = TryPut({.key = "k", .value = "3"});
  ASSERT_TRUE(third.ok());
  EXPECT_FALSE(third->has_prev_kv);
}

TEST_P(StoreTest, PutRecordsLease) {
  Put("k", "v", 42);
  EXPECT_EQ(Get({.key = "k"}).kvs[0].lease, 42);
  // A put without a lease detaches the key from its lease.
  Put("k", "v2");
  EXPECT_EQ(Get({.key = "k"}).kvs[0].lease, 0);
  Put("k", "v3", 7);
  EXPECT_EQ(Get({.key = "k"}).kvs[0].lease, 7);
  EXPECT_EQ(Get({.key = "k", .revision = 2}).kvs[0].lease, 42);
}

TEST_P(StoreTest, PutIgnoreValueKeepsTheValue) {
  Put("k", "original", 5);
  auto r = TryPut({.key = "k", .lease = 6, .ignore_value = true});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(Get({.key = "k"}).kvs[0], (KeyValue{"k", 2, 3, 2, "original", 6}));
}

TEST_P(StoreTest, PutIgnoreLeaseKeepsTheLease) {
  Put("k", "v1", 5);
  auto r = TryPut({.key = "k", .value = "v2", .ignore_lease = true});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(Get({.key = "k"}).kvs[0], (KeyValue{"k", 2, 3, 2, "v2", 5}));
  r = TryPut({.key = "k", .ignore_value = true, .ignore_lease = true});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(Get({.key = "k"}).kvs[0], (KeyValue{"k", 2, 4, 3, "v2", 5}));
}

TEST_P(StoreTest, PutIgnoreOnMissingKeyFailsAndTakesNoRevision) {
  for (const PutRequest& p : {PutRequest{.key = "k", .ignore_value = true},
                              PutRequest{.key = "k", .value = "v", .ignore_lease = true}}) {
    auto r = TryPut(p);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(r.status().message(), "etcdserver: key not found");
  }
  // A deleted key is missing too.
  Put("k", "v");
  Delete("k");
  auto r = TryPut({.key = "k", .ignore_value = true});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "etcdserver: key not found");
  EXPECT_EQ(store_->CurrentRevision(), 3);
  EXPECT_TRUE(Get({.key = "k"}).kvs.empty());
}

TEST_P(StoreTest, PutValidation) {
  auto value = ValidatePut({.key = "k", .value = "v", .ignore_value = true});
  EXPECT_EQ(value.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(value.message(), "etcdserver: value is provided");
  auto lease = ValidatePut({.key = "k", .lease = 3, .ignore_lease = true});
  EXPECT_EQ(lease.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(lease.message(), "etcdserver: lease is provided");
  EXPECT_EQ(ValidatePut({.key = ""}).message(), "etcdserver: key is not provided");
  EXPECT_TRUE(ValidatePut({.key = "k", .ignore_value = true, .ignore_lease = true}).ok());
  // The store runs the same checks, even on an existing key.
  Put("k", "v");
  auto r = TryPut({.key = "k", .value = "v", .ignore_value = true});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "etcdserver: value is provided");
  r = TryPut({.key = "k", .lease = 1, .ignore_lease = true});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "etcdserver: lease is provided");
  EXPECT_EQ(store_->CurrentRevision(), 2);
}

TEST_P(StoreTest, DeleteResetsVersionAndCreateRevision) {
  Put("k", "1");  // 2
  Put("k", "2");  // 3
  Delete("k");    // 4
  Put("k", "3");  // 5
  EXPECT_EQ(Get({.key = "k"}).kvs[0], (KeyValue{"k", 5, 5, 1, "3", 0}));
  Put("k", "4");  // 6
  EXPECT_EQ(Get({.key = "k"}).kvs[0], (KeyValue{"k", 5, 6, 2, "4", 0}));
  // The old generation is still readable.
  EXPECT_EQ(Get({.key = "k", .revision = 3}).kvs[0], (KeyValue{"k", 2, 3, 2, "2", 0}));
}

// ---- DeleteRange ----

TEST_P(StoreTest, DeleteRangePrevKvAndCount) {
  Put("a", "1");      // 2
  Put("b", "2", 4);   // 3
  Put("c", "3");      // 4
  Put("b", "2b", 4);  // 5
  DeleteRangeResponse d = Delete("a", "c", /*prev_kv=*/true);
  EXPECT_EQ(d.deleted, 2);
  EXPECT_EQ(d.revision, 6);
  ASSERT_EQ(d.prev_kvs.size(), 2u);
  EXPECT_EQ(d.prev_kvs[0], (KeyValue{"a", 2, 2, 1, "1", 0}));
  EXPECT_EQ(d.prev_kvs[1], (KeyValue{"b", 3, 5, 2, "2b", 4}));
  EXPECT_EQ(Keys(Get({.key = "a", .range_end = "z"})), std::vector<std::string>{"c"});
  EXPECT_EQ(Keys(Get({.key = "a", .range_end = "z", .revision = 5})),
            (std::vector<std::string>{"a", "b", "c"}));
  // Without prev_kv only the count comes back.
  DeleteRangeResponse all = Delete(std::string(1, '\0'), std::string(1, '\0'));
  EXPECT_EQ(all.deleted, 1);
  EXPECT_TRUE(all.prev_kvs.empty());
  EXPECT_EQ(all.revision, 7);
}

TEST_P(StoreTest, DeletingNothingTakesNoRevision) {
  Put("a", "1");
  Delete("a");
  EXPECT_EQ(store_->CurrentRevision(), 3);
  for (const auto& [key, end] : std::vector<std::pair<std::string, std::string>>{
           {"a", ""}, {"b", ""}, {"a", "z"}, {"a", std::string(1, '\0')}}) {
    DeleteRangeResponse d = Delete(key, end, true);
    EXPECT_EQ(d.deleted, 0);
    EXPECT_TRUE(d.prev_kvs.empty());
    EXPECT_EQ(d.revision, 3);
  }
  EXPECT_EQ(store_->CurrentRevision(), 3);
  EXPECT_EQ(Put("b", "1").revision, 4);
  auto events = store_->Events(1, 0, 0);
  ASSERT_TRUE(events.ok());
  EXPECT_EQ(events->size(), 3u);  // put a, delete a, put b
}

// ---- Txn ----

class TxnTest : public StoreTest {
 protected:
  // k: version 2, create 2, mod 4, value "v2", lease 5.
  void SetUp() override {
    StoreTest::SetUp();
    Put("k", "v1");     // 2
    Put("other", "o");  // 3
    Put("k", "v2", 5);  // 4
  }
  bool Holds(const Compare& c) {
    auto r = Txn(MakeTxn({}, {}, {c}));
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() && r->succeeded;
  }
};

TEST_P(TxnTest, CompareEveryTargetAndResult) {
  using T = Compare::Target;
  using R = Compare::Result;
  struct Case {
    T target;
    int64_t below, equal, above;  // numbers below, equal to and above the key's field
    std::string vbelow, vequal, vabove;
  };
  const Case cases[] = {
      {T::kVersion, 1, 2, 3, "", "", ""},     {T::kCreate, 1, 2, 3, "", "", ""},
      {T::kMod, 3, 4, 5, "", "", ""},         {T::kLease, 4, 5, 6, "", "", ""},
      {T::kValue, 0, 0, 0, "v1", "v2", "v3"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(static_cast<int>(c.target));
    auto cmp = [&](R result, int64_t n, const std::string& v) {
      return Holds(Cmp("k", c.target, result, n, v));
    };
    EXPECT_FALSE(cmp(R::kEqual, c.below, c.vbelow));
    EXPECT_TRUE(cmp(R::kEqual, c.equal, c.vequal));
    EXPECT_FALSE(cmp(R::kEqual, c.above, c.vabove));
    EXPECT_TRUE(cmp(R::kGreater, c.below, c.vbelow));
    EXPECT_FALSE(cmp(R::kGreater, c.equal, c.vequal));
    EXPECT_FALSE(cmp(R::kGreater, c.above, c.vabove));
    EXPECT_FALSE(cmp(R::kLess, c.below, c.vbelow));
    EXPECT_FALSE(cmp(R::kLess, c.equal, c.vequal));
    EXPECT_TRUE(cmp(R::kLess, c.above, c.vabove));
    EXPECT_TRUE(cmp(R::kNotEqual, c.below, c.vbelow));
    EXPECT_FALSE(cmp(R::kNotEqual, c.equal, c.vequal));
    EXPECT_TRUE(cmp(R::kNotEqual, c.above, c.vabove));
  }
  // Values compare as bytes, unsigned.
  EXPECT_TRUE(Holds(Cmp("k", T::kValue, R::kLess, 0, "v2\xff")));
  EXPECT_TRUE(Holds(Cmp("k", T::kValue, R::kGreater, 0, "v")));
  EXPECT_TRUE(Holds(Cmp("k", T::kValue, R::kLess, 0, "\x80")));
  // Comparing takes no revision.
  EXPECT_EQ(store_->CurrentRevision(), 4);
}

TEST_P(TxnTest, EveryCompareMustHold) {
  using T = Compare::Target;
  using R = Compare::Result;
  EXPECT_TRUE(Holds(Cmp("k", T::kVersion, R::kEqual, 2)));
  auto both = [&](int64_t mod) {
    auto r = Txn(MakeTxn(
        {}, {}, {Cmp("k", T::kVersion, R::kEqual, 2), Cmp("other", T::kMod, R::kEqual, mod)}));
    return r.ok() && r->succeeded;
  };
  EXPECT_TRUE(both(3));
  EXPECT_FALSE(both(4));
}

TEST_P(TxnTest, CompareOverARangeNeedsEveryKey) {
  using T = Compare::Target;
  using R = Compare::Result;
  Put("r1", "x");  // 5
  Put("r2", "x");  // 6
  Put("r2", "x");  // 7
  Put("r3", "y");  // 8
  // Versions: r1 1, r2 2, r3 1.
  EXPECT_TRUE(Holds(Cmp("r1", T::kVersion, R::kGreater, 0, "", "r4")));
  EXPECT_FALSE(Holds(Cmp("r1", T::kVersion, R::kGreater, 1, "", "r4")));
  EXPECT_TRUE(Holds(Cmp("r1", T::kVersion, R::kLess, 3, "", "r4")));
  EXPECT_FALSE(Holds(Cmp("r1", T::kVersion, R::kEqual, 1, "", "r4")));
  EXPECT_TRUE(Holds(Cmp("r1", T::kVersion, R::kEqual, 1, "", "r2")));  // only r1
  EXPECT_TRUE(Holds(Cmp("r1", T::kMod, R::kGreater, 4, "", "r4")));
  EXPECT_FALSE(Holds(Cmp("r1", T::kMod, R::kGreater, 5, "", "r4")));
  EXPECT_FALSE(Holds(Cmp("r1", T::kValue, R::kEqual, 0, "x", "r4")));  // r3 is "y"
  EXPECT_TRUE(Holds(Cmp("r1", T::kValue, R::kEqual, 0, "x", "r3")));
  EXPECT_TRUE(Holds(Cmp("r1", T::kCreate, R::kNotEqual, 4, "", "r4")));
  // From-key: "r".. covers r1..r3; "k".. also covers k (create 2) and other.
  EXPECT_TRUE(Holds(Cmp("r", T::kCreate, R::kGreater, 4, "", std::string(1, '\0'))));
  EXPECT_FALSE(Holds(Cmp("k", T::kCreate, R::kGreater, 2, "", std::string(1, '\0'))));
  EXPECT_TRUE(Holds(Cmp("k", T::kLease, R::kLess, 6, "", std::string(1, '\0'))));
}

TEST_P(TxnTest, MissingKeysCompareAsZeroExceptValues) {
  using T = Compare::Target;
  using R = Compare::Result;
  for (const std::string& end : {std::string(), std::string("nz")}) {
    SCOPED_TRACE(end);  // "n" alone, or an empty range [n, nz)
    EXPECT_TRUE(Holds(Cmp("n", T::kVersion, R::kEqual, 0, "", end)));
    EXPECT_TRUE(Holds(Cmp("n", T::kCreate, R::kLess, 1, "", end)));
    EXPECT_TRUE(Holds(Cmp("n", T::kMod, R::kEqual, 0, "", end)));
    EXPECT_TRUE(Holds(Cmp("n", T::kLease, R::kEqual, 0, "", end)));
    EXPECT_FALSE(Holds(Cmp("n", T::kVersion, R::kGreater, 0, "", end)));
    EXPECT_FALSE(Holds(Cmp("n", T::kMod, R::kNotEqual, 0, "", end)));
    // A value compare on a missing key always fails, whatever it asks.
    EXPECT_FALSE(Holds(Cmp("n", T::kValue, R::kEqual, 0, "", end)));
    EXPECT_FALSE(Holds(Cmp("n", T::kValue, R::kNotEqual, 0, "x", end)));
    EXPECT_FALSE(Holds(Cmp("n", T::kValue, R::kLess, 0, "x", end)));
    EXPECT_FALSE(Holds(Cmp("n", T::kValue, R::kGreater, 0, "", end)));
  }
  // A deleted key is missing.
  Delete("k");
  EXPECT_TRUE(Holds(Cmp("k", T::kVersion, R::kEqual, 0)));
  EXPECT_FALSE(Holds(Cmp("k", T::kValue, R::kEqual, 0, "v2")));
}

TEST_P(TxnTest, RunsTheChosenBranch) {
  using T = Compare::Target;
  using R = Compare::Result;
  auto txn = [&](int64_t version) {
    return MakeTxn({PutOp("a", "success"), RangeOp({.key = "k"}), DeleteOp("other")},
                   {PutOp("a", "failure")}, {Cmp("k", T::kVersion, R::kEqual, version)});
  };
  auto fail = Txn(txn(7));
  ASSERT_TRUE(fail.ok());
  EXPECT_FALSE(fail->succeeded);
  ASSERT_EQ(fail->responses.size(), 1u);
  EXPECT_EQ(AsPut(fail->responses[0]).revision, 5);
  EXPECT_EQ(fail->revision, 5);
  EXPECT_EQ(ValueOf("a"), "failure");
  EXPECT_EQ(ValueOf("other"), "o");

  auto ok = Txn(txn(2));
  ASSERT_TRUE(ok.ok());
  EXPECT_TRUE(ok->succeeded);
  EXPECT_EQ(ok->revision, 6);
  ASSERT_EQ(ok->responses.size(), 3u);
  EXPECT_EQ(AsRange(ok->responses[1]).kvs.at(0).value, "v2");
  EXPECT_EQ(AsDelete(ok->responses[2]).deleted, 1);
  EXPECT_EQ(ValueOf("a"), "success");
  EXPECT_EQ(ValueOf("other"), "<absent>");
  // An empty txn succeeds and changes nothing.
  auto empty = Txn(TxnRequest{});
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->succeeded);
  EXPECT_EQ(empty->revision, 6);
}

TEST_P(TxnTest, ReadsSeeTheTxnsEarlierWrites) {
  auto r = Txn(
      MakeTxn({RangeOp({.key = "k"}), PutOp("k", "v3"), PutOp("n", "new"), RangeOp({.key = "k"}),
               RangeOp({.key = "a", .range_end = "z"}), DeleteOp("other"),
               RangeOp({.key = "other"}), RangeOp({.key = "k", .revision = 4})}));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->responses.size(), 8u);
  EXPECT_EQ(AsRange(r->responses[0]).kvs.at(0).value, "v2");
  EXPECT_EQ(AsRange(r->responses[3]).kvs.at(0), (KeyValue{"k", 2, 5, 3, "v3", 0}));
  EXPECT_EQ(Keys(AsRange(r->responses[4])), (std::vector<std::string>{"k", "n", "other"}));
  EXPECT_TRUE(AsRange(r->responses[6]).kvs.empty());
  EXPECT_EQ(AsRange(r->responses[7]).kvs.at(0).value, "v2");
  EXPECT_EQ(r->revision, 5);
}

TEST_P(TxnTest, OneRevisionWithIncreasingSubRevisions) {
  auto batch = store_->NewBatch();
  auto r =
      batch->Txn(MakeTxn({PutOp("x", "1"), PutOp("y", "2"), DeleteOp("other"), PutOp("z", "3")}));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(batch->revision(), 5);
  ASSERT_EQ(batch->events().size(), 4u);
  const std::vector<std::string> order = {"x", "y", "other", "z"};
  for (size_t i = 0; i < order.size(); ++i) {
    EXPECT_EQ(batch->events()[i].kv.key, order[i]);
    EXPECT_EQ(batch->events()[i].kv.mod_revision, 5);
  }
  ASSERT_TRUE(store_->Commit(std::move(batch)).ok());
  EXPECT_EQ(r->revision, 5);
  for (const ResponseOp& op : r->responses) {
    std::visit(
        [](const auto& v) {
          if constexpr (!std::is_same_v<std::decay_t<decltype(v)>, std::shared_ptr<TxnResponse>>) {
            EXPECT_EQ(v.revision, 5);
          }
        },
        op.op);
  }
  // Stored under (5, 0), (5, 1), (5, 2), (5, 3) in op order.
  for (size_t i = 0; i < order.size(); ++i) {
    auto value = store_->engine()->Get(
        keys::VersionKey(store_->group(), order[i], Revision{5, static_cast<int64_t>(i)}));
    EXPECT_TRUE(value.ok() && value->has_value()) << order[i];
  }
  auto events = store_->Events(5, 5, 0);
  ASSERT_TRUE(events.ok());
  ASSERT_EQ(events->size(), 4u);
  for (size_t i = 0; i < order.size(); ++i)
    EXPECT_EQ((*events)[i].kv.key, order[i]);
  EXPECT_EQ((*events)[2].type, EventType::kDelete);
  EXPECT_EQ(store_->CurrentRevision(), 5);
}

TEST_P(TxnTest, ReadOnlyTxnTakesNoRevision) {
  auto r = Txn(MakeTxn({RangeOp({.key = "k"}), DeleteOp("missing")}, {},
                       {Cmp("k", Compare::Target::kVersion, Compare::Result::kEqual, 2)}));
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->succeeded);
  EXPECT_EQ(r->revision, 4);
  EXPECT_EQ(AsRange(r->responses[0]).revision, 4);
  EXPECT_EQ(AsDelete(r->responses[1]).deleted, 0);
  EXPECT_EQ(store_->CurrentRevision(), 4);
  EXPECT_EQ(Put("after", "x").revision, 5);
}

TEST_P(TxnTest, NestedTxnComparesSeeTheStateBeforeTheTxn) {
  using T = Compare::Target;
  using R = Compare::Result;
  // etcd 3.4 answers "no": the nested compare does not see the outer put.
  auto r = Txn(MakeTxn({PutOp("nk", "1"),
                        TxnOp(MakeTxn({PutOp("nm", "yes")}, {PutOp("nm", "no")},
                                      {Cmp("nk", T::kValue, R::kEqual, 0, "1")})),
                        RangeOp({.key = "nk"})}));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->succeeded);
  ASSERT_EQ(r->responses.size(), 3u);
  const TxnResponse& nested = AsTxn(r->responses[1]);
  EXPECT_FALSE(nested.succeeded);
  ASSERT_EQ(nested.responses.size(), 1u);
  EXPECT_EQ(AsPut(nested.responses[0]).revision, 5);
  EXPECT_EQ(nested.revision, 5);
  EXPECT_EQ(AsRange(r->responses[2]).kvs.at(0).value, "1");
  EXPECT_EQ(ValueOf("nm"), "no");
  EXPECT_EQ(store_->CurrentRevision(), 5);

  // Two levels down, on the failure side, with a compare that holds.
  r = Txn(MakeTxn(
      {},
      {TxnOp(MakeTxn({TxnOp(MakeTxn({PutOp("deep", "ok")}, {}, {Cmp("k", T::kMod, R::kEqual, 4)}))},
                     {}, {Cmp("k", T::kLease, R::kEqual, 5)}))},
      {Cmp("k", T::kVersion, R::kEqual, 9)}));
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->succeeded);
  EXPECT_TRUE(AsTxn(r->responses[0]).succeeded);
  EXPECT_TRUE(AsTxn(AsTxn(r->responses[0]).responses[0]).succeeded);
  EXPECT_EQ(ValueOf("deep"), "ok");
}

TEST_P(TxnTest, CompactedRangeInTheChosenBranchFailsTheWholeTxn) {
  ASSERT_TRUE(Compact(3).ok());
  auto batch = store_->NewBatch();
  ASSERT_TRUE(batch->Put({.key = "before", .value = "1"}).ok());  // 5
  auto r =
      batch->Txn(MakeTxn({PutOp("x", "1"), DeleteOp("k"), RangeOp({.key = "k", .revision = 2})}));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kOutOfRange);
  EXPECT_EQ(r.status().message(), "mvcc: required revision has been compacted");
  EXPECT_EQ(batch->revision(), 5);
  EXPECT_EQ(batch->events().size(), 1u);  // only the put before the txn
  // A future revision fails the txn the same way.
  r = batch->Txn(MakeTxn({PutOp("x", "1"), RangeOp({.key = "k", .revision = 6})}));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "mvcc: required revision is a future revision");
  // In the branch not taken, the same range is harmless.
  r = batch->Txn(MakeTxn({PutOp("x", "2")}, {RangeOp({.key = "k", .revision = 2})}));
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(store_->Commit(std::move(batch)).ok());
  EXPECT_EQ(store_->CurrentRevision(), 6);
  EXPECT_EQ(ValueOf("x"), "2");
  EXPECT_EQ(ValueOf("k"), "v2");
  EXPECT_EQ(Get({.key = "x"}).kvs[0].version, 1);
}

TEST_P(TxnTest, IgnoreValueOnMissingKeyFailsTheWholeTxn) {
  auto r =
      Txn(MakeTxn({PutOp("x", "1"), RequestOp{PutRequest{.key = "nope", .ignore_value = true}}}));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "etcdserver: key not found");
  EXPECT_EQ(ValueOf("x"), "<absent>");
  EXPECT_EQ(store_->CurrentRevision(), 4);
  // On an existing key it works inside a txn.
  r = Txn(MakeTxn({RequestOp{PutRequest{.key = "k", .lease = 8, .ignore_value = true}}}));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(Get({.key = "k"}).kvs[0], (KeyValue{"k", 2, 5, 3, "v2", 8}));
}

// etcd 3.4: the second delete sees the first one's work and deletes only
// what is left ("deleted": 2 then 1).
TEST_P(StoreTest, TxnDeletesSeeEarlierDeletes) {
  Put("a", "1");
  Put("b", "2");
  Put("c", "3");
  auto r = Txn(MakeTxn({DeleteOp("a", "c", true), DeleteOp("b", "d", true)}));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(AsDelete(r->responses[0]).deleted, 2);
  EXPECT_EQ(AsDelete(r->responses[1]).deleted, 1);
  ASSERT_EQ(AsDelete(r->responses[1]).prev_kvs.size(), 1u);
  EXPECT_EQ(AsDelete(r->responses[1]).prev_kvs[0].key, "c");
  auto events = store_->Events(5, 0, 0);
  ASSERT_TRUE(events.ok());
  EXPECT_EQ(events->size(), 3u);
  EXPECT_EQ(CountVersions("b"), 2);  // one put, one tombstone
}

// etcd 3.4 accepts a put in one nested txn and a delete of the same key in a
// later one, and the delete removes the put's key.
TEST_P(StoreTest, TxnDeleteSeesAnEarlierNestedPut) {
  const TxnRequest t =
      MakeTxn({TxnOp(MakeTxn({PutOp("k", "v")})), TxnOp(MakeTxn({DeleteOp("k")}))});
  ASSERT_TRUE(ValidateTxn(t, 128).ok());
  auto r = Txn(t);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(AsDelete(AsTxn(r->responses[1]).responses[0]).deleted, 1);
  EXPECT_EQ(ValueOf("k"), "<absent>");
  EXPECT_EQ(store_->CurrentRevision(), 2);
  auto events = store_->Events(2, 0, 0);
  ASSERT_TRUE(events.ok());
  ASSERT_EQ(events->size(), 2u);
  EXPECT_EQ((*events)[0].type, EventType::kPut);
  EXPECT_EQ((*events)[1].type, EventType::kDelete);
}

// A txn that fails after some of its writes (possible only for a txn that
// skipped ValidateTxn) must still leave nothing behind.
TEST_P(StoreTest, TxnFailingMidwayLeavesNothingBehind) {
  Put("k", "v");
  const TxnRequest t = MakeTxn(
      {PutOp("z", "1"), DeleteOp("k"), RequestOp{PutRequest{.key = "k", .ignore_value = true}}});
  EXPECT_FALSE(ValidateTxn(t, 128).ok());
  auto batch = store_->NewBatch();
  auto r = batch->Txn(t);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "etcdserver: key not found");
  EXPECT_TRUE(batch->events().empty());
  EXPECT_EQ(batch->revision(), 2);
  ASSERT_TRUE(batch->Put({.key = "after", .value = "1"}).ok());
  ASSERT_TRUE(store_->Commit(std::move(batch)).ok());
  EXPECT_EQ(ValueOf("z"), "<absent>");
  EXPECT_EQ(ValueOf("k"), "v");
  EXPECT_EQ(Get({.key = "after"}).kvs[0].mod_revision, 3);
  EXPECT_EQ(CountVersions("z"), 0);
  EXPECT_EQ(CountVersions("k"), 1);
}

// A version that cannot be decoded is an error, not a missing key: a
// compare must not quietly take the failure branch, nor a put start a new
// generation over it.
TEST_P(StoreTest, CorruptVersionIsAnErrorNotAMissingKey) {
  Put("k", "v");
  auto garbage = store_->engine()->NewBatch();
  garbage->Put(keys::VersionKey(store_->group(), "k", Revision{2, 5}), "\x07garbage");
  ASSERT_TRUE(store_->engine()->Write(garbage.get(), /*sync=*/false).ok());
  auto range = store_->Range({.key = "k"});
  ASSERT_FALSE(range.ok());
  EXPECT_EQ(range.status().code(), StatusCode::kCorruption);
  auto txn = Txn(MakeTxn({PutOp("x", "1")}, {PutOp("y", "1")},
                         {Cmp("k", Compare::Target::kVersion, Compare::Result::kEqual, 1)}));
  ASSERT_FALSE(txn.ok());
  EXPECT_EQ(txn.status().code(), StatusCode::kCorruption);
  // A plain put reads nothing from the engine (the key index answers); one that
  // wants the previous value reads the version and finds it corrupt.
  auto put = TryPut({.key = "k", .value = "w", .prev_kv = true});
  ASSERT_FALSE(put.ok());
  EXPECT_EQ(put.status().code(), StatusCode::kCorruption);
  auto del = TryDelete({.key = "k"});
  ASSERT_FALSE(del.ok());
  EXPECT_EQ(del.status().code(), StatusCode::kCorruption);
  EXPECT_EQ(store_->CurrentRevision(), 2);
}

// ---- ValidateTxn ----

Status Validate(const TxnRequest& t, size_t max_ops = 128) {
  return ValidateTxn(t, max_ops);
}

void ExpectDuplicate(const TxnRequest& t) {
  Status s = Validate(t);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "etcdserver: duplicate key given in txn request");
}

TEST(ValidateTxnTest, DuplicatePuts) {
  ExpectDuplicate(MakeTxn({PutOp("a", "1"), PutOp("b", "1"), PutOp("a", "2")}));
  ExpectDuplicate(MakeTxn({}, {PutOp("a", "1"), PutOp("a", "2")}));
  // The two top-level branches never both run.
  EXPECT_TRUE(Validate(MakeTxn({PutOp("a", "1")}, {PutOp("a", "2")})).ok());
  // Reading a key that is written is fine, and so are overlapping deletes.
  EXPECT_TRUE(Validate(MakeTxn({PutOp("a", "1"), RangeOp({.key = "a"}), DeleteOp("b", "d"),
                                DeleteOp("c", "e")}))
                  .ok());
}

TEST(ValidateTxnTest, PutInsideADeletedRange) {
  ExpectDuplicate(MakeTxn({DeleteOp("a"), PutOp("a", "1")}));
  ExpectDuplicate(MakeTxn({PutOp("a", "1"), DeleteOp("a")}));
  ExpectDuplicate(MakeTxn({DeleteOp("a", "c"), PutOp("b", "1")}));
  ExpectDuplicate(MakeTxn({PutOp("b", "1"), DeleteOp("a", "c")}));
  ExpectDuplicate(MakeTxn({DeleteOp("a", std::string(1, '\0')), PutOp("zzz", "1")}));
  EXPECT_TRUE(Validate(MakeTxn({DeleteOp("a", "c"), PutOp("c", "1")})).ok());
  EXPECT_TRUE(Validate(MakeTxn({DeleteOp("b", "c"), PutOp("a", "1")})).ok());
  EXPECT_TRUE(Validate(MakeTxn({DeleteOp("a"), PutOp("ab", "1")})).ok());
}

TEST(ValidateTxnTest, NestedTxns) {
  // The same key in both branches of a nested txn: only one runs.
  EXPECT_TRUE(Validate(MakeTxn({TxnOp(MakeTxn({PutOp("k", "1")}, {PutOp("k", "2")}))})).ok());
  // One branch deletes what the other puts (accepted by etcd 3.4).
  EXPECT_TRUE(Validate(MakeTxn({TxnOp(MakeTxn({DeleteOp("k")}, {PutOp("k", "2")}))})).ok());
  EXPECT_TRUE(Validate(MakeTxn({TxnOp(MakeTxn({PutOp("k", "2")}, {DeleteOp("j", "l")}))})).ok());
  // A nested put after an earlier nested txn's put of the same key, or
  // next to an outer put of it, is a duplicate in either order.
  ExpectDuplicate(MakeTxn({PutOp("k", "1"), TxnOp(MakeTxn({PutOp("k", "2")}))}));
  ExpectDuplicate(MakeTxn({TxnOp(MakeTxn({PutOp("k", "2")})), PutOp("k", "1")}));
  ExpectDuplicate(MakeTxn({TxnOp(MakeTxn({}, {PutOp("k", "2")})), PutOp("k", "1")}));
  ExpectDuplicate(MakeTxn({TxnOp(MakeTxn({PutOp("k", "1")})), TxnOp(MakeTxn({PutOp("k", "2")}))}));
  // A nested put inside an outer delete, or an outer put inside a nested delete.
  ExpectDuplicate(MakeTxn({DeleteOp("a", "z"), TxnOp(MakeTxn({PutOp("k", "2")}))}));
  ExpectDuplicate(MakeTxn({TxnOp(MakeTxn({}, {DeleteOp("a", "z")})), PutOp("k", "1")}));
  // A delete in one nested txn and a put in a later one (etcd rejects it).
  ExpectDuplicate(MakeTxn({TxnOp(MakeTxn({DeleteOp("k")})), TxnOp(MakeTxn({PutOp("k", "1")}))}));
  // A put in one nested txn and a delete in a later one (etcd accepts it;
  // the delete then sees the put, see TxnDeleteSeesAnEarlierNestedPut).
  EXPECT_TRUE(
      Validate(MakeTxn({TxnOp(MakeTxn({PutOp("k", "1")})), TxnOp(MakeTxn({DeleteOp("k")}))})).ok());
  // Conflicts inside a nested branch are found too.
  ExpectDuplicate(MakeTxn({}, {TxnOp(MakeTxn({}, {PutOp("k", "1"), PutOp("k", "2")}))}));
  // A missing nested txn is rejected.
  EXPECT_FALSE(Validate(MakeTxn({RequestOp{std::shared_ptr<TxnRequest>()}})).ok());
}

TEST(ValidateTxnTest, TooManyOps) {
  auto puts = [](int n, const std::string& prefix) {
    std::vector<RequestOp> ops;
    for (int i = 0; i < n; ++i)
      ops.push_back(PutOp(prefix + std::to_string(i), "v"));
    return ops;
  };
  auto expect_too_many = [](const TxnRequest& t, size_t max) {
    Status s = Validate(t, max);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(s.message(), "etcdserver: too many operations in txn request");
  };
  EXPECT_TRUE(Validate(MakeTxn(puts(8, "s"), puts(8, "f")), 8).ok());
  expect_too_many(MakeTxn(puts(9, "s")), 8);
  expect_too_many(MakeTxn({}, puts(9, "f")), 8);
  std::vector<Compare> compares(9, Cmp("k", Compare::Target::kVersion, Compare::Result::kEqual, 0));
  expect_too_many(MakeTxn({}, {}, compares), 8);
  compares.pop_back();
  EXPECT_TRUE(Validate(MakeTxn({}, {}, compares), 8).ok());

  // A nested txn gets what its parent leaves of the budget (etcd 3.4 with
  // --max-txn-ops 8: 4 puts and a txn of 4 fail, a txn of 3 passes).
  std::vector<RequestOp> outer = puts(4, "o");
  outer.push_back(TxnOp(MakeTxn(puts(4, "n"))));
  expect_too_many(MakeTxn(outer), 8);
  outer.back() = TxnOp(MakeTxn(puts(3, "n")));
  EXPECT_TRUE(Validate(MakeTxn(outer), 8).ok());
  outer.back() = TxnOp(MakeTxn({}, {}, std::vector<Compare>(4, compares[0])));
  expect_too_many(MakeTxn(outer), 8);
}

TEST(ValidateTxnTest, DeepNestingIsCheckedInLinearTime) {
  // A chain of txns, one inside the other's success branch. Each level
  // uses one op, so max_txn_ops levels fit and one more does not.
  auto chain = [](int depth) {
    TxnRequest t = MakeTxn({PutOp("leaf", "v")});
    for (int i = 1; i < depth; ++i) {
      t = MakeTxn({TxnOp(std::move(t))}, {PutOp("f" + std::to_string(i), "v")});
    }
    return t;
  };
  EXPECT_TRUE(Validate(chain(128), 128).ok());
  EXPECT_EQ(Validate(chain(129), 128).message(), "etcdserver: too many operations in txn request");
}

TEST(ValidateTxnTest, RejectsMalformedOps) {
  EXPECT_EQ(
      Validate(MakeTxn({}, {}, {Cmp("", Compare::Target::kVersion, Compare::Result::kEqual, 0)}))
          .message(),
      "etcdserver: key is not provided");
  EXPECT_EQ(Validate(MakeTxn({PutOp("", "v")})).message(), "etcdserver: key is not provided");
  EXPECT_EQ(Validate(MakeTxn({RangeOp({.key = ""})})).message(), "etcdserver: key is not provided");
  EXPECT_EQ(Validate(MakeTxn({}, {DeleteOp("")})).message(), "etcdserver: key is not provided");
  EXPECT_EQ(Validate(MakeTxn({TxnOp(MakeTxn({RequestOp{
                         PutRequest{.key = "k", .value = "v", .ignore_value = true}}}))}))
                .message(),
            "etcdserver: value is provided");
  EXPECT_EQ(Validate(MakeTxn({}, {TxnOp(MakeTxn({}, {},
                                                {Cmp("", Compare::Target::kValue,
                                                     Compare::Result::kEqual, 0)}))}))
                .message(),
            "etcdserver: key is not provided");
}

// ---- Compact ----

class CompactTest : public StoreTest {
 protected:
  void SetUp() override {
    StoreTest::SetUp();
    Put("a", "1");  // 2
    Put("a", "2");  // 3
    Put("b", "1");  // 4
    Delete("b");    // 5
    Put("c", "1");  // 6
    Put("a", "3");  // 7
    Delete("c");    // 8
    Put("c", "2");  // 9
    Put("d", "1");  // 10
  }
};

TEST_P(CompactTest, RemovesHistoryButKeepsTheLatestVersions) {
  auto r = Compact(7);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, 10);  // compaction takes no revision
  EXPECT_EQ(store_->CurrentRevision(), 10);
  EXPECT_EQ(store_->CompactRevision(), 7);
  // The state at the compacted revision is intact, fields and all.
  RangeResponse at = Get({.key = "a", .range_end = "z", .revision = 7});
  ASSERT_EQ(at.kvs.size(), 2u);
  EXPECT_EQ(at.kvs[0], (KeyValue{"a", 2, 7, 3, "3", 0}));
  EXPECT_EQ(at.kvs[1], (KeyValue{"c", 6, 6, 1, "1", 0}));
  EXPECT_EQ(Keys(Get({.key = "a", .range_end = "z", .revision = 8})),
            (std::vector<std::string>{"a"}));
  RangeResponse now = Get({.key = "a", .range_end = "z"});
  ASSERT_EQ(now.kvs.size(), 3u);
  EXPECT_EQ(now.kvs[1], (KeyValue{"c", 9, 9, 1, "2", 0}));
  EXPECT_EQ(now.kvs[2], (KeyValue{"d", 10, 10, 1, "1", 0}));
  // Below it, nothing.
  for (int64_t rev = 1; rev < 7; ++rev) {
    auto below = store_->Range({.key = "a", .revision = rev});
    ASSERT_FALSE(below.ok());
    EXPECT_EQ(below.status().message(), "mvcc: required revision has been compacted");
  }
  // And the history is physically gone: a keeps only its version at 7; b
  // (deleted at or before 7) nothing; c its version at 6 and everything later.
  EXPECT_EQ(CountVersions("a"), 1);
  EXPECT_EQ(CountVersions("b"), 0);
  EXPECT_EQ(CountVersions("c"), 3);
  EXPECT_EQ(CountVersions("d"), 1);
  // Events below 7 are gone; those at 7 stay so a watch can start there.
  EXPECT_EQ(CountEventsThrough(6), 0);
  EXPECT_EQ(CountEventsThrough(7), 1);
  EXPECT_EQ(CountEventsThrough(10), 4);
  // Keys go on from where they were.
  Put("a", "4");
  EXPECT_EQ(Get({.key = "a"}).kvs[0], (KeyValue{"a", 2, 11, 4, "4", 0}));
  Put("b", "again");
  EXPECT_EQ(Get({.key = "b"}).kvs[0], (KeyValue{"b", 12, 12, 1, "again", 0}));
}

TEST_P(CompactTest, ErrorsForOldAndFutureRevisions) {
  ASSERT_TRUE(Compact(5).ok());
  for (int64_t rev : {5, 4, 1}) {
    auto again = Compact(rev);
    ASSERT_FALSE(again.ok());
    EXPECT_EQ(again.status().code(), StatusCode::kOutOfRange);
    EXPECT_EQ(again.status().message(), "mvcc: required revision has been compacted");
  }
  auto future = Compact(11);
  ASSERT_FALSE(future.ok());
  EXPECT_EQ(future.status().code(), StatusCode::kOutOfRange);
  EXPECT_EQ(future.status().message(), "mvcc: required revision is a future revision");
  EXPECT_EQ(store_->CompactRevision(), 5);
  // Up to the current revision is allowed, and the current state survives.
  ASSERT_TRUE(Compact(10).ok());
  EXPECT_EQ(Keys(Get({.key = "a", .range_end = "z"})), (std::vector<std::string>{"a", "c", "d"}));
  EXPECT_EQ(Get({.key = "a", .range_end = "z", .revision = 10}).kvs.size(), 3u);
  EXPECT_EQ(CountVersions("c"), 1);
}

TEST_P(CompactTest, SurvivesReopen) {
  ASSERT_TRUE(Compact(7).ok());
  Reopen();
  EXPECT_EQ(store_->CompactRevision(), 7);
  EXPECT_EQ(store_->CurrentRevision(), 10);
  EXPECT_FALSE(store_->Range({.key = "a", .revision = 6}).ok());
  EXPECT_EQ(Get({.key = "a", .revision = 7}).kvs.at(0).value, "3");
  EXPECT_FALSE(Compact(7).ok());
}

TEST_P(CompactTest, InsideABatchWithWrites) {
  auto batch = store_->NewBatch();
  ASSERT_TRUE(batch->Put({.key = "a", .value = "4"}).ok());  // 11
  ASSERT_TRUE(batch->Compact({.revision = 11}).ok());
  auto r = batch->Range({.key = "a", .revision = 10});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "mvcc: required revision has been compacted");
  ASSERT_TRUE(store_->Commit(std::move(batch)).ok());
  EXPECT_EQ(CountVersions("a"), 1);
  EXPECT_EQ(Get({.key = "a"}).kvs.at(0), (KeyValue{"a", 2, 11, 4, "4", 0}));
}

// ---- Events ----

class EventsTest : public StoreTest {
 protected:
  void SetUp() override {
    StoreTest::SetUp();
    Put("a", "1", 3);                                                                   // 2
    Put("b", "1");                                                                      // 3
    ASSERT_TRUE(Txn(MakeTxn({PutOp("a", "2"), DeleteOp("b"), PutOp("c", "1")})).ok());  // 4
    Delete("a");                                                                        // 5
  }
  std::vector<Event> Events(int64_t from, int64_t to, size_t limit) {
    auto r = store_->Events(from, to, limit);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : std::vector<Event>{};
  }
  static std::vector<int64_t> Revisions(const std::vector<Event>& events) {
    std::vector<int64_t> out;
    for (const Event& e : events)
      out.push_back(e.kv.mod_revision);
    return out;
  }
};

TEST_P(EventsTest, EveryChangeInRevisionOrder) {
  const std::vector<Event> all = Events(1, 0, 0);
  const std::vector<Event> want = {
      {EventType::kPut, {"a", 2, 2, 1, "1", 3}}, {EventType::kPut, {"b", 3, 3, 1, "1", 0}},
      {EventType::kPut, {"a", 2, 4, 2, "2", 0}}, {EventType::kDelete, {"b", 0, 4, 0, "", 0}},
      {EventType::kPut, {"c", 4, 4, 1, "1", 0}}, {EventType::kDelete, {"a", 0, 5, 0, "", 0}},
  };
  EXPECT_EQ(all, want);
  EXPECT_EQ(Events(2, 0, 0), want);
  EXPECT_EQ(Revisions(Events(3, 4, 0)), (std::vector<int64_t>{3, 4, 4, 4}));
  EXPECT_EQ(Revisions(Events(4, 4, 0)), (std::vector<int64_t>{4, 4, 4}));
  EXPECT_EQ(Revisions(Events(5, 5, 0)), (std::vector<int64_t>{5}));
  EXPECT_TRUE(Events(6, 0, 0).empty());
  EXPECT_EQ(Revisions(Events(2, 0, 2)), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(Revisions(Events(2, 0, 1)), (std::vector<int64_t>{2}));
}

// A revision is atomic: a limit never returns part of a txn's changes,
// since the caller resumes from the next revision.
TEST_P(EventsTest, LimitNeverSplitsARevision) {
  EXPECT_EQ(Revisions(Events(2, 0, 3)), (std::vector<int64_t>{2, 3, 4, 4, 4}));
  EXPECT_EQ(Revisions(Events(4, 0, 1)), (std::vector<int64_t>{4, 4, 4}));
  EXPECT_EQ(Revisions(Events(4, 0, 4)), (std::vector<int64_t>{4, 4, 4, 5}));
  // Paging by limit and resuming after the last revision sees every change.
  std::vector<Event> paged;
  for (int64_t from = 1;;) {
    std::vector<Event> page = Events(from, 0, 2);
    if (page.empty()) break;
    paged.insert(paged.end(), page.begin(), page.end());
    from = page.back().kv.mod_revision + 1;
  }
  EXPECT_EQ(paged, Events(1, 0, 0));
}

// History below the compacted revision is gone; a watch may still start at
// the compacted revision itself (etcd 3.4 delivers from there too).
TEST_P(EventsTest, FailAfterCompaction) {
  ASSERT_TRUE(Compact(4).ok());
  for (int64_t from : {1, 3}) {
    auto r = store_->Events(from, 0, 0);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kOutOfRange);
    EXPECT_EQ(r.status().message(), "mvcc: required revision has been compacted");
  }
  EXPECT_EQ(Revisions(Events(4, 0, 0)), (std::vector<int64_t>{4, 4, 4, 5}));
  EXPECT_EQ(Revisions(Events(5, 0, 0)), (std::vector<int64_t>{5}));
}

// Events runs on one snapshot: a compaction committed while it runs makes
// it fail or leaves its answer complete, never silently short.
TEST_P(StoreTest, EventsRacingCompactionAreCompleteOrCompacted) {
  constexpr int kRevisions = 200;
  {
    auto batch = store_->NewBatch();
    for (int i = 0; i < kRevisions; ++i) {
      ASSERT_TRUE(batch->Put({.key = "k", .value = std::to_string(i)}).ok());
    }
    ASSERT_TRUE(store_->Commit(std::move(batch)).ok());
  }
  const int64_t last = store_->CurrentRevision();
  std::atomic<bool> done{false};
  std::atomic<int> torn{0};
  std::atomic<int> reads{0};
  std::thread reader([&] {
    while (!done.load()) {
      const int64_t from = store_->CompactRevision();
      auto r = store_->Events(from, 0, 0);
      reads.fetch_add(1);
      if (!r.ok()) continue;
      const int64_t first = std::max<int64_t>(from, 2);  // revision 1 has no changes
      if (r->empty() || r->front().kv.mod_revision != first ||
          static_cast<int64_t>(r->size()) != last - first + 1) {
        torn.fetch_add(1);
      }
    }
  });
  bool compacted = true;
  for (int64_t rev = 2; rev < last && compacted; ++rev)
    compacted = Compact(rev).ok();
  done.store(true);
  reader.join();
  EXPECT_TRUE(compacted);
  EXPECT_EQ(torn.load(), 0) << "of " << reads.load() << " reads";
}

// ---- ApplyBatch ----

TEST_P(StoreTest, CommandsInOneBatchSeeEachOther) {
  auto batch = store_->NewBatch();
  ASSERT_TRUE(batch->Put({.key = "a", .value = "1"}).ok());  // 2
  ASSERT_TRUE(batch->Put({.key = "a", .value = "2"}).ok());  // 3
  auto txn = batch->Txn(MakeTxn({PutOp("b", "from-txn"), RangeOp({.key = "a"})}, {},
                                {Cmp("a", Compare::Target::kVersion, Compare::Result::kEqual, 2)}));
  ASSERT_TRUE(txn.ok());
  EXPECT_TRUE(txn->succeeded);  // 4
  EXPECT_EQ(AsRange(txn->responses[1]).kvs.at(0).value, "2");
  auto del = batch->DeleteRange({.key = "a", .prev_kv = true});  // 5
  ASSERT_TRUE(del.ok());
  EXPECT_EQ(del->deleted, 1);
  EXPECT_EQ(del->prev_kvs.at(0), (KeyValue{"a", 2, 3, 2, "2", 0}));
  auto put = batch->Put({.key = "a", .value = "3", .prev_kv = true});  // 6
  ASSERT_TRUE(put.ok());
  EXPECT_FALSE(put->has_prev_kv);
  auto read = batch->Range({.key = "a", .range_end = "z"});
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(read->revision, 6);
  ASSERT_EQ(read->kvs.size(), 2u);
  EXPECT_EQ(read->kvs[0], (KeyValue{"a", 6, 6, 1, "3", 0}));
  EXPECT_EQ(batch->revision(), 6);
  EXPECT_EQ(batch->events().size(), 5u);

  // Readers see nothing of the batch until it commits.
  EXPECT_TRUE(Get({.key = "a", .range_end = "z"}).kvs.empty());
  EXPECT_EQ(Get({.key = "a"}).revision, 1);
  EXPECT_EQ(store_->CurrentRevision(), 1);
  batch->SetApplied(1, 7);
  ASSERT_TRUE(store_->Commit(std::move(batch)).ok());
  EXPECT_EQ(store_->CurrentRevision(), 6);
  EXPECT_EQ(Get({.key = "a", .range_end = "z"}).kvs.size(), 2u);
  EXPECT_EQ(Get({.key = "a", .revision = 3}).kvs.at(0).value, "2");
}

TEST_P(StoreTest, AppliedIndexIsPersistedWithTheBatch) {
  auto batch = store_->NewBatch();
  ASSERT_TRUE(batch->Put({.key = "a", .value = "1"}).ok());
  ASSERT_TRUE(batch->Put({.key = "b", .value = "1"}).ok());
  batch->SetApplied(10, 7);
  ASSERT_TRUE(store_->Commit(std::move(batch)).ok());
  EXPECT_EQ(store_->AppliedIndex(), 10u);

  // A batch of entries that change nothing still moves the applied index.
  batch = store_->NewBatch();
  ASSERT_TRUE(batch->DeleteRange({.key = "zzz"}).ok());
  batch->SetApplied(11, 7);
  ASSERT_TRUE(store_->Commit(std::move(batch)).ok());

  Reopen();
  EXPECT_EQ(store_->AppliedIndex(), 11u);
  EXPECT_EQ(store_->CurrentRevision(), 3);
  EXPECT_EQ(Keys(Get({.key = "a", .range_end = "z"})), (std::vector<std::string>{"a", "b"}));
}

TEST_P(StoreTest, BatchDroppedWithoutCommitLeavesNothing) {
  Put("a", "1");  // index 1, revision 2
  {
    auto batch = store_->NewBatch();
    ASSERT_TRUE(batch->Put({.key = "a", .value = "lost"}).ok());
    ASSERT_TRUE(batch->Put({.key = "b", .value = "lost"}).ok());
    ASSERT_TRUE(batch->Compact({.revision = 3}).ok());
    batch->SetApplied(99, 7);
  }
  auto check = [&] {
    EXPECT_EQ(store_->CurrentRevision(), 2);
    EXPECT_EQ(store_->CompactRevision(), 0);
    EXPECT_EQ(store_->AppliedIndex(), 1u);
    EXPECT_EQ(ValueOf("a"), "1");
    EXPECT_EQ(ValueOf("b"), "<absent>");
    EXPECT_EQ(CountVersions("a"), 1);
    auto events = store_->Events(1, 0, 0);
    ASSERT_TRUE(events.ok());
    EXPECT_EQ(events->size(), 1u);
  };
  check();
  Reopen();
  check();
  // The next batch starts from the committed state.
  EXPECT_EQ(Put("b", "kept").revision, 3);
  EXPECT_EQ(store_->AppliedIndex(), 2u);
}

// ---- Keys with 0x00 and 0xff bytes ----

TEST_P(StoreTest, BinaryKeysSortAndRoundTrip) {
  const std::vector<std::string> sorted = {std::string("\0", 1),
                                           std::string("\0\0", 2),
                                           std::string("\0\xff", 2),
                                           "\x01",
                                           "a",
                                           std::string("a\0", 2),
                                           std::string("a\0\0", 3),
                                           std::string("a\0b", 3),
                                           "a\x01",
                                           "a\xfe",
                                           "a\xff",
                                           "a\xff\xff",
                                           "b",
                                           "\xff",
                                           "\xff\xff"};
  // Put them in a scrambled order, each with its own bytes as the value.
  std::vector<std::string> order = sorted;
  std::reverse(order.begin(), order.end());
  std::rotate(order.begin(), order.begin() + 5, order.end());
  for (const std::string& k : order)
    Put(k, "v" + k);

  const std::string zero(1, '\0');
  RangeResponse all = Get({.key = zero, .range_end = zero});
  EXPECT_EQ(Keys(all), sorted);
  for (const KeyValue& kv : all.kvs)
    EXPECT_EQ(kv.value, "v" + kv.key);
  for (const std::string& k : sorted) {
    RangeResponse one = Get({.key = k});
    ASSERT_EQ(one.kvs.size(), 1u) << testing::PrintToString(k);
    EXPECT_EQ(one.kvs[0].value, "v" + k);
  }
  using V = std::vector<std::string>;
  EXPECT_EQ(Keys(Get({.key = std::string("a\0", 2), .range_end = "a\xff"})),
            (V{std::string("a\0", 2), std::string("a\0\0", 3), std::string("a\0b", 3), "a\x01",
               "a\xfe"}));
  EXPECT_EQ(Keys(Get({.key = "a\xff", .range_end = PrefixEnd("a\xff")})),
            (V{"a\xff", "a\xff\xff"}));
  EXPECT_EQ(
      Keys(Get({.key = std::string("a\0", 2), .range_end = PrefixEnd(std::string("a\0", 2))})),
      (V{std::string("a\0", 2), std::string("a\0\0", 3), std::string("a\0b", 3)}));
  EXPECT_EQ(Keys(Get({.key = "\xff", .range_end = PrefixEnd("\xff")})), (V{"\xff", "\xff\xff"}));
  EXPECT_EQ(Keys(Get({.key = zero, .range_end = "\x01"})),
            (V{zero, std::string("\0\0", 2), std::string("\0\xff", 2)}));

  // Deleting "a" touches no other key; deleting "a\0" neither.
  EXPECT_EQ(Delete("a").deleted, 1);
  EXPECT_EQ(Delete(std::string("a\0", 2)).deleted, 1);
  EXPECT_EQ(Get({.key = zero, .range_end = zero}).count, static_cast<int64_t>(sorted.size()) - 2);
}

TEST_P(StoreTest, BinaryKeyHistoriesDoNotInterleave) {
  const std::string a0("a\0", 2);
  Put("a", "1");      // 2
  Put(a0, "x");       // 3
  Put("a", "2");      // 4
  Put(a0, "y");       // 5
  Put("a\x01", "z");  // 6
  for (int64_t rev = 2; rev <= 6; ++rev) {
    SCOPED_TRACE(rev);
    RangeResponse a = Get({.key = "a", .revision = rev});
    ASSERT_EQ(a.kvs.size(), 1u);
    EXPECT_EQ(a.kvs[0].value, rev >= 4 ? "2" : "1");
    RangeResponse b = Get({.key = a0, .revision = rev});
    if (rev < 3) {
      EXPECT_TRUE(b.kvs.empty());
    } else {
      ASSERT_EQ(b.kvs.size(), 1u);
      EXPECT_EQ(b.kvs[0].value, rev >= 5 ? "y" : "x");
      EXPECT_EQ(b.kvs[0].version, rev >= 5 ? 2 : 1);
    }
  }
  EXPECT_EQ(Keys(Get({.key = "a", .range_end = "b", .revision = 4})),
            (std::vector<std::string>{"a", a0}));
}

// ---- Concurrency ----

// Readers on other threads run on snapshots: two keys always written
// together by one txn are never seen from different revisions.
TEST_P(StoreTest, ConcurrentReadersNeverSeeATornTxn) {
  constexpr int kTxns = 300;
  std::atomic<bool> done{false};
  std::atomic<int> torn{0};
  std::atomic<int> reads{0};
  auto reader = [&] {
    int64_t last_rev = 0;
    while (!done.load()) {
      auto r = store_->Range({.key = "x", .range_end = "z"});
      reads.fetch_add(1);
      if (!r.ok() || r->revision < last_rev) {
        torn.fetch_add(1);
        continue;
      }
      last_rev = r->revision;
      if (r->kvs.empty()) continue;  // before the first txn
      if (r->kvs.size() != 2 || r->kvs[0].value != r->kvs[1].value ||
          r->kvs[0].mod_revision != r->kvs[1].mod_revision ||
          r->kvs[0].mod_revision != r->revision) {
        torn.fetch_add(1);
      }
    }
  };
  std::thread r1(reader);
  std::thread r2(reader);
  bool applied = true;
  for (int i = 0; i < kTxns && applied; ++i) {
    const std::string v = std::to_string(i);
    applied = Txn(MakeTxn({PutOp("x", v), PutOp("y", v)})).ok();
  }
  done.store(true);
  r1.join();
  r2.join();
  EXPECT_TRUE(applied);
  EXPECT_EQ(torn.load(), 0) << "of " << reads.load() << " reads";
  EXPECT_EQ(store_->CurrentRevision(), 1 + kTxns);
}

std::string EngineName(const ::testing::TestParamInfo<EngineKind>& info) {
  return storage::test::EngineKindName(info.param);
}

const auto kBothEngines = ::testing::Values(EngineKind::kRocks, EngineKind::kMem);
INSTANTIATE_TEST_SUITE_P(Engines, StoreTest, kBothEngines, EngineName);
INSTANTIATE_TEST_SUITE_P(Engines, RangeTest, kBothEngines, EngineName);
INSTANTIATE_TEST_SUITE_P(Engines, SortTest, kBothEngines, EngineName);
INSTANTIATE_TEST_SUITE_P(Engines, TxnTest, kBothEngines, EngineName);
INSTANTIATE_TEST_SUITE_P(Engines, CompactTest, kBothEngines, EngineName);
INSTANTIATE_TEST_SUITE_P(Engines, EventsTest, kBothEngines, EngineName);

}  // namespace
}  // namespace conclave::mvcc
