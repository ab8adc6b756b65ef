// Bootstrap tokens, as operators pass them to verge-node --token:
//
//   verge1.<ca-sha256-hex, 64>.<id, 6 of [a-z0-9]>.<secret, 16 of [a-z0-9]>
//
// The CA fingerprint lets a node verify the cloud on first contact (as kubeadm's discovery
// hash does); the id names the token in the cloud; only the secret's hash is stored there.
// Thread-safety: pure functions.
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"

namespace verge {

struct BootstrapTokenParts {
  std::string ca_fingerprint;
  std::string id;
  std::string secret;
  // "<id>.<secret>": what the node sends in its JoinRequest.
  std::string Credential() const { return id + "." + secret; }
};

std::string FormatBootstrapToken(const BootstrapTokenParts& parts);
Result<BootstrapTokenParts> ParseBootstrapToken(std::string_view token);
// Parses the "<id>.<secret>" credential of a JoinRequest.
Result<BootstrapTokenParts> ParseJoinCredential(std::string_view credential);

}  // namespace verge
