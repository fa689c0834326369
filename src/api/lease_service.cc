// The Lease service. Grants and revocations go through the log; keep-alives
// and TTL queries need the leader's clock and are forwarded to it.
#include "api/service_util.h"
#include "etcd/api/etcdserverpb/rpc.grpc.pb.h"

namespace conclave::api::internal {

namespace {

class LeaseService final : public etcdserverpb::Lease::Service {
 public:
  LeaseService(server::EtcdGroup* node, const ServiceOptions& options)
      : node_(node), options_(options), headers_(node) {}

  grpc::Status LeaseGrant(grpc::ServerContext* /*context*/,
                          const etcdserverpb::LeaseGrantRequest* req,
                          etcdserverpb::LeaseGrantResponse* resp) override {
    if (auto refused = RefuseOnLearner(node_); !refused.ok()) return ToGrpc(refused);
    if (Status s = node_->ValidateLeaseGrant(req->ttl()); !s.ok()) return ToGrpc(s);
    if (Status s = CheckQuota(node_, options_, req->ByteSizeLong()); !s.ok()) return ToGrpc(s);
    serverpb::Command c;
    *c.mutable_lease_grant() = *req;
    // The proposer picks the id, so applying the grant is deterministic.
    if (req->id() == 0) c.mutable_lease_grant()->set_id(node_->NewLeaseId());
    auto r = ProposeAndWait(node_, std::move(c));
    if (!r.ok()) return ToGrpc(r.status());
    const auto& g = std::get<lease::GrantResult>(r->response);
    resp->set_id(g.id);
    resp->set_ttl(g.ttl_seconds);
    headers_.Fill(resp->mutable_header(), r->revision);
    return grpc::Status::OK;
  }

  grpc::Status LeaseRevoke(grpc::ServerContext* /*context*/,
                           const etcdserverpb::LeaseRevokeRequest* req,
                           etcdserverpb::LeaseRevokeResponse* resp) override {
    if (auto refused = RefuseOnLearner(node_); !refused.ok()) return ToGrpc(refused);
    serverpb::Command c;
    *c.mutable_lease_revoke() = *req;
    auto r = ProposeAndWait(node_, std::move(c));
    if (!r.ok()) return ToGrpc(r.status());
    headers_.Fill(resp->mutable_header(), r->revision);
    return grpc::Status::OK;
  }

  grpc::Status LeaseKeepAlive(
      grpc::ServerContext* /*context*/,
      grpc::ServerReaderWriter<etcdserverpb::LeaseKeepAliveResponse,
                               etcdserverpb::LeaseKeepAliveRequest>* stream) override {
    if (auto refused = RefuseOnLearner(node_); !refused.ok()) return ToGrpc(refused);
    etcdserverpb::LeaseKeepAliveRequest req;
    while (stream->Read(&req)) {
      auto ttl = Renew(req.id());
      if (!ttl.ok() && ttl.status().message() != lease::errors::kLeaseNotFound) {
        return ToGrpc(ttl.status());
      }
      etcdserverpb::LeaseKeepAliveResponse resp;
      resp.set_id(req.id());
      // A lease that is gone renews to TTL 0, as with etcd.
      resp.set_ttl(ttl.ok() ? *ttl : 0);
      headers_.Fill(resp.mutable_header(), headers_.current());
      if (!stream->Write(resp)) break;
    }
    return grpc::Status::OK;
  }

  grpc::Status LeaseTimeToLive(grpc::ServerContext* /*context*/,
                               const etcdserverpb::LeaseTimeToLiveRequest* req,
                               etcdserverpb::LeaseTimeToLiveResponse* resp) override {
    if (auto refused = RefuseOnLearner(node_); !refused.ok()) return ToGrpc(refused);
    Status s = TimeToLive(*req, resp);
    if (!s.ok() && s.message() == lease::errors::kLeaseNotFound) {
      resp->Clear();
      resp->set_id(req->id());
      resp->set_ttl(-1);
      s = Status::Ok();
    }
    if (!s.ok()) return ToGrpc(s);
    headers_.Fill(resp->mutable_header(), headers_.current());
    return grpc::Status::OK;
  }

  grpc::Status LeaseLeases(grpc::ServerContext* /*context*/,
                           const etcdserverpb::LeaseLeasesRequest* /*req*/,
                           etcdserverpb::LeaseLeasesResponse* resp) override {
    if (auto refused = RefuseOnLearner(node_); !refused.ok()) return ToGrpc(refused);
    if (Status s = node_->ReadBarrier(); !s.ok()) return ToGrpc(s);
    for (lease::LeaseId id : node_->Leases())
      resp->add_leases()->set_id(id);
    headers_.Fill(resp->mutable_header(), headers_.current());
    return grpc::Status::OK;
  }

 private:
  Result<int64_t> Renew(lease::LeaseId id) {
    auto ttl = node_->RenewLease(id);
    if (ttl.ok() || ttl.status().message() != lease::errors::kNotLeader) return ttl;
    const uint64_t leader = node_->leader();
    if (leader == 0) return Status::Unavailable("etcdserver: no leader");
    return node_->leader_calls()->ForwardLeaseRenew(leader, id);
  }

  Status TimeToLive(const etcdserverpb::LeaseTimeToLiveRequest& req,
                    etcdserverpb::LeaseTimeToLiveResponse* resp) {
    auto r = node_->LeaseTimeToLive(req.id(), req.keys());
    if (r.ok()) {
      resp->set_id(r->id);
      resp->set_ttl(r->ttl_seconds);
      resp->set_grantedttl(r->granted_ttl_seconds);
      for (const std::string& k : r->keys)
        resp->add_keys(k);
      return Status::Ok();
    }
    if (r.status().message() != lease::errors::kNotLeader) return r.status();
    const uint64_t leader = node_->leader();
    if (leader == 0) return Status::Unavailable("etcdserver: no leader");
    return node_->leader_calls()->ForwardLeaseTimeToLive(leader, req, resp);
  }

  server::EtcdGroup* node_;
  const ServiceOptions& options_;
  Headers headers_;
};

}  // namespace

std::unique_ptr<grpc::Service> NewLeaseService(server::EtcdGroup* node,
                                               const ServiceOptions& options) {
  return std::make_unique<LeaseService>(node, options);
}

}  // namespace conclave::api::internal
