// verge-cloud settings: defaults < --config FILE < command-line flags.
// Thread-safety: a plain value, read-only once the server starts.
#pragma once

#include <string>
#include <vector>

#include "common/config_schema.h"
#include "common/duration.h"

namespace verge::cloud {

struct CloudConfig {
  std::string data_dir = "/var/lib/verge-cloud";
  std::string api_listen = "127.0.0.1:7443";
  std::string link_listen = "0.0.0.0:7444";
  Millis degraded_after{30'000};
  Millis offline_after{90'000};
  Millis bootstrap_token_ttl{24LL * 3600 * 1000};
  Millis event_retention{7LL * 24 * 3600 * 1000};
  Millis telemetry_retention{30LL * 24 * 3600 * 1000};
  Millis flush_interval{1'000};
  Millis app_reconcile_interval{2'000};
  int max_artifact_mb = 256;
  int node_cert_days = 365;
  int io_threads = 0;  // 0: one per core
  std::vector<std::string> tls_names;
  std::string log_level = "info";
};

const ConfigSchema<CloudConfig>& CloudConfigSchema();
// Every problem at once, no side effects.
Status ValidateCloudConfig(const CloudConfig& c);

}  // namespace verge::cloud
