// verge-mqtt-bench: the node's side of bench/load/mqtt_ingest.sh, which compares the MQTT ingest
// rate through Mosquitto into the node's subscriber with Mosquitto's own pub->sub rate
// (mosquitto_sub) in the same run.
//   verge-mqtt-bench broker --work-dir DIR --listen HOST:PORT --device NAME=TOKEN ...
//                           --account-out FILE
//     runs a MosquittoBroker (the node's generated config, gate and supervision) until
//     SIGINT/SIGTERM, after writing the node's account as JSON to FILE (the script's
//     mosquitto_sub logs in with it too, so both subscribers meet the same ACL);
//   verge-mqtt-bench sub --broker HOST:PORT --username U --password P --client-id ID
//                        --count N [--sink noop|parse] [--timeout 5m]
//     runs an MqttSubscriber into a counting sink until N messages arrived, then prints
//     {"messages":..,"readings":..,"elapsed_ms":..,"msgs_per_s":..} (elapsed from Start to
//     the Nth message, connect included, like a mosquitto_sub process's wall time).
// Exit codes: 0 ok, 1 runtime failure or timeout, 2 usage.
#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "common/duration.h"
#include "common/fs.h"
#include "common/log.h"
#include "node/data/payload.h"
#include "node/mqtt/broker.h"
#include "node/mqtt/password.h"
#include "node/mqtt/subscriber.h"

namespace verge::bench {
namespace {

// Counts messages; with `parse`, also runs the real payload parser (no storage).
class CountingSink : public data::IngestSink {
 public:
  CountingSink(const Clock& clock, bool parse, uint64_t target)
      : clock_(clock), parse_(parse), target_(target) {}

  Result<data::IngestReport> IngestPayload(std::string_view device, std::string_view body,
                                           data::Framing framing) override {
    data::IngestReport report;
    if (parse_) {
      data::ParseOptions o;
      o.default_device = device;
      o.now_ns = clock_.WallMs() * 1'000'000;
      if (Status st = parser_.Parse(body, framing, o, out_); !st.ok()) {
        return Status(Code::kInvalidArgument, st.message());
      }
      report.accepted = out_.readings.size();
    } else {
      report.accepted = 1;
    }
    readings_ += report.accepted;
    if (++messages_ == target_) {
      std::lock_guard lk(mu_);
      done_at_ = std::chrono::steady_clock::now();
      cv_.notify_all();
    }
    return report;
  }
  Result<data::IngestReport> IngestReadings(std::vector<data::Reading> r) override {
    return data::IngestReport{r.size(), {}};
  }

  // Waits until the target is reached; returns when, or nullopt on timeout.
  std::optional<std::chrono::steady_clock::time_point> Wait(Millis timeout) {
    std::unique_lock lk(mu_);
    cv_.wait_for(lk, timeout, [&] { return done_at_.has_value(); });
    return done_at_;
  }
  uint64_t messages() const { return messages_; }
  uint64_t readings() const { return readings_; }

 private:
  const Clock& clock_;
  const bool parse_;
  const uint64_t target_;
  data::PayloadParser parser_;  // only the subscriber's thread calls IngestPayload
  data::ParseResult out_;
  std::atomic<uint64_t> messages_{0};
  std::atomic<uint64_t> readings_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<std::chrono::steady_clock::time_point> done_at_;
};

int RunBroker(const std::string& work_dir, const std::string& listen,
              const std::vector<std::string>& device_flags, const std::string& account_out) {
  std::vector<mqtt::BrokerDevice> devices;
  for (const std::string& d : device_flags) {
    auto eq = d.find('=');
    if (eq == std::string::npos) {
      std::cerr << "verge-mqtt-bench: --device wants NAME=TOKEN\n";
      return 2;
    }
    auto hash = mqtt::HashPassword(d.substr(eq + 1));
    if (!hash.ok()) return 1;
    devices.push_back({d.substr(0, eq), *hash});
  }
  PrepareSignals();
  SystemClock clock;
  mqtt::BrokerOptions o;
  o.work_dir = work_dir;
  o.listen = listen;
  o.client_id = mqtt::NodeClientId("bench");
  mqtt::MosquittoBroker broker(clock, o);
  if (Status st = broker.Start(devices); !st.ok()) {
    std::cerr << "verge-mqtt-bench: " << st.message() << "\n";
    return 1;
  }
  mqtt::NodeAccount a = broker.node_account();
  nlohmann::json j = {{"host", a.host},           {"port", a.port},
                      {"username", a.username},   {"password", a.password},
                      {"client_id", a.client_id}, {"pid", broker.Stats().pid}};
  if (Status st = WriteFileAtomic(account_out, j.dump() + "\n", 0600); !st.ok()) {
    std::cerr << "verge-mqtt-bench: " << st.message() << "\n";
    return 1;
  }
  WaitForStopSignal();
  broker.Stop();
  return 0;
}

int RunSub(const std::string& broker, const std::string& username, const std::string& password,
           const std::string& client_id, uint64_t count, const std::string& sink_kind,
           Millis timeout) {
  auto hp = mqtt::ParseHostPort(broker);
  if (!hp.ok() || count == 0 || (sink_kind != "noop" && sink_kind != "parse")) {
    std::cerr << "verge-mqtt-bench: need --broker HOST:PORT, --count > 0, --sink noop|parse\n";
    return 2;
  }
  SystemClock clock;
  CountingSink sink(clock, sink_kind == "parse", count);
  mqtt::SubscriberOptions o;
  o.host = hp->host;
  o.port = hp->port;
  o.username = username;
  o.password = password;
  o.client_id = client_id;
  o.publish_rejections = false;
  mqtt::MqttSubscriber sub(clock, sink, o);
  const auto start = std::chrono::steady_clock::now();
  if (Status st = sub.Start(); !st.ok()) {
    std::cerr << "verge-mqtt-bench: " << st.message() << "\n";
    return 1;
  }
  auto done = sink.Wait(timeout);
  sub.Stop();
  auto end = done.value_or(std::chrono::steady_clock::now());
  double ms = std::chrono::duration<double, std::milli>(end - start).count();
  nlohmann::json j = {{"messages", sink.messages()},
                      {"readings", sink.readings()},
                      {"elapsed_ms", static_cast<int64_t>(ms)},
                      {"msgs_per_s", ms > 0 ? static_cast<double>(sink.messages()) * 1000 / ms : 0},
                      {"sink", sink_kind},
                      {"complete", done.has_value()}};
  std::cout << j.dump() << std::endl;
  return done ? 0 : 1;
}

int Main(int argc, char** argv) {
  CLI::App app{"verge-mqtt-bench: the node's side of bench/load/mqtt_ingest.sh",
               "verge-mqtt-bench"};
  app.require_subcommand(1);
  std::string log_level = "warn";
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error")->capture_default_str();
  app.fallthrough();

  auto* broker_cmd = app.add_subcommand("broker", "Run the node's supervised Mosquitto");
  std::string work_dir, listen = "127.0.0.1:1883", account_out;
  std::vector<std::string> devices;
  broker_cmd->add_option("--work-dir", work_dir, "Broker work dir")->required();
  broker_cmd->add_option("--listen", listen, "Devices' listener HOST:PORT")->capture_default_str();
  broker_cmd->add_option("--device", devices, "NAME=TOKEN (repeatable)");
  broker_cmd->add_option("--account-out", account_out, "Where to write the node's account JSON")
      ->required();

  auto* sub_cmd = app.add_subcommand("sub", "Drain N messages through the node's subscriber");
  std::string broker = "127.0.0.1:1883", username, password, client_id, sink_kind = "noop",
              timeout_text = "5m";
  uint64_t count = 0;
  sub_cmd->add_option("--broker", broker, "HOST:PORT")->capture_default_str();
  sub_cmd->add_option("--username", username, "Username");
  sub_cmd->add_option("--password", password, "Password");
  sub_cmd->add_option("--client-id", client_id, "Client id (its persistent session)")->required();
  sub_cmd->add_option("--count", count, "Messages to wait for")->required();
  sub_cmd->add_option("--sink", sink_kind, "noop: count only; parse: run the payload parser")
      ->capture_default_str();
  sub_cmd->add_option("--timeout", timeout_text, "Give up after this long")->capture_default_str();

  CLI11_PARSE(app, argc, argv);
  if (Status st = SetupLogging(log_level); !st.ok()) {
    std::cerr << "verge-mqtt-bench: " << st.message() << "\n";
    return 2;
  }
  if (*broker_cmd) return RunBroker(work_dir, listen, devices, account_out);
  auto timeout = ParseDuration(timeout_text);
  if (!timeout.ok()) {
    std::cerr << "verge-mqtt-bench: --timeout: " << timeout.status().message() << "\n";
    return 2;
  }
  return RunSub(broker, username, password, client_id, count, sink_kind, *timeout);
}

}  // namespace
}  // namespace verge::bench

int main(int argc, char** argv) { return verge::bench::Main(argc, argv); }
