// NativeKeyspace: the native ranges this node holds a replica of, found by
// key, with the operations of the native KV API (proto/conclave/kvpb).
//
// A new cluster (--initial-range-count) cuts the user keyspace, keys below
// kSystemKeyStart, into that many ranges at evenly spaced two-byte
// boundaries, and adds the meta range for the system keys above it; each
// range is a Raft group (group id = range id: kMetaRangeId, then from
// kFirstRangeId). Range i gets replicas_per_range replicas on the initial
// members from the i-th on (round robin, members in id order), so the
// ranges spread over the members evenly; the meta range has a replica on
// every initial member. A range's replica ids are its own (1, 2, 3, ...;
// never reused) and its descriptor says which node each lives on. On
// restart the node finds its ranges by their descriptors in the engine.
// Ranges quiesce when idle.
//
// Split cuts a range in two at a key, in the range's own log
// (range_state_machine.h); the new range's id comes from a counter in the
// meta range (which a new cluster starts with), taken with a conditional
// put. Every node that applies the split adds the new range's replica, so
// both halves keep the replicas the range had. A node that missed a split
// (it received a snapshot of the narrowed range instead) gets the new
// range's replica when that range's leader sends it a snapshot: the host
// asks MakeReplica for an empty one.
//
// MoveReplica moves a range's replica from one node to another through the
// range's own configuration changes: the new replica joins as a learner (a
// snapshot brings it up to date), becomes a voter once it has the log, and
// the old one is removed (after handing off leadership, if it led). A node
// whose replica was removed deletes its copy and leaves a tombstone, so the
// stale messages of the range's old leaders do not make it again. A node
// that was down or cut off while its replica was removed finds out from the
// range map (every 10 s) and deletes its copy too.
//
// Placement. Every node reports its status (serverpb.NodeStatus) to the
// meta range every few seconds. The placement driver runs on the meta
// range's leader: a member whose status has not changed for
// replica_down_time is down, and each of its replicas is moved (by a live
// voter of the range) to a live member without one (PlacementView::Target:
// the farthest by the labels, then the one holding the fewest), at once for
// a member no longer in the cluster; otherwise a replica moves farther from
// its range's others by the labels; otherwise the members' bytes are
// evened out with the ranges of at least kSizedRangeBytes, then their
// replica counts with the smaller ones (PlacementView). The driver looks every
// placement_interval; moves run on their own threads, those that make
// lost or drained replicas again side by side (kPlacementMovesInFlight), a
// balancing move only when no other runs, and a range whose move failed
// rests a while. A draining member (Drain; recorded in the
// meta range) is treated like a down one, except that it still serves: its
// replicas move to the others, the meta range's too (or, when every other
// member holds one, it is only removed, down to replicas_per_range), and the
// driver and the balancers give it no replica and no leadership; it hands
// every leadership it has to the others itself (elections and splits may
// still give it some, which it sheds again). Leaders are balanced by every
// node on its own, first by load: one whose led ranges serve over a fifth
// more requests than the members' mean, for a load window, hands one busy
// range's leadership to a member holding a caught-up voter of it that then
// serves no more than this node (ChooseLoadHandover); not while its loads
// are in flux (lately it gained the leadership of a replica it held, or
// handed a busy range over). Then by count: one that leads at least two
// ranges more than such a member hands over a range that keeps the load
// even (the coldest first, none it gained lately), and
// goes on with the counts as they will be (up to 32 ranges a look), then
// waits two status intervals for the reported counts to catch up.
//
// Merge joins a range L with its right-hand neighbour R, in their own logs
// (serverpb.MergeCommand): R's replicas are first moved onto L's nodes,
// L is prepared (it is not frozen, split or moved meanwhile), R is frozen
// (it serves nothing; requests wait), and once every node of L has applied
// the freeze (RangeApplied), L takes R's span in; every node drops its
// replica of R as it applies that, keeping the data, which is L's now.
// When the merge cannot go on, L is fenced (no merge decided before can
// apply) and R thawed; a merge left half-done for kMergeAbandoned (its
// coordinator died) is settled that way by the node of either side's
// leader, which holds both (neither side moves meanwhile). The
// splitter merges a range with its neighbour when both are small and cold
// (merge_bytes, a quarter of split_qps between them) and the neighbour's
// start is not sticky (chosen by hand: a split asked for, a new cluster's
// initial ranges). A node that missed a merge (it received a snapshot of
// the wider L) drops its copy of R as the snapshot installs.
//
// Routing. The meta range holds the range map: a record per user range,
// under kRangeMapPrefix + its end key, holding its descriptor. A new
// cluster starts with its initial ranges' records; afterwards the node of a
// range's leader rewrites the range's record whenever its descriptor's
// generation is newer than the record's (after a split, a move), with a
// conditional put (the reporter thread, every second and at once after a
// change). A request for a key whose range has no replica here is
// forwarded (RangeForwarder) to a node holding one, found in the range map
// (the first record whose end key is past the key; cached, and read again
// when a node refuses); a scan or range delete forwards each part it cannot
// serve here. A forwarded request is never forwarded again (Route::kLocal).
//
// Writes go through the key's range: any replica may propose (a follower's
// core forwards to the leader) and the caller is answered once this replica
// applied the write. Reads are linearizable: a read round on the range, then
// the newest versions. A write or a read that reaches a range after a split
// moved its key away (the range refuses it with kOutOfRange, having changed
// nothing) is retried on the key's new range; scans and range deletes walk
// the ranges by key, so each key is seen once whatever splits meanwhile.
//
// Thread-safety: every method is thread-safe; callbacks run on the host's
// threads and must not block. The blocking ones (DeleteRange, Scan, Split,
// MoveReplica) must not run on the host's threads.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "base/random.h"
#include "base/status.h"
#include "base/worker_pool.h"
#include "conclave/kvpb/kv.pb.h"
#include "conclave/serverpb/server.pb.h"
#include "keys/keys.h"
#include "server/host.h"
#include "server/range_state_machine.h"
#include "server/replica.h"

namespace conclave::server {

// Range ids below this are kept for the node's own groups (1: the etcd
// keyspace) and the meta range.
inline constexpr keys::RangeId kMetaRangeId = 2;
inline constexpr keys::RangeId kFirstRangeId = 16;
// A range splits by size at 64 MiB: a snapshot of it (what a new replica
// or a lagging one receives, in full) then takes about two seconds at a
// throttled 32 MiB/s, and a node of a few hundred GiB holds thousands of
// ranges to balance. By load at 3,000 requests per second over 10 s, as
// TiKV does.
inline constexpr uint64_t kDefaultSplitBytes = 64ull << 20;
inline constexpr uint64_t kDefaultSplitQps = 3'000;
// Replicas of each range: three survive one node's loss.
inline constexpr int kDefaultRangeReplicas = 3;
// Moves the placement driver runs at once, at most: replicas lost with a
// member are made again side by side, so that one slow move (a snapshot
// to a full disk, a range without a leader) holds none of the others up.
inline constexpr size_t kPlacementMovesInFlight = 4;
// The meta range's counter of range ids: the next id to hand out, in
// decimal. Absent until the first split.
inline constexpr std::string_view kNextRangeIdKey = "\xff\xffmeta/next_range_id";
// The range map's records: this prefix, then the range's end key.
inline constexpr std::string_view kRangeMapPrefix = "\xff\xffmeta/range/";

// Whether a request may be sent on to another node.
enum class Route {
  kAny,    // from a client: forwarded when this node holds no replica
  kLocal,  // forwarded here already: served here or refused
};

// Sends native KV calls to another node (the server's transport, to the
// node's peer listener, where they are served with Route::kLocal). The
// asynchronous ones call `done` once, on any thread; it must not block.
class RangeForwarder {
 public:
  virtual ~RangeForwarder() = default;
  virtual void Put(uint64_t node, const kvpb::PutRequest& req,
                   std::function<void(Result<kvpb::PutResponse>)> done) = 0;
  virtual void Delete(uint64_t node, const kvpb::DeleteRequest& req,
                      std::function<void(Result<kvpb::DeleteResponse>)> done) = 0;
  virtual void Get(uint64_t node, const kvpb::GetRequest& req,
                   std::function<void(Result<kvpb::GetResponse>)> done) = 0;
  virtual Result<kvpb::ScanResponse> Scan(uint64_t node, const kvpb::ScanRequest& req) = 0;
  virtual Result<kvpb::DeleteRangeResponse> DeleteRange(uint64_t node,
                                                        const kvpb::DeleteRangeRequest& req) = 0;
  virtual Result<kvpb::SplitResponse> Split(uint64_t node, const kvpb::SplitRequest& req) = 0;
  virtual Result<kvpb::MergeResponse> Merge(uint64_t node, const kvpb::MergeRequest& req) = 0;
  // Has `node` finish a read round on its replica of range `id` and return
  // the index it has applied, with the replica's generation (kNotFound: it
  // holds none).
  virtual Result<serverpb::RangeAppliedResponse> RangeApplied(uint64_t node, keys::RangeId id) = 0;
  // The ranges `node` holds, as it sees them.
  virtual Result<kvpb::RangesResponse> Ranges(uint64_t node) = 0;
  // Asks `node` to coordinate a replica move (it holds a voter of the
  // range); the deadline allows for the new replica's catch-up.
  virtual void MoveReplica(uint64_t node, const kvpb::MoveReplicaRequest& req,
                           std::function<void(Result<kvpb::MoveReplicaResponse>)> done) = 0;
  // Asks `node` (the one named to lead) to take a range's leadership.
  virtual Result<kvpb::TransferLeaderResponse> TransferLeader(
      uint64_t node, const kvpb::TransferLeaderRequest& req) = 0;
};

using NodeLabels = google::protobuf::RepeatedPtrField<kvpb::Label>;

// How far apart two nodes' labels (most general first) place them, over
// the labels both have under the same keys in the same places: 0 when they
// agree on all of them (or have none in common: where an unlabelled node
// is, is not known), 1 when they differ from the first on, and in between
// the share of them after the ones they agree on (zone=a,rack=1 and
// zone=a,rack=2: 1/2).
double Apart(const NodeLabels& a, const NodeLabels& b);

// Ranges smaller than this are left out of the members' statuses (their
// moves barely change a member's bytes).
inline constexpr uint64_t kSizedRangeBytes = 1 << 20;

// Where the placement driver puts replicas: the members that may take one,
// with the replicas and the bytes each holds, every node's labels, and the
// sizes of the ranges of at least kSizedRangeBytes.
struct PlacementView {
  std::map<uint64_t, size_t> count;
  std::map<uint64_t, uint64_t> bytes;
  std::map<uint64_t, NodeLabels> labels;
  std::map<keys::RangeId, uint64_t> range_bytes;
  // Members a range's replica recently failed to move to: not chosen again
  // for that range for a while.
  std::map<keys::RangeId, std::set<uint64_t>> avoid;

  struct Move {
    keys::RangeId range_id = 0;
    uint64_t from = 0;
    uint64_t to = 0;
  };
  // A move of a sized range's replica that brings the members with the
  // most and the fewest bytes closer (by less than their gap, the nearest
  // to half of it), when they differ by more than a tenth of the most or
  // kSizedRangeBytes; ranges in `busy` stay.
  std::optional<Move> EvenBytes(const std::vector<keys::RangeDescriptor>& map,
                                const std::set<keys::RangeId>& busy) const;
  // A move of an unsized range's replica from a member holding at least
  // two replicas more than another to that one: the fullest member first,
  // to the emptiest that can take one.
  std::optional<Move> EvenCounts(const std::vector<keys::RangeDescriptor>& map,
                                 const std::set<keys::RangeId>& busy) const;

  // How far `node` is from the replicas of `d` other than the one on
  // `without` (the sum of Apart).
  double Spread(const keys::RangeDescriptor& d, uint64_t node, uint64_t without) const;
  // The member without a replica of `d` to take the one on `from`: the one
  // farthest from the rest, then the one holding the fewest, one avoided
  // for `d` only when there is no other (0: none).
  uint64_t Target(const keys::RangeDescriptor& d, uint64_t from) const;
  // Whether moving `d`'s replica on `from` to `to` leaves the replicas at
  // least as far apart (`better`: farther apart).
  bool Spreads(const keys::RangeDescriptor& d, uint64_t from, uint64_t to, bool better) const;
};

// Leaders by load: a range this node leads, the requests per second it
// serves, and the members that could take its leadership (each holding a
// caught-up voter of it: node id, replica id).
struct LedRange {
  keys::RangeId range_id = 0;
  double load = 0;
  std::vector<std::pair<uint64_t, raft::NodeId>> takers;
};
// Below this many requests per second a range's load is noise: counts alone
// decide where its leadership goes.
inline constexpr double kLeaderLoadFloor = 10;
struct LeaderHandover {
  size_t index = 0;  // into the led ranges
  uint64_t node = 0;
  raft::NodeId replica = 0;
};
// Whether this node, serving `mine` requests per second as leader, should
// hand one range's leadership to another member (`loads`: the others'
// leaders' requests per second) to even the load out: only when it serves
// over a fifth more than the members' mean (and kLeaderLoadFloor more), and
// only a range whose taker then serves no more than this node does. Of
// those, the one that leaves the busier of the two least busy.
std::optional<LeaderHandover> ChooseLoadHandover(double mine,
                                                 const std::map<uint64_t, double>& loads,
                                                 const std::vector<LedRange>& led);
// Whether handing a range serving `load` to a member serving `theirs` keeps
// the load even enough for a hand-over made by count (a cold range always).
bool CountHandoverKeepsLoad(double mine, double theirs, double load);

// The range map's key for a range ending at `end_key`.
std::string RangeMapKey(std::string_view end_key);
// Where node `node_id` reports its status (serverpb.NodeStatus).
inline constexpr std::string_view kNodeStatusPrefix = "\xff\xffmeta/node/";
std::string NodeStatusKey(uint64_t node_id);
// A member being drained has a record under this prefix (see Drain). The
// meta keys from here to the node statuses' end are read together.
inline constexpr std::string_view kDrainPrefix = "\xff\xffmeta/drain/";
std::string DrainKey(uint64_t node_id);
// The recent splits, merges and moves (serverpb.RangeEvent), after the
// range map's records.
inline constexpr std::string_view kEventPrefix = "\xff\xffmeta/timeline/";

struct NativeKeyspaceOptions {
  // A new cluster: divide the keyspace into this many ranges (0: none).
  int64_t initial_ranges = 0;
  // The cluster's initial members (node ids), over which the ranges'
  // replicas are spread, replicas_per_range each (at most one per member).
  std::vector<uint64_t> initial_members;
  int replicas_per_range = kDefaultRangeReplicas;
  // Where this node is (key, value), most general first; reported with its
  // status, and the placement driver spreads each range's replicas over
  // nodes whose labels differ (see Apart).
  std::vector<std::pair<std::string, std::string>> labels;
  // Whether a node id names a member a replica may move to (unset: any).
  std::function<bool(uint64_t)> node_known;
  // How long a replica being added may take to catch up (receive its
  // snapshot and the log) before the move gives up and removes it again;
  // with snapshots paced (snapshot_bytes_per_second, as the member sends
  // them), plus the time the range's data takes at that pace once for
  // every move that may share it (kPlacementMovesInFlight).
  Duration catch_up_timeout = std::chrono::seconds(60);
  uint64_t snapshot_bytes_per_second = 0;
  // Whether leaders are balanced by load before count (see the file
  // comment), or by count only.
  bool leaders_by_load = true;
  // The cluster's voting members now (unset: the initial ones): where the
  // placement driver may put replicas.
  std::function<std::vector<uint64_t>()> members;
  // Whether a node was removed from the cluster for good (unset: none is):
  // its replicas are made again elsewhere at once.
  std::function<bool(uint64_t)> removed;
  // Every node reports its status to the meta range this often; the
  // placement driver (on the meta range's leader) looks this often, takes a
  // node whose report has not changed for replica_down_time for down and
  // re-creates its replicas elsewhere (0: never; a node removed from the
  // cluster's are re-created at once all the same), and otherwise spreads
  // the ranges' replicas by the labels and evens out the nodes' bytes and
  // replica counts (placement_interval 0: no placement driver).
  Duration status_interval = std::chrono::seconds(3);
  Duration placement_interval = std::chrono::seconds(2);
  Duration replica_down_time = std::chrono::minutes(5);
  // Timing and limits for every range's replica (group, ids and placement
  // are filled in per range).
  ReplicaOptions replica;
  // Split a range once its data holds about this many bytes (0: never).
  uint64_t split_bytes = kDefaultSplitBytes;
  // Split a range that serves more requests per second than this here,
  // over one window, at the key that halves them (0: never).
  uint64_t split_qps = kDefaultSplitQps;
  // Merge a range with its right-hand neighbour when their data together
  // is below this many bytes and a quarter of split_bytes (0: never), and
  // their load below a quarter of split_qps.
  uint64_t merge_bytes = kDefaultSplitBytes / 4;
  // How often ranges are checked for a split, and the load's window.
  Duration load_window = std::chrono::seconds(10);
  // Test only (--unsafe-test-bug=scan-skips-boundary): a scan going on into
  // the next range starts just past its start key (skipping the key there).
  bool test_bug_scan_skips_boundary = false;
};

// A range's load as this node sees it: the requests it served here, and a
// sample of their keys over the current window (where a load split cuts).
class RangeLoad {
 public:
  // `now`: when the first window starts (the host's monotonic clock).
  explicit RangeLoad(Duration now) : window_start_(now) {}
  void Record(std::string_view key);
  struct Window {
    double requests_per_second = 0;
    std::vector<std::string> keys;  // sampled, sorted
  };
  // Ends the window at `now`: its rate and its sample.
  Window Roll(Duration now);
  // The rate over the last window that ended.
  double requests_per_second() const;
  // The splitter's back-off: after a split that could not be made, the
  // range is left alone for a few windows.
  bool Resting();
  void Rest(int windows);
  // How many windows have ended (a range's load is known after one).
  int windows() const;

 private:
  static constexpr size_t kSamples = 256;
  mutable std::mutex mu_;
  Duration window_start_;             // guarded by mu_
  int rest_windows_ = 0;              // guarded by mu_
  uint64_t count_ = 0;                // this window's requests; guarded by mu_
  std::vector<std::string> samples_;  // reservoir; guarded by mu_
  RealRandom random_;                 // guarded by mu_
  double last_rate_ = 0;              // guarded by mu_
  int windows_ = 0;                   // guarded by mu_
};

// The evenly spaced ranges a new cluster starts with, `replicas` each,
// then the meta range (on every member).
std::vector<keys::RangeDescriptor> InitialRanges(int64_t count, std::vector<uint64_t> members,
                                                 int replicas = kDefaultRangeReplicas);

// One page of a scan.
struct ScanPage {
  std::vector<RangeValue> kvs;
  // Keys of the span may remain from resume_key on.
  bool more = false;
  std::string resume_key;
};

class NativeKeyspace {
 public:
  struct Range {
    std::shared_ptr<Replica> replica;
    RangeStateMachine* sm = nullptr;
    std::shared_ptr<RangeLoad> load;
  };
  ~NativeKeyspace();

  // Adds a replica to `host` for every range the engine holds; when it holds
  // none and `bootstrap` is set, creates options.initial_ranges ranges.
  static Result<std::unique_ptr<NativeKeyspace>> Open(Host* host, uint64_t node_id,
                                                      const NativeKeyspaceOptions& options,
                                                      bool bootstrap);

  uint64_t node_id() const { return node_id_; }
  // The range holding `key`; kNotFound when this node holds none.
  Result<Range> Find(std::string_view key) const;
  // Range `id`, when this node holds it.
  Result<Range> FindById(keys::RangeId id) const;
  std::vector<Range> All() const;
  size_t size() const;

  using WriteDone = std::function<void(Result<RangeWriteResult>, keys::RangeId)>;
  // A put or a delete, with the request's precondition if it has one.
  void Put(kvpb::PutRequest request, WriteDone done, Route route = Route::kAny);
  void Delete(kvpb::DeleteRequest request, WriteDone done, Route route = Route::kAny);
  // Deletes the live keys of [start, end) (end empty: no bound), one range
  // after another, each range's part atomic; blocks until all are done.
  // Returns how many keys it deleted.
  Result<uint64_t> DeleteRange(const std::string& start, const std::string& end,
                               Route route = Route::kAny);
  using ReadDone = std::function<void(Result<std::optional<RangeValue>>, keys::RangeId)>;
  void Get(std::string key, ReadDone done, Route route = Route::kAny);
  // The live keys of [start, end) in order, at most `limit`, each range
  // read after its own read round; blocks.
  Result<ScanPage> Scan(const std::string& start, const std::string& end, size_t limit,
                        Route route = Route::kAny);

  // Where requests for ranges held elsewhere go (unset: nowhere; they fail
  // with kNotFound). Set before serving.
  void SetForwarder(RangeForwarder* forwarder) { forwarder_ = forwarder; }
  // The range holding `key` as the range map says (cached unless `fresh`).
  // kUnavailable when this node holds no replica of the meta range or the
  // map has no record for the key yet.
  Result<keys::RangeDescriptor> Locate(std::string_view key, bool fresh = false);
  // Every record of the range map, in key order (a linearizable read of
  // the meta range; kUnavailable when this node holds no replica of it).
  Result<std::vector<keys::RangeDescriptor>> RangeMap();
  // Splits the range holding `key` at `key` (see the file comment); blocks
  // until this node applied the split. Returns the left and right ranges.
  Result<std::pair<keys::RangeDescriptor, keys::RangeDescriptor>> Split(const std::string& key);
  // Split, asked of a node holding the key's range (when this one holds
  // none: Split's kNotFound with reason kGroupNotFound).
  Result<kvpb::SplitResponse> ForwardSplit(const std::string& key);
  // Merges the range holding `key` with its right-hand neighbour (see the
  // file comment); blocks until this node applied the merge. Returns the
  // merged range.
  Result<keys::RangeDescriptor> Merge(const std::string& key);
  // Merge, asked of a node holding the key's range.
  Result<kvpb::MergeResponse> ForwardMerge(const std::string& key);

  // Moves range `id`'s replica from node `from` to node `to` (see the file
  // comment); blocks until the old replica is removed. Coordinated here:
  // this node must hold a voter of the range, and takes its leadership.
  // Returns the range's descriptor after the move.
  Result<keys::RangeDescriptor> MoveReplica(keys::RangeId id, uint64_t from, uint64_t to);

  // Makes node `to`'s voter of range `id` the range's leader, and waits (up
  // to the request timeout) until it is. Done here when this node leads the
  // range (it hands over); otherwise, with `may_forward`, asked of the
  // leader's node, or of `to` when no leader is known; `to` itself, asked
  // without a known leader, takes the lead. Not while the range is being
  // moved or merged. Returns the range as this node sees it afterwards.
  Result<kvpb::TransferLeaderResponse> TransferLeader(keys::RangeId id, uint64_t to,
                                                      bool may_forward);

  // The members and what each last reported to the meta range (a
  // linearizable read there, through a member holding it when this one
  // does not), by node id. A node that reported but is no longer a member
  // is left out.
  struct NodeReport {
    uint64_t node_id = 0;
    std::optional<serverpb::NodeStatus> status;  // none: never reported
    Duration age{0};  // since the report was written, by this node's clock
    enum class State { kUp, kLate, kDown, kUnreported } state = State::kUnreported;
    bool draining = false;
  };
  Result<std::vector<NodeReport>> Nodes();

  // A range as kvpb.RangeInfo: its descriptor, and with `here` (this
  // node's replica) its leader, applied index, size and load.
  static void Describe(const keys::RangeDescriptor& d, const Range* here, kvpb::RangeInfo* info);
  static void Describe(const NodeReport& n, kvpb::NodeInfo* info);
  // The newest `limit` splits, merges and moves, oldest first.
  Result<std::vector<serverpb::RangeEvent>> RecentEvents(size_t limit);
  // The members, the first `max_ranges` ranges of the range map (each as
  // the node of its leader sees it, asked when it is another), and the
  // recent events: what the web page shows.
  Result<serverpb::ClusterView> View(size_t max_ranges);

  // Starts draining member `node` (records it in the meta range; see the
  // file comment), or with `cancel` ends its drain (any node's record).
  // kNotFound for a node that is not a member; kFailedPrecondition when
  // fewer than replicas_per_range members would be left not draining.
  Status Drain(uint64_t node, bool cancel);

  // Starts the threads that split ranges by size and load and keep the
  // range map up to date; Stop ends them (call it before the host stops,
  // and Join after).
  void StartSplitting();
  void Stop();
  void Join();

  // What the splitter did (for tests and metrics).
  struct SplitStats {
    uint64_t by_size = 0;
    uint64_t by_load = 0;
    uint64_t failed = 0;
    uint64_t replicas_moved = 0;         // moves this node coordinated
    uint64_t replicas_removed = 0;       // this node's replicas removed
    uint64_t forwarded = 0;              // requests sent on to another node
    uint64_t rereplicated = 0;           // placement: replicas re-created off down or removed nodes
    uint64_t rebalanced = 0;             // placement: replicas moved to even out the nodes
    uint64_t leaders_moved = 0;          // leaderships handed off to even out the nodes
    uint64_t leaders_moved_by_load = 0;  // of which, to even out their load
    uint64_t drained = 0;                // placement: replicas moved or removed off draining nodes
    uint64_t merged = 0;                 // merges this node coordinated
    uint64_t merges_failed = 0;          // merges it gave up (and called off)
    uint64_t spread = 0;                 // placement: replicas moved farther apart (labels)
  };
  SplitStats split_stats() const;

 private:
  NativeKeyspace(Host* host, uint64_t node_id, NativeKeyspaceOptions options)
      : host_(host), node_id_(node_id), options_(std::move(options)) {}
  // `initial`: keys a range being created starts with.
  Status AddRange(const keys::RangeDescriptor& d, bool create, bool campaign = false,
                  std::map<std::string, std::string> initial = {});
  // The split and snapshot handlers of a range's state machine.
  void SetHandlers(RangeStateMachine* sm);
  // Files the range under its start key once a snapshot gave it one.
  void Reindex(RangeStateMachine* sm);
  // The replicas handler: `after` names no replica here, so this node's
  // copy goes (apply thread).
  Status OnReplicasChanged(RangeStateMachine* sm, const keys::RangeDescriptor& after);
  // Deletes this node's copy of `sm`'s range (as `after` describes it) and
  // takes its replica off the host (apply thread).
  Status Discard(RangeStateMachine* sm, const keys::RangeDescriptor& after);
  // The merge handlers: `right`'s replica here goes (apply thread), and a
  // freeze or thaw applied to `d`.
  Status OnMerged(const keys::RangeDescriptor& right);
  void OnFrozenChanged(const keys::RangeDescriptor& d);
  // Drops this node's replica of `sm`'s range, which a merge took in: its
  // records go, its data stays (apply thread).
  void DropMerged(RangeStateMachine* sm);
  // Requests that met frozen range `id` retry once it thaws or is merged
  // away, or after a second at most (Park); blocking callers wait
  // (AwaitThaw).
  void Park(keys::RangeId id, std::function<void()> retry);
  void Thaw(keys::RangeId id);
  void AwaitThaw(keys::RangeId id);
  // Releases the parked requests of ranges that took too long.
  void ReleaseParked();
  // The merge's steps after the freeze; on failure the caller calls it
  // off.
  Result<keys::RangeDescriptor> FinishMerge(const Range& left, const keys::RangeDescriptor& l,
                                            const Range& right, const keys::RangeDescriptor& frozen,
                                            uint64_t freeze_index);
  // Fences left range `left_id` and, when it has not taken range
  // `right_id` (starting at `right_start`) in, thaws that one if it is
  // frozen into it. Whether the merge happened after all.
  Result<bool> CallOffMerge(keys::RangeId left_id, keys::RangeId right_id,
                            const std::string& right_start);
  // Settles the merges this node holds a side of that have waited longer
  // than kMergeAbandoned (their coordinator died); on settle_pool_, posted
  // by the reporter thread.
  void SettleMerges();
  // Moves R's replicas onto L's nodes.
  Status Colocate(const keys::RangeDescriptor& l, keys::RangeDescriptor* r);
  // Checks `r` for a merge with its right-hand neighbour (splitter thread).
  void CheckMerge(const Range& r);
  // Deletes the copies of ranges that the range map has, at a later
  // generation, without this node (reporter thread).
  void CollectStale();
  // MoveReplica's work; `to` 0: only removes the replica on `from` (not
  // this node's).
  Result<keys::RangeDescriptor> Relocate(keys::RangeId id, uint64_t from, uint64_t to);
  // The meta range's replicas on removed members go to members without
  // one, and those on draining members too or, when there is none, are
  // removed while replicas_per_range live voters stay. Whether it changed
  // one. (Not off members merely down: the meta range is not in the range
  // map, so a member that missed its replica's removal would never learn
  // of it; a removed member never comes back.)
  // `targets`: the live members not draining, where a replica may go.
  bool PlaceMeta(const Range& meta, const std::function<bool(uint64_t)>& removed,
                 const std::set<uint64_t>& live, const std::set<uint64_t>& draining,
                 const PlacementView& view);
  // The cluster's voting members now (options_.members, else the initial ones).
  std::vector<uint64_t> Members() const;
  // The draining members, from the meta keys [kDrainPrefix, node statuses' end).
  static std::set<uint64_t> DrainingIn(const std::vector<RangeValue>& meta_keys);
  // One configuration change of `r` (on its leader), waited for here.
  Status ChangeReplicas(const Range& r, raft::ConfChangeType type, raft::NodeId replica,
                        uint64_t node);
  // The same, again while Raft refuses it for another change in flight.
  Status ChangeReplicasRetrying(const Range& r, raft::ConfChangeType type, raft::NodeId replica,
                                uint64_t node);
  // The host's replica maker: a range's replica that waits for the
  // snapshot a leader is sending (this node missed the split that made the
  // range, or the range is being placed here).
  std::shared_ptr<Replica> MakeReplica(raft::GroupId group, raft::NodeId replica_id,
                                       raft::NodeId from_replica, uint64_t from_node);
  // `waits`: how often the request waited for a frozen range.
  void Write(std::string key, serverpb::RangeCommand command, WriteDone done, int attempt,
             Route route, int waits = 0);
  void GetAttempt(std::string key, ReadDone done, int attempt, int waits = 0);
  // The nodes holding replicas of `d` other than this one, voters first.
  std::vector<uint64_t> Holders(const keys::RangeDescriptor& d) const;
  // Sends `call` for `key` to a node holding its range: holder `attempt`
  // of the located range (located afresh after the first attempt). `call`
  // gets the node and a callback taking whether to try the next holder.
  // `idempotent`: may go to the next holder after one that could not be
  // reached (reads). The range map is read on the routing pool.
  using ForwardCall = std::function<void(uint64_t node, std::function<void(Status)> retry)>;
  void Forward(std::string key, int attempt, bool idempotent, ForwardCall call,
               std::function<void(Status)> fail);
  // A put or a delete for a range held elsewhere.
  void ForwardWrite(std::string key, serverpb::RangeCommand command, WriteDone done);
  // A scan's or a range delete's part [cursor, part end) on another node
  // (`idempotent`: may be sent to the next holder after an unreachable one).
  template <typename Response>
  Result<Response> ForwardSpan(
      const std::string& cursor, bool idempotent, std::string* part_end,
      const std::function<Result<Response>(uint64_t node, const std::string& end)>& call,
      const std::string& end);
  // Records a split, merge or move in the meta range (best effort), and
  // keeps the newest kEventsKept there (TrimEvents, placement driver).
  void RecordEvent(serverpb::RangeEvent e);
  void TrimEvents();
  // Writes this node's status into the meta range (through a member that
  // holds it, when this one does not).
  Status ReportStatus();
  // The placement driver (see NativeKeyspaceOptions): its thread, and one
  // look at the cluster, which starts moves on place_pool_ (repairs side by
  // side, up to kPlacementMovesInFlight; a balancing move only alone).
  void PlaceLoop();
  void PlaceOnce();
  // Starts moving `d`'s replica on `from` to `to` on place_pool_; `done`
  // counts it once it is made.
  void StartMove(const keys::RangeDescriptor& d, uint64_t from, uint64_t to,
                 std::set<uint64_t> live, std::set<uint64_t> draining, std::atomic<uint64_t>* done);
  // Hands one range's leadership to a member that leads fewer (see the
  // file comment); on every node, placer thread.
  void BalanceLeaders();
  // Whether a move coordinated here is changing range `id`.
  bool Moving(keys::RangeId id) const;
  // Has a member holding a voter of `d` (this one, if it can) move the
  // replica on `from` to `to`.
  // *generation: the range's generation after the move.
  Status MoveVia(const keys::RangeDescriptor& d, uint64_t from, uint64_t to,
                 const std::set<uint64_t>& live, const std::set<uint64_t>& draining,
                 uint64_t* generation);
  bool Stopping();
  // The meta range's keys, read linearizably here or, when this node holds
  // no replica of it, through a member that does (and written likewise).
  Result<std::vector<RangeValue>> MetaScan(const std::string& start, const std::string& end,
                                           size_t limit, bool* more);
  Status MetaPut(kvpb::PutRequest put);
  Status MetaDelete(kvpb::DeleteRequest del);
  // A write to the meta range proposed here, or `send` to members in turn
  // (AskMetaHolder) when this node holds no replica of it.
  template <typename Response>
  Status MetaWrite(
      serverpb::RangeCommand c,
      const std::function<void(uint64_t member, std::function<void(Result<Response>)>)>& send);
  // `call` on each other member in turn (the last that answered first),
  // until one that holds the meta range answers.
  template <typename Response>
  Result<Response> AskMetaHolder(const std::function<Result<Response>(uint64_t member)>& call);
  // The cached range holding `key`, if any (never blocks).
  std::optional<keys::RangeDescriptor> CachedRoute(std::string_view key) const;
  // Forwards to holder `attempt` of `d`.
  void ForwardTo(const keys::RangeDescriptor& d, std::string key, int attempt, bool idempotent,
                 ForwardCall call, std::function<void(Status)> fail);
  // Writes `r`'s descriptor into the range map unless the map has it (or
  // newer) already.
  Status Report(const Range& r);
  // Deletes the range map's records that end inside `d` and are older: the
  // ranges a merge took in.
  Status DropInnerRecords(const keys::RangeDescriptor& d);
  void ReportLoop();
  // Wakes the reporter (a range changed here).
  void ReportSoon();
  // Proposes `c` to `r` and waits for it to apply here; its own refusal
  // is the error.
  Result<RangeWriteResult> ProposeAndWait(const Range& r, serverpb::RangeCommand c);
  // Takes the next range id from the meta range's counter.
  Result<keys::RangeId> AllocateRangeId();
  // One split of `r` at `key`, if its descriptor is still at `generation`.
  Result<RangeWriteResult> SplitOnce(const Range& r, const std::string& key, uint64_t generation,
                                     bool sticky = false);
  void SplitLoop();
  // Checks one range for a split by load, then by size.
  void CheckRange(const Range& r);

  Host* const host_;
  const uint64_t node_id_;
  const NativeKeyspaceOptions options_;
  // Serializes making replicas (split handler, replica maker); before mu_.
  std::mutex make_mu_;
  mutable std::mutex mu_;
  std::map<std::string, Range> by_start_;  // guarded by mu_
  // Replicas waiting for their first snapshot, by range id.
  std::map<keys::RangeId, Range> waiting_;  // guarded by mu_
  // Ranges a move coordinated here is changing.
  std::set<keys::RangeId> moving_;  // guarded by mu_

  std::mutex split_mu_;
  std::condition_variable split_cv_;
  bool stopping_ = false;  // guarded by split_mu_
  std::thread splitter_;
  std::thread reporter_;
  std::thread placer_;
  uint64_t status_sequence_ = 0;  // reporter thread only
  // Placer thread only: each node's last status sequence, and when it was
  // first seen (the host's monotonic clock).
  std::map<uint64_t, std::pair<uint64_t, Duration>> seen_;
  // The driver's moves by range: running, made (the range map's record
  // must reach `generation`; the driver counts the move as made until
  // then, or until `until`), or failed (the range rests until `until`).
  struct PlacementMove {
    uint64_t from = 0;
    uint64_t to = 0;
    bool running = true;
    uint64_t generation = 0;  // 0: not made
    Duration until{0};
  };
  std::mutex place_mu_;
  std::condition_variable place_cv_;
  std::map<keys::RangeId, PlacementMove> placing_;  // guarded by place_mu_
  Duration last_move_end_{0};                       // guarded by place_mu_
  // Targets that a range's move failed to reach, until when they are
  // avoided for it.
  std::map<keys::RangeId, std::map<uint64_t, Duration>> avoid_;  // guarded by place_mu_
  // Placer thread only: no leadership handed off before then.
  Duration leaders_rest_until_{0};
  // Placer thread only: no hand-over by load before then.
  Duration leaders_load_rest_until_{0};
  // Placer thread only: since when each range has been led here, and since
  // when the load has looked uneven enough for a hand-over.
  std::map<keys::RangeId, Duration> led_since_;
  std::set<keys::RangeId> held_;  // the ranges held here at the last look
  std::optional<Duration> load_uneven_since_;
  // Placer thread only: when the events are trimmed next.
  Duration trim_events_at_{0};
  // The member that last answered for the meta range.
  std::atomic<uint64_t> meta_member_{0};
  bool report_now_ = false;  // guarded by split_mu_
  // Reporter thread only: the generation last reported per range.
  std::map<keys::RangeId, uint64_t> reported_;
  RangeForwarder* forwarder_ = nullptr;
  // The range map as last read, by end key.
  mutable std::mutex routes_mu_;
  std::map<std::string, keys::RangeDescriptor> routes_;  // guarded by routes_mu_
  std::atomic<uint64_t> splits_by_size_{0};
  std::atomic<uint64_t> splits_by_load_{0};
  std::atomic<uint64_t> splits_failed_{0};
  std::atomic<uint64_t> replicas_moved_{0};
  std::atomic<uint64_t> replicas_removed_{0};
  std::atomic<uint64_t> forwarded_{0};
  std::atomic<uint64_t> rereplicated_{0};
  std::atomic<uint64_t> rebalanced_{0};
  std::atomic<uint64_t> spread_{0};
  std::atomic<uint64_t> leaders_moved_{0};
  std::atomic<uint64_t> leaders_moved_by_load_{0};
  std::atomic<uint64_t> drained_{0};
  std::atomic<uint64_t> merged_{0};
  std::atomic<uint64_t> merges_failed_{0};
  // Requests waiting for frozen ranges, by range id, with when they parked.
  std::mutex thaw_mu_;
  std::condition_variable thaw_cv_;
  std::map<keys::RangeId, std::vector<std::pair<Duration, std::function<void()>>>>
      parked_;          // guarded by thaw_mu_
  uint64_t thaws_ = 0;  // guarded by thaw_mu_
  // settle_pool_ only: when each range was first seen frozen or prepared
  // for a merge (by id, with that generation), and when a settle that
  // failed is tried again.
  std::map<keys::RangeId, std::pair<uint64_t, Duration>> merging_since_;
  std::map<keys::RangeId, Duration> settle_again_at_;
  std::atomic<bool> settling_{false};
  // Splitter thread only: no automatic merge of a range before then (one
  // failed).
  std::map<keys::RangeId, Duration> merge_rest_until_;
  // Forwarding work that waits on the meta range (last: its threads stop
  // first).
  WorkerPool route_pool_{2, "kv-route"};
  // Settling abandoned merges and recording events in the meta range:
  // work that may wait seconds, off the reporter and the movers.
  WorkerPool settle_pool_{1, "kv-settle"};
  // The placement driver's moves (StartMove).
  WorkerPool place_pool_{kPlacementMovesInFlight, "kv-place"};
};

}  // namespace conclave::server
