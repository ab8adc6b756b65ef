// The workload's log file: rotation, tail and follow.
//
// A workload writes stdout and stderr to DIR/log/output.log through a descriptor it opened
// itself with O_APPEND, so its output keeps landing in the file while the agent is down or
// restarting. Rotation therefore cannot rename the file away (the workload would keep writing
// to the renamed one): LogRotator copies output.log to output.log.1 (after shifting .1 → .2 …
// up to `keep` older files) and then truncates output.log in place; O_APPEND writers continue
// at the new end. Bytes written between the copy and the truncation are lost; the copy is
// repeated until the file stops growing, so that window is a few microseconds.
//
// The workload's user owns its directory, so every open here refuses symbolic links
// (O_NOFOLLOW) and non-regular files: a workload cannot make the root agent copy or truncate
// something else.
//
// ReadTail serves `vergectl logs --tail N` over the rotated files as one stream (a line split
// by a rotation is returned whole); LogFollower serves `--follow`.
//
// Thread-safety: LogRotator and ReadTail are stateless and thread-safe (rotate one file from one
// thread at a time); a LogFollower belongs to one thread.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "common/status.h"

namespace verge::node::runtime {

struct LogRotation {
  uint64_t max_bytes = uint64_t{10} << 20;
  int keep = 3;  // older files kept: output.log.1 (newest) … output.log.<keep>
};

class LogRotator {
 public:
  explicit LogRotator(LogRotation options = {}) : options_(options) {}

  // Rotates `path` if it is larger than max_bytes; returns whether it did. A missing file is
  // not an error (the workload has not written yet).
  Result<bool> MaybeRotate(const std::string& path) const;
  // Rotates `path` now.
  Status Rotate(const std::string& path) const;

 private:
  LogRotation options_;
};

// The last `max_lines` lines of the log at `path`, reading older rotated files (`path`.1 …
// `path`.`keep`) as far as needed; at most `max_bytes` of text. kNotFound if neither `path` nor
// a rotated file exists.
Result<std::string> ReadTail(const std::string& path, size_t max_lines, int keep = 3,
                             size_t max_bytes = size_t{16} << 20);

// Reads what is appended to a log from an offset on, across copy-truncate rotations: when the
// file was truncated (or `path`.1 was replaced since the last read), the rest of the old
// content is read from `path`.1 first, then `path` from its start. A file replaced by another
// (a new inode) is read from its start.
class LogFollower {
 public:
  // `offset`: where to start in `path`, e.g. its size for "only what comes next".
  LogFollower(std::string path, uint64_t offset) : path_(std::move(path)), offset_(offset) {}

  // What was appended since the last call (empty if nothing); reads at most `max_bytes` from
  // `path` per call (plus the rest of `path`.1 after a rotation). Missing file: empty.
  Result<std::string> Read(size_t max_bytes = size_t{1} << 20);
  uint64_t offset() const { return offset_; }

 private:
  std::string path_;
  uint64_t offset_;
  bool started_ = false;
  ino_t inode_ = 0;
  ino_t rotated_inode_ = 0;  // of path_.1 when last seen (0: none)
};

}  // namespace verge::node::runtime
