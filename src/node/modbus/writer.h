// One Modbus TCP write, for rule actions (device commands: a set point, a relay). Each write
// opens its own connection, so it never waits behind the poller's reads of the same device,
// and a device that is down fails the write (which the action retries) without affecting
// polling. Devices allow few connections; writes are rare enough for that.
// Thread-safety: pure function (blocking: up to twice the device's timeout).
#pragma once

#include "common/status.h"
#include "node/modbus/registers.h"

namespace verge::modbus {

// Writes `value` to `device`: a coil (false when value is 0, true otherwise) when `coil`,
// else holding registers encoded as `spec` says (type, byte and word order, scale and offset
// reversed). kUnavailable when the device cannot be reached or answers with an exception,
// kInvalidArgument when the value does not fit the type.
Status Write(const ModbusDevice& device, bool coil, const RegisterSpec& spec, double value);

}  // namespace verge::modbus
