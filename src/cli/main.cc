// The `conclave` command: one binary for the server, the tools and the
// simulator. Each subcommand lives in its module; this file only wires them.
#include <absl/synchronization/mutex.h>
#include <CLI/CLI.hpp>

#include <cstdio>

#include "base/logging.h"
#include "cli/bench_command.h"
#include "cli/client_commands.h"
#include "cli/client_common.h"
#include "cli/restore_command.h"
#include "cli/serve_command.h"
#include "cli/sim_command.h"

namespace {

constexpr const char* kVersion = "0.1.0";

}  // namespace

int main(int argc, char** argv) {
  // Debian's abseil is built without NDEBUG, so every absl::Mutex that gRPC
  // takes also runs the lock-order deadlock detector (a global graph under a
  // global lock): measurable CPU per request on the server's hot paths.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  CLI::App app{"Conclave: distributed locks, transactions and files on a Raft-replicated store"};
  app.require_subcommand(0, 1);
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "debug, info, warn, error, panic or fatal")
      ->capture_default_str();

  CLI::App* version = app.add_subcommand("version", "print the version and exit");
  auto run_sim = conclave::cli::AddSimCommand(app);
  auto run_serve = conclave::cli::AddServeCommand(app);
  conclave::cli::ClientCommands client = conclave::cli::AddClientCommands(app);
  auto run_restore = conclave::cli::AddSnapshotRestore(client.snapshot);
  auto run_bench = conclave::cli::AddBenchCommand(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (int rc = client.parse_error(e); rc >= 0) return rc;
    if (e.get_exit_code() == 0) return app.exit(e);  // --help and the like
    // An unknown command or flag is a bad argument like any other
    // (docs/CLI.md, "Exit codes").
    std::fprintf(stderr, "Error: %s\n", e.what());
    return conclave::cli::kExitBadArgs;
  }

  auto level = conclave::ParseLogLevel(log_level);
  if (!level.ok()) {
    std::fprintf(stderr, "conclave: %s\n", level.status().message().c_str());
    return 2;
  }
  conclave::InitLogging(*level);

  if (int rc = run_sim(); rc >= 0) return rc;
  if (int rc = run_serve(); rc >= 0) return rc;
  if (int rc = run_restore(); rc >= 0) return rc;
  if (int rc = run_bench(); rc >= 0) return rc;
  if (int rc = client.run(); rc >= 0) return rc;
  if (version->parsed() || app.get_subcommands().empty()) {
    std::printf("conclave %s\n", kVersion);
    return 0;
  }
  return 0;
}
