#include "common/timestamp.h"

#include <fmt/format.h>

#include <chrono>
#include <optional>

#include "common/duration.h"

namespace verge {
namespace {

constexpr int64_t kNsPerMs = 1'000'000;
constexpr int64_t kNsPerSec = 1'000'000'000;

bool AllDigits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

// Parses digits at s[pos, pos+len) into out.
bool Digits(std::string_view s, size_t pos, size_t len, int& out) {
  if (pos + len > s.size()) return false;
  out = 0;
  for (size_t i = pos; i < pos + len; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    out = out * 10 + (s[i] - '0');
  }
  return true;
}

std::optional<int64_t> ParseRfc3339Ns(std::string_view s) {
  int y, mo, d, h, mi, sec;
  if (s.size() < 20 || !Digits(s, 0, 4, y) || s[4] != '-' || !Digits(s, 5, 2, mo) || s[7] != '-' ||
      !Digits(s, 8, 2, d) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
      !Digits(s, 11, 2, h) || s[13] != ':' || !Digits(s, 14, 2, mi) || s[16] != ':' ||
      !Digits(s, 17, 2, sec)) {
    return std::nullopt;
  }
  std::chrono::year_month_day ymd{std::chrono::year(y),
                                  std::chrono::month(static_cast<unsigned>(mo)),
                                  std::chrono::day(static_cast<unsigned>(d))};
  if (!ymd.ok() || h > 23 || mi > 59 || sec > 60) return std::nullopt;
  size_t pos = 19;
  int64_t frac = 0;
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    size_t start = pos;
    int64_t scale = 100'000'000;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
      frac += (s[pos] - '0') * scale;  // digits past nanoseconds are dropped (scale 0)
      scale /= 10;
      ++pos;
    }
    if (pos == start) return std::nullopt;
  }
  std::string_view zone = s.substr(pos);
  int64_t offset_s = 0;
  if (zone == "Z" || zone == "z") {
  } else if (zone.size() == 6 && (zone[0] == '+' || zone[0] == '-') && zone[3] == ':') {
    int oh, om;
    if (!Digits(zone, 1, 2, oh) || !Digits(zone, 4, 2, om) || oh > 23 || om > 59) {
      return std::nullopt;
    }
    offset_s = (zone[0] == '-' ? -1 : 1) * (int64_t{oh} * 3600 + om * 60);
  } else {
    return std::nullopt;
  }
  int64_t days = std::chrono::sys_days(ymd).time_since_epoch().count();
  int64_t secs = days * 86400 + int64_t{h} * 3600 + int64_t{mi} * 60 + sec - offset_s;
  if (secs < -9'000'000'000LL || secs > 9'000'000'000LL) return std::nullopt;
  return secs * kNsPerSec + frac;
}

}  // namespace

Result<int64_t> ParseTimeArg(std::string_view text, int64_t now_ns) {
  auto bad = [&] {
    return Error(Code::kInvalidArgument,
                 "invalid time {:?}: use RFC 3339 (2026-11-21T10:00:00Z), epoch milliseconds, "
                 "\"now\", or how long ago (1h, -30m)",
                 text.substr(0, 80));
  };
  if (text == "now") return now_ns;
  if (AllDigits(text)) {
    if (text.size() > 15) return bad();
    int64_t ms = std::stoll(std::string(text));
    if (ms > INT64_MAX / kNsPerMs) return bad();  // past the year 2262 in nanoseconds
    return ms * kNsPerMs;
  }
  if (text.size() >= 20 && (text[10] == 'T' || text[10] == 't' || text[10] == ' ')) {
    auto ns = ParseRfc3339Ns(text);
    if (!ns) return bad();
    return *ns;
  }
  std::string_view d = text;
  if (d.starts_with('-')) d.remove_prefix(1);
  auto ago = ParseDuration(d);
  if (!ago.ok()) return bad();
  return now_ns - std::min<int64_t>(ago->count(), INT64_MAX / kNsPerMs - 1) * kNsPerMs;
}

std::string FormatTimeNs(int64_t ns) {
  int64_t secs = ns / kNsPerSec;
  int64_t frac = ns % kNsPerSec;
  if (frac < 0) {
    frac += kNsPerSec;
    --secs;
  }
  int64_t days = secs / 86400;
  int64_t rem = secs % 86400;
  if (rem < 0) {
    rem += 86400;
    --days;
  }
  std::chrono::year_month_day ymd{std::chrono::sys_days(std::chrono::days(days))};
  std::string out =
      fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}", static_cast<int>(ymd.year()),
                  static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()), rem / 3600,
                  rem / 60 % 60, rem % 60);
  if (frac != 0) {
    std::string f = fmt::format("{:09}", frac);
    while (f.back() == '0') f.pop_back();
    out += "." + f;
  }
  return out + "Z";
}

}  // namespace verge
