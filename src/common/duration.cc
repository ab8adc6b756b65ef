#include "common/duration.h"

#include <cctype>
#include <cmath>
#include <limits>

namespace verge {

Result<Millis> ParseDuration(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return Error(Code::kInvalidArgument,
                 "invalid duration \"{}\": {} (write it like 500ms, 3s, 90s, 5m, 24h)", text, why);
  };
  if (text.empty()) return bad("empty");
  double total = 0;
  size_t i = 0;
  while (i < text.size()) {
    size_t start = i;
    bool dot = false;
    while (i < text.size() &&
           (std::isdigit(static_cast<unsigned char>(text[i])) || (text[i] == '.' && !dot))) {
      if (text[i] == '.') dot = true;
      ++i;
    }
    if (i == start) return bad("expected a number");
    double n = 0;
    try {
      n = std::stod(std::string(text.substr(start, i - start)));
    } catch (...) {
      return bad("expected a number");
    }
    size_t ustart = i;
    while (i < text.size() && std::isalpha(static_cast<unsigned char>(text[i]))) ++i;
    std::string_view unit = text.substr(ustart, i - ustart);
    double scale = 0;
    if (unit == "ms")
      scale = 1;
    else if (unit == "s")
      scale = 1e3;
    else if (unit == "m")
      scale = 60e3;
    else if (unit == "h")
      scale = 3600e3;
    else if (unit == "d")
      scale = 86400e3;
    else if (unit.empty())
      return bad("missing unit");
    else
      return bad("unknown unit");
    total += n * scale;
    if (!std::isfinite(total) || total > 1e15) return bad("too large");
  }
  return Millis(static_cast<int64_t>(std::llround(total)));
}

std::string FormatDuration(Millis d) {
  int64_t ms = d.count();
  if (ms == 0) return "0s";
  if (ms % 86400000 == 0) return std::to_string(ms / 86400000) + "d";
  if (ms % 3600000 == 0) return std::to_string(ms / 3600000) + "h";
  if (ms % 60000 == 0) return std::to_string(ms / 60000) + "m";
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

}  // namespace verge
