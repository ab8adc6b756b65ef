#include "node/rules/value.h"

#include <fmt/format.h>

#include <charconv>
#include <cmath>
#include <functional>

namespace verge::rules {
namespace {

constexpr double kTwo63 = 9223372036854775808.0;  // 2^63, exactly representable

// Orders integer i against double d exactly. REQUIRES: d is not NaN.
Cmp CompareIntFloat(int64_t i, double d) {
  if (d >= kTwo63) return Cmp::kLess;
  if (d < -kTwo63) return Cmp::kGreater;
  const double t = std::trunc(d);  // in [-2^63, 2^63): fits
  const auto ti = static_cast<int64_t>(t);
  if (i < ti) return Cmp::kLess;
  if (i > ti) return Cmp::kGreater;
  if (d > t) return Cmp::kLess;  // i == trunc(d): the fraction decides
  if (d < t) return Cmp::kGreater;
  return Cmp::kEqual;
}

Cmp Flip(Cmp c) {
  if (c == Cmp::kLess) return Cmp::kGreater;
  if (c == Cmp::kGreater) return Cmp::kLess;
  return c;
}

template <typename T>
Cmp Order(const T& a, const T& b) {
  if (a < b) return Cmp::kLess;
  if (b < a) return Cmp::kGreater;
  return Cmp::kEqual;
}

Cmp CompareNumbers(const Value& a, const Value& b) {
  if (a.is_int() && b.is_int()) return Order(a.int_value(), b.int_value());
  if (a.is_float() && std::isnan(a.float_value())) return Cmp::kUnordered;
  if (b.is_float() && std::isnan(b.float_value())) return Cmp::kUnordered;
  if (a.is_float() && b.is_float()) return Order(a.float_value(), b.float_value());
  if (a.is_int()) return CompareIntFloat(a.int_value(), b.float_value());
  return Flip(CompareIntFloat(b.int_value(), a.float_value()));
}

size_t Mix(size_t h, size_t v) { return h ^ (v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2)); }

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i];
    char y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

std::optional<double> ParseDouble(std::string_view s) {
  double d = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), d);
  if (ec != std::errc() || end != s.data() + s.size() || !std::isfinite(d)) return std::nullopt;
  return d;
}

std::optional<int64_t> FloatToInt(double d) {
  if (std::isnan(d) || d >= kTwo63 || d < -kTwo63) return std::nullopt;
  return static_cast<int64_t>(std::trunc(d));
}

void AppendJsonString(std::string& out, std::string_view s) {
  out += '"';
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += fmt::format("\\u{:04x}", static_cast<unsigned char>(c));
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

void AppendJson(std::string& out, const Value& v) {
  switch (v.type()) {
    case ValueType::kNull:
      out += "null";
      return;
    case ValueType::kBool:
      out += v.bool_value() ? "true" : "false";
      return;
    case ValueType::kInt:
      out += fmt::format("{}", v.int_value());
      return;
    case ValueType::kFloat: {
      double d = v.float_value();
      if (!std::isfinite(d)) {
        out += "null";
        return;
      }
      std::string s = fmt::format("{}", d);
      if (s.find_first_of(".e") == std::string::npos) s += ".0";
      out += s;
      return;
    }
    case ValueType::kString:
      AppendJsonString(out, v.string_value());
      return;
    case ValueType::kArray: {
      out += '[';
      bool first = true;
      for (const Value& e : v.array_value()) {
        if (!first) out += ',';
        first = false;
        AppendJson(out, e);
      }
      out += ']';
      return;
    }
    case ValueType::kObject: {
      out += '{';
      bool first = true;
      for (const auto& [key, e] : v.object_value()) {
        if (!first) out += ',';
        first = false;
        AppendJsonString(out, key);
        out += ':';
        AppendJson(out, e);
      }
      out += '}';
      return;
    }
  }
}

}  // namespace

std::string_view TypeName(ValueType type) {
  switch (type) {
    case ValueType::kNull:
      return "null";
    case ValueType::kBool:
      return "boolean";
    case ValueType::kInt:
      return "bigint";
    case ValueType::kFloat:
      return "float";
    case ValueType::kString:
      return "string";
    case ValueType::kArray:
      return "array";
    case ValueType::kObject:
      return "struct";
  }
  return "unknown";
}

Value Value::String(std::string s) {
  return Wrap(ValueType::kString, std::make_shared<const std::string>(std::move(s)));
}
Value Value::MakeArray(Array a) {
  return Wrap(ValueType::kArray, std::make_shared<const Array>(std::move(a)));
}
Value Value::MakeObject(Object o) {
  return Wrap(ValueType::kObject, std::make_shared<const Object>(std::move(o)));
}

const Value* Value::Find(std::string_view key) const {
  if (!is_object()) return nullptr;
  const Object& o = object_value();
  auto it = o.find(key);
  return it == o.end() ? nullptr : &it->second;
}

bool operator==(const Value& a, const Value& b) { return Equals(a, b); }

Cmp Compare(const Value& a, const Value& b) {
  if (a.is_null() || b.is_null()) return Cmp::kNull;
  if (a.is_number() && b.is_number()) return CompareNumbers(a, b);
  if (a.is_string() && b.is_string()) {
    int c = a.string_value().compare(b.string_value());
    return c < 0 ? Cmp::kLess : c > 0 ? Cmp::kGreater : Cmp::kEqual;
  }
  if (a.is_bool() && b.is_bool()) return Order(a.bool_value(), b.bool_value());
  return Cmp::kIncompatible;
}

bool Equals(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    Cmp c = CompareNumbers(a, b);
    if (c == Cmp::kUnordered) {
      return a.is_float() && b.is_float() && std::isnan(a.float_value()) &&
             std::isnan(b.float_value());
    }
    return c == Cmp::kEqual;
  }
  if (a.type() != b.type()) return false;
  switch (a.type()) {
    case ValueType::kNull:
      return true;
    case ValueType::kBool:
      return a.bool_value() == b.bool_value();
    case ValueType::kString:
      return a.string_value() == b.string_value();
    case ValueType::kArray: {
      const Array& x = a.array_value();
      const Array& y = b.array_value();
      if (x.size() != y.size()) return false;
      for (size_t i = 0; i < x.size(); ++i) {
        if (!Equals(x[i], y[i])) return false;
      }
      return true;
    }
    case ValueType::kObject: {
      const Object& x = a.object_value();
      const Object& y = b.object_value();
      if (x.size() != y.size()) return false;
      for (auto i = x.begin(), j = y.begin(); i != x.end(); ++i, ++j) {
        if (i->first != j->first || !Equals(i->second, j->second)) return false;
      }
      return true;
    }
    case ValueType::kInt:
    case ValueType::kFloat:
      break;  // handled above
  }
  return false;
}

size_t Hash(const Value& v) {
  switch (v.type()) {
    case ValueType::kNull:
      return 0x6e756c6cU;
    case ValueType::kBool:
      return v.bool_value() ? 0x74727565U : 0x66616c73U;
    case ValueType::kInt:
      return std::hash<int64_t>()(v.int_value());
    case ValueType::kFloat: {
      // Integral floats hash as the integer they equal; -0.0 is integral too.
      double d = v.float_value();
      if (std::isnan(d)) return 0x6e616eU;
      if (d == std::trunc(d) && d >= -kTwo63 && d < kTwo63) {
        return std::hash<int64_t>()(static_cast<int64_t>(d));
      }
      return std::hash<double>()(d);
    }
    case ValueType::kString:
      return std::hash<std::string_view>()(v.string_value());
    case ValueType::kArray: {
      size_t h = 0x61727261U;
      for (const Value& e : v.array_value()) h = Mix(h, Hash(e));
      return h;
    }
    case ValueType::kObject: {
      size_t h = 0x6f626a65U;
      for (const auto& [key, e] : v.object_value()) {
        h = Mix(Mix(h, std::hash<std::string_view>()(key)), Hash(e));
      }
      return h;
    }
  }
  return 0;
}

std::optional<int64_t> ToInt(const Value& v) {
  switch (v.type()) {
    case ValueType::kInt:
      return v.int_value();
    case ValueType::kFloat:
      return FloatToInt(v.float_value());
    case ValueType::kBool:
      return v.bool_value() ? 1 : 0;
    case ValueType::kString: {
      const std::string& s = v.string_value();
      int64_t i = 0;
      auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), i);
      if (ec == std::errc() && end == s.data() + s.size()) return i;
      if (auto d = ParseDouble(s)) return FloatToInt(*d);
      return std::nullopt;
    }
    default:
      return std::nullopt;
  }
}

std::optional<double> ToFloat(const Value& v) {
  switch (v.type()) {
    case ValueType::kInt:
      return static_cast<double>(v.int_value());
    case ValueType::kFloat:
      return v.float_value();
    case ValueType::kBool:
      return v.bool_value() ? 1.0 : 0.0;
    case ValueType::kString:
      return ParseDouble(v.string_value());
    default:
      return std::nullopt;
  }
}

std::optional<bool> ToBool(const Value& v) {
  switch (v.type()) {
    case ValueType::kBool:
      return v.bool_value();
    case ValueType::kInt:
      return v.int_value() != 0;
    case ValueType::kFloat:
      return v.float_value() != 0;
    case ValueType::kString: {
      const std::string& s = v.string_value();
      if (EqualsIgnoreCase(s, "true") || s == "1") return true;
      if (EqualsIgnoreCase(s, "false") || s == "0") return false;
      return std::nullopt;
    }
    default:
      return std::nullopt;
  }
}

std::string ToText(const Value& v) {
  switch (v.type()) {
    case ValueType::kString:
      return v.string_value();
    case ValueType::kFloat:
      return fmt::format("{}", v.float_value());
    default:
      return ToJson(v);
  }
}

std::string ToJson(const Value& v) {
  std::string out;
  AppendJson(out, v);
  return out;
}

}  // namespace verge::rules
