// `conclave serve`: runs one member. Takes etcd 3.4's server flags (see
// src/server/config.h and docs/CONFIG.md), so an etcd start-up script works
// by swapping the binary.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>

namespace conclave::cli {

// Registers the subcommand; returns a function that runs it once parsed
// (-1 when the subcommand was not given).
std::function<int()> AddServeCommand(CLI::App& app);

}  // namespace conclave::cli
