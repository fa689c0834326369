// Fuzz target for the entry envelope (proposal.h): decoding never reads out
// of bounds, and what decodes re-encodes to the same bytes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "server/proposal.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  auto decoded = conclave::server::DecodeProposal(in);
  if (!decoded || in.empty() || in[0] != '\0') return 0;
  const std::string again = conclave::server::EncodeProposal(decoded->id, decoded->command);
  if (again != in) std::abort();
  return 0;
}
