// Logging through spdlog.
//
// Every module logs through these macros so that the level, the format and
// the sink are set in one place (InitLogging). Structured fields go in the
// message as key=value pairs: "raft: became leader group=0 term=7".
//
// Thread-safety: spdlog's default logger is thread-safe.
#pragma once

#include <spdlog/spdlog.h>

#include <string_view>

#include "base/status.h"

namespace conclave {

// Parses etcd's level names (debug, info, warn, error, panic, fatal) and
// spdlog's (trace, critical, off).
Result<spdlog::level::level_enum> ParseLogLevel(std::string_view name);

// Sets the default logger's level and pattern. Logs go to stderr.
void InitLogging(spdlog::level::level_enum level);

}  // namespace conclave

#define LOG_TRACE(...) SPDLOG_TRACE(__VA_ARGS__)
#define LOG_DEBUG(...) ::spdlog::debug(__VA_ARGS__)
#define LOG_INFO(...) ::spdlog::info(__VA_ARGS__)
#define LOG_WARN(...) ::spdlog::warn(__VA_ARGS__)
#define LOG_ERROR(...) ::spdlog::error(__VA_ARGS__)
