#include "cloud/devices.h"

#include <spdlog/spdlog.h>

#include "cloud/device_credentials.h"
#include "cloud/device_spec.h"
#include "common/pki.h"

namespace verge::cloud {
namespace {

void SetToken(Device& d, const std::string& token) {
  d.token_sha256 = pki::Sha256Hex(token);
  d.mqtt_password_hash = MosquittoPasswordHash(token);
}

}  // namespace

Result<DeviceWithToken> DeviceService::Create(std::string_view body) {
  auto node_exists = [this](const std::string& n) { return registry_.Get(n).has_value(); };
  VERGE_ASSIGN_OR_RETURN(auto req, ParseDeviceRequest(body, "", node_exists));
  DeviceWithToken out;
  Device& d = out.device;
  d.name = req.name;
  d.node = req.node;
  d.spec = std::move(req.spec);
  d.created_ms = d.updated_ms = clock_.WallMs();
  out.token = NewDeviceToken();
  SetToken(d, out.token);
  std::lock_guard lock(mu_);
  VERGE_ASSIGN_OR_RETURN(auto bumps, store_.InsertDevice(d));
  Changed(bumps);
  spdlog::info("device {} declared on node {}", d.name, d.node);
  return out;
}

Result<Device> DeviceService::Replace(const std::string& name, std::string_view body) {
  auto node_exists = [this](const std::string& n) { return registry_.Get(n).has_value(); };
  VERGE_ASSIGN_OR_RETURN(auto req, ParseDeviceRequest(body, name, node_exists));
  std::lock_guard lock(mu_);
  VERGE_ASSIGN_OR_RETURN(auto existing, store_.GetDevice(name));
  if (!existing) return Error(Code::kNotFound, "device \"{}\" not found", name);
  Device d = std::move(*existing);
  d.node = req.node;
  d.spec = std::move(req.spec);
  d.updated_ms = clock_.WallMs();
  VERGE_ASSIGN_OR_RETURN(auto bumps, store_.UpdateDevice(d));
  Changed(bumps);
  return d;
}

Status DeviceService::Delete(const std::string& name) {
  std::lock_guard lock(mu_);
  VERGE_ASSIGN_OR_RETURN(auto bumps, store_.DeleteDevice(name));
  Changed(bumps);
  spdlog::info("device {} deleted", name);
  return Status::Ok();
}

Result<DeviceWithToken> DeviceService::RotateToken(const std::string& name) {
  std::lock_guard lock(mu_);
  VERGE_ASSIGN_OR_RETURN(auto existing, store_.GetDevice(name));
  if (!existing) return Error(Code::kNotFound, "device \"{}\" not found", name);
  DeviceWithToken out;
  out.device = std::move(*existing);
  out.token = NewDeviceToken();
  SetToken(out.device, out.token);
  out.device.updated_ms = clock_.WallMs();
  VERGE_ASSIGN_OR_RETURN(auto bumps, store_.UpdateDevice(out.device));
  Changed(bumps);
  spdlog::info("token of device {} rotated", name);
  return out;
}

Result<Device> DeviceService::Get(const std::string& name) {
  VERGE_ASSIGN_OR_RETURN(auto d, store_.GetDevice(name));
  if (!d) return Error(Code::kNotFound, "device \"{}\" not found", name);
  return std::move(*d);
}

void DeviceService::Changed(const std::vector<Store::VersionBump>& bumps) {
  for (const auto& b : bumps) {
    registry_.OnDesiredVersion(b.node, b.version);
    sink_.DesiredStateChanged(b.node);
  }
}

}  // namespace verge::cloud
