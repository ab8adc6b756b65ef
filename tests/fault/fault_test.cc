// Network fault scenarios: the real verge-cloud and 3 verge-nodes (5 in long mode), each in its
// own network namespace on a private bridge (netlab.h), with a device per node posting readings
// continuously, while the links lose packets, split, flap, shrink, slow down, a node's disk
// fills up, and processes are killed, frozen and restarted. Each scenario then asserts:
//   - the cloud holds exactly the readings the nodes accepted (answered 200), none twice;
//   - every node's desired state converged (a change made during the fault is applied);
//   - the native app deployed before the fault was never restarted (same pid, same startedAt,
//     0 restarts), where the machine can run native workloads;
//   - the cloud's status history tells what happened: a node cut off longer than
//     --offline-after went offline, then online; a shorter blip made no node offline.
// VERGE_FAULT_LONG=1 runs the durations (minutes per scenario); the default is a short
// version of each (`make test`). See docs/fault-tests.md.
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <thread>

#include "harness.h"
#include "netlab.h"

namespace verge::testing {
namespace {

using json = nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

bool LongMode() {
  const char* v = std::getenv("VERGE_FAULT_LONG");
  return v && std::string(v) == "1";
}
milliseconds Pick(milliseconds short_mode, milliseconds long_mode) {
  return LongMode() ? long_mode : short_mode;
}
int NodeCount() { return LongMode() ? 5 : 3; }

// The cloud's silences: a node heartbeats every second.
milliseconds DegradedAfter() { return Pick(seconds(5), seconds(20)); }
milliseconds OfflineAfter() { return Pick(seconds(15), seconds(60)); }
std::string Flag(milliseconds d) { return std::to_string(d.count()) + "ms"; }

int64_t WallMs() {
  return std::chrono::duration_cast<milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// "2026-11-21T10:00:00.000Z" -> epoch ms (-1 if it is not that shape).
int64_t ParseTimeMs(const std::string& s) {
  std::tm tm{};
  int ms = 0;
  if (std::sscanf(s.c_str(), "%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                  &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) < 6)
    return -1;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return static_cast<int64_t>(timegm(&tm)) * 1000 + ms;
}

bool CanRunNative() { return ::geteuid() == 0 && std::filesystem::exists("/sys/fs/cgroup"); }

// Pids of processes whose command line is exactly `argv`.
std::set<int> PidsOf(const std::vector<std::string>& argv) {
  std::string want;
  for (const auto& a : argv) want += a + '\0';
  std::set<int> out;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    std::string pid = e.path().filename().string();
    if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream f(e.path() / "cmdline");
    std::string cmd((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (cmd == want) out.insert(std::stoi(pid));
  }
  return out;
}

// A device that posts a batch of readings to its node's local API, from inside the node's
// network namespace, again and again, and counts a reading as accepted only when the node
// answered 200. A batch that got no 200 is sent again, unchanged, until it does (a retry of
// readings already stored is answered 200, listing them as duplicates).
class Sender {
 public:
  static constexpr int kBatch = 20;

  Sender(std::string netns, std::string address, std::string token, int64_t t0)
      : netns_(std::move(netns)), address_(std::move(address)), token_(std::move(token)), t0_(t0) {
    thread_ = std::thread([this] { Loop(); });
  }
  ~Sender() { Stop(); }

  // Stops after the batch in flight is accepted (or `give_up` passes).
  void Stop(milliseconds give_up = seconds(120)) {
    give_up_ms_ = give_up.count();
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }

  std::map<int64_t, double> Accepted() const {
    std::lock_guard lock(mu_);
    return accepted_;
  }
  size_t AcceptedCount() const {
    std::lock_guard lock(mu_);
    return accepted_.size();
  }
  // Answers other than 200, by status (0: no complete answer).
  std::map<int, int> Failures() const {
    std::lock_guard lock(mu_);
    return failures_;
  }
  std::string Problems() const {
    std::lock_guard lock(mu_);
    return problems_;
  }
  std::string LastError() const {
    std::lock_guard lock(mu_);
    return last_error_;
  }

 private:
  void Loop() {
    if (auto st = EnterNetns(netns_); !st.ok()) {
      std::lock_guard lock(mu_);
      problems_ += st.ToString() + "\n";
      return;
    }
    int64_t seq = 0;
    while (!stop_) {
      json batch = json::array();
      for (int i = 0; i < kBatch; ++i) {
        batch.push_back(
            {{"metric", "v"}, {"value", (seq + i) * 0.5}, {"timestamp", t0_ + seq + i}});
      }
      std::string body = batch.dump();
      Clock::time_point stop_seen{};
      for (;;) {
        auto r = PlainHttp(
            address_, "POST", "/data", body,
            {{"Authorization", "Bearer " + token_}, {"Content-Type", "application/json"}});
        if (r.ok() && r->status == 200) {
          Record(seq, *r);
          break;
        }
        {
          std::lock_guard lock(mu_);
          ++failures_[r.ok() ? r->status : 0];
          last_error_ = r.ok() ? std::to_string(r->status) + " " + r->body : r.status().ToString();
        }
        if (stop_) {
          if (stop_seen == Clock::time_point{}) stop_seen = Clock::now();
          if (Clock::now() - stop_seen > milliseconds(give_up_ms_.load())) {
            std::lock_guard lock(mu_);
            problems_ += "gave up on a batch after the test ended: " + last_error_ + "\n";
            return;
          }
        }
        std::this_thread::sleep_for(milliseconds(100));
      }
      seq += kBatch;
      std::this_thread::sleep_for(milliseconds(50));
    }
  }

  void Record(int64_t seq, const http::Response& r) {
    json j = json::parse(r.body, nullptr, false);
    int accepted = j.is_object() ? j.value("accepted", -1) : -1;
    int duplicates = 0;
    if (j.is_object() && j.contains("rejections")) {
      for (const auto& rj : j["rejections"]) duplicates += rj.value("reason", "") == "duplicate";
    }
    std::lock_guard lock(mu_);
    if (accepted + duplicates != kBatch) {
      problems_ += "a 200 that did not take the whole batch: " + r.body + "\n";
    }
    for (int i = 0; i < kBatch; ++i) accepted_[t0_ + seq + i] = (seq + i) * 0.5;
  }

  const std::string netns_;
  const std::string address_;
  const std::string token_;
  const int64_t t0_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> give_up_ms_{120000};
  mutable std::mutex mu_;
  std::map<int64_t, double> accepted_;  // ms timestamp -> value
  std::map<int, int> failures_;
  std::string problems_;
  std::string last_error_;
  std::thread thread_;
};

// A small tmpfs mounted on `dir` (a node's data dir) for the disk-full scenario; unmounted
// (lazily, in case something still holds it) when destroyed.
class SmallDisk {
 public:
  SmallDisk(const std::string& dir, int mb) : dir_(dir) {
    std::filesystem::create_directories(dir);
    std::string opts = "size=" + std::to_string(mb) + "m,mode=0711";
    if (::mount("tmpfs", dir.c_str(), "tmpfs", 0, opts.c_str()) != 0) {
      error_ = std::string("mount tmpfs on ") + dir + ": " + strerror(errno);
    }
  }
  ~SmallDisk() {
    if (error_.empty()) ::umount2(dir_.c_str(), MNT_DETACH);
  }
  const std::string& error() const { return error_; }

  // Writes a file until the disk is full; returns how many bytes went in.
  size_t Fill() {
    std::string path = dir_ + "/filler";
    FILE* f = std::fopen(path.c_str(), "w");
    if (!f) return 0;
    std::string chunk(64 * 1024, 'x');
    size_t total = 0;
    for (;;) {
      size_t n = std::fwrite(chunk.data(), 1, chunk.size(), f);
      total += n;
      if (n < chunk.size() || std::fflush(f) != 0) break;
    }
    std::fclose(f);
    return total;
  }
  void Free() { std::filesystem::remove(dir_ + "/filler"); }

 private:
  std::string dir_;
  std::string error_;
};

struct NodeRun {
  std::string member;  // n1..
  std::string name;    // the node's name: member-pid (cgroups are named after it)
  std::string dir;
  NodeOptions options;
  std::unique_ptr<Process> proc;
  std::string http;   // local API inside its namespace
  std::string token;  // its device's
  std::unique_ptr<Sender> sender;
  uint64_t min_version = 0;  // the desired version it must end with at least
};

// What a scenario expects of the status history.
std::vector<std::string> AllNodes() {
  std::vector<std::string> out;
  for (int i = 1; i <= NodeCount(); ++i) out.push_back("n" + std::to_string(i));
  return out;
}

struct HistoryExpectation {
  // Nodes that may go offline (and must come back online).
  std::set<std::string> may_go_offline;
  // Nodes that must have gone offline in [from, to] (wall ms), then online.
  std::set<std::string> must_go_offline;
  int64_t offline_from_ms = 0;
  int64_t offline_to_ms = 0;
  // The cloud was SIGKILLed: a link's end was never recorded, so two `connected` may follow
  // each other.
  bool cloud_killed = false;
};

class Fleet {
 public:
  // Creates the namespaces; the test skips if that fails.
  std::string Init(bool via_proxy = false) {
    std::vector<std::string> members = {"cloud"};
    for (int i = 1; i <= NodeCount(); ++i) members.push_back("n" + std::to_string(i));
    auto lab = NetLab::Create(members);
    if (!lab.ok()) return lab.status().ToString();
    lab_ = std::move(lab).value();
    via_proxy_ = via_proxy;
    // Native workloads run as `nobody`, which must reach the nodes' data dirs by path.
    std::filesystem::permissions(tmp_.path(), std::filesystem::perms::others_exec,
                                 std::filesystem::perm_options::add);
    t0_ = WallMs() - 3 * 3600 * 1000;
    return "";
  }

  ~Fleet() {
    for (auto& n : nodes_) {
      if (n.sender) n.sender->Stop(seconds(1));
    }
    // SIGTERM: the nodes stop their workloads (appsOnExit: stop).
    for (auto& n : nodes_) {
      if (n.proc && n.proc->Running()) {
        n.proc->Signal(SIGCONT);
        n.proc->Signal(SIGTERM);
      }
    }
    for (auto& n : nodes_) {
      if (n.proc) n.proc->Wait(seconds(30));
    }
    disk_.reset();  // after the node on it has stopped
    if (cloud_) {
      cloud_->process().Signal(SIGCONT);
      cloud_.reset();
    }
    proxy_.reset();
    if (lab_) lab_->KillStragglers();
  }

  NetLab& lab() { return *lab_; }

  // A small tmpfs at `dir`, unmounted once the nodes have stopped.
  SmallDisk& MountSmallDisk(const std::string& dir, int mb) {
    disk_ = std::make_unique<SmallDisk>(dir, mb);
    return *disk_;
  }
  const TempDir& tmp() const { return tmp_; }
  std::vector<NodeRun>& nodes() { return nodes_; }
  NodeRun& node(const std::string& member) {
    for (auto& n : nodes_) {
      if (n.member == member) return n;
    }
    throw std::invalid_argument(member);
  }

  // Runs fn(cloud) inside the cloud's namespace.
  template <typename F>
  auto Cl(F&& fn) {
    return InNetns(lab_->Netns("cloud"), [&] { return fn(*cloud_); });
  }

  void StartCloud() {
    std::string cfg = tmp_ / "cloud.yaml";
    std::ofstream(cfg) << "appReconcileInterval: 300ms\n";
    std::vector<std::string> flags = {"--degraded-after", Flag(DegradedAfter()),
                                      "--offline-after",  Flag(OfflineAfter()),
                                      "--config",         cfg};
    std::string api = api_.empty() ? "127.0.0.1:0" : api_;
    std::string link = link_.empty() ? lab_->Address("cloud") + ":0" : link_;
    cloud_ = std::make_unique<Cloud>(tmp_, flags, "cloud", api, link, lab_->Netns("cloud"));
    api_ = cloud_->api();
    link_ = cloud_->link();
  }
  Cloud& cloud() { return *cloud_; }
  void KillCloud() {
    cloud_->Stop(SIGKILL);
    cloud_.reset();
  }

  // The latency scenario's proxy, in the cloud's namespace, in front of the link port.
  void StartProxy(milliseconds delay) {
    proxy_ = std::make_unique<Process>(
        std::vector<std::string>{BinDir() + "/verge-delay-proxy", "--listen",
                                 lab_->Address("cloud") + ":0", "--to", link_, "--delay",
                                 Flag(delay)},
        tmp_ / "proxy.log", lab_->Netns("cloud"));
    std::string line;
    ASSERT_TRUE(Eventually([&] {
      std::string log = proxy_->Log();
      auto at = log.find("listening ");
      auto end = log.find('\n', at);
      if (at == std::string::npos || end == std::string::npos) return !proxy_->Running();
      line = log.substr(at + 10, end - at - 10);
      return true;
    }));
    ASSERT_FALSE(line.empty()) << proxy_->Log();
    proxy_address_ = line;
  }

  // Starts every node (data dir `dirs[member]` if given), waits until all are online and their
  // devices are accepted, deploys the idle app, and starts the senders.
  void StartNodes(const std::map<std::string, std::string>& dirs = {}) {
    std::string boot = cloud_->bootstrap_token();
    for (int i = 1; i <= NodeCount(); ++i) {
      NodeRun n;
      n.member = "n" + std::to_string(i);
      n.name = n.member + "-" + std::to_string(::getpid());
      n.dir = dirs.count(n.member) ? dirs.at(n.member) : tmp_ / n.name;
      std::string cfg = tmp_ / (n.name + ".yaml");
      std::ofstream(cfg) << "reconnectInitial: 100ms\nreconnectMax: 1s\n"
                         << "appBackoffInitial: 200ms\nappBackoffMax: 2s\nappsOnExit: stop\n"
                         << "autonomyAfterSilence: 8s\n";
      n.options = NodeOptions{.name = n.name,
                              .heartbeat = "1s",
                              .token = boot,
                              .data_dir = n.dir,
                              // The same port in every namespace: a restarted node keeps it.
                              .extra = {"--config", cfg, "--http-listen", "127.0.0.1:8080"},
                              .netns = lab_->Netns(n.member)};
      nodes_.push_back(std::move(n));
    }
    for (auto& n : nodes_) Launch(n);
    for (auto& n : nodes_) {
      ASSERT_TRUE(Eventually([&] { return NodeHttpAddress(n.dir).has_value(); }, seconds(60)))
          << n.proc->Log();
      n.http = *NodeHttpAddress(n.dir);
      ASSERT_TRUE(
          Eventually([&] { return Cl([&](Cloud& c) { return c.StatusOf(n.name); }) == "online"; },
                     seconds(60)))
          << n.proc->Log();
      n.token = Cl([&](Cloud& c) { return AddDevice(c, "d-" + n.member, n.name); });
      ASSERT_FALSE(n.token.empty());
    }
    DeployApp();
    for (auto& n : nodes_) {
      n.sender = std::make_unique<Sender>(lab_->Netns(n.member), n.http, n.token, t0_);
    }
    // Every device is known to its node before the fault starts.
    for (auto& n : nodes_) {
      ASSERT_TRUE(Eventually([&] { return n.sender->AcceptedCount() > 0; }, seconds(60)))
          << n.member << ": " << n.sender->LastError();
    }
  }

  // (Re)starts a node's process with its options (no token after the first start).
  void Launch(NodeRun& n) {
    NodeOptions o = n.options;
    if (n.proc) o.token.clear();
    std::filesystem::remove(n.dir + "/listen.json");
    n.proc = StartNode(tmp_, via_proxy_ ? proxy_address_ : link_, o);
  }

  // A desired-state change for `members` (a new device each): they must end with it applied.
  void ChangeDesiredState(const std::vector<std::string>& members) {
    for (const auto& m : members) {
      NodeRun& n = node(m);
      std::string device = "x-" + m + "-" + std::to_string(++changes_);
      uint64_t version = Cl([&](Cloud& c) -> uint64_t {
        auto res =
            c.Api("POST", "/api/v1/devices", json{{"name", device}, {"node", n.name}}.dump());
        EXPECT_TRUE(res.ok() && res->status == 201)
            << (res.ok() ? res->body : res.status().ToString());
        auto node = c.Node(n.name);
        return node ? (*node)["desiredVersion"].get<uint64_t>() : 0;
      });
      EXPECT_GT(version, n.min_version) << m;
      n.min_version = version;
    }
  }

  // Run(d), with a desired-state change for every node half way through.
  void RunWithChange(milliseconds d) {
    ASSERT_NO_FATAL_FAILURE(Run(d / 2));
    ChangeDesiredState(AllNodes());
    ASSERT_NO_FATAL_FAILURE(Run(d / 2));
  }

  // Lets the faults run for `d` while watching the nodes: none may exit.
  void Run(milliseconds d) {
    auto end = Clock::now() + d;
    while (Clock::now() < end) {
      for (auto& n : nodes_) {
        ASSERT_TRUE(n.proc->Running()) << n.member << " exited:\n" << n.proc->Log();
      }
      std::this_thread::sleep_for(milliseconds(200));
    }
  }

  // The assertions every scenario ends with (faults already cleared).
  void Verify(const HistoryExpectation& want) {
    auto started = Clock::now();
    for (auto& n : nodes_) n.sender->Stop();
    for (auto& n : nodes_) {
      SCOPED_TRACE(n.member);
      EXPECT_TRUE(n.proc->Running()) << n.proc->Log();
      EXPECT_EQ(n.sender->Problems(), "");
    }
    VerifyReadings();
    VerifyConverged();
    // From the heal until every accepted reading is in the cloud and every desired state is
    // applied (an upper bound: it includes the checks' own queries). docs/BENCHMARKS.md.
    std::printf("[ fault    ] heal to converged: %.1f s\n",
                std::chrono::duration<double>(Clock::now() - started).count());
    VerifyApp();
    VerifyHistory(want);
    std::printf("[ fault    ] verification took %.1f s\n",
                std::chrono::duration<double>(Clock::now() - started).count());
  }

  // The node's own events (autonomy.*, override.*) the cloud holds for `member`.
  std::vector<std::string> NodeEventTypes(const std::string& member) {
    std::vector<std::string> out;
    auto res = Cl([&](Cloud& c) {
      return c.Api("GET", "/api/v1/nodes/" + node(member).name + "/events?limit=10000");
    });
    if (!res.ok() || res->status != 200) return out;
    for (const auto& e : json::parse(res->body)) {
      std::string t = e["type"];
      if (t.find('.') != std::string::npos) out.push_back(t);
    }
    return out;
  }

  void Summary() {
    for (auto& n : nodes_) {
      std::string fails;
      for (auto [status, count] : n.sender->Failures()) {
        fails += " " + std::to_string(status) + "x" + std::to_string(count);
      }
      std::printf("[ fault    ] %s: %zu readings accepted; answers other than 200:%s\n",
                  n.member.c_str(), n.sender->AcceptedCount(),
                  fails.empty() ? " none" : fails.c_str());
    }
  }

 private:
  // Every point the cloud holds for a device, following the pages.
  std::vector<json> CloudPoints(const std::string& device) {
    return Cl([&](Cloud& c) {
      std::vector<json> out;
      std::string after;
      for (;;) {
        std::string path = "/api/v1/telemetry?device=" + device + "&limit=100000";
        if (!after.empty()) path += "&after=" + after;
        auto res = c.Api("GET", path);
        if (!res.ok() || res->status != 200) return std::vector<json>{};
        auto page = json::parse(res->body);
        for (auto& p : page) out.push_back(p);
        if (page.size() < 100000) return out;
        after = page.back()["metric"].get<std::string>() + "," +
                std::to_string(page.back()["tsNs"].get<int64_t>());
      }
    });
  }

  void VerifyReadings() {
    for (auto& n : nodes_) {
      SCOPED_TRACE(n.member);
      std::string device = "d-" + n.member;
      auto want = n.sender->Accepted();
      std::vector<json> points;
      bool all = Eventually(
          [&] {
            points = CloudPoints(device);
            return points.size() >= want.size();
          },
          Pick(seconds(120), seconds(300)));
      std::map<int64_t, double> stored;
      size_t count = 0;
      for (const auto& p : points) {
        if (p["metric"] != "v") continue;
        ++count;
        stored[p["tsNs"].get<int64_t>() / 1'000'000] = p["value"].get<double>();
      }
      size_t missing = 0, extra = 0;
      std::string gaps;  // the first missing spans, as reading numbers
      int64_t gap_from = -1, gap_to = -1;
      auto flush_gap = [&] {
        if (gap_from >= 0 && gaps.size() < 200)
          gaps += " [" + std::to_string(gap_from) + ", " + std::to_string(gap_to) + "]";
        gap_from = -1;
      };
      for (const auto& [ts, v] : want) {
        if (stored.count(ts)) continue;
        ++missing;
        if (gap_from >= 0 && ts - t0_ != gap_to + 1) flush_gap();
        if (gap_from < 0) gap_from = ts - t0_;
        gap_to = ts - t0_;
      }
      flush_gap();
      for (const auto& [ts, v] : stored) extra += !want.count(ts);
      EXPECT_TRUE(all) << "the cloud has " << points.size() << " of " << want.size();
      EXPECT_EQ(missing, 0u) << "accepted readings lost, of " << want.size() << ":" << gaps;
      EXPECT_EQ(count, stored.size()) << "readings stored twice";
      EXPECT_EQ(extra, 0u) << "readings stored that were never acknowledged with a 200";
      EXPECT_TRUE(stored == want) << "values differ";
    }
  }

  void VerifyConverged() {
    for (auto& n : nodes_) {
      SCOPED_TRACE(n.member);
      json last;
      EXPECT_TRUE(Eventually(
          [&] {
            auto node = Cl([&](Cloud& c) { return c.Node(n.name); });
            if (!node) return false;
            last = *node;
            return last["appliedVersion"] == last["desiredVersion"] &&
                   last["desiredVersion"].get<uint64_t>() >= std::max<uint64_t>(n.min_version, 1);
          },
          seconds(60)))
          << last.dump() << " (must reach " << n.min_version << ")";
      // The node's own view agrees: its link is back to connected (GET /status, in its
      // namespace).
      json status;
      EXPECT_TRUE(Eventually(
          [&] {
            auto r =
                InNetns(lab_->Netns(n.member), [&] { return PlainHttp(n.http, "GET", "/status"); });
            if (!r.ok() || r->status != 200) return false;
            status = json::parse(r->body, nullptr, false);
            return status.is_object() && status.value("linkState", "") == "connected";
          },
          seconds(60)))
          << status.dump();
    }
  }

  void DeployApp() {
    if (!CanRunNative()) {
      std::printf("[ fault    ] no native app: needs root and cgroups\n");
      return;
    }
    app_argv_ = {"/bin/sleep", std::to_string(1000000 + ::getpid())};
    json doc = {{"apiVersion", "verge/v1"},
                {"kind", "App"},
                {"metadata", {{"name", "idle"}}},
                {"spec",
                 {{"type", "native"},
                  {"replicas", NodeCount()},
                  {"command", app_argv_},
                  {"resources", {{"cpu", "10m"}, {"memory", "16Mi"}}},
                  {"placement", {{"antiAffinity", {"idle"}}}}}}};
    auto res = Cl([&](Cloud& c) { return c.Api("PUT", "/api/v1/apps/idle", doc.dump()); });
    ASSERT_TRUE(res.ok() && (res->status == 200 || res->status == 201))
        << (res.ok() ? res->body : res.status().ToString());
    json app;
    ASSERT_TRUE(Eventually([&] { return AppReady(&app); }, seconds(60))) << app.dump(2);
    for (const auto& p : app["placements"]) app_before_[p["node"].get<std::string>()] = p;
    app_pids_ = PidsOf(app_argv_);
    EXPECT_EQ(app_pids_.size(), static_cast<size_t>(NodeCount()));
  }

  bool AppReady(json* app) {
    auto res = Cl([&](Cloud& c) { return c.Api("GET", "/api/v1/apps/idle"); });
    if (!res.ok() || res->status != 200) return false;
    *app = json::parse(res->body, nullptr, false);
    if (!app->is_object() || (*app)["readyReplicas"] != NodeCount()) return false;
    for (const auto& p : (*app)["placements"]) {
      if (!p.contains("startedAt")) return false;
    }
    return (*app)["placements"].size() == static_cast<size_t>(NodeCount());
  }

  void VerifyApp() {
    if (app_argv_.empty()) return;
    json app;
    bool same = Eventually(
        [&] {
          if (!AppReady(&app)) return false;
          for (const auto& p : app["placements"]) {
            auto before = app_before_.find(p["node"].get<std::string>());
            if (before == app_before_.end() || p["startedAt"] != before->second["startedAt"] ||
                p["restarts"] != 0 || p["id"] != before->second["id"])
              return false;
          }
          return true;
        },
        seconds(60));
    json before = json::object();
    for (const auto& [node, p] : app_before_) before[node] = p;
    EXPECT_TRUE(same) << "workloads restarted without a spec change.\nbefore: " << before.dump(2)
                      << "\nafter: " << app.dump(2);
    EXPECT_EQ(PidsOf(app_argv_), app_pids_) << "the workload processes are not the same";
  }

  void VerifyHistory(const HistoryExpectation& want) {
    for (auto& n : nodes_) {
      SCOPED_TRACE(n.member);
      json node;
      EXPECT_TRUE(Eventually(
          [&] {
            auto got = Cl([&](Cloud& c) { return c.Node(n.name); });
            if (got) node = *got;
            return got && node["status"] == "online" && node["connected"] == true;
          },
          seconds(60)))
          << node.dump();
      auto res = Cl([&](Cloud& c) {
        return c.Api("GET", "/api/v1/nodes/" + n.name + "/events?limit=10000");
      });
      ASSERT_TRUE(res.ok() && res->status == 200);
      json events = json::parse(res->body);
      std::string story;
      std::vector<std::pair<std::string, int64_t>> status;  // online/degraded/offline
      int64_t prev = 0;
      std::string prev_link;
      int offline = 0;
      int64_t newest = 0;
      bool sorted = true;
      for (const auto& e : events) {
        std::string type = e["type"];
        int64_t t = ParseTimeMs(e["time"]);
        story +=
            "  " + e["time"].get<std::string>() + " " + type + " " + e.value("message", "") + "\n";
        sorted = sorted && t >= newest;
        newest = std::max(newest, t);
        // Dotted types (autonomy.connected, ...) are the node's own events, stamped by its clock
        // and uploaded when the link allows: only the cloud's own are checked against each other.
        if (type.find('.') != std::string::npos) continue;
        EXPECT_GE(t, prev) << "the cloud's events out of time order";
        prev = t;
        if (type == "online" || type == "degraded" || type == "offline") {
          if (!status.empty()) {
            EXPECT_NE(status.back().first, type) << "the same status twice in a row";
          }
          status.emplace_back(type, t);
          offline += type == "offline";
        }
        if (type == "connected" || type == "disconnected") {
          if (!(want.cloud_killed && type == "connected")) {
            EXPECT_NE(prev_link, type) << "link events do not alternate";
          }
          prev_link = type;
        }
      }
      // docs/api.md promises "oldest first"; node events uploaded late break that (reported,
      // not asserted here: see docs/fault-tests.md).
      EXPECT_TRUE(sorted) << "events not oldest first:\n" << story;
      ASSERT_FALSE(status.empty()) << story;
      EXPECT_EQ(status.front().first, "online") << story;
      EXPECT_EQ(status.back().first, "online") << story;
      EXPECT_EQ(prev_link, "connected") << story;
      if (want.must_go_offline.count(n.member)) {
        bool found = false;
        for (size_t i = 0; i + 1 < status.size(); ++i) {
          if (status[i].first != "offline") continue;
          found = status[i].second >= want.offline_from_ms &&
                  status[i].second <= want.offline_to_ms && status[i + 1].first == "online" &&
                  status[i + 1].second >= status[i].second;
        }
        EXPECT_TRUE(found) << "no offline in [" << want.offline_from_ms << ", "
                           << want.offline_to_ms << "] followed by online:\n"
                           << story;
        EXPECT_EQ(offline, 1) << story;
      } else if (!want.may_go_offline.count(n.member)) {
        EXPECT_EQ(offline, 0) << "offline although its link was never cut that long:\n" << story;
      }
      std::printf("[ fault    ] %s history:\n%s", n.member.c_str(), story.c_str());
    }
  }

  TempDir tmp_;
  std::unique_ptr<NetLab> lab_;
  bool via_proxy_ = false;
  int64_t t0_ = 0;
  std::unique_ptr<Cloud> cloud_;
  std::string api_, link_;
  std::unique_ptr<Process> proxy_;
  std::string proxy_address_;
  std::vector<NodeRun> nodes_;
  int changes_ = 0;
  std::vector<std::string> app_argv_;
  std::map<std::string, json> app_before_;
  std::set<int> app_pids_;
  std::unique_ptr<SmallDisk> disk_;
};

#define FLEET_OR_SKIP(f, ...) \
  Fleet f;                    \
  if (auto why = f.Init(__VA_ARGS__); !why.empty()) GTEST_SKIP() << why

// 30 % of the packets on the cloud's link dropped, both ways, for 2 min.
TEST(Fault, ThirtyPercentPacketLoss) {
  FLEET_OR_SKIP(f);
  ASSERT_NO_FATAL_FAILURE(f.StartCloud());
  ASSERT_NO_FATAL_FAILURE(f.StartNodes());
  ASSERT_TRUE(f.lab().SetLoss("cloud", 0.3).ok());
  milliseconds d = Pick(seconds(20), seconds(120));
  ASSERT_NO_FATAL_FAILURE(f.RunWithChange(d));
  ASSERT_TRUE(f.lab().ClearFaults("cloud").ok());
  f.Summary();
  // Heavy loss may really cut a link for longer than --offline-after: offline is allowed, but
  // only while the loss lasted, and the node must be back online.
  HistoryExpectation want;
  for (const auto& m : AllNodes()) want.may_go_offline.insert(m);
  f.Verify(want);
}

// One node cut off for 5 min (longer than --offline-after); the others are the control.
TEST(Fault, PartitionLongerThanOfflineAfter) {
  FLEET_OR_SKIP(f);
  ASSERT_NO_FATAL_FAILURE(f.StartCloud());
  ASSERT_NO_FATAL_FAILURE(f.StartNodes());
  milliseconds d = Pick(seconds(25), seconds(300));
  int64_t from = WallMs();
  ASSERT_TRUE(f.lab().Partition("n1", true).ok());
  ASSERT_NO_FATAL_FAILURE(f.Run(seconds(2)));
  // Changes made while n1 cannot hear them.
  f.ChangeDesiredState(AllNodes());
  ASSERT_NO_FATAL_FAILURE(f.Run(d - seconds(2)));
  int64_t to = WallMs();
  ASSERT_TRUE(f.lab().Partition("n1", false).ok());
  f.Summary();
  HistoryExpectation want;
  want.must_go_offline = {"n1"};
  // Its last heartbeat came up to a second before the cut; the sweep runs every second or so.
  want.offline_from_ms = from + OfflineAfter().count() - 2000;
  want.offline_to_ms = std::min(to, from + OfflineAfter().count() + 5000);
  f.Verify(want);
  // n1 told its side too, once it could: degraded, autonomous (the partition outlasted
  // autonomyAfterSilence), resyncing, connected.
  std::vector<std::string> types;
  EXPECT_TRUE(Eventually([&] {
    types = f.NodeEventTypes("n1");
    auto at = [&](const std::string& t) {
      return std::find(types.begin(), types.end(), t) - types.begin();
    };
    auto n = static_cast<std::ptrdiff_t>(types.size());
    return at("autonomy.autonomous") < n && at("autonomy.resyncing") < n &&
           std::find(types.begin() + at("autonomy.autonomous"), types.end(),
                     "autonomy.connected") != types.end();
  })) << ::testing::PrintToString(types);
}

// The cloud's link down and up every 10 s for 2 min: each gap is shorter than --offline-after.
TEST(Fault, LinkFlapping) {
  FLEET_OR_SKIP(f);
  ASSERT_NO_FATAL_FAILURE(f.StartCloud());
  ASSERT_NO_FATAL_FAILURE(f.StartNodes());
  milliseconds period = Pick(seconds(5), seconds(10));
  milliseconds d = Pick(seconds(30), seconds(120));
  bool down = false;
  int flips = 0;
  for (auto end = Clock::now() + d; Clock::now() < end;) {
    down = !down;
    ASSERT_TRUE(f.lab().Partition("cloud", down).ok());
    if (++flips == 4) f.ChangeDesiredState(AllNodes());  // made while the link is up
    ASSERT_NO_FATAL_FAILURE(f.Run(period));
  }
  ASSERT_TRUE(f.lab().ClearFaults("cloud").ok());
  f.Summary();
  f.Verify({});
}

// The cloud's link capped at 256 kbit/s each way for 2 min.
TEST(Fault, BandwidthCap256Kbit) {
  FLEET_OR_SKIP(f);
  ASSERT_NO_FATAL_FAILURE(f.StartCloud());
  ASSERT_NO_FATAL_FAILURE(f.StartNodes());
  ASSERT_TRUE(f.lab().Bandwidth("cloud", 256).ok());
  milliseconds d = Pick(seconds(20), seconds(120));
  ASSERT_NO_FATAL_FAILURE(f.RunWithChange(d));
  ASSERT_TRUE(f.lab().ClearFaults("cloud").ok());
  f.Summary();
  f.Verify({});
}

// Every node reaches the cloud through a proxy that adds 500 ms each way, from the join on.
TEST(Fault, FiveHundredMsAddedLatency) {
  FLEET_OR_SKIP(f, /*via_proxy=*/true);
  ASSERT_NO_FATAL_FAILURE(f.StartCloud());
  ASSERT_NO_FATAL_FAILURE(f.StartProxy(milliseconds(500)));
  ASSERT_NO_FATAL_FAILURE(f.StartNodes());
  milliseconds d = Pick(seconds(20), seconds(120));
  ASSERT_NO_FATAL_FAILURE(f.RunWithChange(d));
  f.Summary();
  f.Verify({});
}

// n1's data dir is a small tmpfs that fills up: the node refuses readings (and does not crash)
// until space is freed, then accepts again; what it accepted before reaches the cloud.
TEST(Fault, NodeDiskFull) {
  FLEET_OR_SKIP(f);
  SmallDisk& disk = f.MountSmallDisk(f.tmp() / "n1-disk", 64);
  if (!disk.error().empty()) GTEST_SKIP() << disk.error();
  ASSERT_NO_FATAL_FAILURE(f.StartCloud());
  ASSERT_NO_FATAL_FAILURE(f.StartNodes({{"n1", f.tmp() / "n1-disk"}}));
  ASSERT_NO_FATAL_FAILURE(f.Run(seconds(3)));
  NodeRun& n1 = f.node("n1");
  auto failures = [&] {
    int sum = 0;
    for (auto [status, count] : n1.sender->Failures()) sum += status == 503 ? count : 0;
    return sum;
  };
  int before = failures();
  size_t filled = disk.Fill();
  std::printf("[ fault    ] filled n1's disk with %zu bytes\n", filled);
  ASSERT_TRUE(Eventually([&] { return failures() > before; }, seconds(30)))
      << "n1 never answered 503 with its disk full; last: " << n1.sender->LastError();
  size_t accepted_when_full = n1.sender->AcceptedCount();
  f.ChangeDesiredState(AllNodes());
  ASSERT_NO_FATAL_FAILURE(f.Run(Pick(seconds(10), seconds(60))));
  std::printf("[ fault    ] n1 accepted %zu readings while its disk was full\n",
              n1.sender->AcceptedCount() - accepted_when_full);
  disk.Free();
  size_t after_free = n1.sender->AcceptedCount();
  EXPECT_TRUE(
      Eventually([&] { return n1.sender->AcceptedCount() > after_free + 100; }, seconds(30)))
      << "n1 does not accept readings again after space was freed: " << n1.sender->LastError();
  f.Summary();
  f.Verify({});
}

// The cloud SIGKILLed and started again on the same addresses while the nodes keep sending
// (once in short mode, three times in long mode).
TEST(Fault, CloudRestartUnderLoad) {
  FLEET_OR_SKIP(f);
  ASSERT_NO_FATAL_FAILURE(f.StartCloud());
  ASSERT_NO_FATAL_FAILURE(f.StartNodes());
  int restarts = LongMode() ? 3 : 1;
  for (int i = 0; i < restarts; ++i) {
    ASSERT_NO_FATAL_FAILURE(f.Run(Pick(seconds(5), seconds(30))));
    f.KillCloud();
    ASSERT_NO_FATAL_FAILURE(f.Run(seconds(3)));
    ASSERT_NO_FATAL_FAILURE(f.StartCloud());
    f.ChangeDesiredState(AllNodes());
  }
  ASSERT_NO_FATAL_FAILURE(f.Run(Pick(seconds(8), seconds(30))));
  f.Summary();
  HistoryExpectation want;
  want.cloud_killed = true;
  f.Verify(want);
}

// Processes frozen and killed: the cloud SIGSTOPped (shorter than --offline-after), then
// SIGCONTed; n2 SIGKILLed and restarted (its workload is re-adopted, not restarted); n3
// SIGSTOPped for a few seconds.
TEST(Fault, ProcessesFrozenAndKilled) {
  FLEET_OR_SKIP(f);
  ASSERT_NO_FATAL_FAILURE(f.StartCloud());
  ASSERT_NO_FATAL_FAILURE(f.StartNodes());
  ASSERT_NO_FATAL_FAILURE(f.Run(seconds(3)));
  f.cloud().process().Signal(SIGSTOP);
  std::this_thread::sleep_for(Pick(seconds(8), seconds(30)));
  f.cloud().process().Signal(SIGCONT);
  f.ChangeDesiredState(AllNodes());
  ASSERT_NO_FATAL_FAILURE(f.Run(seconds(3)));
  NodeRun& n2 = f.node("n2");
  n2.proc->Signal(SIGKILL);
  n2.proc->Wait(seconds(10));
  f.Launch(n2);
  ASSERT_NO_FATAL_FAILURE(f.Run(seconds(3)));
  NodeRun& n3 = f.node("n3");
  n3.proc->Signal(SIGSTOP);
  std::this_thread::sleep_for(Pick(seconds(4), seconds(10)));
  n3.proc->Signal(SIGCONT);
  ASSERT_NO_FATAL_FAILURE(f.Run(Pick(seconds(5), seconds(30))));
  f.Summary();
  f.Verify({});
}

}  // namespace
}  // namespace verge::testing
