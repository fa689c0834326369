#include "server/raft_codec.h"

#include <gtest/gtest.h>

#include "server/transport.h"

namespace conclave::server {
namespace {

raft::Message Sample() {
  raft::Message m;
  m.type = raft::MessageType::kAppend;
  m.group = 7;
  m.from = 1;
  m.to = 2;
  m.term = 5;
  m.log_term = 4;
  m.index = 10;
  m.commit = 9;
  m.entries.push_back(raft::Entry{5, 11, raft::EntryType::kNormal, "a"});
  m.entries.push_back(raft::Entry{5, 12, raft::EntryType::kConfChange, std::string("\0b", 2)});
  m.reject = true;
  m.reject_hint = 3;
  m.context = "ctx";
  return m;
}

TEST(RaftCodecTest, MessageRoundTrips) {
  raftpb::Message pm;
  EncodeMessage(Sample(), &pm);
  auto back = DecodeMessage(pm);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  const raft::Message want = Sample();
  EXPECT_EQ(back->type, want.type);
  EXPECT_EQ(back->group, want.group);
  EXPECT_EQ(back->from, want.from);
  EXPECT_EQ(back->to, want.to);
  EXPECT_EQ(back->term, want.term);
  EXPECT_EQ(back->log_term, want.log_term);
  EXPECT_EQ(back->index, want.index);
  EXPECT_EQ(back->commit, want.commit);
  EXPECT_EQ(back->entries, want.entries);
  EXPECT_EQ(back->reject, want.reject);
  EXPECT_EQ(back->reject_hint, want.reject_hint);
  EXPECT_EQ(back->context, want.context);
  EXPECT_EQ(back->snapshot, nullptr);
}

TEST(RaftCodecTest, SnapshotTravelsAsMetadata) {
  raft::Message m;
  m.type = raft::MessageType::kSnapshot;
  auto snap = std::make_shared<raft::Snapshot>();
  snap->metadata.index = 40;
  snap->metadata.term = 3;
  snap->metadata.conf_state.voters = {1, 2, 3};
  snap->metadata.conf_state.learners = {4};
  snap->data = "image";
  m.snapshot = snap;
  raftpb::Message pm;
  EncodeMessage(m, &pm);
  EXPECT_TRUE(pm.snapshot().data().empty());
  auto back = DecodeMessage(pm);
  ASSERT_TRUE(back.ok());
  ASSERT_NE(back->snapshot, nullptr);
  EXPECT_EQ(back->snapshot->metadata, snap->metadata);
}

TEST(RaftCodecTest, RefusesLocalAndUnknownTypes) {
  raftpb::Message pm;
  EncodeMessage(Sample(), &pm);
  pm.set_type(raftpb::MESSAGE_TYPE_HUP);
  EXPECT_EQ(DecodeMessage(pm).status().code(), StatusCode::kInvalidArgument);
  pm.set_type(raftpb::MESSAGE_TYPE_BEAT);
  EXPECT_EQ(DecodeMessage(pm).status().code(), StatusCode::kInvalidArgument);
  pm.set_type(raftpb::MESSAGE_TYPE_PROPOSE);  // forwarded to the leader
  EXPECT_TRUE(DecodeMessage(pm).ok());
  pm.set_type(static_cast<raftpb::MessageType>(99));
  EXPECT_EQ(DecodeMessage(pm).status().code(), StatusCode::kInvalidArgument);
  EncodeMessage(Sample(), &pm);
  pm.mutable_entries(0)->set_type(static_cast<raftpb::EntryType>(5));
  EXPECT_EQ(DecodeMessage(pm).status().code(), StatusCode::kInvalidArgument);
}

TEST(GrpcTargetTest, AcceptsHttpAndBareHostPort) {
  EXPECT_EQ(*GrpcTarget("http://127.0.0.1:2380"), "127.0.0.1:2380");
  EXPECT_EQ(*GrpcTarget("http://localhost:2379/"), "localhost:2379");
  EXPECT_EQ(*GrpcTarget("10.0.0.1:7"), "10.0.0.1:7");
  EXPECT_FALSE(GrpcTarget("https://127.0.0.1:2380").ok());
  EXPECT_FALSE(GrpcTarget("http://127.0.0.1").ok());
  EXPECT_FALSE(GrpcTarget("http://127.0.0.1:").ok());
  EXPECT_FALSE(GrpcTarget("http://h:1/path").ok());
}

}  // namespace
}  // namespace conclave::server
