#include "base/rate_limiter.h"

#include <gtest/gtest.h>

namespace conclave {
namespace {

using std::chrono::milliseconds;

TEST(RateLimiterTest, PacesBytesToTheRate) {
  RateLimiter r(1000, 0);  // 1,000 bytes a second, no burst
  EXPECT_EQ(r.Reserve(500, milliseconds(0)), milliseconds(500));
  // The next caller queues behind the first.
  EXPECT_EQ(r.Reserve(500, milliseconds(0)), milliseconds(1000));
  EXPECT_EQ(r.Reserve(250, milliseconds(900)), milliseconds(350));
  // Idle time is not saved up beyond the burst.
  EXPECT_EQ(r.Reserve(500, milliseconds(5000)), milliseconds(500));
}

TEST(RateLimiterTest, ABurstGoesAtOnceAfterAPause) {
  RateLimiter r(1000, 1000);
  EXPECT_EQ(r.Reserve(500, milliseconds(0)), milliseconds(0));
  EXPECT_EQ(r.Reserve(500, milliseconds(0)), milliseconds(0));
  EXPECT_EQ(r.Reserve(500, milliseconds(0)), milliseconds(500));
  EXPECT_EQ(r.Reserve(1000, milliseconds(10'000)), milliseconds(0));
  EXPECT_EQ(r.Reserve(2000, milliseconds(10'000)), milliseconds(2000));
}

}  // namespace
}  // namespace conclave
