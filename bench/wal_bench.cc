// Group commit of the write-ahead log on the real disk: 1, 16 and 256
// appenders, each appending batches of one 100-byte entry to its own group
// and waiting for each to be durable, as a node's driver does for a Ready.
//
// Reported per run: appends/s (acknowledged batches per second of wall time),
// syncs/s (data syncs per second) and appends/sync (how many batches one sync
// carried). A single appender pays a whole fdatasync per append, and that
// rate is all that 256 appenders would get if each synced on its own. Group
// commit lets appenders share a sync, so with 256 of them appends/s should
// be far above the single appender's.
//
// The log lives in a fresh directory under $WAL_BENCH_DIR (default: the
// system temp dir), removed afterwards. docs/WAL.md records the figures.
#include <benchmark/benchmark.h>
#include <stdlib.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "storage/storage.h"

namespace conclave::storage {
namespace {

constexpr size_t kEntryBytes = 100;

// Shared by the appender threads of one run; set up and torn down by thread 0
// (Google Benchmark starts the loop only when every thread has reached it).
struct SharedLog {
  std::string dir;
  std::unique_ptr<FileSystem> fs;
  std::unique_ptr<Wal> wal;
  WalStats before;
  std::chrono::steady_clock::time_point start;
};
SharedLog* shared = nullptr;

std::string MakeTempDir() {
  const char* base = std::getenv("WAL_BENCH_DIR");
  std::string pattern =
      ((base != nullptr && *base != '\0') ? std::filesystem::path(base)
                                          : std::filesystem::temp_directory_path()) /
      "conclave-wal-bench-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) return std::string();
  return pattern;
}

void BM_WalAppend(benchmark::State& state) {
  if (state.thread_index() == 0) {
    shared = new SharedLog;
    shared->dir = MakeTempDir();
    shared->fs = NewPosixFileSystem();
    auto wal = Wal::Open(shared->fs.get(), JoinPath(shared->dir, "wal"));
    if (!wal.ok()) {
      state.SkipWithError(wal.status().ToString().c_str());
    } else {
      shared->wal = std::move(wal).value();
      shared->before = shared->wal->stats();
    }
    shared->start = std::chrono::steady_clock::now();
  }
  const auto group = static_cast<raft::GroupId>(state.thread_index());
  std::vector<raft::Entry> entry(1);
  entry[0].term = 1;
  entry[0].data = std::string(kEntryBytes, 'x');
  uint64_t index = 0;
  for (auto _ : state) {
    if (shared->wal == nullptr) break;
    entry[0].index = ++index;
    WalBatch batch;
    batch.AddEntries(group, entry);
    const Status s = shared->wal->Append(batch);
    if (!s.ok()) {
      state.SkipWithError(s.ToString().c_str());
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
  if (state.thread_index() == 0) {
    if (shared->wal != nullptr) {
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - shared->start).count();
      const WalStats after = shared->wal->stats();
      const auto appends = static_cast<double>(after.appends - shared->before.appends);
      const auto syncs = static_cast<double>(after.syncs - shared->before.syncs);
      state.counters["appends/s"] = appends / seconds;
      state.counters["syncs/s"] = syncs / seconds;
      state.counters["appends/sync"] = syncs > 0 ? appends / syncs : 0;
    }
    shared->wal.reset();
    std::error_code ignored;
    if (!shared->dir.empty()) std::filesystem::remove_all(shared->dir, ignored);
    delete shared;
    shared = nullptr;
  }
}

BENCHMARK(BM_WalAppend)->Threads(1)->Threads(16)->Threads(256)->UseRealTime()->MinTime(2.0);

}  // namespace
}  // namespace conclave::storage

BENCHMARK_MAIN();
