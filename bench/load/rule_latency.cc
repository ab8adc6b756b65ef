// verge-rule-latency-bench: the device's side of bench/load/rule_latency.sh, which measures the
// end-to-end latency of a rule on a verge-node (issue 4: "MQTT -> rule -> MQTT action latency
// p50/p99") beside the same messages going through the broker alone.
//
//   verge-rule-latency-bench --broker HOST:PORT --device pump --password TOKEN
//                            [--count 20000] [--warmup 500] [--rate 1000] [--raw FILE]
//
// It logs in twice as the device (a publishing and a subscribing connection, each with
// libmosquitto's own network thread; TCP_NODELAY on both), subscribes devices/<d>/commands/#
// at QoS 1 and runs two phases, one after the other, with the same pacing:
//   rule    publishes {"seq":i,"level":5} to devices/<d>/alarms; the node's rule (created by the
//           script) turns each into a command on devices/<d>/commands/trip: device -> broker ->
//           the node's rule client -> rule thread -> action thread -> broker -> device;
//   direct  publishes the same payloads to devices/<d>/commands/direct: device -> broker ->
//           device, one broker hop and no rule (the physical floor of the rule path).
// Each phase first publishes probes until one comes back (the node subscribes its rule client
// in the background), then WARMUP + COUNT messages at RATE per second, QoS 1, paced on absolute
// deadlines (a late publish does not shift the later ones). A message's latency is the
// steady-clock time from just before its mosquitto_publish call to the start of the message
// callback for the command carrying the same seq, in this process. The first WARMUP messages
// are left out of the statistics. Lost messages are counted, not included in the percentiles.
//
// Output: one JSON object on stdout (per phase: sent, arrived, lost, duplicates, p50/p90/p99/
// p99.9/max in microseconds, how late the publisher was); with --raw, one line per message
// "phase seq send_ns recv_ns" (recv_ns 0: never arrived).
// Exit codes: 0 ok, 1 runtime failure (connection, a path that never answers), 2 usage.
#include <mosquitto.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/duration.h"
#include "common/status.h"
#include "node/mqtt/broker_files.h"

namespace verge::bench {
namespace {

using SteadyClock = std::chrono::steady_clock;

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(SteadyClock::now().time_since_epoch())
      .count();
}

// One MQTT connection of the device. Messages are handed to `on_message` on libmosquitto's
// network thread, with the steady-clock time taken first thing in the callback.
// Thread-safety: Publish may be called from any thread once Connect succeeded.
class DeviceConnection {
 public:
  using MessageFn =
      std::function<void(int64_t arrival_ns, std::string_view topic, std::string_view payload)>;

  DeviceConnection(const std::string& client_id, const std::string& user,
                   const std::string& password, MessageFn on_message)
      : on_message_(std::move(on_message)) {
    m_ = mosquitto_new(client_id.c_str(), /*clean_session=*/true, this);
    if (!m_) return;
    mosquitto_username_pw_set(m_, user.c_str(), password.c_str());
    mosquitto_int_option(m_, MOSQ_OPT_TCP_NODELAY, 1);
    // No client-side queue of QoS 1 messages waiting for an inflight slot: a publish goes out
    // when it is called.
    mosquitto_max_inflight_messages_set(m_, 0);
    mosquitto_connect_callback_set(m_, [](mosquitto*, void* obj, int rc) {
      auto* self = static_cast<DeviceConnection*>(obj);
      std::lock_guard lk(self->mu_);
      self->connack_ = rc;
      self->cv_.notify_all();
    });
    mosquitto_disconnect_callback_set(m_, [](mosquitto*, void* obj, int) {
      auto* self = static_cast<DeviceConnection*>(obj);
      self->disconnects_.fetch_add(1);
    });
    mosquitto_publish_callback_set(
        m_, [](mosquitto*, void* obj, int) { static_cast<DeviceConnection*>(obj)->acked_++; });
    mosquitto_subscribe_callback_set(m_, [](mosquitto*, void* obj, int, int n, const int* qos) {
      auto* self = static_cast<DeviceConnection*>(obj);
      std::lock_guard lk(self->mu_);
      self->granted_ = n > 0 ? qos[0] : 0x80;
      self->cv_.notify_all();
    });
    mosquitto_message_callback_set(m_, [](mosquitto*, void* obj, const mosquitto_message* msg) {
      int64_t now = NowNs();
      auto* self = static_cast<DeviceConnection*>(obj);
      if (!msg || !msg->topic) return;
      self->on_message_(now, msg->topic,
                        std::string_view(static_cast<const char*>(msg->payload),
                                         static_cast<size_t>(std::max(msg->payloadlen, 0))));
    });
  }
  ~DeviceConnection() {
    if (looping_) {
      mosquitto_disconnect(m_);
      mosquitto_loop_stop(m_, /*force=*/false);
    }
    if (m_) mosquitto_destroy(m_);
  }
  DeviceConnection(const DeviceConnection&) = delete;
  DeviceConnection& operator=(const DeviceConnection&) = delete;

  // Connects, trying again while the broker refuses (it admits the device only once the node
  // applied the desired state that declares it) until `timeout`; then starts the network thread.
  Status Connect(const std::string& host, int port, Millis timeout) {
    if (!m_) return Error(Code::kInternal, "mosquitto_new failed");
    auto deadline = SteadyClock::now() + timeout;
    std::string last = "no attempt";
    while (SteadyClock::now() < deadline) {
      {
        std::lock_guard lk(mu_);
        connack_ = -1;
      }
      int rc = mosquitto_connect(m_, host.c_str(), port, 30);
      if (rc == MOSQ_ERR_SUCCESS) {
        // The handshake on this thread; the network thread only once accepted.
        auto until = SteadyClock::now() + std::chrono::seconds(5);
        int connack = -1;
        while (connack < 0 && SteadyClock::now() < until) {
          if (mosquitto_loop(m_, 50, 1) != MOSQ_ERR_SUCCESS) break;
          std::lock_guard lk(mu_);
          connack = connack_;
        }
        if (connack == 0) {
          if (int lrc = mosquitto_loop_start(m_); lrc != MOSQ_ERR_SUCCESS)
            return Error(Code::kInternal, "mosquitto_loop_start: {}", mosquitto_strerror(lrc));
          looping_ = true;
          disconnects_ = 0;  // refusals before this one do not count
          return Status::Ok();
        }
        last = connack < 0 ? "no CONNACK" : mosquitto_connack_string(connack);
        mosquitto_disconnect(m_);
      } else {
        last = mosquitto_strerror(rc);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    return Error(Code::kUnavailable, "MQTT {}:{}: not admitted within {} ({})", host, port,
                 FormatDuration(timeout), last);
  }

  Status Subscribe(const std::string& filter, int qos) {
    {
      std::lock_guard lk(mu_);
      granted_ = -1;
    }
    if (int rc = mosquitto_subscribe(m_, nullptr, filter.c_str(), qos); rc != MOSQ_ERR_SUCCESS)
      return Error(Code::kUnavailable, "subscribe {}: {}", filter, mosquitto_strerror(rc));
    std::unique_lock lk(mu_);
    if (!cv_.wait_for(lk, std::chrono::seconds(10), [&] { return granted_ >= 0; }))
      return Error(Code::kDeadlineExceeded, "subscribe {}: no SUBACK in 10 s", filter);
    if (granted_ == 0x80) return Error(Code::kPermissionDenied, "subscribe {}: refused", filter);
    return Status::Ok();
  }

  // Does not wait for the PUBACK (counted in acked()).
  Status Publish(const std::string& topic, std::string_view payload, int qos) {
    int rc = mosquitto_publish(m_, nullptr, topic.c_str(), static_cast<int>(payload.size()),
                               payload.data(), qos, false);
    if (rc != MOSQ_ERR_SUCCESS)
      return Error(Code::kUnavailable, "publish {}: {}", topic, mosquitto_strerror(rc));
    return Status::Ok();
  }

  uint64_t acked() const { return acked_.load(); }
  uint64_t disconnects() const { return disconnects_.load(); }

 private:
  MessageFn on_message_;
  mosquitto* m_ = nullptr;
  bool looping_ = false;
  std::atomic<uint64_t> acked_{0};
  std::atomic<uint64_t> disconnects_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  int connack_ = -1;  // GUARDED_BY(mu_)
  int granted_ = -1;  // GUARDED_BY(mu_)
};

// What one phase recorded, indexed by seq. Written by the publisher (send_ns) and by the
// subscriber's network thread (the rest, under mu).
struct PhaseRecord {
  std::string name;
  std::string publish_topic;
  std::string command_topic;
  std::vector<int64_t> send_ns;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<int64_t> recv_ns;  // GUARDED_BY(mu); 0: not arrived
  uint64_t arrived = 0;          // GUARDED_BY(mu)
  uint64_t duplicates = 0;       // GUARDED_BY(mu)
  uint64_t reordered = 0;        // GUARDED_BY(mu): arrived after a higher seq
  uint64_t probes = 0;           // GUARDED_BY(mu)
  int64_t highest = -1;          // GUARDED_BY(mu)
};

// "seq":N anywhere in a JSON object (the rule's output orders its columns its own way).
std::optional<int64_t> SeqOf(std::string_view payload) {
  constexpr std::string_view kKey = "\"seq\":";
  size_t at = payload.find(kKey);
  if (at == std::string_view::npos) return std::nullopt;
  std::string_view rest = payload.substr(at + kKey.size());
  while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  int64_t v = 0;
  auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), v);
  if (ec != std::errc()) return std::nullopt;
  return v;
}

void OnCommand(PhaseRecord& p, int64_t arrival_ns, std::string_view payload) {
  auto seq = SeqOf(payload);
  if (!seq) return;
  std::lock_guard lk(p.mu);
  if (*seq < 0) {
    ++p.probes;
  } else if (static_cast<size_t>(*seq) < p.recv_ns.size()) {
    if (p.recv_ns[*seq] != 0) {
      ++p.duplicates;
    } else {
      p.recv_ns[*seq] = arrival_ns;
      ++p.arrived;
      if (*seq < p.highest) ++p.reordered;
      p.highest = std::max(p.highest, *seq);
    }
  }
  p.cv.notify_all();
}

std::string Payload(int64_t seq) { return fmt::format("{{\"seq\":{},\"level\":5}}", seq); }

struct Settings {
  std::string host;
  int port = 0;
  std::string device;
  int qos = 1;
  uint64_t count = 0;
  uint64_t warmup = 0;
  double rate = 0;
  Millis ready_timeout{30'000};
  Millis drain_timeout{10'000};
};

// Publishes probes until one comes back; the time it took, or an error.
Result<int64_t> WaitReady(const Settings& s, DeviceConnection& pub, PhaseRecord& p) {
  auto start = SteadyClock::now();
  auto deadline = start + s.ready_timeout;
  while (SteadyClock::now() < deadline) {
    VERGE_RETURN_IF_ERROR(pub.Publish(p.publish_topic, Payload(-1), s.qos));
    std::unique_lock lk(p.mu);
    if (p.cv.wait_for(lk, std::chrono::milliseconds(200), [&] { return p.probes > 0; }))
      return std::chrono::duration_cast<Millis>(SteadyClock::now() - start).count();
  }
  return Error(Code::kDeadlineExceeded,
               "{}: nothing came back on {} within {} of probes on {} (is the rule running?)",
               p.name, p.command_topic, FormatDuration(s.ready_timeout), p.publish_topic);
}

double Percentile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  // Nearest rank: the smallest value with at least q of the samples at or below it.
  size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(sorted.size())));
  return sorted[std::clamp<size_t>(rank, 1, sorted.size()) - 1];
}

Result<nlohmann::json> RunPhase(const Settings& s, DeviceConnection& pub, PhaseRecord& p) {
  const uint64_t total = s.warmup + s.count;
  p.send_ns.assign(total, 0);
  {
    std::lock_guard lk(p.mu);
    p.recv_ns.assign(total, 0);
  }
  VERGE_ASSIGN_OR_RETURN(int64_t ready_ms, WaitReady(s, pub, p));
  // Probes still on their way must not meet the measured messages.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  uint64_t acked0 = pub.acked();

  const double period_ns = 1e9 / s.rate;
  const int64_t start_ns = NowNs() + 1'000'000;
  int64_t max_lag_ns = 0;
  uint64_t late = 0;  // publishes more than one period after their deadline
  for (uint64_t i = 0; i < total; ++i) {
    const int64_t due_ns = start_ns + static_cast<int64_t>(static_cast<double>(i) * period_ns);
    std::string payload = Payload(static_cast<int64_t>(i));
    int64_t now = NowNs();
    if (now < due_ns) {
      std::this_thread::sleep_for(std::chrono::nanoseconds(due_ns - now));
      now = NowNs();
    }
    max_lag_ns = std::max(max_lag_ns, now - due_ns);
    if (static_cast<double>(now - due_ns) > period_ns) ++late;
    p.send_ns[i] = now;
    VERGE_RETURN_IF_ERROR(pub.Publish(p.publish_topic, payload, s.qos));
  }
  const int64_t end_ns = NowNs();
  {
    std::unique_lock lk(p.mu);
    p.cv.wait_for(lk, s.drain_timeout, [&] { return p.arrived == total; });
  }
  // PUBACKs of the last messages.
  auto ack_deadline = SteadyClock::now() + std::chrono::seconds(5);
  while (s.qos > 0 && pub.acked() - acked0 < total && SteadyClock::now() < ack_deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));

  std::lock_guard lk(p.mu);
  std::vector<double> us;
  us.reserve(s.count);
  for (uint64_t i = s.warmup; i < total; ++i) {
    if (p.recv_ns[i] != 0) us.push_back(static_cast<double>(p.recv_ns[i] - p.send_ns[i]) / 1e3);
  }
  std::sort(us.begin(), us.end());
  double sum = 0;
  for (double v : us) sum += v;
  auto round1 = [](double v) { return std::round(v * 10) / 10; };
  nlohmann::json j = {
      {"publish_topic", p.publish_topic},
      {"command_topic", p.command_topic},
      {"sent", s.count},
      {"arrived", us.size()},
      {"lost", s.count - us.size()},
      {"warmup_sent", s.warmup},
      {"duplicates", p.duplicates},
      {"reordered", p.reordered},
      {"min_us", round1(us.empty() ? 0 : us.front())},
      {"p50_us", round1(Percentile(us, 0.50))},
      {"p90_us", round1(Percentile(us, 0.90))},
      {"p99_us", round1(Percentile(us, 0.99))},
      {"p999_us", round1(Percentile(us, 0.999))},
      {"max_us", round1(us.empty() ? 0 : us.back())},
      {"mean_us", round1(us.empty() ? 0 : sum / static_cast<double>(us.size()))},
      {"offered_per_s", round1(static_cast<double>(total) * 1e9 /
                               static_cast<double>(std::max<int64_t>(end_ns - start_ns, 1)))},
      {"publisher_max_lag_us", round1(static_cast<double>(max_lag_ns) / 1e3)},
      {"publisher_late", late},
      {"pubacks", pub.acked() - acked0},
      {"ready_ms", ready_ms},
  };
  return j;
}

int Main(int argc, char** argv) {
  CLI::App app{
      "verge-rule-latency-bench: MQTT -> rule -> MQTT command latency, beside the "
      "broker alone (bench/load/rule_latency.sh)",
      "verge-rule-latency-bench"};
  std::string broker, device = "pump", password, raw_path, phases_text = "rule,direct";
  std::string ready_text = "30s", drain_text = "10s", connect_text = "60s";
  std::string alarm_topic, rule_topic, direct_topic;
  Settings s;
  s.count = 20'000;
  s.warmup = 500;
  s.rate = 1000;
  app.add_option("--broker", broker, "The node's MQTT listener, HOST:PORT")->required();
  app.add_option("--device", device, "Device name (MQTT username)")->capture_default_str();
  app.add_option("--password", password, "The device's token")->required();
  app.add_option("--count", s.count, "Measured messages per phase")->capture_default_str();
  app.add_option("--warmup", s.warmup, "Messages sent first and left out")->capture_default_str();
  app.add_option("--rate", s.rate, "Messages per second")->capture_default_str();
  app.add_option("--qos", s.qos, "QoS of publish and subscription (0 or 1)")->capture_default_str();
  app.add_option("--phases", phases_text, "Comma-separated: rule, direct")->capture_default_str();
  app.add_option("--alarm-topic", alarm_topic, "Rule phase: publish here (devices/D/alarms)");
  app.add_option("--rule-topic", rule_topic, "Rule phase: the command (devices/D/commands/trip)");
  app.add_option("--direct-topic", direct_topic,
                 "Direct phase: publish here (devices/D/commands/direct)");
  app.add_option("--connect-timeout", connect_text, "Retry refused connections this long")
      ->capture_default_str();
  app.add_option("--ready-timeout", ready_text, "Probe a phase's path this long")
      ->capture_default_str();
  app.add_option("--drain-timeout", drain_text, "Wait for the last commands this long")
      ->capture_default_str();
  app.add_option("--raw", raw_path, "Write 'phase seq send_ns recv_ns' per message here");
  CLI11_PARSE(app, argc, argv);

  auto hp = mqtt::ParseHostPort(broker);
  auto ready = ParseDuration(ready_text);
  auto drain = ParseDuration(drain_text);
  auto connect = ParseDuration(connect_text);
  if (!hp.ok() || !ready.ok() || !drain.ok() || !connect.ok() || s.count == 0 || s.rate <= 0 ||
      (s.qos != 0 && s.qos != 1)) {
    std::cerr << "verge-rule-latency-bench: need --broker HOST:PORT, --count > 0, --rate > 0, "
                 "--qos 0|1 and durations such as 500ms, 30s\n";
    return 2;
  }
  s.host = hp->host;
  s.port = hp->port;
  s.device = device;
  s.ready_timeout = *ready;
  s.drain_timeout = *drain;
  const std::string prefix = "devices/" + device;
  if (alarm_topic.empty()) alarm_topic = prefix + "/alarms";
  if (rule_topic.empty()) rule_topic = prefix + "/commands/trip";
  if (direct_topic.empty()) direct_topic = prefix + "/commands/direct";

  std::vector<std::unique_ptr<PhaseRecord>> phases;
  for (std::string_view rest = phases_text; !rest.empty();) {
    size_t comma = rest.find(',');
    std::string name(rest.substr(0, comma));
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    auto p = std::make_unique<PhaseRecord>();
    p->name = name;
    if (name == "rule") {
      p->publish_topic = alarm_topic;
      p->command_topic = rule_topic;
    } else if (name == "direct") {
      p->publish_topic = direct_topic;
      p->command_topic = direct_topic;
    } else {
      std::cerr << "verge-rule-latency-bench: unknown phase \"" << name << "\"\n";
      return 2;
    }
    phases.push_back(std::move(p));
  }

  signal(SIGPIPE, SIG_IGN);
  mosquitto_lib_init();
  int rc = 1;
  {
    DeviceConnection sub(device + "-lat-sub", device, password,
                         [&](int64_t at, std::string_view topic, std::string_view payload) {
                           for (auto& p : phases) {
                             if (topic == p->command_topic) OnCommand(*p, at, payload);
                           }
                         });
    DeviceConnection pub(device + "-lat-pub", device, password, [](auto, auto, auto) {});
    nlohmann::json out = {{"device", device}, {"rate", s.rate},
                          {"count", s.count}, {"warmup", s.warmup},
                          {"qos", s.qos},     {"phases", nlohmann::json::object()}};
    Status st = sub.Connect(s.host, s.port, *connect);
    if (st.ok()) st = pub.Connect(s.host, s.port, *connect);
    if (st.ok()) st = sub.Subscribe(prefix + "/commands/#", s.qos);
    for (auto& p : phases) {
      if (!st.ok()) break;
      std::cerr << "verge-rule-latency-bench: " << p->name << ": " << s.warmup << " + " << s.count
                << " messages at " << s.rate << "/s to " << p->publish_topic << "\n";
      auto r = RunPhase(s, pub, *p);
      if (!r.ok()) {
        st = r.status();
        break;
      }
      out["phases"][p->name] = *r;
    }
    out["disconnects"] = sub.disconnects() + pub.disconnects();
    if (!st.ok()) {
      std::cerr << "verge-rule-latency-bench: " << st.message() << "\n";
    } else {
      std::cout << out.dump() << std::endl;
      rc = 0;
    }
    if (!raw_path.empty()) {
      std::ofstream raw(raw_path);
      for (auto& p : phases) {
        std::lock_guard lk(p->mu);
        for (size_t i = 0; i < p->send_ns.size(); ++i)
          raw << p->name << ' ' << i << ' ' << p->send_ns[i] << ' '
              << (i < p->recv_ns.size() ? p->recv_ns[i] : 0) << '\n';
      }
      if (!raw) {
        std::cerr << "verge-rule-latency-bench: cannot write " << raw_path << "\n";
        rc = 1;
      }
    }
  }
  mosquitto_lib_cleanup();
  return rc;
}

}  // namespace
}  // namespace verge::bench

int main(int argc, char** argv) { return verge::bench::Main(argc, argv); }
