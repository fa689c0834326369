// The etcd v3 gRPC services of one member: KV, Watch, Lease, Cluster,
// Maintenance, and the Lock and Election recipes served on top of them.
//
// Each handler translates the wire request (convert.h), checks it without
// state (size, limits, fields), then either proposes it through the node and
// waits for the applied result, or reads: linearizable reads wait for the
// node's read barrier first, serializable reads go straight to the store.
// Errors leave through errors.h, so codes and messages are etcd's. Every
// response header carries the cluster id, this member's id, a revision and
// the Raft term.
//
// Lease keep-alives and TTL queries need the leader's clock: on a follower
// they are forwarded to the leader (EtcdGroup::leader_calls).
//
// Threading: gRPC's synchronous server calls the handlers on its own
// threads. A Watch stream uses its handler thread to read requests and one
// more thread to write what the watch hub queues for it.
#pragma once

#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/service_type.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "server/server.h"

namespace conclave::api {

struct ServiceOptions {
  int64_t max_request_bytes = 1'572'864;
  size_t max_txn_ops = 128;
  int64_t quota_backend_bytes = int64_t{2} << 30;
};

// The etcd API version these services speak, reported by Status.
inline constexpr const char* kEtcdApiVersion = "3.4.0";

class EtcdServices {
 public:
  // `native` (may be null) adds the native KV service (conclave.kvpb.KV).
  EtcdServices(server::EtcdGroup* node, server::NativeKeyspace* native, ServiceOptions options);
  ~EtcdServices();

  // Registers every service on `builder`; the services must outlive the server.
  void Register(grpc::ServerBuilder* builder);
  // Registers what other members call on the peer listener: the native KV
  // service for the requests they forward (served here, never forwarded on).
  void RegisterPeer(grpc::ServerBuilder* builder);

 private:
  ServiceOptions options_;  // the services keep references into it
  std::vector<std::unique_ptr<grpc::Service>> services_;
  std::unique_ptr<grpc::Service> forwarded_native_;
};

}  // namespace conclave::api
