// Unit tests for membership changes: every transition the Changer allows
// or refuses, Restore from a ConfState, and the ConfChange encoding.
#include "raft/confchange.h"

#include <gtest/gtest.h>

#include "base/random.h"
#include "raft/test_network.h"  // value printers

namespace conclave::raft {
namespace {

constexpr uint64_t kLastIndex = 10;

ConfChangeSingle AddVoter(NodeId id) {
  return {ConfChangeType::kAddVoter, id};
}
ConfChangeSingle AddLearner(NodeId id) {
  return {ConfChangeType::kAddLearner, id};
}
ConfChangeSingle Remove(NodeId id) {
  return {ConfChangeType::kRemoveNode, id};
}

// A tracker holding the configuration `cs`, as a node restored from a
// snapshot would have it.
class ChangerTest : public ::testing::Test {
 protected:
  void Load(const ConfState& cs) {
    Result<ChangeResult> r = Changer::Restore(cs, ProgressTracker(8, 0), kLastIndex);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    Swap(*r);
  }
  // Installs a change result, as Node::SwitchToConfig does.
  void Swap(const ChangeResult& r) {
    tracker_.config() = r.config;
    tracker_.progress() = r.progress;
  }
  Result<ChangeResult> Simple(const std::vector<ConfChangeSingle>& changes) {
    return Changer(tracker_, kLastIndex).Simple(changes);
  }
  Result<ChangeResult> EnterJoint(bool auto_leave, const std::vector<ConfChangeSingle>& changes) {
    return Changer(tracker_, kLastIndex).EnterJoint(auto_leave, changes);
  }
  Result<ChangeResult> LeaveJoint() { return Changer(tracker_, kLastIndex).LeaveJoint(); }
  // Applies a change that must succeed.
  void MustApply(const Result<ChangeResult>& r) {
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    Swap(*r);
  }
  ConfState Current() const { return tracker_.config().ToConfState(); }
  std::vector<NodeId> ProgressIds() const { return tracker_.AllIds(); }

  ProgressTracker tracker_{8, 0};
};

TEST_F(ChangerTest, SimpleAddVoter) {
  Load(ConfState{.voters = {1, 2, 3}});
  MustApply(Simple({AddVoter(4)}));
  EXPECT_EQ(Current(), (ConfState{.voters = {1, 2, 3, 4}}));
  const Progress* pr = tracker_.Find(4);
  ASSERT_NE(pr, nullptr);
  EXPECT_FALSE(pr->is_learner);
  // A new member is probed from the end of the leader's log, and counts as
  // active so that the next quorum check does not trip over it.
  EXPECT_EQ(pr->next, kLastIndex);
  EXPECT_EQ(pr->match, 0u);
  EXPECT_TRUE(pr->recent_active);
}

TEST_F(ChangerTest, SimpleRemoveVoter) {
  Load(ConfState{.voters = {1, 2, 3}});
  MustApply(Simple({Remove(3)}));
  EXPECT_EQ(Current(), (ConfState{.voters = {1, 2}}));
  EXPECT_EQ(ProgressIds(), (std::vector<NodeId>{1, 2}));
  // Removing a node that is not a member changes nothing.
  MustApply(Simple({Remove(9)}));
  EXPECT_EQ(Current(), (ConfState{.voters = {1, 2}}));
}

TEST_F(ChangerTest, SimpleAddAndRemoveLearner) {
  Load(ConfState{.voters = {1, 2, 3}});
  MustApply(Simple({AddLearner(4)}));
  EXPECT_EQ(Current(), (ConfState{.voters = {1, 2, 3}, .learners = {4}}));
  ASSERT_NE(tracker_.Find(4), nullptr);
  EXPECT_TRUE(tracker_.Find(4)->is_learner);
  // Learners change no quorum, so several may come or go at once.
  MustApply(Simple({AddLearner(5), AddLearner(6)}));
  EXPECT_EQ(Current(), (ConfState{.voters = {1, 2, 3}, .learners = {4, 5, 6}}));
  MustApply(Simple({Remove(4), Remove(5)}));
  EXPECT_EQ(Current(), (ConfState{.voters = {1, 2, 3}, .learners = {6}}));
  EXPECT_EQ(tracker_.Find(4), nullptr);
}

TEST_F(ChangerTest, PromoteLearnerKeepsProgress) {
  Load(ConfState{.voters = {1, 2, 3}, .learners = {4}});
  tracker_.Find(4)->match = 7;
  MustApply(Simple({AddVoter(4)}));
  EXPECT_EQ(Current(), (ConfState{.voters = {1, 2, 3, 4}}));
  EXPECT_FALSE(tracker_.Find(4)->is_learner);
  EXPECT_EQ(tracker_.Find(4)->match, 7u);
}

TEST_F(ChangerTest, SimpleDemoteVoterToLearner) {
  Load(ConfState{.voters = {1, 2, 3}});
  tracker_.Find(3)->match = 9;
  MustApply(Simple({AddLearner(3)}));
  EXPECT_EQ(Current(), (ConfState{.voters = {1, 2}, .learners = {3}}));
  EXPECT_TRUE(tracker_.Find(3)->is_learner);
  EXPECT_EQ(tracker_.Find(3)->match, 9u);
}

TEST_F(ChangerTest, AddingExistingMemberIsNoOp) {
  Load(ConfState{.voters = {1, 2, 3}, .learners = {4}});
  MustApply(Simple({AddVoter(2)}));
  MustApply(Simple({AddLearner(4)}));
  EXPECT_EQ(Current(), (ConfState{.voters = {1, 2, 3}, .learners = {4}}));
}

TEST_F(ChangerTest, SimpleRefusesMoreThanOneVoterChange) {
  Load(ConfState{.voters = {1, 2, 3}, .learners = {5}});
  const std::vector<std::vector<ConfChangeSingle>> refused = {
      {AddVoter(4), AddVoter(6)},
      {AddVoter(4), Remove(3)},
      {Remove(2), Remove(3)},
      {AddVoter(5), AddLearner(3)},  // promote one, demote another
  };
  for (const auto& changes : refused) {
    Result<ChangeResult> r = Simple(changes);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  }
  // The tracker is untouched by refused changes.
  EXPECT_EQ(Current(), (ConfState{.voters = {1, 2, 3}, .learners = {5}}));
  // Adding and removing the same voter nets out to no change at all.
  MustApply(Simple({AddVoter(4), Remove(4)}));
  EXPECT_EQ(Current(), (ConfState{.voters = {1, 2, 3}, .learners = {5}}));
}

TEST_F(ChangerTest, RemovingAllVotersRefused) {
  Load(ConfState{.voters = {1}, .learners = {2}});
  Result<ChangeResult> r = Simple({Remove(1)});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  r = Simple({AddLearner(1)});  // demoting the last voter empties the voters too
  EXPECT_FALSE(r.ok());

  Load(ConfState{.voters = {1, 2}});
  r = EnterJoint(true, {Remove(1), Remove(2)});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
}

TEST_F(ChangerTest, NodeZeroRefused) {
  Load(ConfState{.voters = {1, 2, 3}});
  EXPECT_EQ(Simple({AddVoter(kNoNode)}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(EnterJoint(false, {AddLearner(kNoNode)}).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(ChangerTest, EnterJointAutoLeave) {
  Load(ConfState{.voters = {1, 2, 3}});
  MustApply(EnterJoint(/*auto_leave=*/true, {AddVoter(4), Remove(3), AddLearner(5)}));
  EXPECT_EQ(
      Current(),
      (ConfState{
          .voters = {1, 2, 4}, .learners = {5}, .voters_outgoing = {1, 2, 3}, .auto_leave = true}));
  EXPECT_TRUE(tracker_.config().IsJoint());
  // The removed voter still votes in the outgoing config, so it keeps its
  // progress until the joint config is left.
  EXPECT_EQ(ProgressIds(), (std::vector<NodeId>{1, 2, 3, 4, 5}));

  MustApply(LeaveJoint());
  EXPECT_EQ(Current(), (ConfState{.voters = {1, 2, 4}, .learners = {5}}));
  EXPECT_FALSE(tracker_.config().IsJoint());
  EXPECT_EQ(ProgressIds(), (std::vector<NodeId>{1, 2, 4, 5}));
}

TEST_F(ChangerTest, EnterJointExplicitReplacesAllVoters) {
  Load(ConfState{.voters = {1, 2, 3}});
  MustApply(EnterJoint(/*auto_leave=*/false,
                       {Remove(1), Remove(2), Remove(3), AddVoter(4), AddVoter(5), AddVoter(6)}));
  EXPECT_EQ(Current(), (ConfState{.voters = {4, 5, 6}, .voters_outgoing = {1, 2, 3}}));
  EXPECT_FALSE(tracker_.config().auto_leave);
  MustApply(LeaveJoint());
  EXPECT_EQ(Current(), (ConfState{.voters = {4, 5, 6}}));
  EXPECT_EQ(ProgressIds(), (std::vector<NodeId>{4, 5, 6}));
}

TEST_F(ChangerTest, EnterJointWithOneChangeIsAllowed) {
  Load(ConfState{.voters = {1, 2, 3}});
  MustApply(EnterJoint(true, {AddVoter(4)}));
  EXPECT_EQ(Current(),
            (ConfState{.voters = {1, 2, 3, 4}, .voters_outgoing = {1, 2, 3}, .auto_leave = true}));
}

TEST_F(ChangerTest, DemoteVoterThroughJointUsesLearnersNext) {
  Load(ConfState{.voters = {1, 2, 3}});
  tracker_.Find(3)->match = 8;
  MustApply(EnterJoint(true, {AddLearner(3), AddVoter(4)}));
  EXPECT_EQ(Current(), (ConfState{.voters = {1, 2, 4},
                                  .voters_outgoing = {1, 2, 3},
                                  .learners_next = {3},
                                  .auto_leave = true}));
  // Node 3 still votes in the outgoing config, so it is not a learner yet.
  EXPECT_FALSE(tracker_.Find(3)->is_learner);

  MustApply(LeaveJoint());
  EXPECT_EQ(Current(), (ConfState{.voters = {1, 2, 4}, .learners = {3}}));
  EXPECT_TRUE(tracker_.Find(3)->is_learner);
  EXPECT_EQ(tracker_.Find(3)->match, 8u);  // its progress survives the demotion
}

TEST_F(ChangerTest, RemoveThenReAddAsLearnerInOneJointChange) {
  Load(ConfState{.voters = {1, 2, 3}});
  MustApply(EnterJoint(false, {Remove(3), AddLearner(3)}));
  EXPECT_EQ(Current(),
            (ConfState{.voters = {1, 2}, .voters_outgoing = {1, 2, 3}, .learners_next = {3}}));
  MustApply(LeaveJoint());
  EXPECT_EQ(Current(), (ConfState{.voters = {1, 2}, .learners = {3}}));
}

TEST_F(ChangerTest, DemoteThenPromoteInOneJointChangeStaysVoter) {
  Load(ConfState{.voters = {1, 2, 3}});
  MustApply(EnterJoint(false, {AddLearner(3), AddVoter(3)}));
  EXPECT_EQ(Current(), (ConfState{.voters = {1, 2, 3}, .voters_outgoing = {1, 2, 3}}));
  MustApply(LeaveJoint());
  EXPECT_EQ(Current(), (ConfState{.voters = {1, 2, 3}}));
}

TEST_F(ChangerTest, PromoteLearnerThroughJoint) {
  Load(ConfState{.voters = {1, 2, 3}, .learners = {4, 5}});
  MustApply(EnterJoint(true, {AddVoter(4), AddVoter(5)}));
  EXPECT_EQ(
      Current(),
      (ConfState{.voters = {1, 2, 3, 4, 5}, .voters_outgoing = {1, 2, 3}, .auto_leave = true}));
  EXPECT_FALSE(tracker_.Find(4)->is_learner);
  MustApply(LeaveJoint());
  EXPECT_EQ(Current(), (ConfState{.voters = {1, 2, 3, 4, 5}}));
}

TEST_F(ChangerTest, RefusesEnterJointWhenJointAndLeaveWhenNot) {
  Load(ConfState{.voters = {1, 2, 3}});
  Result<ChangeResult> r = LeaveJoint();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);

  MustApply(EnterJoint(false, {AddVoter(4)}));
  r = EnterJoint(false, {AddVoter(5)});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  // Nor may a simple change sneak in while joint.
  r = Simple({AddLearner(5)});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
}

TEST_F(ChangerTest, EnterJointRefusedWithoutVoters) {
  // A node that has not yet learned the configuration (a new member before
  // its first snapshot) has no voters at all.
  Load(ConfState{});
  Result<ChangeResult> r = EnterJoint(false, {AddVoter(1)});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
}

TEST_F(ChangerTest, RestoreJointConfState) {
  const ConfState cs{.voters = {1, 2, 4},
                     .learners = {5},
                     .voters_outgoing = {1, 2, 3},
                     .learners_next = {3},
                     .auto_leave = true};
  Load(cs);
  EXPECT_EQ(Current(), cs);
  EXPECT_EQ(ProgressIds(), (std::vector<NodeId>{1, 2, 3, 4, 5}));
  EXPECT_TRUE(tracker_.Find(5)->is_learner);
  EXPECT_FALSE(tracker_.Find(3)->is_learner);  // still an outgoing voter
  for (const auto& [id, pr] : tracker_.progress())
    EXPECT_EQ(pr.next, kLastIndex) << id;
  // And the restored joint config is left like any other.
  MustApply(LeaveJoint());
  EXPECT_EQ(Current(), (ConfState{.voters = {1, 2, 4}, .learners = {3, 5}}));
}

TEST_F(ChangerTest, RestoreRoundTrips) {
  const std::vector<ConfState> states = {
      {},
      {.voters = {1}},
      {.voters = {1, 2, 3}, .learners = {4, 5}},
      {.voters = {4, 5, 6}, .voters_outgoing = {1, 2, 3}},
      {.voters = {1, 2}, .voters_outgoing = {1, 2, 3}, .learners_next = {3}},
  };
  for (const ConfState& cs : states) {
    Load(cs);
    EXPECT_EQ(Current(), cs) << cs.ToString();
  }
}

TEST_F(ChangerTest, RestoreRefusesInconsistentConfState) {
  const std::vector<ConfState> bad = {
      // A learner that is also an outgoing voter (it should be in learners_next).
      {.voters = {1, 2}, .learners = {3}, .voters_outgoing = {1, 2, 3}},
      // learners_next must name outgoing voters.
      {.voters = {1, 2}, .voters_outgoing = {1, 2}, .learners_next = {3}},
      // Joint-only state outside a joint config.
      {.voters = {1, 2}, .auto_leave = true},
  };
  for (const ConfState& cs : bad) {
    EXPECT_FALSE(Changer::Restore(cs, ProgressTracker(8, 0), kLastIndex).ok()) << cs.ToString();
  }
}

// ---- ConfChange ----

TEST(ConfChangeTest, EntersJoint) {
  bool auto_leave = true;
  ConfChange one{.changes = {AddVoter(4)}};
  EXPECT_FALSE(one.EntersJoint(&auto_leave));
  EXPECT_FALSE(auto_leave);
  EXPECT_FALSE(one.IsLeaveJoint());

  ConfChange two{.changes = {AddVoter(4), Remove(3)}};
  EXPECT_TRUE(two.EntersJoint(&auto_leave));
  EXPECT_TRUE(auto_leave);

  ConfChange implicit{.transition = ConfChangeTransition::kJointImplicit, .changes = {AddVoter(4)}};
  EXPECT_TRUE(implicit.EntersJoint(&auto_leave));
  EXPECT_TRUE(auto_leave);

  ConfChange explicit_joint{.transition = ConfChangeTransition::kJointExplicit,
                            .changes = {AddVoter(4)}};
  EXPECT_TRUE(explicit_joint.EntersJoint(&auto_leave));
  EXPECT_FALSE(auto_leave);

  ConfChange leave;
  EXPECT_TRUE(leave.IsLeaveJoint());
  EXPECT_FALSE(leave.EntersJoint(&auto_leave));
  ConfChange empty_explicit{.transition = ConfChangeTransition::kJointExplicit};
  EXPECT_FALSE(empty_explicit.IsLeaveJoint());
}

TEST(ConfChangeTest, EncodeDecodeRoundTrip) {
  const std::vector<ConfChange> changes = {
      {},
      {.changes = {AddVoter(4)}, .context = "http://10.0.0.4:2380"},
      {.transition = ConfChangeTransition::kJointImplicit,
       .changes = {AddVoter(1ULL << 40), Remove(3), AddLearner(UINT64_MAX)}},
      {.transition = ConfChangeTransition::kJointExplicit,
       .changes = {AddLearner(7)},
       .context = std::string("\0\x01\xff", 3)},
  };
  for (const ConfChange& cc : changes) {
    Result<ConfChange> got = ConfChange::Decode(cc.Encode());
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_EQ(*got, cc);
  }
}

TEST(ConfChangeTest, DecodeRefusesCorruptBytes) {
  const std::string good = ConfChange{.transition = ConfChangeTransition::kJointImplicit,
                                      .changes = {AddVoter(4), Remove(300)},
                                      .context = "ctx"}
                               .Encode();
  // The layout, per types.cc: version, transition, count, (type, node)*,
  // context length, context.
  ASSERT_EQ(good, std::string("\x01\x01\x02\x00\x04\x02\xac\x02\x03"
                              "ctx",
                              12));
  struct Case {
    std::string name;
    std::string bytes;
  };
  auto with = [&](size_t pos, char byte) {
    std::string s = good;
    s[pos] = byte;
    return s;
  };
  const std::vector<Case> cases = {
      {"empty", ""},
      {"version 0", with(0, '\x00')},
      {"version 2", with(0, '\x02')},
      {"transition 3", with(1, '\x03')},
      {"count larger than the input", with(2, '\x7f')},
      {"count varint truncated", std::string("\x01\x00\x80", 3)},
      {"change type 3", with(3, '\x03')},
      {"node id 0", with(4, '\x00')},
      {"context longer than the input", with(8, '\x04')},
      {"trailing bytes", good + "x"},
  };
  for (const Case& c : cases) {
    Result<ConfChange> r = ConfChange::Decode(c.bytes);
    ASSERT_FALSE(r.ok()) << c.name;
    EXPECT_EQ(r.status().code(), StatusCode::kCorruption) << c.name;
  }
  // Every proper prefix is truncated, hence corrupt.
  for (size_t n = 0; n < good.size(); ++n) {
    EXPECT_FALSE(ConfChange::Decode(good.substr(0, n)).ok()) << "prefix of " << n;
  }
}

TEST(ConfChangeTest, DecodeSurvivesRandomBytes) {
  // Decode reads entries that arrive from other members; whatever the
  // bytes, it must return (a value or an error), never crash. ASan watches.
  SeededRandom rnd(42);
  const std::string good =
      ConfChange{.changes = {AddVoter(4), AddLearner(5)}, .context = "ab"}.Encode();
  int decoded = 0;
  for (int i = 0; i < 2000; ++i) {
    std::string s = good;
    const int flips = 1 + static_cast<int>(rnd.Uniform(3));
    for (int f = 0; f < flips; ++f)
      s[rnd.Uniform(s.size())] = static_cast<char>(rnd.Uniform(256));
    if (rnd.OneIn(4)) s.resize(rnd.Uniform(s.size() + 1));
    Result<ConfChange> r = ConfChange::Decode(s);
    if (!r.ok()) continue;
    ++decoded;
    // Whatever decodes is a well-formed change (varints may be spelled
    // long-hand, so compare values, not bytes).
    for (const ConfChangeSingle& c : r->changes)
      EXPECT_NE(c.node, kNoNode);
    Result<ConfChange> again = ConfChange::Decode(r->Encode());
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(*again, *r);
  }
  EXPECT_GT(decoded, 0);
}

}  // namespace
}  // namespace conclave::raft
