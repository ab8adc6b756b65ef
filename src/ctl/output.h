// How vergectl shows what the API returned: `-o json` (the server's JSON, pretty-printed),
// `-o yaml` (the same data as YAML) and `-o table` (kubectl-like aligned columns for people).
// Every function returns text and takes "now" as an argument, so output is tested without a
// server or a clock. Values are nlohmann::ordered_json so that keys keep the server's order.
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace verge::ctl {

using Json = nlohmann::ordered_json;

enum class OutputFormat { kTable, kJson, kYaml };

Result<OutputFormat> ParseOutputFormat(std::string_view name);

// Two-space indented JSON with a trailing newline.
std::string ToJson(const Json& j);
// Block-style YAML with a trailing newline. Strings that YAML would read back as another type
// ("true", "123", "null") are quoted, so the YAML means the same as the JSON.
std::string ToYaml(const Json& j);

// Columns separated by three spaces, the last one not padded. Cells have control characters
// replaced, because node-reported fields (hostname, version) must not drive the terminal.
std::string RenderTable(const std::vector<std::vector<std::string>>& rows);

// Milliseconds since the epoch from the RFC 3339 timestamps the API writes
// ("2026-11-21T10:00:00.123Z"; offsets such as +02:00 are accepted too).
std::optional<int64_t> ParseTimeMs(std::string_view rfc3339);
// kubectl-style short age: "45s", "12m", "5h", "3d", "2y"; negative (clock skew) shows "0s".
std::string FormatAge(int64_t ms);

// Tables for the API's objects. Each accepts one object or an array of them.
// NAME STATUS REGION TYPE LABELS AGE VERSION, where AGE is the time since the last heartbeat.
std::string NodesTable(const Json& nodes, int64_t now_ms);
// ID STATE EXPIRES USES DESCRIPTION.
std::string TokensTable(const Json& tokens);
// TIME TYPE MESSAGE.
std::string EventsTable(const Json& events);
// "key: value" lines for a flat object such as /api/v1/status.
std::string KeyValueLines(const Json& object);
// The reply to POST /api/v1/tokens: the secret on a line of its own, then how to use it.
std::string TokenCreatedText(const Json& token);
// NAME NODE METRICS MODBUS LABELS AGE (since createdAt).
std::string DevicesTable(const Json& devices, int64_t now_ms);
// The reply to POST /api/v1/devices or .../token: the device token on a line of its own, then
// how devices use it. `rotated` words it for a new token of an existing device.
std::string DeviceTokenText(const Json& device, bool rotated);
// TIME DEVICE METRIC VALUE, TIME as the API wrote it (nanosecond precision where it has it).
std::string PointsTable(const Json& points);
// NAME STATE NODES SELECTOR AGE (since createdAt); STATE running or stopped, NODES how many
// nodes the rule matches.
std::string RulesTable(const Json& rules, int64_t now_ms);
// NODE STATUS IN OUT EXCEPTIONS DROPPED P50 P99 REPORTED LAST-ERROR, from
// GET /api/v1/rules/NAME/status.
std::string RuleStatusTable(const Json& statuses);
// TIME SEVERITY RULE NODE MESSAGE DATA (the output row, cut at 80 characters).
std::string AlertsTable(const Json& alerts);
// NAME TYPE VERSION REPLICAS READY REVISION ROLLOUT, from GET /api/v1/apps.
std::string AppsTable(const Json& apps);
// One app: a summary, the rollout, then NODE REPLICA REVISION STATUS READY RESTARTS LAST-ERROR.
std::string AppDetail(const Json& app);
// NODE FEASIBLE SCORE BALANCE REGION SPREAD REPLICAS REASON, from .../explain.
std::string ExplainTable(const Json& explain);
// The rollout: revision, state, message, replicas updated and ready, and the history.
std::string RolloutLines(const Json& rollout);
// SHA256 NAME SIZE CREATED.
std::string ArtifactsTable(const Json& artifacts);
// A duration in microseconds as people read it: "850us", "12.5ms", "1.2s"; "-" for 0.
std::string FormatMicros(uint64_t us);

}  // namespace verge::ctl
