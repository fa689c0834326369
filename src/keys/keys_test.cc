// The node's key layout (keys.h): exact bytes of version 1, round trips of
// every key and value kind, the ordering guarantees the layout exists for,
// spans that hold exactly the keys of their range, and decoders that refuse
// (without crashing) whatever the encoders would not produce.
#include "keys/keys.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "base/random.h"

namespace conclave::keys {
namespace {

using namespace std::string_literals;  // NOLINT(google-build-using-namespace)

// Random user keys drawn mostly from the bytes that the escaping treats
// specially (0x00, 0x01, 0xff), short so that shared prefixes are common.
std::string RandomKey(Random& rnd, size_t max_len = 6) {
  static constexpr char kAlphabet[] = {'\x00', '\x01', '\x02', '\xff', '\xfe', 'a', 'b'};
  const size_t len = rnd.Uniform(max_len + 1);
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

uint64_t RandomU64(Random& rnd) {
  static constexpr uint64_t kEdges[] = {0, 1, 2, 0xff, 0x100, UINT64_MAX - 1, UINT64_MAX};
  return rnd.OneIn(3) ? kEdges[rnd.Uniform(std::size(kEdges))] : rnd.Next() >> rnd.Uniform(64);
}

uint32_t RandomU32(Random& rnd) {
  static constexpr uint32_t kEdges[] = {0, 1, 0xff, UINT32_MAX - 1, UINT32_MAX};
  return rnd.OneIn(3) ? kEdges[rnd.Uniform(std::size(kEdges))]
                      : static_cast<uint32_t>(rnd.Next() >> rnd.Uniform(32));
}

Timestamp RandomTimestamp(Random& rnd) {
  // A small wall range too, so that equal walls and logical ties happen.
  if (rnd.OneIn(2)) return Timestamp{rnd.Uniform(4), static_cast<uint32_t>(rnd.Uniform(4))};
  return Timestamp{RandomU64(rnd), RandomU32(rnd)};
}

TxnId RandomTxnId(Random& rnd) {
  TxnId id;
  for (auto& b : id.bytes)
    b = static_cast<uint8_t>(rnd.OneIn(2) ? rnd.Uniform(3) : rnd.Uniform(256));
  return id;
}

RangeId RandomRangeId(Random& rnd) {
  const uint64_t id = RandomU64(rnd);
  return id == 0 ? 1 : id;
}

Key RandomKeyOfAnyKind(Random& rnd) {
  switch (rnd.Uniform(6)) {
    case 0: {
      std::string raw = "\x00\x00\x00\x00\x00\x00\x00\x01"s + "k" + RandomKey(rnd);
      return EtcdKey{raw};
    }
    case 1: {
      std::string name = RandomKey(rnd);
      if (name.empty()) name = "x";
      return NodeLocalKey{name};
    }
    case 2:
      return RangeIdLocalKey{RandomRangeId(rnd), static_cast<RangeIdKind>(1 + rnd.Uniform(3))};
    case 3:
      return RangeLocalKey{RandomKey(rnd), RangeLocalKind::kTxnRecord, RandomTxnId(rnd)};
    case 4:
      return DataKey{RandomKey(rnd), VersionTag::kIntent, Timestamp::Zero()};
    default:
      return DataKey{RandomKey(rnd), VersionTag::kVersion, RandomTimestamp(rnd)};
  }
}

TxnRecord RandomTxnRecord(Random& rnd) {
  TxnRecord r;
  r.status = static_cast<TxnStatus>(1 + rnd.Uniform(4));
  r.write_timestamp = RandomTimestamp(rnd);
  r.read_timestamp = RandomTimestamp(rnd);
  r.epoch = RandomU32(rnd);
  r.priority = RandomU32(rnd);
  if (r.status == TxnStatus::kStaging) {
    const size_t n = rnd.Uniform(5);
    for (size_t i = 0; i < n; ++i)
      r.in_flight_writes.push_back(InFlightWrite{RandomKey(rnd), RandomU32(rnd)});
  }
  return r;
}

RangeDescriptor RandomDescriptor(Random& rnd) {
  RangeDescriptor d;
  d.range_id = RandomRangeId(rnd);
  d.start_key = RandomKey(rnd);
  if (!rnd.OneIn(4)) {
    std::string end = RandomKey(rnd);
    if (end < d.start_key) std::swap(end, d.start_key);
    if (end == d.start_key) end.push_back(static_cast<char>(rnd.Uniform(256)));
    d.end_key = end;
  }
  d.generation = RandomU64(rnd);
  const size_t n = rnd.Uniform(6);
  for (size_t i = 0; i < n; ++i) {
    d.replicas.push_back(
        ReplicaDescriptor{100 + i * 7 + rnd.Uniform(7), 1 + i * 3 + rnd.Uniform(3),
                          rnd.OneIn(3) ? ReplicaType::kLearner : ReplicaType::kVoter});
  }
  d.next_replica_id = 1 + 3 * n + rnd.Uniform(5);
  d.sticky = rnd.OneIn(3);
  if (rnd.OneIn(3)) d.frozen_into = RandomRangeId(rnd);
  if (rnd.OneIn(3)) d.merging_from = RandomRangeId(rnd);
  return d;
}

std::vector<uint64_t> RandomIds(Random& rnd) {
  std::vector<uint64_t> ids(rnd.Uniform(5));
  for (auto& id : ids)
    id = RandomU64(rnd);
  return ids;
}

// ---------------------------------------------------------------- bytes

TEST(KeysFormatTest, VersionOneBytes) {
  // These are the bytes docs/KEYS.md draws; changing any of them is a new
  // format version.
  EXPECT_EQ(kFormatVersion, 1u);
  EXPECT_EQ(FormatVersionKey(), "\x01"s + "format_version");
  EXPECT_EQ(EncodeFormatVersion(1), "\x08\x00\x00\x00\x01"s);
  EXPECT_EQ(ReplicaTombstoneKey(0x0102),
            "\x01"s + "replica_tombstone/" + "\x00\x00\x00\x00\x00\x00\x01\x02"s);
  EXPECT_EQ(AppliedStateKey(5), "\x02\x00\x00\x00\x00\x00\x00\x00\x05\x01"s);
  EXPECT_EQ(RaftConfigKey(5), "\x02\x00\x00\x00\x00\x00\x00\x00\x05\x02"s);
  EXPECT_EQ(RangeDescriptorKey(5), "\x02\x00\x00\x00\x00\x00\x00\x00\x05\x03"s);

  TxnId id;
  for (size_t i = 0; i < TxnId::kBytes; ++i)
    id.bytes[i] = static_cast<uint8_t>(0xa0 + i);
  EXPECT_EQ(id.ToString(), "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf");
  EXPECT_EQ(TxnRecordKey("a\0b"s, id),
            "\x03"
            "a\x00\xff"
            "b\x00\x01\x01"s +
                "\xa0\xa1\xa2\xa3\xa4\xa5\xa6\xa7"
                "\xa8\xa9\xaa\xab\xac\xad\xae\xaf"s);

  EXPECT_EQ(IntentKey("a\0b"s),
            "\x04"
            "a\x00\xff"
            "b\x00\x01\x01"s);
  EXPECT_EQ(IntentKey(""), "\x04\x00\x01\x01"s);
  // wall 1, logical 2 inverted: fe ff ff ff ff ff ff ff ... and ff ff ff fd.
  EXPECT_EQ(VersionKey("k", Timestamp{0x0100000000000000ULL, 2}),
            "\x04k\x00\x01\x02"s + "\xfe\xff\xff\xff\xff\xff\xff\xff" + "\xff\xff\xff\xfd"s);
  EXPECT_EQ(VersionKey("k", Timestamp::Zero()), "\x04k\x00\x01\x02"s + std::string(12, '\xff'));
  EXPECT_EQ(VersionKey("k", Timestamp::Max()), "\x04k\x00\x01\x02"s + std::string(12, '\0'));

  EXPECT_EQ(EncodeVersionValue({false, "v"}), "\x01v"s);
  EXPECT_EQ(EncodeVersionValue({true, ""}), "\x02"s);
  EXPECT_EQ(EncodeAppliedState({7, 3, Timestamp{9, 1}, 258}),
            "\x06"s + "\x00\x00\x00\x00\x00\x00\x00\x07"s + "\x00\x00\x00\x00\x00\x00\x00\x03"s +
                "\x00\x00\x00\x00\x00\x00\x00\x09\x00\x00\x00\x01"s +
                "\x00\x00\x00\x00\x00\x00\x01\x02"s);
  IntentValue intent{id, Timestamp{9, 1}, "ab", 4, 5};
  EXPECT_EQ(EncodeIntentValue(intent), "\x03"s + std::string(id.bytes.begin(), id.bytes.end()) +
                                           "\x00\x00\x00\x00\x00\x00\x00\x09\x00\x00\x00\x01"s +
                                           "\x02"
                                           "ab" +
                                           "\x00\x00\x00\x04\x00\x00\x00\x05"s);
  TxnRecord staging{TxnStatus::kStaging, Timestamp{9, 1}, Timestamp{8, 0}, 2, 3, {{"x", 6}}};
  EXPECT_EQ(EncodeTxnRecord(staging),
            "\x04\x01\x02"s + "\x00\x00\x00\x00\x00\x00\x00\x09\x00\x00\x00\x01"s +
                "\x00\x00\x00\x00\x00\x00\x00\x08\x00\x00\x00\x00"s +
                "\x00\x00\x00\x02\x00\x00\x00\x03"s + "\x01\x01x\x00\x00\x00\x06"s);
  RangeDescriptor d{5, "a", "m", 2, 4, {{11, 3, ReplicaType::kLearner}}};
  EXPECT_EQ(EncodeRangeDescriptor(d),
            "\x05"s + "\x00\x00\x00\x00\x00\x00\x00\x05"s +
                "\x01"
                "a" +
                "\x01"
                "m" +
                "\x00\x00\x00\x00\x00\x00\x00\x02"s + "\x00\x00\x00\x00\x00\x00\x00\x04"s + "\x01" +
                "\x00\x00\x00\x00\x00\x00\x00\x0b"s + "\x00\x00\x00\x00\x00\x00\x00\x03\x02"s);
  // The trailer, only when a flag is set.
  RangeDescriptor frozen = d;
  frozen.sticky = true;
  frozen.frozen_into = 7;
  frozen.merging_from = 9;
  EXPECT_EQ(EncodeRangeDescriptor(frozen), EncodeRangeDescriptor(d) + "\x01"s +
                                               "\x00\x00\x00\x00\x00\x00\x00\x07"s +
                                               "\x00\x00\x00\x00\x00\x00\x00\x09"s);
  EXPECT_EQ(DecodeRangeDescriptor(EncodeRangeDescriptor(d) + "\x00"s + std::string(16, '\0'))
                .status()
                .code(),
            StatusCode::kCorruption);
  EXPECT_EQ(DecodeRangeDescriptor(EncodeRangeDescriptor(d) + "\x02"s + std::string(16, '\0'))
                .status()
                .code(),
            StatusCode::kCorruption);
  RaftConfig c{{1}, {}, {}, {2}, true};
  EXPECT_EQ(EncodeRaftConfig(c), "\x07\x01"s + "\x01\x00\x00\x00\x00\x00\x00\x00\x01"s +
                                     "\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x02"s);
}

TEST(KeysFormatTest, EveryKeyStartsWithItsTag) {
  SeededRandom rnd(1);
  for (int i = 0; i < 2000; ++i) {
    const Key k = RandomKeyOfAnyKind(rnd);
    const std::string e = EncodeKey(k);
    ASSERT_FALSE(e.empty());
    auto tag = KeyTag(e);
    ASSERT_TRUE(tag.ok());
    ASSERT_EQ(static_cast<size_t>(*tag), k.index()) << DescribeKey(e);
  }
}

TEST(KeysFormatTest, EtcdGroupKeysFallInTheEtcdSpan) {
  // src/mvcc/keys.h puts the 8-byte big-endian group id first; the etcd
  // group (id 1) therefore starts with 0x00, and so does any group below
  // 2^56. Rebuilt by hand here: this module does not depend on mvcc.
  const std::string group1 = "\x00\x00\x00\x00\x00\x00\x00\x01"s;
  for (const std::string& k : {group1 + "m" + "revision", group1 + "k" + "foo\x00\x01"s,
                               group1 + "r" + std::string(16, '\x07'), group1 + "m"}) {
    EXPECT_TRUE(EtcdSpan().Contains(k));
    auto d = DecodeKey(k);
    ASSERT_TRUE(d.ok()) << d.status().ToString();
    ASSERT_TRUE(std::holds_alternative<EtcdKey>(*d));
    EXPECT_EQ(EncodeKey(*d), k);
  }
  const std::string largest = "\x00\xff\xff\xff\xff\xff\xff\xff"s + "m";
  EXPECT_TRUE(EtcdSpan().Contains(largest));
  EXPECT_FALSE(DecodeKey(group1).ok());  // no kind byte: not a key mvcc writes
}

// ---------------------------------------------------------------- round trips

TEST(KeysRoundTripTest, EveryKeyKind) {
  SeededRandom rnd(2);
  for (int i = 0; i < 20000; ++i) {
    const Key k = RandomKeyOfAnyKind(rnd);
    const std::string e = EncodeKey(k);
    auto d = DecodeKey(e);
    ASSERT_TRUE(d.ok()) << d.status().ToString();
    ASSERT_EQ(*d, k) << DescribeKey(e);
    // The typed decoders agree with DecodeKey.
    if (const auto* dk = std::get_if<DataKey>(&k)) {
      auto t = DecodeDataKey(e);
      ASSERT_TRUE(t.ok());
      ASSERT_EQ(*t, *dk);
    } else if (const auto* rk = std::get_if<RangeLocalKey>(&k)) {
      auto t = DecodeRangeLocalKey(e);
      ASSERT_TRUE(t.ok());
      ASSERT_EQ(*t, *rk);
    } else if (const auto* ik = std::get_if<RangeIdLocalKey>(&k)) {
      auto t = DecodeRangeIdLocalKey(e);
      ASSERT_TRUE(t.ok());
      ASSERT_EQ(*t, *ik);
    } else if (const auto* nk = std::get_if<NodeLocalKey>(&k)) {
      auto t = DecodeNodeLocalKey(e);
      ASSERT_TRUE(t.ok());
      ASSERT_EQ(*t, *nk);
    }
  }
}

// The decoded key, or a sentinel that no expectation matches when decoding
// fails (so a broken encoder fails the test instead of aborting the binary).
Key Decoded(const std::string& e) {
  auto d = DecodeKey(e);
  EXPECT_TRUE(d.ok()) << d.status().ToString();
  return d.ok() ? *d : Key(NodeLocalKey{"<undecodable>"});
}

TEST(KeysRoundTripTest, Shorthands) {
  TxnId id;
  id.bytes[15] = 9;
  EXPECT_EQ(Decoded(AppliedStateKey(3)), Key(RangeIdLocalKey{3, RangeIdKind::kAppliedState}));
  EXPECT_EQ(Decoded(RaftConfigKey(3)), Key(RangeIdLocalKey{3, RangeIdKind::kRaftConfig}));
  EXPECT_EQ(Decoded(RangeDescriptorKey(3)), Key(RangeIdLocalKey{3, RangeIdKind::kRangeDescriptor}));
  EXPECT_EQ(Decoded(TxnRecordKey("a", id)),
            Key(RangeLocalKey{"a", RangeLocalKind::kTxnRecord, id}));
  EXPECT_EQ(Decoded(IntentKey("a")), Key(DataKey{"a", VersionTag::kIntent, {}}));
  EXPECT_EQ(Decoded(VersionKey("a", {4, 5})), Key(DataKey{"a", VersionTag::kVersion, {4, 5}}));
  EXPECT_EQ(Decoded(FormatVersionKey()), Key(NodeLocalKey{"format_version"}));
  EXPECT_EQ(Decoded(NodeLocalKeyFor(kBootCounterName)), Key(NodeLocalKey{"boot_counter"}));
}

TEST(KeysRoundTripTest, EveryValueKind) {
  SeededRandom rnd(3);
  for (int i = 0; i < 5000; ++i) {
    const VersionValue vv =
        rnd.OneIn(3) ? VersionValue{true, ""} : VersionValue{false, RandomBytes(rnd, 20)};
    auto dvv = DecodeVersionValue(EncodeVersionValue(vv));
    ASSERT_TRUE(dvv.ok()) << dvv.status().ToString();
    ASSERT_EQ(*dvv, vv);

    const IntentValue iv{RandomTxnId(rnd), RandomTimestamp(rnd), RandomKey(rnd, 200),
                         RandomU32(rnd), RandomU32(rnd)};
    auto div = DecodeIntentValue(EncodeIntentValue(iv));
    ASSERT_TRUE(div.ok()) << div.status().ToString();
    ASSERT_EQ(*div, iv);

    const TxnRecord tr = RandomTxnRecord(rnd);
    auto dtr = DecodeTxnRecord(EncodeTxnRecord(tr));
    ASSERT_TRUE(dtr.ok()) << dtr.status().ToString();
    ASSERT_EQ(*dtr, tr);

    const RangeDescriptor rd = RandomDescriptor(rnd);
    auto drd = DecodeRangeDescriptor(EncodeRangeDescriptor(rd));
    ASSERT_TRUE(drd.ok()) << drd.status().ToString();
    ASSERT_EQ(*drd, rd);

    const AppliedState as{RandomU64(rnd), RandomU64(rnd), RandomTimestamp(rnd), RandomU64(rnd)};
    auto das = DecodeAppliedState(EncodeAppliedState(as));
    ASSERT_TRUE(das.ok()) << das.status().ToString();
    ASSERT_EQ(*das, as);

    const RaftConfig rc{RandomIds(rnd), RandomIds(rnd), RandomIds(rnd), RandomIds(rnd),
                        rnd.OneIn(2)};
    auto drc = DecodeRaftConfig(EncodeRaftConfig(rc));
    ASSERT_TRUE(drc.ok()) << drc.status().ToString();
    ASSERT_EQ(*drc, rc);

    const uint32_t fv = RandomU32(rnd);
    auto dfv = DecodeFormatVersion(EncodeFormatVersion(fv));
    ASSERT_TRUE(dfv.ok());
    ASSERT_EQ(*dfv, fv);
  }
}

// ---------------------------------------------------------------- order

// One data entry, in the order the layout promises: by raw user key, then
// the intent record, then versions newest first.
struct Entry {
  std::string user_key;
  bool intent;
  Timestamp ts;

  std::string Encode() const { return intent ? IntentKey(user_key) : VersionKey(user_key, ts); }
  bool operator<(const Entry& o) const {
    if (user_key != o.user_key) return user_key < o.user_key;
    if (intent != o.intent) return intent;
    return ts > o.ts;
  }
};

TEST(KeysOrderTest, DataEntriesSortByUserKeyThenIntentThenNewestFirst) {
  SeededRandom rnd(4);
  for (int round = 0; round < 200; ++round) {
    std::vector<Entry> entries;
    std::set<std::string> with_intent;
    for (int i = 0; i < 60; ++i) {
      std::string k = RandomKey(rnd, 4);
      if (rnd.OneIn(5) && with_intent.insert(k).second) {
        entries.push_back(Entry{k, true, {}});
      } else {
        entries.push_back(Entry{k, false, RandomTimestamp(rnd)});
      }
    }
    std::vector<std::string> encoded;
    for (const Entry& e : entries)
      encoded.push_back(e.Encode());
    std::sort(entries.begin(), entries.end());
    std::sort(encoded.begin(), encoded.end());
    for (size_t i = 0; i < entries.size(); ++i) {
      // Duplicates (same key and timestamp) encode alike, so position i of
      // each sorted list names the same entry.
      ASSERT_EQ(encoded[i], entries[i].Encode()) << "at " << i << ": " << DescribeKey(encoded[i])
                                                 << " vs " << DescribeKey(entries[i].Encode());
    }
  }
}

TEST(KeysOrderTest, PairwiseAgainstRawKeys) {
  SeededRandom rnd(5);
  for (int i = 0; i < 50000; ++i) {
    const std::string a = RandomKey(rnd, 5);
    const std::string b = RandomKey(rnd, 5);
    const Timestamp ta = RandomTimestamp(rnd);
    const Timestamp tb = RandomTimestamp(rnd);
    if (a != b) {
      // All entries of a before all entries of b, whatever their kinds.
      const bool less = a < b;
      ASSERT_EQ(VersionKey(a, ta) < VersionKey(b, tb), less);
      ASSERT_EQ(IntentKey(a) < VersionKey(b, tb), less);
      ASSERT_EQ(VersionKey(a, ta) < IntentKey(b), less);
      ASSERT_EQ(IntentKey(a) < IntentKey(b), less);
      ASSERT_EQ(TxnRecordKey(a, {}) < TxnRecordKey(b, RandomTxnId(rnd)), less);
      ASSERT_EQ(KeyEntriesSpan(a).end <= KeyEntriesSpan(b).begin, less);
    } else {
      ASSERT_LT(IntentKey(a), VersionKey(a, ta));
      ASSERT_EQ(VersionKey(a, ta) < VersionKey(a, tb), ta > tb);
      ASSERT_EQ(VersionKey(a, ta) == VersionKey(a, tb), ta == tb);
    }
  }
}

TEST(KeysOrderTest, ExtremeTimestampsStayInsideTheKey) {
  // The newest possible version still follows the intent; the oldest still
  // precedes the next user key, even one that only appends a zero byte.
  for (const std::string& k : {""s, "a"s, "\x00"s, "\xff\xff"s, "a\x00"s}) {
    EXPECT_LT(IntentKey(k), VersionKey(k, Timestamp::Max()));
    EXPECT_LT(VersionKey(k, Timestamp::Max()), VersionKey(k, Timestamp::Zero()));
    EXPECT_LT(VersionKey(k, Timestamp::Zero()), IntentKey(k + "\x00"s));
    EXPECT_LT(VersionKey(k, Timestamp::Zero()), IntentKey(k + "\x01"s));
    EXPECT_TRUE(KeyEntriesSpan(k).Contains(VersionKey(k, Timestamp::Zero())));
    EXPECT_TRUE(KeyEntriesSpan(k).Contains(IntentKey(k)));
    EXPECT_FALSE(KeyEntriesSpan(k).Contains(IntentKey(k + "\x00"s)));
  }
}

TEST(KeysOrderTest, ReadSeekFindsNewestVersionAtOrBefore) {
  SeededRandom rnd(6);
  for (int round = 0; round < 300; ++round) {
    const std::string k = RandomKey(rnd, 3);
    std::set<std::string> engine;  // the sorted engine, several keys mixed
    std::vector<Timestamp> mine;
    for (int i = 0; i < 10; ++i) {
      const Timestamp t = RandomTimestamp(rnd);
      mine.push_back(t);
      engine.insert(VersionKey(k, t));
      const std::string other = RandomKey(rnd, 3);
      const Timestamp other_ts = RandomTimestamp(rnd);
      if (other == k) mine.push_back(other_ts);
      engine.insert(VersionKey(other, other_ts));
    }
    engine.insert(IntentKey(k));
    const Timestamp read = RandomTimestamp(rnd);
    auto it = engine.lower_bound(VersionKey(k, read));
    std::optional<Timestamp> want;
    for (const Timestamp& t : mine) {
      if (t <= read && (!want || t > *want)) want = t;
    }
    if (!want) {
      ASSERT_TRUE(it == engine.end() || !KeyEntriesSpan(k).Contains(*it));
    } else {
      ASSERT_NE(it, engine.end());
      ASSERT_EQ(*it, VersionKey(k, *want)) << read.ToString();
    }
  }
}

TEST(KeysOrderTest, RangeLocalAndRangeIdLocalOrder) {
  SeededRandom rnd(7);
  for (int i = 0; i < 20000; ++i) {
    const std::string a = RandomKey(rnd, 4);
    const std::string b = rnd.OneIn(3) ? a : RandomKey(rnd, 4);
    const TxnId x = RandomTxnId(rnd);
    const TxnId y = RandomTxnId(rnd);
    ASSERT_EQ(TxnRecordKey(a, x) < TxnRecordKey(b, y), std::tie(a, x) < std::tie(b, y));

    const RangeId r = RandomRangeId(rnd);
    const RangeId s = rnd.OneIn(3) ? r : RandomRangeId(rnd);
    const auto kr = static_cast<RangeIdKind>(1 + rnd.Uniform(3));
    const auto ks = static_cast<RangeIdKind>(1 + rnd.Uniform(3));
    ASSERT_EQ(EncodeKey(RangeIdLocalKey{r, kr}) < EncodeKey(RangeIdLocalKey{s, ks}),
              std::tie(r, kr) < std::tie(s, ks));
  }
}

TEST(KeysOrderTest, TagsSeparateKeyspaces) {
  const std::vector<Span> spaces = {EtcdSpan(), NodeLocalSpan(), AllRangeIdLocalSpan(),
                                    AllRangeLocalSpan(), AllDataSpan()};
  for (size_t i = 1; i < spaces.size(); ++i)
    EXPECT_EQ(spaces[i - 1].end, spaces[i].begin);  // ordered, disjoint, no gaps
  EXPECT_EQ(AllDataSpan().end, std::string(1, static_cast<char>(kFirstReservedTag)));

  SeededRandom rnd(8);
  for (int i = 0; i < 5000; ++i) {
    const Key k = RandomKeyOfAnyKind(rnd);
    const std::string e = EncodeKey(k);
    for (size_t s = 0; s < spaces.size(); ++s)
      ASSERT_EQ(spaces[s].Contains(e), s == k.index()) << DescribeKey(e);
  }
}

// ---------------------------------------------------------------- spans

// Whether user key k lies in [start, end), end empty meaning unbounded.
bool InUserSpan(const std::string& k, const std::string& start, const std::string& end) {
  return k >= start && (end.empty() || k < end);
}

TEST(KeysSpanTest, UserKeySpansHoldExactlyTheirKeys) {
  SeededRandom rnd(9);
  for (int round = 0; round < 3000; ++round) {
    std::string start = RandomKey(rnd, 3);
    std::string end;
    if (!rnd.OneIn(4)) {
      end = RandomKey(rnd, 3);
      if (end == start) continue;
      if (end < start) std::swap(start, end);
    }
    const Span data = DataSpan(start, end);
    const Span local = RangeLocalSpan(start, end);
    for (int i = 0; i < 20; ++i) {
      // Keys near the bounds matter most: the bounds themselves, and keys
      // that extend them by a byte.
      std::string k = RandomKey(rnd, 3);
      if (rnd.OneIn(3)) k = (rnd.OneIn(2) ? start : end) + (rnd.OneIn(2) ? RandomKey(rnd, 1) : "");
      const bool in = InUserSpan(k, start, end);
      const Timestamp t = RandomTimestamp(rnd);
      ASSERT_EQ(data.Contains(IntentKey(k)), in) << DescribeKey(IntentKey(k));
      ASSERT_EQ(data.Contains(VersionKey(k, t)), in);
      ASSERT_EQ(data.Contains(VersionKey(k, Timestamp::Zero())), in);
      ASSERT_EQ(data.Contains(VersionKey(k, Timestamp::Max())), in);
      ASSERT_EQ(local.Contains(TxnRecordKey(k, RandomTxnId(rnd))), in);
      // Neither span reaches into another keyspace.
      ASSERT_FALSE(data.Contains(TxnRecordKey(k, {})));
      ASSERT_FALSE(local.Contains(IntentKey(k)));
    }
    EXPECT_TRUE(AllDataSpan().Contains(data.begin));
    EXPECT_LE(data.end, AllDataSpan().end);
    EXPECT_TRUE(AllRangeLocalSpan().Contains(local.begin));
    EXPECT_LE(local.end, AllRangeLocalSpan().end);
  }
}

TEST(KeysSpanTest, SplitSpansAbutExactly) {
  // Splitting [a, c) at b: the halves' spans cover the whole and meet at
  // one key, so a split moves no data, only the descriptors change.
  SeededRandom rnd(10);
  for (int i = 0; i < 2000; ++i) {
    std::vector<std::string> ks = {RandomKey(rnd, 3), RandomKey(rnd, 3), RandomKey(rnd, 3)};
    std::sort(ks.begin(), ks.end());
    if (ks[0] == ks[1] || ks[1] == ks[2]) continue;
    const std::string c = rnd.OneIn(3) ? "" : ks[2];
    for (auto span : {DataSpan, RangeLocalSpan}) {
      const Span whole = span(ks[0], c);
      const Span left = span(ks[0], ks[1]);
      const Span right = span(ks[1], c);
      ASSERT_EQ(left.begin, whole.begin);
      ASSERT_EQ(left.end, right.begin);
      ASSERT_EQ(right.end, whole.end);
    }
  }
}

TEST(KeysSpanTest, RangeIdLocalSpanHoldsOneRange) {
  SeededRandom rnd(11);
  for (RangeId id : {RangeId{1}, RangeId{2}, RangeId{255}, RangeId{256}, UINT64_MAX - 1, UINT64_MAX,
                     RandomRangeId(rnd)}) {
    const Span s = RangeIdLocalSpan(id);
    EXPECT_TRUE(AllRangeIdLocalSpan().Contains(s.begin));
    EXPECT_LE(s.end, AllRangeIdLocalSpan().end);
    for (auto kind :
         {RangeIdKind::kAppliedState, RangeIdKind::kRaftConfig, RangeIdKind::kRangeDescriptor}) {
      EXPECT_TRUE(s.Contains(EncodeKey(RangeIdLocalKey{id, kind})));
      if (id > 1) {
        EXPECT_FALSE(s.Contains(EncodeKey(RangeIdLocalKey{id - 1, kind})));
      }
      if (id < UINT64_MAX) {
        EXPECT_FALSE(s.Contains(EncodeKey(RangeIdLocalKey{id + 1, kind})));
      }
    }
  }
  EXPECT_EQ(RangeIdLocalSpan(UINT64_MAX).end, AllRangeIdLocalSpan().end);
}

TEST(KeysSpanTest, ReplicatedSpansOfADescriptor) {
  RangeDescriptor d{42, "b", "d", 1, 2, {{1, 1, ReplicaType::kVoter}}};
  const std::vector<Span> spans = ReplicatedSpans(d);
  ASSERT_EQ(spans.size(), 3u);
  auto covered = [&](const std::string& k) {
    return std::any_of(spans.begin(), spans.end(), [&](const Span& s) { return s.Contains(k); });
  };
  EXPECT_TRUE(covered(AppliedStateKey(42)));
  EXPECT_TRUE(covered(RangeDescriptorKey(42)));
  EXPECT_TRUE(covered(RaftConfigKey(42)));
  EXPECT_TRUE(covered(IntentKey("b")));
  EXPECT_TRUE(covered(VersionKey("c\xff", Timestamp{1, 1})));
  EXPECT_TRUE(covered(TxnRecordKey("bz", {})));
  EXPECT_FALSE(covered(AppliedStateKey(43)));
  EXPECT_FALSE(covered(IntentKey("d")));
  EXPECT_FALSE(covered(VersionKey("a", Timestamp{1, 1})));
  EXPECT_FALSE(covered(TxnRecordKey("d", {})));
  EXPECT_FALSE(covered(FormatVersionKey()));
  EXPECT_FALSE(covered(ReplicaTombstoneKey(42)));  // node-local: never in a snapshot
  EXPECT_TRUE(d.ContainsKey("b"));
  EXPECT_TRUE(d.ContainsKey("c"));
  EXPECT_FALSE(d.ContainsKey("d"));
  d.end_key.clear();
  EXPECT_TRUE(d.ContainsKey("\xff\xff"));
  EXPECT_FALSE(d.ContainsKey("a"));
}

// ---------------------------------------------------------------- refusals

void ExpectCorruption(const Status& s, std::string_view needle) {
  EXPECT_EQ(s.code(), StatusCode::kCorruption) << s.ToString();
  EXPECT_NE(s.message().find(needle), std::string::npos) << s.ToString();
}

TEST(KeysDecodeTest, RefusesMalformedKeys) {
  ExpectCorruption(DecodeKey("").status(), "empty key");
  for (int tag = kFirstReservedTag; tag <= 0xff; ++tag)
    ExpectCorruption(DecodeKey(std::string(1, static_cast<char>(tag)) + "x").status(),
                     "reserved tag");
  ExpectCorruption(DecodeKey("\x01"s).status(), "empty name");
  ExpectCorruption(DecodeKey("\x02\x00\x00\x00\x00\x00\x00\x00\x00\x01"s).status(), "range id 0");
  ExpectCorruption(DecodeKey("\x02\x00\x00\x00\x00\x00\x00\x00\x01\x09"s).status(), "unknown kind");
  ExpectCorruption(DecodeKey("\x02\x00\x00\x00\x00\x00\x00\x00\x01\x01x"s).status(),
                   "after the kind");
  ExpectCorruption(DecodeKey("\x04"
                             "a\x00\x02\x01"s)
                       .status(),
                   "0x00 followed by 0x02");
  ExpectCorruption(DecodeKey("\x04"
                             "a"s)
                       .status(),
                   "no terminator");
  ExpectCorruption(DecodeKey("\x04"
                             "a\x00"s)
                       .status(),
                   "no terminator");
  ExpectCorruption(DecodeKey("\x04"
                             "a\x00\x01"s)
                       .status(),
                   "truncated in version tag");
  ExpectCorruption(DecodeKey("\x04"
                             "a\x00\x01\x03"s)
                       .status(),
                   "unknown version tag");
  ExpectCorruption(DecodeKey("\x04"
                             "a\x00\x01\x01\x00"s)
                       .status(),
                   "intent key with 1");
  ExpectCorruption(DecodeKey(IntentKey("a") + "x").status(), "intent key");
  ExpectCorruption(DecodeKey("\x03"
                             "a\x00\x01\x02"s)
                       .status(),
                   "unknown kind");
  // A key of one keyspace is refused by another keyspace's decoder.
  ExpectCorruption(DecodeDataKey(TxnRecordKey("a", {})).status(), "tag 0x03, want 0x04");
  ExpectCorruption(DecodeRangeLocalKey(IntentKey("a")).status(), "tag 0x04, want 0x03");
  ExpectCorruption(DecodeRangeIdLocalKey(FormatVersionKey()).status(), "tag 0x01, want 0x02");
  ExpectCorruption(DecodeNodeLocalKey(AppliedStateKey(1)).status(), "tag 0x02, want 0x01");
}

TEST(KeysDecodeTest, TruncatedOrExtendedKeysAreRefused) {
  // Node-local names and etcd keys take any bytes, so only the structured
  // keyspaces are checked: no proper prefix and no extension decodes.
  SeededRandom rnd(12);
  for (int i = 0; i < 3000; ++i) {
    Key k = RandomKeyOfAnyKind(rnd);
    if (std::holds_alternative<EtcdKey>(k) || std::holds_alternative<NodeLocalKey>(k)) continue;
    const std::string e = EncodeKey(k);
    for (size_t n = 0; n < e.size(); ++n)
      ASSERT_FALSE(DecodeKey(e.substr(0, n)).ok()) << DescribeKey(e) << " cut to " << n;
    ASSERT_FALSE(DecodeKey(e + static_cast<char>(rnd.Uniform(256))).ok()) << DescribeKey(e);
  }
}

TEST(KeysDecodeTest, TruncatedOrExtendedValuesAreRefused) {
  SeededRandom rnd(13);
  for (int i = 0; i < 1000; ++i) {
    RangeDescriptor d = RandomDescriptor(rnd);
    std::vector<std::string> values = {
        EncodeIntentValue({RandomTxnId(rnd), RandomTimestamp(rnd), RandomKey(rnd), 1, 2}),
        EncodeTxnRecord(RandomTxnRecord(rnd)),
        EncodeRangeDescriptor(d),
        EncodeAppliedState({1, 2, RandomTimestamp(rnd)}),
        EncodeRaftConfig({RandomIds(rnd), RandomIds(rnd), {}, RandomIds(rnd), false}),
        EncodeFormatVersion(1),
        EncodeVersionValue({true, ""}),
    };
    auto decodes = [](const std::string& v) {
      return DecodeIntentValue(v).ok() || DecodeTxnRecord(v).ok() ||
             DecodeRangeDescriptor(v).ok() || DecodeAppliedState(v).ok() ||
             DecodeRaftConfig(v).ok() || DecodeFormatVersion(v).ok() || DecodeVersionValue(v).ok();
    };
    // A descriptor's trailer is optional: cut just before it, the rest is
    // a descriptor without flags.
    RangeDescriptor plain = d;
    plain.sticky = false;
    plain.frozen_into = 0;
    plain.merging_from = 0;
    const size_t without_trailer = EncodeRangeDescriptor(plain).size();
    for (const std::string& v : values) {
      for (size_t n = 0; n < v.size(); ++n) {
        // A one-byte prefix 0x01 is a valid empty version value; nothing else is.
        if (n == 1 && v[0] == static_cast<char>(ValueKind::kValue)) continue;
        if (v[0] == static_cast<char>(ValueKind::kRangeDescriptor) && n == without_trailer) {
          continue;
        }
        ASSERT_FALSE(decodes(v.substr(0, n))) << "cut to " << n << " of kind " << int(v[0]);
      }
      ASSERT_FALSE(decodes(v + "\x00"s)) << "kind " << int(v[0]);
    }
  }
}

TEST(KeysDecodeTest, ValueKindsAreNotInterchangeable) {
  const std::string intent = EncodeIntentValue({});
  const std::string applied = EncodeAppliedState({});
  ExpectCorruption(DecodeTxnRecord(intent).status(), "value kind 0x03, want 0x04");
  ExpectCorruption(DecodeIntentValue(applied).status(), "value kind 0x06, want 0x03");
  ExpectCorruption(DecodeVersionValue(applied).status(), "value kind 0x06");
  ExpectCorruption(DecodeVersionValue("").status(), "truncated");
  ExpectCorruption(DecodeVersionValue("\x02x"s).status(), "tombstone with 1 trailing");
}

TEST(KeysDecodeTest, RefusesMalformedValues) {
  // Lengths and counts must be shortest varints: one value, one encoding.
  std::string overlong = EncodeIntentValue({TxnId{}, Timestamp{}, "", 0, 0});
  const size_t len_at = 1 + 16 + 12;
  ASSERT_EQ(overlong[len_at], '\0');
  overlong.replace(len_at, 1, "\x80\x00"s);
  ExpectCorruption(DecodeIntentValue(overlong).status(), "not a shortest varint");

  // A length or count beyond the input is refused before anything is read.
  std::string lying = "\x03"s + std::string(28, '\0') + "\xff\xff\xff\xff\x0f"s;
  ExpectCorruption(DecodeIntentValue(lying).status(), "truncated in anchor key");
  RangeDescriptor d{1, "", "", 0, 1, {}};
  std::string many = EncodeRangeDescriptor(d);
  many.back() = '\x7f';  // 127 replicas, none there
  ExpectCorruption(DecodeRangeDescriptor(many).status(), "truncated in replicas");
  std::string ids = "\x07\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"s;
  ExpectCorruption(DecodeRaftConfig(ids).status(), "truncated in voters");

  ExpectCorruption(DecodeRaftConfig("\x07\x02\x00\x00\x00\x00"s).status(), "auto leave byte 2");

  TxnRecord pending{TxnStatus::kPending, {}, {}, 0, 0, {}};
  std::string r = EncodeTxnRecord(pending);
  r[1] = 2;
  ExpectCorruption(DecodeTxnRecord(r).status(), "layout 2, want 1");
  r = EncodeTxnRecord(pending);
  r[2] = 5;
  ExpectCorruption(DecodeTxnRecord(r).status(), "status 5");
  r[2] = 0;
  ExpectCorruption(DecodeTxnRecord(r).status(), "status 0");
  // A STAGING record's in-flight writes, relabelled COMMITTED.
  r = EncodeTxnRecord({TxnStatus::kStaging, {}, {}, 0, 0, {{"k", 1}}});
  r[2] = static_cast<char>(TxnStatus::kCommitted);
  ExpectCorruption(DecodeTxnRecord(r).status(), "1 in-flight writes in a COMMITTED record");
}

TEST(KeysDecodeTest, RangeDescriptorRules) {
  auto check = [](const RangeDescriptor& d, std::string_view needle) {
    ExpectCorruption(ValidateRangeDescriptor(d), needle);
  };
  const RangeDescriptor ok{7, "a", "c",
                           0, 5,   {{1, 1, ReplicaType::kVoter}, {2, 4, ReplicaType::kLearner}}};
  EXPECT_TRUE(ValidateRangeDescriptor(ok).ok());
  RangeDescriptor d = ok;
  d.range_id = 0;
  check(d, "range id 0");
  d = ok;
  d.end_key = "a";
  check(d, "start key not below end key");
  d.end_key = "";  // to the end: fine
  EXPECT_TRUE(ValidateRangeDescriptor(d).ok());
  d = ok;
  d.replicas[1].replica_id = 5;
  check(d, "not below next replica id");
  d = ok;
  d.replicas[1].node_id = 1;
  check(d, "appears twice");
  d = ok;
  d.replicas[1].replica_id = 1;
  check(d, "appears twice");
  d = ok;
  d.replicas[0].node_id = 0;
  check(d, "node or replica id 0");
  d = ok;
  d.replicas[0].type = static_cast<ReplicaType>(3);
  check(d, "replica type 3");

  // The decoder applies the same rules to what it reads.
  std::string bytes = EncodeRangeDescriptor(ok);
  bytes.back() = '\x03';
  ExpectCorruption(DecodeRangeDescriptor(bytes).status(), "replica type 3");
}

TEST(KeysDecodeTest, FormatVersionGate) {
  EXPECT_TRUE(CheckFormatVersion(kFormatVersion).ok());
  EXPECT_EQ(CheckFormatVersion(kFormatVersion + 1).code(), StatusCode::kFailedPrecondition);
  ExpectCorruption(CheckFormatVersion(0), "format version 0");
  ExpectCorruption(DecodeFormatVersion("\x08\x00\x00\x01"s).status(), "truncated in version");
  ExpectCorruption(DecodeFormatVersion("\x08\x00\x00\x00\x01\x00"s).status(), "1 trailing");
}

// Whatever value decoder accepts `b` gives it back through its encoder.
void ExpectValueReencodes(const std::string& b) {
  auto check = [&b](const auto& decoded, auto encode) {
    if (decoded.ok()) {
      ASSERT_EQ(encode(*decoded), b);
    }
  };
  check(DecodeVersionValue(b), EncodeVersionValue);
  check(DecodeIntentValue(b), EncodeIntentValue);
  check(DecodeTxnRecord(b), EncodeTxnRecord);
  check(DecodeRangeDescriptor(b), EncodeRangeDescriptor);
  check(DecodeAppliedState(b), EncodeAppliedState);
  check(DecodeRaftConfig(b), EncodeRaftConfig);
  check(DecodeFormatVersion(b), EncodeFormatVersion);
}

TEST(KeysDecodeTest, RandomBytesNeverCrashAndWhatDecodesReencodes) {
  // A short in-process fuzz; keys_fuzz does this at length.
  SeededRandom rnd(14);
  static constexpr char kTags[] = {'\x00', '\x01', '\x02', '\x03', '\x04', '\x05'};
  int decoded = 0;
  for (int i = 0; i < 200000; ++i) {
    std::string b = RandomBytes(rnd, 24);
    if (!b.empty() && rnd.OneIn(2)) b[0] = kTags[rnd.Uniform(sizeof(kTags))];
    if (rnd.OneIn(3)) b = EncodeKey(RandomKeyOfAnyKind(rnd)) + b.substr(0, rnd.Uniform(2));
    auto k = DecodeKey(b);
    if (k.ok()) {
      ++decoded;
      ASSERT_EQ(EncodeKey(*k), b) << DescribeKey(b);
    } else {
      ASSERT_EQ(k.status().code(), StatusCode::kCorruption);
    }
    ASSERT_NO_FATAL_FAILURE(ExpectValueReencodes(b));
  }
  EXPECT_GT(decoded, 10000);  // the mix reaches past the decoders' first checks
}

TEST(KeysDescribeTest, Readable) {
  EXPECT_EQ(DescribeKey(IntentKey("a\0b"s)), "data/\"a\\x00b\"/intent");
  EXPECT_EQ(DescribeKey(VersionKey("k", {17, 3})), "data/\"k\"/v17.3");
  EXPECT_EQ(DescribeKey(AppliedStateKey(9)), "range/9/applied_state");
  EXPECT_EQ(DescribeKey(FormatVersionKey()), "local/\"format_version\"");
  EXPECT_EQ(DescribeKey(TxnRecordKey("t", {})), "rlocal/\"t\"/txn/" + std::string(32, '0'));
  EXPECT_EQ(DescribeKey("\x07zz"s), "invalid\"\\x07zz\"");
}

TEST(KeysDeathTest, EncodersCheckTheirInput) {
  EXPECT_DEATH((void)EncodeKey(DataKey{"a", VersionTag::kIntent, {1, 0}}), "no timestamp");
  EXPECT_DEATH((void)AppliedStateKey(0), "range id 0");
  EXPECT_DEATH((void)NodeLocalKeyFor(""), "empty node-local");
  EXPECT_DEATH((void)EncodeKey(EtcdKey{"\x01xxxxxxxxx"}), "not an etcd");
  EXPECT_DEATH((void)EncodeTxnRecord({TxnStatus::kPending, {}, {}, 0, 0, {{"k", 1}}}),
               "only a STAGING record");
  EXPECT_DEATH((void)EncodeRangeDescriptor({0, "", "", 0, 1, {}}), "range id 0");
  EXPECT_DEATH((void)DataSpan("b", "a"), "inverted");
  EXPECT_DEATH((void)EncodeVersionValue({true, "x"}), "tombstone holds no value");
}

}  // namespace
}  // namespace conclave::keys
