// The three modes of verge-devsim, each run to completion on the calling thread (the main
// thread, after PrepareSignals) and returning the process exit code: 0 ok, 1 runtime
// failure. Settings are validated by main before a mode starts.
#pragma once

#include <string>
#include <string_view>

#include "common/duration.h"
#include "common/status.h"
#include "devsim/run.h"

namespace verge::devsim {

struct HttpTarget {
  std::string host;
  std::string port;
  std::string path;  // with the query, as sent
};

// "http://HOST[:PORT][/PATH]"; the node's local listener is plain HTTP, so https is refused.
Result<HttpTarget> ParseHttpUrl(std::string_view url);

struct HttpOptions {
  HttpTarget target;
  Millis timeout{5000};    // connect, and each request/response exchange
  size_t connections = 1;  // keep-alive connections, one thread each; devices share them
  LoadOptions load;
};
// POSTs batches with "Authorization: Bearer TOKEN" over keep-alive connections.
int RunHttp(const HttpOptions& options);

struct MqttOptions {
  std::string host = "127.0.0.1";
  int port = 1883;
  int qos = 1;
  Millis connect_timeout{10'000};  // to wait for every device's CONNACK before sending
  LoadOptions load;
};
// One MQTT v5 connection per device (username NAME, password TOKEN), publishing JSON batches
// to devices/<NAME>/telemetry.
int RunMqtt(const MqttOptions& options);

struct ModbusOptions {
  std::string host = "127.0.0.1";
  std::string port = "5020";
  int devices = 1;  // unit ids 1..devices
  uint64_t seed = 1;
  Millis update{100};
};
// Serves ModbusMap() for each unit id until SIGINT/SIGTERM; prints "listening HOST:PORT".
int RunModbus(const ModbusOptions& options);

}  // namespace verge::devsim
