// Assertions that stay on in every build, release included.
//
// A failed CHECK is a bug in Conclave, never an expected condition (those are
// Status values). It logs the condition, file, line and an optional formatted
// message, flushes the logs and aborts, so a crash leaves evidence behind.
//
// Thread-safety: safe from any thread.
#pragma once

#include <fmt/format.h>

#include <string>

namespace conclave::internal {

[[noreturn]] void CheckFailed(const char* file, int line, const char* condition,
                              const std::string& message);

}  // namespace conclave::internal

#define CHECK(cond)                                                                \
  do {                                                                             \
    if (__builtin_expect(!(cond), 0)) {                                            \
      ::conclave::internal::CheckFailed(__FILE__, __LINE__, #cond, std::string()); \
    }                                                                              \
  } while (0)

// CHECK_MSG(cond, "fmt {} string", args...)
#define CHECK_MSG(cond, ...)                                                                  \
  do {                                                                                        \
    if (__builtin_expect(!(cond), 0)) {                                                       \
      ::conclave::internal::CheckFailed(__FILE__, __LINE__, #cond, fmt::format(__VA_ARGS__)); \
    }                                                                                         \
  } while (0)

#define CHECK_OP_IMPL(a, b, op)                                                             \
  do {                                                                                      \
    const auto& _conclave_a = (a);                                                          \
    const auto& _conclave_b = (b);                                                          \
    if (__builtin_expect(!(_conclave_a op _conclave_b), 0)) {                               \
      ::conclave::internal::CheckFailed(__FILE__, __LINE__, #a " " #op " " #b,              \
                                        fmt::format("{} vs {}", _conclave_a, _conclave_b)); \
    }                                                                                       \
  } while (0)

#define CHECK_EQ(a, b) CHECK_OP_IMPL(a, b, ==)
#define CHECK_NE(a, b) CHECK_OP_IMPL(a, b, !=)
#define CHECK_LE(a, b) CHECK_OP_IMPL(a, b, <=)
#define CHECK_LT(a, b) CHECK_OP_IMPL(a, b, <)
#define CHECK_GE(a, b) CHECK_OP_IMPL(a, b, >=)
#define CHECK_GT(a, b) CHECK_OP_IMPL(a, b, >)

// Marks code that must never run.
#define UNREACHABLE() ::conclave::internal::CheckFailed(__FILE__, __LINE__, "unreachable", "")
