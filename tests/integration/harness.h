// Test harness for integration and fault tests: starts the real verge-cloud and verge-node
// binaries on loopback with port 0 and temporary data dirs, and polls for state with a
// deadline instead of sleeping. Thread-safety: one test thread.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <csignal>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/https_client.h"

namespace verge::testing {

std::string BinDir();

// A directory removed (recursively) when the test ends.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A child process with stdout and stderr to a log file. Killed (SIGKILL) if still running when
// destroyed. With `netns` (a name under /run/netns), the child joins that network namespace
// before it executes argv; it exits with status 126 if it cannot.
class Process {
 public:
  Process(std::vector<std::string> argv, std::string log_path, std::string netns = "");
  ~Process();
  Process(const Process&) = delete;
  pid_t pid() const { return pid_; }
  bool Running();
  void Signal(int sig);
  // Waits for exit; returns the exit code (128+signal if killed), or nullopt on timeout.
  std::optional<int> Wait(std::chrono::milliseconds timeout);
  std::string Log() const;

 private:
  pid_t pid_ = -1;
  std::optional<int> exit_code_;
  std::string log_path_;
};

// Polls `pred` every 50 ms until it is true or `timeout` passes.
bool Eventually(const std::function<bool()>& pred,
                std::chrono::milliseconds timeout = std::chrono::seconds(30));

// A free TCP port on 127.0.0.1 (bound and released; for tests that must know a port before
// the server starts).
int FreePort();

class Cloud {
 public:
  // Extra flags are appended, e.g. {"--degraded-after", "1s"}. With `netns` the cloud runs in
  // that network namespace, and its addresses are only reachable from there (see
  // tests/fault/netlab.h for calling Api() from inside it).
  Cloud(const TempDir& tmp, std::vector<std::string> flags, std::string data_subdir = "cloud",
        std::string api_listen = "127.0.0.1:0", std::string link_listen = "127.0.0.1:0",
        std::string netns = "");
  ~Cloud();

  void Stop(int sig = SIGTERM);
  Process& process() { return *proc_; }
  const std::string& data_dir() const { return data_dir_; }
  const std::string& api() const { return api_; }
  const std::string& link() const { return link_; }
  std::string bootstrap_token() const;
  std::string admin_token() const;
  std::string ca_pem() const;

  // Calls the REST API with the admin token (or `token` if given).
  Result<http::Response> Api(const std::string& method, const std::string& path,
                             const std::string& body = "", std::optional<std::string> token = {});
  nlohmann::json Nodes();
  std::optional<nlohmann::json> Node(const std::string& name);
  std::string StatusOf(const std::string& name);
  std::vector<std::string> EventTypes(const std::string& name);

 private:
  std::string data_dir_;
  std::string api_;
  std::string link_;
  std::unique_ptr<Process> proc_;
};

struct NodeOptions {
  std::string name;
  std::string region;
  std::string labels;  // k=v,k=v
  std::string type = "gateway";
  std::string heartbeat = "300ms";
  std::string token;     // empty: no --token flag
  std::string data_dir;  // empty: tmp/<name>
  std::vector<std::string> extra;
  std::string netns;  // empty: this process's network namespace
};

std::unique_ptr<Process> StartNode(const TempDir& tmp, const std::string& cloud_link,
                                   const NodeOptions& o);

// A plain HTTP/1.1 request (the node's local API), one connection per call. Errors when the
// connection fails or breaks before a complete answer.
Result<http::Response> PlainHttp(const std::string& address, const std::string& method,
                                 const std::string& target, const std::string& body = "",
                                 std::map<std::string, std::string> headers = {});

// The local API address a node wrote to DATA/listen.json, once it has.
std::optional<std::string> NodeHttpAddress(const std::string& node_data_dir);

// Declares a device on `node` through the cloud's API (`extra`: more fields of the body);
// returns its token, or "" after a failed expectation.
std::string AddDevice(Cloud& cloud, const std::string& name, const std::string& node,
                      const nlohmann::json& extra = nlohmann::json::object());

// Runs vergectl against `cloud` (its vergectl.yaml); its output when it exits 0, else fails
// the test and returns "".
std::string Ctl(Cloud& cloud, const TempDir& tmp, std::vector<std::string> args);
// The same with -o json, parsed (null when it failed or printed no JSON).
nlohmann::json CtlJson(Cloud& cloud, const TempDir& tmp, std::vector<std::string> args);

// The node's local token (DATA/data/local.token), for its local API.
std::string LocalToken(const std::string& node_data_dir);

// Writes a node config file that makes reconnects fast (tests restart clouds).
std::string FastReconnectConfig(const TempDir& tmp, const std::string& name);

// A running `verge-devsim modbus` and the address it serves.
struct ModbusSim {
  std::unique_ptr<Process> proc;
  std::string host;
  int port = 0;
};

// Starts `verge-devsim modbus --listen LISTEN --devices N --update 50ms`; throws if it does
// not start.
ModbusSim StartModbusSim(const TempDir& tmp, const std::string& listen, int devices,
                         const std::string& log);

// The register map `verge-devsim modbus --print-map --devices N` prints.
nlohmann::json ModbusSimMap(const TempDir& tmp, int devices);

}  // namespace verge::testing
