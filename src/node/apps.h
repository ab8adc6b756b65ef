// AppManager: runs the app replicas (workloads) the desired state places on this node, through
// the runtimes (runtime/runtime.h), and keeps them healthy (docs/apps.md).
//
// One thread (verge-apps) owns every workload. Each tick it:
//   - reconciles with the latest desired workloads: starts new ones (fetching and verifying
//     their artifact first), replaces those whose revision changed, stops those that are gone;
//   - polls each one: a workload that ended is restarted after an exponential backoff
//     (backoff_initial doubling up to backoff_max, reset once it ran for backoff_reset), and
//     reported as crashloop once it failed crashloop_after times in a row;
//   - probes health (exec | http | tcp, after the initial delay, every period): failure_threshold
//     failures in a row make it unhealthy, and it is restarted; a workload is ready when it runs
//     and (if it has a health check) its last probe passed;
//   - samples resource usage from its cgroup.
// Probes run on this thread one after another, each bounded by its timeout.
//
// Workloads outlive the agent: each one's runtime Handle is kept in DIR/state.json, and Start
// re-adopts what still runs (and restarts what ended) instead of starting second copies; any
// process left in a workload cgroup that no handle accounts for is killed first. Stop leaves
// workloads running unless stop_on_exit is set.
//
// Thread-safety: thread-safe.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/duration.h"
#include "common/status.h"
#include "node/runtime/runtime.h"
#include "verge/v1/link.pb.h"

namespace verge::node {

// Where artifacts come from: the cloud (GET /v1/artifacts/SHA on the link address).
class ArtifactSource {
 public:
  virtual ~ArtifactSource() = default;
  // The artifact's bytes; the caller verifies the hash.
  virtual Result<std::string> Fetch(const std::string& sha256) = 0;
};

struct AppManagerOptions {
  std::string dir;            // DATA/apps: a directory per workload, and state.json
  std::string artifacts_dir;  // DATA/artifacts: verified artifacts by SHA-256
  std::string volumes_dir;    // DATA/volumes: volumes without a hostPath, per app
  Millis tick{200};
  Millis stop_grace{5'000};
  Millis backoff_initial{1'000};
  Millis backoff_max{300'000};
  Millis backoff_reset{60'000};
  uint32_t crashloop_after = 3;
  Millis usage_interval{5'000};
  bool stop_on_exit = false;
};

class AppManager {
 public:
  // `runtimes` by kind; a kind without one fails its workloads with a clear reason.
  AppManager(AppManagerOptions options, const Clock& clock,
             std::map<runtime::Kind, runtime::Runtime*> runtimes, ArtifactSource* artifacts);
  ~AppManager();
  AppManager(const AppManager&) = delete;
  AppManager& operator=(const AppManager&) = delete;

  Status Start();
  void Stop();

  // The workloads the node should run now (the desired state's).
  void SetDesired(std::vector<v1::Workload> workloads);
  std::vector<v1::WorkloadStatus> Statuses() const;
  // Increases whenever something a status shows (not usage) changes.
  uint64_t status_version() const { return status_version_.load(); }
  // Called (from the apps thread) after a status change; keep it short.
  void SetOnChange(std::function<void()> fn) { on_change_ = std::move(fn); }

  struct LogPiece {
    std::string workload;
    std::string text;
    uint64_t offset = 0;  // position in all the output the workload ever wrote, after `text`
  };
  // Each replica of `app` that ran here: the last `tail` lines (0: all kept), or, for a
  // workload in `since`, what it wrote after that position (at most 1 MiB a call).
  // Reads files only, so it may be called from any thread.
  Result<std::vector<LogPiece>> Logs(const std::string& app, uint32_t tail,
                                     const std::map<std::string, uint64_t>& since) const;

 private:
  struct Entry;
  void Run();
  void Reconcile(int64_t now);
  void Supervise(Entry& e, int64_t now);
  void StartWorkload(Entry& e, int64_t now);
  void StopWorkload(Entry& e);
  void Ended(Entry& e, int64_t now, const std::string& why);
  bool Probe(Entry& e);
  Result<runtime::WorkloadSpec> SpecFor(const v1::Workload& w);
  Result<std::string> EnsureArtifact(const std::string& sha256);
  void PersistHandles();
  void Changed();
  void CollectArtifacts();

  AppManagerOptions options_;
  const Clock& clock_;
  std::map<runtime::Kind, runtime::Runtime*> runtimes_;
  ArtifactSource* artifacts_;
  std::function<void()> on_change_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;                             // GUARDED_BY(mu_)
  std::optional<std::vector<v1::Workload>> desired_;  // GUARDED_BY(mu_): newest not yet taken
  std::vector<v1::WorkloadStatus> statuses_;          // GUARDED_BY(mu_)
  std::atomic<uint64_t> status_version_{0};

  // Owned by the apps thread.
  std::map<std::string, std::unique_ptr<Entry>> entries_;
  std::thread thread_;
  bool started_ = false;
};

}  // namespace verge::node
