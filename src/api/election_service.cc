// The Election service (v3electionpb.Election): campaigners queue like lock
// contenders (recipes.h); the first in the queue is the leader and its key's
// value is what it proclaims. Observe streams every value the leadership
// takes, across leaders.
#include <fmt/format.h>

#include "api/convert.h"
#include "api/recipes.h"
#include "api/service_util.h"
#include "etcd/server/v3election/v3electionpb/v3election.grpc.pb.h"

namespace conclave::api::internal {

namespace {

Status NotLeader() {
  return Status::Unknown("election: not leader");
}
Status NoLeader() {
  return Status::Unknown("election: no leader");
}
Status MissingLeaderKey() {
  return Status::Unknown("\"leader\" field must be provided");
}

// A Txn: if `key` still has create revision `rev`, do `op`.
etcdserverpb::TxnRequest IfStillCreatedAt(const std::string& key, int64_t rev,
                                          etcdserverpb::RequestOp op) {
  etcdserverpb::TxnRequest txn;
  etcdserverpb::Compare* cmp = txn.add_compare();
  cmp->set_key(key);
  cmp->set_target(etcdserverpb::Compare::CREATE);
  cmp->set_result(etcdserverpb::Compare::EQUAL);
  cmp->set_create_revision(rev);
  *txn.add_success() = std::move(op);
  return txn;
}

etcdserverpb::RequestOp PutOp(const std::string& key, const std::string& value, int64_t lease) {
  etcdserverpb::RequestOp op;
  etcdserverpb::PutRequest* put = op.mutable_request_put();
  put->set_key(key);
  put->set_value(value);
  put->set_lease(lease);
  return op;
}

class ElectionService final : public v3electionpb::Election::Service {
 public:
  ElectionService(server::EtcdGroup* node, const ServiceOptions& options)
      : node_(node), options_(options) {}

  grpc::Status Campaign(grpc::ServerContext* context, const v3electionpb::CampaignRequest* req,
                        v3electionpb::CampaignResponse* resp) override {
    if (auto refused = RefuseOnLearner(node_); !refused.ok()) return ToGrpc(refused);
    if (TooLarge(*req, options_)) return ToGrpc(RequestTooLarge());
    Recipes recipes(node_, context);
    auto lease = SessionLease(node_, req->lease());
    if (!lease.ok()) return ToGrpcFromRecipe(lease.status());
    const std::string prefix = req->name() + "/";
    const std::string key = fmt::format("{}{:x}", prefix, *lease);

    etcdserverpb::TxnRequest txn = IfStillCreatedAt(key, 0, PutOp(key, req->value(), *lease));
    txn.add_failure()->mutable_request_range()->set_key(key);
    auto joined = recipes.Txn(txn);
    if (!joined.ok()) return ToGrpcFromRecipe(joined.status());
    int64_t rev = joined->header().revision();
    if (!joined->succeeded()) {
      // Campaigning again with the same lease: keep the place, take the value.
      const mvccpb::KeyValue& kv = joined->responses(0).response_range().kvs(0);
      rev = kv.create_revision();
      if (kv.value() != req->value()) {
        auto p = recipes.Txn(IfStillCreatedAt(key, rev, PutOp(key, req->value(), *lease)));
        if (!p.ok()) return ToGrpcFromRecipe(p.status());
        if (!p->succeeded()) return ToGrpcFromRecipe(NotLeader());
      }
    }
    auto waited = recipes.WaitDeletes(prefix, rev - 1);
    // A campaigner that went away gives up its place; other failures leave
    // it queued (its lease decides), as with etcd.
    if (!waited.ok() && waited.status().code() == StatusCode::kCancelled) {
      etcdserverpb::RequestOp del;
      del.mutable_request_delete_range()->set_key(key);
      (void)recipes.Txn(IfStillCreatedAt(key, rev, std::move(del)));
    }
    if (!waited.ok()) return ToGrpcFromRecipe(waited.status());
    *resp->mutable_header() = joined->header();
    v3electionpb::LeaderKey* leader = resp->mutable_leader();
    leader->set_name(req->name());
    leader->set_key(key);
    leader->set_rev(rev);
    leader->set_lease(*lease);
    return grpc::Status::OK;
  }

  grpc::Status Proclaim(grpc::ServerContext* context, const v3electionpb::ProclaimRequest* req,
                        v3electionpb::ProclaimResponse* resp) override {
    if (auto refused = RefuseOnLearner(node_); !refused.ok()) return ToGrpc(refused);
    if (TooLarge(*req, options_)) return ToGrpc(RequestTooLarge());
    if (!req->has_leader()) return ToGrpcFromRecipe(MissingLeaderKey());
    const v3electionpb::LeaderKey& l = req->leader();
    Recipes recipes(node_, context);
    auto r =
        recipes.Txn(IfStillCreatedAt(l.key(), l.rev(), PutOp(l.key(), req->value(), l.lease())));
    if (!r.ok()) return ToGrpcFromRecipe(r.status());
    if (!r->succeeded()) return ToGrpcFromRecipe(NotLeader());
    *resp->mutable_header() = r->header();
    return grpc::Status::OK;
  }

  grpc::Status Resign(grpc::ServerContext* context, const v3electionpb::ResignRequest* req,
                      v3electionpb::ResignResponse* resp) override {
    if (auto refused = RefuseOnLearner(node_); !refused.ok()) return ToGrpc(refused);
    if (!req->has_leader()) return ToGrpcFromRecipe(MissingLeaderKey());
    const v3electionpb::LeaderKey& l = req->leader();
    Recipes recipes(node_, context);
    etcdserverpb::RequestOp del;
    del.mutable_request_delete_range()->set_key(l.key());
    auto r = recipes.Txn(IfStillCreatedAt(l.key(), l.rev(), std::move(del)));
    if (!r.ok()) return ToGrpcFromRecipe(r.status());
    *resp->mutable_header() = r->header();
    return grpc::Status::OK;
  }

  grpc::Status Leader(grpc::ServerContext* context, const v3electionpb::LeaderRequest* req,
                      v3electionpb::LeaderResponse* resp) override {
    if (auto refused = RefuseOnLearner(node_); !refused.ok()) return ToGrpc(refused);
    Recipes recipes(node_, context);
    auto first = recipes.FirstCreated(req->name() + "/", resp->mutable_header());
    if (!first.ok()) return ToGrpcFromRecipe(first.status());
    if (!first->has_value()) return ToGrpcFromRecipe(NoLeader());
    *resp->mutable_kv() = **first;
    return grpc::Status::OK;
  }

  grpc::Status Observe(grpc::ServerContext* context, const v3electionpb::LeaderRequest* req,
                       grpc::ServerWriter<v3electionpb::LeaderResponse>* writer) override {
    if (auto refused = RefuseOnLearner(node_); !refused.ok()) return ToGrpc(refused);
    Recipes recipes(node_, context);
    const std::string prefix = req->name() + "/";
    while (true) {
      v3electionpb::LeaderResponse out;
      auto first = recipes.FirstCreated(prefix, out.mutable_header());
      if (!first.ok()) return Ended(first.status());
      mvccpb::KeyValue leader;
      int64_t from = out.header().revision() + 1;
      if (first->has_value()) {
        leader = **first;
      } else {
        // No leader yet: the first key put under the prefix is the next one.
        auto put = NextEvent(&recipes, prefix, PrefixEnd(prefix), from, /*deletes=*/false);
        if (!put.ok()) return Ended(put.status());
        if (!put->has_value()) continue;  // the watch fell behind compaction: look again
        leader = ToWireKv((*put)->event.kv);
        Headers(node_).Fill(out.mutable_header(), leader.mod_revision());
        from = leader.mod_revision() + 1;
      }
      *out.mutable_kv() = leader;
      if (!writer->Write(out)) return grpc::Status::OK;
      // Follow this leader's key until it goes away.
      grpc::Status followed = Follow(&recipes, leader.key(), from, writer);
      if (!followed.ok()) return followed;
      if (context->IsCancelled()) return grpc::Status::OK;
    }
  }

 private:
  static mvccpb::KeyValue ToWireKv(const mvcc::KeyValue& kv) {
    mvccpb::KeyValue out;
    ToWire(kv, &out);
    return out;
  }

  grpc::Status Ended(const Status& s) const {
    // The client going away ends the stream normally.
    if (s.code() == StatusCode::kCancelled) return grpc::Status::OK;
    return ToGrpcFromRecipe(s);
  }

  // The next event on [key, range_end) from revision `from`: a put (or, with
  // `deletes`, also a delete). nullopt when the watch was overtaken by a
  // compaction.
  Result<std::optional<mvcc::WatchEvent>> NextEvent(Recipes* recipes, const std::string& key,
                                                    const std::string& range_end, int64_t from,
                                                    bool deletes) {
    mvcc::WatchRequest w;
    w.key = key;
    w.range_end = range_end;
    w.start_revision = from;
    w.filter_nodelete = !deletes;
    HubWatch watch(node_, w);
    if (!watch.status().ok()) return std::optional<mvcc::WatchEvent>();
    while (true) {
      RETURN_IF_ERROR(recipes->Interrupted());
      for (mvcc::WatchResponse& r : watch.Next(std::chrono::milliseconds(200))) {
        if (r.canceled) return std::optional<mvcc::WatchEvent>();
        if (!r.events.empty()) return std::optional<mvcc::WatchEvent>(std::move(r.events.front()));
      }
    }
  }

  // Streams every new value of the leader's `key` until it is deleted.
  grpc::Status Follow(Recipes* recipes, const std::string& key, int64_t from,
                      grpc::ServerWriter<v3electionpb::LeaderResponse>* writer) {
    mvcc::WatchRequest w;
    w.key = key;
    w.start_revision = from;
    HubWatch watch(node_, w);
    if (!watch.status().ok()) return grpc::Status::OK;
    while (true) {
      if (Status s = recipes->Interrupted(); !s.ok()) return Ended(s);
      for (const mvcc::WatchResponse& r : watch.Next(std::chrono::milliseconds(200))) {
        if (r.canceled) return grpc::Status::OK;
        for (const mvcc::WatchEvent& e : r.events) {
          if (e.event.type == mvcc::EventType::kDelete) return grpc::Status::OK;
          v3electionpb::LeaderResponse out;
          Headers(node_).Fill(out.mutable_header(), r.header_revision);
          ToWire(e.event.kv, out.mutable_kv());
          if (!writer->Write(out)) return grpc::Status::OK;
        }
      }
    }
  }

  server::EtcdGroup* node_;
  const ServiceOptions& options_;
};

}  // namespace

std::unique_ptr<grpc::Service> NewElectionService(server::EtcdGroup* node,
                                                  const ServiceOptions& options) {
  return std::make_unique<ElectionService>(node, options);
}

}  // namespace conclave::api::internal
