#include "node/runtime/log_files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <system_error>
#include <vector>

#include "node/runtime/internal.h"

namespace verge::node::runtime {
namespace {

std::string Errno(int e) {
  return fmt::format("{} (errno {})", std::generic_category().message(e), e);
}

Status FileError(std::string_view what, const std::string& path, int e) {
  return Error(e == ENOENT ? Code::kNotFound : Code::kInternal, "{} {}: {}", what, path, Errno(e));
}

std::string Rotated(const std::string& path, int n) { return path + "." + std::to_string(n); }

// Opens a regular file without following a symbolic link; -1 and errno otherwise.
int OpenRegular(const std::string& path, int flags) {
  int fd = open(path.c_str(), flags | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return -1;
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    errno = EINVAL;
    return -1;
  }
  return fd;
}

Status WriteAll(int fd, const char* data, size_t n, const std::string& path) {
  while (n > 0) {
    ssize_t w = write(fd, data, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return FileError("writing", path, errno);
    data += w;
    n -= static_cast<size_t>(w);
  }
  return Status::Ok();
}

// Reads [from, to) of `fd` (stopping early at EOF).
Result<std::string> ReadRange(int fd, uint64_t from, uint64_t to, const std::string& path) {
  std::string out;
  if (to <= from) return out;
  out.resize(to - from);
  size_t got = 0;
  while (got < out.size()) {
    ssize_t n = pread(fd, out.data() + got, out.size() - got, static_cast<off_t>(from + got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return FileError("reading", path, errno);
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  out.resize(got);
  return out;
}

}  // namespace

Result<bool> LogRotator::MaybeRotate(const std::string& path) const {
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return false;
    return FileError("checking", path, errno);
  }
  if (static_cast<uint64_t>(st.st_size) <= options_.max_bytes) return false;
  VERGE_RETURN_IF_ERROR(Rotate(path));
  return true;
}

Status LogRotator::Rotate(const std::string& path) const {
  Fd src(OpenRegular(path, O_RDWR));
  if (src.get() < 0) return FileError("opening log", path, errno);
  if (options_.keep <= 0) {
    if (ftruncate(src.get(), 0) != 0) return FileError("truncating", path, errno);
    return Status::Ok();
  }
  for (int i = options_.keep - 1; i >= 1; --i) {
    if (rename(Rotated(path, i).c_str(), Rotated(path, i + 1).c_str()) != 0 && errno != ENOENT) {
      return FileError("renaming", Rotated(path, i), errno);
    }
  }
  const std::string tmp = path + ".rotating";
  unlink(tmp.c_str());
  Fd dst(open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0640));
  if (dst.get() < 0) return FileError("creating", tmp, errno);
  // Copy until the file stops growing, then truncate: the workload keeps appending meanwhile.
  uint64_t copied = 0;
  char buf[64 * 1024];
  for (;;) {
    ssize_t n = pread(src.get(), buf, sizeof buf, static_cast<off_t>(copied));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return FileError("reading", path, errno);
    if (n == 0) break;
    VERGE_RETURN_IF_ERROR(WriteAll(dst.get(), buf, static_cast<size_t>(n), tmp));
    copied += static_cast<uint64_t>(n);
  }
  if (ftruncate(src.get(), 0) != 0) return FileError("truncating", path, errno);
  if (rename(tmp.c_str(), Rotated(path, 1).c_str()) != 0) {
    return FileError("renaming", tmp, errno);
  }
  return Status::Ok();
}

Result<std::string> ReadTail(const std::string& path, size_t max_lines, int keep,
                             size_t max_bytes) {
  if (max_lines == 0) {
    for (int i = 0; i <= std::max(keep, 0); ++i) {
      struct stat st {};
      if (lstat((i == 0 ? path : Rotated(path, i)).c_str(), &st) == 0) return std::string();
    }
    return Error(Code::kNotFound, "log {} does not exist", path);
  }
  // Chunks of the stream "path.keep … path.1 path", collected from its end backwards.
  std::vector<std::string> chunks;
  size_t newlines = 0;
  size_t total = 0;
  bool any_file = false;
  bool at_end = true;  // the next byte seen is the stream's last
  bool trailing_newline = false;
  bool enough = false;
  for (int i = 0; i <= std::max(keep, 0) && !enough; ++i) {
    const std::string file = i == 0 ? path : Rotated(path, i);
    Fd fd(OpenRegular(file, O_RDONLY));
    if (fd.get() < 0) {
      if (errno == ENOENT) continue;
      return FileError("opening log", file, errno);
    }
    any_file = true;
    struct stat st {};
    if (fstat(fd.get(), &st) != 0) return FileError("reading", file, errno);
    uint64_t end = static_cast<uint64_t>(st.st_size);
    while (end > 0 && !enough) {
      constexpr uint64_t kChunk = uint64_t{64} << 10;
      uint64_t begin = end > kChunk ? end - kChunk : 0;
      VERGE_ASSIGN_OR_RETURN(std::string chunk, ReadRange(fd.get(), begin, end, file));
      if (chunk.empty()) break;
      if (at_end) {
        trailing_newline = chunk.back() == '\n';
        at_end = false;
      }
      newlines += static_cast<size_t>(std::count(chunk.begin(), chunk.end(), '\n'));
      total += chunk.size();
      chunks.push_back(std::move(chunk));
      // One newline more than lines wanted marks where the first wanted line starts.
      enough = newlines >= max_lines + (trailing_newline ? 1 : 0) || total >= max_bytes;
      end = begin;
    }
  }
  if (!any_file) return Error(Code::kNotFound, "log {} does not exist", path);
  std::string data;
  data.reserve(total);
  for (auto it = chunks.rbegin(); it != chunks.rend(); ++it) data += *it;
  size_t scan = data.size();
  if (trailing_newline && scan > 0) --scan;
  size_t start = 0;
  size_t seen = 0;
  for (size_t i = scan; i > 0; --i) {
    if (data[i - 1] == '\n' && ++seen == max_lines) {
      start = i;
      break;
    }
  }
  if (data.size() - start > max_bytes) start = data.size() - max_bytes;
  return data.substr(start);
}

Result<std::string> LogFollower::Read(size_t max_bytes) {
  const std::string rotated = Rotated(path_, 1);
  auto inode_of = [](const std::string& p) -> ino_t {
    struct stat st {};
    return lstat(p.c_str(), &st) == 0 ? st.st_ino : 0;
  };
  for (int attempt = 0; attempt < 3; ++attempt) {
    std::string out;
    ino_t rotated_now = inode_of(rotated);
    Fd fd(OpenRegular(path_, O_RDONLY));
    if (fd.get() < 0) {
      if (errno == ENOENT) return std::string();
      return FileError("opening log", path_, errno);
    }
    struct stat st {};
    if (fstat(fd.get(), &st) != 0) return FileError("reading", path_, errno);
    if (!started_) {
      started_ = true;
      inode_ = st.st_ino;
      rotated_inode_ = rotated_now;
    }
    uint64_t offset = offset_;
    if (st.st_ino != inode_) {
      // Replaced: if the old file became path.1 (rename rotation), finish it first.
      if (rotated_now == inode_ && rotated_now != 0) {
        Fd old(OpenRegular(rotated, O_RDONLY));
        struct stat ost {};
        if (old.get() >= 0 && fstat(old.get(), &ost) == 0) {
          VERGE_ASSIGN_OR_RETURN(
              out, ReadRange(old.get(), offset, static_cast<uint64_t>(ost.st_size), rotated));
        }
      }
      offset = 0;
    } else if (rotated_now != rotated_inode_ || static_cast<uint64_t>(st.st_size) < offset) {
      // Copied to path.1 and truncated: the bytes after `offset` are in the copy.
      if (rotated_now != 0) {
        Fd old(OpenRegular(rotated, O_RDONLY));
        struct stat ost {};
        if (old.get() >= 0 && fstat(old.get(), &ost) == 0 &&
            static_cast<uint64_t>(ost.st_size) >= offset) {
          VERGE_ASSIGN_OR_RETURN(
              out, ReadRange(old.get(), offset, static_cast<uint64_t>(ost.st_size), rotated));
        }
      }
      offset = 0;
    }
    uint64_t size = static_cast<uint64_t>(st.st_size);
    uint64_t to = std::min<uint64_t>(size, offset + max_bytes);
    VERGE_ASSIGN_OR_RETURN(std::string fresh, ReadRange(fd.get(), offset, to, path_));
    // A rotation while we read would make `fresh` come from the truncated file: read again.
    if (inode_of(rotated) != rotated_now) continue;
    inode_ = st.st_ino;
    rotated_inode_ = rotated_now;
    offset_ = offset + fresh.size();
    return out + fresh;
  }
  return std::string();  // rotating faster than we read; the next call catches up
}

}  // namespace verge::node::runtime
