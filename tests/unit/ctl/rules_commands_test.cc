// vergectl apply, rules and alerts: reading multi-document files, the tables, and the commands
// run against a real verge-cloud started in-process (port 0, temporary data dir).
#include <gtest/gtest.h>

#include <filesystem>
#include <sstream>

#include "cloud/server.h"
#include "common/fs.h"
#include "ctl/commands.h"
#include "ctl/output.h"
#include "ctl_harness.h"

namespace verge::ctl {
namespace {

TEST(Documents, YamlDocumentsSeparatedByDashesAndJson) {
  auto docs = ParseDocuments(R"(# two rules
---
apiVersion: verge/v1
kind: Rule
metadata: {name: hot-room}
spec:
  nodeSelector: {site: plant-1}
  sql: "SELECT * FROM telemetry"
  actions: [{alert: {severity: warning}}]
  options: {lateToleranceMs: 1000}
---
# only a comment: skipped
---
apiVersion: verge/v1
kind: Rule
metadata:
  name: cold
spec:
  sql: >-
    SELECT device_id
    FROM telemetry
  actions:
    - log: {}
---
)",
                             "rules.yaml");
  ASSERT_TRUE(docs.ok()) << docs.status().message();
  ASSERT_EQ(docs->size(), 2u);
  EXPECT_EQ((*docs)[0]["metadata"]["name"], "hot-room");
  EXPECT_EQ((*docs)[0]["spec"]["options"]["lateToleranceMs"], 1000);
  EXPECT_TRUE((*docs)[0]["spec"]["options"]["lateToleranceMs"].is_number_integer());
  EXPECT_EQ((*docs)[0]["spec"]["actions"][0]["alert"]["severity"], "warning");
  EXPECT_EQ((*docs)[1]["spec"]["sql"], "SELECT device_id FROM telemetry");
  EXPECT_TRUE((*docs)[1]["spec"]["actions"][0]["log"].is_object());

  auto json = ParseDocuments(R"({"kind": "Rule", "metadata": {"name": "a"}})", "a.json");
  ASSERT_TRUE(json.ok());
  EXPECT_EQ(json->size(), 1u);
  auto list = ParseDocuments(R"([{"kind": "Rule"}, {"kind": "Rule"}])", "list.json");
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->size(), 2u) << "a list stands for its items";
  EXPECT_TRUE(ParseDocuments("", "empty.yaml")->empty());
}

TEST(Documents, SayWhichDocumentAndWhereTheProblemIs) {
  auto scalar = ParseDocuments("kind: Rule\n---\njust text\n", "r.yaml");
  ASSERT_FALSE(scalar.ok());
  EXPECT_NE(scalar.status().message().find("r.yaml: document 2 must be a mapping"),
            std::string::npos)
      << scalar.status().message();
  auto broken = ParseDocuments("kind: Rule\n---\nspec: [1, 2\n", "r.yaml");
  ASSERT_FALSE(broken.ok());
  EXPECT_NE(broken.status().message().find("r.yaml: line"), std::string::npos)
      << broken.status().message();
  EXPECT_FALSE(ParseDocuments("{\"a\": ", "x.json").ok());
}

TEST(Output, RuleStatusAndAlertTables) {
  Json rule = Json::parse(R"({"apiVersion": "verge/v1", "kind": "Rule",
      "metadata": {"name": "hot-room", "createdAt": "2026-11-21T10:00:00.000Z"},
      "spec": {"nodeSelector": {"site": "plant-1"}, "sql": "SELECT 1", "actions": []},
      "status": {"stopped": false, "restartGeneration": 0, "nodes": ["edge-1", "edge-2"]}})");
  Json all = rule;
  all["metadata"]["name"] = "everywhere";
  all["spec"]["nodeSelector"] = Json::object();
  all["status"]["stopped"] = true;
  int64_t now = *ParseTimeMs("2026-11-21T12:00:00Z");
  EXPECT_EQ(RulesTable(Json::array({rule, all}), now),
            "NAME         STATE     NODES   SELECTOR       AGE\n"
            "hot-room     running   2       site=plant-1   2h\n"
            "everywhere   stopped   2       <all nodes>    2h\n");
  Json statuses = Json::parse(R"([
      {"rule": "hot-room", "node": "edge-1", "status": "running", "recordsIn": 120,
       "recordsOut": 3, "exceptions": 1, "lastError": "division by zero", "latencyP50Us": 250,
       "latencyP99Us": 12500, "dropped": 0, "origin": "cloud",
       "reportedAt": "2026-11-21T10:00:05.123Z"},
      {"rule": "hot-room", "node": "edge-2", "status": "pending", "recordsIn": 0,
       "recordsOut": 0, "exceptions": 0, "lastError": "", "latencyP50Us": 0,
       "latencyP99Us": 0, "dropped": 0, "origin": "", "reportedAt": null}])");
  EXPECT_EQ(RuleStatusTable(statuses),
            "NODE     STATUS    IN    OUT   EXCEPTIONS   DROPPED   P50     P99      REPORTED     "
            "          LAST-ERROR\n"
            "edge-1   running   120   3     1            0         250us   12.5ms   "
            "2026-11-21T10:00:05Z   division by zero\n"
            "edge-2   pending   0     0     0            0         -       -        never        "
            "          \n");
  Json alerts = Json::parse(R"([{"id": 1, "rule": "hot-room", "node": "edge-1",
      "ts": "2026-11-21T10:00:05.123Z", "tsMs": 1, "severity": "critical", "message": "",
      "data": {"device_id": "d1", "t": 31.5}, "receivedAt": "2026-11-21T10:00:06.000Z"}])");
  EXPECT_EQ(AlertsTable(alerts),
            "TIME                   SEVERITY   RULE       NODE     MESSAGE   DATA\n"
            "2026-11-21T10:00:05Z   critical   hot-room   edge-1   <none>    "
            "{\"device_id\":\"d1\",\"t\":31.5}\n");
  EXPECT_EQ(FormatMicros(0), "-");
  EXPECT_EQ(FormatMicros(999), "999us");
  EXPECT_EQ(FormatMicros(1500), "1.5ms");
  EXPECT_EQ(FormatMicros(2'500'000), "2.5s");
}

// Two nodes; edge-1 at site plant-1.
class RulesAgainstCloud : public AgainstCloud {
 protected:
  void SetUp() override {
    AgainstCloud::SetUp();
    ASSERT_TRUE(server_->registry().PatchLabels("edge-1", {{"site", "plant-1"}}).ok());
  }
  std::vector<std::string> Nodes() const override { return {"edge-1", "edge-2"}; }
};

constexpr const char* kTwoRules = R"(apiVersion: verge/v1
kind: Rule
metadata: {name: hot-room}
spec:
  nodeSelector: {site: plant-1}
  sql: "SELECT device_id, avg(temperature) AS t FROM telemetry GROUP BY device_id, TUMBLINGWINDOW(ss, 10) HAVING avg(temperature) > 30"
  actions: [{alert: {severity: warning}}]
  options: {lateToleranceMs: 1000}
---
apiVersion: verge/v1
kind: Rule
metadata: {name: everywhere}
spec:
  sql: SELECT * FROM telemetry WHERE temperature > 100
  actions: [{log: {}}]
)";

TEST_F(RulesAgainstCloud, ApplyCreatesThenLeavesUnchangedThenListsAndShowsStatus) {
  std::string file = WriteFile("rules.yaml", kTwoRules);
  auto applied = Ctl({"apply", "-f", file});
  ASSERT_EQ(applied.code, 0) << applied.err;
  EXPECT_EQ(applied.out, "rule/hot-room created\nrule/everywhere created\n");
  uint64_t version = server_->registry().Get("edge-1")->desired_version;
  EXPECT_EQ(version, 2u);

  auto again = Ctl({"apply", "-f", file});
  ASSERT_EQ(again.code, 0) << again.err;
  EXPECT_EQ(again.out, "rule/hot-room unchanged\nrule/everywhere unchanged\n");
  EXPECT_EQ(server_->registry().Get("edge-1")->desired_version, version)
      << "applying the same documents changes nothing";

  auto list = Ctl({"rules", "list", "-o", "json"});
  ASSERT_EQ(list.code, 0) << list.err;
  Json rules = Json::parse(list.out);
  ASSERT_EQ(rules.size(), 2u);
  EXPECT_EQ(rules[0]["metadata"]["name"], "everywhere");
  EXPECT_EQ(rules[1]["spec"]["nodeSelector"]["site"], "plant-1");
  auto table = Ctl({"rules", "list"});
  EXPECT_NE(table.out.find("site=plant-1"), std::string::npos) << table.out;
  auto get = Ctl({"rules", "get", "hot-room", "-o", "yaml"});
  ASSERT_EQ(get.code, 0) << get.err;
  EXPECT_NE(get.out.find("kind: Rule"), std::string::npos) << get.out;

  auto status = Ctl({"rules", "status", "hot-room", "-o", "json"});
  ASSERT_EQ(status.code, 0) << status.err;
  Json st = Json::parse(status.out);
  ASSERT_TRUE(st.is_array());
  ASSERT_EQ(st.size(), 1u);
  EXPECT_EQ(st[0]["node"], "edge-1");
  EXPECT_EQ(st[0]["status"], "pending");
  for (const char* key : {"node", "status", "recordsIn", "recordsOut", "exceptions", "lastError",
                          "latencyP50Us", "latencyP99Us", "dropped", "origin", "reportedAt"}) {
    EXPECT_TRUE(st[0].contains(key)) << key;
  }
  auto status_table = Ctl({"rules", "status", "everywhere"});
  EXPECT_NE(status_table.out.find("edge-2   pending"), std::string::npos) << status_table.out;
}

TEST_F(RulesAgainstCloud, ApplyFromStdinAndJson) {
  auto applied = Ctl({"apply", "-f", "-"}, kTwoRules);
  ASSERT_EQ(applied.code, 0) << applied.err;
  EXPECT_EQ(applied.out, "rule/hot-room created\nrule/everywhere created\n");
  std::string json = R"({"apiVersion": "verge/v1", "kind": "Rule", "metadata": {"name": "j"},
                         "spec": {"sql": "SELECT * FROM telemetry", "actions": [{"log": {}}]}})";
  auto as_json = Ctl({"apply", "-f", WriteFile("j.json", json), "-o", "json"});
  ASSERT_EQ(as_json.code, 0) << as_json.err;
  Json out = Json::parse(as_json.out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0]["result"], "created");
}

TEST_F(RulesAgainstCloud, InvalidDocumentsAreShownWithTheirNameAndStoreNothing) {
  std::string file = WriteFile("bad.yaml", R"(apiVersion: verge/v1
kind: Rule
metadata: {name: typo}
spec:
  sql: |
    SELECT device_id
    FORM telemetry
  actions: [{alert: {severity: warning}}]
---
apiVersion: verge/v1
kind: Rule
metadata: {name: bad-action}
spec:
  sql: SELECT * FROM telemetry
  actions: [{alert: {severity: loud}}]
---
apiVersion: verge/v1
kind: Widget
metadata: {name: w}
---
apiVersion: verge/v1
kind: Device
metadata: {name: d}
---
apiVersion: verge/v1
kind: Rule
metadata: {name: fine}
spec:
  sql: SELECT * FROM telemetry
  actions: [{log: {}}]
)");
  auto r = Ctl({"apply", "-f", file});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.out, "rule/fine created\n") << "the valid document is applied";
  EXPECT_NE(r.err.find("document 1: invalid rule \"typo\": line 2, column 1: "), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("invalid rule \"bad-action\": actions[0].alert.severity"), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("kind \"Widget\" is not supported"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("kind Device cannot be applied"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("4 of 5 documents not applied"), std::string::npos) << r.err;
  EXPECT_EQ(Ctl({"rules", "get", "typo"}).code, 1);
  EXPECT_EQ(Ctl({"rules", "get", "bad-action"}).code, 1);

  auto broken = Ctl({"apply", "-f", WriteFile("broken.yaml", "kind: Rule\nspec: [1\n")});
  EXPECT_EQ(broken.code, 1);
  EXPECT_NE(broken.err.find("broken.yaml: line"), std::string::npos) << broken.err;
  EXPECT_EQ(Ctl({"apply"}).code, 2) << "-f is required";
  EXPECT_EQ(Ctl({"apply", "-f", dir_ + "/missing.yaml"}).code, 1);
}

TEST_F(RulesAgainstCloud, StopStartRestartDelete) {
  ASSERT_EQ(Ctl({"apply", "-f", WriteFile("r.yaml", kTwoRules)}).code, 0);
  auto stop = Ctl({"rules", "stop", "hot-room"});
  ASSERT_EQ(stop.code, 0) << stop.err;
  EXPECT_EQ(stop.out, "rule \"hot-room\" stopped\n");
  EXPECT_NE(Ctl({"rules", "list"}).out.find("hot-room     stopped"), std::string::npos);
  EXPECT_EQ(Ctl({"rules", "start", "hot-room"}).out, "rule \"hot-room\" started\n");
  auto restart = Ctl({"rules", "restart", "hot-room", "-o", "json"});
  ASSERT_EQ(restart.code, 0) << restart.err;
  EXPECT_EQ(Json::parse(restart.out)["status"]["restartGeneration"], 1);
  EXPECT_EQ(Ctl({"rules", "delete", "hot-room"}).out, "rule \"hot-room\" deleted\n");
  auto gone = Ctl({"rules", "status", "hot-room"});
  EXPECT_EQ(gone.code, 1);
  EXPECT_NE(gone.err.find("not found"), std::string::npos) << gone.err;
  EXPECT_EQ(Ctl({"rules", "stop"}).code, 2);
}

TEST_F(RulesAgainstCloud, AlertsListNewestFirstWithTheRowAsAnObject) {
  const int64_t now = clock_.WallMs();
  auto alert = [&](const std::string& rule, const std::string& node, int64_t ts_ms,
                   const std::string& severity, uint32_t index) {
    cloud::AlertRecord a;
    a.rule = rule;
    a.node = node;
    a.index = index;
    a.ts_ms = ts_ms;
    a.severity = severity;
    a.message = "too hot";
    a.data_json = R"({"device_id":"d1","t":31.5})";
    a.received_ms = now;
    return a;
  };
  cloud::Store::UplinkRecord rec;
  rec.node = "edge-1";
  rec.seq = 1;
  rec.is_alerts = true;
  rec.alerts = {alert("hot-room", "edge-1", now - 7'200'000, "warning", 0),
                alert("hot-room", "edge-1", now - 60'000, "critical", 1),
                alert("cold", "edge-1", now - 30'000, "info", 2)};
  rec.count = rec.alerts.size();
  const cloud::Store::UplinkRecord* recs[] = {&rec};
  ASSERT_TRUE(server_->store().StoreUplink(recs).ok());

  auto list = Ctl({"alerts", "list", "-o", "json"});
  ASSERT_EQ(list.code, 0) << list.err;
  Json alerts = Json::parse(list.out);
  ASSERT_EQ(alerts.size(), 3u);
  EXPECT_EQ(alerts[0]["rule"], "cold") << "newest first";
  for (const char* key : {"rule", "node", "ts", "severity", "message", "data"}) {
    EXPECT_TRUE(alerts[0].contains(key)) << key;
  }
  EXPECT_TRUE(ParseTimeMs(alerts[0]["ts"].get<std::string>()).has_value()) << alerts[0]["ts"];
  EXPECT_EQ(alerts[1]["data"], Json::parse(R"({"device_id": "d1", "t": 31.5})"));
  EXPECT_EQ(Json::parse(Ctl({"alerts", "list", "--rule", "hot-room", "-o", "json"}).out).size(),
            2u);
  EXPECT_EQ(Json::parse(Ctl({"alerts", "list", "--since", "1h", "-o", "json"}).out).size(), 2u);
  EXPECT_EQ(Json::parse(Ctl({"alerts", "list", "--node", "edge-2", "-o", "json"}).out).size(), 0u);
  EXPECT_EQ(Json::parse(Ctl({"alerts", "list", "--limit", "1", "-o", "json"}).out).size(), 1u);
  auto table = Ctl({"alerts", "list", "--severity", "critical"});
  ASSERT_EQ(table.code, 0) << table.err;
  EXPECT_NE(table.out.find("critical   hot-room   edge-1   too hot"), std::string::npos)
      << table.out;
  auto none = Ctl({"alerts", "list", "--node", "edge-2"});
  EXPECT_EQ(none.out, "");
  EXPECT_NE(none.err.find("No alerts found"), std::string::npos);
  EXPECT_EQ(Ctl({"alerts", "list", "--since", "soon"}).code, 1);
  EXPECT_EQ(Ctl({"alerts", "list", "--limit", "0"}).code, 2);
}

}  // namespace
}  // namespace verge::ctl
