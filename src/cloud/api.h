// The REST API (api-listen) and the join endpoints (link-listen), as plain request →
// response functions over the registry, token, device, rule and telemetry services. The transport
// (net.cc) calls them on its I/O threads. Routes and shapes are documented in docs/api.md.
// Thread-safety: thread-safe (everything they touch is).
#pragma once

#include "cloud/apps.h"
#include "cloud/artifacts.h"
#include "cloud/devices.h"
#include "cloud/link_service.h"
#include "cloud/registry.h"
#include "cloud/rules.h"
#include "cloud/store.h"
#include "cloud/tokens.h"
#include "common/http.h"
#include "common/pki.h"

namespace verge::cloud {

class Api {
 public:
  // `telemetry` is the writer whose counters /api/v1/status shows; `store` answers queries.
  Api(Registry& registry, TokenService& tokens, LinkService& link, DeviceService& devices,
      RuleService& rules, AppService& apps, ArtifactStore& artifacts, TelemetryWriter& telemetry,
      Store& store, const Clock& clock)
      : registry_(registry),
        tokens_(tokens),
        link_(link),
        devices_(devices),
        rules_(rules),
        apps_(apps),
        artifacts_(artifacts),
        telemetry_(telemetry),
        store_(store),
        clock_(clock) {}

  http::Response Handle(const http::Request& req);
  // The link address nodes use, shown by /api/v1/status. Set before serving.
  void set_link_address(std::string address) { link_address_ = std::move(address); }

 private:
  http::Response Route(const http::Request& req);
  http::Response Devices(const http::Request& req, const std::vector<std::string_view>& seg);
  http::Response Telemetry(const http::Request& req);
  http::Response Rules(const http::Request& req, const std::vector<std::string_view>& seg);
  http::Response Alerts(const http::Request& req);
  http::Response Apps(const http::Request& req, const std::vector<std::string_view>& seg);
  http::Response Artifacts(const http::Request& req, const std::vector<std::string_view>& seg);
  http::Response AppLogs(const http::Request& req, const std::string& app);
  std::string link_address_;
  Registry& registry_;
  TokenService& tokens_;
  LinkService& link_;
  DeviceService& devices_;
  RuleService& rules_;
  AppService& apps_;
  ArtifactStore& artifacts_;
  TelemetryWriter& telemetry_;
  Store& store_;
  const Clock& clock_;
};

class JoinService {
 public:
  JoinService(Registry& registry, TokenService& tokens, const pki::CertificateAuthority& ca,
              int cert_validity_days, ArtifactStore* artifacts = nullptr)
      : registry_(registry),
        artifacts_(artifacts),
        tokens_(tokens),
        ca_(ca),
        validity_days_(cert_validity_days) {}

  // GET /v1/ca, POST /v1/join, and GET /v1/artifacts/SHA for nodes (their certificate).
  http::Response Handle(const http::Request& req);

 private:
  http::Response Join(const http::Request& req);
  http::Response Artifact(const http::Request& req);
  Registry& registry_;
  ArtifactStore* artifacts_;
  TokenService& tokens_;
  const pki::CertificateAuthority& ca_;
  int validity_days_;
};

}  // namespace verge::cloud
