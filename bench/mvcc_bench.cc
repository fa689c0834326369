// Throughput of the MVCC store on RocksDB (docs/PERFORMANCE.md): puts applied
// in batches as the apply thread would, point and range reads at the current
// revision, and a 1M-key snapshot streamed and installed.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <filesystem>

#include "base/random.h"
#include "mvcc/mvcc.h"
#include "storage/storage.h"

namespace conclave::mvcc {
namespace {

namespace fs = std::filesystem;

std::string BenchDir(const std::string& name) {
  fs::path p =
      fs::temp_directory_path() / ("conclave-bench-" + std::to_string(::getpid()) + "-" + name);
  fs::remove_all(p);
  return p.string();
}

std::string Key(uint64_t i) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "key/%012llu", static_cast<unsigned long long>(i));
  return buf;
}

// A store on its own RocksDB engine, as a member runs it.
class BenchStore {
 public:
  explicit BenchStore(const std::string& dir)
      : engine_(std::move(storage::OpenRocksEngine(dir, StoreRocksEngineOptions())).value()),
        store_(std::move(Store::Open(engine_.get(), StoreOptions{.group = 1})).value()) {}

  Store* get() const { return store_.get(); }
  Store* operator->() const { return store_.get(); }
  // Closes the store, then its engine.
  void reset() {
    store_.reset();
    engine_.reset();
  }

 private:
  std::unique_ptr<storage::Engine> engine_;
  std::unique_ptr<Store> store_;
};

BenchStore OpenFresh(const std::string& dir) {
  return BenchStore(dir);
}

void Fill(Store* store, uint64_t keys, size_t value_bytes, uint64_t batch_size) {
  const std::string value(value_bytes, 'v');
  uint64_t index = store->AppliedIndex();
  for (uint64_t i = 0; i < keys;) {
    auto batch = store->NewBatch();
    for (uint64_t j = 0; j < batch_size && i < keys; ++j, ++i) {
      CHECK(batch->Put(PutRequest{.key = Key(i), .value = value}).ok());
    }
    batch->SetApplied(++index, 7);
    CHECK(store->Commit(std::move(batch)).ok());
  }
}

// state.range(0): puts per apply batch. 256-byte values over 100k keys.
void BM_Put(benchmark::State& state) {
  const std::string dir = BenchDir("put");
  auto store = OpenFresh(dir);
  SeededRandom rnd(1);
  const std::string value(256, 'v');
  const auto per_batch = static_cast<uint64_t>(state.range(0));
  uint64_t index = 0;
  for (auto _ : state) {
    auto batch = store->NewBatch();
    for (uint64_t j = 0; j < per_batch; ++j) {
      CHECK(batch->Put(PutRequest{.key = Key(rnd.Uniform(100000)), .value = value}).ok());
    }
    batch->SetApplied(++index, 7);
    CHECK(store->Commit(std::move(batch)).ok());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * per_batch));
  store.reset();
  fs::remove_all(dir);
}
BENCHMARK(BM_Put)->Arg(1)->Arg(16)->Arg(256);

// state.range(0): keys per range read, over 100k keys of 256 bytes.
void BM_Range(benchmark::State& state) {
  const std::string dir = BenchDir("range");
  auto store = OpenFresh(dir);
  Fill(store.get(), 100000, 256, 1000);
  SeededRandom rnd(2);
  const auto n = static_cast<uint64_t>(state.range(0));
  for (auto _ : state) {
    const uint64_t start = rnd.Uniform(100000 - n);
    RangeRequest r{.key = Key(start)};
    if (n > 1) r.range_end = Key(start + n);
    auto resp = store->Range(r);
    CHECK(resp.ok() && static_cast<uint64_t>(resp->kvs.size()) == n);
    benchmark::DoNotOptimize(resp);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * n));
  store.reset();
  fs::remove_all(dir);
}
BENCHMARK(BM_Range)->Arg(1)->Arg(100);

// Creates a snapshot of 1M keys of 256 bytes, streams it through a receiver
// into a staging file and installs it into an empty store.
void BM_Snapshot1M(benchmark::State& state) {
  const std::string src_dir = BenchDir("snap-src");
  const std::string dst_dir = BenchDir("snap-dst");
  const std::string staging = BenchDir("snap-staging");
  auto source = OpenFresh(src_dir);
  Fill(source.get(), 1'000'000, 256, 10000);
  auto posix = storage::NewPosixFileSystem();
  uint64_t bytes = 0;
  for (auto _ : state) {
    auto target = OpenFresh(dst_dir);
    auto writer = std::move(SnapshotWriter::Create(source.get(), 4 << 20)).value();
    SnapshotReceiver receiver(posix.get(), staging, writer->id());
    std::string chunk;
    bytes = 0;
    while (*writer->Next(&chunk)) {
      bytes += chunk.size();
      CHECK(receiver.Add(chunk).ok());
    }
    const std::string path = std::move(receiver.Finish()).value();
    CHECK(InstallSnapshot(target.get(), posix.get(), path).ok());
    CHECK(target->AppliedIndex() == source->AppliedIndex());
    target.reset();
    fs::remove_all(dst_dir);
    fs::remove_all(staging);
  }
  state.counters["snapshot_bytes"] = static_cast<double>(bytes);
  source.reset();
  fs::remove_all(src_dir);
}
BENCHMARK(BM_Snapshot1M)->Iterations(1)->Unit(benchmark::kSecond)->UseRealTime();

}  // namespace
}  // namespace conclave::mvcc

BENCHMARK_MAIN();
