#include "node/apps.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <netinet/in.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "common/fs.h"
#include "common/https_client.h"
#include "common/pki.h"
#include "node/runtime/log_files.h"
#include "node/runtime/native.h"
#include "node/runtime/oci_image.h"

namespace verge::node {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

std::optional<runtime::Kind> KindOf(const std::string& type) {
  if (type == "native") return runtime::Kind::kNative;
  if (type == "container") return runtime::Kind::kContainer;
  if (type == "function") return runtime::Kind::kFunction;
  return std::nullopt;
}

json HandleJson(const runtime::Handle& h) {
  return {{"id", h.id},         {"kind", static_cast<int>(h.kind)},
          {"pid", h.pid},       {"startTime", h.start_time},
          {"cgroup", h.cgroup}, {"containerId", h.container_id},
          {"dir", h.dir}};
}

std::optional<runtime::Handle> HandleFrom(const json& j) {
  if (!j.is_object()) return std::nullopt;
  try {
    runtime::Handle h;
    h.id = j.at("id").get<std::string>();
    h.kind = static_cast<runtime::Kind>(j.at("kind").get<int>());
    h.pid = j.at("pid").get<int64_t>();
    h.start_time = j.at("startTime").get<uint64_t>();
    h.cgroup = j.at("cgroup").get<std::string>();
    h.container_id = j.at("containerId").get<std::string>();
    h.dir = j.at("dir").get<std::string>();
    return h;
  } catch (const json::exception&) {
    return std::nullopt;
  }
}

// A tarball (gzip, zstd, or a ustar header) rather than a single executable.
bool LooksLikeTarball(const std::string& data) {
  if (data.size() >= 2 && static_cast<unsigned char>(data[0]) == 0x1f &&
      static_cast<unsigned char>(data[1]) == 0x8b)
    return true;
  if (data.size() >= 4 && data.compare(0, 4, "\x28\xb5\x2f\xfd") == 0) return true;
  return data.size() > 262 && data.compare(257, 5, "ustar") == 0;
}

// Serialized with map entries in key order, so that equal workloads compare equal (plain
// serialization orders map entries as the map happens to iterate). updated_ms is when the cloud
// made the revision, not part of what runs: a cloud that starts sending it (an upgrade) must
// not restart every workload.
std::string Canonical(const v1::Workload& w) {
  v1::Workload spec = w;
  spec.clear_updated_ms();
  std::string out;
  {
    google::protobuf::io::StringOutputStream sos(&out);
    google::protobuf::io::CodedOutputStream cos(&sos);
    cos.SetSerializationDeterministic(true);
    spec.SerializeToCodedStream(&cos);
  }
  return out;
}

std::string ToHex(const std::string& bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

std::optional<std::string> FromHex(const std::string& hex) {
  if (hex.size() % 2 != 0) return std::nullopt;
  auto digit = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  std::string out;
  out.reserve(hex.size() / 2);
  for (size_t i = 0; i < hex.size(); i += 2) {
    int hi = digit(hex[i]), lo = digit(hex[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<char>(hi * 16 + lo));
  }
  return out;
}

// Rotates the workload's output when it is large, counting what went in DIR/log/rotated.
void RotateLog(const std::string& log_dir) {
  static const runtime::LogRotator rotator;
  std::string path = log_dir + "/output.log";
  std::error_code ec;
  auto size = fs::file_size(path, ec);
  if (ec) return;
  auto rotated = rotator.MaybeRotate(path);
  if (!rotated.ok() || !*rotated) return;
  uint64_t total = 0;
  if (auto text = ReadFile(log_dir + "/rotated"); text.ok())
    total = std::strtoull(text->c_str(), nullptr, 10);
  (void)WriteFileAtomic(log_dir + "/rotated", std::to_string(total + size) + "\n", 0644);
}

bool TcpConnects(uint32_t port, Millis timeout) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = false;
  // NOLINTNEXTLINE(cppcoreguidelines-pro-type-reinterpret-cast): the sockets API
  int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  if (rc == 0) {
    ok = true;
  } else if (errno == EINPROGRESS) {
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) == 1) {
      int err = 0;
      socklen_t len = sizeof(err);
      ok = ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0;
    }
  }
  ::close(fd);
  return ok;
}

}  // namespace

struct AppManager::Entry {
  v1::Workload desired;
  runtime::WorkloadSpec spec;
  std::optional<runtime::Handle> handle;  // set while started
  runtime::Runtime* rt = nullptr;
  // pending | running | ready | unhealthy | crashloop | failed
  std::string status = "pending";
  bool ready = false;
  uint32_t restarts = 0;
  uint32_t failures_in_a_row = 0;
  std::string last_error;
  int64_t started_ms = 0;  // wall clock, for the report
  int64_t started_at = 0;  // steady clock
  int64_t next_start = 0;  // steady: not before (backoff)
  int64_t next_probe = 0;  // steady
  uint32_t probe_failures = 0;
  bool probed_ok = false;
  int64_t next_usage = 0;
  uint64_t last_cpu_ns = 0;
  int64_t last_cpu_at = 0;
  uint64_t cpu_millicores = 0;
  uint64_t memory_bytes = 0;
  uint64_t oom_kills = 0;
};

AppManager::AppManager(AppManagerOptions options, const Clock& clock,
                       std::map<runtime::Kind, runtime::Runtime*> runtimes,
                       ArtifactSource* artifacts)
    : options_(std::move(options)),
      clock_(clock),
      runtimes_(std::move(runtimes)),
      artifacts_(artifacts) {}

AppManager::~AppManager() { Stop(); }

Status AppManager::Start() {
  // Native workloads run as an unprivileged user that must reach their directory, artifacts
  // and volumes by path: these directories and the data dir above them are made searchable
  // (o+x), never listable or writable, by others. Keys and databases keep their own modes.
  for (const std::string* dir : {&options_.dir, &options_.artifacts_dir, &options_.volumes_dir}) {
    VERGE_RETURN_IF_ERROR(MakeDirs(*dir));
    for (const fs::path& p : {fs::path(*dir), fs::path(*dir).parent_path()}) {
      std::error_code ec;
      fs::permissions(p, fs::perms::others_exec | fs::perms::group_exec, fs::perm_options::add, ec);
      if (ec) return Error(Code::kPermissionDenied, "chmod o+x {}: {}", p.string(), ec.message());
    }
  }
  // Workloads a previous agent process started: adopt what still runs.
  std::set<std::string> kept_cgroups;
  if (auto text = ReadFile(options_.dir + "/state.json"); text.ok()) {
    json state = json::parse(*text, nullptr, false);
    if (state.is_object()) {
      for (const auto& [id, j] : state.items()) {
        // A damaged record is skipped (its workload, if it runs, is killed as an orphan below),
        // never a reason for the agent not to start.
        if (!j.is_object()) continue;
        int64_t started_ms = 0;
        uint32_t restarts = 0;
        std::string hex;
        try {
          started_ms = j.value("startedMs", int64_t{0});
          restarts = j.value("restarts", 0u);
          hex = j.value("workload", std::string());
        } catch (const json::exception&) {
          continue;
        }
        auto h = HandleFrom(j.value("handle", json()));
        if (!h) continue;
        v1::Workload w;
        auto bytes = FromHex(hex);
        if (!bytes || !w.ParseFromString(*bytes)) continue;
        auto kind = KindOf(w.type());
        auto rt = kind ? runtimes_.find(*kind) : runtimes_.end();
        if (rt == runtimes_.end()) continue;
        auto e = std::make_unique<Entry>();
        e->desired = w;
        e->rt = rt->second;
        auto adopted = e->rt->Adopt(*h);
        if (adopted.ok() && *adopted) {
          e->handle = *h;
          e->status = "running";
          e->started_ms = started_ms;
          e->started_at = clock_.SteadyMs();
          e->restarts = restarts;
          kept_cgroups.insert(h->cgroup);
          spdlog::info("apps: re-adopted {} (pid {})", id, h->pid);
        } else {
          // It ended while the agent was away: clean up; it starts again below.
          (void)e->rt->Stop(*h, Millis(0));
          e->restarts = restarts;
          spdlog::info("apps: {} ended while the agent was down; it will be started again", id);
        }
        if (auto spec = SpecFor(w); spec.ok()) e->spec = std::move(*spec);
        entries_[id] = std::move(e);
      }
    }
  }
  for (auto& [kind, rt] : runtimes_) {
    if (auto* native = dynamic_cast<runtime::NativeRuntime*>(rt)) {
      if (native->Available().ok()) {
        if (auto st = native->KillOrphans(kept_cgroups); !st.ok())
          spdlog::warn("apps: cleaning up stray workloads: {}", st.message());
      }
    }
  }
  thread_ = std::thread([this] { Run(); });
  started_ = true;
  return Status::Ok();
}

void AppManager::Stop() {
  if (!started_) return;
  started_ = false;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (options_.stop_on_exit) {
    for (auto& [id, e] : entries_) StopWorkload(*e);
    PersistHandles();
  }
}

void AppManager::SetDesired(std::vector<v1::Workload> workloads) {
  {
    std::lock_guard lock(mu_);
    desired_ = std::move(workloads);
  }
  cv_.notify_all();
}

std::vector<v1::WorkloadStatus> AppManager::Statuses() const {
  std::lock_guard lock(mu_);
  return statuses_;
}

void AppManager::Run() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    lock.unlock();
    int64_t now = clock_.SteadyMs();
    Reconcile(now);
    for (auto& [id, e] : entries_) Supervise(*e, now);
    Changed();
    lock.lock();
    cv_.wait_for(lock, options_.tick, [&] { return stopping_ || desired_.has_value(); });
  }
}

void AppManager::Reconcile(int64_t now) {
  std::optional<std::vector<v1::Workload>> desired;
  {
    std::lock_guard lock(mu_);
    desired.swap(desired_);
  }
  if (!desired) return;
  std::map<std::string, const v1::Workload*> want;
  for (const auto& w : *desired) want[w.id()] = &w;
  bool changed = false;
  for (auto it = entries_.begin(); it != entries_.end();) {
    auto w = want.find(it->first);
    if (w != want.end() && Canonical(*w->second) == Canonical(it->second->desired)) {
      ++it;
      continue;
    }
    spdlog::info("apps: stopping {} ({})", it->first,
                 w == want.end() ? "no longer placed here" : "new revision");
    StopWorkload(*it->second);
    if (w == want.end()) {
      std::error_code ec;
      fs::remove_all(options_.dir + "/" + it->first, ec);
    }
    it = entries_.erase(it);
    changed = true;
  }
  for (const auto& [id, w] : want) {
    if (entries_.contains(id)) continue;
    auto e = std::make_unique<Entry>();
    e->desired = *w;
    e->next_start = now;
    auto kind = KindOf(w->type());
    auto rt = kind ? runtimes_.find(*kind) : runtimes_.end();
    if (rt == runtimes_.end()) {
      e->status = "failed";
      e->last_error = fmt::format("this node cannot run {} apps", w->type());
    } else if (auto st = rt->second->Available(); !st.ok()) {
      e->status = "failed";
      e->last_error = st.message();
    } else {
      e->rt = rt->second;
    }
    entries_[id] = std::move(e);
    changed = true;
  }
  if (changed) {
    PersistHandles();
    CollectArtifacts();
  }
}

Result<std::string> AppManager::EnsureArtifact(const std::string& sha256) {
  std::string path = options_.artifacts_dir + "/" + sha256;
  if (FileExists(path)) return path;
  if (!artifacts_) return Error(Code::kUnavailable, "no source for artifacts");
  VERGE_ASSIGN_OR_RETURN(std::string data, artifacts_->Fetch(sha256));
  std::string got = pki::Sha256Hex(data);
  if (got != sha256) {
    return Error(Code::kDataLoss, "artifact sha256:{} arrived with sha256 {}: refused", sha256,
                 got);
  }
  VERGE_RETURN_IF_ERROR(WriteFileAtomic(path, data, 0755));
  if (LooksLikeTarball(data)) {
    std::string dir = path + ".d";
    std::error_code ec;
    fs::remove_all(dir, ec);
    if (auto st = runtime::UnpackTarball(path, dir, runtime::UnpackLimits{}); !st.ok()) {
      fs::remove(path, ec);
      return Error(Code::kInvalidArgument, "artifact sha256:{}: {}", sha256, st.message());
    }
  }
  return path;
}

Result<runtime::WorkloadSpec> AppManager::SpecFor(const v1::Workload& w) {
  runtime::WorkloadSpec s;
  s.id = w.id();
  s.app = w.app();
  s.version = w.version();
  auto kind = KindOf(w.type());
  if (!kind) return Error(Code::kInvalidArgument, "unknown app type \"{}\"", w.type());
  s.kind = *kind;
  s.dir = options_.dir + "/" + w.id();
  s.command.assign(w.command().begin(), w.command().end());
  for (const auto& [k, v] : w.env()) s.env[k] = v;
  for (const auto& [k, v] : w.config_files()) s.config.push_back({k, v, 0644});
  if (!w.config_mount().empty()) s.config_mount = w.config_mount();
  for (const auto& v : w.volumes()) {
    std::string host = v.host_path().empty() ? options_.volumes_dir + "/" + w.app() + "/" + v.name()
                                             : v.host_path();
    s.volumes.push_back({v.name(), v.mount_path(), host, v.read_only()});
  }
  for (const auto& p : w.ports()) s.ports.push_back({p.name(), p.port(), p.protocol()});
  s.isolated_network = w.isolated_network();
  s.cpu_millicores = w.resources().cpu_millicores();
  s.memory_mb = w.resources().memory_mb();
  if (!w.handler().empty()) s.handler = w.handler();
  if (w.max_instructions() > 0) s.max_instructions = w.max_instructions();
  if (w.function_memory_mb() > 0) s.function_memory_mb = w.function_memory_mb();
  if (!w.artifact_sha256().empty()) {
    VERGE_ASSIGN_OR_RETURN(std::string path, EnsureArtifact(w.artifact_sha256()));
    if (s.kind == runtime::Kind::kNative && FileExists(path + ".d")) {
      s.artifact = path + ".d";
    } else {
      s.artifact = path;
    }
    if (s.kind == runtime::Kind::kNative && s.command.empty()) {
      if (FileExists(path + ".d"))
        return Error(Code::kInvalidArgument, "a tarball artifact needs spec.command");
      s.command = {path};
    }
  } else if (s.kind == runtime::Kind::kFunction) {
    if (w.source().empty()) return Error(Code::kInvalidArgument, "a function needs a script");
    std::string path = options_.artifacts_dir + "/inline-" + pki::Sha256Hex(w.source()) + ".lua";
    if (!FileExists(path)) VERGE_RETURN_IF_ERROR(WriteFileAtomic(path, w.source(), 0644));
    s.artifact = path;
  }
  return s;
}

void AppManager::StartWorkload(Entry& e, int64_t now) {
  if (!e.rt) return;
  auto spec = SpecFor(e.desired);
  if (!spec.ok()) {
    // Fetching can fail for a while (the cloud is away): keep trying with backoff.
    Ended(e, now, spec.status().message());
    if (spec.status().code() == Code::kInvalidArgument || spec.status().code() == Code::kDataLoss)
      e.status = "failed";
    return;
  }
  e.spec = std::move(*spec);
  auto h = e.rt->Start(e.spec);
  if (!h.ok()) {
    Ended(e, now, h.status().message());
    return;
  }
  e.handle = *h;
  e.status = "running";
  e.ready = false;
  e.probed_ok = false;
  e.probe_failures = 0;
  e.started_ms = clock_.WallMs();
  e.started_at = now;
  e.next_probe = now + e.desired.health().initial_delay_ms();
  e.next_usage = now;
  e.last_cpu_ns = 0;
  e.last_cpu_at = 0;
  spdlog::info("apps: started {} (revision {})", e.desired.id(), e.desired.revision());
  PersistHandles();
}

void AppManager::StopWorkload(Entry& e) {
  if (!e.handle || !e.rt) return;
  if (auto st = e.rt->Stop(*e.handle, options_.stop_grace); !st.ok())
    spdlog::warn("apps: stopping {}: {}", e.desired.id(), st.message());
  e.handle.reset();
}

// The workload ended or could not start: schedule the next start with backoff.
void AppManager::Ended(Entry& e, int64_t now, const std::string& why) {
  if (e.handle) {
    if (e.rt) (void)e.rt->Stop(*e.handle, Millis(0));
    e.handle.reset();
    PersistHandles();
    ++e.restarts;
  }
  e.last_error = why;
  e.ready = false;
  ++e.failures_in_a_row;
  int64_t backoff = options_.backoff_initial.count();
  for (uint32_t i = 1; i < e.failures_in_a_row && backoff < options_.backoff_max.count(); ++i)
    backoff *= 2;
  backoff = std::min(backoff, options_.backoff_max.count());
  e.next_start = now + backoff;
  e.status = e.failures_in_a_row >= options_.crashloop_after ? "crashloop" : "pending";
  spdlog::warn("apps: {}: {}; next start in {}", e.desired.id(), why,
               FormatDuration(Millis(backoff)));
}

bool AppManager::Probe(Entry& e) {
  const auto& h = e.desired.health();
  Millis timeout(std::max<uint32_t>(h.timeout_ms(), 100));
  if (h.type() == "tcp") return TcpConnects(h.port(), timeout);
  if (h.type() == "http") {
    http::ClientTls tls;
    tls.plain = true;
    http::HttpsClient client(fmt::format("127.0.0.1:{}", h.port()), tls, timeout);
    auto r = client.Do("GET", h.path().empty() ? "/" : h.path());
    return r.ok() && r->response.status >= 200 && r->response.status < 400;
  }
  if (h.type() == "exec") {
    if (!e.handle || !e.rt) return false;
    std::vector<std::string> argv(h.command().begin(), h.command().end());
    auto rc = e.rt->Exec(*e.handle, argv, timeout);
    return rc.ok() && *rc == 0;
  }
  return true;
}

void AppManager::Supervise(Entry& e, int64_t now) {
  if (!e.rt) return;
  if (!e.handle) {
    if (e.status == "failed" && e.failures_in_a_row > 0 && now < e.next_start) return;
    if (now >= e.next_start) StartWorkload(e, now);
    return;
  }
  auto obs = e.rt->Poll(*e.handle);
  if (!obs.ok()) {
    Ended(e, now, "cannot observe the workload: " + obs.status().message());
    return;
  }
  if (!obs->running) {
    std::string why = obs->exit ? obs->exit->message : "ended";
    if (obs->exit && obs->exit->oom_killed && why.find("memory") == std::string::npos)
      why += " (out of memory)";
    if (obs->exit && obs->exit->oom_killed) ++e.oom_kills;
    Ended(e, now, why);
    return;
  }
  if (now - e.started_at >= options_.backoff_reset.count()) e.failures_in_a_row = 0;
  const auto& h = e.desired.health();
  if (!e.desired.has_health() || h.type().empty()) {
    e.ready = true;
    e.status = "ready";
  } else if (now >= e.next_probe) {
    e.next_probe = now + std::max<uint32_t>(h.period_ms(), 100);
    if (Probe(e)) {
      e.probe_failures = 0;
      e.ready = true;
      e.status = "ready";
    } else if (++e.probe_failures >= std::max<uint32_t>(h.failure_threshold(), 1)) {
      e.ready = false;
      std::string why =
          fmt::format("health check ({}) failed {} times in a row", h.type(), e.probe_failures);
      Ended(e, now, why);
      // Ended says pending/crashloop; a failing probe is what users look for.
      if (e.status == "pending") e.status = "unhealthy";
      return;
    } else if (!e.ready) {
      e.status = "running";
    }
  } else if (!e.ready) {
    e.status = "running";
  }
  if (now >= e.next_usage) {
    e.next_usage = now + options_.usage_interval.count();
    if (auto u = e.rt->GetUsage(*e.handle); u.ok()) {
      if (e.last_cpu_at > 0 && now > e.last_cpu_at && u->cpu_usage_ns >= e.last_cpu_ns) {
        e.cpu_millicores =
            (u->cpu_usage_ns - e.last_cpu_ns) / 1000 / static_cast<uint64_t>(now - e.last_cpu_at);
      }
      e.last_cpu_ns = u->cpu_usage_ns;
      e.last_cpu_at = now;
      e.memory_bytes = u->memory_bytes;
      e.oom_kills = std::max(e.oom_kills, u->oom_kills);
    }
    if (!e.spec.dir.empty()) RotateLog(e.spec.dir + "/log");
  }
}

void AppManager::Changed() {
  std::vector<v1::WorkloadStatus> out;
  out.reserve(entries_.size());
  for (const auto& [id, e] : entries_) {
    v1::WorkloadStatus s;
    s.set_id(id);
    s.set_app(e->desired.app());
    s.set_revision(e->desired.revision());
    s.set_status(e->status);
    s.set_ready(e->ready);
    s.set_restarts(e->restarts);
    s.set_last_error(e->last_error);
    s.set_started_ms(e->handle ? e->started_ms : 0);
    s.set_oom_kills(e->oom_kills);
    if (e->handle) s.set_pid(e->handle->pid);
    out.push_back(std::move(s));
  }
  bool changed;
  {
    std::lock_guard lock(mu_);
    changed = out.size() != statuses_.size() ||
              !std::equal(out.begin(), out.end(), statuses_.begin(),
                          [](const v1::WorkloadStatus& a, const v1::WorkloadStatus& b) {
                            return a.SerializeAsString() == b.SerializeAsString();
                          });
    // Usage rides along without counting as a change.
    for (auto& s : out) {
      const auto& e = entries_.at(s.id());
      s.set_cpu_millicores(e->cpu_millicores);
      s.set_memory_bytes(e->memory_bytes);
    }
    statuses_ = std::move(out);
  }
  if (changed) {
    ++status_version_;
    if (on_change_) on_change_();
  }
}

void AppManager::PersistHandles() {
  json state = json::object();
  for (const auto& [id, e] : entries_) {
    if (!e->handle) continue;
    state[id] = {{"handle", HandleJson(*e->handle)},
                 {"workload", ToHex(e->desired.SerializeAsString())},
                 {"startedMs", e->started_ms},
                 {"restarts", e->restarts}};
  }
  if (auto st = WriteFileAtomic(options_.dir + "/state.json", state.dump(), 0600); !st.ok()) {
    spdlog::error("apps: saving workload handles: {}", st.message());
  }
}

void AppManager::CollectArtifacts() {
  std::set<std::string> keep;
  for (const auto& [id, e] : entries_) {
    if (!e->desired.artifact_sha256().empty()) keep.insert(e->desired.artifact_sha256());
  }
  std::error_code ec;
  for (const auto& f : fs::directory_iterator(options_.artifacts_dir, ec)) {
    std::string name = f.path().filename().string();
    std::string sha = name.substr(0, name.find('.'));
    if (name.starts_with("inline-") || keep.contains(sha)) continue;
    fs::remove_all(f.path(), ec);
  }
}

namespace {

// Bytes rotated out of DIR/log/output.log so far: with its size, a position in all the output.
uint64_t RotatedBytes(const std::string& log_dir) {
  auto text = ReadFile(log_dir + "/rotated");
  if (!text.ok()) return 0;
  uint64_t v = 0;
  for (char c : *text) {
    if (c < '0' || c > '9') break;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  return v;
}

}  // namespace

Result<std::vector<AppManager::LogPiece>> AppManager::Logs(
    const std::string& app, uint32_t tail, const std::map<std::string, uint64_t>& since) const {
  std::vector<LogPiece> out;
  std::error_code ec;
  for (const auto& d : fs::directory_iterator(options_.dir, ec)) {
    std::string id = d.path().filename().string();
    if (!d.is_directory() || !id.starts_with(app + "-")) continue;
    auto suffix = id.substr(app.size() + 1);
    if (suffix.empty() ||
        !std::all_of(suffix.begin(), suffix.end(), [](char c) { return c >= '0' && c <= '9'; }))
      continue;
    std::string log_dir = d.path().string() + "/log";
    std::string path = log_dir + "/output.log";
    uint64_t base = RotatedBytes(log_dir);
    LogPiece piece{id, "", 0};
    if (auto it = since.find(id); it != since.end()) {
      uint64_t from = it->second >= base ? it->second - base : 0;
      runtime::LogFollower follower(path, from);
      auto text = follower.Read(1 << 20);
      if (!text.ok()) continue;
      piece.text = std::move(*text);
      piece.offset = base + follower.offset();
    } else {
      auto text = runtime::ReadTail(path, tail == 0 ? SIZE_MAX : tail);
      if (!text.ok()) continue;
      piece.text = std::move(*text);
      std::error_code size_ec;
      auto size = fs::file_size(path, size_ec);
      piece.offset = base + (size_ec ? 0 : size);
    }
    out.push_back(std::move(piece));
  }
  std::sort(out.begin(), out.end(),
            [](const LogPiece& a, const LogPiece& b) { return a.workload < b.workload; });
  return out;
}

}  // namespace verge::node
