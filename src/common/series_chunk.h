// What the node's local time-series and the cloud's telemetry store share: the chunk a series'
// readings are kept in, the hour grid chunks never cross, and aggregation into time buckets.
//
// A chunk's blob:
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

#include <algorithm>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace verge {

// Chunks never cross a multiple of this (1 hour), so that a time range finds its chunks with
// an index range on (series, start) alone, and retention deletes whole chunks.
inline constexpr int64_t kChunkSpanNs = int64_t{3600} * 1'000'000'000;

// The start of the hour-grid cell `ts_ns` falls in (rounded down, also before the epoch).
inline int64_t ChunkBucket(int64_t ts_ns) {
  int64_t r = ts_ns % kChunkSpanNs;
  return r < 0 ? ts_ns - r - kChunkSpanNs : ts_ns - r;
}

// kSmall: the smaller of the two value layouts, zstd-compressed when that helps. kFast: values
// as they are, uncompressed (for a chunk that is rewritten as it fills).
enum class ChunkEncoding { kSmall, kFast };

// Encodes sorted or unsorted readings (timestamps are kept in the given order).
// REQUIRES: ts.size() == values.size().
std::string EncodeChunk(std::span<const int64_t> ts, std::span<const double> values,
                        ChunkEncoding encoding = ChunkEncoding::kSmall);
// Appends a chunk's readings to ts and values. kDataLoss if the blob is damaged (and then
// ts and values are left as they were).
Status DecodeChunk(std::string_view data, std::vector<int64_t>& ts, std::vector<double>& values);

enum class Aggregate { kNone, kAvg, kMin, kMax, kSum, kCount };

// "", "none", "avg" (or "mean"), "min", "max", "sum", "count".
Result<Aggregate> ParseAggregate(std::string_view s);

// One time bucket's aggregate.
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

// Folds one series' points, in time order, into buckets of `step_ns` aligned to the epoch (so
// the same step always gives the same buckets): Add returns the bucket a point closes.
class BucketFolder {
 public:
  struct Bucket {
    int64_t start;
    double value;
  };
  BucketFolder(Aggregate agg, int64_t step_ns) : agg_(agg), step_ns_(step_ns) {}
  std::optional<Bucket> Add(int64_t ts, double v) {
    int64_t r = ts % step_ns_;
    int64_t bucket = r < 0 ? ts - r - step_ns_ : ts - r;
    std::optional<Bucket> done;
    if (acc_.count > 0 && bucket != bucket_) done = Finish();
    bucket_ = bucket;
    acc_.Add(v);
    return done;
  }
  // The open bucket, if any.
  std::optional<Bucket> Finish() {
    if (acc_.count == 0) return std::nullopt;
    Bucket b{bucket_, acc_.Value(agg_)};
    acc_ = Accumulator();
    return b;
  }

 private:
  Aggregate agg_;
  int64_t step_ns_;
  Accumulator acc_;
  int64_t bucket_ = 0;
};

}  // namespace verge
