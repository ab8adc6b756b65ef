#include "ctl/commands.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <sstream>

#include "common/fs.h"
#include "common/pki.h"
#include "ctl_harness.h"

namespace verge::ctl {
namespace {

TEST(LabelArgs, SetsEmptiesAndRemovesLikeKubectl) {
  auto labels = ParseLabelArgs({"zone=z1", "tier=", "old-", "k8s.io/role=edge", "url=a=b"});
  ASSERT_TRUE(labels.ok()) << labels.status().message();
  EXPECT_EQ(*labels, Json::parse(R"({"zone":"z1","tier":"","old":null,"k8s.io/role":"edge",
                                     "url":"a=b"})"));
}

TEST(LabelArgs, RejectsWhatItCannotRead) {
  for (const std::vector<std::string>& bad : std::vector<std::vector<std::string>>{
           {"plain"}, {"-"}, {"=v"}, {"a=1", "a-"}, {"a=1", "a=2"}, {}}) {
    auto labels = ParseLabelArgs(bad);
    EXPECT_FALSE(labels.ok()) << (bad.empty() ? "(none)" : bad[0]);
    EXPECT_EQ(labels.status().code(), Code::kInvalidArgument);
  }
  EXPECT_NE(ParseLabelArgs({"plain"}).status().message().find("KEY=VALUE"), std::string::npos);
}

TEST(Run, VersionNeedsNoConfig) {
  auto r = RunCtl({"version"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("vergectl ", 0), 0u) << r.out;
  auto j = RunCtl({"version", "-o", "json"});
  EXPECT_EQ(j.code, 0) << j.err;
  EXPECT_TRUE(Json::parse(j.out).contains("clientVersion")) << j.out;
}

TEST(Run, UsageErrorsExitTwo) {
  EXPECT_EQ(RunCtl({}).code, 2);
  EXPECT_EQ(RunCtl({"nodes"}).code, 2);
  EXPECT_EQ(RunCtl({"nodes", "get"}).code, 2);
  EXPECT_EQ(RunCtl({"-o", "xml", "version"}).code, 2);
  EXPECT_EQ(RunCtl({"nodes", "list", "--status", "sleepy"}).code, 2);
  EXPECT_EQ(RunCtl({"nodes", "events", "n1", "--limit", "0"}).code, 2);
  EXPECT_EQ(RunCtl({"token", "create", "--ttl", "soon"}).code, 2);
  auto label = RunCtl({"nodes", "label", "n1", "oops"});
  EXPECT_EQ(label.code, 2);
  EXPECT_NE(label.err.find("KEY=VALUE"), std::string::npos) << label.err;
  EXPECT_EQ(RunCtl({"--help"}).code, 0);
}

TEST(Run, MissingConfigExitsOneWithAHint) {
  auto r = RunCtl({"nodes", "list"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err.rfind("vergectl: no config: pass --config", 0), 0u) << r.err;
  EXPECT_TRUE(r.out.empty());
}

TEST(Run, GlobalOptionsWorkBeforeAndAfterTheSubcommand) {
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"--config", "/nonexistent/a.yaml", "-o", "json", "nodes", "list"},
           {"nodes", "list", "--config", "/nonexistent/a.yaml", "-o", "json"},
           {"nodes", "--config", "/nonexistent/a.yaml", "get", "n1"},
           {"token", "revoke", "abc", "--config=/nonexistent/a.yaml"}}) {
    auto r = RunCtl(args);
    EXPECT_EQ(r.code, 1) << args[0] << " " << r.err;
    EXPECT_NE(r.err.find("/nonexistent/a.yaml"), std::string::npos) << r.err;
  }
  auto yaml = RunCtl({"version", "-o", "yaml"});
  EXPECT_EQ(yaml.out.rfind("clientVersion: ", 0), 0u) << yaml.out;
}

class RunWithConfig : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "vergectl-run-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    auto ca = pki::CertificateAuthority::Create("test CA", 1);
    ASSERT_TRUE(ca.ok()) << ca.status().message();
    ca_pem_ = ca->cert_pem();
    ASSERT_TRUE(WriteFileAtomic(dir_ + "/ca.pem", ca_pem_).ok());
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // A loopback port that was free a moment ago, so connecting to it is refused.
  static int ClosedPort() {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    socklen_t len = sizeof addr;
    EXPECT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
    ::close(fd);
    return ntohs(addr.sin_port);
  }

  std::string dir_;
  std::string ca_pem_;
};

TEST_F(RunWithConfig, SaysWhichServerCouldNotBeReached) {
  std::string server = fmt::format("https://127.0.0.1:{}", ClosedPort());
  std::string path = dir_ + "/vergectl.yaml";
  ASSERT_TRUE(
      WriteFileAtomic(path, fmt::format("server: {}\ntoken: t\ncaFile: ca.pem\n", server)).ok());
  auto r = RunCtl({"status", "--config", path});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err.rfind("vergectl: cannot reach verge-cloud at " + server, 0), 0u) << r.err;

  // $VERGE_SERVER overrides the file's server, and the message names the one that was used.
  std::string other = fmt::format("https://127.0.0.1:{}", ClosedPort());
  auto env = RunCtl({"nodes", "list"}, {{"VERGE_CONFIG", path}, {"VERGE_SERVER", other}});
  EXPECT_EQ(env.code, 1);
  EXPECT_NE(env.err.find(other), std::string::npos) << env.err;
}

}  // namespace
}  // namespace verge::ctl
