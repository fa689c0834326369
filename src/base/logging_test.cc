#include "base/logging.h"

#include <gtest/gtest.h>

namespace conclave {
namespace {

TEST(LoggingTest, ParsesEtcdLevelNames) {
  EXPECT_EQ(*ParseLogLevel("debug"), spdlog::level::debug);
  EXPECT_EQ(*ParseLogLevel("info"), spdlog::level::info);
  EXPECT_EQ(*ParseLogLevel("warn"), spdlog::level::warn);
  EXPECT_EQ(*ParseLogLevel("error"), spdlog::level::err);
  EXPECT_EQ(*ParseLogLevel("panic"), spdlog::level::critical);
  EXPECT_EQ(*ParseLogLevel("fatal"), spdlog::level::critical);
}

TEST(LoggingTest, RejectsUnknownLevel) {
  Result<spdlog::level::level_enum> r = ParseLogLevel("loud");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("loud"), std::string::npos);
}

}  // namespace
}  // namespace conclave
