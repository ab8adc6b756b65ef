// The files the node's Mosquitto runs on: mosquitto.conf, the password file and the ACL file,
// rendered from the device list and the broker settings. Pure functions, kept apart from
// process supervision (broker.h) so that each file is unit-tested line for line; MosquittoBroker
// writes them atomically with mode 0600.
//
// Password file: one `name:hash` line per device plus the node's own account (kNodeUser).
// ACL file: the node's account reads every device's telemetry and writes rejections; each
// device writes under devices/<name>/ only, and reads its own rejections:
//   user verge-node                     user dev1
//   topic read devices/+/telemetry      topic write devices/dev1/#
//   topic write devices/+/rejected      topic read devices/dev1/rejected
//
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace verge::mqtt {

// A device as the broker knows it: its name is its MQTT username, and the hash of its token is
// its password (`$7$` format, computed by the cloud; see password.h).
struct BrokerDevice {
  std::string name;
  std::string password_hash;

  bool operator==(const BrokerDevice&) const = default;
};

struct HostPort {
  std::string host;
  int port = 0;

  bool operator==(const HostPort&) const = default;
};

// "HOST:PORT", with an IPv6 HOST in brackets ("[::]:1883"); PORT in 1..65535.
Result<HostPort> ParseHostPort(std::string_view text);

// Every problem with a device list at once, or Ok. A name must be a valid device name
// (data::IsValidName) without ':' (the password file's separator), must not be kNodeUser, and
// must be unique; a hash must pass IsPasswordHash.
Status ValidateDevices(const std::vector<BrokerDevice>& devices);

// Where the broker's files live in its work dir (DATA/mqtt).
struct BrokerPaths {
  explicit BrokerPaths(const std::string& work_dir);

  std::string work_dir;
  std::string conf;         // mosquitto.conf
  std::string passwd;       // passwd
  std::string acl;          // acl
  std::string persistence;  // persistence/ (Mosquitto wants the trailing slash)
  std::string log;          // mosquitto.log: the broker's stdout and stderr
  std::string pid;          // mosquitto.pid: written by the node, not by Mosquitto
};

// The settings in mosquitto.conf besides paths.
struct BrokerSettings {
  HostPort listen;
  // Mosquitto started as root switches to this user before it reads the password and ACL files
  // and writes its persistence file. "root" keeps root (the node's data dir is root's and 0700,
  // so no other user could read them); empty writes no `user` line, which is right when the
  // node does not run as root (Mosquitto then cannot switch users anyway).
  std::string run_as_user;
  size_t max_queued_messages = 1'000'000;
  uint64_t max_queued_bytes = 256ull << 20;
  int max_inflight_messages = 100;
  int autosave_interval_s = 10;
  // Larger MQTT packets make Mosquitto disconnect the client that sent them.
  uint32_t max_packet_size = 2u << 20;
};

std::string RenderConfig(const BrokerPaths& paths, const BrokerSettings& settings);
// The node's account first, then `devices` in the given order. `devices` empty renders the
// gated file that admits only the node (see MosquittoBroker).
std::string RenderPasswordFile(std::string_view node_password_hash,
                               const std::vector<BrokerDevice>& devices);
// `rejections`: whether devices may read (and the node write) devices/<name>/rejected.
std::string RenderAcl(const std::vector<BrokerDevice>& devices, bool rejections);

}  // namespace verge::mqtt
