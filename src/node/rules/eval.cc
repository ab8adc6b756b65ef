#include "node/rules/eval.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <regex>
#include <string>
#include <utility>
#include <vector>

#include "common/timestamp.h"
#include "node/rules/functions.h"

namespace verge::rules {
namespace {

using R = Result<Value>;

Status Err(const Expr& e, std::string_view what) { return RuntimeError(e.pos, what); }

std::string Describe(const Value& v) {
  std::string text = ToJson(v);
  if (text.size() > 40) text = text.substr(0, 37) + "...";
  return fmt::format("{}({})", TypeName(v.type()), text);
}

Status InvalidOp(const Expr& e, const Value& a, const Value& b) {
  return Err(e, fmt::format("invalid operation {} {} {}", Describe(a), OpName(e.op), Describe(b)));
}

// Two's-complement wrapping arithmetic (Go's int64 semantics), without signed overflow UB.
int64_t Wrap(uint64_t u) { return static_cast<int64_t>(u); }

R Arithmetic(const Expr& e, const Value& a, const Value& b) {
  if (a.is_null() || b.is_null()) return Value::Null();
  if (a.is_bool() && b.is_bool() &&
      (e.op == Op::kBitAnd || e.op == Op::kBitOr || e.op == Op::kBitXor)) {
    bool x = a.bool_value();
    bool y = b.bool_value();
    if (e.op == Op::kBitAnd) return Value::Bool(x && y);
    if (e.op == Op::kBitOr) return Value::Bool(x || y);
    return Value::Bool(x != y);
  }
  if (!a.is_number() || !b.is_number()) return InvalidOp(e, a, b);
  if (a.is_int() && b.is_int()) {
    const int64_t x = a.int_value();
    const int64_t y = b.int_value();
    const auto ux = static_cast<uint64_t>(x);
    const auto uy = static_cast<uint64_t>(y);
    switch (e.op) {
      case Op::kAdd:
        return Value::Int(Wrap(ux + uy));
      case Op::kSub:
        return Value::Int(Wrap(ux - uy));
      case Op::kMul:
        return Value::Int(Wrap(ux * uy));
      case Op::kDiv:
        if (y == 0) return Err(e, "division by zero");
        if (y == -1) return Value::Int(Wrap(0 - ux));
        return Value::Int(x / y);
      case Op::kMod:
        if (y == 0) return Err(e, "division by zero");
        if (y == -1) return Value::Int(0);
        return Value::Int(x % y);
      case Op::kBitAnd:
        return Value::Int(x & y);
      case Op::kBitOr:
        return Value::Int(x | y);
      case Op::kBitXor:
        return Value::Int(x ^ y);
      default:
        return InvalidOp(e, a, b);
    }
  }
  const double x = a.number_value();
  const double y = b.number_value();
  switch (e.op) {
    case Op::kAdd:
      return Value::Float(x + y);
    case Op::kSub:
      return Value::Float(x - y);
    case Op::kMul:
      return Value::Float(x * y);
    case Op::kDiv:
      if (y == 0) return Err(e, "division by zero");
      return Value::Float(x / y);
    case Op::kMod:
      if (y == 0) return Err(e, "division by zero");
      return Value::Float(std::fmod(x, y));
    default:
      return InvalidOp(e, a, b);
  }
}

R Comparison(const Expr& e, const Value& a, const Value& b) {
  Cmp c = Compare(a, b);
  switch (c) {
    case Cmp::kNull:
      return Value::Bool(false);
    case Cmp::kIncompatible:
      return InvalidOp(e, a, b);
    case Cmp::kUnordered:
      return Value::Bool(e.op == Op::kNe);
    default:
      break;
  }
  switch (e.op) {
    case Op::kEq:
      return Value::Bool(c == Cmp::kEqual);
    case Op::kNe:
      return Value::Bool(c != Cmp::kEqual);
    case Op::kLt:
      return Value::Bool(c == Cmp::kLess);
    case Op::kLe:
      return Value::Bool(c != Cmp::kGreater);
    case Op::kGt:
      return Value::Bool(c == Cmp::kGreater);
    case Op::kGe:
      return Value::Bool(c != Cmp::kLess);
    default:
      return InvalidOp(e, a, b);
  }
}

// Three-valued logic operand: 1 true, 0 false, -1 null.
Result<int> Truth(const Expr& e, const Value& v) {
  if (v.is_null()) return -1;
  if (!v.is_bool()) {
    return Err(e, fmt::format("{} needs a boolean, found {}", OpName(e.op), Describe(v)));
  }
  return v.bool_value() ? 1 : 0;
}

R Logic(const Expr& e, const EvalScope& s) {
  VERGE_ASSIGN_OR_RETURN(Value a, Eval(e.args[0], s));
  VERGE_ASSIGN_OR_RETURN(int x, Truth(e, a));
  if (e.op == Op::kAnd && x == 0) return Value::Bool(false);
  if (e.op == Op::kOr && x == 1) return Value::Bool(true);
  VERGE_ASSIGN_OR_RETURN(Value b, Eval(e.args[1], s));
  VERGE_ASSIGN_OR_RETURN(int y, Truth(e, b));
  if (e.op == Op::kAnd) {
    if (y == 0) return Value::Bool(false);
    if (x == -1 || y == -1) return Value::Null();
    return Value::Bool(true);
  }
  if (y == 1) return Value::Bool(true);
  if (x == -1 || y == -1) return Value::Null();
  return Value::Bool(false);
}

// Length of the UTF-8 sequence starting with byte c (1 for invalid bytes).
size_t Utf8Len(unsigned char c) {
  if (c < 0x80) return 1;
  if ((c >> 5) == 0x6) return 2;
  if ((c >> 4) == 0xE) return 3;
  if ((c >> 3) == 0x1E) return 4;
  return 1;
}

std::vector<std::string_view> CodePoints(std::string_view s) {
  std::vector<std::string_view> out;
  for (size_t i = 0; i < s.size();) {
    size_t n = std::min(Utf8Len(static_cast<unsigned char>(s[i])), s.size() - i);
    out.push_back(s.substr(i, n));
    i += n;
  }
  return out;
}

bool LikeCp(const std::vector<std::string_view>& t, size_t ti,
            const std::vector<std::string_view>& p, size_t pi) {
  // Iterative with backtracking on the last %, linear in practice.
  size_t star_p = std::string_view::npos;
  size_t star_t = 0;
  while (ti < t.size()) {
    if (pi < p.size() && p[pi] == "%") {
      star_p = pi++;
      star_t = ti;
      continue;
    }
    if (pi < p.size()) {
      std::string_view want = p[pi];
      size_t step = 1;
      bool any = want == "_";
      if (want == "\\" && pi + 1 < p.size()) {
        want = p[pi + 1];
        step = 2;
        any = false;
      }
      if (any || want == t[ti]) {
        pi += step;
        ++ti;
        continue;
      }
    }
    if (star_p == std::string_view::npos) return false;
    pi = star_p + 1;
    ti = ++star_t;
  }
  while (pi < p.size() && p[pi] == "%") ++pi;
  return pi == p.size();
}

// --- functions ------------------------------------------------------------------------------

Status ArgType(const Expr& call, size_t i, std::string_view want, const Value& got) {
  return Err(call, fmt::format("argument {} of {}() must be {}, found {}", i + 1, call.name, want,
                               Describe(got)));
}

// Datetime arguments: bigint Unix ms, a float (truncated), or RFC 3339 / "YYYY-MM-DD" /
// "YYYY-MM-DD HH:MM:SS" text (UTC unless it has a zone).
std::optional<int64_t> ToMillis(const Value& v) {
  if (v.is_int()) return v.int_value();
  if (v.is_float()) return ToInt(v);
  if (!v.is_string()) return std::nullopt;
  std::string s = v.string_value();
  if (s.size() == 10) s += "T00:00:00Z";
  if (s.size() == 19) s += "Z";
  auto ns = ParseRfc3339(s);
  if (!ns.ok()) return std::nullopt;
  int64_t n = *ns;
  return n >= 0 ? n / 1000000 : -((-n + 999999) / 1000000);
}

// Datetimes the calendar functions accept: ±2^53 ms (±285,000 years).
constexpr int64_t kMaxDatetime = int64_t{1} << 53;

struct Civil {
  int64_t year;
  int month, day, hour, minute, second, milli, weekday /* 0 = Sunday */, yday /* 1-based */;
};

int64_t FloorDiv(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

// Howard Hinnant's civil_from_days.
Civil ToCivil(int64_t ms) {
  const int64_t days = FloorDiv(ms, 86400000);
  int64_t rem = ms - days * 86400000;
  Civil c{};
  c.milli = static_cast<int>(rem % 1000);
  rem /= 1000;
  c.second = static_cast<int>(rem % 60);
  c.minute = static_cast<int>((rem / 60) % 60);
  c.hour = static_cast<int>(rem / 3600);
  c.weekday = static_cast<int>(((days % 7) + 11) % 7);  // 1970-01-01 was a Thursday (4)
  int64_t z = days + 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const int64_t doe = z - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t y = yoe + era * 400;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int64_t mp = (5 * doy + 2) / 153;
  c.day = static_cast<int>(doy - (153 * mp + 2) / 5 + 1);
  c.month = static_cast<int>(mp < 10 ? mp + 3 : mp - 9);
  if (c.month <= 2) ++y;
  c.year = y;
  static constexpr std::array<int, 12> kBefore = {0,   31,  59,  90,  120, 151,
                                                  181, 212, 243, 273, 304, 334};
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  c.yday = kBefore[static_cast<size_t>(c.month - 1)] + c.day + (leap && c.month > 2 ? 1 : 0);
  return c;
}

constexpr std::array<std::string_view, 7> kDayNames = {"Sunday",   "Monday", "Tuesday", "Wednesday",
                                                       "Thursday", "Friday", "Saturday"};

// eKuiper's (Java-like) layout letters: yyyy/YYYY year, MM month, dd day, HH hour, mm minute,
// ss second, SSS milliseconds, EEE day name (3 letters), EEEE full; other letters literally;
// text in single quotes verbatim. Single letters (M d H m s) print without padding.
std::string FormatTime(int64_t ms, std::string_view layout) {
  Civil c = ToCivil(ms);
  std::string out;
  for (size_t i = 0; i < layout.size();) {
    char ch = layout[i];
    size_t n = 1;
    while (i + n < layout.size() && layout[i + n] == ch) ++n;
    if (ch == '\'') {
      size_t end = layout.find('\'', i + 1);
      if (end == std::string_view::npos) end = layout.size();
      out += layout.substr(i + 1, end - i - 1);
      i = end + 1;
      continue;
    }
    auto num = [&](int64_t v, size_t width) { out += fmt::format("{:0{}}", v, width); };
    switch (ch) {
      case 'y':
      case 'Y':
        if (n == 2) {
          num(c.year % 100, 2);
        } else {
          num(c.year, 4);
        }
        break;
      case 'M':
        num(c.month, n >= 2 ? 2 : 1);
        break;
      case 'd':
        num(c.day, n >= 2 ? 2 : 1);
        break;
      case 'H':
        num(c.hour, n >= 2 ? 2 : 1);
        break;
      case 'm':
        num(c.minute, n >= 2 ? 2 : 1);
        break;
      case 's':
        num(c.second, n >= 2 ? 2 : 1);
        break;
      case 'S':
        num(c.milli, 3);
        break;
      case 'E':
        out += n >= 4 ? kDayNames[static_cast<size_t>(c.weekday)]
                      : kDayNames[static_cast<size_t>(c.weekday)].substr(0, 3);
        break;
      default:
        out.append(n, ch);
    }
    i += n;
  }
  return out;
}

// Go-style duration with an optional sign: "1h30m", "-90s", "100ms", "200us", "300ns".
std::optional<int64_t> ParseGoDurationMs(std::string_view s) {
  bool neg = false;
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
    neg = s[0] == '-';
    s.remove_prefix(1);
  }
  if (s.empty()) return std::nullopt;
  double total_ns = 0;
  while (!s.empty()) {
    size_t i = 0;
    while (i < s.size() && ((s[i] >= '0' && s[i] <= '9') || s[i] == '.')) ++i;
    if (i == 0) return std::nullopt;
    double v = std::strtod(std::string(s.substr(0, i)).c_str(), nullptr);
    s.remove_prefix(i);
    size_t j = 0;
    while (j < s.size() && !((s[j] >= '0' && s[j] <= '9') || s[j] == '.')) ++j;
    std::string_view unit = s.substr(0, j);
    s.remove_prefix(j);
    double mult = 0;
    if (unit == "ns") {
      mult = 1;
    } else if (unit == "us" || unit == "\xC2\xB5s") {
      mult = 1e3;
    } else if (unit == "ms") {
      mult = 1e6;
    } else if (unit == "s") {
      mult = 1e9;
    } else if (unit == "m") {
      mult = 60e9;
    } else if (unit == "h") {
      mult = 3600e9;
    } else {
      return std::nullopt;
    }
    total_ns += v * mult;
  }
  if (total_ns > 9e21) return std::nullopt;
  auto ms = static_cast<int64_t>(total_ns / 1e6);
  return neg ? -ms : ms;
}

std::mt19937_64& Rng() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return rng;
}

std::string NewUuid() {
  uint64_t hi = Rng()();
  uint64_t lo = Rng()();
  hi = (hi & ~uint64_t{0xF000}) | 0x4000;                      // version 4
  lo = (lo & ~(uint64_t{0xC} << 60)) | (uint64_t{0x8} << 60);  // variant 10
  return fmt::format("{:08x}-{:04x}-{:04x}-{:04x}-{:012x}", hi >> 32, (hi >> 16) & 0xFFFF,
                     hi & 0xFFFF, lo >> 48, lo & 0xFFFFFFFFFFFFULL);
}

std::string_view TrimLeft(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front())) != 0) s.remove_prefix(1);
  return s;
}
std::string_view TrimRight(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back())) != 0) s.remove_suffix(1);
  return s;
}

// Compiled patterns, per thread: rules call the regexp functions with the same literal pattern
// for every event. Bounded: cleared when full.
Result<std::shared_ptr<const std::regex>> MakeRegex(const Expr& call, const std::string& pattern) {
  thread_local std::unordered_map<std::string, std::shared_ptr<const std::regex>> cache;
  if (auto it = cache.find(pattern); it != cache.end()) return it->second;
  std::shared_ptr<const std::regex> re;
  try {
    re = std::make_shared<const std::regex>(pattern, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    return Err(call, fmt::format("invalid regular expression {:?}: {}", pattern, e.what()));
  }
  if (cache.size() >= 64) cache.clear();
  cache.emplace(pattern, re);
  return re;
}

// The evaluated arguments of a scalar call.
using Args = std::span<const Value>;

R MathUnary(const Expr& call, const Value& x, double (*f)(double)) {
  if (!x.is_number()) return ArgType(call, 0, "a number", x);
  return Value::Float(f(x.number_value()));
}

R CallScalar(const Expr& call, Args a, const EvalScope& s) {
  // A string_view compares lengths first: the dispatch below costs little per call.
  const std::string_view f = call.name;
  // Functions that look at nulls themselves.
  if (f == "isnull") return Value::Bool(a[0].is_null());
  if (f == "coalesce") {
    for (const Value& v : a) {
      if (!v.is_null()) return v;
    }
    return Value::Null();
  }
  if (f == "concat") {
    std::string out;
    for (const Value& v : a) {
      if (!v.is_null()) out += ToText(v);
    }
    return Value::String(std::move(out));
  }
  if (f == "now") {
    std::string text = FormatTime(s.now_ms, "yyyy-MM-dd HH:mm:ss");
    if (a.size() == 1 && a[0].is_int() && a[0].int_value() > 0) {
      int64_t fsp = std::min<int64_t>(a[0].int_value(), 3);
      text +=
          fmt::format(".{:03}", ToCivil(s.now_ms).milli).substr(0, static_cast<size_t>(fsp) + 1);
    }
    return Value::String(std::move(text));
  }
  if (f == "tstamp") return Value::Int(s.now_ms);
  if (f == "event_time") return Value::Int(s.event_ms);
  if (f == "cur_date") return Value::String(FormatTime(s.now_ms, "yyyy-MM-dd"));
  if (f == "cur_time") return Value::String(FormatTime(s.now_ms, "HH:mm:ss"));
  if (f == "rand") return Value::Float(std::uniform_real_distribution<double>(0, 1)(Rng()));
  if (f == "newuuid") return Value::String(NewUuid());
  // Everything else: null in, null out.
  for (const Value& v : a) {
    if (v.is_null()) return Value::Null();
  }
  if (f == "cast") {
    const std::string& type = call.args[1].value.string_value();
    std::string t;
    for (char c : type) t += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    const Value& x = a[0];
    if (t == "bigint") {
      if (auto i = ToInt(x)) return Value::Int(*i);
    } else if (t == "float") {
      if (auto d = ToFloat(x)) return Value::Float(*d);
    } else if (t == "boolean") {
      if (auto b = ToBool(x)) return Value::Bool(*b);
    } else if (t == "string" || t == "bytea") {
      return Value::String(ToText(x));
    } else if (t == "datetime") {
      if (auto ms = ToMillis(x)) return Value::Int(*ms);
    }
    return Err(call, fmt::format("cannot cast {} to {}", Describe(x), t));
  }
  // Math.
  if (f == "abs") {
    if (a[0].is_int())
      return Value::Int(Wrap(a[0].int_value() < 0 ? 0 - static_cast<uint64_t>(a[0].int_value())
                                                  : static_cast<uint64_t>(a[0].int_value())));
    return MathUnary(call, a[0], [](double x) { return std::fabs(x); });
  }
  if (f == "ceil" || f == "floor" || f == "round") {
    if (a[0].is_int()) return a[0];
    if (f == "ceil") return MathUnary(call, a[0], [](double x) { return std::ceil(x); });
    if (f == "floor") return MathUnary(call, a[0], [](double x) { return std::floor(x); });
    return MathUnary(call, a[0], [](double x) { return std::round(x); });
  }
  if (f == "sign") {
    if (!a[0].is_number()) return ArgType(call, 0, "a number", a[0]);
    double x = a[0].number_value();
    return Value::Int(x > 0 ? 1 : x < 0 ? -1 : 0);
  }
  using Fn = double (*)(double);
  static const std::pair<std::string_view, Fn> kUnary[] = {
      {"acos", [](double x) { return std::acos(x); }},
      {"asin", [](double x) { return std::asin(x); }},
      {"atan", [](double x) { return std::atan(x); }},
      {"cos", [](double x) { return std::cos(x); }},
      {"cosh", [](double x) { return std::cosh(x); }},
      {"exp", [](double x) { return std::exp(x); }},
      {"ln", [](double x) { return std::log(x); }},
      {"sin", [](double x) { return std::sin(x); }},
      {"sinh", [](double x) { return std::sinh(x); }},
      {"sqrt", [](double x) { return std::sqrt(x); }},
      {"tan", [](double x) { return std::tan(x); }},
      {"tanh", [](double x) { return std::tanh(x); }},
  };
  for (const auto& [name, fn] : kUnary) {
    if (f == name) return MathUnary(call, a[0], fn);
  }
  if (f == "log") {
    for (size_t i = 0; i < a.size(); ++i) {
      if (!a[i].is_number()) return ArgType(call, i, "a number", a[i]);
    }
    if (a.size() == 1) return Value::Float(std::log10(a[0].number_value()));
    return Value::Float(std::log(a[1].number_value()) / std::log(a[0].number_value()));
  }
  if (f == "atan2" || f == "power") {
    for (size_t i = 0; i < 2; ++i) {
      if (!a[i].is_number()) return ArgType(call, i, "a number", a[i]);
    }
    double x = a[0].number_value();
    double y = a[1].number_value();
    return Value::Float(f == "atan2" ? std::atan2(x, y) : std::pow(x, y));
  }
  if (f == "mod") {
    Expr op;  // just what Arithmetic() reads: the operator and where it is
    op.kind = ExprKind::kBinary;
    op.op = Op::kMod;
    op.pos = call.pos;
    return Arithmetic(op, a[0], a[1]);
  }
  if (f == "bitand" || f == "bitor" || f == "bitxor" || f == "bitnot") {
    for (size_t i = 0; i < a.size(); ++i) {
      if (!a[i].is_int()) return ArgType(call, i, "a bigint", a[i]);
    }
    int64_t x = a[0].int_value();
    if (f == "bitnot") return Value::Int(~x);
    int64_t y = a[1].int_value();
    if (f == "bitand") return Value::Int(x & y);
    if (f == "bitor") return Value::Int(x | y);
    return Value::Int(x ^ y);
  }
  // Time.
  static const std::string_view kTimeParts[] = {
      "day_name", "day_of_month", "day_of_week", "day_of_year", "hour",
      "minute",   "month",        "second",      "format_time", "date_calc"};
  for (std::string_view name : kTimeParts) {
    if (f != name) continue;
    auto ms = ToMillis(a[0]);
    if (!ms) return ArgType(call, 0, "a datetime (Unix milliseconds or RFC 3339 text)", a[0]);
    if (*ms < -kMaxDatetime || *ms > kMaxDatetime) {
      return Err(call, fmt::format("the datetime {} is out of range", *ms));
    }
    Civil c = ToCivil(*ms);
    if (f == "day_name")
      return Value::String(std::string(kDayNames[static_cast<size_t>(c.weekday)]));
    if (f == "day_of_month") return Value::Int(c.day);
    if (f == "day_of_week") return Value::Int(c.weekday + 1);
    if (f == "day_of_year") return Value::Int(c.yday);
    if (f == "hour") return Value::Int(c.hour);
    if (f == "minute") return Value::Int(c.minute);
    if (f == "month") return Value::Int(c.month);
    if (f == "second") return Value::Int(c.second);
    if (!a[1].is_string()) return ArgType(call, 1, "a string", a[1]);
    if (f == "format_time") return Value::String(FormatTime(*ms, a[1].string_value()));
    auto d = ParseGoDurationMs(a[1].string_value());
    if (!d) return ArgType(call, 1, "a duration such as \"1h30m\" or \"-10s\"", a[1]);
    int64_t sum = 0;
    if (__builtin_add_overflow(*ms, *d, &sum)) return Err(call, "date_calc() overflows");
    return Value::Int(sum);
  }
  if (f == "date_diff") {
    auto x = ToMillis(a[0]);
    auto y = ToMillis(a[1]);
    if (!x) return ArgType(call, 0, "a datetime", a[0]);
    if (!y) return ArgType(call, 1, "a datetime", a[1]);
    return Value::Int(FloorDiv(*x, 86400000) - FloorDiv(*y, 86400000));
  }
  if (f == "from_unix_time") {
    if (!a[0].is_number()) return ArgType(call, 0, "a number of seconds", a[0]);
    const double ms = std::floor(a[0].number_value() * 1000);
    if (!(std::fabs(ms) < 9.2e18)) return Err(call, "from_unix_time() is out of range");
    return Value::Int(static_cast<int64_t>(ms));
  }
  // Strings.
  for (size_t i = 0; i < a.size(); ++i) {
    bool numeric_arg = (f == "lpad" || f == "rpad" || f == "substring" || f == "split_value") &&
                       i > 0 && !(f == "split_value" && i == 1);
    if (numeric_arg) {
      if (!a[i].is_int()) return ArgType(call, i, "a bigint", a[i]);
    } else if (!a[i].is_string()) {
      return ArgType(call, i, "a string", a[i]);
    }
  }
  const std::string& str = a[0].string_value();
  if (f == "length") return Value::Int(static_cast<int64_t>(CodePoints(str).size()));
  if (f == "numbytes") return Value::Int(static_cast<int64_t>(str.size()));
  if (f == "lower" || f == "upper") {
    std::string out = str;
    for (char& c : out) {
      c = static_cast<char>(f == "lower" ? std::tolower(static_cast<unsigned char>(c))
                                         : std::toupper(static_cast<unsigned char>(c)));
    }
    return Value::String(std::move(out));
  }
  if (f == "trim") return Value::String(std::string(TrimRight(TrimLeft(str))));
  if (f == "ltrim") return Value::String(std::string(TrimLeft(str)));
  if (f == "rtrim") return Value::String(std::string(TrimRight(str)));
  if (f == "lpad" || f == "rpad") {
    int64_t n = std::clamp<int64_t>(a[1].int_value(), 0, 1 << 20);
    std::string pad(static_cast<size_t>(n), ' ');
    return Value::String(f == "lpad" ? pad + str : str + pad);
  }
  if (f == "startswith") return Value::Bool(str.starts_with(a[1].string_value()));
  if (f == "endswith") return Value::Bool(str.ends_with(a[1].string_value()));
  if (f == "indexof") {
    size_t at = str.find(a[1].string_value());
    return Value::Int(at == std::string::npos ? -1 : static_cast<int64_t>(at));
  }
  if (f == "substring") {
    std::vector<std::string_view> cps = CodePoints(str);
    const auto n = static_cast<int64_t>(cps.size());
    int64_t start = a[1].int_value();
    if (start < 0) return Err(call, fmt::format("substring start {} is negative", start));
    start = std::min(start, n);
    int64_t end = n;
    if (a.size() == 3) {
      if (a[2].int_value() < 0) return Err(call, "substring length is negative");
      end = std::min(n, start + std::min(a[2].int_value(), n));
    }
    std::string out;
    for (int64_t i = start; i < end; ++i) out += cps[static_cast<size_t>(i)];
    return Value::String(std::move(out));
  }
  if (f == "split_value") {
    const std::string& sep = a[1].string_value();
    if (sep.empty()) return Err(call, "the separator of split_value() is empty");
    std::vector<std::string> parts;
    size_t from = 0;
    for (;;) {
      size_t at = str.find(sep, from);
      if (at == std::string::npos) {
        parts.push_back(str.substr(from));
        break;
      }
      parts.push_back(str.substr(from, at - from));
      from = at + sep.size();
    }
    int64_t idx = a[2].int_value();
    if (idx < 0 || idx >= static_cast<int64_t>(parts.size())) {
      return Err(
          call, fmt::format("split_value() index {} is out of range: {} parts", idx, parts.size()));
    }
    return Value::String(std::move(parts[static_cast<size_t>(idx)]));
  }
  if (f == "regexp_matches" || f == "regexp_replace" || f == "regexp_substring") {
    VERGE_ASSIGN_OR_RETURN(std::shared_ptr<const std::regex> re,
                           MakeRegex(call, a[1].string_value()));
    if (f == "regexp_matches") return Value::Bool(std::regex_search(str, *re));
    if (f == "regexp_substring") {
      std::smatch m;
      if (!std::regex_search(str, m, *re)) return Value::String("");
      return Value::String(m.str(0));
    }
    return Value::String(std::regex_replace(str, *re, a[2].string_value()));
  }
  return Err(call, fmt::format("function {}() is not available here", f));
}

// The computed value of aggregate or analytic call `e`, or nullptr when it has none here.
const Value* SlotValue(const Expr& e, const EvalScope& s) {
  const bool agg = e.function->kind == FunctionKind::kAggregate;
  std::span<const Value> values = agg ? s.aggregate : s.analytic;
  auto it = std::lower_bound(s.slots.begin(), s.slots.end(), &e,
                             [](const std::pair<const Expr*, size_t>& n, const Expr* x) {
                               return std::less<const Expr*>()(n.first, x);
                             });
  if (it != s.slots.end() && it->first == &e && it->second < values.size()) {
    return &values[it->second];
  }
  return nullptr;
}

Status NotHere(const Expr& e) {
  return Err(e, fmt::format("{}() cannot be computed here", e.name));
}

R CallFunction(const Expr& e, const EvalScope& s) {
  switch (e.function->kind) {
    case FunctionKind::kAggregate:
    case FunctionKind::kAnalytic: {
      if (const Value* v = SlotValue(e, s)) return *v;
      return NotHere(e);
    }
    case FunctionKind::kWindow:
      return Value::Int(e.name == "window_start" ? s.window_start : s.window_end);
    case FunctionKind::kScalar:
      break;
  }
  if (e.args.size() == 1) {  // the common case: no copy of the argument
    Value tmp;
    VERGE_ASSIGN_OR_RETURN(const Value* arg, EvalRef(e.args[0], s, tmp));
    return CallScalar(e, std::span<const Value>(arg, 1), s);
  }
  // Up to 4 arguments (nearly every call) on the stack, not the heap.
  constexpr size_t kInline = 4;
  std::array<Value, kInline> inline_args;
  std::vector<Value> heap_args;
  const size_t n = e.args.size();
  if (n > kInline) heap_args.resize(n);
  std::span<Value> args =
      n > kInline ? std::span<Value>(heap_args) : std::span<Value>(inline_args.data(), n);
  for (size_t i = 0; i < n; ++i) {
    VERGE_ASSIGN_OR_RETURN(args[i], Eval(e.args[i], s));
  }
  return CallScalar(e, args, s);
}

// Index into an array of length n (negative from the end); nullopt when out of range.
std::optional<size_t> ResolveIndex(int64_t i, size_t n) {
  const auto len = static_cast<int64_t>(n);
  if (i < 0) i += len;
  if (i < 0 || i >= len) return std::nullopt;
  return static_cast<size_t>(i);
}

}  // namespace

std::optional<int64_t> DatetimeMillis(const Value& v) { return ToMillis(v); }

const Value* BoundColumns::NotLookedUp() {
  static const Value kNotLookedUp;
  return &kNotLookedUp;
}

std::optional<const Value*> BoundColumns::Find(const Expr& column) const {
  size_t index = values.size();
  if (nodes.size() <= 8) {  // a rule names a few columns: a scan beats a search
    for (const auto& [node, i] : nodes) {
      if (node == &column) {
        index = i;
        break;
      }
    }
  } else {
    auto it = std::lower_bound(nodes.begin(), nodes.end(), &column,
                               [](const std::pair<const Expr*, size_t>& n, const Expr* e) {
                                 return std::less<const Expr*>()(n.first, e);
                               });
    if (it != nodes.end() && it->first == &column) index = it->second;
  }
  if (index >= values.size() || index >= names.size() || object == nullptr) return std::nullopt;
  const Value*& v = values[index];
  if (v == NotLookedUp()) {
    auto it = object->find(names[index]);
    v = it == object->end() ? nullptr : &it->second;
  }
  return v;
}

Status RuntimeError(Pos pos, std::string_view what) {
  return Status(Code::kInvalidArgument,
                fmt::format("{} at line {}, column {}", what, pos.line, pos.column));
}

bool LikeMatch(std::string_view text, std::string_view pattern) {
  return LikeCp(CodePoints(text), 0, CodePoints(pattern), 0);
}

namespace {

const Value kNullValue;

// Column node `e` of the scope's event, nullptr when absent (or without an event).
const Value* Column(const Expr& e, const EvalScope& s) {
  if (s.row == nullptr) return nullptr;
  if (s.columns != nullptr && s.columns->object != nullptr && s.row->is_object() &&
      &s.row->object_value() == s.columns->object) {
    if (std::optional<const Value*> v = s.columns->Find(e)) return *v;
  }
  return s.row->Find(e.name);
}

}  // namespace

Result<const Value*> EvalRef(const Expr& e, const EvalScope& s, Value& tmp) {
  switch (e.kind) {
    case ExprKind::kLiteral:
      return &e.value;
    case ExprKind::kColumn: {
      const Value* v = Column(e, s);
      return v != nullptr ? v : &kNullValue;
    }
    case ExprKind::kCall:
      if (e.function->kind == FunctionKind::kAggregate ||
          e.function->kind == FunctionKind::kAnalytic) {
        if (const Value* v = SlotValue(e, s)) return v;
        return NotHere(e);
      }
      [[fallthrough]];
    default: {
      VERGE_ASSIGN_OR_RETURN(tmp, Eval(e, s));
      return &tmp;
    }
  }
}

namespace {

// A comparison as a condition: what Comparison() gives, without building a Value.
Result<bool> CompareCondition(const Expr& e, const EvalScope& s) {
  Value ta;
  Value tb;
  VERGE_ASSIGN_OR_RETURN(const Value* a, EvalRef(e.args[0], s, ta));
  VERGE_ASSIGN_OR_RETURN(const Value* b, EvalRef(e.args[1], s, tb));
  const Cmp c = Compare(*a, *b);
  switch (c) {
    case Cmp::kNull:
      return false;
    case Cmp::kIncompatible:
      return InvalidOp(e, *a, *b);
    case Cmp::kUnordered:
      return e.op == Op::kNe;
    default:
      break;
  }
  switch (e.op) {
    case Op::kEq:
      return c == Cmp::kEqual;
    case Op::kNe:
      return c != Cmp::kEqual;
    case Op::kLt:
      return c == Cmp::kLess;
    case Op::kLe:
      return c != Cmp::kGreater;
    case Op::kGt:
      return c == Cmp::kGreater;
    case Op::kGe:
      return c != Cmp::kLess;
    default:
      return InvalidOp(e, *a, *b);
  }
}

}  // namespace

Result<bool> EvalCondition(const Expr& e, const EvalScope& scope) {
  if (e.kind == ExprKind::kBinary && IsComparison(e.op)) return CompareCondition(e, scope);
  VERGE_ASSIGN_OR_RETURN(Value v, Eval(e, scope));
  if (v.is_null()) return false;
  if (!v.is_bool()) {
    return Err(e, fmt::format("a condition must be a boolean, found {}", Describe(v)));
  }
  return v.bool_value();
}

Result<Value> Eval(const Expr& e, const EvalScope& s) {
  switch (e.kind) {
    case ExprKind::kLiteral:
      return e.value;
    case ExprKind::kColumn: {
      const Value* v = Column(e, s);
      return v != nullptr ? *v : Value::Null();
    }
    case ExprKind::kStar:
      return s.row != nullptr ? *s.row : Value::Null();
    case ExprKind::kUnary: {
      VERGE_ASSIGN_OR_RETURN(Value v, Eval(e.args[0], s));
      if (v.is_null()) return Value::Null();
      if (e.op == Op::kNot) {
        if (!v.is_bool()) return Err(e, fmt::format("NOT needs a boolean, found {}", Describe(v)));
        return Value::Bool(!v.bool_value());
      }
      if (!v.is_number()) {
        return Err(e, fmt::format("unary {} needs a number, found {}", OpName(e.op), Describe(v)));
      }
      if (e.op == Op::kPlus) return v;
      if (v.is_int()) return Value::Int(Wrap(0 - static_cast<uint64_t>(v.int_value())));
      return Value::Float(-v.float_value());
    }
    case ExprKind::kBinary: {
      if (e.op == Op::kAnd || e.op == Op::kOr) return Logic(e, s);
      Value ta;
      Value tb;
      VERGE_ASSIGN_OR_RETURN(const Value* a, EvalRef(e.args[0], s, ta));
      VERGE_ASSIGN_OR_RETURN(const Value* b, EvalRef(e.args[1], s, tb));
      if (IsComparison(e.op)) return Comparison(e, *a, *b);
      return Arithmetic(e, *a, *b);
    }
    case ExprKind::kLike: {
      VERGE_ASSIGN_OR_RETURN(Value a, Eval(e.args[0], s));
      VERGE_ASSIGN_OR_RETURN(Value b, Eval(e.args[1], s));
      if (a.is_null() || b.is_null()) return Value::Null();
      if (!a.is_string() || !b.is_string()) {
        return Err(
            e, fmt::format("LIKE compares strings, found {} LIKE {}", Describe(a), Describe(b)));
      }
      return Value::Bool(LikeMatch(a.string_value(), b.string_value()) != e.negated);
    }
    case ExprKind::kIn:
    case ExprKind::kInArray: {
      VERGE_ASSIGN_OR_RETURN(Value a, Eval(e.args[0], s));
      if (a.is_null()) return Value::Null();
      bool found = false;
      if (e.kind == ExprKind::kIn) {
        for (size_t i = 1; i < e.args.size() && !found; ++i) {
          VERGE_ASSIGN_OR_RETURN(Value b, Eval(e.args[i], s));
          found = Equals(a, b);
        }
      } else {
        VERGE_ASSIGN_OR_RETURN(Value arr, Eval(e.args[1], s));
        if (arr.is_null()) return Value::Null();
        if (!arr.is_array()) {
          return Err(e, fmt::format("IN needs an array on its right, found {}", Describe(arr)));
        }
        for (const Value& b : arr.array_value()) {
          if (Equals(a, b)) {
            found = true;
            break;
          }
        }
      }
      return Value::Bool(found != e.negated);
    }
    case ExprKind::kBetween: {
      VERGE_ASSIGN_OR_RETURN(Value a, Eval(e.args[0], s));
      VERGE_ASSIGN_OR_RETURN(Value lo, Eval(e.args[1], s));
      VERGE_ASSIGN_OR_RETURN(Value hi, Eval(e.args[2], s));
      if (a.is_null() || lo.is_null() || hi.is_null()) return Value::Null();
      Cmp c1 = Compare(a, lo);
      Cmp c2 = Compare(a, hi);
      if (c1 == Cmp::kIncompatible) return InvalidOp(e, a, lo);
      if (c2 == Cmp::kIncompatible) return InvalidOp(e, a, hi);
      bool in =
          (c1 == Cmp::kGreater || c1 == Cmp::kEqual) && (c2 == Cmp::kLess || c2 == Cmp::kEqual);
      return Value::Bool(in != e.negated);
    }
    case ExprKind::kCase: {
      std::optional<Value> operand;
      if (e.operand) {
        VERGE_ASSIGN_OR_RETURN(Value v, Eval(*e.operand, s));
        operand = std::move(v);
      }
      for (size_t i = 0; i + 1 < e.args.size(); i += 2) {
        bool hit = false;
        if (operand) {
          VERGE_ASSIGN_OR_RETURN(Value w, Eval(e.args[i], s));
          hit = !operand->is_null() && Equals(*operand, w);
        } else {
          VERGE_ASSIGN_OR_RETURN(hit, EvalCondition(e.args[i], s));
        }
        if (hit) return Eval(e.args[i + 1], s);
      }
      if (e.otherwise) return Eval(*e.otherwise, s);
      return Value::Null();
    }
    case ExprKind::kCall:
      return CallFunction(e, s);
    case ExprKind::kField: {
      VERGE_ASSIGN_OR_RETURN(Value v, Eval(e.args[0], s));
      if (v.is_null()) return Value::Null();
      if (!v.is_object()) {
        return Err(e, fmt::format("-> needs a struct, found {}", Describe(v)));
      }
      const Value* f = v.Find(e.name);
      return f != nullptr ? *f : Value::Null();
    }
    case ExprKind::kIndex: {
      VERGE_ASSIGN_OR_RETURN(Value v, Eval(e.args[0], s));
      VERGE_ASSIGN_OR_RETURN(Value i, Eval(e.args[1], s));
      if (v.is_null() || i.is_null()) return Value::Null();
      if (v.is_object() && i.is_string()) {
        const Value* f = v.Find(i.string_value());
        return f != nullptr ? *f : Value::Null();
      }
      if (!v.is_array()) return Err(e, fmt::format("[] needs an array, found {}", Describe(v)));
      if (!i.is_int())
        return Err(e, fmt::format("an index must be a bigint, found {}", Describe(i)));
      auto at = ResolveIndex(i.int_value(), v.array_value().size());
      if (!at) {
        return Err(e, fmt::format("index {} is out of range for an array of {}", i.int_value(),
                                  v.array_value().size()));
      }
      return v.array_value()[*at];
    }
    case ExprKind::kSlice: {
      VERGE_ASSIGN_OR_RETURN(Value v, Eval(e.args[0], s));
      VERGE_ASSIGN_OR_RETURN(Value lo, Eval(e.args[1], s));
      VERGE_ASSIGN_OR_RETURN(Value hi, Eval(e.args[2], s));
      if (v.is_null()) return Value::Null();
      if (!v.is_array()) return Err(e, fmt::format("[:] needs an array, found {}", Describe(v)));
      const Array& arr = v.array_value();
      const auto n = static_cast<int64_t>(arr.size());
      auto bound = [&](const Value& b, int64_t dflt) -> Result<int64_t> {
        if (b.is_null()) return dflt;
        if (!b.is_int())
          return Err(e, fmt::format("a slice bound must be a bigint, found {}", Describe(b)));
        int64_t x = b.int_value();
        if (x < 0) x += n;
        return std::clamp<int64_t>(x, 0, n);
      };
      VERGE_ASSIGN_OR_RETURN(int64_t from, bound(lo, 0));
      VERGE_ASSIGN_OR_RETURN(int64_t to, bound(hi, n));
      Array out;
      for (int64_t k = from; k < to; ++k) out.push_back(arr[static_cast<size_t>(k)]);
      return Value::MakeArray(std::move(out));
    }
  }
  return Err(e, "unknown expression");
}

}  // namespace verge::rules
