#include "base/rate_limiter.h"

#include <algorithm>

#include "base/assert.h"

namespace conclave {

RateLimiter::RateLimiter(uint64_t bytes_per_second, uint64_t burst)
    : nanos_per_byte_(1e9 / static_cast<double>(bytes_per_second)),
      burst_(static_cast<int64_t>(static_cast<double>(burst) * nanos_per_byte_)) {
  CHECK_MSG(bytes_per_second > 0, "a rate limiter needs a rate");
}

Duration RateLimiter::Reserve(uint64_t bytes, Duration now) {
  const Duration cost(static_cast<int64_t>(static_cast<double>(bytes) * nanos_per_byte_));
  std::lock_guard<std::mutex> lock(mu_);
  // An idle bucket refills up to the burst, no further.
  paid_until_ = std::max(paid_until_, now) + cost;
  return std::max(Duration{0}, paid_until_ - now - burst_);
}

}  // namespace conclave
