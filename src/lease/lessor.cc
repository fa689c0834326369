#include "lease/lessor.h"

#include <algorithm>
#include <utility>

namespace conclave::lease {

Lessor::Lessor(Clock& clock, LessorOptions options) : clock_(clock), options_(options) {
  CHECK_GT(options_.min_ttl_seconds, 0);
  CHECK_LE(options_.min_ttl_seconds, options_.max_ttl_seconds);
  CHECK_GE(options_.promote_extend.count(), 0);
  CHECK_GT(options_.expired_retry.count(), 0);
}

int64_t Lessor::SecondsCeil(Duration d) {
  const int64_t ns_per_s = 1'000'000'000;
  if (d.count() <= 0) return 0;
  return (d.count() + ns_per_s - 1) / ns_per_s;
}

Status Lessor::ValidateGrant(int64_t ttl_seconds) const {
  if (ttl_seconds > options_.max_ttl_seconds) return errors::TTLTooLarge();
  return Status::Ok();
}

Result<GrantResult> Lessor::Grant(LeaseId id, int64_t ttl_seconds) {
  RETURN_IF_ERROR(ValidateGrant(ttl_seconds));
  std::lock_guard<std::mutex> lock(mu_);
  if (id == 0) {
    // Depends only on replicated state, so every member picks the same id.
    id = highest_granted_ + 1;
    while (leases_.contains(id))
      ++id;
  }
  if (leases_.contains(id)) return errors::LeaseExists();
  Lease lease;
  lease.ttl_seconds = std::max(ttl_seconds, options_.min_ttl_seconds);
  if (primary_) lease.deadline = Now() + std::chrono::seconds(lease.ttl_seconds);
  highest_granted_ = std::max(highest_granted_, id);
  const int64_t granted = lease.ttl_seconds;
  leases_.emplace(id, std::move(lease));
  return GrantResult{.id = id, .ttl_seconds = granted};
}

Result<std::vector<std::string>> Lessor::Revoke(LeaseId id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = leases_.find(id);
  if (it == leases_.end()) return errors::LeaseNotFound();
  std::vector<std::string> keys(it->second.keys.begin(), it->second.keys.end());
  for (const std::string& key : keys)
    key_lease_.erase(key);
  leases_.erase(it);
  return keys;
}

void Lessor::ApplyCheckpoint(const Checkpoint& c) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = leases_.find(c.id);
  if (it == leases_.end()) return;
  // The leader's own deadline stays authoritative; the checkpoint matters
  // only to whoever is promoted next.
  it->second.remaining_ttl_seconds = c.remaining_ttl_seconds;
}

Status Lessor::Attach(LeaseId id, const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = leases_.find(id);
  if (it == leases_.end()) return errors::LeaseNotFound();
  auto old = key_lease_.find(key);
  if (old != key_lease_.end() && old->second != id) {
    auto previous = leases_.find(old->second);
    CHECK(previous != leases_.end());
    previous->second.keys.erase(key);
  }
  key_lease_[key] = id;
  it->second.keys.insert(key);
  return Status::Ok();
}

void Lessor::Detach(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto old = key_lease_.find(key);
  if (old == key_lease_.end()) return;
  auto lease = leases_.find(old->second);
  CHECK(lease != leases_.end());
  lease->second.keys.erase(key);
  key_lease_.erase(old);
}

void Lessor::Reset(const std::vector<Restored>& leases) {
  std::lock_guard<std::mutex> lock(mu_);
  leases_.clear();
  key_lease_.clear();
  highest_granted_ = 0;
  for (const Restored& r : leases) {
    Lease lease;
    lease.ttl_seconds = r.ttl_seconds;
    lease.remaining_ttl_seconds = r.remaining_ttl_seconds;
    const int64_t left = r.remaining_ttl_seconds > 0 ? r.remaining_ttl_seconds : r.ttl_seconds;
    if (primary_) lease.deadline = Now() + std::chrono::seconds(left) + options_.promote_extend;
    highest_granted_ = std::max(highest_granted_, r.id);
    leases_.emplace(r.id, std::move(lease));
  }
}

void Lessor::Promote() {
  std::lock_guard<std::mutex> lock(mu_);
  const Duration now = Now();
  for (auto& [id, lease] : leases_) {
    const int64_t left =
        lease.remaining_ttl_seconds > 0 ? lease.remaining_ttl_seconds : lease.ttl_seconds;
    lease.deadline = now + std::chrono::seconds(left) + options_.promote_extend;
    lease.reported_expired_at = Duration(-1);
    lease.renewed_since_checkpoint = false;
  }
  primary_ = true;
}

void Lessor::Demote() {
  std::lock_guard<std::mutex> lock(mu_);
  primary_ = false;
  for (auto& [id, lease] : leases_) {
    lease.deadline = Duration(0);
    lease.reported_expired_at = Duration(-1);
    lease.renewed_since_checkpoint = false;
  }
}

bool Lessor::primary() const {
  std::lock_guard<std::mutex> lock(mu_);
  return primary_;
}

std::vector<LeaseId> Lessor::ExpiredLeases(size_t limit) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!primary_) return {};
  const Duration now = Now();
  std::vector<std::pair<Duration, LeaseId>> due;
  for (const auto& [id, lease] : leases_) {
    if (lease.deadline > now) continue;
    const bool reported = lease.reported_expired_at.count() >= 0;
    if (reported && now - lease.reported_expired_at < options_.expired_retry) continue;
    due.emplace_back(lease.deadline, id);
  }
  std::sort(due.begin(), due.end());
  if (limit > 0 && due.size() > limit) due.resize(limit);
  std::vector<LeaseId> out;
  out.reserve(due.size());
  for (const auto& [deadline, id] : due) {
    leases_[id].reported_expired_at = now;
    out.push_back(id);
  }
  return out;
}

std::vector<Checkpoint> Lessor::Checkpoints(size_t limit, bool all) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!primary_) return {};
  const Duration now = Now();
  std::vector<Checkpoint> out;
  for (auto& [id, lease] : leases_) {
    if (limit > 0 && out.size() >= limit) break;
    if (!all && !lease.renewed_since_checkpoint) continue;
    // At least 1: a checkpoint of 0 would read as "none" and restore the
    // full TTL; an expired lease is the leader's to revoke anyway.
    const int64_t left = std::max<int64_t>(1, SecondsCeil(lease.deadline - now));
    out.push_back(Checkpoint{.id = id, .remaining_ttl_seconds = left});
    lease.renewed_since_checkpoint = false;
  }
  return out;
}

Result<int64_t> Lessor::Renew(LeaseId id) {
  std::lock_guard<std::mutex> lock(mu_);
  // Only the primary renews; asked first, so that a follower that has not
  // applied the lease's grant yet sends the renewal on rather than calling
  // a live lease unknown (its client would end the session).
  if (!primary_) return errors::NotLeader();
  auto it = leases_.find(id);
  if (it == leases_.end()) return errors::LeaseNotFound();
  Lease& lease = it->second;
  const Duration now = Now();
  // etcd refuses to renew a lease whose deadline passed: its revocation is
  // already on the way.
  if (lease.deadline <= now) return errors::LeaseNotFound();
  lease.deadline = now + std::chrono::seconds(lease.ttl_seconds);
  lease.reported_expired_at = Duration(-1);
  // The replicated remaining TTL is now stale (too short); the next
  // Checkpoints call carries the fresh one to the followers.
  lease.renewed_since_checkpoint = true;
  return lease.ttl_seconds;
}

Result<TimeToLiveResult> Lessor::TimeToLive(LeaseId id, bool with_keys) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = leases_.find(id);
  // A follower may not have applied the grant yet: the primary knows.
  if (it == leases_.end()) return primary_ ? errors::LeaseNotFound() : errors::NotLeader();
  const Lease& lease = it->second;
  TimeToLiveResult out{.id = id, .granted_ttl_seconds = lease.ttl_seconds};
  if (primary_) {
    const Duration left = lease.deadline - Now();
    out.ttl_seconds = left.count() <= 0 ? 0 : SecondsCeil(left);
  } else {
    out.ttl_seconds =
        lease.remaining_ttl_seconds > 0 ? lease.remaining_ttl_seconds : lease.ttl_seconds;
  }
  if (with_keys) out.keys.assign(lease.keys.begin(), lease.keys.end());
  return out;
}

std::vector<LeaseId> Lessor::Leases() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<LeaseId> out;
  out.reserve(leases_.size());
  for (const auto& [id, lease] : leases_)
    out.push_back(id);
  return out;
}

LeaseId Lessor::LeaseOf(const std::string& key) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = key_lease_.find(key);
  return it == key_lease_.end() ? 0 : it->second;
}

}  // namespace conclave::lease
