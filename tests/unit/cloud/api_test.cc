// The REST router, join handler and link protocol, driven without a network.
#include "cloud/api.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "cloud/api_json.h"
#include "cloud/store_sqlite.h"
#include "common/bootstrap_token.h"

namespace verge::cloud {
namespace {

using json = nlohmann::json;

class FakeStream : public LinkStream {
 public:
  void Send(std::string frame) override {
    v1::Envelope env;
    ASSERT_TRUE(env.ParseFromString(frame));
    sent.push_back(env);
  }
  void Close() override { closed = true; }
  std::vector<v1::Envelope> sent;
  bool closed = false;
};

class ApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = std::move(SqliteStore::Open(":memory:")).value();
    ca_.emplace(std::move(pki::CertificateAuthority::Create("ca", 10)).value());
    tokens_ = std::make_unique<TokenService>(*store_, clock_, *pki::Fingerprint(ca_->cert_pem()));
    admin_ = **tokens_->EnsureAdminToken();
    registry_ = std::make_unique<Registry>(*store_, clock_, RegistryOptions{});
    ASSERT_TRUE(registry_->Load().ok());
    link_ = std::make_unique<LinkService>(*registry_, clock_);
    api_ = std::make_unique<Api>(*registry_, *tokens_, *link_, clock_);
    join_ = std::make_unique<JoinService>(*registry_, *tokens_, *ca_, 30, clock_);
  }

  http::Response Call(std::string method, std::string target, std::string body = "",
                      std::string token = "") {
    http::Request req;
    req.method = std::move(method);
    req.target = std::move(target);
    req.body = std::move(body);
    req.headers["authorization"] = "Bearer " + (token.empty() ? admin_ : token);
    http::ParseTarget(req);
    return api_->Handle(req);
  }

  // Joins `name` through the join handler; returns the issued certificate's serial.
  std::string JoinNode(const std::string& name, const std::string& token) {
    auto key = pki::GenerateKey();
    v1::JoinRequest jr;
    jr.set_token(ParseBootstrapToken(token)->Credential());
    jr.set_node_name(name);
    jr.set_csr_pem(*pki::MakeCsr(key->private_key_pem, name));
    http::Request req{"POST", "/v1/join", "/v1/join", {}, {}, jr.SerializeAsString(), "10.1.1.1"};
    auto res = join_->Handle(req);
    if (res.status != 200) return "";
    v1::JoinResponse resp;
    EXPECT_TRUE(resp.ParseFromString(res.body));
    return pki::InspectCertificate(resp.certificate_pem())->serial_hex;
  }

  std::string NewToken(const std::string& ttl = "1h") {
    auto res = Call("POST", "/api/v1/tokens", json{{"ttl", ttl}}.dump());
    EXPECT_EQ(res.status, 201) << res.body;
    return json::parse(res.body)["token"];
  }

  FakeClock clock_;
  std::unique_ptr<SqliteStore> store_;
  std::optional<pki::CertificateAuthority> ca_;
  std::unique_ptr<TokenService> tokens_;
  std::string admin_;
  std::unique_ptr<Registry> registry_;
  std::unique_ptr<LinkService> link_;
  std::unique_ptr<Api> api_;
  std::unique_ptr<JoinService> join_;
};

TEST_F(ApiTest, RefusesMissingOrWrongBearerToken) {
  http::Request req{"GET", "/api/v1/nodes", "/api/v1/nodes", {}, {}, "", ""};
  EXPECT_EQ(api_->Handle(req).status, 401);
  EXPECT_EQ(Call("GET", "/api/v1/nodes", "", "vadm_wrong").status, 401);
  auto ok = Call("GET", "/api/v1/nodes");
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(ok.body, "[]");
}

TEST_F(ApiTest, ErrorsAreJsonWithCodeAndMessage) {
  auto res = Call("GET", "/api/v1/nodes/ghost");
  EXPECT_EQ(res.status, 404);
  auto j = json::parse(res.body);
  EXPECT_EQ(j["error"]["code"], "not_found");
  EXPECT_NE(j["error"]["message"].get<std::string>().find("ghost"), std::string::npos);
  EXPECT_EQ(Call("PUT", "/api/v1/nodes").status, 405);
  EXPECT_EQ(Call("GET", "/api/v2/anything").status, 404);
}

TEST_F(ApiTest, JoinThenListLabelAndDelete) {
  std::string serial = JoinNode("edge-1", NewToken());
  ASSERT_FALSE(serial.empty());
  auto list = json::parse(Call("GET", "/api/v1/nodes").body);
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0]["name"], "edge-1");
  EXPECT_EQ(list[0]["status"], "offline");
  for (const char* key : {"name", "status", "region", "labels", "resources", "lastHeartbeat"}) {
    EXPECT_TRUE(list[0].contains(key)) << key;
  }
  auto patched = Call("PATCH", "/api/v1/nodes/edge-1", R"({"labels": {"zone": "z1"}})");
  ASSERT_EQ(patched.status, 200) << patched.body;
  EXPECT_EQ(json::parse(patched.body)["labels"]["zone"], "z1");
  EXPECT_EQ(Call("PATCH", "/api/v1/nodes/edge-1", R"({"labels": {"bad key!": "v"}})").status, 400);
  auto del = Call("DELETE", "/api/v1/nodes/edge-1");
  ASSERT_EQ(del.status, 200);
  EXPECT_EQ(json::parse(del.body)["revokedCertificate"], serial);
  EXPECT_TRUE(registry_->IsRevoked(serial));
  auto events = json::parse(Call("GET", "/api/v1/nodes/edge-1/events").body);
  EXPECT_EQ(events.back()["type"], "decommissioned");
}

TEST_F(ApiTest, JoinRefusesBadExpiredRevokedTokensAndTakenNames) {
  std::string good = NewToken();
  EXPECT_FALSE(JoinNode("n1", good).empty());
  EXPECT_TRUE(JoinNode("n1", good).empty()) << "name taken";
  EXPECT_TRUE(JoinNode("Bad_Name", good).empty());

  std::string expiring = NewToken("1m");
  clock_.Advance(std::chrono::minutes(2));
  EXPECT_TRUE(JoinNode("n2", expiring).empty()) << "expired";

  std::string revoked = NewToken();
  auto id = ParseBootstrapToken(revoked)->id;
  ASSERT_EQ(Call("DELETE", "/api/v1/tokens/" + id).status, 200);
  EXPECT_TRUE(JoinNode("n3", revoked).empty()) << "revoked";

  auto parts = *ParseBootstrapToken(good);
  parts.secret = std::string(16, 'z');
  EXPECT_TRUE(JoinNode("n4", FormatBootstrapToken(parts)).empty()) << "wrong secret";

  auto tokens = json::parse(Call("GET", "/api/v1/tokens").body);
  std::map<std::string, std::string> states;
  for (auto& t : tokens) states[t["id"]] = t["state"];
  EXPECT_EQ(states[ParseBootstrapToken(expiring)->id], "expired");
  EXPECT_EQ(states[id], "revoked");
}

TEST_F(ApiTest, JoinRejectsGarbageBodies) {
  for (std::string body : {std::string(""), std::string("\xff\xff\xff"), std::string(70000, 'a')}) {
    http::Request req{"POST", "/v1/join", "/v1/join", {}, {}, body, "ip"};
    EXPECT_EQ(join_->Handle(req).status, 400);
  }
}

TEST_F(ApiTest, LinkRequiresHelloMatchingTheCertificate) {
  std::string serial = JoinNode("edge-1", NewToken());
  // No certificate at all, a revoked one, one that is not current: refused before the stream.
  EXPECT_EQ(link_->Authorize({"", "", "ip"}).code(), Code::kUnauthenticated);
  EXPECT_EQ(link_->Authorize({"edge-1", "00ff", "ip"}).code(), Code::kPermissionDenied);
  ASSERT_TRUE(link_->Authorize({"edge-1", serial, "ip"}).ok());

  // A Hello naming another node is refused with IDENTITY_MISMATCH.
  auto stream = std::make_shared<FakeStream>();
  auto conn = link_->Open(stream, {"edge-1", serial, "ip"});
  v1::Envelope hello;
  hello.set_id(1);
  hello.mutable_hello()->set_node_name("edge-2");
  conn->OnMessage(hello.SerializeAsString());
  ASSERT_EQ(stream->sent.size(), 1u);
  EXPECT_EQ(stream->sent[0].goodbye().reason(), v1::Goodbye::IDENTITY_MISMATCH);
  EXPECT_TRUE(stream->closed);

  // The right Hello gets a HelloAck and marks the node online; heartbeats count.
  auto s2 = std::make_shared<FakeStream>();
  auto c2 = link_->Open(s2, {"edge-1", serial, "ip"});
  hello.mutable_hello()->set_node_name("edge-1");
  hello.mutable_hello()->set_protocol_version(7);
  hello.mutable_hello()->mutable_info()->set_region("eu");
  c2->OnMessage(hello.SerializeAsString());
  ASSERT_EQ(s2->sent.size(), 1u);
  EXPECT_TRUE(s2->sent[0].has_hello_ack());
  EXPECT_EQ(s2->sent[0].hello_ack().protocol_version(), kProtocolVersion) << "negotiated down";
  EXPECT_EQ(registry_->Get("edge-1")->status, NodeStatus::kOnline);
  EXPECT_EQ(registry_->Get("edge-1")->region, "eu");

  v1::Envelope hb;
  hb.set_id(2);
  hb.mutable_heartbeat()->set_seq(1);
  hb.mutable_heartbeat()->set_want_ack(true);
  c2->OnMessage(hb.SerializeAsString());
  ASSERT_EQ(s2->sent.size(), 2u);
  EXPECT_EQ(s2->sent[1].in_reply_to(), 2u);
  EXPECT_TRUE(s2->sent[1].has_ack());

  // A message kind from a newer protocol is ignored, not fatal (field 99 of Envelope).
  std::string unknown("\x9a\x06\x00", 3);  // tag (99<<3)|2 as varint, length 0
  c2->OnMessage(unknown);
  EXPECT_FALSE(s2->closed);
  EXPECT_EQ(link_->counters().unknown_messages.load(), 1u);

  // Garbage closes the stream with PROTOCOL_ERROR.
  c2->OnMessage(std::string("\xff\xff\xff\xff", 4));
  EXPECT_EQ(s2->sent.back().goodbye().reason(), v1::Goodbye::PROTOCOL_ERROR);
  EXPECT_TRUE(s2->closed);
  c2->OnClosed("test");
  EXPECT_FALSE(registry_->IsConnected("edge-1"));
}

TEST_F(ApiTest, SecondStreamSupersedesFirstAndDeleteCutsTheStream) {
  std::string serial = JoinNode("edge-1", NewToken());
  v1::Envelope hello;
  hello.mutable_hello()->set_node_name("edge-1");
  auto s1 = std::make_shared<FakeStream>();
  auto c1 = link_->Open(s1, {"edge-1", serial, "ip"});
  c1->OnMessage(hello.SerializeAsString());
  auto s2 = std::make_shared<FakeStream>();
  auto c2 = link_->Open(s2, {"edge-1", serial, "ip"});
  c2->OnMessage(hello.SerializeAsString());
  EXPECT_EQ(s1->sent.back().goodbye().reason(), v1::Goodbye::SUPERSEDED);
  EXPECT_TRUE(s1->closed);
  c1->OnClosed("superseded");
  EXPECT_EQ(link_->ActiveStreams(), 1u) << "the old stream's close does not detach the new one";

  ASSERT_EQ(Call("DELETE", "/api/v1/nodes/edge-1").status, 200);
  EXPECT_EQ(s2->sent.back().goodbye().reason(), v1::Goodbye::REVOKED);
  EXPECT_TRUE(s2->closed);
}

TEST(ApiJson, LabelPatchValidation) {
  EXPECT_TRUE(ParseLabelPatch(R"({"labels": {"a": "b", "example.com/c": null}})").ok());
  for (const char* bad :
       {"", "[]", "{}", R"({"labels": 5})", R"({"labels": {}})", R"({"labels": {"a": 5}})",
        R"({"labels": {"-a": "b"}})", R"({"labels": {"a": "b c"}})",
        R"({"labels": {"a": "b"}, "x": 1})", R"({"labels": {"Bad_Prefix/a": "b"}})"}) {
    auto r = ParseLabelPatch(bad);
    EXPECT_FALSE(r.ok()) << bad;
  }
  EXPECT_FALSE(ParseLabelPatch(std::string(kMaxApiBodyBytes + 1, ' ')).ok());
}

TEST(ApiJson, TokenCreateValidation) {
  EXPECT_EQ(ParseTokenCreate("")->ttl.count(), 24 * 3600 * 1000);
  EXPECT_EQ(ParseTokenCreate(R"({"ttl": "2h"})")->ttl.count(), 7200000);
  EXPECT_FALSE(ParseTokenCreate(R"({"ttl": 5})").ok());
  EXPECT_FALSE(ParseTokenCreate(R"({"ttl": "soon"})").ok());
  EXPECT_FALSE(ParseTokenCreate(R"({"tll": "2h"})").ok());
  EXPECT_FALSE(ParseTokenCreate("nope").ok());
}

TEST(ApiJson, NodeNames) {
  for (std::string ok : {std::string("a"), std::string("edge-1"), std::string("plant7.line-3"),
                         std::string(63, 'a')}) {
    EXPECT_TRUE(ValidateNodeName(ok).ok()) << ok;
  }
  for (std::string bad : {std::string(""), std::string("-a"), std::string("a-"), std::string("A"),
                          std::string("a_b"), std::string(64, 'a'), std::string("a/b")}) {
    EXPECT_FALSE(ValidateNodeName(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace verge::cloud
