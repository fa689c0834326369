#include "cli/bench_command.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "bench/bench.h"
#include "cli/client_common.h"

namespace conclave::cli {

namespace {

struct BenchFlags {
  std::string workload;
  std::string endpoints = "127.0.0.1:2379";
  std::string write_out = "table";
  std::string duration = "0";
  std::string dial_timeout = "2s";
  std::string call_timeout = "5s";
  std::string consistency = "l";
  bool progress = false;
  bench::BenchOptions options;
  // Every option of the subcommand, to tell which ones were given.
  std::vector<std::pair<std::string, CLI::Option*>> registered;
};

void AddOptions(CLI::App* cmd, BenchFlags* f) {
  bench::BenchOptions& o = f->options;
  auto add = [&](const std::string& names, auto* value, const std::string& help) {
    CLI::Option* opt = cmd->add_option(names, *value, help)->capture_default_str();
    f->registered.emplace_back(names.substr(names.rfind("--") + 2), opt);
  };
  add("--endpoints", &f->endpoints, "comma-separated members; connection i uses endpoint i % n");
  add("--clients", &o.clients, "concurrent client threads");
  add("--conns", &o.conns, "gRPC connections the clients share (round-robin)");
  add("--total", &o.total, "ops to issue (0: bounded by --duration only)");
  add("--duration", &f->duration, "how long to run, e.g. 30s (default 10s without --total)");
  add("--rate", &o.rate, "ops per second over all clients (0: as fast as possible)");
  add("-w,--write-out", &f->write_out, "report format: table or json");
  add("--dial-timeout", &f->dial_timeout, "time allowed to connect");
  add("--call-timeout", &f->call_timeout, "deadline of one call (and of a lock wait)");
  add("--seed", &o.seed, "seed of the key and value choices");
  add("--prefix", &o.prefix, "prefix of every key (and lock name) the run uses");
  add("--key-size", &o.key_size, "key size in bytes (prefix included)");
  add("--val-size", &o.val_size, "value size in bytes");
  add("--key-space", &o.key_space, "number of distinct keys");
  add("--consistency", &f->consistency, "reads: l (linearizable) or s (serializable)");
  add("--read-ratio", &o.read_ratio, "mixed: share of ops that are reads");
  add("--watchers", &o.watchers, "watch: streams watching the prefix");
  add("--leases", &o.leases, "lease-keepalive: leases renewed round-robin");
  add("--lease-ttl", &o.lease_ttl_seconds, "TTL in seconds of the leases the run grants");
  add("--locks", &o.locks, "lock: names the clients contend on");
  CLI::Option* seq =
      cmd->add_flag("--sequential-keys", o.sequential_keys, "key of op i is i % key-space");
  f->registered.emplace_back("sequential-keys", seq);
  CLI::Option* no_spread = cmd->add_flag(
      "--no-spread", o.no_spread,
      "native-put/get: keys are the prefix and index as given, not spread over every range");
  f->registered.emplace_back("no-spread", no_spread);
  cmd->add_flag("--progress", f->progress, "print progress on stderr even when it is not a tty");
}

// A value given to the root command (a global client flag before `bench`)
// stands in for the subcommand's own when that was not given.
std::string Inherit(const CLI::App& root, const std::string& name, const CLI::Option* own,
                    const std::string& value) {
  if (own != nullptr && own->count() > 0) return value;
  const CLI::Option* global = root.get_option_no_throw(name);
  if (global == nullptr || global->count() == 0) return value;
  return global->as<std::string>();
}

// Turns the flags into validated options; the error names the bad flag.
Status Prepare(const CLI::App& root, BenchFlags* f, bool* json) {
  bench::BenchOptions& o = f->options;
  ASSIGN_OR_RETURN(o.workload, bench::ParseWorkload(f->workload));
  std::vector<std::string> given;
  const CLI::Option* own_endpoints = nullptr;
  const CLI::Option* own_write_out = nullptr;
  for (const auto& [name, opt] : f->registered) {
    if (opt->count() > 0) given.push_back(name);
    if (name == "endpoints") own_endpoints = opt;
    if (name == "write-out") own_write_out = opt;
  }
  const std::string format = Inherit(root, "--write-out", own_write_out, f->write_out);
  if (format != "table" && format != "json") {
    return Status::InvalidArgument(
        fmt::format("unknown report format {:?} (use table or json)", format));
  }
  *json = format == "json";
  ASSIGN_OR_RETURN(o.endpoints, client::ParseEndpoints(
                                    Inherit(root, "--endpoints", own_endpoints, f->endpoints)));
  for (auto [flag, text, out] : {std::tuple{"duration", &f->duration, &o.duration},
                                 std::tuple{"dial-timeout", &f->dial_timeout, &o.dial_timeout},
                                 std::tuple{"call-timeout", &f->call_timeout, &o.call_timeout}}) {
    auto d = *text == "0" ? Result<std::chrono::milliseconds>(std::chrono::milliseconds(0))
                          : ParseDuration(*text);
    if (!d.ok())
      return Status::InvalidArgument(fmt::format("--{}: {}", flag, d.status().message()));
    *out = *d;
  }
  if (f->consistency != "l" && f->consistency != "s") {
    return Status::InvalidArgument("--consistency must be l or s");
  }
  o.serializable = f->consistency == "s";
  return bench::ValidateOptions(&o, given);
}

int Run(const CLI::App& root, BenchFlags* f) {
  bool json = false;
  if (Status s = Prepare(root, f, &json); !s.ok()) return Fail(kExitBadArgs, s.message());
  // Before any thread starts: every thread inherits the blocked signals.
  StartSignalThread();
  bench::RunEnv env;
  env.stop_requested = [] { return Interrupted(); };
  const bool tty = isatty(fileno(stderr)) != 0;
  if (tty || f->progress) {
    env.progress = stderr;
    env.progress_in_place = tty;
  }
  auto report = bench::RunBench(f->options, env);
  if (!report.ok()) {
    const StatusCode code = report.status().code();
    return Fail(code == StatusCode::kUnavailable ? kExitBadConnection
                : Interrupted()                  ? kExitInterrupted
                                                 : kExitError,
                report.status().message());
  }
  const std::string text =
      json ? bench::FormatReportJson(*report) + "\n" : bench::FormatReportTable(*report);
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
  if (Interrupted()) return kExitInterrupted;
  if (report->ops == 0 && report->errors.total() > 0) return kExitError;
  return kExitSuccess;
}

}  // namespace

std::function<int()> AddBenchCommand(CLI::App& app) {
  auto flags = std::make_shared<BenchFlags>();
  CLI::App* cmd =
      app.add_subcommand("bench", "load an etcd v3 API cluster and report throughput and latency");
  cmd->add_option("workload", flags->workload,
                  "put, range, txn-cas, mixed, watch, lease-keepalive or lock")
      ->required();
  AddOptions(cmd, flags.get());
  return [flags, cmd, &app]() -> int {
    if (!cmd->parsed()) return -1;
    return Run(app, flags.get());
  };
}

}  // namespace conclave::cli
