// The web page on a member's metrics port (GET /ranges): the members, the
// native ranges and a timeline of their splits, merges and moves, drawn
// from GET /ranges.json (serverpb.ClusterView) and refreshed live.
#pragma once

#include <string_view>

namespace conclave::server {

extern const std::string_view kRangesPage;

}  // namespace conclave::server
