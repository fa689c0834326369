// lease (grant, revoke, timetolive, list, keep-alive), lock and elect.
#include <fmt/format.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <mutex>

#include "cli/client_common.h"

extern char** environ;

namespace conclave::cli {
namespace {

using std::chrono::milliseconds;
namespace pb = etcdserverpb;

// Lock and Campaign wait at most this long; an interrupt ends them sooner.
constexpr milliseconds kAcquireWaitMax{24LL * 3600 * 1000};
// How often a holder looks at its interrupt flag and session.
constexpr milliseconds kHoldPoll{200};

Result<int64_t> ParseLeaseArg(const std::string& text) {
  auto id = ParseHexId(text);
  if (!id.ok()) {
    return Status::InvalidArgument(fmt::format("bad lease ID arg ({}), expecting ID in Hex", text));
  }
  return static_cast<int64_t>(*id);
}

// ---- lease -----------------------------------------------------------------

int LeaseGrant(Env& env, const std::string& ttl_text) {
  char* end = nullptr;
  const long long ttl = std::strtoll(ttl_text.c_str(), &end, 10);
  if (ttl_text.empty() || *end != '\0') {
    return Fail(kExitBadArgs, fmt::format("bad TTL ({})", ttl_text));
  }
  int code = 0;
  auto c = env.Connect(&code);
  if (c == nullptr) return code;
  auto r = c->LeaseGrant(ttl);
  if (!r.ok())
    return FailCall(
        Status(r.status().code(), fmt::format("failed to grant lease ({})", r.status().message())));
  if (env.format() == OutputFormat::kJson) {
    std::printf("%s\n",
                FlatHeaderJson(r->header(), {fmt::format("\"ID\":{}", r->id()),
                                             fmt::format("\"TTL\":{}", r->ttl()),
                                             fmt::format("\"Error\":{}", JsonString(r->error()))})
                    .c_str());
  } else {
    fmt::print("lease {:016x} granted with TTL({}s)\n", r->id(), r->ttl());
  }
  return 0;
}

int LeaseRevoke(Env& env, const std::string& id_text) {
  auto id = ParseLeaseArg(id_text);
  if (!id.ok()) return Fail(kExitBadArgs, id.status().message());
  int code = 0;
  auto c = env.Connect(&code);
  if (c == nullptr) return code;
  auto r = c->LeaseRevoke(*id);
  if (!r.ok()) {
    return FailCall(Status(r.status().code(),
                           fmt::format("failed to revoke lease ({})", r.status().message())));
  }
  if (env.format() == OutputFormat::kJson) {
    std::printf("%s\n", ToJson(*r).c_str());
  } else {
    fmt::print("lease {:016x} revoked\n", *id);
  }
  return 0;
}

int LeaseTimeToLive(Env& env, const std::string& id_text, bool keys) {
  auto id = ParseLeaseArg(id_text);
  if (!id.ok()) return Fail(kExitBadArgs, id.status().message());
  int code = 0;
  auto c = env.Connect(&code);
  if (c == nullptr) return code;
  auto r = c->LeaseTimeToLive(*id, keys);
  if (!r.ok()) return FailCall(r.status());
  if (env.format() == OutputFormat::kJson) {
    std::vector<std::string> key_list;
    for (const std::string& k : r->keys())
      key_list.push_back(JsonString(k));
    const std::string keys_json =
        r->keys().empty() ? "null" : fmt::format("[{}]", fmt::join(key_list, ","));
    std::printf("%s\n",
                FlatHeaderJson(
                    r->header(),
                    {fmt::format("\"id\":{}", r->id()), fmt::format("\"ttl\":{}", r->ttl()),
                     fmt::format("\"granted-ttl\":{}", r->grantedttl()), "\"keys\":" + keys_json})
                    .c_str());
    return 0;
  }
  if (r->ttl() == -1) {
    fmt::print("lease {:016x} already expired\n", r->id());
    return 0;
  }
  std::string line = fmt::format("lease {:016x} granted with TTL({}s), remaining({}s)", r->id(),
                                 r->grantedttl(), r->ttl());
  if (keys) {
    std::vector<std::string> names(r->keys().begin(), r->keys().end());
    line += fmt::format(", attached keys([{}])", fmt::join(names, " "));
  }
  PrintLine(line);
  return 0;
}

int LeaseList(Env& env) {
  int code = 0;
  auto c = env.Connect(&code);
  if (c == nullptr) return code;
  auto r = c->LeaseLeases();
  if (!r.ok()) return FailCall(r.status());
  if (env.format() == OutputFormat::kJson) {
    std::vector<std::string> ids;
    for (const auto& l : r->leases())
      ids.push_back(fmt::format("{{\"id\":{}}}", l.id()));
    std::printf(
        "%s\n",
        FlatHeaderJson(r->header(), {fmt::format("\"leases\":[{}]", fmt::join(ids, ","))}).c_str());
    return 0;
  }
  fmt::print("found {} leases\n", r->leases_size());
  for (const auto& l : r->leases())
    fmt::print("{:016x}\n", l.id());
  return 0;
}

void PrintKeepAlive(const Env& env, const pb::LeaseKeepAliveResponse& r) {
  if (env.format() == OutputFormat::kJson) {
    std::printf("%s\n", FlatHeaderJson(r.header(), {fmt::format("\"ID\":{}", r.id()),
                                                    fmt::format("\"TTL\":{}", r.ttl())})
                            .c_str());
  } else {
    fmt::print("lease {:016x} keepalived with TTL({})\n", r.id(), r.ttl());
  }
  std::fflush(stdout);
}

int LeaseKeepAlive(Env& env, const std::string& id_text, bool once) {
  auto id = ParseLeaseArg(id_text);
  if (!id.ok()) return Fail(kExitBadArgs, id.status().message());
  int code = 0;
  auto c = env.Connect(&code);
  if (c == nullptr) return code;
  auto first = c->LeaseKeepAliveOnce(*id);
  if (!first.ok()) return FailCall(first.status());
  auto gone = [&] {
    if (env.format() == OutputFormat::kSimple)
      fmt::print("lease {:016x} expired or revoked.\n", *id);
    return 0;
  };
  if (first->ttl() <= 0) {
    // --once asks one renewal and it failed; the stream, as etcdctl's,
    // ends quietly when the lease is gone, whether at once or later.
    if (once) return Fail(kExitError, "etcdserver: requested lease not found");
    return gone();
  }
  PrintKeepAlive(env, *first);
  if (once) return 0;
  std::mutex print_mu;
  auto loop = c->LeaseKeepAlive(*id, first->ttl(), [&](const pb::LeaseKeepAliveResponse& r) {
    std::lock_guard lock(print_mu);
    PrintKeepAlive(env, r);
  });
  if (!loop.ok()) return FailCall(loop.status());
  while (!WaitInterrupted(kHoldPoll)) {
    if ((*loop)->WaitDone(milliseconds(0))) break;
  }
  (*loop)->Close();
  if (Interrupted()) return 0;
  const Status s = (*loop)->status();
  if (s.ok() || s.code() == StatusCode::kNotFound) return gone();
  return FailCall(s);
}

void AddLease(CLI::App& app, CommandList* commands) {
  CLI::App* lease = app.add_subcommand("lease", "lease commands");
  lease->require_subcommand(1);

  auto ttl = std::make_shared<std::string>();
  CLI::App* grant = lease->add_subcommand("grant", "create a lease with a TTL in seconds");
  grant->add_option("ttl", *ttl, "TTL in seconds")->required();
  commands->push_back({grant, [ttl](Env& env) { return LeaseGrant(env, *ttl); }});

  auto revoke_id = std::make_shared<std::string>();
  CLI::App* revoke = lease->add_subcommand("revoke", "revoke a lease");
  revoke->add_option("leaseID", *revoke_id, "lease ID in hex")->required();
  commands->push_back({revoke, [revoke_id](Env& env) { return LeaseRevoke(env, *revoke_id); }});

  auto ttl_id = std::make_shared<std::string>();
  auto keys = std::make_shared<bool>(false);
  CLI::App* timetolive = lease->add_subcommand("timetolive", "get lease information");
  timetolive->add_option("leaseID", *ttl_id, "lease ID in hex")->required();
  timetolive->add_flag("--keys", *keys, "list the keys attached to the lease");
  commands->push_back(
      {timetolive, [ttl_id, keys](Env& env) { return LeaseTimeToLive(env, *ttl_id, *keys); }});

  CLI::App* list = lease->add_subcommand("list", "list all active leases");
  commands->push_back({list, [](Env& env) { return LeaseList(env); }});

  auto keep_id = std::make_shared<std::string>();
  auto once = std::make_shared<bool>(false);
  CLI::App* keep = lease->add_subcommand("keep-alive", "keep a lease alive until interrupted");
  keep->add_option("leaseID", *keep_id, "lease ID in hex")->required();
  keep->add_flag("--once", *once, "renew once and exit");
  commands->push_back(
      {keep, [keep_id, once](Env& env) { return LeaseKeepAlive(env, *keep_id, *once); }});
}

// ---- sessions: a lease kept alive for lock and elect -----------------------

class Session {
 public:
  // Grants the lease and starts keeping it alive.
  static Result<std::unique_ptr<Session>> Start(client::Client* c, int64_t ttl_seconds) {
    ASSIGN_OR_RETURN(pb::LeaseGrantResponse grant, c->LeaseGrant(ttl_seconds));
    auto s = std::unique_ptr<Session>(new Session(c, grant.id()));
    auto loop = c->LeaseKeepAlive(grant.id(), grant.ttl());
    if (!loop.ok()) {
      s->Revoke();
      return loop.status();
    }
    s->loop_ = std::move(loop).value();
    return s;
  }
  ~Session() { Revoke(); }

  int64_t lease() const { return lease_; }
  bool expired() const { return !loop_->alive(); }

  // Stops renewing and revokes the lease (its keys go with it).
  void Revoke() {
    if (revoked_) return;
    revoked_ = true;
    if (loop_ != nullptr) loop_->Close();
    (void)client_->LeaseRevoke(lease_);  // best effort: the lease expires anyway
  }

 private:
  Session(client::Client* c, int64_t lease) : client_(c), lease_(lease) {}

  client::Client* client_;
  int64_t lease_;
  std::unique_ptr<client::KeepAliveLoop> loop_;
  bool revoked_ = false;
};

// Waits for an interrupt; false if the session expired first.
bool HoldUntilInterrupted(const Session& session) {
  while (!WaitInterrupted(kHoldPoll)) {
    if (session.expired()) return false;
  }
  return true;
}

// ---- lock ------------------------------------------------------------------

// Runs `argv` with the lock's key and revision in its environment; returns
// its exit code (128 + signal if a signal ended it).
Result<int> RunLocked(const std::vector<std::string>& argv, const std::string& key,
                      int64_t revision) {
  std::vector<std::string> env_strings = {"ETCD_LOCK_KEY=" + key,
                                          fmt::format("ETCD_LOCK_REV={}", revision)};
  for (char** e = environ; *e != nullptr; ++e)
    env_strings.emplace_back(*e);
  std::vector<char*> envp;
  for (std::string& s : env_strings)
    envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> args = argv;
  std::vector<char*> argp;
  for (std::string& a : args)
    argp.push_back(a.data());
  argp.push_back(nullptr);

  // The child starts with the signals this process blocks unblocked and
  // at their defaults, so that Ctrl-C reaches it as usual.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGINT);
  sigaddset(&defaults, SIGTERM);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, argp[0], nullptr, &attr, argp.data(), envp.data());
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    return Status::IOError(fmt::format("exec: {}: {}", argv[0], std::strerror(rc)));
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return Status::IOError(std::strerror(errno));
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

int RunLock(Env& env, const std::string& name, const std::vector<std::string>& command,
            int64_t ttl) {
  if (ttl <= 0) return Fail(kExitBadArgs, "--ttl must be positive");
  int code = 0;
  auto c = env.Connect(&code);
  if (c == nullptr) return code;
  ScopedInterruptHook hook([cl = c.get()] { cl->CancelWaits(); });
  auto session = Session::Start(c.get(), ttl);
  if (!session.ok()) return FailCall(session.status());
  auto locked = c->Lock(name, (*session)->lease(), kAcquireWaitMax);
  if (!locked.ok()) {
    (*session)->Revoke();
    return FailCall(locked.status());
  }
  if (!command.empty()) {
    auto rc = RunLocked(command, locked->key(), locked->header().revision());
    auto unlocked = c->Unlock(locked->key());
    (*session)->Revoke();
    if (!rc.ok()) return Fail(kExitError, rc.status().message());
    if (!unlocked.ok() && *rc == 0) return FailCall(unlocked.status());
    return *rc;
  }
  PrintLine(locked->key());
  std::fflush(stdout);
  if (!HoldUntilInterrupted(**session)) return Fail(kExitError, "session expired");
  auto unlocked = c->Unlock(locked->key());
  (*session)->Revoke();
  if (!unlocked.ok()) return Fail(kExitError, unlocked.status().message());
  return 0;
}

void AddLock(CLI::App& app, CommandList* commands) {
  struct LockFlags {
    std::string name;
    std::vector<std::string> command;
    int64_t ttl = 10;
  };
  auto f = std::make_shared<LockFlags>();
  CLI::App* cmd = app.add_subcommand(
      "lock",
      "acquire a named lock; print its key and hold it until interrupted, or run a command "
      "while holding it (put -- before a command with flags)");
  cmd->add_option("lockname", f->name, "name of the lock")->required();
  cmd->add_option("command", f->command, "command to run while holding the lock");
  cmd->add_option("--ttl", f->ttl, "timeout of the session's lease, in seconds")
      ->capture_default_str();
  commands->push_back({cmd, [f](Env& env) { return RunLock(env, f->name, f->command, f->ttl); }});
}

// ---- elect -----------------------------------------------------------------

void PrintLeaderKv(const Env& env, const mvccpb::KeyValue& kv) {
  if (env.format() == OutputFormat::kJson) {
    pb::RangeResponse r;
    *r.add_kvs() = kv;
    r.set_count(1);
    std::printf("%s\n", ToJson(r).c_str());
  } else {
    PrintKv(env, kv, false);
  }
  std::fflush(stdout);
}

int Observe(Env& env, client::Client* c, const std::string& name) {
  auto stream = c->Observe(name);
  if (!stream.ok()) return FailCall(stream.status());
  // When the stream breaks (its member died, restarted or stopped), the
  // observation opens again on an endpoint that answers, until
  // interrupted; the leader it starts with is shown only if it is new.
  std::string last_key;
  int64_t last_revision = 0;
  std::chrono::milliseconds backoff{100};
  v3electionpb::LeaderResponse r;
  while (!Interrupted()) {
    auto got = (*stream)->Next(kHoldPoll, &r);
    if (!got.ok()) {
      if (Interrupted()) break;
      if (!StreamMayResume(got.status())) return FailCall(got.status());
      (*stream)->Close();
      if (WaitInterrupted(backoff)) break;
      backoff = std::min(backoff * 2, std::chrono::milliseconds(2000));
      if (auto again = c->Observe(name); again.ok()) stream = std::move(again);
      continue;
    }
    if (!*got || !r.has_kv()) continue;
    backoff = std::chrono::milliseconds(100);
    if (r.kv().key() == last_key && r.kv().mod_revision() == last_revision) continue;
    last_key = r.kv().key();
    last_revision = r.kv().mod_revision();
    PrintLeaderKv(env, r.kv());
  }
  (*stream)->Close();
  return 0;
}

int Campaign(Env& env, client::Client* c, const std::string& name, const std::string& proposal,
             int64_t ttl) {
  ScopedInterruptHook hook([c] { c->CancelWaits(); });
  auto session = Session::Start(c, ttl);
  if (!session.ok()) return FailCall(session.status());
  auto won = c->Campaign(name, (*session)->lease(), proposal, kAcquireWaitMax);
  if (!won.ok()) {
    (*session)->Revoke();
    return FailCall(won.status());
  }
  pb::RangeRequest get;
  get.set_key(won->leader().key());
  auto kv = c->Range(get);
  if (!kv.ok()) return FailCall(kv.status());
  for (const auto& k : kv->kvs())
    PrintLeaderKv(env, k);
  if (!HoldUntilInterrupted(**session)) return Fail(kExitError, "elect: session expired");
  auto resigned = c->Resign(won->leader());
  (*session)->Revoke();
  if (!resigned.ok()) return Fail(kExitError, resigned.status().message());
  return 0;
}

void AddElect(CLI::App& app, CommandList* commands) {
  struct ElectFlags {
    std::string name;
    std::string proposal;
    bool listen = false;
    int64_t ttl = 60;
  };
  auto f = std::make_shared<ElectFlags>();
  CLI::App* cmd = app.add_subcommand(
      "elect", "campaign in an election with a proposal and print the leader, or observe it");
  cmd->add_option("election", f->name, "name of the election")->required();
  cmd->add_option("proposal", f->proposal, "value to proclaim once elected");
  cmd->add_flag("-l,--listen", f->listen, "observe the election and print each leader");
  cmd->add_option("--ttl", f->ttl, "timeout of the session's lease, in seconds")
      ->capture_default_str();
  commands->push_back({cmd, [f, cmd](Env& env) {
                         const bool has_proposal = cmd->count("proposal") > 0;
                         if (!has_proposal && !f->listen) {
                           return Fail(kExitBadArgs, "no proposal argument but -l not set");
                         }
                         if (has_proposal && f->listen) {
                           return Fail(kExitBadArgs, "proposal given but -l is set");
                         }
                         if (f->ttl <= 0) return Fail(kExitBadArgs, "--ttl must be positive");
                         if (env.format() == OutputFormat::kTable) return UnsupportedFormat(env);
                         int code = 0;
                         auto c = env.Connect(&code);
                         if (c == nullptr) return code;
                         if (f->listen) return Observe(env, c.get(), f->name);
                         return Campaign(env, c.get(), f->name, f->proposal, f->ttl);
                       }});
}

}  // namespace

void AddLeaseCommands(CLI::App& app, CommandList* commands) {
  AddLease(app, commands);
}

void AddConcurrencyCommands(CLI::App& app, CommandList* commands) {
  AddLock(app, commands);
  AddElect(app, commands);
}

}  // namespace conclave::cli
