// MQTT ingest against the real Mosquitto 2.0 and libmosquitto: the node's supervised broker
// (authentication, ACLs, reloads, restarts, leftovers, the gate), the node's subscriber
// (persistent session, redelivery after a crash inside the sink or a sink failure, rejections),
// and verge-devsim's load. The only fake is the IngestSink, an in-memory recorder that parses
// with the real PayloadParser.
//
// Some tests re-run this binary as a child process (MqttChild.Run, which skips itself unless
// VERGE_MQTT_CHILD is set) to have a node process that can be SIGKILLed.
#include <gtest/gtest.h>
#include <mosquitto.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "common/clock.h"
#include "common/fs.h"
#include "harness.h"
#include "mqtt_device.h"
#include "node/data/payload.h"
#include "node/mqtt/broker.h"
#include "node/mqtt/password.h"
#include "node/mqtt/subscriber.h"
#include "node/mqtt/topics.h"

namespace verge::testing {
namespace {

using json = nlohmann::json;
using mqtt::BrokerDevice;
using mqtt::BrokerOptions;
using mqtt::MosquittoBroker;
using mqtt::MqttSubscriber;
using mqtt::NodeAccount;
using mqtt::SubscriberOptions;
using std::chrono::seconds;

// The in-memory IngestSink: parses with the real parser, keeps what it accepted. Can be told
// to fail the next calls (storage errors) or to kill the process inside a call (a node crash
// between receiving a message and storing it).
class RecordingSink : public data::IngestSink {
 public:
  explicit RecordingSink(const Clock& clock) : clock_(clock) {}

  Result<data::IngestReport> IngestPayload(std::string_view device, std::string_view body,
                                           data::Framing framing) override {
    if (kill_inside_) raise(SIGKILL);
    std::lock_guard lk(mu_);
    ++calls_;
    if (fail_next_ > 0) {
      --fail_next_;
      return Error(Code::kUnavailable, "disk full (injected)");
    }
    data::ParseOptions o;
    o.default_device = device;
    o.now_ns = clock_.WallMs() * 1'000'000;
    data::ParseResult out;
    if (Status st = parser_.Parse(body, framing, o, out); !st.ok()) {
      return Error(Code::kInvalidArgument, "{}", st.message());
    }
    payloads_.emplace_back(device, body);
    for (auto& r : out.readings) readings_.push_back(r);
    return data::IngestReport{out.readings.size(), out.rejected};
  }

  Result<data::IngestReport> IngestReadings(std::vector<data::Reading> readings) override {
    std::lock_guard lk(mu_);
    size_t n = readings.size();
    for (auto& r : readings) readings_.push_back(std::move(r));
    return data::IngestReport{n, {}};
  }

  size_t readings() const {
    std::lock_guard lk(mu_);
    return readings_.size();
  }
  size_t payloads() const {
    std::lock_guard lk(mu_);
    return payloads_.size();
  }
  std::vector<std::pair<std::string, std::string>> Payloads() const {
    std::lock_guard lk(mu_);
    return payloads_;
  }
  // Payload bodies received from `device`, in order.
  std::vector<std::string> BodiesOf(const std::string& device) const {
    std::lock_guard lk(mu_);
    std::vector<std::string> out;
    for (auto& [d, b] : payloads_) {
      if (d == device) out.push_back(b);
    }
    return out;
  }
  size_t calls() const {
    std::lock_guard lk(mu_);
    return calls_;
  }
  void FailNext(int n) {
    std::lock_guard lk(mu_);
    fail_next_ = n;
  }
  void KillInside() { kill_inside_ = true; }

 private:
  const Clock& clock_;
  mutable std::mutex mu_;
  data::PayloadParser parser_;
  std::vector<std::pair<std::string, std::string>> payloads_;
  std::vector<data::Reading> readings_;
  size_t calls_ = 0;
  int fail_next_ = 0;
  std::atomic<bool> kill_inside_{false};
};

// Tries one connection; the CONNACK code (0 accepted, -1 none).
int TryConnect(const std::string& name, const std::string& password, int port) {
  TestDevice d(name, password, port);
  return d.Connect();
}

std::string Reading(double value, int64_t ts_ms) {
  return json{{"value", value}, {"timestamp", ts_ms}}.dump();
}

BrokerDevice Device(const std::string& name, const std::string& token) {
  return {name, *mqtt::HashPassword(token)};
}

struct Fixture {
  Fixture() : port(FreePort()) {}

  BrokerOptions Options(const std::string& dir = "mqtt") {
    BrokerOptions o;
    o.work_dir = tmp / dir;
    o.listen = "127.0.0.1:" + std::to_string(port);
    o.client_id = mqtt::NodeClientId("it");
    o.restart_initial = Millis(100);
    o.restart_max = Millis(1000);
    return o;
  }
  SubscriberOptions Subscriber(const NodeAccount& a) {
    SubscriberOptions o;
    o.host = a.host;
    o.port = a.port;
    o.username = a.username;
    o.password = a.password;
    o.client_id = a.client_id;
    o.reconnect_initial = Millis(100);
    o.reconnect_max = Millis(500);
    return o;
  }

  TempDir tmp;
  int port;
  SystemClock clock;
};

bool ProcessGone(pid_t pid) {
  auto stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  if (!stat.ok()) return true;
  // A zombie has exited; only its parent (init here) has yet to reap it.
  auto close = stat->rfind(')');
  return close != std::string::npos && stat->size() > close + 2 && (*stat)[close + 2] == 'Z';
}

// ---------------------------------------------------------------------------------------------

TEST(MqttIngest, DevicePublishesAndTheSinkGetsItsReadings) {
  Fixture f;
  MosquittoBroker broker(f.clock, f.Options());
  ASSERT_TRUE(broker.Start({Device("dev1", "tok1"), Device("dev2", "tok2")}).ok());
  EXPECT_TRUE(broker.Stats().running);
  RecordingSink sink(f.clock);
  MqttSubscriber sub(f.clock, sink, f.Subscriber(broker.node_account()));
  ASSERT_TRUE(sub.Start().ok());

  TestDevice dev1("dev1", "tok1", f.port);
  ASSERT_EQ(dev1.Connect(), 0);
  const int64_t now = f.clock.WallMs();
  ASSERT_TRUE(dev1.PublishOwn(Reading(21.5, now)));
  ASSERT_TRUE(dev1.PublishOwn(
      json::array({{{"metrics", {{"temp", 1}, {"hum", 2}}}, {"timestamp", now}}}).dump()));
  ASSERT_TRUE(Eventually([&] { return sink.readings() == 3; }, seconds(10)));
  for (auto& [device, body] : sink.Payloads()) EXPECT_EQ(device, "dev1");
  auto st = sub.Stats();
  EXPECT_TRUE(st.connected);
  EXPECT_EQ(st.messages, 2u);
  EXPECT_EQ(st.readings.accepted, 3u);
  EXPECT_EQ(st.readings.total_rejected(), 0u);
  EXPECT_EQ(st.sink_errors, 0u);

  // Generated files are private.
  for (const char* name : {"mosquitto.conf", "passwd", "acl"}) {
    struct stat s {};
    ASSERT_EQ(::stat((f.tmp / "mqtt/" + name).c_str(), &s), 0) << name;
    EXPECT_EQ(s.st_mode & 0777, 0600u) << name;
  }
  pid_t pid = broker.Stats().pid;
  sub.Stop();
  broker.Stop();
  EXPECT_TRUE(ProcessGone(pid));
  EXPECT_FALSE(FileExists(f.tmp / "mqtt/mosquitto.pid"));
  EXPECT_FALSE(broker.Stats().running);
}

TEST(MqttIngest, WrongCredentialsAreRefused) {
  Fixture f;
  MosquittoBroker broker(f.clock, f.Options());
  ASSERT_TRUE(broker.Start({Device("dev1", "tok1")}).ok());
  EXPECT_EQ(TryConnect("dev1", "tok1", f.port), 0);
  EXPECT_GT(TryConnect("dev1", "wrong", f.port), 0);
  EXPECT_GT(TryConnect("dev1", "", f.port), 0);
  EXPECT_GT(TryConnect("nobody", "tok1", f.port), 0);
  // Anonymous.
  mosquitto_lib_init();
  mosquitto* m = mosquitto_new(nullptr, true, nullptr);
  int rc = -1;
  mosquitto_user_data_set(m, &rc);
  mosquitto_connect_callback_set(
      m, [](mosquitto*, void* obj, int code) { *static_cast<int*>(obj) = code; });
  ASSERT_EQ(mosquitto_connect(m, "127.0.0.1", f.port, 10), MOSQ_ERR_SUCCESS);
  for (int i = 0; i < 100 && rc < 0; ++i) mosquitto_loop(m, 100, 1);
  EXPECT_GT(rc, 0);
  mosquitto_destroy(m);
  // The node's own account is not a device's: a device cannot pose as it with a guess.
  EXPECT_GT(TryConnect(std::string(mqtt::kNodeUser), "tok1", f.port), 0);
}

// Mosquitto (MQTT 3.1.1) acknowledges a publish its ACL denies and drops it, so neither the
// device nor the node's subscriber can count it: it never reaches the node.
TEST(MqttIngest, PublishingToAnotherDevicesTopicIsNotDelivered) {
  Fixture f;
  MosquittoBroker broker(f.clock, f.Options());
  ASSERT_TRUE(broker.Start({Device("dev1", "tok1"), Device("dev2", "tok2")}).ok());
  RecordingSink sink(f.clock);
  MqttSubscriber sub(f.clock, sink, f.Subscriber(broker.node_account()));
  ASSERT_TRUE(sub.Start().ok());
  ASSERT_TRUE(Eventually([&] { return sub.Stats().connected; }, seconds(10)));

  TestDevice dev1("dev1", "tok1", f.port);
  ASSERT_EQ(dev1.Connect(), 0);
  const int64_t now = f.clock.WallMs();
  EXPECT_TRUE(dev1.Publish(mqtt::TelemetryTopic("dev2"), Reading(666, now)));
  EXPECT_TRUE(dev1.Publish("devices/dev2/telemetry/extra", Reading(667, now)));
  EXPECT_TRUE(dev1.Publish("elsewhere", Reading(668, now)));
  // A marker behind them on the same connection: once it is in, the others had their chance.
  ASSERT_TRUE(dev1.PublishOwn(Reading(1, now)));
  ASSERT_TRUE(Eventually([&] { return sink.payloads() >= 1; }, seconds(10)));
  auto payloads = sink.Payloads();
  ASSERT_EQ(payloads.size(), 1u);
  EXPECT_EQ(payloads[0].first, "dev1");
  EXPECT_EQ(sub.Stats().bad_topics, 0u);
  EXPECT_EQ(sub.Stats().messages, 1u);
}

TEST(MqttIngest, DeviceListChangesApplyWithoutRestart) {
  Fixture f;
  MosquittoBroker broker(f.clock, f.Options());
  ASSERT_TRUE(broker.Start({Device("dev1", "tok1")}).ok());
  const pid_t pid = broker.Stats().pid;
  RecordingSink sink(f.clock);
  MqttSubscriber sub(f.clock, sink, f.Subscriber(broker.node_account()));
  ASSERT_TRUE(sub.Start().ok());
  EXPECT_GT(TryConnect("dev3", "tok3", f.port), 0);

  TestDevice connected_dev1("dev1", "tok1", f.port);
  ASSERT_EQ(connected_dev1.Connect(), 0);

  // Add dev3, remove dev1.
  ASSERT_TRUE(broker.SetDevices({Device("dev3", "tok3")}).ok());
  EXPECT_EQ(broker.Stats().reloads, 1u);
  EXPECT_EQ(broker.Stats().devices, 1u);
  ASSERT_TRUE(Eventually([&] { return TryConnect("dev3", "tok3", f.port) == 0; }, seconds(10)));
  TestDevice dev3("dev3", "tok3", f.port);
  ASSERT_EQ(dev3.Connect(), 0);
  ASSERT_TRUE(dev3.PublishOwn(Reading(3, f.clock.WallMs())));
  ASSERT_TRUE(Eventually([&] { return sink.BodiesOf("dev3").size() == 1; }, seconds(10)));

  EXPECT_TRUE(Eventually([&] { return TryConnect("dev1", "tok1", f.port) > 0; }, seconds(10)));
  // Mosquitto 2.0 also drops a connection whose credentials no longer hold.
  EXPECT_TRUE(Eventually([&] { return !connected_dev1.connected(); }, seconds(10)));
  EXPECT_EQ(broker.Stats().pid, pid) << "reloaded, not restarted";
  EXPECT_EQ(broker.Stats().starts, 1u);

  // An invalid list changes nothing.
  EXPECT_EQ(broker.SetDevices({Device("dev3", "tok3"), {"dev4", "not-a-hash"}}).code(),
            Code::kInvalidArgument);
  EXPECT_EQ(broker.Stats().reloads, 1u);
  EXPECT_EQ(TryConnect("dev3", "tok3", f.port), 0);
}

TEST(MqttIngest, KilledBrokerIsRestartedAndIngestResumes) {
  Fixture f;
  MosquittoBroker broker(f.clock, f.Options());
  ASSERT_TRUE(broker.Start({Device("dev1", "tok1")}).ok());
  RecordingSink sink(f.clock);
  MqttSubscriber sub(f.clock, sink, f.Subscriber(broker.node_account()));
  ASSERT_TRUE(sub.Start().ok());
  ASSERT_TRUE(Eventually([&] { return sub.Stats().connected; }, seconds(10)));

  const pid_t old_pid = broker.Stats().pid;
  ASSERT_GT(old_pid, 0);
  ASSERT_EQ(kill(old_pid, SIGKILL), 0);
  ASSERT_TRUE(Eventually(
      [&] {
        auto s = broker.Stats();
        return s.running && s.pid != old_pid && s.pid != 0;
      },
      seconds(20)));
  auto st = broker.Stats();
  EXPECT_EQ(st.restarts, 1u);
  EXPECT_EQ(st.starts, 2u);
  EXPECT_NE(st.last_exit.find("signal 9"), std::string::npos) << st.last_exit;

  ASSERT_TRUE(Eventually([&] { return sub.Stats().connected; }, seconds(20)));
  EXPECT_GE(sub.Stats().disconnects, 1u);
  TestDevice dev1("dev1", "tok1", f.port);
  ASSERT_EQ(dev1.Connect(), 0);
  ASSERT_TRUE(dev1.PublishOwn(Reading(5, f.clock.WallMs())));
  ASSERT_TRUE(Eventually([&] { return sink.readings() == 1; }, seconds(10)));
}

// QoS 1 messages published while the node's subscriber is away wait in its persistent session.
TEST(MqttIngest, MessagesQueuedWhileTheSubscriberIsDownArriveAfterItReturns) {
  Fixture f;
  MosquittoBroker broker(f.clock, f.Options());
  ASSERT_TRUE(broker.Start({Device("dev1", "tok1")}).ok());
  RecordingSink sink(f.clock);
  {
    MqttSubscriber sub(f.clock, sink, f.Subscriber(broker.node_account()));
    ASSERT_TRUE(sub.Start().ok());
    ASSERT_TRUE(Eventually([&] { return sub.Stats().connected; }, seconds(10)));
  }  // stopped
  TestDevice dev1("dev1", "tok1", f.port);
  ASSERT_EQ(dev1.Connect(), 0);
  const int64_t now = f.clock.WallMs();
  for (int i = 0; i < 200; ++i) ASSERT_TRUE(dev1.PublishOwn(Reading(i, now + i)));
  EXPECT_EQ(sink.payloads(), 0u);

  MqttSubscriber again(f.clock, sink, f.Subscriber(broker.node_account()));
  ASSERT_TRUE(again.Start().ok());
  ASSERT_TRUE(Eventually([&] { return sink.payloads() == 200; }, seconds(20)));
  auto bodies = sink.BodiesOf("dev1");
  for (int i = 0; i < 200; ++i) EXPECT_EQ(bodies[i], Reading(i, now + i)) << "in order";
}

// The gate: the broker's very first start has no session for the node yet; devices must not
// get in (and have QoS 1 messages acknowledged into the void) before it exists.
TEST(MqttIngest, MessagesPublishedBeforeTheNodeEverSubscribedAreKept) {
  Fixture f;
  MosquittoBroker broker(f.clock, f.Options());
  ASSERT_TRUE(broker.Start({Device("dev1", "tok1")}).ok());
  TestDevice dev1("dev1", "tok1", f.port);
  ASSERT_EQ(dev1.Connect(), 0);
  const int64_t now = f.clock.WallMs();
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(dev1.PublishOwn(Reading(i, now + i)));

  RecordingSink sink(f.clock);
  MqttSubscriber sub(f.clock, sink, f.Subscriber(broker.node_account()));
  ASSERT_TRUE(sub.Start().ok());
  ASSERT_TRUE(Eventually([&] { return sink.payloads() == 50; }, seconds(20)));
}

// A graceful broker restart (Stop, Start: a node restart) keeps the queued messages: Mosquitto
// saves its database on SIGTERM.
TEST(MqttIngest, QueuedMessagesSurviveABrokerRestart) {
  Fixture f;
  RecordingSink sink(f.clock);
  {
    MosquittoBroker broker(f.clock, f.Options());
    ASSERT_TRUE(broker.Start({Device("dev1", "tok1")}).ok());
    TestDevice dev1("dev1", "tok1", f.port);
    ASSERT_EQ(dev1.Connect(), 0);
    for (int i = 0; i < 20; ++i) ASSERT_TRUE(dev1.PublishOwn(Reading(i, f.clock.WallMs())));
  }
  MosquittoBroker broker(f.clock, f.Options());
  ASSERT_TRUE(broker.Start({Device("dev1", "tok1")}).ok());
  MqttSubscriber sub(f.clock, sink, f.Subscriber(broker.node_account()));
  ASSERT_TRUE(sub.Start().ok());
  ASSERT_TRUE(Eventually([&] { return sink.payloads() == 20; }, seconds(20)));
}

// A node killed inside the sink, after libmosquitto read the message but before the sink
// stored it: the PUBACK must not have left, so the broker delivers the message again.
TEST(MqttIngest, NodeKilledInsideTheSinkGetsTheMessageAgain) {
  Fixture f;
  MosquittoBroker broker(f.clock, f.Options());
  ASSERT_TRUE(broker.Start({Device("dev1", "tok1")}).ok());
  NodeAccount a = broker.node_account();

  std::string ready = f.tmp / "child.ready";
  setenv("VERGE_MQTT_CHILD",
         json{{"mode", "crash-in-sink"},
              {"host", a.host},
              {"port", a.port},
              {"username", a.username},
              {"password", a.password},
              {"client_id", a.client_id},
              {"ready", ready}}
             .dump()
             .c_str(),
         1);
  Process child({"/proc/self/exe", "--gtest_filter=MqttChild.Run"}, f.tmp / "child.log");
  unsetenv("VERGE_MQTT_CHILD");
  ASSERT_TRUE(Eventually([&] { return FileExists(ready) || !child.Running(); }, seconds(30)))
      << child.Log();
  ASSERT_TRUE(child.Running()) << child.Log();

  TestDevice dev1("dev1", "tok1", f.port);
  ASSERT_EQ(dev1.Connect(), 0);
  const int64_t now = f.clock.WallMs();
  ASSERT_TRUE(dev1.PublishOwn(Reading(42, now)));
  EXPECT_EQ(child.Wait(seconds(20)), 128 + SIGKILL) << child.Log();
  ASSERT_TRUE(dev1.PublishOwn(Reading(43, now + 1)));

  RecordingSink sink(f.clock);
  MqttSubscriber sub(f.clock, sink, f.Subscriber(a));
  ASSERT_TRUE(sub.Start().ok());
  ASSERT_TRUE(Eventually([&] { return sink.payloads() >= 2; }, seconds(20)));
  auto bodies = sink.BodiesOf("dev1");
  ASSERT_EQ(bodies.size(), 2u);
  EXPECT_EQ(bodies[0], Reading(42, now));
  EXPECT_EQ(bodies[1], Reading(43, now + 1));
}

// The sink cannot store (disk full): the message is not acknowledged, and comes again.
TEST(MqttIngest, SinkFailureIsNotAcknowledgedAndTheMessageComesAgain) {
  Fixture f;
  MosquittoBroker broker(f.clock, f.Options());
  ASSERT_TRUE(broker.Start({Device("dev1", "tok1")}).ok());
  RecordingSink sink(f.clock);
  sink.FailNext(2);
  MqttSubscriber sub(f.clock, sink, f.Subscriber(broker.node_account()));
  ASSERT_TRUE(sub.Start().ok());
  ASSERT_TRUE(Eventually([&] { return sub.Stats().connected; }, seconds(10)));

  TestDevice dev1("dev1", "tok1", f.port);
  ASSERT_EQ(dev1.Connect(), 0);
  const int64_t now = f.clock.WallMs();
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(dev1.PublishOwn(Reading(i, now + i)));
  ASSERT_TRUE(Eventually([&] { return sink.payloads() == 5; }, seconds(30)));
  auto bodies = sink.BodiesOf("dev1");
  for (int i = 0; i < 5; ++i) EXPECT_EQ(bodies[i], Reading(i, now + i));
  auto st = sub.Stats();
  EXPECT_EQ(st.sink_errors, 2u);
  EXPECT_GE(st.disconnects, 2u);
  EXPECT_EQ(sink.calls(), 7u);
  EXPECT_NE(st.last_error.find("disk full"), std::string::npos) << st.last_error;
}

TEST(MqttIngest, RejectionsAreCountedAndPublishedToTheDevice) {
  Fixture f;
  MosquittoBroker broker(f.clock, f.Options());
  ASSERT_TRUE(broker.Start({Device("dev1", "tok1"), Device("dev2", "tok2")}).ok());
  RecordingSink sink(f.clock);
  MqttSubscriber sub(f.clock, sink, f.Subscriber(broker.node_account()));
  ASSERT_TRUE(sub.Start().ok());
  ASSERT_TRUE(Eventually([&] { return sub.Stats().connected; }, seconds(10)));

  TestDevice dev1("dev1", "tok1", f.port);
  ASSERT_EQ(dev1.Connect(), 0);
  ASSERT_TRUE(dev1.Subscribe(mqtt::RejectedTopic("dev1")));
  // A device cannot read another device's rejections.
  TestDevice dev2("dev2", "tok2", f.port);
  ASSERT_EQ(dev2.Connect(), 0);
  ASSERT_TRUE(dev2.Subscribe(mqtt::RejectedTopic("dev1")));

  const int64_t now = f.clock.WallMs();
  ASSERT_TRUE(dev1.PublishOwn("{not json"));
  ASSERT_TRUE(dev1.PublishOwn(
      json::array({{{"value", 1}, {"timestamp", now}}, {{"value", "warm"}, {"timestamp", now}}})
          .dump()));
  ASSERT_TRUE(Eventually([&] { return dev1.received().size() == 2; }, seconds(10)));
  auto got = dev1.received();
  EXPECT_EQ(got[0].first, "devices/dev1/rejected");
  json malformed = json::parse(got[0].second);
  EXPECT_EQ(malformed["accepted"], 0);
  EXPECT_NE(malformed["error"].get<std::string>().find("malformed JSON"), std::string::npos);
  json partial = json::parse(got[1].second);
  EXPECT_EQ(partial["accepted"], 1);
  ASSERT_EQ(partial["rejected"].size(), 1u);
  EXPECT_EQ(partial["rejected"][0]["item"], 1);
  EXPECT_EQ(partial["rejected"][0]["reason"], "bad_value");

  auto st = sub.Stats();
  EXPECT_EQ(st.messages, 2u);
  EXPECT_EQ(st.malformed, 1u);
  EXPECT_EQ(st.readings.accepted, 1u);
  EXPECT_EQ(st.readings[data::RejectReason::kBadValue], 1u);
  EXPECT_EQ(st.rejections_published, 2u);
  EXPECT_EQ(st.sink_errors, 0u);
  EXPECT_TRUE(dev2.received().empty());
}

// A device sending a packet beyond max_packet_bytes is disconnected by the broker; the node
// never sees it and other devices are not affected.
TEST(MqttIngest, OversizedMessageDisconnectsOnlyItsDevice) {
  Fixture f;
  BrokerOptions o = f.Options();
  o.max_packet_bytes = 4096;
  MosquittoBroker broker(f.clock, o);
  ASSERT_TRUE(broker.Start({Device("dev1", "tok1"), Device("dev2", "tok2")}).ok());
  RecordingSink sink(f.clock);
  MqttSubscriber sub(f.clock, sink, f.Subscriber(broker.node_account()));
  ASSERT_TRUE(sub.Start().ok());
  ASSERT_TRUE(Eventually([&] { return sub.Stats().connected; }, seconds(10)));

  TestDevice dev1("dev1", "tok1", f.port);
  ASSERT_EQ(dev1.Connect(), 0);
  TestDevice dev2("dev2", "tok2", f.port);
  ASSERT_EQ(dev2.Connect(), 0);
  std::string huge = "[" + Reading(1, f.clock.WallMs());
  while (huge.size() < 8192) huge += "," + Reading(1, f.clock.WallMs());
  huge += "]";
  ASSERT_TRUE(dev1.Publish(mqtt::TelemetryTopic("dev1"), huge, /*qos=*/0));
  ASSERT_TRUE(Eventually([&] { return dev1.disconnects() >= 1; }, seconds(10)));
  ASSERT_TRUE(dev2.PublishOwn(Reading(2, f.clock.WallMs())));
  ASSERT_TRUE(Eventually([&] { return sink.payloads() == 1; }, seconds(10)));
  EXPECT_EQ(sink.Payloads()[0].first, "dev2");
  EXPECT_TRUE(sub.Stats().connected);
  EXPECT_EQ(sub.Stats().disconnects, 0u);
}

TEST(MqttIngest, BrokerLogIsRotatedWhileItRuns) {
  Fixture f;
  BrokerOptions o = f.Options();
  o.max_log_bytes = 2048;
  MosquittoBroker broker(f.clock, o);
  ASSERT_TRUE(broker.Start({Device("dev1", "tok1")}).ok());
  const std::string log = f.tmp / "mqtt/mosquitto.log";
  // Each connection adds a few lines.
  ASSERT_TRUE(Eventually(
      [&] {
        TryConnect("dev1", "tok1", f.port);
        return FileExists(log + ".1");
      },
      seconds(30)));
  EXPECT_EQ(broker.Stats().starts, 1u) << "rotated without a restart";
  ASSERT_TRUE(Eventually(
      [&] {
        TryConnect("dev1", "tok1", f.port);
        auto text = ReadFile(log);
        return text.ok() && text->find("dev1") != std::string::npos;
      },
      seconds(10)))
      << "Mosquitto keeps writing to mosquitto.log";
}

// A broker left running by a node process that died without its PDEATHSIG taking effect (or
// still saving its database) is stopped before the new one starts on the same port.
TEST(MqttIngest, LeftoverBrokerIsStoppedAtStart) {
  Fixture f;
  {
    MosquittoBroker first(f.clock, f.Options());
    ASSERT_TRUE(first.Start({Device("dev1", "tok1")}).ok());
  }
  const std::string conf = f.tmp / "mqtt/mosquitto.conf";
  Process leftover({"/usr/sbin/mosquitto", "-c", conf}, f.tmp / "leftover.log");
  ASSERT_TRUE(Eventually([&] { return TryConnect("dev1", "tok1", f.port) >= 0; }, seconds(10)))
      << leftover.Log();
  ASSERT_TRUE(WriteFileAtomic(f.tmp / "mqtt/mosquitto.pid", std::to_string(leftover.pid())).ok());

  MosquittoBroker broker(f.clock, f.Options());
  ASSERT_TRUE(broker.Start({Device("dev1", "tok1")}).ok());
  EXPECT_FALSE(leftover.Running());
  EXPECT_NE(broker.Stats().pid, leftover.pid());
  EXPECT_EQ(TryConnect("dev1", "tok1", f.port), 0);
}

// A pid file naming a process that is not our broker (the pid was reused) is left alone.
TEST(MqttIngest, StalePidFileOfAnotherProcessIsIgnored) {
  Fixture f;
  Process other({"/bin/sleep", "60"}, f.tmp / "sleep.log");
  ASSERT_TRUE(MakeDirs(f.tmp / "mqtt").ok());
  ASSERT_TRUE(WriteFileAtomic(f.tmp / "mqtt/mosquitto.pid", std::to_string(other.pid())).ok());
  MosquittoBroker broker(f.clock, f.Options());
  ASSERT_TRUE(broker.Start({}).ok());
  EXPECT_TRUE(other.Running());
}

TEST(MqttIngest, BrokerDiesWithTheNodeProcess) {
  Fixture f;
  std::string pid_out = f.tmp / "broker.pid";
  setenv("VERGE_MQTT_CHILD",
         json{{"mode", "broker"},
              {"work_dir", f.tmp / "mqtt"},
              {"listen", "127.0.0.1:" + std::to_string(f.port)},
              {"ready", pid_out}}
             .dump()
             .c_str(),
         1);
  Process node({"/proc/self/exe", "--gtest_filter=MqttChild.Run"}, f.tmp / "child.log");
  unsetenv("VERGE_MQTT_CHILD");
  ASSERT_TRUE(Eventually([&] { return FileExists(pid_out) || !node.Running(); }, seconds(30)))
      << node.Log();
  pid_t broker_pid = std::stoi(*ReadFile(pid_out));
  ASSERT_FALSE(ProcessGone(broker_pid));
  node.Signal(SIGKILL);
  EXPECT_EQ(node.Wait(seconds(10)), 128 + SIGKILL);
  EXPECT_TRUE(Eventually([&] { return ProcessGone(broker_pid); }, seconds(10)));
}

TEST(MqttIngest, StartFailureSaysWhy) {
  Fixture f;
  // Someone else holds the port.
  MosquittoBroker holder(f.clock, f.Options("holder"));
  ASSERT_TRUE(holder.Start({}).ok());
  BrokerOptions o = f.Options();
  o.start_timeout = Millis(5000);
  MosquittoBroker broker(f.clock, o);
  Status st = broker.Start({});
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("mosquitto did not start"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("ddress already in use"), std::string::npos) << st.message();
  EXPECT_EQ(broker.Stats().pid, 0);

  // Two brokers on one work dir.
  BrokerOptions same = f.Options("holder");
  same.listen = "127.0.0.1:" + std::to_string(FreePort());
  MosquittoBroker second(f.clock, same);
  st = second.Start({});
  EXPECT_EQ(st.code(), Code::kFailedPrecondition) << st.ToString();
  EXPECT_TRUE(holder.Stats().running);

  BrokerOptions bad = f.Options("bad");
  bad.listen = "nowhere";
  bad.mosquitto_path = "/nonexistent/mosquitto";
  MosquittoBroker invalid(f.clock, bad);
  st = invalid.Start({{"a:b", "x"}});
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  for (const char* part : {"listen:", "mosquitto: cannot run", "\"a:b\""}) {
    EXPECT_NE(st.message().find(part), std::string::npos) << st.message();
  }
}

// The subscriber alone, against a broker the operator runs (--mqtt-broker): no supervision.
TEST(MqttIngest, ExternalBroker) {
  Fixture f;
  std::string conf = f.tmp / "ext.conf";
  std::string passwd = f.tmp / "ext.passwd";
  ASSERT_TRUE(WriteFileAtomic(passwd,
                              "op:" + *mqtt::HashPassword("op-secret") + "\n" +
                                  "dev9:" + *mqtt::HashPassword("tok9") + "\n",
                              0600)
                  .ok());
  ASSERT_TRUE(WriteFileAtomic(conf, "allow_anonymous false\npassword_file " + passwd +
                                        "\nuser root\nlistener " + std::to_string(f.port) +
                                        " 127.0.0.1\n")
                  .ok());
  Process ext({"/usr/sbin/mosquitto", "-c", conf}, f.tmp / "ext.log");
  ASSERT_TRUE(Eventually([&] { return TryConnect("dev9", "tok9", f.port) == 0; }, seconds(10)))
      << ext.Log();

  RecordingSink sink(f.clock);
  SubscriberOptions o;
  o.port = f.port;
  o.username = "op";
  o.password = "wrong";
  o.client_id = mqtt::NodeClientId("ext");
  o.reconnect_initial = Millis(50);
  o.reconnect_max = Millis(200);
  {
    MqttSubscriber refused(f.clock, sink, o);
    ASSERT_TRUE(refused.Start().ok());
    ASSERT_TRUE(Eventually([&] { return refused.Stats().connect_failures >= 2; }, seconds(10)));
    EXPECT_NE(refused.Stats().last_error.find("refused"), std::string::npos)
        << refused.Stats().last_error;
    EXPECT_FALSE(refused.Stats().connected);
  }
  o.password = "op-secret";
  MqttSubscriber sub(f.clock, sink, o);
  ASSERT_TRUE(sub.Start().ok());
  ASSERT_TRUE(Eventually([&] { return sub.Stats().connected; }, seconds(10)));
  TestDevice dev9("dev9", "tok9", f.port);
  ASSERT_EQ(dev9.Connect(), 0);
  ASSERT_TRUE(dev9.PublishOwn(Reading(9, f.clock.WallMs())));
  // Without the node's ACL anyone may publish anywhere: odd topics are counted, not stored.
  ASSERT_TRUE(dev9.Publish("devices/bad name/telemetry", Reading(9, f.clock.WallMs())));
  ASSERT_TRUE(
      Eventually([&] { return sink.payloads() == 1 && sub.Stats().bad_topics == 1; }, seconds(10)));
}

TEST(MqttIngest, SubscriberOptionsAreValidated) {
  SystemClock clock;
  RecordingSink sink(clock);
  SubscriberOptions o;
  o.port = 0;
  o.keepalive_s = 1;
  MqttSubscriber sub(clock, sink, o);
  Status st = sub.Start();
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  for (const char* part : {"port", "client id", "keepalive"}) {
    EXPECT_NE(st.message().find(part), std::string::npos) << st.message();
  }
}

TEST(MqttIngest, MosquittoPasswdHashesAreAccepted) {
  Fixture f;
  std::string pw = f.tmp / "pw";
  ASSERT_TRUE(WriteFileAtomic(pw, "").ok());
  Process p({"/usr/bin/mosquitto_passwd", "-b", pw, "dev1", "s3cret"}, f.tmp / "passwd.log");
  ASSERT_EQ(p.Wait(seconds(10)), 0) << p.Log();
  std::string line = *ReadFile(pw);
  ASSERT_TRUE(line.starts_with("dev1:")) << line;
  std::string hash = line.substr(5, line.find('\n') - 5);
  EXPECT_TRUE(mqtt::IsPasswordHash(hash)) << hash;
  EXPECT_TRUE(mqtt::VerifyPassword("s3cret", hash));

  MosquittoBroker broker(f.clock, f.Options());
  ASSERT_TRUE(broker.Start({{"dev1", hash}}).ok());
  EXPECT_EQ(TryConnect("dev1", "s3cret", f.port), 0);
}

// 10,000 readings from the simulator (its own connection per device, QoS 1): the sink gets
// exactly as many as the broker acknowledged to the simulator.
TEST(MqttIngest, DevsimLoadArrivesExactly) {
  Fixture f;
  MosquittoBroker broker(f.clock, f.Options());
  std::vector<BrokerDevice> devices;
  std::vector<std::string> args = {BinDir() + "/verge-devsim",
                                   "mqtt",
                                   "--broker",
                                   "127.0.0.1:" + std::to_string(f.port),
                                   "--count",
                                   "2500",
                                   "--rate",
                                   "0",
                                   "--batch",
                                   "1"};
  for (int i = 0; i < 4; ++i) {
    std::string name = "sim" + std::to_string(i);
    devices.push_back(Device(name, "token-" + name));
    args.push_back("--device");
    args.push_back(fmt::format("{}=token-{}", name, name));
  }
  ASSERT_TRUE(broker.Start(devices).ok());
  RecordingSink sink(f.clock);
  MqttSubscriber sub(f.clock, sink, f.Subscriber(broker.node_account()));
  ASSERT_TRUE(sub.Start().ok());
  ASSERT_TRUE(Eventually([&] { return sub.Stats().connected; }, seconds(10)));

  Process sim(args, f.tmp / "devsim.log");
  ASSERT_EQ(sim.Wait(seconds(120)), 0) << sim.Log();
  std::string log = sim.Log();
  auto brace = log.rfind("\n{");  // the summary line
  ASSERT_NE(brace, std::string::npos) << log;
  ++brace;
  json summary = json::parse(log.substr(brace, log.find('\n', brace) - brace));
  const uint64_t accepted = summary["accepted"];
  EXPECT_EQ(accepted, 10'000u) << summary.dump();
  EXPECT_EQ(summary["errors"], 0) << summary.dump();
  ASSERT_TRUE(Eventually([&] { return sink.readings() >= accepted; }, seconds(60)));
  // Only a resumed session redelivers, so with no reconnect there can be no duplicate to come.
  EXPECT_EQ(sub.Stats().disconnects, 0u);
  EXPECT_EQ(sink.readings(), accepted);
  EXPECT_EQ(sub.Stats().readings.accepted, accepted);
  EXPECT_EQ(sub.Stats().readings.total_rejected(), 0u);
  std::map<std::string, size_t> per_device;
  for (auto& [device, body] : sink.Payloads()) ++per_device[device];
  for (int i = 0; i < 4; ++i) EXPECT_EQ(per_device["sim" + std::to_string(i)], 2500u);
}

// The child-process half of the tests above.
TEST(MqttChild, Run) {
  const char* env = std::getenv("VERGE_MQTT_CHILD");
  if (!env) GTEST_SKIP() << "runs only as a child of another test";
  json cfg = json::parse(env);
  SystemClock clock;
  if (cfg["mode"] == "crash-in-sink") {
    RecordingSink sink(clock);
    sink.KillInside();
    SubscriberOptions o;
    o.host = cfg["host"];
    o.port = cfg["port"];
    o.username = cfg["username"];
    o.password = cfg["password"];
    o.client_id = cfg["client_id"];
    MqttSubscriber sub(clock, sink, o);
    ASSERT_TRUE(sub.Start().ok());
    ASSERT_TRUE(Eventually([&] { return sub.Stats().connected; }, seconds(20)));
    ASSERT_TRUE(WriteFileAtomic(cfg["ready"], "ready").ok());
    std::this_thread::sleep_for(seconds(60));  // until killed from inside the sink
  } else if (cfg["mode"] == "broker") {
    BrokerOptions o;
    o.work_dir = cfg["work_dir"];
    o.listen = cfg["listen"];
    MosquittoBroker broker(clock, o);
    ASSERT_TRUE(broker.Start({}).ok());
    ASSERT_TRUE(WriteFileAtomic(cfg["ready"], std::to_string(broker.Stats().pid)).ok());
    std::this_thread::sleep_for(seconds(60));  // until SIGKILLed
  }
  FAIL() << "not killed";
}

}  // namespace
}  // namespace verge::testing
