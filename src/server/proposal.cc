#include "server/proposal.h"

#include "base/coding.h"

namespace conclave::server {

namespace {
constexpr char kMarker = '\x00';
constexpr char kVersion = '\x01';
constexpr size_t kHeaderBytes = 2 + 3 * 8;
}  // namespace

std::string EncodeProposal(const ProposalId& id, std::string_view command) {
  std::string out;
  out.reserve(kHeaderBytes + command.size());
  out.push_back(kMarker);
  out.push_back(kVersion);
  PutFixed64(&out, id.proposer);
  PutFixed64(&out, id.epoch);
  PutFixed64(&out, id.request_id);
  out.append(command);
  return out;
}

std::optional<DecodedProposal> DecodeProposal(std::string_view data) {
  if (data.empty() || data[0] != kMarker) return DecodedProposal{ProposalId{}, data};
  if (data.size() < kHeaderBytes || data[1] != kVersion) return std::nullopt;
  DecodedProposal out;
  out.id.proposer = DecodeFixed64(data.data() + 2);
  out.id.epoch = DecodeFixed64(data.data() + 10);
  out.id.request_id = DecodeFixed64(data.data() + 18);
  out.command = data.substr(kHeaderBytes);
  return out;
}

}  // namespace conclave::server
