#include "ctl/output.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <chrono>

namespace verge::ctl {
namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// True when a plain YAML scalar with this text would load as a bool, null or number under
// YAML 1.1 or 1.2, and so must be quoted to stay a string. yaml-cpp quotes only the null forms.
bool LooksLikeNonString(std::string_view s) {
  static constexpr std::array<std::string_view, 10> kWords = {"true", "false", "yes", "no",   "on",
                                                              "off",  "y",     "n",   "null", "~"};
  std::string lower = Lower(s);
  if (std::find(kWords.begin(), kWords.end(), lower) != kWords.end()) return true;
  std::string_view rest = lower;
  if (!rest.empty() && (rest[0] == '+' || rest[0] == '-')) rest.remove_prefix(1);
  if (rest.empty()) return false;
  if (IsDigit(rest[0])) return true;
  if (rest[0] == '.' && rest.size() > 1 && IsDigit(rest[1])) return true;
  return rest == ".inf" || rest == ".nan";
}

// A literal block keeps multi-line text (PEM, logs) readable, but it cannot carry control
// characters or trailing spaces on a line; those go double-quoted with escapes instead.
bool FitsLiteralBlock(std::string_view s) {
  if (s.find('\n') == std::string_view::npos) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if ((c < 0x20 && c != '\n') || c == 0x7f) return false;
    if (c == ' ' && (i + 1 == s.size() || s[i + 1] == '\n')) return false;
  }
  return true;
}

void EmitString(YAML::Emitter& e, const std::string& s) {
  if (FitsLiteralBlock(s)) {
    e << YAML::Literal << s;
  } else if (LooksLikeNonString(s)) {
    e << YAML::DoubleQuoted << s;
  } else {
    e << s;
  }
}

void EmitYaml(YAML::Emitter& e, const Json& j) {
  switch (j.type()) {
    case Json::value_t::object:
      // Empty collections in flow style ({} and []) read better than on a line of their own.
      if (j.empty()) e << YAML::Flow;
      e << YAML::BeginMap;
      for (const auto& [k, v] : j.items()) {
        e << YAML::Key;
        EmitString(e, k);
        e << YAML::Value;
        EmitYaml(e, v);
      }
      e << YAML::EndMap;
      break;
    case Json::value_t::array:
      if (j.empty()) e << YAML::Flow;
      e << YAML::BeginSeq;
      for (const auto& v : j) EmitYaml(e, v);
      e << YAML::EndSeq;
      break;
    case Json::value_t::string:
      EmitString(e, j.get_ref<const std::string&>());
      break;
    case Json::value_t::boolean:
      e << (j.get<bool>() ? "true" : "false");
      break;
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned:
    case Json::value_t::number_float:
      // nlohmann prints the shortest text that reads back exactly; yaml-cpp would print
      // 0.1 as 0.10000000000000001.
      e << j.dump();
      break;
    default:
      e << YAML::Null;
      break;
  }
}

std::vector<const Json*> Items(const Json& j) {
  std::vector<const Json*> out;
  if (j.is_array()) {
    for (const auto& item : j) out.push_back(&item);
  } else if (j.is_object()) {
    out.push_back(&j);
  }
  return out;
}

// A field as text; missing fields are "" so that a newer or older server never breaks a table.
std::string Field(const Json& obj, std::string_view key) {
  if (!obj.is_object()) return "";
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return "";
  if (it->is_string()) return it->get<std::string>();
  return it->dump();
}

std::string OrNone(const std::string& s) { return s.empty() ? "<none>" : s; }

// Drops the milliseconds of an API timestamp: a person reading a table has no use for them.
std::string ShortTime(std::string t) {
  auto dot = t.find('.');
  auto zone = t.find_first_of("Zz+", dot);
  if (dot != std::string::npos && zone != std::string::npos) t.erase(dot, zone - dot);
  return t;
}

std::string Sanitize(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) c = '?';
  }
  return out;
}

// Terminal columns of UTF-8 text, counting each code point as one column.
size_t DisplayWidth(std::string_view s) {
  return static_cast<size_t>(std::count_if(
      s.begin(), s.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

template <typename T>
bool ParseInt(std::string_view s, T& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

}  // namespace

Result<OutputFormat> ParseOutputFormat(std::string_view name) {
  if (name == "table") return OutputFormat::kTable;
  if (name == "json") return OutputFormat::kJson;
  if (name == "yaml") return OutputFormat::kYaml;
  return Error(Code::kInvalidArgument, "unknown output format \"{}\" (use table, json or yaml)",
               name);
}

std::string ToJson(const Json& j) {
  // A node may report bytes that are not UTF-8; show them replaced rather than fail the command.
  return j.dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
}

std::string ToYaml(const Json& j) {
  YAML::Emitter e;
  EmitYaml(e, j);
  std::string text = e.c_str();
  // A literal block that ends the document already ends the text with its newline.
  if (!text.ends_with('\n')) text += '\n';
  return text;
}

std::string RenderTable(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths;
  std::vector<std::vector<std::string>> clean;
  for (const auto& row : rows) {
    auto& out = clean.emplace_back();
    for (size_t i = 0; i < row.size(); ++i) {
      out.push_back(Sanitize(row[i]));
      if (widths.size() <= i) widths.push_back(0);
      widths[i] = std::max(widths[i], DisplayWidth(out.back()));
    }
  }
  std::string text;
  for (const auto& row : clean) {
    for (size_t i = 0; i < row.size(); ++i) {
      text += row[i];
      if (i + 1 < row.size()) text.append(widths[i] - DisplayWidth(row[i]) + 3, ' ');
    }
    text += '\n';
  }
  return text;
}

std::optional<int64_t> ParseTimeMs(std::string_view s) {
  // YYYY-MM-DDTHH:MM:SS is 19 characters; a zone follows, fractional seconds may come first.
  if (s.size() < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') ||
      s[13] != ':' || s[16] != ':') {
    return std::nullopt;
  }
  // Unsigned, so that from_chars refuses signs inside the fixed-width fields.
  unsigned y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0;
  if (!ParseInt(s.substr(0, 4), y) || !ParseInt(s.substr(5, 2), mo) ||
      !ParseInt(s.substr(8, 2), d) || !ParseInt(s.substr(11, 2), h) ||
      !ParseInt(s.substr(14, 2), mi) || !ParseInt(s.substr(17, 2), sec)) {
    return std::nullopt;
  }
  std::chrono::year_month_day ymd{std::chrono::year(static_cast<int>(y)), std::chrono::month(mo),
                                  std::chrono::day(d)};
  if (!ymd.ok() || h > 23 || mi > 59 || sec > 60) return std::nullopt;
  std::string_view rest = s.substr(19);
  int64_t frac_ms = 0;
  if (rest.starts_with('.')) {
    size_t n = 1;
    int64_t scale = 100;
    while (n < rest.size() && IsDigit(rest[n])) {
      frac_ms += (rest[n] - '0') * scale;
      scale /= 10;
      ++n;
    }
    if (n == 1) return std::nullopt;
    rest.remove_prefix(n);
  }
  int64_t offset_min = 0;
  if (rest == "Z" || rest == "z") {
    offset_min = 0;
  } else if (rest.size() == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':') {
    unsigned oh = 0, om = 0;
    if (!ParseInt(rest.substr(1, 2), oh) || !ParseInt(rest.substr(4, 2), om)) return std::nullopt;
    offset_min = (rest[0] == '-' ? -1 : 1) * static_cast<int64_t>(oh * 60 + om);
  } else {
    return std::nullopt;
  }
  int64_t days = std::chrono::sys_days(ymd).time_since_epoch().count();
  int64_t secs = days * 86400 + int64_t{h} * 3600 + int64_t{mi} * 60 + sec - offset_min * 60;
  return secs * 1000 + frac_ms;
}

std::string FormatAge(int64_t ms) {
  int64_t s = ms / 1000;
  if (s < 0) return "0s";
  if (s < 60) return fmt::format("{}s", s);
  if (s < 3600) return fmt::format("{}m", s / 60);
  if (s < 86400) return fmt::format("{}h", s / 3600);
  constexpr int64_t kYear = int64_t{365} * 86400;
  if (s < kYear) return fmt::format("{}d", s / 86400);
  return fmt::format("{}y", s / kYear);
}

std::string NodesTable(const Json& nodes, int64_t now_ms) {
  auto items = Items(nodes);
  if (items.empty()) return "";
  std::vector<std::vector<std::string>> rows = {
      {"NAME", "STATUS", "REGION", "TYPE", "LABELS", "AGE", "VERSION"}};
  for (const Json* n : items) {
    std::string labels;
    if (auto it = n->find("labels"); it != n->end() && it->is_object()) {
      for (const auto& [k, v] : it->items()) {
        if (!labels.empty()) labels += ',';
        labels += k + "=" + (v.is_string() ? v.get<std::string>() : v.dump());
      }
    }
    std::string age = "never";
    if (auto t = ParseTimeMs(Field(*n, "lastHeartbeat"))) age = FormatAge(now_ms - *t);
    rows.push_back({Field(*n, "name"), OrNone(Field(*n, "status")), OrNone(Field(*n, "region")),
                    OrNone(Field(*n, "type")), OrNone(labels), age,
                    OrNone(Field(*n, "agentVersion"))});
  }
  return RenderTable(rows);
}

std::string TokensTable(const Json& tokens) {
  auto items = Items(tokens);
  if (items.empty()) return "";
  std::vector<std::vector<std::string>> rows = {{"ID", "STATE", "EXPIRES", "USES", "DESCRIPTION"}};
  for (const Json* t : items) {
    std::string expires = Field(*t, "expiresAt");
    rows.push_back({Field(*t, "id"), Field(*t, "state"),
                    expires.empty() ? "never" : ShortTime(expires), Field(*t, "uses"),
                    OrNone(Field(*t, "description"))});
  }
  return RenderTable(rows);
}

std::string EventsTable(const Json& events) {
  auto items = Items(events);
  if (items.empty()) return "";
  std::vector<std::vector<std::string>> rows = {{"TIME", "TYPE", "MESSAGE"}};
  for (const Json* e : items) {
    rows.push_back({ShortTime(Field(*e, "time")), Field(*e, "type"), Field(*e, "message")});
  }
  return RenderTable(rows);
}

std::string KeyValueLines(const Json& object) {
  std::string text;
  if (!object.is_object()) return text;
  for (const auto& [k, v] : object.items()) {
    text += Sanitize(k) + ": " + Sanitize(v.is_string() ? v.get<std::string>() : v.dump()) + "\n";
  }
  return text;
}

std::string TokenCreatedText(const Json& token) {
  std::string secret = Sanitize(Field(token, "token"));
  std::string expires = Field(token, "expiresAt");
  return fmt::format(
      "Bootstrap token {} created (expires: {}). It is shown only this once:\n"
      "\n"
      "    {}\n"
      "\n"
      "Join a node with:\n"
      "    verge-node --cloud <link address> --token {} --name <name>\n"
      "where <link address> is the cloud's link listener, HOST:PORT (\"link\" in "
      "DATA/listen.json).\n",
      Sanitize(Field(token, "id")), expires.empty() ? "never" : ShortTime(expires), secret, secret);
}

std::string DevicesTable(const Json& devices, int64_t now_ms) {
  auto items = Items(devices);
  if (items.empty()) return "";
  std::vector<std::vector<std::string>> rows = {
      {"NAME", "NODE", "METRICS", "MODBUS", "LABELS", "AGE"}};
  for (const Json* d : items) {
    std::string metrics;
    if (auto it = d->find("metrics"); it != d->end() && it->is_array()) {
      for (const auto& m : *it) {
        if (!metrics.empty()) metrics += ',';
        metrics += Field(m, "name");
      }
    }
    std::string modbus;
    if (auto it = d->find("modbus"); it != d->end() && it->is_object()) {
      modbus = Field(*it, "host") + ":" + Field(*it, "port");
    }
    std::string labels;
    if (auto it = d->find("labels"); it != d->end() && it->is_object()) {
      for (const auto& [k, v] : it->items()) {
        if (!labels.empty()) labels += ',';
        labels += k + "=" + (v.is_string() ? v.get<std::string>() : v.dump());
      }
    }
    std::string age = "";
    if (auto t = ParseTimeMs(Field(*d, "createdAt"))) age = FormatAge(now_ms - *t);
    rows.push_back({Field(*d, "name"), Field(*d, "node"), OrNone(metrics), OrNone(modbus),
                    OrNone(labels), OrNone(age)});
  }
  return RenderTable(rows);
}

std::string DeviceTokenText(const Json& device, bool rotated) {
  std::string name = Sanitize(Field(device, "name"));
  std::string node = Sanitize(Field(device, "node"));
  std::string token = Sanitize(Field(device, "token"));
  std::string head =
      rotated
          ? fmt::format(
                "New token for device {} (the old one works until node {} applies "
                "the change). It is shown only this once:",
                name, node)
          : fmt::format("Device {} declared on node {}. Its token is shown only this once:", name,
                        node);
  return fmt::format(
      "{}\n"
      "\n"
      "    {}\n"
      "\n"
      "The device sends readings to its node with it:\n"
      "    HTTP:  POST /data with \"Authorization: Bearer <token>\"\n"
      "    MQTT:  user name {}, password <token>, topic devices/{}/telemetry\n",
      head, token, name, name);
}

std::string PointsTable(const Json& points) {
  auto items = Items(points);
  if (items.empty()) return "";
  std::vector<std::vector<std::string>> rows = {{"TIME", "DEVICE", "METRIC", "VALUE"}};
  for (const Json* p : items) {
    rows.push_back({Field(*p, "ts"), Field(*p, "device"), Field(*p, "metric"), Field(*p, "value")});
  }
  return RenderTable(rows);
}

namespace {

std::string LabelsText(const Json& obj, std::string_view key) {
  std::string text;
  if (auto it = obj.find(key); it != obj.end() && it->is_object()) {
    for (const auto& [k, v] : it->items()) {
      if (!text.empty()) text += ',';
      text += k + "=" + (v.is_string() ? v.get<std::string>() : v.dump());
    }
  }
  return text;
}

const Json& Member(const Json& obj, std::string_view key) {
  static const Json kNull;
  if (!obj.is_object()) return kNull;
  auto it = obj.find(key);
  return it == obj.end() ? kNull : *it;
}

// At most `max` bytes, cut at a UTF-8 character boundary, with "..." when cut.
std::string Clip(std::string s, size_t max) {
  if (s.size() <= max) return s;
  size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  s.resize(n);
  return s + "...";
}

}  // namespace

std::string FormatMicros(uint64_t us) {
  if (us == 0) return "-";
  if (us < 1000) return fmt::format("{}us", us);
  if (us < 1'000'000) return fmt::format("{:.3g}ms", static_cast<double>(us) / 1e3);
  return fmt::format("{:.3g}s", static_cast<double>(us) / 1e6);
}

std::string RulesTable(const Json& rules, int64_t now_ms) {
  auto items = Items(rules);
  if (items.empty()) return "";
  std::vector<std::vector<std::string>> rows = {{"NAME", "STATE", "NODES", "SELECTOR", "AGE"}};
  for (const Json* r : items) {
    const Json& meta = Member(*r, "metadata");
    const Json& status = Member(*r, "status");
    const Json& nodes = Member(status, "nodes");
    std::string state = Member(status, "stopped") == true ? "stopped" : "running";
    std::string age;
    if (auto t = ParseTimeMs(Field(meta, "createdAt"))) age = FormatAge(now_ms - *t);
    std::string selector = LabelsText(Member(*r, "spec"), "nodeSelector");
    rows.push_back({Field(meta, "name"), state,
                    nodes.is_array() ? std::to_string(nodes.size()) : "",
                    selector.empty() ? "<all nodes>" : selector, OrNone(age)});
  }
  return RenderTable(rows);
}

std::string RuleStatusTable(const Json& statuses) {
  auto items = Items(statuses);
  if (items.empty()) return "";
  std::vector<std::vector<std::string>> rows = {{"NODE", "STATUS", "IN", "OUT", "EXCEPTIONS",
                                                 "DROPPED", "P50", "P99", "REPORTED",
                                                 "LAST-ERROR"}};
  for (const Json* s : items) {
    auto micros = [&](std::string_view key) {
      const Json& v = Member(*s, key);
      return v.is_number_unsigned() || v.is_number_integer() ? FormatMicros(v.get<uint64_t>())
                                                             : std::string("-");
    };
    std::string reported = Field(*s, "reportedAt");
    rows.push_back({Field(*s, "node"), Field(*s, "status"), Field(*s, "recordsIn"),
                    Field(*s, "recordsOut"), Field(*s, "exceptions"), Field(*s, "dropped"),
                    micros("latencyP50Us"), micros("latencyP99Us"),
                    reported.empty() ? "never" : ShortTime(reported),
                    Clip(Field(*s, "lastError"), 120)});
  }
  return RenderTable(rows);
}

std::string AlertsTable(const Json& alerts) {
  auto items = Items(alerts);
  if (items.empty()) return "";
  std::vector<std::vector<std::string>> rows = {
      {"TIME", "SEVERITY", "RULE", "NODE", "MESSAGE", "DATA"}};
  for (const Json* a : items) {
    const Json& data = Member(*a, "data");
    rows.push_back({ShortTime(Field(*a, "ts")), Field(*a, "severity"), Field(*a, "rule"),
                    Field(*a, "node"), OrNone(Clip(Field(*a, "message"), 80)),
                    data.is_null()
                        ? ""
                        : Clip(data.dump(-1, ' ', false, Json::error_handler_t::replace), 80)});
  }
  return RenderTable(rows);
}

std::string AppsTable(const Json& apps) {
  auto items = Items(apps);
  if (items.empty()) return "";
  std::vector<std::vector<std::string>> rows = {
      {"NAME", "TYPE", "VERSION", "REPLICAS", "READY", "REVISION", "ROLLOUT"}};
  for (const Json* a : items) {
    const Json& spec = Member(*a, "spec");
    const Json& rollout = Member(*a, "rollout");
    rows.push_back({Field(*a, "name"), Field(spec, "type"), OrNone(Field(spec, "version")),
                    Field(*a, "replicas"), Field(*a, "readyReplicas"), Field(*a, "revision"),
                    Field(rollout, "state")});
  }
  return RenderTable(rows);
}

std::string AppDetail(const Json& app) {
  const Json& spec = Member(app, "spec");
  const Json& rollout = Member(app, "rollout");
  std::string out = fmt::format(
      "name:      {}\ntype:      {}\nversion:   {}\nreplicas:  {} desired, {} scheduled, {} "
      "ready\nrevision:  {} (stable {})\nrollout:   {}: {}\n",
      Field(app, "name"), Field(spec, "type"), OrNone(Field(spec, "version")),
      Field(app, "replicas"), Field(app, "scheduledReplicas"), Field(app, "readyReplicas"),
      Field(app, "revision"), Field(app, "stableRevision"), Field(rollout, "state"),
      Field(rollout, "message"));
  if (std::string u = Field(app, "unschedulable"); !u.empty()) out += "unplaced:  " + u + "\n";
  const Json& places = Member(app, "placements");
  if (places.is_array() && !places.empty()) {
    std::vector<std::vector<std::string>> rows = {
        {"NODE", "REPLICA", "REVISION", "STATUS", "READY", "RESTARTS", "LAST-ERROR"}};
    for (const auto& p : places) {
      rows.push_back({Field(p, "node"), Field(p, "id"), Field(p, "revision"), Field(p, "status"),
                      Member(p, "ready") == true ? "yes" : "no", Field(p, "restarts"),
                      Clip(Field(p, "lastError"), 100)});
    }
    out += "\n" + RenderTable(rows);
  }
  return out;
}

std::string ExplainTable(const Json& explain) {
  std::string out;
  if (std::string r = Field(explain, "unplacedReason"); !r.empty()) {
    out += fmt::format("{} replicas cannot be placed: {}\n\n", Field(explain, "unplaced"), r);
  }
  std::vector<std::vector<std::string>> rows = {
      {"NODE", "FEASIBLE", "SCORE", "BALANCE", "REGION", "SPREAD", "REPLICAS", "REASON"}};
  const Json& nodes = Member(explain, "nodes");
  if (!nodes.is_array()) return out;
  auto num = [](const Json& v) {
    return v.is_number() ? fmt::format("{:.1f}", v.get<double>()) : std::string("-");
  };
  for (const auto& n : nodes) {
    const Json& scores = Member(n, "scores");
    bool ok = Member(n, "feasible") == true;
    rows.push_back({Field(n, "node"), ok ? "yes" : "no", ok ? num(Member(n, "score")) : "-",
                    ok ? num(Member(scores, "balance")) : "-",
                    ok ? num(Member(scores, "region")) : "-",
                    ok ? num(Member(scores, "spread")) : "-", Field(n, "replicas"),
                    Clip(Field(n, "reason"), 100)});
  }
  return out + RenderTable(rows);
}

std::string RolloutLines(const Json& rollout) {
  std::string out = fmt::format(
      "app {}: revision {} {} ({} of {} replicas updated and ready; stable revision {})\n{}\n",
      Field(rollout, "name"), Field(rollout, "revision"), Field(rollout, "state"),
      Field(rollout, "updatedReplicas"), Field(rollout, "replicas"),
      Field(rollout, "stableRevision"), Field(rollout, "message"));
  const Json& history = Member(rollout, "history");
  if (history.is_array() && !history.empty()) {
    std::vector<std::vector<std::string>> rows = {{"REVISION", "CREATED"}};
    for (const auto& h : history) rows.push_back({Field(h, "revision"), Field(h, "createdAt")});
    out += "\n" + RenderTable(rows);
  }
  return out;
}

std::string ArtifactsTable(const Json& artifacts) {
  auto items = Items(artifacts);
  if (items.empty()) return "";
  std::vector<std::vector<std::string>> rows = {{"SHA256", "NAME", "SIZE", "CREATED"}};
  for (const Json* a : items) {
    rows.push_back({Field(*a, "sha256"), OrNone(Field(*a, "name")), Field(*a, "size"),
                    ShortTime(Field(*a, "createdAt"))});
  }
  return RenderTable(rows);
}

}  // namespace verge::ctl
