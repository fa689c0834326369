// `conclave kv ...`: the native keyspace (conclave.kvpb.KV) from the command
// line: put (optionally conditional), get, del, del-range and scan.
#include <fmt/format.h>

#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include "cli/client_common.h"

namespace conclave::cli {
namespace {

std::string FormatTimestamp(const kvpb::Timestamp& ts) {
  return fmt::format("{}.{}", ts.wall_nanos(), ts.logical());
}

// --if-absent / --if-value / --if-timestamp as a precondition; at most one.
struct ConditionFlags {
  bool absent = false;
  std::optional<std::string> value;
  std::optional<std::string> timestamp;  // "<wall_nanos>.<logical>", as printed

  void Define(CLI::App* cmd, bool with_absent) {
    if (with_absent) cmd->add_flag("--if-absent", absent, "only if the key has no live value");
    cmd->add_option("--if-value", value, "only if the key's live value is exactly this");
    cmd->add_option("--if-timestamp", timestamp,
                    "only if the key's live version has this timestamp (WALL.LOGICAL)");
  }

  // Sets `request`'s precondition when a condition was given (leaves it
  // unset otherwise); an error message for conflicting or bad flags.
  template <typename Request>
  std::optional<std::string> Build(Request* request) const {
    const int n = (absent ? 1 : 0) + (value ? 1 : 0) + (timestamp ? 1 : 0);
    if (n > 1) return "at most one of --if-absent, --if-value and --if-timestamp";
    if (n == 0) return std::nullopt;
    kvpb::Precondition* out = request->mutable_precondition();
    if (absent) out->set_absent(true);
    if (value) out->set_value(*value);
    if (timestamp) {
      unsigned long long wall = 0;
      unsigned logical = 0;
      char extra = 0;
      if (timestamp->find('-') != std::string::npos ||
          std::sscanf(timestamp->c_str(), "%llu.%u%c", &wall, &logical, &extra) != 2) {
        return fmt::format("--if-timestamp {}: want WALL_NANOS.LOGICAL", *timestamp);
      }
      out->mutable_timestamp()->set_wall_nanos(wall);
      out->mutable_timestamp()->set_logical(logical);
    }
    return std::nullopt;
  }
};

int PrintWrite(const Env& env, const google::protobuf::Message& resp, uint64_t range,
               const kvpb::Timestamp& ts) {
  if (env.format() == OutputFormat::kJson) {
    std::printf("%s\n", ToJson(resp).c_str());
  } else {
    fmt::print("OK range={} timestamp={}\n", range, FormatTimestamp(ts));
  }
  return 0;
}

int KvPut(Env& env, const std::string& key, const std::string& value, const ConditionFlags& cf) {
  kvpb::PutRequest req;
  req.set_key(key);
  req.set_value(value);
  if (auto bad = cf.Build(&req)) return Fail(kExitBadArgs, *bad);
  int code = 0;
  auto c = env.Connect(&code);
  if (c == nullptr) return code;
  auto r = c->NativePut(req);
  if (!r.ok()) return FailCall(r.status());
  return PrintWrite(env, *r, r->range_id(), r->timestamp());
}

int KvDel(Env& env, const std::string& key, const ConditionFlags& cf) {
  kvpb::DeleteRequest req;
  req.set_key(key);
  if (auto bad = cf.Build(&req)) return Fail(kExitBadArgs, *bad);
  int code = 0;
  auto c = env.Connect(&code);
  if (c == nullptr) return code;
  auto r = c->NativeDelete(req);
  if (!r.ok()) return FailCall(r.status());
  if (env.format() == OutputFormat::kJson) {
    std::printf("%s\n", ToJson(*r).c_str());
  } else {
    fmt::print("{}\n", r->deleted() ? 1 : 0);
  }
  return 0;
}

int KvDelRange(Env& env, const std::string& start, const std::string& end) {
  kvpb::DeleteRangeRequest req;
  req.set_start(start);
  req.set_end(end);
  int code = 0;
  auto c = env.Connect(&code);
  if (c == nullptr) return code;
  auto r = c->NativeDeleteRange(req);
  if (!r.ok()) return FailCall(r.status());
  if (env.format() == OutputFormat::kJson) {
    std::printf("%s\n", ToJson(*r).c_str());
  } else {
    fmt::print("{}\n", r->deleted());
  }
  return 0;
}

int KvGet(Env& env, const std::string& key) {
  kvpb::GetRequest req;
  req.set_key(key);
  int code = 0;
  auto c = env.Connect(&code);
  if (c == nullptr) return code;
  auto r = c->NativeGet(req);
  if (!r.ok()) return FailCall(r.status());
  switch (env.format()) {
    case OutputFormat::kJson:
      std::printf("%s\n", ToJson(*r).c_str());
      break;
    case OutputFormat::kTable:
      std::fputs(FormatTable({"KEY", "VALUE", "TIMESTAMP", "RANGE"},
                             {{key, r->found() ? r->value() : "(none)",
                               r->found() ? FormatTimestamp(r->timestamp()) : "",
                               std::to_string(r->range_id())}})
                     .c_str(),
                 stdout);
      break;
    case OutputFormat::kSimple:
      // As `get` prints etcd keys: the key and the value, nothing when absent.
      if (r->found()) {
        PrintBytes(env, key);
        PrintBytes(env, r->value());
      }
      break;
  }
  return 0;
}

int KvScan(Env& env, const std::string& start, const std::string& end, uint64_t limit) {
  int code = 0;
  auto c = env.Connect(&code);
  if (c == nullptr) return code;
  auto r = c->NativeScanAll(start, end, limit);
  if (!r.ok()) return FailCall(r.status());
  switch (env.format()) {
    case OutputFormat::kJson: {
      kvpb::ScanResponse all;
      for (const kvpb::KeyValue& kv : *r)
        *all.add_kvs() = kv;
      std::printf("%s\n", ToJson(all).c_str());
      break;
    }
    case OutputFormat::kTable: {
      std::vector<std::vector<std::string>> rows;
      for (const kvpb::KeyValue& kv : *r)
        rows.push_back({kv.key(), kv.value(), FormatTimestamp(kv.timestamp())});
      std::fputs(FormatTable({"KEY", "VALUE", "TIMESTAMP"}, rows).c_str(), stdout);
      break;
    }
    case OutputFormat::kSimple:
      for (const kvpb::KeyValue& kv : *r) {
        PrintBytes(env, kv.key());
        PrintBytes(env, kv.value());
      }
      break;
  }
  return 0;
}

}  // namespace

void AddNativeCommands(CLI::App& app, CommandList* commands) {
  CLI::App* kv = app.add_subcommand("kv", "the native keyspace (sharded into ranges)");
  kv->require_subcommand(1);

  struct Flags {
    std::string key;
    std::string value;
    std::string end;
    uint64_t limit = 0;
    ConditionFlags condition;
  };

  auto pf = std::make_shared<Flags>();
  CLI::App* put = kv->add_subcommand("put", "write a key, optionally only if a condition holds");
  put->add_option("key", pf->key, "key")->required();
  put->add_option("value", pf->value, "value")->required();
  pf->condition.Define(put, /*with_absent=*/true);
  commands->push_back(
      {put, [pf](Env& env) { return KvPut(env, pf->key, pf->value, pf->condition); }});

  auto gf = std::make_shared<Flags>();
  CLI::App* get = kv->add_subcommand("get", "read a key's newest value (linearizable)");
  get->add_option("key", gf->key, "key")->required();
  commands->push_back({get, [gf](Env& env) { return KvGet(env, gf->key); }});

  auto df = std::make_shared<Flags>();
  CLI::App* del = kv->add_subcommand("del", "delete a key; prints 1 if it had a live value");
  del->add_option("key", df->key, "key")->required();
  df->condition.Define(del, /*with_absent=*/false);
  commands->push_back({del, [df](Env& env) { return KvDel(env, df->key, df->condition); }});

  auto rf = std::make_shared<Flags>();
  CLI::App* del_range =
      kv->add_subcommand("del-range", "delete every key in [start, end); prints how many");
  del_range->add_option("start", rf->key, "first key")->required();
  del_range->add_option("end", rf->end, "end key (excluded; \"\" for the end of the keyspace)")
      ->required();
  commands->push_back({del_range, [rf](Env& env) { return KvDelRange(env, rf->key, rf->end); }});

  auto sf = std::make_shared<Flags>();
  CLI::App* scan = kv->add_subcommand("scan", "list the keys in [start, end), in order");
  scan->add_option("start", sf->key, "first key")->required();
  scan->add_option("end", sf->end, "end key (excluded; omitted: the end of the keyspace)");
  scan->add_option("--limit", sf->limit, "at most this many keys (0: all)");
  commands->push_back({scan, [sf](Env& env) { return KvScan(env, sf->key, sf->end, sf->limit); }});
}

}  // namespace conclave::cli
