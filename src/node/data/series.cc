#include "node/data/series.h"

#include <cmath>

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
};

std::string Key(const std::string& device, const std::string& metric) {
  std::string k;
  k.reserve(device.size() + metric.size() + 1);
  k.append(device).push_back('\0');
  k.append(metric);
  return k;
}

}  // namespace

Result<Agg> ParseAgg(std::string_view s) {
  if (s.empty() || s == "none") return Agg::kNone;
  if (s == "avg" || s == "mean") return Agg::kAvg;
  if (s == "min") return Agg::kMin;
  if (s == "max") return Agg::kMax;
  if (s == "sum") return Agg::kSum;
  if (s == "count") return Agg::kCount;
  return Error(Code::kInvalidArgument, "unknown aggregate '{}' (avg, min, max, sum, count)", s);
}

Result<std::unique_ptr<SeriesStore>> SeriesStore::Open(const std::string& path) {
  VERGE_ASSIGN_OR_RETURN(auto writer, sql::Db::Open(path));
  VERGE_RETURN_IF_ERROR(writer.Migrate(kMigrations));
  VERGE_ASSIGN_OR_RETURN(auto reader, sql::Db::Open(path));
  return std::unique_ptr<SeriesStore>(new SeriesStore(std::move(writer), std::move(reader)));
}

Result<int64_t> SeriesStore::SeriesIdLocked(const std::string& device, const std::string& metric) {
  std::string key = Key(device, metric);
  if (auto it = ids_.find(key); it != ids_.end()) return it->second;
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
  ids_.emplace(std::move(key), id);
  return id;
}

Status SeriesStore::Insert(std::span<const Reading> readings) {
  if (readings.empty()) return Status::Ok();
  std::lock_guard lock(write_mu_);
  VERGE_ASSIGN_OR_RETURN(auto txn, sql::Txn::Begin(writer_));
  VERGE_ASSIGN_OR_RETURN(
      auto ins,
      writer_.Prepare("INSERT OR IGNORE INTO points(series, ts, value) VALUES (?, ?, ?)"));
  const Reading* prev = nullptr;
  int64_t id = 0;
  for (const Reading& r : readings) {
    if (!prev || prev->device != r.device || prev->metric != r.metric) {
      VERGE_ASSIGN_OR_RETURN(id, SeriesIdLocked(r.device, r.metric));
    }
    prev = &r;
    ins.Bind(1, id).Bind(2, r.ts_ns).Bind(3, r.value);
    VERGE_RETURN_IF_ERROR(ins.Run());
    ins.Reset();
  }
  return txn.Commit();
}

bool SeriesStore::Contains(const Reading& r) {
  std::lock_guard lock(read_mu_);
  auto st = reader_.Prepare(
      "SELECT 1 FROM points JOIN series ON series.id = points.series "
      "WHERE series.device = ? AND series.metric = ? AND points.ts = ?");
  if (!st.ok()) return false;
  st->Bind(1, r.device).Bind(2, r.metric).Bind(3, r.ts_ns);
  auto row = st->Step();
  return row.ok() && *row;
}

Result<std::vector<Reading>> SeriesStore::Query(const SeriesQuery& q) {
  if (q.agg != Agg::kNone && q.step_ns <= 0)
    return Error(Code::kInvalidArgument, "an aggregate needs a step");
  if (q.from_ns > q.to_ns) return Error(Code::kInvalidArgument, "from is after to");
  std::string value_expr = "points.value";
  std::string ts_expr = "points.ts";
  std::string group;
  if (q.agg != Agg::kNone) {
    switch (q.agg) {
      case Agg::kAvg:
        value_expr = "avg(points.value)";
        break;
      case Agg::kMin:
        value_expr = "min(points.value)";
        break;
      case Agg::kMax:
        value_expr = "max(points.value)";
        break;
      case Agg::kSum:
        value_expr = "sum(points.value)";
        break;
      default:
        value_expr = "count(*)";
        break;
    }
    // Buckets are aligned to the epoch, so the same step always gives the same buckets.
    ts_expr = "(points.ts / ?5) * ?5";
    group = " GROUP BY series.metric, 1";
  }
  std::string sql = "SELECT " + ts_expr + ", series.metric, " + value_expr +
                    " FROM points JOIN series ON series.id = points.series "
                    "WHERE series.device = ?1 AND (?2 = '' OR series.metric = ?2) "
                    "AND points.ts >= ?3 AND points.ts <= ?4" +
                    group + " ORDER BY series.metric, 1 LIMIT ?6";
  std::lock_guard lock(read_mu_);
  VERGE_ASSIGN_OR_RETURN(auto st, reader_.Prepare(sql));
  st.Bind(1, q.device).Bind(2, q.metric).Bind(3, q.from_ns).Bind(4, q.to_ns);
  if (q.agg != Agg::kNone) st.Bind(5, q.step_ns);
  st.Bind(6, static_cast<int64_t>(q.limit));
  std::vector<Reading> out;
  for (;;) {
    VERGE_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.push_back(Reading{q.device, st.Text(1), st.Int(0), st.Double(2)});
  }
  return out;
}

Result<uint64_t> SeriesStore::Prune(int64_t before_ns) {
  std::lock_guard lock(write_mu_);
  VERGE_ASSIGN_OR_RETURN(auto ids, writer_.Prepare("SELECT id FROM series"));
  std::vector<int64_t> all;
  for (;;) {
    VERGE_ASSIGN_OR_RETURN(bool row, ids.Step());
    if (!row) break;
    all.push_back(ids.Int(0));
  }
  VERGE_ASSIGN_OR_RETURN(auto del,
                         writer_.Prepare("DELETE FROM points WHERE series = ? AND ts < ?"));
  uint64_t n = 0;
  // One series per transaction keeps each write lock short next to ingest.
  for (int64_t id : all) {
    del.Bind(1, id).Bind(2, before_ns);
    VERGE_RETURN_IF_ERROR(del.Run());
    del.Reset();
    n += static_cast<uint64_t>(writer_.Changes());
  }
  return n;
}

}  // namespace verge::data
