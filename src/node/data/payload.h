// Device payloads: turns the body of an HTTP `POST /data` or an MQTT telemetry message into
// Readings, and everything it cannot use into Rejections with a reason the device's developer
// can act on. This is the first stage of the node's data path; the Cleaner (clean.h) is the
// second, and shares the RejectReason vocabulary and counters defined here.
//
// Accepted bodies (`Framing`):
//   kJson    one object, or an array of objects;
//   kNdjson  one object per line ("\n" or "\r\n"); blank lines are skipped but still counted,
//            so that Rejection::item is always the line number minus one.
// An object is either
//   {"device_id": "d1", "timestamp": T, "value": 21.5}                 metric "value", or
//   {"device_id": "d1", "timestamp": T, "metric": "temp", "value": 21.5}, or
//   {"device_id": "d1", "timestamp": T, "metrics": {"temp": 21.5, "hum": 40}}  one per metric.
// Other keys are ignored (firmware adds its own, e.g. "seq"), but must still be valid JSON.
// A key given twice rejects the item.
//   device_id  optional when the caller knows the device (ParseOptions::default_device, e.g. the
//              MQTT topic devices/<dev>/telemetry); when both are given they must be equal.
//   values     JSON numbers; true/false become 1/0; strings, null, objects and arrays are
//              rejected, as is a number beyond the range of a double (1e999 is not infinity).
//   T          absent: ParseOptions::now_ns. A number: Unix time whose unit follows from its
//              magnitude: |T| < 1e11 seconds, < 1e14 milliseconds, < 1e17 microseconds,
//              otherwise nanoseconds (fractions allowed in every unit, rounded to the nearest
//              nanosecond). A string: RFC 3339 (see verge::ParseRfc3339). Timestamps before
//              2000-01-01T00:00:00Z, or later than now_ns + max_future_ns, are rejected.
//   names      device and metric names are 1..64 characters of [A-Za-z0-9_.:-].
//
// A bad item never blocks the good items next to it: it becomes a Rejection and parsing goes
// on. The exceptions are a kJson body that is not valid JSON as a whole, which fails Parse()
// with "malformed JSON at byte N: ...", and items past ParseOptions::max_items, which are
// dropped with one kTooMany rejection.
//
// Thread-safety: PayloadParser is not thread-safe (it owns simdjson's buffers, reused across
// calls so that parsing does not allocate once warm; they grow to the largest body seen); use
// one per ingest thread. The free functions are thread-safe.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "common/timestamp.h"
#include "node/data/reading.h"

namespace verge::data {

// Why a reading or an item was not accepted. The first group is decided by the parser, the rest
// by the Cleaner. Values are stable: they index counters.
enum class RejectReason : uint8_t {
  kMalformed,      // not JSON, not an object, no value, a key twice, ...
  kMissingDevice,  // no device_id and no default device
  kWrongDevice,    // device_id differs from the device the caller authenticated
  kBadName,        // device or metric name empty, too long or with a forbidden character
  kBadValue,       // not a number/boolean, out of double range, or not of the declared type
  kBadTimestamp,   // unparsable, before 2000, or too far in the future
  kTooMany,        // more items per body or metrics per item than allowed
  kOutOfRange,     // outside the declared min/max
  kUnknownDevice,  // device without a schema
  kUnknownMetric,  // metric the device's schema does not declare
  kDuplicate,      // (device, metric, timestamp) already accepted
  kBadUnit,        // the declared unit cannot be converted
};
inline constexpr size_t kNumRejectReasons = 12;

// Stable lower_snake name ("bad_timestamp"), used as a counter label and in HTTP responses.
std::string_view ReasonName(RejectReason reason);

struct Rejection {
  // Index of the item in the body: of the object in the array, or the NDJSON line number
  // minus one. Cleaner rejections carry the item of the reading they reject.
  size_t item = 0;
  std::string metric;  // empty when the whole item is rejected
  RejectReason reason = RejectReason::kMalformed;
  std::string message;

  bool operator==(const Rejection&) const = default;
};

// What a stage let through and what it rejected, by reason. Each stage counts only its own
// decisions, so the parser's and the Cleaner's counters add up without double counting.
struct IngestCounters {
  uint64_t accepted = 0;
  std::array<uint64_t, kNumRejectReasons> rejected{};

  uint64_t& operator[](RejectReason r) { return rejected[static_cast<size_t>(r)]; }
  uint64_t operator[](RejectReason r) const { return rejected[static_cast<size_t>(r)]; }
  uint64_t total_rejected() const;
};

enum class Framing { kJson, kNdjson };

inline constexpr size_t kMaxNameLength = 64;
// Earliest timestamp accepted: 2000-01-01T00:00:00Z.
inline constexpr int64_t kMinTimestampNs = 946'684'800'000'000'000;

struct ParseOptions {
  // The device the caller has authenticated (MQTT topic, HTTP credentials); empty for none.
  // Items without device_id belong to it; items naming another device are rejected.
  std::string_view default_device;
  // REQUIRES: set. The timestamp of items without one, and the base of max_future_ns.
  int64_t now_ns = 0;
  // How far ahead of now_ns a timestamp may be (device clocks drift).
  int64_t max_future_ns = std::chrono::nanoseconds(std::chrono::minutes(5)).count();
  // Items (array elements, non-blank lines) per body; later ones are dropped.
  size_t max_items = 10'000;
  // Entries in one "metrics" object; an item with more is rejected whole.
  size_t max_metrics_per_item = 256;
};

struct ParseResult {
  std::vector<Reading> readings;
  // item_of[i] is the item readings[i] came from; the Cleaner keeps both in step.
  std::vector<uint32_t> item_of;
  std::vector<Rejection> rejected;

  // Empties the vectors, keeping their capacity.
  void Clear();
};

// True for a valid device or metric name: 1..kMaxNameLength characters of [A-Za-z0-9_.:-].
bool IsValidName(std::string_view name);

class PayloadParser {
 public:
  PayloadParser();
  ~PayloadParser();
  PayloadParser(const PayloadParser&) = delete;
  PayloadParser& operator=(const PayloadParser&) = delete;

  // Parses `body` into `out`, which is cleared first. Returns an error only for a kJson body
  // that is not JSON, or whose top level is neither an object nor an array; then `out` is
  // empty. Everything else is reported per item in out.rejected.
  Status Parse(std::string_view body, Framing framing, const ParseOptions& options,
               ParseResult& out);

  // readings produced, and rejections by reason; a failed Parse() counts one kMalformed.
  const IngestCounters& counters() const { return counters_; }

 private:
  struct Impl;  // keeps simdjson.h, a very large header, out of every includer
  std::unique_ptr<Impl> impl_;
  IngestCounters counters_;
};

}  // namespace verge::data
