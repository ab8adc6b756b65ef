#include "node/config.h"

#include "common/http.h"
#include "common/labels.h"
#include "common/log.h"

namespace verge::node {

const ConfigSchema<NodeConfig>& NodeConfigSchema() {
  static const auto* schema = [] {
    auto* s = new ConfigSchema<NodeConfig>();
    s->Str("dataDir", "Directory for the node's identity and state.", &NodeConfig::data_dir)
        .Str("cloud", "HOST:PORT of the cloud's link listener.", &NodeConfig::cloud)
        .Str("token", "Bootstrap token (verge1.…); needed only until the node has joined.",
             &NodeConfig::token)
        .Str("name", "Node name: 1-63 characters of [a-z0-9-.].", &NodeConfig::name)
        .Str("region", "Region the node is in.", &NodeConfig::region)
        .Str("type", "gateway, server or micro.", &NodeConfig::type)
        .StrMap("labels", "Labels the node reports (key: value).", &NodeConfig::labels)
        .StrList("capabilities", "Capabilities to report beside those detected (gpu, npu, fpga).",
                 &NodeConfig::capabilities)
        .Dur("heartbeat", "Heartbeat interval.", &NodeConfig::heartbeat)
        .Dur("reconnectInitial", "First reconnect delay; doubles per failure, with jitter.",
             &NodeConfig::reconnect_initial)
        .Dur("reconnectMax", "Longest reconnect delay.", &NodeConfig::reconnect_max)
        .Int("autonomyAfterFailures",
             "Failed attempts to reach the cloud in a row (a lost stream counts as the first) "
             "after which the node is autonomous.",
             &NodeConfig::autonomy_after_failures, 1, 1000)
        .Dur("autonomyAfterSilence",
             "No word from the cloud for this long makes the node autonomous, whatever its "
             "attempts do.",
             &NodeConfig::autonomy_after_silence)
        .StrMap("overridePolicies",
                "Conflict policy of local overrides per kind (rule, device, app): cloud-wins, "
                "edge-wins, last-writer-wins or merge.",
                &NodeConfig::override_policies)
        .Str("logLevel", "trace, debug, info, warn or error.", &NodeConfig::log_level)
        .Str("httpListen", "HOST:PORT of the local API devices post readings to.",
             &NodeConfig::http_listen)
        .Int("bufferMaxMb", "Bound on readings waiting for the cloud (compressed MB).",
             &NodeConfig::buffer_max_mb, 1, 1 << 20)
        .Int("journalMaxMb",
             "Bound on accepted readings not yet processed (MB); past it devices are told to "
             "retry.",
             &NodeConfig::journal_max_mb, 1, 1 << 20)
        .Dur("bufferTtl", "Readings not delivered within this are dropped (and counted).",
             &NodeConfig::buffer_ttl)
        .Dur("retention", "How long the local time-series keeps readings.", &NodeConfig::retention)
        .Dur("batchMaxAge", "An uplink batch closes at the latest this long after it opened.",
             &NodeConfig::batch_max_age)
        .Int("batchMaxReadings", "An uplink batch closes at this many readings.",
             &NodeConfig::batch_max_readings, 1, 1'000'000)
        .Int("uplinkRateKbit",
             "Most kbit/s of readings, alerts and events the node sends the cloud (highest "
             "priority first); 0 for no limit.",
             &NodeConfig::uplink_rate_kbit, 0, 100'000'000)
        .Int("pipelineNice",
             "Nice value (0-19) of the thread that turns accepted readings into the local "
             "series, rules and uplink batches; above 0, ingest goes first when CPU is short.",
             &NodeConfig::pipeline_nice, 0, 19)
        .Str("durability",
             "process: an accepted reading survives a crash of verge-node; power: also a power "
             "loss (fsync on every commit, slower).",
             &NodeConfig::durability)
        .Str("mqttListen",
             "HOST:PORT where the node's own Mosquitto listens for devices; off for none.",
             &NodeConfig::mqtt_listen)
        .Str("mqttBroker", "HOST:PORT of an existing broker to subscribe to instead.",
             &NodeConfig::mqtt_broker)
        .Str("mqttUsername", "User for the existing broker.", &NodeConfig::mqtt_username)
        .Str("mqttPassword", "Password for the existing broker.", &NodeConfig::mqtt_password)
        .Str("appUser", "Unprivileged user native app workloads run as.", &NodeConfig::app_user)
        .Str("appsOnExit",
             "keep: workloads outlive the agent (it re-adopts them when it starts again); stop: "
             "the agent stops them when it exits.",
             &NodeConfig::apps_on_exit)
        .Dur("appBackoffInitial",
             "First restart delay of a workload that ended; doubles per "
             "failure in a row.",
             &NodeConfig::app_backoff_initial)
        .Dur("appBackoffMax", "Longest restart delay of a workload.", &NodeConfig::app_backoff_max)
        .Str("ociRuntime", "Path of the OCI runtime (runc or crun); empty: find one.",
             &NodeConfig::oci_runtime);
    return s;
  }();
  return *schema;
}

Result<std::map<std::string, std::string>> ParseLabelList(std::string_view text) {
  std::map<std::string, std::string> out;
  while (!text.empty()) {
    size_t comma = text.find(',');
    std::string_view kv = text.substr(0, comma);
    size_t eq = kv.find('=');
    if (eq == std::string_view::npos || eq == 0) {
      return Error(Code::kInvalidArgument, "label \"{}\" must be written key=value", kv);
    }
    out[std::string(kv.substr(0, eq))] = std::string(kv.substr(eq + 1));
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return out;
}

Status ValidateNodeConfig(const NodeConfig& c) {
  std::vector<std::string> errors;
  if (c.data_dir.empty()) errors.push_back("dataDir must be set");
  if (c.cloud.empty())
    errors.push_back("cloud must be set (--cloud HOST:PORT)");
  else if (auto hp = http::SplitHostPort(c.cloud); !hp.ok())
    errors.push_back("cloud: " + hp.status().message());
  if (c.type != "gateway" && c.type != "server" && c.type != "micro") {
    errors.push_back("type must be gateway, server or micro");
  }
  for (const auto& [k, v] : c.labels) {
    if (auto st = ValidateLabel(k, v); !st.ok()) errors.push_back("labels: " + st.message());
  }
  if (c.heartbeat.count() < 100) errors.push_back("heartbeat must be at least 100ms");
  for (const auto& [kind, policy] : c.override_policies) {
    if (kind != "rule" && kind != "device" && kind != "app")
      errors.push_back("overridePolicies: " + kind + " is not rule, device or app");
    if (policy != "cloud-wins" && policy != "edge-wins" && policy != "last-writer-wins" &&
        policy != "merge")
      errors.push_back("overridePolicies: " + kind + ": " + policy +
                       " is not cloud-wins, edge-wins, last-writer-wins or merge");
  }
  if (c.autonomy_after_silence.count() < 100)
    errors.push_back("autonomyAfterSilence must be at least 100ms");
  if (c.apps_on_exit != "keep" && c.apps_on_exit != "stop")
    errors.push_back("appsOnExit must be keep or stop");
  if (c.app_user.empty()) errors.push_back("appUser must be set");
  if (c.app_backoff_initial.count() <= 0) errors.push_back("appBackoffInitial must be positive");
  if (c.app_backoff_max < c.app_backoff_initial)
    errors.push_back("appBackoffMax must be >= appBackoffInitial");
  if (c.reconnect_initial.count() <= 0) errors.push_back("reconnectInitial must be positive");
  if (c.reconnect_max < c.reconnect_initial)
    errors.push_back("reconnectMax must be >= reconnectInitial");
  if (auto hp = http::SplitHostPort(c.http_listen); !hp.ok())
    errors.push_back("httpListen: " + hp.status().message());
  if (c.mqtt_listen != "off" && !c.mqtt_listen.empty()) {
    if (auto hp = http::SplitHostPort(c.mqtt_listen); !hp.ok() || hp->second == "0")
      errors.push_back("mqttListen must be HOST:PORT with a fixed port, or off");
  }
  if (!c.mqtt_broker.empty()) {
    if (auto hp = http::SplitHostPort(c.mqtt_broker); !hp.ok())
      errors.push_back("mqttBroker: " + hp.status().message());
  }
  if (c.durability != "process" && c.durability != "power")
    errors.push_back("durability must be process or power");
  if (c.batch_max_age.count() <= 0) errors.push_back("batchMaxAge must be positive");
  if (c.retention.count() <= 0) errors.push_back("retention must be positive");
  if (c.buffer_ttl.count() <= 0) errors.push_back("bufferTtl must be positive");
  if (!IsLogLevel(c.log_level)) {
    errors.push_back("logLevel must be one of trace, debug, info, warn, error");
  }
  return ValidationResult("invalid configuration", errors);
}

}  // namespace verge::node
