// HttpStatusServer: the plain-HTTP endpoints of a member, on the
// --listen-metrics-urls: GET /metrics (Prometheus text format) and
// GET /health ({"health":"true"} with 200 while the member has a leader and
// is serving, {"health":"false"} with 503 otherwise), as etcd serves them.
//
// The metrics are read from the etcd group, the host and the transport at scrape time, so
// nothing on the request path updates a metric.
//
// Thread-safety: Start/Stop from one thread; civetweb's worker threads call
// the handlers.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "server/etcd_group.h"
#include "server/native_keyspace.h"
#include "server/transport.h"

struct mg_context;

namespace conclave::server {

class HttpStatusServer {
 public:
  // `native` may be null (no native keyspace).
  HttpStatusServer(EtcdGroup* etcd, Transport* transport, NativeKeyspace* native);
  ~HttpStatusServer();

  // `urls`: http://host:port each. Fails if any cannot be bound.
  Status Start(const std::vector<std::string>& urls);
  void Stop();

  // The /metrics body and the /health verdict (tests call these directly).
  std::string MetricsText() const;
  bool Healthy() const;

 private:
  EtcdGroup* etcd_;
  Transport* transport_;
  NativeKeyspace* native_;
  mg_context* ctx_ = nullptr;
};

}  // namespace conclave::server
