// The wire contract of proto/: etcd clients (etcdctl, python etcd3, jetcd)
// find methods by their full gRPC names and decode fields by number, so any
// drift in a package, service, method, field number, type or enum value
// breaks them silently. These tests pin the contract through the generated
// descriptors; the expected values were checked against etcd's own .proto
// files.

#include <google/protobuf/descriptor.h>
#include <google/protobuf/util/message_differencer.h>

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "conclave/raftpb/raft.grpc.pb.h"
#include "conclave/raftpb/raft.pb.h"
#include "etcd/api/authpb/auth.pb.h"
#include "etcd/api/etcdserverpb/rpc.grpc.pb.h"
#include "etcd/api/etcdserverpb/rpc.pb.h"
#include "etcd/api/mvccpb/kv.pb.h"
#include "etcd/server/v3election/v3electionpb/v3election.grpc.pb.h"
#include "etcd/server/v3election/v3electionpb/v3election.pb.h"
#include "etcd/server/v3lock/v3lockpb/v3lock.grpc.pb.h"
#include "etcd/server/v3lock/v3lockpb/v3lock.pb.h"

namespace conclave {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::DescriptorPool;
using google::protobuf::EnumDescriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::ServiceDescriptor;
using google::protobuf::util::MessageDifferencer;

// A generated file registers its descriptors only if its object file is
// linked, and the linker drops objects of a static library that nothing
// references; touching one message of every file keeps them all.
const DescriptorPool& Pool() {
  static const bool linked = [] {
    for (const Descriptor* d :
         {mvccpb::KeyValue::descriptor(), authpb::Permission::descriptor(),
          etcdserverpb::RangeRequest::descriptor(), v3lockpb::LockRequest::descriptor(),
          v3electionpb::LeaderKey::descriptor(), raftpb::MessageBatch::descriptor()}) {
      if (d == nullptr) return false;
    }
    return true;
  }();
  EXPECT_TRUE(linked);
  return *DescriptorPool::generated_pool();
}

// ---------------------------------------------------------------------------
// Services and methods
// ---------------------------------------------------------------------------

enum class Streaming { kUnary, kServer, kBidi };

struct MethodSpec {
  const char* full_name;  // as on the wire: /package.Service/Method
  const char* input;
  const char* output;
  Streaming streaming;
};

std::vector<MethodSpec> ServiceMethods(const std::string& service) {
  std::vector<MethodSpec> out;
  for (const MethodSpec& m : std::vector<MethodSpec>{
#define U(svc, name, in, outp) {"/" svc "/" name, in, outp, Streaming::kUnary}
#define S(svc, name, in, outp) \
  { "/" svc "/" name, in, outp, Streaming::kServer }
#define B(svc, name, in, outp) \
  { "/" svc "/" name, in, outp, Streaming::kBidi }
           U("etcdserverpb.KV", "Range", "etcdserverpb.RangeRequest", "etcdserverpb.RangeResponse"),
           U("etcdserverpb.KV", "Put", "etcdserverpb.PutRequest", "etcdserverpb.PutResponse"),
           U("etcdserverpb.KV", "DeleteRange", "etcdserverpb.DeleteRangeRequest",
             "etcdserverpb.DeleteRangeResponse"),
           U("etcdserverpb.KV", "Txn", "etcdserverpb.TxnRequest", "etcdserverpb.TxnResponse"),
           U("etcdserverpb.KV", "Compact", "etcdserverpb.CompactionRequest",
             "etcdserverpb.CompactionResponse"),
           B("etcdserverpb.Watch", "Watch", "etcdserverpb.WatchRequest",
             "etcdserverpb.WatchResponse"),
           U("etcdserverpb.Lease", "LeaseGrant", "etcdserverpb.LeaseGrantRequest",
             "etcdserverpb.LeaseGrantResponse"),
           U("etcdserverpb.Lease", "LeaseRevoke", "etcdserverpb.LeaseRevokeRequest",
             "etcdserverpb.LeaseRevokeResponse"),
           B("etcdserverpb.Lease", "LeaseKeepAlive", "etcdserverpb.LeaseKeepAliveRequest",
             "etcdserverpb.LeaseKeepAliveResponse"),
           U("etcdserverpb.Lease", "LeaseTimeToLive", "etcdserverpb.LeaseTimeToLiveRequest",
             "etcdserverpb.LeaseTimeToLiveResponse"),
           U("etcdserverpb.Lease", "LeaseLeases", "etcdserverpb.LeaseLeasesRequest",
             "etcdserverpb.LeaseLeasesResponse"),
           U("etcdserverpb.Cluster", "MemberAdd", "etcdserverpb.MemberAddRequest",
             "etcdserverpb.MemberAddResponse"),
           U("etcdserverpb.Cluster", "MemberRemove", "etcdserverpb.MemberRemoveRequest",
             "etcdserverpb.MemberRemoveResponse"),
           U("etcdserverpb.Cluster", "MemberUpdate", "etcdserverpb.MemberUpdateRequest",
             "etcdserverpb.MemberUpdateResponse"),
           U("etcdserverpb.Cluster", "MemberList", "etcdserverpb.MemberListRequest",
             "etcdserverpb.MemberListResponse"),
           U("etcdserverpb.Cluster", "MemberPromote", "etcdserverpb.MemberPromoteRequest",
             "etcdserverpb.MemberPromoteResponse"),
           U("etcdserverpb.Maintenance", "Alarm", "etcdserverpb.AlarmRequest",
             "etcdserverpb.AlarmResponse"),
           U("etcdserverpb.Maintenance", "Status", "etcdserverpb.StatusRequest",
             "etcdserverpb.StatusResponse"),
           U("etcdserverpb.Maintenance", "Defragment", "etcdserverpb.DefragmentRequest",
             "etcdserverpb.DefragmentResponse"),
           U("etcdserverpb.Maintenance", "Hash", "etcdserverpb.HashRequest",
             "etcdserverpb.HashResponse"),
           U("etcdserverpb.Maintenance", "HashKV", "etcdserverpb.HashKVRequest",
             "etcdserverpb.HashKVResponse"),
           S("etcdserverpb.Maintenance", "Snapshot", "etcdserverpb.SnapshotRequest",
             "etcdserverpb.SnapshotResponse"),
           U("etcdserverpb.Maintenance", "MoveLeader", "etcdserverpb.MoveLeaderRequest",
             "etcdserverpb.MoveLeaderResponse"),
           U("etcdserverpb.Maintenance", "Downgrade", "etcdserverpb.DowngradeRequest",
             "etcdserverpb.DowngradeResponse"),
           U("etcdserverpb.Auth", "AuthEnable", "etcdserverpb.AuthEnableRequest",
             "etcdserverpb.AuthEnableResponse"),
           U("etcdserverpb.Auth", "AuthDisable", "etcdserverpb.AuthDisableRequest",
             "etcdserverpb.AuthDisableResponse"),
           U("etcdserverpb.Auth", "AuthStatus", "etcdserverpb.AuthStatusRequest",
             "etcdserverpb.AuthStatusResponse"),
           U("etcdserverpb.Auth", "Authenticate", "etcdserverpb.AuthenticateRequest",
             "etcdserverpb.AuthenticateResponse"),
           U("etcdserverpb.Auth", "UserAdd", "etcdserverpb.AuthUserAddRequest",
             "etcdserverpb.AuthUserAddResponse"),
           U("etcdserverpb.Auth", "UserGet", "etcdserverpb.AuthUserGetRequest",
             "etcdserverpb.AuthUserGetResponse"),
           U("etcdserverpb.Auth", "UserList", "etcdserverpb.AuthUserListRequest",
             "etcdserverpb.AuthUserListResponse"),
           U("etcdserverpb.Auth", "UserDelete", "etcdserverpb.AuthUserDeleteRequest",
             "etcdserverpb.AuthUserDeleteResponse"),
           U("etcdserverpb.Auth", "UserChangePassword",
             "etcdserverpb.AuthUserChangePasswordRequest",
             "etcdserverpb.AuthUserChangePasswordResponse"),
           U("etcdserverpb.Auth", "UserGrantRole", "etcdserverpb.AuthUserGrantRoleRequest",
             "etcdserverpb.AuthUserGrantRoleResponse"),
           U("etcdserverpb.Auth", "UserRevokeRole", "etcdserverpb.AuthUserRevokeRoleRequest",
             "etcdserverpb.AuthUserRevokeRoleResponse"),
           U("etcdserverpb.Auth", "RoleAdd", "etcdserverpb.AuthRoleAddRequest",
             "etcdserverpb.AuthRoleAddResponse"),
           U("etcdserverpb.Auth", "RoleGet", "etcdserverpb.AuthRoleGetRequest",
             "etcdserverpb.AuthRoleGetResponse"),
           U("etcdserverpb.Auth", "RoleList", "etcdserverpb.AuthRoleListRequest",
             "etcdserverpb.AuthRoleListResponse"),
           U("etcdserverpb.Auth", "RoleDelete", "etcdserverpb.AuthRoleDeleteRequest",
             "etcdserverpb.AuthRoleDeleteResponse"),
           U("etcdserverpb.Auth", "RoleGrantPermission",
             "etcdserverpb.AuthRoleGrantPermissionRequest",
             "etcdserverpb.AuthRoleGrantPermissionResponse"),
           U("etcdserverpb.Auth", "RoleRevokePermission",
             "etcdserverpb.AuthRoleRevokePermissionRequest",
             "etcdserverpb.AuthRoleRevokePermissionResponse"),
           U("v3lockpb.Lock", "Lock", "v3lockpb.LockRequest", "v3lockpb.LockResponse"),
           U("v3lockpb.Lock", "Unlock", "v3lockpb.UnlockRequest", "v3lockpb.UnlockResponse"),
           U("v3electionpb.Election", "Campaign", "v3electionpb.CampaignRequest",
             "v3electionpb.CampaignResponse"),
           U("v3electionpb.Election", "Proclaim", "v3electionpb.ProclaimRequest",
             "v3electionpb.ProclaimResponse"),
           U("v3electionpb.Election", "Leader", "v3electionpb.LeaderRequest",
             "v3electionpb.LeaderResponse"),
           S("v3electionpb.Election", "Observe", "v3electionpb.LeaderRequest",
             "v3electionpb.LeaderResponse"),
           U("v3electionpb.Election", "Resign", "v3electionpb.ResignRequest",
             "v3electionpb.ResignResponse"),
           B("conclave.raftpb.Peer", "Stream", "conclave.raftpb.MessageBatch",
             "conclave.raftpb.StreamAck"),
#undef U
#undef S
#undef B
       }) {
    if (std::string(m.full_name).rfind("/" + service + "/", 0) == 0) out.push_back(m);
  }
  return out;
}

void ExpectService(const std::string& service_full_name) {
  SCOPED_TRACE(service_full_name);
  const ServiceDescriptor* service = Pool().FindServiceByName(service_full_name);
  ASSERT_NE(service, nullptr);
  const std::vector<MethodSpec> expected = ServiceMethods(service_full_name);
  ASSERT_EQ(service->method_count(), static_cast<int>(expected.size()));
  for (int i = 0; i < service->method_count(); ++i) {
    const auto* method = service->method(i);
    const MethodSpec& want = expected[i];
    const std::string full = "/" + service->full_name() + "/" + method->name();
    EXPECT_EQ(full, want.full_name);
    EXPECT_EQ(method->input_type()->full_name(), want.input) << full;
    EXPECT_EQ(method->output_type()->full_name(), want.output) << full;
    EXPECT_EQ(method->client_streaming(), want.streaming == Streaming::kBidi) << full;
    EXPECT_EQ(method->server_streaming(), want.streaming != Streaming::kUnary) << full;
  }
}

TEST(ProtoServiceTest, ServiceNamesFromGeneratedStubs) {
  EXPECT_STREQ(etcdserverpb::KV::service_full_name(), "etcdserverpb.KV");
  EXPECT_STREQ(etcdserverpb::Watch::service_full_name(), "etcdserverpb.Watch");
  EXPECT_STREQ(etcdserverpb::Lease::service_full_name(), "etcdserverpb.Lease");
  EXPECT_STREQ(etcdserverpb::Cluster::service_full_name(), "etcdserverpb.Cluster");
  EXPECT_STREQ(etcdserverpb::Maintenance::service_full_name(), "etcdserverpb.Maintenance");
  EXPECT_STREQ(etcdserverpb::Auth::service_full_name(), "etcdserverpb.Auth");
  EXPECT_STREQ(v3lockpb::Lock::service_full_name(), "v3lockpb.Lock");
  EXPECT_STREQ(v3electionpb::Election::service_full_name(), "v3electionpb.Election");
  EXPECT_STREQ(conclave::raftpb::Peer::service_full_name(), "conclave.raftpb.Peer");
}

TEST(ProtoServiceTest, EtcdMethodsMatchFullNames) {
  for (const char* service : {"etcdserverpb.KV", "etcdserverpb.Watch", "etcdserverpb.Lease",
                              "etcdserverpb.Cluster", "etcdserverpb.Maintenance",
                              "etcdserverpb.Auth", "v3lockpb.Lock", "v3electionpb.Election"}) {
    ExpectService(service);
  }
}

TEST(ProtoServiceTest, PeerStreamIsBidirectional) {
  ExpectService("conclave.raftpb.Peer");
}

TEST(ProtoServiceTest, OnlyExpectedServicesExist) {
  // A service added to a file must be added to the tables above as well.
  for (const char* file :
       {"etcd/api/etcdserverpb/rpc.proto", "etcd/server/v3lock/v3lockpb/v3lock.proto",
        "etcd/server/v3election/v3electionpb/v3election.proto", "conclave/raftpb/raft.proto",
        "etcd/api/mvccpb/kv.proto", "etcd/api/authpb/auth.proto"}) {
    const auto* fd = Pool().FindFileByName(file);
    ASSERT_NE(fd, nullptr) << file;
    for (int i = 0; i < fd->service_count(); ++i) {
      EXPECT_FALSE(ServiceMethods(fd->service(i)->full_name()).empty())
          << fd->service(i)->full_name();
    }
  }
}

// ---------------------------------------------------------------------------
// Messages and fields
// ---------------------------------------------------------------------------

constexpr auto kInt64 = FieldDescriptor::TYPE_INT64;
constexpr auto kUint64 = FieldDescriptor::TYPE_UINT64;
constexpr auto kUint32 = FieldDescriptor::TYPE_UINT32;
constexpr auto kBool = FieldDescriptor::TYPE_BOOL;
constexpr auto kBytes = FieldDescriptor::TYPE_BYTES;
constexpr auto kString = FieldDescriptor::TYPE_STRING;
constexpr auto kMessage = FieldDescriptor::TYPE_MESSAGE;
constexpr auto kEnum = FieldDescriptor::TYPE_ENUM;

struct FieldSpec {
  const char* name;
  int number;
  FieldDescriptor::Type type;
  const char* type_name = nullptr;  // message or enum full name, if any
  bool repeated = false;
  const char* oneof = nullptr;
};

// Checks that `message` has exactly `fields`: no field missing, none extra.
void ExpectMessage(const std::string& message, const std::vector<FieldSpec>& fields) {
  SCOPED_TRACE(message);
  const Descriptor* d = Pool().FindMessageTypeByName(message);
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->field_count(), static_cast<int>(fields.size()));
  for (const FieldSpec& want : fields) {
    const FieldDescriptor* f = d->FindFieldByName(want.name);
    ASSERT_NE(f, nullptr) << want.name;
    EXPECT_EQ(f->number(), want.number) << want.name;
    EXPECT_EQ(f->type(), want.type) << want.name;
    EXPECT_EQ(f->is_repeated(), want.repeated) << want.name;
    if (want.type == kMessage) {
      EXPECT_EQ(f->message_type()->full_name(), want.type_name) << want.name;
    } else if (want.type == kEnum) {
      EXPECT_EQ(f->enum_type()->full_name(), want.type_name) << want.name;
    }
    const auto* oneof = f->real_containing_oneof();
    if (want.oneof == nullptr) {
      EXPECT_EQ(oneof, nullptr) << want.name;
    } else {
      ASSERT_NE(oneof, nullptr) << want.name;
      EXPECT_EQ(oneof->name(), want.oneof) << want.name;
    }
  }
}

void ExpectEnum(const std::string& full_name,
                const std::vector<std::pair<const char*, int>>& values) {
  SCOPED_TRACE(full_name);
  const EnumDescriptor* e = Pool().FindEnumTypeByName(full_name);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->value_count(), static_cast<int>(values.size()));
  for (const auto& [name, number] : values) {
    const auto* v = e->FindValueByName(name);
    ASSERT_NE(v, nullptr) << name;
    EXPECT_EQ(v->number(), number) << name;
  }
}

constexpr const char* kHeader = "etcdserverpb.ResponseHeader";
constexpr const char* kKeyValue = "mvccpb.KeyValue";

TEST(ProtoFieldTest, Mvcc) {
  ExpectMessage(kKeyValue, {{"key", 1, kBytes},
                            {"create_revision", 2, kInt64},
                            {"mod_revision", 3, kInt64},
                            {"version", 4, kInt64},
                            {"value", 5, kBytes},
                            {"lease", 6, kInt64}});
  ExpectMessage("mvccpb.Event", {{"type", 1, kEnum, "mvccpb.Event.EventType"},
                                 {"kv", 2, kMessage, kKeyValue},
                                 {"prev_kv", 3, kMessage, kKeyValue}});
  ExpectEnum("mvccpb.Event.EventType", {{"PUT", 0}, {"DELETE", 1}});
}

TEST(ProtoFieldTest, ResponseHeader) {
  ExpectMessage(kHeader, {{"cluster_id", 1, kUint64},
                          {"member_id", 2, kUint64},
                          {"revision", 3, kInt64},
                          {"raft_term", 4, kUint64}});
}

TEST(ProtoFieldTest, Range) {
  ExpectMessage("etcdserverpb.RangeRequest",
                {{"key", 1, kBytes},
                 {"range_end", 2, kBytes},
                 {"limit", 3, kInt64},
                 {"revision", 4, kInt64},
                 {"sort_order", 5, kEnum, "etcdserverpb.RangeRequest.SortOrder"},
                 {"sort_target", 6, kEnum, "etcdserverpb.RangeRequest.SortTarget"},
                 {"serializable", 7, kBool},
                 {"keys_only", 8, kBool},
                 {"count_only", 9, kBool},
                 {"min_mod_revision", 10, kInt64},
                 {"max_mod_revision", 11, kInt64},
                 {"min_create_revision", 12, kInt64},
                 {"max_create_revision", 13, kInt64}});
  ExpectEnum("etcdserverpb.RangeRequest.SortOrder", {{"NONE", 0}, {"ASCEND", 1}, {"DESCEND", 2}});
  ExpectEnum("etcdserverpb.RangeRequest.SortTarget",
             {{"KEY", 0}, {"VERSION", 1}, {"CREATE", 2}, {"MOD", 3}, {"VALUE", 4}});
  ExpectMessage("etcdserverpb.RangeResponse", {{"header", 1, kMessage, kHeader},
                                               {"kvs", 2, kMessage, kKeyValue, true},
                                               {"more", 3, kBool},
                                               {"count", 4, kInt64}});
}

TEST(ProtoFieldTest, PutAndDelete) {
  ExpectMessage("etcdserverpb.PutRequest", {{"key", 1, kBytes},
                                            {"value", 2, kBytes},
                                            {"lease", 3, kInt64},
                                            {"prev_kv", 4, kBool},
                                            {"ignore_value", 5, kBool},
                                            {"ignore_lease", 6, kBool}});
  ExpectMessage("etcdserverpb.PutResponse",
                {{"header", 1, kMessage, kHeader}, {"prev_kv", 2, kMessage, kKeyValue}});
  ExpectMessage("etcdserverpb.DeleteRangeRequest",
                {{"key", 1, kBytes}, {"range_end", 2, kBytes}, {"prev_kv", 3, kBool}});
  ExpectMessage("etcdserverpb.DeleteRangeResponse", {{"header", 1, kMessage, kHeader},
                                                     {"deleted", 2, kInt64},
                                                     {"prev_kvs", 3, kMessage, kKeyValue, true}});
}

TEST(ProtoFieldTest, Txn) {
  ExpectMessage("etcdserverpb.Compare",
                {{"result", 1, kEnum, "etcdserverpb.Compare.CompareResult"},
                 {"target", 2, kEnum, "etcdserverpb.Compare.CompareTarget"},
                 {"key", 3, kBytes},
                 {"version", 4, kInt64, nullptr, false, "target_union"},
                 {"create_revision", 5, kInt64, nullptr, false, "target_union"},
                 {"mod_revision", 6, kInt64, nullptr, false, "target_union"},
                 {"value", 7, kBytes, nullptr, false, "target_union"},
                 {"lease", 8, kInt64, nullptr, false, "target_union"},
                 {"range_end", 64, kBytes}});
  ExpectEnum("etcdserverpb.Compare.CompareResult",
             {{"EQUAL", 0}, {"GREATER", 1}, {"LESS", 2}, {"NOT_EQUAL", 3}});
  ExpectEnum("etcdserverpb.Compare.CompareTarget",
             {{"VERSION", 0}, {"CREATE", 1}, {"MOD", 2}, {"VALUE", 3}, {"LEASE", 4}});
  ExpectMessage(
      "etcdserverpb.RequestOp",
      {{"request_range", 1, kMessage, "etcdserverpb.RangeRequest", false, "request"},
       {"request_put", 2, kMessage, "etcdserverpb.PutRequest", false, "request"},
       {"request_delete_range", 3, kMessage, "etcdserverpb.DeleteRangeRequest", false, "request"},
       {"request_txn", 4, kMessage, "etcdserverpb.TxnRequest", false, "request"}});
  ExpectMessage("etcdserverpb.ResponseOp",
                {{"response_range", 1, kMessage, "etcdserverpb.RangeResponse", false, "response"},
                 {"response_put", 2, kMessage, "etcdserverpb.PutResponse", false, "response"},
                 {"response_delete_range", 3, kMessage, "etcdserverpb.DeleteRangeResponse", false,
                  "response"},
                 {"response_txn", 4, kMessage, "etcdserverpb.TxnResponse", false, "response"}});
  ExpectMessage("etcdserverpb.TxnRequest",
                {{"compare", 1, kMessage, "etcdserverpb.Compare", true},
                 {"success", 2, kMessage, "etcdserverpb.RequestOp", true},
                 {"failure", 3, kMessage, "etcdserverpb.RequestOp", true}});
  ExpectMessage("etcdserverpb.TxnResponse",
                {{"header", 1, kMessage, kHeader},
                 {"succeeded", 2, kBool},
                 {"responses", 3, kMessage, "etcdserverpb.ResponseOp", true}});
  ExpectMessage("etcdserverpb.CompactionRequest",
                {{"revision", 1, kInt64}, {"physical", 2, kBool}});
}

TEST(ProtoFieldTest, Watch) {
  ExpectMessage(
      "etcdserverpb.WatchRequest",
      {{"create_request", 1, kMessage, "etcdserverpb.WatchCreateRequest", false, "request_union"},
       {"cancel_request", 2, kMessage, "etcdserverpb.WatchCancelRequest", false, "request_union"},
       {"progress_request", 3, kMessage, "etcdserverpb.WatchProgressRequest", false,
        "request_union"}});
  ExpectMessage("etcdserverpb.WatchCreateRequest",
                {{"key", 1, kBytes},
                 {"range_end", 2, kBytes},
                 {"start_revision", 3, kInt64},
                 {"progress_notify", 4, kBool},
                 {"filters", 5, kEnum, "etcdserverpb.WatchCreateRequest.FilterType", true},
                 {"prev_kv", 6, kBool},
                 {"watch_id", 7, kInt64},
                 {"fragment", 8, kBool}});
  ExpectEnum("etcdserverpb.WatchCreateRequest.FilterType", {{"NOPUT", 0}, {"NODELETE", 1}});
  ExpectMessage("etcdserverpb.WatchCancelRequest", {{"watch_id", 1, kInt64}});
  ExpectMessage("etcdserverpb.WatchProgressRequest", {});
  ExpectMessage("etcdserverpb.WatchResponse", {{"header", 1, kMessage, kHeader},
                                               {"watch_id", 2, kInt64},
                                               {"created", 3, kBool},
                                               {"canceled", 4, kBool},
                                               {"compact_revision", 5, kInt64},
                                               {"cancel_reason", 6, kString},
                                               {"fragment", 7, kBool},
                                               {"events", 11, kMessage, "mvccpb.Event", true}});
}

TEST(ProtoFieldTest, Lease) {
  ExpectMessage("etcdserverpb.LeaseGrantRequest", {{"TTL", 1, kInt64}, {"ID", 2, kInt64}});
  ExpectMessage("etcdserverpb.LeaseGrantResponse", {{"header", 1, kMessage, kHeader},
                                                    {"ID", 2, kInt64},
                                                    {"TTL", 3, kInt64},
                                                    {"error", 4, kString}});
  ExpectMessage("etcdserverpb.LeaseRevokeRequest", {{"ID", 1, kInt64}});
  ExpectMessage("etcdserverpb.LeaseKeepAliveRequest", {{"ID", 1, kInt64}});
  ExpectMessage("etcdserverpb.LeaseKeepAliveResponse",
                {{"header", 1, kMessage, kHeader}, {"ID", 2, kInt64}, {"TTL", 3, kInt64}});
  ExpectMessage("etcdserverpb.LeaseTimeToLiveRequest", {{"ID", 1, kInt64}, {"keys", 2, kBool}});
  ExpectMessage("etcdserverpb.LeaseTimeToLiveResponse", {{"header", 1, kMessage, kHeader},
                                                         {"ID", 2, kInt64},
                                                         {"TTL", 3, kInt64},
                                                         {"grantedTTL", 4, kInt64},
                                                         {"keys", 5, kBytes, nullptr, true}});
  ExpectMessage("etcdserverpb.LeaseLeasesResponse",
                {{"header", 1, kMessage, kHeader},
                 {"leases", 2, kMessage, "etcdserverpb.LeaseStatus", true}});
  ExpectMessage("etcdserverpb.LeaseStatus", {{"ID", 1, kInt64}});
}

TEST(ProtoFieldTest, Cluster) {
  constexpr const char* kMember = "etcdserverpb.Member";
  ExpectMessage(kMember, {{"ID", 1, kUint64},
                          {"name", 2, kString},
                          {"peerURLs", 3, kString, nullptr, true},
                          {"clientURLs", 4, kString, nullptr, true},
                          {"isLearner", 5, kBool}});
  ExpectMessage("etcdserverpb.MemberAddRequest",
                {{"peerURLs", 1, kString, nullptr, true}, {"isLearner", 2, kBool}});
  ExpectMessage("etcdserverpb.MemberAddResponse", {{"header", 1, kMessage, kHeader},
                                                   {"member", 2, kMessage, kMember},
                                                   {"members", 3, kMessage, kMember, true}});
  ExpectMessage("etcdserverpb.MemberRemoveRequest", {{"ID", 1, kUint64}});
  ExpectMessage("etcdserverpb.MemberUpdateRequest",
                {{"ID", 1, kUint64}, {"peerURLs", 2, kString, nullptr, true}});
  ExpectMessage("etcdserverpb.MemberListRequest", {{"linearizable", 1, kBool}});
  ExpectMessage("etcdserverpb.MemberPromoteRequest", {{"ID", 1, kUint64}});
  for (const char* response :
       {"etcdserverpb.MemberRemoveResponse", "etcdserverpb.MemberUpdateResponse",
        "etcdserverpb.MemberListResponse", "etcdserverpb.MemberPromoteResponse"}) {
    ExpectMessage(response,
                  {{"header", 1, kMessage, kHeader}, {"members", 2, kMessage, kMember, true}});
  }
}

TEST(ProtoFieldTest, Maintenance) {
  ExpectMessage("etcdserverpb.StatusResponse",
                {{"header", 1, kMessage, kHeader},
                 {"version", 2, kString},
                 {"dbSize", 3, kInt64},
                 {"leader", 4, kUint64},
                 {"raftIndex", 5, kUint64},
                 {"raftTerm", 6, kUint64},
                 {"raftAppliedIndex", 7, kUint64},
                 {"errors", 8, kString, nullptr, true},
                 {"dbSizeInUse", 9, kInt64},
                 {"isLearner", 10, kBool},
                 {"storageVersion", 11, kString},
                 {"dbSizeQuota", 12, kInt64},
                 {"downgradeInfo", 13, kMessage, "etcdserverpb.DowngradeInfo"}});
  ExpectEnum("etcdserverpb.AlarmType", {{"NONE", 0}, {"NOSPACE", 1}, {"CORRUPT", 2}});
  ExpectMessage("etcdserverpb.AlarmRequest",
                {{"action", 1, kEnum, "etcdserverpb.AlarmRequest.AlarmAction"},
                 {"memberID", 2, kUint64},
                 {"alarm", 3, kEnum, "etcdserverpb.AlarmType"}});
  ExpectEnum("etcdserverpb.AlarmRequest.AlarmAction",
             {{"GET", 0}, {"ACTIVATE", 1}, {"DEACTIVATE", 2}});
  ExpectMessage("etcdserverpb.HashKVResponse", {{"header", 1, kMessage, kHeader},
                                                {"hash", 2, kUint32},
                                                {"compact_revision", 3, kInt64},
                                                {"hash_revision", 4, kInt64}});
  ExpectMessage("etcdserverpb.SnapshotResponse", {{"header", 1, kMessage, kHeader},
                                                  {"remaining_bytes", 2, kUint64},
                                                  {"blob", 3, kBytes},
                                                  {"version", 4, kString}});
  ExpectMessage("etcdserverpb.MoveLeaderRequest", {{"targetID", 1, kUint64}});
}

TEST(ProtoFieldTest, Auth) {
  ExpectMessage("etcdserverpb.AuthenticateRequest",
                {{"name", 1, kString}, {"password", 2, kString}});
  ExpectMessage("etcdserverpb.AuthenticateResponse",
                {{"header", 1, kMessage, kHeader}, {"token", 2, kString}});
  ExpectMessage("etcdserverpb.AuthUserAddRequest",
                {{"name", 1, kString},
                 {"password", 2, kString},
                 {"options", 3, kMessage, "authpb.UserAddOptions"},
                 {"hashedPassword", 4, kString}});
  ExpectMessage("etcdserverpb.AuthRoleGrantPermissionRequest",
                {{"name", 1, kString}, {"perm", 2, kMessage, "authpb.Permission"}});
  ExpectMessage("authpb.Permission", {{"permType", 1, kEnum, "authpb.Permission.Type"},
                                      {"key", 2, kBytes},
                                      {"range_end", 3, kBytes}});
  ExpectEnum("authpb.Permission.Type", {{"READ", 0}, {"WRITE", 1}, {"READWRITE", 2}});
}

TEST(ProtoFieldTest, LockAndElection) {
  ExpectMessage("v3lockpb.LockRequest", {{"name", 1, kBytes}, {"lease", 2, kInt64}});
  ExpectMessage("v3lockpb.LockResponse", {{"header", 1, kMessage, kHeader}, {"key", 2, kBytes}});
  ExpectMessage("v3lockpb.UnlockRequest", {{"key", 1, kBytes}});
  ExpectMessage("v3lockpb.UnlockResponse", {{"header", 1, kMessage, kHeader}});

  constexpr const char* kLeaderKey = "v3electionpb.LeaderKey";
  ExpectMessage(
      kLeaderKey,
      {{"name", 1, kBytes}, {"key", 2, kBytes}, {"rev", 3, kInt64}, {"lease", 4, kInt64}});
  ExpectMessage("v3electionpb.CampaignRequest",
                {{"name", 1, kBytes}, {"lease", 2, kInt64}, {"value", 3, kBytes}});
  ExpectMessage("v3electionpb.CampaignResponse",
                {{"header", 1, kMessage, kHeader}, {"leader", 2, kMessage, kLeaderKey}});
  ExpectMessage("v3electionpb.ProclaimRequest",
                {{"leader", 1, kMessage, kLeaderKey}, {"value", 2, kBytes}});
  ExpectMessage("v3electionpb.LeaderRequest", {{"name", 1, kBytes}});
  ExpectMessage("v3electionpb.LeaderResponse",
                {{"header", 1, kMessage, kHeader}, {"kv", 2, kMessage, kKeyValue}});
  ExpectMessage("v3electionpb.ResignRequest", {{"leader", 1, kMessage, kLeaderKey}});
}

TEST(ProtoFieldTest, RaftMessageTypesMatchCoreNumbering) {
  // Same numbers as conclave::raft::MessageType and EntryType (src/raft/types.h).
  ExpectEnum("conclave.raftpb.MessageType", {{"MESSAGE_TYPE_HUP", 0},
                                             {"MESSAGE_TYPE_BEAT", 1},
                                             {"MESSAGE_TYPE_PROPOSE", 2},
                                             {"MESSAGE_TYPE_CHECK_QUORUM", 3},
                                             {"MESSAGE_TYPE_UNREACHABLE", 4},
                                             {"MESSAGE_TYPE_SNAPSHOT_STATUS", 5},
                                             {"MESSAGE_TYPE_APPEND", 10},
                                             {"MESSAGE_TYPE_APPEND_RESPONSE", 11},
                                             {"MESSAGE_TYPE_VOTE", 12},
                                             {"MESSAGE_TYPE_VOTE_RESPONSE", 13},
                                             {"MESSAGE_TYPE_PRE_VOTE", 14},
                                             {"MESSAGE_TYPE_PRE_VOTE_RESPONSE", 15},
                                             {"MESSAGE_TYPE_SNAPSHOT", 16},
                                             {"MESSAGE_TYPE_HEARTBEAT", 17},
                                             {"MESSAGE_TYPE_HEARTBEAT_RESPONSE", 18},
                                             {"MESSAGE_TYPE_TRANSFER_LEADER", 19},
                                             {"MESSAGE_TYPE_TIMEOUT_NOW", 20},
                                             {"MESSAGE_TYPE_READ_INDEX", 21},
                                             {"MESSAGE_TYPE_READ_INDEX_RESPONSE", 22}});
  ExpectEnum("conclave.raftpb.EntryType",
             {{"ENTRY_TYPE_NORMAL", 0}, {"ENTRY_TYPE_CONF_CHANGE", 1}});
}

// ---------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------

TEST(ProtoEncodingTest, KeyValueBytesAreEtcds) {
  // Hand-encoded: field 1 (bytes) "foo", field 2 varint 7, field 6 varint 9.
  mvccpb::KeyValue kv;
  kv.set_key("foo");
  kv.set_create_revision(7);
  kv.set_lease(9);
  const std::string expected(
      "\x0a\x03"
      "foo"
      "\x10\x07"
      "\x30\x09",
      9);
  EXPECT_EQ(kv.SerializeAsString(), expected);
}

TEST(ProtoEncodingTest, CompareRangeEndUsesTag64) {
  // Field 64, wire type 2: tag varint (64 << 3 | 2) = 514 = 0x82 0x04.
  etcdserverpb::Compare compare;
  compare.set_range_end("z");
  EXPECT_EQ(compare.SerializeAsString(), std::string("\x82\x04\x01z", 4));
}

TEST(ProtoEncodingTest, TxnRoundTrip) {
  etcdserverpb::TxnRequest txn;
  auto* compare = txn.add_compare();
  compare->set_result(etcdserverpb::Compare::EQUAL);
  compare->set_target(etcdserverpb::Compare::MOD);
  compare->set_key("k");
  compare->set_mod_revision(42);
  compare->set_range_end("l");
  auto* put = txn.add_success()->mutable_request_put();
  put->set_key("k");
  put->set_value(std::string("v\0w", 3));
  put->set_lease(5);
  put->set_prev_kv(true);
  auto* range = txn.add_failure()->mutable_request_range();
  range->set_key("a");
  range->set_range_end(std::string("\0", 1));
  range->set_sort_order(etcdserverpb::RangeRequest::DESCEND);
  range->set_sort_target(etcdserverpb::RangeRequest::MOD);
  txn.add_failure()->mutable_request_txn()->add_success()->mutable_request_delete_range()->set_key(
      "d");

  const std::string wire = txn.SerializeAsString();
  etcdserverpb::TxnRequest decoded;
  ASSERT_TRUE(decoded.ParseFromString(wire));
  EXPECT_TRUE(MessageDifferencer::Equals(txn, decoded));
  EXPECT_EQ(decoded.compare(0).target_union_case(), etcdserverpb::Compare::kModRevision);
  EXPECT_EQ(decoded.success(0).request_put().value(), std::string("v\0w", 3));
  EXPECT_EQ(decoded.failure(1).request_case(), etcdserverpb::RequestOp::kRequestTxn);
}

TEST(ProtoEncodingTest, WatchResponseRoundTrip) {
  etcdserverpb::WatchResponse response;
  response.mutable_header()->set_cluster_id(1);
  response.mutable_header()->set_member_id(2);
  response.mutable_header()->set_revision(3);
  response.mutable_header()->set_raft_term(4);
  response.set_watch_id(7);
  auto* event = response.add_events();
  event->set_type(mvccpb::Event::DELETE);
  event->mutable_kv()->set_key("gone");
  event->mutable_kv()->set_mod_revision(3);
  event->mutable_prev_kv()->set_value("was");

  etcdserverpb::WatchResponse decoded;
  ASSERT_TRUE(decoded.ParseFromString(response.SerializeAsString()));
  EXPECT_TRUE(MessageDifferencer::Equals(response, decoded));
}

TEST(ProtoEncodingTest, RaftBatchRoundTrip) {
  raftpb::MessageBatch batch;
  batch.set_cluster_id(11);
  batch.set_from_node(1);
  batch.set_to_node(2);
  batch.set_sequence(5);
  auto* append = batch.add_messages();
  append->set_type(raftpb::MESSAGE_TYPE_APPEND);
  append->set_group(3);
  append->set_from(1);
  append->set_to(2);
  append->set_term(4);
  append->set_log_term(4);
  append->set_index(99);
  append->set_commit(98);
  auto* entry = append->add_entries();
  entry->set_term(4);
  entry->set_index(100);
  entry->set_type(raftpb::ENTRY_TYPE_CONF_CHANGE);
  entry->set_data(std::string("\x00\x01", 2));
  auto* snap = batch.add_messages();
  snap->set_type(raftpb::MESSAGE_TYPE_SNAPSHOT);
  snap->set_group(8);
  auto* meta = snap->mutable_snapshot()->mutable_metadata();
  meta->set_index(50);
  meta->set_term(2);
  meta->mutable_conf_state()->add_voters(1);
  meta->mutable_conf_state()->add_voters(2);
  meta->mutable_conf_state()->add_learners(3);
  meta->mutable_conf_state()->set_auto_leave(true);
  snap->mutable_snapshot()->set_data("image");
  auto* reject = batch.add_messages();
  reject->set_type(raftpb::MESSAGE_TYPE_APPEND_RESPONSE);
  reject->set_reject(true);
  reject->set_reject_hint(17);
  reject->set_context("ctx");

  raftpb::MessageBatch decoded;
  ASSERT_TRUE(decoded.ParseFromString(batch.SerializeAsString()));
  EXPECT_TRUE(MessageDifferencer::Equals(batch, decoded));
  EXPECT_EQ(decoded.messages_size(), 3);
}

TEST(ProtoEncodingTest, TruncatedInputIsRejected) {
  etcdserverpb::PutRequest put;
  put.set_key("key");
  put.set_value(std::string(100, 'x'));
  const std::string wire = put.SerializeAsString();
  etcdserverpb::PutRequest decoded;
  EXPECT_FALSE(decoded.ParseFromString(wire.substr(0, wire.size() - 1)));
}

}  // namespace
}  // namespace conclave
