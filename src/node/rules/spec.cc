#include "node/rules/spec.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>

namespace verge::rules {

namespace {

using nlohmann::json;

constexpr std::string_view kTelemetryDecl =
    R"(CREATE STREAM telemetry () WITH (DATASOURCE="telemetry", TYPE="memory", TIMESTAMP="ts"))";

std::string Join(const std::vector<std::string>& errors) {
  std::string out;
  for (const auto& e : errors) {
    if (!out.empty()) out += "; ";
    out += e;
  }
  return out;
}

// Reads the fields of one JSON object by name, recording type errors and unknown keys.
class Fields {
 public:
  Fields(const json& obj, std::string path, std::vector<std::string>& errors)
      : obj_(obj), path_(std::move(path)), errors_(errors) {}

  const json* Get(const char* key) {
    seen_.insert(key);
    auto it = obj_.find(key);
    if (it == obj_.end() || it->is_null()) return nullptr;
    return &*it;
  }
  void String(const char* key, std::string& out, bool required = false) {
    const json* v = Get(key);
    if (!v) {
      if (required) errors_.push_back(fmt::format("{}.{}: required", path_, key));
      return;
    }
    if (!v->is_string()) {
      errors_.push_back(fmt::format("{}.{}: must be a string", path_, key));
      return;
    }
    out = v->get<std::string>();
    if (required && out.empty())
      errors_.push_back(fmt::format("{}.{}: must not be empty", path_, key));
  }
  void Int(const char* key, int64_t& out, int64_t min, int64_t max) {
    const json* v = Get(key);
    if (!v) return;
    if (!v->is_number_integer() || v->get<int64_t>() < min || v->get<int64_t>() > max) {
      errors_.push_back(
          fmt::format("{}.{}: must be an integer from {} to {}", path_, key, min, max));
      return;
    }
    out = v->get<int64_t>();
  }
  void Bool(const char* key, bool& out) {
    const json* v = Get(key);
    if (!v) return;
    if (!v->is_boolean()) {
      errors_.push_back(fmt::format("{}.{}: must be true or false", path_, key));
      return;
    }
    out = v->get<bool>();
  }
  void OneOf(const char* key, std::string& out, std::initializer_list<std::string_view> allowed) {
    std::string v = out;
    String(key, v);
    bool ok = false;
    for (auto a : allowed) ok = ok || a == v;
    if (!ok) {
      std::string list;
      for (auto a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
      errors_.push_back(fmt::format("{}.{}: \"{}\" is not one of {}", path_, key, v, list));
      return;
    }
    out = v;
  }
  void RejectUnknown() {
    for (auto it = obj_.begin(); it != obj_.end(); ++it) {
      if (!seen_.count(it.key()))
        errors_.push_back(fmt::format("{}: unknown field \"{}\"", path_, it.key()));
    }
  }

 private:
  const json& obj_;
  std::string path_;
  std::vector<std::string>& errors_;
  std::set<std::string> seen_;
};

bool ValidTemplate(std::string_view s) {
  // {{.column}} references only; a lone "{{" is a mistake the user should hear about.
  size_t pos = 0;
  while ((pos = s.find("{{", pos)) != std::string_view::npos) {
    size_t end = s.find("}}", pos);
    if (end == std::string_view::npos) return false;
    std::string_view ref = s.substr(pos + 2, end - pos - 2);
    if (ref.size() < 2 || ref[0] != '.') return false;
    pos = end + 2;
  }
  return true;
}

void ParseAction(const json& item, size_t index, std::vector<ActionSpec>& out,
                 std::vector<std::string>& errors) {
  std::string path = fmt::format("actions[{}]", index);
  if (!item.is_object() || item.size() != 1) {
    errors.push_back(fmt::format(
        "{}: must be an object with one key: alert, mqtt, webhook, modbus, log, memory or "
        "function",
        path));
    return;
  }
  const std::string kind = item.begin().key();
  const json* raw = &item.begin().value();
  path += "." + kind;
  // The short form of a function action: {"function": "APP"}.
  json short_form;
  if (kind == "function" && raw->is_string()) {
    short_form = json{{"name", *raw}};
    raw = &short_form;
  }
  const json& body = *raw;
  if (!body.is_object() && !body.is_null()) {
    errors.push_back(fmt::format("{}: must be an object{}", path,
                                 kind == "function" ? " or the name of an app" : ""));
    return;
  }
  static const json kEmpty = json::object();
  Fields f(body.is_null() ? kEmpty : body, path, errors);
  ActionSpec a;
  if (kind == "alert") {
    a.kind = ActionKind::kAlert;
    f.OneOf("severity", a.severity, {"info", "warning", "critical"});
    f.String("message", a.message);
  } else if (kind == "mqtt") {
    a.kind = ActionKind::kMqtt;
    f.String("topic", a.topic, true);
    if (!ValidTemplate(a.topic) || a.topic.find_first_of("+#") != std::string::npos)
      errors.push_back(fmt::format(
          "{}.topic: \"{}\" must be a topic name (no wildcards; {{{{.column}}}} is replaced by a "
          "column of the output)",
          path, a.topic));
    int64_t qos = a.qos;
    f.Int("qos", qos, 0, 1);
    a.qos = static_cast<int>(qos);
    f.Bool("retain", a.retain);
  } else if (kind == "webhook") {
    a.kind = ActionKind::kWebhook;
    f.String("url", a.url, true);
    if (!a.url.empty() && a.url.rfind("http://", 0) != 0 && a.url.rfind("https://", 0) != 0)
      errors.push_back(fmt::format("{}.url: must start with http:// or https://", path));
    if (!ValidTemplate(a.url))
      errors.push_back(fmt::format("{}.url: unbalanced {{{{ }}}} reference", path));
    f.OneOf("method", a.method, {"POST", "PUT"});
    if (const json* h = f.Get("headers")) {
      if (!h->is_object()) {
        errors.push_back(fmt::format("{}.headers: must be an object of strings", path));
      } else {
        for (auto it = h->begin(); it != h->end(); ++it) {
          if (!it.value().is_string() || it.key().empty() ||
              it.key().find_first_of(":\r\n ") != std::string::npos ||
              it.value().get<std::string>().find_first_of("\r\n") != std::string::npos) {
            errors.push_back(fmt::format(
                "{}.headers.{}: must be a valid header with a string value", path, it.key()));
            continue;
          }
          a.headers[it.key()] = it.value().get<std::string>();
        }
      }
    }
    // Bounded: stopping a rule (or the node) waits for a delivery in progress.
    f.Int("timeoutMs", a.timeout_ms, 1, 60'000);
  } else if (kind == "modbus") {
    a.kind = ActionKind::kModbus;
    f.String("device", a.device, true);
    int64_t address = -1;
    f.Int("address", address, 0, 65535);
    if (address < 0) errors.push_back(fmt::format("{}.address: required (0-65535)", path));
    a.address = static_cast<uint32_t>(std::max<int64_t>(address, 0));
    f.OneOf("kind", a.register_kind, {"holding", "coil"});
    f.OneOf("type", a.type, {"uint16", "int16", "uint32", "int32", "float32"});
    f.String("valueColumn", a.value_column);
    if (const json* v = f.Get("value")) {
      if (!v->is_number()) {
        errors.push_back(fmt::format("{}.value: must be a number", path));
      } else {
        a.value = v->get<double>();
      }
    }
    if (a.value_column.empty() == !a.value.has_value())
      errors.push_back(fmt::format("{}: give exactly one of valueColumn and value", path));
    if (a.register_kind == "coil" && a.type != "uint16")
      errors.push_back(fmt::format("{}.type: a coil holds one bit: leave type out", path));
  } else if (kind == "log") {
    a.kind = ActionKind::kLog;
    f.OneOf("level", a.level, {"info", "warning"});
  } else if (kind == "memory") {
    a.kind = ActionKind::kMemory;
    f.String("topic", a.topic, true);
    if (a.topic == kTelemetryStream)
      errors.push_back(fmt::format("{}.topic: \"telemetry\" is the node's own stream", path));
  } else if (kind == "function") {
    a.kind = ActionKind::kFunction;
    f.String("name", a.function, true);
    if (!a.function.empty() && !IsValidAppName(a.function))
      errors.push_back(fmt::format(
          "{}.name: \"{}\" is not an app name (1-63 characters of a-z 0-9 -, starting and "
          "ending with a letter or digit)",
          path, a.function));
    f.String("topic", a.topic);
    if (a.topic == kTelemetryStream)
      errors.push_back(fmt::format("{}.topic: \"telemetry\" is the node's own stream", path));
  } else {
    errors.push_back(fmt::format(
        "{}: unknown action \"{}\": use alert, mqtt, webhook, modbus, log, memory or function",
        fmt::format("actions[{}]", index), kind));
    return;
  }
  int64_t retries = a.retry_count, buffer = static_cast<int64_t>(a.buffer_length);
  f.Int("retryCount", retries, 0, 1000);
  f.Int("retryIntervalMs", a.retry_interval_ms, 0, 3'600'000);
  f.Int("bufferLength", buffer, 1, 1'000'000);
  f.Bool("sendSingle", a.send_single);
  a.retry_count = static_cast<int>(retries);
  a.buffer_length = static_cast<size_t>(buffer);
  f.RejectUnknown();
  out.push_back(std::move(a));
}

}  // namespace

const CreateStream& TelemetryStream() {
  static const CreateStream* stream = [] {
    auto parsed = ParseCreateStream(kTelemetryDecl);
    return new CreateStream(std::move(parsed).value());
  }();
  return *stream;
}

std::string_view TelemetryStreamSql() { return kTelemetryDecl; }

std::string_view ActionKindName(ActionKind kind) {
  switch (kind) {
    case ActionKind::kAlert:
      return "alert";
    case ActionKind::kMqtt:
      return "mqtt";
    case ActionKind::kWebhook:
      return "webhook";
    case ActionKind::kModbus:
      return "modbus";
    case ActionKind::kLog:
      return "log";
    case ActionKind::kMemory:
      return "memory";
    case ActionKind::kFunction:
      return "function";
  }
  return "?";
}

bool IsValidRuleName(std::string_view name) {
  if (name.empty() || name.size() > 64 || !std::isalnum(static_cast<unsigned char>(name[0])))
    return false;
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.' && c != '-')
      return false;
  }
  return true;
}

bool IsValidAppName(std::string_view name) {
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (name.empty() || name.size() > 63 || !alnum(name.front()) || !alnum(name.back())) return false;
  return std::all_of(name.begin(), name.end(), [&](char c) { return alnum(c) || c == '-'; });
}

Result<std::vector<ActionSpec>> ParseActions(const json& actions) {
  std::vector<std::string> errors;
  std::vector<ActionSpec> out;
  if (!actions.is_array() || actions.empty())
    return Error(Code::kInvalidArgument,
                 "actions: must be a non-empty list, e.g. [{{\"log\": {{}}}}]");
  if (actions.size() > 32) return Error(Code::kInvalidArgument, "actions: at most 32");
  for (size_t i = 0; i < actions.size(); ++i) ParseAction(actions[i], i, out, errors);
  if (!errors.empty()) return Error(Code::kInvalidArgument, "{}", Join(errors));
  return out;
}

Result<RuleSpecOptions> ParseRuleOptions(const json& options) {
  RuleSpecOptions o;
  if (options.is_null()) return o;
  if (!options.is_object()) return Error(Code::kInvalidArgument, "options: must be an object");
  std::vector<std::string> errors;
  Fields f(options, "options", errors);
  f.Int("lateToleranceMs", o.late_tolerance_ms, 0, 24LL * 3600 * 1000);
  f.Int("checkpointIntervalMs", o.checkpoint_interval_ms, 100, 24LL * 3600 * 1000);
  f.RejectUnknown();
  if (!errors.empty()) return Error(Code::kInvalidArgument, "{}", Join(errors));
  return o;
}

ParseResult<bool> Check(RuleSpec& spec) {
  ParseResult<Select> sel = ParseSelect(spec.sql);
  if (!sel.ok()) return sel.error();
  std::map<std::string, CreateStream, std::less<>> streams;
  for (size_t i = 0; i < spec.streams.size(); ++i) {
    ParseResult<CreateStream> cs = ParseCreateStream(spec.streams[i]);
    if (!cs.ok()) {
      ParseError e = cs.error();
      e.message = fmt::format("streams[{}]: {}", i, e.message);
      return e;
    }
    std::string name = cs.value().name;
    if (name == kTelemetryStream)
      return ParseError{0, 0,
                        fmt::format("streams[{}]: telemetry is the node's built-in stream", i)};
    if (!streams.emplace(name, std::move(cs).value()).second)
      return ParseError{0, 0, fmt::format("streams[{}]: stream {} is declared twice", i, name)};
  }
  spec.select = std::move(sel).value();
  if (spec.select.stream == kTelemetryStream) {
    spec.from = TelemetryStream();
  } else if (auto it = streams.find(spec.select.stream); it != streams.end()) {
    spec.from = it->second;
  } else {
    return ParseError{spec.select.stream_pos.line, spec.select.stream_pos.column,
                      fmt::format("unknown stream {}: read telemetry or declare it in streams",
                                  QuoteName(spec.select.stream))};
  }
  return true;
}

ParseResult<RuleSpec> ParseRuleSpec(const json& body) {
  if (!body.is_object()) return ParseError{0, 0, "the rule must be a JSON object"};
  std::vector<std::string> errors;
  Fields f(body, "rule", errors);
  RuleSpec spec;
  f.String("name", spec.name, true);
  if (!spec.name.empty() && !IsValidRuleName(spec.name))
    errors.push_back(fmt::format(
        "name: \"{}\" must be 1-64 characters of A-Z a-z 0-9 _ . - starting with a letter or "
        "digit",
        spec.name));
  f.String("sql", spec.sql, true);
  if (const json* s = f.Get("streams")) {
    if (!s->is_array()) {
      errors.push_back("streams: must be a list of CREATE STREAM statements");
    } else {
      for (const auto& v : *s) {
        if (!v.is_string()) {
          errors.push_back("streams: must be a list of CREATE STREAM statements");
          break;
        }
        spec.streams.push_back(v.get<std::string>());
      }
    }
  }
  if (const json* a = f.Get("actions")) {
    auto actions = ParseActions(*a);
    if (actions.ok()) {
      spec.actions = std::move(*actions);
    } else {
      errors.push_back(actions.status().message());
    }
  } else {
    errors.push_back("actions: required, e.g. [{\"log\": {}}]");
  }
  if (const json* o = f.Get("options")) {
    auto options = ParseRuleOptions(*o);
    if (options.ok()) {
      spec.options = *options;
    } else {
      errors.push_back(options.status().message());
    }
  }
  f.RejectUnknown();
  if (!errors.empty()) return ParseError{0, 0, Join(errors)};
  ParseResult<bool> checked = Check(spec);
  if (!checked.ok()) return checked.error();
  return spec;
}

}  // namespace verge::rules
