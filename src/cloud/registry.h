// Registry: the cloud's live view of its nodes, and the state machine of node status.
//
//   joined ──Hello──▶ online ──(silence ≥ degraded_after)──▶ degraded
//                        ▲                                      │ (silence ≥ offline_after)
//                        └───────── heartbeat or Hello ◀── offline ◀┘
//
// Silence is measured on the steady clock from the last heartbeat or Hello. Every transition
// is recorded as a node event. The registry is a write-behind cache over the Store: records
// and events are written on Flush (called on a short timer), heartbeat times in one batched
// transaction, so that 100k nodes heartbeating cost one transaction per flush, not 6,700
// per second. Structural changes (join, decommission, labels) are written through at once.
//
// Thread-safety: all methods are thread-safe (one mutex); store I/O happens outside it except
// for write-through changes, which must be ordered with the in-memory map.
#pragma once

#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "cloud/model.h"
#include "cloud/store.h"
#include "common/clock.h"
#include "common/duration.h"

namespace verge::cloud {

struct RegistryOptions {
  Millis degraded_after{30'000};
  Millis offline_after{90'000};
};

// What a node tells about itself in its Hello.
struct NodeReport {
  std::string type;
  std::string region;
  std::map<std::string, std::string> labels;
  std::vector<std::string> capabilities;
  Resources capacity;
  std::vector<std::string> addresses;
  std::string agent_version;
  std::string hostname;
  std::string os;
  std::string arch;
};

// Told after a node's labels changed (its Hello, or PATCH /api/v1/nodes/NAME), with the
// labels before and after. Called on the thread that made the change, outside the registry's
// lock, so it may call the registry; two changes of one node may be told in either order.
class NodeLabelsObserver {
 public:
  virtual ~NodeLabelsObserver() = default;
  virtual void NodeLabelsChanged(const std::string& node, const Labels& before,
                                 const Labels& after) = 0;
};

struct RegistryCounts {
  size_t nodes = 0;
  size_t online = 0;
  size_t degraded = 0;
  size_t offline = 0;
  size_t connected = 0;
};

class Registry {
 public:
  Registry(Store& store, const Clock& clock, RegistryOptions options);

  // Loads nodes and revocations from the store. Silence for each node restarts from its
  // stored last heartbeat, so a cloud restart does not by itself change anyone's status.
  Status Load();

  // Registers a node that just joined. kAlreadyExists if the name is taken.
  Status AddJoined(const std::string& name, const std::string& cert_serial,
                   int64_t cert_not_after_ms, const std::string& peer_ip);

  // A stream opened with a valid Hello: refreshes what the node reports and counts as a
  // heartbeat. Labels the node sets win over API-set values for the same keys; other labels
  // are kept. kNotFound if the node is not registered.
  Status OnConnected(const std::string& name, const NodeReport& report, const std::string& peer_ip);
  void OnHeartbeat(const std::string& name, const std::optional<Resources>& used);
  void OnDisconnected(const std::string& name, const std::string& reason);
  // A StateReport: the desired-state version the node applied, or why it could not, and the
  // statuses of its rules if it listed them (written behind, like heartbeats; the list replaces
  // the node's stored statuses). Workload statuses, when they differ from the last ones
  // written, are written through at once (they drive rollouts). A new error is also recorded
  // as a `state_rejected` event.
  void OnStateReport(const std::string& name, uint64_t applied_version, const std::string& error,
                     std::optional<std::vector<RuleStatusRecord>> rules = std::nullopt,
                     std::optional<std::vector<WorkloadStatusRecord>> workloads = std::nullopt);
  // The store bumped the node's desired-state version (a device changed); kept for display.
  // Never moves backwards, so that two concurrent changes can report in any order.
  void OnDesiredVersion(const std::string& name, uint64_t version);
  // Records a node event (for example `batch_rejected`); written on the next Flush.
  void RecordEvent(const std::string& name, std::string type, std::string message);

  // Applies status transitions due at the clock's current time.
  void Sweep();
  // Writes pending records and events to the store.
  Status Flush();

  std::vector<Node> List() const;
  std::optional<Node> Get(const std::string& name) const;
  std::optional<Labels> NodeLabels(const std::string& name) const;
  // Names of the nodes that have every label of `selector`, sorted (every node for {}).
  std::vector<std::string> NodesMatching(const Labels& selector) const;
  bool IsConnected(const std::string& name) const;
  RegistryCounts Counts() const;

  // Sets (value) or removes (nullopt) labels, written through.
  Result<Node> PatchLabels(const std::string& name,
                           const std::map<std::string, std::optional<std::string>>& patch);
  // Removes the node and revokes its certificate, written through; returns the removed record.
  Result<Node> Decommission(const std::string& name);

  // True if the serial belongs to a revoked certificate.
  bool IsRevoked(const std::string& cert_serial) const;
  // True if `cert_serial` is the current certificate of registered node `name`.
  bool CertIsCurrent(const std::string& name, const std::string& cert_serial) const;

  // Events of one node, oldest first, at most `limit` of the newest (pending ones included).
  Result<std::vector<NodeEvent>> Events(const std::string& name, int limit);

  const RegistryOptions& options() const { return options_; }
  // REQUIRES: called before the registry is shared with other threads (composition root).
  void SetLabelsObserver(NodeLabelsObserver* observer) { labels_observer_ = observer; }

 private:
  struct Entry {
    Node node;
    int64_t last_seen_steady = 0;
    bool connected = false;
    bool dirty = false;            // record changed beyond the heartbeat time
    bool heartbeat_dirty = false;  // only last_heartbeat_ms changed
    bool state_dirty = false;      // applied_version / state_error changed
    // Rule statuses reported and not written yet (with state_dirty).
    std::optional<std::vector<RuleStatusRecord>> pending_rules;
    std::string workloads_digest;  // of the workload statuses last written
  };
  void SetStatus(Entry& e, NodeStatus s, const std::string& why);  // REQUIRES: mu_ held
  // Takes mu_; `before` gets the labels the node had.
  Result<Node> ApplyLabelPatch(const std::string& name,
                               const std::map<std::string, std::optional<std::string>>& patch,
                               Labels& before);
  void AddEvent(const std::string& node, std::string type, std::string message);  // REQUIRES: mu_
  void Touch(Entry& e);  // REQUIRES: mu_ held

  Store& store_;
  const Clock& clock_;
  const RegistryOptions options_;
  NodeLabelsObserver* labels_observer_ = nullptr;  // set once before serving

  mutable std::mutex mu_;
  std::unordered_map<std::string, Entry> nodes_;  // GUARDED_BY(mu_)
  std::unordered_set<std::string> revoked_;       // GUARDED_BY(mu_)
  std::vector<NodeEvent> pending_events_;         // GUARDED_BY(mu_)
  std::mutex flush_mu_;                           // one Flush at a time, in order
};

}  // namespace verge::cloud
