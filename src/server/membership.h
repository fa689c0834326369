// Membership changes as the leader carries them out: MemberAdd, MemberRemove,
// MemberUpdate and MemberPromote, checked against the recorded members and
// against the leader's view of its followers, then proposed through the log.
//
// Only the leader may run them (it alone knows which members are started
// and how far a learner has caught up); other members forward the request
// to it (Transport::ForwardMembership). The checks follow etcd's, with its
// error messages:
//   add      peer URLs valid and not already used; at most one learner; a
//            new voter only if the started members still form a quorum of
//            the grown cluster (a new voter has not started yet);
//   remove   the member exists; removing a voter leaves a started quorum;
//   update   the member exists; the URLs are valid and not another's;
//   promote  the member is a learner whose log has reached 90% of the
//            leader's.
//
// Thread-safety: called from gRPC threads; uses EtcdGroup's thread-safe
// methods, one change at a time (EtcdGroup::membership_mu).
#pragma once

#include "base/status.h"
#include "conclave/serverpb/server.pb.h"
#include "server/config.h"
#include "server/etcd_group.h"

namespace conclave::server {

Result<serverpb::MembershipResponse> ExecuteMembership(EtcdGroup* etcd,
                                                       const serverpb::MembershipRequest& req);

// The members of a new cluster, as --initial-cluster names them (all voters).
std::vector<serverpb::MemberRecord> InitialMembers(const ServerConfig& config);

// Every recorded member's peer URL (the first), keyed by id, without
// `self`: what the transport dials. A record without peer URLs (written by
// a Conclave before membership changes existed) takes the URL `fallback`
// (--initial-cluster) has for the same id.
std::map<uint64_t, std::string> PeerTargets(const std::vector<serverpb::MemberRecord>& members,
                                            uint64_t self,
                                            const std::vector<serverpb::MemberRecord>& fallback);

}  // namespace conclave::server
