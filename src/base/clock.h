// Clock: where Conclave reads time.
//
// Nothing outside src/base and src/server reads the system clock directly;
// code that needs time takes a Clock&. RealClock reads the operating system;
// SimClock is advanced by hand, so a simulation decides exactly when every
// timer fires and replays the same way from the same seed.
//
// Monotonic time measures intervals (timeouts, ticks, latency). Wall time is
// only for humans and for etcd fields that carry it.
//
// Thread-safety: RealClock is thread-safe. SimClock is thread-safe for reads,
// but a simulation advances it from its single thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace conclave {

using Duration = std::chrono::nanoseconds;

class Clock {
 public:
  virtual ~Clock() = default;
  // Monotonic time since an arbitrary, fixed origin. Never goes backwards.
  virtual Duration Monotonic() const = 0;
  // Nanoseconds since the Unix epoch. May jump.
  virtual int64_t WallNanos() const = 0;
};

class RealClock final : public Clock {
 public:
  Duration Monotonic() const override;
  int64_t WallNanos() const override;
  // The process-wide instance.
  static RealClock& Get();
};

class SimClock final : public Clock {
 public:
  explicit SimClock(Duration start = Duration(0),
                    int64_t wall_start_nanos = 1'700'000'000'000'000'000)
      : now_(start.count()), wall_offset_(wall_start_nanos - start.count()) {}

  Duration Monotonic() const override { return Duration(now_.load(std::memory_order_acquire)); }
  int64_t WallNanos() const override { return now_.load(std::memory_order_acquire) + wall_offset_; }

  // Moves time forward by `d` (which must not be negative).
  void Advance(Duration d);

 private:
  std::atomic<int64_t> now_;
  int64_t wall_offset_;
};

}  // namespace conclave
