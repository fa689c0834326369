// libFuzzer target: ConfChange decoding (the bytes of a conf-change log
// entry) must survive any input, and what it accepts must round-trip.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "base/assert.h"
#include "raft/types.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto cc = conclave::raft::ConfChange::Decode(bytes);
  if (!cc.ok()) return 0;
  auto again = conclave::raft::ConfChange::Decode(cc->Encode());
  CHECK(again.ok() && *again == *cc);
  return 0;
}
