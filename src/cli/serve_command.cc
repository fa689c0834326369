#include "cli/serve_command.h"

#include <cstdio>
#include <string>
#include <vector>

#include "base/logging.h"
#include "server/server.h"

extern char** environ;

namespace conclave::cli {

namespace {

int Fail(const std::string& what) {
  std::fprintf(stderr, "conclave serve: %s\n", what.c_str());
  return 2;
}

int Serve(const std::vector<std::string>& args) {
  auto parsed = server::ParseServerConfig(args, server::EnvironmentMap(environ));
  if (!parsed.ok()) return Fail(parsed.status().message());
  auto level = ParseLogLevel(parsed->log_level);
  if (level.ok()) InitLogging(*level);
  server::Server member(std::move(*parsed));
  if (Status s = member.Start(); !s.ok()) return Fail(s.message());
  member.Wait();
  member.Stop();
  return 0;
}

}  // namespace

std::function<int()> AddServeCommand(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand(
      "serve",
      "run a member; takes etcd's server flags (--name, --data-dir, --initial-cluster...)");
  cmd->prefix_command();
  return [cmd]() -> int {
    if (!cmd->parsed()) return -1;
    return Serve(cmd->remaining());
  };
}

}  // namespace conclave::cli
