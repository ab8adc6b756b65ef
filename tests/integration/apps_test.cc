// Apps on real verge-nodes, driven with vergectl as an operator would: replicas land only on
// the nodes their selector matches; a memory hog is killed by its cgroup limit, restarted with
// backoff and reported; a Lua function survives an infinite loop and an allocation bomb; a
// rolling update whose health check fails is rolled back; an agent killed with SIGKILL
// re-adopts its workload instead of starting a second copy; `vergectl logs` shows output.
// Native workloads need root and cgroups: the tests say so and skip without them.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "../unit/runtime/oci_test_image.h"
#include "harness.h"

namespace verge::testing {
namespace {

using json = nlohmann::json;

bool CanRunNative() { return ::geteuid() == 0 && std::filesystem::exists("/sys/fs/cgroup"); }

// Processes whose command line contains `marker`.
int CountProcesses(const std::string& marker) {
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    std::string pid = e.path().filename().string();
    if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream f(e.path() / "cmdline");
    std::string cmd((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (cmd.find(marker) != std::string::npos && cmd.find("vergectl") == std::string::npos) ++n;
  }
  return n;
}

// A cloud and nodes that reconcile and restart quickly; nodes stop their workloads when they
// exit, so that nothing outlives the test.
struct Fleet {
  TempDir tmp;
  std::unique_ptr<Cloud> cloud;
  std::map<std::string, std::unique_ptr<Process>> nodes;
  std::map<std::string, NodeOptions> options;

  Fleet() {
    // Native workloads run as `nobody`, which must reach the nodes' data dirs by path.
    std::filesystem::permissions(tmp.path(), std::filesystem::perms::others_exec,
                                 std::filesystem::perm_options::add);
    std::string cfg = tmp / "cloud.yaml";
    std::ofstream(cfg) << "appReconcileInterval: 300ms\n";
    cloud = std::make_unique<Cloud>(tmp, std::vector<std::string>{"--config", cfg});
  }
  ~Fleet() {
    for (auto& [name, p] : nodes) StopNode(name);
  }

  void AddNode(const std::string& name, const std::string& labels, const std::string& region = "") {
    std::string cfg = tmp / (name + ".yaml");
    std::ofstream(cfg) << "reconnectInitial: 100ms\nreconnectMax: 500ms\n"
                       << "appBackoffInitial: 200ms\nappBackoffMax: 2s\nappsOnExit: stop\n";
    NodeOptions o{.name = name,
                  .region = region,
                  .labels = labels,
                  .token = cloud->bootstrap_token(),
                  .extra = {"--config", cfg}};
    options[name] = o;
    nodes[name] = StartNode(tmp, cloud->link(), o);
  }
  void WaitOnline() {
    for (auto& [name, p] : nodes) {
      ASSERT_TRUE(Eventually([&] { return cloud->StatusOf(name) == "online"; })) << p->Log();
    }
  }
  void StopNode(const std::string& name) {
    auto& p = nodes[name];
    if (!p || !p->Running()) return;
    p->Signal(SIGTERM);
    p->Wait(std::chrono::seconds(30));
  }
  void RestartNode(const std::string& name) {
    NodeOptions o = options[name];
    o.token.clear();
    nodes[name] = StartNode(tmp, cloud->link(), o);
  }

  std::string Apply(const std::string& yaml) {
    static int n = 0;
    std::string path = tmp / ("app-" + std::to_string(++n) + ".yaml");
    std::ofstream(path) << yaml;
    return Ctl(*cloud, tmp, {"apply", "-f", path});
  }
  json App(const std::string& name) { return CtlJson(*cloud, tmp, {"apps", "get", name}); }
  // Eventually true of `vergectl apps get NAME -o json`; the last answer on failure.
  bool AppIs(const std::string& name, const std::function<bool(const json&)>& pred, json* last,
             std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
    return Eventually(
        [&] {
          *last = App(name);
          return last->is_object() && pred(*last);
        },
        timeout);
  }
};

std::string LoopCommand(const std::string& marker) {
  return "[\"/bin/sh\", \"-c\", \"echo hello from $VERGE_WORKLOAD; while true; do sleep 1; done\", "
         "\"" +
         marker + "\"]";
}

TEST(AppsLive, NativeReplicasLandOnlyOnMatchingNodesAndLogsReachVergectl) {
  if (!CanRunNative()) GTEST_SKIP() << "native workloads need root and cgroups";
  Fleet f;
  f.AddNode("e1", "role=edge,zone=a");
  f.AddNode("e2", "role=edge,zone=b");
  f.AddNode("e3", "role=edge,zone=c");
  f.AddNode("c1", "role=core,zone=a");
  f.AddNode("c2", "role=core,zone=b");
  f.WaitOnline();
  std::string marker = "verge-test-replicas-" + std::to_string(::getpid());
  EXPECT_NE(f.Apply("apiVersion: verge/v1\nkind: App\nmetadata: {name: web}\nspec:\n"
                    "  type: native\n  version: '1.0'\n  replicas: 3\n"
                    "  command: " +
                    LoopCommand(marker) +
                    "\n"
                    "  resources: {cpu: 100m, memory: 32Mi}\n"
                    "  placement:\n    nodeSelector: {role: edge}\n    antiAffinity: [web]\n")
                .find("app/web created"),
            std::string::npos);
  json app;
  ASSERT_TRUE(f.AppIs(
      "web", [](const json& a) { return a["readyReplicas"] == 3; }, &app))
      << app.dump(2);
  EXPECT_EQ(app["replicas"], 3);
  std::set<std::string> placed;
  for (const auto& p : app["placements"]) {
    placed.insert(p["node"].get<std::string>());
    EXPECT_EQ(p["status"], "ready") << p;
    EXPECT_EQ(p["restarts"], 0) << p;
  }
  EXPECT_EQ(placed, (std::set<std::string>{"e1", "e2", "e3"}));
  EXPECT_EQ(CountProcesses(marker), 3);

  // The scheduler says why the core nodes were left out.
  json explain = CtlJson(*f.cloud, f.tmp, {"apps", "explain", "web"});
  for (const auto& n : explain["nodes"]) {
    if (n["node"] == "c1" || n["node"] == "c2") {
      EXPECT_FALSE(n["feasible"].get<bool>()) << n;
      EXPECT_NE(n.value("reason", "").find("role"), std::string::npos) << n;
    }
  }

  std::string logs = Ctl(*f.cloud, f.tmp, {"logs", "web", "--node", "e2", "--tail", "5"});
  EXPECT_NE(logs.find("hello from web-"), std::string::npos) << logs;
  EXPECT_NE(logs.find("[e2 web-"), std::string::npos) << logs;

  Ctl(*f.cloud, f.tmp, {"apps", "delete", "web"});
  EXPECT_TRUE(Eventually([&] { return CountProcesses(marker) == 0; }));
}

TEST(AppsLive, NativeAppRunsFromAPushedTarballArtifact) {
  if (!CanRunNative()) GTEST_SKIP() << "native workloads need root and cgroups";
  Fleet f;
  f.AddNode("t1", "");
  f.WaitOnline();
  std::string src = f.tmp / "tool";
  std::filesystem::create_directories(src + "/bin");
  std::ofstream(src + "/bin/run.sh") << "#!/bin/sh\necho tool says $1\nexec sleep 1000\n";
  std::filesystem::permissions(src + "/bin/run.sh", std::filesystem::perms::owner_all |
                                                        std::filesystem::perms::group_read |
                                                        std::filesystem::perms::group_exec |
                                                        std::filesystem::perms::others_read |
                                                        std::filesystem::perms::others_exec);
  std::string tarball = f.tmp / "tool.tar.gz";
  ASSERT_EQ(std::system(("tar -czf " + tarball + " -C " + src + " bin").c_str()), 0);
  json pushed = CtlJson(*f.cloud, f.tmp, {"artifacts", "push", tarball});
  ASSERT_TRUE(pushed.is_object()) << pushed;
  f.Apply(
      "apiVersion: verge/v1\nkind: App\nmetadata: {name: tool}\nspec:\n  type: native\n"
      "  artifact: " +
      pushed["ref"].get<std::string>() +
      "\n"
      "  command: [\"bin/run.sh\", \"hello\"]\n");
  json app;
  ASSERT_TRUE(f.AppIs(
      "tool", [](const json& a) { return a["readyReplicas"] == 1; }, &app))
      << app.dump(2);
  EXPECT_TRUE(Eventually([&] {
    return Ctl(*f.cloud, f.tmp, {"logs", "tool"}).find("tool says hello") != std::string::npos;
  }));
}

TEST(AppsLive, MemoryHogIsKilledByItsLimitRestartedWithBackoffAndReported) {
  if (!CanRunNative()) GTEST_SKIP() << "native workloads need root and cgroups";
  Fleet f;
  f.AddNode("m1", "role=edge");
  f.WaitOnline();
  // Doubles a shell string until the 32 MiB limit stops it.
  f.Apply(
      "apiVersion: verge/v1\nkind: App\nmetadata: {name: hog}\nspec:\n  type: native\n"
      "  command: [\"/bin/sh\", \"-c\", \"x=a; while true; do x=$x$x; done\"]\n"
      "  resources: {memory: 32Mi}\n");
  json app;
  ASSERT_TRUE(f.AppIs(
      "hog",
      [](const json& a) {
        const auto& p = a["placements"];
        return p.size() == 1 && p[0]["restarts"].get<int>() >= 2 && p[0]["status"] == "crashloop";
      },
      &app))
      << app.dump(2);
  const json& p = app["placements"][0];
  EXPECT_NE(p["lastError"].get<std::string>().find("memory"), std::string::npos) << p;
  EXPECT_GE(p.value("oomKills", 0), 1) << p;
  EXPECT_EQ(app["readyReplicas"], 0);
}

TEST(AppsLive, ContainerAppFromAPushedImageRunsUnderTheOciRuntime) {
  if (!CanRunNative()) GTEST_SKIP() << "containers need root and cgroups";
  if (::access("/usr/sbin/runc", X_OK) != 0 && ::access("/usr/bin/runc", X_OK) != 0)
    GTEST_SKIP() << "no OCI runtime: runc is not installed (scripts/install-deps installs it)";
  if (!HaveBusybox()) GTEST_SKIP() << "busybox-static is needed to build the test image";
  Fleet f;
  f.AddNode("o1", "");
  f.WaitOnline();
  std::string work = f.tmp / "image-work";
  std::filesystem::create_directories(work);
  std::string archive = BuildBusyboxImage(work, work);
  json pushed = CtlJson(*f.cloud, f.tmp, {"artifacts", "push", archive});
  ASSERT_TRUE(pushed.is_object()) << pushed;
  std::string ref = pushed["ref"];
  f.Apply(
      "apiVersion: verge/v1\nkind: App\nmetadata: {name: boxed}\nspec:\n  type: container\n"
      "  image: " +
      ref +
      "\n"
      "  command: [\"/bin/sh\", \"-c\", \"echo from-container $(hostname); "
      "while true; do sleep 1; done\"]\n"
      "  resources: {memory: 64Mi}\n");
  json app;
  ASSERT_TRUE(f.AppIs(
      "boxed", [](const json& a) { return a["readyReplicas"] == 1; }, &app))
      << app.dump(2);
  EXPECT_TRUE(Eventually([&] {
    return Ctl(*f.cloud, f.tmp, {"logs", "boxed"}).find("from-container boxed-0") !=
           std::string::npos;
  }));
  Ctl(*f.cloud, f.tmp, {"apps", "delete", "boxed"});
  EXPECT_TRUE(Eventually([&] { return !std::filesystem::exists(f.tmp / "o1/apps/boxed-0"); }));
}

TEST(AppsLive, LuaFunctionSurvivesAnInfiniteLoopAndAnAllocationBomb) {
  Fleet f;
  f.AddNode("f1", "");
  f.WaitOnline();
  f.Apply(
      "apiVersion: verge/v1\nkind: App\nmetadata: {name: double}\nspec:\n  type: function\n"
      "  limits: {instructions: 1000000, memoryMB: 8}\n"
      "  source: |\n"
      "    function handle(e)\n"
      "      if e.mode == 'loop' then while true do end end\n"
      "      if e.mode == 'bomb' then local t = {} for i = 1, 1e9 do t[i] = string.rep('x', 1000) "
      "end end\n"
      "      return {double = e.x * 2}\n"
      "    end\n");
  json app;
  ASSERT_TRUE(f.AppIs(
      "double", [](const json& a) { return a["readyReplicas"] == 1; }, &app))
      << app.dump(2);
  std::string dir = f.tmp / "f1";
  auto address = NodeHttpAddress(dir);
  ASSERT_TRUE(address);
  std::map<std::string, std::string> auth = {{"Authorization", "Bearer " + LocalToken(dir)}};
  auto call = [&](const std::string& body) {
    return PlainHttp(*address, "POST", "/functions/double", body, auth);
  };
  auto ok = call(R"({"x": 21})");
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->status, 200) << ok->body;
  EXPECT_EQ(json::parse(ok->body), json::parse(R"([{"double": 42}])"));

  auto loop = call(R"({"mode": "loop", "x": 1})");
  ASSERT_TRUE(loop.ok());
  EXPECT_GE(loop->status, 400);
  EXPECT_NE(loop->body.find("instruction"), std::string::npos) << loop->body;

  auto bomb = call(R"({"mode": "bomb", "x": 1})");
  ASSERT_TRUE(bomb.ok());
  EXPECT_GE(bomb->status, 400);
  EXPECT_NE(bomb->body.find("memory"), std::string::npos) << bomb->body;

  auto again = call(R"({"x": 2})");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(json::parse(again->body), json::parse(R"([{"double": 4}])")) << again->body;
}

TEST(AppsLive, RollingUpdateWhoseHealthCheckFailsIsRolledBack) {
  if (!CanRunNative()) GTEST_SKIP() << "native workloads need root and cgroups";
  Fleet f;
  for (const char* n : {"r1", "r2", "r3"}) f.AddNode(n, "role=edge");
  f.WaitOnline();
  auto doc = [](const std::string& version, const std::string& probe) {
    return "apiVersion: verge/v1\nkind: App\nmetadata: {name: api}\nspec:\n  type: native\n"
           "  version: '" +
           version +
           "'\n  replicas: 3\n"
           "  command: [\"/bin/sh\", \"-c\", \"while true; do sleep 1; done\"]\n"
           "  placement: {antiAffinity: [api]}\n"
           "  rollout: {maxUnavailable: 1, progressDeadlineSeconds: 600}\n"
           "  healthCheck:\n    exec: {command: [\"" +
           probe +
           "\"]}\n"
           "    periodSeconds: 1\n    failureThreshold: 2\n";
  };
  f.Apply(doc("1.0", "/bin/true"));
  json app;
  ASSERT_TRUE(f.AppIs(
      "api",
      [](const json& a) { return a["readyReplicas"] == 3 && a["rollout"]["state"] == "complete"; },
      &app))
      << app.dump(2);
  EXPECT_EQ(app["revision"], 1);

  f.Apply(doc("2.0", "/bin/false"));
  // Never more than maxUnavailable replicas on the failing revision, and then back to 1.
  size_t most_on_new = 0;
  ASSERT_TRUE(f.AppIs(
      "api",
      [&](const json& a) {
        size_t on_new = 0;
        for (const auto& p : a["placements"]) on_new += p["revision"] == 2 ? 1 : 0;
        most_on_new = std::max(most_on_new, on_new);
        return a["rollout"]["state"] == "rolled_back" && a["readyReplicas"] == 3 && on_new == 0;
      },
      &app, std::chrono::seconds(90)))
      << app.dump(2);
  EXPECT_LE(most_on_new, 1u);
  EXPECT_EQ(app["revision"], 1);
  EXPECT_NE(app["rollout"]["message"].get<std::string>().find("health check"), std::string::npos)
      << app["rollout"];
  json status = CtlJson(*f.cloud, f.tmp, {"apps", "rollout", "status", "api"});
  EXPECT_EQ(status["state"], "rolled_back") << status;
  EXPECT_EQ(status["history"].size(), 2u) << status;
}

TEST(AppsLive, AgentKilledWithSigkillReadoptsItsWorkloadInsteadOfStartingAnother) {
  if (!CanRunNative()) GTEST_SKIP() << "native workloads need root and cgroups";
  Fleet f;
  f.AddNode("k1", "");
  f.WaitOnline();
  std::string marker = "verge-test-adopt-" + std::to_string(::getpid());
  f.Apply(
      "apiVersion: verge/v1\nkind: App\nmetadata: {name: svc}\nspec:\n  type: native\n"
      "  command: " +
      LoopCommand(marker) + "\n");
  json app;
  ASSERT_TRUE(f.AppIs(
      "svc", [](const json& a) { return a["readyReplicas"] == 1; }, &app))
      << app.dump(2);
  std::string started = app["placements"][0]["startedAt"];
  ASSERT_EQ(CountProcesses(marker), 1);

  f.nodes["k1"]->Signal(SIGKILL);
  f.nodes["k1"]->Wait(std::chrono::seconds(10));
  // The workload outlives its agent.
  EXPECT_EQ(CountProcesses(marker), 1);
  f.RestartNode("k1");
  ASSERT_TRUE(Eventually([&] { return f.cloud->StatusOf("k1") == "online"; }));
  ASSERT_TRUE(f.AppIs(
      "svc",
      [&](const json& a) {
        const auto& p = a["placements"][0];
        // Reported by the new agent process, which adopted the same run.
        return a["readyReplicas"] == 1 && p.value("startedAt", "") == started;
      },
      &app))
      << app.dump(2);
  EXPECT_EQ(app["placements"][0]["restarts"], 0);
  EXPECT_EQ(CountProcesses(marker), 1);
}

}  // namespace
}  // namespace verge::testing
