#include "server/range_state_machine.h"

#include <fmt/format.h>

#include <algorithm>
#include <functional>
#include <set>
#include <utility>

#include "base/coding.h"
#include "base/logging.h"
#include "conclave/serverpb/server.pb.h"
#include "mvcc/mvcc.h"

namespace conclave::server {

namespace {

keys::RaftConfig ToRaftConfig(const raft::ConfState& cs) {
  return keys::RaftConfig{cs.voters, cs.learners, cs.voters_outgoing, cs.learners_next,
                          cs.auto_leave};
}

raft::ConfState FromRaftConfig(const keys::RaftConfig& c) {
  raft::ConfState cs;
  cs.voters = c.voters;
  cs.learners = c.learners;
  cs.voters_outgoing = c.voters_outgoing;
  cs.learners_next = c.learners_next;
  cs.auto_leave = c.auto_leave;
  return cs;
}

Status OutsideRange(std::string_view key, const keys::RangeDescriptor& d) {
  return Status::OutOfRange(fmt::format("key {} is not in range {} [{}, {})",
                                        keys::DescribeKey(keys::EncodeKey(keys::DataKey{
                                            std::string(key), keys::VersionTag::kIntent, {}})),
                                        d.range_id, d.start_key, d.end_key));
}

// Walks the entries of `span`, calling visit(engine key, bytes so far)
// until it returns false; bytes are each entry's key and value as encoded
// (what the applied state's data bytes count).
Status WalkBytes(storage::EngineIterator* it, const keys::Span& span,
                 const std::function<bool(std::string_view, uint64_t)>& visit) {
  uint64_t bytes = 0;
  for (it->Seek(span.begin); it->Valid() && it->key() < span.end; it->Next()) {
    bytes += it->key().size() + it->value().size();
    if (!visit(it->key(), bytes)) break;
  }
  return it->status();
}

// Reads the newest version at or after `it`'s position for the user key it
// is on. Returns the key and whether a live value was found; advances past
// the key's entries.
template <typename Visit>
Status VisitNewest(storage::EngineIterator* it, const std::string& end, Visit visit) {
  while (it->Valid() && it->key() < end) {
    ASSIGN_OR_RETURN(keys::DataKey k, keys::DecodeDataKey(it->key()));
    if (k.tag == keys::VersionTag::kIntent) {
      it->Next();  // intents come with transactions; none are written yet
      continue;
    }
    ASSIGN_OR_RETURN(keys::VersionValue v, keys::DecodeVersionValue(it->value()));
    if (!visit(k, v)) return Status::Ok();
    it->Seek(keys::KeyEntriesSpan(k.user_key).end);
  }
  return it->status();
}

std::string TombstoneKey(keys::RangeId range_id) {
  std::string name = "replica_tombstone/";
  PutBigEndian64(&name, range_id);
  return keys::NodeLocalKeyFor(name);
}

// The range's Raft configuration as of the batch (a change earlier in it
// included).
Result<keys::RaftConfig> ConfigIn(storage::EngineBatch* batch, keys::RangeId range_id) {
  ASSIGN_OR_RETURN(std::optional<std::string> bytes, batch->Get(keys::RaftConfigKey(range_id)));
  if (!bytes) return Status::Corruption(fmt::format("range {}: no raft configuration", range_id));
  return keys::DecodeRaftConfig(*bytes);
}

std::set<uint64_t> NodesOf(const keys::RangeDescriptor& d) {
  std::set<uint64_t> nodes;
  for (const keys::ReplicaDescriptor& r : d.replicas)
    nodes.insert(r.node_id);
  return nodes;
}

bool HasLearner(const keys::RangeDescriptor& d) {
  return std::any_of(d.replicas.begin(), d.replicas.end(), [](const keys::ReplicaDescriptor& r) {
    return r.type == keys::ReplicaType::kLearner;
  });
}

}  // namespace

RangeStateMachine::RangeStateMachine(storage::Engine* engine, storage::FileSystem* fs,
                                     keys::RangeId range_id)
    : engine_(engine), fs_(fs), range_id_(range_id) {}

Result<std::unique_ptr<RangeStateMachine>> RangeStateMachine::Open(
    storage::Engine* engine, storage::FileSystem* snapshot_fs, keys::RangeId range_id,
    const keys::RangeDescriptor& fresh) {
  std::unique_ptr<RangeStateMachine> sm(new RangeStateMachine(engine, snapshot_fs, range_id));
  RETURN_IF_ERROR(sm->Load(fresh));
  return sm;
}

Result<std::vector<keys::RangeDescriptor>> RangeStateMachine::Stored(
    const storage::Engine* engine) {
  std::vector<keys::RangeDescriptor> out;
  const keys::Span all = keys::AllRangeIdLocalSpan();
  std::unique_ptr<storage::EngineIterator> it = engine->NewIterator();
  for (it->Seek(all.begin); it->Valid() && it->key() < all.end; it->Next()) {
    ASSIGN_OR_RETURN(keys::RangeIdLocalKey k, keys::DecodeRangeIdLocalKey(it->key()));
    if (k.kind != keys::RangeIdKind::kRangeDescriptor) continue;
    ASSIGN_OR_RETURN(keys::RangeDescriptor d, keys::DecodeRangeDescriptor(it->value()));
    out.push_back(std::move(d));
  }
  RETURN_IF_ERROR(it->status());
  return out;
}

std::vector<std::pair<std::string, std::string>> UncoveredSpans(
    const std::string& start, const std::string& end,
    std::vector<std::pair<std::string, std::string>> keep) {
  // End keys: empty is past every key.
  auto before = [](const std::string& key, const std::string& end_key) {
    return end_key.empty() || key < end_key;
  };
  std::sort(keep.begin(), keep.end());
  std::vector<std::pair<std::string, std::string>> gaps;
  std::string cursor = start;
  for (const auto& [ks, ke] : keep) {
    if (!before(cursor, end)) break;
    if (!before(ks, end) || !before(cursor, ke)) continue;  // no overlap left
    if (cursor < ks) gaps.emplace_back(cursor, ks);
    if (ke.empty()) return gaps;  // kept to the end
    cursor = std::max(cursor, ke);
  }
  if (before(cursor, end)) gaps.emplace_back(cursor, end);
  return gaps;
}

Status RangeStateMachine::Destroy(storage::Engine* engine, const keys::RangeDescriptor& d,
                                  const std::vector<std::pair<std::string, std::string>>& keep) {
  std::unique_ptr<storage::EngineBatch> batch = engine->NewBatch();
  const keys::Span own = keys::RangeIdLocalSpan(d.range_id);
  batch->DeleteRange(own.begin, own.end);
  for (const auto& [start, end] : UncoveredSpans(d.start_key, d.end_key, keep)) {
    for (const keys::Span& s : {keys::RangeLocalSpan(start, end), keys::DataSpan(start, end)})
      batch->DeleteRange(s.begin, s.end);
  }
  std::string refused;
  PutBigEndian64(&refused, d.next_replica_id);
  batch->Put(TombstoneKey(d.range_id), refused);
  return engine->Write(batch.get(), /*sync=*/true);
}

Result<uint64_t> RangeStateMachine::Tombstone(const storage::Engine* engine,
                                              keys::RangeId range_id) {
  ASSIGN_OR_RETURN(std::optional<std::string> v, engine->Get(TombstoneKey(range_id)));
  if (!v) return uint64_t{0};
  if (v->size() != 8) {
    return Status::Corruption(
        fmt::format("range {}: a replica tombstone of {} bytes", range_id, v->size()));
  }
  return DecodeBigEndian64(v->data());
}

Status RangeStateMachine::Load(const keys::RangeDescriptor& fresh) {
  ASSIGN_OR_RETURN(std::optional<std::string> d, engine_->Get(keys::RangeDescriptorKey(range_id_)));
  ASSIGN_OR_RETURN(std::optional<std::string> a, engine_->Get(keys::AppliedStateKey(range_id_)));
  std::lock_guard<std::mutex> lock(mu_);
  initialized_ = true;
  if (d) {
    ASSIGN_OR_RETURN(descriptor_, keys::DecodeRangeDescriptor(*d));
  } else if (fresh.range_id == 0) {
    // Waits for its first snapshot.
    initialized_ = false;
    descriptor_ = keys::RangeDescriptor{};
    descriptor_.range_id = range_id_;
  } else {
    RETURN_IF_ERROR(keys::ValidateRangeDescriptor(fresh));
    if (fresh.range_id != range_id_) {
      return Status::InvalidArgument(
          fmt::format("range {}: descriptor of range {}", range_id_, fresh.range_id));
    }
    descriptor_ = fresh;
  }
  if (a) {
    ASSIGN_OR_RETURN(applied_, keys::DecodeAppliedState(*a));
  } else {
    applied_ = keys::AppliedState{};
  }
  return Status::Ok();
}

uint64_t RangeStateMachine::AppliedIndex() const {
  std::lock_guard<std::mutex> lock(mu_);
  return applied_.index;
}

uint64_t RangeStateMachine::AppliedTerm() const {
  std::lock_guard<std::mutex> lock(mu_);
  return applied_.term;
}

uint64_t RangeStateMachine::NodeOf(raft::NodeId replica) const {
  std::lock_guard<std::mutex> lock(mu_);
  for (const keys::ReplicaDescriptor& r : descriptor_.replicas) {
    if (r.replica_id == replica) return r.node_id;
  }
  return 0;
}

bool RangeStateMachine::initialized() const {
  std::lock_guard<std::mutex> lock(mu_);
  return initialized_;
}

keys::RangeDescriptor RangeStateMachine::descriptor() const {
  std::lock_guard<std::mutex> lock(mu_);
  return descriptor_;
}

Result<raft::ConfState> RangeStateMachine::AppliedConfState() const {
  ASSIGN_OR_RETURN(std::optional<std::string> c, engine_->Get(keys::RaftConfigKey(range_id_)));
  if (!c) {
    return Status::Corruption(
        fmt::format("range {}: no raft configuration at index {}", range_id_, AppliedIndex()));
  }
  ASSIGN_OR_RETURN(keys::RaftConfig config, keys::DecodeRaftConfig(*c));
  return FromRaftConfig(config);
}

Status RangeStateMachine::Bootstrap(const raft::ConfState& conf_state) {
  const keys::RangeDescriptor d = descriptor();
  keys::AppliedState applied{1, 1, Timestamp{}};
  std::unique_ptr<storage::EngineBatch> batch = engine_->NewBatch();
  for (const auto& [key, value] : initial_values_) {
    if (!d.ContainsKey(key)) {
      return Status::InvalidArgument(
          fmt::format("range {}: initial key \"{}\" is outside it", range_id_, key));
    }
    applied.closed_timestamp = Timestamp{0, 1};
    const std::string k = keys::VersionKey(key, applied.closed_timestamp);
    const std::string v = keys::EncodeVersionValue(keys::VersionValue{false, value});
    batch->Put(k, v);
    applied.data_bytes += k.size() + v.size();
  }
  batch->Put(keys::RangeDescriptorKey(range_id_), keys::EncodeRangeDescriptor(d));
  batch->Put(keys::RaftConfigKey(range_id_), keys::EncodeRaftConfig(ToRaftConfig(conf_state)));
  batch->Put(keys::AppliedStateKey(range_id_), keys::EncodeAppliedState(applied));
  RETURN_IF_ERROR(engine_->Write(batch.get(), /*sync=*/true));
  std::lock_guard<std::mutex> lock(mu_);
  applied_ = applied;
  return Status::Ok();
}

Status Frozen(const keys::RangeDescriptor& d) {
  return Status::Unavailable(fmt::format("conclave: range {} is being merged into range {}",
                                         d.range_id, d.frozen_into))
      .WithReason(ErrorReason::kRangeFrozen);
}

// ---- apply ----

Status RangeStateMachine::Apply(std::span<const CommittedEntry> entries,
                                std::vector<std::any>* results) {
  const RangeWriteResult gone{
      Status::Unavailable(fmt::format(
          "range {}: its replica left this node; the command applies on the range's other replicas",
          range_id_)),
      Timestamp{}};
  if (removed()) {
    // This node's copy is gone; the entries are the group's business.
    for (std::any& r : *results)
      r = gone;
    return Status::Ok();
  }
  std::unique_ptr<storage::EngineBatch> batch = engine_->NewBatch();
  bool replicas_changed = false;
  keys::AppliedState applied;
  keys::RangeDescriptor desc;
  {
    std::lock_guard<std::mutex> lock(mu_);
    applied = applied_;
    desc = descriptor_;
  }
  std::vector<keys::RangeDescriptor> created;  // by splits in this batch
  std::vector<keys::RangeDescriptor> merged;   // taken in by merges in this batch
  const keys::RangeId frozen_before = desc.frozen_into;
  bool frozen_changed = false;
  Pending pending;
  bool left = false;  // this node's replica was removed earlier in the batch
  for (size_t i = 0; i < entries.size(); ++i) {
    const CommittedEntry& e = entries[i];
    if (left) {
      // The rest of the log is the group's business (a split after the
      // removal makes no range here).
      (*results)[i] = gone;
      continue;
    }
    if (e.type == raft::EntryType::kConfChange) {
      batch->Put(keys::RaftConfigKey(range_id_),
                 keys::EncodeRaftConfig(ToRaftConfig(*e.conf_state)));
      if (!e.refused) {
        RETURN_IF_ERROR(ApplyReplicaChange(batch.get(), e, &desc));
        replicas_changed = true;
        left = local_node_ != 0 && !desc.HasNode(local_node_);
      }
      (*results)[i] = RangeWriteResult{
          e.refused ? Status::FailedPrecondition("range: configuration change refused by raft")
                          .WithReason(ErrorReason::kConfChangeInProgress)
                    : Status::Ok(),
          applied.closed_timestamp};
    } else if (e.command.empty()) {
      (*results)[i] = RangeWriteResult{Status::Ok(), applied.closed_timestamp};
    } else {
      ASSIGN_OR_RETURN(RangeWriteResult r,
                       ApplyCommand(batch.get(), e.command, &desc, &applied, &pending));
      if (r.split) created.push_back(r.split->second);
      if (r.merged) merged.push_back(*r.merged);
      if (r.descriptor && r.descriptor->frozen_into != frozen_before) frozen_changed = true;
      (*results)[i] = std::move(r);
    }
    applied.index = e.index;
    applied.term = e.term;
  }
  batch->Put(keys::AppliedStateKey(range_id_), keys::EncodeAppliedState(applied));
  RETURN_IF_ERROR(engine_->Write(batch.get(), /*sync=*/false));
  // The new ranges join the node before this one narrows (file comment).
  for (const keys::RangeDescriptor& right : created) {
    if (!on_split_) return Status::Internal(fmt::format("range {}: no split handler", range_id_));
    RETURN_IF_ERROR(on_split_(right));
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    applied_ = applied;
    descriptor_ = desc;
  }
  // The ranges taken in go first: a removal of this node's replica later in
  // the batch then deletes their keys with the rest of the range's.
  for (const keys::RangeDescriptor& right : merged) {
    if (on_merge_) RETURN_IF_ERROR(on_merge_(right));
  }
  if (replicas_changed && on_replicas_) RETURN_IF_ERROR(on_replicas_(desc));
  if (frozen_changed && on_frozen_) RETURN_IF_ERROR(on_frozen_(desc));
  return Status::Ok();
}

Status RangeStateMachine::ApplyReplicaChange(storage::EngineBatch* batch, const CommittedEntry& e,
                                             keys::RangeDescriptor* d) {
  serverpb::ReplicaChange change;
  if (!change.ParseFromArray(e.command.data(), static_cast<int>(e.command.size()))) {
    return Status::Corruption(fmt::format(
        "range {}: entry {} is a configuration change without placements", range_id_, e.index));
  }
  std::map<uint64_t, uint64_t> node_of;  // replica id -> node id
  for (const keys::ReplicaDescriptor& r : d->replicas)
    node_of[r.replica_id] = r.node_id;
  for (const serverpb::ReplicaChange::Placement& p : change.added())
    node_of.emplace(p.replica_id(), p.node_id());
  std::map<uint64_t, keys::ReplicaType> types;
  for (const std::vector<uint64_t>* ids : {&e.conf_state->learners, &e.conf_state->learners_next}) {
    for (uint64_t id : *ids)
      types[id] = keys::ReplicaType::kLearner;
  }
  for (const std::vector<uint64_t>* ids : {&e.conf_state->voters, &e.conf_state->voters_outgoing}) {
    for (uint64_t id : *ids)
      types[id] = keys::ReplicaType::kVoter;
  }
  std::vector<keys::ReplicaDescriptor> replicas;
  for (const auto& [id, type] : types) {
    const uint64_t node = node_of[id];
    if (node == 0) {
      return Status::Corruption(
          fmt::format("range {}: entry {} adds replica {} without saying on which node", range_id_,
                      e.index, id));
    }
    replicas.push_back({node, id, type});
    d->next_replica_id = std::max(d->next_replica_id, id + 1);
  }
  d->replicas = std::move(replicas);
  ++d->generation;
  batch->Put(keys::RangeDescriptorKey(range_id_), keys::EncodeRangeDescriptor(*d));
  std::string who;
  for (const keys::ReplicaDescriptor& r : d->replicas) {
    who += fmt::format(" {}@{:x}{}", r.replica_id, r.node_id,
                       r.type == keys::ReplicaType::kLearner ? "(learner)" : "");
  }
  LOG_INFO("range {}: replicas now{} (generation {})", range_id_, who, d->generation);
  return Status::Ok();
}

Result<RangeWriteResult> RangeStateMachine::ApplySplit(storage::EngineBatch* batch,
                                                       const serverpb::SplitCommand& c,
                                                       keys::RangeDescriptor* d,
                                                       keys::AppliedState* applied) {
  const Timestamp closed = applied->closed_timestamp;
  auto refuse = [&](std::string why) {
    return RangeWriteResult{
        Status::FailedPrecondition(fmt::format("range {}: cannot split: {}", d->range_id, why)),
        closed};
  };
  const std::string& key = c.split_key();
  if (c.generation() != d->generation) {
    return refuse(fmt::format("the range changed (generation {}, the split expected {})",
                              d->generation, c.generation()));
  }
  if (key <= d->start_key || !d->ContainsKey(key)) {
    return refuse(
        fmt::format("key \"{}\" is not inside [\"{}\", \"{}\")", key, d->start_key, d->end_key));
  }
  if (key >= kSystemKeyStart) return refuse("the system keys are not split");
  if (HasLearner(*d)) return refuse("a replica is being added");
  if (c.new_range_id() == d->range_id || c.new_range_id() == 0) {
    return refuse(fmt::format("bad new range id {}", c.new_range_id()));
  }
  ASSIGN_OR_RETURN(keys::RaftConfig config, ConfigIn(batch, range_id_));
  if (!config.voters_outgoing.empty()) return refuse("a configuration change is in progress");

  // The right side's share of the data, counted as the batch sees it
  // (earlier commands of this Apply call included).
  const keys::Span moved = keys::DataSpan(key, d->end_key);
  uint64_t right_bytes = 0;
  RETURN_IF_ERROR(WalkBytes(batch->NewIterator().get(), moved, [&](std::string_view, uint64_t b) {
    right_bytes = b;
    return true;
  }));
  right_bytes = std::min(right_bytes, applied->data_bytes);
  applied->data_bytes -= right_bytes;

  keys::RangeDescriptor right = *d;
  right.range_id = c.new_range_id();
  right.start_key = key;
  right.sticky = c.sticky();
  d->end_key = key;
  ++d->generation;
  right.generation = d->generation;
  batch->Put(keys::RangeDescriptorKey(range_id_), keys::EncodeRangeDescriptor(*d));
  // This node may hold the new range already: it received a snapshot of
  // it before applying the split (it lagged here). That replica is newer
  // than what the split would write; it stays. (Only this node's records
  // of the new range differ; this range's own records are the same on
  // every replica.)
  ASSIGN_OR_RETURN(std::optional<std::string> existing,
                   batch->Get(keys::RangeDescriptorKey(right.range_id)));
  if (!existing) {
    batch->Put(keys::RangeDescriptorKey(right.range_id), keys::EncodeRangeDescriptor(right));
    batch->Put(keys::RaftConfigKey(right.range_id), keys::EncodeRaftConfig(config));
    batch->Put(keys::AppliedStateKey(right.range_id),
               keys::EncodeAppliedState(keys::AppliedState{1, 1, closed, right_bytes}));
  }
  LOG_INFO("range {}: split at \"{}\" into [\"{}\", \"{}\") and range {} [\"{}\", \"{}\")",
           range_id_, key, d->start_key, d->end_key, right.range_id, right.start_key,
           right.end_key);
  RangeWriteResult r{Status::Ok(), closed};
  r.split.emplace(*d, std::move(right));
  return r;
}

Result<RangeWriteResult> RangeStateMachine::ApplyFreeze(storage::EngineBatch* batch,
                                                        const serverpb::FreezeCommand& c,
                                                        keys::RangeDescriptor* d,
                                                        const keys::AppliedState& applied) {
  auto refuse = [&](std::string why) {
    return RangeWriteResult{
        Status::FailedPrecondition(fmt::format("range {}: cannot freeze: {}", d->range_id, why)),
        applied.closed_timestamp};
  };
  if (c.generation() != d->generation) {
    return refuse(fmt::format("the range changed (generation {}, the merge expected {})",
                              d->generation, c.generation()));
  }
  if (c.left_range_id() == 0 || c.left_range_id() == d->range_id) {
    return refuse(fmt::format("bad left range id {}", c.left_range_id()));
  }
  if (d->start_key >= kSystemKeyStart) return refuse("the system keys are not merged");
  if (d->merging_from != 0) {
    return refuse(fmt::format("it is taking in range {}", d->merging_from));
  }
  if (HasLearner(*d)) return refuse("a replica is being added");
  ASSIGN_OR_RETURN(keys::RaftConfig config, ConfigIn(batch, range_id_));
  if (!config.voters_outgoing.empty()) return refuse("a configuration change is in progress");
  d->frozen_into = c.left_range_id();
  ++d->generation;
  batch->Put(keys::RangeDescriptorKey(range_id_), keys::EncodeRangeDescriptor(*d));
  LOG_INFO("range {}: frozen to merge into range {} (generation {})", range_id_, d->frozen_into,
           d->generation);
  RangeWriteResult r{Status::Ok(), applied.closed_timestamp};
  r.descriptor = *d;
  return r;
}

Result<RangeWriteResult> RangeStateMachine::ApplyMerge(storage::EngineBatch* batch,
                                                       const serverpb::MergeCommand& c,
                                                       keys::RangeDescriptor* d,
                                                       keys::AppliedState* applied) {
  auto refuse = [&](std::string why) {
    return RangeWriteResult{
        Status::FailedPrecondition(fmt::format("range {}: cannot merge: {}", d->range_id, why)),
        applied->closed_timestamp};
  };
  Result<keys::RangeDescriptor> decoded = keys::DecodeRangeDescriptor(c.right());
  if (!decoded.ok()) return refuse(decoded.status().ToString());
  const keys::RangeDescriptor& right = *decoded;
  if (c.generation() != d->generation) {
    return refuse(fmt::format("the range changed (generation {}, the merge expected {})",
                              d->generation, c.generation()));
  }
  if (d->merging_from != right.range_id) {
    return refuse(fmt::format("it is not prepared to take range {} in", right.range_id));
  }
  if (right.frozen_into != d->range_id) {
    return refuse(fmt::format("range {} is not frozen into it", right.range_id));
  }
  if (d->end_key.empty() || right.start_key != d->end_key || right.end_key.empty() ||
      right.end_key > kSystemKeyStart) {
    return refuse(fmt::format("range {} [\"{}\", \"{}\") is not its right neighbour",
                              right.range_id, right.start_key, right.end_key));
  }
  if (NodesOf(right) != NodesOf(*d)) return refuse("the ranges' replicas are on other nodes");
  if (HasLearner(*d)) return refuse("a replica is being added");
  ASSIGN_OR_RETURN(keys::RaftConfig config, ConfigIn(batch, range_id_));
  if (!config.voters_outgoing.empty()) return refuse("a configuration change is in progress");

  d->end_key = right.end_key;
  d->merging_from = 0;
  d->generation = std::max(d->generation, right.generation) + 1;
  applied->data_bytes += c.right_bytes();
  applied->closed_timestamp = std::max(
      applied->closed_timestamp, Timestamp{c.right_closed_wall_nanos(), c.right_closed_logical()});
  batch->Put(keys::RangeDescriptorKey(range_id_), keys::EncodeRangeDescriptor(*d));
  // The right range's own records go; its data (and range-local keys) is
  // this range's now. Its replicas here are refused from now on.
  uint64_t refused = right.next_replica_id;
  ASSIGN_OR_RETURN(std::optional<std::string> local,
                   batch->Get(keys::RangeDescriptorKey(right.range_id)));
  if (local) {
    ASSIGN_OR_RETURN(keys::RangeDescriptor here, keys::DecodeRangeDescriptor(*local));
    refused = std::max(refused, here.next_replica_id);
  }
  ASSIGN_OR_RETURN(std::optional<std::string> earlier, batch->Get(TombstoneKey(right.range_id)));
  if (earlier && earlier->size() == 8)
    refused = std::max(refused, DecodeBigEndian64(earlier->data()));
  const keys::Span own = keys::RangeIdLocalSpan(right.range_id);
  batch->DeleteRange(own.begin, own.end);
  std::string tombstone;
  PutBigEndian64(&tombstone, refused);
  batch->Put(TombstoneKey(right.range_id), tombstone);
  LOG_INFO("range {}: merged range {} in, now [\"{}\", \"{}\") (generation {})", range_id_,
           right.range_id, d->start_key, d->end_key, d->generation);
  RangeWriteResult r{Status::Ok(), applied->closed_timestamp};
  r.merged = right;
  return r;
}

Result<RangeWriteResult> RangeStateMachine::ApplyCommand(storage::EngineBatch* batch,
                                                         std::string_view command,
                                                         keys::RangeDescriptor* desc,
                                                         keys::AppliedState* applied,
                                                         Pending* pending) {
  Timestamp* closed = &applied->closed_timestamp;
  serverpb::RangeCommand c;
  if (!c.ParseFromArray(command.data(), static_cast<int>(command.size()))) {
    return RangeWriteResult{Status::InvalidArgument("range: not a range command"), *closed};
  }
  if (c.has_thaw()) {
    if (desc->frozen_into == 0 || desc->frozen_into != c.thaw().left_range_id() ||
        desc->generation != c.thaw().generation()) {
      return RangeWriteResult{Status::FailedPrecondition(fmt::format(
                                  "range {}: not frozen into range {} at generation {}",
                                  desc->range_id, c.thaw().left_range_id(), c.thaw().generation())),
                              *closed};
    }
    desc->frozen_into = 0;
    ++desc->generation;
    batch->Put(keys::RangeDescriptorKey(range_id_), keys::EncodeRangeDescriptor(*desc));
    LOG_INFO("range {}: thawed, its merge called off (generation {})", range_id_, desc->generation);
    RangeWriteResult r{Status::Ok(), *closed};
    r.descriptor = *desc;
    return r;
  }
  if (c.has_fence()) {
    // Only a prepared range can take a merge in: nothing to fence otherwise.
    if (desc->merging_from != 0) {
      if (c.fence().release()) desc->merging_from = 0;
      ++desc->generation;
      batch->Put(keys::RangeDescriptorKey(range_id_), keys::EncodeRangeDescriptor(*desc));
    }
    RangeWriteResult r{Status::Ok(), *closed};
    r.descriptor = *desc;
    return r;
  }
  // A frozen range's data and closed timestamp are final.
  if (desc->frozen_into != 0) return RangeWriteResult{Frozen(*desc), *closed};
  if (c.has_prepare_merge()) {
    const serverpb::PrepareMergeCommand& p = c.prepare_merge();
    Status refused;
    if (p.generation() != desc->generation) {
      refused = Status::FailedPrecondition(fmt::format(
          "range {}: cannot prepare a merge: the range changed (generation {}, expected {})",
          desc->range_id, desc->generation, p.generation()));
    } else if (desc->merging_from != 0 || p.right_range_id() == 0 ||
               p.right_range_id() == desc->range_id) {
      refused = Status::FailedPrecondition(
          fmt::format("range {}: cannot prepare a merge with range {} (it is taking in range {})",
                      desc->range_id, p.right_range_id(), desc->merging_from));
    }
    if (!refused.ok()) return RangeWriteResult{std::move(refused), *closed};
    desc->merging_from = p.right_range_id();
    ++desc->generation;
    batch->Put(keys::RangeDescriptorKey(range_id_), keys::EncodeRangeDescriptor(*desc));
    RangeWriteResult r{Status::Ok(), *closed};
    r.descriptor = *desc;
    return r;
  }
  if (c.has_split()) {
    if (desc->merging_from != 0) {
      return RangeWriteResult{
          Status::Unavailable(fmt::format("conclave: range {} is taking in range {}; try again",
                                          desc->range_id, desc->merging_from)),
          *closed};
    }
    return ApplySplit(batch, c.split(), desc, applied);
  }
  if (c.has_freeze()) return ApplyFreeze(batch, c.freeze(), desc, *applied);
  if (c.has_merge()) return ApplyMerge(batch, c.merge(), desc, applied);
  const keys::RangeDescriptor& d = *desc;
  // Versions only grow: past the range's last write, whatever the
  // proposer's clock said. One command writes at one timestamp.
  auto next_ts = [&] {
    Timestamp ts{c.wall_nanos(), c.logical()};
    if (ts <= *closed) ts = closed->Next();
    *closed = ts;
    return ts;
  };
  auto write = [&](const std::string& key, keys::VersionValue value, Timestamp ts) {
    const std::string k = keys::VersionKey(key, ts);
    const std::string v = keys::EncodeVersionValue(value);
    batch->Put(k, v);
    applied->data_bytes += k.size() + v.size();
    (*pending)[key] = Written{ts, std::move(value)};
  };
  // What a command's own result says (outside the range, a precondition
  // that does not hold) fails alike on every replica: it reads only what
  // the log applied before it. An engine that cannot be read is no such
  // result: it fails the whole Apply, so no replica skips a write.
  // Sets *refused when the command fails on its own; returns an error only
  // when the engine cannot be read.
  auto check = [&](const std::string& key, const kvpb::Precondition* p, Status* refused) -> Status {
    if (!d.ContainsKey(key)) {
      *refused = OutsideRange(key, d);
      return Status::Ok();
    }
    if (p == nullptr) return Status::Ok();
    ASSIGN_OR_RETURN(bool holds, Holds(key, *p, *pending));
    if (holds) return Status::Ok();
    *refused =
        Status::FailedPrecondition(fmt::format("conclave: precondition failed: key \"{}\" {}", key,
                                               p->has_timestamp() ? "has another newest version"
                                               : p->has_value()   ? "has another value or none"
                                                                  : "exists"));
    return Status::Ok();
  };
  if (c.has_put()) {
    const kvpb::PutRequest& put = c.put();
    Status refused;
    RETURN_IF_ERROR(
        check(put.key(), put.has_precondition() ? &put.precondition() : nullptr, &refused));
    if (!refused.ok()) return RangeWriteResult{std::move(refused), *closed};
    const Timestamp ts = next_ts();
    write(put.key(), keys::VersionValue{false, put.value()}, ts);
    return RangeWriteResult{Status::Ok(), ts};
  }
  if (c.has_delete_()) {
    const kvpb::DeleteRequest& del = c.delete_();
    Status refused;
    RETURN_IF_ERROR(
        check(del.key(), del.has_precondition() ? &del.precondition() : nullptr, &refused));
    if (!refused.ok()) return RangeWriteResult{std::move(refused), *closed};
    ASSIGN_OR_RETURN(std::optional<Written> was, Newest(del.key(), *pending));
    const bool live = was.has_value() && !was->value.tombstone;
    const Timestamp ts = next_ts();
    write(del.key(), keys::VersionValue{true, {}}, ts);
    return RangeWriteResult{Status::Ok(), ts, live ? 1u : 0u};
  }
  if (c.has_delete_range()) {
    // Clipped to the range: the proposer clipped it already, but the
    // range may have changed since.
    std::string from = std::max(c.delete_range().start(), d.start_key);
    std::string to = c.delete_range().end();
    if (!d.end_key.empty() && (to.empty() || d.end_key < to)) to = d.end_key;
    RangeWriteResult r{Status::Ok(), *closed};
    r.covered_end = to;
    if (!to.empty() && from >= to) return r;
    ASSIGN_OR_RETURN(std::vector<std::string> live, LiveKeys(from, to, *pending));
    if (live.empty()) return r;
    // Every key at one timestamp: the range's part of the delete happens at
    // one instant.
    r.timestamp = next_ts();
    for (const std::string& key : live)
      write(key, keys::VersionValue{true, {}}, r.timestamp);
    r.deleted = live.size();
    return r;
  }
  return RangeWriteResult{Status::InvalidArgument("range: empty command"), *closed};
}

Result<std::optional<RangeStateMachine::Written>> RangeStateMachine::Newest(
    std::string_view key, const Pending& pending) const {
  if (auto it = pending.find(key); it != pending.end()) return std::optional<Written>(it->second);
  const keys::Span span = keys::KeyEntriesSpan(key);
  std::unique_ptr<storage::EngineIterator> it = engine_->NewIterator();
  it->Seek(span.begin);
  std::optional<Written> out;
  RETURN_IF_ERROR(
      VisitNewest(it.get(), span.end, [&](const keys::DataKey& k, const keys::VersionValue& v) {
        out = Written{k.ts, v};
        return false;
      }));
  return out;
}

Result<bool> RangeStateMachine::Holds(std::string_view key, const kvpb::Precondition& p,
                                      const Pending& pending) const {
  ASSIGN_OR_RETURN(std::optional<Written> newest, Newest(key, pending));
  const bool live = newest.has_value() && !newest->value.tombstone;
  switch (p.kind_case()) {
    case kvpb::Precondition::kAbsent:
      return !live;
    case kvpb::Precondition::kValue:
      return live && newest->value.value == p.value();
    case kvpb::Precondition::kTimestamp:
      return live && newest->ts == Timestamp{p.timestamp().wall_nanos(), p.timestamp().logical()};
    case kvpb::Precondition::KIND_NOT_SET:
      break;
  }
  return true;
}

Result<std::vector<std::string>> RangeStateMachine::LiveKeys(const std::string& start,
                                                             const std::string& end,
                                                             const Pending& pending) const {
  std::vector<std::string> out;
  const keys::Span span = keys::DataSpan(start, end);
  std::unique_ptr<storage::EngineIterator> it = engine_->NewIterator();
  it->Seek(span.begin);
  RETURN_IF_ERROR(
      VisitNewest(it.get(), span.end, [&](const keys::DataKey& k, const keys::VersionValue& v) {
        // What this batch wrote is newer than what the engine holds.
        if (pending.find(k.user_key) == pending.end() && !v.tombstone) out.push_back(k.user_key);
        return true;
      }));
  for (auto it2 = pending.lower_bound(start);
       it2 != pending.end() && (end.empty() || it2->first < end); ++it2) {
    if (!it2->second.value.tombstone) out.push_back(it2->first);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// ---- reads ----

Result<std::optional<RangeValue>> RangeStateMachine::Get(std::string_view key) const {
  const keys::RangeDescriptor d = descriptor();
  if (!initialized() || !d.ContainsKey(key)) return OutsideRange(key, d);
  if (d.frozen_into != 0) return Frozen(d);
  const keys::Span span = keys::KeyEntriesSpan(key);
  std::unique_ptr<storage::EngineIterator> it = engine_->NewIterator();
  it->Seek(span.begin);
  std::optional<RangeValue> out;
  RETURN_IF_ERROR(
      VisitNewest(it.get(), span.end, [&](const keys::DataKey& k, const keys::VersionValue& v) {
        if (!v.tombstone) out = RangeValue{k.user_key, v.value, k.ts};
        return false;
      }));
  return out;
}

keys::AppliedState RangeStateMachine::applied_state() const {
  std::lock_guard<std::mutex> lock(mu_);
  return applied_;
}

uint64_t RangeStateMachine::DataBytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return applied_.data_bytes;
}

Result<std::optional<std::string>> RangeStateMachine::MiddleKey() const {
  const keys::RangeDescriptor d = descriptor();
  const keys::Span span = keys::DataSpan(d.start_key, d.end_key);
  std::shared_ptr<const storage::EngineSnapshot> snap = engine_->GetSnapshot();
  // Two passes over one snapshot: the total, then the key where half of it
  // is behind. Every version of a key stays on the key's side.
  auto walk = [&](const std::function<bool(std::string_view, uint64_t)>& visit) {
    return WalkBytes(engine_->NewIterator(snap.get()).get(), span, visit);
  };
  uint64_t total = 0;
  RETURN_IF_ERROR(walk([&](std::string_view, uint64_t bytes) {
    total = bytes;
    return true;
  }));
  std::optional<std::string> middle;
  Status bad;
  RETURN_IF_ERROR(walk([&](std::string_view key, uint64_t bytes) {
    if (bytes * 2 < total) return true;
    Result<keys::DataKey> k = keys::DecodeDataKey(key);
    if (!k.ok()) {
      bad = k.status();
      return false;
    }
    if (k->user_key == d.start_key) return true;  // the first key stays
    middle = std::move(k->user_key);
    return false;
  }));
  RETURN_IF_ERROR(bad);
  return middle;
}

Result<std::vector<RangeValue>> RangeStateMachine::Scan(std::string_view start,
                                                        std::string_view end, size_t limit,
                                                        bool* more,
                                                        keys::RangeDescriptor* used) const {
  const keys::RangeDescriptor d = descriptor();
  if (used != nullptr) *used = d;
  if (!initialized()) {
    return Status::OutOfRange(fmt::format("range {} has no data here yet", range_id_));
  }
  if (d.frozen_into != 0) return Frozen(d);
  std::string from = std::max(std::string(start), d.start_key);
  std::string to(end);
  if (!d.end_key.empty() && (to.empty() || d.end_key < to)) to = d.end_key;
  *more = false;
  std::vector<RangeValue> out;
  if (!to.empty() && from >= to) return out;
  const keys::Span span = keys::DataSpan(from, to);
  std::unique_ptr<storage::EngineIterator> it = engine_->NewIterator();
  it->Seek(span.begin);
  RETURN_IF_ERROR(
      VisitNewest(it.get(), span.end, [&](const keys::DataKey& k, const keys::VersionValue& v) {
        if (v.tombstone) return true;
        if (out.size() == limit) {
          *more = true;
          return false;
        }
        out.push_back(RangeValue{k.user_key, v.value, k.ts});
        return true;
      }));
  return out;
}

// ---- snapshots ----

std::vector<std::pair<std::string, std::string>> RangeStateMachine::SpanPairs(
    const keys::RangeDescriptor& d) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const keys::Span& s : keys::ReplicatedSpans(d))
    out.emplace_back(s.begin, s.end);
  return out;
}

Result<std::unique_ptr<SnapshotSource>> RangeStateMachine::NewSnapshot() {
  std::shared_ptr<const storage::EngineSnapshot> snap = engine_->GetSnapshot();
  ASSIGN_OR_RETURN(std::optional<std::string> a,
                   engine_->Get(keys::AppliedStateKey(range_id_), snap.get()));
  ASSIGN_OR_RETURN(std::optional<std::string> c,
                   engine_->Get(keys::RaftConfigKey(range_id_), snap.get()));
  ASSIGN_OR_RETURN(std::optional<std::string> d,
                   engine_->Get(keys::RangeDescriptorKey(range_id_), snap.get()));
  if (!a || !c || !d) {
    return Status::Corruption(fmt::format("range {}: no state to snapshot", range_id_));
  }
  ASSIGN_OR_RETURN(keys::AppliedState applied, keys::DecodeAppliedState(*a));
  ASSIGN_OR_RETURN(keys::RaftConfig config, keys::DecodeRaftConfig(*c));
  ASSIGN_OR_RETURN(keys::RangeDescriptor descriptor, keys::DecodeRangeDescriptor(*d));
  auto writer = mvcc::SnapshotWriter::ForSpans(
      engine_, std::move(snap), mvcc::SnapshotId{range_id_, applied.index, applied.term},
      SpanPairs(descriptor));
  return NewWriterSnapshotSource(std::move(writer), FromRaftConfig(config));
}

Status RangeStateMachine::InstallSnapshot(const std::string& path) {
  if (removed()) return Status::Ok();
  // The image names its own descriptor; its spans are what it replaces.
  std::vector<std::pair<std::string, std::string>> records;
  mvcc::SnapshotId id;
  RETURN_IF_ERROR(
      mvcc::ReadSnapshotFile(fs_, path, &id, [&](std::string_view k, std::string_view v) {
        records.emplace_back(k, v);
        return Status::Ok();
      }));
  if (id.group != range_id_) {
    return Status::Corruption(fmt::format("{}: a snapshot of range {} is not one of range {}", path,
                                          id.group, range_id_));
  }
  const std::string descriptor_key = keys::RangeDescriptorKey(range_id_);
  auto d = std::find_if(records.begin(), records.end(),
                        [&](const auto& r) { return r.first == descriptor_key; });
  if (d == records.end()) return Status::Corruption(path + ": the image has no descriptor");
  ASSIGN_OR_RETURN(keys::RangeDescriptor descriptor, keys::DecodeRangeDescriptor(d->second));
  const std::vector<keys::Span> spans = keys::ReplicatedSpans(descriptor);
  std::unique_ptr<storage::EngineBatch> batch = engine_->NewBatch();
  for (const keys::Span& s : spans)
    batch->DeleteRange(s.begin, s.end);
  for (const auto& [k, v] : records) {
    if (std::none_of(spans.begin(), spans.end(),
                     [&](const keys::Span& s) { return s.Contains(k); })) {
      return Status::Corruption(path + ": a record outside the range's spans");
    }
    batch->Put(k, v);
  }
  RETURN_IF_ERROR(engine_->Write(batch.get(), /*sync=*/true));
  const keys::RangeDescriptor before = this->descriptor();
  if (initialized() && !descriptor.end_key.empty() &&
      (before.end_key.empty() || descriptor.end_key < before.end_key)) {
    // This replica missed splits: the ranges split off are not created
    // here by the snapshot (docs/SERVER.md, "Not yet").
    LOG_WARN(
        "range {}: a snapshot narrowed it from [\"{}\", \"{}\") to [\"{}\", \"{}\"); the "
        "ranges split off meanwhile have no replica on this node",
        range_id_, before.start_key, before.end_key, descriptor.start_key, descriptor.end_key);
  }
  RETURN_IF_ERROR(Load(descriptor));
  if (on_install_) on_install_();
  return Status::Ok();
}

}  // namespace conclave::server
