#include "base/timestamp.h"

#include <fmt/format.h>

#include "base/assert.h"
#include "base/coding.h"

namespace conclave {

Timestamp Timestamp::Next() const {
  CHECK_MSG(*this != Max(), "no timestamp follows {}", ToString());
  if (logical == UINT32_MAX) return Timestamp{wall_nanos + 1, 0};
  return Timestamp{wall_nanos, logical + 1};
}

Timestamp Timestamp::Prev() const {
  CHECK_MSG(!IsZero(), "no timestamp precedes {}", ToString());
  if (logical == 0) return Timestamp{wall_nanos - 1, UINT32_MAX};
  return Timestamp{wall_nanos, logical - 1};
}

std::string Timestamp::ToString() const {
  return fmt::format("{}.{}", wall_nanos, logical);
}

void Timestamp::AppendTo(std::string* dst) const {
  PutBigEndian64(dst, wall_nanos);
  PutBigEndian32(dst, logical);
}

std::optional<Timestamp> Timestamp::Decode(std::string_view bytes) {
  if (bytes.size() != kEncodedBytes) return std::nullopt;
  return Timestamp{DecodeBigEndian64(bytes.data()), DecodeBigEndian32(bytes.data() + 8)};
}

}  // namespace conclave
