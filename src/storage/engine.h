// Engine: the ordered, durable key-value store that every state machine of a
// node shares (one per node, whatever the number of Raft groups).
//
// Two implementations behind one interface, as LevelDB puts its Env behind
// one: OpenRocksEngine() is RocksDB in a directory; MemEngine keeps
// everything in memory, remembers what has been made durable and can crash,
// so the simulator runs the real MVCC store in one thread, deterministically.
//
// The model (RocksDB's):
//   - keys and values are byte strings; keys sort bytewise;
//   - Write applies a batch atomically: a reader sees all of it or none;
//   - a snapshot is a consistent view as of its creation; reads given one
//     see the engine as it was then, whatever is written afterwards;
//   - durability: Write(batch, sync=true) and Sync() make every batch written
//     so far survive a crash. A batch written with sync=false survives only
//     once a later sync has returned; a crash keeps some prefix of the
//     unsynced batches (each batch whole or not at all, in write order).
//
// An EngineBatch is indexed: reads through it (Get, NewIterator) see its own
// puts and deletes over the engine's latest state, so a command applied in a
// batch sees the writes of the commands before it. DeleteRange is the
// exception: it takes effect when the batch is written, and reads through
// the batch do not see it. Save points let a failed command take back its
// writes (DeleteRange included) without dropping the whole batch.
//
// Errors are Status values: kIOError for what the disk refused, kCorruption
// for damage found.
//
// Thread-safety: an Engine may be used from any number of threads at once
// (reads, snapshots, writes). An EngineBatch, an EngineIterator and an
// EngineSnapshot are used by one thread at a time; iterators and snapshots
// must not outlive their engine.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "base/random.h"
#include "base/status.h"

namespace conclave::storage {

// A consistent view of an engine as of its creation. Released when the last
// reference goes.
class EngineSnapshot {
 public:
  virtual ~EngineSnapshot() = default;
};

// Visits keys in order, forward only. key() and value() stay valid until the
// next call that moves the iterator.
class EngineIterator {
 public:
  virtual ~EngineIterator() = default;
  // Positions at the first key >= target.
  virtual void Seek(std::string_view target) = 0;
  virtual bool Valid() const = 0;
  virtual void Next() = 0;
  virtual std::string_view key() const = 0;
  virtual std::string_view value() const = 0;
  // Not OK when the iteration stopped because of an error (Valid() is then
  // false).
  virtual Status status() const = 0;
};

class EngineBatch {
 public:
  virtual ~EngineBatch() = default;

  virtual void Put(std::string_view key, std::string_view value) = 0;
  virtual void Delete(std::string_view key) = 0;
  // Deletes every key in [begin, end) when the batch is written, before the
  // batch's later operations; invisible to reads through the batch.
  virtual void DeleteRange(std::string_view begin, std::string_view end) = 0;

  // Reads through the batch: its own puts and deletes over the engine's
  // latest state. Changing the batch invalidates its iterators.
  virtual Result<std::optional<std::string>> Get(std::string_view key) = 0;
  virtual std::unique_ptr<EngineIterator> NewIterator() = 0;

  // Save points nest. RollbackToSavePoint undoes every operation since the
  // latest save point and removes it; PopSavePoint removes it and keeps the
  // operations. Both are bugs (CHECK) without a save point.
  virtual void SetSavePoint() = 0;
  virtual void RollbackToSavePoint() = 0;
  virtual void PopSavePoint() = 0;

  // Operations recorded (puts, deletes, range deletes).
  virtual size_t Count() const = 0;
};

class Engine {
 public:
  virtual ~Engine() = default;

  // `snapshot` nullptr: the latest state. An iterator without a snapshot
  // reads the state as of its creation, as if it held one.
  virtual Result<std::optional<std::string>> Get(
      std::string_view key, const EngineSnapshot* snapshot = nullptr) const = 0;
  virtual std::unique_ptr<EngineIterator> NewIterator(
      const EngineSnapshot* snapshot = nullptr) const = 0;
  virtual std::shared_ptr<const EngineSnapshot> GetSnapshot() const = 0;

  virtual std::unique_ptr<EngineBatch> NewBatch() = 0;
  // Applies `batch` atomically (see the file comment for durability). The
  // batch is consumed: drop it afterwards.
  virtual Status Write(EngineBatch* batch, bool sync) = 0;
  // Makes every batch written so far durable.
  virtual Status Sync() = 0;

  // Rewrites the engine's files so that deleted data gives its space back
  // (etcd's defragment). May take long; reads and writes go on meanwhile.
  virtual Status Compact() = 0;
  // Bytes the engine holds on disk and in memory (etcd's dbSize).
  virtual uint64_t ApproximateBytes() const = 0;
};

struct RocksEngineOptions {
  // Memtable size. Smaller than RocksDB's 64 MiB default: the Raft log
  // already buffers recent writes.
  uint64_t write_buffer_bytes = 32ull << 20;
  // Keys that arrive in increasing order within a common prefix (a history
  // keyspace): for such a key, the prefix's length; nullopt for any other.
  // Lets the memtable insert each one next to the previous one instead of
  // searching from the top.
  std::function<std::optional<size_t>(std::string_view key)> increasing_key_prefix;
};

// RocksDB in `path` (created if missing), owned by the engine.
Result<std::unique_ptr<Engine>> OpenRocksEngine(const std::string& path,
                                                const RocksEngineOptions& options = {});

// An in-memory engine that can crash. Deterministic: no threads, no clock.
class MemEngine final : public Engine {
 public:
  MemEngine();
  ~MemEngine() override;

  Result<std::optional<std::string>> Get(std::string_view key,
                                         const EngineSnapshot* snapshot = nullptr) const override;
  std::unique_ptr<EngineIterator> NewIterator(
      const EngineSnapshot* snapshot = nullptr) const override;
  std::shared_ptr<const EngineSnapshot> GetSnapshot() const override;
  std::unique_ptr<EngineBatch> NewBatch() override;
  Status Write(EngineBatch* batch, bool sync) override;
  Status Sync() override;
  Status Compact() override;
  uint64_t ApproximateBytes() const override;

  // Loses what is not durable: every batch written since the last sync is
  // dropped, except a prefix of them chosen by `random` (each batch whole or
  // not at all). Snapshots and iterators from before must no longer be used.
  void Crash(Random& random);
  // Batches written and not yet synced.
  uint64_t unsynced_batches() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace conclave::storage
