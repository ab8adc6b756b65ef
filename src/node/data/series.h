// SeriesStore: the node's local time-series window, one SQLite file in WAL mode. It keeps
// recent readings (default 24 h) so that local applications and operators can query them,
// also while the cloud is unreachable, and answers the cleaner's "was this reading stored
// before?" for readings older than its in-memory window.
//
// Thread-safety: thread-safe. The pipeline thread writes; the HTTP thread queries. Readers
// use their own connection, so a query never waits for a write to commit (WAL).
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/duration.h"
#include "common/sqlite.h"
#include "common/status.h"
#include "node/data/reading.h"

namespace verge::data {

enum class Agg { kNone, kAvg, kMin, kMax, kSum, kCount };
Result<Agg> ParseAgg(std::string_view s);

struct SeriesQuery {
  std::string device;
  std::string metric;  // empty: every metric of the device
  int64_t from_ns = 0;
  int64_t to_ns = INT64_MAX;
  int64_t step_ns = 0;  // with agg: bucket width
  Agg agg = Agg::kNone;
  size_t limit = 10'000;
};

class SeriesStore {
 public:
  static Result<std::unique_ptr<SeriesStore>> Open(const std::string& path);

  // Idempotent: a reading already stored (same device, metric, ts) is left as it is.
  Status Insert(std::span<const Reading> readings);
  // Points ordered by metric, then time. With agg, one point per bucket: ts = bucket start.
  Result<std::vector<Reading>> Query(const SeriesQuery& q);
  bool Contains(const Reading& r);
  // Deletes readings older than `before_ns`. Returns how many.
  Result<uint64_t> Prune(int64_t before_ns);

 private:
  SeriesStore(sql::Db writer, sql::Db reader)
      : writer_(std::move(writer)), reader_(std::move(reader)) {}
  Result<int64_t> SeriesIdLocked(const std::string& device, const std::string& metric);

  std::mutex write_mu_;
  sql::Db writer_;                                // GUARDED_BY(write_mu_)
  std::unordered_map<std::string, int64_t> ids_;  // "device\0metric" -> id, GUARDED_BY(write_mu_)
  std::mutex read_mu_;
  sql::Db reader_;  // GUARDED_BY(read_mu_)
};

}  // namespace verge::data
