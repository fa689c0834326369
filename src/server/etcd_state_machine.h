// EtcdStateMachine: the etcd keyspace as a StateMachine: the MVCC store with
// etcd's semantics (one dense revision counter), its watch hub, the lessor,
// and the cluster's own records (members, removed ids, alarms), all in the
// host's engine under the etcd group's prefix (docs/MVCC.md).
//
// Commands are serverpb.Command messages. Applying one is deterministic:
// lease existence, the NOSPACE alarm and member records are read from the
// state as the batch leaves it, never from anything local. Results are
// ApplyResult values (in the std::any the replica hands back).
//
// The leader's lessor keeps lease deadlines (the only clock-dependent part):
// Tick proposes the revocation of expired leases and checkpoints of the
// remaining TTLs; OnLeaderChange promotes and demotes the lessor.
//
// Application metadata kept in the store (mvcc::ApplyBatch::PutMeta): the
// group's Raft configuration, one record per lease, per member, per removed
// member (a removed id never returns) and per alarm.
//
// Thread-safety: Apply, Bootstrap and InstallSnapshot on the apply thread;
// Tick and OnLeaderChange on the driver; every reader is thread-safe.
#pragma once

#include <any>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "base/clock.h"
#include "base/status.h"
#include "conclave/serverpb/server.pb.h"
#include "lease/lessor.h"
#include "mvcc/mvcc.h"
#include "server/state_machine.h"
#include "storage/storage.h"

namespace conclave::server {

// The etcd keyspace's group id. (The simulator runs more etcd state
// machines under other group ids, each in its own part of the engine.)
inline constexpr raft::GroupId kEtcdGroup = 1;

inline constexpr std::string_view kConfStateMeta = "raft/conf_state";
inline constexpr std::string_view kLeaseMetaPrefix = "lease/";
inline constexpr std::string_view kMemberMetaPrefix = "member/";
inline constexpr std::string_view kRemovedMetaPrefix = "removed/";
inline constexpr std::string_view kAlarmMetaPrefix = "alarm/";
std::string MemberMetaName(uint64_t id);

// What applying one command produced.
struct ApplyResult {
  Status status;
  int64_t revision = 0;  // the store's revision after the command
  std::variant<std::monostate, mvcc::PutResponse, mvcc::DeleteRangeResponse, mvcc::TxnResponse,
               lease::GrantResult, etcdserverpb::AlarmResponse>
      response;
};

struct EtcdStateMachineOptions {
  raft::GroupId group = kEtcdGroup;
  // The members of a new cluster (written by Bootstrap), all voters.
  std::vector<serverpb::MemberRecord> initial_members;
  // Lease checkpoints: every interval the leader records the remaining TTL
  // of its leases (up to lease_checkpoint_leases_max per round), so a new
  // leader is at most one interval generous.
  std::chrono::milliseconds lease_checkpoint_interval{1000};
  size_t lease_checkpoint_leases_max = 1000;
  int64_t lease_min_ttl_seconds = 2;
  // Test-only: the store writes the applied index in a batch of its own.
  bool test_bug_applied_index_apart = false;
};

// "etcdserver: member not found".
Status MemberNotFound();
// Whether a txn may put, in either branch (nested txns included): what the
// NOSPACE alarm refuses. Reads and deletes stay allowed, as with etcd.
bool TxnPuts(const etcdserverpb::TxnRequest& txn);

class EtcdStateMachine final : public StateMachine {
 public:
  // Opens the etcd keyspace in `engine`. `snapshot_fs` holds received images.
  static Result<std::unique_ptr<EtcdStateMachine>> Open(storage::Engine* engine,
                                                        storage::FileSystem* snapshot_fs,
                                                        Clock& clock,
                                                        const EtcdStateMachineOptions& options);
  ~EtcdStateMachine() override;

  // ---- StateMachine ----
  uint64_t AppliedIndex() const override { return store_->AppliedIndex(); }
  uint64_t AppliedTerm() const override { return store_->AppliedTerm(); }
  Result<raft::ConfState> AppliedConfState() const override;
  Status Bootstrap(const raft::ConfState& conf_state) override;
  Status Apply(std::span<const CommittedEntry> entries, std::vector<std::any>* results) override;
  Status Sync() override { return store_->Sync(); }
  Result<std::unique_ptr<SnapshotSource>> NewSnapshot() override;
  Status InstallSnapshot(const std::string& path) override;
  void OnLeaderChange(bool is_leader) override;
  void Tick(std::vector<std::string>* proposals) override;
  // The leader's lessor needs ticks while any lease lives.
  bool Quiescable() const override { return lessor_->Leases().empty(); }

  // ---- readers for the etcd front end (any thread) ----
  Result<mvcc::RangeResponse> Range(const mvcc::RangeRequest& r) const { return store_->Range(r); }
  Result<uint32_t> Hash() const { return store_->Hash(); }
  Result<mvcc::KvHash> HashKV(int64_t revision) const { return store_->HashKV(revision); }
  int64_t CurrentRevision() const { return store_->CurrentRevision(); }
  int64_t CompactRevision() const { return store_->CompactRevision(); }
  // Changes with revisions in [from, to] (see mvcc::Store::Events).
  Result<std::vector<mvcc::Event>> Events(int64_t from, int64_t to) const {
    return store_->Events(from, to, 0);
  }
  // The store as of now, in chunks (Maintenance.Snapshot).
  Result<std::unique_ptr<mvcc::SnapshotWriter>> NewImage(size_t chunk_bytes) const;
  mvcc::WatchHub* hub() const { return hub_.get(); }

  // Leases: keep-alive and TTL queries are answered by the leader's lessor.
  Result<int64_t> RenewLease(lease::LeaseId id) { return lessor_->Renew(id); }
  Result<lease::TimeToLiveResult> LeaseTimeToLive(lease::LeaseId id, bool with_keys) const;
  std::vector<lease::LeaseId> Leases() const { return lessor_->Leases(); }
  Status ValidateLeaseGrant(int64_t ttl_seconds) const {
    return lessor_->ValidateGrant(ttl_seconds);
  }

  // The members as applied here, in id order.
  Result<std::vector<serverpb::MemberRecord>> Members() const;
  bool IsRemoved(uint64_t id) const;
  Result<std::vector<etcdserverpb::AlarmMember>> Alarms() const;
  bool NoSpaceAlarm() const { return nospace_alarm_.load(std::memory_order_acquire); }

  // Called on the apply thread after member records changed (a conf change
  // or a published attribute applied, a snapshot installed). Set before the
  // host starts.
  void SetMembershipObserver(std::function<void()> observer) {
    membership_observer_ = std::move(observer);
  }

 private:
  EtcdStateMachine(storage::Engine* engine, storage::FileSystem* fs, Clock& clock,
                   const EtcdStateMachineOptions& options);
  Status Load();

  ApplyResult ApplyCommand(mvcc::ApplyBatch* batch, const serverpb::Command& command);
  Status CheckLeases(const serverpb::Command& command) const;
  void TrackLeaseAttachments(const std::vector<mvcc::Event>& events, size_t from);
  Status ReloadLessor();
  // etcd_members.cc
  ApplyResult ApplyConfChange(mvcc::ApplyBatch* batch, const CommittedEntry& e);
  Status ApplyMemberAttributes(mvcc::ApplyBatch* batch, const serverpb::MemberAttributes& m);
  Status ApplyMemberPeerUrls(mvcc::ApplyBatch* batch, const serverpb::MemberPeerUrls& m);
  ApplyResult ApplyAlarm(mvcc::ApplyBatch* batch, const etcdserverpb::AlarmRequest& a);
  static Result<std::vector<etcdserverpb::AlarmMember>> AlarmsIn(
      Result<std::vector<std::pair<std::string, std::string>>> scanned);
  Status ReloadRemoved();
  Status ReloadAlarms();

  storage::Engine* engine_;
  storage::FileSystem* fs_;
  Clock& clock_;
  const EtcdStateMachineOptions options_;
  std::unique_ptr<mvcc::Store> store_;
  std::unique_ptr<mvcc::WatchHub> hub_;
  std::unique_ptr<lease::Lessor> lessor_;
  Duration next_checkpoint_{0};  // driver thread

  std::atomic<bool> nospace_alarm_{false};
  mutable std::mutex removed_mu_;
  std::set<uint64_t> removed_ids_;  // guarded by removed_mu_
  std::function<void()> membership_observer_;
};

}  // namespace conclave::server
