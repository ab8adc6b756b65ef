#include "cloud/tokens.h"

#include "common/bootstrap_token.h"
#include "common/pki.h"

namespace verge::cloud {

Result<NewToken> TokenService::Create(Millis ttl, const std::string& description) {
  if (ttl.count() < 0) return Error(Code::kInvalidArgument, "ttl must not be negative");
  BootstrapTokenParts parts{ca_fingerprint_, pki::RandomToken(6), pki::RandomToken(16)};
  BootstrapToken rec;
  rec.id = parts.id;
  rec.secret_hash = pki::Sha256Hex(parts.secret);
  rec.description = description;
  rec.created_ms = clock_.WallMs();
  rec.expires_ms = ttl.count() == 0 ? 0 : rec.created_ms + ttl.count();
  VERGE_RETURN_IF_ERROR(store_.InsertToken(rec));
  return NewToken{FormatBootstrapToken(parts), rec};
}

Result<BootstrapToken> TokenService::Validate(const std::string& credential) {
  auto parts = ParseJoinCredential(credential);
  if (!parts.ok()) return Error(Code::kUnauthenticated, "invalid bootstrap token");
  VERGE_ASSIGN_OR_RETURN(auto rec, store_.GetToken(parts->id));
  if (!rec || !pki::ConstantTimeEquals(rec->secret_hash, pki::Sha256Hex(parts->secret))) {
    return Error(Code::kUnauthenticated, "invalid bootstrap token");
  }
  if (rec->revoked) {
    return Error(Code::kUnauthenticated, "bootstrap token {} has been revoked", rec->id);
  }
  if (rec->expires_ms != 0 && clock_.WallMs() >= rec->expires_ms) {
    return Error(Code::kUnauthenticated, "bootstrap token {} expired at {}", rec->id,
                 FormatTimeMs(rec->expires_ms));
  }
  VERGE_RETURN_IF_ERROR(store_.CountTokenUse(rec->id));
  return *rec;
}

Result<std::optional<std::string>> TokenService::EnsureAdminToken() {
  VERGE_ASSIGN_OR_RETURN(auto existing, store_.GetMeta("admin_token_sha256"));
  if (existing) {
    admin_hash_ = *existing;
    return std::optional<std::string>();
  }
  std::string token = "vadm_" + pki::RandomToken(40);
  admin_hash_ = pki::Sha256Hex(token);
  VERGE_RETURN_IF_ERROR(store_.PutMeta("admin_token_sha256", admin_hash_));
  return std::optional<std::string>(token);
}

bool TokenService::CheckAdminToken(std::string_view bearer) const {
  if (admin_hash_.empty() || bearer.empty()) return false;
  return pki::ConstantTimeEquals(admin_hash_, pki::Sha256Hex(bearer));
}

}  // namespace verge::cloud
