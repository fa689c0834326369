#include "mvcc/watch_hub.h"

#include <algorithm>
#include <deque>
#include <utility>

#include "base/logging.h"
#include "mvcc/store.h"

namespace conclave::mvcc {

namespace {

inline constexpr std::string_view kEmptyWatcherRange = "mvcc: watcher range is empty";
inline constexpr std::string_view kDuplicateWatchId =
    "mvcc: duplicate watch ID provided on the WatchStream";

bool Selects(const WatchRequest& r, const std::string& key) {
  if (r.range_end.empty()) return key == r.key;
  if (r.range_end == std::string_view("\0", 1)) return key >= r.key;
  return key >= r.key && key < r.range_end;
}

bool Passes(const WatchRequest& r, const Event& e) {
  if (e.type == EventType::kPut) return !r.filter_noput;
  return !r.filter_nodelete;
}

size_t EventBytes(const WatchEvent& e) {
  size_t n = e.event.kv.key.size() + e.event.kv.value.size();
  if (e.prev_kv) n += e.prev_kv->key.size() + e.prev_kv->value.size();
  return n;
}

}  // namespace

struct WatchHub::Watcher {
  uint64_t serial = 0;
  WatchId id = 0;
  WatchRequest request;
  // Synced: every matching event up to the hub's revision is queued.
  // Unsynced: events from next_revision on still have to be read from the store.
  bool synced = false;
  int64_t next_revision = 0;
  // Events below this are not for the watcher (a start revision in the future).
  int64_t min_revision = 0;
  size_t buffered_events = 0;
  bool sent_since_progress = false;
};

struct WatchHub::Stream {
  StreamId id = 0;
  std::shared_ptr<const std::function<void()>> ready;
  std::map<WatchId, std::unique_ptr<Watcher>> watchers;
  std::deque<Queued> queue;
  WatchId next_auto_id = 0;
  bool progress_pending = false;

  Watcher* FindBySerial(uint64_t serial) {
    for (auto& [id, w] : watchers) {
      if (w->serial == serial) return w.get();
    }
    return nullptr;
  }
  bool AllSynced() const {
    return std::all_of(watchers.begin(), watchers.end(),
                       [](const auto& entry) { return entry.second->synced; });
  }
};

WatchHub::WatchHub(const Store* store, WatchHubOptions options)
    : store_(store), options_(options), revision_(store->CurrentRevision()) {
  CHECK_GT(options_.watchers_per_stream_max, 0u);
  CHECK_GT(options_.watcher_buffer_events_max, 0u);
  CHECK_GT(options_.catchup_events_max, 0u);
  CHECK_GT(options_.fragment_bytes_max, 0u);
}

WatchHub::~WatchHub() = default;

int64_t WatchHub::revision() const {
  std::lock_guard<std::mutex> lock(mu_);
  return revision_;
}

WatchHub::Stream* WatchHub::FindStream(StreamId stream) {
  auto it = streams_.find(stream);
  return it == streams_.end() ? nullptr : it->second.get();
}

const WatchHub::Stream* WatchHub::FindStream(StreamId stream) const {
  auto it = streams_.find(stream);
  return it == streams_.end() ? nullptr : it->second.get();
}

void WatchHub::Wake(const Wakeups& wake) {
  for (size_t i = 0; i < wake.size(); ++i) {
    // A stream is woken once per call, however much was queued for it.
    bool seen = false;
    for (size_t j = 0; j < i && !seen; ++j)
      seen = wake[j] == wake[i];
    if (!seen && wake[i] && *wake[i]) (*wake[i])();
  }
}

StreamId WatchHub::OpenStream(std::function<void()> ready) {
  std::lock_guard<std::mutex> lock(mu_);
  auto s = std::make_unique<Stream>();
  s->id = next_stream_++;
  s->ready = std::make_shared<const std::function<void()>>(std::move(ready));
  const StreamId id = s->id;
  streams_.emplace(id, std::move(s));
  return id;
}

void WatchHub::CloseStream(StreamId stream) {
  std::lock_guard<std::mutex> lock(mu_);
  streams_.erase(stream);
}

void WatchHub::Enqueue(Stream* s, Queued q, Wakeups* wake) {
  s->queue.push_back(std::move(q));
  wake->push_back(s->ready);
}

Result<WatchId> WatchHub::Create(StreamId stream, const WatchRequest& request) {
  WatchRequest wr = request;
  // As etcd: an empty key means "\0", the smallest key.
  if (wr.key.empty()) wr.key.assign(1, '\0');
  const bool to_end = wr.range_end == std::string_view("\0", 1);
  if (!wr.range_end.empty() && !to_end && wr.range_end <= wr.key)
    return Status::InvalidArgument(std::string(kEmptyWatcherRange));

  Wakeups wake;
  WatchId id;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Stream* s = FindStream(stream);
    if (s == nullptr) return Status::NotFound("watch stream not found");
    if (s->watchers.size() >= options_.watchers_per_stream_max)
      return Status::ResourceExhausted("too many watchers on the stream");
    id = wr.watch_id;
    if (id > 0) {
      if (s->watchers.contains(id)) return Status::AlreadyExists(std::string(kDuplicateWatchId));
    } else {
      while (s->watchers.contains(s->next_auto_id))
        ++s->next_auto_id;
      id = s->next_auto_id++;
    }
    auto w = std::make_unique<Watcher>();
    w->serial = next_serial_++;
    w->id = id;
    w->request = wr;
    w->request.watch_id = id;
    const bool past = wr.start_revision > 0 && wr.start_revision <= revision_;
    w->synced = !past;
    w->next_revision = past ? wr.start_revision : revision_ + 1;
    w->min_revision = past ? wr.start_revision : std::max(wr.start_revision, revision_ + 1);
    Watcher* watcher = w.get();
    s->watchers.emplace(id, std::move(w));

    // Queued in the same critical section that registers the watcher: no
    // event for it can be queued ahead of this.
    Queued created;
    created.response = WatchResponse{.watch_id = id, .header_revision = revision_, .created = true};
    Enqueue(s, std::move(created), &wake);

    const int64_t compacted = store_->CompactRevision();
    if (past && wr.start_revision < compacted) CancelLocked(s, watcher, compacted, &wake);
  }
  Wake(wake);
  return id;
}

void WatchHub::CancelLocked(Stream* s, Watcher* w, int64_t compact_revision, Wakeups* wake) {
  Queued q;
  q.response = WatchResponse{.watch_id = w->id,
                             .header_revision = revision_,
                             .canceled = true,
                             .compact_revision = compact_revision};
  // Like etcd, a compaction cancel carries only compact_revision, no
  // cancel_reason: clients turn it into "required revision has been compacted".
  Enqueue(s, std::move(q), wake);
  s->watchers.erase(w->id);
  MaybeSendProgress(s, wake);
}

Status WatchHub::Cancel(StreamId stream, WatchId id) {
  Wakeups wake;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Stream* s = FindStream(stream);
    if (s == nullptr) return Status::NotFound("watch stream not found");
    auto it = s->watchers.find(id);
    if (it == s->watchers.end()) return Status::NotFound("watcher not found");
    CancelLocked(s, it->second.get(), 0, &wake);
  }
  Wake(wake);
  return Status::Ok();
}

void WatchHub::MaybeSendProgress(Stream* s, Wakeups* wake) {
  if (!s->progress_pending || !s->AllSynced()) return;
  s->progress_pending = false;
  Queued q;
  q.response = WatchResponse{.watch_id = kProgressWatchId, .header_revision = revision_};
  Enqueue(s, std::move(q), wake);
}

void WatchHub::RequestProgress(StreamId stream) {
  Wakeups wake;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Stream* s = FindStream(stream);
    if (s == nullptr) return;
    s->progress_pending = true;
    MaybeSendProgress(s, &wake);
  }
  Wake(wake);
}

void WatchHub::ProgressNotify() {
  Wakeups wake;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [sid, s] : streams_) {
      for (auto& [id, w] : s->watchers) {
        if (w->synced && w->request.progress_notify && !w->sent_since_progress) {
          Queued q;
          q.response = WatchResponse{.watch_id = id, .header_revision = revision_};
          Enqueue(s.get(), std::move(q), &wake);
        }
        w->sent_since_progress = false;
      }
    }
  }
  Wake(wake);
}

void WatchHub::QueueRevision(Stream* s, Watcher* w, int64_t header,
                             std::vector<WatchEvent> selected, Wakeups* wake) {
  Queued q;
  q.watcher_serial = w->serial;
  q.buffered_events = selected.size();
  q.needs_prev_kv = w->request.prev_kv;
  // `fragment` marks, until Poll splits the response, that the watcher allows it.
  q.response =
      WatchResponse{.watch_id = w->id, .header_revision = header, .fragment = w->request.fragment};
  q.response.events = std::move(selected);
  w->buffered_events += q.buffered_events;
  w->sent_since_progress = true;
  Enqueue(s, std::move(q), wake);
}

std::vector<WatchEvent> WatchHub::Select(const Watcher& w, const Event* begin, const Event* end) {
  std::vector<WatchEvent> out;
  for (const Event* e = begin; e != end; ++e) {
    if (Selects(w.request, e->kv.key) && Passes(w.request, *e))
      out.push_back(WatchEvent{.event = *e});
  }
  return out;
}

void WatchHub::Deliver(Stream* s, Watcher* w, int64_t rev, int64_t header, const Event* begin,
                       const Event* end, Wakeups* wake) {
  if (rev < w->min_revision) return;
  std::vector<WatchEvent> selected = Select(*w, begin, end);
  if (selected.empty()) return;
  // An empty buffer takes a revision of any size, or a huge txn would stall
  // the watcher forever.
  if (w->buffered_events > 0 &&
      w->buffered_events + selected.size() > options_.watcher_buffer_events_max) {
    // A victim: Notify never waits for a slow stream. Its queue is not
    // empty, so the stream polls again and catches it up from `rev`.
    w->synced = false;
    w->next_revision = rev;
    return;
  }
  QueueRevision(s, w, header, std::move(selected), wake);
}

void WatchHub::Notify(int64_t revision, const std::vector<Event>& events) {
  Wakeups wake;
  {
    std::lock_guard<std::mutex> lock(mu_);
    CHECK_GE(revision, revision_);
    size_t i = 0;
    while (i < events.size()) {
      const int64_t rev = events[i].kv.mod_revision;
      CHECK_MSG(rev > revision_ && rev <= revision, "event revision {} outside ({}, {}]", rev,
                revision_, revision);
      size_t j = i;
      while (j < events.size() && events[j].kv.mod_revision == rev)
        ++j;
      CHECK_MSG(j == events.size() || events[j].kv.mod_revision > rev,
                "events out of revision order at {}", rev);
      for (auto& [sid, s] : streams_) {
        for (auto& [id, w] : s->watchers) {
          if (w->synced)
            Deliver(s.get(), w.get(), rev, revision, &events[i], &events[0] + j, &wake);
        }
      }
      i = j;
    }
    revision_ = revision;
  }
  Wake(wake);
}

void WatchHub::Resync(int64_t revision) {
  Wakeups wake;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [sid, s] : streams_) {
      for (auto& [id, w] : s->watchers) {
        if (!w->synced) continue;
        w->synced = false;
        w->next_revision = std::max(revision_ + 1, w->min_revision);
      }
      if (!s->watchers.empty()) wake.push_back(s->ready);
    }
    revision_ = std::max(revision_, revision);
  }
  Wake(wake);
}

std::vector<WatchHub::CatchUp> WatchHub::PlanCatchUp(StreamId stream, int64_t* to) {
  std::lock_guard<std::mutex> lock(mu_);
  *to = revision_;
  std::vector<CatchUp> steps;
  Stream* s = FindStream(stream);
  if (s == nullptr) return steps;
  for (auto& [id, w] : s->watchers) {
    if (w->synced || w->buffered_events >= options_.watcher_buffer_events_max) continue;
    const size_t room = options_.watcher_buffer_events_max - w->buffered_events;
    steps.push_back(CatchUp{.serial = w->serial,
                            .from = w->next_revision,
                            .limit = std::min(room, options_.catchup_events_max)});
  }
  return steps;
}

void WatchHub::FinishCatchUp(StreamId stream, const CatchUp& step, int64_t to,
                             const Result<std::vector<Event>>& read, Wakeups* wake) {
  Stream* s = FindStream(stream);
  if (s == nullptr) return;
  Watcher* w = s->FindBySerial(step.serial);
  // Another Poll of the same stream may have advanced it meanwhile.
  if (w == nullptr || w->synced || w->next_revision != step.from) return;
  if (!read.ok()) {
    if (read.status().code() == StatusCode::kOutOfRange) {
      CancelLocked(s, w, store_->CompactRevision(), wake);
    } else {
      LOG_WARN("watch: catch-up read failed stream={} watch={}: {}", stream, w->id,
               read.status().ToString());
    }
    return;
  }
  const std::vector<Event>& events = *read;
  size_t i = 0;
  while (i < events.size()) {
    const int64_t rev = events[i].kv.mod_revision;
    size_t j = i;
    while (j < events.size() && events[j].kv.mod_revision == rev)
      ++j;
    std::vector<WatchEvent> selected = Select(*w, &events[i], &events[0] + j);
    if (!selected.empty()) QueueRevision(s, w, to, std::move(selected), wake);
    i = j;
  }
  // Events never stops inside a revision, so a full answer ends exactly
  // after its last revision; a short one covers everything up to `to`.
  const bool full = events.size() >= step.limit && !events.empty();
  w->next_revision = full ? events.back().kv.mod_revision + 1 : to + 1;
  if (w->next_revision > revision_) {
    w->synced = true;
    MaybeSendProgress(s, wake);
  } else {
    wake->push_back(s->ready);  // more to read
  }
}

void WatchHub::FillPrevKv(WatchEvent* e) const {
  const KeyValue& kv = e->event.kv;
  // A creation has no previous version; revision 0 would read the current one.
  if ((e->event.type == EventType::kPut && kv.version == 1) || kv.mod_revision <= 1) return;
  auto r = store_->Range(RangeRequest{.key = kv.key, .revision = kv.mod_revision - 1});
  // Compacted meanwhile: the event goes without, as in etcd.
  if (r.ok() && !r->kvs.empty()) e->prev_kv = r->kvs.front();
}

std::vector<WatchResponse> WatchHub::Fragment(WatchResponse r) const {
  std::vector<WatchResponse> parts;
  size_t total = 0;
  for (const WatchEvent& e : r.events)
    total += EventBytes(e);
  const bool split = r.fragment && total > options_.fragment_bytes_max;
  r.fragment = false;
  if (!split) {
    parts.push_back(std::move(r));
    return parts;
  }
  std::vector<WatchEvent> events = std::move(r.events);
  r.events.clear();
  size_t bytes = 0;
  for (WatchEvent& e : events) {
    const size_t n = EventBytes(e);
    if (!r.events.empty() && bytes + n > options_.fragment_bytes_max) {
      parts.push_back(r);
      parts.back().fragment = true;
      r.events.clear();
      bytes = 0;
    }
    bytes += n;
    r.events.push_back(std::move(e));
  }
  parts.push_back(std::move(r));
  return parts;
}

std::vector<WatchResponse> WatchHub::Poll(StreamId stream, size_t responses_max) {
  // 1. Catch up unsynced watchers: plan under the lock, read without it.
  int64_t to = 0;
  std::vector<CatchUp> steps = PlanCatchUp(stream, &to);
  std::vector<Result<std::vector<Event>>> reads;
  reads.reserve(steps.size());
  for (const CatchUp& step : steps)
    reads.push_back(store_->Events(step.from, to, step.limit));

  // 2. Queue what was read and take the head of the queue.
  Wakeups wake;
  std::vector<Queued> taken;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = 0; i < steps.size(); ++i)
      FinishCatchUp(stream, steps[i], to, reads[i], &wake);
    Stream* s = FindStream(stream);
    if (s != nullptr) {
      while (!s->queue.empty() && taken.size() < responses_max) {
        Queued& q = s->queue.front();
        if (Watcher* w = s->FindBySerial(q.watcher_serial); w != nullptr) {
          CHECK_GE(w->buffered_events, q.buffered_events);
          w->buffered_events -= q.buffered_events;
        }
        taken.push_back(std::move(q));
        s->queue.pop_front();
      }
    }
  }
  Wake(wake);

  // 3. prev_kv and fragmentation, without the lock.
  std::vector<WatchResponse> out;
  for (Queued& q : taken) {
    if (q.needs_prev_kv) {
      for (WatchEvent& e : q.response.events)
        FillPrevKv(&e);
    }
    for (WatchResponse& part : Fragment(std::move(q.response)))
      out.push_back(std::move(part));
  }
  return out;
}

bool WatchHub::HasWork(StreamId stream) const {
  std::lock_guard<std::mutex> lock(mu_);
  const Stream* s = FindStream(stream);
  if (s == nullptr) return false;
  if (!s->queue.empty()) return true;
  return std::any_of(s->watchers.begin(), s->watchers.end(), [&](const auto& entry) {
    const Watcher& w = *entry.second;
    return !w.synced && w.buffered_events < options_.watcher_buffer_events_max;
  });
}

}  // namespace conclave::mvcc
