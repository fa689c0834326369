// The MVCC store's data model and requests, with etcd v3 semantics.
//
// Every change to the key space gets a revision: `main` counts committed
// write requests (Put, a DeleteRange that deleted something, a Txn that
// wrote), `sub` counts the changes within one request. Each key carries the
// revision that created it, the one that last modified it, a version (1 on
// creation, +1 per change, reset by deletion) and an optional lease.
//
// These structs mirror etcd's RangeRequest, PutRequest, DeleteRangeRequest,
// TxnRequest and CompactionRequest field for field; src/api translates the
// wire messages into them. Errors carry etcd's messages (errors below).
//
// Thread-safety: values.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "base/coding.h"  // PrefixEnd: the range_end of a prefix
#include "base/status.h"

namespace conclave::mvcc {

struct Revision {
  int64_t main = 0;
  int64_t sub = 0;
  // NOLINTNEXTLINE(modernize-use-nullptr): clang-tidy 14 misreads defaulted <=>
  auto operator<=>(const Revision&) const = default;
};

struct KeyValue {
  std::string key;
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
  int64_t version = 0;
  std::string value;
  int64_t lease = 0;
  bool operator==(const KeyValue&) const = default;
};

enum class EventType : uint8_t { kPut = 0, kDelete = 1 };

// One change, as watchers see it. For a delete, kv holds the key and the
// deletion's mod_revision only.
struct Event {
  EventType type = EventType::kPut;
  KeyValue kv;
  bool operator==(const Event&) const = default;
};

enum class SortOrder : uint8_t { kNone = 0, kAscend = 1, kDescend = 2 };
enum class SortTarget : uint8_t { kKey = 0, kVersion = 1, kCreate = 2, kMod = 3, kValue = 4 };

struct RangeRequest {
  std::string key;
  std::string range_end;  // empty: just `key`; "\0": every key >= key
  int64_t limit = 0;      // <= 0: no limit
  int64_t revision = 0;   // <= 0: current
  SortOrder sort_order = SortOrder::kNone;
  SortTarget sort_target = SortTarget::kKey;
  bool serializable = false;
  bool keys_only = false;
  bool count_only = false;
  int64_t min_mod_revision = 0;
  int64_t max_mod_revision = 0;
  int64_t min_create_revision = 0;
  int64_t max_create_revision = 0;
};

struct RangeResponse {
  int64_t revision = 0;  // the store's revision the read observed
  std::vector<KeyValue> kvs;
  bool more = false;
  int64_t count = 0;
};

struct PutRequest {
  std::string key;
  std::string value;
  int64_t lease = 0;
  bool prev_kv = false;
  bool ignore_value = false;
  bool ignore_lease = false;
};

struct PutResponse {
  int64_t revision = 0;
  bool has_prev_kv = false;
  KeyValue prev_kv;
};

struct DeleteRangeRequest {
  std::string key;
  std::string range_end;
  bool prev_kv = false;
};

struct DeleteRangeResponse {
  int64_t revision = 0;
  int64_t deleted = 0;
  std::vector<KeyValue> prev_kvs;
};

struct Compare {
  enum class Result : uint8_t { kEqual = 0, kGreater = 1, kLess = 2, kNotEqual = 3 };
  enum class Target : uint8_t { kVersion = 0, kCreate = 1, kMod = 2, kValue = 3, kLease = 4 };
  Result result = Result::kEqual;
  Target target = Target::kVersion;
  std::string key;
  std::string range_end;  // compare every key in [key, range_end)
  int64_t version = 0;
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
  std::string value;
  int64_t lease = 0;
};

struct TxnRequest;
struct TxnResponse;

struct RequestOp {
  std::variant<RangeRequest, PutRequest, DeleteRangeRequest, std::shared_ptr<TxnRequest>> op;
};

struct ResponseOp {
  std::variant<RangeResponse, PutResponse, DeleteRangeResponse, std::shared_ptr<TxnResponse>> op;
};

struct TxnRequest {
  std::vector<Compare> compare;
  std::vector<RequestOp> success;
  std::vector<RequestOp> failure;
};

struct TxnResponse {
  int64_t revision = 0;
  bool succeeded = false;
  std::vector<ResponseOp> responses;
};

struct CompactionRequest {
  int64_t revision = 0;
};

// etcd's error texts; clients match on them.
namespace errors {
inline constexpr std::string_view kCompacted = "mvcc: required revision has been compacted";
inline constexpr std::string_view kFutureRevision = "mvcc: required revision is a future revision";
inline constexpr std::string_view kKeyNotFound = "etcdserver: key not found";
inline constexpr std::string_view kEmptyKey = "etcdserver: key is not provided";
inline constexpr std::string_view kValueProvided = "etcdserver: value is provided";
inline constexpr std::string_view kLeaseProvided = "etcdserver: lease is provided";
inline constexpr std::string_view kDuplicateKey = "etcdserver: duplicate key given in txn request";
inline constexpr std::string_view kTooManyOps = "etcdserver: too many operations in txn request";
inline constexpr std::string_view kNoSpace = "mvcc: database space exceeded";

inline Status Compacted() {
  return Status::OutOfRange(std::string(kCompacted));
}
inline Status FutureRevision() {
  return Status::OutOfRange(std::string(kFutureRevision));
}
inline Status KeyNotFound() {
  return Status::InvalidArgument(std::string(kKeyNotFound));
}
// Writes refused while the NOSPACE alarm is raised (the quota was exceeded).
inline Status NoSpace() {
  return Status::ResourceExhausted(std::string(kNoSpace));
}
}  // namespace errors

// Request checks that need no state (run before proposing). max_txn_ops
// bounds the compares and each branch of a txn; as with etcd's
// --max-txn-ops, a nested txn gets what its parent leaves (max_txn_ops minus
// the parent's longest list), which also bounds the nesting depth.
Status ValidateRange(const RangeRequest& r);
Status ValidatePut(const PutRequest& r);
Status ValidateDeleteRange(const DeleteRangeRequest& r);
Status ValidateTxn(const TxnRequest& r, size_t max_txn_ops);

}  // namespace conclave::mvcc
