// DataPlane: the node's data path, composed. It owns, in start order: the local time-series,
// the uplink buffer (journal + batches), the ingestor, the pipeline, the uplink sender, the
// Modbus poller and the local HTTP API; and it applies the devices of the desired state to
// them. The desired state is persisted before it is applied, so a node restarted while offline
// comes back with the same devices, and reports which version it applied.
//
// Thread-safety: Start/Stop from one thread. OnSession/OnMessage come from the link's thread.
// Everything else is thread-safe.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/clock.h"
#include "common/duration.h"
#include "common/http_server.h"
#include "node/apps.h"
#include "node/autonomy.h"
#include "node/data/buffer.h"
#include "node/data/ingestor.h"
#include "node/data/pipeline.h"
#include "node/data/series.h"
#include "node/data/uplink.h"
#include "node/local_api.h"
#include "node/modbus/poller.h"
#include "node/mqtt/broker.h"
#include "node/mqtt/client.h"
#include "node/mqtt/subscriber.h"
#include "node/overrides.h"
#include "node/rule_manager.h"
#include "verge/v1/link.pb.h"

namespace verge::node {

struct DataPlaneOptions {
  std::string dir;  // DATA/data
  std::string http_listen = "127.0.0.1:7480";
  data::BufferOptions buffer;
  data::PipelineOptions pipeline;
  data::UplinkOptions uplink;
  Millis retention{24LL * 3600 * 1000};
  size_t max_body_bytes = 16 << 20;
  // MQTT: the node's own supervised Mosquitto listens here ("off": none), unless an external
  // broker is given, which the node then only subscribes to.
  std::string mqtt_listen = "127.0.0.1:1883";
  std::string mqtt_dir;     // DATA/mqtt
  std::string mqtt_broker;  // HOST:PORT of an external broker
  std::string mqtt_username, mqtt_password;
  std::string node_name;  // for the MQTT client id
  // Rules: rules.db lives here (DATA/rules); StateReports with rule statuses at most this often.
  std::string rules_dir;
  Millis rule_report_interval{10'000};
  // Apps: the manager's options, the runtimes it may use, and where artifacts come from.
  AppManagerOptions apps;
  std::map<runtime::Kind, runtime::Runtime*> runtimes;
  ArtifactSource* artifacts = nullptr;
  // Workload statuses reach the cloud as they change, at most this often.
  Millis app_report_interval{100};
  AutonomyOptions autonomy;
  OverridePolicies override_policies;
  // Cloud time minus node time as the link measured it, for last-writer-wins.
  std::function<int64_t()> clock_skew;
};

class DataPlane {
 public:
  using SendFn = std::function<void(v1::Envelope)>;

  DataPlane(DataPlaneOptions options, const Clock& clock, SendFn send);
  ~DataPlane();
  DataPlane(const DataPlane&) = delete;
  DataPlane& operator=(const DataPlane&) = delete;

  Status Start();
  void Stop();

  // Link hooks. `why` says why a stream ended.
  void OnSession(bool up, const v1::HelloAck* ack, const std::string& why);
  void OnMessage(const v1::Envelope& env);
  // A dial or handshake failed, or a stream ended; `why` is the link's reason.
  void OnLinkAttemptFailed(const std::string& why);
  // Any frame from the cloud.
  void OnHeard() { autonomy_->Heard(); }
  v1::ResumeState Resume() const;
  const Autonomy& autonomy() const { return *autonomy_; }

  std::string http_address() const { return http_address_; }
  // Batches wait for the cloud.
  bool HasBacklog() const;
  std::string StatsJson() const;
  // GET /status: the link's autonomy state and its history, and the app replicas.
  std::string StatusJson() const;
  // GET /metrics: Prometheus text.
  std::string MetricsText() const;
  // The local API's /overrides and /apps/NAME/stop|start (docs/autonomy.md).
  http::Response HandleOverrides(const http::Request& req);

 private:
  Status Apply(const v1::DesiredState& desired);
  Status StartMqtt();
  Status StartRuleMqtt();
  void Maintain();
  // The StateReport: applied version, its error, and every rule's status.
  v1::Envelope Report();
  Status AddAlerts(std::vector<v1::Alert> alerts);
  // Autonomy transitions become autonomy.* events in the uplink buffer (kept in memory and
  // retried while the buffer refuses them, for example on a full disk).
  void QueueAutonomyEvents();
  void WakeMaintenance();
  void AddNodeEvents(std::vector<v1::NodeEvent> events);
  // Applies the cloud's desired state with the overrides laid over it. REQUIRES: state_mu_.
  Status ApplyEffectiveLocked();
  // Resolves the overrides against cloud_desired_ (all, or those whose item changed since
  // `before`), reporting each as an event; true if there were any. REQUIRES: state_mu_.
  bool ResolveOverridesLocked(const v1::DesiredState* before);
  Result<Override> PutOverride(OverrideKind kind, const std::string& name, nlohmann::json spec,
                               const std::string& origin);
  Status WriteModbus(const rules::ActionSpec& spec, double value);
  void SendLogs(const v1::Envelope& request);

  DataPlaneOptions options_;
  const Clock& clock_;
  SendFn send_;

  std::unique_ptr<data::SeriesStore> series_;
  std::unique_ptr<data::UplinkBuffer> buffer_;
  std::unique_ptr<data::Pipeline> pipeline_;
  std::unique_ptr<data::Ingestor> ingestor_;
  std::unique_ptr<data::UplinkSender> uplink_;
  std::unique_ptr<modbus::ModbusPoller> modbus_;
  std::unique_ptr<mqtt::MosquittoBroker> broker_;
  std::unique_ptr<mqtt::MqttSubscriber> subscriber_;
  std::vector<mqtt::BrokerDevice> mqtt_devices_;  // GUARDED_BY(state_mu_)
  std::unique_ptr<RuleManager> rules_;
  std::unique_ptr<AppManager> apps_;
  std::unique_ptr<mqtt::MqttClient> rule_mqtt_;
  std::map<std::string, modbus::ModbusDevice> modbus_by_name_;  // GUARDED_BY(state_mu_)
  std::atomic<bool> session_up_{false};
  std::unique_ptr<Autonomy> autonomy_;
  std::mutex events_mu_;
  std::vector<v1::NodeEvent> unsaved_events_;  // GUARDED_BY(events_mu_)
  std::unique_ptr<OverrideStore> overrides_;
  v1::DesiredState cloud_desired_;       // GUARDED_BY(state_mu_): as the cloud sent it
  bool resolve_all_pending_ = false;     // GUARDED_BY(state_mu_): a resync has not resolved yet
  bool desired_unsaved_ = false;         // GUARDED_BY(state_mu_): applied, not yet on disk
  int64_t next_save_try_ = 0;            // GUARDED_BY(state_mu_)
  std::string apply_error_;              // GUARDED_BY(state_mu_): of the last apply
  std::string save_error_;               // GUARDED_BY(state_mu_): why the last save failed
  std::string StateErrorLocked() const;  // REQUIRES: state_mu_
  void RetrySaveDesired();
  // Replicas of the cloud's desired state that a local override keeps stopped, as statuses
  // ("stopped", with the override in last_error), so that the cloud and /status show them.
  std::vector<v1::WorkloadStatus> StoppedOnSite() const;
  void ReapplyLocked();  // ApplyEffectiveLocked, recording its outcome. REQUIRES: state_mu_
  DeviceDirectory devices_;
  std::unique_ptr<LocalApi> api_;
  std::unique_ptr<http::HttpServer> http_;
  std::string http_address_;

  std::atomic<uint64_t> applied_version_{0};
  mutable std::mutex state_mu_;  // serialises persisting and applying desired state
  std::string state_error_;

  std::mutex maint_mu_;
  std::condition_variable maint_cv_;
  bool stopping_ = false;  // GUARDED_BY(maint_mu_)
  bool wake_ = false;      // GUARDED_BY(maint_mu_): the link changed something to report
  std::thread maint_;
  bool started_ = false;
};

}  // namespace verge::node
