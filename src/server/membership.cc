#include "server/membership.h"

#include <algorithm>
#include <chrono>
#include <mutex>
#include <set>

#include "base/logging.h"
#include "server/config.h"
#include "server/transport.h"

namespace conclave::server {

namespace {

Status NotEnoughStarted() {
  return Status::FailedPrecondition(
      "etcdserver: re-configuration failed due to not enough started members");
}

Status CheckUrls(const google::protobuf::RepeatedPtrField<std::string>& urls) {
  if (urls.empty()) return Status::InvalidArgument("etcdserver: given member URLs are invalid");
  for (const std::string& u : urls) {
    if (!GrpcTarget(u).ok())
      return Status::InvalidArgument("etcdserver: given member URLs are invalid");
  }
  return Status::Ok();
}

// Whether another member than `except` already uses one of `urls`.
bool UrlsTaken(const std::vector<serverpb::MemberRecord>& members,
               const google::protobuf::RepeatedPtrField<std::string>& urls, uint64_t except) {
  for (const auto& m : members) {
    if (m.id() == except) continue;
    for (const std::string& u : m.peer_urls()) {
      if (std::find(urls.begin(), urls.end(), u) != urls.end()) return true;
    }
  }
  return false;
}

const serverpb::MemberRecord* Find(const std::vector<serverpb::MemberRecord>& members,
                                   uint64_t id) {
  for (const auto& m : members) {
    if (m.id() == id) return &m;
  }
  return nullptr;
}

// Voters that are started: the leader and the voters it heard from lately.
size_t StartedVoters(EtcdGroup* etcd, const std::vector<serverpb::MemberRecord>& members,
                     uint64_t except) {
  const auto progress = etcd->PeersProgress();
  size_t started = 0;
  for (const auto& m : members) {
    if (m.is_learner() || m.id() == except) continue;
    if (m.id() == etcd->member_id()) {
      ++started;
      continue;
    }
    auto it = progress.find(m.id());
    if (it != progress.end() && it->second.recent_active) ++started;
  }
  return started;
}

size_t Voters(const std::vector<serverpb::MemberRecord>& members) {
  return static_cast<size_t>(
      std::count_if(members.begin(), members.end(), [](const auto& m) { return !m.is_learner(); }));
}

Result<uint64_t> NewMemberId(EtcdGroup* etcd, const serverpb::MemberRecord& m,
                             const std::vector<serverpb::MemberRecord>& members) {
  std::vector<std::string> urls(m.peer_urls().begin(), m.peer_urls().end());
  std::sort(urls.begin(), urls.end());
  // Salted with the time: a member re-added at the same URL gets a new id.
  for (int attempt = 0; attempt < 16; ++attempt) {
    const auto now = std::chrono::system_clock::now().time_since_epoch().count();
    const uint64_t id = MemberId(urls, fmt::format("{:x}-{}-{}", etcd->cluster_id(), now, attempt));
    if (id == 0 || Find(members, id) != nullptr) continue;
    if (!etcd->IsRemoved(id)) return id;
  }
  return Status::Internal("etcdserver: could not pick a member id");
}

Result<serverpb::MembershipResponse> Respond(EtcdGroup* etcd, serverpb::MembershipResponse out) {
  ASSIGN_OR_RETURN(auto members, etcd->Members());
  for (auto& m : members)
    *out.add_members() = std::move(m);
  return out;
}

}  // namespace

std::map<uint64_t, std::string> PeerTargets(const std::vector<serverpb::MemberRecord>& members,
                                            uint64_t self,
                                            const std::vector<serverpb::MemberRecord>& fallback) {
  std::map<uint64_t, std::string> out;
  for (const auto& m : members) {
    if (m.id() == self) continue;
    const serverpb::MemberRecord* source = &m;
    if (m.peer_urls().empty()) {
      const auto it = std::find_if(fallback.begin(), fallback.end(),
                                   [&](const auto& f) { return f.id() == m.id(); });
      if (it == fallback.end() || it->peer_urls().empty()) continue;
      source = &*it;
    }
    auto target = GrpcTarget(source->peer_urls(0));
    if (target.ok()) out[m.id()] = *target;
  }
  return out;
}

std::vector<serverpb::MemberRecord> InitialMembers(const ServerConfig& config) {
  std::vector<serverpb::MemberRecord> out;
  for (const auto& [name, urls] : config.initial_cluster) {
    serverpb::MemberRecord m;
    m.set_id(MemberId(urls, config.initial_cluster_token));
    m.set_name(name);
    for (const std::string& u : urls)
      m.add_peer_urls(u);
    out.push_back(std::move(m));
  }
  return out;
}

Result<serverpb::MembershipResponse> ExecuteMembership(EtcdGroup* etcd,
                                                       const serverpb::MembershipRequest& req) {
  // One change at a time: each is checked against the members as the
  // previous one left them (two adds of one URL, two removals that each
  // keep a quorum, must not both pass).
  std::lock_guard<std::mutex> lock(etcd->membership_mu());
  if (!etcd->is_leader()) return Status::FailedPrecondition("etcdserver: not leader");
  ASSIGN_OR_RETURN(auto members, etcd->Members());
  serverpb::MembershipResponse out;
  switch (req.op_case()) {
    case serverpb::MembershipRequest::kAdd: {
      const auto& add = req.add();
      RETURN_IF_ERROR(CheckUrls(add.peerurls()));
      if (UrlsTaken(members, add.peerurls(), 0))
        return Status::FailedPrecondition("etcdserver: Peer URLs already exists");
      serverpb::MemberRecord m;
      m.mutable_peer_urls()->CopyFrom(add.peerurls());
      m.set_is_learner(add.islearner());
      if (add.islearner()) {
        if (std::any_of(members.begin(), members.end(),
                        [](const auto& x) { return x.is_learner(); }))
          return Status::FailedPrecondition("etcdserver: too many learner members in cluster");
      } else {
        // The new voter has not started: the started ones must be a quorum
        // of the cluster it joins (a lone member may always add a second).
        const size_t started = StartedVoters(etcd, members, 0);
        const size_t voters = Voters(members);
        if (!(voters == 1 && started == 1) && started < (voters + 1) / 2 + 1)
          return NotEnoughStarted();
      }
      ASSIGN_OR_RETURN(uint64_t id, NewMemberId(etcd, m, members));
      m.set_id(id);
      RETURN_IF_ERROR(etcd->ProposeMembership(
          add.islearner() ? raft::ConfChangeType::kAddLearner : raft::ConfChangeType::kAddVoter,
          m));
      LOG_INFO("membership: added {} {:x} at {}", add.islearner() ? "learner" : "member", id,
               m.peer_urls(0));
      *out.mutable_member() = m;
      return Respond(etcd, std::move(out));
    }
    case serverpb::MembershipRequest::kRemove: {
      const uint64_t id = req.remove().id();
      const serverpb::MemberRecord* m = Find(members, id);
      if (m == nullptr) return MemberNotFound();
      if (!m->is_learner()) {
        const size_t voters_after = Voters(members) - 1;
        if (voters_after > 0 && StartedVoters(etcd, members, id) < voters_after / 2 + 1)
          return NotEnoughStarted();
      }
      RETURN_IF_ERROR(etcd->ProposeMembership(raft::ConfChangeType::kRemoveNode, *m));
      LOG_INFO("membership: removed member {:x}", id);
      return Respond(etcd, std::move(out));
    }
    case serverpb::MembershipRequest::kUpdate: {
      const auto& update = req.update();
      if (Find(members, update.id()) == nullptr) return MemberNotFound();
      RETURN_IF_ERROR(CheckUrls(update.peerurls()));
      if (UrlsTaken(members, update.peerurls(), update.id()))
        return Status::FailedPrecondition("etcdserver: Peer URLs already exists");
      serverpb::Command c;
      c.mutable_member_peer_urls()->set_id(update.id());
      c.mutable_member_peer_urls()->mutable_peer_urls()->CopyFrom(update.peerurls());
      ASSIGN_OR_RETURN(ApplyResult r, etcd->Propose(std::move(c)));
      RETURN_IF_ERROR(r.status);
      return Respond(etcd, std::move(out));
    }
    case serverpb::MembershipRequest::kPromote: {
      const uint64_t id = req.promote().id();
      const serverpb::MemberRecord* m = Find(members, id);
      if (m == nullptr) return MemberNotFound();
      if (!m->is_learner())
        return Status::FailedPrecondition("etcdserver: can only promote a learner member");
      const auto progress = etcd->PeersProgress();
      auto it = progress.find(id);
      const uint64_t leader_index = etcd->LeaderLastIndex();
      if (it == progress.end() ||
          static_cast<double>(it->second.match) < 0.9 * static_cast<double>(leader_index)) {
        return Status::FailedPrecondition(
            "etcdserver: can only promote a learner member which is in sync with leader");
      }
      RETURN_IF_ERROR(etcd->ProposeMembership(raft::ConfChangeType::kAddVoter, *m));
      LOG_INFO("membership: promoted learner {:x}", id);
      return Respond(etcd, std::move(out));
    }
    case serverpb::MembershipRequest::OP_NOT_SET:
      break;
  }
  return Status::InvalidArgument("etcdserver: empty membership request");
}

Result<serverpb::MembershipResponse> EtcdGroup::ChangeMembership(
    const serverpb::MembershipRequest& req) {
  return ExecuteMembership(this, req);
}

}  // namespace conclave::server
