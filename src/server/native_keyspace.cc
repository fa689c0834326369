#include "server/native_keyspace.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <future>
#include <iterator>
#include <thread>
#include <utility>

#include "base/coding.h"
#include "base/logging.h"
#include "base/thread.h"

namespace conclave::server {

namespace {

// Where a range's replicas live: as its descriptor says (read afresh, so
// it follows the descriptor's changes), else as `learned` says (a replica
// waiting for its first snapshot knows only the sender's).
std::function<uint64_t(raft::NodeId)> Placement(const RangeStateMachine* sm,
                                                std::map<raft::NodeId, uint64_t> learned = {}) {
  auto known = std::make_shared<const std::map<raft::NodeId, uint64_t>>(std::move(learned));
  return [sm, known](raft::NodeId replica) {
    if (uint64_t node = sm->NodeOf(replica); node != 0) return node;
    auto it = known->find(replica);
    return it == known->end() ? uint64_t{0} : it->second;
  };
}

Status NoRange(std::string_view key) {
  return Status::NotFound(fmt::format("no range here holds key \"{}\"", key))
      .WithReason(ErrorReason::kGroupNotFound);
}

// How often a request follows its key to a new range before giving up
// (each time, a split moved the key between finding the range and using
// it).
constexpr int kRouteAttempts = 8;

// How often a node looks for copies of ranges that went on without it.
constexpr Duration kCollectInterval = std::chrono::seconds(10);
// How long the placement driver waits for a moved range's record.
constexpr Duration kMapCatchUp = std::chrono::seconds(30);
// How long a range whose placement move failed waits before another.
constexpr Duration kPlacementRest = std::chrono::seconds(5);
// A range frozen this long for a merge lost its coordinator: its leader's
// node settles the merge.
constexpr Duration kMergeAbandoned = std::chrono::seconds(20);
// How often a request waits for a frozen range (each wait ends when the
// range thaws or is merged away, or after about a second).
constexpr int kFrozenWaits = 30;
// After a split or merge that could not be made (one huge or hot key, a
// range that keeps changing), the range is left alone this many windows.
constexpr int kRestWindows = 6;

bool IsFrozen(const Status& s) {
  return s.reason() == ErrorReason::kRangeFrozen;
}

std::set<uint64_t> NodesOf(const keys::RangeDescriptor& d) {
  std::set<uint64_t> nodes;
  for (const keys::ReplicaDescriptor& r : d.replicas)
    nodes.insert(r.node_id);
  return nodes;
}

// Whether `a` holds every key of `b`.
bool Covers(const keys::RangeDescriptor& a, const keys::RangeDescriptor& b) {
  return a.start_key <= b.start_key &&
         (a.end_key.empty() || (!b.end_key.empty() && b.end_key <= a.end_key));
}

// Deletes a copy of `d` (its records, and its data unless `keep` covers
// it). A frozen range's data is kept whole: a merge may yet give it to its
// left neighbour here.
std::vector<std::pair<std::string, std::string>> KeepFrozen(
    const keys::RangeDescriptor& d, std::vector<std::pair<std::string, std::string>> keep) {
  if (d.frozen_into != 0) keep.emplace_back(d.start_key, d.end_key);
  return keep;
}

// A read that raced with the removal of this node's replica: what it read
// may be partly deleted.
Status LeftHere(keys::RangeId id) {
  return Status::Unavailable(
      fmt::format("conclave: range {} moved off this node during the read; try again", id));
}

bool Moved(const Status& s) {
  return s.code() == StatusCode::kOutOfRange;
}

// Just past the keys that start with `prefix` (its last byte is not 0xff).
std::string PrefixEnd(std::string_view prefix) {
  std::string end(prefix);
  end.back() = static_cast<char>(end.back() + 1);
  return end;
}

std::string RangeMapEnd() {
  return PrefixEnd(kRangeMapPrefix);
}

Timestamp FromProto(const kvpb::Timestamp& t) {
  return Timestamp{t.wall_nanos(), t.logical()};
}

// Whether a forwarded call's refusal means "try another holder": the node
// holds no replica of the range (any call), or could not be reached (only
// calls that may run twice: reads).
bool TryElsewhere(const Status& s, bool idempotent) {
  return s.code() == StatusCode::kNotFound || (idempotent && s.code() == StatusCode::kUnavailable);
}

uint64_t Now(const Clock& clock) {
  return static_cast<uint64_t>(std::max<int64_t>(clock.WallNanos(), 0));
}

}  // namespace

std::string NodeStatusKey(uint64_t node_id) {
  return fmt::format("{}{:016x}", kNodeStatusPrefix, node_id);
}

std::string DrainKey(uint64_t node_id) {
  return fmt::format("{}{:016x}", kDrainPrefix, node_id);
}

std::string RangeMapKey(std::string_view end_key) {
  std::string key(kRangeMapPrefix);
  key.append(end_key);
  return key;
}

// ---- load ----

void RangeLoad::Record(std::string_view key) {
  std::lock_guard<std::mutex> lock(mu_);
  ++count_;
  // A uniform sample of the window's keys (reservoir sampling).
  if (samples_.size() < kSamples) {
    samples_.emplace_back(key);
  } else if (uint64_t i = random_.Uniform(count_); i < kSamples) {
    samples_[i].assign(key);
  }
}

RangeLoad::Window RangeLoad::Roll(Duration now) {
  std::lock_guard<std::mutex> lock(mu_);
  Window w;
  const double seconds = std::chrono::duration<double>(now - window_start_).count();
  window_start_ = now;
  w.requests_per_second = seconds > 0 ? static_cast<double>(count_) / seconds : 0;
  w.keys = std::move(samples_);
  std::sort(w.keys.begin(), w.keys.end());
  samples_.clear();
  count_ = 0;
  last_rate_ = w.requests_per_second;
  ++windows_;
  return w;
}

int RangeLoad::windows() const {
  std::lock_guard<std::mutex> lock(mu_);
  return windows_;
}

double RangeLoad::requests_per_second() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_rate_;
}

bool RangeLoad::Resting() {
  std::lock_guard<std::mutex> lock(mu_);
  if (rest_windows_ == 0) return false;
  --rest_windows_;
  return true;
}

void RangeLoad::Rest(int windows) {
  std::lock_guard<std::mutex> lock(mu_);
  rest_windows_ = windows;
}

std::vector<keys::RangeDescriptor> InitialRanges(int64_t count, std::vector<uint64_t> members,
                                                 int replicas) {
  std::sort(members.begin(), members.end());
  std::vector<keys::RangeDescriptor> out;
  const size_t n = members.size();
  if (n == 0) return out;
  const size_t per = std::clamp<size_t>(static_cast<size_t>(std::max(replicas, 1)), 1, n);
  // Boundaries evenly spaced over the first two bytes of the key.
  auto boundary = [&](int64_t i) {
    std::string b;
    const uint32_t v = static_cast<uint32_t>((i * 65536) / count);
    b.push_back(static_cast<char>(v >> 8));
    b.push_back(static_cast<char>(v & 0xff));
    return b;
  };
  // Replicas on `how_many` members from the `first`-th on.
  auto range = [&](keys::RangeId id, std::string start, std::string end, size_t first,
                   size_t how_many) {
    keys::RangeDescriptor d;
    d.range_id = id;
    d.start_key = std::move(start);
    d.end_key = std::move(end);
    d.generation = 1;
    d.sticky = id != kMetaRangeId;  // the ranges asked for stay apart
    for (size_t k = 0; k < how_many; ++k)
      d.replicas.push_back({members[(first + k) % n], k + 1, keys::ReplicaType::kVoter});
    std::sort(d.replicas.begin(), d.replicas.end(),
              [](const auto& a, const auto& b) { return a.node_id < b.node_id; });
    for (size_t k = 0; k < how_many; ++k)
      d.replicas[k].replica_id = k + 1;
    d.next_replica_id = how_many + 1;
    out.push_back(std::move(d));
  };
  for (int64_t i = 0; i < count; ++i) {
    range(kFirstRangeId + static_cast<uint64_t>(i), i == 0 ? std::string() : boundary(i),
          i + 1 == count ? std::string(kSystemKeyStart) : boundary(i + 1),
          static_cast<size_t>(i) % n, per);
  }
  if (count > 0) range(kMetaRangeId, std::string(kSystemKeyStart), "", 0, n);
  return out;
}

Result<std::unique_ptr<NativeKeyspace>> NativeKeyspace::Open(Host* host, uint64_t node_id,
                                                             const NativeKeyspaceOptions& options,
                                                             bool bootstrap) {
  std::unique_ptr<NativeKeyspace> ks(new NativeKeyspace(host, node_id, options));
  ASSIGN_OR_RETURN(std::vector<keys::RangeDescriptor> stored,
                   RangeStateMachine::Stored(host->engine()));
  const bool create = stored.empty() && bootstrap && options.initial_ranges > 0;
  if (create)
    stored =
        InitialRanges(options.initial_ranges, options.initial_members, options.replicas_per_range);
  // The meta range's counter starts past the initial ranges.
  keys::RangeId next_id = kFirstRangeId;
  for (const keys::RangeDescriptor& d : stored)
    next_id = std::max(next_id, d.range_id + 1);
  size_t held = 0;
  for (const keys::RangeDescriptor& d : stored) {
    if (!d.HasNode(node_id)) {
      if (create) continue;  // placed elsewhere
      // Its removal applied here but the node stopped before deleting its
      // copy: delete it now.
      LOG_INFO("range {}: its replica left this node; deleting what is left of it", d.range_id);
      RETURN_IF_ERROR(RangeStateMachine::Destroy(host->engine(), d, KeepFrozen(d, {})));
      continue;
    }
    std::map<std::string, std::string> initial;
    if (create && d.range_id == kMetaRangeId) {
      // The counter starts past the initial ranges, and the range map
      // holds them.
      initial[std::string(kNextRangeIdKey)] = std::to_string(next_id);
      for (const keys::RangeDescriptor& user : stored) {
        if (user.range_id != kMetaRangeId) {
          initial[RangeMapKey(user.end_key)] = keys::EncodeRangeDescriptor(user);
        }
      }
    }
    RETURN_IF_ERROR(ks->AddRange(d, create, /*campaign=*/false, std::move(initial)));
    ++held;
  }
  // What the WAL holds of replicas removed from here is released.
  for (raft::GroupId group : host->ReplayedGroups()) {
    if (group != kMetaRangeId && group < kFirstRangeId) continue;
    ASSIGN_OR_RETURN(uint64_t tombstone, RangeStateMachine::Tombstone(host->engine(), group));
    if (tombstone > 0) RETURN_IF_ERROR(host->DiscardReplay(group));
  }
  NativeKeyspace* raw = ks.get();
  host->SetReplicaMaker([raw](raft::GroupId group, raft::NodeId replica, raft::NodeId from_replica,
                              uint64_t from_node) {
    return raw->MakeReplica(group, replica, from_replica, from_node);
  });
  if (held > 0) {
    LOG_INFO("native keyspace: {} {} ranges", create ? "created" : "opened", held);
  }
  return ks;
}

Status NativeKeyspace::AddRange(const keys::RangeDescriptor& d, bool create, bool campaign,
                                std::map<std::string, std::string> initial) {
  auto self = std::find_if(d.replicas.begin(), d.replicas.end(),
                           [&](const keys::ReplicaDescriptor& r) { return r.node_id == node_id_; });
  if (self == d.replicas.end()) return Status::Ok();  // not placed here
  ASSIGN_OR_RETURN(std::unique_ptr<RangeStateMachine> sm,
                   RangeStateMachine::Open(host_->engine(), host_->fs(), d.range_id, d));
  RangeStateMachine* raw = sm.get();
  SetHandlers(raw);
  if (create) raw->SetInitialValues(std::move(initial));
  ReplicaOptions ro = options_.replica;
  ro.group = d.range_id;
  ro.replica_id = self->replica_id;
  ro.node_of = Placement(raw);
  ro.campaign_at_start = campaign;
  ro.bootstrap_voters.clear();
  if (create) {
    for (const keys::ReplicaDescriptor& r : d.replicas) {
      if (r.type == keys::ReplicaType::kVoter) ro.bootstrap_voters.push_back(r.replica_id);
    }
  }
  ASSIGN_OR_RETURN(std::shared_ptr<Replica> replica, host_->AddReplica(ro, std::move(sm)));
  std::lock_guard<std::mutex> lock(mu_);
  by_start_[d.start_key] =
      Range{std::move(replica), raw, std::make_shared<RangeLoad>(host_->clock().Monotonic())};
  return Status::Ok();
}

void NativeKeyspace::SetHandlers(RangeStateMachine* sm) {
  sm->SetLocalNode(node_id_);
  sm->SetSplitHandler([this, sm](const keys::RangeDescriptor& right) -> Status {
    std::lock_guard<std::mutex> make(make_mu_);
    // Already here: it came from a snapshot before this node applied the
    // split.
    if (host_->FindReplica(right.range_id) != nullptr) return Status::Ok();
    // The new range's replica next to the left half's leader starts the
    // first election early (ReplicaOptions::campaign_at_start).
    std::shared_ptr<Replica> left = host_->FindReplica(sm->descriptor().range_id);
    ReportSoon();
    return AddRange(right, /*create=*/false, left != nullptr && left->is_leader());
  });
  sm->SetInstallHandler([this, sm] { Reindex(sm); });
  sm->SetMergeHandler([this](const keys::RangeDescriptor& right) { return OnMerged(right); },
                      [this](const keys::RangeDescriptor& d) {
                        OnFrozenChanged(d);
                        return Status::Ok();
                      });
  sm->SetReplicasHandler(
      [this, sm](const keys::RangeDescriptor& after) { return OnReplicasChanged(sm, after); });
}

Status NativeKeyspace::OnReplicasChanged(RangeStateMachine* sm,
                                         const keys::RangeDescriptor& after) {
  ReportSoon();
  if (after.HasNode(node_id_)) return Status::Ok();
  return Discard(sm, after);
}

Status NativeKeyspace::Discard(RangeStateMachine* sm, const keys::RangeDescriptor& after) {
  // Nothing more applies to this copy, then it goes: readers that read it
  // meanwhile see removed() and do not trust what they read. Keys another
  // range here holds stay.
  sm->MarkRemoved();
  std::vector<std::pair<std::string, std::string>> keep;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [start, r] : by_start_) {
      if (r.sm == sm) continue;
      const keys::RangeDescriptor d = r.sm->descriptor();
      keep.emplace_back(d.start_key, d.end_key);
    }
  }
  RETURN_IF_ERROR(RangeStateMachine::Destroy(host_->engine(), after, KeepFrozen(after, keep)));
  Thaw(after.range_id);
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = by_start_.begin(); it != by_start_.end();) {
      it = it->second.sm == sm ? by_start_.erase(it) : std::next(it);
    }
    if (auto it = waiting_.find(after.range_id); it != waiting_.end() && it->second.sm == sm) {
      waiting_.erase(it);
    }
  }
  host_->RemoveReplica(after.range_id);
  ++replicas_removed_;
  LOG_INFO("range {}: this node's replica was removed; its copy is deleted", after.range_id);
  return Status::Ok();
}

void NativeKeyspace::Reindex(RangeStateMachine* sm) {
  const keys::RangeDescriptor d = sm->descriptor();
  // Ranges this one took in by a merge this node missed: older views of
  // keys the snapshot brought.
  std::vector<RangeStateMachine*> merged;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = by_start_.begin(); it != by_start_.end();) {
      const keys::RangeDescriptor other = it->second.sm->descriptor();
      if (it->second.sm != sm && other.range_id != d.range_id && d.ContainsKey(other.start_key) &&
          other.generation < d.generation) {
        merged.push_back(it->second.sm);
        it = by_start_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (RangeStateMachine* gone : merged)
    DropMerged(gone);
  std::lock_guard<std::mutex> lock(mu_);
  std::optional<Range> range;
  if (auto it = waiting_.find(d.range_id); it != waiting_.end()) {
    range = it->second;
    waiting_.erase(it);
  }
  for (auto it = by_start_.begin(); it != by_start_.end();) {
    if (it->second.sm == sm) {
      range = it->second;
      it = by_start_.erase(it);
    } else {
      ++it;
    }
  }
  if (!range) return;
  auto [it, added] = by_start_.emplace(d.start_key, *range);
  // Two ranges that start at one key: the newer view wins.
  if (!added && it->second.sm->descriptor().generation < d.generation) it->second = *range;
}

std::shared_ptr<Replica> NativeKeyspace::MakeReplica(raft::GroupId group, raft::NodeId replica_id,
                                                     raft::NodeId from_replica,
                                                     uint64_t from_node) {
  if (group < kFirstRangeId && group != kMetaRangeId) return nullptr;
  std::lock_guard<std::mutex> make(make_mu_);
  if (std::shared_ptr<Replica> r = host_->FindReplica(group)) return r;
  Result<uint64_t> tombstone = RangeStateMachine::Tombstone(host_->engine(), group);
  if (!tombstone.ok()) {
    LOG_WARN("range {}: no replica made: {}", group, tombstone.status().ToString());
    return nullptr;
  }
  // A replica removed from here: its group's stale leaders still write to
  // it. Only a later replica id is a new placement.
  if (replica_id < *tombstone) return nullptr;
  if (*tombstone > 0) {
    if (Status s = host_->DiscardReplay(group); !s.ok()) {
      LOG_WARN("range {}: no replica made: {}", group, s.ToString());
      return nullptr;
    }
  }
  Result<std::unique_ptr<RangeStateMachine>> sm =
      RangeStateMachine::Open(host_->engine(), host_->fs(), group, keys::RangeDescriptor{});
  if (!sm.ok() || (*sm)->initialized()) {
    LOG_WARN("range {}: no replica made for its leader: {}", group,
             sm.ok() ? "its descriptor is here without a replica" : sm.status().ToString());
    return nullptr;
  }
  RangeStateMachine* raw = sm->get();
  SetHandlers(raw);
  ReplicaOptions ro = options_.replica;
  ro.group = group;
  ro.replica_id = replica_id;
  ro.bootstrap_voters.clear();
  ro.node_of = Placement(raw, {{from_replica, from_node}});
  ro.campaign_at_start = false;
  Result<std::shared_ptr<Replica>> replica = host_->AddReplica(ro, std::move(*sm));
  if (!replica.ok()) {
    LOG_WARN("range {}: no replica made for its leader: {}", group, replica.status().ToString());
    return nullptr;
  }
  LOG_INFO("range {}: replica {} made here for its leader on node {:x}, to receive a snapshot",
           group, replica_id, from_node);
  std::lock_guard<std::mutex> lock(mu_);
  waiting_[group] = Range{*replica, raw, std::make_shared<RangeLoad>(host_->clock().Monotonic())};
  return *replica;
}

Result<NativeKeyspace::Range> NativeKeyspace::Find(std::string_view key) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = by_start_.upper_bound(std::string(key));
  if (it == by_start_.begin()) return NoRange(key);
  --it;
  if (!it->second.sm->descriptor().ContainsKey(key)) return NoRange(key);
  return it->second;
}

Result<NativeKeyspace::Range> NativeKeyspace::FindById(keys::RangeId id) const {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [start, r] : by_start_) {
    if (r.sm->descriptor().range_id == id) return r;
  }
  return Status::NotFound(fmt::format("conclave: range {} has no replica on this node", id))
      .WithReason(ErrorReason::kGroupNotFound);
}

std::vector<NativeKeyspace::Range> NativeKeyspace::All() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<Range> out;
  for (const auto& [first, r] : by_start_)
    out.push_back(r);
  return out;
}

size_t NativeKeyspace::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return by_start_.size();
}

void NativeKeyspace::Write(std::string key, serverpb::RangeCommand command, WriteDone done,
                           int attempt, Route route, int waits) {
  Result<Range> r = Find(key);
  if (!r.ok()) {
    if (route == Route::kAny && forwarder_ != nullptr &&
        r.status().reason() == ErrorReason::kGroupNotFound) {
      return ForwardWrite(std::move(key), std::move(command), std::move(done));
    }
    return done(r.status(), 0);
  }
  if (attempt == 0 && waits == 0) r->load->Record(key);
  const keys::RangeDescriptor d = r->sm->descriptor();
  const keys::RangeId id = d.range_id;
  // A frozen range: try again once its merge settled.
  auto wait = [this, id, attempt, route, waits](std::string key, serverpb::RangeCommand command,
                                                WriteDone done, Status frozen) {
    if (waits >= kFrozenWaits) return done(std::move(frozen), id);
    Park(id, [this, key = std::move(key), command = std::move(command), done = std::move(done),
              attempt, route, waits]() mutable {
      Write(std::move(key), std::move(command), std::move(done), attempt, route, waits + 1);
    });
  };
  if (d.frozen_into != 0)
    return wait(std::move(key), std::move(command), std::move(done), Frozen(d));
  command.set_wall_nanos(Now(host_->clock()));
  std::string bytes = command.SerializeAsString();
  r->replica->ProposeAsync(
      std::move(bytes),
      [this, done = std::move(done), id, key = std::move(key), command = std::move(command),
       attempt, waits, wait](Result<std::any> applied) mutable {
        if (!applied.ok()) return done(applied.status(), id);
        const auto* w = std::any_cast<RangeWriteResult>(&applied.value());
        if (w == nullptr) return done(Status::Internal("range: no result"), id);
        if (Moved(w->status) && attempt + 1 < kRouteAttempts) {
          // The range split first and refused it: follow the key.
          return Write(std::move(key), std::move(command), std::move(done), attempt + 1,
                       Route::kLocal, waits);
        }
        // It froze for a merge first: wait for the merge to settle.
        if (IsFrozen(w->status)) {
          return wait(std::move(key), std::move(command), std::move(done), w->status);
        }
        if (!w->status.ok()) return done(w->status, id);
        done(*w, id);
      });
}

void NativeKeyspace::Put(kvpb::PutRequest request, WriteDone done, Route route) {
  std::string key = request.key();
  serverpb::RangeCommand c;
  *c.mutable_put() = std::move(request);
  Write(std::move(key), std::move(c), std::move(done), 0, route);
}

void NativeKeyspace::Delete(kvpb::DeleteRequest request, WriteDone done, Route route) {
  std::string key = request.key();
  serverpb::RangeCommand c;
  *c.mutable_delete_() = std::move(request);
  Write(std::move(key), std::move(c), std::move(done), 0, route);
}

// ---- routing ----

// ---- the meta range, here or through a member that holds it ----

Result<std::vector<RangeValue>> NativeKeyspace::MetaScan(const std::string& start,
                                                         const std::string& end, size_t limit,
                                                         bool* more) {
  if (Result<Range> meta = Find(start); meta.ok()) {
    RETURN_IF_ERROR(meta->replica->ReadBarrier());
    return meta->sm->Scan(start, end, limit, more);
  }
  kvpb::ScanRequest req;
  req.set_start(start);
  req.set_end(end);
  req.set_limit(limit);
  ASSIGN_OR_RETURN(kvpb::ScanResponse resp, AskMetaHolder<kvpb::ScanResponse>([&](uint64_t member) {
                     return forwarder_->Scan(member, req);
                   }));
  std::vector<RangeValue> out;
  for (kvpb::KeyValue& kv : *resp.mutable_kvs()) {
    out.push_back(RangeValue{std::move(*kv.mutable_key()), std::move(*kv.mutable_value()),
                             FromProto(kv.timestamp())});
  }
  *more = resp.more();
  return out;
}

template <typename Response>
Status NativeKeyspace::MetaWrite(
    serverpb::RangeCommand c,
    const std::function<void(uint64_t member, std::function<void(Result<Response>)>)>& send) {
  const std::string& key = c.has_put() ? c.put().key() : c.delete_().key();
  if (Result<Range> meta = Find(key); meta.ok())
    return ProposeAndWait(*meta, std::move(c)).status();
  return AskMetaHolder<Response>([&](uint64_t member) -> Result<Response> {
           auto outcome = std::make_shared<std::promise<Result<Response>>>();
           std::future<Result<Response>> done = outcome->get_future();
           send(member, [outcome](Result<Response> r) { outcome->set_value(std::move(r)); });
           return done.get();  // bounded by the forwarder's deadline
         })
      .status();
}

Status NativeKeyspace::MetaPut(kvpb::PutRequest put) {
  serverpb::RangeCommand c;
  *c.mutable_put() = put;
  return MetaWrite<kvpb::PutResponse>(std::move(c), [&](uint64_t member, auto done) {
    forwarder_->Put(member, put, std::move(done));
  });
}

Status NativeKeyspace::MetaDelete(kvpb::DeleteRequest del) {
  serverpb::RangeCommand c;
  *c.mutable_delete_() = del;
  return MetaWrite<kvpb::DeleteResponse>(std::move(c), [&](uint64_t member, auto done) {
    forwarder_->Delete(member, del, std::move(done));
  });
}

template <typename Response>
Result<Response> NativeKeyspace::AskMetaHolder(
    const std::function<Result<Response>(uint64_t member)>& call) {
  const Status none = Status::NotFound("conclave: no member holds a replica of the meta range")
                          .WithReason(ErrorReason::kGroupNotFound);
  if (forwarder_ == nullptr || !options_.members) return none;
  std::vector<uint64_t> members = options_.members();
  // The member that answered last time first.
  const uint64_t last = meta_member_.load();
  std::stable_partition(members.begin(), members.end(), [&](uint64_t m) { return m == last; });
  Status failed = none;
  for (uint64_t m : members) {
    if (m == node_id_) continue;
    Result<Response> r = call(m);
    if (r.ok()) {
      meta_member_.store(m);
      return r;
    }
    // NOT_FOUND: it holds none either. A condition that failed is an
    // answer.
    if (r.status().code() == StatusCode::kFailedPrecondition) return r;
    if (r.status().code() != StatusCode::kNotFound) failed = r.status();
  }
  return failed;
}

std::optional<keys::RangeDescriptor> NativeKeyspace::CachedRoute(std::string_view key) const {
  std::lock_guard<std::mutex> lock(routes_mu_);
  auto it = routes_.upper_bound(std::string(key));
  if (it != routes_.end() && it->second.ContainsKey(key)) return it->second;
  return std::nullopt;
}

Result<keys::RangeDescriptor> NativeKeyspace::Locate(std::string_view key, bool fresh) {
  if (!fresh) {
    if (std::optional<keys::RangeDescriptor> d = CachedRoute(key)) return *d;
  }
  bool more = false;
  Result<std::vector<RangeValue>> found =
      MetaScan(RangeMapKey(key) + '\0', RangeMapEnd(), 1, &more);
  if (!found.ok()) {
    return Status::Unavailable(
        fmt::format("conclave: key \"{}\"'s range is not here and the range map cannot be read: {}",
                    key, found.status().message()));
  }
  Result<keys::RangeDescriptor> d = found->empty() ? Status::NotFound("no record")
                                                   : keys::DecodeRangeDescriptor((*found)[0].value);
  if (!d.ok() || !d->ContainsKey(key)) {
    return Status::Unavailable(
        fmt::format("conclave: the range map has no range holding key \"{}\" yet; try again", key));
  }
  std::lock_guard<std::mutex> lock(routes_mu_);
  // What this record replaces: the cached ranges it overlaps.
  for (auto it = routes_.upper_bound(d->start_key);
       it != routes_.end() && it->second.start_key < d->end_key;) {
    it = routes_.erase(it);
  }
  routes_[d->end_key] = *d;
  return *d;
}

Result<std::vector<keys::RangeDescriptor>> NativeKeyspace::RangeMap() {
  std::vector<keys::RangeDescriptor> out;
  std::string cursor = RangeMapKey("");
  for (bool more = true; more;) {
    ASSIGN_OR_RETURN(std::vector<RangeValue> page, MetaScan(cursor, RangeMapEnd(), 1'000, &more));
    for (const RangeValue& kv : page) {
      ASSIGN_OR_RETURN(keys::RangeDescriptor d, keys::DecodeRangeDescriptor(kv.value));
      out.push_back(std::move(d));
    }
    if (page.empty()) break;
    cursor = page.back().key + '\0';
  }
  return out;
}

std::vector<uint64_t> NativeKeyspace::Holders(const keys::RangeDescriptor& d) const {
  std::vector<uint64_t> nodes;
  for (keys::ReplicaType type : {keys::ReplicaType::kVoter, keys::ReplicaType::kLearner}) {
    for (const keys::ReplicaDescriptor& r : d.replicas) {
      if (r.type == type && r.node_id != node_id_) nodes.push_back(r.node_id);
    }
  }
  return nodes;
}

void NativeKeyspace::Forward(std::string key, int attempt, bool idempotent, ForwardCall call,
                             std::function<void(Status)> fail) {
  if (attempt == 0) {
    if (std::optional<keys::RangeDescriptor> d = CachedRoute(key)) {
      return ForwardTo(*d, std::move(key), attempt, idempotent, std::move(call), std::move(fail));
    }
  }
  // Reading the range map waits for a read round: not on the thread that
  // called (gRPC's, which also delivers the Raft messages the round needs).
  route_pool_.Post([this, key = std::move(key), attempt, idempotent, call = std::move(call),
                    fail = std::move(fail)]() mutable {
    Result<keys::RangeDescriptor> d = Locate(key, attempt > 0);
    if (!d.ok()) return fail(d.status());
    ForwardTo(*d, std::move(key), attempt, idempotent, std::move(call), std::move(fail));
  });
}

void NativeKeyspace::ForwardTo(const keys::RangeDescriptor& d, std::string key, int attempt,
                               bool idempotent, ForwardCall call,
                               std::function<void(Status)> fail) {
  const std::vector<uint64_t> nodes = Holders(d);
  if (nodes.empty()) return fail(NoRange(key));
  const uint64_t node = nodes[static_cast<size_t>(attempt) % nodes.size()];
  ForwardCall again = call;
  call(node, [this, key = std::move(key), attempt, idempotent, again = std::move(again),
              fail = std::move(fail)](Status s) mutable {
    // The holder refused before doing anything (the range moved, or the
    // map is stale), or, for a read, could not be reached: read the map
    // again and try the next holder.
    if (TryElsewhere(s, idempotent) && attempt + 1 < kRouteAttempts) {
      return Forward(std::move(key), attempt + 1, idempotent, std::move(again), std::move(fail));
    }
    fail(std::move(s));
  });
}

void NativeKeyspace::ForwardWrite(std::string key, serverpb::RangeCommand command, WriteDone done) {
  ++forwarded_;
  auto finish = std::make_shared<WriteDone>(std::move(done));
  auto fail = [finish](Status s) { (*finish)(std::move(s), 0); };
  if (command.has_put()) {
    auto req = std::make_shared<kvpb::PutRequest>(command.put());
    return Forward(
        std::move(key), 0, /*idempotent=*/false,
        [this, req, finish](uint64_t node, std::function<void(Status)> retry) {
          forwarder_->Put(node, *req, [finish, retry](Result<kvpb::PutResponse> r) {
            if (!r.ok()) return retry(r.status());
            (*finish)(RangeWriteResult{Status::Ok(), FromProto(r->timestamp())}, r->range_id());
          });
        },
        fail);
  }
  auto req = std::make_shared<kvpb::DeleteRequest>(command.delete_());
  Forward(
      std::move(key), 0, /*idempotent=*/false,
      [this, req, finish](uint64_t node, std::function<void(Status)> retry) {
        forwarder_->Delete(node, *req, [finish, retry](Result<kvpb::DeleteResponse> r) {
          if (!r.ok()) return retry(r.status());
          RangeWriteResult w{Status::Ok(), FromProto(r->timestamp())};
          w.deleted = r->deleted() ? 1 : 0;
          (*finish)(std::move(w), r->range_id());
        });
      },
      fail);
}

template <typename Response>
Result<Response> NativeKeyspace::ForwardSpan(
    const std::string& cursor, bool idempotent, std::string* part_end,
    const std::function<Result<Response>(uint64_t node, const std::string& end)>& call,
    const std::string& end) {
  ++forwarded_;
  Status last = NoRange(cursor);
  for (int attempt = 0; attempt < kRouteAttempts; ++attempt) {
    ASSIGN_OR_RETURN(keys::RangeDescriptor d, Locate(cursor, attempt > 0));
    // The part this range holds: up to its end, or the span's.
    *part_end = !end.empty() && (d.end_key.empty() || end < d.end_key) ? end : d.end_key;
    const std::vector<uint64_t> nodes = Holders(d);
    if (nodes.empty()) return NoRange(cursor);
    Result<Response> r = call(nodes[static_cast<size_t>(attempt) % nodes.size()], *part_end);
    if (r.ok() || !TryElsewhere(r.status(), idempotent)) return r;
    last = r.status();
  }
  return last;
}

Result<RangeWriteResult> NativeKeyspace::ProposeAndWait(const Range& r, serverpb::RangeCommand c) {
  c.set_wall_nanos(Now(host_->clock()));
  ASSIGN_OR_RETURN(std::any applied, r.replica->Propose(c.SerializeAsString()));
  auto* w = std::any_cast<RangeWriteResult>(&applied);
  if (w == nullptr) return Status::Internal("range: no result");
  RETURN_IF_ERROR(w->status);
  return std::move(*w);
}

Result<uint64_t> NativeKeyspace::DeleteRange(const std::string& start, const std::string& end,
                                             Route route) {
  uint64_t deleted = 0;
  std::string cursor = start;
  int waits = 0;
  for (int moved = 0;;) {
    Result<Range> found = Find(cursor);
    if (!found.ok() && route == Route::kAny && forwarder_ != nullptr &&
        found.status().reason() == ErrorReason::kGroupNotFound) {
      // This part's range is held elsewhere.
      std::string part_end;
      ASSIGN_OR_RETURN(kvpb::DeleteRangeResponse resp,
                       ForwardSpan<kvpb::DeleteRangeResponse>(
                           cursor, /*idempotent=*/false, &part_end,
                           [&](uint64_t node, const std::string& e) {
                             kvpb::DeleteRangeRequest q;
                             q.set_start(cursor);
                             q.set_end(e);
                             return forwarder_->DeleteRange(node, q);
                           },
                           end));
      deleted += resp.deleted();
      if (part_end.empty() || (!end.empty() && part_end >= end)) break;
      cursor = part_end;
      continue;
    }
    ASSIGN_OR_RETURN(Range r, std::move(found));
    r.load->Record(cursor);
    serverpb::RangeCommand c;
    c.mutable_delete_range()->set_start(cursor);
    c.mutable_delete_range()->set_end(end);  // the range clips it as it applies
    Result<RangeWriteResult> proposed = ProposeAndWait(r, std::move(c));
    if (!proposed.ok() && IsFrozen(proposed.status()) && ++waits < kFrozenWaits) {
      AwaitThaw(r.sm->descriptor().range_id);
      continue;
    }
    ASSIGN_OR_RETURN(RangeWriteResult w, std::move(proposed));
    deleted += w.deleted;
    const std::string& covered = w.covered_end;
    if (!covered.empty() && covered <= cursor) {
      // The range split before the delete applied and no longer holds the
      // cursor: find its new range.
      if (++moved == kRouteAttempts) {
        return Status::Unavailable(fmt::format("key \"{}\" keeps moving between ranges", cursor));
      }
      continue;
    }
    if (covered.empty() || (!end.empty() && covered >= end)) break;
    cursor = covered;
  }
  return deleted;
}

void NativeKeyspace::Get(std::string key, ReadDone done, Route route) {
  if (route == Route::kAny && forwarder_ != nullptr) {
    Result<Range> r = Find(key);
    if (!r.ok() && r.status().reason() == ErrorReason::kGroupNotFound) {
      ++forwarded_;
      auto finish = std::make_shared<ReadDone>(std::move(done));
      auto req = std::make_shared<kvpb::GetRequest>();
      req->set_key(key);
      return Forward(
          std::move(key), 0, /*idempotent=*/true,
          [this, req, finish](uint64_t node, std::function<void(Status)> retry) {
            forwarder_->Get(node, *req, [req, finish, retry](Result<kvpb::GetResponse> r) {
              if (!r.ok()) return retry(r.status());
              std::optional<RangeValue> v;
              if (r->found()) v = RangeValue{req->key(), r->value(), FromProto(r->timestamp())};
              (*finish)(std::move(v), r->range_id());
            });
          },
          [finish](Status s) { (*finish)(std::move(s), 0); });
    }
  }
  GetAttempt(std::move(key), done, 0);
}

void NativeKeyspace::GetAttempt(std::string key, ReadDone done, int attempt, int waits) {
  Result<Range> r = Find(key);
  if (!r.ok()) return done(r.status(), 0);
  if (attempt == 0 && waits == 0) r->load->Record(key);
  RangeStateMachine* sm = r->sm;
  const keys::RangeId id = sm->descriptor().range_id;
  r->replica->ReadBarrierAsync([this, sm, id, attempt, waits, key = std::move(key),
                                done = std::move(done)](Status s) mutable {
    if (!s.ok()) return done(s, id);
    Result<std::optional<RangeValue>> v = sm->Get(key);
    if (!v.ok() && Moved(v.status()) && attempt + 1 < kRouteAttempts) {
      return GetAttempt(std::move(key), std::move(done), attempt + 1, waits);
    }
    if (!v.ok() && IsFrozen(v.status()) && waits < kFrozenWaits) {
      return Park(id,
                  [this, key = std::move(key), done = std::move(done), attempt, waits]() mutable {
                    GetAttempt(std::move(key), std::move(done), attempt, waits + 1);
                  });
    }
    if (sm->removed()) return done(LeftHere(id), id);
    done(std::move(v), id);
  });
}

Result<ScanPage> NativeKeyspace::Scan(const std::string& start, const std::string& end,
                                      size_t limit, Route route) {
  ScanPage page;
  std::string cursor = start;
  int waits = 0;
  for (int moved = 0;;) {
    Result<Range> found = Find(cursor);
    if (!found.ok() && route == Route::kAny && forwarder_ != nullptr &&
        found.status().reason() == ErrorReason::kGroupNotFound) {
      // This part's range is held elsewhere: that node scans it.
      std::string part_end;
      ASSIGN_OR_RETURN(kvpb::ScanResponse resp, ForwardSpan<kvpb::ScanResponse>(
                                                    cursor, /*idempotent=*/true, &part_end,
                                                    [&](uint64_t node, const std::string& e) {
                                                      kvpb::ScanRequest q;
                                                      q.set_start(cursor);
                                                      q.set_end(e);
                                                      q.set_limit(limit - page.kvs.size());
                                                      return forwarder_->Scan(node, q);
                                                    },
                                                    end));
      for (kvpb::KeyValue& kv : *resp.mutable_kvs()) {
        page.kvs.push_back(RangeValue{std::move(*kv.mutable_key()), std::move(*kv.mutable_value()),
                                      FromProto(kv.timestamp())});
      }
      const bool last = part_end.empty() || (!end.empty() && part_end >= end);
      if (resp.more() || (page.kvs.size() == limit && !last)) {
        std::string resume = resp.more() ? resp.resume_key() : part_end;
        if (end.empty() || resume < end) {
          page.more = true;
          page.resume_key = std::move(resume);
        }
        break;
      }
      if (last) break;
      cursor = part_end;
      if (options_.test_bug_scan_skips_boundary) cursor += '\0';
      continue;
    }
    ASSIGN_OR_RETURN(Range r, std::move(found));
    r.load->Record(cursor);
    if (Status s = r.replica->ReadBarrier(); !s.ok()) {
      // This node's replica left (moved, or merged away) during the read
      // round: the range is elsewhere now, or wider here.
      if (r.sm->removed() && ++moved < kRouteAttempts) continue;
      return s;
    }
    bool more = false;
    keys::RangeDescriptor used;
    Result<std::vector<RangeValue>> scanned =
        r.sm->Scan(cursor, end, limit - page.kvs.size(), &more, &used);
    if (!scanned.ok() && IsFrozen(scanned.status()) && ++waits < kFrozenWaits) {
      AwaitThaw(used.range_id);
      continue;
    }
    ASSIGN_OR_RETURN(std::vector<RangeValue> kvs, std::move(scanned));
    if (r.sm->removed()) return LeftHere(used.range_id);
    if (!used.ContainsKey(cursor)) {
      // A split moved the cursor's keys to a new range since Find.
      if (++moved == kRouteAttempts) {
        return Status::Unavailable(fmt::format("key \"{}\" keeps moving between ranges", cursor));
      }
      continue;
    }
    for (RangeValue& kv : kvs)
      page.kvs.push_back(std::move(kv));
    const bool last = used.end_key.empty() || (!end.empty() && used.end_key >= end);
    if (more || (page.kvs.size() == limit && !last)) {
      // Just after the last key returned: the next page starts there,
      // unless that is already past the scan's end.
      std::string resume = page.kvs.empty() ? cursor : page.kvs.back().key + '\0';
      if (end.empty() || resume < end) {
        page.more = true;
        page.resume_key = std::move(resume);
      }
      break;
    }
    if (last) break;
    cursor = used.end_key;
    if (options_.test_bug_scan_skips_boundary) cursor += '\0';
  }
  return page;
}

// ---- splits ----

Result<keys::RangeId> NativeKeyspace::AllocateRangeId() {
  const std::string key(kNextRangeIdKey);
  ASSIGN_OR_RETURN(Range meta, Find(key));
  for (int attempt = 0; attempt < kRouteAttempts; ++attempt) {
    RETURN_IF_ERROR(meta.replica->ReadBarrier());
    ASSIGN_OR_RETURN(std::optional<RangeValue> current, meta.sm->Get(key));
    keys::RangeId next = kFirstRangeId;
    serverpb::RangeCommand c;
    kvpb::PutRequest* put = c.mutable_put();
    if (current) {
      const std::string& v = current->value;
      auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), next);
      if (ec != std::errc() || end != v.data() + v.size() || next < kFirstRangeId) {
        return Status::Corruption(
            fmt::format("meta range: the range id counter holds \"{}\"", current->value));
      }
      put->mutable_precondition()->set_value(current->value);
    } else {
      // No split yet: the cluster's initial ranges, all of them on every
      // initial member, are every range there is.
      for (const Range& r : All())
        next = std::max(next, r.sm->descriptor().range_id + 1);
      put->mutable_precondition()->set_absent(true);
    }
    put->set_key(key);
    put->set_value(std::to_string(next + 1));
    Result<RangeWriteResult> w = ProposeAndWait(meta, std::move(c));
    if (w.ok()) return next;
    // Another node took this id first: read the counter again.
    if (w.status().code() != StatusCode::kFailedPrecondition) return w.status();
  }
  return Status::Unavailable("meta range: the range id counter is contended; try again");
}

Result<RangeWriteResult> NativeKeyspace::SplitOnce(const Range& r, const std::string& key,
                                                   uint64_t generation, bool sticky) {
  ASSIGN_OR_RETURN(keys::RangeId id, AllocateRangeId());
  // A split onto a range that exists would overwrite it: refuse rather
  // than trust the counter. (Checked here, not as the split applies: a
  // replica cannot know every range of the cluster.)
  ASSIGN_OR_RETURN(std::optional<std::string> taken,
                   host_->engine()->Get(keys::RangeDescriptorKey(id)));
  if (taken || host_->FindReplica(id) != nullptr) {
    return Status::Internal(
        fmt::format("meta range: the range id counter handed out {}, which is in use", id));
  }
  serverpb::RangeCommand c;
  c.mutable_split()->set_split_key(key);
  c.mutable_split()->set_new_range_id(id);
  c.mutable_split()->set_generation(generation);
  c.mutable_split()->set_sticky(sticky);
  ASSIGN_OR_RETURN(RangeWriteResult w, ProposeAndWait(r, std::move(c)));
  serverpb::RangeEvent e;
  e.set_kind("split");
  e.set_range_id(w.split->first.range_id);
  e.set_other_range_id(w.split->second.range_id);
  e.set_key(key);
  RecordEvent(std::move(e));
  return w;
}

Result<std::pair<keys::RangeDescriptor, keys::RangeDescriptor>> NativeKeyspace::Split(
    const std::string& key) {
  if (key.empty() || key >= kSystemKeyStart) {
    return Status::InvalidArgument("conclave: a split key is a non-empty user key");
  }
  for (int attempt = 0;; ++attempt) {
    ASSIGN_OR_RETURN(Range r, Find(key));
    const keys::RangeDescriptor d = r.sm->descriptor();
    if (d.start_key == key) {
      return Status::AlreadyExists(
          fmt::format("conclave: key \"{}\" already starts range {}", key, d.range_id));
    }
    Result<RangeWriteResult> w = SplitOnce(r, key, d.generation, /*sticky=*/true);
    if (w.ok()) return *w->split;
    // The range changed between reading its descriptor and the split
    // applying (another split, say): look again.
    if (r.sm->descriptor().generation == d.generation || attempt + 1 == kRouteAttempts) {
      return w.status();
    }
  }
}

Result<kvpb::SplitResponse> NativeKeyspace::ForwardSplit(const std::string& key) {
  if (forwarder_ == nullptr) return NoRange(key);
  kvpb::SplitRequest req;
  req.set_key(key);
  std::string part_end;
  return ForwardSpan<kvpb::SplitResponse>(
      key, /*idempotent=*/false, &part_end,
      [&](uint64_t node, const std::string&) { return forwarder_->Split(node, req); }, "");
}

// ---- merges ----

Status NativeKeyspace::OnMerged(const keys::RangeDescriptor& right) {
  std::optional<Range> gone;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = by_start_.begin(); it != by_start_.end(); ++it) {
      if (it->second.sm->descriptor().range_id == right.range_id) {
        gone = it->second;
        by_start_.erase(it);
        break;
      }
    }
    if (auto it = waiting_.find(right.range_id); it != waiting_.end()) {
      if (!gone) gone = it->second;
      waiting_.erase(it);
    }
  }
  // The merge's batch deleted its records and wrote its tombstone. Synced
  // before the replica (and what the log holds of it) goes: the log no
  // longer replays what the right range applied.
  RETURN_IF_ERROR(host_->engine()->Sync());
  if (gone) gone->sm->MarkRemoved();
  if (std::shared_ptr<Replica> replica = host_->FindReplica(right.range_id)) {
    if (auto* sm = dynamic_cast<RangeStateMachine*>(replica->state_machine())) sm->MarkRemoved();
    host_->RemoveReplica(right.range_id);
  }
  LOG_INFO("range {}: merged into its left neighbour; this node's replica of it is gone",
           right.range_id);
  Thaw(right.range_id);
  ReportSoon();
  return Status::Ok();
}

void NativeKeyspace::OnFrozenChanged(const keys::RangeDescriptor& d) {
  if (d.frozen_into == 0) Thaw(d.range_id);
  ReportSoon();
}

void NativeKeyspace::DropMerged(RangeStateMachine* sm) {
  const keys::RangeDescriptor d = sm->descriptor();
  sm->MarkRemoved();
  // Records and tombstone only: the keys are the wider range's now.
  if (Status s = RangeStateMachine::Destroy(host_->engine(), d, {{d.start_key, d.end_key}});
      !s.ok()) {
    LOG_ERROR("range {}: dropping a range merged away: {}", d.range_id, s.ToString());
  }
  if (host_->FindReplica(d.range_id) != nullptr) host_->RemoveReplica(d.range_id);
  LOG_INFO("range {}: a snapshot showed it merged into its left neighbour; replica dropped",
           d.range_id);
  Thaw(d.range_id);
}

void NativeKeyspace::Park(keys::RangeId id, std::function<void()> retry) {
  {
    std::lock_guard<std::mutex> lock(thaw_mu_);
    parked_[id].emplace_back(host_->clock().Monotonic(), std::move(retry));
  }
  // It may have thawed between the refusal and now.
  Result<Range> r = FindById(id);
  if (!r.ok() || r->sm->descriptor().frozen_into == 0) Thaw(id);
}

void NativeKeyspace::Thaw(keys::RangeId id) {
  std::vector<std::pair<Duration, std::function<void()>>> ready;
  {
    std::lock_guard<std::mutex> lock(thaw_mu_);
    ++thaws_;
    if (auto it = parked_.find(id); it != parked_.end()) {
      ready = std::move(it->second);
      parked_.erase(it);
    }
  }
  thaw_cv_.notify_all();
  for (auto& [since, retry] : ready)
    route_pool_.Post(std::move(retry));
}

void NativeKeyspace::AwaitThaw(keys::RangeId id) {
  std::unique_lock<std::mutex> lock(thaw_mu_);
  const uint64_t seen = thaws_;
  lock.unlock();
  Result<Range> r = FindById(id);
  if (!r.ok() || r->sm->descriptor().frozen_into == 0) return;
  lock.lock();
  thaw_cv_.wait_for(lock, std::chrono::seconds(1), [&] { return thaws_ != seen; });
}

void NativeKeyspace::ReleaseParked() {
  const Duration now = host_->clock().Monotonic();
  std::vector<std::function<void()>> ready;
  {
    std::lock_guard<std::mutex> lock(thaw_mu_);
    for (auto it = parked_.begin(); it != parked_.end();) {
      auto& waiting = it->second;
      for (auto w = waiting.begin(); w != waiting.end();) {
        if (now - w->first < std::chrono::seconds(1)) {
          ++w;
          continue;
        }
        ready.push_back(std::move(w->second));
        w = waiting.erase(w);
      }
      it = waiting.empty() ? parked_.erase(it) : std::next(it);
    }
  }
  for (std::function<void()>& retry : ready)
    route_pool_.Post(std::move(retry));
}

Status NativeKeyspace::Colocate(const keys::RangeDescriptor& l, keys::RangeDescriptor* r) {
  const std::set<uint64_t> left = NodesOf(l);
  const std::set<uint64_t> right = NodesOf(*r);
  if (left.size() != right.size()) {
    return Status::FailedPrecondition(fmt::format(
        "conclave: ranges {} and {} have {} and {} replicas; a merge needs as many on each",
        l.range_id, r->range_id, left.size(), right.size()));
  }
  std::vector<uint64_t> from;
  std::vector<uint64_t> to;
  std::set_difference(right.begin(), right.end(), left.begin(), left.end(),
                      std::back_inserter(from));
  std::set_difference(left.begin(), left.end(), right.begin(), right.end(), std::back_inserter(to));
  // This node first: it coordinates the later moves itself.
  std::stable_partition(to.begin(), to.end(), [&](uint64_t n) { return n == node_id_; });
  std::set<uint64_t> live;
  for (uint64_t m : Members())
    live.insert(m);
  for (size_t i = 0; i < from.size(); ++i) {
    LOG_INFO("range {}: moving its replica from node {:x} to node {:x} to merge it into range {}",
             r->range_id, from[i], to[i], l.range_id);
    uint64_t generation = 0;
    RETURN_IF_ERROR(MoveVia(*r, from[i], to[i], live, {}, &generation));
    // As it is now (here, once this node holds it).
    if (Result<Range> here = FindById(r->range_id); here.ok()) {
      RETURN_IF_ERROR(here->replica->ReadBarrier());
      *r = here->sm->descriptor();
    } else {
      for (keys::ReplicaDescriptor& rd : r->replicas) {
        if (rd.node_id == from[i]) rd.node_id = to[i];
      }
    }
  }
  return Status::Ok();
}

Result<keys::RangeDescriptor> NativeKeyspace::Merge(const std::string& key) {
  if (key >= kSystemKeyStart) {
    return Status::InvalidArgument("conclave: the system keys are not merged");
  }
  ASSIGN_OR_RETURN(Range left, Find(key));
  keys::RangeDescriptor l = left.sm->descriptor();
  if (l.frozen_into != 0) return Frozen(l);
  if (l.end_key.empty() || l.end_key >= kSystemKeyStart) {
    return Status::FailedPrecondition(fmt::format(
        "conclave: range {} is the last user range: no range is to its right", l.range_id));
  }
  // The right-hand neighbour, wherever it is.
  keys::RangeDescriptor r;
  if (Result<Range> here = Find(l.end_key); here.ok()) {
    r = here->sm->descriptor();
  } else {
    ASSIGN_OR_RETURN(r, Locate(l.end_key, /*fresh=*/true));
  }
  auto changed = [&] {
    return Status::Unavailable(
        fmt::format("conclave: range {} or its right neighbour changed; try again", l.range_id));
  };
  if (r.start_key != l.end_key) return changed();
  RETURN_IF_ERROR(Colocate(l, &r));
  ASSIGN_OR_RETURN(Range right, FindById(r.range_id));
  // Both as their logs have them now.
  RETURN_IF_ERROR(right.replica->ReadBarrier());
  RETURN_IF_ERROR(left.replica->ReadBarrier());
  r = right.sm->descriptor();
  l = left.sm->descriptor();
  if (r.frozen_into != 0) return Frozen(r);
  if (l.merging_from != 0 || r.merging_from != 0) {
    return Status::Unavailable(fmt::format(
        "conclave: range {} or its right neighbour is in another merge; try again", l.range_id));
  }
  if (r.start_key != l.end_key || NodesOf(r) != NodesOf(l)) return changed();

  serverpb::RangeCommand prepare;
  prepare.mutable_prepare_merge()->set_right_range_id(r.range_id);
  prepare.mutable_prepare_merge()->set_generation(l.generation);
  ASSIGN_OR_RETURN(RangeWriteResult prepared, ProposeAndWait(left, std::move(prepare)));
  l = *prepared.descriptor;

  serverpb::RangeCommand freeze;
  freeze.mutable_freeze()->set_left_range_id(l.range_id);
  freeze.mutable_freeze()->set_generation(r.generation);
  Result<keys::RangeDescriptor> merged = Status::Unavailable("not frozen");
  if (Result<RangeWriteResult> frozen = ProposeAndWait(right, std::move(freeze)); frozen.ok()) {
    const uint64_t freeze_index = right.replica->applied_index();
    LOG_INFO("range {}: frozen at index {} to merge into range {}", r.range_id, freeze_index,
             l.range_id);
    merged = FinishMerge(left, l, right, *frozen->descriptor, freeze_index);
  } else {
    merged = frozen.status();
  }
  Result<bool> after_all = CallOffMerge(l.range_id, r.range_id, r.start_key);
  if (after_all.ok() && *after_all) merged = left.sm->descriptor();
  if (merged.ok()) {
    ++merged_;
    serverpb::RangeEvent e;
    e.set_kind("merge");
    e.set_range_id(l.range_id);
    e.set_other_range_id(r.range_id);
    e.set_key(r.start_key);
    RecordEvent(std::move(e));
    return merged;
  }
  ++merges_failed_;
  LOG_WARN("range {}: merging range {} in failed: {}; {}", l.range_id, r.range_id,
           merged.status().ToString(),
           after_all.ok() ? "called off" : "left frozen: " + after_all.status().ToString());
  return merged.status();
}

Result<keys::RangeDescriptor> NativeKeyspace::FinishMerge(const Range& left,
                                                          const keys::RangeDescriptor& l,
                                                          const Range& right,
                                                          const keys::RangeDescriptor& frozen,
                                                          uint64_t freeze_index) {
  // Every node of the left range holds the right one's data, complete,
  // before any of them takes it in: each has applied the freeze.
  for (uint64_t node : NodesOf(l)) {
    if (node == node_id_) continue;
    if (forwarder_ == nullptr) return Status::Unavailable("no forwarder");
    // Asked once: the right range's requests wait meanwhile, so a node that
    // does not answer soon calls the merge off.
    if (Stopping()) return Stopped();
    Result<serverpb::RangeAppliedResponse> applied =
        forwarder_->RangeApplied(node, frozen.range_id);
    // At the freeze's generation: no replica change after it.
    if (!applied.ok() || applied->applied_index() < freeze_index ||
        applied->generation() != frozen.generation) {
      return Status::Unavailable(fmt::format(
          "conclave: node {:x} has not applied range {}'s freeze (index {}, generation {}): {}",
          node, frozen.range_id, freeze_index, frozen.generation,
          applied.ok() ? fmt::format("it is at {}, generation {}", applied->applied_index(),
                                     applied->generation())
                       : applied.status().ToString()));
    }
  }
  if (right.sm->descriptor().generation != frozen.generation) {
    return Status::Unavailable(
        fmt::format("conclave: range {} changed after its freeze", frozen.range_id));
  }
  // A frozen range's applied state no longer changes.
  const keys::AppliedState a = right.sm->applied_state();
  serverpb::RangeCommand c;
  serverpb::MergeCommand* m = c.mutable_merge();
  m->set_right(keys::EncodeRangeDescriptor(frozen));
  m->set_generation(l.generation);
  m->set_right_closed_wall_nanos(a.closed_timestamp.wall_nanos);
  m->set_right_closed_logical(a.closed_timestamp.logical);
  m->set_right_bytes(a.data_bytes);
  RETURN_IF_ERROR(ProposeAndWait(left, std::move(c)).status());
  return left.sm->descriptor();
}

Result<bool> NativeKeyspace::CallOffMerge(keys::RangeId left_id, keys::RangeId right_id,
                                          const std::string& right_start) {
  ASSIGN_OR_RETURN(Range left, FindById(left_id));
  serverpb::RangeCommand fence;
  fence.mutable_fence();
  RETURN_IF_ERROR(ProposeAndWait(left, std::move(fence)).status());
  // Whatever the left range's log held before the fence has applied here,
  // a merge too; none can apply after it. The left range stays prepared
  // (where the right one's replicas are) until the right one is thawed.
  if (left.sm->descriptor().ContainsKey(right_start)) return true;
  if (Result<Range> right = FindById(right_id); right.ok()) {
    // A freeze committed but not applied here yet counts.
    RETURN_IF_ERROR(right->replica->ReadBarrier());
    const keys::RangeDescriptor r = right->sm->descriptor();
    if (r.frozen_into == left_id) {
      serverpb::RangeCommand thaw;
      thaw.mutable_thaw()->set_left_range_id(left_id);
      thaw.mutable_thaw()->set_generation(r.generation);
      Result<RangeWriteResult> t = ProposeAndWait(*right, std::move(thaw));
      // Refused: thawed already (by another node settling it).
      if (!t.ok() && t.status().code() != StatusCode::kFailedPrecondition) return t.status();
      LOG_INFO("range {}: merge into range {} called off", right_id, left_id);
    }
  }
  serverpb::RangeCommand release;
  release.mutable_fence()->set_release(true);
  RETURN_IF_ERROR(ProposeAndWait(left, std::move(release)).status());
  return false;
}

void NativeKeyspace::SettleMerges() {
  struct Done {
    std::atomic<bool>* flag;
    ~Done() { flag->store(false); }
  } done{&settling_};
  const Duration now = host_->clock().Monotonic();
  std::map<keys::RangeId, std::pair<uint64_t, Duration>> still;
  for (const Range& r : All()) {
    const keys::RangeDescriptor d = r.sm->descriptor();
    if (d.frozen_into == 0 && d.merging_from == 0) continue;
    // Since when it is in this state (a new generation restarts the clock).
    auto it = merging_since_.find(d.range_id);
    const Duration since =
        it != merging_since_.end() && it->second.first == d.generation ? it->second.second : now;
    still[d.range_id] = {d.generation, since};
    // A merge normally settles in well under a second; one this old lost
    // its coordinator.
    if (!r.replica->is_leader() || now - since < kMergeAbandoned) continue;
    if (auto again = settle_again_at_.find(d.range_id);
        again != settle_again_at_.end() && now < again->second) {
      continue;
    }
    const keys::RangeId other = d.frozen_into != 0 ? d.frozen_into : d.merging_from;
    LOG_WARN("range {}: {} range {} for {} s; settling the merge", d.range_id,
             d.frozen_into != 0 ? "frozen to merge into" : "prepared to take in", other,
             std::chrono::duration_cast<std::chrono::seconds>(now - since).count());
    Result<bool> merged = d.frozen_into != 0 ? CallOffMerge(d.frozen_into, d.range_id, d.start_key)
                                             : CallOffMerge(d.range_id, d.merging_from, d.end_key);
    if (!merged.ok()) {
      LOG_WARN("range {}: its merge is not settled: {}", d.range_id, merged.status().ToString());
      settle_again_at_[d.range_id] = now + std::chrono::seconds(10);
    }
  }
  std::erase_if(settle_again_at_, [&](const auto& kv) { return !still.contains(kv.first); });
  merging_since_ = std::move(still);
}

Result<kvpb::MergeResponse> NativeKeyspace::ForwardMerge(const std::string& key) {
  if (forwarder_ == nullptr) return NoRange(key);
  kvpb::MergeRequest req;
  req.set_key(key);
  std::string part_end;
  return ForwardSpan<kvpb::MergeResponse>(
      key, /*idempotent=*/false, &part_end,
      [&](uint64_t node, const std::string&) { return forwarder_->Merge(node, req); }, "");
}

void NativeKeyspace::CheckMerge(const Range& r) {
  const keys::RangeDescriptor d = r.sm->descriptor();
  const Duration now = host_->clock().Monotonic();
  // Two halves of a size split are never small enough to merge back.
  uint64_t limit = options_.merge_bytes;
  if (options_.split_bytes > 0) limit = std::min(limit, options_.split_bytes / 4);
  if (limit == 0 || d.range_id == kMetaRangeId || !r.replica->is_leader() || d.frozen_into != 0 ||
      d.merging_from != 0 || d.end_key.empty() || d.end_key >= kSystemKeyStart ||
      r.load->windows() < 2) {
    return;
  }
  if (auto rest = merge_rest_until_.find(d.range_id); rest != merge_rest_until_.end()) {
    if (now < rest->second) return;
    merge_rest_until_.erase(rest);
  }
  // Only with a neighbour on the same nodes (a merge that moves replicas
  // is asked for by hand).
  Result<Range> right = Find(d.end_key);
  if (!right.ok()) return;
  const keys::RangeDescriptor rd = right->sm->descriptor();
  if (rd.start_key != d.end_key || rd.sticky || rd.frozen_into != 0 || rd.merging_from != 0 ||
      NodesOf(rd) != NodesOf(d) || right->load->windows() < 2) {
    return;
  }
  const uint64_t bytes = r.sm->DataBytes() + right->sm->DataBytes();
  const double rate = r.load->requests_per_second() + right->load->requests_per_second();
  if (bytes >= limit) return;
  if (options_.split_qps > 0 && rate * 4 >= static_cast<double>(options_.split_qps)) return;
  LOG_INFO("range {}: merging range {} in ({} bytes and {:.0f} requests/s here together)",
           d.range_id, rd.range_id, bytes, rate);
  if (Result<keys::RangeDescriptor> m = Merge(d.start_key); !m.ok()) {
    LOG_INFO("range {}: merge not done: {}", d.range_id, m.status().ToString());
    merge_rest_until_[d.range_id] = now + kRestWindows * options_.load_window;
  }
}

// ---- replica moves ----

Status NativeKeyspace::ChangeReplicas(const Range& r, raft::ConfChangeType type,
                                      raft::NodeId replica, uint64_t node) {
  raft::ConfChange cc;
  cc.changes.push_back(raft::ConfChangeSingle{type, replica});
  serverpb::ReplicaChange change;
  if (node != 0) {
    serverpb::ReplicaChange::Placement* p = change.add_added();
    p->set_replica_id(replica);
    p->set_node_id(node);
  }
  ASSIGN_OR_RETURN(std::any applied,
                   r.replica->ProposeConfChange(std::move(cc), change.SerializeAsString()));
  auto* w = std::any_cast<RangeWriteResult>(&applied);
  if (w == nullptr) return Status::Internal("range: no result");
  return w->status;
}

Status NativeKeyspace::ChangeReplicasRetrying(const Range& r, raft::ConfChangeType type,
                                              raft::NodeId replica, uint64_t node) {
  // Raft takes one configuration change at a time, and a new leader none
  // until it applied what it inherited: those refusals pass.
  constexpr int kAttempts = 40;
  Status s;
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    s = ChangeReplicas(r, type, replica, node);
    if (s.ok() || s.reason() != ErrorReason::kConfChangeInProgress) return s;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return s;
}

Result<keys::RangeDescriptor> NativeKeyspace::MoveReplica(keys::RangeId id, uint64_t from,
                                                          uint64_t to) {
  if (from == to || from == 0 || to == 0) {
    return Status::InvalidArgument("conclave: a move needs two different nodes");
  }
  if (options_.node_known && !options_.node_known(to)) {
    return Status::NotFound(fmt::format("conclave: node {:x} is not a member", to));
  }
  return Relocate(id, from, to);
}

Result<kvpb::TransferLeaderResponse> NativeKeyspace::TransferLeader(keys::RangeId id, uint64_t to,
                                                                    bool may_forward) {
  if (to == 0) return Status::InvalidArgument("conclave: no node to lead the range");
  if (options_.node_known && !options_.node_known(to)) {
    return Status::NotFound(fmt::format("conclave: node {:x} is not a member", to));
  }
  kvpb::TransferLeaderRequest req;
  req.set_range_id(id);
  req.set_to_node(to);
  auto forward = [&]() -> Result<kvpb::TransferLeaderResponse> {
    if (!may_forward || forwarder_ == nullptr) {
      return Status::FailedPrecondition(fmt::format(
          "conclave: node {:x} neither leads range {} nor is node {:x}; ask one of those", node_id_,
          id, to));
    }
    return forwarder_->TransferLeader(to, req);
  };
  Result<Range> found = FindById(id);
  if (!found.ok()) {
    if (found.status().reason() == ErrorReason::kGroupNotFound && to != node_id_ && may_forward) {
      return forward();
    }
    return found.status();
  }
  Range r = *found;
  const keys::RangeDescriptor d = r.sm->descriptor();
  if (!r.replica->is_leader()) {
    // The leader hands over: it knows of a move or merge under way. Asked
    // of the leader's node when it is known, else of `to`.
    uint64_t leader_node = 0;
    for (const keys::ReplicaDescriptor& p : d.replicas) {
      if (p.replica_id == r.replica->leader()) leader_node = p.node_id;
    }
    if (may_forward && forwarder_ != nullptr && leader_node != 0 && leader_node != node_id_) {
      return forwarder_->TransferLeader(leader_node, req);
    }
    if (to != node_id_) return forward();
  }
  const keys::ReplicaDescriptor* target = d.ReplicaOn(to);
  if (target == nullptr) {
    return Status::NotFound(
        fmt::format("conclave: node {:x} holds no replica of range {}", to, id));
  }
  if (target->type != keys::ReplicaType::kVoter) {
    return Status::FailedPrecondition(
        fmt::format("conclave: node {:x}'s replica of range {} is a learner", to, id));
  }
  if (d.frozen_into != 0) return Frozen(d);
  if (d.merging_from != 0) {
    return Status::Unavailable(
        fmt::format("conclave: range {} is taking in range {}; try again", id, d.merging_from));
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (moving_.count(id) != 0) {
      return Status::FailedPrecondition(
          fmt::format("conclave: range {} is being moved; try again", id));
    }
  }
  RETURN_IF_ERROR(to == node_id_ ? r.replica->TakeLeadership()
                                 : r.replica->TransferLeadership(target->replica_id));
  LOG_INFO("range {}: leadership moved to node {:x} as asked", id, to);
  kvpb::TransferLeaderResponse resp;
  Describe(r.sm->descriptor(), &r, resp.mutable_range());
  return resp;
}

Result<keys::RangeDescriptor> NativeKeyspace::Relocate(keys::RangeId id, uint64_t from,
                                                       uint64_t to) {
  ASSIGN_OR_RETURN(Range r, FindById(id));
  // Leader balancing leaves the range alone meanwhile.
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!moving_.insert(id).second) {
      return Status::FailedPrecondition(
          fmt::format("conclave: range {} is being moved already; try again", id));
    }
  }
  struct Done {
    NativeKeyspace* self;
    keys::RangeId id;
    ~Done() {
      std::lock_guard<std::mutex> lock(self->mu_);
      self->moving_.erase(id);
    }
  } done{this, id};
  auto check_self = [&](const keys::RangeDescriptor& d) -> Status {
    const keys::ReplicaDescriptor* self = d.ReplicaOn(node_id_);
    if (self == nullptr || self->type != keys::ReplicaType::kVoter) {
      return Status::FailedPrecondition(
          fmt::format("conclave: this node holds no voter of range {}; ask a node that does", id));
    }
    return Status::Ok();
  };
  RETURN_IF_ERROR(check_self(r.sm->descriptor()));
  // A range in a merge stays where the merge found it.
  auto merging = [&]() -> Status {
    const keys::RangeDescriptor now = r.sm->descriptor();
    if (now.frozen_into != 0) return Frozen(now);
    if (now.merging_from != 0) {
      return Status::Unavailable(
          fmt::format("conclave: range {} is taking in range {}; try again", id, now.merging_from));
    }
    return Status::Ok();
  };
  RETURN_IF_ERROR(merging());
  // The leader sees the learner's progress and proposes the changes; once
  // it leads and has applied what was committed, its descriptor is the
  // range's (another coordinator's changes included).
  RETURN_IF_ERROR(r.replica->TakeLeadership());
  RETURN_IF_ERROR(r.replica->ReadBarrier());
  keys::RangeDescriptor d = r.sm->descriptor();
  RETURN_IF_ERROR(check_self(d));
  RETURN_IF_ERROR(merging());
  // A learner left by a move that failed part-way goes first.
  for (const keys::ReplicaDescriptor& rd : d.replicas) {
    if (rd.type != keys::ReplicaType::kLearner) continue;
    LOG_INFO("range {}: removing learner {} on node {:x}, left by an earlier move", id,
             rd.replica_id, rd.node_id);
    RETURN_IF_ERROR(ChangeReplicasRetrying(r, raft::ConfChangeType::kRemoveNode, rd.replica_id, 0));
  }
  d = r.sm->descriptor();
  const keys::ReplicaDescriptor* old = d.ReplicaOn(from);
  if (old == nullptr) {
    return Status::FailedPrecondition(
        fmt::format("conclave: range {} has no replica on node {:x}", id, from));
  }
  const raft::NodeId old_id = old->replica_id;
  const raft::NodeId self_id = d.ReplicaOn(node_id_)->replica_id;
  if (to == 0) {
    if (old_id == self_id) {
      return Status::FailedPrecondition(
          fmt::format("conclave: range {}: a node does not remove its own replica", id));
    }
    const auto voters = std::count_if(d.replicas.begin(), d.replicas.end(), [](const auto& rd) {
      return rd.type == keys::ReplicaType::kVoter;
    });
    if (old->type == keys::ReplicaType::kVoter && voters - 1 < options_.replicas_per_range) {
      return Status::FailedPrecondition(fmt::format(
          "conclave: range {} would keep fewer than {} voters", id, options_.replicas_per_range));
    }
    LOG_INFO("range {}: removing replica {} on node {:x}", id, old_id, from);
    RETURN_IF_ERROR(ChangeReplicasRetrying(r, raft::ConfChangeType::kRemoveNode, old_id, 0));
    serverpb::RangeEvent e;
    e.set_kind("move");
    e.set_range_id(id);
    e.set_from_node(from);
    RecordEvent(std::move(e));
    return r.sm->descriptor();
  }
  if (d.HasNode(to)) {
    return Status::AlreadyExists(
        fmt::format("conclave: range {} already has a replica on node {:x}", id, to));
  }
  const raft::NodeId new_id = d.next_replica_id;
  LOG_INFO("range {}: moving replica {} from node {:x} to node {:x} as replica {}", id, old_id,
           from, to, new_id);
  // Whatever fails before the old replica goes, the new one goes again, so
  // the range is left with the replicas it had.
  auto undo = [&](Status why) {
    Status u = r.replica->ReadBarrier();
    const keys::RangeDescriptor now = r.sm->descriptor();
    const keys::ReplicaDescriptor* added = now.ReplicaOn(to);
    if (u.ok() && added != nullptr && added->replica_id == new_id) {
      u = ChangeReplicasRetrying(r, raft::ConfChangeType::kRemoveNode, new_id, 0);
    }
    LOG_WARN("range {}: moving a replica to node {:x} failed ({}); {}", id, to, why.ToString(),
             u.ok() ? "the range keeps its replicas" : "taking the new one out: " + u.ToString());
    return why;
  };
  // Another coordinator's change may have taken the id first: each step
  // checks that the replica on `to` is the one this move made.
  auto placed = [&](keys::ReplicaType type) {
    const keys::RangeDescriptor now = r.sm->descriptor();
    const keys::ReplicaDescriptor* p = now.ReplicaOn(to);
    return p != nullptr && p->replica_id == new_id && p->type == type;
  };
  auto raced = [&] {
    return Status::FailedPrecondition(
        fmt::format("conclave: range {} changed during the move (another move?); try again", id));
  };
  if (Status s = ChangeReplicasRetrying(r, raft::ConfChangeType::kAddLearner, new_id, to);
      !s.ok()) {
    return undo(s);
  }
  if (!placed(keys::ReplicaType::kLearner)) return undo(raced());
  // The learner has everything up to its own addition (a snapshot, then
  // the log) before it votes.
  Duration catch_up = options_.catch_up_timeout;
  if (options_.snapshot_bytes_per_second > 0) {
    // At most a day: a pace of a few bytes a second is a mistake, not a plan.
    const double seconds = std::min(static_cast<double>(r.sm->DataBytes()) *
                                        static_cast<double>(kPlacementMovesInFlight) /
                                        static_cast<double>(options_.snapshot_bytes_per_second),
                                    86400.0);
    catch_up += std::chrono::duration_cast<Duration>(std::chrono::duration<double>(seconds));
  }
  if (Status s = r.replica->AwaitPeerMatch(new_id, r.replica->applied_index(), catch_up); !s.ok()) {
    return undo(s);
  }
  if (Status s = ChangeReplicasRetrying(r, raft::ConfChangeType::kAddVoter, new_id, to); !s.ok()) {
    return undo(s);
  }
  if (!placed(keys::ReplicaType::kVoter)) return undo(raced());
  if (old_id == self_id || r.replica->leader() == old_id) {
    // The new replica leads next; it proposes the removal this node asks
    // for once it has applied what it inherited (the read round waits).
    RETURN_IF_ERROR(r.replica->TransferLeadership(new_id));
    RETURN_IF_ERROR(r.replica->ReadBarrier());
  }
  Status removed = ChangeReplicasRetrying(r, raft::ConfChangeType::kRemoveNode, old_id, 0);
  // When the replica removed is this node's, it may be taken off the host
  // before its waiter hears that the removal applied.
  if (!removed.ok() && !(old_id == self_id && r.sm->removed())) {
    return Status(removed.code(),
                  fmt::format("conclave: range {}: the new replica on node {:x} votes, but "
                              "removing the one on node {:x} failed: {}",
                              id, to, from, removed.message()));
  }
  ++replicas_moved_;
  serverpb::RangeEvent e;
  e.set_kind("move");
  e.set_range_id(id);
  e.set_from_node(from);
  e.set_to_node(to);
  RecordEvent(std::move(e));
  LOG_INFO("range {}: moved replica from node {:x} to node {:x}", id, from, to);
  return r.sm->descriptor();
}

// ---- the range map ----

void NativeKeyspace::ReportSoon() {
  {
    std::lock_guard<std::mutex> lock(split_mu_);
    report_now_ = true;
  }
  split_cv_.notify_all();
}

void NativeKeyspace::CollectStale() {
  Result<std::vector<keys::RangeDescriptor>> map = RangeMap();
  if (!map.ok()) return;
  std::map<keys::RangeId, keys::RangeDescriptor> recorded;
  for (const keys::RangeDescriptor& d : *map)
    recorded[d.range_id] = d;
  auto discard = [this](const Range& r) {
    host_->RunOnApplyThread([this, r] {
      if (r.sm->removed()) return;
      if (Status s = Discard(r.sm, r.sm->descriptor()); !s.ok()) {
        LOG_ERROR("range {}: deleting a stale copy: {}", r.sm->descriptor().range_id, s.ToString());
      }
    });
  };
  for (const Range& r : All()) {
    const keys::RangeDescriptor local = r.sm->descriptor();
    auto it = recorded.find(local.range_id);
    if (it == recorded.end()) {
      // Merged away while this node could not hear of it: the range whose
      // record holds its keys now is a newer view of them.
      auto covering = std::find_if(map->begin(), map->end(), [&](const keys::RangeDescriptor& d) {
        return d.ContainsKey(local.start_key);
      });
      if (covering != map->end() && covering->generation > local.generation &&
          Covers(*covering, local)) {
        LOG_INFO(
            "range {}: the range map has its keys in range {} at generation {} (here: {}); "
            "deleting this node's copy",
            local.range_id, covering->range_id, covering->generation, local.generation);
        discard(r);
      }
      continue;
    }
    if (it->second.generation <= local.generation) continue;
    // Still placed here, as this very replica (not as a newer one that
    // waits for this stale copy to go).
    const keys::ReplicaDescriptor* placed = it->second.ReplicaOn(node_id_);
    if (placed != nullptr && placed->replica_id == r.replica->replica_id()) continue;
    // The range went on without this node: its removal committed while
    // this node could not hear of it. The copy goes, on the apply thread
    // (never while the replica applies).
    LOG_INFO(
        "range {}: the range map has it at generation {} without this node (here: {}); "
        "deleting this node's copy",
        local.range_id, it->second.generation, local.generation);
    discard(r);
  }
}

void NativeKeyspace::ReportLoop() {
  Duration next_status{0};
  Duration next_collect{0};
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(split_mu_);
      split_cv_.wait_for(lock, std::chrono::seconds(1), [&] { return stopping_ || report_now_; });
      if (stopping_) return;
      report_now_ = false;
    }
    ReleaseParked();
    if (!settling_.exchange(true)) settle_pool_.Post([this] { SettleMerges(); });
    const Duration now = host_->clock().Monotonic();
    if (now >= next_status) {
      next_status = now + options_.status_interval;
      if (Status s = ReportStatus(); !s.ok()) {
        // No member holds a meta range (a cluster without native ranges):
        // ask less often.
        if (s.reason() == ErrorReason::kGroupNotFound) {
          next_status = now + 10 * options_.status_interval;
        }
        LOG_DEBUG("node {:x}: status not reported: {}", node_id_, s.ToString());
      }
    }
    if (now >= next_collect) {
      // Replicas removed while this node was down or cut off.
      next_collect = now + kCollectInterval;
      CollectStale();
    }
    for (const Range& r : All()) {
      if (!r.replica->is_leader()) continue;
      const keys::RangeDescriptor d = r.sm->descriptor();
      // A range at generation 1 is one the cluster started with, whose
      // record the meta range started with too.
      if (d.range_id == kMetaRangeId || d.generation <= 1) continue;
      auto it = reported_.find(d.range_id);
      if (it != reported_.end() && it->second == d.generation) continue;
      {
        std::lock_guard<std::mutex> lock(split_mu_);
        if (stopping_) return;
      }
      if (Status s = Report(r); !s.ok()) {
        LOG_DEBUG("range {}: range map not updated yet: {}", d.range_id, s.ToString());
        continue;
      }
      reported_[d.range_id] = d.generation;
    }
  }
}

Status NativeKeyspace::ReportStatus() {
  serverpb::NodeStatus st;
  st.set_node_id(node_id_);
  st.set_sequence(++status_sequence_);
  double rate = 0;
  for (const Range& r : All()) {
    const bool leader = r.replica->is_leader();
    const uint64_t bytes = r.sm->DataBytes();
    st.set_ranges(st.ranges() + 1);
    if (leader) st.set_leaders(st.leaders() + 1);
    st.set_bytes(st.bytes() + bytes);
    rate += r.load->requests_per_second();
    if (leader)
      st.set_led_requests_per_second(st.led_requests_per_second() + r.load->requests_per_second());
    if (leader && bytes >= kSizedRangeBytes) {
      serverpb::RangeSize* size = st.add_led_ranges();
      size->set_range_id(r.sm->descriptor().range_id);
      size->set_bytes(bytes);
    }
  }
  st.set_requests_per_second(rate);
  for (const auto& [key, value] : options_.labels) {
    kvpb::Label* l = st.add_labels();
    l->set_key(key);
    l->set_value(value);
  }
  kvpb::PutRequest put;
  put.set_key(NodeStatusKey(node_id_));
  put.set_value(st.SerializeAsString());
  return MetaPut(std::move(put));
}

// ---- what the web page shows ----

// The events kept in the meta range.
constexpr size_t kEventsKept = 500;

void NativeKeyspace::Describe(const keys::RangeDescriptor& d, const Range* here,
                              kvpb::RangeInfo* info) {
  info->set_range_id(d.range_id);
  info->set_start(d.start_key);
  info->set_end(d.end_key);
  info->set_generation(d.generation);
  info->set_frozen_into(d.frozen_into);
  info->set_sticky(d.sticky);
  for (const keys::ReplicaDescriptor& rd : d.replicas) {
    kvpb::Replica* out = info->add_replicas();
    out->set_node_id(rd.node_id);
    out->set_replica_id(rd.replica_id);
    out->set_learner(rd.type == keys::ReplicaType::kLearner);
  }
  if (here == nullptr) return;
  const ReplicaStats st = here->replica->stats();
  info->set_leader_node(st.leader == 0 ? 0 : here->replica->NodeOf(st.leader));
  info->set_applied_index(st.applied_index);
  info->set_quiesced(st.quiesced);
  info->set_bytes(here->sm->DataBytes());
  info->set_requests_per_second(here->load->requests_per_second());
}

void NativeKeyspace::Describe(const NodeReport& n, kvpb::NodeInfo* info) {
  info->set_node_id(n.node_id);
  switch (n.state) {
    case NodeReport::State::kUp:
      info->set_state("up");
      break;
    case NodeReport::State::kLate:
      info->set_state("late");
      break;
    case NodeReport::State::kDown:
      info->set_state("down");
      break;
    case NodeReport::State::kUnreported:
      info->set_state("unreported");
      break;
  }
  info->set_draining(n.draining);
  if (!n.status.has_value()) return;
  info->set_ranges(n.status->ranges());
  info->set_leaders(n.status->leaders());
  info->set_bytes(n.status->bytes());
  info->set_requests_per_second(n.status->requests_per_second());
  info->set_report_age_seconds(std::chrono::duration<double>(n.age).count());
  *info->mutable_labels() = n.status->labels();
}

void NativeKeyspace::RecordEvent(serverpb::RangeEvent e) {
  const uint64_t now = Now(host_->clock());
  e.set_node_id(node_id_);
  e.set_wall_nanos(now);
  kvpb::PutRequest put;
  put.set_key(fmt::format("{}{:016x}{:016x}", kEventPrefix, now, node_id_));
  put.set_value(e.SerializeAsString());
  // Off the caller's thread: the change is made already, the record is for
  // people.
  settle_pool_.Post([this, put = std::move(put), what = e.kind(), id = e.range_id()]() mutable {
    if (Status s = MetaPut(std::move(put)); !s.ok()) {
      LOG_DEBUG("range {}: {} not recorded for the timeline: {}", id, what, s.ToString());
    }
  });
}

void NativeKeyspace::TrimEvents() {
  const Duration now = host_->clock().Monotonic();
  if (now < trim_events_at_) return;
  trim_events_at_ = now + std::chrono::seconds(30);
  bool more = false;
  Result<std::vector<RangeValue>> events =
      MetaScan(std::string(kEventPrefix), PrefixEnd(kEventPrefix), 100'000, &more);
  if (!events.ok() || events->size() <= kEventsKept) return;
  for (size_t i = 0; i + kEventsKept < events->size(); ++i) {
    kvpb::DeleteRequest del;
    del.set_key((*events)[i].key);
    if (!MetaDelete(std::move(del)).ok()) return;
  }
}

Result<std::vector<serverpb::RangeEvent>> NativeKeyspace::RecentEvents(size_t limit) {
  bool more = false;
  ASSIGN_OR_RETURN(std::vector<RangeValue> kvs,
                   MetaScan(std::string(kEventPrefix), PrefixEnd(kEventPrefix), 100'000, &more));
  std::vector<serverpb::RangeEvent> out;
  for (size_t i = kvs.size() > limit ? kvs.size() - limit : 0; i < kvs.size(); ++i) {
    serverpb::RangeEvent e;
    if (e.ParseFromString(kvs[i].value)) out.push_back(std::move(e));
  }
  return out;
}

Result<serverpb::ClusterView> NativeKeyspace::View(size_t max_ranges) {
  serverpb::ClusterView view;
  view.set_node_id(node_id_);
  view.set_wall_nanos(Now(host_->clock()));
  ASSIGN_OR_RETURN(std::vector<NodeReport> nodes, Nodes());
  std::set<uint64_t> up;  // asked for their ranges below
  for (const NodeReport& n : nodes) {
    Describe(n, view.add_nodes());
    if (n.state == NodeReport::State::kUp) up.insert(n.node_id);
  }
  ASSIGN_OR_RETURN(std::vector<keys::RangeDescriptor> map, RangeMap());
  view.set_range_count(map.size());
  if (map.size() > max_ranges) map.resize(max_ranges);
  // Each range as its leader's node sees it: this node's view, then each
  // other member's (asked once) for the ranges this node does not lead.
  std::map<keys::RangeId, kvpb::RangeInfo> best;
  auto offer = [&](kvpb::RangeInfo info, uint64_t seen_by) {
    auto it = best.find(info.range_id());
    const bool from_leader = info.leader_node() == seen_by;
    if (it == best.end() || from_leader) best[info.range_id()] = std::move(info);
  };
  for (const Range& r : All()) {
    kvpb::RangeInfo info;
    Describe(r.sm->descriptor(), &r, &info);
    offer(std::move(info), node_id_);
  }
  std::set<uint64_t> unled;  // nodes of ranges not led here
  for (const keys::RangeDescriptor& d : map) {
    auto it = best.find(d.range_id);
    if (it != best.end() && it->second.leader_node() == node_id_) continue;
    for (const keys::ReplicaDescriptor& rd : d.replicas) {
      if (rd.node_id != node_id_ && up.contains(rd.node_id)) unled.insert(rd.node_id);
    }
  }
  if (forwarder_ != nullptr) {
    for (uint64_t node : unled) {
      Result<kvpb::RangesResponse> theirs = forwarder_->Ranges(node);
      if (!theirs.ok()) continue;  // down: its ranges show what the map says
      for (kvpb::RangeInfo& info : *theirs->mutable_ranges())
        offer(std::move(info), node);
    }
  }
  for (const keys::RangeDescriptor& d : map) {
    auto it = best.find(d.range_id);
    if (it != best.end() && it->second.generation() >= d.generation) {
      *view.add_ranges() = it->second;
    } else {
      Describe(d, nullptr, view.add_ranges());
    }
  }
  ASSIGN_OR_RETURN(std::vector<serverpb::RangeEvent> events, RecentEvents(200));
  for (serverpb::RangeEvent& e : events)
    *view.add_events() = std::move(e);
  return view;
}

// ---- the placement driver ----

void NativeKeyspace::PlaceLoop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(split_mu_);
      if (split_cv_.wait_for(lock, options_.placement_interval, [&] { return stopping_; })) return;
    }
    BalanceLeaders();
    // The rest only on the meta range's leader; a new one starts its
    // clocks afresh.
    Result<Range> meta = Find(kNodeStatusPrefix);
    if (!meta.ok() || !meta->replica->is_leader()) {
      seen_.clear();
      continue;
    }
    PlaceOnce();
    TrimEvents();
  }
}

std::vector<uint64_t> NativeKeyspace::Members() const {
  return options_.members ? options_.members() : options_.initial_members;
}

std::set<uint64_t> NativeKeyspace::DrainingIn(const std::vector<RangeValue>& meta_keys) {
  std::set<uint64_t> out;
  for (const RangeValue& kv : meta_keys) {
    if (!kv.key.starts_with(kDrainPrefix)) continue;
    const std::string_view hex = std::string_view(kv.key).substr(kDrainPrefix.size());
    uint64_t id = 0;
    if (std::from_chars(hex.data(), hex.data() + hex.size(), id, 16).ec == std::errc()) {
      out.insert(id);
    }
  }
  return out;
}

Status NativeKeyspace::Drain(uint64_t node, bool cancel) {
  if (cancel) {
    // Also for a node removed since: its record goes.
    LOG_INFO("placement: node {:x} is no longer drained", node);
    kvpb::DeleteRequest del;
    del.set_key(DrainKey(node));
    return MetaDelete(std::move(del));
  }
  const std::vector<uint64_t> members = Members();
  if (std::find(members.begin(), members.end(), node) == members.end()) {
    return Status::NotFound(fmt::format("conclave: node {:x} is not a member", node));
  }
  // A drain that could never finish is refused: the others must be able
  // to hold every range's replicas.
  bool more = false;
  ASSIGN_OR_RETURN(std::vector<RangeValue> records,
                   MetaScan(std::string(kDrainPrefix), PrefixEnd(kDrainPrefix), 100'000, &more));
  std::set<uint64_t> draining = DrainingIn(records);
  draining.insert(node);
  const auto staying = std::count_if(members.begin(), members.end(),
                                     [&](uint64_t m) { return !draining.contains(m); });
  if (staying < options_.replicas_per_range) {
    return Status::FailedPrecondition(fmt::format(
        "conclave: draining node {:x} would leave {} members not draining, fewer than the {} "
        "replicas each range needs; add a member first",
        node, staying, options_.replicas_per_range));
  }
  LOG_INFO("placement: node {:x} is to be drained", node);
  kvpb::PutRequest put;
  put.set_key(DrainKey(node));
  put.set_value("draining");
  return MetaPut(std::move(put));
}

Result<std::vector<NativeKeyspace::NodeReport>> NativeKeyspace::Nodes() {
  bool more = false;
  // The drain records and the statuses, in one read.
  ASSIGN_OR_RETURN(
      std::vector<RangeValue> meta_keys,
      MetaScan(std::string(kDrainPrefix), PrefixEnd(kNodeStatusPrefix), 100'000, &more));
  const std::vector<uint64_t> members = Members();
  const std::set<uint64_t> draining = DrainingIn(meta_keys);
  std::map<uint64_t, NodeReport> out;
  for (uint64_t m : members) {
    out[m].node_id = m;
    out[m].draining = draining.contains(m);
  }
  const uint64_t now = Now(host_->clock());
  for (const RangeValue& kv : meta_keys) {
    if (!kv.key.starts_with(kNodeStatusPrefix)) continue;
    serverpb::NodeStatus st;
    if (!st.ParseFromString(kv.value)) continue;
    auto it = out.find(st.node_id());
    if (it == out.end()) continue;
    NodeReport& n = it->second;
    n.age =
        std::chrono::nanoseconds(now > kv.timestamp.wall_nanos ? now - kv.timestamp.wall_nanos : 0);
    n.status = std::move(st);
    if (n.age < 3 * options_.status_interval) {
      n.state = NodeReport::State::kUp;
    } else if (options_.replica_down_time.count() == 0 || n.age < options_.replica_down_time) {
      n.state = NodeReport::State::kLate;
    } else {
      n.state = NodeReport::State::kDown;
    }
  }
  std::vector<NodeReport> list;
  for (auto& [id, n] : out)
    list.push_back(std::move(n));
  return list;
}

// Leaderships one member hands over in one look, at most: enough to even
// out thousands of ranges within minutes, few enough that members acting
// on each other's counts at once overshoot by little (the rest after a
// look lets the counts catch up).
constexpr size_t kLeaderHandoversPerLook = 32;

bool NativeKeyspace::Moving(keys::RangeId id) const {
  std::lock_guard<std::mutex> lock(mu_);
  return moving_.contains(id);
}

void NativeKeyspace::BalanceLeaders() {
  const Duration now = host_->clock().Monotonic();
  if (now < leaders_rest_until_) return;
  std::vector<Range> led;
  double my_load = 0;
  // When this node last gained a leadership (as seen here): until its
  // load and the others' reports settle, it moves nothing by load.
  const Duration settle = options_.load_window + 2 * options_.status_interval;
  // A leadership counts as gained when a replica held here at the last
  // look starts leading; a range new here (a split's right-hand side, a
  // replica moved in) does not: its load here starts afresh anyway, and
  // splits would otherwise keep a busy member from ever balancing by load.
  std::map<keys::RangeId, Duration> led_since;
  std::set<keys::RangeId> held;
  Duration gained{0};
  for (const Range& r : All()) {
    const keys::RangeId id = r.sm->descriptor().range_id;
    held.insert(id);
    if (!r.replica->is_leader()) continue;
    led.push_back(r);
    my_load += r.load->requests_per_second();
    auto it = led_since_.find(id);
    if (it != led_since_.end()) {
      led_since[id] = it->second;
    } else {
      led_since[id] = held_.contains(id) ? now : Duration{0};
    }
    gained = std::max(gained, led_since[id]);
  }
  led_since_ = std::move(led_since);
  held_ = std::move(held);
  if (led.empty()) return;
  uint64_t mine = led.size();
  Result<std::vector<NodeReport>> nodes = Nodes();
  if (!nodes.ok()) return;
  // The counts and loads of the other members that are up (reported
  // lately: a down member's replicas may still look active to a quiesced
  // leader) and not draining. A draining member hands over every
  // leadership it has.
  std::map<uint64_t, uint64_t> leaders;
  std::map<uint64_t, double> loads;
  bool shedding = false;
  for (const NodeReport& n : *nodes) {
    if (n.node_id == node_id_) {
      shedding = n.draining;
    } else if (n.state == NodeReport::State::kUp && !n.draining) {
      leaders[n.node_id] = n.status->leaders();
      loads[n.node_id] = n.status->led_requests_per_second();
    }
  }
  // The meta range counts, as in the statuses, but stays unless this
  // member is draining.
  if (!shedding) {
    std::erase_if(led, [](const Range& r) { return r.sm->descriptor().range_id == kMetaRangeId; });
  }
  // Per range, the members that could take its leadership: up, holding a
  // caught-up voter. A range being moved keeps its leader until the move
  // is done.
  std::vector<LedRange> candidates;
  for (const Range& r : led) {
    const keys::RangeDescriptor d = r.sm->descriptor();
    LedRange c{d.range_id, r.load->requests_per_second(), {}};
    const bool learner = std::any_of(d.replicas.begin(), d.replicas.end(), [](const auto& rd) {
      return rd.type == keys::ReplicaType::kLearner;
    });
    if (!learner && !Moving(d.range_id)) {
      const std::map<raft::NodeId, PeerProgress> progress = r.replica->PeersProgress();
      const uint64_t applied = r.replica->applied_index();
      for (const keys::ReplicaDescriptor& rd : d.replicas) {
        if (rd.type != keys::ReplicaType::kVoter || rd.node_id == node_id_ ||
            !leaders.contains(rd.node_id)) {
          continue;
        }
        auto p = progress.find(rd.replica_id);
        if (p != progress.end() && p->second.recent_active && p->second.match >= applied) {
          c.takers.emplace_back(rd.node_id, rd.replica_id);
        }
      }
    }
    candidates.push_back(std::move(c));
  }

  // First by load: one hand-over, once the imbalance has lasted a load
  // window, then a rest long enough for the taker to report what it serves
  // now. Loads in flux (a leadership gained here lately, a hand-over made)
  // move nothing: the taker of a range could otherwise pass it on before
  // the others' reports show that it serves it.
  std::optional<LeaderHandover> h;
  if (options_.leaders_by_load && !shedding && now >= leaders_load_rest_until_ &&
      now >= gained + settle) {
    h = ChooseLoadHandover(my_load, loads, candidates);
  }
  if (!h) {
    load_uneven_since_.reset();
  } else if (!load_uneven_since_) {
    load_uneven_since_ = now;
  } else if (now >= *load_uneven_since_ + options_.load_window) {
    const LedRange& c = candidates[h->index];
    LOG_INFO(
        "placement: range {}: node {:x} serves {:.0f} requests/s as leader, node {:x} {:.0f}; "
        "handing over the leadership of {:.0f}/s",
        c.range_id, node_id_, my_load, h->node, loads[h->node], c.load);
    led[h->index].replica->StartTransferLeadership(h->replica);
    ++leaders_moved_;
    ++leaders_moved_by_load_;
    leaders_load_rest_until_ = now + settle;
    leaders_rest_until_ = now + 2 * options_.status_interval;
    load_uneven_since_.reset();
    return;
  }

  // Then by count, the coldest ranges first, each where it keeps the load
  // even (CountHandoverKeepsLoad). A range gained lately stays: its load
  // here is not known yet (it may be a busy one handed over by load). One
  // handed over while busy keeps the loads in flux as a hand-over by load.
  std::vector<size_t> order(candidates.size());
  for (size_t i = 0; i < order.size(); ++i)
    order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return candidates[a].load < candidates[b].load; });
  size_t handed = 0;
  for (size_t i : order) {
    const LedRange& c = candidates[i];
    if (!shedding && now < led_since_[c.range_id] + settle) continue;
    const std::pair<uint64_t, raft::NodeId>* best = nullptr;
    for (const auto& taker : c.takers) {
      const uint64_t count = leaders[taker.first];
      if (!shedding &&
          (count + 2 > mine || !CountHandoverKeepsLoad(my_load, loads[taker.first], c.load))) {
        continue;
      }
      if (best == nullptr || count < leaders[best->first]) best = &taker;
    }
    if (best == nullptr) continue;
    LOG_DEBUG(
        "placement: range {}: node {:x} leads {} ranges, node {:x} {}; handing the "
        "leadership over",
        c.range_id, node_id_, mine, best->first, leaders[best->first]);
    led[i].replica->StartTransferLeadership(best->second);
    ++leaders_moved_;
    ++handed;
    // The counts and loads as they will be: the next hand-over goes where
    // it still evens them out.
    --mine;
    ++leaders[best->first];
    my_load -= c.load;
    loads[best->first] += c.load;
    if (c.load >= kLeaderLoadFloor) leaders_load_rest_until_ = now + settle;
    if (handed >= kLeaderHandoversPerLook) break;
  }
  if (handed == 0) return;
  LOG_INFO("placement: node {:x} handed {} leaderships to members leading fewer{}; it leads {}",
           node_id_, handed, shedding ? " (draining)" : "", mine);
  leaders_rest_until_ = now + 2 * options_.status_interval;
}

std::optional<LeaderHandover> ChooseLoadHandover(double mine,
                                                 const std::map<uint64_t, double>& loads,
                                                 const std::vector<LedRange>& led) {
  double total = mine;
  for (const auto& [node, load] : loads)
    total += load;
  const double mean = total / static_cast<double>(loads.size() + 1);
  if (mine <= mean * 1.2 || mine - mean < kLeaderLoadFloor) return std::nullopt;
  std::optional<LeaderHandover> best;
  // The busier of the two afterwards, then the taker's load afterwards.
  std::pair<double, double> best_after{mine, mine};
  for (size_t i = 0; i < led.size(); ++i) {
    const double load = led[i].load;
    if (load < kLeaderLoadFloor) continue;
    for (const auto& [node, replica] : led[i].takers) {
      auto theirs = loads.find(node);
      if (theirs == loads.end() || theirs->second + load > mine - load) continue;
      const std::pair<double, double> after{std::max(mine - load, theirs->second + load),
                                            theirs->second + load};
      if (after < best_after) {
        best_after = after;
        best = LeaderHandover{i, node, replica};
      }
    }
  }
  return best;
}

bool CountHandoverKeepsLoad(double mine, double theirs, double load) {
  return load < kLeaderLoadFloor || theirs + load <= mine - load;
}

double Apart(const NodeLabels& a, const NodeLabels& b) {
  int common = 0;  // leading labels with the same keys
  while (common < a.size() && common < b.size() && a[common].key() == b[common].key()) {
    ++common;
  }
  if (common == 0) return 0;
  int same = 0;
  while (same < common && a[same].value() == b[same].value())
    ++same;
  return static_cast<double>(common - same) / common;
}

double PlacementView::Spread(const keys::RangeDescriptor& d, uint64_t node,
                             uint64_t without) const {
  static const NodeLabels kNone;
  auto of = [&](uint64_t n) -> const NodeLabels& {
    auto it = labels.find(n);
    return it == labels.end() ? kNone : it->second;
  };
  double sum = 0;
  for (const keys::ReplicaDescriptor& r : d.replicas) {
    if (r.node_id != without && r.node_id != node) sum += Apart(of(node), of(r.node_id));
  }
  return sum;
}

// Spreads closer than this are the same (sums of a few fractions).
constexpr double kSpreadEpsilon = 1e-9;

uint64_t PlacementView::Target(const keys::RangeDescriptor& d, uint64_t from) const {
  auto avoided = avoid.find(d.range_id);
  auto pick = [&](bool skip_avoided) {
    uint64_t best = 0;
    double best_spread = 0;
    for (const auto& [m, c] : count) {
      if (d.HasNode(m) || (skip_avoided && avoided != avoid.end() && avoided->second.contains(m))) {
        continue;
      }
      const double spread = Spread(d, m, from);
      if (best == 0 || spread > best_spread + kSpreadEpsilon ||
          (spread > best_spread - kSpreadEpsilon && c < count.at(best))) {
        best = m;
        best_spread = spread;
      }
    }
    return best;
  };
  // An avoided member only when no other can take the replica (the move
  // may have failed for the range's sake, not the member's).
  const uint64_t best = pick(true);
  return best != 0 ? best : pick(false);
}

bool PlacementView::Spreads(const keys::RangeDescriptor& d, uint64_t from, uint64_t to,
                            bool better) const {
  const double gain = Spread(d, to, from) - Spread(d, from, from);
  return better ? gain > kSpreadEpsilon : gain > -kSpreadEpsilon;
}

std::optional<PlacementView::Move> PlacementView::EvenBytes(
    const std::vector<keys::RangeDescriptor>& map, const std::set<keys::RangeId>& busy) const {
  std::vector<std::pair<uint64_t, uint64_t>> by_bytes;  // (bytes, member), most first
  for (const auto& [m, b] : bytes) {
    if (count.contains(m)) by_bytes.emplace_back(b, m);
  }
  std::sort(by_bytes.rbegin(), by_bytes.rend());
  for (const auto& [hi_bytes, hi] : by_bytes) {
    const uint64_t tolerance = std::max<uint64_t>(kSizedRangeBytes, hi_bytes / 10);
    for (auto lo = by_bytes.rbegin(); lo != by_bytes.rend(); ++lo) {
      if (lo->first + tolerance >= hi_bytes) break;
      const uint64_t gap = hi_bytes - lo->first;
      std::optional<Move> best;
      uint64_t best_gain = 0;  // how much nearer the two get: min(size, gap - size)
      for (const keys::RangeDescriptor& d : map) {
        auto size = range_bytes.find(d.range_id);
        if (size == range_bytes.end() || size->second >= gap || busy.contains(d.range_id) ||
            !d.HasNode(hi) || d.HasNode(lo->second) || !Spreads(d, hi, lo->second, false)) {
          continue;
        }
        const uint64_t gain = std::min(size->second, gap - size->second);
        if (gain > best_gain) {
          best_gain = gain;
          best = Move{d.range_id, hi, lo->second};
        }
      }
      if (best.has_value()) return best;
    }
  }
  return std::nullopt;
}

std::optional<PlacementView::Move> PlacementView::EvenCounts(
    const std::vector<keys::RangeDescriptor>& map, const std::set<keys::RangeId>& busy) const {
  std::vector<std::pair<size_t, uint64_t>> by_count;  // (replicas, member), most first
  for (const auto& [m, c] : count)
    by_count.emplace_back(c, m);
  std::sort(by_count.rbegin(), by_count.rend());
  // The fullest member that can give a replica to one holding two fewer,
  // the emptiest such first.
  for (const auto& [most, from] : by_count) {
    for (auto lo = by_count.rbegin(); lo != by_count.rend() && lo->first + 1 < most; ++lo) {
      for (const keys::RangeDescriptor& d : map) {
        if (range_bytes.contains(d.range_id) || busy.contains(d.range_id) || !d.HasNode(from) ||
            d.HasNode(lo->second) || !Spreads(d, from, lo->second, false)) {
          continue;
        }
        return Move{d.range_id, from, lo->second};
      }
    }
  }
  return std::nullopt;
}

void NativeKeyspace::PlaceOnce() {
  Result<Range> meta = Find(kNodeStatusPrefix);
  if (!meta.ok() || !meta->replica->ReadBarrier().ok()) return;
  const Duration now = host_->clock().Monotonic();
  bool more = false;
  Result<std::vector<RangeValue>> meta_keys =
      meta->sm->Scan(std::string(kDrainPrefix), PrefixEnd(kNodeStatusPrefix), 100'000, &more);
  if (!meta_keys.ok()) return;
  const std::set<uint64_t> draining = DrainingIn(*meta_keys);
  PlacementView view;
  for (const RangeValue& kv : *meta_keys) {
    if (!kv.key.starts_with(kNodeStatusPrefix)) continue;
    serverpb::NodeStatus st;
    if (!st.ParseFromString(kv.value)) continue;
    auto [it, added] = seen_.try_emplace(st.node_id(), st.sequence(), now);
    if (!added && it->second.first != st.sequence()) it->second = {st.sequence(), now};
    view.labels[st.node_id()] = std::move(*st.mutable_labels());
    view.bytes[st.node_id()] = st.bytes();
    for (const serverpb::RangeSize& r : st.led_ranges())
      view.range_bytes[r.range_id()] = r.bytes();
  }
  std::set<uint64_t> live;
  for (uint64_t m : Members()) {
    // A member never heard from counts from the driver's first look.
    const Duration heard = seen_.try_emplace(m, 0, now).first->second.second;
    if (options_.replica_down_time.count() == 0 || now - heard < options_.replica_down_time) {
      live.insert(m);
    }
  }
  // A node removed from the cluster never comes back (a member added
  // again has a new id).
  auto removed = [&](uint64_t node) { return options_.removed && options_.removed(node); };
  Result<std::vector<keys::RangeDescriptor>> map = RangeMap();
  if (!map.ok() || live.empty()) return;
  // Where replicas may go: live members not being drained.
  std::set<uint64_t> targets;
  std::set_difference(live.begin(), live.end(), draining.begin(), draining.end(),
                      std::inserter(targets, targets.end()));
  // The moves under way, made or failed: a made move's new descriptor
  // reaches the map when the range's leader writes it (the meta range's:
  // this node's, its leader's), and until then (for a while: the leader
  // may be unable to write) the driver counts it as made; a range whose
  // move failed rests, and its target is avoided for it a while longer.
  const keys::RangeDescriptor meta_d = meta->sm->descriptor();
  std::map<keys::RangeId, PlacementMove> placing;
  {
    std::lock_guard<std::mutex> lock(place_mu_);
    auto reached = [&](const keys::RangeDescriptor& d) {
      auto it = placing_.find(d.range_id);
      if (it != placing_.end() && it->second.generation != 0 &&
          d.generation >= it->second.generation) {
        placing_.erase(it);
      }
    };
    for (const keys::RangeDescriptor& d : *map)
      reached(d);
    reached(meta_d);
    std::erase_if(placing_,
                  [&](const auto& kv) { return !kv.second.running && now > kv.second.until; });
    placing = placing_;
    for (auto it = avoid_.begin(); it != avoid_.end();) {
      std::erase_if(it->second, [&](const auto& kv) { return now > kv.second; });
      for (const auto& [node, until] : it->second)
        view.avoid[it->first].insert(node);
      it = it->second.empty() ? avoid_.erase(it) : std::next(it);
    }
  }
  std::map<uint64_t, size_t>& count = view.count;
  for (uint64_t m : targets)
    count[m] = 0;
  size_t running = 0;
  bool in_flight = false;  // a move runs, or one made is not in the map yet
  std::set<keys::RangeId> busy;
  for (const auto& [id, m] : placing) {
    busy.insert(id);
    running += m.running ? 1 : 0;
    in_flight = in_flight || m.running || m.generation != 0;
  }
  for (const keys::RangeDescriptor& d : *map) {
    for (const keys::ReplicaDescriptor& r : d.replicas) {
      if (auto it = count.find(r.node_id); it != count.end()) ++it->second;
    }
    auto p = placing.find(d.range_id);
    if (p == placing.end() || (!p->second.running && p->second.generation == 0)) continue;
    if (auto it = count.find(p->second.to); it != count.end() && !d.HasNode(p->second.to)) {
      ++it->second;
    }
    if (auto it = count.find(p->second.from); it != count.end() && d.HasNode(p->second.from)) {
      --it->second;
    }
  }
  // The meta range first, when it lost a replica with a member.
  if (!busy.contains(kMetaRangeId) &&
      std::any_of(meta_d.replicas.begin(), meta_d.replicas.end(),
                  [&](const auto& r) { return removed(r.node_id); }) &&
      PlaceMeta(*meta, removed, live, draining, view)) {
    return;
  }
  // Replicas on members down too long, on nodes removed from the cluster
  // (gone for good, whatever the down time), or on draining members are
  // made again elsewhere, a range at a time.
  bool repairing = false;
  for (const keys::RangeDescriptor& d : *map) {
    if (running >= kPlacementMovesInFlight) break;
    if (busy.contains(d.range_id)) continue;  // also a range listed twice (a split's old record)
    for (const keys::ReplicaDescriptor& r : d.replicas) {
      const bool down = !live.contains(r.node_id);
      if (!down && !draining.contains(r.node_id)) continue;
      const bool gone = removed(r.node_id);
      if (down && !gone && options_.replica_down_time.count() == 0) continue;
      const uint64_t to = view.Target(d, r.node_id);
      if (to == 0) continue;
      LOG_INFO("placement: range {}: node {:x} is {}; its replica goes to node {:x}", d.range_id,
               r.node_id,
               gone   ? "no longer a member"
               : down ? "down"
                      : "draining",
               to);
      StartMove(d, r.node_id, to, live, draining, down ? &rereplicated_ : &drained_);
      busy.insert(d.range_id);
      ++count[to];
      if (auto it = count.find(r.node_id); it != count.end()) --it->second;
      ++running;
      repairing = true;
      break;
    }
  }
  if (repairing || in_flight || Stopping()) return;
  if (!busy.contains(kMetaRangeId) && PlaceMeta(*meta, removed, live, draining, view)) return;
  // Spread each range's replicas as far apart as the labels allow, one
  // replica at a time, onto members holding no more than their share.
  size_t total = 0;
  for (const auto& [m, c] : count)
    total += c;
  for (const keys::RangeDescriptor& d : *map) {
    if (busy.contains(d.range_id)) continue;
    for (const keys::ReplicaDescriptor& r : d.replicas) {
      const uint64_t to = view.Target(d, r.node_id);
      if (!targets.contains(r.node_id) || to == 0 || count[to] * count.size() > total ||
          !view.Spreads(d, r.node_id, to, true)) {
        continue;
      }
      LOG_INFO(
          "placement: range {}: node {:x} is farther from its other replicas than node "
          "{:x}; moving one there",
          d.range_id, to, r.node_id);
      StartMove(d, r.node_id, to, live, draining, &spread_);
      return;
    }
  }
  // Even out the members' bytes with the ranges of a known size, then
  // their replica counts with the others, one replica at a time, keeping
  // each range's replicas as far apart. The members' bytes wait for the
  // statuses sent after the last move.
  Duration last_move_end{0};
  {
    std::lock_guard<std::mutex> lock(place_mu_);
    last_move_end = last_move_end_;
  }
  std::optional<PlacementView::Move> move;
  if (now >= last_move_end + 2 * options_.status_interval) move = view.EvenBytes(*map, busy);
  if (move.has_value()) {
    auto mib = [](uint64_t b) { return static_cast<double>(b) / (1 << 20); };
    LOG_INFO(
        "placement: range {} ({:.1f} MiB): node {:x} holds {:.1f} MiB, node {:x} {:.1f} MiB; "
        "moving a replica",
        move->range_id, mib(view.range_bytes[move->range_id]), move->from,
        mib(view.bytes[move->from]), move->to, mib(view.bytes[move->to]));
  } else if ((move = view.EvenCounts(*map, busy)).has_value()) {
    LOG_INFO("placement: range {}: node {:x} holds {} replicas, node {:x} {}; moving one",
             move->range_id, move->from, count[move->from], move->to, count[move->to]);
  }
  if (!move.has_value()) return;
  for (const keys::RangeDescriptor& d : *map) {
    if (d.range_id == move->range_id) {
      StartMove(d, move->from, move->to, live, draining, &rebalanced_);
      return;
    }
  }
}

// A target a range's move failed to reach is not chosen again for that
// range for this long (it may be out of disk, or down within its down time).
constexpr Duration kAvoidFailedTarget = std::chrono::seconds(60);

void NativeKeyspace::StartMove(const keys::RangeDescriptor& d, uint64_t from, uint64_t to,
                               std::set<uint64_t> live, std::set<uint64_t> draining,
                               std::atomic<uint64_t>* done) {
  {
    std::lock_guard<std::mutex> lock(place_mu_);
    auto [it, added] = placing_.try_emplace(d.range_id, PlacementMove{.from = from, .to = to});
    if (!added) {
      if (it->second.running) return;  // one move of a range at a time
      it->second = PlacementMove{.from = from, .to = to};
    }
  }
  place_pool_.Post(
      [this, d, from, to, live = std::move(live), draining = std::move(draining), done] {
        uint64_t generation = 0;
        const Status s = Stopping() ? Stopped() : MoveVia(d, from, to, live, draining, &generation);
        if (s.ok()) {
          ++*done;
        } else {
          LOG_INFO("placement: range {}: not moved: {}", d.range_id, s.ToString());
        }
        const Duration now = host_->clock().Monotonic();
        std::lock_guard<std::mutex> lock(place_mu_);
        PlacementMove& m = placing_[d.range_id];
        m.running = false;
        m.generation = s.ok() ? generation : 0;
        m.until = now + (s.ok() ? kMapCatchUp : kPlacementRest);
        if (!s.ok()) avoid_[d.range_id][to] = now + kAvoidFailedTarget;
        last_move_end_ = now;
        place_cv_.notify_all();
      });
}

bool NativeKeyspace::PlaceMeta(const Range& meta, const std::function<bool(uint64_t)>& removed,
                               const std::set<uint64_t>& live, const std::set<uint64_t>& draining,
                               const PlacementView& view) {
  const keys::RangeDescriptor d = meta.sm->descriptor();
  // Voters on live members: a removal must leave enough of them.
  const auto live_voters =
      static_cast<int>(std::count_if(d.replicas.begin(), d.replicas.end(), [&](const auto& r) {
        return r.type == keys::ReplicaType::kVoter && live.contains(r.node_id);
      }));
  for (const keys::ReplicaDescriptor& r : d.replicas) {
    const bool gone = removed(r.node_id);
    if (!gone && !(live.contains(r.node_id) && draining.contains(r.node_id))) continue;
    const uint64_t to = view.Target(d, r.node_id);
    // With no member to take it, a draining member's replica only goes
    // while enough live voters stay (and not from here: this node leads
    // the range, and hands the leadership over first); a removed member's
    // counts against the quorum only, and goes while replicas_per_range
    // voters stay (Relocate checks).
    if (to == 0 && !gone &&
        (r.node_id == node_id_ ||
         (r.type == keys::ReplicaType::kVoter && live_voters - 1 < options_.replicas_per_range))) {
      continue;
    }
    LOG_INFO("placement: the meta range's replica on {} node {:x} {}",
             gone ? "removed" : "draining", r.node_id,
             to == 0 ? std::string("is removed") : fmt::format("goes to node {:x}", to));
    if (to != 0) {
      StartMove(d, r.node_id, to, live, draining, gone ? &rereplicated_ : &drained_);
      return true;
    }
    if (const Status s = Relocate(kMetaRangeId, r.node_id, 0).status(); !s.ok()) {
      LOG_INFO("placement: the meta range: not changed: {}", s.ToString());
      return false;
    }
    ++(gone ? rereplicated_ : drained_);
    return true;
  }
  return false;
}

Status NativeKeyspace::MoveVia(const keys::RangeDescriptor& d, uint64_t from, uint64_t to,
                               const std::set<uint64_t>& live, const std::set<uint64_t>& draining,
                               uint64_t* generation) {
  // This member if it holds a voter that stays, else a live one that does
  // (one not draining first: the coordinator takes the range's
  // leadership), else the one that goes (a range with a single voter), if
  // it lives.
  uint64_t coordinator = 0;
  auto rank = [&](uint64_t node) {
    return draining.contains(node) ? 0 : (node == node_id_ ? 2 : 1);
  };
  for (const keys::ReplicaDescriptor& r : d.replicas) {
    if (r.type != keys::ReplicaType::kVoter || r.node_id == from || !live.contains(r.node_id)) {
      continue;
    }
    if (coordinator == 0 || rank(r.node_id) > rank(coordinator)) coordinator = r.node_id;
  }
  if (coordinator == 0 && live.contains(from)) coordinator = from;
  if (coordinator == 0) {
    return Status::Unavailable(fmt::format("range {}: no live voter to move it", d.range_id));
  }
  if (coordinator == node_id_) {
    ASSIGN_OR_RETURN(keys::RangeDescriptor after, MoveReplica(d.range_id, from, to));
    *generation = after.generation;
    return Status::Ok();
  }
  if (forwarder_ == nullptr) return Status::Unavailable("no forwarder");
  kvpb::MoveReplicaRequest req;
  req.set_range_id(d.range_id);
  req.set_from_node(from);
  req.set_to_node(to);
  // The callback may come after this keyspace is gone (it stopped while
  // waiting): it touches only what it shares.
  struct Outcome {
    std::mutex mu;
    std::condition_variable cv;
    std::optional<Result<kvpb::MoveReplicaResponse>> result;  // guarded by mu
  };
  auto outcome = std::make_shared<Outcome>();
  forwarder_->MoveReplica(coordinator, req, [outcome](Result<kvpb::MoveReplicaResponse> r) {
    {
      std::lock_guard<std::mutex> lock(outcome->mu);
      outcome->result = std::move(r);
    }
    outcome->cv.notify_all();
  });
  std::unique_lock<std::mutex> lock(outcome->mu);
  while (!outcome->cv.wait_for(lock, std::chrono::milliseconds(100),
                               [&] { return outcome->result.has_value(); })) {
    if (Stopping()) return Stopped();
  }
  RETURN_IF_ERROR(outcome->result->status());
  *generation = (*outcome->result)->range().generation();
  return Status::Ok();
}

bool NativeKeyspace::Stopping() {
  std::lock_guard<std::mutex> lock(split_mu_);
  return stopping_;
}

Status NativeKeyspace::Report(const Range& r) {
  const keys::RangeDescriptor d = r.sm->descriptor();
  const std::string key = RangeMapKey(d.end_key);
  for (int attempt = 0; attempt < kRouteAttempts; ++attempt) {
    bool more = false;
    ASSIGN_OR_RETURN(std::vector<RangeValue> current, MetaScan(key, key + '\0', 1, &more));
    kvpb::PutRequest put;
    if (!current.empty()) {
      // Generations only grow along a key range: the record's range, or
      // the one split off it, which has the larger generation.
      Result<keys::RangeDescriptor> recorded = keys::DecodeRangeDescriptor(current[0].value);
      if (recorded.ok() && recorded->generation >= d.generation) return DropInnerRecords(d);
      put.mutable_precondition()->set_value(current[0].value);
    } else {
      put.mutable_precondition()->set_absent(true);
    }
    put.set_key(key);
    put.set_value(keys::EncodeRangeDescriptor(d));
    Status w = MetaPut(std::move(put));
    if (w.ok()) return DropInnerRecords(d);
    // Another node wrote the record meanwhile: read it again.
    if (w.code() != StatusCode::kFailedPrecondition) return w;
  }
  return Status::Unavailable(
      fmt::format("range {}: its range map record is contended", d.range_id));
}

Status NativeKeyspace::DropInnerRecords(const keys::RangeDescriptor& d) {
  if (d.end_key.empty()) return Status::Ok();
  // Records ending inside the range: the ranges a merge took in.
  bool more = false;
  ASSIGN_OR_RETURN(std::vector<RangeValue> inner,
                   MetaScan(RangeMapKey(d.start_key) + '\0', RangeMapKey(d.end_key), 1000, &more));
  for (const RangeValue& kv : inner) {
    Result<keys::RangeDescriptor> old = keys::DecodeRangeDescriptor(kv.value);
    if (old.ok() && old->generation >= d.generation) continue;
    kvpb::DeleteRequest del;
    del.set_key(kv.key);
    del.mutable_precondition()->set_value(kv.value);
    Status s = MetaDelete(std::move(del));
    if (!s.ok() && s.code() != StatusCode::kFailedPrecondition) return s;
  }
  return Status::Ok();
}

// ---- the splitter ----

NativeKeyspace::~NativeKeyspace() {
  Stop();
  Join();
}

void NativeKeyspace::StartSplitting() {
  reporter_ = std::thread([this] {
    SetThreadName("range-map");
    ReportLoop();
  });
  if (options_.placement_interval.count() > 0) {
    placer_ = std::thread([this] {
      SetThreadName("placement");
      PlaceLoop();
    });
  }
  // Always: it ends the load windows, which the ranges' and members' loads
  // (and the leaders' balance) come from, also when nothing splits.
  splitter_ = std::thread([this] {
    SetThreadName("range-split");
    SplitLoop();
  });
}

void NativeKeyspace::Stop() {
  std::lock_guard<std::mutex> lock(split_mu_);
  stopping_ = true;
  split_cv_.notify_all();
}

void NativeKeyspace::Join() {
  if (splitter_.joinable()) splitter_.join();
  if (reporter_.joinable()) reporter_.join();
  if (placer_.joinable()) placer_.join();
  // The placement moves still running end soon: the host (stopped first)
  // ends their replicas' waits, and those sent elsewhere watch stopping_.
  std::unique_lock<std::mutex> lock(place_mu_);
  place_cv_.wait(lock, [&] {
    return std::none_of(placing_.begin(), placing_.end(),
                        [](const auto& kv) { return kv.second.running; });
  });
}

NativeKeyspace::SplitStats NativeKeyspace::split_stats() const {
  return SplitStats{splits_by_size_.load(),   splits_by_load_.load(),
                    splits_failed_.load(),    replicas_moved_.load(),
                    replicas_removed_.load(), forwarded_.load(),
                    rereplicated_.load(),     rebalanced_.load(),
                    leaders_moved_.load(),    leaders_moved_by_load_.load(),
                    drained_.load(),          merged_.load(),
                    merges_failed_.load(),    spread_.load()};
}

void NativeKeyspace::SplitLoop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(split_mu_);
      if (split_cv_.wait_for(lock, options_.load_window, [&] { return stopping_; })) return;
    }
    for (const Range& r : All()) {
      {
        std::lock_guard<std::mutex> lock(split_mu_);
        if (stopping_) return;
      }
      CheckRange(r);
      CheckMerge(r);
    }
  }
}

void NativeKeyspace::CheckRange(const Range& r) {
  // Each range's window ends when it is looked at: one range's slow split
  // does not stretch the next one's window.
  const RangeLoad::Window w = r.load->Roll(host_->clock().Monotonic());
  const keys::RangeDescriptor d = r.sm->descriptor();
  if (d.range_id == kMetaRangeId || d.frozen_into != 0 || r.load->Resting()) return;
  std::string key;
  const char* why = nullptr;
  if (options_.split_qps > 0 && w.requests_per_second > static_cast<double>(options_.split_qps)) {
    // The sampled key in the middle halves the load. A range cannot split
    // at its first key: when that one is the hot one, split just after it,
    // which leaves it alone in the range (a single hot key splits no
    // further).
    if (!w.keys.empty()) {
      key = w.keys[w.keys.size() / 2];
      if (key <= d.start_key) {
        auto after = std::upper_bound(w.keys.begin(), w.keys.end(), d.start_key);
        key = after == w.keys.end() ? std::string() : *after;
      }
      if (!key.empty()) why = "load";
    }
  }
  if (why == nullptr && options_.split_bytes > 0) {
    // Size is the same on every replica: the leader's node alone decides.
    const ReplicaStats st = r.replica->stats();
    if (st.leader == 0 || r.replica->NodeOf(st.leader) != node_id_) return;
    if (r.sm->DataBytes() <= options_.split_bytes) return;
    Result<std::optional<std::string>> middle = r.sm->MiddleKey();
    if (!middle.ok() || !middle->has_value()) return r.load->Rest(kRestWindows);
    key = std::move(**middle);
    why = "size";
  }
  if (why == nullptr || !d.ContainsKey(key)) return;
  LOG_INFO("range {}: splitting at \"{}\" by {} ({:.0f} requests/s here, about {} bytes)",
           d.range_id, key, why, w.requests_per_second, r.sm->DataBytes());
  // At the generation seen: another node that split it first wins.
  Result<RangeWriteResult> s = SplitOnce(r, key, d.generation);
  if (!s.ok()) {
    ++splits_failed_;
    r.load->Rest(kRestWindows);
    LOG_INFO("range {}: split at \"{}\" not done: {}", d.range_id, key, s.status().ToString());
    return;
  }
  ++(std::string_view(why) == "load" ? splits_by_load_ : splits_by_size_);
}

}  // namespace conclave::server
