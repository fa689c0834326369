#include "api/convert.h"

#include <fmt/format.h>

#include <memory>
#include <utility>

namespace conclave::api {

namespace {

Status BadEnum(std::string_view field, int value) {
  return Status::InvalidArgument(fmt::format("conclave: {} {} is not a known value", field, value));
}

Result<mvcc::RequestOp> OpFromWire(const etcdserverpb::RequestOp& op) {
  switch (op.request_case()) {
    case etcdserverpb::RequestOp::kRequestRange: {
      ASSIGN_OR_RETURN(mvcc::RangeRequest r, FromWire(op.request_range()));
      return mvcc::RequestOp{std::move(r)};
    }
    case etcdserverpb::RequestOp::kRequestPut:
      return mvcc::RequestOp{FromWire(op.request_put())};
    case etcdserverpb::RequestOp::kRequestDeleteRange:
      return mvcc::RequestOp{FromWire(op.request_delete_range())};
    case etcdserverpb::RequestOp::kRequestTxn: {
      ASSIGN_OR_RETURN(mvcc::TxnRequest t, FromWire(op.request_txn()));
      return mvcc::RequestOp{std::make_shared<mvcc::TxnRequest>(std::move(t))};
    }
    case etcdserverpb::RequestOp::REQUEST_NOT_SET:
      break;
  }
  return Status::InvalidArgument("conclave: empty request op in txn");
}

Status OpsFromWire(const google::protobuf::RepeatedPtrField<etcdserverpb::RequestOp>& in,
                   std::vector<mvcc::RequestOp>* out) {
  out->reserve(in.size());
  for (const auto& op : in) {
    ASSIGN_OR_RETURN(mvcc::RequestOp o, OpFromWire(op));
    out->push_back(std::move(o));
  }
  return Status::Ok();
}

}  // namespace

Result<mvcc::RangeRequest> FromWire(const etcdserverpb::RangeRequest& r) {
  mvcc::RangeRequest out;
  out.key = r.key();
  out.range_end = r.range_end();
  out.limit = r.limit();
  out.revision = r.revision();
  const int order = r.sort_order();
  if (order < 0 || order > 2) return BadEnum("sort_order", order);
  out.sort_order = static_cast<mvcc::SortOrder>(order);
  const int target = r.sort_target();
  if (target < 0 || target > 4) return BadEnum("sort_target", target);
  out.sort_target = static_cast<mvcc::SortTarget>(target);
  out.serializable = r.serializable();
  out.keys_only = r.keys_only();
  out.count_only = r.count_only();
  out.min_mod_revision = r.min_mod_revision();
  out.max_mod_revision = r.max_mod_revision();
  out.min_create_revision = r.min_create_revision();
  out.max_create_revision = r.max_create_revision();
  return out;
}

mvcc::PutRequest FromWire(const etcdserverpb::PutRequest& r) {
  mvcc::PutRequest out;
  out.key = r.key();
  out.value = r.value();
  out.lease = r.lease();
  out.prev_kv = r.prev_kv();
  out.ignore_value = r.ignore_value();
  out.ignore_lease = r.ignore_lease();
  return out;
}

mvcc::DeleteRangeRequest FromWire(const etcdserverpb::DeleteRangeRequest& r) {
  mvcc::DeleteRangeRequest out;
  out.key = r.key();
  out.range_end = r.range_end();
  out.prev_kv = r.prev_kv();
  return out;
}

Result<mvcc::Compare> FromWire(const etcdserverpb::Compare& c) {
  mvcc::Compare out;
  const int result = c.result();
  if (result < 0 || result > 3) return BadEnum("compare result", result);
  out.result = static_cast<mvcc::Compare::Result>(result);
  const int target = c.target();
  if (target < 0 || target > 4) return BadEnum("compare target", target);
  out.target = static_cast<mvcc::Compare::Target>(target);
  out.key = c.key();
  out.range_end = c.range_end();
  // The operand matching the target; any other member reads as zero.
  switch (out.target) {
    case mvcc::Compare::Target::kVersion:
      out.version = c.version();
      break;
    case mvcc::Compare::Target::kCreate:
      out.create_revision = c.create_revision();
      break;
    case mvcc::Compare::Target::kMod:
      out.mod_revision = c.mod_revision();
      break;
    case mvcc::Compare::Target::kValue:
      out.value = c.value();
      break;
    case mvcc::Compare::Target::kLease:
      out.lease = c.lease();
      break;
  }
  return out;
}

Result<mvcc::TxnRequest> FromWire(const etcdserverpb::TxnRequest& r) {
  mvcc::TxnRequest out;
  out.compare.reserve(r.compare_size());
  for (const auto& c : r.compare()) {
    ASSIGN_OR_RETURN(mvcc::Compare mc, FromWire(c));
    out.compare.push_back(std::move(mc));
  }
  RETURN_IF_ERROR(OpsFromWire(r.success(), &out.success));
  RETURN_IF_ERROR(OpsFromWire(r.failure(), &out.failure));
  return out;
}

mvcc::CompactionRequest FromWire(const etcdserverpb::CompactionRequest& r) {
  return mvcc::CompactionRequest{r.revision()};
}

Result<mvcc::WatchRequest> FromWire(const etcdserverpb::WatchCreateRequest& r) {
  mvcc::WatchRequest out;
  out.watch_id = r.watch_id();
  out.key = r.key();
  out.range_end = r.range_end();
  out.start_revision = r.start_revision();
  out.prev_kv = r.prev_kv();
  out.progress_notify = r.progress_notify();
  out.fragment = r.fragment();
  for (int f : r.filters()) {
    if (f == etcdserverpb::WatchCreateRequest::NOPUT) {
      out.filter_noput = true;
    } else if (f == etcdserverpb::WatchCreateRequest::NODELETE) {
      out.filter_nodelete = true;
    } else {
      return BadEnum("watch filter", f);
    }
  }
  return out;
}

void ToWire(const mvcc::KeyValue& kv, mvccpb::KeyValue* out) {
  out->set_key(kv.key);
  out->set_create_revision(kv.create_revision);
  out->set_mod_revision(kv.mod_revision);
  out->set_version(kv.version);
  out->set_value(kv.value);
  out->set_lease(kv.lease);
}

void ToWire(const mvcc::Event& e, mvccpb::Event* out) {
  out->set_type(e.type == mvcc::EventType::kPut ? mvccpb::Event::PUT : mvccpb::Event::DELETE);
  ToWire(e.kv, out->mutable_kv());
}

void ToWire(const mvcc::RangeResponse& r, etcdserverpb::RangeResponse* out) {
  out->mutable_kvs()->Reserve(static_cast<int>(r.kvs.size()));
  for (const mvcc::KeyValue& kv : r.kvs)
    ToWire(kv, out->add_kvs());
  out->set_more(r.more);
  out->set_count(r.count);
}

void ToWire(const mvcc::PutResponse& r, etcdserverpb::PutResponse* out) {
  if (r.has_prev_kv) ToWire(r.prev_kv, out->mutable_prev_kv());
}

void ToWire(const mvcc::DeleteRangeResponse& r, etcdserverpb::DeleteRangeResponse* out) {
  out->set_deleted(r.deleted);
  for (const mvcc::KeyValue& kv : r.prev_kvs)
    ToWire(kv, out->add_prev_kvs());
}

namespace {

// Whether the txn (nested ones included) changed the store.
bool Changes(const mvcc::TxnResponse& r) {
  for (const mvcc::ResponseOp& op : r.responses) {
    if (std::holds_alternative<mvcc::PutResponse>(op.op)) return true;
    if (const auto* del = std::get_if<mvcc::DeleteRangeResponse>(&op.op)) {
      if (del->deleted > 0) return true;
    }
    if (const auto* txn = std::get_if<std::shared_ptr<mvcc::TxnResponse>>(&op.op)) {
      if (*txn && Changes(**txn)) return true;
    }
  }
  return false;
}

// The revision each inner response reports, in op order: a read sees the
// revision before the txn, or the txn's own once it has changed anything; a
// put reports the txn's revision; a delete the txn's once anything changed.
// Nested txn responses carry an empty header.
void FillInnerHeaders(const mvcc::TxnResponse& r, int64_t before, bool* changed,
                      etcdserverpb::TxnResponse* out) {
  for (size_t i = 0; i < r.responses.size(); ++i) {
    const mvcc::ResponseOp& op = r.responses[i];
    etcdserverpb::ResponseOp* o = out->mutable_responses(static_cast<int>(i));
    if (std::holds_alternative<mvcc::RangeResponse>(op.op)) {
      o->mutable_response_range()->mutable_header()->set_revision(before + (*changed ? 1 : 0));
    } else if (std::holds_alternative<mvcc::PutResponse>(op.op)) {
      *changed = true;
      o->mutable_response_put()->mutable_header()->set_revision(before + 1);
    } else if (const auto* del = std::get_if<mvcc::DeleteRangeResponse>(&op.op)) {
      if (del->deleted > 0) *changed = true;
      o->mutable_response_delete_range()->mutable_header()->set_revision(before +
                                                                         (*changed ? 1 : 0));
    } else if (const auto* txn = std::get_if<std::shared_ptr<mvcc::TxnResponse>>(&op.op)) {
      o->mutable_response_txn()->mutable_header();
      if (*txn) FillInnerHeaders(**txn, before, changed, o->mutable_response_txn());
    }
  }
}

void ToWireNested(const mvcc::TxnResponse& r, etcdserverpb::TxnResponse* out);

}  // namespace

void ToWire(const mvcc::TxnResponse& r, int64_t revision, etcdserverpb::TxnResponse* out) {
  ToWireNested(r, out);
  const bool changes = Changes(r);
  bool changed = false;
  FillInnerHeaders(r, revision - (changes ? 1 : 0), &changed, out);
}

namespace {

void ToWireNested(const mvcc::TxnResponse& r, etcdserverpb::TxnResponse* out) {
  out->set_succeeded(r.succeeded);
  for (const mvcc::ResponseOp& op : r.responses) {
    etcdserverpb::ResponseOp* o = out->add_responses();
    if (const auto* range = std::get_if<mvcc::RangeResponse>(&op.op)) {
      ToWire(*range, o->mutable_response_range());
    } else if (const auto* put = std::get_if<mvcc::PutResponse>(&op.op)) {
      ToWire(*put, o->mutable_response_put());
    } else if (const auto* del = std::get_if<mvcc::DeleteRangeResponse>(&op.op)) {
      ToWire(*del, o->mutable_response_delete_range());
    } else if (const auto* txn = std::get_if<std::shared_ptr<mvcc::TxnResponse>>(&op.op)) {
      if (*txn) ToWireNested(**txn, o->mutable_response_txn());
    }
  }
}

}  // namespace

void ToWire(const mvcc::WatchResponse& r, etcdserverpb::WatchResponse* out) {
  out->set_watch_id(r.watch_id);
  out->set_created(r.created);
  out->set_canceled(r.canceled);
  out->set_compact_revision(r.compact_revision);
  out->set_cancel_reason(r.cancel_reason);
  out->set_fragment(r.fragment);
  for (const mvcc::WatchEvent& e : r.events) {
    mvccpb::Event* pe = out->add_events();
    ToWire(e.event, pe);
    if (e.prev_kv) ToWire(*e.prev_kv, pe->mutable_prev_kv());
  }
}

}  // namespace conclave::api
