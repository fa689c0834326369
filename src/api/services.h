// The etcd v3 gRPC services of one member: KV, Watch, Lease, and the parts
// of Cluster and Maintenance that clients call on their own (MemberList,
// Status).
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
// they are forwarded to the leader through the transport.
//
// Threading: gRPC's synchronous server calls the handlers on its own
// threads. A Watch stream uses its handler thread to read requests and one
// more thread to write what the watch hub queues for it.
#pragma once

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "server/node.h"
#include "server/transport.h"

namespace conclave::api {

struct MemberInfo {
  uint64_t id = 0;
  std::string name;
  std::vector<std::string> peer_urls;
  // Names and peer URLs come from --initial-cluster; client URLs from what
  // each member publishes through the log once it runs.
};

struct ServiceOptions {
  int64_t max_request_bytes = 1'572'864;
  size_t max_txn_ops = 128;
  int64_t quota_backend_bytes = int64_t{2} << 30;
  std::vector<MemberInfo> members;
};

// The etcd API version these services speak, reported by Status.
inline constexpr const char* kEtcdApiVersion = "3.4.0";

class EtcdServices {
 public:
  EtcdServices(server::Node* node, server::Transport* transport, ServiceOptions options);
  ~EtcdServices();

  // Registers every service on `builder`; the services must outlive the server.
  void Register(grpc::ServerBuilder* builder);

 private:
  class KvImpl;
  class WatchImpl;
  class LeaseImpl;
  class ClusterImpl;
  class MaintenanceImpl;

  ServiceOptions options_;  // the services keep references into it
  std::unique_ptr<KvImpl> kv_;
  std::unique_ptr<WatchImpl> watch_;
  std::unique_ptr<LeaseImpl> lease_;
  std::unique_ptr<ClusterImpl> cluster_;
  std::unique_ptr<MaintenanceImpl> maintenance_;
};

}  // namespace conclave::api
