// Little helpers for binary encodings: fixed-width little-endian integers,
// fixed-width big-endian integers (for keys, whose bytewise order must follow
// the numbers' order), LEB128 varints and length-prefixed strings.
//
// Encoders append to a std::string. Decoders read from a Decoder that
// consumes a string_view and reports truncated or malformed input as a
// failed read (never a crash), so they are safe on untrusted bytes.
//
// Thread-safety: values.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace conclave {

void PutFixed32(std::string* dst, uint32_t v);
void PutFixed64(std::string* dst, uint64_t v);
void PutVarint64(std::string* dst, uint64_t v);
void PutLengthPrefixed(std::string* dst, std::string_view bytes);
// Big-endian: most significant byte first, so that encodings compare
// bytewise like the numbers.
void PutBigEndian32(std::string* dst, uint32_t v);
void PutBigEndian64(std::string* dst, uint64_t v);

uint32_t DecodeFixed32(const char* p);
uint64_t DecodeFixed64(const char* p);
uint32_t DecodeBigEndian32(const char* p);
uint64_t DecodeBigEndian64(const char* p);

// How many bytes PutVarint64 writes for v (1 to 10). A decoder that must
// accept only the shortest encoding compares this with what it consumed.
size_t VarintLength(uint64_t v);

class Decoder {
 public:
  explicit Decoder(std::string_view input) : rest_(input) {}

  bool ReadFixed32(uint32_t* v);
  bool ReadFixed64(uint64_t* v);
  bool ReadBigEndian32(uint32_t* v);
  bool ReadBigEndian64(uint64_t* v);
  bool ReadVarint64(uint64_t* v);
  bool ReadByte(uint8_t* v);
  bool ReadLengthPrefixed(std::string_view* v);
  bool ReadBytes(size_t n, std::string_view* v);

  bool empty() const { return rest_.empty(); }
  size_t remaining() const { return rest_.size(); }

 private:
  std::string_view rest_;
};

// The smallest byte string greater than every string that starts with
// `prefix` (the range_end that selects a prefix); "\0", meaning "to the
// end", when there is none (every byte 0xff, or an empty prefix).
std::string PrefixEnd(std::string_view prefix);

}  // namespace conclave
