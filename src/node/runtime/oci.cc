#include "node/runtime/oci.h"

#include <fcntl.h>
#include <fmt/ranges.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <string_view>
#include <thread>
#include <utility>

#include "common/fs.h"
#include "node/runtime/internal.h"

namespace verge::node::runtime {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

constexpr const char* kSupervisorName = "verge-oci-supervisor";
constexpr const char* kDefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
constexpr int kReadyFd = 3;
constexpr milliseconds kCommandTimeout{30000};
constexpr milliseconds kKillTimeout{10000};
constexpr milliseconds kDefaultGrace{10000};
constexpr size_t kMaxCommandOutput = 1 << 20;

// Supervisor argv: name, binary, state root, bundle, container id, workload dir, cgroup parent,
// cgroup (relative).
enum SupervisorArg {
  kArgBinary = 1,
  kArgStateRoot,
  kArgBundle,
  kArgId,
  kArgDir,
  kArgCgroupParent,
  kArgCgroup,
  kSupervisorArgc
};

std::string ErrnoText(int e) { return std::generic_category().message(e); }

// Workload ids become container ids, cgroup and file names, and runc arguments: a leading '-'
// would read as a flag.
bool ValidId(std::string_view id) {
  if (id.empty() || id.size() > 63 || id[0] == '-') return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
  });
}

// Moves a descriptor above the ones a child gets by number (0-3), so that dup2 in posix_spawn
// never meets itself.
Fd HighFd(int fd) {
  if (fd < 0) return Fd();
  int high = ::fcntl(fd, F_DUPFD_CLOEXEC, 10);
  ::close(fd);
  return Fd(high);
}

struct ProcInfo {
  bool exists = false;
  uint64_t start_time = 0;
  char state = '?';
};

ProcInfo ReadProc(int64_t pid) {
  ProcInfo info;
  if (pid <= 0) return info;
  auto text = ReadFile(fmt::format("/proc/{}/stat", pid));
  if (!text.ok()) return info;
  // "pid (comm) S ppid ..." — comm may contain spaces and parentheses: parse after the last ')'.
  size_t close = text->rfind(')');
  if (close == std::string::npos) return info;
  std::vector<std::string_view> fields;
  std::string_view rest = std::string_view(*text).substr(close + 1);
  size_t i = 0;
  while (i < rest.size()) {
    while (i < rest.size() && rest[i] == ' ') ++i;
    size_t j = rest.find(' ', i);
    if (j == std::string_view::npos) j = rest.size();
    if (j > i) fields.push_back(rest.substr(i, j - i));
    i = j;
  }
  if (fields.size() < 20) return info;
  info.exists = true;
  info.state = fields[0].empty() ? '?' : fields[0][0];
  info.start_time = std::strtoull(std::string(fields[19]).c_str(), nullptr, 10);
  return info;
}

std::vector<char*> CStrings(std::vector<std::string>& v) {
  std::vector<char*> out;
  out.reserve(v.size() + 1);
  for (auto& s : v) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

std::vector<std::string> MinimalEnv() { return {std::string("PATH=") + kDefaultPath}; }

// posix_spawn with default signal handling and an empty mask; `fds` maps child fd ← our fd
// (-1: /dev/null). Other descriptors are not inherited (they are close-on-exec).
Result<pid_t> Spawn(const std::string& path, std::vector<std::string> argv,
                    const std::vector<std::pair<int, int>>& fds, bool new_session) {
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&attr);
  for (auto [child, ours] : fds) {
    if (ours < 0) {
      posix_spawn_file_actions_addopen(&fa, child, "/dev/null", O_RDWR, 0);
    } else {
      posix_spawn_file_actions_adddup2(&fa, ours, child);
    }
  }
  sigset_t all;
  sigset_t none;
  sigfillset(&all);
  sigemptyset(&none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setsigmask(&attr, &none);
  short flags = POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK;
  if (new_session) flags |= POSIX_SPAWN_SETSID;
  posix_spawnattr_setflags(&attr, flags);
  std::vector<std::string> env = MinimalEnv();
  auto cargv = CStrings(argv);
  auto cenv = CStrings(env);
  pid_t pid = -1;
  int r = posix_spawn(&pid, path.c_str(), &fa, &attr, cargv.data(), cenv.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (r != 0) return Error(Code::kInternal, "starting {}: {}", path, ErrnoText(r));
  return pid;
}

struct CommandResult {
  int status = 0;  // as from waitpid
  std::string out;
  std::string err;
  bool ok() const { return WIFEXITED(status) && WEXITSTATUS(status) == 0; }
  // The last line of stderr, for error messages.
  std::string Reason() const {
    std::string_view e = err;
    while (!e.empty() && (e.back() == '\n' || e.back() == ' ')) e.remove_suffix(1);
    size_t nl = e.rfind('\n');
    if (nl != std::string_view::npos) e = e.substr(nl + 1);
    if (e.empty()) {
      return WIFEXITED(status) ? fmt::format("exit code {}", WEXITSTATUS(status))
                               : fmt::format("killed by {}", SignalName(WTERMSIG(status)));
    }
    return std::string(e);
  }
};

int PidfdOpen(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

// Runs argv[0] (stdin /dev/null, output captured) and waits for it, at most `timeout`; then
// `on_timeout` runs and the command is SIGKILLed.
Result<CommandResult> RunCommand(const std::vector<std::string>& argv, milliseconds timeout,
                                 const std::function<void()>& on_timeout = {}) {
  std::array<int, 2> out_pipe{-1, -1};
  std::array<int, 2> err_pipe{-1, -1};
  if (::pipe2(out_pipe.data(), O_CLOEXEC) != 0) return Error(Code::kInternal, "pipe failed");
  Fd out_r = HighFd(out_pipe[0]);
  Fd out_w = HighFd(out_pipe[1]);
  if (::pipe2(err_pipe.data(), O_CLOEXEC) != 0) return Error(Code::kInternal, "pipe failed");
  Fd err_r = HighFd(err_pipe[0]);
  Fd err_w = HighFd(err_pipe[1]);
  if (!out_r.valid() || !out_w.valid() || !err_r.valid() || !err_w.valid())
    return Error(Code::kInternal, "no file descriptors left");
  VERGE_ASSIGN_OR_RETURN(pid_t pid,
                         Spawn(argv[0], argv, {{0, -1}, {1, out_w.get()}, {2, err_w.get()}},
                               /*new_session=*/false));
  out_w.Reset();
  err_w.Reset();
  ::fcntl(out_r.get(), F_SETFL, O_NONBLOCK);
  ::fcntl(err_r.get(), F_SETFL, O_NONBLOCK);
  Fd pidfd(PidfdOpen(pid));
  CommandResult res;
  auto drain = [&](Fd& fd, std::string* into) {
    std::array<char, 16384> buf{};
    while (fd.valid()) {
      ssize_t n = ::read(fd.get(), buf.data(), buf.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return;  // EAGAIN: nothing more now
      if (n == 0) {
        fd.Reset();
        return;
      }
      if (into->size() < kMaxCommandOutput) into->append(buf.data(), static_cast<size_t>(n));
    }
  };
  auto deadline = Clock::now() + timeout;
  for (;;) {
    pid_t r = ::waitpid(pid, &res.status, WNOHANG);
    if (r == pid) break;
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      if (on_timeout) on_timeout();
      ::kill(pid, SIGKILL);
      while (::waitpid(pid, &res.status, 0) < 0 && errno == EINTR) {
      }
      return Error(Code::kDeadlineExceeded, "{} did not finish within {} ms", argv[0],
                   timeout.count());
    }
    std::array<pollfd, 3> pfds{pollfd{out_r.get(), POLLIN, 0}, pollfd{err_r.get(), POLLIN, 0},
                               pollfd{pidfd.get(), POLLIN, 0}};
    // Without a pidfd (old kernels) exits are noticed by polling.
    int wait_ms = static_cast<int>(std::min<int64_t>(left.count(), pidfd.valid() ? 1000 : 20));
    ::poll(pfds.data(), pfds.size(), wait_ms);
    drain(out_r, &res.out);
    drain(err_r, &res.err);
  }
  // Grandchildren may hold the pipes open: take what is there and stop.
  drain(out_r, &res.out);
  drain(err_r, &res.err);
  return res;
}

// v1 controllers mounted next to a cgroup2 hierarchy: crun refuses to work there.
bool HybridCgroupLayout() {
  auto mountinfo = ReadFile("/proc/self/mountinfo");
  if (!mountinfo.ok()) return false;
  bool v1 = false;
  bool v2 = false;
  size_t start = 0;
  while (start < mountinfo->size()) {
    size_t end = mountinfo->find('\n', start);
    if (end == std::string::npos) end = mountinfo->size();
    std::string_view line = std::string_view(*mountinfo).substr(start, end - start);
    start = end + 1;
    size_t sep = line.find(" - ");
    if (sep == std::string_view::npos) continue;
    std::string_view fs = line.substr(sep + 3);
    fs = fs.substr(0, fs.find(' '));
    if (fs == "cgroup2") v2 = true;
    // A v1 hierarchy with real controllers (name=systemd alone is bookkeeping).
    if (fs == "cgroup" && line.find("name=systemd") == std::string_view::npos) v1 = true;
  }
  return v1 && v2;
}

std::optional<std::string> FindExecutable(const std::string& name) {
  std::string path = ::getenv("PATH") != nullptr ? ::getenv("PATH") : "";
  path += ":/usr/local/sbin:/usr/sbin:/sbin";
  size_t i = 0;
  while (i <= path.size()) {
    size_t j = path.find(':', i);
    if (j == std::string::npos) j = path.size();
    std::string dir = path.substr(i, j - i);
    i = j + 1;
    if (dir.empty() || dir[0] != '/') continue;
    std::string candidate = fmt::format("{}/{}", dir, name);
    struct stat st {};
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        ::access(candidate.c_str(), X_OK) == 0)
      return candidate;
  }
  return std::nullopt;
}

// Absolute, normalised, not "/": where a mount may go in a container.
Status CheckMountPath(std::string_view p, std::string_view what) {
  if (p.empty() || p[0] != '/')
    return Error(Code::kInvalidArgument, "{} \"{}\" must be an absolute path", what, p);
  size_t i = 1;
  bool any = false;
  while (i <= p.size()) {
    size_t j = p.find('/', i);
    if (j == std::string_view::npos) j = p.size();
    std::string_view c = p.substr(i, j - i);
    if (c == "." || c == "..")
      return Error(Code::kInvalidArgument, "{} \"{}\" may not contain \".\" or \"..\"", what, p);
    if (!c.empty()) any = true;
    i = j + 1;
  }
  if (!any) return Error(Code::kInvalidArgument, "{} may not be \"/\"", what);
  return Status::Ok();
}

Status CheckConfigPath(std::string_view p) {
  if (p.empty() || p[0] == '/')
    return Error(Code::kInvalidArgument, "config file \"{}\" must be a relative path", p);
  size_t i = 0;
  while (i <= p.size()) {
    size_t j = p.find('/', i);
    if (j == std::string_view::npos) j = p.size();
    std::string_view c = p.substr(i, j - i);
    if (c.empty() || c == "." || c == "..")
      return Error(Code::kInvalidArgument, "config file \"{}\" is not a plain relative path", p);
    i = j + 1;
  }
  return Status::Ok();
}

// Docker's default capability set.
const std::vector<std::string>& DefaultCapabilities() {
  static const std::vector<std::string> caps = {
      "CAP_CHOWN",   "CAP_DAC_OVERRIDE", "CAP_FSETID",           "CAP_FOWNER",
      "CAP_MKNOD",   "CAP_NET_RAW",      "CAP_SETGID",           "CAP_SETUID",
      "CAP_SETFCAP", "CAP_SETPCAP",      "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
      "CAP_KILL",    "CAP_AUDIT_WRITE"};
  return caps;
}

json Mount(const std::string& dest, const std::string& type, const std::string& source,
           std::vector<std::string> options) {
  return json{{"destination", dest}, {"type", type}, {"source", source}, {"options", options}};
}

Status WriteConfigFiles(const WorkloadSpec& spec) {
  std::string config_dir = spec.dir + "/config";
  std::error_code ec;
  std::filesystem::remove_all(config_dir, ec);
  if (ec) return Error(Code::kInternal, "removing {}: {}", config_dir, ec.message());
  std::filesystem::create_directories(config_dir, ec);
  if (ec) return Error(Code::kInternal, "creating {}: {}", config_dir, ec.message());
  // Bind-mounted as is: the container's user must be able to look inside.
  ::chmod(config_dir.c_str(), 0755);
  for (const auto& f : spec.config) {
    VERGE_RETURN_IF_ERROR(CheckConfigPath(f.path));
    std::filesystem::path path = std::filesystem::path(config_dir) / f.path;
    std::filesystem::create_directories(path.parent_path(), ec);
    if (ec)
      return Error(Code::kInternal, "creating {}: {}", path.parent_path().string(), ec.message());
    for (auto p = path.parent_path(); p.string().size() > config_dir.size(); p = p.parent_path())
      ::chmod(p.c_str(), 0755);
    VERGE_RETURN_IF_ERROR(
        WriteFileAtomic(path.string(), f.content, static_cast<int>(f.mode & 0777)));
  }
  return Status::Ok();
}

Status PrepareVolumes(const WorkloadSpec& spec, const ImageUser& user) {
  for (const auto& v : spec.volumes) {
    if (v.host_path.empty() || v.host_path[0] != '/')
      return Error(Code::kInvalidArgument, "volume {}: host path \"{}\" must be absolute", v.name,
                   v.host_path);
    VERGE_RETURN_IF_ERROR(
        CheckMountPath(v.mount_path, fmt::format("volume {} mount path", v.name)));
    if (FileExists(v.host_path)) continue;
    std::error_code ec;
    std::filesystem::create_directories(v.host_path, ec);
    if (ec)
      return Error(Code::kInternal, "creating volume {} at {}: {}", v.name, v.host_path,
                   ec.message());
    // A new volume belongs to the container's user, who must be able to write to it.
    if (::chown(v.host_path.c_str(), user.uid, user.gid) != 0)
      return Error(Code::kInternal, "chown {}: {}", v.host_path, ErrnoText(errno));
  }
  return Status::Ok();
}

Result<std::string> WriteEtcFiles(const WorkloadSpec& spec, const std::string& bundle,
                                  std::string* resolv) {
  std::string hosts;
  if (!spec.isolated_network) {
    auto host = ReadFile("/etc/hosts");
    if (host.ok()) hosts = *host;
  }
  if (hosts.empty()) hosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";
  if (hosts.back() != '\n') hosts += '\n';
  hosts += fmt::format("127.0.1.1\t{}\n", spec.id);
  std::string hosts_file = bundle + "/hosts";
  VERGE_RETURN_IF_ERROR(WriteFileAtomic(hosts_file, hosts, 0644));
  resolv->clear();
  if (!spec.isolated_network) {
    auto text = ReadFile("/etc/resolv.conf");
    if (text.ok()) {
      *resolv = bundle + "/resolv.conf";
      VERGE_RETURN_IF_ERROR(WriteFileAtomic(*resolv, *text, 0644));
    }
  }
  return hosts_file;
}

// Swap is limited (memory.swap = memory.limit) only where the kernel accounts it.
bool SwapAccounted(const CgroupManager& cg) {
  if (cg.v2()) return true;
  std::string dir = cg.DirOf("", "memory");
  return !dir.empty() && FileExists(dir + "/memory.memsw.limit_in_bytes");
}

// The last error runc logged (--log-format json), for Start's message.
std::string LastRuncError(const std::string& log_path) {
  auto text = ReadFile(log_path);
  if (!text.ok()) return "";
  std::string last;
  size_t start = 0;
  while (start < text->size()) {
    size_t end = text->find('\n', start);
    if (end == std::string::npos) end = text->size();
    json j = json::parse(text->substr(start, end - start), nullptr, false);
    start = end + 1;
    if (j.is_object() && j.value("level", "") == "error" && j.contains("msg") &&
        j["msg"].is_string())
      last = j["msg"].get<std::string>();
  }
  return last;
}

// Reaps our own zombie child `pid` (no-op for anyone else's).
void Reap(pid_t pid) {
  int st = 0;
  while (::waitpid(pid, &st, WNOHANG) < 0 && errno == EINTR) {
  }
}

// Whether the supervisor of `h` still runs (reaping it when it is our zombie).
bool SupervisorAlive(const Handle& h) {
  ProcInfo p = ReadProc(h.pid);
  if (!p.exists || p.start_time != h.start_time) return false;
  if (p.state == 'Z' || p.state == 'X') {
    Reap(static_cast<pid_t>(h.pid));
    return false;
  }
  return true;
}

// Waits until the supervisor of `h` is gone, at most `timeout`; true if it is.
bool WaitSupervisor(const Handle& h, milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  Fd pidfd(PidfdOpen(static_cast<pid_t>(h.pid)));
  for (;;) {
    if (!SupervisorAlive(h)) return true;
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return false;
    if (pidfd.valid()) {
      pollfd pfd{pidfd.get(), POLLIN, 0};
      ::poll(&pfd, 1, static_cast<int>(std::min<int64_t>(left.count(), 1000)));
    } else {
      std::this_thread::sleep_for(std::min(left, milliseconds(20)));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The supervisor (a fresh process: /proc/self/exe re-executed, see oci.h).

Result<pid_t> ReadPidFile(const std::string& path) {
  VERGE_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  char* end = nullptr;
  long v = std::strtol(text.c_str(), &end, 10);
  if (end == text.c_str() || v <= 0) return Error(Code::kInternal, "bad pid file {}", path);
  return static_cast<pid_t>(v);
}

int WaitChild(pid_t pid) {
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  return st;
}

void SupervisorReport(std::string_view msg) {
  ssize_t n = ::write(kReadyFd, msg.data(), msg.size());
  (void)n;
  ::close(kReadyFd);
}

int SupervisorMain(char** argv) {
  const std::string binary = argv[kArgBinary];
  const std::string root = argv[kArgStateRoot];
  const std::string bundle = argv[kArgBundle];
  const std::string id = argv[kArgId];
  const std::string dir = argv[kArgDir];
  const std::string parent = argv[kArgCgroupParent];
  const std::string rel = argv[kArgCgroup];

  // Descriptors the agent leaked without close-on-exec must not outlive it here.
  ::syscall(SYS_close_range, kReadyFd + 1, ~0U, 0);
  ::fcntl(kReadyFd, F_SETFD, FD_CLOEXEC);
  ::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
  for (int sig : {SIGHUP, SIGINT, SIGTERM, SIGPIPE, SIGQUIT, SIGUSR1, SIGUSR2})
    ::signal(sig, SIG_IGN);

  auto runc = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {binary, "--root", root});
    return args;
  };
  auto remove = [&] {
    auto pid = Spawn(binary, runc({"delete", "--force", id}), {{0, -1}, {1, -1}, {2, -1}}, false);
    if (pid.ok()) WaitChild(*pid);
  };
  std::string pid_file = bundle + "/init.pid";
  ::unlink(pid_file.c_str());
  // stdout and stderr (the log) pass through runc to the container; stdin is /dev/null.
  auto run = Spawn(binary,
                   runc({"--log", bundle + "/runc.log", "--log-format", "json", "run", "--detach",
                         "--bundle", bundle, "--pid-file", pid_file, id}),
                   {{0, 0}, {1, 1}, {2, 2}}, false);
  if (!run.ok() || WaitChild(*run) != 0) {
    SupervisorReport("fail\n");
    remove();
    return 1;
  }
  auto init = ReadPidFile(pid_file);
  if (!init.ok()) {
    SupervisorReport("fail\n");
    remove();
    return 1;
  }
  SupervisorReport(fmt::format("ok {}\n", *init));

  // runc has exited: the container's init is an orphan, and as the subreaper we inherit it.
  int status = 0;
  bool known = false;
  for (;;) {
    pid_t r = ::waitpid(-1, &status, 0);
    if (r == *init) {
      known = true;
      break;
    }
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      // Not our child after all (the kernel gave it to another reaper): wait it out blind.
      while (::kill(*init, 0) == 0) ::usleep(200 * 1000);
      break;
    }
  }
  while (::waitpid(-1, nullptr, WNOHANG) > 0) {
  }
  uint64_t oom_kills = 0;
  auto cg = CgroupManager::Open(parent);
  if (cg.ok()) {
    auto usage = cg->Usage(rel);
    if (usage.ok() && usage->oom_kills > 0 &&
        (!usage->oom_kills_estimated ||
         (known && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)))
      oom_kills = usage->oom_kills;
  }
  std::string record;
  if (known) {
    record = fmt::format("code={}\nsignal={}\noom_kills={}\n",
                         WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                         WIFSIGNALED(status) ? WTERMSIG(status) : 0, oom_kills);
  } else {
    record = fmt::format(
        "code=-1\nsignal=0\noom_kills={}\nmessage=the container ended; its exit status is "
        "unknown\n",
        oom_kills);
  }
  (void)WriteFileAtomic(dir + "/exit", record, 0644);
  remove();
  return 0;
}

// Runs before main() in every process of a binary that links the OCI runtime; only the
// supervisor's name makes it do anything. glibc passes argc/argv to ELF constructors.
__attribute__((constructor)) void MaybeRunSupervisor(int argc, char** argv, char** /*envp*/) {
  if (argc == kSupervisorArgc && argv != nullptr && argv[0] != nullptr &&
      std::strcmp(argv[0], kSupervisorName) == 0) {
    ::_exit(SupervisorMain(argv));
  }
}

}  // namespace

Result<std::string> BuildRuntimeSpec(const WorkloadSpec& spec, const OciSpecInput& in) {
  std::vector<std::string> args = spec.command;
  if (args.empty()) {
    args = in.image.entrypoint;
    args.insert(args.end(), in.image.cmd.begin(), in.image.cmd.end());
  }
  if (args.empty())
    return Error(Code::kInvalidArgument,
                 "{}: the image has neither Entrypoint nor Cmd and the app gives no command",
                 spec.id);

  // Environment: the image's, then the app's, then ours; later ones win, order kept.
  std::vector<std::pair<std::string, std::string>> env;
  auto set = [&](const std::string& key, const std::string& value) {
    for (auto& kv : env) {
      if (kv.first == key) {
        kv.second = value;
        return;
      }
    }
    env.emplace_back(key, value);
  };
  for (const auto& kv : in.image.env) {
    size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) continue;
    set(kv.substr(0, eq), kv.substr(eq + 1));
  }
  for (const auto& [k, v] : spec.env) {
    if (k.empty() || k.find('=') != std::string::npos)
      return Error(Code::kInvalidArgument, "bad environment variable name \"{}\"", k);
    set(k, v);
  }
  set("VERGE_APP", spec.app);
  set("VERGE_WORKLOAD", spec.id);
  set("VERGE_CONFIG_DIR", spec.config_mount);
  auto has = [&](const std::string& key) {
    return std::any_of(env.begin(), env.end(), [&](const auto& kv) { return kv.first == key; });
  };
  if (!has("PATH")) set("PATH", kDefaultPath);
  if (!has("HOME")) set("HOME", in.user.home);
  std::vector<std::string> env_list;
  env_list.reserve(env.size());
  for (const auto& [k, v] : env) env_list.push_back(fmt::format("{}={}", k, v));

  std::string cwd = in.image.working_dir.empty() ? "/" : in.image.working_dir;
  if (cwd[0] != '/') cwd = "/" + cwd;

  // Non-root users get the default set as bounding set only (as Docker does): file
  // capabilities cannot exceed it, and nothing is effective by default.
  const auto& caps = DefaultCapabilities();
  std::vector<std::string> granted = in.user.uid == 0 ? caps : std::vector<std::string>{};
  json capabilities = {{"bounding", caps},
                       {"effective", granted},
                       {"permitted", granted},
                       {"inheritable", json::array()},
                       {"ambient", json::array()}};

  json process = {
      {"terminal", false},
      {"user",
       {{"uid", in.user.uid}, {"gid", in.user.gid}, {"additionalGids", in.user.additional_gids}}},
      {"args", args},
      {"env", env_list},
      {"cwd", cwd},
      {"capabilities", capabilities},
      {"rlimits",
       json::array({{{"type", "RLIMIT_NOFILE"}, {"hard", in.nofile}, {"soft", in.nofile}}})},
      {"noNewPrivileges", true},
  };

  VERGE_RETURN_IF_ERROR(CheckMountPath(spec.config_mount, "config mount"));
  json mounts = json::array();
  mounts.push_back(Mount("/proc", "proc", "proc", {"nosuid", "noexec", "nodev"}));
  mounts.push_back(
      Mount("/dev", "tmpfs", "tmpfs", {"nosuid", "strictatime", "mode=755", "size=65536k"}));
  mounts.push_back(
      Mount("/dev/pts", "devpts", "devpts",
            {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}));
  mounts.push_back(
      Mount("/dev/shm", "tmpfs", "shm", {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}));
  mounts.push_back(Mount("/dev/mqueue", "mqueue", "mqueue", {"nosuid", "noexec", "nodev"}));
  mounts.push_back(Mount("/sys", "sysfs", "sysfs", {"nosuid", "noexec", "nodev", "ro"}));
  mounts.push_back(
      Mount("/sys/fs/cgroup", "cgroup", "cgroup", {"nosuid", "noexec", "nodev", "relatime", "ro"}));
  // The root is read-only: these are where a container may write (besides its volumes).
  mounts.push_back(Mount("/tmp", "tmpfs", "tmpfs", {"nosuid", "nodev", "mode=1777"}));
  mounts.push_back(Mount("/run", "tmpfs", "tmpfs", {"nosuid", "nodev", "mode=755"}));
  if (!in.hosts_file.empty())
    mounts.push_back(
        Mount("/etc/hosts", "bind", in.hosts_file, {"rbind", "ro", "nosuid", "nodev", "noexec"}));
  if (!in.resolv_file.empty())
    mounts.push_back(Mount("/etc/resolv.conf", "bind", in.resolv_file,
                           {"rbind", "ro", "nosuid", "nodev", "noexec"}));
  mounts.push_back(Mount(spec.config_mount, "bind", spec.dir + "/config",
                         {"rbind", "ro", "nosuid", "nodev", "noexec"}));
  for (const auto& v : spec.volumes) {
    VERGE_RETURN_IF_ERROR(
        CheckMountPath(v.mount_path, fmt::format("volume {} mount path", v.name)));
    mounts.push_back(Mount(v.mount_path, "bind", v.host_path,
                           {"rbind", v.read_only ? "ro" : "rw", "nosuid", "nodev"}));
  }

  json namespaces =
      json::array({{{"type", "pid"}}, {{"type", "mount"}}, {{"type", "ipc"}}, {{"type", "uts"}}});
  if (spec.isolated_network) namespaces.push_back({{"type", "network"}});

  json resources = {{"devices", json::array({{{"allow", false}, {"access", "rwm"}}})}};
  if (spec.memory_mb > 0) {
    int64_t bytes = static_cast<int64_t>(spec.memory_mb) << 20;
    resources["memory"] = {{"limit", bytes}};
    if (in.limit_swap) resources["memory"]["swap"] = bytes;
  }
  if (spec.cpu_millicores > 0) {
    constexpr uint64_t kPeriod = 100000;
    uint64_t quota = std::max<uint64_t>(spec.cpu_millicores * kPeriod / 1000, 1000);
    resources["cpu"] = {{"quota", quota}, {"period", kPeriod}};
  }
  if (in.pids_max > 0) resources["pids"] = {{"limit", in.pids_max}};

  json linux_section = {
      {"namespaces", namespaces},
      {"cgroupsPath", in.cgroups_path},
      {"resources", resources},
      {"maskedPaths",
       {"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
        "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
        "/proc/scsi"}},
      {"readonlyPaths", {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}},
  };

  json config = {
      {"ociVersion", "1.0.2"},
      {"process", process},
      {"root", {{"path", in.rootfs}, {"readonly", true}}},
      {"hostname", spec.id},
      {"mounts", mounts},
      {"linux", linux_section},
  };
  return config.dump(2) + "\n";
}

OciRuntime::OciRuntime(OciOptions options)
    : options_(std::move(options)),
      cgroups_(CgroupManager::Open(options_.cgroup_parent, options_.cgroup_paths)) {}

std::string OciRuntime::binary() const {
  std::lock_guard lock(available_mu_);
  return binary_;
}

Status OciRuntime::Available() const {
  std::lock_guard lock(available_mu_);
  if (available_) return *available_;
  auto decide = [&]() -> Status {
    if (::geteuid() != 0)
      return Error(Code::kFailedPrecondition,
                   "OCI containers need root (rootless runc is not supported); the agent runs as "
                   "uid {}",
                   ::geteuid());
    if (!cgroups_.ok()) return cgroups_.status().Wrap("OCI runtime");
    if (!cgroups_->HasController("memory") || !cgroups_->HasController("cpu"))
      return Error(Code::kFailedPrecondition,
                   "OCI runtime: the cgroup memory and cpu controllers are needed ({})",
                   cgroups_->Describe());
    std::vector<std::string> candidates;
    if (!options_.runtime_path.empty()) {
      candidates.push_back(options_.runtime_path);
    } else {
      for (const char* name : {"runc", "crun"}) {
        if (auto found = FindExecutable(name)) candidates.push_back(*found);
      }
      if (candidates.empty())
        return Error(Code::kFailedPrecondition,
                     "no OCI runtime: install runc (runc or crun not found in PATH)");
    }
    std::vector<std::string> reasons;
    for (const auto& c : candidates) {
      std::string name = std::filesystem::path(c).filename().string();
      if (name.find("crun") != std::string::npos && HybridCgroupLayout()) {
        reasons.push_back(fmt::format(
            "{}: crun refuses a hybrid cgroup layout (v1 controllers with a cgroup2 mount); "
            "install runc",
            c));
        continue;
      }
      auto version = RunCommand({c, "--version"}, kCommandTimeout);
      if (!version.ok()) {
        reasons.push_back(fmt::format("{}: {}", c, version.status().message()));
        continue;
      }
      if (!version->ok()) {
        reasons.push_back(fmt::format("{} --version: {}", c, version->Reason()));
        continue;
      }
      binary_ = c;
      return Status::Ok();
    }
    return Error(Code::kFailedPrecondition, "no OCI runtime works: {}", fmt::join(reasons, "; "));
  };
  available_ = decide();
  return *available_;
}

Result<std::string> OciRuntime::Binary() const {
  VERGE_RETURN_IF_ERROR(Available());
  std::lock_guard lock(available_mu_);
  return binary_;
}

Status OciRuntime::CheckHandle(const Handle& h) const {
  if (h.kind != Kind::kContainer)
    return Error(Code::kInvalidArgument, "handle {} is not a container", h.id);
  if (!ValidId(h.container_id))
    return Error(Code::kInvalidArgument, "handle {}: bad container id \"{}\"", h.id,
                 h.container_id);
  if (h.dir.empty() || h.dir[0] != '/')
    return Error(Code::kInvalidArgument, "handle {}: bad directory \"{}\"", h.id, h.dir);
  if (!cgroups_.ok()) return cgroups_.status();
  if (!cgroups_->Owns(h.cgroup))
    return Error(Code::kInvalidArgument, "handle {}: cgroup \"{}\" is not one of ours", h.id,
                 h.cgroup);
  return Status::Ok();
}

Result<std::optional<std::string>> OciRuntime::State(const std::string& binary,
                                                     const std::string& id) const {
  VERGE_ASSIGN_OR_RETURN(
      CommandResult r,
      RunCommand({binary, "--root", options_.state_root, "state", id}, kCommandTimeout));
  if (!r.ok()) {
    if (r.err.find("does not exist") != std::string::npos ||
        r.err.find("not exist") != std::string::npos)
      return std::optional<std::string>();
    return Error(Code::kInternal, "{} state {}: {}", binary, id, r.Reason());
  }
  json j = json::parse(r.out, nullptr, false);
  if (!j.is_object() || !j.contains("status") || !j["status"].is_string())
    return Error(Code::kInternal, "{} state {}: unexpected output", binary, id);
  return std::optional<std::string>(j["status"].get<std::string>());
}

void OciRuntime::Delete(const std::string& binary, const std::string& id) const {
  auto r =
      RunCommand({binary, "--root", options_.state_root, "delete", "--force", id}, kCommandTimeout);
  (void)r;  // "does not exist" is the common, good case
}

Result<Handle> OciRuntime::Start(const WorkloadSpec& spec) {
  if (!ValidId(spec.id))
    return Error(Code::kInvalidArgument, "workload id \"{}\" must be [a-z0-9-], 1-63 characters",
                 spec.id);
  if (spec.kind != Kind::kContainer)
    return Error(Code::kInvalidArgument, "{} is not a container workload", spec.id);
  if (spec.dir.empty() || spec.dir[0] != '/')
    return Error(Code::kInvalidArgument, "{}: the workload directory must be absolute", spec.id);
  if (spec.artifact.empty()) return Error(Code::kInvalidArgument, "{}: no image archive", spec.id);
  VERGE_ASSIGN_OR_RETURN(std::string binary, Binary());
  std::string rel = cgroups_->PathOf(spec.id);

  VERGE_ASSIGN_OR_RETURN(std::optional<std::string> state, State(binary, spec.id));
  if (state && *state != "stopped")
    return Error(Code::kAlreadyExists, "container {} already exists ({}): adopt or stop it first",
                 spec.id, *state);
  if (state) Delete(binary, spec.id);

  auto h = Launch(spec, binary, rel);
  if (!h.ok()) return h.status().Wrap(fmt::format("starting {}", spec.id));
  return h;
}

Result<Handle> OciRuntime::Launch(const WorkloadSpec& spec, const std::string& binary,
                                  const std::string& rel) {
  UnpackedImage image;
  {
    std::lock_guard lock(unpack_mu_);
    VERGE_ASSIGN_OR_RETURN(
        image, UnpackImageCached(spec.artifact, options_.images_dir, options_.unpack_limits));
  }
  VERGE_ASSIGN_OR_RETURN(ImageUser user, ResolveImageUser(image.rootfs, image.config.user));

  const std::string bundle = spec.dir + "/bundle";
  VERGE_RETURN_IF_ERROR(MakeDirs(spec.dir + "/log"));
  std::error_code ec;
  std::filesystem::remove_all(bundle, ec);
  VERGE_RETURN_IF_ERROR(MakeDirs(bundle));
  VERGE_RETURN_IF_ERROR(MakeDirs(options_.state_root));
  ::unlink((spec.dir + "/exit").c_str());
  VERGE_RETURN_IF_ERROR(WriteConfigFiles(spec));
  VERGE_RETURN_IF_ERROR(PrepareVolumes(spec, user));

  OciSpecInput in;
  in.rootfs = image.rootfs;
  in.image = image.config;
  in.user = user;
  // runc resolves a relative cgroupsPath below its own cgroup in each v1 hierarchy, as
  // CgroupManager does. On v2 the agent may sit in a leaf below its own cgroup (cgroup.h), so
  // the path is given absolute there.
  in.cgroups_path = rel;
  if (cgroups_->v2()) {
    std::string dir = cgroups_->DirOf(rel, "cpuacct");
    const std::string& root = options_.cgroup_paths.root;
    if (dir.size() <= root.size() || dir.compare(0, root.size(), root) != 0)
      return Error(Code::kInternal, "cgroup {} is not below {}", dir, root);
    in.cgroups_path = dir.substr(root.size());
  }
  VERGE_ASSIGN_OR_RETURN(in.hosts_file, WriteEtcFiles(spec, bundle, &in.resolv_file));
  in.limit_swap = SwapAccounted(*cgroups_);
  in.pids_max = options_.pids_max;
  // Raising the hard limit above ours needs CAP_SYS_RESOURCE, which a confined agent may lack.
  rlimit nofile{};
  if (::getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_max != RLIM_INFINITY)
    in.nofile = std::min<uint64_t>(in.nofile, nofile.rlim_max);
  VERGE_ASSIGN_OR_RETURN(std::string config, BuildRuntimeSpec(spec, in));
  VERGE_RETURN_IF_ERROR(WriteFileAtomic(bundle + "/config.json", config, 0644));

  // The cgroup is made here, not by runc: CgroupManager knows how to get controllers delegated
  // on v2, and a left-over one (an earlier agent's) is emptied first.
  if (cgroups_->Exists(rel)) VERGE_RETURN_IF_ERROR(cgroups_->Remove(rel, kKillTimeout));
  CgroupLimits limits;
  limits.cpu_millicores = spec.cpu_millicores;
  limits.memory_bytes = spec.memory_mb << 20;
  limits.pids_max = options_.pids_max;
  VERGE_RETURN_IF_ERROR(cgroups_->Create(rel, limits));
  auto fail = [&](Status st) {
    (void)cgroups_->Remove(rel, kKillTimeout);
    return st;
  };

  Fd log = HighFd(::open((spec.dir + "/log/output.log").c_str(),
                         O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  if (!log.valid()) return fail(Error(Code::kInternal, "opening the log: {}", ErrnoText(errno)));
  std::array<int, 2> p{-1, -1};
  if (::pipe2(p.data(), O_CLOEXEC) != 0)
    return fail(Error(Code::kInternal, "pipe: {}", ErrnoText(errno)));
  Fd ready_r = HighFd(p[0]);
  Fd ready_w = HighFd(p[1]);
  std::vector<std::string> argv(kSupervisorArgc);
  argv[0] = kSupervisorName;
  argv[kArgBinary] = binary;
  argv[kArgStateRoot] = options_.state_root;
  argv[kArgBundle] = bundle;
  argv[kArgId] = spec.id;
  argv[kArgDir] = spec.dir;
  argv[kArgCgroupParent] = options_.cgroup_parent;
  argv[kArgCgroup] = rel;
  auto pid = Spawn("/proc/self/exe", argv,
                   {{0, -1}, {1, log.get()}, {2, log.get()}, {kReadyFd, ready_w.get()}},
                   /*new_session=*/true);
  if (!pid.ok()) return fail(pid.status());
  ready_w.Reset();
  Handle h;
  h.id = spec.id;
  h.kind = Kind::kContainer;
  h.pid = *pid;
  h.start_time = ReadProc(*pid).start_time;  // our unreaped child: the pid cannot be reused
  h.cgroup = rel;
  h.container_id = spec.id;
  h.dir = spec.dir;

  // "ok <init pid>\n" once the container runs; "fail\n" or EOF when runc could not start it.
  std::string msg;
  auto deadline = Clock::now() + options_.start_timeout;
  bool timed_out = false;
  while (msg.find('\n') == std::string::npos) {
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd pfd{ready_r.get(), POLLIN, 0};
    int r = ::poll(&pfd, 1, static_cast<int>(std::min<int64_t>(left.count(), 1000)));
    if (r <= 0) continue;
    std::array<char, 64> buf{};
    ssize_t n = ::read(ready_r.get(), buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    msg.append(buf.data(), static_cast<size_t>(n));
  }
  if (msg.starts_with("ok ")) return h;

  if (timed_out) {
    ::kill(static_cast<pid_t>(h.pid), SIGKILL);
    Delete(binary, spec.id);
  }
  WaitSupervisor(h, kKillTimeout);
  std::string reason = LastRuncError(bundle + "/runc.log");
  if (reason.empty()) reason = timed_out ? "timed out" : "runc failed (see the log)";
  return fail(Error(timed_out ? Code::kDeadlineExceeded : Code::kFailedPrecondition, "{}: {}",
                    std::filesystem::path(binary).filename().string(), reason));
}

Status OciRuntime::Stop(const Handle& h, milliseconds grace) {
  VERGE_RETURN_IF_ERROR(CheckHandle(h));
  VERGE_ASSIGN_OR_RETURN(std::string binary, Binary());
  if (grace.count() < 0) grace = kDefaultGrace;
  const std::string& id = h.container_id;
  auto kill = [&](std::vector<std::string> args) {
    std::vector<std::string> argv = {binary, "--root", options_.state_root, "kill"};
    argv.insert(argv.end(), args.begin(), args.end());
    (void)RunCommand(argv, kCommandTimeout);
  };
  auto running = [&]() {
    auto s = State(binary, id);
    return s.ok() && s->has_value() && **s != "stopped";
  };
  // The supervisor's exit means the container ended and was recorded and deleted.
  auto gone = [&](milliseconds timeout) {
    if (SupervisorAlive(h)) return WaitSupervisor(h, timeout);
    auto deadline = Clock::now() + timeout;
    while (running()) {
      if (Clock::now() >= deadline) return false;
      std::this_thread::sleep_for(milliseconds(50));
    }
    return true;
  };
  if (running() || SupervisorAlive(h)) {
    kill({id, "SIGTERM"});
    if (!gone(grace)) {
      kill({"--all", id, "SIGKILL"});
      if (!gone(kKillTimeout) && SupervisorAlive(h)) {
        // A stuck supervisor: the container is gone or going; clean up without it.
        ::kill(static_cast<pid_t>(h.pid), SIGKILL);
        WaitSupervisor(h, kKillTimeout);
      }
    }
  }
  Delete(binary, id);
  if (!ReadExitRecord(h.dir)) {
    (void)WriteFileAtomic(h.dir + "/exit",
                          "code=-1\nsignal=9\nmessage=stopped; the exit status was not recorded\n",
                          0644);
  }
  return cgroups_->Remove(h.cgroup, kKillTimeout);
}

Result<Observed> OciRuntime::Poll(const Handle& h) {
  VERGE_RETURN_IF_ERROR(CheckHandle(h));
  if (SupervisorAlive(h)) return Observed{true, std::nullopt};
  auto rec = ReadExitRecord(h.dir);
  if (!rec) {
    // The supervisor died without a record (it was killed): the container may live on.
    VERGE_ASSIGN_OR_RETURN(std::string binary, Binary());
    VERGE_ASSIGN_OR_RETURN(std::optional<std::string> state, State(binary, h.container_id));
    if (state && *state != "stopped") return Observed{true, std::nullopt};
    rec = ExitRecord{};
    rec->message = "the container ended without an exit record (its supervisor was killed)";
  }
  ExitInfo info;
  info.exit_code = rec->signal > 0 ? -1 : rec->code;
  info.signal = rec->signal;
  info.oom_killed = rec->oom_kills > 0;
  info.message = rec->message;
  DescribeExit(info);
  return Observed{false, info};
}

Result<bool> OciRuntime::Adopt(const Handle& h) {
  VERGE_RETURN_IF_ERROR(CheckHandle(h));
  VERGE_ASSIGN_OR_RETURN(std::string binary, Binary());
  if (!SupervisorAlive(h)) return false;
  VERGE_ASSIGN_OR_RETURN(std::optional<std::string> state, State(binary, h.container_id));
  if (state && *state != "stopped") return true;
  // It ended a moment ago; its supervisor is recording that. Let it finish, so Poll knows.
  WaitSupervisor(h, kKillTimeout);
  return false;
}

Result<Usage> OciRuntime::GetUsage(const Handle& h) {
  VERGE_RETURN_IF_ERROR(CheckHandle(h));
  if (!cgroups_->Exists(h.cgroup))
    return Error(Code::kFailedPrecondition, "container {} is not running", h.container_id);
  VERGE_ASSIGN_OR_RETURN(CgroupUsage u, cgroups_->Usage(h.cgroup));
  Usage out;
  out.cpu_usage_ns = u.cpu_usage_ns;
  out.memory_bytes = u.memory_bytes;
  out.memory_limit_bytes = u.memory_limit_bytes;
  out.oom_kills = u.oom_kills;
  return out;
}

Result<int> OciRuntime::Exec(const Handle& h, const std::vector<std::string>& argv,
                             milliseconds timeout) {
  VERGE_RETURN_IF_ERROR(CheckHandle(h));
  if (argv.empty()) return Error(Code::kInvalidArgument, "exec: no command");
  VERGE_ASSIGN_OR_RETURN(std::string binary, Binary());
  static std::atomic<uint64_t> counter{0};
  std::string pid_file = fmt::format("{}/bundle/exec-{}-{}.pid", h.dir, ::getpid(), ++counter);
  std::vector<std::string> cmd = {binary,       "--root", options_.state_root, "exec",
                                  "--pid-file", pid_file, h.container_id};
  cmd.insert(cmd.end(), argv.begin(), argv.end());
  // On timeout the command itself is killed, not only runc (which would leave it running).
  auto result = RunCommand(cmd, timeout, [&] {
    auto pid = ReadPidFile(pid_file);
    if (pid.ok()) ::kill(*pid, SIGKILL);
  });
  bool started = FileExists(pid_file);
  ::unlink(pid_file.c_str());
  if (!result.ok()) {
    if (result.status().code() == Code::kDeadlineExceeded)
      return Error(Code::kDeadlineExceeded, "exec {} in {}: no result within {} ms", argv[0],
                   h.container_id, timeout.count());
    return result.status();
  }
  if (!started && !result->ok())
    return Error(Code::kFailedPrecondition, "exec {} in {}: {}", argv[0], h.container_id,
                 result->Reason());
  int st = result->status;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

}  // namespace verge::node::runtime
