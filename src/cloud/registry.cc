#include "cloud/registry.h"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace verge::cloud {

std::string_view NodeStatusName(NodeStatus s) {
  switch (s) {
    case NodeStatus::kOnline:
      return "online";
    case NodeStatus::kDegraded:
      return "degraded";
    case NodeStatus::kOffline:
      return "offline";
  }
  return "offline";
}

NodeStatus NodeStatusFromName(std::string_view s) {
  if (s == "online") return NodeStatus::kOnline;
  if (s == "degraded") return NodeStatus::kDegraded;
  return NodeStatus::kOffline;
}

Registry::Registry(Store& store, const Clock& clock, RegistryOptions options)
    : store_(store), clock_(clock), options_(options) {}

Status Registry::Load() {
  VERGE_ASSIGN_OR_RETURN(auto nodes, store_.ListNodes());
  VERGE_ASSIGN_OR_RETURN(auto revoked, store_.ListRevoked());
  std::lock_guard lock(mu_);
  int64_t now_wall = clock_.WallMs();
  int64_t now_steady = clock_.SteadyMs();
  nodes_.clear();
  for (auto& n : nodes) {
    Entry e;
    int64_t silence = n.last_heartbeat_ms > 0 ? std::max<int64_t>(0, now_wall - n.last_heartbeat_ms)
                                              : options_.offline_after.count();
    e.last_seen_steady = now_steady - silence;
    std::string name = n.name;
    e.node = std::move(n);
    nodes_.emplace(std::move(name), std::move(e));
  }
  revoked_.clear();
  for (auto& r : revoked) revoked_.insert(r.serial);
  return Status::Ok();
}

void Registry::AddEvent(const std::string& node, std::string type, std::string message) {
  pending_events_.push_back(
      NodeEvent{0, node, clock_.WallMs(), std::move(type), std::move(message)});
}

void Registry::SetStatus(Entry& e, NodeStatus s, const std::string& why) {
  if (e.node.status == s) return;
  e.node.status = s;
  e.node.status_since_ms = clock_.WallMs();
  e.dirty = true;
  AddEvent(e.node.name, std::string(NodeStatusName(s)), why);
}

void Registry::Touch(Entry& e) {
  int64_t now = clock_.SteadyMs();
  int64_t silence = now - e.last_seen_steady;
  e.last_seen_steady = now;
  e.node.last_heartbeat_ms = clock_.WallMs();
  e.heartbeat_dirty = true;
  if (e.node.status != NodeStatus::kOnline) {
    SetStatus(e, NodeStatus::kOnline,
              e.node.status == NodeStatus::kOffline && e.node.created_ms == e.node.status_since_ms
                  ? "first heartbeat"
                  : fmt::format("heartbeat after {} of silence", FormatDuration(Millis(silence))));
  }
}

Status Registry::AddJoined(const std::string& name, const std::string& cert_serial,
                           int64_t cert_not_after_ms, const std::string& peer_ip) {
  std::lock_guard lock(mu_);
  if (nodes_.count(name)) {
    return Error(
        Code::kAlreadyExists,
        "a node named \"{}\" is already registered; delete it first (vergectl nodes delete "
        "{}) or join with another name",
        name, name);
  }
  Node n;
  n.name = name;
  n.type = "gateway";
  n.ip = peer_ip;
  n.cert_serial = cert_serial;
  n.cert_not_after_ms = cert_not_after_ms;
  n.created_ms = clock_.WallMs();
  n.status = NodeStatus::kOffline;
  n.status_since_ms = n.created_ms;
  VERGE_RETURN_IF_ERROR(store_.InsertNode(n));
  // A name that joins again keeps its devices and desired-state version (see node_state).
  if (auto stored = store_.GetNode(name); stored.ok() && stored->has_value()) {
    n.desired_version = (*stored)->desired_version;
  }
  Entry e;
  e.node = n;
  e.last_seen_steady = clock_.SteadyMs() - options_.offline_after.count();
  nodes_.emplace(name, std::move(e));
  AddEvent(name, "joined", fmt::format("joined from {}", peer_ip));
  return Status::Ok();
}

Status Registry::OnConnected(const std::string& name, const NodeReport& r,
                             const std::string& peer_ip) {
  std::unique_lock lock(mu_);
  auto it = nodes_.find(name);
  if (it == nodes_.end()) return Error(Code::kNotFound, "node \"{}\" is not registered", name);
  Entry& e = it->second;
  Node& n = e.node;
  const Labels before = n.labels;
  if (!r.type.empty()) n.type = r.type;
  n.region = r.region;
  for (const auto& [k, v] : r.labels) n.labels[k] = v;
  n.capabilities = r.capabilities;
  n.capacity = r.capacity;
  n.addresses = r.addresses;
  n.agent_version = r.agent_version;
  n.hostname = r.hostname;
  n.os = r.os;
  n.arch = r.arch;
  n.ip = peer_ip;
  // The node reconnected before its previous stream's end was noticed (a lossy path): that
  // stream is over all the same, and the history says so before the new one begins.
  if (e.connected)
    AddEvent(name, "disconnected", "the node opened a new stream; the previous one is replaced");
  e.connected = true;
  e.dirty = true;
  AddEvent(name, "connected", fmt::format("link up from {} (agent {})", peer_ip, r.agent_version));
  Touch(e);
  if (n.labels != before && labels_observer_) {
    const Labels after = n.labels;
    lock.unlock();
    labels_observer_->NodeLabelsChanged(name, before, after);
  }
  return Status::Ok();
}

void Registry::OnHeartbeat(const std::string& name, const std::optional<Resources>& used) {
  std::lock_guard lock(mu_);
  auto it = nodes_.find(name);
  if (it == nodes_.end()) return;
  if (used && !(it->second.node.used == *used)) {
    it->second.node.used = *used;
    it->second.dirty = true;
  }
  Touch(it->second);
}

void Registry::OnDisconnected(const std::string& name, const std::string& reason) {
  std::lock_guard lock(mu_);
  auto it = nodes_.find(name);
  if (it == nodes_.end() || !it->second.connected) return;
  it->second.connected = false;
  AddEvent(name, "disconnected", reason);
}

void Registry::OnStateReport(const std::string& name, uint64_t applied_version,
                             const std::string& error,
                             std::optional<std::vector<RuleStatusRecord>> rules,
                             std::optional<std::vector<WorkloadStatusRecord>> workloads) {
  std::unique_lock lock(mu_);
  auto it = nodes_.find(name);
  if (it == nodes_.end()) return;
  Node& n = it->second.node;
  if (!error.empty() && error != n.state_error) {
    AddEvent(name, "state_rejected", fmt::format("desired state not applied: {}", error));
  }
  n.applied_version = applied_version;
  n.state_error = error;
  n.state_reported_ms = clock_.WallMs();
  it->second.state_dirty = true;
  if (rules) it->second.pending_rules = std::move(rules);
  if (!workloads) return;
  // Workload statuses drive rollouts and what `apps get` shows, and change rarely (nodes send
  // them on change, and again with rule reports): written through when they differ from the
  // last written, not behind like heartbeats.
  std::string digest;
  for (const auto& w : *workloads) {
    digest += fmt::format("{}\x1f{}\x1f{}\x1f{}\x1f{}\x1f{}\x1f{}\x1e", w.id, w.revision, w.status,
                          w.ready, w.restarts, w.last_error, w.oom_kills);
  }
  if (digest == it->second.workloads_digest) return;
  it->second.workloads_digest = digest;
  Store::StateReport report{name, n.applied_version, n.state_error, n.state_reported_ms};
  report.has_workloads = true;
  report.workloads = std::move(*workloads);
  lock.unlock();
  if (auto st = store_.UpdateStateReports(std::span(&report, 1)); !st.ok()) {
    spdlog::error("storing workload statuses of {}: {}", name, st.message());
    std::lock_guard relock(mu_);
    if (auto again = nodes_.find(name); again != nodes_.end())
      again->second.workloads_digest.clear();
  }
}

void Registry::OnDesiredVersion(const std::string& name, uint64_t version) {
  std::lock_guard lock(mu_);
  auto it = nodes_.find(name);
  if (it == nodes_.end()) return;
  it->second.node.desired_version = std::max(it->second.node.desired_version, version);
}

void Registry::RecordEvent(const std::string& name, std::string type, std::string message) {
  std::lock_guard lock(mu_);
  AddEvent(name, std::move(type), std::move(message));
}

void Registry::Sweep() {
  std::lock_guard lock(mu_);
  int64_t now = clock_.SteadyMs();
  for (auto& [name, e] : nodes_) {
    int64_t silence = now - e.last_seen_steady;
    if (e.node.status != NodeStatus::kOffline && silence >= options_.offline_after.count()) {
      SetStatus(e, NodeStatus::kOffline,
                fmt::format("no heartbeat for {}", FormatDuration(Millis(silence))));
    } else if (e.node.status == NodeStatus::kOnline && silence >= options_.degraded_after.count()) {
      SetStatus(e, NodeStatus::kDegraded,
                fmt::format("no heartbeat for {}", FormatDuration(Millis(silence))));
    }
  }
}

Status Registry::Flush() {
  std::lock_guard flush_lock(flush_mu_);
  std::vector<Node> full;
  std::vector<Store::HeartbeatUpdate> beats;
  std::vector<Store::StateReport> reports;
  std::vector<NodeEvent> events;
  {
    std::lock_guard lock(mu_);
    for (auto& [name, e] : nodes_) {
      if (e.dirty) {
        full.push_back(e.node);
      } else if (e.heartbeat_dirty) {
        beats.push_back({name, e.node.last_heartbeat_ms});
      }
      if (e.state_dirty) {
        reports.push_back(
            {name, e.node.applied_version, e.node.state_error, e.node.state_reported_ms});
        if (e.pending_rules) {
          reports.back().has_rules = true;
          reports.back().rules = std::move(*e.pending_rules);
          e.pending_rules.reset();
        }
      }
      e.dirty = e.heartbeat_dirty = e.state_dirty = false;
    }
    events.swap(pending_events_);
  }
  Status st = store_.UpdateNodes(full);
  if (st.ok()) st = store_.UpdateHeartbeats(beats);
  if (st.ok()) st = store_.UpdateStateReports(reports);
  if (st.ok()) st = store_.AppendEvents(events);
  if (!st.ok()) {
    // Keep what was not written, so the next flush retries it.
    std::lock_guard lock(mu_);
    for (const auto& n : full) {
      if (auto it = nodes_.find(n.name); it != nodes_.end()) it->second.dirty = true;
    }
    for (const auto& b : beats) {
      if (auto it = nodes_.find(b.node); it != nodes_.end()) it->second.heartbeat_dirty = true;
    }
    for (auto& r : reports) {
      auto it = nodes_.find(r.node);
      if (it == nodes_.end()) continue;
      it->second.state_dirty = true;
      // Unless a newer list came meanwhile.
      if (r.has_rules && !it->second.pending_rules) it->second.pending_rules = std::move(r.rules);
    }
    pending_events_.insert(pending_events_.begin(), events.begin(), events.end());
  }
  return st;
}

std::vector<Node> Registry::List() const {
  std::lock_guard lock(mu_);
  std::vector<Node> out;
  out.reserve(nodes_.size());
  for (const auto& [name, e] : nodes_) out.push_back(e.node);
  std::sort(out.begin(), out.end(), [](const Node& a, const Node& b) { return a.name < b.name; });
  return out;
}

std::optional<Node> Registry::Get(const std::string& name) const {
  std::lock_guard lock(mu_);
  auto it = nodes_.find(name);
  if (it == nodes_.end()) return std::nullopt;
  return it->second.node;
}

std::optional<Labels> Registry::NodeLabels(const std::string& name) const {
  std::lock_guard lock(mu_);
  auto it = nodes_.find(name);
  if (it == nodes_.end()) return std::nullopt;
  return it->second.node.labels;
}

std::vector<std::string> Registry::NodesMatching(const Labels& selector) const {
  std::vector<std::string> out;
  {
    std::lock_guard lock(mu_);
    for (const auto& [name, e] : nodes_) {
      if (SelectorMatches(selector, e.node.labels)) out.push_back(name);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

bool Registry::IsConnected(const std::string& name) const {
  std::lock_guard lock(mu_);
  auto it = nodes_.find(name);
  return it != nodes_.end() && it->second.connected;
}

RegistryCounts Registry::Counts() const {
  std::lock_guard lock(mu_);
  RegistryCounts c;
  c.nodes = nodes_.size();
  for (const auto& [name, e] : nodes_) {
    if (e.connected) ++c.connected;
    switch (e.node.status) {
      case NodeStatus::kOnline:
        ++c.online;
        break;
      case NodeStatus::kDegraded:
        ++c.degraded;
        break;
      case NodeStatus::kOffline:
        ++c.offline;
        break;
    }
  }
  return c;
}

Result<Node> Registry::PatchLabels(const std::string& name,
                                   const std::map<std::string, std::optional<std::string>>& patch) {
  std::unique_lock lock(mu_);
  auto it = nodes_.find(name);
  if (it == nodes_.end()) return Error(Code::kNotFound, "node \"{}\" not found", name);
  Node updated = it->second.node;
  std::vector<std::string> changes;
  for (const auto& [k, v] : patch) {
    auto cur = updated.labels.find(k);
    if (v) {
      if (cur != updated.labels.end() && cur->second == *v) continue;
      updated.labels[k] = *v;
      changes.push_back(k + "=" + *v);
    } else {
      if (cur == updated.labels.end()) continue;
      updated.labels.erase(cur);
      changes.push_back(k + "-");
    }
  }
  // Re-applying what is already there changes nothing and records nothing.
  if (changes.empty()) return updated;
  VERGE_RETURN_IF_ERROR(store_.UpdateNodes(std::span<const Node>(&updated, 1)));
  const Labels before = std::exchange(it->second.node, updated).labels;
  AddEvent(name, "labels_changed", fmt::format("{}", fmt::join(changes, " ")));
  if (labels_observer_) {
    lock.unlock();
    labels_observer_->NodeLabelsChanged(name, before, updated.labels);
  }
  return updated;
}

Result<Node> Registry::Decommission(const std::string& name) {
  std::lock_guard lock(mu_);
  auto it = nodes_.find(name);
  if (it == nodes_.end()) return Error(Code::kNotFound, "node \"{}\" not found", name);
  Node node = it->second.node;
  RevokedCert rev{node.cert_serial, name, clock_.WallMs(), "decommissioned"};
  VERGE_RETURN_IF_ERROR(store_.DecommissionNode(name, rev));
  nodes_.erase(it);
  if (!node.cert_serial.empty()) revoked_.insert(node.cert_serial);
  AddEvent(name, "decommissioned", "certificate " + node.cert_serial + " revoked");
  return node;
}

bool Registry::IsRevoked(const std::string& cert_serial) const {
  std::lock_guard lock(mu_);
  return revoked_.count(cert_serial) > 0;
}

bool Registry::CertIsCurrent(const std::string& name, const std::string& cert_serial) const {
  std::lock_guard lock(mu_);
  auto it = nodes_.find(name);
  return it != nodes_.end() && it->second.node.cert_serial == cert_serial;
}

Result<std::vector<NodeEvent>> Registry::Events(const std::string& name, int limit) {
  VERGE_RETURN_IF_ERROR(Flush());
  return store_.ListEvents(name, limit);
}

}  // namespace verge::cloud
