// The watch fan-out workload: options.watchers streams watch options.prefix
// while writers put under it; every event that reaches a watcher is one op,
// and its latency runs from the put's issue time (carried in the value) to
// the moment the watcher's thread has the event.
#include <fmt/format.h>

#include <charconv>

#include "base/coding.h"
#include "bench/runner.h"

namespace conclave::bench {

namespace {

namespace pb = ::etcdserverpb;
using std::chrono::milliseconds;

// How long a watcher waits for one response before it looks at `stopping`.
constexpr milliseconds kWatcherPoll{100};
constexpr milliseconds kDrainPoll{10};

// One watch stream and the thread that reads it. The histogram, the error
// counts and the last event time belong to the thread until Join().
class Watcher {
 public:
  Watcher(std::unique_ptr<client::WatchStream> stream, const RunEnv& env,
          const std::atomic<bool>* stopping)
      : stream_(std::move(stream)), env_(env), stopping_(stopping) {}
  ~Watcher() {
    Join();
    stream_->Close();
  }

  void Start() {
    thread_ = std::thread([this] { Run(); });
  }
  void Join() {
    if (thread_.joinable()) thread_.join();
  }

  uint64_t events() const { return events_.load(std::memory_order_relaxed); }
  const LatencyHistogram& latency() const { return latency_; }
  const ErrorCounts& errors() const { return errors_; }
  Duration last_event() const { return last_event_; }

 private:
  void Run() {
    pb::WatchResponse response;
    for (;;) {
      auto got = stream_->Next(kWatcherPoll, &response);
      if (!got.ok()) {
        if (!stopping_->load()) errors_.Add(got.status());
        return;
      }
      if (!*got) {
        if (stopping_->load()) return;
        continue;
      }
      const Duration now = env_.clock->Monotonic();
      if (response.canceled()) {
        errors_.Add(response.cancel_reason().empty() ? "watch canceled" : response.cancel_reason());
        return;
      }
      for (const mvccpb::Event& event : response.events()) {
        if (event.type() != mvccpb::Event::PUT) continue;
        const std::string& value = event.kv().value();
        uint64_t issued = 0;
        const char* begin = value.data();
        if (value.size() < kWatchValueSizeMin ||
            std::from_chars(begin, begin + kWatchValueSizeMin, issued, 16).ec != std::errc()) {
          continue;  // a put that is not the writer's
        }
        const int64_t nanos = now.count() - static_cast<int64_t>(issued);
        latency_.Record(static_cast<uint64_t>(std::max<int64_t>(nanos, 0)));
        events_.fetch_add(1, std::memory_order_relaxed);
        last_event_ = now;
      }
    }
  }

  std::unique_ptr<client::WatchStream> stream_;
  const RunEnv& env_;
  const std::atomic<bool>* stopping_;
  std::thread thread_;
  std::atomic<uint64_t> events_{0};
  LatencyHistogram latency_;
  ErrorCounts errors_;
  Duration last_event_{0};
};

// Opens a stream on `client`, watches the prefix from now on and waits for
// the server to confirm.
Result<std::unique_ptr<client::WatchStream>> OpenWatch(const BenchOptions& options,
                                                       client::Client& client) {
  ASSIGN_OR_RETURN(std::unique_ptr<client::WatchStream> stream, client.Watch());
  pb::WatchCreateRequest create;
  create.set_key(options.prefix);
  create.set_range_end(PrefixEnd(options.prefix));
  RETURN_IF_ERROR(stream->Create(create));
  pb::WatchResponse response;
  auto got = stream->Next(options.call_timeout, &response);
  if (!got.ok()) return got.status();
  if (!*got) return Status::DeadlineExceeded("watch was not created within the call timeout");
  if (!response.created() || response.canceled()) {
    return Status::Unavailable(fmt::format("watch refused: {}", response.cancel_reason()));
  }
  return stream;
}

// The writer: puts whose values start with their issue time in hex.
class WatchWriter final : public OpWorkload {
 public:
  WatchWriter(const BenchOptions& options, const RunEnv& env) : options_(options), env_(env) {}

  std::string latency_label() const override { return "put"; }

  OpResult Op(Worker& w, uint64_t index) override {
    const uint64_t key = options_.sequential_keys ? index % options_.key_space
                                                  : w.random.Uniform(options_.key_space);
    pb::PutRequest request;
    request.set_key(FormatKey(options_, key));
    const auto issued = static_cast<uint64_t>(env_.clock->Monotonic().count());
    std::string value = w.value;
    const std::string stamp = fmt::format("{:016x}", issued);
    value.replace(0, stamp.size(), stamp);
    request.set_value(std::move(value));
    return {w.client->Put(request).status()};
  }

 private:
  const BenchOptions& options_;
  const RunEnv& env_;
};

}  // namespace

Result<Report> RunWatch(const BenchOptions& options, const RunEnv& env, Connections& connections) {
  std::atomic<bool> stopping{false};
  std::vector<std::unique_ptr<Watcher>> watchers;
  // Destroyed before `watchers`: their threads end once `stopping` is set,
  // on every way out of this function.
  struct StopOnExit {
    std::atomic<bool>* stopping;
    ~StopOnExit() { stopping->store(true); }
  } stop_on_exit{&stopping};
  for (int i = 0; i < options.watchers; ++i) {
    ASSIGN_OR_RETURN(auto stream,
                     OpenWatch(options, connections.ForThread(static_cast<size_t>(i))));
    watchers.push_back(std::make_unique<Watcher>(std::move(stream), env, &stopping));
  }
  for (auto& w : watchers)
    w->Start();
  auto events = [&watchers] {
    uint64_t sum = 0;
    for (const auto& w : watchers)
      sum += w->events();
    return sum;
  };

  WatchWriter writer(options, env);
  const Duration start = env.clock->Monotonic();
  ASSIGN_OR_RETURN(Report puts, RunOps(options, env, connections, writer, [&] {
                     return std::pair<uint64_t, uint64_t>{events(), 0};
                   }));

  // Every successful put should reach every watcher; give the last ones time.
  const uint64_t expected = puts.ops * watchers.size();
  const Duration drain_end = env.clock->Monotonic() + kWatchDrainTimeout;
  while (events() < expected && env.clock->Monotonic() < drain_end && !env.stop_requested())
    std::this_thread::sleep_for(kDrainPoll);
  stopping.store(true);

  Report report;
  report.workload = "watch";
  report.clients = options.clients;
  report.conns = options.conns;
  report.latency_label = "put issued to event received";
  Duration last_event = start;
  for (auto& w : watchers) {
    w->Join();
    report.ops += w->events();
    report.latency.Merge(w->latency());
    report.errors.Merge(w->errors());
    last_event = std::max(last_event, w->last_event());
  }
  if (report.ops < expected) {
    report.errors.Add(
        fmt::format("event not received within {} s of the last put", kWatchDrainTimeout.count()),
        expected - report.ops);
  }
  report.errors.Merge(puts.errors);
  report.seconds =
      std::max(std::chrono::duration<double>(last_event - start).count(), puts.seconds);
  report.details.emplace_back("watchers", std::to_string(watchers.size()));
  report.details.emplace_back("puts", std::to_string(puts.ops));
  report.details.emplace_back("events expected", std::to_string(expected));
  report.details.emplace_back(
      "put latency p50/p99 (ms)",
      fmt::format("{:.3f} / {:.3f}", static_cast<double>(puts.latency.Percentile(50)) / 1e6,
                  static_cast<double>(puts.latency.Percentile(99)) / 1e6));
  for (const auto& d : puts.details)
    report.details.push_back(d);
  return report;
}

}  // namespace conclave::bench
