// Throughput of the Raft core alone: a 3-node group in one thread, messages
// delivered in memory, storage in memory. What it measures is the CPU cost
// of consensus per committed proposal (docs/PERFORMANCE.md), with no disk and
// no network. Reported as items_per_second = committed proposals per
// CPU-second.
#include <benchmark/benchmark.h>

#include <deque>
#include <map>
#include <memory>

#include "raft/raft.h"

namespace conclave::raft {
namespace {

class MemoryCluster {
 public:
  explicit MemoryCluster(int n) {
    ConfState cs;
    for (int i = 1; i <= n; ++i)
      cs.voters.push_back(static_cast<NodeId>(i));
    for (NodeId id : cs.voters) {
      Member& m = members_[id];
      m.storage = std::make_unique<MemoryStorage>();
      m.storage->Bootstrap(cs);
      Config c;
      c.id = id;
      c.random_seed = 42;
      c.max_inflight_messages = 64;
      c.max_uncommitted_bytes = 0;
      m.node = std::move(Node::Create(c, m.storage.get())).value();
    }
    // Members refuse votes for an election timeout after starting; tick
    // until one of them has won an election.
    while (leader_ == nullptr) {
      for (auto& [id, m] : members_)
        m.node->Tick();
      Settle();
      for (auto& [id, m] : members_) {
        if (m.node->role() == Role::kLeader) leader_ = m.node.get();
      }
    }
  }

  Node& leader() { return *leader_; }

  // Handles every Ready and delivers every message until quiet.
  void Settle() {
    bool busy = true;
    while (busy) {
      busy = false;
      for (auto& [id, m] : members_) {
        while (m.node->HasReady()) {
          busy = true;
          Ready rd = m.node->GetReady();
          if (rd.snapshot) (void)m.storage->ApplySnapshot(*rd.snapshot);
          m.storage->Append(rd.entries);
          if (rd.hard_state) m.storage->SetHardState(*rd.hard_state);
          for (Message& msg : rd.messages)
            inbox_.push_back(std::move(msg));
          if (!rd.committed_entries.empty()) {
            applied_[id] = rd.committed_entries.back().index;
          }
          m.node->Advance(rd);
        }
      }
      while (!inbox_.empty()) {
        busy = true;
        Message msg = std::move(inbox_.front());
        inbox_.pop_front();
        (void)members_.at(msg.to).node->Step(std::move(msg));
      }
    }
  }

  // Drops entries every node has applied, as a state machine snapshot would.
  void Compact() {
    for (auto& [id, m] : members_) {
      const uint64_t upto = applied_[id];
      if (upto > m.storage->FirstIndex() + 1024) (void)m.storage->Compact(upto - 512);
    }
  }

 private:
  struct Member {
    std::unique_ptr<MemoryStorage> storage;
    std::unique_ptr<Node> node;
  };
  std::map<NodeId, Member> members_;
  std::map<NodeId, uint64_t> applied_;
  std::deque<Message> inbox_;
  Node* leader_ = nullptr;
};

// state.range(0): payload bytes; state.range(1): proposals between settles.
void BM_CommitThreeNodes(benchmark::State& state) {
  MemoryCluster cluster(3);
  const std::string payload(static_cast<size_t>(state.range(0)), 'v');
  const int batch = static_cast<int>(state.range(1));
  int64_t committed = 0;
  for (auto _ : state) {
    for (int i = 0; i < batch; ++i) {
      if (!cluster.leader().Propose(payload).ok()) state.SkipWithError("proposal refused");
    }
    cluster.Settle();
    committed += batch;
    if (committed % 8192 < batch) cluster.Compact();
  }
  state.SetItemsProcessed(committed);
  state.SetBytesProcessed(committed * state.range(0));
}

BENCHMARK(BM_CommitThreeNodes)
    ->ArgNames({"bytes", "batch"})
    ->Args({16, 1})
    ->Args({16, 64})
    ->Args({1024, 1})
    ->Args({1024, 64});

}  // namespace
}  // namespace conclave::raft

BENCHMARK_MAIN();
