// The Lock service (v3lockpb.Lock): a mutex per name, held while the
// caller's lease lives, granted in the order the contenders arrived (see
// recipes.h and docs/LOCKS.md).
#include <fmt/format.h>

#include "api/recipes.h"
#include "api/service_util.h"
#include "etcd/server/v3lock/v3lockpb/v3lock.grpc.pb.h"
#include "lease/lessor.h"

namespace conclave::api::internal {

namespace {

class LockService final : public v3lockpb::Lock::Service {
 public:
  LockService(server::EtcdGroup* node, const ServiceOptions& options)
      : node_(node), options_(options) {}

  grpc::Status Lock(grpc::ServerContext* context, const v3lockpb::LockRequest* req,
                    v3lockpb::LockResponse* resp) override {
    if (auto refused = RefuseOnLearner(node_); !refused.ok()) return ToGrpc(refused);
    Recipes recipes(node_, context);
    auto lease = SessionLease(node_, req->lease());
    if (!lease.ok()) return ToGrpcFromRecipe(lease.status());
    const std::string prefix = req->name() + "/";
    const std::string key = fmt::format("{}{:x}", prefix, *lease);

    // Join the queue (or find our place in it again), and learn the holder.
    etcdserverpb::TxnRequest txn;
    etcdserverpb::Compare* cmp = txn.add_compare();
    cmp->set_key(key);
    cmp->set_target(etcdserverpb::Compare::CREATE);
    cmp->set_result(etcdserverpb::Compare::EQUAL);
    cmp->set_create_revision(0);
    etcdserverpb::PutRequest* put = txn.add_success()->mutable_request_put();
    put->set_key(key);
    put->set_lease(*lease);
    txn.add_failure()->mutable_request_range()->set_key(key);
    etcdserverpb::RangeRequest* owner = txn.add_success()->mutable_request_range();
    owner->set_key(prefix);
    owner->set_range_end(PrefixEnd(prefix));
    owner->set_sort_target(etcdserverpb::RangeRequest::CREATE);
    owner->set_sort_order(etcdserverpb::RangeRequest::ASCEND);
    owner->set_limit(1);
    *txn.add_failure()->mutable_request_range() = *owner;
    auto joined = recipes.Txn(txn);
    if (!joined.ok()) return ToGrpcFromRecipe(joined.status());
    const int64_t my_rev = joined->succeeded()
                               ? joined->header().revision()
                               : joined->responses(0).response_range().kvs(0).create_revision();
    const auto& holder = joined->responses(1).response_range().kvs();
    *resp->mutable_header() = joined->header();
    resp->set_key(key);
    if (holder.empty() || holder[0].create_revision() == my_rev) return grpc::Status::OK;

    // Wait for everyone ahead of us; give up our place if the wait fails.
    auto waited = recipes.WaitDeletes(prefix, my_rev - 1);
    if (!waited.ok()) {
      (void)recipes.Delete(key);
      return ToGrpcFromRecipe(waited.status());
    }
    // Our lease may have expired while we waited, taking our key with it:
    // then there is no lock to give.
    etcdserverpb::RangeRequest mine;
    mine.set_key(key);
    auto still = recipes.Get(mine);
    if (!still.ok()) {
      (void)recipes.Delete(key);
      return ToGrpcFromRecipe(still.status());
    }
    if (still->kvs().empty() || still->kvs(0).create_revision() != my_rev)
      return ToGrpcFromRecipe(lease::errors::LeaseNotFound());
    *resp->mutable_header() = still->header();
    return grpc::Status::OK;
  }

  grpc::Status Unlock(grpc::ServerContext* context, const v3lockpb::UnlockRequest* req,
                      v3lockpb::UnlockResponse* resp) override {
    if (auto refused = RefuseOnLearner(node_); !refused.ok()) return ToGrpc(refused);
    if (TooLarge(*req, options_)) return ToGrpc(RequestTooLarge());
    Recipes recipes(node_, context);
    auto r = recipes.Delete(req->key());
    if (!r.ok()) return ToGrpcFromRecipe(r.status());
    *resp->mutable_header() = r->header();
    return grpc::Status::OK;
  }

 private:
  server::EtcdGroup* node_;
  const ServiceOptions& options_;
};

}  // namespace

std::unique_ptr<grpc::Service> NewLockService(server::EtcdGroup* node,
                                              const ServiceOptions& options) {
  return std::make_unique<LockService>(node, options);
}

}  // namespace conclave::api::internal
