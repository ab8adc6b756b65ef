// RuleSpec: a rule as an operator declares it (a `kind: Rule` document's spec, or a body of the
// node's `POST /rules`), validated the same way in the cloud (when it is applied) and on the
// node (when it runs): its SQL and streams, its actions, its options. docs/rules.md documents
// every field; each function reports every problem at once, with the path of the field
// ("actions[1].mqtt.topic: ...").
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "node/rules/ast.h"
#include "node/rules/parser.h"

namespace verge::rules {

// The built-in stream of the node's cleaned readings: one event per device payload, columns
// device_id, ts (Unix ms, the event time) and one per metric.
inline constexpr std::string_view kTelemetryStream = "telemetry";
// Its declaration, as if written by the user (the node feeds it itself), parsed and as SQL.
const CreateStream& TelemetryStream();
std::string_view TelemetryStreamSql();

enum class ActionKind { kAlert, kMqtt, kWebhook, kModbus, kLog, kMemory, kFunction };
std::string_view ActionKindName(ActionKind kind);

struct ActionSpec {
  ActionKind kind = ActionKind::kLog;
  // Delivery, for every kind: a failed delivery is tried again retry_count times,
  // retry_interval_ms apart; at most buffer_length outputs wait, the oldest is dropped beyond.
  int retry_count = 3;
  int64_t retry_interval_ms = 1000;
  size_t buffer_length = 1024;
  // true: one message per output row; false: one message per emission (a JSON array).
  bool send_single = true;

  // alert
  std::string severity = "warning";  // info | warning | critical
  std::string message;
  // mqtt (topic may hold {{.column}} references), memory (topic, no references), function
  // (the memory topic its rows go to; "" discards them)
  std::string topic;
  int qos = 1;
  bool retain = false;
  // webhook
  std::string url;  // http:// or https://; may hold {{.column}} references
  std::string method = "POST";
  std::map<std::string, std::string> headers;
  int64_t timeout_ms = 5000;
  // modbus: write to a Modbus device the node polls
  std::string device;
  uint32_t address = 0;
  std::string register_kind = "holding";  // holding | coil
  std::string type = "uint16";            // uint16 int16 uint32 int32 float32, big-endian
  std::string value_column;               // the output column holding the value...
  std::optional<double> value;            // ...or a constant
  // log
  std::string level = "info";  // info | warning
  // function: the function app of the node that each output row is given to
  std::string function;
};

struct RuleSpecOptions {
  // Event time: how late an event may come and still enter its window.
  int64_t late_tolerance_ms = 1000;
  // How often open windows are saved to the node's disk: a restart loses at most this much.
  int64_t checkpoint_interval_ms = 5000;
};

struct RuleSpec {
  std::string name;
  std::string sql;
  std::vector<std::string> streams;  // CREATE STREAM statements
  std::vector<ActionSpec> actions;
  RuleSpecOptions options;
  // Parsed, once Check() accepted it.
  Select select;
  CreateStream from;  // the stream the rule reads
};

// Rule names: 1-64 characters of [A-Za-z0-9_.-], starting with a letter or digit.
bool IsValidRuleName(std::string_view name);
// App names (what a function action calls): 1-63 characters of [a-z0-9-], starting and ending
// with a letter or digit.
bool IsValidAppName(std::string_view name);

// spec.actions: a non-empty array of objects with exactly one kind key each, e.g.
// [{"alert": {"severity": "critical"}}, {"mqtt": {"topic": "t", "retryCount": 5}}].
// A function action may be written short: {"function": "APP"} is {"function": {"name": "APP"}}.
Result<std::vector<ActionSpec>> ParseActions(const nlohmann::json& actions);
// spec.options: an object (or null) with lateToleranceMs and checkpointIntervalMs.
Result<RuleSpecOptions> ParseRuleOptions(const nlohmann::json& options);

// Parses the SQL and streams of `spec`, fills spec.select and spec.from, and checks that the
// rule reads `telemetry` or a stream it declares, that no stream is declared twice or named
// `telemetry`, and that memory actions do not write to `telemetry`. Invalid SQL keeps its
// line and column; other problems have line and column 0.
ParseResult<bool> Check(RuleSpec& spec);

// The whole spec from a JSON object {"name", "sql", "streams", "actions", "options"}
// (the node's POST /rules body, and the cloud's spec with metadata.name as name). Every
// problem of the actions, options and fields at once; then the SQL (Check).
ParseResult<RuleSpec> ParseRuleSpec(const nlohmann::json& body);

}  // namespace verge::rules
