// Node: the apply thread. Applies committed entries to the store in order,
// keeps the lessor in step with them, feeds the watch hub and completes the
// requests and reads that were waiting.
#include <fmt/format.h>

#include <algorithm>
#include <utility>

#include "api/convert.h"
#include "base/assert.h"
#include "base/logging.h"
#include "mvcc/snapshot.h"
#include "server/node.h"
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

void Node::ApplyLoop() {
  while (true) {
    ApplyItem item;
    {
      std::unique_lock<std::mutex> lock(apply_mu_);
      apply_cv_.wait(lock, [&] { return apply_stopping_ || !apply_queue_.empty(); });
      if (apply_queue_.empty()) break;
      item = std::move(apply_queue_.front());
      apply_queue_.pop_front();
    }
    if (item.snapshot) InstallSnapshotImage(*item.snapshot);
    ApplyEntries(item);
  }
}

void Node::InstallSnapshotImage(const raft::Snapshot& snap) {
  if (snap.metadata.index <= store_->AppliedIndex()) return;
  Status s = mvcc::InstallSnapshot(store_.get(), fs_.get(), snap.data);
  CHECK_MSG(s.ok(), "node: installing snapshot {} failed: {}", snap.data, s.ToString());
  s = ReloadLessor();
  CHECK_MSG(s.ok(), "node: reloading leases after a snapshot failed: {}", s.ToString());
  s = ReloadAlarms();
  CHECK_MSG(s.ok(), "node: reloading alarms after a snapshot failed: {}", s.ToString());
  s = ReloadRemoved();
  CHECK_MSG(s.ok(), "node: reloading removed members after a snapshot failed: {}", s.ToString());
  hub_->Resync(store_->CurrentRevision());
  snapshots_installed_.fetch_add(1);
  applied_index_.store(store_->AppliedIndex(), std::memory_order_release);
  LOG_INFO("node: installed snapshot at index {} (revision {})", store_->AppliedIndex(),
           store_->CurrentRevision());
  ReleaseReads(store_->AppliedIndex());
  if (membership_observer_) membership_observer_();
}

void Node::ApplyEntries(ApplyItem& item) {
  size_t i = 0;
  while (i < item.entries.size()) {
    auto batch = store_->NewBatch();
    std::vector<std::pair<uint64_t, ApplyResult>> results;
    uint64_t last = 0;
    bool members_changed = false;
    const size_t end = std::min(item.entries.size(), i + options_.apply_batch_entries_max);
    for (; i < end; ++i) {
      const raft::Entry& e = item.entries[i];
      if (e.index <= store_->AppliedIndex()) continue;
      if (e.type == raft::EntryType::kConfChange) {
        raftpb::ConfState cs;
        EncodeConfState(item.conf_states[e.index], &cs);
        batch->PutMeta(kConfStateMeta, cs.SerializeAsString());
        uint64_t proposer = 0;
        uint64_t request_id = 0;
        ApplyResult r = ApplyConfChangeEntry(batch.get(), e, item.conf_states[e.index],
                                             item.refused_conf_changes.contains(e.index), &proposer,
                                             &request_id);
        if (proposer == options_.member_id) results.emplace_back(request_id, std::move(r));
        members_changed = true;
      } else if (!e.data.empty()) {
        serverpb::Command command;
        if (!command.ParseFromString(e.data)) {
          // Every member skips it alike; nothing proposes such an entry.
          LOG_ERROR("node: entry {} holds no command; skipped", e.index);
        } else {
          ApplyResult r = ApplyCommand(batch.get(), command);
          members_changed =
              members_changed || command.has_member_attributes() || command.has_member_peer_urls();
          if (command.proposer() == options_.member_id)
            results.emplace_back(command.request_id(), std::move(r));
        }
      }
      batch->SetApplied(e.index, e.term);
      last = e.index;
    }
    if (last == 0) continue;
    std::vector<mvcc::Event> events = batch->events();
    const int64_t revision = batch->revision();
    Status s = store_->Commit(std::move(batch));
    CHECK_MSG(s.ok(), "node: committing applied entries failed: {}", s.ToString());
    if (!events.empty()) hub_->Notify(revision, events);
    applied_index_.store(last, std::memory_order_release);
    if (members_changed) {
      Status rs = ReloadRemoved();
      CHECK_MSG(rs.ok(), "node: reading removed members: {}", rs.ToString());
      if (membership_observer_) membership_observer_();
    }
    proposals_committed_.fetch_add(results.size());
    // Completed outside the lock: an asynchronous waiter's callback takes it
    // to unregister itself.
    std::vector<std::pair<std::shared_ptr<Waiter>, Result<ApplyResult>>> done;
    {
      std::lock_guard<std::mutex> lock(waiters_mu_);
      for (auto& [id, r] : results) {
        auto it = waiters_.find(id);
        if (it != waiters_.end()) done.emplace_back(it->second, std::move(r));
      }
    }
    for (auto& [w, r] : done)
      w->Complete(std::move(r));
    ReleaseReads(last);
  }
}

void Node::ReleaseReads(uint64_t applied) {
  std::vector<PendingRead> ready;
  {
    std::lock_guard<std::mutex> lock(apply_mu_);
    while (!pending_reads_.empty() && pending_reads_.front().index <= applied) {
      ready.push_back(std::move(pending_reads_.front()));
      pending_reads_.pop_front();
    }
  }
  for (PendingRead& r : ready) {
    for (auto& w : r.waiters)
      w->Complete(ApplyResult{});
  }
}

Status Node::CheckLeases(const serverpb::Command& command) const {
  std::vector<int64_t> leases;
  if (command.has_put() && command.put().lease() != 0) leases.push_back(command.put().lease());
  if (command.has_txn()) CollectTxnLeases(command.txn(), &leases);
  for (int64_t id : leases) {
    if (!lessor_->TimeToLive(id, false).ok()) return lease::errors::LeaseNotFound();
  }
  return Status::Ok();
}

void Node::TrackLeaseAttachments(const std::vector<mvcc::Event>& events, size_t from) {
  for (size_t i = from; i < events.size(); ++i) {
    const mvcc::Event& e = events[i];
    if (e.type == mvcc::EventType::kPut && e.kv.lease != 0) {
      Status s = lessor_->Attach(e.kv.lease, e.kv.key);
      if (!s.ok())
        LOG_WARN("node: attaching {} to lease {}: {}", e.kv.key, e.kv.lease, s.ToString());
    } else {
      lessor_->Detach(e.kv.key);
    }
  }
}

ApplyResult Node::ApplyCommand(mvcc::ApplyBatch* batch, const serverpb::Command& command) {
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

bool TxnPuts(const etcdserverpb::TxnRequest& txn) {
  for (const auto* ops : {&txn.success(), &txn.failure()}) {
    for (const auto& op : *ops) {
      if (op.has_request_put()) return true;
      if (op.has_request_txn() && TxnPuts(op.request_txn())) return true;
    }
  }
  return false;
}

Status Node::ReloadLessor() {
  ASSIGN_OR_RETURN(auto records, store_->ScanMeta(kLeaseMetaPrefix));
  std::vector<lease::Lessor::Restored> leases;
  leases.reserve(records.size());
  for (const auto& [name, value] : records) {
    serverpb::LeaseRecord rec;
    if (!rec.ParseFromString(value)) return Status::Corruption("node: lease record " + name);
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
    if (!s.ok()) LOG_WARN("node: key {} names missing lease {}", kv.key, kv.lease);
  }
  return Status::Ok();
}

}  // namespace conclave::server
