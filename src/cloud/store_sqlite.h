// The embedded Store: one SQLite database in WAL mode under the cloud's data dir, with
// versioned migrations (schema in docs/operations.md). Thread-safety: all methods lock one
// mutex; SQLite serialises writers anyway, and the hot path (heartbeats) is batched.
#pragma once

#include <mutex>

#include "cloud/store.h"
#include "common/sqlite.h"

namespace verge::cloud {

class SqliteStore final : public Store {
 public:
  static Result<std::unique_ptr<SqliteStore>> Open(const std::string& path);

  Status InsertNode(const Node& node) override;
  Status UpdateNodes(std::span<const Node> nodes) override;
  Result<std::optional<Node>> GetNode(const std::string& name) override;
  Result<std::vector<Node>> ListNodes() override;
  Status DecommissionNode(const std::string& name, const RevokedCert& revocation) override;
  Status UpdateHeartbeats(std::span<const HeartbeatUpdate> updates) override;
  Status AppendEvents(std::span<const NodeEvent> events) override;
  Result<std::vector<NodeEvent>> ListEvents(const std::string& node, int limit) override;
  Status PruneEvents(int64_t older_than_ms) override;
  Status InsertToken(const BootstrapToken& token) override;
  Result<std::optional<BootstrapToken>> GetToken(const std::string& id) override;
  Result<std::vector<BootstrapToken>> ListTokens() override;
  Status RevokeToken(const std::string& id) override;
  Status CountTokenUse(const std::string& id) override;
  Result<std::vector<RevokedCert>> ListRevoked() override;
  Result<std::optional<std::string>> GetMeta(const std::string& key) override;
  Status PutMeta(const std::string& key, const std::string& value) override;

  // The migrations, exposed for tests of the upgrade path.
  static std::span<const sql::Migration> Migrations();

 private:
  explicit SqliteStore(sql::Db db) : db_(std::move(db)) {}
  Status WriteNode(const Node& node, bool insert);
  std::mutex mu_;
  sql::Db db_;  // GUARDED_BY(mu_)
};

}  // namespace verge::cloud
