#include "sim/sim.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <set>

#include "base/coding.h"
#include "base/random.h"
#include "raft/storage.h"

namespace conclave::sim {

using raft::ConfChange;
using raft::ConfChangeTransition;
using raft::ConfChangeType;
using raft::ConfState;
using raft::Entry;
using raft::EntryType;
using raft::Message;
using raft::MessageType;
using raft::NodeId;
using raft::Ready;
using raft::Role;

const std::vector<FaultProfile>& Profiles() {
  static const std::vector<FaultProfile> profiles = [] {
    std::vector<FaultProfile> p;
    p.push_back({.name = "calm", .delay_min_us = 50, .delay_max_us = 400});
    p.push_back({.name = "lossy",
                 .drop = 0.05,
                 .duplicate = 0.03,
                 .delay_min_us = 50,
                 .delay_max_us = 8000,
                 .compact_every_entries = 40});
    p.push_back({.name = "partitions",
                 .drop = 0.01,
                 .delay_max_us = 3000,
                 .partition_mean_us = 700'000,
                 .compact_every_entries = 60});
    p.push_back({.name = "crashes",
                 .drop = 0.01,
                 .delay_max_us = 3000,
                 .crash_mean_us = 500'000,
                 .compact_every_entries = 30});
    p.push_back({.name = "membership",
                 .drop = 0.01,
                 .delay_max_us = 3000,
                 .crash_mean_us = 1'500'000,
                 .membership_mean_us = 400'000,
                 .transfer_mean_us = 900'000,
                 .compact_every_entries = 30});
    // Leaders die soon after they replicate, with large entries split over
    // several appends: the ground for the paper's Figure 8.
    p.push_back({.name = "leader-churn",
                 .drop = 0.02,
                 .delay_max_us = 6000,
                 .partition_mean_us = 150'000,
                 .partition_max_us = 300'000,
                 .crash_mean_us = 120'000,
                 .restart_max_us = 300'000,
                 .leader_crash_one_in = 1,
                 .new_leader_crash = 0.4,
                 .max_payload_bytes = 3000});
    p.push_back({.name = "chaos",
                 .drop = 0.04,
                 .duplicate = 0.02,
                 .delay_max_us = 10000,
                 .partition_mean_us = 900'000,
                 .crash_mean_us = 700'000,
                 .membership_mean_us = 900'000,
                 .transfer_mean_us = 700'000,
                 .clock_skew = 0.05,
                 .compact_every_entries = 25,
                 .max_payload_bytes = 2048});
    return p;
  }();
  return profiles;
}

std::string SimResult::Summary() const {
  return fmt::format(
      "seed={} profile={} nodes={} reads={} {} events={} msgs={} acked_writes={} reads_ok={} "
      "timeouts={} leaders={} max_term={} crashes={} partitions={} conf_changes={} transfers={} "
      "snapshots={} applied={}",
      seed, profile, nodes, read_mode, ok ? "OK" : "VIOLATION", stats.events, stats.messages,
      stats.writes_acked, stats.reads_ok, stats.ops_timed_out, stats.leaders_elected,
      stats.max_term, stats.crashes, stats.partitions, stats.conf_changes, stats.transfers,
      stats.snapshots_installed, stats.final_applied);
}

std::string SimResult::Report() const {
  std::string s = Summary();
  if (!ok) {
    s += fmt::format("\nviolation: {}\nreplay: conclave sim --seed {} --seeds 1 --trace\n",
                     violation, seed);
    s += "last events:\n";
    for (const std::string& line : trace)
      s += "  " + line + "\n";
  }
  return s;
}

namespace {

constexpr int64_t kTickUs = 10'000;  // nominal tick: 10 ms
constexpr int64_t kOpTimeoutUs = 1'000'000;

uint64_t Mix(uint64_t h, uint64_t v) {
  h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
  return h;
}

uint64_t HashBytes(std::string_view s) {
  uint64_t h = 1469598103934665603ULL;
  for (char c : s)
    h = (h ^ static_cast<uint8_t>(c)) * 1099511628211ULL;
  return h;
}

// The replicated application: a running hash over applied writes.
struct App {
  uint64_t applied_index = 0;
  uint64_t hash = 0;
  uint64_t writes = 0;

  std::string Encode() const {
    std::string s;
    PutFixed64(&s, hash);
    PutFixed64(&s, writes);
    return s;
  }
  static App Decode(std::string_view data, uint64_t index) {
    App a;
    a.applied_index = index;
    if (data.size() == 16) {
      a.hash = DecodeFixed64(data.data());
      a.writes = DecodeFixed64(data.data() + 8);
    }
    return a;
  }
};

enum class EventType {
  kTick,
  kDeliver,
  kSyncDone,
  kClient,
  kOpTimeout,
  kFault,
  kHeal,
  kRestart,
  kSnapshotReport,
  kCrash
};

struct Event {
  int64_t time;
  uint64_t seq;
  EventType type;
  NodeId node = 0;
  // kTick, kSyncDone, kCrash: the node incarnation the event belongs to;
  // otherwise event-specific (client, op, fault kind, partition, outcome).
  uint64_t aux = 0;
  std::shared_ptr<Message> msg;
};

struct EventLater {
  bool operator()(const Event& a, const Event& b) const {
    return a.time != b.time ? a.time > b.time : a.seq > b.seq;
  }
};

struct PendingRead {
  uint64_t op;
  uint64_t index = 0;
  bool has_index = false;
};

struct SimNode {
  NodeId id = 0;
  bool up = false;
  bool retired = false;  // removed from the group for good
  uint64_t incarnation = 0;
  int64_t tick_period_us = kTickUs;
  int64_t disk_latency_us = 200;
  std::unique_ptr<raft::MemoryStorage> storage;
  std::unique_ptr<raft::Node> raft;
  App app;
  ConfState conf;  // configuration as of app.applied_index
  bool ready_in_flight = false;
  Ready inflight;
  Role last_role = Role::kFollower;
  uint64_t last_term = 0;
  std::map<uint64_t, uint64_t> pending_writes;  // write id -> op id
  std::map<std::string, PendingRead> pending_reads;
};

struct Op {
  int client;
  bool is_write;
  uint64_t write_id = 0;
  uint64_t required_index = 0;  // reads: the newest acknowledged write at start
  bool done = false;
  NodeId node = 0;
};

std::set<NodeId> Members(const ConfState& cs) {
  std::set<NodeId> m(cs.voters.begin(), cs.voters.end());
  m.insert(cs.learners.begin(), cs.learners.end());
  m.insert(cs.voters_outgoing.begin(), cs.voters_outgoing.end());
  m.insert(cs.learners_next.begin(), cs.learners_next.end());
  return m;
}

struct TraceEvent {
  int64_t time;
  std::string text;
};

class World {
 public:
  explicit World(const SimOptions& o);
  SimResult Run();

 private:
  // ---- setup ----
  void ChooseShape();
  SimNode& AddNode(NodeId id, bool bootstrap, const ConfState& cs);
  void StartRaft(SimNode& n);

  // ---- events ----
  void Schedule(int64_t at, EventType type, NodeId node = 0, uint64_t aux = 0,
                std::shared_ptr<Message> msg = nullptr);
  void Handle(const Event& e);
  void OnTick(SimNode& n);
  void OnDeliver(const Event& e);
  void OnClient(int client);
  void OnOpTimeout(uint64_t op);
  void OnFault(uint64_t kind);
  void OnHeal(uint64_t partition_id);
  void OnRestart(NodeId id);

  // ---- the node driver ----
  void Pump(SimNode& n);
  void FinishReady(SimNode& n);
  void Persist(SimNode& n, const Ready& rd);
  void ApplyEntries(SimNode& n, const std::vector<Entry>& entries);
  void ApplySnapshot(SimNode& n, const raft::Snapshot& snap);
  void MaybeCompact(SimNode& n);
  void ServeReads(SimNode& n);
  void SendAll(SimNode& n, std::vector<Message>& msgs);
  void Send(const Message& m);
  void ReportLost(const std::shared_ptr<Message>& m);
  void Crash(SimNode& n);

  // ---- faults ----
  void StartPartition();
  void CrashSomeone();
  void ChangeMembership();
  void TransferLeader();
  SimNode* CurrentLeader();
  std::vector<NodeId> UpIds() const;
  bool LinkBlocked(NodeId from, NodeId to) const;
  void HealAll();

  // ---- checks ----
  void CheckAfterStep(SimNode& n);
  void CheckLeaderCompleteness(SimNode& n);
  void CheckLogMatching();
  void RecordPersistedEntries(const std::vector<Entry>& entries);
  bool CheckLiveness();
  void Violation(std::string what);
  void Trace(std::string text);

  SimOptions opts_;
  FaultProfile profile_;
  SeededRandom rnd_;
  int64_t now_ = 0;
  uint64_t seq_ = 0;
  std::priority_queue<Event, std::vector<Event>, EventLater> events_;
  std::map<NodeId, SimNode> nodes_;
  NodeId next_node_id_ = 1;
  bool lease_mode_ = false;

  // Partitions: a set of blocked directed links, grouped by partition id.
  std::map<uint64_t, std::set<std::pair<NodeId, NodeId>>> partitions_;
  uint64_t next_partition_ = 1;
  bool healed_ = false;
  int64_t heal_time_ = 0;

  // Clients and operations.
  std::vector<uint64_t> ops_;
  std::map<uint64_t, Op> op_table_;
  uint64_t next_op_ = 1;
  uint64_t next_write_ = 1;
  uint64_t max_acked_index_ = 0;
  uint64_t first_ack_after_heal_ = 0;

  // Global records for the checks.
  std::map<uint64_t, NodeId> leader_of_term_;
  std::map<uint64_t, std::pair<uint64_t, uint64_t>> applied_;     // index -> (term, data hash)
  std::map<uint64_t, uint64_t> state_after_;                      // index -> app hash
  std::map<std::pair<uint64_t, uint64_t>, uint64_t> entry_hash_;  // (index, term) -> data hash
  uint64_t max_applied_ = 0;

  SimResult result_;
  std::deque<TraceEvent> trace_;
  bool stop_ = false;
};

World::World(const SimOptions& o) : opts_(o), rnd_(o.seed) {
  result_.seed = o.seed;
}

void World::ChooseShape() {
  const auto& profiles = Profiles();
  if (opts_.profile.empty()) {
    profile_ = profiles[opts_.seed % profiles.size()];
  } else {
    profile_ = profiles.front();
    for (const FaultProfile& p : profiles) {
      if (p.name == opts_.profile) profile_ = p;
    }
  }
  // Profile, size and read mode rotate with the seed so every slice of
  // consecutive seeds covers every combination.
  const uint64_t shape = opts_.seed / profiles.size();
  int n = opts_.nodes;
  if (n == 0) n = (shape % 2 == 0) ? 3 : 5;
  lease_mode_ = opts_.read_mode == -1 ? (shape / 2) % 2 == 1 : opts_.read_mode == 1;
  result_.profile = profile_.name;
  result_.nodes = n;
  result_.read_mode = lease_mode_ ? "lease" : "safe";
  ConfState cs;
  for (int i = 0; i < n; ++i)
    cs.voters.push_back(next_node_id_++);
  for (NodeId id : cs.voters)
    AddNode(id, true, cs);
}

SimNode& World::AddNode(NodeId id, bool bootstrap, const ConfState& cs) {
  SimNode& n = nodes_[id];
  n.id = id;
  n.storage = std::make_unique<raft::MemoryStorage>();
  if (bootstrap) {
    n.storage->Bootstrap(cs);
  }
  const double skew = profile_.clock_skew;
  n.tick_period_us = static_cast<int64_t>(kTickUs * (1.0 + skew * (2 * rnd_.NextDouble() - 1)));
  n.disk_latency_us = rnd_.Range(50, 1500);
  StartRaft(n);
  return n;
}

void World::StartRaft(SimNode& n) {
  raft::Config c;
  c.id = n.id;
  c.group = 7;
  c.election_ticks = 10;
  c.heartbeat_ticks = 1;
  c.max_message_bytes = 4096;
  c.max_inflight_messages = 8;
  c.max_uncommitted_bytes = 256 << 10;
  c.pre_vote = true;
  c.check_quorum = true;
  c.read_only = lease_mode_ ? raft::ReadOnlyOption::kLeaseBased : raft::ReadOnlyOption::kSafe;
  c.random_seed = opts_.seed * 1000003 + n.incarnation;
  c.bugs = opts_.bugs;
  const raft::Snapshot snap = n.storage->LatestSnapshot();
  c.applied = snap.metadata.index;
  auto node = raft::Node::Create(c, n.storage.get());
  if (!node.ok()) {
    Violation(fmt::format("node {} failed to restart: {}", n.id, node.status().ToString()));
    return;
  }
  n.raft = std::move(node).value();
  n.app = App::Decode(snap.data, snap.metadata.index);
  n.conf = snap.metadata.conf_state;
  n.up = true;
  n.ready_in_flight = false;
  n.last_role = Role::kFollower;
  n.last_term = n.raft->term();
  n.pending_writes.clear();
  n.pending_reads.clear();
  ++n.incarnation;
  Schedule(now_ + rnd_.Range(0, n.tick_period_us), EventType::kTick, n.id, n.incarnation);
}

void World::Schedule(int64_t at, EventType type, NodeId node, uint64_t aux,
                     std::shared_ptr<Message> msg) {
  events_.push(Event{at, seq_++, type, node, aux, std::move(msg)});
}

void World::Trace(std::string text) {
  result_.fingerprint = Mix(result_.fingerprint, HashBytes(text));
  result_.fingerprint = Mix(result_.fingerprint, static_cast<uint64_t>(now_));
  if (opts_.print_trace) fmt::print("{:>10} {}\n", now_, text);
  trace_.push_back({now_, std::move(text)});
  if (trace_.size() > opts_.trace_tail) trace_.pop_front();
}

void World::Violation(std::string what) {
  if (!result_.ok) return;
  result_.ok = false;
  result_.violation = fmt::format("at t={}us: {}", now_, what);
  stop_ = true;
}

// ---- main loop ----

SimResult World::Run() {
  ChooseShape();
  for (int c = 0; c < opts_.clients; ++c) {
    Schedule(rnd_.Range(0, 50'000), EventType::kClient, 0, static_cast<uint64_t>(c));
  }
  auto schedule_fault = [&](uint64_t kind, int64_t mean) {
    if (mean > 0) Schedule(rnd_.Range(mean / 2, mean * 3 / 2), EventType::kFault, 0, kind);
  };
  schedule_fault(0, profile_.partition_mean_us);
  schedule_fault(1, profile_.crash_mean_us);
  schedule_fault(2, profile_.membership_mean_us);
  schedule_fault(3, profile_.transfer_mean_us);

  const int64_t end = opts_.safety_us + opts_.liveness_us;
  while (!stop_ && !events_.empty()) {
    Event e = events_.top();
    events_.pop();
    now_ = e.time;
    if (!healed_ && now_ >= opts_.safety_us) HealAll();
    if (now_ > end) {
      Violation(fmt::format(
          "liveness: no leader with a new committed write and converged members {}us after "
          "healing",
          opts_.liveness_us));
      break;
    }
    ++result_.stats.events;
    Handle(e);
    if (healed_ && !stop_ && CheckLiveness()) break;
  }
  if (result_.ok && !stop_ && events_.empty()) Violation("simulation ran out of events");
  if (result_.ok) CheckLogMatching();
  for (const TraceEvent& t : trace_)
    result_.trace.push_back(fmt::format("{:>10} {}", t.time, t.text));
  if (!result_.ok) {
    result_.trace.push_back("node states at the end:");
    for (const auto& [id, n] : nodes_) {
      if (!n.up) {
        result_.trace.push_back(fmt::format("n{} down{}", id, n.retired ? " (retired)" : ""));
        continue;
      }
      const raft::NodeStatus st = n.raft->GetStatus();
      std::string line = fmt::format("n{} {} term={} lead={} commit={} applied={} last={} conf={}",
                                     id, raft::RoleName(st.role), st.term, st.leader, st.commit,
                                     n.app.applied_index, st.last_index, st.conf_state.ToString());
      for (const auto& [pid, pr] : st.progress)
        line += fmt::format(" [n{}: {}]", pid, pr);
      result_.trace.push_back(line);
    }
  }
  result_.stats.final_applied = max_applied_;
  return result_;
}

void World::Handle(const Event& e) {
  switch (e.type) {
    case EventType::kTick: {
      auto it = nodes_.find(e.node);
      if (it == nodes_.end() || !it->second.up || it->second.incarnation != e.aux) return;
      OnTick(it->second);
      return;
    }
    case EventType::kDeliver:
      OnDeliver(e);
      return;
    case EventType::kSyncDone: {
      auto it = nodes_.find(e.node);
      if (it == nodes_.end() || !it->second.up || it->second.incarnation != e.aux) return;
      FinishReady(it->second);
      Pump(it->second);
      return;
    }
    case EventType::kClient:
      OnClient(static_cast<int>(e.aux));
      return;
    case EventType::kOpTimeout:
      OnOpTimeout(e.aux);
      return;
    case EventType::kFault:
      OnFault(e.aux);
      return;
    case EventType::kHeal:
      OnHeal(e.aux);
      return;
    case EventType::kRestart:
      OnRestart(e.node);
      return;
    case EventType::kCrash: {
      auto it = nodes_.find(e.node);
      if (healed_ || it == nodes_.end() || !it->second.up || it->second.incarnation != e.aux) {
        return;
      }
      Crash(it->second);
      Schedule(now_ + rnd_.Range(20'000, profile_.restart_max_us), EventType::kRestart, e.node);
      return;
    }
    case EventType::kSnapshotReport: {
      auto it = nodes_.find(e.node);
      if (it == nodes_.end() || !it->second.up) return;
      it->second.raft->ReportSnapshot(e.msg->to, e.aux != 0);
      Pump(it->second);
      return;
    }
  }
}

void World::OnTick(SimNode& n) {
  n.raft->Tick();
  CheckAfterStep(n);
  Pump(n);
  Schedule(now_ + n.tick_period_us, EventType::kTick, n.id, n.incarnation);
}

void World::OnDeliver(const Event& e) {
  const Message& m = *e.msg;
  auto it = nodes_.find(m.to);
  if (it == nodes_.end() || !it->second.up || LinkBlocked(m.from, m.to)) {
    ReportLost(e.msg);
    return;
  }
  SimNode& n = it->second;
  Trace(fmt::format("n{} <- {}", n.id, m.ToString()));
  Status s = n.raft->Step(m);
  (void)s;  // forwarded requests may be refused; the client times out
  if (m.type == MessageType::kSnapshot) {
    Schedule(now_ + rnd_.Range(profile_.delay_min_us, profile_.delay_max_us + 1),
             EventType::kSnapshotReport, m.from, 1, e.msg);
  }
  CheckAfterStep(n);
  Pump(n);
}

// ---- the node driver: Ready handling with a disk that takes time ----

void World::Pump(SimNode& n) {
  while (!stop_ && n.up && !n.ready_in_flight && n.raft->HasReady()) {
    n.inflight = n.raft->GetReady();
    n.ready_in_flight = true;
    if (opts_.driver_bugs.send_before_persist) SendAll(n, n.inflight.messages);
    const bool needs_disk = n.inflight.must_sync || n.inflight.snapshot.has_value();
    if (needs_disk) {
      // The rest happens when the disk reports the write durable.
      Schedule(now_ + n.disk_latency_us, EventType::kSyncDone, n.id, n.incarnation);
      return;
    }
    FinishReady(n);
  }
}

void World::FinishReady(SimNode& n) {
  Ready& rd = n.inflight;
  Persist(n, rd);
  if (stop_) return;
  // Only now may messages that depend on the persisted state leave.
  SendAll(n, rd.messages);
  if (rd.snapshot) ApplySnapshot(n, *rd.snapshot);
  ApplyEntries(n, rd.committed_entries);
  for (const raft::ReadState& rs : rd.read_states) {
    auto it = n.pending_reads.find(rs.request_context);
    if (it == n.pending_reads.end()) continue;
    it->second.index = rs.index;
    it->second.has_index = true;
  }
  ServeReads(n);
  n.raft->Advance(rd);
  n.ready_in_flight = false;
  if (n.retired) {
    Crash(n);
    return;
  }
  MaybeCompact(n);
  CheckAfterStep(n);
}

void World::Persist(SimNode& n, const Ready& rd) {
  if (rd.snapshot) {
    Status s = n.storage->ApplySnapshot(*rd.snapshot);
    if (!s.ok()) Violation(fmt::format("n{} snapshot persist: {}", n.id, s.ToString()));
  }
  n.storage->Append(rd.entries);
  RecordPersistedEntries(rd.entries);
  if (rd.hard_state) n.storage->SetHardState(*rd.hard_state);
}

void World::SendAll(SimNode& n, std::vector<Message>& msgs) {
  for (Message& m : msgs) {
    // Forwarded requests keep their originator in `from`; nothing else may
    // claim another sender.
    const bool forwarded = m.type == MessageType::kReadIndex || m.type == MessageType::kPropose ||
                           m.type == MessageType::kTransferLeader;
    if (m.from != n.id && !forwarded) {
      Violation(fmt::format("n{} sent a message as n{}: {}", n.id, m.from, m.ToString()));
    }
    Send(m);
  }
  msgs.clear();
}

void World::Send(const Message& m) {
  ++result_.stats.messages;
  auto msg = std::make_shared<Message>(m);
  if (LinkBlocked(m.from, m.to) || (!healed_ && rnd_.Bernoulli(profile_.drop))) {
    ReportLost(msg);
    return;
  }
  Schedule(now_ + rnd_.Range(profile_.delay_min_us, profile_.delay_max_us), EventType::kDeliver,
           m.to, 0, msg);
  if (!healed_ && rnd_.Bernoulli(profile_.duplicate)) {
    Schedule(now_ + rnd_.Range(profile_.delay_min_us, profile_.delay_max_us * 2),
             EventType::kDeliver, m.to, 0, msg);
  }
}

// The transport tells the sender when a snapshot did not arrive, as the
// real one does when its stream fails.
void World::ReportLost(const std::shared_ptr<Message>& m) {
  if (m->type != MessageType::kSnapshot) return;
  Schedule(now_ + profile_.delay_max_us, EventType::kSnapshotReport, m->from, 0, m);
}

void World::ApplyEntries(SimNode& n, const std::vector<Entry>& entries) {
  for (const Entry& e : entries) {
    if (e.index != n.app.applied_index + 1) {
      Violation(fmt::format("n{} applies index {} after {}", n.id, e.index, n.app.applied_index));
      return;
    }
    const uint64_t data_hash = HashBytes(e.data) ^ static_cast<uint64_t>(e.type);
    uint64_t write_id = 0;
    if (e.type == EntryType::kNormal && e.data.size() >= 8) {
      write_id = DecodeFixed64(e.data.data());
      n.app.hash = Mix(n.app.hash, write_id);
      ++n.app.writes;
    } else if (e.type == EntryType::kConfChange) {
      Result<ConfChange> cc = ConfChange::Decode(e.data);
      if (!cc.ok()) {
        Violation(
            fmt::format("n{} applies undecodable conf change: {}", n.id, cc.status().ToString()));
        return;
      }
      Result<ConfState> cs = n.raft->ApplyConfChange(*cc);
      if (cs.ok()) {
        // A member that this change drops from every part of the
        // configuration stops for good (the same change drops it everywhere).
        const std::set<NodeId> before = Members(n.conf);
        const std::set<NodeId> after = Members(*cs);
        n.conf = *cs;
        for (NodeId id : before) {
          SimNode& other = nodes_.at(id);
          if (after.count(id) == 0 && !other.retired) {
            other.retired = true;
            // The applying node itself stops once its Ready is finished.
            if (other.up && id != n.id) Crash(other);
            Trace(fmt::format("n{} retired (removed from the group)", id));
          }
        }
      }
    }
    n.app.applied_index = e.index;
    auto [it, inserted] = applied_.try_emplace(e.index, e.term, data_hash);
    if (!inserted && it->second != std::make_pair(e.term, data_hash)) {
      Violation(
          fmt::format("state machine safety: n{} applied index {} term {} but index {} "
                      "was applied elsewhere with term {}",
                      n.id, e.index, e.term, e.index, it->second.first));
      return;
    }
    auto [st, fresh] = state_after_.try_emplace(e.index, n.app.hash);
    if (!fresh && st->second != n.app.hash) {
      Violation(fmt::format("state machine safety: n{} state after {} differs", n.id, e.index));
      return;
    }
    max_applied_ = std::max(max_applied_, e.index);
    if (write_id != 0) {
      auto w = n.pending_writes.find(write_id);
      if (w != n.pending_writes.end()) {
        Op& op = op_table_.at(w->second);
        if (!op.done) {
          op.done = true;
          ++result_.stats.writes_acked;
          max_acked_index_ = std::max(max_acked_index_, e.index);
          if (healed_ && first_ack_after_heal_ == 0) first_ack_after_heal_ = e.index;
          Trace(fmt::format("n{} ack write {} at {}", n.id, write_id, e.index));
          Schedule(now_ + rnd_.Range(0, 20'000), EventType::kClient, 0,
                   static_cast<uint64_t>(op.client));
        }
        n.pending_writes.erase(w);
      }
    }
  }
}

void World::ApplySnapshot(SimNode& n, const raft::Snapshot& snap) {
  App app = App::Decode(snap.data, snap.metadata.index);
  auto it = state_after_.find(snap.metadata.index);
  if (it != state_after_.end() && it->second != app.hash) {
    Violation(fmt::format("n{} installed a snapshot at {} whose state differs", n.id,
                          snap.metadata.index));
    return;
  }
  n.app = app;
  n.conf = snap.metadata.conf_state;
  ++result_.stats.snapshots_installed;
  Trace(fmt::format("n{} installed snapshot at {}", n.id, snap.metadata.index));
}

void World::MaybeCompact(SimNode& n) {
  const int every = profile_.compact_every_entries;
  if (every == 0) return;
  const uint64_t snap_index = n.storage->LatestSnapshot().metadata.index;
  if (n.app.applied_index < snap_index + static_cast<uint64_t>(every)) return;
  if (n.app.applied_index > n.storage->LastIndex()) return;
  Status s = n.storage->CreateSnapshot(n.app.applied_index, n.conf, n.app.Encode());
  if (!s.ok()) return;
  // Keep a short tail so that slightly lagging followers need no snapshot.
  const uint64_t keep = 5;
  if (n.app.applied_index > keep && n.app.applied_index - keep > n.storage->FirstIndex()) {
    (void)n.storage->Compact(n.app.applied_index - keep);
  }
}

void World::ServeReads(SimNode& n) {
  for (auto it = n.pending_reads.begin(); it != n.pending_reads.end();) {
    PendingRead& r = it->second;
    if (!r.has_index || n.app.applied_index < r.index) {
      ++it;
      continue;
    }
    Op& op = op_table_.at(r.op);
    if (!op.done) {
      op.done = true;
      if (n.app.applied_index < op.required_index) {
        Violation(fmt::format(
            "stale read: n{} served a read at applied index {} (read index {}) but a write "
            "acknowledged before the read began is at index {}",
            n.id, n.app.applied_index, r.index, op.required_index));
        return;
      }
      ++result_.stats.reads_ok;
      Trace(fmt::format("n{} read ok at {} (needed {})", n.id, n.app.applied_index,
                        op.required_index));
      Schedule(now_ + rnd_.Range(0, 20'000), EventType::kClient, 0,
               static_cast<uint64_t>(op.client));
    }
    it = n.pending_reads.erase(it);
  }
}

void World::Crash(SimNode& n) {
  if (!n.up) return;
  ++result_.stats.crashes;
  Trace(fmt::format("n{} crash{}", n.id, n.ready_in_flight ? " (with an unsynced write)" : ""));
  if (n.ready_in_flight) {
    // The disk kept an arbitrary prefix of the unsynced entries; the hard
    // state, written after them, is lost.
    const Ready& rd = n.inflight;
    if (rd.snapshot && rnd_.OneIn(2)) {
      (void)n.storage->ApplySnapshot(*rd.snapshot);
    } else if (!rd.snapshot && !rd.entries.empty()) {
      const size_t keep = rnd_.Uniform(rd.entries.size() + 1);
      std::vector<Entry> prefix(rd.entries.begin(), rd.entries.begin() + static_cast<long>(keep));
      n.storage->Append(prefix);
      RecordPersistedEntries(prefix);
    }
  }
  n.up = false;
  n.raft.reset();
  n.ready_in_flight = false;
  n.inflight = Ready{};
  n.pending_writes.clear();
  n.pending_reads.clear();
  ++n.incarnation;
}

// ---- clients ----

void World::OnClient(int client) {
  if (stop_) return;
  std::vector<NodeId> up = UpIds();
  if (up.empty()) {
    Schedule(now_ + 50'000, EventType::kClient, 0, static_cast<uint64_t>(client));
    return;
  }
  SimNode& n = nodes_.at(up[rnd_.Uniform(up.size())]);
  const uint64_t op_id = next_op_++;
  Op op{.client = client, .is_write = rnd_.Uniform(100) < 65, .node = n.id};
  Status s;
  if (op.is_write) {
    op.write_id = next_write_++;
    std::string data;
    PutFixed64(&data, op.write_id);
    data.resize(8 + rnd_.Uniform(profile_.max_payload_bytes), 'x');
    s = n.raft->Propose(std::move(data));
    if (s.ok()) n.pending_writes[op.write_id] = op_id;
  } else {
    op.required_index = max_acked_index_;
    std::string ctx = fmt::format("r{}", op_id);
    s = n.raft->ReadIndex(ctx);
    if (s.ok()) n.pending_reads[ctx] = PendingRead{op_id};
  }
  Trace(fmt::format("client{} {} op{} via n{}: {}", client, op.is_write ? "write" : "read", op_id,
                    n.id, s.ok() ? "sent" : s.message()));
  if (!s.ok()) {
    Schedule(now_ + rnd_.Range(5'000, 30'000), EventType::kClient, 0,
             static_cast<uint64_t>(client));
    return;
  }
  op_table_.emplace(op_id, op);
  Schedule(now_ + kOpTimeoutUs, EventType::kOpTimeout, 0, op_id);
  CheckAfterStep(n);
  Pump(n);
}

void World::OnOpTimeout(uint64_t op_id) {
  Op& op = op_table_.at(op_id);
  if (op.done) {
    op_table_.erase(op_id);
    return;
  }
  op.done = true;  // outcome unknown; a later apply no longer acknowledges it
  ++result_.stats.ops_timed_out;
  auto it = nodes_.find(op.node);
  if (it != nodes_.end()) {
    if (op.is_write) it->second.pending_writes.erase(op.write_id);
  }
  Schedule(now_ + rnd_.Range(0, 20'000), EventType::kClient, 0, static_cast<uint64_t>(op.client));
}

// ---- faults ----

std::vector<NodeId> World::UpIds() const {
  std::vector<NodeId> ids;
  for (const auto& [id, n] : nodes_) {
    if (n.up) ids.push_back(id);
  }
  return ids;
}

bool World::LinkBlocked(NodeId from, NodeId to) const {
  for (const auto& [id, links] : partitions_) {
    if (links.count({from, to})) return true;
  }
  return false;
}

SimNode* World::CurrentLeader() {
  SimNode* best = nullptr;
  for (auto& [id, n] : nodes_) {
    if (!n.up || n.raft->role() != Role::kLeader) continue;
    if (best == nullptr || n.raft->term() > best->raft->term()) best = &n;
  }
  return best;
}

void World::OnFault(uint64_t kind) {
  if (healed_ || stop_) return;
  int64_t mean = 0;
  switch (kind) {
    case 0:
      StartPartition();
      mean = profile_.partition_mean_us;
      break;
    case 1:
      CrashSomeone();
      mean = profile_.crash_mean_us;
      break;
    case 2:
      ChangeMembership();
      mean = profile_.membership_mean_us;
      break;
    case 3:
      TransferLeader();
      mean = profile_.transfer_mean_us;
      break;
    default:
      return;
  }
  Schedule(now_ + rnd_.Range(mean / 2, mean * 3 / 2), EventType::kFault, 0, kind);
}

void World::StartPartition() {
  std::vector<NodeId> ids;
  for (const auto& [id, n] : nodes_) {
    if (!n.retired) ids.push_back(id);
  }
  if (ids.size() < 2) return;
  std::set<std::pair<NodeId, NodeId>> links;
  const uint64_t shape = rnd_.Uniform(4);
  std::string what;
  auto cut = [&](NodeId a, NodeId b, bool both) {
    links.insert({a, b});
    if (both) links.insert({b, a});
  };
  if (shape == 0) {  // random halves
    std::set<NodeId> side;
    for (NodeId id : ids) {
      if (rnd_.OneIn(2)) side.insert(id);
    }
    for (NodeId a : ids) {
      for (NodeId b : ids) {
        if (side.count(a) && !side.count(b)) cut(a, b, true);
      }
    }
    what = "halves";
  } else if (shape == 1) {  // isolate the leader
    SimNode* leader = CurrentLeader();
    NodeId l = leader ? leader->id : ids[rnd_.Uniform(ids.size())];
    for (NodeId b : ids) {
      if (b != l) cut(l, b, true);
    }
    what = fmt::format("isolate n{}", l);
  } else if (shape == 2) {  // one-way: a node can send but not receive
    NodeId l = ids[rnd_.Uniform(ids.size())];
    for (NodeId b : ids) {
      if (b != l) cut(b, l, false);
    }
    what = fmt::format("one-way into n{}", l);
  } else {  // bridge: two sides that only a middle node connects
    std::vector<NodeId> shuffled = ids;
    for (size_t i = shuffled.size(); i > 1; --i) {
      std::swap(shuffled[i - 1], shuffled[rnd_.Uniform(i)]);
    }
    const NodeId bridge = shuffled[0];
    for (size_t i = 1; i < shuffled.size(); ++i) {
      for (size_t j = 1; j < shuffled.size(); ++j) {
        if ((i % 2) != (j % 2)) cut(shuffled[i], shuffled[j], true);
      }
    }
    what = fmt::format("bridge via n{}", bridge);
  }
  const uint64_t pid = next_partition_++;
  partitions_[pid] = std::move(links);
  ++result_.stats.partitions;
  Trace(fmt::format("partition p{}: {}", pid, what));
  Schedule(now_ + rnd_.Range(profile_.partition_max_us / 8, profile_.partition_max_us),
           EventType::kHeal, 0, pid);
}

void World::OnHeal(uint64_t pid) {
  if (partitions_.erase(pid)) Trace(fmt::format("heal p{}", pid));
}

void World::CrashSomeone() {
  std::vector<NodeId> up = UpIds();
  if (up.empty()) return;
  SimNode* leader = CurrentLeader();
  SimNode& victim = (leader && rnd_.OneIn(profile_.leader_crash_one_in))
                        ? *leader
                        : nodes_.at(up[rnd_.Uniform(up.size())]);
  Crash(victim);
  Schedule(now_ + rnd_.Range(20'000, profile_.restart_max_us), EventType::kRestart, victim.id);
}

void World::OnRestart(NodeId id) {
  SimNode& n = nodes_.at(id);
  if (n.up || n.retired || stop_) return;
  Trace(fmt::format("n{} restart", id));
  StartRaft(n);
}

void World::ChangeMembership() {
  SimNode* leader = CurrentLeader();
  if (leader == nullptr) return;
  const ConfState cs = leader->raft->tracker().config().ToConfState();
  if (!cs.voters_outgoing.empty()) return;  // still joint
  std::vector<NodeId> voters = cs.voters;
  ConfChange cc;
  std::string what;
  NodeId added = 0;
  const uint64_t choice = rnd_.Uniform(4);
  if (!cs.learners.empty() && choice == 0) {
    cc.changes.push_back({ConfChangeType::kAddVoter, cs.learners.front()});
    what = fmt::format("promote n{}", cs.learners.front());
  } else if (voters.size() > 3 && choice == 1) {
    // Removing any voter, the leader included.
    NodeId victim = voters[rnd_.Uniform(voters.size())];
    cc.changes.push_back({ConfChangeType::kRemoveNode, victim});
    what = fmt::format("remove n{}", victim);
  } else if (voters.size() < 5 && choice == 2) {
    added = next_node_id_++;
    cc.changes.push_back({ConfChangeType::kAddLearner, added});
    what = fmt::format("add learner n{}", added);
  } else {
    // Replace a voter through a joint configuration.
    added = next_node_id_++;
    NodeId victim = voters[rnd_.Uniform(voters.size())];
    cc.changes.push_back({ConfChangeType::kAddVoter, added});
    cc.changes.push_back({ConfChangeType::kRemoveNode, victim});
    cc.transition =
        rnd_.OneIn(2) ? ConfChangeTransition::kAuto : ConfChangeTransition::kJointImplicit;
    what = fmt::format("joint replace n{} by n{}", victim, added);
  }
  if (added != 0) AddNode(added, false, ConfState{});
  Status s = leader->raft->ProposeConfChange(cc);
  Trace(fmt::format("membership via n{}: {}: {}", leader->id, what,
                    s.ok() ? "proposed" : s.message()));
  if (s.ok()) {
    ++result_.stats.conf_changes;
  } else if (added != 0) {
    SimNode& n = nodes_.at(added);
    n.retired = true;
    Crash(n);
  }
  Pump(*leader);
}

void World::TransferLeader() {
  SimNode* leader = CurrentLeader();
  if (leader == nullptr) return;
  std::vector<NodeId> voters = leader->raft->tracker().VoterIds();
  voters.erase(std::remove(voters.begin(), voters.end(), leader->id), voters.end());
  if (voters.empty()) return;
  NodeId to = voters[rnd_.Uniform(voters.size())];
  ++result_.stats.transfers;
  Trace(fmt::format("transfer leadership n{} -> n{}", leader->id, to));
  leader->raft->TransferLeadership(to);
  Pump(*leader);
}

void World::HealAll() {
  healed_ = true;
  heal_time_ = now_;
  partitions_.clear();
  Trace("heal all faults; liveness phase");
  for (auto& [id, n] : nodes_) {
    if (!n.up && !n.retired) StartRaft(n);
  }
  for (auto& [id, n] : nodes_) {
    if (n.up) Pump(n);
  }
}

// ---- checks ----

void World::RecordPersistedEntries(const std::vector<Entry>& entries) {
  for (const Entry& e : entries) {
    const uint64_t h = HashBytes(e.data) ^ static_cast<uint64_t>(e.type);
    auto [it, inserted] = entry_hash_.try_emplace({e.index, e.term}, h);
    if (!inserted && it->second != h) {
      Violation(
          fmt::format("log matching: two different entries at index {} term {}", e.index, e.term));
      return;
    }
  }
}

void World::CheckAfterStep(SimNode& n) {
  if (!n.up || !n.raft) return;
  const Role role = n.raft->role();
  const uint64_t term = n.raft->term();
  result_.stats.max_term = std::max(result_.stats.max_term, term);
  if (role == Role::kLeader) {
    auto [it, inserted] = leader_of_term_.try_emplace(term, n.id);
    if (!inserted && it->second != n.id) {
      Violation(fmt::format("election safety: n{} and n{} are both leaders of term {}", it->second,
                            n.id, term));
      return;
    }
    if (n.last_role != Role::kLeader || n.last_term != term) {
      ++result_.stats.leaders_elected;
      Trace(fmt::format("n{} leader of term {}", n.id, term));
      CheckLeaderCompleteness(n);
      if (!healed_ && rnd_.Bernoulli(profile_.new_leader_crash)) {
        Schedule(now_ + rnd_.Range(0, 8'000), EventType::kCrash, n.id, n.incarnation);
      }
    }
  }
  n.last_role = role;
  n.last_term = term;
  if (result_.stats.events % 512 == 0) CheckLogMatching();
}

void World::CheckLeaderCompleteness(SimNode& n) {
  const raft::RaftLog& log = n.raft->log();
  const uint64_t first = log.FirstIndex();
  for (auto it = applied_.lower_bound(first); it != applied_.end(); ++it) {
    const uint64_t index = it->first;
    Result<uint64_t> term = log.TermOrError(index);
    if (!term.ok() || *term != it->second.first) {
      Violation(fmt::format(
          "leader completeness: n{} leads term {} without applied entry {} (term {}); its log "
          "ends at {}",
          n.id, n.raft->term(), index, it->second.first, log.LastIndex()));
      return;
    }
  }
}

void World::CheckLogMatching() {
  std::vector<SimNode*> up;
  for (auto& [id, n] : nodes_) {
    if (n.up && n.raft) up.push_back(&n);
  }
  for (size_t a = 0; a < up.size(); ++a) {
    for (size_t b = a + 1; b < up.size(); ++b) {
      const raft::RaftLog& la = up[a]->raft->log();
      const raft::RaftLog& lb = up[b]->raft->log();
      const uint64_t lo = std::max(la.FirstIndex(), lb.FirstIndex());
      const uint64_t hi = std::min(la.LastIndex(), lb.LastIndex());
      if (lo > hi) continue;
      bool matched = false;
      for (uint64_t i = hi; i >= lo && i > 0; --i) {
        const uint64_t ta = la.Term(i);
        const uint64_t tb = lb.Term(i);
        if (!matched && ta == tb) matched = true;
        if (matched && ta != tb) {
          Violation(
              fmt::format("log matching: n{} and n{} agree at a later index but differ at "
                          "{} (terms {} vs {})",
                          up[a]->id, up[b]->id, i, ta, tb));
          return;
        }
      }
    }
  }
}

bool World::CheckLiveness() {
  if (first_ack_after_heal_ == 0) return false;
  if (CurrentLeader() == nullptr) return false;
  uint64_t applied = 0;
  bool first = true;
  for (const auto& [id, n] : nodes_) {
    if (!n.up) continue;
    if (n.raft->tracker().Find(id) == nullptr) continue;  // not a member (yet)
    if (first) {
      applied = n.app.applied_index;
      first = false;
    } else if (n.app.applied_index != applied) {
      return false;
    }
  }
  return !first && applied >= first_ack_after_heal_;
}

}  // namespace

const std::vector<std::string>& PlantableBugs() {
  static const std::vector<std::string> names = {
      "vote_without_log_check",       "commit_previous_term_by_counting", "skip_log_matching_check",
      "read_index_without_heartbeat", "lease_read_ignores_expiry",        "vote_not_persisted",
      "send_before_persist"};
  return names;
}

bool PlantBug(std::string_view name, SimOptions* o) {
  raft::PlantedBugs& b = o->bugs;
  if (name == "vote_without_log_check") {
    b.vote_without_log_check = true;
  } else if (name == "commit_previous_term_by_counting") {
    b.commit_previous_term_by_counting = true;
  } else if (name == "skip_log_matching_check") {
    b.skip_log_matching_check = true;
  } else if (name == "read_index_without_heartbeat") {
    b.read_index_without_heartbeat = true;
  } else if (name == "lease_read_ignores_expiry") {
    b.lease_read_ignores_expiry = true;
  } else if (name == "vote_not_persisted") {
    b.vote_not_persisted = true;
  } else if (name == "send_before_persist") {
    o->driver_bugs.send_before_persist = true;
  } else {
    return false;
  }
  return true;
}

SimResult RunSimulation(const SimOptions& options) {
  World world(options);
  return world.Run();
}

}  // namespace conclave::sim
