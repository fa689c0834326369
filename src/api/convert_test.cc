#include "api/convert.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace conclave::api {
namespace {

// Bytes of one varint field as a client would put it on the wire: the way to
// send enum values that the generated setters' types do not name.
std::string VarintField(int field, int64_t value) {
  std::string out;
  auto put = [&out](uint64_t v) {
    while (v >= 0x80) {
      out.push_back(static_cast<char>((v & 0x7f) | 0x80));
      v >>= 7;
    }
    out.push_back(static_cast<char>(v));
  };
  put(static_cast<uint64_t>(field) << 3);  // wire type 0: varint
  put(static_cast<uint64_t>(value));
  return out;
}

template <typename Message>
Message Parse(const std::string& bytes) {
  Message m;
  EXPECT_TRUE(m.ParseFromString(bytes));
  return m;
}

void ExpectInvalid(const Status& s, const std::string& field, const std::string& value) {
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  EXPECT_NE(s.message().find(field), std::string::npos) << s.message();
  EXPECT_NE(s.message().find(value), std::string::npos) << s.message();
}

mvcc::KeyValue Kv(std::string key, int64_t rev, std::string value = "v", int64_t lease = 0) {
  return mvcc::KeyValue{.key = std::move(key),
                        .create_revision = rev - 1,
                        .mod_revision = rev,
                        .version = 2,
                        .value = std::move(value),
                        .lease = lease};
}

void ExpectKv(const mvccpb::KeyValue& wire, const mvcc::KeyValue& kv) {
  EXPECT_EQ(wire.key(), kv.key);
  EXPECT_EQ(wire.create_revision(), kv.create_revision);
  EXPECT_EQ(wire.mod_revision(), kv.mod_revision);
  EXPECT_EQ(wire.version(), kv.version);
  EXPECT_EQ(wire.value(), kv.value);
  EXPECT_EQ(wire.lease(), kv.lease);
}

// --- wire -> store: requests ---

TEST(RangeRequestFromWireTest, MapsEveryField) {
  etcdserverpb::RangeRequest w;
  w.set_key(std::string("a\0b", 3));
  w.set_range_end("z");
  w.set_limit(10);
  w.set_revision(42);
  w.set_sort_order(etcdserverpb::RangeRequest::DESCEND);
  w.set_sort_target(etcdserverpb::RangeRequest::MOD);
  w.set_serializable(true);
  w.set_keys_only(true);
  w.set_count_only(true);
  w.set_min_mod_revision(1);
  w.set_max_mod_revision(2);
  w.set_min_create_revision(3);
  w.set_max_create_revision(4);

  Result<mvcc::RangeRequest> r = FromWire(w);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->key, std::string("a\0b", 3));
  EXPECT_EQ(r->range_end, "z");
  EXPECT_EQ(r->limit, 10);
  EXPECT_EQ(r->revision, 42);
  EXPECT_EQ(r->sort_order, mvcc::SortOrder::kDescend);
  EXPECT_EQ(r->sort_target, mvcc::SortTarget::kMod);
  EXPECT_TRUE(r->serializable);
  EXPECT_TRUE(r->keys_only);
  EXPECT_TRUE(r->count_only);
  EXPECT_EQ(r->min_mod_revision, 1);
  EXPECT_EQ(r->max_mod_revision, 2);
  EXPECT_EQ(r->min_create_revision, 3);
  EXPECT_EQ(r->max_create_revision, 4);
}

TEST(RangeRequestFromWireTest, EmptyMessageGivesDefaults) {
  Result<mvcc::RangeRequest> r = FromWire(etcdserverpb::RangeRequest());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->key, "");
  EXPECT_EQ(r->limit, 0);
  EXPECT_EQ(r->sort_order, mvcc::SortOrder::kNone);
  EXPECT_EQ(r->sort_target, mvcc::SortTarget::kKey);
  EXPECT_FALSE(r->serializable);
}

TEST(RangeRequestFromWireTest, EveryKnownSortValueMaps) {
  const mvcc::SortOrder orders[] = {mvcc::SortOrder::kNone, mvcc::SortOrder::kAscend,
                                    mvcc::SortOrder::kDescend};
  for (int i = 0; i < 3; ++i) {
    Result<mvcc::RangeRequest> r = FromWire(Parse<etcdserverpb::RangeRequest>(VarintField(5, i)));
    ASSERT_TRUE(r.ok()) << i;
    EXPECT_EQ(r->sort_order, orders[i]);
  }
  const mvcc::SortTarget targets[] = {mvcc::SortTarget::kKey, mvcc::SortTarget::kVersion,
                                      mvcc::SortTarget::kCreate, mvcc::SortTarget::kMod,
                                      mvcc::SortTarget::kValue};
  for (int i = 0; i < 5; ++i) {
    Result<mvcc::RangeRequest> r = FromWire(Parse<etcdserverpb::RangeRequest>(VarintField(6, i)));
    ASSERT_TRUE(r.ok()) << i;
    EXPECT_EQ(r->sort_target, targets[i]);
  }
}

TEST(RangeRequestFromWireTest, RefusesUnknownSortOrder) {
  ExpectInvalid(FromWire(Parse<etcdserverpb::RangeRequest>(VarintField(5, 3))).status(),
                "sort_order", "3");
  ExpectInvalid(FromWire(Parse<etcdserverpb::RangeRequest>(VarintField(5, -1))).status(),
                "sort_order", "-1");
}

TEST(RangeRequestFromWireTest, RefusesUnknownSortTarget) {
  ExpectInvalid(FromWire(Parse<etcdserverpb::RangeRequest>(VarintField(6, 5))).status(),
                "sort_target", "5");
  ExpectInvalid(FromWire(Parse<etcdserverpb::RangeRequest>(VarintField(6, -7))).status(),
                "sort_target", "-7");
}

TEST(PutRequestFromWireTest, MapsEveryField) {
  etcdserverpb::PutRequest w;
  w.set_key("k");
  w.set_value(std::string("v\0v", 3));
  w.set_lease(7);
  w.set_prev_kv(true);
  w.set_ignore_value(true);
  w.set_ignore_lease(true);
  mvcc::PutRequest r = FromWire(w);
  EXPECT_EQ(r.key, "k");
  EXPECT_EQ(r.value, std::string("v\0v", 3));
  EXPECT_EQ(r.lease, 7);
  EXPECT_TRUE(r.prev_kv);
  EXPECT_TRUE(r.ignore_value);
  EXPECT_TRUE(r.ignore_lease);

  mvcc::PutRequest empty = FromWire(etcdserverpb::PutRequest());
  EXPECT_FALSE(empty.prev_kv);
  EXPECT_FALSE(empty.ignore_value);
  EXPECT_FALSE(empty.ignore_lease);
}

TEST(DeleteRangeRequestFromWireTest, MapsEveryField) {
  etcdserverpb::DeleteRangeRequest w;
  w.set_key("a");
  w.set_range_end(std::string("\0", 1));
  w.set_prev_kv(true);
  mvcc::DeleteRangeRequest r = FromWire(w);
  EXPECT_EQ(r.key, "a");
  EXPECT_EQ(r.range_end, std::string("\0", 1));
  EXPECT_TRUE(r.prev_kv);
}

TEST(CompactionRequestFromWireTest, MapsRevision) {
  etcdserverpb::CompactionRequest w;
  w.set_revision(99);
  EXPECT_EQ(FromWire(w).revision, 99);
}

// --- Compare ---

TEST(CompareFromWireTest, TakesTheOperandOfItsTarget) {
  etcdserverpb::Compare w;
  w.set_result(etcdserverpb::Compare::NOT_EQUAL);
  w.set_key("k");
  w.set_range_end("l");

  w.set_target(etcdserverpb::Compare::VERSION);
  w.set_version(3);
  Result<mvcc::Compare> c = FromWire(w);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->result, mvcc::Compare::Result::kNotEqual);
  EXPECT_EQ(c->target, mvcc::Compare::Target::kVersion);
  EXPECT_EQ(c->key, "k");
  EXPECT_EQ(c->range_end, "l");
  EXPECT_EQ(c->version, 3);

  w.set_target(etcdserverpb::Compare::CREATE);
  w.set_create_revision(4);
  c = FromWire(w);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->target, mvcc::Compare::Target::kCreate);
  EXPECT_EQ(c->create_revision, 4);

  w.set_target(etcdserverpb::Compare::MOD);
  w.set_mod_revision(5);
  c = FromWire(w);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->target, mvcc::Compare::Target::kMod);
  EXPECT_EQ(c->mod_revision, 5);

  w.set_target(etcdserverpb::Compare::VALUE);
  w.set_value("x");
  c = FromWire(w);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->target, mvcc::Compare::Target::kValue);
  EXPECT_EQ(c->value, "x");

  w.set_target(etcdserverpb::Compare::LEASE);
  w.set_lease(6);
  c = FromWire(w);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->target, mvcc::Compare::Target::kLease);
  EXPECT_EQ(c->lease, 6);
}

TEST(CompareFromWireTest, EveryKnownResultMaps) {
  const mvcc::Compare::Result results[] = {
      mvcc::Compare::Result::kEqual, mvcc::Compare::Result::kGreater, mvcc::Compare::Result::kLess,
      mvcc::Compare::Result::kNotEqual};
  for (int i = 0; i < 4; ++i) {
    Result<mvcc::Compare> c = FromWire(Parse<etcdserverpb::Compare>(VarintField(1, i)));
    ASSERT_TRUE(c.ok()) << i;
    EXPECT_EQ(c->result, results[i]);
  }
}

// As in etcd: the member that does not match the target is not consulted,
// so the compare sees the target's zero value.
TEST(CompareFromWireTest, MismatchedOperandReadsAsZero) {
  etcdserverpb::Compare w;
  w.set_target(etcdserverpb::Compare::VALUE);
  w.set_version(3);
  Result<mvcc::Compare> c = FromWire(w);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->value, "");
  EXPECT_EQ(c->version, 0);

  w.set_target(etcdserverpb::Compare::MOD);
  w.set_value("x");
  c = FromWire(w);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->mod_revision, 0);
  EXPECT_EQ(c->value, "");
}

TEST(CompareFromWireTest, RefusesUnknownResultAndTarget) {
  ExpectInvalid(FromWire(Parse<etcdserverpb::Compare>(VarintField(1, 4))).status(), "result", "4");
  ExpectInvalid(FromWire(Parse<etcdserverpb::Compare>(VarintField(1, -1))).status(), "result",
                "-1");
  ExpectInvalid(FromWire(Parse<etcdserverpb::Compare>(VarintField(2, 5))).status(), "target", "5");
  ExpectInvalid(FromWire(Parse<etcdserverpb::Compare>(VarintField(2, -2))).status(), "target",
                "-2");
}

// --- Txn ---

TEST(TxnRequestFromWireTest, MapsComparesAndEveryOpKind) {
  etcdserverpb::TxnRequest w;
  etcdserverpb::Compare* cmp = w.add_compare();
  cmp->set_key("c");
  cmp->set_target(etcdserverpb::Compare::MOD);
  cmp->set_result(etcdserverpb::Compare::LESS);
  cmp->set_mod_revision(8);
  w.add_compare()->set_key("d");
  w.add_success()->mutable_request_range()->set_key("r");
  w.add_success()->mutable_request_put()->set_key("p");
  w.add_success()->mutable_request_delete_range()->set_key("d");
  w.add_failure()->mutable_request_put()->set_value("f");

  Result<mvcc::TxnRequest> t = FromWire(w);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  ASSERT_EQ(t->compare.size(), 2u);
  EXPECT_EQ(t->compare[0].key, "c");
  EXPECT_EQ(t->compare[0].target, mvcc::Compare::Target::kMod);
  EXPECT_EQ(t->compare[0].result, mvcc::Compare::Result::kLess);
  EXPECT_EQ(t->compare[0].mod_revision, 8);
  EXPECT_EQ(t->compare[1].key, "d");

  ASSERT_EQ(t->success.size(), 3u);
  const auto* range = std::get_if<mvcc::RangeRequest>(&t->success[0].op);
  ASSERT_NE(range, nullptr);
  EXPECT_EQ(range->key, "r");
  const auto* put = std::get_if<mvcc::PutRequest>(&t->success[1].op);
  ASSERT_NE(put, nullptr);
  EXPECT_EQ(put->key, "p");
  const auto* del = std::get_if<mvcc::DeleteRangeRequest>(&t->success[2].op);
  ASSERT_NE(del, nullptr);
  EXPECT_EQ(del->key, "d");

  ASSERT_EQ(t->failure.size(), 1u);
  const auto* fput = std::get_if<mvcc::PutRequest>(&t->failure[0].op);
  ASSERT_NE(fput, nullptr);
  EXPECT_EQ(fput->value, "f");
}

TEST(TxnRequestFromWireTest, NestedTwoDeep) {
  etcdserverpb::TxnRequest w;
  etcdserverpb::TxnRequest* inner = w.add_success()->mutable_request_txn();
  inner->add_compare()->set_key("ic");
  etcdserverpb::TxnRequest* innermost = inner->add_failure()->mutable_request_txn();
  innermost->add_success()->mutable_request_put()->set_key("deep");
  innermost->add_failure()->mutable_request_range()->set_key("deep-range");

  Result<mvcc::TxnRequest> t = FromWire(w);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  ASSERT_EQ(t->success.size(), 1u);
  const auto* in = std::get_if<std::shared_ptr<mvcc::TxnRequest>>(&t->success[0].op);
  ASSERT_NE(in, nullptr);
  ASSERT_NE(*in, nullptr);
  ASSERT_EQ((*in)->compare.size(), 1u);
  EXPECT_EQ((*in)->compare[0].key, "ic");
  EXPECT_TRUE((*in)->success.empty());
  ASSERT_EQ((*in)->failure.size(), 1u);
  const auto* most = std::get_if<std::shared_ptr<mvcc::TxnRequest>>(&(*in)->failure[0].op);
  ASSERT_NE(most, nullptr);
  ASSERT_NE(*most, nullptr);
  ASSERT_EQ((*most)->success.size(), 1u);
  EXPECT_EQ(std::get<mvcc::PutRequest>((*most)->success[0].op).key, "deep");
  ASSERT_EQ((*most)->failure.size(), 1u);
  EXPECT_EQ(std::get<mvcc::RangeRequest>((*most)->failure[0].op).key, "deep-range");
}

TEST(TxnRequestFromWireTest, RefusesEmptyOp) {
  etcdserverpb::TxnRequest w;
  w.add_success()->mutable_request_put()->set_key("p");
  w.add_success();  // no member of the oneof set
  Result<mvcc::TxnRequest> t = FromWire(w);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(t.status().message(), "conclave: empty request op in txn");

  // Also two levels down, in a failure branch.
  etcdserverpb::TxnRequest nested;
  nested.add_failure()->mutable_request_txn()->add_success()->mutable_request_txn()->add_failure();
  t = FromWire(nested);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().message(), "conclave: empty request op in txn");
}

TEST(TxnRequestFromWireTest, RefusesBadEnumsAnywhereInside) {
  etcdserverpb::TxnRequest bad_compare;
  *bad_compare.add_compare() = Parse<etcdserverpb::Compare>(VarintField(2, 9));
  ExpectInvalid(FromWire(bad_compare).status(), "target", "9");

  etcdserverpb::TxnRequest bad_range;
  *bad_range.add_failure()->mutable_request_range() =
      Parse<etcdserverpb::RangeRequest>(VarintField(5, 8));
  ExpectInvalid(FromWire(bad_range).status(), "sort_order", "8");

  etcdserverpb::TxnRequest bad_nested;
  etcdserverpb::TxnRequest* inner = bad_nested.add_success()->mutable_request_txn();
  *inner->add_success()->mutable_request_txn()->add_compare() =
      Parse<etcdserverpb::Compare>(VarintField(1, 6));
  ExpectInvalid(FromWire(bad_nested).status(), "result", "6");
}

// --- Watch create ---

TEST(WatchCreateFromWireTest, MapsEveryField) {
  etcdserverpb::WatchCreateRequest w;
  w.set_key("k");
  w.set_range_end("l");
  w.set_start_revision(12);
  w.set_progress_notify(true);
  w.set_prev_kv(true);
  w.set_watch_id(5);
  w.set_fragment(true);
  Result<mvcc::WatchRequest> r = FromWire(w);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->key, "k");
  EXPECT_EQ(r->range_end, "l");
  EXPECT_EQ(r->start_revision, 12);
  EXPECT_TRUE(r->progress_notify);
  EXPECT_TRUE(r->prev_kv);
  EXPECT_EQ(r->watch_id, 5);
  EXPECT_TRUE(r->fragment);
  EXPECT_FALSE(r->filter_noput);
  EXPECT_FALSE(r->filter_nodelete);

  Result<mvcc::WatchRequest> empty = FromWire(etcdserverpb::WatchCreateRequest());
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty->watch_id, 0);
  EXPECT_FALSE(empty->prev_kv);
  EXPECT_FALSE(empty->progress_notify);
  EXPECT_FALSE(empty->fragment);
}

TEST(WatchCreateFromWireTest, FiltersBecomeFlags) {
  struct Case {
    std::vector<etcdserverpb::WatchCreateRequest::FilterType> filters;
    bool noput;
    bool nodelete;
  };
  const Case cases[] = {
      {{}, false, false},
      {{etcdserverpb::WatchCreateRequest::NOPUT}, true, false},
      {{etcdserverpb::WatchCreateRequest::NODELETE}, false, true},
      {{etcdserverpb::WatchCreateRequest::NODELETE, etcdserverpb::WatchCreateRequest::NOPUT},
       true,
       true},
      {{etcdserverpb::WatchCreateRequest::NOPUT, etcdserverpb::WatchCreateRequest::NOPUT},
       true,
       false},
  };
  for (const Case& c : cases) {
    etcdserverpb::WatchCreateRequest w;
    for (auto f : c.filters)
      w.add_filters(f);
    Result<mvcc::WatchRequest> r = FromWire(w);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->filter_noput, c.noput) << w.ShortDebugString();
    EXPECT_EQ(r->filter_nodelete, c.nodelete) << w.ShortDebugString();
  }
}

TEST(WatchCreateFromWireTest, RefusesUnknownFilter) {
  // One known filter, then an unknown one (unpacked encoding of field 5).
  const std::string bytes = VarintField(5, 1) + VarintField(5, 2);
  etcdserverpb::WatchCreateRequest w = Parse<etcdserverpb::WatchCreateRequest>(bytes);
  ASSERT_EQ(w.filters_size(), 2);
  ExpectInvalid(FromWire(w).status(), "filter", "2");
  ExpectInvalid(FromWire(Parse<etcdserverpb::WatchCreateRequest>(VarintField(5, -1))).status(),
                "filter", "-1");
}

// --- store -> wire: responses ---

TEST(KeyValueToWireTest, MapsEveryField) {
  const mvcc::KeyValue kv = Kv(std::string("k\0", 2), 9, std::string("\xff\0", 2), 77);
  mvccpb::KeyValue w;
  ToWire(kv, &w);
  ExpectKv(w, kv);
}

TEST(EventToWireTest, MapsTypeAndKv) {
  mvccpb::Event w;
  ToWire(mvcc::Event{.type = mvcc::EventType::kPut, .kv = Kv("a", 3)}, &w);
  EXPECT_EQ(w.type(), mvccpb::Event::PUT);
  ExpectKv(w.kv(), Kv("a", 3));
  EXPECT_FALSE(w.has_prev_kv());

  mvccpb::Event d;
  const mvcc::KeyValue deleted{.key = "a", .mod_revision = 4};
  ToWire(mvcc::Event{.type = mvcc::EventType::kDelete, .kv = deleted}, &d);
  EXPECT_EQ(d.type(), mvccpb::Event::DELETE);
  ExpectKv(d.kv(), deleted);
}

TEST(RangeResponseToWireTest, MapsKvsMoreAndCountWithoutHeader) {
  mvcc::RangeResponse r{.revision = 10, .kvs = {Kv("a", 2), Kv("b", 5)}, .more = true, .count = 7};
  etcdserverpb::RangeResponse w;
  ToWire(r, &w);
  EXPECT_FALSE(w.has_header());
  ASSERT_EQ(w.kvs_size(), 2);
  ExpectKv(w.kvs(0), r.kvs[0]);
  ExpectKv(w.kvs(1), r.kvs[1]);
  EXPECT_TRUE(w.more());
  EXPECT_EQ(w.count(), 7);
}

TEST(PutResponseToWireTest, PrevKvOnlyWhenPresent) {
  etcdserverpb::PutResponse without;
  // prev_kv holds data but has_prev_kv says it is absent: nothing goes out.
  ToWire(mvcc::PutResponse{.revision = 3, .has_prev_kv = false, .prev_kv = Kv("x", 2)}, &without);
  EXPECT_FALSE(without.has_prev_kv());
  EXPECT_FALSE(without.has_header());

  etcdserverpb::PutResponse with;
  ToWire(mvcc::PutResponse{.revision = 3, .has_prev_kv = true, .prev_kv = Kv("x", 2)}, &with);
  ASSERT_TRUE(with.has_prev_kv());
  ExpectKv(with.prev_kv(), Kv("x", 2));

  // A present but all-zero prev_kv is still present on the wire.
  etcdserverpb::PutResponse zero;
  ToWire(mvcc::PutResponse{.revision = 3, .has_prev_kv = true}, &zero);
  EXPECT_TRUE(zero.has_prev_kv());
}

TEST(DeleteRangeResponseToWireTest, MapsDeletedAndPrevKvs) {
  mvcc::DeleteRangeResponse r{.revision = 6, .deleted = 2, .prev_kvs = {Kv("a", 4), Kv("b", 5)}};
  etcdserverpb::DeleteRangeResponse w;
  ToWire(r, &w);
  EXPECT_FALSE(w.has_header());
  EXPECT_EQ(w.deleted(), 2);
  ASSERT_EQ(w.prev_kvs_size(), 2);
  ExpectKv(w.prev_kvs(0), r.prev_kvs[0]);
  ExpectKv(w.prev_kvs(1), r.prev_kvs[1]);

  etcdserverpb::DeleteRangeResponse none;
  ToWire(mvcc::DeleteRangeResponse{.revision = 6, .deleted = 3}, &none);
  EXPECT_EQ(none.deleted(), 3);
  EXPECT_EQ(none.prev_kvs_size(), 0);
}

TEST(TxnResponseToWireTest, MapsEveryKindInOrderNestedTwoDeepWithRevisionHeaders) {
  auto innermost = std::make_shared<mvcc::TxnResponse>();
  innermost->succeeded = true;
  innermost->responses.push_back(
      {mvcc::PutResponse{.revision = 9, .has_prev_kv = true, .prev_kv = Kv("deep", 8)}});
  auto inner = std::make_shared<mvcc::TxnResponse>();
  inner->succeeded = false;
  inner->responses.push_back({mvcc::DeleteRangeResponse{.revision = 9, .deleted = 1}});
  inner->responses.push_back({innermost});

  mvcc::TxnResponse r{.revision = 9, .succeeded = true};
  r.responses.push_back({mvcc::RangeResponse{.revision = 9, .kvs = {Kv("a", 2)}, .count = 1}});
  r.responses.push_back({mvcc::PutResponse{.revision = 9}});
  r.responses.push_back({mvcc::DeleteRangeResponse{.revision = 9, .deleted = 4}});
  r.responses.push_back({inner});

  // The txn took the store from revision 8 to 9.
  etcdserverpb::TxnResponse w;
  ToWire(r, 9, &w);
  EXPECT_FALSE(w.has_header());
  EXPECT_TRUE(w.succeeded());
  ASSERT_EQ(w.responses_size(), 4);

  ASSERT_TRUE(w.responses(0).has_response_range());
  const etcdserverpb::RangeResponse& range = w.responses(0).response_range();
  EXPECT_EQ(range.header().revision(), 8);  // read before the txn changed anything
  EXPECT_EQ(range.header().cluster_id(), 0u);
  ASSERT_EQ(range.kvs_size(), 1);
  ExpectKv(range.kvs(0), Kv("a", 2));
  EXPECT_EQ(range.count(), 1);

  ASSERT_TRUE(w.responses(1).has_response_put());
  EXPECT_EQ(w.responses(1).response_put().header().revision(), 9);
  EXPECT_FALSE(w.responses(1).response_put().has_prev_kv());

  ASSERT_TRUE(w.responses(2).has_response_delete_range());
  EXPECT_EQ(w.responses(2).response_delete_range().header().revision(), 9);
  EXPECT_EQ(w.responses(2).response_delete_range().deleted(), 4);

  ASSERT_TRUE(w.responses(3).has_response_txn());
  const etcdserverpb::TxnResponse& in = w.responses(3).response_txn();
  EXPECT_TRUE(in.has_header());
  EXPECT_EQ(in.header().revision(), 0);
  EXPECT_FALSE(in.succeeded());
  ASSERT_EQ(in.responses_size(), 2);
  ASSERT_TRUE(in.responses(0).has_response_delete_range());
  EXPECT_EQ(in.responses(0).response_delete_range().deleted(), 1);
  ASSERT_TRUE(in.responses(1).has_response_txn());

  const etcdserverpb::TxnResponse& most = in.responses(1).response_txn();
  EXPECT_TRUE(most.has_header());
  EXPECT_TRUE(most.succeeded());
  ASSERT_EQ(most.responses_size(), 1);
  ASSERT_TRUE(most.responses(0).has_response_put());
  EXPECT_EQ(most.responses(0).response_put().header().revision(), 9);
  ASSERT_TRUE(most.responses(0).response_put().has_prev_kv());
  ExpectKv(most.responses(0).response_put().prev_kv(), Kv("deep", 8));
}

TEST(TxnResponseToWireTest, ReadOnlyAndNoOpDeleteReportTheRevisionBefore) {
  mvcc::TxnResponse r{.revision = 5, .succeeded = true};
  r.responses.push_back({mvcc::RangeResponse{.revision = 5}});
  r.responses.push_back({mvcc::DeleteRangeResponse{.revision = 5, .deleted = 0}});
  etcdserverpb::TxnResponse w;
  ToWire(r, 5, &w);
  EXPECT_EQ(w.responses(0).response_range().header().revision(), 5);
  EXPECT_EQ(w.responses(1).response_delete_range().header().revision(), 5);
}

TEST(TxnResponseToWireTest, ReadAfterAWriteSeesTheTxnRevision) {
  mvcc::TxnResponse r{.revision = 7, .succeeded = true};
  r.responses.push_back({mvcc::DeleteRangeResponse{.revision = 7, .deleted = 0}});
  r.responses.push_back({mvcc::PutResponse{.revision = 7}});
  r.responses.push_back({mvcc::RangeResponse{.revision = 7}});
  etcdserverpb::TxnResponse w;
  ToWire(r, 7, &w);
  EXPECT_EQ(w.responses(0).response_delete_range().header().revision(), 6);
  EXPECT_EQ(w.responses(1).response_put().header().revision(), 7);
  EXPECT_EQ(w.responses(2).response_range().header().revision(), 7);
}

TEST(TxnResponseToWireTest, EmptyTxnHasNoResponses) {
  etcdserverpb::TxnResponse w;
  ToWire(mvcc::TxnResponse{.revision = 1, .succeeded = false}, 1, &w);
  EXPECT_FALSE(w.succeeded());
  EXPECT_EQ(w.responses_size(), 0);
  EXPECT_FALSE(w.has_header());
}

TEST(WatchResponseToWireTest, MapsEveryFieldAndEventsWithPrevKv) {
  mvcc::WatchResponse r;
  r.watch_id = 3;
  r.header_revision = 20;
  r.created = true;
  r.canceled = true;
  r.compact_revision = 15;
  r.cancel_reason = "mvcc: required revision has been compacted";
  r.fragment = true;
  r.events.push_back(
      {.event = {.type = mvcc::EventType::kPut, .kv = Kv("a", 18)}, .prev_kv = Kv("a", 17, "old")});
  r.events.push_back({.event = {.type = mvcc::EventType::kDelete,
                                .kv = mvcc::KeyValue{.key = "b", .mod_revision = 19}}});

  etcdserverpb::WatchResponse w;
  ToWire(r, &w);
  EXPECT_FALSE(w.has_header());  // header_revision is the caller's to write
  EXPECT_EQ(w.watch_id(), 3);
  EXPECT_TRUE(w.created());
  EXPECT_TRUE(w.canceled());
  EXPECT_EQ(w.compact_revision(), 15);
  EXPECT_EQ(w.cancel_reason(), "mvcc: required revision has been compacted");
  EXPECT_TRUE(w.fragment());
  ASSERT_EQ(w.events_size(), 2);

  EXPECT_EQ(w.events(0).type(), mvccpb::Event::PUT);
  ExpectKv(w.events(0).kv(), Kv("a", 18));
  ASSERT_TRUE(w.events(0).has_prev_kv());
  ExpectKv(w.events(0).prev_kv(), Kv("a", 17, "old"));

  EXPECT_EQ(w.events(1).type(), mvccpb::Event::DELETE);
  EXPECT_EQ(w.events(1).kv().key(), "b");
  EXPECT_EQ(w.events(1).kv().mod_revision(), 19);
  EXPECT_FALSE(w.events(1).has_prev_kv());
}

TEST(WatchResponseToWireTest, ProgressResponseKeepsNegativeIdAndNoEvents) {
  mvcc::WatchResponse r;
  r.watch_id = mvcc::kProgressWatchId;
  r.header_revision = 30;
  etcdserverpb::WatchResponse w;
  ToWire(r, &w);
  EXPECT_EQ(w.watch_id(), -1);
  EXPECT_FALSE(w.created());
  EXPECT_FALSE(w.canceled());
  EXPECT_FALSE(w.fragment());
  EXPECT_EQ(w.compact_revision(), 0);
  EXPECT_EQ(w.cancel_reason(), "");
  EXPECT_EQ(w.events_size(), 0);
}

}  // namespace
}  // namespace conclave::api
