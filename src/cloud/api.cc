#include "cloud/api.h"

#include <spdlog/spdlog.h>

#include <set>

#include "cloud/alerts.h"
#include "cloud/api_json.h"
#include "cloud/device_spec.h"
#include "cloud/rule_spec.h"
#include "cloud/telemetry_query.h"
#include "verge/v1/link.pb.h"

namespace verge::cloud {
namespace {

using json = nlohmann::json;

// Node-reported text (state errors, names in events) may not be UTF-8; show it replaced
// rather than fail the whole answer.
http::Response Json(int status, const json& j) {
  return {status, "application/json", j.dump(-1, ' ', false, json::error_handler_t::replace)};
}
http::Response Fail(Code code, std::string msg) {
  return http::ErrorResponse(Status(code, std::move(msg)));
}

http::Response MethodNotAllowed(const http::Request& req) {
  return Json(405, {{"error",
                     {{"code", "method_not_allowed"},
                      {"message", req.method + " is not allowed on " + req.path}}}});
}

std::vector<std::string_view> Segments(std::string_view path) {
  std::vector<std::string_view> out;
  while (!path.empty()) {
    if (path.front() == '/') {
      path.remove_prefix(1);
      continue;
    }
    size_t p = path.find('/');
    out.push_back(path.substr(0, p));
    if (p == std::string_view::npos) break;
    path.remove_prefix(p);
  }
  return out;
}

}  // namespace

http::Response Api::Handle(const http::Request& req) {
  if (req.path == "/healthz") return Json(200, {{"status", "ok"}});
  std::string auth = req.Header("authorization");
  if (!auth.starts_with("Bearer ") || !tokens_.CheckAdminToken(std::string_view(auth).substr(7))) {
    return Fail(Code::kUnauthenticated, auth.empty()
                                            ? "missing bearer token (Authorization: Bearer <token>)"
                                            : "invalid bearer token");
  }
  try {
    return Route(req);
  } catch (const std::exception& e) {
    spdlog::error("API {} {} failed: {}", req.method, req.path, e.what());
    return Fail(Code::kInternal, "internal error");
  }
}

http::Response Api::Route(const http::Request& req) {
  auto seg = Segments(req.path);
  const std::string& m = req.method;
  if (seg.size() < 2 || seg[0] != "api" || seg[1] != "v1") {
    return Fail(Code::kNotFound, "no such endpoint: " + req.path);
  }
  seg.erase(seg.begin(), seg.begin() + 2);
  auto not_allowed = [&] { return MethodNotAllowed(req); };

  if (!seg.empty() && seg[0] == "nodes") {
    if (seg.size() == 1) {
      if (m != "GET") return not_allowed();
      json arr = json::array();
      std::string status_filter = req.query.count("status") ? req.query.at("status") : "";
      for (const auto& n : registry_.List()) {
        if (!status_filter.empty() && NodeStatusName(n.status) != status_filter) continue;
        arr.push_back(NodeJson(n, registry_.IsConnected(n.name)));
      }
      return Json(200, arr);
    }
    std::string name(seg[1]);
    if (seg.size() == 2) {
      if (m == "GET") {
        auto n = registry_.Get(name);
        if (!n) return Fail(Code::kNotFound, "node \"" + name + "\" not found");
        return Json(200, NodeJson(*n, registry_.IsConnected(name)));
      }
      if (m == "PATCH") {
        auto patch = ParseLabelPatch(req.body);
        if (!patch.ok()) return http::ErrorResponse(patch.status());
        auto n = registry_.PatchLabels(name, *patch);
        if (!n.ok()) return http::ErrorResponse(n.status());
        return Json(200, NodeJson(*n, registry_.IsConnected(name)));
      }
      if (m == "DELETE") {
        auto n = registry_.Decommission(name);
        if (!n.ok()) return http::ErrorResponse(n.status());
        link_.Disconnect(name, v1::Goodbye::REVOKED,
                         "this node was decommissioned and its certificate revoked");
        spdlog::info("node {} decommissioned; certificate {} revoked", name, n->cert_serial);
        return Json(
            200,
            {{"name", name}, {"decommissioned", true}, {"revokedCertificate", n->cert_serial}});
      }
      return not_allowed();
    }
    if (seg.size() == 3 && seg[2] == "events") {
      if (m != "GET") return not_allowed();
      int limit = 100;
      if (auto it = req.query.find("limit"); it != req.query.end()) {
        try {
          limit = std::clamp(std::stoi(it->second), 1, 10000);
        } catch (...) {
          return Fail(Code::kInvalidArgument, "limit must be a number");
        }
      }
      if (!registry_.Get(name)) {
        // Events outlive a decommissioned node, so an unknown name may still have history.
        auto ev = registry_.Events(name, limit);
        if (!ev.ok()) return http::ErrorResponse(ev.status());
        if (ev->empty()) return Fail(Code::kNotFound, "node \"" + name + "\" not found");
        json arr = json::array();
        for (const auto& e : *ev) arr.push_back(EventJson(e));
        return Json(200, arr);
      }
      auto ev = registry_.Events(name, limit);
      if (!ev.ok()) return http::ErrorResponse(ev.status());
      json arr = json::array();
      for (const auto& e : *ev) arr.push_back(EventJson(e));
      return Json(200, arr);
    }
  }

  if (!seg.empty() && seg[0] == "tokens") {
    if (seg.size() == 1 && m == "GET") {
      auto list = tokens_.List();
      if (!list.ok()) return http::ErrorResponse(list.status());
      json arr = json::array();
      for (const auto& t : *list) arr.push_back(TokenJson(t, clock_.WallMs()));
      return Json(200, arr);
    }
    if (seg.size() == 1 && m == "POST") {
      auto body = ParseTokenCreate(req.body);
      if (!body.ok()) return http::ErrorResponse(body.status());
      auto created = tokens_.Create(body->ttl, body->description);
      if (!created.ok()) return http::ErrorResponse(created.status());
      json j = TokenJson(created->record, clock_.WallMs());
      j["token"] = created->token;
      return Json(201, j);
    }
    if (seg.size() == 2 && m == "DELETE") {
      auto st = tokens_.Revoke(std::string(seg[1]));
      if (!st.ok()) return http::ErrorResponse(st);
      return Json(200, {{"id", std::string(seg[1])}, {"revoked", true}});
    }
    if (seg.size() <= 2) return not_allowed();
  }

  if (!seg.empty() && seg[0] == "devices") return Devices(req, seg);
  if (!seg.empty() && seg[0] == "rules") return Rules(req, seg);
  if (!seg.empty() && seg[0] == "apps") return Apps(req, seg);
  if (!seg.empty() && seg[0] == "artifacts") return Artifacts(req, seg);
  if (seg.size() == 1 && seg[0] == "alerts") {
    if (m != "GET") return not_allowed();
    return Alerts(req);
  }
  if (seg.size() == 1 && seg[0] == "telemetry") {
    if (m != "GET") return not_allowed();
    return Telemetry(req);
  }

  if (seg.size() == 1 && seg[0] == "status" && m == "GET") {
    auto c = registry_.Counts();
    const auto& lc = link_.counters();
    const auto& tc = telemetry_.counters();
    return Json(200, {{"nodes", c.nodes},
                      {"online", c.online},
                      {"degraded", c.degraded},
                      {"offline", c.offline},
                      {"connected", c.connected},
                      {"streams", link_.ActiveStreams()},
                      {"heartbeats", lc.heartbeats.load()},
                      {"desiredStatesSent", lc.desired_states_sent.load()},
                      {"uplinkBatches", lc.uplink_batches.load()},
                      {"badBatches", lc.bad_batches.load()},
                      {"batchesStored", tc.batches_stored.load()},
                      {"batchesDuplicate", tc.batches_duplicate.load()},
                      {"readingsStored", tc.readings_stored.load()},
                      {"alertsStored", tc.alerts_stored.load()},
                      {"nodeEventsStored", tc.events_stored.load()},
                      {"readingsCompacted", tc.readings_compacted.load()},
                      {"telemetryQueueBytes", telemetry_.queued_bytes()},
                      {"linkAddress", link_address_}});
  }
  return Fail(Code::kNotFound, "no such endpoint: " + req.path);
}

http::Response Api::Devices(const http::Request& req, const std::vector<std::string_view>& seg) {
  const std::string& m = req.method;
  auto not_allowed = [&] { return MethodNotAllowed(req); };
  auto with_token = [](const DeviceWithToken& d) {
    json j = DeviceJson(d.device);
    j["token"] = d.token;
    return j;
  };
  if (seg.size() == 1) {
    if (m == "GET") {
      std::string node = req.query.count("node") ? req.query.at("node") : "";
      auto list = devices_.List(node);
      if (!list.ok()) return http::ErrorResponse(list.status());
      json arr = json::array();
      for (const auto& d : *list) arr.push_back(DeviceJson(d));
      return Json(200, arr);
    }
    if (m == "POST") {
      auto created = devices_.Create(req.body);
      if (!created.ok()) return http::ErrorResponse(created.status());
      return Json(201, with_token(*created));
    }
    return not_allowed();
  }
  std::string name(seg[1]);
  if (seg.size() == 2) {
    if (m == "GET") {
      auto d = devices_.Get(name);
      if (!d.ok()) return http::ErrorResponse(d.status());
      return Json(200, DeviceJson(*d));
    }
    if (m == "PUT") {
      auto d = devices_.Replace(name, req.body);
      if (!d.ok()) return http::ErrorResponse(d.status());
      return Json(200, DeviceJson(*d));
    }
    if (m == "DELETE") {
      if (auto st = devices_.Delete(name); !st.ok()) return http::ErrorResponse(st);
      return Json(200, {{"name", name}, {"deleted", true}});
    }
    return not_allowed();
  }
  if (seg.size() == 3 && seg[2] == "token") {
    if (m != "POST") return not_allowed();
    auto rotated = devices_.RotateToken(name);
    if (!rotated.ok()) return http::ErrorResponse(rotated.status());
    return Json(200, with_token(*rotated));
  }
  return Fail(Code::kNotFound, "no such endpoint: " + req.path);
}

http::Response Api::Rules(const http::Request& req, const std::vector<std::string_view>& seg) {
  const std::string& m = req.method;
  auto not_allowed = [&] { return MethodNotAllowed(req); };
  auto shown = [&](const Rule& r) { return RuleJson(r, rules_.Nodes(r)); };
  if (seg.size() == 1) {
    if (m != "GET") return not_allowed();
    auto list = rules_.List();
    if (!list.ok()) return http::ErrorResponse(list.status());
    json arr = json::array();
    for (const auto& r : *list) arr.push_back(shown(r));
    return Json(200, arr);
  }
  std::string name(seg[1]);
  if (seg.size() == 2) {
    if (m == "GET") {
      auto r = rules_.Get(name);
      if (!r.ok()) return http::ErrorResponse(r.status());
      return Json(200, shown(*r));
    }
    if (m == "PUT") {
      auto applied = rules_.Apply(name, req.body);
      if (!applied.ok()) return http::ErrorResponse(applied.status());
      json j = shown(applied->rule);
      switch (applied->change) {
        case RuleService::Change::kCreated:
          j["result"] = "created";
          return Json(201, j);
        case RuleService::Change::kUpdated:
          j["result"] = "configured";
          break;
        case RuleService::Change::kUnchanged:
          j["result"] = "unchanged";
          break;
      }
      return Json(200, j);
    }
    if (m == "DELETE") {
      if (auto st = rules_.Delete(name); !st.ok()) return http::ErrorResponse(st);
      return Json(200, {{"name", name}, {"deleted", true}});
    }
    return not_allowed();
  }
  if (seg.size() == 3 && seg[2] == "status") {
    if (m != "GET") return not_allowed();
    auto statuses = rules_.Statuses(name);
    if (!statuses.ok()) return http::ErrorResponse(statuses.status());
    json arr = json::array();
    for (const auto& s : *statuses) arr.push_back(RuleStatusJson(s));
    return Json(200, arr);
  }
  if (seg.size() == 3 && (seg[2] == "stop" || seg[2] == "start" || seg[2] == "restart")) {
    if (m != "POST") return not_allowed();
    auto r = seg[2] == "stop"    ? rules_.Stop(name)
             : seg[2] == "start" ? rules_.Start(name)
                                 : rules_.Restart(name);
    if (!r.ok()) return http::ErrorResponse(r.status());
    return Json(200, shown(*r));
  }
  return Fail(Code::kNotFound, "no such endpoint: " + req.path);
}

namespace {

std::optional<uint64_t> ParseUint(const std::string& text) {
  if (text.empty() || text.size() > 19) return std::nullopt;
  uint64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  return v;
}

}  // namespace

http::Response Api::Apps(const http::Request& req, const std::vector<std::string_view>& seg) {
  const std::string& m = req.method;
  auto not_allowed = [&] { return MethodNotAllowed(req); };
  auto answer = [](const Result<json>& r, int code = 200) {
    if (!r.ok()) return http::ErrorResponse(r.status());
    return Json(code, *r);
  };
  if (seg.size() == 1) {
    if (m != "GET") return not_allowed();
    return answer(apps_.DescribeAll());
  }
  std::string name(seg[1]);
  if (seg.size() == 2) {
    if (m == "GET") return answer(apps_.Describe(name));
    if (m == "PUT") {
      auto applied = apps_.Apply(name, req.body);
      if (!applied.ok()) return http::ErrorResponse(applied.status());
      auto shown = apps_.Describe(name);
      if (!shown.ok()) return http::ErrorResponse(shown.status());
      json j = std::move(*shown);
      switch (applied->change) {
        case AppService::Change::kCreated:
          j["result"] = "created";
          return Json(201, j);
        case AppService::Change::kUpdated:
          j["result"] = "configured";
          break;
        case AppService::Change::kUnchanged:
          j["result"] = "unchanged";
          break;
      }
      return Json(200, j);
    }
    if (m == "DELETE") {
      if (auto st = apps_.Delete(name); !st.ok()) return http::ErrorResponse(st);
      return Json(200, {{"name", name}, {"deleted", true}});
    }
    return not_allowed();
  }
  if (seg.size() == 3 && seg[2] == "explain") {
    if (m != "GET") return not_allowed();
    return answer(apps_.Explain(name));
  }
  if (seg.size() == 3 && seg[2] == "logs") {
    if (m != "GET") return not_allowed();
    return AppLogs(req, name);
  }
  if (seg.size() == 4 && seg[2] == "rollout" && seg[3] == "status") {
    if (m != "GET") return not_allowed();
    return answer(apps_.RolloutStatus(name));
  }
  if (seg.size() == 4 && seg[2] == "rollout" && seg[3] == "undo") {
    if (m != "POST") return not_allowed();
    uint64_t revision = 0;
    if (auto it = req.query.find("revision"); it != req.query.end()) {
      auto parsed = ParseUint(it->second);
      if (!parsed) {
        return Fail(Code::kInvalidArgument, fmt::format("revision: \"{}\" is not a revision number",
                                                        ClipUtf8(it->second, 40)));
      }
      revision = *parsed;
    }
    auto app = apps_.Undo(name, revision);
    if (!app.ok()) return http::ErrorResponse(app.status());
    return answer(apps_.RolloutStatus(name));
  }
  return Fail(Code::kNotFound, "no such endpoint: " + req.path);
}

http::Response Api::AppLogs(const http::Request& req, const std::string& app) {
  auto placements = store_.ListPlacements(app);
  if (!placements.ok()) return http::ErrorResponse(placements.status());
  if (auto got = apps_.Get(app); !got.ok()) return http::ErrorResponse(got.status());
  std::string only = req.query.contains("node") ? req.query.at("node") : "";
  uint32_t tail = 0;
  if (auto it = req.query.find("tail"); it != req.query.end()) {
    auto n = ParseUint(it->second);
    if (!n || *n > 1'000'000)
      return Fail(Code::kInvalidArgument, "tail: a number of lines up to 1000000");
    tail = static_cast<uint32_t>(*n);
  }
  // since=NODE/WORKLOAD:OFFSET,...: where a follower stopped reading.
  std::map<std::string, std::map<std::string, uint64_t>> since;
  if (auto it = req.query.find("since"); it != req.query.end()) {
    std::string_view rest = it->second;
    while (!rest.empty()) {
      auto comma = rest.find(',');
      std::string_view item = rest.substr(0, comma);
      rest = comma == std::string_view::npos ? "" : rest.substr(comma + 1);
      auto slash = item.find('/');
      auto colon = item.rfind(':');
      auto off = colon == std::string_view::npos ? std::nullopt
                                                 : ParseUint(std::string(item.substr(colon + 1)));
      if (slash == std::string_view::npos || colon < slash || !off) {
        return Fail(Code::kInvalidArgument,
                    fmt::format("since: \"{}\" is not NODE/REPLICA:OFFSET", ClipUtf8(item, 80)));
      }
      since[std::string(item.substr(0, slash))]
           [std::string(item.substr(slash + 1, colon - slash - 1))] = *off;
    }
  }
  std::set<std::string> nodes;
  for (const auto& p : *placements) {
    if (only.empty() || p.node == only) nodes.insert(p.node);
  }
  if (!only.empty() && nodes.empty()) {
    return Fail(Code::kNotFound,
                fmt::format("app \"{}\" has no replica on node \"{}\"", app, ClipUtf8(only, 80)));
  }
  json out = json::array();
  json errors = json::array();
  for (const auto& node : nodes) {
    v1::LogRequest lr;
    lr.set_app(app);
    lr.set_tail(tail);
    for (const auto& [w, off] : since[node]) (*lr.mutable_since())[w] = off;
    auto chunks = link_.RequestLogs(node, lr, std::chrono::seconds(5));
    if (!chunks.ok()) {
      errors.push_back({{"node", node}, {"error", chunks.status().message()}});
      continue;
    }
    for (auto& c : *chunks) {
      out.push_back({{"node", node},
                     {"replica", c.workload},
                     {"output", std::move(c.data)},
                     {"offset", c.offset}});
    }
  }
  if (out.empty() && !errors.empty()) {
    return Fail(Code::kUnavailable,
                errors[0].value("node", "") + ": " + errors[0].value("error", ""));
  }
  return Json(200, {{"logs", out}, {"errors", errors}});
}

http::Response Api::Artifacts(const http::Request& req, const std::vector<std::string_view>& seg) {
  const std::string& m = req.method;
  auto shown = [](const ArtifactInfo& a) {
    return json{{"sha256", a.sha256},
                {"ref", "sha256:" + a.sha256},
                {"name", a.name},
                {"size", a.size},
                {"createdAt", FormatTimeMs(a.created_ms)}};
  };
  if (seg.size() == 1) {
    if (m == "GET") {
      auto list = artifacts_.List();
      if (!list.ok()) return http::ErrorResponse(list.status());
      json arr = json::array();
      for (const auto& a : *list) arr.push_back(shown(a));
      return Json(200, arr);
    }
    if (m == "POST") {
      std::string name;
      if (auto it = req.query.find("name"); it != req.query.end()) name = it->second;
      auto put = artifacts_.Put(name, req.body, clock_.WallMs());
      if (!put.ok()) return http::ErrorResponse(put.status());
      spdlog::info("artifact sha256:{} ({}, {} bytes) pushed", put->sha256, put->name, put->size);
      return Json(201, shown(*put));
    }
    return MethodNotAllowed(req);
  }
  std::string sha(seg[1]);
  if (sha.starts_with("sha256:")) sha = sha.substr(7);
  if (seg.size() == 2) {
    if (m == "GET") {
      auto a = artifacts_.Get(sha);
      if (!a.ok()) return http::ErrorResponse(a.status());
      if (!*a) return Fail(Code::kNotFound, fmt::format("artifact sha256:{} not found", sha));
      return Json(200, shown(**a));
    }
    if (m == "DELETE") {
      if (auto st = artifacts_.Delete(sha); !st.ok()) return http::ErrorResponse(st);
      return Json(200, {{"sha256", sha}, {"deleted", true}});
    }
    return MethodNotAllowed(req);
  }
  return Fail(Code::kNotFound, "no such endpoint: " + req.path);
}

http::Response Api::Alerts(const http::Request& req) {
  auto q = ParseAlertQuery(req.query, clock_.WallMs());
  if (!q.ok()) return http::ErrorResponse(q.status());
  auto alerts = store_.ListAlerts(*q);
  if (!alerts.ok()) return http::ErrorResponse(alerts.status());
  json arr = json::array();
  for (const auto& a : *alerts) arr.push_back(AlertJson(a));
  return Json(200, arr);
}

http::Response Api::Telemetry(const http::Request& req) {
  auto q = ParseTelemetryQuery(req.query, clock_.WallMs() * 1'000'000);
  if (!q.ok()) return http::ErrorResponse(q.status());
  auto points = RunTelemetryQuery(store_, *q);
  if (!points.ok()) return http::ErrorResponse(points.status());
  return Json(200, PointsJson(q->device, *points));
}

http::Response JoinService::Handle(const http::Request& req) {
  if (req.path == "/v1/ca" && req.method == "GET") {
    return http::Response{200, "application/x-pem-file", ca_.cert_pem()};
  }
  if (req.path == "/v1/join") {
    if (req.method != "POST") return Fail(Code::kInvalidArgument, "use POST for /v1/join");
    try {
      return Join(req);
    } catch (const std::exception& e) {
      spdlog::error("join failed: {}", e.what());
      return Fail(Code::kInternal, "internal error");
    }
  }
  if (req.path.starts_with("/v1/artifacts/")) {
    if (req.method != "GET") return Fail(Code::kInvalidArgument, "use GET for /v1/artifacts");
    return Artifact(req);
  }
  if (req.path == "/healthz") return Json(200, {{"status", "ok"}});
  return Fail(Code::kNotFound, "no such endpoint: " + req.path);
}

http::Response JoinService::Artifact(const http::Request& req) {
  // Only nodes fetch artifacts: the request must come with a current, unrevoked node
  // certificate (the server puts what TLS verified in kPeerHeader).
  std::string peer = req.Header(http::kPeerHeader);
  auto space = peer.find(' ');
  if (space == std::string::npos) {
    return Fail(Code::kUnauthenticated, "artifacts are served to nodes with their certificate");
  }
  std::string cn = peer.substr(0, space), serial = peer.substr(space + 1);
  if (registry_.IsRevoked(serial) || !registry_.CertIsCurrent(cn, serial)) {
    return Fail(Code::kPermissionDenied,
                fmt::format("certificate of \"{}\" is not current", ClipUtf8(cn, 80)));
  }
  if (!artifacts_) return Fail(Code::kNotFound, "this server keeps no artifacts");
  std::string sha = req.path.substr(std::string_view("/v1/artifacts/").size());
  auto data = artifacts_->Read(sha);
  if (!data.ok()) return http::ErrorResponse(data.status());
  return http::Response{200, "application/octet-stream", std::move(*data)};
}

http::Response JoinService::Join(const http::Request& req) {
  v1::JoinRequest jr;
  if (req.body.size() > size_t{64} * 1024 ||
      !jr.ParseFromArray(req.body.data(), static_cast<int>(req.body.size()))) {
    return Fail(Code::kInvalidArgument, "body is not a verge.v1.JoinRequest");
  }
  if (auto st = ValidateNodeName(jr.node_name()); !st.ok()) return http::ErrorResponse(st);
  auto token = tokens_.Validate(jr.token());
  if (!token.ok()) {
    spdlog::warn("join of \"{}\" from {} refused: {}", jr.node_name(), req.remote_address,
                 token.status().message());
    return http::ErrorResponse(token.status());
  }
  if (registry_.Get(jr.node_name())) {
    return Fail(Code::kAlreadyExists,
                fmt::format("a node named \"{}\" is already registered; delete it first "
                            "(vergectl nodes delete {}) or join with another name",
                            jr.node_name(), jr.node_name()));
  }
  auto cert = ca_.IssueClientCert(jr.csr_pem(), jr.node_name(), validity_days_);
  if (!cert.ok()) return http::ErrorResponse(cert.status());
  auto info = pki::InspectCertificate(*cert);
  if (!info.ok()) return http::ErrorResponse(info.status());
  if (auto st = registry_.AddJoined(jr.node_name(), info->serial_hex, info->not_after_ms,
                                    req.remote_address);
      !st.ok()) {
    return http::ErrorResponse(st);
  }
  spdlog::info("node {} joined from {} with token {}", jr.node_name(), req.remote_address,
               token->id);
  v1::JoinResponse resp;
  resp.set_certificate_pem(*cert);
  resp.set_ca_pem(ca_.cert_pem());
  resp.set_protocol_version(kProtocolVersion);
  return http::Response{200, "application/x-protobuf", resp.SerializeAsString()};
}

}  // namespace verge::cloud
