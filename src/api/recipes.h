// Internal to src/api: the key-value steps that the Lock and Election
// services are built from, run inside the member against its own node.
//
// Both services follow one recipe. A contender writes its own key,
// <prefix><lease id in hex>, attached to its lease, only if that key does not
// exist yet (so a retry with the same lease keeps its place); the key's
// create revision orders the contenders; a contender waits until every key
// under the prefix created before its own has been deleted (by the holder's
// release, or by its lease's expiry). Writes go through the log like any
// client's; reads are linearizable; waiting uses the member's watch hub.
//
// Thread-safety: a Recipes object is used by one request at a time (create
// one per call); it calls only thread-safe Node methods.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "api/service_util.h"
#include "base/coding.h"
#include "base/status.h"
#include "etcd/api/etcdserverpb/rpc.pb.h"
#include "mvcc/mvcc.h"
#include "server/server.h"

namespace conclave::api::internal {

// A watch on the member's hub that one thread waits on.
class HubWatch {
 public:
  HubWatch(server::EtcdGroup* node, const mvcc::WatchRequest& request);
  ~HubWatch();
  HubWatch(const HubWatch&) = delete;
  HubWatch& operator=(const HubWatch&) = delete;

  // Whether the watch was created (a compacted start revision refuses it).
  Status status() const { return status_; }
  // The next batch of events, waiting at most `wait`. Empty on timeout. A
  // response with `canceled` set ends the watch (compaction overtook it).
  std::vector<mvcc::WatchResponse> Next(std::chrono::milliseconds wait);

 private:
  struct Shared;
  server::EtcdGroup* node_;
  std::shared_ptr<Shared> shared_;
  mvcc::StreamId stream_ = 0;
  Status status_;
};

class Recipes {
 public:
  Recipes(server::EtcdGroup* node, grpc::ServerContext* context) : node_(node), context_(context) {}

  // A transaction through the log; the response carries its header.
  Result<etcdserverpb::TxnResponse> Txn(const etcdserverpb::TxnRequest& req);
  // A linearizable range; the response carries its header.
  Result<etcdserverpb::RangeResponse> Get(const etcdserverpb::RangeRequest& req);
  Result<etcdserverpb::DeleteRangeResponse> Delete(const std::string& key);

  // The key under `prefix` created first (the holder), or nullopt when there
  // is none. `header` gets the read's header.
  Result<std::optional<mvccpb::KeyValue>> FirstCreated(const std::string& prefix,
                                                       etcdserverpb::ResponseHeader* header);
  // Waits until no key under `prefix` with create revision <= max_create_rev
  // is left; returns the header of the read that saw none.
  Result<etcdserverpb::ResponseHeader> WaitDeletes(const std::string& prefix,
                                                   int64_t max_create_rev);
  // Waits until `key` is deleted at a revision after `revision`.
  Status WaitDelete(const std::string& key, int64_t revision);

  // kCancelled once the client has gone, kUnavailable once the member stops.
  Status Interrupted() const;

 private:
  server::EtcdGroup* node_;
  grpc::ServerContext* context_;
};

}  // namespace conclave::api::internal
