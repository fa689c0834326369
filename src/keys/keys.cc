#include "keys/keys.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>

#include "base/assert.h"
#include "base/coding.h"

namespace conclave::keys {
namespace {

constexpr char kEscape = '\x00';
constexpr char kEscapedZero = '\xff';
constexpr char kTerminator = '\x01';
// The smallest engine key of the etcd keyspace that mvcc writes: the 8-byte
// group id and one byte of kind ('m', 'k' or 'r').
constexpr size_t kMinEtcdKeyBytes = 9;

char TagByte(Tag t) {
  return static_cast<char>(t);
}

std::string TagOnly(Tag t) {
  return std::string(1, TagByte(t));
}

// The tag after `t`: the end of t's keyspace.
std::string TagEnd(Tag t) {
  return std::string(1, static_cast<char>(static_cast<uint8_t>(t) + 1));
}

void AppendEscaped(std::string* dst, std::string_view user_key) {
  for (char c : user_key) {
    dst->push_back(c);
    if (c == kEscape) dst->push_back(kEscapedZero);
  }
  dst->push_back(kEscape);
  dst->push_back(kTerminator);
}

// Reads an escaped, terminated user key off the front of *in into *out.
Status ReadEscaped(std::string_view what, std::string_view* in, std::string* out) {
  const std::string_view s = *in;
  // Reserve nothing: the key grows only as bytes are consumed.
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != kEscape) {
      out->push_back(s[i]);
      continue;
    }
    if (i + 1 == s.size()) {
      return Status::Corruption(fmt::format("keys: {}: 0x00 at the end, no terminator", what));
    }
    if (s[i + 1] == kEscapedZero) {
      out->push_back('\0');
      ++i;
    } else if (s[i + 1] == kTerminator) {
      in->remove_prefix(i + 2);
      return Status::Ok();
    } else {
      return Status::Corruption(fmt::format("keys: {}: 0x00 followed by 0x{:02x} at offset {}",
                                            what, static_cast<uint8_t>(s[i + 1]), i));
    }
  }
  return Status::Corruption(fmt::format("keys: {}: user key has no terminator", what));
}

void AppendInvertedTimestamp(std::string* dst, Timestamp ts) {
  PutBigEndian64(dst, ~ts.wall_nanos);
  PutBigEndian32(dst, ~ts.logical);
}

Status ExpectTag(std::string_view key, Tag want, std::string_view what) {
  if (key.empty()) return Status::Corruption(fmt::format("keys: {}: empty key", what));
  if (key[0] != TagByte(want)) {
    return Status::Corruption(fmt::format("keys: {}: tag 0x{:02x}, want 0x{:02x}", what,
                                          static_cast<uint8_t>(key[0]),
                                          static_cast<uint8_t>(want)));
  }
  return Status::Ok();
}

std::string RangeIdPrefix(RangeId range_id) {
  std::string s = TagOnly(Tag::kRangeIdLocal);
  PutBigEndian64(&s, range_id);
  return s;
}

// The engine key that starts every entry of user_key in a keyspace whose
// keys are <tag> <escaped key> 00 01 ...: the terminated escaped key.
std::string EscapedPrefix(Tag t, std::string_view user_key) {
  std::string s = TagOnly(t);
  AppendEscaped(&s, user_key);
  return s;
}

Span UserKeySpan(Tag t, std::string_view start, std::string_view end) {
  CHECK_MSG(end.empty() || start < end, "empty or inverted user-key span");
  // A terminated escaped key is never a prefix of another's, and sorts like
  // its raw key: so every entry of a key k with start <= k < end lies in
  // [prefix(start), prefix(end)).
  return Span{EscapedPrefix(t, start), end.empty() ? TagEnd(t) : EscapedPrefix(t, end)};
}

// --- value decoding helpers: each returns kCorruption naming `what`.

Status Truncated(std::string_view what, std::string_view field) {
  return Status::Corruption(fmt::format("keys: {}: truncated in {}", what, field));
}

Status ReadKind(std::string_view what, Decoder* d, ValueKind want) {
  uint8_t kind = 0;
  if (!d->ReadByte(&kind)) return Truncated(what, "value kind");
  if (kind != static_cast<uint8_t>(want)) {
    return Status::Corruption(fmt::format("keys: {}: value kind 0x{:02x}, want 0x{:02x}", what,
                                          kind, static_cast<uint8_t>(want)));
  }
  return Status::Ok();
}

Status ReadU8(std::string_view what, std::string_view field, Decoder* d, uint8_t* v) {
  return d->ReadByte(v) ? Status::Ok() : Truncated(what, field);
}

Status ReadU32(std::string_view what, std::string_view field, Decoder* d, uint32_t* v) {
  return d->ReadBigEndian32(v) ? Status::Ok() : Truncated(what, field);
}

Status ReadU64(std::string_view what, std::string_view field, Decoder* d, uint64_t* v) {
  return d->ReadBigEndian64(v) ? Status::Ok() : Truncated(what, field);
}

Status ReadTimestamp(std::string_view what, std::string_view field, Decoder* d, Timestamp* ts) {
  std::string_view b;
  if (!d->ReadBytes(Timestamp::kEncodedBytes, &b)) return Truncated(what, field);
  *ts = *Timestamp::Decode(b);
  return Status::Ok();
}

// A varint in its shortest form only, so that every value has one encoding.
Status ReadCount(std::string_view what, std::string_view field, Decoder* d, uint64_t* v) {
  const size_t before = d->remaining();
  if (!d->ReadVarint64(v)) return Truncated(what, field);
  if (before - d->remaining() != VarintLength(*v)) {
    return Status::Corruption(fmt::format("keys: {}: {} is not a shortest varint", what, field));
  }
  return Status::Ok();
}

Status ReadString(std::string_view what, std::string_view field, Decoder* d, std::string* out) {
  uint64_t n = 0;
  RETURN_IF_ERROR(ReadCount(what, field, d, &n));
  std::string_view b;
  // The length is checked against what is left before anything is copied.
  if (n > d->remaining() || !d->ReadBytes(static_cast<size_t>(n), &b)) {
    return Truncated(what, field);
  }
  out->assign(b);
  return Status::Ok();
}

Status ReadTxnId(std::string_view what, Decoder* d, TxnId* id) {
  std::string_view b;
  if (!d->ReadBytes(TxnId::kBytes, &b)) return Truncated(what, "transaction id");
  std::copy(b.begin(), b.end(), id->bytes.begin());
  return Status::Ok();
}

Status ExpectEnd(std::string_view what, const Decoder& d) {
  if (d.empty()) return Status::Ok();
  return Status::Corruption(fmt::format("keys: {}: {} trailing bytes", what, d.remaining()));
}

void AppendString(std::string* dst, std::string_view s) {
  PutLengthPrefixed(dst, s);
}

void AppendTxnId(std::string* dst, const TxnId& id) {
  dst->append(reinterpret_cast<const char*>(id.bytes.data()), id.bytes.size());
}

std::string ValueStart(ValueKind k) {
  return std::string(1, static_cast<char>(k));
}

void AppendIdList(std::string* dst, const std::vector<uint64_t>& ids) {
  PutVarint64(dst, ids.size());
  for (uint64_t id : ids)
    PutBigEndian64(dst, id);
}

Status ReadIdList(std::string_view what, std::string_view field, Decoder* d,
                  std::vector<uint64_t>* ids) {
  uint64_t n = 0;
  RETURN_IF_ERROR(ReadCount(what, field, d, &n));
  // Each id takes 8 bytes, so a count beyond what is left is a lie; checking
  // it first keeps the loop (and the vector) bounded by the input.
  if (n > d->remaining() / 8) return Truncated(what, field);
  for (uint64_t i = 0; i < n; ++i) {
    uint64_t id = 0;
    RETURN_IF_ERROR(ReadU64(what, field, d, &id));
    ids->push_back(id);
  }
  return Status::Ok();
}

}  // namespace

// ---------------------------------------------------------------- TxnId

bool TxnId::IsZero() const {
  return std::all_of(bytes.begin(), bytes.end(), [](uint8_t b) { return b == 0; });
}

std::string TxnId::ToString() const {
  std::string s;
  s.reserve(2 * kBytes);
  for (uint8_t b : bytes)
    s += fmt::format("{:02x}", b);
  return s;
}

// ---------------------------------------------------------------- keys

std::string EncodeKey(const EtcdKey& key) {
  CHECK_MSG(key.raw.size() >= kMinEtcdKeyBytes && key.raw[0] == TagByte(Tag::kEtcd),
            "not an etcd keyspace key");
  return key.raw;
}

std::string EncodeKey(const NodeLocalKey& key) {
  CHECK_MSG(!key.name.empty(), "empty node-local key name");
  std::string s = TagOnly(Tag::kNodeLocal);
  s.append(key.name);
  return s;
}

std::string EncodeKey(const RangeIdLocalKey& key) {
  CHECK_MSG(key.range_id != 0, "range id 0");
  std::string s = RangeIdPrefix(key.range_id);
  s.push_back(static_cast<char>(key.kind));
  return s;
}

std::string EncodeKey(const RangeLocalKey& key) {
  std::string s = EscapedPrefix(Tag::kRangeLocal, key.anchor);
  s.push_back(static_cast<char>(key.kind));
  switch (key.kind) {
    case RangeLocalKind::kTxnRecord:
      AppendTxnId(&s, key.txn_id);
      return s;
  }
  UNREACHABLE();
}

std::string EncodeKey(const DataKey& key) {
  std::string s = EscapedPrefix(Tag::kData, key.user_key);
  s.push_back(static_cast<char>(key.tag));
  switch (key.tag) {
    case VersionTag::kIntent:
      CHECK_MSG(key.ts.IsZero(), "an intent key carries no timestamp");
      return s;
    case VersionTag::kVersion:
      AppendInvertedTimestamp(&s, key.ts);
      return s;
  }
  UNREACHABLE();
}

std::string EncodeKey(const Key& key) {
  return std::visit([](const auto& k) { return EncodeKey(k); }, key);
}

std::string NodeLocalKeyFor(std::string_view name) {
  return EncodeKey(NodeLocalKey{std::string(name)});
}

std::string FormatVersionKey() {
  return NodeLocalKeyFor(kFormatVersionName);
}

std::string ReplicaTombstoneKey(RangeId range_id) {
  std::string name(kReplicaTombstonePrefix);
  PutBigEndian64(&name, range_id);
  return NodeLocalKeyFor(name);
}

std::string AppliedStateKey(RangeId range_id) {
  return EncodeKey(RangeIdLocalKey{range_id, RangeIdKind::kAppliedState});
}

std::string RaftConfigKey(RangeId range_id) {
  return EncodeKey(RangeIdLocalKey{range_id, RangeIdKind::kRaftConfig});
}

std::string RangeDescriptorKey(RangeId range_id) {
  return EncodeKey(RangeIdLocalKey{range_id, RangeIdKind::kRangeDescriptor});
}

std::string TxnRecordKey(std::string_view anchor, const TxnId& txn_id) {
  return EncodeKey(RangeLocalKey{std::string(anchor), RangeLocalKind::kTxnRecord, txn_id});
}

std::string IntentKey(std::string_view user_key) {
  return EncodeKey(DataKey{std::string(user_key), VersionTag::kIntent, Timestamp::Zero()});
}

std::string VersionKey(std::string_view user_key, Timestamp ts) {
  return EncodeKey(DataKey{std::string(user_key), VersionTag::kVersion, ts});
}

Result<Tag> KeyTag(std::string_view key) {
  if (key.empty()) return Status::Corruption("keys: empty key");
  const auto b = static_cast<uint8_t>(key[0]);
  if (b >= kFirstReservedTag) {
    return Status::Corruption(fmt::format("keys: reserved tag 0x{:02x}", b));
  }
  return static_cast<Tag>(b);
}

Result<NodeLocalKey> DecodeNodeLocalKey(std::string_view key) {
  RETURN_IF_ERROR(ExpectTag(key, Tag::kNodeLocal, "node-local key"));
  if (key.size() == 1) return Status::Corruption("keys: node-local key: empty name");
  return NodeLocalKey{std::string(key.substr(1))};
}

Result<RangeIdLocalKey> DecodeRangeIdLocalKey(std::string_view key) {
  static constexpr std::string_view kWhat = "range-id-local key";
  RETURN_IF_ERROR(ExpectTag(key, Tag::kRangeIdLocal, kWhat));
  if (key.size() < 1 + 8 + 1) return Truncated(kWhat, "range id or kind");
  RangeIdLocalKey out;
  out.range_id = DecodeBigEndian64(key.data() + 1);
  if (out.range_id == 0) return Status::Corruption("keys: range-id-local key: range id 0");
  const auto kind = static_cast<uint8_t>(key[9]);
  switch (static_cast<RangeIdKind>(kind)) {
    case RangeIdKind::kAppliedState:
    case RangeIdKind::kRaftConfig:
    case RangeIdKind::kRangeDescriptor:
      out.kind = static_cast<RangeIdKind>(kind);
      break;
    default:
      return Status::Corruption(fmt::format("keys: {}: unknown kind 0x{:02x}", kWhat, kind));
  }
  // None of version 1's kinds takes a suffix.
  if (key.size() != 10) {
    return Status::Corruption(
        fmt::format("keys: {}: {} bytes after the kind", kWhat, key.size() - 10));
  }
  return out;
}

Result<RangeLocalKey> DecodeRangeLocalKey(std::string_view key) {
  static constexpr std::string_view kWhat = "range-local key";
  RETURN_IF_ERROR(ExpectTag(key, Tag::kRangeLocal, kWhat));
  std::string_view rest = key.substr(1);
  RangeLocalKey out;
  RETURN_IF_ERROR(ReadEscaped(kWhat, &rest, &out.anchor));
  if (rest.empty()) return Truncated(kWhat, "kind");
  const auto kind = static_cast<uint8_t>(rest[0]);
  rest.remove_prefix(1);
  switch (static_cast<RangeLocalKind>(kind)) {
    case RangeLocalKind::kTxnRecord: {
      out.kind = RangeLocalKind::kTxnRecord;
      if (rest.size() != TxnId::kBytes) {
        return Status::Corruption(fmt::format("keys: {}: transaction id of {} bytes, want {}",
                                              kWhat, rest.size(), TxnId::kBytes));
      }
      std::copy(rest.begin(), rest.end(), out.txn_id.bytes.begin());
      return out;
    }
  }
  return Status::Corruption(fmt::format("keys: {}: unknown kind 0x{:02x}", kWhat, kind));
}

Result<DataKey> DecodeDataKey(std::string_view key) {
  static constexpr std::string_view kWhat = "data key";
  RETURN_IF_ERROR(ExpectTag(key, Tag::kData, kWhat));
  std::string_view rest = key.substr(1);
  DataKey out;
  RETURN_IF_ERROR(ReadEscaped(kWhat, &rest, &out.user_key));
  if (rest.empty()) return Truncated(kWhat, "version tag");
  const auto tag = static_cast<uint8_t>(rest[0]);
  rest.remove_prefix(1);
  switch (static_cast<VersionTag>(tag)) {
    case VersionTag::kIntent:
      out.tag = VersionTag::kIntent;
      if (!rest.empty()) {
        return Status::Corruption(
            fmt::format("keys: {}: intent key with {} trailing bytes", kWhat, rest.size()));
      }
      return out;
    case VersionTag::kVersion:
      out.tag = VersionTag::kVersion;
      if (rest.size() != Timestamp::kEncodedBytes) {
        return Status::Corruption(fmt::format("keys: {}: timestamp of {} bytes, want {}", kWhat,
                                              rest.size(), Timestamp::kEncodedBytes));
      }
      out.ts.wall_nanos = ~DecodeBigEndian64(rest.data());
      out.ts.logical = ~DecodeBigEndian32(rest.data() + 8);
      return out;
  }
  return Status::Corruption(fmt::format("keys: {}: unknown version tag 0x{:02x}", kWhat, tag));
}

Result<Key> DecodeKey(std::string_view key) {
  ASSIGN_OR_RETURN(const Tag tag, KeyTag(key));
  switch (tag) {
    case Tag::kEtcd:
      if (key.size() < kMinEtcdKeyBytes) {
        return Status::Corruption(fmt::format(
            "keys: etcd key of {} bytes, shorter than a group id and kind", key.size()));
      }
      return Key(EtcdKey{std::string(key)});
    case Tag::kNodeLocal: {
      ASSIGN_OR_RETURN(auto k, DecodeNodeLocalKey(key));
      return Key(std::move(k));
    }
    case Tag::kRangeIdLocal: {
      ASSIGN_OR_RETURN(auto k, DecodeRangeIdLocalKey(key));
      return Key(k);
    }
    case Tag::kRangeLocal: {
      ASSIGN_OR_RETURN(auto k, DecodeRangeLocalKey(key));
      return Key(std::move(k));
    }
    case Tag::kData: {
      ASSIGN_OR_RETURN(auto k, DecodeDataKey(key));
      return Key(std::move(k));
    }
  }
  UNREACHABLE();
}

namespace {

std::string Printable(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    const auto b = static_cast<uint8_t>(c);
    if (b >= 0x20 && b < 0x7f && c != '"' && c != '\\') {
      out.push_back(c);
    } else {
      out += fmt::format("\\x{:02x}", b);
    }
  }
  out.push_back('"');
  return out;
}

std::string_view RangeIdKindName(RangeIdKind k) {
  switch (k) {
    case RangeIdKind::kAppliedState:
      return "applied_state";
    case RangeIdKind::kRaftConfig:
      return "raft_config";
    case RangeIdKind::kRangeDescriptor:
      return "descriptor";
  }
  return "?";
}

}  // namespace

std::string DescribeKey(std::string_view key) {
  auto decoded = DecodeKey(key);
  if (!decoded.ok()) return "invalid" + Printable(key);
  struct Visitor {
    std::string operator()(const EtcdKey& k) const { return "etcd" + Printable(k.raw.substr(1)); }
    std::string operator()(const NodeLocalKey& k) const { return "local/" + Printable(k.name); }
    std::string operator()(const RangeIdLocalKey& k) const {
      return fmt::format("range/{}/{}", k.range_id, RangeIdKindName(k.kind));
    }
    std::string operator()(const RangeLocalKey& k) const {
      return fmt::format("rlocal/{}/txn/{}", Printable(k.anchor), k.txn_id.ToString());
    }
    std::string operator()(const DataKey& k) const {
      if (k.tag == VersionTag::kIntent) return fmt::format("data/{}/intent", Printable(k.user_key));
      return fmt::format("data/{}/v{}", Printable(k.user_key), k.ts.ToString());
    }
  };
  return std::visit(Visitor{}, *decoded);
}

// ---------------------------------------------------------------- spans

Span EtcdSpan() {
  return Span{TagOnly(Tag::kEtcd), TagEnd(Tag::kEtcd)};
}
Span NodeLocalSpan() {
  return Span{TagOnly(Tag::kNodeLocal), TagEnd(Tag::kNodeLocal)};
}
Span AllRangeIdLocalSpan() {
  return Span{TagOnly(Tag::kRangeIdLocal), TagEnd(Tag::kRangeIdLocal)};
}
Span AllRangeLocalSpan() {
  return Span{TagOnly(Tag::kRangeLocal), TagEnd(Tag::kRangeLocal)};
}
Span AllDataSpan() {
  return Span{TagOnly(Tag::kData), TagEnd(Tag::kData)};
}

Span RangeIdLocalSpan(RangeId range_id) {
  CHECK_MSG(range_id != 0, "range id 0");
  std::string begin = RangeIdPrefix(range_id);
  // For the largest id, PrefixEnd carries into the tag: the keyspace's end.
  std::string end = PrefixEnd(begin);
  return Span{std::move(begin), std::move(end)};
}

Span RangeLocalSpan(std::string_view start, std::string_view end) {
  return UserKeySpan(Tag::kRangeLocal, start, end);
}

Span DataSpan(std::string_view start, std::string_view end) {
  return UserKeySpan(Tag::kData, start, end);
}

Span KeyEntriesSpan(std::string_view user_key) {
  std::string begin = EscapedPrefix(Tag::kData, user_key);
  // The prefix ends in the terminator 01; 02 in its place is past every entry.
  std::string end = begin;
  end.back() = static_cast<char>(kTerminator + 1);
  return Span{std::move(begin), std::move(end)};
}

std::vector<Span> ReplicatedSpans(const RangeDescriptor& d) {
  CHECK_MSG(ValidateRangeDescriptor(d).ok(), "invalid range descriptor");
  return {RangeIdLocalSpan(d.range_id), RangeLocalSpan(d.start_key, d.end_key),
          DataSpan(d.start_key, d.end_key)};
}

// ---------------------------------------------------------------- values

std::string EncodeVersionValue(const VersionValue& v) {
  if (v.tombstone) {
    CHECK_MSG(v.value.empty(), "a tombstone holds no value");
    return ValueStart(ValueKind::kTombstone);
  }
  std::string s = ValueStart(ValueKind::kValue);
  s.append(v.value);
  return s;
}

Result<VersionValue> DecodeVersionValue(std::string_view bytes) {
  static constexpr std::string_view kWhat = "version value";
  if (bytes.empty()) return Truncated(kWhat, "value kind");
  const auto kind = static_cast<uint8_t>(bytes[0]);
  switch (static_cast<ValueKind>(kind)) {
    case ValueKind::kValue:
      return VersionValue{false, std::string(bytes.substr(1))};
    case ValueKind::kTombstone:
      if (bytes.size() != 1) {
        return Status::Corruption(
            fmt::format("keys: {}: tombstone with {} trailing bytes", kWhat, bytes.size() - 1));
      }
      return VersionValue{true, ""};
    default:
      return Status::Corruption(fmt::format("keys: {}: value kind 0x{:02x}", kWhat, kind));
  }
}

std::string EncodeIntentValue(const IntentValue& v) {
  std::string s = ValueStart(ValueKind::kIntent);
  AppendTxnId(&s, v.txn_id);
  v.write_timestamp.AppendTo(&s);
  AppendString(&s, v.txn_record_anchor);
  PutBigEndian32(&s, v.epoch);
  PutBigEndian32(&s, v.sequence);
  return s;
}

Result<IntentValue> DecodeIntentValue(std::string_view bytes) {
  static constexpr std::string_view kWhat = "intent value";
  Decoder d(bytes);
  IntentValue v;
  RETURN_IF_ERROR(ReadKind(kWhat, &d, ValueKind::kIntent));
  RETURN_IF_ERROR(ReadTxnId(kWhat, &d, &v.txn_id));
  RETURN_IF_ERROR(ReadTimestamp(kWhat, "write timestamp", &d, &v.write_timestamp));
  RETURN_IF_ERROR(ReadString(kWhat, "anchor key", &d, &v.txn_record_anchor));
  RETURN_IF_ERROR(ReadU32(kWhat, "epoch", &d, &v.epoch));
  RETURN_IF_ERROR(ReadU32(kWhat, "sequence", &d, &v.sequence));
  RETURN_IF_ERROR(ExpectEnd(kWhat, d));
  return v;
}

std::string_view TxnStatusName(TxnStatus s) {
  switch (s) {
    case TxnStatus::kPending:
      return "PENDING";
    case TxnStatus::kStaging:
      return "STAGING";
    case TxnStatus::kCommitted:
      return "COMMITTED";
    case TxnStatus::kAborted:
      return "ABORTED";
  }
  return "?";
}

std::string EncodeTxnRecord(const TxnRecord& r) {
  CHECK_MSG(r.status == TxnStatus::kStaging || r.in_flight_writes.empty(),
            "only a STAGING record lists in-flight writes, not a {} one", TxnStatusName(r.status));
  std::string s = ValueStart(ValueKind::kTxnRecord);
  s.push_back(static_cast<char>(TxnRecord::kLayout));
  s.push_back(static_cast<char>(r.status));
  r.write_timestamp.AppendTo(&s);
  r.read_timestamp.AppendTo(&s);
  PutBigEndian32(&s, r.epoch);
  PutBigEndian32(&s, r.priority);
  PutVarint64(&s, r.in_flight_writes.size());
  for (const InFlightWrite& w : r.in_flight_writes) {
    AppendString(&s, w.key);
    PutBigEndian32(&s, w.sequence);
  }
  return s;
}

Result<TxnRecord> DecodeTxnRecord(std::string_view bytes) {
  static constexpr std::string_view kWhat = "transaction record";
  Decoder d(bytes);
  TxnRecord r;
  RETURN_IF_ERROR(ReadKind(kWhat, &d, ValueKind::kTxnRecord));
  uint8_t layout = 0;
  RETURN_IF_ERROR(ReadU8(kWhat, "layout", &d, &layout));
  if (layout != TxnRecord::kLayout) {
    return Status::Corruption(
        fmt::format("keys: {}: layout {}, want {}", kWhat, layout, TxnRecord::kLayout));
  }
  uint8_t status = 0;
  RETURN_IF_ERROR(ReadU8(kWhat, "status", &d, &status));
  if (status < static_cast<uint8_t>(TxnStatus::kPending) ||
      status > static_cast<uint8_t>(TxnStatus::kAborted)) {
    return Status::Corruption(fmt::format("keys: {}: status {}", kWhat, status));
  }
  r.status = static_cast<TxnStatus>(status);
  RETURN_IF_ERROR(ReadTimestamp(kWhat, "write timestamp", &d, &r.write_timestamp));
  RETURN_IF_ERROR(ReadTimestamp(kWhat, "read timestamp", &d, &r.read_timestamp));
  RETURN_IF_ERROR(ReadU32(kWhat, "epoch", &d, &r.epoch));
  RETURN_IF_ERROR(ReadU32(kWhat, "priority", &d, &r.priority));
  uint64_t n = 0;
  RETURN_IF_ERROR(ReadCount(kWhat, "in-flight write count", &d, &n));
  if (n != 0 && r.status != TxnStatus::kStaging) {
    return Status::Corruption(fmt::format("keys: {}: {} in-flight writes in a {} record", kWhat, n,
                                          TxnStatusName(r.status)));
  }
  // Each write takes at least 5 bytes (a length and a sequence): a count
  // beyond that is a lie, refused before the loop starts.
  if (n > d.remaining() / 5) return Truncated(kWhat, "in-flight writes");
  for (uint64_t i = 0; i < n; ++i) {
    InFlightWrite w;
    RETURN_IF_ERROR(ReadString(kWhat, "in-flight write key", &d, &w.key));
    RETURN_IF_ERROR(ReadU32(kWhat, "in-flight write sequence", &d, &w.sequence));
    r.in_flight_writes.push_back(std::move(w));
  }
  RETURN_IF_ERROR(ExpectEnd(kWhat, d));
  return r;
}

bool RangeDescriptor::ContainsKey(std::string_view user_key) const {
  return user_key >= start_key && (end_key.empty() || user_key < end_key);
}

const ReplicaDescriptor* RangeDescriptor::ReplicaOn(uint64_t node_id) const {
  for (const ReplicaDescriptor& r : replicas) {
    if (r.node_id == node_id) return &r;
  }
  return nullptr;
}

Status ValidateRangeDescriptor(const RangeDescriptor& d) {
  if (d.range_id == 0) return Status::Corruption("keys: range descriptor: range id 0");
  if (!d.end_key.empty() && d.start_key >= d.end_key) {
    return Status::Corruption(
        fmt::format("keys: range descriptor r{}: start key not below end key", d.range_id));
  }
  std::set<uint64_t> nodes;
  std::set<uint64_t> replicas;
  for (const ReplicaDescriptor& r : d.replicas) {
    if (r.node_id == 0 || r.replica_id == 0) {
      return Status::Corruption(
          fmt::format("keys: range descriptor r{}: node or replica id 0", d.range_id));
    }
    if (r.type != ReplicaType::kVoter && r.type != ReplicaType::kLearner) {
      return Status::Corruption(fmt::format("keys: range descriptor r{}: replica type {}",
                                            d.range_id, static_cast<int>(r.type)));
    }
    if (r.replica_id >= d.next_replica_id) {
      return Status::Corruption(
          fmt::format("keys: range descriptor r{}: replica id {} not below next replica id {}",
                      d.range_id, r.replica_id, d.next_replica_id));
    }
    if (!nodes.insert(r.node_id).second || !replicas.insert(r.replica_id).second) {
      return Status::Corruption(
          fmt::format("keys: range descriptor r{}: node {} or replica {} appears twice", d.range_id,
                      r.node_id, r.replica_id));
    }
  }
  return Status::Ok();
}

std::string EncodeRangeDescriptor(const RangeDescriptor& d) {
  const Status valid = ValidateRangeDescriptor(d);
  CHECK_MSG(valid.ok(), "{}", valid.ToString());
  std::string s = ValueStart(ValueKind::kRangeDescriptor);
  PutBigEndian64(&s, d.range_id);
  AppendString(&s, d.start_key);
  AppendString(&s, d.end_key);
  PutBigEndian64(&s, d.generation);
  PutBigEndian64(&s, d.next_replica_id);
  PutVarint64(&s, d.replicas.size());
  for (const ReplicaDescriptor& r : d.replicas) {
    PutBigEndian64(&s, r.node_id);
    PutBigEndian64(&s, r.replica_id);
    s.push_back(static_cast<char>(r.type));
  }
  if (d.sticky || d.frozen_into != 0 || d.merging_from != 0) {
    s.push_back(static_cast<char>(d.sticky ? 1 : 0));
    PutBigEndian64(&s, d.frozen_into);
    PutBigEndian64(&s, d.merging_from);
  }
  return s;
}

Result<RangeDescriptor> DecodeRangeDescriptor(std::string_view bytes) {
  static constexpr std::string_view kWhat = "range descriptor";
  static constexpr size_t kReplicaBytes = 8 + 8 + 1;
  Decoder d(bytes);
  RangeDescriptor out;
  RETURN_IF_ERROR(ReadKind(kWhat, &d, ValueKind::kRangeDescriptor));
  RETURN_IF_ERROR(ReadU64(kWhat, "range id", &d, &out.range_id));
  RETURN_IF_ERROR(ReadString(kWhat, "start key", &d, &out.start_key));
  RETURN_IF_ERROR(ReadString(kWhat, "end key", &d, &out.end_key));
  RETURN_IF_ERROR(ReadU64(kWhat, "generation", &d, &out.generation));
  RETURN_IF_ERROR(ReadU64(kWhat, "next replica id", &d, &out.next_replica_id));
  uint64_t n = 0;
  RETURN_IF_ERROR(ReadCount(kWhat, "replica count", &d, &n));
  if (n > d.remaining() / kReplicaBytes) return Truncated(kWhat, "replicas");
  for (uint64_t i = 0; i < n; ++i) {
    ReplicaDescriptor r;
    uint8_t type = 0;
    RETURN_IF_ERROR(ReadU64(kWhat, "node id", &d, &r.node_id));
    RETURN_IF_ERROR(ReadU64(kWhat, "replica id", &d, &r.replica_id));
    RETURN_IF_ERROR(ReadU8(kWhat, "replica type", &d, &type));
    r.type = static_cast<ReplicaType>(type);
    out.replicas.push_back(r);
  }
  if (d.remaining() > 0) {
    uint8_t flags = 0;
    RETURN_IF_ERROR(ReadU8(kWhat, "flags", &d, &flags));
    if (flags > 1) {
      return Status::Corruption(fmt::format("keys: {}: unknown flags {:#x}", kWhat, flags));
    }
    out.sticky = flags == 1;
    RETURN_IF_ERROR(ReadU64(kWhat, "frozen into", &d, &out.frozen_into));
    RETURN_IF_ERROR(ReadU64(kWhat, "merging from", &d, &out.merging_from));
    if (!out.sticky && out.frozen_into == 0 && out.merging_from == 0) {
      return Status::Corruption(fmt::format("keys: {}: an empty trailer", kWhat));
    }
  }
  RETURN_IF_ERROR(ExpectEnd(kWhat, d));
  RETURN_IF_ERROR(ValidateRangeDescriptor(out));
  return out;
}

std::string EncodeAppliedState(const AppliedState& a) {
  std::string s = ValueStart(ValueKind::kAppliedState);
  PutBigEndian64(&s, a.index);
  PutBigEndian64(&s, a.term);
  a.closed_timestamp.AppendTo(&s);
  PutBigEndian64(&s, a.data_bytes);
  return s;
}

Result<AppliedState> DecodeAppliedState(std::string_view bytes) {
  static constexpr std::string_view kWhat = "applied state";
  Decoder d(bytes);
  AppliedState a;
  RETURN_IF_ERROR(ReadKind(kWhat, &d, ValueKind::kAppliedState));
  RETURN_IF_ERROR(ReadU64(kWhat, "index", &d, &a.index));
  RETURN_IF_ERROR(ReadU64(kWhat, "term", &d, &a.term));
  RETURN_IF_ERROR(ReadTimestamp(kWhat, "closed timestamp", &d, &a.closed_timestamp));
  RETURN_IF_ERROR(ReadU64(kWhat, "data bytes", &d, &a.data_bytes));
  RETURN_IF_ERROR(ExpectEnd(kWhat, d));
  return a;
}

std::string EncodeRaftConfig(const RaftConfig& c) {
  std::string s = ValueStart(ValueKind::kRaftConfig);
  s.push_back(c.auto_leave ? '\x01' : '\x00');
  AppendIdList(&s, c.voters);
  AppendIdList(&s, c.learners);
  AppendIdList(&s, c.voters_outgoing);
  AppendIdList(&s, c.learners_next);
  return s;
}

Result<RaftConfig> DecodeRaftConfig(std::string_view bytes) {
  static constexpr std::string_view kWhat = "raft config";
  Decoder d(bytes);
  RaftConfig c;
  RETURN_IF_ERROR(ReadKind(kWhat, &d, ValueKind::kRaftConfig));
  uint8_t auto_leave = 0;
  RETURN_IF_ERROR(ReadU8(kWhat, "auto leave", &d, &auto_leave));
  if (auto_leave > 1) {
    return Status::Corruption(fmt::format("keys: {}: auto leave byte {}", kWhat, auto_leave));
  }
  c.auto_leave = auto_leave == 1;
  RETURN_IF_ERROR(ReadIdList(kWhat, "voters", &d, &c.voters));
  RETURN_IF_ERROR(ReadIdList(kWhat, "learners", &d, &c.learners));
  RETURN_IF_ERROR(ReadIdList(kWhat, "outgoing voters", &d, &c.voters_outgoing));
  RETURN_IF_ERROR(ReadIdList(kWhat, "next learners", &d, &c.learners_next));
  RETURN_IF_ERROR(ExpectEnd(kWhat, d));
  return c;
}

std::string EncodeFormatVersion(uint32_t version) {
  std::string s = ValueStart(ValueKind::kFormatVersion);
  PutBigEndian32(&s, version);
  return s;
}

Result<uint32_t> DecodeFormatVersion(std::string_view bytes) {
  static constexpr std::string_view kWhat = "format version";
  Decoder d(bytes);
  uint32_t v = 0;
  RETURN_IF_ERROR(ReadKind(kWhat, &d, ValueKind::kFormatVersion));
  RETURN_IF_ERROR(ReadU32(kWhat, "version", &d, &v));
  RETURN_IF_ERROR(ExpectEnd(kWhat, d));
  return v;
}

Status CheckFormatVersion(uint32_t stored) {
  if (stored == 0) return Status::Corruption("keys: format version 0 recorded");
  if (stored > kFormatVersion) {
    return Status::FailedPrecondition(
        fmt::format("the store was written with key format version {}; this binary reads up to {}",
                    stored, kFormatVersion));
  }
  return Status::Ok();
}

}  // namespace conclave::keys
