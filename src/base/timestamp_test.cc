// Timestamp (timestamp.h): its order, Next/Prev with their carries, and an
// encoding that sorts like the timestamps and refuses any other length.
#include "base/timestamp.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "base/random.h"

namespace conclave {
namespace {

// Mostly values at the edges, where carries and sign mistakes hide.
Timestamp RandomTimestamp(Random& rnd) {
  static constexpr uint64_t kWalls[] = {0, 1, 2, UINT64_MAX - 1, UINT64_MAX, 1ULL << 63};
  static constexpr uint32_t kLogicals[] = {0, 1, UINT32_MAX - 1, UINT32_MAX, 1U << 31};
  Timestamp t;
  t.wall_nanos = rnd.OneIn(2) ? kWalls[rnd.Uniform(std::size(kWalls))] : rnd.Next();
  t.logical = rnd.OneIn(2) ? kLogicals[rnd.Uniform(std::size(kLogicals))]
                           : static_cast<uint32_t>(rnd.Next());
  return t;
}

std::string Encode(Timestamp t) {
  std::string s;
  t.AppendTo(&s);
  return s;
}

TEST(TimestampTest, OrdersByWallThenLogical) {
  EXPECT_LT((Timestamp{1, 5}), (Timestamp{2, 0}));
  EXPECT_LT((Timestamp{2, 0}), (Timestamp{2, 1}));
  EXPECT_EQ((Timestamp{2, 1}), (Timestamp{2, 1}));
  EXPECT_GT((Timestamp{3, 0}), (Timestamp{2, UINT32_MAX}));
  EXPECT_LE(Timestamp::Zero(), (Timestamp{0, 0}));
  EXPECT_GE(Timestamp::Max(), (Timestamp{UINT64_MAX, 7}));
  EXPECT_NE((Timestamp{1, 0}), (Timestamp{0, 1}));
}

TEST(TimestampTest, ZeroMaxAndOracle) {
  EXPECT_TRUE(Timestamp::Zero().IsZero());
  EXPECT_TRUE(Timestamp{}.IsZero());
  EXPECT_FALSE((Timestamp{0, 1}).IsZero());
  EXPECT_FALSE((Timestamp{1, 0}).IsZero());
  EXPECT_EQ(Timestamp::Max(), (Timestamp{UINT64_MAX, UINT32_MAX}));
  EXPECT_EQ(Timestamp::FromOracle(42), (Timestamp{42, 0}));
  EXPECT_LT(Timestamp::FromOracle(42), Timestamp::FromOracle(43));
}

TEST(TimestampTest, NextAndPrevCarry) {
  EXPECT_EQ((Timestamp{5, 7}).Next(), (Timestamp{5, 8}));
  EXPECT_EQ((Timestamp{5, UINT32_MAX}).Next(), (Timestamp{6, 0}));
  EXPECT_EQ((Timestamp{5, 8}).Prev(), (Timestamp{5, 7}));
  EXPECT_EQ((Timestamp{6, 0}).Prev(), (Timestamp{5, UINT32_MAX}));
  EXPECT_EQ(Timestamp::Zero().Next(), (Timestamp{0, 1}));
  EXPECT_EQ(Timestamp::Max().Prev(), (Timestamp{UINT64_MAX, UINT32_MAX - 1}));
}

TEST(TimestampTest, NextIsTheImmediateSuccessor) {
  SeededRandom rnd(21);
  for (int i = 0; i < 5000; ++i) {
    const Timestamp t = RandomTimestamp(rnd);
    if (t != Timestamp::Max()) {
      const Timestamp n = t.Next();
      ASSERT_LT(t, n);
      ASSERT_EQ(n.Prev(), t);
    }
    if (!t.IsZero()) {
      const Timestamp p = t.Prev();
      ASSERT_LT(p, t);
      ASSERT_EQ(p.Next(), t);
    }
  }
}

TEST(TimestampDeathTest, NoSuccessorOfMaxNoPredecessorOfZero) {
  EXPECT_DEATH((void)Timestamp::Max().Next(), "no timestamp follows");
  EXPECT_DEATH((void)Timestamp::Zero().Prev(), "no timestamp precedes");
}

TEST(TimestampTest, ToString) {
  EXPECT_EQ(Timestamp::Zero().ToString(), "0.0");
  EXPECT_EQ((Timestamp{1700000000000000000ULL, 3}).ToString(), "1700000000000000000.3");
  EXPECT_EQ(Timestamp::Max().ToString(), "18446744073709551615.4294967295");
}

TEST(TimestampTest, EncodingIsBigEndianTwelveBytes) {
  const std::string e = Encode(Timestamp{0x0102030405060708ULL, 0x090a0b0c});
  EXPECT_EQ(e, std::string("\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c"));
  EXPECT_EQ(Encode(Timestamp::Zero()), std::string(12, '\0'));
  EXPECT_EQ(Encode(Timestamp::Max()), std::string(12, '\xff'));
}

TEST(TimestampTest, EncodingRoundTripsAndSortsLikeTimestamps) {
  SeededRandom rnd(22);
  std::vector<Timestamp> ts;
  for (int i = 0; i < 3000; ++i)
    ts.push_back(RandomTimestamp(rnd));
  for (const Timestamp& t : ts) {
    const std::string e = Encode(t);
    ASSERT_EQ(e.size(), Timestamp::kEncodedBytes);
    auto d = Timestamp::Decode(e);
    ASSERT_TRUE(d.has_value());
    ASSERT_EQ(*d, t);
  }
  for (size_t i = 1; i < ts.size(); ++i) {
    const Timestamp& a = ts[i - 1];
    const Timestamp& b = ts[i];
    ASSERT_EQ(a < b, Encode(a) < Encode(b)) << a.ToString() << " " << b.ToString();
    ASSERT_EQ(a == b, Encode(a) == Encode(b));
  }
}

TEST(TimestampTest, DecodeRefusesOtherLengths) {
  const std::string e = Encode(Timestamp{9, 9});
  EXPECT_FALSE(Timestamp::Decode("").has_value());
  EXPECT_FALSE(Timestamp::Decode(std::string_view(e).substr(0, 11)).has_value());
  EXPECT_FALSE(Timestamp::Decode(e + "x").has_value());
}

}  // namespace
}  // namespace conclave
