// The texts and codes below were checked against etcd 3.4's
// etcdserver/api/v3rpc/rpctypes/error.go and the error mapping in
// etcdserver/api/v3rpc/util.go (togRPCError).
#include "api/errors.h"

#include <array>

namespace conclave::api {
namespace {

using namespace grpc_code;  // NOLINT(google-build-using-namespace): table readability

constexpr std::array kEtcdErrors = {
    // KV requests.
    EtcdError{kInvalidArgument, "etcdserver: key is not provided", ""},
    EtcdError{kInvalidArgument, "etcdserver: key not found", ""},
    EtcdError{kInvalidArgument, "etcdserver: value is provided", ""},
    EtcdError{kInvalidArgument, "etcdserver: lease is provided", ""},
    EtcdError{kInvalidArgument, "etcdserver: too many operations in txn request", ""},
    EtcdError{kInvalidArgument, "etcdserver: duplicate key given in txn request", ""},
    EtcdError{kOutOfRange, "etcdserver: mvcc: required revision has been compacted",
              "mvcc: required revision has been compacted"},
    EtcdError{kOutOfRange, "etcdserver: mvcc: required revision is a future revision",
              "mvcc: required revision is a future revision"},
    EtcdError{kResourceExhausted, "etcdserver: mvcc: database space exceeded",
              "mvcc: database space exceeded"},
    // Leases.
    EtcdError{kNotFound, "etcdserver: requested lease not found", ""},
    EtcdError{kFailedPrecondition, "etcdserver: lease already exists", ""},
    EtcdError{kOutOfRange, "etcdserver: too large lease TTL", ""},
    // Watch.
    EtcdError{kCancelled, "etcdserver: watch canceled", ""},
    // Membership.
    EtcdError{kFailedPrecondition, "etcdserver: member ID already exist", ""},
    EtcdError{kFailedPrecondition, "etcdserver: Peer URLs already exists", ""},
    EtcdError{kFailedPrecondition,
              "etcdserver: re-configuration failed due to not enough started members", ""},
    EtcdError{kInvalidArgument, "etcdserver: given member URLs are invalid", ""},
    EtcdError{kNotFound, "etcdserver: member not found", ""},
    EtcdError{kFailedPrecondition, "etcdserver: can only promote a learner member", ""},
    EtcdError{kFailedPrecondition,
              "etcdserver: can only promote a learner member which is in sync with leader", ""},
    EtcdError{kFailedPrecondition, "etcdserver: too many learner members in cluster", ""},
    // Request limits.
    EtcdError{kInvalidArgument, "etcdserver: request is too large", ""},
    EtcdError{kResourceExhausted, "etcdserver: too many requests", ""},
    // Authentication.
    EtcdError{kFailedPrecondition, "etcdserver: root user does not exist", ""},
    EtcdError{kFailedPrecondition, "etcdserver: root user does not have root role", ""},
    EtcdError{kFailedPrecondition, "etcdserver: user name already exists", ""},
    EtcdError{kInvalidArgument, "etcdserver: user name is empty", ""},
    EtcdError{kFailedPrecondition, "etcdserver: user name not found", ""},
    EtcdError{kFailedPrecondition, "etcdserver: role name already exists", ""},
    EtcdError{kFailedPrecondition, "etcdserver: role name not found", ""},
    EtcdError{kInvalidArgument, "etcdserver: role name is empty", ""},
    EtcdError{kInvalidArgument, "etcdserver: authentication failed, invalid user ID or password",
              ""},
    EtcdError{kPermissionDenied, "etcdserver: permission denied", ""},
    EtcdError{kFailedPrecondition, "etcdserver: role is not granted to the user", ""},
    EtcdError{kFailedPrecondition, "etcdserver: permission is not granted to the role", ""},
    EtcdError{kFailedPrecondition, "etcdserver: authentication is not enabled", ""},
    EtcdError{kUnauthenticated, "etcdserver: invalid auth token", ""},
    EtcdError{kInvalidArgument, "etcdserver: invalid auth management", ""},
    // Leadership and availability.
    EtcdError{kUnavailable, "etcdserver: no leader", ""},
    // etcd sends FAILED_PRECONDITION here, not UNAVAILABLE.
    EtcdError{kFailedPrecondition, "etcdserver: not leader", ""},
    EtcdError{kUnavailable, "etcdserver: leader changed", ""},
    EtcdError{kUnavailable, "etcdserver: not capable", ""},
    EtcdError{kUnavailable, "etcdserver: server stopped", ""},
    EtcdError{kUnavailable, "etcdserver: request timed out", ""},
    EtcdError{kUnavailable,
              "etcdserver: request timed out, possibly due to previous leader failure", ""},
    EtcdError{kUnavailable, "etcdserver: request timed out, possibly due to connection lost", ""},
    EtcdError{kUnavailable, "etcdserver: request timed out, leader transfer took too long", ""},
    EtcdError{kUnavailable, "etcdserver: unhealthy cluster", ""},
    EtcdError{kDataLoss, "etcdserver: corrupt cluster", ""},
    EtcdError{kUnavailable, "etcdserver: rpc not supported for learner", ""},
    EtcdError{kFailedPrecondition, "etcdserver: bad leader transferee", ""},
};

const EtcdError* Find(std::string_view message) {
  for (const EtcdError& e : kEtcdErrors) {
    if (message == e.message) return &e;
    if (!e.internal_message.empty() && message == e.internal_message) return &e;
  }
  return nullptr;
}

int CodeOf(StatusCode code) {
  switch (code) {
    case StatusCode::kCorruption:
      return kDataLoss;
    case StatusCode::kIOError:
      return kInternal;
    default:
      break;
  }
  int value = static_cast<int>(code);
  // A code outside gRPC's range would be rejected by gRPC; say Unknown.
  return value <= kUnauthenticated ? value : kUnknown;
}

}  // namespace

std::span<const EtcdError> EtcdErrors() {
  return kEtcdErrors;
}

WireError ToWire(const Status& status) {
  if (status.ok()) return WireError{};
  if (const EtcdError* e = Find(status.message())) {
    return WireError{e->grpc_code, std::string(e->message)};
  }
  return WireError{CodeOf(status.code()), status.message()};
}

}  // namespace conclave::api
