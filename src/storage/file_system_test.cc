// The FileSystem contract, checked against both implementations, and the
// fault-injection file system's crash and failure behaviour.
#include "storage/file_system.h"

#include <gtest/gtest.h>

#include <functional>

#include "storage/fault_injection_file_system.h"
#include "storage/test_util.h"

namespace conclave::storage {
namespace {

using test::TempDir;

struct FsCase {
  std::string name;
  std::function<std::unique_ptr<FileSystem>()> make;
};

class FileSystemContractTest : public ::testing::TestWithParam<FsCase> {
 protected:
  void SetUp() override {
    fs_ = GetParam().make();
    root_ = GetParam().name == "posix" ? temp_.path() : "/t";
    ASSERT_TRUE(fs_->CreateDirs(root_).ok());
  }
  std::string P(std::string_view name) const { return JoinPath(root_, name); }

  TempDir temp_;
  std::unique_ptr<FileSystem> fs_;
  std::string root_;
};

TEST_P(FileSystemContractTest, WriteReadAppendAndPositionalWrite) {
  auto file = fs_->OpenWritable(P("a"), OpenMode::kCreateNew);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  ASSERT_TRUE((*file)->Append("hello").ok());
  ASSERT_TRUE((*file)->Append(" world").ok());
  ASSERT_TRUE((*file)->WriteAt(0, "J").ok());
  ASSERT_TRUE((*file)->WriteAt(13, "!").ok());  // past the end: the gap reads as zeros
  EXPECT_EQ((*file)->Size(), 14u);
  ASSERT_TRUE((*file)->Sync().ok());
  ASSERT_TRUE((*file)->Close().ok());
  auto data = fs_->ReadFile(P("a"));
  ASSERT_TRUE(data.ok());
  EXPECT_EQ(*data, std::string("Jello world\0\0!", 14));
  auto part = fs_->ReadFileAt(P("a"), 6, 100);
  ASSERT_TRUE(part.ok());
  EXPECT_EQ(*part, std::string("world\0\0!", 8));
  EXPECT_EQ(*fs_->ReadFileAt(P("a"), 100, 5), "");
  EXPECT_EQ(*fs_->FileSize(P("a")), 14u);
}

TEST_P(FileSystemContractTest, OpenModes) {
  EXPECT_EQ(fs_->OpenWritable(P("x"), OpenMode::kOpenExisting).status().code(),
            StatusCode::kNotFound);
  {
    auto f = fs_->OpenWritable(P("x"), OpenMode::kCreateNew);
    ASSERT_TRUE(f.ok());
    ASSERT_TRUE((*f)->Append("abc").ok());
  }
  EXPECT_EQ(fs_->OpenWritable(P("x"), OpenMode::kCreateNew).status().code(),
            StatusCode::kAlreadyExists);
  {
    auto f = fs_->OpenWritable(P("x"), OpenMode::kOpenExisting);
    ASSERT_TRUE(f.ok());
    EXPECT_EQ((*f)->Size(), 3u);
    ASSERT_TRUE((*f)->Append("d").ok());  // appends after the existing bytes
  }
  EXPECT_EQ(*fs_->ReadFile(P("x")), "abcd");
  {
    auto f = fs_->OpenWritable(P("x"), OpenMode::kCreateOrTruncate);
    ASSERT_TRUE(f.ok());
    EXPECT_EQ((*f)->Size(), 0u);
  }
  EXPECT_EQ(*fs_->ReadFile(P("x")), "");
}

TEST_P(FileSystemContractTest, PreallocateAndTruncate) {
  auto f = fs_->OpenWritable(P("p"), OpenMode::kCreateNew);
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE((*f)->Append("abc").ok());
  ASSERT_TRUE((*f)->Preallocate(3, 4093).ok());
  // Preallocation is best effort, but both implementations here extend.
  EXPECT_EQ((*f)->Size(), 4096u);
  EXPECT_EQ(*fs_->FileSize(P("p")), 4096u);
  ASSERT_TRUE((*f)->WriteAt(3, "de").ok());
  EXPECT_EQ((*f)->Size(), 4096u);
  ASSERT_TRUE((*f)->Truncate(5).ok());
  EXPECT_EQ((*f)->Size(), 5u);
  ASSERT_TRUE((*f)->Close().ok());
  EXPECT_EQ(*fs_->ReadFile(P("p")), "abcde");
  EXPECT_FALSE((*f)->Append("x").ok());  // closed
}

TEST_P(FileSystemContractTest, DirectoryOperations) {
  ASSERT_TRUE(fs_->CreateDirs(P("d/e")).ok());
  ASSERT_TRUE(fs_->CreateDirs(P("d/e")).ok());  // idempotent
  for (const char* name : {"d/e/2", "d/e/1"}) {
    auto f = fs_->OpenWritable(P(name), OpenMode::kCreateNew);
    ASSERT_TRUE(f.ok());
  }
  auto names = fs_->ListDir(P("d/e"));
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(*names, (std::vector<std::string>{"1", "2"}));
  EXPECT_EQ(*fs_->ListDir(P("d")), std::vector<std::string>{"e"});
  ASSERT_TRUE(fs_->Rename(P("d/e/1"), P("d/e/3")).ok());
  EXPECT_FALSE(*fs_->Exists(P("d/e/1")));
  EXPECT_TRUE(*fs_->Exists(P("d/e/3")));
  EXPECT_TRUE(*fs_->Exists(P("d/e")));
  ASSERT_TRUE(fs_->RemoveFile(P("d/e/3")).ok());
  EXPECT_EQ(fs_->RemoveFile(P("d/e/3")).code(), StatusCode::kNotFound);
  ASSERT_TRUE(fs_->SyncDir(P("d/e")).ok());
  EXPECT_EQ(*fs_->ListDir(P("d/e")), std::vector<std::string>{"2"});
  EXPECT_EQ(fs_->ListDir(P("nope")).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(fs_->ReadFile(P("nope")).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(fs_->FileSize(P("nope")).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(fs_->OpenWritable(P("nope/x"), OpenMode::kCreateNew).status().code(),
            StatusCode::kNotFound);
}

INSTANTIATE_TEST_SUITE_P(
    Both, FileSystemContractTest,
    ::testing::Values(FsCase{"posix", [] { return NewPosixFileSystem(); }},
                      FsCase{"fault_injection",
                             [] { return std::make_unique<FaultInjectionFileSystem>(1); }}),
    [](const ::testing::TestParamInfo<FsCase>& info) { return info.param.name; });

TEST(JoinPathTest, AddsOneSlash) {
  EXPECT_EQ(JoinPath("a/b", "c"), "a/b/c");
  EXPECT_EQ(JoinPath("a/b/", "c"), "a/b/c");
  EXPECT_EQ(JoinPath("", "c"), "c");
}

// ---- FaultInjectionFileSystem ----

class FaultInjectionTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(fs_.CreateDirs("/d").ok()); }

  std::unique_ptr<WritableFile> Create(const std::string& path) {
    auto f = fs_.OpenWritable(path, OpenMode::kCreateNew);
    CHECK(f.ok());
    return std::move(f).value();
  }

  FaultInjectionFileSystem fs_{42};
};

TEST_F(FaultInjectionTest, CrashDropsUnsyncedDataButKeepsSynced) {
  auto f = Create("/d/f");
  ASSERT_TRUE(fs_.SyncDir("/d").ok());
  ASSERT_TRUE(f->Append("durable").ok());
  ASSERT_TRUE(f->Sync().ok());
  ASSERT_TRUE(f->Append("-volatile").ok());
  EXPECT_EQ(fs_.UnsyncedBytes(), 9u);
  EXPECT_EQ(*fs_.ReadFile("/d/f"), "durable-volatile");
  fs_.Crash();
  EXPECT_EQ(*fs_.ReadFile("/d/f"), "durable");
  EXPECT_EQ(fs_.UnsyncedBytes(), 0u);
  // The handle from before the crash is dead.
  EXPECT_EQ(f->Append("x").code(), StatusCode::kIOError);
  EXPECT_EQ(f->Sync().code(), StatusCode::kIOError);
}

TEST_F(FaultInjectionTest, UnsyncedDirectoryEntriesVanish) {
  auto f = Create("/d/new");
  ASSERT_TRUE(f->Append("data").ok());
  ASSERT_TRUE(f->Sync().ok());  // data synced, but the entry was never synced
  fs_.Crash();
  EXPECT_FALSE(*fs_.Exists("/d/new"));

  auto g = Create("/d/kept");
  ASSERT_TRUE(g->Append("data").ok());
  ASSERT_TRUE(g->Sync().ok());
  ASSERT_TRUE(fs_.SyncDir("/d").ok());
  ASSERT_TRUE(fs_.Rename("/d/kept", "/d/renamed").ok());
  ASSERT_TRUE(fs_.RemoveFile("/d/renamed").ok());
  fs_.Crash();
  // Neither the rename nor the remove was synced.
  EXPECT_EQ(*fs_.ReadFile("/d/kept"), "data");
  EXPECT_FALSE(*fs_.Exists("/d/renamed"));

  ASSERT_TRUE(fs_.Rename("/d/kept", "/d/renamed").ok());
  ASSERT_TRUE(fs_.SyncDir("/d").ok());
  fs_.Crash();
  EXPECT_FALSE(*fs_.Exists("/d/kept"));
  EXPECT_EQ(*fs_.ReadFile("/d/renamed"), "data");
}

TEST_F(FaultInjectionTest, UnsyncedTruncationAndPreallocationAreUndone) {
  auto f = Create("/d/f");
  ASSERT_TRUE(fs_.SyncDir("/d").ok());
  ASSERT_TRUE(f->Append("0123456789").ok());
  ASSERT_TRUE(f->Sync().ok());
  ASSERT_TRUE(f->Truncate(4).ok());
  ASSERT_TRUE(f->Preallocate(4, 100).ok());
  EXPECT_EQ(*fs_.FileSize("/d/f"), 104u);
  fs_.Crash();
  EXPECT_EQ(*fs_.ReadFile("/d/f"), "0123456789");
}

TEST_F(FaultInjectionTest, TornCrashKeepsAPrefixOfUnsyncedWrites) {
  // Across seeds, every outcome is a prefix of what was written, and both a
  // partial and a complete survival happen.
  const std::string durable = "synced|";
  const std::string pending = "first-write|second-write";
  bool saw_partial = false;
  bool saw_nothing = false;
  bool saw_everything = false;
  for (uint64_t seed = 0; seed < 200; ++seed) {
    FaultInjectionFileSystem fs(seed);
    ASSERT_TRUE(fs.CreateDirs("/d").ok());
    auto f = std::move(fs.OpenWritable("/d/f", OpenMode::kCreateNew)).value();
    ASSERT_TRUE(fs.SyncDir("/d").ok());
    ASSERT_TRUE(f->Append(durable).ok());
    ASSERT_TRUE(f->Sync().ok());
    ASSERT_TRUE(f->Append("first-write|").ok());
    ASSERT_TRUE(f->Append("second-write").ok());
    fs.Crash(CrashOptions{.tear_unsynced_writes = true});
    const std::string got = *fs.ReadFile("/d/f");
    ASSERT_GE(got.size(), durable.size());
    ASSERT_EQ(got, (durable + pending).substr(0, got.size())) << "seed " << seed;
    const size_t kept = got.size() - durable.size();
    saw_nothing |= kept == 0;
    saw_everything |= kept == pending.size();
    saw_partial |= kept > 0 && kept < pending.size() && kept != 12;
  }
  EXPECT_TRUE(saw_nothing);
  EXPECT_TRUE(saw_everything);
  EXPECT_TRUE(saw_partial);
}

TEST_F(FaultInjectionTest, JunkAfterTearStaysWithinTheTornWrite) {
  for (uint64_t seed = 0; seed < 100; ++seed) {
    FaultInjectionFileSystem fs(seed);
    ASSERT_TRUE(fs.CreateDirs("/d").ok());
    auto f = std::move(fs.OpenWritable("/d/f", OpenMode::kCreateNew)).value();
    ASSERT_TRUE(fs.SyncDir("/d").ok());
    ASSERT_TRUE(f->Append("keep").ok());
    ASSERT_TRUE(f->Sync().ok());
    ASSERT_TRUE(f->Append(std::string(50, 'w')).ok());
    fs.Crash(CrashOptions{.tear_unsynced_writes = true, .junk_after_tear = true});
    const std::string got = *fs.ReadFile("/d/f");
    ASSERT_EQ(got.substr(0, 4), "keep");
    ASSERT_LE(got.size(), 54u) << "seed " << seed;
  }
}

TEST_F(FaultInjectionTest, SameSeedSameCrash) {
  auto run = [](uint64_t seed) {
    FaultInjectionFileSystem fs(seed);
    CHECK(fs.CreateDirs("/d").ok());
    auto f = std::move(fs.OpenWritable("/d/f", OpenMode::kCreateNew)).value();
    CHECK(fs.SyncDir("/d").ok());
    for (int i = 0; i < 20; ++i)
      CHECK(f->Append(std::string(10, static_cast<char>('a' + i))).ok());
    fs.Crash(CrashOptions{.tear_unsynced_writes = true, .junk_after_tear = true});
    return std::move(fs.ReadFile("/d/f")).value();
  };
  EXPECT_EQ(run(5), run(5));
  EXPECT_EQ(run(6), run(6));
}

TEST_F(FaultInjectionTest, InjectedFailures) {
  auto f = Create("/d/f");
  fs_.FailNextWrite();
  EXPECT_EQ(f->Append("lost").code(), StatusCode::kIOError);
  EXPECT_EQ(*fs_.ReadFile("/d/f"), "");  // a failed write writes nothing
  ASSERT_TRUE(f->Append("ok").ok());

  fs_.FailNextSync();
  EXPECT_EQ(f->Sync().code(), StatusCode::kIOError);
  EXPECT_EQ(fs_.UnsyncedBytes(), 2u);  // still unsynced
  ASSERT_TRUE(f->Sync().ok());
  EXPECT_EQ(fs_.UnsyncedBytes(), 0u);

  fs_.FailNextSync();
  EXPECT_EQ(fs_.SyncDir("/d").code(), StatusCode::kIOError);

  fs_.FailWritesAfter(2);
  EXPECT_TRUE(f->Append("1").ok());
  EXPECT_TRUE(f->Append("2").ok());
  EXPECT_EQ(f->Append("3").code(), StatusCode::kIOError);
  EXPECT_EQ(f->WriteAt(0, "4").code(), StatusCode::kIOError);
  fs_.ClearFaults();
  EXPECT_TRUE(f->Append("5").ok());
  EXPECT_EQ(*fs_.ReadFile("/d/f"), "ok125");
}

TEST_F(FaultInjectionTest, CorruptByteChangesDurableContent) {
  auto f = Create("/d/f");
  ASSERT_TRUE(f->Append("abc").ok());
  EXPECT_EQ(fs_.CorruptByte("/d/f", 1, 0x01).code(), StatusCode::kFailedPrecondition);
  ASSERT_TRUE(f->Sync().ok());
  ASSERT_TRUE(fs_.SyncDir("/d").ok());
  ASSERT_TRUE(fs_.CorruptByte("/d/f", 1, 0x01).ok());
  EXPECT_EQ(*fs_.ReadFile("/d/f"), "acc");
  fs_.Crash();
  EXPECT_EQ(*fs_.ReadFile("/d/f"), "acc");
  EXPECT_EQ(fs_.CorruptByte("/d/f", 3, 0x01).code(), StatusCode::kOutOfRange);
}

}  // namespace
}  // namespace conclave::storage
