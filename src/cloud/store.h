// Store: everything the cloud persists. verge-cloud is stateless over its Store, so that with
// a shared backend (PostgreSQL, a later issue) several replicas can serve one fleet.
// SQLite (store_sqlite.h) is the embedded default.
//
// Every method is atomic on its own. Thread-safety: implementations are thread-safe.
#pragma once

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "cloud/model.h"
#include "common/status.h"

namespace verge::cloud {

class Store {
 public:
  virtual ~Store() = default;

  // Nodes.
  virtual Status InsertNode(const Node& node) = 0;  // kAlreadyExists if the name is taken
  // Updates existing nodes in one transaction; names no longer present are skipped.
  virtual Status UpdateNodes(std::span<const Node> nodes) = 0;
  virtual Result<std::optional<Node>> GetNode(const std::string& name) = 0;
  virtual Result<std::vector<Node>> ListNodes() = 0;
  // Removes the node and revokes its certificate in one transaction.
  virtual Status DecommissionNode(const std::string& name, const RevokedCert& revocation) = 0;

  struct HeartbeatUpdate {
    std::string node;
    int64_t last_heartbeat_ms;
  };
  // Batched: heartbeats are the hottest write and are flushed periodically, not one by one.
  virtual Status UpdateHeartbeats(std::span<const HeartbeatUpdate> updates) = 0;

  // Node events, newest last. ListEvents returns at most `limit`, the most recent.
  virtual Status AppendEvents(std::span<const NodeEvent> events) = 0;
  virtual Result<std::vector<NodeEvent>> ListEvents(const std::string& node, int limit) = 0;
  virtual Status PruneEvents(int64_t older_than_ms) = 0;

  // Bootstrap tokens.
  virtual Status InsertToken(const BootstrapToken& token) = 0;
  virtual Result<std::optional<BootstrapToken>> GetToken(const std::string& id) = 0;
  virtual Result<std::vector<BootstrapToken>> ListTokens() = 0;
  virtual Status RevokeToken(const std::string& id) = 0;  // kNotFound if absent
  virtual Status CountTokenUse(const std::string& id) = 0;

  // Revoked certificates.
  virtual Result<std::vector<RevokedCert>> ListRevoked() = 0;

  // Small named values: CA, admin token hash, settings that must survive restarts.
  virtual Result<std::optional<std::string>> GetMeta(const std::string& key) = 0;
  virtual Status PutMeta(const std::string& key, const std::string& value) = 0;
};

}  // namespace verge::cloud
