// verge-devsim's library: simulated signals, the Modbus map it serves, and its payloads.
#include "devsim/signal.h"

#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "devsim/modbus_map.h"
#include "devsim/payload.h"

namespace verge::devsim {
namespace {

const char* const kPresetNames[] = {
    "temperature", "humidity",  "pressure", "co2",      "voltage",  "current",   "power",
    "flow",        "vibration", "level",    "speed",    "position", "torque",    "tilt",
    "strain",      "weight",    "light",    "setpoint", "valve",    "frequency", "anything-else"};

std::vector<double> Sample(const SignalSpec& spec, uint64_t seed, int n, double dt = 1) {
  Signal s(spec, seed);
  std::vector<double> out;
  for (int i = 0; i < n; ++i) out.push_back(s.Next(dt));
  return out;
}

TEST(Signal, SameSeedGivesTheSameSequence) {
  for (const char* name : kPresetNames) {
    SignalSpec spec = PresetFor(name);
    EXPECT_EQ(Sample(spec, 42, 5000), Sample(spec, 42, 5000)) << name;
    EXPECT_EQ(Sample(spec, 42, 500, 0.1), Sample(spec, 42, 500, 0.1)) << name;
  }
}

TEST(Signal, DifferentSeedsGiveDifferentSequences) {
  for (const char* name : kPresetNames) {
    SignalSpec spec = PresetFor(name);
    EXPECT_NE(Sample(spec, 1, 5000), Sample(spec, 2, 5000)) << name;
    if (spec.noise == 0) continue;  // a setpoint only steps now and then
    auto a = Sample(spec, 1, 200), b = Sample(spec, 2, 200);
    int same = 0;
    for (size_t i = 0; i < a.size(); ++i) same += a[i] == b[i];
    EXPECT_LT(same, 20) << name;
  }
}

TEST(Signal, StaysWithinItsSpan) {
  for (const char* name : kPresetNames) {
    SignalSpec spec = PresetFor(name);
    ASSERT_TRUE(Validate(spec).ok()) << name << ": " << Validate(spec).message();
    for (double dt : {0.0, 0.1, 1.0, 60.0, 3600.0}) {
      for (double v : Sample(spec, 7, 3000, dt)) {
        ASSERT_GE(v, spec.min) << name;
        ASSERT_LE(v, spec.max) << name;
      }
    }
  }
  // A wild spec whose noise, steps and spikes dwarf its span.
  SignalSpec wild;
  wild.min = -1;
  wild.max = 1;
  wild.base = 0;
  wild.noise = 5;
  wild.drift = 5;
  wild.step_rate = 1;
  wild.step_size = 10;
  wild.spike_rate = 1;
  wild.spike_size = 100;
  wild.sine_amplitude = 50;
  wild.sine_period_s = 10;
  std::set<double> seen;
  for (double v : Sample(wild, 3, 20000, 0.5)) {
    ASSERT_GE(v, -1);
    ASSERT_LE(v, 1);
    seen.insert(v);
  }
  EXPECT_TRUE(seen.count(-1) && seen.count(1)) << "reaches both bounds, clamped";
}

TEST(Signal, MovesLikeAProcessAroundItsBase) {
  SignalSpec spec = PresetFor("temperature");
  auto v = Sample(spec, 11, 3600);
  double sum = 0, sq = 0;
  for (double x : v) sum += x;
  double mean = sum / static_cast<double>(v.size());
  for (double x : v) sq += (x - mean) * (x - mean);
  double sd = std::sqrt(sq / static_cast<double>(v.size()));
  EXPECT_GT(sd, 0.1) << "not constant";
  EXPECT_LT(std::abs(mean - spec.base), 0.1 * (spec.max - spec.min)) << "stays near its base";
  // Consecutive values are close: a process, not white noise over the span.
  int big_jumps = 0;
  for (size_t i = 1; i < v.size(); ++i) big_jumps += std::abs(v[i] - v[i - 1]) > 5;
  EXPECT_LT(big_jumps, 20) << "spikes and steps are rare";
}

TEST(Signal, WithoutDynamicsStaysAtBase) {
  SignalSpec flat;
  flat.min = 0;
  flat.max = 10;
  flat.base = 3;
  for (double v : Sample(flat, 5, 100)) EXPECT_EQ(v, 3);
}

TEST(Signal, StepsAndSpikesHappenAtTheirRates) {
  SignalSpec s;
  s.min = -1000;
  s.max = 1000;
  s.base = 0;
  s.reversion = 0;
  s.spike_rate = 0.1;  // one every 10 s
  s.spike_size = 100;
  auto v = Sample(s, 9, 10000);
  int spikes = 0;
  for (double x : v) spikes += std::abs(x) == 100;
  EXPECT_GT(spikes, 500);
  EXPECT_LT(spikes, 1500);
}

TEST(Signal, ValidateReportsEveryProblem) {
  SignalSpec bad;
  bad.metric = "x";
  bad.min = 5;
  bad.max = 1;
  bad.noise = -1;
  bad.spike_rate = std::nan("");
  Status st = Validate(bad);
  ASSERT_FALSE(st.ok());
  for (const char* part : {"min < max", "noise -1", "spike_rate nan"}) {
    EXPECT_NE(st.message().find(part), std::string::npos) << part << " in " << st.message();
  }
  SignalSpec off;
  off.base = 200;
  EXPECT_NE(Validate(off).message().find("base 200 is outside"), std::string::npos);
}

TEST(Signal, PresetsAndAliases) {
  EXPECT_EQ(PresetFor("temp").min, PresetFor("temperature").min);
  EXPECT_EQ(PresetFor("temp").metric, "temp");
  EXPECT_EQ(PresetFor("hum").unit, "%");
  EXPECT_EQ(PresetFor("no-such-metric").min, 0);
  EXPECT_EQ(PresetFor("no-such-metric").max, 100);
}

TEST(Signal, DerivedSeedsAreStableAndDistinct) {
  EXPECT_EQ(DeriveSeed(1, "dev/temp"), DeriveSeed(1, "dev/temp"));
  EXPECT_NE(DeriveSeed(1, "dev/temp"), DeriveSeed(2, "dev/temp"));
  EXPECT_NE(DeriveSeed(1, "dev/temp"), DeriveSeed(1, "dev/hum"));
  EXPECT_NE(DeriveSeed(1, "a"), DeriveSeed(1, "b"));
}

TEST(SignalModbusMap, EveryEntryIsValidAndEncodesItsWholeSpan) {
  const auto& map = ModbusMap();
  modbus::ModbusDevice device;
  device.name = "sim";
  device.host = "127.0.0.1";
  std::set<std::pair<int, int>> used;  // (kind, address)
  std::set<std::tuple<int, int, int>> layouts;
  for (const SimRegister& r : map) {
    device.registers.push_back(r.reg);
    EXPECT_TRUE(Validate(r.signal).ok()) << r.reg.metric;
    for (int a = r.reg.address; a < r.reg.address + modbus::RegisterCount(r.reg.type); ++a) {
      EXPECT_LT(a, kMapTableSize) << r.reg.metric;
      EXPECT_TRUE(used.insert({r.reg.kind, a}).second) << r.reg.metric << " overlaps at " << a;
    }
    layouts.insert({r.reg.type, r.reg.byte_order, r.reg.word_order});
    for (double v : {r.signal.min, r.signal.max, r.signal.base}) {
      auto regs = modbus::Encode(v, r.reg);
      ASSERT_TRUE(regs.ok()) << regs.status().message();
      auto back = modbus::Decode(*regs, r.reg);
      ASSERT_TRUE(back.ok());
      EXPECT_NEAR(*back, v, std::max(r.reg.scale, 1e-6 * std::abs(v))) << r.reg.metric;
    }
  }
  EXPECT_TRUE(modbus::Validate(device).ok()) << modbus::Validate(device).message();
  // Every 32-bit type in all four orders, every 16-bit type in both byte orders.
  using R = modbus::RegisterSpec;
  for (R::Type t : {R::kInt32, R::kUInt32, R::kFloat32}) {
    for (R::Order b : {R::kBig, R::kLittle}) {
      for (R::Order w : {R::kBig, R::kLittle}) {
        EXPECT_TRUE(layouts.count({t, b, w})) << modbus::TypeName(t);
      }
    }
  }
  for (R::Type t : {R::kInt16, R::kUInt16}) {
    for (R::Order b : {R::kBig, R::kLittle}) {
      EXPECT_TRUE(layouts.count({t, b, R::kBig})) << modbus::TypeName(t);
    }
  }
}

TEST(SignalModbusMap, JsonListsEveryUnitWithTheMap) {
  auto j = ModbusMapJson(3);
  ASSERT_EQ(j["devices"].size(), 3u);
  EXPECT_EQ(j["devices"][2]["unit_id"], 3);
  const auto& regs = j["devices"][0]["registers"];
  ASSERT_EQ(regs.size(), ModbusMap().size());
  EXPECT_EQ(regs[0]["metric"], "temperature");
  EXPECT_EQ(regs[0]["kind"], "input");
  EXPECT_EQ(regs[0]["type"], "int16");
  EXPECT_EQ(regs[0]["byte_order"], "big");
  EXPECT_EQ(regs[0]["scale"], 0.01);
  EXPECT_EQ(regs[0]["min"], -40);
}

TEST(SignalPayload, FormatsJsonAndNdjson) {
  std::vector<data::Reading> r = {{"d", "temp", 1'700'000'000'123'456'789, 21.534567},
                                  {"d", "hum", 1'700'000'000'124'000'000, -0.00001}};
  EXPECT_EQ(FormatPayload(r, PayloadFormat::kJson),
            R"([{"metric":"temp","value":21.5346,"timestamp":1700000000123},)"
            R"({"metric":"hum","value":0,"timestamp":1700000000124}])");
  EXPECT_EQ(FormatPayload(r, PayloadFormat::kNdjson),
            "{\"metric\":\"temp\",\"value\":21.5346,\"timestamp\":1700000000123}\n"
            "{\"metric\":\"hum\",\"value\":0,\"timestamp\":1700000000124}\n");
  EXPECT_EQ(FormatPayload({}, PayloadFormat::kJson), "[]");
  EXPECT_EQ(*ParsePayloadFormat("ndjson"), PayloadFormat::kNdjson);
  EXPECT_FALSE(ParsePayloadFormat("xml").ok());
}

TEST(SignalPayload, ParsesDeviceFlagsAndFiles) {
  EXPECT_EQ(*ParseDeviceFlag("pump-1=abc=="), (DeviceCred{"pump-1", "abc=="}));
  EXPECT_FALSE(ParseDeviceFlag("pump-1").ok());
  EXPECT_FALSE(ParseDeviceFlag("=tok").ok());
  EXPECT_FALSE(ParseDeviceFlag("name=").ok());

  auto list = ParseDevicesJson(R"([{"name":"a","token":"t1","id":7},{"name":"b","token":"t2"}])");
  ASSERT_TRUE(list.ok()) << list.status().message();
  EXPECT_EQ(*list, (std::vector<DeviceCred>{{"a", "t1"}, {"b", "t2"}}));
  // Several `vergectl devices add -o json` outputs appended to one file.
  auto appended =
      ParseDevicesJson("{\"name\":\"a\",\"token\":\"t1\"}\n{\"name\":\"b\",\"token\":\"t2\"}\n");
  ASSERT_TRUE(appended.ok()) << appended.status().message();
  EXPECT_EQ(appended->size(), 2u);
  EXPECT_FALSE(ParseDevicesJson("[]").ok());
  EXPECT_FALSE(ParseDevicesJson("[{\"name\":\"a\"}]").ok());
  EXPECT_FALSE(ParseDevicesJson("{not json").ok());
  EXPECT_FALSE(ParseDevicesJson("[1]").ok());
}

TEST(SignalPayload, MetricNamesFollowTheNodesRules) {
  EXPECT_TRUE(ValidateMetricName("temp_1.raw-x:y").ok());
  EXPECT_TRUE(ValidateMetricName(std::string(64, 'a')).ok());
  EXPECT_FALSE(ValidateMetricName(std::string(65, 'a')).ok());
  for (const char* bad : {"", "a b", "a\"b", "a/b", "a+b", "#"}) {
    EXPECT_FALSE(ValidateMetricName(bad).ok()) << bad;
  }
}

TEST(SignalPayload, ReadingSourceIsRoundRobinAndDeterministic) {
  ReadingSource a("dev", {"temp", "hum", "co2"}, 5, 1.0);
  ReadingSource b("dev", {"temp", "hum", "co2"}, 5, 1.0);
  auto first = a.Next(4, 1000);
  ASSERT_EQ(first.size(), 4u);
  EXPECT_EQ(first[0].metric, "temp");
  EXPECT_EQ(first[1].metric, "hum");
  EXPECT_EQ(first[2].metric, "co2");
  EXPECT_EQ(first[3].metric, "temp");
  EXPECT_EQ(first[0].device, "dev");
  EXPECT_EQ(first[0].ts_ns, 1000);
  EXPECT_EQ(first, b.Next(4, 1000));
  EXPECT_EQ(a.Next(100, 2000), b.Next(100, 2000));
  ReadingSource other("dev2", {"temp", "hum", "co2"}, 5, 1.0);
  EXPECT_NE(other.Next(4, 1000)[0].value, first[0].value) << "devices differ";
}

}  // namespace
}  // namespace verge::devsim
