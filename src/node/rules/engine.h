// The rule engine: one running rule (a parsed SELECT over one stream) that turns events into
// emissions, and RunTest(), the in-process run behind the node's `POST /rules/test`. No I/O: the
// caller feeds events and time, and takes emissions back. The node's rule manager will own one
// Rule per rule and drive it from its strand.
//
// Time. Every event carries a timestamp in Unix milliseconds: its TIMESTAMP column under event
// time, its arrival time under processing time. Time windows close by a watermark:
//   watermark = max(timestamps seen, clock passed to AdvanceTo()) - late_tolerance_ms
// (under processing time the tolerance is 0 and the clock is the arrival clock). A window whose
// end is <= the watermark is emitted and forgotten. In a windowed rule an event older than the
// watermark is late: it is dropped and counted (Counters::late), never put in a window that is
// already gone. Count windows ignore time.
//
// Order of work per event, as in eKuiper (docs/en_US/sqls/{windows,functions/analytic_functions}
// .md): analytic functions (lag, acc_sum, zscore, ...) first, on every event, so WHERE does not
// hide events from them; then, without a window, WHERE and the projection, one emission of one
// row per event that passes. With a window: the window's FILTER(WHERE) decides whether the event
// enters the window at all; WHERE (evaluated as the event arrives) decides whether it is among
// the window's rows when the window is emitted (so a COUNTWINDOW counts events before WHERE, as
// eKuiper documents); then GROUP BY keys, aggregates, HAVING, projection and ORDER BY; one
// emission per window holding one row per group (or, when the rule has neither keys nor
// aggregates, one row per event, as eKuiper does). A group's non-aggregate columns (and `*`)
// come from its first event. Empty windows and windows whose rows all fail WHERE/HAVING emit
// nothing. ORDER BY sorts the rows of one emission (nulls first ascending, last descending).
//
// Aggregates skip nulls. count(*) counts events, count(x) non-null x; sum is a bigint while
// every addend is (wrapping on overflow), else a float; avg, var, stddev (population), vars,
// stddevs (sample; null under 2 values), median and percentile (linear interpolation between
// closest ranks) are floats; percentile_disc is the smallest value whose cumulative share is
// >= p; min/max keep the value's type (strings compare too); collect(x) keeps nulls, collect(*)
// gives the events; last_value(x) ignores nulls unless its second argument is false;
// deduplicate(x, true) gives the events whose x was not seen before in the group,
// deduplicate(x, false) the last event if its x is new, else null. Over no values: count 0,
// collect and deduplicate(x, true) [], the others null.
//
// Analytic functions keep their state per OVER (PARTITION BY ...) key for the life of the rule
// (partitions never expire). lag(x, n, default, ignore_null): x of the n-th previous event (of
// the previous non-null x's with ignore_null), else default; latest(x, default): the latest
// non-null x so far, this event's included; changed_col(ignore_null, x): x when it differs from
// the previous x (the first event's x counts as changed), else null; had_changed(ignore_null,
// x, ...): whether any argument differs from its previous value (true at first; `*` compares
// the whole event); acc_sum/avg/min/max/count: running over the non-null values (acc_avg a
// float, acc_sum typed like sum); zscore and ewma_score as functions.h defines them. An event
// failing OVER (WHEN ...) leaves the state alone and gets the function's last result.
//
// Windows (all time windows half-open [start, end), aligned to the Unix epoch: eKuiper's
// "natural time" alignment (docs/en_US/sqls/windows.md, "Time-units": a 10 s window always ends
// at a multiple of 10 s). eKuiper ends a day window at 24:00 local time; here it is 00:00 UTC,
// the node's clock zone being no part of a rule):
//   TUMBLINGWINDOW(u, n)        [k*n, (k+1)*n)
//   HOPPINGWINDOW(u, size, hop) [k*hop, k*hop + size), for every k
//   SLIDINGWINDOW(u, size[, d]) one window per triggering event at t (every event that passes
//                               FILTER and OVER (WHEN ...)): events in (t - size, t + d],
//                               emitted when the watermark reaches t + d; window_start() is
//                               t - size, window_end() t + d
//   SESSIONWINDOW(u, timeout, max) starts at its first event; an event less than `timeout`
//                               after the previous one extends it; it closes at the last event
//                               + timeout, or at the next multiple of `max` after its start
//                               (eKuiper checks the maximum duration at multiples of max),
//                               whichever is first; window_start() is its first event's time
//   COUNTWINDOW(n[, hop])       every `hop` events (hop = n when not given) once at least n have
//                               come: the latest n events; window_start()/window_end() are the
//                               first and last event's timestamps
//
// Output rows (eKuiper's projection): a field's name is its alias; unaliased, a column's name, a
// struct field's key (a->b is "b"), a function's name (avg(x) is "avg"); anything else
// "kuiper_field_N" with the smallest N not yet used in the row. When two fields have one name
// the first wins. A field whose value is null is left out of the row (eKuiper omits nil
// fields); `*` copies every column as it is.
//
// Runtime errors (division by zero, a bad cast, incompatible types) drop that event's output,
// or that group's, and are counted in Counters::exceptions with the message in last_error; the
// rule goes on.
//
// Memory. A TUMBLING or HOPPING window whose aggregates all keep a small state (count, sum, avg,
// min, max, stddev, stddevs, var, vars, last_value) keeps, per open window and group key, the
// group's first event (its non-aggregate columns) and one fixed-size state per aggregate; a
// runtime error in an aggregate's input then drops that event (not the group). Other windows,
// and rules with collect, median, percentile, percentile_disc or deduplicate or without
// aggregates, keep the events themselves until their window closes.
//
// Thread-safety: a Rule is not thread-safe; one strand drives it. RunTest is thread-safe.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "node/rules/ast.h"
#include "node/rules/parser.h"
#include "node/rules/value.h"

namespace verge::rules {

// One event or one output row: an object Value.
using Row = Value;
// One emission: the rows a rule outputs at once.
using Emission = std::vector<Row>;

struct RuleOptions {
  // Event time only: how late (in ms, behind the newest timestamp) an event may come and still
  // enter its window. eKuiper's rule option lateTolerance.
  int64_t late_tolerance_ms = 0;
};

struct RuleCounters {
  uint64_t records_in = 0;   // events pushed
  uint64_t records_out = 0;  // rows emitted
  uint64_t exceptions = 0;   // runtime errors
  uint64_t late = 0;         // events dropped for coming after the watermark
  std::string last_error;    // the latest runtime error, empty if none
};

class Rule {
 public:
  // A rule for `select` reading `stream` (whose name must be select.stream). Errors: the stream
  // is another one (kInvalidArgument).
  static Result<std::unique_ptr<Rule>> Create(const Select& select, const CreateStream& stream,
                                              const RuleOptions& options = {});
  ~Rule();
  Rule(const Rule&) = delete;
  Rule& operator=(const Rule&) = delete;

  // One event (an object; anything else is counted as an exception) with its timestamp.
  // Returns the emissions it causes, in order. Columns declared by the stream are converted to
  // their declared type where they convert (a FLOAT column given 20 holds 20.0).
  std::vector<Emission> Push(const Row& row, int64_t timestamp_ms);
  // Moves the clock to time_ms (never backwards) and emits the windows that closes.
  std::vector<Emission> AdvanceTo(int64_t time_ms);

  const RuleCounters& counters() const;

  // Checkpoints. Snapshot() is the rule's whole state (open windows or their aggregate state,
  // analytic state per partition, watermark, clock, counters) as bytes: versioned JSON tagged
  // with the rule's canonical SQL. Restore() puts a snapshot of the same rule (same canonical
  // SQL) back; on any error (kDataLoss: damaged; kFailedPrecondition: another rule or version)
  // the state is left unchanged. Floats that are NaN or infinite come back as null.
  std::string Snapshot() const;
  Status Restore(std::string_view bytes);
  // The watermark, see the header comment; INT64_MIN before any event or clock.
  int64_t watermark() const;

  class Impl;

 private:
  explicit Rule(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The `POST /rules/test` run.
struct TestOutput {
  std::vector<Emission> outputs;
  RuleCounters counters;
};

// Declares `create_streams`, builds the rule `sql` over one of them, and feeds it the rows of
// `input[stream]` for its FROM stream (rows of other streams are ignored) in order: before each
// row the clock moves to the row's timestamp (its TIMESTAMP column, or `ts` when the stream
// declares none; a bigint of Unix ms or RFC 3339 text; a row without one keeps the clock where
// it is, starting at 0), after the last row it moves on by 1 s, and the run ends: windows still
// open then are not emitted. Errors carry the line and column of invalid SQL (from the
// parser); other errors (unknown stream, a duplicate stream) have line and column 0.
ParseResult<TestOutput> RunTest(const std::vector<std::string>& create_streams,
                                const std::string& sql,
                                const std::map<std::string, std::vector<Row>>& input,
                                const RuleOptions& options = {});

}  // namespace verge::rules
