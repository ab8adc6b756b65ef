#include "common/sqlite.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace verge::sql {
namespace {

TEST(Sqlite, MigrationsApplyOnceInOrder) {
  auto db = Db::Open(":memory:");
  ASSERT_TRUE(db.ok());
  Migration v1[] = {{1, "CREATE TABLE a (x INTEGER)"}};
  ASSERT_TRUE(db->Migrate(v1).ok());
  EXPECT_EQ(*db->SchemaVersion(), 1);
  ASSERT_TRUE(db->Migrate(v1).ok()) << "re-running is a no-op";
  Migration v2[] = {{1, "CREATE TABLE a (x INTEGER)"}, {2, "ALTER TABLE a ADD COLUMN y TEXT"}};
  ASSERT_TRUE(db->Migrate(v2).ok());
  EXPECT_EQ(*db->SchemaVersion(), 2);
  ASSERT_TRUE(db->Exec("INSERT INTO a VALUES (1, 'y')").ok());
}

TEST(Sqlite, FailedMigrationRollsBackAndKeepsVersion) {
  auto db = Db::Open(":memory:");
  Migration bad[] = {{1, "CREATE TABLE a (x INTEGER)"},
                     {2, "CREATE TABLE b (y); SELECT nonsense("}};
  EXPECT_FALSE(db->Migrate(bad).ok());
  EXPECT_EQ(*db->SchemaVersion(), 1);
  auto st = db->Prepare("SELECT count(*) FROM sqlite_master WHERE name='b'");
  ASSERT_TRUE(st.ok());
  ASSERT_TRUE(*st->Step());
  EXPECT_EQ(st->Int(0), 0) << "the half-applied migration was rolled back";
}

TEST(Sqlite, RefusesADowngrade) {
  auto db = Db::Open(":memory:");
  Migration v2[] = {{1, "CREATE TABLE a (x)"}, {2, "CREATE TABLE b (y)"}};
  ASSERT_TRUE(db->Migrate(v2).ok());
  Migration v1[] = {{1, "CREATE TABLE a (x)"}};
  auto st = db->Migrate(v1);
  EXPECT_EQ(st.code(), Code::kFailedPrecondition);
}

TEST(Sqlite, GarbageFileIsAClearError) {
  auto path = std::filesystem::temp_directory_path() / "verge-sqlite-garbage.db";
  {
    std::ofstream f(path);
    f << std::string(8192, 'x');
  }
  auto db = Db::Open(path.string());
  ASSERT_FALSE(db.ok());
  EXPECT_NE(db.status().message().find(path.string()), std::string::npos);
  std::filesystem::remove(path);
}

TEST(Sqlite, TransactionRollsBackUnlessCommitted) {
  auto db = Db::Open(":memory:");
  ASSERT_TRUE(db->Exec("CREATE TABLE t (x)").ok());
  {
    auto txn = Txn::Begin(*db);
    ASSERT_TRUE(db->Exec("INSERT INTO t VALUES (1)").ok());
  }
  {
    auto txn = Txn::Begin(*db);
    ASSERT_TRUE(db->Exec("INSERT INTO t VALUES (2)").ok());
    ASSERT_TRUE(txn->Commit().ok());
  }
  auto st = db->Prepare("SELECT group_concat(x) FROM t");
  ASSERT_TRUE(*st->Step());
  EXPECT_EQ(st->Text(0), "2");
}

}  // namespace
}  // namespace verge::sql
