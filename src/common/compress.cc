#include "common/compress.h"

#include <zstd.h>

#include <memory>

namespace verge {

Result<std::string> ZstdCompress(std::string_view data, int level) {
  std::string out(ZSTD_compressBound(data.size()), '\0');
  size_t n = ZSTD_compress(out.data(), out.size(), data.data(), data.size(), level);
  if (ZSTD_isError(n)) return Error(Code::kInternal, "zstd: {}", ZSTD_getErrorName(n));
  out.resize(n);
  return out;
}

Result<std::string> ZstdDecompress(std::string_view data, size_t max_size) {
  unsigned long long declared = ZSTD_getFrameContentSize(data.data(), data.size());
  if (declared == ZSTD_CONTENTSIZE_ERROR) return Error(Code::kInvalidArgument, "not a zstd frame");
  std::string out;
  if (declared != ZSTD_CONTENTSIZE_UNKNOWN) {
    if (declared > max_size)
      return Error(Code::kResourceExhausted, "zstd frame declares {} bytes, limit {}", declared,
                   max_size);
    out.resize(static_cast<size_t>(declared));
    size_t n = ZSTD_decompress(out.data(), out.size(), data.data(), data.size());
    if (ZSTD_isError(n)) return Error(Code::kInvalidArgument, "zstd: {}", ZSTD_getErrorName(n));
    out.resize(n);
    return out;
  }
  // Streaming frames do not declare their size: decompress in steps, bounded by max_size.
  std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> ctx(ZSTD_createDCtx(), ZSTD_freeDCtx);
  if (!ctx) return Error(Code::kResourceExhausted, "zstd: out of memory");
  ZSTD_inBuffer in{data.data(), data.size(), 0};
  std::string chunk(ZSTD_DStreamOutSize(), '\0');
  for (;;) {
    ZSTD_outBuffer o{chunk.data(), chunk.size(), 0};
    size_t r = ZSTD_decompressStream(ctx.get(), &o, &in);
    if (ZSTD_isError(r)) return Error(Code::kInvalidArgument, "zstd: {}", ZSTD_getErrorName(r));
    out.append(chunk.data(), o.pos);
    if (out.size() > max_size)
      return Error(Code::kResourceExhausted, "zstd frame larger than {} bytes", max_size);
    if (r == 0) return out;
    if (in.pos == in.size && o.pos < o.size)
      return Error(Code::kInvalidArgument, "zstd frame is truncated");
  }
}

}  // namespace verge
