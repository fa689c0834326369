// libFuzzer target: the decoders of the MVCC store's RocksDB keys and values
// (version keys, version values, watch-history events) must survive any
// bytes, and what they accept must re-encode to something that decodes alike.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "base/assert.h"
#include "mvcc/keys.h"

using namespace conclave::mvcc;  // NOLINT(google-build-using-namespace)

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  if (auto k = keys::DecodeVersionKey(bytes)) {
    auto again = keys::DecodeVersionKey(keys::VersionKey(0, k->user_key, k->rev));
    CHECK(again && again->user_key == k->user_key && again->rev == k->rev);
  }
  if (auto v = keys::DecodeVersionValue(bytes)) {
    auto again = keys::DecodeVersionValue(keys::EncodeVersionValue(*v));
    CHECK(again && again->tombstone == v->tombstone && again->value == v->value &&
          again->version == v->version && again->lease == v->lease);
  }
  if (auto e = keys::DecodeEvent(bytes)) {
    auto again = keys::DecodeEvent(keys::EncodeEvent(*e));
    CHECK(again && *again == *e);
  }
  (void)keys::DecodeEventKey(bytes);
  return 0;
}
