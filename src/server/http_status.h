// HttpStatusServer: the plain-HTTP endpoints of a member, on the
// --listen-metrics-urls: GET /metrics (Prometheus text format) and
// GET /health ({"health":"true"} with 200 while the member has a leader and
// is serving, {"health":"false"} with 503 otherwise), as etcd serves them;
// and Conclave's web page of the native ranges, GET /ranges (ranges_page.h)
// with its data, GET /ranges.json.
//
// The metrics are read from the etcd group, the host and the transport at scrape time, so
// nothing on the request path updates a metric.
//
// Thread-safety: Start/Stop from one thread; civetweb's worker threads call
// the handlers.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
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
  // GET /ranges.json: serverpb.ClusterView as JSON (proto field names);
  // kNotFound without a native keyspace.
  bool HasRanges() const { return native_ != nullptr; }
  // Built at most every two seconds (a view reads the meta range and asks
  // every member), whatever the number of pages open.
  Result<std::string> RangesJson();

 private:
  EtcdGroup* etcd_;
  Transport* transport_;
  NativeKeyspace* native_;
  mg_context* ctx_ = nullptr;
  std::vector<std::string> targets_;  // host:port of each listener
  // The last /ranges.json and when it was built; one builder at a time.
  std::mutex view_mu_;
  std::string view_json_;                          // guarded by view_mu_
  std::chrono::steady_clock::time_point view_at_;  // guarded by view_mu_
};

}  // namespace conclave::server
