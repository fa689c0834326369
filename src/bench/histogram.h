// LatencyHistogram: a log-linear histogram of durations with fixed memory.
//
// Values are nanoseconds. Each power of two [2^e, 2^(e+1)) is split into
// kSubBuckets equal buckets, so a bucket is never wider than 1/kSubBuckets
// of the values it holds: a percentile read from it is within 0.8% of the
// true value (values below 256 ns are exact). Values above kTrackedMaxNanos
// land in the last bucket; the exact maximum, minimum, count and sum are kept
// beside the buckets. Memory is kBuckets counters (35 KiB) whatever the
// number of values recorded.
//
// Thread-safety: none. The benchmark gives each thread its own histogram and
// merges them when the threads have ended.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace conclave::bench {

class LatencyHistogram {
 public:
  static constexpr int kSubBucketBits = 7;
  static constexpr uint64_t kSubBuckets = uint64_t{1} << kSubBucketBits;
  // The highest power of two with buckets of its own: 2^41 ns is about 36 min.
  static constexpr int kExponentMax = 40;
  static constexpr uint64_t kTrackedMaxNanos = (uint64_t{1} << (kExponentMax + 1)) - 1;
  static constexpr size_t kBuckets = (kExponentMax - kSubBucketBits + 2) * kSubBuckets;

  LatencyHistogram() { counts_.fill(0); }

  void Record(uint64_t nanos);
  // Adds every value recorded in `other`.
  void Merge(const LatencyHistogram& other);

  uint64_t count() const { return count_; }
  // 0 when empty.
  uint64_t min_nanos() const { return count_ == 0 ? 0 : min_; }
  uint64_t max_nanos() const { return max_; }
  double mean_nanos() const;

  // The value at `percentile` (0..100]: the highest value of the bucket that
  // holds the ceil(percentile% * count)-th smallest value, capped by the
  // maximum recorded. 0 when empty.
  uint64_t Percentile(double percentile) const;

  // The bucket of `nanos`, and the smallest and largest value a bucket holds.
  // Exposed for tests.
  static size_t BucketOf(uint64_t nanos);
  static uint64_t BucketLow(size_t bucket);
  static uint64_t BucketHigh(size_t bucket);

 private:
  std::array<uint64_t, kBuckets> counts_;
  uint64_t count_ = 0;
  uint64_t min_ = UINT64_MAX;
  uint64_t max_ = 0;
  // Sum in double: 2^64 ns would overflow after 584 years of latency, but a
  // double cannot overflow and the mean needs no more precision.
  double sum_ = 0;
};

}  // namespace conclave::bench
