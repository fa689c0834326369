#include "raft/test_network.h"

#include <gtest/gtest.h>

#include "base/coding.h"

namespace conclave::raft {

struct TestNetwork::Member {
  NodeId id = kNoNode;
  Config config;
  std::unique_ptr<MemoryStorage> storage;
  std::unique_ptr<Node> node;  // null while stopped
  std::vector<std::string> applied;
  std::map<uint64_t, Entry> applied_entries;  // by index, for the safety check
  uint64_t applied_index = 0;
  ConfState conf_state;
  std::vector<ReadState> read_states;
  std::vector<Ready> readies;
};

TestNetwork::TestNetwork(const Config& base) : base_(base) {}
TestNetwork::~TestNetwork() = default;

std::unique_ptr<TestNetwork> TestNetwork::Bootstrapped(const std::vector<NodeId>& voters,
                                                       const Config& base) {
  auto net = std::make_unique<TestNetwork>(base);
  for (NodeId id : voters)
    net->AddBootstrapped(id, voters);
  return net;
}

void TestNetwork::AddBootstrapped(NodeId id, const std::vector<NodeId>& voters) {
  auto storage = std::make_unique<MemoryStorage>();
  storage->Bootstrap(ConfState{.voters = voters});
  Add(id, std::move(storage));
}

void TestNetwork::Add(NodeId id, std::unique_ptr<MemoryStorage> storage,
                      std::optional<Config> config) {
  auto m = std::make_unique<Member>();
  m->id = id;
  m->config = config.value_or(base_);
  m->config.id = id;
  m->config.group = kGroup;
  m->storage = std::move(storage);
  const Snapshot snap = m->storage->LatestSnapshot();
  m->applied = DecodeImage(snap.data);
  m->applied_index = snap.metadata.index;
  m->conf_state = snap.metadata.conf_state;
  m->config.applied = m->applied_index;
  Result<std::unique_ptr<Node>> node = Node::Create(m->config, m->storage.get());
  CHECK_MSG(node.ok(), "creating node {}: {}", id, node.status().ToString());
  m->node = std::move(node).value();
  members_[id] = std::move(m);
}

TestNetwork::Member& TestNetwork::member(NodeId id) const {
  auto it = members_.find(id);
  CHECK_MSG(it != members_.end(), "no member {}", id);
  return *it->second;
}

Node& TestNetwork::node(NodeId id) const {
  Member& m = member(id);
  CHECK_MSG(m.node != nullptr, "member {} is stopped", id);
  return *m.node;
}

MemoryStorage& TestNetwork::storage(NodeId id) const {
  return *member(id).storage;
}
const std::vector<std::string>& TestNetwork::applied(NodeId id) const {
  return member(id).applied;
}
uint64_t TestNetwork::applied_index(NodeId id) const {
  return member(id).applied_index;
}
const ConfState& TestNetwork::conf_state(NodeId id) const {
  return member(id).conf_state;
}
const std::vector<Ready>& TestNetwork::readies(NodeId id) const {
  return member(id).readies;
}

std::vector<ReadState> TestNetwork::TakeReadStates(NodeId id) {
  std::vector<ReadState> out;
  out.swap(member(id).read_states);
  return out;
}

std::vector<NodeId> TestNetwork::ids() const {
  std::vector<NodeId> out;
  for (const auto& [id, m] : members_)
    out.push_back(id);
  return out;
}

// ---- Ready ----

void TestNetwork::Persist(Member& m, const Ready& rd) {
  if (rd.snapshot) {
    Status s = m.storage->ApplySnapshot(*rd.snapshot);
    ASSERT_TRUE(s.ok()) << "member " << m.id << ": " << s.ToString();
  }
  m.storage->Append(rd.entries);
  if (rd.hard_state) m.storage->SetHardState(*rd.hard_state);
}

void TestNetwork::Apply(Member& m, const Ready& rd) {
  if (rd.snapshot) {
    m.applied = DecodeImage(rd.snapshot->data);
    m.applied_index = rd.snapshot->metadata.index;
    m.conf_state = rd.snapshot->metadata.conf_state;
  }
  for (const Entry& e : rd.committed_entries) {
    EXPECT_EQ(e.index, m.applied_index + 1) << "member " << m.id << " applies out of order";
    if (e.type == EntryType::kConfChange) {
      Result<ConfChange> cc = ConfChange::Decode(e.data);
      EXPECT_TRUE(cc.ok()) << cc.status().ToString();
      if (cc.ok()) {
        Result<ConfState> cs = m.node->ApplyConfChange(*cc);
        if (cs.ok()) m.conf_state = *cs;
      }
    } else if (!e.data.empty()) {
      m.applied.push_back(e.data);
    }
    m.applied_entries[e.index] = e;
    m.applied_index = e.index;
  }
  m.read_states.insert(m.read_states.end(), rd.read_states.begin(), rd.read_states.end());
}

bool TestNetwork::ProcessReady(NodeId id) {
  Member& m = member(id);
  if (m.node == nullptr || !m.node->HasReady()) return false;
  Ready rd = m.node->GetReady();
  // 1. Persist.
  Persist(m, rd);
  // 2. Send.
  for (const Message& msg : rd.messages) {
    EXPECT_EQ(msg.group, kGroup) << msg.ToString();
    // A forwarded kTransferLeader names the transferee, not the sender.
    if (msg.type != MessageType::kTransferLeader) {
      EXPECT_EQ(msg.from, id) << msg.ToString();
    }
    EXPECT_FALSE(IsLocalMessage(msg.type) && msg.type != MessageType::kPropose) << msg.ToString();
    queue_.push_back(msg);
    sent_.push_back(msg);
  }
  // 3. Apply (and 4. collect reads).
  Apply(m, rd);
  // 5. Advance.
  m.node->Advance(rd);
  m.readies.push_back(std::move(rd));
  return true;
}

bool TestNetwork::ProcessAllReady() {
  bool any = false;
  for (const auto& [id, m] : members_)
    any |= ProcessReady(id);
  return any;
}

// ---- messages ----

bool TestNetwork::Dropped(const Message& m) const {
  auto it = members_.find(m.to);
  if (it == members_.end() || it->second->node == nullptr) return true;
  if (isolated_.count(m.from) || isolated_.count(m.to)) return true;
  if (cut_.count({std::min(m.from, m.to), std::max(m.from, m.to)})) return true;
  return drop_ && drop_(m);
}

std::vector<Message> TestNetwork::Take(const std::function<bool(const Message&)>& pred) {
  std::vector<Message> taken;
  std::vector<Message> kept;
  for (Message& m : queue_)
    (pred(m) ? taken : kept).push_back(std::move(m));
  queue_ = std::move(kept);
  return taken;
}

void TestNetwork::Deliver(const Message& m) {
  if (Dropped(m)) return;
  Status s = node(m.to).Step(m);
  if (!s.ok()) step_errors_.push_back(std::to_string(m.to) + ": " + s.ToString());
  if (m.type == MessageType::kSnapshot) {
    auto it = members_.find(m.from);
    if (it != members_.end() && it->second->node) it->second->node->ReportSnapshot(m.to, true);
  }
}

void TestNetwork::DeliverQueued() {
  std::vector<Message> batch;
  batch.swap(queue_);
  for (const Message& m : batch)
    Deliver(m);
}

void TestNetwork::Settle() {
  // A settled network is quiet: heartbeats need ticks, so this always ends
  // unless the core loops on its own.
  for (int round = 0; round < 10000; ++round) {
    const bool ready = ProcessAllReady();
    if (!ready && queue_.empty()) return;
    DeliverQueued();
  }
  ADD_FAILURE() << "network did not settle";
}

size_t TestNetwork::CountSent(const std::function<bool(const Message&)>& pred) const {
  size_t n = 0;
  for (const Message& m : sent_)
    n += pred(m);
  return n;
}

// ---- faults ----

void TestNetwork::Stop(NodeId id) {
  Member& m = member(id);
  m.node.reset();
}

void TestNetwork::Restart(NodeId id) {
  Member& m = member(id);
  CHECK(m.node == nullptr);
  m.config.applied = m.applied_index;
  Result<std::unique_ptr<Node>> node = Node::Create(m.config, m.storage.get());
  CHECK_MSG(node.ok(), "restarting node {}: {}", id, node.status().ToString());
  m.node = std::move(node).value();
}

// ---- time ----

void TestNetwork::TickAll(int n) {
  for (int i = 0; i < n; ++i) {
    for (const auto& [id, m] : members_) {
      if (m->node) m->node->Tick();
    }
    Settle();
  }
}

NodeId TestNetwork::ElectByTicking(int max_ticks) {
  for (int i = 0; i < max_ticks; ++i) {
    const NodeId lead = Leader();
    if (lead != kNoNode) {
      const Node& n = node(lead);
      if (n.log().Term(n.log().committed()) == n.term()) return lead;
    }
    TickAll();
  }
  return kNoNode;
}

NodeId TestNetwork::Leader() const {
  NodeId lead = kNoNode;
  uint64_t term = 0;
  for (const auto& [id, m] : members_) {
    if (m->node == nullptr || m->node->role() != Role::kLeader) continue;
    EXPECT_NE(m->node->term(), term) << "two leaders in term " << term;
    if (m->node->term() > term) {
      term = m->node->term();
      lead = id;
    }
  }
  return lead;
}

void TestNetwork::CompactAtApplied(NodeId id) {
  Member& m = member(id);
  Status s = m.storage->CreateSnapshot(m.applied_index, m.conf_state, EncodeImage(m.applied));
  ASSERT_TRUE(s.ok()) << s.ToString();
  s = m.storage->Compact(m.applied_index);
  ASSERT_TRUE(s.ok()) << s.ToString();
}

void TestNetwork::ExpectAppliedConsistent() const {
  std::map<uint64_t, std::pair<NodeId, Entry>> seen;
  for (const auto& [id, m] : members_) {
    for (const auto& [index, e] : m->applied_entries) {
      auto [it, inserted] = seen.emplace(index, std::make_pair(id, e));
      if (inserted) continue;
      EXPECT_EQ(it->second.second, e) << "members " << it->second.first << " and " << id
                                      << " applied different entries at " << index;
    }
  }
}

std::string TestNetwork::EncodeImage(const std::vector<std::string>& applied) {
  std::string out;
  for (const std::string& s : applied)
    PutLengthPrefixed(&out, s);
  return out;
}

std::vector<std::string> TestNetwork::DecodeImage(const std::string& image) {
  std::vector<std::string> out;
  Decoder d(image);
  std::string_view s;
  while (!d.empty()) {
    CHECK(d.ReadLengthPrefixed(&s));
    out.emplace_back(s);
  }
  return out;
}

// ---- helpers ----

std::unique_ptr<MemoryStorage> StorageWithLog(const std::vector<NodeId>& voters,
                                              const std::vector<uint64_t>& terms, uint64_t term,
                                              NodeId vote) {
  auto storage = std::make_unique<MemoryStorage>();
  storage->Bootstrap(ConfState{.voters = voters});
  std::vector<Entry> entries;
  uint64_t index = storage->LastIndex();
  for (uint64_t t : terms) {
    ++index;
    entries.push_back(Entry{
        .term = t, .index = index, .data = "e" + std::to_string(index) + "t" + std::to_string(t)});
  }
  storage->Append(entries);
  storage->SetHardState(HardState{term, vote, storage->FirstIndex() - 1});
  return storage;
}

std::vector<std::pair<uint64_t, uint64_t>> LogTerms(const LogStorage& storage) {
  std::vector<std::pair<uint64_t, uint64_t>> out;
  for (uint64_t i = storage.FirstIndex() - 1; i <= storage.LastIndex(); ++i) {
    Result<uint64_t> t = storage.Term(i);
    CHECK(t.ok());
    out.emplace_back(i, *t);
  }
  return out;
}

Config ScenarioConfig(uint64_t seed) {
  Config c;
  c.random_seed = seed;
  c.check_quorum = false;
  return c;
}

}  // namespace conclave::raft
