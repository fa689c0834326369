// Naming threads, so profiles and debuggers tell the driver from the apply
// thread from gRPC's own.
#pragma once

#include <string_view>

namespace conclave {

// Names the calling thread (the kernel keeps the first 15 bytes).
void SetThreadName(std::string_view name);

}  // namespace conclave
