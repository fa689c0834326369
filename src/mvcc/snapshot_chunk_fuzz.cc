// libFuzzer target: snapshot chunk decoding must survive any bytes, returning
// an error rather than crashing, and what it accepts must survive a
// re-encode and decode unchanged.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "base/assert.h"
#include "mvcc/snapshot.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto chunk = conclave::mvcc::DecodeChunk(bytes);
  if (!chunk.ok()) return 0;
  auto again = conclave::mvcc::DecodeChunk(conclave::mvcc::EncodeChunk(*chunk));
  CHECK(again.ok());
  CHECK(again->id == chunk->id && again->seq == chunk->seq && again->last == chunk->last);
  CHECK(again->total_records == chunk->total_records && again->records == chunk->records);
  return 0;
}
