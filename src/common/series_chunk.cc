#include "common/series_chunk.h"

#include <fmt/format.h>
#include <zstd.h>

#include <bit>
#include <cstring>
#include <memory>

namespace verge {
namespace {

static_assert(std::endian::native == std::endian::little, "chunks store values little-endian");
// The value layout: XOR with the previous value in 8 byte planes, or the values as they are.
constexpr uint8_t kFormatXorPlanes = 1;
constexpr uint8_t kFormatRawValues = 2;
// Below this many readings both layouts compress about the same: only the first is tried.
constexpr size_t kTryBothFrom = 32;
constexpr uint8_t kCodecNone = 0;
constexpr uint8_t kCodecZstd = 1;
// Below this many readings zstd's frame costs more than it saves.
constexpr size_t kCompressFrom = 8;
// A chunk never holds more than one batch can (64 MiB at >= 9 bytes per reading).
constexpr uint64_t kMaxChunkCount = (uint64_t{64} << 20) / 8;

void PutVarint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

bool GetVarint(std::string_view& in, uint64_t& v) {
  v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (in.empty()) return false;
    auto b = static_cast<uint8_t>(in.front());
    in.remove_prefix(1);
    if (shift == 63 && b > 1) return false;
    v |= uint64_t{b & 0x7fu} << shift;
    if (!(b & 0x80)) return true;
  }
  return false;
}

uint64_t ZigZag(uint64_t v) { return (v << 1) ^ (0 - (v >> 63)); }
uint64_t UnZigZag(uint64_t v) { return (v >> 1) ^ (0 - (v & 1)); }

// One compression context per thread: creating one per chunk would cost more than the work.
ZSTD_CCtx* CCtx() {
  thread_local std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> ctx(ZSTD_createCCtx(),
                                                                      ZSTD_freeCCtx);
  return ctx.get();
}
ZSTD_DCtx* DCtx() {
  thread_local std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> ctx(ZSTD_createDCtx(),
                                                                      ZSTD_freeDCtx);
  return ctx.get();
}

}  // namespace

namespace {

// One encoding of a chunk: header, then the body, compressed when that is smaller.
std::string Frame(uint8_t format, size_t n, const std::string& body, bool compress) {
  std::string out;
  out.push_back(static_cast<char>(format));
  out.push_back(static_cast<char>(kCodecNone));
  PutVarint(out, n);
  PutVarint(out, body.size());
  size_t header = out.size();
  if (compress && n >= kCompressFrom) {
    out.resize(header + ZSTD_compressBound(body.size()));
    size_t z = ZSTD_compressCCtx(CCtx(), out.data() + header, out.size() - header, body.data(),
                                 body.size(), 1);
    if (!ZSTD_isError(z) && z < body.size()) {
      out[1] = static_cast<char>(kCodecZstd);
      out.resize(header + z);
      return out;
    }
    out.resize(header);
  }
  out += body;
  return out;
}

}  // namespace

std::string EncodeChunk(std::span<const int64_t> ts, std::span<const double> values,
                        ChunkEncoding encoding) {
  const size_t n = ts.size();
  std::string body;
  body.reserve(n * 18 + 8);
  uint64_t prev = 0, prev_delta = 0;
  for (size_t i = 0; i < n; ++i) {
    auto t = static_cast<uint64_t>(ts[i]);
    if (i == 0) {
      PutVarint(body, ZigZag(t));
    } else {
      uint64_t delta = t - prev;
      PutVarint(body, ZigZag(delta - prev_delta));
      prev_delta = delta;
    }
    prev = t;
  }
  const size_t values_at = body.size();
  if (encoding == ChunkEncoding::kFast) {
    body.resize(values_at + n * 8);
    if (n > 0) std::memcpy(body.data() + values_at, values.data(), n * 8);
    return Frame(kFormatRawValues, n, body, false);
  }
  body.resize(values_at + n * 8);
  auto* planes = reinterpret_cast<uint8_t*>(body.data() + values_at);
  uint64_t prev_bits = 0;
  for (size_t i = 0; i < n; ++i) {
    auto bits = std::bit_cast<uint64_t>(values[i]);
    uint64_t x = bits ^ prev_bits;
    prev_bits = bits;
    for (size_t b = 0; b < 8; ++b) planes[b * n + i] = static_cast<uint8_t>(x >> (8 * b));
  }
  std::string xor_planes = Frame(kFormatXorPlanes, n, body, true);
  if (n < kTryBothFrom) return xor_planes;
  // Values that repeat exactly (rounded readings, counters, states) compress better as they
  // are: zstd matches whole 8-byte values, which XOR with the previous value hides.
  std::memcpy(body.data() + values_at, values.data(), n * 8);
  std::string raw = Frame(kFormatRawValues, n, body, true);
  return raw.size() < xor_planes.size() ? raw : xor_planes;
}

Status DecodeChunk(std::string_view data, std::vector<int64_t>& ts, std::vector<double>& values) {
  const size_t ts_at = ts.size(), values_at = values.size();
  // On error the outputs are left as they were.
  auto damaged = [&](std::string_view why) {
    ts.resize(ts_at);
    values.resize(values_at);
    return Error(Code::kDataLoss, "telemetry chunk is damaged: {}", why);
  };
  if (data.size() < 2) return damaged("too short");
  auto format = static_cast<uint8_t>(data[0]);
  auto codec = static_cast<uint8_t>(data[1]);
  if (format != kFormatXorPlanes && format != kFormatRawValues) {
    return damaged(fmt::format("unknown format {}", format));
  }
  data.remove_prefix(2);
  uint64_t n = 0, body_size = 0;
  if (!GetVarint(data, n) || !GetVarint(data, body_size)) return damaged("bad header");
  // Each reading takes at least one timestamp byte and eight value bytes.
  if (n > kMaxChunkCount || body_size < n * 9 || body_size > n * 18 + 16) {
    return damaged("sizes do not fit");
  }
  std::string plain;
  std::string_view body;
  if (codec == kCodecZstd) {
    plain.resize(body_size);
    size_t z = ZSTD_decompressDCtx(DCtx(), plain.data(), plain.size(), data.data(), data.size());
    if (ZSTD_isError(z) || z != body_size) return damaged("bad zstd frame");
    body = plain;
  } else if (codec == kCodecNone) {
    if (data.size() != body_size) return damaged("body size mismatch");
    body = data;
  } else {
    return damaged(fmt::format("unknown codec {}", codec));
  }
  ts.reserve(ts_at + n);
  values.reserve(values.size() + n);
  uint64_t prev = 0, prev_delta = 0;
  for (uint64_t i = 0; i < n; ++i) {
    uint64_t z = 0;
    if (!GetVarint(body, z)) return damaged("bad timestamp");
    uint64_t v = UnZigZag(z);
    if (i == 0) {
      prev = v;
    } else {
      prev_delta += v;
      prev += prev_delta;
    }
    ts.push_back(static_cast<int64_t>(prev));
  }
  if (body.size() != n * 8) return damaged("values have the wrong size");
  if (format == kFormatRawValues) {
    // memcpy with n == 0 would still be given a null pointer by an empty vector.
    if (n > 0) {
      size_t at = values.size();
      values.resize(at + n);
      std::memcpy(values.data() + at, body.data(), n * 8);
    }
    return Status::Ok();
  }
  const auto* planes = reinterpret_cast<const uint8_t*>(body.data());
  uint64_t bits = 0;
  for (uint64_t i = 0; i < n; ++i) {
    uint64_t x = 0;
    for (uint64_t b = 0; b < 8; ++b) x |= uint64_t{planes[b * n + i]} << (8 * b);
    bits ^= x;
    values.push_back(std::bit_cast<double>(bits));
  }
  return Status::Ok();
}

Result<Aggregate> ParseAggregate(std::string_view s) {
  if (s.empty() || s == "none") return Aggregate::kNone;
  if (s == "avg" || s == "mean") return Aggregate::kAvg;
  if (s == "min") return Aggregate::kMin;
  if (s == "max") return Aggregate::kMax;
  if (s == "sum") return Aggregate::kSum;
  if (s == "count") return Aggregate::kCount;
  return Error(Code::kInvalidArgument, "unknown aggregate '{}' (avg, min, max, sum, count)", s);
}

}  // namespace verge
