// verge-devsim mqtt: one libmosquitto client per device, each with its own network thread
// (mosquitto_loop_start); publishing happens on the calling thread, and acknowledgements
// are matched to messages by message id in the network threads' callbacks.
#include <mosquitto.h>
#include <spdlog/spdlog.h>

#include <iostream>
#include <map>

#include "devsim/modes.h"

namespace verge::devsim {
namespace {

// Reason codes from 0x80 up are failures (MQTT v5, 2.4); MQTT 3.1.1 CONNACK codes are 1..5.
constexpr int kFirstFailureReason = 0x80;

struct Shared {
  Counters& counters;
  int qos;
  std::mutex mu;
  std::condition_variable cv;  // any device's state or in-flight set changed
};

class MqttDevice {
 public:
  enum State { kConnecting, kConnected, kRefused };

  MqttDevice(DeviceCred cred, Shared& shared)
      : cred_(std::move(cred)), topic_("devices/" + cred_.name + "/telemetry"), shared_(shared) {}

  ~MqttDevice() {
    if (m_) mosquitto_destroy(m_);
  }

  Status Start(const std::string& host, int port) {
    m_ = mosquitto_new(cred_.name.c_str(), true, this);
    if (!m_) return Error(Code::kResourceExhausted, "{}: mosquitto_new failed", cred_.name);
    mosquitto_int_option(m_, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
    mosquitto_username_pw_set(m_, cred_.name.c_str(), cred_.token.c_str());
    mosquitto_connect_v5_callback_set(m_, &OnConnect);
    mosquitto_disconnect_v5_callback_set(m_, &OnDisconnect);
    mosquitto_publish_v5_callback_set(m_, &OnPublish);
    mosquitto_reconnect_delay_set(m_, 1, 10, true);
    // A failure here is retried by the network thread, like a connection lost later.
    if (int rc = mosquitto_connect_async(m_, host.c_str(), port, 30); rc != MOSQ_ERR_SUCCESS) {
      spdlog::warn("{}: connect to {}:{}: {}", cred_.name, host, port, mosquitto_strerror(rc));
    }
    if (int rc = mosquitto_loop_start(m_); rc != MOSQ_ERR_SUCCESS) {
      return Error(Code::kInternal, "{}: mosquitto_loop_start: {}", cred_.name,
                   mosquitto_strerror(rc));
    }
    started_ = true;
    return Status::Ok();
  }

  State state() const { return state_; }                  // REQUIRES: shared.mu held
  size_t in_flight() const { return in_flight_.size(); }  // REQUIRES: shared.mu held

  void Publish(const std::string& payload, uint64_t n) {
    Counters& c = shared_.counters;
    {
      std::lock_guard lk(shared_.mu);
      if (state_ == kRefused) {
        c.rejected += n;
        return;
      }
    }
    int mid = 0;
    int rc = mosquitto_publish_v5(m_, &mid, topic_.c_str(), static_cast<int>(payload.size()),
                                  payload.data(), shared_.qos, false, nullptr);
    if (rc != MOSQ_ERR_SUCCESS) {
      c.errors += n;
      spdlog::debug("{}: publish: {}", cred_.name, mosquitto_strerror(rc));
      return;
    }
    std::lock_guard lk(shared_.mu);
    // The acknowledgement may have beaten us here: the network thread runs meanwhile.
    if (auto early = early_.find(mid); early != early_.end()) {
      Settle(early->second, n);
      early_.erase(early);
    } else {
      in_flight_[mid] = n;
    }
  }

  // Disconnects and returns how many readings were never acknowledged.
  uint64_t Stop() {
    if (started_) {
      mosquitto_disconnect_v5(m_, 0, nullptr);
      mosquitto_loop_stop(m_, false);
      started_ = false;
    }
    std::lock_guard lk(shared_.mu);
    uint64_t lost = 0;
    for (auto& [mid, n] : in_flight_) lost += n;
    in_flight_.clear();
    return lost;
  }

 private:
  static void OnConnect(mosquitto*, void* obj, int rc, int, const mosquitto_property*) {
    auto* self = static_cast<MqttDevice*>(obj);
    std::lock_guard lk(self->shared_.mu);
    if (rc == 0) {
      self->state_ = kConnected;
    } else {
      // A refused login does not get better by retrying: stop the network thread's loop.
      self->state_ = kRefused;
      spdlog::warn("{}: connection refused: {}", self->cred_.name, mosquitto_reason_string(rc));
      mosquitto_disconnect(self->m_);
    }
    self->shared_.cv.notify_all();
  }

  static void OnDisconnect(mosquitto*, void* obj, int rc, const mosquitto_property*) {
    auto* self = static_cast<MqttDevice*>(obj);
    std::lock_guard lk(self->shared_.mu);
    if (self->state_ == kConnected && rc != 0) {
      self->state_ = kConnecting;
      spdlog::debug("{}: connection lost ({}), reconnecting", self->cred_.name, rc);
    }
    self->shared_.cv.notify_all();
  }

  static void OnPublish(mosquitto*, void* obj, int mid, int reason, const mosquitto_property*) {
    auto* self = static_cast<MqttDevice*>(obj);
    std::lock_guard lk(self->shared_.mu);
    if (auto it = self->in_flight_.find(mid); it != self->in_flight_.end()) {
      self->Settle(reason, it->second);
      self->in_flight_.erase(it);
    } else {
      self->early_[mid] = reason;
    }
    self->shared_.cv.notify_all();
  }

  void Settle(int reason, uint64_t n) {  // REQUIRES: shared.mu held
    if (reason < kFirstFailureReason) {
      shared_.counters.accepted += n;
    } else {
      shared_.counters.rejected += n;
      spdlog::debug("{}: publish refused: {}", cred_.name, mosquitto_reason_string(reason));
    }
  }

  const DeviceCred cred_;
  const std::string topic_;
  Shared& shared_;
  mosquitto* m_ = nullptr;
  bool started_ = false;
  State state_ = kConnecting;          // GUARDED_BY(shared_.mu)
  std::map<int, uint64_t> in_flight_;  // GUARDED_BY(shared_.mu): mid -> readings
  std::map<int, int> early_;           // GUARDED_BY(shared_.mu): mid -> reason
};

}  // namespace

int RunMqtt(const MqttOptions& o) {
  mosquitto_lib_init();
  Counters c;
  StopFlag stop;
  SignalWatcher watcher(stop);
  Shared shared{c, o.qos, {}, {}};
  std::vector<std::unique_ptr<MqttDevice>> devices;
  int code = 0;
  for (const DeviceCred& cred : o.load.devices) {
    devices.push_back(std::make_unique<MqttDevice>(cred, shared));
    if (Status st = devices.back()->Start(o.host, o.port); !st.ok()) {
      spdlog::error("{}", st.message());
      code = 1;
      break;
    }
  }
  const auto start = std::chrono::steady_clock::now();
  if (code == 0) {
    // Wait for every CONNACK (or refusal) first, so that the first readings are not lost to
    // a connection still being set up.
    {
      std::unique_lock lk(shared.mu);
      shared.cv.wait_until(lk, start + o.connect_timeout, [&] {
        return std::all_of(devices.begin(), devices.end(),
                           [](auto& d) { return d->state() != MqttDevice::kConnecting; });
      });
      size_t up = std::count_if(devices.begin(), devices.end(),
                                [](auto& d) { return d->state() == MqttDevice::kConnected; });
      spdlog::info("{} of {} device(s) connected to {}:{}", up, devices.size(), o.host, o.port);
    }
    std::vector<Paced> schedule = MakeSchedule(o.load, std::chrono::steady_clock::now());
    std::vector<Paced*> all;
    all.reserve(schedule.size());
    for (Paced& p : schedule) all.push_back(&p);
    {
      Deadline deadline(stop, o.load.duration);
      RunPaced(all, o.load, stop, [&](Paced& d, const std::vector<data::Reading>& readings) {
        ++c.requests;
        c.sent += readings.size();
        std::string payload = FormatPayload(readings, o.load.format);
        c.bytes += payload.size();
        devices[d.index]->Publish(payload, readings.size());
      });
    }
    // Give outstanding acknowledgements a moment before counting them lost.
    std::unique_lock lk(shared.mu);
    shared.cv.wait_for(lk, std::chrono::seconds(5), [&] {
      return std::all_of(devices.begin(), devices.end(),
                         [](auto& d) { return d->in_flight() == 0; });
    });
  }
  for (auto& d : devices) c.errors += d->Stop();
  devices.clear();
  auto elapsed = std::chrono::duration_cast<Millis>(std::chrono::steady_clock::now() - start);
  std::cout << SummaryJson("mqtt", o.load.devices.size(), c, elapsed, o.load.start_ns.has_value())
            << std::endl;
  mosquitto_lib_cleanup();
  return code != 0 ? code : LoadExitCode(c);
}

}  // namespace verge::devsim
