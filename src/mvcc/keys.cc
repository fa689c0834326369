#include "mvcc/keys.h"

#include "base/coding.h"

namespace conclave::mvcc::keys {
namespace {

constexpr char kMeta = 'm';
constexpr char kVersion = 'k';
constexpr char kEvent = 'r';
constexpr size_t kGroupBytes = 8;

void PutBigEndian64(std::string* dst, uint64_t v) {
  for (int i = 7; i >= 0; --i)
    dst->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint64_t GetBigEndian64(std::string_view s) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i)
    v = (v << 8) | static_cast<uint8_t>(s[i]);
  return v;
}

void AppendEscaped(std::string* dst, std::string_view user_key) {
  for (char c : user_key) {
    dst->push_back(c);
    if (c == '\0') dst->push_back('\xff');
  }
  dst->push_back('\0');
  dst->push_back('\x01');
}

}  // namespace

bool IsEventKey(std::string_view key) {
  static_assert(kEventSpacePrefixBytes == kGroupBytes + 1);
  return key.size() >= kEventSpacePrefixBytes && key[kGroupBytes] == kEvent;
}

std::string GroupPrefix(uint64_t group) {
  std::string s;
  PutBigEndian64(&s, group);
  return s;
}

std::string MetaKey(uint64_t group, std::string_view name) {
  std::string s = GroupPrefix(group);
  s.push_back(kMeta);
  s.append(name);
  return s;
}

std::string EncodeMetaInt(int64_t v) {
  std::string s;
  PutFixed64(&s, static_cast<uint64_t>(v));
  return s;
}

int64_t DecodeMetaInt(std::string_view bytes) {
  return bytes.size() == 8 ? static_cast<int64_t>(DecodeFixed64(bytes.data())) : 0;
}

std::string VersionPrefix(uint64_t group, std::string_view user_key) {
  std::string s = GroupPrefix(group);
  s.push_back(kVersion);
  AppendEscaped(&s, user_key);
  return s;
}

std::string VersionKey(uint64_t group, std::string_view user_key, Revision rev) {
  std::string s = VersionPrefix(group, user_key);
  PutBigEndian64(&s, ~static_cast<uint64_t>(rev.main));
  PutBigEndian64(&s, ~static_cast<uint64_t>(rev.sub));
  return s;
}

std::string VersionSeekKey(uint64_t group, std::string_view user_key, int64_t main) {
  // The largest possible sub at `main` sorts first among main's versions.
  return VersionKey(group, user_key, Revision{main, INT64_MAX});
}

std::string VersionPrefixEnd(uint64_t group, std::string_view user_key) {
  std::string s = VersionPrefix(group, user_key);
  s.append(16, '\xff');
  return s;
}

std::string VersionSpaceStart(uint64_t group) {
  std::string s = GroupPrefix(group);
  s.push_back(kVersion);
  return s;
}

std::string VersionSpaceEnd(uint64_t group) {
  std::string s = GroupPrefix(group);
  s.push_back(kVersion + 1);
  return s;
}

std::optional<DecodedVersionKey> DecodeVersionKey(std::string_view key) {
  if (key.size() < kGroupBytes + 1 + 2 + 16 || key[kGroupBytes] != kVersion) return std::nullopt;
  std::string_view rest = key.substr(kGroupBytes + 1, key.size() - kGroupBytes - 1 - 16);
  DecodedVersionKey out;
  size_t i = 0;
  while (i < rest.size()) {
    const char c = rest[i];
    if (c != '\0') {
      out.user_key.push_back(c);
      ++i;
      continue;
    }
    if (i + 1 >= rest.size()) return std::nullopt;
    if (rest[i + 1] == '\xff') {
      out.user_key.push_back('\0');
      i += 2;
    } else if (rest[i + 1] == '\x01' && i + 2 == rest.size()) {
      std::string_view rev = key.substr(key.size() - 16);
      out.rev.main = static_cast<int64_t>(~GetBigEndian64(rev));
      out.rev.sub = static_cast<int64_t>(~GetBigEndian64(rev.substr(8)));
      return out;
    } else {
      return std::nullopt;
    }
  }
  return std::nullopt;
}

std::string EventKey(uint64_t group, Revision rev) {
  std::string s = GroupPrefix(group);
  s.push_back(kEvent);
  PutBigEndian64(&s, static_cast<uint64_t>(rev.main));
  PutBigEndian64(&s, static_cast<uint64_t>(rev.sub));
  return s;
}

std::string EventSpaceStart(uint64_t group) {
  std::string s = GroupPrefix(group);
  s.push_back(kEvent);
  return s;
}

std::string EventSpaceEnd(uint64_t group) {
  std::string s = GroupPrefix(group);
  s.push_back(kEvent + 1);
  return s;
}

std::optional<Revision> DecodeEventKey(std::string_view key) {
  if (key.size() != kGroupBytes + 1 + 16 || key[kGroupBytes] != kEvent) return std::nullopt;
  return Revision{static_cast<int64_t>(GetBigEndian64(key.substr(kGroupBytes + 1))),
                  static_cast<int64_t>(GetBigEndian64(key.substr(kGroupBytes + 9)))};
}

std::string EncodeVersionValue(const VersionValue& v) {
  std::string s;
  s.push_back(v.tombstone ? 1 : 0);
  if (v.tombstone) return s;
  PutVarint64(&s, static_cast<uint64_t>(v.create_revision));
  PutVarint64(&s, static_cast<uint64_t>(v.version));
  PutVarint64(&s, static_cast<uint64_t>(v.lease));
  s.append(v.value);
  return s;
}

std::optional<VersionValue> DecodeVersionValue(std::string_view bytes) {
  Decoder d(bytes);
  uint8_t flag = 0;
  if (!d.ReadByte(&flag) || flag > 1) return std::nullopt;
  VersionValue v;
  v.tombstone = flag == 1;
  if (v.tombstone) return d.empty() ? std::optional<VersionValue>(v) : std::nullopt;
  uint64_t create = 0;
  uint64_t version = 0;
  uint64_t lease = 0;
  if (!d.ReadVarint64(&create) || !d.ReadVarint64(&version) || !d.ReadVarint64(&lease)) {
    return std::nullopt;
  }
  v.create_revision = static_cast<int64_t>(create);
  v.version = static_cast<int64_t>(version);
  v.lease = static_cast<int64_t>(lease);
  v.value = std::string(bytes.substr(bytes.size() - d.remaining()));
  return v;
}

std::string EncodeEvent(const Event& e) {
  std::string s;
  s.push_back(static_cast<char>(e.type));
  PutLengthPrefixed(&s, e.kv.key);
  PutVarint64(&s, static_cast<uint64_t>(e.kv.create_revision));
  PutVarint64(&s, static_cast<uint64_t>(e.kv.mod_revision));
  PutVarint64(&s, static_cast<uint64_t>(e.kv.version));
  PutVarint64(&s, static_cast<uint64_t>(e.kv.lease));
  s.append(e.kv.value);
  return s;
}

std::optional<Event> DecodeEvent(std::string_view bytes) {
  Decoder d(bytes);
  uint8_t type = 0;
  std::string_view key;
  uint64_t create = 0;
  uint64_t mod = 0;
  uint64_t version = 0;
  uint64_t lease = 0;
  if (!d.ReadByte(&type) || type > 1 || !d.ReadLengthPrefixed(&key) || !d.ReadVarint64(&create) ||
      !d.ReadVarint64(&mod) || !d.ReadVarint64(&version) || !d.ReadVarint64(&lease)) {
    return std::nullopt;
  }
  Event e;
  e.type = static_cast<EventType>(type);
  e.kv.key = std::string(key);
  e.kv.create_revision = static_cast<int64_t>(create);
  e.kv.mod_revision = static_cast<int64_t>(mod);
  e.kv.version = static_cast<int64_t>(version);
  e.kv.lease = static_cast<int64_t>(lease);
  e.kv.value = std::string(bytes.substr(bytes.size() - d.remaining()));
  return e;
}

}  // namespace conclave::mvcc::keys
