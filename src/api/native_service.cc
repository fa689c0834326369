// The native KV service (proto/conclave/kvpb/kv.proto): Put, Get, Delete,
// DeleteRange and Scan on the ranges of the native keyspace this member
// holds, and Ranges.
//
// Writes and point reads use gRPC's callback API: a request holds no thread
// while its range's log or read round works. A scan or a range delete may
// cross ranges, one read round or proposal each, so it runs on the
// service's small pool.
#include <algorithm>
#include <thread>

#include "api/service_util.h"
#include "base/worker_pool.h"
#include "conclave/kvpb/kv.grpc.pb.h"

namespace conclave::api::internal {

namespace {

constexpr size_t kScanLimitMax = 10'000;

void SetTimestamp(const Timestamp& ts, kvpb::Timestamp* out) {
  out->set_wall_nanos(ts.wall_nanos);
  out->set_logical(ts.logical);
}

class NativeKvService final : public kvpb::KV::CallbackService {
 public:
  NativeKvService(server::NativeKeyspace* keyspace, const ServiceOptions& options)
      : keyspace_(keyspace), options_(options) {}

  grpc::ServerUnaryReactor* Put(grpc::CallbackServerContext* context, const kvpb::PutRequest* req,
                                kvpb::PutResponse* resp) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    if (Status refused = Check(req->key(), *req); !refused.ok()) {
      reactor->Finish(ToGrpc(refused));
      return reactor;
    }
    keyspace_->Put(*req, WriteDone(reactor, resp));
    return reactor;
  }

  grpc::ServerUnaryReactor* Delete(grpc::CallbackServerContext* context,
                                   const kvpb::DeleteRequest* req,
                                   kvpb::DeleteResponse* resp) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    if (Status refused = Check(req->key(), *req); !refused.ok()) {
      reactor->Finish(ToGrpc(refused));
      return reactor;
    }
    keyspace_->Delete(*req,
                      [reactor, resp](Result<server::RangeWriteResult> r, keys::RangeId range) {
                        if (!r.ok()) return reactor->Finish(ToGrpc(r.status()));
                        resp->set_range_id(range);
                        resp->set_deleted(r->deleted > 0);
                        SetTimestamp(r->timestamp, resp->mutable_timestamp());
                        reactor->Finish(grpc::Status::OK);
                      });
    return reactor;
  }

  grpc::ServerUnaryReactor* DeleteRange(grpc::CallbackServerContext* context,
                                        const kvpb::DeleteRangeRequest* req,
                                        kvpb::DeleteRangeResponse* resp) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    if (Status refused = CheckSpan(req->start(), req->end()); !refused.ok()) {
      reactor->Finish(ToGrpc(refused));
      return reactor;
    }
    // Range after range, each through its log: on the pool, like a scan.
    pool_.Post([this, req, resp, reactor] {
      Result<uint64_t> deleted = keyspace_->DeleteRange(req->start(), req->end());
      if (deleted.ok()) resp->set_deleted(*deleted);
      reactor->Finish(ToGrpc(deleted.status()));
    });
    return reactor;
  }

  grpc::ServerUnaryReactor* Get(grpc::CallbackServerContext* context, const kvpb::GetRequest* req,
                                kvpb::GetResponse* resp) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    if (Status refused = Check(req->key(), *req); !refused.ok()) {
      reactor->Finish(ToGrpc(refused));
      return reactor;
    }
    keyspace_->Get(req->key(), [reactor, resp](Result<std::optional<server::RangeValue>> r,
                                               keys::RangeId range) {
      if (!r.ok()) return reactor->Finish(ToGrpc(r.status()));
      resp->set_range_id(range);
      if (r->has_value()) {
        resp->set_found(true);
        resp->set_value((*r)->value);
        SetTimestamp((*r)->timestamp, resp->mutable_timestamp());
      }
      reactor->Finish(grpc::Status::OK);
    });
    return reactor;
  }

  grpc::ServerUnaryReactor* Scan(grpc::CallbackServerContext* context, const kvpb::ScanRequest* req,
                                 kvpb::ScanResponse* resp) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    if (Status refused = CheckSpan(req->start(), req->end()); !refused.ok()) {
      reactor->Finish(ToGrpc(refused));
      return reactor;
    }
    pool_.Post([this, req, resp, reactor] { reactor->Finish(ToGrpc(RunScan(*req, resp))); });
    return reactor;
  }

  grpc::ServerUnaryReactor* Ranges(grpc::CallbackServerContext* context,
                                   const kvpb::RangesRequest* /*req*/,
                                   kvpb::RangesResponse* resp) override {
    for (const server::NativeKeyspace::Range& r : keyspace_->All()) {
      const keys::RangeDescriptor d = r.sm->descriptor();
      const server::ReplicaStats st = r.replica->stats();
      kvpb::RangeInfo* info = resp->add_ranges();
      info->set_range_id(d.range_id);
      info->set_start(d.start_key);
      info->set_end(d.end_key);
      info->set_leader_node(st.leader == 0 ? 0 : r.replica->NodeOf(st.leader));
      info->set_applied_index(st.applied_index);
      info->set_quiesced(st.quiesced);
    }
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

 private:
  Status Check(const std::string& key, const google::protobuf::Message& req) const {
    if (key.empty()) return Status::InvalidArgument("etcdserver: key is not provided");
    if (TooLarge(req, options_)) return RequestTooLarge();
    return Status::Ok();
  }

  static Status CheckSpan(const std::string& start, const std::string& end) {
    if (!end.empty() && end <= start) {
      return Status::InvalidArgument("conclave: the end key must be after the start key");
    }
    return Status::Ok();
  }

  template <typename Response>
  server::NativeKeyspace::WriteDone WriteDone(grpc::ServerUnaryReactor* reactor, Response* resp) {
    return [reactor, resp](Result<server::RangeWriteResult> r, keys::RangeId range) {
      if (!r.ok()) return reactor->Finish(ToGrpc(r.status()));
      resp->set_range_id(range);
      SetTimestamp(r->timestamp, resp->mutable_timestamp());
      reactor->Finish(grpc::Status::OK);
    };
  }

  // Range by range, each after its own read round, until the limit.
  Status RunScan(const kvpb::ScanRequest& req, kvpb::ScanResponse* resp) {
    const size_t limit =
        req.limit() == 0 ? kScanLimitMax : std::min<size_t>(req.limit(), kScanLimitMax);
    size_t left = limit;
    for (const server::NativeKeyspace::Range& r : keyspace_->Overlapping(req.start(), req.end())) {
      RETURN_IF_ERROR(r.replica->ReadBarrier());
      bool more = false;
      ASSIGN_OR_RETURN(std::vector<server::RangeValue> kvs,
                       r.sm->Scan(req.start(), req.end(), left, &more));
      for (server::RangeValue& kv : kvs) {
        kvpb::KeyValue* out = resp->add_kvs();
        out->set_key(std::move(kv.key));
        out->set_value(std::move(kv.value));
        SetTimestamp(kv.timestamp, out->mutable_timestamp());
      }
      left -= kvs.size();
      if (more || left == 0) {
        // Just after the last key returned: the next page starts there,
        // unless that is already past the scan's end.
        std::string resume = req.start();
        if (resp->kvs_size() > 0) resume = resp->kvs(resp->kvs_size() - 1).key() + '\0';
        if (req.end().empty() || resume < req.end()) {
          resp->set_more(true);
          resp->set_resume_key(std::move(resume));
        }
        break;
      }
    }
    return Status::Ok();
  }

  server::NativeKeyspace* keyspace_;
  const ServiceOptions& options_;
  // Scans and range deletes, which wait on several ranges in turn.
  WorkerPool pool_{2, "kv-spans"};
};

}  // namespace

std::unique_ptr<grpc::Service> NewNativeKvService(server::NativeKeyspace* keyspace,
                                                  const ServiceOptions& options) {
  return std::make_unique<NativeKvService>(keyspace, options);
}

}  // namespace conclave::api::internal
