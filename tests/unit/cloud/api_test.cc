// The REST router, join handler and link protocol, driven without a network.
#include "cloud/api.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "api_fixture.h"
#include "cloud/api_json.h"
#include "cloud/device_credentials.h"
#include "cloud/store_sqlite.h"
#include "common/bootstrap_token.h"
#include "common/compress.h"

namespace verge::cloud {
namespace {

using json = nlohmann::json;

class ApiTest : public CloudApiTest {
 protected:
  void SetUp() override {
    CloudApiTest::SetUp();
    join_ = std::make_unique<JoinService>(*registry_, *tokens_, *ca_, 30);
  }
  std::string CaFingerprint() override {
    ca_.emplace(std::move(pki::CertificateAuthority::Create("ca", 10)).value());
    return *pki::Fingerprint(ca_->cert_pem());
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

  std::optional<pki::CertificateAuthority> ca_;
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

TEST(ApiJson, ClipUtf8NeverCutsACharacter) {
  EXPECT_EQ(ClipUtf8("abc", 10), "abc");
  EXPECT_EQ(ClipUtf8("abcdef", 3), "abc");
  EXPECT_EQ(ClipUtf8("a\xc3\xa9"
                     "b",
                     2),
            "a")
      << "é is two bytes";
  EXPECT_EQ(ClipUtf8("a\xc3\xa9"
                     "b",
                     3),
            "a\xc3\xa9");
  EXPECT_EQ(ClipUtf8("\xe2\x82\xac", 2), "") << "€ is three bytes";
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

// ---- Devices over the API -------------------------------------------------------------------

TEST_F(ApiTest, DevicesCrudNeverShowsHashes) {
  ASSERT_FALSE(JoinNode("edge-1", NewToken()).empty());
  ASSERT_FALSE(JoinNode("edge-2", NewToken()).empty());
  auto created = Call("POST", "/api/v1/devices",
                      R"({"name": "d1", "node": "edge-1", "labels": {"line": "3"},
                          "metrics": [{"name": "temp", "min": 0, "max": 100}]})");
  ASSERT_EQ(created.status, 201) << created.body;
  auto j = json::parse(created.body);
  EXPECT_EQ(j["name"], "d1");
  EXPECT_EQ(j["node"], "edge-1");
  const std::string token = j["token"];
  EXPECT_EQ(token.rfind("vdev_", 0), 0u);
  for (const auto& body : {created.body, Call("GET", "/api/v1/devices/d1").body,
                           Call("GET", "/api/v1/devices").body}) {
    EXPECT_EQ(body.find(pki::Sha256Hex(token)), std::string::npos) << body;
    EXPECT_EQ(body.find("$7$"), std::string::npos) << body;
  }
  EXPECT_EQ(Call("GET", "/api/v1/devices/d1").body.find(token), std::string::npos)
      << "the token is shown once";

  auto dup = Call("POST", "/api/v1/devices", R"({"name": "d1", "node": "edge-2"})");
  EXPECT_EQ(dup.status, 409);
  EXPECT_EQ(json::parse(dup.body)["error"]["code"], "already_exists");
  auto invalid = Call("POST", "/api/v1/devices",
                      R"({"name": "x y", "node": "nowhere", "metrics": [{"name": "m", "min": 2,
                          "max": 1}]})");
  ASSERT_EQ(invalid.status, 400);
  std::string msg = json::parse(invalid.body)["error"]["message"];
  EXPECT_NE(msg.find("name"), std::string::npos);
  EXPECT_NE(msg.find("not a registered node"), std::string::npos);
  EXPECT_NE(msg.find("min must be less than max"), std::string::npos);

  ASSERT_EQ(Call("POST", "/api/v1/devices", R"({"name": "d2", "node": "edge-2"})").status, 201);
  EXPECT_EQ(json::parse(Call("GET", "/api/v1/devices").body).size(), 2u);
  auto only = json::parse(Call("GET", "/api/v1/devices?node=edge-2").body);
  ASSERT_EQ(only.size(), 1u);
  EXPECT_EQ(only[0]["name"], "d2");

  auto put = Call("PUT", "/api/v1/devices/d1", R"({"node": "edge-2", "allowUndeclared": false})");
  ASSERT_EQ(put.status, 200) << put.body;
  EXPECT_EQ(json::parse(put.body)["allowUndeclared"], false);
  EXPECT_EQ(json::parse(put.body)["metrics"].size(), 0u) << "PUT replaces the spec";
  EXPECT_EQ(Call("PUT", "/api/v1/devices/ghost", R"({"node": "edge-2"})").status, 404);

  auto rotated = Call("POST", "/api/v1/devices/d1/token");
  ASSERT_EQ(rotated.status, 200);
  EXPECT_NE(json::parse(rotated.body)["token"], token);
  EXPECT_EQ(Call("GET", "/api/v1/devices/d1/token").status, 405);

  auto nodes = json::parse(Call("GET", "/api/v1/nodes").body);
  EXPECT_EQ(nodes[0]["desiredVersion"], 2) << "edge-1: d1 added, then moved away";
  EXPECT_EQ(nodes[1]["desiredVersion"], 3) << "edge-2: d2, d1 moved in, d1's token";
  EXPECT_EQ(nodes[0]["appliedVersion"], 0);
  EXPECT_EQ(nodes[0]["stateError"], "");

  EXPECT_EQ(Call("DELETE", "/api/v1/devices/d1").status, 200);
  EXPECT_EQ(Call("DELETE", "/api/v1/devices/d1").status, 404);
  EXPECT_EQ(Call("GET", "/api/v1/devices/d1").status, 404);
  EXPECT_EQ(Call("PATCH", "/api/v1/devices/d2").status, 405);
}

// ---- Desired state and uplink over the link -------------------------------------------------

v1::UplinkBatch Batch(uint64_t seq, const std::string& device, const std::string& metric,
                      int64_t t0_ns, const std::vector<double>& values, int64_t step_ns = 1'000'000,
                      uint64_t low_seq = 0) {
  v1::ReadingBatch rb;
  rb.add_devices(device);
  rb.add_metrics(metric);
  auto* s = rb.add_series();
  for (size_t i = 0; i < values.size(); ++i) {
    s->add_ts_delta_ns(i == 0 ? t0_ns : step_ns);
    s->add_values(values[i]);
  }
  v1::UplinkBatch b;
  b.set_seq(seq);
  b.set_low_seq(low_seq);
  b.set_count(static_cast<uint32_t>(values.size()));
  b.set_codec(v1::CODEC_ZSTD);
  b.set_data(*ZstdCompress(rb.SerializeAsString()));
  return b;
}

class LinkDataTest : public ApiTest {
 protected:
  using Link = TestLink;

  void SetUp() override {
    ApiTest::SetUp();
    serials_["edge-1"] = JoinNode("edge-1", NewToken());
    serials_["edge-2"] = JoinNode("edge-2", NewToken());
  }

  Link Connect(const std::string& node, uint64_t desired_version, uint64_t uplink_next_seq = 0) {
    v1::Hello hello;
    hello.mutable_resume()->set_desired_version(desired_version);
    hello.mutable_resume()->set_uplink_next_seq(uplink_next_seq);
    return OpenLink(node, serials_[node], std::move(hello));
  }

  void AddDevice(const std::string& name, const std::string& node) {
    auto res = Call("POST", "/api/v1/devices",
                    json{{"name", name}, {"node", node}, {"metrics", {{{"name", "temp"}}}}}.dump());
    ASSERT_EQ(res.status, 201) << res.body;
    tokens_by_device_[name] = json::parse(res.body)["token"];
  }

  std::map<std::string, std::string> serials_;
  std::map<std::string, std::string> tokens_by_device_;
};

TEST_F(LinkDataTest, NothingDeclaredNothingSent) {
  auto l = Connect("edge-1", 0);
  EXPECT_EQ(l.stream->sent.size(), 1u);
  EXPECT_EQ(l.stream->sent[0].hello_ack().desired_version(), 0u);
  EXPECT_EQ(l.stream->sent[0].hello_ack().uplink_stored_seq(), 0u);
}

TEST_F(LinkDataTest, HelloWithAnOldVersionGetsTheWholeStateOnce) {
  AddDevice("d1", "edge-1");
  AddDevice("d2", "edge-1");
  AddDevice("other", "edge-2");
  auto l = Connect("edge-1", 0);
  ASSERT_EQ(l.stream->sent.size(), 2u) << "HelloAck, then DesiredState";
  EXPECT_EQ(l.stream->sent[0].hello_ack().desired_version(), 2u);
  const auto& ds = l.stream->sent[1].desired_state();
  EXPECT_EQ(ds.version(), 2u);
  ASSERT_EQ(ds.devices_size(), 2);
  EXPECT_EQ(ds.devices(0).name(), "d1");
  EXPECT_EQ(ds.devices(0).token_sha256(), pki::Sha256Hex(tokens_by_device_["d1"]));
  EXPECT_TRUE(CheckMosquittoPassword(ds.devices(0).mqtt_password_hash(), tokens_by_device_["d1"]));
  EXPECT_EQ(ds.devices(0).metrics(0).name(), "temp");
  EXPECT_TRUE(ds.devices(0).allow_undeclared());
  EXPECT_EQ(ds.devices(1).name(), "d2");

  // Resuming at the current version: nothing is re-sent.
  auto again = Connect("edge-1", 2);
  EXPECT_EQ(again.stream->sent.size(), 1u);
}

TEST_F(LinkDataTest, ChangesWhileConnectedArePushedAtOnceToEveryNodeTheyTouch) {
  auto l1 = Connect("edge-1", 0);
  auto l2 = Connect("edge-2", 0);
  AddDevice("d1", "edge-1");
  auto pushed = l1.Sent(v1::Envelope::kDesiredState);
  ASSERT_EQ(pushed.size(), 1u);
  EXPECT_EQ(pushed[0].desired_state().version(), 1u);
  EXPECT_EQ(pushed[0].desired_state().devices_size(), 1);

  // Moving d1 to edge-2: edge-1 gets a document without it, edge-2 one with it.
  ASSERT_EQ(Call("PUT", "/api/v1/devices/d1", R"({"node": "edge-2"})").status, 200);
  pushed = l1.Sent(v1::Envelope::kDesiredState);
  ASSERT_EQ(pushed.size(), 2u);
  EXPECT_EQ(pushed[1].desired_state().version(), 2u);
  EXPECT_EQ(pushed[1].desired_state().devices_size(), 0) << "an empty state still goes out";
  auto pushed2 = l2.Sent(v1::Envelope::kDesiredState);
  ASSERT_EQ(pushed2.size(), 1u);
  EXPECT_EQ(pushed2[0].desired_state().version(), 1u);
  EXPECT_EQ(pushed2[0].desired_state().devices(0).name(), "d1");

  ASSERT_EQ(Call("DELETE", "/api/v1/devices/d1").status, 200);
  pushed2 = l2.Sent(v1::Envelope::kDesiredState);
  ASSERT_EQ(pushed2.size(), 2u);
  EXPECT_EQ(pushed2[1].desired_state().version(), 2u);
  EXPECT_EQ(link_->counters().desired_states_sent.load(), 4u);
}

TEST_F(LinkDataTest, ANodeAheadOfTheCloudIsMovedForward) {
  AddDevice("d1", "edge-1");  // cloud at version 1
  auto l = Connect("edge-1", 7);
  ASSERT_EQ(l.stream->sent.size(), 2u);
  EXPECT_EQ(l.stream->sent[0].hello_ack().desired_version(), 8u);
  EXPECT_EQ(l.stream->sent[1].desired_state().version(), 8u);
  EXPECT_EQ(registry_->Get("edge-1")->desired_version, 8u);
}

TEST_F(LinkDataTest, StateReportsAreRecordedAndShown) {
  AddDevice("d1", "edge-1");
  auto l = Connect("edge-1", 0);
  v1::Envelope report;
  report.mutable_state_report()->set_applied_version(1);
  l.Send(report);
  EXPECT_EQ(registry_->Get("edge-1")->applied_version, 1u);
  report.mutable_state_report()->set_applied_version(1);
  report.mutable_state_report()->set_error("unit \"furlong\" unknown");
  l.Send(report);
  ASSERT_TRUE(registry_->Flush().ok());
  auto node = json::parse(Call("GET", "/api/v1/nodes/edge-1").body);
  EXPECT_EQ(node["desiredVersion"], 1);
  EXPECT_EQ(node["appliedVersion"], 1);
  EXPECT_EQ(node["stateError"], "unit \"furlong\" unknown");
  EXPECT_EQ((*store_->GetNode("edge-1"))->state_error, "unit \"furlong\" unknown");
  auto events = json::parse(Call("GET", "/api/v1/nodes/edge-1/events").body);
  EXPECT_EQ(events.back()["type"], "state_rejected");
  EXPECT_EQ(link_->counters().state_reports.load(), 2u);
}

TEST_F(LinkDataTest, UplinkIsAckedOnlyAfterCommitAndStoredOnce) {
  auto l = Connect("edge-1", 0);
  const int64_t t0 = int64_t{1'700'000'000'123} * 1'000'000 + 456;  // ns precision
  auto b1 = Batch(1, "d1", "temp", t0, {21.5, 21.75, 22});
  l.Send(b1);
  EXPECT_TRUE(l.Acked().empty()) << "not acknowledged before it is committed";
  EXPECT_EQ(telemetry_->queued_batches(), 1u);
  auto empty = Call("GET", "/api/v1/telemetry?device=d1");
  EXPECT_EQ(json::parse(empty.body).size(), 0u);

  EXPECT_EQ(telemetry_->CommitPending(), 1u);
  EXPECT_EQ(l.Acked(), std::vector<uint64_t>{1});

  // The same batch again (the ack was lost): acknowledged again, stored once.
  l.Send(b1);
  l.Send(b1);
  EXPECT_EQ(telemetry_->CommitPending(), 2u);
  EXPECT_EQ(l.Acked(), (std::vector<uint64_t>{1, 1, 1}));
  EXPECT_EQ(telemetry_->counters().batches_stored.load(), 1u);
  EXPECT_EQ(telemetry_->counters().batches_duplicate.load(), 2u);

  auto res = Call("GET", "/api/v1/telemetry?device=d1&metric=temp");
  ASSERT_EQ(res.status, 200) << res.body;
  auto pts = json::parse(res.body);
  ASSERT_EQ(pts.size(), 3u);
  EXPECT_EQ(pts[0]["ts"], "2023-11-14T22:13:20.123000456Z");
  EXPECT_EQ(pts[0]["tsNs"], t0);
  EXPECT_EQ(pts[0]["device"], "d1");
  EXPECT_EQ(pts[0]["metric"], "temp");
  EXPECT_EQ(pts[0]["value"], 21.5);
  EXPECT_EQ(pts[1]["ts"], "2023-11-14T22:13:20.124000456Z");
  EXPECT_EQ(pts[2]["value"], 22.0);

  // A reconnecting node learns what is stored.
  auto l2 = Connect("edge-1", 0);
  EXPECT_EQ(l2.stream->sent[0].hello_ack().uplink_stored_seq(), 1u);

  auto status = json::parse(Call("GET", "/api/v1/status").body);
  EXPECT_EQ(status["uplinkBatches"], 3);
  EXPECT_EQ(status["batchesStored"], 1);
  EXPECT_EQ(status["readingsStored"], 3);
}

TEST_F(LinkDataTest, ACorruptBatchIsAckedCountedAndRecordedButNotStored) {
  auto l = Connect("edge-1", 0);
  auto bad = Batch(5, "d1", "temp", 1'000, {1, 2});
  bad.set_count(3);
  l.Send(bad);
  EXPECT_EQ(l.Acked(), std::vector<uint64_t>{5}) << "at once: resending cannot help";
  auto junk = Batch(6, "d1", "temp", 1'000, {1});
  junk.set_data("garbage");
  l.Send(junk);
  EXPECT_EQ(l.Acked(), (std::vector<uint64_t>{5, 6}));
  EXPECT_FALSE(l.stream->closed) << "the stream stays up";
  EXPECT_EQ(link_->counters().bad_batches.load(), 2u);
  EXPECT_EQ(telemetry_->queued_batches(), 0u);
  // One event a minute at most; the next one says how many went unreported.
  auto rejected_events = [&] {
    std::vector<std::string> out;
    for (auto& e : json::parse(Call("GET", "/api/v1/nodes/edge-1/events").body)) {
      if (e["type"] == "batch_rejected") out.push_back(e["message"]);
    }
    return out;
  };
  auto events = rejected_events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_NE(events[0].find("batch 5"), std::string::npos) << events[0];
  EXPECT_NE(events[0].find("says 3 readings"), std::string::npos) << events[0];
  for (uint64_t seq = 8; seq < 20; ++seq) {
    auto more = Batch(seq, "d1", "temp", 1'000, {1});
    more.set_data("garbage");
    l.Send(more);
  }
  EXPECT_EQ(rejected_events().size(), 1u);
  clock_.Advance(std::chrono::seconds(61));
  auto last = Batch(20, "d1", "temp", 1'000, {1});
  last.set_data("garbage");
  l.Send(last);
  events = rejected_events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_NE(events[1].find("batch 20"), std::string::npos) << events[1];
  EXPECT_NE(events[1].find("13 more rejected since the last report"), std::string::npos)
      << events[1];
  EXPECT_EQ(link_->counters().bad_batches.load(), 15u);
  // A good batch after them is stored normally.
  l.Send(Batch(21, "d1", "temp", 1'000, {1}));
  EXPECT_EQ(telemetry_->CommitPending(), 1u);
  EXPECT_EQ(json::parse(Call("GET", "/api/v1/telemetry?device=d1").body).size(), 1u);
}

TEST_F(LinkDataTest, ANodeThatNumbersAfreshIsNotTakenForDuplicates) {
  auto l = Connect("edge-1", 0, 1);
  for (uint64_t seq = 1; seq <= 3; ++seq) l.Send(Batch(seq, "d1", "temp", seq * 1000, {1}));
  EXPECT_EQ(telemetry_->CommitPending(), 3u);
  // Reconnecting with a next seq above what is stored: an ordinary resume.
  auto resumed = Connect("edge-1", 0, 4);
  EXPECT_EQ(resumed.stream->sent[0].hello_ack().uplink_stored_seq(), 3u);
  // The node lost its buffer and starts again at 1: its new seq 1 is new data.
  auto fresh = Connect("edge-1", 0, 1);
  EXPECT_EQ(fresh.stream->sent[0].hello_ack().uplink_stored_seq(), 0u);
  fresh.Send(Batch(1, "d1", "temp", 9000, {2}));
  EXPECT_EQ(telemetry_->CommitPending(), 1u);
  EXPECT_EQ(telemetry_->counters().batches_stored.load(), 4u);
  EXPECT_EQ(json::parse(Call("GET", "/api/v1/telemetry?device=d1").body).size(), 4u);
  auto events = json::parse(Call("GET", "/api/v1/nodes/edge-1/events?limit=1000").body);
  int resets = 0;
  for (const auto& e : events) resets += e["type"] == "uplink_reset";
  EXPECT_EQ(resets, 1);
}

TEST_F(LinkDataTest, UplinkBeforeHelloIsAProtocolError) {
  auto stream = std::make_shared<FakeStream>();
  auto conn = link_->Open(stream, {"edge-1", serials_["edge-1"], "ip"});
  v1::Envelope env;
  *env.mutable_uplink_batch() = Batch(1, "d1", "temp", 1'000, {1});
  conn->OnMessage(env.SerializeAsString());
  ASSERT_EQ(stream->sent.size(), 1u);
  EXPECT_EQ(stream->sent[0].goodbye().reason(), v1::Goodbye::PROTOCOL_ERROR);
  EXPECT_EQ(telemetry_->queued_batches(), 0u);
}

TEST_F(LinkDataTest, TelemetryQueriesOverTheApi) {
  auto l = Connect("edge-1", 0);
  const int64_t t0 = int64_t{1'700'000'000} * 1'000'000'000;
  std::vector<double> values;
  for (int i = 0; i < 120; ++i) values.push_back(i);
  l.Send(Batch(1, "d1", "temp", t0, values, 1'000'000'000));
  l.Send(Batch(2, "d1", "hum", t0, {50, 60}, 1'000'000'000));
  EXPECT_EQ(telemetry_->CommitPending(), 2u);

  auto avg =
      json::parse(Call("GET", "/api/v1/telemetry?device=d1&metric=temp&step=1m&agg=avg&from=" +
                                  std::to_string(t0 / 1'000'000))
                      .body);
  ASSERT_EQ(avg.size(), 3u);  // t0 is 20 s into its minute
  EXPECT_EQ(avg[0]["ts"], "2023-11-14T22:13:00Z");
  EXPECT_EQ(avg[0]["value"], 19.5);  // 0..39
  auto count = json::parse(Call("GET", "/api/v1/telemetry?device=d1&step=1h&agg=count").body);
  ASSERT_EQ(count.size(), 2u);
  EXPECT_EQ(count[0]["metric"], "hum");
  EXPECT_EQ(count[0]["value"], 2);
  EXPECT_EQ(count[1]["value"], 120);
  auto page = json::parse(Call("GET", "/api/v1/telemetry?device=d1&limit=3").body);
  ASSERT_EQ(page.size(), 3u);
  auto next = json::parse(Call("GET", "/api/v1/telemetry?device=d1&limit=3&after=" +
                                          page[2]["metric"].get<std::string>() + "," +
                                          std::to_string(page[2]["tsNs"].get<int64_t>()))
                              .body);
  EXPECT_EQ(next[0]["metric"], "temp");
  EXPECT_EQ(next[0]["value"], 1.0);

  auto bad = Call("GET", "/api/v1/telemetry?device=d1&agg=avg&from=later");
  ASSERT_EQ(bad.status, 400);
  std::string msg = json::parse(bad.body)["error"]["message"];
  EXPECT_NE(msg.find("from:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("step and agg"), std::string::npos) << msg;
  EXPECT_EQ(Call("GET", "/api/v1/telemetry").status, 400);
  EXPECT_EQ(Call("POST", "/api/v1/telemetry?device=d1").status, 405);
}

}  // namespace
}  // namespace verge::cloud
