// Scenario tests for what the Node adds to the paper: PreVote and
// CheckQuorum, flow control, snapshots, linearizable reads (ReadIndex and
// leases), leadership transfer, membership changes, proposal forwarding and
// the resource bounds. Several Nodes talk through a TestNetwork that the
// test drives by hand; every run is deterministic.
#include <gtest/gtest.h>

#include "raft/raft.h"
#include "raft/test_network.h"

namespace conclave::raft {
namespace {

// Handles `id`'s Readies and returns (removing them from the queue) the
// messages it sent.
std::vector<Message> Outbox(TestNetwork& net, NodeId id) {
  while (net.ProcessReady(id)) {
  }
  return net.Take([id](const Message& m) { return m.from == id; });
}

size_t Count(const std::vector<Message>& msgs, const std::function<bool(const Message&)>& pred) {
  size_t n = 0;
  for (const Message& m : msgs)
    n += pred(m);
  return n;
}

bool IsAppendWithEntries(const Message& m) {
  return m.type == MessageType::kAppend && !m.entries.empty();
}

bool IsReadRoundHeartbeat(const Message& m) {
  return m.type == MessageType::kHeartbeat && !m.context.empty();
}

std::vector<std::string> Strings(const std::string& prefix, int n) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i)
    out.push_back(prefix + std::to_string(i));
  return out;
}

// A three-member group with node 1 leading and its first entry committed.
// With check_quorum off node 1 can campaign at once.
std::unique_ptr<TestNetwork> ThreeWithLeader(Config config = ScenarioConfig()) {
  auto net = TestNetwork::Bootstrapped({1, 2, 3}, config);
  EXPECT_TRUE(net->node(1).Campaign().ok());
  net->Settle();
  EXPECT_EQ(net->Leader(), 1u);
  return net;
}

// Node 1 leading a group configured as in production (PreVote and
// CheckQuorum on, so members refuse votes for an election timeout after
// they start): elected by ticking, then handed over to node 1.
std::unique_ptr<TestNetwork> ProductionThree(Config config = Config()) {
  if (config.random_seed == 0) config.random_seed = 1;
  auto net = TestNetwork::Bootstrapped({1, 2, 3}, config);
  const NodeId lead = net->ElectByTicking();
  EXPECT_NE(lead, kNoNode);
  if (lead != 1 && lead != kNoNode) {
    net->node(lead).TransferLeadership(1);
    net->Settle();
  }
  net->TickAll();
  EXPECT_EQ(net->Leader(), 1u);
  return net;
}

// Handles Readies and delivers messages one wave at a time until `done`.
bool RunUntil(TestNetwork& net, const std::function<bool()>& done) {
  for (int i = 0; i < 1000 && !done(); ++i) {
    net.ProcessAllReady();
    net.DeliverQueued();
  }
  return done();
}

// ---- group ids ----

TEST(NodeTest, RefusesMessagesForAnotherGroup) {
  auto net = ThreeWithLeader();
  const uint64_t term = net->node(2).term();
  Message m;
  m.type = MessageType::kHeartbeat;
  m.group = TestNetwork::kGroup + 1;
  m.from = 3;
  m.to = 2;
  m.term = term + 5;
  Status s = net->node(2).Step(m);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(net->node(2).term(), term);
  EXPECT_EQ(net->node(2).leader(), 1u);

  // A proposal forwarded by a member of another group must not end up in
  // this group's log.
  Message prop;
  prop.type = MessageType::kPropose;
  prop.group = TestNetwork::kGroup + 1;
  prop.from = 3;
  prop.to = 1;
  prop.entries = {Entry{.data = "foreign"}};
  const uint64_t last = net->node(1).log().LastIndex();
  EXPECT_EQ(net->node(1).Step(prop).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(net->node(1).log().LastIndex(), last);

  Message read;
  read.type = MessageType::kReadIndex;
  read.group = TestNetwork::kGroup + 1;
  read.from = 3;
  read.to = 1;
  EXPECT_EQ(net->node(1).Step(read).code(), StatusCode::kInvalidArgument);

  // Local requests and everything the nodes send carry the right group
  // (TestNetwork checks every message sent).
  ASSERT_TRUE(net->node(1).Propose("local").ok());
  ASSERT_TRUE(net->node(1).ReadIndex("r").ok());
  net->Settle();
  EXPECT_EQ(net->applied(2), (std::vector<std::string>{"local"}));
}

// ---- single member ----

// A lone voter leads at once, but commits an entry only after the caller
// reports it durable (Advance): the leader counts only its stable log.
TEST(NodeTest, SingleMemberCommitsOnlyDurableEntries) {
  auto net = TestNetwork::Bootstrapped({1}, ScenarioConfig());
  Node& n = net->node(1);
  ASSERT_TRUE(n.Campaign().ok());
  EXPECT_EQ(n.role(), Role::kLeader);
  net->Settle();
  ASSERT_TRUE(n.Propose("solo").ok());
  EXPECT_EQ(n.log().committed(), 2u);

  Ready rd = n.GetReady();
  ASSERT_EQ(rd.entries.size(), 1u);
  EXPECT_EQ(rd.entries[0].data, "solo");
  EXPECT_TRUE(rd.committed_entries.empty());  // not durable yet
  EXPECT_TRUE(rd.must_sync);
  net->storage(1).Append(rd.entries);
  n.Advance(rd);
  EXPECT_EQ(n.log().committed(), 3u);
  net->Settle();
  EXPECT_EQ(net->applied(1), (std::vector<std::string>{"solo"}));

  // Reads need no round when the leader is the whole quorum.
  ASSERT_TRUE(n.ReadIndex("r").ok());
  net->ProcessReady(1);
  std::vector<ReadState> rs = net->TakeReadStates(1);
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0].index, 3u);
  EXPECT_EQ(rs[0].request_context, "r");
}

// ---- restart and durability ----

// The vote is part of the hard state: a member that restarts after voting
// does not vote again in the same term.
TEST(NodeTest, VoteSurvivesRestart) {
  for (bool planted_bug : {false, true}) {
    SCOPED_TRACE(planted_bug ? "vote_not_persisted" : "correct");
    Config config = ScenarioConfig();
    config.bugs.vote_not_persisted = planted_bug;
    auto net = TestNetwork::Bootstrapped({1, 2, 3}, config);
    Message vote;
    vote.type = MessageType::kVote;
    vote.group = TestNetwork::kGroup;
    vote.from = 2;
    vote.to = 1;
    vote.term = 2;
    vote.index = 1;
    vote.log_term = 1;
    ASSERT_TRUE(net->node(1).Step(vote).ok());
    std::vector<Message> out = Outbox(*net, 1);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_FALSE(out[0].reject);

    net->Stop(1);
    net->Restart(1);
    EXPECT_EQ(net->node(1).term(), 2u);
    vote.from = 3;
    ASSERT_TRUE(net->node(1).Step(vote).ok());
    out = Outbox(*net, 1);
    ASSERT_EQ(out.size(), 1u);
    // The planted bug forgets the vote, so the test above can fail.
    EXPECT_EQ(out[0].reject, !planted_bug);
  }
}

TEST(NodeTest, RestartedFollowerRejoins) {
  auto net = ThreeWithLeader();
  ASSERT_TRUE(net->node(1).Propose("before").ok());
  net->Settle();
  net->Stop(3);
  ASSERT_TRUE(net->node(1).Propose("while down").ok());
  net->Settle();
  net->Restart(3);
  EXPECT_EQ(net->node(3).term(), net->node(1).term());
  EXPECT_EQ(net->node(3).log().applied(), net->applied_index(3));
  net->TickAll(2);
  EXPECT_EQ(net->applied(3), (std::vector<std::string>{"before", "while down"}));
  net->ExpectAppliedConsistent();
}

// ---- PreVote and CheckQuorum ----

// Members just started refuse votes for an election timeout, so a campaign
// at once fails; with vote_at_once_at_term_one, members at term 1 (which
// never acknowledged a leader) vote at once and it wins.
TEST(NodeTest, AtTermOneAFirstCampaignWinsAtOnceOnlyWhenAsked) {
  for (bool at_once : {false, true}) {
    Config config;
    config.random_seed = 1;
    config.vote_at_once_at_term_one = at_once;
    auto net = TestNetwork::Bootstrapped({1, 2, 3}, config);
    ASSERT_TRUE(net->node(1).Campaign().ok());
    net->Settle();
    EXPECT_EQ(net->Leader(), at_once ? 1u : kNoNode) << at_once;
  }
}

// A member cut off from the group keeps timing out, but with PreVote it
// never wins a pre-election, so its term stays put and it rejoins without
// disturbing the leader.
TEST(NodeTest, PreVotePartitionedMemberRejoinsWithoutDisruption) {
  auto net = ProductionThree();
  const uint64_t term = net->node(1).term();
  net->Isolate(3);
  ASSERT_TRUE(net->node(1).Propose("while away").ok());
  net->TickAll(100);
  EXPECT_NE(net->node(3).role(), Role::kLeader);
  EXPECT_EQ(net->node(3).term(), term);
  EXPECT_GT(net->CountSent(
                [](const Message& m) { return m.from == 3 && m.type == MessageType::kPreVote; }),
            0u);
  EXPECT_EQ(
      net->CountSent([](const Message& m) { return m.from == 3 && m.type == MessageType::kVote; }),
      0u);

  net->Heal();
  net->TickAll(30);
  EXPECT_EQ(net->Leader(), 1u);
  for (NodeId id : net->ids()) {
    EXPECT_EQ(net->node(id).term(), term) << id;
    EXPECT_EQ(net->node(id).leader(), 1u) << id;
  }
  EXPECT_EQ(net->applied(3), (std::vector<std::string>{"while away"}));
}

// The same partition without PreVote: the isolated member inflates its term
// and forces an election when it comes back. (Why PreVote exists.)
TEST(NodeTest, WithoutPreVotePartitionedMemberDisruptsOnReturn) {
  Config config = ScenarioConfig();
  config.pre_vote = false;
  auto net = ThreeWithLeader(config);
  const uint64_t term = net->node(1).term();
  net->Isolate(3);
  ASSERT_TRUE(net->node(1).Propose("while away").ok());
  net->TickAll(50);
  EXPECT_GT(net->node(3).term(), term + 1);
  net->Heal();
  net->TickAll(50);
  const NodeId lead = net->Leader();
  ASSERT_NE(lead, kNoNode);
  EXPECT_GT(net->node(lead).term(), term + 1);
  EXPECT_NE(lead, 3u);  // its log is behind
}

// CheckQuorum: a leader that hears from no quorum for an election timeout
// steps down, so clients stop waiting on it; the others elect a new one.
TEST(NodeTest, CheckQuorumLeaderWithoutQuorumStepsDown) {
  auto net = ProductionThree();
  const uint64_t term = net->node(1).term();
  const int election_ticks = Config().election_ticks;
  net->Isolate(1);
  int ticks = 0;
  while (net->node(1).role() == Role::kLeader && ticks < 10 * election_ticks) {
    net->node(1).Tick();
    net->Settle();
    ++ticks;
  }
  EXPECT_EQ(net->node(1).role(), Role::kFollower);
  EXPECT_LE(ticks, 2 * election_ticks);
  EXPECT_EQ(net->node(1).term(), term);  // stepping down needs no new term
  EXPECT_EQ(net->node(1).Propose("x").code(), StatusCode::kUnavailable);

  const NodeId lead = net->ElectByTicking();
  EXPECT_TRUE(lead == 2 || lead == 3) << lead;
  net->Heal();
  net->TickAll(2);
  EXPECT_EQ(net->node(1).leader(), lead);
}

// A leader that hears from a quorum stays, even with one member gone.
TEST(NodeTest, CheckQuorumLeaderWithQuorumStays) {
  auto net = ProductionThree();
  const uint64_t term = net->node(1).term();
  net->Isolate(3);
  net->TickAll(100);
  EXPECT_EQ(net->Leader(), 1u);
  EXPECT_EQ(net->node(1).term(), term);
}

// Leader stickiness: members that hear from a live leader ignore vote
// requests, so a candidate with a higher term cannot depose it.
TEST(NodeTest, FollowersIgnoreVotesWhileTheyHearFromLeader) {
  Config config;
  config.random_seed = 1;
  config.pre_vote = false;  // let node 3 go straight to a real election
  auto net = ProductionThree(config);
  net->TickAll(2);
  const uint64_t term = net->node(1).term();
  const HardState hs2 = net->storage(2).InitialHardState();
  net->ClearSent();

  ASSERT_TRUE(net->node(3).Campaign().ok());
  ASSERT_EQ(net->node(3).role(), Role::kCandidate);
  net->Settle();
  EXPECT_EQ(net->Leader(), 1u);
  EXPECT_EQ(net->node(1).term(), term);
  EXPECT_EQ(net->node(2).term(), term);
  EXPECT_EQ(net->storage(2).InitialHardState(), hs2);
  EXPECT_EQ(net->CountSent([](const Message& m) { return m.type == MessageType::kVoteResponse; }),
            0u);
}

// ---- flow control ----

// Replication is pipelined: the leader sends new entries without waiting for
// acknowledgements, up to max_inflight_messages appends per follower.
TEST(NodeTest, PipelinedAppendsBoundedByInflightWindow) {
  Config config = ScenarioConfig();
  config.max_inflight_messages = 3;
  auto net = ThreeWithLeader(config);
  net->Isolate(3);
  std::vector<Message> held;
  const std::vector<std::string> values = Strings("p", 8);
  for (const std::string& v : values) {
    ASSERT_TRUE(net->node(1).Propose(v).ok());
    std::vector<Message> out = Outbox(*net, 1);
    held.insert(held.end(), out.begin(), out.end());
  }
  const std::vector<Message> to2 = [&] {
    std::vector<Message> v;
    for (const Message& m : held) {
      if (m.to == 2 && IsAppendWithEntries(m)) v.push_back(m);
    }
    return v;
  }();
  ASSERT_EQ(to2.size(), 3u);
  for (const Message& m : to2)
    EXPECT_EQ(m.entries.size(), 1u);  // one per proposal
  EXPECT_EQ(net->node(1).tracker().Find(2)->inflights.Count(), 3u);
  EXPECT_EQ(net->node(1).log().committed(), 2u);

  // Acknowledgements open the window and the rest follows.
  for (const Message& m : held)
    net->Deliver(m);
  net->Settle();
  EXPECT_EQ(net->applied(1), values);
  EXPECT_EQ(net->applied(2), values);
}

TEST(NodeTest, InflightWindowBoundedByBytes) {
  Config config = ScenarioConfig();
  config.max_inflight_bytes = 250;
  auto net = ThreeWithLeader(config);
  net->Isolate(3);
  std::vector<Message> held;
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(net->node(1).Propose(std::string(100, 'a' + i)).ok());
    std::vector<Message> out = Outbox(*net, 1);
    held.insert(held.end(), out.begin(), out.end());
  }
  // 100 + 100 < 250 leaves room for a third; 300 >= 250 fills the window.
  EXPECT_EQ(Count(held, [](const Message& m) { return m.to == 2 && IsAppendWithEntries(m); }), 3u);
  for (const Message& m : held)
    net->Deliver(m);
  net->Settle();
  EXPECT_EQ(net->applied(2).size(), 6u);
}

// A lost append carrying several entries while the window is full must not
// stall the follower: a heartbeat answer lets one more append out, which
// finds the gap.
TEST(NodeTest, LostMultiEntryAppendWithFullWindowRecovers) {
  Config config = ScenarioConfig();
  config.max_inflight_messages = 1;
  auto net = ThreeWithLeader(config);
  net->Isolate(3);
  ASSERT_TRUE(net->node(1).Propose("A").ok());
  std::vector<Message> first = Outbox(*net, 1);  // [A] to 2: the window is full
  ASSERT_TRUE(net->node(1).Propose("B").ok());
  ASSERT_TRUE(net->node(1).Propose("C").ok());
  EXPECT_EQ(Count(Outbox(*net, 1), IsAppendWithEntries), 0u);

  for (const Message& m : first)
    net->Deliver(m);
  std::vector<Message> ack = Outbox(*net, 2);
  for (const Message& m : ack)
    net->Deliver(m);
  std::vector<Message> second = Outbox(*net, 1);
  ASSERT_EQ(Count(second,
                  [](const Message& m) {
                    return m.to == 2 && IsAppendWithEntries(m) && m.entries.size() == 2;
                  }),
            1u);
  // ...and [B, C] is lost.

  net->TickAll(3);
  EXPECT_EQ(net->applied(2), (std::vector<std::string>{"A", "B", "C"}));
  EXPECT_EQ(net->applied(1), (std::vector<std::string>{"A", "B", "C"}));
}

// A follower that is behind is caught up in appends of at most
// max_message_bytes of payload each.
TEST(NodeTest, AppendsBatchedUpToMaxMessageBytes) {
  Config config = ScenarioConfig();
  config.max_message_bytes = 250;
  auto net = ThreeWithLeader(config);
  net->Isolate(3);
  std::vector<std::string> values;
  for (int i = 0; i < 10; ++i) {
    values.push_back(std::string(100, 'a' + i));
    ASSERT_TRUE(net->node(1).Propose(values.back()).ok());
  }
  net->Settle();
  net->Heal();
  net->ClearSent();
  net->TickAll(3);
  EXPECT_EQ(net->applied(3), values);

  size_t batches = 0;
  for (const Message& m : net->sent()) {
    if (m.to != 3 || !IsAppendWithEntries(m)) continue;
    uint64_t bytes = 0;
    for (const Entry& e : m.entries)
      bytes += e.PayloadBytes();
    EXPECT_LE(bytes, config.max_message_bytes) << m.ToString();
    EXPECT_EQ(m.entries.size(), 2u) << m.ToString();
    ++batches;
  }
  EXPECT_EQ(batches, 5u);
}

// Fast back-tracking: a follower whose log diverges over a long stretch,
// in several terms, finds the point of agreement in a round trip or two
// instead of one per entry.
TEST(NodeTest, FastBacktrackingBoundsRejections) {
  std::vector<uint64_t> leader_log;  // indexes 2..151
  for (int i = 0; i < 50; ++i)
    leader_log.push_back(2);
  for (int i = 0; i < 50; ++i)
    leader_log.push_back(4);
  for (int i = 0; i < 50; ++i)
    leader_log.push_back(6);
  struct Case {
    std::string name;
    std::vector<uint64_t> follower_log;
  };
  std::vector<Case> cases;
  {
    std::vector<uint64_t> f(50, 2);  // agrees on the first 50
    for (int i = 0; i < 100; ++i)
      f.push_back(3);
    for (int i = 0; i < 20; ++i)
      f.push_back(5);
    cases.push_back({"longer, conflicting", f});
  }
  {
    std::vector<uint64_t> f(50, 2);
    for (int i = 0; i < 30; ++i)
      f.push_back(3);
    cases.push_back({"shorter, conflicting", f});
  }
  {
    std::vector<uint64_t> f(5, 2);
    cases.push_back({"far behind", f});
  }
  {
    std::vector<uint64_t> f(50, 2);
    for (int i = 0; i < 50; ++i)
      f.push_back(4);
    for (int i = 0; i < 200; ++i)
      f.push_back(5);  // long tail of a term the leader never had
    cases.push_back({"long conflicting tail", f});
  }
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    TestNetwork net(ScenarioConfig());
    net.Add(1, StorageWithLog({1, 2, 3}, leader_log, 6));
    net.Add(2, StorageWithLog({1, 2, 3}, leader_log, 6));
    net.Add(3, StorageWithLog({1, 2, 3}, c.follower_log, 6));
    ASSERT_TRUE(net.node(1).Campaign().ok());
    net.Settle();
    ASSERT_EQ(net.Leader(), 1u);
    net.TickAll();
    EXPECT_EQ(LogTerms(net.storage(3)), LogTerms(net.storage(1)));
    const size_t rejections = net.CountSent([](const Message& m) {
      return m.from == 3 && m.type == MessageType::kAppendResponse && m.reject;
    });
    EXPECT_LE(rejections, 2u);
    net.ExpectAppliedConsistent();
  }
}

// ---- proposals ----

TEST(NodeTest, FollowerForwardsProposalsToLeader) {
  auto net = ThreeWithLeader();
  ASSERT_TRUE(net->node(2).Propose("via 2").ok());
  std::vector<Message> out = Outbox(*net, 2);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].type, MessageType::kPropose);
  EXPECT_EQ(out[0].to, 1u);
  EXPECT_EQ(out[0].term, 0u);
  for (const Message& m : out)
    net->Deliver(m);
  net->Settle();
  for (NodeId id : net->ids()) {
    EXPECT_EQ(net->applied(id), (std::vector<std::string>{"via 2"})) << id;
  }
}

TEST(NodeTest, ProposalsWithoutLeaderAreUnavailable) {
  Config config = ScenarioConfig();
  config.pre_vote = false;
  auto net = TestNetwork::Bootstrapped({1, 2, 3}, config);
  // A follower that knows no leader.
  EXPECT_EQ(net->node(1).Propose("x").code(), StatusCode::kUnavailable);
  EXPECT_EQ(net->node(1).ReadIndex("r").code(), StatusCode::kUnavailable);
  // A candidate.
  ASSERT_TRUE(net->node(1).Campaign().ok());
  ASSERT_EQ(net->node(1).role(), Role::kCandidate);
  Status s = net->node(1).Propose("x");
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
  EXPECT_NE(s.message().find("no leader"), std::string::npos) << s.ToString();
  EXPECT_EQ(net->node(1).ReadIndex("r").code(), StatusCode::kUnavailable);
  // A pre-candidate.
  Config pre = ScenarioConfig();
  auto net2 = TestNetwork::Bootstrapped({1, 2, 3}, pre);
  ASSERT_TRUE(net2->node(1).Campaign().ok());
  ASSERT_EQ(net2->node(1).role(), Role::kPreCandidate);
  EXPECT_EQ(net2->node(1).Propose("x").code(), StatusCode::kUnavailable);
}

TEST(NodeTest, DisabledForwardingRefusesFollowerProposals) {
  Config config = ScenarioConfig();
  config.disable_proposal_forwarding = true;
  auto net = ThreeWithLeader(config);
  Status s = net->node(2).Propose("x");
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
  EXPECT_NE(s.message().find("forwarding disabled"), std::string::npos) << s.ToString();
  EXPECT_TRUE(Outbox(*net, 2).empty());
  ASSERT_TRUE(net->node(1).Propose("at leader").ok());
  net->Settle();
  EXPECT_EQ(net->applied(2), (std::vector<std::string>{"at leader"}));
}

TEST(NodeTest, EmptyProposalRefused) {
  auto net = ThreeWithLeader();
  Message m;
  m.type = MessageType::kPropose;
  m.from = 1;
  m.group = TestNetwork::kGroup;
  EXPECT_EQ(net->node(1).Step(m).code(), StatusCode::kInvalidArgument);
}

// The leader bounds the payload it holds uncommitted, so a leader that
// cannot commit (no quorum) does not grow its log without limit.
TEST(NodeTest, MaxUncommittedBytesRefusesProposals) {
  Config config = ScenarioConfig();
  config.max_uncommitted_bytes = 100;
  auto net = ThreeWithLeader(config);
  net->Isolate(2);
  net->Isolate(3);
  ASSERT_TRUE(net->node(1).Propose(std::string(60, 'a')).ok());
  Status s = net->node(1).Propose(std::string(60, 'b'));
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted);
  ASSERT_TRUE(net->node(1).Propose(std::string(40, 'c')).ok());  // exactly at the limit
  EXPECT_EQ(net->node(1).Propose("d").code(), StatusCode::kResourceExhausted);
  net->Settle();

  // Once committed and applied, the room comes back.
  net->Heal();
  net->TickAll(2);
  EXPECT_EQ(net->applied(1).size(), 2u);
  EXPECT_TRUE(net->node(1).Propose(std::string(60, 'e')).ok());
  net->Settle();
  EXPECT_EQ(net->applied(2).size(), 3u);
}

// A conf change refused for lack of room leaves nothing behind: once there
// is room again, the next conf change is accepted.
TEST(NodeTest, RefusedConfChangeDoesNotBlockLaterOnes) {
  Config config = ScenarioConfig();
  config.max_uncommitted_bytes = 100;
  auto net = ThreeWithLeader(config);
  net->Isolate(2);
  net->Isolate(3);
  ASSERT_TRUE(net->node(1).Propose(std::string(100, 'a')).ok());
  const ConfChange add4{.changes = {{ConfChangeType::kAddLearner, 4}}};
  EXPECT_EQ(net->node(1).ProposeConfChange(add4).code(), StatusCode::kResourceExhausted);
  net->Heal();
  net->Settle();
  net->TickAll(2);
  ASSERT_EQ(net->applied(1).size(), 1u);
  EXPECT_TRUE(net->node(1).ProposeConfChange(add4).ok());
  net->Settle();
  EXPECT_EQ(net->conf_state(1), (ConfState{.voters = {1, 2, 3}, .learners = {4}}));
}

// A single proposal larger than the bound is accepted when nothing else is
// uncommitted; otherwise it could never be proposed at all.
TEST(NodeTest, OversizedProposalAcceptedWhenNothingUncommitted) {
  Config config = ScenarioConfig();
  config.max_uncommitted_bytes = 100;
  auto net = ThreeWithLeader(config);
  ASSERT_TRUE(net->node(1).Propose(std::string(500, 'x')).ok());
  EXPECT_EQ(net->node(1).Propose("y").code(), StatusCode::kResourceExhausted);
  net->Settle();
  EXPECT_EQ(net->applied(3).size(), 1u);
}

// ---- snapshots ----

// A follower that missed entries the leader has since compacted away gets a
// snapshot, then the entries after it.
TEST(NodeTest, LaggingFollowerCatchesUpBySnapshot) {
  auto net = ThreeWithLeader();
  net->Isolate(3);
  std::vector<std::string> values = Strings("s", 10);
  for (const std::string& v : values)
    ASSERT_TRUE(net->node(1).Propose(v).ok());
  net->Settle();
  ASSERT_EQ(net->applied(1), values);
  net->CompactAtApplied(1);
  const uint64_t snap_index = net->storage(1).LatestSnapshot().metadata.index;
  ASSERT_EQ(net->storage(1).FirstIndex(), snap_index + 1);
  ASSERT_TRUE(net->node(1).Propose("after").ok());
  values.push_back("after");
  net->Settle();

  net->Heal();
  net->TickAll(3);
  EXPECT_EQ(net->CountSent(
                [](const Message& m) { return m.type == MessageType::kSnapshot && m.to == 3; }),
            1u);
  EXPECT_EQ(net->storage(3).LatestSnapshot().metadata.index, snap_index);
  EXPECT_EQ(net->applied(3), values);
  EXPECT_EQ(net->node(3).log().committed(), net->node(1).log().committed());
  EXPECT_EQ(net->node(1).tracker().Find(3)->state, ProgressState::kReplicate);
}

// A member added after compaction starts with an empty log and learns
// everything, including who the voters are, from a snapshot.
TEST(NodeTest, NewMemberCatchesUpBySnapshot) {
  auto net = ThreeWithLeader();
  std::vector<std::string> values = Strings("v", 5);
  for (const std::string& v : values)
    ASSERT_TRUE(net->node(1).Propose(v).ok());
  net->Settle();
  net->CompactAtApplied(1);
  const uint64_t snap_index = net->storage(1).LatestSnapshot().metadata.index;

  net->Add(4, std::make_unique<MemoryStorage>());
  ASSERT_TRUE(
      net->node(1).ProposeConfChange(ConfChange{.changes = {{ConfChangeType::kAddVoter, 4}}}).ok());
  net->Settle();
  net->TickAll(2);
  EXPECT_EQ(net->storage(4).LatestSnapshot().metadata.index, snap_index);
  EXPECT_EQ(net->applied(4), values);
  EXPECT_EQ(net->conf_state(4), (ConfState{.voters = {1, 2, 3, 4}}));
  EXPECT_EQ(net->node(4).GetStatus().conf_state, (ConfState{.voters = {1, 2, 3, 4}}));
  // It counts towards the quorum: with 3 away, 1 and 2 are not a quorum of
  // four, so the entry commits only with 4's acknowledgement.
  net->Isolate(3);
  ASSERT_TRUE(net->node(1).Propose("with 4").ok());
  net->Settle();
  EXPECT_EQ(net->applied(4).back(), "with 4");
  net->ExpectAppliedConsistent();
}

// A snapshot the transport failed to deliver is sent again.
TEST(NodeTest, FailedSnapshotIsRetried) {
  auto net = ThreeWithLeader();
  net->Isolate(3);
  for (const std::string& v : Strings("s", 3))
    ASSERT_TRUE(net->node(1).Propose(v).ok());
  net->Settle();
  net->CompactAtApplied(1);
  net->Heal();
  net->set_drop([](const Message& m) { return m.type == MessageType::kSnapshot; });
  net->TickAll(2);
  ASSERT_EQ(net->CountSent([](const Message& m) { return m.type == MessageType::kSnapshot; }), 1u);
  EXPECT_EQ(net->node(1).tracker().Find(3)->state, ProgressState::kSnapshot);
  // While a snapshot is in flight the leader sends the follower nothing else.
  net->TickAll(2);
  EXPECT_EQ(net->CountSent([](const Message& m) { return m.type == MessageType::kSnapshot; }), 1u);

  net->set_drop(nullptr);
  net->node(1).ReportSnapshot(3, /*ok=*/false);
  net->TickAll(2);
  EXPECT_EQ(net->CountSent([](const Message& m) { return m.type == MessageType::kSnapshot; }), 2u);
  EXPECT_EQ(net->applied(3), Strings("s", 3));
}

// ---- ReadIndex (kSafe) ----

// A read is released only after a heartbeat round started after it was
// requested has been acknowledged by a quorum; reads pending together share
// one round.
TEST(NodeTest, ReadIndexWaitsForQuorumHeartbeatRound) {
  auto net = ThreeWithLeader();
  ASSERT_TRUE(net->node(1).Propose("w").ok());
  net->Settle();
  const uint64_t commit = net->node(1).log().committed();

  ASSERT_TRUE(net->node(1).ReadIndex("a").ok());
  ASSERT_TRUE(net->node(1).ReadIndex("b").ok());
  std::vector<Message> round = Outbox(*net, 1);
  EXPECT_TRUE(net->TakeReadStates(1).empty());
  ASSERT_EQ(round.size(), 2u);
  for (const Message& m : round)
    EXPECT_TRUE(IsReadRoundHeartbeat(m)) << m.ToString();

  // One member's acknowledgement, with the leader's own, is a quorum of 3.
  net->Deliver(round[0]);
  std::vector<Message> acks = Outbox(*net, round[0].to);
  ASSERT_EQ(acks.size(), 1u);
  net->Deliver(acks[0]);
  net->ProcessReady(1);
  std::vector<ReadState> rs = net->TakeReadStates(1);
  ASSERT_EQ(rs.size(), 2u);
  EXPECT_EQ(rs[0].request_context, "a");
  EXPECT_EQ(rs[1].request_context, "b");
  EXPECT_EQ(rs[0].index, commit);
  EXPECT_EQ(rs[1].index, commit);
}

// A read is not released while no quorum answers; once one does, even the
// regular heartbeats confirm it (its own round's heartbeats were lost).
TEST(NodeTest, ReadIndexNotReleasedWithoutQuorum) {
  auto net = ThreeWithLeader();
  net->Isolate(2);
  net->Isolate(3);
  ASSERT_TRUE(net->node(1).ReadIndex("a").ok());
  for (int i = 0; i < 5; ++i) {
    net->node(1).Tick();
    net->Settle();
  }
  EXPECT_TRUE(net->TakeReadStates(1).empty());
  net->Heal();
  net->TickAll();
  EXPECT_EQ(net->TakeReadStates(1).size(), 1u);
}

// Reads that arrive while a round is in flight wait for the next round:
// the first round was started before they arrived and proves nothing about
// them.
TEST(NodeTest, ReadIndexLaterReadsNeedLaterRound) {
  auto net = ThreeWithLeader();
  ASSERT_TRUE(net->node(1).ReadIndex("first").ok());
  std::vector<Message> round1 = Outbox(*net, 1);
  ASSERT_TRUE(net->node(1).ReadIndex("second").ok());
  std::vector<Message> round2 = Outbox(*net, 1);
  ASSERT_EQ(round1.size(), 2u);
  ASSERT_EQ(round2.size(), 2u);
  EXPECT_NE(round1[0].context, round2[0].context);

  net->Deliver(round1[0]);
  for (const Message& m : Outbox(*net, 2))
    net->Deliver(m);
  net->ProcessReady(1);
  std::vector<ReadState> rs = net->TakeReadStates(1);
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0].request_context, "first");

  // An acknowledgement of the later round confirms it (and any earlier).
  net->Deliver(round2[1]);
  for (const Message& m : Outbox(*net, 3))
    net->Deliver(m);
  net->ProcessReady(1);
  rs = net->TakeReadStates(1);
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0].request_context, "second");
}

TEST(NodeTest, FollowerReadIndexIsForwardedToLeader) {
  auto net = ThreeWithLeader();
  ASSERT_TRUE(net->node(1).Propose("w").ok());
  net->Settle();
  ASSERT_TRUE(net->node(2).ReadIndex("f").ok());
  std::vector<Message> out = Outbox(*net, 2);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].type, MessageType::kReadIndex);
  EXPECT_EQ(out[0].to, 1u);
  for (const Message& m : out)
    net->Deliver(m);
  net->Settle();
  std::vector<ReadState> rs = net->TakeReadStates(2);
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0].request_context, "f");
  EXPECT_EQ(rs[0].index, net->node(1).log().committed());
  EXPECT_TRUE(net->TakeReadStates(1).empty());  // released where it was asked
  EXPECT_EQ(net->CountSent([](const Message& m) {
    return m.type == MessageType::kReadIndexResponse && m.to == 2;
  }),
            1u);
}

// A new leader's commit index may lag behind what its predecessor
// committed; until an entry of its own term is committed it cannot know,
// so reads wait for that.
TEST(NodeTest, ReadIndexWaitsForCommitInCurrentTerm) {
  auto net = TestNetwork::Bootstrapped({1, 2, 3}, ScenarioConfig());
  ASSERT_TRUE(net->node(1).Campaign().ok());
  net->set_drop([](const Message& m) { return m.type == MessageType::kAppendResponse; });
  net->Settle();
  ASSERT_EQ(net->node(1).role(), Role::kLeader);
  ASSERT_EQ(net->node(1).log().committed(), 1u);

  ASSERT_TRUE(net->node(1).ReadIndex("early").ok());
  net->Settle();
  EXPECT_TRUE(net->TakeReadStates(1).empty());
  EXPECT_EQ(net->CountSent(IsReadRoundHeartbeat), 0u);

  net->set_drop(nullptr);
  net->TickAll(2);
  std::vector<ReadState> rs = net->TakeReadStates(1);
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0].request_context, "early");
  EXPECT_GE(rs[0].index, 2u);  // covers the new term's first entry
  EXPECT_EQ(net->node(1).log().Term(rs[0].index), net->node(1).term());
}

TEST(NodeTest, ReadIndexWithoutHeartbeatBugAnswersAtOnce) {
  Config config = ScenarioConfig();
  config.bugs.read_index_without_heartbeat = true;
  auto net = ThreeWithLeader(config);
  net->Isolate(2);
  net->Isolate(3);
  ASSERT_TRUE(net->node(1).ReadIndex("unsafe").ok());
  net->ProcessReady(1);
  EXPECT_EQ(net->TakeReadStates(1).size(), 1u);  // what ReadIndexNotReleasedWithoutQuorum forbids
}

// ---- lease-based reads ----

Config LeaseConfig() {
  Config config;
  config.random_seed = 1;
  config.read_only = ReadOnlyOption::kLeaseBased;
  return config;
}

// Issues a read on `id` and returns what one Ready releases at once.
std::vector<ReadState> ReadNow(TestNetwork& net, NodeId id, const std::string& ctx) {
  EXPECT_TRUE(net.node(id).ReadIndex(ctx).ok());
  while (net.ProcessReady(id)) {
  }
  return net.TakeReadStates(id);
}

TEST(NodeTest, LeaseReadsNeedCheckQuorum) {
  Config config = LeaseConfig();
  config.id = 1;
  config.check_quorum = false;
  EXPECT_EQ(config.Validate().code(), StatusCode::kInvalidArgument);
  config = LeaseConfig();
  config.id = 1;
  config.lease_ticks = config.election_ticks;
  EXPECT_EQ(config.Validate().code(), StatusCode::kInvalidArgument);
}

// While a quorum acknowledged a heartbeat less than lease_ticks ago, the
// leader answers reads without a round; after that it needs one.
TEST(NodeTest, LeaseReadAnsweredWhileLeaseHolds) {
  auto net = ProductionThree(LeaseConfig());
  const int lease_ticks = LeaseConfig().election_ticks * 3 / 4;
  net->TickAll();  // a heartbeat round acknowledged by everyone

  std::vector<ReadState> rs = ReadNow(*net, 1, "in lease");
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0].index, net->node(1).log().committed());
  EXPECT_EQ(net->CountSent(IsReadRoundHeartbeat), 0u);

  // No acknowledgements from now on: the lease runs out lease_ticks after
  // the last acknowledged heartbeat was sent.
  net->Isolate(2);
  net->Isolate(3);
  for (int i = 0; i < lease_ticks - 1; ++i) {
    net->node(1).Tick();
    net->Settle();
  }
  EXPECT_EQ(ReadNow(*net, 1, "last tick of lease").size(), 1u);
  net->node(1).Tick();
  net->Settle();
  ASSERT_EQ(net->node(1).role(), Role::kLeader);
  EXPECT_TRUE(ReadNow(*net, 1, "lease expired").empty());
  EXPECT_GT(net->CountSent(IsReadRoundHeartbeat), 0u);

  // A round acknowledged by a quorum answers it, and renews the lease.
  net->Heal();
  net->TickAll();
  rs = net->TakeReadStates(1);
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0].request_context, "lease expired");
  EXPECT_EQ(ReadNow(*net, 1, "renewed").size(), 1u);
}

TEST(NodeTest, LeaseReadIgnoresExpiryBugAnswersAfterLease) {
  Config config = LeaseConfig();
  config.bugs.lease_read_ignores_expiry = true;
  auto net = ProductionThree(config);
  net->TickAll();
  net->Isolate(2);
  net->Isolate(3);
  for (int i = 0; i < config.election_ticks - 1; ++i) {
    net->node(1).Tick();
    net->Settle();
  }
  ASSERT_EQ(net->node(1).role(), Role::kLeader);
  // What LeaseReadAnsweredWhileLeaseHolds forbids.
  EXPECT_EQ(ReadNow(*net, 1, "stale").size(), 1u);
}

// Once the leader has sent TimeoutNow, the target may win an election that
// ignores leader stickiness, so the lease cannot be trusted for the rest of
// the term, even if the transfer is abandoned.
TEST(NodeTest, NoLeaseReadsAfterTimeoutNow) {
  auto net = ProductionThree(LeaseConfig());
  net->TickAll();
  ASSERT_EQ(ReadNow(*net, 1, "before").size(), 1u);

  net->Isolate(2);  // the TimeoutNow never arrives
  net->node(1).TransferLeadership(2);
  net->Settle();
  ASSERT_EQ(net->CountSent([](const Message& m) { return m.type == MessageType::kTimeoutNow; }),
            1u);
  EXPECT_TRUE(ReadNow(*net, 1, "during transfer").empty());
  EXPECT_GT(net->CountSent(IsReadRoundHeartbeat), 0u);

  // The transfer is abandoned after an election timeout; still no lease.
  for (int i = 0; i < LeaseConfig().election_ticks; ++i)
    net->TickAll();
  ASSERT_EQ(net->Leader(), 1u);
  ASSERT_EQ(net->node(1).GetStatus().lead_transferee, kNoNode);
  net->TakeReadStates(1);
  EXPECT_TRUE(ReadNow(*net, 1, "after abort").empty());
  net->TickAll();
  EXPECT_EQ(net->TakeReadStates(1).size(), 1u);  // through a round
}

// ---- leadership transfer ----

TEST(NodeTest, TransferToCaughtUpFollower) {
  auto net = ProductionThree();
  net->TickAll(2);  // the followers now refuse ordinary candidates
  const uint64_t term = net->node(1).term();
  net->node(1).TransferLeadership(2);
  EXPECT_EQ(net->node(1).GetStatus().lead_transferee, 2u);
  std::vector<Message> out = Outbox(*net, 1);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].type, MessageType::kTimeoutNow);
  EXPECT_EQ(out[0].to, 2u);
  for (const Message& m : out)
    net->Deliver(m);
  net->Settle();
  EXPECT_EQ(net->Leader(), 2u);
  EXPECT_EQ(net->node(2).term(), term + 1);
  EXPECT_EQ(net->node(1).role(), Role::kFollower);
  EXPECT_EQ(net->node(1).leader(), 2u);
  ASSERT_TRUE(net->node(2).Propose("new leader").ok());
  net->Settle();
  EXPECT_EQ(net->applied(1), (std::vector<std::string>{"new leader"}));
}

// A lagging target is caught up first; meanwhile the leader refuses
// proposals, which would only delay the transfer.
TEST(NodeTest, TransferToLaggingFollower) {
  auto net = ThreeWithLeader();
  net->Isolate(3);
  for (const std::string& v : Strings("x", 5))
    ASSERT_TRUE(net->node(1).Propose(v).ok());
  net->Settle();
  net->Heal();

  net->node(1).TransferLeadership(3);
  net->ProcessReady(1);
  EXPECT_EQ(
      Count(net->queue(), [](const Message& m) { return m.type == MessageType::kTimeoutNow; }), 0u);
  EXPECT_EQ(net->node(1).role(), Role::kLeader);
  Status s = net->node(1).Propose("during");
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
  EXPECT_NE(s.message().find("transfer"), std::string::npos) << s.ToString();
  // A follower forwards (it cannot know); the leader refuses.
  EXPECT_EQ(net->node(2).Propose("forwarded during").code(), StatusCode::kOk);

  net->Settle();
  EXPECT_EQ(net->Leader(), 3u);
  EXPECT_EQ(net->applied(3), Strings("x", 5));
  ASSERT_EQ(net->step_errors().size(), 1u);
  EXPECT_NE(net->step_errors()[0].find("transfer"), std::string::npos) << net->step_errors()[0];
  net->ExpectAppliedConsistent();
}

TEST(NodeTest, TransferAbortedAfterElectionTimeout) {
  Config config = ScenarioConfig();
  auto net = ThreeWithLeader(config);
  net->Isolate(3);
  net->node(1).TransferLeadership(3);
  net->Settle();
  EXPECT_EQ(net->node(1).Propose("x").code(), StatusCode::kUnavailable);
  net->TickAll(config.election_ticks - 1);
  EXPECT_EQ(net->node(1).GetStatus().lead_transferee, 3u);
  EXPECT_EQ(net->node(1).Propose("x").code(), StatusCode::kUnavailable);
  net->TickAll();
  EXPECT_EQ(net->node(1).GetStatus().lead_transferee, kNoNode);
  EXPECT_EQ(net->Leader(), 1u);
  EXPECT_TRUE(net->node(1).Propose("x").ok());
}

// A follower asked to hand leadership to a third member passes the request
// to the leader, naming that member.
TEST(NodeTest, TransferRequestedThroughFollower) {
  auto net = ThreeWithLeader();
  net->node(2).TransferLeadership(3);
  net->Settle();
  EXPECT_EQ(net->Leader(), 3u);
}

TEST(NodeTest, TransferToSelfOrNonMemberIgnored) {
  auto net = ThreeWithLeader();
  net->node(1).TransferLeadership(1);
  net->node(1).TransferLeadership(9);
  EXPECT_EQ(net->node(1).GetStatus().lead_transferee, kNoNode);
  EXPECT_TRUE(net->node(1).Propose("x").ok());
  net->Settle();
  EXPECT_EQ(net->Leader(), 1u);
}

// ---- membership ----

ConfChange Change(ConfChangeType type, NodeId id) {
  return ConfChange{.changes = {{type, id}}};
}

TEST(NodeTest, AddLearnerThenPromote) {
  auto net = ThreeWithLeader();
  ASSERT_TRUE(net->node(1).Propose("before").ok());
  net->Settle();
  net->Add(4, std::make_unique<MemoryStorage>());
  ASSERT_TRUE(net->node(1).ProposeConfChange(Change(ConfChangeType::kAddLearner, 4)).ok());
  net->Settle();
  net->TickAll();
  const ConfState with_learner{.voters = {1, 2, 3}, .learners = {4}};
  for (NodeId id : net->ids())
    EXPECT_EQ(net->conf_state(id), with_learner) << id;
  EXPECT_EQ(net->applied(4), (std::vector<std::string>{"before"}));

  // A learner never campaigns and is not part of any quorum.
  net->TickAll(50);
  EXPECT_EQ(net->node(4).role(), Role::kFollower);
  EXPECT_EQ(net->Leader(), 1u);
  net->Isolate(2);
  net->Isolate(3);
  ASSERT_TRUE(net->node(1).Propose("needs a voter").ok());
  net->Settle();
  EXPECT_EQ(net->node(4).log().LastIndex(), net->node(1).log().LastIndex());
  EXPECT_LT(net->node(1).log().committed(), net->node(1).log().LastIndex());
  net->Heal();
  net->TickAll();

  // Promotion makes it a voter that can even lead.
  ASSERT_TRUE(net->node(1).ProposeConfChange(Change(ConfChangeType::kAddVoter, 4)).ok());
  net->Settle();
  net->TickAll();
  for (NodeId id : net->ids()) {
    EXPECT_EQ(net->conf_state(id), (ConfState{.voters = {1, 2, 3, 4}})) << id;
  }
  net->node(1).TransferLeadership(4);
  net->Settle();
  EXPECT_EQ(net->Leader(), 4u);
  EXPECT_EQ(net->applied(4), (std::vector<std::string>{"before", "needs a voter"}));
  net->ExpectAppliedConsistent();
}

TEST(NodeTest, RemoveFollower) {
  auto net = ThreeWithLeader();
  ASSERT_TRUE(net->node(1).ProposeConfChange(Change(ConfChangeType::kRemoveNode, 3)).ok());
  net->Settle();
  net->TickAll();
  for (NodeId id : net->ids()) {
    EXPECT_EQ(net->conf_state(id), (ConfState{.voters = {1, 2}})) << id;
  }
  EXPECT_EQ(net->node(1).tracker().Find(3), nullptr);
  // The removed member never campaigns, and the two left commit alone.
  const uint64_t term = net->node(1).term();
  net->TickAll(50);
  EXPECT_EQ(net->Leader(), 1u);
  EXPECT_EQ(net->node(1).term(), term);
  net->Isolate(3);
  ASSERT_TRUE(net->node(1).Propose("two of two").ok());
  net->Settle();
  EXPECT_EQ(net->applied(2), (std::vector<std::string>{"two of two"}));
}

// A leader that removes itself steps down once the change is applied, and
// the remaining voters elect a new leader among themselves.
TEST(NodeTest, RemoveLeader) {
  auto net = ThreeWithLeader();
  ASSERT_TRUE(net->node(1).ProposeConfChange(Change(ConfChangeType::kRemoveNode, 1)).ok());
  net->Settle();
  EXPECT_EQ(net->node(1).role(), Role::kFollower);
  for (NodeId id : net->ids()) {
    EXPECT_EQ(net->conf_state(id), (ConfState{.voters = {2, 3}})) << id;
  }
  EXPECT_EQ(net->node(1).Propose("x").code(), StatusCode::kUnavailable);

  const NodeId lead = net->ElectByTicking();
  EXPECT_TRUE(lead == 2 || lead == 3) << lead;
  net->Isolate(1);
  ASSERT_TRUE(net->node(lead).Propose("after").ok());
  net->Settle();
  EXPECT_EQ(net->applied(2), (std::vector<std::string>{"after"}));
  EXPECT_EQ(net->applied(3), (std::vector<std::string>{"after"}));
  EXPECT_EQ(net->node(1).role(), Role::kFollower);
}

// Changing several voters at once goes through a joint configuration,
// which the leader leaves on its own once the change is applied.
TEST(NodeTest, JointConsensusAutoLeave) {
  auto net = ThreeWithLeader();
  net->Add(4, std::make_unique<MemoryStorage>());
  net->Add(5, std::make_unique<MemoryStorage>());
  ConfChange cc{.changes = {{ConfChangeType::kAddVoter, 4}, {ConfChangeType::kAddVoter, 5}}};
  ASSERT_TRUE(net->node(1).ProposeConfChange(cc).ok());
  ASSERT_TRUE(RunUntil(*net, [&] { return !net->conf_state(1).voters_outgoing.empty(); }));
  EXPECT_EQ(
      net->conf_state(1),
      (ConfState{.voters = {1, 2, 3, 4, 5}, .voters_outgoing = {1, 2, 3}, .auto_leave = true}));
  // While joint, another change is refused.
  EXPECT_EQ(net->node(1).ProposeConfChange(Change(ConfChangeType::kAddLearner, 6)).code(),
            StatusCode::kFailedPrecondition);

  net->Settle();
  net->TickAll(2);
  for (NodeId id : net->ids()) {
    EXPECT_EQ(net->conf_state(id), (ConfState{.voters = {1, 2, 3, 4, 5}})) << id;
  }
  // The leader proposed the leave entry itself: an empty conf change.
  size_t conf_entries = 0;
  for (uint64_t i = net->storage(1).FirstIndex(); i <= net->storage(1).LastIndex(); ++i) {
    Entry e = net->storage(1).Entries(i, i + 1, UINT64_MAX)->at(0);
    if (e.type != EntryType::kConfChange) continue;
    ++conf_entries;
    if (conf_entries == 2) {
      EXPECT_TRUE(ConfChange::Decode(e.data)->IsLeaveJoint());
    }
  }
  EXPECT_EQ(conf_entries, 2u);
  net->ExpectAppliedConsistent();
}

// An explicit joint configuration stays joint until the application
// proposes the (empty) change that leaves it.
TEST(NodeTest, JointConsensusExplicitLeave) {
  auto net = ThreeWithLeader();
  net->Add(4, std::make_unique<MemoryStorage>());
  ConfChange cc{.transition = ConfChangeTransition::kJointExplicit,
                .changes = {{ConfChangeType::kAddVoter, 4}, {ConfChangeType::kRemoveNode, 3}}};
  ASSERT_TRUE(net->node(1).ProposeConfChange(cc).ok());
  net->Settle();
  net->TickAll(20);
  const ConfState joint{.voters = {1, 2, 4}, .voters_outgoing = {1, 2, 3}};
  for (NodeId id : net->ids())
    EXPECT_EQ(net->conf_state(id), joint) << id;

  // Both majorities are needed while joint: {1, 2} is one of each.
  net->Isolate(3);
  net->Isolate(4);
  ASSERT_TRUE(net->node(1).Propose("joint").ok());
  net->Settle();
  EXPECT_EQ(net->applied(2), (std::vector<std::string>{"joint"}));
  net->Heal();

  ASSERT_TRUE(net->node(1).ProposeConfChange(ConfChange{}).ok());
  net->Settle();
  net->TickAll();
  for (NodeId id : {1, 2, 4}) {
    EXPECT_EQ(net->conf_state(id), (ConfState{.voters = {1, 2, 4}})) << id;
  }
  EXPECT_EQ(net->node(1).tracker().Find(3), nullptr);
  EXPECT_EQ(net->applied(4), (std::vector<std::string>{"joint"}));
}

// Demoting a voter in a joint change keeps it voting in the outgoing
// configuration until the joint configuration is left.
TEST(NodeTest, DemoteVoterThroughJointConfiguration) {
  auto net = ThreeWithLeader();
  ConfChange cc{.transition = ConfChangeTransition::kJointImplicit,
                .changes = {{ConfChangeType::kAddLearner, 3}}};
  ASSERT_TRUE(net->node(1).ProposeConfChange(cc).ok());
  ASSERT_TRUE(RunUntil(*net, [&] { return !net->conf_state(1).voters_outgoing.empty(); }));
  EXPECT_EQ(net->conf_state(1), (ConfState{.voters = {1, 2},
                                           .voters_outgoing = {1, 2, 3},
                                           .learners_next = {3},
                                           .auto_leave = true}));
  net->Settle();
  net->TickAll();
  for (NodeId id : net->ids()) {
    EXPECT_EQ(net->conf_state(id), (ConfState{.voters = {1, 2}, .learners = {3}})) << id;
  }
  net->TickAll(50);
  EXPECT_EQ(net->node(3).role(), Role::kFollower);
}

TEST(NodeTest, ConfChangeProposalsValidated) {
  auto net = ThreeWithLeader();
  // One at a time.
  ASSERT_TRUE(net->node(1).ProposeConfChange(Change(ConfChangeType::kAddLearner, 4)).ok());
  EXPECT_EQ(net->node(1).ProposeConfChange(Change(ConfChangeType::kAddLearner, 5)).code(),
            StatusCode::kFailedPrecondition);
  net->Settle();
  EXPECT_TRUE(net->node(1).ProposeConfChange(Change(ConfChangeType::kAddLearner, 5)).ok());
  net->Settle();
  // Invalid changes are refused at proposal time, before they reach the log.
  const uint64_t last = net->node(1).log().LastIndex();
  // Leaving a joint configuration that is not in force.
  EXPECT_EQ(net->node(1).ProposeConfChange(ConfChange{}).code(), StatusCode::kInvalidArgument);
  // Removing every voter.
  EXPECT_EQ(net->node(1)
                .ProposeConfChange(ConfChange{.changes = {{ConfChangeType::kRemoveNode, 1},
                                                          {ConfChangeType::kRemoveNode, 2},
                                                          {ConfChangeType::kRemoveNode, 3}}})
                .code(),
            StatusCode::kInvalidArgument);
  // A valid change still goes through afterwards (promoting learner 4).
  ASSERT_TRUE(net->node(1).ProposeConfChange(Change(ConfChangeType::kAddVoter, 4)).ok());
  net->Settle();
  // Undecodable bytes.
  Message garbage;
  garbage.type = MessageType::kPropose;
  garbage.group = TestNetwork::kGroup;
  garbage.from = 1;
  garbage.entries = {Entry{.type = EntryType::kConfChange, .data = "\x07garbage"}};
  const uint64_t before_garbage = net->node(1).log().LastIndex();
  EXPECT_FALSE(net->node(1).Step(garbage).ok());
  EXPECT_EQ(net->node(1).log().LastIndex(), before_garbage);
  EXPECT_GT(net->node(1).log().LastIndex(), last);  // only the promotion got in
  EXPECT_EQ(net->conf_state(1), (ConfState{.voters = {1, 2, 3, 4}, .learners = {5}}));
}

}  // namespace
}  // namespace conclave::raft

namespace conclave::raft {
namespace {

// An idle leader may stop ticking once every peer holds and knows the
// whole committed log; its last heartbeat tells the followers so.
TEST(NodeQuiesceTest, IdleLeaderQuiescesWithAMarkedHeartbeat) {
  auto net = ThreeWithLeader();
  ASSERT_TRUE(net->node(1).Propose("x").ok());
  // Appended but not yet acknowledged: not idle.
  net->ProcessAllReady();
  EXPECT_FALSE(net->node(1).CanQuiesce());
  net->Settle();
  ASSERT_TRUE(net->node(1).CanQuiesce());
  EXPECT_FALSE(net->node(2).CanQuiesce());  // followers never decide
  net->ClearSent();
  net->node(1).Quiesce();
  net->ProcessAllReady();
  const uint64_t last = net->node(1).log().LastIndex();
  EXPECT_EQ(net->CountSent([&](const Message& m) {
    return m.type == MessageType::kHeartbeat && m.quiesce && m.commit == last;
  }),
            2u);
  net->Settle();
  // A read round in flight, or a follower behind, keeps it awake.
  ASSERT_TRUE(net->node(1).ReadIndex("r").ok());
  EXPECT_FALSE(net->node(1).CanQuiesce());
  net->Settle();
  net->Isolate(3);
  ASSERT_TRUE(net->node(1).Propose("y").ok());
  net->Settle();
  EXPECT_FALSE(net->node(1).CanQuiesce());
}

TEST(NodeQuiesceTest, ConfChangeInProgressCarriesItsReason) {
  auto net = ThreeWithLeader();
  ConfChange add;
  add.changes.push_back({ConfChangeType::kAddLearner, 4});
  ASSERT_TRUE(net->node(1).ProposeConfChange(add).ok());
  ConfChange another;
  another.changes.push_back({ConfChangeType::kAddLearner, 5});
  Status s = net->node(1).ProposeConfChange(another);
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.reason(), ErrorReason::kConfChangeInProgress);
  EXPECT_EQ(net->node(2).ReadIndex("r").reason(), ErrorReason::kNone);
}

}  // namespace
}  // namespace conclave::raft

namespace conclave::raft {
namespace {

// Ticks stop while a group is quiesced and time does not: a lease won
// before quiescing must not answer reads after the group wakes.
TEST(NodeQuiesceTest, QuiescingGivesUpTheReadLease) {
  auto net = ProductionThree(LeaseConfig());
  net->TickAll();
  ASSERT_EQ(ReadNow(*net, 1, "in lease").size(), 1u);
  ASSERT_TRUE(net->node(1).CanQuiesce());
  net->node(1).Quiesce();
  net->Settle();  // the followers acknowledge the last heartbeat
  EXPECT_TRUE(ReadNow(*net, 1, "after quiescing").empty());
  // Ticks resume; a heartbeat round acknowledged after waking answers the
  // read that waited and wins the lease back.
  net->TickAll();
  EXPECT_EQ(net->TakeReadStates(1).size(), 1u);
  EXPECT_EQ(ReadNow(*net, 1, "lease won again").size(), 1u);
}

}  // namespace
}  // namespace conclave::raft
