#include "cloud/telemetry_query.h"

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

namespace verge::cloud {
namespace {

using json = nlohmann::json;
constexpr int64_t kNsPerMs = 1'000'000;
constexpr int64_t kNsPerSec = 1'000'000'000;

bool AllDigits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

// Parses digits at s[pos, pos+len) into out.
bool Digits(std::string_view s, size_t pos, size_t len, int& out) {
  if (pos + len > s.size()) return false;
  out = 0;
  for (size_t i = pos; i < pos + len; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    out = out * 10 + (s[i] - '0');
  }
  return true;
}

std::optional<int64_t> ParseRfc3339Ns(std::string_view s) {
  int y, mo, d, h, mi, sec;
  if (s.size() < 20 || !Digits(s, 0, 4, y) || s[4] != '-' || !Digits(s, 5, 2, mo) || s[7] != '-' ||
      !Digits(s, 8, 2, d) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
      !Digits(s, 11, 2, h) || s[13] != ':' || !Digits(s, 14, 2, mi) || s[16] != ':' ||
      !Digits(s, 17, 2, sec)) {
    return std::nullopt;
  }
  std::chrono::year_month_day ymd{std::chrono::year(y),
                                  std::chrono::month(static_cast<unsigned>(mo)),
                                  std::chrono::day(static_cast<unsigned>(d))};
  if (!ymd.ok() || h > 23 || mi > 59 || sec > 60) return std::nullopt;
  size_t pos = 19;
  int64_t frac = 0;
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    size_t start = pos;
    int64_t scale = 100'000'000;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
      frac += (s[pos] - '0') * scale;  // digits past nanoseconds are dropped (scale 0)
      scale /= 10;
      ++pos;
    }
    if (pos == start) return std::nullopt;
  }
  std::string_view zone = s.substr(pos);
  int64_t offset_s = 0;
  if (zone == "Z" || zone == "z") {
  } else if (zone.size() == 6 && (zone[0] == '+' || zone[0] == '-') && zone[3] == ':') {
    int oh, om;
    if (!Digits(zone, 1, 2, oh) || !Digits(zone, 4, 2, om) || oh > 23 || om > 59) {
      return std::nullopt;
    }
    offset_s = (zone[0] == '-' ? -1 : 1) * (int64_t{oh} * 3600 + om * 60);
  } else {
    return std::nullopt;
  }
  int64_t days = std::chrono::sys_days(ymd).time_since_epoch().count();
  int64_t secs = days * 86400 + int64_t{h} * 3600 + int64_t{mi} * 60 + sec - offset_s;
  if (secs < -9'000'000'000LL || secs > 9'000'000'000LL) return std::nullopt;
  return secs * kNsPerSec + frac;
}

struct Accumulator {
  double sum = 0, min = 0, max = 0;
  uint64_t count = 0;
  void Add(double v) {
    if (count == 0) {
      min = max = v;
    } else {
      min = std::min(min, v);
      max = std::max(max, v);
    }
    sum += v;
    ++count;
  }
  double Value(Aggregate agg) const {
    switch (agg) {
      case Aggregate::kAvg:
        return sum / static_cast<double>(count);
      case Aggregate::kMin:
        return min;
      case Aggregate::kMax:
        return max;
      case Aggregate::kSum:
        return sum;
      case Aggregate::kCount:
        return static_cast<double>(count);
      case Aggregate::kNone:
        break;
    }
    return sum;
  }
};

// Turns one series' merged, deduplicated points into output points (raw or bucketed).
class SeriesSink {
 public:
  SeriesSink(const TelemetryQuery& q, const std::string& metric, int64_t min_ts,
             std::vector<Point>& out)
      : q_(q), metric_(metric), min_ts_(min_ts), out_(out) {
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
    int64_t bucket = ts - ts % q_.step_ns;
    if (acc_.count > 0 && bucket != bucket_) {
      if (!Flush()) return false;
    }
    bucket_ = bucket;
    acc_.Add(v);
    return true;
  }

  bool Flush() {
    if (acc_.count == 0) return true;
    Accumulator acc = acc_;
    acc_ = Accumulator();
    return Emit(bucket_, acc.Value(q_.agg));
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
  Accumulator acc_;
  int64_t bucket_ = 0;
};

}  // namespace

Result<int64_t> ParseQueryTime(std::string_view text, int64_t now_ns) {
  auto bad = [&] {
    return Error(Code::kInvalidArgument,
                 "invalid time {:?}: use RFC 3339 (2026-11-21T10:00:00Z), epoch milliseconds, "
                 "\"now\", or how long ago (1h, -30m)",
                 text.substr(0, 80));
  };
  if (text == "now") return now_ns;
  if (AllDigits(text)) {
    if (text.size() > 15) return bad();
    int64_t ms = std::stoll(std::string(text));
    if (ms > INT64_MAX / kNsPerMs) return bad();  // past the year 2262 in nanoseconds
    return ms * kNsPerMs;
  }
  if (text.size() >= 20 && (text[10] == 'T' || text[10] == 't' || text[10] == ' ')) {
    auto ns = ParseRfc3339Ns(text);
    if (!ns) return bad();
    return *ns;
  }
  std::string_view d = text;
  if (d.starts_with('-')) d.remove_prefix(1);
  auto ago = ParseDuration(d);
  if (!ago.ok()) return bad();
  return now_ns - std::min<int64_t>(ago->count(), INT64_MAX / kNsPerMs - 1) * kNsPerMs;
}

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
    auto t = ParseQueryTime(*f, now_ns);
    if (t.ok()) {
      q.from_ns = std::max<int64_t>(0, *t);
    } else {
      errors.push_back("from: " + t.status().message());
      times_ok = false;
    }
  }
  if (const auto* t = get("to")) {
    auto v = ParseQueryTime(*t, now_ns);
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

std::string FormatTimeNs(int64_t ns) {
  int64_t secs = ns / kNsPerSec;
  int64_t frac = ns % kNsPerSec;
  if (frac < 0) {
    frac += kNsPerSec;
    --secs;
  }
  int64_t days = secs / 86400;
  int64_t rem = secs % 86400;
  if (rem < 0) {
    rem += 86400;
    --days;
  }
  std::chrono::year_month_day ymd{std::chrono::sys_days(std::chrono::days(days))};
  std::string out =
      fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}", static_cast<int>(ymd.year()),
                  static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()), rem / 3600,
                  rem / 60 % 60, rem % 60);
  if (frac != 0) {
    std::string f = fmt::format("{:09}", frac);
    while (f.back() == '0') f.pop_back();
    out += "." + f;
  }
  return out + "Z";
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
