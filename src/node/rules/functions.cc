#include "node/rules/functions.h"

#include <algorithm>
#include <array>
#include <string>
#include <utility>
#include <vector>

namespace verge::rules {
namespace {

using K = FunctionKind;
constexpr uint8_t kAny = kVariadic;

// Sorted by name (checked by a unit test and by the lookup's binary search).
constexpr FunctionInfo kFunctions[] = {
    {"abs", K::kScalar, 1, 1, kNoStar, "abs(x)"},
    {"acc_avg", K::kAnalytic, 1, 1, kNoStar, "acc_avg(x)"},
    {"acc_count", K::kAnalytic, 1, 1, kNoStar, "acc_count(x)"},
    {"acc_max", K::kAnalytic, 1, 1, kNoStar, "acc_max(x)"},
    {"acc_min", K::kAnalytic, 1, 1, kNoStar, "acc_min(x)"},
    {"acc_sum", K::kAnalytic, 1, 1, kNoStar, "acc_sum(x)"},
    {"acos", K::kScalar, 1, 1, kNoStar, "acos(x)"},
    {"asin", K::kScalar, 1, 1, kNoStar, "asin(x)"},
    {"atan", K::kScalar, 1, 1, kNoStar, "atan(x)"},
    {"atan2", K::kScalar, 2, 2, kNoStar, "atan2(y, x)"},
    {"avg", K::kAggregate, 1, 1, kNoStar, "avg(x)"},
    {"bitand", K::kScalar, 2, 2, kNoStar, "bitand(a, b)"},
    {"bitnot", K::kScalar, 1, 1, kNoStar, "bitnot(a)"},
    {"bitor", K::kScalar, 2, 2, kNoStar, "bitor(a, b)"},
    {"bitxor", K::kScalar, 2, 2, kNoStar, "bitxor(a, b)"},
    {"cast", K::kScalar, 2, 2, kNoStar, "cast(x, \"bigint|float|string|boolean|bytea|datetime\")"},
    {"ceil", K::kScalar, 1, 1, kNoStar, "ceil(x)"},
    {"changed_col", K::kAnalytic, 2, 2, kNoStar, "changed_col(ignore_null, x)"},
    {"coalesce", K::kScalar, 1, kAny, kNoStar, "coalesce(x, y, ...)"},
    {"collect", K::kAggregate, 1, 1, 0, "collect(x) or collect(*)"},
    {"concat", K::kScalar, 1, kAny, kNoStar, "concat(a, b, ...)"},
    {"cos", K::kScalar, 1, 1, kNoStar, "cos(x)"},
    {"cosh", K::kScalar, 1, 1, kNoStar, "cosh(x)"},
    {"count", K::kAggregate, 1, 1, 0, "count(x) or count(*)"},
    {"cur_date", K::kScalar, 0, 0, kNoStar, "cur_date()"},
    {"cur_time", K::kScalar, 0, 0, kNoStar, "cur_time()"},
    {"date_calc", K::kScalar, 2, 2, kNoStar, "date_calc(date, \"1h30m\")"},
    {"date_diff", K::kScalar, 2, 2, kNoStar, "date_diff(date1, date2)"},
    {"day_name", K::kScalar, 1, 1, kNoStar, "day_name(date)"},
    {"day_of_month", K::kScalar, 1, 1, kNoStar, "day_of_month(date)"},
    {"day_of_week", K::kScalar, 1, 1, kNoStar, "day_of_week(date)"},
    {"day_of_year", K::kScalar, 1, 1, kNoStar, "day_of_year(date)"},
    {"deduplicate", K::kAggregate, 2, 2, kNoStar, "deduplicate(x, all)"},
    {"endswith", K::kScalar, 2, 2, kNoStar, "endswith(s, suffix)"},
    {"event_time", K::kScalar, 0, 0, kNoStar, "event_time()"},
    {"ewma_score", K::kAnalytic, 2, 2, kNoStar, "ewma_score(x, alpha)"},
    {"exp", K::kScalar, 1, 1, kNoStar, "exp(x)"},
    {"floor", K::kScalar, 1, 1, kNoStar, "floor(x)"},
    {"format_time", K::kScalar, 2, 2, kNoStar, "format_time(time, \"YYYY-MM-dd HH:mm:ss\")"},
    {"from_unix_time", K::kScalar, 1, 1, kNoStar, "from_unix_time(seconds)"},
    {"had_changed", K::kAnalytic, 2, kAny, 1,
     "had_changed(ignore_null, x, ...) or "
     "had_changed(ignore_null, *)"},
    {"hour", K::kScalar, 1, 1, kNoStar, "hour(date)"},
    {"indexof", K::kScalar, 2, 2, kNoStar, "indexof(s, part)"},
    {"isnull", K::kScalar, 1, 1, kNoStar, "isnull(x)"},
    {"lag", K::kAnalytic, 1, 4, kNoStar, "lag(x [, offset [, default [, ignore_null]]])"},
    {"last_value", K::kAggregate, 1, 2, kNoStar, "last_value(x [, ignore_null])"},
    {"latest", K::kAnalytic, 1, 2, kNoStar, "latest(x [, default])"},
    {"length", K::kScalar, 1, 1, kNoStar, "length(s)"},
    {"ln", K::kScalar, 1, 1, kNoStar, "ln(x)"},
    {"log", K::kScalar, 1, 2, kNoStar, "log(x) or log(base, x)"},
    {"lower", K::kScalar, 1, 1, kNoStar, "lower(s)"},
    {"lpad", K::kScalar, 2, 2, kNoStar, "lpad(s, n)"},
    {"ltrim", K::kScalar, 1, 1, kNoStar, "ltrim(s)"},
    {"max", K::kAggregate, 1, 1, kNoStar, "max(x)"},
    {"median", K::kAggregate, 1, 1, kNoStar, "median(x)"},
    {"min", K::kAggregate, 1, 1, kNoStar, "min(x)"},
    {"minute", K::kScalar, 1, 1, kNoStar, "minute(date)"},
    {"mod", K::kScalar, 2, 2, kNoStar, "mod(a, b)"},
    {"month", K::kScalar, 1, 1, kNoStar, "month(date)"},
    {"newuuid", K::kScalar, 0, 0, kNoStar, "newuuid()"},
    {"now", K::kScalar, 0, 1, kNoStar, "now([fsp])"},
    {"numbytes", K::kScalar, 1, 1, kNoStar, "numbytes(s)"},
    {"percentile", K::kAggregate, 2, 2, kNoStar, "percentile(x, p)"},
    {"percentile_disc", K::kAggregate, 2, 2, kNoStar, "percentile_disc(x, p)"},
    {"power", K::kScalar, 2, 2, kNoStar, "power(x, y)"},
    {"rand", K::kScalar, 0, 0, kNoStar, "rand()"},
    {"regexp_matches", K::kScalar, 2, 2, kNoStar, "regexp_matches(s, regex)"},
    {"regexp_replace", K::kScalar, 3, 3, kNoStar, "regexp_replace(s, regex, replacement)"},
    {"regexp_substring", K::kScalar, 2, 2, kNoStar, "regexp_substring(s, regex)"},
    {"round", K::kScalar, 1, 1, kNoStar, "round(x)"},
    {"rpad", K::kScalar, 2, 2, kNoStar, "rpad(s, n)"},
    {"rtrim", K::kScalar, 1, 1, kNoStar, "rtrim(s)"},
    {"second", K::kScalar, 1, 1, kNoStar, "second(date)"},
    {"sign", K::kScalar, 1, 1, kNoStar, "sign(x)"},
    {"sin", K::kScalar, 1, 1, kNoStar, "sin(x)"},
    {"sinh", K::kScalar, 1, 1, kNoStar, "sinh(x)"},
    {"split_value", K::kScalar, 3, 3, kNoStar, "split_value(s, separator, index)"},
    {"sqrt", K::kScalar, 1, 1, kNoStar, "sqrt(x)"},
    {"startswith", K::kScalar, 2, 2, kNoStar, "startswith(s, prefix)"},
    {"stddev", K::kAggregate, 1, 1, kNoStar, "stddev(x)"},
    {"stddevs", K::kAggregate, 1, 1, kNoStar, "stddevs(x)"},
    {"substring", K::kScalar, 2, 3, kNoStar, "substring(s, start [, length])"},
    {"sum", K::kAggregate, 1, 1, kNoStar, "sum(x)"},
    {"tan", K::kScalar, 1, 1, kNoStar, "tan(x)"},
    {"tanh", K::kScalar, 1, 1, kNoStar, "tanh(x)"},
    {"trim", K::kScalar, 1, 1, kNoStar, "trim(s)"},
    {"tstamp", K::kScalar, 0, 0, kNoStar, "tstamp()"},
    {"upper", K::kScalar, 1, 1, kNoStar, "upper(s)"},
    {"var", K::kAggregate, 1, 1, kNoStar, "var(x)"},
    {"vars", K::kAggregate, 1, 1, kNoStar, "vars(x)"},
    {"window_end", K::kWindow, 0, 0, kNoStar, "window_end()"},
    {"window_start", K::kWindow, 0, 0, kNoStar, "window_start()"},
    {"zscore", K::kAnalytic, 2, 2, kNoStar, "zscore(x, n)"},
};

constexpr std::array<std::pair<std::string_view, WindowKind>, 5> kWindows = {{
    {"tumblingwindow", WindowKind::kTumbling},
    {"hoppingwindow", WindowKind::kHopping},
    {"slidingwindow", WindowKind::kSliding},
    {"sessionwindow", WindowKind::kSession},
    {"countwindow", WindowKind::kCount},
}};

constexpr std::string_view kCastTypes[] = {"bigint",  "float", "string",
                                           "boolean", "bytea", "datetime"};

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// Levenshtein distance, giving up (returning limit + 1) once it must exceed `limit`.
size_t EditDistance(std::string_view a, std::string_view b, size_t limit) {
  if (a.size() > b.size() + limit || b.size() > a.size() + limit) return limit + 1;
  std::vector<size_t> prev(b.size() + 1);
  std::vector<size_t> cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    size_t row_min = cur[0];
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
      row_min = std::min(row_min, cur[j]);
    }
    if (row_min > limit) return limit + 1;
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

}  // namespace

std::string_view FunctionKindName(FunctionKind kind) {
  switch (kind) {
    case FunctionKind::kScalar:
      return "scalar";
    case FunctionKind::kAggregate:
      return "aggregate";
    case FunctionKind::kAnalytic:
      return "analytic";
    case FunctionKind::kWindow:
      return "window";
  }
  return "unknown";
}

const FunctionInfo* FindFunction(std::string_view name) {
  if (name.size() > 32) return nullptr;
  const std::string lower = Lower(name);
  auto it =
      std::lower_bound(std::begin(kFunctions), std::end(kFunctions), lower,
                       [](const FunctionInfo& f, const std::string& n) { return f.name < n; });
  if (it == std::end(kFunctions) || it->name != lower) return nullptr;
  return &*it;
}

std::span<const FunctionInfo> Functions() { return kFunctions; }

std::string_view SuggestFunction(std::string_view name) {
  if (name.size() > 40) return {};
  const std::string lower = Lower(name);
  std::string_view best;
  size_t best_distance = 3;
  for (const FunctionInfo& f : kFunctions) {
    size_t d = EditDistance(lower, f.name, 2);
    if (d < best_distance) {
      best_distance = d;
      best = f.name;
    }
  }
  return best;
}

std::optional<WindowKind> FindWindowFunction(std::string_view name) {
  if (name.size() > 16) return std::nullopt;
  const std::string lower = Lower(name);
  for (const auto& [n, kind] : kWindows) {
    if (n == lower) return kind;
  }
  return std::nullopt;
}

bool IsCastType(std::string_view name) {
  if (name.size() > 16) return false;
  const std::string lower = Lower(name);
  return std::find(std::begin(kCastTypes), std::end(kCastTypes), lower) != std::end(kCastTypes);
}

}  // namespace verge::rules
