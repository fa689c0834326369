// `conclave sim`: runs the deterministic cluster simulator over a range of
// seeds and reports violations with their seed and trace.
#pragma once

#include <CLI/CLI.hpp>

namespace conclave::cli {

// Registers the subcommand; returns a function that runs it once parsed.
std::function<int()> AddSimCommand(CLI::App& app);

}  // namespace conclave::cli
