// verge-devsim: simulated devices for tests, benchmarks and `make demo`.
//   verge-devsim http   --url URL --device NAME=TOKEN ... | --devices FILE   [load flags]
//   verge-devsim mqtt   --broker HOST:PORT --device NAME=TOKEN ... | --devices FILE [--qos]
//   verge-devsim modbus --listen HOST:PORT [--devices N] [--seed S] [--print-map]
// Load flags: --rate --count --duration --batch --format --metrics --seed, and --start with
// --interval for the simulated clock (readings stamped start + i x interval, not "now").
// The http and mqtt modes print one JSON summary line on stdout when they end (count
// reached, duration over, or SIGINT/SIGTERM); modbus prints "listening HOST:PORT" first.
// Exit codes: 0 ok, 1 runtime failure, 2 usage error.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <charconv>
#include <iostream>
#include <set>

#include "common/clock.h"
#include "common/fs.h"
#include "common/http.h"
#include "common/log.h"
#include "common/timestamp.h"
#include "devsim/modbus_map.h"
#include "devsim/modes.h"

namespace verge::devsim {
namespace {

struct LoadFlags {
  std::vector<std::string> device;
  std::string devices_file;
  double rate = 1;
  uint64_t count = 0;
  std::string duration;
  size_t batch = 1;
  std::string format = "json";
  std::string metrics = "temperature,humidity";
  uint64_t seed = 1;
  std::string start;
  std::string interval;
};

void AddLoadFlags(CLI::App* cmd, LoadFlags& f) {
  cmd->add_option("--device", f.device, "A device as NAME=TOKEN (repeatable)");
  cmd->add_option("--devices", f.devices_file,
                  "JSON file of devices: [{\"name\":..,\"token\":..}, ...] as vergectl prints");
  cmd->add_option("--rate", f.rate, "Readings per second per device (0: as fast as possible)")
      ->capture_default_str();
  cmd->add_option("--count", f.count, "Readings per device, then exit (0: no limit)")
      ->capture_default_str();
  cmd->add_option("--duration", f.duration, "Stop after this long (e.g. 30s; default: no limit)");
  cmd->add_option("--batch", f.batch, "Readings per request or message")->capture_default_str();
  cmd->add_option("--format", f.format, "Payload: json (an array) or ndjson")
      ->capture_default_str();
  cmd->add_option("--metrics", f.metrics, "Comma-separated metric names, sent round-robin")
      ->capture_default_str();
  cmd->add_option("--seed", f.seed, "Seed of the simulated signals")->capture_default_str();
  cmd->add_option("--start", f.start,
                  "Simulated clock: the first reading's time (RFC 3339, epoch ms, or a duration "
                  "meaning that long ago, e.g. 1h); needs --interval");
  cmd->add_option("--interval", f.interval,
                  "Simulated clock: time between two readings of a device (e.g. 1ms); reading i "
                  "is stamped start + i x interval, whatever --rate");
}

// Every problem with the load flags, or the options they make.
Result<LoadOptions> ToLoadOptions(const LoadFlags& f) {
  std::vector<std::string> errors;
  LoadOptions o;
  for (const std::string& d : f.device) {
    auto cred = ParseDeviceFlag(d);
    if (cred.ok()) {
      o.devices.push_back(*cred);
    } else {
      errors.push_back("--device: " + cred.status().message());
    }
  }
  if (!f.devices_file.empty()) {
    auto text = ReadFile(f.devices_file);
    auto list =
        text.ok() ? ParseDevicesJson(*text) : Result<std::vector<DeviceCred>>(text.status());
    if (list.ok()) {
      o.devices.insert(o.devices.end(), list->begin(), list->end());
    } else {
      errors.push_back("--devices " + f.devices_file + ": " + list.status().message());
    }
  }
  if (o.devices.empty() && errors.empty())
    errors.push_back("give --device NAME=TOKEN or --devices FILE");
  std::set<std::string> names;
  for (const DeviceCred& d : o.devices) {
    if (!names.insert(d.name).second) errors.push_back("device \"" + d.name + "\" given twice");
  }
  if (!std::isfinite(f.rate) || f.rate < 0) errors.push_back("--rate must be >= 0");
  o.rate = f.rate;
  o.count = f.count;
  if (!f.duration.empty()) {
    auto d = ParseDuration(f.duration);
    if (d.ok()) {
      o.duration = *d;
    } else {
      errors.push_back("--duration: " + d.status().message());
    }
  }
  if (f.batch < 1) errors.push_back("--batch must be >= 1");
  o.batch = f.batch;
  if (auto fmt = ParsePayloadFormat(f.format); fmt.ok()) {
    o.format = *fmt;
  } else {
    errors.push_back("--format: " + fmt.status().message());
  }
  o.metrics.clear();
  for (size_t pos = 0; pos <= f.metrics.size();) {
    size_t comma = std::min(f.metrics.find(',', pos), f.metrics.size());
    std::string m = f.metrics.substr(pos, comma - pos);
    if (Status st = ValidateMetricName(m); !st.ok()) {
      errors.push_back("--metrics: " + st.message());
    } else {
      o.metrics.push_back(m);
    }
    pos = comma + 1;
  }
  o.seed = f.seed;
  if (f.start.empty() != f.interval.empty()) {
    errors.push_back("--start and --interval go together (the simulated clock)");
  } else if (!f.start.empty()) {
    if (auto t = ParseTimeArg(f.start, SystemClock().WallMs() * 1'000'000); t.ok()) {
      o.start_ns = *t;
    } else {
      errors.push_back("--start: " + t.status().message());
    }
    if (auto d = ParseDuration(f.interval); !d.ok() || *d <= Millis(0)) {
      errors.push_back("--interval: must be a duration of at least 1ms, such as 1ms or 10s");
    } else {
      o.interval = *d;
    }
  }
  if (errors.empty()) return o;
  std::string msg;
  for (const auto& e : errors) msg += (msg.empty() ? "" : "\n") + e;
  return Status(Code::kInvalidArgument, msg);
}

// Prints each line of `msg` as an error; returns the usage exit code.
int Usage(const std::string& msg) {
  for (size_t pos = 0; pos < msg.size();) {
    size_t end = std::min(msg.find('\n', pos), msg.size());
    std::cerr << "verge-devsim: " << msg.substr(pos, end - pos) << "\n";
    pos = end + 1;
  }
  return 2;
}

int Main(int argc, char** argv) {
  CLI::App app{"verge-devsim: simulated devices over HTTP, MQTT and Modbus TCP", "verge-devsim"};
  app.require_subcommand(0, 1);
  app.fallthrough();  // --log-level also after the subcommand
  std::string log_level = "info";
  bool version = false;
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error (stderr)")
      ->capture_default_str();
  app.add_flag("--version", version, "Print the version and exit");

  auto* http_cmd = app.add_subcommand("http", "POST readings to an HTTP endpoint (node /data)");
  LoadFlags http_flags;
  std::string url = "http://127.0.0.1:7480/data", http_timeout = "5s";
  size_t connections = 0;
  http_cmd->add_option("--url", url, "Endpoint, http://HOST:PORT/PATH")->capture_default_str();
  http_cmd->add_option("--timeout", http_timeout, "Connect and request timeout")
      ->capture_default_str();
  http_cmd->add_option("--connections", connections,
                       "Keep-alive connections shared by the devices (default: one per device, "
                       "at most 8)");
  AddLoadFlags(http_cmd, http_flags);

  auto* mqtt_cmd = app.add_subcommand("mqtt", "Publish readings to devices/<NAME>/telemetry");
  LoadFlags mqtt_flags;
  std::string broker = "127.0.0.1:1883";
  int qos = 1;
  mqtt_cmd->add_option("--broker", broker, "MQTT broker HOST:PORT")->capture_default_str();
  mqtt_cmd->add_option("--qos", qos, "0 or 1 (1: PUBACKs count as accepted)")
      ->capture_default_str();
  AddLoadFlags(mqtt_cmd, mqtt_flags);

  auto* modbus_cmd = app.add_subcommand("modbus", "Serve simulated registers over Modbus TCP");
  std::string listen = "127.0.0.1:5020", update = "100ms";
  int modbus_devices = 1;
  uint64_t modbus_seed = 1;
  bool print_map = false;
  modbus_cmd->add_option("--listen", listen, "HOST:PORT (port 0: any free port)")
      ->capture_default_str();
  modbus_cmd->add_option("--devices", modbus_devices, "Simulated devices, unit ids 1..N")
      ->capture_default_str();
  modbus_cmd->add_option("--seed", modbus_seed, "Seed of the simulated signals")
      ->capture_default_str();
  modbus_cmd->add_option("--update", update, "How often the registers change")
      ->capture_default_str();
  modbus_cmd->add_flag("--print-map", print_map, "Print the register map as JSON and exit");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (version) {
    std::cout << "verge-devsim " << VERGE_VERSION << "\n";
    return 0;
  }
  if (app.get_subcommands().empty()) {
    std::cerr << app.help();
    return 2;
  }
  if (!IsLogLevel(log_level)) return Usage("--log-level: unknown level \"" + log_level + "\"");

  if (modbus_cmd->parsed()) {
    std::vector<std::string> errors;
    if (modbus_devices < 1 || modbus_devices > 247) errors.push_back("--devices must be 1..247");
    ModbusOptions o;
    o.devices = modbus_devices;
    o.seed = modbus_seed;
    if (auto hp = http::SplitHostPort(listen); hp.ok()) {
      o.host = hp->first;
      o.port = hp->second;
    } else {
      errors.push_back("--listen: " + hp.status().message());
    }
    if (auto d = ParseDuration(update); !d.ok() || *d <= Millis(0)) {
      errors.push_back("--update: must be a positive duration such as 100ms");
    } else {
      o.update = *d;
    }
    if (!errors.empty()) {
      for (auto& e : errors) Usage(e);
      return 2;
    }
    if (print_map) {
      std::cout << ModbusMapJson(o.devices).dump(2) << std::endl;
      return 0;
    }
    if (Status st = SetupLogging(log_level); !st.ok()) return Usage(st.message());
    PrepareSignals();
    return RunModbus(o);
  }

  const bool is_http = http_cmd->parsed();
  auto load = ToLoadOptions(is_http ? http_flags : mqtt_flags);
  if (!load.ok()) return Usage(load.status().message());
  if (Status st = SetupLogging(log_level); !st.ok()) return Usage(st.message());
  if (is_http) {
    HttpOptions o;
    o.load = std::move(load).value();
    auto target = ParseHttpUrl(url);
    if (!target.ok()) return Usage("--url: " + target.status().message());
    o.target = *target;
    auto timeout = ParseDuration(http_timeout);
    if (!timeout.ok() || *timeout <= Millis(0)) return Usage("--timeout: must be positive");
    o.timeout = *timeout;
    o.connections = connections > 0 ? connections : std::min<size_t>(o.load.devices.size(), 8);
    PrepareSignals();
    return RunHttp(o);
  }
  MqttOptions o;
  o.load = std::move(load).value();
  auto hp = http::SplitHostPort(broker);
  if (!hp.ok()) return Usage("--broker: " + hp.status().message());
  o.host = hp->first;
  o.port = 0;
  auto [end, ec] =
      std::from_chars(hp->second.data(), hp->second.data() + hp->second.size(), o.port);
  if (ec != std::errc() || o.port < 1 || o.port > 65535) return Usage("--broker: bad port");
  if (qos != 0 && qos != 1) return Usage("--qos must be 0 or 1");
  o.qos = qos;
  PrepareSignals();
  return RunMqtt(o);
}

}  // namespace
}  // namespace verge::devsim

int main(int argc, char** argv) { return verge::devsim::Main(argc, argv); }
