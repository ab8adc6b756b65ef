#include "cloud/scheduler.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <map>

#include "common/duration.h"

namespace verge::cloud {
namespace {

constexpr uint32_t kNoApp = UINT32_MAX;

uint64_t Fnv1a(std::string_view s) {
  uint64_t h = 1469598103934665603ULL;
  for (char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ULL;
  }
  return h;
}

// splitmix64's finalizer: spreads (app, node) pairs evenly over the tie-break order.
uint64_t Mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

uint32_t PortKey(const AppPort& p) { return p.port * 2 + (p.protocol == "udp" ? 1 : 0); }

uint64_t SatSub(uint64_t a, uint64_t b) { return a > b ? a - b : 0; }

enum class Verdict : uint8_t {
  kOk,
  kOffline,
  kSelector,
  kConstraint,
  kCapability,
  kAffinity,
  kAntiAffinity,
  kPort,
  kCpu,
  kMemory,
  kGpu,
  kNpu,
};
constexpr size_t kVerdicts = 12;

std::string_view VerdictName(Verdict v) {
  switch (v) {
    case Verdict::kOk:
      return "ok";
    case Verdict::kOffline:
      return "offline";
    case Verdict::kSelector:
      return "selector";
    case Verdict::kConstraint:
      return "constraint";
    case Verdict::kCapability:
      return "capability missing";
    case Verdict::kAffinity:
      return "affinity";
    case Verdict::kAntiAffinity:
      return "anti-affinity";
    case Verdict::kPort:
      return "port in use";
    case Verdict::kCpu:
      return "insufficient cpu";
    case Verdict::kMemory:
      return "insufficient memory";
    case Verdict::kGpu:
      return "insufficient gpu";
    case Verdict::kNpu:
      return "insufficient npu";
  }
  return "?";
}

// 100 in the target region, else 90 x the share of leading "-"-separated parts in common.
double RegionCloseness(std::string_view target, std::string_view region) {
  if (region.empty()) return 0;
  if (region == target) return 100;
  auto split = [](std::string_view s) {
    std::vector<std::string_view> parts;
    size_t start = 0;
    while (true) {
      size_t end = s.find('-', start);
      parts.push_back(s.substr(start, end == std::string_view::npos ? end : end - start));
      if (end == std::string_view::npos) break;
      start = end + 1;
    }
    return parts;
  };
  auto a = split(target), b = split(region);
  size_t common = 0;
  while (common < a.size() && common < b.size() && a[common] == b[common]) ++common;
  return 90.0 * static_cast<double>(common) / static_cast<double>(std::max(a.size(), b.size()));
}

// A candidate: a node, or in the top heap of a spread a domain by its best node.
struct Entry {
  double key;
  uint64_t tie;
  uint32_t node;
  uint32_t version;
  uint32_t domain;
};
// Heap order: whether b is the better candidate (higher key, then higher tie, then the node
// first by name).
bool Worse(const Entry& a, const Entry& b) {
  if (a.key != b.key) return a.key < b.key;
  if (a.tie != b.tie) return a.tie < b.tie;
  return a.node > b.node;
}

bool Better(const Entry& a, const Entry& b) { return Worse(b, a); }

// The best of a changing set of nodes. Without domains one max-heap of nodes; with domains
// a heap per domain plus one over the domains (keyed by the domain's best node plus a term of
// the domain), so a change re-keys one node and one domain. Stale entries are skipped by
// version rather than removed. Only the chosen node's key changes, and it only falls, so a
// heap never needs more than its best `limit` starting entries (limit: the replicas to
// place): Add() keeps just those, which makes a small app on a large fleet cost one pass.
class Chooser {
 public:
  Chooser(size_t nodes, size_t domains, bool by_domain, size_t limit)
      : by_domain_(by_domain), limit_(limit), node_version_(nodes, 0) {
    if (by_domain_) {
      dom_heaps_.resize(domains);
      dom_version_.assign(domains, 0);
      dom_term_.assign(domains, 0);
    }
  }

  void Add(uint32_t node, uint32_t domain, double key, uint64_t tie) {
    Entry e{key, tie, node, 0, domain};
    auto& h = by_domain_ ? dom_heaps_[domain] : top_;
    if (limit_ >= node_version_.size()) {
      h.push_back(e);
    } else if (h.size() < limit_) {  // a min-heap of the best `limit_` so far
      h.push_back(e);
      std::push_heap(h.begin(), h.end(), Better);
    } else if (Worse(h.front(), e)) {
      std::pop_heap(h.begin(), h.end(), Better);
      h.back() = e;
      std::push_heap(h.begin(), h.end(), Better);
    }
  }

  template <typename Term>
  void Build(const Term& term) {
    if (by_domain_) {
      for (uint32_t d = 0; d < dom_heaps_.size(); ++d) {
        auto& h = dom_heaps_[d];
        if (h.empty()) continue;
        std::make_heap(h.begin(), h.end(), Worse);
        dom_term_[d] = term(d);
        top_.push_back(DomainEntry(d));
      }
    }
    std::make_heap(top_.begin(), top_.end(), Worse);
  }

  std::optional<uint32_t> Best() {
    while (!top_.empty()) {
      const Entry& e = top_.front();
      bool valid =
          by_domain_ ? e.version == dom_version_[e.domain] : e.version == node_version_[e.node];
      if (valid) return e.node;
      std::pop_heap(top_.begin(), top_.end(), Worse);
      top_.pop_back();
    }
    return std::nullopt;
  }

  // The node's key changed (nullopt: it leaves the set), and so did its domain's term.
  void Update(uint32_t node, uint32_t domain, std::optional<double> key, uint64_t tie,
              double domain_term) {
    uint32_t version = ++node_version_[node];
    if (!by_domain_) {
      if (key) Push(top_, Entry{*key, tie, node, version, 0});
      return;
    }
    auto& h = dom_heaps_[domain];
    if (key) Push(h, Entry{*key, tie, node, version, domain});
    while (!h.empty() && h.front().version != node_version_[h.front().node]) {
      std::pop_heap(h.begin(), h.end(), Worse);
      h.pop_back();
    }
    ++dom_version_[domain];
    dom_term_[domain] = domain_term;
    if (!h.empty()) Push(top_, DomainEntry(domain));
  }

 private:
  static void Push(std::vector<Entry>& h, Entry e) {
    h.push_back(e);
    std::push_heap(h.begin(), h.end(), Worse);
  }
  Entry DomainEntry(uint32_t d) const {
    const Entry& best = dom_heaps_[d].front();
    return Entry{best.key + dom_term_[d], best.tie, best.node, dom_version_[d], d};
  }

  bool by_domain_;
  size_t limit_;
  std::vector<Entry> top_;
  std::vector<uint32_t> node_version_;
  std::vector<std::vector<Entry>> dom_heaps_;
  std::vector<uint32_t> dom_version_;
  std::vector<double> dom_term_;
};

enum class ConstraintKey : uint8_t { kCpu, kMemory, kGpu, kNpu, kRegion, kLatency };
enum class ConstraintOp : uint8_t { kGte, kLte, kEq };

struct Constraint {
  ConstraintKey key;
  ConstraintOp op;
  double number;
  const AppConstraint* spec;
};

}  // namespace

SchedNode SchedNodeFromNode(const Node& node) {
  SchedNode s;
  s.name = node.name;
  s.labels = node.labels;
  s.region = node.region;
  if (auto it = node.labels.find("zone"); it != node.labels.end()) s.zone = it->second;
  s.online = node.status != NodeStatus::kOffline;
  s.offline_since_ms = s.online ? 0 : node.status_since_ms;
  s.capabilities = node.capabilities;
  s.capacity = node.capacity;
  return s;
}

// One Schedule() call: the app's view of the fleet (its predicates decoded, its replica
// counts per node and domain) and the steps keep, scale down, place.
class Fleet::Run {
 public:
  Run(Fleet& f, uint32_t app, const SchedApp& a, int64_t now_ms, const ScheduleOptions& opts)
      : f_(f),
        app_(app),
        name_(a.name),
        spec_(a.spec),
        now_ms_(now_ms),
        opts_(opts),
        req_(a.spec.resources),
        spread_(!a.spec.placement.spread_across.empty()),
        app_hash_(Fnv1a(a.name)) {
    for (const auto& p : spec_.ports) ports_.push_back(PortKey(p));
    for (const auto& other : spec_.placement.affinity) {
      if (other == name_) continue;
      affinity_.push_back(f_.FindApp(other).value_or(kNoApp));
      affinity_names_.push_back(&other);
    }
    for (const auto& other : spec_.placement.anti_affinity) {
      if (other == name_) {
        self_anti_ = true;
      } else if (auto id = f_.FindApp(other)) {
        anti_.push_back(*id);
      }
    }
    for (const auto& c : spec_.placement.constraints) {
      Constraint k{};
      k.spec = &c;
      k.number = c.number;
      k.key = c.key == "cpu"      ? ConstraintKey::kCpu
              : c.key == "memory" ? ConstraintKey::kMemory
              : c.key == "gpu"    ? ConstraintKey::kGpu
              : c.key == "npu"    ? ConstraintKey::kNpu
              : c.key == "region" ? ConstraintKey::kRegion
                                  : ConstraintKey::kLatency;
      k.op = c.op == "gte"   ? ConstraintOp::kGte
             : c.op == "lte" ? ConstraintOp::kLte
                             : ConstraintOp::kEq;
      constraints_.push_back(k);
    }
    w_region_ = spec_.placement.target_region.empty() ? 0 : 2;
    w_spread_ = spread_ ? 2 : 0.5;
    f_node_ = spread_ ? 0.25 : 1;
    f_dom_ = spread_ ? 0.75 : 0;
    for (const auto& label : spec_.placement.node_selector) {
      auto [it, inserted] = f_.label_match_.try_emplace(label);
      if (inserted) {
        it->second.resize(f_.nodes_.size());
        for (size_t n = 0; n < f_.nodes_.size(); ++n) {
          auto l = f_.nodes_[n].labels.find(label.first);
          it->second[n] = l != f_.nodes_[n].labels.end() && l->second == label.second;
        }
      }
      selector_.emplace_back(&label, &it->second);
    }
    by_region_ = spec_.placement.spread_across == "region";
    only_online_ = spec_.placement.node_selector.empty() && constraints_.empty() && req_.gpu == 0 &&
                   req_.npu == 0 && affinity_.empty() && anti_.empty();
    domains_ = by_region_                                ? f_.region_names_.size()
               : spec_.placement.spread_across == "zone" ? f_.zones_
                                                         : 1;
  }

  ScheduleResult Go(std::vector<Replica> old);

 private:
  uint32_t Domain(uint32_t n) const {
    const auto& st = f_.state_[n];
    return by_region_ ? st.region : spread_ ? st.zone : 0;
  }
  uint64_t Tie(uint32_t n) const { return Mix(app_hash_ ^ f_.state_[n].hash); }

  bool ConstraintHolds(const Constraint& c, uint32_t n, std::string* why) const {
    const SchedNode& node = f_.nodes_[n];
    const auto& st = f_.state_[n];
    std::string_view op_name = c.spec->op;
    if (c.key == ConstraintKey::kRegion) {
      if (node.region == c.spec->value) return true;
      if (why) {
        *why = fmt::format("constraint region eq {}: node is {}", c.spec->value,
                           node.region.empty() ? "in no region" : node.region);
      }
      return false;
    }
    double x = 0;
    switch (c.key) {
      case ConstraintKey::kCpu:
        x = static_cast<double>(node.capacity.cpu_millicores);
        break;
      case ConstraintKey::kMemory:
        x = static_cast<double>(node.capacity.memory_mb);
        break;
      case ConstraintKey::kGpu:
        x = st.gpu;
        break;
      case ConstraintKey::kNpu:
        x = st.npu;
        break;
      case ConstraintKey::kLatency:
        if (!node.latency_ms) {
          if (why)
            *why = fmt::format("constraint latency {} {}: latency unknown", op_name, c.spec->value);
          return false;
        }
        x = *node.latency_ms;
        break;
      case ConstraintKey::kRegion:
        break;
    }
    bool ok = c.op == ConstraintOp::kGte   ? x >= c.number
              : c.op == ConstraintOp::kLte ? x <= c.number
                                           : x == c.number;
    if (!ok && why) {
      if (c.key == ConstraintKey::kLatency) {
        *why = fmt::format("constraint latency {} {}: {} ms", op_name, c.spec->value, x);
      } else {
        *why =
            fmt::format("constraint {} {} {}: node has {}", c.spec->key, op_name, c.spec->value, x);
      }
    }
    return ok;
  }

  // The predicates that hold still while this app is placed.
  Verdict StaticCheck(uint32_t n, bool check_online, std::string* why) const {
    const auto& st = f_.state_[n];
    if (check_online && !st.online) {
      if (why) *why = "offline";
      return Verdict::kOffline;
    }
    if (only_online_) return Verdict::kOk;
    for (const auto& [label, match] : selector_) {
      if (!(*match)[n]) {
        if (why) *why = fmt::format("selector: needs {}={}", label->first, label->second);
        return Verdict::kSelector;
      }
    }
    for (const auto& c : constraints_) {
      if (!ConstraintHolds(c, n, why)) return Verdict::kConstraint;
    }
    if (req_.gpu > 0 && st.gpu == 0) {
      if (why) *why = "capability gpu missing";
      return Verdict::kCapability;
    }
    if (req_.npu > 0 && st.npu == 0) {
      if (why) *why = "capability npu missing";
      return Verdict::kCapability;
    }
    for (size_t i = 0; i < affinity_.size(); ++i) {
      if (AppCount(n, affinity_[i]) == 0) {
        if (why) {
          *why = fmt::format("affinity: app {} not on node", *affinity_names_[i]);
        }
        return Verdict::kAffinity;
      }
    }
    for (uint32_t other : anti_) {
      if (AppCount(n, other) > 0) {
        if (why) *why = fmt::format("anti-affinity: app {} runs here", f_.apps_[other].name);
        return Verdict::kAntiAffinity;
      }
    }
    return Verdict::kOk;
  }

  // The predicates that change as replicas land: one replica per node, ports, resources.
  Verdict DynamicCheck(uint32_t n, std::string* why) const {
    const auto& st = f_.state_[n];
    if (self_anti_ && count_[n] > 0) {
      if (why) *why = fmt::format("anti-affinity: app {} runs here", name_);
      return Verdict::kAntiAffinity;
    }
    for (uint32_t p : ports_) {
      for (const auto& [key, app] : st.ports) {
        if (key == p) {
          if (why) {
            *why = fmt::format("port {}/{} in use by app {}", p / 2, p % 2 ? "udp" : "tcp",
                               f_.apps_[app].name);
          }
          return Verdict::kPort;
        }
      }
    }
    if (req_.cpu_millicores > 0 && st.used.cpu_millicores + req_.cpu_millicores > st.alloc_cpu) {
      if (why) {
        *why = fmt::format("insufficient cpu: {}m requested, {}m free of {}m", req_.cpu_millicores,
                           SatSub(st.alloc_cpu, st.used.cpu_millicores), st.alloc_cpu);
      }
      return Verdict::kCpu;
    }
    if (req_.memory_mb > 0 && st.used.memory_mb + req_.memory_mb > st.alloc_memory) {
      if (why) {
        *why = fmt::format("insufficient memory: {} MB requested, {} MB free of {}", req_.memory_mb,
                           SatSub(st.alloc_memory, st.used.memory_mb), st.alloc_memory);
      }
      return Verdict::kMemory;
    }
    if (req_.gpu > 0 && uint64_t{st.used.gpu} + req_.gpu > st.alloc_gpu) {
      if (why) {
        *why = fmt::format("insufficient gpu: {} requested, {} free of {}", req_.gpu,
                           SatSub(st.alloc_gpu, st.used.gpu), st.alloc_gpu);
      }
      return Verdict::kGpu;
    }
    if (req_.npu > 0 && uint64_t{st.used.npu} + req_.npu > st.alloc_npu) {
      if (why) {
        *why = fmt::format("insufficient npu: {} requested, {} free of {}", req_.npu,
                           SatSub(st.alloc_npu, st.used.npu), st.alloc_npu);
      }
      return Verdict::kNpu;
    }
    return Verdict::kOk;
  }

  uint32_t AppCount(uint32_t n, uint32_t app) const {
    if (app == kNoApp) return 0;
    for (const auto& [a, count] : f_.state_[n].apps) {
      if (a == app) return count;
    }
    return 0;
  }

  // LeastAllocated and BalancedAllocation of cpu and memory, with or without one more replica.
  double Balance(uint32_t n, bool with_request) const {
    const auto& st = f_.state_[n];
    auto frac = [](uint64_t used_v, uint64_t alloc) {
      if (alloc == 0) return used_v > 0 ? 1.0 : 0.0;
      return std::min(1.0, static_cast<double>(used_v) / static_cast<double>(alloc));
    };
    double fc =
        frac(st.used.cpu_millicores + (with_request ? req_.cpu_millicores : 0), st.alloc_cpu);
    double fm = frac(st.used.memory_mb + (with_request ? req_.memory_mb : 0), st.alloc_memory);
    double least = (2 - fc - fm) / 2 * 100;
    double balanced = (1 - std::fabs(fc - fm)) * 100;
    return (least + balanced) / 2;
  }

  double Region(uint32_t n) {
    if (w_region_ == 0) return 0;
    uint32_t r = f_.state_[n].region;
    if (region_cache_.empty()) region_cache_.assign(f_.region_names_.size(), -1);
    if (region_cache_[r] < 0) {
      region_cache_[r] = RegionCloseness(spec_.placement.target_region, f_.region_names_[r]);
    }
    return region_cache_[r];
  }

  static double Term(uint32_t count, uint32_t share) {
    return 100.0 * std::max(0.0, 1.0 - static_cast<double>(count) / share);
  }
  double NodeSpread(uint32_t count) const { return Term(count, share_node_); }
  double DomainSpread(uint32_t count) const { return spread_ ? Term(count, share_dom_) : 0; }

  // Sum of the weighted priorities that belong to the node (the domain's term apart).
  double PlaceKey(uint32_t n) {
    return Balance(n, true) + w_region_ * Region(n) + w_spread_ * f_node_ * NodeSpread(count_[n]);
  }
  double PlaceDomainTerm(uint32_t d) const {
    return w_spread_ * f_dom_ * DomainSpread(dom_count_[d]);
  }
  // Scale-down takes the replica whose node would score lowest for it: offline nodes first.
  double RemoveKey(uint32_t n) {
    double score =
        Balance(n, false) + w_region_ * Region(n) + w_spread_ * f_node_ * NodeSpread(count_[n] - 1);
    return (f_.state_[n].online ? 0 : 1e9) - score;
  }
  double RemoveDomainTerm(uint32_t d) const {
    return dom_count_[d] == 0 ? 0 : -w_spread_ * f_dom_ * DomainSpread(dom_count_[d] - 1);
  }
  double Total(double balance, double region, double spread) const {
    return (balance + w_region_ * region + w_spread_ * spread) / (1 + w_region_ + w_spread_);
  }

  void Add(uint32_t n) {
    f_.AddToNode(n, app_, req_, spec_.ports);
    ++count_[n];
    ++dom_count_[Domain(n)];
  }
  void Drop(uint32_t n) {
    f_.RemoveFromNode(n, app_, req_, spec_.ports);
    --count_[n];
    --dom_count_[Domain(n)];
  }

  void Explain(const std::vector<Verdict>& verdicts, ScheduleResult& res);
  std::string UnplacedReason() const;

  Fleet& f_;
  uint32_t app_;
  const std::string& name_;
  const AppSpec& spec_;
  int64_t now_ms_;
  ScheduleOptions opts_;
  AppResources req_;
  bool spread_;
  uint64_t app_hash_;
  std::vector<uint32_t> ports_;
  std::vector<uint32_t> affinity_;  // app ids (kNoApp: not in the fleet), and their names
  std::vector<const std::string*> affinity_names_;
  std::vector<uint32_t> anti_;
  bool self_anti_ = false;
  // The selector's labels, each with which nodes have it.
  std::vector<
      std::pair<const std::pair<const std::string, std::string>*, const std::vector<uint8_t>*>>
      selector_;
  bool by_region_ = false;    // spread across regions (else zones, when spread_)
  bool only_online_ = false;  // no static predicate but online
  std::vector<Constraint> constraints_;
  double w_region_ = 0, w_spread_ = 0, f_node_ = 0, f_dom_ = 0;
  size_t domains_ = 1;
  uint32_t share_node_ = 1, share_dom_ = 1;
  std::vector<uint32_t> count_;      // replicas of the app per node
  std::vector<uint32_t> dom_count_;  // and per spread domain
  std::vector<double> region_cache_;
};

ScheduleResult Fleet::Run::Go(std::vector<Replica> old) {
  ScheduleResult res;
  const auto n_nodes = static_cast<uint32_t>(f_.nodes_.size());
  count_.assign(n_nodes, 0);
  dom_count_.assign(domains_, 0);

  std::vector<Verdict> verdicts(n_nodes);
  uint32_t feasible = 0, feasible_domains = 0;
  std::vector<uint8_t> domain_seen(domains_, 0);
  for (uint32_t n = 0; n < n_nodes; ++n) {
    verdicts[n] = StaticCheck(n, true, nullptr);
    if (verdicts[n] != Verdict::kOk) continue;
    ++feasible;
    if (!domain_seen[Domain(n)]) {
      domain_seen[Domain(n)] = 1;
      ++feasible_domains;
    }
  }
  const uint32_t replicas = spec_.replicas;
  share_node_ = std::max<uint32_t>(1, (replicas + feasible - 1) / std::max<uint32_t>(1, feasible));
  share_dom_ = std::max<uint32_t>(
      1, (replicas + feasible_domains - 1) / std::max<uint32_t>(1, feasible_domains));
  if (opts_.explain) Explain(verdicts, res);

  // Keep what is still valid, in node order so that the input's order does not matter.
  std::stable_sort(old.begin(), old.end(),
                   [](const Replica& a, const Replica& b) { return a.node < b.node; });
  std::vector<uint32_t> kept;
  for (const Replica& r : old) {
    if (r.node == kNoNode) {
      res.removed.push_back({r.node_name, "node is no longer registered"});
      continue;
    }
    const SchedNode& node = f_.nodes_[r.node];
    std::string why;
    if (!node.online && spec_.reschedule_after_ms > 0 &&
        now_ms_ - node.offline_since_ms >= spec_.reschedule_after_ms) {
      why = fmt::format("offline longer than rescheduleAfter ({})",
                        FormatDuration(Millis(spec_.reschedule_after_ms)));
    } else if (StaticCheck(r.node, false, &why) == Verdict::kOk &&
               DynamicCheck(r.node, &why) == Verdict::kOk) {
      Add(r.node);
      kept.push_back(r.node);
      continue;
    }
    res.removed.push_back({node.name, std::move(why)});
  }

  // Scale down.
  if (kept.size() > replicas) {
    size_t excess = kept.size() - replicas;
    std::vector<uint32_t> take(n_nodes, 0);
    if (replicas == 0) {
      for (uint32_t n : kept) {
        Drop(n);
        ++take[n];
      }
    } else {
      Chooser chooser(n_nodes, domains_, spread_, excess);
      for (uint32_t n = 0; n < n_nodes; ++n) {
        if (count_[n] > 0) chooser.Add(n, Domain(n), RemoveKey(n), Tie(n));
      }
      chooser.Build([&](uint32_t d) { return RemoveDomainTerm(d); });
      while (excess-- > 0) {
        auto n = chooser.Best();
        if (!n) break;  // cannot happen: there are more kept replicas than wanted
        Drop(*n);
        ++take[*n];
        std::optional<double> key;
        if (count_[*n] > 0) key = RemoveKey(*n);
        chooser.Update(*n, Domain(*n), key, Tie(*n), RemoveDomainTerm(Domain(*n)));
      }
    }
    std::vector<uint32_t> still;
    for (uint32_t n : kept) {
      if (take[n] > 0) {
        --take[n];
        res.removed.push_back({f_.nodes_[n].name, "scaled down"});
      } else {
        still.push_back(n);
      }
    }
    kept = std::move(still);
  }
  res.kept = static_cast<uint32_t>(kept.size());

  // Place the missing replicas one at a time.
  std::vector<uint32_t> placed = kept;
  uint32_t missing = replicas > kept.size() ? replicas - static_cast<uint32_t>(kept.size()) : 0;
  if (missing > 0) {
    Chooser chooser(n_nodes, domains_, spread_, missing);
    for (uint32_t n = 0; n < n_nodes; ++n) {
      if (verdicts[n] == Verdict::kOk && DynamicCheck(n, nullptr) == Verdict::kOk) {
        chooser.Add(n, Domain(n), PlaceKey(n), Tie(n));
      }
    }
    chooser.Build([&](uint32_t d) { return PlaceDomainTerm(d); });
    while (missing > 0) {
      auto n = chooser.Best();
      if (!n) break;
      Add(*n);
      placed.push_back(*n);
      ++res.added;
      --missing;
      std::optional<double> key;
      if (DynamicCheck(*n, nullptr) == Verdict::kOk) key = PlaceKey(*n);
      chooser.Update(*n, Domain(*n), key, Tie(*n), PlaceDomainTerm(Domain(*n)));
    }
  }
  res.unplaced = missing;
  if (missing > 0) res.unplaced_reason = UnplacedReason();

  std::sort(placed.begin(), placed.end());
  auto& replicas_out = f_.apps_[app_].replicas;
  replicas_out.clear();
  res.nodes.reserve(placed.size());
  for (uint32_t n : placed) {
    res.nodes.push_back(f_.nodes_[n].name);
    replicas_out.push_back(Replica{n, {}, req_, spec_.ports});
  }
  for (auto& e : res.explanation) {
    auto it = f_.node_index_.find(e.node);
    if (it != f_.node_index_.end()) e.replicas = count_[it->second];
  }
  return res;
}

void Fleet::Run::Explain(const std::vector<Verdict>& verdicts, ScheduleResult& res) {
  struct Row {
    NodeExplanation e;
    Entry order;
  };
  std::vector<Row> rows;
  rows.reserve(f_.nodes_.size());
  for (uint32_t n = 0; n < f_.nodes_.size(); ++n) {
    Row row;
    row.e.node = f_.nodes_[n].name;
    std::string why;
    Verdict v = verdicts[n];
    if (v != Verdict::kOk) {
      StaticCheck(n, true, &why);
    } else {
      v = DynamicCheck(n, &why);
    }
    if (v != Verdict::kOk) {
      row.e.reason = std::move(why);
      row.order = Entry{-1, 0, n, 0, 0};
    } else {
      row.e.feasible = true;
      row.e.balance = Balance(n, true);
      row.e.region = Region(n);
      row.e.spread =
          spread_ ? f_dom_ * DomainSpread(dom_count_[Domain(n)]) + f_node_ * NodeSpread(count_[n])
                  : NodeSpread(count_[n]);
      row.e.score = Total(row.e.balance, row.e.region, row.e.spread);
      row.order = Entry{row.e.score, Tie(n), n, 0, 0};
    }
    rows.push_back(std::move(row));
  }
  std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
    if (a.e.feasible != b.e.feasible) return a.e.feasible;
    if (!a.e.feasible) return a.order.node < b.order.node;
    return Worse(b.order, a.order);
  });
  res.explanation.reserve(rows.size());
  for (auto& r : rows) res.explanation.push_back(std::move(r.e));
}

std::string Fleet::Run::UnplacedReason() const {
  if (f_.nodes_.empty()) return "no nodes";
  std::array<uint32_t, kVerdicts> tally{};
  uint32_t ok = 0;
  for (uint32_t n = 0; n < f_.nodes_.size(); ++n) {
    Verdict v = StaticCheck(n, true, nullptr);
    if (v == Verdict::kOk) v = DynamicCheck(n, nullptr);
    if (v == Verdict::kOk) {
      ++ok;
    } else {
      ++tally[static_cast<size_t>(v)];
    }
  }
  std::vector<std::pair<uint32_t, std::string_view>> parts;
  for (size_t i = 1; i < kVerdicts; ++i) {
    if (tally[i] > 0) parts.emplace_back(tally[i], VerdictName(static_cast<Verdict>(i)));
  }
  std::sort(parts.begin(), parts.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  });
  std::string out = fmt::format("{} of {} nodes can take another replica", ok, f_.nodes_.size());
  for (size_t i = 0; i < parts.size(); ++i) {
    out += fmt::format("{}{} {}", i == 0 ? ": " : ", ", parts[i].first, parts[i].second);
  }
  return out;
}

Fleet::Fleet(std::vector<SchedNode> nodes, const std::vector<SchedPlacement>& placements)
    : nodes_(std::move(nodes)) {
  std::stable_sort(nodes_.begin(), nodes_.end(),
                   [](const SchedNode& a, const SchedNode& b) { return a.name < b.name; });
  nodes_.erase(std::unique(nodes_.begin(), nodes_.end(),
                           [](const SchedNode& a, const SchedNode& b) { return a.name == b.name; }),
               nodes_.end());
  state_.resize(nodes_.size());
  std::unordered_map<std::string, uint32_t> regions, zones;
  for (uint32_t n = 0; n < nodes_.size(); ++n) {
    const SchedNode& node = nodes_[n];
    NodeState& st = state_[n];
    node_index_.emplace(node.name, n);
    auto [r, r_new] = regions.emplace(node.region, static_cast<uint32_t>(regions.size()));
    if (r_new) region_names_.push_back(node.region);
    st.region = r->second;
    std::string zone_key = node.region;
    zone_key.push_back('\0');
    zone_key += node.zone;
    st.zone = zones.emplace(zone_key, static_cast<uint32_t>(zones.size())).first->second;
    auto has = [&](std::string_view cap) {
      return std::find(node.capabilities.begin(), node.capabilities.end(), cap) !=
             node.capabilities.end();
    };
    st.gpu = node.capacity.gpu > 0 ? node.capacity.gpu : (has("gpu") ? 1 : 0);
    st.npu = node.capacity.npu > 0 ? node.capacity.npu : (has("npu") ? 1 : 0);
    st.alloc_cpu = SatSub(node.capacity.cpu_millicores, node.reserved.cpu_millicores);
    st.alloc_memory = SatSub(node.capacity.memory_mb, node.reserved.memory_mb);
    st.alloc_gpu = static_cast<uint32_t>(SatSub(st.gpu, node.reserved.gpu));
    st.alloc_npu = static_cast<uint32_t>(SatSub(st.npu, node.reserved.npu));
    st.online = node.online;
    st.hash = Fnv1a(node.name);
  }
  zones_ = static_cast<uint32_t>(zones.size());
  for (const auto& p : placements) {
    uint32_t app = AppId(p.app);
    Replica r;
    r.resources = p.resources;
    r.ports = p.host_ports;
    if (auto it = node_index_.find(p.node); it != node_index_.end()) {
      r.node = it->second;
      AddToNode(r.node, app, r.resources, r.ports);
    } else {
      r.node_name = p.node;
    }
    apps_[app].replicas.push_back(std::move(r));
  }
}

uint32_t Fleet::AppId(const std::string& app) {
  auto [it, inserted] = app_index_.emplace(app, static_cast<uint32_t>(apps_.size()));
  if (inserted) apps_.push_back(AppState{app, {}});
  return it->second;
}

std::optional<uint32_t> Fleet::FindApp(const std::string& app) const {
  auto it = app_index_.find(app);
  if (it == app_index_.end()) return std::nullopt;
  return it->second;
}

void Fleet::AddToNode(uint32_t node, uint32_t app, const AppResources& r,
                      const std::vector<AppPort>& ports) {
  NodeState& st = state_[node];
  st.used.cpu_millicores += r.cpu_millicores;
  st.used.memory_mb += r.memory_mb;
  st.used.gpu += r.gpu;
  st.used.npu += r.npu;
  bool found = false;
  for (auto& [a, count] : st.apps) {
    if (a == app) {
      ++count;
      found = true;
      break;
    }
  }
  if (!found) st.apps.emplace_back(app, 1);
  for (const auto& p : ports) st.ports.emplace_back(PortKey(p), app);
}

void Fleet::RemoveFromNode(uint32_t node, uint32_t app, const AppResources& r,
                           const std::vector<AppPort>& ports) {
  NodeState& st = state_[node];
  st.used.cpu_millicores = SatSub(st.used.cpu_millicores, r.cpu_millicores);
  st.used.memory_mb = SatSub(st.used.memory_mb, r.memory_mb);
  st.used.gpu = static_cast<uint32_t>(SatSub(st.used.gpu, r.gpu));
  st.used.npu = static_cast<uint32_t>(SatSub(st.used.npu, r.npu));
  for (size_t i = 0; i < st.apps.size(); ++i) {
    if (st.apps[i].first != app) continue;
    if (--st.apps[i].second == 0) st.apps.erase(st.apps.begin() + static_cast<ptrdiff_t>(i));
    break;
  }
  for (const auto& p : ports) {
    auto it = std::find(st.ports.begin(), st.ports.end(), std::make_pair(PortKey(p), app));
    if (it != st.ports.end()) st.ports.erase(it);
  }
}

ScheduleResult Fleet::Schedule(const SchedApp& app, int64_t now_ms, const ScheduleOptions& opts) {
  uint32_t id = AppId(app.name);
  std::vector<Replica> old = std::move(apps_[id].replicas);
  apps_[id].replicas.clear();
  for (const Replica& r : old) {
    if (r.node != kNoNode) RemoveFromNode(r.node, id, r.resources, r.ports);
  }
  Run run(*this, id, app, now_ms, opts);
  return run.Go(std::move(old));
}

void Fleet::Remove(const std::string& app) {
  auto id = FindApp(app);
  if (!id) return;
  for (const Replica& r : apps_[*id].replicas) {
    if (r.node != kNoNode) RemoveFromNode(r.node, *id, r.resources, r.ports);
  }
  apps_[*id].replicas.clear();
}

AppResources Fleet::Allocated(const std::string& node) const {
  auto it = node_index_.find(node);
  return it == node_index_.end() ? AppResources{} : state_[it->second].used;
}

uint32_t Fleet::Replicas(const std::string& app, const std::string& node) const {
  auto a = FindApp(app);
  auto it = node_index_.find(node);
  if (!a || it == node_index_.end()) return 0;
  for (const auto& [id, count] : state_[it->second].apps) {
    if (id == *a) return count;
  }
  return 0;
}

ScheduleResult Schedule(const std::vector<SchedNode>& nodes,
                        const std::vector<SchedPlacement>& placements, const SchedApp& app,
                        int64_t now_ms, const ScheduleOptions& opts) {
  Fleet fleet(nodes, placements);
  return fleet.Schedule(app, now_ms, opts);
}

std::vector<ScheduleResult> ScheduleAll(const std::vector<SchedNode>& nodes,
                                        const std::vector<SchedPlacement>& placements,
                                        const std::vector<SchedApp>& apps, int64_t now_ms) {
  Fleet fleet(nodes, placements);
  std::vector<ScheduleResult> out;
  out.reserve(apps.size());
  for (const auto& app : apps) out.push_back(fleet.Schedule(app, now_ms));
  return out;
}

}  // namespace verge::cloud
