// The RocksDB key and value encodings of the MVCC store (keys.h): they must
// round-trip, sort exactly like the raw user keys and revisions they encode,
// and reject malformed bytes without crashing.
#include "mvcc/keys.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "base/random.h"

namespace conclave::mvcc::keys {
namespace {

constexpr uint64_t kGroup = 7;

// Random user keys drawn mostly from the bytes that the escaping treats
// specially (0x00, 0x01, 0xff), so that collisions and shared prefixes are
// common.
std::string RandomKey(Random& rnd, size_t max_len) {
  static constexpr char kAlphabet[] = {'\x00', '\x01', '\xff', '\xfe', 'a', 'b'};
  const size_t len = 1 + rnd.Uniform(max_len);
  std::string k;
  for (size_t i = 0; i < len; ++i) {
    if (rnd.OneIn(4)) {
      k.push_back(static_cast<char>(rnd.Uniform(256)));
    } else {
      k.push_back(kAlphabet[rnd.Uniform(sizeof(kAlphabet))]);
    }
  }
  return k;
}

std::string RandomBytes(Random& rnd, size_t max_len) {
  const size_t len = rnd.Uniform(max_len + 1);
  std::string s;
  for (size_t i = 0; i < len; ++i)
    s.push_back(static_cast<char>(rnd.Uniform(256)));
  return s;
}

Revision RandomRevision(Random& rnd) {
  return Revision{rnd.Range(1, 1'000'000), rnd.Range(0, 1000)};
}

int Sign(int v) {
  return v < 0 ? -1 : (v > 0 ? 1 : 0);
}

TEST(KeysTest, VersionKeyRoundTrips) {
  SeededRandom rnd(1);
  for (int i = 0; i < 5000; ++i) {
    const std::string k = RandomKey(rnd, 12);
    const Revision rev = RandomRevision(rnd);
    auto d = DecodeVersionKey(VersionKey(kGroup, k, rev));
    ASSERT_TRUE(d.has_value());
    EXPECT_EQ(d->user_key, k);
    EXPECT_EQ(d->rev, rev);
  }
}

TEST(KeysTest, VersionKeyRoundTripsExtremeRevisions) {
  for (Revision rev : {Revision{1, 0}, Revision{INT64_MAX, INT64_MAX}, Revision{INT64_MAX, 0},
                       Revision{0, 0}, Revision{1, INT64_MAX}}) {
    auto d = DecodeVersionKey(VersionKey(kGroup, std::string("\0\xff\0", 3), rev));
    ASSERT_TRUE(d.has_value());
    EXPECT_EQ(d->user_key, std::string("\0\xff\0", 3));
    EXPECT_EQ(d->rev, rev);
  }
}

TEST(KeysTest, EncodedOrderEqualsRawByteOrder) {
  SeededRandom rnd(2);
  for (int i = 0; i < 20000; ++i) {
    const std::string a = RandomKey(rnd, 6);
    const std::string b = RandomKey(rnd, 6);
    const Revision ra = RandomRevision(rnd);
    const Revision rb = RandomRevision(rnd);
    const std::string ea = VersionKey(kGroup, a, ra);
    const std::string eb = VersionKey(kGroup, b, rb);
    if (a != b) {
      // std::string compares bytes as unsigned, like memcmp and RocksDB.
      ASSERT_EQ(Sign(a.compare(b)), Sign(ea.compare(eb)))
          << testing::PrintToString(a) << " vs " << testing::PrintToString(b);
      // No version of one key falls between the versions of another.
      ASSERT_EQ(Sign(a.compare(b)), Sign(VersionPrefixEnd(kGroup, a).compare(eb)));
    } else {
      // The same key: the newer revision sorts first.
      ASSERT_EQ(Sign(ea.compare(eb)), -Sign(ra < rb ? -1 : (rb < ra ? 1 : 0)));
    }
  }
}

TEST(KeysTest, SortingEncodedKeysSortsRawKeys) {
  SeededRandom rnd(3);
  std::vector<std::string> raw;
  for (int i = 0; i < 2000; ++i)
    raw.push_back(RandomKey(rnd, 5));
  std::sort(raw.begin(), raw.end());
  raw.erase(std::unique(raw.begin(), raw.end()), raw.end());
  std::vector<std::string> encoded;
  for (const std::string& k : raw)
    encoded.push_back(VersionKey(kGroup, k, Revision{5, 0}));
  std::sort(encoded.begin(), encoded.end());
  ASSERT_EQ(encoded.size(), raw.size());
  for (size_t i = 0; i < raw.size(); ++i) {
    auto d = DecodeVersionKey(encoded[i]);
    ASSERT_TRUE(d.has_value());
    ASSERT_EQ(d->user_key, raw[i]) << "position " << i;
  }
}

TEST(KeysTest, HandPickedKeysSortLikeRawBytes) {
  // Each key is greater than the one before it in raw byte order.
  const std::vector<std::string> ordered = {std::string("\0", 1),
                                            std::string("\0\0", 2),
                                            std::string("\0\x01", 2),
                                            std::string("\0\xff", 2),
                                            "\x01",
                                            "a",
                                            std::string("a\0", 2),
                                            std::string("a\0\0", 3),
                                            std::string("a\0b", 3),
                                            "a\x01",
                                            "a\xfe",
                                            "a\xff",
                                            "a\xff\xff",
                                            "b",
                                            "\xff",
                                            "\xff\xff"};
  for (size_t i = 1; i < ordered.size(); ++i) {
    ASSERT_LT(ordered[i - 1], ordered[i]) << "the list itself is out of order at " << i;
    // The older revision of the smaller key still sorts before the newest of the larger.
    EXPECT_LT(VersionKey(kGroup, ordered[i - 1], Revision{1, 0}),
              VersionKey(kGroup, ordered[i], Revision{INT64_MAX, INT64_MAX}))
        << "at " << i;
    EXPECT_LT(VersionPrefixEnd(kGroup, ordered[i - 1]), VersionPrefix(kGroup, ordered[i]));
  }
}

TEST(KeysTest, VersionsOfOneKeyLieWithinItsPrefix) {
  SeededRandom rnd(4);
  for (int i = 0; i < 2000; ++i) {
    const std::string k = RandomKey(rnd, 8);
    const Revision rev = RandomRevision(rnd);
    const std::string e = VersionKey(kGroup, k, rev);
    EXPECT_EQ(e.compare(0, VersionPrefix(kGroup, k).size(), VersionPrefix(kGroup, k)), 0);
    EXPECT_LT(e, VersionPrefixEnd(kGroup, k));
    EXPECT_GE(e, VersionSpaceStart(kGroup));
    EXPECT_LT(e, VersionSpaceEnd(kGroup));
  }
}

TEST(KeysTest, VersionSeekKeyLandsOnNewestVersionAtOrBefore) {
  const std::string k = std::string("k\0", 2);
  const std::string seek = VersionSeekKey(kGroup, k, 10);
  for (int64_t sub : {0, 1, 1000}) {
    // Every version at main 10 is at or after the seek key...
    EXPECT_LE(seek, VersionKey(kGroup, k, Revision{10, sub}));
    // ... and every version after main 10 before it.
    EXPECT_GT(seek, VersionKey(kGroup, k, Revision{11, sub}));
  }
  EXPECT_LT(seek, VersionKey(kGroup, k, Revision{9, 0}));
  EXPECT_GT(seek, VersionPrefix(kGroup, k));
}

TEST(KeysTest, GroupsAndSpacesDoNotOverlap) {
  const std::string low = VersionKey(kGroup, std::string("\0", 1), Revision{1, 0});
  const std::string high = VersionKey(kGroup, "\xff\xff\xff", Revision{1, 0});
  EXPECT_LT(VersionSpaceStart(kGroup), low);
  EXPECT_LT(high, VersionSpaceEnd(kGroup));
  EXPECT_LE(VersionSpaceEnd(kGroup), MetaKey(kGroup, "applied_index"));
  EXPECT_LT(MetaKey(kGroup, "revision"), EventSpaceStart(kGroup));
  EXPECT_LT(EventKey(kGroup, Revision{INT64_MAX, INT64_MAX}), EventSpaceEnd(kGroup));
  EXPECT_LT(EventSpaceEnd(kGroup), VersionSpaceStart(kGroup + 1));
  EXPECT_LT(VersionSpaceEnd(kGroup - 1), VersionSpaceStart(kGroup));
  EXPECT_EQ(GroupPrefix(kGroup).size(), 8u);
  EXPECT_EQ(low.compare(0, 8, GroupPrefix(kGroup)), 0);
}

TEST(KeysTest, EventKeyRoundTripsAndSortsByRevision) {
  SeededRandom rnd(5);
  for (int i = 0; i < 5000; ++i) {
    const Revision a = RandomRevision(rnd);
    const Revision b = RandomRevision(rnd);
    auto da = DecodeEventKey(EventKey(kGroup, a));
    ASSERT_TRUE(da.has_value());
    EXPECT_EQ(*da, a);
    EXPECT_EQ(a < b, EventKey(kGroup, a) < EventKey(kGroup, b));
    EXPECT_EQ(a == b, EventKey(kGroup, a) == EventKey(kGroup, b));
    EXPECT_GE(EventKey(kGroup, a), EventSpaceStart(kGroup));
    EXPECT_LT(EventKey(kGroup, a), EventSpaceEnd(kGroup));
  }
}

TEST(KeysTest, VersionValueRoundTrips) {
  SeededRandom rnd(6);
  for (int i = 0; i < 2000; ++i) {
    VersionValue v;
    v.create_revision = rnd.Range(1, INT64_MAX);
    v.version = rnd.Range(1, INT64_MAX);
    v.lease = rnd.OneIn(3) ? 0 : rnd.Range(INT64_MIN, INT64_MAX);
    v.value = RandomBytes(rnd, 40);
    auto d = DecodeVersionValue(EncodeVersionValue(v));
    ASSERT_TRUE(d.has_value());
    EXPECT_FALSE(d->tombstone);
    EXPECT_EQ(d->create_revision, v.create_revision);
    EXPECT_EQ(d->version, v.version);
    EXPECT_EQ(d->lease, v.lease);
    EXPECT_EQ(d->value, v.value);
  }
  VersionValue tomb;
  tomb.tombstone = true;
  tomb.value = "ignored";
  auto d = DecodeVersionValue(EncodeVersionValue(tomb));
  ASSERT_TRUE(d.has_value());
  EXPECT_TRUE(d->tombstone);
  EXPECT_EQ(d->value, "");
}

TEST(KeysTest, EventRoundTrips) {
  SeededRandom rnd(7);
  for (int i = 0; i < 2000; ++i) {
    Event e;
    e.type = rnd.OneIn(2) ? EventType::kPut : EventType::kDelete;
    e.kv.key = RandomKey(rnd, 10);
    e.kv.create_revision = rnd.Range(0, INT64_MAX);
    e.kv.mod_revision = rnd.Range(1, INT64_MAX);
    e.kv.version = rnd.Range(0, INT64_MAX);
    e.kv.lease = rnd.Range(INT64_MIN, INT64_MAX);
    e.kv.value = RandomBytes(rnd, 40);
    auto d = DecodeEvent(EncodeEvent(e));
    ASSERT_TRUE(d.has_value());
    EXPECT_EQ(*d, e);
  }
}

TEST(KeysTest, MalformedVersionKeysAreRejected) {
  const std::string good = VersionKey(kGroup, std::string("a\0b", 3), Revision{3, 1});
  ASSERT_TRUE(DecodeVersionKey(good).has_value());
  // Every truncation loses the terminator or part of the revision.
  for (size_t n = 0; n < good.size(); ++n) {
    EXPECT_FALSE(DecodeVersionKey(good.substr(0, n)).has_value()) << "length " << n;
  }
  // Wrong tag byte.
  std::string tagged = good;
  tagged[8] = 'r';
  EXPECT_FALSE(DecodeVersionKey(tagged).has_value());
  const std::string rev16(16, '\x01');
  const std::string head = GroupPrefix(kGroup) + "k";
  // 0x00 followed by neither 0xff (escape) nor 0x01 (terminator).
  EXPECT_FALSE(DecodeVersionKey(head + std::string("a\0\x02", 3) + rev16).has_value());
  // A terminator in the middle of the key.
  EXPECT_FALSE(DecodeVersionKey(head +
                                std::string("a\0\x01"
                                            "b\0\x01",
                                            6) +
                                rev16)
                   .has_value());
  // No terminator at all.
  EXPECT_FALSE(DecodeVersionKey(head + "abc" + rev16).has_value());
  // A lone 0x00 just before the revision.
  EXPECT_FALSE(DecodeVersionKey(head + std::string("ab\0", 3) + rev16).has_value());
  // An empty user key is well formed as an encoding.
  auto empty = DecodeVersionKey(head + std::string("\0\x01", 2) + rev16);
  ASSERT_TRUE(empty.has_value());
  EXPECT_EQ(empty->user_key, "");
}

TEST(KeysTest, MalformedEventKeysAreRejected) {
  const std::string good = EventKey(kGroup, Revision{9, 2});
  for (size_t n = 0; n < good.size(); ++n) {
    EXPECT_FALSE(DecodeEventKey(good.substr(0, n)).has_value()) << "length " << n;
  }
  EXPECT_FALSE(DecodeEventKey(good + "x").has_value());
  std::string tagged = good;
  tagged[8] = 'k';
  EXPECT_FALSE(DecodeEventKey(tagged).has_value());
}

TEST(KeysTest, MalformedValuesAreRejected) {
  VersionValue v;
  v.create_revision = 300;  // multi-byte varints
  v.version = 1ll << 40;
  v.lease = -1;  // ten-byte varint
  v.value = "payload";
  const std::string good = EncodeVersionValue(v);
  const size_t header = good.size() - v.value.size();
  // Cut anywhere before the value starts: a varint or the flag is missing.
  for (size_t n = 0; n < header; ++n) {
    EXPECT_FALSE(DecodeVersionValue(good.substr(0, n)).has_value()) << "length " << n;
  }
  EXPECT_FALSE(DecodeVersionValue(std::string(1, '\x02')).has_value());   // unknown flag
  EXPECT_FALSE(DecodeVersionValue(std::string("\x01x", 2)).has_value());  // tombstone + junk
  EXPECT_FALSE(DecodeVersionValue(std::string("\x00", 1) + std::string(11, '\x80')).has_value());
  EXPECT_FALSE(DecodeVersionValue(std::string("\x00", 1) + std::string(9, '\xff') + "\x02")
                   .has_value());  // tenth varint byte overflows 64 bits

  Event e;
  e.type = EventType::kDelete;
  e.kv.key = "key";
  e.kv.create_revision = 1000;
  e.kv.mod_revision = 1001;
  e.kv.version = 3;
  e.kv.lease = -5;
  e.kv.value = "v";
  const std::string event = EncodeEvent(e);
  const size_t event_header = event.size() - e.kv.value.size();
  for (size_t n = 0; n < event_header; ++n) {
    EXPECT_FALSE(DecodeEvent(event.substr(0, n)).has_value()) << "length " << n;
  }
  std::string bad_type = event;
  bad_type[0] = 2;
  EXPECT_FALSE(DecodeEvent(bad_type).has_value());
  // A key length running past the end.
  EXPECT_FALSE(DecodeEvent(std::string("\x00\x7f"
                                       "abc",
                                       5))
                   .has_value());
}

// Random and mutated bytes: the decoders must answer (value or nullopt)
// without crashing or tripping the sanitizers.
TEST(KeysTest, DecodersSurviveRandomBytes) {
  SeededRandom rnd(8);
  Event e;
  e.kv.key = "k";
  e.kv.value = "value";
  e.kv.mod_revision = 5;
  VersionValue v;
  v.create_revision = 4;
  v.version = 2;
  v.value = "value";
  const std::vector<std::string> seeds = {
      VersionKey(kGroup, std::string("a\0\xff", 3), Revision{12, 3}), EventKey(kGroup, {12, 3}),
      EncodeVersionValue(v), EncodeEvent(e)};
  for (int i = 0; i < 20000; ++i) {
    std::string bytes;
    if (rnd.OneIn(2)) {
      bytes = RandomBytes(rnd, 48);
      // Make the tag checks pass often enough to reach the deeper code.
      if (bytes.size() > 8 && rnd.OneIn(2)) bytes[8] = rnd.OneIn(2) ? 'k' : 'r';
    } else {
      bytes = seeds[rnd.Uniform(seeds.size())];
      const int flips = 1 + static_cast<int>(rnd.Uniform(3));
      for (int f = 0; f < flips && !bytes.empty(); ++f) {
        bytes[rnd.Uniform(bytes.size())] = static_cast<char>(rnd.Uniform(256));
      }
      if (rnd.OneIn(3)) bytes.resize(rnd.Uniform(bytes.size() + 1));
    }
    auto vk = DecodeVersionKey(bytes);
    if (vk) {
      // Whatever decodes re-encodes to the same bytes (the group aside).
      EXPECT_EQ(VersionKey(kGroup, vk->user_key, vk->rev).substr(8), bytes.substr(8));
    }
    auto ek = DecodeEventKey(bytes);
    if (ek) {
      EXPECT_EQ(EventKey(kGroup, *ek).substr(8), bytes.substr(8));
    }
    (void)DecodeVersionValue(bytes);
    (void)DecodeEvent(bytes);
  }
}

}  // namespace
}  // namespace conclave::mvcc::keys