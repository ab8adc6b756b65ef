#include "cloud/config.h"

#include "common/http.h"
#include "common/log.h"

namespace verge::cloud {

const ConfigSchema<CloudConfig>& CloudConfigSchema() {
  static const auto* schema = [] {
    auto* s = new ConfigSchema<CloudConfig>();
    s->Str("dataDir", "Directory for the database, the CA and generated client config.",
           &CloudConfig::data_dir)
        .Str("apiListen", "HOST:PORT of the REST API and dashboard (HTTPS).",
             &CloudConfig::api_listen)
        .Str("linkListen",
             "HOST:PORT where nodes join and open their link (HTTPS + WebSocket, mTLS).",
             &CloudConfig::link_listen)
        .Dur("degradedAfter", "Heartbeat silence after which an online node is degraded.",
             &CloudConfig::degraded_after)
        .Dur("offlineAfter", "Heartbeat silence after which a node is offline.",
             &CloudConfig::offline_after)
        .Dur("bootstrapTokenTtl", "Lifetime of the bootstrap token created on first start.",
             &CloudConfig::bootstrap_token_ttl)
        .Dur("eventRetention", "How long node events are kept.", &CloudConfig::event_retention)
        .Dur("telemetryRetention",
             "How long readings are kept in the cloud (pruned hourly, by whole hours).",
             &CloudConfig::telemetry_retention)
        .Dur("flushInterval", "How often heartbeat times and events are written to the store.",
             &CloudConfig::flush_interval)
        .Dur("appReconcileInterval",
             "How often apps are re-placed (node joins, labels, offline nodes) and rollouts "
             "advanced.",
             &CloudConfig::app_reconcile_interval)
        .Int("maxArtifactMB", "Largest artifact `vergectl artifacts push` accepts, in MiB.",
             &CloudConfig::max_artifact_mb, 1, 16384)
        .Int("nodeCertDays", "Validity of node certificates, in days.",
             &CloudConfig::node_cert_days, 1, 3650)
        .Int("ioThreads", "Network I/O threads; 0 means one per core.", &CloudConfig::io_threads, 0,
             256)
        .StrList("tlsNames",
                 "Extra DNS names or IP addresses nodes and clients use to reach this cloud "
                 "(local addresses, localhost and the hostname are always included).",
                 &CloudConfig::tls_names)
        .Str("logLevel", "trace, debug, info, warn or error.", &CloudConfig::log_level);
    return s;
  }();
  return *schema;
}

Status ValidateCloudConfig(const CloudConfig& c) {
  std::vector<std::string> errors;
  if (c.data_dir.empty()) errors.push_back("dataDir must be set");
  for (auto [name, addr] :
       {std::pair{"apiListen", &c.api_listen}, {"linkListen", &c.link_listen}}) {
    if (auto hp = http::SplitHostPort(*addr); !hp.ok()) {
      errors.push_back(fmt::format("{}: {}", name, hp.status().message()));
    }
  }
  if (c.degraded_after.count() <= 0) errors.push_back("degradedAfter must be positive");
  if (c.offline_after <= c.degraded_after) {
    errors.push_back("offlineAfter must be longer than degradedAfter");
  }
  if (c.flush_interval.count() <= 0) errors.push_back("flushInterval must be positive");
  if (c.app_reconcile_interval.count() <= 0)
    errors.push_back("appReconcileInterval must be positive");
  if (c.event_retention.count() <= 0) errors.push_back("eventRetention must be positive");
  if (c.telemetry_retention.count() < 3600 * 1000) {
    errors.push_back("telemetryRetention must be at least 1h");
  }
  if (!IsLogLevel(c.log_level)) {
    errors.push_back("logLevel must be one of trace, debug, info, warn, error");
  }
  return ValidationResult("invalid configuration", errors);
}

}  // namespace verge::cloud
