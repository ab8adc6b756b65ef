// DeviceService: declaring, changing and removing devices, and rotating their tokens. Every
// change is one store transaction that also bumps the desired-state version of each node it
// touches; the service then tells the DesiredStateSink (the LinkService), which pushes the
// new document to those nodes if they are connected. Tokens are made here, returned once, and
// only their hashes are kept.
//
// Thread-safety: thread-safe. Changes are serialised by one mutex, so that a token rotation
// and a concurrent replace cannot lose each other's write; reads are not.
#pragma once

#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "cloud/model.h"
#include "cloud/registry.h"
#include "cloud/store.h"
#include "common/clock.h"

namespace verge::cloud {

// Told after a committed change of a node's devices. Called on the thread that made the
// change (an API thread); must not block for long.
class DesiredStateSink {
 public:
  virtual ~DesiredStateSink() = default;
  virtual void DesiredStateChanged(const std::string& node) = 0;
};

struct DeviceWithToken {
  Device device;
  std::string token;  // shown once
};

class DeviceService {
 public:
  DeviceService(Store& store, Registry& registry, DesiredStateSink& sink, const Clock& clock)
      : store_(store), registry_(registry), sink_(sink), clock_(clock) {}

  // POST /api/v1/devices body. kInvalidArgument with every problem; kAlreadyExists.
  Result<DeviceWithToken> Create(std::string_view body);
  // PUT /api/v1/devices/NAME body: replaces node, labels and spec; the token is kept.
  Result<Device> Replace(const std::string& name, std::string_view body);
  Status Delete(const std::string& name);
  // A new token; the old one stops working once the node applies the new desired state.
  Result<DeviceWithToken> RotateToken(const std::string& name);

  Result<Device> Get(const std::string& name);
  // node "" lists every device.
  Result<std::vector<Device>> List(const std::string& node) { return store_.ListDevices(node); }

 private:
  void Changed(const std::vector<Store::VersionBump>& bumps);

  Store& store_;
  Registry& registry_;
  DesiredStateSink& sink_;
  const Clock& clock_;
  std::mutex mu_;  // serialises changes
};

}  // namespace verge::cloud
