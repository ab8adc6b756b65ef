// The expression evaluator of the rule engine: one parsed Expr (ast.h) over one event, with the
// results of the rule's aggregate and analytic calls supplied by the caller (engine.h computes
// them). Implements every operator of ast.h and every scalar function of functions.h.
//
// Semantics (eKuiper's, docs/en_US/sqls/{data_types,json_expr,functions/*}.md and its valuer):
//   - Arithmetic + - * / %: bigint with bigint gives a bigint (division truncates, overflow
//     wraps as in Go); a float on either side gives a float. Division or modulo by zero (bigint
//     or float) is a runtime error, as is arithmetic on anything but numbers: there is no string
//     concatenation with + (use concat()). A null operand gives null.
//   - Bitwise & | ^ on bigints; on booleans & | ^ are and / or / xor.
//   - Comparisons follow value.h's Compare(): a null on either side makes = != < <= > >= false;
//     incompatible types (a string and a bigint) are a runtime error.
//   - AND / OR / NOT take booleans (anything else is a runtime error) and null, with SQL's
//     three-valued logic (null AND false = false, null OR true = true, otherwise null); a null
//     WHERE, HAVING, FILTER or WHEN condition counts as false.
//   - LIKE: % any run, _ one character (a UTF-8 code point), \ escapes the next character;
//     null on either side gives null; a non-string is a runtime error.
//   - IN / BETWEEN compare with Equals (IN) and Compare (BETWEEN, inclusive); a null left side
//     gives null.
//   - CASE: the first WHEN that is true (simple CASE: equal to the operand); ELSE or null.
//   - a->b: field b of a struct; null when a is null or has no field b; a runtime error when a
//     is not a struct. a[i]: element i of an array, negative from the end; out of range is a
//     runtime error (eKuiper's "out of index"); a[i:j] half-open with negative bounds from the
//     end, clamped to the array (an empty range gives []; eKuiper errors instead); a[i] on a
//     struct with a string i is field access.
//   - Scalar functions (functions.h lists them) give null when an argument is null, except
//     isnull, coalesce, concat (which skips nulls) and the argument-less ones. Math takes
//     numbers (abs/ceil/floor/round keep a bigint a bigint; mod is %; the others give floats, NaN
//     where undefined); string functions take strings and count code points (numbytes counts bytes;
//     indexof gives a byte offset, -1 when absent; substring(s, start, length); lpad/rpad add n
//     spaces; lower/upper map ASCII letters only); regular expressions are ECMAScript (close to
//     Go's RE2 for common patterns).
//   - Datetimes are bigint Unix milliseconds, UTC; time functions also take RFC 3339 text.
//     now(), cur_date(), cur_time() format the rule's clock ("YYYY-MM-DD HH:mm:ss", as eKuiper
//     documents); tstamp() is the clock in ms, event_time() the event's timestamp;
//     day_of_week is 1 for Sunday; date_diff(a, b) is a's day minus b's day; date_calc adds a
//     Go duration ("1h30m", "-10s"); from_unix_time(seconds) gives ms; format_time takes
//     yyyy MM dd HH mm ss SSS EEE EEEE and 'quoted text'.
//   - A column missing from the event is null (eKuiper: schemaless streams).
//
// Runtime errors are returned as a Status (kInvalidArgument) whose message says what and where
// ("division by zero at line 1, column 12"); the caller counts them and drops that event's
// output. Nothing here throws or aborts on any input.
//
// Thread-safety: free functions without shared state: rand() and newuuid() use a thread-local
// generator, the regexp functions a thread-local cache of compiled patterns.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <unordered_map>
#include <utility>

#include "common/status.h"
#include "node/rules/ast.h"
#include "node/rules/value.h"

namespace verge::rules {

// The columns of one event that a rule names, each looked up at most once per event (the
// engine looks them all up in one walk over the event, or each on first use): Eval reads a
// column node listed here instead of searching the event every time.
struct BoundColumns {
  // The columns of the event they are of (its payload, which copies of the event share); they
  // serve no other. Null: none.
  const Object* object = nullptr;
  // Column nodes (kColumn) by address, each with its index in `names` and `values`.
  std::span<const std::pair<const Expr*, size_t>> nodes;
  std::span<const std::string> names;
  // The column's value in `object`, nullptr when it has none, or NotLookedUp(). Eval writes
  // the lookups it makes here: a BoundColumns serves one thread.
  std::span<const Value*> values;

  static const Value* NotLookedUp();
  // The column node's value in `object` (looked up now if it was not): the found value or
  // nullptr (absent); nullopt when the node is not bound here.
  std::optional<const Value*> Find(const Expr& column) const;
};

// Where the results of aggregate and analytic calls are: the slot of each call node, and the
// values computed for the current event or group.
struct EvalScope {
  const Value* row = nullptr;  // the event, an object; null pointer: no event (all columns null)
  const BoundColumns* columns = nullptr;  // optional; used only for the event they are of
  // Aggregate and analytic call nodes by address (sorted), each with its slot.
  std::span<const std::pair<const Expr*, size_t>> slots;
  std::span<const Value> analytic;   // by slot
  std::span<const Value> aggregate;  // by slot
  int64_t window_start = 0;          // window_start() / window_end(), Unix ms
  int64_t window_end = 0;
  int64_t now_ms = 0;    // the rule's clock: now(), tstamp(), cur_date(), cur_time()
  int64_t event_ms = 0;  // the event's timestamp: event_time()
};

Result<Value> Eval(const Expr& e, const EvalScope& scope);

// Eval without a copy where it can: a literal or a column of the event gives a pointer into the
// expression or the event (null columns: a pointer to a null Value); anything else is evaluated
// into `tmp` and gives &tmp. Valid while `e`, the event and `tmp` are.
Result<const Value*> EvalRef(const Expr& e, const EvalScope& scope, Value& tmp);

// A condition: true only for the boolean true; null and false are false; another type is a
// runtime error.
Result<bool> EvalCondition(const Expr& e, const EvalScope& scope);

// SQL LIKE on strings (exposed for tests).
bool LikeMatch(std::string_view text, std::string_view pattern);

// A datetime as Unix milliseconds: a bigint as it is, a float truncated, or RFC 3339 text
// ("YYYY-MM-DD" and "YYYY-MM-DD HH:MM:SS" are UTC); nullopt otherwise.
std::optional<int64_t> DatetimeMillis(const Value& v);

// The runtime error of an expression at `pos`.
Status RuntimeError(Pos pos, std::string_view what);

}  // namespace verge::rules
