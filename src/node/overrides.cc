#include "node/overrides.h"

#include <algorithm>
#include <filesystem>
#include <functional>
#include <set>

#include "common/clock.h"
#include "common/fs.h"

namespace verge::node {

using json = nlohmann::json;

std::string_view OverrideKindName(OverrideKind k) {
  switch (k) {
    case OverrideKind::kRule:
      return "rule";
    case OverrideKind::kDevice:
      return "device";
    case OverrideKind::kApp:
      return "app";
  }
  return "rule";
}

Result<OverrideKind> ParseOverrideKind(std::string_view s) {
  if (s == "rule") return OverrideKind::kRule;
  if (s == "device") return OverrideKind::kDevice;
  if (s == "app") return OverrideKind::kApp;
  return Error(Code::kInvalidArgument, "override kind {:?} is not rule, device or app", s);
}

std::string_view OverridePolicyName(OverridePolicy p) {
  switch (p) {
    case OverridePolicy::kCloudWins:
      return "cloud-wins";
    case OverridePolicy::kEdgeWins:
      return "edge-wins";
    case OverridePolicy::kLastWriterWins:
      return "last-writer-wins";
    case OverridePolicy::kMerge:
      return "merge";
  }
  return "cloud-wins";
}

Result<OverridePolicy> ParseOverridePolicy(std::string_view s) {
  if (s == "cloud-wins") return OverridePolicy::kCloudWins;
  if (s == "edge-wins") return OverridePolicy::kEdgeWins;
  if (s == "last-writer-wins") return OverridePolicy::kLastWriterWins;
  if (s == "merge") return OverridePolicy::kMerge;
  return Error(Code::kInvalidArgument,
               "policy {:?} is not cloud-wins, edge-wins, last-writer-wins or merge", s);
}

OverridePolicy OverridePolicies::For(OverrideKind k) const {
  switch (k) {
    case OverrideKind::kRule:
      return rule;
    case OverrideKind::kDevice:
      return device;
    case OverrideKind::kApp:
      return app;
  }
  return rule;
}

Result<OverridePolicies> ParseOverridePolicies(const std::map<std::string, std::string>& m) {
  OverridePolicies out;
  std::vector<std::string> errors;
  for (const auto& [kind, policy] : m) {
    auto k = ParseOverrideKind(kind);
    auto p = ParseOverridePolicy(policy);
    if (!k.ok()) errors.push_back(k.status().message());
    if (!p.ok()) errors.push_back(fmt::format("{}: {}", kind, p.status().message()));
    if (!k.ok() || !p.ok()) continue;
    switch (*k) {
      case OverrideKind::kRule:
        out.rule = *p;
        break;
      case OverrideKind::kDevice:
        out.device = *p;
        break;
      case OverrideKind::kApp:
        out.app = *p;
        break;
    }
  }
  if (!errors.empty()) {
    std::string msg;
    for (const auto& e : errors) msg += (msg.empty() ? "" : "; ") + e;
    return Error(Code::kInvalidArgument, "overridePolicies: {}", msg);
  }
  return out;
}

namespace {

json RuleJson(const v1::Rule& r) {
  json j = {{"sql", r.sql()}, {"streams", r.streams()}, {"stopped", r.stopped()}};
  j["actions"] = json::parse(r.actions_json(), nullptr, false);
  if (j["actions"].is_discarded()) j["actions"] = json::array();
  if (!r.options_json().empty()) {
    json o = json::parse(r.options_json(), nullptr, false);
    if (!o.is_discarded()) j["options"] = o;
  }
  return j;
}

Status ApplyRuleJson(const json& j, v1::Rule* r) {
  if (!j.is_object()) return Error(Code::kInvalidArgument, "a rule override is a JSON object");
  if (auto it = j.find("sql"); it != j.end()) {
    if (!it->is_string()) return Error(Code::kInvalidArgument, "\"sql\" must be a string");
    r->set_sql(it->get<std::string>());
  }
  if (auto it = j.find("streams"); it != j.end()) {
    if (!it->is_array()) return Error(Code::kInvalidArgument, "\"streams\" must be an array");
    r->clear_streams();
    for (const auto& s : *it) {
      if (!s.is_string()) return Error(Code::kInvalidArgument, "\"streams\" holds strings");
      r->add_streams(s.get<std::string>());
    }
  }
  if (auto it = j.find("actions"); it != j.end()) r->set_actions_json(it->dump());
  if (auto it = j.find("options"); it != j.end())
    r->set_options_json(it->is_null() ? "" : it->dump());
  if (auto it = j.find("stopped"); it != j.end()) {
    if (!it->is_boolean())
      return Error(Code::kInvalidArgument, "\"stopped\" must be true or false");
    r->set_stopped(it->get<bool>());
  }
  for (const auto& [k, v] : j.items()) {
    if (k != "sql" && k != "streams" && k != "actions" && k != "options" && k != "stopped")
      return Error(Code::kInvalidArgument,
                   "unknown field {:?} (a rule has sql, streams, actions, options, stopped)", k);
  }
  return Status::Ok();
}

// Metrics keyed by name, so that merges work metric by metric. The wire messages are lite
// (no reflection), so the JSON is written out field by field.
json MetricJson(const v1::DeviceMetric& m) {
  json j = {{"type", m.type()}, {"unit", m.unit()}};
  j["min"] = m.has_min() ? json(m.min()) : json(nullptr);
  j["max"] = m.has_max() ? json(m.max()) : json(nullptr);
  const auto& u = m.uplink();
  j["uplink"] = {{"deadbandAbs", u.deadband_abs()},
                 {"deadbandPct", u.deadband_pct()},
                 {"sampleEvery", u.sample_every()},
                 {"maxSilenceMs", u.max_silence_ms()},
                 {"swingingDoor", u.swinging_door()}};
  return j;
}

json ModbusJson(const v1::ModbusSource& m) {
  json regs = json::array();
  for (const auto& r : m.registers()) {
    regs.push_back({{"metric", r.metric()},
                    {"address", r.address()},
                    {"kind", r.kind()},
                    {"type", r.type()},
                    {"byteOrder", r.byte_order()},
                    {"wordOrder", r.word_order()},
                    {"scale", r.scale()},
                    {"offset", r.offset()},
                    {"intervalMs", r.interval_ms()}});
  }
  return {{"host", m.host()},
          {"port", m.port()},
          {"unitId", m.unit_id()},
          {"timeoutMs", m.timeout_ms()},
          {"registers", regs}};
}

json DeviceJson(const v1::Device& d) {
  json j = json::object();
  j["labels"] = json(std::map<std::string, std::string>(d.labels().begin(), d.labels().end()));
  j["allowUndeclared"] = d.allow_undeclared();
  json metrics = json::object();
  for (const auto& m : d.metrics()) metrics[m.name()] = MetricJson(m);
  j["metrics"] = metrics;
  j["modbus"] = d.has_modbus() ? ModbusJson(d.modbus()) : json(nullptr);
  return j;
}

// Reads the fields of `j` through `fields` (name -> setter), refusing unknown ones and values
// of the wrong type with the field's path.
using Setter = std::function<Status(const json&)>;
Status ReadFields(const json& j, const std::string& what,
                  const std::vector<std::pair<std::string, Setter>>& fields) {
  if (!j.is_object()) return Error(Code::kInvalidArgument, "{} must be an object", what);
  for (const auto& item : j.items()) {
    const std::string& k = item.key();
    const json& v = item.value();
    auto it =
        std::find_if(fields.begin(), fields.end(), [&](const auto& f) { return f.first == k; });
    if (it == fields.end()) return Error(Code::kInvalidArgument, "{}: unknown field {:?}", what, k);
    if (auto st = it->second(v); !st.ok())
      return Error(Code::kInvalidArgument, "{}.{}: {}", what, k, st.message());
  }
  return Status::Ok();
}

Setter Num(std::function<void(double)> set) {
  return [set = std::move(set)](const json& v) {
    if (!v.is_number()) return Error(Code::kInvalidArgument, "must be a number");
    set(v.get<double>());
    return Status::Ok();
  };
}
Setter UInt(std::function<void(uint32_t)> set) {
  return [set = std::move(set)](const json& v) {
    if (!v.is_number_unsigned() || v.get<uint64_t>() > UINT32_MAX)
      return Error(Code::kInvalidArgument, "must be a whole number from 0 to {}", UINT32_MAX);
    set(static_cast<uint32_t>(v.get<uint64_t>()));
    return Status::Ok();
  };
}
Setter Str(std::function<void(std::string)> set) {
  return [set = std::move(set)](const json& v) {
    if (!v.is_string()) return Error(Code::kInvalidArgument, "must be a string");
    set(v.get<std::string>());
    return Status::Ok();
  };
}

Status ApplyMetricJson(const json& j, v1::DeviceMetric* m, const std::string& what) {
  auto* u = m->mutable_uplink();
  return ReadFields(j, what,
                    {{"type", Str([m](std::string s) { m->set_type(std::move(s)); })},
                     {"unit", Str([m](std::string s) { m->set_unit(std::move(s)); })},
                     {"min",
                      [m](const json& v) {
                        if (v.is_null()) {
                          m->clear_min();
                          return Status::Ok();
                        }
                        return Num([m](double x) { m->set_min(x); })(v);
                      }},
                     {"max",
                      [m](const json& v) {
                        if (v.is_null()) {
                          m->clear_max();
                          return Status::Ok();
                        }
                        return Num([m](double x) { m->set_max(x); })(v);
                      }},
                     {"uplink", [u, what](const json& v) {
                        return ReadFields(
                            v, what + ".uplink",
                            {{"deadbandAbs", Num([u](double x) { u->set_deadband_abs(x); })},
                             {"deadbandPct", Num([u](double x) { u->set_deadband_pct(x); })},
                             {"sampleEvery", UInt([u](uint32_t x) { u->set_sample_every(x); })},
                             {"maxSilenceMs", UInt([u](uint32_t x) { u->set_max_silence_ms(x); })},
                             {"swingingDoor", Num([u](double x) { u->set_swinging_door(x); })}});
                      }}});
}

Status ApplyModbusJson(const json& j, v1::ModbusSource* m) {
  return ReadFields(
      j, "modbus",
      {{"host", Str([m](std::string s) { m->set_host(std::move(s)); })},
       {"port", UInt([m](uint32_t x) { m->set_port(x); })},
       {"unitId", UInt([m](uint32_t x) { m->set_unit_id(x); })},
       {"timeoutMs", UInt([m](uint32_t x) { m->set_timeout_ms(x); })},
       {"registers", [m](const json& v) {
          if (!v.is_array()) return Error(Code::kInvalidArgument, "must be an array");
          m->clear_registers();
          for (size_t i = 0; i < v.size(); ++i) {
            auto* r = m->add_registers();
            VERGE_RETURN_IF_ERROR(ReadFields(
                v[i], fmt::format("register {}", i),
                {{"metric", Str([r](std::string s) { r->set_metric(std::move(s)); })},
                 {"address", UInt([r](uint32_t x) { r->set_address(x); })},
                 {"kind", Str([r](std::string s) { r->set_kind(std::move(s)); })},
                 {"type", Str([r](std::string s) { r->set_type(std::move(s)); })},
                 {"byteOrder", Str([r](std::string s) { r->set_byte_order(std::move(s)); })},
                 {"wordOrder", Str([r](std::string s) { r->set_word_order(std::move(s)); })},
                 {"scale", Num([r](double x) { r->set_scale(x); })},
                 {"offset", Num([r](double x) { r->set_offset(x); })},
                 {"intervalMs", UInt([r](uint32_t x) { r->set_interval_ms(x); })}}));
          }
          return Status::Ok();
        }}});
}

Status ApplyDeviceJson(const json& j, v1::Device* d) {
  return ReadFields(j, "device",
                    {{"labels",
                      [d](const json& v) {
                        if (!v.is_object())
                          return Error(Code::kInvalidArgument, "must be an object");
                        d->clear_labels();
                        for (const auto& [lk, lv] : v.items()) {
                          if (!lv.is_string())
                            return Error(Code::kInvalidArgument, "label {} must be a string", lk);
                          (*d->mutable_labels())[lk] = lv.get<std::string>();
                        }
                        return Status::Ok();
                      }},
                     {"allowUndeclared",
                      [d](const json& v) {
                        if (!v.is_boolean())
                          return Error(Code::kInvalidArgument, "must be true or false");
                        d->set_allow_undeclared(v.get<bool>());
                        return Status::Ok();
                      }},
                     {"metrics",
                      [d](const json& v) {
                        if (!v.is_object())
                          return Error(Code::kInvalidArgument,
                                       "must be an object keyed by metric name");
                        // Metrics the override does not name keep the cloud's definition; a null
                        // removes one.
                        std::map<std::string, v1::DeviceMetric> by_name;
                        for (const auto& m : d->metrics()) by_name[m.name()] = m;
                        for (const auto& [name, mj] : v.items()) {
                          if (mj.is_null()) {
                            by_name.erase(name);
                            continue;
                          }
                          v1::DeviceMetric& m = by_name[name];
                          m.set_name(name);
                          VERGE_RETURN_IF_ERROR(ApplyMetricJson(mj, &m, "metric " + name));
                        }
                        d->clear_metrics();
                        for (auto& [name, m] : by_name) *d->add_metrics() = std::move(m);
                        return Status::Ok();
                      }},
                     {"modbus", [d](const json& v) {
                        if (v.is_null()) {
                          d->clear_modbus();
                          return Status::Ok();
                        }
                        return ApplyModbusJson(v, d->mutable_modbus());
                      }}});
}

int64_t AppUpdatedMs(const v1::DesiredState& d, const std::string& app, bool* found) {
  int64_t t = 0;
  *found = false;
  for (const auto& w : d.workloads()) {
    if (w.app() != app) continue;
    *found = true;
    t = std::max(t, w.updated_ms());
  }
  return t;
}

}  // namespace

std::optional<json> ItemJson(const v1::DesiredState& d, OverrideKind kind, const std::string& name,
                             int64_t* updated_ms) {
  switch (kind) {
    case OverrideKind::kRule:
      for (const auto& r : d.rules()) {
        if (r.name() != name) continue;
        if (updated_ms) *updated_ms = r.updated_ms();
        return RuleJson(r);
      }
      return std::nullopt;
    case OverrideKind::kDevice:
      for (const auto& dev : d.devices()) {
        if (dev.name() != name) continue;
        if (updated_ms) *updated_ms = dev.updated_ms();
        return DeviceJson(dev);
      }
      return std::nullopt;
    case OverrideKind::kApp: {
      bool found = false;
      int64_t t = AppUpdatedMs(d, name, &found);
      if (!found) return std::nullopt;
      if (updated_ms) *updated_ms = t;
      return json{{"stopped", false}};
    }
  }
  return std::nullopt;
}

Status ValidateItemJson(OverrideKind kind, const json& spec) {
  switch (kind) {
    case OverrideKind::kRule: {
      v1::Rule r;
      return ApplyRuleJson(spec, &r);
    }
    case OverrideKind::kDevice: {
      v1::Device d;
      return ApplyDeviceJson(spec, &d);
    }
    case OverrideKind::kApp:
      if (!spec.is_object() || spec.size() != 1 || !spec.contains("stopped") ||
          !spec["stopped"].is_boolean())
        return Error(Code::kInvalidArgument, "an app override is {}", R"({"stopped": true|false})");
      return Status::Ok();
  }
  return Status::Ok();
}

json Merge3(const json& base, const json& ours, const json& theirs,
            std::vector<std::string>& conflicts, const std::string& path) {
  if (ours == theirs) return ours;
  if (ours == base) return theirs;
  if (theirs == base) return ours;
  if (ours.is_object() && theirs.is_object()) {
    json b = base.is_object() ? base : json::object();
    json out = json::object();
    std::set<std::string> keys;
    for (const auto& [k, v] : ours.items()) keys.insert(k);
    for (const auto& [k, v] : theirs.items()) keys.insert(k);
    for (const auto& k : keys) {
      json bv = b.contains(k) ? b[k] : json();
      json ov = ours.contains(k) ? ours[k] : json();
      json tv = theirs.contains(k) ? theirs[k] : json();
      std::string sub = path;
      if (!sub.empty()) sub += '.';
      sub += k;
      json m = Merge3(bv, ov, tv, conflicts, sub);
      if (!m.is_null()) out[k] = std::move(m);
    }
    return out;
  }
  conflicts.push_back(path.empty() ? "(whole)" : path);
  return theirs;
}

Resolution Resolve(const Override& o, OverridePolicy policy, const std::optional<json>& theirs,
                   int64_t theirs_updated_ms, int64_t skew_ms) {
  Resolution r;
  if (!theirs) {
    r.outcome = Resolution::kDropped;
    r.why = "the cloud no longer has it";
    return r;
  }
  switch (policy) {
    case OverridePolicy::kCloudWins:
      r.outcome = Resolution::kDropped;
      r.why = "cloud-wins";
      return r;
    case OverridePolicy::kEdgeWins:
      r.outcome = Resolution::kKept;
      r.spec = o.spec;
      r.why = "edge-wins";
      return r;
    case OverridePolicy::kLastWriterWins: {
      int64_t ours_cloud_ms = o.at_ms + skew_ms;  // the override's time on the cloud's clock
      if (theirs_updated_ms > ours_cloud_ms) {
        r.outcome = Resolution::kDropped;
        r.why = fmt::format("last-writer-wins: the cloud changed it at {}, after the override ({})",
                            FormatTimeMs(theirs_updated_ms), FormatTimeMs(ours_cloud_ms));
      } else {
        r.outcome = Resolution::kKept;
        r.spec = o.spec;
        r.why = fmt::format(
            "last-writer-wins: the override ({}) is newer than the cloud's {}",
            FormatTimeMs(ours_cloud_ms),
            theirs_updated_ms > 0 ? FormatTimeMs(theirs_updated_ms) : std::string("change"));
      }
      return r;
    }
    case OverridePolicy::kMerge: {
      r.spec = Merge3(o.base, o.spec, *theirs, r.conflicts);
      if (r.spec == *theirs) {
        r.outcome = Resolution::kDropped;
        r.why = r.conflicts.empty() ? "merge: nothing of the override is left"
                                    : "merge: the cloud changed every overridden field";
      } else {
        r.outcome = Resolution::kMerged;
        r.why = "merge";
      }
      if (!r.conflicts.empty()) {
        std::string list;
        for (const auto& c : r.conflicts) list += (list.empty() ? "" : ", ") + c;
        r.why += "; the cloud's value won for " + list;
      }
      return r;
    }
  }
  return r;
}

Result<std::unique_ptr<OverrideStore>> OverrideStore::Open(std::string path) {
  std::unique_ptr<OverrideStore> s(new OverrideStore(std::move(path)));
  if (!std::filesystem::exists(s->path_)) return s;
  VERGE_ASSIGN_OR_RETURN(std::string text, ReadFile(s->path_));
  json j = json::parse(text, nullptr, false);
  auto damaged = [&](const std::string& why) {
    return Error(Code::kDataLoss, "{} is damaged ({}); fix or delete it (its overrides are lost)",
                 s->path_, why);
  };
  if (!j.is_object() || !j["items"].is_array()) return damaged("not {\"items\": [...]}");
  s->next_version_ = j.value("nextVersion", uint64_t{1});
  for (const auto& it : j["items"]) {
    try {
      Override o;
      VERGE_ASSIGN_OR_RETURN(o.kind, ParseOverrideKind(it.at("kind").get<std::string>()));
      o.name = it.at("name").get<std::string>();
      o.version = it.at("version").get<uint64_t>();
      o.origin = it.value("origin", "");
      o.at_ms = it.at("atMs").get<int64_t>();
      o.base = it.value("base", json());
      o.spec = it.at("spec");
      s->next_version_ = std::max(s->next_version_, o.version + 1);
      s->items_[{o.kind, o.name}] = std::move(o);
    } catch (const json::exception& e) {
      return damaged(e.what());
    }
  }
  return s;
}

Status OverrideStore::Save() const {
  json items = json::array();
  for (const auto& [key, o] : items_) {
    items.push_back({{"kind", OverrideKindName(o.kind)},
                     {"name", o.name},
                     {"version", o.version},
                     {"origin", o.origin},
                     {"atMs", o.at_ms},
                     {"base", o.base},
                     {"spec", o.spec}});
  }
  json j = {{"nextVersion", next_version_}, {"items", items}};
  return WriteFileAtomic(path_, j.dump() + "\n", 0600);
}

std::vector<Override> OverrideStore::List() const {
  std::lock_guard lock(mu_);
  std::vector<Override> out;
  for (const auto& [key, o] : items_) out.push_back(o);
  return out;
}

std::optional<Override> OverrideStore::Get(OverrideKind kind, const std::string& name) const {
  std::lock_guard lock(mu_);
  auto it = items_.find({kind, name});
  if (it == items_.end()) return std::nullopt;
  return it->second;
}

Result<Override> OverrideStore::Put(Override o) {
  std::lock_guard lock(mu_);
  auto key = std::make_pair(o.kind, o.name);
  auto old = items_.find(key);
  std::optional<Override> before;
  if (old != items_.end()) {
    before = old->second;
    // A second change of the same item keeps the first one's base: the merge must see every
    // change made on the node since the cloud's version it started from.
    o.base = old->second.base;
  }
  o.version = next_version_++;
  items_[key] = o;
  if (auto st = Save(); !st.ok()) {
    if (before) {
      items_[key] = *before;
    } else {
      items_.erase(key);
    }
    return st;
  }
  return o;
}

Result<bool> OverrideStore::Remove(OverrideKind kind, const std::string& name) {
  std::lock_guard lock(mu_);
  auto it = items_.find({kind, name});
  if (it == items_.end()) return false;
  Override keep = it->second;
  items_.erase(it);
  if (auto st = Save(); !st.ok()) {
    items_[{kind, name}] = std::move(keep);
    return st;
  }
  return true;
}

v1::DesiredState OverrideStore::Overlay(const v1::DesiredState& cloud) const {
  std::lock_guard lock(mu_);
  v1::DesiredState out = cloud;
  if (items_.empty()) return out;
  for (auto& r : *out.mutable_rules()) {
    auto it = items_.find({OverrideKind::kRule, r.name()});
    if (it != items_.end()) (void)ApplyRuleJson(it->second.spec, &r);
  }
  for (auto& d : *out.mutable_devices()) {
    auto it = items_.find({OverrideKind::kDevice, d.name()});
    if (it != items_.end()) {
      v1::Device patched = d;
      if (ApplyDeviceJson(it->second.spec, &patched).ok()) d = std::move(patched);
    }
  }
  auto* ws = out.mutable_workloads();
  for (int i = ws->size() - 1; i >= 0; --i) {
    auto it = items_.find({OverrideKind::kApp, ws->Get(i).app()});
    if (it != items_.end() && it->second.spec.value("stopped", false)) ws->DeleteSubrange(i, 1);
  }
  return out;
}

Result<std::vector<v1::NodeEvent>> OverrideStore::ResolveAll(const v1::DesiredState& cloud,
                                                             const OverridePolicies& policies,
                                                             int64_t skew_ms, int64_t now_ms,
                                                             const v1::DesiredState* before) {
  std::lock_guard lock(mu_);
  std::vector<v1::NodeEvent> events;
  if (items_.empty()) return events;
  auto saved = items_;
  bool changed = false;
  for (auto it = items_.begin(); it != items_.end();) {
    Override& o = it->second;
    int64_t updated = 0;
    auto theirs = ItemJson(cloud, o.kind, o.name, &updated);
    if (before) {
      int64_t updated_before = 0;
      if (ItemJson(*before, o.kind, o.name, &updated_before) == theirs &&
          updated_before == updated) {
        ++it;
        continue;
      }
    }
    OverridePolicy policy = policies.For(o.kind);
    Resolution r = Resolve(o, policy, theirs, updated, skew_ms);
    v1::NodeEvent e;
    e.set_ts_ms(now_ms);
    std::string what =
        fmt::format("{} {} (override v{} by {}, {})", OverrideKindName(o.kind), o.name, o.version,
                    o.origin.empty() ? "local-api" : o.origin, FormatTimeMs(o.at_ms));
    switch (r.outcome) {
      case Resolution::kKept:
        e.set_type("override.kept");
        e.set_message(fmt::format("{} kept: {}", what, r.why));
        break;
      case Resolution::kDropped:
        e.set_type("override.dropped");
        e.set_message(fmt::format("{} dropped: {}", what, r.why));
        break;
      case Resolution::kMerged:
        e.set_type("override.merged");
        e.set_message(fmt::format("{} merged with the cloud's: {}", what, r.why));
        break;
    }
    events.push_back(std::move(e));
    changed = true;
    if (r.outcome == Resolution::kDropped) {
      it = items_.erase(it);
      continue;
    }
    if (r.outcome == Resolution::kMerged) {
      // The merged item is the new override, based on the cloud's item it was merged with.
      o.spec = std::move(r.spec);
      o.base = *theirs;
    }
    ++it;
  }
  if (!changed) return events;
  if (auto st = Save(); !st.ok()) {
    items_ = std::move(saved);
    return st;
  }
  return events;
}

}  // namespace verge::node
