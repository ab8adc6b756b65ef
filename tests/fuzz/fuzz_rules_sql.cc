// The rule SQL parser and printer over arbitrary bytes, both as a statement and as a lone
// expression. Beyond "no crash, no hang, no leak":
//   - an error points inside the text (a line that exists, a column at most one past its end)
//     and says something;
//   - whatever parses prints to a canonical text that parses back to an equal tree, and prints
//     the same again: parse(print(parse(x))) == parse(x).
// Each input is tried as a statement, as an expression, and as the select list of a rule with
// a window.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "node/rules/parser.h"

namespace verge::rules {
namespace {

void Check(bool ok) {
  if (!ok) std::abort();
}

// Columns count UTF-8 lead bytes, as the lexer does.
void CheckErrorPosition(std::string_view text, const ParseError& e) {
  Check(!e.message.empty());
  Check(e.line >= 1 && e.column >= 1);
  int line = 1;
  size_t start = 0;
  while (line < e.line) {
    size_t nl = text.find('\n', start);
    Check(nl != std::string_view::npos);
    start = nl + 1;
    ++line;
  }
  size_t end = text.find('\n', start);
  std::string_view row =
      text.substr(start, end == std::string_view::npos ? text.npos : end - start);
  int columns = 0;
  for (char c : row) columns += (static_cast<unsigned char>(c) & 0xC0) != 0x80 ? 1 : 0;
  Check(e.column <= columns + 1);
}

void FuzzStatement(std::string_view text) {
  ParseResult<Ast> first = Parse(text);
  if (!first.ok()) {
    CheckErrorPosition(text, first.error());
    return;
  }
  const std::string printed = ToString(first.value());
  ParseResult<Ast> second = Parse(printed);
  Check(second.ok());
  Check(second.value() == first.value());
  Check(ToString(second.value()) == printed);
}

void FuzzExpression(std::string_view text) {
  ParseResult<Expr> first = ParseExpression(text);
  if (!first.ok()) {
    CheckErrorPosition(text, first.error());
    return;
  }
  const std::string printed = ToString(first.value());
  ParseResult<Expr> second = ParseExpression(printed);
  Check(second.ok());
  Check(second.value() == first.value());
  Check(ToString(second.value()) == printed);
}

}  // namespace
}  // namespace verge::rules

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  verge::rules::FuzzStatement(text);
  verge::rules::FuzzExpression(text);
  // Most inputs are not whole statements: also try them as the select list of a windowed rule,
  // where every kind of function is allowed, so that more of them reach the round trip.
  verge::rules::FuzzStatement("SELECT " + std::string(text) +
                              " FROM s GROUP BY d, TUMBLINGWINDOW(ss, 10)");
  return 0;
}
