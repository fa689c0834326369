#include "cli/serve_command.h"

#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
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
#include "server/data_dir.h"
#include "server/http_status.h"
#include "server/membership.h"
#include "server/node.h"
#include "server/transport.h"
#include "storage/file_system.h"

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

struct Identified : server::Identity {
  std::vector<serverpb::MemberRecord> members;  // who to dial before any are recorded
};

// Which member of which cluster this is: what the data directory recorded;
// for a new cluster, what the flags say; for a member joining an existing
// cluster, what the cluster says (it was added with `member add`, which
// chose its id), found by this member's peer URLs.
Result<Identified> Identify(const server::ServerConfig& config) {
  Identified out;
  out.members = server::InitialMembers(config);
  ASSIGN_OR_RETURN(std::optional<server::Identity> saved, server::LoadIdentity(config.data_dir));
  if (saved) {
    static_cast<server::Identity&>(out) = *saved;
    return out;
  }
  auto fs = storage::NewPosixFileSystem();
  ASSIGN_OR_RETURN(bool has_log, fs->Exists(storage::JoinPath(config.data_dir, "wal")));
  if (config.initial_cluster_state == server::ClusterState::kNew || has_log) {
    out.member_id = server::LocalMemberId(config);
    out.cluster_id = server::LocalClusterId(config);
  } else {
    std::vector<std::string> targets;
    const auto& mine = config.initial_advertise_peer_urls;
    for (const serverpb::MemberRecord& m : out.members) {
      for (const std::string& u : m.peer_urls()) {
        if (std::find(mine.begin(), mine.end(), u) != mine.end()) continue;
        if (auto t = server::GrpcTarget(u); t.ok()) targets.push_back(*t);
      }
    }
    // Ask until a member answers with a membership that holds this member
    // (one that has not applied the `member add` yet may answer first).
    // Linearizably first; when no member can (no leader: the cluster may be
    // waiting for this member's vote, after losing another), from a member's
    // applied view: one that holds this member's peer URLs names its id.
    Result<serverpb::ClusterInfoResponse> info = Status::Unavailable("no answer");
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (out.member_id == 0 && std::chrono::steady_clock::now() < deadline) {
      info = server::FetchClusterInfo(targets, std::chrono::seconds(2));
      if (!info.ok()) info = server::FetchClusterInfo(targets, std::chrono::seconds(2), true);
      if (info.ok()) {
        for (const serverpb::MemberRecord& m : info->members()) {
          for (const std::string& u : m.peer_urls()) {
            if (std::find(mine.begin(), mine.end(), u) != mine.end()) out.member_id = m.id();
          }
        }
      }
      if (out.member_id == 0) std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
    if (!info.ok())
      return Status::Unavailable("joining: no member of --initial-cluster answered: " +
                                 info.status().message());
    if (out.member_id == 0) {
      return Status::NotFound(
          "joining: no member of the cluster has this member's peer URLs; add it with "
          "`member add` first");
    }
    out.cluster_id = info->cluster_id();
    out.members.assign(info->members().begin(), info->members().end());
    LOG_INFO("joining cluster {:x} as member {:x}", out.cluster_id, out.member_id);
  }
  RETURN_IF_ERROR(server::SaveIdentity(config.data_dir, out));
  return out;
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

  auto identity = Identify(config);
  if (!identity.ok()) return Fail(identity.status().message());
  const uint64_t member_id = identity->member_id;
  const uint64_t cluster_id = identity->cluster_id;
  api::ServiceOptions service_options;
  service_options.max_request_bytes = config.max_request_bytes;
  service_options.max_txn_ops = static_cast<size_t>(config.max_txn_ops);
  service_options.quota_backend_bytes = config.quota_backend_bytes;

  server::NodeOptions options;
  options.data_dir = config.data_dir;
  options.member_id = member_id;
  options.cluster_id = cluster_id;
  if (config.initial_cluster_state == server::ClusterState::kNew)
    options.initial_members = InitialMembers(config);
  options.tick_interval = std::chrono::milliseconds(server::TickIntervalMs(config));
  options.election_ticks = static_cast<int>(server::ElectionTicks(config));
  options.heartbeat_ticks = static_cast<int>(server::HeartbeatTicks(config));
  options.snapshot_count = config.snapshot_count;
  // Entries kept behind a compaction for followers that lag a little: etcd
  // keeps 5,000; a small --snapshot-count keeps proportionally fewer.
  options.snapshot_catchup_entries = std::min<uint64_t>(5'000, config.snapshot_count);
  // A lease must outlive an election (etcd: 1.5 election timeouts, rounded up).
  options.lease_min_ttl_seconds =
      std::max<int64_t>(1, (config.election_timeout_ms * 3 + 1999) / 2000);
  options.request_timeout = std::chrono::milliseconds(5000 + 2 * config.election_timeout_ms);
  options.test_bug_local_reads = config.test_bug == server::TestBug::kLocalReads;
  if (config.test_bug != server::TestBug::kNone)
    LOG_WARN("--unsafe-test-bug is set: this member is deliberately broken (tests only)");

  RealClock clock;
  auto node = server::Node::Open(options, clock);
  if (!node.ok()) return Fail("opening " + config.data_dir + ": " + node.status().ToString());
  // Peers: the recorded members once there are any; before that (a new
  // cluster, or a member joining that has not received its snapshot) the
  // ones the flags or the cluster told us about.
  auto recorded = (*node)->Members();
  if (!recorded.ok()) return Fail("reading members: " + recorded.status().ToString());
  const std::vector<serverpb::MemberRecord> flagged = identity->members;
  std::map<uint64_t, std::string> peers =
      server::PeerTargets(recorded->empty() ? flagged : *recorded, member_id, flagged);
  server::TransportOptions transport_options;
  // A forwarded membership change may wait for the previous one and then
  // for its own: give it two request timeouts.
  transport_options.membership_forward_timeout = 2 * options.request_timeout;
  // A dead peer connection is noticed within about one election timeout.
  transport_options.keepalive = std::chrono::milliseconds(config.election_timeout_ms);
  // Members that missed their own removal learn it from the others' refusal.
  transport_options.on_removed = [] {
    LOG_WARN("the other members refuse this member: it was removed from the cluster");
    kill(getpid(), SIGTERM);
  };
  server::Transport transport(node->get(), peers, transport_options);
  // Follow membership changes: dial new members, drop removed ones, and
  // stop once this member has been removed.
  std::atomic<bool> removed{false};
  (*node)->SetMembershipObserver([&, member_id] {
    auto members = (*node)->Members();
    if (members.ok() && !members->empty())
      transport.SetPeers(server::PeerTargets(*members, member_id, flagged));
    if ((*node)->IsRemoved(member_id) && !removed.exchange(true)) {
      LOG_WARN("this member has been permanently removed from the cluster; shutting down");
      kill(getpid(), SIGTERM);
    }
  });

  auto peer_server = StartGrpc(
      config.listen_peer_urls, 64 << 20,
      [&](grpc::ServerBuilder* b) {
        server::SetPeerServerArguments(b, transport_options.keepalive);
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
