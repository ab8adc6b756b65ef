#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "common/clock.h"
#include "node/modbus/poller.h"
#include "node/modbus/registers.h"

namespace verge::modbus {
namespace {

using R = RegisterSpec;

RegisterSpec Spec(R::Type type, R::Order byte_order = R::kBig, R::Order word_order = R::kBig,
                  double scale = 1, double offset = 0) {
  RegisterSpec s;
  s.metric = "m";
  s.type = type;
  s.byte_order = byte_order;
  s.word_order = word_order;
  s.scale = scale;
  s.offset = offset;
  return s;
}

struct Vector32 {
  const char* name;
  R::Order byte_order;
  R::Order word_order;
  std::vector<uint16_t> regs;
};

// The four layouts of one 32-bit value 0xAABBCCDD (bytes A..D, most significant first).
std::vector<Vector32> Layouts(uint32_t v) {
  auto a = static_cast<uint16_t>(v >> 24), b = static_cast<uint16_t>((v >> 16) & 0xFF),
       c = static_cast<uint16_t>((v >> 8) & 0xFF), d = static_cast<uint16_t>(v & 0xFF);
  auto w = [](uint16_t hi, uint16_t lo) { return static_cast<uint16_t>((hi << 8) | lo); };
  return {{"ABCD", R::kBig, R::kBig, {w(a, b), w(c, d)}},
          {"CDAB", R::kBig, R::kLittle, {w(c, d), w(a, b)}},
          {"BADC", R::kLittle, R::kBig, {w(b, a), w(d, c)}},
          {"DCBA", R::kLittle, R::kLittle, {w(d, c), w(b, a)}}};
}

TEST(ModbusDecode, Float32InEveryByteAndWordOrder) {
  // 123.456f is 0x42F6E979.
  const std::vector<Vector32> known = {{"ABCD", R::kBig, R::kBig, {0x42F6, 0xE979}},
                                       {"CDAB", R::kBig, R::kLittle, {0xE979, 0x42F6}},
                                       {"BADC", R::kLittle, R::kBig, {0xF642, 0x79E9}},
                                       {"DCBA", R::kLittle, R::kLittle, {0x79E9, 0xF642}}};
  EXPECT_EQ(Layouts(0x42F6E979)[0].regs, known[0].regs);
  for (const auto& v : known) {
    auto got = Decode(v.regs, Spec(R::kFloat32, v.byte_order, v.word_order));
    ASSERT_TRUE(got.ok()) << v.name << ": " << got.status().message();
    EXPECT_FLOAT_EQ(static_cast<float>(*got), 123.456f) << v.name;
  }
}

TEST(ModbusDecode, Int32AndUInt32InEveryByteAndWordOrder) {
  for (const auto& v : Layouts(0xF8A432EB)) {  // -123456789
    auto got = Decode(v.regs, Spec(R::kInt32, v.byte_order, v.word_order));
    ASSERT_TRUE(got.ok()) << v.name;
    EXPECT_EQ(*got, -123456789.0) << v.name;
    // The same bits as unsigned.
    EXPECT_EQ(*Decode(v.regs, Spec(R::kUInt32, v.byte_order, v.word_order)), 4171510507.0)
        << v.name;
  }
  for (const auto& v : Layouts(0xB2D05E00)) {  // 3000000000
    EXPECT_EQ(*Decode(v.regs, Spec(R::kUInt32, v.byte_order, v.word_order)), 3e9) << v.name;
    EXPECT_EQ(*Decode(v.regs, Spec(R::kInt32, v.byte_order, v.word_order)), -1294967296.0)
        << v.name;
  }
  // CDAB spelled out, as PLC manuals print it.
  EXPECT_EQ(*Decode(std::vector<uint16_t>{0x5E00, 0xB2D0}, Spec(R::kUInt32, R::kBig, R::kLittle)),
            3e9);
}

TEST(ModbusDecode, SixteenBitTypesIgnoreWordOrder) {
  for (R::Order word : {R::kBig, R::kLittle}) {
    EXPECT_EQ(*Decode(std::vector<uint16_t>{0xFFFE}, Spec(R::kInt16, R::kBig, word)), -2);
    EXPECT_EQ(*Decode(std::vector<uint16_t>{0xFEFF}, Spec(R::kInt16, R::kLittle, word)), -2);
    EXPECT_EQ(*Decode(std::vector<uint16_t>{0xFFFE}, Spec(R::kUInt16, R::kBig, word)), 65534);
    EXPECT_EQ(*Decode(std::vector<uint16_t>{0x1234}, Spec(R::kUInt16, R::kBig, word)), 0x1234);
    EXPECT_EQ(*Decode(std::vector<uint16_t>{0x3412}, Spec(R::kUInt16, R::kLittle, word)), 0x1234);
    EXPECT_EQ(*Decode(std::vector<uint16_t>{0x8000}, Spec(R::kInt16, R::kBig, word)), -32768);
  }
}

TEST(ModbusDecode, AppliesScaleThenOffset) {
  // A temperature sent as (celsius + 40) * 100 in a uint16.
  EXPECT_DOUBLE_EQ(
      *Decode(std::vector<uint16_t>{5000}, Spec(R::kUInt16, R::kBig, R::kBig, 0.01, -40)), 10.0);
  EXPECT_DOUBLE_EQ(
      *Decode(std::vector<uint16_t>{0xFFFF}, Spec(R::kInt16, R::kBig, R::kBig, 0.5, 1)), 0.5);
  EXPECT_DOUBLE_EQ(
      *Decode(std::vector<uint16_t>{0x42F6, 0xE979}, Spec(R::kFloat32, R::kBig, R::kBig, 2, 0)),
      2 * static_cast<double>(123.456f));
}

TEST(ModbusDecode, RejectsNaNInfinityAndWrongRegisterCounts) {
  for (uint32_t bits : {0x7FC00000u, 0x7FA00001u, 0xFFC00000u, 0x7F800000u, 0xFF800000u}) {
    for (const auto& v : Layouts(bits)) {
      auto got = Decode(v.regs, Spec(R::kFloat32, v.byte_order, v.word_order));
      EXPECT_FALSE(got.ok()) << std::hex << bits << " " << v.name;
    }
  }
  // A finite float that overflows after scaling.
  EXPECT_FALSE(Decode(std::vector<uint16_t>{0x7F7F, 0xFFFF},
                      Spec(R::kFloat32, R::kBig, R::kBig, std::numeric_limits<double>::max()))
                   .ok());
  EXPECT_FALSE(Decode(std::vector<uint16_t>{1}, Spec(R::kFloat32)).ok());
  EXPECT_FALSE(Decode(std::vector<uint16_t>{1, 2, 3}, Spec(R::kUInt32)).ok());
  EXPECT_FALSE(Decode(std::vector<uint16_t>{1, 2}, Spec(R::kUInt16)).ok());
  EXPECT_FALSE(Decode(std::vector<uint16_t>{}, Spec(R::kInt16)).ok());
}

TEST(ModbusEncode, RoundTripsEveryTypeAndOrder) {
  std::mt19937_64 rng(7);
  for (R::Type type : {R::kInt16, R::kUInt16, R::kInt32, R::kUInt32, R::kFloat32}) {
    for (R::Order byte : {R::kBig, R::kLittle}) {
      for (R::Order word : {R::kBig, R::kLittle}) {
        RegisterSpec s = Spec(type, byte, word, 0.01, -40);
        std::uniform_real_distribution<double> value(-40, 250);
        for (int i = 0; i < 200; ++i) {
          double v = value(rng);
          if (type == R::kUInt16 || type == R::kUInt32) v = std::abs(v);
          auto regs = Encode(v, s);
          ASSERT_TRUE(regs.ok()) << TypeName(type) << " " << v << ": " << regs.status().message();
          ASSERT_EQ(regs->size(), static_cast<size_t>(RegisterCount(type)));
          auto back = Decode(*regs, s);
          ASSERT_TRUE(back.ok());
          EXPECT_NEAR(*back, v, type == R::kFloat32 ? 1e-4 * std::abs(v) + 1e-4 : 0.005)
              << TypeName(type) << " " << OrderName(byte) << "/" << OrderName(word);
        }
      }
    }
  }
  // Encode lays bytes out the way Decode's known vectors say.
  EXPECT_EQ(*Encode(123.456, Spec(R::kFloat32, R::kLittle, R::kBig)),
            (std::vector<uint16_t>{0xF642, 0x79E9}));
  EXPECT_EQ(*Encode(3e9, Spec(R::kUInt32, R::kBig, R::kLittle)),
            (std::vector<uint16_t>{0x5E00, 0xB2D0}));
}

TEST(ModbusEncode, RejectsValuesTheTypeCannotCarry) {
  EXPECT_FALSE(Encode(40000, Spec(R::kInt16)).ok());
  EXPECT_FALSE(Encode(-1, Spec(R::kUInt16)).ok());
  EXPECT_FALSE(Encode(70000, Spec(R::kUInt16)).ok());
  EXPECT_FALSE(Encode(5e9, Spec(R::kUInt32)).ok());
  EXPECT_FALSE(Encode(-3e9, Spec(R::kInt32)).ok());
  EXPECT_FALSE(Encode(1e300, Spec(R::kFloat32)).ok());
  EXPECT_FALSE(Encode(std::nan(""), Spec(R::kFloat32)).ok());
  EXPECT_TRUE(Encode(327.67, Spec(R::kInt16, R::kBig, R::kBig, 0.01)).ok());
  EXPECT_FALSE(Encode(327.68, Spec(R::kInt16, R::kBig, R::kBig, 0.01)).ok());
}

TEST(ModbusNames, ParseAndPrintEveryValue) {
  for (R::Type t : {R::kInt16, R::kUInt16, R::kInt32, R::kUInt32, R::kFloat32}) {
    EXPECT_EQ(*ParseType(TypeName(t)), t);
  }
  EXPECT_EQ(*ParseType("float32"), R::kFloat32);
  EXPECT_EQ(*ParseType("uint16"), R::kUInt16);
  EXPECT_EQ(*ParseKind("holding"), R::kHolding);
  EXPECT_EQ(*ParseKind("input"), R::kInput);
  EXPECT_EQ(*ParseOrder("big"), R::kBig);
  EXPECT_EQ(*ParseOrder("little"), R::kLittle);
  EXPECT_EQ(KindName(R::kInput), "input");
  EXPECT_EQ(OrderName(R::kLittle), "little");
  EXPECT_EQ(RegisterCount(R::kInt16), 1);
  EXPECT_EQ(RegisterCount(R::kFloat32), 2);

  auto bad = ParseType("float64");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), Code::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("int16, uint16, int32, uint32, float32"), std::string::npos)
      << "lists the choices: " << bad.status().message();
  EXPECT_FALSE(ParseKind("coil").ok());
  EXPECT_FALSE(ParseOrder("Big").ok());
}

ModbusDevice GoodDevice() {
  ModbusDevice d;
  d.name = "plc1";
  d.host = "127.0.0.1";
  d.port = 502;
  d.registers = {Spec(R::kFloat32)};
  return d;
}

TEST(ModbusValidate, AcceptsAGoodDeviceAndTheDocumentedUnitIds) {
  EXPECT_TRUE(Validate(GoodDevice()).ok());
  for (int unit : {0, 1, 247, 255}) {
    ModbusDevice d = GoodDevice();
    d.unit_id = unit;
    EXPECT_TRUE(Validate(d).ok()) << unit;
  }
  for (int unit : {-1, 248, 254, 256}) {
    ModbusDevice d = GoodDevice();
    d.unit_id = unit;
    EXPECT_FALSE(Validate(d).ok()) << unit;
  }
  ModbusDevice edge = GoodDevice();
  edge.registers[0].address = 65534;  // a float32 ending at the last address
  EXPECT_TRUE(Validate(edge).ok());
  edge.registers[0].type = R::kUInt16;
  edge.registers[0].address = 65535;
  EXPECT_TRUE(Validate(edge).ok());
}

TEST(ModbusValidate, ReportsEveryProblemAtOnce) {
  ModbusDevice d;
  d.name = "plc1";
  d.host = "";
  d.port = 0;
  d.unit_id = 300;
  d.timeout = Millis(0);
  RegisterSpec a = Spec(R::kFloat32);
  a.address = 65535;  // its 2nd word would be 65536
  RegisterSpec b = Spec(R::kUInt16);
  b.metric = "";
  b.address = -1;
  RegisterSpec c = Spec(R::kUInt16);  // metric "m" again
  c.interval = Millis(0);
  c.scale = 0;
  RegisterSpec e = Spec(R::kInt16);
  e.metric = "e";
  e.offset = std::numeric_limits<double>::infinity();
  d.registers = {a, b, c, e};
  Status st = Validate(d);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  for (const char* part :
       {"host is empty", "port 0", "unit_id 300", "timeout 0ms", "address 65535 (float32",
        "register #2: metric name is empty", "address -1", "metric name used twice", "interval 0ms",
        "scale 0", "offset inf"}) {
    EXPECT_NE(st.message().find(part), std::string::npos) << part << " in: " << st.message();
  }

  ModbusDevice empty;
  Status st2 = Validate(empty);
  EXPECT_NE(st2.message().find("name is empty"), std::string::npos);
  EXPECT_NE(st2.message().find("no registers"), std::string::npos);
}

RegisterSpec At(const char* metric, int address, R::Type type, R::Kind kind = R::kHolding,
                Millis interval = Millis(1000)) {
  RegisterSpec s = Spec(type);
  s.metric = metric;
  s.address = address;
  s.kind = kind;
  s.interval = interval;
  return s;
}

TEST(ModbusPlanReads, BatchesContiguousRegistersOfOneKindAndInterval) {
  ModbusDevice d = GoodDevice();
  d.registers = {
      At("c", 3, R::kUInt16),                               // 0: contiguous after a..b
      At("a", 0, R::kFloat32),                              // 1: 0..1
      At("b", 2, R::kInt16),                                // 2: 2
      At("gap", 10, R::kUInt32),                            // 3: 10..11, after a gap
      At("in", 0, R::kInt16, R::kInput),                    // 4: other kind
      At("fast", 4, R::kUInt16, R::kHolding, Millis(100)),  // 5: other interval
      At("overlap", 11, R::kUInt16),                        // 6: inside "gap"
  };
  auto plan = PlanReads(d);
  std::vector<ReadBlock> want = {
      {R::kHolding, 4, 1, Millis(100), {5}},
      {R::kHolding, 0, 4, Millis(1000), {1, 2, 0}},
      {R::kHolding, 10, 2, Millis(1000), {3, 6}},
      {R::kInput, 0, 1, Millis(1000), {4}},
  };
  EXPECT_EQ(plan, want);
}

TEST(ModbusPlanReads, NeverExceeds125RegistersNorSplitsAValue) {
  ModbusDevice d = GoodDevice();
  d.registers.clear();
  for (int i = 0; i < 124; ++i) {
    d.registers.push_back(At(("u" + std::to_string(i)).c_str(), i, R::kUInt16));
  }
  d.registers.push_back(At("f", 124, R::kFloat32));  // 124..125 would make 126
  d.registers.push_back(At("g", 126, R::kUInt16));
  auto plan = PlanReads(d);
  ASSERT_EQ(plan.size(), 2u);
  EXPECT_EQ(plan[0].start, 0);
  EXPECT_EQ(plan[0].count, 124);
  EXPECT_EQ(plan[1].start, 124);
  EXPECT_EQ(plan[1].count, 3);
  for (const auto& b : plan) EXPECT_LE(b.count, kMaxReadRegisters);

  d.registers.clear();
  for (int i = 0; i < 300; ++i) {
    d.registers.push_back(At(("u" + std::to_string(i)).c_str(), 1000 + i, R::kUInt16));
  }
  plan = PlanReads(d);
  ASSERT_EQ(plan.size(), 3u);
  EXPECT_EQ(plan[0].count, 125);
  EXPECT_EQ(plan[1].start, 1125);
  EXPECT_EQ(plan[2].count, 50);
}

TEST(ModbusPoller, SetDevicesValidatesEverythingAndChangesNothingOnError) {
  FakeClock clock;
  ModbusPoller poller(clock, [](std::vector<data::Reading>) {});
  ModbusDevice bad = GoodDevice();
  bad.name = "bad";
  bad.port = 0;
  ModbusDevice dup = GoodDevice();
  Status st = poller.SetDevices({GoodDevice(), dup, bad});
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("\"plc1\": name used twice"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("\"bad\": port 0"), std::string::npos) << st.message();
  EXPECT_TRUE(poller.Stats().empty());

  EXPECT_TRUE(poller.SetDevices({}).ok());
  poller.Stop();
  poller.Stop();
  EXPECT_EQ(poller.SetDevices({GoodDevice()}).code(), Code::kFailedPrecondition);
}

}  // namespace
}  // namespace verge::modbus
