// node::Agent: the composition root of verge-node. It locks the data dir, loads the node's
// identity (joining first if it has none, retrying while the cloud is unreachable), and runs
// the link on its own I/O thread. Later modules (ingest, rules, runtime) are built here too,
// in order, and stopped in reverse.
// Thread-safety: Start/Stop from one thread; status() from any.
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "common/clock.h"
#include "common/fs.h"
#include "common/sysinfo.h"
#include "node/artifact_source.h"
#include "node/config.h"
#include "node/data_plane.h"
#include "node/identity.h"
#include "node/link.h"
#include "node/runtime/function.h"
#include "node/runtime/native.h"
#include "node/runtime/oci.h"

namespace verge::node {

class Agent {
 public:
  // `on_fatal` is called (from the agent's thread) when the agent cannot go on without a
  // person acting: bad token, name taken, node revoked. main() uses it to exit.
  Agent(NodeConfig config, const Clock& clock, std::function<void(const Status&)> on_fatal);
  ~Agent();

  // Validates and locks the data dir, loads or prepares the identity, starts the agent thread.
  Status Start();
  void Stop();

  std::optional<LinkStats> link_stats() const;
  DataPlane* data_plane() { return data_.get(); }
  // The fatal error, if any.
  Status fatal() const;

 private:
  void RunJoinAndLink();
  Status ParseBootstrapTokenCheck();
  v1::Hello MakeHello();
  std::optional<v1::Resources> SampleUsage();

  NodeConfig config_;
  const Clock& clock_;
  std::function<void(const Status&)> on_fatal_;
  std::optional<DirLock> lock_;
  std::optional<NodeIdentity> identity_;  // written under mu_ once joined
  std::optional<NodeIdentity> IdentityCopy() const;

  // Declared before the data plane, which uses them, so that they outlive it.
  std::unique_ptr<runtime::NativeRuntime> native_;
  std::unique_ptr<runtime::OciRuntime> oci_;
  std::unique_ptr<runtime::FunctionRuntime> functions_;
  std::unique_ptr<CloudArtifactSource> artifacts_;
  std::unique_ptr<DataPlane> data_;
  std::unique_ptr<boost::asio::io_context> ioc_;
  std::unique_ptr<LinkClient> link_;
  // The data plane sends from its own threads; the link appears only after the join.
  std::atomic<LinkClient*> link_ptr_{nullptr};
  std::thread thread_;
  UsageSampler usage_;
  std::optional<v1::Resources> last_usage_sent_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // GUARDED_BY(mu_)
  Status fatal_;           // GUARDED_BY(mu_)
};

}  // namespace verge::node
