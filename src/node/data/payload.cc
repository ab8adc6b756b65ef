#include "node/data/payload.h"

#include <simdjson.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <optional>

namespace verge::data {
namespace {

namespace od = simdjson::ondemand;
using simdjson::error_code;

// Returns the simdjson error of `expr` from the enclosing function.
#define VERGE_JSON_TRY(expr)                               \
  do {                                                     \
    if (error_code _e = (expr); _e != simdjson::SUCCESS) { \
      return _e;                                           \
    }                                                      \
  } while (0)

constexpr std::string_view kReasonNames[kNumRejectReasons] = {
    "malformed", "missing_device", "wrong_device",   "bad_name",       "bad_value", "bad_timestamp",
    "too_many",  "out_of_range",   "unknown_device", "unknown_metric", "duplicate", "bad_unit",
};

// Nesting allowed inside keys we ignore; deeper bodies are refused rather than recursed into.
constexpr int kMaxDepth = 64;

constexpr std::array<bool, 256> kNameChars = [] {
  std::array<bool, 256> t{};
  for (int c = 'a'; c <= 'z'; ++c) t[c] = true;
  for (int c = 'A'; c <= 'Z'; ++c) t[c] = true;
  for (int c = '0'; c <= '9'; ++c) t[c] = true;
  for (char c : std::string_view("_.:-")) t[static_cast<unsigned char>(c)] = true;
  return t;
}();

// At most kMaxNameLength bytes of device-supplied text, cut on a UTF-8 character boundary, so
// that what we echo back in a rejection stays small and valid UTF-8.
std::string_view Clip(std::string_view s) {
  if (s.size() <= kMaxNameLength) return s;
  size_t n = kMaxNameLength;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return s.substr(0, n);
}

std::string BadNameMessage(std::string_view what, std::string_view name) {
  if (name.empty()) return fmt::format("{} is empty", what);
  if (name.size() > kMaxNameLength) {
    return fmt::format("{} {:?}... is longer than {} characters", what, Clip(name), kMaxNameLength);
  }
  return fmt::format("{} {:?} may hold only letters, digits and _ . : -", what, name);
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

std::string_view TrimRight(std::string_view s) {
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\t' || s.back() == '\n' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

// The JSON number grammar (RFC 8259 section 6). simdjson reports a well-formed number too large
// for a double (1e999) with the same error as a malformed one; this tells them apart.
bool IsJsonNumber(std::string_view s) {
  size_t i = 0;
  const size_t n = s.size();
  auto digits = [&] {
    size_t start = i;
    while (i < n && IsDigit(s[i])) ++i;
    return i > start;
  };
  if (i < n && s[i] == '-') ++i;
  if (i < n && s[i] == '0') {
    ++i;
  } else if (!digits()) {
    return false;
  }
  if (i < n && s[i] == '.') {
    ++i;
    if (!digits()) return false;
  }
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < n && (s[i] == '+' || s[i] == '-')) ++i;
    if (!digits()) return false;
  }
  return i == n;
}

// True when a failed number read is a valid number beyond the range of its target type.
bool IsOverflow(error_code e, od::value& v) {
  return (e == simdjson::NUMBER_ERROR || e == simdjson::NUMBER_OUT_OF_RANGE) &&
         IsJsonNumber(TrimRight(v.raw_json_token()));
}

std::string_view TypeName(od::json_type t) {
  switch (t) {
    case od::json_type::array:
      return "an array";
    case od::json_type::object:
      return "an object";
    case od::json_type::number:
      return "a number";
    case od::json_type::string:
      return "a string";
    case od::json_type::boolean:
      return "a boolean";
    case od::json_type::null:
      return "null";
  }
  return "unknown";
}

std::string_view Describe(error_code e) {
  switch (e) {
    case simdjson::TAPE_ERROR:
    case simdjson::INCORRECT_TYPE:
      return "invalid structure (a missing or extra comma, colon, quote, brace or bracket?)";
    case simdjson::UTF8_ERROR:
      return "invalid UTF-8";
    case simdjson::UNCLOSED_STRING:
      return "unterminated string";
    case simdjson::STRING_ERROR:
      return "invalid escape in a string";
    case simdjson::UNESCAPED_CHARS:
      return "control character inside a string";
    case simdjson::NUMBER_ERROR:
      return "invalid number";
    case simdjson::T_ATOM_ERROR:
    case simdjson::F_ATOM_ERROR:
    case simdjson::N_ATOM_ERROR:
      return "invalid literal (want true, false or null)";
    case simdjson::DEPTH_ERROR:
      return "nested too deeply";
    case simdjson::INCOMPLETE_ARRAY_OR_OBJECT:
      return "ends inside an object or array, or has trailing characters";
    case simdjson::TRAILING_CONTENT:
      return "trailing characters after the JSON value";
    case simdjson::EMPTY:
      return "no JSON value";
    case simdjson::CAPACITY:
      return "too large";
    default:
      return simdjson::error_message(e);
  }
}

// Offset of the first byte that is not part of valid UTF-8 (simdjson only says "invalid").
size_t FirstInvalidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t len;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2, cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3, cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4, cp = c & 0x07;
    } else {
      return i;
    }
    if (i + len > s.size()) return i;
    for (size_t k = 1; k < len; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (cc & 0x3F);
    }
    static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
    i += len;
  }
  return s.size();
}

// Where in `text` parsing failed with `e`: the document's position when it has one.
size_t ErrorOffset(error_code e, od::document* doc, const char* base, std::string_view text) {
  if (e == simdjson::UTF8_ERROR) return FirstInvalidUtf8(text);
  const char* loc = nullptr;
  if (doc != nullptr && doc->current_location().get(loc) == simdjson::SUCCESS && loc >= base &&
      loc <= base + text.size()) {
    return static_cast<size_t>(loc - base);
  }
  return text.size();
}

// A validating skip: simdjson's own skip only balances brackets, so a value we ignore is walked
// in full to keep "malformed JSON" meaning the same whatever key it hides under.
error_code Skip(od::value v, int depth) {
  if (depth > kMaxDepth) return simdjson::DEPTH_ERROR;
  od::json_type type;
  VERGE_JSON_TRY(v.type().get(type));
  switch (type) {
    case od::json_type::array: {
      od::array array;
      VERGE_JSON_TRY(v.get_array().get(array));
      for (auto element : array) {
        od::value child;
        VERGE_JSON_TRY(element.get(child));
        VERGE_JSON_TRY(Skip(child, depth + 1));
      }
      return simdjson::SUCCESS;
    }
    case od::json_type::object: {
      od::object object;
      VERGE_JSON_TRY(v.get_object().get(object));
      for (auto f : object) {
        od::field field;
        VERGE_JSON_TRY(std::move(f).get(field));
        std::string_view key;
        VERGE_JSON_TRY(field.unescaped_key().get(key));
        VERGE_JSON_TRY(Skip(field.value(), depth + 1));
      }
      return simdjson::SUCCESS;
    }
    case od::json_type::string: {
      std::string_view s;
      return v.get_string().get(s);
    }
    case od::json_type::number: {
      double d;
      error_code e = v.get_double().get(d);
      return e == simdjson::SUCCESS || IsOverflow(e, v) ? simdjson::SUCCESS : e;
    }
    case od::json_type::boolean: {
      bool b;
      return v.get_bool().get(b);
    }
    case od::json_type::null: {
      bool is_null = false;
      VERGE_JSON_TRY(v.is_null().get(is_null));
      return is_null ? simdjson::SUCCESS : simdjson::N_ATOM_ERROR;
    }
  }
  return simdjson::TAPE_ERROR;
}

// A metric value: usable, or why not.
struct Value {
  enum Kind : uint8_t { kOk, kWrongType, kOverflow } kind = kOk;
  od::json_type type = od::json_type::number;
  double value = 0;
};

error_code ReadValue(od::value v, Value& out) {
  VERGE_JSON_TRY(v.type().get(out.type));
  switch (out.type) {
    case od::json_type::number: {
      error_code e = v.get_double().get(out.value);
      if (e == simdjson::SUCCESS) {
        out.kind = Value::kOk;
      } else if (IsOverflow(e, v)) {
        out.kind = Value::kOverflow;
      } else {
        return e;
      }
      return simdjson::SUCCESS;
    }
    case od::json_type::boolean: {
      bool b;
      VERGE_JSON_TRY(v.get_bool().get(b));
      out.kind = Value::kOk;
      out.value = b ? 1 : 0;
      return simdjson::SUCCESS;
    }
    default:
      out.kind = Value::kWrongType;
      return Skip(v, 1);
  }
}

// Nanoseconds per unit of an epoch number of this magnitude (see payload.h).
int64_t EpochUnitNs(uint64_t magnitude) {
  if (magnitude < 100'000'000'000ULL) return 1'000'000'000;
  if (magnitude < 100'000'000'000'000ULL) return 1'000'000;
  if (magnitude < 100'000'000'000'000'000ULL) return 1'000;
  return 1;
}

std::optional<int64_t> EpochToNs(int64_t t) {
  uint64_t magnitude = t < 0 ? 0 - static_cast<uint64_t>(t) : static_cast<uint64_t>(t);
  int64_t unit = EpochUnitNs(magnitude);
  if (magnitude > static_cast<uint64_t>(std::numeric_limits<int64_t>::max() / unit)) {
    return std::nullopt;
  }
  return t * unit;
}

std::optional<int64_t> EpochToNs(double t) {
  double magnitude = std::fabs(t);
  int64_t unit = EpochUnitNs(magnitude < 1e19 ? static_cast<uint64_t>(magnitude) : ~0ULL);
  // Well inside int64 (which ends at 9.22e18), so the conversions below cannot overflow.
  if (!(magnitude * static_cast<double>(unit) < 9.2e18)) return std::nullopt;
  // Split so that the fraction keeps the precision the whole part would swamp.
  double whole = std::trunc(t);
  double fraction = t - whole;
  return static_cast<int64_t>(whole) * unit + std::llround(fraction * static_cast<double>(unit));
}

struct Timestamp {
  bool ok = false;
  int64_t ns = 0;
  std::string error;
};

error_code ReadTimestamp(od::value v, const ParseOptions& options, Timestamp& out) {
  od::json_type type;
  VERGE_JSON_TRY(v.type().get(type));
  std::optional<int64_t> ns;
  std::string_view shown;  // the timestamp as an error message shows it
  if (type == od::json_type::number) {
    shown = TrimRight(v.raw_json_token());
    int64_t i;
    uint64_t u;
    double d;
    error_code e;
    if (v.get_int64().get(i) == simdjson::SUCCESS) {
      ns = EpochToNs(i);
    } else if (v.get_uint64().get(u) == simdjson::SUCCESS) {
      ns = std::nullopt;  // beyond int64 nanoseconds in every unit
    } else if ((e = v.get_double().get(d)) == simdjson::SUCCESS) {
      ns = EpochToNs(d);
    } else if (!IsOverflow(e, v)) {
      return e;
    }
    shown = Clip(shown);
    if (!ns) {
      out.error = fmt::format("timestamp {} is out of range", shown);
      return simdjson::SUCCESS;
    }
  } else if (type == od::json_type::string) {
    std::string_view text;
    VERGE_JSON_TRY(v.get_string().get(text));
    Result<int64_t> parsed = ParseRfc3339(text);
    if (!parsed.ok()) {
      out.error = "timestamp " + parsed.status().message();
      return simdjson::SUCCESS;
    }
    ns = *parsed;
    shown = Clip(text);
  } else {
    VERGE_JSON_TRY(Skip(v, 1));
    out.error = fmt::format("timestamp is {}; want Unix time as a number or an RFC 3339 string",
                            TypeName(type));
    return simdjson::SUCCESS;
  }
  if (*ns < kMinTimestampNs) {
    out.error = type == od::json_type::string
                    ? fmt::format("timestamp {:?} is before 2000-01-01T00:00:00Z", shown)
                    : fmt::format("timestamp {} is before 2000-01-01T00:00:00Z", shown);
    return simdjson::SUCCESS;
  }
  int64_t limit = options.now_ns > std::numeric_limits<int64_t>::max() - options.max_future_ns
                      ? std::numeric_limits<int64_t>::max()
                      : options.now_ns + options.max_future_ns;
  if (*ns > limit) {
    out.error =
        fmt::format("timestamp is {:.3f} s ahead of the node's clock; at most {:.3f} s is allowed",
                    static_cast<double>(*ns - options.now_ns) / 1e9,
                    static_cast<double>(options.max_future_ns) / 1e9);
    return simdjson::SUCCESS;
  }
  out.ok = true;
  out.ns = *ns;
  return simdjson::SUCCESS;
}

}  // namespace

std::string_view ReasonName(RejectReason reason) {
  auto i = static_cast<size_t>(reason);
  return i < kNumRejectReasons ? kReasonNames[i] : "unknown";
}

uint64_t IngestCounters::total_rejected() const {
  uint64_t n = 0;
  for (uint64_t r : rejected) n += r;
  return n;
}

void ParseResult::Clear() {
  readings.clear();
  item_of.clear();
  rejected.clear();
}

bool IsValidName(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameLength) return false;
  for (char c : name) {
    if (!kNameChars[static_cast<unsigned char>(c)]) return false;
  }
  return true;
}

struct PayloadParser::Impl {
  od::parser parser;
  // The body, copied with the padding simdjson reads past the end; grown, never shrunk.
  std::unique_ptr<char[]> buffer;
  size_t capacity = 0;

  // Per-call state.
  const ParseOptions* options = nullptr;
  ParseResult* out = nullptr;
  bool default_device_ok = false;

  // Per-item scratch, reused so that an item costs no allocation beyond its Readings.
  struct Pending {
    std::string_view name;
    Value value;
  };
  std::vector<Pending> pending;

  const char* Pad(std::string_view body) {
    size_t need = body.size() + simdjson::SIMDJSON_PADDING;
    if (capacity < need) {
      buffer = std::make_unique_for_overwrite<char[]>(need);
      capacity = need;
    }
    if (!body.empty()) std::memcpy(buffer.get(), body.data(), body.size());
    std::memset(buffer.get() + body.size(), 0, simdjson::SIMDJSON_PADDING);
    return buffer.get();
  }

  void Reject(size_t item, std::string_view metric, RejectReason reason, std::string message) {
    out->rejected.push_back(Rejection{item, std::string(metric), reason, std::move(message)});
  }

  void Emit(uint32_t item, std::string_view device, std::string_view metric, int64_t ts_ns,
            const Value& value) {
    if (value.kind == Value::kOk) {
      out->readings.push_back(
          Reading{std::string(device), std::string(metric), ts_ns, value.value});
      out->item_of.push_back(item);
    } else if (value.kind == Value::kOverflow) {
      Reject(item, metric, RejectReason::kBadValue,
             fmt::format("value of {} is beyond the range of a double", metric));
    } else {
      Reject(item, metric, RejectReason::kBadValue,
             fmt::format("value of {} is {}; want a number, true or false", metric,
                         TypeName(value.type)));
    }
  }

  error_code ParseItem(od::object object, uint32_t item);
  Status ParseJson(std::string_view body);
  void ParseNdjson(std::string_view body);
};

// Walks the whole item first (keys come in any order), then judges it. Returns a simdjson error
// only when the item is not valid JSON; every other problem becomes a Rejection.
error_code PayloadParser::Impl::ParseItem(od::object object, uint32_t item) {
  std::string_view device, metric, duplicate_key;
  bool has_device = false, device_is_string = false, has_metric = false, metric_is_string = false,
       has_value = false, has_metrics = false, metrics_is_object = false, has_timestamp = false;
  Value value;
  Timestamp timestamp;
  size_t metric_count = 0;
  pending.clear();

  auto first_time = [&](bool& seen, std::string_view key) {
    if (seen && duplicate_key.empty()) duplicate_key = key;
    bool first = !seen;
    seen = true;
    return first;
  };

  for (auto f : object) {
    od::field field;
    VERGE_JSON_TRY(std::move(f).get(field));
    std::string_view key;
    VERGE_JSON_TRY(field.unescaped_key().get(key));
    od::value v = field.value();
    if (key == "device_id") {
      if (!first_time(has_device, key)) {
        VERGE_JSON_TRY(Skip(v, 1));
        continue;
      }
      od::json_type type;
      VERGE_JSON_TRY(v.type().get(type));
      device_is_string = type == od::json_type::string;
      VERGE_JSON_TRY(device_is_string ? v.get_string().get(device) : Skip(v, 1));
    } else if (key == "timestamp") {
      if (!first_time(has_timestamp, key)) {
        VERGE_JSON_TRY(Skip(v, 1));
        continue;
      }
      VERGE_JSON_TRY(ReadTimestamp(v, *options, timestamp));
    } else if (key == "value") {
      if (!first_time(has_value, key)) {
        VERGE_JSON_TRY(Skip(v, 1));
        continue;
      }
      VERGE_JSON_TRY(ReadValue(v, value));
    } else if (key == "metric") {
      if (!first_time(has_metric, key)) {
        VERGE_JSON_TRY(Skip(v, 1));
        continue;
      }
      od::json_type type;
      VERGE_JSON_TRY(v.type().get(type));
      metric_is_string = type == od::json_type::string;
      VERGE_JSON_TRY(metric_is_string ? v.get_string().get(metric) : Skip(v, 1));
    } else if (key == "metrics") {
      if (!first_time(has_metrics, key)) {
        VERGE_JSON_TRY(Skip(v, 1));
        continue;
      }
      od::json_type type;
      VERGE_JSON_TRY(v.type().get(type));
      metrics_is_object = type == od::json_type::object;
      if (!metrics_is_object) {
        VERGE_JSON_TRY(Skip(v, 1));
        continue;
      }
      od::object metrics;
      VERGE_JSON_TRY(v.get_object().get(metrics));
      for (auto m : metrics) {
        od::field metric_field;
        VERGE_JSON_TRY(std::move(m).get(metric_field));
        std::string_view name;
        VERGE_JSON_TRY(metric_field.unescaped_key().get(name));
        if (++metric_count > options->max_metrics_per_item) {
          VERGE_JSON_TRY(Skip(metric_field.value(), 2));  // the item is rejected anyway
          continue;
        }
        Pending& p = pending.emplace_back();
        p.name = name;
        VERGE_JSON_TRY(ReadValue(metric_field.value(), p.value));
      }
    } else {
      VERGE_JSON_TRY(Skip(v, 1));
    }
  }

  auto reject = [&](RejectReason reason, std::string message) {
    Reject(item, {}, reason, std::move(message));
    return simdjson::SUCCESS;
  };
  if (!duplicate_key.empty()) {
    return reject(RejectReason::kMalformed, fmt::format("key {:?} appears twice", duplicate_key));
  }
  if (has_value && has_metrics) {
    return reject(RejectReason::kMalformed, "item has both value and metrics; send one of them");
  }
  if (!has_value && !has_metrics) {
    return reject(RejectReason::kMalformed, "item has neither value nor metrics");
  }
  if (has_metric && has_metrics) {
    return reject(RejectReason::kMalformed,
                  "metric names the single value; it cannot go with metrics");
  }
  if (has_metrics && !metrics_is_object) {
    return reject(RejectReason::kMalformed, "metrics must be an object of name: value");
  }
  if (has_metrics && metric_count == 0) {
    return reject(RejectReason::kMalformed, "metrics is empty");
  }

  std::string_view device_name = options->default_device;
  if (has_device) {
    if (!device_is_string) return reject(RejectReason::kBadName, "device_id must be a string");
    if (!IsValidName(device)) {
      return reject(RejectReason::kBadName, BadNameMessage("device_id", device));
    }
    if (!options->default_device.empty() && device != options->default_device) {
      return reject(RejectReason::kWrongDevice,
                    fmt::format("device_id {:?} does not match the authenticated device {:?}",
                                device, options->default_device));
    }
    device_name = device;
  } else if (options->default_device.empty()) {
    return reject(RejectReason::kMissingDevice, "device_id is missing");
  } else if (!default_device_ok) {
    return reject(RejectReason::kBadName,
                  BadNameMessage("the authenticated device", options->default_device));
  }

  if (metric_count > options->max_metrics_per_item) {
    return reject(RejectReason::kTooMany,
                  fmt::format("item has {} metrics, more than the limit of {}", metric_count,
                              options->max_metrics_per_item));
  }
  int64_t ts_ns = options->now_ns;
  if (has_timestamp) {
    if (!timestamp.ok) return reject(RejectReason::kBadTimestamp, std::move(timestamp.error));
    ts_ns = timestamp.ns;
  }

  if (has_value) {
    std::string_view name = "value";
    if (has_metric) {
      if (!metric_is_string) return reject(RejectReason::kBadName, "metric must be a string");
      if (!IsValidName(metric)) {
        Reject(item, Clip(metric), RejectReason::kBadName, BadNameMessage("metric", metric));
        return simdjson::SUCCESS;
      }
      name = metric;
    }
    Emit(item, device_name, name, ts_ns, value);
    return simdjson::SUCCESS;
  }
  for (const Pending& p : pending) {
    if (!IsValidName(p.name)) {
      Reject(item, Clip(p.name), RejectReason::kBadName, BadNameMessage("metric", p.name));
    } else {
      Emit(item, device_name, p.name, ts_ns, p.value);
    }
  }
  return simdjson::SUCCESS;
}

Status PayloadParser::Impl::ParseJson(std::string_view body) {
  const char* base = Pad(body);
  od::document doc;
  od::document* located = nullptr;  // set once the document exists, to locate errors
  auto malformed = [&](error_code e) {
    out->Clear();
    return Error(Code::kInvalidArgument, "malformed JSON at byte {}: {}",
                 ErrorOffset(e, located, base, body), Describe(e));
  };
  // Trailing text after a complete value is not an error to simdjson; a location left over is.
  auto check_end = [&]() -> Status {
    const char* loc = nullptr;
    if (doc.current_location().get(loc) == simdjson::SUCCESS) {
      return malformed(simdjson::TRAILING_CONTENT);
    }
    return Status::Ok();
  };

  if (error_code e = parser.iterate(base, body.size(), capacity).get(doc)) return malformed(e);
  located = &doc;
  od::json_type type;
  if (error_code e = doc.type().get(type)) return malformed(e);
  if (type == od::json_type::object) {
    od::object object;
    if (error_code e = doc.get_object().get(object)) return malformed(e);
    if (error_code e = ParseItem(object, 0)) return malformed(e);
    return check_end();
  }
  if (type != od::json_type::array) {
    out->Clear();
    return Error(Code::kInvalidArgument, "body is {}; want a JSON object or an array of objects",
                 TypeName(type));
  }
  od::array array;
  if (error_code e = doc.get_array().get(array)) return malformed(e);
  uint32_t item = 0;
  for (auto element : array) {
    od::value v;
    if (error_code e = element.get(v)) return malformed(e);
    if (item == options->max_items) {
      Reject(item, {}, RejectReason::kTooMany,
             fmt::format("body has more than {} items; this one and all after it were dropped",
                         options->max_items));
      return Status::Ok();
    }
    od::json_type item_type;
    if (error_code e = v.type().get(item_type)) return malformed(e);
    if (item_type == od::json_type::object) {
      od::object object;
      if (error_code e = v.get_object().get(object)) return malformed(e);
      if (error_code e = ParseItem(object, item)) return malformed(e);
    } else {
      if (error_code e = Skip(v, 1)) return malformed(e);
      Reject(item, {}, RejectReason::kMalformed,
             fmt::format("item is {}; want an object", TypeName(item_type)));
    }
    ++item;
  }
  return check_end();
}

void PayloadParser::Impl::ParseNdjson(std::string_view body) {
  const char* base = Pad(body);
  size_t items = 0;
  size_t line = 0;
  for (size_t pos = 0; pos < body.size(); ++line) {
    const char* nl = static_cast<const char*>(std::memchr(base + pos, '\n', body.size() - pos));
    size_t end = nl != nullptr ? static_cast<size_t>(nl - base) : body.size();
    size_t start = pos;
    pos = end + 1;
    std::string_view text(base + start, end - start);
    if (text.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    if (items++ == options->max_items) {
      Reject(line, {}, RejectReason::kTooMany,
             fmt::format("body has more than {} items; this one and all after it were dropped",
                         options->max_items));
      return;
    }
    auto item = static_cast<uint32_t>(std::min<size_t>(line, UINT32_MAX));
    od::document doc;
    od::document* located = nullptr;
    auto malformed = [&](error_code e) {
      Reject(line, {}, RejectReason::kMalformed,
             fmt::format("malformed JSON at column {}: {}",
                         ErrorOffset(e, located, text.data(), text) + 1, Describe(e)));
    };
    // The rest of the buffer, padding included, may be read past the end of the line.
    if (error_code e = parser.iterate(text.data(), text.size(), capacity - start).get(doc)) {
      malformed(e);
      continue;
    }
    located = &doc;
    od::json_type type;
    if (error_code e = doc.type().get(type)) {
      malformed(e);
      continue;
    }
    if (type != od::json_type::object) {
      Reject(line, {}, RejectReason::kMalformed,
             fmt::format("line is {}; want one JSON object per line", TypeName(type)));
      continue;
    }
    od::object object;
    size_t readings_before = out->readings.size();
    size_t rejected_before = out->rejected.size();
    error_code e = doc.get_object().get(object);
    if (e == simdjson::SUCCESS) e = ParseItem(object, item);
    const char* loc = nullptr;
    if (e == simdjson::SUCCESS && doc.current_location().get(loc) == simdjson::SUCCESS) {
      e = simdjson::TRAILING_CONTENT;
    }
    if (e != simdjson::SUCCESS) {
      // A line is all or nothing, like a kJson body.
      out->readings.resize(readings_before);
      out->item_of.resize(readings_before);
      out->rejected.resize(rejected_before);
      malformed(e);
    }
  }
}

PayloadParser::PayloadParser() : impl_(std::make_unique<Impl>()) {}
PayloadParser::~PayloadParser() = default;

Status PayloadParser::Parse(std::string_view body, Framing framing, const ParseOptions& options,
                            ParseResult& out) {
  out.Clear();
  impl_->options = &options;
  impl_->out = &out;
  impl_->default_device_ok = IsValidName(options.default_device);
  // A guess at the number of readings that avoids most regrowth without hoarding memory.
  out.readings.reserve(std::min(body.size() / 64 + 1, options.max_items));
  out.item_of.reserve(out.readings.capacity());
  Status status;
  if (framing == Framing::kJson) {
    status = impl_->ParseJson(body);
  } else {
    impl_->ParseNdjson(body);
  }
  impl_->out = nullptr;
  impl_->options = nullptr;
  if (!status.ok()) {
    ++counters_[RejectReason::kMalformed];
    return status;
  }
  counters_.accepted += out.readings.size();
  for (const Rejection& r : out.rejected) ++counters_[r.reason];
  return Status::Ok();
}

}  // namespace verge::data
