#include "bench/options.h"

#include <gtest/gtest.h>

namespace conclave::bench {
namespace {

using std::chrono::milliseconds;

BenchOptions Valid(Workload w) {
  BenchOptions o;
  o.workload = w;
  return o;
}

std::string ErrorOf(BenchOptions o, const std::vector<std::string>& given = {}) {
  return ValidateOptions(&o, given).message();
}

TEST(BenchOptionsTest, WorkloadNamesRoundTrip) {
  for (const char* name :
       {"put", "range", "txn-cas", "mixed", "watch", "lease-keepalive", "lock"}) {
    auto w = ParseWorkload(name);
    ASSERT_TRUE(w.ok()) << name;
    EXPECT_EQ(WorkloadName(*w), name);
  }
  EXPECT_FALSE(ParseWorkload("get").ok());
}

TEST(BenchOptionsTest, DefaultsAreValidForEveryWorkload) {
  for (int i = 0; i <= static_cast<int>(Workload::kNativeGet); ++i) {
    BenchOptions o = Valid(static_cast<Workload>(i));
    EXPECT_TRUE(ValidateOptions(&o, {}).ok()) << WorkloadName(o.workload);
  }
}

TEST(BenchOptionsTest, UnboundedRunGetsTheDefaultDuration) {
  BenchOptions o = Valid(Workload::kPut);
  ASSERT_TRUE(ValidateOptions(&o, {}).ok());
  EXPECT_EQ(o.duration, kDefaultDuration);

  BenchOptions counted = Valid(Workload::kPut);
  counted.total = 1000;
  ASSERT_TRUE(ValidateOptions(&counted, {}).ok());
  EXPECT_EQ(counted.duration, milliseconds(0));  // bounded by count alone
}

TEST(BenchOptionsTest, FlagsOfOtherWorkloadsAreRefused) {
  EXPECT_EQ(ErrorOf(Valid(Workload::kPut), {"read-ratio"}),
            "--read-ratio does not apply to the put workload");
  EXPECT_EQ(ErrorOf(Valid(Workload::kRange), {"watchers"}),
            "--watchers does not apply to the range workload");
  EXPECT_EQ(ErrorOf(Valid(Workload::kLock), {"key-size"}),
            "--key-size does not apply to the lock workload");
  EXPECT_EQ(ErrorOf(Valid(Workload::kPut), {"consistency"}),
            "--consistency does not apply to the put workload");
  BenchOptions mixed = Valid(Workload::kMixed);
  EXPECT_TRUE(ValidateOptions(&mixed, {"read-ratio", "consistency", "clients", "rate"}).ok());
}

TEST(BenchOptionsTest, CountsAndRatesAreBounded) {
  BenchOptions o = Valid(Workload::kPut);
  o.clients = 0;
  EXPECT_EQ(ErrorOf(o), "--clients must be in [1, 1000]");
  o.clients = kClientsMax + 1;
  EXPECT_EQ(ErrorOf(o), "--clients must be in [1, 1000]");
  o = Valid(Workload::kPut);
  o.clients = 4;
  o.conns = 5;
  EXPECT_EQ(ErrorOf(o), "--conns must be in [1, 4]");
  o = Valid(Workload::kPut);
  o.rate = -1;
  EXPECT_FALSE(ErrorOf(o).empty());
  o = Valid(Workload::kPut);
  o.duration = kDurationMax + milliseconds(1);
  EXPECT_FALSE(ErrorOf(o).empty());
  o = Valid(Workload::kPut);
  o.total = kTotalMax + 1;
  EXPECT_FALSE(ErrorOf(o).empty());
  o = Valid(Workload::kPut);
  o.call_timeout = milliseconds(0);
  EXPECT_EQ(ErrorOf(o), "--call-timeout must be positive and at most 10m");
  o = Valid(Workload::kWatch);
  o.watchers = kWatchersMax + 1;
  EXPECT_EQ(ErrorOf(o), "--watchers must be in [1, 1000]");
  o = Valid(Workload::kMixed);
  o.read_ratio = 1.5;
  EXPECT_EQ(ErrorOf(o), "--read-ratio must be in [0, 1]");
  o = Valid(Workload::kPut);
  o.endpoints.clear();
  EXPECT_EQ(ErrorOf(o), "no endpoints given");
}

TEST(BenchOptionsTest, KeySizeMustHoldPrefixAndIndex) {
  BenchOptions o = Valid(Workload::kPut);
  o.prefix = "/bench/";  // 7 bytes
  o.key_space = 1000;    // indexes up to 999: 3 digits
  o.key_size = 10;
  EXPECT_TRUE(ValidateOptions(&o, {}).ok());
  o.key_size = 9;
  EXPECT_EQ(ErrorOf(o),
            "--key-size 9 cannot hold the prefix \"/bench/\" and 1000 keys (needs at least 10)");
  // Lease and lock workloads write no keys of their own.
  BenchOptions lease = Valid(Workload::kLeaseKeepAlive);
  lease.key_size = 1;
  EXPECT_TRUE(ValidateOptions(&lease, {}).ok());
}

TEST(BenchOptionsTest, WatchValuesCarryATimestamp) {
  BenchOptions o = Valid(Workload::kWatch);
  o.val_size = kWatchValueSizeMin - 1;
  EXPECT_FALSE(ErrorOf(o).empty());
  o.val_size = kWatchValueSizeMin;
  EXPECT_TRUE(ValidateOptions(&o, {}).ok());
}

TEST(BenchOptionsTest, KeysArePaddedToKeySize) {
  BenchOptions o;
  o.prefix = "/b/";
  o.key_size = 8;
  EXPECT_EQ(FormatKey(o, 0), "/b/00000");
  EXPECT_EQ(FormatKey(o, 42), "/b/00042");
  o.prefix = "";
  o.key_size = 3;
  EXPECT_EQ(FormatKey(o, 7), "007");
}

}  // namespace
}  // namespace conclave::bench
