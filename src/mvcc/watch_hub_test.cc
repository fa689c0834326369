#include "mvcc/watch_hub.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "base/random.h"
#include "mvcc/store.h"

namespace conclave::mvcc {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

// A change as a test names it: "PUT k=v@rev" or "DELETE k@rev".
std::string Describe(const Event& e) {
  if (e.type == EventType::kPut)
    return "PUT " + e.kv.key + "=" + e.kv.value + "@" + std::to_string(e.kv.mod_revision);
  return "DELETE " + e.kv.key + "@" + std::to_string(e.kv.mod_revision);
}

class WatchHubTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "conclave-watch-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    auto engine = storage::OpenRocksEngine(dir_ + "/db", StoreRocksEngineOptions());
    ASSERT_TRUE(engine.ok()) << engine.status().ToString();
    engine_ = std::move(engine).value();
    auto s = Store::Open(engine_.get(), StoreOptions{.group = 1});
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(s).value();
  }
  void TearDown() override {
    hub_.reset();
    store_.reset();
    engine_.reset();
    std::filesystem::remove_all(dir_);
  }

  void MakeHub(WatchHubOptions options = {}) {
    hub_ = std::make_unique<WatchHub>(store_.get(), options);
    stream_ = hub_->OpenStream([this] { ++wakeups_; });
  }

  // Applies one batch, commits it, then notifies the hub as the apply
  // thread does.
  template <typename Fn>
  void Apply(Fn fn) {
    auto batch = store_->NewBatch();
    fn(*batch);
    batch->SetApplied(++index_, 7);
    std::vector<Event> events = batch->events();
    ASSERT_TRUE(store_->Commit(std::move(batch)).ok());
    hub_->Notify(store_->CurrentRevision(), events);
  }
  void Put(const std::string& k, const std::string& v) {
    Apply([&](ApplyBatch& b) { ASSERT_TRUE(b.Put(PutRequest{.key = k, .value = v}).ok()); });
  }
  void Delete(const std::string& k, const std::string& end = "") {
    Apply([&](ApplyBatch& b) {
      ASSERT_TRUE(b.DeleteRange(DeleteRangeRequest{.key = k, .range_end = end}).ok());
    });
  }
  // Puts every pair in one txn: one revision.
  void PutAll(const std::vector<std::pair<std::string, std::string>>& kvs) {
    TxnRequest t;
    for (const auto& [k, v] : kvs)
      t.success.push_back(RequestOp{PutRequest{.key = k, .value = v}});
    Apply([&](ApplyBatch& b) { ASSERT_TRUE(b.Txn(t).ok()); });
  }
  void Compact(int64_t rev) {
    Apply([&](ApplyBatch& b) { ASSERT_TRUE(b.Compact(CompactionRequest{.revision = rev}).ok()); });
  }

  WatchId Watch(const WatchRequest& r) {
    auto id = hub_->Create(stream_, r);
    EXPECT_TRUE(id.ok()) << id.status().ToString();
    return id.ok() ? *id : -100;
  }

  // Polls until the hub has nothing more for the stream.
  std::vector<WatchResponse> Drain(size_t responses_per_poll = 1000) {
    std::vector<WatchResponse> out;
    for (int i = 0; i < 100000 && hub_->HasWork(stream_); ++i) {
      for (WatchResponse& r : hub_->Poll(stream_, responses_per_poll))
        out.push_back(std::move(r));
    }
    EXPECT_FALSE(hub_->HasWork(stream_));
    return out;
  }

  // The events delivered to `id`, described.
  static std::vector<std::string> EventsOf(const std::vector<WatchResponse>& rs, WatchId id) {
    std::vector<std::string> out;
    for (const WatchResponse& r : rs) {
      if (r.watch_id != id) continue;
      for (const WatchEvent& e : r.events)
        out.push_back(Describe(e.event));
    }
    return out;
  }

  std::string dir_;
  std::unique_ptr<storage::Engine> engine_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<WatchHub> hub_;
  StreamId stream_ = 0;
  uint64_t index_ = 0;
  std::atomic<int> wakeups_{0};
};

TEST_F(WatchHubTest, CreatedComesFirstThenEventsInOrderOneRevisionPerResponse) {
  MakeHub();
  Put("a0", "x");  // before the watch: not delivered
  WatchId id = Watch({.key = "a", .range_end = PrefixEnd("a")});
  EXPECT_EQ(id, 0);
  EXPECT_GT(wakeups_.load(), 0);
  Put("a1", "1");
  PutAll({{"a2", "2"}, {"b", "skip"}, {"a3", "3"}});
  Delete("a1");
  auto rs = Drain();
  ASSERT_EQ(rs.size(), 4u);
  EXPECT_TRUE(rs[0].created);
  EXPECT_EQ(rs[0].watch_id, id);
  EXPECT_EQ(rs[0].header_revision, 2);
  EXPECT_TRUE(rs[0].events.empty());
  // The txn's two matching changes arrive together.
  EXPECT_THAT(EventsOf({rs[1]}, id), ElementsAre("PUT a1=1@3"));
  EXPECT_THAT(EventsOf({rs[2]}, id), ElementsAre("PUT a2=2@4", "PUT a3=3@4"));
  EXPECT_THAT(EventsOf({rs[3]}, id), ElementsAre("DELETE a1@5"));
  for (size_t i = 1; i < rs.size(); ++i)
    EXPECT_GE(rs[i].header_revision, rs[i].events.back().event.kv.mod_revision);
  EXPECT_THAT(Drain(), IsEmpty());
}

TEST_F(WatchHubTest, KeyRangePrefixAndFromKeySelectors) {
  MakeHub();
  WatchId single = Watch({.key = "b"});
  WatchId range = Watch({.key = "b", .range_end = "d"});
  WatchId prefix = Watch({.key = "b", .range_end = PrefixEnd("b")});
  WatchId from_key = Watch({.key = "c", .range_end = std::string("\0", 1)});
  WatchId all = Watch({.key = "", .range_end = std::string("\0", 1)});  // "" means "\0"
  for (const char* k : {"a", "b", "bb", "c", "d", "z"})
    Put(k, "v");
  auto rs = Drain();
  EXPECT_THAT(EventsOf(rs, single), ElementsAre("PUT b=v@3"));
  EXPECT_THAT(EventsOf(rs, range), ElementsAre("PUT b=v@3", "PUT bb=v@4", "PUT c=v@5"));
  EXPECT_THAT(EventsOf(rs, prefix), ElementsAre("PUT b=v@3", "PUT bb=v@4"));
  EXPECT_THAT(EventsOf(rs, from_key), ElementsAre("PUT c=v@5", "PUT d=v@6", "PUT z=v@7"));
  EXPECT_EQ(EventsOf(rs, all).size(), 6u);
}

TEST_F(WatchHubTest, FiltersDropPutsOrDeletes) {
  MakeHub();
  WatchId no_put = Watch({.key = "k", .filter_noput = true});
  WatchId no_delete = Watch({.key = "k", .filter_nodelete = true});
  Put("k", "1");
  Delete("k");
  Put("k", "2");
  auto rs = Drain();
  EXPECT_THAT(EventsOf(rs, no_put), ElementsAre("DELETE k@3"));
  EXPECT_THAT(EventsOf(rs, no_delete), ElementsAre("PUT k=1@2", "PUT k=2@4"));
}

TEST_F(WatchHubTest, PrevKvComesFromHistory) {
  MakeHub();
  WatchId with = Watch({.key = "k", .prev_kv = true});
  WatchId without = Watch({.key = "k"});
  Put("k", "v1");
  Put("k", "v2");
  Delete("k");
  Put("k", "v3");
  auto rs = Drain();
  std::vector<std::string> prevs;
  for (const WatchResponse& r : rs) {
    for (const WatchEvent& e : r.events) {
      if (r.watch_id == without) {
        EXPECT_FALSE(e.prev_kv.has_value());
        continue;
      }
      EXPECT_EQ(r.watch_id, with);
      prevs.push_back(e.prev_kv ? e.prev_kv->value + "@" + std::to_string(e.prev_kv->mod_revision)
                                : "none");
    }
  }
  EXPECT_THAT(prevs, ElementsAre("none", "v1@2", "v2@3", "none"));
}

TEST_F(WatchHubTest, StartRevisionReplaysHistoryThenGoesLive) {
  MakeHub();
  for (int i = 1; i <= 5; ++i)
    Put("k", std::to_string(i));  // revisions 2..6
  WatchId id = Watch({.key = "k", .start_revision = 4});
  Put("k", "6");
  Put("other", "x");
  Put("k", "7");
  auto rs = Drain();
  ASSERT_FALSE(rs.empty());
  EXPECT_TRUE(rs[0].created);
  EXPECT_THAT(EventsOf(rs, id),
              ElementsAre("PUT k=3@4", "PUT k=4@5", "PUT k=5@6", "PUT k=6@7", "PUT k=7@9"));
  // Live again: a later write arrives through Notify.
  Put("k", "8");
  EXPECT_THAT(EventsOf(Drain(), id), ElementsAre("PUT k=8@10"));
}

TEST_F(WatchHubTest, FutureStartRevisionWaitsForIt) {
  MakeHub();
  WatchId id = Watch({.key = "k", .start_revision = 4});
  Put("k", "a");  // 2
  Put("k", "b");  // 3
  Put("k", "c");  // 4
  EXPECT_THAT(EventsOf(Drain(), id), ElementsAre("PUT k=c@4"));
}

TEST_F(WatchHubTest, CompactedStartRevisionCancelsWithCompactRevision) {
  MakeHub();
  for (int i = 1; i <= 5; ++i)
    Put("k", std::to_string(i));  // revisions 2..6
  Compact(4);
  WatchId old = Watch({.key = "k", .start_revision = 3});
  WatchId at = Watch({.key = "k", .start_revision = 4});
  auto rs = Drain();
  std::vector<WatchResponse> of_old;
  for (const WatchResponse& r : rs) {
    if (r.watch_id == old) of_old.push_back(r);
  }
  ASSERT_EQ(of_old.size(), 2u);
  EXPECT_TRUE(of_old[0].created);
  EXPECT_TRUE(of_old[1].canceled);
  EXPECT_EQ(of_old[1].compact_revision, 4);
  EXPECT_TRUE(of_old[1].events.empty());
  // Starting at the compacted revision itself still works, as in etcd.
  EXPECT_THAT(EventsOf(rs, at), ElementsAre("PUT k=3@4", "PUT k=4@5", "PUT k=5@6"));
  Put("k", "6");
  EXPECT_THAT(EventsOf(Drain(), old), IsEmpty());
}

TEST_F(WatchHubTest, SlowWatcherNeverBlocksNotifyAndGetsEveryEventOnce) {
  MakeHub({.watcher_buffer_events_max = 2, .catchup_events_max = 3});
  WatchId slow = Watch({.key = "k", .range_end = PrefixEnd("k")});
  std::vector<std::string> expected;
  std::vector<WatchResponse> rs;
  int64_t rev = 1;
  for (int i = 0; i < 50; ++i) {
    if (i % 10 == 5) {
      // A revision larger than the whole buffer still gets through.
      const std::string v = "t" + std::to_string(i);
      PutAll({{"k1", v}, {"k2", v}, {"k3", v}});
      ++rev;
      for (const char* k : {"k1", "k2", "k3"})
        expected.push_back(std::string("PUT ") + k + "=" + v + "@" + std::to_string(rev));
    } else {
      Put("k" + std::to_string(i), "v");
      ++rev;
      expected.push_back("PUT k" + std::to_string(i) + "=v@" + std::to_string(rev));
    }
    // Occasionally the stream reads a little, never enough to keep up.
    if (i % 7 == 0) {
      for (WatchResponse& r : hub_->Poll(stream_, 1))
        rs.push_back(std::move(r));
    }
  }
  // Nobody kept up, yet every Notify returned, and what is queued stays
  // bounded: the buffer (2 events, or one 3-event revision) plus at most
  // one catch-up step (3 events, or the rest of its last revision).
  size_t queued_events = 0;
  for (WatchResponse& r : hub_->Poll(stream_, 1000)) {
    queued_events += r.events.size();
    rs.push_back(std::move(r));
  }
  EXPECT_LE(queued_events, 3u + 3u);
  for (WatchResponse& r : Drain(2))
    rs.push_back(std::move(r));
  EXPECT_EQ(EventsOf(rs, slow), expected);
  // And the watcher is live again afterwards.
  Put("k-live", "v");
  EXPECT_THAT(EventsOf(Drain(), slow), ElementsAre("PUT k-live=v@" + std::to_string(rev + 1)));
}

TEST_F(WatchHubTest, SlowWatcherConcurrentWriterExactlyOnceInOrder) {
  MakeHub({.watcher_buffer_events_max = 4, .catchup_events_max = 5});
  WatchId id = Watch({.key = "k", .range_end = PrefixEnd("k")});
  constexpr int kWrites = 300;
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (int i = 0; i < kWrites; ++i) {
      if (i % 3 == 0)
        PutAll({{"k" + std::to_string(i), "a"}, {"k" + std::to_string(i) + "x", "b"}});
      else
        Put("k" + std::to_string(i), "v");
    }
    done = true;
  });
  std::vector<WatchResponse> rs;
  while (!done.load() || hub_->HasWork(stream_)) {
    for (WatchResponse& r : hub_->Poll(stream_, 1))
      rs.push_back(std::move(r));
    std::this_thread::yield();
  }
  writer.join();
  for (WatchResponse& r : Drain())
    rs.push_back(std::move(r));

  // Every revision 2..kWrites+1 exactly once, in order, whole.
  int64_t expect_rev = 2;
  for (const WatchResponse& r : rs) {
    if (r.watch_id != id || r.events.empty()) continue;
    const int64_t rev = r.events.front().event.kv.mod_revision;
    EXPECT_EQ(rev, expect_rev);
    const int i = static_cast<int>(rev - 2);
    EXPECT_EQ(r.events.size(), i % 3 == 0 ? 2u : 1u) << "revision " << rev;
    for (const WatchEvent& e : r.events)
      EXPECT_EQ(e.event.kv.mod_revision, rev);
    expect_rev = rev + 1;
  }
  EXPECT_EQ(expect_rev, kWrites + 2);
}

TEST_F(WatchHubTest, VictimBehindCompactionIsCanceled) {
  MakeHub({.watcher_buffer_events_max = 1});
  WatchId id = Watch({.key = "k"});
  Put("k", "1");  // 2: buffered
  Put("k", "2");  // 3: does not fit, the watcher falls behind at 3
  Put("k", "3");  // 4
  Compact(4);
  auto rs = Drain();
  EXPECT_THAT(EventsOf(rs, id), ElementsAre("PUT k=1@2"));
  ASSERT_FALSE(rs.empty());
  EXPECT_TRUE(rs.back().canceled);
  EXPECT_EQ(rs.back().compact_revision, 4);
}

TEST_F(WatchHubTest, ProgressWaitsForUnsyncedWatchers) {
  MakeHub();
  Put("k", "1");  // 2
  Put("k", "2");  // 3
  hub_->RequestProgress(stream_);
  auto rs = Drain();
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0].watch_id, kProgressWatchId);
  EXPECT_EQ(rs[0].header_revision, 3);
  EXPECT_TRUE(rs[0].events.empty());

  WatchId id = Watch({.key = "k", .start_revision = 2});
  hub_->RequestProgress(stream_);
  rs = Drain();
  // created, the replay, then the progress: it follows every event it covers.
  ASSERT_EQ(rs.size(), 4u);
  EXPECT_TRUE(rs[0].created);
  EXPECT_THAT(EventsOf(rs, id), ElementsAre("PUT k=1@2", "PUT k=2@3"));
  EXPECT_EQ(rs[3].watch_id, kProgressWatchId);
  EXPECT_EQ(rs[3].header_revision, 3);
}

TEST_F(WatchHubTest, ProgressNotifyReachesIdleWatchersOnly) {
  MakeHub();
  WatchId idle = Watch({.key = "a", .progress_notify = true});
  WatchId busy = Watch({.key = "b", .progress_notify = true});
  WatchId plain = Watch({.key = "c"});
  (void)Drain();
  Put("b", "1");
  hub_->ProgressNotify();
  auto rs = Drain();
  ASSERT_EQ(rs.size(), 2u);
  EXPECT_EQ(rs[0].watch_id, busy);
  EXPECT_EQ(rs[1].watch_id, idle);
  EXPECT_EQ(rs[1].header_revision, 2);
  EXPECT_TRUE(rs[1].events.empty());
  // Next period nothing happened to either: both get one.
  hub_->ProgressNotify();
  rs = Drain();
  ASSERT_EQ(rs.size(), 2u);
  for (const WatchResponse& r : rs) {
    EXPECT_NE(r.watch_id, plain);
    EXPECT_TRUE(r.events.empty());
  }
}

TEST_F(WatchHubTest, CancelStopsEventsAndIdsAreManaged) {
  MakeHub({.watchers_per_stream_max = 3});
  WatchId a = Watch({.key = "k"});
  WatchId b = Watch({.key = "k"});
  EXPECT_EQ(a, 0);
  EXPECT_EQ(b, 1);
  auto dup = hub_->Create(stream_, {.watch_id = 1, .key = "k"});
  EXPECT_EQ(dup.status().code(), StatusCode::kAlreadyExists);
  WatchId explicit_id = Watch({.watch_id = 7, .key = "k"});
  EXPECT_EQ(explicit_id, 7);
  EXPECT_EQ(hub_->Create(stream_, {.key = "k"}).status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(hub_->Create(stream_, {.key = "b", .range_end = "a"}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(hub_->Create(999, {.key = "k"}).status().code(), StatusCode::kNotFound);

  Put("k", "1");
  ASSERT_TRUE(hub_->Cancel(stream_, a).ok());
  EXPECT_EQ(hub_->Cancel(stream_, a).code(), StatusCode::kNotFound);
  Put("k", "2");
  auto rs = Drain();
  EXPECT_THAT(EventsOf(rs, a), ElementsAre("PUT k=1@2"));
  EXPECT_THAT(EventsOf(rs, b), ElementsAre("PUT k=1@2", "PUT k=2@3"));
  bool saw_cancel = false;
  for (const WatchResponse& r : rs) {
    if (r.watch_id == a && r.canceled) {
      saw_cancel = true;
      EXPECT_EQ(r.compact_revision, 0);
    }
  }
  EXPECT_TRUE(saw_cancel);

  hub_->CloseStream(stream_);
  Put("k", "3");
  EXPECT_FALSE(hub_->HasWork(stream_));
  EXPECT_THAT(hub_->Poll(stream_, 10), IsEmpty());
}

TEST_F(WatchHubTest, LargeResponsesFragmentWhenAllowed) {
  MakeHub({.fragment_bytes_max = 25});
  WatchId frag = Watch({.key = "k", .range_end = PrefixEnd("k"), .fragment = true});
  WatchId whole = Watch({.key = "k", .range_end = PrefixEnd("k")});
  const std::string v(10, 'v');
  PutAll({{"k1", v}, {"k2", v}, {"k3", v}});  // 12 bytes each
  auto rs = Drain();
  std::vector<size_t> frag_sizes;
  std::vector<bool> frag_flags;
  for (const WatchResponse& r : rs) {
    if (r.watch_id == frag && !r.events.empty()) {
      frag_sizes.push_back(r.events.size());
      frag_flags.push_back(r.fragment);
    }
    if (r.watch_id == whole && !r.events.empty()) {
      EXPECT_EQ(r.events.size(), 3u);
      EXPECT_FALSE(r.fragment);
    }
  }
  EXPECT_THAT(frag_sizes, ElementsAre(2u, 1u));
  EXPECT_THAT(frag_flags, ElementsAre(true, false));
}

// Seeded soak: random watchers, writes and polls; every watcher must see
// exactly what the store's history says it selects, from its start on.
TEST_F(WatchHubTest, RandomizedAgainstStoreHistory) {
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    SeededRandom rnd(seed);
    MakeHub({.watcher_buffer_events_max = 1 + rnd.Uniform(4),
             .catchup_events_max = 1 + rnd.Uniform(5)});
    const int64_t first_rev = store_->CurrentRevision();
    auto key = [&] { return std::string(1, static_cast<char>('a' + rnd.Uniform(6))); };
    std::vector<std::pair<WatchId, WatchRequest>> watchers;
    std::vector<WatchResponse> rs;
    for (int step = 0; step < 200; ++step) {
      const uint64_t what = rnd.Uniform(10);
      if (what < 5) {
        Put(key(), std::to_string(step));
      } else if (what == 5) {
        Delete("a", "d");
      } else if (what == 6) {
        PutAll({{"b", "t" + std::to_string(step)}, {"e", "t" + std::to_string(step)}});
      } else if (what == 7 && watchers.size() < 12) {
        WatchRequest r{.key = key()};
        if (rnd.OneIn(2))
          r.range_end = std::string(1, static_cast<char>(r.key[0] + 1 + rnd.Uniform(3)));
        r.start_revision = rnd.OneIn(2) ? 0 : rnd.Range(first_rev, store_->CurrentRevision());
        r.filter_nodelete = rnd.OneIn(4);
        const int64_t start =
            r.start_revision > 0 ? r.start_revision : store_->CurrentRevision() + 1;
        WatchId id = Watch(r);
        r.start_revision = start;
        watchers.emplace_back(id, r);
      } else {
        for (WatchResponse& resp : hub_->Poll(stream_, 1 + rnd.Uniform(3)))
          rs.push_back(std::move(resp));
      }
    }
    for (WatchResponse& resp : Drain())
      rs.push_back(std::move(resp));

    auto history = store_->Events(first_rev, 0, 0);
    ASSERT_TRUE(history.ok());
    for (const auto& [id, r] : watchers) {
      std::vector<std::string> expected;
      for (const Event& e : *history) {
        const bool selected =
            r.range_end.empty() ? e.kv.key == r.key : (e.kv.key >= r.key && e.kv.key < r.range_end);
        if (selected && e.kv.mod_revision >= r.start_revision &&
            !(r.filter_nodelete && e.type == EventType::kDelete))
          expected.push_back(Describe(e));
      }
      EXPECT_EQ(EventsOf(rs, id), expected) << "watch " << id;
    }
    hub_->CloseStream(stream_);
  }
}

}  // namespace
}  // namespace conclave::mvcc
