#include "cli/client_commands.h"

#include <cstdio>

#include "cli/client_common.h"

namespace conclave::cli {

namespace {

// Lets the global flags follow the command: unknown options of a client
// command (and of its parents up to `root`) go to the parent.
void FallThroughToRoot(CLI::App* leaf, const CLI::App* root) {
  for (CLI::App* a = leaf; a != nullptr && a != root; a = a->get_parent())
    a->fallthrough();
}

}  // namespace

ClientCommands AddClientCommands(CLI::App& app) {
  auto flags = std::make_shared<GlobalFlags>();
  app.add_option("--endpoints", flags->endpoints, "comma-separated list of members to talk to")
      ->capture_default_str();
  app.add_option("-w,--write-out", flags->write_out, "output format: simple, json or table")
      ->capture_default_str();
  app.add_option("--dial-timeout", flags->dial_timeout, "time allowed to connect to an endpoint")
      ->capture_default_str();
  app.add_option("--command-timeout", flags->command_timeout,
                 "time allowed for one request (failovers included)")
      ->capture_default_str();
  app.add_flag("--hex", flags->hex, "print keys and values as hex-escaped bytes");

  auto commands = std::make_shared<CommandList>();
  AddKvCommands(app, commands.get());
  AddLeaseCommands(app, commands.get());
  AddNativeCommands(app, commands.get());
  AddConcurrencyCommands(app, commands.get());
  ClientCommands out;
  out.snapshot = AddClusterCommands(app, commands.get());
  for (const Command& c : *commands)
    FallThroughToRoot(c.app, &app);

  out.run = [flags, commands]() -> int {
    for (const Command& c : *commands) {
      if (!c.app->parsed()) continue;
      Env env(flags.get());
      if (Status s = env.Init(); !s.ok()) return Fail(kExitBadArgs, s.message());
      // Before any thread starts: every thread inherits the blocked signals.
      StartSignalThread();
      const int code = c.run(env);
      std::fflush(stdout);
      return code;
    }
    return -1;
  };
  out.parse_error = [commands, &app](const CLI::ParseError& e) -> int {
    bool ours = false;
    for (const Command& c : *commands) {
      for (const CLI::App* a = c.app; a != nullptr && a != &app; a = a->get_parent())
        ours = ours || a->parsed();
    }
    if (!ours || e.get_exit_code() == 0) return -1;  // --help and the like
    return Fail(kExitBadArgs, e.what());
  };
  return out;
}

}  // namespace conclave::cli
