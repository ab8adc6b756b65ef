#include "node/mqtt/broker.h"

#include <fcntl.h>
#include <mosquitto.h>
#include <poll.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <functional>
#include <random>

#include "common/fs.h"
#include "node/mqtt/internal.h"
#include "node/mqtt/password.h"

namespace verge::mqtt {

namespace {

std::string DescribeWaitStatus(int status) {
  if (WIFEXITED(status)) return fmt::format("exited with code {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return fmt::format("killed by signal {} ({})", WTERMSIG(status), strsignal(WTERMSIG(status)));
  }
  return fmt::format("ended with wait status {}", status);
}

// True while `pid` (our child) has not exited; does not reap it.
bool ChildAlive(pid_t pid) {
  siginfo_t info{};
  if (waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0) {
    return false;
  }
  return info.si_pid == 0;
}

// True if `pid` is a live process whose command line mentions `conf`: a zombie's command line
// is empty, and a pid reused by another program does not name our config.
bool RunsConfig(pid_t pid, const std::string& conf) {
  auto cmdline = ReadFile(fmt::format("/proc/{}/cmdline", pid));
  return cmdline.ok() && cmdline->find(conf) != std::string::npos;
}

struct BootState {
  bool connack = false;
  int rc = -1;
  bool session_present = false;
  bool subbed = false;
  int granted = -1;
  bool done = false;
};

void AbortConnection(mosquitto* m, BootState& s) {
  s.done = true;
  // Nothing may reach the broker from here on: a PUBACK for a message queued in the node's
  // session would acknowledge it without the node having stored it.
  if (int fd = mosquitto_socket(m); fd >= 0) shutdown(fd, SHUT_RDWR);
}

// Connects as the node's client id, creates its persistent session and QoS 1 subscription if
// the broker has none, and aborts the connection without acknowledging anything. Unavailable
// for failures worth retrying (not listening yet, connection lost).
Status EnsureNodeSession(const NodeAccount& a, const Clock& clock, int64_t deadline_ms,
                         const std::function<bool()>& stopping) {
  BootState s;
  mosquitto* m = mosquitto_new(a.client_id.c_str(), /*clean_session=*/false, &s);
  if (!m) return Error(Code::kResourceExhausted, "mosquitto_new failed");
  // Threaded mode makes libmosquitto queue outgoing packets for our loop to write instead of
  // writing them at once (see subscriber.h), so the abort above always wins.
  mosquitto_threaded_set(m, true);
  mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
  mosquitto_username_pw_set(m, a.username.c_str(), a.password.c_str());
  mosquitto_connect_with_flags_callback_set(m, [](mosquitto* m, void* obj, int rc, int flags) {
    auto& s = *static_cast<BootState*>(obj);
    s.connack = true;
    s.rc = rc;
    s.session_present = (flags & 1) != 0;
    if (rc == 0 && !s.session_present) {
      if (mosquitto_subscribe(m, nullptr, std::string(kTelemetryFilter).c_str(), 1) ==
          MOSQ_ERR_SUCCESS) {
        return;
      }
    }
    AbortConnection(m, s);
  });
  mosquitto_subscribe_callback_set(m, [](mosquitto* m, void* obj, int, int n, const int* qos) {
    auto& s = *static_cast<BootState*>(obj);
    s.subbed = true;
    s.granted = n > 0 ? qos[0] : -1;
    AbortConnection(m, s);
  });
  Status result = Status::Ok();
  if (int rc = mosquitto_connect(m, a.host.c_str(), a.port, 10); rc != MOSQ_ERR_SUCCESS) {
    result = Error(Code::kUnavailable, "connect to {}:{}: {}", a.host, a.port,
                   rc == MOSQ_ERR_ERRNO ? std::strerror(errno) : mosquitto_strerror(rc));
  }
  while (result.ok() && !s.done) {
    if (stopping()) {
      result = Error(Code::kUnavailable, "stopping");
      break;
    }
    if (clock.SteadyMs() >= deadline_ms) {
      result = Error(Code::kDeadlineExceeded, "no answer to the node's CONNECT/SUBSCRIBE");
      break;
    }
    pollfd p{mosquitto_socket(m),
             static_cast<short>(POLLIN | (mosquitto_want_write(m) ? POLLOUT : 0)), 0};
    if (p.fd < 0) {
      result = Error(Code::kUnavailable, "connection lost");
      break;
    }
    if (poll(&p, 1, 50) < 0 && errno != EINTR) {
      result = Error(Code::kInternal, "poll: {}", std::strerror(errno));
      break;
    }
    if (p.revents & (POLLIN | POLLERR | POLLHUP)) {
      int rc = mosquitto_loop_read(m, 1);
      if (s.done) break;
      if (rc != MOSQ_ERR_SUCCESS) {
        result = Error(Code::kUnavailable, "connection lost: {}", mosquitto_strerror(rc));
        break;
      }
    }
    if (mosquitto_want_write(m)) mosquitto_loop_write(m, 1);
  }
  mosquitto_destroy(m);
  if (!result.ok()) return result;
  if (s.rc != 0) {
    return Error(Code::kPermissionDenied, "the broker refused the node's account: {}",
                 mosquitto_connack_string(s.rc));
  }
  if (s.subbed && (s.granted < 0 || s.granted > 2)) {
    return Error(Code::kPermissionDenied, "the broker refused the node's subscription to {}",
                 kTelemetryFilter);
  }
  return Status::Ok();
}

// The absolute form of `dir` without a trailing slash; empty stays empty (Start reports it).
std::string AbsoluteDir(const std::string& dir) {
  if (dir.empty()) return dir;
  std::string out = std::filesystem::absolute(dir).lexically_normal().string();
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

bool HasSpace(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) { return c <= ' ' || c == 0x7f; });
}

}  // namespace

MosquittoBroker::MosquittoBroker(const Clock& clock, BrokerOptions options)
    : clock_(clock), options_(std::move(options)), paths_(AbsoluteDir(options_.work_dir)) {
  internal::InitMosquittoLib();
}

MosquittoBroker::~MosquittoBroker() { Stop(); }

Status MosquittoBroker::Start(std::vector<BrokerDevice> devices) {
  std::lock_guard control(control_mu_);
  {
    std::lock_guard lk(mu_);
    if (started_ || stopping_) {
      return Error(Code::kFailedPrecondition, "the MQTT broker was already started or stopped");
    }
  }
  std::vector<std::string> problems;
  auto listen = ParseHostPort(options_.listen);
  if (!listen.ok()) problems.push_back("listen: " + listen.status().message());
  if (options_.work_dir.empty()) problems.push_back("work dir: not set");
  // Mosquitto's config format has no quoting.
  if (HasSpace(paths_.work_dir)) problems.push_back("work dir: must not contain white space");
  if (options_.client_id.empty() || HasSpace(options_.client_id)) {
    problems.push_back("client id: must be set, without white space");
  }
  if (access(options_.mosquitto_path.c_str(), X_OK) != 0) {
    problems.push_back(
        fmt::format("mosquitto: cannot run {}: {}", options_.mosquitto_path, std::strerror(errno)));
  }
  if (options_.max_packet_bytes < 20) problems.push_back("max packet bytes: must be >= 20");
  if (options_.max_inflight_messages < 0 || options_.restart_initial.count() <= 0 ||
      options_.restart_max < options_.restart_initial || options_.stop_timeout.count() <= 0 ||
      options_.start_timeout.count() <= 0) {
    problems.push_back("timeouts and backoffs must be positive, restart_max >= restart_initial");
  }
  if (Status st = ValidateDevices(devices); !st.ok()) problems.push_back(st.message());
  if (!problems.empty()) {
    std::string msg;
    for (const auto& p : problems) msg += (msg.empty() ? "" : "; ") + p;
    return Status(Code::kInvalidArgument, "MQTT broker: " + msg);
  }
  VERGE_RETURN_IF_ERROR(MakeDirs(paths_.work_dir));
  // Two brokers on one work dir would rewrite each other's files and kill each other's
  // processes as leftovers. The lock's descriptor is close-on-exec: Mosquitto does not hold it.
  if (!lock_) {
    auto lock = DirLock::Acquire(paths_.work_dir);
    if (!lock.ok()) return lock.status();
    lock_.emplace(std::move(*lock));
  }
  VERGE_RETURN_IF_ERROR(MakeDirs(paths_.persistence));

  settings_.listen = *listen;
  settings_.run_as_user = geteuid() == 0 ? "root" : "";
  settings_.max_queued_messages = options_.max_queued_messages;
  settings_.max_queued_bytes = options_.max_queued_bytes;
  settings_.max_inflight_messages = options_.max_inflight_messages;
  settings_.max_packet_size = options_.max_packet_bytes;
  settings_.autosave_interval_s =
      static_cast<int>(std::max<int64_t>(1, options_.autosave_interval.count() / 1000));
  VERGE_ASSIGN_OR_RETURN(std::string password, RandomPassword());
  VERGE_ASSIGN_OR_RETURN(node_hash_, HashPassword(password));
  account_.host = listen->host;
  if (account_.host == "0.0.0.0" || account_.host.empty()) account_.host = "127.0.0.1";
  if (account_.host == "::") account_.host = "::1";
  account_.port = listen->port;
  account_.username = std::string(kNodeUser);
  account_.password = password;
  account_.client_id = options_.client_id;

  StopLeftover();
  VERGE_RETURN_IF_ERROR(WriteFileAtomic(paths_.conf, RenderConfig(paths_, settings_), 0600));

  std::unique_lock lk(mu_);
  devices_ = std::move(devices);
  started_ = true;
  first_outcome_ = false;
  supervisor_done_ = false;
  supervisor_ = std::thread([this] { Supervise(); });
  cv_.wait(lk, [&] { return first_outcome_; });
  Status result = first_status_;
  if (!result.ok()) {
    // The supervisor gives up after a failed first start.
    started_ = false;
    lk.unlock();
    supervisor_.join();
    lock_.reset();
  }
  return result;
}

Status MosquittoBroker::SetDevices(std::vector<BrokerDevice> devices) {
  std::lock_guard control(control_mu_);
  VERGE_RETURN_IF_ERROR(ValidateDevices(devices));
  std::lock_guard lk(mu_);
  if (!started_ || stopping_) {
    return Error(Code::kFailedPrecondition, "the MQTT broker is not running");
  }
  devices_ = std::move(devices);
  VERGE_RETURN_IF_ERROR(WriteFilesLocked(/*gated=*/!open_));
  if (open_ && pid_ != 0) {
    kill(pid_, SIGHUP);
    ++stats_.reloads;
  }
  return Status::Ok();
}

NodeAccount MosquittoBroker::node_account() const { return account_; }

BrokerStats MosquittoBroker::Stats() const {
  std::lock_guard lk(mu_);
  BrokerStats s = stats_;
  s.running = open_ && pid_ != 0;
  s.pid = pid_;
  s.devices = devices_.size();
  return s;
}

void MosquittoBroker::Stop() {
  std::lock_guard control(control_mu_);
  std::unique_lock lk(mu_);
  stopping_ = true;
  cv_.notify_all();
  if (!supervisor_.joinable()) return;
  if (pid_ != 0) kill(pid_, SIGTERM);
  if (!cv_.wait_for(lk, options_.stop_timeout, [&] { return supervisor_done_; })) {
    if (pid_ != 0) {
      spdlog::warn("mqtt broker (pid {}) ignored SIGTERM for {}; killing it", pid_,
                   FormatDuration(options_.stop_timeout));
      kill(pid_, SIGKILL);
    }
  }
  lk.unlock();
  supervisor_.join();
  lock_.reset();
}

void MosquittoBroker::Supervise() {
  internal::BlockSigpipeInThisThread();
  std::mt19937 rng(std::random_device{}());
  Millis backoff = options_.restart_initial;
  bool first = true;
  for (;;) {
    pid_t pid = 0;
    Status failed;
    {
      std::lock_guard lk(mu_);
      if (stopping_) break;
      failed = WriteFilesLocked(/*gated=*/true);
      if (failed.ok()) {
        auto spawned = SpawnLocked();
        if (spawned.ok()) {
          pid = *spawned;
        } else {
          failed = spawned.status();
        }
      }
      if (pid != 0) {
        pid_ = pid;
        ++stats_.starts;
      }
    }
    const int64_t started_at = clock_.SteadyMs();
    std::string exit_description;
    if (pid != 0) {
      failed = OpenGate(pid, started_at + options_.start_timeout.count());
      {
        std::lock_guard lk(mu_);
        if (failed.ok() && first) {
          first_status_ = Status::Ok();
          first_outcome_ = true;
          cv_.notify_all();
        }
        // A process that never opened is of no use; one that is stopping gets SIGTERM from Stop.
        if (!failed.ok() && !stopping_) kill(pid, SIGKILL);
      }
      // Wait without reaping first, so that pid_ is cleared before the pid can be reused:
      // SetDevices and Stop signal pid_ under mu_. Polled, to keep the log's size in check
      // meanwhile (Mosquitto logs every connection).
      while (ChildAlive(pid)) {
        RotateLogIfLarge();
        std::unique_lock lk(mu_);
        cv_.wait_for(lk, stopping_ ? Millis(20) : Millis(200));
      }
      {
        std::lock_guard lk(mu_);
        pid_ = 0;
        open_ = false;
      }
      int status = 0;
      exit_description = waitpid(pid, &status, 0) == pid ? DescribeWaitStatus(status)
                                                         : "ended (exit status unknown)";
      ::unlink(paths_.pid.c_str());
    }
    std::string tail = failed.ok() ? "" : LogTail();
    {
      std::lock_guard lk(mu_);
      if (!exit_description.empty()) stats_.last_exit = exit_description;
      if (!failed.ok()) {
        stats_.last_error = failed.message();
        if (!tail.empty()) stats_.last_error += "; mosquitto.log ends: " + tail;
      }
      if (first && !failed.ok()) {
        first_status_ = Status(failed.code() == Code::kOk ? Code::kUnavailable : failed.code(),
                               "mosquitto did not start (" +
                                   (exit_description.empty() ? "not spawned" : exit_description) +
                                   "): " + stats_.last_error);
        first_outcome_ = true;
        cv_.notify_all();
        break;
      }
      first = false;
      if (stopping_) break;
      ++stats_.restarts;
    }
    if (clock_.SteadyMs() - started_at >= options_.restart_max.count()) {
      backoff = options_.restart_initial;  // it ran for a while: this is not a crash loop
    }
    std::uniform_int_distribution<int64_t> half(0, backoff.count() / 2);
    Millis delay(backoff.count() - backoff.count() / 2 + half(rng));
    spdlog::warn("mqtt broker {}{}; restarting in {}", exit_description,
                 failed.ok() ? "" : " (" + failed.message() + ")", FormatDuration(delay));
    {
      std::unique_lock lk(mu_);
      cv_.wait_for(lk, delay, [&] { return stopping_; });
    }
    backoff = std::min(backoff * 2, options_.restart_max);
  }
  std::lock_guard lk(mu_);
  supervisor_done_ = true;
  cv_.notify_all();
}

void MosquittoBroker::RotateLogIfLarge() {
  struct stat st {};
  if (::stat(paths_.log.c_str(), &st) != 0 ||
      static_cast<uint64_t>(st.st_size) <= options_.max_log_bytes) {
    return;
  }
  // Copy, then truncate: Mosquitto keeps writing to its descriptor, which appends (O_APPEND) at
  // the new end. Lines written between the two steps are lost; that is the price of not
  // restarting the broker to rotate.
  std::error_code ec;
  std::filesystem::copy_file(paths_.log, paths_.log + ".1",
                             std::filesystem::copy_options::overwrite_existing, ec);
  if (!ec && ::truncate(paths_.log.c_str(), 0) == 0) {
    std::lock_guard lk(mu_);
    log_offset_ = 0;
  }
}

Result<pid_t> MosquittoBroker::SpawnLocked() {
  struct stat st {};
  if (::stat(paths_.log.c_str(), &st) == 0 &&
      static_cast<uint64_t>(st.st_size) > options_.max_log_bytes) {
    std::rename(paths_.log.c_str(), (paths_.log + ".1").c_str());
  }
  int log_fd = ::open(paths_.log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (log_fd < 0) {
    return Error(Code::kPermissionDenied, "cannot open {}: {}", paths_.log, std::strerror(errno));
  }
  int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  off_t end = ::lseek(log_fd, 0, SEEK_END);
  log_offset_ = end > 0 ? static_cast<uint64_t>(end) : 0;
  // Everything the child needs is prepared here: between fork and exec only async-signal-safe
  // calls are allowed (other threads may hold malloc's locks).
  std::string path = options_.mosquitto_path;
  std::string dash_c = "-c";
  std::string conf = paths_.conf;
  char* argv[] = {path.data(), dash_c.data(), conf.data(), nullptr};
  const pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    // If this thread (the supervisor, which waits for the child) or the whole node dies, the
    // broker gets SIGTERM and saves its database. The check closes the race with a parent
    // that died before prctl.
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(1);
    setpgid(0, 0);
    if (null_fd >= 0) dup2(null_fd, 0);
    dup2(log_fd, 1);
    dup2(log_fd, 2);
    close_range(3, ~0U, 0);
    // The node blocks SIGTERM/SIGHUP in its threads and ignores SIGPIPE; both survive exec.
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; ++sig) sigaction(sig, &dfl, nullptr);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    execv(argv[0], argv);
    _exit(127);
  }
  int fork_errno = errno;
  ::close(log_fd);
  if (null_fd >= 0) ::close(null_fd);
  if (pid < 0) return Error(Code::kResourceExhausted, "fork: {}", std::strerror(fork_errno));
  if (Status w = WriteFileAtomic(paths_.pid, fmt::format("{}\n", pid), 0600); !w.ok()) {
    spdlog::warn("mqtt broker: {}", w.message());  // only the leftover check needs it
  }
  spdlog::info("mqtt broker started: pid {}, listening on {}:{}", pid, settings_.listen.host,
               settings_.listen.port);
  return pid;
}

Status MosquittoBroker::OpenGate(pid_t pid, int64_t deadline_ms) {
  auto stopping = [this] {
    std::lock_guard lk(mu_);
    return stopping_;
  };
  // Mosquitto answers a CONNECT only from its main loop, which it enters after opening its
  // listeners and installing its signal handlers: after this, SIGHUP reloads instead of kills.
  // Every failure is retried until the deadline, refusals too: until our child has bound the
  // port (or failed to), another process holding it may be the one answering.
  for (;;) {
    if (!ChildAlive(pid)) return Error(Code::kUnavailable, "mosquitto exited while starting");
    Status st = EnsureNodeSession(account_, clock_, deadline_ms, stopping);
    if (st.ok()) break;
    if (stopping()) return st;
    if (clock_.SteadyMs() >= deadline_ms) {
      return Error(Code::kDeadlineExceeded, "mosquitto did not admit the node within {}: {}",
                   FormatDuration(options_.start_timeout), st.message());
    }
    std::unique_lock lk(mu_);
    cv_.wait_for(lk, Millis(20), [&] { return stopping_; });
  }
  std::lock_guard lk(mu_);
  if (stopping_) return Error(Code::kUnavailable, "stopping");
  if (pid_ != pid) return Error(Code::kUnavailable, "mosquitto exited while starting");
  VERGE_RETURN_IF_ERROR(WriteFilesLocked(/*gated=*/false));
  kill(pid, SIGHUP);
  open_ = true;
  spdlog::info("mqtt broker admits {} device(s)", devices_.size());
  return Status::Ok();
}

Status MosquittoBroker::WriteFilesLocked(bool gated) {
  // ACL first: while gated, only the password file keeps devices out.
  VERGE_RETURN_IF_ERROR(
      WriteFileAtomic(paths_.acl, RenderAcl(devices_, options_.publish_rejections), 0600));
  static const std::vector<BrokerDevice> kNone;
  return WriteFileAtomic(paths_.passwd, RenderPasswordFile(node_hash_, gated ? kNone : devices_),
                         0600);
}

void MosquittoBroker::StopLeftover() {
  auto text = ReadFile(paths_.pid);
  if (!text.ok()) return;
  pid_t pid = 0;
  auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), pid);
  (void)end;
  if (ec == std::errc() && pid > 1 && RunsConfig(pid, paths_.conf)) {
    spdlog::warn("mqtt broker: stopping pid {}, a broker left behind by an earlier node process",
                 pid);
    for (int sig : {SIGTERM, SIGKILL}) {
      kill(pid, sig);
      int64_t deadline = clock_.SteadyMs() + options_.stop_timeout.count();
      while (RunsConfig(pid, paths_.conf) && clock_.SteadyMs() < deadline) {
        std::this_thread::sleep_for(Millis(20));
      }
      if (!RunsConfig(pid, paths_.conf)) break;
    }
  }
  ::unlink(paths_.pid.c_str());
}

std::string MosquittoBroker::LogTail() const {
  uint64_t offset = 0;
  {
    std::lock_guard lk(mu_);
    offset = log_offset_;
  }
  auto text = ReadFile(paths_.log);
  if (!text.ok() || text->size() <= offset) return "";
  std::string_view tail(*text);
  tail.remove_prefix(offset);
  constexpr size_t kMax = 1500;
  if (tail.size() > kMax) tail.remove_prefix(tail.size() - kMax);
  std::string out(tail);
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  for (char& c : out) {
    if (c == '\n') c = '|';
  }
  return out;
}

}  // namespace verge::mqtt
