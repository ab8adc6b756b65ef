#include "node/runtime/native.h"

#include <fcntl.h>
#include <grp.h>
#include <net/if.h>
#include <poll.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <optional>
#include <system_error>
#include <thread>

#include "common/fs.h"
#include "node/runtime/internal.h"

namespace verge::node::runtime {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

constexpr const char* kDefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
constexpr milliseconds kKillTimeout{10000};

std::string Errno(int e) {
  return fmt::format("{} (errno {})", std::generic_category().message(e), e);
}

// ---------------------------------------------------------------------------------------------
// What runs between clone and exec. Only async-signal-safe calls, no allocation, and raw
// system calls where glibc would consult its (copied, possibly inconsistent) thread list:
// setgroups/setresgid/setresuid broadcast to all threads in glibc, fork runs atfork handlers.

enum Stage : int32_t {
  kStageSetsid = 1,
  kStageMountPrivate,
  kStageMountProc,
  kStageHostname,
  kStageLoopback,
  kStageVolume,
  kStageStdio,
  kStageFork,
  kStageChdir,
  kStageSetgroups,
  kStageSetgid,
  kStageSetuid,
  kStageNoNewPrivs,
  kStageExec,
  kStageCgroup,
  kStageSetns,
};

std::string_view StageName(int32_t stage) {
  switch (stage) {
    case kStageSetsid:
      return "creating a session";
    case kStageMountPrivate:
      return "making mounts private";
    case kStageMountProc:
      return "mounting /proc";
    case kStageHostname:
      return "setting the hostname";
    case kStageLoopback:
      return "bringing up the loopback interface";
    case kStageVolume:
      return "mounting a read-only volume";
    case kStageStdio:
      return "opening stdin/stdout/stderr";
    case kStageFork:
      return "forking the command";
    case kStageChdir:
      return "changing to the workload directory";
    case kStageSetgroups:
      return "setting supplementary groups";
    case kStageSetgid:
      return "changing group";
    case kStageSetuid:
      return "changing user";
    case kStageNoNewPrivs:
      return "setting no_new_privs";
    case kStageExec:
      return "executing";
    case kStageCgroup:
      return "joining the cgroup";
    case kStageSetns:
      return "entering the workload's namespaces";
    default:
      return "starting";
  }
}

struct ChildError {
  int32_t stage;
  int32_t err;
};

[[noreturn]] void Fail(int fd, int32_t stage, int code) {
  ChildError e{stage, errno};
  ssize_t n = write(fd, &e, sizeof e);
  (void)n;
  _exit(code);
}

// fork() without glibc's atfork machinery (which takes locks other agent threads may hold).
pid_t RawClone(uint64_t flags) {
  return static_cast<pid_t>(syscall(SYS_clone, static_cast<unsigned long>(flags | SIGCHLD), nullptr,
                                    nullptr, nullptr, nullptr));
}

void ResetSignals(const sigset_t* mask) {
  struct sigaction sa {};
  sa.sa_handler = SIG_DFL;
  sigemptyset(&sa.sa_mask);
  for (int s = 1; s < NSIG; ++s) {
    if (s != SIGKILL && s != SIGSTOP) sigaction(s, &sa, nullptr);
  }
  sigprocmask(SIG_SETMASK, mask, nullptr);
}

// Closes every descriptor except `keep` (few, any order).
void CloseAllExcept(const int* keep, int n) {
  int sorted[4];
  for (int i = 0; i < n; ++i) sorted[i] = keep[i];
  for (int i = 1; i < n; ++i) {
    for (int j = i; j > 0 && sorted[j - 1] > sorted[j]; --j) std::swap(sorted[j - 1], sorted[j]);
  }
  unsigned first = 0;
  for (int i = 0; i <= n; ++i) {
    unsigned last = i < n ? static_cast<unsigned>(sorted[i]) - 1 : ~0U;
    if (i < n && static_cast<unsigned>(sorted[i]) == 0) {
      first = 1;
      continue;
    }
    if (first <= last && syscall(SYS_close_range, first, last, 0) != 0) {
      struct rlimit rl {};
      unsigned max = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (1U << 20)
                         ? static_cast<unsigned>(rl.rlim_cur)
                         : (1U << 20);
      for (unsigned fd = first; fd <= last && fd < max; ++fd) close(static_cast<int>(fd));
    }
    if (i < n) first = static_cast<unsigned>(sorted[i]) + 1;
  }
}

// Puts `fd` at `target` without close-on-exec.
bool PlaceFd(int fd, int target) {
  if (fd == target) return fcntl(fd, F_SETFD, 0) == 0;
  return dup2(fd, target) == target;
}

// Appends the decimal of v to buf at *pos.
void AppendInt(char* buf, size_t* pos, long v) {
  char tmp[24];
  int n = 0;
  bool neg = v < 0;
  unsigned long u = neg ? static_cast<unsigned long>(-(v + 1)) + 1 : static_cast<unsigned long>(v);
  do {
    tmp[n++] = static_cast<char>('0' + u % 10);
    u /= 10;
  } while (u != 0);
  if (neg) buf[(*pos)++] = '-';
  while (n > 0) buf[(*pos)++] = tmp[--n];
}

void AppendStr(char* buf, size_t* pos, const char* s) {
  while (*s) buf[(*pos)++] = *s++;
}

// Everything the supervisor and the command need, prepared before cloning.
struct Plan {
  std::string exe;
  std::vector<std::string> args;
  std::vector<std::string> env;
  std::string dir;
  std::string log_path;
  std::string exit_path;
  std::string exit_tmp;
  std::string hostname;
  std::vector<std::string> ro_binds;
  uid_t uid = 0;
  gid_t gid = 0;
  bool new_net = false;
  int sync_fd = -1;  // read end: the agent writes one byte once the cgroup is joined
  int err_fd = -1;   // write end, close-on-exec: a ChildError if anything fails

  std::vector<char*> argv;
  std::vector<char*> envp;
  std::vector<const char*> binds;

  // Takes the pointers; the strings must not change afterwards.
  void Seal() {
    argv.reserve(args.size() + 1);
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    envp.reserve(env.size() + 1);
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    for (auto& b : ro_binds) binds.push_back(b.c_str());
  }
};

// Writes /proc/self/oom_score_adj; false if the kernel refused.
bool SetOomScoreAdj(const char* value) {
  int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  size_t len = strlen(value);
  bool ok = write(fd, value, len) == static_cast<ssize_t>(len);
  close(fd);
  return ok;
}

// `supervisor_protected`: whether the supervisor got oom_score_adj -1000.
[[noreturn]] void RunCommand(const Plan& p, int err_fd, bool supervisor_protected) {
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  setpgid(0, 0);
  // The OOM killer must pick the command, never its supervisor (which would take the exit
  // record with it). The supervisor's resident size counts every page it still shares with the
  // agent, so where the kernel refuses it -1000 (some sandboxes do), the command is made the
  // preferred victim instead: +1000 adds the whole limit to its score, which wins unless the
  // agent's own resident size exceeds the command's plus the limit.
  SetOomScoreAdj(supervisor_protected ? "0" : "1000");
  if (chdir(p.dir.c_str()) != 0) Fail(err_fd, kStageChdir, 127);
  gid_t groups[1] = {p.gid};
  if (syscall(SYS_setgroups, 1, groups) != 0) Fail(err_fd, kStageSetgroups, 127);
  if (syscall(SYS_setresgid, p.gid, p.gid, p.gid) != 0) Fail(err_fd, kStageSetgid, 127);
  if (syscall(SYS_setresuid, p.uid, p.uid, p.uid) != 0) Fail(err_fd, kStageSetuid, 127);
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) Fail(err_fd, kStageNoNewPrivs, 127);
  execve(p.exe.c_str(), p.argv.data(), p.envp.data());
  Fail(err_fd, kStageExec, 127);
}

void WriteExitRecord(const Plan& p, int status) {
  char buf[64];
  size_t pos = 0;
  AppendStr(buf, &pos, "code=");
  AppendInt(buf, &pos, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  AppendStr(buf, &pos, "\nsignal=");
  AppendInt(buf, &pos, WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  AppendStr(buf, &pos, "\n");
  unlink(p.exit_tmp.c_str());
  int fd = open(p.exit_tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) return;
  ssize_t n = write(fd, buf, pos);
  fsync(fd);
  close(fd);
  if (n == static_cast<ssize_t>(pos)) rename(p.exit_tmp.c_str(), p.exit_path.c_str());
}

// pid 1 of the workload's namespaces.
[[noreturn]] void Supervise(const Plan& p) {
  sigset_t waited;
  sigemptyset(&waited);
  for (int s : {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGQUIT}) sigaddset(&waited, s);
  ResetSignals(&waited);
  // Move our two pipes above stdio, then drop everything else the agent had open (listening
  // sockets, databases): the workload outlives the agent and must not hold its files.
  int sync_fd = fcntl(p.sync_fd, F_DUPFD_CLOEXEC, 3);
  int err_fd = fcntl(p.err_fd, F_DUPFD_CLOEXEC, 3);
  if (sync_fd < 0 || err_fd < 0) _exit(125);
  int keep[2] = {sync_fd, err_fd};
  CloseAllExcept(keep, 2);
  char go = 0;
  ssize_t n;
  do {
    n = read(sync_fd, &go, 1);
  } while (n < 0 && errno == EINTR);
  if (n != 1) _exit(125);  // the agent gave up on us
  close(sync_fd);
  prctl(PR_SET_NAME, "verge-init", 0, 0, 0);

  if (setsid() < 0) Fail(err_fd, kStageSetsid, 126);
  if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    Fail(err_fd, kStageMountPrivate, 126);
  }
  if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) {
    Fail(err_fd, kStageMountProc, 126);
  }
  for (const char* b : p.binds) {
    if (mount(b, b, nullptr, MS_BIND | MS_REC, nullptr) != 0 ||
        mount(nullptr, b, nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr) != 0) {
      Fail(err_fd, kStageVolume, 126);
    }
  }
  if (sethostname(p.hostname.data(), p.hostname.size()) != 0) Fail(err_fd, kStageHostname, 126);
  if (p.new_net) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr {};
    memcpy(ifr.ifr_name, "lo", 3);
    if (s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr) != 0) Fail(err_fd, kStageLoopback, 126);
    ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP | IFF_RUNNING);
    if (ioctl(s, SIOCSIFFLAGS, &ifr) != 0) Fail(err_fd, kStageLoopback, 126);
    close(s);
  }
  int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
  int log_fd =
      open(p.log_path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0640);
  if (null_fd < 0 || log_fd < 0) Fail(err_fd, kStageStdio, 126);
  if (!PlaceFd(null_fd, 0) || !PlaceFd(log_fd, 1) || !PlaceFd(log_fd, 2)) {
    Fail(err_fd, kStageStdio, 126);
  }
  if (null_fd > 2) close(null_fd);
  if (log_fd > 2) close(log_fd);
  const bool protected_from_oom = SetOomScoreAdj("-1000");

  pid_t cmd = RawClone(0);
  if (cmd < 0) Fail(err_fd, kStageFork, 126);
  if (cmd == 0) RunCommand(p, err_fd, protected_from_oom);
  close(err_fd);

  int cmd_status = 0;
  for (bool done = false; !done;) {
    siginfo_t si{};
    int sig = sigwaitinfo(&waited, &si);
    if (sig < 0) continue;  // EINTR
    if (sig != SIGCHLD) {
      if (kill(-cmd, sig) != 0) kill(cmd, sig);
      continue;
    }
    int st = 0;
    pid_t r;
    while ((r = waitpid(-1, &st, WNOHANG)) > 0) {
      if (r == cmd) {
        cmd_status = st;
        done = true;
      }
    }
  }
  WriteExitRecord(p, cmd_status);
  // Leaving takes the rest of the namespace with us (the kernel kills it).
  _exit(WIFEXITED(cmd_status) ? WEXITSTATUS(cmd_status) : 128 + WTERMSIG(cmd_status));
}

// ---------------------------------------------------------------------------------------------
// The agent's side.

struct ProcInfo {
  bool exists = false;
  char state = '?';
  uint64_t start_time = 0;
};

ProcInfo ReadProc(int64_t pid) {
  ProcInfo info;
  auto text = ReadFile(fmt::format("/proc/{}/stat", pid));
  if (!text.ok()) return info;
  // "pid (comm) S ppid …": comm may hold spaces and parentheses, so parse after the last ')'.
  size_t close_paren = text->rfind(')');
  if (close_paren == std::string::npos) return info;
  std::string_view rest = std::string_view(*text).substr(close_paren + 1);
  std::vector<std::string_view> fields;
  size_t i = 0;
  while (i < rest.size()) {
    while (i < rest.size() && rest[i] == ' ') ++i;
    size_t j = i;
    while (j < rest.size() && rest[j] != ' ' && rest[j] != '\n') ++j;
    if (j > i) fields.push_back(rest.substr(i, j - i));
    i = j + 1;
  }
  // fields[0] is stat field 3 (state); starttime is field 22.
  if (fields.size() < 20 || fields[0].empty()) return info;
  info.exists = true;
  info.state = fields[0][0];
  uint64_t v = 0;
  for (char c : fields[19]) {
    if (c < '0' || c > '9') return ProcInfo{};
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  info.start_time = v;
  return info;
}

// Whether the supervisor of `h` still runs. Reaps it when it is our child and has ended, and
// then fills *status.
bool SupervisorRunning(const Handle& h, std::optional<int>* status) {
  ProcInfo info = ReadProc(h.pid);
  if (!info.exists || info.start_time != h.start_time) return false;
  int st = 0;
  pid_t r = waitpid(static_cast<pid_t>(h.pid), &st, WNOHANG);
  if (r == h.pid) {
    *status = st;
    return false;
  }
  if (r == 0) return true;  // our child, still running
  // Not our child (an earlier agent started it): a zombie has ended too.
  return info.state != 'Z' && info.state != 'X';
}

// Waits until the supervisor ended or `deadline`; true if it ended.
bool WaitSupervisor(const Handle& h, Clock::time_point deadline, std::optional<int>* status) {
  int pidfd = -1;
  bool ended = false;
  for (;;) {
    if (!SupervisorRunning(h, status)) {
      ended = true;
      break;
    }
    auto now = Clock::now();
    if (now >= deadline) break;
    auto left = std::chrono::duration_cast<milliseconds>(deadline - now).count();
    if (pidfd < 0) pidfd = static_cast<int>(syscall(SYS_pidfd_open, h.pid, 0));
    if (pidfd >= 0) {
      // Readable once the process has exited; re-check identity and reap at the loop's top.
      pollfd pfd{pidfd, POLLIN, 0};
      poll(&pfd, 1, static_cast<int>(std::min<int64_t>(left, 100)));
    } else {
      std::this_thread::sleep_for(std::min<milliseconds>(milliseconds(left), milliseconds(10)));
    }
  }
  if (pidfd >= 0) close(pidfd);
  return ended;
}

Result<std::pair<uid_t, gid_t>> LookupUser(const std::string& name) {
  long size = sysconf(_SC_GETPW_R_SIZE_MAX);
  std::vector<char> buf(size > 0 ? static_cast<size_t>(size) : 16384);
  for (;;) {
    passwd pw{};
    passwd* found = nullptr;
    int e = getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &found);
    if (e == ERANGE && buf.size() < (1U << 20)) {
      buf.resize(buf.size() * 2);
      continue;
    }
    if (e != 0) return Error(Code::kInternal, "looking up user {}: {}", name, Errno(e));
    if (found == nullptr) {
      return Error(Code::kFailedPrecondition, "user \"{}\" does not exist on this node", name);
    }
    if (pw.pw_uid == 0) {
      return Error(Code::kFailedPrecondition, "workloads must not run as root (user \"{}\")", name);
    }
    return std::make_pair(pw.pw_uid, pw.pw_gid);
  }
}

bool ValidId(std::string_view id) {
  return !id.empty() && id.size() <= 63 && std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
  });
}

Status ValidateConfigPath(const std::string& path) {
  if (path.empty() || path.front() == '/') {
    return Error(Code::kInvalidArgument,
                 "config file path \"{}\" must be relative to the config directory", path);
  }
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string::npos) end = path.size();
    std::string_view part = std::string_view(path).substr(start, end - start);
    if (part.empty() || part == "." || part == "..") {
      return Error(Code::kInvalidArgument,
                   "config file path \"{}\" may not contain \"..\", \".\" or empty components",
                   path);
    }
    start = end + 1;
  }
  if (path.find('\0') != std::string::npos) {
    return Error(Code::kInvalidArgument, "config file path contains a NUL byte");
  }
  return Status::Ok();
}

bool HasNul(const std::string& s) { return s.find('\0') != std::string::npos; }

Status Chown(const std::string& path, uid_t uid, gid_t gid) {
  if (lchown(path.c_str(), uid, gid) != 0) {
    int e = errno;
    return Error(Code::kInternal, "changing the owner of {}: {}", path, Errno(e));
  }
  return Status::Ok();
}

// Makes `path` a fresh empty directory; whatever was there (the workload's user owns DIR and
// may have put a symbolic link there) is removed without following links.
Status FreshDir(const std::string& path, mode_t mode) {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
  if (ec) return Error(Code::kInternal, "removing {}: {}", path, ec.message());
  if (mkdir(path.c_str(), mode) != 0) {
    int e = errno;
    return Error(Code::kInternal, "creating {}: {}", path, Errno(e));
  }
  chmod(path.c_str(), mode);  // not subject to the umask
  return Status::Ok();
}

// The workload's user needs to reach DIR (cwd, VERGE_CONFIG_DIR): every ancestor must let it
// search.
Status CheckReachable(const std::string& dir, uid_t uid, gid_t gid) {
  std::filesystem::path p(dir);
  for (p = p.parent_path(); !p.empty(); p = p.parent_path()) {
    struct stat st {};
    if (stat(p.c_str(), &st) != 0) break;
    bool ok = (st.st_mode & S_IXOTH) || (st.st_uid == uid && (st.st_mode & S_IXUSR)) ||
              (st.st_gid == gid && (st.st_mode & S_IXGRP));
    if (!ok) {
      return Error(Code::kFailedPrecondition,
                   "the workload user (uid {}) cannot reach {}: {} has mode {:o}; make it "
                   "searchable (e.g. chmod 0711)",
                   uid, dir, p.string(), st.st_mode & 07777);
    }
    if (p == p.root_path()) break;
  }
  return Status::Ok();
}

Result<std::string> ResolveExecutable(const WorkloadSpec& spec) {
  std::string exe;
  if (spec.command.empty()) {
    if (spec.artifact.empty()) {
      return Error(Code::kInvalidArgument, "workload {} has neither a command nor an artifact",
                   spec.id);
    }
    exe = spec.artifact;
  } else {
    const std::string& c0 = spec.command[0];
    if (c0.empty()) return Error(Code::kInvalidArgument, "command[0] is empty");
    if (c0.front() == '/') {
      exe = c0;
    } else if (!spec.artifact.empty()) {
      std::error_code ec;
      std::filesystem::path base(spec.artifact);
      if (!std::filesystem::is_directory(base, ec)) base = base.parent_path();
      exe = (base / c0).string();
    } else if (c0.find('/') == std::string::npos) {
      auto it = spec.env.find("PATH");
      std::string path = it != spec.env.end() ? it->second : kDefaultPath;
      size_t start = 0;
      while (start <= path.size() && exe.empty()) {
        size_t end = path.find(':', start);
        if (end == std::string::npos) end = path.size();
        std::string cand = path.substr(start, end - start) + "/" + c0;
        struct stat st {};
        if (end > start && stat(cand.c_str(), &st) == 0 && S_ISREG(st.st_mode)) exe = cand;
        start = end + 1;
      }
      if (exe.empty()) {
        return Error(Code::kNotFound, "executable \"{}\" not found in PATH {}", c0, path);
      }
    } else {
      return Error(Code::kInvalidArgument,
                   "command[0] \"{}\" must be absolute, or relative to the artifact", c0);
    }
  }
  struct stat st {};
  if (stat(exe.c_str(), &st) != 0) {
    int e = errno;
    return Error(e == ENOENT ? Code::kNotFound : Code::kInvalidArgument, "executable {}: {}", exe,
                 Errno(e));
  }
  if (!S_ISREG(st.st_mode)) {
    return Error(Code::kInvalidArgument, "executable {} is not a regular file", exe);
  }
  if ((st.st_mode & 0111) == 0) {
    return Error(Code::kPermissionDenied, "{} is not executable (mode {:o})", exe,
                 st.st_mode & 07777);
  }
  return exe;
}

Code CodeForErrno(int e) {
  switch (e) {
    case ENOENT:
      return Code::kNotFound;
    case EACCES:
    case EPERM:
      return Code::kPermissionDenied;
    case ENOEXEC:
    case E2BIG:
    case EINVAL:
      return Code::kInvalidArgument;
    default:
      return Code::kInternal;
  }
}

// Reads a ChildError from `fd` until EOF or `deadline`. nullopt: EOF without error (exec went
// fine). A timeout is an error with stage 0 and ETIMEDOUT.
std::optional<ChildError> ReadChildError(int fd, Clock::time_point deadline) {
  ChildError e{};
  size_t got = 0;
  for (;;) {
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return ChildError{0, ETIMEDOUT};
    pollfd pfd{fd, POLLIN, 0};
    int r = poll(&pfd, 1, static_cast<int>(std::min<int64_t>(left, 1000)));
    if (r < 0 && errno != EINTR) return ChildError{0, errno};
    if (r <= 0) continue;
    ssize_t n = read(fd, reinterpret_cast<char*>(&e) + got, sizeof e - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return got == 0 ? std::nullopt : std::optional<ChildError>(ChildError{0, EIO});
    got += static_cast<size_t>(n);
    if (got == sizeof e) return e;
  }
}

// The supervisor ended and left no record (it was killed): record what we know, so that later
// Polls (and a restarted agent) say the same.
void RecordSupervisorEnd(const Handle& h, const std::optional<int>& status) {
  if (ReadExitRecord(h.dir)) return;
  std::string message = "the workload's supervisor ended without an exit record";
  int sig = 0;
  if (status && WIFSIGNALED(*status)) {
    sig = WTERMSIG(*status);
    message = fmt::format("killed by {} (with its supervisor)", SignalName(sig));
  }
  auto st = WriteFileAtomic(h.dir + "/exit",
                            fmt::format("code=-1\nsignal={}\nmessage={}\n", sig, message));
  (void)st;  // Poll then reports the same from memory; nothing better to do
}

}  // namespace

NativeRuntime::NativeRuntime(NativeOptions options)
    : options_(std::move(options)),
      cgroups_(CgroupManager::Open(options_.cgroup_parent, options_.cgroup_paths)) {}

Status NativeRuntime::Available() const {
  if (geteuid() != 0) {
    return Error(Code::kFailedPrecondition,
                 "the native runtime needs root (namespaces, cgroups, changing user); the agent "
                 "runs as uid {}",
                 geteuid());
  }
  if (!cgroups_.ok()) return cgroups_.status().Wrap("native runtime");
  if (!cgroups_->HasController("memory") || !cgroups_->HasController("cpu")) {
    return Error(Code::kFailedPrecondition,
                 "native runtime: the cpu and memory cgroup controllers are needed; found {}",
                 cgroups_->Describe());
  }
  auto user = LookupUser(options_.user);
  if (!user.ok()) return user.status().Wrap("native runtime");
  return Status::Ok();
}

Status NativeRuntime::CheckHandle(const Handle& h) const {
  if (!cgroups_.ok()) return cgroups_.status();
  if (h.kind != Kind::kNative) {
    return Error(Code::kInvalidArgument, "handle of {} is not a native workload", h.id);
  }
  if (h.pid <= 1 || h.pid > (int64_t{1} << 22)) {
    return Error(Code::kInvalidArgument, "handle of {} has no valid pid ({})", h.id, h.pid);
  }
  if (!cgroups_->Owns(h.cgroup)) {
    return Error(Code::kInvalidArgument, "handle of {}: cgroup \"{}\" is not one of this node's",
                 h.id, h.cgroup);
  }
  if (h.dir.empty() || h.dir.front() != '/') {
    return Error(Code::kInvalidArgument, "handle of {} has no workload directory", h.id);
  }
  return Status::Ok();
}

Result<Handle> NativeRuntime::Start(const WorkloadSpec& spec) {
  if (!cgroups_.ok()) return cgroups_.status();
  if (!ValidId(spec.id)) {
    return Error(Code::kInvalidArgument, "workload id \"{}\" must be 1-63 characters of [a-z0-9-]",
                 spec.id);
  }
  if (spec.dir.empty() || spec.dir.front() != '/') {
    return Error(Code::kInvalidArgument, "workload {}: directory \"{}\" must be absolute", spec.id,
                 spec.dir);
  }
  for (const auto& f : spec.config) VERGE_RETURN_IF_ERROR(ValidateConfigPath(f.path));
  for (const auto& [k, v] : spec.env) {
    if (k.empty() || k.find('=') != std::string::npos || HasNul(k) || HasNul(v)) {
      return Error(Code::kInvalidArgument, "environment variable \"{}\" is not a valid name", k);
    }
  }
  for (const auto& a : spec.command) {
    if (HasNul(a)) return Error(Code::kInvalidArgument, "command argument contains a NUL byte");
  }
  for (const auto& v : spec.volumes) {
    if (v.host_path.empty() || v.host_path.front() != '/' || HasNul(v.host_path)) {
      return Error(Code::kInvalidArgument, "volume {}: host path \"{}\" must be absolute", v.name,
                   v.host_path);
    }
  }
  VERGE_ASSIGN_OR_RETURN(auto user, LookupUser(options_.user));
  const auto [uid, gid] = user;
  VERGE_ASSIGN_OR_RETURN(std::string exe, ResolveExecutable(spec));

  // A cgroup left from an earlier run: still running means a second copy; empty is reset (its
  // OOM counter belongs to the earlier run).
  const std::string rel = cgroups_->PathOf(spec.id);
  if (cgroups_->Exists(rel)) {
    VERGE_ASSIGN_OR_RETURN(auto pids, cgroups_->Pids(rel));
    if (!pids.empty()) {
      return Error(Code::kAlreadyExists, "workload {} still runs (pid {} in cgroup {})", spec.id,
                   pids.front(), rel);
    }
    VERGE_RETURN_IF_ERROR(cgroups_->Remove(rel, kKillTimeout));
  }

  // DIR, owned by the workload's user; log/ stays the agent's (it rotates the files there).
  VERGE_RETURN_IF_ERROR(MakeDirs(spec.dir));
  VERGE_RETURN_IF_ERROR(CheckReachable(spec.dir, uid, gid));
  VERGE_RETURN_IF_ERROR(Chown(spec.dir, uid, gid));
  chmod(spec.dir.c_str(), 0750);
  const std::string log_dir = spec.dir + "/log";
  struct stat lst {};
  if (lstat(log_dir.c_str(), &lst) != 0 || !S_ISDIR(lst.st_mode) || lst.st_uid != 0) {
    VERGE_RETURN_IF_ERROR(FreshDir(log_dir, 0755));
  }
  const std::string log_path = log_dir + "/output.log";
  {
    int fd = open(log_path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0640);
    if (fd < 0) {
      int e = errno;
      return Error(Code::kInternal, "creating {}: {}", log_path, Errno(e));
    }
    int r = fchown(fd, uid, gid);
    int e = errno;
    close(fd);
    if (r != 0) return Error(Code::kInternal, "changing the owner of {}: {}", log_path, Errno(e));
  }
  const std::string config_dir = spec.dir + "/config";
  VERGE_RETURN_IF_ERROR(FreshDir(config_dir, 0755));
  VERGE_RETURN_IF_ERROR(Chown(config_dir, uid, gid));
  for (const auto& f : spec.config) {
    std::string path = config_dir;
    size_t start = 0;
    for (size_t slash; (slash = f.path.find('/', start)) != std::string::npos; start = slash + 1) {
      path += "/" + f.path.substr(start, slash - start);
      if (mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) {
        int e = errno;
        return Error(Code::kInternal, "creating {}: {}", path, Errno(e));
      }
      VERGE_RETURN_IF_ERROR(Chown(path, uid, gid));
    }
    path += "/" + f.path.substr(start);
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
      int e = errno;
      return Error(Code::kInvalidArgument, "writing config file {}: {}", path, Errno(e));
    }
    size_t off = 0;
    int e = 0;
    while (off < f.content.size() && e == 0) {
      ssize_t n = write(fd, f.content.data() + off, f.content.size() - off);
      if (n < 0 && errno != EINTR) e = errno;
      if (n > 0) off += static_cast<size_t>(n);
    }
    if (e == 0 && (fchown(fd, uid, gid) != 0 || fchmod(fd, f.mode & 07777) != 0)) e = errno;
    close(fd);
    if (e != 0) return Error(Code::kInternal, "writing config file {}: {}", path, Errno(e));
  }
  unlink((spec.dir + "/exit").c_str());

  Plan plan;
  plan.exe = exe;
  plan.args = spec.command.empty() ? std::vector<std::string>{exe} : spec.command;
  std::map<std::string, std::string> env = {{"PATH", kDefaultPath}, {"HOME", spec.dir}};
  for (const auto& [k, v] : spec.env) env[k] = v;
  env["VERGE_APP"] = spec.app;
  env["VERGE_WORKLOAD"] = spec.id;
  env["VERGE_CONFIG_DIR"] = config_dir;
  for (const auto& v : spec.volumes) {
    const bool existed = FileExists(v.host_path);
    VERGE_RETURN_IF_ERROR(MakeDirs(v.host_path));
    if (!existed) VERGE_RETURN_IF_ERROR(Chown(v.host_path, uid, gid));
    std::string name = v.name;
    for (auto& c : name) c = c == '-' ? '_' : static_cast<char>(std::toupper(c));
    env["VERGE_VOLUME_" + name] = v.host_path;
    if (v.read_only) plan.ro_binds.push_back(v.host_path);
  }
  plan.env.reserve(env.size());
  for (const auto& [k, v] : env) plan.env.push_back(fmt::format("{}={}", k, v));
  plan.dir = spec.dir;
  plan.log_path = log_path;
  plan.exit_path = spec.dir + "/exit";
  plan.exit_tmp = spec.dir + "/.exit.tmp";
  plan.hostname = spec.id;
  plan.uid = uid;
  plan.gid = gid;
  plan.new_net = spec.isolated_network;

  CgroupLimits limits;
  limits.cpu_millicores = spec.cpu_millicores;
  limits.memory_bytes = spec.memory_mb * 1024 * 1024;
  limits.pids_max = options_.pids_max;
  VERGE_RETURN_IF_ERROR(cgroups_->Create(rel, limits));
  auto cleanup_cgroup = [&] {
    auto st = cgroups_->Remove(rel, kKillTimeout);
    (void)st;  // the original error is what the caller needs
  };

  int sync_pipe[2];
  int err_pipe[2];
  if (pipe2(sync_pipe, O_CLOEXEC) != 0) {
    int e = errno;
    cleanup_cgroup();
    return Error(Code::kResourceExhausted, "creating a pipe: {}", Errno(e));
  }
  if (pipe2(err_pipe, O_CLOEXEC) != 0) {
    int e = errno;
    close(sync_pipe[0]);
    close(sync_pipe[1]);
    cleanup_cgroup();
    return Error(Code::kResourceExhausted, "creating a pipe: {}", Errno(e));
  }
  plan.sync_fd = sync_pipe[0];
  plan.err_fd = err_pipe[1];
  plan.Seal();

  uint64_t flags = CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS;
  if (spec.isolated_network) flags |= CLONE_NEWNET;
  pid_t pid = RawClone(flags);
  if (pid == 0) Supervise(plan);
  int clone_errno = errno;
  close(sync_pipe[0]);
  close(err_pipe[1]);
  if (pid < 0) {
    close(sync_pipe[1]);
    close(err_pipe[0]);
    cleanup_cgroup();
    return Error(Code::kInternal, "creating the namespaces of {}: {}", spec.id, Errno(clone_errno));
  }
  Handle h;
  h.id = spec.id;
  h.kind = Kind::kNative;
  h.pid = pid;
  h.start_time = ReadProc(pid).start_time;  // before anything can kill and reap it
  h.cgroup = rel;
  h.dir = spec.dir;

  Status joined = cgroups_->AddProcess(rel, pid);
  if (joined.ok()) {
    ssize_t n = write(sync_pipe[1], "g", 1);
    if (n != 1) joined = Error(Code::kInternal, "releasing the supervisor: {}", Errno(errno));
  }
  close(sync_pipe[1]);
  std::optional<ChildError> child_error;
  if (joined.ok()) child_error = ReadChildError(err_pipe[0], Clock::now() + options_.start_timeout);
  close(err_pipe[0]);
  if (joined.ok() && !child_error) return h;

  // Failed: make sure nothing is left, and reap the supervisor.
  kill(pid, SIGKILL);
  cleanup_cgroup();
  std::optional<int> status;
  WaitSupervisor(h, Clock::now() + kKillTimeout, &status);
  unlink((spec.dir + "/exit").c_str());
  if (!joined.ok()) return joined.Wrap(fmt::format("starting {}", spec.id));
  if (child_error->stage == 0 && child_error->err == ETIMEDOUT) {
    return Error(Code::kDeadlineExceeded, "starting {}: the supervisor did not report within {} ms",
                 spec.id, options_.start_timeout.count());
  }
  if (child_error->stage == kStageExec) {
    return Error(CodeForErrno(child_error->err), "starting {}: executing {}: {}", spec.id, exe,
                 Errno(child_error->err));
  }
  return Error(child_error->err == EPERM ? Code::kPermissionDenied : Code::kInternal,
               "starting {}: {}: {}", spec.id, StageName(child_error->stage),
               Errno(child_error->err));
}

Result<Observed> NativeRuntime::Poll(const Handle& h) {
  VERGE_RETURN_IF_ERROR(CheckHandle(h));
  std::optional<int> status;
  if (SupervisorRunning(h, &status)) return Observed{true, std::nullopt};
  if (status) RecordSupervisorEnd(h, status);

  ExitInfo info;
  auto rec = ReadExitRecord(h.dir);
  if (rec) {
    info.exit_code = rec->signal > 0 ? -1 : rec->code;
    info.signal = rec->signal;
    info.message = rec->message;
  } else {
    info.message = "the workload ended without an exit record";
  }
  if (cgroups_->Exists(h.cgroup)) {
    auto usage = cgroups_->Usage(h.cgroup);
    if (usage.ok() && usage->oom_kills > 0) {
      info.oom_killed = !usage->oom_kills_estimated || info.signal == SIGKILL;
    }
  }
  DescribeExit(info);
  return Observed{false, info};
}

Result<bool> NativeRuntime::Adopt(const Handle& h) {
  VERGE_RETURN_IF_ERROR(CheckHandle(h));
  ProcInfo info = ReadProc(h.pid);
  if (!info.exists || info.start_time != h.start_time || info.state == 'Z') return false;
  VERGE_ASSIGN_OR_RETURN(auto pids, cgroups_->Pids(h.cgroup));
  return std::find(pids.begin(), pids.end(), static_cast<pid_t>(h.pid)) != pids.end();
}

Status NativeRuntime::Stop(const Handle& h, std::chrono::milliseconds grace) {
  VERGE_RETURN_IF_ERROR(CheckHandle(h));
  if (grace < milliseconds(0)) grace = options_.stop_grace;
  std::optional<int> status;
  if (SupervisorRunning(h, &status)) {
    // The supervisor forwards SIGTERM to the command's process group and leaves when it ends.
    kill(static_cast<pid_t>(h.pid), SIGTERM);
    WaitSupervisor(h, Clock::now() + grace, &status);
  }
  Status removed = cgroups_->Remove(h.cgroup, kKillTimeout);
  if (SupervisorRunning(h, &status)) {
    // Not in the cgroup (it was never joined, or someone moved it): kill it by pid.
    kill(static_cast<pid_t>(h.pid), SIGKILL);
  }
  WaitSupervisor(h, Clock::now() + kKillTimeout, &status);
  if (status) RecordSupervisorEnd(h, status);
  return removed.ok() ? Status::Ok() : removed.Wrap(fmt::format("stopping {}", h.id));
}

Result<Usage> NativeRuntime::GetUsage(const Handle& h) {
  VERGE_RETURN_IF_ERROR(CheckHandle(h));
  VERGE_ASSIGN_OR_RETURN(CgroupUsage u, cgroups_->Usage(h.cgroup));
  Usage out;
  out.cpu_usage_ns = u.cpu_usage_ns;
  out.memory_bytes = u.memory_bytes;
  out.memory_limit_bytes = u.memory_limit_bytes;
  out.oom_kills = u.oom_kills;
  return out;
}

Result<int> NativeRuntime::Exec(const Handle& h, const std::vector<std::string>& argv,
                                std::chrono::milliseconds timeout) {
  VERGE_RETURN_IF_ERROR(CheckHandle(h));
  if (argv.empty() || argv[0].empty()) {
    return Error(Code::kInvalidArgument, "exec in {}: empty command", h.id);
  }
  for (const auto& a : argv) {
    if (HasNul(a)) return Error(Code::kInvalidArgument, "exec argument contains a NUL byte");
  }
  VERGE_ASSIGN_OR_RETURN(auto user, LookupUser(options_.user));
  WorkloadSpec lookup;
  lookup.id = h.id;
  lookup.command = {argv[0]};
  VERGE_ASSIGN_OR_RETURN(std::string exe, ResolveExecutable(lookup));

  std::optional<int> status;
  if (!SupervisorRunning(h, &status)) {
    if (status) RecordSupervisorEnd(h, status);
    return Error(Code::kFailedPrecondition, "exec in {}: the workload is not running", h.id);
  }

  // Descriptors first, then check the pid is still the supervisor (it could have been reused
  // between the check above and the opens).
  std::vector<int> fds;
  auto close_all = [&] {
    for (int fd : fds) close(fd);
    fds.clear();
  };
  std::vector<int> ns_fds;
  for (const char* ns : {"ipc", "uts", "net", "pid", "mnt"}) {
    std::string path = fmt::format("/proc/{}/ns/{}", h.pid, ns);
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      int e = errno;
      close_all();
      return Error(Code::kFailedPrecondition, "exec in {}: opening {}: {}", h.id, path, Errno(e));
    }
    fds.push_back(fd);
    ns_fds.push_back(fd);
  }
  if (ReadProc(h.pid).start_time != h.start_time) {
    close_all();
    return Error(Code::kFailedPrecondition, "exec in {}: the workload is not running", h.id);
  }
  std::vector<int> procs_fds;
  for (const auto& file : cgroups_->ProcsFiles(h.cgroup)) {
    int fd = open(file.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
      int e = errno;
      close_all();
      return Error(Code::kInternal, "exec in {}: opening {}: {}", h.id, file, Errno(e));
    }
    fds.push_back(fd);
    procs_fds.push_back(fd);
  }
  int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null_fd < 0) {
    int e = errno;
    close_all();
    return Error(Code::kInternal, "opening /dev/null: {}", Errno(e));
  }
  fds.push_back(null_fd);
  int err_pipe[2];
  int pid_pipe[2];
  if (pipe2(err_pipe, O_CLOEXEC) != 0) {
    int e = errno;
    close_all();
    return Error(Code::kResourceExhausted, "creating a pipe: {}", Errno(e));
  }
  fds.push_back(err_pipe[0]);
  fds.push_back(err_pipe[1]);
  if (pipe2(pid_pipe, O_CLOEXEC) != 0) {
    int e = errno;
    close_all();
    return Error(Code::kResourceExhausted, "creating a pipe: {}", Errno(e));
  }
  fds.push_back(pid_pipe[0]);
  fds.push_back(pid_pipe[1]);

  std::vector<std::string> args = argv;
  std::vector<std::string> env = {std::string("PATH=") + kDefaultPath, "HOME=" + h.dir,
                                  "VERGE_WORKLOAD=" + h.id,
                                  "VERGE_CONFIG_DIR=" + h.dir + "/config"};
  std::vector<char*> c_argv;
  std::vector<char*> c_env;
  c_argv.reserve(args.size() + 1);
  c_env.reserve(env.size() + 1);
  for (auto& a : args) c_argv.push_back(a.data());
  c_argv.push_back(nullptr);
  for (auto& e : env) c_env.push_back(e.data());
  c_env.push_back(nullptr);
  const uid_t uid = user.first;
  const gid_t gid = user.second;
  const int err_fd = err_pipe[1];

  pid_t child = RawClone(0);
  if (child == 0) {
    // Join the cgroup and the namespaces, then fork: a new pid namespace applies to children.
    sigset_t none;
    sigemptyset(&none);
    ResetSignals(&none);
    for (int fd : procs_fds) {
      if (write(fd, "0", 1) != 1) Fail(err_fd, kStageCgroup, 126);
    }
    for (int fd : ns_fds) {
      if (setns(fd, 0) != 0) Fail(err_fd, kStageSetns, 126);
    }
    pid_t gc = RawClone(0);
    if (gc < 0) Fail(err_fd, kStageFork, 126);
    if (gc == 0) {
      setpgid(0, 0);
      if (!PlaceFd(null_fd, 0) || !PlaceFd(null_fd, 1) || !PlaceFd(null_fd, 2)) {
        Fail(err_fd, kStageStdio, 127);
      }
      if (chdir(h.dir.c_str()) != 0) Fail(err_fd, kStageChdir, 127);
      gid_t groups[1] = {gid};
      if (syscall(SYS_setgroups, 1, groups) != 0) Fail(err_fd, kStageSetgroups, 127);
      if (syscall(SYS_setresgid, gid, gid, gid) != 0) Fail(err_fd, kStageSetgid, 127);
      if (syscall(SYS_setresuid, uid, uid, uid) != 0) Fail(err_fd, kStageSetuid, 127);
      if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) Fail(err_fd, kStageNoNewPrivs, 127);
      execve(exe.c_str(), c_argv.data(), c_env.data());
      Fail(err_fd, kStageExec, 127);
    }
    close(err_fd);
    ssize_t n = write(pid_pipe[1], &gc, sizeof gc);
    (void)n;
    int st = 0;
    while (waitpid(gc, &st, 0) < 0 && errno == EINTR) {
    }
    _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
  }
  int clone_errno = errno;
  close(err_pipe[1]);
  close(pid_pipe[1]);
  fds.erase(std::remove_if(fds.begin(), fds.end(),
                           [&](int fd) { return fd == err_pipe[1] || fd == pid_pipe[1]; }),
            fds.end());
  if (child < 0) {
    close_all();
    return Error(Code::kInternal, "exec in {}: fork: {}", h.id, Errno(clone_errno));
  }

  pid_t gc = 0;
  const auto deadline = Clock::now() + timeout;
  {
    pollfd pfd{pid_pipe[0], POLLIN, 0};
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
    if (poll(&pfd, 1, static_cast<int>(std::max<int64_t>(left, 0))) > 0) {
      ssize_t n = read(pid_pipe[0], &gc, sizeof gc);
      if (n != sizeof gc) gc = 0;
    }
  }
  Handle child_handle;
  child_handle.pid = child;
  child_handle.start_time = ReadProc(child).start_time;
  std::optional<int> child_status;
  bool ended = WaitSupervisor(child_handle, deadline, &child_status);
  if (!ended) {
    if (gc > 0) {
      kill(-gc, SIGKILL);
      kill(gc, SIGKILL);
    }
    kill(child, SIGKILL);
    WaitSupervisor(child_handle, Clock::now() + kKillTimeout, &child_status);
    close_all();
    return Error(Code::kDeadlineExceeded, "exec {} in {}: no result after {} ms (killed)", argv[0],
                 h.id, timeout.count());
  }
  std::optional<ChildError> failed = ReadChildError(err_pipe[0], Clock::now() + milliseconds(100));
  close_all();
  if (failed && !(failed->stage == 0 && failed->err == ETIMEDOUT)) {
    return Error(failed->stage == kStageExec ? CodeForErrno(failed->err) : Code::kInternal,
                 "exec {} in {}: {}: {}", argv[0], h.id, StageName(failed->stage),
                 Errno(failed->err));
  }
  if (!child_status) {
    return Error(Code::kInternal, "exec {} in {}: lost the exit status", argv[0], h.id);
  }
  int st = *child_status;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

Status NativeRuntime::KillOrphans(const std::set<std::string>& keep_cgroups) {
  if (!cgroups_.ok()) return cgroups_.status();
  VERGE_ASSIGN_OR_RETURN(auto children, cgroups_->Children());
  Status first;
  for (const auto& rel : children) {
    if (keep_cgroups.count(rel) > 0 || !cgroups_->Owns(rel)) continue;
    Status st = cgroups_->Remove(rel, kKillTimeout);
    if (!st.ok() && first.ok()) first = st;
  }
  return first;
}

}  // namespace verge::node::runtime
