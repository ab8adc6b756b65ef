// The registry of the rule SQL's functions: every name the parser accepts in a call, with its
// kind and the number of arguments it takes. The parser checks calls against it (unknown
// function, wrong number of arguments, `*` where it does not belong, FILTER/OVER on the wrong
// kind, aggregates where they cannot be); the evaluator implements each entry.
//
// Kinds:
//   scalar     one value per event from the event alone (abs, concat, cast, ...).
//   aggregate  one value per group of a window (avg, count, ...); only in SELECT, HAVING and
//              ORDER BY of a rule with a window. May take FILTER (WHERE cond).
//   analytic   one value per event from the event and state kept across events (lag, acc_sum,
//              changed_col, ...), per OVER (PARTITION BY ...) key. Evaluated before WHERE, so a
//              WHERE that drops an event does not hide it from them (as in eKuiper). May take
//              OVER ([PARTITION BY e, ...] [WHEN cond]): events failing cond do not update the
//              state and get the last result.
//   window     window_start() and window_end(): the bounds of the window being emitted, in Unix
//              milliseconds; only where aggregates may be.
//
// Anomaly detection (Verge's own; eKuiper has none built in), both analytic:
//   zscore(x, n)        (x - mean) / stddev of the previous n values of x in the partition
//                       (the current value excluded, population stddev), null until there are
//                       2 previous values or while their stddev is 0. n: integer literal, 2 to
//                       100000.
//   ewma_score(x, a)    |x - m| / s, where m and s are the exponentially weighted moving mean and
//                       standard deviation of the previous values of x (smoothing factor a, a
//                       number literal with 0 < a <= 1: m' = m + a(x - m),
//                       s'^2 = (1 - a)(s^2 + a(x - m)^2)); null for the first 2 values or while
//                       s is 0.
// Over a time window, the z-score of the latest value is also an expression of aggregates:
// (last_value(x, true) - avg(x)) / stddev(x).
//
// Thread-safety: the registry is immutable.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "node/rules/ast.h"

namespace verge::rules {

enum class FunctionKind : uint8_t { kScalar, kAggregate, kAnalytic, kWindow };

// "scalar", "aggregate", "analytic", "window".
std::string_view FunctionKindName(FunctionKind kind);

inline constexpr uint8_t kVariadic = 255;
inline constexpr int8_t kNoStar = -1;

struct FunctionInfo {
  std::string_view name;  // lower case; calls match it in any case
  FunctionKind kind;
  uint8_t min_args;
  uint8_t max_args;        // kVariadic: no upper bound
  int8_t star_from;        // `*` may be an argument at this position or later; kNoStar: never
  std::string_view usage;  // for messages: "lag(expr [, offset [, default [, ignore_null]]])"
};

// The function called `name` (any case), or nullptr.
const FunctionInfo* FindFunction(std::string_view name);
// Every function, sorted by name.
std::span<const FunctionInfo> Functions();
// The known function closest to `name` (at most 2 edits away), for "did you mean"; or empty.
std::string_view SuggestFunction(std::string_view name);

// The window of GROUP BY called `name` (any case), e.g. "TumblingWindow".
std::optional<WindowKind> FindWindowFunction(std::string_view name);

// The types cast() converts to: "bigint", "float", "string", "boolean", "bytea", "datetime"
// (any case).
bool IsCastType(std::string_view name);

}  // namespace verge::rules
