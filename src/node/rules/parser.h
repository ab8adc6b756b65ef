// Parser of the rule SQL: text → checked syntax tree (ast.h has the grammar). A hand-written
// recursive-descent parser over lexer.h's tokens, followed by the checks that need no data:
//   - every function exists (functions.h), with a valid number of arguments, `*` only where it
//     belongs, FILTER only on aggregates, OVER only on analytic functions, and the constant
//     arguments that must be constants in range (cast's type, percentile's p, lag's offset,
//     zscore's n, ewma_score's alpha, the ignore_null / all flags);
//   - windows only as an item of GROUP BY, at most one, with valid units and sizes (positive,
//     hop <= size, timeout <= max, at most 366 days or 1,000,000 events);
//   - aggregates only in SELECT, HAVING and ORDER BY of a rule with a window, never nested;
//     window_start()/window_end() likewise; no analytic function in GROUP BY;
//   - GROUP BY keys and HAVING only with a window;
//   - `x.*` names the FROM stream; aliases are unique;
//   - CREATE STREAM: known types, unique columns, known options given once with valid values,
//     DATASOURCE present, TIMESTAMP naming a column of a usable type when columns are declared.
// Whether the FROM stream exists, and what its columns are, is the rule manager's business.
//
// Errors: the first one found, as a ParseError with the 1-based line and column of the token at
// fault and a message the user can act on, e.g.
//   line 1, column 17: expected FROM after the select list, found "FORM"
// Never crashes or loops on any input: input size and nesting are bounded (ParseOptions), and
// recursion follows nesting.
//
// Thread-safety: the functions are thread-safe.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include "common/status.h"
#include "node/rules/ast.h"

namespace verge::rules {

struct ParseError {
  int line = 0;
  int column = 0;
  std::string message;

  // "line 1, column 27: expected FROM after the select list, found "FORM"".
  std::string ToString() const;
  // kInvalidArgument with ToString() as its message.
  Status ToStatus() const;
  bool operator==(const ParseError&) const = default;
};

template <typename T>
class [[nodiscard]] ParseResult {
 public:
  ParseResult(T value) : v_(std::move(value)) {}           // NOLINT(google-explicit-constructor)
  ParseResult(ParseError error) : v_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return std::holds_alternative<T>(v_); }
  // REQUIRES: ok().
  const T& value() const& { return std::get<T>(v_); }
  T& value() & { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  // REQUIRES: !ok().
  const ParseError& error() const { return std::get<ParseError>(v_); }

 private:
  std::variant<T, ParseError> v_;
};

struct ParseOptions {
  // Longest statement accepted, in bytes.
  size_t max_bytes = size_t{256} * 1024;
  // Deepest nesting accepted: of parentheses, function calls, CASE, prefix operators and
  // types, and the height of an expression tree (so a chain of 200 ORs is the limit too).
  int max_depth = 200;
};

// A CREATE STREAM or SELECT statement, optionally followed by ";".
ParseResult<Ast> Parse(std::string_view sql, const ParseOptions& options = {});
// The same, refusing the other kind of statement.
ParseResult<Select> ParseSelect(std::string_view sql, const ParseOptions& options = {});
ParseResult<CreateStream> ParseCreateStream(std::string_view sql, const ParseOptions& options = {});
// A lone expression, with the function checks but without those of a clause (an aggregate is
// accepted, `a.b` stays a qualified column). For tests and tools.
ParseResult<Expr> ParseExpression(std::string_view sql, const ParseOptions& options = {});

}  // namespace verge::rules
