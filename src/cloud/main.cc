// verge-cloud: the Verge control plane.
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <iostream>

#include "cloud/config.h"
#include "cloud/server.h"
#include "common/fs.h"
#include "common/log.h"

int main(int argc, char** argv) {
  using namespace verge;
  using namespace verge::cloud;
  CLI::App app{"verge-cloud: the Verge control plane", "verge-cloud"};
  std::string config_file, data_dir, api_listen, link_listen, degraded, offline, log_level;
  std::vector<std::string> tls_names;
  int io_threads = -1;
  bool print_default = false, version = false;
  app.add_option("--config", config_file, "YAML settings file (flags override it)");
  app.add_option("--data-dir", data_dir, "Data directory");
  app.add_option("--api-listen", api_listen, "HOST:PORT of the REST API");
  app.add_option("--link-listen", link_listen, "HOST:PORT for node joins and links");
  app.add_option("--degraded-after", degraded, "Silence before a node is degraded (e.g. 30s)");
  app.add_option("--offline-after", offline, "Silence before a node is offline (e.g. 90s)");
  app.add_option("--tls-name", tls_names, "Extra DNS name or IP for the server certificate");
  app.add_option("--io-threads", io_threads, "Network threads (0: one per core)");
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error");
  app.add_flag("--print-default-config", print_default, "Print the default settings and exit");
  app.add_flag("--version", version, "Print the version and exit");
  CLI11_PARSE(app, argc, argv);

  if (version) {
    std::cout << "verge-cloud " << VERGE_VERSION << "\n";
    return 0;
  }
  CloudConfig cfg;
  if (print_default) {
    std::cout << CloudConfigSchema().Print(cfg);
    return 0;
  }
  std::vector<std::string> errors;
  if (!config_file.empty()) {
    auto text = ReadFile(config_file);
    if (!text.ok()) {
      std::cerr << "verge-cloud: " << text.status().message() << "\n";
      return 2;
    }
    if (auto st = CloudConfigSchema().Parse(*text, cfg, config_file); !st.ok()) {
      std::cerr << "verge-cloud: " << st.message() << "\n";
      return 2;
    }
  }
  if (!data_dir.empty()) cfg.data_dir = data_dir;
  if (!api_listen.empty()) cfg.api_listen = api_listen;
  if (!link_listen.empty()) cfg.link_listen = link_listen;
  if (!log_level.empty()) cfg.log_level = log_level;
  if (io_threads >= 0) cfg.io_threads = io_threads;
  for (auto& n : tls_names) cfg.tls_names.push_back(n);
  for (auto [flag, text, field] : {std::tuple{"--degraded-after", &degraded, &cfg.degraded_after},
                                   {"--offline-after", &offline, &cfg.offline_after}}) {
    if (text->empty()) continue;
    auto d = ParseDuration(*text);
    if (!d.ok())
      errors.push_back(std::string(flag) + ": " + d.status().message());
    else
      *field = *d;
  }
  if (!errors.empty()) {
    for (auto& e : errors) std::cerr << "verge-cloud: " << e << "\n";
    return 2;
  }
  if (auto st = ValidateCloudConfig(cfg); !st.ok()) {
    std::cerr << "verge-cloud: " << st.message() << "\n";
    return 2;
  }
  if (auto st = SetupLogging(cfg.log_level); !st.ok()) {
    std::cerr << "verge-cloud: " << st.message() << "\n";
    return 2;
  }
  PrepareSignals();
  SystemClock clock;
  Server server(cfg, clock);
  if (auto st = server.Start(); !st.ok()) {
    spdlog::critical("cannot start: {}", st.message());
    return 1;
  }
  int sig = WaitForStopSignal();
  spdlog::info("signal {} received, shutting down", sig);
  server.Stop();
  return 0;
}
