// EtcdStateMachine: the cluster's own records, changed only by applied
// entries: members, removed ids and alarms.
//
// Members live in the store as MemberRecord metadata: the bootstrap writes
// the initial members; a conf change entry carries the member it adds,
// promotes or removes in its context; a published MemberAttributes fills in
// the name and client URLs; a MemberPeerUrls command replaces the peer
// URLs. A removed member leaves a marker so that its id is never accepted
// again.
#include <fmt/format.h>

#include <algorithm>

#include "base/logging.h"
#include "server/etcd_state_machine.h"

namespace conclave::server {

namespace {

std::string RemovedMetaName(uint64_t id) {
  return fmt::format("{}{:016x}", kRemovedMetaPrefix, id);
}

std::string AlarmMetaName(uint64_t member, int alarm) {
  return fmt::format("{}{:016x}/{}", kAlarmMetaPrefix, member, alarm);
}

}  // namespace

Status MemberNotFound() {
  return Status::NotFound("etcdserver: member not found");
}

std::string MemberMetaName(uint64_t id) {
  return fmt::format("{}{:016x}", kMemberMetaPrefix, id);
}

Result<std::vector<serverpb::MemberRecord>> EtcdStateMachine::Members() const {
  ASSIGN_OR_RETURN(auto records, store_->ScanMeta(kMemberMetaPrefix));
  std::vector<serverpb::MemberRecord> out;
  out.reserve(records.size());
  for (const auto& [name, value] : records) {
    serverpb::MemberRecord m;
    if (!m.ParseFromString(value)) return Status::Corruption("etcd: member record " + name);
    out.push_back(std::move(m));
  }
  return out;
}

bool EtcdStateMachine::IsRemoved(uint64_t id) const {
  std::lock_guard<std::mutex> lock(removed_mu_);
  return removed_ids_.contains(id);
}

Status EtcdStateMachine::ReloadRemoved() {
  ASSIGN_OR_RETURN(auto markers, store_->ScanMeta(kRemovedMetaPrefix));
  std::set<uint64_t> ids;
  for (const auto& [name, value] : markers)
    ids.insert(std::stoull(name.substr(kRemovedMetaPrefix.size()), nullptr, 16));
  std::lock_guard<std::mutex> lock(removed_mu_);
  removed_ids_ = std::move(ids);
  return Status::Ok();
}

ApplyResult EtcdStateMachine::ApplyConfChange(mvcc::ApplyBatch* batch, const CommittedEntry& e) {
  ApplyResult out;
  out.revision = batch->revision();
  const raft::ConfChange* cc = e.conf_change;
  serverpb::MemberChange change;
  if (!e.command.empty() &&
      !change.ParseFromArray(e.command.data(), static_cast<int>(e.command.size()))) {
    LOG_ERROR("etcd: conf change {} has an unreadable context", e.index);
  }
  if (e.refused) {
    out.status = Status::FailedPrecondition("etcdserver: configuration change refused by raft");
    return out;
  }
  for (const raft::ConfChangeSingle& c : cc->changes) {
    // A removal takes effect below, once the member has left every
    // configuration: while the joint one lasts it still votes.
    if (c.type == raft::ConfChangeType::kRemoveNode) continue;
    const std::string name = MemberMetaName(c.node);
    auto existing = batch->GetMeta(name);
    CHECK_MSG(existing.ok(), "etcd: reading member {:x}: {}", c.node, existing.status().ToString());
    serverpb::MemberRecord rec;
    if (existing->has_value()) {
      CHECK(rec.ParseFromString(**existing));
    } else {
      rec = change.member();
      rec.set_id(c.node);
    }
    rec.set_is_learner(c.type == raft::ConfChangeType::kAddLearner);
    batch->PutMeta(name, rec.SerializeAsString());
    LOG_INFO("etcd: member {:x} is a {}", c.node, rec.is_learner() ? "learner" : "voter");
  }
  std::set<uint64_t> configured;
  const raft::ConfState& result = *e.conf_state;
  for (const auto* ids :
       {&result.voters, &result.voters_outgoing, &result.learners, &result.learners_next}) {
    configured.insert(ids->begin(), ids->end());
  }
  auto records = batch->ScanMeta(kMemberMetaPrefix);
  CHECK_MSG(records.ok(), "etcd: reading members: {}", records.status().ToString());
  for (const auto& [name, value] : *records) {
    serverpb::MemberRecord rec;
    CHECK(rec.ParseFromString(value));
    if (configured.contains(rec.id())) continue;
    batch->DeleteMeta(name);
    batch->PutMeta(RemovedMetaName(rec.id()), "");
    LOG_INFO("etcd: member {:x} removed", rec.id());
  }
  return out;
}

Status EtcdStateMachine::ApplyMemberAttributes(mvcc::ApplyBatch* batch,
                                               const serverpb::MemberAttributes& m) {
  const std::string name = MemberMetaName(m.id());
  ASSIGN_OR_RETURN(std::optional<std::string> existing, batch->GetMeta(name));
  // A member removed before its publication was applied: nothing to update.
  if (!existing) return Status::Ok();
  serverpb::MemberRecord rec;
  if (!rec.ParseFromString(*existing)) return Status::Corruption("etcd: member record " + name);
  rec.set_name(m.name());
  rec.mutable_client_urls()->CopyFrom(m.client_urls());
  batch->PutMeta(name, rec.SerializeAsString());
  return Status::Ok();
}

Status EtcdStateMachine::ApplyMemberPeerUrls(mvcc::ApplyBatch* batch,
                                             const serverpb::MemberPeerUrls& m) {
  const std::string name = MemberMetaName(m.id());
  ASSIGN_OR_RETURN(std::optional<std::string> existing, batch->GetMeta(name));
  if (!existing) return MemberNotFound();
  serverpb::MemberRecord rec;
  if (!rec.ParseFromString(*existing)) return Status::Corruption("etcd: member record " + name);
  rec.mutable_peer_urls()->CopyFrom(m.peer_urls());
  batch->PutMeta(name, rec.SerializeAsString());
  return Status::Ok();
}

ApplyResult EtcdStateMachine::ApplyAlarm(mvcc::ApplyBatch* batch,
                                         const etcdserverpb::AlarmRequest& a) {
  ApplyResult out;
  out.revision = batch->revision();
  etcdserverpb::AlarmResponse resp;
  auto current = AlarmsIn(batch->ScanMeta(kAlarmMetaPrefix));
  CHECK_MSG(current.ok(), "etcd: reading alarms: {}", current.status().ToString());
  const std::string name = AlarmMetaName(a.memberid(), a.alarm());
  etcdserverpb::AlarmMember m;
  m.set_memberid(a.memberid());
  m.set_alarm(a.alarm());
  auto is_this = [&](const etcdserverpb::AlarmMember& x) {
    return x.memberid() == a.memberid() && x.alarm() == a.alarm();
  };
  const bool present = std::any_of(current->begin(), current->end(), is_this);
  switch (a.action()) {
    case etcdserverpb::AlarmRequest::GET:
      for (const auto& x : *current) {
        if (a.alarm() == etcdserverpb::NONE || x.alarm() == a.alarm()) *resp.add_alarms() = x;
      }
      break;
    case etcdserverpb::AlarmRequest::ACTIVATE:
      if (a.alarm() == etcdserverpb::NONE) break;
      batch->PutMeta(name, m.SerializeAsString());
      *resp.add_alarms() = m;
      if (a.alarm() == etcdserverpb::NOSPACE) {
        nospace_alarm_.store(true, std::memory_order_release);
        if (!present) LOG_WARN("etcd: alarm NOSPACE raised by member {:x}", a.memberid());
      }
      break;
    case etcdserverpb::AlarmRequest::DEACTIVATE: {
      if (!present) break;
      batch->DeleteMeta(name);
      *resp.add_alarms() = m;
      bool nospace = false;
      for (const auto& x : *current) {
        if (!is_this(x) && x.alarm() == etcdserverpb::NOSPACE) nospace = true;
      }
      nospace_alarm_.store(nospace, std::memory_order_release);
      LOG_INFO("etcd: alarm {} of member {:x} disarmed", etcdserverpb::AlarmType_Name(a.alarm()),
               a.memberid());
      break;
    }
    default:
      out.status = Status::InvalidArgument("etcdserver: unknown alarm action");
      return out;
  }
  out.response = std::move(resp);
  return out;
}

Result<std::vector<etcdserverpb::AlarmMember>> EtcdStateMachine::Alarms() const {
  return AlarmsIn(store_->ScanMeta(kAlarmMetaPrefix));
}

Result<std::vector<etcdserverpb::AlarmMember>> EtcdStateMachine::AlarmsIn(
    Result<std::vector<std::pair<std::string, std::string>>> scanned) {
  ASSIGN_OR_RETURN(auto records, std::move(scanned));
  std::vector<etcdserverpb::AlarmMember> out;
  for (const auto& [name, value] : records) {
    etcdserverpb::AlarmMember m;
    if (!m.ParseFromString(value)) return Status::Corruption("etcd: alarm record " + name);
    out.push_back(std::move(m));
  }
  return out;
}

Status EtcdStateMachine::ReloadAlarms() {
  ASSIGN_OR_RETURN(auto alarms, Alarms());
  bool nospace = false;
  for (const auto& a : alarms) {
    if (a.alarm() == etcdserverpb::NOSPACE) nospace = true;
  }
  nospace_alarm_.store(nospace, std::memory_order_release);
  return Status::Ok();
}

}  // namespace conclave::server
