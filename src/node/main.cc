// verge-node: the Verge edge agent.
#include <signal.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <iostream>

#include "common/fs.h"
#include "common/log.h"
#include "node/agent.h"
#include "node/config.h"

int main(int argc, char** argv) {
  using namespace verge;
  using namespace verge::node;
  CLI::App app{"verge-node: the Verge edge agent", "verge-node"};
  std::string config_file, data_dir, cloud, token, name, region, labels, type, heartbeat, log_level,
      http_listen, mqtt_listen, mqtt_broker, apps_on_exit;
  std::vector<std::string> caps;
  bool print_default = false, version = false;
  app.add_option("--config", config_file, "YAML settings file (flags override it)");
  app.add_option("--data-dir", data_dir, "Data directory");
  app.add_option("--cloud", cloud, "HOST:PORT of the cloud's link listener");
  app.add_option("--token", token, "Bootstrap token (first start only)");
  app.add_option("--name", name, "Node name");
  app.add_option("--region", region, "Region");
  app.add_option("--labels", labels, "Labels: k=v,k=v");
  app.add_option("--type", type, "gateway|server|micro");
  app.add_option("--capability", caps, "Extra capability to report (gpu, npu, fpga)");
  app.add_option("--heartbeat", heartbeat, "Heartbeat interval (e.g. 15s)");
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error");
  app.add_option(
      "--mqtt-listen", mqtt_listen,
      "HOST:PORT of the node's own MQTT broker for devices (default 127.0.0.1:1883; off)");
  app.add_option("--mqtt-broker", mqtt_broker,
                 "HOST:PORT of an existing MQTT broker to take readings from instead");
  app.add_option("--http-listen", http_listen,
                 "HOST:PORT of the local API for devices (default 127.0.0.1:7480)");
  app.add_option("--apps-on-exit", apps_on_exit,
                 "keep: app workloads outlive the agent; stop: stop them when it exits");
  app.add_flag("--print-default-config", print_default, "Print the default settings and exit");
  app.add_flag("--version", version, "Print the version and exit");
  CLI11_PARSE(app, argc, argv);

  if (version) {
    std::cout << "verge-node " << VERGE_VERSION << "\n";
    return 0;
  }
  NodeConfig cfg;
  if (print_default) {
    std::cout << NodeConfigSchema().Print(cfg);
    return 0;
  }
  auto die = [](const std::string& msg) {
    std::cerr << "verge-node: " << msg << "\n";
    return 2;
  };
  if (!config_file.empty()) {
    auto text = ReadFile(config_file);
    if (!text.ok()) return die(text.status().message());
    if (auto st = NodeConfigSchema().Parse(*text, cfg, config_file); !st.ok())
      return die(st.message());
  }
  if (!data_dir.empty()) cfg.data_dir = data_dir;
  if (!cloud.empty()) cfg.cloud = cloud;
  if (!token.empty()) cfg.token = token;
  if (!name.empty()) cfg.name = name;
  if (!region.empty()) cfg.region = region;
  if (!type.empty()) cfg.type = type;
  if (!log_level.empty()) cfg.log_level = log_level;
  if (!http_listen.empty()) cfg.http_listen = http_listen;
  if (!mqtt_listen.empty()) cfg.mqtt_listen = mqtt_listen;
  if (!mqtt_broker.empty()) cfg.mqtt_broker = mqtt_broker;
  if (!apps_on_exit.empty()) cfg.apps_on_exit = apps_on_exit;
  for (auto& c : caps) cfg.capabilities.push_back(c);
  if (!labels.empty()) {
    auto l = ParseLabelList(labels);
    if (!l.ok()) return die("--labels: " + l.status().message());
    for (auto& [k, v] : *l) cfg.labels[k] = v;
  }
  if (!heartbeat.empty()) {
    auto d = ParseDuration(heartbeat);
    if (!d.ok()) return die("--heartbeat: " + d.status().message());
    cfg.heartbeat = *d;
  }
  if (auto st = ValidateNodeConfig(cfg); !st.ok()) return die(st.message());
  if (auto st = SetupLogging(cfg.log_level); !st.ok()) return die(st.message());

  PrepareSignals();
  SystemClock clock;
  Agent agent(cfg, clock, [](const Status&) { kill(getpid(), SIGTERM); });
  if (auto st = agent.Start(); !st.ok()) {
    spdlog::critical("cannot start: {}", st.message());
    return st.code() == Code::kDataLoss ? 3 : 2;
  }
  int sig = WaitForStopSignal();
  Status fatal = agent.fatal();
  if (fatal.ok()) spdlog::info("signal {} received, shutting down", sig);
  agent.Stop();
  return fatal.ok() ? 0 : 2;
}
