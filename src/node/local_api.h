// LocalApi: the node's HTTP API for devices and local applications, independent of the
// transport (common/http_server.h serves it).
//   POST /data     readings from a device (Bearer device token); JSON, JSON array or NDJSON.
//                  Answers only after the accepted readings are on the node's disk.
//   GET  /query    readings from the local time-series (a device token sees its own device;
//                  the node's local token sees every device).
//   GET  /healthz  liveness.
//   GET  /status   the link's autonomy state and history, and the app replicas (no token: it
//                  is what an operator on site looks at first).
//   GET  /stats    counters of the data path (local token).
//   GET  /metrics  the same and the link state in Prometheus text (local token).
//   /overrides, /overrides/KIND/NAME, POST /apps/NAME/stop|start: local overrides of the
//                  cloud's rules, devices and apps (local token; docs/autonomy.md).
//   POST /rules/test        runs a rule over given rows (no token: it only computes).
//   GET  /rules             every rule with its status; POST /rules creates a local rule;
//   GET|PUT|DELETE /rules/N one rule; POST /rules/N/start|stop|restart (local token).
// Thread-safety: thread-safe; handlers may run on several threads.
#pragma once

#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>

#include "common/clock.h"
#include "common/http.h"
#include "node/data/ingest.h"
#include "node/data/series.h"
#include "node/runtime/function.h"

namespace verge::node {

class RuleManager;

// Which device a bearer token belongs to, from the hashes in the desired state: the node never
// stores device tokens themselves.
class DeviceDirectory {
 public:
  // token SHA-256 (lowercase hex) -> device name
  void Set(std::map<std::string, std::string> by_token_hash);
  std::optional<std::string> DeviceForToken(std::string_view token) const;
  bool Known(const std::string& device) const;

 private:
  mutable std::shared_mutex mu_;
  std::map<std::string, std::string> by_hash_;  // GUARDED_BY(mu_)
  std::map<std::string, bool> devices_;         // GUARDED_BY(mu_)
};

class LocalApi {
 public:
  using StatsFn = std::function<std::string()>;  // JSON

  LocalApi(data::IngestSink& sink, data::SeriesStore& series, const DeviceDirectory& devices,
           std::string local_token, const Clock& clock, StatsFn stats);

  http::Response Handle(const http::Request& req);
  // The node's rules; without them the /rules endpoints answer 503. Set before serving.
  void SetRules(RuleManager* rules) { rules_ = rules; }
  // POST /functions/APP calls the function app APP with the request's JSON body.
  void SetFunctions(runtime::FunctionRuntime* functions) { functions_ = functions; }
  using HandlerFn = std::function<http::Response(const http::Request&)>;
  void SetOverrides(HandlerFn fn) { overrides_ = std::move(fn); }
  // GET /status (JSON) and GET /metrics (Prometheus text). Set before serving.
  void SetStatus(StatsFn status, StatsFn metrics) {
    status_ = std::move(status);
    metrics_ = std::move(metrics);
  }

 private:
  http::Response PostData(const http::Request& req);
  http::Response RulesTest(const http::Request& req);
  http::Response Rules(const http::Request& req);
  http::Response Query(const http::Request& req);

  data::IngestSink& sink_;
  data::SeriesStore& series_;
  const DeviceDirectory& devices_;
  const std::string local_token_;
  const Clock& clock_;
  StatsFn stats_;
  StatsFn status_;
  StatsFn metrics_;
  HandlerFn overrides_;
  RuleManager* rules_ = nullptr;
  runtime::FunctionRuntime* functions_ = nullptr;
  http::Response CallFunction(const http::Request& req);
};

}  // namespace verge::node
