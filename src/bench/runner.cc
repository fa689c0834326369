#include "bench/runner.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace conclave::bench {

namespace {

// Longest single sleep of a paced worker, so that a stop request is seen soon.
constexpr Duration kPacerSleepMax = std::chrono::milliseconds(100);
constexpr Duration kProgressInterval = std::chrono::seconds(1);

std::string RandomLetters(Random& random, size_t n) {
  std::string out(n, 'a');
  for (char& c : out)
    c = static_cast<char>('a' + random.Uniform(26));
  return out;
}

double Seconds(Duration d) {
  return std::chrono::duration<double>(d).count();
}

}  // namespace

// ---- Connections -----------------------------------------------------------

Result<std::unique_ptr<Connections>> Connections::Open(const BenchOptions& options) {
  auto out = std::make_unique<Connections>();
  const bool native =
      options.workload == Workload::kNativePut || options.workload == Workload::kNativeGet;
  const size_t n = options.endpoints.size();
  for (int i = 0; i < options.conns; ++i) {
    client::ClientOptions c;
    // Connection i talks to endpoint i mod n. The native workloads' also
    // know the others, where they route each key to its range's leader.
    c.endpoints = {options.endpoints[static_cast<size_t>(i) % n]};
    for (size_t k = 1; native && k < n; ++k) {
      c.endpoints.push_back(options.endpoints[(static_cast<size_t>(i) + k) % n]);
    }
    c.dial_timeout = options.dial_timeout;
    c.call_timeout = options.call_timeout;
    ASSIGN_OR_RETURN(std::unique_ptr<client::Client> client, client::Client::Connect(c));
    out->clients_.push_back(std::move(client));
  }
  return out;
}

// ---- Worker ----------------------------------------------------------------

Worker::Worker(int id, client::Client* client, const BenchOptions& options, size_t counters)
    : id(id),
      client(client),
      random(options.seed + static_cast<uint64_t>(id)),
      counters(counters, 0) {
  value = RandomLetters(random, static_cast<size_t>(options.val_size));
}

// ---- OpPacer ---------------------------------------------------------------

OpPacer::OpPacer(const BenchOptions& options, const RunEnv& env)
    : options_(options),
      env_(env),
      start_(env.clock->Monotonic()),
      deadline_(options.duration.count() > 0 ? start_ + options.duration : Duration::max()) {}

bool OpPacer::End() {
  over_.store(true, std::memory_order_relaxed);
  return false;
}

bool OpPacer::Next(uint64_t* index) {
  if (over_.load(std::memory_order_relaxed)) return false;
  const uint64_t i = next_.fetch_add(1, std::memory_order_relaxed);
  if (options_.total > 0 && i >= options_.total) return End();
  if (options_.rate > 0) {
    const double offset_nanos = static_cast<double>(i) * 1e9 / options_.rate;
    // Beyond 10^18 ns (31 years) the op would never be due.
    if (offset_nanos >= 1e18) return End();
    const Duration due = start_ + Duration(static_cast<int64_t>(offset_nanos));
    if (due >= deadline_) return End();
    for (Duration now = env_.clock->Monotonic(); now < due; now = env_.clock->Monotonic()) {
      if (env_.stop_requested() || over_.load(std::memory_order_relaxed)) return End();
      std::this_thread::sleep_for(std::min(due - now, kPacerSleepMax));
    }
  }
  if (env_.clock->Monotonic() >= deadline_ || env_.stop_requested()) return End();
  *index = i;
  return true;
}

// ---- ProgressPrinter -------------------------------------------------------

ProgressPrinter::ProgressPrinter(const RunEnv& env, std::string label,
                                 std::function<std::pair<uint64_t, uint64_t>()> sample)
    : env_(env),
      label_(std::move(label)),
      sample_(std::move(sample)),
      start_(env.clock->Monotonic()),
      last_time_(start_) {
  if (env_.progress != nullptr) thread_ = std::thread([this] { Run(); });
}

ProgressPrinter::~ProgressPrinter() {
  {
    std::lock_guard lock(mu_);
    done_ = true;
    cv_.notify_all();
  }
  if (thread_.joinable()) {
    thread_.join();
    Print(/*last=*/true);
  }
}

void ProgressPrinter::Run() {
  std::unique_lock lock(mu_);
  while (!cv_.wait_for(lock, kProgressInterval, [&] { return done_; })) {
    lock.unlock();
    Print(/*last=*/false);
    lock.lock();
  }
}

void ProgressPrinter::Print(bool last) {
  const Duration now = env_.clock->Monotonic();
  const auto [done, failed] = sample_();
  const double interval = Seconds(now - last_time_);
  const double rate = interval > 0 ? static_cast<double>(done - last_done_) / interval : 0;
  last_time_ = now;
  last_done_ = done;
  const std::string line = fmt::format("{}: {:.0f}s  {} ok  {} errors  {:.0f}/s", label_,
                                       Seconds(now - start_), done, failed, rate);
  if (env_.progress_in_place) {
    fmt::print(env_.progress, "\r{}\x1b[K{}", line, last ? "\n" : "");
  } else if (!last) {
    fmt::print(env_.progress, "{}\n", line);
  }
  std::fflush(env_.progress);
}

// ---- RunOps ----------------------------------------------------------------

namespace {

void WorkerLoop(const RunEnv& env, OpPacer& pacer, OpWorkload& workload, Worker& w) {
  uint64_t index = 0;
  while (pacer.Next(&index)) {
    const Duration t0 = env.clock->Monotonic();
    OpResult r = workload.Op(w, index);
    const Duration t1 = env.clock->Monotonic();
    if (!r.status.ok()) {
      w.errors.Add(r.status);
      w.failed.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    const int64_t nanos = r.latency_nanos >= 0 ? r.latency_nanos : (t1 - t0).count();
    w.latency.Record(static_cast<uint64_t>(std::max<int64_t>(nanos, 0)));
    w.succeeded.fetch_add(1, std::memory_order_relaxed);
  }
}

}  // namespace

Result<Report> RunOps(const BenchOptions& options, const RunEnv& env, Connections& connections,
                      OpWorkload& workload,
                      std::function<std::pair<uint64_t, uint64_t>()> progress_sample) {
  const std::vector<std::string> counter_names = workload.counter_names();
  std::vector<std::unique_ptr<Worker>> workers;
  for (int i = 0; i < options.clients; ++i) {
    workers.push_back(std::make_unique<Worker>(i, &connections.ForThread(static_cast<size_t>(i)),
                                               options, counter_names.size()));
    RETURN_IF_ERROR(workload.SetupWorker(*workers.back()));
  }
  if (!progress_sample) {
    progress_sample = [&workers] {
      std::pair<uint64_t, uint64_t> sum{0, 0};
      for (const auto& w : workers) {
        sum.first += w->succeeded.load(std::memory_order_relaxed);
        sum.second += w->failed.load(std::memory_order_relaxed);
      }
      return sum;
    };
  }

  OpPacer pacer(options, env);
  {
    ProgressPrinter progress(env, std::string(WorkloadName(options.workload)), progress_sample);
    std::vector<std::thread> threads;
    for (auto& w : workers)
      threads.emplace_back([&, worker = w.get()] { WorkerLoop(env, pacer, workload, *worker); });
    for (std::thread& t : threads)
      t.join();
  }

  Report report;
  report.workload = std::string(WorkloadName(options.workload));
  report.clients = options.clients;
  report.conns = options.conns;
  report.seconds = Seconds(env.clock->Monotonic() - pacer.start());
  report.latency_label = workload.latency_label();
  std::vector<uint64_t> counters(counter_names.size(), 0);
  for (const auto& w : workers) {
    report.ops += w->succeeded.load();
    report.errors.Merge(w->errors);
    report.latency.Merge(w->latency);
    for (size_t i = 0; i < counters.size(); ++i)
      counters[i] += w->counters[i];
  }
  for (size_t i = 0; i < counters.size(); ++i)
    report.details.emplace_back(counter_names[i], std::to_string(counters[i]));
  if (options.rate > 0)
    report.details.emplace_back("target rate", fmt::format("{}/s", options.rate));
  workload.Finish(&report);
  return report;
}

// ---- RunParallel -----------------------------------------------------------

Status RunParallel(const BenchOptions& options, const RunEnv& env, Connections& connections,
                   std::string_view label, uint64_t count,
                   const std::function<Status(client::Client&, uint64_t)>& fn) {
  std::atomic<uint64_t> next{0};
  std::atomic<uint64_t> done{0};
  std::atomic<bool> failed{false};
  std::mutex mu;
  Status first_error;  // guarded by mu
  const Duration start = env.clock->Monotonic();
  {
    ProgressPrinter progress(env, std::string(label), [&] {
      return std::pair<uint64_t, uint64_t>{done.load(), failed.load() ? 1 : 0};
    });
    const auto threads_count =
        static_cast<size_t>(std::min<uint64_t>(static_cast<uint64_t>(options.clients), count));
    std::vector<std::thread> threads;
    for (size_t t = 0; t < threads_count; ++t) {
      threads.emplace_back([&, t] {
        client::Client& client = connections.ForThread(t);
        for (uint64_t i = next.fetch_add(1); i < count; i = next.fetch_add(1)) {
          if (failed.load() || env.stop_requested()) return;
          Status s = fn(client, i);
          if (!s.ok()) {
            std::lock_guard lock(mu);
            if (first_error.ok()) first_error = std::move(s);
            failed.store(true);
            return;
          }
          done.fetch_add(1, std::memory_order_relaxed);
        }
      });
    }
    for (std::thread& t : threads)
      t.join();
  }
  if (!first_error.ok()) {
    return Status(first_error.code(), fmt::format("{}: {}", label, first_error.message()));
  }
  if (env.stop_requested()) return Status::Cancelled(fmt::format("{}: interrupted", label));
  if (env.progress != nullptr) {
    fmt::print(env.progress, "{}: {} done in {:.1f}s\n", label, count,
               Seconds(env.clock->Monotonic() - start));
  }
  return Status::Ok();
}

// ---- RunBench --------------------------------------------------------------

Result<Report> RunBench(const BenchOptions& options, const RunEnv& env) {
  ASSIGN_OR_RETURN(std::unique_ptr<Connections> connections, Connections::Open(options));
  std::unique_ptr<OpWorkload> workload;
  switch (options.workload) {
    case Workload::kWatch:
      return RunWatch(options, env, *connections);
    case Workload::kLeaseKeepAlive:
      workload = NewLeaseKeepAliveWorkload(options, env, *connections);
      break;
    case Workload::kLock:
      workload = NewLockWorkload(options, env);
      break;
    case Workload::kPut:
    case Workload::kRange:
    case Workload::kTxnCas:
    case Workload::kMixed:
    case Workload::kNativePut:
    case Workload::kNativeGet:
      workload = NewKvWorkload(options, env, *connections);
      break;
  }
  RETURN_IF_ERROR(workload->Setup());
  return RunOps(options, env, *connections, *workload);
}

}  // namespace conclave::bench
