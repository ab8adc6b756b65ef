// Pieces the runtimes share: an owned file descriptor, and the workload's exit record
// (DIR/exit), which the native and OCI supervisors write when the workload ends and which
// Poll reads, also from an agent that restarted since.
//
// The record is text, one `key=value` per line: `code=N` (-1: killed or unknown),
// `signal=N` (0: none), optionally `oom_kills=N` and `message=...`. Unknown keys are ignored.
// Thread-safety: plain values and functions.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "node/runtime/runtime.h"

namespace verge::node::runtime {

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      Reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { Reset(); }
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  void Reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

struct ExitRecord {
  int code = -1;
  int signal = 0;
  uint64_t oom_kills = 0;
  std::string message;
};

// DIR/exit, or nullopt when it is missing or names neither a code nor a signal.
std::optional<ExitRecord> ReadExitRecord(const std::string& dir);

// "SIGKILL", or "signal N" for one without a name.
std::string SignalName(int sig);
// Completes how an exit reads in a status: "exit code 3" or "killed by SIGTERM" when it has no
// message yet, and " (out of memory)" when the memory limit killed it.
void DescribeExit(ExitInfo& info);

}  // namespace verge::node::runtime
