// Device credentials: the token a device presents to its node (HTTP bearer token, and MQTT
// password with the device name as user name), and the two hashes of it that the cloud
// stores and ships to the node. The token itself is shown once, when made, and never kept.
//
// The MQTT hash is Mosquitto 2.0's password-file format, so that the node can write a
// password file for its broker without ever learning a token:
//   $7$<iterations>$<base64 salt>$<base64 hash>   PBKDF2-HMAC-SHA512, 12-byte salt,
//                                                 64-byte hash, 101 iterations by default,
// as mosquitto_passwd 2.0 writes it (base64 with padding, no line breaks).
//
// Thread-safety: pure functions (randomness from OpenSSL's thread-safe generator).
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"

namespace verge::cloud {

inline constexpr int kMosquittoIterations = 101;
inline constexpr size_t kMosquittoSaltBytes = 12;

// "vdev_" followed by 32 random characters of [A-Za-z0-9] (190 bits).
std::string NewDeviceToken();

// The Mosquitto "$7$" hash of `password` with a fresh random salt.
std::string MosquittoPasswordHash(std::string_view password);
// The same with a given salt and iteration count (tests compare with mosquitto_passwd).
std::string MosquittoPasswordHash(std::string_view password, std::string_view salt, int iterations);
// True if `password` matches a "$7$" hash; false for a malformed hash.
bool CheckMosquittoPassword(std::string_view hash, std::string_view password);

}  // namespace verge::cloud
