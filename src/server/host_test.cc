// Host and Replica driven by hand (manual mode) on the in-memory engine and
// file system: request identity across restarts, group commit across
// groups, quiescence.
#include "server/host.h"

#include <gtest/gtest.h>

#include <atomic>
#include <optional>
#include <thread>

#include "server/etcd_group.h"
#include "server/etcd_state_machine.h"
#include "storage/storage.h"

namespace conclave::server {
namespace {

// A network with nobody on it: single-member groups send nothing.
class NoNetwork final : public MessageSender {
 public:
  void Send(uint64_t, std::vector<raft::Message>) override {}
  void SendSnapshot(uint64_t, raft::Message) override {}
  void Ping(uint64_t) override {}
};

class HostTest : public ::testing::Test {
 protected:
  // Opens the host and one single-member etcd group per id in `groups`.
  void Open(std::vector<raft::GroupId> groups = {1}, bool quiesce = false) {
    HostOptions o = host_options_;
    o.data_dir = "/node";
    o.node_id = 7;
    o.manual = true;
    o.tick_interval = std::chrono::milliseconds(10);
    o.bugs = bugs_;
    auto host = Host::Open(o, HostEnv{.clock = &clock_, .fs = &fs_, .engine = &engine_});
    ASSERT_TRUE(host.ok()) << host.status().ToString();
    host_ = std::move(*host);
    for (raft::GroupId g : groups) {
      EtcdStateMachineOptions so;
      so.group = g;
      serverpb::MemberRecord self;
      self.set_id(7);
      so.initial_members.push_back(self);
      auto sm = EtcdStateMachine::Open(&engine_, &fs_, clock_, so);
      ASSERT_TRUE(sm.ok()) << sm.status().ToString();
      sms_[g] = sm->get();
      ReplicaOptions ro;
      ro.group = g;
      ro.replica_id = 7;
      ro.bootstrap_voters = {7};
      ro.quiesce = quiesce;
      ro.election_ticks = 5;
      if (auto it = snapshot_counts_.find(g); it != snapshot_counts_.end())
        ro.snapshot_count = it->second;
      auto r = host_->AddReplica(ro, std::move(*sm));
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      replicas_[g] = *r;
    }
    host_->Start(&network_);
  }

  // Drops the host as a crash would: nothing unsynced survives.
  void Crash() {
    host_->Stop();
    replicas_.clear();
    sms_.clear();
    host_.reset();
    fs_.Crash();
    SeededRandom rnd(1);
    engine_.Crash(rnd);
  }

  // Runs the driver and the log writer (not the apply thread) until idle.
  void RunWithoutApply() {
    for (int i = 0; i < 100; ++i) {
      bool did = host_->RunDriver();
      did = host_->RunLogWrite() || did;
      did = host_->RunLogSync() || did;
      if (!did) return;
    }
  }
  void RunAll() {
    for (int i = 0; i < 100; ++i) {
      RunWithoutApply();
      if (!host_->RunApply() && !host_->PendingWork().driver) return;
    }
  }
  // Advances time by ticks until group `g` has a leader.
  void ElectLeaders() {
    for (int i = 0; i < 200; ++i) {
      bool all = true;
      for (auto& [g, r] : replicas_)
        all = all && r->is_leader();
      if (all) return;
      clock_.Advance(std::chrono::milliseconds(10));
      RunAll();
    }
    FAIL() << "no leader";
  }

  static std::string PutCommand(const std::string& key, const std::string& value) {
    serverpb::Command c;
    c.mutable_put()->set_key(key);
    c.mutable_put()->set_value(value);
    return c.SerializeAsString();
  }

  NodeBugs bugs_;
  HostOptions host_options_;
  std::map<raft::GroupId, uint64_t> snapshot_counts_;
  SimClock clock_;
  storage::FaultInjectionFileSystem fs_{5};
  storage::MemEngine engine_;
  NoNetwork network_;
  std::unique_ptr<Host> host_;
  std::map<raft::GroupId, std::shared_ptr<Replica>> replicas_;
  std::map<raft::GroupId, EtcdStateMachine*> sms_;
};

// What a proposal's callback received.
struct Outcome {
  std::optional<Result<std::any>> result;
  int64_t revision() const {
    const ApplyResult* r = std::any_cast<ApplyResult>(&result->value());
    return r == nullptr ? -1 : r->revision;
  }
};

// An entry proposed before a restart and applied after it must not complete
// a request of the new incarnation: request ids start again at 1 on every
// start, and only the boot epoch tells the two apart.
TEST_F(HostTest, EntriesOfAnEarlierIncarnationCompleteNothing) {
  Open();
  ElectLeaders();
  const uint64_t first_epoch = host_->epoch();
  Outcome before;
  replicas_[1]->ProposeAsync(PutCommand("a", "old"),
                             [&](Result<std::any> r) { before.result = r; });
  // Durable and committed (one member), never applied: the crash comes first.
  RunWithoutApply();
  Crash();
  EXPECT_TRUE(before.result.has_value() && !before.result->ok());  // stopped: outcome unknown

  Open();
  EXPECT_GT(host_->epoch(), first_epoch);
  Outcome after;
  replicas_[1]->ProposeAsync(PutCommand("b", "new"), [&](Result<std::any> r) { after.result = r; });
  ElectLeaders();
  RunAll();
  ASSERT_TRUE(after.result.has_value());
  ASSERT_TRUE(after.result->ok()) << after.result->status().ToString();
  // The old entry ("a") was applied first, at revision 2; the new request's
  // answer is its own put's revision, 3.
  EXPECT_EQ(after.revision(), 3);
  mvcc::RangeRequest get;
  get.key = "a";
  EXPECT_EQ(sms_[1]->Range(get)->kvs.size(), 1u);
}

TEST_F(HostTest, WithoutTheEpochTheOldEntryAnswersTheNewRequest) {
  // The planted bug is the old behaviour: the test above would fail with it.
  bugs_.reuse_request_ids = true;
  Open();
  ElectLeaders();
  replicas_[1]->ProposeAsync(PutCommand("a", "old"), [](Result<std::any>) {});
  RunWithoutApply();
  Crash();
  Open();
  Outcome after;
  replicas_[1]->ProposeAsync(PutCommand("b", "new"), [&](Result<std::any> r) { after.result = r; });
  ElectLeaders();
  RunAll();
  ASSERT_TRUE(after.result.has_value() && after.result->ok());
  EXPECT_EQ(after.revision(), 2);  // "a"'s revision: the wrong answer
}

TEST_F(HostTest, OneLogWriteCarriesTheEntriesOfManyGroups) {
  Open({1, 2, 3, 4});
  ElectLeaders();
  const HostStats before = host_->stats();
  int done = 0;
  for (auto& [g, r] : replicas_)
    r->ProposeAsync(PutCommand("k", "v"), [&](Result<std::any> res) { done += res.ok(); });
  RunAll();
  EXPECT_EQ(done, 4);
  const HostStats after = host_->stats();
  EXPECT_EQ(after.log_write_groups_max, 4u);
  // Each log write syncs once; the four proposals' entries needed one (the
  // commit index that followed needs none).
  EXPECT_EQ(after.wal_syncs - before.wal_syncs, 1u);
}

TEST_F(HostTest, ACommitIndexAloneWaitsForNoSync) {
  Open();
  ElectLeaders();
  const HostStats before = host_->stats();
  Outcome put;
  replicas_[1]->ProposeAsync(PutCommand("k", "v"), [&](Result<std::any> r) { put.result = r; });
  RunAll();
  ASSERT_TRUE(put.result.has_value() && put.result->ok());
  // One sync for the entry; the Ready that only moved the commit index
  // was applied without a second one.
  EXPECT_EQ(host_->stats().wal_syncs - before.wal_syncs, 1u);
  // The commit index that was never synced is not needed after a crash:
  // the entry is committed again and applied once.
  Crash();
  Open();
  ElectLeaders();
  RunAll();
  mvcc::RangeRequest get;
  get.key = "k";
  auto got = sms_[1]->Range(get);
  ASSERT_TRUE(got.ok());
  ASSERT_EQ(got->kvs.size(), 1u);
  EXPECT_EQ(got->kvs[0].value, "v");
  EXPECT_EQ(got->kvs[0].version, 1);
}

TEST_F(HostTest, IdleGroupsQuiesceAndWakeForAProposal) {
  Open({2, 3}, /*quiesce=*/true);
  ElectLeaders();
  for (int i = 0; i < 5; ++i) {
    clock_.Advance(std::chrono::milliseconds(10));
    RunAll();
  }
  EXPECT_EQ(host_->stats().replicas_quiesced, 2u);
  Outcome out;
  replicas_[2]->ProposeAsync(PutCommand("k", "v"), [&](Result<std::any> r) { out.result = r; });
  RunAll();
  ASSERT_TRUE(out.result.has_value());
  EXPECT_TRUE(out.result->ok()) << out.result->status().ToString();
  // Group 3 stayed asleep; group 2 quiesces again once idle.
  EXPECT_TRUE(replicas_[3]->stats().quiesced);
  for (int i = 0; i < 5; ++i) {
    clock_.Advance(std::chrono::milliseconds(10));
    RunAll();
  }
  EXPECT_TRUE(replicas_[2]->stats().quiesced);
}

// A group that wrote once and went idle keeps its entries in the oldest WAL
// segment; without help it would keep every later segment too. Past
// wal_segments_max the host makes it compact, and the segments go.
TEST_F(HostTest, AnIdleGroupDoesNotPinOldSegments) {
  host_options_.wal.segment_bytes_target = 4096;
  host_options_.wal.preallocate = false;
  host_options_.wal_segments_max = 3;
  snapshot_counts_ = {{1, 20}, {2, 1'000'000}};
  Open({1, 2});
  ElectLeaders();
  replicas_[2]->ProposeAsync(PutCommand("idle", "once"), [](Result<std::any>) {});
  RunAll();
  size_t most = 0;
  for (int i = 0; i < 300; ++i) {
    replicas_[1]->ProposeAsync(PutCommand("busy", std::string(200, 'x')), [](Result<std::any>) {});
    clock_.Advance(std::chrono::milliseconds(10));
    RunAll();
    most = std::max(most, host_->stats().wal_segments);
  }
  EXPECT_LE(most, 5u);
  EXPECT_GT(sms_[1]->CurrentRevision(), 250);  // the writes happened
  EXPECT_GT(host_->stats().wal_segments_removed, 3u);
  // Group 2 lost nothing to the compaction it was made to do.
  Crash();
  Open({1, 2});
  mvcc::RangeRequest get;
  get.key = "idle";
  EXPECT_EQ(sms_[2]->Range(get)->kvs.size(), 1u);
}

// A follower can apply a revoke and answer for it before the leader applies
// it. The leader's lessor answers TTL queries, so it first applies what it
// knows committed: asked between commit and apply, it waits and then says
// the lease is gone, instead of reporting it alive.
TEST_F(HostTest, TheLeadersLeaseAnswersWaitForWhatItKnowsCommitted) {
  Open();
  ElectLeaders();
  EtcdGroup group(host_.get(), replicas_[1], sms_[1], 1);
  serverpb::Command grant;
  grant.mutable_lease_grant()->set_id(42);
  grant.mutable_lease_grant()->set_ttl(100);
  Outcome granted;
  replicas_[1]->ProposeAsync(grant.SerializeAsString(),
                             [&](Result<std::any> r) { granted.result = r; });
  RunAll();
  ASSERT_TRUE(granted.result.has_value() && granted.result->ok());
  ASSERT_TRUE(group.LeaseTimeToLive(42, false).ok());

  serverpb::Command revoke;
  revoke.mutable_lease_revoke()->set_id(42);
  replicas_[1]->ProposeAsync(revoke.SerializeAsString(), [](Result<std::any>) {});
  RunWithoutApply();  // committed, not applied
  std::atomic<bool> answered{false};
  Result<lease::TimeToLiveResult> ttl = Status::Internal("not asked");
  std::thread asker([&] {
    ttl = group.LeaseTimeToLive(42, false);
    answered = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(answered.load());
  // Apply, and serve the read round a lease not found looks behind.
  for (int i = 0; i < 400 && !answered.load(); ++i) {
    RunAll();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  asker.join();
  ASSERT_FALSE(ttl.ok());
  EXPECT_EQ(ttl.status().message(), lease::errors::kLeaseNotFound);
}

}  // namespace
}  // namespace conclave::server
