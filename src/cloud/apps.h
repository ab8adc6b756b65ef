// AppService: declaring apps, placing their replicas on nodes, rolling new revisions out and
// back, and telling where each replica runs (docs/apps.md).
//
// An app's spec is kept per revision (each change of the spec is a new one). Placements say
// which node runs which replica at which revision; they are the only thing that reaches nodes
// (as DesiredState.workloads), so every change of placements is one store transaction that
// bumps the versions of the nodes it changes, after which the DesiredStateSink pushes them.
//
// Reconcile runs on every apply and on a timer (Tick): it re-runs the scheduler over the live
// registry, so that joins, label and resource changes, and nodes offline past the app's
// rescheduleAfter move replicas; then it advances each rollout:
//   - replicas on an older revision are moved to the new one at most maxUnavailable at a time
//     (replicas that are not ready cost nothing and go first);
//   - a replica of the new revision that nodes report as crashloop, failed or unhealthy, or a
//     rollout not done within progressDeadline, rolls the app back to its stable revision;
//   - when every replica runs the new revision and is ready, it becomes the stable one.
//
// Thread-safety: thread-safe. Changes (apply, delete, undo, reconcile) are serialised by one
// mutex; reads are not.
#pragma once

#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "cloud/app_document.h"
#include "cloud/app_spec.h"
#include "cloud/devices.h"
#include "cloud/model.h"
#include "cloud/registry.h"
#include "cloud/store.h"
#include "common/clock.h"
#include "verge/v1/link.pb.h"

namespace verge::cloud {

class AppService {
 public:
  AppService(Store& store, Registry& registry, DesiredStateSink& sink, const Clock& clock)
      : store_(store), registry_(registry), sink_(sink), clock_(clock) {}

  enum class Change { kCreated, kUpdated, kUnchanged };
  struct Applied {
    App app;
    Change change = Change::kUnchanged;
  };
  // PUT /api/v1/apps/NAME: creates the app or gives it a new revision, then places it.
  Result<Applied> Apply(const std::string& name, std::string_view body);
  // kNotFound if absent. Its replicas stop on every node.
  Status Delete(const std::string& name);
  Result<App> Get(const std::string& name);
  Result<std::vector<App>> List() { return store_.ListApps(); }

  // The API's view of an app: document, revision, rollout, and where each replica runs.
  Result<nlohmann::json> Describe(const std::string& name);
  Result<nlohmann::json> DescribeAll();
  // Why each node was filtered out or how it scored, for `vergectl apps explain`.
  Result<nlohmann::json> Explain(const std::string& name);
  Result<nlohmann::json> RolloutStatus(const std::string& name);
  // Rolls the app back to `revision` (0: the revision before the current one).
  Result<App> Undo(const std::string& name, uint64_t revision);

  // Re-places every app and advances every rollout (the server calls it on a timer).
  void Tick();
  // The SHA-256s of every artifact and image any revision of any app names.
  Result<std::set<std::string>> ReferencedArtifacts();

 private:
  // REQUIRES: mu_ held.
  Status Reconcile(App app);
  Result<AppSpec> SpecOf(const std::string& app, uint64_t revision);  // REQUIRES: mu_ held
  void Push(const std::vector<Store::VersionBump>& bumps);

  Store& store_;
  Registry& registry_;
  DesiredStateSink& sink_;
  const Clock& clock_;
  std::mutex mu_;
  // Parsed specs by (app, revision): revisions never change once written.
  std::map<std::pair<std::string, uint64_t>, AppSpec> specs_;  // GUARDED_BY(mu_)
  // Why replicas of an app could not all be placed, at the last reconcile.
  std::map<std::string, std::string> unplaced_;  // GUARDED_BY(mu_)
};

}  // namespace verge::cloud
