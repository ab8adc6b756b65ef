// The scheduler: one case per predicate (with its reason) and per priority, spread, affinity,
// offline handling, scale up and down, determinism, explain, and a random property test that
// no node is ever overcommitted.
#include "cloud/scheduler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <map>
#include <random>
#include <set>

namespace verge::cloud {
namespace {

constexpr int64_t kNow = 1'000'000'000;
constexpr int64_t kMinute = 60'000;

SchedNode MakeNode(std::string name, uint64_t cpu = 4000, uint64_t mem = 4096,
                   std::string region = "r1", std::string zone = "") {
  SchedNode n;
  n.name = std::move(name);
  n.capacity.cpu_millicores = cpu;
  n.capacity.memory_mb = mem;
  n.region = std::move(region);
  n.zone = std::move(zone);
  if (!n.zone.empty()) n.labels["zone"] = n.zone;
  return n;
}

SchedApp MakeApp(std::string name, uint32_t replicas = 1, uint64_t cpu = 100, uint64_t mem = 100) {
  SchedApp a;
  a.name = std::move(name);
  a.spec.command = {"/bin/app"};
  a.spec.replicas = replicas;
  a.spec.resources.cpu_millicores = cpu;
  a.spec.resources.memory_mb = mem;
  return a;
}

SchedPlacement Placed(std::string app, std::string node, uint64_t cpu = 0, uint64_t mem = 0,
                      std::vector<AppPort> ports = {}) {
  SchedPlacement p;
  p.app = std::move(app);
  p.node = std::move(node);
  p.resources.cpu_millicores = cpu;
  p.resources.memory_mb = mem;
  p.host_ports = std::move(ports);
  return p;
}

const NodeExplanation* Find(const ScheduleResult& r, const std::string& node) {
  for (const auto& e : r.explanation) {
    if (e.node == node) return &e;
  }
  return nullptr;
}

std::map<std::string, int> Count(const std::vector<std::string>& nodes) {
  std::map<std::string, int> m;
  for (const auto& n : nodes) ++m[n];
  return m;
}

// One predicate: node "bad" must be filtered out with `reason`; node "good" (when present)
// takes the replica.
struct PredicateCase {
  std::string name;
  std::function<void(std::vector<SchedNode>&, std::vector<SchedPlacement>&, SchedApp&)> setup;
  std::string reason;
  friend void PrintTo(const PredicateCase& c, std::ostream* os) { *os << c.name; }
};

class SchedulerPredicate : public testing::TestWithParam<PredicateCase> {};

TEST_P(SchedulerPredicate, FiltersTheNodeWithItsReason) {
  const PredicateCase& c = GetParam();
  std::vector<SchedNode> nodes = {MakeNode("bad"), MakeNode("good")};
  std::vector<SchedPlacement> placements;
  SchedApp app = MakeApp("app");
  c.setup(nodes, placements, app);
  auto r = Schedule(nodes, placements, app, kNow, {.explain = true});
  EXPECT_EQ(r.nodes, std::vector<std::string>{"good"});
  const NodeExplanation* bad = Find(r, "bad");
  ASSERT_NE(bad, nullptr);
  EXPECT_FALSE(bad->feasible);
  EXPECT_EQ(bad->reason, c.reason);
  // The same node alone: nothing placed, and the summary names the predicate.
  std::vector<SchedNode> only = {nodes[0]};
  auto alone = Schedule(only, placements, app, kNow);
  EXPECT_TRUE(alone.nodes.empty());
  EXPECT_EQ(alone.unplaced, 1u);
  EXPECT_NE(alone.unplaced_reason.find("0 of 1 nodes can take another replica: 1 "),
            std::string::npos)
      << alone.unplaced_reason;
}

std::vector<PredicateCase> PredicateCases() {
  using Nodes = std::vector<SchedNode>;
  using Places = std::vector<SchedPlacement>;
  return {
      {"Offline", [](Nodes& n, Places&, SchedApp&) { n[0].online = false; }, "offline"},
      {"Selector",
       [](Nodes& n, Places&, SchedApp& a) {
         a.spec.placement.node_selector = {{"zone", "a"}};
         n[0].labels["zone"] = "b";
         n[1].labels["zone"] = "a";
       },
       "selector: needs zone=a"},
      {"SelectorLabelMissing",
       [](Nodes& n, Places&, SchedApp& a) {
         a.spec.placement.node_selector = {{"gpu-model", "t4"}};
         n[1].labels["gpu-model"] = "t4";
       },
       "selector: needs gpu-model=t4"},
      {"InsufficientMemory",
       [](Nodes& n, Places& p, SchedApp& a) {
         n[0].capacity.memory_mb = 2048;
         p.push_back(Placed("other", "bad", 0, 1748));
         a.spec.resources.memory_mb = 512;
       },
       "insufficient memory: 512 MB requested, 300 MB free of 2048"},
      {"InsufficientMemoryReserved",
       [](Nodes& n, Places&, SchedApp& a) {
         n[0].capacity.memory_mb = 2048;
         n[0].reserved.memory_mb = 1748;
         a.spec.resources.memory_mb = 512;
       },
       "insufficient memory: 512 MB requested, 300 MB free of 300"},
      {"InsufficientCpu",
       [](Nodes& n, Places& p, SchedApp& a) {
         n[0].capacity.cpu_millicores = 1000;
         p.push_back(Placed("other", "bad", 800, 0));
         a.spec.resources.cpu_millicores = 250;
       },
       "insufficient cpu: 250m requested, 200m free of 1000m"},
      {"InsufficientGpu",
       [](Nodes& n, Places& p, SchedApp& a) {
         n[0].capacity.gpu = 1;
         n[1].capacity.gpu = 1;
         auto other = Placed("other", "bad");
         other.resources.gpu = 1;
         p.push_back(other);
         a.spec.resources.gpu = 1;
       },
       "insufficient gpu: 1 requested, 0 free of 1"},
      {"InsufficientNpuFromCapabilityOnly",
       [](Nodes& n, Places&, SchedApp& a) {
         n[0].capabilities = {"npu"};  // counts as one
         n[1].capabilities = {"npu"};
         a.spec.resources.npu = 2;
         n[1].capacity.npu = 2;
       },
       "insufficient npu: 2 requested, 1 free of 1"},
      {"CapabilityMissing",
       [](Nodes& n, Places&, SchedApp& a) {
         a.spec.resources.npu = 1;
         n[1].capabilities = {"npu"};
       },
       "capability npu missing"},
      {"CapabilityGpuMissing",
       [](Nodes& n, Places&, SchedApp& a) {
         a.spec.resources.gpu = 1;
         n[0].capabilities = {"npu"};
         n[1].capacity.gpu = 2;
       },
       "capability gpu missing"},
      {"ConstraintRegion",
       [](Nodes& n, Places&, SchedApp& a) {
         a.spec.placement.constraints = {{"region", "eq", "eu-west", 0}};
         n[0].region = "us-east";
         n[1].region = "eu-west";
       },
       "constraint region eq eu-west: node is us-east"},
      {"ConstraintLatency",
       [](Nodes& n, Places&, SchedApp& a) {
         a.spec.placement.constraints = {{"latency", "lte", "50", 50}};
         n[0].latency_ms = 80;
         n[1].latency_ms = 50;
       },
       "constraint latency lte 50: 80 ms"},
      {"ConstraintLatencyUnknown",
       [](Nodes& n, Places&, SchedApp& a) {
         a.spec.placement.constraints = {{"latency", "lte", "50", 50}};
         n[1].latency_ms = 3;
       },
       "constraint latency lte 50: latency unknown"},
      {"ConstraintCpu",
       [](Nodes& n, Places&, SchedApp& a) {
         a.spec.placement.constraints = {{"cpu", "gte", "8000", 8000}};
         n[1].capacity.cpu_millicores = 8000;
       },
       "constraint cpu gte 8000: node has 4000"},
      {"ConstraintMemoryEq",
       [](Nodes& n, Places&, SchedApp& a) {
         a.spec.placement.constraints = {{"memory", "eq", "8192", 8192}};
         n[1].capacity.memory_mb = 8192;
       },
       "constraint memory eq 8192: node has 4096"},
      {"ConstraintGpu",
       [](Nodes& n, Places&, SchedApp& a) {
         a.spec.placement.constraints = {{"gpu", "gte", "1", 1}};
         n[1].capabilities = {"gpu"};
       },
       "constraint gpu gte 1: node has 0"},
      {"Affinity",
       [](Nodes&, Places& p, SchedApp& a) {
         a.spec.placement.affinity = {"db"};
         p.push_back(Placed("db", "good"));
       },
       "affinity: app db not on node"},
      {"AntiAffinity",
       [](Nodes&, Places& p, SchedApp& a) {
         a.spec.placement.anti_affinity = {"web"};
         p.push_back(Placed("web", "bad"));
       },
       "anti-affinity: app web runs here"},
      {"HostPort",
       [](Nodes&, Places& p, SchedApp& a) {
         a.spec.ports = {{"http", 8080, "tcp"}};
         p.push_back(Placed("z", "bad", 0, 0, {{"", 8080, "tcp"}}));
         p.push_back(Placed("udp-user", "good", 0, 0, {{"", 8080, "udp"}}));
       },
       "port 8080/tcp in use by app z"},
  };
}

INSTANTIATE_TEST_SUITE_P(Scheduler, SchedulerPredicate, testing::ValuesIn(PredicateCases()),
                         [](const auto& info) { return info.param.name; });

TEST(Scheduler, AffinityToAnAppNotInTheFleetPlacesNothing) {
  SchedApp app = MakeApp("app");
  app.spec.placement.affinity = {"ghost"};
  auto r = Schedule({MakeNode("a")}, {}, app, kNow, {.explain = true});
  EXPECT_TRUE(r.nodes.empty());
  EXPECT_EQ(r.explanation[0].reason, "affinity: app ghost not on node");
  EXPECT_EQ(r.unplaced_reason, "0 of 1 nodes can take another replica: 1 affinity");
}

TEST(Scheduler, BalancePrefersTheLeastAllocatedNode) {
  std::vector<SchedNode> nodes = {MakeNode("busy"), MakeNode("idle")};
  std::vector<SchedPlacement> fleet = {Placed("x", "busy", 2000, 2048)};
  auto r = Schedule(nodes, fleet, MakeApp("app", 1, 1000, 1024), kNow, {.explain = true});
  EXPECT_EQ(r.nodes, std::vector<std::string>{"idle"});
  ASSERT_EQ(r.explanation.size(), 2u);
  EXPECT_EQ(r.explanation[0].node, "idle");
  // After placing: cpu and memory both 1/4 used: least 75, balanced 100.
  EXPECT_DOUBLE_EQ(r.explanation[0].balance, 87.5);
  // busy: both 3/4: least 25, balanced 100.
  EXPECT_DOUBLE_EQ(r.explanation[1].balance, 62.5);
  EXPECT_GT(r.explanation[0].score, r.explanation[1].score);
}

TEST(Scheduler, BalancePrefersEvenCpuAndMemoryUse) {
  // Placing 1000m/1024MB: "even" ends at 1/2 cpu and 1/2 memory, "skewed" at 1/4 and 3/4;
  // the same free total, but the even node scores higher.
  std::vector<SchedNode> nodes = {MakeNode("even"), MakeNode("skewed")};
  std::vector<SchedPlacement> fleet = {Placed("x", "even", 1000, 1024),
                                       Placed("y", "skewed", 0, 2048)};
  auto r = Schedule(nodes, fleet, MakeApp("app", 1, 1000, 1024), kNow, {.explain = true});
  EXPECT_EQ(r.nodes, std::vector<std::string>{"even"});
  EXPECT_DOUBLE_EQ(Find(r, "even")->balance, 75);
  EXPECT_DOUBLE_EQ(Find(r, "skewed")->balance, 50);
}

TEST(Scheduler, TargetRegionScoresByCloseness) {
  std::vector<SchedNode> nodes = {
      MakeNode("a", 4000, 4096, "us-east-1"), MakeNode("b", 4000, 4096, "eu-central-1"),
      MakeNode("c", 4000, 4096, "eu-west-2"), MakeNode("d", 4000, 4096, "eu-west-1"),
      MakeNode("e", 4000, 4096, "")};
  SchedApp app = MakeApp("app", 1);
  app.spec.placement.target_region = "eu-west-1";
  auto r = Schedule(nodes, {}, app, kNow, {.explain = true});
  EXPECT_EQ(r.nodes, std::vector<std::string>{"d"});
  std::vector<std::string> order;
  for (const auto& e : r.explanation) order.push_back(e.node);
  EXPECT_EQ(order[0], "d");
  EXPECT_EQ(order[1], "c");
  EXPECT_EQ(order[2], "b");
  EXPECT_DOUBLE_EQ(Find(r, "d")->region, 100);
  EXPECT_DOUBLE_EQ(Find(r, "c")->region, 60);
  EXPECT_DOUBLE_EQ(Find(r, "b")->region, 30);
  EXPECT_DOUBLE_EQ(Find(r, "a")->region, 0);
  EXPECT_DOUBLE_EQ(Find(r, "e")->region, 0);
  // A closer region wins over a less loaded node.
  std::vector<SchedPlacement> fleet = {Placed("x", "d", 2000, 2048)};
  EXPECT_EQ(Schedule(nodes, fleet, app, kNow).nodes, std::vector<std::string>{"d"});
}

TEST(Scheduler, SpreadAcrossZonesEvensOutUnevenZones) {
  std::vector<SchedNode> nodes;
  nodes.reserve(6);
  for (int i = 0; i < 4; ++i)
    nodes.push_back(MakeNode("a" + std::to_string(i), 4000, 4096, "r", "a"));
  nodes.push_back(MakeNode("b0", 4000, 4096, "r", "b"));
  nodes.push_back(MakeNode("c0", 4000, 4096, "r", "c"));
  SchedApp app = MakeApp("app", 6);
  app.spec.placement.spread_across = "zone";
  auto r = Schedule(nodes, {}, app, kNow);
  ASSERT_EQ(r.nodes.size(), 6u);
  std::map<char, int> per_zone;
  for (const auto& n : r.nodes) ++per_zone[n[0]];
  EXPECT_EQ(per_zone, (std::map<char, int>{{'a', 2}, {'b', 2}, {'c', 2}}));
  // Without spreadAcross the larger zone takes most, one replica per node first.
  app.spec.placement.spread_across.clear();
  auto plain = Schedule(nodes, {}, app, kNow);
  EXPECT_EQ(Count(plain.nodes).size(), 6u);
}

TEST(Scheduler, SpreadAcrossZonesTellsSameNamedZonesOfRegionsApart) {
  std::vector<SchedNode> nodes = {MakeNode("x1", 4000, 4096, "eu", "a"),
                                  MakeNode("x2", 4000, 4096, "eu", "a"),
                                  MakeNode("y1", 4000, 4096, "us", "a")};
  SchedApp app = MakeApp("app", 2);
  app.spec.placement.spread_across = "zone";
  auto r = Schedule(nodes, {}, app, kNow);
  EXPECT_EQ(Count(r.nodes)["y1"], 1) << "eu/a and us/a are two zones";
}

TEST(Scheduler, SpreadAcrossRegionsCountsExistingReplicas) {
  std::vector<SchedNode> nodes = {
      MakeNode("eu1", 4000, 4096, "eu"), MakeNode("eu2", 4000, 4096, "eu"),
      MakeNode("us1", 4000, 4096, "us"), MakeNode("ap1", 4000, 4096, "ap")};
  SchedApp app = MakeApp("app", 3);
  app.spec.placement.spread_across = "region";
  std::vector<SchedPlacement> fleet = {Placed("app", "eu1", 100, 100)};
  auto r = Schedule(nodes, fleet, app, kNow, {.explain = true});
  EXPECT_EQ(r.kept, 1u);
  EXPECT_EQ(r.added, 2u);
  EXPECT_EQ(r.nodes, (std::vector<std::string>{"ap1", "eu1", "us1"}));
  // Every feasible node has a spread score, and they are in 0..100.
  for (const auto& e : r.explanation) {
    EXPECT_TRUE(e.feasible);
    EXPECT_GE(e.spread, 0);
    EXPECT_LE(e.spread, 100);
  }
}

TEST(Scheduler, WithoutSpreadMildlyPrefersNodesWithoutAReplica) {
  std::vector<SchedNode> nodes = {MakeNode("a"), MakeNode("b"), MakeNode("c")};
  auto r = Schedule(nodes, {}, MakeApp("app", 3, 0, 0), kNow);
  EXPECT_EQ(r.nodes, (std::vector<std::string>{"a", "b", "c"}));
  auto six = Schedule(nodes, {}, MakeApp("app", 6, 0, 0), kNow);
  EXPECT_EQ(Count(six.nodes), (std::map<std::string, int>{{"a", 2}, {"b", 2}, {"c", 2}}));
}

TEST(Scheduler, SelfAntiAffinityPlacesOnePerNode) {
  std::vector<SchedNode> nodes = {MakeNode("a"), MakeNode("b"), MakeNode("c")};
  SchedApp app = MakeApp("app", 5);
  app.spec.placement.anti_affinity = {"app"};
  auto r = Schedule(nodes, {}, app, kNow);
  EXPECT_EQ(r.nodes, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(r.unplaced, 2u);
  EXPECT_EQ(r.unplaced_reason, "0 of 3 nodes can take another replica: 3 anti-affinity");
}

TEST(Scheduler, HostPortsAllowOneReplicaPerNode) {
  std::vector<SchedNode> nodes = {MakeNode("a"), MakeNode("b")};
  SchedApp app = MakeApp("app", 3);
  app.spec.ports = {{"http", 80, "tcp"}};
  auto r = Schedule(nodes, {}, app, kNow);
  EXPECT_EQ(r.nodes, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(r.unplaced, 1u);
  EXPECT_EQ(r.unplaced_reason, "0 of 2 nodes can take another replica: 2 port in use");
}

TEST(Scheduler, AffinityFollowsTheOtherApp) {
  std::vector<SchedNode> nodes = {MakeNode("a"), MakeNode("b"), MakeNode("c")};
  std::vector<SchedPlacement> fleet = {Placed("db", "b"), Placed("cache", "b"),
                                       Placed("cache", "c")};
  SchedApp app = MakeApp("app", 2);
  app.spec.placement.affinity = {"db", "cache", "app"};  // itself: ignored
  auto r = Schedule(nodes, fleet, app, kNow);
  EXPECT_EQ(r.nodes, (std::vector<std::string>{"b", "b"}));
}

TEST(Scheduler, OfflineNodeKeepsItsReplicasUntilRescheduleAfter) {
  std::vector<SchedNode> nodes = {MakeNode("edge"), MakeNode("spare")};
  nodes[0].online = false;
  nodes[0].offline_since_ms = kNow;
  std::vector<SchedPlacement> fleet = {Placed("app", "edge", 100, 100),
                                       Placed("app", "edge", 100, 100)};
  SchedApp app = MakeApp("app", 2);
  app.spec.reschedule_after_ms = 10 * kMinute;

  auto within = Schedule(nodes, fleet, app, kNow + 9 * kMinute);
  EXPECT_EQ(within.nodes, (std::vector<std::string>{"edge", "edge"}));
  EXPECT_EQ(within.kept, 2u);
  EXPECT_TRUE(within.removed.empty());

  auto past = Schedule(nodes, fleet, app, kNow + 10 * kMinute);
  EXPECT_EQ(past.nodes, (std::vector<std::string>{"spare", "spare"}));
  EXPECT_EQ(past.kept, 0u);
  EXPECT_EQ(past.added, 2u);
  ASSERT_EQ(past.removed.size(), 2u);
  EXPECT_EQ(past.removed[0].node, "edge");
  EXPECT_EQ(past.removed[0].reason, "offline longer than rescheduleAfter (10m)");

  // Without rescheduleAfter an offline edge keeps running its apps forever.
  app.spec.reschedule_after_ms = 0;
  auto never = Schedule(nodes, fleet, app, kNow + 1000 * kMinute);
  EXPECT_EQ(never.nodes, (std::vector<std::string>{"edge", "edge"}));
}

TEST(Scheduler, ReplicasMoveOffNodesThatNoLongerQualify) {
  std::vector<SchedNode> nodes = {MakeNode("a"), MakeNode("b")};
  nodes[0].labels["tier"] = "edge";
  nodes[1].labels["tier"] = "core";
  SchedApp app = MakeApp("app", 1);
  app.spec.placement.node_selector = {{"tier", "core"}};
  std::vector<SchedPlacement> fleet = {Placed("app", "a", 100, 100), Placed("app", "gone")};
  auto r = Schedule(nodes, fleet, app, kNow);
  EXPECT_EQ(r.nodes, std::vector<std::string>{"b"});
  ASSERT_EQ(r.removed.size(), 2u);
  EXPECT_EQ(r.removed[0].node, "a");
  EXPECT_EQ(r.removed[0].reason, "selector: needs tier=core");
  EXPECT_EQ(r.removed[1].node, "gone");
  EXPECT_EQ(r.removed[1].reason, "node is no longer registered");
}

TEST(Scheduler, AReplicaThatNoLongerFitsAfterASpecChangeMoves) {
  std::vector<SchedNode> nodes = {MakeNode("small", 4000, 1024), MakeNode("big", 4000, 8192)};
  std::vector<SchedPlacement> fleet = {Placed("app", "small", 100, 512)};
  auto r = Schedule(nodes, fleet, MakeApp("app", 1, 100, 2048), kNow);
  EXPECT_EQ(r.nodes, std::vector<std::string>{"big"});
  ASSERT_EQ(r.removed.size(), 1u);
  EXPECT_EQ(r.removed[0].reason, "insufficient memory: 2048 MB requested, 1024 MB free of 1024");
}

TEST(Scheduler, ScaleUpKeepsExistingReplicas) {
  std::vector<SchedNode> nodes = {MakeNode("a"), MakeNode("b"), MakeNode("c"), MakeNode("d")};
  std::vector<SchedPlacement> fleet = {Placed("app", "c", 100, 100), Placed("app", "d", 100, 100)};
  auto r = Schedule(nodes, fleet, MakeApp("app", 4), kNow);
  EXPECT_EQ(r.kept, 2u);
  EXPECT_EQ(r.added, 2u);
  EXPECT_EQ(r.nodes, (std::vector<std::string>{"a", "b", "c", "d"}));
}

TEST(Scheduler, ScaleDownRemovesFromOfflineThenLowestScoringNodes) {
  std::vector<SchedNode> nodes = {MakeNode("busy"), MakeNode("idle1"), MakeNode("idle2"),
                                  MakeNode("off")};
  nodes[3].online = false;
  nodes[3].offline_since_ms = kNow;
  std::vector<SchedPlacement> fleet = {
      Placed("x", "busy", 3000, 3000), Placed("app", "busy", 100, 100),
      Placed("app", "idle1", 100, 100), Placed("app", "idle2", 100, 100),
      Placed("app", "off", 100, 100)};
  auto r = Schedule(nodes, fleet, MakeApp("app", 2), kNow);
  EXPECT_EQ(r.nodes, (std::vector<std::string>{"idle1", "idle2"}));
  EXPECT_EQ(r.kept, 2u);
  ASSERT_EQ(r.removed.size(), 2u);
  std::set<std::string> removed = {r.removed[0].node, r.removed[1].node};
  EXPECT_EQ(removed, (std::set<std::string>{"busy", "off"}));
  EXPECT_EQ(r.removed[0].reason, "scaled down");

  auto zero = Schedule(nodes, fleet, MakeApp("app", 0), kNow);
  EXPECT_TRUE(zero.nodes.empty());
  EXPECT_EQ(zero.removed.size(), 4u);
  EXPECT_EQ(zero.unplaced, 0u);
}

TEST(Scheduler, ScaleDownWithSpreadKeepsDomainsEven) {
  std::vector<SchedNode> nodes = {
      MakeNode("a1", 4000, 4096, "r", "a"), MakeNode("a2", 4000, 4096, "r", "a"),
      MakeNode("a3", 4000, 4096, "r", "a"), MakeNode("b1", 4000, 4096, "r", "b")};
  std::vector<SchedPlacement> fleet;
  for (const auto& n : {"a1", "a2", "a3", "b1"}) fleet.push_back(Placed("app", n, 100, 100));
  SchedApp app = MakeApp("app", 2);
  app.spec.placement.spread_across = "zone";
  auto r = Schedule(nodes, fleet, app, kNow);
  ASSERT_EQ(r.nodes.size(), 2u);
  EXPECT_EQ(Count(r.nodes)["b1"], 1) << "zone b keeps its replica";
}

TEST(Scheduler, SameInputSameOutputWhateverTheOrder) {
  std::mt19937 rng(7);
  std::vector<SchedNode> nodes;
  nodes.reserve(50);
  for (int i = 0; i < 50; ++i) {
    nodes.push_back(MakeNode("n" + std::to_string(i), uint64_t{1000} + uint64_t{500} * (i % 5),
                             uint64_t{1024} * (1 + i % 3), "r" + std::to_string(i % 3),
                             "z" + std::to_string(i % 2)));
  }
  std::vector<SchedPlacement> fleet;
  fleet.reserve(30);
  for (int i = 0; i < 30; ++i) fleet.push_back(Placed("x", "n" + std::to_string(i % 50), 200, 200));
  SchedApp app = MakeApp("app", 20, 300, 300);
  app.spec.placement.spread_across = "region";
  auto first = Schedule(nodes, fleet, app, kNow, {.explain = true});
  for (int round = 0; round < 5; ++round) {
    std::shuffle(nodes.begin(), nodes.end(), rng);
    std::shuffle(fleet.begin(), fleet.end(), rng);
    auto again = Schedule(nodes, fleet, app, kNow, {.explain = true});
    EXPECT_EQ(again.nodes, first.nodes);
    ASSERT_EQ(again.explanation.size(), first.explanation.size());
    for (size_t i = 0; i < first.explanation.size(); ++i) {
      EXPECT_EQ(again.explanation[i].node, first.explanation[i].node);
      EXPECT_EQ(again.explanation[i].score, first.explanation[i].score);
    }
  }
}

TEST(Scheduler, TiesDoNotAllLandOnTheFirstNode) {
  std::vector<SchedNode> nodes;
  nodes.reserve(10);
  for (int i = 0; i < 10; ++i) nodes.push_back(MakeNode("n" + std::to_string(i)));
  std::vector<SchedApp> apps;
  apps.reserve(20);
  for (int i = 0; i < 20; ++i) apps.push_back(MakeApp("app" + std::to_string(i), 1, 0, 0));
  auto results = ScheduleAll(nodes, {}, apps, kNow);
  std::set<std::string> used;
  for (const auto& r : results) {
    ASSERT_EQ(r.nodes.size(), 1u);
    used.insert(r.nodes[0]);
  }
  EXPECT_GE(used.size(), 4u);
}

TEST(Scheduler, ExplainListsScoresThenReasons) {
  std::vector<SchedNode> nodes = {MakeNode("a"), MakeNode("b", 8000, 8192), MakeNode("c"),
                                  MakeNode("d")};
  nodes[2].online = false;
  nodes[3].labels["zone"] = "x";
  SchedApp app = MakeApp("app", 3, 1000, 1024);
  app.spec.placement.node_selector = {};
  std::vector<SchedPlacement> fleet = {Placed("y", "d", 0, 4000)};
  auto r = Schedule(nodes, fleet, app, kNow, {.explain = true});
  ASSERT_EQ(r.explanation.size(), 4u);
  EXPECT_EQ(r.explanation[0].node, "b");  // twice the room
  EXPECT_TRUE(r.explanation[0].feasible);
  EXPECT_EQ(r.explanation[1].node, "a");
  EXPECT_GE(r.explanation[0].score, r.explanation[1].score);
  EXPECT_EQ(r.explanation[2].node, "c");
  EXPECT_EQ(r.explanation[2].reason, "offline");
  EXPECT_EQ(r.explanation[3].node, "d");
  EXPECT_EQ(r.explanation[3].reason, "insufficient memory: 1024 MB requested, 96 MB free of 4096");
  EXPECT_EQ(r.explanation[0].replicas + r.explanation[1].replicas, 3u);
  EXPECT_EQ(r.unplaced, 0u);
  for (const auto& e : r.explanation) {
    if (!e.feasible) continue;
    EXPECT_NEAR(e.score, (e.balance + 0.5 * e.spread) / 1.5, 1e-9);
  }
}

TEST(Scheduler, UnplacedReasonCountsEveryPredicate) {
  std::vector<SchedNode> nodes = {MakeNode("a", 4000, 512), MakeNode("b"), MakeNode("c"),
                                  MakeNode("d", 4000, 2048)};
  nodes[1].online = false;
  nodes[2].online = false;
  SchedApp app = MakeApp("app", 3, 100, 1024);
  auto r = Schedule(nodes, {}, app, kNow);
  EXPECT_EQ(r.nodes, (std::vector<std::string>{"d", "d"}));
  EXPECT_EQ(r.unplaced, 1u);
  EXPECT_EQ(r.unplaced_reason,
            "0 of 4 nodes can take another replica: 2 insufficient memory, 2 offline");
  EXPECT_EQ(Schedule({}, {}, app, kNow).unplaced_reason, "no nodes");
}

TEST(Scheduler, FleetSchedulesAppsInOrderAndRemovesThem) {
  Fleet fleet({MakeNode("a", 1000, 1024)}, {});
  auto first = fleet.Schedule(MakeApp("one", 1, 600, 100), kNow);
  EXPECT_EQ(first.nodes, std::vector<std::string>{"a"});
  auto second = fleet.Schedule(MakeApp("two", 1, 600, 100), kNow);
  EXPECT_TRUE(second.nodes.empty()) << "the first app's cpu is taken";
  EXPECT_EQ(fleet.Allocated("a").cpu_millicores, 600u);
  EXPECT_EQ(fleet.Replicas("one", "a"), 1u);
  fleet.Remove("one");
  EXPECT_EQ(fleet.Allocated("a").cpu_millicores, 0u);
  EXPECT_EQ(fleet.Schedule(MakeApp("two", 1, 600, 100), kNow).nodes, std::vector<std::string>{"a"});
  // Scheduling an app again with the same spec changes nothing.
  auto same = fleet.Schedule(MakeApp("two", 1, 600, 100), kNow);
  EXPECT_EQ(same.kept, 1u);
  EXPECT_EQ(same.added, 0u);
  EXPECT_TRUE(same.removed.empty());
}

TEST(Scheduler, SchedNodeFromNode) {
  Node n;
  n.name = "e1";
  n.region = "eu";
  n.labels = {{"zone", "b"}};
  n.capabilities = {"gpu"};
  n.capacity.cpu_millicores = 2000;
  n.status = NodeStatus::kOffline;
  n.status_since_ms = 42;
  SchedNode s = SchedNodeFromNode(n);
  EXPECT_EQ(s.zone, "b");
  EXPECT_FALSE(s.online);
  EXPECT_EQ(s.offline_since_ms, 42);
  EXPECT_EQ(s.capacity.cpu_millicores, 2000u);
  n.status = NodeStatus::kDegraded;
  EXPECT_TRUE(SchedNodeFromNode(n).online);
}

// Property: however many apps are scheduled, no node's placed requests exceed what it has.
TEST(Scheduler, NeverOvercommitsAnyNode) {
  for (uint32_t seed = 1; seed <= 5; ++seed) {
    std::mt19937 rng(seed);
    auto pick = [&](uint64_t n) { return std::uniform_int_distribution<uint64_t>(0, n - 1)(rng); };
    std::vector<SchedNode> nodes;
    nodes.reserve(40);
    for (int i = 0; i < 40; ++i) {
      SchedNode n = MakeNode("n" + std::to_string(i), 500 + 500 * pick(8), 256 * (1 + pick(16)),
                             "r" + std::to_string(pick(3)), "z" + std::to_string(pick(2)));
      n.capacity.gpu = static_cast<uint32_t>(pick(3));
      n.reserved.cpu_millicores = 100 * pick(3);
      n.reserved.memory_mb = 64 * pick(3);
      n.online = pick(10) != 0;
      nodes.push_back(n);
    }
    std::vector<SchedPlacement> fleet;
    std::vector<SchedApp> apps;
    for (int a = 0; a < 60; ++a) {
      SchedApp app = MakeApp("app" + std::to_string(a), static_cast<uint32_t>(1 + pick(12)),
                             100 * pick(10), 64 * pick(20));
      app.spec.resources.gpu = pick(4) == 0 ? 1 : 0;
      if (pick(3) == 0) app.spec.placement.spread_across = pick(2) ? "zone" : "region";
      if (pick(4) == 0) app.spec.placement.anti_affinity = {app.name};
      if (pick(5) == 0) app.spec.ports = {{"", static_cast<uint32_t>(8000 + pick(3)), "tcp"}};
      apps.push_back(app);
    }
    Fleet f(nodes, fleet);
    std::map<std::string, AppResources> sum;
    std::map<std::pair<std::string, std::string>, int> ports;
    // Twice over: the second pass reschedules with everything else in place, and shrinks.
    for (int pass = 0; pass < 2; ++pass) {
      for (auto& app : apps) {
        if (pass == 1) app.spec.replicas = static_cast<uint32_t>(pick(8));
        f.Schedule(app, kNow);
      }
    }
    for (const auto& n : nodes) {
      AppResources used = f.Allocated(n.name);
      EXPECT_LE(used.cpu_millicores, n.capacity.cpu_millicores - n.reserved.cpu_millicores)
          << n.name << " seed " << seed;
      EXPECT_LE(used.memory_mb, n.capacity.memory_mb - n.reserved.memory_mb) << n.name;
      EXPECT_LE(used.gpu, n.capacity.gpu) << n.name;
      // An independent recount from the replicas placed.
      AppResources recount;
      for (const auto& app : apps) {
        uint32_t k = f.Replicas(app.name, n.name);
        recount.cpu_millicores += k * app.spec.resources.cpu_millicores;
        recount.memory_mb += k * app.spec.resources.memory_mb;
        recount.gpu += k * app.spec.resources.gpu;
        if (!n.online) {
          EXPECT_EQ(k, 0u) << "nothing lands on an offline node";
        }
        if (!app.spec.placement.anti_affinity.empty() || !app.spec.ports.empty()) {
          EXPECT_LE(k, 1u) << app.name << " on " << n.name;
        }
      }
      EXPECT_EQ(recount, used) << n.name;
    }
  }
}

}  // namespace
}  // namespace verge::cloud
