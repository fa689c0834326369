// The KV service: Range, Put, DeleteRange, Txn and Compact.
#include <grpcpp/support/proto_buffer_reader.h>

#include <algorithm>
#include <thread>

#include "api/convert.h"
#include "api/service_util.h"
#include "base/worker_pool.h"
#include "etcd/api/etcdserverpb/rpc.grpc.pb.h"

namespace conclave::api::internal {

namespace {

// Writes use gRPC's callback API with the request and response as raw bytes:
// a handler parses, validates, proposes and returns, and the apply thread
// finishes the call once the command is applied, so an in-flight write holds
// no thread. Parsing here (not in gRPC's typed callback handler, which
// answers UNIMPLEMENTED) lets a request that does not parse get INTERNAL, as
// etcd answers. Range goes the same way: a linearizable one waits for its
// read barrier without a thread. Compact stays synchronous.
using KvBase = etcdserverpb::KV::WithRawCallbackMethod_Range<
    etcdserverpb::KV::WithRawCallbackMethod_Put<etcdserverpb::KV::WithRawCallbackMethod_DeleteRange<
        etcdserverpb::KV::WithRawCallbackMethod_Txn<etcdserverpb::KV::Service>>>>;

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

// Serializes `resp` into the call's response buffer and finishes the call.
template <typename Response>
void FinishWith(grpc::ServerUnaryReactor* reactor, const Response& resp, grpc::ByteBuffer* out) {
  bool own_buffer = false;
  reactor->Finish(grpc::SerializationTraits<Response>::Serialize(resp, out, &own_buffer));
}

grpc::Status NotParsed() {
  return grpc::Status(grpc::StatusCode::INTERNAL, "grpc: error unmarshalling request");
}

class KvService final : public KvBase {
 public:
  KvService(server::EtcdGroup* node, const ServiceOptions& options)
      : node_(node), options_(options), headers_(node) {}

  grpc::ServerUnaryReactor* Range(grpc::CallbackServerContext* context, const grpc::ByteBuffer* in,
                                  grpc::ByteBuffer* out) override {
    etcdserverpb::RangeRequest req;
    if (!ParseRaw(in, &req)) return FinishNow(context, NotParsed());
    if (!req.serializable()) {
      if (auto refused = RefuseOnLearner(node_); !refused.ok())
        return FinishNow(context, ToGrpc(refused));
    }
    auto r = FromWire(req);
    if (!r.ok()) return FinishNow(context, ToGrpc(r.status()));
    if (Status s = mvcc::ValidateRange(*r); !s.ok()) return FinishNow(context, ToGrpc(s));
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    // A read of one key is short enough for the thread at hand; longer ones
    // go to the read pool, so they hold up neither gRPC's threads nor the
    // node's (whose callback ends a linearizable read's wait).
    const bool point = r->range_end.empty();
    if (r->serializable) {
      if (point) {
        RunRange(*r, reactor, out);
      } else {
        reads_.Post([this, r = std::move(*r), reactor, out] { RunRange(r, reactor, out); });
      }
      return reactor;
    }
    node_->ReadBarrierAsync([this, r = std::move(*r), reactor, out](Status s) {
      if (!s.ok()) return reactor->Finish(ToGrpc(s));
      reads_.Post([this, r, reactor, out] { RunRange(r, reactor, out); });
    });
    return reactor;
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
      FinishWith(reactor, respond(*r), out);
    });
    return reactor;
  }

  // Reads the store and finishes the call with the response (or error).
  void RunRange(const mvcc::RangeRequest& r, grpc::ServerUnaryReactor* reactor,
                grpc::ByteBuffer* out) {
    auto result = node_->Range(r);
    if (!result.ok()) return reactor->Finish(ToGrpc(result.status()));
    etcdserverpb::RangeResponse resp;
    ToWire(*result, &resp);
    headers_.Fill(resp.mutable_header(), result->revision);
    FinishWith(reactor, resp, out);
  }

  server::EtcdGroup* node_;
  const ServiceOptions& options_;
  Headers headers_;
  WorkerPool reads_{std::clamp<size_t>(std::thread::hardware_concurrency(), 2, 8), "kv-reads"};
};

}  // namespace

std::unique_ptr<grpc::Service> NewKvService(server::EtcdGroup* node,
                                            const ServiceOptions& options) {
  return std::make_unique<KvService>(node, options);
}

}  // namespace conclave::api::internal
