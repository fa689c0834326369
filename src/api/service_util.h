// Internal to src/api: what every etcd service of a member shares (error
// mapping, response headers, proposing a command and waiting for its result)
// and the factories of the individual services, one per source file
// (kv_service.cc, watch_service.cc, ...). services.cc assembles them.
//
// Thread-safety: the helpers are pure or call thread-safe Node methods.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>

#include "api/services.h"
#include "base/status.h"
#include "etcd/api/etcdserverpb/rpc.pb.h"
#include "server/server.h"

namespace conclave::api::internal {

// `s` as etcd sends it (errors.h).
grpc::Status ToGrpc(const Status& s);

// How the Lock and Election services report an error of the requests they
// make on the caller's behalf: an etcd server error keeps its message but
// travels as UNKNOWN (etcd runs these services as clients of itself, and its
// client turns known server errors into plain errors); anything else (a
// cancelled call, an unavailable member) keeps its code.
grpc::Status ToGrpcFromRecipe(const Status& s);

// "etcdserver: request is too large".
Status RequestTooLarge();

// Fills response headers: this member, the cluster, a revision, the term.
class Headers {
 public:
  explicit Headers(server::EtcdGroup* node) : node_(node) {}
  void Fill(etcdserverpb::ResponseHeader* h, int64_t revision) const {
    h->set_cluster_id(node_->cluster_id());
    h->set_member_id(node_->member_id());
    h->set_revision(revision);
    h->set_raft_term(node_->term());
  }
  int64_t current() const { return node_->CurrentRevision(); }

 private:
  server::EtcdGroup* node_;
};

// A learner serves only Status and serializable reads; everything else is
// refused with etcd's error, so clients move to another member.
inline Status RefuseOnLearner(server::EtcdGroup* node) {
  if (!node->is_learner()) return Status::Ok();
  return Status::Unavailable("etcdserver: rpc not supported for learner");
}

// Whether `m` is larger than --max-request-bytes allows.
inline bool TooLarge(const google::protobuf::Message& m, const ServiceOptions& options) {
  return static_cast<int64_t>(m.ByteSizeLong()) > options.max_request_bytes;
}

// Proposes `command`, waits until this member applied it and returns the
// result, or the error the command failed with.
Result<server::ApplyResult> ProposeAndWait(server::EtcdGroup* node, serverpb::Command command);

// The lease a Lock or Campaign call holds its key with: `lease`, or when it
// is 0 a new lease of kSessionTtlSeconds that nobody keeps alive (so a
// lock taken without a lease ends by itself).
inline constexpr int64_t kSessionTtlSeconds = 60;
Result<int64_t> SessionLease(server::EtcdGroup* node, int64_t lease);

// Refuses a write of `request_bytes` while the NOSPACE alarm is raised, and
// raises it (through the log) when the write would pass the quota.
Status CheckQuota(server::EtcdGroup* node, const ServiceOptions& options, size_t request_bytes);

std::unique_ptr<grpc::Service> NewKvService(server::EtcdGroup* node, const ServiceOptions& options);
std::unique_ptr<grpc::Service> NewWatchService(server::EtcdGroup* node);
std::unique_ptr<grpc::Service> NewLeaseService(server::EtcdGroup* node,
                                               const ServiceOptions& options);
std::unique_ptr<grpc::Service> NewClusterService(server::EtcdGroup* node,
                                                 const ServiceOptions& options);
std::unique_ptr<grpc::Service> NewMaintenanceService(server::EtcdGroup* node,
                                                     const ServiceOptions& options);
std::unique_ptr<grpc::Service> NewLockService(server::EtcdGroup* node,
                                              const ServiceOptions& options);
std::unique_ptr<grpc::Service> NewNativeKvService(server::NativeKeyspace* keyspace,
                                                  const ServiceOptions& options,
                                                  server::Route route);
std::unique_ptr<grpc::Service> NewElectionService(server::EtcdGroup* node,
                                                  const ServiceOptions& options);

}  // namespace conclave::api::internal
