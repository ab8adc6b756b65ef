#include "node/rules/lexer.h"

#include <fmt/format.h>

#include <array>
#include <charconv>
#include <cmath>
#include <utility>

namespace verge::rules {
namespace {

constexpr std::array<std::pair<std::string_view, Keyword>, 30> kKeywords = {{
    {"AND", Keyword::kAnd},
    {"AS", Keyword::kAs},
    {"ASC", Keyword::kAsc},
    {"BETWEEN", Keyword::kBetween},
    {"BY", Keyword::kBy},
    {"CASE", Keyword::kCase},
    {"DESC", Keyword::kDesc},
    {"ELSE", Keyword::kElse},
    {"END", Keyword::kEnd},
    {"FALSE", Keyword::kFalse},
    {"FROM", Keyword::kFrom},
    {"GROUP", Keyword::kGroup},
    {"HAVING", Keyword::kHaving},
    {"IN", Keyword::kIn},
    {"INNER", Keyword::kInner},
    {"JOIN", Keyword::kJoin},
    {"LEFT", Keyword::kLeft},
    {"LIKE", Keyword::kLike},
    {"NOT", Keyword::kNot},
    {"NULL", Keyword::kNull},
    {"ON", Keyword::kOn},
    {"OR", Keyword::kOr},
    {"ORDER", Keyword::kOrder},
    {"OVER", Keyword::kOver},
    {"PARTITION", Keyword::kPartition},
    {"SELECT", Keyword::kSelect},
    {"THEN", Keyword::kThen},
    {"TRUE", Keyword::kTrue},
    {"WHEN", Keyword::kWhen},
    {"WHERE", Keyword::kWhere},
}};

bool IsLetter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsNameChar(char c) { return IsLetter(c) || IsDigit(c); }
char Upper(char c) { return c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c; }

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

void AppendUtf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// The character at the start of `s` for a message: itself if printable ASCII, its UTF-8
// sequence if it is one, otherwise \xNN.
std::string ShowChar(std::string_view s) {
  auto b = static_cast<unsigned char>(s[0]);
  if (b >= 0x20 && b < 0x7F) return fmt::format("'{}'", s[0]);
  size_t n = b >= 0xF0 && b < 0xF8 ? 4 : b >= 0xE0 ? 3 : b >= 0xC2 && b < 0xE0 ? 2 : 0;
  if (n > 0 && n <= s.size()) {
    bool ok = true;
    for (size_t k = 1; k < n; ++k) ok = ok && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80;
    if (ok) return fmt::format("'{}'", s.substr(0, n));
  }
  return fmt::format("\\x{:02X}", b);
}

}  // namespace

Keyword LookupKeyword(std::string_view word) {
  if (word.size() < 2 || word.size() > 9) return Keyword::kNone;
  std::array<char, 9> up{};
  for (size_t k = 0; k < word.size(); ++k) up[k] = Upper(word[k]);
  std::string_view u(up.data(), word.size());
  for (const auto& [name, kw] : kKeywords) {
    if (name == u) return kw;
  }
  return Keyword::kNone;
}

std::string_view KeywordName(Keyword k) {
  for (const auto& [name, kw] : kKeywords) {
    if (kw == k) return name;
  }
  return "";
}

void Lexer::Advance() {
  if (AtEnd()) return;
  char c = src_[i_++];
  if (c == '\n') {
    ++line_;
    column_ = 1;
  } else if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) {
    ++column_;
  }
}

Token Lexer::Make(Tok kind, size_t start, Pos pos) const {
  Token t;
  t.kind = kind;
  t.pos = pos;
  t.raw = src_.substr(start, i_ - start);
  return t;
}

Token Lexer::Error(Pos pos, std::string message) {
  Token t;
  t.kind = Tok::kError;
  t.pos = pos;
  t.raw = src_.substr(std::min(i_, src_.size()), 0);
  t.text = std::move(message);
  done_ = true;
  last_ = t;
  return t;
}

bool Lexer::SkipSpace(Token* error) {
  while (!AtEnd()) {
    char c = Peek();
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
      Advance();
    } else if (c == '/' && Peek(1) == '*') {
      Pos start{line_, column_};
      Advance(2);
      while (!AtEnd() && !(Peek() == '*' && Peek(1) == '/')) Advance();
      if (AtEnd()) {
        *error = Error(start, "unterminated comment: /* has no closing */");
        return false;
      }
      Advance(2);
    } else {
      break;
    }
  }
  return true;
}

int32_t Lexer::Hex4() {
  int32_t v = 0;
  for (int k = 0; k < 4; ++k) {
    int d = HexDigit(Peek());
    if (d < 0) return -1;
    v = v * 16 + d;
    Advance();
  }
  return v;
}

Token Lexer::Number(size_t start, Pos pos) {
  bool is_float = false;
  while (IsDigit(Peek())) Advance();
  if (Peek() == '.' && IsDigit(Peek(1))) {
    is_float = true;
    Advance();
    while (IsDigit(Peek())) Advance();
  }
  if (Peek() == 'e' || Peek() == 'E') {
    size_t k = 1;
    if (Peek(1) == '+' || Peek(1) == '-') k = 2;
    if (!IsDigit(Peek(k))) {
      Advance(k);
      return Error(pos, fmt::format("malformed number \"{}\": the exponent has no digits",
                                    src_.substr(start, i_ - start)));
    }
    is_float = true;
    Advance(k);
    while (IsDigit(Peek())) Advance();
  }
  if (IsLetter(Peek()) || Peek() == '.') {
    while (IsNameChar(Peek()) || Peek() == '.') Advance();
    return Error(pos, fmt::format("malformed number \"{}\"", src_.substr(start, i_ - start)));
  }
  Token t = Make(is_float ? Tok::kFloat : Tok::kInt, start, pos);
  const char* b = src_.data() + start;
  const char* e = src_.data() + i_;
  if (is_float) {
    auto [end, ec] = std::from_chars(b, e, t.float_value);
    if (ec != std::errc() || end != e || !std::isfinite(t.float_value)) {
      return Error(pos, fmt::format("number {} is out of the range of a float", t.raw));
    }
  } else {
    auto [end, ec] = std::from_chars(b, e, t.int_magnitude);
    if (ec != std::errc() || end != e || t.int_magnitude > (uint64_t{1} << 63)) {
      return Error(pos, fmt::format("integer {} does not fit in a bigint (at most "
                                    "9223372036854775807); write a float such as {}.0 instead",
                                    t.raw, t.raw));
    }
  }
  return t;
}

Token Lexer::String(size_t start, Pos pos) {
  const char quote = Peek();
  Advance();
  std::string value;
  while (true) {
    if (AtEnd()) {
      return Error(pos, fmt::format("unterminated string: the {} opened here is never closed",
                                    quote == '"' ? "double quote" : "single quote"));
    }
    char c = Peek();
    if (c == quote) {
      if (Peek(1) == quote) {  // a doubled quote stands for itself
        value += quote;
        Advance(2);
        continue;
      }
      Advance();
      break;
    }
    if (c != '\\') {
      value += c;
      Advance();
      continue;
    }
    Pos esc{line_, column_};
    Advance();
    char e = Peek();
    switch (e) {
      case '"':
      case '\'':
      case '\\':
      case '/':
        value += e;
        break;
      case 'n':
        value += '\n';
        break;
      case 'r':
        value += '\r';
        break;
      case 't':
        value += '\t';
        break;
      case 'b':
        value += '\b';
        break;
      case 'f':
        value += '\f';
        break;
      case 'u': {
        Advance();
        int32_t cp = Hex4();
        if (cp < 0) return Error(esc, "invalid \\u escape: want 4 hex digits, as in \\u00e9");
        if (cp >= 0xD800 && cp < 0xDC00) {  // high surrogate: a low one must follow
          int32_t lo = -1;
          if (Peek() == '\\' && Peek(1) == 'u') {
            Advance(2);
            lo = Hex4();
          }
          if (lo < 0xDC00 || lo > 0xDFFF) {
            return Error(esc,
                         "invalid \\u escape: a high surrogate must be followed by a "
                         "low one (\\uD83D\\uDE00)");
          }
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
          return Error(esc, "invalid \\u escape: a low surrogate without a high one before it");
        }
        AppendUtf8(value, static_cast<uint32_t>(cp));
        continue;  // Hex4 advanced past the digits
      }
      default:
        if (AtEnd()) continue;  // reported as unterminated
        {
          std::string shown = ShowChar(src_.substr(i_));
          if (shown.size() == 3 && shown[0] == '\'') shown = shown.substr(1, 1);
          return Error(esc, fmt::format("invalid escape \\{} in a string (valid are \\\" \\' "
                                        "\\\\ \\/ \\n \\r \\t \\b \\f \\uXXXX)",
                                        shown));
        }
    }
    Advance();
  }
  Token t = Make(Tok::kString, start, pos);
  t.text = std::move(value);
  return t;
}

Token Lexer::QuotedIdent(size_t start, Pos pos) {
  Advance();
  size_t begin = i_;
  while (!AtEnd() && Peek() != '`') Advance();
  if (AtEnd()) return Error(pos, "unterminated name: the backtick opened here is never closed");
  std::string_view name = src_.substr(begin, i_ - begin);
  Advance();
  if (name.empty()) return Error(pos, "empty name in backticks");
  Token t = Make(Tok::kQuotedIdent, start, pos);
  t.text = std::string(name);
  return t;
}

Token Lexer::Next() {
  if (done_) return last_;
  Token error;
  if (!SkipSpace(&error)) return error;
  const size_t start = i_;
  const Pos pos{line_, column_};
  if (AtEnd()) {
    Token t = Make(Tok::kEnd, start, pos);
    done_ = true;
    last_ = t;
    return t;
  }
  const char c = Peek();
  if (IsLetter(c)) {
    while (IsNameChar(Peek())) Advance();
    Token t = Make(Tok::kIdent, start, pos);
    t.text = std::string(t.raw);
    t.keyword = LookupKeyword(t.raw);
    return t;
  }
  if (IsDigit(c)) return Number(start, pos);
  if (c == '"' || c == '\'') return String(start, pos);
  if (c == '`') return QuotedIdent(start, pos);

  auto op = [&](Tok kind, size_t n) {
    Advance(n);
    return Make(kind, start, pos);
  };
  const char d = Peek(1);
  switch (c) {
    case '(':
      return op(Tok::kLParen, 1);
    case ')':
      return op(Tok::kRParen, 1);
    case '[':
      return op(Tok::kLBracket, 1);
    case ']':
      return op(Tok::kRBracket, 1);
    case ',':
      return op(Tok::kComma, 1);
    case '.':
      return op(Tok::kDot, 1);
    case ':':
      return op(Tok::kColon, 1);
    case ';':
      return op(Tok::kSemicolon, 1);
    case '*':
      return op(Tok::kStar, 1);
    case '+':
      return op(Tok::kPlus, 1);
    case '-':
      return d == '>' ? op(Tok::kArrow, 2) : op(Tok::kMinus, 1);
    case '/':
      return op(Tok::kSlash, 1);
    case '%':
      return op(Tok::kPercent, 1);
    case '^':
      return op(Tok::kCaret, 1);
    case '&':
      if (d == '&') return Error(pos, "&& is not an operator: use AND");
      return op(Tok::kAmp, 1);
    case '|':
      if (d == '|') return Error(pos, "|| is not an operator: use OR, or concat() for strings");
      return op(Tok::kPipe, 1);
    case '=':
      if (d == '=') return Error(pos, "== is not an operator: use = to compare");
      return op(Tok::kEq, 1);
    case '!':
      if (d == '=') return op(Tok::kNe, 2);
      return Error(pos, "unexpected character '!': use NOT, or != for \"not equal\"");
    case '<':
      if (d == '=') return op(Tok::kLe, 2);
      if (d == '>') return op(Tok::kNe, 2);
      return op(Tok::kLt, 1);
    case '>':
      if (d == '=') return op(Tok::kGe, 2);
      return op(Tok::kGt, 1);
    default:
      break;
  }
  if (static_cast<unsigned char>(c) >= 0x80) {
    return Error(pos, fmt::format("unexpected character {}: names with characters other than "
                                  "ASCII letters, digits and _ go in backticks (`...`)",
                                  ShowChar(src_.substr(i_))));
  }
  return Error(pos, fmt::format("unexpected character {}", ShowChar(src_.substr(i_))));
}

}  // namespace verge::rules
