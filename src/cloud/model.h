// The cloud's records: nodes, node events, bootstrap tokens and revoked certificates, as the
// Store keeps them and the API shows them. Thread-safety: plain values.
#pragma once

#include <cstdint>
#include <map>
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

}  // namespace verge::cloud
