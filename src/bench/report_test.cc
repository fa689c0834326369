#include "bench/report.h"

#include <gtest/gtest.h>

#include <string>

namespace conclave::bench {
namespace {

Report Sample() {
  Report r;
  r.workload = "put";
  r.clients = 16;
  r.conns = 4;
  r.ops = 1000;
  r.seconds = 2;
  for (uint64_t v = 1; v <= 1000; ++v)
    r.latency.Record(v * 1000);  // 1 µs .. 1 ms
  r.errors.Add("etcdserver: request timed out", 3);
  r.errors.Add(Status::Unavailable(""));
  r.details.emplace_back("key space", "100");
  return r;
}

TEST(ErrorCountsTest, CountsByMessageMostFrequentFirst) {
  ErrorCounts e;
  e.Add("b");
  e.Add("a", 2);
  e.Add("c", 2);
  EXPECT_EQ(e.total(), 5u);
  const auto sorted = e.Sorted();
  ASSERT_EQ(sorted.size(), 3u);
  EXPECT_EQ(sorted[0], (std::pair<std::string, uint64_t>{"a", 2}));
  EXPECT_EQ(sorted[1], (std::pair<std::string, uint64_t>{"c", 2}));
  EXPECT_EQ(sorted[2], (std::pair<std::string, uint64_t>{"b", 1}));
}

TEST(ErrorCountsTest, DistinctMessagesAreBounded) {
  ErrorCounts e;
  for (size_t i = 0; i < 3 * kErrorMessagesMax; ++i)
    e.Add("error " + std::to_string(i));
  EXPECT_EQ(e.total(), 3 * kErrorMessagesMax);
  const auto sorted = e.Sorted();
  EXPECT_EQ(sorted.size(), kErrorMessagesMax);
  EXPECT_EQ(sorted[0].first, kOtherErrors);
  EXPECT_EQ(sorted[0].second, 2 * kErrorMessagesMax + 1);
}

TEST(ErrorCountsTest, MergeAddsCountsAndEmptyMessagesUseTheCodeName) {
  ErrorCounts a, b;
  a.Add("x");
  b.Add("x", 4);
  b.Add(Status::DeadlineExceeded(""));
  a.Merge(b);
  EXPECT_EQ(a.total(), 6u);
  EXPECT_EQ(a.Sorted()[0], (std::pair<std::string, uint64_t>{"x", 5}));
  EXPECT_EQ(a.Sorted()[1].first, "DEADLINE_EXCEEDED");
}

// Percentiles are the high ends of their buckets (within 0.8% above the true
// 0.5, 0.9, 0.991 and 0.999 ms); max and mean are exact.
TEST(ReportTest, TableShowsSummaryLatencyErrorsAndDetails) {
  const std::string table = FormatReportTable(Sample());
  EXPECT_EQ(table,
            "Summary (put, 16 clients over 4 connections):\n"
            "  ops:         1000\n"
            "  errors:      4\n"
            "  duration:    2.000 s\n"
            "  throughput:  500.0 ops/s\n"
            "Latency, request (ms):\n"
            "  p50:        0.502\n"
            "  p90:        0.901\n"
            "  p99:        0.991\n"
            "  p99.9:      0.999\n"
            "  max:        1.000\n"
            "  mean:       0.500\n"
            "Errors:\n"
            "           3  etcdserver: request timed out\n"
            "           1  UNAVAILABLE\n"
            "Details:\n"
            "  key space:  100\n");
}

TEST(ReportTest, JsonCarriesTheSameFigures) {
  const std::string json = FormatReportJson(Sample());
  EXPECT_EQ(json,
            "{\"workload\":\"put\",\"clients\":16,\"conns\":4,\"ops\":1000,\"errors\":4,"
            "\"duration_s\":2.000000,\"throughput_ops_per_s\":500.000,"
            "\"latency_label\":\"request\",\"latency_ms\":{\"p50\":0.501759,\"p90\":0.901119,"
            "\"p99\":0.991231,\"p99_9\":0.999423,\"max\":1.000000,\"mean\":0.500500},"
            "\"error_messages\":{\"etcdserver: request timed out\":3,\"UNAVAILABLE\":1},"
            "\"details\":{\"key space\":\"100\"}}");
}

TEST(ReportTest, JsonEscapesAnyErrorText) {
  Report r;
  r.workload = "put";
  r.errors.Add("bad \"key\"\n\x01");
  const std::string json = FormatReportJson(r);
  EXPECT_NE(json.find(R"("bad \"key\"\u000a\u0001":1)"), std::string::npos) << json;
  EXPECT_NE(json.find("\"throughput_ops_per_s\":0.000"), std::string::npos);
}

}  // namespace
}  // namespace conclave::bench
