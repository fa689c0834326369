// The Watch service: one bidirectional stream per client connection; the
// stream's handler thread reads requests, one more thread writes what the
// watch hub queues for the stream.
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "api/convert.h"
#include "api/service_util.h"
#include "etcd/api/etcdserverpb/rpc.grpc.pb.h"

namespace conclave::api::internal {

namespace {

class WatchService final : public etcdserverpb::Watch::Service {
 public:
  explicit WatchService(server::EtcdGroup* node) : node_(node), headers_(node) {}

  grpc::Status Watch(grpc::ServerContext* context,
                     grpc::ServerReaderWriter<etcdserverpb::WatchResponse,
                                              etcdserverpb::WatchRequest>* stream) override {
    if (auto refused = RefuseOnLearner(node_); !refused.ok()) return ToGrpc(refused);
    // What the writer thread waits on: the hub's wake-ups, responses made
    // here (refused creates), and the end of the stream.
    struct Shared {
      std::mutex mu;
      std::condition_variable cv;
      bool wake = false;
      bool done = false;
      std::deque<etcdserverpb::WatchResponse> direct;
    };
    auto shared = std::make_shared<Shared>();
    mvcc::WatchHub* hub = node_->hub();
    const mvcc::StreamId sid = hub->OpenStream([shared] {
      {
        std::lock_guard<std::mutex> lock(shared->mu);
        shared->wake = true;
      }
      shared->cv.notify_one();
    });

    std::thread writer([&, shared] { WriteLoop(shared.get(), hub, sid, stream, context); });

    etcdserverpb::WatchRequest req;
    while (stream->Read(&req)) {
      if (req.has_create_request()) {
        Status s;
        auto wr = FromWire(req.create_request());
        if (wr.ok()) {
          auto id = hub->Create(sid, *wr);
          if (!id.ok()) s = id.status();
        } else {
          s = wr.status();
        }
        if (!s.ok()) {
          // As etcd: created and canceled at once, with the reason.
          etcdserverpb::WatchResponse r;
          headers_.Fill(r.mutable_header(), headers_.current());
          r.set_watch_id(-1);
          r.set_created(true);
          r.set_canceled(true);
          r.set_cancel_reason(s.message());
          {
            std::lock_guard<std::mutex> lock(shared->mu);
            shared->direct.push_back(std::move(r));
            shared->wake = true;
          }
          shared->cv.notify_one();
        }
      } else if (req.has_cancel_request()) {
        // Unknown ids are ignored, as etcd does.
        (void)hub->Cancel(sid, req.cancel_request().watch_id());
      } else if (req.has_progress_request()) {
        hub->RequestProgress(sid);
      }
    }
    {
      std::lock_guard<std::mutex> lock(shared->mu);
      shared->done = true;
    }
    shared->cv.notify_one();
    writer.join();
    hub->CloseStream(sid);
    return grpc::Status::OK;
  }

 private:
  template <typename Shared, typename Stream>
  void WriteLoop(Shared* shared, mvcc::WatchHub* hub, mvcc::StreamId sid, Stream* stream,
                 grpc::ServerContext* context) {
    constexpr size_t kPollMax = 64;
    while (true) {
      std::deque<etcdserverpb::WatchResponse> direct;
      {
        std::unique_lock<std::mutex> lock(shared->mu);
        shared->cv.wait_for(lock, std::chrono::seconds(1),
                            [&] { return shared->wake || shared->done; });
        if (shared->done) return;
        shared->wake = false;
        direct.swap(shared->direct);
      }
      for (auto& r : direct) {
        if (!stream->Write(r)) return;
      }
      while (!context->IsCancelled()) {
        std::vector<mvcc::WatchResponse> rs = hub->Poll(sid, kPollMax);
        for (const mvcc::WatchResponse& r : rs) {
          etcdserverpb::WatchResponse out;
          ToWire(r, &out);
          headers_.Fill(out.mutable_header(), r.header_revision);
          if (!stream->Write(out)) return;
        }
        if (rs.size() < kPollMax && !hub->HasWork(sid)) break;
      }
    }
  }

  server::EtcdGroup* node_;
  Headers headers_;
};

}  // namespace

std::unique_ptr<grpc::Service> NewWatchService(server::EtcdGroup* node) {
  return std::make_unique<WatchService>(node);
}

}  // namespace conclave::api::internal
