// Micro-benchmarks of the node's ingest path apart from the network: PayloadParser::Parse and
// Cleaner::Clean on bodies of 1,000 readings, as NDJSON and as a JSON array. The bodies mix
// what field devices send: "metrics" objects with epoch-millisecond timestamps, single values
// named by "metric" with RFC 3339 timestamps, and plain "value"s with fractional epoch
// seconds; 50 devices with realistic names; schemas with unit conversions and bounds.
// items_per_second counts readings.
//
// Every iteration gets fresh timestamps (built while the timer is paused), so the Cleaner's
// duplicate detection sees new data as it would in steady state instead of rejecting replays.
//
// Issue 3's HTTP target ("≥ 1 M readings/s into the durable buffer, ≥ 50 % of a raw SQLite
// batched insert of the same rows, in the same run") has its pair here, on single-device
// NDJSON bodies (what one `POST /data` carries; the device rotates over the 50 per iteration):
//   BM_IngestToJournal        Ingestor::IngestPayload with the node's real stores in a temporary
//                             directory (UplinkBuffer and SeriesStore as DataPlane opens them,
//                             default options): parse, clean, journal commit. What an HTTP
//                             answer waits for; the pipeline's later work is not included.
//   BM_IngestAndPipeline      the same plus one Pipeline::Step per body (local series, filters,
//                             batches, zstd): the node's whole per-reading work on one core.
//   BM_RawSqliteBatchedInsert the peer: the same body bytes parsed with simdjson On-Demand
//                             (iterate_many) into rows (device TEXT, metric TEXT, ts INTEGER,
//                             value REAL), inserted with one prepared statement, one transaction
//                             per body, into a plain table with sql::Db's pragmas (WAL,
//                             synchronous=NORMAL). /parse_and_insert is the comparison;
//                             /insert_only times the transaction alone on pre-parsed rows.
// The temporary directories are under $TMPDIR (default /tmp): put it on the disk to measure.
// Ratio: run them in one invocation, e.g.
//   verge-ingest-bench --benchmark_filter='ToJournal|RawSqlite' --benchmark_repetitions=3
//
// Threading: single-threaded (Google Benchmark's main thread).
#include <benchmark/benchmark.h>
#include <fmt/chrono.h>
#include <fmt/format.h>
#include <simdjson.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/sqlite.h"
#include "common/timestamp.h"
#include "node/data/buffer.h"
#include "node/data/clean.h"
#include "node/data/ingestor.h"
#include "node/data/payload.h"
#include "node/data/pipeline.h"
#include "node/data/series.h"

namespace verge::data {
namespace {

constexpr int kDevices = 50;
constexpr int kReadingsPerBody = 1000;
constexpr int64_t kMs = 1'000'000;
constexpr int64_t kStartNs = 1'795'251'600'000'000'000;  // 2026-11-21T09:00:00Z

std::string DeviceName(int i) { return fmt::format("plant-3.line-{}.press-{:03}", i % 4, i); }

std::vector<DeviceSchema> Schemas() {
  std::vector<DeviceSchema> schemas;
  for (int i = 0; i < kDevices; ++i) {
    schemas.push_back({DeviceName(i),
                       {{"temp", MetricType::kFloat, -40, 300, "degF"},
                        {"pressure", MetricType::kFloat, 0, 2e6, "bar"},
                        {"running", MetricType::kBool, std::nullopt, std::nullopt, ""},
                        {"rpm", MetricType::kFloat, 0, 10'000, ""}},
                       /*allow_undeclared=*/true});
  }
  return schemas;
}

// 1,000 readings in 600 items: 200 "metrics" objects of 3, 200 named values, 200 plain values.
// Item i is `base_ns` + i ms. Items name device i % 50, or all `device` when it is given.
std::string Body(Framing framing, int64_t base_ns, std::string_view device_of_all = {}) {
  std::string body;
  body.reserve(128 * kReadingsPerBody);
  if (framing == Framing::kJson) body += '[';
  for (int i = 0; i < 600; ++i) {
    int64_t ts = base_ns + i * kMs;
    std::string device =
        device_of_all.empty() ? DeviceName(i % kDevices) : std::string(device_of_all);
    if (framing == Framing::kJson && i > 0) body += ',';
    switch (i % 3) {
      case 0:
        fmt::format_to(std::back_inserter(body),
                       R"({{"device_id":"{}","timestamp":{},"metrics":{{"temp":{:.1f},)"
                       R"("pressure":{:.3f},"running":{}}}}})",
                       device, ts / kMs, 70 + i % 50 * 0.1, 1.013 + i % 7 * 0.01,
                       i % 2 == 0 ? "true" : "false");
        break;
      case 1: {
        auto seconds = std::chrono::sys_seconds(std::chrono::seconds(ts / 1'000'000'000));
        fmt::format_to(std::back_inserter(body),
                       R"({{"device_id":"{}","metric":"rpm","value":{},)"
                       R"("timestamp":"{:%FT%T}.{:03}Z"}})",
                       device, 1400 + i % 100, seconds, ts / kMs % 1000);
        break;
      }
      default:
        fmt::format_to(std::back_inserter(body),
                       R"({{"device_id":"{}","value":{:.2f},"timestamp":{:.3f},"seq":{}}})", device,
                       230 + i % 10 * 0.5, static_cast<double>(ts) / 1e9, i);
    }
    if (framing == Framing::kNdjson) body += '\n';
  }
  if (framing == Framing::kJson) body += ']';
  return body;
}

ParseOptions OptionsAt(int64_t base_ns) {
  ParseOptions o;
  o.now_ns = base_ns + 3'600'000 * kMs;
  return o;
}

// Parsing alone: no duplicate detection, so one body serves every iteration.
void BM_Parse(benchmark::State& state, Framing framing) {
  const std::string body = Body(framing, kStartNs);
  PayloadParser parser;
  ParseResult out;
  size_t readings = 0;
  for (auto _ : state) {
    Status st = parser.Parse(body, framing, OptionsAt(kStartNs), out);
    benchmark::DoNotOptimize(st);
    readings += out.readings.size();
  }
  if (out.readings.size() != kReadingsPerBody || !out.rejected.empty()) {
    state.SkipWithError("the body did not parse into 1000 readings");
  }
  state.SetItemsProcessed(static_cast<int64_t>(readings));
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(body.size()));
}
BENCHMARK_CAPTURE(BM_Parse, ndjson, Framing::kNdjson);
BENCHMARK_CAPTURE(BM_Parse, json_array, Framing::kJson);

// The ingest stage as the HTTP and MQTT handlers run it: parse, then clean.
void BM_ParseAndClean(benchmark::State& state, Framing framing) {
  PayloadParser parser;
  Cleaner cleaner;
  if (!cleaner.SetSchemas(Schemas()).ok()) state.SkipWithError("bad schemas");
  ParseResult out;
  size_t readings = 0, bytes = 0, rejected = 0;
  int64_t base = kStartNs;
  for (auto _ : state) {
    state.PauseTiming();
    base += 10'000 * kMs;  // later than the previous body's last item
    std::string body = Body(framing, base);
    ParseOptions options = OptionsAt(base);
    state.ResumeTiming();
    Status st = parser.Parse(body, framing, options, out);
    cleaner.Clean(out);
    benchmark::DoNotOptimize(st);
    readings += out.readings.size();
    rejected += out.rejected.size();
    bytes += body.size();
  }
  if (rejected != 0) state.SkipWithError("readings were rejected");
  state.SetItemsProcessed(static_cast<int64_t>(readings));
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
}
BENCHMARK_CAPTURE(BM_ParseAndClean, ndjson, Framing::kNdjson);
BENCHMARK_CAPTURE(BM_ParseAndClean, json_array, Framing::kJson);

// Cleaning alone, on already parsed readings moved forward in time each iteration.
void BM_Clean(benchmark::State& state) {
  PayloadParser parser;
  ParseResult parsed;
  if (!parser.Parse(Body(Framing::kNdjson, kStartNs), Framing::kNdjson, OptionsAt(kStartNs), parsed)
           .ok()) {
    state.SkipWithError("parse failed");
  }
  Cleaner cleaner;
  if (!cleaner.SetSchemas(Schemas()).ok()) state.SkipWithError("bad schemas");
  ParseResult batch;
  size_t readings = 0;
  int64_t shift = 0;
  for (auto _ : state) {
    state.PauseTiming();
    shift += 10'000 * kMs;
    batch.readings = parsed.readings;
    batch.item_of = parsed.item_of;
    batch.rejected.clear();
    for (Reading& r : batch.readings) r.ts_ns += shift;
    state.ResumeTiming();
    cleaner.Clean(batch);
    readings += batch.readings.size();
  }
  if (readings != static_cast<size_t>(state.iterations()) * kReadingsPerBody) {
    state.SkipWithError("readings were rejected");
  }
  state.SetItemsProcessed(static_cast<int64_t>(readings));
}
BENCHMARK(BM_Clean);

// ---- Into the durable buffer, and the raw SQLite peer ---------------------------------------

// A fresh directory under $TMPDIR (or /tmp), removed with its contents.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "verge-ingest-bench-XXXXXX");
    if (mkdtemp(tmpl.data()) != nullptr) path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  bool ok() const { return !path_.empty(); }
  std::string operator/(std::string_view name) const { return path_ + "/" + std::string(name); }

 private:
  std::string path_;
};

// Wall time set by the benchmark (ahead of the bodies' timestamps, as a device's clock would be
// behind the node's); steady time real, so the pipeline closes batches on age as it would live.
class BenchClock final : public Clock {
 public:
  int64_t WallMs() const override { return wall_ms_.load(); }
  int64_t SteadyMs() const override { return system_.SteadyMs(); }
  void SetWallMs(int64_t ms) { wall_ms_ = ms; }

 private:
  SystemClock system_;
  std::atomic<int64_t> wall_ms_{0};
};

// One body per iteration, each for the next of the 50 devices and 10 s after the previous one,
// so every series only moves forward (as live devices do).
struct BodySource {
  int64_t base = kStartNs;
  int n = 0;
  std::string device;
  std::string Next() {
    base += 10'000 * kMs;
    device = DeviceName(n++ % kDevices);
    return Body(Framing::kNdjson, base, device);
  }
};

// The node's stores as DataPlane::Start opens them, with default options.
struct NodeStores {
  TempDir dir;
  BenchClock clock;
  std::unique_ptr<SeriesStore> series;
  std::unique_ptr<UplinkBuffer> buffer;
  std::unique_ptr<Ingestor> ingestor;
  std::unique_ptr<Pipeline> pipeline;  // not started: stepped by the benchmark

  Status Open() {
    if (!dir.ok()) return Error(Code::kInternal, "cannot make a temporary directory");
    VERGE_ASSIGN_OR_RETURN(series, SeriesStore::Open(dir / "series.db"));
    VERGE_ASSIGN_OR_RETURN(buffer, UplinkBuffer::Open(dir / "buffer.db", BufferOptions{}, clock));
    pipeline = std::make_unique<Pipeline>(*buffer, series.get(), clock, PipelineOptions{});
    ingestor = std::make_unique<Ingestor>(*buffer, series.get(), clock, nullptr);
    return ingestor->SetSchemas(Schemas());
  }
};

// Parse, clean and commit to the journal, as POST /data does before it answers; with
// `pipeline`, also one Pipeline::Step per body (what the node's pipeline thread then does).
void IngestLoop(benchmark::State& state, bool pipeline) {
  NodeStores node;
  if (Status st = node.Open(); !st.ok()) {
    state.SkipWithError(std::string(st.message()).c_str());
    return;
  }
  BodySource source;
  size_t readings = 0, bytes = 0, rejected = 0;
  std::string error;
  for (auto _ : state) {
    state.PauseTiming();
    std::string body = source.Next();
    node.clock.SetWallMs(source.base / 1'000'000 + 3'600'000);
    state.ResumeTiming();
    auto report = node.ingestor->IngestPayload(source.device, body, Framing::kNdjson);
    if (!report.ok()) error = report.status().message();
    if (pipeline && error.empty()) {
      if (Status st = node.pipeline->Step(false); !st.ok()) error = st.message();
    }
    if (!error.empty()) {
      state.SkipWithError(error.c_str());
      break;
    }
    readings += report->accepted;
    rejected += report->rejected.size();
    bytes += body.size();
  }
  if (!error.empty()) return;
  if (pipeline && node.pipeline->stats().processed != readings)
    state.SkipWithError("the pipeline did not process every reading");
  if (rejected != 0) state.SkipWithError("readings were rejected");
  state.SetItemsProcessed(static_cast<int64_t>(readings));
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
}

void BM_IngestToJournal(benchmark::State& state) { IngestLoop(state, false); }
BENCHMARK(BM_IngestToJournal);

void BM_IngestAndPipeline(benchmark::State& state) { IngestLoop(state, true); }
BENCHMARK(BM_IngestAndPipeline);

// The peer's storage: a plain table, no index, the pragmas sql::Db::Open sets.
class RawTable {
 public:
  ~RawTable() {
    if (insert_) sqlite3_finalize(insert_);
  }
  Status Open(const std::string& path) {
    VERGE_ASSIGN_OR_RETURN(auto db, sql::Db::Open(path));
    db_ = std::make_unique<sql::Db>(std::move(db));
    VERGE_RETURN_IF_ERROR(
        db_->Exec("CREATE TABLE readings (device TEXT NOT NULL, metric TEXT NOT NULL, "
                  "ts INTEGER NOT NULL, value REAL NOT NULL)"));
    const char* sql = "INSERT INTO readings(device, metric, ts, value) VALUES (?, ?, ?, ?)";
    if (sqlite3_prepare_v2(db_->raw(), sql, -1, &insert_, nullptr) != SQLITE_OK)
      return Error(Code::kInternal, "prepare: {}", sqlite3_errmsg(db_->raw()));
    return Status::Ok();
  }
  bool Begin() { return sqlite3_exec(db_->raw(), "BEGIN", nullptr, nullptr, nullptr) == SQLITE_OK; }
  bool Commit() {
    return sqlite3_exec(db_->raw(), "COMMIT", nullptr, nullptr, nullptr) == SQLITE_OK;
  }
  // The strings are bound without copying: they need only live until this returns.
  bool Insert(std::string_view device, std::string_view metric, int64_t ts, double value) {
    sqlite3_bind_text(insert_, 1, device.data(), static_cast<int>(device.size()), SQLITE_STATIC);
    sqlite3_bind_text(insert_, 2, metric.data(), static_cast<int>(metric.size()), SQLITE_STATIC);
    sqlite3_bind_int64(insert_, 3, ts);
    sqlite3_bind_double(insert_, 4, value);
    bool ok = sqlite3_step(insert_) == SQLITE_DONE;
    sqlite3_reset(insert_);
    return ok;
  }

 private:
  std::unique_ptr<sql::Db> db_;
  sqlite3_stmt* insert_ = nullptr;
};

// What a straightforward raw ingest does with a number timestamp: its unit by magnitude, as
// the node's parser documents (seconds, milliseconds, microseconds, nanoseconds).
int64_t EpochNs(double t) {
  double a = std::fabs(t);
  double scale = a < 1e11 ? 1e9 : a < 1e14 ? 1e6 : a < 1e17 ? 1e3 : 1;
  return std::llround(t * scale);
}

// A number, or true/false as 1/0; false if it is neither.
bool ValueOf(simdjson::ondemand::value v, double& out) {
  simdjson::ondemand::json_type type;
  if (v.type().get(type)) return false;
  if (type != simdjson::ondemand::json_type::boolean)
    return v.get_double().get(out) == simdjson::SUCCESS;
  bool b = false;
  if (v.get_bool().get(b)) return false;
  out = b ? 1 : 0;
  return true;
}

// Parses an NDJSON body of this file's items and inserts one row per reading, in one
// transaction. Returns the rows inserted, or -1.
int64_t ParseAndInsert(simdjson::ondemand::parser& parser, std::string& padded,
                       std::string_view body, RawTable& table) {
  namespace od = simdjson::ondemand;
  padded.assign(body);
  padded.resize(body.size() + simdjson::SIMDJSON_PADDING);
  od::document_stream stream;
  if (parser.iterate_many(padded.data(), body.size(), 1 << 20).get(stream)) return -1;
  if (!table.Begin()) return -1;
  int64_t rows = 0;
  struct Named {
    std::string_view metric;
    double value;
  };
  std::vector<Named> values;
  for (auto item : stream) {
    od::object object;
    if (item.get_object().get(object)) return -1;
    std::string_view device, metric = "value";
    int64_t ts = 0;
    values.clear();
    for (auto member : object) {
      od::field field;
      std::string_view key;
      if (std::move(member).get(field) || field.unescaped_key().get(key)) return -1;
      od::value v = field.value();
      if (key == "device_id") {
        if (v.get_string().get(device)) return -1;
      } else if (key == "metric") {
        if (v.get_string().get(metric)) return -1;
      } else if (key == "timestamp") {
        od::json_type type;
        std::string_view text;
        double t = 0;
        if (v.type().get(type)) return -1;
        if (type == od::json_type::string) {
          if (v.get_string().get(text)) return -1;
          auto parsed = ParseRfc3339(text);
          if (!parsed.ok()) return -1;
          ts = *parsed;
        } else {
          if (v.get_double().get(t)) return -1;
          ts = EpochNs(t);
        }
      } else if (key == "value") {
        values.push_back({{}, 0});
        if (!ValueOf(v, values.back().value)) return -1;
      } else if (key == "metrics") {
        od::object metrics;
        if (v.get_object().get(metrics)) return -1;
        for (auto m : metrics) {
          od::field entry;
          std::string_view name;
          if (std::move(m).get(entry) || entry.unescaped_key().get(name)) return -1;
          values.push_back({name, 0});
          if (!ValueOf(entry.value(), values.back().value)) return -1;
        }
      }
    }
    for (const Named& n : values) {
      if (!table.Insert(device, n.metric.empty() ? metric : n.metric, ts, n.value)) return -1;
      ++rows;
    }
  }
  return table.Commit() ? rows : -1;
}

void BM_RawSqliteBatchedInsert(benchmark::State& state, bool parse) {
  TempDir dir;
  RawTable table;
  if (Status st = dir.ok() ? table.Open(dir / "raw.db") : Error(Code::kInternal, "no temp dir");
      !st.ok()) {
    state.SkipWithError(std::string(st.message()).c_str());
    return;
  }
  simdjson::ondemand::parser parser;
  std::string padded;
  BodySource source;
  PayloadParser node_parser;  // only to pre-parse rows for /insert_only, outside the timer
  ParseResult rows;
  size_t readings = 0, bytes = 0;
  bool failed = false;
  for (auto _ : state) {
    state.PauseTiming();
    std::string body = source.Next();
    if (!parse) {
      ParseOptions options = OptionsAt(source.base);
      options.default_device = source.device;
      if (!node_parser.Parse(body, Framing::kNdjson, options, rows).ok()) failed = true;
    }
    state.ResumeTiming();
    if (parse) {
      int64_t n = ParseAndInsert(parser, padded, body, table);
      if (n < 0) failed = true;
      readings += static_cast<size_t>(std::max<int64_t>(n, 0));
    } else {
      failed |= !table.Begin();
      for (const Reading& r : rows.readings)
        failed |= !table.Insert(r.device, r.metric, r.ts_ns, r.value);
      failed |= !table.Commit();
      readings += rows.readings.size();
    }
    bytes += body.size();
    if (failed) {
      state.SkipWithError("the raw insert failed");
      break;
    }
  }
  if (failed) return;
  if (readings != static_cast<size_t>(state.iterations()) * kReadingsPerBody)
    state.SkipWithError("a body did not give 1000 rows");
  state.SetItemsProcessed(static_cast<int64_t>(readings));
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
}
BENCHMARK_CAPTURE(BM_RawSqliteBatchedInsert, parse_and_insert, true);
BENCHMARK_CAPTURE(BM_RawSqliteBatchedInsert, insert_only, false);

}  // namespace
}  // namespace verge::data
