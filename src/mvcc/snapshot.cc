#include "mvcc/snapshot.h"

#include <fmt/format.h>

#include "base/coding.h"
#include "base/crc32c.h"
#include "base/logging.h"
#include "base/sha256.h"
#include "mvcc/keys.h"

namespace conclave::mvcc {
namespace {

constexpr char kMagic[] = "CVSN";
constexpr uint8_t kVersion = 1;
constexpr uint8_t kFlagLast = 1;
// magic, version, flags, group, index, term, seq, total, count
constexpr size_t kHeaderBytes = 4 + 1 + 1 + 8 + 8 + 8 + 4 + 8 + 4;
constexpr uint64_t kMaxChunkBytes = 64 << 20;

Status Corrupt(const std::string& what) {
  return Status::Corruption("snapshot chunk: " + what);
}

}  // namespace

std::string EncodeChunk(const SnapshotChunk& c) {
  std::string s(kMagic, 4);
  s.push_back(static_cast<char>(kVersion));
  s.push_back(static_cast<char>(c.last ? kFlagLast : 0));
  PutFixed64(&s, c.id.group);
  PutFixed64(&s, c.id.index);
  PutFixed64(&s, c.id.term);
  PutFixed32(&s, c.seq);
  PutFixed64(&s, c.total_records);
  PutFixed32(&s, static_cast<uint32_t>(c.records.size()));
  for (const auto& [k, v] : c.records) {
    PutLengthPrefixed(&s, k);
    PutLengthPrefixed(&s, v);
  }
  PutFixed32(&s, Crc32c(s));
  return s;
}

Result<SnapshotChunk> DecodeChunk(std::string_view bytes) {
  if (bytes.size() < kHeaderBytes + 4) {
    return Corrupt(fmt::format("{} bytes is shorter than a header", bytes.size()));
  }
  const uint32_t want = DecodeFixed32(bytes.data() + bytes.size() - 4);
  const uint32_t got = Crc32c(bytes.substr(0, bytes.size() - 4));
  if (want != got) {
    return Corrupt(fmt::format("checksum mismatch, expected {:#010x} got {:#010x}", want, got));
  }
  if (bytes.substr(0, 4) != std::string_view(kMagic, 4)) return Corrupt("bad magic");
  Decoder d(bytes.substr(4, bytes.size() - 8));
  uint8_t version = 0;
  uint8_t flags = 0;
  SnapshotChunk c;
  uint32_t count = 0;
  if (!d.ReadByte(&version) || version != kVersion) {
    return Corrupt(fmt::format("unknown version {}", version));
  }
  if (!d.ReadByte(&flags) || (flags & ~kFlagLast) != 0) return Corrupt("bad flags");
  c.last = (flags & kFlagLast) != 0;
  if (!d.ReadFixed64(&c.id.group) || !d.ReadFixed64(&c.id.index) || !d.ReadFixed64(&c.id.term) ||
      !d.ReadFixed32(&c.seq) || !d.ReadFixed64(&c.total_records) || !d.ReadFixed32(&count)) {
    return Corrupt("truncated header");
  }
  // Each record takes at least two bytes; refuse counts the bytes cannot hold.
  if (count > d.remaining() / 2) return Corrupt(fmt::format("record count {} too large", count));
  c.records.reserve(count);
  for (uint32_t i = 0; i < count; ++i) {
    std::string_view k;
    std::string_view v;
    if (!d.ReadLengthPrefixed(&k) || !d.ReadLengthPrefixed(&v)) {
      return Corrupt(fmt::format("record {} of {} truncated", i, count));
    }
    c.records.emplace_back(std::string(k), std::string(v));
  }
  if (!d.empty()) return Corrupt(fmt::format("{} trailing bytes", d.remaining()));
  return c;
}

// ---- writer ----

SnapshotWriter::SnapshotWriter(const storage::Engine* engine,
                               std::shared_ptr<const storage::EngineSnapshot> snap, SnapshotId id,
                               std::vector<std::pair<std::string, std::string>> spans,
                               size_t chunk_bytes)
    : id_(id), chunk_bytes_(chunk_bytes), snapshot_(std::move(snap)), spans_(std::move(spans)) {
  it_ = engine->NewIterator(snapshot_.get());
  SeekSpan();
}

SnapshotWriter::~SnapshotWriter() = default;

Result<std::unique_ptr<SnapshotWriter>> SnapshotWriter::Create(Store* store, size_t chunk_bytes) {
  std::shared_ptr<const storage::EngineSnapshot> snap = store->engine()->GetSnapshot();
  // The applied index as of the engine snapshot, not as of now.
  ASSIGN_OR_RETURN(StoreMeta meta, store->MetaAt(snap.get()));
  const uint64_t g = store->group();
  std::unique_ptr<SnapshotWriter> w(new SnapshotWriter(
      store->engine(), std::move(snap), SnapshotId{g, meta.applied_index, meta.applied_term},
      {{keys::GroupPrefix(g), keys::GroupPrefix(g + 1)}}, chunk_bytes));
  w->store_ = store;
  return w;
}

std::unique_ptr<SnapshotWriter> SnapshotWriter::ForSpans(
    const storage::Engine* engine, std::shared_ptr<const storage::EngineSnapshot> snapshot,
    SnapshotId id, std::vector<std::pair<std::string, std::string>> spans, size_t chunk_bytes) {
  return std::unique_ptr<SnapshotWriter>(
      new SnapshotWriter(engine, std::move(snapshot), id, std::move(spans), chunk_bytes));
}

void SnapshotWriter::SeekSpan() {
  if (span_ < spans_.size()) it_->Seek(spans_[span_].first);
}

Result<bool> SnapshotWriter::Next(std::string* out) {
  if (done_) return false;
  SnapshotChunk c;
  c.id = id_;
  c.seq = seq_++;
  size_t bytes = 0;
  while (span_ < spans_.size() && bytes < chunk_bytes_) {
    if (!it_->Valid() || it_->key() >= spans_[span_].second) {
      if (const Status s = it_->status(); !s.ok()) {
        return Status::IOError("snapshot read: " + s.message());
      }
      ++span_;
      SeekSpan();
      continue;
    }
    c.records.emplace_back(it_->key(), it_->value());
    bytes += it_->key().size() + it_->value().size();
    it_->Next();
  }
  if (const Status s = it_->status(); !s.ok()) {
    return Status::IOError("snapshot read: " + s.message());
  }
  records_ += c.records.size();
  // Past the last span, or at the end of it with nothing left.
  while (span_ < spans_.size() && (!it_->Valid() || it_->key() >= spans_[span_].second)) {
    ++span_;
    SeekSpan();
  }
  if (span_ == spans_.size()) {
    c.last = true;
    c.total_records = records_;
    done_ = true;
  }
  *out = EncodeChunk(c);
  return true;
}

// ---- receiver ----

std::string SnapshotPath(const std::string& dir, const SnapshotId& id) {
  return storage::JoinPath(
      dir, fmt::format("{:016x}-{:016x}-{:016x}.snap", id.group, id.term, id.index));
}

namespace {
std::string PartPath(const std::string& dir, const SnapshotId& id) {
  return SnapshotPath(dir, id) + ".part";
}
}  // namespace

SnapshotReceiver::SnapshotReceiver(storage::FileSystem* fs, std::string dir, SnapshotId id)
    : fs_(fs), dir_(std::move(dir)), id_(id) {}

SnapshotReceiver::~SnapshotReceiver() {
  if (file_) (void)file_->Close();
}

Status SnapshotReceiver::Add(std::string_view bytes) {
  if (failed_) return Status::FailedPrecondition("snapshot receiver failed earlier");
  if (complete_) return Status::FailedPrecondition("snapshot already complete");
  if (bytes.size() > kMaxChunkBytes) {
    failed_ = true;
    return Corrupt(fmt::format("{} bytes exceeds the chunk limit", bytes.size()));
  }
  Result<SnapshotChunk> c = DecodeChunk(bytes);
  if (!c.ok()) {
    failed_ = true;
    return c.status();
  }
  if (!(c->id == id_) || c->seq != next_seq_) {
    failed_ = true;
    return Corrupt(fmt::format(
        "chunk {} of snapshot {}/{}/{} where chunk {} of {}/{}/{} was "
        "expected",
        c->seq, c->id.group, c->id.index, c->id.term, next_seq_, id_.group, id_.index, id_.term));
  }
  records_ += c->records.size();
  if (c->last && c->total_records != records_) {
    failed_ = true;
    return Corrupt(
        fmt::format("snapshot ends after {} records but declares {}", records_, c->total_records));
  }
  if (!file_) {
    RETURN_IF_ERROR(fs_->CreateDirs(dir_));
    ASSIGN_OR_RETURN(file_,
                     fs_->OpenWritable(PartPath(dir_, id_), storage::OpenMode::kCreateOrTruncate));
  }
  std::string framed;
  PutFixed32(&framed, static_cast<uint32_t>(bytes.size()));
  framed.append(bytes);
  Status s = file_->Append(framed);
  if (!s.ok()) {
    failed_ = true;
    return s;
  }
  ++next_seq_;
  complete_ = c->last;
  return Status::Ok();
}

Result<std::string> SnapshotReceiver::Finish() {
  if (!complete_) return Status::FailedPrecondition("snapshot incomplete");
  RETURN_IF_ERROR(file_->Sync());
  RETURN_IF_ERROR(file_->Close());
  file_.reset();
  const std::string final_path = SnapshotPath(dir_, id_);
  RETURN_IF_ERROR(fs_->Rename(PartPath(dir_, id_), final_path));
  RETURN_IF_ERROR(fs_->SyncDir(dir_));
  return final_path;
}

Status RemoveStaleParts(storage::FileSystem* fs, const std::string& dir) {
  Result<std::vector<std::string>> names = fs->ListDir(dir);
  if (!names.ok()) {
    return names.status().code() == StatusCode::kNotFound ? Status::Ok() : names.status();
  }
  bool removed = false;
  for (const std::string& n : *names) {
    if (n.size() > 5 && n.compare(n.size() - 5, 5, ".part") == 0) {
      RETURN_IF_ERROR(fs->RemoveFile(storage::JoinPath(dir, n)));
      removed = true;
    }
  }
  if (removed) RETURN_IF_ERROR(fs->SyncDir(dir));
  return Status::Ok();
}

// ---- install ----

Status ReadSnapshotFile(
    storage::FileSystem* fs, const std::string& path, SnapshotId* id,
    const std::function<Status(std::string_view key, std::string_view value)>& record) {
  ASSIGN_OR_RETURN(std::string data, fs->ReadFile(path));
  std::string_view rest(data);
  uint32_t seq = 0;
  uint64_t records = 0;
  uint64_t offset = 0;
  bool last = false;
  while (!rest.empty()) {
    if (last)
      return Status::Corruption(
          fmt::format("{} offset {}: data after the last chunk", path, offset));
    if (rest.size() < 4) {
      return Status::Corruption(fmt::format("{} offset {}: truncated chunk length", path, offset));
    }
    const uint32_t n = DecodeFixed32(rest.data());
    if (n > rest.size() - 4) {
      return Status::Corruption(
          fmt::format("{} offset {}: chunk of {} bytes runs past the end", path, offset, n));
    }
    Result<SnapshotChunk> c = DecodeChunk(rest.substr(4, n));
    if (!c.ok()) {
      return Status::Corruption(
          fmt::format("{} offset {}: {}", path, offset, c.status().message()));
    }
    if (seq == 0) *id = c->id;
    if (c->seq != seq || !(c->id == *id)) {
      return Status::Corruption(fmt::format("{} offset {}: chunk {} of group {} out of place", path,
                                            offset, c->seq, c->id.group));
    }
    for (const auto& [k, v] : c->records) {
      Status s = record(k, v);
      if (!s.ok()) {
        return Status(s.code(), fmt::format("{} offset {}: {}", path, offset, s.message()));
      }
    }
    records += c->records.size();
    last = c->last;
    if (last && c->total_records != records) {
      return Status::Corruption(fmt::format("{}: {} records but the snapshot declares {}", path,
                                            records, c->total_records));
    }
    ++seq;
    offset += 4 + n;
    rest.remove_prefix(4 + n);
  }
  if (!last) return Status::Corruption(fmt::format("{}: the last chunk is missing", path));
  return Status::Ok();
}

Status InstallSnapshot(Store* store, storage::FileSystem* fs, const std::string& path) {
  const uint64_t group = store->group();
  const std::string prefix = keys::GroupPrefix(group);
  std::unique_ptr<storage::EngineBatch> batch = store->engine()->NewBatch();
  batch->DeleteRange(prefix, keys::GroupPrefix(group + 1));
  SnapshotId id;
  uint64_t records = 0;
  RETURN_IF_ERROR(ReadSnapshotFile(fs, path, &id, [&](std::string_view k, std::string_view v) {
    if (k.compare(0, 8, prefix) != 0) return Status::Corruption("record outside the group");
    batch->Put(k, v);
    ++records;
    return Status::Ok();
  }));
  if (id.group != group) {
    return Status::Corruption(
        fmt::format("{}: a snapshot of group {} is not one of group {}", path, id.group, group));
  }
  RETURN_IF_ERROR(store->ReplaceWith(batch.get(), id.index));
  LOG_INFO("mvcc: installed snapshot group={} index={} term={} records={}", group, id.index,
           id.term, records);
  return Status::Ok();
}

std::string SavedSnapshotPadding(uint64_t image_bytes) {
  return std::string(
      (kSavedSnapshotAlign - image_bytes % kSavedSnapshotAlign) % kSavedSnapshotAlign, '\0');
}

Result<std::string> DecodeSavedSnapshot(std::string_view file) {
  if (file.size() < Sha256::kDigestBytes ||
      file.size() % kSavedSnapshotAlign != Sha256::kDigestBytes) {
    return Status::Corruption(
        fmt::format("snapshot file: {} bytes is not a saved snapshot (no checksum)", file.size()));
  }
  const std::string_view body = file.substr(0, file.size() - Sha256::kDigestBytes);
  if (Sha256Digest(body) != file.substr(body.size()))
    return Status::Corruption("snapshot file: SHA-256 checksum mismatch");
  // Walk the length-prefixed chunks; what follows the last one is padding.
  size_t offset = 0;
  while (offset + 4 <= body.size()) {
    const uint32_t n = DecodeFixed32(body.data() + offset);
    if (n == 0) break;
    if (n > body.size() - offset - 4)
      return Status::Corruption(
          fmt::format("snapshot file: chunk at {} runs past the end", offset));
    offset += 4 + n;
  }
  for (size_t i = offset; i < body.size(); ++i) {
    if (body[i] != '\0')
      return Status::Corruption(fmt::format("snapshot file: stray byte at {}", i));
  }
  if (offset == 0) return Status::Corruption("snapshot file: no image");
  return std::string(body.substr(0, offset));
}

}  // namespace conclave::mvcc
