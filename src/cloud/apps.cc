#include "cloud/apps.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <set>

#include "cloud/api_json.h"
#include "cloud/scheduler.h"

namespace verge::cloud {
namespace {

using json = nlohmann::json;

bool Failing(const std::string& status) {
  return status == "crashloop" || status == "failed" || status == "unhealthy";
}

SchedPlacement ToSchedPlacement(const Placement& p, const AppSpec& spec) {
  return {p.app, p.node, spec.resources, spec.ports};
}

std::vector<SchedNode> ToSchedNodes(const std::vector<Node>& nodes) {
  std::vector<SchedNode> out;
  out.reserve(nodes.size());
  for (const auto& n : nodes) out.push_back(SchedNodeFromNode(n));
  return out;
}

// The app's placements after scheduling: replicas the scheduler kept keep their number and
// revision; new ones get the lowest free numbers and revision 0 (the caller sets it).
std::vector<Placement> ToPlacements(const std::string& app, const std::vector<Placement>& mine,
                                    const ScheduleResult& r) {
  std::map<std::string, uint32_t> wanted;
  for (const auto& n : r.nodes) ++wanted[n];
  std::vector<Placement> out;
  std::set<uint32_t> used;
  for (const auto& p : mine) {
    auto it = wanted.find(p.node);
    if (it == wanted.end() || it->second == 0) continue;
    --it->second;
    out.push_back(p);
    used.insert(p.replica);
  }
  uint32_t next = 0;
  for (const auto& [node, count] : wanted) {
    for (uint32_t i = 0; i < count; ++i) {
      while (used.contains(next)) ++next;
      out.push_back({app, next, node, 0});
      used.insert(next);
    }
  }
  std::sort(out.begin(), out.end(),
            [](const Placement& a, const Placement& b) { return a.replica < b.replica; });
  return out;
}

json ExplanationJson(const std::string& app, const ScheduleResult& r) {
  json nodes = json::array();
  for (const auto& e : r.explanation) {
    json j = {{"node", e.node}, {"feasible", e.feasible}, {"replicas", e.replicas}};
    if (e.feasible) {
      j["score"] = e.score;
      j["scores"] = {{"balance", e.balance}, {"region", e.region}, {"spread", e.spread}};
    } else {
      j["reason"] = e.reason;
    }
    nodes.push_back(std::move(j));
  }
  json out = {{"app", app}, {"placed", r.nodes}, {"unplaced", r.unplaced}, {"nodes", nodes}};
  if (r.unplaced > 0) out["unplacedReason"] = r.unplaced_reason;
  return out;
}

}  // namespace

Result<AppService::Applied> AppService::Apply(const std::string& name, std::string_view body) {
  VERGE_ASSIGN_OR_RETURN(AppDocument doc, ParseAppDocument(body, name));
  std::lock_guard lock(mu_);
  VERGE_ASSIGN_OR_RETURN(auto existing, store_.GetApp(name));
  int64_t now = clock_.WallMs();
  if (existing) {
    VERGE_ASSIGN_OR_RETURN(AppSpec current, SpecOf(name, existing->revision));
    if (current == doc.spec && existing->labels == doc.labels) {
      return Applied{std::move(*existing), Change::kUnchanged};
    }
  }
  App app = existing.value_or(App{});
  app.name = name;
  app.labels = doc.labels;
  app.updated_ms = now;
  if (!existing) app.created_ms = now;
  std::optional<AppRevision> revision;
  bool spec_changed = true;
  if (existing) {
    VERGE_ASSIGN_OR_RETURN(AppSpec current, SpecOf(name, existing->revision));
    spec_changed = !(current == doc.spec);
  }
  if (spec_changed) {
    VERGE_ASSIGN_OR_RETURN(auto revisions, store_.ListAppRevisions(name, 0));
    uint64_t next = revisions.empty() ? 1 : revisions.front().revision + 1;
    revision = AppRevision{name, next, AppSpecToJson(doc.spec), now};
    app.revision = next;
    app.rollout_state = "progressing";
    app.rollout_message = fmt::format("rolling out revision {}", next);
    app.rollout_started_ms = now;
    specs_[{name, next}] = doc.spec;
  }
  VERGE_ASSIGN_OR_RETURN(auto placements, store_.ListPlacements(name));
  VERGE_ASSIGN_OR_RETURN(auto bumps, store_.PutApp(app, revision, placements));
  Push(bumps);
  if (auto st = Reconcile(app); !st.ok()) {
    spdlog::warn("placing app {}: {}", name, st.message());
  }
  spdlog::info("app {} {} (revision {})", name, existing ? "updated" : "created", app.revision);
  VERGE_ASSIGN_OR_RETURN(auto stored, store_.GetApp(name));
  return Applied{stored.value_or(app), existing ? Change::kUpdated : Change::kCreated};
}

Status AppService::Delete(const std::string& name) {
  std::lock_guard lock(mu_);
  VERGE_ASSIGN_OR_RETURN(auto bumps, store_.DeleteApp(name));
  Push(bumps);
  std::erase_if(specs_, [&](const auto& kv) { return kv.first.first == name; });
  spdlog::info("app {} deleted", name);
  return Status::Ok();
}

Result<App> AppService::Get(const std::string& name) {
  VERGE_ASSIGN_OR_RETURN(auto app, store_.GetApp(name));
  if (!app) return Error(Code::kNotFound, "app \"{}\" not found", name);
  return std::move(*app);
}

Result<AppSpec> AppService::SpecOf(const std::string& app, uint64_t revision) {
  auto it = specs_.find({app, revision});
  if (it != specs_.end()) return it->second;
  VERGE_ASSIGN_OR_RETURN(auto revs, store_.ListAppRevisions(app, revision));
  if (revs.empty()) {
    return Error(Code::kNotFound, "app \"{}\" has no revision {}", app, revision);
  }
  VERGE_ASSIGN_OR_RETURN(AppSpec spec, ParseAppSpec(revs.front().spec_json));
  specs_[{app, revision}] = spec;
  return spec;
}

void AppService::Push(const std::vector<Store::VersionBump>& bumps) {
  for (const auto& b : bumps) {
    registry_.OnDesiredVersion(b.node, b.version);
    sink_.DesiredStateChanged(b.node);
  }
}

void AppService::Tick() {
  std::lock_guard lock(mu_);
  auto apps = store_.ListApps();
  if (!apps.ok()) {
    spdlog::error("listing apps: {}", apps.status().message());
    return;
  }
  for (auto& app : *apps) {
    std::string name = app.name;
    if (auto st = Reconcile(std::move(app)); !st.ok()) {
      spdlog::warn("reconciling app {}: {}", name, st.message());
    }
  }
}

Status AppService::Reconcile(App app) {
  VERGE_ASSIGN_OR_RETURN(AppSpec spec, SpecOf(app.name, app.revision));
  VERGE_ASSIGN_OR_RETURN(auto all, store_.ListPlacements(""));
  std::vector<Placement> mine;
  for (const auto& p : all) {
    if (p.app == app.name) mine.push_back(p);
  }
  // Every replica holds what its own revision requests.
  std::vector<SchedPlacement> fleet;
  fleet.reserve(all.size());
  for (const auto& p : all) {
    auto its = SpecOf(p.app, p.revision);
    if (!its.ok()) continue;
    fleet.push_back(ToSchedPlacement(p, *its));
  }
  ScheduleResult result =
      Schedule(ToSchedNodes(registry_.List()), fleet, {app.name, spec}, clock_.WallMs());
  if (result.unplaced > 0) {
    unplaced_[app.name] = result.unplaced_reason;
  } else {
    unplaced_.erase(app.name);
  }
  std::vector<Placement> placements = ToPlacements(app.name, mine, result);
  for (auto& p : placements) {
    if (p.revision == 0) p.revision = app.revision;
  }

  // The rollout: what nodes report about each replica.
  VERGE_ASSIGN_OR_RETURN(auto statuses, store_.ListWorkloadStatuses(app.name));
  std::map<std::pair<std::string, std::string>, const WorkloadStatusRecord*> by_node_id;
  for (const auto& s : statuses) by_node_id[{s.node, s.id}] = &s;
  auto status_of = [&](const Placement& p) -> const WorkloadStatusRecord* {
    auto it = by_node_id.find({p.node, WorkloadId(p.app, p.replica)});
    return it == by_node_id.end() ? nullptr : it->second;
  };
  auto ready_at = [&](const Placement& p) {
    const auto* s = status_of(p);
    return s && s->ready && s->revision == p.revision;
  };
  int64_t now = clock_.WallMs();
  App before = app;
  if (app.rollout_state == "progressing") {
    std::string failure;
    for (const auto& p : placements) {
      const auto* s = status_of(p);
      if (p.revision == app.revision && s && s->revision == app.revision && Failing(s->status)) {
        failure = fmt::format("replica {} on {} is {}{}{}", WorkloadId(p.app, p.replica), p.node,
                              s->status, s->last_error.empty() ? "" : ": ", s->last_error);
        break;
      }
    }
    if (failure.empty() && now - app.rollout_started_ms > spec.progress_deadline_ms) {
      failure = fmt::format("not every replica ready within the progress deadline ({} s)",
                            spec.progress_deadline_ms / 1000);
    }
    if (!failure.empty() && app.stable_revision != 0 && app.stable_revision != app.revision) {
      spdlog::warn("app {}: rolling back from revision {} to {}: {}", app.name, app.revision,
                   app.stable_revision, failure);
      app.rollout_message = fmt::format("rolled back from revision {} to {}: {}", app.revision,
                                        app.stable_revision, failure);
      app.rollout_state = "rolled_back";
      app.revision = app.stable_revision;
      app.rollout_started_ms = now;
      for (auto& p : placements) p.revision = app.revision;
    } else if (!failure.empty()) {
      app.rollout_message = failure;
    } else {
      // Move replicas to the new revision, at most maxUnavailable unready at any time.
      for (auto& p : placements) {
        if (p.revision != app.revision && !ready_at(p)) p.revision = app.revision;
      }
      int64_t unavailable = std::count_if(placements.begin(), placements.end(),
                                          [&](const Placement& p) { return !ready_at(p); });
      int64_t budget = static_cast<int64_t>(spec.max_unavailable) - unavailable;
      for (auto& p : placements) {
        if (budget <= 0) break;
        if (p.revision != app.revision) {
          p.revision = app.revision;
          --budget;
        }
      }
      bool done = placements.size() == spec.replicas &&
                  std::all_of(placements.begin(), placements.end(), [&](const Placement& p) {
                    return p.revision == app.revision && ready_at(p);
                  });
      if (done) {
        app.rollout_state = "complete";
        app.stable_revision = app.revision;
        app.rollout_message = fmt::format("revision {} runs on every replica", app.revision);
      }
    }
  } else {
    // Not rolling out: every replica runs the app's revision (new ones included).
    for (auto& p : placements) p.revision = app.revision;
  }
  if (app.rollout_state != before.rollout_state || app.revision != before.revision) {
    app.updated_ms = now;
  }
  if (app == before && placements == mine) return Status::Ok();
  VERGE_ASSIGN_OR_RETURN(auto bumps, store_.PutApp(app, std::nullopt, placements));
  Push(bumps);
  return Status::Ok();
}

Result<App> AppService::Undo(const std::string& name, uint64_t revision) {
  std::lock_guard lock(mu_);
  VERGE_ASSIGN_OR_RETURN(auto existing, store_.GetApp(name));
  if (!existing) return Error(Code::kNotFound, "app \"{}\" not found", name);
  App app = *existing;
  if (revision == 0) {
    VERGE_ASSIGN_OR_RETURN(auto revs, store_.ListAppRevisions(name, 0));
    for (const auto& r : revs) {
      if (r.revision < app.revision) {
        revision = r.revision;
        break;
      }
    }
    if (revision == 0) {
      return Error(Code::kFailedPrecondition, "app \"{}\" has no revision before {}", name,
                   app.revision);
    }
  }
  VERGE_RETURN_IF_ERROR(SpecOf(name, revision).status());
  if (revision == app.revision) return app;
  int64_t now = clock_.WallMs();
  app.rollout_message =
      fmt::format("undo: rolling back from revision {} to {}", app.revision, revision);
  app.revision = revision;
  app.rollout_state = "progressing";
  app.rollout_started_ms = now;
  app.updated_ms = now;
  VERGE_ASSIGN_OR_RETURN(auto placements, store_.ListPlacements(name));
  VERGE_ASSIGN_OR_RETURN(auto bumps, store_.PutApp(app, std::nullopt, placements));
  Push(bumps);
  VERGE_RETURN_IF_ERROR(Reconcile(app));
  VERGE_ASSIGN_OR_RETURN(auto stored, store_.GetApp(name));
  return stored.value_or(app);
}

Result<json> AppService::Describe(const std::string& name) {
  VERGE_ASSIGN_OR_RETURN(App app, Get(name));
  VERGE_ASSIGN_OR_RETURN(auto revs, store_.ListAppRevisions(name, app.revision));
  VERGE_ASSIGN_OR_RETURN(auto placements, store_.ListPlacements(name));
  VERGE_ASSIGN_OR_RETURN(auto statuses, store_.ListWorkloadStatuses(name));
  std::map<std::pair<std::string, std::string>, const WorkloadStatusRecord*> by_node_id;
  for (const auto& s : statuses) by_node_id[{s.node, s.id}] = &s;
  json spec = revs.empty() ? json::object() : json::parse(revs.front().spec_json, nullptr, false);
  uint32_t replicas = spec.is_object() ? spec.value("replicas", 1u) : 0u;
  std::string unplaced;
  {
    std::lock_guard lock(mu_);
    if (auto it = unplaced_.find(name); it != unplaced_.end()) unplaced = it->second;
  }
  json places = json::array();
  int ready = 0, running = 0;
  for (const auto& p : placements) {
    std::string id = WorkloadId(p.app, p.replica);
    auto it = by_node_id.find({p.node, id});
    const WorkloadStatusRecord* s = it == by_node_id.end() ? nullptr : it->second;
    json j = {{"node", p.node},
              {"replica", p.replica},
              {"id", id},
              {"revision", p.revision},
              {"status", s ? s->status : "pending"},
              {"ready", s && s->ready},
              {"restarts", s ? s->restarts : 0},
              {"lastError", s ? s->last_error : ""}};
    if (s) {
      j["runningRevision"] = s->revision;
      j["memoryBytes"] = s->memory_bytes;
      j["cpuMillicores"] = s->cpu_millicores;
      j["oomKills"] = s->oom_kills;
      j["reportedAt"] = FormatTimeMs(s->reported_ms);
      j["reportedMs"] = s->reported_ms;
      if (s->started_ms) j["startedAt"] = FormatTimeMs(s->started_ms);
      if (s->ready) ++ready;
      if (s->status == "running" || s->status == "ready" || s->status == "unhealthy") ++running;
    }
    places.push_back(std::move(j));
  }
  return json{{"apiVersion", kAppApiVersion},
              {"kind", "App"},
              {"name", app.name},
              {"metadata",
               {{"name", app.name},
                {"labels", app.labels},
                {"createdAt", FormatTimeMs(app.created_ms)},
                {"updatedAt", FormatTimeMs(app.updated_ms)}}},
              {"spec", spec},
              {"replicas", replicas},
              {"scheduledReplicas", placements.size()},
              {"runningReplicas", running},
              {"readyReplicas", ready},
              {"revision", app.revision},
              {"stableRevision", app.stable_revision},
              {"rollout",
               {{"state", app.rollout_state},
                {"message", app.rollout_message},
                {"startedAt", FormatTimeMs(app.rollout_started_ms)}}},
              {"unschedulable", unplaced},
              {"placements", std::move(places)}};
}

Result<json> AppService::DescribeAll() {
  VERGE_ASSIGN_OR_RETURN(auto apps, store_.ListApps());
  json out = json::array();
  for (const auto& a : apps) {
    auto d = Describe(a.name);
    if (d.ok()) out.push_back(std::move(*d));
  }
  return out;
}

Result<json> AppService::RolloutStatus(const std::string& name) {
  VERGE_ASSIGN_OR_RETURN(json d, Describe(name));
  VERGE_ASSIGN_OR_RETURN(auto revs, store_.ListAppRevisions(name, 0));
  json history = json::array();
  for (const auto& r : revs) {
    history.push_back({{"revision", r.revision}, {"createdAt", FormatTimeMs(r.created_ms)}});
  }
  json updated = 0;
  int n = 0;
  for (const auto& p : d["placements"]) {
    if (p["revision"] == d["revision"] &&
        p.value("runningRevision", uint64_t{0}) == d["revision"].get<uint64_t>() &&
        p["ready"].get<bool>()) {
      ++n;
    }
  }
  updated = n;
  return json{{"name", name},
              {"revision", d["revision"]},
              {"stableRevision", d["stableRevision"]},
              {"state", d["rollout"]["state"]},
              {"message", d["rollout"]["message"]},
              {"replicas", d["replicas"]},
              {"updatedReplicas", updated},
              {"readyReplicas", d["readyReplicas"]},
              {"history", std::move(history)}};
}

Result<std::set<std::string>> AppService::ReferencedArtifacts() {
  std::lock_guard lock(mu_);
  VERGE_ASSIGN_OR_RETURN(auto apps, store_.ListApps());
  std::set<std::string> out;
  for (const auto& a : apps) {
    VERGE_ASSIGN_OR_RETURN(auto revs, store_.ListAppRevisions(a.name, 0));
    for (const auto& r : revs) {
      VERGE_ASSIGN_OR_RETURN(AppSpec spec, SpecOf(a.name, r.revision));
      for (const auto* ref : {&spec.artifact, &spec.image}) {
        if (auto hex = ParseArtifactRef(*ref)) out.insert(*hex);
      }
    }
  }
  return out;
}

Result<json> AppService::Explain(const std::string& name) {
  std::lock_guard lock(mu_);
  VERGE_ASSIGN_OR_RETURN(App app, Get(name));
  VERGE_ASSIGN_OR_RETURN(AppSpec spec, SpecOf(app.name, app.revision));
  VERGE_ASSIGN_OR_RETURN(auto all, store_.ListPlacements(""));
  std::vector<SchedPlacement> fleet;
  for (const auto& p : all) {
    auto its = SpecOf(p.app, p.revision);
    if (its.ok()) fleet.push_back(ToSchedPlacement(p, *its));
  }
  ScheduleResult result = Schedule(ToSchedNodes(registry_.List()), fleet, {app.name, spec},
                                   clock_.WallMs(), ScheduleOptions{.explain = true});
  return ExplanationJson(app.name, result);
}

}  // namespace verge::cloud
