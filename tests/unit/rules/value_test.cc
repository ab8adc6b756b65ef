// Value: the rule engine's runtime value. Comparison, key equality and conversions follow
// eKuiper's documented rules (docs "Data types" and cast()), with exact int/float comparison.
#include "node/rules/value.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

namespace verge::rules {

// gtest prints a Value byte by byte otherwise. Static: ADL finds it.
[[maybe_unused]] static void PrintTo(const Value& v, std::ostream* os) {
  *os << TypeName(v.type()) << " " << ToJson(v);
}

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
constexpr int64_t kMin = std::numeric_limits<int64_t>::min();

Value I(int64_t i) { return Value::Int(i); }
Value F(double d) { return Value::Float(d); }
Value S(std::string s) { return Value::String(std::move(s)); }
Value B(bool b) { return Value::Bool(b); }
Value A(Array a) { return Value::MakeArray(std::move(a)); }
Value O(Object o) { return Value::MakeObject(std::move(o)); }

const char* CmpName(Cmp c) {
  switch (c) {
    case Cmp::kLess:
      return "less";
    case Cmp::kEqual:
      return "equal";
    case Cmp::kGreater:
      return "greater";
    case Cmp::kNull:
      return "null";
    case Cmp::kUnordered:
      return "unordered";
    case Cmp::kIncompatible:
      return "incompatible";
  }
  return "?";
}

TEST(RulesValue, ScalarsAreSmallAndStringsShared) {
  static_assert(sizeof(Value) <= 24);
  Value s = S("device-0001");
  Value copy = s;  // NOLINT(performance-unnecessary-copy-initialization): the point of the test
  EXPECT_EQ(&s.string_value(), &copy.string_value());
  EXPECT_TRUE(Value().is_null());
  EXPECT_EQ(I(3).number_value(), 3.0);
  EXPECT_EQ(F(2.5).number_value(), 2.5);
  EXPECT_EQ(TypeName(ValueType::kInt), "bigint");
  EXPECT_EQ(TypeName(ValueType::kObject), "struct");

  Value o = O({{"a", I(1)}, {"b", A({S("x")})}});
  ASSERT_NE(o.Find("b"), nullptr);
  EXPECT_EQ(o.Find("b")->array_value()[0], S("x"));
  EXPECT_EQ(o.Find("c"), nullptr);
  EXPECT_EQ(I(1).Find("a"), nullptr);
}

TEST(RulesValue, CopiesMovesAndAssignmentsKeepTheirValue) {
  static_assert(sizeof(Value) == 24);
  Value v = S("a string longer than the inline buffer");
  const Value kept = v;
  v = I(5);  // a shared payload replaced by a scalar
  EXPECT_EQ(v.int_value(), 5);
  EXPECT_EQ(kept.string_value(), "a string longer than the inline buffer");
  v = kept;  // and back
  EXPECT_EQ(&v.string_value(), &kept.string_value());
  v = F(1.5);
  Value w = std::move(v);
  EXPECT_EQ(w.float_value(), 1.5);
  w = B(true);
  EXPECT_TRUE(w.bool_value());
  // Assigning an element of the value itself, which the assignment lets go of.
  Value arr = A({S("only held by arr"), I(2)});
  arr = arr.array_value()[0];
  EXPECT_EQ(arr, S("only held by arr"));
  Value obj = O({{"k", A({I(1)})}});
  obj = *obj.Find("k");
  EXPECT_EQ(obj, A({I(1)}));
  Value self = S("self");
  Value& alias = self;
  self = alias;
  EXPECT_EQ(self.string_value(), "self");
  self = std::move(alias);
  EXPECT_EQ(self.string_value(), "self");
  std::vector<Value> grown;
  for (int i = 0; i < 100; ++i) grown.push_back(i % 2 == 0 ? S(std::to_string(i)) : I(i));
  EXPECT_EQ(grown[98], S("98"));
  EXPECT_EQ(grown[99], I(99));
}

struct CompareCase {
  Value a;
  Value b;
  Cmp want;
};

TEST(RulesValue, CompareFollowsTheCompatibilityTable) {
  const CompareCase cases[] = {
      {I(1), I(2), Cmp::kLess},
      {I(2), F(2.0), Cmp::kEqual},
      {F(2.5), I(2), Cmp::kGreater},
      {I(-1), F(-0.5), Cmp::kLess},
      {F(-0.0), I(0), Cmp::kEqual},
      // Exact, even where a double cannot hold the integer.
      {I(9'007'199'254'740'993), F(9'007'199'254'740'992.0), Cmp::kGreater},
      {I(kMax), F(9'223'372'036'854'775'808.0), Cmp::kLess},
      {I(kMin), F(-9'223'372'036'854'775'808.0), Cmp::kEqual},
      {F(kInf), I(kMax), Cmp::kGreater},
      {F(-kInf), I(kMin), Cmp::kLess},
      {F(1.5), F(1.25), Cmp::kGreater},
      {F(kNaN), I(1), Cmp::kUnordered},
      {F(kNaN), F(kNaN), Cmp::kUnordered},
      {S("a"), S("b"), Cmp::kLess},
      {S("B"), S("a"), Cmp::kLess},     // bytewise
      {S("é"), S("z"), Cmp::kGreater},  // code point order
      {S(""), S(""), Cmp::kEqual},
      {B(false), B(true), Cmp::kLess},
      {B(true), B(true), Cmp::kEqual},
      {Value(), I(1), Cmp::kNull},
      {S("x"), Value(), Cmp::kNull},
      {Value(), Value(), Cmp::kNull},
      {S("1"), I(1), Cmp::kIncompatible},
      {B(true), I(1), Cmp::kIncompatible},
      {A({I(1)}), A({I(1)}), Cmp::kIncompatible},
      {O({}), O({}), Cmp::kIncompatible},
  };
  for (const CompareCase& c : cases) {
    EXPECT_STREQ(CmpName(Compare(c.a, c.b)), CmpName(c.want))
        << ToJson(c.a) << " vs " << ToJson(c.b);
  }
}

TEST(RulesValue, KeyEqualityAndHashAgree) {
  const std::pair<Value, Value> equal[] = {
      {I(1), F(1.0)},
      {F(-0.0), I(0)},
      {F(kNaN), F(kNaN)},
      {Value(), Value()},
      {S("x"), S("x")},
      {I(kMin), F(-9'223'372'036'854'775'808.0)},
      {A({I(1), S("a")}), A({F(1.0), S("a")})},
      {O({{"a", I(1)}, {"b", A({I(2)})}}), O({{"a", F(1.0)}, {"b", A({F(2.0)})}})},
  };
  for (const auto& [a, b] : equal) {
    EXPECT_TRUE(Equals(a, b)) << ToJson(a) << " vs " << ToJson(b);
    EXPECT_EQ(Hash(a), Hash(b)) << ToJson(a);
  }
  const std::pair<Value, Value> different[] = {
      {I(1), S("1")},
      {Value(), I(0)},
      {B(true), I(1)},
      {F(0.5), I(0)},
      {I(9'007'199'254'740'993), F(9'007'199'254'740'992.0)},
      {A({I(1)}), A({I(1), I(2)})},
      {O({{"a", I(1)}}), O({{"b", I(1)}})},
      {S("a"), S("A")},
  };
  for (const auto& [a, b] : different)
    EXPECT_FALSE(Equals(a, b)) << ToJson(a) << " vs " << ToJson(b);

  std::unordered_set<Value, ValueHash, ValueEq> keys = {I(1),    F(1.0),  I(2),   S("2"),
                                                        Value(), F(kNaN), F(kNaN)};
  EXPECT_EQ(keys.size(), 5u);
}

TEST(RulesValue, ToIntFollowsCast) {
  EXPECT_EQ(ToInt(I(-7)), -7);
  EXPECT_EQ(ToInt(F(3.9)), 3);
  EXPECT_EQ(ToInt(F(-3.9)), -3);
  EXPECT_EQ(ToInt(F(kNaN)), std::nullopt);
  EXPECT_EQ(ToInt(F(1e19)), std::nullopt);
  EXPECT_EQ(ToInt(F(-9'223'372'036'854'775'808.0)), kMin);
  EXPECT_EQ(ToInt(B(true)), 1);
  EXPECT_EQ(ToInt(S("42")), 42);
  EXPECT_EQ(ToInt(S("-9223372036854775808")), kMin);
  EXPECT_EQ(ToInt(S("4.5")), 4);
  EXPECT_EQ(ToInt(S("1e3")), 1000);
  EXPECT_EQ(ToInt(S("abc")), std::nullopt);
  EXPECT_EQ(ToInt(S("")), std::nullopt);
  EXPECT_EQ(ToInt(S(" 1")), std::nullopt);
  EXPECT_EQ(ToInt(S("99999999999999999999")), std::nullopt);  // parses as 1e20: out of range
  EXPECT_EQ(ToInt(Value()), std::nullopt);
  EXPECT_EQ(ToInt(A({})), std::nullopt);
}

TEST(RulesValue, ToFloatAndToBoolFollowCast) {
  EXPECT_EQ(ToFloat(I(3)), 3.0);
  EXPECT_EQ(ToFloat(S("2.5")), 2.5);
  EXPECT_EQ(ToFloat(S("-1e-3")), -0.001);
  EXPECT_EQ(ToFloat(S("inf")), std::nullopt);
  EXPECT_EQ(ToFloat(S("x")), std::nullopt);
  EXPECT_EQ(ToFloat(B(false)), 0.0);
  EXPECT_EQ(ToFloat(O({})), std::nullopt);

  EXPECT_EQ(ToBool(B(true)), true);
  EXPECT_EQ(ToBool(S("TRUE")), true);
  EXPECT_EQ(ToBool(S("False")), false);
  EXPECT_EQ(ToBool(S("1")), true);
  EXPECT_EQ(ToBool(S("0")), false);
  EXPECT_EQ(ToBool(S("yes")), std::nullopt);
  EXPECT_EQ(ToBool(I(0)), false);
  EXPECT_EQ(ToBool(F(0.1)), true);
  EXPECT_EQ(ToBool(Value()), std::nullopt);
}

TEST(RulesValue, TextAndJson) {
  EXPECT_EQ(ToText(I(-5)), "-5");
  EXPECT_EQ(ToText(F(2.0)), "2");
  EXPECT_EQ(ToText(F(0.1)), "0.1");
  EXPECT_EQ(ToText(F(1e21)), "1e+21");
  EXPECT_EQ(ToText(B(true)), "true");
  EXPECT_EQ(ToText(Value()), "null");
  EXPECT_EQ(ToText(S("a\"b")), "a\"b");
  EXPECT_EQ(ToText(A({I(1), S("x")})), "[1,\"x\"]");

  EXPECT_EQ(ToJson(F(2.0)), "2.0");
  EXPECT_EQ(ToJson(F(-0.5)), "-0.5");
  EXPECT_EQ(ToJson(F(1e300)), "1e+300");
  EXPECT_EQ(ToJson(F(kNaN)), "null");
  EXPECT_EQ(ToJson(F(-kInf)), "null");
  EXPECT_EQ(ToJson(S("q\"\\\n\t\x01é")), "\"q\\\"\\\\\\n\\t\\u0001é\"");
  EXPECT_EQ(ToJson(O({{"b", I(1)}, {"a", A({B(true), Value()})}})), "{\"a\":[true,null],\"b\":1}");
  EXPECT_EQ(ToJson(A({})), "[]");
  EXPECT_EQ(ToJson(O({})), "{}");
}

}  // namespace
}  // namespace verge::rules
