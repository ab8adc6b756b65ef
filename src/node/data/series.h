// SeriesStore: the node's local time-series window, one SQLite file in WAL mode. It keeps
// recent readings (default 24 h) so that local applications and operators can query them,
// also while the cloud is unreachable, and answers the cleaner's "was this reading stored
// before?" for readings older than its in-memory window.
//
// Readings are kept in chunks (common/series_chunk.h) of up to kSeriesChunkReadings per series
// and hour of the time grid, not one row per reading: a row per reading made this store the
// most expensive step of the node's whole data path. The newest chunk of a series and hour
// stays open: each Insert rewrites it with what arrived, in the same transaction, so whatever
// Insert returned for is durable and readable. A chunk holds each timestamp once (the first
// stored); chunks of the same hour may overlap (a reading that arrives late, after its hour's
// chunk filled), and a query keeps the point of the chunk stored first.
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
#include "common/series_chunk.h"
#include "common/sqlite.h"
#include "common/status.h"
#include "node/data/reading.h"

namespace verge::data {

// Readings per chunk: large enough that a chunk's row costs little per reading, small enough
// that rewriting a series' open chunk for each new reading stays cheap.
inline constexpr size_t kSeriesChunkReadings = 256;

struct SeriesQuery {
  std::string device;
  std::string metric;  // empty: every metric of the device
  int64_t from_ns = 0;
  int64_t to_ns = INT64_MAX;  // inclusive
  int64_t step_ns = 0;        // with agg: bucket width
  Aggregate agg = Aggregate::kNone;
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
  // The newest chunk of one series and hour while it has room: a copy of its row.
  struct OpenChunk {
    int64_t row = 0;          // 0: not stored yet
    std::vector<int64_t> ts;  // sorted, unique
    std::vector<double> values;
    bool dirty = false;
  };
  struct ChunkKey {
    int64_t series;
    int64_t start;
    bool operator==(const ChunkKey&) const = default;
  };
  struct ChunkKeyHash {
    size_t operator()(const ChunkKey& k) const {
      return std::hash<int64_t>()(k.series * 1'000'003 ^ k.start);
    }
  };

  SeriesStore(sql::Db writer, sql::Db reader)
      : writer_(std::move(writer)), reader_(std::move(reader)) {}
  Result<int64_t> SeriesIdLocked(const std::string& device, const std::string& metric);
  Result<OpenChunk*> OpenChunkLocked(int64_t series, int64_t start);
  Status WriteChunkLocked(int64_t series, int64_t start, OpenChunk& c, ChunkEncoding encoding);
  Status InsertLocked(std::span<const Reading> readings);

  std::mutex write_mu_;
  sql::Db writer_;                                // GUARDED_BY(write_mu_)
  std::unordered_map<std::string, int64_t> ids_;  // "device\0metric" -> id, GUARDED_BY(write_mu_)
  std::string key_;  // reused for lookups in ids_, GUARDED_BY(write_mu_)
  // Bounded: dropped whole when it grows past a limit or a write fails (the rows are the
  // truth; an open chunk is read again when its hour gets another reading).
  std::unordered_map<ChunkKey, OpenChunk, ChunkKeyHash> open_;  // GUARDED_BY(write_mu_)
  // The latest hour each series has an open chunk in, so that it is closed when the series
  // moves on. Cleared with open_.
  std::unordered_map<int64_t, int64_t> newest_open_;  // GUARDED_BY(write_mu_)
  std::mutex read_mu_;
  sql::Db reader_;  // GUARDED_BY(read_mu_)
};

}  // namespace verge::data
