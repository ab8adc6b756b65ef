#include "node/runtime/cgroup.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <optional>
#include <string>

#include "common/fs.h"

extern char** environ;

namespace verge::node::runtime {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

// A fake cgroup filesystem: plain directories and files where the kernel would have them.
class FakeTreeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/verge-cgfake-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    base_ = tmpl;
    paths_.root = base_ + "/cg";
    paths_.self_cgroup = base_ + "/self_cgroup";
    paths_.mountinfo = base_ + "/mountinfo";
    fs::create_directories(paths_.root);
  }
  void TearDown() override { fs::remove_all(base_); }

  void Put(const std::string& path, const std::string& content) {
    fs::create_directories(fs::path(path).parent_path());
    ASSERT_TRUE(WriteFileAtomic(path, content).ok()) << path;
  }
  std::string Get(const std::string& path) {
    auto r = ReadFile(path);
    return r.ok() ? *r : "<missing " + path + ">";
  }

  // A v2 tree with the agent in /agent.slice and the files of workload w1 in place.
  std::string MakeV2(const std::string& own_controllers) {
    Put(paths_.root + "/cgroup.controllers", "cpu io memory pids\n");
    std::string own = paths_.root + "/agent.slice";
    for (std::string level : {"", "/verge", "/verge/node-a"}) {
      Put(own + level + "/cgroup.controllers", own_controllers + "\n");
      Put(own + level + "/cgroup.subtree_control", "");
    }
    std::string w1 = own + "/verge/node-a/w1";
    for (std::string f : {"cpu.max", "memory.max", "memory.swap.max", "pids.max", "cgroup.procs"}) {
      Put(fmt::format("{}/{}", w1, f), "");
    }
    Put(w1 + "/cpu.stat", "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n");
    Put(w1 + "/memory.current", "4096\n");
    Put(w1 + "/memory.events", "low 0\nhigh 0\nmax 7\noom 2\noom_kill 1\noom_group_kill 0\n");
    return w1;
  }

  std::string base_;
  CgroupPaths paths_;
};

TEST_F(FakeTreeTest, RejectsParentsThatLeaveTheAgentsCgroup) {
  Put(paths_.self_cgroup, "0::/\n");
  Put(paths_.root + "/cgroup.controllers", "cpu memory\n");
  for (std::string bad : {"", "/verge", "verge/../x", "verge/./x", "verge//x", "verge/"}) {
    auto m = CgroupManager::Open(bad, paths_);
    ASSERT_FALSE(m.ok()) << bad;
    EXPECT_EQ(m.status().code(), Code::kInvalidArgument) << bad;
  }
}

TEST_F(FakeTreeTest, OwnsOnlyDirectChildrenOfTheParent) {
  Put(paths_.self_cgroup, "0::/\n");
  Put(paths_.root + "/cgroup.controllers", "cpu memory\n");
  auto m = CgroupManager::Open("verge/node-a", paths_);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->PathOf("w1"), "verge/node-a/w1");
  EXPECT_TRUE(m->Owns("verge/node-a/w1"));
  for (std::string bad : {"verge/node-a", "verge/node-a/", "verge/node-ab/w1", "verge/node-a/a/b",
                          "verge/node-a/..", "other/w1", "verge/node-a/verge-agent"}) {
    EXPECT_FALSE(m->Owns(bad)) << bad;
  }
}

TEST_F(FakeTreeTest, V2EnablesControllersDownTheChainAndWritesLimits) {
  std::string w1 = MakeV2("cpu memory pids");
  Put(paths_.self_cgroup, "0::/agent.slice\n");
  auto m = CgroupManager::Open("verge/node-a", paths_);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_TRUE(m->v2());
  EXPECT_EQ(m->DirOf("verge/node-a/w1", "memory"), w1);

  ASSERT_TRUE(m->Create("verge/node-a/w1",
                        {.cpu_millicores = 250, .memory_bytes = 32 << 20, .pids_max = 100})
                  .ok());
  std::string own = paths_.root + "/agent.slice";
  // "No internal processes": every level above the workload delegates the controllers.
  EXPECT_EQ(Get(own + "/cgroup.subtree_control"), "+cpu +memory +pids");
  EXPECT_EQ(Get(own + "/verge/cgroup.subtree_control"), "+cpu +memory +pids");
  EXPECT_EQ(Get(own + "/verge/node-a/cgroup.subtree_control"), "+cpu +memory +pids");
  EXPECT_EQ(Get(w1 + "/cpu.max"), "25000 100000");
  EXPECT_EQ(Get(w1 + "/memory.max"), "33554432");
  EXPECT_EQ(Get(w1 + "/memory.swap.max"), "0");
  EXPECT_EQ(Get(w1 + "/pids.max"), "100");

  auto u = m->Usage("verge/node-a/w1");
  ASSERT_TRUE(u.ok()) << u.status().ToString();
  EXPECT_EQ(u->cpu_usage_ns, 1500000u);
  EXPECT_EQ(u->memory_bytes, 4096u);
  EXPECT_EQ(u->memory_limit_bytes, 33554432u);
  EXPECT_EQ(u->oom_kills, 1u);
  EXPECT_FALSE(u->oom_kills_estimated);

  ASSERT_TRUE(m->Create("verge/node-a/w1", {}).ok());
  EXPECT_EQ(Get(w1 + "/cpu.max"), "max 100000");
  EXPECT_EQ(Get(w1 + "/memory.max"), "max");
  EXPECT_EQ(Get(w1 + "/memory.swap.max"), "max");
  EXPECT_EQ(Get(w1 + "/pids.max"), "max");
}

TEST_F(FakeTreeTest, V2SkipsControllersAlreadyEnabledAndRefusesMissingOnes) {
  std::string w1 = MakeV2("cpu pids");
  Put(paths_.root + "/agent.slice/cgroup.subtree_control", "cpu pids\n");
  Put(paths_.self_cgroup, "0::/agent.slice\n");
  auto m = CgroupManager::Open("verge/node-a", paths_);
  ASSERT_TRUE(m.ok());
  EXPECT_FALSE(m->HasController("memory"));
  Status st = m->Create("verge/node-a/w1", {.cpu_millicores = 0, .memory_bytes = 1 << 20});
  EXPECT_EQ(st.code(), Code::kFailedPrecondition) << st.ToString();
  EXPECT_NE(st.message().find("memory"), std::string::npos);

  ASSERT_TRUE(m->Create("verge/node-a/w1", {.cpu_millicores = 1500}).ok());
  EXPECT_EQ(Get(paths_.root + "/agent.slice/cgroup.subtree_control"), "cpu pids\n");  // untouched
  EXPECT_EQ(Get(w1 + "/cpu.max"), "150000 100000");
}

TEST_F(FakeTreeTest, V2AgentInItsOwnLeafFindsTheSameWorkloads) {
  std::string w1 = MakeV2("cpu memory pids");
  Put(paths_.self_cgroup, "0::/agent.slice/verge-agent\n");
  auto m = CgroupManager::Open("verge/node-a", paths_);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->DirOf("verge/node-a/w1", "cpu"), w1);
}

TEST_F(FakeTreeTest, V1UsesEachControllersMountAndOwnCgroup) {
  // cpu and cpuacct co-mounted, memory at a mount point with a space, pids; the agent's memory
  // cgroup is not the root.
  std::string cpu = paths_.root + "/cpu,cpuacct";
  std::string mem = paths_.root + "/mem ory";
  std::string pids = paths_.root + "/pids";
  Put(paths_.mountinfo, "25 1 0:22 / " + paths_.root + " rw - tmpfs tmpfs rw\n" + "30 25 0:26 / " +
                            cpu + " rw,nosuid shared:9 - cgroup cgroup rw,cpu,cpuacct\n" +
                            "31 25 0:27 / " + paths_.root +
                            "/mem\\040ory rw - cgroup cgroup rw,memory\n" + "32 25 0:28 / " + pids +
                            " rw - cgroup cgroup rw,pids\n" + "33 25 0:29 / " + paths_.root +
                            "/unified rw - cgroup2 cgroup2 rw\n");
  Put(paths_.self_cgroup, "5:freezer:/\n3:pids:/\n2:memory:/session/abc\n1:cpu,cpuacct:/\n0::/\n");
  std::string cw = cpu + "/verge/node-a/w1";
  std::string mw = mem + "/session/abc/verge/node-a/w1";
  std::string pw = pids + "/verge/node-a/w1";
  for (std::string f : {"cpu.cfs_period_us", "cpu.cfs_quota_us"})
    Put(fmt::format("{}/{}", cw, f), "");
  Put(cw + "/cpuacct.usage", "777\n");
  Put(cw + "/cgroup.procs", "12\n13\n");
  for (std::string f : {"memory.limit_in_bytes", "memory.memsw.limit_in_bytes"}) {
    Put(fmt::format("{}/{}", mw, f), "");
  }
  Put(mw + "/memory.usage_in_bytes", "1000\n");
  Put(mw + "/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n");
  Put(mw + "/cgroup.procs", "13\n14\n");
  Put(pw + "/pids.max", "");
  Put(pw + "/cgroup.procs", "");

  auto m = CgroupManager::Open("verge/node-a", paths_);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_FALSE(m->v2());
  EXPECT_EQ(m->DirOf("verge/node-a/w1", "cpuacct"), cw);
  EXPECT_EQ(m->DirOf("verge/node-a/w1", "memory"), mw);
  EXPECT_EQ(m->ProcsFiles("verge/node-a/w1").size(), 3u);  // cpu,cpuacct counted once
  EXPECT_NE(m->Describe().find("cgroup v1"), std::string::npos);

  ASSERT_TRUE(m->Create("verge/node-a/w1",
                        {.cpu_millicores = 500, .memory_bytes = 32 << 20, .pids_max = 50})
                  .ok());
  EXPECT_EQ(Get(cw + "/cpu.cfs_period_us"), "100000");
  EXPECT_EQ(Get(cw + "/cpu.cfs_quota_us"), "50000");
  EXPECT_EQ(Get(mw + "/memory.limit_in_bytes"), "33554432");
  EXPECT_EQ(Get(mw + "/memory.memsw.limit_in_bytes"), "33554432");
  EXPECT_EQ(Get(pw + "/pids.max"), "50");

  auto pids_now = m->Pids("verge/node-a/w1");
  ASSERT_TRUE(pids_now.ok());
  EXPECT_EQ(*pids_now, (std::vector<pid_t>{12, 13, 14}));

  auto u = m->Usage("verge/node-a/w1");
  ASSERT_TRUE(u.ok()) << u.status().ToString();
  EXPECT_EQ(u->cpu_usage_ns, 777u);
  EXPECT_EQ(u->memory_bytes, 1000u);
  EXPECT_EQ(u->oom_kills, 2u);
  EXPECT_FALSE(u->oom_kills_estimated);

  // Kernels before 4.13: no oom_kill line, so the failure count stands in for it.
  Put(mw + "/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\n");
  Put(mw + "/memory.failcnt", "5\n");
  u = m->Usage("verge/node-a/w1");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->oom_kills, 1u);
  EXPECT_TRUE(u->oom_kills_estimated);

  auto children = m->Children();
  ASSERT_TRUE(children.ok());
  EXPECT_EQ(*children, std::vector<std::string>{"verge/node-a/w1"});
}

TEST_F(FakeTreeTest, NoCgroupsAtAllIsAClearError) {
  Put(paths_.mountinfo, "");
  Put(paths_.self_cgroup, "0::/\n");
  auto m = CgroupManager::Open("verge", paths_);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(m.status().message().find("no cgroup"), std::string::npos);
}

TEST_F(FakeTreeTest, WriteErrorsNameTheFileAndErrno) {
  MakeV2("cpu memory pids");
  Put(paths_.self_cgroup, "0::/agent.slice\n");
  fs::remove(paths_.root + "/agent.slice/verge/node-a/w1/cpu.max");
  auto m = CgroupManager::Open("verge/node-a", paths_);
  ASSERT_TRUE(m.ok());
  Status st = m->Create("verge/node-a/w1", {.cpu_millicores = 100});
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("w1/cpu.max"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("errno 2"), std::string::npos) << st.message();
}

// Gone, or a zombie waiting for its parent.
bool Dead(pid_t pid) {
  auto stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  if (!stat.ok()) return true;
  size_t paren = stat->rfind(')');
  return paren != std::string::npos && paren + 2 < stat->size() && (*stat)[paren + 2] == 'Z';
}

// The machine's real cgroups (root only).
class RealCgroupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root to create cgroups";
    auto m = CgroupManager::Open("verge-test-" + std::to_string(getpid()) + "/cg");
    if (!m.ok()) GTEST_SKIP() << "no usable cgroups: " << m.status().ToString();
    if (!m->HasController("memory") || !m->HasController("pids")) {
      GTEST_SKIP() << "needs the memory and pids controllers: " << m->Describe();
    }
    m_.emplace(std::move(*m));
  }
  void TearDown() override {
    if (m_) {
      auto children = m_->Children();
      if (children.ok()) {
        for (const auto& c : *children) EXPECT_TRUE(m_->Remove(c, milliseconds(5000)).ok());
      }
      EXPECT_TRUE(m_->RemoveParent().ok());
    }
  }

  // Starts args with stdin from a pipe; *release gets its write end.
  pid_t Spawn(const std::vector<std::string>& args, int* release = nullptr) {
    std::vector<char*> argv;
    argv.reserve(args.size() + 1);
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    int fds[2];
    EXPECT_EQ(pipe2(fds, O_CLOEXEC), 0);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[0], 0);
    pid_t pid = 0;
    EXPECT_EQ(posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ), 0);
    posix_spawn_file_actions_destroy(&actions);
    close(fds[0]);
    if (release != nullptr) {
      *release = fds[1];
    } else {
      close(fds[1]);
    }
    return pid;
  }
  size_t WaitForPids(const std::string& rel, size_t n) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    size_t have = 0;
    while (std::chrono::steady_clock::now() < deadline) {
      auto pids = m_->Pids(rel);
      have = pids.ok() ? pids->size() : 0;
      if (have >= n) break;
      usleep(10000);
    }
    return have;
  }

  std::optional<CgroupManager> m_;
};

TEST_F(RealCgroupTest, HoldsLimitsAndProcessesAndRemovesThemAll) {
  const std::string rel = m_->PathOf("w1");
  ASSERT_TRUE(
      m_->Create(rel, {.cpu_millicores = 200, .memory_bytes = 64 << 20, .pids_max = 20}).ok());
  EXPECT_TRUE(m_->Exists(rel));
  auto read = [&](const char* controller, const char* file) {
    auto r = ReadFile(m_->DirOf(rel, controller) + "/" + file);
    return r.ok() ? std::string(*r) : r.status().ToString();
  };
  if (m_->v2()) {
    EXPECT_EQ(read("cpu", "cpu.max"), "20000 100000\n");
    EXPECT_EQ(read("memory", "memory.max"), "67108864\n");
  } else {
    EXPECT_EQ(read("cpu", "cpu.cfs_quota_us"), "20000\n");
    EXPECT_EQ(read("memory", "memory.limit_in_bytes"), "67108864\n");
  }
  EXPECT_EQ(read("pids", "pids.max"), "20\n");

  // A shell with two background children: joining moves the shell; its children are born inside.
  int release = -1;
  pid_t sh = Spawn({"/bin/sh", "-c", "read x; sleep 1000 & sleep 1000 & wait"}, &release);
  ASSERT_GT(sh, 0);
  ASSERT_TRUE(m_->AddProcess(rel, sh).ok());
  ASSERT_EQ(write(release, "go\n", 3), 3);
  close(release);
  ASSERT_EQ(WaitForPids(rel, 3), 3u);
  auto inside = m_->Pids(rel);
  ASSERT_TRUE(inside.ok());
  auto pids = m_->Pids(rel);
  ASSERT_TRUE(pids.ok());
  EXPECT_NE(std::find(pids->begin(), pids->end(), sh), pids->end());
  auto usage = m_->Usage(rel);
  ASSERT_TRUE(usage.ok()) << usage.status().ToString();
  EXPECT_EQ(usage->memory_limit_bytes, 64u << 20);

  auto children = m_->Children();
  ASSERT_TRUE(children.ok());
  EXPECT_EQ(*children, std::vector<std::string>{rel});

  ASSERT_TRUE(m_->Remove(rel, milliseconds(10000)).ok());
  int status = 0;
  ASSERT_EQ(waitpid(sh, &status, 0), sh);
  EXPECT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(WTERMSIG(status), SIGKILL);
  for (pid_t p : *inside) EXPECT_TRUE(Dead(p)) << p;
  EXPECT_FALSE(m_->Exists(rel));
  EXPECT_TRUE(m_->Remove(rel, milliseconds(100)).ok());  // already gone: fine
}

TEST_F(RealCgroupTest, RemoveKillsChildrenBornInside) {
  const std::string rel = m_->PathOf("w2");
  ASSERT_TRUE(m_->Create(rel, {.pids_max = 50}).ok());
  // Joins itself before forking, so the sleeps are in the cgroup from birth.
  std::string script;
  for (const auto& f : m_->ProcsFiles(rel)) script += "echo $$ > " + f + "; ";
  script += "sleep 1000 & sleep 1000 & echo ready > /dev/null; wait";
  pid_t sh = Spawn({"/bin/sh", "-c", script});
  ASSERT_GT(sh, 0);
  ASSERT_GE(WaitForPids(rel, 3), 3u);
  ASSERT_TRUE(m_->Remove(rel, milliseconds(10000)).ok());
  int status = 0;
  ASSERT_EQ(waitpid(sh, &status, 0), sh);
  EXPECT_FALSE(m_->Exists(rel));
}

}  // namespace
}  // namespace verge::node::runtime
