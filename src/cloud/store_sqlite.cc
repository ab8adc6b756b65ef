#include "cloud/store_sqlite.h"

#include <nlohmann/json.hpp>

#include "cloud/device_spec.h"

namespace verge::cloud {
namespace {

using json = nlohmann::json;

constexpr sql::Migration kMigrations[] = {
    {1, R"sql(
CREATE TABLE nodes (
  name TEXT PRIMARY KEY,
  type TEXT NOT NULL,
  region TEXT NOT NULL,
  labels TEXT NOT NULL,          -- JSON object
  capabilities TEXT NOT NULL,    -- JSON array
  capacity TEXT NOT NULL,        -- JSON object of resources
  used TEXT NOT NULL,            -- JSON object of resources
  ip TEXT NOT NULL,
  addresses TEXT NOT NULL,       -- JSON array
  agent_version TEXT NOT NULL,
  hostname TEXT NOT NULL,
  os TEXT NOT NULL,
  arch TEXT NOT NULL,
  cert_serial TEXT NOT NULL,
  cert_not_after_ms INTEGER NOT NULL,
  created_ms INTEGER NOT NULL,
  last_heartbeat_ms INTEGER NOT NULL,
  status TEXT NOT NULL,
  status_since_ms INTEGER NOT NULL
);
CREATE TABLE node_events (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  node TEXT NOT NULL,
  ts_ms INTEGER NOT NULL,
  type TEXT NOT NULL,
  message TEXT NOT NULL
);
CREATE INDEX node_events_by_node ON node_events(node, id);
CREATE INDEX node_events_by_ts ON node_events(ts_ms);
CREATE TABLE bootstrap_tokens (
  id TEXT PRIMARY KEY,
  secret_hash TEXT NOT NULL,
  description TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  expires_ms INTEGER NOT NULL,
  revoked INTEGER NOT NULL DEFAULT 0,
  uses INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE revoked_certs (
  serial TEXT PRIMARY KEY,
  node TEXT NOT NULL,
  revoked_ms INTEGER NOT NULL,
  reason TEXT NOT NULL
);
CREATE TABLE meta (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
)sql"},
    {2, R"sql(
CREATE TABLE devices (
  name TEXT PRIMARY KEY,
  node TEXT NOT NULL,
  labels TEXT NOT NULL,              -- JSON object
  token_sha256 TEXT NOT NULL,
  mqtt_password_hash TEXT NOT NULL,
  spec TEXT NOT NULL,                -- JSON: metrics, allowUndeclared, modbus (the API's shape)
  created_ms INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL
);
CREATE INDEX devices_by_node ON devices(node, name);
-- Not tied to nodes: devices and versions outlive a decommissioned node, so that a node that
-- joins again under the same name gets a version newer than anything it could have cached.
CREATE TABLE node_state (
  node TEXT PRIMARY KEY,
  desired_version INTEGER NOT NULL DEFAULT 0,
  applied_version INTEGER NOT NULL DEFAULT 0,
  error TEXT NOT NULL DEFAULT '',
  reported_ms INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE telemetry_series (
  id INTEGER PRIMARY KEY,
  node TEXT NOT NULL,                -- the node that first sent it
  device TEXT NOT NULL,
  metric TEXT NOT NULL,
  UNIQUE (device, metric)
);
CREATE TABLE telemetry_chunks (
  series_id INTEGER NOT NULL,
  node TEXT NOT NULL,
  start_ts INTEGER NOT NULL,         -- ns; a chunk never crosses an hour of the epoch grid
  end_ts INTEGER NOT NULL,
  count INTEGER NOT NULL,
  data BLOB NOT NULL                 -- telemetry_codec.h
);
CREATE INDEX telemetry_chunks_by_series ON telemetry_chunks(series_id, start_ts);
-- Uplink batches as received, until compaction turns them into chunks (telemetry.h).
CREATE TABLE telemetry_staged (
  id INTEGER PRIMARY KEY,
  node TEXT NOT NULL,
  seq INTEGER NOT NULL,
  count INTEGER NOT NULL,
  min_ts INTEGER NOT NULL,
  max_ts INTEGER NOT NULL,
  codec INTEGER NOT NULL,            -- verge.v1.Codec
  data BLOB NOT NULL                 -- a verge.v1.ReadingBatch, compressed with codec
);
-- Exactly-once storage: which uplink batches of each node are stored.
CREATE TABLE uplink_received (
  node TEXT NOT NULL,
  seq INTEGER NOT NULL,
  PRIMARY KEY (node, seq)
) WITHOUT ROWID;
CREATE TABLE uplink_progress (
  node TEXT PRIMARY KEY,
  max_seq INTEGER NOT NULL,          -- highest seq stored
  low_seq INTEGER NOT NULL           -- every seq below is acknowledged or dropped by the node
);
)sql"},
    {3, R"sql(
CREATE TABLE rules (
  name TEXT PRIMARY KEY,
  node_selector TEXT NOT NULL,       -- JSON object of labels
  sql TEXT NOT NULL,
  streams TEXT NOT NULL,             -- JSON array of CREATE STREAM statements
  actions TEXT NOT NULL,             -- spec.actions, compact JSON
  options TEXT NOT NULL,             -- spec.options, compact JSON; '' for none
  stopped INTEGER NOT NULL,
  restart_generation INTEGER NOT NULL,
  created_ms INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL
);
-- The latest status each node reported for each rule it has (its own local rules too).
CREATE TABLE rule_status (
  rule TEXT NOT NULL,
  node TEXT NOT NULL,
  status TEXT NOT NULL,
  records_in INTEGER NOT NULL,
  records_out INTEGER NOT NULL,
  exceptions INTEGER NOT NULL,
  last_error TEXT NOT NULL,
  latency_p50_us INTEGER NOT NULL,
  latency_p99_us INTEGER NOT NULL,
  dropped INTEGER NOT NULL,
  origin TEXT NOT NULL,
  reported_ms INTEGER NOT NULL,
  PRIMARY KEY (rule, node)
) WITHOUT ROWID;
CREATE INDEX rule_status_by_node ON rule_status(node);
-- Alerts from nodes' uplink batches. Stored exactly once through uplink_received, in the same
-- transaction, like readings: alert and reading batches share each node's sequence. (A UNIQUE
-- (node, batch_seq, idx) would wrongly drop the alerts of a node that numbers its batches
-- afresh after losing its buffer; uplink_received is reset for it then.)
CREATE TABLE alerts (
  id INTEGER PRIMARY KEY,
  node TEXT NOT NULL,
  batch_seq INTEGER NOT NULL,
  idx INTEGER NOT NULL,              -- place in the batch
  rule TEXT NOT NULL,
  ts_ms INTEGER NOT NULL,            -- node clock
  severity TEXT NOT NULL,
  message TEXT NOT NULL,
  data TEXT NOT NULL,                -- the output row, a JSON object
  received_ms INTEGER NOT NULL       -- cloud clock
);
CREATE INDEX alerts_by_ts ON alerts(ts_ms);
CREATE INDEX alerts_by_rule ON alerts(rule, ts_ms);
CREATE INDEX alerts_by_node ON alerts(node, ts_ms);
)sql"},
    {4, R"sql(
CREATE TABLE apps (
  name TEXT PRIMARY KEY,
  labels TEXT NOT NULL,              -- JSON object
  revision INTEGER NOT NULL,         -- being rolled out
  stable_revision INTEGER NOT NULL,  -- last one rolled out with every replica ready; 0: none
  rollout_state TEXT NOT NULL,       -- progressing | complete | rolled_back
  rollout_message TEXT NOT NULL,
  rollout_started_ms INTEGER NOT NULL,
  created_ms INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL
);
CREATE TABLE app_revisions (
  app TEXT NOT NULL,
  revision INTEGER NOT NULL,
  spec TEXT NOT NULL,                -- the spec as compact JSON (cloud/app_spec.h)
  created_ms INTEGER NOT NULL,
  PRIMARY KEY (app, revision)
) WITHOUT ROWID;
CREATE TABLE placements (
  app TEXT NOT NULL,
  replica INTEGER NOT NULL,
  node TEXT NOT NULL,
  revision INTEGER NOT NULL,
  PRIMARY KEY (app, replica)
) WITHOUT ROWID;
CREATE INDEX placements_by_node ON placements(node);
-- The latest status each node reported for each replica it runs.
CREATE TABLE workload_status (
  node TEXT NOT NULL,
  id TEXT NOT NULL,
  app TEXT NOT NULL,
  revision INTEGER NOT NULL,
  status TEXT NOT NULL,
  ready INTEGER NOT NULL,
  restarts INTEGER NOT NULL,
  last_error TEXT NOT NULL,
  started_ms INTEGER NOT NULL,
  cpu_millicores INTEGER NOT NULL,
  memory_bytes INTEGER NOT NULL,
  oom_kills INTEGER NOT NULL,
  reported_ms INTEGER NOT NULL,
  PRIMARY KEY (node, id)
) WITHOUT ROWID;
CREATE INDEX workload_status_by_app ON workload_status(app);
)sql"},
};

json ResourcesJson(const Resources& r) {
  return {{"cpu_millicores", r.cpu_millicores},
          {"memory_mb", r.memory_mb},
          {"storage_gb", r.storage_gb},
          {"gpu", r.gpu},
          {"npu", r.npu}};
}

Resources ResourcesFrom(const std::string& text) {
  Resources r;
  auto j = json::parse(text, nullptr, false);
  if (!j.is_object()) return r;
  r.cpu_millicores = j.value("cpu_millicores", uint64_t{0});
  r.memory_mb = j.value("memory_mb", uint64_t{0});
  r.storage_gb = j.value("storage_gb", uint64_t{0});
  r.gpu = j.value("gpu", uint32_t{0});
  r.npu = j.value("npu", uint32_t{0});
  return r;
}

template <typename T>
T JsonOr(const std::string& text, T fallback) {
  auto j = json::parse(text, nullptr, false);
  if (j.is_discarded()) return fallback;
  try {
    return j.get<T>();
  } catch (const json::exception&) {
    return fallback;
  }
}

constexpr const char* kNodeColumns =
    "name, type, region, labels, capabilities, capacity, used, ip, addresses, agent_version, "
    "hostname, os, arch, cert_serial, cert_not_after_ms, created_ms, last_heartbeat_ms, status, "
    "status_since_ms";
// What ReadNode reads: the node's record and its desired-state row, if it has one.
constexpr const char* kNodeSelect =
    "SELECT name, type, region, labels, capabilities, capacity, used, ip, addresses, "
    "agent_version, hostname, os, arch, cert_serial, cert_not_after_ms, created_ms, "
    "last_heartbeat_ms, status, status_since_ms, COALESCE(s.desired_version, 0), "
    "COALESCE(s.applied_version, 0), COALESCE(s.error, ''), COALESCE(s.reported_ms, 0) "
    "FROM nodes LEFT JOIN node_state s ON s.node = nodes.name";

Node ReadNode(const sql::Stmt& s) {
  Node n;
  n.name = s.Text(0);
  n.type = s.Text(1);
  n.region = s.Text(2);
  n.labels = JsonOr<std::map<std::string, std::string>>(s.Text(3), {});
  n.capabilities = JsonOr<std::vector<std::string>>(s.Text(4), {});
  n.capacity = ResourcesFrom(s.Text(5));
  n.used = ResourcesFrom(s.Text(6));
  n.ip = s.Text(7);
  n.addresses = JsonOr<std::vector<std::string>>(s.Text(8), {});
  n.agent_version = s.Text(9);
  n.hostname = s.Text(10);
  n.os = s.Text(11);
  n.arch = s.Text(12);
  n.cert_serial = s.Text(13);
  n.cert_not_after_ms = s.Int(14);
  n.created_ms = s.Int(15);
  n.last_heartbeat_ms = s.Int(16);
  n.status = NodeStatusFromName(s.Text(17));
  n.status_since_ms = s.Int(18);
  n.desired_version = static_cast<uint64_t>(s.Int(19));
  n.applied_version = static_cast<uint64_t>(s.Int(20));
  n.state_error = s.Text(21);
  n.state_reported_ms = s.Int(22);
  return n;
}

constexpr const char* kDeviceColumns =
    "name, node, labels, token_sha256, mqtt_password_hash, spec, created_ms, updated_ms";

Result<Device> ReadDevice(const sql::Stmt& s) {
  Device d;
  d.name = s.Text(0);
  d.node = s.Text(1);
  json spec = json::parse(s.Text(5), nullptr, false);
  auto parsed = DeviceSpecFromJson(spec);
  if (!parsed.ok()) return parsed.status().Wrap("device \"" + d.name + "\"");
  d.spec = std::move(*parsed);
  d.spec.labels = JsonOr<std::map<std::string, std::string>>(s.Text(2), {});
  d.token_sha256 = s.Text(3);
  d.mqtt_password_hash = s.Text(4);
  d.created_ms = s.Int(6);
  d.updated_ms = s.Int(7);
  return d;
}

// Bumps the node's desired-state version. REQUIRES: inside a transaction on db.
Result<uint64_t> BumpVersion(sql::Db& db, const std::string& node) {
  VERGE_ASSIGN_OR_RETURN(
      auto st, db.Prepare("INSERT INTO node_state (node, desired_version) VALUES (?, 1) "
                          "ON CONFLICT (node) DO UPDATE SET desired_version = desired_version + 1 "
                          "RETURNING desired_version"));
  st.Bind(1, node);
  VERGE_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row)
    return Error(Code::kInternal, "bumping the version of node \"{}\" returned nothing", node);
  auto v = static_cast<uint64_t>(st.Int(0));
  VERGE_RETURN_IF_ERROR(st.Run());
  return v;
}

// The node of an existing device, or nullopt. REQUIRES: mu_ held.
Result<std::optional<std::string>> DeviceNode(sql::Db& db, const std::string& name) {
  VERGE_ASSIGN_OR_RETURN(auto st, db.Prepare("SELECT node FROM devices WHERE name=?"));
  st.Bind(1, name);
  VERGE_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return std::optional<std::string>();
  return std::optional<std::string>(st.Text(0));
}

constexpr const char* kRuleColumns =
    "name, node_selector, sql, streams, actions, options, stopped, restart_generation, "
    "created_ms, updated_ms";

Rule ReadRule(const sql::Stmt& s) {
  Rule r;
  r.name = s.Text(0);
  r.node_selector = JsonOr<Labels>(s.Text(1), {});
  r.sql = s.Text(2);
  r.streams = JsonOr<std::vector<std::string>>(s.Text(3), {});
  r.actions_json = s.Text(4);
  r.options_json = s.Text(5);
  r.stopped = s.Int(6) != 0;
  r.restart_generation = static_cast<uint64_t>(s.Int(7));
  r.created_ms = s.Int(8);
  r.updated_ms = s.Int(9);
  return r;
}

// Every rule, by name. REQUIRES: mu_ held.
Result<std::vector<Rule>> ReadRules(sql::Db& db) {
  VERGE_ASSIGN_OR_RETURN(
      auto st, db.Prepare(fmt::format("SELECT {} FROM rules ORDER BY name", kRuleColumns)));
  std::vector<Rule> out;
  for (;;) {
    VERGE_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.push_back(ReadRule(st));
  }
  return out;
}

BootstrapToken ReadToken(const sql::Stmt& s) {
  BootstrapToken t;
  t.id = s.Text(0);
  t.secret_hash = s.Text(1);
  t.description = s.Text(2);
  t.created_ms = s.Int(3);
  t.expires_ms = s.Int(4);
  t.revoked = s.Int(5) != 0;
  t.uses = s.Int(6);
  return t;
}

}  // namespace

Result<std::vector<Store::VersionBump>> BumpVersions(sql::Db& db,
                                                     std::span<const std::string> nodes) {
  std::vector<Store::VersionBump> bumps;
  for (const auto& n : nodes) {
    VERGE_ASSIGN_OR_RETURN(uint64_t v, BumpVersion(db, n));
    bumps.push_back({n, v});
  }
  return bumps;
}

std::span<const sql::Migration> SqliteStore::Migrations() { return kMigrations; }

Result<std::unique_ptr<SqliteStore>> SqliteStore::Open(const std::string& path) {
  VERGE_ASSIGN_OR_RETURN(auto db, sql::Db::Open(path));
  VERGE_RETURN_IF_ERROR(db.Migrate(kMigrations).Wrap("migrating " + path));
  auto store = std::unique_ptr<SqliteStore>(new SqliteStore(std::move(db)));
  if (path != ":memory:" && !path.empty()) {
    VERGE_ASSIGN_OR_RETURN(auto writer, sql::Db::Open(path));
    VERGE_ASSIGN_OR_RETURN(auto reader, sql::Db::Open(path));
    store->writer_db_.emplace(std::move(writer));
    store->reader_db_.emplace(std::move(reader));
  }
  return store;
}

Status SqliteStore::WriteNode(const Node& n, bool insert) {
  std::string sql =
      insert ? fmt::format("INSERT INTO nodes ({}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                           kNodeColumns)
             : "UPDATE nodes SET type=?2, region=?3, labels=?4, capabilities=?5, capacity=?6, "
               "used=?7, ip=?8, addresses=?9, agent_version=?10, hostname=?11, os=?12, arch=?13, "
               "cert_serial=?14, cert_not_after_ms=?15, created_ms=?16, last_heartbeat_ms=?17, "
               "status=?18, status_since_ms=?19 WHERE name=?1";
  VERGE_ASSIGN_OR_RETURN(auto st, db_.Prepare(sql));
  st.Bind(1, n.name)
      .Bind(2, n.type)
      .Bind(3, n.region)
      .Bind(4, json(n.labels).dump())
      .Bind(5, json(n.capabilities).dump())
      .Bind(6, ResourcesJson(n.capacity).dump())
      .Bind(7, ResourcesJson(n.used).dump())
      .Bind(8, n.ip)
      .Bind(9, json(n.addresses).dump())
      .Bind(10, n.agent_version)
      .Bind(11, n.hostname)
      .Bind(12, n.os)
      .Bind(13, n.arch)
      .Bind(14, n.cert_serial)
      .Bind(15, n.cert_not_after_ms)
      .Bind(16, n.created_ms)
      .Bind(17, n.last_heartbeat_ms)
      .Bind(18, NodeStatusName(n.status))
      .Bind(19, n.status_since_ms);
  auto rs = st.Run();
  if (!rs.ok()) {
    if (rs.code() == Code::kAlreadyExists) {
      return Error(Code::kAlreadyExists, "node \"{}\" already exists", n.name);
    }
    return rs;
  }
  if (!insert && db_.Changes() == 0) return Error(Code::kNotFound, "node \"{}\" not found", n.name);
  return Status::Ok();
}

Status SqliteStore::InsertNode(const Node& node) {
  std::lock_guard lock(mu_);
  return WriteNode(node, true);
}

Status SqliteStore::UpdateNodes(std::span<const Node> nodes) {
  if (nodes.empty()) return Status::Ok();
  std::lock_guard lock(mu_);
  VERGE_ASSIGN_OR_RETURN(auto txn, sql::Txn::Begin(db_));
  for (const auto& n : nodes) {
    Status st = WriteNode(n, false);
    if (!st.ok() && st.code() != Code::kNotFound) return st;
  }
  return txn.Commit();
}

Result<std::optional<Node>> SqliteStore::GetNode(const std::string& name) {
  std::lock_guard lock(mu_);
  VERGE_ASSIGN_OR_RETURN(auto st, db_.Prepare(fmt::format("{} WHERE name=?", kNodeSelect)));
  st.Bind(1, name);
  VERGE_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return std::optional<Node>();
  return std::optional<Node>(ReadNode(st));
}

Result<std::vector<Node>> SqliteStore::ListNodes() {
  std::lock_guard lock(mu_);
  VERGE_ASSIGN_OR_RETURN(auto st, db_.Prepare(fmt::format("{} ORDER BY name", kNodeSelect)));
  std::vector<Node> out;
  for (;;) {
    VERGE_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.push_back(ReadNode(st));
  }
  return out;
}

Status SqliteStore::DecommissionNode(const std::string& name, const RevokedCert& rev) {
  std::lock_guard lock(mu_);
  VERGE_ASSIGN_OR_RETURN(auto txn, sql::Txn::Begin(db_));
  VERGE_ASSIGN_OR_RETURN(auto del, db_.Prepare("DELETE FROM nodes WHERE name=?"));
  VERGE_RETURN_IF_ERROR(del.Bind(1, name).Run());
  if (db_.Changes() == 0) return Error(Code::kNotFound, "node \"{}\" not found", name);
  if (!rev.serial.empty()) {
    VERGE_ASSIGN_OR_RETURN(auto ins,
                           db_.Prepare("INSERT OR REPLACE INTO revoked_certs VALUES (?,?,?,?)"));
    VERGE_RETURN_IF_ERROR(ins.Bind(1, rev.serial)
                              .Bind(2, rev.node)
                              .Bind(3, rev.revoked_ms)
                              .Bind(4, rev.reason)
                              .Run());
  }
  // A node that joins again under this name starts its uplink sequence and its applied
  // state afresh; its devices and desired-state version stay (see node_state).
  for (const char* q :
       {"DELETE FROM uplink_received WHERE node=?", "DELETE FROM uplink_progress WHERE node=?",
        "DELETE FROM rule_status WHERE node=?",
        "UPDATE node_state SET applied_version=0, error='', reported_ms=0 "
        "WHERE node=?"}) {
    VERGE_ASSIGN_OR_RETURN(auto st, db_.Prepare(q));
    VERGE_RETURN_IF_ERROR(st.Bind(1, name).Run());
  }
  return txn.Commit();
}

Status SqliteStore::UpdateHeartbeats(std::span<const HeartbeatUpdate> updates) {
  if (updates.empty()) return Status::Ok();
  std::lock_guard lock(mu_);
  VERGE_ASSIGN_OR_RETURN(auto txn, sql::Txn::Begin(db_));
  VERGE_ASSIGN_OR_RETURN(auto st,
                         db_.Prepare("UPDATE nodes SET last_heartbeat_ms=? WHERE name=? AND "
                                     "last_heartbeat_ms < ?1"));
  for (const auto& u : updates) {
    st.Bind(1, u.last_heartbeat_ms).Bind(2, u.node);
    VERGE_RETURN_IF_ERROR(st.Run());
    st.Reset();
  }
  return txn.Commit();
}

Status SqliteStore::AppendEvents(std::span<const NodeEvent> events) {
  if (events.empty()) return Status::Ok();
  std::lock_guard lock(mu_);
  VERGE_ASSIGN_OR_RETURN(auto txn, sql::Txn::Begin(db_));
  VERGE_ASSIGN_OR_RETURN(
      auto st,
      db_.Prepare("INSERT INTO node_events (node, ts_ms, type, message) VALUES (?,?,?,?)"));
  for (const auto& e : events) {
    st.Bind(1, e.node).Bind(2, e.ts_ms).Bind(3, e.type).Bind(4, e.message);
    VERGE_RETURN_IF_ERROR(st.Run());
    st.Reset();
  }
  return txn.Commit();
}

Result<std::vector<NodeEvent>> SqliteStore::ListEvents(const std::string& node, int limit) {
  std::lock_guard lock(mu_);
  VERGE_ASSIGN_OR_RETURN(
      auto st, db_.Prepare("SELECT id, node, ts_ms, type, message FROM "
                           "node_events WHERE node=? ORDER BY ts_ms DESC, id DESC LIMIT ?"));
  st.Bind(1, node).Bind(2, static_cast<int64_t>(limit));
  std::vector<NodeEvent> out;
  for (;;) {
    VERGE_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.push_back(NodeEvent{st.Int(0), st.Text(1), st.Int(2), st.Text(3), st.Text(4)});
  }
  std::reverse(out.begin(), out.end());
  return out;
}

Status SqliteStore::PruneEvents(int64_t older_than_ms) {
  std::lock_guard lock(mu_);
  VERGE_ASSIGN_OR_RETURN(auto st, db_.Prepare("DELETE FROM node_events WHERE ts_ms < ?"));
  return st.Bind(1, older_than_ms).Run();
}

Status SqliteStore::InsertToken(const BootstrapToken& t) {
  std::lock_guard lock(mu_);
  VERGE_ASSIGN_OR_RETURN(auto st,
                         db_.Prepare("INSERT INTO bootstrap_tokens VALUES (?,?,?,?,?,?,?)"));
  return st.Bind(1, t.id)
      .Bind(2, t.secret_hash)
      .Bind(3, t.description)
      .Bind(4, t.created_ms)
      .Bind(5, t.expires_ms)
      .Bind(6, static_cast<int64_t>(t.revoked))
      .Bind(7, t.uses)
      .Run();
}

Result<std::optional<BootstrapToken>> SqliteStore::GetToken(const std::string& id) {
  std::lock_guard lock(mu_);
  VERGE_ASSIGN_OR_RETURN(auto st, db_.Prepare("SELECT * FROM bootstrap_tokens WHERE id=?"));
  st.Bind(1, id);
  VERGE_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return std::optional<BootstrapToken>();
  return std::optional<BootstrapToken>(ReadToken(st));
}

Result<std::vector<BootstrapToken>> SqliteStore::ListTokens() {
  std::lock_guard lock(mu_);
  VERGE_ASSIGN_OR_RETURN(auto st,
                         db_.Prepare("SELECT * FROM bootstrap_tokens ORDER BY created_ms"));
  std::vector<BootstrapToken> out;
  for (;;) {
    VERGE_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.push_back(ReadToken(st));
  }
  return out;
}

Status SqliteStore::RevokeToken(const std::string& id) {
  std::lock_guard lock(mu_);
  VERGE_ASSIGN_OR_RETURN(auto st, db_.Prepare("UPDATE bootstrap_tokens SET revoked=1 WHERE id=?"));
  VERGE_RETURN_IF_ERROR(st.Bind(1, id).Run());
  if (db_.Changes() == 0) return Error(Code::kNotFound, "bootstrap token \"{}\" not found", id);
  return Status::Ok();
}

Status SqliteStore::CountTokenUse(const std::string& id) {
  std::lock_guard lock(mu_);
  VERGE_ASSIGN_OR_RETURN(auto st,
                         db_.Prepare("UPDATE bootstrap_tokens SET uses=uses+1 WHERE id=?"));
  return st.Bind(1, id).Run();
}

Result<std::vector<RevokedCert>> SqliteStore::ListRevoked() {
  std::lock_guard lock(mu_);
  VERGE_ASSIGN_OR_RETURN(auto st,
                         db_.Prepare("SELECT serial, node, revoked_ms, reason FROM revoked_certs"));
  std::vector<RevokedCert> out;
  for (;;) {
    VERGE_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.push_back(RevokedCert{st.Text(0), st.Text(1), st.Int(2), st.Text(3)});
  }
  return out;
}

Result<std::optional<std::string>> SqliteStore::GetMeta(const std::string& key) {
  std::lock_guard lock(mu_);
  VERGE_ASSIGN_OR_RETURN(auto st, db_.Prepare("SELECT value FROM meta WHERE key=?"));
  st.Bind(1, key);
  VERGE_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return std::optional<std::string>();
  return std::optional<std::string>(st.Text(0));
}

Status SqliteStore::PutMeta(const std::string& key, const std::string& value) {
  std::lock_guard lock(mu_);
  VERGE_ASSIGN_OR_RETURN(auto st, db_.Prepare("INSERT OR REPLACE INTO meta VALUES (?,?)"));
  return st.Bind(1, key).Bind(2, value).Run();
}

Status SqliteStore::WriteDevice(const Device& d, bool insert) {
  std::string sql =
      insert ? fmt::format("INSERT INTO devices ({}) VALUES (?,?,?,?,?,?,?,?)", kDeviceColumns)
             : "UPDATE devices SET node=?2, labels=?3, token_sha256=?4, mqtt_password_hash=?5, "
               "spec=?6, updated_ms=?8 WHERE name=?1";
  VERGE_ASSIGN_OR_RETURN(auto st, db_.Prepare(sql));
  st.Bind(1, d.name)
      .Bind(2, d.node)
      .Bind(3, json(d.spec.labels).dump())
      .Bind(4, d.token_sha256)
      .Bind(5, d.mqtt_password_hash)
      .Bind(6, DeviceSpecJson(d.spec).dump())
      .Bind(7, d.created_ms)
      .Bind(8, d.updated_ms);
  auto rs = st.Run();
  if (rs.code() == Code::kAlreadyExists) {
    return Error(Code::kAlreadyExists, "device \"{}\" already exists", d.name);
  }
  return rs;
}

Result<std::vector<Store::VersionBump>> SqliteStore::InsertDevice(const Device& d) {
  std::lock_guard lock(mu_);
  VERGE_ASSIGN_OR_RETURN(auto txn, sql::Txn::Begin(db_));
  VERGE_RETURN_IF_ERROR(WriteDevice(d, true));
  VERGE_ASSIGN_OR_RETURN(uint64_t v, BumpVersion(db_, d.node));
  VERGE_RETURN_IF_ERROR(txn.Commit());
  return std::vector<VersionBump>{{d.node, v}};
}

Result<std::vector<Store::VersionBump>> SqliteStore::UpdateDevice(const Device& d) {
  std::lock_guard lock(mu_);
  VERGE_ASSIGN_OR_RETURN(auto txn, sql::Txn::Begin(db_));
  VERGE_ASSIGN_OR_RETURN(auto old_node, DeviceNode(db_, d.name));
  if (!old_node) return Error(Code::kNotFound, "device \"{}\" not found", d.name);
  VERGE_RETURN_IF_ERROR(WriteDevice(d, false));
  std::vector<VersionBump> bumps;
  VERGE_ASSIGN_OR_RETURN(uint64_t v, BumpVersion(db_, *old_node));
  bumps.push_back({*old_node, v});
  if (*old_node != d.node) {
    VERGE_ASSIGN_OR_RETURN(uint64_t v2, BumpVersion(db_, d.node));
    bumps.push_back({d.node, v2});
  }
  VERGE_RETURN_IF_ERROR(txn.Commit());
  return bumps;
}

Result<std::vector<Store::VersionBump>> SqliteStore::DeleteDevice(const std::string& name) {
  std::lock_guard lock(mu_);
  VERGE_ASSIGN_OR_RETURN(auto txn, sql::Txn::Begin(db_));
  VERGE_ASSIGN_OR_RETURN(auto node, DeviceNode(db_, name));
  if (!node) return Error(Code::kNotFound, "device \"{}\" not found", name);
  VERGE_ASSIGN_OR_RETURN(auto del, db_.Prepare("DELETE FROM devices WHERE name=?"));
  VERGE_RETURN_IF_ERROR(del.Bind(1, name).Run());
  VERGE_ASSIGN_OR_RETURN(uint64_t v, BumpVersion(db_, *node));
  VERGE_RETURN_IF_ERROR(txn.Commit());
  return std::vector<VersionBump>{{*node, v}};
}

Result<std::optional<Device>> SqliteStore::GetDevice(const std::string& name) {
  std::lock_guard lock(mu_);
  VERGE_ASSIGN_OR_RETURN(
      auto st, db_.Prepare(fmt::format("SELECT {} FROM devices WHERE name=?", kDeviceColumns)));
  st.Bind(1, name);
  VERGE_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return std::optional<Device>();
  VERGE_ASSIGN_OR_RETURN(auto d, ReadDevice(st));
  return std::optional<Device>(std::move(d));
}

Result<std::vector<Device>> SqliteStore::ListDevicesLocked(const std::string& node) {
  std::string sql =
      node.empty()
          ? fmt::format("SELECT {} FROM devices ORDER BY name", kDeviceColumns)
          : fmt::format("SELECT {} FROM devices WHERE node=? ORDER BY name", kDeviceColumns);
  VERGE_ASSIGN_OR_RETURN(auto st, db_.Prepare(sql));
  if (!node.empty()) st.Bind(1, node);
  std::vector<Device> out;
  for (;;) {
    VERGE_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    VERGE_ASSIGN_OR_RETURN(auto d, ReadDevice(st));
    out.push_back(std::move(d));
  }
  return out;
}

Result<std::vector<Device>> SqliteStore::ListDevices(const std::string& node) {
  std::lock_guard lock(mu_);
  return ListDevicesLocked(node);
}

Result<DesiredState> SqliteStore::GetDesiredState(const std::string& node, const Labels& labels) {
  // Every write of devices, rules and versions takes mu_ too, so the reads below see one state.
  std::lock_guard lock(mu_);
  DesiredState ds;
  VERGE_ASSIGN_OR_RETURN(auto st,
                         db_.Prepare("SELECT desired_version FROM node_state WHERE node=?"));
  st.Bind(1, node);
  VERGE_ASSIGN_OR_RETURN(bool row, st.Step());
  if (row) ds.version = static_cast<uint64_t>(st.Int(0));
  VERGE_ASSIGN_OR_RETURN(ds.devices, ListDevicesLocked(node));
  VERGE_ASSIGN_OR_RETURN(auto rules, ReadRules(db_));
  for (auto& r : rules) {
    if (r.Matches(labels)) ds.rules.push_back(std::move(r));
  }
  VERGE_ASSIGN_OR_RETURN(ds.workloads, NodeWorkloadsLocked(node));
  return ds;
}

Result<uint64_t> SqliteStore::RaiseDesiredVersion(const std::string& node, uint64_t above) {
  std::lock_guard lock(mu_);
  VERGE_ASSIGN_OR_RETURN(
      auto st, db_.Prepare("INSERT INTO node_state (node, desired_version) VALUES (?1, ?2 + 1) "
                           "ON CONFLICT (node) DO UPDATE SET desired_version = "
                           "MAX(desired_version, ?2 + 1) RETURNING desired_version"));
  st.Bind(1, node).Bind(2, static_cast<int64_t>(above));
  VERGE_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row)
    return Error(Code::kInternal, "raising the version of node \"{}\" returned nothing", node);
  auto v = static_cast<uint64_t>(st.Int(0));
  VERGE_RETURN_IF_ERROR(st.Run());
  return v;
}

Status SqliteStore::UpdateStateReports(std::span<const StateReport> reports) {
  if (reports.empty()) return Status::Ok();
  std::lock_guard lock(mu_);
  VERGE_ASSIGN_OR_RETURN(auto txn, sql::Txn::Begin(db_));
  VERGE_ASSIGN_OR_RETURN(
      auto st, db_.Prepare("INSERT INTO node_state (node, applied_version, error, reported_ms) "
                           "VALUES (?,?,?,?) ON CONFLICT (node) DO UPDATE SET "
                           "applied_version=excluded.applied_version, error=excluded.error, "
                           "reported_ms=excluded.reported_ms"));
  VERGE_ASSIGN_OR_RETURN(auto clear, db_.Prepare("DELETE FROM rule_status WHERE node=?"));
  VERGE_ASSIGN_OR_RETURN(
      auto put,
      db_.Prepare("INSERT OR REPLACE INTO rule_status (rule, node, status, records_in, "
                  "records_out, exceptions, last_error, latency_p50_us, latency_p99_us, dropped, "
                  "origin, reported_ms) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"));
  for (const auto& r : reports) {
    st.Bind(1, r.node)
        .Bind(2, static_cast<int64_t>(r.applied_version))
        .Bind(3, r.error)
        .Bind(4, r.reported_ms);
    VERGE_RETURN_IF_ERROR(st.Run());
    st.Reset();
    VERGE_RETURN_IF_ERROR(WriteWorkloadStatusesLocked(r));
    if (!r.has_rules) continue;
    VERGE_RETURN_IF_ERROR(clear.Bind(1, r.node).Run());
    clear.Reset();
    for (const auto& rs : r.rules) {
      put.Bind(1, rs.rule)
          .Bind(2, r.node)
          .Bind(3, rs.status)
          .Bind(4, static_cast<int64_t>(rs.records_in))
          .Bind(5, static_cast<int64_t>(rs.records_out))
          .Bind(6, static_cast<int64_t>(rs.exceptions))
          .Bind(7, rs.last_error)
          .Bind(8, static_cast<int64_t>(rs.latency_p50_us))
          .Bind(9, static_cast<int64_t>(rs.latency_p99_us))
          .Bind(10, static_cast<int64_t>(rs.dropped))
          .Bind(11, rs.origin)
          .Bind(12, r.reported_ms);
      VERGE_RETURN_IF_ERROR(put.Run());
      put.Reset();
    }
  }
  return txn.Commit();
}

Result<std::vector<RuleStatusRecord>> SqliteStore::ListRuleStatuses(const std::string& rule) {
  std::lock_guard lock(mu_);
  VERGE_ASSIGN_OR_RETURN(
      auto st, db_.Prepare("SELECT rule, node, status, records_in, records_out, exceptions, "
                           "last_error, latency_p50_us, latency_p99_us, dropped, origin, "
                           "reported_ms FROM rule_status WHERE rule=? ORDER BY node"));
  st.Bind(1, rule);
  std::vector<RuleStatusRecord> out;
  for (;;) {
    VERGE_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    RuleStatusRecord r;
    r.rule = st.Text(0);
    r.node = st.Text(1);
    r.status = st.Text(2);
    r.records_in = static_cast<uint64_t>(st.Int(3));
    r.records_out = static_cast<uint64_t>(st.Int(4));
    r.exceptions = static_cast<uint64_t>(st.Int(5));
    r.last_error = st.Text(6);
    r.latency_p50_us = static_cast<uint64_t>(st.Int(7));
    r.latency_p99_us = static_cast<uint64_t>(st.Int(8));
    r.dropped = static_cast<uint64_t>(st.Int(9));
    r.origin = st.Text(10);
    r.reported_ms = st.Int(11);
    out.push_back(std::move(r));
  }
  return out;
}

Result<std::vector<Store::VersionBump>> SqliteStore::PutRule(const Rule& r,
                                                             std::span<const std::string> nodes) {
  std::lock_guard lock(mu_);
  VERGE_ASSIGN_OR_RETURN(auto txn, sql::Txn::Begin(db_));
  VERGE_ASSIGN_OR_RETURN(
      auto st, db_.Prepare(fmt::format(
                   "INSERT INTO rules ({}) VALUES (?,?,?,?,?,?,?,?,?,?) "
                   "ON CONFLICT (name) DO UPDATE SET node_selector=excluded.node_selector, "
                   "sql=excluded.sql, streams=excluded.streams, actions=excluded.actions, "
                   "options=excluded.options, stopped=excluded.stopped, "
                   "restart_generation=excluded.restart_generation, "
                   "updated_ms=excluded.updated_ms",
                   kRuleColumns)));
  st.Bind(1, r.name)
      .Bind(2, json(r.node_selector).dump())
      .Bind(3, r.sql)
      .Bind(4, json(r.streams).dump())
      .Bind(5, r.actions_json)
      .Bind(6, r.options_json)
      .Bind(7, static_cast<int64_t>(r.stopped))
      .Bind(8, static_cast<int64_t>(r.restart_generation))
      .Bind(9, r.created_ms)
      .Bind(10, r.updated_ms);
  VERGE_RETURN_IF_ERROR(st.Run());
  VERGE_ASSIGN_OR_RETURN(auto bumps, BumpVersions(db_, nodes));
  VERGE_RETURN_IF_ERROR(txn.Commit());
  return bumps;
}

Result<std::vector<Store::VersionBump>> SqliteStore::DeleteRule(
    const std::string& name, std::span<const std::string> nodes) {
  std::lock_guard lock(mu_);
  VERGE_ASSIGN_OR_RETURN(auto txn, sql::Txn::Begin(db_));
  VERGE_ASSIGN_OR_RETURN(auto del, db_.Prepare("DELETE FROM rules WHERE name=?"));
  VERGE_RETURN_IF_ERROR(del.Bind(1, name).Run());
  if (db_.Changes() == 0) return Error(Code::kNotFound, "rule \"{}\" not found", name);
  VERGE_ASSIGN_OR_RETURN(auto statuses, db_.Prepare("DELETE FROM rule_status WHERE rule=?"));
  VERGE_RETURN_IF_ERROR(statuses.Bind(1, name).Run());
  VERGE_ASSIGN_OR_RETURN(auto bumps, BumpVersions(db_, nodes));
  VERGE_RETURN_IF_ERROR(txn.Commit());
  return bumps;
}

Result<std::optional<Rule>> SqliteStore::GetRule(const std::string& name) {
  std::lock_guard lock(mu_);
  VERGE_ASSIGN_OR_RETURN(
      auto st, db_.Prepare(fmt::format("SELECT {} FROM rules WHERE name=?", kRuleColumns)));
  st.Bind(1, name);
  VERGE_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return std::optional<Rule>();
  return std::optional<Rule>(ReadRule(st));
}

Result<std::vector<Rule>> SqliteStore::ListRules() {
  std::lock_guard lock(mu_);
  return ReadRules(db_);
}

Result<std::vector<Store::VersionBump>> SqliteStore::BumpDesiredVersions(
    std::span<const std::string> nodes) {
  if (nodes.empty()) return std::vector<VersionBump>();
  std::lock_guard lock(mu_);
  VERGE_ASSIGN_OR_RETURN(auto txn, sql::Txn::Begin(db_));
  VERGE_ASSIGN_OR_RETURN(auto bumps, BumpVersions(db_, nodes));
  VERGE_RETURN_IF_ERROR(txn.Commit());
  return bumps;
}

}  // namespace verge::cloud
