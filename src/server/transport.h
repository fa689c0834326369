// Transport: Raft messages, snapshots and leader-bound calls between the
// members of a cluster, over gRPC (proto/conclave/raftpb/raft.proto and
// proto/conclave/serverpb/server.proto).
//
// Sending. Each peer node has one Peer.Stream on gRPC's callback API. Send queues
// the messages and, when the stream is idle, writes what is queued as one
// MessageBatch (up to batch_bytes_max) right away; when a write completes,
// whatever queued meanwhile goes as the next batch. So a burst of messages
// costs one write and no thread hand-off. A connect thread per peer opens the
// stream when something waits to be sent, and reopens a failed one after a
// backoff that doubles from backoff_min to backoff_max; messages that cannot
// be sent are dropped and the peer is reported unreachable to the host (Raft
// retransmits what matters). A peer's queue is bounded (queue_messages_max);
// when it is full the oldest message is dropped. Snapshots go on their own Member.Snapshot stream,
// one thread per transfer, and their outcome is reported to the node.
//
// Receiving. The Peer and Member services are registered on the node's peer
// listener. Batches from another cluster or for another member are refused;
// every message is decoded strictly (raft_codec.h) and handed to the host,
// which routes it to its group's replica. An empty batch is a ping.
//
// Leases. Keep-alives and TTL queries must reach the leader; a follower's
// api layer calls ForwardLeaseRenew / ForwardLeaseTimeToLive.
//
// Native ranges. A request for a range this member holds no replica of goes
// to a member that does, as the same conclave.kvpb.KV call on that member's
// peer listener (RangeForwarder; served there without forwarding again).
//
// Thread-safety: every public method is thread-safe.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/rate_limiter.h"
#include "base/status.h"
#include "conclave/kvpb/kv.grpc.pb.h"
#include "conclave/raftpb/raft.grpc.pb.h"
#include "conclave/serverpb/server.grpc.pb.h"
#include "lease/lessor.h"
#include "server/etcd_group.h"
#include "server/host.h"
#include "server/native_keyspace.h"

namespace conclave::server {

struct TransportOptions {
  size_t batch_bytes_max = 4 << 20;
  size_t queue_messages_max = 4096;
  std::chrono::milliseconds backoff_min{50};
  std::chrono::milliseconds backoff_max{1000};
  // HTTP/2 pings on every peer connection this often, and the connection is
  // dropped (and redialled, each attempt bounded by this time) when one goes
  // unanswered for twice as long. Without them a connection whose packets were
  // dropped for a while waits out TCP's retransmission backoff, tens of
  // seconds after the network heals. The peer server must accept pings this
  // frequent (PeerServerArguments).
  std::chrono::milliseconds keepalive{1000};
  size_t snapshot_chunk_bytes = 1 << 20;
  // Snapshots sent, all groups and peers together, go at most this fast
  // (bytes per second; 0: no limit), so that re-replication and rebalancing
  // leave the disk and network to foreground traffic. A chunk's worth goes
  // at once after a pause.
  uint64_t snapshot_bytes_per_second = 0;
  // Largest message a peer may send us (entries are bounded by the client
  // request limit; batches by batch_bytes_max).
  int receive_message_bytes_max = 64 << 20;
  std::chrono::milliseconds forward_timeout{3000};
  std::chrono::milliseconds membership_forward_timeout{15000};
  // Called (once) when a peer refuses our messages because this member was
  // removed from the cluster; the server shuts down.
  std::function<void()> on_removed;
};

// Channel arguments for the server on --listen-peer-urls that match the
// peers' keepalive pings (and ping back, to drop dead inbound connections).
void SetPeerServerArguments(grpc::ServerBuilder* builder, std::chrono::milliseconds keepalive);

// "http://host:port" (or "host:port") -> "host:port". kInvalidArgument for
// https (no TLS yet) and for anything without a port.
Result<std::string> GrpcTarget(const std::string& url);

// Why this process cannot listen on `target` (host:port), in the words of
// the failing system call ("bind: address already in use"), found by trying;
// empty when a listener could be made after all.
std::string ListenProblem(const std::string& target);

// Asks the first of `targets` (host:port) that answers for the cluster's id
// and members: how a member joining an existing cluster learns its own id.
// `serializable`: the answer may be the member's applied view, unconfirmed.
Result<serverpb::ClusterInfoResponse> FetchClusterInfo(const std::vector<std::string>& targets,
                                                       std::chrono::milliseconds timeout,
                                                       bool serializable = false);

Status FromGrpc(const grpc::Status& s);

class Transport final : public MessageSender, public LeaderCalls, public RangeForwarder {
 public:
  // `peers`: every other member's id and peer URL. `etcd` answers the
  // member-to-member calls of the etcd front end (leases, membership).
  Transport(Host* host, EtcdGroup* etcd, uint64_t cluster_id,
            const std::map<uint64_t, std::string>& peers, TransportOptions options = {});
  ~Transport() override;

  void Start();
  void Stop();

  void Send(uint64_t to, std::vector<raft::Message> messages) override;
  void SendSnapshot(uint64_t to, raft::Message m) override;
  void Ping(uint64_t to) override;

  // The services to register on the peer listener.
  grpc::Service* peer_service();
  grpc::Service* member_service();

  // Replaces the set of peers (membership changed): new members get a
  // sender, removed ones lose theirs, a changed URL reconnects.
  void SetPeers(const std::map<uint64_t, std::string>& peers);

  Result<int64_t> ForwardLeaseRenew(uint64_t leader, lease::LeaseId id) override;
  Result<serverpb::MembershipResponse> ForwardMembership(
      uint64_t leader, const serverpb::MembershipRequest& req) override;
  Status ForwardLeaseTimeToLive(uint64_t leader, const etcdserverpb::LeaseTimeToLiveRequest& req,
                                etcdserverpb::LeaseTimeToLiveResponse* resp) override;

  // RangeForwarder: the native KV calls, to `node`'s peer listener, each
  // within forward_timeout.
  void Put(uint64_t node, const kvpb::PutRequest& req,
           std::function<void(Result<kvpb::PutResponse>)> done) override;
  void Delete(uint64_t node, const kvpb::DeleteRequest& req,
              std::function<void(Result<kvpb::DeleteResponse>)> done) override;
  void Get(uint64_t node, const kvpb::GetRequest& req,
           std::function<void(Result<kvpb::GetResponse>)> done) override;
  Result<kvpb::ScanResponse> Scan(uint64_t node, const kvpb::ScanRequest& req) override;
  Result<kvpb::SplitResponse> Split(uint64_t node, const kvpb::SplitRequest& req) override;
  Result<kvpb::MergeResponse> Merge(uint64_t node, const kvpb::MergeRequest& req) override;
  Result<serverpb::RangeAppliedResponse> RangeApplied(uint64_t node, keys::RangeId id) override;
  Result<kvpb::RangesResponse> Ranges(uint64_t node) override;
  Result<kvpb::DeleteRangeResponse> DeleteRange(uint64_t node,
                                                const kvpb::DeleteRangeRequest& req) override;
  void MoveReplica(uint64_t node, const kvpb::MoveReplicaRequest& req,
                   std::function<void(Result<kvpb::MoveReplicaResponse>)> done) override;
  Result<kvpb::TransferLeaderResponse> TransferLeader(
      uint64_t node, const kvpb::TransferLeaderRequest& req) override;

  uint64_t messages_sent() const { return messages_sent_.load(); }
  // Snapshot bytes sent, and how long sends waited for the rate limit.
  uint64_t snapshot_bytes_sent() const { return snapshot_bytes_sent_.load(); }
  Duration snapshot_throttled() const { return Duration(snapshot_throttled_nanos_.load()); }
  uint64_t messages_dropped() const { return messages_dropped_.load(); }

 private:
  struct Peer;
  class PeerStream;
  class PeerServiceImpl;
  class MemberServiceImpl;

  // The peer's connect thread: opens a stream when messages wait and none is
  // open, after a backoff once one has failed; ends it when stopping.
  void ConnectLoop(Peer* peer);
  // Starts writing the peer's queue if its stream is open and idle, or wakes
  // the connect thread when there is no stream.
  void Kick(Peer* peer);
  // Takes queued messages for one batch (peer->mu held).
  std::vector<raft::Message> TakeBatch(Peer* peer);
  // PeerStream's reactions: a write finished (the next one starts if more is
  // queued), the stream is closing (its reads failed), the call is over.
  void WriteDone(Peer* peer, PeerStream* stream, bool ok, size_t written);
  void Closing(Peer* peer, PeerStream* stream);
  void StreamDone(Peer* peer, PeerStream* stream, const grpc::Status& status);
  // After a stream's destruction: the connect thread may stop waiting for it.
  void StreamGone(Peer* peer);
  void Drop(Peer* peer, size_t count);
  void RunSnapshot(uint64_t to, const raft::Message& m);
  Status StreamSnapshot(uint64_t to, const raft::Message& m);
  std::shared_ptr<Peer> FindPeer(uint64_t id);
  std::shared_ptr<Peer> NewPeer(uint64_t id, const std::string& target) const;
  // One unary Member call to `member`, within `timeout`.
  template <typename Call>
  Status CallMember(uint64_t member, std::chrono::milliseconds timeout, const Call& call);
  // The native KV stub for `node` (null when it is not a peer).
  std::shared_ptr<kvpb::KV::Stub> NativeStub(uint64_t node);
  // One asynchronous native call: `start` issues it on the stub.
  template <typename Request, typename Response, typename Issue>
  void CallNative(uint64_t node, const Request& req, const Issue& issue,
                  std::function<void(Result<Response>)> done, std::chrono::milliseconds timeout);
  // One blocking native call within `timeout` (0: forward_timeout):
  // `call(stub, context, response)` issues it.
  template <typename Response, typename Call>
  Result<Response> CallNativeBlocking(uint64_t node, const Call& call,
                                      std::chrono::milliseconds timeout = {});

  Host* host_;
  EtcdGroup* etcd_;
  const uint64_t cluster_id_;
  const TransportOptions options_;
  std::mutex peers_mu_;
  std::map<uint64_t, std::shared_ptr<Peer>> peers_;  // guarded by peers_mu_
  std::vector<std::shared_ptr<Peer>> retired_;       // guarded by peers_mu_; joined by Stop
  // Native KV stubs by node, with the channel each was made on.
  std::map<uint64_t, std::pair<std::shared_ptr<grpc::Channel>, std::shared_ptr<kvpb::KV::Stub>>>
      native_stubs_;      // guarded by peers_mu_
  bool started_ = false;  // guarded by peers_mu_
  std::unique_ptr<PeerServiceImpl> peer_service_;
  std::unique_ptr<MemberServiceImpl> member_service_;

  std::mutex snapshot_mu_;
  std::vector<std::thread> snapshot_threads_;  // guarded by snapshot_mu_
  // Paces the snapshots sent (options_.snapshot_bytes_per_second; null: no
  // limit).
  std::unique_ptr<RateLimiter> snapshot_limiter_;
  std::atomic<uint64_t> snapshot_bytes_sent_{0};
  std::atomic<int64_t> snapshot_throttled_nanos_{0};
  std::atomic<bool> stopping_{false};
  std::atomic<bool> removed_reported_{false};
  std::atomic<uint64_t> messages_sent_{0};
  std::atomic<uint64_t> messages_dropped_{0};
};

}  // namespace conclave::server
