#include "node/agent.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <nlohmann/json.hpp>
#include <random>

#include "common/bootstrap_token.h"
#include "common/fs.h"

namespace verge::node {

Agent::Agent(NodeConfig config, const Clock& clock, std::function<void(const Status&)> on_fatal)
    : config_(std::move(config)),
      clock_(clock),
      on_fatal_(std::move(on_fatal)),
      usage_(config_.data_dir) {}

Agent::~Agent() { Stop(); }

Status Agent::Start() {
  VERGE_RETURN_IF_ERROR(MakeDirs(config_.data_dir));
  VERGE_ASSIGN_OR_RETURN(auto lock, DirLock::Acquire(config_.data_dir));
  lock_.emplace(std::move(lock));
  auto id = LoadIdentity(config_.data_dir, clock_);
  if (id.ok()) {
    if (!config_.name.empty() && config_.name != id->name) {
      return Error(
          Code::kFailedPrecondition,
          "data dir {} belongs to node \"{}\", not \"{}\"; use --name {} or another data dir",
          config_.data_dir, id->name, config_.name, id->name);
    }
    identity_.emplace(std::move(id).value());
    spdlog::info("node {}: identity loaded (certificate {} valid until {})", identity_->name,
                 identity_->cert_serial, FormatTimeMs(identity_->cert_not_after_ms));
  } else if (id.status().code() == Code::kNotFound) {
    if (config_.token.empty()) {
      return Error(Code::kFailedPrecondition,
                   "node has not joined yet: start it once with --token (get one with `vergectl "
                   "token create`, or from the cloud's DATA/bootstrap.token)");
    }
    if (config_.name.empty()) return Error(Code::kInvalidArgument, "--name is needed to join");
    if (auto st = ParseBootstrapTokenCheck(); !st.ok()) return st;
  } else {
    return id.status();
  }
  DataPlaneOptions dp;
  dp.dir = config_.data_dir + "/data";
  dp.http_listen = config_.http_listen;
  dp.buffer.max_bytes = static_cast<uint64_t>(config_.buffer_max_mb) << 20;
  dp.buffer.max_journal_bytes = static_cast<uint64_t>(config_.journal_max_mb) << 20;
  dp.buffer.ttl = config_.buffer_ttl;
  dp.buffer.sync_full = config_.durability == "power";
  dp.retention = config_.retention;
  dp.pipeline.batch_max_age = config_.batch_max_age;
  dp.pipeline.batch_max_readings = static_cast<size_t>(config_.batch_max_readings);
  dp.pipeline.nice = config_.pipeline_nice;
  dp.uplink.rate_bytes_per_s = static_cast<uint64_t>(config_.uplink_rate_kbit) * 1000 / 8;
  dp.mqtt_listen = config_.mqtt_listen;
  dp.mqtt_dir = config_.data_dir + "/mqtt";
  dp.rules_dir = config_.data_dir + "/rules";
  dp.mqtt_broker = config_.mqtt_broker;
  dp.mqtt_username = config_.mqtt_username;
  dp.mqtt_password = config_.mqtt_password;
  dp.node_name = identity_ ? identity_->name : config_.name;
  // Apps. Each runtime has its own cgroup parent, so that one's orphan sweep never touches the
  // other's workloads, and agents sharing a machine never meet.
  runtime::NativeOptions no;
  no.cgroup_parent = "verge/" + dp.node_name + "/native";
  no.user = config_.app_user;
  native_ = std::make_unique<runtime::NativeRuntime>(no);
  runtime::OciOptions oo;
  oo.runtime_path = config_.oci_runtime;
  oo.images_dir = config_.data_dir + "/images";
  oo.cgroup_parent = "verge/" + dp.node_name + "/oci";
  oo.state_root = config_.data_dir + "/oci";
  oci_ = std::make_unique<runtime::OciRuntime>(oo);
  functions_ = std::make_unique<runtime::FunctionRuntime>();
  artifacts_ = std::make_unique<CloudArtifactSource>([this] { return IdentityCopy(); });
  dp.runtimes = {{runtime::Kind::kNative, native_.get()},
                 {runtime::Kind::kContainer, oci_.get()},
                 {runtime::Kind::kFunction, functions_.get()}};
  dp.artifacts = artifacts_.get();
  dp.apps.dir = config_.data_dir + "/apps";
  dp.apps.artifacts_dir = config_.data_dir + "/artifacts";
  dp.apps.volumes_dir = config_.data_dir + "/volumes";
  dp.apps.backoff_initial = config_.app_backoff_initial;
  dp.apps.backoff_max = config_.app_backoff_max;
  dp.apps.stop_on_exit = config_.apps_on_exit == "stop";
  dp.autonomy.after_failures = config_.autonomy_after_failures;
  dp.autonomy.silence = config_.autonomy_after_silence;
  // A quiet link asks for an ack once it heard nothing for four heartbeats, and a live cloud
  // answers within a round trip: four heartbeats and two seconds without a word is trouble.
  dp.autonomy.quiet = 4 * config_.heartbeat + Millis(2000);
  VERGE_ASSIGN_OR_RETURN(dp.override_policies, ParseOverridePolicies(config_.override_policies));
  dp.clock_skew = [this] {
    auto s = link_stats();
    return s ? s->clock_skew_ms : int64_t{0};
  };
  data_ = std::make_unique<DataPlane>(dp, clock_, [this](v1::Envelope env) {
    if (LinkClient* l = link_ptr_.load()) l->Send(std::move(env));
  });
  if (auto st = data_->Start(); !st.ok()) {
    data_.reset();
    return st;
  }
  // Where the local API really listens (port 0 picks one): for scripts and tests.
  nlohmann::json listen = {{"http", data_->http_address()}, {"pid", getpid()}};
  if (config_.mqtt_broker.empty() && config_.mqtt_listen != "off")
    listen["mqtt"] = config_.mqtt_listen;
  VERGE_RETURN_IF_ERROR(
      WriteFileAtomic(config_.data_dir + "/listen.json", listen.dump() + "\n", 0644));
  usage_.Sample();  // prime the CPU counters
  thread_ = std::thread([this] { RunJoinAndLink(); });
  return Status::Ok();
}

std::optional<NodeIdentity> Agent::IdentityCopy() const {
  std::lock_guard lock(mu_);
  return identity_;
}

Status Agent::ParseBootstrapTokenCheck() {
  auto t = ParseBootstrapToken(config_.token);
  return t.ok() ? Status::Ok() : t.status();
}

void Agent::RunJoinAndLink() {
  auto fail = [&](const Status& st) {
    {
      std::lock_guard lock(mu_);
      fatal_ = st;
    }
    spdlog::critical("{}", st.message());
    if (on_fatal_) on_fatal_(st);
  };
  if (!identity_) {
    std::mt19937_64 rng{std::random_device{}()};
    int64_t delay = config_.reconnect_initial.count();
    for (;;) {
      spdlog::info("joining the cloud at {} as \"{}\"", config_.cloud, config_.name);
      auto id = Join(config_.data_dir, config_.cloud, config_.token, config_.name, clock_);
      if (id.ok()) {
        {
          std::lock_guard lock(mu_);
          identity_.emplace(std::move(id).value());
        }
        spdlog::info("joined: certificate {} valid until {}", identity_->cert_serial,
                     FormatTimeMs(identity_->cert_not_after_ms));
        break;
      }
      if (id.status().code() != Code::kUnavailable) return fail(id.status());
      int64_t wait = std::uniform_int_distribution<int64_t>(delay / 2, delay)(rng);
      spdlog::warn("cannot join yet: {}; retrying in {}", id.status().message(),
                   FormatDuration(Millis(wait)));
      std::unique_lock lock(mu_);
      if (cv_.wait_for(lock, Millis(wait), [&] { return stopping_; })) return;
      delay = std::min(delay * 2, config_.reconnect_max.count());
    }
  }
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    ioc_ = std::make_unique<boost::asio::io_context>(1);
    LinkOptions lo;
    lo.cloud = config_.cloud;
    lo.ca_pem = identity_->ca_pem;
    lo.cert_pem = identity_->cert_pem;
    lo.key_pem = identity_->key_pem;
    lo.node_name = identity_->name;
    lo.heartbeat = config_.heartbeat;
    lo.reconnect_initial = config_.reconnect_initial;
    lo.reconnect_max = config_.reconnect_max;
    lo.has_backlog = [this] { return data_ && data_->HasBacklog(); };
    lo.on_heard = [this] { data_->OnHeard(); };
    link_ = std::make_unique<LinkClient>(
        ioc_->get_executor(), lo, [this] { return MakeHello(); }, [this] { return SampleUsage(); },
        [this, &fail](LinkState s, const std::string& detail) {
          switch (s) {
            case LinkState::kConnected:
              spdlog::info("link up ({})", detail);
              break;
            case LinkState::kBackoff:
              spdlog::warn("link down: {}", detail);
              data_->OnLinkAttemptFailed(detail);
              break;
            case LinkState::kRefused:
              data_->OnLinkAttemptFailed(detail);
              fail(Error(Code::kPermissionDenied, "{}", detail));
              break;
            default:
              spdlog::debug("link {}: {}", LinkStateName(s), detail);
              break;
          }
        });
    link_->OnMessage([this](const v1::Envelope& env) { data_->OnMessage(env); });
    link_->OnSession([this](bool up, const v1::HelloAck* ack, const std::string& why) {
      data_->OnSession(up, ack, why);
    });
    link_ptr_ = link_.get();
    link_->Start();
  }
  auto guard = boost::asio::make_work_guard(*ioc_);
  std::thread watcher([this, g = std::move(guard)]() mutable {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return stopping_; });
    lock.unlock();
    link_->Stop();
    g.reset();
  });
  ioc_->run();
  watcher.join();
}

v1::Hello Agent::MakeHello() {
  v1::Hello h;
  h.set_node_name(identity_->name);
  h.set_protocol_version(1);
  h.set_agent_version(VERGE_VERSION);
  h.set_heartbeat_interval_ms(static_cast<uint32_t>(config_.heartbeat.count()));
  auto* info = h.mutable_info();
  info->set_type(config_.type);
  info->set_region(config_.region);
  for (const auto& [k, v] : config_.labels) (*info->mutable_labels())[k] = v;
  std::vector<std::string> caps = DetectCapabilities();
  for (const auto& c : config_.capabilities) {
    if (std::find(caps.begin(), caps.end(), c) == caps.end()) caps.push_back(c);
  }
  for (const auto& c : caps) info->add_capabilities(c);
  auto cap = ReadCapacity(config_.data_dir);
  auto* r = info->mutable_capacity();
  r->set_cpu_millicores(cap.cpu_millicores);
  r->set_memory_mb(cap.memory_mb);
  r->set_storage_gb(cap.storage_gb);
  r->set_gpu(cap.gpu);
  r->set_npu(cap.npu);
  for (const auto& a : LocalAddresses(false)) info->add_addresses(a);
  info->set_hostname(Hostname());
  info->set_os(OsName());
  info->set_arch(Arch());
  last_usage_sent_.reset();  // a new stream gets a fresh usage report
  *h.mutable_resume() = data_->Resume();
  return h;
}

std::optional<v1::Resources> Agent::SampleUsage() {
  auto u = usage_.Sample();
  v1::Resources r;
  r.set_cpu_millicores(u.cpu_millicores);
  r.set_memory_mb(u.memory_mb);
  r.set_storage_gb(u.storage_gb);
  // Report only noticeable moves (≥100 millicores, ≥32 MB, any storage GB): usage rides the
  // heartbeat, and most heartbeats of an idle node should stay a few bytes.
  if (last_usage_sent_) {
    auto diff = [](uint64_t a, uint64_t b) { return a > b ? a - b : b - a; };
    if (diff(r.cpu_millicores(), last_usage_sent_->cpu_millicores()) < 100 &&
        diff(r.memory_mb(), last_usage_sent_->memory_mb()) < 32 &&
        r.storage_gb() == last_usage_sent_->storage_gb()) {
      return std::nullopt;
    }
  }
  last_usage_sent_ = r;
  return r;
}

void Agent::Stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  link_ptr_ = nullptr;
  if (data_) data_->Stop();
}

std::optional<LinkStats> Agent::link_stats() const {
  std::lock_guard lock(mu_);
  if (!link_) return std::nullopt;
  return link_->stats();
}

Status Agent::fatal() const {
  std::lock_guard lock(mu_);
  return fatal_;
}

}  // namespace verge::node
