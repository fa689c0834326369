#include "api/services.h"

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

Result<server::ApplyResult> ProposeAndWait(server::EtcdGroup* node, serverpb::Command command) {
  ASSIGN_OR_RETURN(server::ApplyResult r, node->Propose(std::move(command)));
  if (!r.status.ok()) return r.status;
  return r;
}

Result<int64_t> SessionLease(server::EtcdGroup* node, int64_t lease) {
  if (lease != 0) return lease;
  serverpb::Command c;
  c.mutable_lease_grant()->set_id(node->NewLeaseId());
  c.mutable_lease_grant()->set_ttl(kSessionTtlSeconds);
  ASSIGN_OR_RETURN(server::ApplyResult r, ProposeAndWait(node, std::move(c)));
  return std::get<lease::GrantResult>(r.response).id;
}

}  // namespace internal

EtcdServices::EtcdServices(server::EtcdGroup* node, server::NativeKeyspace* native,
                           ServiceOptions options)
    : options_(options) {
  services_.push_back(internal::NewKvService(node, options_));
  services_.push_back(internal::NewWatchService(node));
  services_.push_back(internal::NewLeaseService(node, options_));
  services_.push_back(internal::NewClusterService(node, options_));
  services_.push_back(internal::NewMaintenanceService(node, options_));
  services_.push_back(internal::NewLockService(node, options_));
  services_.push_back(internal::NewElectionService(node, options_));
  if (native != nullptr) {
    services_.push_back(internal::NewNativeKvService(native, options_, server::Route::kAny));
    forwarded_native_ = internal::NewNativeKvService(native, options_, server::Route::kLocal);
  }
}

EtcdServices::~EtcdServices() = default;

void EtcdServices::RegisterPeer(grpc::ServerBuilder* builder) {
  if (forwarded_native_ != nullptr) builder->RegisterService(forwarded_native_.get());
}

void EtcdServices::Register(grpc::ServerBuilder* builder) {
  for (auto& s : services_)
    builder->RegisterService(s.get());
}

}  // namespace conclave::api
