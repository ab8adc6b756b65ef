#include "ctl/output.h"

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

namespace verge::ctl {
namespace {

constexpr int64_t kSecond = 1000;

int64_t T(const char* rfc3339) { return *ParseTimeMs(rfc3339); }

Json Node(const std::string& name, Json last_heartbeat) {
  return Json{{"name", name},
              {"type", "gateway"},
              {"region", "eu"},
              {"labels", {{"a", "b"}, {"zone", "z1"}}},
              {"agentVersion", "0.1.0"},
              {"status", "online"},
              {"lastHeartbeat", std::move(last_heartbeat)},
              {"connected", true}};
}

TEST(OutputFormat, ParsesTheThreeNames) {
  EXPECT_EQ(*ParseOutputFormat("table"), OutputFormat::kTable);
  EXPECT_EQ(*ParseOutputFormat("json"), OutputFormat::kJson);
  EXPECT_EQ(*ParseOutputFormat("yaml"), OutputFormat::kYaml);
  auto bad = ParseOutputFormat("xml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("table, json or yaml"), std::string::npos);
}

TEST(Json, KeepsTheServersKeyOrderAndArrays) {
  Json j = Json::parse(R"([{"z":1,"a":{"y":null,"b":[]}}])");
  EXPECT_EQ(ToJson(j),
            "[\n"
            "  {\n"
            "    \"z\": 1,\n"
            "    \"a\": {\n"
            "      \"y\": null,\n"
            "      \"b\": []\n"
            "    }\n"
            "  }\n"
            "]\n");
}

TEST(Json, ReplacesInvalidUtf8InsteadOfFailing) {
  Json j = {{"hostname", std::string("bad\xff")}};
  EXPECT_NO_THROW(ToJson(j));
}

TEST(Yaml, WritesNestedBlockStyle) {
  Json j = Json::parse(R"({"name":"n1","labels":{"a":"b"},"addresses":["fd00::2"],
                          "connected":true,"lastHeartbeat":null,"used":{"gpu":0},"ratio":0.1,
                          "caps":[],"meta":{}})");
  EXPECT_EQ(ToYaml(j),
            "name: n1\n"
            "labels:\n"
            "  a: b\n"
            "addresses:\n"
            "  - fd00::2\n"
            "connected: true\n"
            "lastHeartbeat: ~\n"
            "used:\n"
            "  gpu: 0\n"
            "ratio: 0.1\n"
            "caps: []\n"
            "meta: {}\n");
}

TEST(Yaml, QuotesStringsThatWouldReadBackAsAnotherType) {
  for (const char* s :
       {"true",  "False", "yes",  "no",    "on",   "OFF", "y",
        "null",  "~",     "123",  "-5",    "+1",   "1.5", ".5",
        "1e3",   "0x1F",  ".inf", "-.Inf", ".NaN", "",    "2026-11-21T10:00:00.000Z",
        "08w1xx"}) {
    Json j = {{"v", s}};
    std::string text = ToYaml(j);
    YAML::Node back = YAML::Load(text);
    // yaml-cpp marks quoted scalars with the non-specific tag "!"; plain ones with "?".
    EXPECT_EQ(back["v"].Tag(), "!") << s << " -> " << text;
    EXPECT_EQ(back["v"].as<std::string>(), s);
  }
  for (const char* s : {"n1", "eu-west", "fd00::2", "labels_changed", "tier-"}) {
    EXPECT_EQ(ToYaml(Json{{"v", s}}), fmt::format("v: {}\n", s));
  }
}

TEST(Yaml, RoundTripsAwkwardStrings) {
  for (const char* s : {"a: b", "- x", "#c", "x\ny\n", "trailing \nspace", "tab\there", "bell\a",
                        "quote\"s", "it's", "üñí"}) {
    YAML::Node back = YAML::Load(ToYaml(Json{{"v", s}}));
    EXPECT_EQ(back["v"].as<std::string>(), s) << s;
  }
}

TEST(Yaml, WritesMultiLineTextAsALiteralBlock) {
  std::string pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
  EXPECT_EQ(ToYaml(Json{{"ca", pem}}),
            "ca: |\n  -----BEGIN CERTIFICATE-----\n  MIIB\n  -----END CERTIFICATE-----\n");
}

TEST(Yaml, TopLevelArrayStaysASequence) {
  YAML::Node back = YAML::Load(ToYaml(Json::parse(R"([{"id":1},{"id":2}])")));
  ASSERT_TRUE(back.IsSequence());
  EXPECT_EQ(back.size(), 2u);
  EXPECT_EQ(back[1]["id"].as<int>(), 2);
  EXPECT_EQ(ToYaml(Json::array()), "[]\n");
}

TEST(Table, AlignsColumnsWithoutTrailingSpaces) {
  EXPECT_EQ(RenderTable({{"NAME", "STATUS"}, {"a-long-name", "online"}, {"b", "offline"}}),
            "NAME          STATUS\n"
            "a-long-name   online\n"
            "b             offline\n");
}

TEST(Table, CountsUtf8CharactersNotBytes) {
  EXPECT_EQ(RenderTable({{"ü", "x"}, {"ab", "y"}}),
            "ü    x\n"
            "ab   y\n");
}

TEST(Table, NeutralisesTerminalControlCharacters) {
  std::string out = RenderTable({{"\x1b[31mred", "a\nb"}});
  EXPECT_EQ(out.find('\x1b'), std::string::npos);
  EXPECT_EQ(out, "?[31mred   a?b\n");
}

TEST(Time, ParsesTheApisTimestamps) {
  EXPECT_EQ(ParseTimeMs("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(ParseTimeMs("1970-01-01T00:00:01.5Z"), 1500);
  EXPECT_EQ(ParseTimeMs("2023-11-14T22:13:20.123Z"), 1'700'000'000'123);
  EXPECT_EQ(ParseTimeMs("2023-11-15T00:13:20.123+02:00"), 1'700'000'000'123);
  EXPECT_EQ(ParseTimeMs("2024-02-29T00:00:00Z"), 1'709'164'800'000);
  for (const char* bad :
       {"", "null", "2023-11-14", "2023-11-14T22:13:20", "2023-02-30T00:00:00Z",
        "2023-11-14T25:00:00Z", "2023-11-14T22:13:20.Z", "2023-11-14T22:13:20X"}) {
    EXPECT_FALSE(ParseTimeMs(bad).has_value()) << bad;
  }
}

TEST(Time, FormatsAgesLikeKubectl) {
  EXPECT_EQ(FormatAge(-5 * kSecond), "0s");
  EXPECT_EQ(FormatAge(999), "0s");
  EXPECT_EQ(FormatAge(59 * kSecond), "59s");
  EXPECT_EQ(FormatAge(60 * kSecond), "1m");
  EXPECT_EQ(FormatAge(3599 * kSecond), "59m");
  EXPECT_EQ(FormatAge(3600 * kSecond), "1h");
  EXPECT_EQ(FormatAge(86400 * kSecond), "1d");
  EXPECT_EQ(FormatAge(400LL * 86400 * kSecond), "1y");
}

TEST(NodesTable, ShowsOneRowPerNodeWithHeartbeatAge) {
  int64_t now = T("2026-11-21T10:00:00Z");
  Json nodes = Json::array({Node("n1", "2026-11-21T09:59:55.500Z"), Node("edge-2", nullptr)});
  nodes[1]["labels"] = Json::object();
  nodes[1]["region"] = "";
  nodes[1]["agentVersion"] = "";
  nodes[1]["status"] = "offline";
  std::string table = NodesTable(nodes, now);
  EXPECT_EQ(table,
            "NAME     STATUS    REGION   TYPE      LABELS        AGE     VERSION\n"
            "n1       online    eu       gateway   a=b,zone=z1   4s      0.1.0\n"
            "edge-2   offline   <none>   gateway   <none>        never   <none>\n");
}

TEST(NodesTable, RendersASingleObjectAsOneRow) {
  std::string table = NodesTable(Node("n1", "2026-11-21T09:00:00Z"), T("2026-11-21T10:00:00Z"));
  EXPECT_EQ(table,
            "NAME   STATUS   REGION   TYPE      LABELS        AGE   VERSION\n"
            "n1     online   eu       gateway   a=b,zone=z1   1h    0.1.0\n");
}

TEST(NodesTable, ToleratesMissingFields) {
  EXPECT_EQ(NodesTable(Json{{"name", "n1"}}, 0),
            "NAME   STATUS   REGION   TYPE     LABELS   AGE     VERSION\n"
            "n1     <none>   <none>   <none>   <none>   never   <none>\n");
  EXPECT_EQ(NodesTable(Json::array(), 0), "");
}

TEST(TokensTable, ShowsNeverForTokensWithoutExpiry) {
  Json tokens = Json::parse(R"([
    {"id":"x4uzk3","description":"default token","createdAt":"2026-11-21T10:00:00.000Z",
     "expiresAt":"2026-11-22T10:00:00.595Z","state":"active","uses":1},
    {"id":"a0tehz","description":"","createdAt":"2026-11-21T10:00:00.000Z",
     "expiresAt":null,"state":"revoked","uses":0}])");
  EXPECT_EQ(TokensTable(tokens),
            "ID       STATE     EXPIRES                USES   DESCRIPTION\n"
            "x4uzk3   active    2026-11-22T10:00:00Z   1      default token\n"
            "a0tehz   revoked   never                  0      <none>\n");
}

TEST(EventsTable, ShowsTimeTypeAndMessage) {
  Json events = Json::parse(R"([
    {"id":1,"node":"n1","time":"2026-11-21T10:00:00.123Z","type":"joined",
     "message":"from 10.0.0.1"},
    {"id":2,"node":"n1","time":"2026-11-21T10:00:01.000Z","type":"online",
     "message":"first heartbeat"}])");
  EXPECT_EQ(EventsTable(events),
            "TIME                   TYPE     MESSAGE\n"
            "2026-11-21T10:00:00Z   joined   from 10.0.0.1\n"
            "2026-11-21T10:00:01Z   online   first heartbeat\n");
}

TEST(KeyValueLines, PrintsOneLinePerFieldInOrder) {
  Json status = Json::parse(R"({"nodes":3,"online":2,"degraded":0,"offline":1})");
  EXPECT_EQ(KeyValueLines(status), "nodes: 3\nonline: 2\ndegraded: 0\noffline: 1\n");
}

TEST(TokenCreated, ShowsTheWholeTokenAndHowToJoin) {
  Json created = Json::parse(R"({"id":"abc123","description":"","createdAt":"2026-11-21T10:00:00Z",
    "expiresAt":null,"state":"active","uses":0,"token":"verge1.ffff.abc123.secret"})");
  std::string text = TokenCreatedText(created);
  EXPECT_NE(text.find("\n    verge1.ffff.abc123.secret\n"), std::string::npos) << text;
  EXPECT_NE(text.find("verge-node --cloud <link address> --token verge1.ffff.abc123.secret "
                      "--name <name>"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("expires: never"), std::string::npos) << text;
}

}  // namespace
}  // namespace verge::ctl
