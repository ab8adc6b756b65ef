// Micro-benchmarks of the cloud's per-heartbeat and per-second work, apart from the network
// stack: encoding and decoding a heartbeat Envelope, Registry::OnHeartbeat, and the periodic
// Registry::Sweep and Registry::Flush (SqliteStore on a temporary file) at fleet sizes up to
// 100,000 registered nodes. bench/load measures the whole path; these isolate the parts.
//
// Telemetry: the cloud's work per uplink batch, in readings per second on one core —
// decoding and validating a batch (what a link strand does), the group commit that stages
// batches before they are acknowledged and the compaction into chunks (what the
// TelemetryWriter does), and all of it in sequence on one thread. Batches hold 10,000 readings
// spread over 10, 100 or 1,000 series (1 s apart, a noisy sine rounded to 0.01, as sensors send).
//
// Threading: single-threaded (Google Benchmark's main thread); the FakeClock is advanced by
// hand, so no benchmark sleeps.
#include <benchmark/benchmark.h>
#include <fmt/format.h>
#include <malloc.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "cloud/registry.h"
#include "cloud/store_sqlite.h"
#include "cloud/telemetry.h"
#include "cloud/telemetry_codec.h"
#include "common/clock.h"
#include "common/compress.h"
#include "verge/v1/link.pb.h"

namespace verge::bench {
namespace {

namespace fs = std::filesystem;

std::string HeartbeatBytes(uint64_t id, uint64_t seq, bool with_usage) {
  v1::Envelope env;
  env.set_id(id);
  auto* hb = env.mutable_heartbeat();
  hb->set_seq(seq);
  hb->set_node_time_ms(1'790'000'000'000 + static_cast<int64_t>(seq) * 15'000);
  hb->set_want_ack(seq % 64 == 0);
  if (with_usage) {
    auto* u = hb->mutable_used();
    u->set_cpu_millicores(1250);
    u->set_memory_mb(812);
    u->set_storage_gb(11);
  }
  return env.SerializeAsString();
}

void BM_HeartbeatEncode(benchmark::State& state) {
  bool usage = state.range(0) != 0;
  uint64_t seq = 1000;
  size_t bytes = 0;
  for (auto _ : state) {
    std::string s = HeartbeatBytes(seq + 1, seq, usage);
    bytes = s.size();
    benchmark::DoNotOptimize(s);
    ++seq;
  }
  state.counters["envelope_bytes"] = static_cast<double>(bytes);
  state.SetLabel(usage ? "with usage" : "idle");
}
BENCHMARK(BM_HeartbeatEncode)->Arg(0)->Arg(1);

void BM_HeartbeatDecode(benchmark::State& state) {
  std::string bytes = HeartbeatBytes(1001, 1000, state.range(0) != 0);
  for (auto _ : state) {
    v1::Envelope env;
    bool ok = env.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()));
    benchmark::DoNotOptimize(ok);
    benchmark::DoNotOptimize(env);
  }
  state.counters["envelope_bytes"] = static_cast<double>(bytes.size());
  state.SetLabel(state.range(0) ? "with usage" : "idle");
}
BENCHMARK(BM_HeartbeatDecode)->Arg(0)->Arg(1);

// A registry of `n` joined and connected nodes over a SqliteStore in a temporary directory.
class Fleet {
 public:
  explicit Fleet(int n) {
    char tmpl[] = "/tmp/verge-micro-XXXXXX";
    if (!mkdtemp(tmpl)) std::abort();
    dir_ = tmpl;
    auto store = cloud::SqliteStore::Open(dir_ + "/verge.db");
    if (!store.ok()) std::abort();
    store_ = std::move(store).value();
    size_t heap0 = mallinfo2().uordblks;
    registry_ = std::make_unique<cloud::Registry>(*store_, clock_, cloud::RegistryOptions{});
    cloud::NodeReport report;
    report.type = "gateway";
    report.region = "bench";
    report.labels["sim"] = "micro";
    report.agent_version = "0.1.0";
    report.os = "linux";
    report.arch = "x86_64";
    report.capacity = cloud::Resources{4000, 4096, 32, 0, 0};
    for (int i = 0; i < n; ++i) {
      names_.push_back(fmt::format("node-{:06d}", i));
      if (!registry_
               ->AddJoined(names_.back(), fmt::format("{:032x}", i), 1'900'000'000'000, "127.0.0.1")
               .ok())
        std::abort();
      if (!registry_->OnConnected(names_.back(), report, "127.0.0.1").ok()) std::abort();
    }
    if (!registry_->Flush().ok()) std::abort();
    bytes_per_node_ = n ? static_cast<double>(mallinfo2().uordblks - heap0) / n : 0;
  }
  ~Fleet() {
    registry_.reset();
    store_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  cloud::Registry& registry() { return *registry_; }
  FakeClock& clock() { return clock_; }
  const std::vector<std::string>& names() const { return names_; }
  double bytes_per_node() const { return bytes_per_node_; }

 private:
  std::string dir_;
  FakeClock clock_;
  std::unique_ptr<cloud::SqliteStore> store_;
  std::unique_ptr<cloud::Registry> registry_;
  std::vector<std::string> names_;
  double bytes_per_node_ = 0;
};

// Building a 100k fleet takes seconds; Google Benchmark calls each benchmark function several
// times, so every size is built once and kept.
Fleet& FleetOf(int n) {
  static std::map<int, std::unique_ptr<Fleet>> fleets;
  auto& f = fleets[n];
  if (!f) f = std::make_unique<Fleet>(n);
  return *f;
}

void BM_RegistryOnHeartbeat(benchmark::State& state) {
  Fleet& f = FleetOf(static_cast<int>(state.range(0)));
  const auto& names = f.names();
  size_t i = 0;
  for (auto _ : state) {
    f.registry().OnHeartbeat(names[i], std::nullopt);
    if (++i == names.size()) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["registry_heap_bytes_per_node"] = f.bytes_per_node();
}
BENCHMARK(BM_RegistryOnHeartbeat)
    ->Arg(1'000)
    ->Arg(10'000)
    ->Arg(100'000)
    ->Unit(benchmark::kNanosecond);

// What the maintenance thread does every second for `n` nodes at 15 s heartbeats: n/15 of them
// heartbeat in between, then Sweep and Flush.
void BM_RegistrySweepFlushPerSecond(benchmark::State& state) {
  int n = static_cast<int>(state.range(0));
  Fleet& f = FleetOf(n);
  const auto& names = f.names();
  size_t per_second = static_cast<size_t>(n) / 15;
  size_t next = 0;
  for (auto _ : state) {
    state.PauseTiming();
    f.clock().Advance(std::chrono::milliseconds(1000));
    for (size_t k = 0; k < per_second; ++k) {
      f.registry().OnHeartbeat(names[next], std::nullopt);
      if (++next == names.size()) next = 0;
    }
    state.ResumeTiming();
    f.registry().Sweep();
    if (!f.registry().Flush().ok()) state.SkipWithError("flush failed");
  }
  state.counters["dirty_per_flush"] = static_cast<double>(per_second);
}
BENCHMARK(BM_RegistrySweepFlushPerSecond)
    ->Arg(1'000)
    ->Arg(10'000)
    ->Arg(100'000)
    ->Unit(benchmark::kMillisecond);

// ---- Telemetry ------------------------------------------------------------------------------

constexpr int kReadingsPerBatch = 10'000;
constexpr int kBatchesPerGroup = 16;

// An UplinkBatch as a node sends it: `series` series sharing kReadingsPerBatch readings.
v1::UplinkBatch MakeUplinkBatch(uint64_t seq, int series) {
  static std::mt19937_64 rng(42);
  std::normal_distribution<double> noise(0, 0.05);
  v1::ReadingBatch rb;
  int per_series = kReadingsPerBatch / series;
  int64_t t0 = int64_t{1'790'000'000} * 1'000'000'000 +
               static_cast<int64_t>(seq) * per_series * 1'000'000'000;
  for (int s = 0; s < series; ++s) {
    rb.add_devices(fmt::format("dev-{:04d}", s));
  }
  rb.add_metrics("temp");
  for (int s = 0; s < series; ++s) {
    auto* ps = rb.add_series();
    ps->set_device(static_cast<uint32_t>(s));
    ps->set_metric(0);
    for (int i = 0; i < per_series; ++i) {
      ps->add_ts_delta_ns(i == 0 ? t0 : 1'000'000'000);
      double v =
          20 + 5 * std::sin((static_cast<double>(seq) * per_series + i) / 300.0 + s) + noise(rng);
      ps->add_values(std::round(v * 100) / 100);
    }
  }
  v1::UplinkBatch b;
  b.set_seq(seq);
  b.set_count(static_cast<uint32_t>(per_series * series));
  b.set_codec(v1::CODEC_ZSTD);
  b.set_data(*ZstdCompress(rb.SerializeAsString()));
  return b;
}

class TelemetryStore {
 public:
  TelemetryStore() {
    char tmpl[] = "/tmp/verge-micro-tm-XXXXXX";
    if (!mkdtemp(tmpl)) std::abort();
    dir_ = tmpl;
    store_ = std::move(cloud::SqliteStore::Open(dir_ + "/verge.db")).value();
  }
  ~TelemetryStore() {
    store_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  cloud::SqliteStore& store() { return *store_; }
  int64_t DbBytes() const {
    std::error_code ec;
    int64_t n = 0;
    for (const char* f : {"/verge.db", "/verge.db-wal"}) {
      auto s = fs::file_size(dir_ + f, ec);
      if (!ec) n += static_cast<int64_t>(s);
    }
    return n;
  }

 private:
  std::string dir_;
  std::unique_ptr<cloud::SqliteStore> store_;
};

// Decode and validate, then stage: the per-batch work on a link strand.
void BM_UplinkDecode(benchmark::State& state) {
  int series = static_cast<int>(state.range(0));
  std::vector<v1::UplinkBatch> batches;
  for (uint64_t seq = 1; seq <= 8; ++seq) batches.push_back(MakeUplinkBatch(seq, series));
  size_t i = 0, wire = 0;
  for (auto _ : state) {
    v1::UplinkBatch b = batches[i++ % batches.size()];
    auto d = cloud::VisitUplink(b, nullptr);
    if (!d.ok()) state.SkipWithError("decode failed");
    wire += b.data().size();
    auto rec = cloud::StageUplink("node-1", std::move(b), *d);
    benchmark::DoNotOptimize(rec);
  }
  state.SetItemsProcessed(state.iterations() * kReadingsPerBatch);
  state.counters["wire_bytes_per_reading"] =
      static_cast<double>(wire) / static_cast<double>(state.iterations() * kReadingsPerBatch);
}
BENCHMARK(BM_UplinkDecode)->Arg(10)->Arg(100)->Arg(1000)->Arg(10000)->Unit(benchmark::kMillisecond);

std::vector<cloud::Store::UplinkRecord> StagedRecords(int series, uint64_t first_seq, int n) {
  std::vector<cloud::Store::UplinkRecord> out;
  for (int k = 0; k < n; ++k) {
    v1::UplinkBatch b = MakeUplinkBatch(first_seq + static_cast<uint64_t>(k), series);
    auto d = cloud::VisitUplink(b, nullptr);
    if (!d.ok()) std::abort();
    out.push_back(cloud::StageUplink("node-1", std::move(b), *d));
  }
  return out;
}

Status StoreAll(cloud::Store& store, const std::vector<cloud::Store::UplinkRecord>& recs) {
  std::vector<const cloud::Store::UplinkRecord*> ptrs;
  for (const auto& r : recs) ptrs.push_back(&r);
  return store.StoreUplink(ptrs).status();
}

// One group commit of kBatchesPerGroup batches (dedupe rows and staged batches) into a
// SqliteStore on a file: what the TelemetryWriter does before it acknowledges. Wall time, since
// the commit waits for the disk.
void BM_TelemetryGroupCommit(benchmark::State& state) {
  int series = static_cast<int>(state.range(0));
  TelemetryStore ts;
  auto staged = StagedRecords(series, 1, 64);
  uint64_t seq = 0;
  for (auto _ : state) {
    state.PauseTiming();
    std::vector<cloud::Store::UplinkRecord> group;
    for (int k = 0; k < kBatchesPerGroup; ++k) {
      group.push_back(staged[seq % staged.size()]);
      group.back().seq = ++seq;
      group.back().low_seq = seq > 256 ? seq - 256 : 0;
    }
    state.ResumeTiming();
    if (Status st = StoreAll(ts.store(), group); !st.ok())
      state.SkipWithError(st.message().c_str());
  }
  state.SetItemsProcessed(state.iterations() * kBatchesPerGroup * kReadingsPerBatch);
}
BENCHMARK(BM_TelemetryGroupCommit)
    ->Arg(10)
    ->Arg(100)
    ->Arg(1000)
    ->Arg(10000)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// Compaction of 200 staged batches (2,000,000 readings) into chunks, in the writer's slices.
void BM_TelemetryCompaction(benchmark::State& state) {
  int series = static_cast<int>(state.range(0));
  TelemetryStore ts;
  cloud::TelemetryWriter writer(ts.store());
  auto staged = StagedRecords(series, 1, 200);
  uint64_t seq = 0;
  for (auto _ : state) {
    state.PauseTiming();
    for (auto& r : staged) r.seq = ++seq;
    if (Status st = StoreAll(ts.store(), staged); !st.ok()) state.SkipWithError("stage failed");
    state.ResumeTiming();
    for (;;) {
      auto n = writer.Compact();
      if (!n.ok()) state.SkipWithError(n.status().message().c_str());
      if (!n.ok() || *n == 0) break;
    }
  }
  int64_t readings = state.iterations() * 200 * kReadingsPerBatch;
  state.SetItemsProcessed(readings);
  state.counters["db_bytes_per_reading"] =
      static_cast<double>(ts.DbBytes()) / static_cast<double>(readings);
  state.counters["readings_per_chunk"] =
      static_cast<double>(writer.counters().readings_compacted.load()) /
      static_cast<double>(std::max<uint64_t>(1, writer.counters().chunks_written.load()));
}
BENCHMARK(BM_TelemetryCompaction)
    ->Arg(10)
    ->Arg(100)
    ->Arg(1000)
    ->Arg(10000)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// Everything the cloud does with uplink data on one thread: decode and validate each batch,
// group-commit 16 at a time, and compact a slice whenever one is staged. Wall time.
void BM_UplinkToStoreOneCore(benchmark::State& state) {
  int series = static_cast<int>(state.range(0));
  TelemetryStore ts;
  cloud::TelemetryWriterOptions opts;
  cloud::TelemetryWriter writer(ts.store(), opts);
  std::vector<v1::UplinkBatch> wire;
  for (uint64_t s = 1; s <= 64; ++s) wire.push_back(MakeUplinkBatch(s, series));
  uint64_t seq = 0, staged = 0;
  for (auto _ : state) {
    std::vector<cloud::Store::UplinkRecord> group;
    for (int k = 0; k < kBatchesPerGroup; ++k) {
      v1::UplinkBatch b = wire[seq % wire.size()];
      b.set_seq(++seq);
      auto d = cloud::VisitUplink(b, nullptr);
      if (!d.ok()) state.SkipWithError("decode failed");
      group.push_back(cloud::StageUplink("node-1", std::move(b), *d));
    }
    if (Status st = StoreAll(ts.store(), group); !st.ok()) state.SkipWithError("commit failed");
    staged += kBatchesPerGroup * kReadingsPerBatch;
    if (staged >= opts.compact_max_readings) {
      auto n = writer.Compact();
      if (!n.ok()) state.SkipWithError("compaction failed");
      staged = 0;
    }
  }
  state.SetItemsProcessed(state.iterations() * kBatchesPerGroup * kReadingsPerBatch);
  state.counters["db_bytes_per_reading"] =
      static_cast<double>(ts.DbBytes()) /
      static_cast<double>(state.iterations() * kBatchesPerGroup * kReadingsPerBatch);
}
BENCHMARK(BM_UplinkToStoreOneCore)
    ->Arg(10)
    ->Arg(100)
    ->Arg(1000)
    ->Arg(10000)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace verge::bench

BENCHMARK_MAIN();
