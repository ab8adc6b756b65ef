#include "cloud/telemetry_codec.h"

#include <zstd.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <numeric>
#include <unordered_map>

#include "cloud/device_spec.h"
#include "common/compress.h"
#include "common/reading_batch.h"

namespace verge::cloud {
namespace {

Status Invalid(std::string message) { return Status(Code::kInvalidArgument, std::move(message)); }

// Sorts ts and values together by ts (stable), unless already sorted (the usual case).
void SortSeries(SeriesReadings& s) {
  if (std::is_sorted(s.ts.begin(), s.ts.end())) return;
  std::vector<size_t> order(s.ts.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return s.ts[a] < s.ts[b]; });
  std::vector<int64_t> ts(order.size());
  std::vector<double> values(order.size());
  for (size_t i = 0; i < order.size(); ++i) {
    ts[i] = s.ts[order[i]];
    values[i] = s.values[order[i]];
  }
  s.ts = std::move(ts);
  s.values = std::move(values);
}

}  // namespace

namespace {

// Decompresses (with the cap) and parses `data`, and checks the names.
Status ParseReadingBatch(int codec, std::string_view data, size_t max_decompressed,
                         v1::ReadingBatch& rb) {
  std::string plain;
  std::string_view bytes;
  switch (codec) {
    case v1::CODEC_NONE:
      if (data.size() > max_decompressed) {
        return Error(Code::kResourceExhausted, "batch data larger than {} bytes", max_decompressed);
      }
      bytes = data;
      break;
    case v1::CODEC_ZSTD: {
      auto d = ZstdDecompress(data, max_decompressed);
      if (!d.ok()) return d.status().Wrap("batch data");
      plain = std::move(*d);
      bytes = plain;
      break;
    }
    default:
      return Invalid(fmt::format("unknown codec {}", codec));
  }
  if (!rb.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return Invalid("batch data is not a verge.v1.ReadingBatch");
  }
  for (int i = 0; i < rb.devices_size(); ++i) {
    if (!IsValidDeviceName(rb.devices(i))) {
      return Invalid(fmt::format("device name {:?} is not 1-64 characters of [A-Za-z0-9_.:-]",
                                 rb.devices(i).substr(0, 80)));
    }
  }
  for (int i = 0; i < rb.metrics_size(); ++i) {
    if (!IsValidDeviceName(rb.metrics(i))) {
      return Invalid(fmt::format("metric name {:?} is not 1-64 characters of [A-Za-z0-9_.:-]",
                                 rb.metrics(i).substr(0, 80)));
    }
  }
  return Status::Ok();
}

// Checks every series of `rb`, turning deltas into absolute timestamps (one vector per series,
// kept in `ts`), and summarises; the batch is valid only if this returns Ok.
Status CheckSeries(const v1::ReadingBatch& rb, uint64_t expected_count,
                   std::vector<std::vector<int64_t>>& ts, std::vector<std::vector<double>>& values,
                   UplinkSummary& summary) {
  ts.resize(static_cast<size_t>(rb.series_size()));
  values.resize(static_cast<size_t>(rb.series_size()));
  uint64_t total = 0;
  bool first = true;
  for (int i = 0; i < rb.series_size(); ++i) {
    auto& out = ts[static_cast<size_t>(i)];
    auto& vals = values[static_cast<size_t>(i)];
    VERGE_RETURN_IF_ERROR(SeriesTimestamps(rb, i, out));
    VERGE_RETURN_IF_ERROR(SeriesValues(rb, i, vals));
    for (size_t k = 0; k < vals.size(); ++k) {
      int64_t t = out[k];
      if (t < 0) return Invalid(fmt::format("series {}: timestamp {} is before 1970", i, k));
      if (!std::isfinite(vals[k])) {
        return Invalid(fmt::format("series {}: value {} is not finite", i, k));
      }
      summary.min_ts = first ? t : std::min(summary.min_ts, t);
      summary.max_ts = first ? t : std::max(summary.max_ts, t);
      first = false;
    }
    total += vals.size();
  }
  if (total != expected_count) {
    return Invalid(fmt::format("batch says {} readings but holds {}", expected_count, total));
  }
  summary.count = total;
  return Status::Ok();
}

Result<UplinkSummary> Visit(int codec, std::string_view data, uint64_t seq, uint64_t low_seq,
                            uint64_t count, const SeriesVisitor& fn, size_t max_decompressed) {
  UplinkSummary summary;
  summary.seq = seq;
  summary.low_seq = low_seq;
  if (seq == 0) return Invalid("seq 0 is not a valid uplink sequence number");
  v1::ReadingBatch rb;
  VERGE_RETURN_IF_ERROR(ParseReadingBatch(codec, data, max_decompressed, rb));
  // One scratch per thread: a batch of 10,000 small series would otherwise allocate 10,000
  // vectors each time.
  thread_local std::vector<std::vector<int64_t>> ts;
  thread_local std::vector<std::vector<double>> values;
  VERGE_RETURN_IF_ERROR(CheckSeries(rb, count, ts, values, summary));
  if (fn) {
    for (int i = 0; i < rb.series_size(); ++i) {
      const auto& s = rb.series(i);
      const auto& vals = values[static_cast<size_t>(i)];
      if (vals.empty()) continue;
      fn(rb.devices(static_cast<int>(s.device())), rb.metrics(static_cast<int>(s.metric())),
         ts[static_cast<size_t>(i)], vals);
    }
  }
  return summary;
}

}  // namespace

Result<UplinkSummary> VisitUplink(const v1::UplinkBatch& batch, const SeriesVisitor& fn,
                                  size_t max_decompressed) {
  return Visit(batch.codec(), batch.data(), batch.seq(), batch.low_seq(), batch.count(), fn,
               max_decompressed);
}

Result<DecodedUplink> DecodeUplink(const v1::UplinkBatch& batch, size_t max_decompressed) {
  DecodedUplink out;
  std::unordered_map<std::string, size_t> index;
  auto summary = VisitUplink(
      batch,
      [&](const std::string& device, const std::string& metric, std::span<const int64_t> ts,
          std::span<const double> values) {
        auto [it, inserted] = index.emplace(device + '\0' + metric, out.series.size());
        if (inserted) {
          auto& s = out.series.emplace_back();
          s.device = device;
          s.metric = metric;
        }
        auto& s = out.series[it->second];
        s.ts.insert(s.ts.end(), ts.begin(), ts.end());
        s.values.insert(s.values.end(), values.begin(), values.end());
      },
      max_decompressed);
  if (!summary.ok()) return summary.status();
  static_cast<UplinkSummary&>(out) = *summary;
  for (auto& s : out.series) SortSeries(s);
  return out;
}

Store::UplinkRecord StageUplink(const std::string& node, v1::UplinkBatch&& batch,
                                const UplinkSummary& summary) {
  Store::UplinkRecord rec;
  rec.node = node;
  rec.seq = summary.seq;
  rec.low_seq = summary.low_seq;
  rec.count = summary.count;
  rec.min_ts = summary.min_ts;
  rec.max_ts = summary.max_ts;
  rec.codec = batch.codec();
  rec.data = std::move(*batch.mutable_data());
  return rec;
}

Status VisitStaged(const Store::UplinkRecord& record, const SeriesVisitor& fn) {
  auto summary = Visit(record.codec, record.data, record.seq, record.low_seq, record.count, fn,
                       kMaxUplinkDecompressedBytes);
  if (!summary.ok()) {
    return Error(Code::kDataLoss, "staged batch {} of node {} is damaged: {}", record.seq,
                 record.node, summary.status().message());
  }
  return Status::Ok();
}

Result<DecodedUplink> DecodeStaged(const Store::UplinkRecord& record) {
  v1::UplinkBatch b;
  b.set_seq(record.seq);
  b.set_low_seq(record.low_seq);
  b.set_count(static_cast<uint32_t>(record.count));
  b.set_codec(static_cast<v1::Codec>(record.codec));
  b.set_data(record.data);
  auto d = DecodeUplink(b);
  if (!d.ok()) {
    return Error(Code::kDataLoss, "staged batch {} of node {} is damaged: {}", record.seq,
                 record.node, d.status().message());
  }
  return d;
}

void SeriesMerger::Add(const std::string& device, const std::string& metric,
                       std::span<const int64_t> ts, std::span<const double> values) {
  key_.assign(device);
  key_.push_back('\0');
  key_.append(metric);
  auto it = index_.find(key_);
  if (it == index_.end()) {
    it = index_.emplace(key_, series_.size()).first;
    auto& s = series_.emplace_back();
    s.device = device;
    s.metric = metric;
  }
  auto& s = series_[it->second];
  s.ts.insert(s.ts.end(), ts.begin(), ts.end());
  s.values.insert(s.values.end(), values.begin(), values.end());
  readings_ += ts.size();
}

std::vector<Store::ChunkRecord> SeriesMerger::TakeChunks(const std::string& node) {
  std::vector<Store::ChunkRecord> chunks;
  for (auto& s : series_) {
    SortSeries(s);
    size_t begin = 0;
    while (begin < s.ts.size()) {
      int64_t bucket_end = ChunkBucket(s.ts[begin]) + kChunkSpanNs;
      size_t end = begin + 1;
      while (end < s.ts.size() && s.ts[end] < bucket_end && end - begin < kMaxChunkReadings) {
        ++end;
      }
      auto& c = chunks.emplace_back();
      c.node = node;
      c.device = s.device;
      c.metric = s.metric;
      c.start_ts = s.ts[begin];
      c.end_ts = s.ts[end - 1];
      c.count = static_cast<uint32_t>(end - begin);
      c.data = EncodeChunk(std::span(s.ts).subspan(begin, end - begin),
                           std::span(s.values).subspan(begin, end - begin));
      begin = end;
    }
  }
  index_.clear();
  series_.clear();
  readings_ = 0;
  return chunks;
}

std::vector<Store::ChunkRecord> MakeChunks(const std::string& node,
                                           std::vector<SeriesReadings> series) {
  SeriesMerger merger;
  for (const auto& s : series) merger.Add(s.device, s.metric, s.ts, s.values);
  return merger.TakeChunks(node);
}

}  // namespace verge::cloud
