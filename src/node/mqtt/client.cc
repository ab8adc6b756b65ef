#include "node/mqtt/client.h"

#include <mosquitto.h>
#include <signal.h>
#include <spdlog/spdlog.h>

#include "node/mqtt/internal.h"

namespace verge::mqtt {

MqttClient::MqttClient(ClientOptions options, MessageFn on_message)
    : options_(std::move(options)), on_message_(std::move(on_message)) {}

MqttClient::~MqttClient() { Stop(); }

Status MqttClient::Start() {
  if (started_) return Error(Code::kFailedPrecondition, "MQTT client already started");
  if (options_.client_id.empty()) return Error(Code::kInvalidArgument, "MQTT client id not set");
  internal::InitMosquittoLib();
  mosq_ = mosquitto_new(options_.client_id.c_str(), /*clean_session=*/true, this);
  if (!mosq_) return Error(Code::kInternal, "mosquitto_new failed");
  if (!options_.username.empty())
    mosquitto_username_pw_set(mosq_, options_.username.c_str(), options_.password.c_str());
  mosquitto_connect_callback_set(mosq_, &MqttClient::OnConnect);
  mosquitto_disconnect_callback_set(mosq_, &MqttClient::OnDisconnect);
  mosquitto_publish_callback_set(mosq_, &MqttClient::OnPublish);
  mosquitto_message_callback_set(mosq_, &MqttClient::OnMessage);
  mosquitto_reconnect_delay_set(mosq_, 1, 10, true);
  // Small packets both ways (PUBACKs for stream messages, then commands): with Nagle a command
  // waits behind an unacknowledged PUBACK until the broker's delayed ACK, 40 ms (measured:
  // bench/load/rule_latency.sh went from 71 ms to 0.18 ms at p50).
  mosquitto_int_option(mosq_, MOSQ_OPT_TCP_NODELAY, 1);
  // A refused first connect is retried by the loop like any later one.
  int rc =
      mosquitto_connect_async(mosq_, options_.host.c_str(), options_.port, options_.keepalive_s);
  if (rc != MOSQ_ERR_SUCCESS && rc != MOSQ_ERR_ERRNO) {
    mosquitto_destroy(mosq_);
    mosq_ = nullptr;
    return Error(Code::kInvalidArgument, "MQTT {}:{}: {}", options_.host, options_.port,
                 mosquitto_strerror(rc));
  }
  // libmosquitto writes with write(2): its thread inherits a blocked SIGPIPE from this one, so
  // a write to a closed connection fails with EPIPE instead of killing the node.
  sigset_t pipe, old;
  sigemptyset(&pipe);
  sigaddset(&pipe, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe, &old);
  rc = mosquitto_loop_start(mosq_);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (rc != MOSQ_ERR_SUCCESS) {
    mosquitto_destroy(mosq_);
    mosq_ = nullptr;
    return Error(Code::kInternal, "MQTT client thread: {}", mosquitto_strerror(rc));
  }
  started_ = true;
  return Status::Ok();
}

void MqttClient::Stop() {
  if (!started_) return;
  started_ = false;
  mosquitto_disconnect(mosq_);
  mosquitto_loop_stop(mosq_, /*force=*/false);
  mosquitto_destroy(mosq_);
  mosq_ = nullptr;
  std::lock_guard lock(mu_);
  connected_ = false;
  cv_.notify_all();
}

bool MqttClient::connected() const {
  std::lock_guard lock(mu_);
  return connected_;
}

Status MqttClient::Publish(const std::string& topic, std::string_view payload, int qos, bool retain,
                           Millis timeout) {
  uint64_t connection = 0;
  {
    std::lock_guard lock(mu_);
    if (!started_ || !connected_)
      return Error(Code::kUnavailable, "not connected to the MQTT broker {}:{}", options_.host,
                   options_.port);
    connection = connection_;
  }
  int mid = 0;
  int rc = mosquitto_publish(mosq_, &mid, topic.c_str(), static_cast<int>(payload.size()),
                             payload.data(), qos, retain);
  if (rc != MOSQ_ERR_SUCCESS)
    return Error(rc == MOSQ_ERR_NO_CONN || rc == MOSQ_ERR_CONN_LOST ? Code::kUnavailable
                                                                    : Code::kInvalidArgument,
                 "MQTT publish to {}: {}", topic, mosquitto_strerror(rc));
  if (qos == 0) return Status::Ok();
  std::unique_lock lock(mu_);
  bool done = cv_.wait_for(lock, timeout, [&] {
    return acked_.count(mid) != 0 || !connected_ || connection_ != connection;
  });
  if (acked_.erase(mid)) return Status::Ok();
  if (!done) return Error(Code::kDeadlineExceeded, "MQTT publish to {}: no PUBACK in time", topic);
  return Error(Code::kUnavailable, "MQTT publish to {}: the connection was lost", topic);
}

void MqttClient::SetSubscriptions(std::set<std::string> filters) {
  std::lock_guard lock(mu_);
  filters_ = std::move(filters);
  if (!connected_) return;
  std::vector<std::string> gone;
  for (const auto& f : subscribed_) {
    if (!filters_.count(f)) gone.push_back(f);
  }
  for (const auto& f : gone) {
    mosquitto_unsubscribe(mosq_, nullptr, f.c_str());
    subscribed_.erase(f);
  }
  SubscribeLocked(filters_);
}

void MqttClient::SubscribeLocked(const std::set<std::string>& filters) {
  for (const auto& f : filters) {
    if (subscribed_.count(f)) continue;
    int rc = mosquitto_subscribe(mosq_, nullptr, f.c_str(), 1);
    if (rc == MOSQ_ERR_SUCCESS) {
      subscribed_.insert(f);
    } else {
      spdlog::warn("rules: MQTT subscribe to {}: {}", f, mosquitto_strerror(rc));
    }
  }
}

void MqttClient::OnConnect(struct mosquitto*, void* self, int rc) {
  auto* c = static_cast<MqttClient*>(self);
  if (rc != 0) {
    spdlog::warn("rules: MQTT broker {}:{} refused the connection: {}", c->options_.host,
                 c->options_.port, mosquitto_connack_string(rc));
    return;
  }
  std::lock_guard lock(c->mu_);
  c->connected_ = true;
  ++c->connection_;
  c->subscribed_.clear();
  c->SubscribeLocked(c->filters_);
  c->cv_.notify_all();
}

void MqttClient::OnDisconnect(struct mosquitto*, void* self, int) {
  auto* c = static_cast<MqttClient*>(self);
  std::lock_guard lock(c->mu_);
  c->connected_ = false;
  c->cv_.notify_all();
}

void MqttClient::OnPublish(struct mosquitto*, void* self, int mid) {
  auto* c = static_cast<MqttClient*>(self);
  std::lock_guard lock(c->mu_);
  c->acked_.insert(mid);
  // A PUBACK nobody waits for any more (timed out) must not pile up.
  if (c->acked_.size() > 4096) c->acked_.erase(c->acked_.begin());
  c->cv_.notify_all();
}

void MqttClient::OnMessage(struct mosquitto*, void* self, const ::mosquitto_message* msg) {
  auto* c = static_cast<MqttClient*>(self);
  if (!msg || !msg->topic) return;
  c->on_message_(msg->topic, std::string_view(static_cast<const char*>(msg->payload),
                                              static_cast<size_t>(std::max(msg->payloadlen, 0))));
}

}  // namespace verge::mqtt
