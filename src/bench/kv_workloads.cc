// The key-value workloads: put, range, txn-cas and mixed.
#include <fmt/format.h>

#include "bench/runner.h"

namespace conclave::bench {

namespace {

namespace pb = ::etcdserverpb;

class KvWorkload final : public OpWorkload {
 public:
  KvWorkload(const BenchOptions& options, const RunEnv& env, Connections& connections)
      : options_(options), env_(env), connections_(connections) {
    if (options_.workload == Workload::kTxnCas) {
      known_mod_revisions_ = std::vector<std::atomic<int64_t>>(options_.key_space);
    }
  }

  std::vector<std::string> counter_names() const override {
    switch (options_.workload) {
      case Workload::kTxnCas:
        return {"swapped", "compare failed"};
      case Workload::kMixed:
        return {"reads", "writes"};
      default:
        return {};
    }
  }

  // range and mixed read keys that the setup wrote first.
  Status Setup() override {
    const std::string value(static_cast<size_t>(options_.val_size), 'v');
    const Duration start = env_.clock->Monotonic();
    if (options_.workload == Workload::kNativeGet) {
      RETURN_IF_ERROR(RunParallel(options_, env_, connections_, "setup: writing keys",
                                  options_.key_space,
                                  [&](client::Client& client, uint64_t i) -> Status {
                                    kvpb::PutRequest request;
                                    request.set_key(NativeKey(i));
                                    request.set_value(value);
                                    return client.NativePut(request).status();
                                  }));
      setup_seconds_ = std::chrono::duration<double>(env_.clock->Monotonic() - start).count();
      return Status::Ok();
    }
    if (options_.workload != Workload::kRange && options_.workload != Workload::kMixed) {
      return Status::Ok();
    }
    RETURN_IF_ERROR(RunParallel(options_, env_, connections_, "setup: writing keys",
                                options_.key_space,
                                [&](client::Client& client, uint64_t i) -> Status {
                                  pb::PutRequest request;
                                  request.set_key(FormatKey(options_, i));
                                  request.set_value(value);
                                  return client.Put(request).status();
                                }));
    setup_seconds_ = std::chrono::duration<double>(env_.clock->Monotonic() - start).count();
    return Status::Ok();
  }

  OpResult Op(Worker& w, uint64_t index) override {
    const uint64_t key = KeyIndex(w, index);
    switch (options_.workload) {
      case Workload::kPut:
        return {Put(w, key)};
      case Workload::kNativePut:
        return {NativePut(w, key)};
      case Workload::kNativeGet:
        return {NativeGet(w, key)};
      case Workload::kRange:
        return {Range(w, key)};
      case Workload::kTxnCas:
        return {CompareAndSwap(w, key)};
      case Workload::kMixed:
        if (w.random.Bernoulli(options_.read_ratio)) {
          ++w.counters[0];
          return {Range(w, key)};
        }
        ++w.counters[1];
        return {Put(w, key)};
      default:
        return {Status::Internal("not a key-value workload")};
    }
  }

  void Finish(Report* report) override {
    report->details.emplace_back("key space", std::to_string(options_.key_space));
    report->details.emplace_back("key/value size",
                                 fmt::format("{} B / {} B", options_.key_size, options_.val_size));
    if (options_.workload == Workload::kNativeGet) {
      report->details.emplace_back("reads", "linearizable");
      report->details.emplace_back(
          "setup", fmt::format("{} keys in {:.1f} s", options_.key_space, setup_seconds_));
    }
    if (options_.workload == Workload::kRange || options_.workload == Workload::kMixed) {
      report->details.emplace_back("reads",
                                   options_.serializable ? "serializable" : "linearizable");
      report->details.emplace_back(
          "setup", fmt::format("{} keys in {:.1f} s", options_.key_space, setup_seconds_));
    }
  }

 private:
  uint64_t KeyIndex(Worker& w, uint64_t index) const {
    // txn-cas always picks at random: sequential keys would never contend.
    if (options_.sequential_keys && options_.workload != Workload::kTxnCas) {
      return index % options_.key_space;
    }
    return w.random.Uniform(options_.key_space);
  }

  Status Put(Worker& w, uint64_t key) {
    pb::PutRequest request;
    request.set_key(FormatKey(options_, key));
    request.set_value(w.value);
    return w.client->Put(request).status();
  }

  // The key behind two bytes that spread consecutive indexes over the
  // whole keyspace, so every range of the native keyspace gets its share;
  // never \xff\xff, where the system's keys start. With --no-spread, as
  // given.
  std::string NativeKey(uint64_t key) const {
    if (options_.no_spread) return FormatKey(options_, key);
    const uint64_t spread = ((key * 0x9e3779b97f4a7c15ULL) >> 48) % 0xffff;
    std::string name;
    name.push_back(static_cast<char>(spread >> 8));
    name.push_back(static_cast<char>(spread & 0xff));
    name += FormatKey(options_, key);
    return name;
  }

  Status NativePut(Worker& w, uint64_t key) {
    kvpb::PutRequest request;
    request.set_key(NativeKey(key));
    request.set_value(w.value);
    return w.client->NativePut(request).status();
  }

  // A missing key is an error: the setup wrote every one.
  Status NativeGet(Worker& w, uint64_t key) {
    kvpb::GetRequest request;
    request.set_key(NativeKey(key));
    ASSIGN_OR_RETURN(kvpb::GetResponse resp, w.client->NativeGet(request));
    if (!resp.found()) return Status::NotFound("native-get: a key the setup wrote is missing");
    return Status::Ok();
  }

  Status Range(Worker& w, uint64_t key) {
    pb::RangeRequest request;
    request.set_key(FormatKey(options_, key));
    request.set_serializable(options_.serializable);
    return w.client->Range(request).status();
  }

  // One Txn: if the key's mod_revision is still the one last seen, put;
  // otherwise read the key to learn its current mod_revision. The revisions
  // are shared by all workers, so compares fail only on real races (or on
  // the first touch of a key that an earlier run wrote).
  Status CompareAndSwap(Worker& w, uint64_t key) {
    std::atomic<int64_t>& known = known_mod_revisions_[key];
    const std::string name = FormatKey(options_, key);
    pb::TxnRequest request;
    pb::Compare* compare = request.add_compare();
    compare->set_key(name);
    compare->set_target(pb::Compare::MOD);
    compare->set_result(pb::Compare::EQUAL);
    compare->set_mod_revision(known.load(std::memory_order_relaxed));
    pb::PutRequest* put = request.add_success()->mutable_request_put();
    put->set_key(name);
    put->set_value(w.value);
    request.add_failure()->mutable_request_range()->set_key(name);
    auto response = w.client->Txn(request);
    if (!response.ok()) return response.status();
    if (response->succeeded()) {
      ++w.counters[0];
      known.store(response->header().revision(), std::memory_order_relaxed);
      return Status::Ok();
    }
    ++w.counters[1];
    const pb::RangeResponse& current = response->responses(0).response_range();
    known.store(current.kvs_size() > 0 ? current.kvs(0).mod_revision() : 0,
                std::memory_order_relaxed);
    return Status::Ok();
  }

  const BenchOptions& options_;
  const RunEnv& env_;
  Connections& connections_;
  double setup_seconds_ = 0;
  // txn-cas: the mod_revision last seen of each key (0: absent), 8 bytes a key.
  std::vector<std::atomic<int64_t>> known_mod_revisions_;
};

}  // namespace

std::unique_ptr<OpWorkload> NewKvWorkload(const BenchOptions& options, const RunEnv& env,
                                          Connections& connections) {
  return std::make_unique<KvWorkload>(options, env, connections);
}

}  // namespace conclave::bench
