// The rule engine's internal shortcuts (issue 4's speed-ups) against what they stand in for:
// columns looked up once per event (one walk over the event, or a lookup per name for wide
// events) and declared columns converted on the way; equal analytic calls sharing one state
// (but never calls of rand() or newuuid()), with checkpoints written as before; group and
// partition keys of every type, strings kept in a table of their own; `SELECT *` handing the
// event on as it is. Outputs are compared as canonical JSON text, so 2 and 2.0 differ.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "node/rules/engine.h"
#include "node/rules/json_value.h"
#include "node/rules/parser.h"

namespace verge::rules {
namespace {

constexpr const char* kEvents = R"(CREATE STREAM s () WITH (DATASOURCE="s", TIMESTAMP="ts"))";

std::string Canonical(const std::string& json) {
  auto v = ParseJsonValue(json);
  EXPECT_TRUE(v.ok()) << json;
  return v.ok() ? ToJson(*v) : "";
}

// RunTest over `rows` (a JSON array) of stream s declared by `stream`; the emissions as JSON.
std::string RunRows(const std::string& stream, const std::string& sql, const std::string& rows,
                    uint64_t exceptions = 0) {
  auto input = ParseJsonValue(rows);
  EXPECT_TRUE(input.ok() && input->is_array()) << rows;
  auto out = RunTest({stream}, sql, {{"s", input->array_value()}});
  EXPECT_TRUE(out.ok()) << out.error().ToString();
  if (!out.ok()) return "";
  EXPECT_EQ(out.value().counters.exceptions, exceptions) << out.value().counters.last_error;
  Array emissions;
  for (const Emission& e : out.value().outputs) emissions.push_back(Value::MakeArray(e));
  return ToJson(Value::MakeArray(std::move(emissions)));
}

std::unique_ptr<Rule> MakeRule(const std::string& sql) {
  auto select = ParseSelect(sql);
  auto stream = ParseCreateStream(kEvents);
  EXPECT_TRUE(select.ok()) << select.error().ToString();
  auto rule = Rule::Create(select.value(), stream.value());
  EXPECT_TRUE(rule.ok());
  return std::move(rule).value();
}

TEST(EngineFastPathsTest, DeclaredColumnsConvertInNarrowAndWideEvents) {
  const std::string typed =
      R"(CREATE STREAM s (a FLOAT, m BIGINT, t DATETIME, z FLOAT, ts BIGINT) )"
      R"(WITH (DATASOURCE="s", TIMESTAMP="ts"))";
  // Undeclared columns sort between the declared ones; `a` is absent; `y` is not declared.
  EXPECT_EQ(RunRows(typed, "SELECT a, m, t, z, y FROM s WHERE z > 6",
                    R"([{"ts":1,"b":1,"m":2.0,"t":"1970-01-01T00:00:01Z","y":"q","z":7},
                    {"ts":2,"m":2.5,"z":6.5},{"ts":3,"z":5}])"),
            Canonical(R"([[{"m":2,"t":1000,"z":7.0,"y":"q"}],[{"m":2.5,"z":6.5}]])"));
  // The same conversions in an event with many more columns than the rule names.
  std::string wide = R"({"ts":1,"m":2.0,"t":"1970-01-01T00:00:01Z","z":7)";
  for (int i = 0; i < 40; ++i) wide += ",\"c" + std::to_string(100 + i) + "\":" + std::to_string(i);
  wide += "}";
  EXPECT_EQ(RunRows(typed, "SELECT m, t, z, c139 FROM s", "[" + wide + "]"),
            Canonical(R"([[{"m":2,"t":1000,"z":7.0,"c139":39}]])"));
  // Names sharing their first 8 bytes or more, and a name that is a prefix of another.
  EXPECT_EQ(RunRows(kEvents,
                    "SELECT temperature, temperature_b AS b, temperature_a AS a, temp FROM s "
                    "WHERE temperature_a < temperature_b",
                    R"([{"ts":1,"temp":1,"temperature":2,"temperature_a":3,"temperature_b":4},
                    {"ts":2,"temperature_a":5,"temperature_b":4}])"),
            Canonical(R"([[{"temperature":2,"b":4,"a":3,"temp":1}]])"));
}

TEST(EngineFastPathsTest, ColumnsOfOtherEventsAreNotTakenForThePushedOne) {
  // HAVING and the projection read a group's first event while a later event is pushed.
  EXPECT_EQ(RunRows(kEvents,
                    "SELECT d, v, count(*) AS n FROM s GROUP BY d, TUMBLINGWINDOW(ss, 10) "
                    "HAVING v > 0",
                    R"([{"ts":1000,"d":"a","v":1},{"ts":2000,"d":"a","v":-5},
                    {"ts":3000,"d":"b","v":-1},{"ts":12000,"d":"a","v":9}])"),
            Canonical(R"([[{"d":"a","v":1,"n":2}]])"));
  // A sliding window evaluates its rows' columns while the triggering event is bound.
  EXPECT_EQ(RunRows(kEvents, "SELECT collect(v) AS c FROM s GROUP BY SLIDINGWINDOW(ss, 5)",
                    R"([{"ts":1000,"v":1},{"ts":3000,"v":2}])"),
            Canonical(R"([[{"c":[1]}],[{"c":[1,2]}]])"));
}

TEST(EngineFastPathsTest, EqualAnalyticCallsShareOneStateAndCheckpointAsTwo) {
  const std::string sql =
      "SELECT v, zscore(v, 3) AS z FROM s WHERE abs(zscore(v, 3)) > 1 AND lag(v) < v";
  const std::string rows =
      R"([{"ts":1,"v":1},{"ts":2,"v":2},{"ts":3,"v":3},{"ts":4,"v":10},{"ts":5,"v":10}])";
  // As the calls would be one by one: zscore 3.0, 9.797..., 1.404...; lag(v) < v drops the 5th.
  EXPECT_EQ(RunRows(kEvents, sql, rows),
            Canonical(R"([[{"v":3,"z":3.0}],[{"v":10,"z":9.797958971132712}]])"));

  auto rule = MakeRule(sql);
  for (int64_t ts = 1; ts <= 3; ++ts) {
    (void)rule->Push(*ParseJsonValue(R"({"v":)" + std::to_string(ts) + "}"), ts);
  }
  // Every call still has its state in the checkpoint, the two zscores alike.
  auto snapshot = ParseJsonValue(rule->Snapshot());
  ASSERT_TRUE(snapshot.ok());
  const Array& analytic = snapshot->Find("analytic")->array_value();
  ASSERT_EQ(analytic.size(), 3U);
  EXPECT_EQ(ToJson(analytic[0]), ToJson(analytic[1])) << ToJson(*snapshot);  // zscore twice
  EXPECT_NE(ToJson(analytic[0]), ToJson(analytic[2]));                       // lag
  auto restored = MakeRule(sql);
  ASSERT_TRUE(restored->Restore(rule->Snapshot()).ok());
  auto out = restored->Push(*ParseJsonValue(R"({"v":10})"), 4);
  ASSERT_EQ(out.size(), 1U);
  EXPECT_EQ(ToJson(Value::MakeArray(out[0])), R"([{"v":10,"z":9.797958971132712}])");
}

TEST(EngineFastPathsTest, CallsOfRandNeverShareAState) {
  // lag(rand()) twice: two draws per event, so the two lags differ (as 2^-53 chance allows).
  auto rule = MakeRule("SELECT lag(rand()) AS a, lag(rand()) AS b FROM s");
  (void)rule->Push(*ParseJsonValue(R"({})"), 1);
  auto out = rule->Push(*ParseJsonValue(R"({})"), 2);
  ASSERT_EQ(out.size(), 1U);
  ASSERT_EQ(out[0].size(), 1U);
  const Value* a = out[0][0].Find("a");
  const Value* b = out[0][0].Find("b");
  ASSERT_TRUE(a != nullptr && b != nullptr);
  EXPECT_NE(a->float_value(), b->float_value());
}

TEST(EngineFastPathsTest, CallsDifferingInTheSignOfAZeroKeepTheirOwnState) {
  // -0.0 = 0.0, but the two defaults print differently.
  EXPECT_EQ(RunRows(kEvents, "SELECT lag(v, 1, -0.0) AS a, lag(v, 1, 0.0) AS b FROM s",
                    R"([{"ts":1,"v":1}])"),
            Canonical(R"([[{"a":-0.0,"b":0.0}]])"));
}

TEST(EngineFastPathsTest, KeysOfEveryTypeGroupAndPartitionByKeyEquality) {
  // "1" is a string apart from 1; 1 and 1.0 are one key; null and arrays are keys too.
  const std::string rows =
      R"([{"ts":1000,"k":"1"},{"ts":2000,"k":1},{"ts":3000,"k":1.0},{"ts":4000,"k":"1"},
          {"ts":5000},{"ts":6000,"k":[1,"a"]},{"ts":7000,"k":[1.0,"a"]},{"ts":20000,"k":"1"}])";
  EXPECT_EQ(
      RunRows(kEvents, "SELECT k, count(*) AS n FROM s GROUP BY k, TUMBLINGWINDOW(ss, 10)", rows),
      Canonical(R"([[{"k":"1","n":2},{"k":1,"n":2},{"n":1},{"k":[1,"a"],"n":2}]])"));
  EXPECT_EQ(RunRows(kEvents, "SELECT acc_count(ts) OVER (PARTITION BY k) AS n FROM s", rows),
            Canonical(R"([[{"n":1}],[{"n":1}],[{"n":2}],[{"n":2}],[{"n":1}],[{"n":1}],
                           [{"n":2}],[{"n":3}]])"));
  // A group's key survives the event it came from.
  auto rule = MakeRule("SELECT k, count(*) AS n FROM s GROUP BY k, TUMBLINGWINDOW(ss, 10)");
  {
    Value event = *ParseJsonValue(R"({"k":"a fairly long device name, not inline"})");
    (void)rule->Push(event, 1000);
  }
  (void)rule->Push(*ParseJsonValue(R"({"k":"a fairly long device name, not inline"})"), 2000);
  auto out = rule->AdvanceTo(10000);
  ASSERT_EQ(out.size(), 1U);
  EXPECT_EQ(ToJson(Value::MakeArray(out[0])),
            R"([{"k":"a fairly long device name, not inline","n":2}])");
}

TEST(EngineFastPathsTest, SelectStarHandsTheEventOnAsItIs) {
  auto rule = MakeRule("SELECT * FROM s WHERE v > 1");
  const Value event = *ParseJsonValue(R"({"v":2,"n":null,"o":{"x":[1]}})");
  auto out = rule->Push(event, 1);
  ASSERT_EQ(out.size(), 1U);
  ASSERT_EQ(out[0].size(), 1U);
  EXPECT_EQ(ToJson(out[0][0]), ToJson(event));
  EXPECT_EQ(&out[0][0].object_value(), &event.object_value());  // shared, not copied
}

}  // namespace
}  // namespace verge::rules
