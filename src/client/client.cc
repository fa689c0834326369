#include "client/client.h"

#include <fmt/format.h>
#include <grpcpp/grpcpp.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <optional>
#include <set>
#include <thread>

#include "client/range_router.h"
#include "conclave/kvpb/kv.grpc.pb.h"
#include "etcd/api/etcdserverpb/rpc.grpc.pb.h"
#include "etcd/server/v3election/v3electionpb/v3election.grpc.pb.h"
#include "etcd/server/v3lock/v3lockpb/v3lock.grpc.pb.h"
#include "storage/storage.h"

namespace conclave::client {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// How often Connect looks at the channels while it waits for one to connect.
constexpr milliseconds kDialPoll{10};
// Reconnect backoff of a channel whose member is down: short, so that a
// member that comes back is used again within about a second. (gRPC's
// "minimum" backoff is really the connect timeout; it keeps its default.)
constexpr int kReconnectBackoffMinMs = 100;
constexpr int kReconnectBackoffMaxMs = 1000;
// How long reading one endpoint's ranges for the router may take.
constexpr milliseconds kRouteRefreshTimeout{1000};

// Whether an UNAVAILABLE call failed because no connection could be made
// (gRPC says "failed to connect"), so the request never left.
bool NeverConnected(const grpc::Status& s) {
  std::string m = s.error_message();
  std::transform(m.begin(), m.end(), m.begin(), [](unsigned char ch) { return std::tolower(ch); });
  return m.find("failed to connect") != std::string::npos;
}
// Keep-alive loop: never renew less often than this, and wait this long
// before retrying a failed renewal.
constexpr milliseconds kKeepAliveIntervalMin{500};
constexpr milliseconds kKeepAliveRetry{200};

std::chrono::system_clock::time_point ToSystem(Clock::time_point deadline) {
  return std::chrono::system_clock::now() +
         std::chrono::duration_cast<std::chrono::system_clock::duration>(deadline - Clock::now());
}

}  // namespace

// ---- free functions --------------------------------------------------------

Result<std::string> ParseEndpoint(std::string_view endpoint) {
  std::string_view rest = endpoint;
  if (rest.starts_with("https://") || rest.starts_with("unixs://")) {
    return Status::InvalidArgument(fmt::format("endpoint {}: TLS is not supported", endpoint));
  }
  if (rest.starts_with("http://")) rest.remove_prefix(7);
  while (rest.ends_with('/'))
    rest.remove_suffix(1);
  const size_t colon = rest.rfind(':');
  if (rest.empty() || colon == std::string_view::npos || colon == 0 || colon + 1 == rest.size() ||
      rest.find('/') != std::string_view::npos) {
    return Status::InvalidArgument(
        fmt::format("endpoint {}: expected host:port or http://host:port", endpoint));
  }
  for (char c : rest.substr(colon + 1)) {
    if (c < '0' || c > '9') {
      return Status::InvalidArgument(fmt::format("endpoint {}: port is not a number", endpoint));
    }
  }
  return std::string(rest);
}

Result<std::vector<std::string>> ParseEndpoints(std::string_view comma_list) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= comma_list.size()) {
    size_t end = comma_list.find(',', start);
    if (end == std::string_view::npos) end = comma_list.size();
    std::string_view item = comma_list.substr(start, end - start);
    while (!item.empty() && item.front() == ' ')
      item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ')
      item.remove_suffix(1);
    if (!item.empty()) {
      ASSIGN_OR_RETURN(std::string ep, ParseEndpoint(item));
      out.push_back(std::move(ep));
    }
    start = end + 1;
  }
  if (out.empty()) return Status::InvalidArgument("no endpoints given");
  return out;
}

Status StatusFromGrpc(int grpc_code, std::string_view message) {
  const auto code = static_cast<StatusCode>(grpc_code);
  if (code == StatusCode::kDeadlineExceeded &&
      (message.empty() || message == "Deadline Exceeded")) {
    return Status::DeadlineExceeded("context deadline exceeded");
  }
  if (code == StatusCode::kCancelled && (message.empty() || message == "Cancelled")) {
    return Status(StatusCode::kCancelled, "context canceled");
  }
  if (message.empty()) return Status(code, std::string(StatusCodeName(code)));
  return Status(code, std::string(message));
}

namespace {

Status FromGrpc(const grpc::Status& s) {
  return StatusFromGrpc(static_cast<int>(s.error_code()), s.error_message());
}

// Responses of one stream, moved by a reader thread into a bounded queue that
// the caller drains with Next(timeout). The reader stops reading while the
// queue is full. `mu_` guards the queue, the final status and writes (the
// sync API allows one writer beside the reader; Finish must not overlap a
// write).
template <typename Request, typename Response>
class BufferedStream {
 public:
  using Stream = grpc::ClientReaderWriterInterface<Request, Response>;
  using ReadOnly = grpc::ClientReaderInterface<Response>;

  BufferedStream(std::unique_ptr<grpc::ClientContext> context, std::unique_ptr<Stream> stream)
      : context_(std::move(context)), stream_(std::move(stream)) {
    reader_ = std::thread([this] { ReadLoop(stream_.get()); });
  }
  BufferedStream(std::unique_ptr<grpc::ClientContext> context, std::unique_ptr<ReadOnly> stream)
      : context_(std::move(context)), read_only_(std::move(stream)) {
    reader_ = std::thread([this] { ReadLoop(read_only_.get()); });
  }
  ~BufferedStream() { Close(); }

  Status Write(const Request& request) {
    std::lock_guard lock(write_mu_);
    if (finished_ || stream_ == nullptr) return Status(StatusCode::kCancelled, "stream closed");
    if (!stream_->Write(request)) return Status::Unavailable("stream broken");
    return Status::Ok();
  }

  Result<bool> Next(milliseconds timeout, Response* out) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, timeout, [&] { return !queue_.empty() || done_; });
    if (!queue_.empty()) {
      *out = std::move(queue_.front());
      queue_.pop_front();
      cv_.notify_all();
      return true;
    }
    if (done_) return end_status_;
    return false;
  }

  void Close() {
    {
      std::lock_guard lock(mu_);
      closed_ = true;
      cv_.notify_all();
    }
    context_->TryCancel();
    if (reader_.joinable()) reader_.join();
  }

 private:
  template <typename Reader>
  void ReadLoop(Reader* reader) {
    Response response;
    while (reader->Read(&response)) {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return queue_.size() < kStreamBufferResponsesMax || closed_; });
      if (closed_) break;
      queue_.push_back(std::move(response));
      cv_.notify_all();
    }
    context_->TryCancel();
    grpc::Status s;
    {
      std::lock_guard write_lock(write_mu_);
      s = reader->Finish();
      finished_ = true;
    }
    std::lock_guard lock(mu_);
    done_ = true;
    if (closed_ || s.ok()) {
      end_status_ = Status(StatusCode::kCancelled, "stream closed");
    } else {
      end_status_ = FromGrpc(s);
    }
    cv_.notify_all();
  }

  std::unique_ptr<grpc::ClientContext> context_;
  std::unique_ptr<Stream> stream_;
  std::unique_ptr<ReadOnly> read_only_;
  std::thread reader_;

  std::mutex write_mu_;
  bool finished_ = false;  // guarded by write_mu_

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Response> queue_;  // guarded by mu_
  bool closed_ = false;         // guarded by mu_
  bool done_ = false;           // guarded by mu_
  Status end_status_;           // guarded by mu_
};

class WatchStreamImpl final : public WatchStream {
 public:
  WatchStreamImpl(
      std::unique_ptr<grpc::ClientContext> context,
      std::unique_ptr<grpc::ClientReaderWriterInterface<pb::WatchRequest, pb::WatchResponse>>
          stream)
      : stream_(std::move(context), std::move(stream)) {}

  Status Create(const pb::WatchCreateRequest& request) override {
    pb::WatchRequest r;
    *r.mutable_create_request() = request;
    return stream_.Write(r);
  }
  Status Cancel(int64_t watch_id) override {
    pb::WatchRequest r;
    r.mutable_cancel_request()->set_watch_id(watch_id);
    return stream_.Write(r);
  }
  Status RequestProgress() override {
    pb::WatchRequest r;
    r.mutable_progress_request();
    return stream_.Write(r);
  }
  Result<bool> Next(milliseconds timeout, pb::WatchResponse* out) override {
    return stream_.Next(timeout, out);
  }
  void Close() override { stream_.Close(); }

 private:
  BufferedStream<pb::WatchRequest, pb::WatchResponse> stream_;
};

class ObserveStreamImpl final : public ObserveStream {
 public:
  ObserveStreamImpl(
      std::unique_ptr<grpc::ClientContext> context,
      std::unique_ptr<grpc::ClientReaderInterface<v3electionpb::LeaderResponse>> stream)
      : stream_(std::move(context), std::move(stream)) {}

  Result<bool> Next(milliseconds timeout, v3electionpb::LeaderResponse* out) override {
    return stream_.Next(timeout, out);
  }
  void Close() override { stream_.Close(); }

 private:
  BufferedStream<v3electionpb::LeaderRequest, v3electionpb::LeaderResponse> stream_;
};

}  // namespace

// ---- Client::Impl ----------------------------------------------------------

struct Client::Impl {
  struct Endpoint {
    std::string target;
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<pb::KV::Stub> kv;
    std::unique_ptr<pb::Watch::Stub> watch;
    std::unique_ptr<pb::Lease::Stub> lease;
    std::unique_ptr<pb::Cluster::Stub> cluster;
    std::unique_ptr<pb::Maintenance::Stub> maintenance;
    std::unique_ptr<v3lockpb::Lock::Stub> lock;
    std::unique_ptr<v3electionpb::Election::Stub> election;
    std::unique_ptr<kvpb::KV::Stub> native;
  };

  // Whether a call may be sent again to another endpoint after it failed
  // with UNAVAILABLE on a live connection.
  enum class Retry : uint8_t { kIdempotent, kOnlyIfNotSent };

  ClientOptions options;
  std::vector<Endpoint> endpoints;  // fixed after Connect

  mutable std::mutex mu;
  size_t current = 0;                      // guarded by mu
  std::set<grpc::ClientContext*> waiting;  // guarded by mu
  bool waits_cancelled = false;            // guarded by mu
  RangeRouter router;

  size_t Current() const {
    std::lock_guard lock(mu);
    return current;
  }
  void SetCurrent(size_t i) {
    std::lock_guard lock(mu);
    current = i;
  }

  // Runs `call(endpoint, context, response)` with failover; see client.h.
  // A `waits` call is registered so that CancelWaits can end it.
  template <typename Response, typename Call>
  Result<Response> Unary(Retry retry, Call call, milliseconds timeout, bool waits = false,
                         std::optional<size_t> prefer = std::nullopt) {
    const Clock::time_point deadline = Clock::now() + timeout;
    const size_t start = prefer.value_or(Current());
    Status last = Status::Unavailable("no endpoint");
    for (size_t attempt = 0; attempt < endpoints.size(); ++attempt) {
      const size_t index = (start + attempt) % endpoints.size();
      Endpoint& ep = endpoints[index];
      const bool was_connected = ep.channel->GetState(false) == GRPC_CHANNEL_READY;
      grpc::ClientContext context;
      context.set_deadline(ToSystem(deadline));
      if (waits) {
        std::lock_guard lock(mu);
        if (waits_cancelled) return Status(StatusCode::kCancelled, "context canceled");
        waiting.insert(&context);
      }
      Response response;
      const grpc::Status s = call(ep, &context, &response);
      if (waits) {
        std::lock_guard lock(mu);
        waiting.erase(&context);
      }
      if (s.ok()) {
        // A routed call leaves the endpoint other calls use alone.
        if (!prefer.has_value() || index != *prefer) SetCurrent(index);
        return response;
      }
      last = FromGrpc(s);
      // A write goes elsewhere only when it cannot have left: there was no
      // connection, and making one failed (a connection made for it may
      // have carried it before it broke).
      const bool may_retry = s.error_code() == grpc::StatusCode::UNAVAILABLE &&
                             (retry == Retry::kIdempotent || (!was_connected && NeverConnected(s)));
      if (!may_retry || Clock::now() >= deadline) return last;
      // A routed call that failed away from the current endpoint leaves it.
      if (!prefer.has_value() || index == Current()) SetCurrent((index + 1) % endpoints.size());
    }
    return last;
  }

  // A native point request for `key`: to its range's leader when known
  // (RangeRouter), learning from the answer's route hint.
  template <typename Response, typename Call>
  Result<Response> Routed(std::string_view key, Retry retry, Call call, milliseconds timeout) {
    std::optional<size_t> prefer;
    const bool routing = options.route_native && endpoints.size() > 1;
    if (routing) {
      MaybeRefreshRoutes();
      prefer = router.Pick(key);
    }
    return Unary<Response>(
        retry,
        [&](Endpoint& e, grpc::ClientContext* c, Response* r) {
          const grpc::Status s = call(e, c, r);
          if (routing && s.ok()) {
            const auto& trailing = c->GetServerTrailingMetadata();
            auto it =
                trailing.find(grpc::string_ref(kRouteHintHeader.data(), kRouteHintHeader.size()));
            if (it != trailing.end()) {
              router.Learn(key, std::string_view(it->second.data(), it->second.size()));
            }
          }
          return s;
        },
        timeout, false, prefer);
  }

  // Reads every endpoint's ranges when the routes are stale (one caller at
  // a time; the others route with what they have).
  void MaybeRefreshRoutes() {
    if (!router.ClaimRefresh(Clock::now())) return;
    std::vector<std::optional<kvpb::RangesResponse>> answers(endpoints.size());
    const milliseconds wait = std::min(options.call_timeout, kRouteRefreshTimeout);
    for (size_t i = 0; i < endpoints.size(); ++i) {
      grpc::ClientContext context;
      context.set_deadline(ToSystem(Clock::now() + wait));
      kvpb::RangesResponse resp;
      if (endpoints[i].native->Ranges(&context, kvpb::RangesRequest(), &resp).ok()) {
        answers[i] = std::move(resp);
      }
    }
    router.Refresh(answers, Clock::now());
  }

  // An endpoint whose channel is connected, starting from the current one;
  // waits for one to connect until `deadline`.
  Result<size_t> ConnectedEndpoint(Clock::time_point deadline) {
    const size_t start = Current();
    for (;;) {
      grpc_connectivity_state first_state = GRPC_CHANNEL_IDLE;
      for (size_t attempt = 0; attempt < endpoints.size(); ++attempt) {
        const size_t index = (start + attempt) % endpoints.size();
        const grpc_connectivity_state state = endpoints[index].channel->GetState(true);
        if (state == GRPC_CHANNEL_READY) {
          SetCurrent(index);
          return index;
        }
        if (attempt == 0) first_state = state;
      }
      if (Clock::now() >= deadline) {
        return Status::Unavailable(
            fmt::format("cannot connect to any endpoint of {}", fmt::join(options.endpoints, ",")));
      }
      // Waiting on a channel also drives gRPC's polling, which is what makes
      // every channel's connection attempt progress.
      (void)endpoints[start].channel->WaitForStateChange(
          first_state, ToSystem(std::min(deadline, Clock::now() + kDialPoll)));
    }
  }
};

Client::Client(const ClientOptions& options, std::unique_ptr<Impl> impl)
    : options_(options), impl_(std::move(impl)) {}

Client::~Client() = default;

Result<std::unique_ptr<Client>> Client::Connect(const ClientOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  if (options.endpoints.empty()) return Status::InvalidArgument("no endpoints given");
  for (const std::string& raw : options.endpoints) {
    ASSIGN_OR_RETURN(std::string target, ParseEndpoint(raw));
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(options.max_receive_bytes);
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, kReconnectBackoffMinMs);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, kReconnectBackoffMaxMs);
    // A channel of its own per endpoint: a dead member's backoff must not
    // be shared with another client's channel to it.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    Impl::Endpoint ep;
    ep.target = target;
    ep.channel = grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
    ep.kv = pb::KV::NewStub(ep.channel);
    ep.watch = pb::Watch::NewStub(ep.channel);
    ep.lease = pb::Lease::NewStub(ep.channel);
    ep.cluster = pb::Cluster::NewStub(ep.channel);
    ep.maintenance = pb::Maintenance::NewStub(ep.channel);
    ep.lock = v3lockpb::Lock::NewStub(ep.channel);
    ep.election = v3electionpb::Election::NewStub(ep.channel);
    ep.native = kvpb::KV::NewStub(ep.channel);
    impl->endpoints.push_back(std::move(ep));
  }
  auto connected = impl->ConnectedEndpoint(Clock::now() + options.dial_timeout);
  if (!connected.ok()) {
    return Status::Unavailable(fmt::format("cannot connect to {} within {} ms",
                                           fmt::join(options.endpoints, ","),
                                           options.dial_timeout.count()));
  }
  return std::unique_ptr<Client>(new Client(options, std::move(impl)));
}

std::string Client::current_endpoint() const {
  return impl_->endpoints[impl_->Current()].target;
}

void Client::CancelWaits() {
  std::lock_guard lock(impl_->mu);
  impl_->waits_cancelled = true;
  for (grpc::ClientContext* c : impl_->waiting)
    c->TryCancel();
}

// ---- KV --------------------------------------------------------------------

using Retry = Client::Impl::Retry;
using Endpoint = Client::Impl::Endpoint;
using Ctx = grpc::ClientContext;

Result<pb::RangeResponse> Client::Range(const pb::RangeRequest& request) {
  return impl_->Unary<pb::RangeResponse>(
      Retry::kIdempotent,
      [&](Endpoint& e, Ctx* c, pb::RangeResponse* r) { return e.kv->Range(c, request, r); },
      options_.call_timeout);
}

Result<pb::PutResponse> Client::Put(const pb::PutRequest& request) {
  return impl_->Unary<pb::PutResponse>(
      Retry::kOnlyIfNotSent,
      [&](Endpoint& e, Ctx* c, pb::PutResponse* r) { return e.kv->Put(c, request, r); },
      options_.call_timeout);
}

Result<kvpb::PutResponse> Client::NativePut(const kvpb::PutRequest& request) {
  return impl_->Routed<kvpb::PutResponse>(
      request.key(), Retry::kOnlyIfNotSent,
      [&](Endpoint& e, Ctx* c, kvpb::PutResponse* r) { return e.native->Put(c, request, r); },
      options_.call_timeout);
}

Result<kvpb::GetResponse> Client::NativeGet(const kvpb::GetRequest& request) {
  return impl_->Routed<kvpb::GetResponse>(
      request.key(), Retry::kIdempotent,
      [&](Endpoint& e, Ctx* c, kvpb::GetResponse* r) { return e.native->Get(c, request, r); },
      options_.call_timeout);
}

Result<kvpb::DeleteResponse> Client::NativeDelete(const kvpb::DeleteRequest& request) {
  return impl_->Routed<kvpb::DeleteResponse>(
      request.key(), Retry::kOnlyIfNotSent,
      [&](Endpoint& e, Ctx* c, kvpb::DeleteResponse* r) { return e.native->Delete(c, request, r); },
      options_.call_timeout);
}

Result<kvpb::DeleteRangeResponse> Client::NativeDeleteRange(
    const kvpb::DeleteRangeRequest& request) {
  return impl_->Unary<kvpb::DeleteRangeResponse>(
      Retry::kOnlyIfNotSent,
      [&](Endpoint& e, Ctx* c, kvpb::DeleteRangeResponse* r) {
        return e.native->DeleteRange(c, request, r);
      },
      options_.call_timeout);
}

Result<kvpb::ScanResponse> Client::NativeScan(const kvpb::ScanRequest& request) {
  return impl_->Unary<kvpb::ScanResponse>(
      Retry::kIdempotent,
      [&](Endpoint& e, Ctx* c, kvpb::ScanResponse* r) { return e.native->Scan(c, request, r); },
      options_.call_timeout);
}

Result<std::vector<kvpb::KeyValue>> Client::NativeScanAll(std::string start, std::string end,
                                                          uint64_t limit) {
  std::vector<kvpb::KeyValue> out;
  kvpb::ScanRequest req;
  req.set_start(std::move(start));
  req.set_end(std::move(end));
  while (true) {
    req.set_limit(limit == 0 ? 0 : limit - out.size());
    ASSIGN_OR_RETURN(kvpb::ScanResponse page, NativeScan(req));
    for (kvpb::KeyValue& kv : *page.mutable_kvs())
      out.push_back(std::move(kv));
    if (!page.more() || (limit != 0 && out.size() >= limit)) return out;
    req.set_start(page.resume_key());
  }
}

Result<kvpb::RangesResponse> Client::NativeRanges(bool cluster) {
  kvpb::RangesRequest request;
  request.set_cluster(cluster);
  return impl_->Unary<kvpb::RangesResponse>(
      Retry::kIdempotent,
      [&](Endpoint& e, Ctx* c, kvpb::RangesResponse* r) { return e.native->Ranges(c, request, r); },
      options_.call_timeout);
}

Result<kvpb::NodesResponse> Client::NativeNodes() {
  return impl_->Unary<kvpb::NodesResponse>(
      Retry::kIdempotent,
      [&](Endpoint& e, Ctx* c, kvpb::NodesResponse* r) {
        return e.native->Nodes(c, kvpb::NodesRequest(), r);
      },
      options_.call_timeout);
}

Status Client::NativeDrainNode(uint64_t node, bool cancel) {
  kvpb::DrainNodeRequest request;
  request.set_node_id(node);
  request.set_cancel(cancel);
  // Recording the drain again changes nothing: safe to resend.
  return impl_
      ->Unary<kvpb::DrainNodeResponse>(
          Retry::kIdempotent,
          [&](Endpoint& e, Ctx* c, kvpb::DrainNodeResponse* r) {
            return e.native->DrainNode(c, request, r);
          },
          options_.call_timeout)
      .status();
}

Result<kvpb::SplitResponse> Client::NativeSplit(std::string key) {
  kvpb::SplitRequest request;
  request.set_key(std::move(key));
  return impl_->Unary<kvpb::SplitResponse>(
      Retry::kOnlyIfNotSent,
      [&](Endpoint& e, Ctx* c, kvpb::SplitResponse* r) { return e.native->Split(c, request, r); },
      options_.call_timeout);
}

Result<kvpb::MergeResponse> Client::NativeMerge(std::string key,
                                                std::chrono::milliseconds timeout) {
  kvpb::MergeRequest request;
  request.set_key(std::move(key));
  return impl_->Unary<kvpb::MergeResponse>(
      Retry::kOnlyIfNotSent,
      [&](Endpoint& e, Ctx* c, kvpb::MergeResponse* r) { return e.native->Merge(c, request, r); },
      timeout);
}

Result<kvpb::MoveReplicaResponse> Client::NativeMoveReplica(uint64_t range_id, uint64_t from,
                                                            uint64_t to,
                                                            std::chrono::milliseconds timeout) {
  kvpb::MoveReplicaRequest request;
  request.set_range_id(range_id);
  request.set_from_node(from);
  request.set_to_node(to);
  return impl_->Unary<kvpb::MoveReplicaResponse>(
      Retry::kOnlyIfNotSent,
      [&](Endpoint& e, Ctx* c, kvpb::MoveReplicaResponse* r) {
        return e.native->MoveReplica(c, request, r);
      },
      timeout);
}

Result<kvpb::TransferLeaderResponse> Client::NativeTransferLeader(uint64_t range_id, uint64_t to) {
  kvpb::TransferLeaderRequest request;
  request.set_range_id(range_id);
  request.set_to_node(to);
  return impl_->Unary<kvpb::TransferLeaderResponse>(
      Retry::kOnlyIfNotSent,
      [&](Endpoint& e, Ctx* c, kvpb::TransferLeaderResponse* r) {
        return e.native->TransferLeader(c, request, r);
      },
      std::chrono::seconds(30));
}

Result<pb::DeleteRangeResponse> Client::DeleteRange(const pb::DeleteRangeRequest& request) {
  return impl_->Unary<pb::DeleteRangeResponse>(
      Retry::kOnlyIfNotSent,
      [&](Endpoint& e, Ctx* c, pb::DeleteRangeResponse* r) {
        return e.kv->DeleteRange(c, request, r);
      },
      options_.call_timeout);
}

Result<pb::TxnResponse> Client::Txn(const pb::TxnRequest& request) {
  return impl_->Unary<pb::TxnResponse>(
      Retry::kOnlyIfNotSent,
      [&](Endpoint& e, Ctx* c, pb::TxnResponse* r) { return e.kv->Txn(c, request, r); },
      options_.call_timeout);
}

Result<pb::CompactionResponse> Client::Compact(const pb::CompactionRequest& request) {
  return impl_->Unary<pb::CompactionResponse>(
      Retry::kIdempotent,
      [&](Endpoint& e, Ctx* c, pb::CompactionResponse* r) { return e.kv->Compact(c, request, r); },
      options_.call_timeout);
}

// ---- Watch -----------------------------------------------------------------

Result<std::unique_ptr<WatchStream>> Client::Watch() {
  ASSIGN_OR_RETURN(size_t index, impl_->ConnectedEndpoint(Clock::now() + options_.call_timeout));
  auto context = std::make_unique<Ctx>();
  auto stream = impl_->endpoints[index].watch->Watch(context.get());
  return std::unique_ptr<WatchStream>(
      std::make_unique<WatchStreamImpl>(std::move(context), std::move(stream)));
}

// ---- Lease -----------------------------------------------------------------

Result<pb::LeaseGrantResponse> Client::LeaseGrant(int64_t ttl_seconds, int64_t id) {
  pb::LeaseGrantRequest request;
  request.set_ttl(ttl_seconds);
  request.set_id(id);
  return impl_->Unary<pb::LeaseGrantResponse>(
      Retry::kOnlyIfNotSent,
      [&](Endpoint& e, Ctx* c, pb::LeaseGrantResponse* r) {
        return e.lease->LeaseGrant(c, request, r);
      },
      options_.call_timeout);
}

Result<pb::LeaseRevokeResponse> Client::LeaseRevoke(int64_t id) {
  pb::LeaseRevokeRequest request;
  request.set_id(id);
  return impl_->Unary<pb::LeaseRevokeResponse>(
      Retry::kOnlyIfNotSent,
      [&](Endpoint& e, Ctx* c, pb::LeaseRevokeResponse* r) {
        return e.lease->LeaseRevoke(c, request, r);
      },
      options_.call_timeout);
}

Result<pb::LeaseTimeToLiveResponse> Client::LeaseTimeToLive(int64_t id, bool keys) {
  pb::LeaseTimeToLiveRequest request;
  request.set_id(id);
  request.set_keys(keys);
  return impl_->Unary<pb::LeaseTimeToLiveResponse>(
      Retry::kIdempotent,
      [&](Endpoint& e, Ctx* c, pb::LeaseTimeToLiveResponse* r) {
        return e.lease->LeaseTimeToLive(c, request, r);
      },
      options_.call_timeout);
}

Result<pb::LeaseLeasesResponse> Client::LeaseLeases() {
  pb::LeaseLeasesRequest request;
  return impl_->Unary<pb::LeaseLeasesResponse>(
      Retry::kIdempotent,
      [&](Endpoint& e, Ctx* c, pb::LeaseLeasesResponse* r) {
        return e.lease->LeaseLeases(c, request, r);
      },
      options_.call_timeout);
}

Result<pb::LeaseKeepAliveResponse> Client::LeaseKeepAliveOnce(int64_t id) {
  pb::LeaseKeepAliveRequest request;
  request.set_id(id);
  // One round trip on a stream of its own; renewing twice is harmless.
  return impl_->Unary<pb::LeaseKeepAliveResponse>(
      Retry::kIdempotent,
      [&](Endpoint& e, Ctx* c, pb::LeaseKeepAliveResponse* r) {
        auto stream = e.lease->LeaseKeepAlive(c);
        const bool sent = stream->Write(request);
        const bool got = sent && stream->Read(r);
        if (got) c->TryCancel();
        grpc::Status s = stream->Finish();
        if (got) return grpc::Status::OK;
        if (s.ok()) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "keep-alive stream closed");
        return s;
      },
      options_.call_timeout);
}

namespace {

class KeepAliveLoopImpl final : public KeepAliveLoop {
 public:
  KeepAliveLoopImpl(Client* client, int64_t id, int64_t ttl_seconds,
                    std::function<void(const pb::LeaseKeepAliveResponse&)> on_response)
      : client_(client), id_(id), on_response_(std::move(on_response)) {
    expiry_ = Clock::now() + std::chrono::seconds(ttl_seconds);
    interval_ = Interval(ttl_seconds);
    thread_ = std::thread([this] { Run(); });
  }
  ~KeepAliveLoopImpl() override { Close(); }

  bool alive() const override {
    std::lock_guard lock(mu_);
    return !done_;
  }
  Status status() const override {
    std::lock_guard lock(mu_);
    return status_;
  }
  bool WaitDone(milliseconds timeout) override {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return done_; });
  }
  void Close() override {
    {
      std::lock_guard lock(mu_);
      closed_ = true;
      cv_.notify_all();
    }
    if (thread_.joinable()) thread_.join();
  }

 private:
  static milliseconds Interval(int64_t ttl_seconds) {
    return std::max(kKeepAliveIntervalMin, milliseconds(ttl_seconds * 1000 / 3));
  }

  // Sleeps up to `d`; false once closed.
  bool Sleep(milliseconds d) {
    std::unique_lock lock(mu_);
    return !cv_.wait_for(lock, d, [&] { return closed_; });
  }

  void Finish(Status s) {
    std::lock_guard lock(mu_);
    status_ = std::move(s);
    done_ = true;
    cv_.notify_all();
  }

  void Run() {
    // The first renewal is immediate: the lease may be older than its TTL
    // suggests.
    milliseconds wait{0};
    while (Sleep(wait)) {
      auto r = client_->LeaseKeepAliveOnce(id_);
      if (r.ok() && r->ttl() <= 0) {
        return Finish(Status::NotFound(fmt::format("lease {:016x} expired or revoked", id_)));
      }
      if (r.ok()) {
        expiry_ = Clock::now() + std::chrono::seconds(r->ttl());
        interval_ = Interval(r->ttl());
        if (on_response_) on_response_(*r);
        wait = interval_;
        continue;
      }
      if (Clock::now() >= expiry_) return Finish(r.status());
      wait = kKeepAliveRetry;
    }
    Finish(Status::Ok());
  }

  Client* const client_;
  const int64_t id_;
  const std::function<void(const pb::LeaseKeepAliveResponse&)> on_response_;
  // Used by the loop's thread only.
  Clock::time_point expiry_;
  milliseconds interval_{0};
  std::thread thread_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool closed_ = false;  // guarded by mu_
  bool done_ = false;    // guarded by mu_
  Status status_;        // guarded by mu_
};

}  // namespace

Result<std::unique_ptr<KeepAliveLoop>> Client::LeaseKeepAlive(
    int64_t id, int64_t ttl_seconds,
    std::function<void(const pb::LeaseKeepAliveResponse&)> on_response) {
  if (ttl_seconds <= 0) return Status::InvalidArgument("keep-alive needs a positive TTL");
  return std::unique_ptr<KeepAliveLoop>(
      std::make_unique<KeepAliveLoopImpl>(this, id, ttl_seconds, std::move(on_response)));
}

// ---- Lock ------------------------------------------------------------------

Result<v3lockpb::LockResponse> Client::Lock(std::string_view name, int64_t lease,
                                            milliseconds wait) {
  v3lockpb::LockRequest request;
  request.set_name(std::string(name));
  request.set_lease(lease);
  // Waiting for a lock is idempotent per lease: the server keys the waiter
  // by the lease, so a retry finds the same waiter.
  return impl_->Unary<v3lockpb::LockResponse>(
      Retry::kIdempotent,
      [&](Endpoint& e, Ctx* c, v3lockpb::LockResponse* r) { return e.lock->Lock(c, request, r); },
      wait, /*waits=*/true);
}

Result<v3lockpb::UnlockResponse> Client::Unlock(std::string_view key) {
  v3lockpb::UnlockRequest request;
  request.set_key(std::string(key));
  return impl_->Unary<v3lockpb::UnlockResponse>(
      Retry::kIdempotent,
      [&](Endpoint& e, Ctx* c, v3lockpb::UnlockResponse* r) {
        return e.lock->Unlock(c, request, r);
      },
      options_.call_timeout);
}

// ---- Election --------------------------------------------------------------

Result<v3electionpb::CampaignResponse> Client::Campaign(std::string_view name, int64_t lease,
                                                        std::string_view value, milliseconds wait) {
  v3electionpb::CampaignRequest request;
  request.set_name(std::string(name));
  request.set_lease(lease);
  request.set_value(std::string(value));
  return impl_->Unary<v3electionpb::CampaignResponse>(
      Retry::kIdempotent,
      [&](Endpoint& e, Ctx* c, v3electionpb::CampaignResponse* r) {
        return e.election->Campaign(c, request, r);
      },
      wait, /*waits=*/true);
}

Result<v3electionpb::ProclaimResponse> Client::Proclaim(const v3electionpb::LeaderKey& leader,
                                                        std::string_view value) {
  v3electionpb::ProclaimRequest request;
  *request.mutable_leader() = leader;
  request.set_value(std::string(value));
  return impl_->Unary<v3electionpb::ProclaimResponse>(
      Retry::kIdempotent,
      [&](Endpoint& e, Ctx* c, v3electionpb::ProclaimResponse* r) {
        return e.election->Proclaim(c, request, r);
      },
      options_.call_timeout);
}

Result<v3electionpb::LeaderResponse> Client::Leader(std::string_view name) {
  v3electionpb::LeaderRequest request;
  request.set_name(std::string(name));
  return impl_->Unary<v3electionpb::LeaderResponse>(
      Retry::kIdempotent,
      [&](Endpoint& e, Ctx* c, v3electionpb::LeaderResponse* r) {
        return e.election->Leader(c, request, r);
      },
      options_.call_timeout);
}

Result<std::unique_ptr<ObserveStream>> Client::Observe(std::string_view name) {
  ASSIGN_OR_RETURN(size_t index, impl_->ConnectedEndpoint(Clock::now() + options_.call_timeout));
  v3electionpb::LeaderRequest request;
  request.set_name(std::string(name));
  auto context = std::make_unique<Ctx>();
  auto stream = impl_->endpoints[index].election->Observe(context.get(), request);
  return std::unique_ptr<ObserveStream>(
      std::make_unique<ObserveStreamImpl>(std::move(context), std::move(stream)));
}

Result<v3electionpb::ResignResponse> Client::Resign(const v3electionpb::LeaderKey& leader) {
  v3electionpb::ResignRequest request;
  *request.mutable_leader() = leader;
  return impl_->Unary<v3electionpb::ResignResponse>(
      Retry::kIdempotent,
      [&](Endpoint& e, Ctx* c, v3electionpb::ResignResponse* r) {
        return e.election->Resign(c, request, r);
      },
      options_.call_timeout);
}

// ---- Cluster ---------------------------------------------------------------

Result<pb::MemberListResponse> Client::MemberList(bool linearizable) {
  pb::MemberListRequest request;
  request.set_linearizable(linearizable);
  return impl_->Unary<pb::MemberListResponse>(
      Retry::kIdempotent,
      [&](Endpoint& e, Ctx* c, pb::MemberListResponse* r) {
        return e.cluster->MemberList(c, request, r);
      },
      options_.call_timeout);
}

Result<pb::MemberAddResponse> Client::MemberAdd(const std::vector<std::string>& peer_urls,
                                                bool learner) {
  pb::MemberAddRequest request;
  for (const std::string& u : peer_urls)
    request.add_peerurls(u);
  request.set_islearner(learner);
  return impl_->Unary<pb::MemberAddResponse>(
      Retry::kOnlyIfNotSent,
      [&](Endpoint& e, Ctx* c, pb::MemberAddResponse* r) {
        return e.cluster->MemberAdd(c, request, r);
      },
      options_.call_timeout);
}

Result<pb::MemberRemoveResponse> Client::MemberRemove(uint64_t id) {
  pb::MemberRemoveRequest request;
  request.set_id(id);
  return impl_->Unary<pb::MemberRemoveResponse>(
      Retry::kOnlyIfNotSent,
      [&](Endpoint& e, Ctx* c, pb::MemberRemoveResponse* r) {
        return e.cluster->MemberRemove(c, request, r);
      },
      options_.call_timeout);
}

Result<pb::MemberUpdateResponse> Client::MemberUpdate(uint64_t id,
                                                      const std::vector<std::string>& peer_urls) {
  pb::MemberUpdateRequest request;
  request.set_id(id);
  for (const std::string& u : peer_urls)
    request.add_peerurls(u);
  return impl_->Unary<pb::MemberUpdateResponse>(
      Retry::kIdempotent,
      [&](Endpoint& e, Ctx* c, pb::MemberUpdateResponse* r) {
        return e.cluster->MemberUpdate(c, request, r);
      },
      options_.call_timeout);
}

Result<pb::MemberPromoteResponse> Client::MemberPromote(uint64_t id) {
  pb::MemberPromoteRequest request;
  request.set_id(id);
  return impl_->Unary<pb::MemberPromoteResponse>(
      Retry::kOnlyIfNotSent,
      [&](Endpoint& e, Ctx* c, pb::MemberPromoteResponse* r) {
        return e.cluster->MemberPromote(c, request, r);
      },
      options_.call_timeout);
}

// ---- Maintenance -----------------------------------------------------------

Result<pb::StatusResponse> Client::MemberStatus() {
  pb::StatusRequest request;
  return impl_->Unary<pb::StatusResponse>(
      Retry::kIdempotent,
      [&](Endpoint& e, Ctx* c, pb::StatusResponse* r) {
        return e.maintenance->Status(c, request, r);
      },
      options_.call_timeout);
}

Result<pb::AlarmResponse> Client::Alarm(const pb::AlarmRequest& request) {
  return impl_->Unary<pb::AlarmResponse>(
      request.action() == pb::AlarmRequest::GET ? Retry::kIdempotent : Retry::kOnlyIfNotSent,
      [&](Endpoint& e, Ctx* c, pb::AlarmResponse* r) {
        return e.maintenance->Alarm(c, request, r);
      },
      options_.call_timeout);
}

Result<pb::HashResponse> Client::Hash() {
  pb::HashRequest request;
  return impl_->Unary<pb::HashResponse>(
      Retry::kIdempotent,
      [&](Endpoint& e, Ctx* c, pb::HashResponse* r) { return e.maintenance->Hash(c, request, r); },
      options_.call_timeout);
}

Result<pb::HashKVResponse> Client::HashKV(int64_t revision) {
  pb::HashKVRequest request;
  request.set_revision(revision);
  return impl_->Unary<pb::HashKVResponse>(
      Retry::kIdempotent,
      [&](Endpoint& e, Ctx* c, pb::HashKVResponse* r) {
        return e.maintenance->HashKV(c, request, r);
      },
      options_.call_timeout);
}

Result<pb::DefragmentResponse> Client::Defragment() {
  pb::DefragmentRequest request;
  return impl_->Unary<pb::DefragmentResponse>(
      Retry::kIdempotent,
      [&](Endpoint& e, Ctx* c, pb::DefragmentResponse* r) {
        return e.maintenance->Defragment(c, request, r);
      },
      options_.call_timeout);
}

Result<pb::MoveLeaderResponse> Client::MoveLeader(uint64_t target_id) {
  pb::MoveLeaderRequest request;
  request.set_targetid(target_id);
  return impl_->Unary<pb::MoveLeaderResponse>(
      Retry::kOnlyIfNotSent,
      [&](Endpoint& e, Ctx* c, pb::MoveLeaderResponse* r) {
        return e.maintenance->MoveLeader(c, request, r);
      },
      options_.call_timeout);
}

Result<uint64_t> Client::Snapshot(
    const std::function<conclave::Status(const pb::SnapshotResponse&)>& on_chunk) {
  const Clock::time_point deadline = Clock::now() + options_.snapshot_timeout;
  ASSIGN_OR_RETURN(size_t index, impl_->ConnectedEndpoint(Clock::now() + options_.call_timeout));
  Ctx context;
  context.set_deadline(ToSystem(deadline));
  auto reader = impl_->endpoints[index].maintenance->Snapshot(&context, pb::SnapshotRequest());
  pb::SnapshotResponse chunk;
  uint64_t bytes = 0;
  conclave::Status stopped;
  while (reader->Read(&chunk)) {
    bytes += chunk.blob().size();
    stopped = on_chunk(chunk);
    if (!stopped.ok()) {
      context.TryCancel();
      break;
    }
  }
  const grpc::Status s = reader->Finish();
  if (!stopped.ok()) return stopped;
  if (!s.ok()) return FromGrpc(s);
  return bytes;
}

Result<uint64_t> Client::SnapshotToFile(const std::string& path, storage::FileSystem* fs) {
  std::unique_ptr<storage::FileSystem> posix;
  if (fs == nullptr) {
    posix = storage::NewPosixFileSystem();
    fs = posix.get();
  }
  const std::string part = path + ".part";
  ASSIGN_OR_RETURN(auto file, fs->OpenWritable(part, storage::OpenMode::kCreateOrTruncate));
  // The whole keyspace: readable by its owner only (as etcdctl writes it),
  // set before any of it is written.
  if (posix != nullptr && ::chmod(part.c_str(), 0600) != 0) {
    const int err = errno;
    (void)file->Close();
    (void)fs->RemoveFile(part);
    return conclave::Status::Internal(fmt::format("chmod {}: {}", part, std::strerror(err)));
  }
  auto bytes = Snapshot([&](const pb::SnapshotResponse& chunk) -> conclave::Status {
    return file->Append(chunk.blob());
  });
  conclave::Status s = bytes.ok() ? file->Sync() : bytes.status();
  const conclave::Status closed = file->Close();
  if (s.ok()) s = closed;
  if (s.ok()) s = fs->Rename(part, path);
  if (!s.ok()) {
    (void)fs->RemoveFile(part);  // best effort: the error below is what matters
    return s;
  }
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash + 1);
  RETURN_IF_ERROR(fs->SyncDir(dir));
  return *bytes;
}

}  // namespace conclave::client
