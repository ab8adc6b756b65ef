// A fresh SqliteStore in a directory of its own per test (a file, not :memory:, so that the
// telemetry writer and reader get connections of their own), removed afterwards.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>

#include "cloud/store_sqlite.h"

namespace verge::cloud {

class SqliteStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("verge-store-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->test_suite_name() + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    Reopen();
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  // Closes the store and opens the same file again.
  void Reopen() {
    store_.reset();
    auto s = SqliteStore::Open((dir_ / "verge.db").string());
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(s).value();
  }

  std::filesystem::path dir_;
  std::unique_ptr<SqliteStore> store_;
};

}  // namespace verge::cloud
