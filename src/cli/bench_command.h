// `conclave bench <workload>`: the load generator of src/bench against any
// etcd v3 API cluster (Conclave's or etcd's), with its report printed as a
// table or as one line of JSON (docs/PERFORMANCE.md).
//
// Exit codes as the client commands': 0 the run completed (errors counted
// in the report), 1 the setup failed or every op failed, 2 no endpoint
// reachable, 5 interrupted (the report covers what completed), 128 bad
// flags.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>

namespace conclave::cli {

// Registers the subcommand; returns a function that runs it once parsed
// (-1 when the subcommand was not given). Register after the client commands:
// their global --endpoints and -w, given before `bench`, are honoured.
std::function<int()> AddBenchCommand(CLI::App& app);

}  // namespace conclave::cli
