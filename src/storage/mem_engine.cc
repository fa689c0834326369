// MemEngine (engine.h): every version of every key in one ordered map, as
// LevelDB's memtable keeps them, plus what a crash would keep.
//
//   - Entries sort by user key ascending, then by sequence number
//     descending, so a key's newest version comes first. A version is a
//     value or a deletion marker.
//   - Every Write takes the next sequence number; all of a batch's writes
//     carry it (its ops are applied in order, so a DeleteRange hides only
//     what came before it and a later put of the same key replaces its
//     marker). A reader at sequence s sees, for each key, its newest
//     version at or below s, unless that is a deletion.
//   - A snapshot is a sequence number registered as live; an iterator
//     without one registers its own, as RocksDB's implicit snapshot.
//   - Durability is a sequence number too: batches at or below synced_seq_
//     survive a crash. Crash keeps the unsynced batches up to a random one
//     and erases every version written after it.
//   - Versions shadowed at or below the horizon (the oldest live snapshot,
//     and never past the synced sequence, since a crash may drop the newer
//     version) are dropped from time to time, so overwriting a key over and
//     over keeps memory bounded as long as syncs come.
//
// ApproximateBytes counts the key and value bytes of every version held,
// shadowed ones included until they are dropped.
//
// Thread-safety: one mutex guards the map; each read or write holds it for
// its whole duration, which is what makes a batch atomic to readers.
// Iterators copy the entry they stand on and find the next one afresh, so
// writes meanwhile cannot invalidate them.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <map>
#include <mutex>
#include <set>
#include <utility>
#include <vector>

#include "base/assert.h"
#include "storage/engine.h"

namespace conclave::storage {
namespace {

// Sequences start at 1; a lookup at 0 lands past every version of a key and
// one at kNewest on its newest.
constexpr uint64_t kNewest = std::numeric_limits<uint64_t>::max();
// The map is swept for shadowed versions once it has grown by this many
// entries and by as many as it held after the previous sweep.
constexpr size_t kMinEntriesBetweenSweeps = 1024;

enum class OpType { kPut, kDelete, kDeleteRange };

struct BatchOp {
  OpType type;
  std::string key;  // kDeleteRange: the range's begin
  std::string arg;  // kPut: the value; kDeleteRange: the range's end
};

// One version of a key.
struct Version {
  bool deleted = false;
  std::string value;
};

struct VersionKey {
  std::string user_key;
  uint64_t seq;
};

struct LookupKey {
  std::string_view user_key;
  uint64_t seq;
};

struct VersionOrder {
  using is_transparent = void;
  template <typename A, typename B>
  bool operator()(const A& a, const B& b) const {
    const int c = std::string_view(a.user_key).compare(b.user_key);
    if (c != 0) return c < 0;
    return a.seq > b.seq;
  }
};

// The engine's state. Public methods lock.
class VersionTable {
 public:
  Result<std::optional<std::string>> Get(std::string_view key, uint64_t seq) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = versions_.lower_bound(LookupKey{key, seq});
    if (it == versions_.end() || it->first.user_key != key || it->second.deleted) {
      return std::optional<std::string>();
    }
    return std::optional<std::string>(it->second.value);
  }

  // The first key at or after `from` (strictly after, if `after`) live at
  // `seq`, copied out; false when there is none.
  bool Find(std::string_view from, bool after, uint64_t seq, std::string* key,
            std::string* value) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = FindLocked(from, after, seq);
    if (it == versions_.end()) return false;
    *key = it->first.user_key;
    *value = it->second.value;
    return true;
  }

  // Registers the latest sequence as a live snapshot and returns it.
  uint64_t Acquire() {
    std::lock_guard<std::mutex> lock(mu_);
    snapshots_.insert(last_seq_);
    return last_seq_;
  }
  void Release(uint64_t seq) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = snapshots_.find(seq);
    CHECK(it != snapshots_.end());
    snapshots_.erase(it);
  }

  void Apply(std::vector<BatchOp> ops, bool sync) {
    std::lock_guard<std::mutex> lock(mu_);
    const uint64_t seq = ++last_seq_;
    for (BatchOp& op : ops) {
      switch (op.type) {
        case OpType::kPut:
          Insert(std::move(op.key), seq, Version{false, std::move(op.arg)});
          break;
        case OpType::kDelete:
          Insert(std::move(op.key), seq, Version{true, {}});
          break;
        case OpType::kDeleteRange:
          DeleteRangeLocked(op.key, op.arg, seq);
          break;
      }
    }
    if (sync) synced_seq_ = last_seq_;
    MaybeDropShadowed();
  }

  void Sync() {
    std::lock_guard<std::mutex> lock(mu_);
    synced_seq_ = last_seq_;
    MaybeDropShadowed();
  }

  void Compact() {
    std::lock_guard<std::mutex> lock(mu_);
    DropShadowed();
  }

  uint64_t bytes() const {
    std::lock_guard<std::mutex> lock(mu_);
    return bytes_;
  }

  uint64_t unsynced_batches() const {
    std::lock_guard<std::mutex> lock(mu_);
    return last_seq_ - synced_seq_;
  }

  void Crash(Random& random) {
    std::lock_guard<std::mutex> lock(mu_);
    const uint64_t survivors = random.Uniform(last_seq_ - synced_seq_ + 1);
    const uint64_t cut = synced_seq_ + survivors;
    for (auto it = versions_.begin(); it != versions_.end();) {
      it = it->first.seq > cut ? Erase(it) : std::next(it);
    }
    // What survived is on disk now. Sequences go on from last_seq_, so the
    // lost batches' numbers are never reused.
    synced_seq_ = last_seq_;
  }

 private:
  using Map = std::map<VersionKey, Version, VersionOrder>;

  Map::const_iterator FindLocked(std::string_view from, bool after, uint64_t seq) const {
    auto it = versions_.lower_bound(LookupKey{from, after ? 0 : kNewest});
    while (it != versions_.end()) {
      const VersionKey& k = it->first;
      if (k.seq > seq) {
        it = versions_.lower_bound(LookupKey{k.user_key, seq});
      } else if (it->second.deleted) {
        it = versions_.lower_bound(LookupKey{k.user_key, 0});
      } else {
        return it;
      }
    }
    return it;
  }

  void Insert(std::string key, uint64_t seq, Version version) {
    auto [it, inserted] = versions_.try_emplace(VersionKey{std::move(key), seq});
    if (inserted) {
      bytes_ += it->first.user_key.size();
    } else {
      bytes_ -= it->second.value.size();
    }
    bytes_ += version.value.size();
    it->second = std::move(version);
  }

  Map::iterator Erase(Map::iterator it) {
    bytes_ -= it->first.user_key.size() + it->second.value.size();
    return versions_.erase(it);
  }

  // Marks deleted, at `seq`, every key in [begin, end) live at `seq`: what
  // the batch's earlier ops left included, its later ops not yet applied.
  void DeleteRangeLocked(std::string_view begin, std::string_view end, uint64_t seq) {
    std::vector<std::string> live;
    for (auto it = FindLocked(begin, false, seq);
         it != versions_.end() && std::string_view(it->first.user_key) < end;
         it = FindLocked(it->first.user_key, true, seq)) {
      live.push_back(it->first.user_key);
    }
    for (std::string& key : live)
      Insert(std::move(key), seq, Version{true, {}});
  }

  // Readers at the horizon or later, and any crash, see nothing older.
  uint64_t Horizon() const {
    return snapshots_.empty() ? synced_seq_ : std::min(synced_seq_, *snapshots_.begin());
  }

  void MaybeDropShadowed() {
    if (versions_.size() >= 2 * entries_after_sweep_ + kMinEntriesBetweenSweeps) DropShadowed();
  }

  // For every key, keeps the versions above the horizon and the newest at
  // or below it (unless that is a deletion: with nothing older left it
  // hides nothing).
  void DropShadowed() {
    const uint64_t horizon = Horizon();
    auto it = versions_.begin();
    while (it != versions_.end()) {
      const std::string_view key = it->first.user_key;
      auto seen = it;
      while (seen != versions_.end() && seen->first.user_key == key && seen->first.seq > horizon) {
        ++seen;
      }
      if (seen == versions_.end() || seen->first.user_key != key) {
        it = seen;
        continue;
      }
      auto older = std::next(seen);
      while (older != versions_.end() && older->first.user_key == key)
        older = Erase(older);
      it = seen->second.deleted ? Erase(seen) : older;
    }
    entries_after_sweep_ = versions_.size();
  }

  mutable std::mutex mu_;
  Map versions_;
  uint64_t last_seq_ = 0;
  uint64_t synced_seq_ = 0;
  // Sequences of live snapshots, implicit ones of iterators included.
  std::multiset<uint64_t> snapshots_;
  uint64_t bytes_ = 0;
  size_t entries_after_sweep_ = 0;
};

class MemSnapshot final : public EngineSnapshot {
 public:
  explicit MemSnapshot(VersionTable* table) : table_(table), seq_(table->Acquire()) {}
  ~MemSnapshot() override { table_->Release(seq_); }
  MemSnapshot(const MemSnapshot&) = delete;
  MemSnapshot& operator=(const MemSnapshot&) = delete;

  const VersionTable* table() const { return table_; }
  uint64_t seq() const { return seq_; }

 private:
  VersionTable* table_;
  uint64_t seq_;
};

class MemIterator final : public EngineIterator {
 public:
  // `pin`, when set, is the implicit snapshot that keeps `seq` alive.
  MemIterator(const VersionTable* table, uint64_t seq, std::shared_ptr<const EngineSnapshot> pin)
      : table_(table), seq_(seq), pin_(std::move(pin)) {}

  void Seek(std::string_view target) override {
    valid_ = table_->Find(target, /*after=*/false, seq_, &key_, &value_);
  }
  bool Valid() const override { return valid_; }
  void Next() override {
    CHECK(valid_);
    std::string current;
    current.swap(key_);
    valid_ = table_->Find(current, /*after=*/true, seq_, &key_, &value_);
  }
  std::string_view key() const override { return key_; }
  std::string_view value() const override { return value_; }
  Status status() const override { return Status::Ok(); }

 private:
  const VersionTable* table_;
  uint64_t seq_;
  std::shared_ptr<const EngineSnapshot> pin_;
  bool valid_ = false;
  std::string key_;
  std::string value_;
};

// The batch's own writes: each key's last one (nullopt: a delete).
using BatchIndex = std::map<std::string, std::optional<std::string>, std::less<>>;

// Reads through a batch: its index merged over an iterator of the engine,
// the index winning on equal keys and its deletes hiding the engine's keys.
// The batch must not change while this is in use.
class BatchIterator final : public EngineIterator {
 public:
  BatchIterator(const BatchIndex* index, std::unique_ptr<EngineIterator> base)
      : index_(index), base_(std::move(base)), delta_(index->end()) {}

  void Seek(std::string_view target) override {
    delta_ = index_->lower_bound(target);
    base_->Seek(target);
    Settle();
  }
  bool Valid() const override { return valid_ && base_->status().ok(); }
  void Next() override {
    CHECK(valid_);
    if (at_delta_) {
      if (base_->Valid() && base_->key() == delta_->first) base_->Next();
      ++delta_;
    } else {
      base_->Next();
    }
    Settle();
  }
  std::string_view key() const override { return at_delta_ ? delta_->first : base_->key(); }
  std::string_view value() const override { return at_delta_ ? *delta_->second : base_->value(); }
  Status status() const override { return base_->status(); }

 private:
  // Moves to the smaller of the two positions, past the batch's deletes.
  void Settle() {
    while (true) {
      const bool delta_valid = delta_ != index_->end();
      const bool base_valid = base_->Valid();
      if (!delta_valid && !base_valid) {
        valid_ = false;
        return;
      }
      valid_ = true;
      if (!delta_valid || (base_valid && base_->key() < delta_->first)) {
        at_delta_ = false;
        return;
      }
      if (delta_->second.has_value()) {
        at_delta_ = true;
        return;
      }
      if (base_valid && base_->key() == delta_->first) base_->Next();
      ++delta_;
    }
  }

  const BatchIndex* index_;
  std::unique_ptr<EngineIterator> base_;
  BatchIndex::const_iterator delta_;
  bool valid_ = false;
  bool at_delta_ = false;
};

class MemBatch final : public EngineBatch {
 public:
  MemBatch(VersionTable* table, const Engine* engine) : table_(table), engine_(engine) {}

  void Put(std::string_view key, std::string_view value) override {
    ops_.push_back(BatchOp{OpType::kPut, std::string(key), std::string(value)});
    Index(key, std::string(value));
  }
  void Delete(std::string_view key) override {
    ops_.push_back(BatchOp{OpType::kDelete, std::string(key), {}});
    Index(key, std::nullopt);
  }
  void DeleteRange(std::string_view begin, std::string_view end) override {
    ops_.push_back(BatchOp{OpType::kDeleteRange, std::string(begin), std::string(end)});
  }

  Result<std::optional<std::string>> Get(std::string_view key) override {
    if (auto it = index_.find(key); it != index_.end()) return it->second;
    return table_->Get(key, kNewest);
  }
  std::unique_ptr<EngineIterator> NewIterator() override {
    return std::make_unique<BatchIterator>(&index_, engine_->NewIterator());
  }

  void SetSavePoint() override { save_points_.push_back(SavePoint{ops_.size(), undo_.size()}); }
  void RollbackToSavePoint() override {
    CHECK_MSG(!save_points_.empty(), "mem batch: rollback without a save point");
    const SavePoint sp = save_points_.back();
    save_points_.pop_back();
    ops_.resize(sp.ops);
    while (undo_.size() > sp.undo) {
      Undo& u = undo_.back();
      if (u.previous.has_value()) {
        index_.insert_or_assign(std::move(u.key), std::move(*u.previous));
      } else {
        index_.erase(u.key);
      }
      undo_.pop_back();
    }
  }
  void PopSavePoint() override {
    CHECK_MSG(!save_points_.empty(), "mem batch: PopSavePoint without a save point");
    save_points_.pop_back();
    // An enclosing save point may still roll these writes back.
    if (save_points_.empty()) undo_.clear();
  }

  size_t Count() const override { return ops_.size(); }

  const VersionTable* table() const { return table_; }
  std::vector<BatchOp> TakeOps() { return std::move(ops_); }

 private:
  // How to put back an index entry: its value before (nullopt: the key was
  // not in the index).
  struct Undo {
    std::string key;
    std::optional<std::optional<std::string>> previous;
  };
  struct SavePoint {
    size_t ops;
    size_t undo;
  };

  void Index(std::string_view key, std::optional<std::string> entry) {
    auto it = index_.find(key);
    if (!save_points_.empty()) {
      undo_.push_back(Undo{std::string(key), it == index_.end()
                                                 ? std::optional<std::optional<std::string>>()
                                                 : std::optional(it->second)});
    }
    if (it == index_.end()) {
      index_.emplace(std::string(key), std::move(entry));
    } else {
      it->second = std::move(entry);
    }
  }

  VersionTable* table_;
  const Engine* engine_;
  // Every op in order: what Write applies.
  std::vector<BatchOp> ops_;
  BatchIndex index_;
  std::vector<Undo> undo_;
  std::vector<SavePoint> save_points_;
};

}  // namespace

class MemEngine::Impl {
 public:
  VersionTable table;

  uint64_t SeqOf(const EngineSnapshot* snapshot) const {
    const auto* mem = dynamic_cast<const MemSnapshot*>(snapshot);
    CHECK_MSG(mem != nullptr && mem->table() == &table,
              "mem engine: a snapshot from another engine");
    return mem->seq();
  }
};

MemEngine::MemEngine() : impl_(std::make_unique<Impl>()) {}

MemEngine::~MemEngine() = default;

Result<std::optional<std::string>> MemEngine::Get(std::string_view key,
                                                  const EngineSnapshot* snapshot) const {
  return impl_->table.Get(key, snapshot == nullptr ? kNewest : impl_->SeqOf(snapshot));
}

std::unique_ptr<EngineIterator> MemEngine::NewIterator(const EngineSnapshot* snapshot) const {
  if (snapshot != nullptr) {
    return std::make_unique<MemIterator>(&impl_->table, impl_->SeqOf(snapshot), nullptr);
  }
  auto pin = std::make_shared<MemSnapshot>(&impl_->table);
  const uint64_t seq = pin->seq();
  return std::make_unique<MemIterator>(&impl_->table, seq, std::move(pin));
}

std::shared_ptr<const EngineSnapshot> MemEngine::GetSnapshot() const {
  return std::make_shared<MemSnapshot>(&impl_->table);
}

std::unique_ptr<EngineBatch> MemEngine::NewBatch() {
  return std::make_unique<MemBatch>(&impl_->table, this);
}

Status MemEngine::Write(EngineBatch* batch, bool sync) {
  auto* mem_batch = dynamic_cast<MemBatch*>(batch);
  CHECK_MSG(mem_batch != nullptr && mem_batch->table() == &impl_->table,
            "mem engine: a batch from another engine");
  impl_->table.Apply(mem_batch->TakeOps(), sync);
  return Status::Ok();
}

Status MemEngine::Sync() {
  impl_->table.Sync();
  return Status::Ok();
}

Status MemEngine::Compact() {
  impl_->table.Compact();
  return Status::Ok();
}

uint64_t MemEngine::ApproximateBytes() const {
  return impl_->table.bytes();
}

void MemEngine::Crash(Random& random) {
  impl_->table.Crash(random);
}

uint64_t MemEngine::unsynced_batches() const {
  return impl_->table.unsynced_batches();
}

}  // namespace conclave::storage
