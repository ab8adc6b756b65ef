// The cloud's records: nodes, node events, bootstrap tokens, revoked certificates and devices,
// as the Store keeps them and the API shows them. Thread-safety: plain values.
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

// A node's desired state as one consistent read: its version and its devices, by name.
struct DesiredState {
  uint64_t version = 0;
  std::vector<Device> devices;
};

}  // namespace verge::cloud
