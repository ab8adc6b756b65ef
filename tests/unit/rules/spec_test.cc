#include "node/rules/spec.h"

#include <gtest/gtest.h>

namespace verge::rules {
namespace {

using nlohmann::json;

TEST(RuleSpec, ParsesEveryActionKindWithDefaultsAndOverrides) {
  auto actions = ParseActions(json::parse(R"J([
    {"alert": {"severity": "critical", "message": "hot"}},
    {"mqtt": {"topic": "devices/{{.device_id}}/commands", "qos": 0, "retain": true}},
    {"webhook": {"url": "https://hooks.example/x", "headers": {"X-Key": "k"}, "retryCount": 5}},
    {"modbus": {"device": "plc-1", "address": 40, "type": "float32", "valueColumn": "sp"}},
    {"log": {}},
    {"memory": {"topic": "hot", "bufferLength": 10, "sendSingle": false}}
  ])J"));
  ASSERT_TRUE(actions.ok()) << actions.status().message();
  ASSERT_EQ(actions->size(), 6u);
  const auto& a = *actions;
  EXPECT_EQ(a[0].kind, ActionKind::kAlert);
  EXPECT_EQ(a[0].severity, "critical");
  EXPECT_EQ(a[0].retry_count, 3);
  EXPECT_EQ(a[1].kind, ActionKind::kMqtt);
  EXPECT_EQ(a[1].qos, 0);
  EXPECT_TRUE(a[1].retain);
  EXPECT_EQ(a[2].headers.at("X-Key"), "k");
  EXPECT_EQ(a[2].retry_count, 5);
  EXPECT_EQ(a[2].method, "POST");
  EXPECT_EQ(a[3].address, 40u);
  EXPECT_EQ(a[3].value_column, "sp");
  EXPECT_FALSE(a[3].value.has_value());
  EXPECT_EQ(a[4].kind, ActionKind::kLog);
  EXPECT_EQ(a[5].buffer_length, 10u);
  EXPECT_FALSE(a[5].send_single);
}

TEST(RuleSpec, ReportsEveryActionProblemWithItsPath) {
  auto actions = ParseActions(json::parse(R"J([
    {"alert": {"severity": "loud"}},
    {"mqtt": {"topic": "a/+/b"}},
    {"webhook": {"url": "ftp://x"}},
    {"modbus": {"device": "d", "address": 70000}},
    {"sms": {}},
    {"log": {"colour": "red"}},
    {"memory": {"topic": "telemetry"}},
    {"mqtt": {}, "log": {}}
  ])J"));
  ASSERT_FALSE(actions.ok());
  const std::string& m = actions.status().message();
  for (const char* want :
       {"actions[0].alert.severity", "actions[1].mqtt.topic", "actions[2].webhook.url",
        "actions[3].modbus.address", "actions[3].modbus: give exactly one of",
        "actions[4]: unknown", "actions[5].log: unknown field \"colour\"",
        "actions[6].memory.topic", "actions[7]:"}) {
    EXPECT_NE(m.find(want), std::string::npos) << want << " not in: " << m;
  }
  EXPECT_FALSE(ParseActions(json::array()).ok());
  EXPECT_FALSE(ParseActions(json::object()).ok());
}

TEST(RuleSpec, FunctionActionsNameAnAppLongOrShort) {
  auto actions = ParseActions(json::parse(R"J([
    {"function": {"name": "scale-temp", "topic": "scaled", "retryCount": 0}},
    {"function": "enrich2"}
  ])J"));
  ASSERT_TRUE(actions.ok()) << actions.status().message();
  ASSERT_EQ(actions->size(), 2u);
  const auto& a = *actions;
  EXPECT_EQ(a[0].kind, ActionKind::kFunction);
  EXPECT_EQ(a[0].function, "scale-temp");
  EXPECT_EQ(a[0].topic, "scaled");
  EXPECT_EQ(a[0].retry_count, 0);
  EXPECT_EQ(a[1].kind, ActionKind::kFunction);
  EXPECT_EQ(a[1].function, "enrich2");
  EXPECT_EQ(a[1].topic, "");
  EXPECT_EQ(a[1].retry_count, 3);
  EXPECT_EQ(ActionKindName(ActionKind::kFunction), "function");

  auto bad = ParseActions(json::parse(R"J([
    {"function": {}},
    {"function": "Not_An_App"},
    {"function": {"name": "-dash"}},
    {"function": {"name": "ok", "topic": "telemetry"}},
    {"function": {"name": "ok", "handler": "x"}},
    {"function": 5},
    {"function": ""}
  ])J"));
  ASSERT_FALSE(bad.ok());
  const std::string& m = bad.status().message();
  for (const char* want :
       {"actions[0].function.name: required", "actions[1].function.name: \"Not_An_App\"",
        "actions[2].function.name: \"-dash\"", "actions[3].function.topic",
        "actions[4].function: unknown field \"handler\"",
        "actions[5].function: must be an object or the name of an app",
        "actions[6].function.name: must not be empty"}) {
    EXPECT_NE(m.find(want), std::string::npos) << want << " not in: " << m;
  }
  EXPECT_TRUE(IsValidAppName("a"));
  EXPECT_TRUE(IsValidAppName(std::string(63, 'a')));
  EXPECT_FALSE(IsValidAppName(std::string(64, 'a')));
  EXPECT_FALSE(IsValidAppName("a-"));
  EXPECT_FALSE(IsValidAppName(""));
}

TEST(RuleSpec, WholeSpecReadsTelemetryOrADeclaredStream) {
  auto spec = ParseRuleSpec(json::parse(R"J({
    "name": "hot", "sql": "SELECT device_id, temperature FROM telemetry WHERE temperature > 50",
    "actions": [{"log": {}}], "options": {"checkpointIntervalMs": 1000}})J"));
  ASSERT_TRUE(spec.ok()) << spec.error().ToString();
  EXPECT_EQ(spec.value().from.name, "telemetry");
  EXPECT_EQ(spec.value().from.typed.timestamp, "ts");
  EXPECT_EQ(spec.value().options.checkpoint_interval_ms, 1000);
  EXPECT_EQ(spec.value().options.late_tolerance_ms, 1000);

  auto declared = ParseRuleSpec(json::parse(R"J({
    "name": "fan", "sql": "SELECT * FROM alarms",
    "streams": ["CREATE STREAM alarms (level BIGINT) WITH (DATASOURCE=\"plant/alarms\")"],
    "actions": [{"log": {}}]})J"));
  ASSERT_TRUE(declared.ok()) << declared.error().ToString();
  EXPECT_EQ(declared.value().from.typed.datasource, "plant/alarms");
}

TEST(RuleSpec, InvalidSqlKeepsLineAndColumn) {
  auto spec = ParseRuleSpec(json::parse(R"J({
    "name": "bad", "sql": "SELECT a\nFORM telemetry", "actions": [{"log": {}}]})J"));
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(spec.error().line, 2);
  EXPECT_EQ(spec.error().column, 1);

  auto unknown = ParseRuleSpec(json::parse(R"J({
    "name": "bad", "sql": "SELECT a FROM nowhere", "actions": [{"log": {}}]})J"));
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error().line, 1);
  EXPECT_EQ(unknown.error().column, 15);
  EXPECT_NE(unknown.error().message.find("unknown stream nowhere"), std::string::npos);
}

TEST(RuleSpec, RefusesBadNamesFieldsAndStreams) {
  auto spec = ParseRuleSpec(json::parse(R"J({
    "name": "-x", "sql": 5, "colour": 1, "options": {"lateToleranceMs": -1}})J"));
  ASSERT_FALSE(spec.ok());
  const std::string& m = spec.error().message;
  for (const char* want : {"name:", "rule.sql: must be a string", "unknown field \"colour\"",
                           "actions: required", "options.lateToleranceMs"})
    EXPECT_NE(m.find(want), std::string::npos) << want << " not in: " << m;

  auto twice = ParseRuleSpec(json::parse(R"J({
    "name": "t", "sql": "SELECT * FROM s", "actions": [{"log": {}}],
    "streams": ["CREATE STREAM s () WITH (DATASOURCE=\"a\")",
                "CREATE STREAM s () WITH (DATASOURCE=\"b\")"]})J"));
  ASSERT_FALSE(twice.ok());
  EXPECT_NE(twice.error().message.find("declared twice"), std::string::npos);

  auto builtin = ParseRuleSpec(json::parse(R"J({
    "name": "t", "sql": "SELECT * FROM telemetry", "actions": [{"log": {}}],
    "streams": ["CREATE STREAM telemetry () WITH (DATASOURCE=\"a\")"]})J"));
  ASSERT_FALSE(builtin.ok());
  EXPECT_NE(builtin.error().message.find("built-in"), std::string::npos);

  EXPECT_TRUE(IsValidRuleName("hot-room.1_a"));
  EXPECT_FALSE(IsValidRuleName(""));
  EXPECT_FALSE(IsValidRuleName("a b"));
  EXPECT_FALSE(IsValidRuleName(std::string(65, 'a')));
}

}  // namespace
}  // namespace verge::rules
