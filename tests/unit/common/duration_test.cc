#include "common/duration.h"

#include <gtest/gtest.h>

namespace verge {
namespace {

TEST(Duration, ParsesTheDocumentedForms) {
  EXPECT_EQ(ParseDuration("500ms")->count(), 500);
  EXPECT_EQ(ParseDuration("3s")->count(), 3000);
  EXPECT_EQ(ParseDuration("90s")->count(), 90000);
  EXPECT_EQ(ParseDuration("5m")->count(), 300000);
  EXPECT_EQ(ParseDuration("24h")->count(), 86400000);
  EXPECT_EQ(ParseDuration("1h30m")->count(), 5400000);
  EXPECT_EQ(ParseDuration("1.5s")->count(), 1500);
  EXPECT_EQ(ParseDuration("2d")->count(), 2 * 86400000);
}

TEST(Duration, RejectsWithAReason) {
  for (const char* bad : {"", "5", "s", "5x", "-3s", "1e400s", "3s5", "..s", "9999999999999999h"}) {
    auto r = ParseDuration(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
    EXPECT_NE(r.status().message().find("500ms"), std::string::npos) << "message shows an example";
  }
}

TEST(Duration, FormatsShortestExactSpelling) {
  EXPECT_EQ(FormatDuration(Millis(0)), "0s");
  EXPECT_EQ(FormatDuration(Millis(1500)), "1500ms");
  EXPECT_EQ(FormatDuration(Millis(90000)), "90s");
  EXPECT_EQ(FormatDuration(Millis(300000)), "5m");
  EXPECT_EQ(FormatDuration(Millis(86400000)), "1d");
  for (int64_t ms : {1LL, 999LL, 61000LL, 3600000LL, 123456789LL}) {
    EXPECT_EQ(ParseDuration(FormatDuration(Millis(ms)))->count(), ms);
  }
}

}  // namespace
}  // namespace verge
