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

#include <cassert>
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
  Value() noexcept {}  // null
  static Value Null() { return {}; }
  static Value Bool(bool b) {
    Value v;
    v.type_ = ValueType::kBool;
    v.u_.b = b;
    return v;
  }
  static Value Int(int64_t i) {
    Value v;
    v.type_ = ValueType::kInt;
    v.u_.i = i;
    return v;
  }
  static Value Float(double d) {
    Value v;
    v.type_ = ValueType::kFloat;
    v.u_.d = d;
    return v;
  }
  static Value String(std::string s);
  static Value MakeArray(Array a);
  static Value MakeObject(Object o);

  Value(const Value& o) { CopyFrom(o); }
  Value(Value&& o) noexcept { MoveFrom(o); }
  Value& operator=(const Value& o) {
    if (!Shared(type_) && !Shared(o.type_)) {  // scalars: nothing to let go of
      CopyFrom(o);
      return *this;
    }
    if (this != &o) {
      Value copy(o);  // before letting go of ours: `o` may live inside it
      Release();
      MoveFrom(copy);
    }
    return *this;
  }
  Value& operator=(Value&& o) noexcept {
    if (!Shared(type_) && !Shared(o.type_)) {
      CopyFrom(o);
      return *this;
    }
    if (this != &o) {
      Value moved(std::move(o));
      Release();
      MoveFrom(moved);
    }
    return *this;
  }
  ~Value() { Release(); }

  ValueType type() const { return type_; }
  bool is_null() const { return type() == ValueType::kNull; }
  bool is_bool() const { return type() == ValueType::kBool; }
  bool is_int() const { return type() == ValueType::kInt; }
  bool is_float() const { return type() == ValueType::kFloat; }
  bool is_number() const { return is_int() || is_float(); }
  bool is_string() const { return type() == ValueType::kString; }
  bool is_array() const { return type() == ValueType::kArray; }
  bool is_object() const { return type() == ValueType::kObject; }

  // REQUIRES: the value has the type asked for (asserted in debug builds).
  bool bool_value() const {
    assert(is_bool());
    return u_.b;
  }
  int64_t int_value() const {
    assert(is_int());
    return u_.i;
  }
  double float_value() const {
    assert(is_float());
    return u_.d;
  }
  const std::string& string_value() const {
    assert(is_string());
    return *static_cast<const std::string*>(u_.p.get());
  }
  const Array& array_value() const {
    assert(is_array());
    return *static_cast<const Array*>(u_.p.get());
  }
  const Object& object_value() const {
    assert(is_object());
    return *static_cast<const Object*>(u_.p.get());
  }
  // REQUIRES: is_number().
  double number_value() const {
    return is_int() ? static_cast<double>(int_value()) : float_value();
  }

  // Member `key` of an object, nullptr when absent or when this is not an object.
  const Value* Find(std::string_view key) const;

  // Structural equality, see Equals(). Allows Values in gtest assertions.
  friend bool operator==(const Value& a, const Value& b);

 private:
  // A tagged union rather than a std::variant: copying, moving and destroying a scalar (most
  // values the engine handles) is then a few inline instructions, not a visit through a table.
  // Strings, arrays and objects share one pointer; type_ says what it points to.
  union Payload {
    bool b;
    int64_t i = 0;
    double d;
    std::shared_ptr<const void> p;
    Payload() noexcept {
    }              // NOLINT(modernize-use-equals-default): a union with a non-trivial member
    ~Payload() {}  // NOLINT(modernize-use-equals-default): Value destroys the member
  };

  static bool Shared(ValueType t) { return t >= ValueType::kString; }
  static Value Wrap(ValueType type, std::shared_ptr<const void> p) {
    Value v;
    std::construct_at(&v.u_.p, std::move(p));
    v.type_ = type;
    return v;
  }

  // REQUIRES: this holds no shared payload (a scalar, or freshly released).
  void CopyFrom(const Value& o) {
    switch (o.type_) {
      case ValueType::kNull:
        break;
      case ValueType::kBool:
        u_.b = o.u_.b;
        break;
      case ValueType::kInt:
        u_.i = o.u_.i;
        break;
      case ValueType::kFloat:
        u_.d = o.u_.d;
        break;
      case ValueType::kString:
      case ValueType::kArray:
      case ValueType::kObject:
        std::construct_at(&u_.p, o.u_.p);
        break;
    }
    type_ = o.type_;
  }
  // REQUIRES: this holds no shared payload. Leaves `o` null.
  void MoveFrom(Value& o) noexcept {
    if (Shared(o.type_)) {
      std::construct_at(&u_.p, std::move(o.u_.p));
      std::destroy_at(&o.u_.p);
      o.u_.i = 0;
    } else {
      u_.i = 0;
      CopyFrom(o);
    }
    type_ = o.type_;
    o.type_ = ValueType::kNull;
  }
  void Release() noexcept {
    if (Shared(type_)) {
      std::destroy_at(&u_.p);
      u_.i = 0;
    }
    type_ = ValueType::kNull;
  }

  Payload u_;
  ValueType type_ = ValueType::kNull;
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
