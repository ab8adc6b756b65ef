#include "cloud/server.h"

#include <spdlog/spdlog.h>
#include <yaml-cpp/yaml.h>

#include <nlohmann/json.hpp>

#include "cloud/telemetry_codec.h"
#include "common/bootstrap_token.h"

namespace verge::cloud {

Server::Server(CloudConfig config, const Clock& clock)
    : config_(std::move(config)), clock_(clock) {}

Server::~Server() { Stop(); }

Status Server::Start() {
  const std::string& dir = config_.data_dir;
  VERGE_RETURN_IF_ERROR(MakeDirs(dir));
  VERGE_ASSIGN_OR_RETURN(auto lock, DirLock::Acquire(dir));
  lock_.emplace(std::move(lock));

  VERGE_ASSIGN_OR_RETURN(store_, SqliteStore::Open(dir + "/verge.db"));
  VERGE_ASSIGN_OR_RETURN(auto identity, LoadOrCreateIdentity(dir, config_.tls_names));
  identity_.emplace(std::move(identity));

  tokens_ = std::make_unique<TokenService>(*store_, clock_, identity_->ca_fingerprint);
  VERGE_ASSIGN_OR_RETURN(auto new_admin, tokens_->EnsureAdminToken());
  std::string admin_path = dir + "/admin.token";
  if (new_admin) {
    VERGE_RETURN_IF_ERROR(WriteFileAtomic(admin_path, *new_admin + "\n", 0600));
    admin_token_ = *new_admin;
  } else {
    auto text = ReadFile(admin_path);
    if (!text.ok()) {
      return text.status().Wrap(
          "the admin token file is missing; it is needed to write vergectl.yaml");
    }
    admin_token_ = text->substr(0, text->find_first_of("\r\n"));
    if (!tokens_->CheckAdminToken(admin_token_)) {
      return Error(Code::kFailedPrecondition, "{} does not hold this cloud's admin token",
                   admin_path);
    }
  }

  VERGE_ASSIGN_OR_RETURN(auto created, store_->GetMeta("default_bootstrap_token"));
  if (!created) {
    VERGE_ASSIGN_OR_RETURN(auto tok, tokens_->Create(config_.bootstrap_token_ttl,
                                                     "default token created on first start"));
    VERGE_RETURN_IF_ERROR(WriteFileAtomic(dir + "/bootstrap.token", tok.token + "\n", 0600));
    VERGE_RETURN_IF_ERROR(store_->PutMeta("default_bootstrap_token", tok.record.id));
  }

  registry_ = std::make_unique<Registry>(
      *store_, clock_, RegistryOptions{config_.degraded_after, config_.offline_after});
  VERGE_RETURN_IF_ERROR(registry_->Load());
  telemetry_ = std::make_unique<TelemetryWriter>(*store_);
  link_ = std::make_unique<LinkService>(*registry_, *store_, *telemetry_, clock_);
  devices_ = std::make_unique<DeviceService>(*store_, *registry_, *link_, clock_);
  rules_ = std::make_unique<RuleService>(*store_, *registry_, *link_, clock_);
  artifacts_ = std::make_unique<ArtifactStore>(
      dir + "/artifacts", static_cast<uint64_t>(config_.max_artifact_mb) << 20);
  VERGE_RETURN_IF_ERROR(artifacts_->Open());
  apps_ = std::make_unique<AppService>(*store_, *registry_, *link_, clock_);
  // Label changes select rules: the registry tells the rule service (wired here, not in the
  // constructor, because the rule service needs the registry first).
  registry_->SetLabelsObserver(rules_.get());
  api_ = std::make_unique<Api>(*registry_, *tokens_, *link_, *devices_, *rules_, *apps_,
                               *artifacts_, *telemetry_, *store_, clock_);
  join_ = std::make_unique<JoinService>(*registry_, *tokens_, identity_->ca, config_.node_cert_days,
                                        artifacts_.get());

  NetServer::Options net_opts;
  net_opts.threads = config_.io_threads > 0
                         ? config_.io_threads
                         : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  // Nothing heard for longer than the offline silence: the node is gone; free the stream.
  net_opts.link_idle_timeout = config_.offline_after + Millis(10'000);
  net_opts.max_large_body_bytes = static_cast<size_t>(config_.max_artifact_mb) << 20;
  net_ = std::make_unique<NetServer>(net_opts, *link_);
  ServerTls api_tls{identity_->server_cert_pem, identity_->server_key_pem, ""};
  ServerTls link_tls{identity_->server_cert_pem, identity_->server_key_pem,
                     identity_->ca.cert_pem()};
  VERGE_ASSIGN_OR_RETURN(
      api_address_,
      net_->AddListener({config_.api_listen, api_tls,
                         [this](const http::Request& r) { return api_->Handle(r); }, false}));
  VERGE_ASSIGN_OR_RETURN(
      link_address_,
      net_->AddListener({config_.link_listen, link_tls,
                         [this](const http::Request& r) { return join_->Handle(r); }, true}));
  VERGE_RETURN_IF_ERROR(WriteClientFiles());
  api_->set_link_address(ClientAddress(link_address_));
  telemetry_->Start();
  net_->Start();
  maintenance_ = std::thread([this] { Maintenance(); });
  spdlog::info("verge-cloud {} serving API on https://{} and the link on {} (data in {})",
               VERGE_VERSION, api_address_, link_address_, dir);
  return Status::Ok();
}

// Clients on this machine reach a wildcard listener through loopback.
std::string Server::ClientAddress(const std::string& a) {
  if (a.starts_with("0.0.0.0:")) return "127.0.0.1:" + a.substr(8);
  if (a.starts_with("[::]:")) return "[::1]:" + a.substr(5);
  return a;
}

Status Server::WriteClientFiles() {
  auto client_addr = [](const std::string& a) { return ClientAddress(a); };
  YAML::Emitter y;
  y << YAML::BeginMap;
  y << YAML::Key << "server" << YAML::Value << "https://" + client_addr(api_address_);
  y << YAML::Key << "token" << YAML::Value << admin_token_;
  y << YAML::Key << "ca" << YAML::Value << YAML::Literal << identity_->ca.cert_pem();
  y << YAML::EndMap;
  VERGE_RETURN_IF_ERROR(
      WriteFileAtomic(config_.data_dir + "/vergectl.yaml", std::string(y.c_str()) + "\n", 0600));
  nlohmann::json listen = {{"api", client_addr(api_address_)},
                           {"link", client_addr(link_address_)},
                           {"pid", static_cast<int64_t>(getpid())}};
  return WriteFileAtomic(config_.data_dir + "/listen.json", listen.dump() + "\n", 0644);
}

void Server::CollectArtifacts() {
  auto referenced = apps_->ReferencedArtifacts();
  if (!referenced.ok()) {
    spdlog::error("collecting artifacts: {}", referenced.status().message());
    return;
  }
  auto removed = artifacts_->GarbageCollect(*referenced, clock_.WallMs() - 3600 * 1000);
  if (!removed.ok()) {
    spdlog::error("collecting artifacts: {}", removed.status().message());
  } else if (!removed->empty()) {
    spdlog::info("artifacts: removed {} that no app revision uses", removed->size());
  }
}

void Server::Maintenance() {
  int64_t sweep_ms = std::clamp<int64_t>(config_.degraded_after.count() / 10, 50, 1000);
  int64_t next_flush = clock_.SteadyMs() + config_.flush_interval.count();
  int64_t next_prune = clock_.SteadyMs();
  int64_t next_apps = clock_.SteadyMs() + config_.app_reconcile_interval.count();
  std::unique_lock lock(mu_);
  while (!stopping_) {
    cv_.wait_for(lock, std::chrono::milliseconds(sweep_ms));
    if (stopping_) break;
    lock.unlock();
    registry_->Sweep();
    int64_t now = clock_.SteadyMs();
    if (now >= next_flush) {
      if (auto st = registry_->Flush(); !st.ok())
        spdlog::error("writing registry: {}", st.message());
      next_flush = now + config_.flush_interval.count();
    }
    if (now >= next_apps) {
      apps_->Tick();
      next_apps = now + config_.app_reconcile_interval.count();
    }
    if (now >= next_prune) {
      CollectArtifacts();
      if (auto st = store_->PruneEvents(clock_.WallMs() - config_.event_retention.count());
          !st.ok()) {
        spdlog::error("pruning node events: {}", st.message());
      }
      // Whole chunks, which never cross an hour: what goes is at least `retention` old.
      int64_t cutoff_ns = (clock_.WallMs() - config_.telemetry_retention.count()) * 1'000'000;
      if (cutoff_ns > 0) {
        auto pruned = store_->PruneTelemetry(ChunkBucket(cutoff_ns));
        if (!pruned.ok()) {
          spdlog::error("pruning telemetry: {}", pruned.status().message());
        } else if (*pruned > 0) {
          spdlog::info("telemetry retention: removed {} chunks", *pruned);
        }
      }
      // Alerts are kept as long as readings.
      auto alerts = store_->PruneAlerts(clock_.WallMs() - config_.telemetry_retention.count());
      if (!alerts.ok()) {
        spdlog::error("pruning alerts: {}", alerts.status().message());
      } else if (*alerts > 0) {
        spdlog::info("telemetry retention: removed {} alerts", *alerts);
      }
      next_prune = now + int64_t{3600} * 1000;
    }
    lock.lock();
  }
}

void Server::Stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (maintenance_.joinable()) maintenance_.join();
  if (link_) link_->DisconnectAll(v1::Goodbye::SHUTTING_DOWN, "cloud is shutting down");
  if (net_) net_->Stop();
  // No frame arrives any more: commit what was received (its acks go nowhere; nodes resend
  // and find it stored).
  if (telemetry_) telemetry_->Stop();
  if (registry_) {
    if (auto st = registry_->Flush(); !st.ok())
      spdlog::error("final registry write: {}", st.message());
  }
}

}  // namespace verge::cloud
