// Devices as the REST API and the store write them: the JSON body of POST/PUT
// /api/v1/devices (parsed and validated with every problem reported at once, never an
// exception), the JSON the API answers with (never a hash), the `spec` column of the store,
// and the verge.v1.Device a node receives. Field rules are in docs/api.md.
// Thread-safety: pure functions.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "cloud/model.h"
#include "common/status.h"
#include "verge/v1/link.pb.h"

namespace verge::cloud {

// Device and metric names: 1-64 characters of [A-Za-z0-9_.:-] (the node's ingest rule, so that
// every name the cloud accepts can carry readings).
bool IsValidDeviceName(std::string_view name);

struct DeviceRequest {
  std::string name;
  std::string node;
  DeviceSpec spec;
};

// Parses a POST (path_name empty: the body names the device) or PUT (path_name from the URL; a
// "name" in the body must match it) body. `node_exists` is asked about the node; an unknown
// node is one more error in the same answer. Read-only fields the API returns (createdAt,
// updatedAt) are accepted and ignored, so a GET answer can be PUT back.
Result<DeviceRequest> ParseDeviceRequest(
    std::string_view body, std::string_view path_name,
    const std::function<bool(const std::string&)>& node_exists);

// The spec, as the API shows it and the store keeps it ("metrics", "allowUndeclared", "modbus").
nlohmann::json DeviceSpecJson(const DeviceSpec& spec);
// Reads what DeviceSpecJson wrote (labels are not part of it), applying the same validation.
Result<DeviceSpec> DeviceSpecFromJson(const nlohmann::json& j);

// The API's device object: name, node, labels, spec fields, createdAt, updatedAt.
nlohmann::json DeviceJson(const Device& d);

// The device as its node receives it in a DesiredState, hashes included.
void DeviceToProto(const Device& d, v1::Device* out);

}  // namespace verge::cloud
