// Store: everything the cloud persists. verge-cloud is stateless over its Store, so that with
// a shared backend (PostgreSQL, a later issue) several replicas can serve one fleet.
// SQLite (store_sqlite.h) is the embedded default.
//
// Every method is atomic on its own. Telemetry is written by one thread (the TelemetryWriter)
// in large transactions; an implementation must not make control-plane calls (nodes, devices,
// events) wait behind them for longer than one such transaction.
//
// Thread-safety: implementations are thread-safe.
#pragma once

#include <functional>
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

  // Devices. Every change bumps, in the same transaction, the desired-state version of each
  // node it touches (both nodes when a device moves) and returns those nodes' new versions.
  struct VersionBump {
    std::string node;
    uint64_t version = 0;
    bool operator==(const VersionBump&) const = default;
  };
  // kAlreadyExists if the name is taken.
  virtual Result<std::vector<VersionBump>> InsertDevice(const Device& device) = 0;
  // Replaces node, spec, hashes and updated_ms of an existing device (created_ms is kept).
  // kNotFound if absent.
  virtual Result<std::vector<VersionBump>> UpdateDevice(const Device& device) = 0;
  virtual Result<std::vector<VersionBump>> DeleteDevice(const std::string& name) = 0;
  virtual Result<std::optional<Device>> GetDevice(const std::string& name) = 0;
  // Sorted by name; node "" lists every device.
  virtual Result<std::vector<Device>> ListDevices(const std::string& node) = 0;
  // The node's version, devices, the rules whose selector matches `labels` (the node's
  // labels, which the caller knows: the registry holds them) and its app placements, read in
  // one transaction so that they belong together. A node nothing was ever declared for has version
  // 0 and nothing else.
  virtual Result<DesiredState> GetDesiredState(const std::string& node, const Labels& labels) = 0;
  // Makes the node's version greater than `above` if it is not already, returning the
  // version. For a node that reports a version the cloud never issued (a restored backup),
  // so that the next document it gets is newer than anything it has seen.
  virtual Result<uint64_t> RaiseDesiredVersion(const std::string& node, uint64_t above) = 0;

  // Rules. Which nodes a rule reaches depends on their labels, which the registry holds, so
  // the caller names the nodes a change touches (those the rule matched before it or matches
  // after it); every change bumps, in the same transaction, each of their desired-state
  // versions and returns the new versions.
  // Inserts the rule or replaces an existing one of that name (its created_ms is kept).
  virtual Result<std::vector<VersionBump>> PutRule(const Rule& rule,
                                                   std::span<const std::string> nodes) = 0;
  // Removes the rule and the statuses nodes reported for it. kNotFound if absent.
  virtual Result<std::vector<VersionBump>> DeleteRule(const std::string& name,
                                                      std::span<const std::string> nodes) = 0;
  virtual Result<std::optional<Rule>> GetRule(const std::string& name) = 0;
  // Sorted by name.
  virtual Result<std::vector<Rule>> ListRules() = 0;
  // Bumps the nodes' versions (a node's labels changed which rules it gets).
  virtual Result<std::vector<VersionBump>> BumpDesiredVersions(
      std::span<const std::string> nodes) = 0;

  // Apps. Every write replaces the app's record and all its placements (and adds a revision if
  // given) in one transaction that bumps the desired-state version of each node whose
  // workloads change (a placement added, removed or moved to another revision), returning
  // those nodes' new versions.
  virtual Result<std::vector<VersionBump>> PutApp(const App& app,
                                                  const std::optional<AppRevision>& new_revision,
                                                  std::span<const Placement> placements) = 0;
  // Removes the app, its revisions, placements and reported statuses. kNotFound if absent.
  virtual Result<std::vector<VersionBump>> DeleteApp(const std::string& name) = 0;
  virtual Result<std::optional<App>> GetApp(const std::string& name) = 0;
  // Sorted by name.
  virtual Result<std::vector<App>> ListApps() = 0;
  // Newest first; revision 0 lists every revision.
  virtual Result<std::vector<AppRevision>> ListAppRevisions(const std::string& app,
                                                            uint64_t revision) = 0;
  // Every placement in the fleet ("" ) or of one app, sorted by app then replica.
  virtual Result<std::vector<Placement>> ListPlacements(const std::string& app) = 0;
  // The statuses nodes reported for the app's replicas ("" : every app), sorted by node, id.
  virtual Result<std::vector<WorkloadStatusRecord>> ListWorkloadStatuses(
      const std::string& app) = 0;

  struct StateReport {
    std::string node;
    uint64_t applied_version = 0;
    std::string error;
    int64_t reported_ms = 0;
    // The node listed its rules: they replace every status stored for the node.
    bool has_rules = false;
    std::vector<RuleStatusRecord> rules{};
    // The node listed its workloads: they replace every workload status stored for the node.
    bool has_workloads = false;
    std::vector<WorkloadStatusRecord> workloads{};
  };
  // Batched, like heartbeats: state reports are written behind.
  virtual Status UpdateStateReports(std::span<const StateReport> reports) = 0;
  // The statuses nodes reported for the rule, sorted by node.
  virtual Result<std::vector<RuleStatusRecord>> ListRuleStatuses(const std::string& rule) = 0;

  // Telemetry, in two stages (telemetry.h explains why). An uplink batch is first stored as
  // received ("staged": one row per batch, its bytes as the node sent them), in the same
  // transaction that records its (node, seq) as stored; compaction later turns staged batches
  // into chunks — one series' readings within one hour of the time grid, many batches at
  // once — and deletes them, in one transaction. Queries read both.
  struct UplinkRecord {
    std::string node;
    uint64_t seq = 0;
    uint64_t low_seq = 0;  // every seq below it is acknowledged or dropped by the node
    uint64_t count = 0;    // readings
    int64_t min_ts = 0;    // ns, earliest and latest reading
    int64_t max_ts = 0;
    int codec = 0;     // v1::Codec of data
    std::string data;  // the batch's ReadingBatch, compressed with codec, already validated
    // An alert batch (v1::BATCH_ALERTS) carries its decoded, validated alerts instead of data;
    // count is their number.
    bool is_alerts = false;
    std::vector<AlertRecord> alerts{};
    // A node event batch (v1::BATCH_EVENTS): its events join the node's event history.
    bool is_events = false;
    std::vector<NodeEvent> events{};
  };
  // Stores every batch whose (node, seq) was not stored before, all in one transaction, and
  // forgets pairs below each batch's low_seq: readings are staged, alerts become rows of alerts
  // (readings and alerts share the node's sequence, so one record of stored pairs deduplicates
  // both). result[i] is true when batch i was stored now, false when it was already stored (or
  // is below the node's low_seq, so acknowledged before).
  virtual Result<std::vector<bool>> StoreUplink(std::span<const UplinkRecord* const> batches) = 0;

  struct StagedBatch {
    int64_t id = 0;  // increasing in the order batches were stored
    UplinkRecord record;
  };
  // The oldest staged batches: at most max_batches, and no more than max_readings readings
  // (but at least one batch if any is staged). *more says whether others are staged.
  virtual Result<std::vector<StagedBatch>> ListStaged(size_t max_batches, uint64_t max_readings,
                                                      bool* more) = 0;
  // Staged batches with readings in [from_ns, to_ns], from `node` ("" any), oldest first,
  // while fn returns true.
  virtual Status ScanStaged(int64_t from_ns, int64_t to_ns, const std::string& node,
                            const std::function<bool(const StagedBatch&)>& fn) = 0;

  struct ChunkRecord {
    std::string node;
    std::string device;
    std::string metric;
    int64_t start_ts = 0;  // ns, first and last reading in the chunk
    int64_t end_ts = 0;
    uint32_t count = 0;
    std::string data;  // telemetry_codec.h
  };
  // Stores the chunks and deletes the staged batches they were made from, in one transaction.
  virtual Status CommitCompaction(std::span<const int64_t> staged_ids,
                                  std::span<const ChunkRecord> chunks) = 0;

  // The highest seq stored for the node (0: none), for HelloAck.
  virtual Result<uint64_t> UplinkStoredSeq(const std::string& node) = 0;
  // Forgets which seqs of the node are stored (not the readings), for a node that numbers
  // its batches afresh: its new batches are new data, whatever their seqs.
  virtual Status ResetUplink(const std::string& node) = 0;

  struct SeriesInfo {
    int64_t id = 0;
    std::string device;
    std::string metric;
  };
  // The device's series, sorted by metric; metric "" for all of them.
  virtual Result<std::vector<SeriesInfo>> FindSeries(const std::string& device,
                                                     const std::string& metric) = 0;
  struct StoredChunk {
    int64_t id = 0;
    std::string node;
    int64_t start_ts = 0;
    int64_t end_ts = 0;
    int64_t count = 0;
    std::string data;
  };
  // Calls fn with each chunk of the series with start_ts in [start_from, start_to], ordered
  // by start_ts then id, while fn returns true. node "" means chunks from any node.
  virtual Status ScanChunks(int64_t series_id, const std::string& node, int64_t start_from,
                            int64_t start_to,
                            const std::function<bool(const StoredChunk&)>& fn) = 0;
  // Deletes whole chunks that start before `start_before_ns`, and staged batches whose readings
  // are all older; returns how many rows went.
  virtual Result<int64_t> PruneTelemetry(int64_t start_before_ns) = 0;

  // Alerts matching the query, newest (ts_ms, then id) first.
  virtual Result<std::vector<AlertRecord>> ListAlerts(const AlertQuery& query) = 0;
  // Deletes alerts emitted before `older_than_ms`; returns how many went.
  virtual Result<int64_t> PruneAlerts(int64_t older_than_ms) = 0;
};

}  // namespace verge::cloud
