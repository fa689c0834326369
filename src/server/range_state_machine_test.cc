// A native range as a state machine, on the in-memory engine: commands,
// reads, the versions' timestamps, keys outside the range, snapshots that
// replace exactly the range's spans.
#include "server/range_state_machine.h"

#include <gtest/gtest.h>

#include "conclave/serverpb/server.pb.h"
#include "mvcc/mvcc.h"
#include "server/native_keyspace.h"
#include "storage/storage.h"

namespace conclave::server {
namespace {

std::string Put(const std::string& key, const std::string& value, uint64_t wall) {
  serverpb::RangeCommand c;
  c.set_wall_nanos(wall);
  c.mutable_put()->set_key(key);
  c.mutable_put()->set_value(value);
  return c.SerializeAsString();
}

std::string Delete(const std::string& key, uint64_t wall) {
  serverpb::RangeCommand c;
  c.set_wall_nanos(wall);
  c.mutable_delete_()->set_key(key);
  return c.SerializeAsString();
}

std::string PutIf(const std::string& key, const std::string& value, uint64_t wall,
                  const kvpb::Precondition& p) {
  serverpb::RangeCommand c;
  c.set_wall_nanos(wall);
  c.mutable_put()->set_key(key);
  c.mutable_put()->set_value(value);
  *c.mutable_put()->mutable_precondition() = p;
  return c.SerializeAsString();
}

kvpb::Precondition Absent() {
  kvpb::Precondition p;
  p.set_absent(true);
  return p;
}

kvpb::Precondition ValueIs(const std::string& v) {
  kvpb::Precondition p;
  p.set_value(v);
  return p;
}

kvpb::Precondition WrittenAt(Timestamp ts) {
  kvpb::Precondition p;
  p.mutable_timestamp()->set_wall_nanos(ts.wall_nanos);
  p.mutable_timestamp()->set_logical(ts.logical);
  return p;
}

std::string DeleteRange(const std::string& start, const std::string& end, uint64_t wall) {
  serverpb::RangeCommand c;
  c.set_wall_nanos(wall);
  c.mutable_delete_range()->set_start(start);
  c.mutable_delete_range()->set_end(end);
  return c.SerializeAsString();
}

class RangeStateMachineTest : public ::testing::Test {
 protected:
  // Two ranges over the keyspace, split at "m", on members 1, 2, 3.
  void SetUp() override {
    ranges_ = InitialRanges(2, {3, 1, 2});
    ranges_.pop_back();  // the meta range
    ranges_[0].end_key = "m";
    ranges_[1].start_key = "m";
    left_ = Open(&engine_, ranges_[0]);
    right_ = Open(&engine_, ranges_[1]);
  }

  std::unique_ptr<RangeStateMachine> Open(storage::Engine* engine, const keys::RangeDescriptor& d) {
    auto sm = RangeStateMachine::Open(engine, &fs_, d.range_id, d);
    CHECK(sm.ok());
    if ((*sm)->AppliedIndex() == 0) {
      raft::ConfState cs;
      cs.voters = {1, 2, 3};
      CHECK((*sm)->Bootstrap(cs).ok());
    }
    return std::move(*sm);
  }

  // Applies `commands` as the next entries; returns their results.
  std::vector<RangeWriteResult> Apply(RangeStateMachine* sm, std::vector<std::string> commands) {
    std::vector<CommittedEntry> entries;
    uint64_t index = sm->AppliedIndex();
    for (const std::string& c : commands)
      entries.push_back(CommittedEntry{.index = ++index, .term = 2, .command = c});
    std::vector<std::any> results(entries.size());
    CHECK(sm->Apply(entries, &results).ok());
    std::vector<RangeWriteResult> out;
    for (const std::any& r : results)
      out.push_back(std::any_cast<RangeWriteResult>(r));
    return out;
  }

  storage::MemEngine engine_;
  storage::FaultInjectionFileSystem fs_{3};
  std::vector<keys::RangeDescriptor> ranges_;
  std::unique_ptr<RangeStateMachine> left_;
  std::unique_ptr<RangeStateMachine> right_;
};

TEST_F(RangeStateMachineTest, WritesAndReadsTheNewestVersions) {
  auto r = Apply(left_.get(), {Put("a", "1", 100), Put("b", "2", 100), Put("a", "3", 50),
                               Delete("b", 10), Put("c", "4", 500)});
  for (const RangeWriteResult& w : r)
    ASSERT_TRUE(w.status.ok()) << w.status.ToString();
  // Versions only grow, whatever the proposers' clocks said.
  for (size_t i = 1; i < r.size(); ++i)
    EXPECT_LT(r[i - 1].timestamp, r[i].timestamp);
  EXPECT_EQ(r[0].timestamp, (Timestamp{100, 0}));
  EXPECT_EQ(r[1].timestamp, (Timestamp{100, 1}));
  EXPECT_EQ(r[4].timestamp, (Timestamp{500, 0}));
  auto a = left_->Get("a");
  ASSERT_TRUE(a.ok() && a->has_value());
  EXPECT_EQ((*a)->value, "3");
  EXPECT_EQ((*a)->timestamp, r[2].timestamp);
  EXPECT_FALSE(left_->Get("b")->has_value());
  EXPECT_EQ(left_->AppliedIndex(), 6u);
  bool more = false;
  auto scan = left_->Scan("", "", 10, &more);
  ASSERT_TRUE(scan.ok());
  ASSERT_EQ(scan->size(), 2u);
  EXPECT_EQ((*scan)[0].key, "a");
  EXPECT_EQ((*scan)[1].key, "c");
  EXPECT_FALSE(more);
  scan = left_->Scan("", "", 1, &more);
  EXPECT_EQ(scan->size(), 1u);
  EXPECT_TRUE(more);
}

TEST_F(RangeStateMachineTest, PreconditionsAreCheckedAsTheWriteApplies) {
  // Within one applied batch each command sees the ones before it.
  auto r = Apply(left_.get(), {PutIf("a", "1", 1, Absent()), PutIf("a", "2", 2, Absent()),
                               PutIf("a", "3", 3, ValueIs("1")), PutIf("a", "4", 4, ValueIs("1"))});
  EXPECT_TRUE(r[0].status.ok());
  EXPECT_EQ(r[1].status.code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(r[2].status.ok());
  EXPECT_EQ(r[3].status.code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ((*left_->Get("a"))->value, "3");
  const Timestamp at = r[2].timestamp;
  // In a later batch, against what the engine holds.
  r = Apply(left_.get(), {PutIf("a", "5", 5, WrittenAt(Timestamp{at.wall_nanos + 1, 0})),
                          PutIf("a", "6", 6, WrittenAt(at)), Delete("a", 7),
                          PutIf("a", "7", 8, ValueIs("6")), PutIf("a", "8", 9, Absent())});
  EXPECT_EQ(r[0].status.code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(r[1].status.ok());
  EXPECT_TRUE(r[2].status.ok());
  EXPECT_EQ(r[2].deleted, 1u);
  EXPECT_EQ(r[3].status.code(), StatusCode::kFailedPrecondition);  // deleted: no value
  EXPECT_TRUE(r[4].status.ok());                                   // deleted counts as absent
  EXPECT_EQ((*left_->Get("a"))->value, "8");
  // A failed write writes nothing: the closed timestamp did not move for it.
  EXPECT_LT(r[3].timestamp, r[4].timestamp);
}

TEST_F(RangeStateMachineTest, DeleteRangeRemovesTheLiveKeysOfItsSpanInTheRange) {
  Apply(left_.get(), {Put("a", "1", 1), Put("b", "2", 2), Put("c", "3", 3), Delete("c", 4)});
  Apply(right_.get(), {Put("n", "4", 1)});
  // "b2" written in the same batch is deleted too; "c" was already gone;
  // the part past the range's end ("m") is another range's.
  auto r = Apply(left_.get(), {Put("b2", "x", 5), DeleteRange("b", "z", 6), Put("b3", "y", 7)});
  ASSERT_TRUE(r[1].status.ok()) << r[1].status.ToString();
  EXPECT_EQ(r[1].deleted, 2u);
  bool more = false;
  auto left = left_->Scan("", "", 10, &more);
  ASSERT_EQ(left->size(), 2u);
  EXPECT_EQ((*left)[0].key, "a");
  EXPECT_EQ((*left)[1].key, "b3");
  EXPECT_EQ((*right_->Get("n"))->value, "4");
  // Deleting a key with no live value says so.
  r = Apply(left_.get(), {Delete("b", 8), Delete("nothing", 9), DeleteRange("x", "y", 10)});
  EXPECT_EQ(r[0].deleted, 0u);
  EXPECT_EQ(r[1].deleted, 0u);
  EXPECT_EQ(r[2].deleted, 0u);
}

TEST_F(RangeStateMachineTest, KeysOutsideTheRangeFailAlike) {
  auto r = Apply(left_.get(), {Put("x", "1", 1), Put("a", "1", 1)});
  EXPECT_EQ(r[0].status.code(), StatusCode::kOutOfRange);
  EXPECT_TRUE(r[1].status.ok());
  EXPECT_EQ(left_->Get("x").status().code(), StatusCode::kOutOfRange);
  EXPECT_TRUE(right_->Get("x").ok());
}

TEST_F(RangeStateMachineTest, RestartFindsTheRangesAndTheirState) {
  Apply(left_.get(), {Put("a", "1", 1)});
  Apply(right_.get(), {Put("q", "2", 1)});
  auto stored = RangeStateMachine::Stored(&engine_);
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ(*stored, ranges_);
  auto again =
      RangeStateMachine::Open(&engine_, &fs_, ranges_[0].range_id, keys::RangeDescriptor{});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)->AppliedIndex(), 2u);
  EXPECT_EQ((*again)->descriptor(), ranges_[0]);
  EXPECT_EQ((*(*again)->Get("a"))->value, "1");
}

TEST_F(RangeStateMachineTest, SnapshotsCarryExactlyTheRange) {
  Apply(left_.get(), {Put("a", "1", 1), Put("b", "2", 2), Delete("a", 3)});
  Apply(right_.get(), {Put("q", "right", 1)});
  auto source = left_->NewSnapshot();
  ASSERT_TRUE(source.ok());
  EXPECT_EQ((*source)->index(), left_->AppliedIndex());
  EXPECT_EQ((*source)->conf_state().voters, (std::vector<raft::NodeId>{1, 2, 3}));
  const mvcc::SnapshotId id{ranges_[0].range_id, (*source)->index(), (*source)->term()};
  mvcc::SnapshotReceiver receiver(&fs_, "/snap", id);
  std::string chunk;
  while (*(*source)->Next(&chunk))
    ASSERT_TRUE(receiver.Add(chunk).ok());
  auto path = receiver.Finish();
  ASSERT_TRUE(path.ok());

  // Another node, where the left range is stale and the right one has data
  // of its own: the install replaces the left range only.
  storage::MemEngine other;
  auto stale = Open(&other, ranges_[0]);
  Apply(stale.get(), {Put("c", "stale", 1)});
  auto other_right = Open(&other, ranges_[1]);
  Apply(other_right.get(), {Put("z", "kept", 1)});
  ASSERT_TRUE(stale->InstallSnapshot(*path).ok());
  EXPECT_EQ(stale->AppliedIndex(), left_->AppliedIndex());
  EXPECT_FALSE(stale->Get("a")->has_value());
  EXPECT_EQ((*stale->Get("b"))->value, "2");
  EXPECT_FALSE(stale->Get("c")->has_value());
  EXPECT_EQ((*other_right->Get("z"))->value, "kept");
  // A snapshot of one range does not install into another.
  EXPECT_EQ(other_right->InstallSnapshot(*path).code(), StatusCode::kCorruption);
}

std::string Split(const std::string& key, keys::RangeId new_id, uint64_t generation) {
  serverpb::RangeCommand c;
  c.mutable_split()->set_split_key(key);
  c.mutable_split()->set_new_range_id(new_id);
  c.mutable_split()->set_generation(generation);
  return c.SerializeAsString();
}

TEST_F(RangeStateMachineTest, ASplitMakesANewRangeOverTheSameData) {
  std::vector<keys::RangeDescriptor> created;
  left_->SetSplitHandler([&](const keys::RangeDescriptor& right) {
    // Called before the left range narrows: it still holds "g".
    EXPECT_TRUE(left_->descriptor().ContainsKey("g"));
    created.push_back(right);
    return Status::Ok();
  });
  auto before = Apply(left_.get(), {Put("a", "1", 100), Put("g", "2", 100), Put("k", "3", 900)});
  const uint64_t generation = left_->descriptor().generation;
  // Each version counts its encoded key and value.
  auto version_bytes = [](const std::string& key, const std::string& value) {
    return keys::VersionKey(key, Timestamp{}).size() +
           keys::EncodeVersionValue({false, value}).size();
  };
  EXPECT_EQ(left_->DataBytes(),
            version_bytes("a", "1") + version_bytes("g", "2") + version_bytes("k", "3"));
  // A put after the split in the same batch no longer fits the left range.
  auto r = Apply(left_.get(), {Split("f", 40, generation), Put("h", "x", 1), Put("b", "y", 1)});
  ASSERT_TRUE(r[0].status.ok()) << r[0].status.ToString();
  ASSERT_TRUE(r[0].split.has_value());
  EXPECT_EQ(r[1].status.code(), StatusCode::kOutOfRange);
  EXPECT_TRUE(r[2].status.ok());
  ASSERT_EQ(created.size(), 1u);
  const keys::RangeDescriptor& right = created[0];
  EXPECT_EQ(right.range_id, 40u);
  EXPECT_EQ(right.start_key, "f");
  EXPECT_EQ(right.end_key, "m");
  EXPECT_EQ(right.generation, generation + 1);
  EXPECT_EQ(right.replicas, ranges_[0].replicas);
  EXPECT_EQ(left_->descriptor().end_key, "f");
  EXPECT_EQ(left_->descriptor().generation, generation + 1);
  EXPECT_EQ(r[0].split->first, left_->descriptor());
  EXPECT_EQ(r[0].split->second, right);

  // The new range opens from what the split wrote: index 1, the left
  // range's configuration, its data in place, versions still growing.
  auto sm = RangeStateMachine::Open(&engine_, &fs_, 40, keys::RangeDescriptor{});
  ASSERT_TRUE(sm.ok()) << sm.status().ToString();
  EXPECT_EQ((*sm)->descriptor(), right);
  EXPECT_EQ((*sm)->AppliedIndex(), 1u);
  // The bytes go with the keys: "g" and "k" to the new range, "a" and "b"
  // (written after the split) stay.
  EXPECT_EQ((*sm)->DataBytes(), version_bytes("g", "2") + version_bytes("k", "3"));
  EXPECT_EQ(left_->DataBytes(), version_bytes("a", "1") + version_bytes("b", "y"));
  auto cs = (*sm)->AppliedConfState();
  ASSERT_TRUE(cs.ok());
  EXPECT_EQ(cs->voters, (std::vector<raft::NodeId>{1, 2, 3}));
  EXPECT_EQ((*(*sm)->Get("g"))->value, "2");
  EXPECT_EQ((*(*sm)->Get("k"))->value, "3");
  EXPECT_EQ(left_->Get("g").status().code(), StatusCode::kOutOfRange);
  EXPECT_EQ((*left_->Get("a"))->value, "1");
  auto w = Apply(sm->get(), {Put("g", "later", 1)});
  ASSERT_TRUE(w[0].status.ok());
  EXPECT_GT(w[0].timestamp, before[2].timestamp);
  bool more = false;
  keys::RangeDescriptor used;
  auto scan = (*sm)->Scan("", "", 10, &more, &used);
  ASSERT_TRUE(scan.ok());
  ASSERT_EQ(scan->size(), 2u);
  EXPECT_EQ((*scan)[0].key, "g");
  EXPECT_EQ(used, right);
}

TEST_F(RangeStateMachineTest, SplitsThatDoNotFitAreRefusedAlike) {
  int calls = 0;
  left_->SetSplitHandler([&](const keys::RangeDescriptor&) {
    ++calls;
    return Status::Ok();
  });
  const uint64_t g = left_->descriptor().generation;
  auto r = Apply(left_.get(), {Split("f", 40, g + 1),  // a stale view
                               Split("", 41, g),       // the range's own start
                               Split("q", 42, g),      // outside
                               Split("f", ranges_[0].range_id, g)});
  for (const RangeWriteResult& w : r)
    EXPECT_EQ(w.status.code(), StatusCode::kFailedPrecondition) << w.status.ToString();
  auto meta = Open(&engine_, InitialRanges(1, {1, 2, 3}).back());
  meta->SetSplitHandler([&](const keys::RangeDescriptor&) {
    ++calls;
    return Status::Ok();
  });
  auto system = Apply(
      meta.get(), {Split(std::string(kSystemKeyStart) + "x", 43, meta->descriptor().generation)});
  EXPECT_EQ(system[0].status.code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(left_->descriptor(), ranges_[0]);
}

TEST_F(RangeStateMachineTest, AnEmptyReplicaHoldsNothingUntilItsSnapshot) {
  Apply(left_.get(), {Put("a", "1", 1), Put("b", "2", 1)});
  auto source = left_->NewSnapshot();
  ASSERT_TRUE(source.ok());
  mvcc::SnapshotReceiver receiver(
      &fs_, "/snap", mvcc::SnapshotId{ranges_[0].range_id, (*source)->index(), (*source)->term()});
  std::string chunk;
  while (*(*source)->Next(&chunk))
    ASSERT_TRUE(receiver.Add(chunk).ok());
  auto path = receiver.Finish();
  ASSERT_TRUE(path.ok()) << path.status().ToString();

  storage::MemEngine other;
  auto waiting =
      RangeStateMachine::Open(&other, &fs_, ranges_[0].range_id, keys::RangeDescriptor{});
  ASSERT_TRUE(waiting.ok());
  EXPECT_FALSE((*waiting)->initialized());
  EXPECT_EQ((*waiting)->AppliedIndex(), 0u);
  EXPECT_EQ((*waiting)->Get("a").status().code(), StatusCode::kOutOfRange);
  bool more = false;
  EXPECT_EQ((*waiting)->Scan("", "", 10, &more).status().code(), StatusCode::kOutOfRange);
  EXPECT_TRUE(RangeStateMachine::Stored(&other)->empty());

  int installed = 0;
  (*waiting)->SetInstallHandler([&] { ++installed; });
  ASSERT_TRUE((*waiting)->InstallSnapshot(*path).ok());
  EXPECT_EQ(installed, 1);
  EXPECT_TRUE((*waiting)->initialized());
  EXPECT_EQ((*waiting)->descriptor(), ranges_[0]);
  EXPECT_EQ((*(*waiting)->Get("b"))->value, "2");
}

TEST_F(RangeStateMachineTest, ASplitKeepsANewRangeThatCameFirst) {
  // This node received range 40 from a snapshot before applying the split
  // that makes it: its records stay.
  keys::RangeDescriptor newer = ranges_[0];
  newer.range_id = 40;
  newer.start_key = "f";
  newer.generation = 7;
  auto first = Open(&engine_, newer);
  Apply(first.get(), {Put("g", "newer", 5000)});
  const uint64_t index = first->AppliedIndex();
  left_->SetSplitHandler([](const keys::RangeDescriptor&) { return Status::Ok(); });
  auto r = Apply(left_.get(), {Split("f", 40, left_->descriptor().generation)});
  ASSERT_TRUE(r[0].status.ok()) << r[0].status.ToString();
  EXPECT_EQ(left_->descriptor().end_key, "f");
  auto again = RangeStateMachine::Open(&engine_, &fs_, 40, keys::RangeDescriptor{});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)->descriptor().generation, 7u);
  EXPECT_EQ((*again)->AppliedIndex(), index);
}

// A conf-change entry as the replica hands it over: the change, the
// configuration it left, and the placements in its context.
struct ConfEntry {
  raft::ConfChange change;
  raft::ConfState state;
  std::string context;
  bool refused = false;
};

ConfEntry Change(raft::ConfChangeType type, uint64_t replica, uint64_t node,
                 raft::ConfState state) {
  ConfEntry e;
  e.change.changes.push_back({type, replica});
  serverpb::ReplicaChange rc;
  if (node != 0) {
    auto* p = rc.add_added();
    p->set_replica_id(replica);
    p->set_node_id(node);
  }
  e.context = rc.SerializeAsString();
  e.state = std::move(state);
  return e;
}

raft::ConfState Conf(std::vector<uint64_t> voters, std::vector<uint64_t> learners = {}) {
  raft::ConfState cs;
  cs.voters = std::move(voters);
  cs.learners = std::move(learners);
  return cs;
}

Status ApplyConf(RangeStateMachine* sm, const ConfEntry& c) {
  CommittedEntry e{.index = sm->AppliedIndex() + 1,
                   .term = 2,
                   .type = raft::EntryType::kConfChange,
                   .command = c.context,
                   .conf_change = &c.change,
                   .conf_state = &c.state,
                   .refused = c.refused};
  std::vector<std::any> results(1);
  RETURN_IF_ERROR(sm->Apply(std::span<const CommittedEntry>(&e, 1), &results));
  return std::any_cast<RangeWriteResult>(results[0]).status;
}

TEST_F(RangeStateMachineTest, ReplicaChangesRewriteTheDescriptor) {
  std::vector<keys::RangeDescriptor> seen;
  left_->SetReplicasHandler([&](const keys::RangeDescriptor& d) {
    seen.push_back(d);
    return Status::Ok();
  });
  left_->SetSplitHandler([](const keys::RangeDescriptor&) { return Status::Ok(); });
  const keys::RangeDescriptor before = left_->descriptor();
  using T = raft::ConfChangeType;
  ASSERT_TRUE(ApplyConf(left_.get(), Change(T::kAddLearner, 4, 9, Conf({1, 2, 3}, {4}))).ok());
  keys::RangeDescriptor d = left_->descriptor();
  ASSERT_EQ(d.replicas.size(), 4u);
  EXPECT_EQ(d.ReplicaOn(9)->type, keys::ReplicaType::kLearner);
  EXPECT_EQ(d.ReplicaOn(9)->replica_id, 4u);
  EXPECT_EQ(d.next_replica_id, 5u);
  EXPECT_EQ(d.generation, before.generation + 1);
  // A range that is adding a replica does not split.
  auto split = Apply(left_.get(), {Split("f", 40, d.generation)});
  EXPECT_EQ(split[0].status.code(), StatusCode::kFailedPrecondition);

  ASSERT_TRUE(ApplyConf(left_.get(), Change(T::kAddVoter, 4, 9, Conf({1, 2, 3, 4}))).ok());
  EXPECT_EQ(left_->descriptor().ReplicaOn(9)->type, keys::ReplicaType::kVoter);
  ASSERT_TRUE(ApplyConf(left_.get(), Change(T::kRemoveNode, 1, 0, Conf({2, 3, 4}))).ok());
  d = left_->descriptor();
  EXPECT_FALSE(d.HasNode(1));
  EXPECT_TRUE(d.HasNode(9));
  EXPECT_EQ(d.replicas.size(), 3u);
  EXPECT_EQ(d.generation, before.generation + 3);
  EXPECT_EQ(d.next_replica_id, 5u);  // ids are never reused
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen.back(), d);

  // A change Raft refused changes nothing; the descriptor survives a restart.
  ConfEntry refused = Change(T::kRemoveNode, 2, 0, Conf({2, 3, 4}));
  refused.refused = true;
  EXPECT_EQ(ApplyConf(left_.get(), refused).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(left_->descriptor(), d);
  EXPECT_EQ(seen.size(), 3u);
  auto again = RangeStateMachine::Open(&engine_, &fs_, d.range_id, keys::RangeDescriptor{});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)->descriptor(), d);
  EXPECT_EQ((*again)->AppliedConfState()->voters, (std::vector<uint64_t>{2, 3, 4}));

  // Adding a replica without saying where is a proposer's bug: it stops
  // the node rather than record a replica nowhere.
  ConfEntry nowhere = Change(T::kAddLearner, 5, 0, Conf({2, 3, 4}, {5}));
  EXPECT_EQ(ApplyConf(left_.get(), nowhere).code(), StatusCode::kCorruption);
}

TEST_F(RangeStateMachineTest, NothingAfterItsOwnRemovalApplies) {
  // This replica lives on node 1 (replica 1); the batch that removes it
  // also carries a write, which is the group's business, not this copy's.
  left_->SetLocalNode(1);
  int changes = 0;
  left_->SetReplicasHandler([&](const keys::RangeDescriptor&) {
    ++changes;
    return Status::Ok();
  });
  ConfEntry removal = Change(raft::ConfChangeType::kRemoveNode, 1, 0, Conf({2, 3}));
  const std::string put = Put("a", "after", 10);
  const uint64_t next = left_->AppliedIndex() + 1;
  std::vector<CommittedEntry> entries = {
      CommittedEntry{.index = next,
                     .term = 2,
                     .type = raft::EntryType::kConfChange,
                     .command = removal.context,
                     .conf_change = &removal.change,
                     .conf_state = &removal.state},
      CommittedEntry{.index = next + 1, .term = 2, .command = put}};
  std::vector<std::any> results(2);
  ASSERT_TRUE(left_->Apply(entries, &results).ok());
  EXPECT_TRUE(std::any_cast<RangeWriteResult>(results[0]).status.ok());
  EXPECT_EQ(std::any_cast<RangeWriteResult>(results[1]).status.code(), StatusCode::kUnavailable);
  EXPECT_FALSE(left_->descriptor().HasNode(1));
  EXPECT_EQ(changes, 1);
  EXPECT_FALSE((*left_->Get("a")).has_value());
}

TEST_F(RangeStateMachineTest, ADestroyedCopyLeavesATombstoneAndNothingElse) {
  Apply(left_.get(), {Put("a", "1", 1), Put("b", "2", 1)});
  Apply(right_.get(), {Put("x", "3", 1)});
  const keys::RangeDescriptor d = left_->descriptor();
  EXPECT_EQ(*RangeStateMachine::Tombstone(&engine_, d.range_id), 0u);
  left_->MarkRemoved();
  // Nothing applies to a removed copy any more.
  auto r = Apply(left_.get(), {Put("c", "late", 2)});
  EXPECT_EQ(r[0].status.code(), StatusCode::kUnavailable);
  ASSERT_TRUE(RangeStateMachine::Destroy(&engine_, d).ok());
  EXPECT_EQ(*RangeStateMachine::Tombstone(&engine_, d.range_id), d.next_replica_id);
  auto stored = RangeStateMachine::Stored(&engine_);
  ASSERT_EQ(stored->size(), 1u);
  EXPECT_EQ((*stored)[0].range_id, ranges_[1].range_id);
  // Its keys are gone; the neighbour's are not.
  auto it = engine_.NewIterator();
  const keys::Span data = keys::DataSpan(d.start_key, d.end_key);
  it->Seek(data.begin);
  EXPECT_TRUE(!it->Valid() || it->key() >= data.end);
  EXPECT_EQ((*right_->Get("x"))->value, "3");
}

std::string Freeze(keys::RangeId left, uint64_t generation) {
  serverpb::RangeCommand c;
  c.mutable_freeze()->set_left_range_id(left);
  c.mutable_freeze()->set_generation(generation);
  return c.SerializeAsString();
}

std::string MergeIn(const keys::RangeDescriptor& right, uint64_t generation,
                    const keys::AppliedState& right_state) {
  serverpb::RangeCommand c;
  serverpb::MergeCommand* m = c.mutable_merge();
  m->set_right(keys::EncodeRangeDescriptor(right));
  m->set_generation(generation);
  m->set_right_closed_wall_nanos(right_state.closed_timestamp.wall_nanos);
  m->set_right_closed_logical(right_state.closed_timestamp.logical);
  m->set_right_bytes(right_state.data_bytes);
  return c.SerializeAsString();
}

std::string Prepare(keys::RangeId right, uint64_t generation) {
  serverpb::RangeCommand c;
  c.mutable_prepare_merge()->set_right_range_id(right);
  c.mutable_prepare_merge()->set_generation(generation);
  return c.SerializeAsString();
}

std::string Thaw(keys::RangeId left, uint64_t generation) {
  serverpb::RangeCommand c;
  c.mutable_thaw()->set_left_range_id(left);
  c.mutable_thaw()->set_generation(generation);
  return c.SerializeAsString();
}

std::string Fence(bool release = false) {
  serverpb::RangeCommand c;
  c.mutable_fence()->set_release(release);
  return c.SerializeAsString();
}

TEST_F(RangeStateMachineTest, AMergeTakesTheFrozenNeighbourIn) {
  std::vector<keys::RangeDescriptor> merged;
  left_->SetMergeHandler(
      [&](const keys::RangeDescriptor& right) {
        // Called once the left range holds the keys.
        EXPECT_TRUE(left_->descriptor().ContainsKey("p"));
        merged.push_back(right);
        return Status::Ok();
      },
      [](const keys::RangeDescriptor&) { return Status::Ok(); });
  Apply(left_.get(), {Put("a", "1", 100)});
  auto late = Apply(right_.get(), {Put("p", "2", 5000), Put("q", "3", 5000)});
  const uint64_t left_bytes = left_->DataBytes();
  const uint64_t right_bytes = right_->DataBytes();

  auto f =
      Apply(right_.get(), {Freeze(left_->descriptor().range_id, right_->descriptor().generation),
                           Put("r", "refused", 6000), Delete("p", 6000),
                           Split("t", 40, right_->descriptor().generation + 1)});
  ASSERT_TRUE(f[0].status.ok()) << f[0].status.ToString();
  const keys::RangeDescriptor frozen = right_->descriptor();
  EXPECT_EQ(frozen.frozen_into, left_->descriptor().range_id);
  EXPECT_EQ(frozen.generation, ranges_[1].generation + 1);
  EXPECT_EQ(*f[0].descriptor, frozen);
  // A frozen range changes no more, and serves no reads: a merge may make
  // the left range the keys' holder at any moment.
  for (size_t i = 1; i < f.size(); ++i) {
    EXPECT_EQ(f[i].status.code(), StatusCode::kUnavailable) << i;
    EXPECT_EQ(f[i].status.reason(), ErrorReason::kRangeFrozen) << i;
  }
  EXPECT_EQ(right_->Get("p").status().reason(), ErrorReason::kRangeFrozen);
  bool more = false;
  EXPECT_EQ(right_->Scan("", "", 10, &more).status().reason(), ErrorReason::kRangeFrozen);
  EXPECT_EQ(right_->DataBytes(), right_bytes);

  // A prepared range is not split or frozen meanwhile.
  auto p = Apply(left_.get(), {Prepare(frozen.range_id, left_->descriptor().generation),
                               Split("c", 41, left_->descriptor().generation + 1),
                               Freeze(99, left_->descriptor().generation + 1)});
  ASSERT_TRUE(p[0].status.ok()) << p[0].status.ToString();
  EXPECT_EQ(left_->descriptor().merging_from, frozen.range_id);
  EXPECT_EQ(p[1].status.code(), StatusCode::kUnavailable);
  EXPECT_EQ(p[2].status.code(), StatusCode::kFailedPrecondition);
  const uint64_t g = left_->descriptor().generation;
  auto m = Apply(left_.get(), {MergeIn(frozen, g, right_->applied_state()), Put("s", "4", 1)});
  ASSERT_TRUE(m[0].status.ok()) << m[0].status.ToString();
  ASSERT_EQ(merged.size(), 1u);
  EXPECT_EQ(merged[0], frozen);
  const keys::RangeDescriptor after = left_->descriptor();
  EXPECT_EQ(after.start_key, "");
  EXPECT_EQ(after.end_key, ranges_[1].end_key);
  EXPECT_EQ(after.generation, std::max(g, frozen.generation) + 1);
  EXPECT_EQ(after.frozen_into, 0u);
  EXPECT_EQ(after.merging_from, 0u);
  // The data stayed where it was; the bytes and the closed timestamp came
  // along, so versions written after the merge are later than the right
  // range's.
  EXPECT_EQ((*left_->Get("p"))->value, "2");
  ASSERT_TRUE(m[1].status.ok());
  EXPECT_GT(m[1].timestamp, late[1].timestamp);
  EXPECT_EQ(left_->DataBytes(), left_bytes + right_bytes +
                                    keys::VersionKey("s", Timestamp{}).size() +
                                    keys::EncodeVersionValue({false, "4"}).size());
  auto scan = left_->Scan("", "", 10, &more);
  ASSERT_TRUE(scan.ok());
  EXPECT_EQ(scan->size(), 4u);
  // The right range's records went in the same batch; its tombstone refuses
  // its replicas.
  auto stored = RangeStateMachine::Stored(&engine_);
  ASSERT_TRUE(stored.ok());
  ASSERT_EQ(stored->size(), 1u);
  EXPECT_EQ((*stored)[0], after);
  EXPECT_EQ(*RangeStateMachine::Tombstone(&engine_, frozen.range_id), frozen.next_replica_id);
  // And it reopens as it was left.
  auto reopened = RangeStateMachine::Open(&engine_, &fs_, after.range_id, keys::RangeDescriptor{});
  ASSERT_TRUE(reopened.ok());
  EXPECT_EQ((*reopened)->descriptor(), after);
  EXPECT_EQ((*reopened)->DataBytes(), left_->DataBytes());
}

TEST_F(RangeStateMachineTest, MergesThatDoNotFitAreRefusedAlike) {
  int calls = 0;
  left_->SetMergeHandler(
      [&](const keys::RangeDescriptor&) {
        ++calls;
        return Status::Ok();
      },
      [](const keys::RangeDescriptor&) { return Status::Ok(); });
  const keys::RangeId left_id = left_->descriptor().range_id;
  uint64_t g = left_->descriptor().generation;
  // Not frozen yet.
  auto r = Apply(left_.get(), {MergeIn(right_->descriptor(), g, right_->applied_state())});
  EXPECT_EQ(r[0].status.code(), StatusCode::kFailedPrecondition) << r[0].status.ToString();
  // Freezes at a stale generation or into itself are refused.
  auto f =
      Apply(right_.get(), {Freeze(left_id, right_->descriptor().generation + 1),
                           Freeze(right_->descriptor().range_id, right_->descriptor().generation),
                           Freeze(left_id, right_->descriptor().generation)});
  EXPECT_EQ(f[0].status.code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(f[1].status.code(), StatusCode::kFailedPrecondition);
  ASSERT_TRUE(f[2].status.ok());
  const keys::RangeDescriptor frozen = right_->descriptor();
  keys::RangeDescriptor elsewhere = frozen;
  elsewhere.frozen_into = left_id + 100;
  keys::RangeDescriptor apart = frozen;
  apart.start_key = "n";
  keys::RangeDescriptor other_nodes = frozen;
  other_nodes.replicas[0].node_id = 99;
  const keys::AppliedState a = right_->applied_state();
  // Not prepared for it.
  auto unprepared = Apply(left_.get(), {MergeIn(frozen, g, a)});
  EXPECT_EQ(unprepared[0].status.code(), StatusCode::kFailedPrecondition);
  // A prepared range refuses a second preparation.
  auto p = Apply(left_.get(), {Prepare(frozen.range_id, g), Prepare(frozen.range_id, g + 1)});
  ASSERT_TRUE(p[0].status.ok());
  EXPECT_EQ(p[1].status.code(), StatusCode::kFailedPrecondition);
  g = left_->descriptor().generation;
  auto m = Apply(left_.get(), {MergeIn(frozen, g + 1, a),     // a stale view of the left
                               MergeIn(elsewhere, g, a),      // frozen for another range
                               MergeIn(apart, g, a),          // not adjacent
                               MergeIn(other_nodes, g, a)});  // replicas elsewhere
  for (const RangeWriteResult& w : m)
    EXPECT_EQ(w.status.code(), StatusCode::kFailedPrecondition) << w.status.ToString();
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(left_->descriptor().end_key, ranges_[0].end_key);
  // The meta range is never frozen.
  auto meta = Open(&engine_, InitialRanges(1, {1, 2, 3}).back());
  auto system = Apply(meta.get(), {Freeze(left_id, meta->descriptor().generation)});
  EXPECT_EQ(system[0].status.code(), StatusCode::kFailedPrecondition);
}

TEST_F(RangeStateMachineTest, AFenceStopsAMergeAndAThawEndsTheFreeze) {
  const keys::RangeId left_id = left_->descriptor().range_id;
  std::vector<keys::RangeId> thawed;
  right_->SetMergeHandler([](const keys::RangeDescriptor&) { return Status::Ok(); },
                          [&](const keys::RangeDescriptor& d) {
                            if (d.frozen_into == 0) thawed.push_back(d.range_id);
                            return Status::Ok();
                          });
  // A fence on a range that is not prepared changes nothing.
  const uint64_t g0 = left_->descriptor().generation;
  Apply(left_.get(), {Fence(), Fence(true)});
  EXPECT_EQ(left_->descriptor().generation, g0);
  Apply(left_.get(), {Prepare(right_->descriptor().range_id, left_->descriptor().generation)});
  Apply(right_.get(), {Freeze(left_id, right_->descriptor().generation)});
  const keys::RangeDescriptor frozen = right_->descriptor();
  const uint64_t g = left_->descriptor().generation;
  auto fenced = Apply(left_.get(), {Fence(), MergeIn(frozen, g, right_->applied_state())});
  ASSERT_TRUE(fenced[0].status.ok());
  EXPECT_EQ(left_->descriptor().generation, g + 1);
  // Still prepared (it stays where the frozen range is) until released.
  EXPECT_EQ(left_->descriptor().merging_from, frozen.range_id);
  EXPECT_EQ(fenced[1].status.code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(left_->descriptor().end_key, "m");
  // Only a thaw from the range it froze for, at the freeze's generation,
  // ends the freeze.
  auto t =
      Apply(right_.get(),
            {Thaw(left_id + 1, frozen.generation), Thaw(left_id, frozen.generation - 1),
             Thaw(left_id, frozen.generation), Thaw(left_id, frozen.generation), Put("p", "1", 1)});
  EXPECT_EQ(t[0].status.code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(t[1].status.code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(t[2].status.ok());
  EXPECT_EQ(t[3].status.code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(t[4].status.ok());
  Apply(left_.get(), {Fence(true)});
  EXPECT_EQ(left_->descriptor().merging_from, 0u);
  EXPECT_EQ(left_->descriptor().generation, g + 2);
  EXPECT_EQ(right_->descriptor().frozen_into, 0u);
  EXPECT_EQ(right_->descriptor().generation, frozen.generation + 1);
  EXPECT_EQ(thawed, std::vector<keys::RangeId>{right_->descriptor().range_id});
  EXPECT_EQ((*right_->Get("p"))->value, "1");
}

TEST(UncoveredSpansTest, LeavesOutWhatOtherRangesHold) {
  using Spans = std::vector<std::pair<std::string, std::string>>;
  EXPECT_EQ(UncoveredSpans("a", "z", {}), (Spans{{"a", "z"}}));
  EXPECT_EQ(UncoveredSpans("a", "z", {{"m", "q"}, {"c", "e"}}),
            (Spans{{"a", "c"}, {"e", "m"}, {"q", "z"}}));
  EXPECT_EQ(UncoveredSpans("c", "m", {{"a", "d"}, {"k", ""}}), (Spans{{"d", "k"}}));
  EXPECT_EQ(UncoveredSpans("a", "", {{"m", "q"}}), (Spans{{"a", "m"}, {"q", ""}}));
  EXPECT_EQ(UncoveredSpans("a", "z", {{"", ""}}), Spans{});
  EXPECT_EQ(UncoveredSpans("a", "m", {{"m", "z"}, {"0", "a"}}), (Spans{{"a", "m"}}));
}

TEST_F(RangeStateMachineTest, ADestroyKeepsTheKeysOfTheNodesOtherRanges) {
  // A stale copy of [a, z) and this node's current range [m, z).
  Apply(left_.get(), {Put("a", "1", 1), Put("b", "2", 1)});
  Apply(right_.get(), {Put("x", "3", 1)});
  keys::RangeDescriptor stale = ranges_[0];
  stale.end_key = "";
  ASSERT_TRUE(RangeStateMachine::Destroy(&engine_, stale, {{"m", ""}}).ok());
  EXPECT_EQ((*right_->Get("x"))->value, "3");
  auto it = engine_.NewIterator();
  const keys::Span data = keys::DataSpan("", "m");
  it->Seek(data.begin);
  EXPECT_TRUE(!it->Valid() || it->key() >= data.end);
}

TEST(InitialRangesTest, SpreadReplicasOverTheMembers) {
  auto ranges = InitialRanges(8, {40, 10, 30, 20}, 3);
  ASSERT_EQ(ranges.size(), 9u);
  std::map<uint64_t, int> per_node;
  for (size_t i = 0; i < 8; ++i) {
    ASSERT_EQ(ranges[i].replicas.size(), 3u) << i;
    EXPECT_TRUE(keys::ValidateRangeDescriptor(ranges[i]).ok()) << i;
    for (const keys::ReplicaDescriptor& r : ranges[i].replicas)
      ++per_node[r.node_id];
  }
  // 24 replicas over 4 members: 6 each.
  EXPECT_EQ(per_node, (std::map<uint64_t, int>{{10, 6}, {20, 6}, {30, 6}, {40, 6}}));
  EXPECT_FALSE(ranges[0].HasNode(40));
  EXPECT_FALSE(ranges[1].HasNode(10));
  // The meta range is on every member; more replicas than members: one each.
  EXPECT_EQ(ranges.back().replicas.size(), 4u);
  EXPECT_EQ(InitialRanges(2, {1, 2}, 5)[0].replicas.size(), 2u);
}

TEST(InitialValuesTest, ANewRangeStartsWithThemAlikeEverywhere) {
  storage::MemEngine a;
  storage::MemEngine b;
  storage::FaultInjectionFileSystem fs{3};
  const keys::RangeDescriptor meta = InitialRanges(4, {1, 2, 3}).back();
  for (storage::MemEngine* e : {&a, &b}) {
    auto sm = RangeStateMachine::Open(e, &fs, meta.range_id, meta);
    ASSERT_TRUE(sm.ok());
    (*sm)->SetInitialValues({{std::string(kNextRangeIdKey), "20"}});
    ASSERT_TRUE((*sm)->Bootstrap(Conf({1, 2, 3})).ok());
    auto v = (*sm)->Get(kNextRangeIdKey);
    ASSERT_TRUE(v.ok() && v->has_value());
    EXPECT_EQ((*v)->value, "20");
    EXPECT_GT((*sm)->DataBytes(), 0u);
  }
  // The same records on every initial replica.
  auto all = [](storage::MemEngine* e) {
    std::vector<std::pair<std::string, std::string>> out;
    auto it = e->NewIterator();
    for (it->Seek(""); it->Valid(); it->Next())
      out.emplace_back(it->key(), it->value());
    return out;
  };
  EXPECT_EQ(all(&a), all(&b));
  // A key outside the range is refused.
  storage::MemEngine c;
  auto sm = RangeStateMachine::Open(&c, &fs, meta.range_id, meta);
  (*sm)->SetInitialValues({{"user", "x"}});
  EXPECT_EQ((*sm)->Bootstrap(Conf({1})).code(), StatusCode::kInvalidArgument);
}

TEST(InitialRangesTest, CoverTheKeyspaceWithoutGapsOrOverlap) {
  auto ranges = InitialRanges(1000, {9, 4, 7});
  ASSERT_EQ(ranges.size(), 1001u);
  EXPECT_EQ(ranges.front().start_key, "");
  // The user ranges end where the system keys start; the meta range holds
  // those.
  EXPECT_EQ(ranges[999].end_key, kSystemKeyStart);
  EXPECT_EQ(ranges.back().range_id, kMetaRangeId);
  EXPECT_EQ(ranges.back().end_key, "");
  for (size_t i = 0; i < ranges.size(); ++i) {
    EXPECT_TRUE(keys::ValidateRangeDescriptor(ranges[i]).ok()) << i;
    if (i < 1000) {
      EXPECT_EQ(ranges[i].range_id, kFirstRangeId + i);
    }
    if (i > 0) {
      EXPECT_EQ(ranges[i].start_key, ranges[i - 1].end_key);
    }
    ASSERT_EQ(ranges[i].replicas.size(), 3u);
    EXPECT_EQ(ranges[i].replicas[0].node_id, 4u);  // members in id order
    EXPECT_EQ(ranges[i].replicas[0].replica_id, 1u);
  }
}

}  // namespace
}  // namespace conclave::server
