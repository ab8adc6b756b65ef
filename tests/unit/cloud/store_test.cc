#include <gtest/gtest.h>

#include <filesystem>

#include "cloud/store_sqlite.h"
#include "store_fixture.h"

namespace verge::cloud {
namespace {

class StoreTest : public SqliteStoreTest {
 protected:
  static Node MakeNode(const std::string& name) {
    Node n;
    n.name = name;
    n.type = "server";
    n.region = "eu-west";
    n.labels = {{"site", "plant-7"}};
    n.capabilities = {"gpu"};
    n.capacity = {4000, 8192, 100, 1, 0};
    n.cert_serial = "abc";
    n.created_ms = 1000;
    n.status_since_ms = 1000;
    return n;
  }
};

TEST_F(StoreTest, NodesRoundTripAcrossReopen) {
  ASSERT_TRUE(store_->InsertNode(MakeNode("a")).ok());
  EXPECT_EQ(store_->InsertNode(MakeNode("a")).code(), Code::kAlreadyExists);
  Reopen();
  auto n = store_->GetNode("a");
  ASSERT_TRUE(n.ok() && n->has_value());
  EXPECT_EQ((*n)->labels.at("site"), "plant-7");
  EXPECT_EQ((*n)->capacity.cpu_millicores, 4000u);
  EXPECT_EQ((*n)->capabilities, std::vector<std::string>{"gpu"});
  EXPECT_FALSE(store_->GetNode("b")->has_value());
}

TEST_F(StoreTest, HeartbeatsBatchAndNeverMoveBackwards) {
  ASSERT_TRUE(store_->InsertNode(MakeNode("a")).ok());
  std::vector<Store::HeartbeatUpdate> ups = {{"a", 5000}, {"missing", 7000}};
  ASSERT_TRUE(store_->UpdateHeartbeats(ups).ok());
  std::vector<Store::HeartbeatUpdate> older = {{"a", 4000}};
  ASSERT_TRUE(store_->UpdateHeartbeats(older).ok());
  EXPECT_EQ((*store_->GetNode("a"))->last_heartbeat_ms, 5000);
}

TEST_F(StoreTest, DecommissionRemovesNodeAndRevokesInOneStep) {
  ASSERT_TRUE(store_->InsertNode(MakeNode("a")).ok());
  ASSERT_TRUE(store_->DecommissionNode("a", {"abc", "a", 9, "test"}).ok());
  EXPECT_FALSE(store_->GetNode("a")->has_value());
  auto rev = store_->ListRevoked();
  ASSERT_EQ(rev->size(), 1u);
  EXPECT_EQ((*rev)[0].serial, "abc");
  EXPECT_EQ(store_->DecommissionNode("a", {"abc", "a", 9, "test"}).code(), Code::kNotFound);
}

TEST_F(StoreTest, EventsListNewestWindowOldestFirstAndPrune) {
  std::vector<NodeEvent> evs;
  for (int i = 0; i < 10; ++i) evs.push_back({0, "a", i * 100, "t", std::to_string(i)});
  ASSERT_TRUE(store_->AppendEvents(evs).ok());
  auto last3 = store_->ListEvents("a", 3);
  ASSERT_EQ(last3->size(), 3u);
  EXPECT_EQ((*last3)[0].message, "7");
  EXPECT_EQ((*last3)[2].message, "9");
  ASSERT_TRUE(store_->PruneEvents(500).ok());
  EXPECT_EQ(store_->ListEvents("a", 100)->size(), 5u);
}

TEST_F(StoreTest, TokensAndMeta) {
  BootstrapToken t{"abc123", "hash", "d", 1, 2, false, 0};
  ASSERT_TRUE(store_->InsertToken(t).ok());
  ASSERT_TRUE(store_->CountTokenUse("abc123").ok());
  ASSERT_TRUE(store_->RevokeToken("abc123").ok());
  EXPECT_EQ(store_->RevokeToken("nope").code(), Code::kNotFound);
  auto got = store_->GetToken("abc123");
  EXPECT_TRUE((*got)->revoked);
  EXPECT_EQ((*got)->uses, 1);
  ASSERT_TRUE(store_->PutMeta("k", "v1").ok());
  ASSERT_TRUE(store_->PutMeta("k", "v2").ok());
  EXPECT_EQ(**store_->GetMeta("k"), "v2");
  EXPECT_FALSE(store_->GetMeta("none")->has_value());
}

TEST_F(StoreTest, UpgradingAVersion1DatabaseKeepsItsData) {
  store_.reset();
  std::string path = (dir_ / "v1.db").string();
  {
    // A database as the first release left it: schema version 1 with a node, a token, meta.
    auto db = sql::Db::Open(path);
    ASSERT_TRUE(db.ok());
    ASSERT_TRUE(db->Migrate(SqliteStore::Migrations().first(1)).ok());
    ASSERT_EQ(*db->SchemaVersion(), 1);
    ASSERT_TRUE(db->Exec("INSERT INTO nodes VALUES ('edge-1', 'server', 'eu', '{\"a\":\"b\"}', "
                         "'[]', '{}', '{}', '10.0.0.1', '[]', '0.1.0', 'h', 'os', 'arch', 'ff', "
                         "9, 1000, 2000, 'online', 1000)")
                    .ok());
    ASSERT_TRUE(
        db->Exec("INSERT INTO bootstrap_tokens VALUES ('abc123', 'hash', 'd', 1, 0, 0, 2)").ok());
    ASSERT_TRUE(db->Exec("INSERT INTO meta VALUES ('admin_token_sha256', 'x')").ok());
  }
  auto s = SqliteStore::Open(path);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  store_ = std::move(s).value();
  auto n = store_->GetNode("edge-1");
  ASSERT_TRUE(n.ok() && n->has_value()) << n.status().ToString();
  EXPECT_EQ((*n)->labels.at("a"), "b");
  EXPECT_EQ((*n)->last_heartbeat_ms, 2000);
  EXPECT_EQ((*n)->desired_version, 0u);
  EXPECT_EQ((*n)->applied_version, 0u);
  EXPECT_EQ((*store_->GetToken("abc123"))->uses, 2);
  EXPECT_EQ(**store_->GetMeta("admin_token_sha256"), "x");
  // The new tables work on the upgraded database.
  Device d;
  d.name = "d1";
  d.node = "edge-1";
  ASSERT_TRUE(store_->InsertDevice(d).ok());
  EXPECT_EQ((*store_->GetNode("edge-1"))->desired_version, 1u);
  auto version = sql::Db::Open(path)->SchemaVersion();
  EXPECT_EQ(*version, SqliteStore::Migrations().back().version);
}

TEST_F(StoreTest, MigrationsAreNumberedUpward) {
  int last = 0;
  for (const auto& m : SqliteStore::Migrations()) {
    EXPECT_GT(m.version, last);
    last = m.version;
  }
}

}  // namespace
}  // namespace verge::cloud
