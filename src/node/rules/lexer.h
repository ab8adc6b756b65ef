// Lexer of the rule SQL (the eKuiper dialect, see ast.h for the grammar). Turns the text of a
// statement into tokens, one at a time, each with the 1-based line and column where it starts.
//
//   names      letters, digits and _, not starting with a digit; or any text but a backtick in
//              backticks (`my col`, `select`, `温度`). Reserved words (Keyword below) need
//              backticks to be used as names. Names keep their case; keywords do not have one.
//   strings    "..." or '...'; escapes \" \' \\ \/ \n \r \t \b \f \uXXXX (UTF-16, surrogate
//              pairs combine); a doubled quote inside stands for itself ('it''s').
//   numbers    123 (an int64; 9223372036854775808 only right after a minus), 1.5, 1e-3, 2.5E+4.
//              A number must not run into a letter (12ab is an error), and out-of-range numbers
//              (1e999, 99999999999999999999) are errors rather than silently clipped.
//   operators  + - * / % & | ^ = != <> < <= > >= -> ( ) [ ] , . : ;
//   comments   /* ... */ (not nested).
//
// Columns count Unicode code points (UTF-8 lead bytes), not bytes, so that they match what an
// editor shows; a tab counts as one column. A lexical error is returned as a kError token in
// the position where it occurs, so the parser reports errors in the order of the text.
//
// Thread-safety: a Lexer is used by one thread; it reads `src`, which must outlive it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace verge::rules {

// A place in the statement text: 1-based line and column (0/0 for "nowhere").
struct Pos {
  int line = 0;
  int column = 0;
  bool operator==(const Pos&) const = default;
};

enum class Tok : uint8_t {
  kEnd,    // end of the input
  kError,  // a lexical error; Token::text is the message
  kIdent,  // a bare name or keyword
  kQuotedIdent,
  kInt,
  kFloat,
  kString,
  kLParen,
  kRParen,
  kLBracket,
  kRBracket,
  kComma,
  kDot,
  kColon,
  kSemicolon,
  kStar,
  kPlus,
  kMinus,
  kSlash,
  kPercent,
  kAmp,
  kPipe,
  kCaret,
  kArrow,
  kEq,
  kNe,  // != or <>
  kLt,
  kLe,
  kGt,
  kGe,
};

// eKuiper's reserved words, plus the literals TRUE, FALSE and NULL. Other words with a meaning in
// some place (CREATE, STREAM, WITH, FILTER, type names, option names, window names, units) are
// ordinary names everywhere else.
enum class Keyword : uint8_t {
  kNone,
  kAnd,
  kAs,
  kAsc,
  kBetween,
  kBy,
  kCase,
  kDesc,
  kElse,
  kEnd,
  kFalse,
  kFrom,
  kGroup,
  kHaving,
  kIn,
  kInner,
  kJoin,
  kLeft,
  kLike,
  kNot,
  kNull,
  kOn,
  kOr,
  kOrder,
  kOver,
  kPartition,
  kSelect,
  kThen,
  kTrue,
  kWhen,
  kWhere,
};

// The reserved word spelled `word` (any case), or kNone.
Keyword LookupKeyword(std::string_view word);
// Upper-case spelling of a keyword ("SELECT").
std::string_view KeywordName(Keyword k);

struct Token {
  Tok kind = Tok::kEnd;
  Keyword keyword = Keyword::kNone;  // for kIdent only
  Pos pos;
  std::string_view raw;  // the source text of the token; empty at the end
  // kIdent/kQuotedIdent: the name; kString: the decoded value; kError: the message.
  std::string text;
  uint64_t int_magnitude = 0;  // kInt: the value, up to 2^63
  double float_value = 0;      // kFloat
};

class Lexer {
 public:
  explicit Lexer(std::string_view src) : src_(src) {}

  // The next token. After kEnd or kError, returns the same token again.
  Token Next();

 private:
  char Peek(size_t k = 0) const { return i_ + k < src_.size() ? src_[i_ + k] : '\0'; }
  bool AtEnd() const { return i_ >= src_.size(); }
  void Advance();  // one byte, keeping line and column
  void Advance(size_t n) {
    for (size_t k = 0; k < n; ++k) Advance();
  }
  Token Make(Tok kind, size_t start, Pos pos) const;
  Token Error(Pos pos, std::string message);
  // Skips whitespace and comments; returns false (with *error set) on an unterminated comment.
  bool SkipSpace(Token* error);
  Token Number(size_t start, Pos pos);
  Token String(size_t start, Pos pos);
  Token QuotedIdent(size_t start, Pos pos);
  // Reads 4 hex digits of a \u escape; -1 if malformed.
  int32_t Hex4();

  std::string_view src_;
  size_t i_ = 0;
  int line_ = 1;
  int column_ = 1;
  bool done_ = false;
  Token last_;
};

}  // namespace verge::rules
