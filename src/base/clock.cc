#include "base/clock.h"

#include "base/assert.h"

namespace conclave {

Duration RealClock::Monotonic() const {
  return std::chrono::duration_cast<Duration>(std::chrono::steady_clock::now().time_since_epoch());
}

int64_t RealClock::WallNanos() const {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

RealClock& RealClock::Get() {
  static RealClock clock;
  return clock;
}

void SimClock::Advance(Duration d) {
  CHECK_GE(d.count(), 0);
  now_.fetch_add(d.count(), std::memory_order_acq_rel);
}

}  // namespace conclave
