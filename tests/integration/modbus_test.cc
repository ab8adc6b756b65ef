// The node's Modbus poller against the real `verge-devsim modbus` on loopback: every register
// type and byte/word order, a simulator killed and restarted, devices that are down or hung,
// devices changed at runtime.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <mutex>
#include <set>

#include "common/clock.h"
#include "harness.h"
#include "node/modbus/poller.h"

namespace verge::testing {
namespace {

using json = nlohmann::json;
using modbus::DeviceStats;
using modbus::ModbusDevice;
using modbus::ModbusPoller;
using modbus::RegisterSpec;
using std::chrono::seconds;

// The map's register entries for one unit, as a node config would declare them.
std::vector<RegisterSpec> Registers(const json& unit, Millis interval) {
  std::vector<RegisterSpec> out;
  for (const json& r : unit["registers"]) {
    RegisterSpec s;
    s.metric = r["metric"];
    s.address = r["address"];
    s.kind = *modbus::ParseKind(r["kind"].get<std::string>());
    s.type = *modbus::ParseType(r["type"].get<std::string>());
    s.byte_order = *modbus::ParseOrder(r["byte_order"].get<std::string>());
    s.word_order = *modbus::ParseOrder(r["word_order"].get<std::string>());
    s.scale = r["scale"];
    s.offset = r["offset"];
    s.interval = interval;
    out.push_back(s);
  }
  return out;
}

ModbusDevice Device(const std::string& name, const std::string& host, int port, int unit,
                    std::vector<RegisterSpec> registers, Millis timeout = Millis(1000)) {
  ModbusDevice d;
  d.name = name;
  d.host = host;
  d.port = port;
  d.unit_id = unit;
  d.timeout = timeout;
  d.registers = std::move(registers);
  return d;
}

// Gathers what the poller emits; read from the test thread.
class Collector {
 public:
  ModbusPoller::Callback Callback() {
    return [this](std::vector<data::Reading> readings) {
      std::lock_guard lk(mu_);
      for (const data::Reading& r : readings) {
        auto& s = seen_[{r.device, r.metric}];
        s.count++;
        s.min = s.count == 1 ? r.value : std::min(s.min, r.value);
        s.max = s.count == 1 ? r.value : std::max(s.max, r.value);
        if (s.distinct.size() < 10) s.distinct.insert(r.value);
        s.last = r;
        total_[r.device]++;
      }
    };
  }

  struct Seen {
    size_t count = 0;
    double min = 0, max = 0;
    std::set<double> distinct;
    data::Reading last;
  };

  size_t Total(const std::string& device) const {
    std::lock_guard lk(mu_);
    auto it = total_.find(device);
    return it == total_.end() ? 0 : it->second;
  }
  std::map<std::pair<std::string, std::string>, Seen> Snapshot() const {
    std::lock_guard lk(mu_);
    return seen_;
  }

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, std::string>, Seen> seen_;
  std::map<std::string, size_t> total_;
};

DeviceStats StatsOf(const ModbusPoller& p, const std::string& name) {
  auto all = p.Stats();
  auto it = all.find(name);
  return it == all.end() ? DeviceStats{} : it->second;
}

// Each test starts its own simulator on a free port and polls it.
class ModbusPolling : public ::testing::Test {
 protected:
  // Starts `verge-devsim modbus --devices units` and reads the map it serves.
  void Start(int units) {
    map_ = ModbusSimMap(tmp_, units);
    sim_ = StartModbusSim(tmp_, "127.0.0.1:0", units, "sim.log");
  }

  TempDir tmp_;
  json map_;
  ModbusSim sim_;
  SystemClock clock_;
  Collector got_;
};

TEST_F(ModbusPolling, EveryTypeAndOrderDecodesWithinTheDeclaredSpans) {
  Start(2);
  ASSERT_EQ(map_["devices"].size(), 2u);
  ModbusPoller poller(clock_, got_.Callback());
  std::vector<ModbusDevice> devices;
  for (int unit = 1; unit <= 2; ++unit) {
    devices.push_back(Device("sim-" + std::to_string(unit), sim_.host, sim_.port, unit,
                             Registers(map_["devices"][unit - 1], Millis(100))));
  }
  ASSERT_TRUE(poller.SetDevices(devices).ok());

  const auto& regs = map_["devices"][0]["registers"];
  ASSERT_TRUE(Eventually([&] {
    auto seen = got_.Snapshot();
    for (int unit = 1; unit <= 2; ++unit) {
      for (const json& r : regs) {
        auto it = seen.find({"sim-" + std::to_string(unit), r["metric"].get<std::string>()});
        if (it == seen.end() || it->second.count < 5) return false;
      }
    }
    // The simulator's signals move: a noisy one takes several values.
    return seen[{"sim-1", "flow"}].distinct.size() >= 3;
  })) << sim_.proc->Log();

  auto seen = got_.Snapshot();
  const int64_t now_ns = clock_.WallMs() * 1'000'000;
  for (int unit = 1; unit <= 2; ++unit) {
    std::string dev = "sim-" + std::to_string(unit);
    for (const json& r : regs) {
      std::string metric = r["metric"];
      const auto& s = seen[{dev, metric}];
      double min = r["min"], max = r["max"], scale = r["scale"];
      double tol = std::max(scale, 1e-6 * std::max(std::abs(min), std::abs(max)));
      EXPECT_GE(s.min, min - tol) << dev << " " << metric << " " << r.dump();
      EXPECT_LE(s.max, max + tol) << dev << " " << metric << " " << r.dump();
      EXPECT_LT(std::abs(s.last.ts_ns - now_ns), int64_t{60'000'000'000}) << "poll time";
    }
    DeviceStats st = StatsOf(poller, dev);
    EXPECT_TRUE(st.connected);
    EXPECT_EQ(st.errors, 0u) << st.last_error;
    EXPECT_EQ(st.reconnects, 0u);
    EXPECT_GT(st.polls, 0u);
    EXPECT_GE(st.readings, regs.size() * 5);
    // Input registers 0..3, 10..17, 20..27, 30..37 and holding 0..5: five requests carry 20
    // values, not one request per value (a poll in flight may be counted on one side only).
    EXPECT_LE(st.polls * 3, st.readings + 20);
  }
  int differ = 0;
  for (const json& r : regs) {
    std::string metric = r["metric"];
    differ += seen[{"sim-1", metric}].last.value != seen[{"sim-2", metric}].last.value;
  }
  EXPECT_GT(differ, 5) << "each unit id is its own device with its own signals";
}

TEST_F(ModbusPolling, ReconnectsAfterTheSimulatorIsKilledAndRestarted) {
  Start(1);
  ModbusPoller poller(clock_, got_.Callback(), {Millis(50), Millis(300)});
  ASSERT_TRUE(poller
                  .SetDevices({Device("plc", sim_.host, sim_.port, 1,
                                      Registers(map_["devices"][0], Millis(100)))})
                  .ok());
  ASSERT_TRUE(Eventually([&] { return got_.Total("plc") >= 40; }));

  sim_.proc->Signal(SIGKILL);
  ASSERT_TRUE(sim_.proc->Wait(seconds(10)).has_value());
  ASSERT_TRUE(Eventually([&] {
    DeviceStats st = StatsOf(poller, "plc");
    return !st.connected && st.errors >= 2 && st.reconnects >= 3;
  })) << StatsOf(poller, "plc").last_error;
  DeviceStats down = StatsOf(poller, "plc");
  EXPECT_FALSE(down.last_error.empty());
  const size_t before = got_.Total("plc");

  ModbusSim again = StartModbusSim(tmp_, "127.0.0.1:" + std::to_string(sim_.port), 1, "sim2.log");
  ASSERT_TRUE(Eventually([&] { return got_.Total("plc") >= before + 40; }))
      << StatsOf(poller, "plc").last_error << "\n"
      << again.proc->Log();
  DeviceStats up = StatsOf(poller, "plc");
  EXPECT_TRUE(up.connected);
  poller.Stop();
}

TEST_F(ModbusPolling, ADeviceThatIsDownOrHungDoesNotStallTheOthers) {
  Start(1);

  // A "device" that completes TCP handshakes (the kernel does) but never answers.
  int hung = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(hung, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(hung, 8), 0);
  socklen_t len = sizeof addr;
  getsockname(hung, reinterpret_cast<sockaddr*>(&addr), &len);
  const int hung_port = ntohs(addr.sin_port);
  const int refused_port = FreePort();  // nothing listens there

  auto poller = std::make_unique<ModbusPoller>(clock_, got_.Callback(),
                                               modbus::PollerOptions{Millis(50), Millis(200)});
  auto regs = Registers(map_["devices"][0], Millis(100));
  ASSERT_TRUE(poller
                  ->SetDevices({Device("good", sim_.host, sim_.port, 1, regs),
                                Device("hung", "127.0.0.1", hung_port, 1, regs, Millis(1500)),
                                Device("refused", "127.0.0.1", refused_port, 1, regs)})
                  .ok());

  ASSERT_TRUE(Eventually([&] { return StatsOf(*poller, "hung").errors >= 1; }));
  const size_t good_at_first_timeout = got_.Total("good");
  ASSERT_TRUE(Eventually([&] { return StatsOf(*poller, "hung").errors >= 2; }));
  // Between two timeouts of the hung device, the good one kept being polled.
  EXPECT_GE(got_.Total("good"), good_at_first_timeout + 2 * regs.size());

  ASSERT_TRUE(Eventually([&] { return StatsOf(*poller, "refused").errors >= 3; }));
  DeviceStats good = StatsOf(*poller, "good"), h = StatsOf(*poller, "hung"),
              r = StatsOf(*poller, "refused");
  EXPECT_EQ(good.errors, 0u) << good.last_error;
  EXPECT_TRUE(good.connected);
  EXPECT_NE(h.last_error.find("timed out"), std::string::npos) << h.last_error;
  EXPECT_EQ(h.readings, 0u);
  EXPECT_FALSE(r.connected);
  EXPECT_NE(r.last_error.find("refused"), std::string::npos) << r.last_error;
  EXPECT_EQ(got_.Total("hung") + got_.Total("refused"), 0u);

  // Stop does not wait for the hung device's read to time out (the test would still pass if
  // it did, but slowly; the ctest timeout catches a Stop that hangs).
  poller->Stop();
  poller.reset();
  close(hung);
}

TEST_F(ModbusPolling, AnExceptionAnswerKeepsTheConnection) {
  Start(2);
  ModbusPoller poller(clock_, got_.Callback());
  auto regs = Registers(map_["devices"][0], Millis(100));
  RegisterSpec beyond;  // past the simulator's 64-register tables: illegal data address
  beyond.metric = "beyond";
  beyond.address = 100;
  beyond.kind = RegisterSpec::kInput;
  beyond.interval = Millis(100);
  regs.push_back(beyond);
  ASSERT_TRUE(poller
                  .SetDevices({Device("plc", sim_.host, sim_.port, 1, regs),
                               Device("nobody", sim_.host, sim_.port, 9, regs)})  // no unit 9
                  .ok());
  ASSERT_TRUE(Eventually([&] {
    return StatsOf(poller, "plc").errors >= 5 && StatsOf(poller, "nobody").errors >= 5 &&
           got_.Total("plc") >= 5 * (regs.size() - 1);
  }));
  DeviceStats plc = StatsOf(poller, "plc"), nobody = StatsOf(poller, "nobody");
  EXPECT_TRUE(plc.connected);
  EXPECT_EQ(plc.reconnects, 0u);
  EXPECT_NE(plc.last_error.find("address"), std::string::npos) << plc.last_error;
  EXPECT_TRUE(nobody.connected);
  EXPECT_EQ(nobody.reconnects, 0u);
  EXPECT_NE(nobody.last_error.find("arget"), std::string::npos) << nobody.last_error;
  EXPECT_EQ(got_.Total("nobody"), 0u);
  EXPECT_EQ(got_.Snapshot().count({"plc", "beyond"}), 0u);
}

TEST_F(ModbusPolling, SetDevicesAddsRemovesAndRestartsOnlyWhatChanged) {
  Start(2);
  ModbusPoller poller(clock_, got_.Callback());
  auto regs = Registers(map_["devices"][0], Millis(100));
  ModbusDevice a = Device("a", sim_.host, sim_.port, 1, regs);
  ModbusDevice b = Device("b", sim_.host, sim_.port, 2, regs);
  ASSERT_TRUE(poller.SetDevices({a}).ok());
  ASSERT_TRUE(Eventually([&] { return got_.Total("a") >= regs.size(); }));

  ASSERT_TRUE(poller.SetDevices({a, b}).ok());
  ASSERT_TRUE(Eventually([&] { return got_.Total("b") >= regs.size(); }));
  const size_t a_before = got_.Total("a");
  ASSERT_TRUE(Eventually([&] { return got_.Total("a") > a_before + regs.size(); }));
  EXPECT_EQ(StatsOf(poller, "a").reconnects, 0u) << "an unchanged device keeps its connection";

  b.registers.resize(3);
  ASSERT_TRUE(poller.SetDevices({b}).ok());
  auto stats = poller.Stats();
  EXPECT_EQ(stats.count("a"), 0u);
  ASSERT_EQ(stats.count("b"), 1u);
  const uint64_t b_readings = stats["b"].readings;
  EXPECT_GT(b_readings, 0u) << "counters persist across a restart";
  const size_t a_after = got_.Total("a");
  ASSERT_TRUE(Eventually([&] { return StatsOf(poller, "b").readings >= b_readings + 30; }));
  EXPECT_EQ(got_.Total("a"), a_after) << "a removed device is no longer polled";
}

TEST(ModbusSimulator, ExitsCleanlyOnSigtermAndRejectsBadUsage) {
  TempDir tmp;
  ModbusSim sim = StartModbusSim(tmp, "127.0.0.1:0", 1, "sim.log");
  sim.proc->Signal(SIGTERM);
  EXPECT_EQ(sim.proc->Wait(seconds(10)), 0) << sim.proc->Log();

  for (std::vector<std::string> args :
       {std::vector<std::string>{"modbus", "--devices", "0"},
        {"modbus", "--listen", "nonsense"},
        {"modbus", "--update", "0s"},
        {"modbus", "--no-such-flag"},
        {"http"},
        {"http", "--device", "d=t", "--url", "https://127.0.0.1:1/data"},
        {"mqtt", "--device", "d=t", "--qos", "2"},
        {}}) {
    args.insert(args.begin(), BinDir() + "/verge-devsim");
    Process p(args, tmp / "usage.log");
    EXPECT_EQ(p.Wait(seconds(10)), 2) << args.back();
  }
  // A port already taken is a runtime failure, not a usage error.
  ModbusSim holder = StartModbusSim(tmp, "127.0.0.1:0", 1, "holder.log");
  Process taken({BinDir() + "/verge-devsim", "modbus", "--listen",
                 "127.0.0.1:" + std::to_string(holder.port)},
                tmp / "taken.log");
  EXPECT_EQ(taken.Wait(seconds(10)), 1) << taken.Log();
}

}  // namespace
}  // namespace verge::testing
