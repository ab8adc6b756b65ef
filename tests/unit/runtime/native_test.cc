#include "node/runtime/native.h"

#include <gtest/gtest.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <thread>

#include "common/fs.h"
#include "node/runtime/log_files.h"

namespace verge::node::runtime {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using std::chrono::seconds;

// Polls `pred` until it holds or `timeout` passes.
bool WaitFor(const std::function<bool()>& pred, milliseconds timeout = seconds(30)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(milliseconds(10));
  }
  return pred();
}

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

uint64_t StartTimeOf(pid_t pid) {
  auto text = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  if (!text.ok()) return 0;
  std::string rest = text->substr(text->rfind(')') + 2);
  std::istringstream in(rest);
  std::string field;
  for (int i = 3; i <= 22 && in >> field; ++i) {
  }
  return std::stoull(field);
}

class NativeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "the native runtime needs root (namespaces, cgroups)";
    passwd* pw = getpwnam("nobody");
    if (pw == nullptr) GTEST_SKIP() << "needs the user nobody";
    nobody_uid_ = pw->pw_uid;
    static std::atomic<int> counter{0};
    options_.cgroup_parent =
        "verge-test-" + std::to_string(getpid()) + "/native-" + std::to_string(counter++);
    options_.stop_grace = seconds(5);
    rt_ = std::make_unique<NativeRuntime>(options_);
    Status available = rt_->Available();
    if (!available.ok()) GTEST_SKIP() << available.ToString();
    char tmpl[] = "/tmp/verge-native-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    base_ = tmpl;
    chmod(base_.c_str(), 0755);  // the workload's user must reach its directory
  }

  void TearDown() override {
    if (rt_ && rt_->cgroups() != nullptr) {
      // Stop also reaps the supervisors (our children); KillOrphans catches anything else.
      for (const auto& h : started_) EXPECT_TRUE(rt_->Stop(h, milliseconds(0)).ok()) << h.id;
      EXPECT_TRUE(rt_->KillOrphans({}).ok());
      EXPECT_TRUE(rt_->cgroups()->RemoveParent().ok());
    }
    if (!base_.empty()) fs::remove_all(base_);
  }

  Result<Handle> Start(const WorkloadSpec& spec) {
    auto h = rt_->Start(spec);
    if (h.ok()) started_.push_back(*h);
    return h;
  }

  WorkloadSpec Spec(const std::string& id, std::vector<std::string> command) {
    WorkloadSpec s;
    s.id = id;
    s.app = "demo";
    s.version = "1";
    s.dir = base_ + "/" + id;
    s.command = std::move(command);
    return s;
  }
  static std::vector<std::string> Sh(const std::string& script) {
    return {"/bin/sh", "-c", script};
  }

  ExitInfo WaitExit(NativeRuntime& rt, const Handle& h) {
    std::optional<ExitInfo> exit;
    bool ended = WaitFor([&] {
      auto o = rt.Poll(h);
      EXPECT_TRUE(o.ok()) << o.status().ToString();
      if (!o.ok() || o->running) return false;
      exit = o->exit;
      return true;
    });
    EXPECT_TRUE(ended) << h.id << " did not end";
    EXPECT_TRUE(exit.has_value());
    return exit.value_or(ExitInfo{});
  }

  std::string Log(const Handle& h) {
    auto r = ReadFile(h.dir + "/log/output.log");
    return r.ok() ? *r : r.status().ToString();
  }
  bool LogHas(const Handle& h, const std::string& text) {
    return WaitFor([&] { return Contains(Log(h), text); });
  }

  NativeOptions options_;
  std::unique_ptr<NativeRuntime> rt_;
  std::string base_;
  uid_t nobody_uid_ = 0;
  std::vector<Handle> started_;
};

TEST_F(NativeTest, RunsTheCommandAndReportsItsExitCode) {
  auto h = Start(Spec("exit-code", Sh("echo out; echo err >&2; exit 3")));
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  EXPECT_GT(h->pid, 1);
  EXPECT_GT(h->start_time, 0u);
  EXPECT_EQ(h->cgroup, options_.cgroup_parent + "/exit-code");
  ExitInfo exit = WaitExit(*rt_, *h);
  EXPECT_EQ(exit.exit_code, 3);
  EXPECT_EQ(exit.signal, 0);
  EXPECT_FALSE(exit.oom_killed);
  EXPECT_EQ(exit.message, "exit code 3");
  EXPECT_EQ(Log(*h), "out\nerr\n");
  EXPECT_EQ(*ReadFile(h->dir + "/exit"), "code=3\nsignal=0\n");
  // Asking again gives the same answer (the supervisor is reaped by now).
  auto again = rt_->Poll(*h);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->running);
  EXPECT_EQ(again->exit->exit_code, 3);
  EXPECT_TRUE(rt_->Stop(*h, milliseconds(100)).ok());
  EXPECT_FALSE(rt_->cgroups()->Exists(h->cgroup));
}

TEST_F(NativeTest, SandboxesTheCommand) {
  WorkloadSpec spec = Spec("sandbox", Sh(R"sh(
    echo "pid=$$"
    echo "host=$(hostname)"
    grep -E '^(Uid|Gid|NoNewPrivs):' /proc/self/status
    echo "app=$VERGE_APP workload=$VERGE_WORKLOAD foo=$FOO"
    echo "config=$(cat "$VERGE_CONFIG_DIR/tls/ca.pem")"
    echo "cwd=$(pwd)"
    echo "visible=$(ls /proc | grep -c '^[0-9]')"
    touch written-by-workload && echo wrote
    exit 0)sh"));
  spec.env["FOO"] = "bar";
  spec.config.push_back({"tls/ca.pem", "PEM", 0600});
  auto h = Start(spec);
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  ExitInfo exit = WaitExit(*rt_, *h);
  EXPECT_EQ(exit.exit_code, 0) << Log(*h);
  std::string log = Log(*h);
  std::string uid = std::to_string(nobody_uid_);
  EXPECT_TRUE(Contains(log, "pid=2\n")) << log;  // the supervisor is 1
  EXPECT_TRUE(Contains(log, "host=sandbox\n")) << log;
  EXPECT_TRUE(Contains(log, "Uid:\t" + uid + "\t" + uid + "\t" + uid + "\t" + uid)) << log;
  EXPECT_TRUE(Contains(log, "NoNewPrivs:\t1")) << log;
  EXPECT_TRUE(Contains(log, "app=demo workload=sandbox foo=bar\n")) << log;
  EXPECT_TRUE(Contains(log, "config=PEM\n")) << log;
  EXPECT_TRUE(Contains(log, "cwd=" + h->dir + "\n")) << log;
  // Its own PID namespace: only its own processes are visible.
  size_t at = log.find("visible=");
  ASSERT_NE(at, std::string::npos);
  EXPECT_LE(std::stoi(log.substr(at + 8)), 5) << log;  // init, sh, $(…) subshell, ls, grep
  EXPECT_TRUE(Contains(log, "wrote\n")) << log;
  // The host keeps its name.
  char name[256] = {};
  gethostname(name, sizeof name - 1);
  EXPECT_NE(std::string(name), "sandbox");
}

TEST_F(NativeTest, OutOfMemoryIsReported) {
  if (access("/usr/bin/python3", X_OK) != 0) GTEST_SKIP() << "needs /usr/bin/python3";
  WorkloadSpec spec = Spec("hog", {"/usr/bin/python3", "-c",
                                   "a = []\n"
                                   "while True:\n"
                                   "    a.append(bytearray(1 << 20))\n"});
  spec.memory_mb = 32;
  auto h = Start(spec);
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  ExitInfo exit = WaitExit(*rt_, *h);
  EXPECT_TRUE(exit.oom_killed) << exit.message << "\n" << Log(*h);
  EXPECT_EQ(exit.signal, SIGKILL);
  EXPECT_EQ(exit.exit_code, -1);
  // "killed by SIGKILL (out of memory)"; "… (with its supervisor) …" where the kernel refuses
  // the supervisor oom_score_adj -1000 and the (ASan-sized) test process outweighs the command.
  EXPECT_EQ(exit.message.rfind("killed by SIGKILL", 0), 0u) << exit.message;
  EXPECT_TRUE(Contains(exit.message, "(out of memory)")) << exit.message;
  auto usage = rt_->GetUsage(*h);
  ASSERT_TRUE(usage.ok()) << usage.status().ToString();
  EXPECT_GE(usage->oom_kills, 1u);
  EXPECT_EQ(usage->memory_limit_bytes, 32u << 20);
}

TEST_F(NativeTest, WritesCpuAndMemoryLimitsToTheCgroup) {
  WorkloadSpec spec = Spec("limits", {"/bin/sleep", "1000"});
  spec.cpu_millicores = 250;
  spec.memory_mb = 64;
  auto h = Start(spec);
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  const CgroupManager& cg = *rt_->cgroups();
  auto read = [&](const char* controller, const char* file) {
    auto r = ReadFile(cg.DirOf(h->cgroup, controller) + "/" + file);
    return r.ok() ? *r : r.status().ToString();
  };
  if (cg.v2()) {
    EXPECT_EQ(read("cpu", "cpu.max"), "25000 100000\n");
  } else {
    EXPECT_EQ(read("cpu", "cpu.cfs_quota_us"), "25000\n");
    EXPECT_EQ(read("cpu", "cpu.cfs_period_us"), "100000\n");
  }
  auto usage = rt_->GetUsage(*h);
  ASSERT_TRUE(usage.ok()) << usage.status().ToString();
  EXPECT_EQ(usage->memory_limit_bytes, 64u << 20);
  EXPECT_GT(usage->memory_bytes, 0u);
  EXPECT_EQ(usage->oom_kills, 0u);
  EXPECT_TRUE(rt_->Stop(*h, seconds(5)).ok());
}

TEST_F(NativeTest, StopEndsAGracefulCommandWithSigterm) {
  auto h = Start(Spec("graceful", {"/bin/sleep", "1000"}));
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  auto before = rt_->Poll(*h);
  ASSERT_TRUE(before.ok());
  EXPECT_TRUE(before->running);
  ASSERT_TRUE(rt_->Stop(*h, seconds(20)).ok());
  auto after = rt_->Poll(*h);
  ASSERT_TRUE(after.ok());
  EXPECT_FALSE(after->running);
  ASSERT_TRUE(after->exit.has_value());
  EXPECT_EQ(after->exit->signal, SIGTERM);  // forwarded by the supervisor, recorded by it
  EXPECT_EQ(after->exit->message, "killed by SIGTERM");
  EXPECT_FALSE(rt_->cgroups()->Exists(h->cgroup));
}

TEST_F(NativeTest, StopKillsTheWholeTreeAfterTheGrace) {
  // Ignores SIGTERM, and so do its background children.
  auto h =
      Start(Spec("tree", Sh("trap '' TERM; sleep 1000 & sleep 1000 & echo started; wait; wait")));
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  ASSERT_TRUE(LogHas(*h, "started"));
  std::vector<pid_t> pids;
  ASSERT_TRUE(WaitFor([&] {
    auto p = rt_->cgroups()->Pids(h->cgroup);
    if (p.ok()) pids = *p;
    return pids.size() >= 4;  // supervisor, shell, two sleeps
  }));
  std::vector<uint64_t> starts;
  starts.reserve(pids.size());
  for (pid_t p : pids) starts.push_back(StartTimeOf(p));

  ASSERT_TRUE(rt_->Stop(*h, milliseconds(300)).ok());
  for (size_t i = 0; i < pids.size(); ++i) {
    // Dead: gone, a zombie, or the pid was reused.
    EXPECT_TRUE(WaitFor([&] {
      auto stat = ReadFile("/proc/" + std::to_string(pids[i]) + "/stat");
      return !stat.ok() || stat->substr(stat->rfind(')') + 2, 1) == "Z" ||
             StartTimeOf(pids[i]) != starts[i];
    })) << "pid "
        << pids[i] << " survived Stop";
  }
  EXPECT_FALSE(rt_->cgroups()->Exists(h->cgroup));
  auto after = rt_->Poll(*h);
  ASSERT_TRUE(after.ok());
  EXPECT_FALSE(after->running);
  EXPECT_EQ(after->exit->signal, SIGKILL);
}

TEST_F(NativeTest, AdoptsAWorkloadStartedByAnEarlierAgent) {
  // The "earlier agent" is a child process that starts the workload and exits, so the
  // supervisor is not our child, just as after a real restart.
  WorkloadSpec spec = Spec("adopt", Sh("echo up; while [ ! -e go ]; do sleep 0.05; done; exit 7"));
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t agent = fork();
  ASSERT_GE(agent, 0);
  if (agent == 0) {
    NativeRuntime earlier(options_);
    auto h = earlier.Start(spec);
    std::string line =
        h.ok() ? std::to_string(h->pid) + " " + std::to_string(h->start_time) + " " + h->cgroup
               : "error " + h.status().ToString();
    ssize_t n = write(fds[1], line.data(), line.size());
    _exit(n > 0 ? 0 : 1);
  }
  close(fds[1]);
  std::string line;
  char buf[512];
  for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) > 0;)
    line.append(buf, static_cast<size_t>(n));
  close(fds[0]);
  int status = 0;
  ASSERT_EQ(waitpid(agent, &status, 0), agent);
  ASSERT_EQ(line.rfind("error", 0), std::string::npos) << line;
  Handle h;
  h.id = spec.id;
  h.kind = Kind::kNative;
  h.dir = spec.dir;
  std::istringstream in(line);
  in >> h.pid >> h.start_time >> h.cgroup;
  ASSERT_GT(h.pid, 1);

  NativeRuntime restarted(options_);
  auto adopted = restarted.Adopt(h);
  ASSERT_TRUE(adopted.ok()) << adopted.status().ToString();
  EXPECT_TRUE(*adopted);
  auto running = restarted.Poll(h);
  ASSERT_TRUE(running.ok());
  EXPECT_TRUE(running->running);
  EXPECT_TRUE(restarted.KillOrphans({h.cgroup}).ok());  // kept: still running
  ASSERT_TRUE(LogHas(h, "up\n"));

  ASSERT_TRUE(WriteFileAtomic(h.dir + "/go", "").ok());
  ExitInfo exit = WaitExit(restarted, h);
  EXPECT_EQ(exit.exit_code, 7);
  EXPECT_EQ(exit.message, "exit code 7");
  auto again = restarted.Adopt(h);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(*again);  // ended: Poll says how, Stop cleans up
  EXPECT_TRUE(restarted.Stop(h, seconds(1)).ok());
  EXPECT_FALSE(rt_->cgroups()->Exists(h.cgroup));
}

TEST_F(NativeTest, DoesNotAdoptAReusedOrBogusPid) {
  Handle h;
  h.id = "ghost";
  h.kind = Kind::kNative;
  h.cgroup = rt_->cgroups()->PathOf("ghost");
  h.dir = base_ + "/ghost";
  // A live process with the right start time, but not in the workload's cgroup.
  h.pid = getpid();
  h.start_time = StartTimeOf(getpid());
  auto r = rt_->Adopt(h);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_FALSE(*r);
  // The pid was reused: another start time.
  h.start_time += 1;
  r = rt_->Adopt(h);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(*r);
  auto polled = rt_->Poll(h);
  ASSERT_TRUE(polled.ok());
  EXPECT_FALSE(polled->running);
  // A pid nobody has.
  pid_t gone = fork();
  if (gone == 0) _exit(0);
  ASSERT_EQ(waitpid(gone, nullptr, 0), gone);
  h.pid = gone;
  r = rt_->Adopt(h);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(*r);
  // A handle pointing outside this node's cgroups is refused outright.
  h.cgroup = "somebody/else";
  r = rt_->Adopt(h);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(rt_->Stop(h, seconds(1)).code(), Code::kInvalidArgument);
}

TEST_F(NativeTest, ExecRunsInsideTheWorkload) {
  auto h = Start(Spec("exec-demo", {"/bin/sleep", "1000"}));
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  std::string check =
      "test \"$(hostname)\" = exec-demo && test \"$(cat /proc/1/comm)\" = verge-init && "
      "test \"$(id -u)\" = " +
      std::to_string(nobody_uid_) + " && grep -q '" + h->cgroup + "' /proc/self/cgroup";
  auto ok = rt_->Exec(*h, Sh(check), seconds(20));
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(*ok, 0);
  auto four = rt_->Exec(*h, Sh("exit 4"), seconds(20));
  ASSERT_TRUE(four.ok()) << four.status().ToString();
  EXPECT_EQ(*four, 4);
  auto by_path = rt_->Exec(*h, {"true"}, seconds(20));
  ASSERT_TRUE(by_path.ok()) << by_path.status().ToString();
  EXPECT_EQ(*by_path, 0);

  auto slow = rt_->Exec(*h, {"/bin/sleep", "1000"}, milliseconds(300));
  ASSERT_FALSE(slow.ok());
  EXPECT_EQ(slow.status().code(), Code::kDeadlineExceeded);
  // The timed-out command is gone again: only the supervisor and the workload remain.
  EXPECT_TRUE(WaitFor([&] {
    auto p = rt_->cgroups()->Pids(h->cgroup);
    return p.ok() && p->size() == 2;
  }));

  auto missing = rt_->Exec(*h, {"/no/such/probe"}, seconds(5));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), Code::kNotFound);
  auto running = rt_->Poll(*h);
  ASSERT_TRUE(running.ok());
  EXPECT_TRUE(running->running);  // probes do not disturb the workload
}

TEST_F(NativeTest, ExecOnAnEndedWorkloadFails) {
  auto h = Start(Spec("exec-ended", {"/bin/true"}));
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  WaitExit(*rt_, *h);
  auto r = rt_->Exec(*h, {"/bin/true"}, seconds(5));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kFailedPrecondition);
}

TEST_F(NativeTest, BadInputsGiveClearErrors) {
  auto missing = Start(Spec("missing", {"/no/such/binary"}));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), Code::kNotFound);
  EXPECT_TRUE(Contains(missing.status().message(), "/no/such/binary"))
      << missing.status().message();

  for (std::string bad : {"../escape", "/etc/passwd", "a/../../b", ""}) {
    WorkloadSpec spec = Spec("badconfig", {"/bin/true"});
    spec.config.push_back({bad, "x", 0644});
    auto r = Start(spec);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << bad;
  }
  EXPECT_FALSE(fs::exists(base_ + "/escape"));

  auto bad_id = Start(Spec("Bad_Id", {"/bin/true"}));
  ASSERT_FALSE(bad_id.ok());
  EXPECT_EQ(bad_id.status().code(), Code::kInvalidArgument);

  auto relative = Start(Spec("relative", {"bin/app"}));
  ASSERT_FALSE(relative.ok());
  EXPECT_EQ(relative.status().code(), Code::kInvalidArgument);

  // Executable bits but no executable format: only execve can tell, through the error pipe.
  std::string script = base_ + "/not-a-program";
  ASSERT_TRUE(WriteFileAtomic(script, "just text\n", 0755).ok());
  chmod(script.c_str(), 0755);
  auto noexec = Start(Spec("noexec", {script}));
  ASSERT_FALSE(noexec.ok());
  EXPECT_EQ(noexec.status().code(), Code::kInvalidArgument) << noexec.status().ToString();
  EXPECT_TRUE(Contains(noexec.status().message(), "Exec format error"))
      << noexec.status().message();
  EXPECT_FALSE(rt_->cgroups()->Exists(rt_->cgroups()->PathOf("noexec")));
  EXPECT_FALSE(fs::exists(base_ + "/noexec/exit"));
}

TEST_F(NativeTest, RunsAnArtifactRelativeCommand) {
  std::string artifact = base_ + "/artifact";
  fs::create_directories(artifact + "/bin");
  chmod(artifact.c_str(), 0755);
  chmod((artifact + "/bin").c_str(), 0755);
  ASSERT_TRUE(
      WriteFileAtomic(artifact + "/bin/app", "#!/bin/sh\necho from-artifact \"$@\"\n").ok());
  chmod((artifact + "/bin/app").c_str(), 0755);
  WorkloadSpec spec = Spec("artifact-app", {"bin/app", "x"});
  spec.artifact = artifact;
  auto h = Start(spec);
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  EXPECT_EQ(WaitExit(*rt_, *h).exit_code, 0);
  EXPECT_EQ(Log(*h), "from-artifact x\n");
}

TEST_F(NativeTest, RefusesASecondCopy) {
  auto h = Start(Spec("twice", {"/bin/sleep", "1000"}));
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  auto second = Start(Spec("twice", {"/bin/sleep", "1000"}));
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), Code::kAlreadyExists);
  auto still = rt_->Poll(*h);
  ASSERT_TRUE(still.ok());
  EXPECT_TRUE(still->running);
}

TEST_F(NativeTest, IsolatedNetworkHasOnlyLoopback) {
  WorkloadSpec spec =
      Spec("netns", Sh("cat /proc/net/dev; cat /sys/class/net/lo/flags 2>/dev/null; "
                       "cat /proc/net/if_inet6 2>/dev/null; exit 0"));
  spec.isolated_network = true;
  auto h = Start(spec);
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  EXPECT_EQ(WaitExit(*rt_, *h).exit_code, 0);
  std::string log = Log(*h);
  EXPECT_TRUE(Contains(log, "lo:")) << log;
  EXPECT_FALSE(Contains(log, "eth0")) << log;
  // An "up" loopback has ::1 (where the kernel has IPv6).
  if (fs::exists("/proc/net/if_inet6")) {
    EXPECT_TRUE(Contains(log, " lo\n")) << log;
  }
}

TEST_F(NativeTest, KillOrphansRemovesEverythingNotKept) {
  auto keep = Start(Spec("keep", {"/bin/sleep", "1000"}));
  auto orphan = Start(Spec("orphan", {"/bin/sleep", "1000"}));
  ASSERT_TRUE(keep.ok()) << keep.status().ToString();
  ASSERT_TRUE(orphan.ok()) << orphan.status().ToString();
  ASSERT_TRUE(rt_->KillOrphans({keep->cgroup}).ok());
  EXPECT_FALSE(rt_->cgroups()->Exists(orphan->cgroup));
  // Gone from the cgroup, the supervisor may still be finishing its exit for a moment.
  EXPECT_TRUE(WaitFor([&] {
    auto gone = rt_->Poll(*orphan);
    return gone.ok() && !gone->running;
  }));
  auto kept = rt_->Poll(*keep);
  ASSERT_TRUE(kept.ok());
  EXPECT_TRUE(kept->running);
}

TEST_F(NativeTest, OutputSurvivesInTheLogAcrossRotation) {
  auto h = Start(Spec("rotate", Sh("echo one; while [ ! -e go ]; do sleep 0.05; done; "
                                   "echo two; exit 0")));
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  ASSERT_TRUE(LogHas(*h, "one\n"));
  ASSERT_TRUE(LogRotator({.max_bytes = 1, .keep = 3}).Rotate(h->dir + "/log/output.log").ok());
  ASSERT_TRUE(WriteFileAtomic(h->dir + "/go", "").ok());
  EXPECT_EQ(WaitExit(*rt_, *h).exit_code, 0);
  EXPECT_EQ(Log(*h), "two\n");
  auto tail = ReadTail(h->dir + "/log/output.log", 10);
  ASSERT_TRUE(tail.ok());
  EXPECT_EQ(*tail, "one\ntwo\n");
}

}  // namespace
}  // namespace verge::node::runtime

namespace verge::node::runtime {
namespace {

TEST(NativeAvailabilityTest, SaysWhyItCannotRun) {
  char tmpl[] = "/tmp/verge-nocg-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  ASSERT_TRUE(WriteFileAtomic(dir + "/self_cgroup", "0::/\n").ok());
  ASSERT_TRUE(WriteFileAtomic(dir + "/mountinfo", "").ok());
  NativeOptions options;
  options.cgroup_paths = {dir + "/cg", dir + "/self_cgroup", dir + "/mountinfo"};
  NativeRuntime rt(options);
  Status st = rt.Available();
  EXPECT_EQ(st.code(), Code::kFailedPrecondition) << st.ToString();
  EXPECT_TRUE(st.message().find(geteuid() == 0 ? "no cgroup" : "root") != std::string::npos)
      << st.message();
  EXPECT_EQ(rt.cgroups(), nullptr);
  WorkloadSpec spec;
  spec.id = "w";
  spec.dir = dir + "/w";
  spec.command = {"/bin/true"};
  auto h = rt.Start(spec);
  ASSERT_FALSE(h.ok());
  EXPECT_EQ(h.status().code(), Code::kFailedPrecondition);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace verge::node::runtime
