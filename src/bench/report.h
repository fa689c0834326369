// Report: the result of one benchmark run, and its two printed forms.
//
// The table form is for people; the JSON form is one object on one line for
// scripts (scripts/bench-compare.sh reads it with jq). Field names and units
// are part of that contract: durations in seconds, latencies in
// milliseconds, throughput in ops per second.
//
// ErrorCounts keeps at most kErrorMessagesMax distinct messages; later ones
// are counted under kOtherErrors so that a flood of distinct errors cannot
// grow memory.
//
// Thread-safety: plain data; each benchmark thread fills its own and the
// runner merges them after the threads end.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"
#include "bench/histogram.h"

namespace conclave::bench {

inline constexpr size_t kErrorMessagesMax = 32;
inline constexpr std::string_view kOtherErrors = "(other errors)";

class ErrorCounts {
 public:
  void Add(std::string_view message, uint64_t n = 1);
  // The message of `status`, or its code's name when it has none.
  void Add(const Status& status) { Add(MessageOf(status)); }
  void Merge(const ErrorCounts& other);

  uint64_t total() const { return total_; }
  // Most frequent first; ties by message.
  std::vector<std::pair<std::string, uint64_t>> Sorted() const;

  static std::string MessageOf(const Status& status);

 private:
  std::map<std::string, uint64_t, std::less<>> counts_;
  uint64_t total_ = 0;
};

struct Report {
  std::string workload;
  int clients = 0;
  int conns = 0;
  // Completed ops (failed ones included) and the time they took.
  uint64_t ops = 0;
  double seconds = 0;
  ErrorCounts errors;
  // What `latency` measures, e.g. "request" or "put to event".
  std::string latency_label = "request";
  LatencyHistogram latency;
  // Workload-specific figures, printed after the summary in this order
  // ("setup keys" -> "10000").
  std::vector<std::pair<std::string, std::string>> details;

  // ops / seconds; 0 when no time passed.
  double throughput() const;
};

// The multi-line human form.
std::string FormatReportTable(const Report& report);
// One JSON object, no trailing newline.
std::string FormatReportJson(const Report& report);

}  // namespace conclave::bench
