#include "node/mqtt/subscriber.h"

#include <mosquitto.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <random>

#include "node/mqtt/internal.h"
#include "node/mqtt/topics.h"

namespace verge::mqtt {

// One connection, from dialling to its end, on the subscriber's thread. libmosquitto calls the
// callbacks from inside mosquitto_loop_read on this same thread.
class MqttSubscriber::Session {
 public:
  struct Outcome {
    bool reached_broker = false;  // CONNACK accepted
    bool sink_failed = false;
  };

  explicit Session(MqttSubscriber& owner) : o_(owner) {}
  ~Session() {
    if (m_) mosquitto_destroy(m_);
  }

  Outcome Run() {
    const SubscriberOptions& opt = o_.options_;
    m_ = mosquitto_new(opt.client_id.c_str(), /*clean_session=*/false, this);
    if (!m_) {
      Fail("mosquitto_new failed");
      return {};
    }
    // The durability of the whole path rests on this: queue the PUBACK, write it after the
    // sink returned (see subscriber.h).
    mosquitto_threaded_set(m_, true);
    // Without it Nagle holds a PUBACK behind the previous unacknowledged packet until the
    // broker's delayed ACK (40 ms): a device waiting for each PUBACK would see that per message.
    mosquitto_int_option(m_, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_int_option(m_, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
    if (!opt.username.empty()) {
      mosquitto_username_pw_set(m_, opt.username.c_str(), opt.password.c_str());
    }
    mosquitto_connect_with_flags_callback_set(m_, &OnConnect);
    mosquitto_subscribe_callback_set(m_, &OnSubscribe);
    mosquitto_message_callback_set(m_, &OnMessage);
    int rc = mosquitto_connect_bind_async(m_, opt.host.c_str(), opt.port, opt.keepalive_s, nullptr);
    if (rc != MOSQ_ERR_SUCCESS) {
      Fail(fmt::format("connect to {}:{}: {}", opt.host, opt.port, ErrorText(rc)));
      return {};
    }
    const int64_t deadline = o_.clock_.SteadyMs() + opt.connect_timeout.count();
    for (;;) {
      if (o_.stopping_) {
        Disconnect();
        break;
      }
      if (!connack_ && o_.clock_.SteadyMs() >= deadline) {
        Fail(fmt::format("no CONNACK from {}:{} within {}", opt.host, opt.port,
                         FormatDuration(opt.connect_timeout)));
        break;
      }
      int fd = mosquitto_socket(m_);
      if (fd < 0) {
        Lost("connection closed");
        break;
      }
      pollfd fds[2] = {
          {fd, static_cast<short>(POLLIN | (mosquitto_want_write(m_) ? POLLOUT : 0)), 0},
          {o_.wake_fd_, POLLIN, 0}};
      // The timeout bounds how late keepalive pings and the CONNACK deadline are noticed.
      if (poll(fds, 2, 500) < 0 && errno != EINTR) {
        Lost(fmt::format("poll: {}", std::strerror(errno)));
        break;
      }
      if (!connack_ && (fds[0].revents & (POLLERR | POLLHUP))) {
        // A failed non-blocking connect: libmosquitto would report it as a protocol error.
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        Lost(err != 0 ? std::strerror(err) : "connection closed by the broker");
        break;
      }
      if (fds[0].revents & (POLLIN | POLLERR | POLLHUP)) {
        rc = mosquitto_loop_read(m_, 1);
        if (aborted_) break;
        if (rc != MOSQ_ERR_SUCCESS) {
          Lost(ErrorText(rc));
          break;
        }
      }
      // The PUBACKs that on_message calls made libmosquitto queue leave here, after the sink.
      if (mosquitto_want_write(m_)) {
        rc = mosquitto_loop_write(m_, 1);
        if (rc != MOSQ_ERR_SUCCESS) {
          Lost(ErrorText(rc));
          break;
        }
      }
      rc = mosquitto_loop_misc(m_);  // keepalive
      if (rc != MOSQ_ERR_SUCCESS) {
        Lost(ErrorText(rc));
        break;
      }
    }
    std::lock_guard lk(o_.mu_);
    if (o_.stats_.connected) ++o_.stats_.disconnects;
    o_.stats_.connected = false;
    return {connack_, sink_failed_};
  }

 private:
  static std::string ErrorText(int rc) {
    if (rc == MOSQ_ERR_ERRNO) return std::strerror(errno);
    return mosquitto_strerror(rc);
  }

  static void OnConnect(mosquitto* m, void* obj, int rc, int flags) {
    auto* self = static_cast<Session*>(obj);
    if (rc != 0) {
      self->Fail(
          fmt::format("the broker refused the connection: {}", mosquitto_connack_string(rc)));
      self->Abort();
      return;
    }
    self->connack_ = true;
    {
      std::lock_guard lk(self->o_.mu_);
      ++self->o_.stats_.connects;
    }
    // A resumed session still has its subscription; subscribing again would make the broker
    // replay retained messages.
    if (flags & 1) {
      self->Ready();
      return;
    }
    rc = mosquitto_subscribe(m, nullptr, std::string(kTelemetryFilter).c_str(), 1);
    if (rc != MOSQ_ERR_SUCCESS) {
      self->Fail(fmt::format("subscribe: {}", ErrorText(rc)));
      self->Abort();
    }
  }

  static void OnSubscribe(mosquitto*, void* obj, int, int count, const int* granted) {
    auto* self = static_cast<Session*>(obj);
    if (count < 1 || granted[0] < 0 || granted[0] > 2) {
      self->Fail(fmt::format("the broker refused the subscription to {} (check its ACL)",
                             kTelemetryFilter));
      self->Abort();
      return;
    }
    if (granted[0] == 0) {
      spdlog::warn("mqtt: the broker granted QoS 0 for {}: messages can be lost", kTelemetryFilter);
    }
    self->Ready();
  }

  static void OnMessage(mosquitto*, void* obj, const mosquitto_message* msg) {
    static_cast<Session*>(obj)->Handle(*msg);
  }

  void Handle(const mosquitto_message& msg) {
    // After an abort nothing more is stored: the broker redelivers it all.
    if (aborted_) return;
    std::string_view topic = msg.topic ? msg.topic : "";
    auto device = DeviceOfTelemetryTopic(topic);
    if (!device) {
      std::lock_guard lk(o_.mu_);
      ++o_.stats_.bad_topics;
      o_.stats_.last_error =
          fmt::format("message on unexpected topic \"{}\"", topic.substr(0, 200));
      return;  // acknowledged and dropped: no device to give it to
    }
    std::string_view payload;
    if (msg.payload && msg.payloadlen > 0) {
      payload = {static_cast<const char*>(msg.payload), static_cast<size_t>(msg.payloadlen)};
    }
    Result<data::IngestReport> result =
        o_.sink_.IngestPayload(*device, payload, data::Framing::kJson);
    {
      std::lock_guard lk(o_.mu_);
      ++o_.stats_.messages;
      if (result.ok()) {
        o_.stats_.readings.accepted += result->accepted;
        for (const data::Rejection& r : result->rejected) ++o_.stats_.readings[r.reason];
      } else if (result.status().code() == Code::kInvalidArgument) {
        ++o_.stats_.malformed;
      } else {
        ++o_.stats_.sink_errors;
        o_.stats_.last_error =
            fmt::format("storing a message from {}: {}", *device, result.status().message());
      }
    }
    if (!result.ok() && result.status().code() != Code::kInvalidArgument) {
      spdlog::warn(
          "mqtt: storing a message from {} failed ({}); reconnecting so that the broker "
          "delivers it again",
          *device, result.status().message());
      sink_failed_ = true;
      Abort();
      return;
    }
    if (o_.options_.publish_rejections) PublishRejections(*device, result);
  }

  void PublishRejections(std::string_view device, const Result<data::IngestReport>& result) {
    nlohmann::json j;
    if (result.ok()) {
      if (result->rejected.empty()) return;
      j["accepted"] = result->accepted;
      nlohmann::json list = nlohmann::json::array();
      for (const data::Rejection& r : result->rejected) {
        nlohmann::json item = {
            {"item", r.item}, {"reason", data::ReasonName(r.reason)}, {"message", r.message}};
        if (!r.metric.empty()) item["metric"] = r.metric;
        list.push_back(std::move(item));
      }
      j["rejected"] = std::move(list);
    } else {
      j["accepted"] = 0;
      j["error"] = result.status().message();
    }
    // Messages that are not valid UTF-8 must not make dump() throw.
    std::string body = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    std::string topic = RejectedTopic(device);
    if (mosquitto_publish(m_, nullptr, topic.c_str(), static_cast<int>(body.size()), body.data(), 0,
                          false) == MOSQ_ERR_SUCCESS) {
      std::lock_guard lk(o_.mu_);
      ++o_.stats_.rejections_published;
    }
  }

  void Ready() {
    std::lock_guard lk(o_.mu_);
    o_.stats_.connected = true;
    spdlog::info("mqtt: subscribed to {} on {}:{} as {}", kTelemetryFilter, o_.options_.host,
                 o_.options_.port, o_.options_.client_id);
  }

  // Ends the connection without writing anything more: a PUBACK libmosquitto has queued for a
  // message the sink did not store must never reach the broker. The loop then destroys the
  // client, and with it every queued packet.
  void Abort() {
    aborted_ = true;
    if (int fd = mosquitto_socket(m_); fd >= 0) shutdown(fd, SHUT_RDWR);
  }

  // A clean end on Stop: the PUBACKs of what the sink stored leave first, then DISCONNECT.
  void Disconnect() {
    if (!connack_ || aborted_) return;
    mosquitto_disconnect(m_);
    const int64_t deadline = o_.clock_.SteadyMs() + 1000;
    while (mosquitto_want_write(m_) && o_.clock_.SteadyMs() < deadline) {
      int fd = mosquitto_socket(m_);
      if (fd < 0) break;
      pollfd p{fd, POLLOUT, 0};
      poll(&p, 1, 100);
      if (mosquitto_loop_write(m_, 1) != MOSQ_ERR_SUCCESS) break;
    }
  }

  void Fail(std::string error) {
    spdlog::warn("mqtt: {}", error);
    std::lock_guard lk(o_.mu_);
    ++o_.stats_.connect_failures;
    o_.stats_.last_error = std::move(error);
  }

  void Lost(std::string error) {
    if (!connack_) {
      Fail(
          fmt::format("connection to {}:{} failed: {}", o_.options_.host, o_.options_.port, error));
      return;
    }
    spdlog::warn("mqtt: connection to {}:{} lost: {}", o_.options_.host, o_.options_.port, error);
    std::lock_guard lk(o_.mu_);
    o_.stats_.last_error = "connection lost: " + error;
  }

  MqttSubscriber& o_;
  mosquitto* m_ = nullptr;
  bool connack_ = false;
  bool aborted_ = false;
  bool sink_failed_ = false;
};

MqttSubscriber::MqttSubscriber(const Clock& clock, data::IngestSink& sink,
                               SubscriberOptions options)
    : clock_(clock), sink_(sink), options_(std::move(options)) {
  internal::InitMosquittoLib();
}

MqttSubscriber::~MqttSubscriber() {
  Stop();
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

Status MqttSubscriber::Start() {
  std::lock_guard control(control_mu_);
  if (thread_.joinable() || stopping_) {
    return Error(Code::kFailedPrecondition, "the MQTT subscriber was already started");
  }
  std::vector<std::string> problems;
  if (options_.host.empty()) problems.push_back("host: not set");
  if (options_.port < 1 || options_.port > 65535) problems.push_back("port: must be 1..65535");
  if (options_.client_id.empty()) problems.push_back("client id: not set");
  if (options_.keepalive_s < 5 || options_.keepalive_s > 65535) {
    problems.push_back("keepalive: must be 5..65535 s");
  }
  if (options_.connect_timeout.count() <= 0 || options_.reconnect_initial.count() <= 0 ||
      options_.reconnect_max < options_.reconnect_initial) {
    problems.push_back("timeouts must be positive, reconnect_max >= reconnect_initial");
  }
  if (!problems.empty()) {
    std::string msg;
    for (const auto& p : problems) msg += (msg.empty() ? "" : "; ") + p;
    return Status(Code::kInvalidArgument, "MQTT subscriber: " + msg);
  }
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) return Error(Code::kResourceExhausted, "eventfd: {}", std::strerror(errno));
  thread_ = std::thread([this] { Run(); });
  return Status::Ok();
}

void MqttSubscriber::Stop() {
  std::lock_guard control(control_mu_);
  stopping_ = true;
  if (!thread_.joinable()) return;
  uint64_t one = 1;
  if (::write(wake_fd_, &one, sizeof one) < 0) {
    // The counter cannot overflow with one write per Stop; poll's timeout bounds the wait.
  }
  {
    std::lock_guard lk(mu_);
    cv_.notify_all();
  }
  thread_.join();
}

SubscriberStats MqttSubscriber::Stats() const {
  std::lock_guard lk(mu_);
  return stats_;
}

void MqttSubscriber::Run() {
  internal::BlockSigpipeInThisThread();
  std::mt19937 rng(std::random_device{}());
  Millis backoff = options_.reconnect_initial;
  while (!stopping_) {
    Session::Outcome out = Session(*this).Run();
    if (stopping_) break;
    // A connection that worked (and did not end in a sink failure) earns a fast retry;
    // repeated failures back off.
    if (out.reached_broker && !out.sink_failed) backoff = options_.reconnect_initial;
    std::uniform_int_distribution<int64_t> half(0, backoff.count() / 2);
    Millis delay(backoff.count() - backoff.count() / 2 + half(rng));
    {
      std::unique_lock lk(mu_);
      cv_.wait_for(lk, delay, [&] { return stopping_.load(); });
    }
    backoff = std::min(backoff * 2, options_.reconnect_max);
  }
}

}  // namespace verge::mqtt
