#include "cloud/device_credentials.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <charconv>
#include <vector>

#include "common/pki.h"

namespace verge::cloud {
namespace {

std::string Base64(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(bytes.data()),
                          static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

// Decodes padded base64; nullopt if malformed.
std::optional<std::string> Unbase64(std::string_view text) {
  if (text.empty() || text.size() % 4 != 0) return std::nullopt;
  std::string out(text.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(text.data()),
                          static_cast<int>(text.size()));
  if (n < 0) return std::nullopt;
  // EVP_DecodeBlock counts the padding as zero bytes; drop them.
  size_t pad = text.ends_with("==") ? 2 : text.ends_with('=') ? 1 : 0;
  out.resize(static_cast<size_t>(n) - pad);
  return out;
}

}  // namespace

std::string NewDeviceToken() {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  std::string out = "vdev_";
  while (out.size() < 5 + 32) {
    unsigned char c = 0;
    if (RAND_bytes(&c, 1) != 1) std::abort();  // no entropy: nothing safe to hand out
    if (c < 248) out += kAlphabet[c % 62];     // 248 = 4*62: no modulo bias
  }
  return out;
}

std::string MosquittoPasswordHash(std::string_view password, std::string_view salt,
                                  int iterations) {
  unsigned char hash[64];
  PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()),
                    reinterpret_cast<const unsigned char*>(salt.data()),
                    static_cast<int>(salt.size()), iterations, EVP_sha512(), sizeof hash, hash);
  return fmt::format("$7${}${}${}", iterations, Base64(salt),
                     Base64(std::string_view(reinterpret_cast<const char*>(hash), sizeof hash)));
}

std::string MosquittoPasswordHash(std::string_view password) {
  unsigned char salt[kMosquittoSaltBytes];
  if (RAND_bytes(salt, sizeof salt) != 1) std::abort();
  return MosquittoPasswordHash(password,
                               std::string_view(reinterpret_cast<const char*>(salt), sizeof salt),
                               kMosquittoIterations);
}

bool CheckMosquittoPassword(std::string_view hash, std::string_view password) {
  if (!hash.starts_with("$7$")) return false;
  std::string_view rest = hash.substr(3);
  size_t d1 = rest.find('$');
  if (d1 == std::string_view::npos) return false;
  int iterations = 0;
  auto [p, ec] = std::from_chars(rest.data(), rest.data() + d1, iterations);
  if (ec != std::errc() || p != rest.data() + d1 || iterations < 1 || iterations > 10'000'000) {
    return false;
  }
  rest.remove_prefix(d1 + 1);
  size_t d2 = rest.find('$');
  if (d2 == std::string_view::npos) return false;
  auto salt = Unbase64(rest.substr(0, d2));
  if (!salt) return false;
  return pki::ConstantTimeEquals(MosquittoPasswordHash(password, *salt, iterations), hash);
}

}  // namespace verge::cloud
