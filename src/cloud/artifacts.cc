#include "cloud/artifacts.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/fs.h"
#include "common/pki.h"

namespace verge::cloud {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

}  // namespace

bool ArtifactStore::ValidSha256(std::string_view hex) {
  return hex.size() == 64 && std::all_of(hex.begin(), hex.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

Status ArtifactStore::Open() { return MakeDirs(dir_); }

Result<ArtifactInfo> ArtifactStore::Put(std::string_view name, std::string_view data,
                                        int64_t now_ms) {
  if (data.empty()) return Error(Code::kInvalidArgument, "artifact is empty");
  if (data.size() > max_) {
    return Error(Code::kResourceExhausted, "artifact of {} bytes is larger than the limit ({})",
                 data.size(), max_);
  }
  ArtifactInfo info;
  info.sha256 = pki::Sha256Hex(data);
  info.name = std::string(name.substr(0, 255));
  info.size = data.size();
  info.created_ms = now_ms;
  std::lock_guard lock(mu_);
  if (FileExists(PathOf(info.sha256)) && FileExists(PathOf(info.sha256) + ".json")) {
    auto text = ReadFile(PathOf(info.sha256) + ".json");
    if (text.ok()) {
      auto j = json::parse(*text, nullptr, false);
      if (j.is_object()) {
        info.name = j.value("name", info.name);
        info.created_ms = j.value("createdMs", info.created_ms);
      }
    }
    return info;
  }
  VERGE_RETURN_IF_ERROR(WriteFileAtomic(PathOf(info.sha256), data, 0644));
  json meta = {{"name", info.name}, {"size", info.size}, {"createdMs", info.created_ms}};
  VERGE_RETURN_IF_ERROR(WriteFileAtomic(PathOf(info.sha256) + ".json", meta.dump(), 0644));
  return info;
}

Result<std::optional<ArtifactInfo>> ArtifactStore::Get(const std::string& sha256) {
  if (!ValidSha256(sha256)) {
    return Error(Code::kInvalidArgument, "\"{}\" is not a SHA-256 (64 lowercase hex digits)",
                 sha256.substr(0, 80));
  }
  std::lock_guard lock(mu_);
  std::error_code ec;
  auto size = fs::file_size(PathOf(sha256), ec);
  if (ec) return std::optional<ArtifactInfo>();
  ArtifactInfo info{sha256, "", size, 0};
  if (auto text = ReadFile(PathOf(sha256) + ".json"); text.ok()) {
    auto j = json::parse(*text, nullptr, false);
    if (j.is_object()) {
      info.name = j.value("name", std::string());
      info.created_ms = j.value("createdMs", int64_t{0});
    }
  }
  return std::optional<ArtifactInfo>(std::move(info));
}

Result<std::string> ArtifactStore::Read(const std::string& sha256) {
  if (!ValidSha256(sha256)) {
    return Error(Code::kInvalidArgument, "\"{}\" is not a SHA-256 (64 lowercase hex digits)",
                 sha256.substr(0, 80));
  }
  if (!FileExists(PathOf(sha256))) {
    return Error(Code::kNotFound, "artifact sha256:{} not found", sha256);
  }
  return ReadFile(PathOf(sha256));
}

Result<std::vector<ArtifactInfo>> ArtifactStore::List() {
  std::vector<std::string> names;
  {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir_, ec)) {
      std::string n = e.path().filename().string();
      if (ValidSha256(n)) names.push_back(n);
    }
    if (ec) return Error(Code::kInternal, "listing {}: {}", dir_, ec.message());
  }
  std::sort(names.begin(), names.end());
  std::vector<ArtifactInfo> out;
  for (const auto& n : names) {
    VERGE_ASSIGN_OR_RETURN(auto info, Get(n));
    if (info) out.push_back(std::move(*info));
  }
  return out;
}

Status ArtifactStore::Delete(const std::string& sha256) {
  if (!ValidSha256(sha256)) {
    return Error(Code::kInvalidArgument, "\"{}\" is not a SHA-256 (64 lowercase hex digits)",
                 sha256.substr(0, 80));
  }
  std::lock_guard lock(mu_);
  std::error_code ec;
  bool removed = fs::remove(PathOf(sha256), ec);
  if (ec) return Error(Code::kInternal, "deleting artifact {}: {}", sha256, ec.message());
  fs::remove(PathOf(sha256) + ".json", ec);
  if (!removed) return Error(Code::kNotFound, "artifact sha256:{} not found", sha256);
  return Status::Ok();
}

Result<std::vector<std::string>> ArtifactStore::GarbageCollect(
    const std::set<std::string>& referenced, int64_t older_than_ms) {
  VERGE_ASSIGN_OR_RETURN(auto all, List());
  std::vector<std::string> removed;
  for (const auto& a : all) {
    if (referenced.contains(a.sha256) || a.created_ms >= older_than_ms) continue;
    if (Delete(a.sha256).ok()) removed.push_back(a.sha256);
  }
  return removed;
}

}  // namespace verge::cloud
