// cloud::Server: the composition root of verge-cloud. It builds every service in order —
// data dir lock, store, identity (CA), tokens, registry, telemetry writer, link, devices,
// rules, API, network — and stops them in reverse. Nothing else in the cloud constructs services or
// holds globals. Threads: the network's I/O threads, the telemetry writer's two (commits and acks,
// compaction), and one maintenance thread (status sweeps, write-behind flushes, retention).
// Thread-safety: Start/Stop from one thread; accessors are for tests and are thread-safe.
#pragma once

#include <condition_variable>
#include <memory>
#include <optional>
#include <thread>

#include "cloud/api.h"
#include "cloud/apps.h"
#include "cloud/artifacts.h"
#include "cloud/config.h"
#include "cloud/devices.h"
#include "cloud/identity.h"
#include "cloud/link_service.h"
#include "cloud/net.h"
#include "cloud/registry.h"
#include "cloud/rules.h"
#include "cloud/store_sqlite.h"
#include "cloud/telemetry.h"
#include "cloud/tokens.h"
#include "common/fs.h"

namespace verge::cloud {

class Server {
 public:
  Server(CloudConfig config, const Clock& clock);
  ~Server();

  // On first start creates DATA/{verge.db,pki/,admin.token,bootstrap.token,vergectl.yaml};
  // always writes DATA/vergectl.yaml and DATA/listen.json with the bound addresses.
  Status Start();
  void Stop();

  const std::string& api_address() const { return api_address_; }
  const std::string& link_address() const { return link_address_; }
  Registry& registry() { return *registry_; }
  Store& store() { return *store_; }

 private:
  Status WriteClientFiles();
  static std::string ClientAddress(const std::string& listen_address);
  void Maintenance();
  // Deletes artifacts no app revision names, pushed more than an hour ago.
  void CollectArtifacts();

  CloudConfig config_;
  const Clock& clock_;
  std::optional<DirLock> lock_;
  std::unique_ptr<SqliteStore> store_;
  std::optional<CloudIdentity> identity_;
  std::unique_ptr<TokenService> tokens_;
  std::unique_ptr<Registry> registry_;
  std::unique_ptr<TelemetryWriter> telemetry_;
  std::unique_ptr<LinkService> link_;
  std::unique_ptr<DeviceService> devices_;
  std::unique_ptr<RuleService> rules_;
  std::unique_ptr<ArtifactStore> artifacts_;
  std::unique_ptr<AppService> apps_;
  std::unique_ptr<Api> api_;
  std::unique_ptr<JoinService> join_;
  std::unique_ptr<NetServer> net_;
  std::string admin_token_;
  std::string api_address_;
  std::string link_address_;

  std::thread maintenance_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // GUARDED_BY(mu_)
};

}  // namespace verge::cloud
