#include "cloud/registry.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "cloud/store_sqlite.h"

namespace verge::cloud {
namespace {

using std::chrono::seconds;

class RegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = std::filesystem::temp_directory_path() /
            ("verge-registry-" + std::to_string(::getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name() + ".db");
    std::filesystem::remove(path_);
    store_ = std::move(SqliteStore::Open(path_.string())).value();
    registry_ = std::make_unique<Registry>(*store_, clock_,
                                           RegistryOptions{Millis(30'000), Millis(90'000)});
    ASSERT_TRUE(registry_->Load().ok());
  }
  void TearDown() override {
    registry_.reset();
    store_.reset();
    std::filesystem::remove(path_);
    std::filesystem::remove(path_.string() + "-wal");
    std::filesystem::remove(path_.string() + "-shm");
  }
  NodeStatus StatusOf(const std::string& name) { return registry_->Get(name)->status; }
  std::vector<std::string> EventTypes(const std::string& name) {
    std::vector<std::string> out;
    auto events = registry_->Events(name, 100);
    for (const auto& e : *events) out.push_back(e.type);
    return out;
  }
  void JoinAndConnect(const std::string& name) {
    ASSERT_TRUE(registry_->AddJoined(name, "serial-" + name, 0, "10.0.0.1").ok());
    NodeReport r;
    r.type = "server";
    r.region = "eu";
    r.labels = {{"site", "a"}};
    ASSERT_TRUE(registry_->OnConnected(name, r, "10.0.0.1").ok());
  }

  FakeClock clock_;
  std::filesystem::path path_;
  std::unique_ptr<SqliteStore> store_;
  std::unique_ptr<Registry> registry_;
};

TEST_F(RegistryTest, JoinedNodeIsOfflineUntilItConnects) {
  ASSERT_TRUE(registry_->AddJoined("n1", "s1", 0, "10.0.0.1").ok());
  EXPECT_EQ(StatusOf("n1"), NodeStatus::kOffline);
  EXPECT_EQ(registry_->AddJoined("n1", "s2", 0, "x").code(), Code::kAlreadyExists);
  NodeReport r;
  ASSERT_TRUE(registry_->OnConnected("n1", r, "10.0.0.1").ok());
  EXPECT_EQ(StatusOf("n1"), NodeStatus::kOnline);
  EXPECT_EQ(EventTypes("n1"), (std::vector<std::string>{"joined", "connected", "online"}));
}

// A node that reconnects before its old stream's end is noticed: the history still alternates
// (the old stream's late end is not reported: LinkService only reports the current stream's).
TEST_F(RegistryTest, AReconnectOverAStaleStreamRecordsTheOldOnesEnd) {
  JoinAndConnect("n1");
  clock_.Advance(std::chrono::milliseconds(500));
  ASSERT_TRUE(registry_->OnConnected("n1", NodeReport{}, "10.0.0.1").ok());
  EXPECT_TRUE(registry_->IsConnected("n1"));
  EXPECT_EQ(EventTypes("n1"), (std::vector<std::string>{"joined", "connected", "online",
                                                        "disconnected", "connected"}));
}

TEST_F(RegistryTest, SilenceDegradesThenOfflinesAndHeartbeatRecovers) {
  JoinAndConnect("n1");
  clock_.Advance(seconds(29));
  registry_->Sweep();
  EXPECT_EQ(StatusOf("n1"), NodeStatus::kOnline);
  clock_.Advance(seconds(1));
  registry_->Sweep();
  EXPECT_EQ(StatusOf("n1"), NodeStatus::kDegraded);
  clock_.Advance(seconds(59));
  registry_->Sweep();
  EXPECT_EQ(StatusOf("n1"), NodeStatus::kDegraded);
  clock_.Advance(seconds(1));
  registry_->Sweep();
  EXPECT_EQ(StatusOf("n1"), NodeStatus::kOffline);
  registry_->OnHeartbeat("n1", std::nullopt);
  EXPECT_EQ(StatusOf("n1"), NodeStatus::kOnline);
  auto types = EventTypes("n1");
  EXPECT_EQ(std::vector<std::string>(types.end() - 3, types.end()),
            (std::vector<std::string>{"degraded", "offline", "online"}));
}

TEST_F(RegistryTest, HeartbeatsKeepANodeOnline) {
  JoinAndConnect("n1");
  for (int i = 0; i < 20; ++i) {
    clock_.Advance(seconds(15));
    registry_->OnHeartbeat("n1", std::nullopt);
    registry_->Sweep();
    EXPECT_EQ(StatusOf("n1"), NodeStatus::kOnline);
  }
}

TEST_F(RegistryTest, SweepJumpingPastBothSilencesGoesStraightToOffline) {
  JoinAndConnect("n1");
  clock_.Advance(seconds(600));
  registry_->Sweep();
  EXPECT_EQ(StatusOf("n1"), NodeStatus::kOffline);
}

TEST_F(RegistryTest, RestartKeepsRecordsAndSilenceFromStoredHeartbeat) {
  JoinAndConnect("n1");
  registry_->OnHeartbeat("n1", Resources{100, 200, 3, 0, 0});
  ASSERT_TRUE(registry_->Flush().ok());
  clock_.Advance(seconds(10));
  // A new registry over the same store, as after a cloud restart.
  Registry again(*store_, clock_, RegistryOptions{Millis(30'000), Millis(90'000)});
  ASSERT_TRUE(again.Load().ok());
  auto n = again.Get("n1");
  ASSERT_TRUE(n);
  EXPECT_EQ(n->region, "eu");
  EXPECT_EQ(n->labels.at("site"), "a");
  EXPECT_EQ(n->used.cpu_millicores, 100u);
  again.Sweep();
  EXPECT_EQ(again.Get("n1")->status, NodeStatus::kOnline) << "10 s of silence is not 30";
  clock_.Advance(seconds(20));
  again.Sweep();
  EXPECT_EQ(again.Get("n1")->status, NodeStatus::kDegraded) << "silence counted across the restart";
}

TEST_F(RegistryTest, NodeLabelsWinForTheirKeysApiLabelsStay) {
  JoinAndConnect("n1");
  ASSERT_TRUE(registry_->PatchLabels("n1", {{"owner", "ops"}, {"site", "b"}}).ok());
  EXPECT_EQ(registry_->Get("n1")->labels.at("site"), "b");
  NodeReport r;
  r.labels = {{"site", "a"}};
  ASSERT_TRUE(registry_->OnConnected("n1", r, "ip").ok());
  auto labels = registry_->Get("n1")->labels;
  EXPECT_EQ(labels.at("site"), "a");
  EXPECT_EQ(labels.at("owner"), "ops");
  ASSERT_TRUE(registry_->PatchLabels("n1", {{"owner", std::nullopt}}).ok());
  EXPECT_EQ(registry_->Get("n1")->labels.count("owner"), 0u);
  // Setting what is already there, or removing what is not, records nothing.
  auto before = EventTypes("n1").size();
  ASSERT_TRUE(registry_->PatchLabels("n1", {{"site", "a"}, {"owner", std::nullopt}}).ok());
  EXPECT_EQ(EventTypes("n1").size(), before);
  EXPECT_EQ(registry_->PatchLabels("nope", {{"a", "b"}}).status().code(), Code::kNotFound);
}

TEST_F(RegistryTest, DecommissionRevokesAndKeepsHistory) {
  JoinAndConnect("n1");
  EXPECT_TRUE(registry_->CertIsCurrent("n1", "serial-n1"));
  auto n = registry_->Decommission("n1");
  ASSERT_TRUE(n.ok());
  EXPECT_FALSE(registry_->Get("n1"));
  EXPECT_TRUE(registry_->IsRevoked("serial-n1"));
  EXPECT_FALSE(registry_->CertIsCurrent("n1", "serial-n1"));
  EXPECT_EQ(EventTypes("n1").back(), "decommissioned");
  Registry again(*store_, clock_, RegistryOptions{});
  ASSERT_TRUE(again.Load().ok());
  EXPECT_TRUE(again.IsRevoked("serial-n1")) << "revocation survives a restart";
  // The name is free again.
  EXPECT_TRUE(registry_->AddJoined("n1", "serial-2", 0, "ip").ok());
}

TEST_F(RegistryTest, CountsByStatus) {
  JoinAndConnect("a");
  JoinAndConnect("b");
  ASSERT_TRUE(registry_->AddJoined("c", "s", 0, "ip").ok());
  registry_->OnDisconnected("b", "test");
  auto c = registry_->Counts();
  EXPECT_EQ(c.nodes, 3u);
  EXPECT_EQ(c.online, 2u);
  EXPECT_EQ(c.offline, 1u);
  EXPECT_EQ(c.connected, 1u);
}

}  // namespace
}  // namespace verge::cloud
