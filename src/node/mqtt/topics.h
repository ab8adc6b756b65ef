// The MQTT topics of device ingest, shared by the broker's ACL, the node's subscriber and tests:
//   devices/<device>/telemetry   a device publishes JSON readings here (the node reads it);
//   devices/<device>/rejected    the node publishes what it rejected from that device.
// <device> is the device's name, which is also its MQTT username.
// Thread-safety: pure functions.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace verge::mqtt {

// What the node subscribes to: every device's telemetry.
inline constexpr std::string_view kTelemetryFilter = "devices/+/telemetry";
// The username and client id prefix of the node's own subscriber; no device may take it.
inline constexpr std::string_view kNodeUser = "verge-node";

std::string TelemetryTopic(std::string_view device);
std::string RejectedTopic(std::string_view device);

// The device of a topic "devices/<device>/telemetry" whose <device> is a valid device name
// (data::IsValidName); nullopt for any other topic. The broker's ACL already keeps devices to
// their own topics; this guards against what an external broker lets through.
std::optional<std::string_view> DeviceOfTelemetryTopic(std::string_view topic);

// The client id of a node's subscriber, "verge-node-<node name>": fixed per node, so that the
// broker keeps one persistent session for it across reconnects and restarts.
std::string NodeClientId(std::string_view node_name);

}  // namespace verge::mqtt
