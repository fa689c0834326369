#include "base/clock.h"

#include <gtest/gtest.h>

namespace conclave {
namespace {

using std::chrono::milliseconds;

TEST(SimClockTest, OnlyMovesWhenAdvanced) {
  SimClock clock;
  Duration t0 = clock.Monotonic();
  EXPECT_EQ(clock.Monotonic(), t0);
  clock.Advance(milliseconds(5));
  EXPECT_EQ(clock.Monotonic() - t0, milliseconds(5));
  int64_t wall = clock.WallNanos();
  clock.Advance(milliseconds(1));
  EXPECT_EQ(clock.WallNanos() - wall, 1'000'000);
}

TEST(SimClockTest, TwoClocksAdvancedAlikeAgree) {
  SimClock a(Duration(42));
  SimClock b(Duration(42));
  for (int i = 1; i <= 100; ++i) {
    a.Advance(Duration(i));
    b.Advance(Duration(i));
  }
  EXPECT_EQ(a.Monotonic(), b.Monotonic());
  EXPECT_EQ(a.WallNanos(), b.WallNanos());
}

TEST(SimClockDeathTest, RefusesToGoBack) {
  SimClock clock;
  EXPECT_DEATH(clock.Advance(Duration(-1)), "CHECK failed");
}

TEST(RealClockTest, MonotonicNeverGoesBack) {
  RealClock& clock = RealClock::Get();
  Duration prev = clock.Monotonic();
  for (int i = 0; i < 1000; ++i) {
    Duration now = clock.Monotonic();
    EXPECT_GE(now, prev);
    prev = now;
  }
  EXPECT_GT(clock.WallNanos(), 1'600'000'000'000'000'000);
}

}  // namespace
}  // namespace conclave
