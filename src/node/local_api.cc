#include "node/local_api.h"

#include <fmt/format.h>

#include <charconv>
#include <ctime>
#include <nlohmann/json.hpp>

#include "common/duration.h"
#include "common/pki.h"
#include "common/timestamp.h"
#include "node/data/payload.h"
#include "node/rule_manager.h"
#include "node/rules/engine.h"
#include "node/rules/json_value.h"
#include "node/rules/spec.h"

namespace verge::node {

using json = nlohmann::json;

void DeviceDirectory::Set(std::map<std::string, std::string> by_token_hash) {
  std::map<std::string, bool> devices;
  for (const auto& [h, d] : by_token_hash) devices[d] = true;
  std::unique_lock lock(mu_);
  by_hash_ = std::move(by_token_hash);
  devices_ = std::move(devices);
}

std::optional<std::string> DeviceDirectory::DeviceForToken(std::string_view token) const {
  std::string h = pki::Sha256Hex(token);
  std::shared_lock lock(mu_);
  auto it = by_hash_.find(h);
  if (it == by_hash_.end()) return std::nullopt;
  return it->second;
}

bool DeviceDirectory::Known(const std::string& device) const {
  std::shared_lock lock(mu_);
  return devices_.count(device) > 0;
}

LocalApi::LocalApi(data::IngestSink& sink, data::SeriesStore& series,
                   const DeviceDirectory& devices, std::string local_token, const Clock& clock,
                   StatsFn stats)
    : sink_(sink),
      series_(series),
      devices_(devices),
      local_token_(std::move(local_token)),
      clock_(clock),
      stats_(std::move(stats)) {}

namespace {

std::string Bearer(const http::Request& req) {
  std::string auth = req.Header("authorization");
  constexpr std::string_view kPrefix = "Bearer ";
  if (auth.size() > kPrefix.size() && auth.compare(0, kPrefix.size(), kPrefix) == 0)
    return auth.substr(kPrefix.size());
  return "";
}

// Bounds what one answer costs the node (about 110 bytes a point); a client reads further by
// asking again from the last point's time.
constexpr size_t kMaxQueryPoints = 100'000;

http::Response Json(int status, const json& j) {
  http::Response r;
  r.status = status;
  r.body = j.dump();
  return r;
}

}  // namespace

http::Response LocalApi::Handle(const http::Request& req) {
  if (req.path == "/data") {
    if (req.method != "POST")
      return http::ErrorResponse(Error(Code::kInvalidArgument, "use POST /data"));
    return PostData(req);
  }
  if (req.path == "/query") {
    if (req.method != "GET")
      return http::ErrorResponse(Error(Code::kInvalidArgument, "use GET /query"));
    return Query(req);
  }
  if (req.path == "/rules/test") {
    if (req.method != "POST")
      return http::ErrorResponse(Error(Code::kInvalidArgument, "use POST /rules/test"));
    return RulesTest(req);
  }
  if (req.path == "/rules" || req.path.rfind("/rules/", 0) == 0) {
    if (local_token_.empty() || Bearer(req) != local_token_)
      return http::ErrorResponse(
          Error(Code::kUnauthenticated, "the node's local token is required"));
    return Rules(req);
  }
  if (req.path == "/overrides" || req.path.rfind("/overrides/", 0) == 0 ||
      req.path.rfind("/apps/", 0) == 0) {
    if (local_token_.empty() || Bearer(req) != local_token_)
      return http::ErrorResponse(
          Error(Code::kUnauthenticated, "the node's local token is required"));
    if (!overrides_)
      return http::ErrorResponse(Error(Code::kUnavailable, "overrides are not available"));
    return overrides_(req);
  }
  if (req.path.rfind("/functions/", 0) == 0) {
    if (local_token_.empty() || Bearer(req) != local_token_)
      return http::ErrorResponse(
          Error(Code::kUnauthenticated, "the node's local token is required"));
    if (req.method != "POST")
      return http::ErrorResponse(Error(Code::kInvalidArgument, "use POST /functions/APP"));
    return CallFunction(req);
  }
  if (req.path == "/healthz") return Json(200, {{"status", "ok"}});
  if (req.path == "/status") {
    if (req.method != "GET")
      return http::ErrorResponse(Error(Code::kInvalidArgument, "use GET /status"));
    http::Response r;
    r.body = status_ ? status_() : "{}";
    return r;
  }
  if (req.path == "/stats" || req.path == "/metrics") {
    if (local_token_.empty() || Bearer(req) != local_token_)
      return http::ErrorResponse(
          Error(Code::kUnauthenticated, "the node's local token is required"));
    http::Response r;
    if (req.path == "/metrics") {
      r.content_type = "text/plain; version=0.0.4";
      r.body = metrics_ ? metrics_() : "";
    } else {
      r.body = stats_ ? stats_() : "{}";
    }
    return r;
  }
  return http::ErrorResponse(Error(Code::kNotFound, "no endpoint {} {}", req.method, req.path));
}

// Computes only: it reads and changes nothing on the node, so it needs no token (the local API
// listens on loopback unless configured otherwise). Bounded by the request body limit.
http::Response LocalApi::RulesTest(const http::Request& req) {
  auto bad = [](const std::string& message) {
    return Json(400, {{"error", message}, {"line", 0}, {"column", 0}});
  };
  json body = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded() || !body.is_object()) return bad("the body must be a JSON object");
  std::vector<std::string> streams;
  if (auto it = body.find("streams"); it != body.end()) {
    if (!it->is_array()) return bad("\"streams\" must be an array of CREATE STREAM statements");
    for (const auto& s : *it) {
      if (!s.is_string()) return bad("\"streams\" must be an array of CREATE STREAM statements");
      streams.push_back(s.get<std::string>());
    }
  }
  auto sql = body.find("sql");
  if (sql == body.end() || !sql->is_string()) return bad("\"sql\" must be a SELECT statement");
  std::map<std::string, std::vector<rules::Row>> input;
  if (auto it = body.find("input"); it != body.end()) {
    if (!it->is_object()) return bad("\"input\" must map stream names to arrays of rows");
    for (const auto& [stream, rows] : it->items()) {
      if (!rows.is_array())
        return bad(fmt::format("\"input.{}\" must be an array of rows", stream));
      auto& out = input[stream];
      out.reserve(rows.size());
      for (const auto& row : rows) out.push_back(rules::FromJson(row));
    }
  }
  // The built-in stream, unless the request declares its own.
  bool declares_telemetry = false;
  for (const auto& s : streams) {
    auto cs = rules::ParseCreateStream(s);
    declares_telemetry = declares_telemetry || (cs.ok() && cs.value().name == "telemetry");
  }
  if (!declares_telemetry)
    streams.insert(streams.begin(), std::string(rules::TelemetryStreamSql()));
  auto run = rules::RunTest(streams, sql->get<std::string>(), input);
  if (!run.ok()) {
    const auto& e = run.error();
    return Json(400, {{"error", e.ToString()}, {"line", e.line}, {"column", e.column}});
  }
  json outputs = json::array();
  for (const auto& emission : run.value().outputs) {
    json rows = json::array();
    for (const auto& row : emission) rows.push_back(rules::ToNlohmann(row));
    outputs.push_back(std::move(rows));
  }
  const auto& c = run.value().counters;
  return Json(200, {{"outputs", std::move(outputs)},
                    {"recordsIn", c.records_in},
                    {"recordsOut", c.records_out},
                    {"exceptions", c.exceptions},
                    {"late", c.late},
                    {"lastError", c.last_error}});
}

http::Response LocalApi::PostData(const http::Request& req) {
  std::string token = Bearer(req);
  if (token.empty())
    return http::ErrorResponse(
        Error(Code::kUnauthenticated, "missing 'Authorization: Bearer <device token>'"));
  auto device = devices_.DeviceForToken(token);
  if (!device) return http::ErrorResponse(Error(Code::kUnauthenticated, "unknown device token"));
  std::string ct = req.Header("content-type");
  data::Framing framing =
      ct.find("ndjson") != std::string::npos ? data::Framing::kNdjson : data::Framing::kJson;
  auto report = sink_.IngestPayload(*device, req.body, framing);
  if (!report.ok()) {
    http::Response r = http::ErrorResponse(report.status());
    if (report.status().code() == Code::kInvalidArgument) r.status = 400;
    return r;
  }
  json rejected = json::array();
  bool only_duplicates = true;
  for (const auto& rj : report->rejected) {
    if (rj.reason != data::RejectReason::kDuplicate) only_duplicates = false;
    json o = {{"item", rj.item}, {"reason", data::ReasonName(rj.reason)}, {"message", rj.message}};
    if (!rj.metric.empty()) o["metric"] = rj.metric;
    rejected.push_back(std::move(o));
  }
  // A retry of readings already stored is a success for the device; readings that are simply
  // wrong, with nothing accepted, are not.
  int status = report->accepted > 0 || only_duplicates ? 200 : 422;
  return Json(status, {{"device", *device},
                       {"accepted", report->accepted},
                       {"rejected", report->rejected.size()},
                       {"rejections", std::move(rejected)}});
}

http::Response LocalApi::Query(const http::Request& req) {
  std::string token = Bearer(req);
  std::optional<std::string> own;
  bool admin = !local_token_.empty() && token == local_token_;
  if (!admin) {
    own = token.empty() ? std::nullopt : devices_.DeviceForToken(token);
    if (!own)
      return http::ErrorResponse(
          Error(Code::kUnauthenticated, "a device token or the node's local token is required"));
  }
  auto arg = [&](const char* k) -> std::string {
    auto it = req.query.find(k);
    return it == req.query.end() ? "" : it->second;
  };
  data::SeriesQuery q;
  q.device = arg("device");
  if (q.device.empty() && own) q.device = *own;
  if (q.device.empty())
    return http::ErrorResponse(Error(Code::kInvalidArgument, "device= is required"));
  if (own && q.device != *own)
    return http::ErrorResponse(
        Error(Code::kPermissionDenied, "a device token can only query its own device"));
  q.metric = arg("metric");
  int64_t now = clock_.WallMs() * 1'000'000;
  if (auto f = arg("from"); !f.empty()) {
    auto t = ParseTimeArg(f, now);
    if (!t.ok()) return http::ErrorResponse(t.status());
    q.from_ns = *t;
  }
  if (auto t = arg("to"); !t.empty()) {
    auto v = ParseTimeArg(t, now);
    if (!v.ok()) return http::ErrorResponse(v.status());
    q.to_ns = *v;
  }
  if (auto s = arg("step"); !s.empty()) {
    auto d = ParseDuration(s);
    if (!d.ok() || d->count() <= 0)
      return http::ErrorResponse(Error(Code::kInvalidArgument, "step '{}' is not a duration", s));
    q.step_ns = d->count() * 1'000'000;
  }
  auto agg = ParseAggregate(arg("agg"));
  if (!agg.ok()) return http::ErrorResponse(agg.status());
  q.agg = *agg;
  if (q.step_ns > 0 && q.agg == Aggregate::kNone) q.agg = Aggregate::kAvg;
  if (auto l = arg("limit"); !l.empty()) {
    size_t n = 0;
    auto [p, ec] = std::from_chars(l.data(), l.data() + l.size(), n);
    if (ec != std::errc() || p != l.data() + l.size() || n == 0 || n > kMaxQueryPoints) {
      return http::ErrorResponse(
          Error(Code::kInvalidArgument, "limit must be 1..{}", kMaxQueryPoints));
    }
    q.limit = n;
  }
  auto points = series_.Query(q);
  if (!points.ok()) return http::ErrorResponse(points.status());
  // Written directly: a JSON DOM of 100,000 points would cost the node tens of MB for a moment.
  // Names are validated [A-Za-z0-9_.:-] when readings are accepted, but are escaped anyway.
  http::Response res;
  res.status = 200;
  res.content_type = "application/json";
  res.body.reserve(points->size() * 112 + 2);
  res.body += '[';
  std::string device_json, metric_json;
  const std::string* device = nullptr;
  const std::string* metric = nullptr;
  for (const auto& p : *points) {
    if (!device || *device != p.device) {
      device = &p.device;
      device_json = json(p.device).dump();
    }
    if (!metric || *metric != p.metric) {
      metric = &p.metric;
      metric_json = json(p.metric).dump();
    }
    if (res.body.size() > 1) res.body += ',';
    fmt::format_to(std::back_inserter(res.body),
                   R"({{"ts":"{}","tsNs":{},"device":{},"metric":{},"value":{}}})",
                   FormatTimeNs(p.ts_ns), p.ts_ns, device_json, metric_json, p.value);
  }
  res.body += ']';
  return res;
}

}  // namespace verge::node

namespace verge::node {

http::Response LocalApi::CallFunction(const http::Request& req) {
  if (!functions_)
    return http::ErrorResponse(Error(Code::kUnavailable, "functions do not run on this node"));
  std::string app = req.path.substr(std::string_view("/functions/").size());
  json event = req.body.empty() ? json::object() : json::parse(req.body, nullptr, false);
  if (event.is_discarded())
    return http::ErrorResponse(Error(Code::kInvalidArgument, "the body is not valid JSON"));
  auto rows = functions_->Call(app, event);
  if (!rows.ok()) return http::ErrorResponse(rows.status());
  return Json(200, *rows);
}

http::Response LocalApi::Rules(const http::Request& req) {
  if (!rules_)
    return http::ErrorResponse(Error(Code::kUnavailable, "rules are not running on this node"));
  auto invalid = [](const rules::ParseError& e) {
    return Json(400, {{"error", e.ToString()}, {"line", e.line}, {"column", e.column}});
  };
  auto ok_or = [](const Status& st, const json& body) {
    return st.ok() ? Json(200, body) : http::ErrorResponse(st);
  };
  if (req.path == "/rules") {
    if (req.method == "GET") return Json(200, rules_->ListJson());
    if (req.method != "POST")
      return http::ErrorResponse(Error(Code::kInvalidArgument, "use GET or POST /rules"));
    json body = json::parse(req.body, nullptr, false);
    if (body.is_discarded())
      return invalid(rules::ParseError{0, 0, "the body must be a JSON object"});
    rules::ParseError error;
    Status st = rules_->PutLocal(body, /*replace=*/false, &error);
    if (st.code() == Code::kInvalidArgument) return invalid(error);
    if (!st.ok()) return http::ErrorResponse(st);
    auto got = rules_->GetJson(body.value("name", ""));
    return got.ok() ? Json(201, *got) : http::ErrorResponse(got.status());
  }
  std::string rest = req.path.substr(std::string_view("/rules/").size());
  std::string name = rest, op;
  if (size_t slash = rest.find('/'); slash != std::string::npos) {
    name = rest.substr(0, slash);
    op = rest.substr(slash + 1);
  }
  name = http::UrlDecode(name);
  if (!op.empty()) {
    if (req.method != "POST")
      return http::ErrorResponse(Error(Code::kInvalidArgument, "use POST /rules/{}/{}", name, op));
    Status st = rules_->Control(name, op);
    if (!st.ok()) return http::ErrorResponse(st);
    auto got = rules_->GetJson(name);
    return got.ok() ? Json(200, *got) : http::ErrorResponse(got.status());
  }
  if (req.method == "GET") {
    auto got = rules_->GetJson(name);
    return got.ok() ? Json(200, *got) : http::ErrorResponse(got.status());
  }
  if (req.method == "DELETE") return ok_or(rules_->DeleteLocal(name), {{"deleted", name}});
  if (req.method == "PUT") {
    json body = json::parse(req.body, nullptr, false);
    if (body.is_discarded() || !body.is_object())
      return invalid(rules::ParseError{0, 0, "the body must be a JSON object"});
    if (!body.contains("name")) body["name"] = name;
    if (body["name"] != name)
      return invalid(rules::ParseError{0, 0, "the body's name differs from the URL's"});
    rules::ParseError error;
    Status st = rules_->PutLocal(body, /*replace=*/true, &error);
    if (st.code() == Code::kInvalidArgument) return invalid(error);
    if (!st.ok()) return http::ErrorResponse(st);
    auto got = rules_->GetJson(name);
    return got.ok() ? Json(200, *got) : http::ErrorResponse(got.status());
  }
  return http::ErrorResponse(
      Error(Code::kInvalidArgument, "use GET, PUT or DELETE /rules/{}", name));
}

}  // namespace verge::node
