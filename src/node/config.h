// verge-node settings: defaults < --config FILE < command-line flags.
// Thread-safety: a plain value, read-only once the agent starts.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "common/config_schema.h"
#include "common/duration.h"

namespace verge::node {

struct NodeConfig {
  std::string data_dir = "/var/lib/verge-node";
  std::string cloud;  // HOST:PORT of the cloud's link listener
  std::string token;  // bootstrap token; needed only for the first start
  std::string name;
  std::string region;
  std::string type = "gateway";
  std::map<std::string, std::string> labels;
  std::vector<std::string> capabilities;  // added to those detected
  Millis heartbeat{15'000};
  Millis reconnect_initial{500};
  Millis reconnect_max{30'000};
  // Autonomy (docs/autonomy.md): failed attempts in a row, or a silence of the cloud, after
  // which the node counts itself autonomous.
  int autonomy_after_failures = 3;
  Millis autonomy_after_silence{60'000};
  // Conflict policy of local overrides per kind (rule, device, app): cloud-wins, edge-wins,
  // last-writer-wins or merge. Kinds left out keep their defaults.
  std::map<std::string, std::string> override_policies;
  std::string log_level = "info";
  // Data path.
  std::string http_listen = "127.0.0.1:7480";
  int buffer_max_mb = 512;
  int journal_max_mb = 1024;
  Millis buffer_ttl{7LL * 24 * 3600 * 1000};
  Millis retention{24LL * 3600 * 1000};
  Millis batch_max_age{1000};
  int batch_max_readings = 10'000;
  int uplink_rate_kbit = 0;                    // kbit/s of batches toward the cloud; 0: no limit
  int pipeline_nice = 10;                      // the data pipeline thread's nice value
  std::string durability = "process";          // process | power
  std::string mqtt_listen = "127.0.0.1:1883";  // the node's own broker; "off": none
  std::string mqtt_broker;                     // an external broker instead
  std::string mqtt_username;
  std::string mqtt_password;
  // Apps.
  std::string app_user = "nobody";    // native workloads run as this user
  std::string apps_on_exit = "keep";  // keep | stop: what the agent's exit does to workloads
  Millis app_backoff_initial{1'000};
  Millis app_backoff_max{300'000};
  std::string oci_runtime;  // path of runc or crun; "" finds one
};

const ConfigSchema<NodeConfig>& NodeConfigSchema();
Status ValidateNodeConfig(const NodeConfig& c);
// "k=v,k2=v2" → map; an error names the bad pair.
Result<std::map<std::string, std::string>> ParseLabelList(std::string_view text);

}  // namespace verge::node
