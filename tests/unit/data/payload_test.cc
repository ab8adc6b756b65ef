#include "node/data/payload.h"

#include <gtest/gtest.h>

#include <ostream>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace verge::data {

// gtest prints a Reading byte by byte otherwise. Static: ADL finds it, and the other test
// file may define its own.
[[maybe_unused]] static void PrintTo(const Reading& r, std::ostream* os) {
  *os << "{" << r.device << ", " << r.metric << ", " << r.ts_ns << ", " << r.value << "}";
}

namespace {

using Readings = std::vector<Reading>;
using Items = std::vector<uint32_t>;

::testing::AssertionResult Contains(std::string_view text, std::string_view part) {
  if (text.find(part) != std::string_view::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << text << "\" does not contain \"" << part << "\"";
}

constexpr int64_t kSec = 1'000'000'000;
constexpr int64_t kNow = 1'795'255'200 * kSec;      // 2026-11-21T10:00:00Z
constexpr int64_t kHourAgo = 1'795'251'600 * kSec;  // 2026-11-21T09:00:00Z

ParseOptions Options(std::string_view default_device = {}) {
  ParseOptions o;
  o.now_ns = kNow;
  o.default_device = default_device;
  return o;
}

ParseResult Parse(std::string_view body, Framing framing = Framing::kJson,
                  const ParseOptions& options = Options()) {
  PayloadParser parser;
  ParseResult out;
  Status st = parser.Parse(body, framing, options, out);
  EXPECT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(out.readings.size(), out.item_of.size());
  return out;
}

Status ParseError(std::string_view body, const ParseOptions& options = Options()) {
  PayloadParser parser;
  ParseResult out;
  out.readings.push_back(Reading{"stale", "x", 1, 1});
  Status st = parser.Parse(body, Framing::kJson, options, out);
  EXPECT_FALSE(st.ok());
  EXPECT_TRUE(out.readings.empty()) << "a failed body yields nothing";
  EXPECT_TRUE(out.rejected.empty());
  return st;
}

// The single rejection of a body that yields no reading.
Rejection OnlyRejection(std::string_view body, Framing framing = Framing::kJson,
                        const ParseOptions& options = Options()) {
  ParseResult r = Parse(body, framing, options);
  EXPECT_TRUE(r.readings.empty());
  EXPECT_EQ(r.rejected.size(), 1u);
  return r.rejected.empty() ? Rejection{} : r.rejected.front();
}

int64_t TimestampOf(std::string_view ts_json) {
  ParseResult r = Parse(R"({"device_id":"d1","value":1,"timestamp":)" + std::string(ts_json) + "}");
  EXPECT_EQ(r.readings.size(), 1u) << ts_json;
  EXPECT_TRUE(r.rejected.empty()) << (r.rejected.empty() ? "" : r.rejected[0].message);
  return r.readings.empty() ? 0 : r.readings[0].ts_ns;
}

// The message of the rejection of a timestamp, which must be kBadTimestamp.
std::string TimestampError(std::string_view ts_json, const ParseOptions& options = Options()) {
  Rejection r =
      OnlyRejection(R"({"device_id":"d1","value":1,"timestamp":)" + std::string(ts_json) + "}",
                    Framing::kJson, options);
  EXPECT_EQ(r.reason, RejectReason::kBadTimestamp) << ts_json << ": " << r.message;
  EXPECT_EQ(r.metric, "");
  return r.message;
}

// --- Framings and forms ---------------------------------------------------------------------

TEST(Payload, SingleObjectWithValue) {
  ParseResult r = Parse(R"({"device_id": "d1", "value": 21.5, "timestamp": 1795251600})");
  EXPECT_EQ(r.readings, (Readings{Reading{"d1", "value", kHourAgo, 21.5}}));
  EXPECT_EQ(r.item_of, (Items{0}));
  EXPECT_TRUE(r.rejected.empty());
}

TEST(Payload, MetricKeyNamesTheValue) {
  ParseResult r = Parse(R"({"metric": "temp", "device_id": "d1", "value": 3})");
  EXPECT_EQ(r.readings, (Readings{Reading{"d1", "temp", kNow, 3}}));
}

TEST(Payload, MetricsObjectGivesOneReadingPerMetricInOrder) {
  ParseResult r = Parse(
      R"({"device_id":"d1","timestamp":1795251600,"metrics":{"temp":21.5,"hum":40,"on":true}})");
  EXPECT_EQ(r.readings,
            (Readings{Reading{"d1", "temp", kHourAgo, 21.5}, Reading{"d1", "hum", kHourAgo, 40},
                      Reading{"d1", "on", kHourAgo, 1}}));
  EXPECT_EQ(r.item_of, (Items{0, 0, 0}));
}

TEST(Payload, KeysInAnyOrder) {
  ParseResult r = Parse(R"({"metrics":{"a":1},"timestamp":1795251600,"device_id":"d1"})");
  EXPECT_EQ(r.readings, (Readings{Reading{"d1", "a", kHourAgo, 1}}));
}

TEST(Payload, ArrayOfObjectsMixesForms) {
  ParseResult r = Parse(R"([
    {"device_id": "d1", "value": 1},
    {"device_id": "d2", "metrics": {"a": 2, "b": 3}},
    {"device_id": "d3", "metric": "m", "value": 4}
  ])");
  EXPECT_EQ(r.readings, (Readings{Reading{"d1", "value", kNow, 1}, Reading{"d2", "a", kNow, 2},
                                  Reading{"d2", "b", kNow, 3}, Reading{"d3", "m", kNow, 4}}));
  EXPECT_EQ(r.item_of, (Items{0, 1, 1, 2}));
}

TEST(Payload, EmptyArrayIsFine) {
  ParseResult r = Parse("  [ ]  ");
  EXPECT_TRUE(r.readings.empty());
  EXPECT_TRUE(r.rejected.empty());
}

TEST(Payload, UnknownKeysAreIgnored) {
  ParseResult r = Parse(
      R"({"device_id":"d1","seq":7,"fw":{"v":[1,2,{"x":null}]},"note":"hi","value":1,"ok":false})");
  EXPECT_EQ(r.readings, (Readings{Reading{"d1", "value", kNow, 1}}));
  EXPECT_TRUE(r.rejected.empty());
}

TEST(Payload, EscapedKeysAndNamesAreUnescaped) {
  ParseResult r = Parse(R"({"device\u005fid":"d\u0031","metrics":{"t\u0065mp":1}})");
  EXPECT_EQ(r.readings, (Readings{Reading{"d1", "temp", kNow, 1}}));
}

TEST(Payload, NdjsonOneObjectPerLineSkippingBlankLines) {
  ParseResult r = Parse(
      "{\"device_id\":\"d1\",\"value\":1}\n"
      "\n"
      "   \t\r\n"
      "{\"device_id\":\"d2\",\"metrics\":{\"a\":2,\"b\":3}}\r\n"
      "{\"device_id\":\"d3\",\"value\":4}",  // no final newline
      Framing::kNdjson);
  EXPECT_EQ(r.readings, (Readings{Reading{"d1", "value", kNow, 1}, Reading{"d2", "a", kNow, 2},
                                  Reading{"d2", "b", kNow, 3}, Reading{"d3", "value", kNow, 4}}));
  EXPECT_EQ(r.item_of, (Items{0, 3, 3, 4})) << "item = line number - 1";
  EXPECT_TRUE(r.rejected.empty());
}

TEST(Payload, NdjsonEmptyBodyIsFine) {
  EXPECT_TRUE(Parse("", Framing::kNdjson).readings.empty());
  EXPECT_TRUE(Parse("\n\n", Framing::kNdjson).rejected.empty());
}

TEST(Payload, NdjsonMalformedLineDoesNotBlockItsNeighbours) {
  ParseResult r = Parse(
      "{\"device_id\":\"d1\",\"value\":1}\n"
      "{\"device_id\":\"d2\",\"value\":\n"
      "{\"device_id\":\"d3\",\"value\":3}\n",
      Framing::kNdjson);
  EXPECT_EQ(r.readings,
            (Readings{Reading{"d1", "value", kNow, 1}, Reading{"d3", "value", kNow, 3}}));
  EXPECT_EQ(r.item_of, (Items{0, 2}));
  ASSERT_EQ(r.rejected.size(), 1u);
  EXPECT_EQ(r.rejected[0].item, 1u);
  EXPECT_EQ(r.rejected[0].reason, RejectReason::kMalformed);
  EXPECT_TRUE(Contains(r.rejected[0].message, "malformed JSON at column"));
}

TEST(Payload, NdjsonLineIsAllOrNothing) {
  // The first metric of line 1 parses fine before the line turns out to be broken.
  ParseResult r = Parse(
      "{\"device_id\":\"d1\",\"metrics\":{\"a\":1,\"b\":2}} trailing\n"
      "{\"device_id\":\"d1\",\"metrics\":{\"a\":1,\"b\":tru}}\n"
      "{\"device_id\":\"d2\",\"value\":5}\n",
      Framing::kNdjson);
  EXPECT_EQ(r.readings, (Readings{Reading{"d2", "value", kNow, 5}}));
  ASSERT_EQ(r.rejected.size(), 2u);
  EXPECT_EQ(r.rejected[0].item, 0u);
  EXPECT_TRUE(Contains(r.rejected[0].message, "trailing characters"));
  EXPECT_EQ(r.rejected[1].item, 1u);
  EXPECT_EQ(r.rejected[1].reason, RejectReason::kMalformed);
}

TEST(Payload, NdjsonLineMustBeAnObject) {
  ParseResult r = Parse("[{\"device_id\":\"d1\",\"value\":1}]\n42\n\"x\"\n", Framing::kNdjson);
  EXPECT_TRUE(r.readings.empty());
  ASSERT_EQ(r.rejected.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(r.rejected[i].item, i);
    EXPECT_EQ(r.rejected[i].reason, RejectReason::kMalformed);
  }
  EXPECT_TRUE(Contains(r.rejected[0].message, "line is an array"));
}

TEST(Payload, NdjsonInvalidUtf8RejectsOnlyThatLine) {
  ParseResult r = Parse(
      "{\"device_id\":\"d1\",\"value\":1}\n"
      "{\"device_id\":\"d\xff\",\"value\":2}\n"
      "{\"device_id\":\"d3\",\"value\":3}\n",
      Framing::kNdjson);
  EXPECT_EQ(r.readings.size(), 2u);
  ASSERT_EQ(r.rejected.size(), 1u);
  EXPECT_EQ(r.rejected[0].item, 1u);
  EXPECT_EQ(r.rejected[0].message, "malformed JSON at column 16: invalid UTF-8");
}

TEST(Payload, ArrayItemThatIsNotAnObjectIsRejectedAlone) {
  ParseResult r = Parse(R"([{"device_id":"d1","value":1}, 5, [1], {"device_id":"d2","value":2}])");
  EXPECT_EQ(r.readings.size(), 2u);
  EXPECT_EQ(r.item_of, (Items{0, 3}));
  ASSERT_EQ(r.rejected.size(), 2u);
  EXPECT_EQ(r.rejected[0].item, 1u);
  EXPECT_EQ(r.rejected[0].message, "item is a number; want an object");
  EXPECT_EQ(r.rejected[1].item, 2u);
  EXPECT_EQ(r.rejected[1].reason, RejectReason::kMalformed);
}

TEST(Payload, BadItemNextToGoodOnes) {
  ParseResult r = Parse(R"([
    {"device_id": "d1", "value": 1},
    {"device_id": "d1", "value": "high"},
    {"device_id": "d1", "value": 3, "timestamp": "yesterday"},
    {"value": 4},
    {"device_id": "d1", "value": 5}
  ])");
  EXPECT_EQ(r.readings,
            (Readings{Reading{"d1", "value", kNow, 1}, Reading{"d1", "value", kNow, 5}}));
  EXPECT_EQ(r.item_of, (Items{0, 4}));
  ASSERT_EQ(r.rejected.size(), 3u);
  EXPECT_EQ(r.rejected[0].item, 1u);
  EXPECT_EQ(r.rejected[0].reason, RejectReason::kBadValue);
  EXPECT_EQ(r.rejected[0].metric, "value");
  EXPECT_EQ(r.rejected[1].item, 2u);
  EXPECT_EQ(r.rejected[1].reason, RejectReason::kBadTimestamp);
  EXPECT_EQ(r.rejected[2].item, 3u);
  EXPECT_EQ(r.rejected[2].reason, RejectReason::kMissingDevice);
}

// --- Malformed bodies -------------------------------------------------------------------------

TEST(Payload, MalformedJsonFailsTheWholeBody) {
  Status st = ParseError(R"([{"device_id":"d1","value":1},{"device_id" "d2"}])");
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  EXPECT_TRUE(Contains(st.message(), "malformed JSON at byte "));
}

TEST(Payload, MalformedJsonReportsTheByte) {
  EXPECT_EQ(
      ParseError("[{\"device_id\":\"d1\",\"value\":1},{\"device_id\":\"\xc3\x28\"}]").message(),
      "malformed JSON at byte 44: invalid UTF-8");
  EXPECT_TRUE(Contains(ParseError(R"({"device_id":"d1","value":1,})").message(),
                       "malformed JSON at byte 28: invalid structure"));
}

TEST(Payload, MalformedFormsOfJson) {
  for (std::string_view body : {
           "",
           "   ",
           "{",
           "[{\"device_id\":\"d1\",\"value\":1}",
           "{\"device_id\":\"d1\",\"value\":1}}",
           "{\"device_id\":\"d1\",\"value\":1} x",
           "[{\"device_id\":\"d1\",\"value\":1}] [1]",
           "{\"device_id\":\"d1\",\"value\":01}",
           "{\"device_id\":\"d1\",\"value\":1.}",
           "{\"device_id\":\"d1\",\"value\":+1}",
           "{\"device_id\":\"d1\",\"value\":tru}",
           "{\"device_id\":\"d1\",\"value\":nul}",
           "{\"device_id\":\"d1\",\"value\":1,\"x\":\"\\q\"}",
           "{\"device_id\":\"d1\",\"value\":1,\"x\":\"a\x01\"}",
           "{\"device_id\":\"d1\",\"value\":1,\"x\":[1,2}}",  // hidden under an ignored key
           "{\"device_id\":\"d1\",\"value\":1,\"x\":{\"a\" 1}}",
           "{\"device_id\":\"d1\",\"metrics\":{\"a\":1,}}",
           "{'device_id':'d1','value':1}",
       }) {
    PayloadParser parser;
    ParseResult out;
    Status st = parser.Parse(body, Framing::kJson, Options(), out);
    EXPECT_FALSE(st.ok()) << "body: " << body;
    EXPECT_TRUE(Contains(st.message(), "malformed JSON at byte ")) << body;
    EXPECT_TRUE(out.readings.empty()) << body;
  }
}

TEST(Payload, TopLevelMustBeObjectOrArray) {
  EXPECT_EQ(ParseError("42").message(),
            "body is a number; want a JSON object or an array of objects");
  EXPECT_TRUE(Contains(ParseError("\"s\"").message(), "body is a string"));
}

TEST(Payload, NestingDeeperThanTheLimitIsRefused) {
  std::string deep = std::string(100, '[') + std::string(100, ']');
  EXPECT_TRUE(Contains(ParseError(R"({"device_id":"d1","value":1,"x":)" + deep + "}").message(),
                       "nested too deeply"));
  std::string ok = std::string(30, '[') + std::string(30, ']');
  EXPECT_EQ(Parse(R"({"device_id":"d1","value":1,"x":)" + ok + "}").readings.size(), 1u);
}

// --- Values -----------------------------------------------------------------------------------

TEST(Payload, BooleansBecomeOneAndZero) {
  ParseResult r = Parse(R"({"device_id":"d1","metrics":{"a":true,"b":false}})");
  EXPECT_EQ(r.readings, (Readings{Reading{"d1", "a", kNow, 1}, Reading{"d1", "b", kNow, 0}}));
}

TEST(Payload, NumberForms) {
  ParseResult r = Parse(R"({"device_id":"d1","metrics":{"a":-0.5,"b":1e3,"c":2E-2,"d":-7,)"
                        R"("e":123456789012345678901234567890,"f":1e-999}})");
  ASSERT_EQ(r.readings.size(), 6u);
  EXPECT_EQ(r.readings[0].value, -0.5);
  EXPECT_EQ(r.readings[1].value, 1000);
  EXPECT_EQ(r.readings[2].value, 0.02);
  EXPECT_EQ(r.readings[3].value, -7);
  EXPECT_DOUBLE_EQ(r.readings[4].value, 1.2345678901234568e29);
  EXPECT_EQ(r.readings[5].value, 0) << "underflow rounds to zero";
}

TEST(Payload, NonNumericValuesAreRejectedPerMetric) {
  ParseResult r =
      Parse(R"({"device_id":"d1","metrics":{"s":"1","n":null,"o":{"x":1},"a":[1],"ok":2}})");
  EXPECT_EQ(r.readings, (Readings{Reading{"d1", "ok", kNow, 2}}));
  ASSERT_EQ(r.rejected.size(), 4u);
  std::vector<std::string> metrics;
  for (const Rejection& j : r.rejected) {
    EXPECT_EQ(j.reason, RejectReason::kBadValue);
    EXPECT_EQ(j.item, 0u);
    metrics.push_back(j.metric);
  }
  EXPECT_EQ(metrics, (std::vector<std::string>{"s", "n", "o", "a"}));
  EXPECT_EQ(r.rejected[0].message, "value of s is a string; want a number, true or false");
  EXPECT_EQ(r.rejected[1].message, "value of n is null; want a number, true or false");
}

TEST(Payload, NumbersBeyondDoubleAreRejectedNotInfinite) {
  ParseResult r = Parse(R"([{"device_id":"d1","metrics":{"big":1e999,"small":-1e999,"ok":1}},
                            {"device_id":"d1","value":1e400}])");
  EXPECT_EQ(r.readings, (Readings{Reading{"d1", "ok", kNow, 1}}));
  ASSERT_EQ(r.rejected.size(), 3u);
  EXPECT_EQ(r.rejected[0].metric, "big");
  EXPECT_EQ(r.rejected[0].reason, RejectReason::kBadValue);
  EXPECT_EQ(r.rejected[0].message, "value of big is beyond the range of a double");
  EXPECT_EQ(r.rejected[1].metric, "small");
  EXPECT_EQ(r.rejected[2].item, 1u);
  EXPECT_EQ(r.rejected[2].metric, "value");
}

// --- Timestamps -------------------------------------------------------------------------------

TEST(Payload, MissingTimestampIsNow) {
  EXPECT_EQ(Parse(R"({"device_id":"d1","value":1})").readings.at(0).ts_ns, kNow);
}

TEST(Payload, EpochNumberUnitFollowsMagnitude) {
  EXPECT_EQ(TimestampOf("1795251600"), kHourAgo);
  EXPECT_EQ(TimestampOf("1795251600123"), kHourAgo + 123'000'000);
  EXPECT_EQ(TimestampOf("1795251600123456"), kHourAgo + 123'456'000);
  EXPECT_EQ(TimestampOf("1795251600123456789"), kHourAgo + 123'456'789)
      << "nanoseconds are exact, not rounded through a double";
}

TEST(Payload, FractionalEpochNumbers) {
  EXPECT_EQ(TimestampOf("1795251600.5"), kHourAgo + 500'000'000);
  EXPECT_EQ(TimestampOf("1795251600.25"), kHourAgo + 250'000'000);
  EXPECT_EQ(TimestampOf("1795251600123.5"), kHourAgo + 123'500'000);
  EXPECT_EQ(TimestampOf("1.7952516e9"), kHourAgo);
  // A double holds about 0.2 us at this magnitude: the result is within that of the text.
  EXPECT_NEAR(static_cast<double>(TimestampOf("1795251600.123456")),
              static_cast<double>(kHourAgo + 123'456'000), 500);
}

TEST(Payload, EpochMagnitudeBoundaries) {
  // Each boundary is told apart by how the value is read: just below it the smaller unit
  // overflows int64 nanoseconds, at it the larger unit lands in 1973.
  EXPECT_TRUE(Contains(TimestampError("99999999999"), "out of range"));  // seconds
  EXPECT_TRUE(Contains(TimestampError("100000000000"), "before 2000"));  // milliseconds
  EXPECT_TRUE(Contains(TimestampError("99999999999999"), "out of range"));
  EXPECT_TRUE(Contains(TimestampError("100000000000000"), "before 2000"));  // microseconds
  EXPECT_TRUE(Contains(TimestampError("99999999999999999"), "out of range"));
  EXPECT_TRUE(Contains(TimestampError("100000000000000000"), "before 2000"));  // nanoseconds
  EXPECT_TRUE(Contains(TimestampError("99999999999.5"), "out of range"));
  EXPECT_TRUE(Contains(TimestampError("100000000000.5"), "before 2000"));
}

TEST(Payload, EpochOutOfRange) {
  EXPECT_TRUE(Contains(TimestampError("18446744073709551615"), "out of range"));
  EXPECT_TRUE(Contains(TimestampError("99999999999999999999999"), "out of range"));
  EXPECT_TRUE(Contains(TimestampError("1e999"), "out of range"));
  EXPECT_TRUE(Contains(TimestampError("-9223372036854775808"), "out of range"));
  EXPECT_TRUE(Contains(TimestampError("-1"), "before 2000"));
  EXPECT_TRUE(Contains(TimestampError("0"), "before 2000"));
}

TEST(Payload, TimestampBefore2000IsRejected) {
  EXPECT_EQ(TimestampOf(R"("2000-01-01T00:00:00Z")"), kMinTimestampNs);
  EXPECT_EQ(TimestampOf("946684800"), kMinTimestampNs);
  EXPECT_EQ(TimestampError("946684799"), "timestamp 946684799 is before 2000-01-01T00:00:00Z");
  EXPECT_EQ(TimestampError(R"("1999-12-31T23:59:59Z")"),
            "timestamp \"1999-12-31T23:59:59Z\" is before 2000-01-01T00:00:00Z");
}

TEST(Payload, TimestampTooFarInTheFuture) {
  constexpr int64_t kFiveMin = 300 * kSec;
  EXPECT_EQ(TimestampOf(std::to_string(kNow + kFiveMin)), kNow + kFiveMin);
  EXPECT_EQ(TimestampError(std::to_string(kNow + kFiveMin + 1)),
            "timestamp is 300.000 s ahead of the node's clock; at most 300.000 s is allowed");
  ParseOptions strict = Options();
  strict.max_future_ns = kSec;
  EXPECT_TRUE(Contains(TimestampError(std::to_string(kNow + 2 * kSec), strict), "2.000 s ahead"));
}

TEST(Payload, TimestampOfTheWrongType) {
  EXPECT_EQ(TimestampError("true"),
            "timestamp is a boolean; want Unix time as a number or an RFC 3339 string");
  EXPECT_TRUE(Contains(TimestampError("null"), "is null"));
  EXPECT_TRUE(Contains(TimestampError(R"({"s":1})"), "is an object"));
  EXPECT_TRUE(Contains(TimestampError(R"("1795251600")"), "not an RFC 3339 date-time"));
}

TEST(Payload, BadTimestampRejectsEveryMetricOfTheItem) {
  Rejection r = OnlyRejection(R"({"device_id":"d1","timestamp":"x","metrics":{"a":1,"b":2}})");
  EXPECT_EQ(r.reason, RejectReason::kBadTimestamp);
  EXPECT_EQ(r.metric, "");
}

// --- Devices and names ------------------------------------------------------------------------

TEST(Payload, MissingDevice) {
  Rejection r = OnlyRejection(R"({"value":1})");
  EXPECT_EQ(r.reason, RejectReason::kMissingDevice);
  EXPECT_EQ(r.message, "device_id is missing");
}

TEST(Payload, DefaultDeviceFillsInMissingDeviceId) {
  ParseResult r =
      Parse(R"([{"value":1},{"device_id":"pump-7","value":2}])", Framing::kJson, Options("pump-7"));
  EXPECT_EQ(r.readings,
            (Readings{Reading{"pump-7", "value", kNow, 1}, Reading{"pump-7", "value", kNow, 2}}));
}

TEST(Payload, DeviceIdMustMatchTheDefaultDevice) {
  ParseResult r =
      Parse(R"([{"device_id":"pump-8","value":1},{"value":2}])", Framing::kJson, Options("pump-7"));
  EXPECT_EQ(r.readings, (Readings{Reading{"pump-7", "value", kNow, 2}}));
  ASSERT_EQ(r.rejected.size(), 1u);
  EXPECT_EQ(r.rejected[0].reason, RejectReason::kWrongDevice);
  EXPECT_EQ(r.rejected[0].message,
            "device_id \"pump-8\" does not match the authenticated device \"pump-7\"");
}

TEST(Payload, InvalidDefaultDevice) {
  Rejection r = OnlyRejection(R"({"value":1})", Framing::kJson, Options("bad/topic"));
  EXPECT_EQ(r.reason, RejectReason::kBadName);
}

TEST(Payload, DeviceNames) {
  const std::string name64(64, 'a');
  EXPECT_EQ(Parse(R"({"device_id":"A-z_0.9:x","value":1})").readings.size(), 1u);
  EXPECT_EQ(Parse(R"({"device_id":")" + name64 + R"(","value":1})").readings.size(), 1u);
  for (const std::string& bad :
       std::vector<std::string>{R"("")", R"("a b")", R"("a/b")", R"("é")", R"("a\u0000")",
                                "\"" + name64 + "a\"", "42", "null", R"(["d1"])"}) {
    Rejection r = OnlyRejection(R"({"device_id":)" + bad + R"(,"value":1})");
    EXPECT_EQ(r.reason, RejectReason::kBadName) << bad << ": " << r.message;
  }
  EXPECT_EQ(OnlyRejection(R"({"device_id":"a b","value":1})").message,
            "device_id \"a b\" may hold only letters, digits and _ . : -");
  EXPECT_EQ(OnlyRejection(R"({"device_id":7,"value":1})").message, "device_id must be a string");
}

TEST(Payload, LongNamesAreClippedInRejections) {
  std::string huge(10'000, 'm');
  Rejection r = OnlyRejection(R"({"device_id":"d1","metrics":{")" + huge + R"(":1}})");
  EXPECT_EQ(r.reason, RejectReason::kBadName);
  EXPECT_EQ(r.metric, std::string(64, 'm'));
  EXPECT_LT(r.message.size(), 200u);
}

TEST(Payload, MetricNames) {
  ParseResult r = Parse(R"({"device_id":"d1","metrics":{"ok":1,"bad name":2,"":3}})");
  EXPECT_EQ(r.readings, (Readings{Reading{"d1", "ok", kNow, 1}}));
  ASSERT_EQ(r.rejected.size(), 2u);
  EXPECT_EQ(r.rejected[0].reason, RejectReason::kBadName);
  EXPECT_EQ(r.rejected[0].metric, "bad name");
  EXPECT_EQ(r.rejected[1].metric, "");
  EXPECT_EQ(r.rejected[1].message, "metric is empty");

  EXPECT_EQ(OnlyRejection(R"({"device_id":"d1","metric":"a b","value":1})").metric, "a b");
  EXPECT_EQ(OnlyRejection(R"({"device_id":"d1","metric":5,"value":1})").message,
            "metric must be a string");
}

// --- Shape ------------------------------------------------------------------------------------

TEST(Payload, ItemShapeProblems) {
  struct Case {
    const char* body;
    const char* message;
  };
  for (const Case& c : {
           Case{R"({"device_id":"d1"})", "item has neither value nor metrics"},
           Case{R"({"device_id":"d1","value":1,"metrics":{"a":1}})",
                "item has both value and metrics; send one of them"},
           Case{R"({"device_id":"d1","metric":"m","metrics":{"a":1}})",
                "metric names the single value; it cannot go with metrics"},
           Case{R"({"device_id":"d1","metrics":[1]})", "metrics must be an object of name: value"},
           Case{R"({"device_id":"d1","metrics":{}})", "metrics is empty"},
           Case{R"({"device_id":"d1","value":1,"value":2})", "key \"value\" appears twice"},
           Case{R"({"device_id":"d1","device_id":"d1","value":1})",
                "key \"device_id\" appears twice"},
       }) {
    Rejection r = OnlyRejection(c.body);
    EXPECT_EQ(r.reason, RejectReason::kMalformed) << c.body;
    EXPECT_EQ(r.message, c.message) << c.body;
    EXPECT_EQ(r.metric, "");
  }
}

// --- Limits -----------------------------------------------------------------------------------

TEST(Payload, MaxItemsInAnArray) {
  ParseOptions o = Options();
  o.max_items = 2;
  ParseResult r = Parse(
      R"([{"device_id":"d1","value":1},{"device_id":"d1","value":2},{"device_id":"d1","value":3},
          {"device_id":"d1","value":4}])",
      Framing::kJson, o);
  EXPECT_EQ(r.readings.size(), 2u);
  ASSERT_EQ(r.rejected.size(), 1u);
  EXPECT_EQ(r.rejected[0].item, 2u);
  EXPECT_EQ(r.rejected[0].reason, RejectReason::kTooMany);
  EXPECT_EQ(r.rejected[0].message,
            "body has more than 2 items; this one and all after it were dropped");
}

TEST(Payload, MaxItemsInNdjsonCountsObjectsNotLines) {
  ParseOptions o = Options();
  o.max_items = 2;
  ParseResult r = Parse(
      "{\"device_id\":\"d1\",\"value\":1}\n\n\n{\"device_id\":\"d1\",\"value\":2}\n\n"
      "{\"device_id\":\"d1\",\"value\":3}\n{\"device_id\":\"d1\",\"value\":4}\n",
      Framing::kNdjson, o);
  EXPECT_EQ(r.readings.size(), 2u);
  ASSERT_EQ(r.rejected.size(), 1u);
  EXPECT_EQ(r.rejected[0].item, 5u);
  EXPECT_EQ(r.rejected[0].reason, RejectReason::kTooMany);
}

TEST(Payload, MaxMetricsPerItem) {
  ParseOptions o = Options();
  o.max_metrics_per_item = 2;
  EXPECT_EQ(
      Parse(R"({"device_id":"d1","metrics":{"a":1,"b":2}})", Framing::kJson, o).readings.size(),
      2u);
  Rejection r =
      OnlyRejection(R"({"device_id":"d1","metrics":{"a":1,"b":2,"c":3}})", Framing::kJson, o);
  EXPECT_EQ(r.reason, RejectReason::kTooMany);
  EXPECT_EQ(r.message, "item has 3 metrics, more than the limit of 2");
}

TEST(Payload, MultiMegabyteBodies) {
  std::string nd, array = "[";
  constexpr int kItems = 30'000;
  for (int i = 0; i < kItems; ++i) {
    std::string item = R"({"device_id":"plant1.line3.press-)" + std::to_string(i % 50) +
                       R"(","timestamp":)" + std::to_string(1'795'251'600'000 + i) +
                       R"(,"metrics":{"temp":21.5,"pressure":101325,"running":true}})";
    nd += item + "\n";
    array += (i ? "," : "") + item;
  }
  array += "]";
  ASSERT_GT(nd.size(), 3'000'000u);
  ParseOptions o = Options();
  o.max_items = 100'000;
  for (auto [body, framing] : std::vector<std::pair<const std::string*, Framing>>{
           {&nd, Framing::kNdjson}, {&array, Framing::kJson}}) {
    ParseResult r = Parse(*body, framing, o);
    EXPECT_TRUE(r.rejected.empty());
    ASSERT_EQ(r.readings.size(), size_t{3 * kItems});
    EXPECT_EQ(r.readings.back(), (Reading{"plant1.line3.press-49", "running",
                                          kHourAgo + (kItems - 1) * int64_t{1'000'000}, 1}));
    EXPECT_EQ(r.item_of.back(), static_cast<uint32_t>(kItems - 1));
  }
}

// --- The parser object ------------------------------------------------------------------------

TEST(PayloadParser, ReusedAcrossBodiesAndClearsTheResult) {
  PayloadParser parser;
  ParseResult out;
  ASSERT_TRUE(parser
                  .Parse(R"([{"device_id":"d1","metrics":{"a":1,"b":2}},{"value":1}])",
                         Framing::kJson, Options(), out)
                  .ok());
  EXPECT_EQ(out.readings.size(), 2u);
  EXPECT_EQ(out.rejected.size(), 1u);
  ASSERT_TRUE(
      parser.Parse("{\"device_id\":\"d2\",\"value\":3}", Framing::kNdjson, Options(), out).ok());
  EXPECT_EQ(out.readings, (Readings{Reading{"d2", "value", kNow, 3}}));
  EXPECT_EQ(out.item_of, (Items{0}));
  EXPECT_TRUE(out.rejected.empty());
}

TEST(PayloadParser, CountsWhatItDecides) {
  PayloadParser parser;
  ParseResult out;
  ASSERT_TRUE(parser
                  .Parse(R"([{"device_id":"d1","metrics":{"a":1,"b":"x"}},{"value":1}])",
                         Framing::kJson, Options(), out)
                  .ok());
  EXPECT_FALSE(parser.Parse("[", Framing::kJson, Options(), out).ok());
  ASSERT_TRUE(
      parser.Parse("{\"device_id\":\"d1\",\"value\":1}\n{\n", Framing::kNdjson, Options(), out)
          .ok());
  const IngestCounters& c = parser.counters();
  EXPECT_EQ(c.accepted, 2u);
  EXPECT_EQ(c[RejectReason::kBadValue], 1u);
  EXPECT_EQ(c[RejectReason::kMissingDevice], 1u);
  EXPECT_EQ(c[RejectReason::kMalformed], 2u) << "one failed body, one malformed line";
  EXPECT_EQ(c.total_rejected(), 4u);
}

TEST(RejectReason, NamesAreStableSnakeCase) {
  EXPECT_EQ(ReasonName(RejectReason::kMalformed), "malformed");
  EXPECT_EQ(ReasonName(RejectReason::kMissingDevice), "missing_device");
  EXPECT_EQ(ReasonName(RejectReason::kWrongDevice), "wrong_device");
  EXPECT_EQ(ReasonName(RejectReason::kBadName), "bad_name");
  EXPECT_EQ(ReasonName(RejectReason::kBadValue), "bad_value");
  EXPECT_EQ(ReasonName(RejectReason::kBadTimestamp), "bad_timestamp");
  EXPECT_EQ(ReasonName(RejectReason::kTooMany), "too_many");
  EXPECT_EQ(ReasonName(RejectReason::kOutOfRange), "out_of_range");
  EXPECT_EQ(ReasonName(RejectReason::kUnknownDevice), "unknown_device");
  EXPECT_EQ(ReasonName(RejectReason::kUnknownMetric), "unknown_metric");
  EXPECT_EQ(ReasonName(RejectReason::kDuplicate), "duplicate");
  EXPECT_EQ(ReasonName(RejectReason::kBadUnit), "bad_unit");
  std::set<std::string_view> names;
  for (size_t i = 0; i < kNumRejectReasons; ++i) {
    names.insert(ReasonName(static_cast<RejectReason>(i)));
  }
  EXPECT_EQ(names.size(), kNumRejectReasons);
}

TEST(Names, Validity) {
  EXPECT_TRUE(IsValidName("a"));
  EXPECT_TRUE(IsValidName("Plant-1.line_3:press"));
  EXPECT_TRUE(IsValidName(std::string(64, 'x')));
  EXPECT_FALSE(IsValidName(""));
  EXPECT_FALSE(IsValidName(std::string(65, 'x')));
  EXPECT_FALSE(IsValidName("a b"));
  EXPECT_FALSE(IsValidName("a/b"));
  EXPECT_FALSE(IsValidName(std::string("a\0b", 3)));
  EXPECT_FALSE(IsValidName("°C"));
}

}  // namespace
}  // namespace verge::data
