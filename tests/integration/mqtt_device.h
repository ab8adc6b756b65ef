// A simulated MQTT device for the integration tests: a plain libmosquitto client with its own
// network thread, publishing QoS 1 and waiting for each PUBACK.
#pragma once

#include <mosquitto.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "node/mqtt/topics.h"

namespace verge::testing {

// A device: a plain libmosquitto client with its own network thread.
class TestDevice {
 public:
  TestDevice(std::string name, std::string password, int port)
      : name_(std::move(name)), password_(std::move(password)), port_(port) {
    mosquitto_lib_init();
    m_ = mosquitto_new(nullptr, true, this);
    mosquitto_username_pw_set(m_, name_.c_str(), password_.c_str());
    mosquitto_connect_callback_set(m_, [](mosquitto*, void* obj, int rc) {
      auto* self = static_cast<TestDevice*>(obj);
      std::lock_guard lk(self->mu_);
      self->connack_ = rc;
      if (rc == 0) self->connected_ = true;
      self->cv_.notify_all();
    });
    mosquitto_disconnect_callback_set(m_, [](mosquitto*, void* obj, int) {
      auto* self = static_cast<TestDevice*>(obj);
      std::lock_guard lk(self->mu_);
      self->connected_ = false;
      ++self->disconnects_;
      self->cv_.notify_all();
    });
    mosquitto_publish_callback_set(m_, [](mosquitto*, void* obj, int mid) {
      auto* self = static_cast<TestDevice*>(obj);
      std::lock_guard lk(self->mu_);
      self->acked_.insert(mid);
      self->cv_.notify_all();
    });
    mosquitto_subscribe_callback_set(m_, [](mosquitto*, void* obj, int, int, const int*) {
      auto* self = static_cast<TestDevice*>(obj);
      std::lock_guard lk(self->mu_);
      ++self->subacks_;
      self->cv_.notify_all();
    });
    mosquitto_message_callback_set(m_, [](mosquitto*, void* obj, const mosquitto_message* msg) {
      auto* self = static_cast<TestDevice*>(obj);
      std::lock_guard lk(self->mu_);
      self->received_.emplace_back(msg->topic, std::string(static_cast<const char*>(msg->payload),
                                                           static_cast<size_t>(msg->payloadlen)));
      self->cv_.notify_all();
    });
  }
  ~TestDevice() {
    if (started_) {
      mosquitto_disconnect(m_);
      mosquitto_loop_stop(m_, true);
    }
    mosquitto_destroy(m_);
  }

  // The first CONNACK's return code (0: accepted), or -1 if none came.
  int Connect() {
    if (mosquitto_connect(m_, "127.0.0.1", port_, 30) != MOSQ_ERR_SUCCESS) return -1;
    mosquitto_loop_start(m_);
    started_ = true;
    std::unique_lock lk(mu_);
    cv_.wait_for(lk, std::chrono::seconds(10), [&] { return connack_ >= 0; });
    return connack_;
  }
  bool connected() {
    std::lock_guard lk(mu_);
    return connected_;
  }
  int disconnects() {
    std::lock_guard lk(mu_);
    return disconnects_;
  }

  // Publishes and waits for the PUBACK (QoS 1).
  bool Publish(const std::string& topic, const std::string& payload, int qos = 1,
               std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    int mid = 0;
    if (mosquitto_publish(m_, &mid, topic.c_str(), static_cast<int>(payload.size()), payload.data(),
                          qos, false) != MOSQ_ERR_SUCCESS) {
      return false;
    }
    if (qos == 0) return true;
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, timeout, [&] { return acked_.count(mid) > 0; });
  }
  bool PublishOwn(const std::string& payload) {
    return Publish(mqtt::TelemetryTopic(name_), payload);
  }

  bool Subscribe(const std::string& filter) {
    int before = 0;
    {
      std::lock_guard lk(mu_);
      before = subacks_;
    }
    if (mosquitto_subscribe(m_, nullptr, filter.c_str(), 0) != MOSQ_ERR_SUCCESS) return false;
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, std::chrono::seconds(10), [&] { return subacks_ > before; });
  }
  std::vector<std::pair<std::string, std::string>> received() {
    std::lock_guard lk(mu_);
    return received_;
  }

 private:
  std::string name_, password_;
  int port_;
  mosquitto* m_ = nullptr;
  bool started_ = false;
  std::mutex mu_;
  std::condition_variable cv_;
  int connack_ = -1;
  bool connected_ = false;
  int disconnects_ = 0;
  int subacks_ = 0;
  std::set<int> acked_;
  std::vector<std::pair<std::string, std::string>> received_;
};

}  // namespace verge::testing
