// What a machine has and uses, read from /proc, /sys, /dev and statfs, for node reports and
// server certificates. Thread-safety: functions are thread-safe; UsageSampler is not (one
// owner).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace verge {

// Capacity or usage of a machine; the cloud's registry keeps the same struct per node.
struct MachineResources {
  uint64_t cpu_millicores = 0;
  uint64_t memory_mb = 0;
  uint64_t storage_gb = 0;
  uint32_t gpu = 0;
  uint32_t npu = 0;
  bool operator==(const MachineResources&) const = default;
};

// Capacity of this machine; storage is that of the filesystem holding `data_dir`.
MachineResources ReadCapacity(const std::string& data_dir);
// Accelerators found by their device nodes: "gpu" (NVIDIA, DRM render nodes of discrete
// cards are not counted), "npu" (Coral, Ascend, Hailo), "fpga" (Xilinx XRT, Intel FPGA).
std::vector<std::string> DetectCapabilities();

// Samples CPU use between calls from /proc/stat; memory and storage use at each call.
class UsageSampler {
 public:
  explicit UsageSampler(std::string data_dir) : data_dir_(std::move(data_dir)) {}
  MachineResources Sample();

 private:
  std::string data_dir_;
  uint64_t last_total_ = 0;
  uint64_t last_idle_ = 0;
};

std::vector<std::string> LocalAddresses(bool include_loopback);
std::string Hostname();
std::string OsName();  // PRETTY_NAME of /etc/os-release, or "linux"
std::string Arch();    // uname -m

}  // namespace verge
