// Rules running on a real verge-node. Created on its local API: live telemetry through a rule
// to a webhook, rules chained through a memory stream, runtime errors counted without stopping
// anything, an open window that survives SIGKILL through its checkpoint, and an MQTT stream
// turned into a device command on the node's broker, a set point written to a Modbus device.
// Applied in the cloud with vergectl: the rule reaches only the nodes its selector matches, its
// alerts (also those raised while the cloud was down) reach `vergectl alerts list` exactly once,
// and `vergectl rules status` shows how it runs.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <modbus.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <bit>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <optional>

#include "common/fs.h"
#include "common/http_server.h"
#include "harness.h"
#include "mqtt_device.h"

namespace verge::testing {
namespace {

using json = nlohmann::json;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Records what webhooks POST to it.
class Receiver {
 public:
  Receiver() {
    server_ = std::make_unique<http::HttpServer>(http::HttpServer::Options{},
                                                 [this](const http::Request& r) {
                                                   std::lock_guard lock(mu_);
                                                   got_.emplace_back(r.path, r.body);
                                                   return http::Response{200, "", "{}"};
                                                 });
    address_ = *server_->Listen("127.0.0.1:0");
    server_->Start();
  }
  ~Receiver() { server_->Stop(); }
  std::string url(const std::string& path) const { return "http://" + address_ + path; }
  std::vector<json> Bodies(const std::string& path) {
    std::lock_guard lock(mu_);
    std::vector<json> out;
    for (const auto& [p, b] : got_) {
      if (p == path) out.push_back(json::parse(b));
    }
    return out;
  }

 private:
  std::unique_ptr<http::HttpServer> server_;
  std::string address_;
  std::mutex mu_;
  std::vector<std::pair<std::string, std::string>> got_;
};

struct Node {
  TempDir tmp;
  std::unique_ptr<Cloud> cloud;
  std::unique_ptr<Process> proc;
  std::string dir, api, local;
  std::vector<std::string> extra;

  void Start() {
    cloud = std::make_unique<Cloud>(tmp, std::vector<std::string>{});
    Restart();
    ASSERT_TRUE(Eventually([&] { return cloud->StatusOf("r1") == "online"; }));
  }
  void Restart() {
    NodeOptions o{"r1", "eu", "", "gateway", "300ms", cloud->bootstrap_token()};
    o.extra = {"--config", FastReconnectConfig(tmp, "r1")};
    o.extra.insert(o.extra.end(), extra.begin(), extra.end());
    dir = tmp / "r1";
    std::filesystem::remove(dir + "/listen.json");
    proc = StartNode(tmp, cloud->link(), o);
    ASSERT_TRUE(Eventually([&] { return NodeHttpAddress(dir).has_value(); })) << proc->Log();
    api = *NodeHttpAddress(dir);
    local = LocalToken(dir);
  }
  http::Response Call(const std::string& method, const std::string& path, const json& body = {}) {
    auto r =
        PlainHttp(api, method, path, body.is_null() ? "" : body.dump(),
                  {{"Authorization", "Bearer " + local}, {"Content-Type", "application/json"}});
    return r.ok() ? *r : http::Response{0, "", r.status().message()};
  }
  json Rule(const std::string& name) {
    auto r = Call("GET", "/rules/" + name);
    return r.status == 200 ? json::parse(r.body) : json();
  }
  // The first reading of a device waits until its node knows it.
  bool PostFirst(const std::string& token, const json& reading) {
    return Eventually([&] { return Post(token, reading); });
  }
  bool Post(const std::string& token, const json& reading) {
    auto r =
        PlainHttp(api, "POST", "/data", reading.dump(),
                  {{"Authorization", "Bearer " + token}, {"Content-Type", "application/json"}});
    return r.ok() && r->status == 200;
  }
};

TEST(RulesLive, TelemetryRuleCallsAWebhookAndChainsThroughAMemoryStream) {
  Node n;
  n.Start();
  Receiver hook;
  std::string token = AddDevice(*n.cloud, "boiler", "r1");
  ASSERT_FALSE(token.empty());

  auto hot = n.Call("POST", "/rules",
                    {{"name", "hot"},
                     {"sql", "SELECT device_id, temp FROM telemetry WHERE temp > 50"},
                     {"actions",
                      {{{"memory", {{"topic", "hot"}}}},
                       {{"webhook", {{"url", hook.url("/hot/{{.device_id}}")}}}}}}});
  ASSERT_EQ(hot.status, 201) << hot.body;
  auto count = n.Call(
      "POST", "/rules",
      {{"name", "hot-count"},
       {"streams", {R"(CREATE STREAM hot () WITH (DATASOURCE="hot", TYPE="memory"))"}},
       {"sql", "SELECT count(*) AS n, max(temp) AS hottest FROM hot GROUP BY COUNTWINDOW(2)"},
       {"actions", {{{"webhook", {{"url", hook.url("/count")}}}}}}});
  ASSERT_EQ(count.status, 201) << count.body;
  // A rule whose every event fails (a string that is no number): counted, and nothing else stops.
  auto bad = n.Call("POST", "/rules",
                    {{"name", "bad-cast"},
                     {"sql", R"(SELECT cast(device_id, "bigint") AS id FROM telemetry)"},
                     {"actions", {{{"log", json::object()}}}}});
  ASSERT_EQ(bad.status, 201) << bad.body;

  auto invalid = n.Call("POST", "/rules",
                        {{"name", "broken"},
                         {"sql", "SELECT temp\nFROM telemetry WHERE"},
                         {"actions", {{{"log", json::object()}}}}});
  EXPECT_EQ(invalid.status, 400) << invalid.body;
  auto ij = json::parse(invalid.body);
  EXPECT_EQ(ij["line"], 2) << invalid.body;
  EXPECT_GT(ij["column"].get<int>(), 0) << invalid.body;
  auto again = n.Call("POST", "/rules",
                      {{"name", "hot"},
                       {"sql", "SELECT * FROM telemetry"},
                       {"actions", {{{"log", json::object()}}}}});
  EXPECT_EQ(again.status, 409) << again.body;

  int64_t t = NowMs();
  for (double temp : {40.0, 55.0, 60.0, 70.0}) {
    ASSERT_TRUE(n.PostFirst(token, {{"metrics", {{"temp", temp}}}, {"timestamp", t}}));
    t += 10;
  }
  ASSERT_TRUE(Eventually([&] { return hook.Bodies("/hot/boiler").size() == 3; })) << n.proc->Log();
  std::vector<double> temps;
  for (const auto& b : hook.Bodies("/hot/boiler")) temps.push_back(b["temp"].get<double>());
  EXPECT_EQ(temps, (std::vector<double>{55, 60, 70}));
  ASSERT_TRUE(Eventually([&] { return hook.Bodies("/count").size() == 1; }));
  EXPECT_EQ(hook.Bodies("/count")[0], (json{{"n", 2}, {"hottest", 60.0}}));

  json h = n.Rule("hot");
  EXPECT_EQ(h["status"], "running");
  EXPECT_EQ(h["origin"], "local");
  EXPECT_EQ(h["recordsIn"], 4);
  EXPECT_EQ(h["recordsOut"], 3);
  EXPECT_EQ(h["exceptions"], 0);
  ASSERT_TRUE(Eventually([&] { return n.Rule("bad-cast")["exceptions"] == 4; }))
      << n.Rule("bad-cast");
  EXPECT_NE(n.Rule("bad-cast")["lastError"].get<std::string>(), "");

  // Stopped, a rule sees nothing; started again, it goes on.
  EXPECT_EQ(n.Call("POST", "/rules/hot/stop").status, 200);
  EXPECT_EQ(n.Rule("hot")["status"], "stopped");
  ASSERT_TRUE(n.Post(token, {{"metrics", {{"temp", 99.0}}}, {"timestamp", t}}));
  ASSERT_TRUE(Eventually([&] { return n.Rule("bad-cast")["exceptions"] == 5; }));
  EXPECT_EQ(n.Call("POST", "/rules/hot/start").status, 200);
  ASSERT_TRUE(n.Post(token, {{"metrics", {{"temp", 98.0}}}, {"timestamp", t + 10}}));
  ASSERT_TRUE(Eventually([&] { return hook.Bodies("/hot/boiler").size() == 4; }));
  EXPECT_EQ(hook.Bodies("/hot/boiler").back()["temp"], 98.0);

  EXPECT_EQ(n.Call("DELETE", "/rules/bad-cast").status, 200);
  EXPECT_EQ(n.Call("GET", "/rules/bad-cast").status, 404);
  EXPECT_EQ(json::parse(n.Call("GET", "/rules").body).size(), 2u);
  EXPECT_EQ(PlainHttp(n.api, "GET", "/rules")->status, 401);
}

TEST(RulesLive, AHangingWebhookHoldsUpOnlyItsOwnAction) {
  Node n;
  n.Start();
  Receiver hook;
  // Accepts connections (the kernel's backlog) and never answers.
  int hang = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(hang, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(hang, 64), 0);
  socklen_t len = sizeof addr;
  getsockname(hang, reinterpret_cast<sockaddr*>(&addr), &len);
  std::string hang_url = "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)) + "/x";
  std::string token = AddDevice(*n.cloud, "fan", "r1");
  auto r = n.Call("POST", "/rules",
                  {{"name", "both"},
                   {"sql", "SELECT device_id, rpm FROM telemetry"},
                   {"actions",
                    {{{"webhook", {{"url", hang_url}, {"timeoutMs", 60000}, {"bufferLength", 2}}}},
                     {{"webhook", {{"url", hook.url("/ok")}}}}}}});
  ASSERT_EQ(r.status, 201) << r.body;
  int64_t t = NowMs();
  ASSERT_TRUE(n.PostFirst(token, {{"metrics", {{"rpm", 0.0}}}, {"timestamp", t}}));
  for (int i = 1; i < 20; ++i)
    ASSERT_TRUE(n.Post(token, {{"metrics", {{"rpm", 100.0 * i}}}, {"timestamp", t + i}}));
  ASSERT_TRUE(Eventually([&] { return hook.Bodies("/ok").size() == 20; })) << n.Rule("both");
  json both = n.Rule("both");
  EXPECT_EQ(both["status"], "running");
  EXPECT_EQ(both["recordsOut"], 20);
  // The hanging action holds one output in delivery and keeps the newest two; 17 dropped.
  EXPECT_EQ(both["actionStats"][0]["delivered"], 0) << both;
  EXPECT_EQ(both["actionStats"][0]["dropped"], 17) << both;
  EXPECT_EQ(both["dropped"], 17) << both;
  EXPECT_EQ(both["actionStats"][1]["delivered"], 20) << both;
  close(hang);
}

TEST(RulesLive, AModbusActionWritesASetPointToTheDevice) {
  Node n;
  n.Start();
  ModbusSim sim = StartModbusSim(n.tmp, "127.0.0.1:0", 1, "sim.log");
  json modbus = {{"host", sim.host},
                 {"port", sim.port},
                 {"unitId", 1},
                 {"registers",
                  {{{"metric", "temperature"},
                    {"address", 0},
                    {"kind", "input"},
                    {"type", "int16"},
                    {"scale", 0.01},
                    {"interval", "1s"}}}}};
  ASSERT_FALSE(AddDevice(*n.cloud, "plc", "r1", {{"modbus", modbus}}).empty());
  std::string token = AddDevice(*n.cloud, "panel", "r1");
  auto r = n.Call("POST", "/rules",
                  {{"name", "setpoint"},
                   {"sql", R"(SELECT setpoint FROM telemetry WHERE device_id = "panel")"},
                   {"actions",
                    {{{"modbus",
                       {{"device", "plc"},
                        {"address", 60},
                        {"type", "float32"},
                        {"valueColumn", "setpoint"},
                        {"retryIntervalMs", 100}}}}}}});
  ASSERT_EQ(r.status, 201) << r.body;
  ASSERT_TRUE(n.PostFirst(token, {{"metrics", {{"setpoint", 42.5}}}, {"timestamp", NowMs()}}));
  // Read holding registers 60-61 back from the simulator: big-endian float32.
  auto read = [&]() -> std::optional<float> {
    modbus_t* ctx = modbus_new_tcp(sim.host.c_str(), sim.port);
    if (!ctx) return std::nullopt;
    modbus_set_slave(ctx, 1);
    std::optional<float> out;
    uint16_t regs[2] = {0, 0};
    if (modbus_connect(ctx) == 0 && modbus_read_registers(ctx, 60, 2, regs) == 2) {
      out = std::bit_cast<float>(static_cast<uint32_t>(regs[0]) << 16 | regs[1]);
    }
    modbus_close(ctx);
    modbus_free(ctx);
    return out;
  };
  ASSERT_TRUE(Eventually([&] { return read() == 42.5f; })) << n.Rule("setpoint");
  json s = n.Rule("setpoint");
  EXPECT_EQ(s["actionStats"][0]["delivered"], 1) << s;
  EXPECT_EQ(s["exceptions"], 0) << s;
}

TEST(RulesLive, AnOpenWindowSurvivesSigkillThroughItsCheckpoint) {
  Node n;
  n.Start();
  Receiver hook;
  std::string token = AddDevice(*n.cloud, "meter", "r1");
  auto r = n.Call("POST", "/rules",
                  {{"name", "four"},
                   {"sql",
                    "SELECT count(*) AS n, sum(kwh) AS total FROM telemetry "
                    "GROUP BY COUNTWINDOW(4)"},
                   {"actions", {{{"webhook", {{"url", hook.url("/four")}}}}}},
                   {"options", {{"checkpointIntervalMs", 200}}}});
  ASSERT_EQ(r.status, 201) << r.body;
  int64_t t = NowMs();
  ASSERT_TRUE(n.PostFirst(token, {{"metrics", {{"kwh", 1.0}}}, {"timestamp", t}}));
  ASSERT_TRUE(n.Post(token, {{"metrics", {{"kwh", 2.0}}}, {"timestamp", t + 1}}));
  // Saved, and batched for the uplink (so no journal replay feeds the rule these again).
  ASSERT_TRUE(Eventually([&] { return n.Rule("four")["checkpointRecordsIn"] == 2; }))
      << n.Rule("four");
  ASSERT_TRUE(Eventually([&] {
    auto st = PlainHttp(n.api, "GET", "/stats", "", {{"Authorization", "Bearer " + n.local}});
    return st.ok() && json::parse(st->body)["buffer"]["journalEntries"] == 0;
  }));
  n.proc->Signal(SIGKILL);
  n.proc->Wait(std::chrono::seconds(10));
  n.Restart();
  EXPECT_EQ(n.Rule("four")["recordsIn"], 2) << n.Rule("four");
  ASSERT_TRUE(n.Post(token, {{"metrics", {{"kwh", 3.0}}}, {"timestamp", t + 2}}));
  ASSERT_TRUE(n.Post(token, {{"metrics", {{"kwh", 4.0}}}, {"timestamp", t + 3}}));
  ASSERT_TRUE(Eventually([&] { return hook.Bodies("/four").size() == 1; })) << n.proc->Log();
  EXPECT_EQ(hook.Bodies("/four")[0], (json{{"n", 4}, {"total", 10.0}}));
}

TEST(RulesLive, AnMqttStreamBecomesADeviceCommand) {
  Node n;
  int port = FreePort();
  n.extra = {"--mqtt-listen", "127.0.0.1:" + std::to_string(port)};
  n.Start();
  std::string token = AddDevice(*n.cloud, "pump", "r1");
  auto r = n.Call(
      "POST", "/rules",
      {{"name", "trip"},
       {"streams", {R"(CREATE STREAM alarms (level BIGINT) WITH (DATASOURCE="devices/+/alarms"))"}},
       {"sql", R"(SELECT level, "stop" AS cmd FROM alarms WHERE level >= 3)"},
       {"actions", {{{"mqtt", {{"topic", "devices/pump/commands/stop"}}}}}}});
  ASSERT_EQ(r.status, 201) << r.body;

  TestDevice pump("pump", token, port);
  // The broker learns the device from the desired state: retry until it is admitted.
  ASSERT_TRUE(Eventually([&] { return TestDevice("pump", token, port).Connect() == 0; }));
  ASSERT_EQ(pump.Connect(), 0);
  ASSERT_TRUE(pump.Subscribe("devices/pump/commands/#"));
  // The rule's client subscribes in the background: publish until a command comes back.
  ASSERT_TRUE(Eventually([&] {
    pump.Publish("devices/pump/alarms", R"({"level": 1})");
    pump.Publish("devices/pump/alarms", R"({"level": 5})");
    return !pump.received().empty();
  })) << n.proc->Log();
  auto got = pump.received();
  EXPECT_EQ(got[0].first, "devices/pump/commands/stop");
  EXPECT_EQ(json::parse(got[0].second), (json{{"level", 5}, {"cmd", "stop"}}));
  json trip = n.Rule("trip");
  EXPECT_GE(trip["recordsIn"].get<int>(), 2);
  EXPECT_GE(trip["recordsOut"].get<int>(), 1) << trip;
}

TEST(RulesCloud, AppliedRuleRunsWhereItsSelectorMatchesAndItsAlertsReachVergectl) {
  Node n;
  n.Start();
  std::string api = n.cloud->api(), link = n.cloud->link();
  ASSERT_EQ(n.cloud->Api("PATCH", "/api/v1/nodes/r1", R"({"labels": {"site": "plant-1"}})")->status,
            200);
  NodeOptions o{"r2", "eu", "site=elsewhere", "gateway", "300ms", n.cloud->bootstrap_token()};
  o.extra = {"--config", FastReconnectConfig(n.tmp, "r2")};
  auto r2 = StartNode(n.tmp, link, o);
  ASSERT_TRUE(Eventually([&] { return n.cloud->StatusOf("r2") == "online"; }));
  std::string token = AddDevice(*n.cloud, "boiler", "r1");

  std::string file = n.tmp / "hot.yaml";
  ASSERT_TRUE(WriteFileAtomic(file, R"(apiVersion: verge/v1
kind: Rule
metadata:
  name: hot
spec:
  nodeSelector: {site: plant-1}
  sql: "SELECT device_id, temp FROM telemetry WHERE temp > 80"
  actions:
    - alert: {severity: warning, message: "{{.device_id}} is hot"}
)",
                              0644)
                  .ok());
  EXPECT_NE(Ctl(*n.cloud, n.tmp, {"apply", "-f", file}).find("rule/hot created"),
            std::string::npos);
  ASSERT_TRUE(Eventually([&] { return n.Rule("hot")["status"] == "running"; })) << n.Rule("hot");
  EXPECT_EQ(n.Rule("hot")["origin"], "cloud");
  auto on_r2 = PlainHttp(*NodeHttpAddress(n.tmp / "r2"), "GET", "/rules/hot", "",
                         {{"Authorization", "Bearer " + LocalToken(n.tmp / "r2")}});
  ASSERT_TRUE(on_r2.ok());
  EXPECT_EQ(on_r2->status, 404) << on_r2->body;

  int64_t t = NowMs();
  ASSERT_TRUE(n.PostFirst(token, {{"metrics", {{"temp", 95.0}}}, {"timestamp", t}}));
  ASSERT_TRUE(n.Post(token, {{"metrics", {{"temp", 20.0}}}, {"timestamp", t + 1}}));
  json alerts;
  ASSERT_TRUE(Eventually([&] {
    alerts = CtlJson(*n.cloud, n.tmp, {"alerts", "list"});
    return alerts.is_array() && alerts.size() == 1;
  })) << alerts;
  const json& a = alerts[0];
  EXPECT_EQ(a["rule"], "hot");
  EXPECT_EQ(a["node"], "r1");
  EXPECT_EQ(a["severity"], "warning");
  EXPECT_EQ(a["message"], "boiler is hot");
  EXPECT_TRUE(a["ts"].is_string()) << a;
  EXPECT_EQ(a["data"], (json{{"device_id", "boiler"}, {"temp", 95.0}}));

  json status;
  ASSERT_TRUE(Eventually([&] {
    status = CtlJson(*n.cloud, n.tmp, {"rules", "status", "hot"});
    return status.is_array() && status.size() == 1 && status[0]["recordsIn"] == 2;
  })) << status;
  EXPECT_EQ(status[0]["node"], "r1");
  EXPECT_EQ(status[0]["status"], "running");
  EXPECT_EQ(status[0]["recordsOut"], 1);
  EXPECT_EQ(status[0]["exceptions"], 0);

  // While the cloud is down the node goes on deciding, and keeps its alerts until it is back.
  n.cloud->Stop(SIGTERM);
  ASSERT_EQ(n.cloud->process().Wait(std::chrono::seconds(10)), 0);
  ASSERT_TRUE(n.Post(token, {{"metrics", {{"temp", 97.0}}}, {"timestamp", t + 2}}));
  ASSERT_TRUE(Eventually([&] { return n.Rule("hot")["recordsOut"] == 2; }));
  n.cloud = std::make_unique<Cloud>(n.tmp, std::vector<std::string>{}, "cloud", api, link);
  ASSERT_TRUE(Eventually([&] {
    alerts = CtlJson(*n.cloud, n.tmp, {"alerts", "list", "--rule", "hot"});
    return alerts.is_array() && alerts.size() == 2;
  })) << alerts;
  EXPECT_EQ(alerts[0]["data"]["temp"], 97.0) << "newest first";

  // Stopped from the cloud, the rule stops on the node and says so.
  Ctl(*n.cloud, n.tmp, {"rules", "stop", "hot"});
  ASSERT_TRUE(Eventually([&] { return n.Rule("hot")["status"] == "stopped"; }));
  ASSERT_TRUE(Eventually([&] {
    status = CtlJson(*n.cloud, n.tmp, {"rules", "status", "hot"});
    return status.is_array() && status.size() == 1 && status[0]["status"] == "stopped";
  })) << status;
  Ctl(*n.cloud, n.tmp, {"rules", "delete", "hot"});
  ASSERT_TRUE(Eventually([&] { return n.Call("GET", "/rules/hot").status == 404; }));
  EXPECT_EQ(CtlJson(*n.cloud, n.tmp, {"alerts", "list"}).size(), 2u) << "alerts outlive the rule";
}

}  // namespace
}  // namespace verge::testing
