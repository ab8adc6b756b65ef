#include "common/compress.h"

#include <gtest/gtest.h>
#include <zstd.h>

namespace verge {
namespace {

TEST(Compress, RoundTrips) {
  std::string data;
  for (int i = 0; i < 10000; ++i) data += "reading " + std::to_string(i % 17) + ";";
  auto c = ZstdCompress(data);
  ASSERT_TRUE(c.ok());
  EXPECT_LT(c->size(), data.size() / 10);
  auto d = ZstdDecompress(*c, data.size());
  ASSERT_TRUE(d.ok()) << d.status().message();
  EXPECT_EQ(*d, data);
}

TEST(Compress, EmptyInputRoundTrips) {
  auto c = ZstdCompress("");
  ASSERT_TRUE(c.ok());
  auto d = ZstdDecompress(*c, 10);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(*d, "");
}

TEST(Compress, RefusesFramesLargerThanTheLimit) {
  std::string data(1 << 20, 'x');
  auto c = ZstdCompress(data);
  ASSERT_TRUE(c.ok());
  auto d = ZstdDecompress(*c, 1000);
  EXPECT_EQ(d.status().code(), Code::kResourceExhausted);
}

TEST(Compress, RefusesGarbageAndTruncation) {
  EXPECT_FALSE(ZstdDecompress("not zstd at all", 100).ok());
  auto c = ZstdCompress(std::string(5000, 'y') + "tail");
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(ZstdDecompress(c->substr(0, c->size() / 2), 100000).ok());
}

TEST(Compress, StreamingFrameWithoutDeclaredSizeIsBounded) {
  // A frame written by the streaming API carries no content size: the limit must still hold.
  std::string data(200000, 'z');
  std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> ctx(ZSTD_createCCtx(), ZSTD_freeCCtx);
  std::string out(ZSTD_compressBound(data.size()), '\0');
  ZSTD_inBuffer in{data.data(), data.size(), 0};
  ZSTD_outBuffer o{out.data(), out.size(), 0};
  ASSERT_EQ(ZSTD_compressStream2(ctx.get(), &o, &in, ZSTD_e_end), 0u);
  out.resize(o.pos);
  EXPECT_EQ(ZstdDecompress(out, 1000).status().code(), Code::kResourceExhausted);
  auto d = ZstdDecompress(out, data.size());
  ASSERT_TRUE(d.ok()) << d.status().message();
  EXPECT_EQ(*d, data);
}

}  // namespace
}  // namespace verge
