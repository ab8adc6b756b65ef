#include "node/mqtt/password.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <charconv>
#include <optional>
#include <vector>

namespace verge::mqtt {
namespace {

constexpr size_t kKeyBytes = 64;  // SHA-512 output, what mosquitto_passwd derives

std::string Base64(std::string_view raw) {
  std::string out(4 * ((raw.size() + 2) / 3), '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(raw.data()),
                          static_cast<int>(raw.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

int Base64Value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

// Strict standard base64 with padding (what Mosquitto writes); nullopt for anything else.
// Written out because EVP_DecodeBlock skips whitespace and keeps the padding's zero bytes.
std::optional<std::string> Unbase64(std::string_view text) {
  if (text.empty() || text.size() % 4 != 0) return std::nullopt;
  size_t pad = 0;
  if (text.back() == '=') ++pad;
  if (text.size() >= 2 && text[text.size() - 2] == '=') ++pad;
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (size_t i = 0; i < text.size(); i += 4) {
    uint32_t group = 0;
    for (size_t j = 0; j < 4; ++j) {
      char c = text[i + j];
      int v = Base64Value(c);
      bool padding = c == '=' && i + j >= text.size() - pad;
      if (v < 0 && !padding) return std::nullopt;
      group = group << 6 | static_cast<uint32_t>(v < 0 ? 0 : v);
    }
    out.push_back(static_cast<char>(group >> 16));
    out.push_back(static_cast<char>(group >> 8 & 0xFF));
    out.push_back(static_cast<char>(group & 0xFF));
  }
  out.resize(out.size() - pad);
  return out;
}

std::vector<std::string_view> SplitDollar(std::string_view s) {
  std::vector<std::string_view> parts;
  size_t pos = 0;
  for (;;) {
    size_t next = s.find('$', pos);
    parts.push_back(s.substr(pos, next == std::string_view::npos ? next : next - pos));
    if (next == std::string_view::npos) return parts;
    pos = next + 1;
  }
}

struct Parsed7 {
  int iterations = 0;
  std::string salt;
  std::string key;
};

std::optional<Parsed7> Parse7(std::string_view hash) {
  // "$7$101$salt$key" splits into "", "7", "101", "salt", "key".
  auto parts = SplitDollar(hash);
  if (parts.size() != 5 || !parts[0].empty() || parts[1] != "7") return std::nullopt;
  Parsed7 p;
  std::string_view it = parts[2];
  auto [end, ec] = std::from_chars(it.data(), it.data() + it.size(), p.iterations);
  if (ec != std::errc() || end != it.data() + it.size() || p.iterations < 1) {
    return std::nullopt;
  }
  auto salt = Unbase64(parts[3]);
  auto key = Unbase64(parts[4]);
  if (!salt || !key || key->size() != kKeyBytes) return std::nullopt;
  p.salt = std::move(*salt);
  p.key = std::move(*key);
  return p;
}

Result<std::string> Derive(std::string_view password, std::string_view salt, int iterations) {
  std::string key(kKeyBytes, '\0');
  if (PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()),
                        reinterpret_cast<const unsigned char*>(salt.data()),
                        static_cast<int>(salt.size()), iterations, EVP_sha512(),
                        static_cast<int>(key.size()),
                        reinterpret_cast<unsigned char*>(key.data())) != 1) {
    return Error(Code::kInternal, "PBKDF2 failed");
  }
  return key;
}

}  // namespace

Result<std::string> HashPassword(std::string_view password, std::string_view salt, int iterations) {
  if (salt.empty()) return Error(Code::kInvalidArgument, "empty salt");
  if (iterations < 1) return Error(Code::kInvalidArgument, "iterations must be >= 1");
  VERGE_ASSIGN_OR_RETURN(std::string key, Derive(password, salt, iterations));
  return "$7$" + std::to_string(iterations) + "$" + Base64(salt) + "$" + Base64(key);
}

Result<std::string> HashPassword(std::string_view password) {
  std::string salt(kSaltBytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(salt.data()), static_cast<int>(salt.size())) !=
      1) {
    return Error(Code::kInternal, "no random bytes for a salt");
  }
  return HashPassword(password, salt);
}

bool IsPasswordHash(std::string_view hash) {
  if (Parse7(hash)) return true;
  auto parts = SplitDollar(hash);
  if (parts.size() != 4 || !parts[0].empty() || parts[1] != "6") return false;
  auto salt = Unbase64(parts[2]);
  auto digest = Unbase64(parts[3]);
  return salt && digest && digest->size() == kKeyBytes;
}

bool VerifyPassword(std::string_view password, std::string_view hash) {
  auto p = Parse7(hash);
  if (!p) return false;
  auto key = Derive(password, p->salt, p->iterations);
  return key.ok() && CRYPTO_memcmp(key->data(), p->key.data(), kKeyBytes) == 0;
}

Result<std::string> RandomPassword() {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  unsigned char raw[32];
  if (RAND_bytes(raw, sizeof raw) != 1) return Error(Code::kInternal, "no random bytes");
  std::string out;
  for (unsigned char b : raw) out.push_back(kAlphabet[b & 63]);
  return out;
}

}  // namespace verge::mqtt
