// CgroupManager: the cgroups that hold the node's workloads and enforce their limits.
//
// It works on both layouts Linux has:
//   - cgroup v2 (unified): /sys/fs/cgroup/cgroup.controllers exists; one tree, controllers are
//     enabled per level through cgroup.subtree_control.
//   - cgroup v1 (or hybrid, v1 controllers next to an empty v2 tree): one tree per controller
//     under /sys/fs/cgroup/<controller> (found through /proc/self/mountinfo); we use cpu,
//     cpuacct, memory and pids, wherever they are mounted (co-mounted ones count once).
// Workload cgroups live under `parent` RELATIVE to the agent's own cgroup in each tree (read
// from /proc/self/cgroup), e.g. "<own>/verge/<node-name>/<workload-id>", so that several agents
// on one machine (tests run several) never touch each other's workloads. The relative path
// "<parent>/<workload-id>" names a workload's cgroup in every tree; it is what Handle::cgroup
// holds.
//
// v2 "no internal processes": a cgroup that delegates controllers to children may hold no
// process itself. When the agent's own cgroup is not the root and writing its
// cgroup.subtree_control fails with EBUSY, the processes of that cgroup are moved into a leaf
// child "<own>/verge-agent" (what container runtimes do with their init cgroup); an agent that
// finds itself in "…/verge-agent" treats the level above as its own, so a restarted agent finds
// its workloads again.
//
// OOM kills: v2 memory.events "oom_kill"; v1 memory.oom_control "oom_kill" (kernel 4.13+).
// Kernels without that line get an estimate: memory.failcnt > 0 (the limit was hit) counts as
// one kill and CgroupUsage::oom_kills_estimated says so; callers should then believe it only
// when the process died of SIGKILL.
//
// Every error names the file and the errno. Thread-safety: immutable after Open(); all methods
// are const and safe to call from several threads (the kernel serialises the file operations).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace verge::node::runtime {

// Where the manager looks; tests point these at a fake tree.
struct CgroupPaths {
  std::string root = "/sys/fs/cgroup";
  std::string self_cgroup = "/proc/self/cgroup";
  std::string mountinfo = "/proc/self/mountinfo";
};

struct CgroupLimits {
  uint64_t cpu_millicores = 0;  // 0: no limit
  uint64_t memory_bytes = 0;    // 0: no limit (and no swap limit)
  uint64_t pids_max = 0;        // 0: no limit; ignored where the pids controller is missing
};

struct CgroupUsage {
  uint64_t cpu_usage_ns = 0;
  uint64_t memory_bytes = 0;
  uint64_t memory_limit_bytes = 0;  // 0: none
  uint64_t oom_kills = 0;
  bool oom_kills_estimated = false;  // v1 without "oom_kill" in memory.oom_control (see above)
};

class CgroupManager {
 public:
  // Detects the layout. `parent`: the path below the agent's own cgroup that holds the
  // workloads, e.g. "verge/node-a" (relative, no "." or ".." components). Creates nothing.
  static Result<CgroupManager> Open(const std::string& parent, const CgroupPaths& paths = {});

  bool v2() const { return v2_; }
  const std::string& parent() const { return parent_; }
  // "cgroup v1 (cpu,cpuacct: /sys/fs/cgroup/cpu,cpuacct/…; memory: …)" for status and logs.
  std::string Describe() const;
  // Whether a controller ("cpu", "cpuacct", "memory", "pids") is usable.
  bool HasController(std::string_view controller) const;

  // The relative cgroup of workload `id`: "<parent>/<id>".
  std::string PathOf(std::string_view id) const;
  // True when `rel` is "<parent>/<name>" with a plain name, so that a corrupted handle can never
  // make us kill or remove something else.
  bool Owns(std::string_view rel) const;
  // The directory of `rel` in the tree that holds `controller` ("" if no tree has it).
  std::string DirOf(std::string_view rel, std::string_view controller) const;
  // The cgroup.procs file of `rel` in every tree (writing a pid there moves the process in).
  std::vector<std::string> ProcsFiles(std::string_view rel) const;

  // Creates the cgroup in every tree (and the parent chain), then applies `limits`. An
  // existing cgroup is reused and its limits rewritten. REQUIRES: Owns(rel).
  Status Create(std::string_view rel, const CgroupLimits& limits) const;
  bool Exists(std::string_view rel) const;
  // Moves `pid` (and, on v1 cpu/memory, only that thread group) into `rel` in every tree.
  Status AddProcess(std::string_view rel, pid_t pid) const;
  // The processes in `rel`, over all trees, without duplicates. Empty if it does not exist.
  Result<std::vector<pid_t>> Pids(std::string_view rel) const;
  Result<CgroupUsage> Usage(std::string_view rel) const;
  // SIGKILLs every process in `rel` until none is left or `timeout` passed (processes may fork
  // while we kill: the loop reads the list again). v2 uses cgroup.kill where the kernel has it.
  Status KillAll(std::string_view rel, std::chrono::milliseconds timeout) const;
  // KillAll, then rmdir in every tree, retrying while the kernel still says EBUSY. Ok if it
  // does not exist.
  Status Remove(std::string_view rel, std::chrono::milliseconds timeout) const;
  // The workload cgroups under the parent (relative paths), in any tree.
  Result<std::vector<std::string>> Children() const;
  // Removes the parent chain's directories that are empty (for tests and node removal).
  Status RemoveParent() const;

 private:
  struct Tree {
    std::string mount;                     // where the hierarchy is mounted
    std::string own;                       // the agent's cgroup in it: mount + own path
    std::vector<std::string> controllers;  // the ones we use that this tree holds
  };
  CgroupManager() = default;
  const Tree* TreeOf(std::string_view controller) const;
  std::string Dir(const Tree& t, std::string_view rel) const;
  Status EnableV2Chain(std::string_view rel) const;
  Status WriteLimits(std::string_view rel, const CgroupLimits& limits) const;

  bool v2_ = false;
  std::string parent_;
  std::vector<Tree> trees_;
};

}  // namespace verge::node::runtime
