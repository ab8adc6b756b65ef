#include "node/data/buffer.h"

#include <algorithm>

#include "node/data/codec.h"

namespace verge::data {

namespace {

constexpr sql::Migration kMigrations[] = {
    {1, R"sql(
CREATE TABLE journal (
  seq INTEGER PRIMARY KEY,
  count INTEGER NOT NULL,
  data BLOB NOT NULL
);
CREATE TABLE batches (
  seq INTEGER PRIMARY KEY,
  priority INTEGER NOT NULL,
  count INTEGER NOT NULL,
  created_ms INTEGER NOT NULL,
  bytes INTEGER NOT NULL,
  data BLOB NOT NULL
);
CREATE INDEX batches_by_priority ON batches (priority, seq);
CREATE INDEX batches_by_age ON batches (created_ms);
CREATE TABLE state (
  key TEXT PRIMARY KEY,
  value INTEGER NOT NULL
);
)sql"},
    // Pending reads the highest priority, oldest batches: without an index in that order SQLite
    // sorted every waiting batch, blob included, on each call (a drain slowed with the backlog).
    {2, R"sql(
CREATE INDEX batches_to_send ON batches (priority DESC, seq ASC);
)sql"},
};

Status Put(sql::Db& db, std::string_view key, uint64_t value) {
  VERGE_ASSIGN_OR_RETURN(auto cached,
                         db.Cached("INSERT INTO state(key, value) VALUES (?, ?) "
                                   "ON CONFLICT(key) DO UPDATE SET value = excluded.value"));
  sql::Stmt& st = *cached;
  st.Bind(1, key).Bind(2, static_cast<int64_t>(value));
  return st.Run();
}

std::string CounterKey(const char* what, size_t priority) {
  return std::string(what) + "." + std::to_string(priority);
}

}  // namespace

Result<std::unique_ptr<UplinkBuffer>> UplinkBuffer::Open(const std::string& path,
                                                         BufferOptions options,
                                                         const Clock& clock) {
  VERGE_ASSIGN_OR_RETURN(auto db, sql::Db::Open(path));
  if (options.sync_full) VERGE_RETURN_IF_ERROR(db.Exec("PRAGMA synchronous=FULL"));
  VERGE_RETURN_IF_ERROR(db.Migrate(kMigrations));
  std::unique_ptr<UplinkBuffer> b(new UplinkBuffer(std::move(db), options, clock));
  VERGE_RETURN_IF_ERROR(b->Load());
  return b;
}

UplinkBuffer::UplinkBuffer(sql::Db db, BufferOptions options, const Clock& clock)
    : db_(std::move(db)), options_(options), clock_(clock) {}

Status UplinkBuffer::Load() {
  std::lock_guard lock(mu_);
  VERGE_ASSIGN_OR_RETURN(auto st, db_.Prepare("SELECT key, value FROM state"));
  for (;;) {
    VERGE_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    std::string key = st.Text(0);
    auto v = static_cast<uint64_t>(st.Int(1));
    if (key == "cursor_seq") cursor_.seq = v;
    if (key == "cursor_index") cursor_.index = static_cast<uint32_t>(v);
    if (key == "next_seq") next_seq_ = v;
    if (key == "acked_batches") stats_.acked_batches = v;
    if (key == "acked_readings") stats_.acked_readings = v;
    for (size_t p = 0; p < kPriorities; ++p) {
      auto& c = stats_.by_priority[p];
      if (key == CounterKey("evicted_batches", p)) c.evicted_batches = v;
      if (key == CounterKey("evicted_readings", p)) c.evicted_readings = v;
      if (key == CounterKey("expired_batches", p)) c.expired_batches = v;
      if (key == CounterKey("expired_readings", p)) c.expired_readings = v;
    }
  }
  VERGE_ASSIGN_OR_RETURN(auto j, db_.Prepare("SELECT count(*), coalesce(max(seq), 0), "
                                             "coalesce(sum(length(data)), 0) FROM journal"));
  VERGE_ASSIGN_OR_RETURN(bool jr, j.Step());
  if (jr) {
    stats_.journal_entries = static_cast<uint64_t>(j.Int(0));
    stats_.journal_bytes = static_cast<uint64_t>(j.Int(2));
    // Journal seqs must only grow: SQLite would reuse rowids once the table is empty, and an
    // entry numbered below the cursor would never be read.
    journal_next_ = std::max({journal_next_, static_cast<uint64_t>(j.Int(1)) + 1, cursor_.seq});
  }
  VERGE_ASSIGN_OR_RETURN(
      auto b, db_.Prepare("SELECT count(*), coalesce(sum(bytes), 0), coalesce(sum(count), 0), "
                          "coalesce(max(seq), 0) FROM batches"));
  VERGE_ASSIGN_OR_RETURN(bool br, b.Step());
  if (br) {
    stats_.batches = static_cast<uint64_t>(b.Int(0));
    stats_.batch_bytes = static_cast<uint64_t>(b.Int(1));
    stats_.batch_readings = static_cast<uint64_t>(b.Int(2));
    // next_seq is saved with every commit; this only guards against a hand-edited file.
    next_seq_ = std::max(next_seq_, static_cast<uint64_t>(b.Int(3)) + 1);
  }
  return Status::Ok();
}

Result<uint64_t> UplinkBuffer::Append(std::span<const Reading> readings) {
  std::string data = EncodeReadings(readings);
  std::lock_guard lock(mu_);
  if (stats_.journal_bytes >= options_.max_journal_bytes) {
    return Error(Code::kUnavailable,
                 "the node is behind: {} MiB of accepted readings wait to be processed (bound {} "
                 "MiB); retry later",
                 stats_.journal_bytes >> 20, options_.max_journal_bytes >> 20);
  }
  VERGE_ASSIGN_OR_RETURN(auto cached,
                         db_.Cached("INSERT INTO journal(seq, count, data) VALUES (?, ?, ?)"));
  sql::Stmt& st = *cached;
  uint64_t seq = journal_next_;
  st.Bind(1, static_cast<int64_t>(seq))
      .Bind(2, static_cast<int64_t>(readings.size()))
      .BindBlob(3, data);
  VERGE_RETURN_IF_ERROR(st.Run());
  ++journal_next_;
  ++stats_.journal_entries;
  stats_.journal_bytes += data.size();
  return seq;
}

Result<std::vector<JournalEntry>> UplinkBuffer::ReadJournal(const Cursor& from,
                                                            size_t max_entries) {
  std::lock_guard lock(mu_);
  VERGE_ASSIGN_OR_RETURN(
      auto cached, db_.Cached("SELECT seq, data FROM journal WHERE seq >= ? ORDER BY seq LIMIT ?"));
  sql::Stmt& st = *cached;
  st.Bind(1, static_cast<int64_t>(from.seq)).Bind(2, static_cast<int64_t>(max_entries));
  std::vector<JournalEntry> out;
  for (;;) {
    VERGE_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    JournalEntry e;
    e.seq = static_cast<uint64_t>(st.Int(0));
    auto decoded = DecodeReadings(st.BlobView(1));
    if (!decoded.ok())
      return Error(Code::kDataLoss, "journal entry {} is damaged: {}", e.seq,
                   decoded.status().message());
    e.readings = std::move(*decoded);
    out.push_back(std::move(e));
  }
  return out;
}

Status UplinkBuffer::Commit(std::vector<StoredBatch>& batches, const Cursor& cursor) {
  std::lock_guard lock(mu_);
  return CommitLocked(batches, cursor);
}

Status UplinkBuffer::AddBatches(std::vector<StoredBatch>& batches) {
  std::lock_guard lock(mu_);
  // The cursor as it stands under the lock: the pipeline's own commits move it.
  Cursor cursor = cursor_;
  return CommitLocked(batches, cursor);
}

Status UplinkBuffer::CommitLocked(std::vector<StoredBatch>& batches, const Cursor& cursor) {
  VERGE_ASSIGN_OR_RETURN(auto txn, sql::Txn::Begin(db_));
  uint64_t seq = next_seq_;
  uint64_t bytes = 0, readings = 0;
  {
    VERGE_ASSIGN_OR_RETURN(
        auto cached, db_.Cached("INSERT INTO batches(seq, priority, count, created_ms, bytes, "
                                "data) VALUES (?, ?, ?, ?, ?, ?)"));
    sql::Stmt& ins = *cached;
    for (auto& b : batches) {
      b.seq = seq++;
      ins.Bind(1, static_cast<int64_t>(b.seq))
          .Bind(2, static_cast<int64_t>(b.priority))
          .Bind(3, static_cast<int64_t>(b.count))
          .Bind(4, b.created_ms)
          .Bind(5, static_cast<int64_t>(b.data.size()))
          .BindBlob(6, b.data);
      VERGE_RETURN_IF_ERROR(ins.Run());
      ins.Reset();
      bytes += b.data.size();
      readings += b.count;
    }
  }
  VERGE_ASSIGN_OR_RETURN(auto cached_del,
                         db_.Cached("DELETE FROM journal WHERE seq < ? RETURNING length(data)"));
  sql::Stmt& del = *cached_del;
  del.Bind(1, static_cast<int64_t>(cursor.seq));
  uint64_t deleted = 0, deleted_bytes = 0;
  for (;;) {
    VERGE_ASSIGN_OR_RETURN(bool row, del.Step());
    if (!row) break;
    ++deleted;
    deleted_bytes += static_cast<uint64_t>(del.Int(0));
  }
  VERGE_RETURN_IF_ERROR(Put(db_, "cursor_seq", cursor.seq));
  VERGE_RETURN_IF_ERROR(Put(db_, "cursor_index", cursor.index));
  VERGE_RETURN_IF_ERROR(Put(db_, "next_seq", seq));
  BufferStats before = stats_;
  stats_.batches += batches.size();
  stats_.batch_bytes += bytes;
  stats_.batch_readings += readings;
  if (auto st = EvictLocked(); !st.ok()) {
    stats_ = before;
    return st;
  }
  if (auto st = txn.Commit(); !st.ok()) {
    stats_ = before;
    return st;
  }
  next_seq_ = seq;
  cursor_ = cursor;
  stats_.journal_entries -= std::min(stats_.journal_entries, deleted);
  stats_.journal_bytes -= std::min(stats_.journal_bytes, deleted_bytes);
  return Status::Ok();
}

Status UplinkBuffer::EvictLocked() {
  if (stats_.batch_bytes <= options_.max_bytes) return Status::Ok();
  VERGE_ASSIGN_OR_RETURN(auto pick, db_.Prepare("SELECT seq, priority, count, bytes FROM batches "
                                                "ORDER BY priority ASC, seq ASC LIMIT 256"));
  VERGE_ASSIGN_OR_RETURN(auto del, db_.Prepare("DELETE FROM batches WHERE seq = ?"));
  while (stats_.batch_bytes > options_.max_bytes) {
    bool any = false;
    for (;;) {
      VERGE_ASSIGN_OR_RETURN(bool row, pick.Step());
      if (!row || stats_.batch_bytes <= options_.max_bytes) break;
      any = true;
      auto p = static_cast<size_t>(pick.Int(1));
      auto count = static_cast<uint64_t>(pick.Int(2));
      auto bytes = static_cast<uint64_t>(pick.Int(3));
      del.Bind(1, pick.Int(0));
      VERGE_RETURN_IF_ERROR(del.Run());
      del.Reset();
      auto& c = stats_.by_priority[std::min(p, kPriorities - 1)];
      ++c.evicted_batches;
      c.evicted_readings += count;
      --stats_.batches;
      stats_.batch_bytes -= std::min(stats_.batch_bytes, bytes);
      stats_.batch_readings -= std::min(stats_.batch_readings, count);
    }
    pick.Reset();
    if (!any) break;
  }
  return SaveCountersLocked();
}

Status UplinkBuffer::SaveCountersLocked() {
  for (size_t p = 0; p < kPriorities; ++p) {
    const auto& c = stats_.by_priority[p];
    VERGE_RETURN_IF_ERROR(Put(db_, CounterKey("evicted_batches", p), c.evicted_batches));
    VERGE_RETURN_IF_ERROR(Put(db_, CounterKey("evicted_readings", p), c.evicted_readings));
    VERGE_RETURN_IF_ERROR(Put(db_, CounterKey("expired_batches", p), c.expired_batches));
    VERGE_RETURN_IF_ERROR(Put(db_, CounterKey("expired_readings", p), c.expired_readings));
  }
  VERGE_RETURN_IF_ERROR(Put(db_, "acked_batches", stats_.acked_batches));
  return Put(db_, "acked_readings", stats_.acked_readings);
}

Cursor UplinkBuffer::cursor() const {
  std::lock_guard lock(mu_);
  return cursor_;
}

Result<std::vector<StoredBatch>> UplinkBuffer::Pending(std::span<const uint64_t> exclude,
                                                       size_t max) {
  std::lock_guard lock(mu_);
  VERGE_ASSIGN_OR_RETURN(auto cached,
                         db_.Cached("SELECT seq, priority, count, created_ms, data FROM batches "
                                    "ORDER BY priority DESC, seq ASC LIMIT ?"));
  sql::Stmt& st = *cached;
  st.Bind(1, static_cast<int64_t>(max + exclude.size()));
  std::vector<StoredBatch> out;
  while (out.size() < max) {
    VERGE_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    auto seq = static_cast<uint64_t>(st.Int(0));
    if (std::find(exclude.begin(), exclude.end(), seq) != exclude.end()) continue;
    StoredBatch b;
    b.seq = seq;
    b.priority = static_cast<v1::Priority>(st.Int(1));
    b.count = static_cast<uint32_t>(st.Int(2));
    b.created_ms = st.Int(3);
    b.data = std::string(st.BlobView(4));
    out.push_back(std::move(b));
  }
  return out;
}

Status UplinkBuffer::Ack(std::span<const uint64_t> seqs) {
  if (seqs.empty()) return Status::Ok();
  std::lock_guard lock(mu_);
  VERGE_ASSIGN_OR_RETURN(auto txn, sql::Txn::Begin(db_));
  VERGE_ASSIGN_OR_RETURN(auto cached,
                         db_.Cached("DELETE FROM batches WHERE seq = ? RETURNING count, bytes"));
  sql::Stmt& del = *cached;
  BufferStats before = stats_;
  for (uint64_t seq : seqs) {
    del.Bind(1, static_cast<int64_t>(seq));
    VERGE_ASSIGN_OR_RETURN(bool row, del.Step());
    if (row) {
      auto count = static_cast<uint64_t>(del.Int(0));
      auto bytes = static_cast<uint64_t>(del.Int(1));
      ++stats_.acked_batches;
      stats_.acked_readings += count;
      --stats_.batches;
      stats_.batch_bytes -= std::min(stats_.batch_bytes, bytes);
      stats_.batch_readings -= std::min(stats_.batch_readings, count);
      VERGE_ASSIGN_OR_RETURN(bool more, del.Step());
      (void)more;
    }
    del.Reset();
  }
  Status st = Put(db_, "acked_batches", stats_.acked_batches);
  if (st.ok()) st = Put(db_, "acked_readings", stats_.acked_readings);
  if (st.ok()) st = txn.Commit();
  if (!st.ok()) stats_ = before;
  return st;
}

Status UplinkBuffer::Expire() {
  std::lock_guard lock(mu_);
  int64_t cutoff = clock_.WallMs() - options_.ttl.count();
  VERGE_ASSIGN_OR_RETURN(auto txn, sql::Txn::Begin(db_));
  VERGE_ASSIGN_OR_RETURN(auto sum,
                         db_.Prepare("SELECT priority, count(*), sum(count), sum(bytes) "
                                     "FROM batches WHERE created_ms < ? GROUP BY priority"));
  sum.Bind(1, cutoff);
  BufferStats before = stats_;
  bool any = false;
  for (;;) {
    VERGE_ASSIGN_OR_RETURN(bool row, sum.Step());
    if (!row) break;
    any = true;
    auto p = static_cast<size_t>(sum.Int(0));
    auto n = static_cast<uint64_t>(sum.Int(1));
    auto readings = static_cast<uint64_t>(sum.Int(2));
    auto bytes = static_cast<uint64_t>(sum.Int(3));
    auto& c = stats_.by_priority[std::min(p, kPriorities - 1)];
    c.expired_batches += n;
    c.expired_readings += readings;
    stats_.batches -= std::min(stats_.batches, n);
    stats_.batch_readings -= std::min(stats_.batch_readings, readings);
    stats_.batch_bytes -= std::min(stats_.batch_bytes, bytes);
  }
  if (!any) return Status::Ok();
  VERGE_ASSIGN_OR_RETURN(auto del, db_.Prepare("DELETE FROM batches WHERE created_ms < ?"));
  del.Bind(1, cutoff);
  Status st = del.Run();
  if (st.ok()) st = SaveCountersLocked();
  if (st.ok()) st = txn.Commit();
  if (!st.ok()) stats_ = before;
  return st;
}

uint64_t UplinkBuffer::low_seq() const {
  std::lock_guard lock(mu_);
  auto st = db_.Prepare("SELECT min(seq) FROM batches");
  if (st.ok()) {
    auto row = st->Step();
    if (row.ok() && *row && !st->IsNull(0)) return static_cast<uint64_t>(st->Int(0));
  }
  return next_seq_;
}

uint64_t UplinkBuffer::next_seq() const {
  std::lock_guard lock(mu_);
  return next_seq_;
}

BufferStats UplinkBuffer::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

}  // namespace verge::data
