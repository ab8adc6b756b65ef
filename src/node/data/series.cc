#include "node/data/series.h"

#include <algorithm>
#include <cmath>
#include <optional>

namespace verge::data {

namespace {

constexpr sql::Migration kMigrations[] = {
    {1, R"sql(
CREATE TABLE series (
  id INTEGER PRIMARY KEY,
  device TEXT NOT NULL,
  metric TEXT NOT NULL,
  UNIQUE (device, metric)
);
CREATE TABLE points (
  series INTEGER NOT NULL,
  ts INTEGER NOT NULL,
  value REAL NOT NULL,
  PRIMARY KEY (series, ts)
) WITHOUT ROWID;
)sql"},
    // start_ts: the hour-grid cell (ChunkBucket) every reading of the chunk falls in.
    {2, R"sql(
CREATE TABLE chunks (
  id INTEGER PRIMARY KEY,
  series INTEGER NOT NULL,
  start_ts INTEGER NOT NULL,
  min_ts INTEGER NOT NULL,
  max_ts INTEGER NOT NULL,
  count INTEGER NOT NULL,
  data BLOB NOT NULL
);
CREATE INDEX chunks_by_series ON chunks(series, start_ts);
)sql"},
};

// Past this many open chunks the cache is dropped (about 4 MiB at full chunks).
constexpr size_t kMaxOpenChunks = 1024;

// Adds a reading to sorted, unique ts/values, unless its timestamp is already there.
bool AddSorted(std::vector<int64_t>& ts, std::vector<double>& values, int64_t t, double v) {
  if (ts.empty() || t > ts.back()) {
    ts.push_back(t);
    values.push_back(v);
    return true;
  }
  auto it = std::lower_bound(ts.begin(), ts.end(), t);
  if (it != ts.end() && *it == t) return false;
  auto at = it - ts.begin();
  ts.insert(it, t);
  values.insert(values.begin() + at, v);
  return true;
}

// Readings of one hour cell gathered from its chunks in the order they were stored: sorted
// by time, keeping the first stored of each timestamp.
struct Cell {
  std::vector<int64_t> ts;
  std::vector<double> values;
  std::vector<size_t> order;

  void Clear() {
    ts.clear();
    values.clear();
  }
  // Calls fn(ts, value) in time order, each timestamp once. False if fn stopped it.
  template <typename Fn>
  bool Visit(Fn&& fn) {
    order.resize(ts.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    if (!std::is_sorted(ts.begin(), ts.end())) {
      std::stable_sort(order.begin(), order.end(),
                       [&](size_t a, size_t b) { return ts[a] < ts[b]; });
    }
    std::optional<int64_t> last;
    for (size_t i : order) {
      if (last && *last == ts[i]) continue;
      last = ts[i];
      if (!fn(ts[i], values[i])) return false;
    }
    return true;
  }
};

// Turns one series' points, in time order, into output points: raw, or aggregated into
// epoch-aligned buckets of q.step_ns.
class Sink {
 public:
  Sink(const SeriesQuery& q, const std::string& metric, std::vector<Reading>& out)
      : q_(q), metric_(metric), out_(out), folder_(q.agg, q.step_ns) {}
  // False once the limit is reached.
  bool Add(int64_t ts, double v) {
    if (ts < q_.from_ns || ts > q_.to_ns) return true;
    if (q_.agg == Aggregate::kNone) return Emit(ts, v);
    auto done = folder_.Add(ts, v);
    return !done || Emit(done->start, done->value);
  }
  bool Flush() {
    auto done = folder_.Finish();
    return !done || Emit(done->start, done->value);
  }

 private:
  bool Emit(int64_t ts, double v) {
    if (out_.size() >= q_.limit) return false;
    out_.push_back(Reading{q_.device, metric_, ts, v});
    return out_.size() < q_.limit;
  }
  const SeriesQuery& q_;
  const std::string& metric_;
  std::vector<Reading>& out_;
  BucketFolder folder_;
};

// Moves a store that still has the one-row-per-reading table into chunks.
Status ConvertPoints(sql::Db& db) {
  {
    VERGE_ASSIGN_OR_RETURN(auto has, db.Prepare("SELECT 1 FROM sqlite_master WHERE "
                                                "type = 'table' AND name = 'points'"));
    VERGE_ASSIGN_OR_RETURN(bool old, has.Step());
    if (!old) return Status::Ok();
  }
  VERGE_ASSIGN_OR_RETURN(auto txn, sql::Txn::Begin(db));
  VERGE_ASSIGN_OR_RETURN(auto sel, db.Prepare("SELECT series, ts, value FROM points "
                                              "ORDER BY series, ts"));
  VERGE_ASSIGN_OR_RETURN(auto ins, db.Prepare("INSERT INTO chunks(series, start_ts, min_ts, "
                                              "max_ts, count, data) VALUES (?, ?, ?, ?, ?, ?)"));
  int64_t series = 0, start = 0;
  std::vector<int64_t> ts;
  std::vector<double> values;
  auto flush = [&]() -> Status {
    if (ts.empty()) return Status::Ok();
    std::string data = EncodeChunk(ts, values);
    ins.Bind(1, series).Bind(2, start).Bind(3, ts.front()).Bind(4, ts.back());
    ins.Bind(5, static_cast<int64_t>(ts.size())).BindBlob(6, data);
    VERGE_RETURN_IF_ERROR(ins.Run());
    ins.Reset();
    ts.clear();
    values.clear();
    return Status::Ok();
  };
  for (;;) {
    VERGE_ASSIGN_OR_RETURN(bool row, sel.Step());
    if (!row) break;
    int64_t s = sel.Int(0), t = sel.Int(1);
    if (s != series || ChunkBucket(t) != start || ts.size() >= kSeriesChunkReadings) {
      VERGE_RETURN_IF_ERROR(flush());
      series = s;
      start = ChunkBucket(t);
    }
    ts.push_back(t);
    values.push_back(sel.Double(2));
  }
  VERGE_RETURN_IF_ERROR(flush());
  sel.Reset();
  VERGE_RETURN_IF_ERROR(db.Exec("DROP TABLE points"));
  return txn.Commit();
}

}  // namespace

Result<std::unique_ptr<SeriesStore>> SeriesStore::Open(const std::string& path) {
  VERGE_ASSIGN_OR_RETURN(auto writer, sql::Db::Open(path));
  VERGE_RETURN_IF_ERROR(writer.Migrate(kMigrations));
  VERGE_RETURN_IF_ERROR(ConvertPoints(writer));
  VERGE_ASSIGN_OR_RETURN(auto reader, sql::Db::Open(path));
  return std::unique_ptr<SeriesStore>(new SeriesStore(std::move(writer), std::move(reader)));
}

Result<int64_t> SeriesStore::SeriesIdLocked(const std::string& device, const std::string& metric) {
  key_.assign(device).push_back('\0');
  key_.append(metric);
  if (auto it = ids_.find(key_); it != ids_.end()) return it->second;
  VERGE_ASSIGN_OR_RETURN(auto ins, writer_.Prepare("INSERT INTO series(device, metric) VALUES "
                                                   "(?, ?) ON CONFLICT DO NOTHING"));
  ins.Bind(1, device).Bind(2, metric);
  VERGE_RETURN_IF_ERROR(ins.Run());
  VERGE_ASSIGN_OR_RETURN(auto sel,
                         writer_.Prepare("SELECT id FROM series WHERE device = ? AND metric = ?"));
  sel.Bind(1, device).Bind(2, metric);
  VERGE_ASSIGN_OR_RETURN(bool row, sel.Step());
  if (!row) return Error(Code::kInternal, "series {}/{} vanished", device, metric);
  int64_t id = sel.Int(0);
  // Bounded by the number of series the node has seen; a node serves its own devices.
  ids_.emplace(key_, id);
  return id;
}

Result<SeriesStore::OpenChunk*> SeriesStore::OpenChunkLocked(int64_t series, int64_t start) {
  ChunkKey key{series, start};
  if (auto it = open_.find(key); it != open_.end()) return &it->second;
  OpenChunk c;
  // The newest chunk of the cell takes more readings while it has room.
  VERGE_ASSIGN_OR_RETURN(auto cached, writer_.Cached("SELECT id, count, data FROM chunks WHERE "
                                                     "series = ? AND start_ts = ? "
                                                     "ORDER BY id DESC LIMIT 1"));
  sql::Stmt& sel = *cached;
  sel.Bind(1, series).Bind(2, start);
  VERGE_ASSIGN_OR_RETURN(bool row, sel.Step());
  if (row && static_cast<size_t>(sel.Int(1)) < kSeriesChunkReadings) {
    VERGE_RETURN_IF_ERROR(DecodeChunk(sel.BlobView(2), c.ts, c.values));
    c.row = sel.Int(0);
  }
  return &open_.emplace(key, std::move(c)).first->second;
}

Status SeriesStore::WriteChunkLocked(int64_t series, int64_t start, OpenChunk& c,
                                     ChunkEncoding encoding) {
  std::string data = EncodeChunk(c.ts, c.values, encoding);
  auto n = static_cast<int64_t>(c.ts.size());
  if (c.row == 0) {
    VERGE_ASSIGN_OR_RETURN(auto cached,
                           writer_.Cached("INSERT INTO chunks(series, start_ts, min_ts, max_ts, "
                                          "count, data) VALUES (?, ?, ?, ?, ?, ?)"));
    sql::Stmt& ins = *cached;
    ins.Bind(1, series).Bind(2, start).Bind(3, c.ts.front()).Bind(4, c.ts.back());
    ins.Bind(5, n).BindBlob(6, data);
    VERGE_RETURN_IF_ERROR(ins.Run());
    c.row = sqlite3_last_insert_rowid(writer_.raw());
  } else {
    VERGE_ASSIGN_OR_RETURN(auto cached, writer_.Cached("UPDATE chunks SET min_ts = ?, "
                                                       "max_ts = ?, count = ?, data = ? "
                                                       "WHERE id = ?"));
    sql::Stmt& up = *cached;
    up.Bind(1, c.ts.front()).Bind(2, c.ts.back()).Bind(3, n).BindBlob(4, data).Bind(5, c.row);
    VERGE_RETURN_IF_ERROR(up.Run());
  }
  c.dirty = false;
  return Status::Ok();
}

Status SeriesStore::Insert(std::span<const Reading> readings) {
  if (readings.empty()) return Status::Ok();
  std::lock_guard lock(write_mu_);
  Status st = InsertLocked(readings);
  // The transaction rolled back: chunks in memory may hold what the rows do not.
  if (!st.ok() || open_.size() > kMaxOpenChunks) {
    open_.clear();
    newest_open_.clear();
  }
  return st;
}

Status SeriesStore::InsertLocked(std::span<const Reading> readings) {
  VERGE_ASSIGN_OR_RETURN(auto txn, sql::Txn::Begin(writer_));
  const Reading* prev = nullptr;
  int64_t id = 0, start = 0;
  OpenChunk* c = nullptr;
  std::vector<std::pair<ChunkKey, OpenChunk*>> dirty;
  // Writes a chunk in its final, compressed form and forgets it: it is full, or its series has
  // moved on to a later hour.
  auto close = [&](const ChunkKey& key, OpenChunk& chunk) -> Status {
    VERGE_RETURN_IF_ERROR(WriteChunkLocked(key.series, key.start, chunk, ChunkEncoding::kSmall));
    std::erase_if(dirty, [&](const auto& d) { return d.second == &chunk; });
    open_.erase(key);
    return Status::Ok();
  };
  for (const Reading& r : readings) {
    if (!prev || prev->device != r.device || prev->metric != r.metric) {
      VERGE_ASSIGN_OR_RETURN(id, SeriesIdLocked(r.device, r.metric));
      c = nullptr;
    }
    prev = &r;
    if (!c || ChunkBucket(r.ts_ns) != start) {
      start = ChunkBucket(r.ts_ns);
      auto [newest, first] = newest_open_.try_emplace(id, start);
      if (!first && newest->second < start) {
        if (auto it = open_.find(ChunkKey{id, newest->second}); it != open_.end())
          VERGE_RETURN_IF_ERROR(close(it->first, it->second));
        newest->second = start;
      }
      VERGE_ASSIGN_OR_RETURN(c, OpenChunkLocked(id, start));
    }
    if (!AddSorted(c->ts, c->values, r.ts_ns, r.value)) continue;
    if (!c->dirty) {
      c->dirty = true;
      dirty.push_back({ChunkKey{id, start}, c});
    }
    if (c->ts.size() >= kSeriesChunkReadings) {
      // The cell's next reading starts a new chunk.
      VERGE_RETURN_IF_ERROR(close(ChunkKey{id, start}, *c));
      c = nullptr;
    }
  }
  // Chunks that may take more readings are written as they are, to be rewritten cheaply.
  for (auto& [key, chunk] : dirty)
    VERGE_RETURN_IF_ERROR(WriteChunkLocked(key.series, key.start, *chunk, ChunkEncoding::kFast));
  return txn.Commit();
}

bool SeriesStore::Contains(const Reading& r) {
  std::lock_guard lock(read_mu_);
  auto st = reader_.Prepare(
      "SELECT chunks.data FROM chunks JOIN series ON series.id = chunks.series "
      "WHERE series.device = ? AND series.metric = ? AND chunks.start_ts = ? "
      "AND chunks.min_ts <= ?4 AND chunks.max_ts >= ?4");
  if (!st.ok()) return false;
  st->Bind(1, r.device).Bind(2, r.metric).Bind(3, ChunkBucket(r.ts_ns)).Bind(4, r.ts_ns);
  std::vector<int64_t> ts;
  std::vector<double> values;
  for (;;) {
    auto row = st->Step();
    if (!row.ok() || !*row) return false;
    ts.clear();
    values.clear();
    if (!DecodeChunk(st->BlobView(0), ts, values).ok()) continue;
    if (std::find(ts.begin(), ts.end(), r.ts_ns) != ts.end()) return true;
  }
}

Result<std::vector<Reading>> SeriesStore::Query(const SeriesQuery& q) {
  if (q.agg != Aggregate::kNone && q.step_ns <= 0)
    return Error(Code::kInvalidArgument, "an aggregate needs a step");
  if (q.from_ns > q.to_ns) return Error(Code::kInvalidArgument, "from is after to");
  std::lock_guard lock(read_mu_);
  std::vector<std::pair<int64_t, std::string>> series;  // (id, metric), by metric
  {
    VERGE_ASSIGN_OR_RETURN(auto st, reader_.Prepare("SELECT id, metric FROM series WHERE "
                                                    "device = ?1 AND (?2 = '' OR metric = ?2) "
                                                    "ORDER BY metric"));
    st.Bind(1, q.device).Bind(2, q.metric);
    for (;;) {
      VERGE_ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) break;
      series.emplace_back(st.Int(0), st.Text(1));
    }
  }
  VERGE_ASSIGN_OR_RETURN(auto st, reader_.Prepare("SELECT start_ts, data FROM chunks WHERE "
                                                  "series = ?1 AND start_ts >= ?2 AND "
                                                  "start_ts <= ?3 AND max_ts >= ?4 AND "
                                                  "min_ts <= ?3 ORDER BY start_ts, id"));
  std::vector<Reading> out;
  Cell cell;
  for (const auto& [id, metric] : series) {
    Sink sink(q, metric, out);
    st.Reset();
    st.Bind(1, id).Bind(2, ChunkBucket(q.from_ns)).Bind(3, q.to_ns).Bind(4, q.from_ns);
    std::optional<int64_t> cell_start;
    bool more = true;
    cell.Clear();
    for (;;) {
      VERGE_ASSIGN_OR_RETURN(bool row, st.Step());
      // Cells never overlap in time: one is final once the next one's chunks begin.
      if (!row || (cell_start && st.Int(0) != *cell_start)) {
        more = cell.Visit([&](int64_t t, double v) { return sink.Add(t, v); });
        cell.Clear();
        if (!row || !more) break;
      }
      cell_start = st.Int(0);
      VERGE_RETURN_IF_ERROR(DecodeChunk(st.BlobView(1), cell.ts, cell.values));
    }
    if (!more || !sink.Flush()) break;
  }
  return out;
}

Result<uint64_t> SeriesStore::Prune(int64_t before_ns) {
  std::lock_guard lock(write_mu_);
  open_.clear();
  newest_open_.clear();
  VERGE_ASSIGN_OR_RETURN(auto ids, writer_.Prepare("SELECT id FROM series"));
  std::vector<int64_t> all;
  for (;;) {
    VERGE_ASSIGN_OR_RETURN(bool row, ids.Step());
    if (!row) break;
    all.push_back(ids.Int(0));
  }
  VERGE_ASSIGN_OR_RETURN(auto sel, writer_.Prepare("SELECT id, max_ts, count, data FROM chunks "
                                                   "WHERE series = ? AND start_ts <= ? AND "
                                                   "min_ts < ?"));
  VERGE_ASSIGN_OR_RETURN(auto del, writer_.Prepare("DELETE FROM chunks WHERE id = ?"));
  VERGE_ASSIGN_OR_RETURN(auto up, writer_.Prepare("UPDATE chunks SET min_ts = ?, count = ?, "
                                                  "data = ? WHERE id = ?"));
  uint64_t n = 0;
  std::vector<int64_t> ts;
  std::vector<double> values;
  // One series per transaction keeps each write lock short next to ingest.
  for (int64_t id : all) {
    VERGE_ASSIGN_OR_RETURN(auto txn, sql::Txn::Begin(writer_));
    std::vector<int64_t> gone;
    struct Cut {
      int64_t row, min_ts, count;
      std::string data;
    };
    std::vector<Cut> cut;
    sel.Reset();
    sel.Bind(1, id).Bind(2, ChunkBucket(before_ns)).Bind(3, before_ns);
    for (;;) {
      VERGE_ASSIGN_OR_RETURN(bool row, sel.Step());
      if (!row) break;
      if (sel.Int(1) < before_ns) {
        gone.push_back(sel.Int(0));
        n += static_cast<uint64_t>(sel.Int(2));
        continue;
      }
      // The chunk straddles the cut: keep its readings from before_ns on.
      ts.clear();
      values.clear();
      VERGE_RETURN_IF_ERROR(DecodeChunk(sel.BlobView(3), ts, values));
      auto keep = std::lower_bound(ts.begin(), ts.end(), before_ns) - ts.begin();
      n += static_cast<uint64_t>(keep);
      auto kt = std::span<const int64_t>(ts).subspan(static_cast<size_t>(keep));
      auto kv = std::span<const double>(values).subspan(static_cast<size_t>(keep));
      cut.push_back(
          Cut{sel.Int(0), kt.front(), static_cast<int64_t>(kt.size()), EncodeChunk(kt, kv)});
    }
    sel.Reset();
    for (int64_t row : gone) {
      del.Bind(1, row);
      VERGE_RETURN_IF_ERROR(del.Run());
      del.Reset();
    }
    for (const Cut& c : cut) {
      up.Bind(1, c.min_ts).Bind(2, c.count).BindBlob(3, c.data).Bind(4, c.row);
      VERGE_RETURN_IF_ERROR(up.Run());
      up.Reset();
    }
    VERGE_RETURN_IF_ERROR(txn.Commit());
  }
  return n;
}

}  // namespace verge::data
