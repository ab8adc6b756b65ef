// MqttSubscriber: the node's MQTT client for device ingest. It holds one connection to the
// broker (the node's own, see broker.h, or an external one), with a fixed client id and a
// persistent session (clean session off) subscribed to devices/+/telemetry at QoS 1, so that
// what devices publish while the node is down or reconnecting is queued by the broker and
// delivered afterwards. Each message goes to IngestSink::IngestPayload(device, payload, kJson),
// the device being the topic's middle segment.
//
// Durability: the PUBACK for a message leaves only after the sink returned. libmosquitto 2.0.11
// builds the PUBACK of an incoming QoS 1 message before it calls on_message
// (lib/handle_publish.c: send__puback, then the callback). Outside "threaded" mode it also
// writes it at once, so a node killed inside the sink would lose a message the broker
// considers delivered. This client therefore sets mosquitto_threaded_set(true) and runs its own
// poll loop: libmosquitto then only queues the PUBACK, and the loop writes it when
// mosquitto_loop_read has returned, i.e. after on_message, i.e. after the sink stored the
// readings. A node that dies before that leaves the message unacknowledged, and the broker
// sends it again when the session resumes (docs/mqtt.md; tests/integration/mqtt_test.cc).
// QoS 2 would not help: libmosquitto answers PUBREC (after which the broker never resends the
// message) on receipt, and calls on_message only on PUBREL. 2.0.11 has no manual-ack option.
// Delivery is at least once: a message whose PUBACK was lost comes again, so the sink sees it
// twice (the Cleaner's dedupe drops readings with the same device, metric and timestamp).
//
// Sink outcomes:
//   Ok                       counted (accepted, rejected by reason); acknowledged.
//   InvalidArgument          the payload is malformed: counted, acknowledged (a retry cannot
//                            fix it), reported to the device if publish_rejections.
//   any other error          the node could not store it (disk full...): the message must not
//                            be acknowledged. libmosquitto has already queued its PUBACK, so the
//                            subscriber shuts the socket down (nothing queued is ever written),
//                            drops the connection and reconnects after a backoff; the broker
//                            then redelivers the message and everything after it.
//
// Rejections: with publish_rejections, when a payload had rejected readings or was malformed,
// the node publishes {"accepted":N,"rejected":[{"item":..,"metric":..,"reason":..,
// "message":..}]} (or {"accepted":0,"error":".."}) to devices/<device>/rejected at QoS 0.
//
// Protocol: MQTT 3.1.1, whose sessions persist until resumed (v5 needs a session expiry
// interval that libmosquitto 2.0 cannot send with a non-blocking connect). The subscription is
// made only when the broker has no session for the client id, so retained messages are not
// replayed on every reconnect.
//
// Thread-safety: Start, Stop and Stats may be called from any thread. The sink is called on
// the subscriber's own thread, one message at a time, in the broker's delivery order; Stop
// waits for a sink call in progress.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

#include "common/clock.h"
#include "common/duration.h"
#include "common/status.h"
#include "node/data/ingest.h"
#include "node/data/payload.h"

namespace verge::mqtt {

struct SubscriberOptions {
  std::string host = "127.0.0.1";
  int port = 1883;
  std::string client_id;  // REQUIRES: set; NodeClientId(node name)
  std::string username;   // empty: connect without credentials
  std::string password;
  int keepalive_s = 30;
  Millis connect_timeout{10'000};  // from dialling to CONNACK
  Millis reconnect_initial{200};   // backoff after a failed or lost connection, doubled...
  Millis reconnect_max{10'000};    // ...up to this
  bool publish_rejections = true;
};

struct SubscriberStats {
  bool connected = false;         // CONNACK received and subscribed (or session present)
  uint64_t connects = 0;          // successful CONNACKs
  uint64_t connect_failures = 0;  // refused, unreachable, or no CONNACK in time
  uint64_t disconnects = 0;       // established connections lost or dropped
  uint64_t messages = 0;          // telemetry messages handed to the sink (redeliveries too)
  data::IngestCounters readings;  // per reading: accepted, and rejected by reason
  uint64_t malformed = 0;         // payloads the sink refused as a whole (acknowledged)
  uint64_t bad_topics = 0;        // messages on other topics than devices/<name>/telemetry
  uint64_t sink_errors = 0;       // sink failures: not acknowledged, redelivered later
  uint64_t rejections_published = 0;
  std::string last_error;  // the latest connection or sink problem; empty if none
};

class MqttSubscriber {
 public:
  // `clock` and `sink` must outlive the subscriber.
  MqttSubscriber(const Clock& clock, data::IngestSink& sink, SubscriberOptions options);
  ~MqttSubscriber();  // Stops.
  MqttSubscriber(const MqttSubscriber&) = delete;
  MqttSubscriber& operator=(const MqttSubscriber&) = delete;

  // Starts the client thread, which connects and keeps reconnecting until Stop. Fails only for
  // invalid options (all problems at once) or when already started.
  Status Start();

  // Disconnects (after writing the acknowledgements of what the sink stored) and joins the
  // thread. Idempotent.
  void Stop();

  SubscriberStats Stats() const;

 private:
  class Session;

  void Run();

  const Clock& clock_;
  data::IngestSink& sink_;
  const SubscriberOptions options_;

  std::mutex control_mu_;  // serialises Start and Stop
  std::thread thread_;     // GUARDED_BY(control_mu_)
  int wake_fd_ = -1;       // eventfd: Stop wakes the thread's poll
  std::atomic<bool> stopping_{false};

  mutable std::mutex mu_;
  std::condition_variable cv_;  // backoff waits
  SubscriberStats stats_;       // GUARDED_BY(mu_)
};

}  // namespace verge::mqtt
