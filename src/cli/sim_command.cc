#include "cli/sim_command.h"

#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <map>

#include "base/logging.h"
#include "sim/sim.h"

namespace conclave::cli {
namespace {

std::atomic<bool> g_interrupted{false};

void OnSignal(int) {
  g_interrupted.store(true);
}

struct SimFlags {
  uint64_t seed = 0;
  uint64_t seeds = 1000;
  int nodes = 0;
  int groups = 0;
  std::string profile;
  std::string reads = "auto";
  std::string bug;
  bool trace = false;
  bool forever = false;
  double safety_seconds = 6;
};

int RunSim(const SimFlags& f) {
  // The nodes' own logs would drown the report; violations say enough.
  InitLogging(f.trace ? spdlog::level::info : spdlog::level::err);
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  const auto start = std::chrono::steady_clock::now();
  uint64_t ran = 0;
  uint64_t failed = 0;
  std::map<std::string, uint64_t> per_profile;
  const uint64_t end = f.forever ? UINT64_MAX : f.seed + f.seeds;
  for (uint64_t seed = f.seed; seed < end && !g_interrupted.load(); ++seed) {
    sim::SimOptions o;
    o.seed = seed;
    o.nodes = f.nodes;
    o.groups = f.groups;
    o.profile = f.profile;
    o.read_mode = f.reads == "safe" ? 0 : f.reads == "lease" ? 1 : -1;
    o.safety_us = static_cast<int64_t>(f.safety_seconds * 1e6);
    o.print_trace = f.trace;
    if (!f.bug.empty() && !sim::PlantBug(f.bug, &o)) {
      fmt::print(stderr, "conclave sim: unknown --bug {}\n", f.bug);
      return 2;
    }
    sim::SimResult r = sim::RunSimulation(o);
    ++ran;
    ++per_profile[r.profile];
    if (!r.ok) {
      ++failed;
      fmt::print("{}\n", r.Report());
      if (!f.forever) break;
    } else if (f.seeds <= 10 || f.trace) {
      fmt::print("{}\n", r.Summary());
    }
    if (ran % 500 == 0) {
      const double secs =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      fmt::print("... {} seeds, {} violations, {:.1f} s\n", ran, failed, secs);
      std::fflush(stdout);
    }
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::string profiles;
  for (const auto& [name, n] : per_profile)
    profiles += fmt::format(" {}={}", name, n);
  fmt::print("simulated {} seeds from {} in {:.1f} s ({}): {} violations{}\n", ran, f.seed, secs,
             profiles, failed, g_interrupted.load() ? " (interrupted)" : "");
  return failed == 0 ? 0 : 1;
}

}  // namespace

std::function<int()> AddSimCommand(CLI::App& app) {
  auto flags = std::make_shared<SimFlags>();
  CLI::App* cmd = app.add_subcommand("sim", "run the deterministic cluster simulator over seeds");
  cmd->add_option("--seed", flags->seed, "first seed")->capture_default_str();
  cmd->add_option("--seeds", flags->seeds, "number of seeds")->capture_default_str();
  cmd->add_option("--nodes", flags->nodes, "cluster size (0: 3 or 5 by seed)")
      ->check(CLI::IsMember({0, 3, 5}));
  cmd->add_option("--groups", flags->groups, "Raft groups per node (0: 1 to 3 by seed)")
      ->check(CLI::Range(0, 16));
  cmd->add_option("--profile", flags->profile,
                  "fault profile: calm, lossy, partitions, crashes, membership, leader-churn, "
                  "chaos (default: by seed)");
  cmd->add_option("--reads", flags->reads, "read mode: auto, safe or lease")
      ->check(CLI::IsMember({"auto", "safe", "lease"}));
  cmd->add_option("--bug", flags->bug, "plant a deliberate bug (test of the checker)");
  cmd->add_option("--safety-seconds", flags->safety_seconds,
                  "simulated seconds of faults before the liveness phase")
      ->capture_default_str();
  cmd->add_flag("--trace", flags->trace, "print every event");
  cmd->add_flag("--forever", flags->forever, "run seeds until interrupted");
  return [cmd, flags]() -> int {
    if (!cmd->parsed()) return -1;
    return RunSim(*flags);
  };
}

}  // namespace conclave::cli
