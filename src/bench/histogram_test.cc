#include "bench/histogram.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "base/random.h"

namespace conclave::bench {
namespace {

// The exact percentile of sorted values, by the same rank rule.
uint64_t ExactPercentile(const std::vector<uint64_t>& sorted, double percentile) {
  const auto rank = static_cast<size_t>(
      std::ceil(percentile / 100.0 * static_cast<double>(sorted.size()) - 1e-9));
  return sorted[std::clamp<size_t>(rank, 1, sorted.size()) - 1];
}

TEST(LatencyHistogramTest, EmptyReportsZero) {
  LatencyHistogram h;
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.Percentile(50), 0u);
  EXPECT_EQ(h.Percentile(100), 0u);
  EXPECT_EQ(h.min_nanos(), 0u);
  EXPECT_EQ(h.max_nanos(), 0u);
  EXPECT_EQ(h.mean_nanos(), 0);
}

TEST(LatencyHistogramTest, SmallValuesAreExact) {
  LatencyHistogram h;
  for (uint64_t v = 1; v <= 100; ++v)
    h.Record(v);
  EXPECT_EQ(h.count(), 100u);
  EXPECT_EQ(h.Percentile(50), 50u);
  EXPECT_EQ(h.Percentile(90), 90u);
  EXPECT_EQ(h.Percentile(99), 99u);
  EXPECT_EQ(h.Percentile(99.9), 100u);
  EXPECT_EQ(h.Percentile(100), 100u);
  EXPECT_EQ(h.min_nanos(), 1u);
  EXPECT_EQ(h.max_nanos(), 100u);
  EXPECT_DOUBLE_EQ(h.mean_nanos(), 50.5);
}

TEST(LatencyHistogramTest, BucketsTileTheValuesWithBoundedWidth) {
  // Every bucket starts right after the previous one ends, and is never
  // wider than 1/kSubBuckets of its lowest value.
  EXPECT_EQ(LatencyHistogram::BucketLow(0), 0u);
  for (size_t b = 1; b < LatencyHistogram::kBuckets; ++b) {
    ASSERT_EQ(LatencyHistogram::BucketLow(b), LatencyHistogram::BucketHigh(b - 1) + 1) << b;
    const uint64_t width = LatencyHistogram::BucketHigh(b) - LatencyHistogram::BucketLow(b) + 1;
    ASSERT_LE(width * LatencyHistogram::kSubBuckets,
              std::max<uint64_t>(LatencyHistogram::BucketLow(b), 128))
        << b;
    ASSERT_EQ(LatencyHistogram::BucketOf(LatencyHistogram::BucketLow(b)), b);
    ASSERT_EQ(LatencyHistogram::BucketOf(LatencyHistogram::BucketHigh(b)), b);
  }
  EXPECT_EQ(LatencyHistogram::BucketHigh(LatencyHistogram::kBuckets - 1),
            LatencyHistogram::kTrackedMaxNanos);
}

TEST(LatencyHistogramTest, HugeValuesLandInTheLastBucketButKeepTheirMax) {
  LatencyHistogram h;
  h.Record(UINT64_MAX);
  EXPECT_EQ(LatencyHistogram::BucketOf(UINT64_MAX), LatencyHistogram::kBuckets - 1);
  EXPECT_EQ(h.max_nanos(), UINT64_MAX);
  EXPECT_EQ(h.Percentile(50), UINT64_MAX);  // clamped into [min, max]
}

TEST(LatencyHistogramTest, PercentilesOfRandomDataAreWithinOnePercent) {
  SeededRandom random(7);
  LatencyHistogram h;
  std::vector<uint64_t> values;
  for (int i = 0; i < 100'000; ++i) {
    // Log-uniform from 10 µs to 10 s: latencies span orders of magnitude.
    const double exponent = 4 + 6 * random.NextDouble();
    const auto v = static_cast<uint64_t>(std::pow(10.0, exponent));
    values.push_back(v);
    h.Record(v);
  }
  std::sort(values.begin(), values.end());
  for (double p : {1.0, 50.0, 90.0, 99.0, 99.9, 100.0}) {
    const auto exact = static_cast<double>(ExactPercentile(values, p));
    const auto got = static_cast<double>(h.Percentile(p));
    EXPECT_GE(got, exact) << p;  // the bucket's high end, never below
    EXPECT_LE(got, exact * 1.008) << p;
  }
  EXPECT_EQ(h.Percentile(100), values.back());
}

TEST(LatencyHistogramTest, MergeEqualsRecordingEverythingInOne) {
  SeededRandom random(11);
  LatencyHistogram a, b, all;
  for (int i = 0; i < 10'000; ++i) {
    const uint64_t v = random.Uniform(50'000'000);
    (i % 3 == 0 ? a : b).Record(v);
    all.Record(v);
  }
  LatencyHistogram merged;
  merged.Merge(a);
  merged.Merge(b);
  EXPECT_EQ(merged.count(), all.count());
  EXPECT_EQ(merged.min_nanos(), all.min_nanos());
  EXPECT_EQ(merged.max_nanos(), all.max_nanos());
  EXPECT_NEAR(merged.mean_nanos(), all.mean_nanos(), 1e-6 * all.mean_nanos());
  for (double p : {50.0, 90.0, 99.0, 99.9, 100.0})
    EXPECT_EQ(merged.Percentile(p), all.Percentile(p)) << p;
}

TEST(LatencyHistogramTest, MergingAnEmptyHistogramChangesNothing) {
  LatencyHistogram h, empty;
  h.Record(5'000);
  h.Merge(empty);
  EXPECT_EQ(h.count(), 1u);
  EXPECT_EQ(h.min_nanos(), 5'000u);
  EXPECT_EQ(h.Percentile(50), 5'000u);  // the bucket's high end, clamped to the max
}

}  // namespace
}  // namespace conclave::bench
