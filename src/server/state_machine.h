// StateMachine: what one Raft group replicates, behind one interface.
//
// A Replica (replica.h) runs the group's consensus; the state machine holds
// what the committed entries build. The etcd keyspace is one implementation
// (etcd_state_machine.h); the native ranges, the ZooKeeper tree and the file
// system's metadata are others. Every implementation keeps its state in the
// host's shared storage engine, under keys of its own.
//
// The contract:
//   - Apply receives committed entries in log order, consecutive, each after
//     AppliedIndex(), and applies them atomically together with the index and
//     term of the last one: after a crash the state is exactly that of some
//     applied prefix, and AppliedIndex() says which. The same entries give
//     the same state and the same results on every replica (no clock, no
//     randomness, nothing local).
//   - A conf-change entry arrives with the configuration it produced (or the
//     unchanged one, when the core refused it); the state machine records
//     that configuration with the batch, so AppliedConfState() after a
//     restart is the configuration as of AppliedIndex().
//   - Nothing applied needs to be durable at once: the write-ahead log holds
//     the entries and replays what the state machine lost. Sync() makes what
//     was applied durable; the replica calls it before it lets the log forget
//     entries.
//   - Snapshots: NewSnapshot() streams the applied state as of one batch
//     boundary; InstallSnapshot() replaces the whole state with an image
//     received into a file, atomically.
//   - Leader-local hooks (Tick, OnLeaderChange) run on the driver thread and
//     may only propose: they never change replicated state directly.
//
// Thread-safety: Apply, InstallSnapshot and Bootstrap run on the host's
// apply thread (or before Start); Tick, OnLeaderChange and Quiescable on
// its driver thread; the readers an implementation offers its front end
// must be thread-safe.
#pragma once

#include <any>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "raft/raft.h"

namespace conclave::mvcc {
class SnapshotWriter;
}  // namespace conclave::mvcc

namespace conclave::server {

// One committed entry, as the state machine sees it.
struct CommittedEntry {
  uint64_t index = 0;
  uint64_t term = 0;
  raft::EntryType type = raft::EntryType::kNormal;
  // A normal entry: the command as its proposer wrote it (empty for the
  // leader's no-op). A conf-change entry: the payload of the change's
  // context.
  std::string_view command;
  // Conf-change entries only: the change, and the configuration it left
  // (the previous one, unchanged, when `refused`).
  const raft::ConfChange* conf_change = nullptr;
  const raft::ConfState* conf_state = nullptr;
  bool refused = false;
};

// A state machine image, cut into chunks for the transport (docs/SNAPSHOT.md).
class SnapshotSource {
 public:
  virtual ~SnapshotSource() = default;
  // The last entry applied to the image, and the configuration as of it.
  virtual uint64_t index() const = 0;
  virtual uint64_t term() const = 0;
  virtual const raft::ConfState& conf_state() const = 0;
  // The next chunk; false once the last one has been returned.
  virtual Result<bool> Next(std::string* chunk) = 0;
};

// The source every state machine here uses: the chunks of an
// mvcc::SnapshotWriter (an engine image) and the Raft configuration
// recorded with that image.
std::unique_ptr<SnapshotSource> NewWriterSnapshotSource(
    std::unique_ptr<mvcc::SnapshotWriter> writer, raft::ConfState conf_state);

class StateMachine {
 public:
  virtual ~StateMachine() = default;

  // Where the durable state stands (at open, and after an install).
  virtual uint64_t AppliedIndex() const = 0;
  virtual uint64_t AppliedTerm() const = 0;
  virtual Result<raft::ConfState> AppliedConfState() const = 0;

  // A new group: records `conf_state` as applied at index 1, term 1, with
  // whatever initial state the implementation was built with. Durable when
  // it returns.
  virtual Status Bootstrap(const raft::ConfState& conf_state) = 0;

  // Applies `entries` (see the file comment) and sets results[i] to what
  // entries[i] produced for whoever proposed it (an empty std::any when
  // nothing). Fails only for storage errors, which stop the member.
  virtual Status Apply(std::span<const CommittedEntry> entries, std::vector<std::any>* results) = 0;
  virtual Status Sync() = 0;

  virtual Result<std::unique_ptr<SnapshotSource>> NewSnapshot() = 0;
  // Replaces the state with the image in `path` (written by a receiver of
  // NewSnapshot's chunks). Its index becomes AppliedIndex().
  virtual Status InstallSnapshot(const std::string& path) = 0;

  // Driver thread: this replica became the group's leader, or stopped
  // being it.
  virtual void OnLeaderChange(bool /*is_leader*/) {}
  // Driver thread, every tick while leader: commands to propose (a lease
  // that expired, a checkpoint), appended to `proposals`.
  virtual void Tick(std::vector<std::string>* /*proposals*/) {}
  // Whether the group may stop ticking while idle: false while the state
  // machine needs the leader's clock (leases to expire, say).
  virtual bool Quiescable() const { return true; }
};

}  // namespace conclave::server
