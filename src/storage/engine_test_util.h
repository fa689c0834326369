// Test-only: an Engine of either kind, for suites that run once against
// RocksDB and once against MemEngine. Not part of the library.
#pragma once

#include <memory>
#include <ostream>
#include <string>

#include "base/assert.h"
#include "storage/engine.h"

namespace conclave::storage::test {

enum class EngineKind { kRocks, kMem };

// For test names: "Rocks", "Mem".
inline std::string EngineKindName(EngineKind kind) {
  return kind == EngineKind::kRocks ? "Rocks" : "Mem";
}

// gtest prints parameters with this (found by argument-dependent lookup).
inline void PrintTo(EngineKind kind, std::ostream* os) {
  *os << EngineKindName(kind);
}

// RocksDB in `dir` (created if missing), or a fresh MemEngine (`dir` and
// `options` unused).
inline std::unique_ptr<Engine> OpenTestEngine(EngineKind kind, const std::string& dir,
                                              const RocksEngineOptions& options = {}) {
  if (kind == EngineKind::kMem) return std::make_unique<MemEngine>();
  Result<std::unique_ptr<Engine>> engine = OpenRocksEngine(dir, options);
  CHECK_MSG(engine.ok(), "open test engine: {}", engine.status().ToString());
  return std::move(engine).value();
}

}  // namespace conclave::storage::test
