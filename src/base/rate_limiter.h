// RateLimiter: paces a flow of bytes shared by several senders to a rate,
// with a burst allowance (a token bucket, kept as the time the bucket's
// debt is paid off). Reserve takes the bytes and says how long the caller
// waits before sending them; callers that reserve while others wait queue
// behind them.
//
// Thread-safety: every method is thread-safe.
#pragma once

#include <cstdint>
#include <mutex>

#include "base/clock.h"

namespace conclave {

class RateLimiter {
 public:
  // `bytes_per_second` > 0; up to `burst` bytes go at once after a pause.
  RateLimiter(uint64_t bytes_per_second, uint64_t burst);

  // Takes `bytes` at `now` (a monotonic reading); returns how long to wait
  // before sending them (zero: at once).
  Duration Reserve(uint64_t bytes, Duration now);

 private:
  const double nanos_per_byte_;
  const Duration burst_;
  std::mutex mu_;
  Duration paid_until_{0};  // guarded by mu_
};

}  // namespace conclave
