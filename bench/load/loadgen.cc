// verge-loadgen: simulates N Verge nodes in one process against one real verge-cloud, to
// measure joins per second, how many links one cloud holds, and the heartbeat rate it
// sustains. It reuses the node's own code: node::Join for the join (one blocking HTTPS
// exchange per call, run from --join-threads threads) and node::LinkClient for the link
// (thousands of them share --io-threads io_contexts), so what it measures is the real
// protocol, TLS and all.
//
// Phases, each bounded in time: (1) identities: join the nodes that have none under
// --work-dir (or reuse them with --reuse), and report joins/s; stop here with --join-only.
// (2) for each of --steps (default: just --nodes): start more links at --ramp-per-sec and
// wait until they are connected or the connect deadline passes; (3) settle, then measure a
// window of --duration while the nodes heartbeat. (4) Stop every link and print a JSON
// summary on stdout. Progress goes to stderr.
//
// With --cloud-dir (the cloud's data dir) it also samples the cloud: its CPU time and RSS
// from /proc/PID (pid from listen.json) and its heartbeat counter from the REST API
// (GET /api/v1/status with admin.token), so the cloud's own cost is reported apart from the
// load tool's, which shares the machine.
//
// Loopback only: the cloud and API addresses must be 127.x.x.x literals.
//
// Threading: main thread drives the phases and samples; join threads run node::Join on
// distinct data dirs; io threads run the LinkClients. Counters shared across them are
// atomics or guarded by `mu` in Shared.
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/duration.h"
#include "common/fs.h"
#include "common/https_client.h"
#include "common/log.h"
#include "node/identity.h"
#include "node/link.h"

namespace verge::bench {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

std::atomic<bool> g_interrupted{false};
void OnSignal(int) { g_interrupted = true; }

double SecondsSince(SteadyClock::time_point t0) {
  return std::chrono::duration<double>(SteadyClock::now() - t0).count();
}

// Sleeps up to `d`, waking early on SIGINT/SIGTERM. Returns false if interrupted.
bool SleepFor(std::chrono::milliseconds d) {
  auto end = SteadyClock::now() + d;
  while (SteadyClock::now() < end) {
    if (g_interrupted) return false;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - SteadyClock::now());
    std::this_thread::sleep_for(std::min(left, std::chrono::milliseconds(100)));
  }
  return !g_interrupted;
}

double Round(double v, int digits = 2) {
  double m = std::pow(10.0, digits);
  return std::round(v * m) / m;
}

json Percentiles(std::vector<double> v) {
  if (v.empty()) return json::object();
  std::sort(v.begin(), v.end());
  auto at = [&](double q) {
    return Round(v[static_cast<size_t>(q * static_cast<double>(v.size() - 1))], 1);
  };
  return {{"p50", at(0.5)}, {"p90", at(0.9)}, {"p99", at(0.99)}, {"max", Round(v.back(), 1)}};
}

// Only 127.0.0.0/8 literals: this tool must never load anything but the local machine.
Status CheckLoopback(const std::string& what, const std::string& addr) {
  auto hp = http::SplitHostPort(addr);
  if (!hp.ok()) return hp.status().Wrap(what);
  const std::string& h = hp->first;
  int a, b, c, d;
  char tail;
  if (std::sscanf(h.c_str(), "%d.%d.%d.%d%c", &a, &b, &c, &d, &tail) != 4 || a != 127 || b < 0 ||
      b > 255 || c < 0 || c > 255 || d < 0 || d > 255) {
    return Error(Code::kInvalidArgument, "{} {}: only 127.x.x.x addresses are allowed", what, addr);
  }
  return Status::Ok();
}

// ---- the cloud process, observed from outside ---------------------------------------------

struct ProcSample {
  bool ok = false;
  double cpu_seconds = 0;    // utime + stime from /proc/PID/stat (clock ticks, 10 ms here)
  double sched_seconds = 0;  // sum of the threads' /proc/PID/task/*/schedstat run time (ns)
  int64_t rss_kb = 0;
  int64_t hwm_kb = 0;
  int threads = 0;
};

ProcSample SampleProc(int pid) {
  ProcSample s;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return s;
  auto close = line.rfind(')');
  if (close == std::string::npos) return s;
  std::istringstream rest(line.substr(close + 2));
  std::vector<std::string> f;  // f[0] is field 3 (state)
  for (std::string x; rest >> x;) f.push_back(x);
  if (f.size() < 18) return s;
  double tck = static_cast<double>(sysconf(_SC_CLK_TCK));
  s.cpu_seconds = (std::stod(f[11]) + std::stod(f[12])) / tck;  // fields 14, 15
  s.threads = std::stoi(f[17]);                                 // field 20
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  while (std::getline(status, line)) {
    if (line.starts_with("VmRSS:")) s.rss_kb = std::stoll(line.substr(6));
    if (line.starts_with("VmHWM:")) s.hwm_kb = std::stoll(line.substr(6));
  }
  std::error_code ec;
  for (const auto& t : fs::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
    std::ifstream ss(t.path() / "schedstat");
    uint64_t run_ns = 0;
    if (ss >> run_ns) s.sched_seconds += static_cast<double>(run_ns) / 1e9;
  }
  s.ok = true;
  return s;
}

double SelfCpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto sec = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
  };
  return sec(ru.ru_utime) + sec(ru.ru_stime);
}

int64_t SelfRssKb() { return SampleProc(static_cast<int>(getpid())).rss_kb; }

struct CloudObserver {
  int pid = 0;
  std::string api;
  std::string admin_token;
  std::string ca_pem;

  bool has_api() const { return !api.empty(); }

  // GET /api/v1/status; null on failure.
  json Status() const {
    if (!has_api()) return nullptr;
    http::HttpsClient client(api, http::ClientTls{ca_pem, "", "", false}, std::chrono::seconds(10));
    auto res = client.Do("GET", "/api/v1/status", "", {{"Authorization", "Bearer " + admin_token}});
    if (!res.ok() || res->response.status != 200) return nullptr;
    auto j = json::parse(res->response.body, nullptr, false);
    return j.is_discarded() ? json(nullptr) : j;
  }
};

// ---- simulated nodes -----------------------------------------------------------------------

struct Options {
  std::string cloud;
  std::string token;
  std::string cloud_dir;
  int nodes = 100;
  int join_threads = 2;
  int io_threads = 1;
  Millis heartbeat{15'000};
  Millis duration{60'000};
  std::optional<Millis> settle;
  std::optional<Millis> connect_deadline;
  double ramp_per_sec = 1000;
  std::string work_dir;
  std::string prefix = "load";
  bool reuse = false;
  bool keep = false;
  int first_index = 0;
  bool join_only = false;
  std::vector<int> steps;  // link counts to measure at, ascending; the last is `nodes`
  std::string on_window;
  // Reconnect storm: after the last window, run this (it restarts the cloud on the same
  // addresses and returns once the new cloud listens), then time how long until every link
  // is back.
  std::string storm;
  Millis storm_deadline{600'000};
};

struct Shared {
  std::atomic<int64_t> connected_now{0};
  std::atomic<int64_t> first_connects{0};
  std::atomic<int64_t> refused{0};
  std::mutex mu;
  std::map<std::string, int64_t> errors;  // GUARDED_BY(mu), capped
  std::vector<double> connect_ms;         // GUARDED_BY(mu), first connect latency per node

  void Error(const std::string& what) {
    std::lock_guard lock(mu);
    if (errors.size() < 20 || errors.count(what))
      ++errors[what];
    else
      ++errors["(other errors)"];
  }
};

struct SimNode {
  node::NodeIdentity id;
  std::unique_ptr<node::LinkClient> link;
  SteadyClock::time_point started;
  // Touched only on the node's io thread (state callbacks), after Start().
  node::LinkState last = node::LinkState::kIdle;
  bool ever_connected = false;
};

std::string NodeName(const Options& o, int i) { return fmt::format("{}-{:06d}", o.prefix, i); }

// Strips what varies per node or per attempt, so equal causes are counted together.
std::string ErrorClass(std::string s) {
  if (auto p = s.find("; retrying in"); p != std::string::npos) s.resize(p);
  for (auto& c : s) {
    if (c >= '0' && c <= '9') c = '#';
  }
  return s.substr(0, 160);
}

json RunIdentities(const Options& o, std::vector<SimNode>& nodes) {
  SystemClock clock;
  std::atomic<int> next{0};
  std::atomic<int64_t> joined{0}, reused{0}, failed{0};
  std::mutex mu;
  std::map<std::string, int64_t> errors;  // GUARDED_BY(mu)
  std::vector<double> latencies;          // GUARDED_BY(mu)
  auto t0 = SteadyClock::now();
  auto worker = [&] {
    for (;;) {
      if (g_interrupted) return;
      int i = next.fetch_add(1);
      if (i >= o.nodes) return;
      std::string name = NodeName(o, o.first_index + i);
      std::string dir = o.work_dir + "/" + name;
      if (o.reuse) {
        auto id = node::LoadIdentity(dir, clock);
        if (id.ok()) {
          nodes[static_cast<size_t>(i)].id = std::move(id).value();
          ++reused;
          continue;
        }
      }
      // A fresh identity; a retry of an unavailable cloud is bounded (3 attempts).
      Status last;
      for (int attempt = 0; attempt < 3 && !g_interrupted; ++attempt) {
        auto js = SteadyClock::now();
        auto id = node::Join(dir, o.cloud, o.token, name, clock);
        if (id.ok()) {
          double ms = SecondsSince(js) * 1000;
          nodes[static_cast<size_t>(i)].id = std::move(id).value();
          ++joined;
          std::lock_guard lock(mu);
          latencies.push_back(ms);
          last = Status::Ok();
          break;
        }
        last = id.status();
        if (last.code() != Code::kUnavailable) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(200 << attempt));
      }
      if (!last.ok()) {
        ++failed;
        std::lock_guard lock(mu);
        std::string cls = ErrorClass(last.message());
        if (errors.size() < 20 || errors.count(cls)) ++errors[cls];
      }
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < std::max(1, o.join_threads); ++t) threads.emplace_back(worker);
  // Progress while the workers run.
  std::atomic<bool> done{false};
  std::thread progress([&] {
    while (!done && !g_interrupted) {
      for (int k = 0; k < 20 && !done; ++k)
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (done) break;
      std::cerr << fmt::format("loadgen: identities {}/{} (joined {}, reused {}, failed {})\n",
                               std::min(next.load(), o.nodes), o.nodes, joined.load(),
                               reused.load(), failed.load());
    }
  });
  for (auto& t : threads) t.join();
  done = true;
  progress.join();
  double secs = SecondsSince(t0);
  json j = {
      {"joined", joined.load()},
      {"reused", reused.load()},
      {"failed", failed.load()},
      {"threads", o.join_threads},
      {"seconds", Round(secs, 3)},
      {"joins_per_sec",
       joined.load() > 0 && secs > 0 ? Round(static_cast<double>(joined.load()) / secs, 1) : 0.0},
      {"latency_ms", Percentiles(latencies)}};
  if (!errors.empty()) j["errors"] = errors;
  return j;
}

v1::Hello MakeHello(const std::string& name, Millis heartbeat) {
  v1::Hello h;
  h.set_node_name(name);
  h.set_protocol_version(1);
  h.set_agent_version("loadgen-" VERGE_VERSION);
  h.set_heartbeat_interval_ms(static_cast<uint32_t>(heartbeat.count()));
  auto* info = h.mutable_info();
  info->set_type("gateway");
  info->set_region("bench");
  (*info->mutable_labels())["sim"] = "loadgen";
  info->set_os("linux");
  info->set_arch("x86_64");
  return h;
}

void RaiseFileLimit(int nodes) {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < static_cast<rlim_t>(nodes) + 256) {
    std::cerr << fmt::format(
        "loadgen: warning: RLIMIT_NOFILE is {} (hard limit), too low for {} links; raise the hard "
        "limit (ulimit -Hn) — the cloud needs as many too\n",
        rl.rlim_cur, nodes);
  }
}

// Runs the user's --on-window command with VERGE_LOADGEN_WINDOW=begin|end and
// VERGE_LOADGEN_NODES=<step>, e.g. to read packet counters exactly at the window's edges.
void RunHook(const std::string& cmd, const char* edge, int step) {
  if (cmd.empty()) return;
  setenv("VERGE_LOADGEN_WINDOW", edge, 1);
  setenv("VERGE_LOADGEN_NODES", std::to_string(step).c_str(), 1);
  int rc = std::system(cmd.c_str());
  if (rc != 0) std::cerr << fmt::format("loadgen: --on-window {} exited with {}\n", edge, rc);
}

// The links of all simulated nodes, on `io_threads` io_contexts.
class Fleet {
 public:
  Fleet(const Options& o, std::vector<SimNode>& nodes) : o_(o), nodes_(nodes) {
    for (int t = 0; t < o.io_threads; ++t) {
      ioc_.push_back(std::make_unique<boost::asio::io_context>(1));
      guards_.push_back(boost::asio::make_work_guard(*ioc_.back()));
    }
    for (auto& c : ioc_) threads_.emplace_back([c = c.get()] { c->run(); });
  }
  ~Fleet() { StopAll(); }

  // Starts the links of nodes [started_, target) at the ramp rate and waits until they are
  // connected, refused, or the deadline passed.
  json ConnectUpTo(size_t target) {
    target = std::min(target, nodes_.size());
    size_t from = started_;
    int64_t want = 0;  // links expected to connect in this step
    for (size_t i = from; i < target; ++i) want += nodes_[i].id.cert_pem.empty() ? 0 : 1;
    int64_t first0 = shared_.first_connects.load(), refused0 = shared_.refused.load();
    // Link setup costs milliseconds of CPU on each side; allow 25 ms per link at least.
    double count = static_cast<double>(target - from);
    Millis deadline = o_.connect_deadline.value_or(Millis(static_cast<int64_t>(
        std::max({120'000.0, 3000.0 * count / o_.ramp_per_sec, 25.0 * count}))));
    std::cerr << fmt::format("loadgen: connecting {} more links (to {}) at {}/s, deadline {}\n",
                             want, target, o_.ramp_per_sec, FormatDuration(deadline));
    {
      std::lock_guard lock(shared_.mu);
      shared_.connect_ms.clear();
    }
    auto t0 = SteadyClock::now();
    double self0 = SelfCpuSeconds();
    int64_t last_report = 0;
    bool complete = false;
    while (!g_interrupted) {
      double elapsed = SecondsSince(t0);
      size_t due = std::min(target, from + static_cast<size_t>(elapsed * o_.ramp_per_sec) + 1);
      for (; started_ < due; ++started_) Start(nodes_[started_]);
      int64_t done = (shared_.first_connects.load() - first0) + (shared_.refused.load() - refused0);
      if (started_ >= target && done >= want) {
        complete = true;
        break;
      }
      if (elapsed * 1000 > static_cast<double>(deadline.count())) break;
      if (static_cast<int64_t>(elapsed) >= last_report + 5) {
        last_report = static_cast<int64_t>(elapsed);
        std::cerr << fmt::format("loadgen: started {} connected {}\n", started_,
                                 shared_.first_connects.load());
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    double secs = SecondsSince(t0);
    int64_t connected = shared_.first_connects.load() - first0;
    std::lock_guard lock(shared_.mu);
    return {{"wanted", want},
            {"connected", connected},
            {"refused", shared_.refused.load() - refused0},
            {"complete", complete && connected == want},
            {"seconds", Round(secs, 3)},
            {"ramp_per_sec", o_.ramp_per_sec},
            {"connects_per_sec", Round(static_cast<double>(connected) / secs, 1)},
            {"latency_ms", Percentiles(shared_.connect_ms)},
            {"loadgen_cpu_seconds", Round(SelfCpuSeconds() - self0, 3)}};
  }

  int64_t connected_now() const { return shared_.connected_now.load(); }
  int64_t first_connects() const { return shared_.first_connects.load(); }

  uint64_t SumHeartbeats(uint64_t* connects, uint64_t* failures) const {
    uint64_t hb = 0, c = 0, f = 0;
    for (size_t i = 0; i < started_; ++i) {
      if (!nodes_[i].link) continue;
      auto s = nodes_[i].link->stats();
      hb += s.heartbeats_sent;
      c += s.connects;
      f += s.failures;
    }
    *connects = c;
    *failures = f;
    return hb;
  }

  json Errors() {
    std::lock_guard lock(shared_.mu);
    return shared_.errors.empty() ? json(nullptr) : json(shared_.errors);
  }

  // Stops every link, then the io threads; bounded (5 s for the links to wind down).
  void StopAll() {
    if (ioc_.empty()) return;
    for (size_t i = 0; i < started_; ++i) {
      if (nodes_[i].link) nodes_[i].link->Stop();
    }
    auto t0 = SteadyClock::now();
    while (SecondsSince(t0) < 5) {
      bool done = true;
      for (size_t i = 0; i < started_ && done; ++i) {
        if (!nodes_[i].link) continue;
        auto st = nodes_[i].link->stats().state;
        done = st == node::LinkState::kStopped || st == node::LinkState::kRefused ||
               st == node::LinkState::kIdle;
      }
      if (done) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    guards_.clear();
    for (auto& c : ioc_) c->stop();
    for (auto& t : threads_) t.join();
    threads_.clear();
    for (auto& n : nodes_) n.link.reset();
    ioc_.clear();
  }

 private:
  void Start(SimNode& n) {
    if (n.id.cert_pem.empty()) return;  // its join failed
    node::LinkOptions lo;
    lo.cloud = o_.cloud;
    lo.ca_pem = n.id.ca_pem;
    lo.cert_pem = n.id.cert_pem;
    lo.key_pem = n.id.key_pem;
    lo.node_name = n.id.name;
    lo.heartbeat = o_.heartbeat;
    lo.reconnect_initial = Millis(1000);
    lo.reconnect_max = Millis(30'000);
    std::string name = n.id.name;
    Millis hb = o_.heartbeat;
    SimNode* np = &n;
    Shared* sh = &shared_;
    n.link = std::make_unique<node::LinkClient>(
        ioc_[next_ioc_++ % ioc_.size()]->get_executor(), lo,
        [name, hb] { return MakeHello(name, hb); }, nullptr,
        [np, sh](node::LinkState s, const std::string& detail) {
          using node::LinkState;
          if (np->last == LinkState::kConnected && s != LinkState::kConnected) --sh->connected_now;
          if (s == LinkState::kConnected && np->last != LinkState::kConnected) {
            ++sh->connected_now;
            if (!np->ever_connected) {
              np->ever_connected = true;
              ++sh->first_connects;
              std::lock_guard lock(sh->mu);
              sh->connect_ms.push_back(SecondsSince(np->started) * 1000);
            }
          }
          if (s == LinkState::kBackoff) sh->Error(ErrorClass(detail));
          if (s == LinkState::kRefused) {
            ++sh->refused;
            sh->Error("refused: " + ErrorClass(detail));
          }
          np->last = s;
        });
    n.started = SteadyClock::now();
    n.link->Start();
  }

  const Options& o_;
  std::vector<SimNode>& nodes_;
  Shared shared_;
  std::vector<std::unique_ptr<boost::asio::io_context>> ioc_;
  using Guard = boost::asio::executor_work_guard<boost::asio::io_context::executor_type>;
  std::vector<Guard> guards_;
  std::vector<std::thread> threads_;
  size_t started_ = 0;
  size_t next_ioc_ = 0;
};

// Settles, then measures one window at the current number of links.
json MeasureWindow(const Options& o, Fleet& fleet, const CloudObserver& cloud, int step) {
  Millis settle = o.settle.value_or(std::min(o.heartbeat + Millis(1000), Millis(20'000)));
  if (!g_interrupted && settle.count() > 0) {
    std::cerr << fmt::format("loadgen: settling for {}\n", FormatDuration(settle));
    SleepFor(settle);
  }
  uint64_t connects0 = 0, failures0 = 0, connects1 = 0, failures1 = 0;
  RunHook(o.on_window, "begin", step);
  uint64_t hb0 = fleet.SumHeartbeats(&connects0, &failures0);
  json status0 = cloud.Status();
  ProcSample p0 = cloud.pid ? SampleProc(cloud.pid) : ProcSample{};
  double self0 = SelfCpuSeconds();
  auto t0 = SteadyClock::now();
  int64_t cmin = fleet.connected_now(), cmax = cmin;
  std::cerr << fmt::format("loadgen: measuring {} links for {}\n", cmin,
                           FormatDuration(o.duration));
  int64_t next_report = 10;
  while (!g_interrupted && SecondsSince(t0) * 1000 < static_cast<double>(o.duration.count())) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    int64_t c = fleet.connected_now();
    cmin = std::min(cmin, c);
    cmax = std::max(cmax, c);
    if (SecondsSince(t0) >= static_cast<double>(next_report)) {
      next_report += 10;
      std::cerr << fmt::format("loadgen: {:.0f}s connected {}\n", SecondsSince(t0), c);
    }
  }
  uint64_t hb1 = fleet.SumHeartbeats(&connects1, &failures1);
  json status1 = cloud.Status();
  ProcSample p1 = cloud.pid ? SampleProc(cloud.pid) : ProcSample{};
  double self1 = SelfCpuSeconds();
  double secs = SecondsSince(t0);
  RunHook(o.on_window, "end", step);
  json w = {
      {"seconds", Round(secs, 3)},
      {"settle_ms", settle.count()},
      {"connected_min", cmin},
      {"connected_max", cmax},
      {"heartbeats_sent", hb1 - hb0},
      {"heartbeats_sent_per_sec", Round(static_cast<double>(hb1 - hb0) / secs, 1)},
      {"heartbeats_offered_per_sec",
       Round(static_cast<double>(cmin) * 1000.0 / static_cast<double>(o.heartbeat.count()), 1)},
      {"reconnects", connects1 - connects0},
      {"link_failures", failures1 - failures0},
      {"loadgen_cpu_percent", Round(100.0 * (self1 - self0) / secs, 2)},
      {"loadgen_rss_kb", SelfRssKb()}};
  if (status0.is_object() && status1.is_object()) {
    auto recv = status1.value("heartbeats", uint64_t{0}) - status0.value("heartbeats", uint64_t{0});
    w["cloud_heartbeats_received"] = recv;
    w["cloud_heartbeats_per_sec"] = Round(static_cast<double>(recv) / secs, 1);
    w["cloud_status"] = status1;
  }
  if (p0.ok && p1.ok) {
    double cpu = p1.cpu_seconds - p0.cpu_seconds;
    w["cloud_cpu_seconds"] = Round(cpu, 3);
    w["cloud_cpu_percent"] = Round(100.0 * cpu / secs, 2);
    w["cloud_cpu_percent_schedstat"] =
        Round(100.0 * (p1.sched_seconds - p0.sched_seconds) / secs, 3);
    w["cloud_rss_kb"] = p1.rss_kb;
    w["cloud_threads"] = p1.threads;
  }
  return w;
}

// The reconnect storm (--storm): restarts the cloud through the command, then follows the
// links back: the time from the new cloud listening until 50/90/99/100 % of them are
// connected again, and the new cloud's CPU and peak RSS meanwhile.
json MeasureStorm(const Options& o, Fleet& fleet, CloudObserver& cloud) {
  int64_t want = fleet.first_connects();
  std::cerr << fmt::format("loadgen: storm: restarting the cloud under {} links\n", want);
  auto k0 = SteadyClock::now();
  int rc = std::system(o.storm.c_str());
  double restart_s = SecondsSince(k0);
  json out = {
      {"links", want}, {"restart_command_exit", rc}, {"restart_seconds", Round(restart_s, 3)}};
  if (!o.cloud_dir.empty()) {
    if (auto listen = ReadFile(o.cloud_dir + "/listen.json"); listen.ok()) {
      auto j = json::parse(*listen, nullptr, false);
      if (j.is_object() && j.contains("pid")) cloud.pid = j["pid"].get<int>();
    }
  }
  auto t0 = SteadyClock::now();
  std::map<int, double> at;  // percent -> seconds
  int64_t peak_rss = 0;
  double next_report = 5;
  ProcSample last{};
  // (seconds, cloud CPU seconds) samples, for the busiest second.
  std::vector<std::pair<double, double>> cpu_at;
  while (!g_interrupted) {
    int64_t c = fleet.connected_now();
    double secs = SecondsSince(t0);
    for (int pct : {50, 90, 99, 100}) {
      if (!at.count(pct) && c * 100 >= want * pct) at[pct] = secs;
    }
    if (cloud.pid) {
      ProcSample p = SampleProc(cloud.pid);
      if (p.ok) {
        peak_rss = std::max(peak_rss, p.rss_kb);
        last = p;
        cpu_at.emplace_back(secs, p.cpu_seconds);
      }
    }
    if (at.count(100) || secs * 1000 > static_cast<double>(o.storm_deadline.count())) break;
    if (secs >= next_report) {
      next_report += 5;
      std::cerr << fmt::format("loadgen: storm {:.0f}s: {} of {} back\n", secs, c, want);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  json back = json::object();
  for (const auto& [pct, secs] : at) back[fmt::format("p{}", pct)] = Round(secs, 3);
  out["seconds_until_back"] = back;
  out["all_back"] = at.count(100) > 0;
  out["connected_at_end"] = fleet.connected_now();
  if (last.ok) {
    // The new cloud process's whole CPU time: it started with the storm.
    out["cloud_cpu_seconds"] = Round(last.cpu_seconds, 3);
    if (at.count(100) && at[100] > 0)
      out["cloud_cpu_percent_avg"] = Round(100.0 * last.cpu_seconds / (restart_s + at[100]), 1);
    out["cloud_peak_rss_kb"] = peak_rss;
    // The busiest second: the most CPU the cloud used in any window of at least 1 s.
    double peak = 0;
    size_t j = 0;
    for (size_t i = 0; i < cpu_at.size(); ++i) {
      while (j < cpu_at.size() && cpu_at[j].first - cpu_at[i].first < 1.0) ++j;
      if (j == cpu_at.size()) break;
      double span = cpu_at[j].first - cpu_at[i].first;
      peak = std::max(peak, (cpu_at[j].second - cpu_at[i].second) / span);
    }
    out["cloud_peak_cpu_percent_1s"] = Round(100.0 * peak, 1);
  }
  return out;
}

int Run(Options o) {
  // Cloud observation, when its data dir is known.
  CloudObserver cloud;
  if (!o.cloud_dir.empty()) {
    auto listen = ReadFile(o.cloud_dir + "/listen.json");
    if (!listen.ok()) {
      std::cerr << "verge-loadgen: --cloud-dir: " << listen.status().message() << "\n";
      return 2;
    }
    auto j = json::parse(*listen, nullptr, false);
    if (!j.is_object() || !j.contains("link") || !j.contains("api") || !j.contains("pid")) {
      std::cerr << "verge-loadgen: --cloud-dir: listen.json lacks link/api/pid\n";
      return 2;
    }
    if (o.cloud.empty()) o.cloud = j["link"].get<std::string>();
    cloud.api = j["api"].get<std::string>();
    cloud.pid = j["pid"].get<int>();
    auto first_line = [](const std::string& s) { return s.substr(0, s.find_first_of("\r\n")); };
    auto admin = ReadFile(o.cloud_dir + "/admin.token");
    auto ca = ReadFile(o.cloud_dir + "/pki/ca.crt");
    if (admin.ok() && ca.ok()) {
      cloud.admin_token = first_line(*admin);
      cloud.ca_pem = *ca;
    } else {
      cloud.api.clear();
    }
    if (o.token.empty()) {
      if (auto t = ReadFile(o.cloud_dir + "/bootstrap.token"); t.ok()) o.token = first_line(*t);
    }
    if (!cloud.api.empty()) {
      if (auto st = CheckLoopback("API address", cloud.api); !st.ok()) {
        std::cerr << "verge-loadgen: " << st.message() << "\n";
        return 2;
      }
    }
  }
  std::vector<std::string> errors;
  if (o.cloud.empty())
    errors.push_back("--cloud (or --cloud-dir) is required");
  else if (auto st = CheckLoopback("--cloud", o.cloud); !st.ok())
    errors.push_back(st.message());
  if (o.token.empty() && !o.reuse)
    errors.push_back("--token (or --cloud-dir) is required unless --reuse");
  if (o.nodes < 1 || o.nodes > 200'000) errors.push_back("--nodes must be 1..200000");
  if (o.first_index < 0 || o.first_index > 999'999 - o.nodes)
    errors.push_back("--first-index out of range");
  if (o.join_threads < 1 || o.join_threads > 64) errors.push_back("--join-threads must be 1..64");
  if (o.io_threads < 1 || o.io_threads > 64) errors.push_back("--io-threads must be 1..64");
  if (o.heartbeat.count() < 10) errors.push_back("--heartbeat must be at least 10ms");
  if (o.duration.count() < 0 || o.duration > Millis(3'600'000))
    errors.push_back("--duration must be 0..1h");
  if (o.ramp_per_sec <= 0) errors.push_back("--ramp-per-sec must be positive");
  if (o.reuse && o.work_dir.empty()) errors.push_back("--reuse needs --work-dir");
  for (size_t i = 0; i < o.steps.size(); ++i) {
    if (o.steps[i] < 1 || o.steps[i] > o.nodes || (i > 0 && o.steps[i] <= o.steps[i - 1])) {
      errors.push_back("--steps must be increasing counts within 1..--nodes");
      break;
    }
  }
  if (!errors.empty()) {
    for (auto& e : errors) std::cerr << "verge-loadgen: " << e << "\n";
    return 2;
  }
  if (o.steps.empty() || o.steps.back() != o.nodes) o.steps.push_back(o.nodes);
  bool own_dir = false;
  if (o.work_dir.empty()) {
    std::string tmpl = (fs::temp_directory_path() / "verge-loadgen-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) {
      std::cerr << "verge-loadgen: cannot create a temporary work dir\n";
      return 1;
    }
    o.work_dir = tmpl;
    own_dir = !o.keep;
  } else if (auto st = MakeDirs(o.work_dir); !st.ok()) {
    std::cerr << "verge-loadgen: --work-dir: " << st.message() << "\n";
    return 1;
  }
  RaiseFileLimit(o.nodes);

  json out;
  out["cloud"] = o.cloud;
  out["nodes"] = o.nodes;
  out["heartbeat_ms"] = o.heartbeat.count();
  out["io_threads"] = o.io_threads;
  out["work_dir"] = own_dir ? "(temporary, removed)" : o.work_dir;

  // (1) identities.
  std::vector<SimNode> nodes(static_cast<size_t>(o.nodes));
  std::cerr << fmt::format("loadgen: preparing {} identities against {} ({} join threads)\n",
                           o.nodes, o.cloud, o.join_threads);
  ProcSample c0 = cloud.pid ? SampleProc(cloud.pid) : ProcSample{};
  double self0 = SelfCpuSeconds();
  out["join"] = RunIdentities(o, nodes);
  out["join"]["loadgen_cpu_seconds"] = Round(SelfCpuSeconds() - self0, 3);
  ProcSample c1 = cloud.pid ? SampleProc(cloud.pid) : ProcSample{};
  if (c0.ok && c1.ok) {
    out["join"]["cloud_cpu_seconds"] = Round(c1.cpu_seconds - c0.cpu_seconds, 3);
    out["join"]["cloud_rss_kb_before"] = c0.rss_kb;
    out["join"]["cloud_rss_kb_after"] = c1.rss_kb;
  }
  std::cerr << "loadgen: join " << out["join"].dump() << "\n";
  int64_t with_identity = 0;
  for (const auto& n : nodes) with_identity += n.id.cert_pem.empty() ? 0 : 1;
  bool ok = out["join"]["failed"].get<int64_t>() == 0 && with_identity == o.nodes;

  // (2)-(3) for each step: connect up to it, settle, measure a window.
  if (!o.join_only) {
    Fleet fleet(o, nodes);
    out["steps"] = json::array();
    for (int step : o.steps) {
      if (g_interrupted) break;
      json s;
      s["nodes"] = step;
      ProcSample b0 = cloud.pid ? SampleProc(cloud.pid) : ProcSample{};
      s["connect"] = fleet.ConnectUpTo(static_cast<size_t>(step));
      ProcSample b1 = cloud.pid ? SampleProc(cloud.pid) : ProcSample{};
      if (b0.ok && b1.ok) {
        s["connect"]["cloud_cpu_seconds"] = Round(b1.cpu_seconds - b0.cpu_seconds, 3);
        s["connect"]["cloud_rss_kb_before"] = b0.rss_kb;
      }
      std::cerr << "loadgen: connect " << s["connect"].dump() << "\n";
      ok = ok && s["connect"]["complete"].get<bool>();
      s["window"] = MeasureWindow(o, fleet, cloud, step);
      ok = ok && s["window"]["connected_min"].get<int64_t>() == fleet.first_connects();
      std::cerr << "loadgen: window " << s["window"].dump() << "\n";
      out["steps"].push_back(std::move(s));
    }
    if (!o.storm.empty() && !g_interrupted) {
      out["storm"] = MeasureStorm(o, fleet, cloud);
      ok = ok && out["storm"]["all_back"].get<bool>();
      std::cerr << "loadgen: storm " << out["storm"].dump() << "\n";
    }
    std::cerr << "loadgen: stopping\n";
    fleet.StopAll();
    if (auto e = fleet.Errors(); !e.is_null()) out["link_errors"] = e;
  }
  if (own_dir) {
    std::error_code ec;
    fs::remove_all(o.work_dir, ec);
  }
  out["interrupted"] = g_interrupted.load();
  std::cout << out.dump(2) << std::endl;
  return ok && !g_interrupted ? 0 : 1;
}

}  // namespace
}  // namespace verge::bench

int main(int argc, char** argv) {
  using namespace verge;
  bench::Options o;
  CLI::App app{
      "verge-loadgen: simulates N Verge nodes in one process against one verge-cloud on this "
      "machine, and prints a JSON summary",
      "verge-loadgen"};
  std::string heartbeat = "15s", duration = "60s", settle, connect_deadline, log_level = "warn";
  app.add_option("--cloud", o.cloud, "Link address of the cloud, 127.x.x.x:PORT");
  app.add_option("--token", o.token, "Bootstrap token");
  app.add_option("--cloud-dir", o.cloud_dir,
                 "The cloud's data dir: defaults --cloud/--token from listen.json and "
                 "bootstrap.token, and samples the cloud's CPU, RSS and heartbeat counter");
  app.add_option("--nodes", o.nodes, "Simulated nodes")->capture_default_str();
  app.add_option("--join-threads", o.join_threads, "Threads running joins")->capture_default_str();
  app.add_option("--io-threads", o.io_threads, "Threads running the links")->capture_default_str();
  app.add_option("--heartbeat", heartbeat, "Heartbeat interval")->capture_default_str();
  app.add_option("--duration", duration, "How long to hold the links (measurement window)")
      ->capture_default_str();
  app.add_option(
      "--settle", settle,
      "Wait after the connect phase before measuring (default: heartbeat + 1s, at most 20s)");
  app.add_option(
      "--connect-deadline", connect_deadline,
      "Give up waiting for a step's links after this (default: max(120s, 3 × links/ramp, "
      "25ms × links))");
  app.add_option("--ramp-per-sec", o.ramp_per_sec, "Links started per second")
      ->capture_default_str();
  app.add_option("--work-dir", o.work_dir,
                 "Where node identities are kept, one subdir per node (default: a temporary dir, "
                 "removed at exit)");
  app.add_option("--name-prefix", o.prefix, "Node names are PREFIX-NNNNNN")->capture_default_str();
  app.add_option("--first-index", o.first_index, "Number of the first node (names PREFIX-NNNNNN)")
      ->capture_default_str();
  app.add_flag("--join-only", o.join_only, "Prepare the identities, report, and exit");
  app.add_option("--steps", o.steps,
                 "Measure a window at each of these link counts (e.g. 1000,5000,10000), "
                 "connecting more links between windows")
      ->delimiter(',');
  app.add_option("--on-window", o.on_window,
                 "Shell command run at each window's begin and end, with VERGE_LOADGEN_WINDOW="
                 "begin|end and VERGE_LOADGEN_NODES set");
  std::string storm_deadline = "10m";
  app.add_option(
      "--storm", o.storm,
      "Reconnect storm: after the last window run this shell command, which must restart "
      "the cloud on the same addresses and return once it listens; then time until every "
      "link is back");
  app.add_option("--storm-deadline", storm_deadline, "Give up waiting for the storm after this")
      ->capture_default_str();
  app.add_flag("--reuse", o.reuse, "Reuse identities already in --work-dir instead of joining");
  app.add_flag("--keep", o.keep, "Keep the temporary work dir");
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  std::vector<std::string> errors;
  auto dur = [&](const char* flag, const std::string& text) -> std::optional<Millis> {
    auto d = ParseDuration(text);
    if (!d.ok()) {
      errors.push_back(std::string(flag) + ": " + d.status().message());
      return std::nullopt;
    }
    return *d;
  };
  if (auto d = dur("--heartbeat", heartbeat)) o.heartbeat = *d;
  if (auto d = dur("--duration", duration)) o.duration = *d;
  if (auto d = dur("--storm-deadline", storm_deadline)) o.storm_deadline = *d;
  if (!settle.empty()) o.settle = dur("--settle", settle);
  if (!connect_deadline.empty()) o.connect_deadline = dur("--connect-deadline", connect_deadline);
  if (auto st = SetupLogging(log_level); !st.ok()) errors.push_back(st.message());
  if (!errors.empty()) {
    for (auto& e : errors) std::cerr << "verge-loadgen: " << e << "\n";
    return 2;
  }
  struct sigaction sa {};
  sa.sa_handler = bench::OnSignal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
  return bench::Run(std::move(o));
}
