// The embedded Store: one SQLite database in WAL mode under the cloud's data dir, with
// versioned migrations (schema in docs/operations.md).
//
// Thread-safety: thread-safe. Three connections to the one file, each behind its own mutex:
// the control plane's (nodes, devices, rules, rule statuses, events, tokens; short
// transactions; heartbeats are batched), the telemetry writer's (StoreUplink's group commits
// of readings and alerts, and retention), and a reader for telemetry and alert queries, so
// that a long query or a large group commit never holds the mutex an API call or a node's
// Hello waits for. WAL lets the reader run beside either writer;
// SQLite serialises the two writers, so a control-plane write waits at most one telemetry
// transaction (busy timeout 5 s). An in-memory database (":memory:", tests) cannot be shared
// between connections, so there all three are the one connection behind one mutex.
#pragma once

#include <mutex>
#include <string>
#include <unordered_map>

#include "cloud/store.h"
#include "common/sqlite.h"

namespace verge::cloud {

// Bumps each node's desired-state version, returning the new ones. REQUIRES: inside a
// transaction on db.
Result<std::vector<Store::VersionBump>> BumpVersions(sql::Db& db,
                                                     std::span<const std::string> nodes);

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

  Result<std::vector<VersionBump>> InsertDevice(const Device& device) override;
  Result<std::vector<VersionBump>> UpdateDevice(const Device& device) override;
  Result<std::vector<VersionBump>> DeleteDevice(const std::string& name) override;
  Result<std::optional<Device>> GetDevice(const std::string& name) override;
  Result<std::vector<Device>> ListDevices(const std::string& node) override;
  Result<DesiredState> GetDesiredState(const std::string& node, const Labels& labels) override;
  Result<uint64_t> RaiseDesiredVersion(const std::string& node, uint64_t above) override;
  Result<std::vector<VersionBump>> PutRule(const Rule& rule,
                                           std::span<const std::string> nodes) override;
  Result<std::vector<VersionBump>> DeleteRule(const std::string& name,
                                              std::span<const std::string> nodes) override;
  Result<std::optional<Rule>> GetRule(const std::string& name) override;
  Result<std::vector<Rule>> ListRules() override;
  Result<std::vector<VersionBump>> BumpDesiredVersions(std::span<const std::string> nodes) override;
  Result<std::vector<VersionBump>> PutApp(const App& app,
                                          const std::optional<AppRevision>& new_revision,
                                          std::span<const Placement> placements) override;
  Result<std::vector<VersionBump>> DeleteApp(const std::string& name) override;
  Result<std::optional<App>> GetApp(const std::string& name) override;
  Result<std::vector<App>> ListApps() override;
  Result<std::vector<AppRevision>> ListAppRevisions(const std::string& app,
                                                    uint64_t revision) override;
  Result<std::vector<Placement>> ListPlacements(const std::string& app) override;
  Result<std::vector<WorkloadStatusRecord>> ListWorkloadStatuses(const std::string& app) override;
  Status UpdateStateReports(std::span<const StateReport> reports) override;
  Result<std::vector<RuleStatusRecord>> ListRuleStatuses(const std::string& rule) override;

  Result<std::vector<bool>> StoreUplink(std::span<const UplinkRecord* const> batches) override;
  Result<std::vector<StagedBatch>> ListStaged(size_t max_batches, uint64_t max_readings,
                                              bool* more) override;
  Status ScanStaged(int64_t from_ns, int64_t to_ns, const std::string& node,
                    const std::function<bool(const StagedBatch&)>& fn) override;
  Status CommitCompaction(std::span<const int64_t> staged_ids,
                          std::span<const ChunkRecord> chunks) override;
  Result<uint64_t> UplinkStoredSeq(const std::string& node) override;
  Status ResetUplink(const std::string& node) override;
  Result<std::vector<SeriesInfo>> FindSeries(const std::string& device,
                                             const std::string& metric) override;
  Status ScanChunks(int64_t series_id, const std::string& node, int64_t start_from,
                    int64_t start_to, const std::function<bool(const StoredChunk&)>& fn) override;
  Result<int64_t> PruneTelemetry(int64_t start_before_ns) override;
  Result<std::vector<AlertRecord>> ListAlerts(const AlertQuery& query) override;
  Result<int64_t> PruneAlerts(int64_t older_than_ms) override;

  // The migrations, exposed for tests of the upgrade path.
  static std::span<const sql::Migration> Migrations();

 private:
  explicit SqliteStore(sql::Db db) : db_(std::move(db)) {}
  Status WriteNode(const Node& node, bool insert);                         // REQUIRES: mu_ held
  Status WriteDevice(const Device& device, bool insert);                   // REQUIRES: mu_ held
  Result<std::vector<Device>> ListDevicesLocked(const std::string& node);  // REQUIRES: mu_
  // The node's placements with their revisions' specs. REQUIRES: mu_ held.
  Result<std::vector<DesiredWorkload>> NodeWorkloadsLocked(const std::string& node);
  // Replaces the node's workload statuses. REQUIRES: mu_ held, inside a transaction.
  Status WriteWorkloadStatusesLocked(const StateReport& report);
  Result<std::vector<bool>> StoreUplinkLocked(std::span<const UplinkRecord* const> batches);
  Status CommitCompactionLocked(std::span<const int64_t> staged_ids,
                                std::span<const ChunkRecord> chunks,
                                std::vector<std::string>& new_series);
  // The connection and mutex for telemetry writes and for telemetry reads.
  sql::Db& WriterDb() { return writer_db_ ? *writer_db_ : db_; }
  std::mutex& WriterMu() { return writer_db_ ? writer_mu_ : mu_; }
  sql::Db& ReaderDb() { return reader_db_ ? *reader_db_ : db_; }
  std::mutex& ReaderMu() { return reader_db_ ? reader_mu_ : mu_; }

  std::mutex mu_;
  sql::Db db_;  // GUARDED_BY(mu_)
  std::mutex writer_mu_;
  std::optional<sql::Db> writer_db_;  // GUARDED_BY(writer_mu_); empty: use db_
  // Series ids by device + '\0' + metric, so that storing a chunk costs no lookup.
  std::unordered_map<std::string, int64_t> series_ids_;  // GUARDED_BY(WriterMu())
  std::mutex reader_mu_;
  std::optional<sql::Db> reader_db_;  // GUARDED_BY(reader_mu_); empty: use db_
};

}  // namespace verge::cloud
