// Every refusal of the link, the API and the join, against the real cloud over real TLS.
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <filesystem>
#include <fstream>
#include <thread>

#include "common/bootstrap_token.h"
#include "common/fs.h"
#include "common/pki.h"
#include "harness.h"
#include "node/identity.h"
#include "node/link.h"

namespace verge::testing {
namespace {

using json = nlohmann::json;
using std::chrono::seconds;

const std::map<std::string, std::string> kUpgrade = {
    {"Upgrade", "websocket"},
    {"Connection", "Upgrade"},
    {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="},
    {"Sec-WebSocket-Version", "13"},
    {"Sec-WebSocket-Protocol", "verge.v1"}};

Result<http::ClientResult> OpenLink(const Cloud& cloud, const std::string& cert,
                                    const std::string& key) {
  http::HttpsClient client(cloud.link(), http::ClientTls{cloud.ca_pem(), cert, key, false});
  return client.Do("GET", "/v1/link", "", kUpgrade);
}

// Joins a node in-process and returns its identity (files under tmp/<name>).
node::NodeIdentity JoinInProcess(const TempDir& tmp, Cloud& cloud, const std::string& name) {
  SystemClock clock;
  auto id = node::Join(tmp / name, cloud.link(), cloud.bootstrap_token(), name, clock);
  EXPECT_TRUE(id.ok()) << id.status().ToString();
  return id.ok() ? *id : node::NodeIdentity{};
}

TEST(Security, LinkWithoutClientCertificateIsRefused) {
  TempDir tmp;
  Cloud cloud(tmp, {});
  auto res = OpenLink(cloud, "", "");
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  EXPECT_EQ(res->response.status, 401);
  EXPECT_NE(res->response.body.find("client certificate"), std::string::npos);
}

TEST(Security, CertificateFromAnotherCaIsRefusedAtTheHandshake) {
  TempDir tmp;
  Cloud cloud(tmp, {});
  JoinInProcess(tmp, cloud, "real");
  auto rogue_ca = pki::CertificateAuthority::Create("rogue", 10);
  auto key = pki::GenerateKey();
  auto cert = rogue_ca->IssueClientCert(*pki::MakeCsr(key->private_key_pem, "real"), "real", 5);
  auto res = OpenLink(cloud, *cert, key->private_key_pem);
  ASSERT_FALSE(res.ok()) << "status " << res->response.status;
  EXPECT_EQ(res.status().code(), Code::kUnavailable);
}

TEST(Security, RevokedCertificateIsRefused) {
  TempDir tmp;
  Cloud cloud(tmp, {});
  auto id = JoinInProcess(tmp, cloud, "doomed");
  auto before = OpenLink(cloud, id.cert_pem, id.key_pem);
  ASSERT_TRUE(before.ok());
  EXPECT_EQ(before->response.status, 101) << "a current certificate may open the link";
  auto del = cloud.Api("DELETE", "/api/v1/nodes/doomed");
  ASSERT_TRUE(del.ok() && del->status == 200);
  auto after = OpenLink(cloud, id.cert_pem, id.key_pem);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->response.status, 403);
  EXPECT_NE(after->response.body.find("revoked"), std::string::npos);
}

TEST(Security, HelloNotMatchingTheCertificateIsRefused) {
  TempDir tmp;
  Cloud cloud(tmp, {});
  auto id = JoinInProcess(tmp, cloud, "honest");
  JoinInProcess(tmp, cloud, "victim");
  boost::asio::io_context ioc;
  node::LinkOptions lo{cloud.link(), id.ca_pem,   id.cert_pem, id.key_pem,
                       "honest",     Millis(200), Millis(50),  Millis(100)};
  std::atomic<bool> refused{false};
  node::LinkClient link(
      ioc.get_executor(), lo,
      [] {
        v1::Hello h;
        h.set_node_name("victim");  // claims another node's name
        h.set_protocol_version(1);
        return h;
      },
      nullptr,
      [&](node::LinkState s, const std::string&) {
        if (s == node::LinkState::kRefused) {
          refused = true;
          ioc.stop();
        }
      });
  link.Start();
  std::thread t([&] { ioc.run_for(seconds(20)); });
  t.join();
  EXPECT_TRUE(refused);
  EXPECT_NE(link.stats().last_error.find("certificate"), std::string::npos)
      << link.stats().last_error;
  EXPECT_EQ(link.stats().connects, 0u);
  EXPECT_EQ(cloud.StatusOf("victim"), "offline") << "the impostor did not bring the victim online";
}

TEST(Security, ApiRefusesMissingAndWrongTokens) {
  TempDir tmp;
  Cloud cloud(tmp, {});
  auto none = cloud.Api("GET", "/api/v1/nodes", "", std::string());
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->status, 401);
  EXPECT_EQ(json::parse(none->body)["error"]["code"], "unauthenticated");
  auto wrong = cloud.Api("GET", "/api/v1/nodes", "", std::string("vadm_nope"));
  EXPECT_EQ(wrong->status, 401);
  // A bootstrap token is not an API token.
  auto boot = cloud.Api("GET", "/api/v1/nodes", "", cloud.bootstrap_token());
  EXPECT_EQ(boot->status, 401);
  EXPECT_EQ(cloud.Api("GET", "/api/v1/nodes")->status, 200);
}

TEST(Security, JoinRefusesExpiredRevokedAndMispinnedTokens) {
  TempDir tmp;
  Cloud cloud(tmp, {});
  auto create = [&](const std::string& ttl) {
    auto res = cloud.Api("POST", "/api/v1/tokens", json{{"ttl", ttl}}.dump());
    EXPECT_EQ(res->status, 201);
    return json::parse(res->body);
  };
  auto expired = create("1ms");
  auto revoked = create("1h");
  ASSERT_EQ(cloud.Api("DELETE", "/api/v1/tokens/" + revoked["id"].get<std::string>())->status, 200);
  auto pinned = *ParseBootstrapToken(cloud.bootstrap_token());
  pinned.ca_fingerprint = std::string(64, '0');

  struct Case {
    std::string name, token, expect;
  } cases[] = {{"expired", expired["token"], "expired"},
               {"revoked", revoked["token"], "revoked"},
               {"mispinned", FormatBootstrapToken(pinned), "refusing to join"},
               {"malformed", "hello", "malformed bootstrap token"}};
  for (const auto& c : cases) {
    auto node = StartNode(tmp, cloud.link(), {c.name, "", "", "gateway", "300ms", c.token});
    EXPECT_EQ(node->Wait(seconds(30)), 2) << c.name;
    EXPECT_NE(node->Log().find(c.expect), std::string::npos) << c.name << ": " << node->Log();
    EXPECT_FALSE(cloud.Node(c.name)) << c.name;
  }
}

TEST(Security, DamagedOrForeignDataDirIsAClearErrorNotACrash) {
  TempDir tmp;
  Cloud cloud(tmp, {});
  JoinInProcess(tmp, cloud, "n1");
  // Another name on the same data dir.
  auto other = StartNode(tmp, cloud.link(), {"n2", "", "", "gateway", "300ms", "", tmp / "n1"});
  EXPECT_EQ(other->Wait(seconds(30)), 2);
  EXPECT_NE(other->Log().find("belongs to node \"n1\""), std::string::npos) << other->Log();
  // A damaged certificate.
  std::ofstream(tmp / "n1/identity/node.crt") << "garbage";
  auto damaged = StartNode(tmp, cloud.link(), {"n1", "", "", "gateway", "300ms", ""});
  EXPECT_EQ(damaged->Wait(seconds(30)), 3);
  EXPECT_NE(damaged->Log().find("damaged"), std::string::npos) << damaged->Log();
  // Two agents on one data dir.
  TempDir tmp2;
  auto first =
      StartNode(tmp2, cloud.link(), {"x1", "", "", "gateway", "300ms", cloud.bootstrap_token()});
  ASSERT_TRUE(Eventually([&] { return cloud.StatusOf("x1") == "online"; }));
  auto second = StartNode(tmp2, cloud.link(), {"x1", "", "", "gateway", "300ms", ""});
  EXPECT_EQ(second->Wait(seconds(30)), 2);
  EXPECT_NE(second->Log().find("in use by another process"), std::string::npos);
  EXPECT_TRUE(first->Running());
}

TEST(Security, BadCloudConfigFileIsReportedWhole) {
  TempDir tmp;
  std::ofstream(tmp / "cloud.yaml") << "apiListen: nowhere\nbogus: 1\nofflineAfter: soon\n";
  Process p({BinDir() + "/verge-cloud", "--config", tmp / "cloud.yaml", "--data-dir", tmp / "c"},
            tmp / "c.log");
  EXPECT_EQ(p.Wait(seconds(30)), 2);
  std::string log = p.Log();
  EXPECT_NE(log.find("bogus"), std::string::npos) << log;
  EXPECT_NE(log.find("offlineAfter"), std::string::npos) << log;
}

}  // namespace
}  // namespace verge::testing
