#include "node/data_plane.h"

#include <spdlog/spdlog.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/compress.h"
#include "common/fs.h"
#include "common/pki.h"
#include "node/modbus/writer.h"
#include "node/rules/spec.h"
#include "node/runtime/function.h"

namespace verge::node {

namespace {

constexpr const char* kDesiredFile = "desired.pb";
constexpr const char* kLocalTokenFile = "local.token";

data::MetricType TypeOf(const std::string& t) {
  if (t == "int") return data::MetricType::kInt;
  if (t == "bool") return data::MetricType::kBool;
  return data::MetricType::kFloat;
}

Result<modbus::ModbusDevice> ModbusOf(const v1::Device& d) {
  const auto& m = d.modbus();
  modbus::ModbusDevice md;
  md.name = d.name();
  md.host = m.host();
  md.port = m.port() ? static_cast<int>(m.port()) : 502;
  md.unit_id = static_cast<int>(m.unit_id());
  if (m.timeout_ms()) md.timeout = Millis(m.timeout_ms());
  for (const auto& r : m.registers()) {
    modbus::RegisterSpec spec;
    spec.metric = r.metric();
    spec.address = static_cast<int>(r.address());
    VERGE_ASSIGN_OR_RETURN(spec.kind, modbus::ParseKind(r.kind().empty() ? "holding" : r.kind()));
    VERGE_ASSIGN_OR_RETURN(spec.type, modbus::ParseType(r.type().empty() ? "uint16" : r.type()));
    VERGE_ASSIGN_OR_RETURN(spec.byte_order,
                           modbus::ParseOrder(r.byte_order().empty() ? "big" : r.byte_order()));
    VERGE_ASSIGN_OR_RETURN(spec.word_order,
                           modbus::ParseOrder(r.word_order().empty() ? "big" : r.word_order()));
    spec.scale = r.scale() == 0 ? 1 : r.scale();
    spec.offset = r.offset();
    if (r.interval_ms()) spec.interval = Millis(r.interval_ms());
    md.registers.push_back(std::move(spec));
  }
  return md;
}

}  // namespace

DataPlane::DataPlane(DataPlaneOptions options, const Clock& clock, SendFn send)
    : options_(std::move(options)),
      clock_(clock),
      send_(std::move(send)),
      autonomy_(std::make_unique<Autonomy>(options_.autonomy, clock_)) {}

DataPlane::~DataPlane() { Stop(); }

Status DataPlane::Start() {
  VERGE_RETURN_IF_ERROR(MakeDirs(options_.dir));
  VERGE_ASSIGN_OR_RETURN(series_, data::SeriesStore::Open(options_.dir + "/series.db"));
  VERGE_ASSIGN_OR_RETURN(
      buffer_, data::UplinkBuffer::Open(options_.dir + "/buffer.db", options_.buffer, clock_));
  pipeline_ = std::make_unique<data::Pipeline>(*buffer_, series_.get(), clock_, options_.pipeline);
  ingestor_ = std::make_unique<data::Ingestor>(*buffer_, series_.get(), clock_,
                                               [this] { pipeline_->Notify(); });
  uplink_ = std::make_unique<data::UplinkSender>(*buffer_, send_, options_.uplink);
  pipeline_->OnBatches([this] { uplink_->Notify(); });
  ActionHooks hooks;
  hooks.alert = [this](std::vector<v1::Alert> alerts) { return AddAlerts(std::move(alerts)); };
  hooks.mqtt = [this](const std::string& topic, std::string_view payload, int qos, bool retain) {
    if (!rule_mqtt_) return Error(Code::kUnavailable, "the node has no MQTT broker");
    return rule_mqtt_->Publish(topic, payload, qos, retain);
  };
  hooks.modbus = [this](const rules::ActionSpec& spec, double value) {
    return WriteModbus(spec, value);
  };
  if (auto it = options_.runtimes.find(runtime::Kind::kFunction); it != options_.runtimes.end()) {
    if (auto* functions = dynamic_cast<runtime::FunctionRuntime*>(it->second)) {
      hooks.function = [functions](const std::string& app, const nlohmann::json& event) {
        return functions->Call(app, event);
      };
    }
  }
  RuleManagerOptions ro;
  ro.dir = options_.rules_dir.empty() ? options_.dir + "/rules" : options_.rules_dir;
  rules_ = std::make_unique<RuleManager>(ro, clock_, std::move(hooks));
  VERGE_RETURN_IF_ERROR(rules_->Start());
  pipeline_->OnReadings([this](std::span<const data::Reading> r) { rules_->OnReadings(r); });
  modbus_ = std::make_unique<modbus::ModbusPoller>(clock_, [this](std::vector<data::Reading> r) {
    if (auto st = ingestor_->IngestReadings(std::move(r)); !st.ok())
      spdlog::warn("modbus readings not stored: {}", st.status().message());
  });

  AppManagerOptions ao = options_.apps;
  if (ao.dir.empty()) ao.dir = options_.dir + "/../apps";
  if (ao.artifacts_dir.empty()) ao.artifacts_dir = options_.dir + "/../artifacts";
  if (ao.volumes_dir.empty()) ao.volumes_dir = options_.dir + "/../volumes";
  apps_ = std::make_unique<AppManager>(ao, clock_, options_.runtimes, options_.artifacts);
  apps_->SetOnChange([this] {
    // Through the mutex, so the wake-up cannot fall between Maintain's check and its wait.
    { std::lock_guard lock(maint_mu_); }
    maint_cv_.notify_all();
  });
  VERGE_RETURN_IF_ERROR(apps_->Start());

  VERGE_ASSIGN_OR_RETURN(overrides_, OverrideStore::Open(options_.dir + "/overrides.json"));
  // The persisted desired state (with the node's overrides), so that devices and apps run
  // before (or without) the cloud.
  std::string desired_path = options_.dir + "/" + kDesiredFile;
  if (std::filesystem::exists(desired_path)) {
    VERGE_ASSIGN_OR_RETURN(auto bytes, ReadFile(desired_path));
    v1::DesiredState d;
    if (!d.ParseFromString(bytes))
      return Error(Code::kDataLoss, "{} is damaged; delete it and the cloud will send it again",
                   desired_path);
    std::lock_guard lock(state_mu_);
    cloud_desired_ = std::move(d);
    Status st = ApplyEffectiveLocked();
    if (!st.ok()) spdlog::warn("desired state v{}: {}", cloud_desired_.version(), st.message());
    apply_error_ = state_error_ = st.ok() ? "" : st.message();
    applied_version_ = cloud_desired_.version();
  }

  std::string token_path = options_.dir + "/" + kLocalTokenFile;
  std::string local_token;
  if (auto t = ReadFile(token_path); t.ok() && !t->empty()) {
    local_token = *t;
    while (!local_token.empty() && std::isspace(static_cast<unsigned char>(local_token.back())))
      local_token.pop_back();
  } else {
    local_token = "vloc_" + pki::RandomToken(32);
    VERGE_RETURN_IF_ERROR(WriteFileAtomic(token_path, local_token + "\n", 0600));
  }
  VERGE_RETURN_IF_ERROR(StartMqtt());
  VERGE_RETURN_IF_ERROR(StartRuleMqtt());
  api_ = std::make_unique<LocalApi>(*ingestor_, *series_, devices_, local_token, clock_,
                                    [this] { return StatsJson(); });
  api_->SetRules(rules_.get());
  api_->SetStatus([this] { return StatusJson(); }, [this] { return MetricsText(); });
  api_->SetOverrides([this](const http::Request& r) { return HandleOverrides(r); });
  if (auto it = options_.runtimes.find(runtime::Kind::kFunction); it != options_.runtimes.end())
    api_->SetFunctions(dynamic_cast<runtime::FunctionRuntime*>(it->second));
  http::HttpServer::Options ho;
  ho.max_body_bytes = options_.max_body_bytes;
  ho.server_name = "verge-node/" VERGE_VERSION;
  http_ = std::make_unique<http::HttpServer>(
      ho, [this](const http::Request& r) { return api_->Handle(r); });
  VERGE_ASSIGN_OR_RETURN(http_address_, http_->Listen(options_.http_listen));

  // Bring the local series up to the journal before devices can send again, so that a retry
  // of readings accepted just before a crash is recognised as a duplicate.
  for (int i = 0; i < 100000; ++i) {
    if (auto st = pipeline_->Step(false); !st.ok()) {
      spdlog::warn("catching up with the journal: {}", st.message());
      break;
    }
    if (!pipeline_->more()) break;
  }
  pipeline_->Start();
  uplink_->Start();
  http_->Start();
  maint_ = std::thread([this] { Maintain(); });
  started_ = true;
  spdlog::info("local API on http://{} (POST /data, GET /query, /rules)", http_address_);
  return Status::Ok();
}

Status DataPlane::StartMqtt() {
  mqtt::SubscriberOptions so;
  so.client_id = mqtt::NodeClientId(options_.node_name);
  if (!options_.mqtt_broker.empty()) {
    VERGE_ASSIGN_OR_RETURN(auto hp, http::SplitHostPort(options_.mqtt_broker));
    so.host = hp.first;
    so.port = std::stoi(hp.second);
    so.username = options_.mqtt_username;
    so.password = options_.mqtt_password;
    // Another broker's ACLs are its operator's: do not ask it for the rejection topics.
    so.publish_rejections = false;
  } else if (options_.mqtt_listen.empty() || options_.mqtt_listen == "off") {
    return Status::Ok();
  } else {
    mqtt::BrokerOptions bo;
    bo.work_dir = options_.mqtt_dir;
    bo.listen = options_.mqtt_listen;
    broker_ = std::make_unique<mqtt::MosquittoBroker>(clock_, bo);
    std::vector<mqtt::BrokerDevice> devices;
    {
      std::lock_guard lock(state_mu_);
      devices = mqtt_devices_;
    }
    if (auto st = broker_->Start(devices); !st.ok())
      return Error(st.code(), "MQTT broker on {}: {}", options_.mqtt_listen, st.message());
    auto acct = broker_->node_account();
    so.host = acct.host;
    so.port = acct.port;
    so.username = acct.username;
    so.password = acct.password;
    so.client_id = acct.client_id;
  }
  subscriber_ = std::make_unique<mqtt::MqttSubscriber>(clock_, *ingestor_, so);
  if (auto st = subscriber_->Start(); !st.ok()) return st;
  spdlog::info("MQTT: devices publish to devices/<name>/telemetry on {}",
               options_.mqtt_broker.empty() ? options_.mqtt_listen : options_.mqtt_broker);
  return Status::Ok();
}

Status DataPlane::StartRuleMqtt() {
  mqtt::ClientOptions co;
  co.client_id = mqtt::NodeClientId(options_.node_name) + "-rules";
  if (!options_.mqtt_broker.empty()) {
    VERGE_ASSIGN_OR_RETURN(auto hp, http::SplitHostPort(options_.mqtt_broker));
    co.host = hp.first;
    co.port = std::stoi(hp.second);
    co.username = options_.mqtt_username;
    co.password = options_.mqtt_password;
  } else if (broker_) {
    auto acct = broker_->node_account();
    co.host = acct.host;
    co.port = acct.port;
    co.username = acct.username;
    co.password = acct.password;
  } else {
    return Status::Ok();  // no broker: MQTT actions fail, MQTT streams get nothing
  }
  rule_mqtt_ = std::make_unique<mqtt::MqttClient>(
      co, [this](std::string_view topic, std::string_view payload) {
        rules_->OnMqttMessage(topic, payload);
      });
  VERGE_RETURN_IF_ERROR(rule_mqtt_->Start());
  rules_->OnSubscriptions(
      [this](std::set<std::string> filters) { rule_mqtt_->SetSubscriptions(std::move(filters)); });
  return Status::Ok();
}

Status DataPlane::AddAlerts(std::vector<v1::Alert> alerts) {
  if (alerts.empty()) return Status::Ok();
  v1::AlertBatch batch;
  for (auto& a : alerts) *batch.add_alerts() = std::move(a);
  VERGE_ASSIGN_OR_RETURN(std::string data, ZstdCompress(batch.SerializeAsString(), 3));
  std::vector<data::StoredBatch> stored(1);
  stored[0].priority = v1::ALERTS;
  stored[0].count = static_cast<uint32_t>(batch.alerts_size());
  stored[0].created_ms = clock_.WallMs();
  stored[0].data = std::move(data);
  VERGE_RETURN_IF_ERROR(buffer_->AddBatches(stored));
  uplink_->Notify();
  return Status::Ok();
}

Status DataPlane::WriteModbus(const rules::ActionSpec& spec, double value) {
  modbus::ModbusDevice device;
  {
    std::lock_guard lock(state_mu_);
    auto it = modbus_by_name_.find(spec.device);
    if (it == modbus_by_name_.end())
      return Error(Code::kInvalidArgument,
                   "no Modbus device {} on this node (declare it with a modbus source)",
                   spec.device);
    device = it->second;
  }
  modbus::RegisterSpec reg;
  reg.address = static_cast<int>(spec.address);
  VERGE_ASSIGN_OR_RETURN(reg.type, modbus::ParseType(spec.type));
  return modbus::Write(device, spec.register_kind == "coil", reg, value);
}

v1::Envelope DataPlane::Report() {
  v1::Envelope report;
  auto* r = report.mutable_state_report();
  {
    std::lock_guard lock(state_mu_);
    r->set_applied_version(applied_version_);
    r->set_error(state_error_);
  }
  if (rules_) {
    for (auto& s : rules_->Statuses()) *r->add_rules() = std::move(s);
    r->set_has_rules(true);
  }
  if (apps_) {
    for (auto& s : apps_->Statuses()) *r->add_workloads() = std::move(s);
    for (auto& s : StoppedOnSite()) *r->add_workloads() = std::move(s);
    r->set_has_workloads(true);
  }
  return report;
}

std::vector<v1::WorkloadStatus> DataPlane::StoppedOnSite() const {
  std::vector<v1::WorkloadStatus> out;
  std::lock_guard lock(state_mu_);
  if (!overrides_) return out;
  for (const auto& w : cloud_desired_.workloads()) {
    auto o = overrides_->Get(OverrideKind::kApp, w.app());
    if (!o || !o->spec.value("stopped", false)) continue;
    v1::WorkloadStatus s;
    s.set_id(w.id());
    s.set_app(w.app());
    s.set_revision(w.revision());
    s.set_status("stopped");
    s.set_last_error(fmt::format("stopped on the node by a local override (v{} by {}, {})",
                                 o->version, o->origin, FormatTimeMs(o->at_ms)));
    out.push_back(std::move(s));
  }
  return out;
}

void DataPlane::Stop() {
  if (!started_) return;
  started_ = false;
  {
    std::lock_guard lock(maint_mu_);
    stopping_ = true;
  }
  maint_cv_.notify_all();
  if (maint_.joinable()) maint_.join();
  // Reverse order: stop taking data, let the pipeline close its open batch (and feed the
  // rules its last readings), checkpoint the rules (their alerts still reach the buffer), and
  // only then the MQTT connections and the uplink.
  http_->Stop();
  // The subscriber before the broker, so it is not left reconnecting to nothing.
  if (subscriber_) subscriber_->Stop();
  modbus_->Stop();
  pipeline_->Stop();
  rules_->Stop();
  apps_->Stop();
  if (rule_mqtt_) rule_mqtt_->Stop();
  if (broker_) broker_->Stop();
  uplink_->Stop();
}

void DataPlane::Maintain() {
  std::unique_lock lock(maint_mu_);
  int64_t next_prune = 0;
  uint64_t reported_rules = rules_->status_version();
  uint64_t reported_apps = apps_->status_version();
  int64_t next_rules = 0;
  int64_t next_apps = 0;
  while (!stopping_) {
    wake_ = false;
    lock.unlock();
    autonomy_->Tick();
    QueueAutonomyEvents();
    RetrySaveDesired();
    int64_t now = clock_.SteadyMs();
    if (now >= next_prune) {
      int64_t cutoff = (clock_.WallMs() - options_.retention.count()) * 1'000'000;
      if (auto n = series_->Prune(cutoff); !n.ok())
        spdlog::warn("local series retention: {}", n.status().message());
      next_prune = now + int64_t{5} * 60 * 1000;
    }
    // Statuses reach the cloud while they change: workloads' at once (at most every
    // app_report_interval), rules' at most every rule_report_interval.
    uint64_t rules_version = rules_->status_version();
    uint64_t apps_version = apps_->status_version();
    bool rules_due = rules_version != reported_rules && now >= next_rules;
    bool apps_due = apps_version != reported_apps && now >= next_apps;
    if ((rules_due || apps_due) && session_up_) {
      reported_apps = apps_version;
      next_apps = now + options_.app_report_interval.count();
      if (rules_due) {
        reported_rules = rules_version;
        next_rules = now + options_.rule_report_interval.count();
      }
      send_(Report());
    }
    lock.lock();
    // A quarter second bounds how late a silence is noticed (autonomy) and an event is saved.
    int64_t wait = apps_version != reported_apps ? std::max<int64_t>(next_apps - now, 1) : 250;
    maint_cv_.wait_for(lock, Millis(wait), [&] {
      return stopping_ || wake_ ||
             (apps_->status_version() != reported_apps && clock_.SteadyMs() >= next_apps);
    });
  }
}

Status DataPlane::Apply(const v1::DesiredState& desired) {
  std::vector<std::string> errors;
  std::map<std::string, std::string> tokens;
  std::vector<data::DeviceSchema> schemas;
  std::vector<std::pair<std::pair<std::string, std::string>, data::FilterSpec>> filters;
  std::vector<modbus::ModbusDevice> modbus_devices;
  std::vector<mqtt::BrokerDevice> mqtt_devices;
  for (const auto& d : desired.devices()) {
    if (!d.token_sha256().empty()) tokens[d.token_sha256()] = d.name();
    if (!d.mqtt_password_hash().empty()) mqtt_devices.push_back({d.name(), d.mqtt_password_hash()});
    data::DeviceSchema schema;
    schema.device = d.name();
    schema.allow_undeclared = d.allow_undeclared() || d.metrics().empty();
    for (const auto& m : d.metrics()) {
      data::MetricSpec spec;
      spec.name = m.name();
      spec.type = TypeOf(m.type());
      if (m.has_min()) spec.min = m.min();
      if (m.has_max()) spec.max = m.max();
      spec.unit = m.unit();
      schema.metrics.push_back(spec);
      const auto& u = m.uplink();
      data::FilterSpec f;
      f.deadband_abs = u.deadband_abs();
      f.deadband_pct = u.deadband_pct();
      f.sample_every = u.sample_every();
      f.max_silence_ns = static_cast<int64_t>(u.max_silence_ms()) * 1'000'000;
      f.swinging_door = u.swinging_door();
      f.min = spec.min;
      f.max = spec.max;
      bool any = f.deadband_abs > 0 || f.deadband_pct > 0 || f.sample_every > 1 ||
                 f.max_silence_ns > 0 || f.swinging_door > 0;
      if (!any) continue;
      if (auto st = data::ValidateFilter(f); !st.ok()) {
        errors.push_back(fmt::format("{}/{}: {}", d.name(), m.name(), st.message()));
        continue;
      }
      filters.push_back({{d.name(), m.name()}, f});
    }
    schemas.push_back(std::move(schema));
    if (d.has_modbus()) {
      auto md = ModbusOf(d);
      if (!md.ok()) {
        errors.push_back(fmt::format("{}: modbus: {}", d.name(), md.status().message()));
      } else {
        modbus_devices.push_back(std::move(*md));
      }
    }
  }
  devices_.Set(std::move(tokens));
  if (auto st = ingestor_->SetSchemas(std::move(schemas)); !st.ok())
    errors.push_back(std::string(st.message()));
  pipeline_->SetFilters(std::move(filters));
  modbus_by_name_.clear();
  for (const auto& md : modbus_devices) modbus_by_name_[md.name] = md;
  rules_->SetCloudRules(desired.rules());
  // A cloud that knows nothing of apps says nothing of them: the node's apps keep running.
  if (desired.has_workloads())
    apps_->SetDesired({desired.workloads().begin(), desired.workloads().end()});
  if (auto st = modbus_->SetDevices(std::move(modbus_devices)); !st.ok())
    errors.push_back("modbus: " + std::string(st.message()));
  mqtt_devices_ = mqtt_devices;
  if (broker_) {
    if (auto st = broker_->SetDevices(std::move(mqtt_devices)); !st.ok())
      errors.push_back("mqtt: " + std::string(st.message()));
  }
  if (errors.empty()) return Status::Ok();
  std::string msg;
  for (const auto& e : errors) msg += (msg.empty() ? "" : "; ") + e;
  return Error(Code::kInvalidArgument, "{}", msg);
}

void DataPlane::OnSession(bool up, const v1::HelloAck* ack, const std::string& why) {
  session_up_ = up;
  uplink_->OnSession(up);
  if (up) {
    uint64_t cloud_version = ack ? ack->desired_version() : applied_version_.load();
    {
      // Overrides are resolved once per reconnect: now if the node's desired state is the
      // cloud's, else when the cloud's arrives.
      std::lock_guard lock(state_mu_);
      resolve_all_pending_ = true;
      if (cloud_version == applied_version_.load() && ResolveOverridesLocked(nullptr))
        ReapplyLocked();
    }
    autonomy_->SessionUp(cloud_version, applied_version_.load());
    // A new session: the cloud learns the rules' state without waiting for a change.
    send_(Report());
  } else {
    autonomy_->SessionDown(why);
  }
  WakeMaintenance();
}

void DataPlane::OnLinkAttemptFailed(const std::string& why) {
  autonomy_->AttemptFailed(why);
  WakeMaintenance();
}

void DataPlane::WakeMaintenance() {
  {
    std::lock_guard lock(maint_mu_);
    wake_ = true;
  }
  maint_cv_.notify_all();
}

void DataPlane::ReapplyLocked() {
  Status st = ApplyEffectiveLocked();
  apply_error_ = st.ok() ? "" : st.message();
  state_error_ = StateErrorLocked();
}

std::string DataPlane::StateErrorLocked() const {
  std::string e = apply_error_;
  if (desired_unsaved_) {
    if (!e.empty()) e += "; ";
    e += "applied but not saved (retrying): " + save_error_;
  }
  return e;
}

void DataPlane::RetrySaveDesired() {
  int64_t now = clock_.SteadyMs();
  {
    std::lock_guard lock(state_mu_);
    if (!desired_unsaved_ || now < next_save_try_) return;
    next_save_try_ = now + 2000;
    Status saved = WriteFileAtomic(options_.dir + "/" + kDesiredFile,
                                   cloud_desired_.SerializeAsString(), 0600);
    if (!saved.ok()) return;
    desired_unsaved_ = false;
    state_error_ = StateErrorLocked();
    spdlog::info("desired state v{} saved", cloud_desired_.version());
  }
  if (session_up_) send_(Report());
}

void DataPlane::AddNodeEvents(std::vector<v1::NodeEvent> events) {
  if (events.empty()) return;
  for (const auto& e : events) spdlog::info("{}: {}", e.type(), e.message());
  {
    std::lock_guard lock(events_mu_);
    for (auto& e : events) unsaved_events_.push_back(std::move(e));
  }
  WakeMaintenance();
}

Status DataPlane::ApplyEffectiveLocked() { return Apply(overrides_->Overlay(cloud_desired_)); }

bool DataPlane::ResolveOverridesLocked(const v1::DesiredState* before) {
  if (!before) resolve_all_pending_ = false;
  int64_t skew = options_.clock_skew ? options_.clock_skew() : 0;
  auto events = overrides_->ResolveAll(cloud_desired_, options_.override_policies, skew,
                                       clock_.WallMs(), before);
  if (!events.ok()) {
    spdlog::error("resolving local overrides: {}", events.status().message());
    return false;
  }
  bool any = !events->empty();
  AddNodeEvents(std::move(*events));
  return any;
}

void DataPlane::QueueAutonomyEvents() {
  std::lock_guard events_lock(events_mu_);
  for (auto& t : autonomy_->TakeNew()) {
    v1::NodeEvent e;
    e.set_ts_ms(t.at_ms);
    e.set_type("autonomy." + std::string(LinkModeName(t.to)));
    e.set_message(fmt::format("{} -> {} after {}: {}", LinkModeName(t.from), LinkModeName(t.to),
                              FormatDuration(Millis(t.after_ms)), t.reason));
    spdlog::info("link state {}", e.message());
    unsaved_events_.push_back(std::move(e));
  }
  if (unsaved_events_.empty() || !buffer_) return;
  v1::NodeEventBatch batch;
  for (const auto& e : unsaved_events_) *batch.add_events() = e;
  auto data = ZstdCompress(batch.SerializeAsString(), 3);
  Status st = data.status();
  if (data.ok()) {
    std::vector<data::StoredBatch> stored(1);
    stored[0].priority = v1::EVENTS;
    stored[0].count = static_cast<uint32_t>(batch.events_size());
    stored[0].created_ms = clock_.WallMs();
    stored[0].data = std::move(*data);
    st = buffer_->AddBatches(stored);
  }
  if (!st.ok()) {
    // Kept for the next try; a bound so that a disk full for days cannot exhaust memory.
    if (unsaved_events_.size() > 10'000)
      unsaved_events_.erase(
          unsaved_events_.begin(),
          unsaved_events_.begin() + static_cast<std::ptrdiff_t>(unsaved_events_.size() - 10'000));
    spdlog::warn("{} node events not saved yet: {}", unsaved_events_.size(), st.message());
    return;
  }
  unsaved_events_.clear();
  uplink_->Notify();
}

void DataPlane::OnMessage(const v1::Envelope& env) {
  if (env.has_uplink_ack()) {
    uplink_->OnAck(env.uplink_ack());
    return;
  }
  if (env.has_log_request()) {
    SendLogs(env);
    return;
  }
  if (!env.has_desired_state()) return;
  const auto& d = env.desired_state();
  {
    std::lock_guard lock(state_mu_);
    // Run what the cloud wants even when it cannot be saved (a full disk): the node retries
    // saving it (Maintain), and until then a restart resumes from the saved version, which the
    // cloud sees in Hello and answers with this state again.
    Status saved = WriteFileAtomic(options_.dir + "/" + kDesiredFile, d.SerializeAsString(), 0600);
    desired_unsaved_ = !saved.ok();
    save_error_ = saved.message();
    v1::DesiredState before = std::exchange(cloud_desired_, d);
    ResolveOverridesLocked(resolve_all_pending_ ? nullptr : &before);
    Status st = ApplyEffectiveLocked();
    // Applied as far as it goes: the rest is reported, and the node runs what it could.
    applied_version_ = d.version();
    apply_error_ = st.ok() ? "" : st.message();
    if (!st.ok())
      spdlog::warn("desired state v{}: {}", d.version(), st.message());
    else
      spdlog::info("desired state v{} applied: {} devices, {} rules", d.version(), d.devices_size(),
                   d.rules_size());
    if (!saved.ok())
      spdlog::error("cannot save desired state v{}: {}", d.version(), saved.message());
    state_error_ = StateErrorLocked();
  }
  // Current as far as this node can get: what did not apply is reported, not waited for.
  autonomy_->DesiredApplied(d.version());
  WakeMaintenance();
  send_(Report());
}

void DataPlane::SendLogs(const v1::Envelope& request) {
  const auto& req = request.log_request();
  auto reply = [&](const std::string& workload, std::string data, uint64_t offset, bool last,
                   std::string error) {
    v1::Envelope env;
    env.set_in_reply_to(request.id());
    auto* d = env.mutable_log_data();
    d->set_workload(workload);
    d->set_data(std::move(data));
    d->set_offset(offset);
    d->set_last(last);
    d->set_error(std::move(error));
    send_(std::move(env));
  };
  std::map<std::string, uint64_t> since(req.since().begin(), req.since().end());
  auto logs = apps_->Logs(req.app(), req.tail(), since);
  if (!logs.ok()) return reply("", "", 0, true, logs.status().message());
  // The link's frames are at most 4 MiB: send each replica's output in pieces well below it.
  constexpr size_t kPiece = 1 << 20;
  for (auto& p : *logs) {
    size_t off = 0;
    do {
      std::string part = p.text.substr(off, kPiece);
      off += part.size();
      reply(p.workload, std::move(part), p.offset - (p.text.size() - off), false, "");
    } while (off < p.text.size());
  }
  reply("", "", 0, true, logs->empty() ? "no replica of this app has run on this node" : "");
}

bool DataPlane::HasBacklog() const { return buffer_ && buffer_->stats().batches > 0; }

v1::ResumeState DataPlane::Resume() const {
  v1::ResumeState r;
  r.set_desired_version(applied_version_);
  if (buffer_) {
    uint64_t low = buffer_->low_seq();
    r.set_uplink_acked_seq(low > 0 ? low - 1 : 0);
    r.set_uplink_next_seq(buffer_->next_seq());
  }
  return r;
}

namespace {

nlohmann::json TimeOrNull(int64_t ms) {
  return ms > 0 ? nlohmann::json(FormatTimeMs(ms)) : nlohmann::json(nullptr);
}

}  // namespace

std::string DataPlane::StatusJson() const {
  auto a = autonomy_->Snapshot();
  nlohmann::json transitions = nlohmann::json::array();
  for (const auto& t : a.recent) {
    transitions.push_back({{"from", LinkModeName(t.from)},
                           {"to", LinkModeName(t.to)},
                           {"at", FormatTimeMs(t.at_ms)},
                           {"afterMs", t.after_ms},
                           {"reason", t.reason}});
  }
  nlohmann::json time_in = nlohmann::json::object();
  for (size_t m = 0; m < kLinkModes; ++m)
    time_in[std::string(LinkModeName(static_cast<LinkMode>(m)))] = a.total_ms[m];
  nlohmann::json apps = nlohmann::json::array();
  auto replicas = apps_->Statuses();
  for (auto& w : StoppedOnSite()) replicas.push_back(std::move(w));
  for (const auto& w : replicas) {
    apps.push_back({{"name", w.app()},
                    {"id", w.id()},
                    {"revision", w.revision()},
                    {"status", w.status()},
                    {"ready", w.ready()},
                    {"pid", w.pid()},
                    {"restarts", w.restarts()},
                    {"startedAt", TimeOrNull(w.started_ms())},
                    {"lastError", w.last_error()}});
  }
  auto b = buffer_->stats();
  nlohmann::json j = {{"node", options_.node_name},
                      {"linkState", LinkModeName(a.mode)},
                      {"linkStateSince", FormatTimeMs(a.since_ms)},
                      {"linkStateForMs", a.in_state_ms},
                      {"lastHeardFromCloud", TimeOrNull(a.last_heard_ms)},
                      {"failedAttempts", a.failures},
                      {"transitions", transitions},
                      {"transitionCount", a.transitions},
                      {"timeInStateMs", time_in},
                      {"desiredVersion", applied_version_.load()},
                      {"apps", apps},
                      {"buffer", {{"batches", b.batches}, {"readings", b.batch_readings}}}};
  return j.dump();
}

std::string DataPlane::MetricsText() const {
  auto a = autonomy_->Snapshot();
  std::string out;
  auto metric = [&](std::string_view name, std::string_view type, std::string_view help) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
  };
  metric("verge_node_link_state", "gauge", "1 for the link's autonomy state, 0 for the others.");
  for (size_t m = 0; m < kLinkModes; ++m) {
    auto mode = static_cast<LinkMode>(m);
    out += fmt::format("verge_node_link_state{{state=\"{}\"}} {}\n", LinkModeName(mode),
                       mode == a.mode ? 1 : 0);
  }
  metric("verge_node_link_state_seconds", "gauge", "Time in the current link state.");
  out += fmt::format("verge_node_link_state_seconds {:.3f}\n",
                     static_cast<double>(a.in_state_ms) / 1000.0);
  metric("verge_node_link_state_seconds_total", "counter",
         "Time spent in each link state since the agent started.");
  for (size_t m = 0; m < kLinkModes; ++m) {
    out += fmt::format("verge_node_link_state_seconds_total{{state=\"{}\"}} {:.3f}\n",
                       LinkModeName(static_cast<LinkMode>(m)),
                       static_cast<double>(a.total_ms[m]) / 1000.0);
  }
  metric("verge_node_link_transitions_total", "counter", "Link state transitions.");
  out += fmt::format("verge_node_link_transitions_total {}\n", a.transitions);
  metric("verge_node_link_failed_attempts", "gauge",
         "Failed attempts to reach the cloud since the last stream.");
  out += fmt::format("verge_node_link_failed_attempts {}\n", a.failures);
  auto b = buffer_->stats();
  metric("verge_node_buffer_batches", "gauge", "Batches waiting for the cloud.");
  out += fmt::format("verge_node_buffer_batches {}\n", b.batches);
  metric("verge_node_buffer_readings", "gauge", "Readings waiting for the cloud.");
  out += fmt::format("verge_node_buffer_readings {}\n", b.batch_readings);
  metric("verge_node_buffer_bytes", "gauge", "Compressed bytes waiting for the cloud.");
  out += fmt::format("verge_node_buffer_bytes {}\n", b.batch_bytes);
  auto ing = ingestor_->stats();
  metric("verge_node_ingest_accepted_total", "counter", "Readings accepted from devices.");
  out += fmt::format("verge_node_ingest_accepted_total {}\n", ing.clean.accepted);
  auto u = uplink_->stats();
  metric("verge_node_uplink_acked_total", "counter", "Batches the cloud acknowledged.");
  out += fmt::format("verge_node_uplink_acked_total {}\n", u.acked);
  metric("verge_node_desired_version", "gauge", "Desired-state version the node applied.");
  out += fmt::format("verge_node_desired_version {}\n", applied_version_.load());
  return out;
}

std::string DataPlane::StatsJson() const {
  nlohmann::json j;
  auto ing = ingestor_->stats();
  nlohmann::json rejected = nlohmann::json::object();
  for (size_t i = 0; i < data::kNumRejectReasons; ++i) {
    auto reason = static_cast<data::RejectReason>(i);
    uint64_t n = ing.parse[reason] + ing.clean[reason];
    if (n) rejected[std::string(data::ReasonName(reason))] = n;
  }
  j["ingest"] = {{"payloads", ing.payloads},
                 {"malformed", ing.malformed},
                 {"accepted", ing.clean.accepted},
                 {"rejected", rejected},
                 {"storeErrors", ing.store_errors}};
  auto b = buffer_->stats();
  nlohmann::json evicted = nlohmann::json::object();
  for (size_t p = 0; p < data::kPriorities; ++p) {
    const auto& c = b.by_priority[p];
    if (!c.evicted_batches && !c.expired_batches) continue;
    evicted[v1::Priority_Name(static_cast<v1::Priority>(p))] = {
        {"evictedBatches", c.evicted_batches},
        {"evictedReadings", c.evicted_readings},
        {"expiredBatches", c.expired_batches},
        {"expiredReadings", c.expired_readings}};
  }
  j["buffer"] = {{"journalEntries", b.journal_entries},
                 {"journalBytes", b.journal_bytes},
                 {"batches", b.batches},
                 {"bytes", b.batch_bytes},
                 {"readings", b.batch_readings},
                 {"ackedBatches", b.acked_batches},
                 {"ackedReadings", b.acked_readings},
                 {"dropped", evicted}};
  auto p = pipeline_->stats();
  j["pipeline"] = {{"processed", p.processed},
                   {"passed", p.passed},
                   {"suppressed", p.suppressed},
                   {"batches", p.batches},
                   {"bytesRaw", p.batch_bytes_raw},
                   {"bytesCompressed", p.batch_bytes_compressed},
                   {"errors", p.errors},
                   {"lastError", p.last_error}};
  auto u = uplink_->stats();
  j["uplink"] = {{"connected", u.connected},
                 {"inFlight", u.in_flight},
                 {"sent", u.sent},
                 {"acked", u.acked},
                 {"resent", u.resent},
                 {"errors", u.errors},
                 {"ackTimeouts", u.ack_timeouts},
                 {"bytesSent", u.bytes_sent},
                 {"rateWaits", u.rate_waits}};
  nlohmann::json mb = nlohmann::json::object();
  for (const auto& [name, s] : modbus_->Stats()) {
    mb[name] = {{"polls", s.polls},         {"readings", s.readings},
                {"errors", s.errors},       {"reconnects", s.reconnects},
                {"connected", s.connected}, {"lastError", s.last_error}};
  }
  j["modbus"] = mb;
  if (subscriber_) {
    auto ms = subscriber_->Stats();
    nlohmann::json mq = {{"connected", ms.connected},        {"messages", ms.messages},
                         {"accepted", ms.readings.accepted}, {"malformed", ms.malformed},
                         {"sinkErrors", ms.sink_errors},     {"lastError", ms.last_error}};
    if (broker_) {
      auto bs = broker_->Stats();
      mq["broker"] = {{"running", bs.running},    {"restarts", bs.restarts},
                      {"reloads", bs.reloads},    {"devices", bs.devices},
                      {"lastExit", bs.last_exit}, {"lastError", bs.last_error}};
    }
    j["mqtt"] = mq;
  }
  j["desiredState"] = {{"appliedVersion", applied_version_.load()}};
  auto a = autonomy_->Snapshot();
  j["link"] = {{"state", LinkModeName(a.mode)},
               {"stateForMs", a.in_state_ms},
               {"transitions", a.transitions},
               {"failedAttempts", a.failures}};
  return j.dump();
}

namespace {

nlohmann::json OverrideJson(const Override& o, const OverridePolicies& policies) {
  return {{"kind", OverrideKindName(o.kind)},
          {"name", o.name},
          {"version", o.version},
          {"origin", o.origin},
          {"at", FormatTimeMs(o.at_ms)},
          {"policy", OverridePolicyName(policies.For(o.kind))},
          {"spec", o.spec},
          {"base", o.base}};
}

http::Response JsonResponse(int status, const nlohmann::json& j) {
  http::Response r;
  r.status = status;
  r.body = j.dump();
  return r;
}

}  // namespace

Result<Override> DataPlane::PutOverride(OverrideKind kind, const std::string& name,
                                        nlohmann::json spec, const std::string& origin) {
  std::lock_guard lock(state_mu_);
  auto base = ItemJson(cloud_desired_, kind, name);
  if (!base) {
    return Error(
        Code::kNotFound, "the cloud's desired state has no {} {} on this node{}",
        OverrideKindName(kind), name,
        kind == OverrideKind::kRule ? " (a local rule is changed with PUT /rules/NAME)" : "");
  }
  VERGE_RETURN_IF_ERROR(ValidateItemJson(kind, spec));
  if (kind == OverrideKind::kRule) {
    nlohmann::json body = spec;
    body["name"] = name;
    body.erase("stopped");
    auto parsed = rules::ParseRuleSpec(body);
    if (!parsed.ok()) return Error(Code::kInvalidArgument, "{}", parsed.error().ToString());
  }
  Override o;
  o.kind = kind;
  o.name = name;
  o.origin = origin;
  o.at_ms = clock_.WallMs();
  o.base = *base;
  o.spec = std::move(spec);
  VERGE_ASSIGN_OR_RETURN(Override saved, overrides_->Put(std::move(o)));
  ReapplyLocked();
  v1::NodeEvent e;
  e.set_ts_ms(saved.at_ms);
  e.set_type("override.created");
  e.set_message(fmt::format("{} {} overridden on the node (override v{} by {}){}",
                            OverrideKindName(kind), name, saved.version, saved.origin,
                            apply_error_.empty() ? "" : "; applying it: " + apply_error_));
  AddNodeEvents({std::move(e)});
  return saved;
}

http::Response DataPlane::HandleOverrides(const http::Request& req) {
  auto fail = [](const Status& st) {
    http::Response r = http::ErrorResponse(st);
    if (st.code() == Code::kInvalidArgument) r.status = 400;
    return r;
  };
  std::string origin = "local-api";
  if (std::string who = req.Header("x-verge-operator"); !who.empty())
    origin += ":" + who.substr(0, 64);
  // /apps/NAME/stop | /apps/NAME/start
  if (req.path.rfind("/apps/", 0) == 0) {
    std::string rest = req.path.substr(6);
    size_t slash = rest.find('/');
    std::string name = rest.substr(0, slash);
    std::string op = slash == std::string::npos ? "" : rest.substr(slash + 1);
    if (req.method != "POST" || (op != "stop" && op != "start"))
      return fail(Error(Code::kInvalidArgument, "use POST /apps/NAME/stop or /apps/NAME/start"));
    if (op == "stop") {
      auto o = PutOverride(OverrideKind::kApp, name, {{"stopped", true}}, origin);
      if (!o.ok()) return fail(o.status());
      return JsonResponse(200, OverrideJson(*o, options_.override_policies));
    }
    std::lock_guard lock(state_mu_);
    auto removed = overrides_->Remove(OverrideKind::kApp, name);
    if (!removed.ok()) return fail(removed.status());
    if (!*removed) return fail(Error(Code::kNotFound, "app {} was not stopped on this node", name));
    ReapplyLocked();
    v1::NodeEvent e;
    e.set_ts_ms(clock_.WallMs());
    e.set_type("override.removed");
    e.set_message(fmt::format("app {} started again on the node (by {})", name, origin));
    AddNodeEvents({std::move(e)});
    return JsonResponse(200, {{"app", name}, {"stopped", false}});
  }
  // /overrides, /overrides/KIND/NAME
  if (req.path == "/overrides") {
    if (req.method != "GET") return fail(Error(Code::kInvalidArgument, "use GET /overrides"));
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& o : overrides_->List())
      arr.push_back(OverrideJson(o, options_.override_policies));
    return JsonResponse(200, arr);
  }
  std::string rest = req.path.substr(std::string_view("/overrides/").size());
  size_t slash = rest.find('/');
  if (slash == std::string::npos || slash + 1 >= rest.size())
    return fail(Error(Code::kNotFound, "use /overrides/KIND/NAME (KIND: rule, device or app)"));
  auto kind = ParseOverrideKind(rest.substr(0, slash));
  if (!kind.ok()) return fail(kind.status());
  std::string name = rest.substr(slash + 1);
  if (req.method == "GET") {
    std::lock_guard lock(state_mu_);
    auto cloud = ItemJson(cloud_desired_, *kind, name);
    if (!cloud)
      return fail(Error(Code::kNotFound, "no {} {} on this node", rest.substr(0, slash), name));
    auto o = overrides_->Get(*kind, name);
    nlohmann::json j = {
        {"cloud", *cloud},
        {"effective",
         ItemJson(overrides_->Overlay(cloud_desired_), *kind, name).value_or(nlohmann::json())},
        {"override", o ? OverrideJson(*o, options_.override_policies) : nlohmann::json(nullptr)}};
    return JsonResponse(200, j);
  }
  if (req.method == "PUT" || req.method == "PATCH") {
    nlohmann::json body = nlohmann::json::parse(req.body, nullptr, false);
    if (body.is_discarded() || !body.is_object())
      return fail(Error(Code::kInvalidArgument, "the body must be a JSON object"));
    nlohmann::json spec = body;
    if (req.method == "PATCH") {
      // A JSON merge patch (RFC 7386) on what runs now.
      std::lock_guard lock(state_mu_);
      auto now = ItemJson(overrides_->Overlay(cloud_desired_), *kind, name);
      if (!now)
        return fail(Error(Code::kNotFound, "no {} {} on this node", rest.substr(0, slash), name));
      spec = *now;
      spec.merge_patch(body);
    }
    auto o = PutOverride(*kind, name, std::move(spec), origin);
    if (!o.ok()) return fail(o.status());
    return JsonResponse(200, OverrideJson(*o, options_.override_policies));
  }
  if (req.method == "DELETE") {
    std::lock_guard lock(state_mu_);
    auto removed = overrides_->Remove(*kind, name);
    if (!removed.ok()) return fail(removed.status());
    if (!*removed) return fail(Error(Code::kNotFound, "no override of {}", rest));
    ReapplyLocked();
    v1::NodeEvent e;
    e.set_ts_ms(clock_.WallMs());
    e.set_type("override.removed");
    e.set_message(fmt::format("{} {}: override removed on the node (by {}); the cloud's runs",
                              rest.substr(0, slash), name, origin));
    AddNodeEvents({std::move(e)});
    return JsonResponse(200, {{"removed", rest}});
  }
  return fail(Error(Code::kInvalidArgument, "use GET, PUT, PATCH or DELETE /overrides/KIND/NAME"));
}

}  // namespace verge::node
