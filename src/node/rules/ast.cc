#include "node/rules/ast.h"

#include <fmt/format.h>

#include <cmath>

namespace verge::rules {
namespace {

// Printing precedence: a child is parenthesized when it binds looser than its place needs.
constexpr int kPrecOr = 1;
constexpr int kPrecAnd = 2;
constexpr int kPrecNot = 3;
constexpr int kPrecCompare = 4;
constexpr int kPrecAdd = 5;
constexpr int kPrecMul = 6;
constexpr int kPrecPrefix = 7;
constexpr int kPrecPostfix = 8;
constexpr int kPrecPrimary = 9;

int BinaryPrec(Op op) {
  switch (op) {
    case Op::kOr:
      return kPrecOr;
    case Op::kAnd:
      return kPrecAnd;
    case Op::kAdd:
    case Op::kSub:
    case Op::kBitOr:
    case Op::kBitXor:
      return kPrecAdd;
    case Op::kMul:
    case Op::kDiv:
    case Op::kMod:
    case Op::kBitAnd:
      return kPrecMul;
    default:
      return kPrecCompare;
  }
}

bool IsNegativeNumber(const Value& v) {
  return (v.is_int() && v.int_value() < 0) || (v.is_float() && std::signbit(v.float_value()));
}

int Prec(const Expr& e) {
  switch (e.kind) {
    case ExprKind::kBinary:
      return BinaryPrec(e.op);
    case ExprKind::kUnary:
      return e.op == Op::kNot ? kPrecNot : kPrecPrefix;
    case ExprKind::kLike:
    case ExprKind::kIn:
    case ExprKind::kInArray:
    case ExprKind::kBetween:
      return kPrecCompare;
    case ExprKind::kField:
    case ExprKind::kIndex:
    case ExprKind::kSlice:
      return kPrecPostfix;
    case ExprKind::kLiteral:
      return IsNegativeNumber(e.value) ? kPrecPrefix : kPrecPrimary;
    default:
      return kPrecPrimary;
  }
}

bool IsPlainName(std::string_view name) {
  if (name.empty()) return false;
  auto letter = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; };
  if (!letter(name[0])) return false;
  for (char c : name) {
    if (!letter(c) && !(c >= '0' && c <= '9')) return false;
  }
  return LookupKeyword(name) == Keyword::kNone;
}

void PrintString(std::string& out, std::string_view s) {
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

void PrintLiteral(std::string& out, const Value& v) {
  switch (v.type()) {
    case ValueType::kNull:
      out += "NULL";
      return;
    case ValueType::kBool:
      out += v.bool_value() ? "TRUE" : "FALSE";
      return;
    case ValueType::kInt:
      out += fmt::format("{}", v.int_value());
      return;
    case ValueType::kFloat: {
      // Shortest text that reads back as the same double, kept a float: "2.0", not "2".
      std::string s = fmt::format("{}", v.float_value());
      if (s.find_first_of(".eE") == std::string::npos) s += ".0";
      out += s;
      return;
    }
    case ValueType::kString:
      PrintString(out, v.string_value());
      return;
    case ValueType::kArray:
    case ValueType::kObject:
      out += ToJson(v);  // not a literal of the language; never in a parsed tree
      return;
  }
}

void PrintExpr(std::string& out, const Expr& e);

void PrintChild(std::string& out, const Expr& child, bool parens) {
  if (parens) out += '(';
  PrintExpr(out, child);
  if (parens) out += ')';
}

void PrintList(std::string& out, const std::vector<Expr>& list, size_t from = 0) {
  for (size_t i = from; i < list.size(); ++i) {
    if (i > from) out += ", ";
    PrintExpr(out, list[i]);
  }
}

void PrintExpr(std::string& out, const Expr& e) {
  const int prec = Prec(e);
  switch (e.kind) {
    case ExprKind::kLiteral:
      PrintLiteral(out, e.value);
      return;
    case ExprKind::kColumn:
      if (!e.stream.empty()) {
        out += QuoteName(e.stream);
        out += '.';
      }
      out += QuoteName(e.name);
      return;
    case ExprKind::kStar:
      if (!e.stream.empty()) {
        out += QuoteName(e.stream);
        out += '.';
      }
      out += '*';
      return;
    case ExprKind::kUnary:
      out += e.op == Op::kNot ? "NOT " : OpName(e.op);
      PrintChild(out, e.args[0], Prec(e.args[0]) < prec);
      return;
    case ExprKind::kBinary: {
      // Left-associative: the left child may have the same precedence, the right may not;
      // comparisons do not chain, so neither side may be a comparison.
      const bool compare = prec == kPrecCompare;
      PrintChild(out, e.args[0], compare ? Prec(e.args[0]) <= prec : Prec(e.args[0]) < prec);
      out += ' ';
      out += OpName(e.op);
      out += ' ';
      PrintChild(out, e.args[1], Prec(e.args[1]) <= prec);
      return;
    }
    case ExprKind::kLike:
    case ExprKind::kIn:
    case ExprKind::kInArray:
    case ExprKind::kBetween: {
      PrintChild(out, e.args[0], Prec(e.args[0]) <= kPrecCompare);
      out += e.negated ? " NOT " : " ";
      if (e.kind == ExprKind::kLike) {
        out += "LIKE ";
        PrintChild(out, e.args[1], Prec(e.args[1]) < kPrecAdd);
      } else if (e.kind == ExprKind::kIn) {
        out += "IN (";
        PrintList(out, e.args, 1);
        out += ')';
      } else if (e.kind == ExprKind::kInArray) {
        out += "IN ";  // always a postfix expression: parentheses would make it a list
        PrintExpr(out, e.args[1]);
      } else {
        out += "BETWEEN ";
        PrintChild(out, e.args[1], Prec(e.args[1]) < kPrecAdd);
        out += " AND ";
        PrintChild(out, e.args[2], Prec(e.args[2]) < kPrecAdd);
      }
      return;
    }
    case ExprKind::kCase:
      out += "CASE";
      if (e.operand) {
        out += ' ';
        PrintExpr(out, *e.operand);
      }
      for (size_t i = 0; i + 1 < e.args.size(); i += 2) {
        out += " WHEN ";
        PrintExpr(out, e.args[i]);
        out += " THEN ";
        PrintExpr(out, e.args[i + 1]);
      }
      if (e.otherwise) {
        out += " ELSE ";
        PrintExpr(out, *e.otherwise);
      }
      out += " END";
      return;
    case ExprKind::kCall:
      out += e.name;
      out += '(';
      PrintList(out, e.args);
      out += ')';
      if (e.filter) {
        out += " FILTER (WHERE ";
        PrintExpr(out, *e.filter);
        out += ')';
      }
      if (!e.partition_by.empty() || e.when) {
        out += " OVER (";
        if (!e.partition_by.empty()) {
          out += "PARTITION BY ";
          PrintList(out, e.partition_by);
          if (e.when) out += ' ';
        }
        if (e.when) {
          out += "WHEN ";
          PrintExpr(out, *e.when);
        }
        out += ')';
      }
      return;
    case ExprKind::kField:
      PrintChild(out, e.args[0], Prec(e.args[0]) < kPrecPostfix);
      out += "->";
      out += QuoteName(e.name);
      return;
    case ExprKind::kIndex:
      PrintChild(out, e.args[0], Prec(e.args[0]) < kPrecPostfix);
      out += '[';
      PrintExpr(out, e.args[1]);
      out += ']';
      return;
    case ExprKind::kSlice: {
      PrintChild(out, e.args[0], Prec(e.args[0]) < kPrecPostfix);
      out += '[';
      auto bound = [&](const Expr& b) {
        if (!(b.kind == ExprKind::kLiteral && b.value.is_null())) PrintExpr(out, b);
      };
      bound(e.args[1]);
      out += ':';
      bound(e.args[2]);
      out += ']';
      return;
    }
  }
}

void PrintWindow(std::string& out, const Window& w) {
  out += WindowName(w.kind);
  out += '(';
  bool first = true;
  if (w.kind != WindowKind::kCount) {
    out += UnitName(w.unit);
    first = false;
  }
  for (int64_t a : w.args) {
    if (!first) out += ", ";
    first = false;
    out += fmt::format("{}", a);
  }
  out += ')';
  if (w.filter) {
    out += " FILTER (WHERE ";
    PrintExpr(out, *w.filter);
    out += ')';
  }
  if (w.trigger) {
    out += " OVER (WHEN ";
    PrintExpr(out, *w.trigger);
    out += ')';
  }
}

void PrintType(std::string& out, const DataType& t);

void PrintColumns(std::string& out, const std::vector<ColumnDef>& columns) {
  for (size_t i = 0; i < columns.size(); ++i) {
    if (i > 0) out += ", ";
    out += QuoteName(columns[i].name);
    out += ' ';
    PrintType(out, columns[i].type);
  }
}

void PrintType(std::string& out, const DataType& t) {
  out += TypeKindName(t.kind);
  if (t.kind == TypeKind::kArray && t.element) {
    out += '(';
    PrintType(out, *t.element);
    out += ')';
  } else if (t.kind == TypeKind::kStruct) {
    out += '(';
    PrintColumns(out, t.fields);
    out += ')';
  }
}

}  // namespace

std::string_view OpName(Op op) {
  switch (op) {
    case Op::kNone:
      return "";
    case Op::kNeg:
      return "-";
    case Op::kPlus:
      return "+";
    case Op::kNot:
      return "NOT";
    case Op::kOr:
      return "OR";
    case Op::kAnd:
      return "AND";
    case Op::kEq:
      return "=";
    case Op::kNe:
      return "!=";
    case Op::kLt:
      return "<";
    case Op::kLe:
      return "<=";
    case Op::kGt:
      return ">";
    case Op::kGe:
      return ">=";
    case Op::kAdd:
      return "+";
    case Op::kSub:
      return "-";
    case Op::kMul:
      return "*";
    case Op::kDiv:
      return "/";
    case Op::kMod:
      return "%";
    case Op::kBitAnd:
      return "&";
    case Op::kBitOr:
      return "|";
    case Op::kBitXor:
      return "^";
  }
  return "";
}

bool IsComparison(Op op) { return op >= Op::kEq && op <= Op::kGe; }

std::string_view WindowName(WindowKind kind) {
  switch (kind) {
    case WindowKind::kTumbling:
      return "TUMBLINGWINDOW";
    case WindowKind::kHopping:
      return "HOPPINGWINDOW";
    case WindowKind::kSliding:
      return "SLIDINGWINDOW";
    case WindowKind::kSession:
      return "SESSIONWINDOW";
    case WindowKind::kCount:
      return "COUNTWINDOW";
  }
  return "";
}

std::string_view UnitName(TimeUnit unit) {
  switch (unit) {
    case TimeUnit::kDay:
      return "dd";
    case TimeUnit::kHour:
      return "hh";
    case TimeUnit::kMinute:
      return "mi";
    case TimeUnit::kSecond:
      return "ss";
    case TimeUnit::kMillisecond:
      return "ms";
  }
  return "";
}

int64_t UnitMillis(TimeUnit unit) {
  switch (unit) {
    case TimeUnit::kDay:
      return 86'400'000;
    case TimeUnit::kHour:
      return 3'600'000;
    case TimeUnit::kMinute:
      return 60'000;
    case TimeUnit::kSecond:
      return 1'000;
    case TimeUnit::kMillisecond:
      return 1;
  }
  return 1;
}

std::string_view TypeKindName(TypeKind kind) {
  switch (kind) {
    case TypeKind::kBigint:
      return "BIGINT";
    case TypeKind::kFloat:
      return "FLOAT";
    case TypeKind::kString:
      return "STRING";
    case TypeKind::kDatetime:
      return "DATETIME";
    case TypeKind::kBoolean:
      return "BOOLEAN";
    case TypeKind::kBytea:
      return "BYTEA";
    case TypeKind::kArray:
      return "ARRAY";
    case TypeKind::kStruct:
      return "STRUCT";
  }
  return "";
}

bool operator==(const Expr& a, const Expr& b) {
  return a.kind == b.kind && a.op == b.op && a.negated == b.negated &&
         a.value.type() == b.value.type() && Equals(a.value, b.value) && a.stream == b.stream &&
         a.name == b.name && a.args == b.args && a.partition_by == b.partition_by &&
         a.operand == b.operand && a.otherwise == b.otherwise && a.when == b.when &&
         a.filter == b.filter;
}

bool operator==(const Window& a, const Window& b) {
  return a.kind == b.kind && a.unit == b.unit && a.args == b.args && a.length_ms == b.length_ms &&
         a.hop_ms == b.hop_ms && a.delay_ms == b.delay_ms && a.timeout_ms == b.timeout_ms &&
         a.count == b.count && a.count_hop == b.count_hop && a.filter == b.filter &&
         a.trigger == b.trigger;
}

bool operator==(const Select& a, const Select& b) {
  return a.fields == b.fields && a.stream == b.stream && a.alias == b.alias && a.where == b.where &&
         a.group_by == b.group_by && a.window == b.window && a.having == b.having &&
         a.order_by == b.order_by;
}

bool operator==(const DataType& a, const DataType& b) {
  return a.kind == b.kind && a.element == b.element && a.fields == b.fields;
}

bool operator==(const ColumnDef& a, const ColumnDef& b) {
  return a.name == b.name && a.type == b.type;
}

bool operator==(const CreateStream& a, const CreateStream& b) {
  return a.name == b.name && a.columns == b.columns && a.options == b.options && a.typed == b.typed;
}

std::string QuoteName(std::string_view name) {
  if (IsPlainName(name)) return std::string(name);
  return fmt::format("`{}`", name);
}

std::string ToString(const Expr& expr) {
  std::string out;
  PrintExpr(out, expr);
  return out;
}

std::string ToString(const Window& window) {
  std::string out;
  PrintWindow(out, window);
  return out;
}

std::string ToString(const DataType& type) {
  std::string out;
  PrintType(out, type);
  return out;
}

std::string ToString(const Select& s) {
  std::string out = "SELECT ";
  for (size_t i = 0; i < s.fields.size(); ++i) {
    if (i > 0) out += ", ";
    PrintExpr(out, s.fields[i].expr);
    if (!s.fields[i].alias.empty()) {
      out += " AS ";
      out += QuoteName(s.fields[i].alias);
    }
  }
  out += " FROM ";
  out += QuoteName(s.stream);
  if (!s.alias.empty()) {
    out += " AS ";
    out += QuoteName(s.alias);
  }
  if (s.where) {
    out += " WHERE ";
    PrintExpr(out, *s.where);
  }
  if (!s.group_by.empty() || s.window) {
    out += " GROUP BY ";
    PrintList(out, s.group_by);
    if (s.window) {
      if (!s.group_by.empty()) out += ", ";
      PrintWindow(out, *s.window);
    }
  }
  if (s.having) {
    out += " HAVING ";
    PrintExpr(out, *s.having);
  }
  if (!s.order_by.empty()) {
    out += " ORDER BY ";
    for (size_t i = 0; i < s.order_by.size(); ++i) {
      if (i > 0) out += ", ";
      PrintExpr(out, s.order_by[i].expr);
      if (s.order_by[i].descending) out += " DESC";
    }
  }
  return out;
}

std::string ToString(const CreateStream& s) {
  std::string out = "CREATE STREAM ";
  out += QuoteName(s.name);
  out += " (";
  PrintColumns(out, s.columns);
  out += ") WITH (";
  bool first = true;
  for (const auto& [key, value] : s.options) {
    if (!first) out += ", ";
    first = false;
    out += key;
    out += '=';
    PrintString(out, value);
  }
  out += ')';
  return out;
}

std::string ToString(const Ast& ast) {
  return std::visit([](const auto& s) { return ToString(s); }, ast);
}

}  // namespace verge::rules
