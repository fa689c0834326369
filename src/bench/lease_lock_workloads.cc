// The lease-keepalive and lock workloads.
#include <fmt/format.h>

#include "bench/runner.h"

namespace conclave::bench {

namespace {

using std::chrono::duration_cast;
using std::chrono::nanoseconds;

// Grants options.leases leases in the setup; each op renews one of them
// (round-robin) with one keep-alive round trip. The client library opens a
// keep-alive stream per renewal (Client::LeaseKeepAliveOnce), so the latency
// includes opening that stream on the existing connection.
class LeaseKeepAliveWorkload final : public OpWorkload {
 public:
  LeaseKeepAliveWorkload(const BenchOptions& options, const RunEnv& env, Connections& connections)
      : options_(options), env_(env), connections_(connections) {}

  ~LeaseKeepAliveWorkload() override { RevokeAll(); }

  std::string latency_label() const override { return "keep-alive renewal"; }

  Status Setup() override {
    ids_.assign(static_cast<size_t>(options_.leases), 0);
    return RunParallel(options_, env_, connections_, "setup: granting leases", ids_.size(),
                       [&](client::Client& client, uint64_t i) -> Status {
                         auto r = client.LeaseGrant(options_.lease_ttl_seconds);
                         if (!r.ok()) return r.status();
                         ids_[i] = r->id();
                         return Status::Ok();
                       });
  }

  OpResult Op(Worker& w, uint64_t index) override {
    const int64_t id = ids_[index % ids_.size()];
    auto r = w.client->LeaseKeepAliveOnce(id);
    if (!r.ok()) return {r.status()};
    if (r->ttl() <= 0) return {Status::NotFound("lease expired or revoked")};
    return {};
  }

  void Finish(Report* report) override {
    report->details.emplace_back("leases", std::to_string(options_.leases));
    report->details.emplace_back("lease TTL", fmt::format("{} s", options_.lease_ttl_seconds));
    const uint64_t revoked = RevokeAll();
    report->details.emplace_back("leases revoked after the run", std::to_string(revoked));
  }

 private:
  // Best effort: a lease that cannot be revoked expires after its TTL.
  uint64_t RevokeAll() {
    if (ids_.empty()) return 0;
    std::atomic<uint64_t> revoked{0};
    RunEnv quiet = env_;
    quiet.progress = nullptr;
    quiet.stop_requested = [] { return false; };
    (void)RunParallel(options_, quiet, connections_, "cleanup: revoking leases", ids_.size(),
                      [&](client::Client& client, uint64_t i) -> Status {
                        if (ids_[i] != 0 && client.LeaseRevoke(ids_[i]).ok()) ++revoked;
                        return Status::Ok();
                      });
    ids_.clear();
    return revoked.load();
  }

  const BenchOptions& options_;
  const RunEnv& env_;
  Connections& connections_;
  // Written by the setup's threads at distinct indexes, read-only afterwards.
  std::vector<int64_t> ids_;
};

// Each worker holds a lease of its own, kept alive by a KeepAliveLoop; an op
// takes one of options.locks names (chosen at random) through the Lock
// service and releases it at once. The latency recorded is the Lock call's
// (the wait for the lock included); throughput counts lock-unlock cycles.
class LockWorkload final : public OpWorkload {
 public:
  LockWorkload(const BenchOptions& options, const RunEnv& env) : options_(options), env_(env) {}

  ~LockWorkload() override { Cleanup(); }

  std::string latency_label() const override { return "lock acquire"; }
  std::vector<std::string> counter_names() const override { return {"unlock errors"}; }

  Status SetupWorker(Worker& w) override {
    auto grant = w.client->LeaseGrant(options_.lease_ttl_seconds);
    if (!grant.ok())
      return Status(grant.status().code(), "granting a lease: " + grant.status().message());
    w.lease = grant->id();
    leases_.push_back({w.client, w.lease});
    auto loop = w.client->LeaseKeepAlive(w.lease, options_.lease_ttl_seconds);
    if (!loop.ok()) return loop.status();
    keep_alives_.push_back(std::move(*loop));
    return Status::Ok();
  }

  OpResult Op(Worker& w, uint64_t) override {
    const uint64_t n = w.random.Uniform(static_cast<uint64_t>(options_.locks));
    const std::string name = fmt::format("{}lock/{}", options_.prefix, n);
    const Duration t0 = env_.clock->Monotonic();
    auto locked = w.client->Lock(name, w.lease, options_.call_timeout);
    const Duration t1 = env_.clock->Monotonic();
    if (!locked.ok()) return {locked.status()};
    auto unlocked = w.client->Unlock(locked->key());
    if (!unlocked.ok()) {
      // The lock stays held until the lease goes; later ops on this name wait.
      ++w.counters[0];
      return {unlocked.status()};
    }
    return {Status::Ok(), duration_cast<nanoseconds>(t1 - t0).count()};
  }

  void Finish(Report* report) override {
    report->details.emplace_back("lock names", std::to_string(options_.locks));
    report->details.emplace_back("throughput counts", "lock + unlock cycles");
    Cleanup();
  }

 private:
  void Cleanup() {
    for (auto& loop : keep_alives_)
      loop->Close();
    keep_alives_.clear();
    for (const auto& [client, lease] : leases_)
      (void)client->LeaseRevoke(lease);  // best effort: it expires after its TTL
    leases_.clear();
  }

  const BenchOptions& options_;
  const RunEnv& env_;
  // Filled by SetupWorker on the caller's thread before the workers start.
  std::vector<std::pair<client::Client*, int64_t>> leases_;
  std::vector<std::unique_ptr<client::KeepAliveLoop>> keep_alives_;
};

}  // namespace

std::unique_ptr<OpWorkload> NewLeaseKeepAliveWorkload(const BenchOptions& options,
                                                      const RunEnv& env, Connections& connections) {
  return std::make_unique<LeaseKeepAliveWorkload>(options, env, connections);
}

std::unique_ptr<OpWorkload> NewLockWorkload(const BenchOptions& options, const RunEnv& env) {
  return std::make_unique<LockWorkload>(options, env);
}

}  // namespace conclave::bench
