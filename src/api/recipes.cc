#include "api/recipes.h"

#include <condition_variable>
#include <mutex>
#include <utility>

#include "api/convert.h"

namespace conclave::api::internal {

namespace {

// How often a waiting request looks at its client and its member.
constexpr std::chrono::milliseconds kPollInterval{200};

}  // namespace

// ---- HubWatch ----

struct HubWatch::Shared {
  std::mutex mu;
  std::condition_variable cv;
  bool wake = false;
};

HubWatch::HubWatch(server::EtcdGroup* node, const mvcc::WatchRequest& request)
    : node_(node), shared_(std::make_shared<Shared>()) {
  stream_ = node_->hub()->OpenStream([shared = shared_] {
    {
      std::lock_guard<std::mutex> lock(shared->mu);
      shared->wake = true;
    }
    shared->cv.notify_one();
  });
  auto id = node_->hub()->Create(stream_, request);
  if (!id.ok()) status_ = id.status();
}

HubWatch::~HubWatch() {
  node_->hub()->CloseStream(stream_);
}

std::vector<mvcc::WatchResponse> HubWatch::Next(std::chrono::milliseconds wait) {
  constexpr size_t kResponsesMax = 64;
  std::vector<mvcc::WatchResponse> out = node_->hub()->Poll(stream_, kResponsesMax);
  if (!out.empty()) return out;
  {
    std::unique_lock<std::mutex> lock(shared_->mu);
    shared_->cv.wait_for(lock, wait, [&] { return shared_->wake; });
    shared_->wake = false;
  }
  return node_->hub()->Poll(stream_, kResponsesMax);
}

// ---- Recipes ----

Status Recipes::Interrupted() const {
  if (context_ != nullptr && context_->IsCancelled()) return Status::Cancelled("context canceled");
  if (node_->stopping()) return Status::Unavailable("etcdserver: server stopped");
  return Status::Ok();
}

Result<etcdserverpb::TxnResponse> Recipes::Txn(const etcdserverpb::TxnRequest& req) {
  serverpb::Command c;
  *c.mutable_txn() = req;
  ASSIGN_OR_RETURN(server::ApplyResult r, ProposeAndWait(node_, std::move(c)));
  etcdserverpb::TxnResponse out;
  ToWire(std::get<mvcc::TxnResponse>(r.response), r.revision, &out);
  Headers(node_).Fill(out.mutable_header(), r.revision);
  return out;
}

Result<etcdserverpb::RangeResponse> Recipes::Get(const etcdserverpb::RangeRequest& req) {
  ASSIGN_OR_RETURN(mvcc::RangeRequest r, FromWire(req));
  if (!r.serializable) RETURN_IF_ERROR(node_->ReadBarrier());
  ASSIGN_OR_RETURN(mvcc::RangeResponse resp, node_->Range(r));
  etcdserverpb::RangeResponse out;
  ToWire(resp, &out);
  Headers(node_).Fill(out.mutable_header(), resp.revision);
  return out;
}

Result<etcdserverpb::DeleteRangeResponse> Recipes::Delete(const std::string& key) {
  serverpb::Command c;
  c.mutable_delete_range()->set_key(key);
  ASSIGN_OR_RETURN(server::ApplyResult r, ProposeAndWait(node_, std::move(c)));
  etcdserverpb::DeleteRangeResponse out;
  ToWire(std::get<mvcc::DeleteRangeResponse>(r.response), &out);
  Headers(node_).Fill(out.mutable_header(), r.revision);
  return out;
}

Result<std::optional<mvccpb::KeyValue>> Recipes::FirstCreated(
    const std::string& prefix, etcdserverpb::ResponseHeader* header) {
  etcdserverpb::RangeRequest req;
  req.set_key(prefix);
  req.set_range_end(PrefixEnd(prefix));
  req.set_sort_target(etcdserverpb::RangeRequest::CREATE);
  req.set_sort_order(etcdserverpb::RangeRequest::ASCEND);
  req.set_limit(1);
  ASSIGN_OR_RETURN(etcdserverpb::RangeResponse resp, Get(req));
  if (header != nullptr) *header = resp.header();
  if (resp.kvs().empty()) return std::optional<mvccpb::KeyValue>();
  return std::optional<mvccpb::KeyValue>(resp.kvs(0));
}

Result<etcdserverpb::ResponseHeader> Recipes::WaitDeletes(const std::string& prefix,
                                                          int64_t max_create_rev) {
  while (true) {
    RETURN_IF_ERROR(Interrupted());
    // The latest-created key ahead of us: once it is gone, look again (keys
    // created earlier may still be there).
    etcdserverpb::RangeRequest req;
    req.set_key(prefix);
    req.set_range_end(PrefixEnd(prefix));
    req.set_sort_target(etcdserverpb::RangeRequest::CREATE);
    req.set_sort_order(etcdserverpb::RangeRequest::DESCEND);
    req.set_max_create_revision(max_create_rev);
    req.set_limit(1);
    ASSIGN_OR_RETURN(etcdserverpb::RangeResponse resp, Get(req));
    if (resp.kvs().empty()) return resp.header();
    RETURN_IF_ERROR(WaitDelete(resp.kvs(0).key(), resp.header().revision()));
  }
}

Status Recipes::WaitDelete(const std::string& key, int64_t revision) {
  mvcc::WatchRequest w;
  w.key = key;
  w.start_revision = revision + 1;
  w.filter_noput = true;
  HubWatch watch(node_, w);
  // A compacted start revision: the caller reads again and sees the present.
  if (!watch.status().ok()) return Status::Ok();
  while (true) {
    RETURN_IF_ERROR(Interrupted());
    for (const mvcc::WatchResponse& r : watch.Next(kPollInterval)) {
      if (r.canceled) return Status::Ok();
      for (const mvcc::WatchEvent& e : r.events) {
        if (e.event.type == mvcc::EventType::kDelete) return Status::Ok();
      }
    }
  }
}

}  // namespace conclave::api::internal
