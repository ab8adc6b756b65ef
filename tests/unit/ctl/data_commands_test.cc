// vergectl devices and data: argument and file parsing, output, and the commands run against a
// real verge-cloud started in-process (port 0, temporary data dir).
#include <gtest/gtest.h>

#include <filesystem>
#include <sstream>

#include "cloud/server.h"
#include "cloud/telemetry_codec.h"
#include "common/compress.h"
#include "common/fs.h"
#include "ctl/commands.h"
#include "ctl/output.h"
#include "ctl_harness.h"

namespace verge::ctl {
namespace {

TEST(LabelList, ReadsCommaSeparatedPairs) {
  auto l = ParseLabelList("line=3,zone=,k8s.io/role=edge");
  ASSERT_TRUE(l.ok()) << l.status().message();
  EXPECT_EQ(*l, Json::parse(R"({"line":"3","zone":"","k8s.io/role":"edge"})"));
  for (const char* bad : {"", "a", "a=1,", "=v", "a=1,a=2", ",a=1"}) {
    EXPECT_FALSE(ParseLabelList(bad).ok()) << bad;
  }
}

TEST(Document, YamlAndJsonGiveTheSameBody) {
  auto yaml = ParseDocument(R"(
name: press-7
node: edge-1
allowUndeclared: false
labels: {line: "3"}
metrics:
  - name: temp
    min: -20
    max: 120.5
    unit: degC
    uplink: {deadbandPct: 0.5, maxSilence: 30s}
  - name: "123"
    type: bool
modbus:
  host: 10.0.0.5
  port: 502
  registers:
    - {metric: temp, address: 100, type: float32, scale: 0.1, interval: 1s}
)",
                            "dev.yaml");
  ASSERT_TRUE(yaml.ok()) << yaml.status().message();
  auto json = ParseDocument(R"({"name": "press-7", "node": "edge-1", "allowUndeclared": false,
    "labels": {"line": "3"},
    "metrics": [{"name": "temp", "min": -20, "max": 120.5, "unit": "degC",
                 "uplink": {"deadbandPct": 0.5, "maxSilence": "30s"}},
                {"name": "123", "type": "bool"}],
    "modbus": {"host": "10.0.0.5", "port": 502,
               "registers": [{"metric": "temp", "address": 100, "type": "float32",
                              "scale": 0.1, "interval": "1s"}]}})",
                            "dev.json");
  ASSERT_TRUE(json.ok()) << json.status().message();
  EXPECT_EQ(*yaml, *json);
  EXPECT_TRUE((*yaml)["metrics"][1]["name"].is_string()) << "quoted YAML stays a string";

  EXPECT_FALSE(ParseDocument("- a\n- b\n", "list.yaml").ok());
  auto broken = ParseDocument("a: [1, 2\n", "broken.yaml");
  ASSERT_FALSE(broken.ok());
  EXPECT_NE(broken.status().message().find("broken.yaml: line"), std::string::npos);
  EXPECT_FALSE(ParseDocument("{\"a\": ", "x.json").ok());
}

TEST(Document, FlagsApplyOverTheFile) {
  Json doc = {{"node", "edge-1"}, {"labels", {{"a", "1"}, {"b", "2"}}}};
  auto body = DeviceBody("d1", "edge-2", Json{{"b", "9"}}, doc);
  ASSERT_TRUE(body.ok());
  EXPECT_EQ((*body)["name"], "d1");
  EXPECT_EQ((*body)["node"], "edge-2");
  EXPECT_EQ((*body)["labels"], (Json{{"a", "1"}, {"b", "9"}}));
  EXPECT_EQ(*DeviceBody("d1", "n", Json::object(), std::nullopt),
            (Json{{"name", "d1"}, {"node", "n"}}));
  EXPECT_FALSE(DeviceBody("d1", "", Json::object(), Json{{"name", "d2"}}).ok());
}

TEST(Output, DeviceAndPointTables) {
  Json dev = {{"name", "d1"},
              {"node", "edge-1"},
              {"labels", {{"line", "3"}}},
              {"metrics", {{{"name", "temp"}}, {{"name", "hum"}}}},
              {"modbus", {{"host", "10.0.0.5"}, {"port", 502}}},
              {"createdAt", "2026-11-21T10:00:00.000Z"}};
  int64_t now = *ParseTimeMs("2026-11-21T10:05:00Z");
  EXPECT_EQ(DevicesTable(Json::array({dev}), now),
            "NAME   NODE     METRICS    MODBUS         LABELS   AGE\n"
            "d1     edge-1   temp,hum   10.0.0.5:502   line=3   5m\n");
  dev["token"] = "vdev_abc";
  std::string text = DeviceTokenText(dev, false);
  EXPECT_NE(text.find("\n    vdev_abc\n"), std::string::npos) << text;
  EXPECT_NE(text.find("declared on node edge-1"), std::string::npos);
  EXPECT_NE(DeviceTokenText(dev, true).find("New token"), std::string::npos);
  Json pts = Json::parse(R"([{"ts": "2023-11-14T22:13:20.5Z", "tsNs": 1, "device": "d1",
                              "metric": "temp", "value": 21.5}])");
  EXPECT_EQ(PointsTable(pts),
            "TIME                     DEVICE   METRIC   VALUE\n"
            "2023-11-14T22:13:20.5Z   d1       temp     21.5\n");
}

TEST(DataCommands, UsageErrorsExitTwo) {
  EXPECT_EQ(RunCtl({"devices"}).code, 2);
  EXPECT_EQ(RunCtl({"devices", "add"}).code, 2);
  EXPECT_EQ(RunCtl({"devices", "add", "d1", "--labels", "oops"}).code, 2);
  EXPECT_EQ(RunCtl({"data", "query"}).code, 2) << "--device is required";
  EXPECT_EQ(RunCtl({"data", "query", "--device", "d", "--step", "1m"}).code, 2);
  EXPECT_EQ(RunCtl({"data", "query", "--device", "d", "--agg", "median", "--step", "1m"}).code, 2);
  EXPECT_EQ(RunCtl({"data", "query", "--device", "d", "--step", "often", "--agg", "avg"}).code, 2);
  EXPECT_EQ(RunCtl({"data", "query", "--device", "d", "--limit", "0"}).code, 2);
}

TEST_F(AgainstCloud, DevicesAddPrintsNameAndTokenOnceThenListGetTokenDelete) {
  auto add = Ctl({"devices", "add", "d1", "--node", "edge-1", "--labels", "line=3", "-o", "json"});
  ASSERT_EQ(add.code, 0) << add.err;
  Json j = Json::parse(add.out);
  EXPECT_EQ(j["name"], "d1");
  std::string token = j["token"];
  EXPECT_EQ(token.rfind("vdev_", 0), 0u);
  EXPECT_EQ(j["labels"]["line"], "3");

  auto table = Ctl({"devices", "add", "d2", "--node", "edge-1"});
  ASSERT_EQ(table.code, 0) << table.err;
  EXPECT_NE(table.out.find("    vdev_"), std::string::npos) << table.out;

  auto dup = Ctl({"devices", "add", "d1", "--node", "edge-1"});
  EXPECT_EQ(dup.code, 1);
  EXPECT_NE(dup.err.find("already exists"), std::string::npos) << dup.err;
  auto nowhere = Ctl({"devices", "add", "d3", "--node", "ghost"});
  EXPECT_EQ(nowhere.code, 1);
  EXPECT_NE(nowhere.err.find("not a registered node"), std::string::npos) << nowhere.err;

  std::string file = dir_ + "/d4.yaml";
  ASSERT_TRUE(
      WriteFileAtomic(file,
                      "node: edge-1\n"
                      "metrics:\n"
                      "  - {name: temp, min: 0, max: 100, uplink: {deadbandPct: 1}}\n"
                      "modbus: {host: 127.0.0.1, registers: [{metric: temp, address: 7}]}\n")
          .ok());
  auto from_file = Ctl({"devices", "add", "d4", "-f", file, "-o", "yaml"});
  ASSERT_EQ(from_file.code, 0) << from_file.err;
  EXPECT_NE(from_file.out.find("deadbandPct: 1"), std::string::npos) << from_file.out;

  auto list = Ctl({"devices", "list", "-o", "json"});
  ASSERT_EQ(list.code, 0) << list.err;
  EXPECT_EQ(Json::parse(list.out).size(), 3u);
  EXPECT_EQ(list.out.find(token), std::string::npos) << "the token is never shown again";
  auto table_list = Ctl({"devices", "list", "--node", "edge-1"});
  EXPECT_NE(table_list.out.find("127.0.0.1:502"), std::string::npos) << table_list.out;
  auto get = Ctl({"devices", "get", "d4", "-o", "json"});
  EXPECT_EQ(Json::parse(get.out)["metrics"][0]["max"], 100);

  auto rotated = Ctl({"devices", "token", "d1", "-o", "json"});
  ASSERT_EQ(rotated.code, 0) << rotated.err;
  EXPECT_NE(Json::parse(rotated.out)["token"], token);

  EXPECT_EQ(Ctl({"devices", "delete", "d1"}).code, 0);
  auto gone = Ctl({"devices", "get", "d1"});
  EXPECT_EQ(gone.code, 1);
  EXPECT_NE(gone.err.find("not found"), std::string::npos);
  EXPECT_EQ(server_->registry().Get("edge-1")->desired_version, 5u);
}

TEST_F(AgainstCloud, DataQueryPrintsPoints) {
  const int64_t t0 = int64_t{1'700'000'000} * 1'000'000'000;
  v1::ReadingBatch rb;
  rb.add_devices("d1");
  rb.add_metrics("temp");
  rb.add_metrics("hum");
  auto* temp = rb.add_series();
  temp->set_metric(0);
  for (int i = 0; i < 90; ++i) {
    temp->add_ts_delta_ns(i == 0 ? t0 : 1'000'000'000);
    temp->add_values(20 + i);
  }
  auto* hum = rb.add_series();
  hum->set_metric(1);
  hum->add_ts_delta_ns(t0);
  hum->add_values(55.5);
  v1::UplinkBatch b;
  b.set_seq(1);
  b.set_count(91);
  b.set_data(rb.SerializeAsString());
  auto decoded = cloud::DecodeUplink(b);
  ASSERT_TRUE(decoded.ok()) << decoded.status().message();
  auto rec = cloud::StageUplink("edge-1", std::move(b), *decoded);
  const cloud::Store::UplinkRecord* recs[] = {&rec};
  ASSERT_TRUE(server_->store().StoreUplink(recs).ok());

  auto q = Ctl({"data", "query", "--device", "d1", "--metric", "temp", "-o", "json"});
  ASSERT_EQ(q.code, 0) << q.err;
  Json pts = Json::parse(q.out);
  ASSERT_EQ(pts.size(), 90u);
  for (const char* key : {"ts", "device", "metric", "value"}) {
    EXPECT_TRUE(pts[0].contains(key)) << key;
  }
  EXPECT_EQ(pts[0]["ts"], "2023-11-14T22:13:20Z");
  EXPECT_EQ(pts[0]["device"], "d1");
  EXPECT_EQ(pts[0]["metric"], "temp");
  EXPECT_EQ(pts[89]["value"], 109);

  auto agg = Ctl({"data", "query", "--device", "d1", "--metric", "temp", "--from",
                  "2023-11-14T22:13:00Z", "--step", "1m", "--agg", "max", "-o", "json"});
  ASSERT_EQ(agg.code, 0) << agg.err;
  Json buckets = Json::parse(agg.out);
  ASSERT_EQ(buckets.size(), 2u);
  EXPECT_EQ(buckets[0]["value"], 59);  // 40 readings in the first minute: 20..59

  auto table = Ctl({"data", "query", "--device", "d1", "--limit", "2"});
  ASSERT_EQ(table.code, 0) << table.err;
  EXPECT_NE(table.out.find("hum"), std::string::npos) << table.out;
  EXPECT_NE(table.err.find("--after temp,"), std::string::npos) << table.err;

  auto none = Ctl({"data", "query", "--device", "nobody"});
  EXPECT_EQ(none.code, 0);
  EXPECT_EQ(none.out, "");
  EXPECT_NE(none.err.find("No points found"), std::string::npos);
  auto bad = Ctl({"data", "query", "--device", "d1", "--from", "later"});
  EXPECT_EQ(bad.code, 1);
  EXPECT_NE(bad.err.find("from:"), std::string::npos) << bad.err;
}

}  // namespace
}  // namespace verge::ctl
