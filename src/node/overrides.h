// Local overrides: changes an operator on site makes through the node's local API to what the
// cloud declared (a rule's SQL or threshold, a device's metric limits, stopping an app),
// typically while the cloud is unreachable. Each override is kept on the node's disk with its
// version (increasing per node), origin and time, and laid over the cloud's desired state:
// the node runs the cloud's state with its overrides in place.
//
// When the node reconnects (and whenever the cloud sends a new desired state), every override
// is resolved against the cloud's current item by its kind's policy:
//   cloud-wins        the override is dropped; the cloud's item runs.
//   edge-wins         the override stays until removed on the node.
//   last-writer-wins  the later change wins: the override's time (corrected by the measured
//                     clock skew) against the cloud item's updated_ms.
//   merge             three-way merge of base (the cloud's item when the override was made),
//                     ours (the override) and theirs (the cloud's item now): a field only one
//                     side changed takes that side's value; a field both changed differently is
//                     a conflict the cloud wins, named in the resolution. Objects merge field by
//                     field (a device's metrics by metric name); arrays and scalars are whole.
// A cloud that no longer has the item drops the override. Every resolution becomes a node
// event (override.kept, override.dropped, override.merged), none silently.
//
// Thread-safety: OverrideStore is thread-safe. The free functions are pure.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "verge/v1/link.pb.h"

namespace verge::node {

enum class OverrideKind { kRule, kDevice, kApp };
enum class OverridePolicy { kCloudWins, kEdgeWins, kLastWriterWins, kMerge };

std::string_view OverrideKindName(OverrideKind k);  // rule | device | app
Result<OverrideKind> ParseOverrideKind(std::string_view s);
std::string_view OverridePolicyName(OverridePolicy p);  // cloud-wins | edge-wins | ...
Result<OverridePolicy> ParseOverridePolicy(std::string_view s);

struct OverridePolicies {
  OverridePolicy rule = OverridePolicy::kLastWriterWins;
  OverridePolicy device = OverridePolicy::kMerge;
  OverridePolicy app = OverridePolicy::kLastWriterWins;
  OverridePolicy For(OverrideKind k) const;
};
// {"rule": "edge-wins", ...}: every problem at once.
Result<OverridePolicies> ParseOverridePolicies(const std::map<std::string, std::string>& m);

struct Override {
  OverrideKind kind = OverrideKind::kRule;
  std::string name;
  uint64_t version = 0;  // assigned by the store
  std::string origin;    // who made it: "local-api" and the operator it names, if any
  int64_t at_ms = 0;     // node clock
  nlohmann::json base;   // the cloud's item when the override was made
  nlohmann::json spec;   // the item as the override has it
};

// The item of the desired state as JSON (what overrides hold and the local API shows), or
// nullopt if the desired state has no such item. rule: {sql, streams, actions, options,
// stopped}; device: {labels, metrics: {NAME: {...}}, allowUndeclared, modbus}; app:
// {stopped}. `updated_ms` gets the cloud's change time of the item.
std::optional<nlohmann::json> ItemJson(const v1::DesiredState& d, OverrideKind kind,
                                       const std::string& name, int64_t* updated_ms = nullptr);
// Checks that `spec` can stand for an item of this kind (the shape ItemJson gives).
Status ValidateItemJson(OverrideKind kind, const nlohmann::json& spec);

struct Resolution {
  enum Outcome { kKept, kDropped, kMerged } outcome = kKept;
  nlohmann::json spec;  // kept or merged: what runs from now on
  std::string why;
  std::vector<std::string> conflicts;  // merge: fields both sides changed (the cloud's won)
};

// `theirs` is the cloud's item now (nullopt: the cloud no longer has it); `skew_ms` is cloud
// time minus node time.
Resolution Resolve(const Override& o, OverridePolicy policy,
                   const std::optional<nlohmann::json>& theirs, int64_t theirs_updated_ms,
                   int64_t skew_ms);

// Three-way merge (see above); `path` prefixes conflict names.
nlohmann::json Merge3(const nlohmann::json& base, const nlohmann::json& ours,
                      const nlohmann::json& theirs, std::vector<std::string>& conflicts,
                      const std::string& path = "");

class OverrideStore {
 public:
  // Loads DIR/overrides.json if there is one.
  static Result<std::unique_ptr<OverrideStore>> Open(std::string path);

  std::vector<Override> List() const;
  std::optional<Override> Get(OverrideKind kind, const std::string& name) const;
  // Records (or replaces) an override, persisted before it returns; sets its version.
  Result<Override> Put(Override o);
  // Removes it; false if there was none.
  Result<bool> Remove(OverrideKind kind, const std::string& name);

  // The desired state the node runs: `cloud` with every override laid over its item.
  v1::DesiredState Overlay(const v1::DesiredState& cloud) const;
  // Resolves every override against `cloud` (see above), persists the outcome, and returns
  // one event per override. With `before`, only overrides whose cloud item differs between
  // `before` and `cloud` (a change the cloud sent while connected).
  Result<std::vector<v1::NodeEvent>> ResolveAll(const v1::DesiredState& cloud,
                                                const OverridePolicies& policies, int64_t skew_ms,
                                                int64_t now_ms,
                                                const v1::DesiredState* before = nullptr);

 private:
  explicit OverrideStore(std::string path) : path_(std::move(path)) {}
  Status Save() const;  // REQUIRES: mu_ held

  const std::string path_;
  mutable std::mutex mu_;
  std::map<std::pair<OverrideKind, std::string>, Override> items_;  // GUARDED_BY(mu_)
  uint64_t next_version_ = 1;                                       // GUARDED_BY(mu_)
};

}  // namespace verge::node
