// Inside src/bench: the machinery the workloads share. Connections, the
// per-thread Worker, the pacer that bounds and paces the measured phase,
// parallel setup loops and the progress printer. Not part of the module's
// interface (bench.h).
//
// Ownership: RunBench owns the Connections for the whole run; workloads and
// the streams and keep-alive loops they open must end before it is destroyed
// (client.h: a stream must be destroyed before its Client).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/random.h"
#include "bench/bench.h"
#include "client/client.h"

namespace conclave::bench {

// Wait after the last put for watch events still on their way.
inline constexpr std::chrono::seconds kWatchDrainTimeout{5};

// One Client per connection; connection i talks to endpoint i % endpoints.
class Connections {
 public:
  static Result<std::unique_ptr<Connections>> Open(const BenchOptions& options);
  size_t size() const { return clients_.size(); }
  client::Client& ForThread(size_t thread) { return *clients_[thread % clients_.size()]; }

 private:
  std::vector<std::unique_ptr<client::Client>> clients_;
};

// What one benchmark thread owns. Only its thread touches it during the
// measured phase, except the two atomics the progress printer reads.
struct Worker {
  Worker(int id, client::Client* client, const BenchOptions& options, size_t counters);

  const int id;
  client::Client* const client;
  SeededRandom random;
  // val_size random letters, reused for every write.
  std::string value;
  LatencyHistogram latency;
  ErrorCounts errors;
  // Workload-specific counts, named by OpWorkload::counter_names().
  std::vector<uint64_t> counters;
  // The lease the lock workload holds its locks with.
  int64_t lease = 0;
  std::atomic<uint64_t> succeeded{0};
  std::atomic<uint64_t> failed{0};
};

struct OpResult {
  Status status;
  // The latency to record; negative: the runner's timing of the whole op.
  int64_t latency_nanos = -1;
};

// A workload made of independent ops issued by the worker threads.
class OpWorkload {
 public:
  virtual ~OpWorkload() = default;
  virtual std::string latency_label() const { return "request"; }
  virtual std::vector<std::string> counter_names() const { return {}; }
  // Once, before the measured phase (not timed).
  virtual Status Setup() { return Status::Ok(); }
  // Once per worker, before the measured phase, on the caller's thread.
  virtual Status SetupWorker(Worker&) { return Status::Ok(); }
  // One op; `index` counts ops across all workers from 0.
  virtual OpResult Op(Worker& worker, uint64_t index) = 0;
  // After the measured phase; may add details to the report.
  virtual void Finish(Report*) {}
};

// Hands out op indexes to the workers until the run is over, each no earlier
// than its time under --rate. Thread-safe.
class OpPacer {
 public:
  OpPacer(const BenchOptions& options, const RunEnv& env);
  // The next op's index, after waiting for its turn; false once the run is
  // over (total reached, deadline passed, or stop requested).
  bool Next(uint64_t* index);
  Duration start() const { return start_; }

 private:
  bool End();

  const BenchOptions& options_;
  const RunEnv& env_;
  const Duration start_;
  const Duration deadline_;  // Duration::max() when not bounded by time
  std::atomic<uint64_t> next_{0};
  std::atomic<bool> over_{false};
};

// Prints a progress line about once a second from a thread of its own until
// destroyed. `sample` returns (succeeded, failed) so far and must be
// thread-safe.
class ProgressPrinter {
 public:
  ProgressPrinter(const RunEnv& env, std::string label,
                  std::function<std::pair<uint64_t, uint64_t>()> sample);
  ~ProgressPrinter();
  ProgressPrinter(const ProgressPrinter&) = delete;
  ProgressPrinter& operator=(const ProgressPrinter&) = delete;

 private:
  void Run();
  void Print(bool last);

  const RunEnv& env_;
  const std::string label_;
  const std::function<std::pair<uint64_t, uint64_t>()> sample_;
  const Duration start_;
  Duration last_time_;
  uint64_t last_done_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;  // guarded by mu_
  std::thread thread_;
};

// Runs the measured phase of `workload` with options.clients workers and
// returns its report (without workload details; Finish adds those).
// `progress_sample` replaces the workers' op counts in the progress line when
// set (watch reports events, not puts).
Result<Report> RunOps(const BenchOptions& options, const RunEnv& env, Connections& connections,
                      OpWorkload& workload,
                      std::function<std::pair<uint64_t, uint64_t>()> progress_sample = {});

// Calls fn(client, i) for every i in [0, count) from options.clients
// threads; stops at the first error and returns it. For setup and cleanup.
Status RunParallel(const BenchOptions& options, const RunEnv& env, Connections& connections,
                   std::string_view label, uint64_t count,
                   const std::function<Status(client::Client&, uint64_t)>& fn);

// Workload factories (one file each).
std::unique_ptr<OpWorkload> NewKvWorkload(const BenchOptions& options, const RunEnv& env,
                                          Connections& connections);
std::unique_ptr<OpWorkload> NewLeaseKeepAliveWorkload(const BenchOptions& options,
                                                      const RunEnv& env, Connections& connections);
std::unique_ptr<OpWorkload> NewLockWorkload(const BenchOptions& options, const RunEnv& env);
// The watch workload is not a plain op loop: watchers, a writer, a drain.
Result<Report> RunWatch(const BenchOptions& options, const RunEnv& env, Connections& connections);

}  // namespace conclave::bench
