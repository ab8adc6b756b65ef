// Edge autonomy on real programs: a node whose cloud goes away says so on GET /status (degraded,
// then autonomous), keeps its app running and keeps accepting readings; restarted while the
// cloud is still away it comes back autonomous at once and re-adopts the same app process;
// when the cloud returns it resyncs to connected without restarting anything, the readings of
// the outage reach the cloud, and the cloud's event history has the node's transitions.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "harness.h"

namespace verge::testing {
namespace {

using json = nlohmann::json;
using std::chrono::seconds;

// A replica that runs: "running", or "ready" once its health check (if any) passed.
bool Runs(const json& replica) {
  std::string s = replica.value("status", "");
  return s == "running" || s == "ready";
}

bool CanRunNative() { return ::geteuid() == 0 && std::filesystem::exists("/sys/fs/cgroup"); }

// Kills every process whose command line holds `marker` (workloads the agent leaves running).
void KillMarked(const std::string& marker) {
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    std::string pid = e.path().filename().string();
    if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream f(e.path() / "cmdline");
    std::string cmd((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (cmd.find(marker) != std::string::npos) ::kill(std::stoi(pid), SIGKILL);
  }
}

struct Site {
  TempDir tmp;
  std::unique_ptr<Cloud> cloud;
  std::unique_ptr<Process> node;
  std::string node_dir;
  std::string api;
  std::string marker = "verge-autonomy-" + std::to_string(::getpid());
  std::string cloud_api, cloud_link;

  Site() {
    std::filesystem::permissions(tmp.path(), std::filesystem::perms::others_exec,
                                 std::filesystem::perm_options::add);
    StartCloud();
    node_dir = tmp / "n1";
  }
  ~Site() {
    if (node && node->Running()) {
      node->Signal(SIGKILL);
      node->Wait(seconds(10));
    }
    KillMarked(marker);
  }
  void StartCloud() {
    std::string cfg = tmp / "cloud.yaml";
    std::ofstream(cfg) << "appReconcileInterval: 300ms\n";
    if (cloud_api.empty()) {
      cloud = std::make_unique<Cloud>(tmp, std::vector<std::string>{"--config", cfg});
      cloud_api = cloud->api();
      cloud_link = cloud->link();
    } else {
      cloud = std::make_unique<Cloud>(tmp, std::vector<std::string>{"--config", cfg}, "cloud",
                                      cloud_api, cloud_link);
    }
  }
  void StartNode(bool join, const std::string& labels = "") {
    std::string cfg = tmp / "n1.yaml";
    std::ofstream(cfg) << "reconnectInitial: 100ms\nreconnectMax: 500ms\n"
                       << "appBackoffInitial: 200ms\nappBackoffMax: 2s\nappsOnExit: keep\n";
    NodeOptions o{.name = "n1",
                  .labels = labels,
                  .token = join ? cloud->bootstrap_token() : "",
                  .extra = {"--config", cfg}};
    std::filesystem::remove(node_dir + "/listen.json");
    node = testing::StartNode(tmp, cloud_link, o);
    ASSERT_TRUE(Eventually([&] { return NodeHttpAddress(node_dir).has_value(); })) << node->Log();
    api = *NodeHttpAddress(node_dir);
  }
  json Status() {
    auto r = PlainHttp(api, "GET", "/status");
    if (!r.ok() || r->status != 200) return json();
    return json::parse(r->body, nullptr, false);
  }
  std::string LinkState() {
    json s = Status();
    return s.is_object() ? s.value("linkState", "") : "";
  }
  bool Post(const std::string& token, int64_t from, int n) {
    json batch = json::array();
    for (int i = 0; i < n; ++i)
      batch.push_back({{"metric", "m"}, {"value", from + i}, {"timestamp", from + i}});
    auto r =
        PlainHttp(api, "POST", "/data", batch.dump(),
                  {{"Authorization", "Bearer " + token}, {"Content-Type", "application/json"}});
    return r.ok() && r->status == 200;
  }
  // The local API with the node's local token.
  Result<http::Response> Local(const std::string& method, const std::string& path,
                               const std::string& body = "") {
    return PlainHttp(api, method, path, body,
                     {{"Authorization", "Bearer " + LocalToken(node_dir)},
                      {"Content-Type", "application/json"},
                      {"X-Verge-Operator", "tech-on-site"}});
  }
  std::string RuleSql(const std::string& name) {
    auto r = Local("GET", "/rules");
    if (!r.ok() || r->status != 200) return "";
    for (const auto& rule : json::parse(r->body))
      if (rule["name"] == name) return rule.value("sql", "");
    return "";
  }
  void Apply(const std::string& name, const std::string& yaml) {
    std::string path = tmp / (name + ".yaml");
    std::ofstream(path) << yaml;
    Ctl(*cloud, tmp, {"apply", "-f", path});
  }
  size_t CloudCount(const std::string& device) {
    auto r = cloud->Api("GET", "/api/v1/telemetry?device=" + device + "&limit=100000");
    if (!r.ok() || r->status != 200) return 0;
    return json::parse(r->body).size();
  }
};

TEST(AutonomyLive, OutageAndOfflineRestartKeepEverythingRunningAndResyncWithoutRestarts) {
  if (!CanRunNative()) GTEST_SKIP() << "native workloads need root and cgroups";
  Site s;
  s.StartNode(/*join=*/true);
  ASSERT_TRUE(Eventually([&] { return s.LinkState() == "connected"; })) << s.Status().dump(2);
  std::string token = AddDevice(*s.cloud, "meter", "n1");
  std::string app = s.tmp / "keeper.yaml";
  std::ofstream(app)
      << "apiVersion: verge/v1\nkind: App\nmetadata: {name: keeper}\nspec:\n"
      << "  type: native\n  command: [\"/bin/sh\", \"-c\", \"while true; do sleep 1; "
      << "done\", \"" << s.marker << "\"]\n";
  Ctl(*s.cloud, s.tmp, {"apply", "-f", app});
  int64_t pid = 0;
  ASSERT_TRUE(Eventually([&] {
    json st = s.Status();
    if (!st.is_object() || st["apps"].size() != 1) return false;
    pid = st["apps"][0].value("pid", int64_t{0});
    return st["apps"][0]["name"] == "keeper" && Runs(st["apps"][0]) && pid > 0;
  })) << s.Status().dump(2);
  ASSERT_TRUE(Eventually([&] { return s.Post(token, 1'700'000'000'000, 10); }));

  // The cloud goes away: degraded, then autonomous after three failed attempts.
  s.cloud->Stop(SIGKILL);
  ASSERT_TRUE(Eventually([&] { return s.LinkState() == "autonomous"; })) << s.Status().dump(2);
  json st = s.Status();
  bool saw_degraded = false;
  for (const auto& t : st["transitions"]) saw_degraded |= t["to"] == "degraded";
  EXPECT_TRUE(saw_degraded) << st.dump(2);
  EXPECT_EQ(st["apps"][0]["pid"], pid);
  EXPECT_TRUE(s.Post(token, 1'700'000'000'010, 10));

  // Restarted while the cloud is still away: autonomous from the start, the same process.
  s.node->Signal(SIGTERM);
  ASSERT_TRUE(s.node->Wait(seconds(30)).has_value());
  s.StartNode(/*join=*/false);
  st = s.Status();
  EXPECT_EQ(st.value("linkState", ""), "autonomous") << st.dump(2);
  ASSERT_TRUE(Eventually([&] {
    json now = s.Status();
    return now.is_object() && now["apps"].size() == 1 && Runs(now["apps"][0]);
  })) << s.Status().dump(2);
  EXPECT_EQ(s.Status()["apps"][0]["pid"], pid) << "the workload was started again";
  EXPECT_TRUE(s.Post(token, 1'700'000'000'020, 10));
  // /metrics carries the state too, behind the local token.
  auto m = PlainHttp(s.api, "GET", "/metrics", "",
                     {{"Authorization", "Bearer " + LocalToken(s.node_dir)}});
  ASSERT_TRUE(m.ok());
  EXPECT_NE(m->body.find("verge_node_link_state{state=\"autonomous\"} 1"), std::string::npos)
      << m->body;
  auto unauth = PlainHttp(s.api, "GET", "/metrics");
  ASSERT_TRUE(unauth.ok());
  EXPECT_EQ(unauth->status, 401);

  // The cloud returns: resync to connected, nothing restarted, nothing lost.
  s.StartCloud();
  ASSERT_TRUE(Eventually([&] { return s.LinkState() == "connected"; }, seconds(60)))
      << s.Status().dump(2);
  st = s.Status();
  EXPECT_EQ(st["apps"][0]["pid"], pid);
  EXPECT_EQ(st["apps"][0]["restarts"], 0);
  EXPECT_TRUE(Eventually([&] { return s.CloudCount("meter") == 30; })) << s.CloudCount("meter");
  std::vector<std::string> types;
  EXPECT_TRUE(Eventually([&] {
    types = s.cloud->EventTypes("n1");
    auto has = [&](const std::string& t) {
      return std::find(types.begin(), types.end(), t) != types.end();
    };
    return has("autonomy.degraded") && has("autonomy.autonomous") && has("autonomy.resyncing") &&
           has("autonomy.connected");
  })) << ::testing::PrintToString(types);
  json app_json = CtlJson(*s.cloud, s.tmp, {"apps", "get", "keeper"});
  ASSERT_TRUE(app_json.is_object());
  EXPECT_EQ(app_json["placements"][0]["restarts"], 0) << app_json.dump(2);
}

// Overrides made on site while the cloud is away run at once and survive a restart; on
// reconnect each is resolved by its policy (last-writer-wins for rules and apps, the default):
// the rule the cloud did not touch keeps the override, the app the cloud changed meanwhile runs
// the cloud's new revision; every step is an event in the cloud.
TEST(AutonomyLive, OfflineOverridesAreResolvedByPolicyOnReconnectAndReported) {
  if (!CanRunNative()) GTEST_SKIP() << "native workloads need root and cgroups";
  Site s;
  s.StartNode(/*join=*/true, "site=a");
  ASSERT_TRUE(Eventually([&] { return s.LinkState() == "connected"; })) << s.Status().dump(2);
  const std::string cloud_sql = "SELECT device_id, temp FROM telemetry WHERE temp > 80";
  s.Apply("hot",
          "apiVersion: verge/v1\nkind: Rule\nmetadata: {name: hot}\nspec:\n"
          "  nodeSelector: {site: a}\n  sql: \"" +
              cloud_sql +
              "\"\n"
              "  actions:\n    - log: {}\n");
  auto keeper = [&](const std::string& version) {
    s.Apply("keeper",
            "apiVersion: verge/v1\nkind: App\nmetadata: {name: keeper}\nspec:\n"
            "  type: native\n  version: '" +
                version +
                "'\n"
                "  command: [\"/bin/sh\", \"-c\", \"while true; do sleep 1; done\", \"" +
                s.marker + "\"]\n");
  };
  keeper("1");
  ASSERT_TRUE(Eventually([&] { return s.RuleSql("hot") == cloud_sql; }));
  ASSERT_TRUE(Eventually([&] {
    json st = s.Status();
    return st.is_object() && st["apps"].size() == 1 && Runs(st["apps"][0]);
  })) << s.Status().dump(2);

  s.cloud->Stop(SIGKILL);
  ASSERT_TRUE(Eventually([&] { return s.LinkState() == "autonomous"; }));
  // Bad overrides are refused with the reason, and change nothing.
  auto bad = s.Local("PATCH", "/overrides/rule/hot", R"({"sql": "SELEC nonsense"})");
  ASSERT_TRUE(bad.ok());
  EXPECT_EQ(bad->status, 400) << bad->body;
  auto missing = s.Local("PATCH", "/overrides/rule/nope", R"({"sql": "SELECT 1"})");
  ASSERT_TRUE(missing.ok());
  EXPECT_EQ(missing->status, 404) << missing->body;
  auto unauth = PlainHttp(s.api, "GET", "/overrides");
  ASSERT_TRUE(unauth.ok());
  EXPECT_EQ(unauth->status, 401);
  // A threshold raised on site, and the app stopped.
  const std::string site_sql = "SELECT device_id, temp FROM telemetry WHERE temp > 95";
  auto rule = s.Local("PATCH", "/overrides/rule/hot", json{{"sql", site_sql}}.dump());
  ASSERT_TRUE(rule.ok());
  ASSERT_EQ(rule->status, 200) << rule->body;
  json r = json::parse(rule->body);
  EXPECT_EQ(r["origin"], "local-api:tech-on-site");
  EXPECT_EQ(r["policy"], "last-writer-wins");
  EXPECT_GE(r["version"].get<int>(), 1);
  auto stop = s.Local("POST", "/apps/keeper/stop");
  ASSERT_TRUE(stop.ok());
  ASSERT_EQ(stop->status, 200) << stop->body;
  EXPECT_TRUE(Eventually([&] { return s.RuleSql("hot") == site_sql; }));
  EXPECT_TRUE(Eventually([&] {
    json st = s.Status();
    // Stopped, and shown as stopped on site (the cloud sees the same status).
    return st.is_object() && st["apps"].size() == 1 && st["apps"][0]["status"] == "stopped" &&
           st["apps"][0]["pid"] == 0;
  })) << s.Status().dump(2);

  // The node restarts while offline: the overrides hold.
  s.node->Signal(SIGTERM);
  ASSERT_TRUE(s.node->Wait(seconds(30)).has_value());
  s.StartNode(/*join=*/false, "site=a");
  EXPECT_TRUE(Eventually([&] { return s.RuleSql("hot") == site_sql; }));
  EXPECT_EQ(s.Status()["apps"][0]["status"], "stopped") << s.Status().dump(2);
  s.node->Signal(SIGTERM);
  ASSERT_TRUE(s.node->Wait(seconds(30)).has_value());

  // Meanwhile the cloud changes the app (after the stop), not the rule.
  s.StartCloud();
  keeper("2");
  s.StartNode(/*join=*/false, "site=a");
  ASSERT_TRUE(Eventually([&] { return s.LinkState() == "connected"; }, seconds(60)))
      << s.Status().dump(2);
  EXPECT_TRUE(Eventually([&] {
    json st = s.Status();
    return st.is_object() && st["apps"].size() == 1 && Runs(st["apps"][0]) &&
           st["apps"][0]["revision"] == 2;
  })) << s.Status().dump(2);
  EXPECT_EQ(s.RuleSql("hot"), site_sql) << "the rule's override is newer than the cloud's rule";
  auto list = s.Local("GET", "/overrides");
  ASSERT_TRUE(list.ok());
  json overrides = json::parse(list->body);
  ASSERT_EQ(overrides.size(), 1u) << overrides.dump(2);
  EXPECT_EQ(overrides[0]["kind"], "rule");
  std::vector<std::string> types;
  EXPECT_TRUE(Eventually([&] {
    types = s.cloud->EventTypes("n1");
    return std::count(types.begin(), types.end(), "override.created") == 2 &&
           std::count(types.begin(), types.end(), "override.kept") >= 1 &&
           std::count(types.begin(), types.end(), "override.dropped") == 1;
  })) << ::testing::PrintToString(types);

  // Removing the override on site gives the rule back to the cloud.
  auto del = s.Local("DELETE", "/overrides/rule/hot");
  ASSERT_TRUE(del.ok());
  EXPECT_EQ(del->status, 200) << del->body;
  EXPECT_TRUE(Eventually([&] { return s.RuleSql("hot") == cloud_sql; }));
  EXPECT_TRUE(Eventually([&] {
    types = s.cloud->EventTypes("n1");
    return std::count(types.begin(), types.end(), "override.removed") == 1;
  })) << ::testing::PrintToString(types);
}

}  // namespace
}  // namespace verge::testing
