#include "cloud/rules.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>

#include "cloud/rule_spec.h"

namespace verge::cloud {

Result<RuleService::Applied> RuleService::Apply(const std::string& name, std::string_view body) {
  VERGE_ASSIGN_OR_RETURN(Rule rule, ParseRuleDocument(body, name));
  std::lock_guard lock(mu_);
  VERGE_ASSIGN_OR_RETURN(auto existing, store_.GetRule(name));
  if (existing && existing->SameSpec(rule))
    return Applied{std::move(*existing), Change::kUnchanged};
  int64_t now = clock_.WallMs();
  rule.created_ms = existing ? existing->created_ms : now;
  rule.updated_ms = now;
  std::vector<std::string> nodes = Nodes(rule);
  if (existing) {
    rule.stopped = existing->stopped;
    rule.restart_generation = existing->restart_generation;
    std::vector<std::string> before = Nodes(*existing), both;
    std::set_union(before.begin(), before.end(), nodes.begin(), nodes.end(),
                   std::back_inserter(both));
    nodes = std::move(both);
  }
  VERGE_ASSIGN_OR_RETURN(auto bumps, store_.PutRule(rule, nodes));
  Changed(bumps);
  spdlog::info("rule {} {} ({} nodes)", name, existing ? "replaced" : "created", nodes.size());
  return Applied{std::move(rule), existing ? Change::kUpdated : Change::kCreated};
}

Status RuleService::Delete(const std::string& name) {
  std::lock_guard lock(mu_);
  VERGE_ASSIGN_OR_RETURN(auto existing, store_.GetRule(name));
  if (!existing) return Error(Code::kNotFound, "rule \"{}\" not found", name);
  VERGE_ASSIGN_OR_RETURN(auto bumps, store_.DeleteRule(name, Nodes(*existing)));
  Changed(bumps);
  spdlog::info("rule {} deleted", name);
  return Status::Ok();
}

Result<Rule> RuleService::ChangeState(const std::string& name,
                                      const std::function<bool(Rule&)>& change) {
  std::lock_guard lock(mu_);
  VERGE_ASSIGN_OR_RETURN(auto existing, store_.GetRule(name));
  if (!existing) return Error(Code::kNotFound, "rule \"{}\" not found", name);
  Rule rule = *existing;
  if (!change(rule)) return rule;  // already so: nothing to tell the nodes
  rule.updated_ms = clock_.WallMs();
  VERGE_ASSIGN_OR_RETURN(auto bumps, store_.PutRule(rule, Nodes(rule)));
  Changed(bumps);
  return rule;
}

Result<Rule> RuleService::Stop(const std::string& name) {
  return ChangeState(name, [](Rule& r) { return !std::exchange(r.stopped, true); });
}

Result<Rule> RuleService::Start(const std::string& name) {
  return ChangeState(name, [](Rule& r) { return std::exchange(r.stopped, false); });
}

Result<Rule> RuleService::Restart(const std::string& name) {
  return ChangeState(name, [](Rule& r) {
    r.stopped = false;
    ++r.restart_generation;
    return true;
  });
}

Result<Rule> RuleService::Get(const std::string& name) {
  VERGE_ASSIGN_OR_RETURN(auto rule, store_.GetRule(name));
  if (!rule) return Error(Code::kNotFound, "rule \"{}\" not found", name);
  return std::move(*rule);
}

Result<std::vector<RuleStatusRecord>> RuleService::Statuses(const std::string& name) {
  VERGE_ASSIGN_OR_RETURN(Rule rule, Get(name));
  // Reports are written behind; write what is pending so that the answer is current.
  VERGE_RETURN_IF_ERROR(registry_.Flush());
  VERGE_ASSIGN_OR_RETURN(auto reported, store_.ListRuleStatuses(name));
  std::map<std::string, RuleStatusRecord> by_node;
  for (auto& s : reported) {
    std::string node = s.node;
    by_node.emplace(std::move(node), std::move(s));
  }
  std::vector<RuleStatusRecord> out;
  for (const auto& node : Nodes(rule)) {
    auto it = by_node.find(node);
    if (it != by_node.end()) {
      out.push_back(std::move(it->second));
      by_node.erase(it);
      continue;
    }
    RuleStatusRecord pending;
    pending.rule = name;
    pending.node = node;
    pending.status = "pending";
    out.push_back(std::move(pending));
  }
  // Nodes the rule no longer matches that still run it, until they apply their new state.
  for (auto& [node, s] : by_node) {
    if (s.origin == "cloud") out.push_back(std::move(s));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.node < b.node; });
  return out;
}

void RuleService::NodeLabelsChanged(const std::string& node, const Labels& before,
                                    const Labels& after) {
  std::lock_guard lock(mu_);
  auto rules = store_.ListRules();
  if (rules.ok() && std::none_of(rules->begin(), rules->end(), [&](const Rule& r) {
        return r.Matches(before) != r.Matches(after);
      })) {
    return;
  }
  // When the rules cannot be read, bump anyway: a document is built afresh when it is sent, so
  // a needless bump costs a resend, a missed one a node running the wrong rules.
  if (!rules.ok()) {
    spdlog::error("reading rules after the labels of node {} changed: {}", node,
                  rules.status().message());
  }
  const std::string nodes[] = {node};
  auto bumps = store_.BumpDesiredVersions(nodes);
  if (!bumps.ok()) {
    spdlog::error("bumping the desired state of node {} after its labels changed: {}", node,
                  bumps.status().message());
    return;
  }
  spdlog::info("labels of node {} changed which rules it runs", node);
  Changed(*bumps);
}

void RuleService::Changed(const std::vector<Store::VersionBump>& bumps) {
  for (const auto& b : bumps) {
    registry_.OnDesiredVersion(b.node, b.version);
    sink_.DesiredStateChanged(b.node);
  }
}

}  // namespace verge::cloud
