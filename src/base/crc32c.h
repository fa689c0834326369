// CRC32C (Castagnoli): the checksum of every write-ahead log record and,
// later, of snapshot chunks and other on-disk blocks.
//
// The polynomial is 0x1EDC6F41 (reflected 0x82F63B78), with the usual
// all-ones initial value and final inversion, so Crc32c("123456789") is
// 0xE3069283. Computed in portable code by slicing-by-8 (eight 256-entry
// tables built at compile time); the result does not depend on byte order
// or alignment.
//
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace conclave {

// The CRC of `data` continued from `crc`, the CRC of the bytes before it:
// Crc32cExtend(Crc32c(a), b) == Crc32c(a + b).
uint32_t Crc32cExtend(uint32_t crc, const char* data, size_t n);

inline uint32_t Crc32cExtend(uint32_t crc, std::string_view data) {
  return Crc32cExtend(crc, data.data(), data.size());
}

inline uint32_t Crc32c(std::string_view data) {
  return Crc32cExtend(0, data);
}

}  // namespace conclave
