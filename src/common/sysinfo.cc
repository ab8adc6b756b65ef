#include "common/sysinfo.h"

#include <arpa/inet.h>
#include <glob.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <sys/statvfs.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <thread>

namespace verge {
namespace {

uint64_t MeminfoKb(const std::string& key) {
  std::ifstream in("/proc/meminfo");
  std::string k;
  uint64_t v = 0;
  std::string unit;
  while (in >> k >> v) {
    std::getline(in, unit);
    if (k == key + ":") return v;
  }
  return 0;
}

size_t CountGlob(const char* pattern) {
  glob_t g{};
  size_t n = 0;
  if (glob(pattern, 0, nullptr, &g) == 0) n = g.gl_pathc;
  globfree(&g);
  return n;
}

}  // namespace

MachineResources ReadCapacity(const std::string& data_dir) {
  MachineResources r;
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  r.cpu_millicores = static_cast<uint64_t>(std::max(1L, cpus)) * 1000;
  r.memory_mb = MeminfoKb("MemTotal") / 1024;
  struct statvfs vfs {};
  if (statvfs(data_dir.c_str(), &vfs) == 0) {
    r.storage_gb = static_cast<uint64_t>(vfs.f_blocks) * vfs.f_frsize / (1024ULL * 1024 * 1024);
  }
  r.gpu = static_cast<uint32_t>(CountGlob("/dev/nvidia[0-9]*"));
  r.npu = static_cast<uint32_t>(CountGlob("/dev/apex_[0-9]*") + CountGlob("/dev/davinci[0-9]*") +
                                CountGlob("/dev/hailo[0-9]*"));
  return r;
}

std::vector<std::string> DetectCapabilities() {
  std::vector<std::string> caps;
  if (CountGlob("/dev/nvidia[0-9]*")) caps.emplace_back("gpu");
  if (CountGlob("/dev/apex_[0-9]*") + CountGlob("/dev/davinci[0-9]*") +
      CountGlob("/dev/hailo[0-9]*")) {
    caps.emplace_back("npu");
  }
  if (CountGlob("/dev/xclmgmt*") + CountGlob("/dev/intel-fpga-port.*")) caps.emplace_back("fpga");
  return caps;
}

MachineResources UsageSampler::Sample() {
  MachineResources r;
  std::ifstream stat("/proc/stat");
  std::string cpu;
  uint64_t user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
  stat >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal;
  uint64_t total = user + nice + system + idle + iowait + irq + softirq + steal;
  uint64_t idle_all = idle + iowait;
  long cpus = std::max(1L, sysconf(_SC_NPROCESSORS_ONLN));
  if (last_total_ != 0 && total > last_total_) {
    double busy =
        1.0 - static_cast<double>(idle_all - last_idle_) / static_cast<double>(total - last_total_);
    r.cpu_millicores =
        static_cast<uint64_t>(std::clamp(busy, 0.0, 1.0) * 1000.0 * static_cast<double>(cpus));
  }
  last_total_ = total;
  last_idle_ = idle_all;
  uint64_t mem_total = MeminfoKb("MemTotal"), mem_avail = MeminfoKb("MemAvailable");
  r.memory_mb = (mem_total > mem_avail ? mem_total - mem_avail : 0) / 1024;
  struct statvfs vfs {};
  if (statvfs(data_dir_.c_str(), &vfs) == 0) {
    r.storage_gb =
        static_cast<uint64_t>(vfs.f_blocks - vfs.f_bfree) * vfs.f_frsize / (1024ULL * 1024 * 1024);
  }
  return r;
}

std::vector<std::string> LocalAddresses(bool include_loopback) {
  std::vector<std::string> out;
  if (include_loopback) out = {"127.0.0.1", "::1"};
  ifaddrs* ifs = nullptr;
  if (getifaddrs(&ifs) != 0) return out;
  for (ifaddrs* i = ifs; i; i = i->ifa_next) {
    if (!i->ifa_addr || !(i->ifa_flags & IFF_UP)) continue;
    if (!include_loopback && (i->ifa_flags & IFF_LOOPBACK)) continue;
    char buf[INET6_ADDRSTRLEN] = {0};
    if (i->ifa_addr->sa_family == AF_INET) {
      inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr, buf, sizeof buf);
    } else if (i->ifa_addr->sa_family == AF_INET6) {
      auto* a6 = reinterpret_cast<sockaddr_in6*>(i->ifa_addr);
      if (IN6_IS_ADDR_LINKLOCAL(&a6->sin6_addr)) continue;
      inet_ntop(AF_INET6, &a6->sin6_addr, buf, sizeof buf);
    } else {
      continue;
    }
    if (std::find(out.begin(), out.end(), buf) == out.end()) out.emplace_back(buf);
  }
  freeifaddrs(ifs);
  return out;
}

std::string Hostname() {
  char host[256] = {0};
  if (gethostname(host, sizeof host - 1) != 0) return "";
  return host;
}

std::string OsName() {
  std::ifstream in("/etc/os-release");
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with("PRETTY_NAME=")) {
      std::string v = line.substr(12);
      if (v.size() >= 2 && v.front() == '"') v = v.substr(1, v.size() - 2);
      return v;
    }
  }
  return "linux";
}

std::string Arch() {
  struct utsname u {};
  if (uname(&u) != 0) return "";
  return u.machine;
}

}  // namespace verge
