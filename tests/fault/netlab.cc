#include "netlab.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <sstream>
#include <stdexcept>

namespace verge::testing {
namespace {

constexpr const char* kSubnet = "10.99.0.";
constexpr const char* kChain = "VERGE-FAULT";

// Runs argv (a path or a name looked up in PATH) and returns its output (stdout and stderr), or
// an error with that output when it does not exit 0.
Result<std::string> Run(const std::vector<std::string>& argv) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return Error(Code::kInternal, "pipe: {}", strerror(errno));
  pid_t pid = fork();
  if (pid < 0) return Error(Code::kInternal, "fork: {}", strerror(errno));
  if (pid == 0) {
    dup2(fds[1], 1);
    dup2(fds[1], 2);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  close(fds[1]);
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = read(fds[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  close(fds[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::string cmd;
    for (const auto& a : argv) cmd += (cmd.empty() ? "" : " ") + a;
    return Error(Code::kUnavailable, "`{}` failed: {}", cmd, out);
  }
  return out;
}

}  // namespace

Status EnterNetns(const std::string& name) {
  std::string path = "/run/netns/" + name;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Error(Code::kNotFound, "open {}: {}", path, strerror(errno));
  int rc = setns(fd, CLONE_NEWNET);
  int err = errno;
  close(fd);
  if (rc != 0) return Error(Code::kPermissionDenied, "setns {}: {}", path, strerror(err));
  return Status::Ok();
}

Result<std::unique_ptr<NetLab>> NetLab::Create(const std::vector<std::string>& members) {
  if (geteuid() != 0) {
    return Error(Code::kPermissionDenied, "network namespaces need root (euid {})", geteuid());
  }
  std::unique_ptr<NetLab> lab(new NetLab());
  lab->prefix_ = "vf" + std::to_string(getpid()) + "-";
  std::string hub = lab->prefix_ + "hub";
  VERGE_ASSIGN_OR_RETURN(auto out, Run({"ip", "netns", "add", hub}));
  lab->created_.push_back(hub);
  VERGE_ASSIGN_OR_RETURN(out, Run({"ip", "-n", hub, "link", "set", "lo", "up"}));
  VERGE_ASSIGN_OR_RETURN(out, Run({"ip", "-n", hub, "link", "add", "br0", "type", "bridge"}));
  VERGE_ASSIGN_OR_RETURN(out, Run({"ip", "-n", hub, "link", "set", "br0", "up"}));
  int index = 0;
  for (const auto& m : members) VERGE_RETURN_IF_ERROR(lab->AddMember(m, ++index));
  return lab;
}

Status NetLab::AddMember(const std::string& member, int index) {
  if (member.empty() || member.size() > 8 ||
      member.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789") != std::string::npos) {
    return Error(Code::kInvalidArgument, "bad member name \"{}\"", member);
  }
  if (index > 250) return Error(Code::kInvalidArgument, "too many members");
  std::string ns = Netns(member);
  std::string hub = prefix_ + "hub";
  std::string peer = "v-" + member;
  VERGE_ASSIGN_OR_RETURN(auto out, Run({"ip", "netns", "add", ns}));
  created_.push_back(ns);
  index_[member] = index;
  VERGE_ASSIGN_OR_RETURN(out, Run({"ip", "-n", ns, "link", "set", "lo", "up"}));
  // Made from inside the hub: neither end ever exists in this process's namespace.
  VERGE_ASSIGN_OR_RETURN(out, Run({"ip", "-n", hub, "link", "add", peer, "type", "veth", "peer",
                                   "name", "eth0", "netns", ns}));
  VERGE_ASSIGN_OR_RETURN(out, Run({"ip", "-n", hub, "link", "set", peer, "master", "br0", "up"}));
  VERGE_ASSIGN_OR_RETURN(
      out, Run({"ip", "-n", ns, "addr", "add", Address(member) + "/24", "dev", "eth0"}));
  VERGE_ASSIGN_OR_RETURN(out, Run({"ip", "-n", ns, "link", "set", "eth0", "up"}));
  // Faults live in one chain that sees only eth0's traffic, in and out.
  VERGE_RETURN_IF_ERROR(Iptables(member, {"-N", kChain}));
  VERGE_RETURN_IF_ERROR(Iptables(member, {"-A", "INPUT", "-i", "eth0", "-j", kChain}));
  VERGE_RETURN_IF_ERROR(Iptables(member, {"-A", "OUTPUT", "-o", "eth0", "-j", kChain}));
  return Status::Ok();
}

NetLab::~NetLab() {
  KillStragglers();
  for (auto it = created_.rbegin(); it != created_.rend(); ++it) {
    (void)Run({"ip", "netns", "del", *it});
  }
}

void NetLab::KillStragglers() {
  for (const auto& ns : created_) {
    auto pids = Run({"ip", "netns", "pids", ns});
    if (!pids.ok()) continue;
    std::istringstream in(*pids);
    for (pid_t pid; in >> pid;) {
      if (pid > 1 && pid != getpid()) kill(pid, SIGKILL);
    }
  }
}

std::string NetLab::Netns(const std::string& member) const { return prefix_ + member; }

std::string NetLab::Address(const std::string& member) const {
  auto it = index_.find(member);
  if (it == index_.end()) throw std::invalid_argument("no member " + member);
  return kSubnet + std::to_string(it->second);
}

Status NetLab::Iptables(const std::string& member, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"ip", "netns", "exec", Netns(member), "iptables", "-w"};
  argv.insert(argv.end(), args.begin(), args.end());
  auto out = Run(argv);
  return out.ok() ? Status::Ok() : out.status();
}

Status NetLab::SetLoss(const std::string& member, double fraction) {
  loss_[member] = fraction;
  VERGE_RETURN_IF_ERROR(Iptables(member, {"-F", kChain}));
  if (partitioned_[member]) VERGE_RETURN_IF_ERROR(Iptables(member, {"-A", kChain, "-j", "DROP"}));
  if (fraction > 0) {
    VERGE_RETURN_IF_ERROR(
        Iptables(member, {"-A", kChain, "-m", "statistic", "--mode", "random", "--probability",
                          std::to_string(fraction), "-j", "DROP"}));
  }
  return Status::Ok();
}

Status NetLab::Partition(const std::string& member, bool on) {
  partitioned_[member] = on;
  return SetLoss(member, loss_[member]);
}

Status NetLab::Bandwidth(const std::string& member, int kbit) {
  std::string ns = Netns(member);
  std::string hub = prefix_ + "hub";
  for (const auto& [where, dev] : {std::pair{ns, std::string("eth0")}, {hub, "v-" + member}}) {
    if (kbit <= 0) {
      // Absent already is fine.
      (void)Run({"ip", "netns", "exec", where, "tc", "qdisc", "del", "dev", dev, "root"});
      continue;
    }
    // A burst of 100 ms at the rate (at least a few full frames), and a queue of 500 ms.
    int burst = std::max(kbit * 1000 / 8 / 10, 4 * 1514);
    VERGE_ASSIGN_OR_RETURN(
        auto out, Run({"ip", "netns", "exec", where, "tc", "qdisc", "replace", "dev", dev, "root",
                       "tbf", "rate", std::to_string(kbit) + "kbit", "burst", std::to_string(burst),
                       "latency", "500ms"}));
  }
  return Status::Ok();
}

Status NetLab::ClearFaults(const std::string& member) {
  loss_[member] = 0;
  partitioned_[member] = false;
  VERGE_RETURN_IF_ERROR(Iptables(member, {"-F", kChain}));
  return Bandwidth(member, 0);
}

}  // namespace verge::testing
