// Cleaner: the second stage of the node's data path, between parsing (payload.h) and the
// streaming rules. It checks each Reading against the schema of its device (declared metrics,
// type, range), converts values into canonical units (units.h), and drops readings it has
// already accepted, turning every refusal into a Rejection with a reason.
//
// Order of checks for one reading, first failure wins:
//   1. the device has a schema (or allow_unknown_devices)         else kUnknownDevice
//   2. the metric is declared, or the schema allows undeclared ones  else kUnknownMetric
//   3. names not vouched for by a schema are valid                 else kBadName
//   4. the value is finite (Modbus can produce NaN; JSON cannot)   else kBadValue
//   5. the metric's declared spec is usable (see SetSchemas)       else kBadUnit / kOutOfRange
//   6. type, on the value as sent: kInt integral, kBool 0 or 1     else kBadValue
//   7. conversion into the canonical unit gives a finite value     else kBadValue
//   8. min/max, which are declared in the CANONICAL unit and checked after conversion, so a
//      schema says "max 100" in degC whatever unit its devices send   else kOutOfRange
//   9. not a duplicate of an accepted (device, metric, ts_ns)      else kDuplicate
// Accepted readings leave with their value in the canonical unit.
//
// Duplicates. Per series (device, metric) the Cleaner remembers its latest accepted timestamps: at
// most `dedupe_window`, and at least half of that once it has seen that many (it forgets the oldest
// half at a time, which keeps insertion amortised O(1) for in-order data). The check is exact for
// every timestamp at or after the oldest one remembered, including duplicates inside one batch. A
// timestamp older than everything remembered (or any timestamp of a series with nothing remembered
// yet, as after a restart) is checked with the `seen_before` callback, which the local time-series
// store answers; without a callback it is accepted. (So a reading stored before a restart is missed
// only if it is newer than the first reading accepted after it, which needs a device that replays
// out of order.) At most `max_series` series are remembered; past that the least recently used
// series is forgotten, so a later duplicate of its readings is caught only by `seen_before`. Memory
// is bounded by max_series * dedupe_window * 8 bytes plus per-series overhead (about 20 MB at the
// defaults).
//
// Thread-safety: not thread-safe; use one Cleaner per ingest thread, or guard it.
#pragma once

#include <cstdint>
#include <functional>
#include <list>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "node/data/payload.h"
#include "node/data/reading.h"
#include "node/data/units.h"

namespace verge::data {

enum class MetricType { kFloat, kInt, kBool };

struct MetricSpec {
  std::string name;
  MetricType type = MetricType::kFloat;
  std::optional<double> min, max;  // in the canonical unit of `unit`
  std::string unit;                // the unit the device sends; empty = none
};

struct DeviceSchema {
  std::string device;
  std::vector<MetricSpec> metrics;
  bool allow_undeclared = true;  // accept metrics not in `metrics`, unchecked
};

// Checks one schema: valid device and metric names, no metric twice, finite bounds with
// min <= max, units the table knows, no unit on a kBool metric. Returns every problem in one
// error, or Ok. No side effects.
Status ValidateSchema(const DeviceSchema& schema, const UnitTable& units);

struct CleanerOptions {
  // Accept readings of devices without a schema (only names and duplicates are checked)
  // instead of rejecting them with kUnknownDevice.
  bool allow_unknown_devices = false;
  // Timestamps remembered per series for duplicate detection; at least 2.
  size_t dedupe_window = 256;
  // Series remembered for duplicate detection; at least 1.
  size_t max_series = 10'000;
};

class Cleaner {
 public:
  explicit Cleaner(UnitTable units = UnitTable::Defaults(), CleanerOptions options = {});

  // Replaces every schema. Returns the problems ValidateSchema finds in each schema, plus
  // devices given twice, all at once; a caller loading local config at start-up should treat
  // that as fatal. Schemas pushed from the cloud cannot be fixed here, so what is usable is
  // installed anyway and the rest rejects data visibly instead of letting it through
  // unchecked: a schema with an invalid or repeated device name is dropped (the first of a
  // repeated name stays), as is a metric with an invalid or repeated name; a metric whose unit
  // is unknown (or set on a kBool) rejects its readings with kBadUnit, one with unusable bounds
  // with kOutOfRange. The duplicate-detection memory is kept.
  Status SetSchemas(std::vector<DeviceSchema> schemas);

  // Answers whether the store already holds a reading with this device, metric and ts_ns; asked
  // only for timestamps older than the in-memory window (see above). Its `value` is canonical.
  void set_seen_before(std::function<bool(const Reading&)> seen_before) {
    seen_before_ = std::move(seen_before);
  }

  // Filters batch.readings in place, keeping the order of what it accepts, and appends a
  // Rejection for each reading it drops. REQUIRES: batch.item_of is empty or parallel to
  // batch.readings; it is filtered alongside and gives each Rejection its item (the reading's
  // index when item_of is empty).
  void Clean(ParseResult& batch);

  // The same for producers without items (Modbus polls): a Rejection's item is the index the
  // reading had in `in_out` on entry.
  void Clean(std::vector<Reading>& in_out, std::vector<Rejection>& rejected);

  // Takes back the acceptance of readings that could not be stored after all, so that the
  // device's retry is not refused as a duplicate. Counters are adjusted too.
  void Forget(std::span<const Reading> readings);

  // Readings accepted and rejections by reason, since construction.
  const IngestCounters& counters() const { return counters_; }
  // Series currently remembered for duplicate detection.
  size_t tracked_series() const { return series_.size(); }

 private:
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  struct CompiledMetric {
    MetricType type = MetricType::kFloat;
    double min, max;  // +-infinity when not declared
    UnitConversion conversion;
    std::string unit;                    // as declared, for messages
    std::optional<RejectReason> broken;  // why the spec is unusable
    std::string broken_message;
  };
  struct CompiledDevice {
    bool allow_undeclared = true;
    std::unordered_map<std::string, CompiledMetric, Hash, std::equal_to<>> metrics;
  };
  struct Series {
    std::string key;
    std::vector<int64_t> ts;  // ascending, never empty
    // Set once the oldest timestamps have been forgotten: from then on only "every accepted
    // ts >= ts.front() is in ts" holds, so nothing older may be added.
    bool trimmed = false;
  };
  using SeriesList = std::list<Series>;

  void CleanSpan(std::vector<Reading>& readings, std::vector<uint32_t>* item_of,
                 std::vector<Rejection>& rejected);
  // Checks one reading, converting its value; nullopt when it is accepted.
  std::optional<Rejection> Check(Reading& r);
  const CompiledDevice* FindDevice(std::string_view device);
  // True if `r` was accepted before; otherwise remembers it as accepted.
  bool SeenOrRemember(const Reading& r);

  UnitTable units_;
  CleanerOptions options_;
  std::function<bool(const Reading&)> seen_before_;
  std::unordered_map<std::string, CompiledDevice, Hash, std::equal_to<>> devices_;
  // One-entry cache: a batch usually holds one device.
  std::string last_device_name_;
  const CompiledDevice* last_device_ = nullptr;
  bool last_device_valid_ = false;

  SeriesList lru_;  // most recently used first
  std::unordered_map<std::string_view, SeriesList::iterator, Hash, std::equal_to<>>
      series_;       // keys view Series::key, stable in a list node
  std::string key_;  // scratch for a series key

  IngestCounters counters_;
};

}  // namespace verge::data
