#include "base/coding.h"

#include <gtest/gtest.h>

#include "base/random.h"

namespace conclave {
namespace {

TEST(CodingTest, FixedRoundTrip) {
  std::string s;
  PutFixed32(&s, 0xdeadbeef);
  PutFixed64(&s, 0x0123456789abcdefULL);
  ASSERT_EQ(s.size(), 12u);
  Decoder d(s);
  uint32_t a;
  uint64_t b;
  ASSERT_TRUE(d.ReadFixed32(&a));
  ASSERT_TRUE(d.ReadFixed64(&b));
  EXPECT_EQ(a, 0xdeadbeefu);
  EXPECT_EQ(b, 0x0123456789abcdefULL);
  EXPECT_TRUE(d.empty());
  EXPECT_FALSE(d.ReadFixed32(&a));
}

TEST(CodingTest, BigEndianRoundTripAndOrder) {
  std::string s;
  PutBigEndian32(&s, 0x01020304);
  PutBigEndian64(&s, 0x0102030405060708ULL);
  EXPECT_EQ(s, std::string("\x01\x02\x03\x04\x01\x02\x03\x04\x05\x06\x07\x08"));
  Decoder d(s);
  uint32_t a;
  uint64_t b;
  ASSERT_TRUE(d.ReadBigEndian32(&a));
  ASSERT_TRUE(d.ReadBigEndian64(&b));
  EXPECT_EQ(a, 0x01020304u);
  EXPECT_EQ(b, 0x0102030405060708ULL);
  EXPECT_TRUE(d.empty());
  EXPECT_FALSE(d.ReadBigEndian32(&a));
  EXPECT_FALSE(d.ReadBigEndian64(&b));

  // The point of big-endian: the encodings sort like the numbers.
  SeededRandom rnd(11);
  for (int i = 0; i < 2000; ++i) {
    const uint64_t x = rnd.Next() >> rnd.Uniform(64);
    const uint64_t y = rnd.Next() >> rnd.Uniform(64);
    std::string ex;
    std::string ey;
    PutBigEndian64(&ex, x);
    PutBigEndian64(&ey, y);
    ASSERT_EQ(x < y, ex < ey) << x << " " << y;
    EXPECT_EQ(DecodeBigEndian64(ex.data()), x);
    std::string fx;
    std::string fy;
    PutBigEndian32(&fx, static_cast<uint32_t>(x));
    PutBigEndian32(&fy, static_cast<uint32_t>(y));
    ASSERT_EQ(static_cast<uint32_t>(x) < static_cast<uint32_t>(y), fx < fy);
    EXPECT_EQ(DecodeBigEndian32(fx.data()), static_cast<uint32_t>(x));
  }
}

TEST(CodingTest, VarintLengthMatchesEncoding) {
  SeededRandom rnd(12);
  std::vector<uint64_t> values = {0, 1, 127, 128, 16383, 16384, UINT64_MAX};
  for (int i = 0; i < 1000; ++i)
    values.push_back(rnd.Next() >> rnd.Uniform(64));
  for (uint64_t v : values) {
    std::string s;
    PutVarint64(&s, v);
    ASSERT_EQ(VarintLength(v), s.size()) << v;
  }
  EXPECT_EQ(VarintLength(0), 1u);
  EXPECT_EQ(VarintLength(UINT64_MAX), 10u);
}

TEST(CodingTest, VarintRoundTripRandom) {
  SeededRandom rnd(3);
  std::string s;
  std::vector<uint64_t> values = {0, 1, 127, 128, 16383, 16384, UINT64_MAX};
  for (int i = 0; i < 1000; ++i)
    values.push_back(rnd.Next() >> rnd.Uniform(64));
  for (uint64_t v : values)
    PutVarint64(&s, v);
  Decoder d(s);
  for (uint64_t v : values) {
    uint64_t got;
    ASSERT_TRUE(d.ReadVarint64(&got));
    ASSERT_EQ(got, v);
  }
  EXPECT_TRUE(d.empty());
}

TEST(CodingTest, MalformedVarintsFail) {
  // Truncated: continuation bit set on the last byte.
  Decoder truncated(std::string_view("\x80\x80", 2));
  uint64_t v;
  EXPECT_FALSE(truncated.ReadVarint64(&v));
  // Overlong: eleven bytes.
  std::string overlong(10, '\xff');
  overlong.push_back('\x01');
  Decoder d(overlong);
  EXPECT_FALSE(d.ReadVarint64(&v));
}

TEST(CodingTest, LengthPrefixed) {
  std::string s;
  PutLengthPrefixed(&s, "hello");
  PutLengthPrefixed(&s, "");
  Decoder d(s);
  std::string_view a;
  std::string_view b;
  ASSERT_TRUE(d.ReadLengthPrefixed(&a));
  ASSERT_TRUE(d.ReadLengthPrefixed(&b));
  EXPECT_EQ(a, "hello");
  EXPECT_EQ(b, "");
  // A length that runs past the end is refused.
  std::string bad;
  PutVarint64(&bad, 100);
  bad += "abc";
  Decoder e(bad);
  EXPECT_FALSE(e.ReadLengthPrefixed(&a));
}

TEST(PrefixEndTest, IncrementsTheLastByteThatCan) {
  EXPECT_EQ(PrefixEnd("a"), "b");
  EXPECT_EQ(PrefixEnd("abc"), "abd");
  EXPECT_EQ(PrefixEnd("a\xff"), "b");
  EXPECT_EQ(PrefixEnd("a\xff\xff"), "b");
  EXPECT_EQ(PrefixEnd(std::string("a\0", 2)), "a\x01");
  EXPECT_EQ(PrefixEnd("\xfe\xff"), "\xff");
  // No key follows an all-0xff prefix: select to the end.
  EXPECT_EQ(PrefixEnd("\xff"), std::string(1, '\0'));
  EXPECT_EQ(PrefixEnd("\xff\xff"), std::string(1, '\0'));
  EXPECT_EQ(PrefixEnd(""), std::string(1, '\0'));
}

}  // namespace
}  // namespace conclave
