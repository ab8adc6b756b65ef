#include "cloud/app_spec.h"

#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "cloud/api_json.h"
#include "common/config_schema.h"
#include "common/duration.h"
#include "common/labels.h"

namespace verge::cloud {
namespace {

using json = nlohmann::json;

// Nesting deeper than any valid spec, and a bound on YAML aliases expanding into huge trees.
constexpr int kMaxDepth = 16;
constexpr size_t kMaxYamlNodes = 200'000;

constexpr uint64_t kMaxCpuMillicores = 1'000'000;      // 1000 cores
constexpr uint64_t kMaxMemoryMb = uint64_t{16} << 20;  // 16 TiB
constexpr int64_t kMaxAccelerators = 1024;
constexpr size_t kMaxListEntries = 256;
constexpr size_t kMaxArgBytes = 4096;
constexpr size_t kMaxSourceBytes = size_t{512} * 1024;
constexpr size_t kMaxConfigBytes = size_t{512} * 1024;
constexpr size_t kMaxFileNameBytes = 255;
constexpr size_t kMaxPathBytes = 4096;
constexpr int64_t kMaxDurationMs = 365LL * 24 * 3600 * 1000;

constexpr std::string_view kCpuHint =
    "must be a CPU quantity: \"250m\" (millicores), 0.5 or \"0.5\" (cores), 2 (cores)";
constexpr std::string_view kMemoryHint =
    "must be a memory quantity: 64 (MB), \"64Mi\", \"64M\", \"1Gi\" or \"1G\"";

// What the user sent, quoted, never more than 80 bytes of it.
std::string Shown(std::string_view s) {
  return fmt::format("{:?}", s.size() > 80 ? s.substr(0, 80) : s);
}

std::string Join(std::string_view path, std::string_view key) {
  return fmt::format("{}.{}", path, key);
}

// YAML 1.2 core schema resolution of a plain (unquoted) scalar.
json ResolvePlainScalar(const std::string& s) {
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return nullptr;
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  size_t i = (s[0] == '-' || s[0] == '+') ? 1 : 0;
  size_t digits = 0, dot = 0, exp = 0;
  bool ok = i < s.size();
  for (size_t k = i; k < s.size() && ok; ++k) {
    char c = s[k];
    if (c >= '0' && c <= '9') {
      ++digits;
    } else if (c == '.' && dot == 0 && exp == 0) {
      ++dot;
    } else if ((c == 'e' || c == 'E') && exp == 0 && digits > 0) {
      ++exp;
      if (k + 1 < s.size() && (s[k + 1] == '-' || s[k + 1] == '+')) ++k;
      if (k + 1 >= s.size()) ok = false;
    } else {
      ok = false;
    }
  }
  if (!ok || digits == 0) {
    if (s == ".inf" || s == ".Inf" || s == ".INF" || s == "+.inf") {
      return std::numeric_limits<double>::infinity();
    }
    if (s == "-.inf" || s == "-.Inf" || s == "-.INF") {
      return -std::numeric_limits<double>::infinity();
    }
    if (s == ".nan" || s == ".NaN" || s == ".NAN") return std::numeric_limits<double>::quiet_NaN();
    return s;
  }
  if (dot == 0 && exp == 0) {
    errno = 0;
    char* end = nullptr;
    if (s[0] == '-') {
      long long v = std::strtoll(s.c_str(), &end, 10);
      if (errno == 0 && *end == '\0') return static_cast<int64_t>(v);
    } else {
      unsigned long long v = std::strtoull(s.c_str() + i, &end, 10);
      if (errno == 0 && *end == '\0') {
        if (v <= static_cast<unsigned long long>(INT64_MAX)) return static_cast<int64_t>(v);
        return static_cast<uint64_t>(v);
      }
    }
  }
  return std::strtod(s.c_str(), nullptr);
}

// The YAML tree as JSON, so that one checker serves both syntaxes.
class YamlToJson {
 public:
  std::optional<std::string> Convert(const YAML::Node& n, json& out, int depth) {
    if (++nodes_ > kMaxYamlNodes) return "too many values (YAML aliases expanding?)";
    if (depth > kMaxDepth) return fmt::format("nested deeper than {} levels", kMaxDepth);
    switch (n.Type()) {
      case YAML::NodeType::Undefined:
      case YAML::NodeType::Null:
        out = nullptr;
        return std::nullopt;
      case YAML::NodeType::Scalar:
        // "!" marks a quoted scalar, always a string; plain ones are typed by their text.
        out = n.Tag() == "?" ? ResolvePlainScalar(n.Scalar()) : json(n.Scalar());
        return std::nullopt;
      case YAML::NodeType::Sequence:
        out = json::array();
        for (const auto& item : n) {
          json v;
          if (auto e = Convert(item, v, depth + 1)) return e;
          out.push_back(std::move(v));
        }
        return std::nullopt;
      case YAML::NodeType::Map:
        out = json::object();
        for (const auto& kv : n) {
          if (!kv.first.IsScalar()) {
            return fmt::format("line {}: keys must be plain text", kv.first.Mark().line + 1);
          }
          const std::string& key = kv.first.Scalar();
          if (out.contains(key)) {
            return fmt::format("line {}: key {} appears twice", kv.first.Mark().line + 1,
                               Shown(key));
          }
          json v;
          if (auto e = Convert(kv.second, v, depth + 1)) return e;
          out[key] = std::move(v);
        }
        return std::nullopt;
    }
    return std::nullopt;
  }

 private:
  size_t nodes_ = 0;
};

Result<json> ParseText(std::string_view text) {
  if (text.size() > kMaxApiBodyBytes) {
    return Error(Code::kInvalidArgument, "invalid app spec: larger than {} bytes",
                 kMaxApiBodyBytes);
  }
  size_t first = text.find_first_not_of(" \t\r\n");
  std::string json_error;
  if (first != std::string_view::npos && text[first] == '{') {
    bool too_deep = false;
    json j = json::parse(
        text,
        [&](int depth, json::parse_event_t, json&) {
          if (depth > kMaxDepth) too_deep = true;
          return !too_deep;
        },
        false);
    if (too_deep) {
      return Error(Code::kInvalidArgument, "invalid app spec: nested deeper than {} levels",
                   kMaxDepth);
    }
    if (!j.is_discarded()) return j;
    // Not JSON; it may still be a YAML flow mapping ({type: native}).
    try {
      [[maybe_unused]] json again = json::parse(text);
    } catch (const json::exception& e) {
      json_error = e.what();
    }
  }
  try {
    YAML::Node root = YAML::Load(std::string(text));
    json out;
    if (auto e = YamlToJson().Convert(root, out, 0)) {
      return Error(Code::kInvalidArgument, "invalid app spec: {}", *e);
    }
    return out;
  } catch (const YAML::Exception& e) {
    if (!json_error.empty()) {
      return Error(Code::kInvalidArgument, "invalid app spec: not valid JSON: {}", json_error);
    }
    return Error(Code::kInvalidArgument, "invalid app spec: not valid YAML: line {}, column {}: {}",
                 e.mark.line + 1, e.mark.column + 1, e.msg);
  }
}

// Collects every problem of one spec, each as "path: message".
class Checker {
 public:
  void Add(std::string_view path, std::string_view what) {
    errors_.push_back(fmt::format("{}: {}", path, what));
  }
  const std::vector<std::string>& errors() const { return errors_; }

  void Keys(const json& obj, std::string_view path, std::initializer_list<std::string_view> known) {
    for (const auto& [k, v] : obj.items()) {
      bool ok = false;
      for (auto n : known) ok = ok || k == n;
      if (!ok) {
        Add(path, fmt::format("unknown field {} (known: {})", Shown(k), fmt::join(known, ", ")));
      }
    }
  }

  // The value at obj[key], nullptr when absent or null (both mean "not given").
  static const json* Get(const json& obj, std::string_view key) {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return nullptr;
    return &*it;
  }

  std::optional<std::string> Str(const json& v, const std::string& path) {
    if (!v.is_string()) {
      if (v.is_number() || v.is_boolean()) {
        Add(path, fmt::format("must be a string (quote it in YAML: \"{}\")", v.dump()));
      } else {
        Add(path, "must be a string");
      }
      return std::nullopt;
    }
    const auto& s = v.get_ref<const std::string&>();
    if (s.find('\0') != std::string::npos) {
      Add(path, "must not contain NUL characters");
      return std::nullopt;
    }
    return s;
  }
  std::optional<std::string> Str(const json& obj, std::string_view key, std::string_view path) {
    const json* v = Get(obj, key);
    if (!v) return std::nullopt;
    return Str(*v, Join(path, key));
  }

  // An integer in [min, max]; floats with a fraction are refused rather than truncated.
  std::optional<int64_t> Int(const json& v, const std::string& path, int64_t min, int64_t max) {
    int64_t out = 0;
    if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t{INT64_MAX}) {
      Add(path, fmt::format("must be between {} and {}", min, max));
      return std::nullopt;
    }
    if (v.is_number_integer()) {
      out = v.get<int64_t>();
    } else if (v.is_number_float() && std::isfinite(v.get<double>()) &&
               std::trunc(v.get<double>()) == v.get<double>() &&
               std::fabs(v.get<double>()) < 9e15) {
      out = static_cast<int64_t>(v.get<double>());
    } else {
      Add(path, "must be an integer");
      return std::nullopt;
    }
    if (out < min || out > max) {
      Add(path, fmt::format("must be between {} and {}", min, max));
      return std::nullopt;
    }
    return out;
  }
  std::optional<int64_t> Int(const json& obj, std::string_view key, std::string_view path,
                             int64_t min, int64_t max) {
    const json* v = Get(obj, key);
    if (!v) return std::nullopt;
    return Int(*v, Join(path, key), min, max);
  }

  std::optional<bool> Bool(const json& obj, std::string_view key, std::string_view path) {
    const json* v = Get(obj, key);
    if (!v) return std::nullopt;
    if (!v->is_boolean()) {
      Add(Join(path, key), "must be true or false");
      return std::nullopt;
    }
    return v->get<bool>();
  }

  std::optional<std::string> Enum(const json& obj, std::string_view key, std::string_view path,
                                  std::initializer_list<std::string_view> allowed) {
    auto s = Str(obj, key, path);
    if (!s) return std::nullopt;
    for (auto a : allowed) {
      if (*s == a) return s;
    }
    Add(Join(path, key),
        fmt::format("must be one of {} (not {})", fmt::join(allowed, ", "), Shown(*s)));
    return std::nullopt;
  }

  // obj[key] when it is a mapping; an error when it is something else.
  const json* Obj(const json& obj, std::string_view key, std::string_view path) {
    const json* v = Get(obj, key);
    if (!v) return nullptr;
    if (!v->is_object()) {
      Add(Join(path, key), "must be a mapping");
      return nullptr;
    }
    return v;
  }
  const json* List(const json& obj, std::string_view key, std::string_view path,
                   size_t max = kMaxListEntries) {
    const json* v = Get(obj, key);
    if (!v) return nullptr;
    if (!v->is_array()) {
      Add(Join(path, key), "must be a list");
      return nullptr;
    }
    if (v->size() > max) {
      Add(Join(path, key), fmt::format("must have at most {} entries", max));
      return nullptr;
    }
    return v;
  }

  // A list of strings (an argv): not empty, the first not empty.
  std::optional<std::vector<std::string>> Argv(const json& obj, std::string_view key,
                                               std::string_view path) {
    const json* v = List(obj, key, path);
    if (!v) return std::nullopt;
    std::string where = Join(path, key);
    if (v->empty()) {
      Add(where, "must not be empty (it starts with the program to run)");
      return std::nullopt;
    }
    std::vector<std::string> out;
    size_t before = errors_.size();
    for (size_t i = 0; i < v->size(); ++i) {
      std::string at = fmt::format("{}[{}]", where, i);
      auto s = Str((*v)[i], at);
      if (!s) continue;
      if (s->size() > kMaxArgBytes) Add(at, fmt::format("longer than {} bytes", kMaxArgBytes));
      out.push_back(std::move(*s));
    }
    if (errors_.size() != before) return std::nullopt;
    if (out[0].empty()) {
      Add(where + "[0]", "must name the program to run");
      return std::nullopt;
    }
    return out;
  }

  // A list of app names, no duplicates.
  std::optional<std::vector<std::string>> AppNames(const json& obj, std::string_view key,
                                                   std::string_view path) {
    const json* v = List(obj, key, path, 64);
    if (!v) return std::nullopt;
    std::string where = Join(path, key);
    std::vector<std::string> out;
    std::set<std::string> seen;
    for (size_t i = 0; i < v->size(); ++i) {
      std::string at = fmt::format("{}[{}]", where, i);
      auto s = Str((*v)[i], at);
      if (!s) continue;
      if (!IsValidAppName(*s)) {
        Add(at,
            fmt::format("{} is not an app name ([a-z0-9]([a-z0-9-]{{0,61}}[a-z0-9])?)", Shown(*s)));
      } else if (!seen.insert(*s).second) {
        Add(at, fmt::format("{} is listed twice", Shown(*s)));
      } else {
        out.push_back(std::move(*s));
      }
    }
    return out;
  }

  // A duration string ("10m"), longer than 0s.
  std::optional<int64_t> Dur(const json& obj, std::string_view key, std::string_view path) {
    auto s = Str(obj, key, path);
    if (!s) return std::nullopt;
    auto d = ParseDuration(*s);
    std::string where = Join(path, key);
    if (!d.ok()) {
      Add(where, d.status().message());
      return std::nullopt;
    }
    if (d->count() <= 0) {
      Add(where, "must be longer than 0s");
      return std::nullopt;
    }
    if (d->count() > kMaxDurationMs) {
      Add(where, "must be at most 365d");
      return std::nullopt;
    }
    return d->count();
  }

 private:
  std::vector<std::string> errors_;
};

// Unsigned decimal "12", "0.5", ".5", "1." split into mantissa and number of fraction digits.
struct Decimal {
  unsigned __int128 mantissa = 0;
  int fraction_digits = 0;
};
std::optional<Decimal> ParseDecimal(std::string_view s) {
  Decimal d;
  bool dot = false;
  size_t digits = 0;
  for (char c : s) {
    if (c == '.' && !dot) {
      dot = true;
    } else if (c >= '0' && c <= '9') {
      if (++digits > 18) return std::nullopt;
      d.mantissa = d.mantissa * 10 + static_cast<unsigned>(c - '0');
      if (dot) ++d.fraction_digits;
    } else {
      return std::nullopt;
    }
  }
  if (digits == 0) return std::nullopt;
  return d;
}

unsigned __int128 Pow10(int n) {
  unsigned __int128 p = 1;
  while (n-- > 0) p *= 10;
  return p;
}

std::optional<uint64_t> CpuMillicores(const json& v, std::string* error) {
  *error = std::string(kCpuHint);
  std::optional<Decimal> d;
  unsigned __int128 unit = 1000;  // cores
  if (v.is_number_integer()) {
    if (v.is_number_unsigned() || v.get<int64_t>() >= 0) {
      uint64_t n = v.get<uint64_t>();
      if (n > kMaxCpuMillicores / 1000) {
        *error = "must be at most 1000 cores";
        return std::nullopt;
      }
      return n * 1000;
    }
    *error = "must not be negative";
    return std::nullopt;
  }
  if (v.is_number_float()) {
    double x = v.get<double>();
    if (!std::isfinite(x)) return std::nullopt;
    if (x < 0) {
      *error = "must not be negative";
      return std::nullopt;
    }
    d = ParseDecimal(fmt::format("{}", x));
    if (!d) {  // exponent notation: far outside the allowed range either way
      *error = x > 1 ? "must be at most 1000 cores" : "must be at least 1m (0.001) when not 0";
      if (x == 0) return 0;
      return std::nullopt;
    }
  } else if (v.is_string()) {
    std::string_view s = v.get_ref<const std::string&>();
    if (!s.empty() && s.back() == 'm') {
      s.remove_suffix(1);
      unit = 1;
    }
    d = ParseDecimal(s);
    if (!d) return std::nullopt;
    if (unit == 1 && d->fraction_digits > 0) {
      *error = "millicores must be a whole number (\"250m\")";
      return std::nullopt;
    }
  } else {
    return std::nullopt;
  }
  unsigned __int128 scaled = d->mantissa * unit;
  unsigned __int128 div = Pow10(d->fraction_digits);
  if (scaled % div != 0) {
    *error = "must be a whole number of millicores (at most 3 decimals of a core)";
    return std::nullopt;
  }
  scaled /= div;
  if (scaled > kMaxCpuMillicores) {
    *error = "must be at most 1000 cores";
    return std::nullopt;
  }
  return static_cast<uint64_t>(scaled);
}

std::optional<uint64_t> MemoryMb(const json& v, std::string* error) {
  *error = std::string(kMemoryHint);
  constexpr unsigned __int128 kMb = 1 << 20;
  std::optional<Decimal> d;
  unsigned __int128 unit = kMb;  // bytes per unit
  if (v.is_number_integer()) {
    if (!v.is_number_unsigned() && v.get<int64_t>() < 0) {
      *error = "must not be negative";
      return std::nullopt;
    }
    uint64_t n = v.get<uint64_t>();
    if (n > kMaxMemoryMb) {
      *error = "must be at most 16Ti";
      return std::nullopt;
    }
    return n;
  }
  if (v.is_number_float()) {
    double x = v.get<double>();
    if (!std::isfinite(x) || x < 0 || std::trunc(x) != x) {
      *error = "a plain number is whole MB (64); write fractions with a unit (\"1.5Gi\")";
      return std::nullopt;
    }
    if (x > static_cast<double>(kMaxMemoryMb)) {
      *error = "must be at most 16Ti";
      return std::nullopt;
    }
    return static_cast<uint64_t>(x);
  }
  if (!v.is_string()) return std::nullopt;
  std::string_view s = v.get_ref<const std::string&>();
  size_t num_end = s.find_first_not_of("0123456789.");
  std::string_view suffix = num_end == std::string_view::npos ? "" : s.substr(num_end);
  static const std::pair<std::string_view, unsigned __int128> kUnits[] = {
      {"", kMb},
      {"Ki", 1ULL << 10},
      {"Mi", 1ULL << 20},
      {"Gi", 1ULL << 30},
      {"Ti", 1ULL << 40},
      {"k", 1'000},
      {"K", 1'000},
      {"M", 1'000'000},
      {"G", 1'000'000'000},
      {"T", 1'000'000'000'000},
  };
  bool known = false;
  for (const auto& [name, bytes] : kUnits) {
    if (suffix == name) {
      unit = bytes;
      known = true;
    }
  }
  if (!known) {
    if (suffix == "MB" || suffix == "GB" || suffix == "KB" || suffix == "TB") {
      *error = fmt::format("\"{}\" is ambiguous: write \"{}i\" (2^20 bytes) or \"{}\" (10^6 bytes)",
                           suffix, suffix.substr(0, 1), suffix.substr(0, 1));
    }
    return std::nullopt;
  }
  d = ParseDecimal(s.substr(0, num_end == std::string_view::npos ? s.size() : num_end));
  if (!d) return std::nullopt;
  // Rounded up: a replica never gets less than it asked for.
  unsigned __int128 bytes_num = d->mantissa * unit;
  unsigned __int128 div = Pow10(d->fraction_digits) * kMb;
  unsigned __int128 mb = (bytes_num + div - 1) / div;
  if (mb > kMaxMemoryMb) {
    *error = "must be at most 16Ti";
    return std::nullopt;
  }
  return static_cast<uint64_t>(mb);
}

bool IsLuaIdentifier(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  if (std::isdigit(static_cast<unsigned char>(s[0]))) return false;
  for (char c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
  }
  return true;
}

bool IsEnvName(std::string_view s) {
  if (s.empty() || s.size() > 128 || std::isdigit(static_cast<unsigned char>(s[0]))) return false;
  for (char c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
  }
  return true;
}

bool IsPortName(std::string_view s) {
  if (s.empty() || s.size() > 15) return false;
  for (char c : s) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  }
  return s.front() != '-' && s.back() != '-';
}

// "/a/b": absolute, no "." or ".." parts, no control characters.
std::optional<std::string> CheckAbsolutePath(std::string_view p) {
  if (p.empty() || p[0] != '/') return "must be an absolute path (starting with /)";
  if (p.size() > kMaxPathBytes) return fmt::format("longer than {} bytes", kMaxPathBytes);
  for (char c : p) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return "must not contain control characters";
    }
  }
  size_t start = 1;
  while (start <= p.size()) {
    size_t end = p.find('/', start);
    if (end == std::string_view::npos) end = p.size();
    std::string_view part = p.substr(start, end - start);
    if (part == "." || part == "..") return "must not contain \".\" or \"..\" parts";
    start = end + 1;
  }
  return std::nullopt;
}

// "dir/name.yaml": relative, each part a plain name.
std::optional<std::string> CheckFileName(std::string_view p) {
  if (p.empty()) return "must not be empty";
  if (p.size() > kMaxFileNameBytes) return fmt::format("longer than {} bytes", kMaxFileNameBytes);
  if (p[0] == '/') return "must be a relative path (no leading /)";
  for (char c : p) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f || c == '\\') {
      return "must not contain control characters or backslashes";
    }
  }
  size_t start = 0;
  while (start <= p.size()) {
    size_t end = p.find('/', start);
    if (end == std::string_view::npos) end = p.size();
    std::string_view part = p.substr(start, end - start);
    if (part.empty()) return "must not contain empty parts (\"//\" or a trailing /)";
    if (part == "." || part == "..") return "must not contain \".\" or \"..\" parts";
    start = end + 1;
  }
  return std::nullopt;
}

void ParseResources(Checker& c, const json& j, AppResources& r) {
  const std::string path = "spec.resources";
  c.Keys(j, path, {"cpu", "memory", "gpu", "npu"});
  std::string error;
  if (const json* v = Checker::Get(j, "cpu")) {
    if (auto m = CpuMillicores(*v, &error)) {
      r.cpu_millicores = *m;
    } else {
      c.Add(path + ".cpu", error);
    }
  }
  if (const json* v = Checker::Get(j, "memory")) {
    if (auto m = MemoryMb(*v, &error)) {
      r.memory_mb = *m;
    } else {
      c.Add(path + ".memory", error);
    }
  }
  if (auto n = c.Int(j, "gpu", path, 0, kMaxAccelerators)) r.gpu = static_cast<uint32_t>(*n);
  if (auto n = c.Int(j, "npu", path, 0, kMaxAccelerators)) r.npu = static_cast<uint32_t>(*n);
}

std::string FormatNumber(double v) { return fmt::format("{}", v); }

void ParseConstraint(Checker& c, const json& j, const std::string& path, AppConstraint& out) {
  if (!j.is_object()) {
    c.Add(path, "must be a mapping {key, op, value}");
    return;
  }
  c.Keys(j, path, {"key", "op", "value"});
  auto key = c.Enum(j, "key", path, {"cpu", "memory", "gpu", "npu", "region", "latency"});
  auto op = c.Enum(j, "op", path, {"gte", "lte", "eq"});
  if (!j.contains("key") || j["key"].is_null()) c.Add(path + ".key", "is required");
  if (!j.contains("op") || j["op"].is_null()) c.Add(path + ".op", "is required");
  const json* v = Checker::Get(j, "value");
  if (!v) c.Add(path + ".value", "is required");
  if (!key || !v) return;
  out.key = *key;
  if (op) out.op = *op;
  std::string where = path + ".value";
  std::string error;
  if (*key == "region") {
    if (op && *op != "eq") c.Add(path + ".op", "region takes only eq");
    auto s = c.Str(*v, where);
    if (!s) return;
    if (s->empty() || !ValidateLabel("region", *s).ok()) {
      c.Add(where, fmt::format("{} is not a region name", Shown(*s)));
      return;
    }
    out.value = *s;
    return;
  }
  std::optional<double> number;
  if (*key == "cpu") {
    if (auto m = CpuMillicores(*v, &error)) number = static_cast<double>(*m);
  } else if (*key == "memory") {
    if (auto m = MemoryMb(*v, &error)) number = static_cast<double>(*m);
  } else if (*key == "gpu" || *key == "npu") {
    if (auto n = c.Int(*v, where, 0, kMaxAccelerators)) number = static_cast<double>(*n);
    error.clear();
  } else {  // latency: milliseconds, or a duration string
    if (v->is_number() && std::isfinite(v->get<double>()) && v->get<double>() >= 0) {
      number = v->get<double>();
    } else if (v->is_string()) {
      auto d = ParseDuration(v->get_ref<const std::string&>());
      if (d.ok()) {
        number = static_cast<double>(d->count());
      } else {
        error = "must be milliseconds (50) or a duration (\"50ms\")";
      }
    } else {
      error = "must be milliseconds (50) or a duration (\"50ms\")";
    }
  }
  if (!number) {
    if (!error.empty()) c.Add(where, error);
    return;
  }
  out.number = *number;
  out.value = FormatNumber(*number);
}

void ParsePlacement(Checker& c, const json& j, AppPlacement& p) {
  const std::string path = "spec.placement";
  c.Keys(
      j, path,
      {"nodeSelector", "affinity", "antiAffinity", "constraints", "spreadAcross", "targetRegion"});
  if (const json* sel = c.Obj(j, "nodeSelector", path)) {
    for (const auto& [k, v] : sel->items()) {
      std::string at = fmt::format("{}.nodeSelector.{}", path, k);
      auto s = c.Str(v, at);
      if (!s) continue;
      if (Status st = ValidateLabel(k, *s); !st.ok()) {
        c.Add(path + ".nodeSelector", st.message());
        continue;
      }
      p.node_selector[k] = *s;
    }
  }
  if (auto a = c.AppNames(j, "affinity", path)) p.affinity = std::move(*a);
  if (auto a = c.AppNames(j, "antiAffinity", path)) p.anti_affinity = std::move(*a);
  for (const auto& app : p.affinity) {
    for (const auto& anti : p.anti_affinity) {
      if (app == anti) {
        c.Add(path, fmt::format("app {} is in both affinity and antiAffinity", Shown(app)));
      }
    }
  }
  if (const json* list = c.List(j, "constraints", path, 32)) {
    for (size_t i = 0; i < list->size(); ++i) {
      AppConstraint con;
      ParseConstraint(c, (*list)[i], fmt::format("{}.constraints[{}]", path, i), con);
      p.constraints.push_back(std::move(con));
    }
  }
  if (auto s = c.Enum(j, "spreadAcross", path, {"region", "zone"})) p.spread_across = *s;
  if (auto s = c.Str(j, "targetRegion", path)) {
    if (s->empty() || !ValidateLabel("region", *s).ok()) {
      c.Add(path + ".targetRegion", fmt::format("{} is not a region name", Shown(*s)));
    } else {
      p.target_region = *s;
    }
  }
}

void ParseHealthCheck(Checker& c, const json& j, AppHealthCheck& h) {
  const std::string path = "spec.healthCheck";
  c.Keys(j, path,
         {"exec", "http", "tcp", "periodSeconds", "timeoutSeconds", "initialDelaySeconds",
          "failureThreshold"});
  std::vector<std::string> kinds;
  for (const char* k : {"exec", "http", "tcp"}) {
    if (Checker::Get(j, k)) kinds.emplace_back(k);
  }
  if (kinds.size() != 1) {
    c.Add(path, kinds.empty() ? std::string("needs one of exec, http or tcp")
                              : fmt::format("has {}: give exactly one of exec, http or tcp",
                                            fmt::join(kinds, ", ")));
  }
  if (const json* e = c.Obj(j, "exec", path)) {
    h.type = "exec";
    c.Keys(*e, path + ".exec", {"command"});
    if (auto argv = c.Argv(*e, "command", path + ".exec")) {
      h.command = std::move(*argv);
    } else if (!Checker::Get(*e, "command")) {
      c.Add(path + ".exec.command", "is required");
    }
  }
  if (const json* e = c.Obj(j, "http", path)) {
    h.type = "http";
    std::string at = path + ".http";
    c.Keys(*e, at, {"path", "port"});
    if (auto p = c.Str(*e, "path", at)) {
      if (p->empty() || (*p)[0] != '/' || p->size() > 2048 ||
          p->find_first_of(" \t\r\n") != std::string::npos) {
        c.Add(at + ".path", "must start with / and have no spaces");
      } else {
        h.path = *p;
      }
    }
    if (auto p = c.Int(*e, "port", at, 1, 65535)) {
      h.port = static_cast<uint32_t>(*p);
    } else if (!Checker::Get(*e, "port")) {
      c.Add(at + ".port", "is required");
    }
  }
  if (const json* e = c.Obj(j, "tcp", path)) {
    h.type = "tcp";
    std::string at = path + ".tcp";
    c.Keys(*e, at, {"port"});
    if (auto p = c.Int(*e, "port", at, 1, 65535)) {
      h.port = static_cast<uint32_t>(*p);
    } else if (!Checker::Get(*e, "port")) {
      c.Add(at + ".port", "is required");
    }
  }
  if (auto v = c.Int(j, "periodSeconds", path, 1, 86400)) h.period_ms = *v * 1000;
  if (auto v = c.Int(j, "timeoutSeconds", path, 1, 3600)) h.timeout_ms = *v * 1000;
  if (auto v = c.Int(j, "initialDelaySeconds", path, 0, 86400)) h.initial_delay_ms = *v * 1000;
  if (auto v = c.Int(j, "failureThreshold", path, 1, 1000)) {
    h.failure_threshold = static_cast<uint32_t>(*v);
  }
}

void ParsePorts(Checker& c, const json& list, std::vector<AppPort>& out) {
  std::set<std::pair<uint32_t, std::string>> seen;
  std::set<std::string> names;
  for (size_t i = 0; i < list.size(); ++i) {
    std::string path = fmt::format("spec.ports[{}]", i);
    const json& j = list[i];
    if (!j.is_object()) {
      c.Add(path, "must be a mapping {name, port, protocol}");
      continue;
    }
    c.Keys(j, path, {"name", "port", "protocol"});
    AppPort p;
    if (auto n = c.Str(j, "name", path)) {
      if (!IsPortName(*n)) {
        c.Add(path + ".name", fmt::format("{} must be 1-15 characters of [a-z0-9-]", Shown(*n)));
      } else if (!names.insert(*n).second) {
        c.Add(path + ".name", fmt::format("{} is listed twice", Shown(*n)));
      } else {
        p.name = *n;
      }
    }
    auto port = c.Int(j, "port", path, 1, 65535);
    if (!port && !Checker::Get(j, "port")) c.Add(path + ".port", "is required");
    if (auto proto = c.Enum(j, "protocol", path, {"tcp", "udp"})) p.protocol = *proto;
    if (!port) continue;
    p.port = static_cast<uint32_t>(*port);
    if (!seen.emplace(p.port, p.protocol).second) {
      c.Add(path + ".port", fmt::format("{}/{} is listed twice", p.port, p.protocol));
      continue;
    }
    out.push_back(std::move(p));
  }
}

void ParseVolumes(Checker& c, const json& list, const std::string& config_mount,
                  std::vector<AppVolume>& out) {
  std::set<std::string> names, mounts;
  for (size_t i = 0; i < list.size(); ++i) {
    std::string path = fmt::format("spec.volumes[{}]", i);
    const json& j = list[i];
    if (!j.is_object()) {
      c.Add(path, "must be a mapping {name, mountPath, hostPath, readOnly}");
      continue;
    }
    c.Keys(j, path, {"name", "mountPath", "hostPath", "readOnly"});
    AppVolume v;
    if (auto n = c.Str(j, "name", path)) {
      if (!IsValidAppName(*n)) {
        c.Add(path + ".name", fmt::format("{} must be 1-63 characters of [a-z0-9-]", Shown(*n)));
      } else if (!names.insert(*n).second) {
        c.Add(path + ".name", fmt::format("{} is listed twice", Shown(*n)));
      } else {
        v.name = *n;
      }
    } else if (!Checker::Get(j, "name")) {
      c.Add(path + ".name", "is required");
    }
    if (auto m = c.Str(j, "mountPath", path)) {
      if (auto e = CheckAbsolutePath(*m)) {
        c.Add(path + ".mountPath", *e);
      } else if (!mounts.insert(*m).second) {
        c.Add(path + ".mountPath", fmt::format("{} is mounted twice", Shown(*m)));
      } else if (*m == config_mount) {
        c.Add(path + ".mountPath", fmt::format("{} is where config is mounted", Shown(*m)));
      } else {
        v.mount_path = *m;
      }
    } else if (!Checker::Get(j, "mountPath")) {
      c.Add(path + ".mountPath", "is required");
    }
    if (auto h = c.Str(j, "hostPath", path)) {
      if (auto e = CheckAbsolutePath(*h)) {
        c.Add(path + ".hostPath", *e);
      } else {
        v.host_path = *h;
      }
    }
    if (auto b = c.Bool(j, "readOnly", path)) v.read_only = *b;
    out.push_back(std::move(v));
  }
}

void ParseSpecObject(Checker& c, const json& j, AppSpec& s) {
  const std::string path = "spec";
  c.Keys(j, path,
         {"type", "version", "command", "artifact", "image", "source", "handler", "limits",
          "resources", "replicas", "placement", "env", "config", "ports", "volumes", "network",
          "healthCheck", "rollout", "rescheduleAfter"});
  std::optional<AppType> type;
  if (auto t = c.Enum(j, "type", path, {"native", "container", "function"})) {
    type = *t == "native"      ? AppType::kNative
           : *t == "container" ? AppType::kContainer
                               : AppType::kFunction;
    s.type = *type;
  } else if (!Checker::Get(j, "type")) {
    c.Add("spec.type", "is required (native, container or function)");
  }
  if (auto v = c.Str(j, "version", path)) {
    bool ok = v->size() <= 64;
    for (char ch : *v) ok = ok && ch > 0x20 && ch < 0x7f;
    if (!ok) {
      c.Add("spec.version", "must be at most 64 printable characters without spaces");
    } else {
      s.version = *v;
    }
  }
  if (auto argv = c.Argv(j, "command", path)) s.command = std::move(*argv);
  for (const char* key : {"artifact", "image"}) {
    auto ref = c.Str(j, key, path);
    if (!ref) continue;
    if (!ParseArtifactRef(*ref)) {
      c.Add(Join(path, key),
            fmt::format("{} must be \"sha256:\" and 64 lowercase hex digits (an uploaded {})",
                        Shown(*ref), std::string_view(key) == "image" ? "image" : "artifact"));
    } else {
      (std::string_view(key) == "image" ? s.image : s.artifact) = *ref;
    }
  }
  if (auto src = c.Str(j, "source", path)) {
    if (src->empty() || src->size() > kMaxSourceBytes) {
      c.Add("spec.source", fmt::format("must be 1 to {} bytes of Lua", kMaxSourceBytes));
    } else {
      s.source = *src;
    }
  }
  if (auto h = c.Str(j, "handler", path)) {
    if (!IsLuaIdentifier(*h)) {
      c.Add("spec.handler", fmt::format("{} is not a Lua function name", Shown(*h)));
    } else {
      s.handler = *h;
    }
  }
  if (const json* lim = c.Obj(j, "limits", path)) {
    c.Keys(*lim, "spec.limits", {"instructions", "memoryMB"});
    if (auto v = c.Int(*lim, "instructions", "spec.limits", 1000, 1'000'000'000'000)) {
      s.max_instructions = static_cast<uint64_t>(*v);
    }
    if (auto v = c.Int(*lim, "memoryMB", "spec.limits", 1, 4096)) {
      s.function_memory_mb = static_cast<uint64_t>(*v);
    }
  }
  if (const json* r = c.Obj(j, "resources", path)) ParseResources(c, *r, s.resources);
  if (auto v = c.Int(j, "replicas", path, 0, kMaxAppReplicas)) {
    s.replicas = static_cast<uint32_t>(*v);
  }
  if (const json* p = c.Obj(j, "placement", path)) ParsePlacement(c, *p, s.placement);
  if (const json* env = c.Obj(j, "env", path)) {
    if (env->size() > kMaxListEntries) {
      c.Add("spec.env", fmt::format("must have at most {} variables", kMaxListEntries));
    } else {
      for (const auto& [k, v] : env->items()) {
        if (!IsEnvName(k)) {
          c.Add("spec.env",
                fmt::format("{} is not a variable name ([A-Za-z_][A-Za-z0-9_]*, at most 128)",
                            Shown(k)));
          continue;
        }
        if (auto val = c.Str(v, "spec.env." + k)) s.env[k] = *val;
      }
    }
  }
  if (const json* cfg = c.Obj(j, "config", path)) {
    c.Keys(*cfg, "spec.config", {"mountPath", "files"});
    if (auto m = c.Str(*cfg, "mountPath", "spec.config")) {
      if (auto e = CheckAbsolutePath(*m)) {
        c.Add("spec.config.mountPath", *e);
      } else {
        s.config_mount = *m;
      }
    }
    if (const json* files = c.Obj(*cfg, "files", "spec.config")) {
      size_t total = 0;
      if (files->size() > 64) c.Add("spec.config.files", "must have at most 64 files");
      for (const auto& [name, content] : files->items()) {
        std::string at = "spec.config.files." + name;
        if (auto e = CheckFileName(name)) {
          c.Add("spec.config.files", fmt::format("{}: {}", Shown(name), *e));
          continue;
        }
        if (!content.is_string()) {
          c.Add(at, "must be a string (the file's content)");
          continue;
        }
        total += content.get_ref<const std::string&>().size();
        s.config_files[name] = content.get<std::string>();
      }
      if (total > kMaxConfigBytes) {
        c.Add("spec.config.files", fmt::format("more than {} bytes in all", kMaxConfigBytes));
      }
    }
  }
  if (const json* ports = c.List(j, "ports", path, 64)) ParsePorts(c, *ports, s.ports);
  if (const json* vols = c.List(j, "volumes", path, 64)) {
    ParseVolumes(c, *vols, s.config_mount, s.volumes);
  }
  if (auto n = c.Enum(j, "network", path, {"host", "isolated"})) {
    s.isolated_network = *n == "isolated";
  }
  if (const json* h = c.Obj(j, "healthCheck", path)) ParseHealthCheck(c, *h, s.health);
  if (const json* r = c.Obj(j, "rollout", path)) {
    c.Keys(*r, "spec.rollout", {"maxUnavailable", "progressDeadlineSeconds"});
    if (auto v = c.Int(*r, "maxUnavailable", "spec.rollout", 1, kMaxAppReplicas)) {
      s.max_unavailable = static_cast<uint32_t>(*v);
    }
    if (auto v = c.Int(*r, "progressDeadlineSeconds", "spec.rollout", 1, 86400)) {
      s.progress_deadline_ms = *v * 1000;
    }
  }
  if (auto d = c.Dur(j, "rescheduleAfter", path)) s.reschedule_after_ms = *d;

  if (!type) return;
  auto present = [&](const char* key) { return Checker::Get(j, key) != nullptr; };
  auto only_for = [&](const char* key, std::string_view types) {
    if (present(key)) c.Add(Join(path, key), fmt::format("only for type {}", types));
  };
  switch (*type) {
    case AppType::kNative:
      if (!present("command") && !present("artifact")) {
        c.Add(path, "a native app needs command or artifact");
      }
      only_for("image", "container");
      break;
    case AppType::kContainer:
      if (!present("image")) c.Add(path + ".image", "is required for a container");
      only_for("artifact", "native or function (a container runs its image)");
      break;
    case AppType::kFunction:
      if (!present("artifact") && !present("source")) {
        c.Add(path, "a function needs artifact or source");
      } else if (present("artifact") && present("source")) {
        c.Add(path, "a function takes artifact or source, not both");
      }
      for (const char* key : {"command", "image", "volumes", "healthCheck"}) {
        if (present(key)) {
          c.Add(Join(path, key), "not for type function (it runs per event in a Lua sandbox)");
        }
      }
      break;
  }
  if (*type != AppType::kFunction) {
    for (const char* key : {"source", "handler", "limits"}) only_for(key, "function");
  }
}

std::string CpuText(uint64_t millicores) { return fmt::format("{}m", millicores); }

}  // namespace

std::string_view AppTypeName(AppType t) {
  switch (t) {
    case AppType::kNative:
      return "native";
    case AppType::kContainer:
      return "container";
    case AppType::kFunction:
      return "function";
  }
  return "native";
}

bool IsValidAppName(std::string_view name) {
  if (name.empty() || name.size() > 63) return false;
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  }
  return name.front() != '-' && name.back() != '-';
}

std::optional<std::string> ParseArtifactRef(std::string_view ref) {
  constexpr std::string_view kPrefix = "sha256:";
  if (ref.size() != kPrefix.size() + 64 || ref.substr(0, kPrefix.size()) != kPrefix) {
    return std::nullopt;
  }
  std::string_view hex = ref.substr(kPrefix.size());
  for (char c : hex) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return std::nullopt;
  }
  return std::string(hex);
}

Result<AppSpec> ParseAppSpec(std::string_view spec_yaml_or_json) {
  auto parsed = ParseText(spec_yaml_or_json);
  if (!parsed.ok()) return parsed.status();
  const json& j = parsed.value();
  if (j.is_null()) return Error(Code::kInvalidArgument, "invalid app spec: spec: is required");
  if (!j.is_object()) {
    return Error(Code::kInvalidArgument, "invalid app spec: spec: must be a mapping");
  }
  Checker c;
  AppSpec spec;
  ParseSpecObject(c, j, spec);
  if (!c.errors().empty()) return Status(ValidationResult("invalid app spec", c.errors()));
  return spec;
}

std::string AppSpecToJson(const AppSpec& s) {
  json j = json::object();
  j["type"] = AppTypeName(s.type);
  if (!s.version.empty()) j["version"] = s.version;
  if (!s.command.empty()) j["command"] = s.command;
  if (!s.artifact.empty()) j["artifact"] = s.artifact;
  if (!s.image.empty()) j["image"] = s.image;
  if (s.type == AppType::kFunction) {
    if (!s.source.empty()) j["source"] = s.source;
    j["handler"] = s.handler;
    j["limits"] = {{"instructions", s.max_instructions}, {"memoryMB", s.function_memory_mb}};
  }
  j["resources"] = {{"cpu", CpuText(s.resources.cpu_millicores)},
                    {"memory", s.resources.memory_mb},
                    {"gpu", s.resources.gpu},
                    {"npu", s.resources.npu}};
  j["replicas"] = s.replicas;
  json placement = json::object();
  const AppPlacement& p = s.placement;
  if (!p.node_selector.empty()) placement["nodeSelector"] = p.node_selector;
  if (!p.affinity.empty()) placement["affinity"] = p.affinity;
  if (!p.anti_affinity.empty()) placement["antiAffinity"] = p.anti_affinity;
  if (!p.constraints.empty()) {
    json list = json::array();
    for (const auto& con : p.constraints) {
      json value;
      if (con.key == "region") {
        value = con.value;
      } else if (con.key == "cpu") {
        value = CpuText(static_cast<uint64_t>(con.number));
      } else if (con.key == "latency") {
        value = con.number;
      } else {
        value = static_cast<uint64_t>(con.number);
      }
      list.push_back({{"key", con.key}, {"op", con.op}, {"value", std::move(value)}});
    }
    placement["constraints"] = std::move(list);
  }
  if (!p.spread_across.empty()) placement["spreadAcross"] = p.spread_across;
  if (!p.target_region.empty()) placement["targetRegion"] = p.target_region;
  if (!placement.empty()) j["placement"] = std::move(placement);
  if (!s.env.empty()) j["env"] = s.env;
  if (!s.config_files.empty() || s.config_mount != "/config") {
    json cfg = {{"mountPath", s.config_mount}};
    if (!s.config_files.empty()) cfg["files"] = s.config_files;
    j["config"] = std::move(cfg);
  }
  if (!s.ports.empty()) {
    json list = json::array();
    for (const auto& port : s.ports) {
      json e = {{"port", port.port}, {"protocol", port.protocol}};
      if (!port.name.empty()) e["name"] = port.name;
      list.push_back(std::move(e));
    }
    j["ports"] = std::move(list);
  }
  if (!s.volumes.empty()) {
    json list = json::array();
    for (const auto& v : s.volumes) {
      json e = {{"name", v.name}, {"mountPath", v.mount_path}, {"readOnly", v.read_only}};
      if (!v.host_path.empty()) e["hostPath"] = v.host_path;
      list.push_back(std::move(e));
    }
    j["volumes"] = std::move(list);
  }
  j["network"] = s.isolated_network ? "isolated" : "host";
  if (!s.health.type.empty()) {
    const AppHealthCheck& h = s.health;
    json hc = {{"periodSeconds", h.period_ms / 1000},
               {"timeoutSeconds", h.timeout_ms / 1000},
               {"initialDelaySeconds", h.initial_delay_ms / 1000},
               {"failureThreshold", h.failure_threshold}};
    if (h.type == "exec") {
      hc["exec"] = {{"command", h.command}};
    } else if (h.type == "http") {
      hc["http"] = {{"path", h.path}, {"port", h.port}};
    } else {
      hc["tcp"] = {{"port", h.port}};
    }
    j["healthCheck"] = std::move(hc);
  }
  j["rollout"] = {{"maxUnavailable", s.max_unavailable},
                  {"progressDeadlineSeconds", s.progress_deadline_ms / 1000}};
  if (s.reschedule_after_ms > 0) {
    j["rescheduleAfter"] = FormatDuration(Millis(s.reschedule_after_ms));
  }
  return j.dump();
}

}  // namespace verge::cloud
