#include "node/runtime/log_files.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "common/fs.h"

namespace verge::node::runtime {
namespace {

class LogFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/verge-logs-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    log_ = dir_ + "/output.log";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  void Write(const std::string& path, const std::string& data) {
    ASSERT_TRUE(WriteFileAtomic(path, data).ok());
  }
  // Appends the way a workload does: its own O_APPEND descriptor.
  void Append(const std::string& data) {
    int fd = open(log_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
    close(fd);
  }
  std::string Read(const std::string& path) {
    auto r = ReadFile(path);
    return r.ok() ? *r : "<missing>";
  }

  std::string dir_;
  std::string log_;
};

TEST_F(LogFilesTest, RotatesOnlyPastTheSizeLimit) {
  LogRotator rotator({.max_bytes = 10, .keep = 2});
  auto missing = rotator.MaybeRotate(log_);
  ASSERT_TRUE(missing.ok());
  EXPECT_FALSE(*missing);

  Append("0123456789");  // exactly the limit
  auto small = rotator.MaybeRotate(log_);
  ASSERT_TRUE(small.ok());
  EXPECT_FALSE(*small);

  Append("x");
  auto big = rotator.MaybeRotate(log_);
  ASSERT_TRUE(big.ok()) << big.status().ToString();
  EXPECT_TRUE(*big);
  EXPECT_EQ(Read(log_), "");
  EXPECT_EQ(Read(log_ + ".1"), "0123456789x");
}

TEST_F(LogFilesTest, KeepsTheNewestOlderFilesOnly) {
  LogRotator rotator({.max_bytes = 1, .keep = 2});
  for (std::string gen : {"first\n", "second\n", "third\n"}) {
    Append(gen);
    ASSERT_TRUE(rotator.Rotate(log_).ok());
  }
  EXPECT_EQ(Read(log_ + ".1"), "third\n");
  EXPECT_EQ(Read(log_ + ".2"), "second\n");
  EXPECT_FALSE(FileExists(log_ + ".3"));
  EXPECT_FALSE(FileExists(log_ + ".rotating"));
}

TEST_F(LogFilesTest, AppendingWriterContinuesAtTheStartAfterTruncation) {
  int fd = open(log_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, "before\n", 7), 7);
  ASSERT_TRUE(LogRotator().Rotate(log_).ok());
  ASSERT_EQ(write(fd, "after\n", 6), 6);
  close(fd);
  EXPECT_EQ(Read(log_), "after\n");  // no hole of zeros where "before" was
  EXPECT_EQ(Read(log_ + ".1"), "before\n");
}

TEST_F(LogFilesTest, RefusesToRotateThroughASymlink) {
  std::string victim = dir_ + "/victim";
  Write(victim, "precious");
  ASSERT_EQ(symlink(victim.c_str(), log_.c_str()), 0);
  Status st = LogRotator({.max_bytes = 1, .keep = 3}).Rotate(log_);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find(log_), std::string::npos) << st.message();
  EXPECT_EQ(Read(victim), "precious");
}

TEST_F(LogFilesTest, TailReadsAcrossRotatedFilesAsOneStream) {
  Write(log_ + ".2", "l1\nl2\n");
  Write(log_ + ".1", "l3\nl4 par");  // a rotation split this line
  Write(log_, "tial\nl5\n");
  auto tail = [&](size_t n) {
    auto r = ReadTail(log_, n);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : "";
  };
  EXPECT_EQ(tail(0), "");
  EXPECT_EQ(tail(1), "l5\n");
  EXPECT_EQ(tail(2), "l4 partial\nl5\n");
  EXPECT_EQ(tail(3), "l3\nl4 partial\nl5\n");
  EXPECT_EQ(tail(100), "l1\nl2\nl3\nl4 partial\nl5\n");
}

TEST_F(LogFilesTest, TailCountsAnUnterminatedLastLine) {
  Write(log_, "a\nb\nc");
  auto r = ReadTail(log_, 2);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, "b\nc");
}

TEST_F(LogFilesTest, TailOfALargeFileReadsOnlyTheEnd) {
  std::string data;
  for (int i = 1; i <= 20000; ++i) data += "line " + std::to_string(i) + "\n";
  Write(log_, data);
  auto r = ReadTail(log_, 3);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, "line 19998\nline 19999\nline 20000\n");
  auto capped = ReadTail(log_, 20000, 3, /*max_bytes=*/100);
  ASSERT_TRUE(capped.ok());
  EXPECT_EQ(capped->size(), 100u);
  EXPECT_EQ(capped->substr(capped->size() - 11), "line 20000\n");
}

TEST_F(LogFilesTest, TailOfAMissingLogIsNotFound) {
  auto r = ReadTail(log_, 10);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kNotFound);
}

TEST_F(LogFilesTest, FollowerReadsWhatIsAppended) {
  LogFollower f(log_, 0);
  auto none = f.Read();
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(*none, "");  // not created yet
  Append("abc");
  EXPECT_EQ(*f.Read(), "abc");
  EXPECT_EQ(*f.Read(), "");
  Append("def");
  EXPECT_EQ(*f.Read(), "def");
  EXPECT_EQ(f.offset(), 6u);
}

TEST_F(LogFilesTest, FollowerCatchesUpAcrossACopyTruncateRotation) {
  Append("0123456789");
  LogFollower f(log_, 0);
  EXPECT_EQ(*f.Read(), "0123456789");
  Append("unread\n");
  ASSERT_TRUE(LogRotator().Rotate(log_).ok());
  Append("new\n");
  EXPECT_EQ(*f.Read(), "unread\nnew\n");
  EXPECT_EQ(f.offset(), 4u);
}

TEST_F(LogFilesTest, FollowerNoticesARotationEvenWhenTheFileGrewBack) {
  Append("abc\n");
  LogFollower f(log_, 0);
  EXPECT_EQ(*f.Read(), "abc\n");
  Append("tail\n");
  ASSERT_TRUE(LogRotator().Rotate(log_).ok());
  Append("a line longer than the old offset\n");
  EXPECT_EQ(*f.Read(), "tail\na line longer than the old offset\n");
}

TEST_F(LogFilesTest, FollowerStartsAReplacedFileFromItsBeginning) {
  Append("old\n");
  LogFollower f(log_, 0);
  EXPECT_EQ(*f.Read(), "old\n");
  Append("rest\n");
  ASSERT_EQ(rename(log_.c_str(), (log_ + ".1").c_str()), 0);  // rename rotation
  Append("fresh\n");
  EXPECT_EQ(*f.Read(), "rest\nfresh\n");
}

TEST_F(LogFilesTest, FollowerLimitsOneRead) {
  Append("0123456789");
  LogFollower f(log_, 2);
  EXPECT_EQ(*f.Read(3), "234");
  EXPECT_EQ(*f.Read(100), "56789");
}

}  // namespace
}  // namespace verge::node::runtime
