// RFC 3339 parsing (device payloads' timestamps and the query APIs' time arguments).
#include "common/timestamp.h"

#include <gtest/gtest.h>

#include <string_view>

namespace verge {
namespace {

constexpr int64_t kSec = 1'000'000'000;
constexpr int64_t kHourAgo = 1'795'251'600 * kSec;  // 2026-11-21T09:00:00Z

::testing::AssertionResult Contains(std::string_view text, std::string_view part) {
  if (text.find(part) != std::string_view::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << text << "\" does not contain \"" << part << "\"";
}

TEST(Rfc3339, Forms) {
  const int64_t base = kHourAgo;
  EXPECT_EQ(*ParseRfc3339("2026-11-21T09:00:00Z"), base);
  EXPECT_EQ(*ParseRfc3339("2026-11-21t09:00:00z"), base);
  EXPECT_EQ(*ParseRfc3339("2026-11-21 09:00:00Z"), base);
  EXPECT_EQ(*ParseRfc3339("2026-11-21T10:00:00+01:00"), base);
  EXPECT_EQ(*ParseRfc3339("2026-11-21T03:30:00-05:30"), base);
  EXPECT_EQ(*ParseRfc3339("2026-11-21T09:00:00-00:00"), base);
  EXPECT_EQ(*ParseRfc3339("2026-11-22T08:59:00+23:59"), base);
  EXPECT_EQ(*ParseRfc3339("2024-02-29T00:00:00Z"), 1'709'164'800 * kSec);
  EXPECT_EQ(*ParseRfc3339("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(*ParseRfc3339("1969-12-31T23:59:59Z"), -kSec);
}

TEST(Rfc3339, FractionalSeconds) {
  const int64_t base = kHourAgo;
  EXPECT_EQ(*ParseRfc3339("2026-11-21T09:00:00.1Z"), base + 100'000'000);
  EXPECT_EQ(*ParseRfc3339("2026-11-21T09:00:00.123Z"), base + 123'000'000);
  EXPECT_EQ(*ParseRfc3339("2026-11-21T09:00:00.123456Z"), base + 123'456'000);
  EXPECT_EQ(*ParseRfc3339("2026-11-21T10:00:00.123456789+01:00"), base + 123'456'789);
  EXPECT_EQ(*ParseRfc3339("2026-11-21T09:00:00.1234567891234Z"), base + 123'456'789)
      << "digits past nanoseconds are dropped";
  EXPECT_EQ(*ParseRfc3339("2026-11-21T09:00:00.000000001Z"), base + 1);
}

TEST(Rfc3339, LeapSecondRollsIntoTheNextMinute) {
  EXPECT_EQ(*ParseRfc3339("2016-12-31T23:59:60Z"), (1'483'228'799 + 1) * kSec);
}

TEST(Rfc3339, Rejects) {
  for (std::string_view bad : {
           "",
           "2026-11-21",
           "2026-11-21T09:00Z",
           "2026-11-21T09:00:00",
           "2026-11-21T09:00:00+01",
           "2026-11-21T09:00:00+0100",
           "2026-11-21T09:00:00+24:00",
           "2026-11-21T09:00:00+01:60",
           "2026-11-21T09:00:00.Z",
           "2026-11-21T09:00:00ZZ",
           "2026-11-21T09:00:00Z ",
           "2026-13-01T00:00:00Z",
           "2026-00-01T00:00:00Z",
           "2026-02-29T00:00:00Z",
           "2026-04-31T00:00:00Z",
           "2026-11-00T00:00:00Z",
           "2026-11-21T24:00:00Z",
           "2026-11-21T09:60:00Z",
           "2026-11-21T09:00:61Z",
           "2026/11/21T09:00:00Z",
           "2026-11-21X09:00:00Z",
           "20261121T090000Z",
           "+2026-11-21T09:00:00Z",
           "2026-1-21T09:00:00Z",
           "9999-12-31T23:59:59Z",
           "0001-01-01T00:00:00Z",
       }) {
    Result<int64_t> r = ParseRfc3339(bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_TRUE(Contains(r.status().message(), "not an RFC 3339 date-time")) << bad;
    }
  }
}

TEST(FormatTimeNs, RoundTripsThroughParseRfc3339) {
  for (int64_t ns : {int64_t{0}, 1'795'251'600 * kSec, 1'795'251'600 * kSec + 1,
                     1'795'251'600 * kSec + 120'000'000, -kSec}) {
    auto back = ParseRfc3339(FormatTimeNs(ns));
    ASSERT_TRUE(back.ok()) << FormatTimeNs(ns);
    EXPECT_EQ(*back, ns) << FormatTimeNs(ns);
  }
  EXPECT_EQ(FormatTimeNs(1'795'251'600 * kSec), "2026-11-21T09:00:00Z");
  EXPECT_EQ(FormatTimeNs(1'795'251'600 * kSec + 120'000'000), "2026-11-21T09:00:00.12Z");
}

}  // namespace
}  // namespace verge
