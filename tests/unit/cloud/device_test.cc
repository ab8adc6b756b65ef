// Devices: request parsing and validation, the store's versioned desired state, credentials
// (including a real Mosquitto broker accepting the password hash), and the DeviceService.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "cloud/device_credentials.h"
#include "cloud/device_spec.h"
#include "cloud/devices.h"
#include "cloud/store_sqlite.h"
#include "common/pki.h"

extern char** environ;

namespace verge::cloud {
namespace {

using json = nlohmann::json;

bool AnyNode(const std::string&) { return true; }

constexpr const char* kFullDevice = R"({
  "name": "press-7", "node": "edge-1", "labels": {"line": "3"},
  "metrics": [
    {"name": "temp", "type": "float", "min": -20, "max": 120, "unit": "degF",
     "uplink": {"deadbandPct": 0.5, "maxSilence": "30s", "swingingDoor": 0.1}},
    {"name": "count", "type": "int", "uplink": {"sampleEvery": 10, "deadbandAbs": 1}},
    {"name": "running", "type": "bool"}
  ],
  "allowUndeclared": false,
  "modbus": {"host": "10.0.0.5", "port": 1502, "unitId": 255, "timeout": "2s",
             "registers": [
               {"metric": "temp", "address": 100, "kind": "input", "type": "float32",
                "byteOrder": "big", "wordOrder": "little", "scale": 0.1, "offset": -3,
                "interval": "500ms"},
               {"metric": "count", "address": 65535}
             ]}
})";

TEST(DeviceSpec, ParsesAFullDeviceAndRoundTripsThroughTheStoreShape) {
  auto req = ParseDeviceRequest(kFullDevice, "", AnyNode);
  ASSERT_TRUE(req.ok()) << req.status().message();
  EXPECT_EQ(req->name, "press-7");
  EXPECT_EQ(req->node, "edge-1");
  const DeviceSpec& s = req->spec;
  EXPECT_EQ(s.labels.at("line"), "3");
  ASSERT_EQ(s.metrics.size(), 3u);
  EXPECT_EQ(*s.metrics[0].min, -20);
  EXPECT_EQ(s.metrics[0].uplink.max_silence_ms, 30'000);
  EXPECT_EQ(s.metrics[1].type, "int");
  EXPECT_EQ(s.metrics[1].uplink.sample_every, 10u);
  EXPECT_FALSE(s.metrics[2].min.has_value());
  EXPECT_FALSE(s.allow_undeclared);
  ASSERT_TRUE(s.modbus.has_value());
  EXPECT_EQ(s.modbus->unit_id, 255u);
  EXPECT_EQ(s.modbus->timeout_ms, 2000);
  EXPECT_EQ(s.modbus->registers[0].word_order, "little");
  EXPECT_EQ(s.modbus->registers[0].interval_ms, 500);
  EXPECT_EQ(s.modbus->registers[1].type, "uint16") << "defaults";
  EXPECT_EQ(s.modbus->registers[1].kind, "holding");

  auto back = DeviceSpecFromJson(DeviceSpecJson(s));
  ASSERT_TRUE(back.ok()) << back.status().message();
  DeviceSpec without_labels = s;
  without_labels.labels.clear();
  EXPECT_EQ(*back, without_labels);

  // The API's answer can be PUT back unchanged.
  Device d{"press-7", "edge-1", s, "hash", "$7$", 1000, 2000};
  json shown = DeviceJson(d);
  auto again = ParseDeviceRequest(shown.dump(), "press-7", AnyNode);
  ASSERT_TRUE(again.ok()) << again.status().message();
  EXPECT_EQ(again->spec, s);
}

TEST(DeviceSpec, MinimalDeviceTakesDefaults) {
  auto req = ParseDeviceRequest(R"({"name": "d1", "node": "n1"})", "", AnyNode);
  ASSERT_TRUE(req.ok()) << req.status().message();
  EXPECT_TRUE(req->spec.allow_undeclared) << "with nothing declared, everything is accepted";
  EXPECT_TRUE(req->spec.metrics.empty());
  EXPECT_FALSE(req->spec.modbus.has_value());
}

TEST(DeviceSpec, ReportsEveryProblemAtOnce) {
  auto req = ParseDeviceRequest(R"({
    "name": "bad name!", "node": "ghost", "labels": {"-x": "y"}, "colour": "red",
    "metrics": [
      {"name": "t", "type": "double", "min": 5, "max": 5},
      {"name": "t", "unit": "degC", "type": "bool"},
      {"type": "float", "uplink": {"deadbandPct": 1, "sampleEvery": -1, "maxSilence": "soon",
                                   "wat": 1}}
    ],
    "allowUndeclared": "yes",
    "modbus": {"port": 70000, "unitId": 250, "timeout": "0s",
               "registers": [{"metric": "t", "address": 65535, "type": "float32",
                              "byteOrder": "middle", "kind": "coil", "scale": 0},
                             {"address": 1.5}]}
  })",
                                "", [](const std::string& n) { return n == "edge-1"; });
  ASSERT_FALSE(req.ok());
  EXPECT_EQ(req.status().code(), Code::kInvalidArgument);
  const std::string& msg = req.status().message();
  for (const char* part : {
           "name \"bad name!\" must be 1-64 characters",
           "node \"ghost\" is not a registered node",
           "label key \"-x\"",
           "unknown field \"colour\"",
           "metrics[0].type must be one of float, int, bool",
           "metrics[0] min must be less than max",
           "metrics[1].name \"t\" is declared twice",
           "metrics[1].unit makes no sense on a bool",
           "metrics[2].name is required",
           "metrics[2].uplink.deadbandPct needs both min and max",
           "metrics[2].uplink.sampleEvery must be between 0 and 1000000",
           "metrics[2].uplink.maxSilence invalid duration",
           "unknown field \"wat\" in metrics[2].uplink",
           "allowUndeclared must be true or false",
           "modbus.host is required",
           "modbus.port must be between 1 and 65535",
           "modbus.unitId must be 0..247 or 255",
           "modbus.timeout must be longer than 0s",
           "modbus.registers[0].address float32 needs 2 registers",
           "modbus.registers[0].byteOrder must be one of big, little",
           "modbus.registers[0].kind must be one of holding, input",
           "modbus.registers[0].scale must not be 0",
           "modbus.registers[1].metric is required",
           "modbus.registers[1].address must be an integer",
       }) {
    EXPECT_NE(msg.find(part), std::string::npos) << "missing: " << part << "\nin: " << msg;
  }
}

TEST(DeviceSpec, SmallerRules) {
  auto bad = [](std::string body, std::string_view path = "") {
    auto r = ParseDeviceRequest(body, path, AnyNode);
    return r.ok() ? std::string() : r.status().message();
  };
  EXPECT_EQ(bad(R"({"name": "a:b.c_d-1", "node": "n"})"), "");
  EXPECT_NE(bad(R"({"name": ")" + std::string(65, 'a') + R"(", "node": "n"})"), "");
  EXPECT_NE(bad(R"({"node": "n"})").find("name is required"), std::string::npos);
  EXPECT_NE(bad(R"({"name": "d"})").find("node is required"), std::string::npos);
  EXPECT_NE(bad(R"({"name": "other", "node": "n"})", "d").find("cannot be renamed"),
            std::string::npos);
  EXPECT_EQ(bad(R"({"node": "n"})", "d"), "") << "PUT takes the name from the path";
  EXPECT_NE(bad("[]").find("JSON object"), std::string::npos);
  EXPECT_NE(bad("{").find("not valid JSON"), std::string::npos);
  for (int unit : {0, 1, 247, 255}) {
    EXPECT_EQ(bad(fmt::format(R"({{"name": "d", "node": "n", "modbus": {{"host": "h",
        "unitId": {}, "registers": [{{"metric": "m", "address": 0}}]}}}})",
                              unit)),
              "")
        << unit;
  }
  for (int unit : {248, 254, 256, -1}) {
    EXPECT_NE(bad(fmt::format(R"({{"name": "d", "node": "n", "modbus": {{"host": "h",
        "unitId": {}, "registers": [{{"metric": "m", "address": 0}}]}}}})",
                              unit)),
              "")
        << unit;
  }
  EXPECT_NE(bad(R"({"name": "d", "node": "n", "modbus": {"host": "h", "registers": []}})")
                .find("non-empty"),
            std::string::npos);
  // With allowUndeclared false, a polled metric must be declared.
  EXPECT_NE(bad(R"({"name": "d", "node": "n", "allowUndeclared": false,
                   "modbus": {"host": "h", "registers": [{"metric": "m", "address": 0}]}})")
                .find("not in metrics"),
            std::string::npos);
  EXPECT_NE(bad(std::string(2 << 20, ' ')), "");
}

TEST(DeviceSpec, ProtoCarriesEverythingTheNodeNeeds) {
  auto req = ParseDeviceRequest(kFullDevice, "", AnyNode);
  Device d{"press-7", "edge-1", req->spec, "abc123", "$7$101$x$y", 1, 2};
  v1::Device p;
  DeviceToProto(d, &p);
  EXPECT_EQ(p.name(), "press-7");
  EXPECT_EQ(p.token_sha256(), "abc123");
  EXPECT_EQ(p.mqtt_password_hash(), "$7$101$x$y");
  EXPECT_EQ(p.labels().at("line"), "3");
  ASSERT_EQ(p.metrics_size(), 3);
  EXPECT_TRUE(p.metrics(0).has_min());
  EXPECT_EQ(p.metrics(0).max(), 120);
  EXPECT_FALSE(p.metrics(2).has_min());
  EXPECT_EQ(p.metrics(0).uplink().deadband_pct(), 0.5);
  EXPECT_EQ(p.metrics(0).uplink().max_silence_ms(), 30'000u);
  EXPECT_FALSE(p.metrics(2).has_uplink()) << "no filter: every reading goes up";
  EXPECT_FALSE(p.allow_undeclared());
  EXPECT_EQ(p.modbus().port(), 1502u);
  EXPECT_EQ(p.modbus().registers(0).interval_ms(), 500u);
  EXPECT_EQ(p.modbus().registers(0).scale(), 0.1);
  Device plain{"d", "n", DeviceSpec{}, "h", "m", 1, 2};
  v1::Device q;
  DeviceToProto(plain, &q);
  EXPECT_FALSE(q.has_modbus());
  EXPECT_TRUE(q.allow_undeclared());
}

// ---- Credentials ----------------------------------------------------------------------------

TEST(DeviceCredentials, TokensLookRightAndDiffer) {
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    std::string t = NewDeviceToken();
    ASSERT_EQ(t.size(), 37u);
    EXPECT_EQ(t.rfind("vdev_", 0), 0u);
    for (char c : t.substr(5)) EXPECT_TRUE(std::isalnum(static_cast<unsigned char>(c))) << t;
    EXPECT_TRUE(seen.insert(t).second);
  }
}

TEST(DeviceCredentials, MosquittoHashFormatAndCheck) {
  std::string h = MosquittoPasswordHash("s3cret");
  ASSERT_EQ(h.rfind("$7$101$", 0), 0u) << h;
  auto parts = h.substr(7);
  auto dollar = parts.find('$');
  EXPECT_EQ(dollar, 16u) << "12-byte salt in base64";
  EXPECT_EQ(parts.size() - dollar - 1, 88u) << "64-byte hash in base64";
  EXPECT_TRUE(CheckMosquittoPassword(h, "s3cret"));
  EXPECT_FALSE(CheckMosquittoPassword(h, "s3cret!"));
  EXPECT_FALSE(CheckMosquittoPassword("$6$abc", "s3cret"));
  EXPECT_FALSE(CheckMosquittoPassword("$7$x$y$z", "s3cret"));
  EXPECT_NE(MosquittoPasswordHash("s3cret"), h) << "fresh salt each time";
}

bool HaveProgram(const char* name) {
  return std::system(fmt::format("command -v {} >/dev/null 2>&1", name).c_str()) == 0;
}

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "verge-dev-XXXXXX").string();
    if (mkdtemp(tmpl.data())) path_ = tmpl;
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(DeviceCredentials, MatchesWhatMosquittoPasswdWrites) {
  if (!HaveProgram("mosquitto_passwd")) GTEST_SKIP() << "mosquitto_passwd not installed";
  TempDir dir;
  std::string file = dir.path() + "/pw";
  ASSERT_EQ(
      std::system(
          fmt::format("mosquitto_passwd -c -b {} dev-1 'p@ss word' >/dev/null 2>&1", file).c_str()),
      0);
  std::ifstream in(file);
  std::string line;
  std::getline(in, line);
  ASSERT_EQ(line.rfind("dev-1:", 0), 0u) << line;
  std::string hash = line.substr(6);
  // Recompute with mosquitto's own salt and iterations: the same bytes, character for character.
  std::string rest = hash.substr(3);
  int iterations = std::stoi(rest.substr(0, rest.find('$')));
  rest = rest.substr(rest.find('$') + 1);
  std::string salt_b64 = rest.substr(0, rest.find('$'));
  std::string salt(12, '\0');
  ASSERT_EQ(EVP_DecodeBlock(reinterpret_cast<unsigned char*>(salt.data()),
                            reinterpret_cast<const unsigned char*>(salt_b64.data()),
                            static_cast<int>(salt_b64.size())),
            12);
  EXPECT_EQ(MosquittoPasswordHash("p@ss word", salt, iterations), hash);
  EXPECT_TRUE(CheckMosquittoPassword(hash, "p@ss word"));
}

int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

bool CanConnect(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

TEST(DeviceCredentials, RealMosquittoAcceptsTheTokenAndNothingElse) {
  if (!HaveProgram("mosquitto") || !HaveProgram("mosquitto_pub")) {
    GTEST_SKIP() << "mosquitto not installed";
  }
  TempDir dir;
  std::string token = NewDeviceToken();
  {
    std::ofstream pw(dir.path() + "/passwd");
    pw << "dev-1:" << MosquittoPasswordHash(token) << "\n";
  }
  int port = FreePort();
  {
    std::ofstream conf(dir.path() + "/mosquitto.conf");
    conf << "listener " << port << " 127.0.0.1\n"
         << "allow_anonymous false\n"
         << "password_file " << dir.path() << "/passwd\n"
         << "persistence false\n"
         << "log_dest none\n";
    // Started as root, Mosquitto drops to the mosquitto user and could not read the file.
    if (::geteuid() == 0) conf << "user root\n";
  }
  std::string conf_path = dir.path() + "/mosquitto.conf";
  const char* argv[] = {"mosquitto", "-c", conf_path.c_str(), nullptr};
  pid_t pid = 0;
  ASSERT_EQ(posix_spawnp(&pid, "mosquitto", nullptr, nullptr, const_cast<char**>(argv), environ),
            0);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!CanConnect(port) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  bool up = CanConnect(port);
  auto pub = [&](const std::string& user, const std::string& password) {
    return std::system(fmt::format("timeout 10 mosquitto_pub -h 127.0.0.1 -p {} -u '{}' -P '{}' "
                                   "-t devices/dev-1/telemetry -m 1 >/dev/null 2>&1",
                                   port, user, password)
                           .c_str());
  };
  int good = up ? pub("dev-1", token) : -1;
  int wrong = up ? pub("dev-1", token + "x") : -1;
  int other = up ? pub("dev-2", token) : -1;
  ::kill(pid, SIGTERM);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(up) << "mosquitto did not start on port " << port;
  EXPECT_EQ(good, 0) << "the token is the password";
  EXPECT_NE(wrong, 0) << "a wrong password is refused";
  EXPECT_NE(other, 0) << "another user name is refused";
}

// ---- Store: devices and desired-state versions ---------------------------------------------

class DeviceStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { store_ = std::move(SqliteStore::Open(":memory:")).value(); }
  static Device Dev(const std::string& name, const std::string& node) {
    Device d;
    d.name = name;
    d.node = node;
    d.spec.labels = {{"k", "v"}};
    d.spec.metrics = {MetricSpec{"temp", "float", 0.0, 100.0, "degC", {}}};
    d.token_sha256 = "sha-" + name;
    d.mqtt_password_hash = "$7$-" + name;
    d.created_ms = d.updated_ms = 1000;
    return d;
  }
  std::unique_ptr<SqliteStore> store_;
};

using Bumps = std::vector<Store::VersionBump>;

TEST_F(DeviceStoreTest, EveryChangeBumpsItsNodesInTheSameTransaction) {
  EXPECT_EQ(store_->GetDesiredState("n1", {})->version, 0u) << "nothing declared yet";
  EXPECT_EQ(*store_->InsertDevice(Dev("d1", "n1")), (Bumps{{"n1", 1}}));
  EXPECT_EQ(*store_->InsertDevice(Dev("d2", "n1")), (Bumps{{"n1", 2}}));
  EXPECT_EQ(store_->InsertDevice(Dev("d1", "n2")).status().code(), Code::kAlreadyExists)
      << "names are unique across the fleet";
  EXPECT_EQ(store_->GetDesiredState("n1", {})->version, 2u) << "a failed insert bumps nothing";

  // Moving a device bumps both nodes.
  Device moved = Dev("d1", "n2");
  moved.created_ms = 5;  // ignored: creation time is kept
  moved.updated_ms = 2000;
  EXPECT_EQ(*store_->UpdateDevice(moved), (Bumps{{"n1", 3}, {"n2", 1}}));
  auto n1 = *store_->GetDesiredState("n1", {});
  EXPECT_EQ(n1.version, 3u);
  ASSERT_EQ(n1.devices.size(), 1u);
  EXPECT_EQ(n1.devices[0].name, "d2");
  auto n2 = *store_->GetDesiredState("n2", {});
  ASSERT_EQ(n2.devices.size(), 1u);
  EXPECT_EQ(n2.devices[0].created_ms, 1000);
  EXPECT_EQ(n2.devices[0].updated_ms, 2000);
  EXPECT_EQ(n2.devices[0].spec, moved.spec);
  EXPECT_EQ(n2.devices[0].token_sha256, "sha-d1");

  EXPECT_EQ(*store_->DeleteDevice("d2"), (Bumps{{"n1", 4}}));
  EXPECT_TRUE(store_->GetDesiredState("n1", {})->devices.empty());
  EXPECT_EQ(store_->DeleteDevice("d2").status().code(), Code::kNotFound);
  EXPECT_EQ(store_->UpdateDevice(Dev("zz", "n1")).status().code(), Code::kNotFound);
  EXPECT_EQ(store_->ListDevices("")->size(), 1u);
  EXPECT_FALSE(store_->GetDevice("d2")->has_value());

  // A node claiming a version the cloud never issued moves the cloud past it.
  EXPECT_EQ(*store_->RaiseDesiredVersion("n1", 10), 11u);
  EXPECT_EQ(*store_->RaiseDesiredVersion("n1", 5), 11u);
  EXPECT_EQ(*store_->RaiseDesiredVersion("n9", 0), 1u);
}

TEST_F(DeviceStoreTest, NodesShowTheirVersionsAndReportedState) {
  Node n;
  n.name = "n1";
  n.type = "gateway";
  ASSERT_TRUE(store_->InsertNode(n).ok());
  ASSERT_TRUE(store_->InsertDevice(Dev("d1", "n1")).ok());
  std::vector<Store::StateReport> reports = {{"n1", 1, "bad unit", 77}};
  ASSERT_TRUE(store_->UpdateStateReports(reports).ok());
  auto got = **store_->GetNode("n1");
  EXPECT_EQ(got.desired_version, 1u);
  EXPECT_EQ(got.applied_version, 1u);
  EXPECT_EQ(got.state_error, "bad unit");
  EXPECT_EQ(got.state_reported_ms, 77);
  // Writing the node record back (registry flush) leaves the version alone.
  n.region = "eu";
  ASSERT_TRUE(store_->UpdateNodes(std::span<const Node>(&n, 1)).ok());
  ASSERT_TRUE(store_->InsertDevice(Dev("d2", "n1")).ok());
  EXPECT_EQ((*store_->ListNodes())[0].desired_version, 2u);
  // Decommission forgets the applied state and the uplink history, keeps the devices.
  ASSERT_TRUE(store_->DecommissionNode("n1", {"", "n1", 1, "test"}).ok());
  EXPECT_EQ(store_->ListDevices("n1")->size(), 2u);
  ASSERT_TRUE(store_->InsertNode(n).ok());
  got = **store_->GetNode("n1");
  EXPECT_EQ(got.desired_version, 2u);
  EXPECT_EQ(got.applied_version, 0u);
  EXPECT_EQ(got.state_error, "");
}

// ---- DeviceService --------------------------------------------------------------------------

class RecordingSink : public DesiredStateSink {
 public:
  void DesiredStateChanged(const std::string& node) override { changed.push_back(node); }
  std::vector<std::string> changed;
};

TEST(DeviceService, CreateRotateReplaceDeleteNotifyTheNodes) {
  FakeClock clock;
  auto store = std::move(SqliteStore::Open(":memory:")).value();
  Registry registry(*store, clock, {});
  ASSERT_TRUE(registry.AddJoined("n1", "s1", 0, "ip").ok());
  ASSERT_TRUE(registry.AddJoined("n2", "s2", 0, "ip").ok());
  RecordingSink sink;
  DeviceService svc(*store, registry, sink, clock);

  auto created = svc.Create(R"({"name": "d1", "node": "n1"})");
  ASSERT_TRUE(created.ok()) << created.status().message();
  const std::string token = created->token;
  EXPECT_EQ(created->device.token_sha256, pki::Sha256Hex(token));
  EXPECT_TRUE(CheckMosquittoPassword(created->device.mqtt_password_hash, token));
  EXPECT_EQ(sink.changed, std::vector<std::string>{"n1"});
  EXPECT_EQ(registry.Get("n1")->desired_version, 1u);
  EXPECT_EQ(svc.Create(R"({"name": "d1", "node": "n2"})").status().code(), Code::kAlreadyExists);
  auto bad = svc.Create(R"({"name": "d2", "node": "n3"})");
  EXPECT_NE(bad.status().message().find("not a registered node"), std::string::npos);

  auto rotated = svc.RotateToken("d1");
  ASSERT_TRUE(rotated.ok());
  EXPECT_NE(rotated->token, token);
  EXPECT_EQ(svc.Get("d1")->token_sha256, pki::Sha256Hex(rotated->token));
  EXPECT_EQ(registry.Get("n1")->desired_version, 2u) << "the node needs the new hashes";

  clock.Advance(std::chrono::seconds(5));
  auto replaced = svc.Replace("d1", R"({"node": "n2", "labels": {"a": "b"}})");
  ASSERT_TRUE(replaced.ok()) << replaced.status().message();
  EXPECT_EQ(replaced->token_sha256, pki::Sha256Hex(rotated->token)) << "token kept";
  EXPECT_EQ(replaced->updated_ms, clock.WallMs());
  EXPECT_EQ(sink.changed, (std::vector<std::string>{"n1", "n1", "n1", "n2"}));
  EXPECT_EQ(registry.Get("n2")->desired_version, 1u);

  ASSERT_TRUE(svc.Delete("d1").ok());
  EXPECT_EQ(svc.Delete("d1").code(), Code::kNotFound);
  EXPECT_EQ(svc.Get("d1").status().code(), Code::kNotFound);
  EXPECT_EQ(svc.RotateToken("d1").status().code(), Code::kNotFound);
  EXPECT_EQ(sink.changed.back(), "n2");
}

}  // namespace
}  // namespace verge::cloud
