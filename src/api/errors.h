// The one table from Conclave's Status values to what etcd 3.4 puts on the
// wire: a gRPC status code and etcd's exact error message.
//
// etcd clients (clientv3, etcdctl, jetcd, ...) recognise server errors by
// comparing the gRPC message with the strings in etcd's
// api/v3rpc/rpctypes/error.go, so every message here must match etcd's byte
// for byte, and the code must be the one etcd sends with it.
//
// Lookup is by message: a Status whose message is one of etcd's wire texts
// (or one of Conclave's internal spellings of it, such as the mvcc errors'
// "mvcc: required revision has been compacted") is sent as etcd sends it,
// whatever code it was raised with. Any other Status keeps its message and
// its gRPC code (Conclave's codes are gRPC's); the storage-only codes map to
// DATA_LOSS (corruption) and INTERNAL (I/O errors).
//
// This header does not include gRPC: src/api builds a grpc::Status from a
// WireError with static_cast<grpc::StatusCode>(grpc_code).
//
// Thread-safety: pure functions over constant data.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "base/status.h"

namespace conclave::api {

// gRPC's canonical status codes, as on the wire.
namespace grpc_code {
inline constexpr int kOk = 0;
inline constexpr int kCancelled = 1;
inline constexpr int kUnknown = 2;
inline constexpr int kInvalidArgument = 3;
inline constexpr int kDeadlineExceeded = 4;
inline constexpr int kNotFound = 5;
inline constexpr int kAlreadyExists = 6;
inline constexpr int kPermissionDenied = 7;
inline constexpr int kResourceExhausted = 8;
inline constexpr int kFailedPrecondition = 9;
inline constexpr int kAborted = 10;
inline constexpr int kOutOfRange = 11;
inline constexpr int kUnimplemented = 12;
inline constexpr int kInternal = 13;
inline constexpr int kUnavailable = 14;
inline constexpr int kDataLoss = 15;
inline constexpr int kUnauthenticated = 16;
}  // namespace grpc_code

struct WireError {
  int grpc_code = grpc_code::kOk;
  std::string message;

  bool operator==(const WireError& other) const = default;
};

// One row of the table. `internal_message` is Conclave's own spelling when it
// differs from the wire text (empty when Conclave raises the wire text itself).
struct EtcdError {
  int grpc_code;
  std::string_view message;
  std::string_view internal_message;
};

// Every server error of etcd 3.4's rpctypes, in etcd's order.
std::span<const EtcdError> EtcdErrors();

// The wire form of `status`; {kOk, ""} for an OK status.
WireError ToWire(const Status& status);

}  // namespace conclave::api
