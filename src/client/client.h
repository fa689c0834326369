// The C++ client of an etcd v3 API cluster (Conclave or etcd 3.4): what the
// `conclave` CLI, the benchmark and the tests use to talk to members.
//
// A Client holds one gRPC channel per endpoint and sends each call to its
// current endpoint. When a call fails with UNAVAILABLE it moves on to the
// next endpoint and tries again, at most once per endpoint and within the
// call's one deadline. Reads (Range, TimeToLive, MemberList, Status...) fail
// over after any UNAVAILABLE; calls that change state fail over only when
// the endpoint had no connection before the attempt and none could be made
// for it, because a request sent on a connection may have been applied
// even though its answer was lost. Streams (Watch, KeepAlive, Observe, Snapshot) pick an endpoint
// when they open and report a broken stream to the caller instead of resuming.
//
// Native point requests (NativePut, NativeGet, NativeDelete) are routed: a
// client of several members sends each to the endpoint of its key's range
// leader, learned from the members' ranges and from hints in the answers
// (client/range_router.h); failover then goes on from there as above.
//
// Calls return the etcd wire responses themselves (etcdserverpb::...,
// v3lockpb::..., v3electionpb::...). A failed call returns a Status whose
// code is the gRPC code and whose message is the server's text (for example
// "etcdserver: mvcc: required revision has been compacted"); a call that ran
// out of time says "context deadline exceeded".
//
// Limits: every unary call has a deadline (ClientOptions::call_timeout, or
// the explicit wait of Lock and Campaign); stream buffers hold at most
// kStreamBufferResponsesMax responses and then stop reading (gRPC's flow
// control then holds the server back).
//
// Thread-safety: a Client may be used from many threads at once. Stream
// objects (WatchStream, ObserveStream, KeepAliveLoop) are safe to use from
// one thread plus Close() from any thread; each must be destroyed before the
// Client that made it.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "conclave/kvpb/kv.pb.h"
#include "etcd/api/etcdserverpb/rpc.pb.h"
#include "etcd/server/v3election/v3electionpb/v3election.pb.h"
#include "etcd/server/v3lock/v3lockpb/v3lock.pb.h"

namespace conclave::storage {
class FileSystem;
}  // namespace conclave::storage

namespace conclave::client {

namespace pb = ::etcdserverpb;

// Responses a stream buffers before it stops reading from the server.
inline constexpr size_t kStreamBufferResponsesMax = 1024;

// "127.0.0.1:2379" from "127.0.0.1:2379", "http://127.0.0.1:2379" or
// "http://127.0.0.1:2379/". https:// is refused (no TLS support yet).
Result<std::string> ParseEndpoint(std::string_view endpoint);

// Endpoints from a comma-separated list; empty items are skipped, and an
// empty list is an error.
Result<std::vector<std::string>> ParseEndpoints(std::string_view comma_list);

// The Status for a gRPC failure (`grpc_code` as on the wire). The server's
// message is kept; gRPC's own deadline text becomes "context deadline
// exceeded" and an empty message gets the code's name.
Status StatusFromGrpc(int grpc_code, std::string_view message);

struct ClientOptions {
  // host:port items, as ParseEndpoint returns them (http:// is accepted too).
  std::vector<std::string> endpoints;
  // How long Connect waits for a first endpoint to accept a connection.
  std::chrono::milliseconds dial_timeout{2000};
  // The deadline of one unary call, failovers included.
  std::chrono::milliseconds call_timeout{5000};
  // Snapshot downloads are long; they get their own deadline.
  std::chrono::milliseconds snapshot_timeout{10 * 60 * 1000};
  // Largest response accepted (a big Range).
  int max_receive_bytes = 64 << 20;
  // Native point requests (NativePut, NativeGet, NativeDelete) go to the
  // endpoint of the key's range's leader when the client knows it
  // (client/range_router.h); with one endpoint, or unset, to the current
  // endpoint, which forwards them.
  bool route_native = true;
};

// A Watch stream: create and cancel watches, read responses with a timeout.
class WatchStream {
 public:
  virtual ~WatchStream() = default;
  // Sends a create request; the answer arrives through Next (created=true).
  virtual Status Create(const pb::WatchCreateRequest& request) = 0;
  virtual Status Cancel(int64_t watch_id) = 0;
  virtual Status RequestProgress() = 0;
  // true with *out filled; false when nothing arrived within `timeout`; an
  // error once the stream has ended (Cancelled after Close()).
  virtual Result<bool> Next(std::chrono::milliseconds timeout, pb::WatchResponse* out) = 0;
  // Ends the stream; Next then fails. Idempotent.
  virtual void Close() = 0;
};

// An Election.Observe stream: every leader change of one election.
class ObserveStream {
 public:
  virtual ~ObserveStream() = default;
  // As WatchStream::Next.
  virtual Result<bool> Next(std::chrono::milliseconds timeout,
                            v3electionpb::LeaderResponse* out) = 0;
  virtual void Close() = 0;
};

// Keeps one lease alive from a thread of its own: a keep-alive request every
// third of the lease's TTL (at least every 500 ms), each a LeaseKeepAliveOnce
// round trip (a keep-alive stream of its own, on any endpoint that answers;
// one long-lived stream is left for later). The loop ends when the lease is
// gone (a response with TTL <= 0), when it cannot be renewed before it would
// expire, or on Close().
class KeepAliveLoop {
 public:
  virtual ~KeepAliveLoop() = default;
  // False once the loop has ended.
  virtual bool alive() const = 0;
  // Why the loop ended (OK while alive or after Close()).
  virtual Status status() const = 0;
  // Waits up to `timeout` for the loop to end; true if it has.
  virtual bool WaitDone(std::chrono::milliseconds timeout) = 0;
  virtual void Close() = 0;
};

class Client {
 public:
  // Dials every endpoint and returns once one of them has accepted a
  // connection; Unavailable when none does within options.dial_timeout.
  static Result<std::unique_ptr<Client>> Connect(const ClientOptions& options);

  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  const ClientOptions& options() const { return options_; }
  // The endpoint the next call goes to.
  std::string current_endpoint() const;

  // Cancels the waiting calls in flight (Lock, Campaign) and makes later
  // ones fail at once with Cancelled; other calls keep working so that a
  // caller that was interrupted can still clean up (Unlock, Resign, Revoke).
  void CancelWaits();

  // KV.
  Result<pb::RangeResponse> Range(const pb::RangeRequest& request);
  Result<pb::PutResponse> Put(const pb::PutRequest& request);
  Result<pb::DeleteRangeResponse> DeleteRange(const pb::DeleteRangeRequest& request);
  Result<pb::TxnResponse> Txn(const pb::TxnRequest& request);
  Result<pb::CompactionResponse> Compact(const pb::CompactionRequest& request);

  // Conclave's native KV API (conclave.kvpb.KV): the sharded keyspace.
  Result<kvpb::PutResponse> NativePut(const kvpb::PutRequest& request);
  Result<kvpb::GetResponse> NativeGet(const kvpb::GetRequest& request);
  Result<kvpb::DeleteResponse> NativeDelete(const kvpb::DeleteRequest& request);
  Result<kvpb::DeleteRangeResponse> NativeDeleteRange(const kvpb::DeleteRangeRequest& request);
  // One page; NativeScanAll follows resume keys to the end (or `limit` keys).
  Result<kvpb::ScanResponse> NativeScan(const kvpb::ScanRequest& request);
  Result<std::vector<kvpb::KeyValue>> NativeScanAll(std::string start, std::string end,
                                                    uint64_t limit = 0);
  // The ranges the endpoint holds; `cluster`: every range, from the range map.
  Result<kvpb::RangesResponse> NativeRanges(bool cluster = false);
  // Splits the range holding `key` at `key`.
  Result<kvpb::SplitResponse> NativeSplit(std::string key);
  // Merges the range holding `key` with the range to its right (moving the
  // right one's replicas onto the left one's nodes first, within `timeout`).
  Result<kvpb::MergeResponse> NativeMerge(std::string key, std::chrono::milliseconds timeout);
  // The members, each with what it last reported to the meta range.
  Result<kvpb::NodesResponse> NativeNodes();
  // Starts draining node `node` (its replicas move to the other members),
  // or with `cancel` ends the drain; progress shows in NativeNodes.
  Status NativeDrainNode(uint64_t node, bool cancel);
  // Moves range `range_id`'s replica from node `from` to node `to`; waits
  // (up to `timeout`) while the new replica catches up.
  Result<kvpb::MoveReplicaResponse> NativeMoveReplica(uint64_t range_id, uint64_t from, uint64_t to,
                                                      std::chrono::milliseconds timeout);
  // Makes node `to`'s replica of range `range_id` its leader; waits until
  // it leads.
  Result<kvpb::TransferLeaderResponse> NativeTransferLeader(uint64_t range_id, uint64_t to);

  // Watch.
  Result<std::unique_ptr<WatchStream>> Watch();

  // Lease.
  Result<pb::LeaseGrantResponse> LeaseGrant(int64_t ttl_seconds, int64_t id = 0);
  Result<pb::LeaseRevokeResponse> LeaseRevoke(int64_t id);
  Result<pb::LeaseTimeToLiveResponse> LeaseTimeToLive(int64_t id, bool keys);
  Result<pb::LeaseLeasesResponse> LeaseLeases();
  // One keep-alive round trip.
  Result<pb::LeaseKeepAliveResponse> LeaseKeepAliveOnce(int64_t id);
  // `on_response` (may be empty) runs on the loop's thread for every answer.
  Result<std::unique_ptr<KeepAliveLoop>> LeaseKeepAlive(
      int64_t id, int64_t ttl_seconds,
      std::function<void(const pb::LeaseKeepAliveResponse&)> on_response = {});

  // Lock. Lock waits up to `wait` for the lock (CancelWaits ends it early).
  Result<v3lockpb::LockResponse> Lock(std::string_view name, int64_t lease,
                                      std::chrono::milliseconds wait);
  Result<v3lockpb::UnlockResponse> Unlock(std::string_view key);

  // Election. Campaign waits up to `wait` to win (CancelWaits ends it early).
  Result<v3electionpb::CampaignResponse> Campaign(std::string_view name, int64_t lease,
                                                  std::string_view value,
                                                  std::chrono::milliseconds wait);
  Result<v3electionpb::ProclaimResponse> Proclaim(const v3electionpb::LeaderKey& leader,
                                                  std::string_view value);
  Result<v3electionpb::LeaderResponse> Leader(std::string_view name);
  Result<std::unique_ptr<ObserveStream>> Observe(std::string_view name);
  Result<v3electionpb::ResignResponse> Resign(const v3electionpb::LeaderKey& leader);

  // Cluster.
  Result<pb::MemberListResponse> MemberList(bool linearizable = false);
  Result<pb::MemberAddResponse> MemberAdd(const std::vector<std::string>& peer_urls, bool learner);
  Result<pb::MemberRemoveResponse> MemberRemove(uint64_t id);
  Result<pb::MemberUpdateResponse> MemberUpdate(uint64_t id,
                                                const std::vector<std::string>& peer_urls);
  Result<pb::MemberPromoteResponse> MemberPromote(uint64_t id);

  // Maintenance.
  // Maintenance.Status of the member behind the current endpoint.
  Result<pb::StatusResponse> MemberStatus();
  Result<pb::AlarmResponse> Alarm(const pb::AlarmRequest& request);
  Result<pb::HashResponse> Hash();
  Result<pb::HashKVResponse> HashKV(int64_t revision);
  Result<pb::DefragmentResponse> Defragment();
  Result<pb::MoveLeaderResponse> MoveLeader(uint64_t target_id);
  // Streams the member's snapshot into `on_chunk`, which may stop it by
  // returning an error. Returns the number of bytes received.
  Result<uint64_t> Snapshot(
      const std::function<conclave::Status(const pb::SnapshotResponse&)>& on_chunk);
  // Saves the snapshot to `path` through `fs` (the real file system when
  // null): written to "<path>.part", synced, then renamed and the directory
  // synced, so `path` only ever holds a whole snapshot. Returns its size.
  Result<uint64_t> SnapshotToFile(const std::string& path, storage::FileSystem* fs = nullptr);

  // The channels, stubs and failover state; defined in client.cc.
  struct Impl;

 private:
  Client(const ClientOptions& options, std::unique_ptr<Impl> impl);

  ClientOptions options_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace conclave::client
