// Random expressions and rules over random events, under the sanitizers: whatever parses must
// run without crashing, overflowing or leaking, and every runtime error must be counted rather
// than thrown. Deterministic (fixed seed), so a failure reproduces.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "node/rules/engine.h"
#include "node/rules/functions.h"
#include "node/rules/json_value.h"

namespace verge::rules {
namespace {

class Gen {
 public:
  explicit Gen(uint64_t seed) : rng_(seed) {}

  size_t Pick(size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng_); }

  std::string Atom() {
    static const char* kAtoms[] = {
        "a",
        "b",
        "s",
        "arr",
        "obj",
        "ts",
        "0",
        "1",
        "-1",
        "2.5",
        "0.0",
        "\"x\"",
        "\"\"",
        "TRUE",
        "FALSE",
        "NULL",
        "9223372036854775807",
        "-9223372036854775807",
        "1e308",
        "\"2026-01-01T00:00:00Z\"",
        "\"%a_\"",
        "\"[0-9]+\"",
    };
    return kAtoms[Pick(std::size(kAtoms))];
  }

  std::string Expr(int depth) {
    if (depth <= 0) return Atom();
    static const char* kBinary[] = {"+", "-",  "*", "/",  "%", "&",  "|",   "^",
                                    "=", "!=", "<", "<=", ">", ">=", "AND", "OR"};
    switch (Pick(10)) {
      case 0:
        return Atom();
      case 1:
        return "(" + Expr(depth - 1) + " " + kBinary[Pick(std::size(kBinary))] + " " +
               Expr(depth - 1) + ")";
      case 2:
        return "(NOT " + Expr(depth - 1) + ")";
      case 3:
        return "(" + Expr(depth - 1) + " LIKE " + Expr(depth - 1) + ")";
      case 4:
        return "(" + Expr(depth - 1) + " IN (" + Expr(depth - 1) + ", " + Expr(depth - 1) + "))";
      case 5:
        return "(" + Expr(depth - 1) + " BETWEEN " + Expr(depth - 1) + " AND " + Expr(depth - 1) +
               ")";
      case 6:
        return "CASE WHEN " + Expr(depth - 1) + " THEN " + Expr(depth - 1) + " ELSE " +
               Expr(depth - 1) + " END";
      case 7:
        return Pick(2) == 0 ? "obj->" + std::string(Pick(2) == 0 ? "x" : "y")
                            : "arr[" + Expr(depth - 1) + "]";
      case 8:
        return "arr[" + Atom() + ":" + Atom() + "]";
      default: {
        std::span<const FunctionInfo> fns = Functions();
        const FunctionInfo& f = fns[Pick(fns.size())];
        if (f.kind != FunctionKind::kScalar) return Atom();
        size_t max = f.max_args == kVariadic ? f.min_args + 2 : f.max_args;
        size_t n = f.min_args + Pick(max - f.min_args + 1);
        std::string call = std::string(f.name) + "(";
        for (size_t i = 0; i < n; ++i) {
          if (i > 0) call += ", ";
          call += Expr(depth - 1);
        }
        return call + ")";
      }
    }
  }

  Value RandomValue() {
    switch (Pick(8)) {
      case 0:
        return Value::Null();
      case 1:
        return Value::Int(static_cast<int64_t>(rng_()));
      case 2:
        return Value::Int(static_cast<int64_t>(Pick(5)) - 2);
      case 3:
        return Value::Float(std::uniform_real_distribution<double>(-10, 10)(rng_));
      case 4:
        return Value::String(Pick(2) == 0 ? "abc" : "");
      case 5:
        return Value::Bool(Pick(2) == 0);
      case 6:
        return Value::MakeArray({Value::Int(1), Value::String("x")});
      default:
        return Value::MakeObject({{"x", Value::Int(1)}});
    }
  }

  Row RandomRow(int64_t ts) {
    Object o;
    for (const char* c : {"a", "b", "s", "arr", "obj"}) o.emplace(c, RandomValue());
    o.emplace("ts", Value::Int(ts));
    return Value::MakeObject(std::move(o));
  }

 private:
  std::mt19937_64 rng_;
};

TEST(EngineRandomTest, WhateverParsesRunsWithoutCrashing) {
  Gen gen(20261122);
  const std::vector<std::string> streams = {
      R"(CREATE STREAM s () WITH (DATASOURCE="s", TIMESTAMP="ts"))"};
  static const char* kShapes[] = {
      "SELECT {e} AS x FROM s",
      "SELECT * FROM s WHERE {e}",
      "SELECT lag({e}) AS l, acc_sum({e}) OVER (PARTITION BY {e}) AS t FROM s",
      "SELECT count(*) AS n, sum({e}) AS s, max({e}) AS m FROM s GROUP BY TUMBLINGWINDOW(ss, 2)",
      "SELECT collect({e}) AS c, median({e}) AS md FROM s GROUP BY {e}, HOPPINGWINDOW(ss, 4, 2)",
      "SELECT avg({e}) AS a FROM s GROUP BY SLIDINGWINDOW(ss, 3) HAVING {e}",
      "SELECT count(*) AS n FROM s GROUP BY SESSIONWINDOW(ss, 2, 10) FILTER (WHERE {e})",
      "SELECT deduplicate({e}, true) AS d FROM s GROUP BY COUNTWINDOW(3, 1) ORDER BY {e}",
  };
  int parsed = 0;
  for (int i = 0; i < 1500; ++i) {
    std::string sql = kShapes[gen.Pick(std::size(kShapes))];
    for (size_t at; (at = sql.find("{e}")) != std::string::npos;) {
      sql.replace(at, 3, gen.Expr(3));
    }
    std::vector<Row> rows;
    int64_t ts = 0;
    for (int r = 0; r < 12; ++r) {
      ts += static_cast<int64_t>(gen.Pick(3000)) - 500;  // some out of order
      rows.push_back(gen.RandomRow(ts));
    }
    auto out =
        RunTest(streams, sql, {{"s", rows}}, RuleOptions{static_cast<int64_t>(gen.Pick(2)) * 1000});
    if (!out.ok()) continue;
    ++parsed;
    const RuleCounters& c = out.value().counters;
    EXPECT_EQ(c.records_in, rows.size()) << sql;
    EXPECT_EQ(c.exceptions == 0, c.last_error.empty()) << sql;
  }
  RecordProperty("parsed", parsed);
  EXPECT_GT(parsed, 300);  // the generator must exercise the engine, not only the parser
}

}  // namespace
}  // namespace verge::rules
