// MQTT ingest, the parts without a broker: Mosquitto's `$7$` password hashes, the generated
// config, password and ACL files, HOST:PORT and device-list validation, topic parsing.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "node/mqtt/broker_files.h"
#include "node/mqtt/password.h"
#include "node/mqtt/topics.h"

namespace verge::mqtt {
namespace {

// A line mosquitto_passwd 2.0.11 wrote for `mosquitto_passwd -b pw dev1 secret`.
constexpr std::string_view kPasswdHash =
    "$7$101$66J+b7vHApEzwYvk$43w39WhGfi0dlWJT/MfyE6O9pO+TWUVUqObbc+wiaXyR3++1ACu6Z5YtEMCXsU6W4OsB"
    "VgT8Kfi22c+tXi2tCg==";
// Its salt, base64-decoded.
const std::string kPasswdSalt("\xeb\xa2\x7e\x6f\xbb\xc7\x02\x91\x33\xc1\x8b\xe4", 12);

TEST(MqttPassword, ReproducesMosquittoPasswdByteForByte) {
  auto hash = HashPassword("secret", kPasswdSalt);
  ASSERT_TRUE(hash.ok()) << hash.status().ToString();
  EXPECT_EQ(*hash, kPasswdHash);
}

TEST(MqttPassword, VerifiesMosquittoPasswdOutput) {
  EXPECT_TRUE(VerifyPassword("secret", kPasswdHash));
  EXPECT_FALSE(VerifyPassword("Secret", kPasswdHash));
  EXPECT_FALSE(VerifyPassword("", kPasswdHash));
  EXPECT_FALSE(VerifyPassword("secret", "$6$abc$def"));
}

TEST(MqttPassword, RandomSaltHasMosquittosShape) {
  auto a = HashPassword("token-1");
  auto b = HashPassword("token-1");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(*a, *b);  // fresh salts
  // "$7$101$" + 16 characters of base64 salt (12 bytes) + "$" + 88 of key (64 bytes, "==").
  ASSERT_EQ(a->size(), 7 + 16 + 1 + 88);
  EXPECT_EQ(a->substr(0, 7), "$7$101$");
  EXPECT_EQ((*a)[7 + 16], '$');
  EXPECT_EQ(a->substr(a->size() - 2), "==");
  EXPECT_TRUE(IsPasswordHash(*a));
  EXPECT_TRUE(VerifyPassword("token-1", *a));
  EXPECT_FALSE(VerifyPassword("token-2", *a));
}

TEST(MqttPassword, OtherIterationCounts) {
  auto h = HashPassword("pw", "saltsaltsalt", 1000);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->substr(0, 8), "$7$1000$");
  EXPECT_TRUE(VerifyPassword("pw", *h));
  EXPECT_FALSE(HashPassword("pw", "", 101).ok());
  EXPECT_FALSE(HashPassword("pw", "salt", 0).ok());
}

TEST(MqttPassword, RejectsHashesThatWouldBreakThePasswordFile) {
  EXPECT_TRUE(IsPasswordHash(kPasswdHash));
  std::string h(kPasswdHash);
  for (const std::string& bad : {
           std::string(), std::string("secret"),
           "$5$" + h.substr(3),                        // unknown scheme
           "$7$0$" + h.substr(7),                      // zero iterations
           "$7$x$" + h.substr(7),                      // iterations not a number
           h.substr(0, h.size() - 4),                  // key too short
           fmt::format("{}\nintruder:{}", h, h),       // a second line smuggled in
           h + " ",                                    // trailing space
           "$7$101$66J+b7vHApEz*Yvk$" + h.substr(24),  // not base64
           "$7$101$$" + h.substr(24),                  // empty salt
       }) {
    EXPECT_FALSE(IsPasswordHash(bad)) << bad;
  }
  // The older salted-SHA512 form Mosquitto also reads.
  EXPECT_TRUE(IsPasswordHash("$6$c2FsdA==$" + h.substr(h.size() - 88)));
}

TEST(MqttPassword, RandomPasswordsAreLongAndDistinct) {
  std::set<std::string> seen;
  for (int i = 0; i < 20; ++i) {
    auto p = RandomPassword();
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(p->size(), 32u);
    EXPECT_EQ(
        p->find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
        std::string::npos);
    seen.insert(*p);
  }
  EXPECT_EQ(seen.size(), 20u);
}

TEST(MqttHostPort, Parses) {
  EXPECT_EQ(*ParseHostPort("0.0.0.0:1883"), (HostPort{"0.0.0.0", 1883}));
  EXPECT_EQ(*ParseHostPort("127.0.0.1:65535"), (HostPort{"127.0.0.1", 65535}));
  EXPECT_EQ(*ParseHostPort("[::]:1883"), (HostPort{"::", 1883}));
  EXPECT_EQ(*ParseHostPort("broker.local:8883"), (HostPort{"broker.local", 8883}));
  for (const char* bad : {"", "1883", ":1883", "host:", "host:0", "host:65536", "host:12x",
                          "::1:1883", "[::1:1883", "a b:1883", "host:-1"}) {
    EXPECT_FALSE(ParseHostPort(bad).ok()) << bad;
  }
}

std::string Hash(const std::string& password) { return *HashPassword(password, "fixed-salt-1"); }

TEST(MqttDevices, ValidListPasses) {
  EXPECT_TRUE(ValidateDevices({}).ok());
  EXPECT_TRUE(ValidateDevices({{"dev-1", Hash("a")}, {"line_2.press", Hash("b")}}).ok());
}

TEST(MqttDevices, ReportsEveryProblemAtOnce) {
  Status st = ValidateDevices({{"ok", Hash("a")},
                               {"plc:7", Hash("b")},
                               {"verge-node", Hash("c")},
                               {"ok", Hash("d")},
                               {"bad hash", "x"},
                               {"nohash", "plain"},
                               {"", Hash("e")}});
  ASSERT_EQ(st.code(), Code::kInvalidArgument);
  const std::string& m = st.message();
  EXPECT_NE(m.find("\"plc:7\": ':' cannot be used"), std::string::npos) << m;
  EXPECT_NE(m.find("\"verge-node\": the name is reserved"), std::string::npos) << m;
  EXPECT_NE(m.find("\"ok\" is listed twice"), std::string::npos) << m;
  EXPECT_NE(m.find("\"bad hash\": a name is"), std::string::npos) << m;
  EXPECT_NE(m.find("\"nohash\": the password hash"), std::string::npos) << m;
  EXPECT_NE(m.find("device \"\": a name is"), std::string::npos) << m;
}

TEST(MqttFiles, Config) {
  BrokerPaths paths("/var/lib/verge-node/mqtt");
  BrokerSettings s;
  s.listen = {"0.0.0.0", 1883};
  s.run_as_user = "root";
  EXPECT_EQ(RenderConfig(paths, s),
            "# Generated by verge-node at every start and device change: edits are overwritten.\n"
            "# How the node runs this broker: docs/mqtt.md.\n"
            "per_listener_settings false\n"
            "allow_anonymous false\n"
            "password_file /var/lib/verge-node/mqtt/passwd\n"
            "acl_file /var/lib/verge-node/mqtt/acl\n"
            "persistence true\n"
            "persistence_location /var/lib/verge-node/mqtt/persistence/\n"
            "persistence_file mosquitto.db\n"
            "autosave_interval 10\n"
            "max_queued_messages 1000000\n"
            "max_queued_bytes 268435456\n"
            "max_inflight_messages 100\n"
            "max_packet_size 2097152\n"
            "set_tcp_nodelay true\n"
            "log_dest stderr\n"
            "log_type error\n"
            "log_type warning\n"
            "log_type notice\n"
            "log_type information\n"
            "connection_messages true\n"
            "log_timestamp true\n"
            "log_timestamp_format %Y-%m-%dT%H:%M:%S\n"
            "user root\n"
            "listener 1883 0.0.0.0\n");
}

TEST(MqttFiles, ConfigWithoutUserAndOtherSettings) {
  BrokerPaths paths("/d");
  BrokerSettings s;
  s.listen = {"::1", 18830};
  s.max_queued_messages = 5;
  s.max_queued_bytes = 6;
  s.max_inflight_messages = 7;
  s.autosave_interval_s = 8;
  s.max_packet_size = 9;
  std::string conf = RenderConfig(paths, s);
  EXPECT_EQ(conf.find("user "), std::string::npos);
  EXPECT_NE(conf.find("\nmax_queued_messages 5\nmax_queued_bytes 6\nmax_inflight_messages 7\n"),
            std::string::npos);
  EXPECT_NE(conf.find("\nautosave_interval 8\n"), std::string::npos);
  EXPECT_NE(conf.find("\nmax_packet_size 9\n"), std::string::npos);
  EXPECT_TRUE(conf.ends_with("\nlistener 18830 ::1\n"));
  EXPECT_EQ(paths.pid, "/d/mosquitto.pid");
  EXPECT_EQ(paths.log, "/d/mosquitto.log");
}

TEST(MqttFiles, PasswordFile) {
  EXPECT_EQ(RenderPasswordFile("$7$node", {}), "verge-node:$7$node\n");
  EXPECT_EQ(RenderPasswordFile("$7$node", {{"d1", "$7$h1"}, {"d2", "$7$h2"}}),
            "verge-node:$7$node\nd1:$7$h1\nd2:$7$h2\n");
}

TEST(MqttFiles, Acl) {
  EXPECT_EQ(RenderAcl({{"d1", "h"}, {"d2", "h"}}, /*rejections=*/true),
            "user verge-node\n"
            "topic readwrite #\n"
            "\n"
            "user d1\n"
            "topic write devices/d1/#\n"
            "topic read devices/d1/commands/#\n"
            "topic read devices/d1/rejected\n"
            "\n"
            "user d2\n"
            "topic write devices/d2/#\n"
            "topic read devices/d2/commands/#\n"
            "topic read devices/d2/rejected\n");
  EXPECT_EQ(RenderAcl({{"d1", "h"}}, /*rejections=*/false),
            "user verge-node\n"
            "topic readwrite #\n"
            "\n"
            "user d1\n"
            "topic write devices/d1/#\n"
            "topic read devices/d1/commands/#\n");
}

TEST(MqttTopics, DeviceOfTelemetryTopic) {
  EXPECT_EQ(DeviceOfTelemetryTopic("devices/d1/telemetry"), "d1");
  EXPECT_EQ(DeviceOfTelemetryTopic("devices/line-2.press_7/telemetry"), "line-2.press_7");
  for (const char* bad :
       {"", "devices//telemetry", "devices/d1", "devices/d1/telemetry/x", "devices/a/b/telemetry",
        "device/d1/telemetry", "devices/d1/rejected", "Devices/d1/telemetry",
        "devices/d 1/telemetry", "/devices/d1/telemetry", "devices/d1/telemetry/"}) {
    EXPECT_EQ(DeviceOfTelemetryTopic(bad), std::nullopt) << bad;
  }
  std::string long_name(65, 'a');
  EXPECT_EQ(DeviceOfTelemetryTopic("devices/" + long_name + "/telemetry"), std::nullopt);
}

TEST(MqttTopics, Names) {
  EXPECT_EQ(TelemetryTopic("d1"), "devices/d1/telemetry");
  EXPECT_EQ(RejectedTopic("d1"), "devices/d1/rejected");
  EXPECT_EQ(NodeClientId("edge-7"), "verge-node-edge-7");
}

}  // namespace
}  // namespace verge::mqtt
