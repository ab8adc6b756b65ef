// The cloud's own identity on disk: the CA that signs node certificates (its key never
// leaves DATA/pki/), the TLS server certificate both listeners present (reissued at every
// start, so that new names and addresses are picked up), and the admin API token.
// Thread-safety: built once at start-up, then read-only.
#pragma once

#include <string>
#include <vector>

#include "common/clock.h"
#include "common/pki.h"

namespace verge::cloud {

struct CloudIdentity {
  pki::CertificateAuthority ca;
  std::string ca_fingerprint;
  std::string server_cert_pem;  // leaf followed by the CA
  std::string server_key_pem;
};

// Loads DATA/pki/{ca.crt,ca.key}, creating them on first start, and issues a server
// certificate for `names` (DNS names and IP literals) plus every local interface address.
Result<CloudIdentity> LoadOrCreateIdentity(const std::string& data_dir,
                                           const std::vector<std::string>& names);

}  // namespace verge::cloud
