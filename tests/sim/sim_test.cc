// The deterministic simulator, run as part of `make test`:
//   - a slice of seeds (2,000 by default, in shards) must show no violation;
//     `make sim` runs the long range in the release build;
//   - the same seed must replay identically;
//   - every planted bug must be caught within the standard seed budget, which
//     is what shows the checker can fail.
//
// CONCLAVE_SIM_SEED_START and CONCLAVE_SIM_SEEDS move or resize the slice;
// `conclave sim --seed S --seeds N` runs any range outside the test suite.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "base/logging.h"
#include "sim/sim.h"

namespace conclave::sim {
namespace {

constexpr uint64_t kShards = 16;
constexpr uint64_t kDefaultSeeds = 2000;
// Seeds a planted bug gets before the test declares the checker blind.
constexpr uint64_t kBugSeedBudget = 2000;

// The simulated nodes log like real ones; only errors are worth printing.
class QuietLogs : public ::testing::Environment {
 public:
  void SetUp() override { InitLogging(spdlog::level::err); }
};
const auto* const kQuietLogs = ::testing::AddGlobalTestEnvironment(new QuietLogs);

uint64_t EnvOr(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v ? std::strtoull(v, nullptr, 10) : fallback;
}

class SimSliceTest : public ::testing::TestWithParam<uint64_t> {};

TEST_P(SimSliceTest, NoViolations) {
  const uint64_t start = EnvOr("CONCLAVE_SIM_SEED_START", 0);
  const uint64_t total = EnvOr("CONCLAVE_SIM_SEEDS", kDefaultSeeds);
  const uint64_t shard = GetParam();
  uint64_t ran = 0;
  for (uint64_t seed = start + shard; seed < start + total; seed += kShards) {
    SimOptions o;
    o.seed = seed;
    SimResult r = RunSimulation(o);
    ++ran;
    ASSERT_TRUE(r.ok) << r.Report();
  }
  EXPECT_GT(ran, 0u);
}

INSTANTIATE_TEST_SUITE_P(Shards, SimSliceTest, ::testing::Range<uint64_t>(0, kShards));

TEST(SimReplayTest, SameSeedSameRun) {
  for (uint64_t seed : {3u, 11u, 40u}) {
    SimOptions o;
    o.seed = seed;
    SimResult a = RunSimulation(o);
    SimResult b = RunSimulation(o);
    EXPECT_EQ(a.fingerprint, b.fingerprint) << "seed " << seed;
    EXPECT_EQ(a.stats.events, b.stats.events);
    EXPECT_EQ(a.stats.writes_acked, b.stats.writes_acked);
    EXPECT_EQ(a.Summary(), b.Summary());
  }
}

TEST(SimReplayTest, DifferentSeedsDiffer) {
  SimOptions a;
  a.seed = 100;
  SimOptions b;
  b.seed = 107;  // same profile, different randomness
  EXPECT_NE(RunSimulation(a).fingerprint, RunSimulation(b).fingerprint);
}

TEST(SimCoverageTest, FaultsAndWorkloadHappen) {
  // A run of each profile must actually exercise what it claims to.
  SimStats total;
  for (uint64_t seed = 0; seed < 2 * Profiles().size(); ++seed) {
    SimOptions o;
    o.seed = seed;
    SimResult r = RunSimulation(o);
    ASSERT_TRUE(r.ok) << r.Report();
    total.writes_acked += r.stats.writes_acked;
    total.reads_ok += r.stats.reads_ok;
    total.crashes += r.stats.crashes;
    total.partitions += r.stats.partitions;
    total.conf_changes += r.stats.conf_changes;
    total.transfers += r.stats.transfers;
    total.snapshots_installed += r.stats.snapshots_installed;
    total.leaders_elected += r.stats.leaders_elected;
  }
  EXPECT_GT(total.writes_acked, 1000u);
  EXPECT_GT(total.reads_ok, 500u);
  EXPECT_GT(total.crashes, 10u);
  EXPECT_GT(total.partitions, 5u);
  EXPECT_GT(total.conf_changes, 5u);
  EXPECT_GT(total.transfers, 5u);
  EXPECT_GT(total.snapshots_installed, 5u);
  EXPECT_GT(total.leaders_elected, 20u);
}

class PlantedBugTest : public ::testing::TestWithParam<std::string> {};

TEST_P(PlantedBugTest, CaughtWithinSeedBudget) {
  const std::string& bug = GetParam();
  for (uint64_t seed = 0; seed < kBugSeedBudget; ++seed) {
    SimOptions o;
    o.seed = seed;
    ASSERT_TRUE(PlantBug(bug, &o)) << bug;
    SimResult r = RunSimulation(o);
    if (!r.ok) {
      // Caught. The same seed must replay to the same violation.
      SimResult again = RunSimulation(o);
      EXPECT_FALSE(again.ok);
      EXPECT_EQ(again.violation, r.violation);
      std::printf("%s caught at seed %llu: %s\n", bug.c_str(),
                  static_cast<unsigned long long>(seed), r.violation.c_str());
      return;
    }
  }
  FAIL() << "planted bug " << bug << " survived " << kBugSeedBudget << " seeds";
}

// Every planted bug but the Figure 8 one, which the random schedule does not
// reach within the budget (docs/SIMULATION.md); paper_test proves that rule.
std::vector<std::string> BugsUnderTest() {
  std::vector<std::string> bugs;
  for (const std::string& b : PlantableBugs()) {
    if (b != "commit_previous_term_by_counting") bugs.push_back(b);
  }
  return bugs;
}

INSTANTIATE_TEST_SUITE_P(Bugs, PlantedBugTest, ::testing::ValuesIn(BugsUnderTest()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

}  // namespace
}  // namespace conclave::sim
