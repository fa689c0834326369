// WatchHub: fans a Store's committed changes out to watchers, with etcd v3's
// watch semantics (docs/WATCH.md).
//
// Streams and watchers. The gRPC layer opens one *stream* per Watch RPC
// (OpenStream) and creates many watchers on it. A watcher selects a key, a
// range [key, range_end), a prefix (range_end = PrefixEnd(key)) or every key
// from `key` on (range_end "\0"); it starts at start_revision (0: the next
// revision) and may ask for prev_kv, filter out puts or deletes, ask for
// periodic progress and allow fragmented responses. Everything a stream
// must send (created, events, canceled, progress) goes into the stream's
// one FIFO of WatchResponses, which the gRPC layer drains with Poll; the
// stream's `ready` callback tells it when there is something to poll.
//
// Synced and unsynced. A watcher is *synced* when everything up to the
// hub's revision has been queued for it: Notify, called by the apply thread
// after each Store::Commit with the batch's events, queues the matching
// events of each revision for every synced watcher, all of one revision in
// one response (atomic per revision). A watcher whose start revision is in
// the past is *unsynced*: Poll catches it up from Store::Events, outside the
// lock, in bounded steps, until it reaches the hub's revision and joins the
// synced set. A start revision below the compacted revision cancels the
// watcher with compact_revision set, as in etcd.
//
// A slow watcher never blocks writes. Each watcher may have at most
// `watcher_buffer_events_max` events queued (or one revision's events, if
// that is larger). When a revision does not fit, Notify does not wait: the
// watcher becomes a *victim*, which is an unsynced watcher whose next
// revision is the one that did not fit; once the stream drains its queue,
// Poll catches it up from the store. The queue is FIFO and a watcher's next
// revision moves only forward under the lock, so nothing is missed or sent
// twice.
//
// prev_kv is read by Poll, on the gRPC thread, from the store at
// mod_revision - 1 (as etcd's watch server does); if that revision has been
// compacted meanwhile the event goes out without it.
//
// Thread-safety and lock order. One mutex `mu_` guards all hub state. It is
// held only for in-memory work: never while reading the store and never
// while calling a stream's `ready` callback (callbacks run after unlocking,
// so they may call back into the hub). Notify (apply thread) takes it once
// per call; Create/Cancel/Poll/RequestProgress (gRPC threads) take it
// briefly. A watch event must not overtake its creation response: the
// created response is queued in the same critical section that registers
// the watcher (synced or unsynced), and every event for the watcher is
// queued later, behind it, in the same FIFO. For the same reason a progress
// response is queued only when every watcher of the stream is synced, so it
// follows every event at or below the revision it reports.
//
// Limits: watchers per stream, events buffered per watcher, events read
// from the store per catch-up step, bytes per fragment. Notify's cost is
// linear in the number of synced watchers (no interval tree yet).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "mvcc/kv.h"

namespace conclave::mvcc {

class Store;

using StreamId = int64_t;
using WatchId = int64_t;

// etcd's clientv3.InvalidWatchID: the watch id of a stream-wide progress response.
inline constexpr WatchId kProgressWatchId = -1;

struct WatchHubOptions {
  size_t watchers_per_stream_max = 1000;
  // Events queued per watcher before it falls back to catching up from the store.
  size_t watcher_buffer_events_max = 1024;
  // Events read from the store per catch-up step of one watcher.
  size_t catchup_events_max = 1024;
  // A fragmenting watcher's response is split so that each part's events
  // stay under this many bytes (keys and values), one event at least.
  size_t fragment_bytes_max = 1 << 20;
};

struct WatchRequest {
  WatchId watch_id = 0;        // 0: the hub picks the lowest free id on the stream
  std::string key;             // "": "\0", the smallest key (as etcd)
  std::string range_end;       // "": just key; "\0": every key >= key
  int64_t start_revision = 0;  // <= 0: from the next revision
  bool prev_kv = false;
  bool filter_noput = false;
  bool filter_nodelete = false;
  bool progress_notify = false;
  bool fragment = false;
};

struct WatchEvent {
  Event event;
  std::optional<KeyValue> prev_kv;
};

struct WatchResponse {
  WatchId watch_id = 0;
  int64_t header_revision = 0;
  bool created = false;
  bool canceled = false;
  int64_t compact_revision = 0;
  std::string cancel_reason;  // for the api layer; the hub leaves it empty
  bool fragment = false;      // more parts of this response follow
  std::vector<WatchEvent> events;
};

class WatchHub {
 public:
  // The store must outlive the hub. The hub starts at the store's current
  // revision: Notify must be called for every later commit, in order.
  WatchHub(const Store* store, WatchHubOptions options);
  ~WatchHub();
  WatchHub(const WatchHub&) = delete;
  WatchHub& operator=(const WatchHub&) = delete;

  // `ready` is called (never under the hub's lock) when the stream has
  // something new to Poll. It may be empty for callers that poll anyway.
  StreamId OpenStream(std::function<void()> ready);
  // Drops the stream, its watchers and its queue.
  void CloseStream(StreamId stream);

  // Registers a watcher and queues its created response. Errors (nothing is
  // queued; the api layer answers them as etcd does, created + canceled with
  // the message as cancel_reason): an unknown stream, an explicit id in use,
  // too many watchers, an empty range.
  Result<WatchId> Create(StreamId stream, const WatchRequest& request);
  // Removes the watcher and queues a canceled response. NotFound if unknown.
  Status Cancel(StreamId stream, WatchId id);
  // Queues a progress response (watch id -1, no events) at the hub's
  // revision once every watcher of the stream is synced.
  void RequestProgress(StreamId stream);
  // For every synced watcher with progress_notify that had nothing queued
  // since the last call, queues an empty response at the hub's revision.
  // Called periodically (etcd: every 10 minutes) by the server.
  void ProgressNotify();

  // Apply thread, after Store::Commit: the events of the committed batch
  // (ApplyBatch::events()) and the store's revision after it.
  void Notify(int64_t revision, const std::vector<Event>& events);

  // After the store's state was replaced wholesale (a snapshot install):
  // the hub moves to `revision` and every synced watcher becomes unsynced at
  // its next revision, so it catches up from the new state's history.
  void Resync(int64_t revision);

  // Catches up the stream's unsynced watchers by one bounded step each, then
  // returns up to `responses_max` queued responses with prev_kv filled in
  // and large responses fragmented. Empty for an unknown stream.
  std::vector<WatchResponse> Poll(StreamId stream, size_t responses_max);
  // Whether Poll would have something to do for the stream.
  bool HasWork(StreamId stream) const;

  int64_t revision() const;

 private:
  struct Watcher;
  struct Stream;
  // Callbacks to run once the lock is released.
  using Wakeups = std::vector<std::shared_ptr<const std::function<void()>>>;
  struct Queued {
    uint64_t watcher_serial = 0;  // 0: counts against no watcher's buffer
    size_t buffered_events = 0;
    bool needs_prev_kv = false;
    WatchResponse response;
  };
  struct CatchUp {
    uint64_t serial;
    int64_t from;
    size_t limit;
  };

  Stream* FindStream(StreamId stream);
  const Stream* FindStream(StreamId stream) const;
  void Enqueue(Stream* s, Queued q, Wakeups* wake);
  void CancelLocked(Stream* s, Watcher* w, int64_t compact_revision, Wakeups* wake);
  void MaybeSendProgress(Stream* s, Wakeups* wake);
  // Queues one revision's matching events for `w` if they fit; otherwise
  // turns it into a victim.
  void Deliver(Stream* s, Watcher* w, int64_t rev, int64_t header, const Event* begin,
               const Event* end, Wakeups* wake);
  // The events in [begin, end) (one revision) that `w` selects.
  static std::vector<WatchEvent> Select(const Watcher& w, const Event* begin, const Event* end);
  // Queues one revision's selected events for `w`.
  void QueueRevision(Stream* s, Watcher* w, int64_t header, std::vector<WatchEvent> selected,
                     Wakeups* wake);
  // The catch-up steps due on the stream, all reading up to *to.
  std::vector<CatchUp> PlanCatchUp(StreamId stream, int64_t* to);
  void FinishCatchUp(StreamId stream, const CatchUp& step, int64_t to,
                     const Result<std::vector<Event>>& read, Wakeups* wake);
  void FillPrevKv(WatchEvent* e) const;
  std::vector<WatchResponse> Fragment(WatchResponse r) const;
  static void Wake(const Wakeups& wake);

  const Store* store_;
  const WatchHubOptions options_;
  mutable std::mutex mu_;
  int64_t revision_;                                     // guarded by mu_
  StreamId next_stream_ = 1;                             // guarded by mu_
  uint64_t next_serial_ = 1;                             // guarded by mu_
  std::map<StreamId, std::unique_ptr<Stream>> streams_;  // guarded by mu_
};

}  // namespace conclave::mvcc
