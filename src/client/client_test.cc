// What the client does without a server: endpoint parsing, the mapping of
// gRPC failures to Status, prefix ranges, and failing to connect in time.
#include "client/client.h"

#include <gtest/gtest.h>

#include <chrono>

namespace conclave::client {
namespace {

TEST(ParseEndpointTest, AcceptsHostPortAndHttpUrls) {
  EXPECT_EQ(*ParseEndpoint("127.0.0.1:2379"), "127.0.0.1:2379");
  EXPECT_EQ(*ParseEndpoint("http://127.0.0.1:2379"), "127.0.0.1:2379");
  EXPECT_EQ(*ParseEndpoint("http://localhost:23790/"), "localhost:23790");
  EXPECT_EQ(*ParseEndpoint("[::1]:2379"), "[::1]:2379");
}

TEST(ParseEndpointTest, RejectsMalformedEndpoints) {
  for (const char* bad :
       {"", "127.0.0.1", "127.0.0.1:", ":2379", "http://", "host:12ab", "http://host:2379/path"}) {
    auto r = ParseEndpoint(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << bad;
  }
  auto tls = ParseEndpoint("https://127.0.0.1:2379");
  ASSERT_FALSE(tls.ok());
  EXPECT_NE(tls.status().message().find("TLS"), std::string::npos);
}

TEST(ParseEndpointsTest, SplitsCommaListsAndSkipsEmptyItems) {
  auto r = ParseEndpoints("127.0.0.1:1, http://127.0.0.1:2,,127.0.0.1:3");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, (std::vector<std::string>{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"}));
  EXPECT_FALSE(ParseEndpoints("").ok());
  EXPECT_FALSE(ParseEndpoints(" , ").ok());
  EXPECT_FALSE(ParseEndpoints("127.0.0.1:1,nonsense").ok());
}

TEST(StatusFromGrpcTest, KeepsTheServersMessageAndCode) {
  Status s = StatusFromGrpc(11, "etcdserver: mvcc: required revision has been compacted");
  EXPECT_EQ(s.code(), StatusCode::kOutOfRange);
  EXPECT_EQ(s.message(), "etcdserver: mvcc: required revision has been compacted");

  s = StatusFromGrpc(5, "etcdserver: requested lease not found");
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "etcdserver: requested lease not found");

  s = StatusFromGrpc(14, "etcdserver: no leader");
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
  EXPECT_EQ(s.message(), "etcdserver: no leader");
}

TEST(StatusFromGrpcTest, SpellsClientSideDeadlinesAndCancelsAsContextErrors) {
  Status s = StatusFromGrpc(4, "Deadline Exceeded");
  EXPECT_EQ(s.code(), StatusCode::kDeadlineExceeded);
  EXPECT_EQ(s.message(), "context deadline exceeded");
  s = StatusFromGrpc(1, "Cancelled");
  EXPECT_EQ(s.code(), StatusCode::kCancelled);
  EXPECT_EQ(s.message(), "context canceled");
  // A server's own deadline text is kept.
  s = StatusFromGrpc(4, "etcdserver: something slow");
  EXPECT_EQ(s.message(), "etcdserver: something slow");
}

TEST(StatusFromGrpcTest, NamesTheCodeWhenTheMessageIsEmpty) {
  Status s = StatusFromGrpc(12, "");
  EXPECT_EQ(s.code(), StatusCode::kUnimplemented);
  EXPECT_EQ(s.message(), "UNIMPLEMENTED");
}

TEST(ConnectTest, FailsWithUnavailableWhenNoEndpointAnswersInTime) {
  ClientOptions options;
  // Port 1 on loopback: nothing listens there, the connection is refused.
  options.endpoints = {"127.0.0.1:1"};
  options.dial_timeout = std::chrono::milliseconds(300);
  const auto start = std::chrono::steady_clock::now();
  auto c = Client::Connect(options);
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kUnavailable);
  EXPECT_LT(took, std::chrono::seconds(5));
}

TEST(ConnectTest, RefusesBadEndpointsBeforeDialling) {
  ClientOptions options;
  options.endpoints = {"no-port"};
  auto c = Client::Connect(options);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  options.endpoints = {};
  EXPECT_FALSE(Client::Connect(options).ok());
}

}  // namespace
}  // namespace conclave::client
