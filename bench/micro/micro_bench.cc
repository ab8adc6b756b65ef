// Micro-benchmarks of the cloud's per-heartbeat and per-second work, apart from the network
// stack: encoding and decoding a heartbeat Envelope, Registry::OnHeartbeat, and the periodic
// Registry::Sweep and Registry::Flush (SqliteStore on a temporary file) at fleet sizes up to
// 100,000 registered nodes. bench/load measures the whole path; these isolate the parts.
//
// Threading: single-threaded (Google Benchmark's main thread); the FakeClock is advanced by
// hand, so no benchmark sleeps.
#include <benchmark/benchmark.h>
#include <fmt/format.h>
#include <malloc.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cloud/registry.h"
#include "cloud/store_sqlite.h"
#include "common/clock.h"
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

}  // namespace
}  // namespace verge::bench

BENCHMARK_MAIN();
