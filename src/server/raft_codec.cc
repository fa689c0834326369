#include "server/raft_codec.h"

#include <fmt/format.h>

#include <memory>
#include <utility>

namespace conclave::server {

namespace {

template <typename Field>
std::vector<raft::NodeId> Ids(const Field& field) {
  return std::vector<raft::NodeId>(field.begin(), field.end());
}

}  // namespace

void EncodeConfState(const raft::ConfState& cs, raftpb::ConfState* out) {
  out->mutable_voters()->Assign(cs.voters.begin(), cs.voters.end());
  out->mutable_learners()->Assign(cs.learners.begin(), cs.learners.end());
  out->mutable_voters_outgoing()->Assign(cs.voters_outgoing.begin(), cs.voters_outgoing.end());
  out->mutable_learners_next()->Assign(cs.learners_next.begin(), cs.learners_next.end());
  out->set_auto_leave(cs.auto_leave);
}

raft::ConfState DecodeConfState(const raftpb::ConfState& cs) {
  raft::ConfState out;
  out.voters = Ids(cs.voters());
  out.learners = Ids(cs.learners());
  out.voters_outgoing = Ids(cs.voters_outgoing());
  out.learners_next = Ids(cs.learners_next());
  out.auto_leave = cs.auto_leave();
  return out;
}

void EncodeMessage(const raft::Message& m, raftpb::Message* out) {
  out->set_type(static_cast<raftpb::MessageType>(m.type));
  out->set_group(m.group);
  out->set_from(m.from);
  out->set_to(m.to);
  out->set_term(m.term);
  out->set_log_term(m.log_term);
  out->set_index(m.index);
  out->set_commit(m.commit);
  out->mutable_entries()->Reserve(static_cast<int>(m.entries.size()));
  for (const raft::Entry& e : m.entries) {
    raftpb::Entry* pe = out->add_entries();
    pe->set_term(e.term);
    pe->set_index(e.index);
    pe->set_type(static_cast<raftpb::EntryType>(e.type));
    pe->set_data(e.data);
  }
  if (m.snapshot) {
    raftpb::SnapshotMetadata* md = out->mutable_snapshot()->mutable_metadata();
    md->set_index(m.snapshot->metadata.index);
    md->set_term(m.snapshot->metadata.term);
    EncodeConfState(m.snapshot->metadata.conf_state, md->mutable_conf_state());
  }
  out->set_reject(m.reject);
  out->set_reject_hint(m.reject_hint);
  out->set_context(m.context);
  out->set_quiesce(m.quiesce);
}

Result<raft::Message> DecodeMessage(const raftpb::Message& m) {
  const int type = m.type();
  // Local types never travel, except proposals a follower forwards to its leader.
  const bool forwarded_proposal = type == static_cast<int>(raft::MessageType::kPropose);
  if (!forwarded_proposal && (type < static_cast<int>(raft::MessageType::kAppend) ||
                              type > static_cast<int>(raft::MessageType::kReadIndexResponse))) {
    return Status::InvalidArgument(fmt::format("raft message: type {} may not travel", type));
  }
  raft::Message out;
  out.type = static_cast<raft::MessageType>(type);
  out.group = m.group();
  out.from = m.from();
  out.to = m.to();
  out.term = m.term();
  out.log_term = m.log_term();
  out.index = m.index();
  out.commit = m.commit();
  out.entries.reserve(m.entries_size());
  for (const raftpb::Entry& pe : m.entries()) {
    if (pe.type() != raftpb::ENTRY_TYPE_NORMAL && pe.type() != raftpb::ENTRY_TYPE_CONF_CHANGE) {
      return Status::InvalidArgument(fmt::format("raft message: entry type {}", int{pe.type()}));
    }
    out.entries.push_back(
        raft::Entry{pe.term(), pe.index(), static_cast<raft::EntryType>(pe.type()), pe.data()});
  }
  if (out.type == raft::MessageType::kSnapshot) {
    auto snap = std::make_shared<raft::Snapshot>();
    snap->metadata.index = m.snapshot().metadata().index();
    snap->metadata.term = m.snapshot().metadata().term();
    snap->metadata.conf_state = DecodeConfState(m.snapshot().metadata().conf_state());
    snap->data = m.snapshot().data();
    out.snapshot = std::move(snap);
  }
  out.reject = m.reject();
  out.reject_hint = m.reject_hint();
  out.context = m.context();
  out.quiesce = m.quiesce();
  return out;
}

}  // namespace conclave::server
