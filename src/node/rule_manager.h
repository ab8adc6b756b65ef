// RuleManager: runs the node's streaming SQL rules (docs/rules.md) on live data.
//
// Rules come from the cloud's desired state (origin "cloud", SetCloudRules) or from the node's
// local API (origin "local", kept in rules.db so that they work offline and after restarts). A
// cloud rule replaces a local one of the same name.
//
// Inputs, all through one bounded queue to one thread (verge-rules) that owns every rule
// engine:
//   - `telemetry`: the cleaned readings, as the pipeline takes them from the journal
//     (OnReadings), one event per device and timestamp with columns device_id, ts (Unix ms) and
//     one float column per metric. Event time on ts.
//   - MQTT streams (TYPE="mqtt", the default): messages on DATASOURCE (a topic filter) on the
//     node's broker; a JSON object is one event, an array of objects one event each.
//   - memory streams (TYPE="memory"): rows another rule's `memory` action sends to DATASOURCE.
// When the queue is full, new events are dropped and counted against every running rule (their
// status shows `dropped`): a rule that cannot keep up never slows ingest down.
//
// Time. A stream with TIMESTAMP (and telemetry) runs on event time: the rule's clock is also
// moved to the node's clock minus idle_grace every tick, so that windows close (lateTolerance +
// idle_grace after their end at the latest) even when events stop. Other streams run on
// processing time (arrival time, and the node's clock every tick).
//
// Checkpoints. Every rule's state (open windows, analytic state, counters) is saved in rules.db
// every checkpointIntervalMs while it changes, and when the rule or the node stops. After a
// restart the rule resumes from its checkpoint, so a crash loses at most the events of the last
// checkpoint interval (and events still queued). A rule whose SQL changed, or that an operator
// restarted, starts from empty state.
//
// Thread-safety: thread-safe.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/duration.h"
#include "common/sqlite.h"
#include "common/status.h"
#include "node/data/reading.h"
#include "node/rule_actions.h"
#include "node/rules/engine.h"
#include "node/rules/spec.h"
#include "verge/v1/link.pb.h"

namespace verge::node {

struct RuleManagerOptions {
  std::string dir;  // rules.db lives here
  size_t max_queued_events = 100'000;
  Millis tick{100};
  int64_t idle_grace_ms = 2000;
};

class RuleManager {
 public:
  // `hooks.memory` is filled in by the manager itself.
  RuleManager(RuleManagerOptions options, const Clock& clock, ActionHooks hooks);
  ~RuleManager();
  RuleManager(const RuleManager&) = delete;
  RuleManager& operator=(const RuleManager&) = delete;

  // Opens rules.db and starts the local rules it holds (cloud rules come with SetCloudRules).
  Status Start();
  // Checkpoints every rule and stops.
  void Stop();

  // The rules of the desired state; a rule that cannot run is reported with status "error".
  void SetCloudRules(const google::protobuf::RepeatedPtrField<v1::Rule>& rules);

  // The local API. Bodies are docs/rules.md's rule objects.
  // Creates or (replace) replaces a local rule. kAlreadyExists: the name is taken (and not
  // replace); kFailedPrecondition: a cloud rule has it; kInvalidArgument with the spec's errors
  // (invalid SQL: line and column in `error`).
  Status PutLocal(const nlohmann::json& body, bool replace, rules::ParseError* error = nullptr);
  Status DeleteLocal(const std::string& name);
  // "start", "stop" or "restart" a local rule.
  Status Control(const std::string& name, const std::string& op);
  nlohmann::json ListJson() const;
  Result<nlohmann::json> GetJson(const std::string& name) const;

  // Inputs (any thread; never block).
  void OnReadings(std::span<const data::Reading> readings);
  void OnMqttMessage(std::string_view topic, std::string_view payload);
  void PublishMemory(const std::string& topic, const std::vector<rules::Row>& rows);

  // Every rule's status, by name.
  std::vector<v1::RuleStatus> Statuses() const;
  // Changes whenever a status may have changed.
  uint64_t status_version() const { return status_version_.load(); }
  // The topic filters of the MQTT streams of running rules; `fn` is called (with the manager's
  // lock held: it must not call back) whenever they change.
  void OnSubscriptions(std::function<void(std::set<std::string>)> fn);

 private:
  struct Managed;
  struct Event;

  void Run();
  void Process(std::deque<Event>& events);
  void Tick();
  void Route(Managed& m, const std::vector<rules::Emission>& emissions, int64_t enqueued_us);
  // REQUIRES: mu_ held.
  void StartLocked(Managed& m, const std::string* carried_state);
  void StopLocked(Managed& m, bool checkpoint);
  void CheckpointLocked(Managed& m);
  void DropCheckpointLocked(const std::string& name);
  void SourcesChangedLocked();
  v1::RuleStatus StatusLocked(const Managed& m) const;
  nlohmann::json JsonLocked(const Managed& m) const;
  Status SaveLocalLocked(const Managed& m);

  const RuleManagerOptions options_;
  const Clock& clock_;
  ActionHooks hooks_;
  std::unique_ptr<sql::Db> db_;

  // Rules: the worker processes events with mu_ held, in slices, so API calls wait at most
  // one slice.
  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<Managed>> rules_;  // GUARDED_BY(mu_)
  std::function<void(std::set<std::string>)> on_subscriptions_;
  std::set<std::string> subscriptions_;  // GUARDED_BY(mu_)
  // Actions of stopped or replaced rules, told to stop: joined by the worker without mu_ held,
  // since a delivery in progress (a webhook) may take its whole timeout.
  std::vector<std::unique_ptr<ActionRunner>> retired_;  // GUARDED_BY(mu_)

  std::mutex queue_mu_;
  std::condition_variable queue_cv_;
  std::deque<Event> queue_;  // GUARDED_BY(queue_mu_)
  uint64_t dropped_ = 0;     // GUARDED_BY(queue_mu_): events the queue had no room for
  bool stopping_ = false;    // GUARDED_BY(queue_mu_)
  std::thread thread_;
  std::atomic<uint64_t> status_version_{0};
  // A running rule reads `telemetry` (set with mu_ held, read by the pipeline).
  std::atomic<bool> telemetry_wanted_{false};
  bool started_ = false;
};

}  // namespace verge::node
