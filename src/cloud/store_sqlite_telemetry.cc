// SqliteStore's telemetry half: exactly-once storage of uplink batches as chunks, chunk scans
// for queries, and retention. See store_sqlite.h for the connections and their mutexes.
#include <sqlite3.h>

#include "cloud/store_sqlite.h"

namespace verge::cloud {
namespace {

// sql::Stmt has no BLOB binding or reading; chunks need both, so the two statements that
// carry chunk bytes use the C API directly.
class BlobStmt {
 public:
  static Result<BlobStmt> Prepare(sql::Db& db, std::string_view sql) {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db.raw(), sql.data(), static_cast<int>(sql.size()), &s, nullptr) !=
        SQLITE_OK) {
      return Error(Code::kInternal, "cannot prepare statement: {}", sqlite3_errmsg(db.raw()));
    }
    return BlobStmt(db.raw(), s);
  }
  BlobStmt(BlobStmt&& o) noexcept : db_(o.db_), s_(o.s_) { o.s_ = nullptr; }
  BlobStmt(const BlobStmt&) = delete;
  ~BlobStmt() {
    if (s_) sqlite3_finalize(s_);
  }

  BlobStmt& Bind(int i, int64_t v) {
    sqlite3_bind_int64(s_, i, v);
    return *this;
  }
  // The bytes must outlive the next Step (no copy: chunks are the bulk of what is written).
  BlobStmt& BindText(int i, std::string_view v) {
    sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
    return *this;
  }
  BlobStmt& BindBlob(int i, std::string_view v) {
    sqlite3_bind_blob(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
    return *this;
  }
  Result<bool> Step() {
    int rc = sqlite3_step(s_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return Error((rc & 0xff) == SQLITE_FULL ? Code::kResourceExhausted : Code::kInternal,
                 "query failed: {}", sqlite3_errmsg(db_));
  }
  void Reset() { sqlite3_reset(s_); }
  int64_t Int(int col) const { return sqlite3_column_int64(s_, col); }
  std::string_view Bytes(int col) const {
    const void* p = sqlite3_column_blob(s_, col);
    int n = sqlite3_column_bytes(s_, col);
    return p ? std::string_view(static_cast<const char*>(p), static_cast<size_t>(n))
             : std::string_view();
  }

 private:
  BlobStmt(sqlite3* db, sqlite3_stmt* s) : db_(db), s_(s) {}
  sqlite3* db_;
  sqlite3_stmt* s_;
};

std::string SeriesKey(const std::string& device, const std::string& metric) {
  std::string k;
  k.reserve(device.size() + metric.size() + 1);
  k += device;
  k += '\0';
  k += metric;
  return k;
}

}  // namespace

Result<std::vector<bool>> SqliteStore::StoreUplink(std::span<const UplinkRecord* const> batches) {
  if (batches.empty()) return std::vector<bool>();
  std::lock_guard lock(WriterMu());
  return StoreUplinkLocked(batches);
}

Result<std::vector<bool>> SqliteStore::StoreUplinkLocked(
    std::span<const UplinkRecord* const> batches) {
  sql::Db& db = WriterDb();
  VERGE_ASSIGN_OR_RETURN(auto txn, sql::Txn::Begin(db));
  VERGE_ASSIGN_OR_RETURN(auto progress_get,
                         db.Prepare("SELECT max_seq, low_seq FROM uplink_progress WHERE node=?"));
  VERGE_ASSIGN_OR_RETURN(
      auto received_ins,
      db.Prepare("INSERT OR IGNORE INTO uplink_received (node, seq) VALUES (?,?)"));
  VERGE_ASSIGN_OR_RETURN(
      auto progress_put,
      db.Prepare("INSERT INTO uplink_progress (node, max_seq, low_seq) VALUES (?1, ?2, ?3) "
                 "ON CONFLICT (node) DO UPDATE SET max_seq = MAX(max_seq, ?2), "
                 "low_seq = MAX(low_seq, ?3)"));
  VERGE_ASSIGN_OR_RETURN(auto prune,
                         db.Prepare("DELETE FROM uplink_received WHERE node=? AND seq<?"));
  VERGE_ASSIGN_OR_RETURN(
      auto staged_ins,
      BlobStmt::Prepare(db,
                        "INSERT INTO telemetry_staged (node, seq, count, min_ts, max_ts, codec, "
                        "data) VALUES (?,?,?,?,?,?,?)"));
  VERGE_ASSIGN_OR_RETURN(
      auto alert_ins,
      db.Prepare("INSERT INTO alerts (node, batch_seq, idx, rule, ts_ms, severity, message, data, "
                 "received_ms) VALUES (?,?,?,?,?,?,?,?,?)"));

  VERGE_ASSIGN_OR_RETURN(
      auto event_ins,
      db.Prepare("INSERT INTO node_events (node, ts_ms, type, message) VALUES (?,?,?,?)"));

  std::vector<bool> stored;
  stored.reserve(batches.size());
  for (const UplinkRecord* b : batches) {
    auto seq = static_cast<int64_t>(b->seq);
    auto low = static_cast<int64_t>(b->low_seq);
    progress_get.Bind(1, b->node);
    VERGE_ASSIGN_OR_RETURN(bool has_progress, progress_get.Step());
    int64_t known_low = has_progress ? progress_get.Int(1) : 0;
    progress_get.Reset();
    // Below the node's low_seq means acknowledged before (or dropped by the node itself).
    if (seq < known_low) {
      stored.push_back(false);
      continue;
    }
    VERGE_RETURN_IF_ERROR(received_ins.Bind(1, b->node).Bind(2, seq).Run());
    received_ins.Reset();
    if (db.Changes() == 0) {
      stored.push_back(false);
      continue;
    }
    if (b->is_events) {
      for (const NodeEvent& e : b->events) {
        event_ins.Bind(1, b->node).Bind(2, e.ts_ms).Bind(3, e.type).Bind(4, e.message);
        VERGE_RETURN_IF_ERROR(event_ins.Run());
        event_ins.Reset();
      }
    } else if (b->is_alerts) {
      for (const AlertRecord& a : b->alerts) {
        alert_ins.Bind(1, b->node)
            .Bind(2, seq)
            .Bind(3, int64_t{a.index})
            .Bind(4, a.rule)
            .Bind(5, a.ts_ms)
            .Bind(6, a.severity)
            .Bind(7, a.message)
            .Bind(8, a.data_json)
            .Bind(9, a.received_ms);
        VERGE_RETURN_IF_ERROR(alert_ins.Run());
        alert_ins.Reset();
      }
    } else {
      staged_ins.BindText(1, b->node)
          .Bind(2, seq)
          .Bind(3, static_cast<int64_t>(b->count))
          .Bind(4, b->min_ts)
          .Bind(5, b->max_ts)
          .Bind(6, int64_t{b->codec})
          .BindBlob(7, b->data);
      VERGE_RETURN_IF_ERROR(staged_ins.Step().status());
      staged_ins.Reset();
    }
    VERGE_RETURN_IF_ERROR(progress_put.Bind(1, b->node).Bind(2, seq).Bind(3, low).Run());
    progress_put.Reset();
    if (low > known_low) {
      VERGE_RETURN_IF_ERROR(prune.Bind(1, b->node).Bind(2, low).Run());
      prune.Reset();
    }
    stored.push_back(true);
  }
  VERGE_RETURN_IF_ERROR(txn.Commit());
  return stored;
}

namespace {

constexpr const char* kStagedColumns = "id, node, seq, count, min_ts, max_ts, codec, data";

Store::StagedBatch ReadStaged(const BlobStmt& st) {
  Store::StagedBatch b;
  b.id = st.Int(0);
  b.record.node.assign(st.Bytes(1));
  b.record.seq = static_cast<uint64_t>(st.Int(2));
  b.record.count = static_cast<uint64_t>(st.Int(3));
  b.record.min_ts = st.Int(4);
  b.record.max_ts = st.Int(5);
  b.record.codec = static_cast<int>(st.Int(6));
  b.record.data.assign(st.Bytes(7));
  return b;
}

}  // namespace

Result<std::vector<Store::StagedBatch>> SqliteStore::ListStaged(size_t max_batches,
                                                                uint64_t max_readings, bool* more) {
  std::lock_guard lock(WriterMu());
  VERGE_ASSIGN_OR_RETURN(
      auto st,
      BlobStmt::Prepare(WriterDb(), fmt::format("SELECT {} FROM telemetry_staged ORDER BY id "
                                                "LIMIT ?",
                                                kStagedColumns)));
  max_batches = std::max<size_t>(max_batches, 1);
  st.Bind(1, static_cast<int64_t>(max_batches + 1));  // one more, to learn whether it exists
  std::vector<StagedBatch> out;
  uint64_t readings = 0;
  *more = false;
  for (;;) {
    VERGE_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    auto count = static_cast<uint64_t>(st.Int(3));
    if (out.size() == max_batches || (!out.empty() && readings + count > max_readings)) {
      *more = true;
      break;
    }
    readings += count;
    out.push_back(ReadStaged(st));
  }
  return out;
}

Status SqliteStore::ScanStaged(int64_t from_ns, int64_t to_ns, const std::string& node,
                               const std::function<bool(const StagedBatch&)>& fn) {
  std::lock_guard lock(ReaderMu());
  // Small by design (compaction keeps it so): a scan without an index is fine.
  VERGE_ASSIGN_OR_RETURN(
      auto st, BlobStmt::Prepare(ReaderDb(),
                                 fmt::format("SELECT {} FROM telemetry_staged WHERE min_ts <= ?1 "
                                             "AND max_ts >= ?2 {} ORDER BY id",
                                             kStagedColumns, node.empty() ? "" : "AND node = ?3")));
  st.Bind(1, to_ns).Bind(2, from_ns);
  if (!node.empty()) st.BindText(3, node);
  for (;;) {
    VERGE_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    if (!fn(ReadStaged(st))) break;
  }
  return Status::Ok();
}

Status SqliteStore::CommitCompaction(std::span<const int64_t> staged_ids,
                                     std::span<const ChunkRecord> chunks) {
  std::lock_guard lock(WriterMu());
  std::vector<std::string> new_series;
  Status st = CommitCompactionLocked(staged_ids, chunks, new_series);
  // The transaction rolled back: ids handed out inside it no longer exist.
  if (!st.ok()) {
    for (const auto& k : new_series) series_ids_.erase(k);
  }
  return st;
}

Status SqliteStore::CommitCompactionLocked(std::span<const int64_t> staged_ids,
                                           std::span<const ChunkRecord> chunks,
                                           std::vector<std::string>& new_series) {
  sql::Db& db = WriterDb();
  VERGE_ASSIGN_OR_RETURN(auto txn, sql::Txn::Begin(db));
  VERGE_ASSIGN_OR_RETURN(
      auto series_ins,
      db.Prepare("INSERT OR IGNORE INTO telemetry_series (node, device, metric) VALUES (?,?,?)"));
  VERGE_ASSIGN_OR_RETURN(auto series_get,
                         db.Prepare("SELECT id FROM telemetry_series WHERE device=? AND metric=?"));
  VERGE_ASSIGN_OR_RETURN(
      auto chunk_ins,
      BlobStmt::Prepare(db,
                        "INSERT INTO telemetry_chunks (series_id, node, start_ts, end_ts, count, "
                        "data) VALUES (?,?,?,?,?,?)"));
  VERGE_ASSIGN_OR_RETURN(auto staged_del, db.Prepare("DELETE FROM telemetry_staged WHERE id=?"));
  for (const auto& c : chunks) {
    std::string key = SeriesKey(c.device, c.metric);
    auto it = series_ids_.find(key);
    int64_t id = 0;
    if (it != series_ids_.end()) {
      id = it->second;
    } else {
      VERGE_RETURN_IF_ERROR(series_ins.Bind(1, c.node).Bind(2, c.device).Bind(3, c.metric).Run());
      series_ins.Reset();
      series_get.Bind(1, c.device).Bind(2, c.metric);
      VERGE_ASSIGN_OR_RETURN(bool row, series_get.Step());
      if (!row) return Error(Code::kInternal, "series {}/{} vanished", c.device, c.metric);
      id = series_get.Int(0);
      series_get.Reset();
      series_ids_.emplace(key, id);
      new_series.push_back(std::move(key));
    }
    chunk_ins.Bind(1, id)
        .BindText(2, c.node)
        .Bind(3, c.start_ts)
        .Bind(4, c.end_ts)
        .Bind(5, static_cast<int64_t>(c.count))
        .BindBlob(6, c.data);
    VERGE_RETURN_IF_ERROR(chunk_ins.Step().status());
    chunk_ins.Reset();
  }
  for (int64_t id : staged_ids) {
    VERGE_RETURN_IF_ERROR(staged_del.Bind(1, id).Run());
    staged_del.Reset();
  }
  return txn.Commit();
}

Result<uint64_t> SqliteStore::UplinkStoredSeq(const std::string& node) {
  std::lock_guard lock(ReaderMu());
  VERGE_ASSIGN_OR_RETURN(auto st,
                         ReaderDb().Prepare("SELECT max_seq FROM uplink_progress WHERE node=?"));
  st.Bind(1, node);
  VERGE_ASSIGN_OR_RETURN(bool row, st.Step());
  return row ? static_cast<uint64_t>(st.Int(0)) : uint64_t{0};
}

Status SqliteStore::ResetUplink(const std::string& node) {
  std::lock_guard lock(WriterMu());
  sql::Db& db = WriterDb();
  VERGE_ASSIGN_OR_RETURN(auto txn, sql::Txn::Begin(db));
  for (const char* q :
       {"DELETE FROM uplink_received WHERE node=?", "DELETE FROM uplink_progress WHERE node=?"}) {
    VERGE_ASSIGN_OR_RETURN(auto st, db.Prepare(q));
    VERGE_RETURN_IF_ERROR(st.Bind(1, node).Run());
  }
  return txn.Commit();
}

Result<std::vector<Store::SeriesInfo>> SqliteStore::FindSeries(const std::string& device,
                                                               const std::string& metric) {
  std::lock_guard lock(ReaderMu());
  VERGE_ASSIGN_OR_RETURN(
      auto st,
      ReaderDb().Prepare(metric.empty() ? "SELECT id, device, metric FROM telemetry_series "
                                          "WHERE device=? ORDER BY metric"
                                        : "SELECT id, device, metric FROM telemetry_series "
                                          "WHERE device=? AND metric=?"));
  st.Bind(1, device);
  if (!metric.empty()) st.Bind(2, metric);
  std::vector<SeriesInfo> out;
  for (;;) {
    VERGE_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.push_back(SeriesInfo{st.Int(0), st.Text(1), st.Text(2)});
  }
  return out;
}

Status SqliteStore::ScanChunks(int64_t series_id, const std::string& node, int64_t start_from,
                               int64_t start_to,
                               const std::function<bool(const StoredChunk&)>& fn) {
  std::lock_guard lock(ReaderMu());
  VERGE_ASSIGN_OR_RETURN(
      auto st,
      BlobStmt::Prepare(ReaderDb(),
                        node.empty() ? "SELECT rowid, node, start_ts, end_ts, count, data FROM "
                                       "telemetry_chunks WHERE series_id=?1 AND start_ts>=?2 AND "
                                       "start_ts<=?3 ORDER BY start_ts, rowid"
                                     : "SELECT rowid, node, start_ts, end_ts, count, data FROM "
                                       "telemetry_chunks WHERE series_id=?1 AND start_ts>=?2 AND "
                                       "start_ts<=?3 AND node=?4 ORDER BY start_ts, rowid"));
  st.Bind(1, series_id).Bind(2, start_from).Bind(3, start_to);
  if (!node.empty()) st.BindText(4, node);
  StoredChunk c;
  for (;;) {
    VERGE_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    c.id = st.Int(0);
    c.node.assign(st.Bytes(1));
    c.start_ts = st.Int(2);
    c.end_ts = st.Int(3);
    c.count = st.Int(4);
    c.data.assign(st.Bytes(5));
    if (!fn(c)) break;
  }
  return Status::Ok();
}

Result<int64_t> SqliteStore::PruneTelemetry(int64_t start_before_ns) {
  std::vector<int64_t> ids;
  {
    std::lock_guard lock(ReaderMu());
    VERGE_ASSIGN_OR_RETURN(auto st, ReaderDb().Prepare("SELECT id FROM telemetry_series"));
    for (;;) {
      VERGE_ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) break;
      ids.push_back(st.Int(0));
    }
  }
  int64_t removed = 0;
  {
    std::lock_guard lock(WriterMu());
    sql::Db& db = WriterDb();
    VERGE_ASSIGN_OR_RETURN(auto st, db.Prepare("DELETE FROM telemetry_staged WHERE max_ts<?"));
    VERGE_RETURN_IF_ERROR(st.Bind(1, start_before_ns).Run());
    removed += db.Changes();
  }
  // One short transaction per series, so that the writer's group commits interleave.
  for (int64_t id : ids) {
    std::lock_guard lock(WriterMu());
    sql::Db& db = WriterDb();
    VERGE_ASSIGN_OR_RETURN(
        auto st, db.Prepare("DELETE FROM telemetry_chunks WHERE series_id=? AND start_ts<?"));
    VERGE_RETURN_IF_ERROR(st.Bind(1, id).Bind(2, start_before_ns).Run());
    removed += db.Changes();
  }
  return removed;
}

Result<std::vector<AlertRecord>> SqliteStore::ListAlerts(const AlertQuery& q) {
  std::string where;
  auto add = [&](const char* cond) {
    where += where.empty() ? " WHERE " : " AND ";
    where += cond;
  };
  if (!q.rule.empty()) add("rule = ?1");
  if (!q.node.empty()) add("node = ?2");
  if (!q.severity.empty()) add("severity = ?3");
  if (q.since_ms > 0) add("ts_ms >= ?4");
  std::lock_guard lock(ReaderMu());
  VERGE_ASSIGN_OR_RETURN(
      auto st, ReaderDb().Prepare(fmt::format(
                   "SELECT id, node, batch_seq, idx, rule, ts_ms, severity, message, data, "
                   "received_ms FROM alerts{} ORDER BY ts_ms DESC, id DESC LIMIT ?5",
                   where)));
  if (!q.rule.empty()) st.Bind(1, q.rule);
  if (!q.node.empty()) st.Bind(2, q.node);
  if (!q.severity.empty()) st.Bind(3, q.severity);
  if (q.since_ms > 0) st.Bind(4, q.since_ms);
  st.Bind(5, int64_t{std::max(q.limit, 0)});
  std::vector<AlertRecord> out;
  for (;;) {
    VERGE_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    AlertRecord a;
    a.id = st.Int(0);
    a.node = st.Text(1);
    a.batch_seq = static_cast<uint64_t>(st.Int(2));
    a.index = static_cast<uint32_t>(st.Int(3));
    a.rule = st.Text(4);
    a.ts_ms = st.Int(5);
    a.severity = st.Text(6);
    a.message = st.Text(7);
    a.data_json = st.Text(8);
    a.received_ms = st.Int(9);
    out.push_back(std::move(a));
  }
  return out;
}

Result<int64_t> SqliteStore::PruneAlerts(int64_t older_than_ms) {
  std::lock_guard lock(WriterMu());
  sql::Db& db = WriterDb();
  VERGE_ASSIGN_OR_RETURN(auto st, db.Prepare("DELETE FROM alerts WHERE ts_ms < ?"));
  VERGE_RETURN_IF_ERROR(st.Bind(1, older_than_ms).Run());
  return db.Changes();
}

}  // namespace verge::cloud
