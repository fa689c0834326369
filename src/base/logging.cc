#include "base/logging.h"

#include <spdlog/sinks/stdout_color_sinks.h>

#include <string>

namespace conclave {

Result<spdlog::level::level_enum> ParseLogLevel(std::string_view name) {
  std::string n(name);
  if (n == "trace") return spdlog::level::trace;
  if (n == "debug") return spdlog::level::debug;
  if (n == "info") return spdlog::level::info;
  if (n == "warn" || n == "warning") return spdlog::level::warn;
  if (n == "error") return spdlog::level::err;
  if (n == "panic" || n == "fatal" || n == "critical") return spdlog::level::critical;
  if (n == "off") return spdlog::level::off;
  return Status::InvalidArgument(
      fmt::format("unknown log level \"{}\" (want debug, info, warn, error, panic or fatal)", n));
}

void InitLogging(spdlog::level::level_enum level) {
  // Calling again only changes the level (a subcommand may set its own).
  if (auto existing = spdlog::get("conclave")) {
    existing->set_level(level);
    return;
  }
  auto logger = spdlog::stderr_color_mt("conclave");
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%fZ %^%l%$ %v", spdlog::pattern_time_type::utc);
  logger->set_level(level);
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(std::move(logger));
}

}  // namespace conclave
