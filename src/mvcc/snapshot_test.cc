#include "mvcc/snapshot.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <thread>

#include "base/random.h"
#include "base/sha256.h"
#include "storage/engine_test_util.h"
#include "storage/storage.h"

namespace conclave::mvcc {
namespace {

namespace fs = std::filesystem;
using storage::test::EngineKind;

// Runs on RocksDB and on MemEngine. Stores live in named engines (RocksDB:
// a directory under root_), opened on first use; stores of different groups
// may share one.
class SnapshotTest : public ::testing::TestWithParam<EngineKind> {
 protected:
  void SetUp() override {
    std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::replace(name.begin(), name.end(), '/', '-');
    root_ =
        fs::temp_directory_path() / ("conclave-snap-" + std::to_string(::getpid()) + "-" + name);
    fs::remove_all(root_);
    fs::create_directories(root_);
    source_ = OpenStore("source");
  }
  void TearDown() override {
    source_.reset();
    engines_.clear();
    fs::remove_all(root_);
  }

  storage::Engine* EngineFor(const std::string& name) {
    std::unique_ptr<storage::Engine>& engine = engines_[name];
    if (!engine) {
      engine = storage::test::OpenTestEngine(GetParam(), (root_ / name).string(),
                                             StoreRocksEngineOptions());
    }
    return engine.get();
  }
  std::unique_ptr<Store> OpenStore(const std::string& name, uint64_t group = 5) {
    auto s = Store::Open(EngineFor(name), StoreOptions{.group = group});
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return std::move(s).value();
  }
  // Closes the engine `name`, keeping RocksDB's files. No store may be open
  // on it.
  void CloseEngine(const std::string& name) { engines_.erase(name); }
  // What a restart of the engine `name` leaves (no store may be open on
  // it): RocksDB reopened from its files; MemEngine crashed, which keeps at
  // least what was synced.
  void Restart(const std::string& name) {
    if (GetParam() == EngineKind::kMem) {
      static_cast<storage::MemEngine*>(EngineFor(name))->Crash(crash_random_);
      return;
    }
    CloseEngine(name);
  }
  // Drops the engine `name` and everything in it.
  void Discard(const std::string& name) {
    CloseEngine(name);
    fs::remove_all(root_ / name);
  }

  // Fills a store with puts, overwrites, deletes and a compaction.
  static void Populate(Store* store, int keys, uint64_t seed) {
    SeededRandom rnd(seed);
    uint64_t index = store->AppliedIndex();
    for (int round = 0; round < 3; ++round) {
      auto batch = store->NewBatch();
      for (int i = 0; i < keys; ++i) {
        std::string key = "key/" + std::to_string(rnd.Uniform(static_cast<uint64_t>(keys)));
        if (rnd.OneIn(5)) {
          ASSERT_TRUE(batch->DeleteRange(DeleteRangeRequest{.key = key}).ok());
        } else {
          std::string value(rnd.Uniform(300), static_cast<char>('a' + rnd.Uniform(26)));
          ASSERT_TRUE(batch->Put(PutRequest{.key = key, .value = value}).ok());
        }
      }
      batch->SetApplied(++index, 7);
      ASSERT_TRUE(store->Commit(std::move(batch)).ok());
    }
    auto batch = store->NewBatch();
    ASSERT_TRUE(batch->Compact(CompactionRequest{.revision = store->CurrentRevision() - 5}).ok());
    batch->SetApplied(++index, 7);
    ASSERT_TRUE(store->Commit(std::move(batch)).ok());
  }

  static RangeResponse All(Store* store, int64_t rev = 0) {
    auto r = store->Range(RangeRequest{
        .key = std::string(1, '\0'), .range_end = std::string(1, '\0'), .revision = rev});
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : RangeResponse{};
  }

  static void ExpectSameState(Store* a, Store* b) {
    EXPECT_EQ(a->CurrentRevision(), b->CurrentRevision());
    EXPECT_EQ(a->CompactRevision(), b->CompactRevision());
    EXPECT_EQ(a->AppliedIndex(), b->AppliedIndex());
    RangeResponse ra = All(a);
    RangeResponse rb = All(b);
    ASSERT_EQ(ra.kvs.size(), rb.kvs.size());
    for (size_t i = 0; i < ra.kvs.size(); ++i)
      EXPECT_EQ(ra.kvs[i], rb.kvs[i]);
    // History after the compacted revision travels too.
    const int64_t rev = a->CompactRevision() + 1;
    RangeResponse ha = All(a, rev);
    RangeResponse hb = All(b, rev);
    EXPECT_EQ(ha.count, hb.count);
    auto ea = a->Events(rev, 0, 0);
    auto eb = b->Events(rev, 0, 0);
    ASSERT_TRUE(ea.ok() && eb.ok());
    EXPECT_EQ(*ea, *eb);
  }

  // Streams the source's snapshot through a receiver into `dir` on `fsys`.
  static Result<std::string> Stream(Store* source, storage::FileSystem* fsys,
                                    const std::string& dir, size_t chunk_bytes,
                                    int crash_after_chunks = -1) {
    ASSIGN_OR_RETURN(auto writer, SnapshotWriter::Create(source, chunk_bytes));
    SnapshotReceiver receiver(fsys, dir, writer->id());
    std::string chunk;
    int sent = 0;
    while (true) {
      ASSIGN_OR_RETURN(bool more, writer->Next(&chunk));
      if (!more) break;
      if (sent++ == crash_after_chunks) return Status::Aborted("crash");
      RETURN_IF_ERROR(receiver.Add(chunk));
    }
    return receiver.Finish();
  }

  fs::path root_;
  SeededRandom crash_random_{77};
  // Before source_, which uses one of them.
  std::map<std::string, std::unique_ptr<storage::Engine>> engines_;
  std::unique_ptr<Store> source_;
};

// Needs RocksDB: a child process installs into the store's files.
using SnapshotKillTest = SnapshotTest;

TEST_P(SnapshotTest, ChunkRoundTripAndChecks) {
  SnapshotChunk c{.id = {1, 2, 3},
                  .seq = 4,
                  .last = true,
                  .total_records = 2,
                  .records = {{"a", "1"}, {std::string("b\0c", 3), ""}}};
  std::string bytes = EncodeChunk(c);
  auto d = DecodeChunk(bytes);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->id, c.id);
  EXPECT_EQ(d->seq, 4u);
  EXPECT_TRUE(d->last);
  EXPECT_EQ(d->records, c.records);
  for (size_t i = 0; i < bytes.size(); ++i) {
    std::string bad = bytes;
    bad[i] ^= 0x20;
    EXPECT_FALSE(DecodeChunk(bad).ok()) << "flip at " << i;
  }
  for (size_t n = 0; n < bytes.size(); ++n)
    EXPECT_FALSE(DecodeChunk(bytes.substr(0, n)).ok());
}

TEST_P(SnapshotTest, DecodeSurvivesRandomBytes) {
  SeededRandom rnd(17);
  for (int i = 0; i < 20000; ++i) {
    std::string junk(rnd.Uniform(120), '\0');
    for (char& ch : junk)
      ch = static_cast<char>(rnd.Next());
    if (rnd.OneIn(2) && junk.size() >= 4) junk.replace(0, 4, "CVSN");
    (void)DecodeChunk(junk);
  }
}

TEST_P(SnapshotTest, StreamInstallAndContinue) {
  Populate(source_.get(), 200, 1);
  auto posix = storage::NewPosixFileSystem();
  auto path = Stream(source_.get(), posix.get(), (root_ / "staging").string(), 4096);
  ASSERT_TRUE(path.ok()) << path.status().ToString();
  auto target = OpenStore("target");
  // The target holds unrelated state that the snapshot must replace.
  Populate(target.get(), 50, 99);
  ASSERT_TRUE(InstallSnapshot(target.get(), posix.get(), *path).ok());
  ExpectSameState(source_.get(), target.get());
  // Restart from the installed snapshot, then apply the log tail.
  target.reset();
  Restart("target");
  target = OpenStore("target");
  ExpectSameState(source_.get(), target.get());
  for (Store* s : {source_.get(), target.get()}) {
    auto b = s->NewBatch();
    ASSERT_TRUE(b->Put(PutRequest{.key = "after", .value = "tail"}).ok());
    b->SetApplied(s->AppliedIndex() + 1, 7);
    ASSERT_TRUE(s->Commit(std::move(b)).ok());
  }
  ExpectSameState(source_.get(), target.get());
}

// A saved snapshot file (Maintenance.Snapshot's stream): the .snap image,
// zero padding to 512 bytes, its SHA-256. Decoding returns the image, and
// refuses a wrong digest, stray bytes in the padding and a bare image.
TEST_P(SnapshotTest, SavedSnapshotFileRoundTripAndChecks) {
  Populate(source_.get(), 50, 1);
  auto posix = storage::NewPosixFileSystem();
  auto path = Stream(source_.get(), posix.get(), (root_ / "staging").string(), 1024);
  ASSERT_TRUE(path.ok()) << path.status().ToString();
  auto image = posix->ReadFile(*path);
  ASSERT_TRUE(image.ok());
  std::string body = *image + SavedSnapshotPadding(image->size());
  ASSERT_EQ(body.size() % kSavedSnapshotAlign, 0u);
  const std::string saved = body + Sha256Digest(body);

  auto decoded = DecodeSavedSnapshot(saved);
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(*decoded, *image);

  std::string flipped = saved;
  flipped[10] ^= 0x01;
  EXPECT_EQ(DecodeSavedSnapshot(flipped).status().code(), StatusCode::kCorruption);
  if (body.size() > image->size()) {
    std::string stray = body;
    stray.back() = 'x';
    EXPECT_EQ(DecodeSavedSnapshot(stray + Sha256Digest(stray)).status().code(),
              StatusCode::kCorruption);
  }
  EXPECT_FALSE(DecodeSavedSnapshot(*image).ok());
  EXPECT_FALSE(DecodeSavedSnapshot("").ok());
}

TEST_P(SnapshotTest, OtherGroupsAreUntouched) {
  Populate(source_.get(), 30, 3);
  auto posix = storage::NewPosixFileSystem();
  auto path = Stream(source_.get(), posix.get(), (root_ / "staging").string(), 1 << 20);
  ASSERT_TRUE(path.ok());
  // Group 5 and group 6 share one engine; installing group 5 leaves 6 alone.
  auto target5 = OpenStore("shared", 5);
  target5.reset();
  {
    auto target6 = OpenStore("shared", 6);
    Populate(target6.get(), 20, 4);
    const RangeResponse before = All(target6.get());
    target6.reset();
    auto t5 = OpenStore("shared", 5);
    ASSERT_TRUE(InstallSnapshot(t5.get(), posix.get(), *path).ok());
    ExpectSameState(source_.get(), t5.get());
    t5.reset();
    target6 = OpenStore("shared", 6);
    EXPECT_EQ(All(target6.get()).kvs, before.kvs);
  }
}

TEST_P(SnapshotTest, CorruptionIsRefusedAndNamesTheOffset) {
  Populate(source_.get(), 100, 5);
  storage::FaultInjectionFileSystem fsys(1);
  auto path = Stream(source_.get(), &fsys, "staging", 2048);
  ASSERT_TRUE(path.ok()) << path.status().ToString();
  auto size = fsys.FileSize(*path);
  ASSERT_TRUE(size.ok());
  auto target = OpenStore("target");
  Populate(target.get(), 10, 6);
  const RangeResponse before = All(target.get());
  SeededRandom rnd(8);
  for (int i = 0; i < 50; ++i) {
    const uint64_t offset = rnd.Uniform(*size);
    ASSERT_TRUE(fsys.CorruptByte(*path, offset, 0x10).ok());
    Status s = InstallSnapshot(target.get(), &fsys, *path);
    EXPECT_EQ(s.code(), StatusCode::kCorruption) << s.ToString();
    EXPECT_NE(s.message().find("offset"), std::string::npos) << s.message();
    ASSERT_TRUE(fsys.CorruptByte(*path, offset, 0x10).ok());  // flip back
    EXPECT_EQ(All(target.get()).kvs, before.kvs);
  }
  EXPECT_TRUE(InstallSnapshot(target.get(), &fsys, *path).ok());
}

// Crashes the receiving side at random points, losing or tearing whatever
// was not yet synced: a snapshot file either survives whole and installs to
// the source's exact state, or does not exist and nothing is installed.
TEST_P(SnapshotTest, CrashConsistencyOfReceiveAndInstall) {
  Populate(source_.get(), 120, 9);
  auto target = OpenStore("target");
  Populate(target.get(), 10, 10);
  const RangeResponse before = All(target.get());
  const int64_t before_rev = target->CurrentRevision();
  SeededRandom rnd(11);
  int installed = 0;
  int discarded = 0;
  constexpr int kCrashPoints = 1000;
  for (int i = 0; i < kCrashPoints; ++i) {
    storage::FaultInjectionFileSystem fsys(1000 + i);
    const size_t chunk_bytes = 256 + rnd.Uniform(4096);
    // -1: never crash mid-stream; the crash then hits after Finish.
    const int crash_after = rnd.OneIn(4) ? -1 : static_cast<int>(rnd.Uniform(40));
    if (!rnd.OneIn(3)) {
      if (rnd.OneIn(2)) fsys.FailWritesAfter(rnd.Uniform(30));
    }
    auto path = Stream(source_.get(), &fsys, "staging", chunk_bytes, crash_after);
    fsys.Crash(storage::CrashOptions{.tear_unsynced_writes = rnd.OneIn(2),
                                     .junk_after_tear = rnd.OneIn(2)});
    fsys.ClearFaults();
    ASSERT_TRUE(RemoveStaleParts(&fsys, "staging").ok());
    auto names = fsys.ListDir("staging");
    std::vector<std::string> snaps = names.ok() ? *names : std::vector<std::string>{};
    if (path.ok()) {
      // Finish returned: the file must have survived the crash.
      ASSERT_EQ(snaps.size(), 1u);
    }
    if (snaps.empty()) {
      ++discarded;
      EXPECT_EQ(All(target.get()).kvs, before.kvs);
      EXPECT_EQ(target->CurrentRevision(), before_rev);
      continue;
    }
    ASSERT_EQ(snaps.size(), 1u);
    Status s = InstallSnapshot(target.get(), &fsys, storage::JoinPath("staging", snaps[0]));
    ASSERT_TRUE(s.ok()) << s.ToString();
    ExpectSameState(source_.get(), target.get());
    ++installed;
    // Put the target back for the next round.
    target.reset();
    Discard("target");
    target = OpenStore("target");
    Populate(target.get(), 10, 10);
  }
  EXPECT_GT(installed, 50);
  EXPECT_GT(discarded, 50);
  std::printf("crash points: %d installed, %d discarded\n", installed, discarded);
}

// The child half of the next test: when this binary starts with
// CONCLAVE_INSTALL_STORE and CONCLAVE_INSTALL_SNAPSHOT set, it installs the
// snapshot into the store and exits before any test runs.
int InstallChildIfAsked() {
  const char* store_dir = std::getenv("CONCLAVE_INSTALL_STORE");
  const char* snap = std::getenv("CONCLAVE_INSTALL_SNAPSHOT");
  if (store_dir == nullptr || snap == nullptr) return 0;
  auto engine = storage::OpenRocksEngine(store_dir, StoreRocksEngineOptions());
  if (!engine.ok()) _exit(2);
  auto store = Store::Open(engine->get(), StoreOptions{.group = 5});
  if (!store.ok()) _exit(2);
  auto posix = storage::NewPosixFileSystem();
  // Tell the parent the install starts now, so its kill lands inside it.
  if (const char* fd = std::getenv("CONCLAVE_INSTALL_READY_FD")) {
    if (write(std::atoi(fd), "go", 2) != 2) _exit(3);
  }
  _exit(InstallSnapshot(store->get(), posix.get(), snap).ok() ? 0 : 4);
}
const int kInstallChild = InstallChildIfAsked();

// Kills (SIGKILL) a process in the middle of installing a snapshot, at
// random moments across the install: the store must afterwards hold either
// its old state or exactly the snapshot's, never a mix.
TEST_P(SnapshotKillTest, InstallKilledAtAnyPointLeavesOldOrNew) {
  Populate(source_.get(), 3000, 21);
  auto posix = storage::NewPosixFileSystem();
  auto path = Stream(source_.get(), posix.get(), (root_ / "staging").string(), 64 << 10);
  ASSERT_TRUE(path.ok()) << path.status().ToString();
  const RangeResponse want = All(source_.get());
  const std::string target_dir = (root_ / "target").string();

  // Runs the child; kills it `kill_after` after it reports the install
  // starting (never, if negative). Returns how long the install ran.
  auto run_child = [&](std::chrono::microseconds kill_after) {
    int pipe_fds[2];
    CHECK(pipe(pipe_fds) == 0);
    const pid_t pid = fork();
    if (pid == 0) {
      close(pipe_fds[0]);
      setenv("CONCLAVE_INSTALL_STORE", target_dir.c_str(), 1);
      setenv("CONCLAVE_INSTALL_SNAPSHOT", path->c_str(), 1);
      setenv("CONCLAVE_INSTALL_READY_FD", std::to_string(pipe_fds[1]).c_str(), 1);
      execl("/proc/self/exe", "snapshot_test", static_cast<char*>(nullptr));
      _exit(127);
    }
    close(pipe_fds[1]);
    char buf[2];
    const bool started = read(pipe_fds[0], buf, 2) == 2;
    const auto start = std::chrono::steady_clock::now();
    if (started && kill_after.count() >= 0) {
      std::this_thread::sleep_for(kill_after);
      kill(pid, SIGKILL);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    close(pipe_fds[0]);
    return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() -
                                                                 start);
  };

  // How long an install takes, unkilled.
  fs::remove_all(target_dir);
  const auto whole = run_child(std::chrono::microseconds(-1));
  {
    auto target = OpenStore("target");
    ExpectSameState(source_.get(), target.get());
  }
  CloseEngine("target");

  SeededRandom rnd(5);
  int old_state = 0;
  int new_state = 0;
  for (int i = 0; i < 24; ++i) {
    fs::remove_all(target_dir);
    RangeResponse before;
    {
      auto target = OpenStore("target");
      Populate(target.get(), 40, 100 + i);
      before = All(target.get());
    }
    CloseEngine("target");  // the child opens it
    (void)run_child(std::chrono::microseconds(rnd.Uniform(whole.count() + 1)));
    auto target = OpenStore("target");
    const RangeResponse after = All(target.get());
    if (after.kvs == want.kvs) {
      ExpectSameState(source_.get(), target.get());
      ++new_state;
    } else {
      EXPECT_EQ(after.kvs, before.kvs) << "a mix of old and new state after kill " << i;
      ++old_state;
    }
    target.reset();
    CloseEngine("target");
  }
  std::printf("killed installs: %d old state, %d new state (whole run %lld us)\n", old_state,
              new_state, static_cast<long long>(whole.count()));
}

INSTANTIATE_TEST_SUITE_P(Engines, SnapshotTest,
                         ::testing::Values(EngineKind::kRocks, EngineKind::kMem),
                         [](const ::testing::TestParamInfo<EngineKind>& info) {
                           return storage::test::EngineKindName(info.param);
                         });
INSTANTIATE_TEST_SUITE_P(Engines, SnapshotKillTest, ::testing::Values(EngineKind::kRocks),
                         [](const ::testing::TestParamInfo<EngineKind>& info) {
                           return storage::test::EngineKindName(info.param);
                         });

}  // namespace
}  // namespace conclave::mvcc
