// IngestSink: where every ingest path (HTTP /data, MQTT, Modbus) hands device data. An
// implementation parses, cleans and durably stores the readings before it returns, so that
// whatever a caller acknowledges to a device (a 2xx, a PUBACK) is already on the node's disk.
//
// Thread-safety: implementations are thread-safe; ingest paths call from their own threads.
#pragma once

#include <string_view>
#include <vector>

#include "common/status.h"
#include "node/data/payload.h"
#include "node/data/reading.h"

namespace verge::data {

struct IngestReport {
  size_t accepted = 0;
  std::vector<Rejection> rejected;
};

class IngestSink {
 public:
  virtual ~IngestSink() = default;

  // A payload sent by `device` (already authenticated by the caller). An error Status means
  // nothing was stored (malformed body, or the node's storage failed); otherwise the report
  // says what was stored and what was rejected and why.
  virtual Result<IngestReport> IngestPayload(std::string_view device, std::string_view body,
                                             Framing framing) = 0;

  // Readings produced by the node itself (the Modbus poller), already typed.
  virtual Result<IngestReport> IngestReadings(std::vector<Reading> readings) = 0;
};

}  // namespace verge::data
