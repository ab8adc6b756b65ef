#include "ctl/client_config.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <map>

#include "common/fs.h"

namespace verge::ctl {
namespace {

constexpr char kPem[] = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

std::string ConfigText(const std::string& server, const std::string& token) {
  return fmt::format(
      "server: {}\ntoken: {}\nca: |\n  -----BEGIN CERTIFICATE-----\n  MIIB\n"
      "  -----END CERTIFICATE-----\n",
      server, token);
}

ConfigFlags WithConfig(const std::string& path) {
  ConfigFlags flags;
  flags.config_path = path;
  return flags;
}

class ClientConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "vergectl-test-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Write(const std::string& name, const std::string& text) {
    std::string path = dir_ + "/" + name;
    std::filesystem::create_directories(std::filesystem::path(path).parent_path());
    EXPECT_TRUE(WriteFileAtomic(path, text).ok());
    return path;
  }

  // A fake environment; HOME points into the test directory unless a test overrides it.
  EnvLookup Env() {
    return [this](std::string_view name) -> std::optional<std::string> {
      if (auto it = env_.find(std::string(name)); it != env_.end()) return it->second;
      if (name == "HOME") return dir_ + "/home";
      return std::nullopt;
    };
  }

  std::string dir_;
  std::map<std::string, std::string> env_;
};

TEST_F(ClientConfigTest, ReadsTheFileVergeCloudWrites) {
  auto cfg = ParseClientConfig(ConfigText("https://127.0.0.1:8443", "vadm_abc"), "x.yaml");
  ASSERT_TRUE(cfg.ok()) << cfg.status().message();
  EXPECT_EQ(cfg->server, "https://127.0.0.1:8443");
  EXPECT_EQ(cfg->token, "vadm_abc");
  EXPECT_EQ(cfg->ca_pem, kPem);
  EXPECT_EQ(cfg->token_source, "x.yaml");
}

TEST_F(ClientConfigTest, RejectsUnknownKeysAndMalformedYaml) {
  auto typo = ParseClientConfig("server: https://h:1\ntokn: x\n", "c.yaml");
  ASSERT_FALSE(typo.ok());
  EXPECT_NE(typo.status().message().find("unknown key \"tokn\""), std::string::npos);

  auto broken = ParseClientConfig("server: [x\n", "c.yaml");
  ASSERT_FALSE(broken.ok());
  EXPECT_EQ(broken.status().message().rfind("c.yaml:", 0), 0u) << broken.status().message();

  EXPECT_FALSE(ParseClientConfig("- a\n- b\n", "c.yaml").ok());
  EXPECT_FALSE(ParseClientConfig("server: {a: b}\n", "c.yaml").ok());
  EXPECT_TRUE(ParseClientConfig("", "c.yaml").ok()) << "fields may come from elsewhere";
}

TEST_F(ClientConfigTest, ReadsCaFileRelativeToTheConfig) {
  Write("conf/ca.pem", kPem);
  std::string path = Write("conf/vergectl.yaml", "server: https://h:1\ntoken: t\ncaFile: ca.pem\n");
  auto cfg = ParseClientConfig(*ReadFile(path), path);
  ASSERT_TRUE(cfg.ok()) << cfg.status().message();
  EXPECT_EQ(cfg->ca_pem, kPem);

  auto both = ParseClientConfig("ca: x\ncaFile: ca.pem\n", path);
  ASSERT_FALSE(both.ok());
  EXPECT_NE(both.status().message().find("not both"), std::string::npos);

  auto missing = ParseClientConfig("caFile: nope.pem\n", path);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("nope.pem"), std::string::npos);
}

TEST_F(ClientConfigTest, WithoutAnyFileSaysHowToGetOne) {
  auto cfg = LoadClientConfig({}, Env());
  ASSERT_FALSE(cfg.ok());
  EXPECT_NE(cfg.status().message().find("no config: pass --config DIR/vergectl.yaml, set "
                                        "VERGE_CONFIG, or create ~/.verge/config"),
            std::string::npos)
      << cfg.status().message();
}

TEST_F(ClientConfigTest, FindsTheFileFlagThenEnvThenHome) {
  std::string home = Write("home/.verge/config", ConfigText("https://home:1", "t-home"));
  std::string env_file = Write("env.yaml", ConfigText("https://env:1", "t-env"));
  std::string flag_file = Write("flag.yaml", ConfigText("https://flag:1", "t-flag"));

  EXPECT_EQ(LoadClientConfig({}, Env())->path, home);
  env_["VERGE_CONFIG"] = env_file;
  EXPECT_EQ(LoadClientConfig({}, Env())->path, env_file);
  EXPECT_EQ(LoadClientConfig(WithConfig(flag_file), Env())->path, flag_file);
  EXPECT_EQ(LoadClientConfig(WithConfig(flag_file), Env())->server, "https://flag:1");
}

TEST_F(ClientConfigTest, AMissingNamedFileIsAnErrorNotAFallback) {
  Write("home/.verge/config", ConfigText("https://home:1", "t"));
  auto flag = LoadClientConfig(WithConfig(dir_ + "/nope.yaml"), Env());
  ASSERT_FALSE(flag.ok());
  EXPECT_NE(flag.status().message().find("nope.yaml"), std::string::npos);

  env_["VERGE_CONFIG"] = dir_ + "/gone.yaml";
  auto env = LoadClientConfig({}, Env());
  ASSERT_FALSE(env.ok());
  EXPECT_NE(env.status().message().find("$VERGE_CONFIG"), std::string::npos);
  EXPECT_NE(env.status().message().find("gone.yaml"), std::string::npos);
}

TEST_F(ClientConfigTest, FlagsBeatEnvironmentWhichBeatsTheFile) {
  std::string path = Write("c.yaml", ConfigText("https://file:1", "t-file"));
  ConfigFlags flags = WithConfig(path);

  auto file = LoadClientConfig(flags, Env());
  ASSERT_TRUE(file.ok()) << file.status().message();
  EXPECT_EQ(file->server, "https://file:1");
  EXPECT_EQ(file->token, "t-file");

  env_["VERGE_SERVER"] = "https://env:2";
  env_["VERGE_TOKEN"] = " t-env\n";
  auto env = LoadClientConfig(flags, Env());
  ASSERT_TRUE(env.ok()) << env.status().message();
  EXPECT_EQ(env->server, "https://env:2");
  EXPECT_EQ(env->token, "t-env");
  EXPECT_EQ(env->token_source, "$VERGE_TOKEN");
  EXPECT_EQ(env->ca_pem, kPem) << "the CA still comes from the file";

  flags.server = "https://flag:3";
  flags.token = "t-flag";
  auto flag = LoadClientConfig(flags, Env());
  ASSERT_TRUE(flag.ok()) << flag.status().message();
  EXPECT_EQ(flag->server, "https://flag:3");
  EXPECT_EQ(flag->token, "t-flag");
  EXPECT_EQ(flag->token_source, "--token");
}

TEST_F(ClientConfigTest, EmptyEnvironmentVariablesCountAsUnset) {
  std::string path = Write("c.yaml", ConfigText("https://file:1", "t-file"));
  env_["VERGE_TOKEN"] = "";
  env_["VERGE_SERVER"] = "  ";
  auto cfg = LoadClientConfig(WithConfig(path), Env());
  ASSERT_TRUE(cfg.ok()) << cfg.status().message();
  EXPECT_EQ(cfg->token, "t-file");
  EXPECT_EQ(cfg->server, "https://file:1");
}

TEST_F(ClientConfigTest, ReportsEveryMissingFieldAtOnce) {
  std::string path = Write("c.yaml", "server: http://plain:80\n");
  auto cfg = LoadClientConfig(WithConfig(path), Env());
  ASSERT_FALSE(cfg.ok());
  const std::string& msg = cfg.status().message();
  EXPECT_NE(msg.find("https://"), std::string::npos) << msg;
  EXPECT_NE(msg.find("no token"), std::string::npos) << msg;
  EXPECT_NE(msg.find("no CA"), std::string::npos) << msg;
}

TEST_F(ClientConfigTest, RejectsACaThatIsNotPem) {
  std::string path = Write("c.yaml", "server: https://h:1\ntoken: t\nca: not a certificate\n");
  auto cfg = LoadClientConfig(WithConfig(path), Env());
  ASSERT_FALSE(cfg.ok());
  EXPECT_NE(cfg.status().message().find("not a PEM certificate"), std::string::npos);
}

}  // namespace
}  // namespace verge::ctl
