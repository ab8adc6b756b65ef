// The rule SQL front end: statements that parse (each printed in canonical form, which must
// parse back to the same tree), the precedence and shape of expressions, the typed window and
// stream definitions, and statements that do not parse, each with the exact line and column of
// the token at fault. Cases follow the documented semantics of the eKuiper dialect and Verge's
// decisions recorded in src/node/rules/ast.h.
#include "node/rules/parser.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "node/rules/functions.h"

namespace verge::rules {
namespace {

::testing::AssertionResult Contains(std::string_view text, std::string_view part) {
  if (text.find(part) != std::string_view::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << text << "\" does not contain \"" << part << "\"";
}

// A fully parenthesized prefix form of an expression, to test tree shapes independently of the
// canonical printer's minimal parentheses.
std::string Tree(const Expr& e) {
  auto list = [](const std::vector<Expr>& v, size_t from = 0) {
    std::string out;
    for (size_t i = from; i < v.size(); ++i) out += " " + Tree(v[i]);
    return out;
  };
  switch (e.kind) {
    case ExprKind::kLiteral:
    case ExprKind::kColumn:
    case ExprKind::kStar:
      return ToString(e);
    case ExprKind::kUnary:
      return "(" + std::string(OpName(e.op)) + " " + Tree(e.args[0]) + ")";
    case ExprKind::kBinary:
      return "(" + std::string(OpName(e.op)) + list(e.args) + ")";
    case ExprKind::kLike:
      return std::string(e.negated ? "(NOT-LIKE" : "(LIKE") + list(e.args) + ")";
    case ExprKind::kIn:
      return std::string(e.negated ? "(NOT-IN" : "(IN") + list(e.args) + ")";
    case ExprKind::kInArray:
      return std::string(e.negated ? "(NOT-IN-ARRAY" : "(IN-ARRAY") + list(e.args) + ")";
    case ExprKind::kBetween:
      return std::string(e.negated ? "(NOT-BETWEEN" : "(BETWEEN") + list(e.args) + ")";
    case ExprKind::kCase: {
      std::string out = "(CASE";
      if (e.operand) out += " " + Tree(*e.operand);
      for (size_t i = 0; i + 1 < e.args.size(); i += 2) {
        out += " (WHEN " + Tree(e.args[i]) + " " + Tree(e.args[i + 1]) + ")";
      }
      if (e.otherwise) out += " (ELSE " + Tree(*e.otherwise) + ")";
      return out + ")";
    }
    case ExprKind::kCall: {
      std::string out = "(" + e.name + list(e.args);
      if (e.filter) out += " (FILTER " + Tree(*e.filter) + ")";
      if (!e.partition_by.empty()) out += " (PARTITION" + list(e.partition_by) + ")";
      if (e.when) out += " (WHEN " + Tree(*e.when) + ")";
      return out + ")";
    }
    case ExprKind::kField:
      return "(-> " + Tree(e.args[0]) + " " + e.name + ")";
    case ExprKind::kIndex:
      return "([]" + list(e.args) + ")";
    case ExprKind::kSlice:
      return "([:]" + list(e.args) + ")";
  }
  return "?";
}

// Every call in a parsed tree carries its registry entry, and heights are consistent.
void CheckTree(const Expr& e) {
  if (e.kind == ExprKind::kCall) {
    ASSERT_NE(e.function, nullptr) << e.name;
    EXPECT_EQ(e.function->name, e.name);
  }
  int h = 0;
  ForEachChild(e, [&](const Expr& c) {
    CheckTree(c);
    h = std::max(h, c.height);
  });
  EXPECT_GE(e.height, h + 1) << ToString(e);
}

void CheckTrees(const Select& s) {
  for (const Field& f : s.fields) CheckTree(f.expr);
  if (s.where) CheckTree(*s.where);
  for (const Expr& e : s.group_by) CheckTree(e);
  if (s.having) CheckTree(*s.having);
  for (const OrderItem& o : s.order_by) CheckTree(o.expr);
}

// Parses `sql`, checks its canonical form, and that the canonical form parses to the same tree
// and prints the same again.
void ExpectCanonical(std::string_view sql, std::string_view canonical) {
  SCOPED_TRACE(sql);
  ParseResult<Ast> first = Parse(sql);
  ASSERT_TRUE(first.ok()) << first.error().ToString();
  const std::string printed = ToString(first.value());
  EXPECT_EQ(printed, canonical);
  ParseResult<Ast> second = Parse(printed);
  ASSERT_TRUE(second.ok()) << printed << ": " << second.error().ToString();
  EXPECT_TRUE(second.value() == first.value()) << printed;
  EXPECT_EQ(ToString(second.value()), printed);
  if (auto* s = std::get_if<Select>(&first.value())) CheckTrees(*s);
}

// --- statements that parse ------------------------------------------------------------------

struct CanonicalCase {
  std::string_view sql;
  std::string_view canonical;
};

TEST(RulesParser, StatementsPrintCanonicallyAndRoundTrip) {
  const CanonicalCase cases[] = {
      {"select * from demo", "SELECT * FROM demo"},
      {"SELECT temperature, humidity AS h FROM telemetry WHERE temperature > 50",
       "SELECT temperature, humidity AS h FROM telemetry WHERE temperature > 50"},
      {"SELECT * FROM s WHERE temperature > 50;", "SELECT * FROM s WHERE temperature > 50"},
      // Reserved words and other characters as names, in backticks.
      {"SELECT `select`, `and` FROM demo", "SELECT `select`, `and` FROM demo"},
      {"SELECT `a-b`, `hello world`, `中文Chinese` FROM `from` WHERE `from` = \"device1\"",
       "SELECT `a-b`, `hello world`, `中文Chinese` FROM `from` WHERE `from` = \"device1\""},
      {"SELECT `plain` FROM demo", "SELECT plain FROM demo"},
      // stream.column is a column of the FROM stream (or alias); otherwise a struct field.
      {"SELECT demo.temperature FROM demo", "SELECT demo.temperature FROM demo"},
      {"SELECT name.first AS fname FROM demo", "SELECT name->first AS fname FROM demo"},
      {"SELECT d.name.first FROM demo AS d", "SELECT d.name->first FROM demo AS d"},
      {"SELECT demo.name->first, ops->functionA.numArgs AS num FROM demo",
       "SELECT demo.name->first, ops->functionA->numArgs AS num FROM demo"},
      {"select `a b`.c from `a b`", "SELECT `a b`.c FROM `a b`"},
      {"SELECT demo.*, d.* FROM demo AS d", "SELECT demo.*, d.* FROM demo AS d"},
      // Literals.
      {"SELECT 1, -2, 3.5, -0.25, 1e3, 2.5E-3, 1.0, true, FALSE, null FROM s",
       "SELECT 1, -2, 3.5, -0.25, 1000.0, 0.0025, 1.0, TRUE, FALSE, NULL FROM s"},
      {"SELECT 'it''s', \"a\\\"b\", 'tab\\there', \"back\\\\slash\", 'new\\nline' FROM s",
       "SELECT \"it's\", \"a\\\"b\", \"tab\\there\", \"back\\\\slash\", \"new\\nline\" FROM s"},
      {"SELECT \"\\u00e9\\uD83D\\uDE00\", '\\/' FROM s", "SELECT \"é😀\", \"/\" FROM s"},
      {"SELECT \"\\u0001\" FROM s", "SELECT \"\\u0001\" FROM s"},
      {"SELECT -9223372036854775808, 9223372036854775807 FROM s",
       "SELECT -9223372036854775808, 9223372036854775807 FROM s"},
      {"SELECT -(5), -(-5), +5, - -5, -0.0 FROM s", "SELECT -5, 5, 5, 5, -0.0 FROM s"},
      // Floats print in the shortest form that reads back exactly, subnormals included.
      {"SELECT 4.9406564584124654e-324, 1.7976931348623157e308, 0.1, 123456789012345678.0 FROM s",
       "SELECT 5e-324, 1.7976931348623157e+308, 0.1, 1.2345678901234568e+17 FROM s"},
      {"SELECT (-5)[0], -5->a, -(a) FROM s", "SELECT (-5)[0], -5->a, -a FROM s"},
      // Operators and minimal parentheses.
      {"SELECT a + b * c, (a + b) * c, a - (b - c), a - b - c, (a * b) / c FROM s",
       "SELECT a + b * c, (a + b) * c, a - (b - c), a - b - c, a * b / c FROM s"},
      {"SELECT a & b | c ^ d, a & (b | c), -a * b, - -a, +a, a % 2 FROM s",
       "SELECT a & b | c ^ d, a & (b | c), -a * b, --a, +a, a % 2 FROM s"},
      {"SELECT a <> b, a != b, (a = b) = true, a = (b = c) FROM s",
       "SELECT a != b, a != b, (a = b) = TRUE, a = (b = c) FROM s"},
      {"SELECT * FROM s WHERE NOT a = 1 AND (b OR c) AND NOT (d AND e)",
       "SELECT * FROM s WHERE NOT a = 1 AND (b OR c) AND NOT (d AND e)"},
      {"SELECT * FROM s WHERE (a OR b) OR c", "SELECT * FROM s WHERE a OR b OR c"},
      {"SELECT * FROM s WHERE a OR (b OR c)", "SELECT * FROM s WHERE a OR (b OR c)"},
      {"SELECT * FROM s WHERE a = (NOT b)", "SELECT * FROM s WHERE a = (NOT b)"},
      {"SELECT * FROM s WHERE a not like 'x%' or b NOT IN (1, 2) or c not between 1 and 10",
       "SELECT * FROM s WHERE a NOT LIKE \"x%\" OR b NOT IN (1, 2) OR c NOT BETWEEN 1 AND 10"},
      {"SELECT * FROM s WHERE a BETWEEN 1 + 1 AND 2 * 3 AND b",
       "SELECT * FROM s WHERE a BETWEEN 1 + 1 AND 2 * 3 AND b"},
      {"SELECT * FROM s WHERE a BETWEEN (b AND c) AND d",
       "SELECT * FROM s WHERE a BETWEEN (b AND c) AND d"},
      {"SELECT * FROM s WHERE a IN (1) AND b IN ('x', 'y', null)",
       "SELECT * FROM s WHERE a IN (1) AND b IN (\"x\", \"y\", NULL)"},
      {"SELECT * FROM s WHERE x IN arr->ids AND y NOT IN arr[0]",
       "SELECT * FROM s WHERE x IN arr->ids AND y NOT IN arr[0]"},
      // JSON paths: index, slice, arrow.
      {"SELECT children[0], children[-1], children[1:2], children[:2], children[1:], "
       "children[:], children[x + 1:y] FROM s",
       "SELECT children[0], children[-1], children[1:2], children[:2], children[1:], "
       "children[:], children[x + 1:y] FROM s"},
      {"SELECT followers->Group1[:1]->first, d.friends[0]->last FROM demo AS d",
       "SELECT followers->Group1[:1]->first, d.friends[0]->last FROM demo AS d"},
      {"SELECT (a + b)->c, (a)[1] FROM s", "SELECT (a + b)->c, a[1] FROM s"},
      // CASE.
      {"SELECT CASE color WHEN 'red' THEN 1 WHEN 'yellow' THEN 2 ELSE 3 END AS colorInteger, "
       "humidity FROM tbl",
       "SELECT CASE color WHEN \"red\" THEN 1 WHEN \"yellow\" THEN 2 ELSE 3 END AS colorInteger, "
       "humidity FROM tbl"},
      {"SELECT case when size < 150 then 'S' when size < 170 then 'M' else 'XL' end FROM tbl",
       "SELECT CASE WHEN size < 150 THEN \"S\" WHEN size < 170 THEN \"M\" ELSE \"XL\" END FROM "
       "tbl"},
      {"SELECT CASE WHEN a THEN CASE b WHEN 1 THEN 2 END END + 1 FROM s",
       "SELECT CASE WHEN a THEN CASE b WHEN 1 THEN 2 END END + 1 FROM s"},
      // Functions.
      {"SELECT cast(x, 'bigint'), coalesce(a, b, 0), isNull(a), CONCAT(a, \"-\", b) FROM s",
       "SELECT cast(x, \"bigint\"), coalesce(a, b, 0), isnull(a), concat(a, \"-\", b) FROM s"},
      {"SELECT lag(temp) OVER (PARTITION BY device_id), ts - lag(ts, 1, ts, true) OVER (WHEN "
       "had_changed(true, status)) AS duration FROM s",
       "SELECT lag(temp) OVER (PARTITION BY device_id), ts - lag(ts, 1, ts, TRUE) OVER (WHEN "
       "had_changed(TRUE, status)) AS duration FROM s"},
      {"SELECT acc_sum(a) OVER (PARTITION BY d, e WHEN a > 0), latest(a, 0), changed_col(true, "
       "a), had_changed(false, *) FROM s WHERE had_changed(true, a, b) = true",
       "SELECT acc_sum(a) OVER (PARTITION BY d, e WHEN a > 0), latest(a, 0), changed_col(TRUE, "
       "a), had_changed(FALSE, *) FROM s WHERE had_changed(TRUE, a, b) = TRUE"},
      {"SELECT zscore(t, 20) OVER (PARTITION BY device_id) AS z, ewma_score(t, 0.3) FROM s "
       "WHERE zscore(t, 20) > 3",
       "SELECT zscore(t, 20) OVER (PARTITION BY device_id) AS z, ewma_score(t, 0.3) FROM s "
       "WHERE zscore(t, 20) > 3"},
      // Windows and aggregates.
      {"SELECT count(*), AVG(temp) FILTER (WHERE temp > 0), collect(*)[1]->a FROM s GROUP BY "
       "device_id, TumblingWindow(ss, 10)",
       "SELECT count(*), avg(temp) FILTER (WHERE temp > 0), collect(*)[1]->a FROM s GROUP BY "
       "device_id, TUMBLINGWINDOW(ss, 10)"},
      {"SELECT * FROM s GROUP BY COUNTWINDOW(3, 1) FILTER (where revenue > 100), a",
       "SELECT * FROM s GROUP BY a, COUNTWINDOW(3, 1) FILTER (WHERE revenue > 100)"},
      {"SELECT count(*) FROM s GROUP BY SLIDINGWINDOW(ss, 5, 5) OVER (WHEN a > 10)",
       "SELECT count(*) FROM s GROUP BY SLIDINGWINDOW(ss, 5, 5) OVER (WHEN a > 10)"},
      {"SELECT device_id, avg(t) AS a FROM s GROUP BY device_id, HOPPINGWINDOW(MI, 10, 5) "
       "HAVING avg(t) > 3 ORDER BY a DESC, device_id ASC;",
       "SELECT device_id, avg(t) AS a FROM s GROUP BY device_id, HOPPINGWINDOW(mi, 10, 5) "
       "HAVING avg(t) > 3 ORDER BY a DESC, device_id"},
      {"SELECT window_start(), window_end(), stddev(t), var(t), median(t), percentile(t, 0.95), "
       "deduplicate(a, false)->a, last_value(t, true), sum(t) / count(t) FROM s GROUP BY "
       "SESSIONWINDOW(ss, 30, 600)",
       "SELECT window_start(), window_end(), stddev(t), var(t), median(t), percentile(t, 0.95), "
       "deduplicate(a, FALSE)->a, last_value(t, TRUE), sum(t) / count(t) FROM s GROUP BY "
       "SESSIONWINDOW(ss, 30, 600)"},
      {"SELECT changed_col(true, avg(t)) FROM s GROUP BY COUNTWINDOW(2) ORDER BY max(t)",
       "SELECT changed_col(TRUE, avg(t)) FROM s GROUP BY COUNTWINDOW(2) ORDER BY max(t)"},
      {"SELECT (last_value(x, true) - avg(x)) / stddev(x) AS z FROM s GROUP BY device_id, "
       "SLIDINGWINDOW(mi, 5)",
       "SELECT (last_value(x, TRUE) - avg(x)) / stddev(x) AS z FROM s GROUP BY device_id, "
       "SLIDINGWINDOW(mi, 5)"},
      // Layout does not matter.
      {"SELECT /* the device */ a\n  FROM\ts\r\n  WHERE a>1", "SELECT a FROM s WHERE a > 1"},
      // CREATE STREAM.
      {"create stream demo (USERID BIGINT, FIRST_NAME STRING, NICKNAMES ARRAY(STRING), Gender "
       "BOOLEAN, `地址` STRUCT(STREET_NAME STRING, NUMBER BIGINT),) WITH (DATASOURCE=\"users\", "
       "FORMAT=\"JSON\", timestamp=\"USERID\")",
       "CREATE STREAM demo (USERID BIGINT, FIRST_NAME STRING, NICKNAMES ARRAY(STRING), Gender "
       "BOOLEAN, `地址` STRUCT(STREET_NAME STRING, NUMBER BIGINT)) WITH (DATASOURCE=\"users\", "
       "FORMAT=\"JSON\", TIMESTAMP=\"USERID\")"},
      {"CREATE STREAM my_stream () WITH (datasource = \"topic/temperature\", KEY = \"id\", "
       "SHARED=\"TRUE\", TYPE='memory', CONF_KEY=\"demo\", TIMESTAMP_FORMAT=\"YYYY-MM-dd\");",
       "CREATE STREAM my_stream () WITH (CONF_KEY=\"demo\", DATASOURCE=\"topic/temperature\", "
       "KEY=\"id\", SHARED=\"TRUE\", TIMESTAMP_FORMAT=\"YYYY-MM-dd\", TYPE=\"memory\")"},
      {"CREATE STREAM s (a ARRAY(ARRAY(FLOAT)), b ARRAY(STRUCT(x DATETIME, y BYTEA)), ts "
       "datetime) WITH (DATASOURCE=\"t\", TIMESTAMP=\"ts\")",
       "CREATE STREAM s (a ARRAY(ARRAY(FLOAT)), b ARRAY(STRUCT(x DATETIME, y BYTEA)), ts "
       "DATETIME) WITH (DATASOURCE=\"t\", TIMESTAMP=\"ts\")"},
      {"CREATE STREAM `select` (`from` BIGINT, array BIGINT) WITH (DATASOURCE=\"t\")",
       "CREATE STREAM `select` (`from` BIGINT, array BIGINT) WITH (DATASOURCE=\"t\")"},
  };
  for (const CanonicalCase& c : cases) {
    ExpectCanonical(c.sql, c.canonical);
  }
}

// --- expression shapes --------------------------------------------------------------------

struct TreeCase {
  std::string_view expr;
  std::string_view tree;
};

TEST(RulesParser, PrecedenceAndAssociativity) {
  const TreeCase cases[] = {
      {"a OR b AND c", "(OR a (AND b c))"},
      {"a AND b OR c", "(OR (AND a b) c)"},
      {"a OR b OR c", "(OR (OR a b) c)"},
      {"NOT a AND b", "(AND (NOT a) b)"},
      {"NOT a = b", "(NOT (= a b))"},
      {"NOT NOT a", "(NOT (NOT a))"},
      {"a = b AND c < d", "(AND (= a b) (< c d))"},
      {"a + b * c", "(+ a (* b c))"},
      {"a - b - c", "(- (- a b) c)"},
      {"a / b * c", "(* (/ a b) c)"},
      {"a % b + c", "(+ (% a b) c)"},
      {"a | b & c", "(| a (& b c))"},
      {"a ^ b + c", "(+ (^ a b) c)"},
      {"a & b * c", "(* (& a b) c)"},
      {"-a * b", "(* (- a) b)"},
      {"-a->b", "(- (-> a b))"},
      {"+a", "(+ a)"},
      {"x * -2", "(* x -2)"},
      {"2 - -2", "(- 2 -2)"},
      {"2--2", "(- 2 -2)"},
      {"- 9223372036854775808", "-9223372036854775808"},
      {"--9223372036854775808", "(- -9223372036854775808)"},
      {"+-9223372036854775808", "-9223372036854775808"},
      {"-1.5e3", "-1500.0"},
      {"a->b[0]->c", "(-> ([] (-> a b) 0) c)"},
      {"a[1:2][0]", "([] ([:] a 1 2) 0)"},
      {"a[:]", "([:] a NULL NULL)"},
      {"a.b.c", "(-> a.b c)"},
      {"abs(x).y", "(-> (abs x) y)"},
      {"a + b LIKE c", "(LIKE (+ a b) c)"},
      {"a NOT IN (1, 2 + 3)", "(NOT-IN a 1 (+ 2 3))"},
      {"a IN b[0]", "(IN-ARRAY a ([] b 0))"},
      {"a BETWEEN b AND c AND d", "(AND (BETWEEN a b c) d)"},
      {"a BETWEEN -1 AND 1 OR x", "(OR (BETWEEN a -1 1) x)"},
      {"a NOT BETWEEN b + 1 AND c * 2", "(NOT-BETWEEN a (+ b 1) (* c 2))"},
      {"CASE WHEN a THEN b END + 1", "(+ (CASE (WHEN a b)) 1)"},
      {"CASE x WHEN 1 THEN 'a' ELSE 'b' END", "(CASE x (WHEN 1 \"a\") (ELSE \"b\"))"},
      {"count(*)", "(count *)"},
      {"avg(a) FILTER (WHERE a > 0)", "(avg a (FILTER (> a 0)))"},
      {"lag(a, 2) OVER (PARTITION BY b, c WHEN d)", "(lag a 2 (PARTITION b c) (WHEN d))"},
      {"(((a)))", "a"},
  };
  for (const TreeCase& c : cases) {
    SCOPED_TRACE(c.expr);
    ParseResult<Expr> r = ParseExpression(c.expr);
    ASSERT_TRUE(r.ok()) << r.error().ToString();
    EXPECT_EQ(Tree(r.value()), c.tree);
    // The canonical text keeps the shape.
    ParseResult<Expr> again = ParseExpression(ToString(r.value()));
    ASSERT_TRUE(again.ok()) << ToString(r.value()) << ": " << again.error().ToString();
    EXPECT_TRUE(again.value() == r.value()) << ToString(r.value());
  }
}

TEST(RulesParser, PositionsPointAtOperatorsAndNames) {
  ParseResult<Expr> r = ParseExpression("a +\n  b / c");
  ASSERT_TRUE(r.ok());
  const Expr& plus = r.value();
  EXPECT_EQ(plus.pos, (Pos{1, 3}));
  EXPECT_EQ(plus.args[0].pos, (Pos{1, 1}));
  EXPECT_EQ(plus.args[1].pos, (Pos{2, 5}));          // the /
  EXPECT_EQ(plus.args[1].args[1].pos, (Pos{2, 7}));  // c

  // Columns count characters, not bytes.
  ParseResult<Expr> u = ParseExpression("'é' = `温度`");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u.value().pos, (Pos{1, 5}));
  EXPECT_EQ(u.value().args[1].pos, (Pos{1, 7}));

  ParseResult<Select> s = ParseSelect("SELECT a\nFROM\n  telemetry");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s.value().stream, "telemetry");
  EXPECT_EQ(s.value().stream_pos, (Pos{3, 3}));
}

TEST(RulesParser, NamesAndLiteralsKeepTheirValues) {
  ParseResult<Select> r =
      ParseSelect("SELECT `my col`, Temp, 'x''y', 1.5, 7, TRUE, NULL, `中文` FROM `my stream`");
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  const std::vector<Field>& f = r.value().fields;
  ASSERT_EQ(f.size(), 8u);
  EXPECT_EQ(f[0].expr.kind, ExprKind::kColumn);
  EXPECT_EQ(f[0].expr.name, "my col");
  EXPECT_EQ(f[1].expr.name, "Temp");  // names keep their case
  EXPECT_EQ(f[2].expr.value, Value::String("x'y"));
  EXPECT_TRUE(f[3].expr.value.is_float());
  EXPECT_EQ(f[3].expr.value.float_value(), 1.5);
  EXPECT_TRUE(f[4].expr.value.is_int());
  EXPECT_EQ(f[4].expr.value.int_value(), 7);
  EXPECT_EQ(f[5].expr.value, Value::Bool(true));
  EXPECT_TRUE(f[6].expr.value.is_null());
  EXPECT_EQ(f[7].expr.name, "中文");
  EXPECT_EQ(r.value().stream, "my stream");
  // 1 and 1.0 are different literals.
  EXPECT_FALSE(ParseExpression("1").value() == ParseExpression("1.0").value());
}

TEST(RulesParser, QualifiedNamesResolveAgainstTheFromStream) {
  ParseResult<Select> r = ParseSelect("SELECT demo.a, d.b, x.c, demo.x.y FROM demo AS d");
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  const std::vector<Field>& f = r.value().fields;
  EXPECT_EQ(f[0].expr.kind, ExprKind::kColumn);
  EXPECT_EQ(f[0].expr.stream, "demo");
  EXPECT_EQ(f[1].expr.stream, "d");
  EXPECT_EQ(Tree(f[2].expr), "(-> x c)");  // x is no stream: a struct column
  EXPECT_EQ(Tree(f[3].expr), "(-> demo.x y)");
  EXPECT_EQ(f[2].expr.args[0].pos, (Pos{1, 21}));
}

// --- windows ------------------------------------------------------------------------------

struct WindowCase {
  std::string_view group_by;
  WindowKind kind;
  int64_t length_ms;
  int64_t hop_ms;
  int64_t delay_ms;
  int64_t timeout_ms;
  int64_t count;
  int64_t count_hop;
};

TEST(RulesParser, WindowsBecomeTypedDurations) {
  const WindowCase cases[] = {
      {"TUMBLINGWINDOW(ss, 10)", WindowKind::kTumbling, 10'000, 10'000, 0, 0, 0, 0},
      {"tumblingwindow(MI, 2)", WindowKind::kTumbling, 120'000, 120'000, 0, 0, 0, 0},
      {"TUMBLINGWINDOW(hh, 1)", WindowKind::kTumbling, 3'600'000, 3'600'000, 0, 0, 0, 0},
      {"TUMBLINGWINDOW(dd, 366)", WindowKind::kTumbling, 366 * 86'400'000LL, 366 * 86'400'000LL, 0,
       0, 0, 0},
      {"TUMBLINGWINDOW(ms, 1)", WindowKind::kTumbling, 1, 1, 0, 0, 0, 0},
      {"HOPPINGWINDOW(ss, 10, 5)", WindowKind::kHopping, 10'000, 5'000, 0, 0, 0, 0},
      {"HOPPINGWINDOW(ss, 10, 10)", WindowKind::kHopping, 10'000, 10'000, 0, 0, 0, 0},
      {"SLIDINGWINDOW(ms, 500)", WindowKind::kSliding, 500, 0, 0, 0, 0, 0},
      {"SLIDINGWINDOW(ss, 5, 2)", WindowKind::kSliding, 5'000, 0, 2'000, 0, 0, 0},
      {"SLIDINGWINDOW(ss, 5, 0)", WindowKind::kSliding, 5'000, 0, 0, 0, 0, 0},
      {"SESSIONWINDOW(mi, 2, 10)", WindowKind::kSession, 600'000, 0, 0, 120'000, 0, 0},
      {"SESSIONWINDOW(ss, 5, 5)", WindowKind::kSession, 5'000, 0, 0, 5'000, 0, 0},
      {"COUNTWINDOW(5)", WindowKind::kCount, 0, 0, 0, 0, 5, 5},
      {"CountWindow(5, 1)", WindowKind::kCount, 0, 0, 0, 0, 5, 1},
      {"COUNTWINDOW(1000000, 1000000)", WindowKind::kCount, 0, 0, 0, 0, 1'000'000, 1'000'000},
  };
  for (const WindowCase& c : cases) {
    SCOPED_TRACE(c.group_by);
    ParseResult<Select> r =
        ParseSelect(std::string("SELECT count(*) FROM s GROUP BY ") + std::string(c.group_by));
    ASSERT_TRUE(r.ok()) << r.error().ToString();
    ASSERT_TRUE(r.value().window.has_value());
    const Window& w = *r.value().window;
    EXPECT_EQ(w.kind, c.kind);
    EXPECT_EQ(w.length_ms, c.length_ms);
    EXPECT_EQ(w.hop_ms, c.hop_ms);
    EXPECT_EQ(w.delay_ms, c.delay_ms);
    EXPECT_EQ(w.timeout_ms, c.timeout_ms);
    EXPECT_EQ(w.count, c.count);
    EXPECT_EQ(w.count_hop, c.count_hop);
    EXPECT_EQ(w.pos, (Pos{1, 33}));
    EXPECT_TRUE(r.value().group_by.empty());
  }
}

TEST(RulesParser, WindowFilterAndTriggerAreKept) {
  ParseResult<Select> r = ParseSelect(
      "SELECT count(*) FROM s GROUP BY SLIDINGWINDOW(ss, 10) FILTER (WHERE a > 1) OVER (WHEN b)");
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  const Window& w = *r.value().window;
  ASSERT_TRUE(w.filter.has_value());
  EXPECT_EQ(Tree(*w.filter), "(> a 1)");
  ASSERT_TRUE(w.trigger.has_value());
  EXPECT_EQ(Tree(*w.trigger), "b");
  EXPECT_EQ(w.unit, TimeUnit::kSecond);
  EXPECT_EQ(w.args, (std::vector<int64_t>{10}));
}

// --- CREATE STREAM ------------------------------------------------------------------------

TEST(RulesParser, CreateStreamColumnsAndTypedOptions) {
  ParseResult<CreateStream> r = ParseCreateStream(
      "CREATE STREAM demo (id BIGINT, t FLOAT, tags ARRAY(STRING), pos STRUCT(x FLOAT, y FLOAT), "
      "ts DATETIME) WITH (DATASOURCE=\"sensors/+/data\", format=\"json\", TIMESTAMP=\"ts\", "
      "TIMESTAMP_FORMAT=\"YYYY-MM-dd HH:mm:ss\", SHARED=\"true\", TYPE=\"MQTT\")");
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  const CreateStream& s = r.value();
  EXPECT_EQ(s.name, "demo");
  ASSERT_EQ(s.columns.size(), 5u);
  EXPECT_EQ(s.columns[0].type.kind, TypeKind::kBigint);
  EXPECT_EQ(s.columns[2].type.kind, TypeKind::kArray);
  EXPECT_EQ(s.columns[2].type.element->kind, TypeKind::kString);
  EXPECT_EQ(s.columns[3].type.kind, TypeKind::kStruct);
  ASSERT_EQ(s.columns[3].type.fields.size(), 2u);
  EXPECT_EQ(s.columns[3].type.fields[1].name, "y");
  EXPECT_EQ(s.columns[1].pos, (Pos{1, 32}));
  EXPECT_EQ(s.typed.datasource, "sensors/+/data");
  EXPECT_EQ(s.typed.format, "json");
  EXPECT_EQ(s.typed.timestamp, "ts");
  EXPECT_EQ(s.typed.timestamp_format, "YYYY-MM-dd HH:mm:ss");
  EXPECT_TRUE(s.typed.shared);
  EXPECT_EQ(s.typed.type, "mqtt");
  EXPECT_EQ(s.options.at("FORMAT"), "json");

  ParseResult<CreateStream> schemaless =
      ParseCreateStream("CREATE STREAM s () WITH (DATASOURCE=\"t\")");
  ASSERT_TRUE(schemaless.ok());
  EXPECT_TRUE(schemaless.value().columns.empty());
  EXPECT_EQ(schemaless.value().typed.type, "mqtt");  // defaults
  EXPECT_FALSE(schemaless.value().typed.shared);
  // Without columns, TIMESTAMP cannot be checked and is taken as given.
  EXPECT_TRUE(
      ParseCreateStream("CREATE STREAM s () WITH (DATASOURCE=\"t\", TIMESTAMP=\"ts\")").ok());
}

TEST(RulesParser, StatementKindIsChecked) {
  ParseResult<Select> s = ParseSelect("CREATE STREAM s () WITH (DATASOURCE=\"t\")");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().ToString(), "line 1, column 1: expected SELECT, found \"CREATE\"");
  ParseResult<CreateStream> c = ParseCreateStream("SELECT * FROM s");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().ToString(), "line 1, column 1: expected CREATE STREAM, found \"SELECT\"");
  ParseResult<Ast> any = Parse("DROP STREAM s");
  ASSERT_FALSE(any.ok());
  EXPECT_EQ(any.error().message, "expected SELECT or CREATE STREAM, found \"DROP\"");
}

// --- errors -------------------------------------------------------------------------------

struct ErrorCase {
  std::string_view sql;
  int line;
  int column;
  std::string_view message;  // a fragment of it
};

void ExpectError(const ErrorCase& c) {
  SCOPED_TRACE(c.sql);
  ParseResult<Ast> r = Parse(c.sql);
  ASSERT_FALSE(r.ok()) << "parsed as: " << ToString(r.value());
  EXPECT_EQ(r.error().line, c.line) << r.error().ToString();
  EXPECT_EQ(r.error().column, c.column) << r.error().ToString();
  EXPECT_TRUE(Contains(r.error().message, c.message));
}

TEST(RulesParser, SyntaxErrorsSayWhereAndWhat) {
  const ErrorCase cases[] = {
      {"SELECT device_id, avg FORM demo", 1, 23,
       "expected FROM after the select list, found \"FORM\""},
      {"SELECT a", 1, 9, "expected FROM after the select list, found the end of the input"},
      {"SELECT a b FROM s", 1, 10, "(to name a field, write AS b)"},
      {"SELECT a, FROM s", 1, 11, "expected an expression, found \"FROM\""},
      {"SELECT a\nFROM s\nWHERE a >", 3, 10, "expected an expression, found the end"},
      {"SELECT a\r\nFROM s\r\nWHERE a >>", 3, 10, "expected an expression, found \">\""},
      {"", 1, 1, "the statement is empty"},
      {"  /* nothing */  ", 1, 18, "the statement is empty"},
      {"SELECT a FROM s;;", 1, 17, "expected the end of the statement, found \";\""},
      {"SELECT a FROM s WHERE a = 1 = 2", 1, 29, "comparisons do not chain"},
      {"SELECT * FROM s WHERE a < b < c", 1, 29, "comparisons do not chain"},
      {"SELECT a FROM s WHERE a LIKE 'x' LIKE 'y'", 1, 34, "comparisons do not chain"},
      {"SELECT a FROM s WHERE a IS NULL", 1, 25, "use isnull(x)"},
      {"SELECT a FROM s WHERE a IS NOT NULL", 1, 25, "use isnull(x), or NOT isnull(x)"},
      {"SELECT * FROM s WHERE a = NOT b", 1, 27, "in parentheses, as in a = (NOT b)"},
      {"SELECT (a + 1 FROM s", 1, 15,
       "expected \")\" to close the \"(\" at line 1, column 8, found \"FROM\""},
      {"SELECT * FROM s WHERE a IN ()", 1, 29, "IN () needs at least one value"},
      {"SELECT a FROM s WHERE a IN (1, 2", 1, 33, "in the IN list opened at line 1, column 28"},
      {"SELECT CASE a THEN 1 END FROM s", 1, 15, "expected WHEN after the CASE value"},
      {"SELECT CASE WHEN a THEN 1 FROM s", 1, 27, "expected WHEN, ELSE or END in the CASE"},
      {"SELECT order FROM s", 1, 8,
       "found the reserved word \"order\" (to use it as a name, put "
       "it in backticks: `order`)"},
      {"SELECT a FROM select", 1, 15,
       "expected a stream name after FROM, found the reserved "
       "word \"select\""},
      {"SELECT a AS from FROM s", 1, 13, "reserved word"},
      {"SELECT * FROM s WHERE a WHERE b", 1, 25, "a second WHERE clause"},
      {"SELECT * FROM s GROUP BY TUMBLINGWINDOW(ss, 1) WHERE a", 1, 48,
       "WHERE must come before GROUP BY"},
      {"SELECT a FROM s WHERE b > 1 ORDER BY a GROUP BY TUMBLINGWINDOW(ss, 1)", 1, 40,
       "GROUP BY must come before ORDER BY"},
      {"SELECT a FROM s WHERE b c", 1, 25,
       "expected GROUP BY, HAVING, ORDER BY or the end of the statement, found \"c\""},
      {"SELECT * FROM s LEFT JOIN t ON s.a = t.a", 1, 17, "JOIN is not supported"},
      {"SELECT * FROM s LIMIT 1", 1, 17, "LIMIT is not supported"},
      {"SELECT * AS x FROM s", 1, 10, "* cannot be given a name"},
      {"SELECT * EXCEPT(a) FROM s", 1, 10, "* EXCEPT is not supported"},
      {"SELECT a + * FROM s", 1, 12, "* is allowed only as a field of SELECT"},
      {"SELECT count(a.*) FROM s GROUP BY COUNTWINDOW(2)", 1, 16,
       "stream.* is allowed only as a field of SELECT"},
      {"SELECT a->1 FROM s", 1, 11, "expected a field name after ->, found \"1\""},
      {"SELECT a[1 FROM s", 1, 12, "expected \"]\", found \"FROM\""},
      {"SELECT a FROM s GROUP", 1, 22, "expected BY after GROUP"},
      {"CREATE TABLE t () WITH (DATASOURCE=\"t\")", 1, 8, "CREATE TABLE is not supported"},
      {"UPDATE s SET a = 1", 1, 1, "expected SELECT or CREATE STREAM, found \"UPDATE\""},
  };
  for (const ErrorCase& c : cases) ExpectError(c);
}

TEST(RulesParser, LexicalErrorsSayWhereAndWhat) {
  const ErrorCase cases[] = {
      {"SELECT 'abc FROM s", 1, 8, "unterminated string: the single quote opened here"},
      {"SELECT \"abc FROM s", 1, 8, "unterminated string: the double quote opened here"},
      {"SELECT \"a\\qb\" FROM s", 1, 10, "invalid escape \\q in a string"},
      {"SELECT \"a\\u12\" FROM s", 1, 10, "invalid \\u escape: want 4 hex digits"},
      {"SELECT \"\\uD83D\" FROM s", 1, 9, "a high surrogate must be followed by a low one"},
      {"SELECT \"\\uDE00\" FROM s", 1, 9, "a low surrogate without a high one"},
      {"SELECT a # b FROM s", 1, 10, "unexpected character '#'"},
      {"SELECT * FROM s WHERE !a", 1, 23, "unexpected character '!': use NOT"},
      {"SELECT * FROM s WHERE a == 1", 1, 25, "== is not an operator: use ="},
      {"SELECT * FROM s WHERE a && b", 1, 25, "&& is not an operator: use AND"},
      {"SELECT a || b FROM s", 1, 10, "|| is not an operator: use OR, or concat()"},
      {"SELECT 温度 FROM s", 1, 8, "unexpected character '温': names with characters other"},
      {"SELECT a\n  FROM s WHERE b = \x01", 2, 20, "unexpected character \\x01"},
      {"SELECT a /* x", 1, 10, "unterminated comment"},
      {"SELECT `` FROM s", 1, 8, "empty name in backticks"},
      {"SELECT a FROM s WHERE `a", 1, 23, "unterminated name"},
      {"SELECT 12ab FROM s", 1, 8, "malformed number \"12ab\""},
      {"SELECT 1.2.3 FROM s", 1, 8, "malformed number \"1.2.3\""},
      {"SELECT 1e FROM s", 1, 8, "the exponent has no digits"},
      {"SELECT 1e999 FROM s", 1, 8, "number 1e999 is out of the range of a float"},
      {"SELECT 1e-400 FROM s", 1, 8, "number 1e-400 is out of the range of a float"},
      {"SELECT 99999999999999999999 FROM s", 1, 8, "does not fit in a bigint"},
      {"SELECT 9223372036854775808 FROM s", 1, 8,
       "integer 9223372036854775808 does not fit in a bigint"},
      {"SELECT -9223372036854775808[0] FROM s", 1, 9, "does not fit in a bigint"},
      // A lexical error after a syntax error does not hide it: errors come in text order.
      {"SELECT a FORM s WHERE 'unterminated", 1, 10, "expected FROM after the select list"},
  };
  for (const ErrorCase& c : cases) ExpectError(c);
}

TEST(RulesParser, FunctionErrors) {
  const ErrorCase cases[] = {
      {"SELECT avgg(t) FROM s", 1, 8, "unknown function \"avgg\" (did you mean avg?)"},
      {"SELECT frobnicate(t) FROM s", 1, 8, "unknown function \"frobnicate\""},
      {"SELECT avg(a, b) FROM s GROUP BY TUMBLINGWINDOW(ss, 1)", 1, 8,
       "avg takes 1 argument: avg(x); found 2"},
      {"SELECT lag() FROM s", 1, 8,
       "lag takes 1 to 4 arguments: lag(x [, offset [, default [, ignore_null]]]); found 0"},
      {"SELECT rand(1) FROM s", 1, 8, "rand takes no arguments: rand(); found 1"},
      {"SELECT coalesce() FROM s", 1, 8, "coalesce takes at least 1 argument"},
      {"SELECT sum(*) FROM s GROUP BY TUMBLINGWINDOW(ss, 1)", 1, 12, "* is not an argument of sum"},
      {"SELECT had_changed(*, a) FROM s", 1, 20, "* is not an argument of had_changed"},
      {"SELECT cast(a, bigint) FROM s", 1, 16, "the second argument of cast is the type in quotes"},
      {"SELECT cast(a, 'int') FROM s", 1, 16, "found \"int\""},
      {"SELECT percentile(a, 1.5) FROM s GROUP BY COUNTWINDOW(5)", 1, 22,
       "the percentile of percentile must be a number from 0 to 1, found 1.5"},
      {"SELECT lag(a, -1) FROM s", 1, 15, "the offset of lag must be a whole number from 1"},
      {"SELECT lag(a, 1, 0, 'yes') FROM s", 1, 21, "ignore_null (the 4th argument) of lag"},
      {"SELECT zscore(a, 1) FROM s", 1, 18, "the window of zscore"},
      {"SELECT ewma_score(a, 1.5) FROM s", 1, 22, "the smoothing factor of ewma_score"},
      {"SELECT ewma_score(a, 0) FROM s", 1, 22, "above 0 and at most 1"},
      {"SELECT changed_col(a, true) FROM s", 1, 20,
       "ignore_null (the first argument) of changed_col must be TRUE or FALSE, found a"},
      {"SELECT deduplicate(a, 1) FROM s GROUP BY TUMBLINGWINDOW(ss, 1)", 1, 23,
       "of deduplicate must be TRUE or FALSE"},
      {"SELECT abs(a) OVER (PARTITION BY b) FROM s", 1, 15,
       "OVER (...) applies to analytic functions (lag, latest, acc_sum, ...); abs is scalar"},
      {"SELECT lag(a) FILTER (WHERE b) FROM s", 1, 15,
       "FILTER (WHERE ...) applies to aggregate functions; lag is analytic"},
      {"SELECT lag(a) OVER () FROM s", 1, 21, "OVER () needs PARTITION BY or WHEN"},
      {"SELECT lag(a) OVER (PARTITION BY b) OVER (WHEN c) FROM s", 1, 37, "a second OVER"},
      {"SELECT lag(a) OVER (ORDER BY b) FROM s", 1, 21, "expected PARTITION BY or WHEN"},
      {"SELECT abs(a FROM s", 1, 14, "expected \",\" or \")\" in the arguments of abs("},
  };
  for (const ErrorCase& c : cases) ExpectError(c);
}

TEST(RulesParser, WindowErrors) {
  const ErrorCase cases[] = {
      {"SELECT TUMBLINGWINDOW(ss, 1) FROM s", 1, 8,
       "TUMBLINGWINDOW is a window: it can only be an item of GROUP BY"},
      {"SELECT a FROM s WHERE countwindow(5) > 1", 1, 23, "COUNTWINDOW is a window"},
      {"SELECT * FROM s GROUP BY TUMBLINGWINDOW(ss, 1), COUNTWINDOW(5)", 1, 49,
       "a second window, COUNTWINDOW: a GROUP BY has at most one"},
      {"SELECT * FROM s GROUP BY HOPPINGWINDOW(ss, 5, 10)", 1, 47,
       "the hop of HOPPINGWINDOW (10 ss) is longer than its size (5 ss)"},
      {"SELECT * FROM s GROUP BY TUMBLINGWINDOW(ss, 0)", 1, 45,
       "the size of TUMBLINGWINDOW must be positive, found 0"},
      {"SELECT * FROM s GROUP BY HOPPINGWINDOW(ss, 10, -5)", 1, 48,
       "the hop of HOPPINGWINDOW must be positive, found -5"},
      {"SELECT * FROM s GROUP BY SLIDINGWINDOW(ss, 5, -1)", 1, 47,
       "the delay of SLIDINGWINDOW must be zero or more, found -1"},
      {"SELECT * FROM s GROUP BY TUMBLINGWINDOW(10, ss)", 1, 41,
       "expected a time unit (dd, hh, mi, ss or ms) as the first argument of TUMBLINGWINDOW, "
       "found \"10\""},
      {"SELECT * FROM s GROUP BY TUMBLINGWINDOW(xx, 1)", 1, 41, "expected a time unit"},
      {"SELECT * FROM s GROUP BY HOPPINGWINDOW(ss, 5)", 1, 26,
       "HOPPINGWINDOW takes (unit, size, hop); found 1 number"},
      {"SELECT * FROM s GROUP BY COUNTWINDOW(1, 1, 1)", 1, 26,
       "COUNTWINDOW takes (count [, hop]); found 3 numbers"},
      {"SELECT * FROM s GROUP BY SESSIONWINDOW(mi, 2, 1)", 1, 44,
       "the timeout of SESSIONWINDOW (2 mi) is longer than its max duration (1 mi); the "
       "arguments are (unit, timeout, max)"},
      {"SELECT * FROM s GROUP BY TUMBLINGWINDOW(dd, 367)", 1, 45,
       "the size of TUMBLINGWINDOW is longer than the limit of 366 days"},
      {"SELECT * FROM s GROUP BY TUMBLINGWINDOW(ms, 9223372036854775807)", 1, 45,
       "longer than the limit of 366 days"},
      {"SELECT * FROM s GROUP BY TUMBLINGWINDOW(ss, 1.5)", 1, 45,
       "TUMBLINGWINDOW takes whole numbers (for fractions use a smaller unit, such as ms), found "
       "1.5"},
      {"SELECT * FROM s GROUP BY COUNTWINDOW(1000001)", 1, 38,
       "the count of COUNTWINDOW is more than the limit of 1000000 events"},
      {"SELECT a FROM s GROUP BY COUNTWINDOW(5, 6)", 1, 41,
       "the hop of COUNTWINDOW (6) is more than its count (5)"},
      {"SELECT * FROM s GROUP BY TUMBLINGWINDOW(ss, a)", 1, 45,
       "expected a whole number in TUMBLINGWINDOW, found \"a\""},
      {"SELECT * FROM s GROUP BY TUMBLINGWINDOW(ss 1)", 1, 44,
       "expected \",\" after the unit of TUMBLINGWINDOW"},
      {"SELECT * FROM s GROUP BY TUMBLINGWINDOW(ss, 1) OVER (WHEN a)", 1, 48,
       "OVER (WHEN ...) after a window applies only to SLIDINGWINDOW"},
      {"SELECT * FROM s GROUP BY COUNTWINDOW(2) FILTER (WHERE a) FILTER (WHERE b)", 1, 58,
       "a second FILTER after COUNTWINDOW"},
      {"SELECT * FROM s GROUP BY COUNTWINDOW(2) FILTER (a)", 1, 49,
       "expected WHERE after FILTER (, found \"a\""},
  };
  for (const ErrorCase& c : cases) ExpectError(c);
}

TEST(RulesParser, ClauseChecks) {
  const ErrorCase cases[] = {
      {"SELECT a FROM s WHERE avg(a) > 1 GROUP BY TUMBLINGWINDOW(ss, 1)", 1, 23,
       "aggregate function avg() is not allowed in WHERE, which filters single events (to "
       "filter groups, use HAVING)"},
      {"SELECT avg(max(a)) FROM s GROUP BY TUMBLINGWINDOW(ss, 1)", 1, 12,
       "aggregate functions do not nest: max() inside avg()"},
      {"SELECT avg(abs(sum(a))) FROM s GROUP BY TUMBLINGWINDOW(ss, 1)", 1, 16,
       "sum() inside avg()"},
      {"SELECT avg(a) FROM s", 1, 8,
       "avg() is an aggregate function and needs a window in GROUP BY"},
      {"SELECT a FROM s GROUP BY a", 1, 26, "GROUP BY needs a window"},
      {"SELECT a FROM s HAVING a > 1", 1, 24, "HAVING filters the groups of a window"},
      {"SELECT a FROM s GROUP BY avg(a), TUMBLINGWINDOW(ss, 1)", 1, 26,
       "aggregate function avg() is not allowed in GROUP BY"},
      {"SELECT a FROM s GROUP BY lag(a), TUMBLINGWINDOW(ss, 1)", 1, 26,
       "analytic function lag() is not allowed in GROUP BY"},
      {"SELECT avg(a) FILTER (WHERE count(*) > 1) FROM s GROUP BY TUMBLINGWINDOW(ss, 1)", 1, 29,
       "aggregate function count() is not allowed in FILTER or OVER"},
      {"SELECT lag(a) OVER (PARTITION BY max(b)) FROM s GROUP BY TUMBLINGWINDOW(ss, 1)", 1, 34,
       "aggregate function max() is not allowed in FILTER or OVER"},
      {"SELECT a FROM s GROUP BY TUMBLINGWINDOW(ss, 1) FILTER (WHERE avg(a) > 1)", 1, 62,
       "aggregate function avg() is not allowed in the FILTER of a window"},
      {"SELECT window_start() FROM s", 1, 8, "window_start() needs a window in GROUP BY"},
      {"SELECT a FROM s WHERE window_start() > 0 GROUP BY TUMBLINGWINDOW(ss, 1)", 1, 23,
       "window_start() is available only in SELECT, HAVING and ORDER BY"},
      {"SELECT a FROM s GROUP BY TUMBLINGWINDOW(ss, 1) HAVING window_end() > 0 AND lag(a) OVER "
       "(WHEN window_start() > 0)",
       1, 94, "window_start() is not available in FILTER or OVER"},
      {"SELECT x.* FROM s", 1, 8, "x.* names no stream of this rule, which reads s"},
      {"SELECT a AS x, b AS x FROM s", 1, 21, "the name x is given to two fields"},
  };
  for (const ErrorCase& c : cases) ExpectError(c);
}

TEST(RulesParser, CreateStreamErrors) {
  const ErrorCase cases[] = {
      {"CREATE STREAM s (a INT) WITH (DATASOURCE=\"t\")", 1, 20,
       "unknown type \"INT\" (use BIGINT); the types are BIGINT, FLOAT"},
      {"CREATE STREAM s (a double) WITH (DATASOURCE=\"t\")", 1, 20, "(use FLOAT)"},
      {"CREATE STREAM s (a BIGINT, a FLOAT) WITH (DATASOURCE=\"t\")", 1, 28,
       "the column \"a\" is declared twice"},
      {"CREATE STREAM s (p STRUCT(x FLOAT, x FLOAT)) WITH (DATASOURCE=\"t\")", 1, 36,
       "the field \"x\" is declared twice"},
      {"CREATE STREAM s (a STRUCT()) WITH (DATASOURCE=\"t\")", 1, 27,
       "STRUCT needs at least one field"},
      {"CREATE STREAM s (a ARRAY) WITH (DATASOURCE=\"t\")", 1, 25,
       "expected \"(\" after ARRAY, as in ARRAY(FLOAT)"},
      {"CREATE STREAM s (a BIGINT b FLOAT) WITH (DATASOURCE=\"t\")", 1, 27,
       "expected \",\" or \")\" after the column a"},
      {"CREATE STREAM s (order BIGINT) WITH (DATASOURCE=\"t\")", 1, 18, "reserved word"},
      {"CREATE STREAM s () WITH (DATA_SOURCE=\"t\")", 1, 26,
       "unknown option \"DATA_SOURCE\" (did you mean DATASOURCE?); the options are DATASOURCE"},
      {"CREATE STREAM s () WITH (DATASOURCE=\"t\", StrictValidation=\"true\")", 1, 42,
       "the eKuiper option STRICTVALIDATION is not supported by Verge"},
      {"CREATE STREAM s () WITH (DATASOURCE=\"t\", STRICT_VALIDATION=\"true\")", 1, 42,
       "the eKuiper option STRICT_VALIDATION is not supported by Verge"},
      {"CREATE STREAM s () WITH (FORMAT=\"json\")", 1, 20, "DATASOURCE is required"},
      {"CREATE STREAM s () WITH ()", 1, 26, "WITH () needs at least DATASOURCE"},
      {"CREATE STREAM s () WITH (DATASOURCE=\"t\", datasource=\"u\")", 1, 42,
       "the option DATASOURCE is given twice"},
      {"CREATE STREAM s () WITH (DATASOURCE=\"t\", FORMAT=\"binary\")", 1, 49,
       "FORMAT \"binary\" is not supported: Verge reads JSON"},
      {"CREATE STREAM s () WITH (DATASOURCE=t)", 1, 37,
       "expected the value of DATASOURCE as a string in quotes, as in DATASOURCE=\"...\", found "
       "\"t\""},
      {"CREATE STREAM s () WITH (DATASOURCE=\"\")", 1, 37, "DATASOURCE must not be empty"},
      {"CREATE STREAM s () WITH (DATASOURCE=\"t\", SHARED=\"yes\")", 1, 49,
       "SHARED must be \"true\" or \"false\""},
      {"CREATE STREAM s () WITH (DATASOURCE=\"t\", TYPE=\"kafka\")", 1, 47,
       "TYPE \"kafka\" is not supported"},
      {"CREATE STREAM s (a BIGINT) WITH (DATASOURCE=\"t\", TIMESTAMP=\"ts\")", 1, 60,
       "TIMESTAMP names \"ts\", which is not a column of the stream"},
      {"CREATE STREAM s (ts BOOLEAN) WITH (DATASOURCE=\"t\", TIMESTAMP=\"ts\")", 1, 62,
       "the TIMESTAMP column \"ts\" is BOOLEAN"},
      {"CREATE STREAM s (a BIGINT)", 1, 27,
       "expected WITH (DATASOURCE=\"...\", ...) after the "
       "columns, found the end of the input"},
      {"CREATE STREAM s WITH (DATASOURCE=\"t\")", 1, 17, "expected \"(\" and the columns"},
      {"CREATE s () WITH (DATASOURCE=\"t\")", 1, 8, "expected STREAM after CREATE"},
      {"CREATE STREAM s () WITH (DATASOURCE=\"t\" FORMAT=\"json\")", 1, 41,
       "expected \",\" or \")\" after the option DATASOURCE"},
  };
  for (const ErrorCase& c : cases) ExpectError(c);
}

TEST(RulesParser, ErrorFormats) {
  ParseResult<Ast> r = Parse("SELECT device_id, avg FORM demo");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().ToString(),
            "line 1, column 23: expected FROM after the select list, found \"FORM\"");
  Status st = r.error().ToStatus();
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  EXPECT_EQ(st.message(), r.error().ToString());
}

// --- limits -------------------------------------------------------------------------------

TEST(RulesParser, NestingIsBounded) {
  auto nested = [](int n) {
    return "SELECT " + std::string(n, '(') + "1" + std::string(n, ')') + " FROM s";
  };
  EXPECT_TRUE(Parse(nested(150)).ok());
  ParseResult<Ast> deep = Parse(nested(201));
  ASSERT_FALSE(deep.ok());
  EXPECT_EQ(deep.error().column, 208);  // the 201st "("
  EXPECT_TRUE(Contains(deep.error().message, "nested too deeply: more than 200 levels"));

  // Far deeper input fails the same way, without exhausting the stack.
  EXPECT_FALSE(Parse(nested(100'000)).ok());
  EXPECT_FALSE(Parse("SELECT " + std::string(100'000, '-') + "a FROM s").ok());
  EXPECT_FALSE(Parse("SELECT " + std::string(50'000, '[') + " FROM s").ok());
  std::string nots;
  for (int i = 0; i < 50'000; ++i) nots += "NOT ";
  EXPECT_FALSE(Parse("SELECT a FROM s WHERE " + nots + "a").ok());
  std::string types = "CREATE STREAM s (a ";
  for (int i = 0; i < 50'000; ++i) types += "ARRAY(";
  EXPECT_FALSE(Parse(types).ok());

  // Long flat chains build deep trees: their height is bounded too.
  std::string chain = "SELECT a";
  for (int i = 0; i < 200; ++i) chain += " OR a";
  chain += " FROM s";
  ParseResult<Ast> high = Parse(chain);
  ASSERT_FALSE(high.ok());
  EXPECT_EQ(high.error().column, 1005);  // the 200th OR makes the tree 201 high
  EXPECT_TRUE(Contains(high.error().message, "for many alternatives use IN (...)"));
  std::string arrows = "SELECT a";
  for (int i = 0; i < 100'000; ++i) arrows += "->b";
  EXPECT_FALSE(Parse(arrows + " FROM s").ok());

  // Long lists are flat, and fine.
  std::string in = "SELECT a FROM s WHERE a IN (0";
  for (int i = 1; i < 10'000; ++i) in += ", " + std::to_string(i);
  EXPECT_TRUE(Parse(in + ")").ok());

  ParseOptions small;
  small.max_depth = 3;
  EXPECT_TRUE(ParseExpression("(1 + 2) * 3", small).ok());
  EXPECT_FALSE(ParseExpression("((1 + 2) * 3) - 4", small).ok());
}

TEST(RulesParser, InputSizeIsBounded) {
  ParseOptions options;
  options.max_bytes = 20;
  EXPECT_TRUE(Parse("SELECT a FROM s", options).ok());
  ParseResult<Ast> r = Parse("SELECT a, b, c, d FROM s", options);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().ToString(),
            "line 1, column 1: the statement is 24 bytes long; at most 20 are allowed");
  EXPECT_FALSE(Parse(std::string(size_t{300} * 1024, ' ')).ok());  // the default is 256 KiB
}

TEST(RulesParser, NeverCrashesOnPrefixes) {
  // Every prefix of valid statements either parses or fails with a position inside the text.
  const std::string_view statements[] = {
      "SELECT a->b[1:2], CASE WHEN x THEN 'y' ELSE \"z\" END AS c, lag(t, 1) OVER (PARTITION BY "
      "d WHEN t > 1) FROM s AS q WHERE a NOT IN (1, 2.5e3) AND b NOT BETWEEN -1 AND 1 OR c NOT "
      "LIKE 'x%' GROUP BY d, HOPPINGWINDOW(ss, 10, 5) FILTER (WHERE e) HAVING count(*) > 1 "
      "ORDER BY d DESC;",
      "CREATE STREAM s (a ARRAY(STRUCT(b BIGINT, `c d` FLOAT)), ts BIGINT) WITH "
      "(DATASOURCE=\"x/y\", TIMESTAMP=\"ts\", SHARED=\"false\")",
  };
  for (std::string_view s : statements) {
    ASSERT_TRUE(Parse(s).ok()) << Parse(s).error().ToString();
    for (size_t n = 0; n < s.size(); ++n) {
      ParseResult<Ast> r = Parse(s.substr(0, n));
      if (r.ok()) continue;
      EXPECT_EQ(r.error().line, 1);
      EXPECT_GE(r.error().column, 1);
      EXPECT_LE(r.error().column, static_cast<int>(n) + 1) << s.substr(0, n);
      EXPECT_FALSE(r.error().message.empty());
    }
  }
}

// --- the function registry ----------------------------------------------------------------

TEST(RulesFunctions, RegistryIsSortedAndCoversTheDialect) {
  std::span<const FunctionInfo> all = Functions();
  for (size_t i = 1; i < all.size(); ++i) EXPECT_LT(all[i - 1].name, all[i].name);
  for (const FunctionInfo& f : all) {
    EXPECT_LE(f.min_args, f.max_args) << f.name;
    EXPECT_TRUE(Contains(f.usage, f.name));
    EXPECT_EQ(FindFunction(f.name), &f);
  }
  struct Want {
    std::string_view name;
    FunctionKind kind;
  };
  const Want wants[] = {
      {"avg", FunctionKind::kAggregate},
      {"count", FunctionKind::kAggregate},
      {"sum", FunctionKind::kAggregate},
      {"min", FunctionKind::kAggregate},
      {"max", FunctionKind::kAggregate},
      {"stddev", FunctionKind::kAggregate},
      {"var", FunctionKind::kAggregate},
      {"median", FunctionKind::kAggregate},
      {"percentile", FunctionKind::kAggregate},
      {"collect", FunctionKind::kAggregate},
      {"deduplicate", FunctionKind::kAggregate},
      {"last_value", FunctionKind::kAggregate},
      {"lag", FunctionKind::kAnalytic},
      {"latest", FunctionKind::kAnalytic},
      {"changed_col", FunctionKind::kAnalytic},
      {"had_changed", FunctionKind::kAnalytic},
      {"acc_sum", FunctionKind::kAnalytic},
      {"acc_avg", FunctionKind::kAnalytic},
      {"acc_min", FunctionKind::kAnalytic},
      {"acc_max", FunctionKind::kAnalytic},
      {"acc_count", FunctionKind::kAnalytic},
      {"zscore", FunctionKind::kAnalytic},
      {"ewma_score", FunctionKind::kAnalytic},
      {"window_start", FunctionKind::kWindow},
      {"window_end", FunctionKind::kWindow},
      {"cast", FunctionKind::kScalar},
      {"coalesce", FunctionKind::kScalar},
      {"isnull", FunctionKind::kScalar},
      {"abs", FunctionKind::kScalar},
      {"round", FunctionKind::kScalar},
      {"concat", FunctionKind::kScalar},
      {"lower", FunctionKind::kScalar},
      {"format_time", FunctionKind::kScalar},
      {"now", FunctionKind::kScalar},
  };
  for (const Want& w : wants) {
    const FunctionInfo* f = FindFunction(w.name);
    ASSERT_NE(f, nullptr) << w.name;
    EXPECT_EQ(f->kind, w.kind) << w.name;
  }
  EXPECT_EQ(FindFunction("isNull"), FindFunction("ISNULL"));
  EXPECT_EQ(FindFunction("tumblingwindow"), nullptr);  // windows are not functions
  EXPECT_EQ(FindWindowFunction("HoppingWindow"), WindowKind::kHopping);
  EXPECT_EQ(SuggestFunction("stdev"), "stddev");
  EXPECT_EQ(SuggestFunction("completely_different"), "");
  EXPECT_TRUE(IsCastType("BIGINT"));
  EXPECT_FALSE(IsCastType("int"));
}

}  // namespace
}  // namespace verge::rules
