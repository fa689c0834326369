#include "server/etcd_group.h"

#include <algorithm>
#include <utility>

#include "base/logging.h"

namespace conclave::server {

namespace {

// The state machine's result for a command, or why there is none.
Result<ApplyResult> ToApplyResult(Result<std::any> r) {
  if (!r.ok()) return r.status();
  ApplyResult* applied = std::any_cast<ApplyResult>(&r.value());
  if (applied == nullptr) return Status::Internal("etcd: the command produced no result");
  return std::move(*applied);
}

bool LeaseNotFound(const Status& s) {
  return s.code() == StatusCode::kNotFound && s.message() == lease::errors::kLeaseNotFound;
}

}  // namespace

EtcdGroup::EtcdGroup(Host* host, std::shared_ptr<Replica> replica, EtcdStateMachine* sm,
                     uint64_t cluster_id)
    : host_(host), replica_(std::move(replica)), sm_(sm), cluster_id_(cluster_id) {}

Result<ApplyResult> EtcdGroup::Propose(serverpb::Command command) {
  return ToApplyResult(replica_->Propose(command.SerializeAsString()));
}

void EtcdGroup::ProposeAsync(serverpb::Command command,
                             std::function<void(Result<ApplyResult>)> done) {
  replica_->ProposeAsync(command.SerializeAsString(), [done = std::move(done)](Result<std::any> r) {
    done(ToApplyResult(std::move(r)));
  });
}

int64_t EtcdGroup::StoreBytes() const {
  return static_cast<int64_t>(host_->engine()->ApproximateBytes());
}

Status EtcdGroup::Defragment() {
  return host_->engine()->Compact();
}

void EtcdGroup::RaiseNoSpaceAlarm() {
  // One request raises it; the others meanwhile are refused at once.
  if (raising_nospace_.exchange(true)) return;
  serverpb::Command c;
  c.mutable_alarm()->set_action(etcdserverpb::AlarmRequest::ACTIVATE);
  c.mutable_alarm()->set_memberid(member_id());
  c.mutable_alarm()->set_alarm(etcdserverpb::NOSPACE);
  (void)Propose(std::move(c));
  raising_nospace_.store(false);
}

// The leader serves renewals and TTLs from its lessor, which may not yet
// have applied a grant or revoke another member already answered for; so it
// first applies what it knows committed (as etcd's waitAppliedIndex). Just
// after an election the commit index can lag too: a lease not found is
// looked up once more behind a ReadIndex round.
Result<int64_t> EtcdGroup::RenewLease(lease::LeaseId id) {
  // Should applying lag past the request timeout, the answer is the
  // lessor's as it stands (a keep-alive stream is not ended for it).
  if (is_leader()) (void)replica_->AwaitApplied();
  Result<int64_t> ttl = sm_->RenewLease(id);
  if (!ttl.ok() && LeaseNotFound(ttl.status()) && ReadBarrier().ok()) {
    ttl = sm_->RenewLease(id);
  }
  return ttl;
}

Result<lease::TimeToLiveResult> EtcdGroup::LeaseTimeToLive(lease::LeaseId id, bool with_keys) {
  if (is_leader()) (void)replica_->AwaitApplied();
  Result<lease::TimeToLiveResult> r = sm_->LeaseTimeToLive(id, with_keys);
  if (!r.ok() && LeaseNotFound(r.status()) && ReadBarrier().ok()) {
    r = sm_->LeaseTimeToLive(id, with_keys);
  }
  return r;
}

int64_t EtcdGroup::NewLeaseId() {
  std::lock_guard<std::mutex> lock(random_mu_);
  int64_t id = 0;
  while (id <= 0)
    id = static_cast<int64_t>(random_.Next() >> 1);
  return id;
}

Status EtcdGroup::ProposeMembership(raft::ConfChangeType type,
                                    const serverpb::MemberRecord& member) {
  auto not_joint = [](const raft::ConfState& cs) { return cs.voters_outgoing.empty(); };
  while (true) {
    // Proposed anywhere but on the leader, a refused change would be lost
    // silently (the core forwards it): membership runs on the leader only.
    if (!is_leader()) return Status::Unavailable("etcdserver: leader changed");
    serverpb::MemberChange change;
    *change.mutable_member() = member;
    raft::ConfChange cc;
    // Joint consensus even for one member: the core enters the joint
    // configuration and leaves it on its own once that is applied.
    cc.transition = raft::ConfChangeTransition::kJointImplicit;
    cc.changes.push_back(raft::ConfChangeSingle{type, member.id()});
    Result<std::any> r = replica_->ProposeConfChange(std::move(cc), change.SerializeAsString());
    if (!r.ok() && r.status().reason() == ErrorReason::kConfChangeInProgress) {
      // The previous change (or the automatic leave of its joint
      // configuration) is still in flight: wait until a change applies, then
      // try again. The wait ends at the request timeout at the latest.
      const uint64_t applied_before = replica_->applied_index();
      RETURN_IF_ERROR(replica_->AwaitConfState([&](const raft::ConfState& cs) {
        return !is_leader() || (not_joint(cs) && replica_->applied_index() > applied_before);
      }));
      continue;
    }
    ASSIGN_OR_RETURN(ApplyResult applied, ToApplyResult(std::move(r)));
    RETURN_IF_ERROR(applied.status);
    // Done once the joint configuration is left too (a removed member is
    // gone from the records only then).
    return replica_->AwaitConfState(not_joint);
  }
}

}  // namespace conclave::server
