#include "api/services.h"

#include <mutex>
#include <random>
#include <utility>

#include "api/errors.h"
#include "api/service_util.h"

namespace conclave::api {

namespace internal {

grpc::Status ToGrpc(const Status& s) {
  if (s.ok()) return grpc::Status::OK;
  WireError w = ToWire(s);
  return grpc::Status(static_cast<grpc::StatusCode>(w.grpc_code), w.message);
}

grpc::Status ToGrpcFromRecipe(const Status& s) {
  if (s.ok()) return grpc::Status::OK;
  const WireError w = ToWire(s);
  for (const EtcdError& e : EtcdErrors()) {
    if (e.message == w.message && w.grpc_code != grpc_code::kUnavailable)
      return grpc::Status(grpc::StatusCode::UNKNOWN, w.message);
  }
  return grpc::Status(static_cast<grpc::StatusCode>(w.grpc_code), w.message);
}

Status RequestTooLarge() {
  return Status::InvalidArgument("etcdserver: request is too large");
}

Result<server::ApplyResult> ProposeAndWait(server::Node* node, serverpb::Command command) {
  ASSIGN_OR_RETURN(server::ApplyResult r, node->Propose(std::move(command)));
  if (!r.status.ok()) return r.status;
  return r;
}

int64_t NewLeaseId() {
  static std::mutex mu;
  static std::mt19937_64 random(std::random_device{}());
  std::lock_guard<std::mutex> lock(mu);
  int64_t id = 0;
  while (id <= 0)
    id = static_cast<int64_t>(random() >> 1);
  return id;
}

Result<int64_t> SessionLease(server::Node* node, int64_t lease) {
  if (lease != 0) return lease;
  serverpb::Command c;
  c.mutable_lease_grant()->set_id(NewLeaseId());
  c.mutable_lease_grant()->set_ttl(kSessionTtlSeconds);
  ASSIGN_OR_RETURN(server::ApplyResult r, ProposeAndWait(node, std::move(c)));
  return std::get<lease::GrantResult>(r.response).id;
}

}  // namespace internal

EtcdServices::EtcdServices(server::Node* node, server::Transport* transport, ServiceOptions options)
    : options_(options) {
  services_.push_back(internal::NewKvService(node, options_));
  services_.push_back(internal::NewWatchService(node));
  services_.push_back(internal::NewLeaseService(node, transport, options_));
  services_.push_back(internal::NewClusterService(node, transport, options_));
  services_.push_back(internal::NewMaintenanceService(node, transport, options_));
  services_.push_back(internal::NewLockService(node, options_));
  services_.push_back(internal::NewElectionService(node, options_));
}

EtcdServices::~EtcdServices() = default;

void EtcdServices::Register(grpc::ServerBuilder* builder) {
  for (auto& s : services_)
    builder->RegisterService(s.get());
}

}  // namespace conclave::api
