#include "server/transport.h"

#include <fmt/format.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <utility>

#include "base/assert.h"
#include "base/logging.h"
#include "base/thread.h"
#include "mvcc/mvcc.h"
#include "server/membership.h"
#include "server/raft_codec.h"

namespace conclave::server {

namespace {

grpc::Status ToGrpc(const Status& s) {
  if (s.ok()) return grpc::Status::OK;
  const int code = static_cast<int>(s.code());
  return grpc::Status(static_cast<grpc::StatusCode>(code <= 16 ? code : grpc::INTERNAL),
                      s.message());
}

}  // namespace

Status FromGrpc(const grpc::Status& s) {
  if (s.ok()) return Status::Ok();
  return Status(static_cast<StatusCode>(s.error_code()), s.error_message());
}

Result<std::string> GrpcTarget(const std::string& url) {
  std::string rest = url;
  if (rest.starts_with("https://") || rest.starts_with("unixs://")) {
    return Status::InvalidArgument("TLS URLs are not supported yet: " + url);
  }
  if (rest.starts_with("http://")) rest = rest.substr(7);
  while (!rest.empty() && rest.back() == '/')
    rest.pop_back();
  const size_t colon = rest.rfind(':');
  if (rest.empty() || colon == std::string::npos || colon + 1 == rest.size() ||
      rest.find('/') != std::string::npos) {
    return Status::InvalidArgument("not a host:port URL: " + url);
  }
  return rest;
}

std::string ListenProblem(const std::string& target) {
  const size_t colon = target.rfind(':');
  if (colon == std::string::npos) return "not a host:port address";
  std::string host = target.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  const std::string port = target.substr(colon + 1);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  const int gai = getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &found);
  if (gai != 0) return fmt::format("lookup {}: {}", host, gai_strerror(gai));
  std::string problem;
  for (addrinfo* a = found; a != nullptr && problem.empty(); a = a->ai_next) {
    const int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      // A family this host does not have (IPv6 off, say) is not the problem.
      if (errno != EAFNOSUPPORT) problem = fmt::format("socket: {}", std::strerror(errno));
      continue;
    }
    const int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, a->ai_addr, a->ai_addrlen) != 0) {
      problem = fmt::format("bind: {}", std::strerror(errno));
    } else if (listen(fd, 1) != 0) {
      problem = fmt::format("listen: {}", std::strerror(errno));
    }
    close(fd);
  }
  freeaddrinfo(found);
  // As Go's net package words them (what etcd prints): lower case.
  std::transform(problem.begin(), problem.end(), problem.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  return problem;
}

// ---- per-peer sender ----

struct Transport::Peer {
  uint64_t id = 0;
  std::string target;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<raftpb::Peer::Stub> stub;
  std::atomic<bool> retired{false};  // removed from the cluster (or re-addressed)
  std::atomic<bool> exited{false};   // its connect thread has returned
  std::mutex mu;
  std::condition_variable cv;
  std::deque<raft::Message> queue;     // guarded by mu
  bool ping = false;                   // guarded by mu: an empty batch is due
  std::shared_ptr<PeerStream> stream;  // guarded by mu: the open stream, if any
  bool writing = false;                // guarded by mu: a batch is being written on it
  int streams_alive = 0;               // guarded by mu: opened and not yet destroyed
  // guarded by mu: how the last stream ended, for the connect thread.
  bool stream_ended = false;
  grpc::Status last_status;
  std::chrono::steady_clock::time_point last_opened;
  std::thread thread;  // opens streams (lazily, with backoff)
};

// One Peer.Stream on gRPC's callback API. Writes are started by whoever finds
// the stream idle with messages queued (the driver, in Send) and continued
// from OnWriteDone, so a message reaches the socket without a thread hand-off.
// A hold keeps the call from finishing while a write may still start: it is
// released, once, when the stream is closing and no write is in flight.
class Transport::PeerStream final
    : public grpc::ClientBidiReactor<raftpb::MessageBatch, raftpb::StreamAck> {
 public:
  PeerStream(Transport* transport, Peer* peer) : transport_(transport), peer_(peer) {}

  // Binds the call and queues the first read; StartCall starts it.
  void Bind(std::shared_ptr<PeerStream> self) {
    self_ = std::move(self);
    peer_->stub->async()->Stream(&context_, this);
    AddHold();
    StartRead(&ack_);
  }
  void Cancel() { context_.TryCancel(); }

  // Encodes `messages` as the next batch and writes it (peer->writing is set).
  void Write(std::vector<raft::Message> messages) {
    batch_.Clear();
    batch_.set_cluster_id(transport_->cluster_id_);
    batch_.set_from_node(transport_->host_->node_id());
    batch_.set_to_node(peer_->id);
    batch_.set_sequence(++sequence_);
    for (const raft::Message& m : messages)
      EncodeMessage(m, batch_.add_messages());
    in_flight_ = messages.size();
    StartWrite(&batch_);
  }

  void OnWriteDone(bool ok) override { transport_->WriteDone(peer_, this, ok, in_flight_); }
  void OnReadDone(bool ok) override {
    // Acks only need draining; a failed read means the stream is over.
    if (ok) return StartRead(&ack_);
    transport_->Closing(peer_, this);
  }
  void OnDone(const grpc::Status& status) override {
    Transport* transport = transport_;
    Peer* peer = peer_;
    transport->StreamDone(peer, this, status);
    // Destroyed here (the context with its channel reference) before the
    // connect thread may learn it is gone, unless a Kick still holds it.
    std::shared_ptr<PeerStream> self = std::move(self_);
    self.reset();
    transport->StreamGone(peer);
  }

  // Guarded by peer->mu.
  bool closing = false;
  bool hold_released = false;
  std::chrono::steady_clock::time_point opened;

 private:
  Transport* transport_;
  Peer* peer_;
  std::shared_ptr<PeerStream> self_;  // alive until OnDone
  grpc::ClientContext context_;
  raftpb::MessageBatch batch_;
  raftpb::StreamAck ack_;
  uint64_t sequence_ = 0;
  size_t in_flight_ = 0;
};

// ---- services ----

class Transport::PeerServiceImpl final : public raftpb::Peer::CallbackService {
 public:
  explicit PeerServiceImpl(Transport* transport) : transport_(transport) {}

  grpc::ServerBidiReactor<raftpb::MessageBatch, raftpb::StreamAck>* Stream(
      grpc::CallbackServerContext* /*context*/) override {
    return new Inbound(transport_);
  }

 private:
  // One peer's stream into this member, on gRPC's callback API: each batch
  // read is checked, decoded and handed to the node, then the next read
  // starts; no thread waits on the stream. Nothing is written back: acks
  // are optional in the protocol and senders only drain them.
  class Inbound final : public grpc::ServerBidiReactor<raftpb::MessageBatch, raftpb::StreamAck> {
   public:
    explicit Inbound(Transport* transport) : transport_(transport) { StartRead(&batch_); }

    void OnReadDone(bool ok) override {
      if (!ok) return Finish(grpc::Status::OK);  // the sender closed, or the call broke
      if (grpc::Status refused = Check(); !refused.ok()) return Finish(refused);
      std::vector<raft::Message> messages;
      messages.reserve(batch_.messages_size());
      for (const raftpb::Message& pm : batch_.messages()) {
        auto m = DecodeMessage(pm);
        if (!m.ok()) {
          LOG_WARN("peer: dropping a message from {:x}: {}", batch_.from_node(),
                   m.status().ToString());
          continue;
        }
        messages.push_back(std::move(*m));
      }
      transport_->host_->Receive(batch_.from_node(), std::move(messages));
      StartRead(&batch_);
    }
    void OnDone() override { delete this; }

   private:
    grpc::Status Check() const {
      if (transport_->etcd_->IsRemoved(batch_.from_node())) {
        // The reason travels in the details, so the sender can tell this
        // refusal from any other without reading the message.
        return grpc::Status(
            grpc::FAILED_PRECONDITION,
            fmt::format("peer: member {:x} was removed from the cluster", batch_.from_node()),
            std::string(ErrorReasonName(ErrorReason::kMemberRemoved)));
      }
      if (batch_.cluster_id() != transport_->cluster_id_) {
        return grpc::Status(grpc::FAILED_PRECONDITION,
                            fmt::format("peer: cluster id {:x} is not this cluster's ({:x})",
                                        batch_.cluster_id(), transport_->cluster_id_));
      }
      if (batch_.to_node() != transport_->host_->node_id()) {
        return grpc::Status(grpc::FAILED_PRECONDITION,
                            fmt::format("peer: batch for member {:x} reached member {:x}",
                                        batch_.to_node(), transport_->host_->node_id()));
      }
      return grpc::Status::OK;
    }

    Transport* transport_;
    raftpb::MessageBatch batch_;
  };

  Transport* transport_;
};

class Transport::MemberServiceImpl final : public serverpb::Member::Service {
 public:
  explicit MemberServiceImpl(Transport* transport)
      : transport_(transport), node_(transport->etcd_) {}

  grpc::Status LeaseRenew(grpc::ServerContext* /*context*/,
                          const etcdserverpb::LeaseKeepAliveRequest* req,
                          etcdserverpb::LeaseKeepAliveResponse* resp) override {
    auto ttl = node_->RenewLease(req->id());
    if (!ttl.ok()) return ToGrpc(ttl.status());
    resp->set_id(req->id());
    resp->set_ttl(*ttl);
    return grpc::Status::OK;
  }

  grpc::Status LeaseTimeToLive(grpc::ServerContext* /*context*/,
                               const etcdserverpb::LeaseTimeToLiveRequest* req,
                               etcdserverpb::LeaseTimeToLiveResponse* resp) override {
    auto r = node_->LeaseTimeToLive(req->id(), req->keys());
    if (!r.ok()) return ToGrpc(r.status());
    resp->set_id(r->id);
    resp->set_ttl(r->ttl_seconds);
    resp->set_grantedttl(r->granted_ttl_seconds);
    for (const std::string& k : r->keys)
      resp->add_keys(k);
    return grpc::Status::OK;
  }

  grpc::Status RangeApplied(grpc::ServerContext* /*context*/,
                            const serverpb::RangeAppliedRequest* req,
                            serverpb::RangeAppliedResponse* resp) override {
    std::shared_ptr<Replica> replica = transport_->host_->FindReplica(req->range_id());
    if (replica == nullptr) {
      return ToGrpc(Status::NotFound(
          fmt::format("conclave: range {} has no replica on this node", req->range_id())));
    }
    if (Status s = replica->ReadBarrier(); !s.ok()) return ToGrpc(s);
    resp->set_applied_index(replica->applied_index());
    if (auto* sm = dynamic_cast<RangeStateMachine*>(replica->state_machine())) {
      resp->set_generation(sm->descriptor().generation);
    }
    return grpc::Status::OK;
  }

  grpc::Status Membership(grpc::ServerContext* /*context*/, const serverpb::MembershipRequest* req,
                          serverpb::MembershipResponse* resp) override {
    if (!node_->is_leader()) return ToGrpc(Status::FailedPrecondition("etcdserver: not leader"));
    auto r = ExecuteMembership(node_, *req);
    if (!r.ok()) return ToGrpc(r.status());
    *resp = std::move(*r);
    return grpc::Status::OK;
  }

  grpc::Status ClusterInfo(grpc::ServerContext* /*context*/,
                           const serverpb::ClusterInfoRequest* req,
                           serverpb::ClusterInfoResponse* resp) override {
    // The membership as committed, not as this member happens to have
    // applied it (unless asked otherwise).
    if (!req->serializable()) {
      if (Status s = node_->ReadBarrier(); !s.ok()) return ToGrpc(s);
    }
    auto members = node_->Members();
    if (!members.ok()) return ToGrpc(members.status());
    resp->set_cluster_id(transport_->cluster_id_);
    for (auto& m : *members)
      *resp->add_members() = std::move(m);
    return grpc::Status::OK;
  }

  grpc::Status Snapshot(grpc::ServerContext* /*context*/,
                        grpc::ServerReader<serverpb::SnapshotPart>* reader,
                        serverpb::SnapshotAck* /*ack*/) override {
    serverpb::SnapshotPart part;
    if (!reader->Read(&part) || !part.has_header()) {
      return grpc::Status(grpc::INVALID_ARGUMENT, "snapshot: the stream must open with a header");
    }
    if (part.header().cluster_id() != transport_->cluster_id_) {
      return grpc::Status(grpc::FAILED_PRECONDITION, "snapshot: from another cluster");
    }
    auto m = DecodeMessage(part.header().message());
    if (!m.ok()) return ToGrpc(m.status());
    Host* host = transport_->host_;
    std::shared_ptr<Replica> replica = host->FindReplica(m->group);
    if (replica == nullptr) {
      return grpc::Status(grpc::INVALID_ARGUMENT, "snapshot: header is not a snapshot for us");
    }
    const uint64_t from = replica->NodeOf(m->from);
    Status s = host->ReceiveSnapshot(from, std::move(*m), [&](std::string* chunk) -> Result<bool> {
      if (!reader->Read(&part)) return false;
      if (part.part_case() != serverpb::SnapshotPart::kChunk) {
        return Status::InvalidArgument("snapshot: a second header");
      }
      *chunk = std::move(*part.mutable_chunk());
      return true;
    });
    return ToGrpc(s);
  }

 private:
  Transport* transport_;
  EtcdGroup* node_;
};

// ---- Transport ----

Transport::Transport(Host* host, EtcdGroup* etcd, uint64_t cluster_id,
                     const std::map<uint64_t, std::string>& peers, TransportOptions options)
    : host_(host),
      etcd_(etcd),
      cluster_id_(cluster_id),
      options_(std::move(options)),
      peer_service_(std::make_unique<PeerServiceImpl>(this)),
      member_service_(std::make_unique<MemberServiceImpl>(this)) {
  if (options_.snapshot_bytes_per_second > 0) {
    snapshot_limiter_ = std::make_unique<RateLimiter>(options_.snapshot_bytes_per_second,
                                                      options_.snapshot_chunk_bytes);
  }
  for (const auto& [id, target] : peers)
    peers_.emplace(id, NewPeer(id, target));
}

std::shared_ptr<Transport::Peer> Transport::NewPeer(uint64_t id, const std::string& target) const {
  auto p = std::make_shared<Peer>();
  p->id = id;
  p->target = target;
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(options_.receive_message_bytes_max);
  args.SetMaxSendMessageSize(options_.receive_message_bytes_max);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
              static_cast<int>(options_.backoff_min.count()));
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, static_cast<int>(options_.backoff_max.count()));
  const int keepalive_ms = static_cast<int>(options_.keepalive.count());
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, keepalive_ms);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 2 * keepalive_ms);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  // The deadline of one connection attempt (gRPC's default is 20 s).
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, keepalive_ms);
  p->channel = grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
  p->stub = raftpb::Peer::NewStub(p->channel);
  return p;
}

void SetPeerServerArguments(grpc::ServerBuilder* builder, std::chrono::milliseconds keepalive) {
  const int keepalive_ms = static_cast<int>(keepalive.count());
  builder->AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                              std::max(1, keepalive_ms / 2));
  builder->AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  builder->AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, keepalive_ms);
  builder->AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 2 * keepalive_ms);
  builder->AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
}

void Transport::SetPeers(const std::map<uint64_t, std::string>& peers) {
  std::lock_guard<std::mutex> lock(peers_mu_);
  if (stopping_.load()) return;
  for (auto it = peers_.begin(); it != peers_.end();) {
    auto want = peers.find(it->first);
    if (want != peers.end() && want->second == it->second->target) {
      ++it;
      continue;
    }
    LOG_INFO("peer {:x}: {}", it->first,
             want == peers.end() ? "no longer a member" : "now at " + want->second);
    {
      std::lock_guard<std::mutex> peer_lock(it->second->mu);
      it->second->retired.store(true);
    }
    it->second->cv.notify_all();
    retired_.push_back(std::move(it->second));
    it = peers_.erase(it);
  }
  // Sender threads of peers retired earlier have ended (or will soon).
  std::erase_if(retired_, [](const std::shared_ptr<Peer>& p) {
    if (!p->exited.load()) return false;
    if (p->thread.joinable()) p->thread.join();
    return true;
  });
  for (const auto& [id, target] : peers) {
    if (peers_.contains(id)) continue;
    auto p = NewPeer(id, target);
    if (started_) p->thread = std::thread([this, peer = p.get()] { ConnectLoop(peer); });
    peers_.emplace(id, std::move(p));
  }
}

Transport::~Transport() {
  Stop();
}

grpc::Service* Transport::peer_service() {
  return peer_service_.get();
}

grpc::Service* Transport::member_service() {
  return member_service_.get();
}

void Transport::Start() {
  std::lock_guard<std::mutex> lock(peers_mu_);
  started_ = true;
  for (auto& [id, p] : peers_) {
    Peer* peer = p.get();
    peer->thread = std::thread([this, peer] { ConnectLoop(peer); });
  }
}

void Transport::Stop() {
  std::vector<std::shared_ptr<Peer>> all;
  {
    std::lock_guard<std::mutex> lock(peers_mu_);
    if (stopping_.exchange(true)) return;
    for (auto& [id, p] : peers_)
      all.push_back(p);
    for (auto& p : retired_)
      all.push_back(p);
  }
  for (auto& p : all)
    p->cv.notify_all();
  for (auto& p : all) {
    if (p->thread.joinable()) p->thread.join();
  }
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(snapshot_mu_);
    threads.swap(snapshot_threads_);
  }
  for (auto& t : threads)
    t.join();
}

std::shared_ptr<Transport::Peer> Transport::FindPeer(uint64_t id) {
  std::lock_guard<std::mutex> lock(peers_mu_);
  auto it = peers_.find(id);
  return it == peers_.end() ? nullptr : it->second;
}

void Transport::Send(uint64_t to, std::vector<raft::Message> messages) {
  std::shared_ptr<Peer> p = FindPeer(to);
  if (p == nullptr) {
    messages_dropped_.fetch_add(messages.size());
    return;
  }
  {
    std::lock_guard<std::mutex> lock(p->mu);
    for (raft::Message& m : messages) {
      if (p->queue.size() >= options_.queue_messages_max) {
        p->queue.pop_front();
        messages_dropped_.fetch_add(1);
      }
      p->queue.push_back(std::move(m));
    }
  }
  Kick(p.get());
}

void Transport::Ping(uint64_t to) {
  std::shared_ptr<Peer> p = FindPeer(to);
  if (p == nullptr) return;
  {
    std::lock_guard<std::mutex> lock(p->mu);
    p->ping = true;
  }
  Kick(p.get());
}

std::vector<raft::Message> Transport::TakeBatch(Peer* peer) {
  peer->ping = false;  // any batch, even an empty one, tells the peer we live
  std::vector<raft::Message> messages;
  size_t bytes = 0;
  while (!peer->queue.empty() && (messages.empty() || bytes < options_.batch_bytes_max)) {
    for (const raft::Entry& e : peer->queue.front().entries)
      bytes += e.data.size() + 24;
    bytes += 64;
    messages.push_back(std::move(peer->queue.front()));
    peer->queue.pop_front();
  }
  return messages;
}

void Transport::Kick(Peer* peer) {
  std::unique_lock<std::mutex> lock(peer->mu);
  if ((peer->queue.empty() && !peer->ping) || peer->writing) return;
  if (peer->stream == nullptr || peer->stream->closing) {
    // The connect thread opens a stream (or is backing off).
    lock.unlock();
    peer->cv.notify_all();
    return;
  }
  std::shared_ptr<PeerStream> stream = peer->stream;
  peer->writing = true;
  std::vector<raft::Message> batch = TakeBatch(peer);
  lock.unlock();
  stream->Write(std::move(batch));
}

void Transport::WriteDone(Peer* peer, PeerStream* stream, bool ok, size_t written) {
  std::unique_lock<std::mutex> lock(peer->mu);
  if (ok) messages_sent_.fetch_add(written);
  if (!ok) stream->closing = true;
  if (ok && !stream->closing && (!peer->queue.empty() || peer->ping)) {
    std::vector<raft::Message> batch = TakeBatch(peer);
    lock.unlock();
    stream->Write(std::move(batch));
    return;
  }
  peer->writing = false;
  const bool release = stream->closing && !stream->hold_released;
  if (release) stream->hold_released = true;
  lock.unlock();
  if (!ok) Drop(peer, written);
  if (release) stream->RemoveHold();  // may finish the call and delete the stream
}

void Transport::Closing(Peer* peer, PeerStream* stream) {
  std::unique_lock<std::mutex> lock(peer->mu);
  stream->closing = true;
  const bool release = !peer->writing && !stream->hold_released;
  if (release) stream->hold_released = true;
  lock.unlock();
  if (release) stream->RemoveHold();
}

void Transport::StreamDone(Peer* peer, PeerStream* stream, const grpc::Status& status) {
  std::lock_guard<std::mutex> lock(peer->mu);
  if (peer->stream.get() == stream) {
    peer->stream_ended = true;
    peer->last_status = status;
    peer->last_opened = stream->opened;
    peer->stream.reset();  // the stream's own reference keeps it alive for now
  }
  peer->cv.notify_all();
}

void Transport::StreamGone(Peer* peer) {
  std::lock_guard<std::mutex> lock(peer->mu);
  --peer->streams_alive;
  // Under the lock: once the connect thread sees no live stream it may
  // return and the peer be freed.
  peer->cv.notify_all();
}

void Transport::Drop(Peer* peer, size_t count) {
  messages_dropped_.fetch_add(count);
  host_->ReportUnreachable(peer->id);
}

void Transport::ConnectLoop(Peer* peer) {
  SetThreadName("peer-connect");
  auto done = [&] { return stopping_.load() || peer->retired.load(); };
  auto backoff = options_.backoff_min;
  std::unique_lock<std::mutex> lock(peer->mu);
  while (!done()) {
    // Connect lazily: only when there is something to send.
    auto waiting = [&] { return !peer->queue.empty() || peer->ping; };
    peer->cv.wait_for(lock, std::chrono::milliseconds(500),
                      [&] { return done() || (peer->stream == nullptr && waiting()); });
    if (done()) break;
    if (peer->stream != nullptr || !waiting()) continue;
    if (peer->stream_ended) {
      peer->stream_ended = false;
      const grpc::Status s = peer->last_status;
      if (s.error_code() == grpc::FAILED_PRECONDITION &&
          s.error_details() == ErrorReasonName(ErrorReason::kMemberRemoved) &&
          options_.on_removed && !removed_reported_.exchange(true)) {
        lock.unlock();
        options_.on_removed();
        lock.lock();
      }
      // A stream that lived a while was healthy: start the backoff afresh.
      if (std::chrono::steady_clock::now() - peer->last_opened > options_.backoff_max) {
        backoff = options_.backoff_min;
      }
      LOG_DEBUG("peer {:x}: stream closed ({}); retrying in {} ms", peer->id, s.error_message(),
                backoff.count());
      peer->cv.wait_for(lock, backoff, done);
      backoff = std::min(backoff * 2, options_.backoff_max);
      continue;  // re-check: stopping, or nothing left to send
    }
    auto stream = std::make_shared<PeerStream>(this, peer);
    stream->opened = std::chrono::steady_clock::now();
    stream->Bind(stream);
    peer->stream = stream;
    ++peer->streams_alive;
    lock.unlock();
    stream->StartCall();
    Kick(peer);
    lock.lock();
  }
  // Stopping or retired: end the open stream and wait until it is over, so
  // that nothing refers to the peer once this thread has returned.
  if (std::shared_ptr<PeerStream> stream = peer->stream) {
    lock.unlock();
    stream->Cancel();
    lock.lock();
  }
  peer->cv.wait(lock, [&] { return peer->streams_alive == 0; });
  peer->exited.store(true);
}

void Transport::SendSnapshot(uint64_t to, raft::Message m) {
  if (stopping_.load()) return;
  std::lock_guard<std::mutex> lock(snapshot_mu_);
  snapshot_threads_.emplace_back([this, to, m = std::move(m)] { RunSnapshot(to, m); });
}

void Transport::RunSnapshot(uint64_t to, const raft::Message& m) {
  Status s = StreamSnapshot(to, m);
  if (!s.ok()) LOG_WARN("snapshot of group {} to {:x} failed: {}", m.group, to, s.ToString());
  host_->ReportSnapshot(m.group, m.to, s.ok());
}

Status Transport::StreamSnapshot(uint64_t to, const raft::Message& m) {
  std::shared_ptr<Peer> peer = FindPeer(to);
  if (peer == nullptr) return Status::NotFound(fmt::format("no peer {:x}", to));
  std::shared_ptr<Replica> replica = host_->FindReplica(m.group);
  if (replica == nullptr) return Status::NotFound(fmt::format("no group {}", m.group));
  ASSIGN_OR_RETURN(std::unique_ptr<SnapshotSource> source, replica->state_machine()->NewSnapshot());
  serverpb::SnapshotPart header;
  header.mutable_header()->set_cluster_id(cluster_id_);
  raftpb::Message* pm = header.mutable_header()->mutable_message();
  EncodeMessage(m, pm);
  // The image is the state as it is now, which is at or past the index the
  // core asked for; its metadata says which.
  raftpb::SnapshotMetadata* md = pm->mutable_snapshot()->mutable_metadata();
  md->set_index(source->index());
  md->set_term(source->term());
  EncodeConfState(source->conf_state(), md->mutable_conf_state());

  auto stub = serverpb::Member::NewStub(peer->channel);
  grpc::ClientContext context;
  serverpb::SnapshotAck ack;
  auto stream = stub->Snapshot(&context, &ack);
  bool ok = stream->Write(header);
  std::string chunk;
  while (ok && !stopping_.load()) {
    ASSIGN_OR_RETURN(bool more, source->Next(&chunk));
    if (!more) break;
    if (snapshot_limiter_ != nullptr) {
      Duration wait = snapshot_limiter_->Reserve(chunk.size(), host_->clock().Monotonic());
      snapshot_throttled_nanos_ += wait.count();
      // In slices, so that a stop is not held up.
      while (wait.count() > 0 && !stopping_.load()) {
        const Duration slice = std::min<Duration>(wait, std::chrono::milliseconds(100));
        std::this_thread::sleep_for(slice);
        wait -= slice;
      }
    }
    snapshot_bytes_sent_ += chunk.size();
    serverpb::SnapshotPart part;
    part.set_chunk(std::move(chunk));
    ok = stream->Write(part);
  }
  stream->WritesDone();
  grpc::Status s = stream->Finish();
  if (!s.ok()) return FromGrpc(s);
  if (!ok) return Status::Unavailable("snapshot: stream broken");
  LOG_INFO("snapshot: sent group {} index {} to {:x}", m.group, source->index(), to);
  return Status::Ok();
}

template <typename Call>
Status Transport::CallMember(uint64_t member, std::chrono::milliseconds timeout, const Call& call) {
  std::shared_ptr<Peer> peer = FindPeer(member);
  if (peer == nullptr) return Status::Unavailable("etcdserver: no leader");
  auto stub = serverpb::Member::NewStub(peer->channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + timeout);
  return FromGrpc(call(stub.get(), &context));
}

Result<int64_t> Transport::ForwardLeaseRenew(uint64_t leader, lease::LeaseId id) {
  etcdserverpb::LeaseKeepAliveRequest req;
  req.set_id(id);
  etcdserverpb::LeaseKeepAliveResponse resp;
  RETURN_IF_ERROR(CallMember(leader, options_.forward_timeout,
                             [&](serverpb::Member::Stub* stub, grpc::ClientContext* ctx) {
                               return stub->LeaseRenew(ctx, req, &resp);
                             }));
  return resp.ttl();
}

Status Transport::ForwardLeaseTimeToLive(uint64_t leader,
                                         const etcdserverpb::LeaseTimeToLiveRequest& req,
                                         etcdserverpb::LeaseTimeToLiveResponse* resp) {
  return CallMember(leader, options_.forward_timeout,
                    [&](serverpb::Member::Stub* stub, grpc::ClientContext* ctx) {
                      return stub->LeaseTimeToLive(ctx, req, resp);
                    });
}

Result<serverpb::MembershipResponse> Transport::ForwardMembership(
    uint64_t leader, const serverpb::MembershipRequest& req) {
  serverpb::MembershipResponse resp;
  RETURN_IF_ERROR(CallMember(leader, options_.membership_forward_timeout,
                             [&](serverpb::Member::Stub* stub, grpc::ClientContext* ctx) {
                               return stub->Membership(ctx, req, &resp);
                             }));
  return resp;
}

// ---- native ranges held elsewhere ----

std::shared_ptr<kvpb::KV::Stub> Transport::NativeStub(uint64_t node) {
  std::shared_ptr<Peer> peer = FindPeer(node);
  if (peer == nullptr) return nullptr;
  std::lock_guard<std::mutex> lock(peers_mu_);
  auto& [channel, stub] = native_stubs_[node];
  if (channel != peer->channel) {
    channel = peer->channel;
    stub = kvpb::KV::NewStub(channel);
  }
  return stub;
}

template <typename Request, typename Response, typename Issue>
void Transport::CallNative(uint64_t node, const Request& req, const Issue& issue,
                           std::function<void(Result<Response>)> done,
                           std::chrono::milliseconds timeout) {
  std::shared_ptr<kvpb::KV::Stub> stub = NativeStub(node);
  if (stub == nullptr) {
    return done(Status::Unavailable(fmt::format("no peer {:x} to forward to", node)));
  }
  struct Call {
    grpc::ClientContext context;
    Request request;
    Response response;
    std::shared_ptr<kvpb::KV::Stub> stub;  // alive while the call is
  };
  auto call = std::make_shared<Call>();
  call->request = req;
  call->stub = stub;
  call->context.set_deadline(std::chrono::system_clock::now() + timeout);
  issue(stub->async(), &call->context, &call->request, &call->response,
        [call, done = std::move(done)](grpc::Status s) {
          if (!s.ok()) return done(FromGrpc(s));
          done(std::move(call->response));
        });
}

void Transport::Put(uint64_t node, const kvpb::PutRequest& req,
                    std::function<void(Result<kvpb::PutResponse>)> done) {
  CallNative<kvpb::PutRequest, kvpb::PutResponse>(
      node, req, [](auto* async, auto... args) { async->Put(args...); }, std::move(done),
      options_.forward_timeout);
}

void Transport::Delete(uint64_t node, const kvpb::DeleteRequest& req,
                       std::function<void(Result<kvpb::DeleteResponse>)> done) {
  CallNative<kvpb::DeleteRequest, kvpb::DeleteResponse>(
      node, req, [](auto* async, auto... args) { async->Delete(args...); }, std::move(done),
      options_.forward_timeout);
}

void Transport::Get(uint64_t node, const kvpb::GetRequest& req,
                    std::function<void(Result<kvpb::GetResponse>)> done) {
  CallNative<kvpb::GetRequest, kvpb::GetResponse>(
      node, req, [](auto* async, auto... args) { async->Get(args...); }, std::move(done),
      options_.forward_timeout);
}

void Transport::MoveReplica(uint64_t node, const kvpb::MoveReplicaRequest& req,
                            std::function<void(Result<kvpb::MoveReplicaResponse>)> done) {
  // The new replica's snapshot and catch-up take their time.
  CallNative<kvpb::MoveReplicaRequest, kvpb::MoveReplicaResponse>(
      node, req, [](auto* async, auto... args) { async->MoveReplica(args...); }, std::move(done),
      std::chrono::minutes(2));
}

Result<kvpb::TransferLeaderResponse> Transport::TransferLeader(
    uint64_t node, const kvpb::TransferLeaderRequest& req) {
  return CallNativeBlocking<kvpb::TransferLeaderResponse>(
      node,
      [&](kvpb::KV::Stub* stub, grpc::ClientContext* ctx, kvpb::TransferLeaderResponse* resp) {
        return stub->TransferLeader(ctx, req, resp);
      },
      // The node named waits for the leadership up to a request timeout.
      options_.membership_forward_timeout);
}

template <typename Response, typename Call>
Result<Response> Transport::CallNativeBlocking(uint64_t node, const Call& call,
                                               std::chrono::milliseconds timeout) {
  std::shared_ptr<kvpb::KV::Stub> stub = NativeStub(node);
  if (stub == nullptr) return Status::Unavailable(fmt::format("no peer {:x} to forward to", node));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       (timeout.count() > 0 ? timeout : options_.forward_timeout));
  Response resp;
  RETURN_IF_ERROR(FromGrpc(call(stub.get(), &context, &resp)));
  return resp;
}

Result<kvpb::ScanResponse> Transport::Scan(uint64_t node, const kvpb::ScanRequest& req) {
  return CallNativeBlocking<kvpb::ScanResponse>(
      node, [&](kvpb::KV::Stub* stub, grpc::ClientContext* ctx, kvpb::ScanResponse* resp) {
        return stub->Scan(ctx, req, resp);
      });
}

Result<kvpb::SplitResponse> Transport::Split(uint64_t node, const kvpb::SplitRequest& req) {
  return CallNativeBlocking<kvpb::SplitResponse>(
      node, [&](kvpb::KV::Stub* stub, grpc::ClientContext* ctx, kvpb::SplitResponse* resp) {
        return stub->Split(ctx, req, resp);
      });
}

Result<kvpb::MergeResponse> Transport::Merge(uint64_t node, const kvpb::MergeRequest& req) {
  // A merge may first move replicas (snapshots, catch-up).
  std::shared_ptr<kvpb::KV::Stub> stub = NativeStub(node);
  if (stub == nullptr) return Status::Unavailable(fmt::format("no peer {:x} to forward to", node));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::minutes(2));
  kvpb::MergeResponse resp;
  RETURN_IF_ERROR(FromGrpc(stub->Merge(&context, req, &resp)));
  return resp;
}

Result<kvpb::RangesResponse> Transport::Ranges(uint64_t node) {
  kvpb::RangesRequest req;  // the ranges it holds, as it sees them
  return CallNativeBlocking<kvpb::RangesResponse>(
      node, [&](kvpb::KV::Stub* stub, grpc::ClientContext* ctx, kvpb::RangesResponse* resp) {
        return stub->Ranges(ctx, req, resp);
      });
}

Result<serverpb::RangeAppliedResponse> Transport::RangeApplied(uint64_t node, keys::RangeId id) {
  serverpb::RangeAppliedRequest req;
  req.set_range_id(id);
  serverpb::RangeAppliedResponse resp;
  RETURN_IF_ERROR(CallMember(node, options_.forward_timeout,
                             [&](serverpb::Member::Stub* stub, grpc::ClientContext* ctx) {
                               return stub->RangeApplied(ctx, req, &resp);
                             }));
  return resp;
}

Result<kvpb::DeleteRangeResponse> Transport::DeleteRange(uint64_t node,
                                                         const kvpb::DeleteRangeRequest& req) {
  return CallNativeBlocking<kvpb::DeleteRangeResponse>(
      node, [&](kvpb::KV::Stub* stub, grpc::ClientContext* ctx, kvpb::DeleteRangeResponse* resp) {
        return stub->DeleteRange(ctx, req, resp);
      });
}

Result<serverpb::ClusterInfoResponse> FetchClusterInfo(const std::vector<std::string>& targets,
                                                       std::chrono::milliseconds timeout,
                                                       bool serializable) {
  serverpb::ClusterInfoRequest req;
  req.set_serializable(serializable);
  Status last = Status::Unavailable("no peer to ask");
  for (const std::string& target : targets) {
    auto channel = grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
    auto stub = serverpb::Member::NewStub(channel);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + timeout);
    serverpb::ClusterInfoResponse resp;
    grpc::Status s = stub->ClusterInfo(&context, req, &resp);
    if (s.ok()) return resp;
    last = Status::Unavailable(fmt::format("{}: {}", target, s.error_message()));
  }
  return last;
}

}  // namespace conclave::server
