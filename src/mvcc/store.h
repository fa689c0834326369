// Store: the revisioned key-value state machine of one Raft group, on a
// storage::Engine (RocksDB, or the simulator's in-memory engine), with
// etcd's semantics (docs/MVCC.md). Several stores of different groups may
// share one engine: every key a store writes starts with its group.
//
// Writes happen only through an ApplyBatch, on the apply thread: every
// command of a batch of committed log entries is applied to one engine
// write batch that also records the applied index, and Commit writes it
// atomically. Restart therefore resumes exactly after the last committed
// batch, and the same entries applied anywhere give the same state.
// Commands inside a batch see the batch's earlier writes.
//
// Reads (Range, Events) may come from any thread; each runs on an engine
// snapshot, so it sees one committed batch boundary and the revision that
// goes with it.
//
// Failed commands (a compacted revision, ignore_value on a missing key)
// return etcd's error and change nothing; they are deterministic, so every
// member fails them alike.
//
// Leases: the Store records each key's lease id and compares on it; whether
// a lease exists is the lease module's business and is checked before a
// command reaches the Store.
//
// Thread-safety: Range, Events and the accessors are thread-safe. At most
// one ApplyBatch exists at a time; it is used from one thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "base/status.h"
#include "mvcc/keys.h"
#include "mvcc/kv.h"
#include "storage/storage.h"

namespace conclave::mvcc {

struct StoreOptions {
  uint64_t group = 0;
  // Sync the engine on every commit. Off when the Raft log provides
  // durability and replays entries after the applied index.
  bool sync = false;
  // Test-only planted bug (the simulator must catch it): Commit writes the
  // applied index in a batch of its own after the batch's changes, so a
  // crash can keep the changes without the index that says they were made.
  bool test_bug_applied_index_apart = false;
};

// Options for a RocksDB engine holding stores: the watch history's keys
// arrive in increasing order within each group's history prefix, which
// lets RocksDB insert them into its memtable next to the previous one.
storage::RocksEngineOptions StoreRocksEngineOptions();

class ApplyBatch;

// A checksum of the key-value history at one revision (HashKV).
struct KvHash {
  uint32_t hash = 0;
  int64_t revision = 0;          // the revision hashed
  int64_t compact_revision = 0;  // the compaction it was taken after
};

// A store's metadata as of one committed batch.
struct StoreMeta {
  int64_t revision = 1;
  int64_t compacted = 0;
  uint64_t applied_index = 0;
  uint64_t applied_term = 0;  // term of the entry at applied_index
};

class Store {
 public:
  // Opens the store of options.group in `engine` (empty: a fresh store at
  // revision 1). The engine is not owned and must outlive the store.
  static Result<std::unique_ptr<Store>> Open(storage::Engine* engine, const StoreOptions& options);
  ~Store();

  Result<RangeResponse> Range(const RangeRequest& r) const;
  // Changes with revision main in [from, to] (to 0: up to the current), in
  // revision order, stopping once `limit` (0: no limit) changes are in, but
  // never inside a revision: the changes of one txn come all together, so
  // the answer can pass `limit` by the rest of its last revision.
  // kOutOfRange (compacted) when `from` is below the compacted revision.
  Result<std::vector<Event>> Events(int64_t from, int64_t to, size_t limit) const;

  // CRC-32C over every key version with revision <= `revision` (0: the
  // current one) that compaction has kept, in key order: equal on members
  // that applied the same log, whatever their timing. kOutOfRange for a
  // compacted or future revision, as Range.
  Result<KvHash> HashKV(int64_t revision) const;
  // CRC-32C over the group's versions and watch history (not its metadata,
  // which records member-local progress such as the applied index).
  Result<uint32_t> Hash() const;

  std::unique_ptr<ApplyBatch> NewBatch();
  // Writes the batch atomically; afterwards readers see it.
  Status Commit(std::unique_ptr<ApplyBatch> batch);

  // Replaces the group's state with what `batch` writes (it must begin by
  // deleting the group's keyspace) and sets the applied index, durably and
  // atomically. For snapshot install; no ApplyBatch may be open.
  Status ReplaceWith(storage::EngineBatch* batch, uint64_t applied_index);
  // The metadata as of an engine snapshot (nullptr: the latest state).
  Result<StoreMeta> MetaAt(const storage::EngineSnapshot* snapshot) const;
  // Application metadata written with ApplyBatch::PutMeta (its raft
  // configuration, its leases): one value, or every name with a prefix.
  // Travels in snapshots with the rest of the group's state.
  // `snapshot` (nullptr: the latest state) as in MetaAt.
  Result<std::optional<std::string>> GetMeta(
      std::string_view name, const storage::EngineSnapshot* snapshot = nullptr) const;
  Result<std::vector<std::pair<std::string, std::string>>> ScanMeta(std::string_view prefix) const;
  // Makes every committed batch durable (the store commits without syncing
  // when the Raft log provides durability; call this before releasing log).
  Status Sync();

  int64_t CurrentRevision() const { return current_rev_.load(std::memory_order_acquire); }
  int64_t CompactRevision() const { return compact_rev_.load(std::memory_order_acquire); }
  uint64_t AppliedIndex() const { return applied_index_.load(std::memory_order_acquire); }
  uint64_t AppliedTerm() const { return applied_term_.load(std::memory_order_acquire); }
  uint64_t group() const { return options_.group; }
  storage::Engine* engine() const { return engine_; }

 private:
  friend class ApplyBatch;
  Store(storage::Engine* engine, const StoreOptions& options);
  Status LoadMeta();
  // Rebuilds latest_ from the version keyspace.
  Status LoadLatest();
  // Brings latest_ up to a committed batch's writes, in order.
  void UpdateLatest(const std::vector<Event>& events);

  // What a put needs of a key's newest live version, so that applying one
  // reads nothing from the engine (etcd keeps the same in its key index).
  struct Latest {
    int64_t create_revision = 0;
    int64_t version = 0;
    int64_t lease = 0;
  };

  storage::Engine* engine_;
  StoreOptions options_;
  std::atomic<int64_t> current_rev_{1};
  std::atomic<int64_t> compact_rev_{0};
  std::atomic<uint64_t> applied_index_{0};
  std::atomic<uint64_t> applied_term_{0};
  bool batch_open_ = false;
  // Every key with a live newest version; used and changed only by the
  // thread that applies (and by Open and ReplaceWith).
  std::unordered_map<std::string, Latest> latest_;
};

// The writes of one applied batch of log entries. Obtained from
// Store::NewBatch, used by the apply thread, handed back to Store::Commit.
class ApplyBatch {
 public:
  ~ApplyBatch();

  Result<RangeResponse> Range(const RangeRequest& r);
  Result<PutResponse> Put(const PutRequest& r);
  Result<DeleteRangeResponse> DeleteRange(const DeleteRangeRequest& r);
  Result<TxnResponse> Txn(const TxnRequest& r);
  // Returns the revision the store is at.
  Result<int64_t> Compact(const CompactionRequest& r);
  // The last log entry this batch applies: its index and term.
  void SetApplied(uint64_t index, uint64_t term) {
    applied_index_ = index;
    applied_term_ = term;
  }
  // Application metadata (see Store::GetMeta), committed with the batch.
  void PutMeta(std::string_view name, std::string_view value);
  void DeleteMeta(std::string_view name);
  // Metadata as this batch leaves it (its own writes over the store's):
  // what commands applied in this batch must read, so that where batches
  // are cut never changes a result.
  Result<std::optional<std::string>> GetMeta(std::string_view name);
  Result<std::vector<std::pair<std::string, std::string>>> ScanMeta(std::string_view prefix);

  // The changes made so far, in revision order, for the watch hub.
  const std::vector<Event>& events() const { return events_; }
  int64_t revision() const { return current_rev_; }

 private:
  friend class Store;
  explicit ApplyBatch(Store* store);

  // The newest version of `key` at or before `rev` (live or tombstone).
  struct Found {
    bool exists = false;  // a live version
    KeyValue kv;
  };
  Result<Found> Get(const std::string& key, int64_t rev);
  // The revision the current request reads at: once it has written, its own
  // pending revision, so that later ops of a txn see the earlier ones.
  int64_t VisibleRevision() const { return next_sub_ > 0 ? pending_main_ : current_rev_; }
  std::unique_ptr<storage::EngineIterator> NewIterator();
  void WriteVersion(const std::string& key, Revision rev, const keys::VersionValue& v);
  Status CheckTxnReads(const TxnRequest& r, const std::vector<bool>& path, size_t* pos);
  Result<bool> EvaluateCompares(const TxnRequest& r);
  Status ComputePath(const TxnRequest& r, std::vector<bool>* path);
  Result<TxnResponse> ExecuteTxn(const TxnRequest& r, const std::vector<bool>& path, size_t* pos);
  Result<PutResponse> DoPut(const PutRequest& r);
  Result<DeleteRangeResponse> DoDeleteRange(const DeleteRangeRequest& r);

  Store* store_;
  std::unique_ptr<storage::EngineBatch> wb_;
  // Keys this batch wrote (a superset after a rolled-back txn): their newest
  // version is in wb_, not in the store's latest_.
  std::unordered_set<std::string> touched_;
  int64_t current_rev_;
  int64_t compact_rev_;
  uint64_t applied_index_;
  uint64_t applied_term_;
  // Within a write request: its main revision and the next sub revision.
  int64_t pending_main_ = 0;
  int64_t next_sub_ = 0;
  std::vector<Event> events_;
};

}  // namespace conclave::mvcc
