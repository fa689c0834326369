// The native KV service (proto/conclave/kvpb/kv.proto): Put, Get, Delete,
// DeleteRange and Scan on the ranges of the native keyspace this member
// holds, Ranges, Split, Merge, MoveReplica, TransferLeader, Nodes and DrainNode.
//
// Writes and point reads use gRPC's callback API: a request holds no thread
// while its range's log or read round works. A scan or a range delete may
// cross ranges, one read round or proposal each, and a split first takes a
// range id from the meta range, so these run on the service's small pool.
// A replica move waits for a snapshot to reach another node: it runs on a
// thread of its own, one move at a time.
#include <algorithm>
#include <thread>

#include <fmt/format.h>

#include "api/service_util.h"
#include "base/worker_pool.h"
#include "conclave/kvpb/kv.grpc.pb.h"

namespace conclave::api::internal {

namespace {

constexpr size_t kScanLimitMax = 10'000;
// The trailing metadata of a point request's answer that names the key's
// range and leader (AddRouteHint).
constexpr std::string_view kRouteHintHeader = "conclave-route";

void SetTimestamp(const Timestamp& ts, kvpb::Timestamp* out) {
  out->set_wall_nanos(ts.wall_nanos);
  out->set_logical(ts.logical);
}

class NativeKvService final : public kvpb::KV::CallbackService {
 public:
  NativeKvService(server::NativeKeyspace* keyspace, const ServiceOptions& options,
                  server::Route route)
      : keyspace_(keyspace), options_(options), route_(route) {}

  grpc::ServerUnaryReactor* Put(grpc::CallbackServerContext* context, const kvpb::PutRequest* req,
                                kvpb::PutResponse* resp) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    if (Status refused = Check(req->key(), *req); !refused.ok()) {
      reactor->Finish(ToGrpc(refused));
      return reactor;
    }
    AddRouteHint(context, req->key());
    keyspace_->Put(*req, WriteDone(reactor, resp), route_);
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
    AddRouteHint(context, req->key());
    keyspace_->Delete(
        *req,
        [reactor, resp](Result<server::RangeWriteResult> r, keys::RangeId range) {
          if (!r.ok()) return reactor->Finish(ToGrpc(r.status()));
          resp->set_range_id(range);
          resp->set_deleted(r->deleted > 0);
          SetTimestamp(r->timestamp, resp->mutable_timestamp());
          reactor->Finish(grpc::Status::OK);
        },
        route_);
    return reactor;
  }

  grpc::ServerUnaryReactor* DeleteRange(grpc::CallbackServerContext* context,
                                        const kvpb::DeleteRangeRequest* req,
                                        kvpb::DeleteRangeResponse* resp) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    std::string end = req->end();
    if (Status refused = CheckSpan(req->start(), &end); !refused.ok()) {
      reactor->Finish(ToGrpc(refused));
      return reactor;
    }
    // Range after range, each through its log: on the pool, like a scan.
    pool_.Post([this, req, end = std::move(end), resp, reactor] {
      Result<uint64_t> deleted = keyspace_->DeleteRange(req->start(), end, route_);
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
    AddRouteHint(context, req->key());
    keyspace_->Get(
        req->key(),
        [reactor, resp](Result<std::optional<server::RangeValue>> r, keys::RangeId range) {
          if (!r.ok()) return reactor->Finish(ToGrpc(r.status()));
          resp->set_range_id(range);
          if (r->has_value()) {
            resp->set_found(true);
            resp->set_value((*r)->value);
            SetTimestamp((*r)->timestamp, resp->mutable_timestamp());
          }
          reactor->Finish(grpc::Status::OK);
        },
        route_);
    return reactor;
  }

  grpc::ServerUnaryReactor* Scan(grpc::CallbackServerContext* context, const kvpb::ScanRequest* req,
                                 kvpb::ScanResponse* resp) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    std::string end = req->end();
    if (Status refused = CheckSpan(req->start(), &end); !refused.ok()) {
      reactor->Finish(ToGrpc(refused));
      return reactor;
    }
    pool_.Post([this, req, end = std::move(end), resp, reactor] {
      reactor->Finish(ToGrpc(RunScan(*req, end, resp)));
    });
    return reactor;
  }

  grpc::ServerUnaryReactor* Ranges(grpc::CallbackServerContext* context,
                                   const kvpb::RangesRequest* req,
                                   kvpb::RangesResponse* resp) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    resp->set_node_id(keyspace_->node_id());
    if (!req->cluster()) {
      for (const server::NativeKeyspace::Range& r : keyspace_->All())
        server::NativeKeyspace::Describe(r.sm->descriptor(), &r, resp->add_ranges());
      reactor->Finish(grpc::Status::OK);
      return reactor;
    }
    // The range map: a read round on the meta range, on the pool.
    pool_.Post([this, resp, reactor] {
      auto map = keyspace_->RangeMap();
      if (!map.ok()) return reactor->Finish(ToGrpc(map.status()));
      for (const keys::RangeDescriptor& d : *map) {
        Result<server::NativeKeyspace::Range> r = keyspace_->FindById(d.range_id);
        if (r.ok()) {
          server::NativeKeyspace::Describe(d, &*r, resp->add_ranges());
        } else {
          server::NativeKeyspace::Describe(d, nullptr, resp->add_ranges());
        }
      }
      reactor->Finish(grpc::Status::OK);
    });
    return reactor;
  }

  grpc::ServerUnaryReactor* Split(grpc::CallbackServerContext* context,
                                  const kvpb::SplitRequest* req,
                                  kvpb::SplitResponse* resp) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    if (Status refused = Check(req->key(), *req); !refused.ok()) {
      reactor->Finish(ToGrpc(refused));
      return reactor;
    }
    // A counter update in the meta range, then the split: on the pool.
    pool_.Post([this, req, resp, reactor] {
      auto halves = keyspace_->Split(req->key());
      if (!halves.ok() && route_ == server::Route::kAny &&
          halves.status().reason() == ErrorReason::kGroupNotFound) {
        // No replica of the key's range here: a member holding one splits it.
        auto forwarded = keyspace_->ForwardSplit(req->key());
        if (!forwarded.ok()) return reactor->Finish(ToGrpc(forwarded.status()));
        *resp = std::move(*forwarded);
        return reactor->Finish(grpc::Status::OK);
      }
      if (!halves.ok()) return reactor->Finish(ToGrpc(halves.status()));
      auto describe = [&](const keys::RangeDescriptor& d, kvpb::RangeInfo* out) {
        Result<server::NativeKeyspace::Range> r = keyspace_->Find(d.start_key);
        if (r.ok()) return server::NativeKeyspace::Describe(d, &*r, out);
        server::NativeKeyspace::Describe(d, nullptr, out);
      };
      describe(halves->first, resp->mutable_left());
      describe(halves->second, resp->mutable_right());
      reactor->Finish(grpc::Status::OK);
    });
    return reactor;
  }

  grpc::ServerUnaryReactor* Merge(grpc::CallbackServerContext* context,
                                  const kvpb::MergeRequest* req,
                                  kvpb::MergeResponse* resp) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    if (Status refused = Check(req->key(), *req); !refused.ok()) {
      reactor->Finish(ToGrpc(refused));
      return reactor;
    }
    // It may move replicas first (snapshots), through other members' move
    // threads: on a thread of its own.
    merges_.Post([this, req, resp, reactor] {
      auto merged = keyspace_->Merge(req->key());
      if (!merged.ok() && route_ == server::Route::kAny &&
          merged.status().reason() == ErrorReason::kGroupNotFound) {
        auto forwarded = keyspace_->ForwardMerge(req->key());
        if (!forwarded.ok()) return reactor->Finish(ToGrpc(forwarded.status()));
        *resp = std::move(*forwarded);
        return reactor->Finish(grpc::Status::OK);
      }
      if (!merged.ok()) return reactor->Finish(ToGrpc(merged.status()));
      Result<server::NativeKeyspace::Range> r = keyspace_->FindById(merged->range_id);
      if (r.ok()) {
        server::NativeKeyspace::Describe(*merged, &*r, resp->mutable_range());
      } else {
        server::NativeKeyspace::Describe(*merged, nullptr, resp->mutable_range());
      }
      reactor->Finish(grpc::Status::OK);
    });
    return reactor;
  }

  grpc::ServerUnaryReactor* MoveReplica(grpc::CallbackServerContext* context,
                                        const kvpb::MoveReplicaRequest* req,
                                        kvpb::MoveReplicaResponse* resp) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    moves_.Post([this, req, resp, reactor] {
      auto d = keyspace_->MoveReplica(req->range_id(), req->from_node(), req->to_node());
      if (!d.ok()) return reactor->Finish(ToGrpc(d.status()));
      Result<server::NativeKeyspace::Range> r = keyspace_->FindById(d->range_id);
      if (r.ok()) {
        server::NativeKeyspace::Describe(*d, &*r, resp->mutable_range());
      } else {
        server::NativeKeyspace::Describe(
            *d, nullptr, resp->mutable_range());  // this node's replica was the one moved
      }
      reactor->Finish(grpc::Status::OK);
    });
    return reactor;
  }

  grpc::ServerUnaryReactor* TransferLeader(grpc::CallbackServerContext* context,
                                           const kvpb::TransferLeaderRequest* req,
                                           kvpb::TransferLeaderResponse* resp) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    // It waits for an election: on a thread of its own, so that a long
    // move does not hold it up. The peer listener does not pass it on again.
    leaders_.Post([this, req, resp, reactor] {
      auto r =
          keyspace_->TransferLeader(req->range_id(), req->to_node(), route_ == server::Route::kAny);
      if (!r.ok()) return reactor->Finish(ToGrpc(r.status()));
      *resp = std::move(*r);
      reactor->Finish(grpc::Status::OK);
    });
    return reactor;
  }

  grpc::ServerUnaryReactor* Nodes(grpc::CallbackServerContext* context, const kvpb::NodesRequest*,
                                  kvpb::NodesResponse* resp) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    // A read round on the meta range (or a call to a member holding it).
    pool_.Post([this, resp, reactor] {
      auto nodes = keyspace_->Nodes();
      if (!nodes.ok()) return reactor->Finish(ToGrpc(nodes.status()));
      for (const server::NativeKeyspace::NodeReport& n : *nodes)
        server::NativeKeyspace::Describe(n, resp->add_nodes());
      reactor->Finish(grpc::Status::OK);
    });
    return reactor;
  }

  grpc::ServerUnaryReactor* DrainNode(grpc::CallbackServerContext* context,
                                      const kvpb::DrainNodeRequest* req,
                                      kvpb::DrainNodeResponse*) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    if (req->node_id() == 0) {
      reactor->Finish(ToGrpc(Status::InvalidArgument("conclave: no node to drain")));
      return reactor;
    }
    // A write to the meta range (or through a member holding it).
    pool_.Post([this, req, reactor] {
      reactor->Finish(ToGrpc(keyspace_->Drain(req->node_id(), req->cancel())));
    });
    return reactor;
  }

 private:
  Status Check(const std::string& key, const google::protobuf::Message& req) const {
    if (key.empty()) return Status::InvalidArgument("etcdserver: key is not provided");
    // Members write the system keys (their status) through each other.
    if (key >= server::kSystemKeyStart && route_ == server::Route::kAny) return SystemKeys();
    if (TooLarge(req, options_)) return RequestTooLarge();
    return Status::Ok();
  }

  static Status SystemKeys() {
    return Status::InvalidArgument("conclave: keys from \\xff\\xff on are reserved for the system");
  }

  // A span of user keys: an unbounded end stops at the system keys.
  Status CheckSpan(const std::string& start, std::string* end) const {
    if (!end->empty() && *end <= start) {
      return Status::InvalidArgument("conclave: the end key must be after the start key");
    }
    // Members read the system keys (the range map) through each other.
    if (route_ == server::Route::kLocal && start >= server::kSystemKeyStart) return Status::Ok();
    if (start >= server::kSystemKeyStart) return SystemKeys();
    if (end->empty() || *end > server::kSystemKeyStart) *end = server::kSystemKeyStart;
    return Status::Ok();
  }

  // What the descriptor alone says of a range.
  // Tells a routing client where the key's range is led: "<range id>
  // <generation> <leader node, hex>" when this node holds a replica of it
  // (leader 0: none known), "forwarded" when it does not. Clients that
  // cache the ranges (docs/SERVER.md, "Routing") send the key's next
  // request to that leader, and read the range map again when the range or
  // its generation is not the one they had.
  void AddRouteHint(grpc::CallbackServerContext* context, const std::string& key) {
    if (route_ != server::Route::kAny) return;
    Result<server::NativeKeyspace::Range> r = keyspace_->Find(key);
    if (!r.ok()) {
      context->AddTrailingMetadata(std::string(kRouteHintHeader), "forwarded");
      return;
    }
    const keys::RangeDescriptor d = r->sm->descriptor();
    const raft::NodeId leader = r->replica->leader();
    context->AddTrailingMetadata(
        std::string(kRouteHintHeader),
        fmt::format("{} {} {:x}", d.range_id, d.generation,
                    leader == raft::kNoNode ? 0 : r->replica->NodeOf(leader)));
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

  Status RunScan(const kvpb::ScanRequest& req, const std::string& end, kvpb::ScanResponse* resp) {
    const size_t limit =
        req.limit() == 0 ? kScanLimitMax : std::min<size_t>(req.limit(), kScanLimitMax);
    ASSIGN_OR_RETURN(server::ScanPage page, keyspace_->Scan(req.start(), end, limit, route_));
    for (server::RangeValue& kv : page.kvs) {
      kvpb::KeyValue* out = resp->add_kvs();
      out->set_key(std::move(kv.key));
      out->set_value(std::move(kv.value));
      SetTimestamp(kv.timestamp, out->mutable_timestamp());
    }
    resp->set_more(page.more);
    resp->set_resume_key(std::move(page.resume_key));
    return Status::Ok();
  }

  server::NativeKeyspace* keyspace_;
  const ServiceOptions& options_;
  // kAny for clients; kLocal on the peer listener, where other members
  // forward what they do not hold.
  const server::Route route_;
  // Scans and range deletes, which wait on several ranges in turn.
  WorkerPool pool_{2, "kv-spans"};
  WorkerPool moves_{1, "kv-moves"};
  WorkerPool leaders_{1, "kv-leaders"};
  WorkerPool merges_{1, "kv-merges"};
};

}  // namespace

std::unique_ptr<grpc::Service> NewNativeKvService(server::NativeKeyspace* keyspace,
                                                  const ServiceOptions& options,
                                                  server::Route route) {
  return std::make_unique<NativeKvService>(keyspace, options, route);
}

}  // namespace conclave::api::internal
