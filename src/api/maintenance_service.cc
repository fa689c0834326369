// The Maintenance service: Status, Alarm, Hash, HashKV, Snapshot,
// Defragment and MoveLeader.
//
// Space quota: a write that would take the store past --quota-backend-bytes
// raises the NOSPACE alarm through the log; while it is raised every member
// refuses writes ("etcdserver: mvcc: database space exceeded") until space is
// freed (compaction, defragmentation) and the alarm is disarmed.
#include <cstring>

#include "api/service_util.h"
#include "base/coding.h"
#include "base/sha256.h"
#include "etcd/api/etcdserverpb/rpc.grpc.pb.h"
#include "mvcc/mvcc.h"

namespace conclave::api::internal {

namespace {

class MaintenanceService final : public etcdserverpb::Maintenance::Service {
 public:
  MaintenanceService(server::EtcdGroup* node, const ServiceOptions& options)
      : node_(node), options_(options), headers_(node) {}

  grpc::Status Status(grpc::ServerContext* /*context*/, const etcdserverpb::StatusRequest* /*req*/,
                      etcdserverpb::StatusResponse* resp) override {
    const server::ReplicaStats st = node_->stats();
    resp->set_version(kEtcdApiVersion);
    const int64_t size = node_->StoreBytes();
    resp->set_dbsize(size);
    resp->set_dbsizeinuse(size);
    resp->set_dbsizequota(options_.quota_backend_bytes);
    resp->set_leader(st.leader);
    resp->set_raftindex(st.commit_index);
    resp->set_raftterm(st.term);
    resp->set_raftappliedindex(st.applied_index);
    auto members = node_->Members();
    if (members.ok()) {
      for (const auto& m : *members) {
        if (m.id() == node_->member_id()) resp->set_islearner(m.is_learner());
      }
    }
    if (st.leader == 0) resp->add_errors("etcdserver: no leader");
    if (node_->NoSpaceAlarm()) resp->add_errors("etcdserver: mvcc: database space exceeded");
    headers_.Fill(resp->mutable_header(), headers_.current());
    return grpc::Status::OK;
  }

  grpc::Status Alarm(grpc::ServerContext* /*context*/, const etcdserverpb::AlarmRequest* req,
                     etcdserverpb::AlarmResponse* resp) override {
    if (auto refused = RefuseOnLearner(node_); !refused.ok()) return ToGrpc(refused);
    serverpb::Command c;
    *c.mutable_alarm() = *req;
    auto r = ProposeAndWait(node_, std::move(c));
    if (!r.ok()) return ToGrpc(r.status());
    // Without a header, as etcd answers alarm requests.
    *resp = std::get<etcdserverpb::AlarmResponse>(r->response);
    return grpc::Status::OK;
  }

  grpc::Status Hash(grpc::ServerContext* /*context*/, const etcdserverpb::HashRequest* /*req*/,
                    etcdserverpb::HashResponse* resp) override {
    if (auto refused = RefuseOnLearner(node_); !refused.ok()) return ToGrpc(refused);
    auto h = node_->Hash();
    if (!h.ok()) return ToGrpc(h.status());
    resp->set_hash(*h);
    headers_.Fill(resp->mutable_header(), headers_.current());
    return grpc::Status::OK;
  }

  grpc::Status HashKV(grpc::ServerContext* /*context*/, const etcdserverpb::HashKVRequest* req,
                      etcdserverpb::HashKVResponse* resp) override {
    if (auto refused = RefuseOnLearner(node_); !refused.ok()) return ToGrpc(refused);
    // etcd refuses the compacted revision itself, and reports -1 when
    // nothing was ever compacted.
    if (req->revision() > 0 && req->revision() <= node_->CompactRevision())
      return ToGrpc(mvcc::errors::Compacted());
    auto h = node_->HashKV(req->revision());
    if (!h.ok()) return ToGrpc(h.status());
    resp->set_hash(h->hash);
    resp->set_compact_revision(h->compact_revision == 0 ? -1 : h->compact_revision);
    headers_.Fill(resp->mutable_header(), headers_.current());
    return grpc::Status::OK;
  }

  // The image streams as a saved snapshot file (mvcc/snapshot.h: the .snap
  // file, zero padding, its SHA-256), which `conclave snapshot restore` reads.
  grpc::Status Snapshot(grpc::ServerContext* context, const etcdserverpb::SnapshotRequest* /*req*/,
                        grpc::ServerWriter<etcdserverpb::SnapshotResponse>* writer) override {
    if (auto refused = RefuseOnLearner(node_); !refused.ok()) return ToGrpc(refused);
    constexpr size_t kChunkBytes = 1 << 20;
    auto image = node_->NewImage(kChunkBytes);
    if (!image.ok()) return ToGrpc(image.status());
    const int64_t revision = headers_.current();
    Sha256 digest;
    uint64_t sent = 0;
    auto send = [&](std::string blob, uint64_t remaining) {
      etcdserverpb::SnapshotResponse out;
      headers_.Fill(out.mutable_header(), revision);
      out.set_remaining_bytes(remaining);
      out.set_blob(std::move(blob));
      return writer->Write(out);
    };
    std::string chunk;
    while (true) {
      if (context->IsCancelled()) return grpc::Status(grpc::CANCELLED, "context canceled");
      auto more = (*image)->Next(&chunk);
      if (!more.ok()) return ToGrpc(more.status());
      if (!*more) break;
      std::string blob;
      PutFixed32(&blob, static_cast<uint32_t>(chunk.size()));
      blob += chunk;
      digest.Update(blob);
      sent += blob.size();
      // The total is not known before the last chunk: report what is left
      // as at least the trailer.
      if (!send(std::move(blob), Sha256::kDigestBytes + mvcc::kSavedSnapshotAlign))
        return grpc::Status::OK;
    }
    std::string tail = mvcc::SavedSnapshotPadding(sent);
    digest.Update(tail);
    const auto d = digest.Finish();
    tail.append(reinterpret_cast<const char*>(d.data()), d.size());
    send(std::move(tail), 0);
    return grpc::Status::OK;
  }

  // Compacts all of the engine's files, dropping what compaction and
  // deletes left behind; reads and writes go on meanwhile.
  grpc::Status Defragment(grpc::ServerContext* /*context*/,
                          const etcdserverpb::DefragmentRequest* /*req*/,
                          etcdserverpb::DefragmentResponse* resp) override {
    if (auto refused = RefuseOnLearner(node_); !refused.ok()) return ToGrpc(refused);
    if (conclave::Status s = node_->Defragment(); !s.ok())
      return ToGrpc(Status::Internal("defragment: " + s.message()));
    headers_.Fill(resp->mutable_header(), headers_.current());
    return grpc::Status::OK;
  }

  grpc::Status MoveLeader(grpc::ServerContext* /*context*/,
                          const etcdserverpb::MoveLeaderRequest* req,
                          etcdserverpb::MoveLeaderResponse* resp) override {
    if (auto refused = RefuseOnLearner(node_); !refused.ok()) return ToGrpc(refused);
    if (!node_->is_leader()) return ToGrpc(Status::FailedPrecondition("etcdserver: not leader"));
    auto members = node_->Members();
    if (!members.ok()) return ToGrpc(members.status());
    bool voter = false;
    for (const auto& m : *members) {
      if (m.id() == req->targetid() && !m.is_learner()) voter = true;
    }
    if (!voter) return ToGrpc(Status::FailedPrecondition("etcdserver: bad leader transferee"));
    if (conclave::Status s = node_->TransferLeadership(req->targetid()); !s.ok()) return ToGrpc(s);
    headers_.Fill(resp->mutable_header(), headers_.current());
    return grpc::Status::OK;
  }

 private:
  server::EtcdGroup* node_;
  const ServiceOptions& options_;
  Headers headers_;
};

}  // namespace

Status CheckQuota(server::EtcdGroup* node, const ServiceOptions& options, size_t request_bytes) {
  if (node->NoSpaceAlarm()) return mvcc::errors::NoSpace();
  if (options.quota_backend_bytes <= 0) return Status::Ok();
  if (node->StoreBytes() + static_cast<int64_t>(request_bytes) <= options.quota_backend_bytes)
    return Status::Ok();
  // Over quota: raise the alarm through the log, so every member refuses.
  node->RaiseNoSpaceAlarm();
  return mvcc::errors::NoSpace();
}

std::unique_ptr<grpc::Service> NewMaintenanceService(server::EtcdGroup* node,
                                                     const ServiceOptions& options) {
  return std::make_unique<MaintenanceService>(node, options);
}

}  // namespace conclave::api::internal
