// Helpers shared by src/storage's tests. Test-only; not part of the library.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "base/assert.h"
#include "raft/raft.h"

namespace conclave::storage::test {

inline raft::Entry E(uint64_t index, uint64_t term, std::string data = "") {
  return raft::Entry{.term = term, .index = index, .data = std::move(data)};
}

// `count` entries from `first`, all of `term`, with data naming their place.
inline std::vector<raft::Entry> EntryRun(uint64_t first, uint64_t count, uint64_t term,
                                         std::string_view tag = "e") {
  std::vector<raft::Entry> out;
  for (uint64_t i = first; i < first + count; ++i) {
    out.push_back(E(i, term, fmt::format("{}-{}-{}", tag, i, term)));
  }
  return out;
}

// A fresh directory under the system's temp dir, removed afterwards.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "conclave-wal-XXXXXX").string();
    CHECK(::mkdtemp(pattern.data()) != nullptr);
    path_ = pattern;
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace conclave::storage::test
