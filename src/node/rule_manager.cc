#include "node/rule_manager.h"

#include <mosquitto.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>

#include "common/fs.h"
#include "node/rules/eval.h"
#include "node/rules/json_value.h"

namespace verge::node {

namespace {

constexpr sql::Migration kMigrations[] = {
    {1, R"sql(
CREATE TABLE local_rules (
  name TEXT PRIMARY KEY,
  body TEXT NOT NULL,
  stopped INTEGER NOT NULL DEFAULT 0,
  generation INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE checkpoints (
  name TEXT PRIMARY KEY,
  origin TEXT NOT NULL,
  generation INTEGER NOT NULL,
  state BLOB NOT NULL,
  saved_ms INTEGER NOT NULL
);
)sql"},
};

// Events per hold of the rules' lock.
constexpr size_t kSlice = 2048;
// Latency samples kept per rule (the last minute's, at most this many).
constexpr size_t kMaxLatencySamples = 4096;
constexpr int64_t kLatencyWindowUs = 60'000'000;
// Event time: how far ahead of the node's clock an event's timestamp may be.
constexpr int64_t kMaxFutureMs = 60'000;

int64_t SteadyUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string IdentityOf(const v1::Rule& r) {
  std::string id = r.sql() + '\x1f' + r.actions_json() + '\x1f' + r.options_json() + '\x1f';
  for (const auto& s : r.streams()) id += s + '\x1e';
  return id;
}

}  // namespace

struct RuleManager::Event {
  enum class Source : uint8_t { kTelemetry, kMqtt, kMemory };
  Source source = Source::kTelemetry;
  std::string topic;
  rules::Row row;
  int64_t arrival_ms = 0;
  int64_t enqueued_us = 0;
};

struct RuleManager::Managed {
  std::string name;
  std::string origin;    // "cloud" | "local"
  nlohmann::json body;   // the rule as given (local API) or as rebuilt from the proto (cloud)
  std::string identity;  // what, when it changes, makes the rule start again
  rules::RuleSpec spec;
  bool spec_ok = false;
  bool stopped = false;
  uint64_t generation = 0;
  std::string error;  // why it cannot run (status "error")
  std::unique_ptr<rules::Rule> rule;
  std::vector<std::unique_ptr<ActionRunner>> actions;
  bool event_time = false;
  std::string ts_column;
  int64_t last_checkpoint_ms = 0;
  uint64_t checkpointed_in = 0;  // records_in at the last checkpoint
  uint64_t dropped_in = 0;
  uint64_t future = 0;  // events refused for a timestamp too far ahead
  std::deque<std::pair<int64_t, uint32_t>> latencies;  // (steady us, latency us)
  rules::RuleCounters counters;                        // of the last run, once stopped

  bool Reads(Event::Source source, std::string_view topic) const {
    if (!rule) return false;
    const auto& t = spec.from.typed;
    switch (source) {
      case Event::Source::kTelemetry:
        return spec.from.name == rules::kTelemetryStream;
      case Event::Source::kMemory:
        return spec.from.name != rules::kTelemetryStream && t.type == "memory" &&
               t.datasource == topic;
      case Event::Source::kMqtt: {
        if (spec.from.name == rules::kTelemetryStream || t.type != "mqtt") return false;
        bool match = false;
        std::string topic_s(topic);
        return mosquitto_topic_matches_sub(t.datasource.c_str(), topic_s.c_str(), &match) ==
                   MOSQ_ERR_SUCCESS &&
               match;
      }
    }
    return false;
  }
};

RuleManager::RuleManager(RuleManagerOptions options, const Clock& clock, ActionHooks hooks)
    : options_(std::move(options)), clock_(clock), hooks_(std::move(hooks)) {
  hooks_.memory = [this](const std::string& topic, const std::vector<rules::Row>& rows) {
    PublishMemory(topic, rows);
  };
}

RuleManager::~RuleManager() { Stop(); }

Status RuleManager::Start() {
  VERGE_RETURN_IF_ERROR(MakeDirs(options_.dir));
  VERGE_ASSIGN_OR_RETURN(auto db, sql::Db::Open(options_.dir + "/rules.db"));
  VERGE_RETURN_IF_ERROR(db.Migrate(kMigrations));
  db_ = std::make_unique<sql::Db>(std::move(db));
  {
    std::lock_guard lock(mu_);
    VERGE_ASSIGN_OR_RETURN(auto st,
                           db_->Prepare("SELECT name, body, stopped, generation FROM local_rules"));
    for (;;) {
      VERGE_ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) break;
      auto m = std::make_unique<Managed>();
      m->name = st.Text(0);
      m->origin = "local";
      m->stopped = st.Int(2) != 0;
      m->generation = static_cast<uint64_t>(st.Int(3));
      m->body = nlohmann::json::parse(st.Text(1), nullptr, false);
      auto spec = rules::ParseRuleSpec(m->body);
      if (spec.ok()) {
        m->spec = std::move(spec).value();
        m->spec_ok = true;
      } else {
        m->error = spec.error().ToString();
      }
      StartLocked(*m, nullptr);
      rules_[m->name] = std::move(m);
    }
    SourcesChangedLocked();
  }
  {
    std::lock_guard lock(queue_mu_);
    stopping_ = false;
  }
  thread_ = std::thread([this] { Run(); });
  started_ = true;
  return Status::Ok();
}

void RuleManager::Stop() {
  if (!started_) return;
  started_ = false;
  {
    std::lock_guard lock(queue_mu_);
    stopping_ = true;
  }
  queue_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  std::vector<std::unique_ptr<ActionRunner>> retired;
  {
    std::lock_guard lock(mu_);
    for (auto& [name, m] : rules_) StopLocked(*m, /*checkpoint=*/true);
    retired.swap(retired_);
  }
  retired.clear();  // joins
}

// ---- inputs ----------------------------------------------------------------------------------

void RuleManager::OnReadings(std::span<const data::Reading> readings) {
  // The pipeline calls this for every reading: without a rule on telemetry it costs nothing.
  if (readings.empty() || !telemetry_wanted_.load(std::memory_order_relaxed)) return;
  int64_t now = clock_.WallMs();
  int64_t enq = SteadyUs();
  std::vector<Event> events;
  size_t i = 0;
  // One event per device and instant: a payload's metrics arrive together and in order.
  while (i < readings.size()) {
    const data::Reading& first = readings[i];
    rules::Object obj;
    obj.emplace("device_id", rules::Value::String(first.device));
    obj.emplace("ts", rules::Value::Int(first.ts_ns / 1'000'000));
    size_t j = i;
    for (; j < readings.size() && readings[j].device == first.device &&
           readings[j].ts_ns == first.ts_ns;
         ++j) {
      obj.insert_or_assign(readings[j].metric, rules::Value::Float(readings[j].value));
    }
    Event e;
    e.source = Event::Source::kTelemetry;
    e.row = rules::Value::MakeObject(std::move(obj));
    e.arrival_ms = now;
    e.enqueued_us = enq;
    events.push_back(std::move(e));
    i = j;
  }
  std::lock_guard lock(queue_mu_);
  for (auto& e : events) {
    if (queue_.size() >= options_.max_queued_events) {
      ++dropped_;
      continue;
    }
    queue_.push_back(std::move(e));
  }
  queue_cv_.notify_one();
}

void RuleManager::OnMqttMessage(std::string_view topic, std::string_view payload) {
  int64_t now = clock_.WallMs();
  int64_t enq = SteadyUs();
  std::vector<rules::Row> rows;
  auto parsed = rules::ParseJsonValue(payload);
  if (parsed.ok() && parsed->is_array()) {
    for (const auto& v : parsed->array_value()) rows.push_back(v);
  } else if (parsed.ok()) {
    rows.push_back(std::move(*parsed));
  } else {
    // Not JSON: an event that is not an object, which the rule counts as an exception.
    rows.push_back(rules::Value::String(std::string(payload.substr(0, 200))));
  }
  std::lock_guard lock(queue_mu_);
  for (auto& r : rows) {
    if (queue_.size() >= options_.max_queued_events) {
      ++dropped_;
      continue;
    }
    queue_.push_back(Event{Event::Source::kMqtt, std::string(topic), std::move(r), now, enq});
  }
  queue_cv_.notify_one();
}

void RuleManager::PublishMemory(const std::string& topic, const std::vector<rules::Row>& rows) {
  int64_t now = clock_.WallMs();
  int64_t enq = SteadyUs();
  std::lock_guard lock(queue_mu_);
  for (const auto& r : rows) {
    if (queue_.size() >= options_.max_queued_events) {
      ++dropped_;
      continue;
    }
    queue_.push_back(Event{Event::Source::kMemory, topic, r, now, enq});
  }
  queue_cv_.notify_one();
}

// ---- the worker ------------------------------------------------------------------------------

void RuleManager::Run() {
  int64_t next_tick = SteadyUs();
  std::deque<Event> batch;
  uint64_t seen_dropped = 0;
  for (;;) {
    uint64_t dropped = 0;
    {
      std::unique_lock lock(queue_mu_);
      queue_cv_.wait_for(lock, options_.tick, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      size_t n = std::min(queue_.size(), kSlice);
      for (size_t i = 0; i < n; ++i) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      dropped = dropped_ - seen_dropped;
      seen_dropped = dropped_;
    }
    if (dropped) {
      std::lock_guard lock(mu_);
      for (auto& [name, m] : rules_) {
        if (m->rule) m->dropped_in += dropped;
      }
    }
    size_t n = batch.size();
    if (n) Process(batch);
    if (SteadyUs() >= next_tick) {
      Tick();
      next_tick =
          SteadyUs() + std::chrono::duration_cast<std::chrono::microseconds>(options_.tick).count();
    }
    if (n || dropped) ++status_version_;
    std::vector<std::unique_ptr<ActionRunner>> retired;
    {
      std::lock_guard lock(mu_);
      retired.swap(retired_);
    }
    retired.clear();  // joins
  }
}

void RuleManager::Process(std::deque<Event>& events) {
  std::lock_guard lock(mu_);
  for (Event& e : events) {
    for (auto& [name, m] : rules_) {
      if (!m->Reads(e.source, e.topic)) continue;
      int64_t ts = e.arrival_ms;
      if (m->event_time) {
        if (const rules::Value* v = e.row.Find(m->ts_column)) {
          if (auto ms = rules::DatetimeMillis(*v)) ts = *ms;
        }
        // One device's clock running ahead would move the watermark for every device and make
        // all their events late: such an event is refused instead.
        if (ts > e.arrival_ms + kMaxFutureMs) {
          ++m->future;
          continue;
        }
      }
      Route(*m, m->rule->Push(e.row, ts), e.enqueued_us);
    }
  }
  events.clear();
}

void RuleManager::Tick() {
  std::lock_guard lock(mu_);
  int64_t now = clock_.WallMs();
  for (auto& [name, m] : rules_) {
    if (!m->rule) continue;
    int64_t clock = m->event_time ? now - options_.idle_grace_ms : now;
    Route(*m, m->rule->AdvanceTo(clock), 0);
    if (now - m->last_checkpoint_ms >= m->spec.options.checkpoint_interval_ms &&
        m->rule->counters().records_in != m->checkpointed_in)
      CheckpointLocked(*m);
  }
}

void RuleManager::Route(Managed& m, const std::vector<rules::Emission>& emissions,
                        int64_t enqueued_us) {
  if (emissions.empty()) return;
  int64_t now_ms = clock_.WallMs();
  for (const rules::Emission& e : emissions) {
    if (e.empty()) continue;
    for (auto& a : m.actions) a->Enqueue(now_ms, e);
  }
  if (enqueued_us > 0) {
    int64_t now = SteadyUs();
    m.latencies.emplace_back(
        now, static_cast<uint32_t>(std::min<int64_t>(now - enqueued_us, UINT32_MAX)));
    while (m.latencies.size() > kMaxLatencySamples ||
           (!m.latencies.empty() && m.latencies.front().first < now - kLatencyWindowUs))
      m.latencies.pop_front();
  }
}

// ---- lifecycle of one rule (mu_ held) ---------------------------------------------------------

void RuleManager::StartLocked(Managed& m, const std::string* carried_state) {
  m.rule.reset();
  m.actions.clear();
  if (!m.spec_ok || m.stopped) return;
  rules::RuleOptions ro;
  ro.late_tolerance_ms = m.spec.options.late_tolerance_ms;
  auto rule = rules::Rule::Create(m.spec.select, m.spec.from, ro);
  if (!rule.ok()) {
    m.error = std::string(rule.status().message());
    return;
  }
  m.rule = std::move(*rule);
  m.error.clear();
  m.event_time = !m.spec.from.typed.timestamp.empty();
  m.ts_column = m.spec.from.typed.timestamp;
  // The state: carried over from the same rule being replaced, else its checkpoint.
  bool restored = false;
  if (carried_state) restored = m.rule->Restore(*carried_state).ok();
  if (!restored && db_) {
    auto st = db_->Prepare(
        "SELECT state FROM checkpoints WHERE name = ? AND origin = ? AND "
        "generation = ?");
    if (st.ok()) {
      st->Bind(1, m.name).Bind(2, m.origin).Bind(3, static_cast<int64_t>(m.generation));
      auto row = st->Step();
      if (row.ok() && *row) {
        Status rs = m.rule->Restore(st->BlobView(0));
        if (rs.ok()) {
          restored = true;
          spdlog::info("rule {}: resumed from its checkpoint", m.name);
        } else {
          spdlog::info("rule {}: starting from empty state ({})", m.name, rs.message());
        }
      }
    }
  }
  m.checkpointed_in = m.rule->counters().records_in;
  m.last_checkpoint_ms = clock_.WallMs();
  for (const auto& a : m.spec.actions)
    m.actions.push_back(std::make_unique<ActionRunner>(m.name, a, MakeSink(m.name, a, hooks_)));
  ++status_version_;
}

void RuleManager::StopLocked(Managed& m, bool checkpoint) {
  if (m.rule) {
    if (checkpoint) CheckpointLocked(m);
    m.counters = m.rule->counters();
  }
  for (auto& a : m.actions) {
    a->RequestStop();
    retired_.push_back(std::move(a));
  }
  m.actions.clear();
  m.rule.reset();
  ++status_version_;
}

void RuleManager::CheckpointLocked(Managed& m) {
  if (!m.rule || !db_) return;
  std::string state = m.rule->Snapshot();
  auto st = db_->Prepare(
      "INSERT INTO checkpoints(name, origin, generation, state, saved_ms) VALUES (?, ?, ?, ?, ?) "
      "ON CONFLICT(name) DO UPDATE SET origin = excluded.origin, generation = "
      "excluded.generation, state = excluded.state, saved_ms = excluded.saved_ms");
  Status s = st.status();
  if (st.ok()) {
    st->Bind(1, m.name)
        .Bind(2, m.origin)
        .Bind(3, static_cast<int64_t>(m.generation))
        .BindBlob(4, state)
        .Bind(5, clock_.WallMs());
    s = st->Run();
  }
  if (!s.ok()) {
    spdlog::warn("rule {}: checkpoint not saved: {}", m.name, s.message());
    return;
  }
  m.last_checkpoint_ms = clock_.WallMs();
  m.checkpointed_in = m.rule->counters().records_in;
}

void RuleManager::DropCheckpointLocked(const std::string& name) {
  if (!db_) return;
  auto st = db_->Prepare("DELETE FROM checkpoints WHERE name = ?");
  if (st.ok()) (void)st->Bind(1, name).Run();
}

void RuleManager::SourcesChangedLocked() {
  std::set<std::string> filters;
  bool telemetry = false;
  for (const auto& [name, m] : rules_) {
    if (!m->rule) continue;
    if (m->spec.from.name == rules::kTelemetryStream) {
      telemetry = true;
    } else if (m->spec.from.typed.type == "mqtt") {
      filters.insert(m->spec.from.typed.datasource);
    }
  }
  telemetry_wanted_ = telemetry;
  if (filters == subscriptions_) return;
  subscriptions_ = filters;
  if (on_subscriptions_) on_subscriptions_(std::move(filters));
}

void RuleManager::OnSubscriptions(std::function<void(std::set<std::string>)> fn) {
  std::lock_guard lock(mu_);
  on_subscriptions_ = std::move(fn);
  if (on_subscriptions_) on_subscriptions_(subscriptions_);
}

Status RuleManager::SaveLocalLocked(const Managed& m) {
  if (!db_) return Status::Ok();
  VERGE_ASSIGN_OR_RETURN(
      auto st, db_->Prepare("INSERT INTO local_rules(name, body, stopped, generation) VALUES (?, "
                            "?, ?, ?) ON CONFLICT(name) DO UPDATE SET body = excluded.body, "
                            "stopped = excluded.stopped, generation = excluded.generation"));
  st.Bind(1, m.name)
      .Bind(2, m.body.dump())
      .Bind(3, int64_t{m.stopped ? 1 : 0})
      .Bind(4, static_cast<int64_t>(m.generation));
  return st.Run();
}

// ---- cloud rules -------------------------------------------------------------------------------

void RuleManager::SetCloudRules(const google::protobuf::RepeatedPtrField<v1::Rule>& cloud) {
  std::lock_guard lock(mu_);
  std::set<std::string> wanted;
  for (const v1::Rule& r : cloud) {
    wanted.insert(r.name());
    std::string identity = IdentityOf(r);
    auto it = rules_.find(r.name());
    if (it != rules_.end() && it->second->origin == "cloud" && it->second->identity == identity &&
        it->second->generation == r.restart_generation()) {
      Managed& m = *it->second;
      if (m.stopped != r.stopped()) {
        m.stopped = r.stopped();
        if (m.stopped) {
          StopLocked(m, true);
        } else {
          StartLocked(m, nullptr);
        }
      }
      continue;
    }
    auto m = std::make_unique<Managed>();
    m->name = r.name();
    m->origin = "cloud";
    m->identity = identity;
    m->stopped = r.stopped();
    m->generation = r.restart_generation();
    nlohmann::json body = {{"name", r.name()}, {"sql", r.sql()}};
    body["streams"] = nlohmann::json::array();
    for (const auto& s : r.streams()) body["streams"].push_back(s);
    body["actions"] = nlohmann::json::parse(r.actions_json(), nullptr, false);
    if (!r.options_json().empty())
      body["options"] = nlohmann::json::parse(r.options_json(), nullptr, false);
    m->body = body;
    auto spec = rules::ParseRuleSpec(body);
    if (spec.ok()) {
      m->spec = std::move(spec).value();
      m->spec_ok = true;
    } else {
      m->error = spec.error().ToString();
      spdlog::warn("rule {} from the cloud cannot run: {}", r.name(), m->error);
    }
    // The same rule with other actions keeps its windows; a restart or new SQL does not.
    std::string carried;
    bool carry = false;
    if (it != rules_.end()) {
      Managed& old = *it->second;
      if (old.origin == "local") {
        spdlog::warn("rule {}: the cloud's rule replaces the local one of the same name", r.name());
        if (db_) {
          auto del = db_->Prepare("DELETE FROM local_rules WHERE name = ?");
          if (del.ok()) (void)del->Bind(1, r.name()).Run();
        }
      }
      if (old.rule && old.generation == m->generation && old.origin == "cloud") {
        carried = old.rule->Snapshot();
        carry = true;
      }
      StopLocked(old, /*checkpoint=*/false);
      if (!carry) DropCheckpointLocked(r.name());
      rules_.erase(it);
    }
    StartLocked(*m, carry ? &carried : nullptr);
    rules_[r.name()] = std::move(m);
  }
  for (auto it = rules_.begin(); it != rules_.end();) {
    if (it->second->origin == "cloud" && !wanted.count(it->first)) {
      StopLocked(*it->second, false);
      DropCheckpointLocked(it->first);
      it = rules_.erase(it);
    } else {
      ++it;
    }
  }
  SourcesChangedLocked();
  ++status_version_;
}

// ---- local rules ------------------------------------------------------------------------------

Status RuleManager::PutLocal(const nlohmann::json& body, bool replace, rules::ParseError* error) {
  auto spec = rules::ParseRuleSpec(body);
  if (!spec.ok()) {
    if (error) *error = spec.error();
    return Error(Code::kInvalidArgument, "{}", spec.error().ToString());
  }
  std::lock_guard lock(mu_);
  const std::string name = spec.value().name;
  auto it = rules_.find(name);
  std::string carried;
  bool carry = false;
  uint64_t generation = 0;
  bool stopped = false;
  if (it != rules_.end()) {
    if (it->second->origin == "cloud")
      return Error(
          Code::kFailedPrecondition,
          "rule {} comes from the cloud: change it there (vergectl apply), or override it on "
          "this node with PUT /overrides/rule/{}",
          name, name);
    if (!replace) return Error(Code::kAlreadyExists, "rule {} already exists", name);
    Managed& old = *it->second;
    generation = old.generation;
    stopped = old.stopped;
    if (old.rule && old.spec_ok && old.spec.sql == spec.value().sql) {
      carried = old.rule->Snapshot();
      carry = true;
    }
    StopLocked(old, false);
    if (!carry) DropCheckpointLocked(name);
    rules_.erase(it);
  }
  auto m = std::make_unique<Managed>();
  m->name = name;
  m->origin = "local";
  m->body = body;
  m->spec = std::move(spec).value();
  m->spec_ok = true;
  m->generation = generation;
  m->stopped = stopped;
  VERGE_RETURN_IF_ERROR(SaveLocalLocked(*m));
  StartLocked(*m, carry ? &carried : nullptr);
  rules_[name] = std::move(m);
  SourcesChangedLocked();
  return Status::Ok();
}

Status RuleManager::DeleteLocal(const std::string& name) {
  std::lock_guard lock(mu_);
  auto it = rules_.find(name);
  if (it == rules_.end()) return Error(Code::kNotFound, "no rule {}", name);
  if (it->second->origin == "cloud")
    return Error(Code::kFailedPrecondition,
                 "rule {} comes from the cloud: delete it there (vergectl rules delete)", name);
  if (db_) {
    VERGE_ASSIGN_OR_RETURN(auto del, db_->Prepare("DELETE FROM local_rules WHERE name = ?"));
    VERGE_RETURN_IF_ERROR(del.Bind(1, name).Run());
  }
  StopLocked(*it->second, false);
  DropCheckpointLocked(name);
  rules_.erase(it);
  SourcesChangedLocked();
  return Status::Ok();
}

Status RuleManager::Control(const std::string& name, const std::string& op) {
  std::lock_guard lock(mu_);
  auto it = rules_.find(name);
  if (it == rules_.end()) return Error(Code::kNotFound, "no rule {}", name);
  Managed& m = *it->second;
  if (m.origin == "cloud")
    return Error(Code::kFailedPrecondition,
                 "rule {} comes from the cloud: use vergectl rules {} {}", name, op, name);
  if (op == "stop") {
    if (m.stopped) return Status::Ok();
    m.stopped = true;
    StopLocked(m, true);
  } else if (op == "start") {
    if (!m.stopped && m.rule) return Status::Ok();
    m.stopped = false;
    StartLocked(m, nullptr);
  } else if (op == "restart") {
    StopLocked(m, false);
    DropCheckpointLocked(name);
    ++m.generation;
    m.stopped = false;
    m.counters = {};
    StartLocked(m, nullptr);
  } else {
    return Error(Code::kInvalidArgument, "unknown operation {}: use start, stop or restart", op);
  }
  VERGE_RETURN_IF_ERROR(SaveLocalLocked(m));
  SourcesChangedLocked();
  return Status::Ok();
}

// ---- status -------------------------------------------------------------------------------------

v1::RuleStatus RuleManager::StatusLocked(const Managed& m) const {
  v1::RuleStatus s;
  s.set_name(m.name);
  s.set_origin(m.origin);
  rules::RuleCounters c = m.rule ? m.rule->counters() : m.counters;
  std::string last_error = c.last_error;
  uint64_t exceptions = c.exceptions + m.future, dropped = m.dropped_in;
  if (m.future && last_error.empty())
    last_error = fmt::format("{} events more than {} s ahead of the node's clock were refused",
                             m.future, kMaxFutureMs / 1000);
  for (const auto& a : m.actions) {
    ActionStats as = a->stats();
    exceptions += as.failed;
    dropped += as.dropped;
    if (!as.last_error.empty() && last_error.empty())
      last_error =
          fmt::format("{} action: {}", rules::ActionKindName(a->spec().kind), as.last_error);
  }
  if (!m.error.empty()) {
    s.set_status("error");
    last_error = m.error;
  } else if (!m.rule) {
    s.set_status("stopped");
  } else {
    s.set_status("running");
  }
  s.set_records_in(c.records_in);
  s.set_records_out(c.records_out);
  s.set_exceptions(exceptions);
  s.set_last_error(last_error);
  s.set_dropped(dropped);
  if (!m.latencies.empty()) {
    std::vector<uint32_t> l;
    l.reserve(m.latencies.size());
    for (const auto& [t, us] : m.latencies) l.push_back(us);
    auto at = [&](double q) {
      size_t k = std::min(l.size() - 1, static_cast<size_t>(q * static_cast<double>(l.size())));
      std::nth_element(l.begin(), l.begin() + static_cast<std::ptrdiff_t>(k), l.end());
      return l[k];
    };
    s.set_latency_p50_us(at(0.5));
    s.set_latency_p99_us(at(0.99));
  }
  return s;
}

std::vector<v1::RuleStatus> RuleManager::Statuses() const {
  std::lock_guard lock(mu_);
  std::vector<v1::RuleStatus> out;
  for (const auto& [name, m] : rules_) out.push_back(StatusLocked(*m));
  return out;
}

nlohmann::json RuleManager::JsonLocked(const Managed& m) const {
  v1::RuleStatus s = StatusLocked(m);
  nlohmann::json j = m.body.is_object() ? m.body : nlohmann::json::object();
  j["name"] = m.name;
  j["origin"] = m.origin;
  j["status"] = s.status();
  j["recordsIn"] = s.records_in();
  j["recordsOut"] = s.records_out();
  j["exceptions"] = s.exceptions();
  j["lastError"] = s.last_error();
  j["dropped"] = s.dropped();
  j["latencyP50Us"] = s.latency_p50_us();
  j["latencyP99Us"] = s.latency_p99_us();
  nlohmann::json actions = nlohmann::json::array();
  for (const auto& a : m.actions) {
    ActionStats as = a->stats();
    actions.push_back({{"kind", rules::ActionKindName(a->spec().kind)},
                       {"delivered", as.delivered},
                       {"failed", as.failed},
                       {"dropped", as.dropped},
                       {"retries", as.retries},
                       {"lastError", as.last_error}});
  }
  j["actionStats"] = actions;
  // How far the saved state goes: a restart resumes from there.
  j["checkpointRecordsIn"] = m.checkpointed_in;
  return j;
}

nlohmann::json RuleManager::ListJson() const {
  std::lock_guard lock(mu_);
  nlohmann::json out = nlohmann::json::array();
  for (const auto& [name, m] : rules_) out.push_back(JsonLocked(*m));
  return out;
}

Result<nlohmann::json> RuleManager::GetJson(const std::string& name) const {
  std::lock_guard lock(mu_);
  auto it = rules_.find(name);
  if (it == rules_.end()) return Error(Code::kNotFound, "no rule {}", name);
  return JsonLocked(*it->second);
}

}  // namespace verge::node
