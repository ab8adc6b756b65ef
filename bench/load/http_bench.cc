// verge-http-bench: the load side of bench/load/http_ingest.sh. It posts NDJSON bodies of N
// readings (default 1,000) to a verge-node's `POST /data` over K keep-alive HTTP/1.1
// connections, one thread each, and checks every answer: status 200, "accepted" equal to the
// readings sent, nothing rejected. Then it prints a JSON summary on stdout (readings/s,
// requests/s, latency percentiles, errors); progress goes to stderr.
//
//   verge-http-bench --target 127.0.0.1:PORT --devices-file FILE [--connections 4]
//                    [--readings 1000] [--duration 20s --warmup 3s | --requests N]
//                    [--start-ms MS --end-ms MS] [--watch NAME=PID ...] [--stats-token T]
//
// Bodies. FILE has one device per line, "NAME TOKEN"; connection c sends for devices c, c+K,
// ... in turn (a device belongs to one connection, so its series only move forward). Each
// body has the item mix of bench/micro/ingest_bench.cc for one device: "metrics" objects of 3
// readings with epoch-millisecond timestamps, named values with RFC 3339 timestamps, plain
// values with fractional epoch seconds, item i at base + i ms. Every timestamp is fixed-width
// text, so a body is built once per device and only its timestamps are rewritten in place
// before each request (the next body of a device starts where the previous one ended); the
// tool's cost per request is a few microseconds. Timestamps start at --start-ms (default now
// - 2 h) and may not pass --end-ms (default now + 4 min: the node refuses readings more than
// 5 min ahead of its clock); runs that must not overlap get disjoint ranges.
//
// Window. With --duration, counters and latencies are taken over [warmup, warmup + duration];
// with --requests, over the whole run. At the window's edges it samples the CPU time of each
// --watch process (utime+stime from /proc/PID/stat, and the sum of /proc/PID/task/*/schedstat,
// also per thread name: the node's request thread is "verge-http") and of itself, and with
// --stats-token (the node's local token) the node's GET /stats.
//
// Exit codes: 0 all answers as expected, 1 errors, 2 usage.
//
// Threading: one thread per connection; the main thread samples and prints. Shared counters
// are atomics; each connection's latencies are its own until the threads are joined.
#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/duration.h"
#include "common/status.h"

namespace verge::bench {
namespace {

using json = nlohmann::json;
using SteadyTime = std::chrono::steady_clock::time_point;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// ---- bodies --------------------------------------------------------------------------------

enum class TsFormat { kEpochMs, kRfc3339Ms, kSecondsMs };

// Where one item's timestamp sits in the body text.
struct Slot {
  size_t offset;
  TsFormat format;
  int64_t item;
};

// `width` decimal digits of v, zero-padded, at p.
void PutDigits(char* p, uint64_t v, int width) {
  for (int i = width - 1; i >= 0; --i) {
    p[i] = static_cast<char>('0' + v % 10);
    v /= 10;
  }
}

// Writes a timestamp of `ms` in `format` at p: 13, 24 and 14 characters respectively (fixed
// until the year 2286).
void PutTimestamp(char* p, TsFormat format, int64_t ms) {
  auto ums = static_cast<uint64_t>(ms);
  switch (format) {
    case TsFormat::kEpochMs:
      PutDigits(p, ums, 13);
      break;
    case TsFormat::kSecondsMs:  // 1795251600.123
      PutDigits(p, ums / 1000, 10);
      p[10] = '.';
      PutDigits(p + 11, ums % 1000, 3);
      break;
    case TsFormat::kRfc3339Ms: {  // 2026-11-21T09:00:00.123Z
      using namespace std::chrono;
      auto days = floor<std::chrono::days>(sys_time<milliseconds>(milliseconds(ms)));
      year_month_day ymd{days};
      auto rest =
          static_cast<uint64_t>(ms - duration_cast<milliseconds>(days.time_since_epoch()).count());
      PutDigits(p, static_cast<uint64_t>(static_cast<int>(ymd.year())), 4);
      p[4] = '-';
      PutDigits(p + 5, static_cast<unsigned>(ymd.month()), 2);
      p[7] = '-';
      PutDigits(p + 8, static_cast<unsigned>(ymd.day()), 2);
      p[10] = 'T';
      PutDigits(p + 11, rest / 3'600'000, 2);
      p[13] = ':';
      PutDigits(p + 14, rest / 60'000 % 60, 2);
      p[16] = ':';
      PutDigits(p + 17, rest / 1000 % 60, 2);
      p[19] = '.';
      PutDigits(p + 20, rest % 1000, 3);
      p[23] = 'Z';
      break;
    }
  }
}

constexpr size_t kWidth[] = {13, 24, 14};

// One device's request: headers and body in one buffer, timestamps rewritten per request.
struct DeviceRequest {
  std::string name;
  std::string bytes;
  std::vector<Slot> slots;
  size_t readings = 0;
  int64_t items = 0;
  int64_t next_base_ms = 0;

  // Rewrites the timestamps for items base, base + 1 ms, ...
  void Stamp(int64_t base_ms) {
    for (const Slot& s : slots) PutTimestamp(bytes.data() + s.offset, s.format, base_ms + s.item);
  }
};

// The item mix of bench/micro/ingest_bench.cc for one device, `readings` readings in all.
DeviceRequest BuildRequest(const std::string& device, const std::string& token,
                           const std::string& host, size_t readings) {
  DeviceRequest req;
  req.name = device;
  std::string body;
  std::vector<Slot> slots;  // offsets into body for now
  auto placeholder = [&](TsFormat f, int64_t item) {
    slots.push_back({body.size(), f, item});
    body.append(kWidth[static_cast<int>(f)], '0');
  };
  int64_t i = 0;
  for (; req.readings < readings; ++i) {
    int kind = static_cast<int>(i % 3);
    if (kind == 0 && req.readings + 3 > readings) kind = 1;
    body += fmt::format(R"({{"device_id":"{}",)", device);
    switch (kind) {
      case 0:
        body += R"("timestamp":)";
        placeholder(TsFormat::kEpochMs, i);
        body +=
            fmt::format(R"(,"metrics":{{"temp":{:.1f},"pressure":{:.3f},"running":{}}}}})",
                        70 + static_cast<double>(i % 50) * 0.1,
                        1.013 + static_cast<double>(i % 7) * 0.01, i % 2 == 0 ? "true" : "false");
        req.readings += 3;
        break;
      case 1:
        body += fmt::format(R"("metric":"rpm","value":{},"timestamp":")", 1400 + i % 100);
        placeholder(TsFormat::kRfc3339Ms, i);
        body += "\"}";
        req.readings += 1;
        break;
      default:
        body +=
            fmt::format(R"("value":{:.2f},"timestamp":)", 230 + static_cast<double>(i % 10) * 0.5);
        placeholder(TsFormat::kSecondsMs, i);
        body += fmt::format(R"(,"seq":{}}})", i);
        req.readings += 1;
    }
    body += '\n';
  }
  req.items = i;
  req.bytes = fmt::format(
      "POST /data HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n"
      "Content-Type: application/x-ndjson\r\nContent-Length: {}\r\n\r\n",
      host, token, body.size());
  size_t head = req.bytes.size();
  req.bytes += body;
  for (Slot& s : slots) s.offset += head;
  req.slots = std::move(slots);
  return req;
}

// ---- one HTTP/1.1 connection ---------------------------------------------------------------

struct HttpAnswer {
  int status = 0;
  std::string body;
};

class Connection {
 public:
  ~Connection() { Close(); }
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    buf_.clear();
  }

  Status Connect(const std::string& host, int port) {
    Close();
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return Error(Code::kUnavailable, "socket: {}", strerror(errno));
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET, host.c_str(), &sa.sin_addr) != 1)
      return Error(Code::kInvalidArgument, "not an IPv4 address: {}", host);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0)
      return Error(Code::kUnavailable, "connect {}:{}: {}", host, port, strerror(errno));
    int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    timeval tv{30, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return Status::Ok();
  }

  // Sends a complete request and reads one answer (Content-Length framed, as the node sends).
  Result<HttpAnswer> RoundTrip(std::string_view request) {
    for (size_t off = 0; off < request.size();) {
      ssize_t n = ::send(fd_, request.data() + off, request.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return Error(Code::kUnavailable, "send: {}", n < 0 ? strerror(errno) : "closed");
      off += static_cast<size_t>(n);
    }
    size_t head_end;
    while ((head_end = buf_.find("\r\n\r\n")) == std::string::npos) {
      VERGE_RETURN_IF_ERROR(Fill());
    }
    HttpAnswer a;
    if (buf_.compare(0, 9, "HTTP/1.1 ") != 0 || buf_.size() < 12)
      return Error(Code::kUnavailable, "not an HTTP/1.1 answer");
    std::from_chars(buf_.data() + 9, buf_.data() + 12, a.status);
    size_t length = 0;
    std::string_view head(buf_.data(), head_end);
    for (size_t pos = head.find("\r\n"); pos != std::string_view::npos;
         pos = head.find("\r\n", pos + 2)) {
      std::string_view line = head.substr(pos + 2, head.find("\r\n", pos + 2) - (pos + 2));
      constexpr std::string_view kLength = "content-length:";
      if (line.size() > kLength.size() &&
          std::equal(kLength.begin(), kLength.end(), line.begin(), [](char x, char y) {
            return x == std::tolower(static_cast<unsigned char>(y));
          })) {
        std::string_view v = line.substr(kLength.size());
        while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
        std::from_chars(v.data(), v.data() + v.size(), length);
      }
    }
    size_t total = head_end + 4 + length;
    while (buf_.size() < total) VERGE_RETURN_IF_ERROR(Fill());
    a.body = buf_.substr(head_end + 4, length);
    buf_.erase(0, total);
    return a;
  }

 private:
  Status Fill() {
    char chunk[16384];
    ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n < 0) return Error(Code::kUnavailable, "recv: {}", strerror(errno));
    if (n == 0) return Error(Code::kUnavailable, "the node closed the connection");
    buf_.append(chunk, static_cast<size_t>(n));
    return Status::Ok();
  }

  int fd_ = -1;
  std::string buf_;
};

// ---- processes observed from outside --------------------------------------------------------

struct CpuSample {
  bool ok = false;
  double stat_seconds = 0;   // utime + stime, /proc/PID/stat (clock ticks)
  double sched_seconds = 0;  // sum over threads of /proc/PID/task/*/schedstat run time
  std::map<std::string, double> by_thread_name;  // the same, per /proc/PID/task/*/comm
};

CpuSample SampleCpu(int pid) {
  CpuSample s;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return s;
  auto close = line.rfind(')');
  if (close == std::string::npos) return s;
  std::istringstream rest(line.substr(close + 2));
  std::vector<std::string> f;  // f[0] is field 3
  for (std::string x; rest >> x;) f.push_back(x);
  if (f.size() < 13) return s;
  double tck = static_cast<double>(sysconf(_SC_CLK_TCK));
  s.stat_seconds = (std::stod(f[11]) + std::stod(f[12])) / tck;  // fields 14, 15
  std::error_code ec;
  for (const auto& t :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
    std::ifstream ss(t.path() / "schedstat");
    std::ifstream comm(t.path() / "comm");
    uint64_t run_ns = 0;
    std::string name;
    if (!(ss >> run_ns)) continue;
    std::getline(comm, name);
    s.sched_seconds += static_cast<double>(run_ns) / 1e9;
    s.by_thread_name[name] += static_cast<double>(run_ns) / 1e9;
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

// ---- the run -------------------------------------------------------------------------------

struct Options {
  std::string host;
  int port = 0;
  size_t connections = 4;
  size_t readings = 1000;
  Millis duration{20'000};
  Millis warmup{3'000};
  uint64_t requests = 0;  // total; 0 = run for warmup + duration
  int64_t start_ms = 0;
  int64_t end_ms = 0;
  std::string stats_token;
};

struct Sample {
  SteadyTime end;
  int64_t latency_us;
  uint32_t readings;
};

struct Shared {
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> issued{0};
  std::atomic<uint64_t> requests{0};
  std::atomic<uint64_t> readings{0};
  std::atomic<uint64_t> errors{0};
  std::mutex mu;
  std::string first_error;  // GUARDED_BY(mu)

  void Fail(const std::string& what) {
    ++errors;
    std::lock_guard lock(mu);
    if (first_error.empty()) first_error = what;
  }
};

void RunConnection(const Options& o, std::vector<DeviceRequest> devices, Shared& shared,
                   std::vector<Sample>& samples) {
  Connection conn;
  if (Status st = conn.Connect(o.host, o.port); !st.ok()) {
    shared.Fail(std::string(st.message()));
    return;
  }
  for (size_t next = 0; !shared.stop.load(std::memory_order_relaxed); ++next) {
    if (o.requests > 0 && shared.issued.fetch_add(1) >= o.requests) break;
    DeviceRequest& d = devices[next % devices.size()];
    if (d.next_base_ms + d.items > o.end_ms) {
      shared.Fail(
          fmt::format("device {}: timestamps would pass --end-ms; give a wider range", d.name));
      break;
    }
    d.Stamp(d.next_base_ms);
    d.next_base_ms += d.items;
    auto t0 = std::chrono::steady_clock::now();
    auto answer = conn.RoundTrip(d.bytes);
    auto t1 = std::chrono::steady_clock::now();
    if (!answer.ok()) {
      shared.Fail(std::string(answer.status().message()));
      break;  // the connection is in an unknown state
    }
    bool good = answer->status == 200;
    if (good) {
      json j = json::parse(answer->body, nullptr, false);
      good = !j.is_discarded() && j.value("accepted", uint64_t{0}) == d.readings &&
             j.value("rejected", uint64_t{1}) == 0;
    }
    if (!good) {
      shared.Fail(fmt::format("device {}: HTTP {}: {}", d.name, answer->status,
                              answer->body.substr(0, 300)));
      continue;
    }
    shared.requests.fetch_add(1, std::memory_order_relaxed);
    shared.readings.fetch_add(d.readings, std::memory_order_relaxed);
    samples.push_back({t1, std::chrono::duration_cast<std::chrono::microseconds>(t1 - t0).count(),
                       static_cast<uint32_t>(d.readings)});
  }
}

// The node's GET /stats, or null.
json NodeStats(const Options& o) {
  if (o.stats_token.empty()) return nullptr;
  Connection c;
  if (!c.Connect(o.host, o.port).ok()) return nullptr;
  std::string req =
      fmt::format("GET /stats HTTP/1.1\r\nHost: {}:{}\r\nAuthorization: Bearer {}\r\n\r\n", o.host,
                  o.port, o.stats_token);
  auto a = c.RoundTrip(req);
  if (!a.ok() || a->status != 200) return nullptr;
  json j = json::parse(a->body, nullptr, false);
  return j.is_discarded() ? json(nullptr) : j;
}

struct Edge {
  SteadyTime at;
  uint64_t requests, readings, errors;
  double self_cpu;
  std::vector<CpuSample> watched;
  json stats;
};

Edge TakeEdge(const Options& o, const Shared& s,
              const std::vector<std::pair<std::string, int>>& w) {
  Edge e;
  e.stats = NodeStats(o);
  e.at = std::chrono::steady_clock::now();
  e.requests = s.requests.load();
  e.readings = s.readings.load();
  e.errors = s.errors.load();
  e.self_cpu = SelfCpuSeconds();
  for (const auto& p : w) e.watched.push_back(SampleCpu(p.second));
  return e;
}

json Pick(const json& stats, const char* group, const char* key) {
  if (!stats.is_object() || !stats.contains(group) || !stats[group].contains(key)) return nullptr;
  return stats[group][key];
}

int Main(int argc, char** argv) {
  CLI::App app{"verge-http-bench: posts NDJSON bodies to a verge-node's POST /data"};
  Options o;
  std::string target, devices_file, duration = "20s", warmup = "3s";
  std::vector<std::string> watch;
  app.add_option("--target", target, "The node's local API, 127.x.x.x:PORT")->required();
  app.add_option("--devices-file", devices_file, "Lines of 'NAME TOKEN'")->required();
  app.add_option("--connections", o.connections, "Keep-alive connections, one thread each")
      ->capture_default_str();
  app.add_option("--readings", o.readings, "Readings per body")->capture_default_str();
  app.add_option("--duration", duration, "Measurement window")->capture_default_str();
  app.add_option("--warmup", warmup, "Load before the window")->capture_default_str();
  app.add_option("--requests", o.requests, "Send this many requests in all instead (no warmup)");
  app.add_option("--start-ms", o.start_ms, "First timestamp, epoch ms (default now - 2 h)");
  app.add_option("--end-ms", o.end_ms, "No timestamp past this, epoch ms (default now + 4 min)");
  app.add_option("--watch", watch, "NAME=PID: report this process's CPU over the window");
  app.add_option("--stats-token", o.stats_token, "The node's local token: GET /stats at the edges");
  CLI11_PARSE(app, argc, argv);

  auto d = ParseDuration(duration);
  auto w = ParseDuration(warmup);
  if (!d.ok() || !w.ok() || d->count() <= 0 || w->count() < 0) {
    std::cerr << "verge-http-bench: bad --duration or --warmup\n";
    return 2;
  }
  o.duration = *d;
  o.warmup = o.requests > 0 ? Millis(0) : *w;
  if (o.connections == 0 || o.readings == 0) {
    std::cerr << "verge-http-bench: --connections and --readings must be positive\n";
    return 2;
  }
  auto colon = target.rfind(':');
  if (colon == std::string::npos ||
      !std::from_chars(target.data() + colon + 1, target.data() + target.size(), o.port).ptr) {
    std::cerr << "verge-http-bench: --target wants HOST:PORT\n";
    return 2;
  }
  o.host = target.substr(0, colon);
  int64_t now = NowMs();
  if (o.start_ms == 0) o.start_ms = now - 2 * 3600 * 1000;
  if (o.end_ms == 0) o.end_ms = now + 4 * 60 * 1000;
  std::vector<std::pair<std::string, int>> watched;
  for (const auto& s : watch) {
    auto eq = s.find('=');
    int pid = 0;
    if (eq == std::string::npos ||
        std::from_chars(s.data() + eq + 1, s.data() + s.size(), pid).ec != std::errc()) {
      std::cerr << "verge-http-bench: --watch wants NAME=PID\n";
      return 2;
    }
    watched.emplace_back(s.substr(0, eq), pid);
  }

  std::vector<std::pair<std::string, std::string>> devices;
  std::ifstream in(devices_file);
  for (std::string name, token; in >> name >> token;) devices.emplace_back(name, token);
  if (devices.size() < o.connections) {
    std::cerr << "verge-http-bench: " << devices.size() << " devices in " << devices_file
              << "; need at least one per connection (" << o.connections << ")\n";
    return 2;
  }
  std::vector<std::vector<DeviceRequest>> per_conn(o.connections);
  size_t body_bytes = 0;
  for (size_t i = 0; i < devices.size(); ++i) {
    DeviceRequest r = BuildRequest(devices[i].first, devices[i].second, target, o.readings);
    r.next_base_ms = o.start_ms;
    body_bytes = r.bytes.size();
    per_conn[i % o.connections].push_back(std::move(r));
  }

  Shared shared;
  std::vector<std::vector<Sample>> samples(o.connections);
  std::vector<std::thread> threads;
  fmt::print(stderr, "verge-http-bench: {} connections, {} devices, {} readings per body\n",
             o.connections, devices.size(), o.readings);
  Edge begin = TakeEdge(o, shared, watched);
  auto started = begin.at;
  for (size_t c = 0; c < o.connections; ++c) {
    threads.emplace_back(RunConnection, std::cref(o), std::move(per_conn[c]), std::ref(shared),
                         std::ref(samples[c]));
  }
  auto done = [&] { return shared.errors.load() > 0; };
  Edge end;
  if (o.requests > 0) {
    for (auto& t : threads) t.join();
    end = TakeEdge(o, shared, watched);
  } else {
    auto sleep_until = [&](SteadyTime t) {
      while (std::chrono::steady_clock::now() < t && !done())
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    };
    sleep_until(started + o.warmup);
    begin = TakeEdge(o, shared, watched);
    sleep_until(begin.at + o.duration);
    end = TakeEdge(o, shared, watched);
    shared.stop = true;
    for (auto& t : threads) t.join();
  }

  double secs = std::chrono::duration<double>(end.at - begin.at).count();
  std::vector<int64_t> lat;
  for (const auto& v : samples)
    for (const Sample& s : v)
      if (s.end >= begin.at && s.end <= end.at) lat.push_back(s.latency_us);
  std::sort(lat.begin(), lat.end());
  auto pct = [&](double p) -> json {
    if (lat.empty()) return nullptr;
    size_t i = std::min(lat.size() - 1, static_cast<size_t>(p * static_cast<double>(lat.size())));
    return static_cast<double>(lat[i]) / 1000.0;
  };
  uint64_t readings = end.readings - begin.readings;
  uint64_t requests = end.requests - begin.requests;
  json out;
  out["connections"] = o.connections;
  out["devices"] = devices.size();
  out["readings_per_body"] = o.readings;
  out["request_bytes"] = body_bytes;
  out["window_seconds"] = secs;
  out["requests"] = requests;
  out["readings"] = readings;
  out["readings_per_sec"] = secs > 0 ? static_cast<double>(readings) / secs : 0;
  out["requests_per_sec"] = secs > 0 ? static_cast<double>(requests) / secs : 0;
  out["mbytes_per_sec"] = secs > 0 ? static_cast<double>(requests * body_bytes) / secs / 1e6 : 0;
  out["latency_ms"] = {{"p50", pct(0.50)},
                       {"p90", pct(0.90)},
                       {"p99", pct(0.99)},
                       {"max", lat.empty() ? json(nullptr) : json(lat.back() / 1000.0)}};
  // The whole run, warmup included: what the node has to process in all.
  out["total"] = {
      {"requests", shared.requests.load()},
      {"readings", shared.readings.load()},
      {"seconds",
       std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count()}};
  out["errors"] = shared.errors.load();
  out["first_error"] = shared.first_error;
  out["tool_cpu_percent"] = secs > 0 ? 100 * (end.self_cpu - begin.self_cpu) / secs : 0;
  json cpu = json::object();
  for (size_t i = 0; i < watched.size(); ++i) {
    const CpuSample &a = begin.watched[i], &b = end.watched[i];
    if (!a.ok || !b.ok || secs <= 0) {
      cpu[watched[i].first] = nullptr;
      continue;
    }
    json threads = json::object();  // by thread name (threads of one name added up)
    for (const auto& [name, seconds] : b.by_thread_name) {
      auto before = a.by_thread_name.find(name);
      double used = seconds - (before == a.by_thread_name.end() ? 0 : before->second);
      threads[name] = {{"cpu_seconds", used}, {"cpu_percent", 100 * used / secs}};
    }
    cpu[watched[i].first] = {
        {"pid", watched[i].second},
        {"cpu_seconds_schedstat", b.sched_seconds - a.sched_seconds},
        {"cpu_percent_schedstat", 100 * (b.sched_seconds - a.sched_seconds) / secs},
        {"cpu_percent_stat", 100 * (b.stat_seconds - a.stat_seconds) / secs},
        {"threads", threads}};
  }
  out["cpu"] = cpu;
  if (begin.stats.is_object() && end.stats.is_object()) {
    auto num = [](const json& v) { return v.is_number() ? v.get<double>() : 0.0; };
    double processed = num(Pick(end.stats, "pipeline", "processed")) -
                       num(Pick(begin.stats, "pipeline", "processed"));
    out["node"] = {{"pipeline_processed_per_sec", secs > 0 ? processed / secs : 0},
                   {"journal_entries_begin", Pick(begin.stats, "buffer", "journalEntries")},
                   {"journal_entries_end", Pick(end.stats, "buffer", "journalEntries")},
                   {"store_errors", Pick(end.stats, "ingest", "storeErrors")},
                   {"pipeline_errors", Pick(end.stats, "pipeline", "errors")}};
  }
  std::cout << out.dump(2) << std::endl;
  return shared.errors.load() == 0 ? 0 : 1;
}

}  // namespace
}  // namespace verge::bench

int main(int argc, char** argv) { return verge::bench::Main(argc, argv); }
