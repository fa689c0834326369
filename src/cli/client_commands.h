// The `conclave` client commands: put, get, del, txn, watch, compaction,
// lease, lock, elect, member, endpoint, snapshot save, defrag, alarm and
// move-leader, with etcdctl 3.4's flags and output formats, and the global
// flags they share (--endpoints, -w/--write-out, --dial-timeout,
// --command-timeout, --hex), which may come before or after the command.
//
// Exit codes: 0 success, 1 an error from the server or local I/O, 2 no
// endpoint reachable, 3 invalid input, 5 interrupted before the command
// finished its job (a command that runs until interrupted, such as watch,
// exits 0 when interrupted), 128 bad arguments.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <memory>

namespace conclave::cli {

struct ClientCommands {
  // The `snapshot` subcommand; more subcommands (restore) may be added to it.
  CLI::App* snapshot = nullptr;
  // Runs the parsed client command; -1 when none was given.
  std::function<int()> run;
  // The exit code for a parse error: 128 with "Error: <what>" on stderr when
  // a client command was being parsed, -1 otherwise (the caller reports it).
  std::function<int(const CLI::ParseError&)> parse_error;
};

// Registers the commands and the global flags on `app`.
ClientCommands AddClientCommands(CLI::App& app);

}  // namespace conclave::cli
