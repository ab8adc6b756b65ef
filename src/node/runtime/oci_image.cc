#include "node/runtime/oci_image.h"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/ranges.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstring>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string_view>
#include <utility>

#include "common/fs.h"
#include "node/runtime/internal.h"

namespace verge::node::runtime {
namespace {

using nlohmann::json;

constexpr size_t kBlock = 512;
constexpr size_t kMaxPathBytes = 4096;
constexpr size_t kMaxPathComponents = 256;
constexpr size_t kMaxResolveSteps = 4096;
constexpr int kMaxSymlinks = 40;
constexpr size_t kMaxMetaBytes = 1 << 20;  // PAX headers and GNU long names
constexpr size_t kMaxJsonBytes = 4 << 20;  // manifests, indexes, configs
constexpr int kMaxRemoveDepth = 1024;
constexpr int kMaxIndexDepth = 4;

Status Errno(Code code, std::string_view what) {
  return Error(code, "{}: {}", what, std::strerror(errno));
}

Status ErrnoStatus(std::string_view what) {
  int e = errno;
  Code code = Code::kInternal;
  if (e == ENOENT) code = Code::kNotFound;
  if (e == EACCES || e == EPERM) code = Code::kPermissionDenied;
  if (e == ENOSPC || e == EDQUOT) code = Code::kResourceExhausted;
  return Error(code, "{}: {}", what, std::strerror(e));
}

uint64_t SaturatingAdd(uint64_t a, uint64_t b) { return a > UINT64_MAX - b ? UINT64_MAX : a + b; }

class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new()) {
    if (ctx_ != nullptr) EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr);
  }
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  ~Sha256() { EVP_MD_CTX_free(ctx_); }
  void Update(const void* data, size_t n) {
    if (ctx_ != nullptr) EVP_DigestUpdate(ctx_, data, n);
  }
  std::string HexFinal() {
    std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
    unsigned int len = 0;
    if (ctx_ == nullptr || EVP_DigestFinal_ex(ctx_, md.data(), &len) != 1) return "";
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    for (unsigned int i = 0; i < len; ++i) {
      out.push_back(kHex[md[i] >> 4]);
      out.push_back(kHex[md[i] & 0xf]);
    }
    return out;
  }

 private:
  EVP_MD_CTX* ctx_;
};

bool IsSha256Hex(std::string_view s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

// ---------------------------------------------------------------------------------------------
// Byte streams: a range of the archive file, decompressors, and a hashing, bounded pass-through.

class Stream {
 public:
  virtual ~Stream() = default;
  // Up to n bytes; 0 at the end of the stream.
  virtual Result<size_t> Read(char* buf, size_t n) = 0;
};

class FileRange final : public Stream {
 public:
  FileRange(int fd, uint64_t offset, uint64_t size) : fd_(fd), offset_(offset), left_(size) {}
  Result<size_t> Read(char* buf, size_t n) override {
    size_t want = static_cast<size_t>(std::min<uint64_t>(n, left_));
    if (want == 0) return size_t{0};
    for (;;) {
      ssize_t r = ::pread(fd_, buf, want, static_cast<off_t>(offset_));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return Errno(Code::kInternal, "reading the image archive");
      if (r == 0) return Error(Code::kDataLoss, "the image archive is truncated");
      offset_ += static_cast<uint64_t>(r);
      left_ -= static_cast<uint64_t>(r);
      return static_cast<size_t>(r);
    }
  }

 private:
  int fd_;
  uint64_t offset_;
  uint64_t left_;
};

class GzipStream final : public Stream {
 public:
  explicit GzipStream(Stream& in) : in_(in) {}
  GzipStream(const GzipStream&) = delete;
  GzipStream& operator=(const GzipStream&) = delete;
  ~GzipStream() override {
    if (init_) inflateEnd(&z_);
  }

  Result<size_t> Read(char* buf, size_t n) override {
    if (!init_) {
      if (inflateInit2(&z_, 15 + 16) != Z_OK) return Error(Code::kInternal, "gzip: cannot init");
      init_ = true;
    }
    n = std::min<size_t>(n, UINT_MAX);
    for (;;) {
      if (done_) return size_t{0};
      if (z_.avail_in == 0) {
        VERGE_ASSIGN_OR_RETURN(size_t got, in_.Read(in_buf_.data(), in_buf_.size()));
        if (got == 0) {
          if (in_member_) return Error(Code::kInvalidArgument, "gzip stream is truncated");
          done_ = true;
          return size_t{0};
        }
        z_.next_in = reinterpret_cast<Bytef*>(in_buf_.data());
        z_.avail_in = static_cast<uInt>(got);
      }
      if (!in_member_) {
        // Another member may follow (pigz, concatenated files); anything else is padding.
        if (z_.next_in[0] != 0x1f) {
          done_ = true;
          return size_t{0};
        }
        inflateReset(&z_);
        in_member_ = true;
      }
      z_.next_out = reinterpret_cast<Bytef*>(buf);
      z_.avail_out = static_cast<uInt>(n);
      int r = inflate(&z_, Z_NO_FLUSH);
      size_t produced = n - z_.avail_out;
      if (r == Z_STREAM_END) {
        in_member_ = false;
      } else if (r != Z_OK && !(r == Z_BUF_ERROR && z_.avail_in == 0)) {
        return Error(Code::kInvalidArgument, "gzip: {}",
                     z_.msg != nullptr ? z_.msg : "corrupt data");
      }
      if (produced > 0) return produced;
    }
  }

 private:
  Stream& in_;
  z_stream z_{};
  std::array<char, 65536> in_buf_{};
  bool init_ = false;
  bool in_member_ = true;
  bool done_ = false;
};

class ZstdStream final : public Stream {
 public:
  explicit ZstdStream(Stream& in) : in_(in), ctx_(ZSTD_createDCtx()) {}
  ZstdStream(const ZstdStream&) = delete;
  ZstdStream& operator=(const ZstdStream&) = delete;
  ~ZstdStream() override { ZSTD_freeDCtx(ctx_); }

  Result<size_t> Read(char* buf, size_t n) override {
    if (ctx_ == nullptr) return Error(Code::kResourceExhausted, "zstd: out of memory");
    for (;;) {
      if (done_) return size_t{0};
      if (in_pos_.pos == in_pos_.size && !eof_) {
        VERGE_ASSIGN_OR_RETURN(size_t got, in_.Read(in_buf_.data(), in_buf_.size()));
        if (got == 0) eof_ = true;
        in_pos_ = ZSTD_inBuffer{in_buf_.data(), got, 0};
      }
      bool input_left = in_pos_.pos < in_pos_.size;
      if (eof_ && !input_left && frame_done_) {
        done_ = true;
        return size_t{0};
      }
      ZSTD_outBuffer out{buf, n, 0};
      size_t r = ZSTD_decompressStream(ctx_, &out, &in_pos_);
      if (ZSTD_isError(r)) return Error(Code::kInvalidArgument, "zstd: {}", ZSTD_getErrorName(r));
      // 0: a frame ended and is flushed; another may follow (concatenated frames).
      frame_done_ = r == 0;
      if (out.pos > 0) return out.pos;
      if (eof_ && in_pos_.pos == in_pos_.size) {
        if (!frame_done_) return Error(Code::kInvalidArgument, "zstd stream is truncated");
        done_ = true;
      }
    }
  }

 private:
  Stream& in_;
  ZSTD_DCtx* ctx_;
  std::array<char, 65536> in_buf_{};
  ZSTD_inBuffer in_pos_{nullptr, 0, 0};
  bool frame_done_ = false;
  bool eof_ = false;
  bool done_ = false;
};

// Hashes what passes through and refuses more than `*budget` bytes in total (shared by the
// layers of one image: a decompression bomb made of tar padding must stop too).
class HashingStream final : public Stream {
 public:
  HashingStream(Stream& in, uint64_t* budget) : in_(in), budget_(budget) {}
  Result<size_t> Read(char* buf, size_t n) override {
    VERGE_ASSIGN_OR_RETURN(size_t got, in_.Read(buf, n));
    if (got > *budget_)
      return Error(Code::kResourceExhausted, "the image's layers decompress to too many bytes");
    *budget_ -= got;
    sha_.Update(buf, got);
    return got;
  }
  Status Drain() {
    std::array<char, 65536> buf{};
    for (;;) {
      VERGE_ASSIGN_OR_RETURN(size_t got, Read(buf.data(), buf.size()));
      if (got == 0) return Status::Ok();
    }
  }
  std::string HexFinal() { return sha_.HexFinal(); }

 private:
  Stream& in_;
  uint64_t* budget_;
  Sha256 sha_;
};

enum class Compression { kNone, kGzip, kZstd, kBzip2, kXz };

Compression DetectCompression(const unsigned char* m, size_t n) {
  if (n >= 2 && m[0] == 0x1f && m[1] == 0x8b) return Compression::kGzip;
  if (n >= 4 && m[0] == 0x28 && m[1] == 0xb5 && m[2] == 0x2f && m[3] == 0xfd)
    return Compression::kZstd;
  if (n >= 3 && m[0] == 'B' && m[1] == 'Z' && m[2] == 'h') return Compression::kBzip2;
  if (n >= 6 && m[0] == 0xfd && std::memcmp(m + 1, "7zXZ", 4) == 0 && m[5] == 0)
    return Compression::kXz;
  return Compression::kNone;
}

Result<Compression> PeekCompression(int fd, uint64_t offset, uint64_t size) {
  std::array<unsigned char, 6> magic{};
  size_t want = static_cast<size_t>(std::min<uint64_t>(magic.size(), size));
  ssize_t r = ::pread(fd, magic.data(), want, static_cast<off_t>(offset));
  if (r < 0) return Errno(Code::kInternal, "reading the image archive");
  return DetectCompression(magic.data(), static_cast<size_t>(r));
}

// ---------------------------------------------------------------------------------------------
// Tar: ustar, GNU (long names 'L'/'K', base-256 numbers) and PAX ('x' path, linkpath, size,
// uid, gid, mtime).

struct TarEntry {
  std::string path;
  std::string linkpath;
  char type = '0';
  uint64_t size = 0;
  uint32_t mode = 0;
  uint64_t uid = 0;
  uint64_t gid = 0;
  int64_t mtime = 0;
};

std::string FieldString(const char* f, size_t len) {
  return {f, static_cast<size_t>(std::find(f, f + len, '\0') - f)};
}

Result<uint64_t> ParseTarNumber(const char* f, size_t len, std::string_view what) {
  const auto* u = reinterpret_cast<const unsigned char*>(f);
  if ((u[0] & 0x80) != 0) {
    // GNU base-256: big-endian, the top bit of the first byte marks the format. Negative
    // values (only ever seen in mtime) are not accepted.
    if ((u[0] & 0x40) != 0) return Error(Code::kInvalidArgument, "negative tar {}", what);
    uint64_t v = u[0] & 0x3f;
    for (size_t i = 1; i < len; ++i) {
      if ((v >> 56) != 0) return Error(Code::kInvalidArgument, "tar {} overflows", what);
      v = (v << 8) | u[i];
    }
    return v;
  }
  size_t i = 0;
  while (i < len && (f[i] == ' ' || f[i] == '\0')) ++i;
  uint64_t v = 0;
  for (; i < len && f[i] != ' ' && f[i] != '\0'; ++i) {
    if (f[i] < '0' || f[i] > '7') return Error(Code::kInvalidArgument, "bad tar {} field", what);
    if ((v >> 61) != 0) return Error(Code::kInvalidArgument, "tar {} overflows", what);
    v = (v << 3) | static_cast<uint64_t>(f[i] - '0');
  }
  return v;
}

Result<uint64_t> ParseDecimal(std::string_view s, std::string_view what) {
  if (s.empty() || s.size() > 19) return Error(Code::kInvalidArgument, "bad {} \"{}\"", what, s);
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return Error(Code::kInvalidArgument, "bad {} \"{}\"", what, s);
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  return v;
}

struct PaxOverrides {
  std::optional<std::string> path;
  std::optional<std::string> linkpath;
  std::optional<uint64_t> size;
  std::optional<uint64_t> uid;
  std::optional<uint64_t> gid;
  std::optional<int64_t> mtime;
};

Status ParsePax(std::string_view data, PaxOverrides* pax) {
  size_t i = 0;
  while (i < data.size()) {
    size_t sp = data.find(' ', i);
    if (sp == std::string_view::npos || sp - i > 19)
      return Error(Code::kInvalidArgument, "malformed PAX header");
    VERGE_ASSIGN_OR_RETURN(uint64_t len, ParseDecimal(data.substr(i, sp - i), "PAX length"));
    if (len < sp - i + 3 || len > data.size() - i || data[i + len - 1] != '\n')
      return Error(Code::kInvalidArgument, "malformed PAX record");
    std::string_view rec = data.substr(sp + 1, i + len - 1 - (sp + 1));
    i += len;
    size_t eq = rec.find('=');
    if (eq == std::string_view::npos) return Error(Code::kInvalidArgument, "malformed PAX record");
    std::string_view key = rec.substr(0, eq);
    std::string_view value = rec.substr(eq + 1);
    if (key == "path") {
      pax->path = std::string(value);
    } else if (key == "linkpath") {
      pax->linkpath = std::string(value);
    } else if (key == "size") {
      VERGE_ASSIGN_OR_RETURN(pax->size, ParseDecimal(value, "PAX size"));
    } else if (key == "uid") {
      VERGE_ASSIGN_OR_RETURN(pax->uid, ParseDecimal(value, "PAX uid"));
    } else if (key == "gid") {
      VERGE_ASSIGN_OR_RETURN(pax->gid, ParseDecimal(value, "PAX gid"));
    } else if (key == "mtime") {
      // Seconds, possibly with a fraction; negative times become the epoch.
      std::string_view secs = value.substr(0, value.find('.'));
      auto parsed = ParseDecimal(secs, "PAX mtime");
      pax->mtime = parsed.ok() ? static_cast<int64_t>(std::min<uint64_t>(*parsed, INT64_MAX)) : 0;
    }
  }
  return Status::Ok();
}

// Types whose header is all there is (no data follows, whatever the size field says).
bool HeaderOnly(char type) { return type >= '1' && type <= '6'; }

class TarReader {
 public:
  explicit TarReader(Stream& in) : in_(in) {}

  // The next entry, or nullopt at the end of the archive.
  Result<std::optional<TarEntry>> Next() {
    VERGE_RETURN_IF_ERROR(Skip(left_ + padding_));
    left_ = padding_ = 0;
    if (end_) return std::optional<TarEntry>();
    std::optional<std::string> long_name;
    std::optional<std::string> long_link;
    PaxOverrides pax;
    for (int meta = 0;; ++meta) {
      if (meta > 8) return Error(Code::kInvalidArgument, "too many tar extension headers in a row");
      std::array<char, kBlock> h{};
      VERGE_ASSIGN_OR_RETURN(bool got, ReadBlock(h.data()));
      if (!got || std::all_of(h.begin(), h.end(), [](char c) { return c == '\0'; })) {
        end_ = true;
        if (meta > 0) return Error(Code::kInvalidArgument, "tar extension header without entry");
        return std::optional<TarEntry>();
      }
      VERGE_RETURN_IF_ERROR(VerifyChecksum(h.data()));
      char type = h[156];
      VERGE_ASSIGN_OR_RETURN(uint64_t size, ParseTarNumber(&h[124], 12, "size"));
      if (type == 'L' || type == 'K' || type == 'x' || type == 'g') {
        if (size > kMaxMetaBytes)
          return Error(Code::kInvalidArgument, "tar extension header of {} bytes", size);
        std::string data(size, '\0');
        VERGE_RETURN_IF_ERROR(ReadExact(data.data(), data.size()));
        VERGE_RETURN_IF_ERROR(Skip((kBlock - size % kBlock) % kBlock));
        if (type == 'L') long_name = data.substr(0, data.find('\0'));
        if (type == 'K') long_link = data.substr(0, data.find('\0'));
        if (type == 'x') VERGE_RETURN_IF_ERROR(ParsePax(data, &pax));
        continue;  // 'g' (global PAX) carries nothing an image needs
      }
      TarEntry e;
      e.type = type == '\0' ? '0' : type;
      e.path = FieldString(&h[0], 100);
      // POSIX ustar ("ustar\0" "00") splits long names into prefix + name; GNU ("ustar  \0")
      // uses that space for other things.
      if (std::memcmp(&h[257], "ustar\0", 6) == 0) {
        std::string prefix = FieldString(&h[345], 155);
        if (!prefix.empty()) e.path = prefix + "/" + e.path;
      }
      e.linkpath = FieldString(&h[157], 100);
      VERGE_ASSIGN_OR_RETURN(uint64_t mode, ParseTarNumber(&h[100], 8, "mode"));
      e.mode = static_cast<uint32_t>(mode & 07777);
      VERGE_ASSIGN_OR_RETURN(e.uid, ParseTarNumber(&h[108], 8, "uid"));
      VERGE_ASSIGN_OR_RETURN(e.gid, ParseTarNumber(&h[116], 8, "gid"));
      auto mtime = ParseTarNumber(&h[136], 12, "mtime");
      e.mtime = mtime.ok() ? static_cast<int64_t>(std::min<uint64_t>(*mtime, INT64_MAX)) : 0;
      e.size = size;
      if (long_name) e.path = *long_name;
      if (long_link) e.linkpath = *long_link;
      if (pax.path) e.path = *pax.path;
      if (pax.linkpath) e.linkpath = *pax.linkpath;
      if (pax.size) e.size = *pax.size;
      if (pax.uid) e.uid = *pax.uid;
      if (pax.gid) e.gid = *pax.gid;
      if (pax.mtime) e.mtime = *pax.mtime;
      if (HeaderOnly(e.type)) e.size = 0;
      left_ = e.size;
      padding_ = (kBlock - e.size % kBlock) % kBlock;
      data_offset_ = pos_;
      return std::optional<TarEntry>(std::move(e));
    }
  }

  // The current entry's data; 0 once all of it was read.
  Result<size_t> ReadData(char* buf, size_t n) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(n, left_));
    if (want == 0) return size_t{0};
    VERGE_ASSIGN_OR_RETURN(size_t got, in_.Read(buf, want));
    if (got == 0) return Error(Code::kInvalidArgument, "tar entry data is truncated");
    left_ -= got;
    pos_ += got;
    return got;
  }

  // Offset of the current entry's data in the stream.
  uint64_t data_offset() const { return data_offset_; }

 private:
  static Status VerifyChecksum(const char* h) {
    VERGE_ASSIGN_OR_RETURN(uint64_t stored, ParseTarNumber(h + 148, 8, "checksum"));
    uint64_t unsigned_sum = 0;
    int64_t signed_sum = 0;
    for (size_t i = 0; i < kBlock; ++i) {
      bool in_field = i >= 148 && i < 156;
      unsigned_sum += in_field ? ' ' : static_cast<unsigned char>(h[i]);
      signed_sum += in_field ? ' ' : static_cast<signed char>(h[i]);
    }
    if (stored != unsigned_sum && static_cast<int64_t>(stored) != signed_sum)
      return Error(Code::kInvalidArgument, "tar header checksum mismatch (not a tar archive?)");
    return Status::Ok();
  }

  Result<bool> ReadBlock(char* block) {
    size_t have = 0;
    while (have < kBlock) {
      VERGE_ASSIGN_OR_RETURN(size_t got, in_.Read(block + have, kBlock - have));
      if (got == 0) {
        if (have == 0) return false;  // no end-of-archive marker: accepted, as GNU tar does
        return Error(Code::kInvalidArgument, "tar archive is truncated");
      }
      have += got;
      pos_ += got;
    }
    return true;
  }

  Status ReadExact(char* buf, size_t n) {
    while (n > 0) {
      VERGE_ASSIGN_OR_RETURN(size_t got, in_.Read(buf, n));
      if (got == 0) return Error(Code::kInvalidArgument, "tar archive is truncated");
      buf += got;
      n -= got;
      pos_ += got;
    }
    return Status::Ok();
  }

  Status Skip(uint64_t n) {
    std::array<char, 65536> buf{};
    while (n > 0) {
      VERGE_ASSIGN_OR_RETURN(
          size_t got, in_.Read(buf.data(), static_cast<size_t>(std::min<uint64_t>(n, buf.size()))));
      if (got == 0) return Error(Code::kInvalidArgument, "tar archive is truncated");
      n -= got;
      pos_ += got;
    }
    return Status::Ok();
  }

  Stream& in_;
  uint64_t pos_ = 0;
  uint64_t left_ = 0;
  uint64_t padding_ = 0;
  uint64_t data_offset_ = 0;
  bool end_ = false;
};

// ---------------------------------------------------------------------------------------------
// Paths inside the root filesystem.

// Splits an archive path into its components; refuses absolute paths and "..".
Result<std::vector<std::string>> SplitArchivePath(std::string_view p) {
  if (p.size() > kMaxPathBytes) return Error(Code::kInvalidArgument, "path is too long");
  if (p.find('\0') != std::string_view::npos)
    return Error(Code::kInvalidArgument, "path contains a NUL byte");
  if (!p.empty() && p[0] == '/') return Error(Code::kInvalidArgument, "absolute path");
  std::vector<std::string> out;
  size_t i = 0;
  while (i <= p.size()) {
    size_t j = p.find('/', i);
    if (j == std::string_view::npos) j = p.size();
    std::string_view c = p.substr(i, j - i);
    if (c == "..") return Error(Code::kInvalidArgument, "path contains \"..\"");
    if (!c.empty() && c != ".") out.emplace_back(c);
    i = j + 1;
  }
  if (out.size() > kMaxPathComponents) return Error(Code::kInvalidArgument, "path is too deep");
  return out;
}

std::string JoinPath(const std::vector<std::string>& comps, size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    if (i > 0) out += '/';
    out += comps[i];
  }
  return out;
}

// Resolves paths inside a root filesystem the way the kernel would if the root were "/":
// symlinks are followed but can never lead out ("/x" and ".." stop at the root), every step
// is an openat() relative to a directory already inside, so nothing outside is ever touched.
class Root {
 public:
  explicit Root(int fd) : fd_(fd) {}

  // Opens (O_PATH) what the first `n` components name. Missing directories are created when
  // `create_dirs`. The final component may be a non-directory only when `final_may_be_file`.
  Result<Fd> Resolve(const std::vector<std::string>& comps, size_t n, bool create_dirs,
                     bool final_may_be_file) const {
    std::vector<Fd> stack;  // directories entered below the root
    auto cur = [&]() { return stack.empty() ? fd_ : stack.back().get(); };
    std::deque<std::string> todo(comps.begin(), comps.begin() + static_cast<ptrdiff_t>(n));
    int links = 0;
    size_t steps = 0;
    while (!todo.empty()) {
      if (++steps > kMaxResolveSteps) return Error(Code::kInvalidArgument, "path is too deep");
      std::string c = std::move(todo.front());
      todo.pop_front();
      if (c.empty() || c == ".") continue;
      if (c == "..") {
        if (!stack.empty()) stack.pop_back();
        continue;
      }
      Fd f(::openat(cur(), c.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
      if (!f.valid() && errno == ENOENT && create_dirs) {
        if (::mkdirat(cur(), c.c_str(), 0755) != 0 && errno != EEXIST)
          return ErrnoStatus(fmt::format("creating directory {}", c));
        f = Fd(::openat(cur(), c.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
      }
      if (!f.valid()) return ErrnoStatus(c);
      struct stat st {};
      if (::fstat(f.get(), &st) != 0) return ErrnoStatus(c);
      if (S_ISDIR(st.st_mode)) {
        stack.push_back(std::move(f));
        continue;
      }
      if (S_ISLNK(st.st_mode)) {
        if (++links > kMaxSymlinks)
          return Error(Code::kInvalidArgument, "too many levels of symbolic links");
        std::array<char, kMaxPathBytes> target{};
        ssize_t len = ::readlinkat(cur(), c.c_str(), target.data(), target.size());
        if (len <= 0) return ErrnoStatus(fmt::format("reading symlink {}", c));
        std::string_view t(target.data(), static_cast<size_t>(len));
        if (t[0] == '/') stack.clear();
        std::vector<std::string> parts;
        size_t i = 0;
        while (i <= t.size()) {
          size_t j = t.find('/', i);
          if (j == std::string_view::npos) j = t.size();
          if (j > i) parts.emplace_back(t.substr(i, j - i));
          i = j + 1;
        }
        todo.insert(todo.begin(), parts.begin(), parts.end());
        continue;
      }
      if (todo.empty() && final_may_be_file) return f;
      return Error(Code::kInvalidArgument, "{} is not a directory", c);
    }
    if (!stack.empty()) return std::move(stack.back());
    Fd root(::fcntl(fd_, F_DUPFD_CLOEXEC, 0));
    if (!root.valid()) return ErrnoStatus("dup");
    return root;
  }

 private:
  int fd_;
};

Status RemoveAll(int parent, const std::string& name, int depth = 0) {
  if (depth > kMaxRemoveDepth) return Error(Code::kInvalidArgument, "directory tree too deep");
  struct stat st {};
  if (::fstatat(parent, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return Status::Ok();
    return ErrnoStatus(name);
  }
  if (!S_ISDIR(st.st_mode)) {
    if (::unlinkat(parent, name.c_str(), 0) != 0 && errno != ENOENT) return ErrnoStatus(name);
    return Status::Ok();
  }
  Fd dir(::openat(parent, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dir.valid()) return ErrnoStatus(name);
  std::vector<std::string> children;
  {
    int dup = ::fcntl(dir.get(), F_DUPFD_CLOEXEC, 0);
    DIR* d = dup >= 0 ? ::fdopendir(dup) : nullptr;
    if (d == nullptr) {
      if (dup >= 0) ::close(dup);
      return ErrnoStatus(name);
    }
    while (dirent* ent = ::readdir(d)) {
      std::string_view n(ent->d_name);
      if (n != "." && n != "..") children.emplace_back(n);
    }
    ::closedir(d);
  }
  for (const auto& c : children) VERGE_RETURN_IF_ERROR(RemoveAll(dir.get(), c, depth + 1));
  if (::unlinkat(parent, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT)
    return ErrnoStatus(name);
  return Status::Ok();
}

Result<std::vector<std::string>> ListDir(int dirfd) {
  int dup = ::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR* d = dup >= 0 ? ::fdopendir(dup) : nullptr;
  if (d == nullptr) {
    if (dup >= 0) ::close(dup);
    return ErrnoStatus("listing directory");
  }
  std::vector<std::string> out;
  while (dirent* ent = ::readdir(d)) {
    std::string_view n(ent->d_name);
    if (n != "." && n != "..") out.emplace_back(n);
  }
  ::closedir(d);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Applying a layer.

struct Budget {
  uint64_t bytes_left;
  uint64_t entries_left;
  uint64_t stream_left;
};

Status TakeEntry(Budget* budget, const UnpackLimits& limits) {
  if (budget->entries_left == 0)
    return Error(Code::kResourceExhausted, "the image has more than {} entries (limit)",
                 limits.max_entries);
  --budget->entries_left;
  return Status::Ok();
}

class LayerApplier {
 public:
  LayerApplier(int root_fd, const UnpackLimits& limits, Budget* budget)
      : root_(root_fd), limits_(limits), budget_(budget) {}

  Status Apply(TarReader& tar) {
    // Paths this layer created: an opaque whiteout hides only what lower layers put there.
    std::set<std::string> created;
    for (;;) {
      VERGE_ASSIGN_OR_RETURN(std::optional<TarEntry> e, tar.Next());
      if (!e) return Status::Ok();
      Status st = ApplyEntry(tar, *e, &created);
      if (!st.ok()) return st.Wrap(fmt::format("entry \"{}\"", e->path));
    }
  }

 private:
  Status ApplyEntry(TarReader& tar, const TarEntry& e, std::set<std::string>* created) {
    VERGE_RETURN_IF_ERROR(TakeEntry(budget_, limits_));
    VERGE_ASSIGN_OR_RETURN(std::vector<std::string> comps, SplitArchivePath(e.path));
    if (comps.empty()) {
      if (e.type == '5') return Status::Ok();  // "./": the root itself keeps its mode
      return Error(Code::kInvalidArgument, "entry names the root directory");
    }
    const std::string& name = comps.back();
    size_t parent_n = comps.size() - 1;
    if (name.starts_with(".wh.")) return Whiteout(comps, *created);
    VERGE_ASSIGN_OR_RETURN(Fd parent, root_.Resolve(comps, parent_n, true, false));
    created->insert(JoinPath(comps, comps.size()));
    switch (e.type) {
      case '0':
      case '7':
        return WriteFile(tar, e, parent.get(), name);
      case '5':
        return MakeDir(e, parent.get(), name);
      case '2':
        return MakeSymlink(e, parent.get(), name);
      case '1':
        return MakeHardlink(e, parent.get(), name);
      case '6':
        VERGE_RETURN_IF_ERROR(RemoveExisting(parent.get(), name));
        if (::mknodat(parent.get(), name.c_str(), S_IFIFO | (e.mode & 0777), 0) != 0)
          return ErrnoStatus("mkfifo");
        Chown(parent.get(), name, e);
        return Status::Ok();
      case '3':
      case '4':
        return Status::Ok();  // device nodes: containers get their own /dev
      default:
        return Error(Code::kInvalidArgument, "unsupported tar entry type '{}'", e.type);
    }
  }

  Status Whiteout(const std::vector<std::string>& comps, const std::set<std::string>& created) {
    const std::string& name = comps.back();
    size_t parent_n = comps.size() - 1;
    auto parent = root_.Resolve(comps, parent_n, false, false);
    if (!parent.ok()) {
      if (parent.status().code() == Code::kNotFound) return Status::Ok();  // nothing to hide
      return parent.status();
    }
    if (name == ".wh..wh..opq") {
      VERGE_ASSIGN_OR_RETURN(std::vector<std::string> children, ListDir(parent->get()));
      std::string prefix = JoinPath(comps, parent_n);
      for (const auto& c : children) {
        std::string path = prefix.empty() ? c : fmt::format("{}/{}", prefix, c);
        if (created.count(path) == 0) VERGE_RETURN_IF_ERROR(RemoveAll(parent->get(), c));
      }
      return Status::Ok();
    }
    if (name.starts_with(".wh..wh.")) return Status::Ok();  // AUFS bookkeeping (.wh..wh.plnk)
    std::string target = name.substr(4);
    if (target.empty() || target == "." || target == "..")
      return Error(Code::kInvalidArgument, "bad whiteout");
    return RemoveAll(parent->get(), target);
  }

  // Makes room for a new entry: whatever is there goes, directories included (a layer may
  // replace a directory with a file).
  static Status RemoveExisting(int parent, const std::string& name) {
    return RemoveAll(parent, name);
  }

  static void Chown(int parent, const std::string& name, const TarEntry& e) {
    // Not root (tests, rootless): files keep our ids, which is all that is possible.
    (void)::fchownat(parent, name.c_str(), static_cast<uid_t>(e.uid), static_cast<gid_t>(e.gid),
                     AT_SYMLINK_NOFOLLOW);
  }

  Status WriteFile(TarReader& tar, const TarEntry& e, int parent, const std::string& name) {
    if (e.size > budget_->bytes_left)
      return Error(Code::kResourceExhausted, "the image unpacks to more than {} bytes (limit)",
                   limits_.max_bytes);
    budget_->bytes_left -= e.size;
    VERGE_RETURN_IF_ERROR(RemoveExisting(parent, name));
    // O_EXCL|O_NOFOLLOW: a symlink raced or left in place is never written through.
    Fd fd(
        ::openat(parent, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!fd.valid()) return ErrnoStatus("create");
    std::array<char, 65536> buf{};
    for (;;) {
      VERGE_ASSIGN_OR_RETURN(size_t got, tar.ReadData(buf.data(), buf.size()));
      if (got == 0) break;
      size_t off = 0;
      while (off < got) {
        ssize_t w = ::write(fd.get(), buf.data() + off, got - off);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return ErrnoStatus("write");
        off += static_cast<size_t>(w);
      }
    }
    (void)::fchown(fd.get(), static_cast<uid_t>(e.uid), static_cast<gid_t>(e.gid));
    // After chown, which clears set-id bits.
    if (::fchmod(fd.get(), e.mode) != 0) return ErrnoStatus("chmod");
    std::array<timespec, 2> times{timespec{e.mtime, 0}, timespec{e.mtime, 0}};
    (void)::futimens(fd.get(), times.data());
    return Status::Ok();
  }

  static Status MakeDir(const TarEntry& e, int parent, const std::string& name) {
    struct stat st {};
    if (::fstatat(parent, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode))
      VERGE_RETURN_IF_ERROR(RemoveExisting(parent, name));
    if (::mkdirat(parent, name.c_str(), 0700) != 0 && errno != EEXIST) return ErrnoStatus("mkdir");
    Fd fd(::openat(parent, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd.valid()) return ErrnoStatus("open directory");
    (void)::fchown(fd.get(), static_cast<uid_t>(e.uid), static_cast<gid_t>(e.gid));
    if (::fchmod(fd.get(), e.mode) != 0) return ErrnoStatus("chmod");
    return Status::Ok();
  }

  static Status MakeSymlink(const TarEntry& e, int parent, const std::string& name) {
    if (e.linkpath.empty()) return Error(Code::kInvalidArgument, "symlink without target");
    if (e.linkpath.size() > kMaxPathBytes || e.linkpath.find('\0') != std::string::npos)
      return Error(Code::kInvalidArgument, "bad symlink target");
    VERGE_RETURN_IF_ERROR(RemoveExisting(parent, name));
    if (::symlinkat(e.linkpath.c_str(), parent, name.c_str()) != 0) return ErrnoStatus("symlink");
    Chown(parent, name, e);
    return Status::Ok();
  }

  Status MakeHardlink(const TarEntry& e, int parent, const std::string& name) {
    auto target = SplitArchivePath(e.linkpath);
    if (!target.ok()) return target.status().Wrap("hard link target");
    if (target->empty()) return Error(Code::kInvalidArgument, "hard link to the root");
    VERGE_ASSIGN_OR_RETURN(Fd tparent, root_.Resolve(*target, target->size() - 1, false, false));
    const std::string& tname = target->back();
    struct stat tst {};
    if (::fstatat(tparent.get(), tname.c_str(), &tst, AT_SYMLINK_NOFOLLOW) != 0)
      return ErrnoStatus(fmt::format("hard link target {}", e.linkpath));
    if (S_ISDIR(tst.st_mode)) return Error(Code::kInvalidArgument, "hard link to a directory");
    struct stat dst {};
    if (::fstatat(parent, name.c_str(), &dst, AT_SYMLINK_NOFOLLOW) == 0 &&
        dst.st_dev == tst.st_dev && dst.st_ino == tst.st_ino)
      return Status::Ok();
    VERGE_RETURN_IF_ERROR(RemoveExisting(parent, name));
    if (::linkat(tparent.get(), tname.c_str(), parent, name.c_str(), 0) != 0)
      return ErrnoStatus("link");
    return Status::Ok();
  }

  Root root_;
  const UnpackLimits& limits_;
  Budget* budget_;
};

// ---------------------------------------------------------------------------------------------
// The outer archive.

struct Member {
  uint64_t offset = 0;
  uint64_t size = 0;
};

// Regular files of the (uncompressed) outer archive, by normalised path.
class ArchiveIndex {
 public:
  static Result<ArchiveIndex> Build(int fd, uint64_t size, Budget* budget,
                                    const UnpackLimits& limits) {
    ArchiveIndex idx;
    idx.fd_ = fd;
    FileRange range(fd, 0, size);
    TarReader tar(range);
    for (;;) {
      VERGE_ASSIGN_OR_RETURN(std::optional<TarEntry> e, tar.Next());
      if (!e) break;
      VERGE_RETURN_IF_ERROR(TakeEntry(budget, limits));
      auto comps = SplitArchivePath(e->path);
      if (!comps.ok()) return comps.status().Wrap(fmt::format("archive entry \"{}\"", e->path));
      if (e->type != '0' && e->type != '7') continue;
      idx.files_[JoinPath(*comps, comps->size())] = Member{tar.data_offset(), e->size};
    }
    return idx;
  }

  int fd() const { return fd_; }
  const Member* Find(const std::string& path) const {
    auto comps = SplitArchivePath(path);
    if (!comps.ok()) return nullptr;
    auto it = files_.find(JoinPath(*comps, comps->size()));
    return it == files_.end() ? nullptr : &it->second;
  }

  Result<std::string> ReadSmall(const std::string& path) const {
    const Member* m = Find(path);
    if (m == nullptr) return Error(Code::kNotFound, "the archive has no {}", path);
    if (m->size > kMaxJsonBytes)
      return Error(Code::kInvalidArgument, "{} is too large ({} bytes)", path, m->size);
    std::string out(m->size, '\0');
    FileRange r(fd_, m->offset, m->size);
    size_t have = 0;
    while (have < out.size()) {
      VERGE_ASSIGN_OR_RETURN(size_t got, r.Read(out.data() + have, out.size() - have));
      have += got;
    }
    return out;
  }

  // Checks that the member's content has the sha256 `hex` (and `size`, when known).
  Status Verify(const std::string& path, const std::string& hex,
                std::optional<uint64_t> size) const {
    const Member* m = Find(path);
    if (m == nullptr) return Error(Code::kNotFound, "the archive has no {}", path);
    if (size && *size != m->size)
      return Error(Code::kDataLoss, "{} has {} bytes, its descriptor says {}", path, m->size,
                   *size);
    FileRange r(fd_, m->offset, m->size);
    Sha256 sha;
    std::array<char, 65536> buf{};
    for (;;) {
      VERGE_ASSIGN_OR_RETURN(size_t got, r.Read(buf.data(), buf.size()));
      if (got == 0) break;
      sha.Update(buf.data(), got);
    }
    std::string actual = sha.HexFinal();
    if (actual != hex)
      return Error(Code::kDataLoss, "{} does not match its digest (sha256 {}, expected {})", path,
                   actual, hex);
    return Status::Ok();
  }

 private:
  int fd_ = -1;
  std::map<std::string, Member> files_;
};

Result<json> ParseJson(const std::string& text, std::string_view what) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Error(Code::kInvalidArgument, "{} is not valid JSON", what);
  return j;
}

// "sha256:<hex>" → hex.
Result<std::string> DigestHex(const std::string& digest) {
  if (!digest.starts_with("sha256:"))
    return Error(Code::kInvalidArgument, "unsupported digest \"{}\" (only sha256 is)", digest);
  std::string hex = digest.substr(7);
  if (!IsSha256Hex(hex)) return Error(Code::kInvalidArgument, "malformed digest \"{}\"", digest);
  return hex;
}

std::string HostArchitecture() {
  utsname u{};
  if (::uname(&u) != 0) return "";
  std::string_view m(u.machine);
  if (m == "x86_64") return "amd64";
  if (m == "aarch64" || m == "arm64") return "arm64";
  if (m.starts_with("armv") || m == "arm") return "arm";
  if (m == "i386" || m == "i686") return "386";
  return std::string(m);
}

std::vector<std::string> StringArray(const json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return {};
  return it->get<std::vector<std::string>>();
}

std::string StringValue(const json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return "";
  return it->get<std::string>();
}

struct ImagePlan {
  ImageConfig config;
  struct Layer {
    std::string path;
    std::optional<std::string> blob_hex;  // the blob's own digest (OCI)
    std::optional<uint64_t> blob_size;
    std::optional<std::string> diff_id;  // sha256 of the uncompressed tar
  };
  std::vector<Layer> layers;
};

// Reads an image config blob (already verified): the run settings and the diff_ids.
Result<std::vector<std::string>> ParseConfigBlob(const std::string& text, ImageConfig* out) {
  VERGE_ASSIGN_OR_RETURN(json j, ParseJson(text, "the image config"));
  try {
    if (!j.is_object()) return Error(Code::kInvalidArgument, "the image config is not an object");
    std::string os = StringValue(j, "os");
    if (!os.empty() && os != "linux")
      return Error(Code::kFailedPrecondition, "the image is for {}, not linux", os);
    std::string arch = StringValue(j, "architecture");
    std::string host = HostArchitecture();
    if (!arch.empty() && !host.empty() && arch != host)
      return Error(Code::kFailedPrecondition, "the image is built for {}, this node is {}", arch,
                   host);
    auto cfg = j.find("config");
    if (cfg != j.end() && cfg->is_object()) {
      out->entrypoint = StringArray(*cfg, "Entrypoint");
      out->cmd = StringArray(*cfg, "Cmd");
      out->env = StringArray(*cfg, "Env");
      out->working_dir = StringValue(*cfg, "WorkingDir");
      out->user = StringValue(*cfg, "User");
    }
    std::vector<std::string> diff_ids;
    auto rootfs = j.find("rootfs");
    if (rootfs != j.end() && rootfs->is_object()) {
      for (const std::string& d : StringArray(*rootfs, "diff_ids")) {
        VERGE_ASSIGN_OR_RETURN(std::string hex, DigestHex(d));
        diff_ids.push_back(hex);
      }
    }
    return diff_ids;
  } catch (const json::exception& e) {
    return Error(Code::kInvalidArgument, "the image config: {}", e.what());
  }
}

bool IsIndexMediaType(const json& doc) {
  std::string mt = doc.is_object() ? doc.value("mediaType", "") : "";
  if (mt == "application/vnd.oci.image.index.v1+json" ||
      mt == "application/vnd.docker.distribution.manifest.list.v2+json")
    return true;
  return mt.empty() && doc.is_object() && doc.contains("manifests") && !doc.contains("layers");
}

// Picks the manifest for this node from an OCI index (descending into nested indexes) and
// returns it, verified and parsed.
Result<json> SelectManifest(const ArchiveIndex& idx, const json& index, int depth) {
  if (depth > kMaxIndexDepth) return Error(Code::kInvalidArgument, "image indexes nest too deep");
  auto it = index.find("manifests");
  if (it == index.end() || !it->is_array() || it->empty())
    return Error(Code::kInvalidArgument, "the image index lists no manifests");
  std::string host = HostArchitecture();
  const json* chosen = nullptr;
  bool any_platform = false;
  std::vector<std::string> seen;
  for (const json& m : *it) {
    auto p = m.find("platform");
    if (p == m.end() || !p->is_object()) continue;
    any_platform = true;
    std::string os = p->value("os", "");
    std::string arch = p->value("architecture", "");
    seen.push_back(fmt::format("{}/{}", os, arch));
    if (chosen == nullptr && os == "linux" && arch == host) chosen = &m;
  }
  if (chosen == nullptr) {
    if (any_platform)
      return Error(Code::kFailedPrecondition, "the image has no manifest for linux/{} (it has {})",
                   host, fmt::join(seen, ", "));
    chosen = &it->front();
  }
  VERGE_ASSIGN_OR_RETURN(std::string hex, DigestHex(chosen->at("digest").get<std::string>()));
  std::optional<uint64_t> size;
  if (chosen->contains("size")) size = chosen->at("size").get<uint64_t>();
  std::string path = "blobs/sha256/" + hex;
  VERGE_RETURN_IF_ERROR(idx.Verify(path, hex, size));
  VERGE_ASSIGN_OR_RETURN(std::string text, idx.ReadSmall(path));
  VERGE_ASSIGN_OR_RETURN(json doc, ParseJson(text, "a manifest"));
  if (IsIndexMediaType(doc)) return SelectManifest(idx, doc, depth + 1);
  return doc;
}

Result<ImagePlan> PlanOciLayout(const ArchiveIndex& idx) {
  ImagePlan plan;
  VERGE_ASSIGN_OR_RETURN(std::string index_text, idx.ReadSmall("index.json"));
  VERGE_ASSIGN_OR_RETURN(json index, ParseJson(index_text, "index.json"));
  try {
    VERGE_ASSIGN_OR_RETURN(json manifest, SelectManifest(idx, index, 0));
    const json& cfg = manifest.at("config");
    VERGE_ASSIGN_OR_RETURN(std::string cfg_hex, DigestHex(cfg.at("digest").get<std::string>()));
    std::string cfg_path = "blobs/sha256/" + cfg_hex;
    std::optional<uint64_t> cfg_size;
    if (cfg.contains("size")) cfg_size = cfg.at("size").get<uint64_t>();
    VERGE_RETURN_IF_ERROR(idx.Verify(cfg_path, cfg_hex, cfg_size));
    VERGE_ASSIGN_OR_RETURN(std::string cfg_text, idx.ReadSmall(cfg_path));
    VERGE_ASSIGN_OR_RETURN(std::vector<std::string> diff_ids,
                           ParseConfigBlob(cfg_text, &plan.config));
    const json& layers = manifest.at("layers");
    if (!layers.is_array()) return Error(Code::kInvalidArgument, "manifest layers is not a list");
    if (!diff_ids.empty() && diff_ids.size() != layers.size())
      return Error(Code::kInvalidArgument, "the manifest has {} layers, the config {} diff_ids",
                   layers.size(), diff_ids.size());
    for (size_t i = 0; i < layers.size(); ++i) {
      ImagePlan::Layer l;
      VERGE_ASSIGN_OR_RETURN(std::string hex, DigestHex(layers[i].at("digest").get<std::string>()));
      l.path = "blobs/sha256/" + hex;
      l.blob_hex = hex;
      if (layers[i].contains("size")) l.blob_size = layers[i].at("size").get<uint64_t>();
      if (!diff_ids.empty()) l.diff_id = diff_ids[i];
      plan.layers.push_back(std::move(l));
    }
  } catch (const json::exception& e) {
    return Error(Code::kInvalidArgument, "malformed OCI image: {}", e.what());
  }
  return plan;
}

// The digest a docker-archive member is named by: "<hex>.json" or "blobs/sha256/<hex>".
std::optional<std::string> DigestFromName(const std::string& path) {
  std::string base = path.substr(path.rfind('/') + 1);
  if (path.starts_with("blobs/sha256/") && IsSha256Hex(base)) return base;
  if (base.ends_with(".json") && IsSha256Hex(base.substr(0, base.size() - 5)))
    return base.substr(0, base.size() - 5);
  return std::nullopt;
}

Result<ImagePlan> PlanDockerArchive(const ArchiveIndex& idx) {
  ImagePlan plan;
  VERGE_ASSIGN_OR_RETURN(std::string text, idx.ReadSmall("manifest.json"));
  VERGE_ASSIGN_OR_RETURN(json manifest, ParseJson(text, "manifest.json"));
  try {
    if (!manifest.is_array() || manifest.empty())
      return Error(Code::kInvalidArgument, "manifest.json lists no image");
    const json& image = manifest.front();
    std::string cfg_path = image.at("Config").get<std::string>();
    std::optional<std::string> cfg_hex = DigestFromName(cfg_path);
    if (!cfg_hex)
      return Error(Code::kInvalidArgument, "the image config {} is not named by its sha256",
                   cfg_path);
    VERGE_RETURN_IF_ERROR(idx.Verify(cfg_path, *cfg_hex, std::nullopt));
    VERGE_ASSIGN_OR_RETURN(std::string cfg_text, idx.ReadSmall(cfg_path));
    VERGE_ASSIGN_OR_RETURN(std::vector<std::string> diff_ids,
                           ParseConfigBlob(cfg_text, &plan.config));
    std::vector<std::string> layers = image.at("Layers").get<std::vector<std::string>>();
    // Layer files are named by ids, not digests: the config's diff_ids are what vouches for
    // their content.
    if (diff_ids.size() != layers.size())
      return Error(Code::kInvalidArgument, "manifest.json has {} layers, the config {} diff_ids",
                   layers.size(), diff_ids.size());
    for (size_t i = 0; i < layers.size(); ++i) {
      ImagePlan::Layer l;
      l.path = layers[i];
      if (l.path.starts_with("blobs/sha256/")) l.blob_hex = DigestFromName(l.path);
      l.diff_id = diff_ids[i];
      plan.layers.push_back(std::move(l));
    }
  } catch (const json::exception& e) {
    return Error(Code::kInvalidArgument, "malformed docker-archive: {}", e.what());
  }
  return plan;
}

Status ApplyLayerMember(const ArchiveIndex& idx, const ImagePlan::Layer& layer, int root_fd,
                        const UnpackLimits& limits, Budget* budget) {
  const Member* m = idx.Find(layer.path);
  if (m == nullptr) return Error(Code::kNotFound, "the archive has no {}", layer.path);
  if (layer.blob_hex)
    VERGE_RETURN_IF_ERROR(idx.Verify(layer.path, *layer.blob_hex, layer.blob_size));
  VERGE_ASSIGN_OR_RETURN(Compression c, PeekCompression(idx.fd(), m->offset, m->size));
  if (c == Compression::kBzip2 || c == Compression::kXz)
    return Error(Code::kInvalidArgument, "{} is {}-compressed: only gzip and zstd are supported",
                 layer.path, c == Compression::kXz ? "xz" : "bzip2");
  FileRange raw(idx.fd(), m->offset, m->size);
  std::unique_ptr<Stream> decoder;
  if (c == Compression::kGzip) decoder = std::make_unique<GzipStream>(raw);
  if (c == Compression::kZstd) decoder = std::make_unique<ZstdStream>(raw);
  HashingStream hashed(decoder ? *decoder : static_cast<Stream&>(raw), &budget->stream_left);
  TarReader tar(hashed);
  LayerApplier applier(root_fd, limits, budget);
  VERGE_RETURN_IF_ERROR(applier.Apply(tar));
  VERGE_RETURN_IF_ERROR(hashed.Drain());
  std::string diff = hashed.HexFinal();
  if (layer.diff_id && diff != *layer.diff_id)
    return Error(Code::kDataLoss, "{} does not match its diff_id (sha256 {}, expected {})",
                 layer.path, diff, *layer.diff_id);
  return Status::Ok();
}

// A compressed outer archive is decompressed into an unlinked temporary file first: blobs are
// then read by offset.
Result<Fd> DecompressToTemp(int fd, uint64_t size, Compression c, const std::string& tmp_dir,
                            uint64_t cap) {
  Fd out(::open(tmp_dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
  if (!out.valid()) {
    // File systems without O_TMPFILE (older overlayfs): a named file, unlinked at once.
    std::string tmpl = tmp_dir + "/.archive-XXXXXX";
    out = Fd(::mkostemp(tmpl.data(), O_CLOEXEC));
    if (!out.valid()) return ErrnoStatus(fmt::format("creating a temporary file in {}", tmp_dir));
    ::unlink(tmpl.c_str());
  }
  FileRange raw(fd, 0, size);
  std::unique_ptr<Stream> decoder;
  if (c == Compression::kGzip) decoder = std::make_unique<GzipStream>(raw);
  if (c == Compression::kZstd) decoder = std::make_unique<ZstdStream>(raw);
  if (!decoder) return Error(Code::kInvalidArgument, "unsupported archive compression");
  uint64_t budget = cap;
  HashingStream bounded(*decoder, &budget);
  std::array<char, 65536> buf{};
  for (;;) {
    VERGE_ASSIGN_OR_RETURN(size_t got, bounded.Read(buf.data(), buf.size()));
    if (got == 0) break;
    size_t off = 0;
    while (off < got) {
      ssize_t w = ::write(out.get(), buf.data() + off, got - off);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) return ErrnoStatus("writing a temporary file");
      off += static_cast<size_t>(w);
    }
  }
  return out;
}

Status UnpackInto(const std::string& archive, int root_fd, const std::string& tmp_dir,
                  const UnpackLimits& limits, ImageConfig* config) {
  Fd file(::open(archive.c_str(), O_RDONLY | O_CLOEXEC));
  if (!file.valid()) return ErrnoStatus(fmt::format("opening {}", archive));
  struct stat st {};
  if (::fstat(file.get(), &st) != 0) return ErrnoStatus(archive);
  if (!S_ISREG(st.st_mode)) return Error(Code::kInvalidArgument, "{} is not a file", archive);
  uint64_t size = static_cast<uint64_t>(st.st_size);
  // Decompressed bytes: the content plus tar headers, padding and PAX records per entry.
  Budget budget{limits.max_bytes, limits.max_entries,
                SaturatingAdd(SaturatingAdd(limits.max_bytes, 16ULL << 20),
                              limits.max_entries > UINT64_MAX / 4096 ? UINT64_MAX
                                                                     : limits.max_entries * 4096)};
  VERGE_ASSIGN_OR_RETURN(Compression c, PeekCompression(file.get(), 0, size));
  if (c == Compression::kBzip2 || c == Compression::kXz)
    return Error(Code::kInvalidArgument, "the archive is {}-compressed: use tar, gzip or zstd",
                 c == Compression::kXz ? "xz" : "bzip2");
  if (c != Compression::kNone) {
    VERGE_ASSIGN_OR_RETURN(file,
                           DecompressToTemp(file.get(), size, c, tmp_dir, budget.stream_left));
    struct stat tst {};
    if (::fstat(file.get(), &tst) != 0) return ErrnoStatus("temporary file");
    size = static_cast<uint64_t>(tst.st_size);
  }
  VERGE_ASSIGN_OR_RETURN(ArchiveIndex idx, ArchiveIndex::Build(file.get(), size, &budget, limits));
  ImagePlan plan;
  if (idx.Find("index.json") != nullptr) {
    VERGE_ASSIGN_OR_RETURN(plan, PlanOciLayout(idx));
  } else if (idx.Find("manifest.json") != nullptr) {
    VERGE_ASSIGN_OR_RETURN(plan, PlanDockerArchive(idx));
  } else {
    return Error(Code::kInvalidArgument,
                 "not an image archive: no index.json (OCI layout) or manifest.json "
                 "(docker-archive)");
  }
  for (size_t i = 0; i < plan.layers.size(); ++i) {
    Status s = ApplyLayerMember(idx, plan.layers[i], root_fd, limits, &budget);
    if (!s.ok()) return s.Wrap(fmt::format("layer {} ({})", i + 1, plan.layers[i].path));
  }
  *config = std::move(plan.config);
  return Status::Ok();
}

json ConfigToJson(const ImageConfig& c) {
  return json{{"entrypoint", c.entrypoint},
              {"cmd", c.cmd},
              {"env", c.env},
              {"working_dir", c.working_dir},
              {"user", c.user}};
}

Result<ImageConfig> ConfigFromJson(const std::string& text) {
  VERGE_ASSIGN_OR_RETURN(json j, ParseJson(text, "the cached image config"));
  try {
    ImageConfig c;
    c.entrypoint = j.at("entrypoint").get<std::vector<std::string>>();
    c.cmd = j.at("cmd").get<std::vector<std::string>>();
    c.env = j.at("env").get<std::vector<std::string>>();
    c.working_dir = j.at("working_dir").get<std::string>();
    c.user = j.at("user").get<std::string>();
    return c;
  } catch (const json::exception& e) {
    return Error(Code::kDataLoss, "the cached image config: {}", e.what());
  }
}

Result<std::string> ImageKey(const std::string& archive) {
  std::string base = std::filesystem::path(archive).filename().string();
  for (std::string_view prefix : {"sha256:", "sha256-", "sha256_"}) {
    if (base.starts_with(prefix)) base = base.substr(prefix.size());
  }
  std::string stem = base.substr(0, base.find('.'));
  if (IsSha256Hex(stem)) return stem;
  return Sha256File(archive);
}

// Reads a small file of the rootfs, resolving its path inside the rootfs.
Result<std::string> ReadInRoot(const std::string& rootfs, const std::string& path) {
  Fd root(::open(rootfs.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root.valid()) return ErrnoStatus(rootfs);
  VERGE_ASSIGN_OR_RETURN(std::vector<std::string> comps, SplitArchivePath(path));
  VERGE_ASSIGN_OR_RETURN(Fd f, Root(root.get()).Resolve(comps, comps.size(), false, true));
  // Reopen the O_PATH descriptor for reading: exactly the file resolved above.
  Fd rd(::open(fmt::format("/proc/self/fd/{}", f.get()).c_str(), O_RDONLY | O_CLOEXEC));
  if (!rd.valid()) return ErrnoStatus(path);
  struct stat st {};
  if (::fstat(rd.get(), &st) != 0 || !S_ISREG(st.st_mode))
    return Error(Code::kInvalidArgument, "/{} is not a regular file", path);
  if (st.st_size > static_cast<off_t>(kMaxJsonBytes))
    return Error(Code::kInvalidArgument, "/{} is too large", path);
  std::string out(static_cast<size_t>(st.st_size), '\0');
  size_t have = 0;
  while (have < out.size()) {
    ssize_t r = ::read(rd.get(), out.data() + have, out.size() - have);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    have += static_cast<size_t>(r);
  }
  out.resize(have);
  return out;
}

std::vector<std::vector<std::string>> ColonRecords(const std::string& text) {
  std::vector<std::vector<std::string>> out;
  size_t i = 0;
  while (i < text.size()) {
    size_t nl = text.find('\n', i);
    if (nl == std::string::npos) nl = text.size();
    std::string_view line(text.data() + i, nl - i);
    i = nl + 1;
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> fields;
    size_t j = 0;
    while (j <= line.size()) {
      size_t c = line.find(':', j);
      if (c == std::string_view::npos) c = line.size();
      fields.emplace_back(line.substr(j, c - j));
      j = c + 1;
    }
    out.push_back(std::move(fields));
  }
  return out;
}

std::optional<uint32_t> ParseId(std::string_view s) {
  if (s.empty() || s.size() > 10) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  if (v >= UINT32_MAX) return std::nullopt;
  return static_cast<uint32_t>(v);
}

}  // namespace

Result<std::string> Sha256File(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoStatus(fmt::format("opening {}", path));
  Sha256 sha;
  std::array<char, 65536> buf{};
  for (;;) {
    ssize_t r = ::read(fd.get(), buf.data(), buf.size());
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return ErrnoStatus(fmt::format("reading {}", path));
    if (r == 0) break;
    sha.Update(buf.data(), static_cast<size_t>(r));
  }
  return sha.HexFinal();
}

Result<ImageConfig> UnpackImageArchive(const std::string& archive, const std::string& rootfs,
                                       const UnpackLimits& limits) {
  if (::mkdir(rootfs.c_str(), 0755) != 0) return ErrnoStatus(fmt::format("creating {}", rootfs));
  // mkdir honours the umask; "/" of a container must be traversable by any user.
  (void)::chmod(rootfs.c_str(), 0755);
  ImageConfig config;
  Status st;
  {
    Fd root(::open(rootfs.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!root.valid()) {
      st = ErrnoStatus(rootfs);
    } else {
      std::string tmp_dir = std::filesystem::path(rootfs).parent_path().string();
      if (tmp_dir.empty()) tmp_dir = ".";
      st = UnpackInto(archive, root.get(), tmp_dir, limits, &config);
    }
  }
  if (!st.ok()) {
    std::error_code ec;
    std::filesystem::remove_all(rootfs, ec);
    return st.Wrap(fmt::format("unpacking image {}", archive));
  }
  return config;
}

Status UnpackTarball(const std::string& tarball, const std::string& dir,
                     const UnpackLimits& limits) {
  Fd file(::open(tarball.c_str(), O_RDONLY | O_CLOEXEC));
  if (!file.valid()) return ErrnoStatus(fmt::format("opening {}", tarball));
  struct stat st {};
  if (::fstat(file.get(), &st) != 0) return ErrnoStatus(tarball);
  if (!S_ISREG(st.st_mode)) return Error(Code::kInvalidArgument, "{} is not a file", tarball);
  uint64_t size = static_cast<uint64_t>(st.st_size);
  VERGE_ASSIGN_OR_RETURN(Compression c, PeekCompression(file.get(), 0, size));
  if (c == Compression::kBzip2 || c == Compression::kXz)
    return Error(Code::kInvalidArgument, "{} is {}-compressed: only gzip and zstd are supported",
                 tarball, c == Compression::kXz ? "xz" : "bzip2");
  if (::mkdir(dir.c_str(), 0755) != 0) return ErrnoStatus(fmt::format("creating {}", dir));
  (void)::chmod(dir.c_str(), 0755);
  Status result;
  {
    Fd root(::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!root.valid()) {
      result = ErrnoStatus(dir);
    } else {
      Budget budget{
          limits.max_bytes, limits.max_entries,
          SaturatingAdd(
              SaturatingAdd(limits.max_bytes, 16ULL << 20),
              limits.max_entries > UINT64_MAX / 4096 ? UINT64_MAX : limits.max_entries * 4096)};
      FileRange raw(file.get(), 0, size);
      std::unique_ptr<Stream> decoder;
      if (c == Compression::kGzip) decoder = std::make_unique<GzipStream>(raw);
      if (c == Compression::kZstd) decoder = std::make_unique<ZstdStream>(raw);
      HashingStream counted(decoder ? *decoder : static_cast<Stream&>(raw), &budget.stream_left);
      TarReader tar(counted);
      LayerApplier applier(root.get(), limits, &budget);
      result = applier.Apply(tar);
    }
  }
  if (!result.ok()) {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
    return result.Wrap(fmt::format("unpacking {}", tarball));
  }
  return Status::Ok();
}

Result<UnpackedImage> UnpackImageCached(const std::string& archive, const std::string& images_dir,
                                        const UnpackLimits& limits) {
  VERGE_ASSIGN_OR_RETURN(std::string key, ImageKey(archive));
  UnpackedImage out;
  out.key = key;
  std::string dir = images_dir + "/" + key;
  out.rootfs = dir + "/rootfs";
  std::string config_path = dir + "/config.json";
  if (FileExists(config_path)) {
    VERGE_ASSIGN_OR_RETURN(std::string text, ReadFile(config_path));
    VERGE_ASSIGN_OR_RETURN(out.config, ConfigFromJson(text));
    return out;
  }
  VERGE_RETURN_IF_ERROR(MakeDirs(images_dir));
  static std::atomic<uint64_t> counter{0};
  std::string tmp = fmt::format("{}/.tmp-{}-{}-{}", images_dir, key, ::getpid(), ++counter);
  std::error_code ec;
  std::filesystem::remove_all(tmp, ec);
  if (::mkdir(tmp.c_str(), 0700) != 0) return ErrnoStatus(fmt::format("creating {}", tmp));
  auto cleanup = [&] { std::filesystem::remove_all(tmp, ec); };
  auto config = UnpackImageArchive(archive, tmp + "/rootfs", limits);
  if (!config.ok()) {
    cleanup();
    return config.status();
  }
  Status st = WriteFileAtomic(tmp + "/config.json", ConfigToJson(*config).dump(2) + "\n");
  if (!st.ok()) {
    cleanup();
    return st;
  }
  if (::rename(tmp.c_str(), dir.c_str()) != 0) {
    int e = errno;
    cleanup();
    if (e != EEXIST && e != ENOTEMPTY) {
      errno = e;
      return ErrnoStatus(fmt::format("publishing {}", dir));
    }
    // Someone else published the same image first: theirs is as good as ours.
    VERGE_ASSIGN_OR_RETURN(std::string text, ReadFile(config_path));
    VERGE_ASSIGN_OR_RETURN(out.config, ConfigFromJson(text));
    return out;
  }
  out.config = std::move(*config);
  return out;
}

Result<ImageUser> ResolveImageUser(const std::string& rootfs, const std::string& user) {
  auto read = [&](const char* path) -> Result<std::string> {
    auto text = ReadInRoot(rootfs, path);
    if (!text.ok() && text.status().code() == Code::kNotFound) return std::string();
    return text;
  };
  VERGE_ASSIGN_OR_RETURN(std::string passwd_text, read("etc/passwd"));
  VERGE_ASSIGN_OR_RETURN(std::string group_text, read("etc/group"));
  auto passwd = ColonRecords(passwd_text);
  auto groups = ColonRecords(group_text);

  std::string spec = user.empty() ? std::to_string(kDefaultContainerUid) : user;
  std::string uname = spec.substr(0, spec.find(':'));
  std::optional<std::string> gname;
  if (spec.find(':') != std::string::npos) gname = spec.substr(spec.find(':') + 1);

  ImageUser out;
  const std::vector<std::string>* entry = nullptr;
  if (auto uid = ParseId(uname)) {
    out.uid = *uid;
    for (const auto& p : passwd) {
      if (p.size() >= 7 && ParseId(p[2]) == uid) {
        entry = &p;
        break;
      }
    }
  } else {
    for (const auto& p : passwd) {
      if (p.size() >= 7 && p[0] == uname && ParseId(p[2])) {
        entry = &p;
        break;
      }
    }
    if (entry == nullptr)
      return Error(Code::kFailedPrecondition, "user \"{}\" is not in the image's /etc/passwd",
                   uname);
    out.uid = *ParseId((*entry)[2]);
  }
  if (entry != nullptr) {
    out.gid = ParseId((*entry)[3]).value_or(0);
    if (!(*entry)[5].empty()) out.home = (*entry)[5];
  } else if (user.empty()) {
    out.gid = kDefaultContainerUid;
  }
  if (gname) {
    if (auto gid = ParseId(*gname)) {
      out.gid = *gid;
    } else {
      bool found = false;
      for (const auto& g : groups) {
        if (g.size() >= 3 && g[0] == *gname && ParseId(g[2])) {
          out.gid = *ParseId(g[2]);
          found = true;
          break;
        }
      }
      if (!found)
        return Error(Code::kFailedPrecondition, "group \"{}\" is not in the image's /etc/group",
                     *gname);
    }
  }
  if (entry != nullptr) {
    const std::string& name = (*entry)[0];
    for (const auto& g : groups) {
      if (g.size() < 4) continue;
      auto gid = ParseId(g[2]);
      if (!gid || *gid == out.gid) continue;
      size_t i = 0;
      const std::string& members = g[3];
      while (i <= members.size()) {
        size_t c = members.find(',', i);
        if (c == std::string::npos) c = members.size();
        if (members.compare(i, c - i, name) == 0 && c - i == name.size()) {
          if (std::find(out.additional_gids.begin(), out.additional_gids.end(), *gid) ==
              out.additional_gids.end())
            out.additional_gids.push_back(*gid);
          break;
        }
        i = c + 1;
      }
    }
  }
  return out;
}

}  // namespace verge::node::runtime
