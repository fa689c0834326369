// Conversions between etcd's wire messages (etcdserverpb, mvccpb) and the
// MVCC store's request and response values (mvcc/kv.h).
//
// The gRPC services translate every request into the store's values before
// validating or proposing it, and every result back into the wire form. The
// mapping is field for field; enum values out of range on the wire are
// refused with InvalidArgument (etcd's text where etcd has one) instead of
// being cast blindly.
//
// Thread-safety: pure functions.
#pragma once

#include "base/status.h"
#include "etcd/api/etcdserverpb/rpc.pb.h"
#include "etcd/api/mvccpb/kv.pb.h"
#include "mvcc/mvcc.h"

namespace conclave::api {

// --- wire -> store ---
Result<mvcc::RangeRequest> FromWire(const etcdserverpb::RangeRequest& r);
mvcc::PutRequest FromWire(const etcdserverpb::PutRequest& r);
mvcc::DeleteRangeRequest FromWire(const etcdserverpb::DeleteRangeRequest& r);
// Nested txns (RequestOp.request_txn) become nested mvcc::TxnRequest values.
Result<mvcc::TxnRequest> FromWire(const etcdserverpb::TxnRequest& r);
Result<mvcc::Compare> FromWire(const etcdserverpb::Compare& c);
mvcc::CompactionRequest FromWire(const etcdserverpb::CompactionRequest& r);
// A WatchCreateRequest; its filters list (NOPUT, NODELETE) becomes the two
// booleans. Unknown filter values are InvalidArgument.
Result<mvcc::WatchRequest> FromWire(const etcdserverpb::WatchCreateRequest& r);

// --- store -> wire (responses leave the header to the caller) ---
void ToWire(const mvcc::KeyValue& kv, mvccpb::KeyValue* out);
void ToWire(const mvcc::Event& e, mvccpb::Event* out);
void ToWire(const mvcc::RangeResponse& r, etcdserverpb::RangeResponse* out);
void ToWire(const mvcc::PutResponse& r, etcdserverpb::PutResponse* out);
void ToWire(const mvcc::DeleteRangeResponse& r, etcdserverpb::DeleteRangeResponse* out);
// `revision` is the store's revision after the txn. Each inner response
// gets a header holding only the revision etcd reports for it (the
// revision before the txn for reads ahead of its first change, the txn's
// own after it); nested txn responses get an empty header, as etcd's.
void ToWire(const mvcc::TxnResponse& r, int64_t revision, etcdserverpb::TxnResponse* out);
// A watch response: id, created/canceled, compact_revision, cancel_reason,
// fragment and events with their prev_kv. The header is the caller's.
void ToWire(const mvcc::WatchResponse& r, etcdserverpb::WatchResponse* out);

}  // namespace conclave::api
