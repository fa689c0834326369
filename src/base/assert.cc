#include "base/assert.h"

#include <spdlog/spdlog.h>

#include <cstdio>
#include <cstdlib>

namespace conclave::internal {

void CheckFailed(const char* file, int line, const char* condition, const std::string& message) {
  // stderr first: the logger may be the thing that is broken.
  std::fprintf(stderr, "CHECK failed at %s:%d: %s%s%s\n", file, line, condition,
               message.empty() ? "" : ": ", message.c_str());
  std::fflush(stderr);
  if (auto logger = spdlog::default_logger_raw()) {
    logger->critical("CHECK failed at {}:{}: {} {}", file, line, condition, message);
    logger->flush();
  }
  std::abort();
}

}  // namespace conclave::internal
