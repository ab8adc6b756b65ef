// End to end: real verge-cloud and verge-node processes on loopback.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "common/bootstrap_token.h"
#include "common/fs.h"
#include "harness.h"

namespace verge::testing {
namespace {

using json = nlohmann::json;
using std::chrono::seconds;

const std::vector<std::string> kFastSilences = {"--degraded-after", "1s", "--offline-after", "2s"};

TEST(Fleet, ThreeNodesJoinAndGoOnlineWithTheirRegionsAndLabels) {
  TempDir tmp;
  Cloud cloud(tmp, kFastSilences);
  std::vector<std::unique_ptr<Process>> nodes;
  nodes.push_back(StartNode(
      tmp, cloud.link(),
      {"edge-a", "eu-west", "site=a,line=1", "gateway", "300ms", cloud.bootstrap_token()}));
  nodes.push_back(
      StartNode(tmp, cloud.link(),
                {"edge-b", "us-east", "site=b", "server", "300ms", cloud.bootstrap_token()}));
  nodes.push_back(
      StartNode(tmp, cloud.link(),
                {"edge-c", "ap-south", "site=c", "micro", "300ms", cloud.bootstrap_token()}));
  ASSERT_TRUE(Eventually([&] {
    auto list = cloud.Nodes();
    if (list.size() != 3) return false;
    for (auto& n : list) {
      if (n["status"] != "online") return false;
    }
    return true;
  })) << cloud.Nodes().dump(2)
      << nodes[0]->Log();
  auto a = *cloud.Node("edge-a");
  EXPECT_EQ(a["region"], "eu-west");
  EXPECT_EQ(a["type"], "gateway");
  EXPECT_EQ(a["labels"]["site"], "a");
  EXPECT_EQ(a["labels"]["line"], "1");
  EXPECT_GT(a["resources"]["cpuMillicores"].get<int>(), 0);
  EXPECT_GT(a["resources"]["memoryMB"].get<int>(), 0);
  EXPECT_TRUE(a["lastHeartbeat"].is_string());
  EXPECT_EQ(a["ip"], "127.0.0.1");
  EXPECT_EQ((*cloud.Node("edge-b"))["type"], "server");
  EXPECT_EQ((*cloud.Node("edge-c"))["region"], "ap-south");
  // The acceptance interface: vergectl --config DATA/vergectl.yaml nodes list -o json.
  Process ctl({BinDir() + "/vergectl", "--config", cloud.data_dir() + "/vergectl.yaml", "nodes",
               "list", "-o", "json"},
              tmp / "vergectl.out");
  ASSERT_EQ(ctl.Wait(seconds(30)), 0) << ctl.Log();
  auto printed = json::parse(ctl.Log());
  ASSERT_TRUE(printed.is_array());
  ASSERT_EQ(printed.size(), 3u);
  for (auto& n : printed) {
    for (const char* key : {"name", "status", "region", "labels", "resources", "lastHeartbeat"}) {
      EXPECT_TRUE(n.contains(key)) << key;
    }
    EXPECT_EQ(n["status"], "online");
  }
  // Heartbeats keep moving lastHeartbeat.
  std::string first = a["lastHeartbeat"];
  EXPECT_TRUE(Eventually([&] { return (*cloud.Node("edge-a"))["lastHeartbeat"] != first; }));
}

TEST(Fleet, KilledNodeGoesDegradedThenOfflineOthersStayOnline) {
  TempDir tmp;
  Cloud cloud(tmp, kFastSilences);
  auto a =
      StartNode(tmp, cloud.link(), {"a", "r", "", "gateway", "300ms", cloud.bootstrap_token()});
  auto b =
      StartNode(tmp, cloud.link(), {"b", "r", "", "gateway", "300ms", cloud.bootstrap_token()});
  ASSERT_TRUE(Eventually(
      [&] { return cloud.StatusOf("a") == "online" && cloud.StatusOf("b") == "online"; }));
  a->Signal(SIGKILL);
  ASSERT_TRUE(Eventually([&] { return cloud.StatusOf("a") == "offline"; }));
  EXPECT_EQ(cloud.StatusOf("b"), "online");
  auto types = cloud.EventTypes("a");
  auto pos = [&](const std::string& t) {
    return std::find(types.begin(), types.end(), t) - types.begin();
  };
  EXPECT_LT(pos("online"), pos("degraded"));
  EXPECT_LT(pos("degraded"), pos("offline"));
  EXPECT_LT(pos("offline"), static_cast<long>(types.size()));

  // Restarted with the same data dir, it comes back under the same identity, without joining.
  auto a2 = StartNode(tmp, cloud.link(), {"a", "r", "", "gateway", "300ms", ""});
  ASSERT_TRUE(Eventually([&] { return cloud.StatusOf("a") == "online"; })) << a2->Log();
  EXPECT_EQ(std::count(types.begin(), types.end(), "joined"), 1);
  auto after = cloud.EventTypes("a");
  EXPECT_EQ(std::count(after.begin(), after.end(), "joined"), 1) << "no second join";
}

TEST(Fleet, StoppedNodeSaysGoodbye) {
  TempDir tmp;
  Cloud cloud(tmp, kFastSilences);
  auto node = StartNode(tmp, cloud.link(), {.name = "polite", .token = cloud.bootstrap_token()});
  ASSERT_TRUE(Eventually([&] { return cloud.StatusOf("polite") == "online"; }));
  node->Signal(SIGTERM);
  EXPECT_EQ(node->Wait(seconds(30)), 0);
  ASSERT_TRUE(Eventually([&] { return !(*cloud.Node("polite"))["connected"].get<bool>(); }));
  auto res = cloud.Api("GET", "/api/v1/nodes/polite/events");
  ASSERT_TRUE(res.ok());
  std::string last_disconnect;
  for (auto& e : json::parse(res->body)) {
    if (e["type"] == "disconnected") last_disconnect = e["message"];
  }
  EXPECT_NE(last_disconnect.find("shutting down"), std::string::npos) << last_disconnect;
}

TEST(Fleet, CloudRestartKeepsRegistryAndNodesReconnect) {
  TempDir tmp;
  auto cloud = std::make_unique<Cloud>(tmp, kFastSilences);
  std::string api = cloud->api(), link = cloud->link();
  std::vector<std::unique_ptr<Process>> nodes;
  for (std::string name : {"n1", "n2", "n3"}) {
    NodeOptions o{name, "eu", "", "gateway", "300ms", cloud->bootstrap_token()};
    o.extra = {"--config", FastReconnectConfig(tmp, name)};
    nodes.push_back(StartNode(tmp, link, o));
  }
  ASSERT_TRUE(Eventually([&] {
    for (auto n : {"n1", "n2", "n3"}) {
      if (cloud->StatusOf(n) != "online") return false;
    }
    return true;
  }));
  auto patched = cloud->Api("PATCH", "/api/v1/nodes/n2", R"({"labels": {"owner": "ops"}})");
  ASSERT_TRUE(patched.ok() && patched->status == 200);

  cloud->Stop(SIGTERM);
  EXPECT_EQ(cloud->process().Wait(seconds(10)), 0) << "clean shutdown";
  cloud = std::make_unique<Cloud>(tmp, kFastSilences, "cloud", api, link);
  ASSERT_TRUE(Eventually([&] {
    auto list = cloud->Nodes();
    if (list.size() != 3) return false;
    for (auto& n : list) {
      if (n["status"] != "online" || !n["connected"].get<bool>()) return false;
    }
    return true;
  })) << cloud->Nodes().dump(2);
  EXPECT_EQ((*cloud->Node("n2"))["labels"]["owner"], "ops");
  for (auto& n : nodes) EXPECT_TRUE(n->Running());
}

TEST(Fleet, NodeStartedBeforeTheCloudJoinsWhenItAppears) {
  TempDir tmp;
  int link_port = FreePort();
  std::string link = "127.0.0.1:" + std::to_string(link_port);
  // The token must carry the CA hash, so make the cloud once, take its token, and stop it.
  std::string token;
  {
    Cloud first(tmp, {}, "cloud", "127.0.0.1:0", link);
    token = first.bootstrap_token();
    first.Stop();
  }
  NodeOptions o{"late", "", "", "gateway", "300ms", token};
  o.extra = {"--config", FastReconnectConfig(tmp, "late")};
  auto node = StartNode(tmp, link, o);
  ASSERT_TRUE(Eventually([&] { return node->Log().find("cannot join yet") != std::string::npos; }));
  EXPECT_TRUE(node->Running()) << "an unreachable cloud is not fatal";
  Cloud cloud(tmp, {}, "cloud", "127.0.0.1:0", link);
  ASSERT_TRUE(Eventually([&] { return cloud.StatusOf("late") == "online"; })) << node->Log();
}

TEST(Fleet, DecommissionRevokesAndStopsTheNode) {
  TempDir tmp;
  Cloud cloud(tmp, kFastSilences);
  auto node =
      StartNode(tmp, cloud.link(), {"gone", "", "", "gateway", "300ms", cloud.bootstrap_token()});
  ASSERT_TRUE(Eventually([&] { return cloud.StatusOf("gone") == "online"; }));
  auto del = cloud.Api("DELETE", "/api/v1/nodes/gone");
  ASSERT_TRUE(del.ok() && del->status == 200) << (del.ok() ? del->body : del.status().ToString());
  auto code = node->Wait(seconds(30));
  ASSERT_TRUE(code.has_value()) << "the node stops: retrying cannot help";
  EXPECT_EQ(*code, 2);
  EXPECT_FALSE(cloud.Node("gone"));
  // Started again with its revoked certificate, it is refused again and exits.
  auto again = StartNode(tmp, cloud.link(), {"gone", "", "", "gateway", "300ms", ""});
  EXPECT_EQ(again->Wait(seconds(30)), 2);
  EXPECT_NE(again->Log().find("revoked"), std::string::npos);
}

}  // namespace
}  // namespace verge::testing
