// SHA-256 (FIPS 180-4), for the checksum that ends a saved snapshot file
// (etcd's tools check for one). Not used for anything secret.
//
// Thread-safety: a Sha256 object is used by one thread; the free function is pure.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace conclave {

class Sha256 {
 public:
  static constexpr size_t kDigestBytes = 32;

  Sha256();
  void Update(std::string_view data);
  // The digest of everything given to Update; the object is spent afterwards.
  std::array<uint8_t, kDigestBytes> Finish();

 private:
  void Block(const uint8_t* p);

  std::array<uint32_t, 8> h_;
  std::array<uint8_t, 64> buffer_{};
  size_t buffered_ = 0;
  uint64_t total_bytes_ = 0;
};

// The digest of `data` as 32 raw bytes.
std::string Sha256Digest(std::string_view data);

}  // namespace conclave
