// Uplink batches from untrusted nodes: arbitrary bytes as an UplinkBatch (or, when they do not
// parse as one, as the uncompressed ReadingBatch inside one) through the cloud's decoder and
// validator, staged and decoded again as compaction does, then through the chunk encoder,
// checking that the chunks hold, sorted and on the hour grid, exactly the readings that went in.
// The same bytes also go to the chunk decoder as a stored blob, and through the alert decoder.
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "cloud/alerts.h"
#include "cloud/telemetry_codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace verge::cloud;
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  verge::v1::UplinkBatch batch;
  if (!batch.ParseFromArray(data, static_cast<int>(size))) {
    batch.Clear();
    batch.set_seq(1);
    batch.set_codec(verge::v1::CODEC_NONE);
    batch.set_data(std::string(bytes));
    verge::v1::ReadingBatch rb;
    if (rb.ParseFromArray(data, static_cast<int>(size))) {
      uint32_t n = 0;
      for (const auto& s : rb.series())
        n += static_cast<uint32_t>(s.values_size() + s.decimal_values_size());
      batch.set_count(n);
    }
  }
  // The same batch as alerts: decoded and validated, or refused, never a crash.
  {
    verge::v1::UplinkBatch alerts = batch;
    alerts.set_content(verge::v1::BATCH_ALERTS);
    (void)DecodeAlertBatch(alerts, "fuzz-node", 0);
  }
  // And as node events: every event the cloud keeps has a dotted type and a bounded message.
  {
    verge::v1::UplinkBatch events = batch;
    events.set_content(verge::v1::BATCH_EVENTS);
    verge::v1::NodeEventBatch eb;
    if (eb.ParseFromArray(data, static_cast<int>(size)))
      events.set_count(static_cast<uint32_t>(eb.events_size()));
    auto decoded = DecodeNodeEventBatch(events, "fuzz-node");
    if (decoded.ok()) {
      for (const auto& e : *decoded) {
        if (e.type.find('.') == std::string::npos ||
            e.message.size() > verge::cloud::kMaxNodeEventMessageBytes)
          std::abort();
      }
    }
  }
  // A small cap keeps each run fast; the real cap only changes where the refusal starts.
  auto decoded = DecodeUplink(batch, size_t{4} << 20);
  if (decoded.ok()) {
    // Staged as received, decoded again for compaction: the same readings.
    auto staged = StageUplink("fuzz-node", verge::v1::UplinkBatch(batch), *decoded);
    auto again = DecodeStaged(staged);
    if (!again.ok() || again->count != decoded->count || again->min_ts != decoded->min_ts ||
        again->max_ts != decoded->max_ts) {
      std::abort();
    }
    uint64_t total = 0;
    for (const auto& c : MakeChunks("fuzz-node", std::move(again->series))) {
      std::vector<int64_t> ts;
      std::vector<double> values;
      if (!verge::DecodeChunk(c.data, ts, values).ok()) std::abort();
      if (ts.size() != c.count || ts.front() != c.start_ts || ts.back() != c.end_ts) std::abort();
      if (verge::ChunkBucket(c.start_ts) != verge::ChunkBucket(c.end_ts)) std::abort();
      for (size_t i = 1; i < ts.size(); ++i) {
        if (ts[i] < ts[i - 1]) std::abort();
      }
      for (double v : values) {
        if (!std::isfinite(v)) std::abort();
      }
      total += ts.size();
    }
    if (total != decoded->count) std::abort();
  }
  std::vector<int64_t> ts;
  std::vector<double> values;
  (void)verge::DecodeChunk(bytes, ts, values);
  return 0;
}
