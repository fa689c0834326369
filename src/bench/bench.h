// The `conclave bench` load generator: runs one workload against an etcd v3
// API cluster (Conclave or etcd) through the C++ client and reports
// throughput, latency percentiles and errors.
//
// A run: connect options.conns clients (connection i to endpoint
// i % endpoints, one gRPC connection each); a setup phase that is not
// measured (keys written before range and mixed, leases granted, watch
// streams opened); the measured phase, in which options.clients threads
// issue ops, thread i on connection i % conns, paced by options.rate; and a
// cleanup that revokes what the run granted. The measured phase ends after
// options.total ops or options.duration, whichever comes first, or when
// `stop_requested` says so; ops in flight then finish within the call
// timeout.
//
// Each thread keeps its own LatencyHistogram and ErrorCounts; they are merged
// once the threads have ended, so recording costs no locks.
//
// Thread-safety: RunBench blocks its caller; `stop_requested` is called from
// the benchmark's threads and must be thread-safe.
#pragma once

#include <cstdio>
#include <functional>

#include "base/clock.h"
#include "base/status.h"
#include "bench/histogram.h"
#include "bench/options.h"
#include "bench/report.h"

namespace conclave::bench {

struct RunEnv {
  // Monotonic time for latencies and pacing.
  const Clock* clock = &RealClock::Get();
  // True ends the run early; the report covers what completed.
  std::function<bool()> stop_requested = [] { return false; };
  // Progress lines (about one a second) and setup notes; null for none.
  std::FILE* progress = nullptr;
  // Rewrite one line with '\r' (a terminal) instead of printing a line each time.
  bool progress_in_place = false;
};

// Runs options.workload; `options` must have passed ValidateOptions.
// Unavailable when a connection cannot be made; the setup's first error when
// the setup fails.
Result<Report> RunBench(const BenchOptions& options, const RunEnv& env);

}  // namespace conclave::bench
