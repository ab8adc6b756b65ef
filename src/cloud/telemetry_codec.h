// Telemetry on its way into the cloud store, without I/O: decoding and validating an
// UplinkBatch from a node (codec, size cap, ReadingBatch, indices, lengths, count, names,
// finite values, timestamps), and the chunk format the store keeps readings in.
//
// Chunks. Compaction turns staged batches into one chunk per node, series (device, metric) and
// hour of the time grid (kChunkSpanNs), of at most kMaxChunkReadings, so that a query for a
// time range finds its chunks with an index range on (series, start_ts) alone, and retention
// deletes whole chunks. A chunk's blob:
//
//   u8 format (1, 2) | u8 codec (0 none, 1 zstd) | varint count | varint body_size | body
//   body = timestamps: zigzag varint of the first, then zigzag varints of delta-of-delta
//                      (wrapping 64-bit arithmetic, so any int64 sequence round-trips)
//          values:     format 1: the XOR of each value's bits with the previous one's, as 8
//                      byte planes (every low byte, ..., every high byte);
//                      format 2: the values as they are (8 bytes little-endian each)
//
// Regular sampling makes delta-of-delta 0 (one byte each). Slowly moving values make the high
// XOR planes zeros (format 1), while values that repeat exactly — readings rounded to a few
// digits, counters, states — are whole 8-byte matches for zstd as they are (format 2); the
// encoder keeps whichever compresses smaller.
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
#include "common/status.h"
#include "verge/v1/link.pb.h"

namespace verge::cloud {

// Largest ReadingBatch a compressed UplinkBatch may expand to.
inline constexpr size_t kMaxUplinkDecompressedBytes = size_t{64} << 20;
// Chunks never cross a multiple of this (1 hour).
inline constexpr int64_t kChunkSpanNs = int64_t{3600} * 1'000'000'000;
// Bounds what one chunk costs to decode in a query.
inline constexpr size_t kMaxChunkReadings = 65'536;

inline int64_t ChunkBucket(int64_t ts_ns) { return ts_ns - ts_ns % kChunkSpanNs; }

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

// Encodes sorted or unsorted readings (timestamps are kept in the given order).
// REQUIRES: ts.size() == values.size().
std::string EncodeChunk(std::span<const int64_t> ts, std::span<const double> values);
// Appends a chunk's readings to ts and values. kDataLoss if the blob is damaged (and then
// ts and values are left as they were).
Status DecodeChunk(std::string_view data, std::vector<int64_t>& ts, std::vector<double>& values);

}  // namespace verge::cloud
