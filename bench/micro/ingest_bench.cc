// Micro-benchmarks of the node's ingest path apart from the network: PayloadParser::Parse and
// Cleaner::Clean on bodies of 1,000 readings, as NDJSON and as a JSON array. The bodies mix
// what field devices send: "metrics" objects with epoch-millisecond timestamps, single values
// named by "metric" with RFC 3339 timestamps, and plain "value"s with fractional epoch
// seconds; 50 devices with realistic names; schemas with unit conversions and bounds.
// items_per_second counts readings.
//
// Every iteration gets fresh timestamps (built while the timer is paused), so the Cleaner's
// duplicate detection sees new data as it would in steady state instead of rejecting replays.
//
// Threading: single-threaded (Google Benchmark's main thread).
#include <benchmark/benchmark.h>
#include <fmt/chrono.h>
#include <fmt/format.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "node/data/clean.h"
#include "node/data/payload.h"

namespace verge::data {
namespace {

constexpr int kDevices = 50;
constexpr int kReadingsPerBody = 1000;
constexpr int64_t kMs = 1'000'000;
constexpr int64_t kStartNs = 1'795'251'600'000'000'000;  // 2026-11-21T09:00:00Z

std::string DeviceName(int i) { return fmt::format("plant-3.line-{}.press-{:03}", i % 4, i); }

std::vector<DeviceSchema> Schemas() {
  std::vector<DeviceSchema> schemas;
  for (int i = 0; i < kDevices; ++i) {
    schemas.push_back({DeviceName(i),
                       {{"temp", MetricType::kFloat, -40, 300, "degF"},
                        {"pressure", MetricType::kFloat, 0, 2e6, "bar"},
                        {"running", MetricType::kBool, std::nullopt, std::nullopt, ""},
                        {"rpm", MetricType::kFloat, 0, 10'000, ""}},
                       /*allow_undeclared=*/true});
  }
  return schemas;
}

// 1,000 readings in 600 items: 200 "metrics" objects of 3, 200 named values, 200 plain values.
// Item i is `base_ns` + i ms.
std::string Body(Framing framing, int64_t base_ns) {
  std::string body;
  body.reserve(128 * kReadingsPerBody);
  if (framing == Framing::kJson) body += '[';
  for (int i = 0; i < 600; ++i) {
    int64_t ts = base_ns + i * kMs;
    std::string device = DeviceName(i % kDevices);
    if (framing == Framing::kJson && i > 0) body += ',';
    switch (i % 3) {
      case 0:
        fmt::format_to(std::back_inserter(body),
                       R"({{"device_id":"{}","timestamp":{},"metrics":{{"temp":{:.1f},)"
                       R"("pressure":{:.3f},"running":{}}}}})",
                       device, ts / kMs, 70 + i % 50 * 0.1, 1.013 + i % 7 * 0.01,
                       i % 2 == 0 ? "true" : "false");
        break;
      case 1: {
        auto seconds = std::chrono::sys_seconds(std::chrono::seconds(ts / 1'000'000'000));
        fmt::format_to(std::back_inserter(body),
                       R"({{"device_id":"{}","metric":"rpm","value":{},)"
                       R"("timestamp":"{:%FT%T}.{:03}Z"}})",
                       device, 1400 + i % 100, seconds, ts / kMs % 1000);
        break;
      }
      default:
        fmt::format_to(std::back_inserter(body),
                       R"({{"device_id":"{}","value":{:.2f},"timestamp":{:.3f},"seq":{}}})", device,
                       230 + i % 10 * 0.5, static_cast<double>(ts) / 1e9, i);
    }
    if (framing == Framing::kNdjson) body += '\n';
  }
  if (framing == Framing::kJson) body += ']';
  return body;
}

ParseOptions OptionsAt(int64_t base_ns) {
  ParseOptions o;
  o.now_ns = base_ns + 3'600'000 * kMs;
  return o;
}

// Parsing alone: no duplicate detection, so one body serves every iteration.
void BM_Parse(benchmark::State& state, Framing framing) {
  const std::string body = Body(framing, kStartNs);
  PayloadParser parser;
  ParseResult out;
  size_t readings = 0;
  for (auto _ : state) {
    Status st = parser.Parse(body, framing, OptionsAt(kStartNs), out);
    benchmark::DoNotOptimize(st);
    readings += out.readings.size();
  }
  if (out.readings.size() != kReadingsPerBody || !out.rejected.empty()) {
    state.SkipWithError("the body did not parse into 1000 readings");
  }
  state.SetItemsProcessed(static_cast<int64_t>(readings));
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(body.size()));
}
BENCHMARK_CAPTURE(BM_Parse, ndjson, Framing::kNdjson);
BENCHMARK_CAPTURE(BM_Parse, json_array, Framing::kJson);

// The ingest stage as the HTTP and MQTT handlers run it: parse, then clean.
void BM_ParseAndClean(benchmark::State& state, Framing framing) {
  PayloadParser parser;
  Cleaner cleaner;
  if (!cleaner.SetSchemas(Schemas()).ok()) state.SkipWithError("bad schemas");
  ParseResult out;
  size_t readings = 0, bytes = 0, rejected = 0;
  int64_t base = kStartNs;
  for (auto _ : state) {
    state.PauseTiming();
    base += 10'000 * kMs;  // later than the previous body's last item
    std::string body = Body(framing, base);
    ParseOptions options = OptionsAt(base);
    state.ResumeTiming();
    Status st = parser.Parse(body, framing, options, out);
    cleaner.Clean(out);
    benchmark::DoNotOptimize(st);
    readings += out.readings.size();
    rejected += out.rejected.size();
    bytes += body.size();
  }
  if (rejected != 0) state.SkipWithError("readings were rejected");
  state.SetItemsProcessed(static_cast<int64_t>(readings));
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
}
BENCHMARK_CAPTURE(BM_ParseAndClean, ndjson, Framing::kNdjson);
BENCHMARK_CAPTURE(BM_ParseAndClean, json_array, Framing::kJson);

// Cleaning alone, on already parsed readings moved forward in time each iteration.
void BM_Clean(benchmark::State& state) {
  PayloadParser parser;
  ParseResult parsed;
  if (!parser.Parse(Body(Framing::kNdjson, kStartNs), Framing::kNdjson, OptionsAt(kStartNs), parsed)
           .ok()) {
    state.SkipWithError("parse failed");
  }
  Cleaner cleaner;
  if (!cleaner.SetSchemas(Schemas()).ok()) state.SkipWithError("bad schemas");
  ParseResult batch;
  size_t readings = 0;
  int64_t shift = 0;
  for (auto _ : state) {
    state.PauseTiming();
    shift += 10'000 * kMs;
    batch.readings = parsed.readings;
    batch.item_of = parsed.item_of;
    batch.rejected.clear();
    for (Reading& r : batch.readings) r.ts_ns += shift;
    state.ResumeTiming();
    cleaner.Clean(batch);
    readings += batch.readings.size();
  }
  if (readings != static_cast<size_t>(state.iterations()) * kReadingsPerBody) {
    state.SkipWithError("readings were rejected");
  }
  state.SetItemsProcessed(static_cast<int64_t>(readings));
}
BENCHMARK(BM_Clean);

}  // namespace
}  // namespace verge::data
