#include "node/data/codec.h"

#include <unordered_map>

#include "common/reading_batch.h"
#include "verge/v1/link.pb.h"

namespace verge::data {

namespace {

struct PairHash {
  size_t operator()(const std::pair<uint32_t, uint32_t>& p) const noexcept {
    return std::hash<uint64_t>()((static_cast<uint64_t>(p.first) << 32) | p.second);
  }
};

uint32_t Intern(std::unordered_map<std::string_view, uint32_t>& index,
                google::protobuf::RepeatedPtrField<std::string>* names, const std::string& name) {
  auto [it, added] = index.try_emplace(name, static_cast<uint32_t>(names->size()));
  if (added) names->Add()->assign(name);
  return it->second;
}

}  // namespace

std::string EncodeReadings(std::span<const Reading> readings, ReadingsEncoding encoding) {
  v1::ReadingBatch batch;
  if (readings.empty()) return batch.SerializeAsString();
  const int64_t base = readings.front().ts_ns;
  batch.set_base_ts_ns(base);
  std::unordered_map<std::string_view, uint32_t> devices, metrics;
  std::unordered_map<std::pair<uint32_t, uint32_t>, int, PairHash> series_index;
  std::vector<int64_t> last_ts;
  for (const Reading& r : readings) {
    uint32_t d = Intern(devices, batch.mutable_devices(), r.device);
    uint32_t m = Intern(metrics, batch.mutable_metrics(), r.metric);
    auto [it, added] = series_index.try_emplace({d, m}, batch.series_size());
    v1::ReadingBatch::Series* s;
    if (added) {
      s = batch.add_series();
      s->set_device(d);
      s->set_metric(m);
      last_ts.push_back(base);
    } else {
      s = batch.mutable_series(it->second);
    }
    int64_t& prev = last_ts[static_cast<size_t>(it->second)];
    // Computed wrapping, so no int64 pair is undefined behaviour here; timestamps the node
    // accepts (2000 onwards) never make a sum that SeriesTimestamps refuses.
    s->add_ts_delta_ns(
        static_cast<int64_t>(static_cast<uint64_t>(r.ts_ns) - static_cast<uint64_t>(prev)));
    prev = r.ts_ns;
    s->add_values(r.value);
  }
  if (encoding == ReadingsEncoding::kCompact) {
    std::vector<double> values;
    for (auto& s : *batch.mutable_series()) {
      values.assign(s.values().begin(), s.values().end());
      SetSeriesValues(values, s);
    }
  }
  return batch.SerializeAsString();
}

Result<std::vector<Reading>> DecodeReadings(std::string_view bytes) {
  v1::ReadingBatch batch;
  if (!batch.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())))
    return Error(Code::kDataLoss, "reading batch does not parse");
  std::vector<Reading> out;
  size_t total = 0;
  for (const auto& s : batch.series())
    total += static_cast<size_t>(s.values_size() + s.decimal_values_size());
  out.reserve(total);
  std::vector<int64_t> ts;
  std::vector<double> values;
  for (int i = 0; i < batch.series_size(); ++i) {
    Status st = SeriesTimestamps(batch, i, ts);
    if (st.ok()) st = SeriesValues(batch, i, values);
    if (!st.ok()) return Error(Code::kDataLoss, "reading batch is damaged: {}", st.message());
    const auto& s = batch.series(i);
    const std::string& device = batch.devices(static_cast<int>(s.device()));
    const std::string& metric = batch.metrics(static_cast<int>(s.metric()));
    for (size_t k = 0; k < values.size(); ++k) {
      out.push_back(Reading{device, metric, ts[k], values[k]});
    }
  }
  return out;
}

}  // namespace verge::data
