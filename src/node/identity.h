// The node's identity on disk (DATA/identity/): its private key (generated here, never
// sent anywhere), the certificate the cloud issued, the cloud CA, and identity.json naming
// the node and its cloud. Written once by Join, read at every start.
// Thread-safety: functions are thread-safe on distinct data dirs.
#pragma once

#include <string>

#include "common/clock.h"
#include "common/status.h"

namespace verge::node {

struct NodeIdentity {
  std::string name;
  std::string cloud;  // HOST:PORT the node joined through
  std::string key_pem;
  std::string cert_pem;
  std::string ca_pem;
  std::string cert_serial;
  int64_t cert_not_after_ms = 0;
};

// kNotFound when the node has not joined yet; kDataLoss with a remedy when the files are
// damaged or do not belong together.
Result<NodeIdentity> LoadIdentity(const std::string& data_dir, const Clock& clock);

// Verifies the cloud against the token's CA pin, sends a CSR, stores what comes back.
// kUnauthenticated / kAlreadyExists / kInvalidArgument are final (a person must act);
// kUnavailable means "try again later".
Result<NodeIdentity> Join(const std::string& data_dir, const std::string& cloud,
                          const std::string& token, const std::string& name, const Clock& clock);

}  // namespace verge::node
