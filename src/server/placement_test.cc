// The placement driver's choice of where a replica goes: as far from the
// range's other replicas as the members' labels allow, then onto the member
// holding the fewest; and which leadership a busy member hands over.
#include <gtest/gtest.h>

#include "server/native_keyspace.h"

namespace conclave::server {
namespace {

NodeLabels Labels(std::vector<std::pair<std::string, std::string>> pairs) {
  NodeLabels out;
  for (auto& [k, v] : pairs) {
    kvpb::Label* l = out.Add();
    l->set_key(k);
    l->set_value(v);
  }
  return out;
}

keys::RangeDescriptor OnNodes(std::vector<uint64_t> nodes) {
  keys::RangeDescriptor d;
  d.range_id = 16;
  uint64_t id = 1;
  for (uint64_t n : nodes)
    d.replicas.push_back({n, id++, keys::ReplicaType::kVoter});
  d.next_replica_id = id;
  return d;
}

TEST(ApartTest, TheFirstLabelThatDiffersSaysHowFar) {
  EXPECT_EQ(Apart(Labels({}), Labels({})), 0);
  EXPECT_EQ(Apart(Labels({{"zone", "a"}}), Labels({{"zone", "a"}})), 0);
  EXPECT_EQ(Apart(Labels({{"zone", "a"}}), Labels({{"zone", "b"}})), 1);
  EXPECT_EQ(Apart(Labels({{"zone", "a"}, {"rack", "1"}}), Labels({{"zone", "a"}, {"rack", "2"}})),
            0.5);
  EXPECT_EQ(Apart(Labels({{"zone", "a"}, {"rack", "1"}}), Labels({{"zone", "b"}, {"rack", "1"}})),
            1);
  // Where a node without labels is, is not known: it is near every other
  // (so labelling members one at a time moves nothing onto the first).
  EXPECT_EQ(Apart(Labels({{"zone", "a"}}), Labels({})), 0);
  // Only the labels both have, under the same keys in the same places.
  EXPECT_EQ(Apart(Labels({{"zone", "a"}, {"rack", "1"}}), Labels({{"zone", "b"}})), 1);
  EXPECT_EQ(Apart(Labels({{"zone", "a"}, {"rack", "1"}}), Labels({{"rack", "1"}, {"zone", "b"}})),
            0);
}

TEST(PlacementViewTest, ATargetAMoveFailedToReachIsAvoidedWhileAnotherCanTakeIt) {
  PlacementView v;
  v.count = {{1, 5}, {2, 5}, {3, 5}, {4, 1}, {5, 2}};
  const keys::RangeDescriptor d = OnNodes({1, 2, 3});
  EXPECT_EQ(v.Target(d, 3), 4u);
  v.avoid[d.range_id] = {4};
  EXPECT_EQ(v.Target(d, 3), 5u);
  // With every other avoided too, the best of them after all.
  v.avoid[d.range_id] = {4, 5};
  EXPECT_EQ(v.Target(d, 3), 4u);
  v.avoid.clear();
  v.avoid[99] = {4};  // another range's
  EXPECT_EQ(v.Target(d, 3), 4u);
}

TEST(PlacementViewTest, WithoutLabelsTheEmptiestMemberTakesTheReplica) {
  PlacementView v;
  v.count = {{1, 5}, {2, 5}, {3, 5}, {4, 7}, {5, 2}};
  EXPECT_EQ(v.Target(OnNodes({1, 2, 3}), 3), 5u);
  EXPECT_EQ(v.Target(OnNodes({1, 2, 3, 4, 5}), 3), 0u);  // every member holds one
}

TEST(PlacementViewTest, AnotherZoneBeatsAnEmptierMember) {
  PlacementView v;
  v.count = {{1, 5}, {2, 5}, {3, 5}, {4, 1}, {5, 9}};
  v.labels = {{1, Labels({{"zone", "a"}})},
              {2, Labels({{"zone", "b"}})},
              {3, Labels({{"zone", "c"}})},
              {4, Labels({{"zone", "a"}})},
              {5, Labels({{"zone", "c"}})}};
  // Zone c's replica goes: to zone c again (node 5), not to the emptier
  // node 4 in zone a, which already holds one.
  const keys::RangeDescriptor d = OnNodes({1, 2, 3});
  EXPECT_EQ(v.Target(d, 3), 5u);
  EXPECT_TRUE(v.Spreads(d, 3, 5, false));
  EXPECT_FALSE(v.Spreads(d, 3, 5, true));
  EXPECT_FALSE(v.Spreads(d, 3, 4, false));
  // Two replicas in zone a: one moves to zone c.
  const keys::RangeDescriptor crowded = OnNodes({1, 2, 4});
  EXPECT_EQ(v.Target(crowded, 4), 3u);
  EXPECT_TRUE(v.Spreads(crowded, 4, 3, true));
  EXPECT_FALSE(v.Spreads(crowded, 2, 3, true));  // b to c: no farther
}

TEST(PlacementViewTest, RacksCountAfterZones) {
  PlacementView v;
  v.count = {{1, 0}, {2, 0}, {3, 0}, {4, 0}};
  v.labels = {{1, Labels({{"zone", "a"}, {"rack", "1"}})},
              {2, Labels({{"zone", "a"}, {"rack", "1"}})},
              {3, Labels({{"zone", "a"}, {"rack", "2"}})},
              {4, Labels({{"zone", "b"}, {"rack", "1"}})}};
  // For a range on 1 and 2 (the same rack), the other zone first, then the
  // other rack.
  EXPECT_EQ(v.Target(OnNodes({1, 2}), 0), 4u);
  EXPECT_EQ(v.Target(OnNodes({1, 2, 4}), 2), 3u);
}

keys::RangeDescriptor Range(keys::RangeId id, std::vector<uint64_t> nodes) {
  keys::RangeDescriptor d = OnNodes(std::move(nodes));
  d.range_id = id;
  return d;
}

constexpr uint64_t kMiB = 1 << 20;

TEST(PlacementViewTest, BytesEvenOutWithTheRangeNearestHalfTheGap) {
  PlacementView v;
  v.count = {{1, 4}, {2, 4}, {3, 4}, {4, 4}};
  v.bytes = {{1, 8 * kMiB}, {2, 6 * kMiB}, {3, 6 * kMiB}, {4, 4 * kMiB}};
  // Node 1 holds ranges 16 and 17 (2 MiB each) and 20 (3 MiB) that node 4
  // does not; 18 is on both.
  const std::vector<keys::RangeDescriptor> map = {Range(16, {1, 2, 3}), Range(17, {1, 2, 3}),
                                                  Range(18, {1, 3, 4}), Range(20, {1, 2, 3})};
  v.range_bytes = {{16, 2 * kMiB}, {17, 2 * kMiB}, {18, 1 * kMiB}, {20, 3 * kMiB}};
  std::optional<PlacementView::Move> m = v.EvenBytes(map, {});
  ASSERT_TRUE(m.has_value());
  // A 2 MiB range halves the 4 MiB gap; the 3 MiB one would leave 2 MiB.
  EXPECT_EQ(m->from, 1u);
  EXPECT_EQ(m->to, 4u);
  EXPECT_TRUE(m->range_id == 16 || m->range_id == 17) << m->range_id;
  // Ranges being moved stay.
  m = v.EvenBytes(map, {16, 17});
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->range_id, 20u);
  // Within a tenth of the most (or 1 MiB), nothing moves.
  v.bytes = {{1, 10 * kMiB}, {2, 10 * kMiB}, {3, 10 * kMiB}, {4, 9 * kMiB + kMiB / 2}};
  EXPECT_FALSE(v.EvenBytes(map, {}).has_value());
  // A range as big as the gap would only swap the two: it stays.
  v.bytes = {{1, 8 * kMiB}, {2, 6 * kMiB}, {3, 6 * kMiB}, {4, 6 * kMiB}};
  v.range_bytes = {{16, 2 * kMiB}, {17, 2 * kMiB}, {20, 3 * kMiB}};
  EXPECT_FALSE(v.EvenBytes(map, {}).has_value());
}

TEST(PlacementViewTest, CountsEvenOutWithUnsizedRanges) {
  PlacementView v;
  v.count = {{1, 3}, {2, 2}, {3, 2}, {4, 1}};
  const std::vector<keys::RangeDescriptor> map = {Range(16, {1, 2, 3}), Range(17, {1, 2, 3})};
  v.range_bytes = {{16, 5 * kMiB}};
  std::optional<PlacementView::Move> m = v.EvenCounts(map, {});
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->range_id, 17u);  // 16's size is known: it moves for bytes only
  EXPECT_EQ(m->from, 1u);
  EXPECT_EQ(m->to, 4u);
  EXPECT_FALSE(v.EvenCounts(map, {17}).has_value());
  v.count = {{1, 2}, {2, 2}, {3, 2}, {4, 1}};
  EXPECT_FALSE(v.EvenCounts(map, {}).has_value());
}

TEST(PlacementViewTest, CountsEvenOutThroughAnotherPairWhenTheFirstCannot) {
  PlacementView v;
  // Node 1 holds the most, but of the ranges node 5 lacks only a sized
  // one, and the others hold one fewer than it; nodes 2, 3 and 4 hold two
  // more than node 5, and an unsized range node 5 lacks.
  v.count = {{1, 4}, {2, 3}, {3, 3}, {4, 3}, {5, 1}};
  const std::vector<keys::RangeDescriptor> map = {Range(16, {1, 3, 4}), Range(17, {1, 2, 5}),
                                                  Range(18, {2, 3, 4})};
  v.range_bytes = {{16, 5 * kMiB}};
  std::optional<PlacementView::Move> m = v.EvenCounts(map, {});
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->range_id, 18u);
  EXPECT_NE(m->from, 1u);
  EXPECT_EQ(m->to, 5u);
}

// Leaders by load. Node 1 leads two busy ranges; nodes 2 and 3 serve
// little. The range that goes is the one that evens the two members out
// best, to the member serving least among those holding a voter of it.
TEST(LeaderLoadTest, ABusyMemberHandsOverTheRangeThatEvensTheLoadOut) {
  const std::vector<LedRange> led = {
      {16, 300, {{2, 5}, {3, 6}}}, {17, 500, {{2, 8}, {3, 9}}}, {18, 2, {{3, 11}}}};
  std::optional<LeaderHandover> h = ChooseLoadHandover(802, {{2, 50}, {3, 0}}, led);
  ASSERT_TRUE(h.has_value());
  // Range 16 to node 3: 502 and 300 (to node 2: 502 and 350). Range 17
  // would leave its taker busier than this node; range 18 is too cold to
  // matter.
  EXPECT_EQ(h->index, 0u);
  EXPECT_EQ(h->node, 3u);
  EXPECT_EQ(h->replica, 6u);
}

TEST(LeaderLoadTest, ASingleHotRangeStaysWhereItIs) {
  // Wherever it went, its new leader would serve as much as this one.
  const std::vector<LedRange> led = {{16, 900, {{2, 5}, {3, 6}}}, {17, 3, {{2, 8}}}};
  EXPECT_FALSE(ChooseLoadHandover(903, {{2, 0}, {3, 0}}, led).has_value());
}

TEST(LeaderLoadTest, EvenOrQuietMembersHandNothingOver) {
  const std::vector<LedRange> led = {{16, 100, {{2, 5}}}, {17, 100, {{2, 8}}}};
  // Within a fifth of the mean.
  EXPECT_FALSE(ChooseLoadHandover(200, {{2, 180}, {3, 190}}, led).has_value());
  // Uneven, but a few requests a second are noise.
  const std::vector<LedRange> quiet = {{16, 4, {{2, 5}}}, {17, 4, {{2, 8}}}};
  EXPECT_FALSE(ChooseLoadHandover(8, {{2, 0}, {3, 0}}, quiet).has_value());
}

TEST(LeaderLoadTest, OnlyMembersHoldingAVoterTakeOver) {
  // Node 3 serves nothing but holds no voter of the busy ranges; node 2
  // would end up busier than this node.
  const std::vector<LedRange> led = {{16, 400, {{2, 5}}}, {17, 400, {{2, 8}}}};
  EXPECT_FALSE(ChooseLoadHandover(800, {{2, 500}, {3, 0}}, led).has_value());
}

TEST(LeaderLoadTest, CountHandoversLeaveBusyRangesWhereTheyEvenTheLoad) {
  EXPECT_TRUE(CountHandoverKeepsLoad(500, 0, 2));      // cold: always
  EXPECT_TRUE(CountHandoverKeepsLoad(500, 100, 200));  // 300 and 300
  EXPECT_FALSE(CountHandoverKeepsLoad(500, 0, 400));   // it would go back
}

}  // namespace
}  // namespace conclave::server
