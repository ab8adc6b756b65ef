// Bootstrap tokens (for joining nodes) and the admin API token. Only hashes are stored.
// Thread-safety: thread-safe (the Store is).
#pragma once

#include <string>
#include <vector>

#include "cloud/model.h"
#include "cloud/store.h"
#include "common/clock.h"
#include "common/duration.h"

namespace verge::cloud {

struct NewToken {
  std::string token;  // the whole verge1.… string; shown once
  BootstrapToken record;
};

class TokenService {
 public:
  TokenService(Store& store, const Clock& clock, std::string ca_fingerprint)
      : store_(store), clock_(clock), ca_fingerprint_(std::move(ca_fingerprint)) {}

  // ttl 0: never expires.
  Result<NewToken> Create(Millis ttl, const std::string& description);
  Result<std::vector<BootstrapToken>> List() { return store_.ListTokens(); }
  Status Revoke(const std::string& id) { return store_.RevokeToken(id); }
  // Checks a JoinRequest credential "<id>.<secret>"; counts a use on success.
  Result<BootstrapToken> Validate(const std::string& credential);

  // Admin API token: created on first start, kept hashed in the store's meta table.
  Result<std::optional<std::string>> EnsureAdminToken();  // the token when newly created
  bool CheckAdminToken(std::string_view bearer) const;

 private:
  Store& store_;
  const Clock& clock_;
  std::string ca_fingerprint_;
  std::string admin_hash_;
};

}  // namespace verge::cloud
