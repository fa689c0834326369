// The Engine on RocksDB (engine.h): one database in a directory, no column
// families, bytewise key order.
//
// Batches are WriteBatchWithIndex (one index entry per key, the last write
// wins), read through GetFromBatchAndDB and NewIteratorWithBase over the
// database's latest state. DeleteRange goes into the underlying WriteBatch
// in order with the other records, so it applies at write time before the
// batch's later puts; the index never sees it, hence reads through the
// batch do not either.
//
// Thread-safety: as engine.h says; rocksdb::DB is thread-safe, a batch,
// iterator or snapshot object belongs to one thread at a time.
#include <rocksdb/db.h>
#include <rocksdb/slice_transform.h>
#include <rocksdb/snapshot.h>
#include <rocksdb/utilities/write_batch_with_index.h>
#include <rocksdb/write_batch.h>

#include <fmt/format.h>

#include <vector>

#include "base/assert.h"
#include "storage/engine.h"

namespace conclave::storage {
namespace {

Status FromRocks(const rocksdb::Status& s, std::string_view what) {
  if (s.ok()) return Status::Ok();
  if (s.IsCorruption()) return Status::Corruption(fmt::format("{}: {}", what, s.ToString()));
  return Status::IOError(fmt::format("{}: {}", what, s.ToString()));
}

rocksdb::Slice ToSlice(std::string_view s) {
  return rocksdb::Slice(s.data(), s.size());
}

std::string_view ToView(const rocksdb::Slice& s) {
  return std::string_view(s.data(), s.size());
}

// RocksEngineOptions::increasing_key_prefix as RocksDB's memtable insert
// hint: keys in its domain are inserted next to the previous key with the
// same prefix instead of from the top of the memtable's skiplist.
class IncreasingKeyPrefix final : public rocksdb::SliceTransform {
 public:
  explicit IncreasingKeyPrefix(std::function<std::optional<size_t>(std::string_view)> prefix_bytes)
      : prefix_bytes_(std::move(prefix_bytes)) {}

  const char* Name() const override { return "conclave.IncreasingKeyPrefix"; }
  rocksdb::Slice Transform(const rocksdb::Slice& key) const override {
    // RocksDB asks only for keys InDomain accepted.
    const std::optional<size_t> bytes = prefix_bytes_(ToView(key));
    CHECK(bytes.has_value() && *bytes <= key.size());
    return rocksdb::Slice(key.data(), *bytes);
  }
  bool InDomain(const rocksdb::Slice& key) const override {
    return prefix_bytes_(ToView(key)).has_value();
  }

 private:
  std::function<std::optional<size_t>(std::string_view)> prefix_bytes_;
};

class RocksSnapshot final : public EngineSnapshot {
 public:
  explicit RocksSnapshot(rocksdb::DB* db) : db_(db), snapshot_(db->GetSnapshot()) {}
  ~RocksSnapshot() override { db_->ReleaseSnapshot(snapshot_); }
  RocksSnapshot(const RocksSnapshot&) = delete;
  RocksSnapshot& operator=(const RocksSnapshot&) = delete;

  const rocksdb::DB* db() const { return db_; }
  const rocksdb::Snapshot* get() const { return snapshot_; }

 private:
  rocksdb::DB* db_;
  const rocksdb::Snapshot* snapshot_;
};

class RocksIterator final : public EngineIterator {
 public:
  explicit RocksIterator(rocksdb::Iterator* it) : it_(it) {}

  void Seek(std::string_view target) override { it_->Seek(ToSlice(target)); }
  bool Valid() const override { return it_->Valid(); }
  void Next() override { it_->Next(); }
  std::string_view key() const override { return ToView(it_->key()); }
  std::string_view value() const override { return ToView(it_->value()); }
  Status status() const override { return FromRocks(it_->status(), "rocksdb: iterate"); }

 private:
  std::unique_ptr<rocksdb::Iterator> it_;
};

std::unique_ptr<rocksdb::WriteBatchWithIndex> NewIndexedBatch() {
  return std::make_unique<rocksdb::WriteBatchWithIndex>(rocksdb::BytewiseComparator(),
                                                        /*reserved_bytes=*/0,
                                                        /*overwrite_key=*/true);
}

// Copies the first `records` records of a write batch into `to`, setting a
// save point in `to` before the record whose position each of
// `save_point_records` names (positions ascending, none past `records`).
class BatchReplay final : public rocksdb::WriteBatch::Handler {
 public:
  BatchReplay(rocksdb::WriteBatchWithIndex* to, uint32_t records,
              const std::vector<uint32_t>& save_point_records)
      : to_(to), records_(records), save_point_records_(save_point_records) {}

  rocksdb::Status PutCF(uint32_t column_family, const rocksdb::Slice& key,
                        const rocksdb::Slice& value) override {
    Before(column_family);
    return to_->Put(key, value);
  }
  rocksdb::Status DeleteCF(uint32_t column_family, const rocksdb::Slice& key) override {
    Before(column_family);
    return to_->Delete(key);
  }
  rocksdb::Status DeleteRangeCF(uint32_t column_family, const rocksdb::Slice& begin,
                                const rocksdb::Slice& end) override {
    Before(column_family);
    return to_->GetWriteBatch()->DeleteRange(begin, end);
  }
  bool Continue() override { return replayed_ < records_; }

  // After the iteration: the save points that sit after the last record.
  void Finish() {
    CHECK_EQ(replayed_, records_);
    SetSavePointsAt(records_);
    CHECK_EQ(next_save_point_, save_point_records_.size());
  }

 private:
  void Before(uint32_t column_family) {
    CHECK_EQ(column_family, 0u);
    SetSavePointsAt(replayed_);
    ++replayed_;
  }
  void SetSavePointsAt(uint32_t position) {
    while (next_save_point_ < save_point_records_.size() &&
           save_point_records_[next_save_point_] == position) {
      to_->SetSavePoint();
      ++next_save_point_;
    }
  }

  rocksdb::WriteBatchWithIndex* to_;
  uint32_t records_;
  const std::vector<uint32_t>& save_point_records_;
  uint32_t replayed_ = 0;
  size_t next_save_point_ = 0;
};

class RocksBatch final : public EngineBatch {
 public:
  explicit RocksBatch(rocksdb::DB* db) : db_(db), batch_(NewIndexedBatch()) {}

  void Put(std::string_view key, std::string_view value) override {
    const rocksdb::Status s = batch_->Put(ToSlice(key), ToSlice(value));
    CHECK_MSG(s.ok(), "rocksdb batch put: {}", s.ToString());
  }
  void Delete(std::string_view key) override {
    const rocksdb::Status s = batch_->Delete(ToSlice(key));
    CHECK_MSG(s.ok(), "rocksdb batch delete: {}", s.ToString());
  }
  void DeleteRange(std::string_view begin, std::string_view end) override {
    range_deletion_records_.push_back(Count32());
    const rocksdb::Status s = batch_->GetWriteBatch()->DeleteRange(ToSlice(begin), ToSlice(end));
    CHECK_MSG(s.ok(), "rocksdb batch delete range: {}", s.ToString());
  }

  Result<std::optional<std::string>> Get(std::string_view key) override {
    std::string value;
    const rocksdb::Status s =
        batch_->GetFromBatchAndDB(db_, rocksdb::ReadOptions(), ToSlice(key), &value);
    if (s.IsNotFound()) return std::optional<std::string>();
    RETURN_IF_ERROR(FromRocks(s, "rocksdb: get through a batch"));
    return std::optional<std::string>(std::move(value));
  }
  std::unique_ptr<EngineIterator> NewIterator() override {
    return std::make_unique<RocksIterator>(
        batch_->NewIteratorWithBase(db_->NewIterator(rocksdb::ReadOptions())));
  }

  void SetSavePoint() override {
    batch_->SetSavePoint();
    save_point_records_.push_back(Count32());
  }
  void RollbackToSavePoint() override;
  void PopSavePoint() override {
    CHECK_MSG(!save_point_records_.empty(), "rocksdb batch: PopSavePoint without a save point");
    save_point_records_.pop_back();
    const rocksdb::Status s = batch_->PopSavePoint();
    CHECK_MSG(s.ok(), "rocksdb batch: pop save point: {}", s.ToString());
  }

  size_t Count() const override { return batch_->GetWriteBatch()->Count(); }

  rocksdb::DB* db() const { return db_; }
  rocksdb::WriteBatch* write_batch() { return batch_->GetWriteBatch(); }

 private:
  uint32_t Count32() const { return batch_->GetWriteBatch()->Count(); }
  void ReplayInto(uint32_t records);

  rocksdb::DB* db_;
  std::unique_ptr<rocksdb::WriteBatchWithIndex> batch_;
  // Records in the batch when each open save point was set, oldest first.
  std::vector<uint32_t> save_point_records_;
  // The position of each range deletion among the batch's records.
  std::vector<uint32_t> range_deletion_records_;
};

void RocksBatch::RollbackToSavePoint() {
  CHECK_MSG(!save_point_records_.empty(), "rocksdb batch: rollback without a save point");
  const uint32_t keep = save_point_records_.back();
  save_point_records_.pop_back();
  while (!range_deletion_records_.empty() && range_deletion_records_.back() >= keep) {
    range_deletion_records_.pop_back();
  }
  if (range_deletion_records_.empty()) {
    // WriteBatchWithIndex truncates the underlying batch (range deletions
    // recorded after the save point included) and reindexes what is left.
    const rocksdb::Status s = batch_->RollbackToSavePoint();
    CHECK_MSG(s.ok(), "rocksdb batch: rollback: {}", s.ToString());
    return;
  }
  // Its reindexing reads the remaining records back and takes a range
  // deletion for corruption (RocksDB 7.8), leaving the index empty; so copy
  // what stays into a fresh batch instead.
  ReplayInto(keep);
}

void RocksBatch::ReplayInto(uint32_t records) {
  const rocksdb::WriteBatch old(batch_->GetWriteBatch()->Data());
  std::unique_ptr<rocksdb::WriteBatchWithIndex> fresh = NewIndexedBatch();
  BatchReplay replay(fresh.get(), records, save_point_records_);
  const rocksdb::Status s = old.Iterate(&replay);
  CHECK_MSG(s.ok(), "rocksdb batch: replay for rollback: {}", s.ToString());
  replay.Finish();
  batch_ = std::move(fresh);
}

class RocksEngine final : public Engine {
 public:
  explicit RocksEngine(std::unique_ptr<rocksdb::DB> db) : db_(std::move(db)) {}

  Result<std::optional<std::string>> Get(std::string_view key,
                                         const EngineSnapshot* snapshot) const override {
    rocksdb::ReadOptions ro;
    ro.snapshot = SnapshotOf(snapshot);
    std::string value;
    const rocksdb::Status s = db_->Get(ro, ToSlice(key), &value);
    if (s.IsNotFound()) return std::optional<std::string>();
    RETURN_IF_ERROR(FromRocks(s, "rocksdb: get"));
    return std::optional<std::string>(std::move(value));
  }
  std::unique_ptr<EngineIterator> NewIterator(const EngineSnapshot* snapshot) const override {
    rocksdb::ReadOptions ro;
    ro.snapshot = SnapshotOf(snapshot);
    return std::make_unique<RocksIterator>(db_->NewIterator(ro));
  }
  std::shared_ptr<const EngineSnapshot> GetSnapshot() const override {
    return std::make_shared<RocksSnapshot>(db_.get());
  }

  std::unique_ptr<EngineBatch> NewBatch() override {
    return std::make_unique<RocksBatch>(db_.get());
  }
  Status Write(EngineBatch* batch, bool sync) override {
    auto* rocks_batch = dynamic_cast<RocksBatch*>(batch);
    CHECK_MSG(rocks_batch != nullptr && rocks_batch->db() == db_.get(),
              "rocksdb: a batch from another engine");
    rocksdb::WriteOptions wo;
    wo.sync = sync;
    return FromRocks(db_->Write(wo, rocks_batch->write_batch()), "rocksdb: write");
  }
  Status Sync() override { return FromRocks(db_->SyncWAL(), "rocksdb: sync the log"); }

  Status Compact() override {
    rocksdb::CompactRangeOptions opts;
    // Rewrite the last level too, or deleted data there keeps its space.
    opts.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
    return FromRocks(db_->CompactRange(opts, nullptr, nullptr), "rocksdb: compact");
  }
  uint64_t ApproximateBytes() const override {
    uint64_t sst_bytes = 0;
    uint64_t memtable_bytes = 0;
    // A property RocksDB cannot report leaves its part at zero.
    db_->GetIntProperty("rocksdb.total-sst-files-size", &sst_bytes);
    db_->GetIntProperty("rocksdb.cur-size-all-mem-tables", &memtable_bytes);
    return sst_bytes + memtable_bytes;
  }

 private:
  const rocksdb::Snapshot* SnapshotOf(const EngineSnapshot* snapshot) const {
    if (snapshot == nullptr) return nullptr;
    const auto* rocks_snapshot = dynamic_cast<const RocksSnapshot*>(snapshot);
    CHECK_MSG(rocks_snapshot != nullptr && rocks_snapshot->db() == db_.get(),
              "rocksdb: a snapshot from another engine");
    return rocks_snapshot->get();
  }

  std::unique_ptr<rocksdb::DB> db_;
};

}  // namespace

Result<std::unique_ptr<Engine>> OpenRocksEngine(const std::string& path,
                                                const RocksEngineOptions& options) {
  rocksdb::Options opts;
  opts.create_if_missing = true;
  opts.write_buffer_size = options.write_buffer_bytes;
  if (options.increasing_key_prefix) {
    opts.memtable_insert_with_hint_prefix_extractor =
        std::make_shared<IncreasingKeyPrefix>(options.increasing_key_prefix);
  }
  rocksdb::DB* raw = nullptr;
  RETURN_IF_ERROR(FromRocks(rocksdb::DB::Open(opts, path, &raw), "rocksdb: open " + path));
  return std::unique_ptr<Engine>(new RocksEngine(std::unique_ptr<rocksdb::DB>(raw)));
}

}  // namespace conclave::storage
