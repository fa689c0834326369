// libFuzzer target: the node's key and value decoders (keys.h) on any bytes.
//
// Properties, each a CHECK:
//   - what a decoder accepts, its encoder gives back byte for byte (so no
//     two byte strings decode to the same thing, and nothing is dropped);
//   - the typed key decoders agree with DecodeKey, and a decoded key lies in
//     its keyspace's span and in the spans of its user key;
//   - read from the same bytes as two user keys and two timestamps, the
//     encodings order as the layout promises.
// Out-of-bounds reads and unbounded allocation are ASan's and libFuzzer's
// to report (-rss_limit_mb, -malloc_limit_mb).
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/assert.h"
#include "keys/keys.h"

namespace keys = conclave::keys;
using conclave::Timestamp;

namespace {

template <typename Decoded, typename Encode>
void CheckReencodes(const Decoded& decoded, Encode encode, std::string_view bytes) {
  if (!decoded.ok()) {
    CHECK(decoded.status().code() == conclave::StatusCode::kCorruption);
    return;
  }
  CHECK_MSG(encode(*decoded) == bytes, "re-encoding differs for {}", keys::DescribeKey(bytes));
}

void CheckKey(std::string_view bytes) {
  auto key = keys::DecodeKey(bytes);
  (void)keys::DescribeKey(bytes);
  if (!key.ok()) {
    CHECK(key.status().code() == conclave::StatusCode::kCorruption);
    return;
  }
  CHECK(keys::EncodeKey(*key) == bytes);
  auto tag = keys::KeyTag(bytes);
  CHECK(tag.ok() && static_cast<size_t>(*tag) == key->index());
  const keys::Span spaces[] = {keys::EtcdSpan(), keys::NodeLocalSpan(), keys::AllRangeIdLocalSpan(),
                               keys::AllRangeLocalSpan(), keys::AllDataSpan()};
  for (size_t i = 0; i < std::size(spaces); ++i)
    CHECK(spaces[i].Contains(bytes) == (i == key->index()));

  if (const auto* d = std::get_if<keys::DataKey>(&*key)) {
    auto typed = keys::DecodeDataKey(bytes);
    CHECK(typed.ok() && *typed == *d);
    CHECK(keys::KeyEntriesSpan(d->user_key).Contains(bytes));
    CHECK(keys::DataSpan(d->user_key, "").Contains(bytes));
    if (!d->user_key.empty()) CHECK(!keys::DataSpan("", d->user_key).Contains(bytes));
    CHECK(!keys::RangeLocalSpan(d->user_key, "").Contains(bytes));
  } else if (const auto* r = std::get_if<keys::RangeLocalKey>(&*key)) {
    auto typed = keys::DecodeRangeLocalKey(bytes);
    CHECK(typed.ok() && *typed == *r);
    CHECK(keys::RangeLocalSpan(r->anchor, "").Contains(bytes));
    if (!r->anchor.empty()) CHECK(!keys::RangeLocalSpan("", r->anchor).Contains(bytes));
  } else if (const auto* i = std::get_if<keys::RangeIdLocalKey>(&*key)) {
    auto typed = keys::DecodeRangeIdLocalKey(bytes);
    CHECK(typed.ok() && *typed == *i);
    CHECK(keys::RangeIdLocalSpan(i->range_id).Contains(bytes));
  } else if (const auto* n = std::get_if<keys::NodeLocalKey>(&*key)) {
    auto typed = keys::DecodeNodeLocalKey(bytes);
    CHECK(typed.ok() && *typed == *n);
  }
}

void CheckValues(std::string_view bytes) {
  CheckReencodes(keys::DecodeVersionValue(bytes), keys::EncodeVersionValue, bytes);
  CheckReencodes(keys::DecodeIntentValue(bytes), keys::EncodeIntentValue, bytes);
  CheckReencodes(keys::DecodeTxnRecord(bytes), keys::EncodeTxnRecord, bytes);
  CheckReencodes(keys::DecodeRangeDescriptor(bytes), keys::EncodeRangeDescriptor, bytes);
  CheckReencodes(keys::DecodeAppliedState(bytes), keys::EncodeAppliedState, bytes);
  CheckReencodes(keys::DecodeRaftConfig(bytes), keys::EncodeRaftConfig, bytes);
  CheckReencodes(keys::DecodeFormatVersion(bytes), keys::EncodeFormatVersion, bytes);
}

void CheckOrder(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  const std::string a = in.ConsumeRandomLengthString(16);
  const std::string b = in.ConsumeRandomLengthString(16);
  const Timestamp ta{in.ConsumeIntegral<uint64_t>(), in.ConsumeIntegral<uint32_t>()};
  const Timestamp tb{in.ConsumeIntegral<uint64_t>(), in.ConsumeIntegral<uint32_t>()};
  if (a == b) {
    CHECK(keys::IntentKey(a) < keys::VersionKey(a, ta));
    CHECK((keys::VersionKey(a, ta) < keys::VersionKey(a, tb)) == (ta > tb));
    return;
  }
  const bool less = a < b;
  CHECK((keys::VersionKey(a, ta) < keys::VersionKey(b, tb)) == less);
  CHECK((keys::IntentKey(a) < keys::VersionKey(b, tb)) == less);
  CHECK((keys::VersionKey(a, ta) < keys::IntentKey(b)) == less);
  CHECK((keys::TxnRecordKey(a, {}) < keys::TxnRecordKey(b, {})) == less);
  // The span of the user keys between them holds the smaller key's entries
  // and not the larger's.
  const std::string& lo = less ? a : b;
  const std::string& hi = less ? b : a;
  const Timestamp t = less ? ta : tb;
  const keys::Span span = keys::DataSpan(lo, hi);
  CHECK(span.Contains(keys::IntentKey(lo)) && span.Contains(keys::VersionKey(lo, t)));
  CHECK(!span.Contains(keys::IntentKey(hi)) && !span.Contains(keys::VersionKey(hi, t)));
  const keys::Span local = keys::RangeLocalSpan(lo, hi);
  CHECK(local.Contains(keys::TxnRecordKey(lo, {})) && !local.Contains(keys::TxnRecordKey(hi, {})));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  CheckKey(bytes);
  CheckValues(bytes);
  CheckOrder(data, size);
  return 0;
}
