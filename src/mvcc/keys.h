// How the MVCC store lays out its data in the storage engine (docs/MVCC.md).
//
// Every key starts with the 8-byte big-endian group id, so one engine (one
// RocksDB instance) can hold many Raft groups' state side by side:
//
//   <group> 'm' <name>                       metadata (applied index, revisions)
//   <group> 'k' <escaped user key> 00 01 <~main> <~sub>   one version of a key
//   <group> 'r' <main> <sub>                 the change at that revision (watch history)
//
// User keys are escaped (00 -> 00 ff) and terminated by 00 01 so that the
// encoding sorts exactly like the raw keys and no key's versions interleave
// with another's. Revisions are stored inverted in 'k' entries so that a
// key's newest version comes first.
//
// Internal to src/mvcc. Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "mvcc/kv.h"

namespace conclave::mvcc::keys {

std::string GroupPrefix(uint64_t group);
std::string MetaKey(uint64_t group, std::string_view name);

// The metadata a group's store keeps, each an 8-byte little-endian integer.
inline constexpr std::string_view kMetaAppliedIndex = "applied_index";
inline constexpr std::string_view kMetaRevision = "revision";
inline constexpr std::string_view kMetaCompacted = "compacted";
inline constexpr std::string_view kMetaAppliedTerm = "applied_term";
// Names the application keeps through ApplyBatch::PutMeta start with this, so
// they can never collide with the store's own.
inline constexpr std::string_view kAppMetaPrefix = "app/";
std::string EncodeMetaInt(int64_t v);
// 0 for anything that is not 8 bytes.
int64_t DecodeMetaInt(std::string_view bytes);

// The prefix shared by every version of `user_key`.
std::string VersionPrefix(uint64_t group, std::string_view user_key);
// The entry for `user_key` at `rev`.
std::string VersionKey(uint64_t group, std::string_view user_key, Revision rev);
// The first entry at or after every version of user_key with main <= rev.
std::string VersionSeekKey(uint64_t group, std::string_view user_key, int64_t main);
// Just past every version of `user_key`.
std::string VersionPrefixEnd(uint64_t group, std::string_view user_key);
// Bounds of the whole version keyspace of a group.
std::string VersionSpaceStart(uint64_t group);
std::string VersionSpaceEnd(uint64_t group);

struct DecodedVersionKey {
  std::string user_key;
  Revision rev;
};
// Decodes a 'k' entry's key (with the group prefix). nullopt if malformed.
std::optional<DecodedVersionKey> DecodeVersionKey(std::string_view key);

std::string EventKey(uint64_t group, Revision rev);
// Every history key of a group starts with the same <group> 'r': its length,
// and whether a raw key is a history key.
inline constexpr size_t kEventSpacePrefixBytes = 9;
bool IsEventKey(std::string_view key);
std::string EventSpaceStart(uint64_t group);
std::string EventSpaceEnd(uint64_t group);
std::optional<Revision> DecodeEventKey(std::string_view key);

// Value of a 'k' entry: a live version or a tombstone.
struct VersionValue {
  bool tombstone = false;
  int64_t create_revision = 0;
  int64_t version = 0;
  int64_t lease = 0;
  std::string value;
};
std::string EncodeVersionValue(const VersionValue& v);
std::optional<VersionValue> DecodeVersionValue(std::string_view bytes);

// Value of an 'r' entry.
std::string EncodeEvent(const Event& e);
std::optional<Event> DecodeEvent(std::string_view bytes);

}  // namespace conclave::mvcc::keys
