// Unit tests for quorum arithmetic (majority and joint), the in-flight
// window and the leader's per-follower Progress state machine.
#include "raft/tracker.h"

#include <gtest/gtest.h>

#include <limits>

namespace conclave::raft {
namespace {

constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();

// An acked() function over a map; members missing from it have acked nothing.
std::function<std::optional<uint64_t>(NodeId)> Acked(std::map<NodeId, uint64_t> acks) {
  return [acks = std::move(acks)](NodeId id) -> std::optional<uint64_t> {
    auto it = acks.find(id);
    if (it == acks.end()) return std::nullopt;
    return it->second;
  };
}

// ---- MajorityConfig ----

TEST(MajorityConfigTest, CommittedIndex) {
  struct Case {
    std::set<NodeId> voters;
    std::map<NodeId, uint64_t> acks;
    uint64_t want;
  };
  const std::vector<Case> cases = {
      // An empty config does not constrain a joint decision.
      {{}, {}, kMax},
      {{1}, {}, 0},
      {{1}, {{1, 12}}, 12},
      {{1, 2}, {{1, 12}}, 0},  // both must have it
      {{1, 2}, {{1, 12}, {2, 5}}, 5},
      {{1, 2, 3}, {{1, 12}}, 0},
      {{1, 2, 3}, {{1, 12}, {2, 5}}, 5},
      {{1, 2, 3}, {{1, 12}, {2, 5}, {3, 7}}, 7},
      {{1, 2, 3}, {{1, 5}, {2, 5}, {3, 5}}, 5},
      {{1, 2, 3, 4}, {{1, 12}, {2, 9}, {3, 5}, {4, 1}}, 5},  // 3 of 4 needed
      {{1, 2, 3, 4, 5}, {{1, 12}, {2, 9}, {3, 5}, {4, 1}, {5, 0}}, 5},
      {{1, 2, 3, 4, 5}, {{1, 12}, {2, 9}}, 0},
      // Acks from non-members are ignored.
      {{1, 2, 3}, {{1, 12}, {7, 12}, {8, 12}}, 0},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    MajorityConfig c(cases[i].voters);
    EXPECT_EQ(c.CommittedIndex(Acked(cases[i].acks)), cases[i].want) << "case " << i;
  }
}

TEST(MajorityConfigTest, Vote) {
  struct Case {
    std::set<NodeId> voters;
    std::map<NodeId, bool> votes;
    VoteResult want;
  };
  const std::vector<Case> cases = {
      {{}, {}, VoteResult::kWon},  // no say
      {{1}, {}, VoteResult::kPending},
      {{1}, {{1, true}}, VoteResult::kWon},
      {{1}, {{1, false}}, VoteResult::kLost},
      {{1, 2}, {{1, true}}, VoteResult::kPending},
      {{1, 2}, {{1, true}, {2, false}}, VoteResult::kLost},
      {{1, 2, 3}, {{1, true}}, VoteResult::kPending},
      {{1, 2, 3}, {{1, true}, {2, true}}, VoteResult::kWon},
      {{1, 2, 3}, {{1, true}, {2, false}}, VoteResult::kPending},
      {{1, 2, 3}, {{1, false}, {2, false}}, VoteResult::kLost},
      {{1, 2, 3, 4}, {{1, true}, {2, true}}, VoteResult::kPending},
      {{1, 2, 3, 4}, {{1, true}, {2, true}, {3, false}, {4, false}}, VoteResult::kLost},
      {{1, 2, 3, 4}, {{1, true}, {2, true}, {3, true}}, VoteResult::kWon},
      {{1, 2, 3, 4, 5}, {{1, true}, {2, false}, {3, false}, {4, false}}, VoteResult::kLost},
      // Votes from non-members do not count.
      {{1, 2, 3}, {{1, true}, {8, true}, {9, true}}, VoteResult::kPending},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    MajorityConfig c(cases[i].voters);
    EXPECT_EQ(c.Vote(cases[i].votes), cases[i].want) << "case " << i;
  }
}

// ---- JointConfig ----

TEST(JointConfigTest, CommittedIndexNeedsBothMajorities) {
  JointConfig j{MajorityConfig({1, 2, 3}), MajorityConfig()};
  // Not joint: the outgoing config has no say.
  EXPECT_EQ(j.CommittedIndex(Acked({{1, 10}, {2, 8}, {3, 2}})), 8u);

  j.outgoing = MajorityConfig({1, 4, 5});
  // Incoming {1,2,3} has 8; outgoing {1,4,5} has only 2.
  EXPECT_EQ(j.CommittedIndex(Acked({{1, 10}, {2, 8}, {3, 2}, {4, 2}, {5, 0}})), 2u);
  EXPECT_EQ(j.CommittedIndex(Acked({{1, 10}, {2, 8}, {3, 2}, {4, 9}, {5, 0}})), 8u);
  EXPECT_EQ(j.CommittedIndex(Acked({{1, 10}, {2, 3}, {3, 2}, {4, 9}, {5, 9}})), 3u);
  EXPECT_EQ(j.Ids(), (std::set<NodeId>{1, 2, 3, 4, 5}));
  EXPECT_TRUE(j.Contains(5));
  EXPECT_TRUE(j.Contains(2));
  EXPECT_FALSE(j.Contains(6));
}

TEST(JointConfigTest, Vote) {
  JointConfig j{MajorityConfig({1, 2, 3}), MajorityConfig({3, 4, 5})};
  struct Case {
    std::map<NodeId, bool> votes;
    VoteResult want;
  };
  const std::vector<Case> cases = {
      {{}, VoteResult::kPending},
      {{{1, true}, {2, true}}, VoteResult::kPending},  // incoming won, outgoing pending
      {{{1, true}, {2, true}, {3, true}}, VoteResult::kPending},
      {{{1, true}, {2, true}, {3, true}, {4, true}}, VoteResult::kWon},
      {{{3, true}, {4, true}, {5, true}}, VoteResult::kPending},
      {{{1, true}, {3, true}, {5, true}}, VoteResult::kWon},
      {{{1, false}, {2, false}, {4, true}, {5, true}}, VoteResult::kLost},  // incoming lost
      {{{1, true}, {2, true}, {4, false}, {5, false}}, VoteResult::kLost},  // outgoing lost
      {{{3, false}, {1, true}, {2, true}, {4, true}}, VoteResult::kPending},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    EXPECT_EQ(j.Vote(cases[i].votes), cases[i].want) << "case " << i;
  }
  // Not joint: only the incoming config decides.
  JointConfig simple{MajorityConfig({1, 2, 3}), MajorityConfig()};
  EXPECT_EQ(simple.Vote({{1, true}, {2, true}}), VoteResult::kWon);
  EXPECT_EQ(simple.Vote({{1, false}, {2, false}}), VoteResult::kLost);
}

TEST(TrackerConfigTest, ToConfState) {
  TrackerConfig c;
  c.voters.incoming = MajorityConfig({1, 2, 4});
  c.voters.outgoing = MajorityConfig({1, 2, 3});
  c.learners = {5};
  c.learners_next = {3};
  c.auto_leave = true;
  EXPECT_TRUE(c.IsJoint());
  const ConfState cs = c.ToConfState();
  EXPECT_EQ(cs.voters, (std::vector<NodeId>{1, 2, 4}));
  EXPECT_EQ(cs.voters_outgoing, (std::vector<NodeId>{1, 2, 3}));
  EXPECT_EQ(cs.learners, (std::vector<NodeId>{5}));
  EXPECT_EQ(cs.learners_next, (std::vector<NodeId>{3}));
  EXPECT_TRUE(cs.auto_leave);
  EXPECT_EQ(c.ToString(), "voters=(1 2 4)&&(1 2 3) learners=(5) learners_next=(3) autoleave");
}

// ---- Inflights ----

TEST(InflightsTest, CountLimit) {
  Inflights in(3, 0);
  EXPECT_FALSE(in.Full());
  in.Add(5, 100);
  in.Add(7, 100);
  EXPECT_FALSE(in.Full());
  in.Add(10, 100);
  EXPECT_TRUE(in.Full());
  EXPECT_EQ(in.Count(), 3u);
  EXPECT_DEATH(in.Add(11, 1), "overflow");

  in.FreeLE(4);  // nothing that old
  EXPECT_EQ(in.Count(), 3u);
  in.FreeLE(8);  // frees 5 and 7
  EXPECT_EQ(in.Count(), 1u);
  EXPECT_FALSE(in.Full());
  in.Add(12, 1);
  in.FreeLE(100);
  EXPECT_EQ(in.Count(), 0u);
}

TEST(InflightsTest, ByteLimit) {
  Inflights in(100, 1000);
  in.Add(1, 600);
  EXPECT_FALSE(in.Full());
  in.Add(2, 400);
  EXPECT_TRUE(in.Full());  // exactly at the limit
  in.FreeLE(1);
  EXPECT_FALSE(in.Full());
  in.Add(3, 5000);  // one big message may go out alone
  EXPECT_TRUE(in.Full());
  in.Reset();
  EXPECT_EQ(in.Count(), 0u);
  EXPECT_FALSE(in.Full());
}

TEST(InflightsTest, FreeFirstOneIgnoresIndexes) {
  Inflights in(2, 0);
  in.Add(10, 1);  // carries entries up to 10, say 6..10
  in.Add(20, 1);
  in.FreeFirstOne();
  EXPECT_EQ(in.Count(), 1u);
  in.FreeFirstOne();
  in.FreeFirstOne();  // empty: no-op
  EXPECT_EQ(in.Count(), 0u);
}

TEST(InflightsTest, MustBeAddedInOrder) {
  Inflights in(5, 0);
  in.Add(5, 1);
  EXPECT_DEATH(in.Add(5, 1), "not after");
  EXPECT_DEATH(in.Add(4, 1), "not after");
}

// ---- Progress ----

Progress NewProgress(uint64_t next, size_t max_inflight = 4) {
  return Progress(next, max_inflight, 0, /*learner=*/false);
}

TEST(ProgressTest, StartsProbing) {
  Progress pr = NewProgress(6);
  EXPECT_EQ(pr.state, ProgressState::kProbe);
  EXPECT_EQ(pr.match, 0u);
  EXPECT_EQ(pr.next, 6u);
  EXPECT_FALSE(pr.IsPaused());
  EXPECT_TRUE(pr.recent_active);
}

TEST(ProgressTest, ProbeSendsOneAppendAtATime) {
  Progress pr = NewProgress(6);
  pr.SentEntries(8, 3, 30);
  EXPECT_TRUE(pr.IsPaused());
  EXPECT_EQ(pr.next, 6u);  // a probe does not move next optimistically
  // The answer unpauses it.
  EXPECT_TRUE(pr.MaybeUpdate(8));
  EXPECT_FALSE(pr.IsPaused());
  EXPECT_EQ(pr.match, 8u);
  EXPECT_EQ(pr.next, 9u);
}

TEST(ProgressTest, MaybeUpdate) {
  Progress pr = NewProgress(6);
  pr.match = 4;
  EXPECT_FALSE(pr.MaybeUpdate(3));  // stale
  EXPECT_EQ(pr.match, 4u);
  EXPECT_EQ(pr.next, 6u);
  EXPECT_FALSE(pr.MaybeUpdate(4));
  EXPECT_TRUE(pr.MaybeUpdate(5));
  EXPECT_EQ(pr.match, 5u);
  EXPECT_EQ(pr.next, 6u);
  EXPECT_TRUE(pr.MaybeUpdate(9));
  EXPECT_EQ(pr.next, 10u);
}

TEST(ProgressTest, ReplicateStreamsUpToWindow) {
  Progress pr = NewProgress(6, /*max_inflight=*/2);
  pr.match = 5;
  pr.BecomeReplicate();
  EXPECT_EQ(pr.next, 6u);
  pr.SentEntries(7, 2, 20);
  EXPECT_EQ(pr.next, 8u);  // optimistic
  EXPECT_FALSE(pr.IsPaused());
  pr.SentEntries(9, 2, 20);
  EXPECT_EQ(pr.next, 10u);
  EXPECT_TRUE(pr.IsPaused());
  pr.SentEntries(9, 0, 0);  // an empty append takes no slot
  EXPECT_EQ(pr.inflights.Count(), 2u);
  EXPECT_TRUE(pr.MaybeUpdate(7));
  pr.inflights.FreeLE(7);
  EXPECT_FALSE(pr.IsPaused());
}

TEST(ProgressTest, MaybeDecreaseToInReplicate) {
  Progress pr = NewProgress(6);
  pr.match = 5;
  pr.BecomeReplicate();
  pr.SentEntries(9, 4, 0);
  EXPECT_EQ(pr.next, 10u);
  // A rejection at or below the match is stale (reordered messages).
  EXPECT_FALSE(pr.MaybeDecreaseTo(5, 5));
  EXPECT_FALSE(pr.MaybeDecreaseTo(3, 0));
  EXPECT_EQ(pr.next, 10u);
  // Otherwise resume right after the match; the hint is not needed.
  EXPECT_TRUE(pr.MaybeDecreaseTo(8, 2));
  EXPECT_EQ(pr.next, 6u);
}

TEST(ProgressTest, MaybeDecreaseToInProbe) {
  struct Case {
    uint64_t match, next, rejected, hint;
    bool want_ok;
    uint64_t want_next;
  };
  const std::vector<Case> cases = {
      // Only the rejection of the append we sent (at next - 1) counts.
      {0, 10, 5, 5, false, 10}, {0, 10, 10, 5, false, 10},
      {0, 10, 9, 9, true, 9},                            // hint no help: back off by one
      {0, 10, 9, 4, true, 5},                            // jump to just after the hint
      {0, 10, 9, 0, true, 1},   {3, 10, 9, 1, true, 4},  // never below match + 1
      {0, 10, 9, 20, true, 9},                           // a hint beyond the rejection is capped
      {0, 1, 0, 0, true, 1},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    Progress pr = NewProgress(c.next);
    pr.match = c.match;
    pr.SentEntries(c.next, 1, 1);
    EXPECT_EQ(pr.MaybeDecreaseTo(c.rejected, c.hint), c.want_ok) << "case " << i;
    EXPECT_EQ(pr.next, c.want_next) << "case " << i;
    // An accepted rejection lets the next probe go out.
    EXPECT_EQ(pr.IsPaused(), !c.want_ok) << "case " << i;
  }
}

TEST(ProgressTest, SnapshotState) {
  Progress pr = NewProgress(3);
  pr.match = 2;
  pr.BecomeSnapshot(20);
  EXPECT_EQ(pr.state, ProgressState::kSnapshot);
  EXPECT_EQ(pr.pending_snapshot, 20u);
  EXPECT_TRUE(pr.IsPaused());
  EXPECT_DEATH(pr.SentEntries(5, 1, 1), "");
  // Back to probing after the snapshot, from just past it.
  pr.BecomeProbe();
  EXPECT_EQ(pr.state, ProgressState::kProbe);
  EXPECT_EQ(pr.next, 21u);
  EXPECT_EQ(pr.pending_snapshot, 0u);
  EXPECT_FALSE(pr.IsPaused());

  // If the follower got further than the snapshot meanwhile, from its match.
  pr.BecomeSnapshot(20);
  pr.MaybeUpdate(25);
  pr.BecomeProbe();
  EXPECT_EQ(pr.next, 26u);
}

TEST(ProgressTest, BecomeProbeFromReplicateRestartsAfterMatch) {
  Progress pr = NewProgress(6);
  pr.match = 5;
  pr.BecomeReplicate();
  pr.SentEntries(8, 3, 0);
  pr.SentEntries(9, 1, 0);
  pr.BecomeProbe();
  EXPECT_EQ(pr.next, 6u);
  EXPECT_EQ(pr.inflights.Count(), 0u);
  EXPECT_FALSE(pr.IsPaused());
}

TEST(ProgressTest, ToString) {
  Progress pr(4, 8, 0, /*learner=*/true);
  pr.match = 3;
  EXPECT_EQ(pr.ToString(), "probe match=3 next=4 learner");
  pr.BecomeSnapshot(9);
  EXPECT_EQ(pr.ToString(), "snapshot match=3 next=4 learner pending_snap=9");
}

// ---- ProgressTracker ----

ProgressTracker Tracker(const std::set<NodeId>& voters, const std::set<NodeId>& outgoing = {},
                        const std::set<NodeId>& learners = {}) {
  ProgressTracker t(8, 0);
  t.config().voters.incoming = MajorityConfig(voters);
  t.config().voters.outgoing = MajorityConfig(outgoing);
  t.config().learners = learners;
  std::set<NodeId> all = voters;
  all.insert(outgoing.begin(), outgoing.end());
  for (NodeId id : all)
    t.progress().emplace(id, Progress(1, 8, 0, false));
  for (NodeId id : learners)
    t.progress().emplace(id, Progress(1, 8, 0, true));
  return t;
}

TEST(ProgressTrackerTest, CommittedIgnoresLearners) {
  ProgressTracker t = Tracker({1, 2, 3}, {}, {4, 5});
  t.Find(1)->match = 10;
  t.Find(4)->match = 10;
  t.Find(5)->match = 10;
  EXPECT_EQ(t.Committed(), 0u);
  t.Find(3)->match = 7;
  EXPECT_EQ(t.Committed(), 7u);
  EXPECT_TRUE(t.IsSingleton() == false);
  EXPECT_EQ(t.VoterIds(), (std::vector<NodeId>{1, 2, 3}));
  EXPECT_EQ(t.AllIds(), (std::vector<NodeId>{1, 2, 3, 4, 5}));
  EXPECT_EQ(t.Find(9), nullptr);
}

TEST(ProgressTrackerTest, CommittedInJointConfig) {
  ProgressTracker t = Tracker({1, 2, 3}, {1, 4, 5});
  t.Find(1)->match = 10;
  t.Find(2)->match = 10;
  t.Find(3)->match = 10;
  EXPECT_EQ(t.Committed(), 0u);  // the outgoing majority has nothing
  t.Find(4)->match = 6;
  EXPECT_EQ(t.Committed(), 6u);
  EXPECT_EQ(t.VoterIds(), (std::vector<NodeId>{1, 2, 3, 4, 5}));
}

TEST(ProgressTrackerTest, QuorumActive) {
  ProgressTracker t = Tracker({1, 2, 3}, {}, {4});
  for (auto& [id, pr] : t.progress())
    pr.recent_active = false;
  t.Find(1)->recent_active = true;
  t.Find(4)->recent_active = true;  // learners do not make a quorum
  EXPECT_FALSE(t.QuorumActive());
  t.Find(3)->recent_active = true;
  EXPECT_TRUE(t.QuorumActive());

  ProgressTracker joint = Tracker({1, 2, 3}, {1, 4, 5});
  for (auto& [id, pr] : joint.progress())
    pr.recent_active = false;
  joint.Find(1)->recent_active = true;
  joint.Find(2)->recent_active = true;
  EXPECT_FALSE(joint.QuorumActive());
  joint.Find(5)->recent_active = true;
  EXPECT_TRUE(joint.QuorumActive());
}

TEST(ProgressTrackerTest, TallyVotes) {
  ProgressTracker t = Tracker({1, 2, 3}, {}, {4});
  int granted = 0;
  int rejected = 0;
  t.RecordVote(1, true);
  t.RecordVote(4, true);  // a learner's vote is not counted
  EXPECT_EQ(t.TallyVotes(&granted, &rejected), VoteResult::kPending);
  EXPECT_EQ(granted, 1);
  EXPECT_EQ(rejected, 0);
  t.RecordVote(2, false);
  t.RecordVote(2, true);  // the first answer sticks
  EXPECT_EQ(t.TallyVotes(&granted, &rejected), VoteResult::kPending);
  EXPECT_EQ(rejected, 1);
  t.RecordVote(3, true);
  EXPECT_EQ(t.TallyVotes(&granted, &rejected), VoteResult::kWon);
  EXPECT_EQ(granted, 2);
  t.ResetVotes();
  EXPECT_EQ(t.TallyVotes(&granted, &rejected), VoteResult::kPending);
  EXPECT_EQ(granted, 0);
}

TEST(ProgressTrackerTest, SingletonIsOneVoterNotJoint) {
  EXPECT_TRUE(Tracker({1}).IsSingleton());
  EXPECT_TRUE(Tracker({1}, {}, {2}).IsSingleton());
  EXPECT_FALSE(Tracker({1}, {1, 2}).IsSingleton());
  EXPECT_FALSE(Tracker({1, 2}).IsSingleton());
}

}  // namespace
}  // namespace conclave::raft
