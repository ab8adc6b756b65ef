// NativeRuntime: runs a workload as a plain process, sandboxed with namespaces and a cgroup.
//
// Start() prepares DIR (log/, config/ with the spec's files), creates the workload's cgroup
// with its limits (cgroup.h), and clones a supervisor into new PID, mount, IPC and UTS
// namespaces (and a network namespace with only an "up" loopback when isolated_network). The
// supervisor is pid 1 there: it makes all mounts private, mounts a fresh /proc, sets the
// hostname to the workload id and, once the agent has put it into the cgroup, forks the
// command. The command runs as an unprivileged user (default "nobody") with no_new_privs, its
// own process group, stdin /dev/null, stdout+stderr appended to DIR/log/output.log (opened by
// the workload, so output survives the agent), cwd DIR, and the environment spec.env plus
// VERGE_APP, VERGE_WORKLOAD, VERGE_CONFIG_DIR (=DIR/config) and defaults for PATH and HOME.
// The supervisor reaps every process of the namespace, forwards SIGTERM, SIGINT, SIGHUP and
// SIGQUIT to the command's process group, and when the command ends writes DIR/exit
// ("code=N\nsignal=S\n", atomically) and exits, which makes the kernel kill whatever the
// command left behind. Workloads are not tied to the agent (no parent-death signal): they keep
// running while the agent restarts, and Adopt() takes them over by pid, /proc start time and
// cgroup membership.
//
// Volumes of native workloads: host_path is created (owned by the workload's user) and named
// in the environment as VERGE_VOLUME_<NAME> (upper case, '-' → '_'); read_only volumes are
// bind-mounted read-only onto themselves inside the workload's mount namespace. mount_path is
// for containers and is ignored here.
//
// The agent is multi-threaded, so between clone and exec the children call only
// async-signal-safe functions: every string, array, id and descriptor is prepared before
// cloning, and the children are made with the raw clone system call (no atfork handlers, no
// allocator locks). Exec failures (no such file, not executable, bad format) come back through
// a close-on-exec pipe and fail Start() with the errno.
//
// Requires root (namespaces, cgroups, changing user) and a cgroup layout CgroupManager
// understands; Available() says what is missing.
//
// Thread-safety: thread-safe; the runtime keeps no per-workload state (everything is in the
// Handle, the cgroup and DIR), so a second instance (a restarted agent) sees what the first
// one started.
#pragma once

#include <chrono>
#include <set>
#include <string>

#include "node/runtime/cgroup.h"
#include "node/runtime/runtime.h"

namespace verge::node::runtime {

struct NativeOptions {
  // Below the agent's own cgroup; the agent uses "verge/<node-name>" so that agents sharing a
  // machine never meet.
  std::string cgroup_parent = "verge";
  // The unprivileged user workloads run as.
  std::string user = "nobody";
  // Stop() with a negative grace uses this.
  std::chrono::milliseconds stop_grace{10000};
  // pids.max of each workload where the pids controller exists (0: no limit): a fork bomb stays
  // inside its workload.
  uint64_t pids_max = 4096;
  // How long Start() waits for the supervisor to report that the command was executed.
  std::chrono::milliseconds start_timeout{10000};
  CgroupPaths cgroup_paths;  // tests only
};

class NativeRuntime : public Runtime {
 public:
  explicit NativeRuntime(NativeOptions options = {});

  Kind kind() const override { return Kind::kNative; }
  Status Available() const override;
  Result<Handle> Start(const WorkloadSpec& spec) override;
  Status Stop(const Handle& h, std::chrono::milliseconds grace) override;
  Result<Observed> Poll(const Handle& h) override;
  Result<bool> Adopt(const Handle& h) override;
  Result<Usage> GetUsage(const Handle& h) override;
  Result<int> Exec(const Handle& h, const std::vector<std::string>& argv,
                   std::chrono::milliseconds timeout) override;

  // Kills the processes of, and removes, every workload cgroup under the parent that is not in
  // `keep_cgroups` (Handle::cgroup values). The agent calls it at start with the handles it
  // adopted, so that a workload is never running twice.
  Status KillOrphans(const std::set<std::string>& keep_cgroups);

  // The cgroups of this runtime (tests read limits from it); null when Available() fails.
  const CgroupManager* cgroups() const { return cgroups_.ok() ? &*cgroups_ : nullptr; }

 private:
  Status CheckHandle(const Handle& h) const;

  NativeOptions options_;
  Result<CgroupManager> cgroups_;
};

}  // namespace verge::node::runtime
