#include "node/rules/parser.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <deque>
#include <limits>
#include <optional>
#include <set>

#include "node/rules/functions.h"

namespace verge::rules {
namespace {

// Limits of window arguments: longer windows or bigger counts are almost surely mistakes, and
// would hold memory for as long.
constexpr int64_t kMaxWindowMs = 366LL * 86'400'000;
constexpr int64_t kMaxCountWindow = 1'000'000;
// Limits of constant arguments that size per-key state.
constexpr int64_t kMaxLagOffset = 100'000;
constexpr int64_t kMaxZscoreWindow = 100'000;
constexpr uint64_t kTwo63 = uint64_t{1} << 63;

// Returns false from the enclosing function when `expr` is false (a parse step failed).
#define VERGE_TRY(expr) \
  do {                  \
    if (!(expr)) {      \
      return false;     \
    }                   \
  } while (0)

bool IEq(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i];
    char y = b[i];
    if (x >= 'a' && x <= 'z') x = static_cast<char>(x - 'a' + 'A');
    if (y >= 'a' && y <= 'z') y = static_cast<char>(y - 'a' + 'A');
    if (x != y) return false;
  }
  return true;
}

std::string Upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  return out;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// At most 40 bytes of `s`, cut on a UTF-8 character boundary, with "..." when cut.
std::string Clip(std::string_view s) {
  constexpr size_t kMax = 40;
  if (s.size() <= kMax) return std::string(s);
  size_t n = kMax;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return std::string(s.substr(0, n)) + "...";
}

std::string Describe(const Token& t) {
  if (t.kind == Tok::kEnd) return "the end of the input";
  if (t.kind == Tok::kString) return "the string " + Clip(t.raw);
  return fmt::format("\"{}\"", Clip(t.raw));
}

// Edit distance up to `limit` (limit + 1 when further), for "did you mean".
size_t Distance(std::string_view a, std::string_view b, size_t limit) {
  if (a.size() > b.size() + limit || b.size() > a.size() + limit) return limit + 1;
  std::vector<size_t> prev(b.size() + 1);
  std::vector<size_t> cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      cur[j] =
          std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

constexpr std::array<std::string_view, 8> kOptionNames = {
    "DATASOURCE", "FORMAT", "TIMESTAMP", "TIMESTAMP_FORMAT", "KEY", "TYPE", "SHARED", "CONF_KEY"};
// eKuiper's other stream options: refused with a message saying so.
constexpr std::array<std::string_view, 6> kUnsupportedOptions = {
    "STRICT_VALIDATION", "STRICTVALIDATION", "SCHEMAID", "RETAIN_SIZE", "KIND", "DELIMITER"};

struct TypeName {
  std::string_view name;
  TypeKind kind;
};
constexpr std::array<TypeName, 8> kTypeNames = {{
    {"BIGINT", TypeKind::kBigint},
    {"FLOAT", TypeKind::kFloat},
    {"STRING", TypeKind::kString},
    {"DATETIME", TypeKind::kDatetime},
    {"BOOLEAN", TypeKind::kBoolean},
    {"BYTEA", TypeKind::kBytea},
    {"ARRAY", TypeKind::kArray},
    {"STRUCT", TypeKind::kStruct},
}};

// What users of other SQL dialects write for our types.
std::string_view TypeHint(std::string_view name) {
  static constexpr std::array<std::pair<std::string_view, std::string_view>, 22> kHints = {{
      {"INT", "BIGINT"},     {"INTEGER", "BIGINT"}, {"LONG", "BIGINT"},  {"SMALLINT", "BIGINT"},
      {"TINYINT", "BIGINT"}, {"INT64", "BIGINT"},   {"DOUBLE", "FLOAT"}, {"REAL", "FLOAT"},
      {"DECIMAL", "FLOAT"},  {"NUMERIC", "FLOAT"},  {"NUMBER", "FLOAT"}, {"BOOL", "BOOLEAN"},
      {"TEXT", "STRING"},    {"VARCHAR", "STRING"}, {"CHAR", "STRING"},  {"TIMESTAMP", "DATETIME"},
      {"DATE", "DATETIME"},  {"TIME", "DATETIME"},  {"BYTES", "BYTEA"},  {"BLOB", "BYTEA"},
      {"OBJECT", "STRUCT"},  {"LIST", "ARRAY"},
  }};
  for (const auto& [from, to] : kHints) {
    if (IEq(from, name)) return to;
  }
  return {};
}

bool IsNumberLiteral(const Expr& e) {
  return e.kind == ExprKind::kLiteral && (e.value.is_int() || e.value.is_float());
}
std::optional<int64_t> IntLiteral(const Expr& e) {
  if (e.kind == ExprKind::kLiteral && e.value.is_int()) return e.value.int_value();
  return std::nullopt;
}
std::optional<double> NumberLiteral(const Expr& e) {
  if (IsNumberLiteral(e)) return e.value.number_value();
  return std::nullopt;
}
bool IsBoolLiteral(const Expr& e) { return e.kind == ExprKind::kLiteral && e.value.is_bool(); }

Expr Literal(Value v, Pos pos) {
  Expr e;
  e.kind = ExprKind::kLiteral;
  e.value = std::move(v);
  e.pos = pos;
  return e;
}

Expr Node(ExprKind kind, Op op, Pos pos, std::vector<Expr> args) {
  Expr e;
  e.kind = kind;
  e.op = op;
  e.pos = pos;
  e.args = std::move(args);
  return e;
}

std::vector<Expr> Args(Expr a) {
  std::vector<Expr> v;
  v.push_back(std::move(a));
  return v;
}
std::vector<Expr> Args(Expr a, Expr b) {
  std::vector<Expr> v;
  v.reserve(2);
  v.push_back(std::move(a));
  v.push_back(std::move(b));
  return v;
}
std::vector<Expr> Args(Expr a, Expr b, Expr c) {
  std::vector<Expr> v;
  v.reserve(3);
  v.push_back(std::move(a));
  v.push_back(std::move(b));
  v.push_back(std::move(c));
  return v;
}

std::optional<Op> CompareOp(Tok t) {
  switch (t) {
    case Tok::kEq:
      return Op::kEq;
    case Tok::kNe:
      return Op::kNe;
    case Tok::kLt:
      return Op::kLt;
    case Tok::kLe:
      return Op::kLe;
    case Tok::kGt:
      return Op::kGt;
    case Tok::kGe:
      return Op::kGe;
    default:
      return std::nullopt;
  }
}

std::string ArityMessage(const FunctionInfo& f, size_t n) {
  std::string takes;
  if (f.max_args == 0) {
    takes = "no arguments";
  } else if (f.min_args == f.max_args) {
    takes = fmt::format("{} argument{}", f.min_args, f.min_args == 1 ? "" : "s");
  } else if (f.max_args == kVariadic) {
    takes = fmt::format("at least {} argument{}", f.min_args, f.min_args == 1 ? "" : "s");
  } else {
    takes = fmt::format("{} to {} arguments", f.min_args, f.max_args);
  }
  return fmt::format("{} takes {}: {}; found {}", f.name, takes, f.usage, n);
}

class Parser {
 public:
  Parser(std::string_view src, const ParseOptions& options) : lexer_(src), options_(options) {}

  enum class Want { kAny, kSelect, kCreateStream };

  bool Statement(Ast& out, Want want);
  bool StandaloneExpression(Expr& out);
  ParseError TakeError() { return error_ ? std::move(*error_) : ParseError{1, 1, "parse failed"}; }

 private:
  // RAII: one level of nesting, undone on every return.
  class Nest {
   public:
    explicit Nest(Parser& p) : p_(p) { ++p_.depth_; }
    ~Nest() { --p_.depth_; }
    Nest(const Nest&) = delete;
    Nest& operator=(const Nest&) = delete;

   private:
    Parser& p_;
  };

  // --- tokens ---
  const Token& Peek(size_t k = 0) {
    while (ahead_.size() <= k) ahead_.push_back(lexer_.Next());
    return ahead_[k];
  }
  Token Take() {
    Peek();
    Token t = std::move(ahead_.front());
    ahead_.pop_front();
    return t;
  }
  bool At(Tok kind, size_t k = 0) { return Peek(k).kind == kind; }
  bool AtKeyword(Keyword kw, size_t k = 0) {
    const Token& t = Peek(k);
    return t.kind == Tok::kIdent && t.keyword == kw;
  }
  // A bare, non-reserved word, in any case.
  bool AtWord(std::string_view word, size_t k = 0) {
    const Token& t = Peek(k);
    return t.kind == Tok::kIdent && t.keyword == Keyword::kNone && IEq(t.raw, word);
  }
  bool AtName(size_t k = 0) {
    const Token& t = Peek(k);
    return (t.kind == Tok::kIdent && t.keyword == Keyword::kNone) || t.kind == Tok::kQuotedIdent;
  }
  bool Accept(Tok kind) {
    if (!At(kind)) return false;
    Take();
    return true;
  }
  bool AcceptKeyword(Keyword kw) {
    if (!AtKeyword(kw)) return false;
    Take();
    return true;
  }
  bool Expect(Tok kind, std::string_view what) { return Accept(kind) || Expected(what); }
  bool ExpectKeyword(Keyword kw, std::string_view what) {
    return AcceptKeyword(kw) || Expected(what);
  }

  bool Fail(Pos pos, std::string message) {
    if (!error_) error_ = ParseError{pos.line, pos.column, std::move(message)};
    return false;
  }
  // "expected <what>, found <the next token>", or the lexer's error if that is what is next.
  bool Expected(std::string_view what) {
    const Token& t = Peek();
    if (t.kind == Tok::kError) return Fail(t.pos, t.text);
    if (AtWord("IS") && (AtKeyword(Keyword::kNull, 1) || AtKeyword(Keyword::kNot, 1))) {
      return Fail(t.pos, "IS [NOT] NULL is not supported: use isnull(x), or NOT isnull(x)");
    }
    return Fail(t.pos, fmt::format("expected {}, found {}", what, Describe(t)));
  }
  bool TooDeep() {
    return Fail(Peek().pos, fmt::format("nested too deeply: more than {} levels of parentheses, "
                                        "calls, CASE, prefix operators or types",
                                        options_.max_depth));
  }
  // A name: a bare word that is not reserved, or a name in backticks.
  bool Name(std::string& out, Pos* pos, std::string_view what) {
    const Token& t = Peek();
    if (t.kind == Tok::kIdent && t.keyword != Keyword::kNone) {
      return Fail(t.pos, fmt::format("expected {}, found the reserved word \"{}\" (to use it as a "
                                     "name, put it in backticks: `{}`)",
                                     what, t.raw, t.raw));
    }
    if (!AtName()) return Expected(what);
    Token n = Take();
    if (pos != nullptr) *pos = n.pos;
    out = std::move(n.text);
    return true;
  }
  // Sets e.height from its children; fails when the tree gets too high.
  bool Finish(Expr& e) {
    int h = 0;
    ForEachChild(e, [&](const Expr& c) { h = std::max(h, c.height); });
    e.height = h + 1;
    if (e.kind == ExprKind::kColumn && !e.stream.empty()) e.height = 2;  // may become a->b
    if (e.height > options_.max_depth) {
      return Fail(e.pos, fmt::format("expression nested too deeply: more than {} levels (long "
                                     "chains of AND, OR or + count as nesting; for many "
                                     "alternatives use IN (...))",
                                     options_.max_depth));
    }
    return true;
  }

  // --- statements ---
  bool CreateStreamStmt(CreateStream& out);
  bool Columns(std::vector<ColumnDef>& out, bool is_struct);
  bool Type(DataType& out);
  bool Options(CreateStream& out, Pos with_pos);
  bool ValidateOption(const std::string& key, const std::string& value, Pos pos,
                      StreamOptions& typed);
  bool SelectStmt(Select& out);
  bool SelectField(Field& out);
  bool AfterSelectList();
  bool AfterClauses(int last_clause);
  bool GroupBy(Select& out);
  bool WindowItem(Window& out);
  bool WindowNumber(WindowKind kind, int64_t& value, Pos& pos);

  // --- expressions, loosest first ---
  bool Expression(Expr& out);
  bool Or(Expr& out);
  bool And(Expr& out);
  bool Not(Expr& out);
  bool Predicate(Expr& out);
  bool Additive(Expr& out);
  bool Multiplicative(Expr& out);
  bool Unary(Expr& out);
  bool Postfix(Expr& out);
  bool PostfixOps(Expr& out, bool qualifiable);
  bool Primary(Expr& out, bool& qualifiable);
  bool Call(Expr& out);
  bool CheckConstantArgs(const Expr& call);
  bool Case(Expr& out);

  Lexer lexer_;
  ParseOptions options_;
  std::deque<Token> ahead_;
  std::optional<ParseError> error_;
  int depth_ = 0;
};

// --- statements ---------------------------------------------------------------------------

bool Parser::Statement(Ast& out, Want want) {
  if (AtKeyword(Keyword::kSelect) && want != Want::kCreateStream) {
    Select s;
    VERGE_TRY(SelectStmt(s));
    out = std::move(s);
  } else if (AtWord("CREATE") && want != Want::kSelect) {
    CreateStream c;
    VERGE_TRY(CreateStreamStmt(c));
    out = std::move(c);
  } else if (At(Tok::kEnd)) {
    return Fail(Peek().pos, "the statement is empty");
  } else {
    return Expected(want == Want::kSelect         ? "SELECT"
                    : want == Want::kCreateStream ? "CREATE STREAM"
                                                  : "SELECT or CREATE STREAM");
  }
  Accept(Tok::kSemicolon);
  if (!At(Tok::kEnd)) return Expected("the end of the statement");
  return true;
}

bool Parser::StandaloneExpression(Expr& out) {
  if (At(Tok::kEnd)) return Fail(Peek().pos, "the expression is empty");
  VERGE_TRY(Expression(out));
  if (!At(Tok::kEnd)) return Expected("the end of the expression");
  return true;
}

bool Parser::CreateStreamStmt(CreateStream& out) {
  Take();  // CREATE
  if (AtWord("TABLE")) return Fail(Peek().pos, "CREATE TABLE is not supported: Verge has streams");
  if (!AtWord("STREAM")) return Expected("STREAM after CREATE");
  Take();
  VERGE_TRY(Name(out.name, &out.pos, "a stream name"));
  VERGE_TRY(Expect(Tok::kLParen,
                   "\"(\" and the columns after the stream name (\"()\" for a "
                   "stream without a schema)"));
  VERGE_TRY(Columns(out.columns, false));
  if (!AtWord("WITH")) return Expected("WITH (DATASOURCE=\"...\", ...) after the columns");
  const Pos with_pos = Take().pos;
  VERGE_TRY(Expect(Tok::kLParen, "\"(\" after WITH"));
  return Options(out, with_pos);
}

// After "(": columns up to and including ")". A trailing comma is allowed (eKuiper's own
// examples have one).
bool Parser::Columns(std::vector<ColumnDef>& out, bool is_struct) {
  if (At(Tok::kRParen)) {
    if (is_struct) return Fail(Peek().pos, "STRUCT needs at least one field");
    Take();
    return true;
  }
  std::set<std::string, std::less<>> names;
  while (true) {
    ColumnDef c;
    VERGE_TRY(Name(c.name, &c.pos, is_struct ? "a field name" : "a column name"));
    if (!names.insert(c.name).second) {
      return Fail(c.pos, fmt::format("the {} \"{}\" is declared twice",
                                     is_struct ? "field" : "column", c.name));
    }
    VERGE_TRY(Type(c.type));
    out.push_back(std::move(c));
    if (Accept(Tok::kComma)) {
      if (Accept(Tok::kRParen)) return true;
      continue;
    }
    if (Accept(Tok::kRParen)) return true;
    return Expected(fmt::format("\",\" or \")\" after the {} {}", is_struct ? "field" : "column",
                                QuoteName(out.back().name)));
  }
}

bool Parser::Type(DataType& out) {
  Nest nest(*this);
  if (depth_ > options_.max_depth) return TooDeep();
  constexpr std::string_view kTypes =
      "BIGINT, FLOAT, STRING, DATETIME, BOOLEAN, BYTEA, ARRAY(type) or STRUCT(name type, ...)";
  const Token& t = Peek();
  if (t.kind != Tok::kIdent) return Expected(fmt::format("a type ({})", kTypes));
  const TypeName* found = nullptr;
  for (const TypeName& tn : kTypeNames) {
    if (IEq(tn.name, t.raw)) found = &tn;
  }
  if (found == nullptr) {
    std::string_view hint = TypeHint(t.raw);
    return Fail(t.pos, fmt::format("unknown type \"{}\"{}; the types are {}", Clip(t.raw),
                                   hint.empty() ? "" : fmt::format(" (use {})", hint), kTypes));
  }
  Take();
  out.kind = found->kind;
  if (out.kind == TypeKind::kArray) {
    VERGE_TRY(Expect(Tok::kLParen, "\"(\" after ARRAY, as in ARRAY(FLOAT)"));
    DataType element;
    VERGE_TRY(Type(element));
    out.element = std::move(element);
    VERGE_TRY(Expect(Tok::kRParen, "\")\" to close ARRAY("));
  } else if (out.kind == TypeKind::kStruct) {
    VERGE_TRY(Expect(Tok::kLParen, "\"(\" after STRUCT, as in STRUCT(x FLOAT, y FLOAT)"));
    VERGE_TRY(Columns(out.fields, true));
  }
  return true;
}

// After "WITH (": the options up to and including ")".
bool Parser::Options(CreateStream& out, Pos with_pos) {
  if (At(Tok::kRParen)) return Fail(Peek().pos, "WITH () needs at least DATASOURCE=\"...\"");
  std::optional<Pos> timestamp_pos;
  while (true) {
    if (At(Tok::kError) || Peek().kind != Tok::kIdent) {
      return Expected("an option name (DATASOURCE, FORMAT, TIMESTAMP, ...)");
    }
    const Token key_token = Take();
    const std::string key = Upper(key_token.raw);
    if (std::find(kOptionNames.begin(), kOptionNames.end(), key) == kOptionNames.end()) {
      if (std::find(kUnsupportedOptions.begin(), kUnsupportedOptions.end(), key) !=
          kUnsupportedOptions.end()) {
        return Fail(key_token.pos,
                    fmt::format("the eKuiper option {} is not supported by Verge", key));
      }
      std::string_view suggestion;
      size_t best = 3;
      for (std::string_view known : kOptionNames) {
        size_t d = Distance(key, known, 2);
        if (d < best) {
          best = d;
          suggestion = known;
        }
      }
      return Fail(
          key_token.pos,
          fmt::format("unknown option \"{}\"{}; the options are DATASOURCE, FORMAT, "
                      "TIMESTAMP, TIMESTAMP_FORMAT, KEY, TYPE, SHARED and CONF_KEY",
                      Clip(key_token.raw),
                      suggestion.empty() ? "" : fmt::format(" (did you mean {}?)", suggestion)));
    }
    if (out.options.count(key) != 0) {
      return Fail(key_token.pos, fmt::format("the option {} is given twice", key));
    }
    VERGE_TRY(Expect(Tok::kEq, fmt::format("\"=\" after {}", key)));
    if (!At(Tok::kString)) {
      if (At(Tok::kError)) return Expected("");
      return Fail(Peek().pos,
                  fmt::format("expected the value of {} as a string in quotes, as in "
                              "{}=\"{}\", found {}",
                              key, key, key == "SHARED" ? "true" : "...", Describe(Peek())));
    }
    Token value = Take();
    VERGE_TRY(ValidateOption(key, value.text, value.pos, out.typed));
    if (key == "TIMESTAMP") timestamp_pos = value.pos;
    out.options.emplace(key, std::move(value.text));
    if (Accept(Tok::kComma)) continue;
    if (Accept(Tok::kRParen)) break;
    return Expected(fmt::format("\",\" or \")\" after the option {}", key));
  }
  if (out.options.count("DATASOURCE") == 0) {
    return Fail(with_pos,
                "DATASOURCE is required: the topic to read, as in WITH "
                "(DATASOURCE=\"sensors/+/data\", FORMAT=\"json\")");
  }
  if (timestamp_pos && !out.columns.empty()) {
    const std::string& ts = out.typed.timestamp;
    auto it = std::find_if(out.columns.begin(), out.columns.end(),
                           [&](const ColumnDef& c) { return c.name == ts; });
    if (it == out.columns.end()) {
      return Fail(*timestamp_pos, fmt::format("TIMESTAMP names \"{}\", which is not a column of "
                                              "the stream",
                                              Clip(ts)));
    }
    TypeKind k = it->type.kind;
    if (k != TypeKind::kBigint && k != TypeKind::kFloat && k != TypeKind::kDatetime &&
        k != TypeKind::kString) {
      return Fail(*timestamp_pos,
                  fmt::format("the TIMESTAMP column \"{}\" is {}: it must be BIGINT (Unix "
                              "milliseconds), FLOAT, DATETIME or STRING",
                              Clip(ts), TypeKindName(k)));
    }
  }
  return true;
}

bool Parser::ValidateOption(const std::string& key, const std::string& value, Pos pos,
                            StreamOptions& typed) {
  if (value.empty() && key != "SHARED" && key != "FORMAT" && key != "TYPE") {
    return Fail(pos, fmt::format("{} must not be empty", key));
  }
  if (key == "DATASOURCE") {
    typed.datasource = value;
  } else if (key == "FORMAT") {
    if (!IEq(value, "json")) {
      return Fail(pos, fmt::format("FORMAT \"{}\" is not supported: Verge reads JSON "
                                   "(FORMAT=\"json\")",
                                   Clip(value)));
    }
    typed.format = "json";
  } else if (key == "TIMESTAMP") {
    typed.timestamp = value;
  } else if (key == "TIMESTAMP_FORMAT") {
    typed.timestamp_format = value;
  } else if (key == "KEY") {
    typed.key = value;
  } else if (key == "CONF_KEY") {
    typed.conf_key = value;
  } else if (key == "TYPE") {
    if (!IEq(value, "mqtt") && !IEq(value, "memory")) {
      return Fail(pos, fmt::format("TYPE \"{}\" is not supported: use \"mqtt\" (the default) or "
                                   "\"memory\" (the output of another rule)",
                                   Clip(value)));
    }
    typed.type = Lower(value);
  } else if (key == "SHARED") {
    if (!IEq(value, "true") && !IEq(value, "false")) {
      return Fail(pos,
                  fmt::format("SHARED must be \"true\" or \"false\", found \"{}\"", Clip(value)));
    }
    typed.shared = IEq(value, "true");
  }
  return true;
}

bool Parser::SelectStmt(Select& out) {
  Take();  // SELECT
  std::set<std::string, std::less<>> aliases;
  while (true) {
    Field f;
    Pos alias_pos;
    VERGE_TRY(SelectField(f));
    if (AcceptKeyword(Keyword::kAs)) {
      VERGE_TRY(Name(f.alias, &alias_pos, "a name after AS"));
      if (!aliases.insert(f.alias).second) {
        return Fail(alias_pos,
                    fmt::format("the name {} is given to two fields", QuoteName(f.alias)));
      }
    }
    out.fields.push_back(std::move(f));
    if (!Accept(Tok::kComma)) break;
  }
  if (!AcceptKeyword(Keyword::kFrom)) return AfterSelectList();
  VERGE_TRY(Name(out.stream, &out.stream_pos, "a stream name after FROM"));
  if (AcceptKeyword(Keyword::kAs)) VERGE_TRY(Name(out.alias, nullptr, "a name after AS"));

  int last = -1;  // the last clause parsed: 0 WHERE, 1 GROUP BY, 2 HAVING, 3 ORDER BY
  if (AcceptKeyword(Keyword::kWhere)) {
    Expr e;
    VERGE_TRY(Expression(e));
    out.where = std::move(e);
    last = 0;
  }
  if (AcceptKeyword(Keyword::kGroup)) {
    VERGE_TRY(ExpectKeyword(Keyword::kBy, "BY after GROUP"));
    VERGE_TRY(GroupBy(out));
    last = 1;
  }
  if (AcceptKeyword(Keyword::kHaving)) {
    Expr e;
    VERGE_TRY(Expression(e));
    out.having = std::move(e);
    last = 2;
  }
  if (AcceptKeyword(Keyword::kOrder)) {
    VERGE_TRY(ExpectKeyword(Keyword::kBy, "BY after ORDER"));
    while (true) {
      OrderItem item;
      VERGE_TRY(Expression(item.expr));
      if (AcceptKeyword(Keyword::kDesc)) {
        item.descending = true;
      } else {
        AcceptKeyword(Keyword::kAsc);
      }
      out.order_by.push_back(std::move(item));
      if (!Accept(Tok::kComma)) break;
    }
    last = 3;
  }
  if (At(Tok::kSemicolon) || At(Tok::kEnd)) return true;
  return AfterClauses(last);
}

bool Parser::SelectField(Field& out) {
  const bool star = At(Tok::kStar);
  const bool qualified_star = AtName() && At(Tok::kDot, 1) && At(Tok::kStar, 2);
  if (!star && !qualified_star) return Expression(out.expr);
  out.expr.kind = ExprKind::kStar;
  out.expr.pos = Peek().pos;
  if (qualified_star) {
    out.expr.stream = Take().text;
    Take();  // .
  }
  Take();  // *
  if (AtWord("EXCEPT") || AtWord("REPLACE")) {
    return Fail(Peek().pos,
                fmt::format("* {} is not supported: list the fields you want", Upper(Peek().raw)));
  }
  if (AtKeyword(Keyword::kAs)) return Fail(Peek().pos, "* cannot be given a name with AS");
  return true;
}

// The select list ended without FROM after it.
bool Parser::AfterSelectList() {
  if (AtName() && (AtKeyword(Keyword::kFrom, 1) || At(Tok::kComma, 1))) {
    return Expected(
        fmt::format("FROM after the select list (to name a field, write AS {})", Clip(Peek().raw)));
  }
  return Expected("FROM after the select list");
}

// The clauses ended with something that is not the end of the statement.
bool Parser::AfterClauses(int last) {
  static constexpr std::array<std::string_view, 4> kClauses = {"WHERE", "GROUP BY", "HAVING",
                                                               "ORDER BY"};
  static constexpr std::array<Keyword, 4> kStarts = {Keyword::kWhere, Keyword::kGroup,
                                                     Keyword::kHaving, Keyword::kOrder};
  const Token& t = Peek();
  for (int k = 0; k <= last; ++k) {  // a later clause would have been parsed
    if (!AtKeyword(kStarts[k])) continue;
    if (k == last) {
      return Fail(t.pos, fmt::format("a second {} clause{}", kClauses[k],
                                     k == 0 || k == 2 ? " (combine conditions with AND)" : ""));
    }
    return Fail(t.pos, fmt::format("{} must come before {}", kClauses[k], kClauses[last]));
  }
  if (AtWord("LIMIT")) return Fail(t.pos, "LIMIT is not supported");
  if (AtKeyword(Keyword::kJoin) || AtKeyword(Keyword::kLeft) || AtKeyword(Keyword::kInner) ||
      AtWord("RIGHT") || AtWord("FULL") || AtWord("CROSS")) {
    return Fail(t.pos, "JOIN is not supported: a rule reads one stream");
  }
  std::string expected;
  for (int k = last + 1; k < 4; ++k) {
    expected += kClauses[k];
    expected += ", ";
  }
  if (!expected.empty()) {
    expected.resize(expected.size() - 2);
    expected += " or ";
  }
  expected += "the end of the statement";
  return Expected(expected);
}

bool Parser::GroupBy(Select& out) {
  while (true) {
    if (Peek().kind == Tok::kIdent && Peek().keyword == Keyword::kNone &&
        FindWindowFunction(Peek().raw) && At(Tok::kLParen, 1)) {
      if (out.window) {
        return Fail(Peek().pos, fmt::format("a second window, {}: a GROUP BY has at most one",
                                            Upper(Peek().raw)));
      }
      Window w;
      VERGE_TRY(WindowItem(w));
      out.window = std::move(w);
    } else {
      Expr e;
      VERGE_TRY(Expression(e));
      out.group_by.push_back(std::move(e));
    }
    if (!Accept(Tok::kComma)) return true;
  }
}

bool Parser::WindowNumber(WindowKind kind, int64_t& value, Pos& pos) {
  pos = Peek().pos;
  const bool negative = Accept(Tok::kMinus);
  const Token& t = Peek();
  if (t.kind == Tok::kFloat) {
    return Fail(t.pos, fmt::format("{} takes whole numbers{}, found {}", WindowName(kind),
                                   kind == WindowKind::kCount ? " of events"
                                                              : " (for fractions use a smaller "
                                                                "unit, such as ms)",
                                   Clip(t.raw)));
  }
  if (t.kind != Tok::kInt) return Expected(fmt::format("a whole number in {}", WindowName(kind)));
  if (t.int_magnitude >= kTwo63) {
    return Fail(t.pos, fmt::format("{} is too large for {}", Clip(t.raw), WindowName(kind)));
  }
  value = static_cast<int64_t>(t.int_magnitude);
  if (negative) value = -value;
  Take();
  return true;
}

bool Parser::WindowItem(Window& out) {
  const Token name = Take();
  out.kind = *FindWindowFunction(name.raw);
  out.pos = name.pos;
  Take();  // (
  const std::string_view wname = WindowName(out.kind);
  const bool timed = out.kind != WindowKind::kCount;
  if (timed) {
    static constexpr std::array<std::pair<std::string_view, TimeUnit>, 5> kUnits = {{
        {"dd", TimeUnit::kDay},
        {"hh", TimeUnit::kHour},
        {"mi", TimeUnit::kMinute},
        {"ss", TimeUnit::kSecond},
        {"ms", TimeUnit::kMillisecond},
    }};
    bool found = false;
    if (Peek().kind == Tok::kIdent) {
      for (const auto& [u, unit] : kUnits) {
        if (IEq(u, Peek().raw)) {
          out.unit = unit;
          found = true;
        }
      }
    }
    if (!found) {
      return Expected(
          fmt::format("a time unit (dd, hh, mi, ss or ms) as the first argument of {}", wname));
    }
    Take();
    VERGE_TRY(Expect(Tok::kComma, fmt::format("\",\" after the unit of {}", wname)));
  }
  std::vector<Pos> positions;
  while (true) {
    int64_t v = 0;
    Pos p;
    VERGE_TRY(WindowNumber(out.kind, v, p));
    out.args.push_back(v);
    positions.push_back(p);
    if (out.args.size() > 3) break;  // reported below
    if (Accept(Tok::kComma)) continue;
    VERGE_TRY(Expect(Tok::kRParen, fmt::format("\",\" or \")\" in {}", wname)));
    break;
  }

  // Shape: how many numbers, and what each one is.
  struct Shape {
    size_t min;
    size_t max;
    std::string_view usage;
    std::array<std::string_view, 2> names;
  };
  static constexpr std::array<Shape, 5> kShapes = {{
      {1, 1, "(unit, size)", {"size", ""}},
      {2, 2, "(unit, size, hop)", {"size", "hop"}},
      {1, 2, "(unit, size [, delay])", {"size", "delay"}},
      {2, 2, "(unit, timeout, max)", {"timeout", "max duration"}},
      {1, 2, "(count [, hop])", {"count", "hop"}},
  }};
  const Shape& shape = kShapes[static_cast<size_t>(out.kind)];
  const size_t n = out.args.size();
  if (n < shape.min || n > shape.max) {
    return Fail(name.pos, fmt::format("{} takes {}; found {} number{}", wname, shape.usage, n,
                                      n == 1 ? "" : "s"));
  }
  const int64_t unit_ms = timed ? UnitMillis(out.unit) : 1;
  for (size_t i = 0; i < n; ++i) {
    const int64_t v = out.args[i];
    const std::string_view what = shape.names[i];
    const bool delay = out.kind == WindowKind::kSliding && i == 1;
    if (delay ? v < 0 : v <= 0) {
      return Fail(positions[i], fmt::format("the {} of {} must be {}, found {}", what, wname,
                                            delay ? "zero or more" : "positive", v));
    }
    if (timed && v > kMaxWindowMs / unit_ms) {
      return Fail(positions[i],
                  fmt::format("the {} of {} is longer than the limit of 366 days", what, wname));
    }
    if (!timed && v > kMaxCountWindow) {
      return Fail(positions[i], fmt::format("the {} of {} is more than the limit of {} events",
                                            what, wname, kMaxCountWindow));
    }
  }
  const int64_t a = out.args[0];
  const int64_t b = n > 1 ? out.args[1] : 0;
  switch (out.kind) {
    case WindowKind::kTumbling:
      out.length_ms = out.hop_ms = a * unit_ms;
      break;
    case WindowKind::kHopping:
      if (b > a) {
        return Fail(positions[1], fmt::format("the hop of HOPPINGWINDOW ({} {}) is longer than "
                                              "its size ({} {}): events between windows would "
                                              "be lost",
                                              b, UnitName(out.unit), a, UnitName(out.unit)));
      }
      out.length_ms = a * unit_ms;
      out.hop_ms = b * unit_ms;
      break;
    case WindowKind::kSliding:
      out.length_ms = a * unit_ms;
      out.delay_ms = b * unit_ms;
      break;
    case WindowKind::kSession:
      if (a > b) {
        return Fail(positions[0],
                    fmt::format("the timeout of SESSIONWINDOW ({} {}) is longer than its max "
                                "duration ({} {}); the arguments are (unit, timeout, max)",
                                a, UnitName(out.unit), b, UnitName(out.unit)));
      }
      out.timeout_ms = a * unit_ms;
      out.length_ms = b * unit_ms;
      break;
    case WindowKind::kCount:
      if (n > 1 && b > a) {
        return Fail(positions[1], fmt::format("the hop of COUNTWINDOW ({}) is more than its "
                                              "count ({})",
                                              b, a));
      }
      out.count = a;
      out.count_hop = n > 1 ? b : a;
      break;
  }

  while (true) {
    if (AtWord("FILTER") && At(Tok::kLParen, 1)) {
      if (out.filter) return Fail(Peek().pos, fmt::format("a second FILTER after {}", wname));
      Take();
      Take();
      VERGE_TRY(ExpectKeyword(Keyword::kWhere, "WHERE after FILTER ("));
      Expr e;
      VERGE_TRY(Expression(e));
      out.filter = std::move(e);
      VERGE_TRY(Expect(Tok::kRParen, "\")\" to close FILTER (WHERE ..."));
    } else if (AtKeyword(Keyword::kOver)) {
      if (out.kind != WindowKind::kSliding) {
        return Fail(Peek().pos, fmt::format("OVER (WHEN ...) after a window applies only to "
                                            "SLIDINGWINDOW, not to {}",
                                            wname));
      }
      if (out.trigger) return Fail(Peek().pos, "a second OVER after SLIDINGWINDOW");
      Take();
      VERGE_TRY(Expect(Tok::kLParen, "\"(\" after OVER"));
      VERGE_TRY(ExpectKeyword(Keyword::kWhen, "WHEN in the OVER of SLIDINGWINDOW"));
      Expr e;
      VERGE_TRY(Expression(e));
      out.trigger = std::move(e);
      VERGE_TRY(Expect(Tok::kRParen, "\")\" to close OVER (WHEN ..."));
    } else {
      return true;
    }
  }
}

// --- expressions --------------------------------------------------------------------------

bool Parser::Expression(Expr& out) {
  Nest nest(*this);
  if (depth_ > options_.max_depth) return TooDeep();
  return Or(out);
}

bool Parser::Or(Expr& out) {
  VERGE_TRY(And(out));
  while (AtKeyword(Keyword::kOr)) {
    const Pos pos = Take().pos;
    Expr rhs;
    VERGE_TRY(And(rhs));
    out = Node(ExprKind::kBinary, Op::kOr, pos, Args(std::move(out), std::move(rhs)));
    VERGE_TRY(Finish(out));
  }
  return true;
}

bool Parser::And(Expr& out) {
  VERGE_TRY(Not(out));
  while (AtKeyword(Keyword::kAnd)) {
    const Pos pos = Take().pos;
    Expr rhs;
    VERGE_TRY(Not(rhs));
    out = Node(ExprKind::kBinary, Op::kAnd, pos, Args(std::move(out), std::move(rhs)));
    VERGE_TRY(Finish(out));
  }
  return true;
}

bool Parser::Not(Expr& out) {
  if (!AtKeyword(Keyword::kNot)) return Predicate(out);
  const Pos pos = Take().pos;
  Nest nest(*this);
  if (depth_ > options_.max_depth) return TooDeep();
  Expr operand;
  VERGE_TRY(Not(operand));
  out = Node(ExprKind::kUnary, Op::kNot, pos, Args(std::move(operand)));
  return Finish(out);
}

bool Parser::Predicate(Expr& out) {
  VERGE_TRY(Additive(out));
  auto at_predicate = [&] {
    if (CompareOp(Peek().kind)) return true;
    size_t k = AtKeyword(Keyword::kNot) ? 1 : 0;
    return AtKeyword(Keyword::kLike, k) || AtKeyword(Keyword::kIn, k) ||
           AtKeyword(Keyword::kBetween, k);
  };
  if (!at_predicate()) return true;
  if (auto op = CompareOp(Peek().kind)) {
    const Pos pos = Take().pos;
    Expr rhs;
    VERGE_TRY(Additive(rhs));
    out = Node(ExprKind::kBinary, *op, pos, Args(std::move(out), std::move(rhs)));
  } else {
    const Pos pos = Peek().pos;
    const bool negated = AcceptKeyword(Keyword::kNot);
    if (AcceptKeyword(Keyword::kLike)) {
      Expr pattern;
      VERGE_TRY(Additive(pattern));
      out = Node(ExprKind::kLike, Op::kNone, pos, Args(std::move(out), std::move(pattern)));
    } else if (AcceptKeyword(Keyword::kIn)) {
      if (At(Tok::kLParen)) {
        const Pos open = Take().pos;
        if (At(Tok::kRParen)) return Fail(Peek().pos, "IN () needs at least one value");
        std::vector<Expr> args = Args(std::move(out));
        while (true) {
          Expr e;
          VERGE_TRY(Expression(e));
          args.push_back(std::move(e));
          if (!Accept(Tok::kComma)) break;
        }
        if (!Accept(Tok::kRParen)) {
          return Expected(fmt::format("\",\" or \")\" in the IN list opened at line {}, column {}",
                                      open.line, open.column));
        }
        out = Node(ExprKind::kIn, Op::kNone, pos, std::move(args));
      } else {
        Expr array;
        VERGE_TRY(Postfix(array));
        out = Node(ExprKind::kInArray, Op::kNone, pos, Args(std::move(out), std::move(array)));
      }
    } else {
      Take();  // BETWEEN
      Expr low;
      Expr high;
      VERGE_TRY(Additive(low));
      VERGE_TRY(ExpectKeyword(Keyword::kAnd, "AND between the bounds of BETWEEN"));
      VERGE_TRY(Additive(high));
      out = Node(ExprKind::kBetween, Op::kNone, pos,
                 Args(std::move(out), std::move(low), std::move(high)));
    }
    out.negated = negated;
  }
  VERGE_TRY(Finish(out));
  if (at_predicate()) {
    return Fail(Peek().pos, "comparisons do not chain: write a < b AND b < c, or use parentheses");
  }
  return true;
}

bool Parser::Additive(Expr& out) {
  VERGE_TRY(Multiplicative(out));
  while (true) {
    Op op;
    switch (Peek().kind) {
      case Tok::kPlus:
        op = Op::kAdd;
        break;
      case Tok::kMinus:
        op = Op::kSub;
        break;
      case Tok::kPipe:
        op = Op::kBitOr;
        break;
      case Tok::kCaret:
        op = Op::kBitXor;
        break;
      default:
        return true;
    }
    const Pos pos = Take().pos;
    Expr rhs;
    VERGE_TRY(Multiplicative(rhs));
    out = Node(ExprKind::kBinary, op, pos, Args(std::move(out), std::move(rhs)));
    VERGE_TRY(Finish(out));
  }
}

bool Parser::Multiplicative(Expr& out) {
  VERGE_TRY(Unary(out));
  while (true) {
    Op op;
    switch (Peek().kind) {
      case Tok::kStar:
        op = Op::kMul;
        break;
      case Tok::kSlash:
        op = Op::kDiv;
        break;
      case Tok::kPercent:
        op = Op::kMod;
        break;
      case Tok::kAmp:
        op = Op::kBitAnd;
        break;
      default:
        return true;
    }
    const Pos pos = Take().pos;
    Expr rhs;
    VERGE_TRY(Unary(rhs));
    out = Node(ExprKind::kBinary, op, pos, Args(std::move(out), std::move(rhs)));
    VERGE_TRY(Finish(out));
  }
}

bool Parser::Unary(Expr& out) {
  if (!At(Tok::kMinus) && !At(Tok::kPlus)) return Postfix(out);
  // -9223372036854775808 is the one literal whose magnitude is not a bigint.
  auto postfix_next = [&](size_t k) {
    Tok t = Peek(k).kind;
    return t == Tok::kLBracket || t == Tok::kArrow || t == Tok::kDot;
  };
  if (At(Tok::kMinus) && At(Tok::kInt, 1) && Peek(1).int_magnitude == kTwo63 && !postfix_next(2)) {
    const Pos pos = Take().pos;
    Take();
    out = Literal(Value::Int(std::numeric_limits<int64_t>::min()), pos);
    return true;
  }
  const Token op = Take();
  Nest nest(*this);
  if (depth_ > options_.max_depth) return TooDeep();
  Expr operand;
  VERGE_TRY(Unary(operand));
  const bool neg = op.kind == Tok::kMinus;
  if (operand.kind == ExprKind::kLiteral && operand.value.is_float()) {
    out = Literal(Value::Float(neg ? -operand.value.float_value() : operand.value.float_value()),
                  op.pos);
    return true;
  }
  if (operand.kind == ExprKind::kLiteral && operand.value.is_int() &&
      (!neg || operand.value.int_value() != std::numeric_limits<int64_t>::min())) {
    out = Literal(Value::Int(neg ? -operand.value.int_value() : operand.value.int_value()), op.pos);
    return true;
  }
  out = Node(ExprKind::kUnary, neg ? Op::kNeg : Op::kPlus, op.pos, Args(std::move(operand)));
  return Finish(out);
}

bool Parser::Postfix(Expr& out) {
  bool qualifiable = false;
  VERGE_TRY(Primary(out, qualifiable));
  return PostfixOps(out, qualifiable);
}

bool Parser::PostfixOps(Expr& out, bool qualifiable) {
  while (true) {
    if (At(Tok::kArrow) || At(Tok::kDot)) {
      const bool dot = At(Tok::kDot);
      const Pos pos = Take().pos;
      if (dot && At(Tok::kStar)) {
        return Fail(Peek().pos, "stream.* is allowed only as a field of SELECT");
      }
      std::string key;
      VERGE_TRY(Name(key, nullptr, dot ? "a name after \".\"" : "a field name after ->"));
      if (dot && qualifiable) {
        // stream.column for now; the checks turn it into column->field when `stream` is not
        // the FROM stream (see ast.h).
        out.stream = std::move(out.name);
        out.name = std::move(key);
      } else {
        out = Node(ExprKind::kField, Op::kNone, pos, Args(std::move(out)));
        out.name = std::move(key);
      }
    } else if (At(Tok::kLBracket)) {
      const Pos pos = Take().pos;
      Expr first;
      if (At(Tok::kColon)) {
        first = Literal(Value::Null(), Peek().pos);
      } else {
        VERGE_TRY(Expression(first));
      }
      if (Accept(Tok::kColon)) {
        Expr second;
        if (At(Tok::kRBracket)) {
          second = Literal(Value::Null(), Peek().pos);
        } else {
          VERGE_TRY(Expression(second));
        }
        out = Node(ExprKind::kSlice, Op::kNone, pos,
                   Args(std::move(out), std::move(first), std::move(second)));
      } else {
        out = Node(ExprKind::kIndex, Op::kNone, pos, Args(std::move(out), std::move(first)));
      }
      VERGE_TRY(Expect(Tok::kRBracket, "\"]\""));
    } else {
      return true;
    }
    qualifiable = false;
    VERGE_TRY(Finish(out));
  }
}

bool Parser::Primary(Expr& out, bool& qualifiable) {
  const Token& t = Peek();
  switch (t.kind) {
    case Tok::kInt:
      if (t.int_magnitude >= kTwo63) {
        return Fail(t.pos, fmt::format("integer {} does not fit in a bigint (at most "
                                       "9223372036854775807)",
                                       t.raw));
      }
      out = Literal(Value::Int(static_cast<int64_t>(t.int_magnitude)), t.pos);
      Take();
      return true;
    case Tok::kFloat:
      out = Literal(Value::Float(t.float_value), t.pos);
      Take();
      return true;
    case Tok::kString: {
      Token s = Take();
      out = Literal(Value::String(std::move(s.text)), s.pos);
      return true;
    }
    case Tok::kQuotedIdent: {
      Token n = Take();
      out = Node(ExprKind::kColumn, Op::kNone, n.pos, {});
      out.name = std::move(n.text);
      qualifiable = true;
      return true;
    }
    case Tok::kLParen: {
      const Pos open = Take().pos;
      VERGE_TRY(Expression(out));
      if (!Accept(Tok::kRParen)) {
        return Expected(
            fmt::format("\")\" to close the \"(\" at line {}, column {}", open.line, open.column));
      }
      return true;
    }
    case Tok::kStar:
      return Fail(t.pos,
                  "* is allowed only as a field of SELECT or as an argument, as in count(*)");
    case Tok::kIdent:
      break;
    default:
      return Expected("an expression");
  }
  switch (t.keyword) {
    case Keyword::kNone:
      if (At(Tok::kLParen, 1)) return Call(out);
      out = Node(ExprKind::kColumn, Op::kNone, t.pos, {});
      out.name = Take().text;
      qualifiable = true;
      return true;
    case Keyword::kTrue:
    case Keyword::kFalse:
      out = Literal(Value::Bool(t.keyword == Keyword::kTrue), t.pos);
      Take();
      return true;
    case Keyword::kNull:
      out = Literal(Value::Null(), t.pos);
      Take();
      return true;
    case Keyword::kCase:
      return Case(out);
    case Keyword::kNot:
      return Fail(t.pos, "NOT here must be in parentheses, as in a = (NOT b)");
    case Keyword::kFrom:
    case Keyword::kWhere:
    case Keyword::kAnd:
    case Keyword::kOr:
    case Keyword::kThen:
    case Keyword::kElse:
    case Keyword::kEnd:
    case Keyword::kWhen:
    case Keyword::kAs:
    case Keyword::kHaving:
    case Keyword::kSelect:
      return Expected("an expression");
    default:
      if ((t.keyword == Keyword::kGroup || t.keyword == Keyword::kOrder ||
           t.keyword == Keyword::kPartition) &&
          AtKeyword(Keyword::kBy, 1)) {
        return Expected("an expression");
      }
      return Fail(t.pos, fmt::format("expected an expression, found the reserved word \"{}\" (to "
                                     "use it as a name, put it in backticks: `{}`)",
                                     t.raw, t.raw));
  }
}

bool Parser::Call(Expr& out) {
  const Token name = Take();
  const Pos open = Take().pos;
  if (auto w = FindWindowFunction(name.raw)) {
    return Fail(name.pos,
                fmt::format("{} is a window: it can only be an item of GROUP BY", WindowName(*w)));
  }
  const FunctionInfo* fn = FindFunction(name.raw);
  if (fn == nullptr) {
    std::string_view suggestion = SuggestFunction(name.raw);
    return Fail(
        name.pos,
        fmt::format("unknown function \"{}\"{}", Clip(name.raw),
                    suggestion.empty() ? "" : fmt::format(" (did you mean {}?)", suggestion)));
  }
  out = Node(ExprKind::kCall, Op::kNone, name.pos, {});
  out.name = std::string(fn->name);
  out.function = fn;
  if (!At(Tok::kRParen)) {
    while (true) {
      if (At(Tok::kStar) && (At(Tok::kComma, 1) || At(Tok::kRParen, 1))) {
        Expr star = Node(ExprKind::kStar, Op::kNone, Take().pos, {});
        out.args.push_back(std::move(star));
      } else {
        Expr arg;
        VERGE_TRY(Expression(arg));
        out.args.push_back(std::move(arg));
      }
      if (!Accept(Tok::kComma)) break;
    }
  }
  if (!Accept(Tok::kRParen)) {
    return Expected(fmt::format("\",\" or \")\" in the arguments of {}( at line {}, column {}",
                                fn->name, open.line, open.column));
  }
  const size_t n = out.args.size();
  if (n < fn->min_args || (fn->max_args != kVariadic && n > fn->max_args)) {
    return Fail(name.pos, ArityMessage(*fn, n));
  }
  for (size_t i = 0; i < n; ++i) {
    if (out.args[i].kind == ExprKind::kStar &&
        (fn->star_from == kNoStar || i < static_cast<size_t>(fn->star_from))) {
      return Fail(out.args[i].pos, fmt::format("* is not an argument of {}: only count(*), "
                                               "collect(*) and had_changed(ignore_null, *) take it",
                                               fn->name));
    }
  }
  VERGE_TRY(CheckConstantArgs(out));

  while (true) {
    if (AtWord("FILTER") && At(Tok::kLParen, 1)) {
      if (fn->kind != FunctionKind::kAggregate) {
        return Fail(Peek().pos, fmt::format("FILTER (WHERE ...) applies to aggregate functions; "
                                            "{} is {}",
                                            fn->name, FunctionKindName(fn->kind)));
      }
      if (out.filter) return Fail(Peek().pos, fmt::format("a second FILTER after {}()", fn->name));
      Take();
      Take();
      VERGE_TRY(ExpectKeyword(Keyword::kWhere, "WHERE after FILTER ("));
      Expr cond;
      VERGE_TRY(Expression(cond));
      out.filter = std::move(cond);
      VERGE_TRY(Expect(Tok::kRParen, "\")\" to close FILTER (WHERE ..."));
    } else if (AtKeyword(Keyword::kOver)) {
      if (fn->kind != FunctionKind::kAnalytic) {
        return Fail(Peek().pos, fmt::format("OVER (...) applies to analytic functions (lag, "
                                            "latest, acc_sum, ...); {} is {}",
                                            fn->name, FunctionKindName(fn->kind)));
      }
      if (!out.partition_by.empty() || out.when) {
        return Fail(Peek().pos, fmt::format("a second OVER after {}()", fn->name));
      }
      Take();
      VERGE_TRY(Expect(Tok::kLParen, "\"(\" after OVER"));
      if (AcceptKeyword(Keyword::kPartition)) {
        VERGE_TRY(ExpectKeyword(Keyword::kBy, "BY after PARTITION"));
        while (true) {
          Expr key;
          VERGE_TRY(Expression(key));
          out.partition_by.push_back(std::move(key));
          if (!Accept(Tok::kComma)) break;
        }
      }
      if (AcceptKeyword(Keyword::kWhen)) {
        Expr cond;
        VERGE_TRY(Expression(cond));
        out.when = std::move(cond);
      }
      if (out.partition_by.empty() && !out.when) {
        if (At(Tok::kRParen)) return Fail(Peek().pos, "OVER () needs PARTITION BY or WHEN");
        return Expected("PARTITION BY or WHEN in OVER (");
      }
      VERGE_TRY(Expect(Tok::kRParen, "\")\" to close OVER ("));
    } else {
      break;
    }
  }
  return Finish(out);
}

bool Parser::CheckConstantArgs(const Expr& call) {
  const std::string& f = call.name;
  const std::vector<Expr>& a = call.args;
  auto shown = [](const Expr& e) { return Clip(ToString(e)); };
  auto flag = [&](size_t i, std::string_view what) {
    if (i >= a.size() || IsBoolLiteral(a[i])) return true;
    return Fail(a[i].pos,
                fmt::format("{} of {} must be TRUE or FALSE, found {}", what, f, shown(a[i])));
  };
  if (f == "cast") {
    if (a[1].kind != ExprKind::kLiteral || !a[1].value.is_string() ||
        !IsCastType(a[1].value.string_value())) {
      return Fail(a[1].pos, fmt::format("the second argument of cast is the type in quotes: "
                                        "\"bigint\", \"float\", \"string\", \"boolean\", "
                                        "\"bytea\" or \"datetime\"; found {}",
                                        shown(a[1])));
    }
  } else if (f == "percentile" || f == "percentile_disc") {
    auto p = NumberLiteral(a[1]);
    if (!p || *p < 0 || *p > 1) {
      return Fail(a[1].pos, fmt::format("the percentile of {} must be a number from 0 to 1, "
                                        "found {}",
                                        f, shown(a[1])));
    }
  } else if (f == "lag") {
    if (a.size() >= 2) {
      auto offset = IntLiteral(a[1]);
      if (!offset || *offset < 1 || *offset > kMaxLagOffset) {
        return Fail(a[1].pos, fmt::format("the offset of lag must be a whole number from 1 to "
                                          "{}, found {}",
                                          kMaxLagOffset, shown(a[1])));
      }
    }
    return flag(3, "ignore_null (the 4th argument)");
  } else if (f == "changed_col" || f == "had_changed") {
    return flag(0, "ignore_null (the first argument)");
  } else if (f == "deduplicate") {
    return flag(1, "the second argument (return all rows?)");
  } else if (f == "last_value") {
    return flag(1, "ignore_null (the second argument)");
  } else if (f == "zscore") {
    auto window = IntLiteral(a[1]);
    if (!window || *window < 2 || *window > kMaxZscoreWindow) {
      return Fail(a[1].pos, fmt::format("the window of zscore (how many previous values) must be "
                                        "a whole number from 2 to {}, found {}",
                                        kMaxZscoreWindow, shown(a[1])));
    }
  } else if (f == "ewma_score") {
    auto alpha = NumberLiteral(a[1]);
    if (!alpha || *alpha <= 0 || *alpha > 1) {
      return Fail(a[1].pos, fmt::format("the smoothing factor of ewma_score must be a number "
                                        "above 0 and at most 1, found {}",
                                        shown(a[1])));
    }
  }
  return true;
}

bool Parser::Case(Expr& out) {
  out = Node(ExprKind::kCase, Op::kNone, Take().pos, {});
  if (!AtKeyword(Keyword::kWhen)) {
    Expr operand;
    VERGE_TRY(Expression(operand));
    out.operand = std::move(operand);
    if (!AtKeyword(Keyword::kWhen)) return Expected("WHEN after the CASE value");
  }
  while (AcceptKeyword(Keyword::kWhen)) {
    Expr cond;
    Expr result;
    VERGE_TRY(Expression(cond));
    VERGE_TRY(ExpectKeyword(Keyword::kThen, "THEN after the WHEN condition"));
    VERGE_TRY(Expression(result));
    out.args.push_back(std::move(cond));
    out.args.push_back(std::move(result));
  }
  if (AcceptKeyword(Keyword::kElse)) {
    Expr otherwise;
    VERGE_TRY(Expression(otherwise));
    out.otherwise = std::move(otherwise);
    VERGE_TRY(ExpectKeyword(Keyword::kEnd, "END to close the CASE"));
  } else {
    VERGE_TRY(ExpectKeyword(Keyword::kEnd, "WHEN, ELSE or END in the CASE"));
  }
  return Finish(out);
}

// --- checks of a parsed SELECT ------------------------------------------------------------

// Where the text of `e` starts (an operator node's own position is its operator's).
Pos StartPos(const Expr& e) {
  switch (e.kind) {
    case ExprKind::kBinary:
    case ExprKind::kLike:
    case ExprKind::kIn:
    case ExprKind::kInArray:
    case ExprKind::kBetween:
    case ExprKind::kField:
    case ExprKind::kIndex:
    case ExprKind::kSlice:
      return StartPos(e.args[0]);
    default:
      return e.pos;
  }
}

class Checker {
 public:
  explicit Checker(Select& s) : s_(s), windowed_(s.window.has_value()) {}

  bool Run() {
    for (Field& f : s_.fields) {
      if (f.expr.kind == ExprKind::kStar && !f.expr.stream.empty() && !IsStream(f.expr.stream)) {
        return Fail(f.expr.pos, fmt::format("{}.* names no stream of this rule, which reads {}",
                                            QuoteName(f.expr.stream), QuoteName(s_.stream)));
      }
    }
    ForEachClause([&](Expr& e, Clause) { Resolve(e); });
    if (!s_.group_by.empty() && !windowed_) {
      return Fail(StartPos(s_.group_by[0]),
                  "GROUP BY needs a window, as in GROUP BY device_id, "
                  "TUMBLINGWINDOW(ss, 10): a stream never ends, so groups "
                  "are emitted per window");
    }
    if (s_.having && !windowed_) {
      return Fail(StartPos(*s_.having),
                  "HAVING filters the groups of a window and needs one in GROUP "
                  "BY; to filter events, use WHERE");
    }
    bool ok = true;
    ForEachClause([&](Expr& e, Clause c) {
      if (ok) ok = Walk(e, Context{c, nullptr, false});
    });
    return ok;
  }

  ParseError TakeError() { return std::move(*error_); }

 private:
  enum class Clause { kSelect, kWhere, kGroupBy, kWindowFilter, kWindowTrigger, kHaving, kOrderBy };
  struct Context {
    Clause clause;
    const Expr* aggregate;  // the aggregate call we are inside of, if any
    bool per_event;         // inside FILTER (WHERE ...) or OVER (...) of a call
  };

  template <typename F>
  void ForEachClause(F&& f) {
    for (Field& field : s_.fields) f(field.expr, Clause::kSelect);
    if (s_.where) f(*s_.where, Clause::kWhere);
    for (Expr& e : s_.group_by) f(e, Clause::kGroupBy);
    if (s_.window && s_.window->filter) f(*s_.window->filter, Clause::kWindowFilter);
    if (s_.window && s_.window->trigger) f(*s_.window->trigger, Clause::kWindowTrigger);
    if (s_.having) f(*s_.having, Clause::kHaving);
    for (OrderItem& o : s_.order_by) f(o.expr, Clause::kOrderBy);
  }

  bool IsStream(std::string_view name) const {
    return name == s_.stream || (!s_.alias.empty() && name == s_.alias);
  }

  // stream.column stays when `stream` is the FROM stream; otherwise it is column->field.
  void Resolve(Expr& e) {
    if (e.kind == ExprKind::kColumn && !e.stream.empty() && !IsStream(e.stream)) {
      Expr column;
      column.kind = ExprKind::kColumn;
      column.pos = e.pos;
      column.name = std::move(e.stream);
      e.stream.clear();
      e.kind = ExprKind::kField;
      e.args.push_back(std::move(column));
      return;  // height stays 2, as the parser counted it
    }
    for (Expr& a : e.args) Resolve(a);
    for (Expr& p : e.partition_by) Resolve(p);
    if (e.operand) Resolve(*e.operand);
    if (e.otherwise) Resolve(*e.otherwise);
    if (e.when) Resolve(*e.when);
    if (e.filter) Resolve(*e.filter);
  }

  bool Fail(Pos pos, std::string message) {
    if (!error_) error_ = ParseError{pos.line, pos.column, std::move(message)};
    return false;
  }

  static std::string_view Where(Clause c) {
    switch (c) {
      case Clause::kWhere:
        return "in WHERE, which filters single events (to filter groups, use HAVING)";
      case Clause::kGroupBy:
        return "in GROUP BY";
      case Clause::kWindowFilter:
        return "in the FILTER of a window, which filters single events";
      case Clause::kWindowTrigger:
        return "in the OVER (WHEN ...) of a window, which looks at single events";
      default:
        return "";
    }
  }

  bool Walk(const Expr& e, Context ctx) {
    if (e.kind != ExprKind::kCall) {
      bool ok = true;
      ForEachChild(e, [&](const Expr& c) {
        if (ok) ok = Walk(c, ctx);
      });
      return ok;
    }
    const FunctionInfo& fn = *e.function;
    const bool group_place = ctx.clause == Clause::kSelect || ctx.clause == Clause::kHaving ||
                             ctx.clause == Clause::kOrderBy;
    switch (fn.kind) {
      case FunctionKind::kAggregate:
        if (ctx.aggregate != nullptr) {
          return Fail(e.pos, fmt::format("aggregate functions do not nest: {}() inside {}()",
                                         fn.name, ctx.aggregate->name));
        }
        if (ctx.per_event) {
          return Fail(e.pos, fmt::format("aggregate function {}() is not allowed in FILTER or "
                                         "OVER, which look at single events",
                                         fn.name));
        }
        if (!group_place) {
          return Fail(e.pos, fmt::format("aggregate function {}() is not allowed {}", fn.name,
                                         Where(ctx.clause)));
        }
        if (!windowed_) {
          return Fail(e.pos, fmt::format("{}() is an aggregate function and needs a window in "
                                         "GROUP BY, as in GROUP BY TUMBLINGWINDOW(ss, 10) (for "
                                         "running values without a window use acc_sum, acc_avg, "
                                         "acc_min, acc_max or acc_count)",
                                         fn.name));
        }
        break;
      case FunctionKind::kWindow:
        if (ctx.per_event) {
          return Fail(e.pos, fmt::format("{}() is not available in FILTER or OVER, which look at "
                                         "single events",
                                         fn.name));
        }
        if (!group_place) {
          return Fail(
              e.pos, fmt::format("{}() is available only in SELECT, HAVING and ORDER BY", fn.name));
        }
        if (!windowed_) {
          return Fail(e.pos, fmt::format("{}() needs a window in GROUP BY", fn.name));
        }
        break;
      case FunctionKind::kAnalytic:
        if (ctx.clause == Clause::kGroupBy) {
          return Fail(e.pos,
                      fmt::format("analytic function {}() is not allowed in GROUP BY", fn.name));
        }
        break;
      case FunctionKind::kScalar:
        break;
    }
    Context inner = ctx;
    if (fn.kind == FunctionKind::kAggregate) inner.aggregate = &e;
    for (const Expr& a : e.args) VERGE_TRY(Walk(a, inner));
    Context per_event = ctx;
    per_event.per_event = true;
    if (e.filter) VERGE_TRY(Walk(*e.filter, per_event));
    for (const Expr& p : e.partition_by) VERGE_TRY(Walk(p, per_event));
    if (e.when) VERGE_TRY(Walk(*e.when, per_event));
    return true;
  }

  Select& s_;
  const bool windowed_;
  std::optional<ParseError> error_;
};

template <typename T>
ParseResult<T> TooLong(std::string_view sql, const ParseOptions& options) {
  return ParseError{1, 1,
                    fmt::format("the statement is {} bytes long; at most {} are allowed",
                                sql.size(), options.max_bytes)};
}

ParseResult<Ast> ParseAs(std::string_view sql, const ParseOptions& options, Parser::Want want) {
  if (sql.size() > options.max_bytes) return TooLong<Ast>(sql, options);
  Parser p(sql, options);
  Ast ast;
  if (!p.Statement(ast, want)) return p.TakeError();
  if (auto* select = std::get_if<Select>(&ast)) {
    Checker checker(*select);
    if (!checker.Run()) return checker.TakeError();
  }
  return ast;
}

}  // namespace

std::string ParseError::ToString() const {
  return fmt::format("line {}, column {}: {}", line, column, message);
}

Status ParseError::ToStatus() const { return Status(Code::kInvalidArgument, ToString()); }

ParseResult<Ast> Parse(std::string_view sql, const ParseOptions& options) {
  return ParseAs(sql, options, Parser::Want::kAny);
}

ParseResult<Select> ParseSelect(std::string_view sql, const ParseOptions& options) {
  ParseResult<Ast> r = ParseAs(sql, options, Parser::Want::kSelect);
  if (!r.ok()) return r.error();
  return std::get<Select>(std::move(r).value());
}

ParseResult<CreateStream> ParseCreateStream(std::string_view sql, const ParseOptions& options) {
  ParseResult<Ast> r = ParseAs(sql, options, Parser::Want::kCreateStream);
  if (!r.ok()) return r.error();
  return std::get<CreateStream>(std::move(r).value());
}

ParseResult<Expr> ParseExpression(std::string_view sql, const ParseOptions& options) {
  if (sql.size() > options.max_bytes) return TooLong<Expr>(sql, options);
  Parser p(sql, options);
  Expr e;
  if (!p.StandaloneExpression(e)) return p.TakeError();
  return e;
}

}  // namespace verge::rules
