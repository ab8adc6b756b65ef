#include "node/runtime/oci.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "oci_test_image.h"

namespace verge::node::runtime {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

std::string MakeTempDir(const std::string& prefix) {
  std::string tmpl = fs::temp_directory_path().string() + "/" + prefix + "-XXXXXX";
  return ::mkdtemp(tmpl.data());
}

// ---------------------------------------------------------------------------------------------
// The generated runtime spec (no runc needed).

WorkloadSpec SpecFor(const std::string& id) {
  WorkloadSpec s;
  s.id = id;
  s.app = "shop";
  s.kind = Kind::kContainer;
  s.dir = "/var/lib/verge/workloads/" + id;
  return s;
}

OciSpecInput InputFor() {
  OciSpecInput in;
  in.rootfs = "/images/abc/rootfs";
  in.image.entrypoint = {"/bin/server"};
  in.image.cmd = {"--port", "80"};
  in.image.env = {"PATH=/usr/bin", "MODE=image", "KEEP=1"};
  in.image.working_dir = "/srv";
  in.user.uid = 1000;
  in.user.gid = 1000;
  in.user.additional_gids = {2000};
  in.user.home = "/home/app";
  in.cgroups_path = "verge/shop-0";
  in.hosts_file = "/w/bundle/hosts";
  in.pids_max = 100;
  return in;
}

json Parse(const Result<std::string>& text) {
  EXPECT_TRUE(text.ok()) << text.status().ToString();
  return text.ok() ? json::parse(*text) : json();
}

bool HasMount(const json& spec, const std::string& dest, const std::string& option) {
  for (const auto& m : spec["mounts"]) {
    if (m["destination"] != dest) continue;
    for (const auto& o : m["options"]) {
      if (o == option) return true;
    }
  }
  return false;
}

TEST(OciSpecTest, ProcessFromImageAndWorkload) {
  WorkloadSpec w = SpecFor("shop-0");
  w.env = {{"MODE", "app"}, {"EXTRA", "x"}};
  json spec = Parse(BuildRuntimeSpec(w, InputFor()));
  EXPECT_EQ(spec["process"]["args"], json({"/bin/server", "--port", "80"}));
  EXPECT_EQ(spec["process"]["cwd"], "/srv");
  EXPECT_EQ(spec["process"]["env"],
            json({"PATH=/usr/bin", "MODE=app", "KEEP=1", "EXTRA=x", "VERGE_APP=shop",
                  "VERGE_WORKLOAD=shop-0", "VERGE_CONFIG_DIR=/config", "HOME=/home/app"}));
  EXPECT_EQ(spec["process"]["user"]["uid"], 1000);
  EXPECT_EQ(spec["process"]["user"]["gid"], 1000);
  EXPECT_EQ(spec["process"]["user"]["additionalGids"], json({2000}));
  EXPECT_EQ(spec["process"]["noNewPrivileges"], true);
  EXPECT_EQ(spec["hostname"], "shop-0");
  EXPECT_EQ(spec["root"]["path"], "/images/abc/rootfs");
  EXPECT_EQ(spec["root"]["readonly"], true);

  w.command = {"/bin/other", "arg"};
  spec = Parse(BuildRuntimeSpec(w, InputFor()));
  EXPECT_EQ(spec["process"]["args"], json({"/bin/other", "arg"}));

  OciSpecInput no_cmd = InputFor();
  no_cmd.image.entrypoint.clear();
  no_cmd.image.cmd.clear();
  auto r = BuildRuntimeSpec(SpecFor("shop-0"), no_cmd);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
}

TEST(OciSpecTest, CapabilitiesDependOnTheUser) {
  json user = Parse(BuildRuntimeSpec(SpecFor("a"), InputFor()));
  const json& caps = user["process"]["capabilities"];
  EXPECT_EQ(caps["bounding"].size(), 14u);
  EXPECT_TRUE(caps["effective"].empty());
  EXPECT_TRUE(caps["permitted"].empty());
  EXPECT_TRUE(caps["ambient"].empty());
  for (const auto& c : caps["bounding"]) EXPECT_NE(c, "CAP_SYS_ADMIN");

  OciSpecInput root_in = InputFor();
  root_in.user = ImageUser{};
  json root = Parse(BuildRuntimeSpec(SpecFor("a"), root_in));
  EXPECT_EQ(root["process"]["capabilities"]["effective"],
            root["process"]["capabilities"]["bounding"]);
  EXPECT_EQ(root["process"]["env"].back(), "HOME=/");
}

TEST(OciSpecTest, NamespacesResourcesAndMounts) {
  WorkloadSpec w = SpecFor("shop-0");
  w.memory_mb = 64;
  w.cpu_millicores = 250;
  w.config_mount = "/etc/shop";
  w.volumes = {{"data", "/data", "/srv/data", false}, {"certs", "/certs", "/srv/certs", true}};
  json spec = Parse(BuildRuntimeSpec(w, InputFor()));
  std::vector<std::string> ns;
  for (const auto& n : spec["linux"]["namespaces"]) ns.push_back(n["type"]);
  EXPECT_EQ(ns, (std::vector<std::string>{"pid", "mount", "ipc", "uts"}));
  EXPECT_EQ(spec["linux"]["cgroupsPath"], "verge/shop-0");
  const json& res = spec["linux"]["resources"];
  EXPECT_EQ(res["memory"]["limit"], 64 << 20);
  EXPECT_EQ(res["memory"]["swap"], 64 << 20);
  EXPECT_EQ(res["cpu"]["quota"], 25000);
  EXPECT_EQ(res["cpu"]["period"], 100000);
  EXPECT_EQ(res["pids"]["limit"], 100);
  EXPECT_TRUE(HasMount(spec, "/sys", "ro"));
  EXPECT_TRUE(HasMount(spec, "/tmp", "mode=1777"));
  EXPECT_TRUE(HasMount(spec, "/etc/shop", "ro"));
  EXPECT_TRUE(HasMount(spec, "/etc/hosts", "ro"));
  EXPECT_FALSE(HasMount(spec, "/etc/resolv.conf", "ro"));
  EXPECT_TRUE(HasMount(spec, "/data", "rw"));
  EXPECT_TRUE(HasMount(spec, "/certs", "ro"));
  EXPECT_FALSE(spec["linux"]["maskedPaths"].empty());
  EXPECT_FALSE(spec["linux"]["readonlyPaths"].empty());

  w.isolated_network = true;
  w.memory_mb = 0;
  w.cpu_millicores = 0;
  OciSpecInput in = InputFor();
  in.limit_swap = false;
  spec = Parse(BuildRuntimeSpec(w, in));
  EXPECT_EQ(spec["linux"]["namespaces"].back()["type"], "network");
  EXPECT_FALSE(spec["linux"]["resources"].contains("memory"));
  EXPECT_FALSE(spec["linux"]["resources"].contains("cpu"));

  for (const char* bad : {"data", "/", "/a/../etc", ""}) {
    WorkloadSpec v = SpecFor("x");
    v.volumes = {{"v", bad, "/srv/v", false}};
    EXPECT_EQ(BuildRuntimeSpec(v, InputFor()).status().code(), Code::kInvalidArgument) << bad;
  }
  WorkloadSpec relative = SpecFor("x");
  relative.config_mount = "config";
  EXPECT_EQ(BuildRuntimeSpec(relative, InputFor()).status().code(), Code::kInvalidArgument);
}

// ---------------------------------------------------------------------------------------------
// Containers (root and runc needed; skipped elsewhere).

class OciRuntimeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!testing::HaveBusybox()) return;
    suite_dir_ = new std::string(MakeTempDir("oci-runtime-suite"));
    testing::TestImage image;
    image.entrypoint = {"/bin/sh", "-c"};
    image.cmd = {
        "echo \"greeting=$GREETING workload=$VERGE_WORKLOAD app=$VERGE_APP uid=$(id -u) "
        "gid=$(id -g) home=$HOME pwd=$(pwd)\""};
    image.env = {"PATH=/bin", "GREETING=from-image"};
    image.compression = testing::Compression::kGzip;
    image_ =
        new std::string(testing::BuildBusyboxImage(*suite_dir_, *suite_dir_ + "/artifacts", image));
  }
  static void TearDownTestSuite() {
    if (suite_dir_ != nullptr) {
      std::error_code ec;
      fs::remove_all(*suite_dir_, ec);
    }
    delete suite_dir_;
    delete image_;
    suite_dir_ = image_ = nullptr;
  }

  void SetUp() override {
    if (image_ == nullptr) GTEST_SKIP() << "needs " << testing::kBusybox;
    tmp_ = MakeTempDir("oci-runtime-test");
    options_.images_dir = *suite_dir_ + "/images";  // shared: the image is unpacked once
    options_.state_root = tmp_ + "/state";
    static int counter = 0;
    options_.cgroup_parent = fmt::format("verge-oci-test-{}-{}", ::getpid(), ++counter);
    options_.start_timeout = seconds(60);
    rt_ = std::make_unique<OciRuntime>(options_);
    Status st = rt_->Available();
    if (!st.ok()) GTEST_SKIP() << "no usable OCI runtime here: " << st.ToString();
  }

  void TearDown() override {
    if (rt_ != nullptr && rt_->Available().ok()) {
      for (const auto& h : started_) (void)rt_->Stop(h, milliseconds(0));
      if (rt_->cgroups() != nullptr) (void)rt_->cgroups()->RemoveParent();
      RemoveParentEverywhere(options_.cgroup_parent);
    }
    std::error_code ec;
    if (!tmp_.empty()) fs::remove_all(tmp_, ec);
  }

  // runc places containers in every hierarchy it finds (name=systemd, and the cgroup2 tree of a
  // hybrid layout), which CgroupManager leaves alone, and removes only their own cgroups.
  static void RemoveParentEverywhere(const std::string& parent) {
    std::istringstream self(testing::ReadText("/proc/self/cgroup"));
    for (std::string line; std::getline(self, line);) {
      size_t c1 = line.find(':');
      size_t c2 = line.find(':', c1 + 1);
      if (c1 == std::string::npos || c2 == std::string::npos) continue;
      std::string controllers = line.substr(c1 + 1, c2 - c1 - 1);
      std::string own = line.substr(c2 + 1);
      if (own == "/") own.clear();
      if (controllers.empty()) controllers = "unified";
      if (controllers.rfind("name=", 0) == 0) controllers = controllers.substr(5);
      ::rmdir(fmt::format("/sys/fs/cgroup/{}{}/{}", controllers, own, parent).c_str());
    }
  }

  WorkloadSpec Spec(const std::string& id, std::vector<std::string> command = {}) {
    WorkloadSpec s;
    s.id = id;
    s.app = "test-app";
    s.kind = Kind::kContainer;
    s.dir = tmp_ + "/workloads/" + id;
    s.artifact = *image_;
    s.command = std::move(command);
    return s;
  }

  Result<Handle> Start(const WorkloadSpec& spec) {
    auto h = rt_->Start(spec);
    if (h.ok()) started_.push_back(*h);
    return h;
  }

  Observed WaitEnded(Runtime& rt, const Handle& h, seconds timeout = seconds(60)) {
    auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      auto o = rt.Poll(h);
      if (!o.ok()) {
        ADD_FAILURE() << o.status().ToString();
        return {};
      }
      if (!o->running) return *o;
      std::this_thread::sleep_for(milliseconds(20));
    }
    ADD_FAILURE() << h.id << " still runs after " << timeout.count() << " s";
    return {};
  }

  static std::string Log(const WorkloadSpec& spec) {
    return testing::ReadText(spec.dir + "/log/output.log");
  }

  bool WaitLog(const WorkloadSpec& spec, const std::string& text, seconds timeout = seconds(30)) {
    auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      if (Log(spec).find(text) != std::string::npos) return true;
      std::this_thread::sleep_for(milliseconds(20));
    }
    return false;
  }

  static std::string ReadCgroupFile(const std::string& dir, const std::string& name) {
    std::string text = testing::ReadText(dir + "/" + name);
    while (!text.empty() && text.back() == '\n') text.pop_back();
    return text;
  }

  static inline std::string* suite_dir_ = nullptr;
  static inline std::string* image_ = nullptr;
  std::string tmp_;
  OciOptions options_;
  std::unique_ptr<OciRuntime> rt_;
  std::vector<Handle> started_;
};

TEST_F(OciRuntimeTest, OutputGoesToTheLogAndTheExitCodeIsRecorded) {
  WorkloadSpec spec = Spec("echo-1", {"/bin/sh", "-c", "echo hello from $VERGE_WORKLOAD; exit 3"});
  auto h = Start(spec);
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  EXPECT_EQ(h->kind, Kind::kContainer);
  EXPECT_EQ(h->container_id, "echo-1");
  EXPECT_GT(h->pid, 0);
  EXPECT_GT(h->start_time, 0u);
  Observed o = WaitEnded(*rt_, *h);
  ASSERT_TRUE(o.exit.has_value());
  EXPECT_EQ(o.exit->exit_code, 3);
  EXPECT_EQ(o.exit->signal, 0);
  EXPECT_FALSE(o.exit->oom_killed);
  EXPECT_EQ(o.exit->message, "exit code 3");
  EXPECT_NE(Log(spec).find("hello from echo-1\n"), std::string::npos) << Log(spec);
  EXPECT_NE(testing::ReadText(spec.dir + "/exit").find("code=3\n"), std::string::npos);
  // The supervisor deleted the container; what is left is cleaned by Stop.
  auto adopted = rt_->Adopt(*h);
  ASSERT_TRUE(adopted.ok());
  EXPECT_FALSE(*adopted);
  EXPECT_TRUE(rt_->Stop(*h, milliseconds(1000)).ok());
  EXPECT_FALSE(rt_->cgroups()->Exists(h->cgroup));
  // The record survives Stop: a later Poll says the same.
  auto again = rt_->Poll(*h);
  ASSERT_TRUE(again.ok());
  ASSERT_TRUE(again->exit.has_value());
  EXPECT_EQ(again->exit->exit_code, 3);
}

TEST_F(OciRuntimeTest, ImageDefaultsEnvironmentAndUser) {
  WorkloadSpec plain = Spec("defaults-1");
  auto h = Start(plain);
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  Observed o = WaitEnded(*rt_, *h);
  ASSERT_TRUE(o.exit.has_value());
  EXPECT_EQ(o.exit->exit_code, 0) << Log(plain);
  // No User in the image: nobody, never root.
  EXPECT_NE(Log(plain).find("greeting=from-image workload=defaults-1 app=test-app uid=65534 "
                            "gid=65534 home=/nonexistent pwd=/"),
            std::string::npos)
      << Log(plain);

  WorkloadSpec with_env = Spec("defaults-2");
  with_env.env = {{"GREETING", "from-app"}};
  auto h2 = Start(with_env);
  ASSERT_TRUE(h2.ok()) << h2.status().ToString();
  WaitEnded(*rt_, *h2);
  EXPECT_NE(Log(with_env).find("greeting=from-app workload=defaults-2"), std::string::npos)
      << Log(with_env);
}

TEST_F(OciRuntimeTest, HostnameIsTheWorkloadIdAndExecRunsInside) {
  WorkloadSpec spec = Spec("exec-1", {"/bin/sh", "-c", "hostname; exec sleep 1000"});
  auto h = Start(spec);
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  EXPECT_TRUE(WaitLog(spec, "exec-1\n")) << Log(spec);

  auto is_id = rt_->Exec(*h, {"/bin/sh", "-c", "test \"$(hostname)\" = exec-1"}, seconds(30));
  ASSERT_TRUE(is_id.ok()) << is_id.status().ToString();
  EXPECT_EQ(*is_id, 0);
  auto not_id = rt_->Exec(*h, {"/bin/sh", "-c", "test \"$(hostname)\" = other"}, seconds(30));
  ASSERT_TRUE(not_id.ok());
  EXPECT_EQ(*not_id, 1);
  auto code = rt_->Exec(*h, {"/bin/sh", "-c", "exit 7"}, seconds(30));
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(*code, 7);
  // Same user as the container's process, same pid namespace (its init is pid 1).
  auto same = rt_->Exec(
      *h, {"/bin/sh", "-c", "test $(id -u) = 65534 && grep -q sleep /proc/1/cmdline"}, seconds(30));
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(*same, 0);

  auto missing = rt_->Exec(*h, {"/no/such/probe"}, seconds(30));
  EXPECT_FALSE(missing.ok());

  auto slow = rt_->Exec(*h, {"/bin/sleep", "555"}, milliseconds(1000));
  ASSERT_FALSE(slow.ok());
  EXPECT_EQ(slow.status().code(), Code::kDeadlineExceeded);
  // The timed-out command itself was killed, not only runc.
  bool gone = false;
  auto deadline = Clock::now() + seconds(30);
  while (!gone && Clock::now() < deadline) {
    auto r = rt_->Exec(*h, {"/bin/sh", "-c", "! ps -o args | grep -q '^[s]leep 555'"}, seconds(30));
    gone = r.ok() && *r == 0;
  }
  EXPECT_TRUE(gone);
}

TEST_F(OciRuntimeTest, LimitsAreInTheCgroupAndOomKillsAreReported) {
  WorkloadSpec spec = Spec("limits-1", {"/bin/sleep", "1000"});
  spec.memory_mb = 32;
  spec.cpu_millicores = 500;
  auto h = Start(spec);
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  const CgroupManager* cg = rt_->cgroups();
  std::string mem_dir = cg->DirOf(h->cgroup, "memory");
  std::string cpu_dir = cg->DirOf(h->cgroup, "cpu");
  ASSERT_FALSE(mem_dir.empty());
  if (cg->v2()) {
    EXPECT_EQ(ReadCgroupFile(mem_dir, "memory.max"), "33554432");
    EXPECT_EQ(ReadCgroupFile(cpu_dir, "cpu.max"), "50000 100000");
  } else {
    EXPECT_EQ(ReadCgroupFile(mem_dir, "memory.limit_in_bytes"), "33554432");
    EXPECT_EQ(ReadCgroupFile(cpu_dir, "cpu.cfs_quota_us"), "50000");
  }
  // The container's process really is in that cgroup.
  std::string init_pid = testing::ReadText(spec.dir + "/bundle/init.pid");
  std::string proc_cgroup = testing::ReadText("/proc/" + init_pid + "/cgroup");
  EXPECT_NE(proc_cgroup.find(h->cgroup), std::string::npos) << proc_cgroup;

  auto usage = rt_->GetUsage(*h);
  ASSERT_TRUE(usage.ok()) << usage.status().ToString();
  EXPECT_EQ(usage->memory_limit_bytes, 32u << 20);
  EXPECT_GT(usage->memory_bytes, 0u);
  EXPECT_EQ(usage->oom_kills, 0u);
  ASSERT_TRUE(rt_->Stop(*h, milliseconds(0)).ok());

  // A process that doubles a string until the limit stops it.
  WorkloadSpec hog = Spec("oom-1", {"/bin/awk", "BEGIN { s = \"x\"; while (1) s = s s }"});
  hog.memory_mb = 32;
  auto hh = Start(hog);
  ASSERT_TRUE(hh.ok()) << hh.status().ToString();
  Observed o = WaitEnded(*rt_, *hh);
  ASSERT_TRUE(o.exit.has_value());
  EXPECT_TRUE(o.exit->oom_killed) << o.exit->message;
  EXPECT_EQ(o.exit->signal, SIGKILL);
  EXPECT_EQ(o.exit->exit_code, -1);
  EXPECT_EQ(o.exit->message, "killed by SIGKILL (out of memory)");
}

TEST_F(OciRuntimeTest, StopSendsSigtermThenSigkill) {
  WorkloadSpec polite = Spec(
      "stop-1", {"/bin/sh", "-c",
                 "trap 'echo got-term; exit 0' TERM; echo ready; while true; do sleep 0.1; done"});
  auto h = Start(polite);
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  ASSERT_TRUE(WaitLog(polite, "ready\n"));
  ASSERT_TRUE(rt_->Stop(*h, seconds(30)).ok());
  auto o = rt_->Poll(*h);
  ASSERT_TRUE(o.ok());
  ASSERT_FALSE(o->running);
  ASSERT_TRUE(o->exit.has_value());
  EXPECT_EQ(o->exit->exit_code, 0);
  EXPECT_NE(Log(polite).find("got-term"), std::string::npos);
  EXPECT_FALSE(rt_->cgroups()->Exists(h->cgroup));

  // sleep as pid 1 of its namespace ignores SIGTERM: SIGKILL after the grace period.
  WorkloadSpec stubborn = Spec("stop-2", {"/bin/sleep", "1000"});
  auto h2 = Start(stubborn);
  ASSERT_TRUE(h2.ok()) << h2.status().ToString();
  ASSERT_TRUE(rt_->Stop(*h2, milliseconds(200)).ok());
  auto o2 = rt_->Poll(*h2);
  ASSERT_TRUE(o2.ok());
  ASSERT_TRUE(o2->exit.has_value());
  EXPECT_EQ(o2->exit->signal, SIGKILL);
  auto adopted = rt_->Adopt(*h2);
  ASSERT_TRUE(adopted.ok());
  EXPECT_FALSE(*adopted);
  // Stopping again is fine.
  EXPECT_TRUE(rt_->Stop(*h2, milliseconds(200)).ok());
}

TEST_F(OciRuntimeTest, AdoptFromASecondRuntimeInstance) {
  WorkloadSpec spec = Spec("adopt-1", {"/bin/sleep", "1000"});
  auto h = Start(spec);
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  OciRuntime second(options_);
  auto adopted = second.Adopt(*h);
  ASSERT_TRUE(adopted.ok()) << adopted.status().ToString();
  EXPECT_TRUE(*adopted);
  auto o = second.Poll(*h);
  ASSERT_TRUE(o.ok());
  EXPECT_TRUE(o->running);
  auto host = second.Exec(*h, {"/bin/sh", "-c", "test \"$(hostname)\" = adopt-1"}, seconds(30));
  ASSERT_TRUE(host.ok());
  EXPECT_EQ(*host, 0);
  // A handle whose start time does not match is not ours.
  Handle stale = *h;
  stale.start_time += 1;
  auto stale_adopted = second.Adopt(stale);
  ASSERT_TRUE(stale_adopted.ok());
  EXPECT_FALSE(*stale_adopted);

  ASSERT_TRUE(second.Stop(*h, milliseconds(0)).ok());
  adopted = second.Adopt(*h);
  ASSERT_TRUE(adopted.ok());
  EXPECT_FALSE(*adopted);
  o = second.Poll(*h);
  ASSERT_TRUE(o.ok());
  EXPECT_FALSE(o->running);
}

TEST_F(OciRuntimeTest, ContainerOutlivesAKilledAgent) {
  WorkloadSpec spec = Spec("outlive-1", {"/bin/sleep", "1000"});
  std::array<int, 2> p{};
  ASSERT_EQ(::pipe(p.data()), 0);
  // The "agent": a child process that starts the container and is then SIGKILLed.
  pid_t agent = ::fork();
  ASSERT_GE(agent, 0);
  if (agent == 0) {
    ::close(p[0]);
    OciRuntime rt(options_);
    auto h = rt.Start(spec);
    std::string line =
        h.ok() ? fmt::format("{} {} {} {}\n", h->pid, h->start_time, h->cgroup, h->container_id)
               : "error " + h.status().ToString() + "\n";
    (void)!::write(p[1], line.data(), line.size());
    for (;;) ::pause();
  }
  ::close(p[1]);
  std::string line;
  char c = 0;
  while (::read(p[0], &c, 1) == 1 && c != '\n') line += c;
  ::close(p[0]);
  ::kill(agent, SIGKILL);
  ::waitpid(agent, nullptr, 0);
  std::istringstream in(line);
  Handle h;
  in >> h.pid >> h.start_time >> h.cgroup >> h.container_id;
  ASSERT_TRUE(in) << line;
  h.id = spec.id;
  h.kind = Kind::kContainer;
  h.dir = spec.dir;
  started_.push_back(h);

  auto adopted = rt_->Adopt(h);
  ASSERT_TRUE(adopted.ok()) << adopted.status().ToString();
  EXPECT_TRUE(*adopted);
  auto alive = rt_->Exec(h, {"/bin/true"}, seconds(30));
  ASSERT_TRUE(alive.ok()) << alive.status().ToString();
  EXPECT_EQ(*alive, 0);
  ASSERT_TRUE(rt_->Stop(h, milliseconds(0)).ok());
  auto o = rt_->Poll(h);
  ASSERT_TRUE(o.ok());
  ASSERT_TRUE(o->exit.has_value());
  EXPECT_EQ(o->exit->signal, SIGKILL);
}

TEST_F(OciRuntimeTest, StartFailuresSayWhy) {
  WorkloadSpec missing = Spec("fail-1", {"/no/such/binary"});
  auto h = Start(missing);
  ASSERT_FALSE(h.ok());
  EXPECT_EQ(h.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(h.status().message().find("/no/such/binary"), std::string::npos)
      << h.status().ToString();
  EXPECT_FALSE(rt_->cgroups()->Exists(rt_->cgroups()->PathOf("fail-1")));

  WorkloadSpec garbage = Spec("fail-2", {"/bin/true"});
  garbage.artifact = tmp_ + "/garbage.tar";
  testing::WriteText(garbage.artifact, std::string(4096, 'g'));
  auto g = Start(garbage);
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.status().code(), Code::kInvalidArgument) << g.status().ToString();

  EXPECT_EQ(Start(Spec("Bad_Id")).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(Start(Spec("-flag")).status().code(), Code::kInvalidArgument);

  WorkloadSpec twice = Spec("twice-1", {"/bin/sleep", "1000"});
  ASSERT_TRUE(Start(twice).ok());
  EXPECT_EQ(Start(twice).status().code(), Code::kAlreadyExists);
}

TEST_F(OciRuntimeTest, ConfigVolumesAndReadOnlyRoot) {
  std::string data = tmp_ + "/vol-data";
  std::string ro = tmp_ + "/vol-ro";
  testing::WriteText(ro + "/given", "from host\n");
  WorkloadSpec spec =
      Spec("files-1",
           {"/bin/sh", "-c",
            "cat /config/app.conf /config/tls/ca.pem /ro/given; echo written > /data/out; "
            "touch /bin/x 2>/dev/null && echo root-writable; echo y > /ro/y 2>/dev/null && echo "
            "ro-writable; echo t > /tmp/t && echo tmp-ok; echo done"});
  spec.config = {{"app.conf", "x=1\n", 0644}, {"tls/ca.pem", "pem\n", 0644}};
  spec.volumes = {{"data", "/data", data, false}, {"ro", "/ro", ro, true}};
  auto h = Start(spec);
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  Observed o = WaitEnded(*rt_, *h);
  ASSERT_TRUE(o.exit.has_value());
  std::string log = Log(spec);
  EXPECT_NE(log.find("x=1\npem\nfrom host\n"), std::string::npos) << log;
  EXPECT_NE(log.find("tmp-ok\ndone\n"), std::string::npos) << log;
  EXPECT_EQ(log.find("root-writable"), std::string::npos) << log;
  EXPECT_EQ(log.find("ro-writable"), std::string::npos) << log;
  EXPECT_EQ(testing::ReadText(data + "/out"), "written\n");
  EXPECT_FALSE(fs::exists(ro + "/y"));
}

TEST_F(OciRuntimeTest, NetworkIsTheHostsUnlessIsolated) {
  WorkloadSpec isolated = Spec("net-1", {"/bin/ls", "/sys/class/net"});
  isolated.isolated_network = true;
  auto h = Start(isolated);
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  WaitEnded(*rt_, *h);
  EXPECT_EQ(Log(isolated), "lo\n");

  std::vector<std::string> host_links;
  for (const auto& e : fs::directory_iterator("/sys/class/net")) {
    host_links.push_back(e.path().filename());
  }
  if (host_links.size() < 2) GTEST_SKIP() << "the host has only a loopback interface";
  WorkloadSpec shared = Spec("net-2", {"/bin/ls", "/sys/class/net"});
  auto h2 = Start(shared);
  ASSERT_TRUE(h2.ok()) << h2.status().ToString();
  WaitEnded(*rt_, *h2);
  for (const auto& link : host_links) EXPECT_NE(Log(shared).find(link), std::string::npos) << link;
}

TEST(OciRuntimeAvailability, ExplainsAMissingRuntime) {
  OciOptions options;
  options.runtime_path = "/nonexistent/runc";
  OciRuntime rt(options);
  Status st = rt.Available();
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), Code::kFailedPrecondition);
  EXPECT_FALSE(st.message().empty());
}

}  // namespace
}  // namespace verge::node::runtime
