// The wire form of Raft's values: conversions between src/raft/types.h and
// conclave.raftpb (proto/conclave/raftpb/raft.proto).
//
// Decoding is strict, because peers are trusted only to be peers: unknown
// enum values and local message types (which never travel; a proposal that
// a follower forwards to its leader is the one exception) are refused with
// InvalidArgument, so nothing malformed reaches the consensus core.
//
// Thread-safety: pure functions.
#pragma once

#include "base/status.h"
#include "conclave/raftpb/raft.pb.h"
#include "raft/raft.h"

namespace conclave::server {

void EncodeConfState(const raft::ConfState& cs, raftpb::ConfState* out);
raft::ConfState DecodeConfState(const raftpb::ConfState& cs);

// A kSnapshot message's snapshot goes as metadata only: the image follows on
// its own stream (Transport::SendSnapshot).
void EncodeMessage(const raft::Message& m, raftpb::Message* out);
Result<raft::Message> DecodeMessage(const raftpb::Message& m);

}  // namespace conclave::server
