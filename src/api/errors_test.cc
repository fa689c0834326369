#include "api/errors.h"

#include <gtest/gtest.h>

#include <set>

#include "lease/lessor.h"
#include "mvcc/mvcc.h"

namespace conclave::api {
namespace {

using namespace grpc_code;  // NOLINT(google-build-using-namespace)

TEST(ToWireTest, OkIsOkWithNoMessage) {
  EXPECT_EQ(ToWire(Status::Ok()), (WireError{kOk, ""}));
}

// The texts clients match on, with etcd 3.4's codes, spelled out here a
// second time so that an edit to the table shows up as a failing test.
TEST(ToWireTest, EtcdTextsKeepTheirEtcdCode) {
  struct Case {
    int code;
    const char* message;
  };
  const Case cases[] = {
      {kOutOfRange, "etcdserver: mvcc: required revision has been compacted"},
      {kOutOfRange, "etcdserver: mvcc: required revision is a future revision"},
      {kInvalidArgument, "etcdserver: key is not provided"},
      {kInvalidArgument, "etcdserver: key not found"},
      {kInvalidArgument, "etcdserver: value is provided"},
      {kInvalidArgument, "etcdserver: lease is provided"},
      {kInvalidArgument, "etcdserver: duplicate key given in txn request"},
      {kInvalidArgument, "etcdserver: too many operations in txn request"},
      {kInvalidArgument, "etcdserver: request is too large"},
      {kResourceExhausted, "etcdserver: too many requests"},
      {kNotFound, "etcdserver: requested lease not found"},
      {kFailedPrecondition, "etcdserver: lease already exists"},
      {kOutOfRange, "etcdserver: too large lease TTL"},
      {kUnavailable, "etcdserver: no leader"},
      {kFailedPrecondition, "etcdserver: not leader"},
      {kUnavailable, "etcdserver: leader changed"},
      {kUnavailable, "etcdserver: server stopped"},
      {kUnavailable, "etcdserver: request timed out"},
      {kUnavailable, "etcdserver: request timed out, possibly due to previous leader failure"},
      {kUnavailable, "etcdserver: request timed out, possibly due to connection lost"},
      {kUnavailable, "etcdserver: unhealthy cluster"},
      {kDataLoss, "etcdserver: corrupt cluster"},
      {kResourceExhausted, "etcdserver: mvcc: database space exceeded"},
      {kCancelled, "etcdserver: watch canceled"},
      {kNotFound, "etcdserver: member not found"},
      {kFailedPrecondition, "etcdserver: member ID already exist"},
      {kFailedPrecondition, "etcdserver: Peer URLs already exists"},
      {kInvalidArgument, "etcdserver: given member URLs are invalid"},
      {kPermissionDenied, "etcdserver: permission denied"},
      {kUnauthenticated, "etcdserver: invalid auth token"},
  };
  for (const Case& c : cases) {
    // Raised with a code that disagrees: the table's code wins.
    WireError wire = ToWire(Status::Internal(c.message));
    EXPECT_EQ(wire.grpc_code, c.code) << c.message;
    EXPECT_EQ(wire.message, c.message);
  }
}

TEST(ToWireTest, MvccInternalTextsGetTheEtcdserverPrefix) {
  EXPECT_EQ(ToWire(mvcc::errors::Compacted()),
            (WireError{kOutOfRange, "etcdserver: mvcc: required revision has been compacted"}));
  EXPECT_EQ(ToWire(mvcc::errors::FutureRevision()),
            (WireError{kOutOfRange, "etcdserver: mvcc: required revision is a future revision"}));
  EXPECT_EQ(ToWire(Status::ResourceExhausted("mvcc: database space exceeded")),
            (WireError{kResourceExhausted, "etcdserver: mvcc: database space exceeded"}));
}

TEST(ToWireTest, ConclaveErrorHelpersReachTheWireAsEtcdSendsThem) {
  EXPECT_EQ(ToWire(mvcc::errors::KeyNotFound()),
            (WireError{kInvalidArgument, "etcdserver: key not found"}));
  EXPECT_EQ(ToWire(Status::InvalidArgument(std::string(mvcc::errors::kEmptyKey))),
            (WireError{kInvalidArgument, "etcdserver: key is not provided"}));
  EXPECT_EQ(ToWire(Status::InvalidArgument(std::string(mvcc::errors::kTooManyOps))).grpc_code,
            kInvalidArgument);
  EXPECT_EQ(ToWire(lease::errors::LeaseNotFound()),
            (WireError{kNotFound, "etcdserver: requested lease not found"}));
  EXPECT_EQ(ToWire(lease::errors::LeaseExists()),
            (WireError{kFailedPrecondition, "etcdserver: lease already exists"}));
  EXPECT_EQ(ToWire(lease::errors::TTLTooLarge()),
            (WireError{kOutOfRange, "etcdserver: too large lease TTL"}));
  // The lessor raises NotLeader as UNAVAILABLE; etcd's wire code is
  // FAILED_PRECONDITION, and clients see etcd's.
  EXPECT_EQ(ToWire(lease::errors::NotLeader()),
            (WireError{kFailedPrecondition, "etcdserver: not leader"}));
}

TEST(ToWireTest, OtherStatusesKeepCodeAndMessage) {
  EXPECT_EQ(ToWire(Status(StatusCode::kUnknown, "boom")), (WireError{kUnknown, "boom"}));
  EXPECT_EQ(ToWire(Status::Internal("apply failed")), (WireError{kInternal, "apply failed"}));
  EXPECT_EQ(ToWire(Status::InvalidArgument("bad range")),
            (WireError{kInvalidArgument, "bad range"}));
  EXPECT_EQ(ToWire(Status::Unimplemented("no")), (WireError{kUnimplemented, "no"}));
  EXPECT_EQ(ToWire(Status::DeadlineExceeded("late")), (WireError{kDeadlineExceeded, "late"}));
  EXPECT_EQ(ToWire(Status(StatusCode::kUnauthenticated, "who")),
            (WireError{kUnauthenticated, "who"}));
}

TEST(ToWireTest, StorageCodesMapToDataLossAndInternal) {
  EXPECT_EQ(ToWire(Status::Corruption("bad crc")), (WireError{kDataLoss, "bad crc"}));
  EXPECT_EQ(ToWire(Status::IOError("disk full")), (WireError{kInternal, "disk full"}));
}

TEST(ToWireTest, NearMissesAreNotRewritten) {
  // Only exact texts are etcd errors; a longer message is passed through.
  EXPECT_EQ(ToWire(Status::Unavailable("etcdserver: no leader (term 3)")),
            (WireError{kUnavailable, "etcdserver: no leader (term 3)"}));
}

TEST(EtcdErrorsTest, TableIsWellFormed) {
  std::set<std::string_view> seen;
  for (const EtcdError& e : EtcdErrors()) {
    EXPECT_TRUE(e.message.starts_with("etcdserver: ")) << e.message;
    EXPECT_TRUE(seen.insert(e.message).second) << "duplicate " << e.message;
    if (!e.internal_message.empty()) {
      EXPECT_TRUE(seen.insert(e.internal_message).second) << "duplicate " << e.internal_message;
    }
    EXPECT_GT(e.grpc_code, kOk);
    EXPECT_LE(e.grpc_code, kUnauthenticated);
    EXPECT_EQ(ToWire(Status::Internal(std::string(e.message))).message, e.message);
  }
  EXPECT_EQ(EtcdErrors().size(), 51u);
}

}  // namespace
}  // namespace conclave::api
