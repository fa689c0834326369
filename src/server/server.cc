#include "server/server.h"

#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <utility>
#include <vector>

#include "api/api.h"
#include "base/clock.h"
#include "base/logging.h"
#include "mvcc/mvcc.h"
#include "server/data_dir.h"
#include "server/etcd_group.h"
#include "server/etcd_state_machine.h"
#include "server/host.h"
#include "server/http_status.h"
#include "server/membership.h"
#include "server/native_keyspace.h"
#include "server/transport.h"
#include "storage/storage.h"

namespace conclave::server {

namespace {

// The gRPC transport adds framing to a request; etcd allows this much on
// top of --max-request-bytes before the transport itself refuses.
constexpr int kGrpcOverheadBytes = 512 * 1024;

struct Identified : Identity {
  std::vector<serverpb::MemberRecord> members;  // who to dial before any are recorded
};

// Which member of which cluster this is: what the data directory recorded;
// for a new cluster, what the flags say; for a member joining an existing
// cluster, what the cluster says (it was added with `member add`, which
// chose its id), found by this member's peer URLs.
Result<Identified> Identify(const ServerConfig& config) {
  Identified out;
  out.members = InitialMembers(config);
  ASSIGN_OR_RETURN(std::optional<Identity> saved, LoadIdentity(config.data_dir));
  if (saved) {
    static_cast<Identity&>(out) = *saved;
    // The data directory decides, as etcd's does; the flags that would have
    // made another identity are ignored, and said to be. (The other
    // members refuse peer traffic from another cluster.)
    if (config.initial_cluster_state == ClusterState::kNew &&
        (saved->cluster_id != LocalClusterId(config) ||
         saved->member_id != LocalMemberId(config))) {
      LOG_WARN(
          "{} holds member {:x} of cluster {:x}; --initial-cluster, --initial-cluster-token and "
          "--initial-advertise-peer-urls describe member {:x} of cluster {:x} and are ignored "
          "(a data directory from another cluster, or flags changed since it was made?)",
          config.data_dir, saved->member_id, saved->cluster_id, LocalMemberId(config),
          LocalClusterId(config));
    }
    return out;
  }
  auto fs = storage::NewPosixFileSystem();
  ASSIGN_OR_RETURN(bool has_log, fs->Exists(storage::JoinPath(config.data_dir, "wal")));
  if (config.initial_cluster_state == ClusterState::kNew || has_log) {
    out.member_id = LocalMemberId(config);
    out.cluster_id = LocalClusterId(config);
  } else {
    std::vector<std::string> targets;
    const auto& mine = config.initial_advertise_peer_urls;
    for (const serverpb::MemberRecord& m : out.members) {
      for (const std::string& u : m.peer_urls()) {
        if (std::find(mine.begin(), mine.end(), u) != mine.end()) continue;
        if (auto t = GrpcTarget(u); t.ok()) targets.push_back(*t);
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
      info = FetchClusterInfo(targets, std::chrono::seconds(2));
      if (!info.ok()) info = FetchClusterInfo(targets, std::chrono::seconds(2), true);
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
  RETURN_IF_ERROR(SaveIdentity(config.data_dir, out));
  return out;
}

// Builds and starts a gRPC server on `urls` with the services `add` registers.
Result<std::unique_ptr<grpc::Server>> StartGrpc(
    const std::vector<std::string>& urls, int max_receive_bytes,
    const std::function<void(grpc::ServerBuilder*)>& add, const char* what) {
  grpc::ServerBuilder builder;
  // gRPC would share a port another process listens on (SO_REUSEPORT), and
  // clients would be spread over two servers without a word: refuse, as
  // any server must.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  std::vector<int> ports(urls.size(), 0);
  for (size_t i = 0; i < urls.size(); ++i) {
    ASSIGN_OR_RETURN(std::string target, GrpcTarget(urls[i]));
    builder.AddListeningPort(target, grpc::InsecureServerCredentials(), &ports[i]);
  }
  builder.SetMaxReceiveMessageSize(max_receive_bytes);
  builder.SetMaxSendMessageSize(64 << 20);
  add(&builder);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server != nullptr && std::find(ports.begin(), ports.end(), 0) == ports.end()) return server;
  if (server != nullptr) server->Shutdown();
  // gRPC says neither which address failed nor why: trying each does. With
  // no reason found, the first address gRPC left unbound is named.
  size_t failed = 0;
  while (server != nullptr && failed + 1 < urls.size() && ports[failed] != 0)
    ++failed;
  std::string why;
  for (size_t i = 0; i < urls.size() && why.empty(); ++i) {
    Result<std::string> target = GrpcTarget(urls[i]);
    why = ListenProblem(target.ok() ? *target : urls[i]);
    if (!why.empty()) failed = i;
  }
  return Status::InvalidArgument(
      fmt::format("{}: cannot listen on {}{}{}", what, urls[failed], why.empty() ? "" : ": ", why));
}

}  // namespace

struct Server::State {
  sigset_t signals;
  Identified identity;
  std::unique_ptr<Host> host;
  EtcdStateMachine* etcd_sm = nullptr;  // owned by its replica
  std::unique_ptr<EtcdGroup> etcd;
  std::unique_ptr<NativeKeyspace> native;
  std::unique_ptr<Transport> transport;
  std::unique_ptr<grpc::Server> peer_server;
  std::unique_ptr<api::EtcdServices> services;
  std::unique_ptr<grpc::Server> client_server;
  std::unique_ptr<HttpStatusServer> http;
  std::thread publisher;
  std::atomic<bool> stopping{false};
  std::atomic<bool> removed{false};
  bool stopped = false;
};

Server::Server(ServerConfig config) : config_(std::move(config)) {}

Server::~Server() {
  Stop();
}

Status Server::Start() {
  CHECK(!state_);
  state_ = std::make_unique<State>();
  State& st = *state_;
  // Signals are taken by sigwait in Wait, on this thread only.
  sigemptyset(&st.signals);
  sigaddset(&st.signals, SIGINT);
  sigaddset(&st.signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &st.signals, nullptr);

  ASSIGN_OR_RETURN(st.identity, Identify(config_));
  const uint64_t member_id = st.identity.member_id;
  const uint64_t cluster_id = st.identity.cluster_id;
  const auto request_timeout = std::chrono::milliseconds(5000 + 2 * config_.election_timeout_ms);

  HostOptions host_options;
  host_options.data_dir = config_.data_dir;
  host_options.node_id = member_id;
  host_options.tick_interval = std::chrono::milliseconds(TickIntervalMs(config_));
  host_options.liveness_ticks = static_cast<int>(ElectionTicks(config_));
  host_options.engine = mvcc::StoreRocksEngineOptions();
  auto host = Host::Open(host_options, HostEnv{.clock = &RealClock::Get()});
  if (!host.ok()) {
    return Status(host.status().code(),
                  "opening " + config_.data_dir + ": " + host.status().ToString());
  }
  st.host = std::move(*host);

  EtcdStateMachineOptions sm_options;
  if (config_.initial_cluster_state == ClusterState::kNew)
    sm_options.initial_members = InitialMembers(config_);
  // A lease must outlive an election (etcd: 1.5 election timeouts, rounded up).
  sm_options.lease_min_ttl_seconds =
      std::max<int64_t>(1, (config_.election_timeout_ms * 3 + 1999) / 2000);
  ASSIGN_OR_RETURN(
      std::unique_ptr<EtcdStateMachine> sm,
      EtcdStateMachine::Open(st.host->engine(), st.host->fs(), RealClock::Get(), sm_options));
  st.etcd_sm = sm.get();
  // A new cluster's first start: the etcd group bootstraps below, and so do
  // the native ranges.
  const bool fresh = sm->AppliedIndex() == 0 && !sm_options.initial_members.empty();

  ReplicaOptions replica_options;
  replica_options.group = kEtcdGroup;
  replica_options.replica_id = member_id;
  for (const serverpb::MemberRecord& m : sm_options.initial_members)
    replica_options.bootstrap_voters.push_back(m.id());
  replica_options.election_ticks = static_cast<int>(ElectionTicks(config_));
  replica_options.heartbeat_ticks = static_cast<int>(HeartbeatTicks(config_));
  replica_options.snapshot_count = config_.snapshot_count;
  // Entries kept behind a compaction for followers that lag a little: etcd
  // keeps 5,000; a small --snapshot-count keeps proportionally fewer.
  replica_options.snapshot_catchup_entries = std::min<uint64_t>(5'000, config_.snapshot_count);
  replica_options.request_timeout = request_timeout;
  replica_options.test_bug_local_reads = config_.test_bugs.contains(TestBug::kLocalReads);
  if (!config_.test_bugs.empty())
    LOG_WARN("--unsafe-test-bug is set: this member is deliberately broken (tests only)");
  ASSIGN_OR_RETURN(std::shared_ptr<Replica> replica,
                   st.host->AddReplica(replica_options, std::move(sm)));
  st.etcd = std::make_unique<EtcdGroup>(st.host.get(), replica, st.etcd_sm, cluster_id);
  for (const serverpb::MemberRecord& m : st.identity.members) {
    if (m.id() == member_id && m.is_learner()) st.etcd->SetJoinedAsLearner(true);
  }

  NativeKeyspaceOptions native_options;
  native_options.initial_ranges = config_.initial_range_count;
  for (const serverpb::MemberRecord& m : sm_options.initial_members)
    native_options.initial_members.push_back(m.id());
  native_options.replicas_per_range = static_cast<int>(config_.range_replicas);
  native_options.labels = config_.labels;
  native_options.replica = replica_options;
  native_options.replica.quiesce = true;
  native_options.replica.vote_at_once_at_term_one = true;
  native_options.replica.test_bug_local_reads = false;
  native_options.test_bug_scan_skips_boundary =
      config_.test_bugs.contains(TestBug::kScanSkipsBoundary);
  // A range's log is compacted sooner than the etcd group's: many ranges
  // share the node's memory.
  native_options.replica.snapshot_count = std::min<uint64_t>(config_.snapshot_count, 10'000);
  native_options.replica.snapshot_catchup_entries =
      std::min<uint64_t>(1'000, native_options.replica.snapshot_count);
  native_options.replica.log_bytes_max = 4ull << 20;
  native_options.split_bytes = static_cast<uint64_t>(config_.range_split_bytes);
  native_options.split_qps = static_cast<uint64_t>(config_.range_split_qps);
  native_options.merge_bytes = static_cast<uint64_t>(config_.range_merge_bytes);
  native_options.load_window = std::chrono::seconds(config_.range_load_window_s);
  native_options.snapshot_bytes_per_second =
      static_cast<uint64_t>(config_.snapshot_send_bytes_per_second);
  native_options.replica_down_time = std::chrono::seconds(config_.range_replica_down_time_s);
  native_options.placement_interval = std::chrono::seconds(config_.range_placement_interval_s);
  native_options.leaders_by_load = config_.range_leaders_by_load;
  // Several reports within the down time, so that one lost report does not
  // make a member down.
  if (config_.range_replica_down_time_s > 0) {
    native_options.status_interval =
        std::clamp<Duration>(native_options.replica_down_time / 5, std::chrono::milliseconds(200),
                             std::chrono::seconds(3));
  }
  native_options.members = [etcd = st.etcd.get()] {
    std::vector<uint64_t> out;
    if (Result<std::vector<serverpb::MemberRecord>> members = etcd->Members(); members.ok()) {
      for (const serverpb::MemberRecord& m : *members) {
        if (!m.is_learner()) out.push_back(m.id());
      }
    }
    return out;
  };
  native_options.removed = [etcd = st.etcd.get()](uint64_t node) { return etcd->IsRemoved(node); };
  native_options.node_known = [etcd = st.etcd.get()](uint64_t node) {
    Result<std::vector<serverpb::MemberRecord>> members = etcd->Members();
    return members.ok() &&
           std::any_of(members->begin(), members->end(), [&](const serverpb::MemberRecord& m) {
             return m.id() == node && !m.is_learner();
           });
  };
  ASSIGN_OR_RETURN(st.native,
                   NativeKeyspace::Open(st.host.get(), member_id, native_options, fresh));

  // Peers: the recorded members once there are any; before that (a new
  // cluster, or a member joining that has not received its snapshot) the
  // ones the flags or the cluster told us about.
  ASSIGN_OR_RETURN(std::vector<serverpb::MemberRecord> recorded, st.etcd->Members());
  const std::vector<serverpb::MemberRecord> flagged = st.identity.members;
  const std::map<uint64_t, std::string> peers =
      PeerTargets(recorded.empty() ? flagged : recorded, member_id, flagged);
  TransportOptions transport_options;
  // A forwarded membership change may wait for the previous one and then
  // for its own: give it two request timeouts.
  transport_options.membership_forward_timeout = 2 * request_timeout;
  // A dead peer connection is noticed within about one election timeout.
  transport_options.keepalive = std::chrono::milliseconds(config_.election_timeout_ms);
  transport_options.snapshot_bytes_per_second =
      static_cast<uint64_t>(config_.snapshot_send_bytes_per_second);
  // Members that missed their own removal learn it from the others' refusal.
  transport_options.on_removed = [] {
    LOG_WARN("the other members refuse this member: it was removed from the cluster");
    kill(getpid(), SIGTERM);
  };
  st.transport = std::make_unique<Transport>(st.host.get(), st.etcd.get(), cluster_id, peers,
                                             transport_options);
  st.etcd->SetLeaderCalls(st.transport.get());
  // Follow membership changes: dial new members, drop removed ones, and
  // stop once this member has been removed.
  State* state = &st;
  st.etcd_sm->SetMembershipObserver([state, member_id, flagged] {
    auto members = state->etcd->Members();
    if (members.ok() && !members->empty())
      state->transport->SetPeers(PeerTargets(*members, member_id, flagged));
    if (state->etcd->IsRemoved(member_id) && !state->removed.exchange(true)) {
      LOG_WARN("this member has been permanently removed from the cluster; shutting down");
      kill(getpid(), SIGTERM);
    }
  });

  api::ServiceOptions service_options;
  service_options.max_request_bytes = config_.max_request_bytes;
  service_options.max_txn_ops = static_cast<size_t>(config_.max_txn_ops);
  service_options.quota_backend_bytes = config_.quota_backend_bytes;
  st.services =
      std::make_unique<api::EtcdServices>(st.etcd.get(), st.native.get(), service_options);
  // Requests for native ranges held elsewhere go through the transport.
  st.native->SetForwarder(st.transport.get());

  ASSIGN_OR_RETURN(st.peer_server, StartGrpc(
                                       config_.listen_peer_urls, 64 << 20,
                                       [&](grpc::ServerBuilder* b) {
                                         SetPeerServerArguments(b, transport_options.keepalive);
                                         b->RegisterService(st.transport->peer_service());
                                         b->RegisterService(st.transport->member_service());
                                         st.services->RegisterPeer(b);
                                       },
                                       "--listen-peer-urls"));
  ASSIGN_OR_RETURN(
      st.client_server,
      StartGrpc(
          config_.listen_client_urls,
          static_cast<int>(config_.max_request_bytes) + kGrpcOverheadBytes,
          [&](grpc::ServerBuilder* b) { st.services->Register(b); }, "--listen-client-urls"));

  st.http = std::make_unique<HttpStatusServer>(st.etcd.get(), st.transport.get(), st.native.get());
  RETURN_IF_ERROR(st.http->Start(config_.listen_metrics_urls));

  st.transport->Start();
  st.host->Start(st.transport.get());
  st.native->StartSplitting();
  LOG_INFO("conclave member {} ({:x}) of cluster {:x} serving clients on {}", config_.name,
           member_id, cluster_id, fmt::join(config_.listen_client_urls, ","));

  // Publish how clients reach this member, through the log (as etcd does),
  // retrying until it is applied or the member stops.
  st.publisher = std::thread([state, member_id, config = config_] {
    serverpb::Command c;
    serverpb::MemberAttributes* a = c.mutable_member_attributes();
    a->set_id(member_id);
    a->set_name(config.name);
    for (const std::string& u : config.advertise_client_urls)
      a->add_client_urls(u);
    while (!state->stopping.load()) {
      auto r = state->etcd->Propose(c);
      if (r.ok() && r->status.ok()) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  });
  return Status::Ok();
}

void Server::Wait() {
  int sig = 0;
  sigwait(&state_->signals, &sig);
  LOG_INFO("received {}, shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
}

void Server::Stop() {
  if (!state_ || state_->stopped) return;
  State& st = *state_;
  st.stopped = true;
  st.stopping.store(true);
  if (st.client_server) {
    // Unary calls in flight get a moment to finish; watch, keep-alive and
    // observe streams never end by themselves and are cancelled when it is
    // over, so that a stop (and the restart after it) does not wait on them.
    st.client_server->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
  }
  if (st.http) st.http->Stop();
  // The splitter may wait on a range's log: stop it, let the host's stop
  // release it, then join it.
  if (st.native) st.native->Stop();
  if (st.host) st.host->Stop();
  if (st.native) st.native->Join();
  if (st.publisher.joinable()) st.publisher.join();
  if (st.peer_server) {
    st.peer_server->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
  }
  if (st.transport) st.transport->Stop();
  LOG_INFO("stopped");
}

}  // namespace conclave::server
