// Rules and alerts in the cloud: the rule document parser, the store's rules, rule statuses and
// alerts, alert batch decoding, and the REST API and link driven without a network.
#include "cloud/rules.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "api_fixture.h"
#include "cloud/alerts.h"
#include "cloud/api.h"
#include "cloud/rule_spec.h"
#include "cloud/store_sqlite.h"
#include "common/compress.h"
#include "store_fixture.h"

namespace verge::cloud {
namespace {

using json = nlohmann::json;

constexpr const char* kHotRoomSql =
    "SELECT device_id, avg(temperature) AS t FROM telemetry GROUP BY device_id, "
    "TUMBLINGWINDOW(ss, 10) HAVING avg(temperature) > 30";

json RuleDoc(const std::string& name, const json& selector = json::object(),
             const std::string& sql = kHotRoomSql) {
  return {{"apiVersion", "verge/v1"},
          {"kind", "Rule"},
          {"metadata", {{"name", name}}},
          {"spec",
           {{"nodeSelector", selector},
            {"sql", sql},
            {"actions", {{{"alert", {{"severity", "warning"}, {"message", "too hot"}}}}}},
            {"options", {{"lateToleranceMs", 2000}}}}}};
}

// ---- The document --------------------------------------------------------------------------

TEST(RuleDocument, ParsesTheSpecAndRoundTripsThroughTheApiShape) {
  auto r = ParseRuleDocument(RuleDoc("hot-room", {{"site", "plant-1"}}).dump(), "hot-room");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->name, "hot-room");
  EXPECT_EQ(r->node_selector, (Labels{{"site", "plant-1"}}));
  EXPECT_EQ(r->sql, kHotRoomSql);
  EXPECT_TRUE(r->streams.empty());
  EXPECT_EQ(json::parse(r->actions_json),
            json::parse(R"([{"alert": {"severity": "warning", "message": "too hot"}}])"));
  EXPECT_EQ(r->actions_json, R"([{"alert":{"message":"too hot","severity":"warning"}}])")
      << "compact";
  EXPECT_EQ(r->options_json, R"({"lateToleranceMs":2000})");
  EXPECT_FALSE(r->stopped);

  // What GET answers can be PUT back and means the same rule.
  Rule stored = *r;
  stored.stopped = true;
  stored.created_ms = 1000;
  stored.updated_ms = 2000;
  json shown = RuleJson(stored, {"edge-1"});
  EXPECT_EQ(shown["status"]["stopped"], true);
  EXPECT_EQ(shown["status"]["nodes"], json::array({"edge-1"}));
  EXPECT_EQ(shown["metadata"]["createdAt"], "1970-01-01T00:00:01.000Z");
  EXPECT_EQ(shown["spec"]["streams"], json::array());
  shown["result"] = "created";
  auto back = ParseRuleDocument(shown.dump(), "hot-room");
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_TRUE(back->SameSpec(stored));

  // Optional parts left out: every node, no options.
  json minimal = {{"apiVersion", "verge/v1"},
                  {"kind", "Rule"},
                  {"metadata", {{"name", "r2"}}},
                  {"spec", {{"sql", "SELECT * FROM telemetry"}, {"actions", {{{"log", {}}}}}}}};
  auto m = ParseRuleDocument(minimal.dump(), "r2");
  ASSERT_TRUE(m.ok()) << m.status().message();
  EXPECT_TRUE(m->node_selector.empty());
  EXPECT_EQ(m->options_json, "");
  EXPECT_TRUE(m->Matches({}));
  EXPECT_TRUE(m->Matches({{"any", "thing"}}));
}

TEST(RuleDocument, InvalidSqlKeepsItsLineAndColumnAndNamesTheRule) {
  json doc = RuleDoc("hot-room");
  doc["spec"]["sql"] = "SELECT device_id\nFORM telemetry";
  auto r = ParseRuleDocument(doc.dump(), "hot-room");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  const std::string& msg = r.status().message();
  EXPECT_EQ(msg.rfind("invalid rule \"hot-room\": line 2, column 1: ", 0), 0u) << msg;
}

TEST(RuleDocument, ReportsEveryProblemOfTheDocumentAtOnce) {
  json doc = {{"apiVersion", "verge/v2"},
              {"kind", "Rule"},
              {"metadata", {{"name", "other"}, {"labels", json::object()}}},
              {"spec",
               {{"nodeSelector", {{"site", 7}, {"-bad", "x"}}},
                {"sql", "SELECT * FROM telemetry"},
                {"actions", {{{"alert", {{"severity", "loud"}}}}, {{"email", {}}}}},
                {"colour", "red"}}},
              {"extra", 1}};
  auto r = ParseRuleDocument(doc.dump(), "hot-room");
  ASSERT_FALSE(r.ok());
  const std::string& msg = r.status().message();
  for (const char* part :
       {"invalid rule \"hot-room\"", "unknown field \"extra\"",
        "apiVersion: \"verge/v2\" is not supported", "metadata: unknown field \"labels\"",
        "metadata.name \"other\" does not match", "spec.nodeSelector.site: must be a string",
        "label key \"-bad\"", "spec: unknown field \"colour\"", "actions[0].alert.severity",
        "actions[1]: unknown action \"email\""}) {
    EXPECT_NE(msg.find(part), std::string::npos) << part << " in: " << msg;
  }
  auto missing = ParseRuleDocument(R"({"kind": "Device", "metadata": {"name": "x"},
                                       "spec": {"actions": [{"log": {}}]}})",
                                   "x");
  ASSERT_FALSE(missing.ok());
  for (const char* part :
       {"apiVersion: required", "kind: \"Device\" is not Rule", "spec.sql: required"}) {
    EXPECT_NE(missing.status().message().find(part), std::string::npos)
        << part << " in: " << missing.status().message();
  }
  EXPECT_FALSE(ParseRuleDocument("not json", "x").ok());
  EXPECT_FALSE(ParseRuleDocument("[]", "x").ok());
  EXPECT_FALSE(ParseRuleDocument(RuleDoc("bad name").dump(), "bad name").ok());
}

// ---- Alert batches -------------------------------------------------------------------------

v1::Alert MakeAlert(const std::string& rule, int64_t ts_ms, const std::string& severity,
                    const std::string& data = R"({"device_id":"d1","t":31.5})") {
  v1::Alert a;
  a.set_rule(rule);
  a.set_ts_ms(ts_ms);
  a.set_severity(severity);
  a.set_data_json(data);
  a.set_message("too hot");
  return a;
}

v1::UplinkBatch AlertBatch(uint64_t seq, const std::vector<v1::Alert>& alerts,
                           v1::Codec codec = v1::CODEC_ZSTD) {
  v1::AlertBatch ab;
  for (const auto& a : alerts) *ab.add_alerts() = a;
  v1::UplinkBatch b;
  b.set_seq(seq);
  b.set_priority(v1::ALERTS);
  b.set_content(v1::BATCH_ALERTS);
  b.set_count(static_cast<uint32_t>(alerts.size()));
  b.set_codec(codec);
  b.set_data(codec == v1::CODEC_ZSTD ? *ZstdCompress(ab.SerializeAsString())
                                     : ab.SerializeAsString());
  return b;
}

TEST(AlertBatches, DecodeCompressedAndPlain) {
  for (auto codec : {v1::CODEC_ZSTD, v1::CODEC_NONE}) {
    auto alerts = DecodeAlertBatch(
        AlertBatch(7,
                   {MakeAlert("hot-room", 1000, "warning"),
                    MakeAlert("hot-room", 2000, "critical", R"({ "a" : [1, {"b": null}] })")},
                   codec),
        "edge-1", 5000);
    ASSERT_TRUE(alerts.ok()) << alerts.status().message();
    ASSERT_EQ(alerts->size(), 2u);
    const AlertRecord& a = (*alerts)[1];
    EXPECT_EQ(a.node, "edge-1");
    EXPECT_EQ(a.batch_seq, 7u);
    EXPECT_EQ(a.index, 1u);
    EXPECT_EQ(a.rule, "hot-room");
    EXPECT_EQ(a.ts_ms, 2000);
    EXPECT_EQ(a.severity, "critical");
    EXPECT_EQ(a.message, "too hot");
    EXPECT_EQ(a.data_json, R"({"a":[1,{"b":null}]})") << "kept compact";
    EXPECT_EQ(a.received_ms, 5000);
  }
  // A long message is cut, not refused.
  auto long_message = MakeAlert("r", 1, "info");
  long_message.set_message(std::string(kMaxAlertMessageBytes + 100, 'm'));
  auto cut = DecodeAlertBatch(AlertBatch(1, {long_message}), "edge-1", 0);
  ASSERT_TRUE(cut.ok()) << cut.status().message();
  EXPECT_EQ((*cut)[0].message.size(), kMaxAlertMessageBytes);
}

TEST(AlertBatches, RejectWhatCanNeverBeStored) {
  auto fails = [](const v1::UplinkBatch& b, const std::string& why) {
    auto r = DecodeAlertBatch(b, "edge-1", 0);
    EXPECT_FALSE(r.ok()) << why;
    if (!r.ok()) {
      EXPECT_NE(r.status().message().find(why), std::string::npos) << r.status().message();
    }
  };
  auto good = MakeAlert("r", 1, "info");
  auto miscounted = AlertBatch(1, {good});
  miscounted.set_count(2);
  fails(miscounted, "says 2 alerts but holds 1");
  fails(AlertBatch(0, {good}), "seq 0");
  fails(AlertBatch(1, {MakeAlert("bad rule!", 1, "info")}), "rule name");
  fails(AlertBatch(1, {MakeAlert("r", 1, "fatal")}), "severity \"fatal\"");
  fails(AlertBatch(1, {MakeAlert("r", -1, "info")}), "before 1970");
  fails(AlertBatch(1, {MakeAlert("r", 1, "info", "[1, 2]")}), "not a JSON object");
  fails(AlertBatch(1, {MakeAlert("r", 1, "info", "{\"a\": ")}), "not a JSON object");
  fails(AlertBatch(1, {MakeAlert("r", 1, "info", std::string(70, '[') + std::string(70, ']'))}),
        "nested deeper");
  fails(AlertBatch(1, {MakeAlert("r", 1, "info",
                                 "{\"a\": \"" + std::string(kMaxAlertDataBytes, 'x') + "\"}")}),
        "bytes, more than");
  auto garbage = AlertBatch(1, {good});
  garbage.set_data("garbage");
  fails(garbage, "alert batch data");
  auto plain_garbage = AlertBatch(1, {good}, v1::CODEC_NONE);
  plain_garbage.set_data("\xff\xff\xff");
  fails(plain_garbage, "not a verge.v1.AlertBatch");
  auto codec = AlertBatch(1, {good});
  codec.set_codec(static_cast<v1::Codec>(9));
  fails(codec, "unknown codec 9");
  auto bomb = AlertBatch(1, {});
  bomb.set_data(*ZstdCompress(std::string(kMaxAlertBatchBytes + 1, '\0')));
  EXPECT_EQ(DecodeAlertBatch(bomb, "edge-1", 0).status().code(), Code::kResourceExhausted);
}

TEST(AlertQueries, ParametersAreCheckedAllAtOnce) {
  const int64_t now_ms = 1'700'000'000'000;
  auto q = ParseAlertQuery({}, now_ms);
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->limit, 100);
  EXPECT_EQ(q->since_ms, 0);
  q = ParseAlertQuery({{"rule", "r"},
                       {"node", "edge-1"},
                       {"severity", "critical"},
                       {"since", "1h"},
                       {"limit", "5"}},
                      now_ms);
  ASSERT_TRUE(q.ok()) << q.status().message();
  EXPECT_EQ(q->since_ms, now_ms - 3'600'000);
  EXPECT_EQ(q->limit, 5);
  EXPECT_EQ(ParseAlertQuery({{"since", "2023-11-14T22:13:20.5Z"}}, now_ms)->since_ms,
            1'700'000'000'500);
  auto bad = ParseAlertQuery(
      {{"rule", "no good"}, {"severity", "loud"}, {"since", "later"}, {"limit", "0"}, {"x", "1"}},
      now_ms);
  ASSERT_FALSE(bad.ok());
  for (const char* part : {"rule \"no good\"", "severity \"loud\"", "since:", "limit must be",
                           "unknown parameter \"x\""}) {
    EXPECT_NE(bad.status().message().find(part), std::string::npos)
        << part << " in: " << bad.status().message();
  }
}

// ---- The store -----------------------------------------------------------------------------

class RuleStoreTest : public SqliteStoreTest {
 protected:
  static Rule MakeRule(const std::string& name, Labels selector) {
    Rule r;
    r.name = name;
    r.node_selector = std::move(selector);
    r.sql = "SELECT * FROM s";
    r.streams = {"CREATE STREAM s () WITH (DATASOURCE=\"s\")"};
    r.actions_json = R"([{"log":{}}])";
    r.options_json = R"({"lateToleranceMs":5})";
    r.restart_generation = 3;
    r.created_ms = 1000;
    r.updated_ms = 2000;
    return r;
  }
};

TEST_F(RuleStoreTest, RulesRoundTripAndBumpTheNodesNamed) {
  const std::vector<std::string> both = {"a", "b"};
  auto bumps = store_->PutRule(MakeRule("r1", {{"site", "x"}}), both);
  ASSERT_TRUE(bumps.ok()) << bumps.status().message();
  EXPECT_EQ(*bumps, (std::vector<Store::VersionBump>{{"a", 1}, {"b", 1}}));
  Rule changed = MakeRule("r1", {{"site", "y"}});
  changed.stopped = true;
  changed.created_ms = 5000;  // ignored on replace
  changed.updated_ms = 6000;
  const std::vector<std::string> only_b = {"b"};
  EXPECT_EQ(*store_->PutRule(changed, only_b), (std::vector<Store::VersionBump>{{"b", 2}}));
  ASSERT_TRUE(store_->PutRule(MakeRule("a0", {}), {}).ok());
  Reopen();
  auto got = store_->GetRule("r1");
  ASSERT_TRUE(got.ok() && got->has_value());
  const Rule& r = **got;
  EXPECT_TRUE(r.SameSpec(changed));
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(r.restart_generation, 3u);
  EXPECT_EQ(r.created_ms, 1000) << "created_ms is kept";
  EXPECT_EQ(r.updated_ms, 6000);
  auto list = store_->ListRules();
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].name, "a0");
  EXPECT_FALSE(store_->GetRule("nope")->has_value());

  EXPECT_EQ(*store_->DeleteRule("r1", both), (std::vector<Store::VersionBump>{{"a", 2}, {"b", 3}}));
  EXPECT_EQ(store_->DeleteRule("r1", both).status().code(), Code::kNotFound);
  EXPECT_EQ(store_->GetDesiredState("a", {})->version, 2u) << "a failed delete bumps nothing";
  EXPECT_EQ(*store_->BumpDesiredVersions(both),
            (std::vector<Store::VersionBump>{{"a", 3}, {"b", 4}}));
}

TEST_F(RuleStoreTest, DesiredStateHoldsTheRulesTheLabelsSelect) {
  ASSERT_TRUE(store_->PutRule(MakeRule("everywhere", {}), {}).ok());
  ASSERT_TRUE(store_->PutRule(MakeRule("plant", {{"site", "plant-1"}}), {}).ok());
  ASSERT_TRUE(
      store_->PutRule(MakeRule("plant-gpu", {{"site", "plant-1"}, {"gpu", "yes"}}), {}).ok());
  auto names = [&](const Labels& labels) {
    std::vector<std::string> out;
    auto ds = store_->GetDesiredState("n", labels);
    EXPECT_TRUE(ds.ok());
    if (ds.ok()) {
      for (const auto& r : ds->rules) out.push_back(r.name);
    }
    return out;
  };
  EXPECT_EQ(names({}), std::vector<std::string>{"everywhere"});
  EXPECT_EQ(names({{"site", "plant-1"}}), (std::vector<std::string>{"everywhere", "plant"}));
  EXPECT_EQ(names({{"site", "plant-1"}, {"gpu", "yes"}, {"x", "y"}}),
            (std::vector<std::string>{"everywhere", "plant", "plant-gpu"}));
  EXPECT_EQ(names({{"site", "plant-2"}, {"gpu", "yes"}}), std::vector<std::string>{"everywhere"});
}

TEST_F(RuleStoreTest, ANodesRuleListReplacesItsStatuses) {
  auto status = [](const std::string& rule, const std::string& state) {
    RuleStatusRecord s;
    s.rule = rule;
    s.status = state;
    s.records_in = uint64_t{1} << 63;  // beyond int64: stored as it is
    s.records_out = 2;
    s.exceptions = 3;
    s.last_error = "division by zero";
    s.latency_p50_us = 40;
    s.latency_p99_us = 900;
    s.dropped = 4;
    s.origin = "cloud";
    return s;
  };
  Store::StateReport report;
  report.node = "n1";
  report.applied_version = 2;
  report.reported_ms = 7000;
  report.has_rules = true;
  report.rules = {status("r1", "running"), status("r2", "error")};
  Store::StateReport other = report;
  other.node = "n2";
  other.rules = {status("r1", "stopped")};
  ASSERT_TRUE(store_->UpdateStateReports(std::vector{report, other}).ok());
  auto r1 = *store_->ListRuleStatuses("r1");
  ASSERT_EQ(r1.size(), 2u);
  EXPECT_EQ(r1[0].node, "n1");
  EXPECT_EQ(r1[0].records_in, uint64_t{1} << 63);
  EXPECT_EQ(r1[0].last_error, "division by zero");
  EXPECT_EQ(r1[0].latency_p99_us, 900u);
  EXPECT_EQ(r1[0].reported_ms, 7000);
  EXPECT_EQ(r1[1].status, "stopped");

  // n1 no longer has r2; a report without has_rules (an older node) changes no status.
  report.rules = {status("r1", "running")};
  report.reported_ms = 8000;
  Store::StateReport old_node;
  old_node.node = "n2";
  ASSERT_TRUE(store_->UpdateStateReports(std::vector{report, old_node}).ok());
  EXPECT_TRUE(store_->ListRuleStatuses("r2")->empty());
  EXPECT_EQ(store_->ListRuleStatuses("r1")->size(), 2u);
  EXPECT_EQ((*store_->ListRuleStatuses("r1"))[0].reported_ms, 8000);

  // A deleted rule and a decommissioned node take their statuses with them.
  ASSERT_TRUE(store_->PutRule(MakeRule("r1", {}), {}).ok());
  ASSERT_TRUE(store_->DeleteRule("r1", {}).ok());
  EXPECT_TRUE(store_->ListRuleStatuses("r1")->empty());
  other.rules = {status("r3", "running")};
  ASSERT_TRUE(store_->UpdateStateReports(std::vector{other}).ok());
  Node n2;
  n2.name = "n2";
  ASSERT_TRUE(store_->InsertNode(n2).ok());
  ASSERT_TRUE(store_->DecommissionNode("n2", RevokedCert{}).ok());
  EXPECT_TRUE(store_->ListRuleStatuses("r3")->empty());
}

Store::UplinkRecord AlertRecordBatch(const std::string& node, uint64_t seq,
                                     std::vector<AlertRecord> alerts) {
  Store::UplinkRecord rec;
  rec.node = node;
  rec.seq = seq;
  rec.count = alerts.size();
  rec.is_alerts = true;
  for (auto& a : alerts) {
    a.node = node;
    a.batch_seq = seq;
  }
  rec.alerts = std::move(alerts);
  return rec;
}

AlertRecord Alert(const std::string& rule, int64_t ts_ms, const std::string& severity,
                  uint32_t index = 0) {
  AlertRecord a;
  a.rule = rule;
  a.ts_ms = ts_ms;
  a.severity = severity;
  a.index = index;
  a.message = "m";
  a.data_json = R"({"t":1})";
  a.received_ms = ts_ms + 5;
  return a;
}

TEST_F(RuleStoreTest, AlertsAreStoredOnceQueriedNewestFirstAndPruned) {
  auto b1 = AlertRecordBatch("n1", 1,
                             {Alert("r1", 1000, "warning", 0), Alert("r2", 3000, "critical", 1)});
  auto b2 = AlertRecordBatch("n2", 1, {Alert("r1", 2000, "info")});
  const Store::UplinkRecord* first[] = {&b1, &b2};
  EXPECT_EQ(*store_->StoreUplink(first), (std::vector<bool>{true, true}));
  const Store::UplinkRecord* again[] = {&b1};
  EXPECT_EQ(*store_->StoreUplink(again), std::vector<bool>{false}) << "a resend";
  // Readings and alerts share the node's sequence: a reading batch with seq 1 is a duplicate.
  Store::UplinkRecord readings;
  readings.node = "n1";
  readings.seq = 1;
  const Store::UplinkRecord* r[] = {&readings};
  EXPECT_EQ(*store_->StoreUplink(r), std::vector<bool>{false});
  EXPECT_EQ(*store_->UplinkStoredSeq("n1"), 1u);

  auto all = *store_->ListAlerts(AlertQuery{});
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].rule, "r2") << "newest first";
  EXPECT_EQ(all[0].ts_ms, 3000);
  EXPECT_EQ(all[0].severity, "critical");
  EXPECT_EQ(all[0].node, "n1");
  EXPECT_EQ(all[0].batch_seq, 1u);
  EXPECT_EQ(all[0].index, 1u);
  EXPECT_EQ(all[0].data_json, R"({"t":1})");
  EXPECT_EQ(all[0].received_ms, 3005);
  EXPECT_EQ(all[1].node, "n2");
  EXPECT_GT(all[0].id, 0);

  auto count = [&](std::string rule, std::string node, std::string severity = "",
                   int64_t since_ms = 0, int limit = 100) {
    AlertQuery q;
    q.rule = std::move(rule);
    q.node = std::move(node);
    q.severity = std::move(severity);
    q.since_ms = since_ms;
    q.limit = limit;
    return store_->ListAlerts(q)->size();
  };
  EXPECT_EQ(count("r1", ""), 2u);
  EXPECT_EQ(count("", "n1"), 2u);
  EXPECT_EQ(count("r1", "n1"), 1u);
  EXPECT_EQ(count("", "", "info"), 1u);
  EXPECT_EQ(count("", "", "", 2000), 2u);
  EXPECT_EQ(count("", "", "", 0, 1), 1u);

  // A node that numbers its batches afresh: its new seq 1 is new alerts, not a resend.
  ASSERT_TRUE(store_->ResetUplink("n1").ok());
  auto fresh = AlertRecordBatch("n1", 1, {Alert("r1", 4000, "info")});
  const Store::UplinkRecord* f[] = {&fresh};
  EXPECT_EQ(*store_->StoreUplink(f), std::vector<bool>{true});
  EXPECT_EQ(count("", ""), 4u);

  EXPECT_EQ(*store_->PruneAlerts(2500), 2);
  EXPECT_EQ(count("", ""), 2u);
}

// ---- The API and the link ------------------------------------------------------------------

class RulesApiTest : public CloudApiTest {
 protected:
  void SetUp() override {
    CloudApiTest::SetUp();
    for (const char* n : {"edge-1", "edge-2", "edge-3"}) {
      ASSERT_TRUE(registry_->AddJoined(n, std::string("serial-") + n, 0, "ip").ok());
    }
    Label("edge-1", {{"site", "plant-1"}});
    Label("edge-2", {{"site", "plant-1"}, {"line", "2"}});
    Label("edge-3", {{"site", "plant-2"}});
  }

  json CallJson(std::string method, std::string target, std::string body = "",
                int want_status = 200) {
    auto res = Call(std::move(method), std::move(target), std::move(body));
    EXPECT_EQ(res.status, want_status) << res.body;
    return json::parse(res.body, nullptr, false);
  }
  void Label(const std::string& node, const json& labels) {
    auto res = Call("PATCH", "/api/v1/nodes/" + node, json{{"labels", labels}}.dump());
    ASSERT_EQ(res.status, 200) << res.body;
  }
  std::map<std::string, uint64_t> Versions() {
    std::map<std::string, uint64_t> out;
    for (const auto& n : registry_->List()) out[n.name] = n.desired_version;
    return out;
  }

  using Link = TestLink;
  Link Connect(const std::string& node, uint64_t desired_version, const Labels& labels = {},
               const std::vector<std::string>& features = {}) {
    v1::Hello hello;
    hello.mutable_resume()->set_desired_version(desired_version);
    for (const auto& [k, v] : labels) (*hello.mutable_info()->mutable_labels())[k] = v;
    for (const auto& f : features) hello.add_features(f);
    return OpenLink(node, "serial-" + node, std::move(hello));
  }
};

TEST_F(RulesApiTest, ApplyCreatesThenChangesNothingThenReplaces) {
  auto before = Versions();
  auto created =
      Call("PUT", "/api/v1/rules/hot-room", RuleDoc("hot-room", {{"site", "plant-1"}}).dump());
  ASSERT_EQ(created.status, 201) << created.body;
  json j = json::parse(created.body);
  EXPECT_EQ(j["result"], "created");
  EXPECT_EQ(j["kind"], "Rule");
  EXPECT_EQ(j["metadata"]["name"], "hot-room");
  EXPECT_EQ(j["spec"]["sql"], kHotRoomSql);
  EXPECT_EQ(j["status"]["nodes"], json::array({"edge-1", "edge-2"}));
  auto after = Versions();
  EXPECT_EQ(after["edge-1"], before["edge-1"] + 1);
  EXPECT_EQ(after["edge-2"], before["edge-2"] + 1);
  EXPECT_EQ(after["edge-3"], before["edge-3"]) << "not selected";

  // The same document again: nothing changes, not even a version.
  j = CallJson("PUT", "/api/v1/rules/hot-room", RuleDoc("hot-room", {{"site", "plant-1"}}).dump());
  EXPECT_EQ(j["result"], "unchanged");
  EXPECT_EQ(Versions(), after);
  // Its GET answer sent back is the same document too.
  json shown = CallJson("GET", "/api/v1/rules/hot-room");
  EXPECT_EQ(CallJson("PUT", "/api/v1/rules/hot-room", shown.dump())["result"], "unchanged");
  EXPECT_EQ(Versions(), after);

  // Moving it to plant-2: the nodes it leaves and the node it reaches get new versions.
  j = CallJson("PUT", "/api/v1/rules/hot-room", RuleDoc("hot-room", {{"site", "plant-2"}}).dump());
  EXPECT_EQ(j["result"], "configured");
  EXPECT_EQ(j["status"]["nodes"], json::array({"edge-3"}));
  EXPECT_EQ(j["metadata"]["createdAt"], shown["metadata"]["createdAt"]);
  auto moved = Versions();
  for (const char* n : {"edge-1", "edge-2", "edge-3"}) EXPECT_EQ(moved[n], after[n] + 1) << n;
}

TEST_F(RulesApiTest, AnInvalidDocumentIsRefusedWithLineAndColumnAndStoresNothing) {
  auto before = Versions();
  json doc = RuleDoc("hot-room");
  doc["spec"]["sql"] = "SELECT device_id FORM telemetry";
  auto res = Call("PUT", "/api/v1/rules/hot-room", doc.dump());
  ASSERT_EQ(res.status, 400) << res.body;
  json err = json::parse(res.body)["error"];
  EXPECT_EQ(err["code"], "invalid_argument");
  std::string msg = err["message"];
  EXPECT_EQ(msg,
            "invalid rule \"hot-room\": line 1, column 18: expected FROM after the select list, "
            "found \"FORM\"");
  EXPECT_EQ(Call("GET", "/api/v1/rules/hot-room").status, 404);
  EXPECT_EQ(Versions(), before);

  // Bad actions, selector and name are refused too; an existing rule stays as it was.
  ASSERT_EQ(Call("PUT", "/api/v1/rules/r", RuleDoc("r").dump()).status, 201);
  auto stored = CallJson("GET", "/api/v1/rules/r");
  json bad = RuleDoc("r");
  bad["spec"]["actions"] = {{{"mqtt", {{"topic", "a/#"}}}}};
  bad["spec"]["nodeSelector"] = {{"site", 1}};
  res = Call("PUT", "/api/v1/rules/r", bad.dump());
  ASSERT_EQ(res.status, 400);
  msg = json::parse(res.body)["error"]["message"];
  EXPECT_NE(msg.find("actions[0].mqtt.topic"), std::string::npos) << msg;
  EXPECT_NE(msg.find("spec.nodeSelector.site"), std::string::npos) << msg;
  EXPECT_EQ(CallJson("GET", "/api/v1/rules/r"), stored);
  EXPECT_EQ(Call("PUT", "/api/v1/rules/Bad%20Name", RuleDoc("Bad Name").dump()).status, 400);
  EXPECT_EQ(Call("PUT", "/api/v1/rules/r", RuleDoc("other").dump()).status, 400);
  EXPECT_EQ(Call("PUT", "/api/v1/rules/r", "{").status, 400);
}

TEST_F(RulesApiTest, ListGetStopStartRestartDeleteAndTheirVersions) {
  ASSERT_EQ(Call("PUT", "/api/v1/rules/b-rule", RuleDoc("b-rule", {{"line", "2"}}).dump()).status,
            201);
  ASSERT_EQ(Call("PUT", "/api/v1/rules/a-rule", RuleDoc("a-rule").dump()).status, 201);
  json list = CallJson("GET", "/api/v1/rules");
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0]["metadata"]["name"], "a-rule");
  EXPECT_EQ(list[0]["status"]["nodes"].size(), 3u) << "no selector: every node";
  EXPECT_EQ(list[1]["status"]["nodes"], json::array({"edge-2"}));

  auto v0 = Versions();
  json stopped = CallJson("POST", "/api/v1/rules/b-rule/stop");
  EXPECT_EQ(stopped["status"]["stopped"], true);
  auto v1 = Versions();
  EXPECT_EQ(v1["edge-2"], v0["edge-2"] + 1);
  EXPECT_EQ(v1["edge-1"], v0["edge-1"]);
  CallJson("POST", "/api/v1/rules/b-rule/stop");
  EXPECT_EQ(Versions(), v1) << "stopping a stopped rule changes nothing";
  // Applying the document again keeps it stopped (operator state is not part of the spec).
  CallJson("PUT", "/api/v1/rules/b-rule", RuleDoc("b-rule", {{"line", "2"}}).dump());
  EXPECT_EQ(CallJson("GET", "/api/v1/rules/b-rule")["status"]["stopped"], true);

  json started = CallJson("POST", "/api/v1/rules/b-rule/start");
  EXPECT_EQ(started["status"]["stopped"], false);
  auto v2 = Versions();
  EXPECT_EQ(v2["edge-2"], v1["edge-2"] + 1);
  CallJson("POST", "/api/v1/rules/b-rule/stop");
  json restarted = CallJson("POST", "/api/v1/rules/b-rule/restart");
  EXPECT_EQ(restarted["status"]["restartGeneration"], 1);
  EXPECT_EQ(restarted["status"]["stopped"], false) << "restart starts a stopped rule";
  EXPECT_EQ(Versions()["edge-2"], v2["edge-2"] + 2);
  EXPECT_EQ(CallJson("POST", "/api/v1/rules/b-rule/restart")["status"]["restartGeneration"], 2);

  auto v3 = Versions();
  EXPECT_EQ(CallJson("DELETE", "/api/v1/rules/a-rule")["deleted"], true);
  auto v4 = Versions();
  for (const char* n : {"edge-1", "edge-2", "edge-3"}) EXPECT_EQ(v4[n], v3[n] + 1) << n;
  EXPECT_EQ(Call("DELETE", "/api/v1/rules/a-rule").status, 404);
  EXPECT_EQ(Call("GET", "/api/v1/rules/a-rule").status, 404);
  EXPECT_EQ(Call("POST", "/api/v1/rules/a-rule/stop").status, 404);
  EXPECT_EQ(Call("GET", "/api/v1/rules/b-rule/stop").status, 405);
  EXPECT_EQ(Call("POST", "/api/v1/rules").status, 405);
  EXPECT_EQ(Call("GET", "/api/v1/rules/b-rule/nothing").status, 404);
}

TEST_F(RulesApiTest, ANodeWhoseLabelsChangeGetsItsRulesAgain) {
  ASSERT_EQ(Call("PUT", "/api/v1/rules/r", RuleDoc("r", {{"site", "plant-2"}}).dump()).status, 201);
  auto v0 = Versions();
  Label("edge-1", {{"owner", "ops"}});
  EXPECT_EQ(Versions(), v0) << "a label no rule looks at changes nothing";
  Label("edge-1", {{"site", "plant-2"}});
  EXPECT_EQ(Versions()["edge-1"], v0["edge-1"] + 1) << "now selected";
  Label("edge-3", {{"site", "plant-9"}});
  EXPECT_EQ(Versions()["edge-3"], v0["edge-3"] + 1) << "no longer selected";
  EXPECT_EQ(CallJson("GET", "/api/v1/rules/r")["status"]["nodes"], json::array({"edge-1"}));
}

TEST_F(RulesApiTest, DesiredStateCarriesTheRulesThatMatchTheNode) {
  auto l1 = Connect("edge-1", 0);
  auto l3 = Connect("edge-3", 0);
  json doc = RuleDoc("hot-room", {{"site", "plant-1"}});
  doc["spec"]["streams"] = {"CREATE STREAM s () WITH (DATASOURCE=\"s\")"};
  ASSERT_EQ(Call("PUT", "/api/v1/rules/hot-room", doc.dump()).status, 201);
  auto states = l1.States();
  ASSERT_EQ(states.size(), 1u);
  ASSERT_EQ(states[0].rules_size(), 1);
  const v1::Rule& r = states[0].rules(0);
  EXPECT_EQ(r.name(), "hot-room");
  EXPECT_EQ(r.sql(), kHotRoomSql);
  ASSERT_EQ(r.streams_size(), 1);
  EXPECT_EQ(json::parse(r.actions_json()),
            json::parse(R"([{"alert": {"message": "too hot", "severity": "warning"}}])"));
  EXPECT_EQ(r.options_json(), R"({"lateToleranceMs":2000})");
  EXPECT_FALSE(r.stopped());
  EXPECT_EQ(r.restart_generation(), 0u);
  EXPECT_TRUE(l3.States().empty()) << "not selected: nothing sent";

  CallJson("POST", "/api/v1/rules/hot-room/restart");
  CallJson("POST", "/api/v1/rules/hot-room/stop");
  states = l1.States();
  ASSERT_EQ(states.size(), 3u);
  EXPECT_EQ(states[1].rules(0).restart_generation(), 1u);
  EXPECT_TRUE(states[2].rules(0).stopped());

  CallJson("DELETE", "/api/v1/rules/hot-room");
  states = l1.States();
  ASSERT_EQ(states.size(), 4u);
  EXPECT_EQ(states[3].rules_size(), 0) << "the node drops it";
}

TEST_F(RulesApiTest, LabelsFromHelloSelectRulesBeforeTheFirstDocument) {
  ASSERT_EQ(Call("PUT", "/api/v1/rules/r", RuleDoc("r", {{"zone", "z9"}}).dump()).status, 201);
  auto v = Versions()["edge-3"];
  // The node comes with a label that selects the rule, and holds the current version: the
  // version moves on before the HelloAck, and the document is sent once, with the rule.
  auto l = Connect("edge-3", v, {{"zone", "z9"}});
  EXPECT_EQ(l.stream->sent[0].hello_ack().desired_version(), v + 1);
  auto states = l.States();
  ASSERT_EQ(states.size(), 1u);
  EXPECT_EQ(states[0].version(), v + 1);
  ASSERT_EQ(states[0].rules_size(), 1);
  EXPECT_EQ(states[0].rules(0).name(), "r");
  // The same labels again: nothing moves.
  auto again = Connect("edge-3", v + 1, {{"zone", "z9"}});
  EXPECT_EQ(again.stream->sent.size(), 1u);
}

TEST_F(RulesApiTest, StatusesComeFromStateReportsAndPendingUntilThen) {
  ASSERT_EQ(Call("PUT", "/api/v1/rules/hot-room", RuleDoc("hot-room", {{"site", "plant-1"}}).dump())
                .status,
            201);
  json st = CallJson("GET", "/api/v1/rules/hot-room/status");
  ASSERT_EQ(st.size(), 2u);
  EXPECT_EQ(st[0]["node"], "edge-1");
  EXPECT_EQ(st[0]["status"], "pending");
  EXPECT_EQ(st[0]["recordsIn"], 0);
  EXPECT_TRUE(st[0]["reportedAt"].is_null());

  auto l = Connect("edge-1", 0);
  v1::Envelope env;
  auto* report = env.mutable_state_report();
  report->set_applied_version(1);
  report->set_has_rules(true);
  auto* s = report->add_rules();
  s->set_name("hot-room");
  s->set_status("running");
  s->set_records_in(120);
  s->set_records_out(3);
  s->set_exceptions(1);
  s->set_last_error("division by zero");
  s->set_latency_p50_us(250);
  s->set_latency_p99_us(4000);
  s->set_dropped(2);
  s->set_origin("cloud");
  auto* local = report->add_rules();
  local->set_name("my-local");
  local->set_status("running");
  local->set_origin("local");
  l.Send(env);
  st = CallJson("GET", "/api/v1/rules/hot-room/status");
  ASSERT_EQ(st.size(), 2u);
  EXPECT_EQ(st[0], json::parse(fmt::format(R"({{"rule": "hot-room", "node": "edge-1",
      "status": "running", "recordsIn": 120, "recordsOut": 3, "exceptions": 1,
      "lastError": "division by zero", "latencyP50Us": 250, "latencyP99Us": 4000, "dropped": 2,
      "origin": "cloud", "reportedAt": "{}"}})",
                                           FormatTimeMs(clock_.WallMs()))));
  EXPECT_EQ(st[1]["node"], "edge-2");
  EXPECT_EQ(st[1]["status"], "pending");

  // The node leaves edge-1's selector but still runs the rule from its old state: shown.
  Label("edge-1", {{"site", "elsewhere"}});
  st = CallJson("GET", "/api/v1/rules/hot-room/status");
  ASSERT_EQ(st.size(), 2u);
  EXPECT_EQ(st[0]["node"], "edge-1");
  EXPECT_EQ(st[0]["status"], "running");

  // A report without has_rules (an older node) changes nothing; one listing no rules clears.
  env.mutable_state_report()->clear_rules();
  env.mutable_state_report()->set_has_rules(false);
  l.Send(env);
  EXPECT_EQ(CallJson("GET", "/api/v1/rules/hot-room/status").size(), 2u);
  env.mutable_state_report()->set_has_rules(true);
  l.Send(env);
  st = CallJson("GET", "/api/v1/rules/hot-room/status");
  ASSERT_EQ(st.size(), 1u);
  EXPECT_EQ(st[0]["node"], "edge-2");
  EXPECT_EQ(Call("GET", "/api/v1/rules/nope/status").status, 404);
}

TEST_F(RulesApiTest, AlertBatchesAreAckedAfterTheCommitAndStoredOnce) {
  auto l = Connect("edge-1", 0);
  const int64_t t0 = clock_.WallMs() - 60'000;
  auto batch = AlertBatch(
      3, {MakeAlert("hot-room", t0, "warning"), MakeAlert("hot-room", t0 + 1000, "critical")});
  l.Send(batch);
  EXPECT_TRUE(l.Acked().empty()) << "not acknowledged before it is committed";
  EXPECT_EQ(telemetry_->CommitPending(), 1u);
  EXPECT_EQ(l.Acked(), std::vector<uint64_t>{3});
  l.Send(batch);
  EXPECT_EQ(telemetry_->CommitPending(), 1u);
  EXPECT_EQ(l.Acked(), (std::vector<uint64_t>{3, 3})) << "a resend is acknowledged again";
  EXPECT_EQ(telemetry_->counters().alerts_stored.load(), 2u);
  EXPECT_EQ(telemetry_->counters().batches_duplicate.load(), 1u);
  EXPECT_EQ(telemetry_->counters().readings_stored.load(), 0u);

  json alerts = CallJson("GET", "/api/v1/alerts");
  ASSERT_EQ(alerts.size(), 2u) << "stored once";
  EXPECT_EQ(alerts[0]["severity"], "critical") << "newest first";
  EXPECT_EQ(alerts[0]["rule"], "hot-room");
  EXPECT_EQ(alerts[0]["node"], "edge-1");
  EXPECT_EQ(alerts[0]["ts"], FormatTimeMs(t0 + 1000));
  EXPECT_EQ(alerts[0]["tsMs"], t0 + 1000);
  EXPECT_EQ(alerts[0]["message"], "too hot");
  EXPECT_EQ(alerts[0]["data"], json::parse(R"({"device_id": "d1", "t": 31.5})"));
  EXPECT_EQ(alerts[0]["receivedAt"], FormatTimeMs(clock_.WallMs()));
  EXPECT_EQ(CallJson("GET", "/api/v1/alerts?severity=warning").size(), 1u);
  EXPECT_EQ(CallJson("GET", "/api/v1/alerts?rule=hot-room&node=edge-1&limit=1").size(), 1u);
  EXPECT_EQ(CallJson("GET", "/api/v1/alerts?node=edge-2").size(), 0u);
  EXPECT_EQ(CallJson("GET", "/api/v1/alerts?since=30s").size(), 0u);
  EXPECT_EQ(CallJson("GET", "/api/v1/alerts?since=2m").size(), 2u);
  EXPECT_EQ(Call("GET", "/api/v1/alerts?since=soon").status, 400);
  EXPECT_EQ(Call("GET", "/api/v1/alerts?limit=100000").status, 400);
  EXPECT_EQ(Call("POST", "/api/v1/alerts").status, 405);
  EXPECT_EQ(CallJson("GET", "/api/v1/status")["alertsStored"], 2);
}

TEST_F(RulesApiTest, AnAlertBatchThatCanNeverBeStoredIsAckedAndCounted) {
  auto l = Connect("edge-1", 0);
  auto bad = AlertBatch(4, {MakeAlert("hot-room", 1000, "urgent")});
  l.Send(bad);
  EXPECT_EQ(l.Acked(), std::vector<uint64_t>{4}) << "at once: resending cannot help";
  auto unknown = AlertBatch(5, {});
  unknown.set_content(static_cast<v1::BatchContent>(7));
  l.Send(unknown);
  EXPECT_EQ(l.Acked(), (std::vector<uint64_t>{4, 5}));
  EXPECT_EQ(link_->counters().bad_batches.load(), 2u);
  EXPECT_EQ(telemetry_->queued_batches(), 0u);
  EXPECT_FALSE(l.stream->closed);
  bool recorded = false;
  for (auto& e : CallJson("GET", "/api/v1/nodes/edge-1/events")) {
    if (e["type"] == "batch_rejected") {
      recorded = true;
      EXPECT_NE(e["message"].get<std::string>().find("severity \"urgent\""), std::string::npos)
          << e["message"];
    }
  }
  EXPECT_TRUE(recorded);
  EXPECT_EQ(CallJson("GET", "/api/v1/alerts").size(), 0u);
}

TEST_F(RulesApiTest, HelloAckListsTheFeaturesBothSidesHave) {
  auto with = Connect("edge-1", 0, {}, {"alerts", "teleport"});
  const auto& features = with.stream->sent[0].hello_ack().features();
  EXPECT_EQ(std::vector<std::string>(features.begin(), features.end()),
            std::vector<std::string>{"alerts"});
  auto without = Connect("edge-2", 0);
  EXPECT_EQ(without.stream->sent[0].hello_ack().features_size(), 0);
}

}  // namespace
}  // namespace verge::cloud
