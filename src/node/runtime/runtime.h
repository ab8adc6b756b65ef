// Runtime: how the node runs one workload (one replica of an app), whatever its kind. Three
// implementations sit behind it: native processes (native.h), OCI containers through runc or
// crun (oci.h), and Lua functions (function.h). The AppManager (node/apps.h) drives them: it
// starts, polls, probes, restarts with backoff and stops workloads, and persists each one's
// Handle so that after an agent restart it can re-adopt what still runs and never start a
// second copy.
//
// Every workload has its own directory (WorkloadSpec::dir) which the runtime owns:
//   DIR/log/output.log     stdout and stderr, appended (rotated by LogRotator, log_files.h)
//   DIR/config/            the app's config files
//   DIR/exit               written by the workload's supervisor when it ends (native, OCI)
// and resource limits are enforced by a cgroup named after the workload under the node's
// cgroup parent (cgroup v2, or the v1 hierarchies where the machine has only those).
//
// Thread-safety: implementations are thread-safe; the AppManager calls them from its one
// thread, and Exec (probes) from others.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace verge::node::runtime {

enum class Kind { kNative, kContainer, kFunction };
std::string_view KindName(Kind k);

struct ConfigFile {
  std::string path;  // relative to the config mount, no "..", e.g. "app.yaml" or "tls/ca.pem"
  std::string content;
  uint32_t mode = 0644;
};

struct Volume {
  std::string name;
  std::string mount_path;  // where the app sees it (containers; native: see native.h)
  std::string host_path;   // the directory on the node (created if missing)
  bool read_only = false;
};

struct Port {
  std::string name;
  uint32_t port = 0;  // on the node's network (workloads share the host network by default)
  std::string protocol = "tcp";  // tcp | udp
};

struct WorkloadSpec {
  // Unique on the node and stable across restarts of the agent: "<app>-<replica>". Names the
  // cgroup, the container and the directory. [a-z0-9-], at most 63 characters.
  std::string id;
  std::string app;
  std::string version;
  Kind kind = Kind::kNative;
  // The workload's directory (see above); the runtime creates it.
  std::string dir;

  // native: argv of the process (argv[0] absolute, or relative to `artifact_dir`).
  // container: replaces the image's entrypoint + cmd when not empty.
  std::vector<std::string> command;
  // native: the unpacked artifact (an executable or a tarball's contents), "" for a command
  // already on the node; container: the OCI image archive (docker-archive or oci-layout tar);
  // function: the Lua script.
  std::string artifact;
  std::map<std::string, std::string> env;
  std::vector<ConfigFile> config;
  std::string config_mount = "/config";  // where containers see DIR/config
  std::vector<Volume> volumes;
  std::vector<Port> ports;
  // Own network namespace (loopback only) instead of the host's.
  bool isolated_network = false;

  uint64_t cpu_millicores = 0;  // 0: no limit
  uint64_t memory_mb = 0;       // 0: no limit

  // function: the entry point the script defines, and per-call limits.
  std::string handler = "handle";
  uint64_t max_instructions = 10'000'000;
  uint64_t function_memory_mb = 16;
};

// What the runtime needs to find a workload again after the agent restarted. Persisted by the
// AppManager as given (opaque to it).
struct Handle {
  std::string id;
  Kind kind = Kind::kNative;
  int64_t pid = 0;           // the workload's supervisor on the host (native, OCI)
  uint64_t start_time = 0;   // /proc/PID/stat starttime, so a reused pid is not mistaken
  std::string cgroup;        // relative cgroup path, the same under every hierarchy
  std::string container_id;  // OCI
  std::string dir;
};

struct ExitInfo {
  int exit_code = -1;  // -1: killed by a signal, or unknown
  int signal = 0;
  bool oom_killed = false;  // the cgroup's memory limit killed it
  std::string message;      // for status: "exit code 3", "killed by SIGKILL (out of memory)"
};

struct Observed {
  bool running = false;
  std::optional<ExitInfo> exit;  // set once it ended
};

struct Usage {
  uint64_t cpu_usage_ns = 0;  // cumulative
  uint64_t memory_bytes = 0;
  uint64_t memory_limit_bytes = 0;  // 0: none
  uint64_t oom_kills = 0;
};

class Runtime {
 public:
  virtual ~Runtime() = default;
  virtual Kind kind() const = 0;
  // Whether this runtime can work on this machine, and why not ("no OCI runtime: runc not
  // found", "crun refuses a hybrid cgroup layout").
  virtual Status Available() const = 0;

  // Starts the workload; returns once it runs (or failed to start, with the reason).
  virtual Result<Handle> Start(const WorkloadSpec& spec) = 0;
  // SIGTERM to the workload, SIGKILL after `grace`, then removes its cgroup (and container).
  // Ok if it had already ended.
  virtual Status Stop(const Handle& h, std::chrono::milliseconds grace) = 0;
  virtual Result<Observed> Poll(const Handle& h) = 0;
  // Takes over a workload started by an earlier agent process: true if it still runs (and is
  // what the handle says, not a reused pid). False means it ended: Poll then says how, and
  // Stop cleans up.
  virtual Result<bool> Adopt(const Handle& h) = 0;
  virtual Result<Usage> GetUsage(const Handle& h) = 0;
  // Runs argv inside the workload (its namespaces, its cgroup) for an exec health check.
  // Returns the exit code; kDeadlineExceeded after `timeout` (the command is killed).
  virtual Result<int> Exec(const Handle& h, const std::vector<std::string>& argv,
                           std::chrono::milliseconds timeout) = 0;
};

}  // namespace verge::node::runtime
