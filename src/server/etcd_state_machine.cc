// EtcdStateMachine: opening, applying commands, leases and snapshots.
// Members and alarms are in etcd_members.cc.
#include "server/etcd_state_machine.h"

#include <fmt/format.h>

#include <algorithm>
#include <utility>

#include "api/api.h"
#include "base/assert.h"
#include "base/logging.h"
#include "server/raft_codec.h"

namespace conclave::server {

namespace {

std::string LeaseMetaName(lease::LeaseId id) {
  return fmt::format("{}{:016x}", kLeaseMetaPrefix, static_cast<uint64_t>(id));
}

// Every put a request could make, nested txns included.
void CollectPutLeases(const etcdserverpb::RequestOp& op, std::vector<int64_t>* leases);

void CollectTxnLeases(const etcdserverpb::TxnRequest& txn, std::vector<int64_t>* leases) {
  for (const auto& op : txn.success())
    CollectPutLeases(op, leases);
  for (const auto& op : txn.failure())
    CollectPutLeases(op, leases);
}

void CollectPutLeases(const etcdserverpb::RequestOp& op, std::vector<int64_t>* leases) {
  if (op.has_request_put() && op.request_put().lease() != 0) {
    leases->push_back(op.request_put().lease());
  } else if (op.has_request_txn()) {
    CollectTxnLeases(op.request_txn(), leases);
  }
}

}  // namespace

bool TxnPuts(const etcdserverpb::TxnRequest& txn) {
  for (const auto* ops : {&txn.success(), &txn.failure()}) {
    for (const auto& op : *ops) {
      if (op.has_request_put()) return true;
      if (op.has_request_txn() && TxnPuts(op.request_txn())) return true;
    }
  }
  return false;
}

EtcdStateMachine::EtcdStateMachine(storage::Engine* engine, storage::FileSystem* fs, Clock& clock,
                                   const EtcdStateMachineOptions& options)
    : engine_(engine), fs_(fs), clock_(clock), options_(options) {}

EtcdStateMachine::~EtcdStateMachine() = default;

Result<std::unique_ptr<EtcdStateMachine>> EtcdStateMachine::Open(
    storage::Engine* engine, storage::FileSystem* snapshot_fs, Clock& clock,
    const EtcdStateMachineOptions& options) {
  std::unique_ptr<EtcdStateMachine> sm(new EtcdStateMachine(engine, snapshot_fs, clock, options));
  RETURN_IF_ERROR(sm->Load());
  return sm;
}

Status EtcdStateMachine::Load() {
  mvcc::StoreOptions store_options;
  store_options.group = options_.group;
  store_options.sync = false;
  store_options.test_bug_applied_index_apart = options_.test_bug_applied_index_apart;
  ASSIGN_OR_RETURN(store_, mvcc::Store::Open(engine_, store_options));
  lease::LessorOptions lessor_options;
  lessor_options.min_ttl_seconds = options_.lease_min_ttl_seconds;
  lessor_ = std::make_unique<lease::Lessor>(clock_, lessor_options);
  RETURN_IF_ERROR(ReloadLessor());
  RETURN_IF_ERROR(ReloadAlarms());
  RETURN_IF_ERROR(ReloadRemoved());
  hub_ = std::make_unique<mvcc::WatchHub>(store_.get(), mvcc::WatchHubOptions{});
  return Status::Ok();
}

Result<raft::ConfState> EtcdStateMachine::AppliedConfState() const {
  ASSIGN_OR_RETURN(std::optional<std::string> bytes, store_->GetMeta(kConfStateMeta));
  raftpb::ConfState cs;
  if (!bytes || !cs.ParseFromString(*bytes)) {
    return Status::Corruption("etcd: the store has no raft configuration at index " +
                              std::to_string(store_->AppliedIndex()));
  }
  return DecodeConfState(cs);
}

Status EtcdStateMachine::Bootstrap(const raft::ConfState& conf_state) {
  raftpb::ConfState cs_pb;
  EncodeConfState(conf_state, &cs_pb);
  auto batch = store_->NewBatch();
  batch->PutMeta(kConfStateMeta, cs_pb.SerializeAsString());
  for (const serverpb::MemberRecord& m : options_.initial_members)
    batch->PutMeta(MemberMetaName(m.id()), m.SerializeAsString());
  batch->SetApplied(1, 1);
  RETURN_IF_ERROR(store_->Commit(std::move(batch)));
  return store_->Sync();
}

// ---- apply ----

Status EtcdStateMachine::Apply(std::span<const CommittedEntry> entries,
                               std::vector<std::any>* results) {
  auto batch = store_->NewBatch();
  bool members_changed = false;
  for (size_t i = 0; i < entries.size(); ++i) {
    const CommittedEntry& e = entries[i];
    if (e.type == raft::EntryType::kConfChange) {
      raftpb::ConfState cs;
      EncodeConfState(*e.conf_state, &cs);
      batch->PutMeta(kConfStateMeta, cs.SerializeAsString());
      (*results)[i] = ApplyConfChange(batch.get(), e);
      members_changed = true;
    } else if (e.command.empty()) {
      // The leader's no-op: nothing changes, but the revision it leaves is
      // still a result (the simulator checks it on every replica).
      (*results)[i] = ApplyResult{.revision = batch->revision()};
    } else {
      serverpb::Command command;
      if (!command.ParseFromArray(e.command.data(), static_cast<int>(e.command.size()))) {
        // Every member skips it alike; nothing proposes such an entry.
        LOG_ERROR("etcd: entry {} holds no command; skipped", e.index);
        (*results)[i] = ApplyResult{.status = Status::InvalidArgument("etcd: not a command"),
                                    .revision = batch->revision()};
      } else {
        (*results)[i] = ApplyCommand(batch.get(), command);
        members_changed =
            members_changed || command.has_member_attributes() || command.has_member_peer_urls();
      }
    }
    batch->SetApplied(e.index, e.term);
  }
  std::vector<mvcc::Event> events = batch->events();
  const int64_t revision = batch->revision();
  RETURN_IF_ERROR(store_->Commit(std::move(batch)));
  if (!events.empty()) hub_->Notify(revision, events);
  if (members_changed) {
    RETURN_IF_ERROR(ReloadRemoved());
    if (membership_observer_) membership_observer_();
  }
  return Status::Ok();
}

Status EtcdStateMachine::CheckLeases(const serverpb::Command& command) const {
  std::vector<int64_t> leases;
  if (command.has_put() && command.put().lease() != 0) leases.push_back(command.put().lease());
  if (command.has_txn()) CollectTxnLeases(command.txn(), &leases);
  for (int64_t id : leases) {
    if (!lessor_->TimeToLive(id, false).ok()) return lease::errors::LeaseNotFound();
  }
  return Status::Ok();
}

void EtcdStateMachine::TrackLeaseAttachments(const std::vector<mvcc::Event>& events, size_t from) {
  for (size_t i = from; i < events.size(); ++i) {
    const mvcc::Event& e = events[i];
    if (e.type == mvcc::EventType::kPut && e.kv.lease != 0) {
      Status s = lessor_->Attach(e.kv.lease, e.kv.key);
      if (!s.ok())
        LOG_WARN("etcd: attaching {} to lease {}: {}", e.kv.key, e.kv.lease, s.ToString());
    } else {
      lessor_->Detach(e.kv.key);
    }
  }
}

ApplyResult EtcdStateMachine::ApplyCommand(mvcc::ApplyBatch* batch,
                                           const serverpb::Command& command) {
  ApplyResult out;
  const size_t events_before = batch->events().size();
  auto fail = [&](Status s) {
    out.status = std::move(s);
    out.revision = batch->revision();
    return out;
  };
  switch (command.op_case()) {
    case serverpb::Command::kPut: {
      if (NoSpaceAlarm()) return fail(mvcc::errors::NoSpace());
      if (Status s = CheckLeases(command); !s.ok()) return fail(s);
      auto r = batch->Put(api::FromWire(command.put()));
      if (!r.ok()) return fail(r.status());
      out.response = std::move(*r);
      break;
    }
    case serverpb::Command::kDeleteRange: {
      auto r = batch->DeleteRange(api::FromWire(command.delete_range()));
      if (!r.ok()) return fail(r.status());
      out.response = std::move(*r);
      break;
    }
    case serverpb::Command::kTxn: {
      if (NoSpaceAlarm() && TxnPuts(command.txn())) return fail(mvcc::errors::NoSpace());
      if (Status s = CheckLeases(command); !s.ok()) return fail(s);
      auto req = api::FromWire(command.txn());
      if (!req.ok()) return fail(req.status());
      auto r = batch->Txn(*req);
      if (!r.ok()) return fail(r.status());
      out.response = std::move(*r);
      break;
    }
    case serverpb::Command::kCompaction: {
      auto r = batch->Compact(api::FromWire(command.compaction()));
      if (!r.ok()) return fail(r.status());
      break;
    }
    case serverpb::Command::kLeaseGrant: {
      if (NoSpaceAlarm()) return fail(mvcc::errors::NoSpace());
      const auto& g = command.lease_grant();
      auto r = lessor_->Grant(g.id(), g.ttl());
      if (!r.ok()) return fail(r.status());
      serverpb::LeaseRecord rec;
      rec.set_id(r->id);
      rec.set_ttl_seconds(r->ttl_seconds);
      batch->PutMeta(LeaseMetaName(r->id), rec.SerializeAsString());
      out.response = *r;
      break;
    }
    case serverpb::Command::kLeaseRevoke: {
      const lease::LeaseId id = command.lease_revoke().id();
      auto keys = lessor_->Revoke(id);
      if (!keys.ok()) return fail(keys.status());
      batch->DeleteMeta(LeaseMetaName(id));
      if (!keys->empty()) {
        // One txn: the lease's keys vanish together, at one revision.
        mvcc::TxnRequest txn;
        for (std::string& key : *keys) {
          mvcc::DeleteRangeRequest d;
          d.key = std::move(key);
          txn.success.push_back(mvcc::RequestOp{std::move(d)});
        }
        auto r = batch->Txn(txn);
        if (!r.ok()) return fail(r.status());
      }
      break;
    }
    case serverpb::Command::kLeaseCheckpoints: {
      for (const auto& cp : command.lease_checkpoints().checkpoints()) {
        lessor_->ApplyCheckpoint(lease::Checkpoint{cp.id(), cp.remaining_ttl()});
        auto ttl = lessor_->TimeToLive(cp.id(), false);
        if (!ttl.ok()) continue;
        serverpb::LeaseRecord rec;
        rec.set_id(cp.id());
        rec.set_ttl_seconds(ttl->granted_ttl_seconds);
        rec.set_remaining_ttl_seconds(cp.remaining_ttl());
        batch->PutMeta(LeaseMetaName(cp.id()), rec.SerializeAsString());
      }
      break;
    }
    case serverpb::Command::kMemberAttributes:
      if (Status s = ApplyMemberAttributes(batch, command.member_attributes()); !s.ok())
        return fail(s);
      break;
    case serverpb::Command::kMemberPeerUrls:
      if (Status s = ApplyMemberPeerUrls(batch, command.member_peer_urls()); !s.ok())
        return fail(s);
      break;
    case serverpb::Command::kAlarm:
      return ApplyAlarm(batch, command.alarm());
    case serverpb::Command::OP_NOT_SET:
      return fail(Status::InvalidArgument("conclave: empty command"));
  }
  TrackLeaseAttachments(batch->events(), events_before);
  out.revision = batch->revision();
  return out;
}

// ---- leases ----

Result<lease::TimeToLiveResult> EtcdStateMachine::LeaseTimeToLive(lease::LeaseId id,
                                                                  bool with_keys) const {
  if (!lessor_->primary()) return lease::errors::NotLeader();
  return lessor_->TimeToLive(id, with_keys);
}

void EtcdStateMachine::OnLeaderChange(bool is_leader) {
  if (is_leader) {
    lessor_->Promote();
    next_checkpoint_ = clock_.Monotonic() + options_.lease_checkpoint_interval;
  } else {
    lessor_->Demote();
  }
}

void EtcdStateMachine::Tick(std::vector<std::string>* proposals) {
  if (!lessor_->primary()) return;
  for (lease::LeaseId id : lessor_->ExpiredLeases(64)) {
    serverpb::Command c;
    c.mutable_lease_revoke()->set_id(id);
    proposals->push_back(c.SerializeAsString());
  }
  const Duration now = clock_.Monotonic();
  if (now < next_checkpoint_) return;
  next_checkpoint_ = now + options_.lease_checkpoint_interval;
  std::vector<lease::Checkpoint> cps =
      lessor_->Checkpoints(options_.lease_checkpoint_leases_max, /*all=*/true);
  if (cps.empty()) return;
  serverpb::Command c;
  for (const lease::Checkpoint& cp : cps) {
    etcdserverpb::LeaseCheckpoint* pc = c.mutable_lease_checkpoints()->add_checkpoints();
    pc->set_id(cp.id);
    pc->set_remaining_ttl(cp.remaining_ttl_seconds);
  }
  proposals->push_back(c.SerializeAsString());
}

Status EtcdStateMachine::ReloadLessor() {
  ASSIGN_OR_RETURN(auto records, store_->ScanMeta(kLeaseMetaPrefix));
  std::vector<lease::Lessor::Restored> leases;
  leases.reserve(records.size());
  for (const auto& [name, value] : records) {
    serverpb::LeaseRecord rec;
    if (!rec.ParseFromString(value)) return Status::Corruption("etcd: lease record " + name);
    leases.push_back({rec.id(), rec.ttl_seconds(), rec.remaining_ttl_seconds()});
  }
  lessor_->Reset(leases);
  if (leases.empty()) return Status::Ok();
  // Attachments are not stored twice: every live key names its lease.
  mvcc::RangeRequest all;
  all.key.assign(1, '\0');
  all.range_end.assign(1, '\0');
  all.serializable = true;
  ASSIGN_OR_RETURN(mvcc::RangeResponse keys, store_->Range(all));
  for (const mvcc::KeyValue& kv : keys.kvs) {
    if (kv.lease == 0) continue;
    Status s = lessor_->Attach(kv.lease, kv.key);
    if (!s.ok()) LOG_WARN("etcd: key {} names missing lease {}", kv.key, kv.lease);
  }
  return Status::Ok();
}

// ---- snapshots ----

Result<std::unique_ptr<mvcc::SnapshotWriter>> EtcdStateMachine::NewImage(size_t chunk_bytes) const {
  return mvcc::SnapshotWriter::Create(store_.get(), chunk_bytes);
}

Result<std::unique_ptr<SnapshotSource>> EtcdStateMachine::NewSnapshot() {
  ASSIGN_OR_RETURN(auto writer, mvcc::SnapshotWriter::Create(store_.get(), 1 << 20));
  ASSIGN_OR_RETURN(std::optional<std::string> cs_bytes, writer->GetMeta(kConfStateMeta));
  raftpb::ConfState cs;
  if (!cs_bytes || !cs.ParseFromString(*cs_bytes)) {
    return Status::Corruption("snapshot: the image has no raft configuration");
  }
  return NewWriterSnapshotSource(std::move(writer), DecodeConfState(cs));
}

Status EtcdStateMachine::InstallSnapshot(const std::string& path) {
  RETURN_IF_ERROR(mvcc::InstallSnapshot(store_.get(), fs_, path));
  RETURN_IF_ERROR(ReloadLessor());
  RETURN_IF_ERROR(ReloadAlarms());
  RETURN_IF_ERROR(ReloadRemoved());
  hub_->Resync(store_->CurrentRevision());
  LOG_INFO("etcd: installed snapshot at index {} (revision {})", store_->AppliedIndex(),
           store_->CurrentRevision());
  if (membership_observer_) membership_observer_();
  return Status::Ok();
}

}  // namespace conclave::server
