#include "node/data/clean.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <ostream>
#include <set>
#include <string_view>
#include <vector>

#include "node/data/units.h"

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

constexpr int64_t kT = 1'795'251'600'000'000'000;  // 2026-11-21T09:00:00Z

// --- UnitTable --------------------------------------------------------------------------------

CleanerOptions Options(size_t window, size_t max_series, bool allow_unknown_devices = false) {
  CleanerOptions o;
  o.dedupe_window = window;
  o.max_series = max_series;
  o.allow_unknown_devices = allow_unknown_devices;
  return o;
}
constexpr size_t kWindow = CleanerOptions().dedupe_window;
constexpr size_t kMaxSeries = CleanerOptions().max_series;

double Convert(const UnitTable& t, std::string_view unit, double v) {
  const UnitConversion* c = t.Lookup(unit);
  EXPECT_NE(c, nullptr) << unit;
  return c == nullptr ? std::nan("") : c->Apply(v);
}

TEST(UnitTable, DefaultConversions) {
  UnitTable t = UnitTable::Defaults();
  EXPECT_DOUBLE_EQ(Convert(t, "degF", 212), 100);
  EXPECT_NEAR(Convert(t, "degF", 32), 0, 1e-12);
  EXPECT_NEAR(Convert(t, "degF", -40), -40, 1e-12);
  EXPECT_DOUBLE_EQ(Convert(t, "K", 273.15), 0);
  EXPECT_DOUBLE_EQ(Convert(t, "bar", 1.5), 150'000);
  EXPECT_DOUBLE_EQ(Convert(t, "kPa", 101.325), 101'325);
  EXPECT_DOUBLE_EQ(Convert(t, "hPa", 1013.25), 101'325);
  EXPECT_DOUBLE_EQ(Convert(t, "mbar", 1013.25), 101'325);
  EXPECT_NEAR(Convert(t, "psi", 14.6959), 101'325, 1);
  EXPECT_DOUBLE_EQ(Convert(t, "mA", 20), 0.02);
  EXPECT_DOUBLE_EQ(Convert(t, "mV", 3300), 3.3);
  EXPECT_DOUBLE_EQ(Convert(t, "kW", 2.5), 2500);
  EXPECT_DOUBLE_EQ(Convert(t, "kWh", 1), 3.6e6);
  EXPECT_DOUBLE_EQ(Convert(t, "Wh", 2), 7200);
  EXPECT_DOUBLE_EQ(Convert(t, "km/h", 36), 10);
  EXPECT_DOUBLE_EQ(Convert(t, "ms", 1500), 1.5);
  EXPECT_DOUBLE_EQ(Convert(t, "min", 2), 120);
  EXPECT_DOUBLE_EQ(Convert(t, "h", 1), 3600);
  EXPECT_DOUBLE_EQ(Convert(t, "ft", 10), 3.048);
  EXPECT_DOUBLE_EQ(Convert(t, "in", 100), 2.54);
  EXPECT_DOUBLE_EQ(Convert(t, "gal", 1), 3.785411784);
  EXPECT_DOUBLE_EQ(Convert(t, "lb", 1), 0.45359237);
  EXPECT_EQ(t.Lookup("degF")->to, "degC");
  EXPECT_EQ(t.Lookup("psi")->to, "Pa");
}

TEST(UnitTable, CanonicalUnitsAreIdentity) {
  UnitTable t = UnitTable::Defaults();
  for (std::string_view u : {"degC", "Pa", "A", "V", "W", "J", "m/s", "s", "m", "L", "kg", "%"}) {
    const UnitConversion* c = t.Lookup(u);
    ASSERT_NE(c, nullptr) << u;
    EXPECT_TRUE(c->identity()) << u;
    EXPECT_EQ(c->to, u);
  }
  EXPECT_EQ(t.Lookup("furlong"), nullptr);
  EXPECT_EQ(t.Lookup("DEGF"), nullptr) << "units are case-sensitive: mA is not MA";
  EXPECT_EQ(t.Lookup(""), nullptr);
  EXPECT_EQ(UnitTable().Lookup("degC"), nullptr);
}

TEST(UnitTable, AddFromConfig) {
  UnitTable t = UnitTable::Defaults();
  ASSERT_TRUE(t.Add("inH2O", "Pa", 249.08891).ok());
  EXPECT_DOUBLE_EQ(Convert(t, "inH2O", 2), 498.17782);
  // A new target becomes canonical.
  ASSERT_TRUE(t.Add("klx", "lx", 1000).ok());
  EXPECT_TRUE(t.Lookup("lx")->identity());
  // Replacing a built-in: imperial gallons.
  ASSERT_TRUE(t.Add("gal", "L", 4.54609).ok());
  EXPECT_DOUBLE_EQ(Convert(t, "gal", 1), 4.54609);
  ASSERT_TRUE(t.Add("degR", "degC", 5.0 / 9.0, -273.15).ok());
  EXPECT_NEAR(Convert(t, "degR", 491.67), 0, 1e-9);
}

TEST(UnitTable, AddRejectsWhatCannotWork) {
  UnitTable t = UnitTable::Defaults();
  size_t before = t.size();
  struct Case {
    std::string_view from, to;
    double scale, offset;
    const char* error;
  };
  const double inf = std::numeric_limits<double>::infinity();
  const std::string too_long(33, 'u');
  for (const Case& c : {
           Case{"", "Pa", 1, 0, "source unit is empty"},
           Case{"x", "", 1, 0, "target unit is empty"},
           Case{"a b", "Pa", 1, 0, "whitespace or a control character"},
           Case{std::string_view("a\nb"), "Pa", 1, 0, "control character"},
           Case{too_long, "Pa", 1, 0, "longer than 32 bytes"},
           Case{"x", "x", 1, 0, "converts into itself"},
           Case{"x", "Pa", 0, 0, "must be finite and non-zero"},
           Case{"x", "Pa", std::nan(""), 0, "must be finite and non-zero"},
           Case{"x", "Pa", inf, 0, "must be finite and non-zero"},
           Case{"x", "Pa", 1, inf, "offset inf must be finite"},
           Case{"degC", "K", 1, 273.15, "is canonical"},
           Case{"%", "ratio", 0.01, 0, "is canonical"},
           Case{"x", "degF", 1, 0, "convert \"x\" straight into \"degC\""},
       }) {
    Status st = t.Add(c.from, c.to, c.scale, c.offset);
    EXPECT_FALSE(st.ok()) << c.from << " -> " << c.to;
    EXPECT_TRUE(Contains(st.message(), c.error)) << c.from << " -> " << c.to;
  }
  EXPECT_EQ(t.size(), before) << "a failed Add changes nothing";
}

// --- ValidateSchema ---------------------------------------------------------------------------

TEST(ValidateSchema, AcceptsAGoodSchema) {
  DeviceSchema s{"press-1",
                 {{"temp", MetricType::kFloat, -40, 150, "degF"},
                  {"count", MetricType::kInt, 0, std::nullopt, ""},
                  {"running", MetricType::kBool, std::nullopt, std::nullopt, ""},
                  {"hum", MetricType::kFloat, 0, 100, "%"}},
                 false};
  EXPECT_TRUE(ValidateSchema(s, UnitTable::Defaults()).ok());
}

TEST(ValidateSchema, ReportsEveryProblemAtOnce) {
  const double nan = std::nan("");
  DeviceSchema s{
      "bad device",
      {{"a", MetricType::kFloat, std::nullopt, std::nullopt, "furlong"},
       {"a", MetricType::kFloat, std::nullopt, std::nullopt, ""},
       {"b c", MetricType::kFloat, std::nullopt, std::nullopt, ""},
       {"flag", MetricType::kBool, std::nullopt, std::nullopt, "V"},
       {"r", MetricType::kFloat, 10, 5, ""},
       {"n", MetricType::kFloat, nan, std::nullopt, ""},
       {"i", MetricType::kFloat, std::nullopt, std::numeric_limits<double>::infinity(), ""}},
      true};
  Status st = ValidateSchema(s, UnitTable::Defaults());
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  const std::string& m = st.message();
  EXPECT_TRUE(Contains(m, "device \"bad device\" is not a valid name"));
  EXPECT_TRUE(Contains(m, "metric \"a\": unit \"furlong\" is not in the unit table"));
  EXPECT_TRUE(Contains(m, "metric \"a\": declared twice"));
  EXPECT_TRUE(Contains(m, "metric \"b c\" is not a valid name"));
  EXPECT_TRUE(Contains(m, "metric \"flag\": a bool metric cannot have a unit"));
  EXPECT_TRUE(Contains(m, "metric \"r\": min 10 is above max 5"));
  EXPECT_TRUE(Contains(m, "metric \"n\": min is not a finite number"));
  EXPECT_TRUE(Contains(m, "metric \"i\": max is not a finite number"));
}

// --- Cleaner: schemas -------------------------------------------------------------------------

std::vector<DeviceSchema> PressSchemas() {
  return {
      DeviceSchema{"press-1",
                   {{"temp", MetricType::kFloat, -20, 100, "degF"},
                    {"count", MetricType::kInt, 0, std::nullopt, ""},
                    {"running", MetricType::kBool, std::nullopt, std::nullopt, ""},
                    {"pressure", MetricType::kFloat, 0, 2e5, "bar"}},
                   /*allow_undeclared=*/false},
      DeviceSchema{"press-2", {}, /*allow_undeclared=*/true},
  };
}

Cleaner MakeCleaner(CleanerOptions options = {}) {
  Cleaner c(UnitTable::Defaults(), options);
  Status st = c.SetSchemas(PressSchemas());
  EXPECT_TRUE(st.ok()) << st.ToString();
  return c;
}

// Cleans `in` and returns the single rejection, which must exist.
Rejection RejectionOf(Cleaner& c, Reading in) {
  std::vector<Reading> batch{std::move(in)};
  std::vector<Rejection> rejected;
  c.Clean(batch, rejected);
  EXPECT_TRUE(batch.empty());
  EXPECT_EQ(rejected.size(), 1u);
  return rejected.empty() ? Rejection{} : rejected[0];
}

// Cleans `in` and returns the accepted reading, which must exist.
Reading Accepted(Cleaner& c, Reading in) {
  std::vector<Reading> batch{std::move(in)};
  std::vector<Rejection> rejected;
  c.Clean(batch, rejected);
  EXPECT_TRUE(rejected.empty()) << (rejected.empty() ? "" : rejected[0].message);
  EXPECT_EQ(batch.size(), 1u);
  return batch.empty() ? Reading{} : batch[0];
}

TEST(Cleaner, UnknownDevice) {
  Cleaner c = MakeCleaner();
  Rejection r = RejectionOf(c, {"press-9", "temp", kT, 1});
  EXPECT_EQ(r.reason, RejectReason::kUnknownDevice);
  EXPECT_EQ(r.metric, "temp");
  EXPECT_EQ(r.message, "device \"press-9\" has no schema on this node");
}

TEST(Cleaner, UnknownDevicesCanBeAllowed) {
  Cleaner c = MakeCleaner(Options(kWindow, kMaxSeries, true));
  EXPECT_EQ(Accepted(c, {"press-9", "temp", kT, 1}), (Reading{"press-9", "temp", kT, 1}));
  EXPECT_EQ(RejectionOf(c, {"press 9", "temp", kT, 1}).reason, RejectReason::kBadName)
      << "names from producers other than the parser are checked";
  EXPECT_EQ(RejectionOf(c, {"press-9", "", kT, 1}).reason, RejectReason::kBadName);
}

TEST(Cleaner, UndeclaredMetrics) {
  Cleaner c = MakeCleaner();
  EXPECT_EQ(Accepted(c, {"press-2", "anything", kT, 1e300}).value, 1e300);
  Rejection r = RejectionOf(c, {"press-1", "vibration", kT, 1});
  EXPECT_EQ(r.reason, RejectReason::kUnknownMetric);
  EXPECT_EQ(r.message, "metric \"vibration\" is not declared for device \"press-1\"");
}

TEST(Cleaner, TypesAreCheckedOnTheValueAsSent) {
  Cleaner c = MakeCleaner();
  EXPECT_EQ(Accepted(c, {"press-1", "count", kT, 3}).value, 3);
  Rejection r = RejectionOf(c, {"press-1", "count", kT + 1, 3.5});
  EXPECT_EQ(r.reason, RejectReason::kBadValue);
  EXPECT_EQ(r.message, "value 3.5 of count is not an integer");
  EXPECT_EQ(Accepted(c, {"press-1", "running", kT, 0}).value, 0);
  EXPECT_EQ(Accepted(c, {"press-1", "running", kT + 1, 1}).value, 1);
  r = RejectionOf(c, {"press-1", "running", kT + 2, 2});
  EXPECT_EQ(r.reason, RejectReason::kBadValue);
  EXPECT_EQ(r.message, "value 2 of running is not a boolean (0 or 1)");
}

TEST(Cleaner, NonFiniteValuesAreRejected) {
  Cleaner c = MakeCleaner();
  EXPECT_EQ(RejectionOf(c, {"press-2", "x", kT, std::nan("")}).reason, RejectReason::kBadValue);
  EXPECT_EQ(RejectionOf(c, {"press-2", "x", kT, std::numeric_limits<double>::infinity()}).reason,
            RejectReason::kBadValue);
}

TEST(Cleaner, ConvertsUnitsThenChecksBoundsInTheCanonicalUnit) {
  Cleaner c = MakeCleaner();
  EXPECT_DOUBLE_EQ(Accepted(c, {"press-1", "temp", kT, 212}).value, 100);
  EXPECT_NEAR(Accepted(c, {"press-1", "temp", kT + 1, 32}).value, 0, 1e-12);
  EXPECT_DOUBLE_EQ(Accepted(c, {"press-1", "pressure", kT, 1.5}).value, 150'000);

  Rejection r = RejectionOf(c, {"press-1", "temp", kT + 2, 213.8});
  EXPECT_EQ(r.reason, RejectReason::kOutOfRange);
  EXPECT_EQ(r.metric, "temp");
  EXPECT_TRUE(Contains(r.message, "degC of temp is above the maximum 100 degC"));
  r = RejectionOf(c, {"press-1", "temp", kT + 3, -5});  // -20.6 degC
  EXPECT_EQ(r.reason, RejectReason::kOutOfRange);
  EXPECT_TRUE(Contains(r.message, "is below the minimum -20 degC"));
  r = RejectionOf(c, {"press-1", "count", kT + 4, -1});
  EXPECT_EQ(r.message, "value -1 of count is below the minimum 0");
}

TEST(Cleaner, ConversionOverflowIsABadValue) {
  Cleaner c(UnitTable::Defaults());
  ASSERT_TRUE(c.SetSchemas({{"m1", {{"energy", MetricType::kFloat, {}, {}, "kWh"}}, true}}).ok());
  Rejection r = RejectionOf(c, {"m1", "energy", kT, 1e305});
  EXPECT_EQ(r.reason, RejectReason::kBadValue);
  EXPECT_TRUE(Contains(r.message, "out of range once converted to J"));
}

TEST(Cleaner, UnusableSpecsRejectTheirReadingsAndSpareTheRest) {
  Cleaner c(UnitTable::Defaults());
  Status st = c.SetSchemas({
      {"m1",
       {{"a", MetricType::kFloat, {}, {}, "furlong"},
        {"b", MetricType::kFloat, 10, 5, ""},
        {"c", MetricType::kBool, {}, {}, "V"},
        {"ok", MetricType::kFloat, {}, {}, "kW"}},
       false},
  });
  ASSERT_FALSE(st.ok());
  EXPECT_TRUE(Contains(st.message(), "furlong"));
  Rejection r = RejectionOf(c, {"m1", "a", kT, 1});
  EXPECT_EQ(r.reason, RejectReason::kBadUnit);
  EXPECT_EQ(r.message,
            "metric \"a\" of device \"m1\" has an unusable schema: unit \"furlong\" is not in the "
            "unit table");
  EXPECT_EQ(RejectionOf(c, {"m1", "b", kT, 7}).reason, RejectReason::kOutOfRange);
  EXPECT_EQ(RejectionOf(c, {"m1", "c", kT, 1}).reason, RejectReason::kBadUnit);
  EXPECT_EQ(Accepted(c, {"m1", "ok", kT, 2}).value, 2000);
}

TEST(Cleaner, SetSchemasReportsRepeatedDevicesAndKeepsTheFirst) {
  Cleaner c(UnitTable::Defaults());
  Status st = c.SetSchemas({{"d1", {}, true}, {"d1", {}, false}, {"bad name", {}, true}});
  ASSERT_FALSE(st.ok());
  EXPECT_TRUE(Contains(st.message(), "device \"d1\" has more than one schema"));
  EXPECT_TRUE(Contains(st.message(), "\"bad name\" is not a valid name"));
  Accepted(c, {"d1", "x", kT, 1});  // the first schema allows undeclared metrics
}

TEST(Cleaner, SetSchemasReplacesAll) {
  Cleaner c = MakeCleaner();
  Accepted(c, {"press-2", "x", kT, 1});
  ASSERT_TRUE(c.SetSchemas({{"press-3", {}, true}}).ok());
  EXPECT_EQ(RejectionOf(c, {"press-2", "x", kT + 1, 1}).reason, RejectReason::kUnknownDevice);
  Accepted(c, {"press-3", "x", kT, 1});
  ASSERT_TRUE(c.SetSchemas({}).ok());
  EXPECT_EQ(RejectionOf(c, {"press-3", "x", kT + 1, 1}).reason, RejectReason::kUnknownDevice);
}

// --- Cleaner: batches, items, counters --------------------------------------------------------

TEST(Cleaner, FiltersInPlaceKeepingOrderAndItems) {
  Cleaner c = MakeCleaner();
  ParseResult batch;
  batch.readings = {{"press-1", "pressure", kT, 1.5},
                    {"press-9", "temp", kT, 1},
                    {"press-1", "count", kT, 2},
                    {"press-1", "count", kT, 0.5},
                    {"press-2", "free", kT, 7}};
  batch.item_of = {0, 1, 1, 2, 5};
  batch.rejected.push_back({9, "", RejectReason::kMalformed, "from the parser"});
  c.Clean(batch);
  EXPECT_EQ(batch.readings,
            (Readings{Reading{"press-1", "pressure", kT, 150'000},
                      Reading{"press-1", "count", kT, 2}, Reading{"press-2", "free", kT, 7}}));
  EXPECT_EQ(batch.item_of, (Items{0, 1, 5}));
  ASSERT_EQ(batch.rejected.size(), 3u);
  EXPECT_EQ(batch.rejected[0].message, "from the parser") << "earlier rejections are kept";
  EXPECT_EQ(batch.rejected[1].item, 1u);
  EXPECT_EQ(batch.rejected[1].reason, RejectReason::kUnknownDevice);
  EXPECT_EQ(batch.rejected[2].item, 2u);
  EXPECT_EQ(batch.rejected[2].reason, RejectReason::kBadValue);
}

TEST(Cleaner, WithoutItemsARejectionNamesTheReadingIndex) {
  Cleaner c = MakeCleaner();
  std::vector<Reading> batch = {{"press-2", "a", kT, 1},
                                {"press-9", "a", kT, 1},
                                {"press-2", "b", kT, 1},
                                {"press-2", "a", kT, 1}};
  std::vector<Rejection> rejected;
  c.Clean(batch, rejected);
  EXPECT_EQ(batch.size(), 2u);
  ASSERT_EQ(rejected.size(), 2u);
  EXPECT_EQ(rejected[0].item, 1u);
  EXPECT_EQ(rejected[1].item, 3u);
  EXPECT_EQ(rejected[1].reason, RejectReason::kDuplicate);
}

TEST(Cleaner, ParseResultWithoutItemOfUsesIndexes) {
  Cleaner c = MakeCleaner();
  ParseResult batch;
  batch.readings = {{"press-2", "a", kT, 1}, {"press-9", "a", kT, 1}};
  c.Clean(batch);
  EXPECT_TRUE(batch.item_of.empty());
  ASSERT_EQ(batch.rejected.size(), 1u);
  EXPECT_EQ(batch.rejected[0].item, 1u);
}

TEST(Cleaner, Counters) {
  Cleaner c = MakeCleaner();
  std::vector<Reading> batch = {
      {"press-1", "temp", kT, 50},      {"press-1", "temp", kT, 50},  // duplicate
      {"press-1", "temp", kT + 1, 500},                               // out of range
      {"press-1", "nope", kT, 1},                                     // unknown metric
      {"press-8", "temp", kT, 1},       {"press-9", "temp", kT, 1},   // unknown devices
      {"press-1", "running", kT, 1},
  };
  std::vector<Rejection> rejected;
  c.Clean(batch, rejected);
  const IngestCounters& n = c.counters();
  EXPECT_EQ(n.accepted, 2u);
  EXPECT_EQ(n[RejectReason::kDuplicate], 1u);
  EXPECT_EQ(n[RejectReason::kOutOfRange], 1u);
  EXPECT_EQ(n[RejectReason::kUnknownMetric], 1u);
  EXPECT_EQ(n[RejectReason::kUnknownDevice], 2u);
  EXPECT_EQ(n[RejectReason::kMalformed], 0u);
  EXPECT_EQ(n.total_rejected(), 5u);
  EXPECT_EQ(rejected.size(), n.total_rejected());
}

// --- Cleaner: duplicates ----------------------------------------------------------------------

TEST(Dedupe, WithinOneBatch) {
  Cleaner c = MakeCleaner();
  ParseResult batch;
  batch.readings = {{"press-2", "a", kT, 1},
                    {"press-2", "a", kT, 2},
                    {"press-2", "b", kT, 3},
                    {"press-1", "count", kT, 4}};
  batch.item_of = {0, 1, 2, 3};
  c.Clean(batch);
  EXPECT_EQ(batch.item_of, (Items{0, 2, 3})) << "other metrics/devices at kT are new";
  ASSERT_EQ(batch.rejected.size(), 1u);
  EXPECT_EQ(batch.rejected[0].item, 1u);
  EXPECT_EQ(batch.rejected[0].reason, RejectReason::kDuplicate);
  EXPECT_EQ(batch.rejected[0].metric, "a");
  EXPECT_EQ(batch.rejected[0].message,
            "a of press-2 at 1795251600000000000 ns was already accepted");
}

TEST(Dedupe, AcrossBatches) {
  Cleaner c = MakeCleaner();
  Accepted(c, {"press-2", "a", kT, 1});
  Accepted(c, {"press-2", "a", kT + 1, 1});
  EXPECT_EQ(RejectionOf(c, {"press-2", "a", kT, 9}).reason, RejectReason::kDuplicate)
      << "the value does not matter";
  EXPECT_EQ(RejectionOf(c, {"press-2", "a", kT + 1, 1}).reason, RejectReason::kDuplicate);
}

TEST(Dedupe, OutOfOrderInsideTheWindow) {
  Cleaner c = MakeCleaner();
  for (int64_t ts : {10, 30, 20, 25, 5}) Accepted(c, {"press-2", "a", kT + ts, 1});
  for (int64_t ts : {5, 10, 20, 25, 30}) {
    EXPECT_EQ(RejectionOf(c, {"press-2", "a", kT + ts, 1}).reason, RejectReason::kDuplicate) << ts;
  }
  Accepted(c, {"press-2", "a", kT + 21, 1});
}

TEST(Dedupe, RejectedReadingsAreNotRemembered) {
  Cleaner c = MakeCleaner();
  EXPECT_EQ(RejectionOf(c, {"press-1", "count", kT, 0.5}).reason, RejectReason::kBadValue);
  Accepted(c, {"press-1", "count", kT, 1});
}

TEST(Dedupe, ExactOverTheWholeWindowAfterTrimming) {
  Cleaner c = MakeCleaner(Options(8, kMaxSeries));
  int calls = 0;
  c.set_seen_before([&](const Reading&) {
    ++calls;
    return false;
  });
  // In order: the window trims its oldest half as it fills.
  for (int64_t ts = 1; ts <= 100; ++ts) Accepted(c, {"press-2", "a", kT + ts, 1});
  EXPECT_EQ(calls, 1) << "only the first reading of a new series asks the store";
  // The window keeps at least the last 4: every one of them is caught without the callback.
  for (int64_t ts = 97; ts <= 100; ++ts) {
    EXPECT_EQ(RejectionOf(c, {"press-2", "a", kT + ts, 1}).reason, RejectReason::kDuplicate);
  }
  EXPECT_EQ(calls, 1);
  // Older than remembered: asked, and the answer (false) lets it through.
  Accepted(c, {"press-2", "a", kT + 3, 1});
  EXPECT_EQ(calls, 2);
  // It was not added below the window, so asking again is right; the store would know by then.
  Accepted(c, {"press-2", "a", kT + 3, 1});
  EXPECT_EQ(calls, 3);
}

TEST(Dedupe, OlderThanTheWindowWithoutCallbackIsAccepted) {
  Cleaner c = MakeCleaner(Options(4, kMaxSeries));
  for (int64_t ts = 10; ts < 20; ++ts) Accepted(c, {"press-2", "a", kT + ts, 1});
  Accepted(c, {"press-2", "a", kT + 10, 1});  // forgotten: can't tell, accepted
  EXPECT_EQ(RejectionOf(c, {"press-2", "a", kT + 19, 1}).reason, RejectReason::kDuplicate);
}

TEST(Dedupe, OlderThanTheWindowAsksTheStore) {
  Cleaner c = MakeCleaner(Options(4, kMaxSeries));
  std::set<int64_t> store;  // what the local time-series store holds
  std::vector<Reading> asked;
  c.set_seen_before([&](const Reading& r) {
    asked.push_back(r);
    return store.contains(r.ts_ns);
  });
  for (int64_t ts = 10; ts < 20; ++ts) {
    Accepted(c, {"press-2", "a", kT + ts, 1});
    store.insert(kT + ts);
  }
  asked.clear();
  Rejection r = RejectionOf(c, {"press-2", "a", kT + 10, 1});
  EXPECT_EQ(r.reason, RejectReason::kDuplicate);
  ASSERT_EQ(asked.size(), 1u);
  EXPECT_EQ(asked[0], (Reading{"press-2", "a", kT + 10, 1}));
  Accepted(c, {"press-2", "a", kT + 5, 1});  // older, and not in the store
  EXPECT_EQ(asked.size(), 2u);
  Accepted(c, {"press-2", "a", kT + 30, 1});  // newer than everything: not asked
  EXPECT_EQ(asked.size(), 2u);
}

TEST(Dedupe, NewSeriesAsksTheStoreUntilSomethingIsRemembered) {
  // After a restart the device re-sends what the store already has.
  Cleaner c = MakeCleaner();
  std::set<int64_t> store = {kT + 1, kT + 2};
  c.set_seen_before([&](const Reading& r) { return store.contains(r.ts_ns); });
  ParseResult batch;
  batch.readings = {{"press-2", "a", kT + 1, 1},
                    {"press-2", "a", kT + 2, 1},
                    {"press-2", "a", kT + 3, 1},
                    {"press-2", "a", kT + 2, 1}};
  c.Clean(batch);
  EXPECT_EQ(batch.readings, (Readings{Reading{"press-2", "a", kT + 3, 1}}));
  EXPECT_EQ(batch.rejected.size(), 3u);
}

TEST(Dedupe, SeenBeforeGetsTheCanonicalValue) {
  Cleaner c = MakeCleaner();
  double seen = 0;
  c.set_seen_before([&](const Reading& r) {
    seen = r.value;
    return false;
  });
  Accepted(c, {"press-1", "pressure", kT, 1});
  EXPECT_EQ(seen, 1e5);
}

TEST(Dedupe, SeriesBeyondTheCapAreForgottenLeastRecentlyUsedFirst) {
  Cleaner c = MakeCleaner(Options(kWindow, 2));
  Accepted(c, {"press-2", "a", kT, 1});
  Accepted(c, {"press-2", "b", kT, 1});
  Accepted(c, {"press-2", "a", kT + 1, 1});  // a is now the most recently used
  EXPECT_EQ(c.tracked_series(), 2u);
  Accepted(c, {"press-2", "c", kT, 1});  // evicts b
  EXPECT_EQ(c.tracked_series(), 2u);
  EXPECT_EQ(RejectionOf(c, {"press-2", "a", kT, 1}).reason, RejectReason::kDuplicate)
      << "a was kept";
  // b was forgotten: without a callback its duplicate gets through, as documented.
  Accepted(c, {"press-2", "b", kT, 1});
  EXPECT_EQ(c.tracked_series(), 2u);

  int calls = 0;
  c.set_seen_before([&](const Reading&) {
    ++calls;
    return true;
  });
  Accepted(c, {"press-2", "a", kT + 2, 1});  // c went when b came back
  EXPECT_EQ(RejectionOf(c, {"press-2", "c", kT, 1}).reason, RejectReason::kDuplicate)
      << "with a callback the store catches it";
  EXPECT_EQ(calls, 1);
}

TEST(Dedupe, OptionsAreClampedToWorkingValues) {
  Cleaner c = MakeCleaner(Options(0, 0));
  Accepted(c, {"press-2", "a", kT, 1});
  Accepted(c, {"press-2", "a", kT + 1, 1});
  Accepted(c, {"press-2", "a", kT + 2, 1});
  EXPECT_EQ(RejectionOf(c, {"press-2", "a", kT + 2, 1}).reason, RejectReason::kDuplicate);
  Accepted(c, {"press-2", "b", kT, 1});
  EXPECT_EQ(c.tracked_series(), 1u);
}

// --- Parser and cleaner together --------------------------------------------------------------

TEST(Ingest, ParseThenClean) {
  PayloadParser parser;
  Cleaner cleaner = MakeCleaner();
  ParseOptions options;
  options.now_ns = kT;
  ParseResult batch;
  ASSERT_TRUE(parser
                  .Parse("{\"device_id\":\"press-1\",\"metrics\":{\"temp\":212,\"count\":1.5}}\n"
                         "not json\n"
                         "{\"device_id\":\"press-1\",\"metrics\":{\"temp\":212}}\n"
                         "{\"device_id\":\"press-1\",\"metric\":\"pressure\",\"value\":2}\n",
                         Framing::kNdjson, options, batch)
                  .ok());
  cleaner.Clean(batch);
  ASSERT_EQ(batch.readings.size(), 2u);
  EXPECT_EQ(batch.readings[0].metric, "temp");
  EXPECT_DOUBLE_EQ(batch.readings[0].value, 100) << "212 degF";
  EXPECT_EQ(batch.readings[1], (Reading{"press-1", "pressure", kT, 2e5}));
  EXPECT_EQ(batch.item_of, (Items{0, 3}));
  ASSERT_EQ(batch.rejected.size(), 3u);
  EXPECT_EQ(batch.rejected[0].item, 1u);
  EXPECT_EQ(batch.rejected[0].reason, RejectReason::kMalformed);
  EXPECT_EQ(batch.rejected[1].item, 0u);
  EXPECT_EQ(batch.rejected[1].reason, RejectReason::kBadValue);
  EXPECT_EQ(batch.rejected[2].item, 2u);
  EXPECT_EQ(batch.rejected[2].reason, RejectReason::kDuplicate);
}

}  // namespace
}  // namespace verge::data
