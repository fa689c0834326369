// EtcdGroup: the etcd keyspace's Raft group as the etcd API sees it: the
// replica this host runs of it and its state machine, with typed commands.
//
// The api layer (src/api) reaches the replicated store only through this
// class: proposals are serverpb.Command messages and come back as
// ApplyResult values; reads go through the state machine's readers; the
// engine's size and defragmentation through the host. It holds the small
// amount of per-member state the etcd front end needs (the random source
// for lease ids, the serialization of membership changes, the NOSPACE
// raise in flight), so nothing of it lives in function-local statics.
//
// Thread-safety: every method is thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "base/random.h"
#include "base/status.h"
#include "conclave/serverpb/server.pb.h"
#include "server/etcd_state_machine.h"
#include "server/host.h"
#include "server/replica.h"

namespace conclave::server {

// Calls that only the leader can answer, as the transport carries them from
// a follower to the leader.
class LeaderCalls {
 public:
  virtual ~LeaderCalls() = default;
  virtual Result<int64_t> ForwardLeaseRenew(uint64_t leader, lease::LeaseId id) = 0;
  virtual Status ForwardLeaseTimeToLive(uint64_t leader,
                                        const etcdserverpb::LeaseTimeToLiveRequest& req,
                                        etcdserverpb::LeaseTimeToLiveResponse* resp) = 0;
  virtual Result<serverpb::MembershipResponse> ForwardMembership(
      uint64_t leader, const serverpb::MembershipRequest& req) = 0;
};

class EtcdGroup {
 public:
  EtcdGroup(Host* host, std::shared_ptr<Replica> replica, EtcdStateMachine* sm,
            uint64_t cluster_id);

  // Proposes `command` and waits until this member has applied it.
  // kDeadlineExceeded with etcd's "request timed out" when that takes
  // longer than the request timeout.
  Result<ApplyResult> Propose(serverpb::Command command);
  // The same without blocking: `done` runs exactly once (see
  // Replica::ProposeAsync); it must not block.
  void ProposeAsync(serverpb::Command command, std::function<void(Result<ApplyResult>)> done);
  Status ReadBarrier() { return replica_->ReadBarrier(); }
  void ReadBarrierAsync(std::function<void(Status)> done) {
    replica_->ReadBarrierAsync(std::move(done));
  }

  // Reads of the store.
  Result<mvcc::RangeResponse> Range(const mvcc::RangeRequest& r) const { return sm_->Range(r); }
  Result<uint32_t> Hash() const { return sm_->Hash(); }
  Result<mvcc::KvHash> HashKV(int64_t revision) const { return sm_->HashKV(revision); }
  int64_t CurrentRevision() const { return sm_->CurrentRevision(); }
  int64_t CompactRevision() const { return sm_->CompactRevision(); }
  Result<std::unique_ptr<mvcc::SnapshotWriter>> NewImage(size_t chunk_bytes) const {
    return sm_->NewImage(chunk_bytes);
  }
  mvcc::WatchHub* hub() const { return sm_->hub(); }
  // The engine's size (etcd's dbSize), and its defragmentation.
  int64_t StoreBytes() const;
  Status Defragment();
  // Raises the NOSPACE alarm through the log unless a raise is in flight.
  void RaiseNoSpaceAlarm();

  // Leases: keep-alive and TTL queries are answered by the leader's lessor;
  // on a follower they return kNotLeader and the api layer forwards them.
  // A follower may apply a grant or revoke, and answer for it, before the
  // leader has: the leader first applies what it knows committed, and looks
  // up a lease it does not know once more after a read round.
  Result<int64_t> RenewLease(lease::LeaseId id);
  Result<lease::TimeToLiveResult> LeaseTimeToLive(lease::LeaseId id, bool with_keys);
  std::vector<lease::LeaseId> Leases() const { return sm_->Leases(); }
  Status ValidateLeaseGrant(int64_t ttl_seconds) const {
    return sm_->ValidateLeaseGrant(ttl_seconds);
  }
  // A fresh random lease id (positive), for grants that leave it to the server.
  int64_t NewLeaseId();
  // How a follower reaches the leader; set before the front end serves.
  void SetLeaderCalls(LeaderCalls* calls) { leader_calls_ = calls; }
  LeaderCalls* leader_calls() const { return leader_calls_; }

  // Membership.
  Result<std::vector<serverpb::MemberRecord>> Members() const { return sm_->Members(); }
  bool IsRemoved(uint64_t id) const { return sm_->IsRemoved(id); }
  // Proposes a membership change (joint consensus underneath: the group
  // enters a joint configuration and leaves it automatically) carrying
  // `member` as its context, and waits until the joint configuration is
  // left here. A change still in flight is waited for first.
  Status ProposeMembership(raft::ConfChangeType type, const serverpb::MemberRecord& member);
  // Carries out a MemberAdd/Remove/Update/Promote on the leader
  // (membership.cc: etcd's checks, then the change through the log).
  Result<serverpb::MembershipResponse> ChangeMembership(const serverpb::MembershipRequest& req);
  // Held while one membership change is checked and carried out.
  std::mutex& membership_mu() { return membership_mu_; }
  std::map<uint64_t, PeerProgress> PeersProgress() const { return replica_->PeersProgress(); }
  uint64_t LeaderLastIndex() const { return replica_->LeaderLastIndex(); }
  Status TransferLeadership(uint64_t transferee) {
    return replica_->TransferLeadership(transferee);
  }

  Result<std::vector<etcdserverpb::AlarmMember>> Alarms() const { return sm_->Alarms(); }
  bool NoSpaceAlarm() const { return sm_->NoSpaceAlarm(); }

  uint64_t member_id() const { return replica_->replica_id(); }
  uint64_t cluster_id() const { return cluster_id_; }
  uint64_t term() const { return replica_->term(); }
  uint64_t leader() const { return replica_->leader(); }
  bool is_leader() const { return replica_->is_leader(); }
  // A learner as the configuration applied here says; before any is (a
  // member that joined and awaits its first snapshot), as the cluster said
  // when it joined.
  bool is_learner() const {
    return replica_->is_learner() || (joined_as_learner_ && replica_->applied_index() == 0);
  }
  void SetJoinedAsLearner(bool learner) { joined_as_learner_ = learner; }
  bool stopping() const { return replica_->stopping() || host_->stopping(); }
  ReplicaStats stats() const { return replica_->stats(); }
  HostStats host_stats() const { return host_->stats(); }
  // Where received snapshot images go (the transport's receiver).
  Host* host() const { return host_; }

 private:
  Host* host_;
  std::shared_ptr<Replica> replica_;
  EtcdStateMachine* sm_;
  const uint64_t cluster_id_;
  std::mutex membership_mu_;
  std::mutex random_mu_;
  RealRandom random_;  // guarded by random_mu_
  std::atomic<bool> raising_nospace_{false};
  LeaderCalls* leader_calls_ = nullptr;
  bool joined_as_learner_ = false;  // set before serving
};

}  // namespace conclave::server
