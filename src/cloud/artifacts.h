// ArtifactStore: the files apps run from — native executables and tarballs, OCI image
// archives, Lua scripts — kept content-addressed under DATA/artifacts, named by the SHA-256 of
// their bytes, with a small JSON record beside each (name given at push, size, time).
// `vergectl artifacts push FILE` puts one; nodes fetch it over the link address
// (GET /v1/artifacts/SHA with their certificate) and verify the hash again before using it.
// Pushing the same bytes twice stores them once. GarbageCollect removes artifacts no app
// revision names any more, once they are older than a grace period (so that an artifact
// pushed just before its app is applied is not collected in between).
//
// Thread-safety: thread-safe (files are written atomically; one mutex orders writes and
// deletes).
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace verge::cloud {

struct ArtifactInfo {
  std::string sha256;  // lowercase hex
  std::string name;    // what the pusher called it (informational)
  uint64_t size = 0;
  int64_t created_ms = 0;
};

class ArtifactStore {
 public:
  ArtifactStore(std::string dir, uint64_t max_bytes) : dir_(std::move(dir)), max_(max_bytes) {}
  Status Open();

  // Stores `data` (if not stored yet) and returns its record.
  Result<ArtifactInfo> Put(std::string_view name, std::string_view data, int64_t now_ms);
  Result<std::optional<ArtifactInfo>> Get(const std::string& sha256);
  // The artifact's bytes; kNotFound if absent.
  Result<std::string> Read(const std::string& sha256);
  Result<std::vector<ArtifactInfo>> List();
  Status Delete(const std::string& sha256);
  // Deletes every artifact not in `referenced` created before `older_than_ms`; returns them.
  Result<std::vector<std::string>> GarbageCollect(const std::set<std::string>& referenced,
                                                  int64_t older_than_ms);

  uint64_t max_bytes() const { return max_; }
  static bool ValidSha256(std::string_view hex);

 private:
  std::string PathOf(const std::string& sha256) const { return dir_ + "/" + sha256; }
  std::string dir_;
  uint64_t max_;
  std::mutex mu_;
};

}  // namespace verge::cloud
