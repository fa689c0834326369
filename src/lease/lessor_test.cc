#include "lease/lessor.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>

namespace conclave::lease {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

LessorOptions TestOptions() {
  LessorOptions o;
  o.min_ttl_seconds = 2;
  o.max_ttl_seconds = 1000;
  o.promote_extend = seconds(1);
  o.expired_retry = seconds(3);
  return o;
}

class LessorTest : public ::testing::Test {
 protected:
  SimClock clock_;
  Lessor lessor_{clock_, TestOptions()};
};

TEST_F(LessorTest, GrantChoosesIdsDeterministicallyAndRefusesDuplicates) {
  auto a = lessor_.Grant(0, 10);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->id, 1);
  EXPECT_EQ(a->ttl_seconds, 10);
  ASSERT_TRUE(lessor_.Grant(7, 10).ok());
  auto b = lessor_.Grant(0, 10);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->id, 8);  // above every id granted so far

  auto dup = lessor_.Grant(7, 10);
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(dup.status().message(), errors::kLeaseExists);
  EXPECT_THAT(lessor_.Leases(), ElementsAre(1, 7, 8));

  // A second lessor fed the same commands chooses the same ids.
  SimClock other_clock(seconds(500));
  Lessor other(other_clock, TestOptions());
  EXPECT_EQ(other.Grant(0, 10)->id, 1);
  EXPECT_EQ(other.Grant(7, 10)->id, 7);
  EXPECT_EQ(other.Grant(0, 10)->id, 8);
}

TEST_F(LessorTest, TtlBounds) {
  auto small = lessor_.Grant(1, 1);
  ASSERT_TRUE(small.ok());
  EXPECT_EQ(small->ttl_seconds, 2);  // raised to the minimum
  EXPECT_EQ(lessor_.TimeToLive(1, false)->granted_ttl_seconds, 2);

  EXPECT_TRUE(lessor_.Grant(2, 1000).ok());
  auto big = lessor_.Grant(3, 1001);
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.status().code(), StatusCode::kOutOfRange);
  EXPECT_EQ(big.status().message(), errors::kTTLTooLarge);
  EXPECT_EQ(lessor_.ValidateGrant(1001).message(), "etcdserver: too large lease TTL");
  EXPECT_TRUE(lessor_.ValidateGrant(1000).ok());
}

TEST_F(LessorTest, ExpiresExactlyOnceWhenDeadlinePasses) {
  lessor_.Promote();  // deadlines from now; promote_extend applies only to existing leases
  ASSERT_TRUE(lessor_.Grant(1, 5).ok());
  ASSERT_TRUE(lessor_.Grant(2, 10).ok());

  clock_.Advance(seconds(5) - milliseconds(1));
  EXPECT_THAT(lessor_.ExpiredLeases(0), IsEmpty());
  clock_.Advance(milliseconds(1));
  EXPECT_THAT(lessor_.ExpiredLeases(0), ElementsAre(1));
  // Reported once: the revocation is in flight.
  EXPECT_THAT(lessor_.ExpiredLeases(0), IsEmpty());
  clock_.Advance(seconds(1));
  EXPECT_THAT(lessor_.ExpiredLeases(0), IsEmpty());

  // The revocation applies: never reported again.
  ASSERT_TRUE(lessor_.Revoke(1).ok());
  clock_.Advance(seconds(4));
  EXPECT_THAT(lessor_.ExpiredLeases(0), ElementsAre(2));
}

TEST_F(LessorTest, LostRevocationIsReportedAgainAfterRetryInterval) {
  lessor_.Promote();
  ASSERT_TRUE(lessor_.Grant(1, 5).ok());
  clock_.Advance(seconds(5));
  EXPECT_THAT(lessor_.ExpiredLeases(0), ElementsAre(1));
  clock_.Advance(seconds(3) - milliseconds(1));
  EXPECT_THAT(lessor_.ExpiredLeases(0), IsEmpty());
  clock_.Advance(milliseconds(1));
  EXPECT_THAT(lessor_.ExpiredLeases(0), ElementsAre(1));
}

TEST_F(LessorTest, ExpiredLeasesOldestFirstWithLimit) {
  lessor_.Promote();
  ASSERT_TRUE(lessor_.Grant(1, 9).ok());
  ASSERT_TRUE(lessor_.Grant(2, 3).ok());
  ASSERT_TRUE(lessor_.Grant(3, 6).ok());
  clock_.Advance(seconds(10));
  EXPECT_THAT(lessor_.ExpiredLeases(2), ElementsAre(2, 3));
  EXPECT_THAT(lessor_.ExpiredLeases(2), ElementsAre(1));
}

TEST_F(LessorTest, FollowersNeverDecideExpiry) {
  ASSERT_TRUE(lessor_.Grant(1, 2).ok());
  clock_.Advance(seconds(100));
  EXPECT_THAT(lessor_.ExpiredLeases(0), IsEmpty());
  EXPECT_THAT(lessor_.Checkpoints(0, true), IsEmpty());
  auto renew = lessor_.Renew(1);
  ASSERT_FALSE(renew.ok());
  EXPECT_EQ(renew.status().message(), errors::kNotLeader);

  lessor_.Promote();
  lessor_.Demote();
  EXPECT_FALSE(lessor_.primary());
  clock_.Advance(seconds(100));
  EXPECT_THAT(lessor_.ExpiredLeases(0), IsEmpty());
}

TEST_F(LessorTest, NoEarlyExpiryAfterPromote) {
  // Granted while a follower: the lease has no deadline here yet.
  ASSERT_TRUE(lessor_.Grant(1, 10).ok());
  clock_.Advance(seconds(8));  // the old leader's time passes
  lessor_.Promote();
  // The new leader gives the full TTL plus the election allowance.
  clock_.Advance(seconds(10));
  EXPECT_THAT(lessor_.ExpiredLeases(0), IsEmpty());
  clock_.Advance(seconds(1) - milliseconds(1));
  EXPECT_THAT(lessor_.ExpiredLeases(0), IsEmpty());
  clock_.Advance(milliseconds(1));
  EXPECT_THAT(lessor_.ExpiredLeases(0), ElementsAre(1));
}

TEST_F(LessorTest, CheckpointPreservesRemainingTtlAcrossLeaderChange) {
  SimClock leader_clock;
  Lessor leader(leader_clock, TestOptions());
  Lessor follower(clock_, TestOptions());
  leader.Promote();
  for (Lessor* l : {&leader, &follower})
    ASSERT_TRUE(l->Grant(1, 100).ok());

  leader_clock.Advance(seconds(70));
  std::vector<Checkpoint> cps = leader.Checkpoints(0, true);
  ASSERT_THAT(cps, ElementsAre(Checkpoint{.id = 1, .remaining_ttl_seconds = 30}));
  for (Lessor* l : {&leader, &follower})
    l->ApplyCheckpoint(cps[0]);
  EXPECT_EQ(follower.TimeToLive(1, false)->ttl_seconds, 30);

  // The leader dies; the follower takes over. The TTL neither resets to
  // 100 nor expires before 30 s (+ the allowance).
  follower.Promote();
  clock_.Advance(seconds(31) - milliseconds(1));
  EXPECT_THAT(follower.ExpiredLeases(0), IsEmpty());
  EXPECT_EQ(follower.TimeToLive(1, false)->ttl_seconds, 1);
  clock_.Advance(milliseconds(1));
  EXPECT_THAT(follower.ExpiredLeases(0), ElementsAre(1));
}

TEST_F(LessorTest, RenewMovesDeadlineAndAsksForCheckpoint) {
  lessor_.Promote();
  ASSERT_TRUE(lessor_.Grant(1, 10).ok());
  ASSERT_TRUE(lessor_.Grant(2, 10).ok());
  EXPECT_THAT(lessor_.Checkpoints(0, false), IsEmpty());

  clock_.Advance(seconds(8));
  auto ttl = lessor_.Renew(1);
  ASSERT_TRUE(ttl.ok());
  EXPECT_EQ(*ttl, 10);
  EXPECT_EQ(lessor_.TimeToLive(1, false)->ttl_seconds, 10);
  EXPECT_EQ(lessor_.TimeToLive(2, false)->ttl_seconds, 2);
  EXPECT_THAT(lessor_.Checkpoints(0, false),
              ElementsAre(Checkpoint{.id = 1, .remaining_ttl_seconds = 10}));
  EXPECT_THAT(lessor_.Checkpoints(0, false), IsEmpty());

  clock_.Advance(seconds(2));
  EXPECT_THAT(lessor_.ExpiredLeases(0), ElementsAre(2));
  // An expired lease cannot be kept alive; its revocation is on the way.
  auto late = lessor_.Renew(2);
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.status().message(), errors::kLeaseNotFound);
  ASSERT_TRUE(lessor_.Revoke(2).ok());
  clock_.Advance(seconds(8) - milliseconds(1));
  EXPECT_THAT(lessor_.ExpiredLeases(0), IsEmpty());
  clock_.Advance(milliseconds(1));
  EXPECT_THAT(lessor_.ExpiredLeases(0), ElementsAre(1));
}

TEST_F(LessorTest, AFollowerSendsOnWhatItDoesNotKnowYet) {
  // The grant applied on the leader, not here yet: a renewal or a TTL
  // question goes to the leader, which knows the lease.
  for (const Status& s : {lessor_.Renew(7).status(), lessor_.TimeToLive(7, false).status()}) {
    EXPECT_EQ(s.message(), errors::kNotLeader);
  }
}

TEST_F(LessorTest, UnknownLeaseErrors) {
  lessor_.Promote();
  for (const Status& s : {lessor_.Renew(42).status(), lessor_.Revoke(42).status(),
                          lessor_.TimeToLive(42, true).status(), lessor_.Attach(42, "k")}) {
    EXPECT_EQ(s.code(), StatusCode::kNotFound);
    EXPECT_EQ(s.message(), "etcdserver: requested lease not found");
  }
  lessor_.ApplyCheckpoint(Checkpoint{.id = 42, .remaining_ttl_seconds = 3});  // ignored
  EXPECT_THAT(lessor_.Leases(), IsEmpty());
}

TEST_F(LessorTest, RevokeReturnsAttachedKeys) {
  ASSERT_TRUE(lessor_.Grant(1, 10).ok());
  ASSERT_TRUE(lessor_.Grant(2, 10).ok());
  ASSERT_TRUE(lessor_.Attach(1, "b").ok());
  ASSERT_TRUE(lessor_.Attach(1, "a").ok());
  ASSERT_TRUE(lessor_.Attach(1, "c").ok());
  ASSERT_TRUE(lessor_.Attach(2, "c").ok());  // moves "c" to lease 2
  ASSERT_TRUE(lessor_.Attach(1, "d").ok());
  lessor_.Detach("d");
  lessor_.Detach("never-attached");
  EXPECT_EQ(lessor_.LeaseOf("c"), 2);
  EXPECT_EQ(lessor_.LeaseOf("d"), 0);
  EXPECT_THAT(lessor_.TimeToLive(1, true)->keys, ElementsAre("a", "b"));
  EXPECT_THAT(lessor_.TimeToLive(1, false)->keys, IsEmpty());

  auto keys = lessor_.Revoke(1);
  ASSERT_TRUE(keys.ok());
  EXPECT_THAT(*keys, ElementsAre("a", "b"));
  EXPECT_EQ(lessor_.LeaseOf("a"), 0);
  EXPECT_EQ(lessor_.LeaseOf("c"), 2);
  EXPECT_THAT(lessor_.Leases(), ElementsAre(2));
  EXPECT_EQ(lessor_.Revoke(1).status().message(), errors::kLeaseNotFound);
}

TEST_F(LessorTest, TimeToLiveOnPrimaryCountsDown) {
  lessor_.Promote();
  ASSERT_TRUE(lessor_.Grant(1, 10).ok());
  clock_.Advance(milliseconds(2500));
  auto t = lessor_.TimeToLive(1, false);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->granted_ttl_seconds, 10);
  EXPECT_EQ(t->ttl_seconds, 8);  // 7.5 s rounded up
  clock_.Advance(seconds(8));
  // Expired but not yet revoked: 0, until the revocation is applied.
  EXPECT_EQ(lessor_.TimeToLive(1, false)->ttl_seconds, 0);
}

}  // namespace
}  // namespace conclave::lease
