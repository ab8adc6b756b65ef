#include "node/data/ingestor.h"

namespace verge::data {

Ingestor::Ingestor(UplinkBuffer& buffer, SeriesStore* series, const Clock& clock,
                   std::function<void()> on_append)
    : buffer_(buffer), clock_(clock), on_append_(std::move(on_append)) {
  if (series) cleaner_.set_seen_before([series](const Reading& r) { return series->Contains(r); });
}

Status Ingestor::SetSchemas(std::vector<DeviceSchema> schemas) {
  std::lock_guard lock(mu_);
  return cleaner_.SetSchemas(std::move(schemas));
}

Result<IngestReport> Ingestor::Store(std::vector<Reading>& readings,
                                     std::vector<Rejection> rejected) {
  IngestReport report;
  report.rejected = std::move(rejected);
  if (!readings.empty()) {
    auto appended = buffer_.Append(readings);
    if (!appended.ok()) {
      cleaner_.Forget(readings);
      ++store_errors_;
      return Error(Code::kUnavailable, "cannot store readings: {}", appended.status().message());
    }
  }
  report.accepted = readings.size();
  return report;
}

Result<IngestReport> Ingestor::IngestPayload(std::string_view device, std::string_view body,
                                             Framing framing) {
  Result<IngestReport> result = IngestReport{};
  {
    std::lock_guard lock(mu_);
    ++payloads_;
    ParseOptions opts;
    opts.default_device = device;
    opts.now_ns = clock_.WallMs() * 1'000'000;
    scratch_.Clear();
    if (auto st = parser_.Parse(body, framing, opts, scratch_); !st.ok()) {
      ++malformed_;
      return st;
    }
    cleaner_.Clean(scratch_);
    result = Store(scratch_.readings, std::move(scratch_.rejected));
  }
  if (result.ok() && result->accepted > 0 && on_append_) on_append_();
  return result;
}

Result<IngestReport> Ingestor::IngestReadings(std::vector<Reading> readings) {
  Result<IngestReport> result = IngestReport{};
  {
    std::lock_guard lock(mu_);
    std::vector<Rejection> rejected;
    cleaner_.Clean(readings, rejected);
    result = Store(readings, std::move(rejected));
  }
  if (result.ok() && result->accepted > 0 && on_append_) on_append_();
  return result;
}

IngestStats Ingestor::stats() const {
  std::lock_guard lock(mu_);
  IngestStats s;
  s.parse = parser_.counters();
  s.clean = cleaner_.counters();
  s.payloads = payloads_;
  s.malformed = malformed_;
  s.store_errors = store_errors_;
  return s;
}

}  // namespace verge::data
