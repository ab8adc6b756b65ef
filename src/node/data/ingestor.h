// Ingestor: the node's IngestSink. Parses a payload, cleans it against the device schemas of
// the current desired state, and appends what it accepts to the durable journal before it
// returns; then wakes the pipeline. Readings that could not be stored (disk full) are taken
// back from the duplicate window, so the device's retry is accepted.
//
// Thread-safety: thread-safe. Parsing and cleaning are serialised (one parser, one cleaner);
// the journal append takes the buffer's own lock.
#pragma once

#include <mutex>

#include "common/clock.h"
#include "node/data/buffer.h"
#include "node/data/clean.h"
#include "node/data/ingest.h"
#include "node/data/payload.h"
#include "node/data/series.h"

namespace verge::data {

struct IngestStats {
  IngestCounters parse;
  IngestCounters clean;
  uint64_t payloads = 0;
  uint64_t malformed = 0;
  uint64_t store_errors = 0;
};

class Ingestor final : public IngestSink {
 public:
  // `series` answers duplicate checks older than the cleaner's window; may be null.
  Ingestor(UplinkBuffer& buffer, SeriesStore* series, const Clock& clock,
           std::function<void()> on_append);

  // Installs what it can and reports every problem at once (see Cleaner::SetSchemas).
  Status SetSchemas(std::vector<DeviceSchema> schemas);

  Result<IngestReport> IngestPayload(std::string_view device, std::string_view body,
                                     Framing framing) override;
  Result<IngestReport> IngestReadings(std::vector<Reading> readings) override;

  IngestStats stats() const;

 private:
  Result<IngestReport> Store(std::vector<Reading>& readings, std::vector<Rejection> rejected);

  UplinkBuffer& buffer_;
  const Clock& clock_;
  std::function<void()> on_append_;
  mutable std::mutex mu_;
  PayloadParser parser_;                                      // GUARDED_BY(mu_)
  Cleaner cleaner_;                                           // GUARDED_BY(mu_)
  ParseResult scratch_;                                       // GUARDED_BY(mu_)
  uint64_t payloads_ = 0, malformed_ = 0, store_errors_ = 0;  // GUARDED_BY(mu_)
};

}  // namespace verge::data
