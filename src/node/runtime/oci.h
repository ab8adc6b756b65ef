// OciRuntime: runs a workload as an OCI container through runc (or crun).
//
// Start() unpacks the image archive once per image (oci_image.h) into IMAGES/<sha256>/rootfs,
// which every container of that image shares read-only (root.readonly): nothing is copied per
// container and a container cannot change its image. What a container may write: a tmpfs at
// /tmp and /run, its volumes, and nothing else. (runc creates missing mount points such as
// /config in the shared rootfs before making it read-only; those empty directories are the
// only change an image ever sees.) Start() then writes DIR/bundle/config.json, a complete OCI
// runtime spec generated here: the process is spec.command or the image's entrypoint + cmd,
// with the image's env + spec.env + VERGE_APP, VERGE_WORKLOAD and VERGE_CONFIG_DIR; it runs as
// the image's user, or uid 65534 ("nobody") when the image names none; no_new_privileges,
// Docker's default capabilities (bounding set only for non-root users), RLIMIT_NOFILE 65536,
// namespaces pid, mount, ipc and uts (and network only for isolated_network: the host network
// by default), hostname = workload id, /proc, /dev, /dev/pts, /dev/shm, /dev/mqueue, /sys
// read-only, /etc/hosts and /etc/resolv.conf, DIR/config read-only at spec.config_mount, the
// volumes as bind mounts, runc's default masked and read-only paths, and limits (memory with
// swap equal to it, so no swap; cpu quota from millicores; pids).
//
// The container's cgroup is the workload's cgroup of CgroupManager (cgroup.h): "<parent>/<id>"
// below the agent's own cgroup, the same place native workloads use, so usage and OOM counts
// come from there (GetUsage reads the cgroup, not `runc events`, which spawns no process per
// sample and works with crun too).
//
// Lifetime: each container has a supervisor, started with posix_spawn as a new session from
// /proc/self/exe under the name "verge-oci-supervisor" (a constructor in oci.cc recognises
// that name and runs the supervisor instead of main(): the agent's binary re-executed, so it
// holds none of the agent's memory). The supervisor is a child subreaper; it runs
// `runc run --detach`, whose container init then becomes its child, reports readiness to Start()
// through a pipe, waits for the init, records the exit in DIR/exit (the native runtime's
// format: "code=N\nsignal=S\noom_kills=K\n", written atomically), runs `runc delete --force`
// and exits. The container writes straight to DIR/log/output.log (O_APPEND; runc's own errors
// land there too and in DIR/bundle/runc.log). Nothing ties the supervisor or the container to
// the agent: killing the agent (even SIGKILL) leaves them running and a new agent Adopt()s
// them by the supervisor's pid and /proc start time and `runc state`.
//
// Requires root (rootless containers are not supported) and runc; crun works too, except on a
// hybrid cgroup layout (v1 controllers next to a cgroup2 mount), which crun refuses: runc is
// then preferred, and Available() says so when it is missing.
//
// Thread-safety: thread-safe; the runtime keeps no per-workload state (everything is in the
// Handle, DIR, the cgroup and runc's state root), so a second instance (a restarted agent) sees
// what the first one started. Image unpacking is serialised inside one instance.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "node/runtime/cgroup.h"
#include "node/runtime/oci_image.h"
#include "node/runtime/runtime.h"

namespace verge::node::runtime {

struct OciOptions {
  // The OCI runtime binary; "" searches PATH (then /usr/local/sbin, /usr/sbin, /sbin) for runc,
  // then crun.
  std::string runtime_path;
  // Unpacked images (IMAGES/<sha256>/rootfs), shared by all containers of an image.
  std::string images_dir = "/var/lib/verge/images";
  // Below the agent's own cgroup (see cgroup.h); unique per agent on a machine.
  std::string cgroup_parent = "verge";
  // runc --root: the runtime's container state. Unique per agent on a machine, since container
  // ids are workload ids.
  std::string state_root = "/run/verge/oci";
  UnpackLimits unpack_limits;
  // pids.limit of each container (0: none): a fork bomb stays inside its container.
  uint64_t pids_max = 4096;
  // How long Start() waits for `runc run` to start the container (image unpacking not counted).
  std::chrono::milliseconds start_timeout{60000};
  CgroupPaths cgroup_paths;  // tests only
};

// What BuildRuntimeSpec needs besides the workload.
struct OciSpecInput {
  std::string rootfs;
  ImageConfig image;
  ImageUser user;
  std::string cgroups_path;  // linux.cgroupsPath as runc should see it
  std::string hosts_file;    // bind-mounted at /etc/hosts ("" : none)
  std::string resolv_file;   // bind-mounted at /etc/resolv.conf ("" : none)
  bool limit_swap = true;    // memory.swap = memory.limit (false where swap is not accounted)
  uint64_t pids_max = 0;
  uint64_t nofile = 65536;  // RLIMIT_NOFILE, soft and hard
};

// The OCI runtime spec (config.json) of a container, as JSON text. Fails on a workload it
// cannot express (no command, bad mount paths).
Result<std::string> BuildRuntimeSpec(const WorkloadSpec& spec, const OciSpecInput& in);

class OciRuntime : public Runtime {
 public:
  explicit OciRuntime(OciOptions options = {});

  Kind kind() const override { return Kind::kContainer; }
  Status Available() const override;
  Result<Handle> Start(const WorkloadSpec& spec) override;
  Status Stop(const Handle& h, std::chrono::milliseconds grace) override;
  Result<Observed> Poll(const Handle& h) override;
  Result<bool> Adopt(const Handle& h) override;
  Result<Usage> GetUsage(const Handle& h) override;
  Result<int> Exec(const Handle& h, const std::vector<std::string>& argv,
                   std::chrono::milliseconds timeout) override;

  // The cgroups of this runtime (tests read limits from it); null when they cannot be used.
  const CgroupManager* cgroups() const { return cgroups_.ok() ? &*cgroups_ : nullptr; }
  // The runtime binary in use; "" until Available() succeeded.
  std::string binary() const;

 private:
  Result<std::string> Binary() const;
  Status CheckHandle(const Handle& h) const;
  // `runc state`: "running", "stopped", ...; nullopt when the container does not exist.
  Result<std::optional<std::string>> State(const std::string& binary, const std::string& id) const;
  void Delete(const std::string& binary, const std::string& id) const;
  Result<Handle> Launch(const WorkloadSpec& spec, const std::string& binary,
                        const std::string& rel);

  OciOptions options_;
  Result<CgroupManager> cgroups_;
  std::mutex unpack_mu_;
  mutable std::mutex available_mu_;
  mutable std::optional<Status> available_;
  mutable std::string binary_;
};

}  // namespace verge::node::runtime
