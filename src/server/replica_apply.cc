// Replica: the apply thread's side. Committed entries go to the state
// machine in order, a batch at a time; the requests waiting for them and the
// reads waiting for their index are completed.
#include <fmt/format.h>

#include <algorithm>
#include <utility>

#include "base/assert.h"
#include "base/logging.h"
#include "server/host.h"
#include "server/replica.h"

namespace conclave::server {

void Replica::Apply(ApplyItem& item) {
  if (item.snapshot) InstallSnapshotImage(*item.snapshot);
  ApplyEntries(item);
}

void Replica::InstallSnapshotImage(const raft::Snapshot& snap) {
  if (snap.metadata.index <= sm_->AppliedIndex()) return;
  Status s = sm_->InstallSnapshot(snap.data);
  CHECK_MSG(s.ok(), "group {}: installing snapshot {} failed: {}", options_.group, snap.data,
            s.ToString());
  snapshots_installed_.fetch_add(1);
  applied_index_.store(sm_->AppliedIndex(), std::memory_order_seq_cst);
  {
    std::lock_guard<std::mutex> lock(progress_mu_);
    applied_conf_state_ = snap.metadata.conf_state;
  }
  NotifyStateChange();
  LOG_INFO("group {}: installed snapshot at index {}", options_.group, sm_->AppliedIndex());
  ReleaseReads(sm_->AppliedIndex());
}

void Replica::ApplyEntries(ApplyItem& item) {
  size_t i = 0;
  while (i < item.entries.size()) {
    const size_t end = std::min(item.entries.size(), i + options_.apply_batch_entries_max);
    std::vector<CommittedEntry> batch;
    std::vector<ProposalId> ids;
    std::vector<raft::ConfChange> changes;  // what conf-change entries point into
    batch.reserve(end - i);
    ids.reserve(end - i);
    changes.reserve(end - i);
    bool conf_changed = false;
    for (; i < end; ++i) {
      const raft::Entry& e = item.entries[i];
      if (e.index <= sm_->AppliedIndex()) continue;
      CommittedEntry ce{.index = e.index, .term = e.term, .type = e.type};
      std::string_view envelope = e.data;
      if (e.type == raft::EntryType::kConfChange) {
        auto cc = raft::ConfChange::Decode(e.data);
        CHECK_MSG(cc.ok(), "group {}: committed conf change {} does not decode", options_.group,
                  e.index);
        changes.push_back(std::move(*cc));
        ce.conf_change = &changes.back();
        ce.conf_state = &item.conf_states[e.index];
        ce.refused = item.refused_conf_changes.contains(e.index);
        envelope = changes.back().context;
        conf_changed = true;
      }
      std::optional<DecodedProposal> p = DecodeProposal(envelope);
      if (!p) {
        // Every replica skips it alike; nothing proposes such an entry.
        LOG_ERROR("group {}: entry {} has a malformed envelope; applied as empty", options_.group,
                  e.index);
        p = DecodedProposal{};
      }
      ce.command = p->command;
      ids.push_back(p->id);
      batch.push_back(ce);
    }
    if (batch.empty()) continue;
    std::vector<std::any> results(batch.size());
    Status s = sm_->Apply(batch, &results);
    CHECK_MSG(s.ok(), "group {}: applying entries {}..{} failed: {}", options_.group,
              batch.front().index, batch.back().index, s.ToString());
    const uint64_t last = batch.back().index;
    // Sequentially consistent with AwaitApplied's count of waiters: either
    // the waiter sees this index or this thread sees the waiter.
    applied_index_.store(last, std::memory_order_seq_cst);
    if (apply_waiters_.load(std::memory_order_seq_cst) > 0) NotifyStateChange();
    if (const auto& observe = host_->options().apply_observer) {
      for (size_t k = 0; k < batch.size(); ++k)
        observe(options_.group, batch[k], results[k]);
    }
    if (conf_changed) {
      const raft::ConfState* cs = nullptr;
      for (const CommittedEntry& ce : batch) {
        if (ce.conf_state != nullptr) cs = ce.conf_state;
      }
      {
        std::lock_guard<std::mutex> lock(progress_mu_);
        applied_conf_state_ = *cs;
      }
      NotifyStateChange();
    }
    // Only this incarnation's own requests: an entry proposed before a
    // restart names an older epoch and completes nothing.
    const uint64_t epoch = host_->epoch();
    std::vector<std::pair<std::shared_ptr<Waiter>, std::any>> done;
    {
      std::lock_guard<std::mutex> lock(waiters_mu_);
      for (size_t k = 0; k < ids.size(); ++k) {
        if (ids[k].proposer != options_.replica_id || ids[k].epoch != epoch) continue;
        auto it = waiters_.find(ids[k]);
        if (it != waiters_.end()) done.emplace_back(it->second, std::move(results[k]));
      }
    }
    proposals_committed_.fetch_add(done.size());
    // Completed outside the lock: an asynchronous waiter's callback takes it
    // to unregister itself.
    for (auto& [w, r] : done)
      w->Complete(std::move(r));
    ReleaseReads(last);
  }
}

void Replica::QueuePendingReads(std::vector<PendingRead> reads) {
  {
    std::lock_guard<std::mutex> lock(reads_mu_);
    for (PendingRead& r : reads) {
      auto pos =
          std::upper_bound(pending_reads_.begin(), pending_reads_.end(), r.index,
                           [](uint64_t index, const PendingRead& p) { return index < p.index; });
      pending_reads_.insert(pos, std::move(r));
    }
  }
  // Reads whose index is already applied go now; the apply thread releases
  // the rest as it catches up.
  ReleaseReads(applied_index());
}

void Replica::ReleaseReads(uint64_t applied) {
  std::vector<PendingRead> ready;
  {
    std::lock_guard<std::mutex> lock(reads_mu_);
    while (!pending_reads_.empty() && pending_reads_.front().index <= applied) {
      ready.push_back(std::move(pending_reads_.front()));
      pending_reads_.pop_front();
    }
  }
  for (PendingRead& r : ready) {
    for (auto& w : r.waiters)
      w->Complete(std::any());
  }
}

}  // namespace conclave::server
