// Node: membership (member records, conf-change proposals and their apply),
// alarms, the leader's view of its peers, and leadership transfer.
//
// Members live in the store as MemberRecord metadata, changed only by
// applied entries: the bootstrap writes the initial members; a conf change
// entry carries the member it adds, promotes or removes in its context; a
// published MemberAttributes fills in the name and client URLs; a
// MemberPeerUrls command replaces the peer URLs. A removed member leaves a
// marker so that its id is never accepted again.
#include <fmt/format.h>

#include <algorithm>
#include <thread>

#include "base/logging.h"
#include "server/node.h"
#include "server/raft_codec.h"

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

Result<std::vector<serverpb::MemberRecord>> Node::Members() const {
  ASSIGN_OR_RETURN(auto records, store_->ScanMeta(kMemberMetaPrefix));
  std::vector<serverpb::MemberRecord> out;
  out.reserve(records.size());
  for (const auto& [name, value] : records) {
    serverpb::MemberRecord m;
    if (!m.ParseFromString(value)) return Status::Corruption("node: member record " + name);
    out.push_back(std::move(m));
  }
  return out;
}

bool Node::IsRemoved(uint64_t id) const {
  std::lock_guard<std::mutex> lock(removed_mu_);
  return removed_ids_.contains(id);
}

Status Node::ReloadRemoved() {
  ASSIGN_OR_RETURN(auto markers, store_->ScanMeta(kRemovedMetaPrefix));
  std::set<uint64_t> ids;
  for (const auto& [name, value] : markers)
    ids.insert(std::stoull(name.substr(kRemovedMetaPrefix.size()), nullptr, 16));
  std::lock_guard<std::mutex> lock(removed_mu_);
  removed_ids_ = std::move(ids);
  return Status::Ok();
}

Status Node::ProposeMembership(raft::ConfChangeType type, const serverpb::MemberRecord& member) {
  const auto deadline = SteadyClock::now() + options_.request_timeout;
  while (true) {
    // Proposed anywhere but on the leader, a refused change would be lost
    // silently (the core forwards it): membership runs on the leader only.
    if (!is_leader()) return Status::Unavailable("etcdserver: leader changed");
    auto w = std::make_shared<Waiter>();
    w->request_id = next_request_id_.fetch_add(1);
    serverpb::MemberChange change;
    change.set_proposer(options_.member_id);
    change.set_request_id(w->request_id);
    *change.mutable_member() = member;
    raft::ConfChange cc;
    // Joint consensus even for one member: the core enters the joint
    // configuration and leaves it on its own once that is applied.
    cc.transition = raft::ConfChangeTransition::kJointImplicit;
    cc.changes.push_back(raft::ConfChangeSingle{type, member.id()});
    cc.context = change.SerializeAsString();
    w->conf_change = std::move(cc);
    Result<ApplyResult> r = Submit(w);
    // The previous change (or the automatic leave of its joint
    // configuration) is still in flight: wait for it and try again.
    const bool busy = !r.ok() && r.status().code() == StatusCode::kFailedPrecondition &&
                      r.status().message().find("already in progress") != std::string::npos;
    if (busy && SteadyClock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    if (!r.ok()) return r.status();
    RETURN_IF_ERROR(r->status);
    // Done once the joint configuration is left too (a removed member is
    // gone from the records only then).
    while (true) {
      ASSIGN_OR_RETURN(std::optional<std::string> bytes, store_->GetMeta(kConfStateMeta));
      raftpb::ConfState cs;
      if (bytes && cs.ParseFromString(*bytes) && cs.voters_outgoing().empty()) return Status::Ok();
      if (SteadyClock::now() >= deadline) return RequestTimedOut();
      if (stopping()) return Status::Unavailable("etcdserver: server stopped");
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
}

ApplyResult Node::ApplyConfChangeEntry(mvcc::ApplyBatch* batch, const raft::Entry& e,
                                       const raft::ConfState& result, bool refused,
                                       uint64_t* proposer, uint64_t* request_id) {
  ApplyResult out;
  out.revision = batch->revision();
  auto cc = raft::ConfChange::Decode(e.data);
  CHECK_MSG(cc.ok(), "node: committed conf change {} does not decode", e.index);
  serverpb::MemberChange change;
  if (!cc->context.empty() && !change.ParseFromString(cc->context)) {
    LOG_ERROR("node: conf change {} has an unreadable context", e.index);
  }
  *proposer = change.proposer();
  *request_id = change.request_id();
  if (refused) {
    out.status = Status::FailedPrecondition("etcdserver: configuration change refused by raft");
    return out;
  }
  for (const raft::ConfChangeSingle& c : cc->changes) {
    // A removal takes effect below, once the member has left every
    // configuration: while the joint one lasts it still votes.
    if (c.type == raft::ConfChangeType::kRemoveNode) continue;
    const std::string name = MemberMetaName(c.node);
    auto existing = batch->GetMeta(name);
    CHECK_MSG(existing.ok(), "node: reading member {:x}: {}", c.node, existing.status().ToString());
    serverpb::MemberRecord rec;
    if (existing->has_value()) {
      CHECK(rec.ParseFromString(**existing));
    } else {
      rec = change.member();
      rec.set_id(c.node);
    }
    rec.set_is_learner(c.type == raft::ConfChangeType::kAddLearner);
    batch->PutMeta(name, rec.SerializeAsString());
    LOG_INFO("node: member {:x} is a {}", c.node, rec.is_learner() ? "learner" : "voter");
  }
  std::set<uint64_t> configured;
  for (const auto* ids :
       {&result.voters, &result.voters_outgoing, &result.learners, &result.learners_next}) {
    configured.insert(ids->begin(), ids->end());
  }
  auto records = batch->ScanMeta(kMemberMetaPrefix);
  CHECK_MSG(records.ok(), "node: reading members: {}", records.status().ToString());
  for (const auto& [name, value] : *records) {
    serverpb::MemberRecord rec;
    CHECK(rec.ParseFromString(value));
    if (configured.contains(rec.id())) continue;
    batch->DeleteMeta(name);
    batch->PutMeta(RemovedMetaName(rec.id()), "");
    LOG_INFO("node: member {:x} removed", rec.id());
  }
  return out;
}

Status Node::ApplyMemberAttributes(mvcc::ApplyBatch* batch, const serverpb::MemberAttributes& m) {
  const std::string name = MemberMetaName(m.id());
  ASSIGN_OR_RETURN(std::optional<std::string> existing, batch->GetMeta(name));
  // A member removed before its publication was applied: nothing to update.
  if (!existing) return Status::Ok();
  serverpb::MemberRecord rec;
  if (!rec.ParseFromString(*existing)) return Status::Corruption("node: member record " + name);
  rec.set_name(m.name());
  rec.mutable_client_urls()->CopyFrom(m.client_urls());
  batch->PutMeta(name, rec.SerializeAsString());
  return Status::Ok();
}

Status Node::ApplyMemberPeerUrls(mvcc::ApplyBatch* batch, const serverpb::MemberPeerUrls& m) {
  const std::string name = MemberMetaName(m.id());
  ASSIGN_OR_RETURN(std::optional<std::string> existing, batch->GetMeta(name));
  if (!existing) return MemberNotFound();
  serverpb::MemberRecord rec;
  if (!rec.ParseFromString(*existing)) return Status::Corruption("node: member record " + name);
  rec.mutable_peer_urls()->CopyFrom(m.peer_urls());
  batch->PutMeta(name, rec.SerializeAsString());
  return Status::Ok();
}

ApplyResult Node::ApplyAlarm(mvcc::ApplyBatch* batch, const etcdserverpb::AlarmRequest& a) {
  ApplyResult out;
  out.revision = batch->revision();
  etcdserverpb::AlarmResponse resp;
  auto current = AlarmsIn(batch->ScanMeta(kAlarmMetaPrefix));
  CHECK_MSG(current.ok(), "node: reading alarms: {}", current.status().ToString());
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
        if (!present) LOG_WARN("node: alarm NOSPACE raised by member {:x}", a.memberid());
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
      LOG_INFO("node: alarm {} of member {:x} disarmed", etcdserverpb::AlarmType_Name(a.alarm()),
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

Result<std::vector<etcdserverpb::AlarmMember>> Node::Alarms() const {
  return AlarmsIn(store_->ScanMeta(kAlarmMetaPrefix));
}

Result<std::vector<etcdserverpb::AlarmMember>> Node::AlarmsIn(
    Result<std::vector<std::pair<std::string, std::string>>> scanned) {
  ASSIGN_OR_RETURN(auto records, std::move(scanned));
  std::vector<etcdserverpb::AlarmMember> out;
  for (const auto& [name, value] : records) {
    etcdserverpb::AlarmMember m;
    if (!m.ParseFromString(value)) return Status::Corruption("node: alarm record " + name);
    out.push_back(std::move(m));
  }
  return out;
}

Status Node::ReloadAlarms() {
  ASSIGN_OR_RETURN(auto alarms, Alarms());
  bool nospace = false;
  for (const auto& a : alarms) {
    if (a.alarm() == etcdserverpb::NOSPACE) nospace = true;
  }
  nospace_alarm_.store(nospace, std::memory_order_release);
  return Status::Ok();
}

void Node::PublishConfState() {
  const auto& l = conf_state_.learners;
  is_learner_.store(std::find(l.begin(), l.end(), options_.member_id) != l.end(),
                    std::memory_order_release);
}

void Node::PublishProgress() {
  std::map<uint64_t, PeerProgress> progress;
  uint64_t last = 0;
  if (raft_->role() == raft::Role::kLeader) {
    // The core's recent_active flag is cleared at every quorum check; a peer
    // counts as active if it answered within two election timeouts.
    const auto now = SteadyClock::now();
    const auto window = 2 * options_.tick_interval * options_.election_ticks;
    for (const auto& [id, pr] : raft_->tracker().progress()) {
      if (id == options_.member_id) continue;
      if (pr.recent_active && pr.match > 0) last_active_[id] = now;
      auto seen = last_active_.find(id);
      const bool active = seen != last_active_.end() && now - seen->second < window;
      progress[id] = PeerProgress{pr.match, active, pr.is_learner};
    }
    last = raft_->log().LastIndex();
  } else {
    last_active_.clear();
  }
  std::lock_guard<std::mutex> lock(progress_mu_);
  progress_ = std::move(progress);
  leader_last_index_ = last;
}

std::map<uint64_t, PeerProgress> Node::PeersProgress() const {
  std::lock_guard<std::mutex> lock(progress_mu_);
  return progress_;
}

uint64_t Node::LeaderLastIndex() const {
  std::lock_guard<std::mutex> lock(progress_mu_);
  return leader_last_index_;
}

Status Node::TransferLeadership(uint64_t transferee) {
  if (!is_leader()) return Status::FailedPrecondition("etcdserver: not leader");
  if (transferee == member_id()) return Status::Ok();
  const auto deadline = SteadyClock::now() + options_.request_timeout;
  {
    std::lock_guard<std::mutex> lock(inbox_mu_);
    if (stopping_) return Status::Unavailable("etcdserver: server stopped");
    inbox_transfers_.push_back(transferee);
  }
  inbox_cv_.notify_one();
  while (leader() != transferee) {
    if (stopping()) return Status::Unavailable("etcdserver: server stopped");
    if (SteadyClock::now() >= deadline) {
      return Status::Unavailable("etcdserver: request timed out, leader transfer took too long");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return Status::Ok();
}

}  // namespace conclave::server
