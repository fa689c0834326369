#include "base/random.h"

#include <gtest/gtest.h>

#include <vector>

namespace conclave {
namespace {

TEST(SeededRandomTest, SameSeedSameSequence) {
  SeededRandom a(12345);
  SeededRandom b(12345);
  for (int i = 0; i < 10000; ++i)
    ASSERT_EQ(a.Next(), b.Next());
}

TEST(SeededRandomTest, DifferentSeedsDiffer) {
  SeededRandom a(1);
  SeededRandom b(2);
  int same = 0;
  for (int i = 0; i < 1000; ++i)
    same += a.Next() == b.Next();
  EXPECT_LT(same, 2);
}

// Pins the generator: a change here silently breaks replay of every recorded
// simulator seed, so it must be deliberate.
TEST(SeededRandomTest, SequenceIsStableAcrossBuilds) {
  SeededRandom r(0);
  std::vector<uint64_t> got;
  for (int i = 0; i < 3; ++i)
    got.push_back(r.Next());
  SeededRandom again(0);
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(again.Next(), got[i]);
  EXPECT_EQ(got[0], 0x99ec5f36cb75f2b4ULL);
}

TEST(RandomTest, UniformStaysInRangeAndCoversIt) {
  SeededRandom r(7);
  std::vector<int> hits(10, 0);
  for (int i = 0; i < 100000; ++i) {
    uint64_t v = r.Uniform(10);
    ASSERT_LT(v, 10u);
    hits[v]++;
  }
  for (int h : hits) {
    EXPECT_GT(h, 9000);
    EXPECT_LT(h, 11000);
  }
}

TEST(RandomTest, RangeIsInclusive) {
  SeededRandom r(9);
  bool saw_lo = false;
  bool saw_hi = false;
  for (int i = 0; i < 10000; ++i) {
    int64_t v = r.Range(-3, 3);
    ASSERT_GE(v, -3);
    ASSERT_LE(v, 3);
    saw_lo |= v == -3;
    saw_hi |= v == 3;
  }
  EXPECT_TRUE(saw_lo);
  EXPECT_TRUE(saw_hi);
}

TEST(RandomTest, BernoulliAndDoubles) {
  SeededRandom r(11);
  int yes = 0;
  for (int i = 0; i < 100000; ++i) {
    double d = r.NextDouble();
    ASSERT_GE(d, 0.0);
    ASSERT_LT(d, 1.0);
    yes += r.Bernoulli(0.25);
  }
  EXPECT_NEAR(yes / 100000.0, 0.25, 0.01);
  EXPECT_FALSE(r.Bernoulli(0));
  EXPECT_TRUE(r.Bernoulli(1));
}

TEST(RealRandomTest, ProducesValues) {
  RealRandom r;
  uint64_t a = r.Next();
  uint64_t b = r.Next();
  EXPECT_NE(a, b);
}

}  // namespace
}  // namespace conclave
