#include "server/state_machine.h"

#include <utility>

#include "mvcc/mvcc.h"

namespace conclave::server {

namespace {

class WriterSnapshotSource final : public SnapshotSource {
 public:
  WriterSnapshotSource(std::unique_ptr<mvcc::SnapshotWriter> writer, raft::ConfState cs)
      : writer_(std::move(writer)), conf_state_(std::move(cs)) {}
  uint64_t index() const override { return writer_->id().index; }
  uint64_t term() const override { return writer_->id().term; }
  const raft::ConfState& conf_state() const override { return conf_state_; }
  Result<bool> Next(std::string* chunk) override { return writer_->Next(chunk); }

 private:
  std::unique_ptr<mvcc::SnapshotWriter> writer_;
  raft::ConfState conf_state_;
};

}  // namespace

std::unique_ptr<SnapshotSource> NewWriterSnapshotSource(
    std::unique_ptr<mvcc::SnapshotWriter> writer, raft::ConfState conf_state) {
  return std::make_unique<WriterSnapshotSource>(std::move(writer), std::move(conf_state));
}

}  // namespace conclave::server
