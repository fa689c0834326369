#include "sim/sim.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <set>

#include "base/clock.h"
#include "base/coding.h"
#include "base/random.h"
#include "conclave/serverpb/server.pb.h"
#include "server/server.h"
#include "storage/storage.h"

namespace conclave::sim {

using raft::ConfChange;
using raft::ConfChangeTransition;
using raft::ConfChangeType;
using raft::ConfState;
using raft::GroupId;
using raft::Message;
using raft::MessageType;
using raft::NodeId;
using raft::Role;
using server::ApplyResult;
using server::CommittedEntry;

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
      "seed={} profile={} nodes={} groups={} reads={} {} events={} msgs={} acked_writes={} "
      "reads_ok={} failed={} leaders={} max_term={} crashes={} torn={} partitions={} "
      "conf_changes={} transfers={} snapshots={} quiesced={} leases={} applied={}",
      seed, profile, nodes, groups, read_mode, ok ? "OK" : "VIOLATION", stats.events,
      stats.messages, stats.writes_acked, stats.reads_ok, stats.ops_failed, stats.leaders_elected,
      stats.max_term, stats.crashes, stats.torn_crashes, stats.partitions, stats.conf_changes,
      stats.transfers, stats.snapshots_installed, stats.quiesced, stats.leases_granted,
      stats.final_applied);
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
constexpr int kKeys = 6;             // per group; few keys, many versions
constexpr int64_t kLeaseTtlSeconds = 2;

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

// A node's clock: the world's time at the node's own rate.
class NodeClock final : public Clock {
 public:
  NodeClock(const int64_t* world_us, double rate) : world_us_(world_us), rate_(rate) {}
  Duration Monotonic() const override {
    return Duration(static_cast<int64_t>(static_cast<double>(*world_us_) * rate_) * 1000);
  }
  int64_t WallNanos() const override { return 1'700'000'000'000'000'000 + Monotonic().count(); }
  // The first world time at which this clock shows `t` or later.
  int64_t WorldTimeOf(Duration t) const {
    return static_cast<int64_t>(std::ceil(static_cast<double>(t.count()) / 1000.0 / rate_));
  }

 private:
  const int64_t* world_us_;
  double rate_;
};

enum class EventType {
  kWake,      // a node's driver is due (a tick)
  kLogWrite,  // the log writer writes what was queued
  kLogSync,   // ... and the disk reports it durable
  kApply,     // the apply thread runs
  kDeliver,   // a message batch arrives
  kSnapshot,  // a snapshot image arrives
  kSnapshotReport,
  kClient,
  kFault,
  kHeal,
  kRestart,
  kCrash,
  kRetire,  // a removed node stops for good
};

struct SnapshotTransfer {
  Message message;
  std::vector<std::string> chunks;
};

struct Event {
  int64_t time;
  uint64_t seq;
  EventType type;
  NodeId node = 0;
  // kWake, kLogWrite, kLogSync, kApply, kCrash: the incarnation the event
  // belongs to; otherwise event-specific (client, fault kind, partition,
  // outcome, sender).
  uint64_t aux = 0;
  GroupId group = 0;
  std::shared_ptr<std::vector<Message>> batch;
  std::shared_ptr<SnapshotTransfer> snapshot;
};

struct EventLater {
  bool operator()(const Event& a, const Event& b) const {
    return a.time != b.time ? a.time > b.time : a.seq > b.seq;
  }
};

class World;

// The network as a host sees it: everything goes through the world's queue.
class SimSender final : public server::MessageSender {
 public:
  SimSender(World* world, NodeId from) : world_(world), from_(from) {}
  void Send(uint64_t to, std::vector<Message> messages) override;
  void SendSnapshot(uint64_t to, Message m) override;
  void Ping(uint64_t to) override;

 private:
  World* world_;
  NodeId from_;
};

struct SimNode {
  NodeId id = 0;
  bool up = false;
  bool retired = false;  // removed from the cluster for good
  uint64_t incarnation = 0;
  double rate = 1.0;
  int64_t disk_latency_us = 200;
  std::unique_ptr<storage::FaultInjectionFileSystem> fs;
  std::unique_ptr<storage::MemEngine> engine;
  std::unique_ptr<NodeClock> clock;
  std::unique_ptr<SimSender> sender;
  std::unique_ptr<server::Host> host;
  std::map<GroupId, std::shared_ptr<server::Replica>> replicas;
  std::map<GroupId, server::EtcdStateMachine*> sms;
  int64_t next_wake = -1;
  bool log_write_scheduled = false;
  bool log_sync_scheduled = false;
  bool apply_scheduled = false;
  // An armed crash strikes after the node's next log write, before its sync.
  bool crash_before_sync = false;
  std::map<GroupId, std::pair<Role, uint64_t>> last_role;  // role and term last seen
  std::map<GroupId, uint64_t> lease;  // the latest lease this node's clients granted
};

enum class OpKind { kPut, kGet, kLeaseGrant, kLeasedPut };

struct Op {
  uint64_t id = 0;
  int client = 0;
  OpKind kind = OpKind::kPut;
  GroupId group = 1;
  std::string key;
  std::string value;
  NodeId node = 0;
  int64_t required_rev = 0;  // the newest revision acknowledged when it began
  bool done = false;
};

// What the first replica to apply an index recorded.
struct AppliedRecord {
  uint64_t term = 0;
  uint64_t hash = 0;
  int64_t revision = 0;  // the store's revision after the entry
};

// One group's history as the cluster committed it, built from the first
// replica to apply each index.
struct GroupTruth {
  std::map<uint64_t, AppliedRecord> applied;
  // key -> revision -> value (nullopt: deleted at that revision)
  std::map<std::string, std::map<int64_t, std::optional<std::string>>> history;
  int64_t max_acked_rev = 0;
  bool acked_after_heal = false;
};

struct TraceEvent {
  int64_t time;
  std::string text;
};

class World {
 public:
  explicit World(const SimOptions& o);
  // Stops every host first: their waiting requests call back into the world.
  ~World();
  SimResult Run();

  // From SimSender.
  void Send(NodeId from, NodeId to, std::vector<Message> messages);
  void SendSnapshot(NodeId from, NodeId to, Message m);
  void Ping(NodeId from, NodeId to);

 private:
  // ---- setup ----
  void ChooseShape();
  SimNode& AddNode(NodeId id);
  void StartNode(SimNode& n);
  server::ReplicaOptions ReplicaOptionsFor(NodeId node, GroupId group) const;

  // ---- events ----
  void Schedule(int64_t at, EventType type, NodeId node = 0, uint64_t aux = 0);
  void Schedule(Event e);
  void Handle(const Event& e);
  SimNode* Live(NodeId id, uint64_t incarnation);
  void Pump(SimNode& n);
  void OnDeliver(const Event& e);
  void OnSnapshot(const Event& e);
  void ReportSnapshot(NodeId node, GroupId group, NodeId to, bool ok, int64_t after_us);

  // ---- applied entries (the hosts' apply observer) ----
  void OnApplied(NodeId node, GroupId group, const CommittedEntry& e, const std::any& result);
  void RecordTruth(SimNode& n, GroupId group, int64_t from_rev, int64_t to_rev);
  void RetireRemoved(const ConfState& cs);

  // ---- clients ----
  void OnClient(int client);
  void Issue(int client, SimNode& n, Op op);
  void OnWriteDone(uint64_t op_id, Result<std::any> r);
  void OnReadDone(uint64_t op_id, NodeId node, Status s);
  void Finish(Op& op, bool ok);
  std::optional<std::string> TruthAt(GroupId group, const std::string& key, int64_t rev,
                                     int64_t* mod_rev);

  // ---- faults ----
  void OnFault(uint64_t kind);
  void StartPartition();
  void CrashSomeone();
  void Crash(SimNode& n);
  void ChangeMembership();
  void TransferLeader();
  SimNode* LeaderOf(GroupId group);
  std::vector<NodeId> UpIds() const;
  bool LinkBlocked(NodeId from, NodeId to) const;
  void HealAll();

  // ---- checks ----
  void CheckAfterStep(SimNode& n);
  void CheckLeaderCompleteness(SimNode& n, GroupId group);
  void CheckLogMatching();
  void CheckConvergence();
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
  std::vector<NodeId> initial_;
  int groups_ = 1;
  bool lease_mode_ = false;

  std::map<uint64_t, std::set<std::pair<NodeId, NodeId>>> partitions_;
  uint64_t next_partition_ = 1;
  bool healed_ = false;

  std::map<uint64_t, Op> ops_;
  uint64_t next_op_ = 1;
  uint64_t next_lease_ = 1;

  std::map<GroupId, GroupTruth> truth_;
  std::set<NodeId> ever_member_;  // of group 1
  std::map<std::pair<GroupId, uint64_t>, NodeId> leader_of_term_;

  SimResult result_;
  std::deque<TraceEvent> trace_;
  bool stop_ = false;
};

// ---- SimSender ----

void SimSender::Send(uint64_t to, std::vector<Message> messages) {
  world_->Send(from_, to, std::move(messages));
}
void SimSender::SendSnapshot(uint64_t to, Message m) {
  world_->SendSnapshot(from_, to, std::move(m));
}
void SimSender::Ping(uint64_t to) {
  world_->Ping(from_, to);
}

// ---- setup ----

World::World(const SimOptions& o) : opts_(o), rnd_(o.seed) {
  result_.seed = o.seed;
}

World::~World() {
  stop_ = true;
  for (auto& [id, n] : nodes_) {
    if (n.host) n.host->Stop();
    n.replicas.clear();
    n.host.reset();
  }
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
  // Profile, size, read mode and groups rotate with the seed so every slice
  // of consecutive seeds covers every combination.
  const uint64_t shape = opts_.seed / profiles.size();
  int n = opts_.nodes;
  if (n == 0) n = (shape % 2 == 0) ? 3 : 5;
  lease_mode_ = opts_.read_mode == -1 ? (shape / 2) % 2 == 1 : opts_.read_mode == 1;
  // Membership changes move group 1 only, so they run with one group.
  groups_ = opts_.groups > 0 ? opts_.groups : 1 + static_cast<int>((shape / 4) % 3);
  if (profile_.membership_mean_us > 0) groups_ = 1;
  result_.profile = profile_.name;
  result_.nodes = n;
  result_.groups = groups_;
  result_.read_mode = lease_mode_ ? "lease" : "safe";
  for (int i = 0; i < n; ++i)
    initial_.push_back(next_node_id_++);
  ever_member_.insert(initial_.begin(), initial_.end());
  for (NodeId id : initial_)
    StartNode(AddNode(id));
}

SimNode& World::AddNode(NodeId id) {
  SimNode& n = nodes_[id];
  n.id = id;
  n.fs = std::make_unique<storage::FaultInjectionFileSystem>(opts_.seed * 7919 + id);
  n.engine = std::make_unique<storage::MemEngine>();
  const double skew = profile_.clock_skew;
  n.rate = 1.0 + skew * (2 * rnd_.NextDouble() - 1);
  n.clock = std::make_unique<NodeClock>(&now_, n.rate);
  n.sender = std::make_unique<SimSender>(this, id);
  n.disk_latency_us = rnd_.Range(50, 1500);
  return n;
}

server::ReplicaOptions World::ReplicaOptionsFor(NodeId node, GroupId group) const {
  server::ReplicaOptions o;
  o.group = group;
  // Group 1's replicas are named by their nodes (as the etcd group's are by
  // their members); the other groups' replica ids differ from node ids.
  if (group == 1) {
    o.replica_id = node;
  } else {
    o.replica_id = node * 1000 + group;
    o.node_of = [](NodeId replica) { return replica / 1000; };
  }
  const bool initial = std::find(initial_.begin(), initial_.end(), node) != initial_.end();
  if (initial) {
    for (NodeId id : initial_)
      o.bootstrap_voters.push_back(group == 1 ? id : id * 1000 + group);
  }
  o.election_ticks = 10;
  o.heartbeat_ticks = 1;
  o.snapshot_count = profile_.compact_every_entries > 0
                         ? static_cast<uint64_t>(profile_.compact_every_entries)
                         : 1'000'000;
  o.snapshot_catchup_entries = 5;
  o.request_timeout = std::chrono::seconds(1);
  o.quiesce = group != 1;
  o.read_only = lease_mode_ ? raft::ReadOnlyOption::kLeaseBased : raft::ReadOnlyOption::kSafe;
  o.max_message_bytes = 4096;
  o.max_inflight_messages = 8;
  o.max_uncommitted_bytes = 256 << 10;
  o.raft_bugs = opts_.bugs;
  return o;
}

void World::StartNode(SimNode& n) {
  server::HostOptions ho;
  ho.data_dir = fmt::format("/n{}", n.id);
  ho.node_id = n.id;
  ho.tick_interval = std::chrono::milliseconds(kTickUs / 1000);
  ho.liveness_ticks = 10;
  ho.manual = true;
  ho.wal.segment_bytes_target = 64 << 10;  // small segments: rollover and release happen
  ho.wal.preallocate = false;
  ho.bugs = opts_.node_bugs;
  const NodeId id = n.id;
  ho.apply_observer = [this, id](GroupId group, const CommittedEntry& e, const std::any& r) {
    OnApplied(id, group, e, r);
  };
  server::HostEnv env{.clock = n.clock.get(), .fs = n.fs.get(), .engine = n.engine.get()};
  auto host = server::Host::Open(ho, env);
  if (!host.ok()) {
    Violation(fmt::format("n{} failed to open: {}", n.id, host.status().ToString()));
    return;
  }
  n.host = std::move(*host);
  n.replicas.clear();
  n.sms.clear();
  for (GroupId g = 1; g <= static_cast<GroupId>(groups_); ++g) {
    server::EtcdStateMachineOptions so;
    so.group = g;
    so.lease_min_ttl_seconds = 1;
    so.test_bug_applied_index_apart = opts_.node_bugs.applied_index_apart;
    if (std::find(initial_.begin(), initial_.end(), n.id) != initial_.end()) {
      for (NodeId m : initial_) {
        serverpb::MemberRecord rec;
        rec.set_id(g == 1 ? m : m * 1000 + g);
        so.initial_members.push_back(rec);
      }
    }
    auto sm = server::EtcdStateMachine::Open(n.engine.get(), n.fs.get(), *n.clock, so);
    if (!sm.ok()) {
      Violation(fmt::format("n{} group {} failed to open: {}", n.id, g, sm.status().ToString()));
      return;
    }
    server::EtcdStateMachine* raw = sm->get();
    auto replica = n.host->AddReplica(ReplicaOptionsFor(n.id, g), std::move(*sm));
    if (!replica.ok()) {
      Violation(
          fmt::format("n{} group {} failed to recover: {}", n.id, g, replica.status().ToString()));
      return;
    }
    n.replicas[g] = *replica;
    n.sms[g] = raw;
  }
  n.up = true;
  ++n.incarnation;
  n.next_wake = -1;
  n.log_write_scheduled = n.log_sync_scheduled = n.apply_scheduled = false;
  n.last_role.clear();
  n.lease.clear();
  n.host->Start(n.sender.get());
  Pump(n);
}

// ---- events ----

void World::Schedule(int64_t at, EventType type, NodeId node, uint64_t aux) {
  Schedule(Event{.time = at, .seq = 0, .type = type, .node = node, .aux = aux});
}

void World::Schedule(Event e) {
  e.seq = seq_++;
  events_.push(std::move(e));
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

SimNode* World::Live(NodeId id, uint64_t incarnation) {
  auto it = nodes_.find(id);
  if (it == nodes_.end() || !it->second.up || it->second.incarnation != incarnation) return nullptr;
  return &it->second;
}

// Runs a node's driver until it has nothing left to do, and schedules what
// its other threads would do next: the log writer, the disk's sync, the
// apply thread and the next tick.
void World::Pump(SimNode& n) {
  for (int i = 0; i < 32 && !stop_ && n.up; ++i) {
    const bool did = n.host->RunDriver();
    CheckAfterStep(n);
    if (!did) break;
  }
  if (stop_ || !n.up) return;
  const server::HostWork w = n.host->PendingWork();
  if (w.log_write && !n.log_write_scheduled) {
    n.log_write_scheduled = true;
    Schedule(now_ + rnd_.Range(0, 30), EventType::kLogWrite, n.id, n.incarnation);
  }
  if (w.apply && !n.apply_scheduled) {
    n.apply_scheduled = true;
    Schedule(now_ + rnd_.Range(0, 60), EventType::kApply, n.id, n.incarnation);
  }
  const int64_t wake = std::max(now_ + 1, n.clock->WorldTimeOf(n.host->NextTick()));
  if (wake != n.next_wake) {
    n.next_wake = wake;
    Schedule(wake, EventType::kWake, n.id, n.incarnation);
  }
}

void World::Handle(const Event& e) {
  switch (e.type) {
    case EventType::kWake: {
      SimNode* n = Live(e.node, e.aux);
      if (n == nullptr || n->next_wake != e.time) return;
      n->next_wake = -1;
      Pump(*n);
      return;
    }
    case EventType::kLogWrite: {
      SimNode* n = Live(e.node, e.aux);
      if (n == nullptr) return;
      n->log_write_scheduled = false;
      n->host->RunLogWrite();
      if (n->crash_before_sync && !healed_) {
        Crash(*n);
        Schedule(now_ + rnd_.Range(20'000, profile_.restart_max_us), EventType::kRestart, e.node);
        return;
      }
      if (!n->log_sync_scheduled) {
        n->log_sync_scheduled = true;
        Schedule(now_ + n->disk_latency_us, EventType::kLogSync, n->id, n->incarnation);
      }
      return;
    }
    case EventType::kLogSync: {
      SimNode* n = Live(e.node, e.aux);
      if (n == nullptr) return;
      n->log_sync_scheduled = false;
      n->host->RunLogSync();
      Pump(*n);
      return;
    }
    case EventType::kApply: {
      SimNode* n = Live(e.node, e.aux);
      if (n == nullptr) return;
      n->apply_scheduled = false;
      n->host->RunApply();
      if (n->up) Pump(*n);
      return;
    }
    case EventType::kDeliver:
      OnDeliver(e);
      return;
    case EventType::kSnapshot:
      OnSnapshot(e);
      return;
    case EventType::kSnapshotReport: {
      auto it = nodes_.find(e.node);
      if (it == nodes_.end() || !it->second.up) return;
      it->second.host->ReportSnapshot(e.group, e.snapshot->message.to, e.aux != 0);
      Pump(it->second);
      return;
    }
    case EventType::kClient:
      OnClient(static_cast<int>(e.aux));
      return;
    case EventType::kFault:
      OnFault(e.aux);
      return;
    case EventType::kHeal:
      if (partitions_.erase(e.aux)) Trace(fmt::format("heal p{}", e.aux));
      return;
    case EventType::kRestart: {
      SimNode& n = nodes_.at(e.node);
      if (n.up || n.retired || stop_) return;
      Trace(fmt::format("n{} restart", n.id));
      StartNode(n);
      return;
    }
    case EventType::kCrash: {
      SimNode* n = Live(e.node, e.aux);
      if (healed_ || n == nullptr) return;
      Crash(*n);
      Schedule(now_ + rnd_.Range(20'000, profile_.restart_max_us), EventType::kRestart, e.node);
      return;
    }
    case EventType::kRetire: {
      SimNode& n = nodes_.at(e.node);
      if (n.up) Crash(n);
      return;
    }
  }
}

// ---- the network ----

bool World::LinkBlocked(NodeId from, NodeId to) const {
  for (const auto& [id, links] : partitions_) {
    if (links.count({from, to})) return true;
  }
  return false;
}

void World::Send(NodeId from, NodeId to, std::vector<Message> messages) {
  for (Message& m : messages) {
    ++result_.stats.messages;
    if (LinkBlocked(from, to) || (!healed_ && rnd_.Bernoulli(profile_.drop))) continue;
    auto batch = std::make_shared<std::vector<Message>>();
    batch->push_back(std::move(m));
    const int copies = !healed_ && rnd_.Bernoulli(profile_.duplicate) ? 2 : 1;
    for (int c = 0; c < copies; ++c) {
      Schedule(
          Event{.time = now_ + rnd_.Range(profile_.delay_min_us, profile_.delay_max_us * (c + 1)),
                .type = EventType::kDeliver,
                .node = to,
                .aux = from,
                .batch = batch});
    }
  }
}

void World::Ping(NodeId from, NodeId to) {
  if (LinkBlocked(from, to)) return;
  Schedule(Event{.time = now_ + rnd_.Range(profile_.delay_min_us, profile_.delay_max_us),
                 .type = EventType::kDeliver,
                 .node = to,
                 .aux = from,
                 .batch = std::make_shared<std::vector<Message>>()});
}

void World::OnDeliver(const Event& e) {
  auto it = nodes_.find(e.node);
  if (it == nodes_.end() || !it->second.up || LinkBlocked(e.aux, e.node)) return;
  SimNode& n = it->second;
  for (const Message& m : *e.batch)
    Trace(fmt::format("n{} <- g{} {}", n.id, m.group, m.ToString()));
  n.host->Receive(e.aux, *e.batch);
  Pump(n);
}

// The image is cut from the sender's state machine now and arrives whole
// after a delay, or not at all; either way the sender hears the outcome,
// as the real transport reports its stream's.
void World::SendSnapshot(NodeId from, NodeId to, Message m) {
  const int64_t report_after = profile_.delay_max_us + 1000;
  SimNode& sender = nodes_.at(from);
  auto replica = sender.replicas.find(m.group);
  auto transfer = std::make_shared<SnapshotTransfer>();
  transfer->message = m;
  if (replica == sender.replicas.end() || LinkBlocked(from, to)) {
    ReportSnapshot(from, m.group, m.to, false, report_after);
    return;
  }
  auto source = replica->second->state_machine()->NewSnapshot();
  if (!source.ok()) {
    Violation(fmt::format("n{} cannot cut a snapshot: {}", from, source.status().ToString()));
    return;
  }
  auto md = std::make_shared<raft::Snapshot>();
  md->metadata =
      raft::SnapshotMetadata{(*source)->index(), (*source)->term(), (*source)->conf_state()};
  transfer->message.snapshot = md;
  std::string chunk;
  while (true) {
    auto more = (*source)->Next(&chunk);
    if (!more.ok()) {
      Violation(fmt::format("n{} snapshot chunk: {}", from, more.status().ToString()));
      return;
    }
    if (!*more) break;
    transfer->chunks.push_back(std::move(chunk));
  }
  Schedule(Event{.time = now_ + rnd_.Range(profile_.delay_min_us, profile_.delay_max_us) * 4,
                 .type = EventType::kSnapshot,
                 .node = to,
                 .aux = from,
                 .group = m.group,
                 .snapshot = transfer});
}

void World::OnSnapshot(const Event& e) {
  const NodeId from = e.aux;
  auto it = nodes_.find(e.node);
  bool ok = false;
  if (it != nodes_.end() && it->second.up && !LinkBlocked(from, e.node)) {
    SimNode& n = it->second;
    size_t next = 0;
    Status s =
        n.host->ReceiveSnapshot(from, e.snapshot->message, [&](std::string* chunk) -> Result<bool> {
          if (next == e.snapshot->chunks.size()) return false;
          *chunk = e.snapshot->chunks[next++];
          return true;
        });
    ok = s.ok();
    Trace(fmt::format("n{} <- g{} snapshot@{} from n{}: {}", n.id, e.group,
                      e.snapshot->message.snapshot->metadata.index, from, s.ToString()));
    if (ok) ++result_.stats.snapshots_installed;
    Pump(n);
  }
  ReportSnapshot(from, e.group, e.snapshot->message.to, ok, profile_.delay_max_us);
}

void World::ReportSnapshot(NodeId node, GroupId group, NodeId to, bool ok, int64_t after_us) {
  auto transfer = std::make_shared<SnapshotTransfer>();
  transfer->message.to = to;
  Schedule(Event{.time = now_ + after_us,
                 .type = EventType::kSnapshotReport,
                 .node = node,
                 .aux = ok ? 1u : 0u,
                 .group = group,
                 .snapshot = transfer});
}

// ---- applied entries ----

void World::OnApplied(NodeId node, GroupId group, const CommittedEntry& e, const std::any& r) {
  if (stop_) return;
  const ApplyResult* applied = std::any_cast<ApplyResult>(&r);
  if (applied == nullptr) {
    Violation(fmt::format("n{} g{} applied entry {} without a result", node, group, e.index));
    return;
  }
  const uint64_t hash = HashBytes(e.command) ^ static_cast<uint64_t>(e.type);
  GroupTruth& truth = truth_[group];
  auto [it, first] =
      truth.applied.try_emplace(e.index, AppliedRecord{e.term, hash, applied->revision});
  if (!first) {
    const AppliedRecord& want = it->second;
    if (want.term != e.term || want.hash != hash) {
      Violation(fmt::format(
          "state machine safety: n{} g{} applied index {} term {} but it was applied elsewhere "
          "with term {} and other contents",
          node, group, e.index, e.term, want.term));
    } else if (want.revision != applied->revision) {
      Violation(fmt::format(
          "state machine safety: n{} g{} reached revision {} with index {}, others revision {}",
          node, group, applied->revision, e.index, want.revision));
    }
    return;
  }
  // The first to apply this index: what it committed becomes the truth.
  auto prev = truth.applied.find(e.index - 1);
  const int64_t from_rev = prev == truth.applied.end() ? 1 : prev->second.revision;
  if (applied->revision > from_rev)
    RecordTruth(nodes_.at(node), group, from_rev + 1, applied->revision);
  if (group == 1 && e.conf_state != nullptr && !e.refused) RetireRemoved(*e.conf_state);
}

void World::RecordTruth(SimNode& n, GroupId group, int64_t from_rev, int64_t to_rev) {
  auto events = n.sms.at(group)->Events(from_rev, to_rev);
  if (!events.ok()) {
    Violation(fmt::format("n{} g{} history [{}, {}]: {}", n.id, group, from_rev, to_rev,
                          events.status().ToString()));
    return;
  }
  GroupTruth& truth = truth_[group];
  for (const mvcc::Event& ev : *events) {
    std::optional<std::string> value;
    if (ev.type == mvcc::EventType::kPut) value = ev.kv.value;
    truth.history[ev.kv.key][ev.kv.mod_revision] = std::move(value);
  }
}

void World::RetireRemoved(const ConfState& cs) {
  std::set<NodeId> members(cs.voters.begin(), cs.voters.end());
  members.insert(cs.learners.begin(), cs.learners.end());
  members.insert(cs.voters_outgoing.begin(), cs.voters_outgoing.end());
  members.insert(cs.learners_next.begin(), cs.learners_next.end());
  ever_member_.insert(members.begin(), members.end());
  for (auto& [id, n] : nodes_) {
    // A node added for a change that has not applied yet never was a member.
    if (n.retired || members.contains(id) || !ever_member_.contains(id)) continue;
    n.retired = true;
    Trace(fmt::format("n{} retired (removed from the group)", id));
    // Stopped at the next step, never inside another node's apply.
    Schedule(now_, EventType::kRetire, id);
  }
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
  Op op;
  op.id = next_op_++;
  op.client = client;
  op.node = n.id;
  // Group 1 takes most of the load; the others are often idle and quiesce.
  op.group = groups_ == 1 || rnd_.Uniform(100) < 70
                 ? 1
                 : 2 + rnd_.Uniform(static_cast<uint64_t>(groups_ - 1));
  op.key = fmt::format("k{}", rnd_.Uniform(kKeys));
  const uint64_t pick = rnd_.Uniform(100);
  if (pick < 45) {
    op.kind = OpKind::kPut;
  } else if (pick < 85) {
    op.kind = OpKind::kGet;
  } else if (pick < 90 && op.group == 1) {
    op.kind = OpKind::kLeaseGrant;
  } else {
    op.kind = n.lease.contains(op.group) ? OpKind::kLeasedPut : OpKind::kPut;
  }
  op.value = fmt::format("op{}", op.id);
  op.value.resize(op.value.size() + rnd_.Uniform(profile_.max_payload_bytes), 'x');
  op.required_rev = truth_[op.group].max_acked_rev;
  Issue(client, n, std::move(op));
}

void World::Issue(int client, SimNode& n, Op op) {
  const uint64_t id = op.id;
  server::Replica& replica = *n.replicas.at(op.group);
  ops_.emplace(id, op);
  Trace(fmt::format("client{} op{} {} g{} {} via n{}", client, id,
                    op.kind == OpKind::kGet ? "get" : "write", op.group, op.key, n.id));
  if (op.kind == OpKind::kGet) {
    const NodeId node = n.id;
    replica.ReadBarrierAsync([this, id, node](Status s) { OnReadDone(id, node, s); });
  } else {
    serverpb::Command c;
    if (op.kind == OpKind::kLeaseGrant) {
      c.mutable_lease_grant()->set_id(static_cast<int64_t>(next_lease_++));
      c.mutable_lease_grant()->set_ttl(kLeaseTtlSeconds);
    } else {
      c.mutable_put()->set_key(op.key);
      c.mutable_put()->set_value(op.value);
      if (op.kind == OpKind::kLeasedPut) c.mutable_put()->set_lease(n.lease.at(op.group));
    }
    replica.ProposeAsync(c.SerializeAsString(),
                         [this, id](Result<std::any> r) { OnWriteDone(id, std::move(r)); });
  }
}

std::optional<std::string> World::TruthAt(GroupId group, const std::string& key, int64_t rev,
                                          int64_t* mod_rev) {
  *mod_rev = 0;
  auto& versions = truth_[group].history[key];
  auto it = versions.upper_bound(rev);
  if (it == versions.begin()) return std::nullopt;
  --it;
  *mod_rev = it->first;
  return it->second;
}

void World::OnWriteDone(uint64_t op_id, Result<std::any> r) {
  if (stop_) return;
  auto found = ops_.find(op_id);
  if (found == ops_.end()) return;
  Op& op = found->second;
  if (!r.ok()) return Finish(op, false);  // outcome unknown
  const ApplyResult* applied = std::any_cast<ApplyResult>(&r.value());
  if (applied == nullptr) {
    return Violation(fmt::format("op{}: a write acknowledged without a result", op_id));
  }
  if (!applied->status.ok()) return Finish(op, false);
  if (op.kind == OpKind::kLeaseGrant) {
    const auto* grant = std::get_if<lease::GrantResult>(&applied->response);
    if (grant == nullptr) {
      return Violation(
          fmt::format("op{}: a lease grant answered with another request's result", op_id));
    }
    SimNode& n = nodes_.at(op.node);
    n.lease[op.group] = grant->id;
    ++result_.stats.leases_granted;
    return Finish(op, true);
  }
  if (std::get_if<mvcc::PutResponse>(&applied->response) == nullptr) {
    return Violation(fmt::format("op{}: a put answered with another request's result", op_id));
  }
  const int64_t rev = applied->revision;
  int64_t mod_rev = 0;
  std::optional<std::string> v = TruthAt(op.group, op.key, rev, &mod_rev);
  if (mod_rev != rev || v != op.value) {
    return Violation(fmt::format(
        "op{}: put of {} in g{} acknowledged at revision {}, but the cluster committed {} there",
        op_id, op.key, op.group, rev,
        mod_rev == rev ? (v ? "another value" : "a delete") : "no change of that key"));
  }
  if (rev <= op.required_rev) {
    return Violation(fmt::format(
        "op{}: put acknowledged at revision {}, not after revision {} acknowledged before it began",
        op_id, rev, op.required_rev));
  }
  GroupTruth& truth = truth_[op.group];
  truth.max_acked_rev = std::max(truth.max_acked_rev, rev);
  if (healed_) truth.acked_after_heal = true;
  ++result_.stats.writes_acked;
  Trace(fmt::format("op{} acked at revision {}", op_id, rev));
  Finish(op, true);
}

void World::OnReadDone(uint64_t op_id, NodeId node, Status s) {
  if (stop_) return;
  auto found = ops_.find(op_id);
  if (found == ops_.end()) return;
  Op& op = found->second;
  if (!s.ok()) return Finish(op, false);
  mvcc::RangeRequest req;
  req.key = op.key;
  auto resp = nodes_.at(node).sms.at(op.group)->Range(req);
  if (!resp.ok()) {
    return Violation(fmt::format("op{}: range failed: {}", op_id, resp.status().ToString()));
  }
  const int64_t rev = resp->revision;
  if (rev < op.required_rev) {
    return Violation(fmt::format(
        "stale read: op{} on n{} read g{} at revision {}, but revision {} was acknowledged before "
        "the read began",
        op_id, node, op.group, rev, op.required_rev));
  }
  int64_t mod_rev = 0;
  std::optional<std::string> want = TruthAt(op.group, op.key, rev, &mod_rev);
  std::optional<std::string> got;
  int64_t got_mod = 0;
  if (!resp->kvs.empty()) {
    got = resp->kvs[0].value;
    got_mod = resp->kvs[0].mod_revision;
  }
  if (got != want || (got && got_mod != mod_rev)) {
    return Violation(fmt::format(
        "op{}: read of {} in g{} at revision {} on n{} returned {} (modified at {}), the cluster "
        "committed {} (modified at {})",
        op_id, op.key, op.group, rev, node, got ? got->substr(0, 12) : "nothing", got_mod,
        want ? want->substr(0, 12) : "nothing", mod_rev));
  }
  ++result_.stats.reads_ok;
  Finish(op, true);
}

void World::Finish(Op& op, bool ok) {
  if (op.done) return;
  op.done = true;
  if (!ok) ++result_.stats.ops_failed;
  const int client = op.client;
  ops_.erase(op.id);
  Schedule(now_ + rnd_.Range(0, 20'000), EventType::kClient, 0, static_cast<uint64_t>(client));
}

// ---- faults ----

std::vector<NodeId> World::UpIds() const {
  std::vector<NodeId> ids;
  for (const auto& [id, n] : nodes_) {
    if (n.up) ids.push_back(id);
  }
  return ids;
}

SimNode* World::LeaderOf(GroupId group) {
  SimNode* best = nullptr;
  uint64_t best_term = 0;
  for (auto& [id, n] : nodes_) {
    if (!n.up) continue;
    const raft::Node& core = n.replicas.at(group)->raft_for_testing();
    if (core.role() != Role::kLeader) continue;
    if (best == nullptr || core.term() > best_term) {
      best = &n;
      best_term = core.term();
    }
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
  } else if (shape == 1) {  // isolate group 1's leader
    SimNode* leader = LeaderOf(1);
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

void World::CrashSomeone() {
  std::vector<NodeId> up = UpIds();
  if (up.empty()) return;
  SimNode* leader = LeaderOf(1);
  SimNode& victim = (leader && rnd_.OneIn(profile_.leader_crash_one_in))
                        ? *leader
                        : nodes_.at(up[rnd_.Uniform(up.size())]);
  // Half the crashes wait for the victim's next log write and strike before
  // the disk syncs it: what the node sent about that write is out, the write
  // itself may be lost. A node that writes nothing soon crashes anyway.
  if (rnd_.OneIn(2)) {
    victim.crash_before_sync = true;
    Trace(fmt::format("n{} will crash before its next log sync", victim.id));
    Schedule(now_ + 50'000, EventType::kCrash, victim.id, victim.incarnation);
    return;
  }
  Crash(victim);
  Schedule(now_ + rnd_.Range(20'000, profile_.restart_max_us), EventType::kRestart, victim.id);
}

void World::Crash(SimNode& n) {
  if (!n.up) return;
  ++result_.stats.crashes;
  n.crash_before_sync = false;
  const bool torn = n.host->PendingWork().log_sync;
  if (torn) ++result_.stats.torn_crashes;
  Trace(fmt::format("n{} crash{}", n.id, torn ? " (with an unsynced log write)" : ""));
  n.up = false;
  // Requests waiting on the node fail with "server stopped": their outcome
  // is unknown to the clients, as with a real crash.
  n.host->Stop();
  n.replicas.clear();
  n.sms.clear();
  n.host.reset();
  // The disk keeps what was synced, and of the rest a torn prefix; the
  // engine keeps what was synced, and of the rest some whole batches.
  n.fs->Crash(
      storage::CrashOptions{.tear_unsynced_writes = true, .junk_after_tear = rnd_.OneIn(2)});
  n.engine->Crash(rnd_);
  ++n.incarnation;
}

void World::ChangeMembership() {
  SimNode* leader = LeaderOf(1);
  if (leader == nullptr) return;
  const ConfState cs = leader->replicas.at(1)->raft_for_testing().tracker().config().ToConfState();
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
  if (added != 0) StartNode(AddNode(added));
  serverpb::MemberChange change;
  change.mutable_member()->set_id(added);
  ++result_.stats.conf_changes;
  Trace(fmt::format("membership via n{}: {}", leader->id, what));
  leader->replicas.at(1)->ProposeConfChangeAsync(
      cc, change.SerializeAsString(), [this, what](Result<std::any> r) {
        Trace(fmt::format("membership {}: {}", what, r.ok() ? "applied" : r.status().message()));
      });
  Pump(*leader);
}

void World::TransferLeader() {
  const GroupId group = 1 + rnd_.Uniform(static_cast<uint64_t>(groups_));
  SimNode* leader = LeaderOf(group);
  if (leader == nullptr) return;
  server::Replica& replica = *leader->replicas.at(group);
  std::vector<NodeId> voters = replica.raft_for_testing().tracker().VoterIds();
  voters.erase(std::remove(voters.begin(), voters.end(), replica.replica_id()), voters.end());
  if (voters.empty()) return;
  NodeId to = voters[rnd_.Uniform(voters.size())];
  ++result_.stats.transfers;
  Trace(fmt::format("g{} transfer leadership {} -> {}", group, replica.replica_id(), to));
  replica.StartTransferLeadership(to);
  Pump(*leader);
}

void World::HealAll() {
  healed_ = true;
  partitions_.clear();
  Trace("heal all faults; liveness phase");
  for (auto& [id, n] : nodes_) {
    if (!n.up && !n.retired) StartNode(n);
  }
  for (auto& [id, n] : nodes_) {
    if (n.up) Pump(n);
  }
}

// ---- checks ----

void World::CheckAfterStep(SimNode& n) {
  if (!n.up || stop_) return;
  for (auto& [group, replica] : n.replicas) {
    const raft::Node& core = replica->raft_for_testing();
    const Role role = core.role();
    const uint64_t term = core.term();
    result_.stats.max_term = std::max(result_.stats.max_term, term);
    auto& [last_role, last_term] = n.last_role[group];
    if (role == Role::kLeader) {
      auto [it, inserted] = leader_of_term_.try_emplace({group, term}, n.id);
      if (!inserted && it->second != n.id) {
        Violation(fmt::format("election safety: n{} and n{} are both leaders of g{} term {}",
                              it->second, n.id, group, term));
        return;
      }
      if (last_role != Role::kLeader || last_term != term) {
        ++result_.stats.leaders_elected;
        Trace(fmt::format("n{} leader of g{} term {}", n.id, group, term));
        CheckLeaderCompleteness(n, group);
        if (group == 1 && !healed_ && rnd_.Bernoulli(profile_.new_leader_crash)) {
          Schedule(now_ + rnd_.Range(0, 8'000), EventType::kCrash, n.id, n.incarnation);
        }
      }
    }
    last_role = role;
    last_term = term;
  }
  if (result_.stats.events % 512 == 0) CheckLogMatching();
}

void World::CheckLeaderCompleteness(SimNode& n, GroupId group) {
  const raft::RaftLog& log = n.replicas.at(group)->raft_for_testing().log();
  const uint64_t first = log.FirstIndex();
  const auto& applied = truth_[group].applied;
  for (auto it = applied.lower_bound(first); it != applied.end(); ++it) {
    Result<uint64_t> term = log.TermOrError(it->first);
    if (!term.ok() || *term != it->second.term) {
      Violation(fmt::format(
          "leader completeness: n{} leads g{} without applied entry {} (term {}); its log ends "
          "at {}",
          n.id, group, it->first, it->second.term, log.LastIndex()));
      return;
    }
  }
}

void World::CheckLogMatching() {
  for (GroupId g = 1; g <= static_cast<GroupId>(groups_); ++g) {
    std::vector<SimNode*> up;
    for (auto& [id, n] : nodes_) {
      if (n.up) up.push_back(&n);
    }
    for (size_t a = 0; a < up.size(); ++a) {
      for (size_t b = a + 1; b < up.size(); ++b) {
        const raft::RaftLog& la = up[a]->replicas.at(g)->raft_for_testing().log();
        const raft::RaftLog& lb = up[b]->replicas.at(g)->raft_for_testing().log();
        const uint64_t lo = std::max(la.FirstIndex(), lb.FirstIndex());
        const uint64_t hi = std::min(la.LastIndex(), lb.LastIndex());
        if (lo > hi) continue;
        bool matched = false;
        for (uint64_t i = hi; i >= lo && i > 0; --i) {
          const uint64_t ta = la.Term(i);
          const uint64_t tb = lb.Term(i);
          if (!matched && ta == tb) matched = true;
          if (matched && ta != tb) {
            Violation(fmt::format(
                "log matching: n{} and n{} agree on g{} at a later index but differ at {} "
                "(terms {} vs {})",
                up[a]->id, up[b]->id, g, i, ta, tb));
            return;
          }
        }
      }
    }
  }
}

// Replicas that applied the same index hold the same store.
void World::CheckConvergence() {
  for (GroupId g = 1; g <= static_cast<GroupId>(groups_); ++g) {
    std::map<uint64_t, std::pair<NodeId, uint32_t>> by_index;
    for (auto& [id, n] : nodes_) {
      if (!n.up) continue;
      server::EtcdStateMachine* sm = n.sms.at(g);
      auto hash = sm->Hash();
      if (!hash.ok()) {
        Violation(fmt::format("n{} g{} hash: {}", id, g, hash.status().ToString()));
        return;
      }
      auto [it, first] = by_index.try_emplace(sm->AppliedIndex(), id, *hash);
      if (!first && it->second.second != *hash) {
        Violation(
            fmt::format("convergence: n{} and n{} applied g{} to index {} but their stores "
                        "differ",
                        it->second.first, id, g, sm->AppliedIndex()));
        return;
      }
    }
  }
}

bool World::CheckLiveness() {
  for (GroupId g = 1; g <= static_cast<GroupId>(groups_); ++g) {
    if (LeaderOf(g) == nullptr) return false;
  }
  if (!truth_[1].acked_after_heal) return false;
  for (GroupId g = 1; g <= static_cast<GroupId>(groups_); ++g) {
    uint64_t applied = 0;
    bool first = true;
    for (const auto& [id, n] : nodes_) {
      if (!n.up) continue;
      const server::Replica& r = *n.replicas.at(g);
      if (r.raft_for_testing().tracker().Find(r.replica_id()) == nullptr) continue;
      const uint64_t a = n.sms.at(g)->AppliedIndex();
      if (first) {
        applied = a;
        first = false;
      } else if (a != applied) {
        return false;
      }
    }
    if (first) return false;
  }
  return true;
}

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
  if (result_.ok) CheckConvergence();
  for (const TraceEvent& t : trace_)
    result_.trace.push_back(fmt::format("{:>10} {}", t.time, t.text));
  if (!result_.ok) {
    result_.trace.push_back("node states at the end:");
    for (const auto& [id, n] : nodes_) {
      if (!n.up) {
        result_.trace.push_back(fmt::format("n{} down{}", id, n.retired ? " (retired)" : ""));
        continue;
      }
      for (const auto& [g, r] : n.replicas) {
        const raft::NodeStatus st = r->raft_for_testing().GetStatus();
        result_.trace.push_back(
            fmt::format("n{} g{} {} term={} lead={} commit={} applied={} last={} conf={}", id, g,
                        raft::RoleName(st.role), st.term, st.leader, st.commit,
                        n.sms.at(g)->AppliedIndex(), st.last_index, st.conf_state.ToString()));
      }
    }
  }
  for (const auto& [id, n] : nodes_) {
    if (!n.up) continue;
    for (const auto& [g, r] : n.replicas)
      result_.stats.quiesced += r->stats().quiesced ? 1 : 0;
  }
  if (truth_.contains(1) && !truth_[1].applied.empty())
    result_.stats.final_applied = truth_[1].applied.rbegin()->first;
  return result_;
}

}  // namespace

const std::vector<std::string>& PlantableBugs() {
  static const std::vector<std::string> names = {
      "vote_without_log_check",    "commit_previous_term_by_counting",
      "skip_log_matching_check",   "read_index_without_heartbeat",
      "lease_read_ignores_expiry", "vote_not_persisted",
      "send_before_persist",       "reuse_request_ids",
      "compact_without_sync",      "applied_index_apart"};
  return names;
}

bool PlantBug(std::string_view name, SimOptions* o) {
  raft::PlantedBugs& b = o->bugs;
  server::NodeBugs& nb = o->node_bugs;
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
    // The bug lives in lease reads: unless told otherwise, every seed reads
    // under leases (auto mode gives them half the seeds).
    if (o->read_mode == -1) o->read_mode = 1;
  } else if (name == "vote_not_persisted") {
    b.vote_not_persisted = true;
  } else if (name == "send_before_persist") {
    nb.send_before_persist = true;
  } else if (name == "reuse_request_ids") {
    nb.reuse_request_ids = true;
  } else if (name == "compact_without_sync") {
    nb.compact_without_sync = true;
  } else if (name == "applied_index_apart") {
    nb.applied_index_apart = true;
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
