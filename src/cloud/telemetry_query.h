// Telemetry queries: GET /api/v1/telemetry parameters, and reading points back out of the
// store's chunks, raw or aggregated into time buckets.
//
// Readings are in two places (telemetry.h): staged batches, not yet compacted, and chunks.
// Chunks of one series may overlap (a node that resent readings under new sequence numbers,
// after losing its buffer cursor, stores them twice), and a batch may be seen both staged and
// compacted by a query that runs during the compaction. A query therefore merges the device's
// staged readings and each series' chunks in timestamp order and returns one point per
// timestamp: the one from the chunk that starts first (then the one stored first; chunks
// before staged batches). Memory stays bounded by the staged readings of the device and the
// chunks that overlap, since a point is final once no later chunk can start before it.
//
// Thread-safety: pure functions over a thread-safe Store.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "cloud/store.h"
#include "common/series_chunk.h"
#include "common/status.h"
#include "common/timestamp.h"

namespace verge::cloud {

inline constexpr size_t kDefaultQueryLimit = 10'000;
inline constexpr size_t kMaxQueryLimit = 100'000;

struct TelemetryQuery {
  std::string device;
  std::string node;     // "" any
  std::string metric;   // "" all of the device's metrics
  int64_t from_ns = 0;  // inclusive
  int64_t to_ns = 0;    // exclusive
  int64_t step_ns = 0;  // > 0 with agg
  Aggregate agg = Aggregate::kNone;
  size_t limit = kDefaultQueryLimit;
  // Paging: only points after (after_metric, after_ts) in (metric, ts) order. An empty
  // after_metric with has_after means "ts > after_ts" in every metric.
  bool has_after = false;
  std::string after_metric;
  int64_t after_ts = 0;
};

struct Point {
  std::string metric;
  int64_t ts_ns = 0;  // with agg: the bucket's start
  double value = 0;
};

// Every parameter checked, every problem reported at once. Defaults: from the beginning of
// time, to now + 1 h (node clocks run ahead), no aggregation, limit 10,000 (at most 100,000).
Result<TelemetryQuery> ParseTelemetryQuery(const std::map<std::string, std::string>& params,
                                           int64_t now_ns);

// Points ordered by metric, then time; at most q.limit.
Result<std::vector<Point>> RunTelemetryQuery(Store& store, const TelemetryQuery& q);

// [{"ts", "tsNs", "device", "metric", "value"}, ...]
nlohmann::json PointsJson(const std::string& device, const std::vector<Point>& points);

}  // namespace verge::cloud
