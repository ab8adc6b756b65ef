// The syntax tree of the rule SQL: what parser.h produces and what the rule engine runs. The
// dialect is a subset of LF Edge eKuiper's (docs/en_US/sqls in the eKuiper repository), with the
// differences listed below.
//
// Grammar ("..." literal tokens, keywords in any case; [x] optional, {x} repeated, | choice):
//
//   statement     = (create_stream | select) [";"]
//   create_stream = "CREATE" "STREAM" name "(" [column {"," column} [","]] ")"
//                   "WITH" "(" option {"," option} ")"
//   column        = name type
//   type          = "BIGINT" | "FLOAT" | "STRING" | "DATETIME" | "BOOLEAN" | "BYTEA"
//                 | "ARRAY" "(" type ")" | "STRUCT" "(" column {"," column} ")"
//   option        = name "=" string          (DATASOURCE FORMAT TIMESTAMP TIMESTAMP_FORMAT KEY
//                                             TYPE SHARED CONF_KEY; any case)
//   select        = "SELECT" field {"," field} "FROM" name ["AS" name]
//                   ["WHERE" expr] ["GROUP" "BY" group_item {"," group_item}]
//                   ["HAVING" expr] ["ORDER" "BY" expr ["ASC" | "DESC"] {"," ...}]
//   field         = "*" | name "." "*" | expr ["AS" name]
//   group_item    = window | expr
//   window        = ( "TUMBLINGWINDOW" "(" unit "," n ")"
//                   | "HOPPINGWINDOW" "(" unit "," size "," hop ")"
//                   | "SLIDINGWINDOW" "(" unit "," size ["," delay] ")"
//                   | "SESSIONWINDOW" "(" unit "," timeout "," max ")"
//                   | "COUNTWINDOW" "(" count ["," hop] ")" )
//                   ["FILTER" "(" "WHERE" expr ")"] ["OVER" "(" "WHEN" expr ")"]
//   unit          = "DD" | "HH" | "MI" | "SS" | "MS"        (integers: n size hop ...)
//
//   expr          = or
//   or            = and {"OR" and}
//   and           = not {"AND" not}
//   not           = "NOT" not | predicate
//   predicate     = additive [ ("=" | "!=" | "<>" | "<" | "<=" | ">" | ">=") additive
//                            | ["NOT"] "LIKE" additive
//                            | ["NOT"] "IN" ( "(" expr {"," expr} ")" | postfix )
//                            | ["NOT"] "BETWEEN" additive "AND" additive ]
//   additive      = multiplicative {("+" | "-" | "|" | "^") multiplicative}
//   multiplicative= unary {("*" | "/" | "%" | "&") unary}
//   unary         = ("-" | "+") unary | postfix
//   postfix       = primary {"->" name | "." name | "[" expr "]" | "[" [expr] ":" [expr] "]"}
//   primary       = literal | name | call | case | "(" expr ")"
//   call          = name "(" [arg {"," arg}] ")" ["FILTER" "(" "WHERE" expr ")"]
//                   ["OVER" "(" ["PARTITION" "BY" expr {"," expr}] ["WHEN" expr] ")"]
//   arg           = expr | "*"
//   case          = "CASE" [expr] "WHEN" expr "THEN" expr {"WHEN" expr "THEN" expr}
//                   ["ELSE" expr] "END"
//   literal       = integer | float | string | "TRUE" | "FALSE" | "NULL"
//
// Precedence, loosest first (all binary operators are left-associative except comparisons,
// which do not chain: `a < b < c` is an error, `(a < b) = c` is fine):
//   1 OR   2 AND   3 NOT (prefix)
//   4 = != <> < <= > >=, [NOT] LIKE, [NOT] IN, [NOT] BETWEEN
//   5 + - | ^      6 * / % &      7 - + (prefix)      8 -> . [ ] (postfix)
// Levels 5 and 6 put the bitwise operators where eKuiper (and Go) put them, so a rule means the
// same here as there. eKuiper also gives -> and [] the level of *; here they bind tightest, as
// member access does everywhere (`a * b->c` is a * (b->c)).
//
// Decisions where eKuiper's documentation is silent or where Verge differs:
//   - NULL is a literal (and a reserved word). eKuiper has no null literal, but there `null`
//     names a column that never exists and so evaluates to null: rules mean the same. There is
//     no IS [NOT] NULL: use isnull(x), as in eKuiper (the parser says so when it sees IS NULL).
//   - `a.b` is column b of stream a when a is the FROM stream or its alias, and otherwise field b
//     of the struct column a, i.e. a->b (eKuiper resolves it the same way).
//   - IN takes a parenthesized list (always a list, even of one element) or, without
//     parentheses, a postfix expression that evaluates to an array: `x IN arr->ids`.
//   - A slice bound that is left out is stored as a NULL literal: a[:2] is a[NULL:2].
//   - SESSIONWINDOW's arguments are (unit, timeout, max), Verge's documented order. eKuiper's
//     documentation example reads (unit, max, timeout); a timeout longer than max is refused, so
//     a rule written in that order fails loudly instead of meaning something else.
//   - GROUP BY needs a window, and so do aggregate functions, HAVING, window_start() and
//     window_end(): a stream has no end at which a group without one could be emitted. Running
//     values without a window are the analytic functions (acc_sum(), lag(), ...).
//   - A unary minus before a number literal is folded into it (-5 is the literal -5).
//   - Left out (errors that say so): JOIN, LIMIT, * EXCEPT / REPLACE, tables, DROP / SHOW /
//     DESCRIBE, and the stream options STRICT_VALIDATION, SCHEMAID, RETAIN_SIZE, KIND, DELIMITER.
//
// The tree is a plain value: copyable, comparable (operator== ignores source positions, so that
// parse(print(parse(s))) == parse(s)), printable with ToString() in a canonical form that parses
// back to an equal tree (upper-case keywords, lower-case function names, minimal parentheses,
// strings in double quotes).
//
// Thread-safety: plain values.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "node/rules/lexer.h"
#include "node/rules/value.h"

namespace verge::rules {

struct FunctionInfo;

// A nullable owning pointer with value semantics: copies deep-copy, == compares the pointees.
// Lets a tree node hold an optional child of its own type.
template <typename T>
class Box {
 public:
  Box() = default;
  Box(T value)
      : p_(std::make_unique<T>(std::move(value))) {}  // NOLINT(google-explicit-constructor)
  Box(const Box& other) : p_(other.p_ ? std::make_unique<T>(*other.p_) : nullptr) {}
  Box(Box&&) noexcept = default;
  Box& operator=(const Box& other) {
    if (this != &other) p_ = other.p_ ? std::make_unique<T>(*other.p_) : nullptr;
    return *this;
  }
  Box& operator=(Box&&) noexcept = default;
  ~Box() = default;

  explicit operator bool() const { return p_ != nullptr; }
  T& operator*() { return *p_; }
  const T& operator*() const { return *p_; }
  T* operator->() { return p_.get(); }
  const T* operator->() const { return p_.get(); }
  const T* get() const { return p_.get(); }

  friend bool operator==(const Box& a, const Box& b) {
    return a.p_ ? (b.p_ && *a.p_ == *b.p_) : !b.p_;
  }

 private:
  std::unique_ptr<T> p_;
};

enum class ExprKind : uint8_t {
  kLiteral,  // value
  kColumn,   // [stream.]name; stream is empty or the FROM stream / its alias
  kStar,     // `*`: a function argument (count(*)) or a select field (`*`, or `stream.*`)
  kUnary,    // op args[0]                            op: kNeg, kPlus, kNot
  kBinary,   // args[0] op args[1]
  kLike,     // args[0] [NOT] LIKE args[1]
  kIn,       // args[0] [NOT] IN (args[1], ..., args[n])
  kInArray,  // args[0] [NOT] IN args[1]              args[1] is an array at run time
  kBetween,  // args[0] [NOT] BETWEEN args[1] AND args[2]
  kCase,     // CASE [operand] WHEN args[0] THEN args[1] WHEN args[2] ... [ELSE otherwise] END
  kCall,     // name(args) [FILTER (WHERE filter)] [OVER (PARTITION BY partition_by WHEN when)]
  kField,    // args[0]->name                         (also written args[0].name)
  kIndex,    // args[0][args[1]]                      negative indexes count from the end
  kSlice,    // args[0][args[1]:args[2]]              half-open; a NULL literal bound is open
};

enum class Op : uint8_t {
  kNone,
  kNeg,  // unary -
  kPlus,
  kNot,
  kOr,
  kAnd,
  kEq,
  kNe,
  kLt,
  kLe,
  kGt,
  kGe,
  kAdd,
  kSub,
  kMul,
  kDiv,
  kMod,
  kBitAnd,
  kBitOr,
  kBitXor,
};

// The operator as written in canonical SQL ("AND", "<=", "-").
std::string_view OpName(Op op);
bool IsComparison(Op op);  // = != < <= > >=

// One node of an expression. Which fields mean something depends on `kind` (see ExprKind);
// the others keep their defaults.
struct Expr {
  ExprKind kind = ExprKind::kLiteral;
  Op op = Op::kNone;     // kUnary, kBinary
  bool negated = false;  // kLike, kIn, kInArray, kBetween: the NOT form
  // Where the node starts in the text; for operators, the operator token. Runtime errors can
  // point here ("division by zero at line 1, column 30").
  Pos pos;
  Value value;         // kLiteral
  std::string stream;  // kColumn, kStar: the qualifier, or empty
  std::string name;    // kColumn: column; kField: key; kCall: function name in lower case
  std::vector<Expr> args;
  std::vector<Expr> partition_by;  // kCall: OVER (PARTITION BY ...)
  Box<Expr> operand;               // kCase: the value compared with each WHEN (simple CASE)
  Box<Expr> otherwise;             // kCase: ELSE
  Box<Expr> when;                  // kCall: OVER (... WHEN cond)
  Box<Expr> filter;                // kCall: FILTER (WHERE cond)
  // kCall: the function's registry entry (functions.h); set by the parser, never null in a
  // parsed tree.
  const FunctionInfo* function = nullptr;
  // Height of the tree under this node (1 for a leaf); bounded by ParseOptions::max_depth.
  int height = 1;

  // Structural equality: ignores pos and height; literals must have the same type (1 != 1.0).
  friend bool operator==(const Expr& a, const Expr& b);
};

// Calls f(child) for each direct child of e, in source order.
template <typename F>
void ForEachChild(const Expr& e, F&& f) {
  if (e.operand) f(*e.operand);
  for (const Expr& a : e.args) f(a);
  if (e.otherwise) f(*e.otherwise);
  if (e.filter) f(*e.filter);
  for (const Expr& p : e.partition_by) f(p);
  if (e.when) f(*e.when);
}

// --- SELECT -----------------------------------------------------------------------------------

struct Field {
  Expr expr;          // kStar for `*` and `stream.*`
  std::string alias;  // AS alias, or empty
  friend bool operator==(const Field& a, const Field& b) = default;
};

enum class WindowKind : uint8_t { kTumbling, kHopping, kSliding, kSession, kCount };
enum class TimeUnit : uint8_t { kDay, kHour, kMinute, kSecond, kMillisecond };

// "TUMBLINGWINDOW", ... and "dd", "hh", "mi", "ss", "ms".
std::string_view WindowName(WindowKind kind);
std::string_view UnitName(TimeUnit unit);
int64_t UnitMillis(TimeUnit unit);

// The window of a GROUP BY, with its arguments checked and converted to milliseconds.
struct Window {
  WindowKind kind = WindowKind::kTumbling;
  Pos pos;
  TimeUnit unit = TimeUnit::kSecond;  // time windows: the unit written
  std::vector<int64_t> args;          // the numbers written, in order (for printing)
  // Tumbling, hopping, sliding: the window's length. Session: its maximum duration.
  int64_t length_ms = 0;
  // Hopping: the period between window starts. Tumbling: length_ms.
  int64_t hop_ms = 0;
  // Sliding: how long after the triggering event the window closes; 0 for none.
  int64_t delay_ms = 0;
  // Session: a gap without events this long closes the session.
  int64_t timeout_ms = 0;
  // Count: events per window, and events between emissions (count when not given).
  int64_t count = 0;
  int64_t count_hop = 0;
  std::optional<Expr> filter;   // FILTER (WHERE ...): events failing it never enter the window
  std::optional<Expr> trigger;  // SLIDINGWINDOW only, OVER (WHEN ...): events that trigger it

  friend bool operator==(const Window& a, const Window& b);
};

struct OrderItem {
  Expr expr;
  bool descending = false;
  friend bool operator==(const OrderItem& a, const OrderItem& b) = default;
};

struct Select {
  std::vector<Field> fields;
  std::string stream;  // FROM
  std::string alias;   // FROM stream AS alias, or empty
  Pos stream_pos;      // of the stream's name, to report an unknown stream
  std::optional<Expr> where;
  std::vector<Expr> group_by;  // the keys, without the window
  std::optional<Window> window;
  std::optional<Expr> having;
  std::vector<OrderItem> order_by;

  friend bool operator==(const Select& a, const Select& b);
};

// --- CREATE STREAM ----------------------------------------------------------------------------

enum class TypeKind : uint8_t {
  kBigint,
  kFloat,
  kString,
  kDatetime,
  kBoolean,
  kBytea,
  kArray,
  kStruct
};
std::string_view TypeKindName(TypeKind kind);  // "BIGINT", ...

struct ColumnDef;

struct DataType {
  TypeKind kind = TypeKind::kString;
  Box<DataType> element;          // kArray
  std::vector<ColumnDef> fields;  // kStruct, at least one
  friend bool operator==(const DataType& a, const DataType& b);
};

struct ColumnDef {
  std::string name;
  DataType type;
  Pos pos;
  friend bool operator==(const ColumnDef& a, const ColumnDef& b);
};

// The WITH options, validated and typed.
struct StreamOptions {
  std::string datasource;        // DATASOURCE, required: the MQTT topic (filter) or memory topic
  std::string format = "json";   // FORMAT: only "json"
  std::string timestamp;         // TIMESTAMP: the event-time column; empty = processing time
  std::string timestamp_format;  // TIMESTAMP_FORMAT
  std::string key;               // KEY (unused by eKuiper too)
  std::string type = "mqtt";     // TYPE: "mqtt" or "memory" (another rule's output)
  bool shared = false;           // SHARED
  std::string conf_key;          // CONF_KEY
  friend bool operator==(const StreamOptions& a, const StreamOptions& b) = default;
};

struct CreateStream {
  std::string name;
  Pos pos;
  std::vector<ColumnDef> columns;  // empty: schemaless
  // The options as written, keyed by their upper-case name; `typed` holds their meaning.
  std::map<std::string, std::string> options;
  StreamOptions typed;
  friend bool operator==(const CreateStream& a, const CreateStream& b);
};

using Ast = std::variant<CreateStream, Select>;

// Canonical SQL text; Parse() of it yields an equal tree.
std::string ToString(const Ast& ast);
std::string ToString(const Select& select);
std::string ToString(const CreateStream& stream);
std::string ToString(const Expr& expr);
std::string ToString(const DataType& type);
std::string ToString(const Window& window);

// `name` as written in SQL: bare when it is a plain name and not a reserved word, otherwise in
// backticks.
std::string QuoteName(std::string_view name);

}  // namespace verge::rules
