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
#pragma once

#include <memory>

#include "base/status.h"
#include "server/config.h"

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
