// Server: one Conclave member, built whole from its configuration.
//
// Start() finds out which member of which cluster this is (the data
// directory's identity; for a new cluster the flags; for a member joining
// an existing one, the cluster's answer), opens the Host (log, engine),
// adds the etcd keyspace's replica (group 1, whose replica ids are the
// member ids), starts the peer transport, the etcd API on the client URLs
// and the HTTP status endpoints, and publishes the member's client URLs
// through the log. Wait() blocks until SIGINT or SIGTERM (or until the
// member learns it was removed from the cluster); Stop() shuts everything
// down in the reverse order. `conclave serve` only parses flags and runs it.
//
// Thread-safety: Start, Wait and Stop from one thread.
//
// This header is also the server module's interface: what other modules use
// of it comes in with it. The member's parts (host.h, replica.h,
// state_machine.h), the front ends' views of its groups (etcd_group.h,
// native_keyspace.h), the etcd state machine (etcd_state_machine.h, which
// the simulator runs), the configuration (config.h), the data directory
// (data_dir.h) and membership's helpers (membership.h). The transport, the
// entry envelope, the range state machine's internals and the HTTP status
// endpoints are internal.
#pragma once

#include <memory>

#include "base/status.h"
#include "server/config.h"
#include "server/data_dir.h"
#include "server/etcd_group.h"
#include "server/etcd_state_machine.h"
#include "server/host.h"
#include "server/membership.h"
#include "server/native_keyspace.h"
#include "server/replica.h"
#include "server/state_machine.h"

namespace conclave::server {

class Server {
 public:
  explicit Server(ServerConfig config);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Blocks SIGINT and SIGTERM in the calling thread (and so in every thread
  // it starts) so that Wait can take them.
  Status Start();
  // Until SIGINT or SIGTERM.
  void Wait();
  void Stop();

 private:
  struct State;
  ServerConfig config_;
  std::unique_ptr<State> state_;
};

}  // namespace conclave::server
