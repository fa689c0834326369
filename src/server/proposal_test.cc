#include "server/proposal.h"

#include <gtest/gtest.h>

#include "base/random.h"

namespace conclave::server {
namespace {

TEST(ProposalTest, RoundTrips) {
  SeededRandom rnd(7);
  for (int i = 0; i < 200; ++i) {
    const ProposalId id{rnd.Next(), rnd.Next(), rnd.Next()};
    std::string command(rnd.Uniform(64), '\0');
    for (char& c : command)
      c = static_cast<char>(rnd.Uniform(256));
    const std::string data = EncodeProposal(id, command);
    auto decoded = DecodeProposal(data);
    ASSERT_TRUE(decoded.has_value());
    EXPECT_EQ(decoded->id, id);
    EXPECT_EQ(decoded->command, command);
  }
}

TEST(ProposalTest, EntriesWithoutAnEnvelopeAreCommandsWithoutAProposer) {
  // A bare serialized command (first byte a field tag, never 0) and the
  // leader's empty no-op entry.
  for (std::string data : {std::string("\x1a\x03"
                                       "abc"),
                           std::string()}) {
    auto decoded = DecodeProposal(data);
    ASSERT_TRUE(decoded.has_value());
    EXPECT_EQ(decoded->id, ProposalId{});
    EXPECT_EQ(decoded->command, data);
  }
}

TEST(ProposalTest, TruncatedOrUnknownEnvelopesAreRefused) {
  const std::string data = EncodeProposal(ProposalId{1, 2, 3}, "cmd");
  for (size_t n = 1; n < 26; ++n)
    EXPECT_FALSE(DecodeProposal(data.substr(0, n)).has_value()) << n;
  std::string other_version = data;
  other_version[1] = '\x02';
  EXPECT_FALSE(DecodeProposal(other_version).has_value());
}

}  // namespace
}  // namespace conclave::server
