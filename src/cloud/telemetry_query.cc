#include "cloud/telemetry_query.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <numeric>
#include <optional>
#include <set>

#include "cloud/api_json.h"
#include "cloud/device_spec.h"
#include "cloud/telemetry_codec.h"
#include "common/config_schema.h"
#include "common/duration.h"
#include "common/timestamp.h"

namespace verge::cloud {
namespace {

using json = nlohmann::json;
constexpr int64_t kNsPerMs = 1'000'000;
constexpr int64_t kNsPerSec = 1'000'000'000;

bool AllDigits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Turns one series' merged, deduplicated points into output points (raw or bucketed).
class SeriesSink {
 public:
  SeriesSink(const TelemetryQuery& q, const std::string& metric, int64_t min_ts,
             std::vector<Point>& out)
      : q_(q), metric_(metric), min_ts_(min_ts), out_(out), folder_(q.agg, q.step_ns) {
    skip_through_ = q.has_after && (q.after_metric.empty() || q.after_metric == metric)
                        ? std::optional<int64_t>(q.after_ts)
                        : std::nullopt;
  }

  // False once the limit is reached.
  bool Add(int64_t ts, double v) {
    if (ts < min_ts_ || ts >= q_.to_ns) return true;
    if (last_ts_ && *last_ts_ == ts) return true;  // the same reading stored twice
    last_ts_ = ts;
    if (q_.agg == Aggregate::kNone) return Emit(ts, v);
    auto done = folder_.Add(ts, v);
    return !done || Emit(done->start, done->value);
  }

  bool Flush() {
    auto done = folder_.Finish();
    return !done || Emit(done->start, done->value);
  }

 private:
  bool Emit(int64_t ts, double v) {
    if (out_.size() >= q_.limit) return false;
    if (!skip_through_ || ts > *skip_through_) out_.push_back(Point{metric_, ts, v});
    return out_.size() < q_.limit;
  }

  const TelemetryQuery& q_;
  const std::string& metric_;
  int64_t min_ts_;
  std::vector<Point>& out_;
  std::optional<int64_t> skip_through_;
  std::optional<int64_t> last_ts_;
  BucketFolder folder_;
};

}  // namespace

Result<TelemetryQuery> ParseTelemetryQuery(const std::map<std::string, std::string>& params,
                                           int64_t now_ns) {
  TelemetryQuery q;
  q.to_ns = now_ns + int64_t{3600} * kNsPerSec;
  std::vector<std::string> errors;
  auto get = [&](const char* k) -> const std::string* {
    auto it = params.find(k);
    return it == params.end() ? nullptr : &it->second;
  };
  for (const auto& [k, v] : params) {
    static const std::set<std::string> kKnown = {"device", "node", "metric", "from", "to",
                                                 "step",   "agg",  "limit",  "after"};
    if (!kKnown.count(k)) errors.push_back(fmt::format("unknown parameter {:?}", k.substr(0, 40)));
  }
  if (const auto* d = get("device"); !d || d->empty()) {
    errors.push_back("device is required (device=NAME)");
  } else if (!IsValidDeviceName(*d)) {
    errors.push_back(fmt::format("device {:?} is not a valid device name", d->substr(0, 80)));
  } else {
    q.device = *d;
  }
  if (const auto* n = get("node"); n && !n->empty()) {
    if (auto st = ValidateNodeName(*n); !st.ok()) errors.push_back(st.message());
    q.node = *n;
  }
  if (const auto* m = get("metric"); m && !m->empty()) {
    if (!IsValidDeviceName(*m)) {
      errors.push_back(fmt::format("metric {:?} is not a valid metric name", m->substr(0, 80)));
    }
    q.metric = *m;
  }
  bool times_ok = true;
  if (const auto* f = get("from")) {
    auto t = ParseTimeArg(*f, now_ns);
    if (t.ok()) {
      q.from_ns = std::max<int64_t>(0, *t);
    } else {
      errors.push_back("from: " + t.status().message());
      times_ok = false;
    }
  }
  if (const auto* t = get("to")) {
    auto v = ParseTimeArg(*t, now_ns);
    if (v.ok()) {
      q.to_ns = *v;
    } else {
      errors.push_back("to: " + v.status().message());
      times_ok = false;
    }
  }
  if (times_ok && q.to_ns <= q.from_ns) errors.push_back("from must be before to");
  const auto* step = get("step");
  const auto* agg = get("agg");
  if (step || agg) {
    if (!step || !agg) {
      errors.push_back("step and agg go together (step=1m&agg=avg)");
    } else {
      auto d = ParseDuration(*step);
      if (!d.ok()) {
        errors.push_back("step: " + d.status().message());
      } else if (d->count() <= 0) {
        errors.push_back("step must be longer than 0s");
      } else {
        q.step_ns = d->count() * kNsPerMs;
      }
      static const std::map<std::string, Aggregate> kAggs = {{"avg", Aggregate::kAvg},
                                                             {"min", Aggregate::kMin},
                                                             {"max", Aggregate::kMax},
                                                             {"sum", Aggregate::kSum},
                                                             {"count", Aggregate::kCount}};
      if (auto it = kAggs.find(*agg); it != kAggs.end()) {
        q.agg = it->second;
      } else {
        errors.push_back(
            fmt::format("agg must be avg, min, max, sum or count (not {:?})", agg->substr(0, 40)));
      }
    }
  }
  if (const auto* l = get("limit")) {
    if (!AllDigits(*l) || l->size() > 7 || std::stoul(*l) < 1 || std::stoul(*l) > kMaxQueryLimit) {
      errors.push_back(fmt::format("limit must be a number from 1 to {}", kMaxQueryLimit));
    } else {
      q.limit = std::stoul(*l);
    }
  }
  if (const auto* a = get("after")) {
    std::string_view v = *a;
    std::string_view ts = v;
    if (auto comma = v.rfind(','); comma != std::string_view::npos) {
      q.after_metric = std::string(v.substr(0, comma));
      ts = v.substr(comma + 1);
    }
    if (!AllDigits(ts) || ts.size() > 19 ||
        (!q.after_metric.empty() && !IsValidDeviceName(q.after_metric))) {
      errors.push_back(
          "after must be the \"metric,tsNs\" (or just tsNs) of the last point of the previous "
          "page");
    } else {
      q.has_after = true;
      q.after_ts = static_cast<int64_t>(std::stoull(std::string(ts)));
    }
  }
  if (!errors.empty()) return Status(ValidationResult("invalid telemetry query", errors));
  return q;
}

namespace {

// Sorted points waiting to be emitted; `head` is the next one.
struct PointQueue {
  std::vector<int64_t> ts;
  std::vector<double> values;
  size_t head = 0;
  bool Has(int64_t before) const { return head < ts.size() && ts[head] < before; }
  // Drops what was emitted, once that is most of it.
  void Trim() {
    if (head > 4096 && head * 2 > ts.size()) {
      ts.erase(ts.begin(), ts.begin() + static_cast<ptrdiff_t>(head));
      values.erase(values.begin(), values.begin() + static_cast<ptrdiff_t>(head));
      head = 0;
    }
  }
  // Merges sorted points in; on equal timestamps the ones already here come first.
  void Merge(std::vector<int64_t>& in_ts, std::vector<double>& in_values,
             std::vector<int64_t>& scratch_ts, std::vector<double>& scratch_values) {
    if (in_ts.empty()) return;
    if (head == ts.size() || in_ts.front() >= ts.back()) {
      ts.insert(ts.end(), in_ts.begin(), in_ts.end());
      values.insert(values.end(), in_values.begin(), in_values.end());
      return;
    }
    scratch_ts.clear();
    scratch_values.clear();
    size_t i = head, j = 0;
    while (i < ts.size() || j < in_ts.size()) {
      if (j == in_ts.size() || (i < ts.size() && ts[i] <= in_ts[j])) {
        scratch_ts.push_back(ts[i]);
        scratch_values.push_back(values[i++]);
      } else {
        scratch_ts.push_back(in_ts[j]);
        scratch_values.push_back(in_values[j++]);
      }
    }
    ts.swap(scratch_ts);
    values.swap(scratch_values);
    head = 0;
  }
};

}  // namespace

Result<std::vector<Point>> RunTelemetryQuery(Store& store, const TelemetryQuery& q) {
  std::vector<Point> out;
  // Staged batches first, chunks second: a compaction that moves a batch from one to the other
  // meanwhile makes it seen twice (and deduplicated), never missed.
  std::map<std::string, PointQueue> staged;  // by metric
  VERGE_RETURN_IF_ERROR(
      store.ScanStaged(q.from_ns, q.to_ns - 1, q.node, [&](const Store::StagedBatch& b) {
        // A damaged batch is skipped here; compaction reports and drops it.
        (void)VisitStaged(b.record,
                          [&](const std::string& device, const std::string& metric,
                              std::span<const int64_t> ts, std::span<const double> values) {
                            if (device != q.device || (!q.metric.empty() && metric != q.metric))
                              return;
                            auto& pq = staged[metric];
                            pq.ts.insert(pq.ts.end(), ts.begin(), ts.end());
                            pq.values.insert(pq.values.end(), values.begin(), values.end());
                          });
        return true;
      }));
  for (auto& [metric, pq] : staged) {
    SeriesReadings sr;
    sr.ts = std::move(pq.ts);
    sr.values = std::move(pq.values);
    // Stable: on equal timestamps the batch staged first comes first.
    std::vector<size_t> order(sr.ts.size());
    std::iota(order.begin(), order.end(), size_t{0});
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return sr.ts[a] < sr.ts[b]; });
    pq.ts.resize(order.size());
    pq.values.resize(order.size());
    for (size_t k = 0; k < order.size(); ++k) {
      pq.ts[k] = sr.ts[order[k]];
      pq.values[k] = sr.values[order[k]];
    }
  }
  VERGE_ASSIGN_OR_RETURN(auto series, store.FindSeries(q.device, q.metric));
  std::map<std::string, int64_t> series_ids;
  for (const auto& s : series) series_ids[s.metric] = s.id;
  std::vector<std::string> metrics;
  for (const auto& [m, id] : series_ids) metrics.push_back(m);
  for (const auto& [m, pq] : staged) {
    if (!series_ids.count(m)) metrics.push_back(m);
  }
  std::sort(metrics.begin(), metrics.end());

  std::vector<int64_t> chunk_ts, scratch_ts;
  std::vector<double> chunk_values, scratch_values;
  for (const auto& metric : metrics) {
    if (out.size() >= q.limit) break;
    if (q.has_after && !q.after_metric.empty() && metric < q.after_metric) continue;
    int64_t min_ts = q.from_ns;
    if (q.has_after && (q.after_metric.empty() || q.after_metric == metric) &&
        q.after_ts < INT64_MAX) {
      min_ts = std::max(min_ts, q.after_ts + 1);
    }
    if (min_ts >= q.to_ns) continue;
    SeriesSink sink(q, metric, min_ts, out);
    PointQueue chunked;
    PointQueue empty;
    PointQueue& recent = staged.count(metric) ? staged[metric] : empty;
    // Emits, in time order, what no chunk still to come can precede: the points before
    // `horizon`, chunk points first on equal timestamps (they were stored earlier).
    auto emit_before = [&](int64_t horizon) {
      for (;;) {
        bool c = chunked.Has(horizon), r = recent.Has(horizon);
        if (!c && !r) break;
        PointQueue& from =
            c && (!r || chunked.ts[chunked.head] <= recent.ts[recent.head]) ? chunked : recent;
        if (!sink.Add(from.ts[from.head], from.values[from.head])) return false;
        ++from.head;
      }
      chunked.Trim();
      return true;
    };
    bool full = false;
    Status failed;
    if (auto it = series_ids.find(metric); it != series_ids.end()) {
      VERGE_RETURN_IF_ERROR(store.ScanChunks(
          it->second, q.node, ChunkBucket(min_ts), q.to_ns - 1, [&](const Store::StoredChunk& c) {
            if (c.end_ts < min_ts) return true;
            if (!emit_before(c.start_ts)) {
              full = true;
              return false;
            }
            chunk_ts.clear();
            chunk_values.clear();
            if (Status st = DecodeChunk(c.data, chunk_ts, chunk_values); !st.ok()) {
              failed = st.Wrap(fmt::format("series {}/{}", q.device, metric));
              return false;
            }
            chunked.Merge(chunk_ts, chunk_values, scratch_ts, scratch_values);
            return true;
          }));
    }
    VERGE_RETURN_IF_ERROR(failed);
    if (full) break;
    if (!emit_before(INT64_MAX)) break;
    if (!sink.Flush()) break;
  }
  return out;
}

json PointsJson(const std::string& device, const std::vector<Point>& points) {
  json arr = json::array();
  for (const auto& p : points) {
    arr.push_back({{"ts", FormatTimeNs(p.ts_ns)},
                   {"tsNs", p.ts_ns},
                   {"device", device},
                   {"metric", p.metric},
                   {"value", p.value}});
  }
  return arr;
}

}  // namespace verge::cloud
