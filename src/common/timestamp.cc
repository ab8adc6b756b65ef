#include "common/timestamp.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <limits>

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

bool IsLeapYear(int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

int DaysInMonth(int64_t y, int m) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && IsLeapYear(y) ? 29 : kDays[m - 1];
}

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
int64_t DaysFromCivil(int64_t y, int m, int d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const int64_t yoe = y - era * 400;
  const int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

}  // namespace

Result<int64_t> ParseRfc3339(std::string_view s) {
  auto bad = [&](std::string_view why) -> Status {
    // At most 64 bytes of the text, cut on a UTF-8 character boundary: it is echoed to devices.
    size_t n = std::min<size_t>(s.size(), 64);
    while (n > 0 && n < s.size() && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
    return Error(Code::kInvalidArgument, "{:?} is not an RFC 3339 date-time: {}", s.substr(0, n),
                 why);
  };
  auto number = [&](size_t pos, size_t len, int& out) { return Digits(s, pos, len, out); };
  int year, month, day, hour, minute, second;
  if (!number(0, 4, year) || s.size() < 5 || s[4] != '-' || !number(5, 2, month) || s.size() < 8 ||
      s[7] != '-' || !number(8, 2, day)) {
    return bad("want a date like 2026-11-21");
  }
  if (s.size() < 11 || (s[10] != 'T' && s[10] != 't' && s[10] != ' ')) {
    return bad("want T and a time after the date");
  }
  if (!number(11, 2, hour) || s.size() < 14 || s[13] != ':' || !number(14, 2, minute) ||
      s.size() < 17 || s[16] != ':' || !number(17, 2, second)) {
    return bad("want a time like 10:00:00");
  }
  size_t p = 19;
  int64_t fraction_ns = 0;
  if (p < s.size() && s[p] == '.') {
    size_t start = ++p;
    int64_t place = 100'000'000;
    for (; p < s.size() && s[p] >= '0' && s[p] <= '9'; ++p) {
      fraction_ns += (s[p] - '0') * place;  // digits past nanoseconds add 0
      place /= 10;
    }
    if (p == start) return bad("want digits after the decimal point");
  }
  int offset_s = 0;
  if (p < s.size() && (s[p] == 'Z' || s[p] == 'z')) {
    ++p;
  } else if (p < s.size() && (s[p] == '+' || s[p] == '-')) {
    int oh, om;
    if (!number(p + 1, 2, oh) || p + 3 >= s.size() || s[p + 3] != ':' || !number(p + 4, 2, om)) {
      return bad("want a zone offset like +01:00");
    }
    if (oh > 23 || om > 59) return bad("zone offset out of range");
    offset_s = (oh * 60 + om) * 60 * (s[p] == '-' ? -1 : 1);
    p += 6;
  } else {
    return bad("want a zone: Z or an offset like +01:00");
  }
  if (p != s.size()) return bad("unexpected characters after the zone");
  if (month < 1 || month > 12 || day < 1 || day > DaysInMonth(year, month)) {
    return bad("no such date");
  }
  if (hour > 23 || minute > 59 || second > 60) return bad("no such time of day");
  int64_t seconds = DaysFromCivil(year, month, day) * 86400 + int64_t{hour} * 3600 +
                    int64_t{minute} * 60 + second - offset_s;
  constexpr int64_t kMaxSeconds = std::numeric_limits<int64_t>::max() / 1'000'000'000 - 1;
  if (seconds > kMaxSeconds || seconds < -kMaxSeconds) {
    return bad("out of range (years 1678..2262)");
  }
  return seconds * 1'000'000'000 + fraction_ns;
}

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
    auto ns = ParseRfc3339(text);
    if (!ns.ok()) return bad();
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
