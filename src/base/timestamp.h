// Timestamp: the point in time at which a native version is written or read.
//
// Two fields, ordered lexicographically: wall_nanos, then logical. The same
// type serves both ways Conclave may hand out time:
//   - a timestamp oracle (one 64-bit counter per cluster) uses wall_nanos for
//     its value and leaves logical 0; the value need not be nanoseconds;
//   - a hybrid logical clock uses wall_nanos for physical time in nanoseconds
//     since the Unix epoch and logical to order events within one wall tick
//     (or when the wall clock lags a timestamp already seen).
// An etcd revision (main, sub) maps to wall_nanos = main, logical = sub
// (docs/KEYS.md).
//
// Encoding: 12 bytes, wall_nanos big-endian (8) then logical big-endian (4),
// so encodings compare bytewise like the timestamps. Version keys store the
// bitwise inverse so that newer versions sort first (src/keys).
//
// Thread-safety: a value type.
#pragma once

#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace conclave {

struct Timestamp {
  uint64_t wall_nanos = 0;
  uint32_t logical = 0;

  static constexpr size_t kEncodedBytes = 12;

  static constexpr Timestamp Zero() { return Timestamp{}; }
  static constexpr Timestamp Max() { return Timestamp{UINT64_MAX, UINT32_MAX}; }
  // A timestamp oracle's value.
  static constexpr Timestamp FromOracle(uint64_t value) { return Timestamp{value, 0}; }

  constexpr bool IsZero() const { return wall_nanos == 0 && logical == 0; }

  // The smallest timestamp after this one: logical + 1, carrying into the
  // wall when logical is at its maximum. CHECK-fails on Max().
  Timestamp Next() const;
  // The largest timestamp before this one. CHECK-fails on Zero().
  Timestamp Prev() const;

  // "<wall>.<logical>", e.g. "1700000000000000000.3".
  std::string ToString() const;

  // Appends the 12-byte big-endian encoding.
  void AppendTo(std::string* dst) const;
  // Exactly 12 bytes; nullopt for any other length.
  static std::optional<Timestamp> Decode(std::string_view bytes);

  // NOLINTNEXTLINE(modernize-use-nullptr): clang-tidy 14 misreads defaulted <=>
  friend constexpr auto operator<=>(const Timestamp&, const Timestamp&) = default;
  friend constexpr bool operator==(const Timestamp&, const Timestamp&) = default;
};

}  // namespace conclave
