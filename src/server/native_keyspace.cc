#include "server/native_keyspace.h"

#include <fmt/format.h>

#include <algorithm>
#include <utility>

#include "base/coding.h"
#include "base/logging.h"

namespace conclave::server {

namespace {

// A range's placement as its descriptor states it: replica id -> node.
std::function<uint64_t(raft::NodeId)> Placement(const keys::RangeDescriptor& d) {
  auto nodes = std::make_shared<std::map<raft::NodeId, uint64_t>>();
  for (const keys::ReplicaDescriptor& r : d.replicas)
    (*nodes)[r.replica_id] = r.node_id;
  return [nodes](raft::NodeId replica) {
    auto it = nodes->find(replica);
    return it == nodes->end() ? uint64_t{0} : it->second;
  };
}

Status NoRange(std::string_view key) {
  return Status::NotFound(fmt::format("no range here holds key \"{}\"", key))
      .WithReason(ErrorReason::kGroupNotFound);
}

}  // namespace

std::vector<keys::RangeDescriptor> InitialRanges(int64_t count, std::vector<uint64_t> members) {
  std::sort(members.begin(), members.end());
  std::vector<keys::RangeDescriptor> out;
  // Boundaries evenly spaced over the first two bytes of the key.
  auto boundary = [&](int64_t i) {
    std::string b;
    const uint32_t v = static_cast<uint32_t>((i * 65536) / count);
    b.push_back(static_cast<char>(v >> 8));
    b.push_back(static_cast<char>(v & 0xff));
    return b;
  };
  for (int64_t i = 0; i < count; ++i) {
    keys::RangeDescriptor d;
    d.range_id = kFirstRangeId + static_cast<uint64_t>(i);
    d.start_key = i == 0 ? std::string() : boundary(i);
    d.end_key = i + 1 == count ? std::string() : boundary(i + 1);
    d.generation = 1;
    for (size_t k = 0; k < members.size(); ++k)
      d.replicas.push_back({members[k], k + 1, keys::ReplicaType::kVoter});
    d.next_replica_id = members.size() + 1;
    out.push_back(std::move(d));
  }
  return out;
}

Result<std::unique_ptr<NativeKeyspace>> NativeKeyspace::Open(Host* host, uint64_t node_id,
                                                             const NativeKeyspaceOptions& options,
                                                             bool bootstrap) {
  std::unique_ptr<NativeKeyspace> ks(new NativeKeyspace(host, node_id));
  ASSIGN_OR_RETURN(std::vector<keys::RangeDescriptor> stored,
                   RangeStateMachine::Stored(host->engine()));
  const bool create = stored.empty() && bootstrap && options.initial_ranges > 0;
  if (create) stored = InitialRanges(options.initial_ranges, options.initial_members);
  for (const keys::RangeDescriptor& d : stored)
    RETURN_IF_ERROR(ks->AddRange(d, options, create));
  if (!stored.empty()) {
    LOG_INFO("native keyspace: {} {} ranges", create ? "created" : "opened", stored.size());
  }
  return ks;
}

Status NativeKeyspace::AddRange(const keys::RangeDescriptor& d,
                                const NativeKeyspaceOptions& options, bool create) {
  auto self = std::find_if(d.replicas.begin(), d.replicas.end(),
                           [&](const keys::ReplicaDescriptor& r) { return r.node_id == node_id_; });
  if (self == d.replicas.end()) return Status::Ok();  // not placed here
  ASSIGN_OR_RETURN(std::unique_ptr<RangeStateMachine> sm,
                   RangeStateMachine::Open(host_->engine(), host_->fs(), d.range_id, d));
  RangeStateMachine* raw = sm.get();
  ReplicaOptions ro = options.replica;
  ro.group = d.range_id;
  ro.replica_id = self->replica_id;
  ro.node_of = Placement(d);
  ro.bootstrap_voters.clear();
  if (create) {
    for (const keys::ReplicaDescriptor& r : d.replicas) {
      if (r.type == keys::ReplicaType::kVoter) ro.bootstrap_voters.push_back(r.replica_id);
    }
  }
  ASSIGN_OR_RETURN(std::shared_ptr<Replica> replica, host_->AddReplica(ro, std::move(sm)));
  std::lock_guard<std::mutex> lock(mu_);
  by_start_[d.start_key] = Range{std::move(replica), raw};
  return Status::Ok();
}

Result<NativeKeyspace::Range> NativeKeyspace::Find(std::string_view key) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = by_start_.upper_bound(std::string(key));
  if (it == by_start_.begin()) return NoRange(key);
  --it;
  if (!it->second.sm->descriptor().ContainsKey(key)) return NoRange(key);
  return it->second;
}

std::vector<NativeKeyspace::Range> NativeKeyspace::Overlapping(std::string_view start,
                                                               std::string_view end) const {
  std::vector<Range> out;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [first, r] : by_start_) {
    const keys::RangeDescriptor d = r.sm->descriptor();
    const bool before = !d.end_key.empty() && d.end_key <= start;
    const bool after = !end.empty() && d.start_key >= end;
    if (!before && !after) out.push_back(r);
  }
  return out;
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

void NativeKeyspace::Write(std::string key, serverpb::RangeCommand command, WriteDone done) {
  Result<Range> r = Find(key);
  if (!r.ok()) return done(r.status(), 0);
  const keys::RangeId id = r->sm->descriptor().range_id;
  const int64_t now = host_->clock().WallNanos();
  command.set_wall_nanos(static_cast<uint64_t>(std::max<int64_t>(now, 0)));
  r->replica->ProposeAsync(command.SerializeAsString(),
                           [done = std::move(done), id](Result<std::any> applied) {
                             if (!applied.ok()) return done(applied.status(), id);
                             const auto* w = std::any_cast<RangeWriteResult>(&applied.value());
                             if (w == nullptr) {
                               return done(Status::Internal("range: no result"), id);
                             }
                             if (!w->status.ok()) return done(w->status, id);
                             done(*w, id);
                           });
}

void NativeKeyspace::Put(kvpb::PutRequest request, WriteDone done) {
  std::string key = request.key();
  serverpb::RangeCommand c;
  *c.mutable_put() = std::move(request);
  Write(std::move(key), std::move(c), std::move(done));
}

void NativeKeyspace::Delete(kvpb::DeleteRequest request, WriteDone done) {
  std::string key = request.key();
  serverpb::RangeCommand c;
  *c.mutable_delete_() = std::move(request);
  Write(std::move(key), std::move(c), std::move(done));
}

Result<uint64_t> NativeKeyspace::DeleteRange(const std::string& start, const std::string& end) {
  uint64_t deleted = 0;
  for (const Range& r : Overlapping(start, end)) {
    const keys::RangeDescriptor d = r.sm->descriptor();
    serverpb::RangeCommand c;
    c.mutable_delete_range()->set_start(std::max(start, d.start_key));
    std::string to = end;
    if (!d.end_key.empty() && (to.empty() || d.end_key < to)) to = d.end_key;
    c.mutable_delete_range()->set_end(to);
    c.set_wall_nanos(static_cast<uint64_t>(std::max<int64_t>(host_->clock().WallNanos(), 0)));
    ASSIGN_OR_RETURN(std::any applied, r.replica->Propose(c.SerializeAsString()));
    const auto* w = std::any_cast<RangeWriteResult>(&applied);
    if (w == nullptr) return Status::Internal("range: no result");
    RETURN_IF_ERROR(w->status);
    deleted += w->deleted;
  }
  return deleted;
}

void NativeKeyspace::Get(std::string key, ReadDone done) {
  Result<Range> r = Find(key);
  if (!r.ok()) return done(r.status(), 0);
  RangeStateMachine* sm = r->sm;
  const keys::RangeId id = sm->descriptor().range_id;
  r->replica->ReadBarrierAsync([sm, id, key = std::move(key), done = std::move(done)](Status s) {
    if (!s.ok()) return done(s, id);
    done(sm->Get(key), id);
  });
}

}  // namespace conclave::server
