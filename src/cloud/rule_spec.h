// Rules as the REST API and the link carry them: the `kind: Rule` document of
// PUT /api/v1/rules/NAME (parsed and validated with every problem reported at once, never an
// exception; the spec itself by verge::rules::ParseRuleSpec, the validator the node runs too),
// the JSON the API answers with, the verge.v1.Rule a node receives, and the statuses nodes
// report. Shapes are documented in docs/api.md.
// Thread-safety: pure functions.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "cloud/model.h"
#include "common/status.h"
#include "verge/v1/link.pb.h"

namespace verge::cloud {

inline constexpr std::string_view kRuleApiVersion = "verge/v1";

// Parses the body of PUT /api/v1/rules/NAME: {"apiVersion": "verge/v1", "kind": "Rule",
// "metadata": {"name"}, "spec": {"nodeSelector", "sql", "streams", "actions", "options"}}.
// metadata.name must equal `path_name`. What the API answers besides (metadata.createdAt,
// metadata.updatedAt, status, result) is accepted and ignored, so a GET answer can be PUT back.
// kInvalidArgument names the rule and lists every problem; invalid SQL keeps its line and
// column ("invalid rule "r": line 1, column 17: expected FROM ..."). The result has the spec
// fields set; operator state and times are left at their defaults.
Result<Rule> ParseRuleDocument(std::string_view body, std::string_view path_name);

// The API's rule object: the document with defaults made explicit (streams: [], nodeSelector:
// {}), metadata.createdAt/updatedAt, and status {stopped, restartGeneration, nodes} where
// nodes are the nodes the rule matches now.
nlohmann::json RuleJson(const Rule& rule, const std::vector<std::string>& nodes);

// The rule as a node receives it in a DesiredState.
void RuleToProto(const Rule& rule, v1::Rule* out);

// A rule's status on one node, reported by it (RuleStatus) or not yet ("pending").
nlohmann::json RuleStatusJson(const RuleStatusRecord& status);

// A RuleStatus from a node, with text clipped to sane sizes.
RuleStatusRecord RuleStatusFromProto(const std::string& node, const v1::RuleStatus& status,
                                     int64_t reported_ms);

}  // namespace verge::cloud
