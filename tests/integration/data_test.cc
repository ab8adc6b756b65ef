// End to end through the data path: devices declared in the cloud reach their node; readings
// posted to the node reach the cloud exactly once, also across a cloud outage and node crashes.
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <tuple>

#include "common/fs.h"
#include "harness.h"
#include "mqtt_device.h"

namespace verge::testing {
namespace {

using json = nlohmann::json;
using std::chrono::seconds;

// Readings of the last hours: the cloud prunes readings past its retention (30 days).
int64_t T0() {
  static const int64_t t0 = std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count() -
                            3 * 3600 * 1000;
  return t0;
}
std::string Ts(int k) { return std::to_string(T0() + k); }

const std::vector<std::string> kFastSilences = {"--degraded-after", "1s", "--offline-after", "2s"};

// Every point the cloud holds for a device, following the pages.
std::vector<json> CloudPoints(Cloud& cloud, const std::string& device) {
  std::vector<json> out;
  std::string after;
  for (;;) {
    std::string path = "/api/v1/telemetry?device=" + device + "&limit=100000";
    if (!after.empty()) path += "&after=" + after;
    auto res = cloud.Api("GET", path);
    if (!res.ok() || res->status != 200) return out;
    auto page = json::parse(res->body);
    for (auto& p : page) out.push_back(p);
    if (page.size() < 100000) return out;
    after = page.back()["metric"].get<std::string>() + "," +
            std::to_string(page.back()["tsNs"].get<int64_t>());
  }
}

std::string NodeStats(const std::string& api, const std::string& node_dir) {
  auto r =
      PlainHttp(api, "GET", "/stats", "", {{"Authorization", "Bearer " + LocalToken(node_dir)}});
  return r.ok() ? r->body : r.status().message();
}

http::Response Post(const std::string& addr, const std::string& token, const std::string& body,
                    const std::string& type = "application/json") {
  auto r = PlainHttp(addr, "POST", "/data", body,
                     {{"Authorization", "Bearer " + token}, {"Content-Type", type}});
  if (!r.ok()) return http::Response{0, "", r.status().message()};
  return *r;
}

struct Fixture {
  TempDir tmp;
  std::unique_ptr<Cloud> cloud;
  std::unique_ptr<Process> node;
  std::string node_dir;
  std::string api;  // node's local API

  std::vector<std::string> extra;  // more node flags

  void Start(const std::string& name = "n1") {
    cloud = std::make_unique<Cloud>(tmp, kFastSilences);
    StartNodeOnly(name);
    ASSERT_TRUE(Eventually([&] { return cloud->StatusOf(name) == "online"; }));
  }
  void StartNodeOnly(const std::string& name = "n1") {
    NodeOptions o{name, "eu", "", "gateway", "300ms", cloud->bootstrap_token()};
    o.extra = {"--config", FastReconnectConfig(tmp, name)};
    o.extra.insert(o.extra.end(), extra.begin(), extra.end());
    node_dir = tmp / name;
    std::filesystem::remove(node_dir + "/listen.json");
    node = StartNode(tmp, cloud->link(), o);
    ASSERT_TRUE(Eventually([&] { return NodeHttpAddress(node_dir).has_value(); })) << node->Log();
    api = *NodeHttpAddress(node_dir);
  }
};

TEST(Data, DeviceReachesItsNodeAndReadingsReachTheCloud) {
  Fixture f;
  f.Start();
  std::string token = AddDevice(*f.cloud, "boiler-1", "n1",
                                {{"metrics", {{{"name", "temp"}, {"min", -40}, {"max", 150}}}}});
  ASSERT_FALSE(token.empty());
  // The device becomes known on the node once its desired state is applied.
  ASSERT_TRUE(Eventually([&] {
    return Post(f.api, token, R"({"metric": "temp", "value": 20, "timestamp": )" + Ts(0) + "}")
               .status == 200;
  })) << f.node->Log();
  json batch = json::array();
  for (int i = 1; i <= 999; ++i)
    batch.push_back({{"metric", "temp"}, {"value", i * 0.1}, {"timestamp", T0() + i}});
  auto r = Post(f.api, token, batch.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body)["accepted"], 999);

  ASSERT_TRUE(Eventually([&] { return CloudPoints(*f.cloud, "boiler-1").size() == 1000; }))
      << CloudPoints(*f.cloud, "boiler-1").size();
  auto pts = CloudPoints(*f.cloud, "boiler-1");
  EXPECT_EQ(pts[0]["metric"], "temp");
  EXPECT_EQ(pts[0]["device"], "boiler-1");
  EXPECT_DOUBLE_EQ(pts[0]["value"].get<double>(), 20);
  EXPECT_DOUBLE_EQ(pts[999]["value"].get<double>(), 99.9);

  // The node answers locally too.
  auto q = PlainHttp(f.api, "GET", "/query?metric=temp&limit=5000", "",
                     {{"Authorization", "Bearer " + token}});
  ASSERT_TRUE(q.ok());
  auto local = json::parse(q->body);
  ASSERT_EQ(local.size(), 1000u);
  EXPECT_EQ(local[0]["device"], "boiler-1");
  EXPECT_EQ(local[0]["metric"], "temp");
  EXPECT_DOUBLE_EQ(local[999]["value"].get<double>(), 99.9);
  EXPECT_EQ(local[0]["tsNs"], pts[0]["tsNs"]);
  EXPECT_EQ(local[0]["ts"], pts[0]["ts"]);
  auto too_many = PlainHttp(f.api, "GET", "/query?metric=temp&limit=100001", "",
                            {{"Authorization", "Bearer " + token}});
  ASSERT_TRUE(too_many.ok());
  EXPECT_EQ(too_many->status, 400) << too_many->body;

  // The node's state report reached the cloud.
  ASSERT_TRUE(Eventually([&] {
    auto n = f.cloud->Node("n1");
    return n && (*n)["appliedVersion"].get<uint64_t>() >= 1 &&
           (*n)["appliedVersion"] == (*n)["desiredVersion"];
  }));
}

TEST(Data, BadInputIsRejectedClearlyAndNothingElseIsAffected) {
  Fixture f;
  f.Start();
  std::string a = AddDevice(
      *f.cloud, "a", "n1",
      {{"allowUndeclared", false}, {"metrics", {{{"name", "temp"}, {"min", 0}, {"max", 100}}}}});
  std::string b = AddDevice(*f.cloud, "b", "n1");
  ASSERT_TRUE(Eventually([&] { return Post(f.api, b, R"({"value": 1})").status == 200; }));
  ASSERT_TRUE(Eventually(
      [&] { return Post(f.api, a, R"({"metric": "temp", "value": 1})").status == 200; }));
  EXPECT_EQ(Post(f.api, "wrong-token", R"({"value": 1})").status, 401);
  EXPECT_EQ(Post(f.api, "", R"({"value": 1})").status, 401);
  EXPECT_EQ(Post(f.api, a, R"({"metric": "temp", "value": )").status, 400);
  // Another device's readings under a's token.
  auto wrong = Post(f.api, a, R"({"device_id": "b", "metric": "temp", "value": 5})");
  EXPECT_EQ(wrong.status, 422) << wrong.body;
  // A bad reading next to good ones: the good ones are stored, the response says why not.
  auto mixed = Post(f.api, a,
                    R"([{"metric": "temp", "value": 5, "timestamp": )" + Ts(1) +
                        R"(}, {"metric": "temp", "value": 500, "timestamp": )" + Ts(2) +
                        R"(}, {"metric": "temp", "value": "hot", "timestamp": )" + Ts(3) +
                        R"(}, {"metric": "pressure", "value": 1, "timestamp": )" + Ts(4) +
                        R"(}, {"metric": "temp", "value": 6, "timestamp": )" + Ts(5) + "}]");
  ASSERT_EQ(mixed.status, 200) << mixed.body;
  auto m = json::parse(mixed.body);
  EXPECT_EQ(m["accepted"], 2);
  std::set<std::string> reasons;
  for (auto& r : m["rejections"]) reasons.insert(r["reason"].get<std::string>());
  EXPECT_EQ(reasons, (std::set<std::string>{"out_of_range", "bad_value", "unknown_metric"}));
  // A huge body is refused before it is read.
  std::string huge(20 << 20, ' ');
  auto big = Post(f.api, a, huge);
  EXPECT_TRUE(big.status == 413 || big.status == 0) << big.status;
  // NDJSON with one broken line.
  auto nd = Post(f.api, a,
                 "{\"metric\": \"temp\", \"value\": 7, \"timestamp\": " + Ts(10) +
                     "}\n"
                     "{broken\n"
                     "{\"metric\": \"temp\", \"value\": 8, \"timestamp\": " +
                     Ts(11) + "}\n",
                 "application/x-ndjson");
  ASSERT_EQ(nd.status, 200) << nd.body;
  EXPECT_EQ(json::parse(nd.body)["accepted"], 2);
  // Counters by reason on the node.
  auto token_file = ReadFile(f.node_dir + "/data/local.token");
  ASSERT_TRUE(token_file.ok());
  std::string local = *token_file;
  while (!local.empty() && local.back() == '\n') local.pop_back();
  auto stats = PlainHttp(f.api, "GET", "/stats", "", {{"Authorization", "Bearer " + local}});
  ASSERT_TRUE(stats.ok());
  ASSERT_EQ(stats->status, 200) << stats->body;
  auto rej = json::parse(stats->body)["ingest"]["rejected"];
  EXPECT_GE(rej["out_of_range"].get<int>(), 1);
  EXPECT_GE(rej["wrong_device"].get<int>(), 1);
  // Device b was never affected.
  EXPECT_EQ(Post(f.api, b, R"({"value": 2})").status, 200);
  ASSERT_TRUE(Eventually([&] { return CloudPoints(*f.cloud, "a").size() == 5; }))
      << CloudPoints(*f.cloud, "a").size();
}

// A device publishing over MQTT to the node's own broker: every reading the broker
// acknowledged reaches the cloud. (Paced, so that no two readings of a metric share a
// millisecond: those would rightly be dropped as duplicates.)
TEST(Data, MqttReadingsReachTheCloud) {
  Fixture f;
  std::string mqtt = "127.0.0.1:" + std::to_string(FreePort());
  f.extra = {"--mqtt-listen", mqtt};
  f.Start();
  std::string token = AddDevice(*f.cloud, "mq-1", "n1");
  ASSERT_FALSE(token.empty());
  // Known to the node (and so to its broker) once the desired state is applied.
  ASSERT_TRUE(Eventually([&] {
    auto n = f.cloud->Node("n1");
    return n && (*n)["appliedVersion"].get<uint64_t>() >= 1;
  }));
  std::vector<std::string> argv = {BinDir() + "/verge-devsim",
                                   "mqtt",
                                   "--broker",
                                   mqtt,
                                   "--device",
                                   "mq-1=" + token,
                                   "--count",
                                   "1000",
                                   "--rate",
                                   "400",
                                   "--qos",
                                   "1",
                                   "--metrics",
                                   "temperature,humidity"};
  int accepted = -1;
  // The broker applies a new device asynchronously: retry the publisher until it gets in.
  ASSERT_TRUE(Eventually(
      [&] {
        Process sim(argv, f.tmp / "devsim.log");
        if (sim.Wait(seconds(60)) != 0) return false;
        std::string log = sim.Log();
        // The summary is the last line that is a JSON object.
        json summary;
        size_t pos = 0;
        while (pos < log.size()) {
          size_t end = log.find('\n', pos);
          if (end == std::string::npos) end = log.size();
          if (log[pos] == '{') {
            auto j = json::parse(log.substr(pos, end - pos), nullptr, false);
            if (!j.is_discarded() && j.contains("accepted")) summary = j;
          }
          pos = end + 1;
        }
        if (summary.is_null() || summary["accepted"].get<int>() == 0) return false;
        auto& j = summary;
        accepted = j["accepted"].get<int>();
        return true;
      },
      seconds(60)));
  ASSERT_GT(accepted, 0);
  // Every acknowledged message reached the node; readings that repeat a (metric, ms) of the
  // simulator's are dropped there as duplicates, and everything else reaches the cloud.
  json st;
  ASSERT_TRUE(Eventually([&] {
    st = json::parse(NodeStats(f.api, f.node_dir), nullptr, false);
    return !st.is_discarded() && st["mqtt"]["messages"].get<int>() >= accepted;
  })) << NodeStats(f.api, f.node_dir);
  int node_accepted = st["mqtt"]["accepted"].get<int>();
  int duplicates = st["ingest"]["rejected"].value("duplicate", 0);
  EXPECT_EQ(node_accepted + duplicates, accepted);
  ASSERT_TRUE(Eventually([&] {
    return CloudPoints(*f.cloud, "mq-1").size() >= size_t(node_accepted);
  })) << CloudPoints(*f.cloud, "mq-1").size()
      << " of " << node_accepted;
  EXPECT_EQ(CloudPoints(*f.cloud, "mq-1").size(), size_t(node_accepted));
}

// A Modbus device declared in the cloud with the register map of `verge-devsim modbus`: its
// node polls the simulator and every register's readings reach the cloud, decoded within the
// span the simulator declares; polling resumes after the simulator goes away and comes back.
TEST(Data, ModbusDeviceIsPolledAndItsReadingsReachTheCloud) {
  Fixture f;
  f.Start();
  json map = ModbusSimMap(f.tmp, 1);
  ModbusSim sim = StartModbusSim(f.tmp, "127.0.0.1:0", 1, "sim.log");
  json registers = json::array();
  std::map<std::string, std::pair<double, double>> spans;  // metric -> [min, max]
  for (const json& r : map["devices"][0]["registers"]) {
    registers.push_back({{"metric", r["metric"]},
                         {"address", r["address"]},
                         {"kind", r["kind"]},
                         {"type", r["type"]},
                         {"byteOrder", r["byte_order"]},
                         {"wordOrder", r["word_order"]},
                         {"scale", r["scale"]},
                         {"offset", r["offset"]},
                         {"interval", "100ms"}});
    spans[r["metric"]] = {r["min"].get<double>(), r["max"].get<double>()};
  }
  ASSERT_GE(spans.size(), 2u);
  json modbus = {{"host", sim.host}, {"port", sim.port}, {"unitId", 1}, {"registers", registers}};
  ASSERT_FALSE(AddDevice(*f.cloud, "plc", "n1", {{"modbus", modbus}}).empty());

  auto per_metric = [&] {
    std::map<std::string, std::vector<json>> by;
    for (auto& p : CloudPoints(*f.cloud, "plc")) by[p["metric"]].push_back(p);
    return by;
  };
  auto all_have = [&](size_t n, int64_t after_ns) {
    auto by = per_metric();
    for (auto& [metric, span] : spans) {
      size_t newer = 0;
      for (auto& p : by[metric]) newer += p["tsNs"].get<int64_t>() > after_ns;
      if (newer < n) return false;
    }
    return true;
  };
  ASSERT_TRUE(Eventually([&] { return all_have(5, 0); }, seconds(60)))
      << "node: " << NodeStats(f.api, f.node_dir) << "\nsim: " << sim.proc->Log();
  for (auto& [metric, points] : per_metric()) {
    ASSERT_TRUE(spans.count(metric)) << "unexpected metric " << metric;
    auto [lo, hi] = spans[metric];
    for (auto& p : points) {
      double v = p["value"].get<double>();
      EXPECT_TRUE(v >= lo && v <= hi)
          << metric << " = " << v << " outside [" << lo << ", " << hi << "]";
    }
  }

  // The simulator goes away and comes back on the same address: polling resumes.
  sim.proc->Signal(SIGKILL);
  sim.proc->Wait(seconds(10));
  int64_t back_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count();
  ModbusSim again =
      StartModbusSim(f.tmp, "127.0.0.1:" + std::to_string(sim.port), 1, "sim-again.log");
  EXPECT_TRUE(Eventually([&] { return all_have(3, back_ns); }, seconds(60)))
      << "node: " << NodeStats(f.api, f.node_dir);
}

// Every point the cloud holds for a device's metric, as ms timestamp -> value, and how many
// points there were in all (more than the map's size means duplicates).
std::map<int64_t, double> StoredByMs(const std::vector<json>& points, const std::string& metric,
                                     size_t& count) {
  std::map<int64_t, double> stored;
  count = 0;
  for (auto& p : points) {
    if (p["metric"] != metric) continue;
    ++count;
    stored[p["tsNs"].get<int64_t>() / 1'000'000] = p["value"].get<double>();
  }
  return stored;
}

// 100,000 readings, half over HTTP and half over MQTT, while the cloud is down for part of the
// run and the node is SIGKILLed twice: the cloud ends with exactly the accepted readings, no
// duplicates. Both devices behave as real ones do: they send again what got no answer.
TEST(Data, NothingAcceptedIsLostOrStoredTwiceAcrossOutagesAndCrashes) {
  Fixture f;
  int mqtt_port = FreePort();
  f.extra = {"--mqtt-listen", "127.0.0.1:" + std::to_string(mqtt_port)};
  f.Start();
  std::string token = AddDevice(*f.cloud, "meter", "n1");
  std::string mq_token = AddDevice(*f.cloud, "mq", "n1");
  ASSERT_TRUE(Eventually([&] {
    return Post(f.api, token,
                R"({"metric": "warmup", "value": 0, "timestamp": )" + Ts(-100000) + "}")
               .status == 200;
  }));
  // The broker learns of a new device asynchronously: retry until it lets the device in.
  std::unique_ptr<TestDevice> mq;
  ASSERT_TRUE(Eventually([&] {
    mq = std::make_unique<TestDevice>("mq", mq_token, mqtt_port);
    return mq->Connect() == 0;
  }));
  std::string api = f.cloud->api(), link = f.cloud->link();
  constexpr int kHalf = 50'000, kPerRequest = 500, kPerMessage = 50;
  constexpr int kSteps = kHalf / kPerRequest;
  std::map<int64_t, double> accepted, mq_accepted;  // ms -> value
  for (int step = 0; step < kSteps; ++step) {
    if (step == 20) f.cloud->Stop(SIGKILL);
    if (step == 35 || step == 75) {
      f.node->Signal(SIGKILL);
      f.node->Wait(seconds(10));
      f.StartNodeOnly();
    }
    if (step == 60) f.cloud = std::make_unique<Cloud>(f.tmp, kFastSilences, "cloud", api, link);
    int start = step * kPerRequest;
    json batch = json::array();
    for (int i = start; i < start + kPerRequest; ++i) {
      batch.push_back({{"metric", "energy"}, {"value", i * 0.25}, {"timestamp", T0() + i}});
    }
    // A retry of readings already stored is answered 200 with them as duplicates.
    http::Response r;
    ASSERT_TRUE(Eventually([&] {
      r = Post(f.api, token, batch.dump());
      return r.status == 200;
    })) << r.status
        << " " << r.body;
    for (int i = start; i < start + kPerRequest; ++i) accepted[T0() + i] = i * 0.25;
    // The same span of readings over MQTT, a message of kPerMessage at a time; a message with
    // no PUBACK (the node and its broker were killed, or are starting) is published again.
    for (int m = start; m < start + kPerRequest; m += kPerMessage) {
      json msg = json::array();
      for (int i = m; i < m + kPerMessage; ++i) {
        msg.push_back({{"metric", "flow"}, {"value", i * 0.5}, {"timestamp", T0() + i}});
      }
      ASSERT_TRUE(Eventually([&] {
        return mq->Publish(mqtt::TelemetryTopic("mq"), msg.dump(), 1, seconds(2));
      })) << "no PUBACK; node: "
          << f.node->Log();
      for (int i = m; i < m + kPerMessage; ++i) mq_accepted[T0() + i] = i * 0.5;
    }
  }
  // One complete read per device of what the cloud holds, kept for the checks below (a second
  // read of 50k points could fail on its own under the sanitizers and look like data loss).
  for (auto [device, metric, want] :
       {std::tuple{"meter", "energy", &accepted}, std::tuple{"mq", "flow", &mq_accepted}}) {
    SCOPED_TRACE(device);
    std::vector<json> points;
    size_t count = 0;
    ASSERT_TRUE(Eventually(
        [&] {
          points = CloudPoints(*f.cloud, device);
          StoredByMs(points, metric, count);
          return count >= want->size();
        },
        seconds(120)))
        << "cloud has " << count << " of " << want->size()
        << "; node: " << NodeStats(f.api, f.node_dir);
    auto stored = StoredByMs(points, metric, count);
    EXPECT_EQ(count, want->size()) << "duplicates in the cloud";
    EXPECT_EQ(stored, *want);
  }
}

}  // namespace
}  // namespace verge::testing
