#include "server/http_status.h"

#include <civetweb.h>
#include <fmt/format.h>
#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include <google/protobuf/util/json_util.h>

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <thread>
#include <utility>

#include "base/logging.h"
#include "server/ranges_page.h"

namespace conclave::server {

namespace {

prometheus::MetricFamily Family(std::string name, std::string help, prometheus::MetricType type,
                                double value) {
  prometheus::MetricFamily f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.type = type;
  prometheus::ClientMetric m;
  if (type == prometheus::MetricType::Counter) {
    m.counter.value = value;
  } else {
    m.gauge.value = value;
  }
  f.metric.push_back(std::move(m));
  return f;
}

int Reply(mg_connection* conn, int code, const char* type, std::string_view body) {
  mg_printf(conn,
            "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
            "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
            code, code == 200 ? "OK" : (code == 404 ? "Not Found" : "Service Unavailable"), type,
            body.size());
  mg_write(conn, body.data(), body.size());
  return code;
}

int HandleMetrics(mg_connection* conn, void* data) {
  auto* self = static_cast<HttpStatusServer*>(data);
  return Reply(conn, 200, "text/plain; version=0.0.4", self->MetricsText());
}

int HandleHealth(mg_connection* conn, void* data) {
  auto* self = static_cast<HttpStatusServer*>(data);
  const bool ok = self->Healthy();
  return Reply(conn, ok ? 200 : 503, "application/json",
               ok ? R"({"health":"true"})" : R"({"health":"false"})");
}

int HandleRangesPage(mg_connection* conn, void* data) {
  auto* self = static_cast<HttpStatusServer*>(data);
  if (!self->HasRanges()) return Reply(conn, 404, "text/plain", "no native keyspace here\n");
  return Reply(conn, 200, "text/html; charset=utf-8", kRangesPage);
}

int HandleRangesJson(mg_connection* conn, void* data) {
  auto* self = static_cast<HttpStatusServer*>(data);
  Result<std::string> json = self->RangesJson();
  if (!json.ok()) {
    const int code = json.status().code() == StatusCode::kNotFound ? 404 : 503;
    std::string why = json.status().ToString();
    std::replace_if(
        why.begin(), why.end(), [](char c) { return c == '"' || c == '\\'; }, '\'');
    return Reply(conn, code, "application/json", fmt::format(R"({{"error":"{}"}})", why));
  }
  return Reply(conn, 200, "application/json", *json);
}

}  // namespace

HttpStatusServer::HttpStatusServer(EtcdGroup* etcd, Transport* transport, NativeKeyspace* native)
    : etcd_(etcd), transport_(transport), native_(native) {}

HttpStatusServer::~HttpStatusServer() {
  Stop();
}

Status HttpStatusServer::Start(const std::vector<std::string>& urls) {
  if (urls.empty()) return Status::Ok();
  std::string ports;
  for (const std::string& url : urls) {
    ASSIGN_OR_RETURN(std::string target, GrpcTarget(url));
    if (!ports.empty()) ports += ",";
    ports += target;
    targets_.push_back(target);
  }
  // Four threads: a page's data may take a moment to gather, and /metrics
  // and /health answer meanwhile.
  const char* options[] = {"listening_ports", ports.c_str(), "num_threads", "4", nullptr};
  mg_callbacks callbacks{};
  ctx_ = mg_start(&callbacks, nullptr, options);
  if (ctx_ == nullptr) {
    std::string why;
    for (const std::string& url : urls) {
      Result<std::string> target = GrpcTarget(url);
      if (why.empty() && target.ok()) why = ListenProblem(*target);
    }
    return Status::InvalidArgument(fmt::format("--listen-metrics-urls: cannot listen on {}{}{}",
                                               ports, why.empty() ? "" : ": ", why));
  }
  mg_set_request_handler(ctx_, "/metrics$", HandleMetrics, this);
  mg_set_request_handler(ctx_, "/health$", HandleHealth, this);
  mg_set_request_handler(ctx_, "/ranges$", HandleRangesPage, this);
  mg_set_request_handler(ctx_, "/ranges.json$", HandleRangesJson, this);
  LOG_INFO("serving /metrics, /health and /ranges on {}", ports);
  return Status::Ok();
}

namespace {

// Opens and closes a connection to `target` (host:port), best effort.
void Poke(const std::string& target) {
  const size_t colon = target.rfind(':');
  if (colon == std::string::npos) return;
  std::string host = target.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  if (host.empty() || host == "0.0.0.0") host = "127.0.0.1";
  if (host == "::") host = "::1";
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), target.substr(colon + 1).c_str(), &hints, &found) != 0) return;
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    const int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    const bool connected = ::connect(fd, a->ai_addr, a->ai_addrlen) == 0;
    ::close(fd);
    if (connected) break;
  }
  freeaddrinfo(found);
}

}  // namespace

void HttpStatusServer::Stop() {
  if (ctx_ == nullptr) return;
  // The listener's thread notices the stop only between waits for a
  // connection (up to two seconds each): a connection of our own ends the
  // wait, so that a stopping member does not sit out the rest of it.
  std::atomic<bool> stopped{false};
  std::thread stopper([&] {
    mg_stop(ctx_);
    stopped.store(true);
  });
  for (int i = 0; i < 100 && !stopped.load(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (stopped.load()) break;
    for (const std::string& t : targets_)
      Poke(t);
  }
  stopper.join();
  ctx_ = nullptr;
}

bool HttpStatusServer::Healthy() const {
  return etcd_->leader() != 0;
}

Result<std::string> HttpStatusServer::RangesJson() {
  if (native_ == nullptr) return Status::NotFound("no native keyspace here");
  std::lock_guard<std::mutex> lock(view_mu_);
  const auto now = std::chrono::steady_clock::now();
  if (!view_json_.empty() && now - view_at_ < std::chrono::seconds(2)) return view_json_;
  // The first ranges only: the page is for people.
  constexpr size_t kMaxRanges = 1000;
  ASSIGN_OR_RETURN(serverpb::ClusterView view, native_->View(kMaxRanges));
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  std::string out;
  auto s = google::protobuf::util::MessageToJsonString(view, &out, options);
  if (!s.ok()) return Status::Internal(std::string(s.message()));
  view_json_ = out;
  view_at_ = now;
  return out;
}

std::string HttpStatusServer::MetricsText() const {
  using prometheus::MetricType;
  const ReplicaStats s = etcd_->stats();
  const HostStats h = etcd_->host_stats();
  std::vector<prometheus::MetricFamily> families;
  families.push_back(Family("conclave_server_has_leader", "1 if the member knows a leader",
                            MetricType::Gauge, s.leader != 0 ? 1 : 0));
  families.push_back(Family("conclave_server_is_leader", "1 if the member is the leader",
                            MetricType::Gauge, etcd_->is_leader() ? 1 : 0));
  families.push_back(Family("conclave_server_leader_changes_seen_total",
                            "Leader changes seen by this member", MetricType::Counter,
                            static_cast<double>(s.leader_changes)));
  families.push_back(
      Family("conclave_server_term", "Raft term", MetricType::Gauge, static_cast<double>(s.term)));
  families.push_back(Family("conclave_server_commit_index", "Raft commit index", MetricType::Gauge,
                            static_cast<double>(s.commit_index)));
  families.push_back(Family("conclave_server_applied_index", "Applied index", MetricType::Gauge,
                            static_cast<double>(s.applied_index)));
  families.push_back(Family("conclave_server_proposals_committed_total",
                            "Proposals from this member applied", MetricType::Counter,
                            static_cast<double>(s.proposals_committed)));
  families.push_back(Family("conclave_server_proposals_failed_total",
                            "Proposals from this member that failed", MetricType::Counter,
                            static_cast<double>(s.proposals_failed)));
  families.push_back(Family("conclave_server_snapshots_sent_total", "Snapshots sent",
                            MetricType::Counter, static_cast<double>(s.snapshots_sent)));
  families.push_back(Family("conclave_server_snapshots_installed_total",
                            "Snapshots received and installed", MetricType::Counter,
                            static_cast<double>(s.snapshots_installed)));
  families.push_back(Family("conclave_wal_syncs_total", "Write-ahead log syncs",
                            MetricType::Counter, static_cast<double>(h.wal_syncs)));
  families.push_back(Family("conclave_wal_bytes_total", "Write-ahead log bytes written",
                            MetricType::Counter, static_cast<double>(h.wal_bytes)));
  families.push_back(Family("conclave_host_log_writes_total",
                            "Log writes (one sync each) by the log writer", MetricType::Counter,
                            static_cast<double>(h.log_writes)));
  families.push_back(Family("conclave_host_log_write_groups_total",
                            "Groups carried by log writes, summed (divide by log writes for "
                            "groups per sync)",
                            MetricType::Counter, static_cast<double>(h.log_write_groups)));
  families.push_back(Family("conclave_host_log_write_groups_max",
                            "Most groups one log write carried", MetricType::Gauge,
                            static_cast<double>(h.log_write_groups_max)));
  families.push_back(Family("conclave_host_replicas", "Raft groups this member hosts",
                            MetricType::Gauge, static_cast<double>(h.replicas)));
  families.push_back(Family("conclave_host_replicas_quiesced",
                            "Hosted groups that are idle and do not tick", MetricType::Gauge,
                            static_cast<double>(h.replicas_quiesced)));
  families.push_back(Family("conclave_mvcc_revision", "Current store revision", MetricType::Gauge,
                            static_cast<double>(etcd_->CurrentRevision())));
  families.push_back(Family("conclave_mvcc_compact_revision", "Compacted revision",
                            MetricType::Gauge, static_cast<double>(etcd_->CompactRevision())));
  families.push_back(Family("conclave_network_messages_sent_total", "Raft messages sent to peers",
                            MetricType::Counter, static_cast<double>(transport_->messages_sent())));
  families.push_back(Family("conclave_snapshot_sent_bytes_total",
                            "Snapshot bytes sent to other members", MetricType::Counter,
                            static_cast<double>(transport_->snapshot_bytes_sent())));
  families.push_back(
      Family("conclave_snapshot_throttled_seconds_total",
             "Time snapshot sends waited for --snapshot-send-bytes-per-second", MetricType::Counter,
             std::chrono::duration<double>(transport_->snapshot_throttled()).count()));
  families.push_back(Family("conclave_network_messages_dropped_total",
                            "Raft messages dropped (peer unreachable or queue full)",
                            MetricType::Counter,
                            static_cast<double>(transport_->messages_dropped())));
  if (native_ != nullptr) {
    uint64_t bytes = 0;
    const std::vector<NativeKeyspace::Range> ranges = native_->All();
    for (const NativeKeyspace::Range& r : ranges)
      bytes += r.sm->DataBytes();
    const NativeKeyspace::SplitStats splits = native_->split_stats();
    families.push_back(Family("conclave_native_ranges",
                              "Native ranges this member holds a replica of", MetricType::Gauge,
                              static_cast<double>(ranges.size())));
    families.push_back(Family("conclave_native_data_bytes",
                              "Bytes of the versions in the native ranges held here",
                              MetricType::Gauge, static_cast<double>(bytes)));
    families.push_back(Family("conclave_native_splits_by_size_total",
                              "Ranges this member split because they grew too large",
                              MetricType::Counter, static_cast<double>(splits.by_size)));
    families.push_back(Family("conclave_native_splits_by_load_total",
                              "Ranges this member split because they served too many requests",
                              MetricType::Counter, static_cast<double>(splits.by_load)));
    families.push_back(Family("conclave_native_split_failures_total",
                              "Automatic splits that did not happen (the range changed first)",
                              MetricType::Counter, static_cast<double>(splits.failed)));
    families.push_back(Family("conclave_native_replicas_moved_total",
                              "Range replicas moved between nodes by moves this member coordinated",
                              MetricType::Counter, static_cast<double>(splits.replicas_moved)));
    families.push_back(Family("conclave_native_replicas_removed_total",
                              "Range replicas removed from this member (its copies deleted)",
                              MetricType::Counter, static_cast<double>(splits.replicas_removed)));
    families.push_back(Family("conclave_native_forwarded_total",
                              "Native requests (or parts of scans and range deletes) this member "
                              "sent on to a member holding the range",
                              MetricType::Counter, static_cast<double>(splits.forwarded)));
    families.push_back(Family("conclave_native_replicas_rereplicated_total",
                              "Replicas the placement driver here re-created off down or "
                              "removed members",
                              MetricType::Counter, static_cast<double>(splits.rereplicated)));
    families.push_back(Family("conclave_native_replicas_spread_total",
                              "Replicas the placement driver here moved farther from their "
                              "range's others (by the members' labels)",
                              MetricType::Counter, static_cast<double>(splits.spread)));
    families.push_back(Family("conclave_native_replicas_rebalanced_total",
                              "Replicas the placement driver here moved to even out the members",
                              MetricType::Counter, static_cast<double>(splits.rebalanced)));
    families.push_back(Family("conclave_native_leaders_moved_total",
                              "Range leaderships this member handed to a member leading fewer "
                              "ranges or serving fewer requests",
                              MetricType::Counter, static_cast<double>(splits.leaders_moved)));
    families.push_back(Family("conclave_native_leaders_moved_by_load_total",
                              "Of those, leaderships handed over to even out the requests served",
                              MetricType::Counter,
                              static_cast<double>(splits.leaders_moved_by_load)));
    families.push_back(Family("conclave_native_replicas_drained_total",
                              "Replicas the placement driver here moved or removed off draining "
                              "members",
                              MetricType::Counter, static_cast<double>(splits.drained)));
    families.push_back(Family("conclave_native_ranges_merged_total",
                              "Range merges this member coordinated", MetricType::Counter,
                              static_cast<double>(splits.merged)));
    families.push_back(Family("conclave_native_merges_failed_total",
                              "Range merges this member gave up and called off",
                              MetricType::Counter, static_cast<double>(splits.merges_failed)));
  }
  return prometheus::TextSerializer().Serialize(families);
}

}  // namespace conclave::server
