#include "server/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace conclave::server {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Env = std::map<std::string, std::string>;
using Args = std::vector<std::string>;

ServerConfig ParseOk(const Args& args, const Env& env = {}) {
  auto config = ParseServerConfig(args, env);
  EXPECT_TRUE(config.ok()) << config.status().ToString();
  return config.ok() ? *config : ServerConfig{};
}

// The error message, which must be an InvalidArgument.
std::string ParseError(const Args& args, const Env& env = {}) {
  auto config = ParseServerConfig(args, env);
  EXPECT_FALSE(config.ok());
  if (config.ok()) return "";
  EXPECT_EQ(config.status().code(), StatusCode::kInvalidArgument);
  return config.status().message();
}

TEST(ParseServerConfigTest, DefaultsAreEtcds) {
  ServerConfig c = ParseOk({});
  EXPECT_EQ(c.name, "default");
  EXPECT_EQ(c.data_dir, "default.conclave");
  EXPECT_THAT(c.listen_client_urls, ElementsAre("http://127.0.0.1:2379"));
  EXPECT_THAT(c.advertise_client_urls, ElementsAre("http://localhost:2379"));
  EXPECT_THAT(c.listen_peer_urls, ElementsAre("http://localhost:2380"));
  EXPECT_THAT(c.initial_advertise_peer_urls, ElementsAre("http://localhost:2380"));
  EXPECT_TRUE(c.listen_metrics_urls.empty());
  ASSERT_EQ(c.initial_cluster.size(), 1u);
  EXPECT_THAT(c.initial_cluster.at("default"), ElementsAre("http://localhost:2380"));
  EXPECT_EQ(c.initial_cluster_state, ClusterState::kNew);
  EXPECT_EQ(c.initial_cluster_token, "etcd-cluster");
  EXPECT_EQ(c.heartbeat_interval_ms, 100);
  EXPECT_EQ(c.election_timeout_ms, 1000);
  EXPECT_EQ(c.snapshot_count, 100'000u);
  EXPECT_EQ(c.quota_backend_bytes, int64_t{2} * 1024 * 1024 * 1024);
  EXPECT_EQ(c.max_request_bytes, 1'572'864);
  EXPECT_EQ(c.max_txn_ops, 128);
  EXPECT_EQ(c.auto_compaction_mode, AutoCompactionMode::kPeriodic);
  EXPECT_EQ(c.auto_compaction_retention, "0");
  EXPECT_EQ(c.auto_compaction_period.count(), 0);
  EXPECT_EQ(c.auto_compaction_revisions, 0);
  EXPECT_EQ(c.log_level, "info");
}

const Args kThreeMembers = {
    "--name",
    "n2",
    "--initial-cluster",
    "n1=http://10.0.0.1:2380,n2=http://10.0.0.2:2380,n2=https://[fe80::2]:7001,n3=http://h3:2380",
    "--initial-advertise-peer-urls",
    "https://[fe80::2]:7001,http://10.0.0.2:2380"};

TEST(ParseServerConfigTest, EveryFlag) {
  Args args = kThreeMembers;
  Args more = {"--data-dir=/var/lib/n2",
               "--listen-client-urls=http://0.0.0.0:2379,https://10.0.0.2:2379/",
               "--advertise-client-urls=https://10.0.0.2:2379",
               "--listen-peer-urls=http://0.0.0.0:2380",
               "--listen-metrics-urls=http://127.0.0.1:9090",
               "--initial-cluster-state=existing",
               "--initial-cluster-token=tok",
               "--heartbeat-interval=50",
               "--election-timeout=500",
               "--snapshot-count=10",
               "--quota-backend-bytes=1048576",
               "--max-request-bytes=4096",
               "--max-txn-ops=16",
               "--auto-compaction-mode=revision",
               "--auto-compaction-retention=1000",
               "--log-level=debug"};
  args.insert(args.end(), more.begin(), more.end());
  ServerConfig c = ParseOk(args);
  EXPECT_EQ(c.name, "n2");
  EXPECT_EQ(c.data_dir, "/var/lib/n2");
  EXPECT_THAT(c.listen_client_urls, ElementsAre("http://0.0.0.0:2379", "https://10.0.0.2:2379"));
  EXPECT_THAT(c.advertise_client_urls, ElementsAre("https://10.0.0.2:2379"));
  EXPECT_THAT(c.listen_peer_urls, ElementsAre("http://0.0.0.0:2380"));
  EXPECT_THAT(c.listen_metrics_urls, ElementsAre("http://127.0.0.1:9090"));
  EXPECT_THAT(c.initial_advertise_peer_urls,
              ElementsAre("https://[fe80::2]:7001", "http://10.0.0.2:2380"));
  ASSERT_EQ(c.initial_cluster.size(), 3u);
  EXPECT_THAT(c.initial_cluster.at("n1"), ElementsAre("http://10.0.0.1:2380"));
  EXPECT_THAT(c.initial_cluster.at("n2"),
              ElementsAre("http://10.0.0.2:2380", "https://[fe80::2]:7001"));
  EXPECT_THAT(c.initial_cluster.at("n3"), ElementsAre("http://h3:2380"));
  EXPECT_EQ(c.initial_cluster_state, ClusterState::kExisting);
  EXPECT_EQ(c.initial_cluster_token, "tok");
  EXPECT_EQ(c.heartbeat_interval_ms, 50);
  EXPECT_EQ(c.election_timeout_ms, 500);
  EXPECT_EQ(c.snapshot_count, 10u);
  EXPECT_EQ(c.quota_backend_bytes, 1048576);
  EXPECT_EQ(c.max_request_bytes, 4096);
  EXPECT_EQ(c.max_txn_ops, 16);
  EXPECT_EQ(c.auto_compaction_mode, AutoCompactionMode::kRevision);
  EXPECT_EQ(c.auto_compaction_revisions, 1000);
  EXPECT_EQ(c.auto_compaction_period.count(), 0);
  EXPECT_EQ(c.log_level, "debug");
}

TEST(ParseServerConfigTest, DataDirFollowsName) {
  ServerConfig c = ParseOk({"--name", "n1", "--initial-cluster", "n1=http://localhost:2380"});
  EXPECT_EQ(c.data_dir, "n1.conclave");
}

TEST(ParseServerConfigTest, BothSyntaxesAndSingleDash) {
  ServerConfig a = ParseOk({"--max-txn-ops", "7", "--log-level=warn", "-snapshot-count", "3"});
  EXPECT_EQ(a.max_txn_ops, 7);
  EXPECT_EQ(a.log_level, "warn");
  EXPECT_EQ(a.snapshot_count, 3u);
  // A value may itself contain '='.
  ServerConfig b = ParseOk({"--initial-cluster=default=http://localhost:2380"});
  EXPECT_EQ(b.initial_cluster.size(), 1u);
}

TEST(ParseServerConfigTest, QuotaZeroMeansDefault) {
  EXPECT_EQ(ParseOk({"--quota-backend-bytes=0"}).quota_backend_bytes, int64_t{2} << 30);
}

TEST(ParseServerConfigTest, PeriodicRetention) {
  auto period = [](const std::string& text) {
    return ParseOk({"--auto-compaction-retention", text}).auto_compaction_period.count();
  };
  EXPECT_EQ(period("5"), 5 * 3'600'000);  // a bare number is hours
  EXPECT_EQ(period("1h"), 3'600'000);
  EXPECT_EQ(period("30m"), 1'800'000);
  EXPECT_EQ(period("90s"), 90'000);
  EXPECT_EQ(period("1h30m"), 5'400'000);
  EXPECT_EQ(period("250ms"), 250);
  EXPECT_EQ(period("0"), 0);
}

TEST(ParseServerConfigTest, EnvironmentSetsFlags) {
  Env env = {{"CONCLAVE_NAME", "n1"},
             {"ETCD_INITIAL_CLUSTER", "n1=http://10.0.0.1:2380"},
             {"ETCD_INITIAL_ADVERTISE_PEER_URLS", "http://10.0.0.1:2380"},
             {"CONCLAVE_MAX_TXN_OPS", "64"},
             {"ETCD_HEARTBEAT_INTERVAL", "20"},
             {"CONCLAVE_AUTO_COMPACTION_RETENTION", "2h"},
             {"ETCD_UNRELATED_THING", "ignored"},
             {"PATH", "/bin"}};
  ServerConfig c = ParseOk({}, env);
  EXPECT_EQ(c.name, "n1");
  EXPECT_EQ(c.data_dir, "n1.conclave");
  EXPECT_THAT(c.initial_cluster.at("n1"), ElementsAre("http://10.0.0.1:2380"));
  EXPECT_EQ(c.max_txn_ops, 64);
  EXPECT_EQ(c.heartbeat_interval_ms, 20);
  EXPECT_EQ(c.auto_compaction_period.count(), 7'200'000);
}

TEST(ParseServerConfigTest, FlagBeatsConclaveEnvBeatsEtcdEnv) {
  Env env = {
      {"CONCLAVE_MAX_TXN_OPS", "64"}, {"ETCD_MAX_TXN_OPS", "32"}, {"ETCD_SNAPSHOT_COUNT", "5"}};
  EXPECT_EQ(ParseOk({"--max-txn-ops=8"}, env).max_txn_ops, 8);
  EXPECT_EQ(ParseOk({}, env).max_txn_ops, 64);
  EXPECT_EQ(ParseOk({}, env).snapshot_count, 5u);
  // A bad value in a variable the flag shadows is never read.
  EXPECT_EQ(ParseOk({"--max-txn-ops=8"}, {{"CONCLAVE_MAX_TXN_OPS", "x"}}).max_txn_ops, 8);
}

TEST(ParseServerConfigTest, EnvironmentErrorsNameTheVariable) {
  EXPECT_EQ(ParseError({}, {{"ETCD_MAX_TXN_OPS", "lots"}}),
            "--max-txn-ops (from ETCD_MAX_TXN_OPS): \"lots\" is not a number");
}

TEST(ParseServerConfigTest, CommandLineSyntaxErrors) {
  EXPECT_EQ(ParseError({"--bogus=1"}), "unknown flag --bogus");
  EXPECT_EQ(ParseError({"--bogus", "1"}), "unknown flag --bogus");
  EXPECT_EQ(ParseError({"stray"}), "unexpected argument \"stray\"");
  EXPECT_EQ(ParseError({"--name"}), "--name: needs a value");
  EXPECT_EQ(ParseError({"--name", "--data-dir=x"}), "--name: needs a value");
  EXPECT_EQ(ParseError({"--max-txn-ops=1", "--max-txn-ops", "2"}),
            "--max-txn-ops: given more than once");
  EXPECT_EQ(ParseError({"--log-level=info", "-log-level=info"}),
            "--log-level: given more than once");
}

TEST(ParseServerConfigTest, TestBugSwitch) {
  using Bugs = std::set<TestBug>;
  EXPECT_EQ(ParseOk({}).test_bugs, Bugs{});
  EXPECT_EQ(ParseOk({"--unsafe-test-bug=none"}).test_bugs, Bugs{});
  EXPECT_EQ(ParseOk({"--unsafe-test-bug=local-reads"}).test_bugs, Bugs{TestBug::kLocalReads});
  EXPECT_EQ(ParseOk({"--unsafe-test-bug=scan-skips-boundary,local-reads"}).test_bugs,
            (Bugs{TestBug::kLocalReads, TestBug::kScanSkipsBoundary}));
  EXPECT_EQ(ParseError({"--unsafe-test-bug=local-reads,stale"}),
            "--unsafe-test-bug: \"stale\" is not a planted bug (want none, or a comma-separated "
            "list of local-reads and scan-skips-boundary)");
  EXPECT_NE(ParseError({"--unsafe-test-bug=local-reads,none"}), "");
  EXPECT_NE(ParseError({"--unsafe-test-bug=local-reads,"}), "");
}

TEST(ParseServerConfigTest, NumbersMustBeNumbers) {
  for (const char* flag : {"--heartbeat-interval", "--election-timeout", "--snapshot-count",
                           "--quota-backend-bytes", "--max-request-bytes", "--max-txn-ops"}) {
    EXPECT_EQ(ParseError({flag, "12abc"}), std::string(flag) + ": \"12abc\" is not a number");
    EXPECT_EQ(ParseError({std::string(flag) + "="}), std::string(flag) + ": \"\" is not a number");
  }
  EXPECT_THAT(ParseError({"--snapshot-count=99999999999999999999"}), HasSubstr("is too large"));
}

TEST(ParseServerConfigTest, NumbersOutOfRange) {
  EXPECT_THAT(ParseError({"--heartbeat-interval=0"}),
              HasSubstr("--heartbeat-interval: 0 is out of range [1, 10000]"));
  EXPECT_THAT(ParseError({"--heartbeat-interval=-5"}), HasSubstr("out of range"));
  EXPECT_THAT(ParseError({"--election-timeout=50001"}),
              HasSubstr("--election-timeout: 50001 is out of range [1, 50000]"));
  EXPECT_THAT(ParseError({"--snapshot-count=0"}), HasSubstr("--snapshot-count: 0 is out of range"));
  EXPECT_THAT(ParseError({"--quota-backend-bytes=-1"}),
              HasSubstr("--quota-backend-bytes: -1 is out of range"));
  EXPECT_THAT(ParseError({"--quota-backend-bytes=8589934593"}), HasSubstr("out of range"));
  EXPECT_THAT(ParseError({"--max-request-bytes=0"}), HasSubstr("--max-request-bytes: 0 is out"));
  EXPECT_THAT(ParseError({"--max-request-bytes=67108865"}), HasSubstr("out of range"));
  EXPECT_THAT(ParseError({"--max-txn-ops=0"}), HasSubstr("--max-txn-ops: 0 is out of range"));
  EXPECT_THAT(ParseError({"--max-txn-ops=65537"}), HasSubstr("out of range"));
  EXPECT_THAT(ParseError({"--range-load-window=0"}),
              HasSubstr("--range-load-window: 0 is out of range [1, 3600]"));
  EXPECT_THAT(ParseError({"--range-split-bytes=-1"}), HasSubstr("out of range"));
}

TEST(ParseServerConfigTest, RangeSplitting) {
  ServerConfig d = ParseOk({});
  EXPECT_EQ(d.range_split_bytes, 64 << 20);
  EXPECT_EQ(d.range_split_qps, 3000);
  EXPECT_EQ(d.range_load_window_s, 10);
  EXPECT_EQ(d.range_merge_bytes, 16 << 20);
  EXPECT_EQ(d.snapshot_send_bytes_per_second, 32 << 20);
  EXPECT_EQ(ParseOk({"--snapshot-send-bytes-per-second=0"}).snapshot_send_bytes_per_second, 0);
  ServerConfig c = ParseOk({"--range-split-bytes=0", "--range-split-qps=50",
                            "--range-load-window=2", "--range-merge-bytes=0"});
  EXPECT_EQ(c.range_merge_bytes, 0);
  EXPECT_EQ(c.range_split_bytes, 0);
  EXPECT_EQ(c.range_split_qps, 50);
  EXPECT_EQ(c.range_load_window_s, 2);
}

TEST(ParseServerConfigTest, RangePlacement) {
  ServerConfig d = ParseOk({});
  EXPECT_EQ(d.range_replicas, 3);
  EXPECT_EQ(d.range_replica_down_time_s, 300);
  EXPECT_EQ(d.range_placement_interval_s, 2);
  ServerConfig c = ParseOk(
      {"--range-replicas=5", "--range-replica-down-time=0", "--range-placement-interval=0"});
  EXPECT_EQ(c.range_replicas, 5);
  EXPECT_EQ(c.range_replica_down_time_s, 0);
  EXPECT_EQ(c.range_placement_interval_s, 0);
  EXPECT_THAT(ParseError({"--range-replicas=0"}), HasSubstr("out of range"));
  EXPECT_THAT(ParseError({"--range-replicas=8"}), HasSubstr("out of range"));
  EXPECT_THAT(ParseError({"--range-placement-interval=-1"}), HasSubstr("out of range"));
  EXPECT_TRUE(d.range_leaders_by_load);
  EXPECT_FALSE(ParseOk({"--range-leader-balance=count"}).range_leaders_by_load);
  EXPECT_TRUE(ParseOk({"--range-leader-balance=load"}).range_leaders_by_load);
  EXPECT_THAT(ParseError({"--range-leader-balance=bytes"}),
              HasSubstr("--range-leader-balance: \"bytes\" is not load or count"));
}

TEST(ParseServerConfigTest, Labels) {
  EXPECT_TRUE(ParseOk({}).labels.empty());
  ServerConfig c = ParseOk({"--labels=zone=eu-1,rack=r_7.b"});
  ASSERT_EQ(c.labels.size(), 2u);
  EXPECT_EQ(c.labels[0], std::make_pair(std::string("zone"), std::string("eu-1")));
  EXPECT_EQ(c.labels[1], std::make_pair(std::string("rack"), std::string("r_7.b")));
  EXPECT_THAT(ParseError({"--labels=zone"}), HasSubstr("\"zone\" is not key=value"));
  EXPECT_THAT(ParseError({"--labels=zone=a,=b"}), HasSubstr("\"=b\" is not key=value"));
  EXPECT_THAT(ParseError({"--labels=zone=a b"}), HasSubstr("is not key=value"));
  EXPECT_THAT(ParseError({"--labels=zone=a,zone=b"}), HasSubstr("label \"zone\" is given twice"));
}

TEST(ParseServerConfigTest, ElectionTimeoutAtLeastFiveHeartbeats) {
  EXPECT_EQ(ParseError({"--heartbeat-interval=100", "--election-timeout=499"}),
            "--election-timeout: 499 ms must be at least 5 times --heartbeat-interval (100 ms)");
  EXPECT_EQ(ParseOk({"--heartbeat-interval=100", "--election-timeout=500"}).election_timeout_ms,
            500);
  // Raising the heartbeat alone breaks the default election timeout.
  EXPECT_THAT(ParseError({"--heartbeat-interval=300"}), HasSubstr("at least 5 times"));
}

TEST(ParseServerConfigTest, EnumeratedValues) {
  EXPECT_EQ(ParseError({"--initial-cluster-state=old"}),
            "--initial-cluster-state: \"old\" is not new or existing");
  EXPECT_EQ(ParseError({"--auto-compaction-mode=daily"}),
            "--auto-compaction-mode: \"daily\" is not periodic or revision");
  EXPECT_EQ(ParseError({"--log-level=verbose"}),
            "--log-level: \"verbose\" is not debug, info, warn, error, panic or fatal");
  for (const char* level : {"debug", "info", "warn", "error", "panic", "fatal"}) {
    EXPECT_EQ(ParseOk({"--log-level", level}).log_level, level);
  }
}

TEST(ParseServerConfigTest, BadRetention) {
  EXPECT_THAT(ParseError({"--auto-compaction-retention=1d"}),
              HasSubstr("--auto-compaction-retention: \"1d\" is not a duration"));
  EXPECT_THAT(ParseError({"--auto-compaction-retention=-1h"}), HasSubstr("is not a duration"));
  EXPECT_THAT(ParseError({"--auto-compaction-retention=h"}), HasSubstr("is not a duration"));
  EXPECT_THAT(ParseError({"--auto-compaction-retention="}), HasSubstr("is empty"));
  EXPECT_THAT(ParseError({"--auto-compaction-retention=999999999h"}), HasSubstr("too long"));
  EXPECT_THAT(ParseError({"--auto-compaction-mode=revision", "--auto-compaction-retention=1h"}),
              HasSubstr("--auto-compaction-retention: \"1h\" is not a number"));
  EXPECT_THAT(ParseError({"--auto-compaction-mode=revision", "--auto-compaction-retention=-3"}),
              HasSubstr("out of range"));
}

TEST(ParseServerConfigTest, MalformedUrls) {
  EXPECT_EQ(ParseError({"--listen-peer-urls=localhost:2380"}),
            "--listen-peer-urls: \"localhost:2380\" is not a URL (want http://host:port)");
  EXPECT_EQ(ParseError({"--listen-peer-urls=unix://conclave.sock:1"}),
            "--listen-peer-urls: \"unix://conclave.sock:1\": unix sockets are not supported");
  EXPECT_THAT(ParseError({"--listen-peer-urls=unixs://a:1"}), HasSubstr("unix sockets"));
  EXPECT_EQ(ParseError({"--listen-peer-urls=ftp://h:1"}),
            "--listen-peer-urls: \"ftp://h:1\": the scheme must be http or https");
  EXPECT_EQ(ParseError({"--listen-peer-urls=http://h"}),
            "--listen-peer-urls: \"http://h\" has no port");
  EXPECT_THAT(ParseError({"--listen-peer-urls=http://:2380"}), HasSubstr("has no valid host"));
  EXPECT_THAT(ParseError({"--listen-peer-urls=http://[::1]"}), HasSubstr("has no port"));
  EXPECT_THAT(ParseError({"--listen-peer-urls=http://::1:2380"}), HasSubstr("no valid host"));
  EXPECT_THAT(ParseError({"--listen-peer-urls=http://h:0"}), HasSubstr("port must be a number"));
  EXPECT_THAT(ParseError({"--listen-peer-urls=http://h:65536"}), HasSubstr("port must be"));
  EXPECT_THAT(ParseError({"--listen-peer-urls=http://h:x"}), HasSubstr("port must be"));
  EXPECT_THAT(ParseError({"--listen-peer-urls=http://h:1/path"}), HasSubstr("without path"));
  EXPECT_THAT(ParseError({"--listen-peer-urls=http://u@h:1"}), HasSubstr("without path or user"));
  EXPECT_EQ(ParseError({"--listen-peer-urls="}), "--listen-peer-urls: needs at least one URL");
  EXPECT_THAT(ParseError({"--listen-peer-urls=http://h:1,"}), HasSubstr("is not a URL"));
  EXPECT_EQ(ParseError({"--listen-peer-urls=http://h:1,http://h:1"}),
            "--listen-peer-urls: \"http://h:1\" is given twice");
  // Each URL flag is checked.
  for (const char* flag : {"--listen-client-urls", "--advertise-client-urls",
                           "--initial-advertise-peer-urls", "--listen-metrics-urls"}) {
    EXPECT_THAT(ParseError({flag, "nope"}), HasSubstr(std::string(flag) + ": \"nope\""));
  }
  EXPECT_TRUE(ParseOk({"--listen-metrics-urls="}).listen_metrics_urls.empty());
}

TEST(ParseServerConfigTest, MalformedInitialCluster) {
  EXPECT_EQ(ParseError({"--initial-cluster=http://h:1"}),
            "--initial-cluster: \"http://h:1\" is not name=url");
  EXPECT_EQ(ParseError({"--initial-cluster==http://h:1"}),
            "--initial-cluster: \"=http://h:1\" is not name=url");
  EXPECT_THAT(ParseError({"--initial-cluster=a=h:1"}), HasSubstr("is not a URL"));
  EXPECT_EQ(ParseError({"--initial-cluster="}), "--initial-cluster: needs at least one name=url");
  EXPECT_EQ(ParseError({"--initial-cluster=default=http://localhost:2380,b=http://localhost:2380"}),
            "--initial-cluster: \"http://localhost:2380\" is given twice");
}

TEST(ParseServerConfigTest, NameMustBeInInitialClusterWhenNew) {
  EXPECT_EQ(ParseError({"--name=n9"}),
            "--initial-cluster: has no member named \"n9\" (--name) to start a new cluster with");
  // Joining an existing cluster does not need it.
  EXPECT_EQ(ParseOk({"--name=n9", "--initial-cluster-state=existing"}).name, "n9");
  EXPECT_EQ(ParseError({"--name="}), "--name: must not be empty");
  EXPECT_THAT(ParseError({"--name=a,b"}), HasSubstr("must not contain"));
  EXPECT_EQ(ParseError({"--data-dir="}), "--data-dir: must not be empty");
}

TEST(ParseServerConfigTest, AdvertisedPeerUrlsMustMatchInitialCluster) {
  EXPECT_EQ(ParseError({"--initial-advertise-peer-urls=http://10.0.0.1:2380"}),
            "--initial-advertise-peer-urls: http://10.0.0.1:2380 does not match default's URLs "
            "in --initial-cluster (http://localhost:2380)");
  Args partial = kThreeMembers;
  partial.back() = "http://10.0.0.2:2380";  // one of n2's two URLs
  EXPECT_THAT(ParseError(partial), HasSubstr("does not match n2's URLs"));
  // Also checked when joining, when the member is listed.
  EXPECT_THAT(ParseError({"--initial-cluster-state=existing",
                          "--initial-advertise-peer-urls=http://10.0.0.1:2380"}),
              HasSubstr("does not match"));
}

TEST(ParseServerConfigTest, ListenClientUrlsNeedsAdvertiseClientUrls) {
  EXPECT_EQ(ParseError({"--listen-client-urls=http://0.0.0.0:2379"}),
            "--advertise-client-urls: required when --listen-client-urls is set explicitly");
  EXPECT_TRUE(ParseServerConfig({"--listen-client-urls=http://0.0.0.0:2379"},
                                {{"ETCD_ADVERTISE_CLIENT_URLS", "http://10.0.0.1:2379"}})
                  .ok());
}

TEST(EnvironmentMapTest, SplitsAtFirstEquals) {
  const char* envp[] = {"A=1", "B=x=y", "NOEQ", "C=", nullptr};
  EXPECT_EQ(EnvironmentMap(envp), (Env{{"A", "1"}, {"B", "x=y"}, {"C", ""}}));
  EXPECT_TRUE(EnvironmentMap(nullptr).empty());
}

TEST(IdsTest, MemberIdIsDeterministicAndOrderFree) {
  uint64_t id = MemberId({"http://a:1", "http://b:2"}, "tok");
  EXPECT_EQ(id, MemberId({"http://b:2", "http://a:1"}, "tok"));
  EXPECT_NE(id, MemberId({"http://a:1", "http://b:2"}, "other"));
  EXPECT_NE(id, MemberId({"http://a:1"}, "tok"));
  EXPECT_NE(id, 0u);
}

TEST(IdsTest, MemberIdIsFnv1aAsDocumented) {
  // FNV-1a 64 of "http://a:1\n" then "tok", computed independently.
  uint64_t h = 14695981039346656037ull;
  for (unsigned char b : std::string("http://a:1\ntok")) {
    h ^= b;
    h *= 1099511628211ull;
  }
  EXPECT_EQ(MemberId({"http://a:1"}, "tok"), h);
}

TEST(IdsTest, ClusterIdDependsOnMembersAndToken) {
  std::map<std::string, std::vector<std::string>> members = {{"a", {"http://a:1"}},
                                                             {"b", {"http://b:1"}}};
  uint64_t id = ClusterId(members, "tok");
  // Names do not matter, URLs do.
  EXPECT_EQ(id, ClusterId({{"x", {"http://b:1"}}, {"y", {"http://a:1"}}}, "tok"));
  EXPECT_NE(id, ClusterId(members, "tok2"));
  EXPECT_NE(id, ClusterId({{"a", {"http://a:1"}}}, "tok"));

  ServerConfig c = ParseOk(kThreeMembers);
  EXPECT_EQ(LocalMemberId(c), MemberId(c.initial_cluster.at("n2"), "etcd-cluster"));
  EXPECT_EQ(LocalClusterId(c), ClusterId(c.initial_cluster, "etcd-cluster"));
  EXPECT_NE(LocalMemberId(c), LocalClusterId(c));
}

TEST(TicksTest, TickIsOneHeartbeat) {
  ServerConfig c = ParseOk({});
  EXPECT_EQ(TickIntervalMs(c), 100);
  EXPECT_EQ(HeartbeatTicks(c), 1);
  EXPECT_EQ(ElectionTicks(c), 10);
  ServerConfig d = ParseOk({"--heartbeat-interval=30", "--election-timeout=170"});
  EXPECT_EQ(TickIntervalMs(d), 30);
  EXPECT_EQ(ElectionTicks(d), 5);  // rounded down, never below 5
}

}  // namespace
}  // namespace conclave::server
