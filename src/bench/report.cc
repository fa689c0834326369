#include "bench/report.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>

namespace conclave::bench {

namespace {

struct PercentileRow {
  std::string_view table_name;
  std::string_view json_name;
  double percentile;
};

constexpr std::array<PercentileRow, 4> kPercentiles = {{
    {"p50", "p50", 50},
    {"p90", "p90", 90},
    {"p99", "p99", 99},
    {"p99.9", "p99_9", 99.9},
}};

double Millis(uint64_t nanos) {
  return static_cast<double>(nanos) / 1e6;
}

// A JSON string literal; control bytes and non-ASCII bytes are escaped as
// \u00XX so that any error text stays valid JSON.
std::string JsonQuote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20 || u >= 0x7f) {
      out += fmt::format("\\u{:04x}", u);
    } else {
      out += c;
    }
  }
  out += '"';
  return out;
}

}  // namespace

// ---- ErrorCounts -----------------------------------------------------------

void ErrorCounts::Add(std::string_view message, uint64_t n) {
  total_ += n;
  auto it = counts_.find(message);
  if (it != counts_.end()) {
    it->second += n;
    return;
  }
  // One slot stays free for kOtherErrors.
  if (counts_.size() + 1 >= kErrorMessagesMax && message != kOtherErrors) {
    counts_[std::string(kOtherErrors)] += n;
    return;
  }
  counts_.emplace(std::string(message), n);
}

void ErrorCounts::Merge(const ErrorCounts& other) {
  for (const auto& [message, n] : other.counts_)
    Add(message, n);
}

std::vector<std::pair<std::string, uint64_t>> ErrorCounts::Sorted() const {
  std::vector<std::pair<std::string, uint64_t>> out(counts_.begin(), counts_.end());
  std::stable_sort(out.begin(), out.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  return out;
}

std::string ErrorCounts::MessageOf(const Status& status) {
  if (!status.message().empty()) return status.message();
  return std::string(StatusCodeName(status.code()));
}

// ---- Report ----------------------------------------------------------------

double Report::throughput() const {
  return seconds > 0 ? static_cast<double>(ops) / seconds : 0;
}

std::string FormatReportTable(const Report& r) {
  std::string out = fmt::format("Summary ({}, {} clients over {} connections):\n", r.workload,
                                r.clients, r.conns);
  out += fmt::format("  ops:         {}\n", r.ops);
  out += fmt::format("  errors:      {}\n", r.errors.total());
  out += fmt::format("  duration:    {:.3f} s\n", r.seconds);
  out += fmt::format("  throughput:  {:.1f} ops/s\n", r.throughput());
  out += fmt::format("Latency, {} (ms):\n", r.latency_label);
  for (const PercentileRow& p : kPercentiles) {
    out += fmt::format("  {:<7}{:>10.3f}\n", fmt::format("{}:", p.table_name),
                       Millis(r.latency.Percentile(p.percentile)));
  }
  out += fmt::format("  {:<7}{:>10.3f}\n", "max:", Millis(r.latency.max_nanos()));
  out += fmt::format("  {:<7}{:>10.3f}\n", "mean:", r.latency.mean_nanos() / 1e6);
  if (r.errors.total() > 0) {
    out += "Errors:\n";
    for (const auto& [message, n] : r.errors.Sorted())
      out += fmt::format("  {:>10}  {}\n", n, message);
  }
  if (!r.details.empty()) {
    out += "Details:\n";
    size_t width = 0;
    for (const auto& d : r.details)
      width = std::max(width, d.first.size() + 1);
    for (const auto& [name, value] : r.details)
      out += fmt::format("  {:<{}}  {}\n", name + ":", width, value);
  }
  return out;
}

std::string FormatReportJson(const Report& r) {
  std::string out = fmt::format(
      "{{\"workload\":{},\"clients\":{},\"conns\":{},\"ops\":{},\"errors\":{},"
      "\"duration_s\":{:.6f},\"throughput_ops_per_s\":{:.3f},\"latency_label\":{},"
      "\"latency_ms\":{{",
      JsonQuote(r.workload), r.clients, r.conns, r.ops, r.errors.total(), r.seconds, r.throughput(),
      JsonQuote(r.latency_label));
  for (const PercentileRow& p : kPercentiles)
    out += fmt::format("\"{}\":{:.6f},", p.json_name, Millis(r.latency.Percentile(p.percentile)));
  out += fmt::format("\"max\":{:.6f},\"mean\":{:.6f}}},\"error_messages\":{{",
                     Millis(r.latency.max_nanos()), r.latency.mean_nanos() / 1e6);
  bool first = true;
  for (const auto& [message, n] : r.errors.Sorted()) {
    out += fmt::format("{}{}:{}", first ? "" : ",", JsonQuote(message), n);
    first = false;
  }
  out += "},\"details\":{";
  first = true;
  for (const auto& [name, value] : r.details) {
    out += fmt::format("{}{}:{}", first ? "" : ",", JsonQuote(name), JsonQuote(value));
    first = false;
  }
  out += "}}";
  return out;
}

}  // namespace conclave::bench
