#include "devsim/modbus_map.h"

namespace verge::devsim {
namespace {

using modbus::RegisterSpec;

SimRegister Entry(const char* metric, int address, RegisterSpec::Kind kind, RegisterSpec::Type type,
                  RegisterSpec::Order byte_order, RegisterSpec::Order word_order, double scale,
                  double offset = 0) {
  SimRegister r;
  r.reg.metric = metric;
  r.reg.address = address;
  r.reg.kind = kind;
  r.reg.type = type;
  r.reg.byte_order = byte_order;
  r.reg.word_order = word_order;
  r.reg.scale = scale;
  r.reg.offset = offset;
  r.signal = PresetFor(metric);
  return r;
}

}  // namespace

const std::vector<SimRegister>& ModbusMap() {
  constexpr auto kIn = RegisterSpec::kInput;
  constexpr auto kHold = RegisterSpec::kHolding;
  constexpr auto kBig = RegisterSpec::kBig;
  constexpr auto kLit = RegisterSpec::kLittle;
  static const std::vector<SimRegister> map = {
      Entry("temperature", 0, kIn, RegisterSpec::kInt16, kBig, kBig, 0.01),
      Entry("humidity", 1, kIn, RegisterSpec::kUInt16, kBig, kBig, 0.01),
      Entry("pressure", 2, kIn, RegisterSpec::kUInt16, kLit, kBig, 0.1),
      Entry("vibration", 3, kIn, RegisterSpec::kInt16, kLit, kBig, 0.001),
      Entry("flow", 10, kIn, RegisterSpec::kFloat32, kBig, kBig, 1),
      Entry("power", 12, kIn, RegisterSpec::kFloat32, kBig, kLit, 1),
      Entry("voltage", 14, kIn, RegisterSpec::kFloat32, kLit, kBig, 1),
      Entry("current", 16, kIn, RegisterSpec::kFloat32, kLit, kLit, 1),
      Entry("position", 20, kIn, RegisterSpec::kInt32, kBig, kBig, 0.001),
      Entry("torque", 22, kIn, RegisterSpec::kInt32, kBig, kLit, 0.001),
      Entry("tilt", 24, kIn, RegisterSpec::kInt32, kLit, kBig, 0.0001),
      Entry("strain", 26, kIn, RegisterSpec::kInt32, kLit, kLit, 0.001),
      Entry("speed", 30, kIn, RegisterSpec::kUInt32, kBig, kBig, 0.001),
      Entry("level", 32, kIn, RegisterSpec::kUInt32, kBig, kLit, 0.0001),
      Entry("weight", 34, kIn, RegisterSpec::kUInt32, kLit, kBig, 0.01),
      Entry("light", 36, kIn, RegisterSpec::kUInt32, kLit, kLit, 0.01),
      Entry("setpoint", 0, kHold, RegisterSpec::kUInt16, kBig, kBig, 0.01, -40),
      Entry("valve", 1, kHold, RegisterSpec::kUInt16, kLit, kBig, 0.1),
      Entry("frequency", 2, kHold, RegisterSpec::kFloat32, kBig, kBig, 1),
      Entry("co2", 4, kHold, RegisterSpec::kUInt32, kLit, kLit, 0.01),
  };
  return map;
}

nlohmann::json ModbusMapJson(int devices) {
  nlohmann::json registers = nlohmann::json::array();
  for (const SimRegister& r : ModbusMap()) {
    registers.push_back({{"metric", r.reg.metric},
                         {"unit", r.signal.unit},
                         {"address", r.reg.address},
                         {"kind", modbus::KindName(r.reg.kind)},
                         {"type", modbus::TypeName(r.reg.type)},
                         {"byte_order", modbus::OrderName(r.reg.byte_order)},
                         {"word_order", modbus::OrderName(r.reg.word_order)},
                         {"scale", r.reg.scale},
                         {"offset", r.reg.offset},
                         {"min", r.signal.min},
                         {"max", r.signal.max}});
  }
  nlohmann::json out = {{"devices", nlohmann::json::array()}};
  for (int unit = 1; unit <= devices; ++unit) {
    out["devices"].push_back({{"unit_id", unit}, {"registers", registers}});
  }
  return out;
}

}  // namespace verge::devsim
