// Micro-benchmarks of the rule engine (src/node/rules/engine.h) on one core, in-process, each
// rule beside a hand-written C++ loop that computes the same output rows from the same input,
// so that issue 4's targets ("≥ 2 M events/s per core for the filter and the tumbling average,
// and within 2x of a hand-written C++ loop computing the same result in the same run") are
// read as ratios within one run:
//   BM_RuleFilter / BM_HandFilter
//       `SELECT * FROM s WHERE temperature > 50`. The hand loop finds `temperature` in each
//       event and keeps the passing events (a copy of the row Value, which shares its payload).
//       BM_RuleFilterTypedStream: the same rule over the stream declared with column types
//       (see below), which costs the engine a check of every declared column of every event.
//   BM_RuleTumblingAvg / BM_HandTumblingAvg
//       `SELECT device_id, avg(temperature) AS t FROM s GROUP BY device_id,
//       TUMBLINGWINDOW(ss, 10)`: 10 windows of 10,000 groups each. The hand loop keeps an
//       unordered_map from device to its group (sum, count, in first-event order, as the rule
//       emits them) and emits one row per device when an event of the next window comes.
//   BM_RuleSlidingZscore / BM_HandSlidingZscore
//       The rule a user writes to flag outliers per device with the dialect's anomaly function
//       (functions.h: zscore(x, n) scores x against the previous n values of its partition):
//         SELECT device_id, ts, temperature,
//                zscore(temperature, 60) OVER (PARTITION BY device_id) AS z FROM s
//         WHERE abs(zscore(temperature, 60) OVER (PARTITION BY device_id)) > 3
//       i.e. a sliding window of the last 60 readings (one minute at 1 Hz) per device. The hand
//       loop keeps a ring buffer of 60 doubles per device in an unordered_map and computes mean
//       and population stddev in two passes, oldest value first, as the engine does.
// Input (built once, before timing, shared by all): 1,000,000 events of 10,000 devices, each
// reporting once a second for 100 s in a shuffled order within the second; one object Value
// per event as the node hands it to the engine: device_id (its own string, ~26 bytes), ts
// (bigint Unix ms, the stream's TIMESTAMP), temperature and humidity (floats). Temperatures are
// a per-device baseline ~N(40, 8) plus noise N(0, 1.5) and a 0.2 % chance of a ±15 spike, so
// ~11 % pass the filter and ~1.6 % are flagged. The stream is declared as the node declares
// its built-in telemetry stream (schemaless, event time on ts); the typed variant declares the
// four columns (FLOAT, BIGINT: a FLOAT column given an integer would be converted).
// Every timed iteration runs a fresh rule (or fresh hand-loop state) over all events, then
// AdvanceTo(last + 10 s) so the last window closes, and collects the output rows in a vector
// (both sides alike). items_per_second counts events. Before timing, each pair is run once and
// the two outputs are compared row by row (the number of emissions, of rows, and every row's
// JSON text, which tells 1 from 1.0): a mismatch skips both benchmarks with the first
// difference.
//
// Memory per open key (BM_OpenWindowBytes/<rule>/keys:N/events_per_key:M): glibc's
// mallinfo2() (uordblks + hblkhd: bytes in use, with malloc's chunk headers) before N*M fresh
// events are built and after they were pushed and released, divided by N: what the rule keeps
// alive per key, including the event rows it holds. row_bytes is the same measure of one input
// event as built here. All events fall in one open window, so nothing is emitted.
//   tumbling_avg      the tumbling average above, one event per key (per-key aggregate state)
//   tumbling_median   median instead of avg: a window that keeps its events (M per key)
//   zscore_partition  the z-score rule: analytic state per partition after M events
// mallinfo2() rather than a counting operator new, so that the timed benchmarks run with the
// allocator as it is. A few hundred KB freed into glibc's thread cache still count as in use:
// the figure at 100,000 keys is the sharper one.
//
// Run, pinned to one core, e.g.
//   taskset -c 1 build/bin/verge-rules-bench --benchmark_repetitions=5
//       --benchmark_report_aggregates_only=true
//
// Threading: single-threaded (Google Benchmark's main thread).
#include <benchmark/benchmark.h>
#include <fmt/format.h>
#include <malloc.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <numeric>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "node/rules/engine.h"
#include "node/rules/parser.h"
#include "node/rules/value.h"

namespace verge::rules {
namespace {

constexpr int kDevices = 10'000;
constexpr int kSeconds = 100;
constexpr int64_t kStartMs = 1'795'251'600'000;  // 2026-11-21T09:00:00Z, a multiple of 10 s
constexpr int64_t kWindowMs = 10'000;
constexpr double kThreshold = 50;
constexpr size_t kZscoreValues = 60;
constexpr double kZscoreLimit = 3;

// Declared as the node declares its built-in telemetry stream (src/node/rules/spec.cc):
// schemaless, event time on ts.
constexpr std::string_view kStream =
    "CREATE STREAM s () WITH (DATASOURCE=\"telemetry\", TYPE=\"memory\", TIMESTAMP=\"ts\")";
// The same events declared with their types, as a user may declare an MQTT stream: the engine
// then checks every declared column of every event (a FLOAT column given an integer would be
// converted).
constexpr std::string_view kTypedStream =
    "CREATE STREAM s (device_id STRING, ts BIGINT, temperature FLOAT, humidity FLOAT) "
    "WITH (DATASOURCE=\"sensors/+/data\", FORMAT=\"json\", TIMESTAMP=\"ts\")";
constexpr std::string_view kFilterSql = "SELECT * FROM s WHERE temperature > 50";
constexpr std::string_view kTumblingAvgSql =
    "SELECT device_id, avg(temperature) AS t FROM s GROUP BY device_id, TUMBLINGWINDOW(ss, 10)";
constexpr std::string_view kTumblingMedianSql =
    "SELECT device_id, median(temperature) AS m FROM s "
    "GROUP BY device_id, TUMBLINGWINDOW(ss, 10)";
constexpr std::string_view kZscoreSql =
    "SELECT device_id, ts, temperature, "
    "zscore(temperature, 60) OVER (PARTITION BY device_id) AS z FROM s "
    "WHERE abs(zscore(temperature, 60) OVER (PARTITION BY device_id)) > 3";

struct Event {
  Row row;
  int64_t ts = 0;
};

std::string DeviceName(int i) {
  return fmt::format("plant-{}/line-{:02}/temp-{:05}", i % 7, i % 13, i);
}

Row MakeRow(const std::string& device, int64_t ts, double temperature, double humidity) {
  Object o;
  o.emplace("device_id", Value::String(device));
  o.emplace("ts", Value::Int(ts));
  o.emplace("temperature", Value::Float(temperature));
  o.emplace("humidity", Value::Float(humidity));
  return Value::MakeObject(std::move(o));
}

// `devices` devices reporting once a second for `seconds` seconds from kStartMs, in a shuffled
// order within each second; timestamps never go backwards.
std::vector<Event> MakeEvents(int devices, int seconds) {
  std::mt19937_64 rng(42);
  std::normal_distribution<double> baseline(40, 8);
  std::normal_distribution<double> noise(0, 1.5);
  std::uniform_real_distribution<double> uniform(0, 1);
  std::vector<std::string> names;
  std::vector<double> base;
  for (int i = 0; i < devices; ++i) {
    names.push_back(DeviceName(i));
    base.push_back(baseline(rng));
  }
  std::vector<int> order(static_cast<size_t>(devices));
  std::iota(order.begin(), order.end(), 0);
  std::vector<Event> events;
  events.reserve(static_cast<size_t>(devices) * static_cast<size_t>(seconds));
  for (int s = 0; s < seconds; ++s) {
    std::shuffle(order.begin(), order.end(), rng);
    for (int k = 0; k < devices; ++k) {
      const auto i = static_cast<size_t>(order[static_cast<size_t>(k)]);
      const int64_t ts = kStartMs + int64_t{s} * 1000 + int64_t{k} * 1000 / devices;
      double t = base[i] + noise(rng);
      if (uniform(rng) < 0.002) t += uniform(rng) < 0.5 ? -15 : 15;
      const double h = 20 + 70 * uniform(rng);
      events.push_back(
          {MakeRow(names[i], ts, std::round(t * 100) / 100, std::round(h * 10) / 10), ts});
    }
  }
  return events;
}

const std::vector<Event>& Events() {
  static const std::vector<Event> events = MakeEvents(kDevices, kSeconds);
  return events;
}

std::unique_ptr<Rule> MakeRule(std::string_view sql, std::string_view stream_sql = kStream) {
  ParseResult<CreateStream> stream = ParseCreateStream(stream_sql);
  ParseResult<Select> select = ParseSelect(sql);
  if (!stream.ok() || !select.ok()) {
    fmt::print(stderr, "bad SQL: {}\n", (stream.ok() ? select.error() : stream.error()).ToString());
    std::abort();
  }
  auto rule = Rule::Create(select.value(), stream.value());
  if (!rule.ok()) {
    fmt::print(stderr, "Rule::Create: {}\n", rule.status().message());
    std::abort();
  }
  return std::move(rule).value();
}

// What a rule or a hand loop output: its emissions' rows, in order.
struct Sink {
  uint64_t emissions = 0;
  std::vector<Row> rows;

  void Clear() {
    emissions = 0;
    rows.clear();
  }
  void Take(std::vector<Emission>&& out) {
    for (Emission& e : out) {
      ++emissions;
      for (Row& r : e) rows.push_back(std::move(r));
    }
  }
};

// Every event, then the clock past the last window.
void RunRule(Rule& rule, const std::vector<Event>& events, Sink& out) {
  for (const Event& e : events) out.Take(rule.Push(e.row, e.ts));
  out.Take(rule.AdvanceTo(events.back().ts + kWindowMs));
}

// --- hand-written loops ----------------------------------------------------------------------

void HandFilter(const std::vector<Event>& events, Sink& out) {
  for (const Event& e : events) {
    const Value* t = e.row.Find("temperature");
    if (t != nullptr && t->is_number() && t->number_value() > kThreshold) {
      out.rows.push_back(e.row);
      ++out.emissions;
    }
  }
}

void HandTumblingAvg(const std::vector<Event>& events, Sink& out) {
  struct Group {
    Value device;
    double sum = 0;
    int64_t count = 0;
  };
  std::unordered_map<std::string, size_t> index;  // device -> groups[i]
  std::vector<Group> groups;                      // in the order of their first event
  int64_t end = 0;
  auto emit = [&] {
    if (groups.empty()) return;
    for (const Group& g : groups) {
      Object o;
      o.emplace("device_id", g.device);
      o.emplace("t", Value::Float(g.sum / static_cast<double>(g.count)));
      out.rows.push_back(Value::MakeObject(std::move(o)));
    }
    ++out.emissions;
    index.clear();
    groups.clear();
  };
  for (const Event& e : events) {
    const int64_t window_end = (e.ts / kWindowMs + 1) * kWindowMs;  // ts > 0, in time order
    if (window_end != end) {
      emit();
      end = window_end;
    }
    const Value* device = e.row.Find("device_id");
    const Value* t = e.row.Find("temperature");
    auto it = index.find(device->string_value());
    if (it == index.end()) {
      it = index.emplace(device->string_value(), groups.size()).first;
      groups.push_back({*device});
    }
    Group& g = groups[it->second];
    g.sum += t->number_value();
    ++g.count;
  }
  emit();
}

void HandZscore(const std::vector<Event>& events, Sink& out) {
  // The previous values, at most kZscoreValues; once full, the oldest is at `next`.
  struct History {
    std::vector<double> ring;
    size_t next = 0;
  };
  std::unordered_map<std::string, History> devices;
  for (const Event& e : events) {
    const Value* device = e.row.Find("device_id");
    const Value* t = e.row.Find("temperature");
    History& h = devices[device->string_value()];
    const double x = t->number_value();
    const size_t n = h.ring.size();
    std::optional<double> z;
    if (n >= 2) {
      const size_t first = n < kZscoreValues ? 0 : h.next;
      double sum = 0;
      for (size_t i = first; i < n; ++i) sum += h.ring[i];
      for (size_t i = 0; i < first; ++i) sum += h.ring[i];
      const double mean = sum / static_cast<double>(n);
      double sq = 0;
      for (size_t i = first; i < n; ++i) sq += (h.ring[i] - mean) * (h.ring[i] - mean);
      for (size_t i = 0; i < first; ++i) sq += (h.ring[i] - mean) * (h.ring[i] - mean);
      const double sd = std::sqrt(sq / static_cast<double>(n));
      if (sd > 0) z = (x - mean) / sd;
    }
    if (n < kZscoreValues) {
      h.ring.push_back(x);
    } else {
      h.ring[h.next] = x;
      h.next = (h.next + 1) % kZscoreValues;
    }
    if (z && std::fabs(*z) > kZscoreLimit) {
      Object o;
      o.emplace("device_id", *device);
      o.emplace("ts", *e.row.Find("ts"));
      o.emplace("temperature", *t);
      o.emplace("z", Value::Float(*z));
      out.rows.push_back(Value::MakeObject(std::move(o)));
      ++out.emissions;
    }
  }
}

// --- checks and timing -----------------------------------------------------------------------

using HandLoop = void (*)(const std::vector<Event>&, Sink&);

// Runs the rule and the hand loop once over Events(); empty if their outputs are the same,
// else what differs.
std::string Check(std::string_view sql, HandLoop hand, std::string_view stream = kStream) {
  Sink want;
  hand(Events(), want);
  Sink got;
  auto rule = MakeRule(sql, stream);
  RunRule(*rule, Events(), got);
  const RuleCounters& c = rule->counters();
  if (c.exceptions != 0 || c.late != 0) {
    return fmt::format("the rule had {} exceptions ({}) and {} late events", c.exceptions,
                       c.last_error, c.late);
  }
  if (want.rows.empty()) return "the hand loop output nothing";
  if (got.emissions != want.emissions || got.rows.size() != want.rows.size()) {
    return fmt::format("the rule output {} rows in {} emissions, the hand loop {} in {}",
                       got.rows.size(), got.emissions, want.rows.size(), want.emissions);
  }
  for (size_t i = 0; i < want.rows.size(); ++i) {
    std::string a = ToJson(got.rows[i]);
    std::string b = ToJson(want.rows[i]);
    if (a != b) return fmt::format("row {}: the rule output {}, the hand loop {}", i, a, b);
  }
  return {};
}

const std::string& FilterCheck() {
  static const std::string error = Check(kFilterSql, HandFilter);
  return error;
}
const std::string& TypedFilterCheck() {
  static const std::string error = Check(kFilterSql, HandFilter, kTypedStream);
  return error;
}
const std::string& TumblingAvgCheck() {
  static const std::string error = Check(kTumblingAvgSql, HandTumblingAvg);
  return error;
}
const std::string& ZscoreCheck() {
  static const std::string error = Check(kZscoreSql, HandZscore);
  return error;
}

void Report(benchmark::State& state, const Sink& sink) {
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(Events().size()));
  state.counters["rows_out"] = static_cast<double>(sink.rows.size());
}

void TimeRule(benchmark::State& state, std::string_view sql, const std::string& check,
              std::string_view stream = kStream) {
  if (!check.empty()) {
    state.SkipWithError(check.c_str());
    return;
  }
  const std::vector<Event>& events = Events();
  Sink sink;
  for (auto _ : state) {
    sink.Clear();
    auto rule = MakeRule(sql, stream);
    RunRule(*rule, events, sink);
  }
  Report(state, sink);
}

void TimeHand(benchmark::State& state, HandLoop hand, const std::string& check) {
  if (!check.empty()) {
    state.SkipWithError(check.c_str());
    return;
  }
  const std::vector<Event>& events = Events();
  Sink sink;
  for (auto _ : state) {
    sink.Clear();
    hand(events, sink);
  }
  Report(state, sink);
}

void BM_RuleFilter(benchmark::State& state) { TimeRule(state, kFilterSql, FilterCheck()); }
void BM_HandFilter(benchmark::State& state) { TimeHand(state, HandFilter, FilterCheck()); }
void BM_RuleFilterTypedStream(benchmark::State& state) {
  TimeRule(state, kFilterSql, TypedFilterCheck(), kTypedStream);
}
void BM_RuleTumblingAvg(benchmark::State& state) {
  TimeRule(state, kTumblingAvgSql, TumblingAvgCheck());
}
void BM_HandTumblingAvg(benchmark::State& state) {
  TimeHand(state, HandTumblingAvg, TumblingAvgCheck());
}
void BM_RuleSlidingZscore(benchmark::State& state) { TimeRule(state, kZscoreSql, ZscoreCheck()); }
void BM_HandSlidingZscore(benchmark::State& state) { TimeHand(state, HandZscore, ZscoreCheck()); }
BENCHMARK(BM_RuleFilter)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_HandFilter)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_RuleFilterTypedStream)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_RuleTumblingAvg)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_HandTumblingAvg)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_RuleSlidingZscore)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_HandSlidingZscore)->Unit(benchmark::kMillisecond);

// --- memory ------------------------------------------------------------------------------------

size_t HeapInUse() {
  const struct mallinfo2 m = mallinfo2();
  return m.uordblks + m.hblkhd;
}

double PerItem(size_t after, size_t before, size_t n) {
  return (static_cast<double>(after) - static_cast<double>(before)) / static_cast<double>(n);
}

void BM_OpenWindowBytes(benchmark::State& state, std::string_view sql) {
  const auto keys = static_cast<int>(state.range(0));
  const auto per_key = static_cast<int>(state.range(1));
  const size_t n = static_cast<size_t>(keys) * static_cast<size_t>(per_key);
  for (auto _ : state) {
    auto rule = MakeRule(sql);
    const size_t before = HeapInUse();
    {
      std::vector<Event> events = MakeEvents(keys, per_key);
      state.counters["row_bytes"] =
          PerItem(HeapInUse() - events.capacity() * sizeof(Event), before, n);
      for (const Event& e : events) benchmark::DoNotOptimize(rule->Push(e.row, e.ts));
    }
    const size_t after = HeapInUse();
    state.counters["bytes_per_key"] = PerItem(after, before, static_cast<size_t>(keys));
    state.counters["bytes_per_event"] = PerItem(after, before, n);
    if (rule->counters().exceptions != 0) state.SkipWithError("the rule had exceptions");
  }
}
BENCHMARK_CAPTURE(BM_OpenWindowBytes, tumbling_avg, kTumblingAvgSql)
    ->ArgNames({"keys", "events_per_key"})
    ->Args({10'000, 1})
    ->Args({100'000, 1})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_OpenWindowBytes, tumbling_median, kTumblingMedianSql)
    ->ArgNames({"keys", "events_per_key"})
    ->Args({10'000, 10})
    ->Args({100'000, 10})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_OpenWindowBytes, zscore_partition, kZscoreSql)
    ->ArgNames({"keys", "events_per_key"})
    ->Args({10'000, 60})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace verge::rules
