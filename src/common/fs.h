// File helpers for state that must survive crashes: atomic replace (write, fsync, rename,
// fsync dir), and an exclusive lock on a data directory so two daemons never share one.
// Thread-safety: functions are thread-safe; DirLock is owned by one thread.
#pragma once

#include <string>

#include "common/status.h"

namespace verge {

Result<std::string> ReadFile(const std::string& path);
// Replaces `path` atomically with `data`, file mode `mode`.
Status WriteFileAtomic(const std::string& path, std::string_view data, int mode = 0644);
// Creates `path` and missing parents; a newly created `path` gets mode 0700 (data dirs hold
// keys).
Status MakeDirs(const std::string& path);
bool FileExists(const std::string& path);

// Holds an exclusive flock on DIR/LOCK for its lifetime.
class DirLock {
 public:
  static Result<DirLock> Acquire(const std::string& dir);
  DirLock(DirLock&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  DirLock& operator=(DirLock&&) = delete;
  DirLock(const DirLock&) = delete;
  ~DirLock();

 private:
  explicit DirLock(int fd) : fd_(fd) {}
  int fd_;
};

}  // namespace verge
