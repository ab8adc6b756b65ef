// The rule engine through RunTest(): table-driven cases of (streams, SQL, input rows with
// timestamps, expected emissions), worked out by hand from the documented semantics in
// engine.h and eval.h. Rows and expectations are written as JSON; outputs are compared as
// canonical JSON text (value.h's ToJson), so 2 and 2.0 differ.
#include "node/rules/engine.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "node/rules/eval.h"
#include "node/rules/json_value.h"
#include "node/rules/parser.h"

namespace verge::rules {
namespace {

std::unique_ptr<Rule> MakeRule(const std::string& sql, int64_t tolerance_ms = 0);

constexpr const char* kEventStream = R"(CREATE STREAM s () WITH (DATASOURCE="s", TIMESTAMP="ts"))";

struct Case {
  const char* name;
  const char* sql;
  const char* input;  // JSON array of the rows of stream s
  const char* want;   // JSON array of emissions, each an array of rows
  uint64_t exceptions = 0;
  uint64_t late = 0;
  int64_t tolerance_ms = 0;
  const char* stream = kEventStream;
};

std::string Canonical(const char* json) {
  auto v = ParseJsonValue(json);
  EXPECT_TRUE(v.ok()) << json;
  return v.ok() ? ToJson(*v) : "";
}

std::string Outputs(const TestOutput& out) {
  Array emissions;
  for (const Emission& e : out.outputs) emissions.push_back(Value::MakeArray(e));
  return ToJson(Value::MakeArray(std::move(emissions)));
}

void RunCases(const std::vector<Case>& cases) {
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    auto rows = ParseJsonValue(c.input);
    ASSERT_TRUE(rows.ok() && rows->is_array()) << c.input;
    std::map<std::string, std::vector<Row>> input{{"s", rows->array_value()}};
    RuleOptions options;
    options.late_tolerance_ms = c.tolerance_ms;
    auto out = RunTest({c.stream}, c.sql, input, options);
    ASSERT_TRUE(out.ok()) << out.error().ToString();
    EXPECT_EQ(Outputs(out.value()), Canonical(c.want)) << c.sql;
    EXPECT_EQ(out.value().counters.exceptions, c.exceptions) << out.value().counters.last_error;
    EXPECT_EQ(out.value().counters.late, c.late);
  }
}

// --- operators ------------------------------------------------------------------------------

TEST(EngineTest, Operators) {
  RunCases({
      {"int and float arithmetic",
       "SELECT a + b AS s, a - b AS d, a * b AS m, a / b AS q, a % b AS r FROM s",
       R"([{"ts":1000,"a":7,"b":2},{"ts":2000,"a":7.5,"b":2},{"ts":3000,"a":-7,"b":2}])",
       R"([[{"s":9,"d":5,"m":14,"q":3,"r":1}],
           [{"s":9.5,"d":5.5,"m":15.0,"q":3.75,"r":1.5}],
           [{"s":-5,"d":-9,"m":-14,"q":-3,"r":-1}]])"},
      {"integer division by zero is counted and the next row goes on", "SELECT a / b AS q FROM s",
       R"([{"ts":1000,"a":1,"b":0},{"ts":2000,"a":4,"b":2}])", R"([[{"q":2}]])", 1},
      {"float division and modulo by zero are errors too", "SELECT a / b AS q, a % c AS r FROM s",
       R"([{"ts":1000,"a":1.5,"b":0.0,"c":1},{"ts":2000,"a":1.5,"b":1,"c":0}])", "[]", 2},
      {"null propagates through arithmetic; null fields are left out",
       "SELECT a + b AS x, -b AS y, isnull(a + b) AS n FROM s", R"([{"ts":1000,"a":1}])",
       R"([[{"n":true}]])"},
      {"no string concatenation with +", "SELECT a + 1 AS x FROM s",
       R"([{"ts":1000,"a":"x"},{"ts":2000,"a":1}])", R"([[{"x":2}]])", 1},
      {"bitwise on bigints and booleans",
       "SELECT a & b AS x, a | b AS y, a ^ b AS z, t & f AS bt FROM s",
       R"([{"ts":1000,"a":6,"b":3,"t":true,"f":false}])", R"([[{"x":2,"y":7,"z":5,"bt":false}]])"},
      {"comparisons and logic",
       "SELECT a > 1 AS gt, a <= 1 AS le, a = 1.0 AS eq, a != 2 AS ne, a > 0 AND b AS x, "
       "b OR a < 0 AS y, NOT b AS z, name >= \"abc\" AS sc FROM s",
       R"([{"ts":1000,"a":1,"b":false,"name":"abd"}])",
       R"([[{"gt":false,"le":true,"eq":true,"ne":true,"x":false,"y":false,"z":true,"sc":true}]])"},
      {"three-valued logic with null; comparisons with null are false",
       "SELECT c AND false AS x, c OR true AS y, isnull(c AND true) AS z, c = 1 AS e, "
       "c != 1 AS ne FROM s",
       R"([{"ts":1000}])", R"([[{"x":false,"y":true,"z":true,"e":false,"ne":false}]])"},
      {"comparing a string with a number is a runtime error", "SELECT a > 1 AS x FROM s",
       R"([{"ts":1000,"a":"x"}])", "[]", 1},
      {"AND needs booleans", "SELECT a AND true AS x FROM s", R"([{"ts":1000,"a":1}])", "[]", 1},
      {"LIKE",
       "SELECT n LIKE \"a%\" AS p, n LIKE \"_b_\" AS u, n NOT LIKE \"%c\" AS nl, "
       "n LIKE \"a\\\\%\" AS esc, \"é\" LIKE \"_\" AS cp FROM s",
       R"([{"ts":1000,"n":"abc"},{"ts":2000,"n":"a%"}])",
       R"([[{"p":true,"u":true,"nl":false,"esc":false,"cp":true}],
           [{"p":true,"u":false,"nl":true,"esc":true,"cp":true}]])"},
      {"IN, NOT IN, IN an array, BETWEEN",
       "SELECT a IN (1, 2, 3) AS i, a NOT IN (1, 2) AS ni, a BETWEEN 2 AND 3 AS b, "
       "a NOT BETWEEN 1 AND 2 AS nb, a IN arr AS ia, 2.0 IN (1, 2) AS fi FROM s",
       R"([{"ts":1000,"a":3,"arr":[3,4]}])",
       R"([[{"i":true,"ni":true,"b":true,"nb":true,"ia":true,"fi":true}]])"},
      {"CASE, searched and simple",
       "SELECT CASE WHEN a > 10 THEN \"high\" WHEN a > 5 THEN \"mid\" ELSE \"low\" END AS lvl, "
       "CASE a WHEN 1 THEN \"one\" END AS w FROM s",
       R"([{"ts":1000,"a":7},{"ts":2000,"a":1},{"ts":3000,"a":11}])",
       R"([[{"lvl":"mid"}],[{"lvl":"low","w":"one"}],[{"lvl":"high"}]])"},
      {"-> and [] on structs and arrays",
       "SELECT obj->x AS x, obj->y->z AS z, obj->none AS n, arr[0] AS first, arr[-1] AS last, "
       "arr[1:3] AS mid, arr[:1] AS head, arr[2:] AS tail, obj[\"x\"] AS bx FROM s",
       R"([{"ts":1000,"obj":{"x":1,"y":{"z":"deep"}},"arr":[10,20,30,40]}])",
       R"([[{"x":1,"z":"deep","first":10,"last":40,"mid":[20,30],"head":[10],"tail":[30,40],
             "bx":1}]])"},
      {"an index out of range and -> on a non-struct are runtime errors",
       "SELECT arr[5] AS x FROM s", R"([{"ts":1000,"arr":[1]},{"ts":2000,"arr":[1,2,3,4,5,6]}])",
       R"([[{"x":6}]])", 1},
      {"-> on a number", "SELECT a->b AS x FROM s", R"([{"ts":1000,"a":1}])", "[]", 1},
  });
}

// --- projection -----------------------------------------------------------------------------

TEST(EngineTest, Projection) {
  RunCases({
      {"eKuiper's default names", "SELECT a, obj->x, abs(a), a + 1, a * 2, a AS alias FROM s",
       R"([{"ts":1000,"a":-2,"obj":{"x":5}}])",
       R"([[{"a":-2,"x":5,"abs":2,"kuiper_field_0":-1,"kuiper_field_1":-4,"alias":-2}]])"},
      {"the first of two fields with one name wins", "SELECT a, b AS a FROM s",
       R"([{"ts":1000,"a":1,"b":2}])", R"([[{"a":1}]])"},
      {"a filter rule", "SELECT * FROM s WHERE temperature > 50",
       R"([{"ts":1000,"temperature":40},{"ts":2000,"temperature":60,"d":"x"}])",
       R"([[{"ts":2000,"temperature":60,"d":"x"}]])"},
      {"* with more fields; null columns stay under *", "SELECT *, t * 2 AS t2 FROM s",
       R"([{"ts":1000,"t":2,"n":null}])", R"([[{"ts":1000,"t":2,"n":null,"t2":4}]])"},
      {"stream.* and a qualified column", "SELECT s.*, s.t AS u FROM s", R"([{"ts":5,"t":1}])",
       R"([[{"ts":5,"t":1,"u":1}]])"},
      {"a WHERE error drops that row only", "SELECT a FROM s WHERE 10 / a > 1",
       R"([{"ts":1,"a":0},{"ts":2,"a":2},{"ts":3,"a":20}])", R"([[{"a":2}]])", 1},
  });
  // Typed stream: FLOAT given 20 holds 20.0; BIGINT given 3.0 holds 3.
  auto out = RunTest(
      {R"(CREATE STREAM t (v FLOAT, n BIGINT, ts BIGINT) WITH (DATASOURCE="t", TIMESTAMP="ts"))"},
      "SELECT v, n FROM t", {{"t", {*ParseJsonValue(R"({"ts":1,"v":20,"n":3.0})")}}});
  ASSERT_TRUE(out.ok()) << out.error().ToString();
  EXPECT_EQ(Outputs(out.value()), Canonical(R"([[{"v":20.0,"n":3}]])"));
}

// --- scalar functions -----------------------------------------------------------------------

TEST(EngineTest, MathFunctions) {
  RunCases({
      {"math",
       "SELECT abs(-3) AS a, abs(-2.5) AS af, ceil(1.2) AS c, floor(-1.2) AS f, round(2.5) AS r, "
       "round(7) AS ri, sqrt(16) AS q, power(2, 10) AS p, mod(7, 3) AS m, sign(-4) AS sg, "
       "log(100) AS l, log(2, 8) AS l2, ln(1) AS n, exp(0) AS e, bitand(12, 10) AS ba, "
       "bitor(12, 10) AS bo, bitxor(12, 10) AS bx, bitnot(0) AS bn, sin(0) AS si, cos(0) AS co, "
       "tan(0) AS ta, atan2(0, 1) AS at, asin(0) AS asn, acos(1) AS ac, atan(0) AS atn, "
       "sinh(0) AS sh, cosh(0) AS ch, tanh(0) AS th FROM s",
       R"([{"ts":1000}])",
       R"([[{"a":3,"af":2.5,"c":2.0,"f":-2.0,"r":3.0,"ri":7,"q":4.0,"p":1024.0,"m":1,"sg":-1,
             "l":2.0,"l2":3.0,"n":0.0,"e":1.0,"ba":8,"bo":14,"bx":6,"bn":-1,"si":0.0,"co":1.0,
             "ta":0.0,"at":0.0,"asn":0.0,"ac":0.0,"atn":0.0,"sh":0.0,"ch":1.0,"th":0.0}]])"},
      {"mod by zero", "SELECT mod(a, 0) AS m FROM s", R"([{"ts":1,"a":1}])", "[]", 1},
      {"math on a string", "SELECT sqrt(a) AS m FROM s", R"([{"ts":1,"a":"x"}])", "[]", 1},
  });
}

TEST(EngineTest, StringFunctions) {
  RunCases({
      {"strings",
       "SELECT concat(a, \"-\", 1, n) AS c, length(\"h\u00e9llo\") AS l, "
       "numbytes(\"h\u00e9llo\") AS nb, lower(\"AbC\") AS lo, upper(\"abc\") AS up, "
       "trim(\"  x \") AS t, ltrim(\" x\") AS lt, rtrim(\"x \") AS rt, lpad(\"x\", 2) AS lp, "
       "rpad(\"x\", 2) AS rp, indexof(\"hello\", \"l\") AS i, indexof(\"hello\", \"z\") AS iz, "
       "startswith(\"hello\", \"he\") AS sw, endswith(\"hello\", \"lo\") AS ew, "
       "substring(\"hello\", 1, 3) AS sub, substring(\"hello\", 3) AS sub2, "
       "split_value(\"a/b/c\", \"/\", 1) AS sv, regexp_matches(\"abc123\", \"[0-9]+\") AS rm, "
       "regexp_replace(\"a1b2\", \"[0-9]\", \"_\") AS rr, "
       "regexp_substring(\"abc123def\", \"[0-9]+\") AS rs FROM s",
       R"([{"ts":1000,"a":"x"}])",
       R"([[{"c":"x-1","l":5,"nb":6,"lo":"abc","up":"ABC","t":"x","lt":"x","rt":"x","lp":"  x",
             "rp":"x  ","i":2,"iz":-1,"sw":true,"ew":true,"sub":"ell","sub2":"lo","sv":"b",
             "rm":true,"rr":"a_b_","rs":"123"}]])"},
      {"split_value out of range", "SELECT split_value(\"a\", \"/\", 3) AS x FROM s",
       R"([{"ts":1}])", "[]", 1},
      {"a bad regular expression", "SELECT regexp_matches(a, \"(\") AS x FROM s",
       R"([{"ts":1,"a":"x"}])", "[]", 1},
      {"string functions on null give null", "SELECT upper(n) AS u, length(n) AS l FROM s",
       R"([{"ts":1}])", "[[{}]]"},
  });
}

TEST(EngineTest, CastAndNullFunctions) {
  RunCases({
      {"cast, coalesce, isnull",
       "SELECT cast(\"12\", \"bigint\") AS i, cast(3.9, \"bigint\") AS t, cast(1, \"float\") AS f, "
       "cast(\"true\", \"boolean\") AS b, cast(12, \"string\") AS s, cast(1.5, \"string\") AS fs, "
       "cast(\"1970-01-01T00:00:01Z\", \"datetime\") AS dt, coalesce(n, m, 5) AS c, "
       "isnull(n) AS isn, isnull(a) AS isa FROM s",
       R"([{"ts":1000,"m":null,"a":0}])",
       R"([[{"i":12,"t":3,"f":1.0,"b":true,"s":"12","fs":"1.5","dt":1000,"c":5,"isn":true,
             "isa":false}]])"},
      {"a bad cast is a runtime error", "SELECT cast(a, \"bigint\") AS x FROM s",
       R"([{"ts":1,"a":"abc"},{"ts":2,"a":"7"}])", R"([[{"x":7}]])", 1},
  });
}

TEST(EngineTest, TimeFunctions) {
  // 2026-11-22T03:04:05.678Z, a Sunday, the 326th day of the year, day 20779 since the epoch.
  RunCases({
      {"parts and formats",
       "SELECT hour(t) AS h, minute(t) AS mi, second(t) AS sec, month(t) AS mo, "
       "day_of_month(t) AS d, day_of_week(t) AS dw, day_of_year(t) AS dy, day_name(t) AS dn, "
       "format_time(t, \"yyyy-MM-dd HH:mm:ss.SSS\") AS ft, date_calc(t, \"1h30m\") AS dc, "
       "date_calc(t, \"-1s\") AS dm, date_diff(t, 0) AS dd, from_unix_time(60) AS fu, "
       "hour(\"2026-11-22T10:00:00Z\") AS hs FROM s",
       R"([{"ts":5000,"t":1795316645678}])",
       R"([[{"h":3,"mi":4,"sec":5,"mo":11,"d":22,"dw":1,"dy":326,"dn":"Sunday",
             "ft":"2026-11-22 03:04:05.678","dc":1795322045678,"dm":1795316644678,"dd":20779,
             "fu":60000,"hs":10}]])"},
      {"the clock of the run",
       "SELECT tstamp() AS t, event_time() AS e, now() AS n, "
       "cur_date() AS d, cur_time() AS c FROM s",
       R"([{"ts":5000}])",
       R"([[{"t":5000,"e":5000,"n":"1970-01-01 00:00:05","d":"1970-01-01","c":"00:00:05"}]])"},
      {"a bad date", "SELECT hour(t) AS h FROM s", R"([{"ts":1,"t":"yesterday"}])", "[]", 1},
      {"dates out of range are errors, not overflows",
       "SELECT hour(t) AS h, date_calc(t, \"1h\") AS c, from_unix_time(t) AS f FROM s",
       R"([{"ts":1,"t":9223372036854775807},{"ts":2,"t":-9223372036854775808}])", "[]", 2},
  });
  // rand() and newuuid(): shapes only.
  auto out = RunTest({kEventStream}, "SELECT rand() AS r, newuuid() AS u FROM s",
                     {{"s", {*ParseJsonValue(R"({"ts":1})")}}});
  ASSERT_TRUE(out.ok());
  ASSERT_EQ(out.value().outputs.size(), 1U);
  const Value& row = out.value().outputs[0][0];
  ASSERT_TRUE(row.Find("r") != nullptr && row.Find("r")->is_float());
  EXPECT_GE(row.Find("r")->float_value(), 0.0);
  EXPECT_LT(row.Find("r")->float_value(), 1.0);
  ASSERT_TRUE(row.Find("u") != nullptr && row.Find("u")->is_string());
  EXPECT_EQ(row.Find("u")->string_value().size(), 36U);
  EXPECT_EQ(row.Find("u")->string_value()[14], '4');
}

// --- analytic functions ---------------------------------------------------------------------

constexpr const char* kDemoRows =
    R"([{"ts":1,"temperature":23,"humidity":88},{"ts":2,"temperature":23,"humidity":88},
        {"ts":3,"temperature":23,"humidity":88},{"ts":4,"temperature":25,"humidity":88},
        {"ts":5,"temperature":25,"humidity":90},{"ts":6,"temperature":25,"humidity":91},
        {"ts":7,"temperature":25,"humidity":91},{"ts":8,"temperature":25,"humidity":91}])";

TEST(EngineTest, AnalyticFunctions) {
  RunCases({
      {"lag with offset and default", "SELECT a, lag(a) AS p, lag(a, 2, 0) AS p2 FROM s",
       R"([{"ts":1,"a":1},{"ts":2,"a":2},{"ts":3,"a":3}])",
       R"([[{"a":1,"p2":0}],[{"a":2,"p":1,"p2":0}],[{"a":3,"p":2,"p2":1}]])"},
      {"analytic functions run before WHERE", "SELECT a, lag(a) AS p FROM s WHERE a > 1",
       R"([{"ts":1,"a":1},{"ts":2,"a":2},{"ts":3,"a":0},{"ts":4,"a":5}])",
       R"([[{"a":2,"p":1}],[{"a":5,"p":0}]])"},
      {"lag ignoring nulls", "SELECT lag(a, 1, -1, true) AS p FROM s",
       R"([{"ts":1,"a":1},{"ts":2},{"ts":3,"a":3}])", R"([[{"p":-1}],[{"p":1}],[{"p":1}]])"},
      {"PARTITION BY",
       "SELECT d, acc_sum(v) OVER (PARTITION BY d) AS total, "
       "acc_count(v) OVER (PARTITION BY d) AS n FROM s",
       R"([{"ts":1,"d":"a","v":1},{"ts":2,"d":"b","v":10},{"ts":3,"d":"a","v":2.5}])",
       R"([[{"d":"a","total":1,"n":1}],[{"d":"b","total":10,"n":1}],
           [{"d":"a","total":3.5,"n":2}]])"},
      {"OVER (WHEN): events failing it keep the last result",
       "SELECT acc_max(v) OVER (WHEN ok) AS m FROM s",
       R"([{"ts":1,"v":5,"ok":true},{"ts":2,"v":9,"ok":false},{"ts":3,"v":7,"ok":true}])",
       R"([[{"m":5}],[{"m":5}],[{"m":7}]])"},
      {"acc_avg, acc_min, acc_max",
       "SELECT acc_avg(v) AS av, acc_min(v) AS mn, acc_max(v) AS mx FROM s",
       R"([{"ts":1,"v":4},{"ts":2,"v":2},{"ts":3,"v":6}])",
       R"([[{"av":4.0,"mn":4,"mx":4}],[{"av":3.0,"mn":2,"mx":4}],[{"av":4.0,"mn":2,"mx":6}]])"},
      {"changed_col and had_changed ignoring nulls",
       "SELECT changed_col(true, st) AS c, had_changed(true, st) AS h FROM s",
       R"([{"ts":1,"st":"on"},{"ts":2,"st":"on"},{"ts":3,"st":null},{"ts":4,"st":"off"}])",
       R"([[{"c":"on","h":true}],[{"h":false}],[{"h":false}],[{"c":"off","h":true}]])"},
      {"had_changed over several columns", "SELECT had_changed(false, a, b) AS h FROM s",
       R"([{"ts":1,"a":1,"b":1},{"ts":2,"a":1,"b":1},{"ts":3,"a":1,"b":2}])",
       R"([[{"h":true}],[{"h":false}],[{"h":true}]])"},
      // The examples of eKuiper's analytic_functions.md ("Functions to detect changes").
      {"changed_col per column",
       "SELECT changed_col(true, temperature) AS myTemp, changed_col(true, humidity) AS myHum "
       "FROM s",
       kDemoRows,
       R"([[{"myTemp":23,"myHum":88}],[{}],[{}],[{"myTemp":25}],[{"myHum":90}],[{"myHum":91}],
           [{}],[{}]])"},
      {"had_changed in WHERE",
       "SELECT ts, temperature, humidity FROM s WHERE had_changed(true, temperature, humidity) = "
       "true",
       kDemoRows,
       R"([[{"ts":1,"temperature":23,"humidity":88}],[{"ts":4,"temperature":25,"humidity":88}],
           [{"ts":5,"temperature":25,"humidity":90}],[{"ts":6,"temperature":25,"humidity":91}]])"},
      {"changed one way and not the other",
       "SELECT ts, temperature, humidity FROM s WHERE had_changed(true, temperature) = true AND "
       "had_changed(true, humidity) = false",
       kDemoRows, R"([[{"ts":4,"temperature":25,"humidity":88}]])"},
      {"changed_col in WHERE",
       "SELECT ts, temperature, humidity FROM s WHERE changed_col(true, temperature) > 24",
       kDemoRows, R"([[{"ts":4,"temperature":25,"humidity":88}]])"},
      {"acc functions",
       "SELECT acc_sum(a) AS s, acc_max(a) AS mx, acc_min(a) AS mn, "
       "acc_count(a) AS n, acc_avg(a) AS av FROM s",
       R"([{"ts":1,"a":1},{"ts":2,"a":2},{"ts":3,"a":3}])",
       R"([[{"s":1,"mx":1,"mn":1,"n":1,"av":1.0}],[{"s":3,"mx":2,"mn":1,"n":2,"av":1.5}],
           [{"s":6,"mx":3,"mn":1,"n":3,"av":2.0}]])"},
      {"had_changed over every column", "SELECT had_changed(true, *) AS h FROM s",
       R"([{"ts":1,"a":1},{"ts":1,"a":1},{"ts":2,"a":1}])",
       R"([[{"h":true}],[{"h":false}],[{"h":true}]])"},
      {"latest with a default", "SELECT latest(v, 0) AS l FROM s",
       R"([{"ts":1},{"ts":2,"v":3},{"ts":3}])", R"([[{"l":0}],[{"l":3}],[{"l":3}]])"},
      {"zscore over the previous n values", "SELECT zscore(v, 3) AS z FROM s",
       R"([{"ts":1,"v":1},{"ts":2,"v":2},{"ts":3,"v":3},{"ts":4,"v":10},{"ts":5,"v":10}])",
       // 4: previous 1 2 3 (mean 2, sd sqrt(2/3)); 5: previous 2 3 10 (mean 5, sd sqrt(38/3)).
       R"([[{}],[{}],[{"z":3.0}],[{"z":9.797958971132712}],[{"z":1.404878717372541}]])"},
      {"ewma_score", "SELECT ewma_score(v, 0.5) AS e FROM s",
       R"([{"ts":1,"v":10},{"ts":2,"v":20},{"ts":3,"v":20},{"ts":4,"v":50}])",
       R"([[{}],[{}],[{"e":1.0}],[{"e":7.505553499465134}]])"},
      {"zscore on a string is an error", "SELECT zscore(v, 2) AS z FROM s", R"([{"ts":1,"v":"x"}])",
       "[]", 1},
  });
}

// --- windows --------------------------------------------------------------------------------

TEST(EngineTest, TumblingWindow) {
  RunCases({
      {"boundaries are aligned to the epoch and half-open",
       "SELECT count(*) AS n, sum(v) AS s, window_start() AS ws, window_end() AS we FROM s "
       "GROUP BY TUMBLINGWINDOW(ss, 10)",
       R"([{"ts":1000,"v":1},{"ts":9999,"v":2},{"ts":10000,"v":3},{"ts":25000,"v":4}])",
       R"([[{"n":2,"s":3,"ws":0,"we":10000}],[{"n":1,"s":3,"ws":10000,"we":20000}]])"},
      {"the window open at the end is not emitted",
       "SELECT count(*) AS n FROM s GROUP BY TUMBLINGWINDOW(ss, 10)",
       R"([{"ts":1000},{"ts":8999}])", "[]"},
      {"the clock moving 1 s after the last row closes a window",
       "SELECT count(*) AS n FROM s GROUP BY TUMBLINGWINDOW(ss, 10)",
       R"([{"ts":1000},{"ts":9000},{"ts":9500}])", R"([[{"n":3}]])"},
      {"closing exactly 1 s after the last row",
       "SELECT count(*) AS n FROM s GROUP BY TUMBLINGWINDOW(ss, 10)",
       R"([{"ts":1000},{"ts":9000}])", R"([[{"n":2}]])"},
      {"GROUP BY keys and ORDER BY",
       "SELECT d, avg(v) AS a, max(v) AS mx, min(v) AS mn FROM s "
       "GROUP BY d, TUMBLINGWINDOW(ss, 5) ORDER BY d DESC",
       R"([{"ts":1000,"d":"a","v":1},{"ts":2000,"d":"b","v":4},{"ts":3000,"d":"a","v":3},
           {"ts":5000,"d":"a","v":9}])",
       R"([[{"d":"b","a":4.0,"mx":4,"mn":4},{"d":"a","a":2.0,"mx":3,"mn":1}]])"},
      {"HAVING",
       "SELECT d, count(*) AS n FROM s GROUP BY d, TUMBLINGWINDOW(ss, 5) HAVING count(*) > 1",
       R"([{"ts":1000,"d":"a"},{"ts":2000,"d":"b"},{"ts":3000,"d":"a"},{"ts":6000,"d":"a"}])",
       R"([[{"d":"a","n":2}]])"},
      {"WHERE before grouping; a window whose rows all fail WHERE emits nothing",
       "SELECT count(*) AS n FROM s WHERE v > 1 GROUP BY TUMBLINGWINDOW(ss, 1)",
       R"([{"ts":100,"v":1},{"ts":1100,"v":2},{"ts":1200,"v":3},{"ts":2100,"v":0}])",
       R"([[{"n":2}]])"},
      {"a window without aggregates emits its rows",
       "SELECT v FROM s GROUP BY TUMBLINGWINDOW(ss, 2)",
       R"([{"ts":100,"v":1},{"ts":1100,"v":2},{"ts":3000,"v":3}])",
       R"([[{"v":1},{"v":2}],[{"v":3}]])"},
      {"a minute window",
       "SELECT count(*) AS n, window_end() AS we FROM s GROUP BY TUMBLINGWINDOW(mi, 1)",
       R"([{"ts":59999},{"ts":60000}])", R"([[{"n":1,"we":60000}]])"},
      {"aggregate FILTER",
       "SELECT count(*) FILTER (WHERE v > 1) AS n, count(*) AS total, count(v) AS nv FROM s "
       "GROUP BY TUMBLINGWINDOW(ss, 10)",
       R"([{"ts":1000,"v":1},{"ts":2000,"v":2},{"ts":3000,"v":3},{"ts":4000},{"ts":11000}])",
       R"([[{"n":2,"total":4,"nv":3}]])"},
      {"an error in one group drops that group only",
       "SELECT d, sum(v) / (count(*) - 1) AS x FROM s GROUP BY d, TUMBLINGWINDOW(ss, 10)",
       R"([{"ts":1000,"d":"a","v":1},{"ts":2000,"d":"b","v":2},{"ts":3000,"d":"b","v":4},
           {"ts":10000}])",
       R"([[{"d":"b","x":6}]])", 1},
  });
}

TEST(EngineTest, HoppingWindow) {
  RunCases({
      {"windows start every hop and last size",
       "SELECT count(*) AS n, window_start() AS ws FROM s GROUP BY HOPPINGWINDOW(ss, 10, 5)",
       R"([{"ts":1000},{"ts":6000},{"ts":12000},{"ts":30000}])",
       R"([[{"n":1,"ws":-5000}],[{"n":2,"ws":0}],[{"n":2,"ws":5000}],[{"n":1,"ws":10000}]])"},
      {"the same with events kept (collect needs them)",
       "SELECT collect(ts) AS c, window_start() AS ws FROM s GROUP BY HOPPINGWINDOW(ss, 10, 5)",
       R"([{"ts":1000},{"ts":6000},{"ts":12000},{"ts":30000}])",
       R"([[{"c":[1000],"ws":-5000}],[{"c":[1000,6000],"ws":0}],[{"c":[6000,12000],"ws":5000}],
           [{"c":[12000],"ws":10000}]])"},
      {"keys and aggregate state per window",
       "SELECT d, sum(v) AS s, last_value(v) AS lv FROM s "
       "GROUP BY d, HOPPINGWINDOW(ss, 4, 2) ORDER BY d",
       R"([{"ts":2500,"d":"b","v":1},{"ts":3000,"d":"a","v":2},{"ts":4500,"d":"a","v":3},
           {"ts":9000,"d":"a","v":4}])",
       // Windows [0,4) [2,6) [4,8) [6,10) [8,12) s; the clock ends at 10 s: [8,12) stays open.
       R"([[{"d":"a","s":2,"lv":2},{"d":"b","s":1,"lv":1}],
           [{"d":"a","s":5,"lv":3},{"d":"b","s":1,"lv":1}],
           [{"d":"a","s":3,"lv":3}],
           [{"d":"a","s":4,"lv":4}]])"},
  });
}

TEST(EngineTest, SlidingWindow) {
  RunCases({
      {"one window per event, looking back (t - size, t]",
       "SELECT count(*) AS n, window_start() AS ws, window_end() AS we FROM s "
       "GROUP BY SLIDINGWINDOW(ss, 5)",
       R"([{"ts":1000},{"ts":3000},{"ts":6000},{"ts":11000}])",
       R"([[{"n":1,"ws":-4000,"we":1000}],[{"n":2,"ws":-2000,"we":3000}],
           [{"n":2,"ws":1000,"we":6000}],[{"n":1,"ws":6000,"we":11000}]])"},
      {"OVER (WHEN) picks the triggering events",
       "SELECT count(*) AS n FROM s GROUP BY SLIDINGWINDOW(ss, 10) OVER (WHEN v > 5)",
       R"([{"ts":1000,"v":1},{"ts":2000,"v":7},{"ts":3000,"v":2},{"ts":4000,"v":9}])",
       R"([[{"n":2}],[{"n":4}]])"},
      {"a delay waits for later events",
       "SELECT count(*) AS n, window_end() AS we FROM s GROUP BY SLIDINGWINDOW(ss, 5, 2)",
       R"([{"ts":1000},{"ts":2000},{"ts":5000}])", R"([[{"n":2,"we":3000}],[{"n":2,"we":4000}]])"},
      {"z-score of the latest value over a sliding window",
       "SELECT (last_value(v, true) - avg(v)) / stddev(v) AS z FROM s "
       "GROUP BY SLIDINGWINDOW(ss, 10)",
       // The first window has stddev 0: float division by zero, counted.
       R"([{"ts":1000,"v":1},{"ts":2000,"v":3}])", R"([[{"z":1.0}]])", 1},
  });
}

TEST(EngineTest, SessionWindow) {
  RunCases({
      {"timeout and max duration",
       "SELECT count(*) AS n, window_start() AS ws, window_end() AS we FROM s "
       "GROUP BY SESSIONWINDOW(ss, 2, 10)",
       R"([{"ts":1000},{"ts":2500},{"ts":4000},{"ts":7000},{"ts":8000},{"ts":9500},
           {"ts":10500},{"ts":11000}])",
       R"([[{"n":3,"ws":1000,"we":6000}],[{"n":3,"ws":7000,"we":10000}]])"},
  });
}

TEST(EngineTest, CountWindow) {
  RunCases({
      {"tumbling count window",
       "SELECT count(*) AS n, collect(v) AS vs, window_start() AS ws, window_end() AS we FROM s "
       "GROUP BY COUNTWINDOW(3)",
       R"([{"ts":1,"v":1},{"ts":2,"v":2},{"ts":3,"v":3},{"ts":4,"v":4},{"ts":5,"v":5},
           {"ts":6,"v":6},{"ts":7,"v":7}])",
       R"([[{"n":3,"vs":[1,2,3],"ws":1,"we":3}],[{"n":3,"vs":[4,5,6],"ws":4,"we":6}]])"},
      {"count window with a hop", "SELECT collect(v) AS vs FROM s GROUP BY COUNTWINDOW(3, 2)",
       R"([{"ts":1,"v":1},{"ts":2,"v":2},{"ts":3,"v":3},{"ts":4,"v":4},{"ts":5,"v":5},
           {"ts":6,"v":6},{"ts":7,"v":7}])",
       R"([[{"vs":[2,3,4]}],[{"vs":[4,5,6]}]])"},
      {"WHERE filters inside the window, after counting",
       "SELECT v FROM s WHERE v > 1 GROUP BY COUNTWINDOW(2)",
       R"([{"ts":1,"v":1},{"ts":2,"v":2},{"ts":3,"v":3},{"ts":4,"v":4}])",
       R"([[{"v":2}],[{"v":3},{"v":4}]])"},
      {"FILTER decides what enters the window",
       "SELECT collect(v) AS vs FROM s GROUP BY COUNTWINDOW(2) FILTER (WHERE v > 1)",
       R"([{"ts":1,"v":1},{"ts":2,"v":2},{"ts":3,"v":3},{"ts":4,"v":4}])", R"([[{"vs":[2,3]}]])"},
  });
}

TEST(EngineTest, AggregateFunctions) {
  RunCases({
      {"statistics",
       "SELECT stddev(v) AS sd, var(v) AS va, stddevs(v) AS sds, vars(v) AS vas, "
       "median(v) AS md, percentile(v, 0.25) AS p25, percentile_disc(v, 0.5) AS pd, "
       "last_value(v, true) AS lv, last_value(v, false) AS lvn, avg(v) AS av, sum(v) AS su, "
       "sum(f) AS sf, min(v) AS mn, max(n) AS mx FROM s GROUP BY COUNTWINDOW(5)",
       R"([{"ts":1,"v":2,"f":0.5,"n":"b"},{"ts":2,"v":4,"n":"a"},{"ts":3,"v":4},
           {"ts":4,"v":10,"f":1},{"ts":5}])",
       R"([[{"sd":3.0,"va":9.0,"sds":3.4641016151377544,"vas":12.0,"md":4.0,"p25":3.5,
             "pd":4.0,"lv":10,"av":5.0,"su":20,"sf":1.5,"mn":2,"mx":"b"}]])"},
      {"deduplicate all and collect(*)",
       "SELECT deduplicate(d, true) AS u, collect(*) AS rows FROM s GROUP BY COUNTWINDOW(3)",
       R"([{"ts":1,"d":"a"},{"ts":2,"d":"b"},{"ts":3,"d":"a"}])",
       R"([[{"u":[{"ts":1,"d":"a"},{"ts":2,"d":"b"}],
             "rows":[{"ts":1,"d":"a"},{"ts":2,"d":"b"},{"ts":3,"d":"a"}]}]])"},
      {"deduplicate latest: the last row if its value is new",
       "SELECT deduplicate(d, false) AS u FROM s GROUP BY COUNTWINDOW(2)",
       R"([{"ts":1,"d":"a"},{"ts":2,"d":"b"},{"ts":3,"d":"a"},{"ts":4,"d":"a"}])",
       R"([[{"u":{"ts":2,"d":"b"}}],[{}]])"},
      // The examples of eKuiper's aggregate_functions.md.
      {"collect(*)[1]->a", "SELECT collect(*)[1]->a AS r1 FROM s GROUP BY TUMBLINGWINDOW(ss, 10)",
       R"([{"ts":1,"a":32,"b":"hello"},{"ts":2,"a":45,"b":"world"},{"ts":10000}])",
       R"([[{"r1":45}]])"},
      {"deduplicate(a, false)->a over a sliding hour",
       "SELECT deduplicate(a, false)->a AS r1 FROM s GROUP BY SLIDINGWINDOW(hh, 1)",
       R"([{"ts":1,"a":32},{"ts":2,"a":45},{"ts":3,"a":32}])", R"([[{"r1":32}],[{"r1":45}],[{}]])"},
      {"sum of nothing is null, count of nothing 0",
       "SELECT sum(v) AS s, count(v) AS n, avg(v) AS a FROM s GROUP BY COUNTWINDOW(1)",
       R"([{"ts":1}])", R"([[{"n":0}]])"},
      {"sum of strings is an error", "SELECT sum(v) AS s FROM s GROUP BY COUNTWINDOW(1)",
       R"([{"ts":1,"v":"x"}])", "[]", 1},
  });
}

// --- event time ------------------------------------------------------------------------------

TEST(EngineTest, LateData) {
  RunCases({
      {"without tolerance, an event behind the newest is late",
       "SELECT count(*) AS n FROM s GROUP BY TUMBLINGWINDOW(ss, 10)",
       R"([{"ts":1000},{"ts":12000},{"ts":5000},{"ts":13000}])", R"([[{"n":1}]])", 0, 1},
      {"within the tolerance it still counts",
       "SELECT count(*) AS n FROM s GROUP BY TUMBLINGWINDOW(ss, 10)",
       R"([{"ts":1000},{"ts":12000},{"ts":8000},{"ts":16000},{"ts":4000}])", R"([[{"n":2}]])", 0, 1,
       5000},
      {"a filter rule has no late data", "SELECT ts FROM s", R"([{"ts":2000},{"ts":1000}])",
       R"([[{"ts":2000}],[{"ts":1000}]])"},
  });
}

TEST(EngineTest, ProcessingTimeUsesTheTsColumn) {
  RunCases({
      {"no TIMESTAMP: the ts column drives the clock",
       "SELECT count(*) AS n FROM p GROUP BY TUMBLINGWINDOW(ss, 10)", "[]", "[]", 0, 0, 0,
       R"(CREATE STREAM p () WITH (DATASOURCE="p"))"},
  });
  auto out = RunTest({R"(CREATE STREAM p () WITH (DATASOURCE="p"))"},
                     "SELECT count(*) AS n FROM p GROUP BY TUMBLINGWINDOW(ss, 10)",
                     {{"p",
                       {*ParseJsonValue(R"({"ts":1000})"), *ParseJsonValue(R"({"ts":500})"),
                        *ParseJsonValue(R"({"ts":10500})")}}});
  ASSERT_TRUE(out.ok());
  // The 500 row arrives at clock 1000 (the clock never goes back): not late, in [0, 10 s).
  EXPECT_EQ(Outputs(out.value()), Canonical(R"([[{"n":2}]])"));
  EXPECT_EQ(out.value().counters.late, 0U);
}

// --- counters and errors ---------------------------------------------------------------------

TEST(EngineTest, TimestampsOutOfRangeAreExceptions) {
  auto rule = MakeRule("SELECT count(*) AS n FROM s GROUP BY HOPPINGWINDOW(ss, 10, 5)");
  EXPECT_TRUE(rule->Push(*ParseJsonValue(R"({"ts":1})"), INT64_MIN).empty());
  EXPECT_TRUE(rule->Push(*ParseJsonValue(R"({"ts":1})"), INT64_MAX).empty());
  EXPECT_EQ(rule->counters().exceptions, 2U);
  EXPECT_TRUE(rule->AdvanceTo(INT64_MAX).empty());
  EXPECT_TRUE(rule->AdvanceTo(INT64_MIN).empty());
}

TEST(EngineTest, Counters) {
  auto rows = ParseJsonValue(R"([{"ts":1,"a":1},{"ts":2,"a":0},{"ts":3,"a":2},{"ts":4,"a":-1}])");
  auto out = RunTest({kEventStream}, "SELECT 10 / a AS x FROM s WHERE a >= 0",
                     {{"s", rows->array_value()}});
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(out.value().counters.records_in, 4U);
  EXPECT_EQ(out.value().counters.records_out, 2U);
  EXPECT_EQ(out.value().counters.exceptions, 1U);
  EXPECT_EQ(out.value().counters.last_error, "division by zero at line 1, column 11");
}

TEST(EngineTest, Errors) {
  auto bad = RunTest({kEventStream}, "SELECT a FORM s", {});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().line, 1);
  EXPECT_EQ(bad.error().column, 10);

  auto multi = RunTest({kEventStream}, "SELECT a\nFROM s\nWHERE a >", {});
  ASSERT_FALSE(multi.ok());
  EXPECT_EQ(multi.error().line, 3);

  auto unknown = RunTest({kEventStream}, "SELECT a FROM nope", {});
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error().line, 1);
  EXPECT_EQ(unknown.error().column, 15);
  EXPECT_NE(unknown.error().message.find("unknown stream"), std::string::npos);

  auto bad_stream =
      RunTest({"CREATE STREAM x (a INT) WITH (DATASOURCE=\"x\")"}, "SELECT a FROM x", {});
  ASSERT_FALSE(bad_stream.ok());
  EXPECT_EQ(bad_stream.error().line, 1);

  auto twice = RunTest({kEventStream, kEventStream}, "SELECT a FROM s", {});
  ASSERT_FALSE(twice.ok());

  // Rows of other streams are ignored; a non-object row is an exception.
  auto other = RunTest({kEventStream}, "SELECT a FROM s",
                       {{"t", {*ParseJsonValue(R"({"a":1})")}}, {"s", {Value::Int(3)}}});
  ASSERT_TRUE(other.ok());
  EXPECT_TRUE(other.value().outputs.empty());
  EXPECT_EQ(other.value().counters.exceptions, 1U);
}

// --- the Rule API -----------------------------------------------------------------------------

TEST(EngineTest, RuleDrivenDirectly) {
  auto select = ParseSelect("SELECT count(*) AS n FROM s GROUP BY TUMBLINGWINDOW(ss, 10)");
  auto stream = ParseCreateStream(kEventStream);
  ASSERT_TRUE(select.ok() && stream.ok());
  auto rule = Rule::Create(select.value(), stream.value(), RuleOptions{2000});
  ASSERT_TRUE(rule.ok());
  EXPECT_TRUE((*rule)->Push(*ParseJsonValue(R"({"ts":1000})"), 1000).empty());
  EXPECT_EQ((*rule)->watermark(), -1000);
  // The watermark trails by the tolerance: 11 s does not close [0, 10 s) yet.
  EXPECT_TRUE((*rule)->Push(*ParseJsonValue(R"({"ts":11000})"), 11000).empty());
  EXPECT_TRUE((*rule)->Push(*ParseJsonValue(R"({"ts":9000})"), 9000).empty());
  auto out = (*rule)->AdvanceTo(12000);
  ASSERT_EQ(out.size(), 1U);
  EXPECT_EQ(ToJson(Value::MakeArray(out[0])), R"([{"n":2}])");
  EXPECT_TRUE((*rule)->AdvanceTo(11000).empty());  // never backwards
  EXPECT_EQ((*rule)->watermark(), 10000);

  auto wrong = Rule::Create(
      select.value(), ParseCreateStream(R"(CREATE STREAM o () WITH (DATASOURCE="o"))").value(), {});
  EXPECT_FALSE(wrong.ok());
}

TEST(EvalTest, LikeMatch) {
  EXPECT_TRUE(LikeMatch("", "%"));
  EXPECT_TRUE(LikeMatch("abc", "%%c"));
  EXPECT_FALSE(LikeMatch("abc", "_"));
  EXPECT_TRUE(LikeMatch("a_c", "a\\_c"));
  EXPECT_FALSE(LikeMatch("abc", "a\\_c"));
  EXPECT_TRUE(LikeMatch("xaaab", "%a%b"));
}

}  // namespace
}  // namespace verge::rules

// --- checkpoints -------------------------------------------------------------------------------

namespace verge::rules {
namespace {

std::unique_ptr<Rule> MakeRule(const std::string& sql, int64_t tolerance_ms) {
  auto select = ParseSelect(sql);
  auto stream = ParseCreateStream(kEventStream);
  EXPECT_TRUE(select.ok()) << select.error().ToString();
  auto rule = Rule::Create(select.value(), stream.value(), RuleOptions{tolerance_ms});
  EXPECT_TRUE(rule.ok());
  return std::move(rule).value();
}

// Feeds rows as RunTest does and appends the emissions to `out` as JSON text.
void Feed(Rule& rule, const Array& rows, size_t from, size_t to, std::string& out) {
  auto append = [&](const std::vector<Emission>& es) {
    for (const Emission& e : es) out += ToJson(Value::MakeArray(e));
  };
  for (size_t i = from; i < to; ++i) {
    const int64_t ts = rows[i].Find("ts")->int_value();
    append(rule.AdvanceTo(ts));
    append(rule.Push(rows[i], ts));
  }
}

TEST(EngineTest, SnapshotAndRestoreResumeEveryKindOfState) {
  const char* rows_json =
      R"([{"ts":1000,"d":"a","v":1},{"ts":2500,"d":"b","v":2},{"ts":4000,"d":"a","v":3},
          {"ts":7000,"d":"b","v":4},{"ts":8000,"d":"a","v":5},{"ts":9500,"d":"a","v":6},
          {"ts":10500,"d":"b","v":7},{"ts":11000,"d":"a","v":8},{"ts":15000,"d":"a","v":9},
          {"ts":21000,"d":"b","v":10}])";
  const Array rows = ParseJsonValue(rows_json)->array_value();
  const char* sqls[] = {
      "SELECT d, count(*) AS n, avg(v) AS a, stddev(v) AS sd FROM s "
      "GROUP BY d, TUMBLINGWINDOW(ss, 5)",
      "SELECT d, sum(v) AS s FROM s GROUP BY d, HOPPINGWINDOW(ss, 6, 2)",
      "SELECT collect(v) AS c FROM s GROUP BY TUMBLINGWINDOW(ss, 5)",
      "SELECT count(*) AS n FROM s GROUP BY SLIDINGWINDOW(ss, 3, 1)",
      "SELECT count(*) AS n, window_start() AS ws FROM s GROUP BY SESSIONWINDOW(ss, 2, 10)",
      "SELECT collect(v) AS c FROM s GROUP BY COUNTWINDOW(3, 2)",
      "SELECT v, lag(v) OVER (PARTITION BY d) AS p, acc_sum(v) AS t, zscore(v, 3) AS z, "
      "ewma_score(v, 0.3) AS e, had_changed(true, d) AS h, latest(d) AS l FROM s",
  };
  for (const char* sql : sqls) {
    SCOPED_TRACE(sql);
    for (size_t cut = 1; cut < rows.size(); cut += 3) {
      std::string want;
      auto whole = MakeRule(sql, 1000);
      Feed(*whole, rows, 0, rows.size(), want);
      ASSERT_FALSE(want.empty());
      std::string got;
      auto before = MakeRule(sql, 1000);
      Feed(*before, rows, 0, cut, got);
      const std::string bytes = before->Snapshot();
      auto after = MakeRule(sql, 1000);
      ASSERT_TRUE(after->Restore(bytes).ok()) << after->Restore(bytes).message();
      Feed(*after, rows, cut, rows.size(), got);
      EXPECT_EQ(got, want) << "cut after row " << cut;
      EXPECT_EQ(after->counters().records_in, rows.size());
      EXPECT_EQ(after->watermark(), whole->watermark());
    }
  }
}

TEST(EngineTest, RestoreRefusesAnotherRuleOrDamagedBytesAndKeepsState) {
  auto rule = MakeRule("SELECT count(*) AS n FROM s GROUP BY TUMBLINGWINDOW(ss, 10)");
  EXPECT_TRUE(rule->Push(*ParseJsonValue(R"({"ts":1000})"), 1000).empty());
  const std::string mine = rule->Snapshot();

  auto other = MakeRule("SELECT count(*) AS m FROM s GROUP BY TUMBLINGWINDOW(ss, 10)");
  Status s = other->Restore(mine);
  EXPECT_EQ(s.code(), Code::kFailedPrecondition);

  EXPECT_EQ(rule->Restore("not json").code(), Code::kDataLoss);
  EXPECT_EQ(rule->Restore(R"({"version":1})").code(), Code::kDataLoss);
  EXPECT_EQ(rule->Restore(R"({"version":2})").code(), Code::kFailedPrecondition);
  std::string forged = mine;
  // The group's first event's timestamp (the last "ts" in the text; keys are sorted).
  forged.replace(forged.rfind("\"ts\":1000"), 9, "\"ts\":-9223372036854775800");
  ASSERT_TRUE(ParseJsonValue(forged).ok());
  EXPECT_EQ(rule->Restore(forged).code(), Code::kDataLoss);
  std::string damaged = mine;
  damaged.resize(damaged.size() / 2);
  EXPECT_EQ(rule->Restore(damaged).code(), Code::kDataLoss);
  // The state is what it was: the window still holds its event.
  auto out = rule->AdvanceTo(10000);
  ASSERT_EQ(out.size(), 1U);
  EXPECT_EQ(ToJson(Value::MakeArray(out[0])), R"([{"n":1}])");
}

}  // namespace
}  // namespace verge::rules
