// Stateless request checks, applied before a request is proposed, so that a
// request that can never succeed costs no consensus round.
#include <algorithm>
#include <set>

#include "mvcc/kv.h"

namespace conclave::mvcc {
namespace {

Status DuplicateKey() {
  return Status::InvalidArgument(std::string(errors::kDuplicateKey));
}

bool InDelete(const std::pair<std::string, std::string>& d, const std::string& key) {
  if (d.second.empty()) return key == d.first;
  if (d.second == std::string(1, '\0')) return key >= d.first;
  return key >= d.first && key < d.second;
}

// Keys put and ranges deleted by a list of ops and its nested txns.
struct Writes {
  std::vector<std::pair<std::string, std::string>> deletes;  // [key, end); end "" = single key
  std::set<std::string> puts;

  bool Deletes(const std::string& key) const {
    for (const auto& d : deletes) {
      if (InDelete(d, key)) return true;
    }
    return false;
  }
};

Status CheckShape(const TxnRequest& r, size_t max_ops);

Status CheckOpShape(const RequestOp& op, size_t max_ops) {
  if (const auto* r = std::get_if<RangeRequest>(&op.op)) return ValidateRange(*r);
  if (const auto* p = std::get_if<PutRequest>(&op.op)) return ValidatePut(*p);
  if (const auto* d = std::get_if<DeleteRangeRequest>(&op.op)) return ValidateDeleteRange(*d);
  const auto& txn = std::get<std::shared_ptr<TxnRequest>>(op.op);
  if (!txn) return Status::InvalidArgument("etcdserver: empty txn in request");
  return CheckShape(*txn, max_ops);
}

// Sizes, keys and flags of every op (etcd's checkTxnRequest). A nested txn
// gets the budget its parent leaves, max_ops minus the parent's longest
// list, which also bounds the nesting depth. Visits each txn once.
Status CheckShape(const TxnRequest& r, size_t max_ops) {
  const size_t ops = std::max({r.compare.size(), r.success.size(), r.failure.size()});
  if (ops > max_ops) return Status::InvalidArgument(std::string(errors::kTooManyOps));
  for (const Compare& c : r.compare) {
    if (c.key.empty()) return Status::InvalidArgument(std::string(errors::kEmptyKey));
  }
  for (const std::vector<RequestOp>* branch : {&r.success, &r.failure}) {
    for (const RequestOp& op : *branch) {
      RETURN_IF_ERROR(CheckOpShape(op, max_ops - ops));
    }
  }
  return Status::Ok();
}

// Collects the writes of one list of ops, failing on a key put twice or put
// inside a deleted range (etcd's checkIntervals, in its order): this list's
// deletes conflict with every put in it, nested ones included; a nested
// txn's writes conflict with this list's puts and with the writes of the
// nested txns before it, but its two branches never both run, so they may
// put the same key, or one delete what the other puts.
Status CollectWrites(const std::vector<RequestOp>& ops, Writes* out) {
  for (const RequestOp& op : ops) {
    if (const auto* d = std::get_if<DeleteRangeRequest>(&op.op)) {
      out->deletes.emplace_back(d->key, d->range_end);
    }
  }
  for (const RequestOp& op : ops) {
    const auto* txn = std::get_if<std::shared_ptr<TxnRequest>>(&op.op);
    if (txn == nullptr || *txn == nullptr) continue;
    Writes success;
    Writes failure;
    RETURN_IF_ERROR(CollectWrites((*txn)->success, &success));
    RETURN_IF_ERROR(CollectWrites((*txn)->failure, &failure));
    for (const std::string& k : success.puts) {
      if (!out->puts.insert(k).second || out->Deletes(k)) return DuplicateKey();
    }
    for (const std::string& k : failure.puts) {
      if (!out->puts.insert(k).second && !success.puts.count(k)) return DuplicateKey();
      if (out->Deletes(k)) return DuplicateKey();
    }
    for (const Writes* branch : {&success, &failure}) {
      out->deletes.insert(out->deletes.end(), branch->deletes.begin(), branch->deletes.end());
    }
  }
  for (const RequestOp& op : ops) {
    const auto* p = std::get_if<PutRequest>(&op.op);
    if (p == nullptr) continue;
    if (!out->puts.insert(p->key).second || out->Deletes(p->key)) return DuplicateKey();
  }
  return Status::Ok();
}

}  // namespace

Status ValidateRange(const RangeRequest& r) {
  // Like etcd, a limit <= 0 means no limit and a revision <= 0 the current
  // one; neither is an error.
  if (r.key.empty()) return Status::InvalidArgument(std::string(errors::kEmptyKey));
  return Status::Ok();
}

Status ValidatePut(const PutRequest& r) {
  if (r.key.empty()) return Status::InvalidArgument(std::string(errors::kEmptyKey));
  if (r.ignore_value && !r.value.empty()) {
    return Status::InvalidArgument(std::string(errors::kValueProvided));
  }
  if (r.ignore_lease && r.lease != 0) {
    return Status::InvalidArgument(std::string(errors::kLeaseProvided));
  }
  return Status::Ok();
}

Status ValidateDeleteRange(const DeleteRangeRequest& r) {
  if (r.key.empty()) return Status::InvalidArgument(std::string(errors::kEmptyKey));
  return Status::Ok();
}

Status ValidateTxn(const TxnRequest& r, size_t max_txn_ops) {
  RETURN_IF_ERROR(CheckShape(r, max_txn_ops));
  // The two branches never both run: each is checked on its own.
  Writes success;
  RETURN_IF_ERROR(CollectWrites(r.success, &success));
  Writes failure;
  return CollectWrites(r.failure, &failure);
}

}  // namespace conclave::mvcc
