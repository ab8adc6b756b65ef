// The node's rule test endpoint, `POST /rules/test`, on a real verge-node: a rule run over
// given rows with their timestamps as the clock, and an invalid rule answered with its position.
#include <gtest/gtest.h>

#include <algorithm>

#include "harness.h"

namespace verge::testing {
namespace {

using json = nlohmann::json;

class RulesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cloud_ = std::make_unique<Cloud>(tmp_, std::vector<std::string>{});
    NodeOptions o{"r1", "eu", "", "gateway", "300ms", cloud_->bootstrap_token()};
    node_ = StartNode(tmp_, cloud_->link(), o);
    ASSERT_TRUE(Eventually([&] { return NodeHttpAddress(tmp_ / "r1").has_value(); }))
        << node_->Log();
    api_ = *NodeHttpAddress(tmp_ / "r1");
  }

  http::Response Run(const json& body) {
    auto r =
        PlainHttp(api_, "POST", "/rules/test", body.dump(), {{"Content-Type", "application/json"}});
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.status().message());
    return r.ok() ? *r : http::Response{0, "", ""};
  }

  TempDir tmp_;
  std::unique_ptr<Cloud> cloud_;
  std::unique_ptr<Process> node_;
  std::string api_;
};

const char* kStream = R"(CREATE STREAM s (device_id STRING, temperature FLOAT, ts BIGINT) )"
                      R"(WITH (DATASOURCE="s", FORMAT="json", TIMESTAMP="ts"))";

TEST_F(RulesTest, ATumblingAverageClosesWhenTheClockPassesTheWindow) {
  json input = json::array({
      {{"device_id", "a"}, {"temperature", 10.0}, {"ts", 1000}},
      {{"device_id", "a"}, {"temperature", 20.0}, {"ts", 2000}},
      {{"device_id", "b"}, {"temperature", 5.0}, {"ts", 3000}},
      {{"device_id", "a"}, {"temperature", 30.0}, {"ts", 11000}},
  });
  auto r = Run({{"streams", {kStream}},
                {"sql",
                 "SELECT device_id, avg(temperature) AS t FROM s "
                 "GROUP BY device_id, TUMBLINGWINDOW(ss, 10)"},
                {"input", {{"s", input}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  auto out = json::parse(r.body);
  // [0 s, 10 s) closes when the clock reaches 11 s; [10 s, 20 s) is still open when the run
  // ends at 12 s, so it is not emitted.
  ASSERT_EQ(out["outputs"].size(), 1u) << r.body;
  auto rows = out["outputs"][0].get<std::vector<json>>();
  std::sort(rows.begin(), rows.end(),
            [](const json& x, const json& y) { return x["device_id"] < y["device_id"]; });
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0]["device_id"], "a");
  EXPECT_DOUBLE_EQ(rows[0]["t"].get<double>(), 15.0);
  EXPECT_EQ(rows[1]["device_id"], "b");
  EXPECT_DOUBLE_EQ(rows[1]["t"].get<double>(), 5.0);
  EXPECT_EQ(out["recordsIn"], 4);
}

TEST_F(RulesTest, AFilterEmitsEachPassingRowAndCountsRuntimeErrors) {
  json input = json::array({
      {{"device_id", "a"}, {"temperature", 40.0}, {"ts", 1000}},
      {{"device_id", "a"}, {"temperature", 55.5}, {"ts", 2000}},
      {{"device_id", "b"}, {"temperature", 70.0}, {"ts", 3000}},
  });
  auto r = Run({{"streams", {kStream}},
                {"sql", "SELECT device_id, temperature FROM s WHERE temperature > 50"},
                {"input", {{"s", input}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  auto out = json::parse(r.body);
  ASSERT_EQ(out["outputs"].size(), 2u) << r.body;
  EXPECT_EQ(out["outputs"][0], json::array({{{"device_id", "a"}, {"temperature", 55.5}}}));
  EXPECT_EQ(out["outputs"][1], json::array({{{"device_id", "b"}, {"temperature", 70.0}}}));

  // Integer division by zero in one row is counted; the other rows still come out.
  json ints = json::array({{{"device_id", "a"}, {"ts", 1000}, {"n", 4}, {"d", 2}},
                           {{"device_id", "b"}, {"ts", 2000}, {"n", 4}, {"d", 0}},
                           {{"device_id", "c"}, {"ts", 3000}, {"n", 9}, {"d", 3}}});
  auto e = Run({{"streams",
                 {R"(CREATE STREAM q (device_id STRING, n BIGINT, d BIGINT, ts BIGINT) )"
                  R"(WITH (DATASOURCE="q", FORMAT="json", TIMESTAMP="ts"))"}},
                {"sql", "SELECT device_id, n / d AS r FROM q"},
                {"input", {{"q", ints}}}});
  ASSERT_EQ(e.status, 200) << e.body;
  auto eo = json::parse(e.body);
  EXPECT_EQ(eo["outputs"].size(), 2u) << e.body;
  EXPECT_EQ(eo["exceptions"], 1) << e.body;
}

TEST_F(RulesTest, AnInvalidRuleIsAnsweredWithItsLineAndColumn) {
  auto r = Run({{"streams", {kStream}},
                {"sql", "SELECT device_id,\n  avg(temperature) FORM s"},
                {"input", json::object()}});
  ASSERT_EQ(r.status, 400) << r.body;
  auto out = json::parse(r.body);
  EXPECT_EQ(out["line"], 2) << r.body;
  EXPECT_GT(out["column"].get<int>(), 0) << r.body;
  EXPECT_FALSE(out["error"].get<std::string>().empty());

  auto not_json = PlainHttp(api_, "POST", "/rules/test", "{", {});
  ASSERT_TRUE(not_json.ok());
  EXPECT_EQ(not_json->status, 400);
  auto wrong_method = PlainHttp(api_, "GET", "/rules/test", "", {});
  ASSERT_TRUE(wrong_method.ok());
  EXPECT_EQ(wrong_method->status, 400);
}

TEST_F(RulesTest, TheBuiltInTelemetryStreamNeedsNoDeclaration) {
  // As in the README's tour: event time is `ts`, and the run ends 1 s after the last row.
  auto r = Run({{"sql",
                 "SELECT device_id, avg(temp) AS t FROM telemetry "
                 "GROUP BY device_id, TUMBLINGWINDOW(ss, 10)"},
                {"input",
                 {{"telemetry",
                   {{{"device_id", "a"}, {"temp", 20}, {"ts", 1000}},
                    {{"device_id", "a"}, {"temp", 30}, {"ts", 11000}}}}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  auto out = json::parse(r.body);
  ASSERT_EQ(out["outputs"].size(), 1u) << r.body;
  EXPECT_EQ(out["outputs"][0], (json::array({{{"device_id", "a"}, {"t", 20.0}}}))) << r.body;
}

}  // namespace
}  // namespace verge::testing
