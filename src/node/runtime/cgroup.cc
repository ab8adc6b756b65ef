#include "node/runtime/cgroup.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <optional>
#include <set>
#include <system_error>
#include <thread>

namespace verge::node::runtime {
namespace {

// The v1 controllers we manage; v2 gets cpu, memory and pids (its cpu.stat is always there).
const std::vector<std::string> kV1Controllers = {"cpu", "cpuacct", "memory", "pids"};
const std::vector<std::string> kV2Controllers = {"cpu", "memory", "pids"};
constexpr std::string_view kAgentLeaf = "verge-agent";
constexpr uint64_t kCpuPeriodUs = 100000;

std::string Errno(int e) {
  return fmt::format("{} (errno {})", std::generic_category().message(e), e);
}

Code CodeOf(int e) {
  switch (e) {
    case ENOENT:
      return Code::kNotFound;
    case EACCES:
    case EPERM:
    case EROFS:
      return Code::kPermissionDenied;
    case EINVAL:
      return Code::kInvalidArgument;
    default:
      return Code::kInternal;
  }
}

Result<std::string> ReadText(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    return Error(CodeOf(e), "reading {}: {}", path, Errno(e));
  }
  std::string out;
  char buf[8192];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      close(fd);
      return Error(CodeOf(e), "reading {}: {}", path, Errno(e));
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return out;
}

// Cgroup files exist already (the kernel makes them): no O_CREAT, so a typo is an error and
// not a new file. O_TRUNC lets the fake trees of the tests be plain files.
Status WriteText(const std::string& path, std::string_view data) {
  int fd = open(path.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    return Error(CodeOf(e), "writing \"{}\" to {}: {}", data, path, Errno(e));
  }
  ssize_t n;
  do {
    n = write(fd, data.data(), data.size());
  } while (n < 0 && errno == EINTR);
  int e = errno;
  close(fd);
  if (n < 0) return Error(CodeOf(e), "writing \"{}\" to {}: {}", data, path, Errno(e));
  return Status::Ok();
}

bool PathExists(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0;
}

Status MkdirIfMissing(const std::string& path) {
  if (mkdir(path.c_str(), 0755) == 0 || errno == EEXIST) return Status::Ok();
  int e = errno;
  return Error(CodeOf(e), "creating cgroup {}: {}", path, Errno(e));
}

std::vector<std::string> Split(std::string_view s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find(sep, start);
    if (end == std::string_view::npos) end = s.size();
    out.emplace_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

std::vector<std::string> Lines(std::string_view s) {
  std::vector<std::string> out;
  for (auto& l : Split(s, '\n')) {
    if (!l.empty()) out.push_back(std::move(l));
  }
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.remove_suffix(1);
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  return s;
}

std::optional<uint64_t> ParseU64(std::string_view s) {
  s = Trim(s);
  if (s.empty()) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  return v;
}

// "key value" lines (cpu.stat, memory.events, memory.oom_control).
std::optional<uint64_t> KeyValue(std::string_view text, std::string_view key) {
  for (const auto& line : Lines(text)) {
    std::string_view l = line;
    if (l.size() > key.size() && l.substr(0, key.size()) == key && l[key.size()] == ' ') {
      return ParseU64(l.substr(key.size() + 1));
    }
  }
  return std::nullopt;
}

// Mount points in mountinfo escape space, tab, newline and backslash as octal.
std::string Unescape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      int v = 0;
      bool ok = true;
      for (size_t j = 1; j <= 3; ++j) {
        if (i + j >= s.size() || s[i + j] < '0' || s[i + j] > '7') {
          ok = false;
          break;
        }
        v = v * 8 + (s[i + j] - '0');
      }
      if (ok) {
        out.push_back(static_cast<char>(v));
        i += 3;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

struct MountEntry {
  std::string root;  // the mount's root inside the cgroup tree
  std::string mount_point;
  std::vector<std::string> super_options;
};

std::vector<MountEntry> CgroupV1Mounts(std::string_view mountinfo) {
  std::vector<MountEntry> out;
  for (const auto& line : Lines(mountinfo)) {
    auto fields = Split(line, ' ');
    auto dash = std::find(fields.begin(), fields.end(), "-");
    if (dash == fields.end() || fields.end() - dash < 4 || fields.size() < 5) continue;
    if (*(dash + 1) != "cgroup") continue;
    out.push_back({Unescape(fields[3]), Unescape(fields[4]), Split(*(dash + 3), ',')});
  }
  return out;
}

bool Contains(const std::vector<std::string>& v, std::string_view s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

std::string JoinPath(std::string_view a, std::string_view b) {
  std::string out(a);
  while (!out.empty() && out.back() == '/') out.pop_back();
  if (b.empty()) return out;
  if (b.front() != '/') out.push_back('/');
  out.append(b);
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

bool ValidRelative(std::string_view rel) {
  if (rel.empty() || rel.front() == '/' || rel.back() == '/') return false;
  for (const auto& part : Split(rel, '/')) {
    if (part.empty() || part == "." || part == "..") return false;
  }
  return true;
}

}  // namespace

Result<CgroupManager> CgroupManager::Open(const std::string& parent, const CgroupPaths& paths) {
  if (!ValidRelative(parent)) {
    return Error(Code::kInvalidArgument,
                 "cgroup parent \"{}\" must be a relative path without \".\" or \"..\"", parent);
  }
  CgroupManager m;
  m.parent_ = parent;
  VERGE_ASSIGN_OR_RETURN(std::string self, ReadText(paths.self_cgroup));
  m.v2_ = PathExists(JoinPath(paths.root, "cgroup.controllers"));

  if (m.v2_) {
    std::optional<std::string> own;
    for (const auto& line : Lines(self)) {
      if (line.rfind("0::", 0) == 0) own = line.substr(3);
    }
    if (!own) {
      return Error(Code::kFailedPrecondition, "{} has no cgroup v2 line (\"0::/path\")",
                   paths.self_cgroup);
    }
    // A restarted agent that an earlier one moved into the leaf (see the header).
    std::string suffix = "/" + std::string(kAgentLeaf);
    if (own->size() > suffix.size() &&
        own->compare(own->size() - suffix.size(), suffix.size(), suffix) == 0) {
      own->resize(own->size() - suffix.size());
    }
    Tree t{paths.root, JoinPath(paths.root, *own), {"cpuacct"}};
    auto avail = ReadText(JoinPath(t.own, "cgroup.controllers"));
    if (avail.ok()) {
      auto names = Split(Trim(*avail), ' ');
      for (const auto& c : kV2Controllers) {
        if (Contains(names, c)) t.controllers.push_back(c);
      }
    }
    m.trees_.push_back(std::move(t));
    return m;
  }

  auto mountinfo = ReadText(paths.mountinfo);
  std::vector<MountEntry> mounts;
  if (mountinfo.ok()) mounts = CgroupV1Mounts(*mountinfo);
  for (const auto& line : Lines(self)) {
    // "4:memory:/process_api/x", "1:cpu,cpuacct:/"
    size_t c1 = line.find(':');
    size_t c2 = c1 == std::string::npos ? c1 : line.find(':', c1 + 1);
    if (c2 == std::string::npos) continue;
    auto controllers = Split(std::string_view(line).substr(c1 + 1, c2 - c1 - 1), ',');
    std::string path = line.substr(c2 + 1);
    std::vector<std::string> ours;
    for (const auto& c : kV1Controllers) {
      if (Contains(controllers, c)) ours.push_back(c);
    }
    if (ours.empty()) continue;
    std::string mount_point;
    std::string mount_root = "/";
    for (const auto& me : mounts) {
      if (std::all_of(controllers.begin(), controllers.end(),
                      [&](const std::string& c) { return Contains(me.super_options, c); })) {
        mount_point = me.mount_point;
        mount_root = me.root;
        break;
      }
    }
    if (mount_point.empty()) {
      // No mountinfo entry: the conventional place, if it is there.
      std::string joined;
      for (const auto& c : controllers) joined += (joined.empty() ? "" : ",") + c;
      mount_point = JoinPath(paths.root, joined);
      if (!PathExists(mount_point)) mount_point = JoinPath(paths.root, ours.front());
      if (!PathExists(mount_point)) continue;
    }
    // A bind-mounted subtree (mount root "/a/b") shows /proc/self/cgroup paths from the top.
    if (mount_root != "/" && path.rfind(mount_root, 0) == 0) path = path.substr(mount_root.size());
    auto dup = std::find_if(m.trees_.begin(), m.trees_.end(),
                            [&](const Tree& t) { return t.mount == mount_point; });
    if (dup != m.trees_.end()) continue;
    m.trees_.push_back({mount_point, JoinPath(mount_point, path), ours});
  }
  if (m.trees_.empty()) {
    return Error(Code::kFailedPrecondition,
                 "no cgroup found: {} has no cgroup.controllers (v2) and no v1 cpu, cpuacct, "
                 "memory or pids hierarchy is mounted",
                 paths.root);
  }
  return m;
}

std::string CgroupManager::Describe() const {
  std::string out = v2_ ? "cgroup v2 (" : "cgroup v1 (";
  bool first = true;
  for (const auto& t : trees_) {
    std::string names;
    for (const auto& c : t.controllers) names += (names.empty() ? "" : ",") + c;
    out += fmt::format("{}{}: {}", first ? "" : "; ", names, t.own);
    first = false;
  }
  return out + ")";
}

const CgroupManager::Tree* CgroupManager::TreeOf(std::string_view controller) const {
  for (const auto& t : trees_) {
    if (Contains(t.controllers, controller)) return &t;
  }
  return nullptr;
}

bool CgroupManager::HasController(std::string_view controller) const {
  return TreeOf(controller) != nullptr;
}

std::string CgroupManager::Dir(const Tree& t, std::string_view rel) const {
  return JoinPath(t.own, rel);
}

std::string CgroupManager::PathOf(std::string_view id) const {
  return parent_ + "/" + std::string(id);
}

bool CgroupManager::Owns(std::string_view rel) const {
  if (rel.size() <= parent_.size() + 1 || rel.substr(0, parent_.size()) != parent_ ||
      rel[parent_.size()] != '/') {
    return false;
  }
  std::string_view name = rel.substr(parent_.size() + 1);
  return name != "." && name != ".." && name.find('/') == std::string_view::npos &&
         name != kAgentLeaf;
}

std::string CgroupManager::DirOf(std::string_view rel, std::string_view controller) const {
  const Tree* t = TreeOf(controller);
  return t ? Dir(*t, rel) : std::string();
}

std::vector<std::string> CgroupManager::ProcsFiles(std::string_view rel) const {
  std::vector<std::string> out;
  out.reserve(trees_.size());
  for (const auto& t : trees_) out.push_back(JoinPath(Dir(t, rel), "cgroup.procs"));
  return out;
}

Status CgroupManager::EnableV2Chain(std::string_view rel) const {
  const Tree& t = trees_.front();
  // Every ancestor of the workload's cgroup, from the agent's own down, delegates controllers.
  std::vector<std::string> levels = {t.own};
  auto parts = Split(rel, '/');
  for (size_t i = 0; i + 1 < parts.size(); ++i) levels.push_back(JoinPath(levels.back(), parts[i]));
  for (size_t i = 0; i < levels.size(); ++i) {
    const std::string& dir = levels[i];
    if (i > 0) VERGE_RETURN_IF_ERROR(MkdirIfMissing(dir));
    VERGE_ASSIGN_OR_RETURN(std::string avail, ReadText(JoinPath(dir, "cgroup.controllers")));
    VERGE_ASSIGN_OR_RETURN(std::string enabled, ReadText(JoinPath(dir, "cgroup.subtree_control")));
    auto avail_names = Split(Trim(avail), ' ');
    auto enabled_names = Split(Trim(enabled), ' ');
    std::string add;
    for (const auto& c : kV2Controllers) {
      if (Contains(avail_names, c) && !Contains(enabled_names, c)) {
        add += (add.empty() ? "+" : " +") + c;
      }
    }
    if (add.empty()) continue;
    std::string file = JoinPath(dir, "cgroup.subtree_control");
    int fd = open(file.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
    int e = 0;
    if (fd < 0) {
      e = errno;
    } else {
      if (write(fd, add.data(), add.size()) < 0) e = errno;
      close(fd);
    }
    if (e == EBUSY && i == 0 && t.own != t.mount) {
      // No internal processes: move everything in our cgroup into a leaf and try again.
      std::string leaf = JoinPath(dir, kAgentLeaf);
      VERGE_RETURN_IF_ERROR(MkdirIfMissing(leaf));
      VERGE_ASSIGN_OR_RETURN(std::string procs, ReadText(JoinPath(dir, "cgroup.procs")));
      for (const auto& p : Lines(procs)) {
        auto st = WriteText(JoinPath(leaf, "cgroup.procs"), p);
        (void)st;  // a process that exited meanwhile (ESRCH) is no obstacle
      }
      e = 0;
      VERGE_RETURN_IF_ERROR(WriteText(file, add).Wrap(fmt::format(
          "after moving the processes of {} into {} (no internal processes)", dir, leaf)));
    }
    if (e != 0) {
      return Error(CodeOf(e), "writing \"{}\" to {}: {}", add, file, Errno(e));
    }
  }
  return Status::Ok();
}

Status CgroupManager::Create(std::string_view rel, const CgroupLimits& limits) const {
  if (!Owns(rel)) {
    return Error(Code::kInvalidArgument, "cgroup \"{}\" is not below \"{}\"", rel, parent_);
  }
  if (limits.cpu_millicores > 0 && !HasController("cpu")) {
    return Error(Code::kFailedPrecondition, "a cpu limit needs the cpu controller, and {} has none",
                 Describe());
  }
  if (limits.memory_bytes > 0 && !HasController("memory")) {
    return Error(Code::kFailedPrecondition,
                 "a memory limit needs the memory controller, and {} has none", Describe());
  }
  if (v2_) {
    VERGE_RETURN_IF_ERROR(EnableV2Chain(rel));
    VERGE_RETURN_IF_ERROR(MkdirIfMissing(Dir(trees_.front(), rel)));
  } else {
    for (const auto& t : trees_) {
      std::string dir = t.own;
      for (const auto& part : Split(rel, '/')) {
        dir = JoinPath(dir, part);
        VERGE_RETURN_IF_ERROR(MkdirIfMissing(dir));
      }
    }
  }
  return WriteLimits(rel, limits);
}

Status CgroupManager::WriteLimits(std::string_view rel, const CgroupLimits& limits) const {
  const uint64_t quota = std::max<uint64_t>(limits.cpu_millicores * kCpuPeriodUs / 1000, 1000);
  const std::string cpu_dir = DirOf(rel, "cpu");
  const std::string mem_dir = DirOf(rel, "memory");
  const std::string pids_dir = DirOf(rel, "pids");
  if (v2_) {
    if (!cpu_dir.empty()) {
      VERGE_RETURN_IF_ERROR(
          WriteText(JoinPath(cpu_dir, "cpu.max"), limits.cpu_millicores > 0
                                                      ? fmt::format("{} {}", quota, kCpuPeriodUs)
                                                      : fmt::format("max {}", kCpuPeriodUs)));
    }
    if (!mem_dir.empty()) {
      VERGE_RETURN_IF_ERROR(
          WriteText(JoinPath(mem_dir, "memory.max"),
                    limits.memory_bytes > 0 ? std::to_string(limits.memory_bytes) : "max"));
      std::string swap = JoinPath(mem_dir, "memory.swap.max");
      if (PathExists(swap)) {
        VERGE_RETURN_IF_ERROR(WriteText(swap, limits.memory_bytes > 0 ? "0" : "max"));
      }
    }
  } else {
    if (!cpu_dir.empty()) {
      if (limits.cpu_millicores > 0) {
        VERGE_RETURN_IF_ERROR(
            WriteText(JoinPath(cpu_dir, "cpu.cfs_period_us"), std::to_string(kCpuPeriodUs)));
        VERGE_RETURN_IF_ERROR(
            WriteText(JoinPath(cpu_dir, "cpu.cfs_quota_us"), std::to_string(quota)));
      } else {
        VERGE_RETURN_IF_ERROR(WriteText(JoinPath(cpu_dir, "cpu.cfs_quota_us"), "-1"));
      }
    }
    if (!mem_dir.empty()) {
      // memsw (memory + swap) may never be below the memory limit: lift it first, set the
      // memory limit, then pull memsw down to the same value so nothing can swap past it.
      std::string memsw = JoinPath(mem_dir, "memory.memsw.limit_in_bytes");
      bool has_memsw = PathExists(memsw);
      if (has_memsw) VERGE_RETURN_IF_ERROR(WriteText(memsw, "-1"));
      std::string value = limits.memory_bytes > 0 ? std::to_string(limits.memory_bytes) : "-1";
      VERGE_RETURN_IF_ERROR(WriteText(JoinPath(mem_dir, "memory.limit_in_bytes"), value));
      if (has_memsw && limits.memory_bytes > 0) VERGE_RETURN_IF_ERROR(WriteText(memsw, value));
    }
  }
  if (!pids_dir.empty()) {
    VERGE_RETURN_IF_ERROR(WriteText(JoinPath(pids_dir, "pids.max"),
                                    limits.pids_max > 0 ? std::to_string(limits.pids_max) : "max"));
  }
  return Status::Ok();
}

bool CgroupManager::Exists(std::string_view rel) const {
  return std::any_of(trees_.begin(), trees_.end(),
                     [&](const Tree& t) { return PathExists(Dir(t, rel)); });
}

Status CgroupManager::AddProcess(std::string_view rel, pid_t pid) const {
  for (const auto& file : ProcsFiles(rel)) {
    VERGE_RETURN_IF_ERROR(WriteText(file, std::to_string(pid)));
  }
  return Status::Ok();
}

Result<std::vector<pid_t>> CgroupManager::Pids(std::string_view rel) const {
  std::set<pid_t> pids;
  for (const auto& file : ProcsFiles(rel)) {
    auto text = ReadText(file);
    if (!text.ok()) {
      if (text.status().code() == Code::kNotFound) continue;
      return text.status();
    }
    for (const auto& line : Lines(*text)) {
      if (auto v = ParseU64(line)) pids.insert(static_cast<pid_t>(*v));
    }
  }
  return std::vector<pid_t>(pids.begin(), pids.end());
}

Result<CgroupUsage> CgroupManager::Usage(std::string_view rel) const {
  if (!Exists(rel)) return Error(Code::kNotFound, "cgroup {} does not exist", rel);
  CgroupUsage u;
  auto read = [](const std::string& dir, const char* file) -> std::optional<std::string> {
    if (dir.empty()) return std::nullopt;
    auto text = ReadText(JoinPath(dir, file));
    if (!text.ok()) return std::nullopt;
    return std::move(*text);
  };
  const std::string cpu_dir = DirOf(rel, "cpuacct");
  const std::string mem_dir = DirOf(rel, "memory");
  if (v2_) {
    if (auto s = read(cpu_dir, "cpu.stat"))
      u.cpu_usage_ns = KeyValue(*s, "usage_usec").value_or(0) * 1000;
    if (auto s = read(mem_dir, "memory.current")) u.memory_bytes = ParseU64(*s).value_or(0);
    if (auto s = read(mem_dir, "memory.max")) u.memory_limit_bytes = ParseU64(*s).value_or(0);
    if (auto s = read(mem_dir, "memory.events")) u.oom_kills = KeyValue(*s, "oom_kill").value_or(0);
    return u;
  }
  if (auto s = read(cpu_dir, "cpuacct.usage")) u.cpu_usage_ns = ParseU64(*s).value_or(0);
  if (auto s = read(mem_dir, "memory.usage_in_bytes")) u.memory_bytes = ParseU64(*s).value_or(0);
  if (auto s = read(mem_dir, "memory.limit_in_bytes")) {
    uint64_t v = ParseU64(*s).value_or(0);
    // "Unlimited" reads as the largest page-aligned value.
    u.memory_limit_bytes = v >= (uint64_t{1} << 62) ? 0 : v;
  }
  if (auto s = read(mem_dir, "memory.oom_control")) {
    if (auto kills = KeyValue(*s, "oom_kill")) {
      u.oom_kills = *kills;
    } else if (auto fail = read(mem_dir, "memory.failcnt")) {
      u.oom_kills = ParseU64(*fail).value_or(0) > 0 ? 1 : 0;
      u.oom_kills_estimated = true;
    }
  }
  return u;
}

Status CgroupManager::KillAll(std::string_view rel, std::chrono::milliseconds timeout) const {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  if (v2_) {
    std::string kill_file = JoinPath(Dir(trees_.front(), rel), "cgroup.kill");
    if (PathExists(kill_file)) {
      auto st = WriteText(kill_file, "1");
      (void)st;  // fall back to signalling each process below
    }
  }
  auto pause = std::chrono::milliseconds(1);
  for (;;) {
    VERGE_ASSIGN_OR_RETURN(std::vector<pid_t> pids, Pids(rel));
    if (pids.empty()) return Status::Ok();
    for (pid_t p : pids) kill(p, SIGKILL);
    if (std::chrono::steady_clock::now() >= deadline) {
      return Error(Code::kDeadlineExceeded,
                   "cgroup {} still has {} processes (first: {}) after {} ms", rel, pids.size(),
                   pids.front(), timeout.count());
    }
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(50));
  }
}

Status CgroupManager::Remove(std::string_view rel, std::chrono::milliseconds timeout) const {
  if (!Owns(rel)) {
    return Error(Code::kInvalidArgument, "cgroup \"{}\" is not below \"{}\"", rel, parent_);
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  VERGE_RETURN_IF_ERROR(KillAll(rel, timeout));
  auto pause = std::chrono::milliseconds(1);
  for (const auto& t : trees_) {
    std::string dir = Dir(t, rel);
    for (;;) {
      if (rmdir(dir.c_str()) == 0 || errno == ENOENT) break;
      int e = errno;
      // EBUSY: a process was still exiting; anything else will not get better by waiting.
      if (e != EBUSY || std::chrono::steady_clock::now() >= deadline) {
        return Error(CodeOf(e), "removing cgroup {}: {}", dir, Errno(e));
      }
      auto st = KillAll(rel, std::chrono::milliseconds(0));
      (void)st;
      std::this_thread::sleep_for(pause);
      pause = std::min(pause * 2, std::chrono::milliseconds(50));
    }
  }
  return Status::Ok();
}

Result<std::vector<std::string>> CgroupManager::Children() const {
  std::set<std::string> names;
  for (const auto& t : trees_) {
    std::string dir = Dir(t, parent_);
    DIR* d = opendir(dir.c_str());
    if (d == nullptr) {
      if (errno == ENOENT) continue;
      int e = errno;
      return Error(CodeOf(e), "listing cgroup {}: {}", dir, Errno(e));
    }
    while (dirent* ent = readdir(d)) {
      std::string name = ent->d_name;
      if (ent->d_type != DT_DIR || name == "." || name == "..") continue;
      names.insert(parent_ + "/" + name);
    }
    closedir(d);
  }
  return std::vector<std::string>(names.begin(), names.end());
}

Status CgroupManager::RemoveParent() const {
  auto parts = Split(parent_, '/');
  for (const auto& t : trees_) {
    for (size_t n = parts.size(); n > 0; --n) {
      std::string rel;
      for (size_t i = 0; i < n; ++i) rel += (i ? "/" : "") + parts[i];
      std::string dir = Dir(t, rel);
      if (rmdir(dir.c_str()) != 0 && errno != ENOENT) {
        int e = errno;
        if (e == EBUSY || e == ENOTEMPTY || e == EEXIST) break;  // still in use: keep it
        return Error(CodeOf(e), "removing cgroup {}: {}", dir, Errno(e));
      }
    }
  }
  return Status::Ok();
}

}  // namespace verge::node::runtime
