// BenchOptions: what one `conclave bench` run does, and the checks that keep
// every run bounded in time, threads and memory.
//
// The CLI fills the struct from its flags and lists which flags were given;
// ValidateOptions refuses flags that mean nothing to the chosen workload,
// values outside the limits below, and a run with neither --total nor
// --duration gets kDefaultDuration.
//
// Thread-safety: plain data.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace conclave::bench {

enum class Workload : uint8_t {
  kPut,
  kRange,
  kTxnCas,
  kMixed,
  kWatch,
  kLeaseKeepAlive,
  kLock,
  kNativePut,  // puts through Conclave's native KV API, spread over its ranges
  kNativeGet,  // linearizable gets of keys written first, likewise spread
};

// "put", "range", "txn-cas", "mixed", "watch", "lease-keepalive", "lock",
// "native-put", "native-get".
Result<Workload> ParseWorkload(std::string_view name);
std::string_view WorkloadName(Workload workload);

// Limits, checked by ValidateOptions.
inline constexpr int kClientsMax = 1000;
inline constexpr int kWatchersMax = 1000;
inline constexpr int kLeasesMax = 100'000;
inline constexpr int kLocksMax = 100'000;
inline constexpr int kKeySizeMax = 4096;
inline constexpr int kValueSizeMax = 1 << 20;
inline constexpr uint64_t kKeySpaceMax = 10'000'000;
inline constexpr uint64_t kTotalMax = 10'000'000'000;
inline constexpr double kRateMax = 10'000'000;
inline constexpr std::chrono::milliseconds kDurationMax = std::chrono::hours(24);
inline constexpr std::chrono::milliseconds kDefaultDuration = std::chrono::seconds(10);
inline constexpr std::chrono::milliseconds kCallTimeoutMax = std::chrono::minutes(10);
// A watch value starts with the put's issue time in 16 hex digits.
inline constexpr int kWatchValueSizeMin = 16;

struct BenchOptions {
  Workload workload = Workload::kPut;
  // host:port items.
  std::vector<std::string> endpoints = {"127.0.0.1:2379"};
  // Threads issuing requests, and connections (one Client each) they share:
  // thread i uses connection i % conns.
  int clients = 1;
  int conns = 1;
  // The run ends after `total` ops or after `duration`, whichever comes first
  // (0 = that bound is not used; ValidateOptions makes sure one is).
  uint64_t total = 0;
  std::chrono::milliseconds duration{0};
  // Ops per second over all clients; 0 = as fast as they go.
  double rate = 0;

  // Keys are `prefix` followed by a zero-padded decimal index in
  // [0, key_space), `key_size` bytes in all.
  std::string prefix = "/bench/";
  int key_size = 16;
  int val_size = 256;
  uint64_t key_space = 10'000;
  bool sequential_keys = false;
  // native-put and native-get: keys as given (prefix and index), not spread
  // over the whole keyspace, so the load stays in the prefix's ranges.
  bool no_spread = false;
  // range and mixed: serializable reads instead of linearizable ones.
  bool serializable = false;
  // mixed: the share of ops that are reads.
  double read_ratio = 0.5;
  // watch: streams watching `prefix`.
  int watchers = 10;
  // lease-keepalive: leases renewed round-robin.
  int leases = 100;
  // lease-keepalive and lock: TTL of the leases the run grants.
  int64_t lease_ttl_seconds = 60;
  // lock: lock names the clients contend on.
  int locks = 1;

  std::chrono::milliseconds dial_timeout{2000};
  // Deadline of one call; also how long a Lock waits.
  std::chrono::milliseconds call_timeout{5000};
  // Seeds the clients' key and value choices (client i uses seed + i).
  uint64_t seed = 1;
};

// Checks `options` against its workload and the limits, and fills in the
// default duration. `given` names the flags the user set, without dashes
// ("read-ratio"); a flag its workload does not use is an error.
Status ValidateOptions(BenchOptions* options, const std::vector<std::string>& given);

// The key of `index`: prefix + zero-padded decimal, key_size bytes.
std::string FormatKey(const BenchOptions& options, uint64_t index);

}  // namespace conclave::bench
