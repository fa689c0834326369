// Parsing happens in three passes: collect the command line (syntax errors,
// unknown and repeated flags), resolve each flag from the command line or
// the environment and check its own value, then check the values against
// each other. Every error names the flag and, when the value came from the
// environment, the variable.
#include "server/config.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <set>
#include <string_view>

namespace conclave::server {
namespace {

// Where a value came from: "--name" or "--name (from ETCD_NAME)".
struct Given {
  std::string value;
  std::string label;
};

Status Bad(const std::string& label, std::string_view what) {
  return Status::InvalidArgument(fmt::format("{}: {}", label, what));
}

Result<int64_t> ParseInt(const std::string& label, const std::string& text) {
  int64_t value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec == std::errc::invalid_argument || ptr != end) {
    return Bad(label, fmt::format("\"{}\" is not a number", text));
  }
  if (ec == std::errc::result_out_of_range) return Bad(label, fmt::format("{} is too large", text));
  return value;
}

Result<int64_t> ParseIntInRange(const std::string& label, const std::string& text, int64_t min,
                                int64_t max) {
  ASSIGN_OR_RETURN(int64_t value, ParseInt(label, text));
  if (value < min || value > max) {
    return Bad(label, fmt::format("{} is out of range [{}, {}]", value, min, max));
  }
  return value;
}

std::vector<std::string> Split(const std::string& text, char sep) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    size_t at = text.find(sep, start);
    parts.push_back(text.substr(start, at == std::string::npos ? std::string::npos : at - start));
    if (at == std::string::npos) return parts;
    start = at + 1;
  }
}

// Accepts http(s)://host:port with an optional trailing "/"; returns the URL
// without it.
Result<std::string> ParseUrl(const std::string& label, const std::string& url) {
  size_t sep = url.find("://");
  if (url.empty() || sep == std::string::npos) {
    return Bad(label, fmt::format("\"{}\" is not a URL (want http://host:port)", url));
  }
  std::string scheme = url.substr(0, sep);
  std::transform(scheme.begin(), scheme.end(), scheme.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  if (scheme == "unix" || scheme == "unixs") {
    return Bad(label, fmt::format("\"{}\": unix sockets are not supported", url));
  }
  if (scheme != "http" && scheme != "https") {
    return Bad(label, fmt::format("\"{}\": the scheme must be http or https", url));
  }
  std::string rest = url.substr(sep + 3);
  if (!rest.empty() && rest.back() == '/') rest.pop_back();
  if (rest.find_first_of("/?#@") != std::string::npos) {
    return Bad(label, fmt::format("\"{}\": want scheme://host:port, without path or user", url));
  }
  size_t colon = rest.rfind(':');
  bool bracketed = !rest.empty() && rest.front() == '[';
  if (colon == std::string::npos || (bracketed && (colon == 0 || rest[colon - 1] != ']'))) {
    return Bad(label, fmt::format("\"{}\" has no port", url));
  }
  std::string host = rest.substr(0, colon);
  if (host.empty() || host == "[]" || (!bracketed && host.find(':') != std::string::npos)) {
    return Bad(label, fmt::format("\"{}\" has no valid host", url));
  }
  std::string port = rest.substr(colon + 1);
  int64_t port_number = 0;
  auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), port_number);
  if (port.empty() || ec != std::errc() || ptr != port.data() + port.size() || port_number < 1 ||
      port_number > 65535) {
    return Bad(label, fmt::format("\"{}\": port must be a number in [1, 65535]", url));
  }
  return url.substr(0, sep + 3 + rest.size());
}

Result<std::vector<std::string>> ParseUrls(const std::string& label, const std::string& text,
                                           bool allow_empty) {
  std::vector<std::string> urls;
  if (text.empty()) {
    if (allow_empty) return urls;
    return Bad(label, "needs at least one URL");
  }
  for (const std::string& part : Split(text, ',')) {
    ASSIGN_OR_RETURN(std::string url, ParseUrl(label, part));
    if (std::find(urls.begin(), urls.end(), url) != urls.end()) {
      return Bad(label, fmt::format("\"{}\" is given twice", url));
    }
    urls.push_back(std::move(url));
  }
  return urls;
}

Result<std::map<std::string, std::vector<std::string>>> ParseInitialCluster(
    const std::string& label, const std::string& text) {
  std::map<std::string, std::vector<std::string>> members;
  std::set<std::string> seen_urls;
  if (text.empty()) return Bad(label, "needs at least one name=url");
  for (const std::string& part : Split(text, ',')) {
    size_t eq = part.find('=');
    if (eq == std::string::npos || eq == 0) {
      return Bad(label, fmt::format("\"{}\" is not name=url", part));
    }
    ASSIGN_OR_RETURN(std::string url, ParseUrl(label, part.substr(eq + 1)));
    if (!seen_urls.insert(url).second) {
      return Bad(label, fmt::format("\"{}\" is given twice", url));
    }
    members[part.substr(0, eq)].push_back(std::move(url));
  }
  return members;
}

constexpr int64_t kMaxRetentionMs = int64_t{100} * 365 * 24 * 3'600'000;  // a century

// Go-style durations made of integer parts ("1h30m", "90s", "500ms"); a bare
// integer is a number of hours, as in etcd's periodic retention.
Result<std::chrono::milliseconds> ParseRetentionPeriod(const std::string& label,
                                                       const std::string& text) {
  using std::chrono::milliseconds;
  if (!text.empty() && std::all_of(text.begin(), text.end(),
                                   [](unsigned char ch) { return std::isdigit(ch) != 0; })) {
    ASSIGN_OR_RETURN(int64_t hours, ParseIntInRange(label, text, 0, kMaxRetentionMs / 3'600'000));
    return milliseconds(hours * 3'600'000);
  }
  int64_t total_ms = 0;
  size_t i = 0;
  if (text.empty()) return Bad(label, "is empty");
  while (i < text.size()) {
    size_t digits_end = i;
    while (digits_end < text.size() && std::isdigit(static_cast<unsigned char>(text[digits_end]))) {
      ++digits_end;
    }
    size_t unit_end = digits_end;
    while (unit_end < text.size() && std::isalpha(static_cast<unsigned char>(text[unit_end]))) {
      ++unit_end;
    }
    std::string unit = text.substr(digits_end, unit_end - digits_end);
    int64_t scale = unit == "h"    ? 3'600'000
                    : unit == "m"  ? 60'000
                    : unit == "s"  ? 1'000
                    : unit == "ms" ? 1
                                   : 0;
    if (digits_end == i || scale == 0 || digits_end - i > 9) {
      return Bad(label, fmt::format("\"{}\" is not a duration such as 1h, 30m or 90s", text));
    }
    total_ms += std::stoll(text.substr(i, digits_end - i)) * scale;
    if (total_ms > kMaxRetentionMs) return Bad(label, fmt::format("\"{}\" is too long", text));
    i = unit_end;
  }
  return milliseconds(total_ms);
}

// ---- one setter per flag -----------------------------------------------------

using Setter = Status (*)(ServerConfig&, const Given&);

struct Flag {
  std::string_view name;
  Setter set;
};

Status SetName(ServerConfig& c, const Given& g) {
  if (g.value.empty()) return Bad(g.label, "must not be empty");
  if (g.value.find_first_of("=,") != std::string::npos) {
    return Bad(g.label, "must not contain '=' or ','");
  }
  c.name = g.value;
  return Status::Ok();
}

Status SetDataDir(ServerConfig& c, const Given& g) {
  if (g.value.empty()) return Bad(g.label, "must not be empty");
  c.data_dir = g.value;
  return Status::Ok();
}

template <std::vector<std::string> ServerConfig::*field, bool allow_empty = false>
Status SetUrls(ServerConfig& c, const Given& g) {
  ASSIGN_OR_RETURN(c.*field, ParseUrls(g.label, g.value, allow_empty));
  return Status::Ok();
}

Status SetInitialCluster(ServerConfig& c, const Given& g) {
  ASSIGN_OR_RETURN(c.initial_cluster, ParseInitialCluster(g.label, g.value));
  return Status::Ok();
}

Status SetInitialClusterState(ServerConfig& c, const Given& g) {
  if (g.value == "new") {
    c.initial_cluster_state = ClusterState::kNew;
  } else if (g.value == "existing") {
    c.initial_cluster_state = ClusterState::kExisting;
  } else {
    return Bad(g.label, fmt::format("\"{}\" is not new or existing", g.value));
  }
  return Status::Ok();
}

Status SetInitialClusterToken(ServerConfig& c, const Given& g) {
  c.initial_cluster_token = g.value;
  return Status::Ok();
}

Status SetHeartbeatInterval(ServerConfig& c, const Given& g) {
  ASSIGN_OR_RETURN(c.heartbeat_interval_ms,
                   ParseIntInRange(g.label, g.value, 1, kMaxElectionTimeoutMs / kMinElectionTicks));
  return Status::Ok();
}

Status SetElectionTimeout(ServerConfig& c, const Given& g) {
  ASSIGN_OR_RETURN(c.election_timeout_ms,
                   ParseIntInRange(g.label, g.value, 1, kMaxElectionTimeoutMs));
  return Status::Ok();
}

Status SetSnapshotCount(ServerConfig& c, const Given& g) {
  ASSIGN_OR_RETURN(int64_t count, ParseIntInRange(g.label, g.value, 1, INT64_MAX));
  c.snapshot_count = static_cast<uint64_t>(count);
  return Status::Ok();
}

Status SetQuotaBackendBytes(ServerConfig& c, const Given& g) {
  ASSIGN_OR_RETURN(int64_t bytes, ParseIntInRange(g.label, g.value, 0, kMaxQuotaBackendBytes));
  c.quota_backend_bytes = bytes == 0 ? ServerConfig{}.quota_backend_bytes : bytes;
  return Status::Ok();
}

Status SetMaxRequestBytes(ServerConfig& c, const Given& g) {
  ASSIGN_OR_RETURN(c.max_request_bytes, ParseIntInRange(g.label, g.value, 1, kMaxRequestBytesMax));
  return Status::Ok();
}

Status SetMaxTxnOps(ServerConfig& c, const Given& g) {
  ASSIGN_OR_RETURN(c.max_txn_ops, ParseIntInRange(g.label, g.value, 1, kMaxTxnOpsMax));
  return Status::Ok();
}

Status SetInitialRangeCount(ServerConfig& c, const Given& g) {
  ASSIGN_OR_RETURN(c.initial_range_count,
                   ParseIntInRange(g.label, g.value, 0, kMaxInitialRangeCount));
  return Status::Ok();
}

template <int64_t ServerConfig::*field, int64_t min, int64_t max>
Status SetIntInRange(ServerConfig& c, const Given& g) {
  ASSIGN_OR_RETURN(c.*field, ParseIntInRange(g.label, g.value, min, max));
  return Status::Ok();
}

Status SetAutoCompactionMode(ServerConfig& c, const Given& g) {
  if (g.value == "periodic") {
    c.auto_compaction_mode = AutoCompactionMode::kPeriodic;
  } else if (g.value == "revision") {
    c.auto_compaction_mode = AutoCompactionMode::kRevision;
  } else {
    return Bad(g.label, fmt::format("\"{}\" is not periodic or revision", g.value));
  }
  return Status::Ok();
}

Status SetRangeLeaderBalance(ServerConfig& c, const Given& g) {
  if (g.value == "load") {
    c.range_leaders_by_load = true;
  } else if (g.value == "count") {
    c.range_leaders_by_load = false;
  } else {
    return Bad(g.label, fmt::format("\"{}\" is not load or count", g.value));
  }
  return Status::Ok();
}

// Checked once the mode is known (see CheckRetention).
Status SetAutoCompactionRetention(ServerConfig& c, const Given& g) {
  c.auto_compaction_retention = g.value;
  return Status::Ok();
}

Status SetLogLevel(ServerConfig& c, const Given& g) {
  static constexpr std::string_view kLevels[] = {"debug", "info",  "warn",
                                                 "error", "panic", "fatal"};
  if (std::find(std::begin(kLevels), std::end(kLevels), g.value) == std::end(kLevels)) {
    return Bad(g.label,
               fmt::format("\"{}\" is not debug, info, warn, error, panic or fatal", g.value));
  }
  c.log_level = g.value;
  return Status::Ok();
}

Status SetTestBug(ServerConfig& c, const Given& g) {
  c.test_bugs.clear();
  if (g.value == "none") return Status::Ok();
  for (std::string_view name : Split(g.value, ',')) {
    if (name == "local-reads") {
      c.test_bugs.insert(TestBug::kLocalReads);
    } else if (name == "scan-skips-boundary") {
      c.test_bugs.insert(TestBug::kScanSkipsBoundary);
    } else {
      return Bad(g.label,
                 fmt::format("\"{}\" is not a planted bug (want none, or a comma-separated "
                             "list of local-reads and scan-skips-boundary)",
                             name));
    }
  }
  return Status::Ok();
}

// key=value pairs, comma-separated; keys unique, both of letters, digits,
// '-', '_' and '.'.
Status SetLabels(ServerConfig& c, const Given& g) {
  c.labels.clear();
  if (g.value.empty()) return Status::Ok();
  auto word = [](std::string_view w) {
    return !w.empty() && std::all_of(w.begin(), w.end(), [](char ch) {
      return std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_' || ch == '.';
    });
  };
  for (std::string_view label : Split(g.value, ',')) {
    const size_t eq = label.find('=');
    const std::string_view key = label.substr(0, eq);
    const std::string_view value = eq == std::string_view::npos ? "" : label.substr(eq + 1);
    if (eq == std::string_view::npos || !word(key) || !word(value)) {
      return Bad(g.label, fmt::format("\"{}\" is not key=value (letters, digits, '-', '_' and "
                                      "'.'; e.g. zone=eu-1,rack=r7)",
                                      label));
    }
    if (std::any_of(c.labels.begin(), c.labels.end(),
                    [&](const auto& kv) { return kv.first == key; })) {
      return Bad(g.label, fmt::format("label \"{}\" is given twice", key));
    }
    c.labels.emplace_back(key, value);
  }
  return Status::Ok();
}

// In this order: --auto-compaction-mode before the retention it qualifies.
constexpr Flag kFlags[] = {
    {"name", SetName},
    {"data-dir", SetDataDir},
    {"listen-client-urls", SetUrls<&ServerConfig::listen_client_urls>},
    {"advertise-client-urls", SetUrls<&ServerConfig::advertise_client_urls>},
    {"listen-peer-urls", SetUrls<&ServerConfig::listen_peer_urls>},
    {"initial-advertise-peer-urls", SetUrls<&ServerConfig::initial_advertise_peer_urls>},
    {"listen-metrics-urls", SetUrls<&ServerConfig::listen_metrics_urls, true>},
    {"initial-cluster", SetInitialCluster},
    {"initial-cluster-state", SetInitialClusterState},
    {"initial-cluster-token", SetInitialClusterToken},
    {"heartbeat-interval", SetHeartbeatInterval},
    {"election-timeout", SetElectionTimeout},
    {"snapshot-count", SetSnapshotCount},
    {"quota-backend-bytes", SetQuotaBackendBytes},
    {"max-request-bytes", SetMaxRequestBytes},
    {"max-txn-ops", SetMaxTxnOps},
    {"auto-compaction-mode", SetAutoCompactionMode},
    {"auto-compaction-retention", SetAutoCompactionRetention},
    {"log-level", SetLogLevel},
    {"initial-range-count", SetInitialRangeCount},
    {"range-split-bytes", SetIntInRange<&ServerConfig::range_split_bytes, 0, kMaxRangeSplitBytes>},
    {"range-split-qps", SetIntInRange<&ServerConfig::range_split_qps, 0, kMaxRangeSplitQps>},
    {"snapshot-send-bytes-per-second",
     SetIntInRange<&ServerConfig::snapshot_send_bytes_per_second, 0, int64_t{1} << 40>},
    {"range-merge-bytes", SetIntInRange<&ServerConfig::range_merge_bytes, 0, kMaxRangeSplitBytes>},
    {"range-replicas", SetIntInRange<&ServerConfig::range_replicas, 1, 7>},
    {"labels", SetLabels},
    {"range-replica-down-time",
     SetIntInRange<&ServerConfig::range_replica_down_time_s, 0, 7 * 24 * 3600>},
    {"range-placement-interval", SetIntInRange<&ServerConfig::range_placement_interval_s, 0, 3600>},
    {"range-leader-balance", SetRangeLeaderBalance},
    {"range-load-window",
     SetIntInRange<&ServerConfig::range_load_window_s, 1, kMaxRangeLoadWindowS>},
    {"unsafe-test-bug", SetTestBug},
};

bool IsFlag(std::string_view name) {
  return std::any_of(std::begin(kFlags), std::end(kFlags),
                     [&](const Flag& f) { return f.name == name; });
}

std::string EnvName(std::string_view prefix, std::string_view flag) {
  std::string name(prefix);
  for (char c : flag)
    name.push_back(c == '-' ? '_' : static_cast<char>(std::toupper(c)));
  return name;
}

// Pass 1: the command line, as flag name -> value.
Result<std::map<std::string, std::string>> CollectArgs(const std::vector<std::string>& args) {
  std::map<std::string, std::string> given;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg.size() < 2 || arg[0] != '-' || arg == "--") {
      return Status::InvalidArgument(fmt::format("unexpected argument \"{}\"", arg));
    }
    std::string body = arg.substr(arg[1] == '-' ? 2 : 1);
    size_t eq = body.find('=');
    std::string name = body.substr(0, eq);
    if (!IsFlag(name)) return Status::InvalidArgument(fmt::format("unknown flag --{}", name));
    std::string value;
    if (eq != std::string::npos) {
      value = body.substr(eq + 1);
    } else if (i + 1 < args.size() && !args[i + 1].starts_with("--")) {
      value = args[++i];
    } else {
      return Status::InvalidArgument(fmt::format("--{}: needs a value", name));
    }
    if (!given.emplace(name, std::move(value)).second) {
      return Status::InvalidArgument(fmt::format("--{}: given more than once", name));
    }
  }
  return given;
}

// Pass 2 helper: the value for `flag`, if any, from the command line, then
// CONCLAVE_*, then ETCD_*.
bool Resolve(std::string_view flag, const std::map<std::string, std::string>& args,
             const std::map<std::string, std::string>& env, Given* out) {
  std::string dashed = fmt::format("--{}", flag);
  if (auto it = args.find(std::string(flag)); it != args.end()) {
    *out = Given{it->second, dashed};
    return true;
  }
  for (std::string_view prefix : {"CONCLAVE_", "ETCD_"}) {
    std::string var = EnvName(prefix, flag);
    if (auto it = env.find(var); it != env.end()) {
      *out = Given{it->second, fmt::format("{} (from {})", dashed, var)};
      return true;
    }
  }
  return false;
}

Status CheckRetention(ServerConfig& c, const std::string& label) {
  if (c.auto_compaction_mode == AutoCompactionMode::kPeriodic) {
    ASSIGN_OR_RETURN(c.auto_compaction_period,
                     ParseRetentionPeriod(label, c.auto_compaction_retention));
    return Status::Ok();
  }
  ASSIGN_OR_RETURN(c.auto_compaction_revisions,
                   ParseIntInRange(label, c.auto_compaction_retention, 0, INT64_MAX));
  return Status::Ok();
}

std::vector<std::string> Sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

std::string Join(const std::vector<std::string>& v) {
  return fmt::format("{}", fmt::join(v, ","));
}

// Pass 3: values against each other.
Status CheckTogether(const ServerConfig& c, const std::set<std::string>& set_flags) {
  if (c.election_timeout_ms < kMinElectionTicks * c.heartbeat_interval_ms) {
    return Status::InvalidArgument(fmt::format(
        "--election-timeout: {} ms must be at least {} times --heartbeat-interval ({} ms)",
        c.election_timeout_ms, kMinElectionTicks, c.heartbeat_interval_ms));
  }
  if (set_flags.count("listen-client-urls") && !set_flags.count("advertise-client-urls")) {
    return Status::InvalidArgument(
        "--advertise-client-urls: required when --listen-client-urls is set explicitly");
  }
  auto self = c.initial_cluster.find(c.name);
  if (self == c.initial_cluster.end()) {
    if (c.initial_cluster_state == ClusterState::kNew) {
      return Status::InvalidArgument(fmt::format(
          "--initial-cluster: has no member named \"{}\" (--name) to start a new cluster with",
          c.name));
    }
    return Status::Ok();
  }
  if (Sorted(self->second) != Sorted(c.initial_advertise_peer_urls)) {
    return Status::InvalidArgument(
        fmt::format("--initial-advertise-peer-urls: {} does not match {}'s URLs in "
                    "--initial-cluster ({})",
                    Join(c.initial_advertise_peer_urls), c.name, Join(self->second)));
  }
  return Status::Ok();
}

constexpr uint64_t kFnvOffset = 14695981039346656037ull;
constexpr uint64_t kFnvPrime = 1099511628211ull;

uint64_t Fnv1a(uint64_t hash, std::string_view bytes) {
  for (unsigned char b : bytes) {
    hash ^= b;
    hash *= kFnvPrime;
  }
  return hash;
}

uint64_t NonZero(uint64_t id) {
  return id == 0 ? 1 : id;
}

}  // namespace

Result<ServerConfig> ParseServerConfig(const std::vector<std::string>& args,
                                       const std::map<std::string, std::string>& env) {
  ASSIGN_OR_RETURN(auto given_args, CollectArgs(args));
  ServerConfig config;
  std::set<std::string> set_flags;
  std::string retention_label = "--auto-compaction-retention";
  for (const Flag& flag : kFlags) {
    Given given;
    if (!Resolve(flag.name, given_args, env, &given)) continue;
    RETURN_IF_ERROR(flag.set(config, given));
    set_flags.insert(std::string(flag.name));
    if (flag.name == "auto-compaction-retention") retention_label = given.label;
  }
  if (!set_flags.count("data-dir")) config.data_dir = config.name + ".conclave";
  RETURN_IF_ERROR(CheckRetention(config, retention_label));
  RETURN_IF_ERROR(CheckTogether(config, set_flags));
  return config;
}

std::map<std::string, std::string> EnvironmentMap(const char* const* envp) {
  std::map<std::string, std::string> env;
  for (; envp != nullptr && *envp != nullptr; ++envp) {
    std::string_view entry(*envp);
    size_t eq = entry.find('=');
    if (eq == std::string_view::npos) continue;
    env.emplace(std::string(entry.substr(0, eq)), std::string(entry.substr(eq + 1)));
  }
  return env;
}

uint64_t MemberId(const std::vector<std::string>& peer_urls, const std::string& cluster_token) {
  uint64_t hash = kFnvOffset;
  for (const std::string& url : Sorted(peer_urls)) {
    hash = Fnv1a(hash, url);
    hash = Fnv1a(hash, "\n");
  }
  return NonZero(Fnv1a(hash, cluster_token));
}

uint64_t ClusterId(const std::map<std::string, std::vector<std::string>>& members,
                   const std::string& cluster_token) {
  std::vector<uint64_t> ids;
  for (const auto& [name, urls] : members)
    ids.push_back(MemberId(urls, cluster_token));
  std::sort(ids.begin(), ids.end());
  uint64_t hash = kFnvOffset;
  for (uint64_t id : ids) {
    char bytes[8];
    for (int i = 0; i < 8; ++i)
      bytes[i] = static_cast<char>(id >> (56 - 8 * i));
    hash = Fnv1a(hash, std::string_view(bytes, 8));
  }
  return NonZero(Fnv1a(hash, cluster_token));
}

uint64_t LocalMemberId(const ServerConfig& config) {
  return MemberId(config.initial_advertise_peer_urls, config.initial_cluster_token);
}

uint64_t LocalClusterId(const ServerConfig& config) {
  return ClusterId(config.initial_cluster, config.initial_cluster_token);
}

int64_t TickIntervalMs(const ServerConfig& config) {
  return config.heartbeat_interval_ms;
}
int64_t HeartbeatTicks(const ServerConfig&) {
  return 1;
}
int64_t ElectionTicks(const ServerConfig& config) {
  return config.election_timeout_ms / config.heartbeat_interval_ms;
}

}  // namespace conclave::server
