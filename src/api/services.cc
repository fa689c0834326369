#include "api/services.h"

#include <rocksdb/db.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <random>
#include <thread>
#include <utility>

#include "api/convert.h"
#include "api/errors.h"
#include "base/logging.h"
#include "etcd/api/etcdserverpb/rpc.grpc.pb.h"

namespace conclave::api {

namespace {

grpc::Status ToGrpc(const Status& s) {
  if (s.ok()) return grpc::Status::OK;
  WireError w = ToWire(s);
  return grpc::Status(static_cast<grpc::StatusCode>(w.grpc_code), w.message);
}

Status RequestTooLarge() {
  return Status::InvalidArgument("etcdserver: request is too large");
}

// Fills a response header: this member, the cluster, `revision`, the term.
class Headers {
 public:
  explicit Headers(server::Node* node) : node_(node) {}
  void Fill(etcdserverpb::ResponseHeader* h, int64_t revision) const {
    h->set_cluster_id(node_->cluster_id());
    h->set_member_id(node_->member_id());
    h->set_revision(revision);
    h->set_raft_term(node_->term());
  }
  int64_t current() const { return node_->store()->CurrentRevision(); }

 private:
  server::Node* node_;
};

// Runs a proposal and checks the applied result.
Result<server::ApplyResult> ProposeAndWait(server::Node* node, serverpb::Command command) {
  ASSIGN_OR_RETURN(server::ApplyResult r, node->Propose(std::move(command)));
  if (!r.status.ok()) return r.status;
  return r;
}

}  // namespace

// ---- KV ----

class EtcdServices::KvImpl final : public etcdserverpb::KV::Service {
 public:
  KvImpl(server::Node* node, const ServiceOptions& options)
      : node_(node), options_(options), headers_(node) {}

  grpc::Status Range(grpc::ServerContext* /*context*/, const etcdserverpb::RangeRequest* req,
                     etcdserverpb::RangeResponse* resp) override {
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
    if (TooLarge(*req)) return ToGrpc(RequestTooLarge());
    if (Status s = mvcc::ValidatePut(FromWire(*req)); !s.ok()) return ToGrpc(s);
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
    if (TooLarge(*req)) return ToGrpc(RequestTooLarge());
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
    if (TooLarge(*req)) return ToGrpc(RequestTooLarge());
    auto txn = FromWire(*req);
    if (!txn.ok()) return ToGrpc(txn.status());
    if (Status s = mvcc::ValidateTxn(*txn, options_.max_txn_ops); !s.ok()) return ToGrpc(s);
    serverpb::Command c;
    *c.mutable_txn() = *req;
    auto r = ProposeAndWait(node_, std::move(c));
    if (!r.ok()) return ToGrpc(r.status());
    ToWire(std::get<mvcc::TxnResponse>(r->response), resp);
    headers_.Fill(resp->mutable_header(), r->revision);
    return grpc::Status::OK;
  }

  grpc::Status Compact(grpc::ServerContext* /*context*/, const etcdserverpb::CompactionRequest* req,
                       etcdserverpb::CompactionResponse* resp) override {
    serverpb::Command c;
    *c.mutable_compaction() = *req;
    auto r = ProposeAndWait(node_, std::move(c));
    if (!r.ok()) return ToGrpc(r.status());
    headers_.Fill(resp->mutable_header(), r->revision);
    return grpc::Status::OK;
  }

 private:
  bool TooLarge(const google::protobuf::Message& m) const {
    return static_cast<int64_t>(m.ByteSizeLong()) > options_.max_request_bytes;
  }

  server::Node* node_;
  const ServiceOptions& options_;
  Headers headers_;
};

// ---- Watch ----

class EtcdServices::WatchImpl final : public etcdserverpb::Watch::Service {
 public:
  explicit WatchImpl(server::Node* node) : node_(node), headers_(node) {}

  grpc::Status Watch(grpc::ServerContext* context,
                     grpc::ServerReaderWriter<etcdserverpb::WatchResponse,
                                              etcdserverpb::WatchRequest>* stream) override {
    // What the writer thread waits on: the hub's wake-ups, responses made
    // here (refused creates), and the end of the stream.
    struct Shared {
      std::mutex mu;
      std::condition_variable cv;
      bool wake = false;
      bool done = false;
      std::deque<etcdserverpb::WatchResponse> direct;
    };
    auto shared = std::make_shared<Shared>();
    mvcc::WatchHub* hub = node_->hub();
    const mvcc::StreamId sid = hub->OpenStream([shared] {
      {
        std::lock_guard<std::mutex> lock(shared->mu);
        shared->wake = true;
      }
      shared->cv.notify_one();
    });

    std::thread writer([&, shared] { WriteLoop(shared.get(), hub, sid, stream, context); });

    etcdserverpb::WatchRequest req;
    while (stream->Read(&req)) {
      if (req.has_create_request()) {
        Status s;
        auto wr = FromWire(req.create_request());
        if (wr.ok()) {
          auto id = hub->Create(sid, *wr);
          if (!id.ok()) s = id.status();
        } else {
          s = wr.status();
        }
        if (!s.ok()) {
          // As etcd: created and canceled at once, with the reason.
          etcdserverpb::WatchResponse r;
          headers_.Fill(r.mutable_header(), headers_.current());
          r.set_watch_id(-1);
          r.set_created(true);
          r.set_canceled(true);
          r.set_cancel_reason(s.message());
          {
            std::lock_guard<std::mutex> lock(shared->mu);
            shared->direct.push_back(std::move(r));
            shared->wake = true;
          }
          shared->cv.notify_one();
        }
      } else if (req.has_cancel_request()) {
        // Unknown ids are ignored, as etcd does.
        (void)hub->Cancel(sid, req.cancel_request().watch_id());
      } else if (req.has_progress_request()) {
        hub->RequestProgress(sid);
      }
    }
    {
      std::lock_guard<std::mutex> lock(shared->mu);
      shared->done = true;
    }
    shared->cv.notify_one();
    writer.join();
    hub->CloseStream(sid);
    return grpc::Status::OK;
  }

 private:
  template <typename Shared, typename Stream>
  void WriteLoop(Shared* shared, mvcc::WatchHub* hub, mvcc::StreamId sid, Stream* stream,
                 grpc::ServerContext* context) {
    constexpr size_t kPollMax = 64;
    while (true) {
      std::deque<etcdserverpb::WatchResponse> direct;
      {
        std::unique_lock<std::mutex> lock(shared->mu);
        shared->cv.wait_for(lock, std::chrono::seconds(1),
                            [&] { return shared->wake || shared->done; });
        if (shared->done) return;
        shared->wake = false;
        direct.swap(shared->direct);
      }
      for (auto& r : direct) {
        if (!stream->Write(r)) return;
      }
      while (!context->IsCancelled()) {
        std::vector<mvcc::WatchResponse> rs = hub->Poll(sid, kPollMax);
        for (const mvcc::WatchResponse& r : rs) {
          etcdserverpb::WatchResponse out;
          ToWire(r, &out);
          headers_.Fill(out.mutable_header(), r.header_revision);
          if (!stream->Write(out)) return;
        }
        if (rs.size() < kPollMax && !hub->HasWork(sid)) break;
      }
    }
  }

  server::Node* node_;
  Headers headers_;
};

// ---- Lease ----

class EtcdServices::LeaseImpl final : public etcdserverpb::Lease::Service {
 public:
  LeaseImpl(server::Node* node, server::Transport* transport)
      : node_(node), transport_(transport), headers_(node), random_(std::random_device{}()) {}

  grpc::Status LeaseGrant(grpc::ServerContext* /*context*/,
                          const etcdserverpb::LeaseGrantRequest* req,
                          etcdserverpb::LeaseGrantResponse* resp) override {
    if (Status s = node_->ValidateLeaseGrant(req->ttl()); !s.ok()) return ToGrpc(s);
    serverpb::Command c;
    *c.mutable_lease_grant() = *req;
    // The proposer picks the id, so applying the grant is deterministic.
    if (req->id() == 0) c.mutable_lease_grant()->set_id(NewLeaseId());
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
    if (Status s = node_->ReadBarrier(); !s.ok()) return ToGrpc(s);
    for (lease::LeaseId id : node_->Leases())
      resp->add_leases()->set_id(id);
    headers_.Fill(resp->mutable_header(), headers_.current());
    return grpc::Status::OK;
  }

 private:
  int64_t NewLeaseId() {
    std::lock_guard<std::mutex> lock(random_mu_);
    int64_t id = 0;
    while (id <= 0)
      id = static_cast<int64_t>(random_() >> 1);
    return id;
  }

  Result<int64_t> Renew(lease::LeaseId id) {
    auto ttl = node_->RenewLease(id);
    if (ttl.ok() || ttl.status().message() != lease::errors::kNotLeader) return ttl;
    const uint64_t leader = node_->leader();
    if (leader == 0) return Status::Unavailable("etcdserver: no leader");
    return transport_->ForwardLeaseRenew(leader, id);
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
    return transport_->ForwardLeaseTimeToLive(leader, req, resp);
  }

  server::Node* node_;
  server::Transport* transport_;
  Headers headers_;
  std::mutex random_mu_;
  std::mt19937_64 random_;
};

// ---- Cluster (read-only for now) ----

class EtcdServices::ClusterImpl final : public etcdserverpb::Cluster::Service {
 public:
  ClusterImpl(server::Node* node, const ServiceOptions& options)
      : node_(node), options_(options), headers_(node) {}

  grpc::Status MemberList(grpc::ServerContext* /*context*/,
                          const etcdserverpb::MemberListRequest* req,
                          etcdserverpb::MemberListResponse* resp) override {
    if (req->linearizable()) {
      if (Status s = node_->ReadBarrier(); !s.ok()) return ToGrpc(s);
    }
    // Client URLs are what each member published through the log; a member
    // that has not published yet shows none (etcd: "unstarted").
    auto published = node_->PublishedMembers();
    if (!published.ok()) return ToGrpc(published.status());
    for (const MemberInfo& m : options_.members) {
      etcdserverpb::Member* out = resp->add_members();
      out->set_id(m.id);
      out->set_name(m.name);
      for (const std::string& u : m.peer_urls)
        out->add_peerurls(u);
      for (const serverpb::MemberAttributes& p : *published) {
        if (p.id() != m.id) continue;
        out->set_name(p.name());
        for (const std::string& u : p.client_urls())
          out->add_clienturls(u);
      }
    }
    headers_.Fill(resp->mutable_header(), 0);
    return grpc::Status::OK;
  }

 private:
  server::Node* node_;
  const ServiceOptions& options_;
  Headers headers_;
};

// ---- Maintenance (Status for now) ----

class EtcdServices::MaintenanceImpl final : public etcdserverpb::Maintenance::Service {
 public:
  MaintenanceImpl(server::Node* node, const ServiceOptions& options)
      : node_(node), options_(options), headers_(node) {}

  grpc::Status Status(grpc::ServerContext* /*context*/, const etcdserverpb::StatusRequest* /*req*/,
                      etcdserverpb::StatusResponse* resp) override {
    const server::NodeStats st = node_->stats();
    resp->set_version(kEtcdApiVersion);
    uint64_t sst = 0;
    uint64_t mem = 0;
    rocksdb::DB* db = node_->store()->db();
    db->GetIntProperty("rocksdb.total-sst-files-size", &sst);
    db->GetIntProperty("rocksdb.cur-size-all-mem-tables", &mem);
    resp->set_dbsize(static_cast<int64_t>(sst + mem));
    resp->set_dbsizeinuse(static_cast<int64_t>(sst + mem));
    resp->set_dbsizequota(options_.quota_backend_bytes);
    resp->set_leader(st.leader);
    resp->set_raftindex(st.commit_index);
    resp->set_raftterm(st.term);
    resp->set_raftappliedindex(st.applied_index);
    if (st.leader == 0) resp->add_errors("etcdserver: no leader");
    headers_.Fill(resp->mutable_header(), headers_.current());
    return grpc::Status::OK;
  }

 private:
  server::Node* node_;
  const ServiceOptions& options_;
  Headers headers_;
};

// ---- EtcdServices ----

EtcdServices::EtcdServices(server::Node* node, server::Transport* transport, ServiceOptions options)
    : options_(std::move(options)) {
  kv_ = std::make_unique<KvImpl>(node, options_);
  watch_ = std::make_unique<WatchImpl>(node);
  lease_ = std::make_unique<LeaseImpl>(node, transport);
  cluster_ = std::make_unique<ClusterImpl>(node, options_);
  maintenance_ = std::make_unique<MaintenanceImpl>(node, options_);
}

EtcdServices::~EtcdServices() = default;

void EtcdServices::Register(grpc::ServerBuilder* builder) {
  builder->RegisterService(kv_.get());
  builder->RegisterService(watch_.get());
  builder->RegisterService(lease_.get());
  builder->RegisterService(cluster_.get());
  builder->RegisterService(maintenance_.get());
}

}  // namespace conclave::api
