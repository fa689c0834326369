// Status and Result<T>: how Conclave reports expected failures.
//
// A Status is a code plus a human-readable message. Expected failures (a key
// not found, a compacted revision, a corrupt record, a full disk) travel as
// values; bugs crash through CHECK (see assert.h). Both types are
// [[nodiscard]]: dropping one on the floor is a compile error under -Werror.
//
// The codes follow gRPC's canonical codes so that src/api can map them to the
// wire with one table; etcd-specific conditions carry their etcd message text.
//
// Thread-safety: values; safe to copy between threads.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include "base/assert.h"

namespace conclave {

enum class StatusCode : uint8_t {
  kOk = 0,
  kCancelled = 1,
  kUnknown = 2,
  kInvalidArgument = 3,
  kDeadlineExceeded = 4,
  kNotFound = 5,
  kAlreadyExists = 6,
  kPermissionDenied = 7,
  kResourceExhausted = 8,
  kFailedPrecondition = 9,
  kAborted = 10,
  kOutOfRange = 11,
  kUnimplemented = 12,
  kInternal = 13,
  kUnavailable = 14,
  kDataLoss = 15,
  kUnauthenticated = 16,
  // Storage-level conditions that have no gRPC code of their own. They map to
  // kDataLoss / kInternal on the wire.
  kCorruption = 100,
  kIOError = 101,
};

std::string_view StatusCodeName(StatusCode code);

// The conditions that callers branch on, beyond the code: a Status raised
// for one of them carries its reason, and code that must react to it tests
// the reason, never the message text. Messages stay free to change.
enum class ErrorReason : uint16_t {
  kNone = 0,
  // Raft: a configuration change is still in flight (retry once it applied).
  kConfChangeInProgress,
  // Raft: no leader is known, or leadership is being transferred.
  kNoLeader,
  // A request was not applied within its deadline.
  kRequestTimedOut,
  // The member is stopping.
  kStopped,
  // Too many requests are queued.
  kTooManyRequests,
  // This member was removed from the cluster (its peers refuse it).
  kMemberRemoved,
  // The addressed group has no replica here.
  kGroupNotFound,
  // The range is frozen for a merge: the request waits for the merge to
  // finish (or be called off) and goes to the range that then holds its key.
  kRangeFrozen,
};

std::string_view ErrorReasonName(ErrorReason reason);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }
  static Status Cancelled(std::string m) { return {StatusCode::kCancelled, std::move(m)}; }
  static Status Unknown(std::string m) { return {StatusCode::kUnknown, std::move(m)}; }
  static Status InvalidArgument(std::string m) {
    return {StatusCode::kInvalidArgument, std::move(m)};
  }
  static Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
  static Status AlreadyExists(std::string m) { return {StatusCode::kAlreadyExists, std::move(m)}; }
  static Status FailedPrecondition(std::string m) {
    return {StatusCode::kFailedPrecondition, std::move(m)};
  }
  static Status OutOfRange(std::string m) { return {StatusCode::kOutOfRange, std::move(m)}; }
  static Status ResourceExhausted(std::string m) {
    return {StatusCode::kResourceExhausted, std::move(m)};
  }
  static Status Unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
  static Status Aborted(std::string m) { return {StatusCode::kAborted, std::move(m)}; }
  static Status DeadlineExceeded(std::string m) {
    return {StatusCode::kDeadlineExceeded, std::move(m)};
  }
  static Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }
  static Status Unimplemented(std::string m) { return {StatusCode::kUnimplemented, std::move(m)}; }
  static Status Corruption(std::string m) { return {StatusCode::kCorruption, std::move(m)}; }
  static Status IOError(std::string m) { return {StatusCode::kIOError, std::move(m)}; }

  // The same status, carrying `reason`.
  Status WithReason(ErrorReason reason) && {
    reason_ = reason;
    return std::move(*this);
  }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  ErrorReason reason() const { return reason_; }
  const std::string& message() const { return message_; }

  // "INVALID_ARGUMENT: key is not provided", or "OK".
  std::string ToString() const;

  bool operator==(const Status& other) const = default;

 private:
  StatusCode code_ = StatusCode::kOk;
  ErrorReason reason_ = ErrorReason::kNone;
  std::string message_;
};

// Result<T> holds either a T or a non-OK Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::move(value)) {}        // NOLINT(google-explicit-constructor)
  Result(Status status) : state_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    CHECK_MSG(!std::get<Status>(state_).ok(), "Result built from an OK status carries no value");
  }

  bool ok() const { return std::holds_alternative<T>(state_); }

  // The error; Status::Ok() when a value is held.
  Status status() const { return ok() ? Status::Ok() : std::get<Status>(state_); }

  const T& value() const& {
    CHECK_MSG(ok(), "value() on an error Result: {}", std::get<Status>(state_).ToString());
    return std::get<T>(state_);
  }
  T& value() & {
    CHECK_MSG(ok(), "value() on an error Result: {}", std::get<Status>(state_).ToString());
    return std::get<T>(state_);
  }
  T&& value() && {
    CHECK_MSG(ok(), "value() on an error Result: {}", std::get<Status>(state_).ToString());
    return std::get<T>(std::move(state_));
  }

  const T& operator*() const& { return value(); }
  T& operator*() & { return value(); }
  const T* operator->() const { return &value(); }
  T* operator->() { return &value(); }

 private:
  std::variant<T, Status> state_;
};

}  // namespace conclave

#define CONCLAVE_CONCAT_INNER(a, b) a##b
#define CONCLAVE_CONCAT(a, b) CONCLAVE_CONCAT_INNER(a, b)

// Returns the Status from the enclosing function when `expr` is not OK.
#define RETURN_IF_ERROR(expr)                            \
  do {                                                   \
    ::conclave::Status _conclave_status = (expr);        \
    if (!_conclave_status.ok()) return _conclave_status; \
  } while (0)

// `ASSIGN_OR_RETURN(auto x, Foo());` declares x from Foo()'s value or returns its error.
#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL(CONCLAVE_CONCAT(_conclave_result_, __LINE__), lhs, expr)
#define ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                          \
  if (!tmp.ok()) return tmp.status();         \
  lhs = std::move(tmp).value()
