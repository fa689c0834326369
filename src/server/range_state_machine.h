// RangeStateMachine: one range of the native keyspace, as a StateMachine.
//
// A range holds the user keys [start, end) of its descriptor, as versions
// keyed by timestamp in the node's key layout (docs/KEYS.md): data under
// the 04 tag, addressed by user key only, and the range's own records under
// its range id (02): the descriptor, the Raft configuration and the applied
// state. So a split or a merge rewrites those records and never moves data.
//
// Commands are serverpb.RangeCommand (a put, a delete or a range delete with
// the proposer's clock reading; puts and deletes may carry a precondition,
// checked as the command applies; or a split). Applying one writes a version at the larger of that
// timestamp and the one just past the range's last write, so versions only
// grow and the last write's timestamp is also the range's closed timestamp
// (no later write can be at or below it); it is kept in the applied state,
// with the bytes of the range's versions.
// A key outside the range fails the command, alike on every replica.
// Results are RangeWriteResult values.
//
// A split at key k rewrites the descriptor to end at k and writes the new
// right-hand range's records in the same engine batch: its descriptor
// ([k, old end), the same replicas), its Raft configuration (this range's)
// and its applied state (index 1, this range's closed timestamp, so its
// versions keep growing, and the bytes of the versions it takes over,
// counted as the split applies). The data stays where it is. The split handler
// then adds the new range's replica to the node, before this range's
// narrower descriptor is published, so a reader that finds a key outside
// this range finds its new range already there (a node whose replica of
// the new range came first, from a snapshot, keeps that replica's
// records). A split applies only at
// the generation the proposer saw, inside the range, with a plain (not
// joint) configuration, and never at or past the system keys.
//
// A merge takes a frozen right-hand neighbour in (serverpb.MergeCommand),
// once prepared for it (a prepared range refuses freezes and splits):
// the descriptor widens to the neighbour's end at a generation past both,
// the data bytes and the closed timestamp take the neighbour's in, and the
// neighbour's range-id records are deleted and its tombstone written in the
// same batch; the merge handler then drops the node's replica of it. A
// frozen range refuses every write and split, and its readers, with
// kUnavailable (reason kRangeFrozen), until a thaw; the merge is checked
// against the generations both sides had when it was decided.
//
// A configuration change (a replica added as a learner, promoted, or
// removed; serverpb.ReplicaChange names the nodes of added ones) rewrites
// the descriptor to match the configuration Raft applied, in the same
// batch, and bumps its generation. A range with a learner does not split
// (a replica is being added). The replicas handler then sees the new
// descriptor; when it names no replica on this node, the node destroys its
// copy (Destroy) and the state machine applies nothing more.
//
// Reads see the newest version of each key as of one engine snapshot.
// Snapshots of a range are its replicated spans (keys::ReplicatedSpans) in
// the snapshot chunk format (docs/SNAPSHOT.md); installing one replaces
// exactly those spans.
//
// Thread-safety: Apply, Bootstrap and InstallSnapshot on the host's apply
// thread; readers (Get, Scan, descriptor) from any thread.
#pragma once

#include <any>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"
#include "base/timestamp.h"
#include "conclave/kvpb/kv.pb.h"
#include "conclave/serverpb/server.pb.h"
#include "keys/keys.h"
#include "server/state_machine.h"
#include "storage/storage.h"

namespace conclave::server {

// Keys from here on belong to the system: the meta range holds them, and
// the native API refuses them.
inline constexpr std::string_view kSystemKeyStart = "\xff\xff";

struct RangeWriteResult {
  Status status;
  Timestamp timestamp;   // of the version written (the last one, for a range delete)
  uint64_t deleted = 0;  // live keys a delete or a range delete removed
  // A range delete: the end of the span it covered, which is the range's
  // end when the request went past it (empty: no bound).
  std::string covered_end;
  // A split: the two ranges it made.
  std::optional<std::pair<keys::RangeDescriptor, keys::RangeDescriptor>> split;
  // A merge: the range taken in (as the command described it); a freeze, a
  // thaw or a fence: the range's descriptor after it.
  std::optional<keys::RangeDescriptor> merged;
  std::optional<keys::RangeDescriptor> descriptor;
};

// What a frozen range answers (ErrorReason::kRangeFrozen).
Status Frozen(const keys::RangeDescriptor& d);

// The parts of user keys [start, end) that no span of `keep` covers (end
// keys: empty is past every key).
std::vector<std::pair<std::string, std::string>> UncoveredSpans(
    const std::string& start, const std::string& end,
    std::vector<std::pair<std::string, std::string>> keep);

// Adds the replica of the range a split created; called on the apply
// thread, after the split is written and before it is visible. An error
// stops the node (its replicas would disagree with its engine).
using SplitHandler = std::function<Status(const keys::RangeDescriptor& right)>;

// Called on the apply thread after a configuration change applied and the
// new descriptor is published. An error stops the node.
using ReplicasHandler = std::function<Status(const keys::RangeDescriptor& after)>;

// Called on the apply thread after a merge applied and the wider
// descriptor is published: the node's replica of `right` goes (its data
// stays). Also after a freeze or a thaw (`right` is then this range). An
// error stops the node.
using MergeHandler = std::function<Status(const keys::RangeDescriptor& right)>;

struct RangeValue {
  std::string key;
  std::string value;
  Timestamp timestamp;
};

class RangeStateMachine final : public StateMachine {
 public:
  // Opens range `range_id` in `engine`. `fresh` describes a range this node
  // is creating (written by Bootstrap); for a range already in the engine
  // the stored descriptor wins. An empty `fresh` (range id 0) and nothing
  // stored: a replica that waits for its first snapshot (not initialized;
  // it holds no keys until the image installs).
  static Result<std::unique_ptr<RangeStateMachine>> Open(storage::Engine* engine,
                                                         storage::FileSystem* snapshot_fs,
                                                         keys::RangeId range_id,
                                                         const keys::RangeDescriptor& fresh);
  // The ranges whose descriptors the engine holds (what a node hosts;
  // replicas still waiting for their first snapshot have none).
  static Result<std::vector<keys::RangeDescriptor>> Stored(const storage::Engine* engine);

  // Deletes this node's copy of range `d` (its records and its keys, but
  // none in `keep`: the spans of the node's other ranges) and leaves a
  // tombstone: replicas of the range with ids below d.next_replica_id are
  // not made here again (Tombstone).
  static Status Destroy(storage::Engine* engine, const keys::RangeDescriptor& d,
                        const std::vector<std::pair<std::string, std::string>>& keep = {});
  // The replica ids of `range_id` this node refuses (below the returned
  // one; 0: no tombstone).
  static Result<uint64_t> Tombstone(const storage::Engine* engine, keys::RangeId range_id);

  // Set before the replica starts.
  void SetSplitHandler(SplitHandler handler) { on_split_ = std::move(handler); }
  void SetReplicasHandler(ReplicasHandler handler) { on_replicas_ = std::move(handler); }
  void SetMergeHandler(MergeHandler merged, MergeHandler frozen_changed) {
    on_merge_ = std::move(merged);
    on_frozen_ = std::move(frozen_changed);
  }
  // Keys a new range starts with (Bootstrap writes them, at the smallest
  // timestamp, alike on every initial replica). Set before the replica
  // starts.
  void SetInitialValues(std::map<std::string, std::string> values) {
    initial_values_ = std::move(values);
  }
  // The node this replica lives on: entries after its own removal, in the
  // batch that removes it, are not applied. Set before the replica starts.
  void SetLocalNode(uint64_t node_id) { local_node_ = node_id; }
  // From the apply thread: this node's replica was removed; the state
  // machine applies nothing more and installs no snapshot.
  void MarkRemoved() { removed_.store(true, std::memory_order_release); }
  bool removed() const { return removed_.load(std::memory_order_acquire); }
  // Called on the apply thread after a snapshot installed (the descriptor
  // may have changed).
  void SetInstallHandler(std::function<void()> handler) { on_install_ = std::move(handler); }
  bool initialized() const;
  // The node replica `replica` lives on, as the descriptor says (0: none).
  uint64_t NodeOf(raft::NodeId replica) const;

  // ---- StateMachine ----
  uint64_t AppliedIndex() const override;
  uint64_t AppliedTerm() const override;
  Result<raft::ConfState> AppliedConfState() const override;
  Status Bootstrap(const raft::ConfState& conf_state) override;
  Status Apply(std::span<const CommittedEntry> entries, std::vector<std::any>* results) override;
  Status Sync() override { return engine_->Sync(); }
  Result<std::unique_ptr<SnapshotSource>> NewSnapshot() override;
  Status InstallSnapshot(const std::string& path) override;

  // ---- readers (any thread) ----
  keys::RangeDescriptor descriptor() const;
  // The newest version of `key`; nullopt when it has none or was deleted.
  // kOutOfRange for a key outside the range.
  Result<std::optional<RangeValue>> Get(std::string_view key) const;
  // The bytes of the range's versions (keys and values as encoded), kept
  // in its applied state.
  uint64_t DataBytes() const;
  // What this replica has applied (index, closed timestamp, data bytes).
  keys::AppliedState applied_state() const;
  // The user key at which the range's data is cut in halves by bytes;
  // nullopt when it holds too little to cut (one key, or none).
  Result<std::optional<std::string>> MiddleKey() const;
  // Live keys in [start, end) clipped to the range (end empty: no bound),
  // at most `limit` of them; *more is set when there are others after.
  // *used (if given) is the descriptor the scan was clipped to.
  Result<std::vector<RangeValue>> Scan(std::string_view start, std::string_view end, size_t limit,
                                       bool* more, keys::RangeDescriptor* used = nullptr) const;

 private:
  RangeStateMachine(storage::Engine* engine, storage::FileSystem* fs, keys::RangeId range_id);
  Status Load(const keys::RangeDescriptor& fresh);
  // What one Apply call has written so far and the engine does not show
  // yet: the newest version of each key it wrote.
  struct Written {
    Timestamp ts;
    keys::VersionValue value;
  };
  using Pending = std::map<std::string, Written, std::less<>>;
  // The command's result (its own failures included); an error only when
  // the engine cannot be read, which fails the whole Apply.
  // `d` is the descriptor as of this command (a split earlier in the same
  // Apply call changes it).
  // `applied` gains the command's closed timestamp and data bytes.
  Result<RangeWriteResult> ApplyCommand(storage::EngineBatch* batch, std::string_view command,
                                        keys::RangeDescriptor* d, keys::AppliedState* applied,
                                        Pending* pending);
  // Rewrites `d`'s replicas to the configuration a conf-change entry left.
  Status ApplyReplicaChange(storage::EngineBatch* batch, const CommittedEntry& e,
                            keys::RangeDescriptor* d);
  // A split command's result; writes both ranges' records into `batch`.
  Result<RangeWriteResult> ApplySplit(storage::EngineBatch* batch, const serverpb::SplitCommand& c,
                                      keys::RangeDescriptor* d, keys::AppliedState* applied);
  // The commands of a merge (serverpb.MergeCommand's comment).
  Result<RangeWriteResult> ApplyFreeze(storage::EngineBatch* batch,
                                       const serverpb::FreezeCommand& c, keys::RangeDescriptor* d,
                                       const keys::AppliedState& applied);
  Result<RangeWriteResult> ApplyMerge(storage::EngineBatch* batch, const serverpb::MergeCommand& c,
                                      keys::RangeDescriptor* d, keys::AppliedState* applied);
  // The newest version of `key` as the batch being applied sees it.
  Result<std::optional<Written>> Newest(std::string_view key, const Pending& pending) const;
  // Whether `key`'s newest version satisfies `p`.
  Result<bool> Holds(std::string_view key, const kvpb::Precondition& p,
                     const Pending& pending) const;
  // The live keys of [start, end) (end empty: no bound) as the batch sees them.
  Result<std::vector<std::string>> LiveKeys(const std::string& start, const std::string& end,
                                            const Pending& pending) const;
  static std::vector<std::pair<std::string, std::string>> SpanPairs(const keys::RangeDescriptor& d);

  storage::Engine* const engine_;
  storage::FileSystem* const fs_;
  const keys::RangeId range_id_;
  SplitHandler on_split_;
  ReplicasHandler on_replicas_;
  MergeHandler on_merge_;
  MergeHandler on_frozen_;
  std::function<void()> on_install_;
  std::atomic<bool> removed_{false};
  uint64_t local_node_ = 0;
  std::map<std::string, std::string> initial_values_;

  // Written by the apply thread, read anywhere.
  mutable std::mutex mu_;
  keys::RangeDescriptor descriptor_;  // guarded by mu_
  bool initialized_ = false;          // guarded by mu_
  keys::AppliedState applied_;        // guarded by mu_
};

}  // namespace conclave::server
