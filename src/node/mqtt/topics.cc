#include "node/mqtt/topics.h"

#include "node/data/payload.h"

namespace verge::mqtt {

std::string TelemetryTopic(std::string_view device) {
  return "devices/" + std::string(device) + "/telemetry";
}

std::string RejectedTopic(std::string_view device) {
  return "devices/" + std::string(device) + "/rejected";
}

std::optional<std::string_view> DeviceOfTelemetryTopic(std::string_view topic) {
  constexpr std::string_view kPrefix = "devices/";
  constexpr std::string_view kSuffix = "/telemetry";
  if (topic.size() <= kPrefix.size() + kSuffix.size() || !topic.starts_with(kPrefix) ||
      !topic.ends_with(kSuffix)) {
    return std::nullopt;
  }
  std::string_view device =
      topic.substr(kPrefix.size(), topic.size() - kPrefix.size() - kSuffix.size());
  // IsValidName excludes '/', so "devices/a/b/telemetry" fails here.
  if (!data::IsValidName(device)) return std::nullopt;
  return device;
}

std::string NodeClientId(std::string_view node_name) {
  return std::string(kNodeUser) + "-" + std::string(node_name);
}

}  // namespace verge::mqtt
