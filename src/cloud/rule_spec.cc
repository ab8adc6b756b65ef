#include "cloud/rule_spec.h"

#include "cloud/api_json.h"
#include "cloud/document.h"
#include "common/clock.h"
#include "common/labels.h"
#include "node/rules/spec.h"

namespace verge::cloud {
namespace {

using json = nlohmann::json;

std::string Join(const std::vector<std::string>& parts) {
  std::string out;
  for (const auto& p : parts) {
    if (!out.empty()) out += "; ";
    out += p;
  }
  return out;
}

void ParseSelector(const json& v, Labels& out, std::vector<std::string>& errors) {
  if (v.is_null()) return;
  if (!v.is_object()) {
    errors.push_back("spec.nodeSelector: must be a mapping of label: value");
    return;
  }
  for (const auto& [k, value] : v.items()) {
    if (!value.is_string()) {
      errors.push_back(
          fmt::format("spec.nodeSelector.{}: must be a string (quote it in YAML: \"{}\")", k,
                      value.is_primitive() ? value.dump() : std::string("...")));
      continue;
    }
    if (Status st = ValidateLabel(k, value.get_ref<const std::string&>()); !st.ok()) {
      errors.push_back("spec.nodeSelector: " + st.message());
      continue;
    }
    out[k] = value.get<std::string>();
  }
}

}  // namespace

bool SelectorMatches(const Labels& selector, const Labels& labels) {
  for (const auto& [k, v] : selector) {
    auto it = labels.find(k);
    if (it == labels.end() || it->second != v) return false;
  }
  return true;
}

bool Rule::SameSpec(const Rule& o) const {
  return node_selector == o.node_selector && sql == o.sql && streams == o.streams &&
         actions_json == o.actions_json && options_json == o.options_json;
}

Result<Rule> ParseRuleDocument(std::string_view body, std::string_view path_name) {
  static const DocumentKind kKind{.kind = "Rule",
                                  .api_version = kRuleApiVersion,
                                  .noun = "rule",
                                  .spec_hint = "a mapping with sql and actions",
                                  .labels = false,
                                  .extra_fields = {"result"}};
  VERGE_ASSIGN_OR_RETURN(DocumentEnvelope env, ParseDocumentEnvelope(body, path_name, kKind));
  std::vector<std::string>& errors = env.errors;
  Rule rule;
  rule.name = std::string(path_name);
  if (env.has_spec) {
    const json& spec = env.spec;
    json body = {{"name", rule.name}};
    for (const auto& [k, v] : spec.items()) {
      if (k == "nodeSelector") {
        ParseSelector(v, rule.node_selector, errors);
      } else if (k == "sql" || k == "streams" || k == "actions" || k == "options") {
        body[k] = v;
      } else {
        errors.push_back(fmt::format("spec: unknown field \"{}\"", k));
      }
    }
    // The validator the node runs on this rule too: every problem of the fields at once, then
    // the SQL's first, with its line and column.
    auto parsed = rules::ParseRuleSpec(body);
    if (!parsed.ok()) {
      const rules::ParseError& e = parsed.error();
      std::string msg = e.line > 0 ? e.ToString() : e.message;
      // Its field paths are those of the node's POST /rules body; here sql sits under spec.
      for (size_t p = 0; (p = msg.find("rule.sql:", p)) != std::string::npos;) {
        msg.replace(p, 4, "spec");
      }
      errors.push_back(std::move(msg));
    } else {
      rule.sql = parsed.value().sql;
      rule.streams = parsed.value().streams;
      rule.actions_json = spec.at("actions").dump();
      auto options = spec.find("options");
      rule.options_json = options == spec.end() || options->is_null() ? "" : options->dump();
    }
  }
  if (!errors.empty()) {
    return Error(Code::kInvalidArgument, "invalid rule \"{}\": {}", ClipUtf8(rule.name, 80),
                 Join(errors));
  }
  return rule;
}

json RuleJson(const Rule& r, const std::vector<std::string>& nodes) {
  json spec = {{"nodeSelector", r.node_selector},
               {"sql", r.sql},
               {"streams", r.streams},
               {"actions", json::parse(r.actions_json, nullptr, false)}};
  if (!r.options_json.empty()) spec["options"] = json::parse(r.options_json, nullptr, false);
  return {
      {"apiVersion", kRuleApiVersion},
      {"kind", "Rule"},
      {"metadata",
       {{"name", r.name},
        {"createdAt", FormatTimeMs(r.created_ms)},
        {"updatedAt", FormatTimeMs(r.updated_ms)}}},
      {"spec", std::move(spec)},
      {"status",
       {{"stopped", r.stopped}, {"restartGeneration", r.restart_generation}, {"nodes", nodes}}}};
}

void RuleToProto(const Rule& r, v1::Rule* out) {
  out->set_name(r.name);
  out->set_sql(r.sql);
  for (const auto& s : r.streams) out->add_streams(s);
  out->set_actions_json(r.actions_json);
  out->set_options_json(r.options_json);
  out->set_stopped(r.stopped);
  out->set_restart_generation(r.restart_generation);
  out->set_updated_ms(r.updated_ms);
}

json RuleStatusJson(const RuleStatusRecord& s) {
  return {{"rule", s.rule},
          {"node", s.node},
          {"status", s.status},
          {"recordsIn", s.records_in},
          {"recordsOut", s.records_out},
          {"exceptions", s.exceptions},
          {"lastError", s.last_error},
          {"latencyP50Us", s.latency_p50_us},
          {"latencyP99Us", s.latency_p99_us},
          {"dropped", s.dropped},
          {"origin", s.origin},
          {"reportedAt", s.reported_ms ? json(FormatTimeMs(s.reported_ms)) : json()}};
}

RuleStatusRecord RuleStatusFromProto(const std::string& node, const v1::RuleStatus& s,
                                     int64_t reported_ms) {
  RuleStatusRecord r;
  r.rule = ClipUtf8(s.name(), 128);
  r.node = node;
  r.status = ClipUtf8(s.status(), 32);
  r.records_in = s.records_in();
  r.records_out = s.records_out();
  r.exceptions = s.exceptions();
  r.last_error = ClipUtf8(s.last_error(), 2000);
  r.latency_p50_us = s.latency_p50_us();
  r.latency_p99_us = s.latency_p99_us();
  r.dropped = s.dropped();
  r.origin = ClipUtf8(s.origin(), 32);
  r.reported_ms = reported_ms;
  return r;
}

}  // namespace verge::cloud
