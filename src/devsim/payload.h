// What verge-devsim's HTTP and MQTT devices send: the device list (names and tokens), the
// readings each device produces (round-robin over its metrics, values from Signals), and the
// payload encodings, in the form the node's PayloadParser (node/data/payload.h) reads: one
// reading per object, `timestamp` in Unix milliseconds:
//   json:   [{"metric":"temperature","value":21.53,"timestamp":1763762729123}, ...]
//   ndjson: {"metric":"temperature","value":21.53,"timestamp":1763762729123}\n...
// No device_id: the token (HTTP) or the MQTT username and topic name the device.
//
// Thread-safety: plain values; a ReadingSource is used by one thread at a time.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "devsim/signal.h"
#include "node/data/reading.h"

namespace verge::devsim {

struct DeviceCred {
  std::string name;
  std::string token;
  bool operator==(const DeviceCred&) const = default;
};

// "NAME=TOKEN" (the token may contain '=').
Result<DeviceCred> ParseDeviceFlag(std::string_view text);

// A file of devices as `vergectl devices add -o json` prints them: a JSON array of objects
// with "name" and "token" (other keys ignored), or such objects one after another (several
// outputs appended to one file).
Result<std::vector<DeviceCred>> ParseDevicesJson(std::string_view text);

// Metric names go into payloads unescaped, and the node accepts 1..64 characters of
// [A-Za-z0-9_.:-].
Status ValidateMetricName(std::string_view metric);

enum class PayloadFormat { kJson, kNdjson };
Result<PayloadFormat> ParsePayloadFormat(std::string_view text);
std::string_view ContentType(PayloadFormat format);
// Values are rounded to 4 decimals: what a sensor reports, and short on the wire.
std::string FormatPayload(const std::vector<data::Reading>& readings, PayloadFormat format);

class ReadingSource {
 public:
  // `reading_interval_s`: simulated time between two readings of the device; metric k is
  // sampled every metrics.size() readings. Signals are seeded by DeriveSeed(seed,
  // "<device>/<metric>").
  ReadingSource(std::string device, const std::vector<std::string>& metrics, uint64_t seed,
                double reading_interval_s);

  // The next `n` readings, stamped `ts_ns`.
  std::vector<data::Reading> Next(size_t n, int64_t ts_ns);
  // The next `n` readings, the k-th stamped first_ts_ns + k * step_ns (the simulated clock).
  std::vector<data::Reading> NextAt(size_t n, int64_t first_ts_ns, int64_t step_ns);

 private:
  std::string device_;
  std::vector<Signal> signals_;
  double dt_s_;
  size_t next_ = 0;
};

}  // namespace verge::devsim
