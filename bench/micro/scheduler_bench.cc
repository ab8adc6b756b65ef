// Micro-benchmarks of the app scheduler (src/cloud/scheduler.h) on one core, in-process.
// The target: >= 10,000 placements/s for 10,000 replicas onto 10,000 nodes.
// Fleet (built once, before timing): 10,000 simulated nodes in 5 regions x 4 zones, with
// capacities drawn from 2-16 cores and 2-32 GiB, labels tier=edge|core and zone, 10 % with a
// GPU, 2 % offline, link latencies 5-200 ms; existing load: 500 apps x 10 replicas (250m,
// 256 MB each) on random nodes that have room.
//   BM_OneApp/spread:0|1   one app with 10,000 replicas (100m, 128 MB), without and with
//                          spreadAcross: zone.
//   BM_ManyApps            1,000 apps x 10 replicas scheduled in order on one Fleet: a third
//                          spread across zones, a quarter with nodeSelector tier=edge, a fifth
//                          with a targetRegion, a tenth with self anti-affinity.
//   BM_Explain             the explanation of one 10-replica app over the 10,000 nodes (what
//                          `vergectl apps explain` costs); items are nodes explained.
//   BM_FleetBuild          indexing the nodes and the 5,000 existing placements (paid once per
//                          reschedule, before the first app).
// Every timed iteration starts from a fresh Fleet built outside the timing (except
// BM_FleetBuild). items_per_second counts placements; the unplaced counter must read 0.
#include <benchmark/benchmark.h>

#include <random>

#include "cloud/scheduler.h"

namespace verge::cloud {
namespace {

constexpr int kNodes = 10'000;
constexpr int64_t kNow = 1'700'000'000'000;

struct World {
  std::vector<SchedNode> nodes;
  std::vector<SchedPlacement> placements;
};

const World& TheWorld() {
  static const World w = [] {
    World w;
    std::mt19937_64 rng(42);
    auto pick = [&](uint64_t n) { return std::uniform_int_distribution<uint64_t>(0, n - 1)(rng); };
    const char* regions[] = {"eu-west-1", "eu-central-1", "us-east-1", "us-west-2", "ap-south-1"};
    const uint64_t cpus[] = {2000, 4000, 8000, 16000};
    const uint64_t mems[] = {2048, 4096, 8192, 16384, 32768};
    for (int i = 0; i < kNodes; ++i) {
      SchedNode n;
      n.name = fmt::format("node-{:05}", i);
      n.region = regions[i % 5];
      n.zone = std::string(1, static_cast<char>('a' + (i / 5) % 4));
      n.labels = {{"zone", n.zone}, {"tier", pick(3) == 0 ? "core" : "edge"}};
      n.capacity.cpu_millicores = cpus[pick(4)];
      n.capacity.memory_mb = mems[pick(5)];
      n.reserved.cpu_millicores = 100;
      n.reserved.memory_mb = 256;
      if (pick(10) == 0) {
        n.capabilities = {"gpu"};
        n.capacity.gpu = static_cast<uint32_t>(1 + pick(2));
      }
      n.online = pick(50) != 0;
      if (!n.online) n.offline_since_ms = kNow - 60'000;
      n.latency_ms = static_cast<double>(5 + pick(196));
      w.nodes.push_back(std::move(n));
    }
    std::vector<AppResources> used(kNodes);
    for (int a = 0; a < 500; ++a) {
      for (int r = 0; r < 10; ++r) {
        for (int attempt = 0; attempt < 10; ++attempt) {
          size_t i = pick(kNodes);
          const SchedNode& n = w.nodes[i];
          if (used[i].cpu_millicores + 250 + 100 > n.capacity.cpu_millicores ||
              used[i].memory_mb + 256 + 256 > n.capacity.memory_mb) {
            continue;
          }
          used[i].cpu_millicores += 250;
          used[i].memory_mb += 256;
          SchedPlacement p;
          p.app = fmt::format("load-{}", a);
          p.node = n.name;
          p.resources.cpu_millicores = 250;
          p.resources.memory_mb = 256;
          w.placements.push_back(std::move(p));
          break;
        }
      }
    }
    return w;
  }();
  return w;
}

SchedApp App(std::string name, uint32_t replicas) {
  SchedApp a;
  a.name = std::move(name);
  a.spec.command = {"/bin/app"};
  a.spec.replicas = replicas;
  a.spec.resources.cpu_millicores = 100;
  a.spec.resources.memory_mb = 128;
  return a;
}

void BM_OneApp(benchmark::State& state) {
  const World& w = TheWorld();
  SchedApp app = App("big", 10'000);
  if (state.range(0)) app.spec.placement.spread_across = "zone";
  uint64_t unplaced = 0;
  for (auto _ : state) {
    state.PauseTiming();
    auto fleet = std::make_unique<Fleet>(w.nodes, w.placements);
    state.ResumeTiming();
    ScheduleResult r = fleet->Schedule(app, kNow);
    unplaced += r.unplaced;
    benchmark::DoNotOptimize(r);
    state.PauseTiming();
    fleet.reset();
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * app.spec.replicas);
  state.counters["unplaced"] = static_cast<double>(unplaced);
}
BENCHMARK(BM_OneApp)->ArgName("spread")->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);

void BM_ManyApps(benchmark::State& state) {
  const World& w = TheWorld();
  std::vector<SchedApp> apps;
  for (int i = 0; i < 1000; ++i) {
    SchedApp a = App(fmt::format("app-{}", i), 10);
    if (i % 3 == 0) a.spec.placement.spread_across = "zone";
    if (i % 4 == 0) a.spec.placement.node_selector = {{"tier", "edge"}};
    if (i % 5 == 0) a.spec.placement.target_region = "eu-west-1";
    if (i % 10 == 0) a.spec.placement.anti_affinity = {a.name};
    apps.push_back(std::move(a));
  }
  uint64_t unplaced = 0;
  for (auto _ : state) {
    state.PauseTiming();
    auto fleet = std::make_unique<Fleet>(w.nodes, w.placements);
    state.ResumeTiming();
    for (const auto& app : apps) unplaced += fleet->Schedule(app, kNow).unplaced;
    state.PauseTiming();
    fleet.reset();
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * 10'000);
  state.counters["unplaced"] = static_cast<double>(unplaced);
}
BENCHMARK(BM_ManyApps)->Unit(benchmark::kMillisecond);

void BM_Explain(benchmark::State& state) {
  const World& w = TheWorld();
  SchedApp app = App("explained", 10);
  app.spec.placement.spread_across = "zone";
  app.spec.placement.constraints = {{"latency", "lte", "100", 100}};
  Fleet fleet(w.nodes, w.placements);
  size_t rows = 0;
  for (auto _ : state) {
    ScheduleResult r = fleet.Schedule(app, kNow, {.explain = true});
    rows = r.explanation.size();
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(rows));
}
BENCHMARK(BM_Explain)->Unit(benchmark::kMillisecond);

void BM_FleetBuild(benchmark::State& state) {
  const World& w = TheWorld();
  for (auto _ : state) {
    Fleet fleet(w.nodes, w.placements);
    benchmark::DoNotOptimize(fleet);
  }
  state.SetItemsProcessed(state.iterations() * kNodes);
}
BENCHMARK(BM_FleetBuild)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace verge::cloud
