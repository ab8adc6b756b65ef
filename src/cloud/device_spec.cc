#include "cloud/device_spec.h"

#include <cmath>
#include <set>

#include "cloud/api_json.h"
#include "common/clock.h"
#include "common/config_schema.h"
#include "common/duration.h"
#include "common/labels.h"

namespace verge::cloud {
namespace {

using json = nlohmann::json;

constexpr size_t kMaxNameLength = 64;
constexpr size_t kMaxMetrics = 1000;
constexpr size_t kMaxRegisters = 1000;
constexpr size_t kMaxUnitLength = 32;
constexpr size_t kMaxHostLength = 253;

// Error messages quote what the user sent, but never more than this of it.
std::string Shown(std::string_view s) {
  return fmt::format("{:?}", s.size() > 80 ? s.substr(0, 80) : s);
}

// Collects every problem of one document, each prefixed with where it is ("metrics[2].min").
class Checker {
 public:
  void Add(const std::string& where, const std::string& what) {
    errors_.push_back(where.empty() ? what : where + " " + what);
  }
  const std::vector<std::string>& errors() const { return errors_; }

  // Reports keys of `obj` not in `known`.
  void Keys(const json& obj, const std::string& where,
            std::initializer_list<std::string_view> known) {
    for (const auto& [k, v] : obj.items()) {
      bool ok = false;
      for (auto n : known) ok = ok || k == n;
      if (!ok) {
        Add("", where.empty() ? fmt::format("unknown field {}", Shown(k))
                              : fmt::format("unknown field {} in {}", Shown(k), where));
      }
    }
  }

  std::optional<std::string> Str(const json& obj, const char* key, const std::string& where) {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return std::nullopt;
    if (!it->is_string()) {
      Add(Path(where, key), "must be a string");
      return std::nullopt;
    }
    return it->get<std::string>();
  }

  std::optional<double> Num(const json& obj, const char* key, const std::string& where) {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return std::nullopt;
    if (!it->is_number()) {
      Add(Path(where, key), "must be a number");
      return std::nullopt;
    }
    double v = it->get<double>();
    if (!std::isfinite(v)) {
      Add(Path(where, key), "must be finite");
      return std::nullopt;
    }
    return v;
  }

  // An integer in [min, max]; floats with a fraction are refused rather than truncated.
  std::optional<int64_t> Int(const json& obj, const char* key, const std::string& where,
                             int64_t min, int64_t max) {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return std::nullopt;
    int64_t v = 0;
    if (it->is_number_integer()) {
      if (it->is_number_unsigned() && it->get<uint64_t>() > uint64_t{INT64_MAX}) {
        Add(Path(where, key), fmt::format("must be between {} and {}", min, max));
        return std::nullopt;
      }
      v = it->get<int64_t>();
    } else if (it->is_number_float() && std::isfinite(it->get<double>()) &&
               std::trunc(it->get<double>()) == it->get<double>() &&
               std::fabs(it->get<double>()) < 9e15) {
      v = static_cast<int64_t>(it->get<double>());
    } else {
      Add(Path(where, key), "must be an integer");
      return std::nullopt;
    }
    if (v < min || v > max) {
      Add(Path(where, key), fmt::format("must be between {} and {}", min, max));
      return std::nullopt;
    }
    return v;
  }

  std::optional<bool> Bool(const json& obj, const char* key, const std::string& where) {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return std::nullopt;
    if (!it->is_boolean()) {
      Add(Path(where, key), "must be true or false");
      return std::nullopt;
    }
    return it->get<bool>();
  }

  // A duration string ("30s"); `positive` refuses "0s".
  std::optional<int64_t> Dur(const json& obj, const char* key, const std::string& where,
                             bool positive) {
    auto s = Str(obj, key, where);
    if (!s) return std::nullopt;
    auto d = ParseDuration(*s);
    if (!d.ok()) {
      Add(Path(where, key), d.status().message());
      return std::nullopt;
    }
    if (positive && d->count() <= 0) {
      Add(Path(where, key), "must be longer than 0s");
      return std::nullopt;
    }
    return d->count();
  }

  // One of `allowed`, else an error listing them.
  std::optional<std::string> Enum(const json& obj, const char* key, const std::string& where,
                                  std::initializer_list<std::string_view> allowed) {
    auto s = Str(obj, key, where);
    if (!s) return std::nullopt;
    for (auto a : allowed) {
      if (*s == a) return s;
    }
    Add(Path(where, key),
        fmt::format("must be one of {} (not {})", fmt::join(allowed, ", "), Shown(*s)));
    return std::nullopt;
  }

  static std::string Path(const std::string& where, const char* key) {
    return where.empty() ? key : where + "." + key;
  }

 private:
  std::vector<std::string> errors_;
};

bool IsPrintable(std::string_view s) {
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) return false;
  }
  return true;
}

void ParseUplink(Checker& c, const json& j, const std::string& where, const MetricSpec& metric,
                 UplinkFilterSpec& out) {
  if (!j.is_object()) {
    c.Add(where, "must be an object");
    return;
  }
  c.Keys(j, where, {"deadbandAbs", "deadbandPct", "sampleEvery", "maxSilence", "swingingDoor"});
  if (auto v = c.Num(j, "deadbandAbs", where)) {
    if (*v < 0) c.Add(where + ".deadbandAbs", "must not be negative");
    out.deadband_abs = *v;
  }
  if (auto v = c.Num(j, "deadbandPct", where)) {
    if (*v < 0 || *v > 100) c.Add(where + ".deadbandPct", "must be between 0 and 100");
    if (*v > 0 && (!metric.min || !metric.max)) {
      c.Add(where + ".deadbandPct",
            "needs both min and max on the metric (it is a % of max - min)");
    }
    out.deadband_pct = *v;
  }
  if (auto v = c.Int(j, "sampleEvery", where, 0, 1'000'000)) {
    out.sample_every = static_cast<uint32_t>(*v);
  }
  if (auto v = c.Dur(j, "maxSilence", where, false)) {
    if (*v > int64_t{UINT32_MAX}) {
      c.Add(where + ".maxSilence", "must be at most 49 days");
    } else {
      out.max_silence_ms = *v;
    }
  }
  if (auto v = c.Num(j, "swingingDoor", where)) {
    if (*v < 0) c.Add(where + ".swingingDoor", "must not be negative");
    out.swinging_door = *v;
  }
}

void ParseMetric(Checker& c, const json& j, const std::string& where, MetricSpec& m) {
  if (!j.is_object()) {
    c.Add(where, "must be an object");
    return;
  }
  c.Keys(j, where, {"name", "type", "min", "max", "unit", "uplink"});
  if (auto n = c.Str(j, "name", where)) {
    m.name = *n;
    if (!IsValidDeviceName(m.name)) {
      c.Add(where + ".name", fmt::format("{} must be 1-{} characters of [A-Za-z0-9_.:-]",
                                         Shown(m.name), kMaxNameLength));
    }
  } else if (!j.contains("name") || j["name"].is_null()) {
    c.Add(where + ".name", "is required");
  }
  if (auto t = c.Enum(j, "type", where, {"float", "int", "bool"})) m.type = *t;
  m.min = c.Num(j, "min", where);
  m.max = c.Num(j, "max", where);
  if (m.min && m.max && !(*m.min < *m.max)) c.Add(where, "min must be less than max");
  if (auto u = c.Str(j, "unit", where)) {
    m.unit = *u;
    if (m.unit.size() > kMaxUnitLength || !IsPrintable(m.unit)) {
      c.Add(where + ".unit",
            fmt::format("must be at most {} printable characters", kMaxUnitLength));
    }
    if (!m.unit.empty() && m.type == "bool") c.Add(where + ".unit", "makes no sense on a bool");
  }
  if (auto it = j.find("uplink"); it != j.end() && !it->is_null()) {
    ParseUplink(c, *it, where + ".uplink", m, m.uplink);
  }
}

int RegisterWords(const std::string& type) {
  return type == "int32" || type == "uint32" || type == "float32" ? 2 : 1;
}

void ParseRegister(Checker& c, const json& j, const std::string& where, ModbusRegisterSpec& r) {
  if (!j.is_object()) {
    c.Add(where, "must be an object");
    return;
  }
  c.Keys(j, where,
         {"metric", "address", "kind", "type", "byteOrder", "wordOrder", "scale", "offset",
          "interval"});
  if (auto m = c.Str(j, "metric", where)) {
    r.metric = *m;
    if (!IsValidDeviceName(r.metric)) {
      c.Add(where + ".metric", fmt::format("{} must be 1-{} characters of [A-Za-z0-9_.:-]",
                                           Shown(r.metric), kMaxNameLength));
    }
  } else if (!j.contains("metric") || j["metric"].is_null()) {
    c.Add(where + ".metric", "is required");
  }
  if (auto k = c.Enum(j, "kind", where, {"holding", "input"})) r.kind = *k;
  if (auto t = c.Enum(j, "type", where, {"int16", "uint16", "int32", "uint32", "float32"})) {
    r.type = *t;
  }
  if (auto o = c.Enum(j, "byteOrder", where, {"big", "little"})) r.byte_order = *o;
  if (auto o = c.Enum(j, "wordOrder", where, {"big", "little"})) r.word_order = *o;
  if (auto a = c.Int(j, "address", where, 0, 65535)) {
    r.address = static_cast<uint32_t>(*a);
    if (r.address + RegisterWords(r.type) - 1 > 65535) {
      c.Add(where + ".address", fmt::format("{} needs 2 registers, so at most 65534", r.type));
    }
  } else if (!j.contains("address") || j["address"].is_null()) {
    c.Add(where + ".address", "is required");
  }
  if (auto s = c.Num(j, "scale", where)) {
    if (*s == 0) c.Add(where + ".scale", "must not be 0");
    r.scale = *s;
  }
  if (auto o = c.Num(j, "offset", where)) r.offset = *o;
  if (auto i = c.Dur(j, "interval", where, true)) {
    if (*i < 10 || *i > int64_t{UINT32_MAX}) {
      c.Add(where + ".interval", "must be between 10ms and 49 days");
    }
    r.interval_ms = *i;
  }
}

void ParseModbus(Checker& c, const json& j, ModbusSpec& m) {
  const std::string where = "modbus";
  if (!j.is_object()) {
    c.Add(where, "must be an object");
    return;
  }
  c.Keys(j, where, {"host", "port", "unitId", "timeout", "registers"});
  if (auto h = c.Str(j, "host", where)) m.host = *h;
  if (m.host.empty()) {
    c.Add("modbus.host", "is required");
  } else if (m.host.size() > kMaxHostLength || !IsPrintable(m.host) ||
             m.host.find(' ') != std::string::npos) {
    c.Add("modbus.host", fmt::format("{} is not a host name or address", Shown(m.host)));
  }
  if (auto p = c.Int(j, "port", where, 1, 65535)) m.port = static_cast<uint32_t>(*p);
  if (auto u = c.Int(j, "unitId", where, 0, 255)) {
    if (*u > 247 && *u < 255) {
      c.Add("modbus.unitId", "must be 0..247 or 255 (248..254 are reserved)");
    }
    m.unit_id = static_cast<uint32_t>(*u);
  }
  if (auto t = c.Dur(j, "timeout", where, true)) {
    if (*t > 600'000) c.Add("modbus.timeout", "must be at most 10m");
    m.timeout_ms = *t;
  }
  auto it = j.find("registers");
  if (it == j.end() || !it->is_array() || it->empty()) {
    c.Add("modbus.registers", "must be a non-empty array (what should be polled?)");
    return;
  }
  if (it->size() > kMaxRegisters) {
    c.Add("modbus.registers", fmt::format("has more than {} entries", kMaxRegisters));
    return;
  }
  for (size_t i = 0; i < it->size(); ++i) {
    ParseRegister(c, (*it)[i], fmt::format("modbus.registers[{}]", i), m.registers.emplace_back());
  }
}

// Parses the spec fields of `j` (metrics, allowUndeclared, modbus) into `spec`.
void ParseSpec(Checker& c, const json& j, DeviceSpec& spec) {
  if (auto it = j.find("metrics"); it != j.end() && !it->is_null()) {
    if (!it->is_array()) {
      c.Add("metrics", "must be an array");
    } else if (it->size() > kMaxMetrics) {
      c.Add("metrics", fmt::format("has more than {} entries", kMaxMetrics));
    } else {
      std::set<std::string> seen;
      for (size_t i = 0; i < it->size(); ++i) {
        std::string where = fmt::format("metrics[{}]", i);
        auto& m = spec.metrics.emplace_back();
        ParseMetric(c, (*it)[i], where, m);
        if (!m.name.empty() && !seen.insert(m.name).second) {
          c.Add(where + ".name", fmt::format("{} is declared twice", Shown(m.name)));
        }
      }
    }
  }
  if (auto b = c.Bool(j, "allowUndeclared", "")) spec.allow_undeclared = *b;
  if (auto it = j.find("modbus"); it != j.end() && !it->is_null()) {
    ParseModbus(c, *it, spec.modbus.emplace());
  }
  if (spec.modbus && !spec.allow_undeclared) {
    std::set<std::string> declared;
    for (const auto& m : spec.metrics) declared.insert(m.name);
    for (size_t i = 0; i < spec.modbus->registers.size(); ++i) {
      const auto& r = spec.modbus->registers[i];
      if (!r.metric.empty() && !declared.count(r.metric)) {
        c.Add(fmt::format("modbus.registers[{}].metric", i),
              fmt::format("{} is not in metrics, and allowUndeclared is false", Shown(r.metric)));
      }
    }
  }
}

json OptionalNumber(const std::optional<double>& v) { return v ? json(*v) : json(); }

}  // namespace

bool IsValidDeviceName(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameLength) return false;
  for (char c : name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == ':' ||
          c == '-')) {
      return false;
    }
  }
  return true;
}

Result<DeviceRequest> ParseDeviceRequest(
    std::string_view body, std::string_view path_name,
    const std::function<bool(const std::string&)>& node_exists) {
  if (body.size() > kMaxApiBodyBytes) {
    return Error(Code::kResourceExhausted, "request body larger than {} bytes", kMaxApiBodyBytes);
  }
  json j = json::parse(body, nullptr, false);
  if (j.is_discarded()) return Error(Code::kInvalidArgument, "request body is not valid JSON");
  if (!j.is_object()) return Error(Code::kInvalidArgument, "request body must be a JSON object");
  Checker c;
  c.Keys(
      j, "",
      {"name", "node", "labels", "metrics", "allowUndeclared", "modbus", "createdAt", "updatedAt"});
  DeviceRequest req;
  auto name = c.Str(j, "name", "");
  if (path_name.empty()) {
    if (!name) {
      if (!j.contains("name") || j["name"].is_null()) c.Add("name", "is required");
    } else {
      req.name = *name;
    }
  } else {
    req.name = std::string(path_name);
    if (name && *name != path_name) {
      c.Add("name", fmt::format("{} differs from the name in the path ({}); devices cannot be "
                                "renamed",
                                Shown(*name), Shown(path_name)));
    }
  }
  if (!req.name.empty() && !IsValidDeviceName(req.name)) {
    c.Add("name", fmt::format("{} must be 1-{} characters of [A-Za-z0-9_.:-]", Shown(req.name),
                              kMaxNameLength));
  }
  if (auto node = c.Str(j, "node", "")) {
    req.node = *node;
    if (auto st = ValidateNodeName(req.node); !st.ok()) {
      c.Add("", st.message());
    } else if (node_exists && !node_exists(req.node)) {
      c.Add("node", fmt::format("{} is not a registered node", Shown(req.node)));
    }
  } else if (!j.contains("node") || j["node"].is_null()) {
    c.Add("node", "is required");
  }
  if (auto it = j.find("labels"); it != j.end() && !it->is_null()) {
    if (!it->is_object()) {
      c.Add("labels", "must be an object of strings");
    } else {
      for (const auto& [k, v] : it->items()) {
        if (!v.is_string()) {
          c.Add("", fmt::format("label {} must be a string", Shown(k)));
          continue;
        }
        if (auto st = ValidateLabel(k, v.get_ref<const std::string&>()); !st.ok()) {
          c.Add("", st.message());
          continue;
        }
        req.spec.labels[k] = v.get<std::string>();
      }
    }
  }
  ParseSpec(c, j, req.spec);
  if (!c.errors().empty()) return Status(ValidationResult("invalid device", c.errors()));
  return req;
}

json DeviceSpecJson(const DeviceSpec& spec) {
  json metrics = json::array();
  for (const auto& m : spec.metrics) {
    metrics.push_back({{"name", m.name},
                       {"type", m.type},
                       {"min", OptionalNumber(m.min)},
                       {"max", OptionalNumber(m.max)},
                       {"unit", m.unit},
                       {"uplink",
                        {{"deadbandAbs", m.uplink.deadband_abs},
                         {"deadbandPct", m.uplink.deadband_pct},
                         {"sampleEvery", m.uplink.sample_every},
                         {"maxSilence", FormatDuration(Millis(m.uplink.max_silence_ms))},
                         {"swingingDoor", m.uplink.swinging_door}}}});
  }
  json modbus;
  if (spec.modbus) {
    json regs = json::array();
    for (const auto& r : spec.modbus->registers) {
      regs.push_back({{"metric", r.metric},
                      {"address", r.address},
                      {"kind", r.kind},
                      {"type", r.type},
                      {"byteOrder", r.byte_order},
                      {"wordOrder", r.word_order},
                      {"scale", r.scale},
                      {"offset", r.offset},
                      {"interval", FormatDuration(Millis(r.interval_ms))}});
    }
    modbus = {{"host", spec.modbus->host},
              {"port", spec.modbus->port},
              {"unitId", spec.modbus->unit_id},
              {"timeout", FormatDuration(Millis(spec.modbus->timeout_ms))},
              {"registers", std::move(regs)}};
  }
  return {{"metrics", std::move(metrics)},
          {"allowUndeclared", spec.allow_undeclared},
          {"modbus", std::move(modbus)}};
}

Result<DeviceSpec> DeviceSpecFromJson(const json& j) {
  if (!j.is_object()) return Error(Code::kDataLoss, "device spec is not a JSON object");
  Checker c;
  DeviceSpec spec;
  ParseSpec(c, j, spec);
  if (!c.errors().empty()) {
    return Error(Code::kDataLoss, "stored device spec is invalid: {}", fmt::join(c.errors(), "; "));
  }
  return spec;
}

json DeviceJson(const Device& d) {
  json j = {{"name", d.name}, {"node", d.node}, {"labels", d.spec.labels}};
  json spec = DeviceSpecJson(d.spec);
  for (auto& [k, v] : spec.items()) j[k] = std::move(v);
  j["createdAt"] = FormatTimeMs(d.created_ms);
  j["updatedAt"] = FormatTimeMs(d.updated_ms);
  return j;
}

void DeviceToProto(const Device& d, v1::Device* out) {
  out->set_name(d.name);
  for (const auto& [k, v] : d.spec.labels) (*out->mutable_labels())[k] = v;
  out->set_token_sha256(d.token_sha256);
  out->set_mqtt_password_hash(d.mqtt_password_hash);
  out->set_updated_ms(d.updated_ms);
  for (const auto& m : d.spec.metrics) {
    auto* pm = out->add_metrics();
    pm->set_name(m.name);
    pm->set_type(m.type);
    if (m.min) pm->set_min(*m.min);
    if (m.max) pm->set_max(*m.max);
    pm->set_unit(m.unit);
    const auto& f = m.uplink;
    if (!(f == UplinkFilterSpec{})) {
      auto* pf = pm->mutable_uplink();
      pf->set_deadband_abs(f.deadband_abs);
      pf->set_deadband_pct(f.deadband_pct);
      pf->set_sample_every(f.sample_every);
      pf->set_max_silence_ms(static_cast<uint32_t>(f.max_silence_ms));
      pf->set_swinging_door(f.swinging_door);
    }
  }
  out->set_allow_undeclared(d.spec.allow_undeclared);
  if (d.spec.modbus) {
    const auto& m = *d.spec.modbus;
    auto* pm = out->mutable_modbus();
    pm->set_host(m.host);
    pm->set_port(m.port);
    pm->set_unit_id(m.unit_id);
    pm->set_timeout_ms(static_cast<uint32_t>(m.timeout_ms));
    for (const auto& r : m.registers) {
      auto* pr = pm->add_registers();
      pr->set_metric(r.metric);
      pr->set_address(r.address);
      pr->set_kind(r.kind);
      pr->set_type(r.type);
      pr->set_byte_order(r.byte_order);
      pr->set_word_order(r.word_order);
      pr->set_scale(r.scale);
      pr->set_offset(r.offset);
      pr->set_interval_ms(static_cast<uint32_t>(r.interval_ms));
    }
  }
}

}  // namespace verge::cloud
