// The cloud's services wired as verge-cloud wires them (store in memory, token service,
// registry, telemetry writer, link service, devices, rules, REST router), driven without a
// network; and a link stream that records what the cloud sends.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "cloud/api.h"
#include "cloud/store_sqlite.h"
#include "common/clock.h"

namespace verge::cloud {

class FakeStream : public LinkStream {
 public:
  void Send(std::string frame) override {
    v1::Envelope env;
    ASSERT_TRUE(env.ParseFromString(frame));
    sent.push_back(env);
  }
  void Close() override { closed = true; }
  std::vector<v1::Envelope> Sent(v1::Envelope::BodyCase kind) const {
    std::vector<v1::Envelope> out;
    for (const auto& e : sent) {
      if (e.body_case() == kind) out.push_back(e);
    }
    return out;
  }
  std::vector<v1::Envelope> sent;
  bool closed = false;
};

// One node's link to the cloud under test.
struct TestLink {
  std::shared_ptr<FakeStream> stream;
  std::shared_ptr<LinkService::Connection> conn;

  void Send(const v1::Envelope& env) { conn->OnMessage(env.SerializeAsString()); }
  void Send(const v1::UplinkBatch& b) {
    v1::Envelope env;
    *env.mutable_uplink_batch() = b;
    Send(env);
  }
  // Envelopes of one kind sent to the node so far.
  std::vector<v1::Envelope> Sent(v1::Envelope::BodyCase kind) const { return stream->Sent(kind); }
  std::vector<uint64_t> Acked() const {
    std::vector<uint64_t> out;
    for (const auto& e : Sent(v1::Envelope::kUplinkAck)) {
      for (auto s : e.uplink_ack().seqs()) out.push_back(s);
    }
    return out;
  }
  std::vector<v1::DesiredState> States() const {
    std::vector<v1::DesiredState> out;
    for (const auto& e : Sent(v1::Envelope::kDesiredState)) out.push_back(e.desired_state());
    return out;
  }
};

class CloudApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = std::move(SqliteStore::Open(":memory:")).value();
    tokens_ = std::make_unique<TokenService>(*store_, clock_, CaFingerprint());
    admin_ = **tokens_->EnsureAdminToken();
    registry_ = std::make_unique<Registry>(*store_, clock_, RegistryOptions{});
    ASSERT_TRUE(registry_->Load().ok());
    telemetry_ = std::make_unique<TelemetryWriter>(*store_);
    link_ = std::make_unique<LinkService>(*registry_, *store_, *telemetry_, clock_);
    devices_ = std::make_unique<DeviceService>(*store_, *registry_, *link_, clock_);
    rules_ = std::make_unique<RuleService>(*store_, *registry_, *link_, clock_);
    registry_->SetLabelsObserver(rules_.get());
    apps_ = std::make_unique<AppService>(*store_, *registry_, *link_, clock_);
    artifacts_dir_ = ::testing::TempDir() + "/artifacts-" + std::to_string(::getpid()) + "-" +
                     ::testing::UnitTest::GetInstance()->current_test_info()->name();
    artifacts_ = std::make_unique<ArtifactStore>(artifacts_dir_, 1 << 20);
    ASSERT_TRUE(artifacts_->Open().ok());
    api_ = std::make_unique<Api>(*registry_, *tokens_, *link_, *devices_, *rules_, *apps_,
                                 *artifacts_, *telemetry_, *store_, clock_);
  }
  // The fingerprint join tokens pin; a test with a real CA returns its own.
  virtual std::string CaFingerprint() { return std::string(64, 'a'); }

  // One API request with the admin token (or `token`).
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

  // Opens a link for `node` (certificate serial `serial`) and says `hello` on it; expects the
  // cloud's HelloAck.
  TestLink OpenLink(const std::string& node, const std::string& serial, v1::Hello hello) {
    TestLink l;
    l.stream = std::make_shared<FakeStream>();
    l.conn = link_->Open(l.stream, {node, serial, "ip"});
    v1::Envelope env;
    env.set_id(1);
    hello.set_node_name(node);
    hello.set_protocol_version(1);
    *env.mutable_hello() = std::move(hello);
    l.Send(env);
    EXPECT_FALSE(l.stream->sent.empty());
    if (!l.stream->sent.empty()) {
      EXPECT_TRUE(l.stream->sent[0].has_hello_ack());
    }
    return l;
  }

  FakeClock clock_;
  std::unique_ptr<SqliteStore> store_;
  std::unique_ptr<TokenService> tokens_;
  std::string admin_;
  std::unique_ptr<Registry> registry_;
  std::unique_ptr<TelemetryWriter> telemetry_;
  std::unique_ptr<LinkService> link_;
  std::unique_ptr<DeviceService> devices_;
  std::unique_ptr<RuleService> rules_;
  std::unique_ptr<AppService> apps_;
  std::string artifacts_dir_;
  std::unique_ptr<ArtifactStore> artifacts_;
  std::unique_ptr<Api> api_;
};

}  // namespace verge::cloud
