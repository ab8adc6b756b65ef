#include "harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "common/fs.h"

namespace verge::testing {

std::string BinDir() { return VERGE_TEST_BIN_DIR; }

TempDir::TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "verge-it-XXXXXX").string();
  char* p = mkdtemp(tmpl.data());
  if (!p) std::abort();
  path_ = p;
}

TempDir::~TempDir() {
  std::error_code ec;
  if (!std::getenv("VERGE_KEEP_TEST_DIRS")) std::filesystem::remove_all(path_, ec);
}

Process::Process(std::vector<std::string> argv, std::string log_path, std::string netns)
    : log_path_(std::move(log_path)) {
  std::string netns_path = netns.empty() ? "" : "/run/netns/" + netns;
  pid_ = fork();
  if (pid_ == 0) {
    if (!netns_path.empty()) {
      int ns = open(netns_path.c_str(), O_RDONLY | O_CLOEXEC);
      if (ns < 0 || setns(ns, CLONE_NEWNET) != 0) _exit(126);
      close(ns);
    }
    int fd = open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    // The parent may block signals in its threads; the child starts with a clean mask.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
}

Process::~Process() {
  if (Running()) {
    kill(pid_, SIGKILL);
    Wait(std::chrono::seconds(10));
  }
}

bool Process::Running() {
  if (exit_code_) return false;
  int status = 0;
  pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == 0) return true;
  if (r == pid_) exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return false;
}

void Process::Signal(int sig) {
  if (Running()) kill(pid_, sig);
}

std::optional<int> Process::Wait(std::chrono::milliseconds timeout) {
  Eventually([&] { return !Running(); }, timeout);
  return exit_code_;
}

std::string Process::Log() const {
  auto text = ReadFile(log_path_);
  return text.ok() ? *text : "";
}

bool Eventually(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (pred()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

Cloud::Cloud(const TempDir& tmp, std::vector<std::string> flags, std::string data_subdir,
             std::string api_listen, std::string link_listen, std::string netns)
    : data_dir_(tmp / data_subdir) {
  std::filesystem::remove(data_dir_ + "/listen.json");
  std::vector<std::string> argv = {BinDir() + "/verge-cloud",
                                   "--data-dir",
                                   data_dir_,
                                   "--api-listen",
                                   api_listen,
                                   "--link-listen",
                                   link_listen,
                                   "--io-threads",
                                   "2"};
  argv.insert(argv.end(), flags.begin(), flags.end());
  proc_ = std::make_unique<Process>(argv, tmp / (data_subdir + ".log"), netns);
  bool up = Eventually([&] { return FileExists(data_dir_ + "/listen.json") || !proc_->Running(); },
                       std::chrono::seconds(60));
  if (!up || !proc_->Running()) {
    throw std::runtime_error("verge-cloud did not start:\n" + proc_->Log());
  }
  auto j = nlohmann::json::parse(*ReadFile(data_dir_ + "/listen.json"));
  api_ = j["api"];
  link_ = j["link"];
}

Cloud::~Cloud() { Stop(SIGKILL); }

void Cloud::Stop(int sig) {
  proc_->Signal(sig);
  proc_->Wait(std::chrono::seconds(30));
}

std::string Cloud::bootstrap_token() const {
  std::string t = *ReadFile(data_dir_ + "/bootstrap.token");
  return t.substr(0, t.find('\n'));
}

std::string Cloud::admin_token() const {
  std::string t = *ReadFile(data_dir_ + "/admin.token");
  return t.substr(0, t.find('\n'));
}

std::string Cloud::ca_pem() const { return *ReadFile(data_dir_ + "/pki/ca.crt"); }

Result<http::Response> Cloud::Api(const std::string& method, const std::string& path,
                                  const std::string& body, std::optional<std::string> token) {
  http::HttpsClient client(api_, http::ClientTls{ca_pem(), "", "", false});
  std::map<std::string, std::string> headers;
  std::string t = token ? *token : admin_token();
  if (!t.empty()) headers["Authorization"] = "Bearer " + t;
  VERGE_ASSIGN_OR_RETURN(auto res, client.Do(method, path, body, headers));
  return res.response;
}

nlohmann::json Cloud::Nodes() {
  auto res = Api("GET", "/api/v1/nodes");
  if (!res.ok() || res->status != 200) return nlohmann::json::array();
  return nlohmann::json::parse(res->body);
}

std::optional<nlohmann::json> Cloud::Node(const std::string& name) {
  auto res = Api("GET", "/api/v1/nodes/" + name);
  if (!res.ok() || res->status != 200) return std::nullopt;
  return nlohmann::json::parse(res->body);
}

std::string Cloud::StatusOf(const std::string& name) {
  auto n = Node(name);
  return n ? (*n)["status"].get<std::string>() : "";
}

std::vector<std::string> Cloud::EventTypes(const std::string& name) {
  std::vector<std::string> out;
  auto res = Api("GET", "/api/v1/nodes/" + name + "/events");
  if (!res.ok() || res->status != 200) return out;
  for (auto& e : nlohmann::json::parse(res->body)) out.push_back(e["type"]);
  return out;
}

std::unique_ptr<Process> StartNode(const TempDir& tmp, const std::string& cloud_link,
                                   const NodeOptions& o) {
  std::vector<std::string> argv = {BinDir() + "/verge-node",
                                   "--data-dir",
                                   o.data_dir.empty() ? tmp / o.name : o.data_dir,
                                   "--cloud",
                                   cloud_link,
                                   "--heartbeat",
                                   o.heartbeat,
                                   "--type",
                                   o.type};
  if (!o.name.empty()) argv.insert(argv.end(), {"--name", o.name});
  if (!o.token.empty()) argv.insert(argv.end(), {"--token", o.token});
  if (!o.region.empty()) argv.insert(argv.end(), {"--region", o.region});
  if (!o.labels.empty()) argv.insert(argv.end(), {"--labels", o.labels});
  argv.insert(argv.end(), o.extra.begin(), o.extra.end());
  // Several nodes share the machine: each takes a free port for its local API (listen.json).
  if (std::find(o.extra.begin(), o.extra.end(), "--http-listen") == o.extra.end())
    argv.insert(argv.end(), {"--http-listen", "127.0.0.1:0"});
  // No broker unless the test asks for one: MQTT needs a fixed port.
  if (std::find(o.extra.begin(), o.extra.end(), "--mqtt-listen") == o.extra.end())
    argv.insert(argv.end(), {"--mqtt-listen", "off"});
  return std::make_unique<Process>(argv, tmp / (o.name + ".log"), o.netns);
}

Result<http::Response> PlainHttp(const std::string& address, const std::string& method,
                                 const std::string& target, const std::string& body,
                                 std::map<std::string, std::string> headers) {
  VERGE_ASSIGN_OR_RETURN(auto hp, http::SplitHostPort(address));
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Error(Code::kUnavailable, "socket: {}", strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(std::stoi(hp.second)));
  if (inet_pton(AF_INET, hp.first.c_str(), &sa.sin_addr) != 1)
    return Error(Code::kInvalidArgument, "not an IPv4 address: {}", hp.first);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0)
    return Error(Code::kUnavailable, "connect {}: {}", address, strerror(errno));
  timeval tv{30, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string req = method + " " + target + " HTTP/1.1\r\nHost: " + address +
                    "\r\nConnection: close\r\nContent-Length: " + std::to_string(body.size()) +
                    "\r\n";
  for (const auto& [k, v] : headers) req += k + ": " + v + "\r\n";
  req += "\r\n" + body;
  for (size_t off = 0; off < req.size();) {
    ssize_t n = ::send(fd, req.data() + off, req.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return Error(Code::kUnavailable, "send: {}", strerror(errno));
    off += static_cast<size_t>(n);
  }
  std::string resp;
  char buf[65536];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0) return Error(Code::kUnavailable, "recv: {}", strerror(errno));
    if (n == 0) break;
    resp.append(buf, static_cast<size_t>(n));
  }
  size_t head_end = resp.find("\r\n\r\n");
  if (resp.compare(0, 9, "HTTP/1.1 ") != 0 || head_end == std::string::npos)
    return Error(Code::kUnavailable, "no complete HTTP answer");
  http::Response r;
  r.status = std::stoi(resp.substr(9, 3));
  std::string head = resp.substr(0, head_end);
  r.body = resp.substr(head_end + 4);
  size_t cl = head.find("Content-Length: ");
  if (cl == std::string::npos) cl = head.find("content-length: ");
  if (cl != std::string::npos) {
    size_t want = std::stoul(head.substr(cl + 16));
    if (r.body.size() < want) return Error(Code::kUnavailable, "answer cut short");
  }
  return r;
}

std::optional<std::string> NodeHttpAddress(const std::string& node_data_dir) {
  auto text = ReadFile(node_data_dir + "/listen.json");
  if (!text.ok()) return std::nullopt;
  auto j = nlohmann::json::parse(*text, nullptr, false);
  if (j.is_discarded() || !j.contains("http")) return std::nullopt;
  return j["http"].get<std::string>();
}

std::string FastReconnectConfig(const TempDir& tmp, const std::string& name) {
  std::string path = tmp / (name + ".yaml");
  std::ofstream(path) << "reconnectInitial: 100ms\nreconnectMax: 500ms\n";
  return path;
}

ModbusSim StartModbusSim(const TempDir& tmp, const std::string& listen, int devices,
                         const std::string& log) {
  ModbusSim sim;
  sim.proc = std::make_unique<Process>(
      std::vector<std::string>{BinDir() + "/verge-devsim", "modbus", "--listen", listen,
                               "--devices", std::to_string(devices), "--update", "50ms"},
      tmp / log);
  std::string line;
  bool up = Eventually(
      [&] {
        std::string out = sim.proc->Log();
        auto at = out.find("listening ");
        auto end = out.find('\n', at);
        if (at == std::string::npos || end == std::string::npos) return !sim.proc->Running();
        line = out.substr(at + 10, end - at - 10);
        return true;
      },
      std::chrono::seconds(30));
  if (!up || line.empty())
    throw std::runtime_error("verge-devsim did not start:\n" + sim.proc->Log());
  auto colon = line.rfind(':');
  sim.host = line.substr(0, colon);
  sim.port = std::stoi(line.substr(colon + 1));
  return sim;
}

nlohmann::json ModbusSimMap(const TempDir& tmp, int devices) {
  Process p(
      {BinDir() + "/verge-devsim", "modbus", "--print-map", "--devices", std::to_string(devices)},
      tmp / "map.json");
  if (p.Wait(std::chrono::seconds(30)) != 0) {
    throw std::runtime_error("verge-devsim --print-map failed:\n" + p.Log());
  }
  return nlohmann::json::parse(p.Log());
}

std::string AddDevice(Cloud& cloud, const std::string& name, const std::string& node,
                      const nlohmann::json& extra) {
  nlohmann::json body = extra;
  body["name"] = name;
  body["node"] = node;
  auto res = cloud.Api("POST", "/api/v1/devices", body.dump());
  EXPECT_TRUE(res.ok() && res->status == 201) << (res.ok() ? res->body : res.status().message());
  if (!res.ok() || res->status != 201) return "";
  return nlohmann::json::parse(res->body)["token"].get<std::string>();
}

std::string LocalToken(const std::string& node_dir) {
  auto t = ReadFile(node_dir + "/data/local.token");
  std::string s = t.ok() ? *t : "";
  while (!s.empty() && s.back() == '\n') s.pop_back();
  return s;
}

// Runs vergectl against `cloud`; its output (stdout) when it exits 0, else fails.
std::string Ctl(Cloud& cloud, const TempDir& tmp, std::vector<std::string> args) {
  static int n = 0;
  std::vector<std::string> argv = {BinDir() + "/vergectl", "--config",
                                   cloud.data_dir() + "/vergectl.yaml"};
  argv.insert(argv.end(), args.begin(), args.end());
  Process ctl(argv, tmp / ("vergectl-" + std::to_string(++n) + ".out"));
  auto rc = ctl.Wait(std::chrono::seconds(30));
  EXPECT_EQ(rc, 0) << ctl.Log();
  return rc == 0 ? ctl.Log() : "";
}

nlohmann::json CtlJson(Cloud& cloud, const TempDir& tmp, std::vector<std::string> args) {
  args.insert(args.end(), {"-o", "json"});
  std::string out = Ctl(cloud, tmp, args);
  nlohmann::json j = nlohmann::json::parse(out, nullptr, false);
  return j.is_discarded() ? nlohmann::json() : j;
}

}  // namespace verge::testing
