// ServerConfig: a member's start-up configuration, read from etcd 3.4's
// server flags (same names, meanings and defaults; docs/CONFIG.md lists the
// few differences) and their environment variables.
//
// ParseServerConfig is pure: it takes the arguments after the subcommand and
// a copy of the environment, so tests need neither a process nor a real
// environment. Each flag `--foo-bar` may also be set as CONCLAVE_FOO_BAR or,
// so that etcd deployment scripts work unchanged, ETCD_FOO_BAR; a flag on
// the command line wins over the environment, and CONCLAVE_ over ETCD_.
// Both `--flag value` and `--flag=value` are accepted (and, as in Go's flag
// package, a single leading dash).
//
// Every limit is checked here, at start-up, so the rest of the server can
// trust the values; errors are InvalidArgument and name the flag.
//
// Thread-safety: pure functions; ServerConfig is a value.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "base/status.h"

namespace conclave::server {

enum class ClusterState { kNew, kExisting };
enum class AutoCompactionMode { kPeriodic, kRevision };

// Deliberate bugs for proving the fault-injection harness can fail.
enum class TestBug {
  kLocalReads,  // "local-reads": linearizable reads skip the ReadIndex round
  // "scan-skips-boundary": a native scan that goes on into the next range
  // starts just past its start key (skipping the key there, if any)
  kScanSkipsBoundary,
};

struct ServerConfig {
  std::string name = "default";
  // Defaults to "<name>.conclave" (etcd: "<name>.etcd").
  std::string data_dir = "default.conclave";

  std::vector<std::string> listen_client_urls = {"http://127.0.0.1:2379"};
  std::vector<std::string> advertise_client_urls = {"http://localhost:2379"};
  std::vector<std::string> listen_peer_urls = {"http://localhost:2380"};
  std::vector<std::string> initial_advertise_peer_urls = {"http://localhost:2380"};
  std::vector<std::string> listen_metrics_urls;  // empty: no separate metrics listener

  // Member name -> its peer URLs, in the order given.
  std::map<std::string, std::vector<std::string>> initial_cluster = {
      {"default", {"http://localhost:2380"}}};
  ClusterState initial_cluster_state = ClusterState::kNew;
  std::string initial_cluster_token = "etcd-cluster";

  int64_t heartbeat_interval_ms = 100;
  int64_t election_timeout_ms = 1000;
  uint64_t snapshot_count = 100'000;
  int64_t quota_backend_bytes = int64_t{2} << 30;  // --quota-backend-bytes=0 means this
  int64_t max_request_bytes = 1'572'864;           // 1.5 MiB
  int64_t max_txn_ops = 128;

  AutoCompactionMode auto_compaction_mode = AutoCompactionMode::kPeriodic;
  // The flag's text, as given ("0" disables auto compaction).
  std::string auto_compaction_retention = "0";
  // The parsed retention: a period in periodic mode, a revision count in
  // revision mode; the other one is zero.
  std::chrono::milliseconds auto_compaction_period{0};
  int64_t auto_compaction_revisions = 0;

  std::string log_level = "info";

  // Conclave's own: a new cluster divides the native keyspace into this many
  // ranges (each a Raft group with range_replicas replicas spread over the
  // initial members), for the native KV API. 0: none. Ignored when the data
  // directory exists.
  int64_t initial_range_count = 0;
  int64_t range_replicas = 3;
  // Conclave's own (--labels zone=eu-1,rack=r7): where this member is, most
  // general label first; the placement driver spreads each range's
  // replicas over members whose labels differ, the first label first.
  std::vector<std::pair<std::string, std::string>> labels;
  // Conclave's own: a member whose status has not reached the meta range
  // for this many seconds is down, and its range replicas are re-created on
  // the other members (0: never).
  int64_t range_replica_down_time_s = 300;
  // Conclave's own: how often the placement driver looks at the cluster,
  // in seconds (0: it never moves anything; ranges move only by hand).
  int64_t range_placement_interval_s = 2;
  // Conclave's own: whether the members even out the load their led ranges
  // serve (and then the leader counts), or the leader counts only.
  bool range_leaders_by_load = true;
  // Conclave's own: a native range splits once its data holds about this
  // many bytes (0: never), or once it serves more than range_split_qps
  // requests per second on one member over range_load_window_s (0: never).
  int64_t range_split_bytes = int64_t{64} << 20;
  int64_t range_split_qps = 3'000;
  int64_t range_load_window_s = 10;
  // Conclave's own: a native range merges with its right-hand neighbour
  // when their data together is below this many bytes and their load below
  // a quarter of range_split_qps (0: never by itself).
  int64_t range_merge_bytes = int64_t{16} << 20;
  // Conclave's own: snapshots sent to other members (new replicas, lagging
  // ones), all together, at most this many bytes per second (0: no limit),
  // so that rebalancing and re-replication leave the disk and the network to
  // foreground traffic.
  int64_t snapshot_send_bytes_per_second = int64_t{32} << 20;

  // Test-only (--unsafe-test-bug, a comma-separated list): deliberately
  // broken behaviours that the fault-injection harness must catch. Never set
  // in production.
  std::set<TestBug> test_bugs;
};

// Limits enforced by ParseServerConfig.
inline constexpr int64_t kMaxElectionTimeoutMs = 50'000;  // etcd's bound
inline constexpr int64_t kMinElectionTicks = 5;           // election >= 5 x heartbeat
inline constexpr int64_t kMaxQuotaBackendBytes = int64_t{8} << 30;
inline constexpr int64_t kMaxRequestBytesMax = int64_t{64} << 20;
inline constexpr int64_t kMaxTxnOpsMax = 65'536;
inline constexpr int64_t kMaxInitialRangeCount = 65'536;
inline constexpr int64_t kMaxRangeSplitBytes = int64_t{64} << 30;
inline constexpr int64_t kMaxRangeSplitQps = 100'000'000;
inline constexpr int64_t kMaxRangeLoadWindowS = 3'600;

// `args` are the arguments after the program (and subcommand) name; `env`
// maps environment variable names to values.
Result<ServerConfig> ParseServerConfig(const std::vector<std::string>& args,
                                       const std::map<std::string, std::string>& env);

// Copies a NUL-terminated `NAME=value` array (main's envp, or environ).
std::map<std::string, std::string> EnvironmentMap(const char* const* envp);

// Member and cluster ids. Like etcd, they are derived from what every member
// is started with, so all members agree on them without talking; the hash is
// Conclave's own (etcd uses SHA-1), so the numbers differ from etcd's:
//
//   member id  = FNV-1a 64 over the member's peer URLs, sorted, each followed
//                by '\n', then the cluster token;
//   cluster id = FNV-1a 64 over the member ids, sorted, each as 8 big-endian
//                bytes, then the cluster token.
//
// A hash of 0 (Raft's "no node") becomes 1.
uint64_t MemberId(const std::vector<std::string>& peer_urls, const std::string& cluster_token);
uint64_t ClusterId(const std::map<std::string, std::vector<std::string>>& members,
                   const std::string& cluster_token);
// This member's id and the cluster's, from a parsed config.
uint64_t LocalMemberId(const ServerConfig& config);
uint64_t LocalClusterId(const ServerConfig& config);

// Raft timing in ticks; one tick is one heartbeat interval. A parsed config
// gives heartbeat 1 and election >= kMinElectionTicks (rounded down).
int64_t TickIntervalMs(const ServerConfig& config);
int64_t HeartbeatTicks(const ServerConfig& config);
int64_t ElectionTicks(const ServerConfig& config);

}  // namespace conclave::server
