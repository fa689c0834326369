#include "bench/options.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>

namespace conclave::bench {

namespace {

constexpr std::array<std::string_view, 9> kWorkloadNames = {
    "put",  "range",      "txn-cas",   "mixed", "watch", "lease-keepalive",
    "lock", "native-put", "native-get"};

constexpr int64_t kLeaseTtlSecondsMax = 24 * 60 * 60;

// Flags that only some workloads use, and which.
struct FlagUse {
  std::string_view flag;
  std::vector<Workload> workloads;
};

const std::vector<FlagUse>& WorkloadFlags() {
  using W = Workload;
  static const std::vector<FlagUse> table = {
      {"prefix",
       {W::kPut, W::kRange, W::kTxnCas, W::kMixed, W::kWatch, W::kLock, W::kNativePut,
        W::kNativeGet}},
      {"key-size",
       {W::kPut, W::kRange, W::kTxnCas, W::kMixed, W::kWatch, W::kNativePut, W::kNativeGet}},
      {"val-size",
       {W::kPut, W::kRange, W::kTxnCas, W::kMixed, W::kWatch, W::kNativePut, W::kNativeGet}},
      {"key-space",
       {W::kPut, W::kRange, W::kTxnCas, W::kMixed, W::kWatch, W::kNativePut, W::kNativeGet}},
      {"sequential-keys", {W::kPut, W::kRange, W::kMixed, W::kWatch, W::kNativePut, W::kNativeGet}},
      {"no-spread", {W::kNativePut, W::kNativeGet}},
      {"consistency", {W::kRange, W::kMixed}},
      {"read-ratio", {W::kMixed}},
      {"watchers", {W::kWatch}},
      {"leases", {W::kLeaseKeepAlive}},
      {"lease-ttl", {W::kLeaseKeepAlive, W::kLock}},
      {"locks", {W::kLock}},
  };
  return table;
}

bool UsesKeys(Workload w) {
  return w != Workload::kLeaseKeepAlive && w != Workload::kLock;
}

int DecimalDigits(uint64_t n) {
  int digits = 1;
  while (n >= 10) {
    n /= 10;
    ++digits;
  }
  return digits;
}

Status CheckFlagsApply(const BenchOptions& o, const std::vector<std::string>& given) {
  for (const FlagUse& use : WorkloadFlags()) {
    if (std::find(given.begin(), given.end(), use.flag) == given.end()) continue;
    if (std::find(use.workloads.begin(), use.workloads.end(), o.workload) != use.workloads.end()) {
      continue;
    }
    return Status::InvalidArgument(
        fmt::format("--{} does not apply to the {} workload", use.flag, WorkloadName(o.workload)));
  }
  return Status::Ok();
}

Status CheckRange(std::string_view flag, int64_t value, int64_t low, int64_t high) {
  if (value >= low && value <= high) return Status::Ok();
  return Status::InvalidArgument(fmt::format("--{} must be in [{}, {}]", flag, low, high));
}

Status CheckBounds(BenchOptions* o) {
  RETURN_IF_ERROR(CheckRange("clients", o->clients, 1, kClientsMax));
  RETURN_IF_ERROR(CheckRange("conns", o->conns, 1, o->clients));
  if (o->total > kTotalMax) {
    return Status::InvalidArgument(fmt::format("--total must be at most {}", kTotalMax));
  }
  if (o->duration.count() < 0 || o->duration > kDurationMax) {
    return Status::InvalidArgument("--duration must be between 0 and 24h");
  }
  if (o->total == 0 && o->duration.count() == 0) o->duration = kDefaultDuration;
  if (!std::isfinite(o->rate) || o->rate < 0 || o->rate > kRateMax) {
    return Status::InvalidArgument(fmt::format("--rate must be in [0, {}]", kRateMax));
  }
  for (auto [flag, t] :
       {std::pair{"dial-timeout", o->dial_timeout}, std::pair{"call-timeout", o->call_timeout}}) {
    if (t.count() <= 0 || t > kCallTimeoutMax) {
      return Status::InvalidArgument(fmt::format("--{} must be positive and at most 10m", flag));
    }
  }
  if (o->endpoints.empty()) return Status::InvalidArgument("no endpoints given");
  return Status::Ok();
}

Status CheckKeys(const BenchOptions& o) {
  RETURN_IF_ERROR(CheckRange("key-size", o.key_size, 1, kKeySizeMax));
  RETURN_IF_ERROR(CheckRange("val-size", o.val_size, 0, kValueSizeMax));
  if (o.key_space < 1 || o.key_space > kKeySpaceMax) {
    return Status::InvalidArgument(fmt::format("--key-space must be in [1, {}]", kKeySpaceMax));
  }
  const int needed = static_cast<int>(o.prefix.size()) + DecimalDigits(o.key_space - 1);
  if (UsesKeys(o.workload) && o.key_size < needed) {
    return Status::InvalidArgument(
        fmt::format("--key-size {} cannot hold the prefix {:?} and {} keys (needs at least {})",
                    o.key_size, o.prefix, o.key_space, needed));
  }
  if (o.workload == Workload::kWatch && o.val_size < kWatchValueSizeMin) {
    return Status::InvalidArgument(
        fmt::format("--val-size must be at least {} for watch (the value carries the put's time)",
                    kWatchValueSizeMin));
  }
  return Status::Ok();
}

Status CheckWorkload(const BenchOptions& o) {
  if (!(o.read_ratio >= 0 && o.read_ratio <= 1)) {
    return Status::InvalidArgument("--read-ratio must be in [0, 1]");
  }
  RETURN_IF_ERROR(CheckRange("watchers", o.watchers, 1, kWatchersMax));
  RETURN_IF_ERROR(CheckRange("leases", o.leases, 1, kLeasesMax));
  RETURN_IF_ERROR(CheckRange("lease-ttl", o.lease_ttl_seconds, 1, kLeaseTtlSecondsMax));
  RETURN_IF_ERROR(CheckRange("locks", o.locks, 1, kLocksMax));
  if (o.workload == Workload::kLock && o.prefix.empty()) {
    return Status::InvalidArgument("--prefix must not be empty for lock (it names the locks)");
  }
  return Status::Ok();
}

}  // namespace

Result<Workload> ParseWorkload(std::string_view name) {
  for (size_t i = 0; i < kWorkloadNames.size(); ++i) {
    if (kWorkloadNames[i] == name) return static_cast<Workload>(i);
  }
  return Status::InvalidArgument(fmt::format(
      "unknown workload {:?} (use put, range, txn-cas, mixed, watch, lease-keepalive, lock, "
      "native-put or native-get)",
      name));
}

std::string_view WorkloadName(Workload workload) {
  return kWorkloadNames[static_cast<size_t>(workload)];
}

Status ValidateOptions(BenchOptions* options, const std::vector<std::string>& given) {
  RETURN_IF_ERROR(CheckFlagsApply(*options, given));
  RETURN_IF_ERROR(CheckBounds(options));
  RETURN_IF_ERROR(CheckKeys(*options));
  return CheckWorkload(*options);
}

std::string FormatKey(const BenchOptions& options, uint64_t index) {
  const size_t width = static_cast<size_t>(options.key_size) - options.prefix.size();
  return fmt::format("{}{:0>{}}", options.prefix, index, width);
}

}  // namespace conclave::bench
