#include "mvcc/store.h"

#include <fmt/format.h>

#include <algorithm>

#include "base/crc32c.h"
#include "mvcc/keys.h"

namespace conclave::mvcc {
namespace {

// An engine error with what the store was doing; its code unchanged.
Status Annotate(const Status& s, std::string_view what) {
  if (s.ok()) return s;
  return Status(s.code(), fmt::format("{}: {}", what, s.message()));
}

template <typename T>
Result<T> Annotate(Result<T> r, std::string_view what) {
  if (r.ok()) return r;
  return Annotate(r.status(), what);
}

// Resolves the revision a read runs at, or etcd's error for it.
Result<int64_t> ReadRevision(int64_t requested, int64_t current, int64_t compacted) {
  if (requested > current) return errors::FutureRevision();
  const int64_t rev = requested <= 0 ? current : requested;
  if (rev < compacted) return errors::Compacted();
  return rev;
}

bool IsFromKey(const std::string& range_end) {
  return range_end.size() == 1 && range_end[0] == 0;
}

// Visits the newest live version at or before `rev` of every key in the
// request's range, in key order. `visit` returns false to stop.
template <typename Visit>
Status ScanLive(storage::EngineIterator* it, uint64_t group, const std::string& key,
                const std::string& range_end, int64_t rev, Visit visit) {
  const bool single = range_end.empty();
  const bool to_end = IsFromKey(range_end);
  const std::string space_end = keys::VersionSpaceEnd(group);
  it->Seek(keys::VersionPrefix(group, key));
  while (it->Valid()) {
    const std::string_view raw = it->key();
    if (raw.compare(space_end) >= 0) break;
    auto decoded = keys::DecodeVersionKey(raw);
    if (!decoded) return Status::Corruption("mvcc: malformed version key");
    const std::string& user_key = decoded->user_key;
    if (single && user_key != key) break;
    if (!single && !to_end && user_key >= range_end) break;
    if (decoded->rev.main > rev) {
      // Skip to this key's newest version at or before rev.
      it->Seek(keys::VersionSeekKey(group, user_key, rev));
      if (!it->Valid()) break;
      auto again = keys::DecodeVersionKey(it->key());
      if (!again || again->user_key != user_key) continue;  // no such version: next key
      decoded = std::move(again);
    }
    auto value = keys::DecodeVersionValue(it->value());
    if (!value) return Status::Corruption("mvcc: malformed version value");
    if (!value->tombstone) {
      KeyValue kv{user_key,       value->create_revision, decoded->rev.main,
                  value->version, value->value,           value->lease};
      if (!visit(std::move(kv))) return Status::Ok();
    }
    it->Seek(keys::VersionPrefixEnd(group, user_key));
  }
  return Annotate(it->status(), "mvcc range");
}

int64_t SortField(const KeyValue& kv, SortTarget t) {
  switch (t) {
    case SortTarget::kVersion:
      return kv.version;
    case SortTarget::kCreate:
      return kv.create_revision;
    case SortTarget::kMod:
      return kv.mod_revision;
    default:
      return 0;
  }
}

Result<RangeResponse> RangeOver(storage::EngineIterator* it, uint64_t group, const RangeRequest& r,
                                int64_t current, int64_t compacted) {
  ASSIGN_OR_RETURN(int64_t rev, ReadRevision(r.revision, current, compacted));
  const bool filtered =
      r.min_mod_revision || r.max_mod_revision || r.min_create_revision || r.max_create_revision;
  // Sorting or filtering needs every key first; otherwise one more than the
  // limit tells whether there is more.
  // A limit <= 0 means no limit.
  const int64_t limit = std::max<int64_t>(r.limit, 0);
  int64_t fetch = (r.sort_order != SortOrder::kNone || filtered) ? 0 : limit;
  if (fetch > 0) fetch += 1;
  RangeResponse resp;
  resp.revision = current;
  int64_t count = 0;
  RETURN_IF_ERROR(ScanLive(it, group, r.key, r.range_end, rev, [&](KeyValue kv) {
    ++count;
    if (!r.count_only && (fetch == 0 || static_cast<int64_t>(resp.kvs.size()) < fetch)) {
      resp.kvs.push_back(std::move(kv));
    }
    return true;
  }));
  resp.count = count;
  if (filtered) {
    auto drop = [&](const KeyValue& kv) {
      return (r.max_mod_revision && kv.mod_revision > r.max_mod_revision) ||
             (r.min_mod_revision && kv.mod_revision < r.min_mod_revision) ||
             (r.max_create_revision && kv.create_revision > r.max_create_revision) ||
             (r.min_create_revision && kv.create_revision < r.min_create_revision);
    };
    resp.kvs.erase(std::remove_if(resp.kvs.begin(), resp.kvs.end(), drop), resp.kvs.end());
  }
  SortOrder order = r.sort_order;
  // Results come in key order; any other target sorts ascending by default.
  if (r.sort_target != SortTarget::kKey && order == SortOrder::kNone) order = SortOrder::kAscend;
  if (order != SortOrder::kNone &&
      !(r.sort_target == SortTarget::kKey && order == SortOrder::kAscend)) {
    auto less = [&](const KeyValue& a, const KeyValue& b) {
      if (r.sort_target == SortTarget::kKey) return a.key < b.key;
      if (r.sort_target == SortTarget::kValue) return a.value < b.value;
      return SortField(a, r.sort_target) < SortField(b, r.sort_target);
    };
    if (order == SortOrder::kAscend) {
      std::stable_sort(resp.kvs.begin(), resp.kvs.end(), less);
    } else {
      std::stable_sort(resp.kvs.begin(), resp.kvs.end(),
                       [&](const KeyValue& a, const KeyValue& b) { return less(b, a); });
    }
  }
  if (r.limit > 0 && static_cast<int64_t>(resp.kvs.size()) > r.limit) {
    resp.kvs.resize(static_cast<size_t>(r.limit));
    resp.more = true;
  }
  if (r.keys_only) {
    for (KeyValue& kv : resp.kvs)
      kv.value.clear();
  }
  return resp;
}

bool CompareHolds(const Compare& c, const KeyValue& kv) {
  int cmp = 0;
  auto three_way = [](int64_t a, int64_t b) { return a < b ? -1 : (a > b ? 1 : 0); };
  switch (c.target) {
    case Compare::Target::kVersion:
      cmp = three_way(kv.version, c.version);
      break;
    case Compare::Target::kCreate:
      cmp = three_way(kv.create_revision, c.create_revision);
      break;
    case Compare::Target::kMod:
      cmp = three_way(kv.mod_revision, c.mod_revision);
      break;
    case Compare::Target::kLease:
      cmp = three_way(kv.lease, c.lease);
      break;
    case Compare::Target::kValue: {
      const int v = kv.value.compare(c.value);
      cmp = v < 0 ? -1 : (v > 0 ? 1 : 0);
      break;
    }
  }
  switch (c.result) {
    case Compare::Result::kEqual:
      return cmp == 0;
    case Compare::Result::kGreater:
      return cmp > 0;
    case Compare::Result::kLess:
      return cmp < 0;
    case Compare::Result::kNotEqual:
      return cmp != 0;
  }
  return false;
}

}  // namespace

storage::RocksEngineOptions StoreRocksEngineOptions() {
  storage::RocksEngineOptions options;
  // Watch-history keys of a group arrive in increasing order. Naming their
  // shared prefix lets the memtable insert each one next to the previous one
  // instead of searching its skiplist from the top (in a profile of puts,
  // memtable inserts were the largest single cost of applying).
  options.increasing_key_prefix = [](std::string_view key) -> std::optional<size_t> {
    if (!keys::IsEventKey(key)) return std::nullopt;
    return keys::kEventSpacePrefixBytes;
  };
  // write_buffer_bytes keeps the engine's default, half RocksDB's own: the
  // Raft log already buffers recent writes, and the key index costs memory
  // too. Peak memory of a member holding 1M keys of 256 B drops by up to two
  // memtables' difference.
  return options;
}

// ---- Store ----

Store::Store(storage::Engine* engine, const StoreOptions& options)
    : engine_(engine), options_(options) {}

Store::~Store() = default;

Result<std::unique_ptr<Store>> Store::Open(storage::Engine* engine, const StoreOptions& options) {
  CHECK(engine != nullptr);
  std::unique_ptr<Store> store(new Store(engine, options));
  RETURN_IF_ERROR(store->LoadMeta());
  RETURN_IF_ERROR(store->LoadLatest());
  return store;
}

Status Store::LoadLatest() {
  latest_.clear();
  std::unique_ptr<storage::EngineIterator> it = engine_->NewIterator();
  const std::string end = keys::VersionSpaceEnd(options_.group);
  // Versions of a key sort newest first: the first one seen is its newest.
  for (it->Seek(keys::VersionSpaceStart(options_.group)); it->Valid();) {
    const std::string_view raw = it->key();
    if (raw.compare(end) >= 0) break;
    auto decoded = keys::DecodeVersionKey(raw);
    if (!decoded) return Status::Corruption("mvcc: malformed version key");
    auto value = keys::DecodeVersionValue(it->value());
    if (!value) return Status::Corruption("mvcc: malformed version value");
    if (!value->tombstone) {
      latest_[decoded->user_key] = Latest{value->create_revision, value->version, value->lease};
    }
    it->Seek(keys::VersionPrefixEnd(options_.group, decoded->user_key));
  }
  return Annotate(it->status(), "mvcc: load key index");
}

void Store::UpdateLatest(const std::vector<Event>& events) {
  for (const Event& e : events) {
    if (e.type == EventType::kDelete) {
      latest_.erase(e.kv.key);
    } else {
      latest_[e.kv.key] = Latest{e.kv.create_revision, e.kv.version, e.kv.lease};
    }
  }
}

Result<StoreMeta> Store::MetaAt(const storage::EngineSnapshot* snapshot) const {
  // Reads one integer into *out, leaving the default when it was never written.
  auto read = [&](std::string_view name, int64_t* out) -> Status {
    ASSIGN_OR_RETURN(
        std::optional<std::string> v,
        Annotate(engine_->Get(keys::MetaKey(options_.group, name), snapshot), "mvcc: read meta"));
    if (v.has_value()) *out = keys::DecodeMetaInt(*v);
    return Status::Ok();
  };
  StoreMeta meta;
  int64_t applied = 0;
  int64_t applied_term = 0;
  RETURN_IF_ERROR(read(keys::kMetaAppliedTerm, &applied_term));
  RETURN_IF_ERROR(read(keys::kMetaRevision, &meta.revision));
  RETURN_IF_ERROR(read(keys::kMetaCompacted, &meta.compacted));
  RETURN_IF_ERROR(read(keys::kMetaAppliedIndex, &applied));
  meta.revision = std::max<int64_t>(meta.revision, 1);
  meta.applied_index = static_cast<uint64_t>(applied);
  meta.applied_term = static_cast<uint64_t>(applied_term);
  return meta;
}

Result<KvHash> Store::HashKV(int64_t revision) const {
  const std::shared_ptr<const storage::EngineSnapshot> snap = engine_->GetSnapshot();
  ASSIGN_OR_RETURN(StoreMeta meta, MetaAt(snap.get()));
  if (revision <= 0) revision = meta.revision;
  if (revision > meta.revision) return errors::FutureRevision();
  if (revision < meta.compacted) return errors::Compacted();
  KvHash out;
  out.revision = revision;
  out.compact_revision = meta.compacted;
  const std::string end = keys::VersionSpaceEnd(options_.group);
  std::unique_ptr<storage::EngineIterator> it = engine_->NewIterator(snap.get());
  uint32_t crc = 0;
  for (it->Seek(keys::VersionSpaceStart(options_.group)); it->Valid(); it->Next()) {
    const std::string_view k = it->key();
    if (k.compare(end) >= 0) break;
    auto decoded = keys::DecodeVersionKey(k);
    if (!decoded) return Status::Corruption("mvcc: malformed version key");
    if (decoded->rev.main > revision) continue;
    crc = Crc32cExtend(crc, k.data(), k.size());
    crc = Crc32cExtend(crc, it->value().data(), it->value().size());
  }
  RETURN_IF_ERROR(Annotate(it->status(), "mvcc: hash"));
  out.hash = crc;
  return out;
}

Result<uint32_t> Store::Hash() const {
  const std::shared_ptr<const storage::EngineSnapshot> snap = engine_->GetSnapshot();
  std::unique_ptr<storage::EngineIterator> it = engine_->NewIterator(snap.get());
  const std::string meta_start = keys::MetaKey(options_.group, "");
  const std::string group_end = keys::GroupPrefix(options_.group + 1);
  uint32_t crc = 0;
  for (it->Seek(keys::GroupPrefix(options_.group)); it->Valid(); it->Next()) {
    const std::string_view k = it->key();
    if (k.compare(group_end) >= 0) break;
    if (k.starts_with(meta_start)) continue;
    crc = Crc32cExtend(crc, k.data(), k.size());
    crc = Crc32cExtend(crc, it->value().data(), it->value().size());
  }
  RETURN_IF_ERROR(Annotate(it->status(), "mvcc: hash"));
  return crc;
}

Result<std::optional<std::string>> Store::GetMeta(std::string_view name,
                                                  const storage::EngineSnapshot* snapshot) const {
  const std::string key = keys::MetaKey(options_.group, std::string(keys::kAppMetaPrefix) += name);
  return Annotate(engine_->Get(key, snapshot), "mvcc: read meta");
}

Result<std::vector<std::pair<std::string, std::string>>> Store::ScanMeta(
    std::string_view prefix) const {
  const std::string start =
      keys::MetaKey(options_.group, std::string(keys::kAppMetaPrefix) += prefix);
  const size_t name_offset = keys::MetaKey(options_.group, keys::kAppMetaPrefix).size();
  std::vector<std::pair<std::string, std::string>> out;
  std::unique_ptr<storage::EngineIterator> it = engine_->NewIterator();
  for (it->Seek(start); it->Valid() && it->key().starts_with(start); it->Next()) {
    out.emplace_back(it->key().substr(name_offset), it->value());
  }
  RETURN_IF_ERROR(Annotate(it->status(), "mvcc: scan meta"));
  return out;
}

Status Store::Sync() {
  return Annotate(engine_->Sync(), "mvcc: sync");
}

Status Store::LoadMeta() {
  ASSIGN_OR_RETURN(StoreMeta meta, MetaAt(nullptr));
  current_rev_.store(meta.revision);
  compact_rev_.store(meta.compacted);
  applied_index_.store(meta.applied_index);
  applied_term_.store(meta.applied_term);
  return Status::Ok();
}

Status Store::ReplaceWith(storage::EngineBatch* batch, uint64_t applied_index) {
  CHECK_MSG(!batch_open_, "mvcc: snapshot install while an apply batch is open");
  batch->Put(keys::MetaKey(options_.group, keys::kMetaAppliedIndex),
             keys::EncodeMetaInt(static_cast<int64_t>(applied_index)));
  RETURN_IF_ERROR(Annotate(engine_->Write(batch, /*sync=*/true), "mvcc: install snapshot"));
  RETURN_IF_ERROR(LoadMeta());
  return LoadLatest();
}

Result<RangeResponse> Store::Range(const RangeRequest& r) const {
  RETURN_IF_ERROR(ValidateRange(r));
  const std::shared_ptr<const storage::EngineSnapshot> snap = engine_->GetSnapshot();
  // Revisions as of the snapshot, not as of now.
  ASSIGN_OR_RETURN(StoreMeta meta, MetaAt(snap.get()));
  std::unique_ptr<storage::EngineIterator> it = engine_->NewIterator(snap.get());
  return RangeOver(it.get(), options_.group, r, meta.revision, meta.compacted);
}

Result<std::vector<Event>> Store::Events(int64_t from, int64_t to, size_t limit) const {
  // One snapshot for the compaction check and the scan, so that a compaction
  // committed meanwhile cannot silently cut the front off the answer.
  const std::shared_ptr<const storage::EngineSnapshot> snap = engine_->GetSnapshot();
  ASSIGN_OR_RETURN(StoreMeta meta, MetaAt(snap.get()));
  // History at the compacted revision itself is kept (a watch may start
  // there, as with etcd); below it, it is gone.
  if (from < meta.compacted) return errors::Compacted();
  std::vector<Event> out;
  std::unique_ptr<storage::EngineIterator> it = engine_->NewIterator(snap.get());
  const std::string end = keys::EventSpaceEnd(options_.group);
  int64_t last_main = 0;
  for (it->Seek(keys::EventKey(options_.group, Revision{from, 0})); it->Valid(); it->Next()) {
    if (it->key().compare(end) >= 0) break;
    auto rev = keys::DecodeEventKey(it->key());
    if (!rev) return Status::Corruption("mvcc: malformed event key");
    if (to > 0 && rev->main > to) break;
    // The limit never splits a revision: callers resume after the last one.
    if (limit && out.size() >= limit && rev->main != last_main) break;
    auto e = keys::DecodeEvent(it->value());
    if (!e) return Status::Corruption("mvcc: malformed event");
    out.push_back(std::move(*e));
    last_main = rev->main;
  }
  RETURN_IF_ERROR(Annotate(it->status(), "mvcc events"));
  return out;
}

std::unique_ptr<ApplyBatch> Store::NewBatch() {
  CHECK_MSG(!batch_open_, "mvcc: a second ApplyBatch while one is open");
  batch_open_ = true;
  return std::unique_ptr<ApplyBatch>(new ApplyBatch(this));
}

Status Store::Commit(std::unique_ptr<ApplyBatch> batch) {
  CHECK(batch && batch->store_ == this);
  const uint64_t g = options_.group;
  storage::EngineBatch* wb = batch->wb_.get();
  wb->Put(keys::MetaKey(g, keys::kMetaRevision), keys::EncodeMetaInt(batch->current_rev_));
  wb->Put(keys::MetaKey(g, keys::kMetaCompacted), keys::EncodeMetaInt(batch->compact_rev_));
  std::unique_ptr<storage::EngineBatch> apart;
  storage::EngineBatch* applied = wb;
  if (options_.test_bug_applied_index_apart) {
    apart = engine_->NewBatch();
    applied = apart.get();
  }
  applied->Put(keys::MetaKey(g, keys::kMetaAppliedIndex),
               keys::EncodeMetaInt(static_cast<int64_t>(batch->applied_index_)));
  applied->Put(keys::MetaKey(g, keys::kMetaAppliedTerm),
               keys::EncodeMetaInt(static_cast<int64_t>(batch->applied_term_)));
  Status s = Annotate(engine_->Write(wb, options_.sync), "mvcc: commit");
  if (s.ok() && apart) s = Annotate(engine_->Write(apart.get(), options_.sync), "mvcc: commit");
  batch_open_ = false;
  if (!s.ok()) return s;
  UpdateLatest(batch->events_);
  current_rev_.store(batch->current_rev_, std::memory_order_release);
  compact_rev_.store(batch->compact_rev_, std::memory_order_release);
  applied_index_.store(batch->applied_index_, std::memory_order_release);
  applied_term_.store(batch->applied_term_, std::memory_order_release);
  return Status::Ok();
}

// ---- ApplyBatch ----

ApplyBatch::ApplyBatch(Store* store)
    : store_(store),
      wb_(store->engine_->NewBatch()),
      current_rev_(store->CurrentRevision()),
      compact_rev_(store->CompactRevision()),
      applied_index_(store->AppliedIndex()),
      applied_term_(store->AppliedTerm()) {}

void ApplyBatch::PutMeta(std::string_view name, std::string_view value) {
  wb_->Put(keys::MetaKey(store_->group(), std::string(keys::kAppMetaPrefix) += name), value);
}

void ApplyBatch::DeleteMeta(std::string_view name) {
  wb_->Delete(keys::MetaKey(store_->group(), std::string(keys::kAppMetaPrefix) += name));
}

Result<std::optional<std::string>> ApplyBatch::GetMeta(std::string_view name) {
  return Annotate(
      wb_->Get(keys::MetaKey(store_->group(), std::string(keys::kAppMetaPrefix) += name)),
      "mvcc: read meta");
}

Result<std::vector<std::pair<std::string, std::string>>> ApplyBatch::ScanMeta(
    std::string_view prefix) {
  const std::string start =
      keys::MetaKey(store_->group(), std::string(keys::kAppMetaPrefix) += prefix);
  const size_t name_offset = keys::MetaKey(store_->group(), keys::kAppMetaPrefix).size();
  std::vector<std::pair<std::string, std::string>> out;
  std::unique_ptr<storage::EngineIterator> it = NewIterator();
  for (it->Seek(start); it->Valid() && it->key().starts_with(start); it->Next()) {
    out.emplace_back(it->key().substr(name_offset), it->value());
  }
  RETURN_IF_ERROR(Annotate(it->status(), "mvcc: scan meta"));
  return out;
}

ApplyBatch::~ApplyBatch() {
  // Dropped without Commit: nothing of it reaches the store.
  if (store_->batch_open_ && wb_) store_->batch_open_ = false;
}

std::unique_ptr<storage::EngineIterator> ApplyBatch::NewIterator() {
  return wb_->NewIterator();
}

Result<ApplyBatch::Found> ApplyBatch::Get(const std::string& key, int64_t rev) {
  Found f;
  std::unique_ptr<storage::EngineIterator> it = NewIterator();
  RETURN_IF_ERROR(ScanLive(it.get(), store_->group(), key, std::string(), rev, [&](KeyValue kv) {
    f.exists = true;
    f.kv = std::move(kv);
    return false;
  }));
  return f;
}

void ApplyBatch::WriteVersion(const std::string& key, Revision rev, const keys::VersionValue& v) {
  const uint64_t g = store_->group();
  wb_->Put(keys::VersionKey(g, key, rev), keys::EncodeVersionValue(v));
  touched_.insert(key);
  Event e;
  e.type = v.tombstone ? EventType::kDelete : EventType::kPut;
  e.kv.key = key;
  e.kv.mod_revision = rev.main;
  if (!v.tombstone) {
    e.kv.create_revision = v.create_revision;
    e.kv.version = v.version;
    e.kv.lease = v.lease;
    e.kv.value = v.value;
  }
  wb_->Put(keys::EventKey(g, rev), keys::EncodeEvent(e));
  events_.push_back(std::move(e));
}

Result<RangeResponse> ApplyBatch::Range(const RangeRequest& r) {
  RETURN_IF_ERROR(ValidateRange(r));
  std::unique_ptr<storage::EngineIterator> it = NewIterator();
  return RangeOver(it.get(), store_->group(), r, current_rev_, compact_rev_);
}

Result<PutResponse> ApplyBatch::Put(const PutRequest& r) {
  RETURN_IF_ERROR(ValidatePut(r));
  pending_main_ = current_rev_ + 1;
  next_sub_ = 0;
  Result<PutResponse> resp = DoPut(r);
  if (resp.ok()) {
    current_rev_ = pending_main_;
    resp->revision = current_rev_;
  }
  return resp;
}

Result<PutResponse> ApplyBatch::DoPut(const PutRequest& r) {
  Found prev;
  if (r.prev_kv || r.ignore_value || touched_.contains(r.key)) {
    ASSIGN_OR_RETURN(prev, Get(r.key, VisibleRevision()));
  } else if (auto it = store_->latest_.find(r.key); it != store_->latest_.end()) {
    // Neither the old value nor this batch's writes matter: the key index
    // answers without reading the engine.
    prev.exists = true;
    prev.kv.create_revision = it->second.create_revision;
    prev.kv.version = it->second.version;
    prev.kv.lease = it->second.lease;
  }
  if ((r.ignore_value || r.ignore_lease) && !prev.exists) return errors::KeyNotFound();
  keys::VersionValue v;
  v.create_revision = prev.exists ? prev.kv.create_revision : pending_main_;
  v.version = prev.exists ? prev.kv.version + 1 : 1;
  v.value = r.ignore_value ? prev.kv.value : r.value;
  v.lease = r.ignore_lease ? prev.kv.lease : r.lease;
  WriteVersion(r.key, Revision{pending_main_, next_sub_++}, v);
  PutResponse resp;
  if (r.prev_kv && prev.exists) {
    resp.has_prev_kv = true;
    resp.prev_kv = std::move(prev.kv);
  }
  return resp;
}

Result<DeleteRangeResponse> ApplyBatch::DeleteRange(const DeleteRangeRequest& r) {
  RETURN_IF_ERROR(ValidateDeleteRange(r));
  pending_main_ = current_rev_ + 1;
  next_sub_ = 0;
  Result<DeleteRangeResponse> resp = DoDeleteRange(r);
  // Deleting nothing is not a change and takes no revision.
  if (resp.ok() && resp->deleted > 0) current_rev_ = pending_main_;
  if (resp.ok()) resp->revision = current_rev_;
  return resp;
}

Result<DeleteRangeResponse> ApplyBatch::DoDeleteRange(const DeleteRangeRequest& r) {
  std::vector<KeyValue> victims;
  {
    std::unique_ptr<storage::EngineIterator> it = NewIterator();
    RETURN_IF_ERROR(ScanLive(it.get(), store_->group(), r.key, r.range_end, VisibleRevision(),
                             [&](KeyValue kv) {
                               victims.push_back(std::move(kv));
                               return true;
                             }));
  }
  DeleteRangeResponse resp;
  for (KeyValue& kv : victims) {
    keys::VersionValue tomb;
    tomb.tombstone = true;
    WriteVersion(kv.key, Revision{pending_main_, next_sub_++}, tomb);
    if (r.prev_kv) resp.prev_kvs.push_back(std::move(kv));
  }
  resp.deleted = static_cast<int64_t>(victims.size());
  return resp;
}

Result<bool> ApplyBatch::EvaluateCompares(const TxnRequest& r) {
  for (const Compare& c : r.compare) {
    std::vector<KeyValue> kvs;
    std::unique_ptr<storage::EngineIterator> it = NewIterator();
    // A read error fails the txn; it must not pass for a false compare.
    RETURN_IF_ERROR(
        ScanLive(it.get(), store_->group(), c.key, c.range_end, current_rev_, [&](KeyValue kv) {
          kvs.push_back(std::move(kv));
          return true;
        }));
    if (kvs.empty()) {
      // A missing key compares as all zeroes, except that a value compare on
      // it always fails (an empty value is still a value).
      if (c.target == Compare::Target::kValue) return false;
      if (!CompareHolds(c, KeyValue{})) return false;
      continue;
    }
    for (const KeyValue& kv : kvs) {
      if (!CompareHolds(c, kv)) return false;
    }
  }
  return true;
}

// Every compare of the txn and of the nested txns on the chosen branches is
// evaluated against the state before the txn runs, in depth-first order.
Status ApplyBatch::ComputePath(const TxnRequest& r, std::vector<bool>* path) {
  ASSIGN_OR_RETURN(const bool ok, EvaluateCompares(r));
  path->push_back(ok);
  for (const RequestOp& op : ok ? r.success : r.failure) {
    if (const auto* t = std::get_if<std::shared_ptr<TxnRequest>>(&op.op)) {
      RETURN_IF_ERROR(ComputePath(**t, path));
    }
  }
  return Status::Ok();
}

// Checks, before anything is written, what would make the txn fail midway.
Status ApplyBatch::CheckTxnReads(const TxnRequest& r, const std::vector<bool>& path, size_t* pos) {
  const bool ok = path[(*pos)++];
  for (const RequestOp& op : ok ? r.success : r.failure) {
    if (const auto* rr = std::get_if<RangeRequest>(&op.op)) {
      RETURN_IF_ERROR(ValidateRange(*rr));
      RETURN_IF_ERROR(ReadRevision(rr->revision, current_rev_, compact_rev_).status());
    } else if (const auto* p = std::get_if<PutRequest>(&op.op)) {
      RETURN_IF_ERROR(ValidatePut(*p));
      if (p->ignore_value || p->ignore_lease) {
        ASSIGN_OR_RETURN(Found prev, Get(p->key, current_rev_));
        if (!prev.exists) return errors::KeyNotFound();
      }
    } else if (const auto* t = std::get_if<std::shared_ptr<TxnRequest>>(&op.op)) {
      RETURN_IF_ERROR(CheckTxnReads(**t, path, pos));
    }
  }
  return Status::Ok();
}

Result<TxnResponse> ApplyBatch::ExecuteTxn(const TxnRequest& r, const std::vector<bool>& path,
                                           size_t* pos) {
  TxnResponse resp;
  resp.succeeded = path[(*pos)++];
  for (const RequestOp& op : resp.succeeded ? r.success : r.failure) {
    ResponseOp out;
    if (const auto* rr = std::get_if<RangeRequest>(&op.op)) {
      std::unique_ptr<storage::EngineIterator> it = NewIterator();
      // Reads inside the txn see its own earlier writes: the store is at the
      // txn's revision once something was written.
      const int64_t rev = VisibleRevision();
      ASSIGN_OR_RETURN(RangeResponse range,
                       RangeOver(it.get(), store_->group(), *rr, rev, compact_rev_));
      out.op = std::move(range);
    } else if (const auto* p = std::get_if<PutRequest>(&op.op)) {
      ASSIGN_OR_RETURN(PutResponse put, DoPut(*p));
      out.op = std::move(put);
    } else if (const auto* d = std::get_if<DeleteRangeRequest>(&op.op)) {
      ASSIGN_OR_RETURN(DeleteRangeResponse del, DoDeleteRange(*d));
      out.op = std::move(del);
    } else {
      const auto& t = std::get<std::shared_ptr<TxnRequest>>(op.op);
      ASSIGN_OR_RETURN(TxnResponse nested, ExecuteTxn(*t, path, pos));
      out.op = std::make_shared<TxnResponse>(std::move(nested));
    }
    resp.responses.push_back(std::move(out));
  }
  return resp;
}

namespace {

// Fills in the revision of every response in a finished txn.
void SetRevisions(TxnResponse* t, int64_t rev) {
  t->revision = rev;
  for (ResponseOp& op : t->responses) {
    std::visit(
        [rev](auto& v) {
          using T = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<T, std::shared_ptr<TxnResponse>>) {
            SetRevisions(v.get(), rev);
          } else {
            v.revision = rev;
          }
        },
        op.op);
  }
}

}  // namespace

Result<TxnResponse> ApplyBatch::Txn(const TxnRequest& r) {
  std::vector<bool> path;
  RETURN_IF_ERROR(ComputePath(r, &path));
  size_t pos = 0;
  RETURN_IF_ERROR(CheckTxnReads(r, path, &pos));
  pending_main_ = current_rev_ + 1;
  next_sub_ = 0;
  pos = 0;
  // The checks above leave only storage errors, and conflicts that
  // ValidateTxn rejects, to fail the txn midway; even then it must leave
  // nothing behind in the batch, which goes on to hold other commands.
  wb_->SetSavePoint();
  const size_t events_before = events_.size();
  Result<TxnResponse> resp = ExecuteTxn(r, path, &pos);
  if (!resp.ok()) {
    wb_->RollbackToSavePoint();
    events_.resize(events_before);
    next_sub_ = 0;
    return resp;
  }
  wb_->PopSavePoint();
  if (next_sub_ > 0) current_rev_ = pending_main_;
  SetRevisions(&resp.value(), current_rev_);
  return resp;
}

Result<int64_t> ApplyBatch::Compact(const CompactionRequest& r) {
  if (r.revision <= compact_rev_) return errors::Compacted();
  if (r.revision > current_rev_) return errors::FutureRevision();
  const uint64_t g = store_->group();
  const int64_t rev = r.revision;
  // Keep, for every key, the newest version at or before rev (unless it is
  // a tombstone) and everything newer; drop the rest.
  {
    std::unique_ptr<storage::EngineIterator> it = NewIterator();
    const std::string end = keys::VersionSpaceEnd(g);
    std::string last_key;
    bool kept_for_key = false;
    bool have_key = false;
    std::vector<std::string> drop;
    for (it->Seek(keys::VersionSpaceStart(g)); it->Valid(); it->Next()) {
      if (it->key().compare(end) >= 0) break;
      auto k = keys::DecodeVersionKey(it->key());
      if (!k) return Status::Corruption("mvcc: malformed version key during compaction");
      if (!have_key || k->user_key != last_key) {
        last_key = k->user_key;
        have_key = true;
        kept_for_key = false;
      }
      if (k->rev.main > rev) continue;
      if (!kept_for_key) {
        kept_for_key = true;
        auto v = keys::DecodeVersionValue(it->value());
        if (v && !v->tombstone) continue;
      }
      drop.emplace_back(it->key());
    }
    for (const std::string& k : drop)
      wb_->Delete(k);
  }
  {
    std::unique_ptr<storage::EngineIterator> it = NewIterator();
    const std::string stop = keys::EventKey(g, Revision{rev, 0});
    std::vector<std::string> drop;
    for (it->Seek(keys::EventSpaceStart(g)); it->Valid(); it->Next()) {
      if (it->key().compare(stop) >= 0) break;
      drop.emplace_back(it->key());
    }
    for (const std::string& k : drop)
      wb_->Delete(k);
  }
  compact_rev_ = rev;
  return current_rev_;
}

}  // namespace conclave::mvcc
