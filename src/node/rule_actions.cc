#include "node/rule_actions.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <chrono>

#include "common/https_client.h"
#include "node/rules/json_value.h"

namespace verge::node {

namespace {

using rules::ActionKind;
using rules::ActionSpec;
using rules::Row;

std::string Payload(const ActionOutput& out) {
  if (out.rows.size() == 1) return rules::ToNlohmann(out.rows[0]).dump();
  nlohmann::json arr = nlohmann::json::array();
  for (const Row& r : out.rows) arr.push_back(rules::ToNlohmann(r));
  return arr.dump();
}

const Row& FirstRow(const ActionOutput& out) {
  static const Row kEmpty;
  return out.rows.empty() ? kEmpty : out.rows.front();
}

class LogSink : public ActionSink {
 public:
  LogSink(std::string rule, const ActionSpec& spec) : rule_(std::move(rule)), spec_(spec) {}
  Status Deliver(const ActionOutput& out) override {
    if (spec_.level == "warning") {
      spdlog::warn("rule {}: {}", rule_, Payload(out));
    } else {
      spdlog::info("rule {}: {}", rule_, Payload(out));
    }
    return Status::Ok();
  }

 private:
  std::string rule_;
  ActionSpec spec_;
};

class MemorySink : public ActionSink {
 public:
  MemorySink(const ActionSpec& spec, const ActionHooks& hooks) : spec_(spec), hooks_(hooks) {}
  Status Deliver(const ActionOutput& out) override {
    if (!hooks_.memory) return Error(Code::kUnavailable, "memory streams are not available");
    hooks_.memory(spec_.topic, out.rows);
    return Status::Ok();
  }

 private:
  ActionSpec spec_;
  ActionHooks hooks_;
};

class MqttSink : public ActionSink {
 public:
  MqttSink(const ActionSpec& spec, const ActionHooks& hooks) : spec_(spec), hooks_(hooks) {}
  Status Deliver(const ActionOutput& out) override {
    if (!hooks_.mqtt) return Error(Code::kUnavailable, "the node has no MQTT broker");
    std::string topic = ExpandTemplate(spec_.topic, FirstRow(out));
    if (topic.empty() || topic.find_first_of("+#") != std::string::npos)
      return Error(Code::kInvalidArgument, "topic \"{}\" is not a valid topic name", topic);
    return hooks_.mqtt(topic, Payload(out), spec_.qos, spec_.retain);
  }

 private:
  ActionSpec spec_;
  ActionHooks hooks_;
};

class WebhookSink : public ActionSink {
 public:
  explicit WebhookSink(const ActionSpec& spec) : spec_(spec) {}
  Status Deliver(const ActionOutput& out) override {
    std::string url = ExpandTemplate(spec_.url, FirstRow(out));
    bool plain = url.rfind("http://", 0) == 0;
    std::string_view rest = std::string_view(url).substr(plain ? 7 : 8);
    size_t slash = rest.find('/');
    std::string authority(rest.substr(0, slash));
    std::string target = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
    if (authority.empty()) return Error(Code::kInvalidArgument, "webhook URL {} has no host", url);
    // SplitHostPort needs a port; the scheme's own is the default.
    bool has_port = authority.back() != ']' && authority.rfind(':') != std::string::npos &&
                    authority.find(':') == authority.rfind(':');
    if (authority.front() == '[') has_port = authority.find("]:") != std::string::npos;
    if (!has_port) authority += plain ? ":80" : ":443";
    http::ClientTls tls;
    tls.plain = plain;
    tls.system_roots = !plain;
    http::HttpsClient client(authority, tls, std::chrono::milliseconds(spec_.timeout_ms));
    auto res = client.Do(spec_.method, target, Payload(out), spec_.headers);
    if (!res.ok()) return res.status();
    int status = res->response.status;
    if (status >= 200 && status < 300) return Status::Ok();
    std::string body = res->response.body.substr(0, 200);
    // A 4xx other than 408/429 will not change by trying again.
    if (status >= 400 && status < 500 && status != 408 && status != 429)
      return Error(Code::kInvalidArgument, "webhook {} answered {}: {}", url, status, body);
    return Error(Code::kUnavailable, "webhook {} answered {}: {}", url, status, body);
  }

 private:
  ActionSpec spec_;
};

class AlertSink : public ActionSink {
 public:
  AlertSink(std::string rule, const ActionSpec& spec, const ActionHooks& hooks)
      : rule_(std::move(rule)), spec_(spec), hooks_(hooks) {}
  Status Deliver(const ActionOutput& out) override {
    if (!hooks_.alert) return Error(Code::kUnavailable, "alerts are not available");
    std::vector<v1::Alert> alerts;
    for (const Row& row : out.rows) {
      v1::Alert a;
      a.set_rule(rule_);
      a.set_ts_ms(out.ts_ms);
      a.set_severity(spec_.severity);
      a.set_data_json(rules::ToNlohmann(row).dump());
      a.set_message(ExpandTemplate(spec_.message, row));
      alerts.push_back(std::move(a));
    }
    return hooks_.alert(std::move(alerts));
  }

 private:
  std::string rule_;
  ActionSpec spec_;
  ActionHooks hooks_;
};

class ModbusSink : public ActionSink {
 public:
  ModbusSink(const ActionSpec& spec, const ActionHooks& hooks) : spec_(spec), hooks_(hooks) {}
  Status Deliver(const ActionOutput& out) override {
    if (!hooks_.modbus) return Error(Code::kUnavailable, "Modbus writes are not available");
    for (const Row& row : out.rows) {
      double value = 0;
      if (spec_.value) {
        value = *spec_.value;
      } else {
        const rules::Value* v = row.Find(spec_.value_column);
        std::optional<double> d = v ? rules::ToFloat(*v) : std::nullopt;
        if (!d)
          return Error(Code::kInvalidArgument, "the output has no numeric column {} to write",
                       spec_.value_column);
        value = *d;
      }
      VERGE_RETURN_IF_ERROR(hooks_.modbus(spec_, value));
    }
    return Status::Ok();
  }

 private:
  ActionSpec spec_;
  ActionHooks hooks_;
};

class FunctionSink : public ActionSink {
 public:
  FunctionSink(const ActionSpec& spec, const ActionHooks& hooks) : spec_(spec), hooks_(hooks) {}
  Status Deliver(const ActionOutput& out) override {
    if (!hooks_.function)
      return Error(Code::kUnavailable, "function {} is not running on this node", spec_.function);
    std::vector<Row> produced;
    for (const Row& row : out.rows) {
      auto rows = hooks_.function(spec_.function, rules::ToNlohmann(row));
      if (!rows.ok()) {
        // The function is not loaded (yet): worth another try. Its own errors (a Lua error, a
        // limit) would repeat with the same row.
        if (rows.status().code() == Code::kUnavailable) return rows.status();
        return Status(Code::kInvalidArgument,
                      fmt::format("function {}: {}", spec_.function, rows.status().message()));
      }
      for (const nlohmann::json& r : *rows) produced.push_back(rules::FromJson(r));
    }
    if (spec_.topic.empty() || produced.empty()) return Status::Ok();
    if (!hooks_.memory) return Error(Code::kUnavailable, "memory streams are not available");
    hooks_.memory(spec_.topic, produced);
    return Status::Ok();
  }

 private:
  ActionSpec spec_;
  ActionHooks hooks_;
};

}  // namespace

std::string ExpandTemplate(std::string_view text, const Row& row) {
  std::string out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t open = text.find("{{.", pos);
    size_t close = open == std::string_view::npos ? open : text.find("}}", open);
    if (close == std::string_view::npos) {
      out.append(text.substr(pos));
      break;
    }
    out.append(text.substr(pos, open - pos));
    std::string_view column = text.substr(open + 3, close - open - 3);
    if (const rules::Value* v = row.Find(column); v && !v->is_null()) out += rules::ToText(*v);
    pos = close + 2;
  }
  return out;
}

std::unique_ptr<ActionSink> MakeSink(const std::string& rule, const ActionSpec& spec,
                                     const ActionHooks& hooks) {
  switch (spec.kind) {
    case ActionKind::kLog:
      return std::make_unique<LogSink>(rule, spec);
    case ActionKind::kMemory:
      return std::make_unique<MemorySink>(spec, hooks);
    case ActionKind::kMqtt:
      return std::make_unique<MqttSink>(spec, hooks);
    case ActionKind::kWebhook:
      return std::make_unique<WebhookSink>(spec);
    case ActionKind::kAlert:
      return std::make_unique<AlertSink>(rule, spec, hooks);
    case ActionKind::kModbus:
      return std::make_unique<ModbusSink>(spec, hooks);
    case ActionKind::kFunction:
      return std::make_unique<FunctionSink>(spec, hooks);
  }
  return std::make_unique<LogSink>(rule, spec);
}

ActionRunner::ActionRunner(std::string rule, ActionSpec spec, std::unique_ptr<ActionSink> sink)
    : rule_(std::move(rule)), spec_(std::move(spec)), sink_(std::move(sink)) {
  thread_ = std::thread([this] { Run(); });
}

ActionRunner::~ActionRunner() { Stop(); }

void ActionRunner::Enqueue(int64_t ts_ms, const std::vector<Row>& rows) {
  if (rows.empty()) return;
  std::lock_guard lock(mu_);
  if (stopping_) return;
  auto push = [&](ActionOutput out) {
    if (queue_.size() >= spec_.buffer_length) {
      queue_.pop_front();
      ++stats_.dropped;
    }
    queue_.push_back(std::move(out));
  };
  if (spec_.send_single) {
    for (const Row& r : rows) push(ActionOutput{ts_ms, {r}});
  } else {
    push(ActionOutput{ts_ms, rows});
  }
  cv_.notify_all();  // Drain() waits on the same variable
}

void ActionRunner::RequestStop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    queue_.clear();
  }
  cv_.notify_all();
}

void ActionRunner::Stop() {
  RequestStop();
  if (thread_.joinable()) thread_.join();
}

ActionStats ActionRunner::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

void ActionRunner::Drain() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return stopping_ || (queue_.empty() && !busy_); });
}

void ActionRunner::Run() {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (stopping_) return;
    ActionOutput out = std::move(queue_.front());
    queue_.pop_front();
    busy_ = true;
    for (int attempt = 0;; ++attempt) {
      lock.unlock();
      Status st = sink_->Deliver(out);
      lock.lock();
      if (st.ok()) {
        ++stats_.delivered;
        break;
      }
      stats_.last_error = st.message();
      bool retry = st.code() != Code::kInvalidArgument && attempt < spec_.retry_count;
      if (!retry) {
        ++stats_.failed;
        spdlog::warn("rule {}: {} action gave up on an output: {}", rule_,
                     rules::ActionKindName(spec_.kind), st.message());
        break;
      }
      ++stats_.retries;
      if (cv_.wait_for(lock, std::chrono::milliseconds(spec_.retry_interval_ms),
                       [&] { return stopping_; }))
        break;
    }
    busy_ = false;
    cv_.notify_all();
    if (stopping_) return;
  }
}

}  // namespace verge::node
