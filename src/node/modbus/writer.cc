#include "node/modbus/writer.h"

#include <modbus.h>

#include <cerrno>
#include <memory>

namespace verge::modbus {

Status Write(const ModbusDevice& device, bool coil, const RegisterSpec& spec, double value) {
  std::vector<uint16_t> regs;
  if (!coil) {
    VERGE_ASSIGN_OR_RETURN(regs, Encode(value, spec));
  }
  std::unique_ptr<modbus_t, void (*)(modbus_t*)> ctx(
      modbus_new_tcp_pi(device.host.c_str(), std::to_string(device.port).c_str()), [](modbus_t* c) {
        modbus_close(c);
        modbus_free(c);
      });
  if (!ctx)
    return Error(Code::kInvalidArgument, "cannot use {}:{}: {}", device.host, device.port,
                 modbus_strerror(errno));
  modbus_set_error_recovery(ctx.get(), MODBUS_ERROR_RECOVERY_NONE);
  if (modbus_set_slave(ctx.get(), device.unit_id) == -1)
    return Error(Code::kInvalidArgument, "unit id {}: {}", device.unit_id, modbus_strerror(errno));
  auto us = static_cast<uint32_t>(device.timeout.count() * 1000);
  modbus_set_response_timeout(ctx.get(), us / 1'000'000, us % 1'000'000);
  if (modbus_connect(ctx.get()) == -1)
    return Error(Code::kUnavailable, "connect to {} ({}:{}): {}", device.name, device.host,
                 device.port, modbus_strerror(errno));
  int rc = coil ? modbus_write_bit(ctx.get(), spec.address, value != 0 ? 1 : 0)
                : modbus_write_registers(ctx.get(), spec.address, static_cast<int>(regs.size()),
                                         regs.data());
  int want = coil ? 1 : static_cast<int>(regs.size());
  if (rc != want)
    return Error(Code::kUnavailable, "write {} at {} of {} (unit {}): {}",
                 coil ? "coil" : "register(s)", spec.address, device.name, device.unit_id,
                 modbus_strerror(rc == -1 ? errno : EMBBADDATA));
  return Status::Ok();
}

}  // namespace verge::modbus
