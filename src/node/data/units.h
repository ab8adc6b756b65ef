// UnitTable: how the cleaner turns a value in the unit a device sends into the canonical unit
// the rest of the node stores, compares and uplinks (`canonical = value * scale + offset`).
//
// Canonical units are SI-ish and chosen once: degC, Pa, A, V, W, J, m/s, s, m, L, kg, Hz, and
// the dimensionless % (left alone: "%" is not converted to a ratio). Looking a canonical unit up
// yields the identity conversion, so a schema may declare a metric in the unit it is stored in.
// Conversions never chain: every `from` converts straight to a canonical unit, which keeps a
// lookup to one hash probe and rules out cycles.
//
// Thread-safety: a plain value. Build it at start-up (Defaults() plus Add() from config), then
// share it read-only; concurrent Lookup()s are safe as long as nobody calls Add().
#pragma once

#include <string>
#include <string_view>
#include <unordered_map>

#include "common/status.h"

namespace verge::data {

struct UnitConversion {
  std::string to;  // the canonical unit
  double scale = 1;
  double offset = 0;

  double Apply(double value) const { return value * scale + offset; }
  bool identity() const { return scale == 1 && offset == 0; }
};

class UnitTable {
 public:
  // An empty table: no unit is known, not even a canonical one.
  UnitTable() = default;

  // The built-in table of common industrial units (see units.cc for the list).
  static UnitTable Defaults();

  // Adds or replaces the conversion of `from` into `to`. `to` becomes a canonical unit if it is
  // not one yet. Fails, leaving the table unchanged, when a name is empty, too long (32 bytes)
  // or holds whitespace or control characters, when from == to, when `from` is a canonical unit
  // (something converts into it), when `to` is itself converted into another unit (no chains),
  // or when scale is zero or not finite or offset is not finite.
  Status Add(std::string_view from, std::string_view to, double scale, double offset = 0);

  // The conversion of `unit` into its canonical unit; the identity for a canonical unit;
  // nullptr for a unit the table does not know. The pointer stays valid until the next Add().
  const UnitConversion* Lookup(std::string_view unit) const;

  size_t size() const { return units_.size(); }

 private:
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  void AddCanonical(std::string_view unit);

  // Every known unit, canonical ones mapping to themselves.
  std::unordered_map<std::string, UnitConversion, Hash, std::equal_to<>> units_;
};

}  // namespace verge::data
