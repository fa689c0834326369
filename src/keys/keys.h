// The node's key layout: how every key and value that a node keeps in its one
// RocksDB instance is encoded, format version 1 (docs/KEYS.md).
//
// Every engine key starts with a one-byte tag naming its keyspace:
//
//   00  the etcd keyspace (legacy): src/mvcc/keys.h's layout, 8-byte
//       big-endian group id first; only named here, never decoded further
//   01  node-local, not replicated:   01 <name>
//   02  range-id-local, replicated:   02 <range id: 8 BE> <kind> [suffix]
//   03  range-addressed local:        03 <escaped anchor> 00 01 <kind> <suffix>
//   04  native data:                  04 <escaped user key> 00 01 01
//                                     04 <escaped user key> 00 01 02 <~timestamp: 12>
//   05..ff reserved; every decoder refuses them
//
// User keys are escaped (00 -> 00 ff) and terminated by 00 01, so the keys of
// one user key are contiguous and sort among other user keys' exactly as the
// raw user keys do. A key's intent record sorts before its versions, and its
// versions newest first (the timestamp is stored bitwise inverted). Range
// data is addressed by user key and range metadata by range id, so a split
// or a merge of a range rewrites metadata only; data never moves.
//
// Every value starts with a one-byte ValueKind. Integers in values are
// fixed-width big-endian, lengths and counts are varints (shortest form
// only), timestamps are the 12-byte form of base/timestamp.h.
//
// Decoders take arbitrary bytes: they never read out of bounds, allocate only
// in proportion to their input, and refuse anything that the encoders would
// not have produced (kCorruption, saying what was wrong). Hence
// Encode(Decode(bytes)) == bytes whenever Decode succeeds. Encoders CHECK
// their preconditions: handing them an invalid struct is a bug.
//
// Thread-safety: pure functions and value types.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "base/status.h"
#include "base/timestamp.h"

namespace conclave::keys {

// The layout this code reads and writes. Stored under FormatVersionKey();
// a node refuses a store written with a newer version (CheckFormatVersion).
inline constexpr uint32_t kFormatVersion = 1;

// The first byte of every engine key.
enum class Tag : uint8_t {
  kEtcd = 0x00,
  kNodeLocal = 0x01,
  kRangeIdLocal = 0x02,
  kRangeLocal = 0x03,
  kData = 0x04,
};
// Tags from here to 0xff are reserved for later format versions.
inline constexpr uint8_t kFirstReservedTag = 0x05;

// A range's id; also the id of the Raft group that replicates it. 0 is not a
// range id. The etcd group keeps its own group id and layout.
using RangeId = uint64_t;

// The 16-byte id of a transaction; ordered bytewise.
struct TxnId {
  static constexpr size_t kBytes = 16;
  std::array<uint8_t, kBytes> bytes{};

  bool IsZero() const;
  // 32 lowercase hex digits.
  std::string ToString() const;
  // NOLINTNEXTLINE(modernize-use-nullptr): clang-tidy 14 misreads defaulted <=>
  friend auto operator<=>(const TxnId&, const TxnId&) = default;
  friend bool operator==(const TxnId&, const TxnId&) = default;
};

// ---------------------------------------------------------------- keys

// What follows 02 <range id>. Adding a kind is a format change: an older
// binary must refuse the store at boot rather than meet a key it cannot read.
enum class RangeIdKind : uint8_t {
  kAppliedState = 0x01,     // AppliedState
  kRaftConfig = 0x02,       // RaftConfig
  kRangeDescriptor = 0x03,  // RangeDescriptor
};

// What follows 03 <escaped anchor> 00 01.
enum class RangeLocalKind : uint8_t {
  kTxnRecord = 0x01,  // suffix: the 16-byte TxnId; value: TxnRecord
};

// What follows 04 <escaped user key> 00 01.
enum class VersionTag : uint8_t {
  kIntent = 0x01,   // the key's intent record (IntentValue); no suffix
  kVersion = 0x02,  // a version (VersionValue); suffix: inverted timestamp
};

// Names of node-local keys (01 <name>). Their values, apart from the format
// version, are defined by the code that owns them.
inline constexpr std::string_view kFormatVersionName = "format_version";
inline constexpr std::string_view kNodeIdentName = "ident";
inline constexpr std::string_view kBootCounterName = "boot_counter";
// Followed by the range id, 8 bytes big-endian.
inline constexpr std::string_view kReplicaTombstonePrefix = "replica_tombstone/";

// The decoded forms of keys, one per keyspace.
struct EtcdKey {
  std::string raw;  // the whole engine key, tag included (src/mvcc/keys.h)
  bool operator==(const EtcdKey&) const = default;
};
struct NodeLocalKey {
  std::string name;  // not empty
  bool operator==(const NodeLocalKey&) const = default;
};
struct RangeIdLocalKey {
  RangeId range_id = 0;
  RangeIdKind kind = RangeIdKind::kAppliedState;
  bool operator==(const RangeIdLocalKey&) const = default;
};
struct RangeLocalKey {
  std::string anchor;  // the user key the entry travels with
  RangeLocalKind kind = RangeLocalKind::kTxnRecord;
  TxnId txn_id;  // kTxnRecord
  bool operator==(const RangeLocalKey&) const = default;
};
struct DataKey {
  std::string user_key;
  VersionTag tag = VersionTag::kVersion;
  Timestamp ts;  // kVersion only; zero for kIntent
  bool operator==(const DataKey&) const = default;
};
using Key = std::variant<EtcdKey, NodeLocalKey, RangeIdLocalKey, RangeLocalKey, DataKey>;

// Encoders. Each CHECKs what its decoder would refuse (an empty node-local
// name, range id 0, an etcd key that does not start with 00, an intent with
// a timestamp).
std::string EncodeKey(const Key& key);
std::string EncodeKey(const EtcdKey& key);
std::string EncodeKey(const NodeLocalKey& key);
std::string EncodeKey(const RangeIdLocalKey& key);
std::string EncodeKey(const RangeLocalKey& key);
std::string EncodeKey(const DataKey& key);

// Shorthands for the keys in use.
std::string NodeLocalKeyFor(std::string_view name);
std::string FormatVersionKey();
std::string ReplicaTombstoneKey(RangeId range_id);
std::string AppliedStateKey(RangeId range_id);
std::string RaftConfigKey(RangeId range_id);
std::string RangeDescriptorKey(RangeId range_id);
std::string TxnRecordKey(std::string_view anchor, const TxnId& txn_id);
std::string IntentKey(std::string_view user_key);
// Also the seek target for a read at `ts`: the first entry at or after it
// is the newest version of user_key at or before ts, if any.
std::string VersionKey(std::string_view user_key, Timestamp ts);

// Decoders: kCorruption on anything the encoders would not produce, a
// reserved tag included. The typed ones also refuse other keyspaces' keys.
Result<Key> DecodeKey(std::string_view key);
Result<NodeLocalKey> DecodeNodeLocalKey(std::string_view key);
Result<RangeIdLocalKey> DecodeRangeIdLocalKey(std::string_view key);
Result<RangeLocalKey> DecodeRangeLocalKey(std::string_view key);
Result<DataKey> DecodeDataKey(std::string_view key);

// The keyspace of an engine key; kCorruption for an empty key or a reserved tag.
Result<Tag> KeyTag(std::string_view key);

// A readable rendering of any engine key for logs and test failures, e.g.
// data/"a\x00b"/v1700000000000000000.3; never fails.
std::string DescribeKey(std::string_view key);

// ---------------------------------------------------------------- spans

// The engine keys k with begin <= k < end.
struct Span {
  std::string begin;
  std::string end;
  bool Contains(std::string_view key) const { return key >= begin && key < end; }
  bool operator==(const Span&) const = default;
};

// Whole keyspaces.
Span EtcdSpan();
Span NodeLocalSpan();
Span AllRangeIdLocalSpan();
Span AllRangeLocalSpan();
Span AllDataSpan();

// Every range-id-local key of one range.
Span RangeIdLocalSpan(RangeId range_id);
// The range-addressed local keys, and the data, of the user keys k with
// start <= k < end; an empty end means no upper bound. Requires start < end
// when end is not empty. Spans of adjacent user-key spans abut exactly.
Span RangeLocalSpan(std::string_view start, std::string_view end);
Span DataSpan(std::string_view start, std::string_view end);
// Every data entry of one user key: its intent record and all its versions.
Span KeyEntriesSpan(std::string_view user_key);

// ---------------------------------------------------------------- values

// The first byte of every encoded value. A value kind is never reused for a
// different layout; a new layout takes a new kind.
enum class ValueKind : uint8_t {
  kValue = 0x01,            // a version holding a value
  kTombstone = 0x02,        // a version recording a deletion
  kIntent = 0x03,           // IntentValue
  kTxnRecord = 0x04,        // TxnRecord
  kRangeDescriptor = 0x05,  // RangeDescriptor
  kAppliedState = 0x06,     // AppliedState
  kRaftConfig = 0x07,       // RaftConfig
  kFormatVersion = 0x08,    // the format version, under FormatVersionKey()
};

// A version of a key: its value at that timestamp, or its deletion.
//   01 <value bytes to the end>  |  02
struct VersionValue {
  bool tombstone = false;
  std::string value;  // empty for a tombstone
  bool operator==(const VersionValue&) const = default;
};
std::string EncodeVersionValue(const VersionValue& v);
Result<VersionValue> DecodeVersionValue(std::string_view bytes);

// A key's intent record: which transaction holds the key's provisional
// write, and where to find its record. The provisional value is the version
// at write_timestamp.
//   03 <txn id:16> <write ts:12> <anchor: varint len, bytes> <epoch:4> <sequence:4>
struct IntentValue {
  TxnId txn_id;
  Timestamp write_timestamp;
  std::string txn_record_anchor;  // the anchor key of TxnRecordKey()
  uint32_t epoch = 0;
  uint32_t sequence = 0;  // of the write within the transaction
  bool operator==(const IntentValue&) const = default;
};
std::string EncodeIntentValue(const IntentValue& v);
Result<IntentValue> DecodeIntentValue(std::string_view bytes);

enum class TxnStatus : uint8_t {
  kPending = 1,
  kStaging = 2,  // committed once every in-flight write is proven
  kCommitted = 3,
  kAborted = 4,
};
std::string_view TxnStatusName(TxnStatus s);

// A write whose success a STAGING transaction's commit depends on.
struct InFlightWrite {
  std::string key;
  uint32_t sequence = 0;
  bool operator==(const InFlightWrite&) const = default;
};

// A transaction record, stored under TxnRecordKey(anchor, txn id).
//   04 <layout:1 = 01> <status:1> <write ts:12> <read ts:12> <epoch:4> <priority:4>
//      <in-flight count: varint> { <key: varint len, bytes> <sequence:4> }
// The layout byte lets later fields (a heartbeat, lock spans) arrive as
// layout 2 beside readers of layout 1. Only a STAGING record lists in-flight
// writes.
struct TxnRecord {
  static constexpr uint8_t kLayout = 1;
  TxnStatus status = TxnStatus::kPending;
  Timestamp write_timestamp;  // the commit timestamp once COMMITTED
  Timestamp read_timestamp;
  uint32_t epoch = 0;
  uint32_t priority = 0;
  std::vector<InFlightWrite> in_flight_writes;
  bool operator==(const TxnRecord&) const = default;
};
std::string EncodeTxnRecord(const TxnRecord& r);
Result<TxnRecord> DecodeTxnRecord(std::string_view bytes);

enum class ReplicaType : uint8_t {
  kVoter = 1,
  kLearner = 2,
};

struct ReplicaDescriptor {
  uint64_t node_id = 0;
  uint64_t replica_id = 0;  // the Raft peer id within the range's group
  ReplicaType type = ReplicaType::kVoter;
  bool operator==(const ReplicaDescriptor&) const = default;
};

// A range: the user keys [start_key, end_key) and where its replicas are.
//   05 <range id:8> <start: varint len, bytes> <end: varint len, bytes> <generation:8>
//      <next replica id:8> <replica count: varint> { <node id:8> <replica id:8> <type:1> }
//      [ <flags:1> <frozen into:8> <merging from:8> ]   (only when one is set; flags bit 0: sticky)
// Valid: range id not 0; start < end unless end is empty (to the end of the
// keyspace); replica and node ids not 0, each at most once, every replica
// id below next_replica_id (replica ids are never reused).
struct RangeDescriptor {
  RangeId range_id = 0;
  std::string start_key;
  std::string end_key;      // empty: to the end of the keyspace
  uint64_t generation = 0;  // +1 on every split, merge and replica change
  uint64_t next_replica_id = 1;
  std::vector<ReplicaDescriptor> replicas;
  // The range's start was chosen by hand (a split asked for, or a new
  // cluster's initial ranges): automatic merges leave it alone.
  bool sticky = false;
  // Not 0: the range is frozen for a merge into its left neighbour, this
  // range; it serves nothing until the merge completes or is called off.
  RangeId frozen_into = 0;
  // Not 0: the range is about to take in its right neighbour, this range
  // (prepared for the merge); it is not frozen or split meanwhile.
  RangeId merging_from = 0;

  bool ContainsKey(std::string_view user_key) const;
  // The replica on `node_id`, if the range has one there.
  const ReplicaDescriptor* ReplicaOn(uint64_t node_id) const;
  bool HasNode(uint64_t node_id) const { return ReplicaOn(node_id) != nullptr; }
  bool operator==(const RangeDescriptor&) const = default;
};
// OK, or kCorruption saying which rule is broken.
Status ValidateRangeDescriptor(const RangeDescriptor& d);
std::string EncodeRangeDescriptor(const RangeDescriptor& d);
Result<RangeDescriptor> DecodeRangeDescriptor(std::string_view bytes);

// What a replica has applied, written in the same batch as the commands.
//   06 <index:8> <term:8> <closed ts:12> <data bytes:8>
struct AppliedState {
  uint64_t index = 0;
  uint64_t term = 0;
  Timestamp closed_timestamp;
  // The range's data: the bytes of its versions' keys and values, as
  // encoded (what sizes the range for splits).
  uint64_t data_bytes = 0;
  bool operator==(const AppliedState&) const = default;
};
std::string EncodeAppliedState(const AppliedState& s);
Result<AppliedState> DecodeAppliedState(std::string_view bytes);

// The range's Raft configuration as of the applied index (raft::ConfState
// in replica ids), so that a replica restarts or installs a snapshot with it.
//   07 <auto leave:1> then four lists, each <count: varint> { <replica id:8> }:
//   voters, learners, outgoing voters, next learners
struct RaftConfig {
  std::vector<uint64_t> voters;
  std::vector<uint64_t> learners;
  std::vector<uint64_t> voters_outgoing;
  std::vector<uint64_t> learners_next;
  bool auto_leave = false;
  bool operator==(const RaftConfig&) const = default;
};
std::string EncodeRaftConfig(const RaftConfig& c);
Result<RaftConfig> DecodeRaftConfig(std::string_view bytes);

// The value under FormatVersionKey():  08 <version:4>
std::string EncodeFormatVersion(uint32_t version);
Result<uint32_t> DecodeFormatVersion(std::string_view bytes);
// Whether this binary may open a store that records `stored`:
// kFailedPrecondition for a newer version, kCorruption for 0.
Status CheckFormatVersion(uint32_t stored);

// The spans a snapshot of the range copies, and the only ones its
// replica's state lives in: range-id-local, range-addressed local, data.
std::vector<Span> ReplicatedSpans(const RangeDescriptor& d);

}  // namespace conclave::keys
