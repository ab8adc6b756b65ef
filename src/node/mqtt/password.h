// Mosquitto password hashes. Mosquitto 2.0 reads `name:hash` lines from its password file; the
// node writes the hash of its own internal account there and takes device hashes from the cloud,
// which computes them itself so that device secrets never reach the node. The hashing here
// serves the internal account and tests (the cloud has its own copy).
//
// The `$7$` format, as mosquitto_passwd 2.0.11 writes it:
//   "$7$" ITERATIONS "$" base64(salt) "$" base64(PBKDF2-HMAC-SHA512(password, salt, ITERATIONS))
// with a 12-byte salt, 101 iterations and a 64-byte derived key, standard base64 with padding;
// e.g. "$7$101$66J+b7vHApEzwYvk$43w39Whg...tCg==". Mosquitto also accepts the older `$6$` form
// ("$6$" base64(salt) "$" base64(SHA512(password + salt))), so IsPasswordHash does too.
//
// Thread-safety: pure functions (OpenSSL's random generator is thread-safe).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "common/status.h"

namespace verge::mqtt {

inline constexpr int kDefaultIterations = 101;
inline constexpr size_t kSaltBytes = 12;

// The `$7$` hash of `password` with a given salt (raw bytes); tests pin the salt to compare with
// mosquitto_passwd. InvalidArgument for an empty salt or iterations < 1.
Result<std::string> HashPassword(std::string_view password, std::string_view salt,
                                 int iterations = kDefaultIterations);
// The same with a fresh random 12-byte salt.
Result<std::string> HashPassword(std::string_view password);

// True if Mosquitto 2.0 can read `hash` from a password file: the `$7$` or `$6$` shape, base64
// fields that decode, a positive iteration count. Checks the shape only, so that a bad hash
// from the cloud is refused before it can break the file (or inject a line into it).
bool IsPasswordHash(std::string_view hash);

// True if `password` matches `hash` (`$7$` only).
bool VerifyPassword(std::string_view password, std::string_view hash);

// A random password for the node's internal account: 32 characters of [A-Za-z0-9_-]
// (192 random bits).
Result<std::string> RandomPassword();

}  // namespace verge::mqtt
