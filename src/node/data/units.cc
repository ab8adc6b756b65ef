#include "node/data/units.h"

#include <cmath>

namespace verge::data {
namespace {

constexpr size_t kMaxUnitLength = 32;

Status ValidateUnitName(std::string_view what, std::string_view unit) {
  if (unit.empty()) return Error(Code::kInvalidArgument, "{} unit is empty", what);
  if (unit.size() > kMaxUnitLength) {
    return Error(Code::kInvalidArgument, "{} unit is longer than {} bytes", what, kMaxUnitLength);
  }
  for (char c : unit) {
    // Bytes >= 0x80 are allowed so that UTF-8 names such as "µs" or "°C" can be configured.
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f) {
      return Error(Code::kInvalidArgument, "{} unit {:?} holds whitespace or a control character",
                   what, unit);
    }
  }
  return Status::Ok();
}

struct Builtin {
  const char* from;
  const char* to;
  double scale;
  double offset;
};

// Units field devices commonly report, each straight into its canonical unit.
constexpr Builtin kBuiltins[] = {
    // Temperature.
    {"degF", "degC", 5.0 / 9.0, -32.0 * 5.0 / 9.0},
    {"K", "degC", 1, -273.15},
    // Pressure.
    {"kPa", "Pa", 1e3, 0},
    {"MPa", "Pa", 1e6, 0},
    {"hPa", "Pa", 1e2, 0},
    {"mbar", "Pa", 1e2, 0},
    {"bar", "Pa", 1e5, 0},
    {"psi", "Pa", 6894.757293168361, 0},
    // Electrical.
    {"mA", "A", 1e-3, 0},
    {"mV", "V", 1e-3, 0},
    {"kV", "V", 1e3, 0},
    {"mW", "W", 1e-3, 0},
    {"kW", "W", 1e3, 0},
    {"MW", "W", 1e6, 0},
    // Energy: meters count Wh and kWh; J is the SI unit.
    {"kJ", "J", 1e3, 0},
    {"Wh", "J", 3600, 0},
    {"kWh", "J", 3.6e6, 0},
    // Speed.
    {"km/h", "m/s", 1 / 3.6, 0},
    {"mph", "m/s", 0.44704, 0},
    // Time.
    {"ms", "s", 1e-3, 0},
    {"min", "s", 60, 0},
    {"h", "s", 3600, 0},
    // Length.
    {"mm", "m", 1e-3, 0},
    {"cm", "m", 1e-2, 0},
    {"km", "m", 1e3, 0},
    {"in", "m", 0.0254, 0},
    {"ft", "m", 0.3048, 0},
    // Volume (US gallon).
    {"mL", "L", 1e-3, 0},
    {"gal", "L", 3.785411784, 0},
    // Mass.
    {"g", "kg", 1e-3, 0},
    {"lb", "kg", 0.45359237, 0},
    // Frequency.
    {"kHz", "Hz", 1e3, 0},
};

// Canonical units no built-in converts into; "%" stays a percentage.
constexpr const char* kExtraCanonical[] = {"%"};

}  // namespace

UnitTable UnitTable::Defaults() {
  UnitTable t;
  for (const char* u : kExtraCanonical) t.AddCanonical(u);
  for (const Builtin& b : kBuiltins) {
    Status st = t.Add(b.from, b.to, b.scale, b.offset);
    assert(st.ok());
    (void)st;
  }
  return t;
}

void UnitTable::AddCanonical(std::string_view unit) {
  units_.try_emplace(std::string(unit), UnitConversion{std::string(unit), 1, 0});
}

Status UnitTable::Add(std::string_view from, std::string_view to, double scale, double offset) {
  VERGE_RETURN_IF_ERROR(ValidateUnitName("source", from));
  VERGE_RETURN_IF_ERROR(ValidateUnitName("target", to));
  if (from == to) return Error(Code::kInvalidArgument, "unit {:?} converts into itself", from);
  if (!std::isfinite(scale) || scale == 0) {
    return Error(Code::kInvalidArgument, "unit {:?}: scale {} must be finite and non-zero", from,
                 scale);
  }
  if (!std::isfinite(offset)) {
    return Error(Code::kInvalidArgument, "unit {:?}: offset {} must be finite", from, offset);
  }
  if (const UnitConversion* c = Lookup(from); c != nullptr && c->to == from) {
    return Error(Code::kInvalidArgument,
                 "unit {:?} is canonical (other units convert into it) and cannot be converted",
                 from);
  }
  if (const UnitConversion* c = Lookup(to); c != nullptr && c->to != to) {
    return Error(Code::kInvalidArgument,
                 "unit {:?} converts into {:?}, which converts into {:?}: convert {:?} straight "
                 "into {:?}",
                 from, to, c->to, from, c->to);
  }
  AddCanonical(to);
  units_.insert_or_assign(std::string(from), UnitConversion{std::string(to), scale, offset});
  return Status::Ok();
}

const UnitConversion* UnitTable::Lookup(std::string_view unit) const {
  auto it = units_.find(unit);
  return it == units_.end() ? nullptr : &it->second;
}

}  // namespace verge::data
