// The Cluster service: MemberList from the members this member has applied;
// MemberAdd, MemberRemove, MemberUpdate and MemberPromote carried out by the
// leader (server/membership.h), forwarded to it from other members.
#include "api/service_util.h"
#include "etcd/api/etcdserverpb/rpc.grpc.pb.h"

namespace conclave::api::internal {

namespace {

void ToWire(const serverpb::MemberRecord& m, etcdserverpb::Member* out) {
  out->set_id(m.id());
  out->set_name(m.name());
  out->mutable_peerurls()->CopyFrom(m.peer_urls());
  out->mutable_clienturls()->CopyFrom(m.client_urls());
  out->set_islearner(m.is_learner());
}

template <typename Members>
void ToWire(const std::vector<serverpb::MemberRecord>& members, Members* out) {
  for (const auto& m : members)
    ToWire(m, out->Add());
}

class ClusterService final : public etcdserverpb::Cluster::Service {
 public:
  explicit ClusterService(server::EtcdGroup* node) : node_(node), headers_(node) {}

  grpc::Status MemberList(grpc::ServerContext* /*context*/,
                          const etcdserverpb::MemberListRequest* req,
                          etcdserverpb::MemberListResponse* resp) override {
    if (auto refused = RefuseOnLearner(node_); !refused.ok()) return ToGrpc(refused);
    // Members change rarely and clients expect to see a change they just
    // made through another member: read them linearizably whenever a
    // leader answers; without one, serve what this member has unless the
    // caller insisted.
    if (Status s = node_->ReadBarrier(); !s.ok() && req->linearizable()) return ToGrpc(s);
    auto members = node_->Members();
    if (!members.ok()) return ToGrpc(members.status());
    ToWire(*members, resp->mutable_members());
    headers_.Fill(resp->mutable_header(), 0);
    return grpc::Status::OK;
  }

  grpc::Status MemberAdd(grpc::ServerContext* /*context*/,
                         const etcdserverpb::MemberAddRequest* req,
                         etcdserverpb::MemberAddResponse* resp) override {
    if (auto refused = RefuseOnLearner(node_); !refused.ok()) return ToGrpc(refused);
    serverpb::MembershipRequest r;
    *r.mutable_add() = *req;
    auto out = Execute(r);
    if (!out.ok()) return ToGrpc(out.status());
    ToWire(out->member(), resp->mutable_member());
    ToWire({out->members().begin(), out->members().end()}, resp->mutable_members());
    headers_.Fill(resp->mutable_header(), 0);
    return grpc::Status::OK;
  }

  grpc::Status MemberRemove(grpc::ServerContext* /*context*/,
                            const etcdserverpb::MemberRemoveRequest* req,
                            etcdserverpb::MemberRemoveResponse* resp) override {
    if (auto refused = RefuseOnLearner(node_); !refused.ok()) return ToGrpc(refused);
    serverpb::MembershipRequest r;
    *r.mutable_remove() = *req;
    return Finish(r, resp);
  }

  grpc::Status MemberUpdate(grpc::ServerContext* /*context*/,
                            const etcdserverpb::MemberUpdateRequest* req,
                            etcdserverpb::MemberUpdateResponse* resp) override {
    if (auto refused = RefuseOnLearner(node_); !refused.ok()) return ToGrpc(refused);
    serverpb::MembershipRequest r;
    *r.mutable_update() = *req;
    return Finish(r, resp);
  }

  grpc::Status MemberPromote(grpc::ServerContext* /*context*/,
                             const etcdserverpb::MemberPromoteRequest* req,
                             etcdserverpb::MemberPromoteResponse* resp) override {
    if (auto refused = RefuseOnLearner(node_); !refused.ok()) return ToGrpc(refused);
    serverpb::MembershipRequest r;
    *r.mutable_promote() = *req;
    return Finish(r, resp);
  }

 private:
  // Runs `r` on the leader: here, or forwarded.
  Result<serverpb::MembershipResponse> Execute(const serverpb::MembershipRequest& r) {
    if (node_->is_leader()) return node_->ChangeMembership(r);
    const uint64_t leader = node_->leader();
    if (leader == 0) return Status::Unavailable("etcdserver: no leader");
    ASSIGN_OR_RETURN(serverpb::MembershipResponse out,
                     node_->leader_calls()->ForwardMembership(leader, r));
    // Answer once this member has applied the change too, so the client's
    // next MemberList here shows it.
    RETURN_IF_ERROR(node_->ReadBarrier());
    return out;
  }

  template <typename Response>
  grpc::Status Finish(const serverpb::MembershipRequest& r, Response* resp) {
    auto out = Execute(r);
    if (!out.ok()) return ToGrpc(out.status());
    ToWire({out->members().begin(), out->members().end()}, resp->mutable_members());
    headers_.Fill(resp->mutable_header(), 0);
    return grpc::Status::OK;
  }

  server::EtcdGroup* node_;
  Headers headers_;
};

}  // namespace

std::unique_ptr<grpc::Service> NewClusterService(server::EtcdGroup* node,
                                                 const ServiceOptions& /*options*/) {
  return std::make_unique<ClusterService>(node);
}

}  // namespace conclave::api::internal
