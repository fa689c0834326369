// member, endpoint, snapshot save, defrag, alarm and move-leader: the
// commands for running a cluster.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cstdio>
#include <future>
#include <initializer_list>

#include "cli/client_common.h"

namespace conclave::cli {
namespace {

using Clock = std::chrono::steady_clock;
namespace pb = etcdserverpb;

// The member commands take the IDs that `member list` prints (hex).
Result<uint64_t> ParseMemberArg(const std::string& text) {
  auto id = ParseHexId(text);
  if (!id.ok()) {
    return Status::InvalidArgument(
        fmt::format("bad member ID arg ({}), expecting ID in Hex", text));
  }
  return *id;
}

std::vector<std::string> SplitUrls(const std::string& list) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= list.size()) {
    size_t end = list.find(',', start);
    if (end == std::string::npos) end = list.size();
    if (end > start) out.push_back(list.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

// A list command's answer: the message as JSON, or one row per item as a
// table or comma-separated lines.
void PrintRows(OutputFormat format, const google::protobuf::Message& answer,
               const std::vector<std::string>& columns,
               const std::vector<std::vector<std::string>>& rows) {
  switch (format) {
    case OutputFormat::kJson:
      std::printf("%s\n", ToJson(answer).c_str());
      break;
    case OutputFormat::kTable:
      std::fputs(FormatTable(columns, rows).c_str(), stdout);
      break;
    case OutputFormat::kSimple:
      for (const auto& row : rows)
        fmt::print("{}\n", fmt::join(row, ", "));
      break;
  }
}

// ---- member ----------------------------------------------------------------

std::vector<std::string> MemberRow(const pb::Member& m) {
  return {fmt::format("{:x}", m.id()),
          m.name().empty() ? "unstarted" : "started",
          m.name(),
          fmt::format("{}", fmt::join(m.peerurls(), ",")),
          fmt::format("{}", fmt::join(m.clienturls(), ",")),
          m.islearner() ? "true" : "false"};
}

int MemberList(Env& env) {
  int code = 0;
  auto c = env.Connect(&code);
  if (c == nullptr) return code;
  auto r = c->MemberList();
  if (!r.ok()) return FailCall(r.status());
  std::vector<std::vector<std::string>> rows;
  for (const auto& m : r->members())
    rows.push_back(MemberRow(m));
  PrintRows(env.format(), *r, {"ID", "STATUS", "NAME", "PEER ADDRS", "CLIENT ADDRS", "IS LEARNER"},
            rows);
  return 0;
}

int MemberAdd(Env& env, const std::string& name, const std::string& peer_urls, bool learner) {
  const std::vector<std::string> urls = SplitUrls(peer_urls);
  if (urls.empty()) return Fail(kExitBadArgs, "member peer urls not provided");
  int code = 0;
  auto c = env.Connect(&code);
  if (c == nullptr) return code;
  auto r = c->MemberAdd(urls, learner);
  if (!r.ok()) return FailCall(r.status());
  if (env.format() == OutputFormat::kJson) {
    std::printf("%s\n", ToJson(*r).c_str());
    return 0;
  }
  fmt::print("Member {:16x} added{}to cluster {:16x}\n", r->member().id(),
             r->member().islearner() ? " as learner " : " ", r->header().cluster_id());
  std::vector<std::string> conf;
  for (const auto& m : r->members()) {
    const std::string& member_name = m.id() == r->member().id() ? name : m.name();
    for (const std::string& u : m.peerurls())
      conf.push_back(fmt::format("{}={}", member_name, u));
  }
  fmt::print("\nETCD_NAME={}\n", GoQuote(name));
  fmt::print("ETCD_INITIAL_CLUSTER={}\n", GoQuote(fmt::format("{}", fmt::join(conf, ","))));
  fmt::print("ETCD_INITIAL_ADVERTISE_PEER_URLS={}\n",
             GoQuote(fmt::format("{}", fmt::join(urls, ","))));
  fmt::print("ETCD_INITIAL_CLUSTER_STATE=\"existing\"\n");
  return 0;
}

// remove, update and promote: one ID, one call, one line.
template <typename Response>
int MemberChange(Env& env, const std::string& id_text, const char* verb,
                 const std::function<Result<Response>(client::Client*, uint64_t)>& call) {
  auto id = ParseMemberArg(id_text);
  if (!id.ok()) return Fail(kExitBadArgs, id.status().message());
  int code = 0;
  auto c = env.Connect(&code);
  if (c == nullptr) return code;
  auto r = call(c.get(), *id);
  if (!r.ok()) return FailCall(r.status());
  if (env.format() == OutputFormat::kJson) {
    std::printf("%s\n", ToJson(*r).c_str());
  } else {
    fmt::print("Member {:16x} {} cluster {:16x}\n", *id, verb, r->header().cluster_id());
  }
  return 0;
}

// ---- range ------------------------------------------------------------------

// A range boundary as people read it: printable ASCII as is, other bytes
// (and the backslash) as \xNN.
std::string KeyText(std::string_view key) {
  std::string out;
  for (unsigned char c : key) {
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out.push_back(static_cast<char>(c));
    } else {
      out += fmt::format("\\x{:02x}", c);
    }
  }
  return out;
}

// The nodes of a range's replicas, learners marked.
std::string ReplicaNodes(const kvpb::RangeInfo& r) {
  std::vector<std::string> nodes;
  for (const kvpb::Replica& rep : r.replicas())
    nodes.push_back(fmt::format("{:x}{}", rep.node_id(), rep.learner() ? "(learner)" : ""));
  return fmt::format("{}", fmt::join(nodes, ","));
}

std::vector<std::string> RangeRow(const kvpb::RangeInfo& r) {
  return {std::to_string(r.range_id()),
          r.start().empty() ? "(start)" : KeyText(r.start()),
          r.end().empty() ? "(end)" : KeyText(r.end()),
          std::to_string(r.generation()),
          ReplicaNodes(r),
          r.leader_node() == 0 ? "none" : fmt::format("{:x}", r.leader_node()),
          HumanBytes(r.bytes()),
          fmt::format("{:.0f}", r.requests_per_second()),
          std::to_string(r.applied_index()),
          r.quiesced() ? "true" : "false"};
}

const std::vector<std::string> kRangeColumns = {"RANGE",    "START",   "END",  "GENERATION",
                                                "REPLICAS", "LEADER",  "SIZE", "REQ/S",
                                                "APPLIED",  "QUIESCED"};

// A node id as the CLI prints it (hex, as `member list` does).
Result<uint64_t> ParseNodeArg(const std::string& text) {
  Result<uint64_t> id = ParseHexId(text);
  if (!id.ok() || *id == 0) {
    return Status::InvalidArgument(
        fmt::format("bad node id \"{}\" (want hex, as member list prints it)", text));
  }
  return *id;
}

// Shows a range call's answer: as JSON, as a table of `ranges`, or as the
// line `simple`.
int ShowRanges(Env& env, const google::protobuf::Message& answer,
               std::initializer_list<const kvpb::RangeInfo*> ranges, const std::string& simple) {
  switch (env.format()) {
    case OutputFormat::kJson:
      std::printf("%s\n", ToJson(answer).c_str());
      break;
    case OutputFormat::kTable: {
      std::vector<std::vector<std::string>> rows;
      for (const kvpb::RangeInfo* r : ranges)
        rows.push_back(RangeRow(*r));
      std::fputs(FormatTable(kRangeColumns, rows).c_str(), stdout);
      break;
    }
    case OutputFormat::kSimple:
      std::fputs(simple.c_str(), stdout);
      break;
  }
  return 0;
}

// Moves a range's replica between nodes and shows the range after.
int RangeMove(Env& env, uint64_t range_id, const std::string& from_text,
              const std::string& to_text) {
  auto from = ParseNodeArg(from_text);
  if (!from.ok()) return Fail(kExitBadArgs, from.status().message());
  auto to = ParseNodeArg(to_text);
  if (!to.ok()) return Fail(kExitBadArgs, to.status().message());
  int code = 0;
  auto c = env.Connect(&code);
  if (c == nullptr) return code;
  // The new replica receives a snapshot of the range first.
  auto r = c->NativeMoveReplica(range_id, *from, *to, std::chrono::minutes(2));
  if (!r.ok()) return FailCall(r.status());
  return ShowRanges(env, *r, {&r->range()},
                    fmt::format("moved range {} from node {:x} to node {:x}: replicas {}\n",
                                range_id, *from, *to, ReplicaNodes(r->range())));
}

// Makes node `to_text` lead range `range_id` and shows the range.
int RangeTransferLeader(Env& env, uint64_t range_id, const std::string& to_text) {
  auto to = ParseNodeArg(to_text);
  if (!to.ok()) return Fail(kExitBadArgs, to.status().message());
  int code = 0;
  auto c = env.Connect(&code);
  if (c == nullptr) return code;
  auto r = c->NativeTransferLeader(range_id, *to);
  if (!r.ok()) return FailCall(r.status());
  return ShowRanges(env, *r, {&r->range()},
                    fmt::format("range {} is led by node {:x}\n", range_id, *to));
}

// Splits the range holding `key` there and shows the two halves.
int RangeSplit(Env& env, const std::string& key) {
  int code = 0;
  auto c = env.Connect(&code);
  if (c == nullptr) return code;
  auto r = c->NativeSplit(key);
  if (!r.ok()) return FailCall(r.status());
  return ShowRanges(env, *r, {&r->left(), &r->right()},
                    fmt::format("split range {} at {}: range {} starts there\n",
                                r->left().range_id(), KeyText(key), r->right().range_id()));
}

// Merges the range holding `key` with the range to its right and shows the
// merged range.
int RangeMerge(Env& env, const std::string& key) {
  int code = 0;
  auto c = env.Connect(&code);
  if (c == nullptr) return code;
  // The right range's replicas may move onto the left one's nodes first.
  auto r = c->NativeMerge(key, std::chrono::minutes(2));
  if (!r.ok()) return FailCall(r.status());
  const kvpb::RangeInfo& m = r->range();
  return ShowRanges(
      env, *r, {&m},
      fmt::format("merged into range {}: now [{}, {})\n", m.range_id(),
                  m.start().empty() ? "(start)" : KeyText(m.start()), KeyText(m.end())));
}

// The native ranges the endpoint holds a replica of, and how each is doing
// there: its leader, how far it has applied, whether it sleeps (quiesced).
// `cluster`: every range of the cluster, from the range map.
int RangeList(Env& env, bool cluster) {
  int code = 0;
  auto c = env.Connect(&code);
  if (c == nullptr) return code;
  auto r = c->NativeRanges(cluster);
  if (!r.ok()) return FailCall(r.status());
  std::vector<std::vector<std::string>> rows;
  size_t quiesced = 0;
  for (const auto& range : r->ranges()) {
    rows.push_back(RangeRow(range));
    quiesced += range.quiesced() ? 1 : 0;
  }
  PrintRows(env.format(), *r, kRangeColumns, rows);
  if (env.format() == OutputFormat::kSimple) {
    fmt::print("{} ranges, {} quiesced\n", r->ranges_size(), quiesced);
  }
  return 0;
}

// The members as the native keyspace sees them: state, replicas, leaders,
// bytes and load from each one's last status report.
int NodeList(Env& env) {
  int code = 0;
  auto c = env.Connect(&code);
  if (c == nullptr) return code;
  auto r = c->NativeNodes();
  if (!r.ok()) return FailCall(r.status());
  std::vector<std::vector<std::string>> rows;
  for (const kvpb::NodeInfo& n : r->nodes()) {
    const bool reported = n.state() != "unreported";
    std::vector<std::string> labels;
    for (const kvpb::Label& l : n.labels())
      labels.push_back(l.key() + "=" + l.value());
    rows.push_back(
        {fmt::format("{:x}", n.node_id()), n.draining() ? n.state() + ",draining" : n.state(),
         reported ? std::to_string(n.ranges()) : "-", reported ? std::to_string(n.leaders()) : "-",
         reported ? HumanBytes(n.bytes()) : "-",
         reported ? fmt::format("{:.0f}", n.requests_per_second()) : "-",
         reported ? fmt::format("{:.1f}s ago", n.report_age_seconds()) : "never",
         labels.empty() ? "-" : fmt::format("{}", fmt::join(labels, ","))});
  }
  PrintRows(env.format(), *r,
            {"NODE", "STATE", "REPLICAS", "LEADERS", "SIZE", "REQ/S", "REPORTED", "LABELS"}, rows);
  return 0;
}

// Drains a node (or ends its drain) and, unless told not to wait, follows
// its reports until it holds no replica, with its progress on stderr.
int NodeDrain(Env& env, const std::string& node_text, bool cancel, bool wait,
              int64_t timeout_seconds) {
  auto node = ParseNodeArg(node_text);
  if (!node.ok()) return Fail(kExitBadArgs, node.status().message());
  int code = 0;
  auto c = env.Connect(&code);
  if (c == nullptr) return code;
  if (Status s = c->NativeDrainNode(*node, cancel); !s.ok()) return FailCall(s);
  auto finish = [&](const kvpb::NodeInfo* info, std::string_view what) {
    if (env.format() == OutputFormat::kJson) {
      kvpb::NodeInfo out;
      if (info != nullptr) out = *info;
      out.set_node_id(*node);
      out.set_draining(!cancel);
      std::printf("%s\n", ToJson(out).c_str());
    } else {
      fmt::print("node {:x}: {}\n", *node, what);
    }
    return 0;
  };
  if (cancel) return finish(nullptr, "drain cancelled; it takes replicas again");
  if (!wait) return finish(nullptr, "draining");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_seconds);
  std::string shown;
  for (;;) {
    auto r = c->NativeNodes();
    if (r.ok()) {
      for (const kvpb::NodeInfo& n : r->nodes()) {
        if (n.node_id() != *node) continue;
        if (n.state() != "unreported" && n.ranges() == 0) {
          return finish(&n, "drained: it holds no replica");
        }
        std::string progress = fmt::format("node {:x} ({}): {} replicas, {} leaders left", *node,
                                           n.state(), n.ranges(), n.leaders());
        if (progress != shown) fmt::print(stderr, "{}\n", progress);
        shown = std::move(progress);
      }
    }
    if (std::chrono::steady_clock::now() > deadline) {
      return Fail(kExitError,
                  fmt::format("node {:x} still holds replicas after {} s ({}); it stays draining. "
                              "Each range needs its replicas on different members: are there "
                              "enough others? `conclave range list --cluster` shows where they are",
                              *node, timeout_seconds, shown.empty() ? "no report" : shown));
    }
    if (WaitInterrupted(std::chrono::seconds(1))) return kExitInterrupted;
  }
}

void AddNode(CLI::App& app, CommandList* commands) {
  CLI::App* node = app.add_subcommand("node", "the members as the native keyspace sees them");
  node->require_subcommand(1);
  CLI::App* list = node->add_subcommand(
      "list", "each member's state, replicas, leaders, bytes and load, as last reported");
  commands->push_back({list, [](Env& env) { return NodeList(env); }});
  struct DrainFlags {
    std::string node;
    bool cancel = false;
    bool no_wait = false;
    int64_t timeout = 600;
  };
  auto df = std::make_shared<DrainFlags>();
  CLI::App* drain = node->add_subcommand(
      "drain", "move every replica and leadership off node NODE before it is removed");
  drain->add_option("node", df->node, "the node (hex id, as member list prints it)")->required();
  drain->add_flag("--cancel", df->cancel, "end the drain: the node takes replicas again");
  drain->add_flag("--no-wait", df->no_wait, "return once the drain is recorded");
  drain->add_option("--wait-timeout", df->timeout, "seconds to wait for the drain to finish")
      ->check(CLI::Range(int64_t{1}, int64_t{7 * 24 * 3600}));
  commands->push_back({drain, [df](Env& env) {
                         return NodeDrain(env, df->node, df->cancel, !df->no_wait, df->timeout);
                       }});
}

void AddRange(CLI::App& app, CommandList* commands) {
  CLI::App* range = app.add_subcommand("range", "native keyspace commands");
  range->require_subcommand(1);
  auto cluster = std::make_shared<bool>(false);
  CLI::App* list = range->add_subcommand("list", "list the ranges the endpoint holds");
  list->add_flag("--cluster", *cluster, "every range of the cluster, as the range map records it");
  commands->push_back({list, [cluster](Env& env) { return RangeList(env, *cluster); }});
  auto split_key = std::make_shared<std::string>();
  CLI::App* split = range->add_subcommand("split", "split the range holding KEY at KEY");
  split->add_option("key", *split_key, "the first key of the new range")->required();
  commands->push_back({split, [split_key](Env& env) { return RangeSplit(env, *split_key); }});
  auto merge_key = std::make_shared<std::string>();
  CLI::App* merge =
      range->add_subcommand("merge", "merge the range holding KEY with the range to its right");
  merge->add_option("key", *merge_key, "a key of the left range")->required();
  commands->push_back({merge, [merge_key](Env& env) { return RangeMerge(env, *merge_key); }});
  struct MoveFlags {
    uint64_t range_id = 0;
    std::string from;
    std::string to;
  };
  auto mf = std::make_shared<MoveFlags>();
  CLI::App* move = range->add_subcommand(
      "move", "move range RANGE's replica from node FROM to node TO (ask a node holding RANGE)");
  move->add_option("range", mf->range_id, "the range id")->required();
  move->add_option("from", mf->from, "the node (hex id) losing its replica")->required();
  move->add_option("to", mf->to, "the node (hex id) gaining one")->required();
  commands->push_back(
      {move, [mf](Env& env) { return RangeMove(env, mf->range_id, mf->from, mf->to); }});
  struct TransferFlags {
    uint64_t range_id = 0;
    std::string to;
  };
  auto tf = std::make_shared<TransferFlags>();
  CLI::App* transfer = range->add_subcommand(
      "transfer-leader", "make node NODE's replica of range RANGE (a voter) its leader");
  transfer->add_option("range", tf->range_id, "the range id")->required();
  transfer->add_option("node", tf->to, "the node (hex id) to lead it")->required();
  commands->push_back(
      {transfer, [tf](Env& env) { return RangeTransferLeader(env, tf->range_id, tf->to); }});
}

void AddMember(CLI::App& app, CommandList* commands) {
  CLI::App* member = app.add_subcommand("member", "membership commands");
  member->require_subcommand(1);

  CLI::App* list = member->add_subcommand("list", "list the members of the cluster");
  commands->push_back({list, [](Env& env) { return MemberList(env); }});

  struct AddFlags {
    std::string name;
    std::string peer_urls;
    bool learner = false;
  };
  auto af = std::make_shared<AddFlags>();
  CLI::App* add = member->add_subcommand("add", "add a member to the cluster");
  add->add_option("name", af->name, "name of the new member")->required();
  add->add_option("--peer-urls", af->peer_urls, "comma-separated peer URLs of the new member");
  add->add_flag("--learner", af->learner, "add as a learner (a non-voting member)");
  commands->push_back(
      {add, [af](Env& env) { return MemberAdd(env, af->name, af->peer_urls, af->learner); }});

  auto remove_id = std::make_shared<std::string>();
  CLI::App* remove = member->add_subcommand("remove", "remove a member from the cluster");
  remove->add_option("memberID", *remove_id, "member ID in hex")->required();
  commands->push_back({remove, [remove_id](Env& env) {
                         return MemberChange<pb::MemberRemoveResponse>(
                             env, *remove_id, "removed from",
                             [](client::Client* c, uint64_t id) { return c->MemberRemove(id); });
                       }});

  auto update_id = std::make_shared<std::string>();
  auto update_urls = std::make_shared<std::string>();
  CLI::App* update = member->add_subcommand("update", "update a member's peer URLs");
  update->add_option("memberID", *update_id, "member ID in hex")->required();
  update->add_option("--peer-urls", *update_urls, "comma-separated new peer URLs");
  commands->push_back({update, [update_id, update_urls](Env& env) {
                         const std::vector<std::string> urls = SplitUrls(*update_urls);
                         if (urls.empty()) {
                           return Fail(kExitBadArgs, "member peer urls not provided");
                         }
                         return MemberChange<pb::MemberUpdateResponse>(
                             env, *update_id, "updated in", [&](client::Client* c, uint64_t id) {
                               return c->MemberUpdate(id, urls);
                             });
                       }});

  auto promote_id = std::make_shared<std::string>();
  CLI::App* promote = member->add_subcommand("promote", "promote a learner to a voting member");
  promote->add_option("memberID", *promote_id, "member ID in hex")->required();
  commands->push_back({promote, [promote_id](Env& env) {
                         return MemberChange<pb::MemberPromoteResponse>(
                             env, *promote_id, "promoted in",
                             [](client::Client* c, uint64_t id) { return c->MemberPromote(id); });
                       }});
}

// ---- endpoint --------------------------------------------------------------

// The endpoints to visit one by one: the global list, or with --cluster
// every member's client URLs.
Result<std::vector<std::string>> TargetEndpoints(Env& env, bool cluster, int* code) {
  if (!cluster) return env.endpoints();
  auto c = env.Connect(code);
  if (c == nullptr) return Status::Unavailable("cannot connect");
  auto r = c->MemberList();
  if (!r.ok()) {
    *code = FailCall(r.status());
    return r.status();
  }
  std::vector<std::string> out;
  for (const auto& m : r->members()) {
    for (const std::string& u : m.clienturls())
      out.push_back(u);
  }
  return out;
}

struct EndpointHealth {
  std::string endpoint;
  bool healthy = false;
  std::string took;
  std::string error;
};

// Healthy when a linearizable read commits through the member and no alarm
// is raised.
EndpointHealth CheckHealth(Env& env, const std::string& endpoint) {
  EndpointHealth h{endpoint};
  const Clock::time_point start = Clock::now();
  auto c = env.ConnectOne(endpoint);
  if (!c.ok()) {
    h.error = "context deadline exceeded";
    return h;
  }
  pb::RangeRequest get;
  get.set_key("health");
  auto r = (*c)->Range(get);
  h.took = FormatDuration(Clock::now() - start);
  if (!r.ok() && r.status().code() != StatusCode::kPermissionDenied) {
    h.error = r.status().message();
    return h;
  }
  pb::AlarmRequest alarms;
  alarms.set_action(pb::AlarmRequest::GET);
  auto a = (*c)->Alarm(alarms);
  if (a.ok() && a->alarms_size() > 0) {
    h.error = "Active Alarm(s): ";
    for (const auto& m : a->alarms())
      h.error += pb::AlarmType_Name(m.alarm()) + " ";
    return h;
  }
  h.healthy = true;
  return h;
}

int EndpointHealthCommand(Env& env, bool cluster) {
  int code = 0;
  auto endpoints = TargetEndpoints(env, cluster, &code);
  if (!endpoints.ok()) return code;
  // All at once, so the command takes one timeout however many are down.
  std::vector<std::future<EndpointHealth>> pending;
  for (const std::string& ep : *endpoints)
    pending.push_back(std::async(std::launch::async, [&env, ep] { return CheckHealth(env, ep); }));
  std::vector<EndpointHealth> results;
  bool all_healthy = true;
  for (auto& p : pending) {
    results.push_back(p.get());
    all_healthy = all_healthy && results.back().healthy;
  }
  if (env.format() == OutputFormat::kJson) {
    std::vector<std::string> items;
    for (const auto& h : results) {
      std::string item =
          fmt::format("{{\"endpoint\":{},\"health\":{},\"took\":{}", JsonString(h.endpoint),
                      h.healthy ? "true" : "false", JsonString(h.took));
      if (!h.error.empty()) item += ",\"error\":" + JsonString(h.error);
      items.push_back(item + "}");
    }
    fmt::print("[{}]\n", fmt::join(items, ","));
  } else if (env.format() == OutputFormat::kTable) {
    std::vector<std::vector<std::string>> rows;
    for (const auto& h : results)
      rows.push_back({h.endpoint, h.healthy ? "true" : "false", h.took, h.error});
    std::fputs(FormatTable({"ENDPOINT", "HEALTH", "TOOK", "ERROR"}, rows).c_str(), stdout);
  } else {
    // As etcdctl 3.4 does, these lines go to stderr.
    for (const auto& h : results) {
      if (h.healthy) {
        fmt::print(stderr, "{} is healthy: successfully committed proposal: took = {}\n",
                   h.endpoint, h.took);
      } else {
        fmt::print(stderr, "{} is unhealthy: failed to commit proposal: {}\n", h.endpoint, h.error);
      }
    }
  }
  if (!all_healthy) return Fail(kExitError, "unhealthy cluster");
  return 0;
}

int EndpointStatusCommand(Env& env, bool cluster) {
  int code = 0;
  auto endpoints = TargetEndpoints(env, cluster, &code);
  if (!endpoints.ok()) return code;
  std::vector<std::pair<std::string, pb::StatusResponse>> statuses;
  bool failed = false;
  for (const std::string& ep : *endpoints) {
    auto c = env.ConnectOne(ep);
    Result<pb::StatusResponse> r =
        c.ok() ? (*c)->MemberStatus()
               : Result<pb::StatusResponse>(Status::DeadlineExceeded("context deadline "
                                                                     "exceeded"));
    if (!r.ok()) {
      fmt::print(stderr, "Failed to get the status of endpoint {} ({})\n", ep,
                 r.status().message());
      failed = true;
      continue;
    }
    statuses.emplace_back(ep, *r);
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& [ep, s] : statuses) {
    rows.push_back({ep, fmt::format("{:x}", s.header().member_id()), s.version(),
                    HumanBytes(static_cast<uint64_t>(s.dbsize())),
                    s.leader() == s.header().member_id() ? "true" : "false",
                    s.islearner() ? "true" : "false", std::to_string(s.raftterm()),
                    std::to_string(s.raftindex()), std::to_string(s.raftappliedindex()),
                    fmt::format("{}", fmt::join(s.errors(), ", "))});
  }
  if (env.format() == OutputFormat::kJson) {
    std::vector<std::string> items;
    for (const auto& [ep, s] : statuses)
      items.push_back(fmt::format("{{\"Endpoint\":{},\"Status\":{}}}", JsonString(ep), ToJson(s)));
    fmt::print("[{}]\n", fmt::join(items, ","));
  } else if (env.format() == OutputFormat::kTable) {
    std::fputs(FormatTable({"ENDPOINT", "ID", "VERSION", "DB SIZE", "IS LEADER", "IS LEARNER",
                            "RAFT TERM", "RAFT INDEX", "RAFT APPLIED INDEX", "ERRORS"},
                           rows)
                   .c_str(),
               stdout);
  } else {
    for (const auto& row : rows)
      fmt::print("{}\n", fmt::join(row, ", "));
  }
  return failed ? kExitError : 0;
}

// Each endpoint's hash of its keyspace up to `revision` (0: the latest),
// for comparing members.
int EndpointHashKVCommand(Env& env, bool cluster, int64_t revision) {
  int code = 0;
  auto endpoints = TargetEndpoints(env, cluster, &code);
  if (!endpoints.ok()) return code;
  std::vector<std::pair<std::string, pb::HashKVResponse>> hashes;
  bool failed = false;
  for (const std::string& ep : *endpoints) {
    auto c = env.ConnectOne(ep);
    Result<pb::HashKVResponse> r =
        c.ok() ? (*c)->HashKV(revision)
               : Result<pb::HashKVResponse>(Status::DeadlineExceeded("context deadline exceeded"));
    if (!r.ok()) {
      fmt::print(stderr, "Failed to get the hash of endpoint {} ({})\n", ep, r.status().message());
      failed = true;
      continue;
    }
    hashes.emplace_back(ep, *r);
  }
  if (env.format() == OutputFormat::kJson) {
    std::vector<std::string> items;
    for (const auto& [ep, h] : hashes)
      items.push_back(fmt::format("{{\"Endpoint\":{},\"HashKV\":{}}}", JsonString(ep), ToJson(h)));
    fmt::print("[{}]\n", fmt::join(items, ","));
  } else if (env.format() == OutputFormat::kTable) {
    std::vector<std::vector<std::string>> rows;
    for (const auto& [ep, h] : hashes)
      rows.push_back({ep, std::to_string(h.hash())});
    std::fputs(FormatTable({"ENDPOINT", "HASH"}, rows).c_str(), stdout);
  } else {
    for (const auto& [ep, h] : hashes)
      fmt::print("{}, {}\n", ep, h.hash());
  }
  return failed ? kExitError : 0;
}

void AddEndpoint(CLI::App& app, CommandList* commands) {
  CLI::App* endpoint = app.add_subcommand("endpoint", "endpoint commands");
  endpoint->require_subcommand(1);
  auto cluster = std::make_shared<bool>(false);
  endpoint->add_flag("--cluster", *cluster, "use all members' client URLs as endpoints");
  CLI::App* health = endpoint->add_subcommand("health", "check the health of the endpoints");
  commands->push_back(
      {health, [cluster](Env& env) { return EndpointHealthCommand(env, *cluster); }});
  CLI::App* status = endpoint->add_subcommand("status", "print the status of the endpoints");
  commands->push_back(
      {status, [cluster](Env& env) { return EndpointStatusCommand(env, *cluster); }});
  auto revision = std::make_shared<int64_t>(0);
  CLI::App* hashkv = endpoint->add_subcommand(
      "hashkv", "print each endpoint's hash of its keyspace up to a revision");
  hashkv->add_option("--rev", *revision, "the revision to hash up to (0: the latest)")
      ->check(CLI::NonNegativeNumber);
  commands->push_back({hashkv, [cluster, revision](Env& env) {
                         return EndpointHashKVCommand(env, *cluster, *revision);
                       }});
}

// ---- snapshot, defrag, alarm, move-leader -----------------------------------

CLI::App* AddSnapshot(CLI::App& app, CommandList* commands) {
  CLI::App* snapshot = app.add_subcommand("snapshot", "save a member's snapshot");
  snapshot->require_subcommand(1);
  auto path = std::make_shared<std::string>();
  CLI::App* save = snapshot->add_subcommand("save", "stream a member's snapshot to a file");
  save->add_option("filename", *path, "file to write")->required();
  commands->push_back({save, [path](Env& env) {
                         if (env.endpoints().size() != 1) {
                           return Fail(kExitBadArgs,
                                       fmt::format("snapshot must be requested to one selected "
                                                   "node, not multiple [{}]",
                                                   fmt::join(env.endpoints(), " ")));
                         }
                         int code = 0;
                         auto c = env.Connect(&code);
                         if (c == nullptr) return code;
                         auto r = c->SnapshotToFile(*path);
                         if (!r.ok()) return FailCall(r.status());
                         fmt::print("Snapshot saved at {}\n", *path);
                         return 0;
                       }});
  return snapshot;
}

void AddDefrag(CLI::App& app, CommandList* commands) {
  auto cluster = std::make_shared<bool>(false);
  CLI::App* cmd = app.add_subcommand("defrag", "defragment the storage of the members");
  cmd->add_flag("--cluster", *cluster, "defragment every member of the cluster");
  commands->push_back({cmd, [cluster](Env& env) {
                         int code = 0;
                         auto endpoints = TargetEndpoints(env, *cluster, &code);
                         if (!endpoints.ok()) return code;
                         bool failed = false;
                         for (const std::string& ep : *endpoints) {
                           auto c = env.ConnectOne(ep);
                           Status s = c.status();
                           if (c.ok()) s = (*c)->Defragment().status();
                           if (s.ok()) {
                             fmt::print("Finished defragmenting etcd member[{}]\n", ep);
                           } else {
                             fmt::print(stderr, "Failed to defragment etcd member[{}] ({})\n", ep,
                                        s.message());
                             failed = true;
                           }
                         }
                         return failed ? kExitError : 0;
                       }});
}

void PrintAlarms(const Env& env, const pb::AlarmResponse& r) {
  if (env.format() == OutputFormat::kJson) {
    std::printf("%s\n", ToJson(r).c_str());
    return;
  }
  for (const auto& a : r.alarms())
    fmt::print("memberID:{} alarm:{} \n", a.memberid(), pb::AlarmType_Name(a.alarm()));
}

void AddAlarm(CLI::App& app, CommandList* commands) {
  CLI::App* alarm = app.add_subcommand("alarm", "alarm commands");
  alarm->require_subcommand(1);
  CLI::App* list = alarm->add_subcommand("list", "list the raised alarms");
  commands->push_back({list, [](Env& env) {
                         int code = 0;
                         auto c = env.Connect(&code);
                         if (c == nullptr) return code;
                         pb::AlarmRequest req;
                         req.set_action(pb::AlarmRequest::GET);
                         auto r = c->Alarm(req);
                         if (!r.ok()) return FailCall(r.status());
                         PrintAlarms(env, *r);
                         return 0;
                       }});
  CLI::App* disarm = alarm->add_subcommand("disarm", "disarm every raised alarm");
  commands->push_back({disarm, [](Env& env) {
                         int code = 0;
                         auto c = env.Connect(&code);
                         if (c == nullptr) return code;
                         pb::AlarmRequest get;
                         get.set_action(pb::AlarmRequest::GET);
                         auto listed = c->Alarm(get);
                         if (!listed.ok()) return FailCall(listed.status());
                         for (const auto& a : listed->alarms()) {
                           pb::AlarmRequest off;
                           off.set_action(pb::AlarmRequest::DEACTIVATE);
                           off.set_memberid(a.memberid());
                           off.set_alarm(a.alarm());
                           auto r = c->Alarm(off);
                           if (!r.ok()) return FailCall(r.status());
                         }
                         PrintAlarms(env, *listed);
                         return 0;
                       }});
}

void AddMoveLeader(CLI::App& app, CommandList* commands) {
  auto target_text = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand("move-leader", "transfer leadership to another member");
  cmd->add_option("transferee", *target_text, "member ID in hex")->required();
  commands->push_back({cmd, [target_text](Env& env) {
                         auto target = ParseMemberArg(*target_text);
                         if (!target.ok()) return Fail(kExitBadArgs, target.status().message());
                         // The transfer must be asked of the leader itself.
                         for (const std::string& ep : env.endpoints()) {
                           auto c = env.ConnectOne(ep);
                           if (!c.ok()) continue;
                           auto s = (*c)->MemberStatus();
                           if (!s.ok() || s->leader() != s->header().member_id()) continue;
                           auto r = (*c)->MoveLeader(*target);
                           if (!r.ok()) return FailCall(r.status());
                           fmt::print("Leadership transferred from {:x} to {:x}\n", s->leader(),
                                      *target);
                           return 0;
                         }
                         return Fail(kExitError, fmt::format("no leader endpoint given at [{}]",
                                                             fmt::join(env.endpoints(), " ")));
                       }});
}

}  // namespace

CLI::App* AddClusterCommands(CLI::App& app, CommandList* commands) {
  AddMember(app, commands);
  AddRange(app, commands);
  AddNode(app, commands);
  AddEndpoint(app, commands);
  CLI::App* snapshot = AddSnapshot(app, commands);
  AddDefrag(app, commands);
  AddAlarm(app, commands);
  AddMoveLeader(app, commands);
  return snapshot;
}

}  // namespace conclave::cli
