// Value: one runtime value of the rule engine (a column of an event, a literal, the result of an
// expression). The types are eKuiper's: null, boolean, bigint (int64), float (double), string,
// array and struct (an object with string keys). eKuiper's datetime is a bigint of Unix
// milliseconds here, and bytea a string of raw bytes.
//
// Scalars are stored inline (a Value is 24 bytes) and copy without allocating. Strings, arrays
// and objects are immutable and shared: copying one bumps a reference count, never the bytes.
// Build an array or object completely, then wrap it in a Value.
//
// Comparison follows eKuiper's compatibility table (docs "Data types"):
//   - bigint and float compare with each other by their exact numeric value (eKuiper converts
//     the bigint to a float first, which differs only beyond 2^53);
//   - strings compare with strings, bytewise (UTF-8 order = code point order);
//   - booleans compare with booleans (false < true);
//   - null compared with anything is "null": every comparison operator is false for it;
//   - arrays and structs, and every other mix of types, are incompatible: a runtime error.
// Equals() and Hash() are the equality of GROUP BY keys, IN, CASE and deduplicate(): like
// Compare for scalars, but null equals null, NaN equals NaN, and arrays and structs compare
// element by element.
//
// Thread-safety: a Value may be read from several threads at once (the shared payloads are
// immutable and their reference counts atomic).
#pragma once

#include <compare>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace verge::rules {

class Value;
using Array = std::vector<Value>;
// Keys in byte order; std::less<> allows lookups by string_view.
using Object = std::map<std::string, Value, std::less<>>;

enum class ValueType : uint8_t { kNull, kBool, kInt, kFloat, kString, kArray, kObject };

// eKuiper's name of a type, for messages: "null", "boolean", "bigint", "float", "string",
// "array", "struct".
std::string_view TypeName(ValueType type);

// The outcome of comparing two values.
enum class Cmp : uint8_t {
  kLess,
  kEqual,
  kGreater,
  kNull,          // one side is null: every comparison operator yields false
  kUnordered,     // a NaN is involved: every operator but != yields false
  kIncompatible,  // types that do not compare (string and bigint, arrays, ...): runtime error
};

class Value {
 public:
  Value() = default;  // null
  static Value Null() { return {}; }
  static Value Bool(bool b) { return Value(Rep(b)); }
  static Value Int(int64_t i) { return Value(Rep(i)); }
  static Value Float(double d) { return Value(Rep(d)); }
  static Value String(std::string s);
  static Value MakeArray(Array a);
  static Value MakeObject(Object o);

  ValueType type() const { return static_cast<ValueType>(rep_.index()); }
  bool is_null() const { return type() == ValueType::kNull; }
  bool is_bool() const { return type() == ValueType::kBool; }
  bool is_int() const { return type() == ValueType::kInt; }
  bool is_float() const { return type() == ValueType::kFloat; }
  bool is_number() const { return is_int() || is_float(); }
  bool is_string() const { return type() == ValueType::kString; }
  bool is_array() const { return type() == ValueType::kArray; }
  bool is_object() const { return type() == ValueType::kObject; }

  // REQUIRES: the value has the type asked for.
  bool bool_value() const { return std::get<bool>(rep_); }
  int64_t int_value() const { return std::get<int64_t>(rep_); }
  double float_value() const { return std::get<double>(rep_); }
  const std::string& string_value() const { return *std::get<StringRef>(rep_); }
  const Array& array_value() const { return *std::get<ArrayRef>(rep_); }
  const Object& object_value() const { return *std::get<ObjectRef>(rep_); }
  // REQUIRES: is_number().
  double number_value() const {
    return is_int() ? static_cast<double>(int_value()) : float_value();
  }

  // Member `key` of an object, nullptr when absent or when this is not an object.
  const Value* Find(std::string_view key) const;

  // Structural equality, see Equals(). Allows Values in gtest assertions.
  friend bool operator==(const Value& a, const Value& b);

 private:
  using StringRef = std::shared_ptr<const std::string>;
  using ArrayRef = std::shared_ptr<const Array>;
  using ObjectRef = std::shared_ptr<const Object>;
  // The index is the ValueType.
  using Rep = std::variant<std::monostate, bool, int64_t, double, StringRef, ArrayRef, ObjectRef>;

  explicit Value(Rep rep) : rep_(std::move(rep)) {}

  Rep rep_;
};

// Compares as the operators = != < <= > >= do; see the header comment.
Cmp Compare(const Value& a, const Value& b);

// Key equality: null == null, NaN == NaN, 1 == 1.0, arrays and objects element-wise.
bool Equals(const Value& a, const Value& b);
// Consistent with Equals: Equals(a, b) implies Hash(a) == Hash(b).
size_t Hash(const Value& v);

struct ValueHash {
  size_t operator()(const Value& v) const { return Hash(v); }
};
struct ValueEq {
  bool operator()(const Value& a, const Value& b) const { return Equals(a, b); }
};

// Conversions of cast(x, "type"), following eKuiper; nullopt when the value does not convert
// (the caller reports a runtime error). Null converts to null, which callers handle first.
//   bigint:  bigint; float truncated towards zero (nullopt if NaN or out of range); boolean 1/0;
//            string holding an integer, or a float that converts.
//   float:   bigint, float; boolean 1/0; string holding a number.
//   boolean: boolean; bigint/float: non-zero is true; string "true"/"false"/"1"/"0"
//            (case-insensitive).
//   string:  every value: see ToText().
std::optional<int64_t> ToInt(const Value& v);
std::optional<double> ToFloat(const Value& v);
std::optional<bool> ToBool(const Value& v);

// The text of a value as cast(x, "string") and concat() see it: strings as they are, integers
// in decimal, floats in the shortest form that reads back as the same double ("0.1", "2",
// "1e+21"), booleans "true"/"false", null "null", arrays and objects as JSON.
std::string ToText(const Value& v);

// JSON text: strings quoted and escaped, floats as in ToText but always with a decimal point or
// exponent ("2.0"), NaN and infinities as null (JSON has none), objects with keys in byte
// order. Deterministic, so tests can compare rows as text.
std::string ToJson(const Value& v);

}  // namespace verge::rules
