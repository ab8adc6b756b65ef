#include "common/reading_batch.h"

namespace verge {

Status SeriesTimestamps(const v1::ReadingBatch& batch, int i, std::vector<int64_t>& ts) {
  const auto& s = batch.series(i);
  if (s.device() >= static_cast<uint32_t>(batch.devices_size())) {
    return Error(Code::kInvalidArgument, "series {}: device index {} out of range ({} devices)", i,
                 s.device(), batch.devices_size());
  }
  if (s.metric() >= static_cast<uint32_t>(batch.metrics_size())) {
    return Error(Code::kInvalidArgument, "series {}: metric index {} out of range ({} metrics)", i,
                 s.metric(), batch.metrics_size());
  }
  if (s.ts_delta_ns_size() != s.values_size()) {
    return Error(Code::kInvalidArgument, "series {}: {} timestamps but {} values", i,
                 s.ts_delta_ns_size(), s.values_size());
  }
  ts.clear();
  ts.reserve(static_cast<size_t>(s.ts_delta_ns_size()));
  int64_t t = 0;
  for (int k = 0; k < s.ts_delta_ns_size(); ++k) {
    if (__builtin_add_overflow(t, s.ts_delta_ns(k), &t)) {
      return Error(Code::kInvalidArgument, "series {}: timestamp {} overflows", i, k);
    }
    ts.push_back(t);
  }
  return Status::Ok();
}

}  // namespace verge
