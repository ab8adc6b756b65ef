// The app scheduler: which nodes run the replicas of an app. A pure, deterministic library (no
// store, no clock, no threads): the caller hands it the nodes, every placement in the fleet and
// the app, and writes the answer into desired state.
//
// Predicates filter nodes out, each with a short reason: online; node selector; constraints
// (cpu/memory/gpu/npu on the node's capacity, region, link latency); capabilities (a gpu or
// npu request needs the capability or capacity); affinity (every listed app already runs
// there) and anti-affinity (none of the listed apps runs there; the app itself listed: at most
// one replica per node); host ports (an app's ports are taken on its node, so two replicas of
// an app with ports never share a node); free resources (cpu, memory, gpu, npu: the requests of
// all placed replicas plus this one never exceed capacity minus what the node reserves).
//
// Priorities score the nodes that pass, each 0-100, combined as a weighted mean:
//   balance  (weight 1) half Kubernetes' LeastAllocated (free cpu and memory after placing),
//            half BalancedAllocation (cpu and memory fractions close to each other);
//   region   (weight 2, only with placement.targetRegion) 100 in the target region; else
//            90 x the share of leading "-"-separated parts in common ("eu-west-1" vs
//            "eu-west-2": 2 of 3 = 60); 0 for none or an unknown region;
//   spread   (weight 2 with placement.spreadAcross, else 0.5) for a node whose domain (region
//            or zone) holds c replicas of the app: 100 x max(0, 1 - c / share), share = the
//            replicas divided evenly over the domains that can take one (rounded up); 3/4 of it
//            by domain and 1/4 by node. Without spreadAcross only the node term, which mildly
//            prefers nodes without a replica of the app.
// Ties break on a hash of (app, node) and then the node name, so that equal nodes are not all
// chosen in name order by every app; the result depends only on the input, never on the order
// of the nodes or placements given.
//
// Incremental: replicas already placed stay where they are while still valid. A node that is
// offline keeps its replicas until spec.rescheduleAfter has passed since it went offline (never
// without one: an offline edge keeps running its apps); a node gone, or that no longer passes
// a predicate (selector, constraint, affinity, resources after a spec change...), loses them.
// Missing replicas are placed one at a time, each updating free resources and spread counts;
// on scale-down the replicas on offline nodes go first, then those on the lowest-scoring nodes.
//
// Speed: the predicates that do not change while an app is placed are evaluated once per node
// per app; candidates sit in max-heaps (one per spread domain, plus one over the domains) and
// only the chosen node and its domain are re-scored after a placement.
// Thread-safety: Fleet is a plain value, not synchronized; the free functions are pure.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "cloud/app_spec.h"
#include "cloud/model.h"

namespace verge::cloud {

struct SchedNode {
  std::string name;
  Labels labels;
  std::string region;
  std::string zone;  // the node's "zone" label
  bool online = true;
  int64_t offline_since_ms = 0;           // when it went offline (online false)
  std::vector<std::string> capabilities;  // "gpu", "npu", ...
  Resources capacity;                     // cpu_millicores, memory_mb, gpu, npu are used
  Resources reserved;  // not for apps (the system, the agent); subtracted from capacity
  std::optional<double> latency_ms;  // of its link to the cloud, when measured
};

// A node as the registry keeps it (online unless its status is offline; zone from labels).
SchedNode SchedNodeFromNode(const Node& node);

// One replica of an app on a node.
struct SchedPlacement {
  std::string app;
  std::string node;
  AppResources resources;
  std::vector<AppPort> host_ports;  // the ports it holds on the node
};

struct SchedApp {
  std::string name;
  AppSpec spec;
};

struct ScheduleOptions {
  bool explain = false;  // fill ScheduleResult::explanation (slower: strings for every node)
};

// One node in `vergectl apps explain`: why it cannot take a replica of the app, or its scores.
// Evaluated against the fleet without the app's own replicas, as the app is scheduled.
struct NodeExplanation {
  std::string node;
  bool feasible = false;
  std::string reason;  // the first predicate that filtered it out
  double balance = 0, region = 0, spread = 0;
  double score = 0;       // the weighted mean, 0-100
  uint32_t replicas = 0;  // of the app on this node in the result
};

struct ScheduleResult {
  std::vector<std::string> nodes;  // one per replica, sorted by name; a node may repeat
  uint32_t kept = 0;               // replicas that stayed where they were
  uint32_t added = 0;              // replicas placed on a node now
  // Replicas taken off a node (moved, or scaled down), one entry each with why.
  struct Removal {
    std::string node;
    std::string reason;
  };
  std::vector<Removal> removed;
  uint32_t unplaced = 0;                     // replicas no node could take
  std::string unplaced_reason;               // "0 of 12 nodes can take a replica: 5 offline, 7 ..."
  std::vector<NodeExplanation> explanation;  // feasible by score (best first), then the rest
};

// The nodes and placements of a fleet, scheduling apps one after another: each Schedule() call
// replaces the app's placements in the fleet with its result, so the next app sees them.
class Fleet {
 public:
  // Placements on nodes not in `nodes` hold nothing (their apps lose them when scheduled).
  Fleet(std::vector<SchedNode> nodes, const std::vector<SchedPlacement>& placements);

  // The app's current replicas are the fleet's placements of app.name.
  ScheduleResult Schedule(const SchedApp& app, int64_t now_ms, const ScheduleOptions& opts = {});
  // Takes the app's replicas off the fleet (the app was deleted).
  void Remove(const std::string& app);

  // What the placed replicas request on a node, and the replicas of an app there.
  AppResources Allocated(const std::string& node) const;
  uint32_t Replicas(const std::string& app, const std::string& node) const;
  size_t node_count() const { return nodes_.size(); }

 private:
  class Run;
  static constexpr uint32_t kNoNode = UINT32_MAX;

  struct NodeState {
    AppResources used;                                 // requests of the replicas placed here
    std::vector<std::pair<uint32_t, uint32_t>> apps;   // (app, replicas)
    std::vector<std::pair<uint32_t, uint32_t>> ports;  // (port * 2 + udp, app)
    uint32_t region = 0, zone = 0;                     // interned region, and (region, zone)
    uint32_t gpu = 0, npu = 0;  // capacity, 1 where only the capability is known
    // What apps may use: capacity minus reserved (kept here, next to `used`, for speed).
    uint64_t alloc_cpu = 0, alloc_memory = 0;
    uint32_t alloc_gpu = 0, alloc_npu = 0;
    bool online = true;
    uint64_t hash = 0;  // of the name, for tie-breaks
  };
  struct Replica {
    uint32_t node = kNoNode;
    std::string node_name;  // for a node not in the fleet
    AppResources resources;
    std::vector<AppPort> ports;
  };
  struct AppState {
    std::string name;
    std::vector<Replica> replicas;
  };

  uint32_t AppId(const std::string& app);
  std::optional<uint32_t> FindApp(const std::string& app) const;
  void AddToNode(uint32_t node, uint32_t app, const AppResources& r,
                 const std::vector<AppPort>& ports);
  void RemoveFromNode(uint32_t node, uint32_t app, const AppResources& r,
                      const std::vector<AppPort>& ports);

  std::vector<SchedNode> nodes_;  // sorted by name
  std::vector<NodeState> state_;
  std::unordered_map<std::string, uint32_t> node_index_;
  std::vector<std::string> region_names_;  // by interned id
  uint32_t zones_ = 0;
  std::unordered_map<std::string, uint32_t> app_index_;
  std::vector<AppState> apps_;
  // Per selector label (key, value): which nodes have it. Built when an app first asks, since
  // many apps share a selector and label lookups dominate otherwise.
  std::map<std::pair<std::string, std::string>, std::vector<uint8_t>> label_match_;
};

// Schedules one app against a fleet.
ScheduleResult Schedule(const std::vector<SchedNode>& nodes,
                        const std::vector<SchedPlacement>& placements, const SchedApp& app,
                        int64_t now_ms, const ScheduleOptions& opts = {});

// Schedules apps in order (a fleet-wide reschedule), each seeing the placements of those
// before it; results in the same order.
std::vector<ScheduleResult> ScheduleAll(const std::vector<SchedNode>& nodes,
                                        const std::vector<SchedPlacement>& placements,
                                        const std::vector<SchedApp>& apps, int64_t now_ms);

}  // namespace verge::cloud
