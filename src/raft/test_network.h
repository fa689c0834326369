// TestNetwork: a handful of raft::Node instances wired together by hand, for
// the scenario tests (paper_test.cc, node_test.cc). Test-only.
//
// Each member owns a MemoryStorage (its "disk") and a Node. ProcessReady
// handles a Ready in the order raft.h prescribes: persist the snapshot,
// entries and hard state, then send the messages (into this network's
// queue), then apply committed entries (calling ApplyConfChange for
// conf-change entries), then Advance. Nothing is delivered on its own: a
// test ticks nodes and delivers, drops or inspects queued messages itself,
// so every scenario is deterministic.
//
// The state machine of a member is the list of payloads of the normal
// entries it applied; a snapshot carries that list (length-prefixed).
//
// Also: gtest printers for the core's value types, for readable failures.
//
// Thread-safety: none.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <set>
#include <string>
#include <vector>

#include "raft/raft.h"

namespace conclave::raft {

// Readable values in test failure messages.
inline void PrintTo(const ConfState& cs, std::ostream* os) {
  *os << cs.ToString();
}
inline void PrintTo(const HardState& hs, std::ostream* os) {
  *os << "{term=" << hs.term << " vote=" << hs.vote << " commit=" << hs.commit << "}";
}
inline void PrintTo(const SnapshotMetadata& m, std::ostream* os) {
  *os << "{index=" << m.index << " term=" << m.term << " " << m.conf_state.ToString() << "}";
}
inline void PrintTo(const Entry& e, std::ostream* os) {
  *os << "{" << e.index << "/" << e.term << (e.type == EntryType::kConfChange ? " conf" : "") << " "
      << e.data.size() << "B}";
}

class TestNetwork {
 public:
  // A nonzero group id, so that anything forgetting to stamp it shows up.
  static constexpr GroupId kGroup = 7;

  // `base` is the configuration every member starts from (id and group are
  // filled in per member).
  explicit TestNetwork(const Config& base);
  ~TestNetwork();

  // A group whose members `voters` all bootstrap with the same ConfState.
  static std::unique_ptr<TestNetwork> Bootstrapped(const std::vector<NodeId>& voters,
                                                   const Config& base);

  // Adds a member over `storage` (an empty MemoryStorage for a node that
  // joins later). `config` overrides the base configuration.
  void Add(NodeId id, std::unique_ptr<MemoryStorage> storage,
           std::optional<Config> config = std::nullopt);
  void AddBootstrapped(NodeId id, const std::vector<NodeId>& voters);

  Node& node(NodeId id) const;
  MemoryStorage& storage(NodeId id) const;
  // Payloads of the normal entries `id` has applied, in order.
  const std::vector<std::string>& applied(NodeId id) const;
  uint64_t applied_index(NodeId id) const;
  const ConfState& conf_state(NodeId id) const;
  // Read states released to `id` and not yet taken.
  std::vector<ReadState> TakeReadStates(NodeId id);
  std::vector<NodeId> ids() const;

  // ---- Ready ----
  // Handles one Ready of `id` if it has one; returns whether it did.
  bool ProcessReady(NodeId id);
  bool ProcessAllReady();
  // Every Ready handled so far, by member, for tests that inspect them.
  const std::vector<Ready>& readies(NodeId id) const;

  // ---- messages ----
  // Messages sent and not yet delivered, oldest first.
  std::vector<Message>& queue() { return queue_; }
  // Removes and returns the queued messages matching `pred`.
  std::vector<Message> Take(const std::function<bool(const Message&)>& pred);
  // Steps `m` into its recipient unless a fault drops it. A delivered
  // snapshot is reported as sent to its sender, as a transport would.
  void Deliver(const Message& m);
  // Delivers every message queued now (not the ones this causes).
  void DeliverQueued();
  // Handles Readies and delivers messages until nothing is left to do.
  void Settle();
  // Every message ever sent, in order.
  const std::vector<Message>& sent() const { return sent_; }
  size_t CountSent(const std::function<bool(const Message&)>& pred) const;
  void ClearSent() { sent_.clear(); }

  // ---- faults ----
  void Isolate(NodeId id) { isolated_.insert(id); }
  void Cut(NodeId a, NodeId b) { cut_.insert({std::min(a, b), std::max(a, b)}); }
  void Heal() {
    isolated_.clear();
    cut_.clear();
    drop_ = nullptr;
  }
  // Drops every message for which `drop` returns true (until Heal).
  void set_drop(std::function<bool(const Message&)> drop) { drop_ = std::move(drop); }
  bool Dropped(const Message& m) const;
  // Throws the Node away, keeping its storage and applied state (a crash).
  void Stop(NodeId id);
  // Recreates a stopped Node from its storage.
  void Restart(NodeId id);

  // ---- time ----
  // Ticks every running member once, then settles; `n` times.
  void TickAll(int n = 1);
  // Ticks until some member leads with an entry of its term committed, and
  // returns it (kNoNode after max_ticks).
  NodeId ElectByTicking(int max_ticks = 200);

  // The running leader with the highest term, or kNoNode.
  NodeId Leader() const;
  // Snapshots `id` at its applied index and compacts its log there.
  void CompactAtApplied(NodeId id);

  // Checks the State Machine Safety property over what members applied: no
  // two members applied different entries at the same index.
  void ExpectAppliedConsistent() const;

  // Steps that returned an error, as "to: status" (forwarded proposals that
  // the leader refused end up here).
  const std::vector<std::string>& step_errors() const { return step_errors_; }

  static std::string EncodeImage(const std::vector<std::string>& applied);
  static std::vector<std::string> DecodeImage(const std::string& image);

 private:
  struct Member;
  Member& member(NodeId id) const;
  void Persist(Member& m, const Ready& rd);
  void Apply(Member& m, const Ready& rd);

  Config base_;
  std::map<NodeId, std::unique_ptr<Member>> members_;
  std::vector<Message> queue_;
  std::vector<Message> sent_;
  std::set<NodeId> isolated_;
  std::set<std::pair<NodeId, NodeId>> cut_;
  std::function<bool(const Message&)> drop_;
  std::vector<std::string> step_errors_;
};

// A bootstrapped storage for `voters` whose log continues after the
// bootstrap entry (index 1, term 1) with one entry per element of `terms`,
// at indexes 2, 3, ... and payload "e<index>t<term>"; the hard state has
// `term`, `vote` and commit 1.
std::unique_ptr<MemoryStorage> StorageWithLog(const std::vector<NodeId>& voters,
                                              const std::vector<uint64_t>& terms, uint64_t term,
                                              NodeId vote = kNoNode);

// The (index, term) pairs of `storage`'s log from its first index.
std::vector<std::pair<uint64_t, uint64_t>> LogTerms(const LogStorage& storage);

// Configuration for scenario tests: deterministic seed, and check_quorum
// off so a test can call Campaign() at once (a node that just started
// refuses votes for an election timeout when check_quorum is on).
Config ScenarioConfig(uint64_t seed = 1);

}  // namespace conclave::raft
