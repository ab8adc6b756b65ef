// RuleService: declaring, replacing, stopping, starting, restarting and removing streaming SQL
// rules, and keeping every node's desired state in step with the rules its labels select.
//
// A rule reaches the nodes whose labels include its nodeSelector. Every change is one store
// transaction that also bumps the desired-state version of each node the rule matched before
// the change or matches after it; the service then tells the DesiredStateSink (the
// LinkService), which pushes the new document to those nodes if they are connected. A node's
// labels can change too (its Hello, or the API): the registry tells this service, which bumps
// the node's version when the change alters which rules it gets. Both paths run under one
// mutex and read the other side's current state (labels from the registry, rules from the
// store), so whichever order they run in, a node's version is bumped after any change of what
// it should run.
//
// Applying a document whose spec equals the stored one changes nothing (not even a version).
// Stop, start and restart are operator state, kept across applies.
//
// Thread-safety: thread-safe. Changes are serialised by one mutex; reads are not.
#pragma once

#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "cloud/devices.h"
#include "cloud/model.h"
#include "cloud/registry.h"
#include "cloud/store.h"
#include "common/clock.h"

namespace verge::cloud {

class RuleService final : public NodeLabelsObserver {
 public:
  RuleService(Store& store, Registry& registry, DesiredStateSink& sink, const Clock& clock)
      : store_(store), registry_(registry), sink_(sink), clock_(clock) {}

  enum class Change { kCreated, kUpdated, kUnchanged };
  struct Applied {
    Rule rule;
    Change change = Change::kUnchanged;
  };
  // PUT /api/v1/rules/NAME: creates or replaces the rule. kInvalidArgument with every problem
  // (rule_spec.h); nothing is stored then.
  Result<Applied> Apply(const std::string& name, std::string_view body);
  // kNotFound if absent. Removes the statuses nodes reported for it too.
  Status Delete(const std::string& name);
  // Nodes keep a stopped rule but do not run it.
  Result<Rule> Stop(const std::string& name);
  Result<Rule> Start(const std::string& name);
  // Starts the rule afresh on every node (its checkpoint is discarded), and starts it if stopped.
  Result<Rule> Restart(const std::string& name);

  Result<Rule> Get(const std::string& name);
  Result<std::vector<Rule>> List() { return store_.ListRules(); }
  // The nodes the rule matches now, sorted.
  std::vector<std::string> Nodes(const Rule& rule) const {
    return registry_.NodesMatching(rule.node_selector);
  }
  // One entry per node the rule is on, sorted by node: what each node last reported, "pending"
  // for a matching node that has not reported the rule yet, and nodes that still report it from
  // an older desired state (origin "cloud") although it no longer matches them.
  Result<std::vector<RuleStatusRecord>> Statuses(const std::string& name);

  void NodeLabelsChanged(const std::string& node, const Labels& before,
                         const Labels& after) override;

 private:
  // Applies `change` to the stored rule and stores it if it returns true.
  Result<Rule> ChangeState(const std::string& name, const std::function<bool(Rule&)>& change);
  void Changed(const std::vector<Store::VersionBump>& bumps);  // REQUIRES: mu_ held

  Store& store_;
  Registry& registry_;
  DesiredStateSink& sink_;
  const Clock& clock_;
  std::mutex mu_;  // serialises changes of rules, and the reactions to label changes
};

}  // namespace verge::cloud
