// The KV service: Range, Put, DeleteRange, Txn and Compact.
#include "api/convert.h"
#include "api/service_util.h"
#include "etcd/api/etcdserverpb/rpc.grpc.pb.h"

namespace conclave::api::internal {

namespace {

class KvService final : public etcdserverpb::KV::Service {
 public:
  KvService(server::Node* node, const ServiceOptions& options)
      : node_(node), options_(options), headers_(node) {}

  grpc::Status Range(grpc::ServerContext* /*context*/, const etcdserverpb::RangeRequest* req,
                     etcdserverpb::RangeResponse* resp) override {
    if (!req->serializable()) {
      if (auto refused = RefuseOnLearner(node_); !refused.ok()) return ToGrpc(refused);
    }
    auto r = FromWire(*req);
    if (!r.ok()) return ToGrpc(r.status());
    if (Status s = mvcc::ValidateRange(*r); !s.ok()) return ToGrpc(s);
    if (!r->serializable) {
      if (Status s = node_->ReadBarrier(); !s.ok()) return ToGrpc(s);
    }
    auto out = node_->store()->Range(*r);
    if (!out.ok()) return ToGrpc(out.status());
    ToWire(*out, resp);
    headers_.Fill(resp->mutable_header(), out->revision);
    return grpc::Status::OK;
  }

  grpc::Status Put(grpc::ServerContext* /*context*/, const etcdserverpb::PutRequest* req,
                   etcdserverpb::PutResponse* resp) override {
    if (auto refused = RefuseOnLearner(node_); !refused.ok()) return ToGrpc(refused);
    if (TooLarge(*req, options_)) return ToGrpc(RequestTooLarge());
    if (Status s = mvcc::ValidatePut(FromWire(*req)); !s.ok()) return ToGrpc(s);
    if (Status s = CheckQuota(node_, options_, req->ByteSizeLong()); !s.ok()) return ToGrpc(s);
    serverpb::Command c;
    *c.mutable_put() = *req;
    auto r = ProposeAndWait(node_, std::move(c));
    if (!r.ok()) return ToGrpc(r.status());
    ToWire(std::get<mvcc::PutResponse>(r->response), resp);
    headers_.Fill(resp->mutable_header(), r->revision);
    return grpc::Status::OK;
  }

  grpc::Status DeleteRange(grpc::ServerContext* /*context*/,
                           const etcdserverpb::DeleteRangeRequest* req,
                           etcdserverpb::DeleteRangeResponse* resp) override {
    if (auto refused = RefuseOnLearner(node_); !refused.ok()) return ToGrpc(refused);
    if (TooLarge(*req, options_)) return ToGrpc(RequestTooLarge());
    if (Status s = mvcc::ValidateDeleteRange(FromWire(*req)); !s.ok()) return ToGrpc(s);
    serverpb::Command c;
    *c.mutable_delete_range() = *req;
    auto r = ProposeAndWait(node_, std::move(c));
    if (!r.ok()) return ToGrpc(r.status());
    ToWire(std::get<mvcc::DeleteRangeResponse>(r->response), resp);
    headers_.Fill(resp->mutable_header(), r->revision);
    return grpc::Status::OK;
  }

  grpc::Status Txn(grpc::ServerContext* /*context*/, const etcdserverpb::TxnRequest* req,
                   etcdserverpb::TxnResponse* resp) override {
    if (auto refused = RefuseOnLearner(node_); !refused.ok()) return ToGrpc(refused);
    if (TooLarge(*req, options_)) return ToGrpc(RequestTooLarge());
    auto txn = FromWire(*req);
    if (!txn.ok()) return ToGrpc(txn.status());
    if (Status s = mvcc::ValidateTxn(*txn, options_.max_txn_ops); !s.ok()) return ToGrpc(s);
    if (server::TxnPuts(*req)) {
      if (Status s = CheckQuota(node_, options_, req->ByteSizeLong()); !s.ok()) return ToGrpc(s);
    }
    serverpb::Command c;
    *c.mutable_txn() = *req;
    auto r = ProposeAndWait(node_, std::move(c));
    if (!r.ok()) return ToGrpc(r.status());
    ToWire(std::get<mvcc::TxnResponse>(r->response), r->revision, resp);
    headers_.Fill(resp->mutable_header(), r->revision);
    return grpc::Status::OK;
  }

  grpc::Status Compact(grpc::ServerContext* /*context*/, const etcdserverpb::CompactionRequest* req,
                       etcdserverpb::CompactionResponse* resp) override {
    if (auto refused = RefuseOnLearner(node_); !refused.ok()) return ToGrpc(refused);
    serverpb::Command c;
    *c.mutable_compaction() = *req;
    auto r = ProposeAndWait(node_, std::move(c));
    if (!r.ok()) return ToGrpc(r.status());
    headers_.Fill(resp->mutable_header(), r->revision);
    return grpc::Status::OK;
  }

 private:
  server::Node* node_;
  const ServiceOptions& options_;
  Headers headers_;
};

}  // namespace

std::unique_ptr<grpc::Service> NewKvService(server::Node* node, const ServiceOptions& options) {
  return std::make_unique<KvService>(node, options);
}

}  // namespace conclave::api::internal
