// SqliteStore's apps: app records, their revisions, placements and the statuses nodes report.
// See store_sqlite.h for the connections and their mutexes; all of this is control plane (mu_).
#include <nlohmann/json.hpp>
#include <set>

#include "cloud/store_sqlite.h"

namespace verge::cloud {
namespace {

using json = nlohmann::json;

constexpr std::string_view kAppColumns =
    "name, labels, revision, stable_revision, rollout_state, rollout_message, "
    "rollout_started_ms, created_ms, updated_ms";

App ReadApp(const sql::Stmt& s) {
  App a;
  a.name = s.Text(0);
  auto labels = json::parse(s.Text(1), nullptr, false);
  if (labels.is_object()) {
    for (const auto& [k, v] : labels.items()) {
      if (v.is_string()) a.labels[k] = v.get<std::string>();
    }
  }
  a.revision = static_cast<uint64_t>(s.Int(2));
  a.stable_revision = static_cast<uint64_t>(s.Int(3));
  a.rollout_state = s.Text(4);
  a.rollout_message = s.Text(5);
  a.rollout_started_ms = s.Int(6);
  a.created_ms = s.Int(7);
  a.updated_ms = s.Int(8);
  return a;
}

// The placements of one app ("" every app). REQUIRES: mu_ held.
Result<std::vector<Placement>> ReadPlacements(sql::Db& db, const std::string& app) {
  VERGE_ASSIGN_OR_RETURN(
      auto st, db.Prepare(app.empty() ? "SELECT app, replica, node, revision FROM placements "
                                        "ORDER BY app, replica"
                                      : "SELECT app, replica, node, revision FROM placements "
                                        "WHERE app=?1 ORDER BY app, replica"));
  if (!app.empty()) st.Bind(1, app);
  std::vector<Placement> out;
  for (;;) {
    VERGE_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.push_back({st.Text(0), static_cast<uint32_t>(st.Int(1)), st.Text(2),
                   static_cast<uint64_t>(st.Int(3))});
  }
  return out;
}

// The nodes whose set of (replica, revision) differs between two placement lists of one app.
std::vector<std::string> ChangedNodes(std::span<const Placement> before,
                                      std::span<const Placement> after) {
  std::map<std::string, std::set<std::pair<uint32_t, uint64_t>>> b, a;
  for (const auto& p : before) b[p.node].insert({p.replica, p.revision});
  for (const auto& p : after) a[p.node].insert({p.replica, p.revision});
  std::set<std::string> changed;
  for (const auto& [node, set] : b) {
    auto it = a.find(node);
    if (it == a.end() || it->second != set) changed.insert(node);
  }
  for (const auto& [node, set] : a) {
    if (!b.contains(node)) changed.insert(node);
  }
  return {changed.begin(), changed.end()};
}

}  // namespace

Result<std::vector<Store::VersionBump>> SqliteStore::PutApp(
    const App& app, const std::optional<AppRevision>& new_revision,
    std::span<const Placement> placements) {
  std::lock_guard lock(mu_);
  VERGE_ASSIGN_OR_RETURN(auto txn, sql::Txn::Begin(db_));
  json labels = json::object();
  for (const auto& [k, v] : app.labels) labels[k] = v;
  VERGE_ASSIGN_OR_RETURN(
      auto st,
      db_.Prepare(fmt::format(
          "INSERT INTO apps ({}) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT (name) DO UPDATE SET "
          "labels=excluded.labels, revision=excluded.revision, "
          "stable_revision=excluded.stable_revision, rollout_state=excluded.rollout_state, "
          "rollout_message=excluded.rollout_message, "
          "rollout_started_ms=excluded.rollout_started_ms, updated_ms=excluded.updated_ms",
          kAppColumns)));
  st.Bind(1, app.name)
      .Bind(2, labels.dump())
      .Bind(3, static_cast<int64_t>(app.revision))
      .Bind(4, static_cast<int64_t>(app.stable_revision))
      .Bind(5, app.rollout_state)
      .Bind(6, app.rollout_message)
      .Bind(7, app.rollout_started_ms)
      .Bind(8, app.created_ms)
      .Bind(9, app.updated_ms);
  VERGE_RETURN_IF_ERROR(st.Run());
  if (new_revision) {
    VERGE_ASSIGN_OR_RETURN(auto rev, db_.Prepare("INSERT INTO app_revisions (app, revision, spec, "
                                                 "created_ms) VALUES (?,?,?,?)"));
    rev.Bind(1, app.name)
        .Bind(2, static_cast<int64_t>(new_revision->revision))
        .Bind(3, new_revision->spec_json)
        .Bind(4, new_revision->created_ms);
    VERGE_RETURN_IF_ERROR(rev.Run());
  }
  VERGE_ASSIGN_OR_RETURN(auto before, ReadPlacements(db_, app.name));
  std::vector<Placement> after(placements.begin(), placements.end());
  for (auto& p : after) p.app = app.name;
  auto changed = ChangedNodes(before, after);
  if (!changed.empty()) {
    VERGE_ASSIGN_OR_RETURN(auto del, db_.Prepare("DELETE FROM placements WHERE app=?"));
    VERGE_RETURN_IF_ERROR(del.Bind(1, app.name).Run());
    VERGE_ASSIGN_OR_RETURN(
        auto ins,
        db_.Prepare("INSERT INTO placements (app, replica, node, revision) VALUES (?,?,?,?)"));
    for (const auto& p : after) {
      ins.Bind(1, p.app)
          .Bind(2, static_cast<int64_t>(p.replica))
          .Bind(3, p.node)
          .Bind(4, static_cast<int64_t>(p.revision));
      VERGE_RETURN_IF_ERROR(ins.Run());
      ins.Reset();
    }
  }
  VERGE_ASSIGN_OR_RETURN(auto bumps, BumpVersions(db_, changed));
  VERGE_RETURN_IF_ERROR(txn.Commit());
  return bumps;
}

Result<std::vector<Store::VersionBump>> SqliteStore::DeleteApp(const std::string& name) {
  std::lock_guard lock(mu_);
  VERGE_ASSIGN_OR_RETURN(auto txn, sql::Txn::Begin(db_));
  VERGE_ASSIGN_OR_RETURN(auto del, db_.Prepare("DELETE FROM apps WHERE name=?"));
  VERGE_RETURN_IF_ERROR(del.Bind(1, name).Run());
  if (db_.Changes() == 0) return Error(Code::kNotFound, "app \"{}\" not found", name);
  VERGE_ASSIGN_OR_RETURN(auto before, ReadPlacements(db_, name));
  auto changed = ChangedNodes(before, {});
  for (const char* sql :
       {"DELETE FROM app_revisions WHERE app=?", "DELETE FROM placements WHERE app=?",
        "DELETE FROM workload_status WHERE app=?"}) {
    VERGE_ASSIGN_OR_RETURN(auto st, db_.Prepare(sql));
    VERGE_RETURN_IF_ERROR(st.Bind(1, name).Run());
  }
  VERGE_ASSIGN_OR_RETURN(auto bumps, BumpVersions(db_, changed));
  VERGE_RETURN_IF_ERROR(txn.Commit());
  return bumps;
}

Result<std::optional<App>> SqliteStore::GetApp(const std::string& name) {
  std::lock_guard lock(mu_);
  VERGE_ASSIGN_OR_RETURN(auto st,
                         db_.Prepare(fmt::format("SELECT {} FROM apps WHERE name=?", kAppColumns)));
  st.Bind(1, name);
  VERGE_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return std::optional<App>();
  return std::optional<App>(ReadApp(st));
}

Result<std::vector<App>> SqliteStore::ListApps() {
  std::lock_guard lock(mu_);
  VERGE_ASSIGN_OR_RETURN(
      auto st, db_.Prepare(fmt::format("SELECT {} FROM apps ORDER BY name", kAppColumns)));
  std::vector<App> out;
  for (;;) {
    VERGE_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.push_back(ReadApp(st));
  }
  return out;
}

Result<std::vector<AppRevision>> SqliteStore::ListAppRevisions(const std::string& app,
                                                               uint64_t revision) {
  std::lock_guard lock(mu_);
  VERGE_ASSIGN_OR_RETURN(
      auto st,
      db_.Prepare("SELECT app, revision, spec, created_ms FROM app_revisions WHERE app=?1 AND "
                  "(?2 = 0 OR revision = ?2) ORDER BY revision DESC"));
  st.Bind(1, app).Bind(2, static_cast<int64_t>(revision));
  std::vector<AppRevision> out;
  for (;;) {
    VERGE_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.push_back({st.Text(0), static_cast<uint64_t>(st.Int(1)), st.Text(2), st.Int(3)});
  }
  return out;
}

Result<std::vector<Placement>> SqliteStore::ListPlacements(const std::string& app) {
  std::lock_guard lock(mu_);
  return ReadPlacements(db_, app);
}

Result<std::vector<WorkloadStatusRecord>> SqliteStore::ListWorkloadStatuses(
    const std::string& app) {
  std::lock_guard lock(mu_);
  VERGE_ASSIGN_OR_RETURN(
      auto st, db_.Prepare("SELECT node, id, app, revision, status, ready, restarts, last_error, "
                           "started_ms, cpu_millicores, memory_bytes, oom_kills, reported_ms FROM "
                           "workload_status WHERE ?1 = '' OR app = ?1 ORDER BY node, id"));
  st.Bind(1, app);
  std::vector<WorkloadStatusRecord> out;
  for (;;) {
    VERGE_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    WorkloadStatusRecord w;
    w.node = st.Text(0);
    w.id = st.Text(1);
    w.app = st.Text(2);
    w.revision = static_cast<uint64_t>(st.Int(3));
    w.status = st.Text(4);
    w.ready = st.Int(5) != 0;
    w.restarts = static_cast<uint32_t>(st.Int(6));
    w.last_error = st.Text(7);
    w.started_ms = st.Int(8);
    w.cpu_millicores = static_cast<uint64_t>(st.Int(9));
    w.memory_bytes = static_cast<uint64_t>(st.Int(10));
    w.oom_kills = static_cast<uint64_t>(st.Int(11));
    w.reported_ms = st.Int(12);
    out.push_back(std::move(w));
  }
  return out;
}

Result<std::vector<DesiredWorkload>> SqliteStore::NodeWorkloadsLocked(const std::string& node) {
  VERGE_ASSIGN_OR_RETURN(
      auto st,
      db_.Prepare(
          "SELECT p.app, p.replica, p.node, p.revision, r.spec, r.created_ms FROM placements p "
          "JOIN app_revisions r ON r.app = p.app AND r.revision = p.revision "
          "WHERE p.node = ? ORDER BY p.app, p.replica"));
  st.Bind(1, node);
  std::vector<DesiredWorkload> out;
  for (;;) {
    VERGE_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    DesiredWorkload w;
    w.placement = {st.Text(0), static_cast<uint32_t>(st.Int(1)), st.Text(2),
                   static_cast<uint64_t>(st.Int(3))};
    w.spec_json = st.Text(4);
    w.revision_created_ms = st.Int(5);
    out.push_back(std::move(w));
  }
  return out;
}

Status SqliteStore::WriteWorkloadStatusesLocked(const StateReport& r) {
  if (!r.has_workloads) return Status::Ok();
  VERGE_ASSIGN_OR_RETURN(auto clear, db_.Prepare("DELETE FROM workload_status WHERE node=?"));
  VERGE_RETURN_IF_ERROR(clear.Bind(1, r.node).Run());
  VERGE_ASSIGN_OR_RETURN(
      auto put,
      db_.Prepare("INSERT OR REPLACE INTO workload_status (node, id, app, revision, status, "
                  "ready, restarts, last_error, started_ms, cpu_millicores, memory_bytes, "
                  "oom_kills, reported_ms) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"));
  for (const auto& w : r.workloads) {
    put.Bind(1, r.node)
        .Bind(2, w.id)
        .Bind(3, w.app)
        .Bind(4, static_cast<int64_t>(w.revision))
        .Bind(5, w.status)
        .Bind(6, static_cast<int64_t>(w.ready ? 1 : 0))
        .Bind(7, static_cast<int64_t>(w.restarts))
        .Bind(8, w.last_error)
        .Bind(9, w.started_ms)
        .Bind(10, static_cast<int64_t>(w.cpu_millicores))
        .Bind(11, static_cast<int64_t>(w.memory_bytes))
        .Bind(12, static_cast<int64_t>(w.oom_kills))
        .Bind(13, r.reported_ms);
    VERGE_RETURN_IF_ERROR(put.Run());
    put.Reset();
  }
  return Status::Ok();
}

}  // namespace verge::cloud
