// put, get, del, txn, watch and compaction: the key-value commands.
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <optional>
#include <string_view>

#include "base/coding.h"
#include "cli/client_common.h"

namespace conclave::cli {
namespace {

using std::chrono::milliseconds;
namespace pb = etcdserverpb;

// How long the watch loop sleeps between looks at the interrupt flag.
constexpr milliseconds kWatchPoll{200};
// A txn read from stdin holds at most this many lines per section; the
// server's own limit (--max-txn-ops) is lower still.
constexpr size_t kTxnLinesMax = 10'000;

// An error from building a request: the message and the exit code.
struct InputError {
  int code;
  std::string message;
};

// ---- put -------------------------------------------------------------------

struct PutFlags {
  std::vector<std::string> args;
  std::string lease = "0";
  bool prev_kv = false;
  bool ignore_value = false;
  bool ignore_lease = false;
};

void DefinePutFlags(CLI::App* cmd, PutFlags* f) {
  cmd->add_option("key_value", f->args, "key and value (the value from stdin when omitted)");
  cmd->add_option("--lease", f->lease, "lease ID (in hexadecimal) to attach to the key");
  cmd->add_flag("--prev-kv", f->prev_kv, "return the previous key-value pair");
  cmd->add_flag("--ignore-value", f->ignore_value, "keep the current value");
  cmd->add_flag("--ignore-lease", f->ignore_lease, "keep the current lease");
}

// `read_stdin`: a missing value is read from stdin (not inside a txn).
std::variant<pb::PutRequest, InputError> BuildPut(const PutFlags& f, bool read_stdin) {
  pb::PutRequest r;
  const size_t n = f.args.size();
  const bool value_needed = !f.ignore_value;
  if (n == 0 || n > 2 || (n == 1 && value_needed && !read_stdin) || (n == 2 && f.ignore_value)) {
    return InputError{kExitBadArgs,
                      "put command needs 1 argument and input from stdin or 2 arguments"};
  }
  r.set_key(f.args[0]);
  if (n == 2) {
    r.set_value(f.args[1]);
  } else if (value_needed) {
    std::string value((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
    r.set_value(value);
  }
  auto lease = ParseHexId(f.lease);
  if (!lease.ok()) {
    return InputError{kExitBadArgs, fmt::format("bad lease ID ({}), expecting ID in Hex", f.lease)};
  }
  r.set_lease(static_cast<int64_t>(*lease));
  r.set_prev_kv(f.prev_kv);
  r.set_ignore_value(f.ignore_value);
  r.set_ignore_lease(f.ignore_lease);
  return r;
}

void PrintPut(const Env& env, const pb::PutResponse& r) {
  std::printf("OK\n");
  if (r.has_prev_kv()) PrintKv(env, r.prev_kv(), false);
}

// ---- get -------------------------------------------------------------------

struct GetFlags {
  std::vector<std::string> args;
  std::string consistency = "l";
  std::string order;
  std::string sort_by;
  bool prefix = false;
  bool from_key = false;
  int64_t limit = 0;
  int64_t rev = 0;
  bool keys_only = false;
  bool count_only = false;
  bool print_value_only = false;
};

void DefineGetFlags(CLI::App* cmd, GetFlags* f) {
  cmd->add_option("key_range", f->args, "key and optional range end");
  cmd->add_option("--consistency", f->consistency, "linearizable (l) or serializable (s)");
  cmd->add_option("--order", f->order, "ASCEND or DESCEND");
  cmd->add_option("--sort-by", f->sort_by, "CREATE, KEY, MODIFY, VALUE or VERSION");
  cmd->add_flag("--prefix", f->prefix, "get keys with a matching prefix");
  cmd->add_flag("--from-key", f->from_key, "get keys that are >= the given key");
  cmd->add_option("--limit", f->limit, "maximum number of results");
  cmd->add_option("--rev", f->rev, "revision to read at");
  cmd->add_flag("--keys-only", f->keys_only, "get only the keys");
  cmd->add_flag("--count-only", f->count_only, "get only the count");
  cmd->add_flag("--print-value-only", f->print_value_only, "print only the value");
}

std::string Upper(std::string s) {
  for (char& c : s)
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

// The key and range end of get and del from [key [range_end]], --prefix
// and --from-key, checked as etcdctl checks them; the error, if any.
template <typename Request>
std::optional<InputError> SetKeyRange(std::string_view command,
                                      const std::vector<std::string>& args, bool prefix,
                                      bool from_key, Request* r) {
  if (args.empty() || args.size() > 2) {
    return InputError{kExitBadArgs, fmt::format("{} command needs one argument as key and an "
                                                "optional argument as range_end",
                                                command)};
  }
  if (prefix && from_key) {
    return InputError{kExitBadArgs,
                      "`--prefix` and `--from-key` cannot be set at the same time, choose one"};
  }
  r->set_key(args[0]);
  if (args.size() == 2) {
    if (prefix || from_key) {
      return InputError{kExitBadArgs,
                        "too many arguments, only accept one argument when "
                        "`--prefix` or `--from-key` is set"};
    }
    r->set_range_end(args[1]);
  }
  if (prefix || from_key) {
    if (r->key().empty()) r->set_key(std::string(1, '\0'));
    r->set_range_end(prefix ? PrefixEnd(args[0]) : std::string(1, '\0'));
  }
  return std::nullopt;
}

std::variant<pb::RangeRequest, InputError> BuildGet(const GetFlags& f) {
  pb::RangeRequest r;
  if (auto bad = SetKeyRange("get", f.args, f.prefix, f.from_key, &r)) return *bad;
  if (f.consistency == "s") {
    r.set_serializable(true);
  } else if (f.consistency != "l") {
    return InputError{kExitInvalidInput,
                      fmt::format("unknown consistency flag {}", GoQuote(f.consistency))};
  }
  const std::string order = Upper(f.order);
  if (order == "ASCEND") {
    r.set_sort_order(pb::RangeRequest::ASCEND);
  } else if (order == "DESCEND") {
    r.set_sort_order(pb::RangeRequest::DESCEND);
  } else if (!order.empty()) {
    return InputError{kExitInvalidInput, fmt::format("bad sort order {}", f.order)};
  }
  const std::string target = Upper(f.sort_by);
  if (target == "CREATE") {
    r.set_sort_target(pb::RangeRequest::CREATE);
  } else if (target == "KEY" || target.empty()) {
    r.set_sort_target(pb::RangeRequest::KEY);
  } else if (target == "MODIFY") {
    r.set_sort_target(pb::RangeRequest::MOD);
  } else if (target == "VALUE") {
    r.set_sort_target(pb::RangeRequest::VALUE);
  } else if (target == "VERSION") {
    r.set_sort_target(pb::RangeRequest::VERSION);
  } else {
    return InputError{kExitInvalidInput, fmt::format("bad sort target {}", f.sort_by)};
  }
  // Sorting by key in ascending order is the server's natural order.
  if (r.sort_target() == pb::RangeRequest::KEY && r.sort_order() == pb::RangeRequest::ASCEND) {
    r.set_sort_order(pb::RangeRequest::NONE);
  }
  r.set_limit(f.limit);
  r.set_revision(f.rev);
  r.set_keys_only(f.keys_only);
  r.set_count_only(f.count_only);
  return r;
}

void PrintRange(const Env& env, const pb::RangeResponse& r, bool value_only) {
  for (const auto& kv : r.kvs())
    PrintKv(env, kv, value_only);
}

// ---- del -------------------------------------------------------------------

struct DelFlags {
  std::vector<std::string> args;
  bool prefix = false;
  bool prev_kv = false;
  bool from_key = false;
};

void DefineDelFlags(CLI::App* cmd, DelFlags* f) {
  cmd->add_option("key_range", f->args, "key and optional range end");
  cmd->add_flag("--prefix", f->prefix, "delete keys with a matching prefix");
  cmd->add_flag("--prev-kv", f->prev_kv, "return the deleted key-value pairs");
  cmd->add_flag("--from-key", f->from_key, "delete keys that are >= the given key");
}

std::variant<pb::DeleteRangeRequest, InputError> BuildDel(const DelFlags& f) {
  pb::DeleteRangeRequest r;
  if (auto bad = SetKeyRange("del", f.args, f.prefix, f.from_key, &r)) return *bad;
  r.set_prev_kv(f.prev_kv);
  return r;
}

void PrintDel(const Env& env, const pb::DeleteRangeResponse& r) {
  std::printf("%lld\n", static_cast<long long>(r.deleted()));
  for (const auto& kv : r.prev_kvs())
    PrintKv(env, kv, false);
}

// ---- txn -------------------------------------------------------------------

// Splits an op line into words: blanks separate them, and "..." (with Go
// escapes) or '...' group them.
Result<std::vector<std::string>> SplitWords(std::string_view line) {
  std::vector<std::string> words;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && std::isspace(static_cast<unsigned char>(line[i])))
      ++i;
    if (i >= line.size()) break;
    std::string word;
    while (i < line.size() && !std::isspace(static_cast<unsigned char>(line[i]))) {
      const char c = line[i];
      if (c == '"' || c == '\'') {
        ++i;
        while (i < line.size() && line[i] != c) {
          if (c == '"' && line[i] == '\\' && i + 1 < line.size()) {
            ++i;
            const char e = line[i];
            word += e == 'n' ? '\n' : e == 't' ? '\t' : e;
          } else {
            word += line[i];
          }
          ++i;
        }
        if (i >= line.size()) return Status::InvalidArgument("unterminated quote");
        ++i;
      } else {
        word += c;
        ++i;
      }
    }
    words.push_back(std::move(word));
  }
  return words;
}

// Reads a Go-quoted string ("..." or `...`) at the start of `*s`.
Result<std::string> TakeQuoted(std::string_view* s) {
  while (!s->empty() && s->front() == ' ')
    s->remove_prefix(1);
  if (s->empty() || (s->front() != '"' && s->front() != '`')) {
    return Status::InvalidArgument("expected a quoted string");
  }
  const char quote = s->front();
  s->remove_prefix(1);
  std::string out;
  while (!s->empty() && s->front() != quote) {
    char c = s->front();
    s->remove_prefix(1);
    if (quote == '"' && c == '\\' && !s->empty()) {
      c = s->front();
      s->remove_prefix(1);
      if (c == 'n') {
        c = '\n';
      } else if (c == 't') {
        c = '\t';
      } else if (c == 'x' && s->size() >= 2) {
        c = static_cast<char>(std::stoi(std::string(s->substr(0, 2)), nullptr, 16));
        s->remove_prefix(2);
      }
    }
    out += c;
  }
  if (s->empty()) return Status::InvalidArgument("unterminated quoted string");
  s->remove_prefix(1);
  return out;
}

// `mod("key") > "5"`, `value("key") = "v"`, `version("k") != "0"`, ...
Result<pb::Compare> ParseCompare(std::string_view line) {
  const auto malformed = [&](std::string_view why) {
    return Status::InvalidArgument(fmt::format("malformed comparison: {} ({})", line, why));
  };
  const size_t paren = line.find('(');
  if (paren == std::string_view::npos) return malformed("no '('");
  const std::string_view target = line.substr(0, paren);
  std::string_view rest = line.substr(paren + 1);
  auto key = TakeQuoted(&rest);
  if (!key.ok()) return malformed(key.status().message());
  if (rest.empty() || rest.front() != ')') return malformed("expected ')'");
  rest.remove_prefix(1);
  while (!rest.empty() && rest.front() == ' ')
    rest.remove_prefix(1);
  const size_t op_end = rest.find(' ');
  if (op_end == std::string_view::npos) return malformed("expected an operator and a value");
  const std::string_view op = rest.substr(0, op_end);
  rest.remove_prefix(op_end);
  auto value = TakeQuoted(&rest);
  if (!value.ok()) return malformed(value.status().message());

  pb::Compare c;
  c.set_key(*key);
  if (op == "=" || op == "==") {
    c.set_result(pb::Compare::EQUAL);
  } else if (op == "!=") {
    c.set_result(pb::Compare::NOT_EQUAL);
  } else if (op == "<") {
    c.set_result(pb::Compare::LESS);
  } else if (op == ">") {
    c.set_result(pb::Compare::GREATER);
  } else {
    return malformed(fmt::format("unknown operator {}", op));
  }
  if (target == "val" || target == "value") {
    c.set_target(pb::Compare::VALUE);
    c.set_value(*value);
    return c;
  }
  char* end = nullptr;
  const long long n = std::strtoll(value->c_str(), &end, 10);
  if (value->empty() || *end != '\0') return malformed(fmt::format("{} is not a number", *value));
  if (target == "ver" || target == "version") {
    c.set_target(pb::Compare::VERSION);
    c.set_version(n);
  } else if (target == "c" || target == "create") {
    c.set_target(pb::Compare::CREATE);
    c.set_create_revision(n);
  } else if (target == "m" || target == "mod") {
    c.set_target(pb::Compare::MOD);
    c.set_mod_revision(n);
  } else if (target == "lease") {
    c.set_target(pb::Compare::LEASE);
    c.set_lease(n);
  } else {
    return malformed(fmt::format("unknown target {}", target));
  }
  return c;
}

// `put k v [flags]`, `get k [flags]` or `del k [flags]`, with the flags of
// the commands of the same names.
Result<pb::RequestOp> ParseOp(std::string_view line) {
  ASSIGN_OR_RETURN(std::vector<std::string> words, SplitWords(line));
  const auto invalid = [&] {
    return Status::InvalidArgument(fmt::format("invalid txn request: {}", line));
  };
  if (words.size() < 2) return invalid();
  CLI::App parser;
  parser.require_subcommand(1, 1);
  PutFlags put;
  GetFlags get;
  DelFlags del;
  CLI::App* put_cmd = parser.add_subcommand("put");
  DefinePutFlags(put_cmd, &put);
  CLI::App* get_cmd = parser.add_subcommand("get");
  DefineGetFlags(get_cmd, &get);
  CLI::App* del_cmd = parser.add_subcommand("del");
  DefineDelFlags(del_cmd, &del);
  std::vector<std::string> reversed(words.rbegin(), words.rend());
  try {
    parser.parse(reversed);
  } catch (const CLI::ParseError&) {
    return invalid();
  }
  pb::RequestOp op;
  if (put_cmd->parsed()) {
    auto r = BuildPut(put, /*read_stdin=*/false);
    if (auto* e = std::get_if<InputError>(&r)) return Status::InvalidArgument(e->message);
    *op.mutable_request_put() = std::get<pb::PutRequest>(r);
  } else if (get_cmd->parsed()) {
    auto r = BuildGet(get);
    if (auto* e = std::get_if<InputError>(&r)) return Status::InvalidArgument(e->message);
    *op.mutable_request_range() = std::get<pb::RangeRequest>(r);
  } else {
    auto r = BuildDel(del);
    if (auto* e = std::get_if<InputError>(&r)) return Status::InvalidArgument(e->message);
    *op.mutable_request_delete_range() = std::get<pb::DeleteRangeRequest>(r);
  }
  return op;
}

// Lines up to a blank line or the end of input.
Result<std::vector<std::string>> ReadSection() {
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(std::cin, line)) {
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back())))
      line.pop_back();
    if (line.empty()) break;
    if (lines.size() >= kTxnLinesMax) return Status::InvalidArgument("too many txn lines");
    lines.push_back(line);
  }
  return lines;
}

Status ReadOps(google::protobuf::RepeatedPtrField<pb::RequestOp>* ops) {
  ASSIGN_OR_RETURN(std::vector<std::string> lines, ReadSection());
  for (const std::string& line : lines) {
    ASSIGN_OR_RETURN(pb::RequestOp op, ParseOp(line));
    *ops->Add() = std::move(op);
  }
  return Status::Ok();
}

Result<pb::TxnRequest> ReadTxn(bool interactive) {
  pb::TxnRequest txn;
  if (interactive) std::printf("compares:\n");
  std::fflush(stdout);
  ASSIGN_OR_RETURN(std::vector<std::string> compares, ReadSection());
  for (const std::string& line : compares) {
    ASSIGN_OR_RETURN(pb::Compare c, ParseCompare(line));
    *txn.add_compare() = std::move(c);
  }
  if (interactive) std::printf("\nsuccess requests (get, put, del):\n");
  std::fflush(stdout);
  RETURN_IF_ERROR(ReadOps(txn.mutable_success()));
  if (interactive) std::printf("\nfailure requests (get, put, del):\n");
  std::fflush(stdout);
  RETURN_IF_ERROR(ReadOps(txn.mutable_failure()));
  if (interactive) std::printf("\n");
  return txn;
}

void PrintTxn(const Env& env, const pb::TxnResponse& r) {
  std::printf("%s\n", r.succeeded() ? "SUCCESS" : "FAILURE");
  for (const pb::ResponseOp& op : r.responses()) {
    std::printf("\n");
    if (op.has_response_put()) {
      PrintPut(env, op.response_put());
    } else if (op.has_response_range()) {
      PrintRange(env, op.response_range(), false);
    } else if (op.has_response_delete_range()) {
      PrintDel(env, op.response_delete_range());
    } else {
      std::printf("unexpected response %s\n", op.ShortDebugString().c_str());
    }
  }
}

// ---- watch -----------------------------------------------------------------

struct WatchFlags {
  std::vector<std::string> args;
  bool prefix = false;
  int64_t rev = 0;
  bool prev_kv = false;
};

std::string WatchJson(const pb::WatchResponse& r) {
  std::vector<std::string> events;
  for (const auto& e : r.events())
    events.push_back(ToJson(e));
  return fmt::format(
      "{{\"Header\":{},\"Events\":[{}],\"CompactRevision\":{},\"Canceled\":{},"
      "\"Created\":{}}}",
      ToJson(r.header()), fmt::join(events, ","), r.compact_revision(),
      r.canceled() ? "true" : "false", r.created() ? "true" : "false");
}

void PrintWatchEvents(const Env& env, const pb::WatchResponse& r) {
  if (env.format() == OutputFormat::kJson) {
    std::printf("%s\n", WatchJson(r).c_str());
    return;
  }
  for (const mvccpb::Event& e : r.events()) {
    std::printf("%s\n", e.type() == mvccpb::Event::DELETE ? "DELETE" : "PUT");
    if (e.has_prev_kv()) PrintKv(env, e.prev_kv(), false);
    PrintKv(env, e.kv(), false);
  }
}

int RunWatch(Env& env, const WatchFlags& f) {
  if (f.args.empty() || f.args.size() > 2) {
    return Fail(kExitBadArgs,
                "watch in non-interactive mode requires one or two arguments as key or prefix, "
                "with range end");
  }
  if (f.prefix && f.args.size() == 2) {
    return Fail(kExitBadArgs, "`range_end` and `--prefix` are mutually exclusive");
  }
  pb::WatchCreateRequest req;
  req.set_key(f.args[0]);
  if (f.args.size() == 2) req.set_range_end(f.args[1]);
  if (f.prefix) {
    if (req.key().empty()) req.set_key(std::string(1, '\0'));
    req.set_range_end(PrefixEnd(f.args[0]));
  }
  req.set_start_revision(f.rev);
  req.set_prev_kv(f.prev_kv);
  int code = 0;
  auto c = env.Connect(&code);
  if (c == nullptr) return code;
  auto stream = c->Watch();
  if (!stream.ok()) return FailCall(stream.status());
  if (Status s = (*stream)->Create(req); !s.ok()) return FailCall(s);
  // Where to carry on from when the stream breaks (the member died,
  // restarted or stopped): after the last event shown, or after the
  // revision the watch was created at. Like etcdctl's, the watch then
  // opens again on an endpoint that answers, until interrupted.
  int64_t resume = f.rev;
  std::chrono::milliseconds backoff{100};
  pb::WatchResponse r;
  while (!Interrupted()) {
    auto got = (*stream)->Next(kWatchPoll, &r);
    if (!got.ok()) {
      if (Interrupted()) break;
      if (!StreamMayResume(got.status())) return FailCall(got.status());
      (*stream)->Close();
      if (WaitInterrupted(backoff)) break;
      backoff = std::min(backoff * 2, std::chrono::milliseconds(2000));
      req.set_start_revision(resume);
      auto again = c->Watch();
      if (again.ok() && (*again)->Create(req).ok()) stream = std::move(again);
      continue;
    }
    if (!*got) continue;
    backoff = std::chrono::milliseconds(100);
    if (r.canceled()) {
      const std::string reason = r.compact_revision() > 0
                                     ? "etcdserver: mvcc: required revision has been compacted"
                                     : r.cancel_reason();
      std::printf("watch was canceled (%s)\n", reason.c_str());
      (*stream)->Close();
      return Fail(kExitInterrupted, "watch is canceled by the server");
    }
    if (r.created() && resume == 0) resume = r.header().revision() + 1;
    if (r.events_size() > 0) {
      resume = r.events(r.events_size() - 1).kv().mod_revision() + 1;
      PrintWatchEvents(env, r);
    }
    std::fflush(stdout);
  }
  (*stream)->Close();
  return kExitSuccess;
}

// ---- registration ----------------------------------------------------------

template <typename Request>
bool Take(std::variant<Request, InputError>& v, Request* out, int* code) {
  if (auto* e = std::get_if<InputError>(&v)) {
    *code = Fail(e->code, e->message);
    return false;
  }
  *out = std::move(std::get<Request>(v));
  return true;
}

void AddPut(CLI::App& app, CommandList* commands) {
  auto f = std::make_shared<PutFlags>();
  CLI::App* cmd = app.add_subcommand("put", "put the given key into the store");
  DefinePutFlags(cmd, f.get());
  commands->push_back({cmd, [f](Env& env) {
                         auto built = BuildPut(*f, /*read_stdin=*/true);
                         pb::PutRequest req;
                         int code = 0;
                         if (!Take(built, &req, &code)) return code;
                         auto c = env.Connect(&code);
                         if (c == nullptr) return code;
                         auto r = c->Put(req);
                         if (!r.ok()) return FailCall(r.status());
                         if (env.format() == OutputFormat::kJson) {
                           std::printf("%s\n", ToJson(*r).c_str());
                         } else if (env.format() == OutputFormat::kTable) {
                           return UnsupportedFormat(env);
                         } else {
                           PrintPut(env, *r);
                         }
                         return 0;
                       }});
}

void AddGet(CLI::App& app, CommandList* commands) {
  auto f = std::make_shared<GetFlags>();
  CLI::App* cmd = app.add_subcommand("get", "get the key or a range of keys");
  DefineGetFlags(cmd, f.get());
  commands->push_back({cmd, [f](Env& env) {
                         auto built = BuildGet(*f);
                         pb::RangeRequest req;
                         int code = 0;
                         if (!Take(built, &req, &code)) return code;
                         if (env.format() == OutputFormat::kTable) return UnsupportedFormat(env);
                         auto c = env.Connect(&code);
                         if (c == nullptr) return code;
                         auto r = c->Range(req);
                         if (!r.ok()) return FailCall(r.status());
                         if (env.format() == OutputFormat::kJson) {
                           std::printf("%s\n", ToJson(*r).c_str());
                         } else if (f->count_only) {
                           std::printf("%lld\n", static_cast<long long>(r->count()));
                         } else {
                           PrintRange(env, *r, f->print_value_only);
                         }
                         return 0;
                       }});
}

void AddDel(CLI::App& app, CommandList* commands) {
  auto f = std::make_shared<DelFlags>();
  CLI::App* cmd = app.add_subcommand("del", "remove the key or a range of keys");
  DefineDelFlags(cmd, f.get());
  commands->push_back({cmd, [f](Env& env) {
                         auto built = BuildDel(*f);
                         pb::DeleteRangeRequest req;
                         int code = 0;
                         if (!Take(built, &req, &code)) return code;
                         if (env.format() == OutputFormat::kTable) return UnsupportedFormat(env);
                         auto c = env.Connect(&code);
                         if (c == nullptr) return code;
                         auto r = c->DeleteRange(req);
                         if (!r.ok()) return FailCall(r.status());
                         if (env.format() == OutputFormat::kJson) {
                           std::printf("%s\n", ToJson(*r).c_str());
                         } else {
                           PrintDel(env, *r);
                         }
                         return 0;
                       }});
}

void AddTxn(CLI::App& app, CommandList* commands) {
  auto interactive = std::make_shared<bool>(false);
  CLI::App* cmd = app.add_subcommand(
      "txn",
      "a transaction read from stdin: compares, a blank line, success requests, a blank line, "
      "failure requests");
  cmd->add_flag("-i,--interactive", *interactive, "prompt for each section");
  commands->push_back({cmd, [interactive](Env& env) {
                         if (env.format() == OutputFormat::kTable) return UnsupportedFormat(env);
                         auto txn = ReadTxn(*interactive);
                         if (!txn.ok()) return Fail(kExitInvalidInput, txn.status().message());
                         int code = 0;
                         auto c = env.Connect(&code);
                         if (c == nullptr) return code;
                         auto r = c->Txn(*txn);
                         if (!r.ok()) return FailCall(r.status());
                         if (env.format() == OutputFormat::kJson) {
                           std::printf("%s\n", ToJson(*r).c_str());
                         } else {
                           PrintTxn(env, *r);
                         }
                         return 0;
                       }});
}

void AddWatch(CLI::App& app, CommandList* commands) {
  auto f = std::make_shared<WatchFlags>();
  CLI::App* cmd = app.add_subcommand("watch", "watch a key or a range of keys until interrupted");
  cmd->add_option("key_range", f->args, "key (or prefix) and optional range end");
  cmd->add_flag("--prefix", f->prefix, "watch a prefix");
  cmd->add_option("--rev", f->rev, "revision to start watching from");
  cmd->add_flag("--prev-kv", f->prev_kv, "get the previous key-value pair before the event");
  commands->push_back({cmd, [f](Env& env) {
                         if (env.format() == OutputFormat::kTable) return UnsupportedFormat(env);
                         return RunWatch(env, *f);
                       }});
}

void AddCompaction(CLI::App& app, CommandList* commands) {
  auto rev = std::make_shared<std::string>();
  auto physical = std::make_shared<bool>(false);
  CLI::App* cmd = app.add_subcommand("compaction", "compact the event history in the store");
  cmd->add_option("revision", *rev, "revision to compact up to")->required();
  cmd->add_flag("--physical", *physical, "wait for the compaction to reclaim the space");
  commands->push_back({cmd, [rev, physical](Env& env) {
                         char* end = nullptr;
                         const long long n = std::strtoll(rev->c_str(), &end, 10);
                         if (rev->empty() || *end != '\0') {
                           return Fail(kExitBadArgs, fmt::format("bad revision {}", *rev));
                         }
                         int code = 0;
                         auto c = env.Connect(&code);
                         if (c == nullptr) return code;
                         pb::CompactionRequest req;
                         req.set_revision(n);
                         req.set_physical(*physical);
                         auto r = c->Compact(req);
                         if (!r.ok()) return FailCall(r.status());
                         std::printf("compacted revision %lld\n", n);
                         return 0;
                       }});
}

}  // namespace

void AddKvCommands(CLI::App& app, CommandList* commands) {
  AddPut(app, commands);
  AddGet(app, commands);
  AddDel(app, commands);
  AddTxn(app, commands);
  AddWatch(app, commands);
  AddCompaction(app, commands);
}

}  // namespace conclave::cli
