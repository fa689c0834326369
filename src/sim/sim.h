// Deterministic whole-cluster simulation of the real node stack.
//
// RunSimulation builds a cluster of server::Host processes in one thread and
// drives it from a single seed. Each simulated node is the production code
// (Host, Replica, the etcd state machine with its MVCC store, watch hub and
// lessor, the write-ahead log) running in the host's manual mode, with the
// world injected: a fault-injecting in-memory file system under the WAL and
// the snapshot files, an in-memory storage engine that loses unsynced
// batches (storage::MemEngine), a clock per node that runs at its own rate,
// and a network of the simulator's (loss, duplication, delay and so
// reordering, symmetric and one-way partitions). Crashes tear unsynced log
// writes and drop unsynced engine batches; restarts recover from what
// survived. Membership changes, leadership transfers, several groups per
// host (idle ones quiesce) and clients issuing writes, linearizable reads
// and leased writes run under the faults. After every step the Raft safety
// properties are checked and every client response is checked against the
// history the cluster committed; then a liveness phase heals every fault and
// requires progress.
//
// Everything that varies comes from the seed, so the same seed replays the
// same run event for event. A failure names the seed and the last events.
//
// The properties checked (docs/SIMULATION.md):
//   - election safety: at most one leader per term and group;
//   - log matching: entries with the same index and term are identical and
//     so are the logs before them;
//   - leader completeness: a new leader holds every entry already applied;
//   - state machine safety: every replica applies the same entry at each
//     index with the same result (the store's revision after it);
//   - linearizability of the clients' history: an acknowledged write's
//     revision holds exactly that write and follows every write
//     acknowledged before it began; a linearizable read returns the state of
//     a revision at least as new as every write acknowledged before it
//     began, as the cluster committed it;
//   - convergence: replicas at the same applied index hold the same store;
//   - liveness: once healed, every group has a leader, a new write commits
//     and all members converge within a bounded time.
//
// Thread-safety: RunSimulation is self-contained; separate runs may go on
// separate threads.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "raft/raft.h"
#include "server/server.h"

namespace conclave::sim {

struct FaultProfile {
  std::string name;
  double drop = 0;            // probability a message is lost
  double duplicate = 0;       // probability a message is delivered twice
  int64_t delay_min_us = 50;  // network delay range
  int64_t delay_max_us = 1500;
  int64_t partition_mean_us = 0;         // mean time between partitions; 0 = none
  int64_t partition_max_us = 1'500'000;  // a partition heals within this
  int64_t crash_mean_us = 0;             // mean time between crashes; 0 = none
  int64_t restart_max_us = 1'200'000;    // a crashed node restarts within this
  int leader_crash_one_in = 3;           // a crash picks the leader one time in N
  // Probability that a newly elected leader crashes within a few
  // milliseconds, before it has replicated much (the Figure 8 pattern).
  double new_leader_crash = 0;
  int64_t membership_mean_us = 0;  // mean time between membership changes
  int64_t transfer_mean_us = 0;    // mean time between leadership transfers
  double clock_skew = 0.04;        // per-node clock rate within +-skew
  int compact_every_entries = 0;   // the replicas' snapshot count; 0 = never
  uint64_t max_payload_bytes = 64;
};

// The named profiles, in the order seeds rotate through them.
const std::vector<FaultProfile>& Profiles();

struct SimOptions {
  uint64_t seed = 0;
  int nodes = 0;        // 0: 3 or 5, chosen by the seed
  int groups = 0;       // Raft groups per host; 0: chosen by the seed (1-3)
  std::string profile;  // empty: chosen by the seed
  int read_mode = -1;   // -1: by seed; 0: safe ReadIndex; 1: lease-based
  int64_t safety_us = 6'000'000;
  int64_t liveness_us = 12'000'000;
  int clients = 4;
  raft::PlantedBugs bugs;      // planted in the Raft core
  server::NodeBugs node_bugs;  // planted in the node (host, replica, store)
  size_t trace_tail = 60;      // events kept for the failure report
  bool print_trace = false;    // print every event as it happens
};

struct SimStats {
  uint64_t events = 0;
  uint64_t messages = 0;
  uint64_t writes_acked = 0;
  uint64_t reads_ok = 0;
  uint64_t ops_failed = 0;  // refused, timed out or cut off by a crash
  uint64_t leaders_elected = 0;
  uint64_t crashes = 0;
  uint64_t torn_crashes = 0;  // crashes that left unsynced log writes behind
  uint64_t partitions = 0;
  uint64_t conf_changes = 0;
  uint64_t transfers = 0;
  uint64_t snapshots_installed = 0;
  uint64_t quiesced = 0;  // times a replica stopped ticking
  uint64_t leases_granted = 0;
  uint64_t max_term = 0;
  uint64_t final_applied = 0;  // group 1
};

struct SimResult {
  bool ok = true;
  uint64_t seed = 0;
  std::string profile;
  int nodes = 0;
  int groups = 0;
  std::string read_mode;
  std::string violation;           // first violated property, with details
  std::vector<std::string> trace;  // the last events before the violation
  uint64_t fingerprint = 0;        // hash of every event, for replay checks
  SimStats stats;

  std::string Summary() const;
  std::string Report() const;  // summary, violation and trace
};

SimResult RunSimulation(const SimOptions& options);

// The planted bugs by name (raft::PlantedBugs and server::NodeBugs), for the
// command line and the checker's own tests.
const std::vector<std::string>& PlantableBugs();
// Turns on the named bug in `o`; false if there is no such bug.
bool PlantBug(std::string_view name, SimOptions* o);

}  // namespace conclave::sim
