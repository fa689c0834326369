// The envelope of every entry a replica proposes: who is waiting for it.
//
// An entry's data is its proposer's identity followed by the command the
// state machine applies:
//
//   0x00 0x01 | proposer (8) | epoch (8) | request id (8) | command ...
//
// (fixed64 little-endian). The proposer is the proposing replica's id, the
// epoch the host's boot counter (storage-durable, incremented at every
// start) and the request id a counter of that boot. When the entry is
// applied, the proposing replica hands the result to the request it is
// waiting for; the epoch makes sure that an entry proposed by an earlier
// incarnation of the same replica, committed and applied only after a
// restart, never completes a request of the new one.
//
// A leading 0x00 is never the first byte of a protocol-buffer message (field
// 0 does not exist), so entries written before the envelope (a bare
// serverpb.Command) still decode: as a command with no proposer.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace conclave::server {

struct ProposalId {
  uint64_t proposer = 0;  // 0: nobody waits (an internal proposal, or a legacy entry)
  uint64_t epoch = 0;
  uint64_t request_id = 0;
  bool operator==(const ProposalId&) const = default;
  auto operator<=>(const ProposalId&) const = default;
};

struct DecodedProposal {
  ProposalId id;
  std::string_view command;  // points into the decoded bytes
};

std::string EncodeProposal(const ProposalId& id, std::string_view command);
// nullopt for data that starts like an envelope but is too short for one.
std::optional<DecodedProposal> DecodeProposal(std::string_view data);

}  // namespace conclave::server
