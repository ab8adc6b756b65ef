// CloudArtifactSource: fetches app artifacts from the cloud the node joined, over HTTPS on the
// link address with the node's own certificate (GET /v1/artifacts/SHA). The AppManager verifies
// the SHA-256 of what arrives before it keeps or runs it.
// Thread-safety: thread-safe (a client per call).
#pragma once

#include <functional>
#include <optional>

#include "node/apps.h"
#include "node/identity.h"

namespace verge::node {

class CloudArtifactSource final : public ArtifactSource {
 public:
  // `identity` returns the node's identity once it has joined (nullopt before).
  explicit CloudArtifactSource(std::function<std::optional<NodeIdentity>()> identity)
      : identity_(std::move(identity)) {}
  Result<std::string> Fetch(const std::string& sha256) override;

 private:
  std::function<std::optional<NodeIdentity>()> identity_;
};

}  // namespace verge::node
