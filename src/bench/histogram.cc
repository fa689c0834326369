#include "bench/histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>

#include "base/assert.h"

namespace conclave::bench {

size_t LatencyHistogram::BucketOf(uint64_t nanos) {
  if (nanos < kSubBuckets) return static_cast<size_t>(nanos);
  nanos = std::min(nanos, kTrackedMaxNanos);
  const int exponent = 63 - std::countl_zero(nanos);  // >= kSubBucketBits
  const int shift = exponent - kSubBucketBits;
  // (nanos >> shift) is in [kSubBuckets, 2 * kSubBuckets): the top bits.
  return static_cast<size_t>(shift + 1) * kSubBuckets + ((nanos >> shift) - kSubBuckets);
}

uint64_t LatencyHistogram::BucketLow(size_t bucket) {
  CHECK_LT(bucket, kBuckets);
  if (bucket < kSubBuckets) return bucket;
  const int shift = static_cast<int>(bucket / kSubBuckets) - 1;
  return (kSubBuckets + bucket % kSubBuckets) << shift;
}

uint64_t LatencyHistogram::BucketHigh(size_t bucket) {
  CHECK_LT(bucket, kBuckets);
  if (bucket < kSubBuckets) return bucket;
  const int shift = static_cast<int>(bucket / kSubBuckets) - 1;
  return BucketLow(bucket) + (uint64_t{1} << shift) - 1;
}

void LatencyHistogram::Record(uint64_t nanos) {
  ++counts_[BucketOf(nanos)];
  ++count_;
  min_ = std::min(min_, nanos);
  max_ = std::max(max_, nanos);
  sum_ += static_cast<double>(nanos);
}

void LatencyHistogram::Merge(const LatencyHistogram& other) {
  for (size_t i = 0; i < kBuckets; ++i)
    counts_[i] += other.counts_[i];
  count_ += other.count_;
  min_ = std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
  sum_ += other.sum_;
}

double LatencyHistogram::mean_nanos() const {
  return count_ == 0 ? 0 : sum_ / static_cast<double>(count_);
}

uint64_t LatencyHistogram::Percentile(double percentile) const {
  CHECK(percentile > 0 && percentile <= 100);
  if (count_ == 0) return 0;
  const double exact_rank = percentile / 100.0 * static_cast<double>(count_);
  const uint64_t rank =
      std::clamp<uint64_t>(static_cast<uint64_t>(std::ceil(exact_rank - 1e-9)), 1, count_);
  uint64_t seen = 0;
  for (size_t i = 0; i < kBuckets; ++i) {
    seen += counts_[i];
    if (seen >= rank) return std::clamp(BucketHigh(i), min_, max_);
  }
  return max_;  // not reached: the counts add up to count_
}

}  // namespace conclave::bench
