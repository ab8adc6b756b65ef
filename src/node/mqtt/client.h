// MqttClient: the rule manager's MQTT connection to the node's broker (or an external one). It
// publishes what rule actions send (device commands, notifications) and subscribes to the
// topics of declared MQTT streams. Unlike the ingest subscriber (subscriber.h), nothing here
// must survive the node: the session is clean, and libmosquitto's own thread (loop_start)
// reconnects with backoff and subscribes again after every connect.
//
// Publish at QoS 1 waits for the broker's PUBACK, so a rule action that succeeded was really
// delivered to the broker; a timeout or a lost connection is an error the action retries
// (at-least-once: a PUBACK lost on the way may cause a duplicate).
//
// Thread-safety: thread-safe. The message callback runs on libmosquitto's thread.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <string_view>

#include "common/duration.h"
#include "common/status.h"

struct mosquitto;
struct mosquitto_message;

namespace verge::mqtt {

struct ClientOptions {
  std::string host = "127.0.0.1";
  int port = 1883;
  std::string client_id;  // REQUIRES: set
  std::string username;   // empty: no credentials
  std::string password;
  int keepalive_s = 30;
};

class MqttClient {
 public:
  using MessageFn = std::function<void(std::string_view topic, std::string_view payload)>;

  MqttClient(ClientOptions options, MessageFn on_message);
  ~MqttClient();  // Stops.
  MqttClient(const MqttClient&) = delete;
  MqttClient& operator=(const MqttClient&) = delete;

  // Starts connecting (in the background: an unreachable broker is not an error here).
  Status Start();
  void Stop();

  // kUnavailable when not connected, kDeadlineExceeded when QoS 1 got no PUBACK in `timeout`.
  Status Publish(const std::string& topic, std::string_view payload, int qos, bool retain,
                 Millis timeout = Millis(5000));
  // Topic filters to subscribe at QoS 1 (replacing the previous set).
  void SetSubscriptions(std::set<std::string> filters);
  bool connected() const;

 private:
  static void OnConnect(struct mosquitto*, void* self, int rc);
  static void OnDisconnect(struct mosquitto*, void* self, int rc);
  static void OnPublish(struct mosquitto*, void* self, int mid);
  static void OnMessage(struct mosquitto*, void* self, const ::mosquitto_message* msg);
  void SubscribeLocked(const std::set<std::string>& filters);  // REQUIRES: mu_ held

  const ClientOptions options_;
  MessageFn on_message_;
  struct mosquitto* mosq_ = nullptr;
  bool started_ = false;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool connected_ = false;            // GUARDED_BY(mu_)
  uint64_t connection_ = 0;           // GUARDED_BY(mu_): bumped per connect
  std::set<int> acked_;               // GUARDED_BY(mu_): PUBACKs not yet collected
  std::set<std::string> filters_;     // GUARDED_BY(mu_)
  std::set<std::string> subscribed_;  // GUARDED_BY(mu_): on the current connection
};

}  // namespace verge::mqtt
