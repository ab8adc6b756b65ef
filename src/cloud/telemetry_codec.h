// Telemetry on its way into the cloud store, without I/O: decoding and validating an
// UplinkBatch from a node (codec, size cap, ReadingBatch, indices, lengths, count, names,
// finite values, timestamps), and the chunk format the store keeps readings in.
//
// Compaction turns staged batches into one chunk (common/series_chunk.h) per node, series
// (device, metric) and hour of the time grid, of at most kMaxChunkReadings.
//
// Thread-safety: the free functions are thread-safe (zstd contexts are per thread).
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "cloud/store.h"
#include "common/series_chunk.h"
#include "common/status.h"
#include "verge/v1/link.pb.h"

namespace verge::cloud {

// Largest ReadingBatch a compressed UplinkBatch may expand to.
inline constexpr size_t kMaxUplinkDecompressedBytes = size_t{64} << 20;
// Bounds what one chunk costs to decode in a query.
inline constexpr size_t kMaxChunkReadings = 65'536;

// The readings of one series, sorted by timestamp (duplicates kept, stable).
struct SeriesReadings {
  std::string device;
  std::string metric;
  std::vector<int64_t> ts;  // ns since the epoch
  std::vector<double> values;
};

// What validating a batch learns about it, without keeping its readings.
struct UplinkSummary {
  uint64_t seq = 0;
  uint64_t low_seq = 0;
  uint64_t count = 0;
  int64_t min_ts = 0;  // earliest and latest reading (0 when there are none)
  int64_t max_ts = 0;
};

struct DecodedUplink : UplinkSummary {
  std::vector<SeriesReadings> series;  // one per (device, metric), in first-seen order
};

// Called for each series of a batch in batch order, with absolute timestamps in the order sent
// (a (device, metric) may come more than once).
using SeriesVisitor =
    std::function<void(const std::string& device, const std::string& metric,
                       std::span<const int64_t> ts, std::span<const double> values)>;

// Decodes and validates a batch, calling `fn` (if set) for each series once the batch is known
// to be valid. kInvalidArgument (or kResourceExhausted for the size cap) says why the batch can
// never be stored; resending it cannot help.
Result<UplinkSummary> VisitUplink(const v1::UplinkBatch& batch, const SeriesVisitor& fn,
                                  size_t max_decompressed = kMaxUplinkDecompressedBytes);
// The readings of a batch, by series, each sorted by time.
Result<DecodedUplink> DecodeUplink(const v1::UplinkBatch& batch,
                                   size_t max_decompressed = kMaxUplinkDecompressedBytes);

// What Store::StoreUplink stages for a batch that VisitUplink accepted: its bytes as they
// came (moved out of `batch`), with what the store indexes.
Store::UplinkRecord StageUplink(const std::string& node, v1::UplinkBatch&& batch,
                                const UplinkSummary& summary);
// Reads a staged batch again, for compaction and queries; kDataLoss if it no longer decodes.
Status VisitStaged(const Store::UplinkRecord& record, const SeriesVisitor& fn);
Result<DecodedUplink> DecodeStaged(const Store::UplinkRecord& record);

// Merges readings per (device, metric) as they come, for compaction: series with the same
// (device, metric) are appended, then sorted stably by timestamp (so a reading added first
// comes first), then cut into chunks on the hour grid and at kMaxChunkReadings.
class SeriesMerger {
 public:
  void Add(const std::string& device, const std::string& metric, std::span<const int64_t> ts,
           std::span<const double> values);
  uint64_t readings() const { return readings_; }
  // The chunks of everything added, leaving the merger empty.
  std::vector<Store::ChunkRecord> TakeChunks(const std::string& node);

 private:
  std::unordered_map<std::string, size_t> index_;  // device + '\0' + metric -> series_
  std::vector<SeriesReadings> series_;
  std::string key_;  // reused, so that finding a series allocates nothing
  uint64_t readings_ = 0;
};

// SeriesMerger over already decoded series.
std::vector<Store::ChunkRecord> MakeChunks(const std::string& node,
                                           std::vector<SeriesReadings> series);

}  // namespace verge::cloud
