// Device payloads: arbitrary bytes through both framings and then the cleaner, plus arbitrary
// Readings (any names, NaN, infinities) straight into a cleaner, as Modbus would hand them over.
// Checks the invariants callers rely on, not only the absence of crashes.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <vector>

#include "node/data/clean.h"
#include "node/data/payload.h"

namespace verge::data {
namespace {

constexpr int64_t kNow = 1'795'255'200'000'000'000;  // 2026-11-21T10:00:00Z

void Check(bool ok) {
  if (!ok) std::abort();
}

// Long-lived like the node's, with little memory so that millions of runs stay bounded.
Cleaner* MakeCleaner(bool allow_unknown_devices) {
  CleanerOptions options;
  options.dedupe_window = 8;
  options.max_series = 64;
  options.allow_unknown_devices = allow_unknown_devices;
  auto* c = new Cleaner(UnitTable::Defaults(), options);
  (void)c->SetSchemas({
      {"d1",
       {{"temp", MetricType::kFloat, -40, 100, "degF"},
        {"count", MetricType::kInt, 0, std::nullopt, ""},
        {"on", MetricType::kBool, std::nullopt, std::nullopt, ""},
        {"p", MetricType::kFloat, std::nullopt, std::nullopt, "furlong"}},
       false},
      {"d2", {}, true},
  });
  c->set_seen_before([](const Reading& r) { return r.ts_ns % 3 == 0; });
  return c;
}

void CheckParsed(const ParseResult& r, std::string_view default_device) {
  Check(r.readings.size() == r.item_of.size());
  for (const Reading& reading : r.readings) {
    Check(IsValidName(reading.device) && IsValidName(reading.metric));
    Check(default_device.empty() || reading.device == default_device);
    Check(reading.ts_ns >= kMinTimestampNs);
    Check(reading.ts_ns <= kNow + ParseOptions().max_future_ns);
    Check(std::isfinite(reading.value));
  }
  for (const Rejection& j : r.rejected) Check(!j.message.empty());
}

void CheckCleaned(const std::vector<Reading>& readings, size_t before,
                  const std::vector<Rejection>& rejected) {
  Check(readings.size() + rejected.size() == before);
  for (const Reading& r : readings) Check(std::isfinite(r.value));
}

void FuzzParseAndClean(std::string_view body, uint8_t flags) {
  static PayloadParser parser;
  static Cleaner* cleaner = MakeCleaner(false);
  ParseOptions options;
  options.now_ns = kNow;
  options.default_device = (flags & 1) != 0 ? "d1" : "";
  options.max_items = (flags & 2) != 0 ? 3 : 10'000;
  options.max_metrics_per_item = (flags & 4) != 0 ? 2 : 256;
  for (Framing framing : {Framing::kJson, Framing::kNdjson}) {
    ParseResult result;
    Status st = parser.Parse(body, framing, options, result);
    if (!st.ok()) {
      Check(framing == Framing::kJson);
      Check(result.readings.empty() && result.rejected.empty());
      continue;
    }
    CheckParsed(result, options.default_device);
    size_t before = result.readings.size();
    size_t rejected_before = result.rejected.size();
    cleaner->Clean(result);
    Check(result.readings.size() == result.item_of.size());
    Check(result.readings.size() + result.rejected.size() - rejected_before == before);
  }
}

// Every 24 bytes make a reading: 4 of device, 4 of metric, 8 of timestamp, 8 of value.
void FuzzCleanReadings(std::string_view bytes) {
  static Cleaner* cleaner = MakeCleaner(true);
  std::vector<Reading> readings;
  for (size_t i = 0; i + 24 <= bytes.size(); i += 24) {
    Reading r;
    r.device.assign(bytes.substr(i, bytes[i] & 3));  // short names collide, exercising dedupe
    r.metric.assign(bytes.substr(i + 4, bytes[i + 4] & 3));
    std::memcpy(&r.ts_ns, bytes.data() + i + 8, 8);
    std::memcpy(&r.value, bytes.data() + i + 16, 8);
    readings.push_back(std::move(r));
  }
  std::vector<Rejection> rejected;
  size_t before = readings.size();
  cleaner->Clean(readings, rejected);
  CheckCleaned(readings, before, rejected);
}

}  // namespace
}  // namespace verge::data

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  // The first byte varies the options without costing the body much.
  verge::data::FuzzParseAndClean(bytes, size > 0 ? data[0] : 0);
  verge::data::FuzzCleanReadings(bytes);
  (void)verge::ParseRfc3339(bytes);
  return 0;
}
