// `conclave snapshot restore <file>`: builds a member's data directory for a
// new cluster from a saved snapshot, with etcdctl's restore flags (--name,
// --data-dir, --initial-cluster, --initial-cluster-token,
// --initial-advertise-peer-urls). Run it once per member with that
// member's flags, then start each with `conclave serve` and the same flags.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>

namespace conclave::cli {

// Adds `restore` under `snapshot`; the returned function runs it when it was
// parsed (exit code) and returns -1 otherwise.
std::function<int()> AddSnapshotRestore(CLI::App* snapshot);

}  // namespace conclave::cli
