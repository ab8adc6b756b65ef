// vergectl run in-process (arguments, environment, stdin in; exit code, stdout, stderr out),
// and a real verge-cloud in the test process for commands that talk to one.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "cloud/server.h"
#include "common/clock.h"
#include "common/fs.h"
#include "ctl/commands.h"

namespace verge::ctl {

struct RunResult {
  int code;
  std::string out;
  std::string err;
};

// By default the environment has no config anywhere.
inline RunResult RunCtl(std::vector<std::string> args,
                        const std::map<std::string, std::string>& env = {{"HOME", "/nonexistent"}},
                        const std::string& stdin_text = "") {
  args.insert(args.begin(), "vergectl");
  std::vector<const char*> argv;
  argv.reserve(args.size());
  for (const auto& a : args) argv.push_back(a.c_str());
  EnvLookup lookup = [env](std::string_view name) -> std::optional<std::string> {
    auto it = env.find(std::string(name));
    if (it == env.end()) return std::nullopt;
    return it->second;
  };
  std::ostringstream out, err;
  std::istringstream in(stdin_text);
  int code = Run(static_cast<int>(argv.size()), argv.data(), lookup, out, err, in);
  return {code, out.str(), err.str()};
}

// A verge-cloud on loopback with the nodes `Nodes()` names joined, and vergectl pointed at it
// through the vergectl.yaml it wrote.
class AgainstCloud : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "vergectl-cloud-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    cloud::CloudConfig cfg;
    cfg.data_dir = dir_;
    cfg.api_listen = "127.0.0.1:0";
    cfg.link_listen = "127.0.0.1:0";
    cfg.io_threads = 1;
    cfg.log_level = "warn";
    server_ = std::make_unique<cloud::Server>(cfg, clock_);
    auto st = server_->Start();
    ASSERT_TRUE(st.ok()) << st.message();
    for (const std::string& n : Nodes()) {
      ASSERT_TRUE(server_->registry().AddJoined(n, "01", 0, "127.0.0.1").ok());
    }
  }
  void TearDown() override {
    if (server_) server_->Stop();
    server_.reset();
    std::filesystem::remove_all(dir_);
  }
  virtual std::vector<std::string> Nodes() const { return {"edge-1"}; }

  RunResult Ctl(std::vector<std::string> args, const std::string& stdin_text = "") {
    args.push_back("--config");
    args.push_back(dir_ + "/vergectl.yaml");
    return RunCtl(std::move(args), {{"HOME", "/nonexistent"}}, stdin_text);
  }
  std::string WriteFile(const std::string& name, const std::string& text) {
    std::string path = dir_ + "/" + name;
    EXPECT_TRUE(WriteFileAtomic(path, text).ok());
    return path;
  }

  SystemClock clock_;
  std::string dir_;
  std::unique_ptr<cloud::Server> server_;
};

}  // namespace verge::ctl
