// The client's range routes: built from the members' Ranges answers, kept
// current by the answers' hints.
#include "client/range_router.h"

#include <gtest/gtest.h>

namespace conclave::client {
namespace {

using Clock = RangeRouter::Clock;

struct R {
  uint64_t id;
  std::string start, end;
  uint64_t generation;
  uint64_t leader;  // as the answering node sees it
  std::vector<uint64_t> voters;
};

kvpb::RangesResponse Answer(uint64_t node, const std::vector<R>& ranges) {
  kvpb::RangesResponse a;
  a.set_node_id(node);
  for (const R& r : ranges) {
    kvpb::RangeInfo* info = a.add_ranges();
    info->set_range_id(r.id);
    info->set_start(r.start);
    info->set_end(r.end);
    info->set_generation(r.generation);
    info->set_leader_node(r.leader);
    for (uint64_t v : r.voters) {
      kvpb::Replica* rep = info->add_replicas();
      rep->set_node_id(v);
    }
  }
  return a;
}

// Three endpoints: nodes 0xa, 0xb, 0xc at indexes 0, 1, 2.
void Fill(RangeRouter& router, const std::vector<std::optional<kvpb::RangesResponse>>& answers) {
  EXPECT_TRUE(router.ClaimRefresh(Clock::now()));
  router.Refresh(answers, Clock::now());
}

TEST(RangeRouterTest, RoutesEachKeyToItsRangesLeader) {
  // Range 1 [ "", m) led by b; range 2 [m, "") led by c. Node a names b as
  // range 2's leader (it has not heard of an election yet); c's own word
  // wins.
  RangeRouter router;
  Fill(router, {
                   Answer(0xa, {{1, "", "m", 3, 0xb, {0xa, 0xb, 0xc}},
                                {2, "m", "", 3, 0xb, {0xa, 0xb, 0xc}}}),
                   Answer(0xb, {{1, "", "m", 3, 0xb, {0xa, 0xb, 0xc}}}),
                   Answer(0xc, {{2, "m", "", 3, 0xc, {0xa, 0xb, 0xc}}}),
               });
  EXPECT_FALSE(router.stale());
  EXPECT_EQ(router.ranges(), 2u);
  EXPECT_EQ(router.Pick("a"), 1u);
  EXPECT_EQ(router.Pick("l\xff"), 1u);
  EXPECT_EQ(router.Pick("m"), 2u);
  EXPECT_EQ(router.Pick("zzz"), 2u);
}

TEST(RangeRouterTest, WithoutALeaderAVoterIsPicked) {
  RangeRouter router;
  Fill(router, {
                   std::nullopt,
                   Answer(0xb, {{1, "", "", 2, 0, {0xd, 0xb}}}),
                   std::nullopt,
               });
  EXPECT_EQ(router.Pick("k"), 1u);  // 0xd has no endpoint here
}

TEST(RangeRouterTest, TheLaterGenerationWinsWhereHoldersDisagree) {
  // Node a has not applied the split of range 1 at "m" (generation 4);
  // b has, and holds both halves.
  RangeRouter router;
  Fill(router,
       {
           Answer(0xa, {{1, "", "", 3, 0xa, {0xa, 0xb}}}),
           Answer(0xb, {{1, "", "m", 4, 0xb, {0xa, 0xb}}, {5, "m", "", 4, 0xb, {0xa, 0xb}}}),
           std::nullopt,
       });
  EXPECT_EQ(router.ranges(), 2u);
  EXPECT_EQ(router.Pick("a"), 1u);
  EXPECT_EQ(router.Pick("q"), 1u);

  // Node a still has range 1 over everything, from before it split twice;
  // c holds range 7, split off in the middle later. Range 1's old span
  // loses to the later generation, and keys outside range 7 have no route.
  RangeRouter later;
  Fill(later, {
                  Answer(0xa, {{1, "", "z", 2, 0xa, {0xa, 0xc}}}),
                  std::nullopt,
                  Answer(0xc, {{7, "f", "m", 4, 0xc, {0xa, 0xc}}}),
              });
  EXPECT_EQ(later.ranges(), 1u);
  EXPECT_EQ(later.Pick("g"), 2u);
  EXPECT_EQ(later.Pick("a"), std::nullopt);
  EXPECT_EQ(later.Pick("p"), std::nullopt);
}

TEST(RangeRouterTest, HintsMoveTheLeaderOrMakeTheRoutesStale) {
  RangeRouter router;
  Fill(router, {
                   Answer(0xa, {{1, "", "m", 3, 0xa, {0xa, 0xb, 0xc}}}),
                   Answer(0xb, {{2, "m", "", 3, 0xb, {0xa, 0xb, 0xc}}}),
                   Answer(0xc, {}),
               });
  EXPECT_EQ(router.Pick("b"), 0u);
  // The leader moved to c: the next request goes there.
  router.Learn("b", "1 3 c");
  EXPECT_EQ(router.Pick("b"), 2u);
  EXPECT_FALSE(router.stale());
  // A lagging replica's word about an older generation changes nothing.
  router.Learn("b", "1 2 a");
  EXPECT_EQ(router.Pick("b"), 2u);
  EXPECT_FALSE(router.stale());
  // A hint the router cannot read makes it read the ranges again.
  router.Learn("b", "1 3");
  EXPECT_TRUE(router.stale());
  // A later generation (a split), another range, or a member that holds
  // none of the key's range: stale.
  for (const char* hint : {"1 2 a", "7 1 a", "forwarded"}) {
    RangeRouter r;
    Fill(r, {Answer(0xa, {{1, "", "", 1, 0xa, {0xa}}}), std::nullopt});
    r.Learn("k", hint);
    EXPECT_TRUE(r.stale()) << hint;
  }
}

TEST(RangeRouterTest, RefreshesAreClaimedOnceAndSpacedOut) {
  RangeRouter router;
  const Clock::time_point t0 = Clock::now();
  ASSERT_TRUE(router.ClaimRefresh(t0));
  EXPECT_FALSE(router.ClaimRefresh(t0));  // another caller is at it
  router.Refresh({std::nullopt}, t0);     // nobody answered: still stale
  EXPECT_TRUE(router.stale());
  EXPECT_FALSE(router.ClaimRefresh(t0 + RangeRouter::kRefreshGap / 2));
  EXPECT_TRUE(router.ClaimRefresh(t0 + RangeRouter::kRefreshGap));
  router.Refresh({Answer(0xa, {{1, "", "", 1, 0xa, {0xa}}})}, t0 + RangeRouter::kRefreshGap);
  EXPECT_FALSE(router.stale());
  EXPECT_FALSE(router.ClaimRefresh(t0 + 10 * RangeRouter::kRefreshGap));  // nothing to do
  EXPECT_EQ(router.Pick("k"), 0u);
  // A read nobody answers keeps the routes there were.
  router.Learn("k", "forwarded");
  ASSERT_TRUE(router.ClaimRefresh(t0 + 10 * RangeRouter::kRefreshGap));
  router.Refresh({std::nullopt}, t0 + 10 * RangeRouter::kRefreshGap);
  EXPECT_EQ(router.Pick("k"), 0u);
  EXPECT_TRUE(router.stale());
}

TEST(RangeRouterTest, ForwardedForAKeyWithoutARouteChangesNothing) {
  RangeRouter router;
  Fill(router, {Answer(0xa, {{1, "", "m", 1, 0xa, {0xa}}})});
  router.Learn("q", "forwarded");  // none of the endpoints holds "q"'s range
  EXPECT_FALSE(router.stale());
  // A leader on a node without an endpoint here: read the ranges again.
  router.Learn("b", "1 1 f");
  EXPECT_TRUE(router.stale());
}

}  // namespace
}  // namespace conclave::client
