// Scenario tests named after the sections of the Raft paper ("In Search of
// an Understandable Consensus Algorithm", extended version) whose rules they
// check. Several Nodes talk through a TestNetwork that the test drives by
// hand; every run is deterministic (fixed seeds, explicit ticks).
//
// Index 1 of every group is the bootstrap snapshot, so the paper's index i
// is index i + 1 here.
#include <gtest/gtest.h>

#include "raft/raft.h"
#include "raft/test_network.h"

namespace conclave::raft {
namespace {

Message Msg(MessageType type, NodeId from, NodeId to, uint64_t term) {
  Message m;
  m.type = type;
  m.group = TestNetwork::kGroup;
  m.from = from;
  m.to = to;
  m.term = term;
  return m;
}

// Handles `id`'s Ready and returns (removing them from the queue) the
// messages it sent.
std::vector<Message> Outbox(TestNetwork& net, NodeId id) {
  while (net.ProcessReady(id)) {
  }
  return net.Take([id](const Message& m) { return m.from == id; });
}

std::vector<Message> OfType(const std::vector<Message>& msgs, MessageType type) {
  std::vector<Message> out;
  for (const Message& m : msgs) {
    if (m.type == type) out.push_back(m);
  }
  return out;
}

// A three-member group with node 1 elected leader and its first entry
// committed everywhere.
std::unique_ptr<TestNetwork> ThreeWithLeader(Config config = ScenarioConfig()) {
  auto net = TestNetwork::Bootstrapped({1, 2, 3}, config);
  EXPECT_TRUE(net->node(1).Campaign().ok());
  net->Settle();
  EXPECT_EQ(net->node(1).role(), Role::kLeader);
  return net;
}

// ---- 5.1 Raft basics ----

// Every member starts as a follower in the bootstrap term.
TEST(PaperTest, StartsAsFollower_5_1) {
  auto net = TestNetwork::Bootstrapped({1, 2, 3}, ScenarioConfig());
  for (NodeId id : net->ids()) {
    EXPECT_EQ(net->node(id).role(), Role::kFollower);
    EXPECT_EQ(net->node(id).term(), 1u);
    EXPECT_EQ(net->node(id).leader(), kNoNode);
    EXPECT_FALSE(net->node(id).HasReady());
  }
}

// "If a server's current term is smaller than the other's, it updates its
// current term to the larger value. If a candidate or leader discovers that
// its term is out of date, it immediately reverts to follower state."
TEST(PaperTest, EveryRoleUpdatesTermFromHigherTermMessage_5_1) {
  for (Role role : {Role::kFollower, Role::kPreCandidate, Role::kCandidate, Role::kLeader}) {
    SCOPED_TRACE(RoleName(role));
    Config config = ScenarioConfig();
    config.pre_vote = role == Role::kPreCandidate;
    auto net = TestNetwork::Bootstrapped({1, 2, 3}, config);
    if (role != Role::kFollower) {
      ASSERT_TRUE(net->node(1).Campaign().ok());
    }
    if (role == Role::kLeader) net->Settle();
    ASSERT_EQ(net->node(1).role(), role);

    Message hb = Msg(MessageType::kHeartbeat, 2, 1, 5);
    ASSERT_TRUE(net->node(1).Step(hb).ok());
    EXPECT_EQ(net->node(1).role(), Role::kFollower);
    EXPECT_EQ(net->node(1).term(), 5u);
    EXPECT_EQ(net->node(1).leader(), 2u);
  }
}

// A leader steps down when any answer reveals a newer term, even one that
// carries no leader.
TEST(PaperTest, LeaderStepsDownOnHigherTermResponse_5_1) {
  auto net = ThreeWithLeader();
  Message resp = Msg(MessageType::kAppendResponse, 3, 1, 9);
  resp.index = 2;
  ASSERT_TRUE(net->node(1).Step(resp).ok());
  EXPECT_EQ(net->node(1).role(), Role::kFollower);
  EXPECT_EQ(net->node(1).term(), 9u);
  EXPECT_EQ(net->node(1).leader(), kNoNode);
  EXPECT_EQ(net->node(1).Propose("x").code(), StatusCode::kUnavailable);
}

TEST(PaperTest, CandidateStepsDownOnHigherTermRejection_5_1) {
  Config config = ScenarioConfig();
  config.pre_vote = false;
  auto net = TestNetwork::Bootstrapped({1, 2, 3}, config);
  ASSERT_TRUE(net->node(1).Campaign().ok());
  ASSERT_EQ(net->node(1).role(), Role::kCandidate);
  Message resp = Msg(MessageType::kVoteResponse, 2, 1, 7);
  resp.reject = true;
  ASSERT_TRUE(net->node(1).Step(resp).ok());
  EXPECT_EQ(net->node(1).role(), Role::kFollower);
  EXPECT_EQ(net->node(1).term(), 7u);
}

// "If a server receives a request with a stale term number, it rejects the
// request": a deposed leader's append changes nothing, and the reply tells
// it the newer term so it steps down.
TEST(PaperTest, StaleTermAppendIsRejected_5_1) {
  auto net = ThreeWithLeader();
  const uint64_t last = net->node(2).log().LastIndex();
  ASSERT_TRUE(net->node(2).Step(Msg(MessageType::kHeartbeat, 3, 2, 7)).ok());  // 3 leads term 7
  Outbox(*net, 2);

  Message stale = Msg(MessageType::kAppend, 1, 2, 2);
  stale.index = last;
  stale.log_term = 2;
  stale.entries = {Entry{.term = 2, .index = last + 1, .data = "stale"}};
  ASSERT_TRUE(net->node(2).Step(stale).ok());
  EXPECT_EQ(net->node(2).log().LastIndex(), last);
  EXPECT_EQ(net->node(2).term(), 7u);
  EXPECT_EQ(net->node(2).leader(), 3u);
  std::vector<Message> out = OfType(Outbox(*net, 2), MessageType::kAppendResponse);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].to, 1u);
  EXPECT_EQ(out[0].term, 7u);

  net->Deliver(out[0]);
  EXPECT_EQ(net->node(1).role(), Role::kFollower);
  EXPECT_EQ(net->node(1).term(), 7u);
}

// ---- 5.2 Leader election ----

TEST(PaperTest, LeaderSendsHeartbeats_5_2) {
  auto net = ThreeWithLeader();
  net->node(1).Tick();  // heartbeat_ticks = 1
  std::vector<Message> hbs = OfType(Outbox(*net, 1), MessageType::kHeartbeat);
  ASSERT_EQ(hbs.size(), 2u);
  EXPECT_EQ(hbs[0].to, 2u);
  EXPECT_EQ(hbs[1].to, 3u);
  for (const Message& m : hbs) {
    EXPECT_EQ(m.term, net->node(1).term());
    EXPECT_EQ(m.commit, net->node(1).log().committed());
  }
}

// Without PreVote, a follower that hears nothing for an election timeout
// becomes a candidate: it increments its term, votes for itself and asks
// every other voter for its vote.
TEST(PaperTest, FollowerStartsElection_5_2) {
  Config config = ScenarioConfig();
  config.pre_vote = false;
  auto net = TestNetwork::Bootstrapped({1, 2, 3}, config);
  int ticks = 0;
  while (net->node(1).role() == Role::kFollower && ticks < 100) {
    net->node(1).Tick();
    ++ticks;
  }
  EXPECT_GE(ticks, config.election_ticks);
  EXPECT_LT(ticks, 2 * config.election_ticks);
  EXPECT_EQ(net->node(1).role(), Role::kCandidate);
  EXPECT_EQ(net->node(1).term(), 2u);
  EXPECT_EQ(net->node(1).GetStatus().vote, 1u);
  std::vector<Message> votes = OfType(Outbox(*net, 1), MessageType::kVote);
  ASSERT_EQ(votes.size(), 2u);
  for (const Message& m : votes) {
    EXPECT_EQ(m.term, 2u);
    EXPECT_EQ(m.index, 1u);  // last log index and term, for the voters' log check
    EXPECT_EQ(m.log_term, 1u);
  }
  // The vote for itself is persisted before the requests go out.
  EXPECT_EQ(net->storage(1).InitialHardState().vote, 1u);
}

// The paper's randomized election timeouts: each follower waits between
// election_ticks and 2 * election_ticks, different members (and seeds)
// differently, so that usually one times out alone.
TEST(PaperTest, ElectionTimeoutIsRandomized_5_2) {
  std::set<int> timeouts;
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    Config config = ScenarioConfig(seed);
    auto net = TestNetwork::Bootstrapped({1, 2, 3}, config);
    int ticks = 0;
    while (net->node(2).role() == Role::kFollower && ticks < 100) {
      net->node(2).Tick();
      ++ticks;
    }
    EXPECT_GE(ticks, config.election_ticks) << "seed " << seed;
    EXPECT_LT(ticks, 2 * config.election_ticks) << "seed " << seed;
    timeouts.insert(ticks);
  }
  EXPECT_GE(timeouts.size(), 4u);
}

// A candidate wins with votes from a majority, loses once a majority
// refused, and otherwise waits.
TEST(PaperTest, CandidateNeedsMajority_5_2) {
  struct Case {
    std::map<NodeId, bool> votes;
    Role want;
  };
  const std::vector<Case> cases = {
      {{}, Role::kCandidate},
      {{{2, true}}, Role::kCandidate},
      {{{2, true}, {3, true}}, Role::kLeader},
      {{{2, false}, {3, false}}, Role::kCandidate},
      {{{2, false}, {3, false}, {4, false}}, Role::kFollower},
      {{{2, false}, {3, true}, {4, false}, {5, true}}, Role::kLeader},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    Config config = ScenarioConfig();
    config.pre_vote = false;
    auto net = TestNetwork::Bootstrapped({1, 2, 3, 4, 5}, config);
    ASSERT_TRUE(net->node(1).Campaign().ok());
    for (const auto& [from, granted] : cases[i].votes) {
      Message resp = Msg(MessageType::kVoteResponse, from, 1, 2);
      resp.reject = !granted;
      ASSERT_TRUE(net->node(1).Step(resp).ok());
    }
    EXPECT_EQ(net->node(1).role(), cases[i].want) << "case " << i;
    EXPECT_EQ(net->node(1).term(), 2u) << "case " << i;
  }
}

// "Each server will vote for at most one candidate in a given term, on a
// first-come-first-served basis."
TEST(PaperTest, VoterGrantsOneVotePerTerm_5_2) {
  auto net = TestNetwork::Bootstrapped({1, 2, 3}, ScenarioConfig());
  auto vote_from = [&](NodeId from) {
    Message m = Msg(MessageType::kVote, from, 1, 2);
    m.index = 1;
    m.log_term = 1;
    EXPECT_TRUE(net->node(1).Step(m).ok());
    std::vector<Message> out = OfType(Outbox(*net, 1), MessageType::kVoteResponse);
    EXPECT_EQ(out.size(), 1u);
    return !out.empty() && !out[0].reject;
  };
  EXPECT_TRUE(vote_from(2));
  EXPECT_FALSE(vote_from(3));
  EXPECT_TRUE(vote_from(2));  // a repeated request gets the same answer
  EXPECT_EQ(net->storage(1).InitialHardState(), (HardState{2, 2, 1}));
}

// "While waiting for votes, a candidate may receive an AppendEntries RPC
// from another server claiming to be leader. If the leader's term is at
// least as large as the candidate's current term, then the candidate
// recognizes the leader as legitimate and returns to follower state."
TEST(PaperTest, CandidateFollowsLeaderOfSameTerm_5_2) {
  Config config = ScenarioConfig();
  config.pre_vote = false;
  auto net = TestNetwork::Bootstrapped({1, 2, 3}, config);
  ASSERT_TRUE(net->node(1).Campaign().ok());
  ASSERT_EQ(net->node(1).term(), 2u);
  Message app = Msg(MessageType::kAppend, 3, 1, 2);
  app.index = 1;
  app.log_term = 1;
  app.entries = {Entry{.term = 2, .index = 2}};
  ASSERT_TRUE(net->node(1).Step(app).ok());
  EXPECT_EQ(net->node(1).role(), Role::kFollower);
  EXPECT_EQ(net->node(1).leader(), 3u);
  EXPECT_EQ(net->node(1).term(), 2u);
  EXPECT_EQ(net->node(1).log().LastIndex(), 2u);
}

// Elections from a cold start, with randomized timeouts, PreVote and
// CheckQuorum as in production: whatever the seed, exactly one leader
// emerges quickly and every member follows it.
TEST(PaperTest, LeaderElectionWithRandomizedTimeouts_5_2) {
  for (uint64_t seed = 1; seed <= 10; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    Config config;
    config.random_seed = seed;
    auto net = TestNetwork::Bootstrapped({1, 2, 3, 4, 5}, config);
    int ticks = 0;
    NodeId lead = kNoNode;
    while (ticks < 10 * config.election_ticks) {
      net->TickAll();
      ++ticks;
      lead = net->Leader();
      if (lead != kNoNode) break;
    }
    ASSERT_NE(lead, kNoNode);
    EXPECT_LT(ticks, 4 * config.election_ticks);
    net->TickAll(3);
    EXPECT_EQ(net->Leader(), lead);
    const uint64_t term = net->node(lead).term();
    EXPECT_LE(term, 3u);  // PreVote keeps failed rounds from inflating terms
    for (NodeId id : net->ids()) {
      EXPECT_EQ(net->node(id).leader(), lead) << id;
      EXPECT_EQ(net->node(id).term(), term) << id;
      EXPECT_EQ(net->node(id).log().committed(), 2u) << id;
    }
  }
}

// ---- 5.3 Log replication ----

// "A log entry is committed once the leader that created the entry has
// replicated it on a majority of the servers", and the leader tells the
// followers in later appends (and heartbeats).
TEST(PaperTest, LeaderCommitsOnMajority_5_3) {
  auto net = ThreeWithLeader();
  ASSERT_TRUE(net->node(1).Propose("x").ok());
  std::vector<Message> apps = OfType(Outbox(*net, 1), MessageType::kAppend);
  ASSERT_EQ(apps.size(), 2u);
  const uint64_t index = apps[0].entries.at(0).index;
  EXPECT_EQ(net->node(1).log().committed(), index - 1);

  // Follower 2 stores it and acknowledges; 3 never hears of it.
  net->Deliver(apps[0]);
  std::vector<Message> acks = Outbox(*net, 2);
  ASSERT_EQ(acks.size(), 1u);
  EXPECT_EQ(net->node(2).log().committed(), index - 1);
  net->Deliver(acks[0]);
  EXPECT_EQ(net->node(1).log().committed(), index);
  net->Settle();
  // The leader tells the followers the new commit index in its next
  // appends; the one that lost its append is repaired on the way.
  for (NodeId id : net->ids()) {
    EXPECT_EQ(net->node(id).log().committed(), index) << id;
    EXPECT_EQ(net->applied(id), (std::vector<std::string>{"x"})) << id;
  }
  net->ExpectAppliedConsistent();
}

// Followers apply committed entries in log order, and all the same ones.
TEST(PaperTest, FollowersApplyCommittedEntriesInOrder_5_3) {
  auto net = ThreeWithLeader();
  std::vector<std::string> want;
  for (int i = 0; i < 20; ++i) {
    want.push_back("v" + std::to_string(i));
    ASSERT_TRUE(net->node(1).Propose(want.back()).ok());
    if (i % 3 == 0) net->Settle();
  }
  net->Settle();
  net->TickAll();
  for (NodeId id : net->ids())
    EXPECT_EQ(net->applied(id), want) << id;
  net->ExpectAppliedConsistent();
}

// The consistency check: a follower refuses entries whose predecessor it
// does not hold, and says where its log could agree.
TEST(PaperTest, FollowerRejectsAppendWithoutMatchingPredecessor_5_3) {
  TestNetwork net(ScenarioConfig());
  net.Add(1, StorageWithLog({1, 2, 3}, {2, 2, 3}, 3));  // indexes 2..4
  Message app = Msg(MessageType::kAppend, 2, 1, 5);
  app.index = 6;  // beyond our log
  app.log_term = 5;
  app.entries = {Entry{.term = 5, .index = 7}};
  ASSERT_TRUE(net.node(1).Step(app).ok());
  std::vector<Message> out = OfType(Outbox(net, 1), MessageType::kAppendResponse);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(out[0].reject);
  EXPECT_EQ(out[0].index, 6u);
  EXPECT_EQ(out[0].reject_hint, 4u);  // our last index
  EXPECT_EQ(out[0].log_term, 3u);
  EXPECT_EQ(net.node(1).log().LastIndex(), 4u);

  app.index = 4;  // we hold index 4, but of term 3
  app.log_term = 4;
  app.entries = {Entry{.term = 5, .index = 5}};
  ASSERT_TRUE(net.node(1).Step(app).ok());
  out = OfType(Outbox(net, 1), MessageType::kAppendResponse);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(out[0].reject);
  EXPECT_EQ(out[0].reject_hint, 4u);  // term 3 <= 4 already at index 4
  EXPECT_EQ(out[0].log_term, 3u);

  app.log_term = 3;  // now it matches
  ASSERT_TRUE(net.node(1).Step(app).ok());
  out = OfType(Outbox(net, 1), MessageType::kAppendResponse);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_FALSE(out[0].reject);
  EXPECT_EQ(out[0].index, 5u);
  EXPECT_EQ(net.storage(1).LastIndex(), 5u);
}

// The planted bug that skips the consistency check takes entries whose
// predecessor does not match, which the test above forbids.
TEST(PaperTest, SkipLogMatchingBugAcceptsMismatchedAppend_5_3) {
  Config config = ScenarioConfig();
  config.bugs.skip_log_matching_check = true;
  TestNetwork net(config);
  net.Add(1, StorageWithLog({1, 2, 3}, {2, 2, 3}, 3));
  Message app = Msg(MessageType::kAppend, 2, 1, 5);
  app.index = 4;
  app.log_term = 4;  // we hold index 4 of term 3
  app.entries = {Entry{.term = 5, .index = 5}};
  ASSERT_TRUE(net.node(1).Step(app).ok());
  std::vector<Message> out = OfType(Outbox(net, 1), MessageType::kAppendResponse);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_FALSE(out[0].reject);
}

// Figure 7: when a leader comes to power, followers may be missing entries,
// have extra uncommitted entries, or both. The leader forces their logs to
// duplicate its own, finding the point of agreement in few round trips.
TEST(PaperTest, Figure7_LeaderBringsEveryFollowerInLine_5_3) {
  // The leader's log, indexes 2..11 (the paper's 1..10).
  const std::vector<uint64_t> leader_log = {1, 1, 1, 4, 4, 5, 5, 6, 6, 6};
  struct Case {
    std::string name;
    std::vector<uint64_t> follower_log;
  };
  const std::vector<Case> cases = {
      {"a: one missing", {1, 1, 1, 4, 4, 5, 5, 6, 6}},
      {"b: many missing", {1, 1, 1, 4}},
      {"c: one extra", {1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6}},
      {"d: extra of a later term", {1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7}},
      {"e: missing and conflicting", {1, 1, 1, 4, 4, 4, 4}},
      {"f: conflicting from early on", {1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    TestNetwork net(ScenarioConfig());
    // Node 2 shares the leader's log and gives it the votes it needs; node
    // 3 is the follower of the figure.
    net.Add(1, StorageWithLog({1, 2, 3}, leader_log, 7));
    net.Add(2, StorageWithLog({1, 2, 3}, leader_log, 7));
    net.Add(3, StorageWithLog({1, 2, 3}, c.follower_log, 7));
    ASSERT_TRUE(net.node(1).Campaign().ok());
    net.Settle();
    ASSERT_EQ(net.node(1).role(), Role::kLeader);
    EXPECT_EQ(net.node(1).term(), 8u);
    net.TickAll();

    EXPECT_EQ(LogTerms(net.storage(3)), LogTerms(net.storage(1)));
    EXPECT_EQ(net.node(3).log().committed(), 12u);
    EXPECT_EQ(net.storage(3).LastIndex(), 12u);
    EXPECT_EQ(*net.storage(3).Term(12), 8u);
    const size_t rejections = net.CountSent([](const Message& m) {
      return m.from == 3 && m.type == MessageType::kAppendResponse && m.reject;
    });
    EXPECT_LE(rejections, 1u);
    net.ExpectAppliedConsistent();
  }
}

// Appends are idempotent: a duplicated or replayed append changes nothing.
TEST(PaperTest, DuplicateAppendsAreHarmless_5_5) {
  auto net = ThreeWithLeader();
  ASSERT_TRUE(net->node(1).Propose("a").ok());
  ASSERT_TRUE(net->node(1).Propose("b").ok());
  while (net->ProcessReady(1)) {
  }
  std::vector<Message> copy = net->queue();
  net->Settle();
  for (const Message& m : copy)
    net->Deliver(m);  // replay every message
  net->Settle();
  ASSERT_TRUE(net->node(1).Propose("c").ok());
  net->Settle();
  net->TickAll();
  for (NodeId id : net->ids()) {
    EXPECT_EQ(net->applied(id), (std::vector<std::string>{"a", "b", "c"})) << id;
  }
  net->ExpectAppliedConsistent();
}

// ---- 5.4 Safety ----

// 5.4.1: a voter refuses candidates whose log is less up-to-date than its
// own: compare the last terms, then the lengths. PreVote applies the same
// rule.
TEST(PaperTest, VoteRejectedForStaleLog_5_4_1) {
  struct Case {
    uint64_t index, log_term;
    bool granted;
  };
  // The voter's log: indexes 2, 3 of term 2 (last index 3, last term 2).
  const std::vector<Case> cases = {
      {3, 2, true},    // same
      {4, 2, true},    // longer, same last term
      {1, 3, true},    // shorter but a later last term
      {2, 2, false},   // shorter, same last term
      {3, 1, false},   // same length, older last term
      {10, 1, false},  // longer, older last term
  };
  for (MessageType type : {MessageType::kVote, MessageType::kPreVote}) {
    for (const Case& c : cases) {
      SCOPED_TRACE(std::string(MessageTypeName(type)) + " index " + std::to_string(c.index) +
                   " term " + std::to_string(c.log_term));
      TestNetwork net(ScenarioConfig());
      net.Add(1, StorageWithLog({1, 2, 3}, {2, 2}, 2));
      Message m = Msg(type, 2, 1, 3);
      m.index = c.index;
      m.log_term = c.log_term;
      ASSERT_TRUE(net.node(1).Step(m).ok());
      std::vector<Message> out = Outbox(net, 1);
      ASSERT_EQ(out.size(), 1u);
      EXPECT_EQ(out[0].type, type == MessageType::kVote ? MessageType::kVoteResponse
                                                        : MessageType::kPreVoteResponse);
      EXPECT_EQ(out[0].reject, !c.granted);
      const HardState hs = net.storage(1).InitialHardState();
      if (type == MessageType::kVote) {
        EXPECT_EQ(hs.term, 3u);
        EXPECT_EQ(hs.vote, c.granted ? 2u : kNoNode);
      } else {
        EXPECT_EQ(hs.term, 2u);  // a pre-vote changes nothing durable
        EXPECT_EQ(hs.vote, kNoNode);
      }
    }
  }
}

// The planted bug that skips the log check is caught by the same rule.
TEST(PaperTest, VoteWithoutLogCheckBugGrantsStaleVote_5_4_1) {
  Config config = ScenarioConfig();
  config.bugs.vote_without_log_check = true;
  TestNetwork net(config);
  net.Add(1, StorageWithLog({1, 2, 3}, {2, 2}, 2));
  Message m = Msg(MessageType::kVote, 2, 1, 3);
  m.index = 10;
  m.log_term = 1;
  ASSERT_TRUE(net.node(1).Step(m).ok());
  std::vector<Message> out = Outbox(net, 1);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_FALSE(out[0].reject);  // what VoteRejectedForStaleLog_5_4_1 forbids
}

// 5.4.1, Election restriction: a member that missed committed entries
// cannot become leader, so committed entries survive leader changes.
TEST(PaperTest, MemberMissingCommittedEntriesCannotWin_5_4_1) {
  Config config = ScenarioConfig();
  config.pre_vote = false;
  auto net = ThreeWithLeader(config);
  net->Isolate(3);
  ASSERT_TRUE(net->node(1).Propose("committed").ok());
  net->Settle();
  ASSERT_EQ(net->applied(1), (std::vector<std::string>{"committed"}));
  net->Heal();

  ASSERT_TRUE(net->node(3).Campaign().ok());
  net->Settle();
  EXPECT_NE(net->node(3).role(), Role::kLeader);
  // Node 3's term disrupted the old leader, but whoever wins next holds the
  // committed entry.
  const NodeId lead = net->ElectByTicking();
  ASSERT_NE(lead, kNoNode);
  EXPECT_NE(lead, 3u);
  net->TickAll();
  for (NodeId id : net->ids()) {
    EXPECT_EQ(net->applied(id), (std::vector<std::string>{"committed"})) << id;
  }
  net->ExpectAppliedConsistent();
}

// Figure 8 set-up for the five members: entry 2 of term 2 is on S1 and S2;
// S5 holds a different entry 2 of term 3 and got the votes of S3, S4 in
// term 3. S1 is about to lead term 4.
std::unique_ptr<TestNetwork> Figure8Network(const Config& s1_config) {
  Config config = ScenarioConfig();
  // One entry per append, so that S3 can be given entry 2 without the
  // (empty) entry of term 4 behind it.
  config.max_message_bytes = 1;
  auto net = std::make_unique<TestNetwork>(config);
  const std::vector<NodeId> all = {1, 2, 3, 4, 5};
  Config c1 = s1_config;
  c1.max_message_bytes = 1;
  net->Add(1, StorageWithLog(all, {2}, 3), c1);
  net->Add(2, StorageWithLog(all, {2}, 3));
  net->Add(3, StorageWithLog(all, {}, 3, /*vote=*/5));
  net->Add(4, StorageWithLog(all, {}, 3, /*vote=*/5));
  net->Add(5, StorageWithLog(all, {3}, 3, /*vote=*/5));
  return net;
}

bool CarriesTerm(const Message& m, uint64_t term) {
  for (const Entry& e : m.entries) {
    if (e.term == term) return true;
  }
  return false;
}

// S3 first refuses S1's append that assumes it holds entry 2, then gets
// entry 2 alone (one entry per message); the append that would bring it
// S1's entry 3 of term 4 is lost.
void LoseTermFourEntryToS3(TestNetwork* net) {
  net->set_drop([net](const Message& m) {
    return m.to == 3 && m.type == MessageType::kAppend && CarriesTerm(m, 4) &&
           net->storage(3).LastIndex() >= 2;
  });
}

// Figure 8: a leader may not conclude that an entry of an earlier term is
// committed because it is stored on a majority; S5 could still be elected
// and overwrite it. Only an entry of the leader's own term is committed by
// counting replicas, and earlier entries are committed with it.
TEST(PaperTest, Figure8_PreviousTermEntryCommittedOnlyWithCurrentTermEntry_5_4_2) {
  auto net = Figure8Network(ScenarioConfig());
  net->Isolate(4);
  net->Isolate(5);
  ASSERT_TRUE(net->node(1).Campaign().ok());
  LoseTermFourEntryToS3(net.get());
  net->Settle();
  ASSERT_EQ(net->node(1).role(), Role::kLeader);
  ASSERT_EQ(net->node(1).term(), 4u);
  ASSERT_EQ(*net->storage(3).Term(2), 2u);
  ASSERT_EQ(net->node(1).tracker().Find(3)->match, 2u);
  // Entry 2 is on S1, S2 and S3, a majority of five: still not committed.
  EXPECT_EQ(net->node(1).log().committed(), 1u);
  for (NodeId id : {1, 2, 3})
    EXPECT_EQ(net->node(id).log().committed(), 1u) << id;

  // Once S3 stores entry 3 of term 4, both are committed together.
  net->set_drop(nullptr);
  net->TickAll();
  net->TickAll();
  EXPECT_EQ(net->node(1).log().committed(), 3u);
  EXPECT_EQ(net->applied(1), (std::vector<std::string>{"e2t2"}));
  EXPECT_EQ(net->applied(3), (std::vector<std::string>{"e2t2"}));
  net->ExpectAppliedConsistent();
}

// The same scenario with the planted bug that counts replicas of old-term
// entries: the leader commits entry 2 early. This proves the test above can
// fail.
TEST(PaperTest, Figure8_PlantedBugCommitsByCounting_5_4_2) {
  Config buggy = ScenarioConfig();
  buggy.bugs.commit_previous_term_by_counting = true;
  auto net = Figure8Network(buggy);
  net->Isolate(4);
  net->Isolate(5);
  ASSERT_TRUE(net->node(1).Campaign().ok());
  LoseTermFourEntryToS3(net.get());
  net->Settle();
  ASSERT_EQ(net->node(1).role(), Role::kLeader);
  EXPECT_EQ(net->node(1).log().committed(), 2u);
}

// Figure 8 continued: since S1 did not commit entry 2, S5 may legitimately
// win term 5 (with S3 and S4) and replace it everywhere.
TEST(PaperTest, Figure8_UncommittedOldEntryMayBeOverwritten_5_4_2) {
  auto net = Figure8Network(ScenarioConfig());
  net->Isolate(4);
  net->Isolate(5);
  ASSERT_TRUE(net->node(1).Campaign().ok());
  LoseTermFourEntryToS3(net.get());
  net->Settle();
  ASSERT_EQ(net->node(1).log().committed(), 1u);

  // S1 crashes. S5's first campaign (term 4) fails: S2 and S3 already voted
  // in term 4, and their refusals teach S5 the term. In term 5, S2 (which
  // holds S1's entry of term 4) refuses, but S3 and S4 elect S5.
  net->Stop(1);
  net->Heal();
  ASSERT_TRUE(net->node(5).Campaign().ok());
  net->Settle();
  ASSERT_NE(net->node(5).role(), Role::kLeader);
  ASSERT_EQ(net->node(5).term(), 4u);
  ASSERT_TRUE(net->node(5).Campaign().ok());
  net->Settle();
  ASSERT_EQ(net->node(5).role(), Role::kLeader);
  ASSERT_EQ(net->node(5).term(), 5u);
  ASSERT_TRUE(net->node(5).Propose("s5").ok());
  net->Settle();
  net->TickAll();
  for (NodeId id : {2, 3, 4, 5}) {
    EXPECT_EQ(*net->storage(id).Term(2), 3u) << id;
    EXPECT_EQ(net->applied(id), (std::vector<std::string>{"e2t3", "s5"})) << id;
  }
  net->ExpectAppliedConsistent();
}

}  // namespace
}  // namespace conclave::raft
