// The KV service: Range, Put, DeleteRange, Txn and Compact.
#include <grpcpp/support/proto_buffer_reader.h>

#include "api/convert.h"
#include "api/service_util.h"
#include "etcd/api/etcdserverpb/rpc.grpc.pb.h"

namespace conclave::api::internal {

namespace {

// Writes use gRPC's callback API with the request and response as raw bytes:
// a handler parses, validates, proposes and returns, and the apply thread
// finishes the call once the command is applied, so an in-flight write holds
// no thread. Parsing here (not in gRPC's typed callback handler, which
// answers UNIMPLEMENTED) lets a request that does not parse get INTERNAL, as
// etcd answers. Range and Compact stay synchronous.
using KvBase =
    etcdserverpb::KV::WithRawCallbackMethod_Put<etcdserverpb::KV::WithRawCallbackMethod_DeleteRange<
        etcdserverpb::KV::WithRawCallbackMethod_Txn<etcdserverpb::KV::Service>>>;

// Parses a raw request into `msg`; false when the bytes are not one.
bool ParseRaw(const grpc::ByteBuffer* in, google::protobuf::Message* msg) {
  grpc::ByteBuffer copy(*in);  // shares the slices; the reader consumes
  grpc::ProtoBufferReader reader(&copy);
  return msg->ParseFromZeroCopyStream(&reader);
}

grpc::ServerUnaryReactor* FinishNow(grpc::CallbackServerContext* context,
                                    const grpc::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(status);
  return reactor;
}

grpc::Status NotParsed() {
  return grpc::Status(grpc::StatusCode::INTERNAL, "grpc: error unmarshalling request");
}

class KvService final : public KvBase {
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

  grpc::ServerUnaryReactor* Put(grpc::CallbackServerContext* context, const grpc::ByteBuffer* in,
                                grpc::ByteBuffer* out) override {
    serverpb::Command c;
    if (!ParseRaw(in, c.mutable_put())) return FinishNow(context, NotParsed());
    const etcdserverpb::PutRequest& req = c.put();
    Status refused = RefuseOnLearner(node_);
    if (refused.ok() && TooLarge(req, options_)) refused = RequestTooLarge();
    if (refused.ok()) refused = mvcc::ValidatePut(FromWire(req));
    if (refused.ok()) refused = CheckQuota(node_, options_, req.ByteSizeLong());
    if (!refused.ok()) return FinishNow(context, ToGrpc(refused));
    return ProposeThen(context, std::move(c), out, [this](const server::ApplyResult& r) {
      etcdserverpb::PutResponse resp;
      ToWire(std::get<mvcc::PutResponse>(r.response), &resp);
      headers_.Fill(resp.mutable_header(), r.revision);
      return resp;
    });
  }

  grpc::ServerUnaryReactor* DeleteRange(grpc::CallbackServerContext* context,
                                        const grpc::ByteBuffer* in,
                                        grpc::ByteBuffer* out) override {
    serverpb::Command c;
    if (!ParseRaw(in, c.mutable_delete_range())) return FinishNow(context, NotParsed());
    const etcdserverpb::DeleteRangeRequest& req = c.delete_range();
    Status refused = RefuseOnLearner(node_);
    if (refused.ok() && TooLarge(req, options_)) refused = RequestTooLarge();
    if (refused.ok()) refused = mvcc::ValidateDeleteRange(FromWire(req));
    if (!refused.ok()) return FinishNow(context, ToGrpc(refused));
    return ProposeThen(context, std::move(c), out, [this](const server::ApplyResult& r) {
      etcdserverpb::DeleteRangeResponse resp;
      ToWire(std::get<mvcc::DeleteRangeResponse>(r.response), &resp);
      headers_.Fill(resp.mutable_header(), r.revision);
      return resp;
    });
  }

  grpc::ServerUnaryReactor* Txn(grpc::CallbackServerContext* context, const grpc::ByteBuffer* in,
                                grpc::ByteBuffer* out) override {
    serverpb::Command c;
    if (!ParseRaw(in, c.mutable_txn())) return FinishNow(context, NotParsed());
    const etcdserverpb::TxnRequest& req = c.txn();
    Status refused = RefuseOnLearner(node_);
    if (refused.ok() && TooLarge(req, options_)) refused = RequestTooLarge();
    if (refused.ok()) {
      auto txn = FromWire(req);
      refused = txn.ok() ? mvcc::ValidateTxn(*txn, options_.max_txn_ops) : txn.status();
    }
    if (refused.ok() && server::TxnPuts(req))
      refused = CheckQuota(node_, options_, req.ByteSizeLong());
    if (!refused.ok()) return FinishNow(context, ToGrpc(refused));
    return ProposeThen(context, std::move(c), out, [this](const server::ApplyResult& r) {
      etcdserverpb::TxnResponse resp;
      ToWire(std::get<mvcc::TxnResponse>(r.response), r.revision, &resp);
      headers_.Fill(resp.mutable_header(), r.revision);
      return resp;
    });
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
  // Proposes `command`; once applied, `respond` builds the response, which
  // is serialized into `out` and the call finishes (with the error instead,
  // if proposing or applying failed). `out` lives until the call finishes.
  template <typename Respond>
  grpc::ServerUnaryReactor* ProposeThen(grpc::CallbackServerContext* context,
                                        serverpb::Command command, grpc::ByteBuffer* out,
                                        Respond respond) {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    node_->ProposeAsync(std::move(command), [reactor, out, respond = std::move(respond)](
                                                Result<server::ApplyResult> r) {
      if (!r.ok()) return reactor->Finish(ToGrpc(r.status()));
      if (!r->status.ok()) return reactor->Finish(ToGrpc(r->status));
      const auto resp = respond(*r);
      bool own_buffer = false;
      reactor->Finish(grpc::SerializationTraits<std::decay_t<decltype(resp)>>::Serialize(
          resp, out, &own_buffer));
    });
    return reactor;
  }

  server::Node* node_;
  const ServiceOptions& options_;
  Headers headers_;
};

}  // namespace

std::unique_ptr<grpc::Service> NewKvService(server::Node* node, const ServiceOptions& options) {
  return std::make_unique<KvService>(node, options);
}

}  // namespace conclave::api::internal
