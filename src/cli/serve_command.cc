#include "cli/serve_command.h"

#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "api/services.h"
#include "base/clock.h"
#include "base/logging.h"
#include "server/config.h"
#include "server/http_status.h"
#include "server/node.h"
#include "server/transport.h"

extern char** environ;

namespace conclave::cli {

namespace {

// The gRPC transport adds framing to a request; etcd allows this much on
// top of --max-request-bytes before the transport itself refuses.
constexpr int kGrpcOverheadBytes = 512 * 1024;

int Fail(const std::string& what) {
  std::fprintf(stderr, "conclave serve: %s\n", what.c_str());
  return 2;
}

// Builds and starts a gRPC server on `urls` with `register_services`.
Result<std::unique_ptr<grpc::Server>> StartGrpc(
    const std::vector<std::string>& urls, int max_receive_bytes,
    const std::function<void(grpc::ServerBuilder*)>& add, const char* what) {
  grpc::ServerBuilder builder;
  std::vector<int> ports(urls.size(), 0);
  for (size_t i = 0; i < urls.size(); ++i) {
    ASSIGN_OR_RETURN(std::string target, server::GrpcTarget(urls[i]));
    builder.AddListeningPort(target, grpc::InsecureServerCredentials(), &ports[i]);
  }
  builder.SetMaxReceiveMessageSize(max_receive_bytes);
  builder.SetMaxSendMessageSize(64 << 20);
  add(&builder);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  for (size_t i = 0; i < urls.size(); ++i) {
    if (server == nullptr || ports[i] == 0) {
      return Status::InvalidArgument(fmt::format("{}: cannot listen on {}", what, urls[i]));
    }
  }
  return server;
}

int Serve(const std::vector<std::string>& args) {
  auto parsed = server::ParseServerConfig(args, server::EnvironmentMap(environ));
  if (!parsed.ok()) return Fail(parsed.status().message());
  const server::ServerConfig& config = *parsed;
  auto level = ParseLogLevel(config.log_level);
  if (level.ok()) InitLogging(*level);

  // Signals are taken by sigwait below, on this thread only.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  const uint64_t member_id = server::LocalMemberId(config);
  const uint64_t cluster_id = server::LocalClusterId(config);
  std::vector<uint64_t> voters;
  std::map<uint64_t, std::string> peers;
  api::ServiceOptions service_options;
  service_options.max_request_bytes = config.max_request_bytes;
  service_options.max_txn_ops = static_cast<size_t>(config.max_txn_ops);
  service_options.quota_backend_bytes = config.quota_backend_bytes;
  for (const auto& [name, urls] : config.initial_cluster) {
    const uint64_t id = server::MemberId(urls, config.initial_cluster_token);
    voters.push_back(id);
    api::MemberInfo info{id, name, urls};
    if (id != member_id) {
      auto target = server::GrpcTarget(urls.front());
      if (!target.ok()) return Fail("--initial-cluster: " + target.status().message());
      peers[id] = *target;
    }
    service_options.members.push_back(std::move(info));
  }

  server::NodeOptions options;
  options.data_dir = config.data_dir;
  options.member_id = member_id;
  options.cluster_id = cluster_id;
  if (config.initial_cluster_state == server::ClusterState::kNew) options.initial_voters = voters;
  options.tick_interval = std::chrono::milliseconds(server::TickIntervalMs(config));
  options.election_ticks = static_cast<int>(server::ElectionTicks(config));
  options.heartbeat_ticks = static_cast<int>(server::HeartbeatTicks(config));
  options.snapshot_count = config.snapshot_count;
  // Entries kept behind a compaction for followers that lag a little: etcd
  // keeps 5,000; a small --snapshot-count keeps proportionally fewer.
  options.snapshot_catchup_entries = std::min<uint64_t>(5'000, config.snapshot_count);
  // A lease must outlive an election (etcd: 1.5 election timeouts, rounded up).
  options.lease_min_ttl_seconds =
      std::max<int64_t>(2, (config.election_timeout_ms * 3 + 1999) / 2000);
  options.request_timeout = std::chrono::milliseconds(5000 + 2 * config.election_timeout_ms);

  RealClock clock;
  auto node = server::Node::Open(options, clock);
  if (!node.ok()) return Fail("opening " + config.data_dir + ": " + node.status().ToString());
  server::Transport transport(node->get(), peers);

  auto peer_server = StartGrpc(
      config.listen_peer_urls, 64 << 20,
      [&](grpc::ServerBuilder* b) {
        b->RegisterService(transport.peer_service());
        b->RegisterService(transport.member_service());
      },
      "--listen-peer-urls");
  if (!peer_server.ok()) return Fail(peer_server.status().message());

  api::EtcdServices services(node->get(), &transport, service_options);
  auto client_server = StartGrpc(
      config.listen_client_urls, static_cast<int>(config.max_request_bytes) + kGrpcOverheadBytes,
      [&](grpc::ServerBuilder* b) { services.Register(b); }, "--listen-client-urls");
  if (!client_server.ok()) return Fail(client_server.status().message());

  server::HttpStatusServer http(node->get(), &transport);
  if (Status s = http.Start(config.listen_metrics_urls); !s.ok()) return Fail(s.message());

  transport.Start();
  (*node)->Start(&transport);
  LOG_INFO("conclave member {} ({:x}) of cluster {:x} serving clients on {}", config.name,
           member_id, cluster_id, fmt::join(config.listen_client_urls, ","));

  // Publish how clients reach this member, through the log (as etcd does),
  // retrying until it is applied or the member stops.
  std::atomic<bool> stopping{false};
  std::thread publisher([&] {
    serverpb::Command c;
    serverpb::MemberAttributes* a = c.mutable_member_attributes();
    a->set_id(member_id);
    a->set_name(config.name);
    for (const std::string& u : config.advertise_client_urls)
      a->add_client_urls(u);
    while (!stopping.load()) {
      auto r = (*node)->Propose(c);
      if (r.ok() && r->status.ok()) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  });

  int sig = 0;
  sigwait(&signals, &sig);
  stopping.store(true);
  LOG_INFO("received {}, shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
  const auto deadline = std::chrono::system_clock::now() + std::chrono::seconds(2);
  (*client_server)->Shutdown(deadline);
  http.Stop();
  (*node)->Stop();
  publisher.join();
  (*peer_server)->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
  transport.Stop();
  LOG_INFO("stopped");
  return 0;
}

}  // namespace

std::function<int()> AddServeCommand(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand(
      "serve",
      "run a member; takes etcd's server flags (--name, --data-dir, --initial-cluster...)");
  cmd->prefix_command();
  return [cmd]() -> int {
    if (!cmd->parsed()) return -1;
    return Serve(cmd->remaining());
  };
}

}  // namespace conclave::cli
