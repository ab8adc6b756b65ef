// The cloud's records: nodes, node events, bootstrap tokens, revoked certificates, devices,
// rules, rule statuses and alerts, as the Store keeps them and the API shows them.
// Thread-safety: plain values.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/sysinfo.h"

namespace verge::cloud {

using Resources = ::verge::MachineResources;

enum class NodeStatus { kOnline, kDegraded, kOffline };
std::string_view NodeStatusName(NodeStatus s);
NodeStatus NodeStatusFromName(std::string_view s);

struct Node {
  std::string name;
  std::string type;  // gateway | server | micro
  std::string region;
  std::map<std::string, std::string> labels;
  std::vector<std::string> capabilities;
  Resources capacity;
  Resources used;
  std::string ip;                      // the address the cloud saw the link come from
  std::vector<std::string> addresses;  // what the node reports of its own interfaces
  std::string agent_version;
  std::string hostname;
  std::string os;
  std::string arch;
  std::string cert_serial;
  int64_t cert_not_after_ms = 0;
  int64_t created_ms = 0;
  int64_t last_heartbeat_ms = 0;  // 0: never
  NodeStatus status = NodeStatus::kOffline;
  int64_t status_since_ms = 0;
  // Desired state: the version the cloud holds for the node (bumped with every change of its
  // devices, written only by device changes) and what the node last reported applying.
  uint64_t desired_version = 0;
  uint64_t applied_version = 0;
  std::string state_error;  // empty: the applied version is running
  int64_t state_reported_ms = 0;
};

struct NodeEvent {
  int64_t id = 0;
  std::string node;
  int64_t ts_ms = 0;
  // joined | connected | disconnected | online | degraded | offline | labels_changed |
  // decommissioned | refused
  std::string type;
  std::string message;
};

struct BootstrapToken {
  std::string id;           // public part, 6 characters
  std::string secret_hash;  // SHA-256 hex of the secret part
  std::string description;
  int64_t created_ms = 0;
  int64_t expires_ms = 0;  // 0: never
  bool revoked = false;
  int64_t uses = 0;
};

struct RevokedCert {
  std::string serial;
  std::string node;
  int64_t revoked_ms = 0;
  std::string reason;
};

// What a node should know about one metric of a device (see DeviceMetric in link.proto).
struct UplinkFilterSpec {
  double deadband_abs = 0;
  double deadband_pct = 0;
  uint32_t sample_every = 0;
  int64_t max_silence_ms = 0;
  double swinging_door = 0;
  bool operator==(const UplinkFilterSpec&) const = default;
};

struct MetricSpec {
  std::string name;
  std::string type = "float";  // float | int | bool
  std::optional<double> min, max;
  std::string unit;
  UplinkFilterSpec uplink;
  bool operator==(const MetricSpec&) const = default;
};

struct ModbusRegisterSpec {
  std::string metric;
  uint32_t address = 0;
  std::string kind = "holding";  // holding | input
  std::string type = "uint16";   // int16 | uint16 | int32 | uint32 | float32
  std::string byte_order = "big";
  std::string word_order = "big";
  double scale = 1;
  double offset = 0;
  int64_t interval_ms = 1000;
  bool operator==(const ModbusRegisterSpec&) const = default;
};

struct ModbusSpec {
  std::string host;
  uint32_t port = 502;
  uint32_t unit_id = 1;
  int64_t timeout_ms = 1000;
  std::vector<ModbusRegisterSpec> registers;
  bool operator==(const ModbusSpec&) const = default;
};

// Everything about a device that an operator declares (the body of POST /api/v1/devices
// without name and node).
struct DeviceSpec {
  std::map<std::string, std::string> labels;
  std::vector<MetricSpec> metrics;
  bool allow_undeclared = true;
  std::optional<ModbusSpec> modbus;
  bool operator==(const DeviceSpec&) const = default;
};

struct Device {
  std::string name;  // unique across the fleet
  std::string node;
  DeviceSpec spec;
  // The device token is never stored, only these two hashes of it.
  std::string token_sha256;        // lowercase hex; the node checks HTTP bearer tokens with it
  std::string mqtt_password_hash;  // Mosquitto's "$7$" PBKDF2-SHA512 format
  int64_t created_ms = 0;
  int64_t updated_ms = 0;
};

using Labels = std::map<std::string, std::string>;

// Whether `labels` has every label of `selector` (true for an empty selector).
bool SelectorMatches(const Labels& selector, const Labels& labels);

// A streaming SQL rule, declared with a `kind: Rule` document (docs/api.md); the node runs it
// (docs/rules.md). The spec fields are kept as the operator wrote them, validated.
struct Rule {
  std::string name;
  Labels node_selector;  // labels a node must all have; empty: every node
  std::string sql;
  std::vector<std::string> streams;  // CREATE STREAM statements
  std::string actions_json;          // spec.actions, compact JSON
  std::string options_json;          // spec.options, compact JSON; "" for none
  // Set by the operator (stop/start/restart), never by applying a document.
  bool stopped = false;
  uint64_t restart_generation = 0;
  int64_t created_ms = 0;
  int64_t updated_ms = 0;

  // Whether the node with these labels runs the rule.
  bool Matches(const Labels& labels) const { return SelectorMatches(node_selector, labels); }
  // Same spec (what a document sets), whatever the operator state and times.
  bool SameSpec(const Rule& o) const;
};

// What a node last reported about one rule it has (RuleStatus in link.proto).
struct RuleStatusRecord {
  std::string rule;
  std::string node;
  std::string status;  // running | stopped | error
  uint64_t records_in = 0;
  uint64_t records_out = 0;
  uint64_t exceptions = 0;
  std::string last_error;
  uint64_t latency_p50_us = 0;
  uint64_t latency_p99_us = 0;
  uint64_t dropped = 0;
  std::string origin;  // cloud | local
  int64_t reported_ms = 0;
  bool operator==(const RuleStatusRecord&) const = default;
};

// One alert: an output row of a rule with an `alert` action, sent by a node.
struct AlertRecord {
  int64_t id = 0;  // assigned by the store, increasing
  std::string node;
  uint64_t batch_seq = 0;  // the uplink batch that carried it, and its place in it
  uint32_t index = 0;
  std::string rule;
  int64_t ts_ms = 0;     // when the rule emitted it (node clock)
  std::string severity;  // info | warning | critical
  std::string message;
  std::string data_json;    // the output row, a JSON object
  int64_t received_ms = 0;  // cloud clock
  bool operator==(const AlertRecord&) const = default;
};

// Which alerts GET /api/v1/alerts returns: newest first, every filter optional.
struct AlertQuery {
  std::string rule;
  std::string node;
  std::string severity;
  int64_t since_ms = 0;  // ts_ms >= since_ms
  int limit = 100;
};

// An app (a `kind: App` document, docs/apps.md). Each change of its spec is a new revision
// (AppRevision); `revision` is the one being rolled out, `stable_revision` the last one that
// finished rolling out with every replica ready.
struct App {
  std::string name;
  Labels labels;
  uint64_t revision = 0;
  uint64_t stable_revision = 0;
  // progressing | complete | rolled_back
  std::string rollout_state = "progressing";
  std::string rollout_message;
  int64_t rollout_started_ms = 0;
  int64_t created_ms = 0;
  int64_t updated_ms = 0;
  bool operator==(const App&) const = default;
};

struct AppRevision {
  std::string app;
  uint64_t revision = 0;
  std::string spec_json;  // AppSpecToJson
  int64_t created_ms = 0;
  bool operator==(const AppRevision&) const = default;
};

// One replica of an app on a node, at the revision that node should run.
struct Placement {
  std::string app;
  uint32_t replica = 0;
  std::string node;
  uint64_t revision = 0;
  bool operator==(const Placement&) const = default;
};

// What a node last reported about one replica it runs (WorkloadStatus in link.proto).
struct WorkloadStatusRecord {
  std::string node;
  std::string id;  // "<app>-<replica>"
  std::string app;
  uint64_t revision = 0;
  std::string status;  // pending | running | ready | unhealthy | crashloop | failed
  bool ready = false;
  uint32_t restarts = 0;
  std::string last_error;
  int64_t started_ms = 0;
  uint64_t cpu_millicores = 0;
  uint64_t memory_bytes = 0;
  uint64_t oom_kills = 0;
  int64_t reported_ms = 0;
  bool operator==(const WorkloadStatusRecord&) const = default;
};

// A placement with the spec of its revision, as a node's desired state carries it.
struct DesiredWorkload {
  Placement placement;
  std::string spec_json;
  int64_t revision_created_ms = 0;  // when the placement's revision was made
};

// A node's desired state as one consistent read: its version, its devices, the rules whose
// selector matches it and the app replicas placed on it, each by name.
struct DesiredState {
  uint64_t version = 0;
  std::vector<Device> devices;
  std::vector<Rule> rules;
  std::vector<DesiredWorkload> workloads;
};

}  // namespace verge::cloud
