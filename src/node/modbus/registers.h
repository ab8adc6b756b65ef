// Modbus register maps: how one device lays out its values in 16-bit registers, how to turn
// the registers read back into numbers (Decode) and numbers into registers (Encode, used by
// the device simulator and tests), and how a device's map is split into as few read requests
// as possible (PlanReads).
//
// Byte and word order. Modbus moves 16-bit registers big-endian on the wire, but devices
// disagree on how they lay a value out inside them. `byte_order` says whether the two bytes
// of each register are swapped (kLittle); `word_order` says which register of a 32-bit value
// holds the high word (kBig: the first one). With bytes A (most significant) to D of a 32-bit
// value, the four combinations are:
//   byte big,    word big    -> ABCD  (the Modbus default)
//   byte big,    word little -> CDAB  (common on PLCs: "word swap")
//   byte little, word big    -> BADC  ("byte swap")
//   byte little, word little -> DCBA
// Word order means nothing for 16-bit types.
//
// Unit identifiers: Modbus TCP devices accept 1..247 like serial slaves; gateways route by it.
// 255 is the value the Modbus TCP specification recommends for a server that is not a
// gateway, and 0 is what many such servers answer to, so both are accepted too, exactly the
// set libmodbus accepts. 248..254 are reserved and rejected.
//
// Thread-safety: plain values and pure functions.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/duration.h"
#include "common/status.h"

namespace verge::modbus {

// A read request may carry at most this many registers (Modbus application protocol, 6.3).
inline constexpr int kMaxReadRegisters = 125;
inline constexpr int kMaxAddress = 65535;

struct RegisterSpec {
  enum Kind { kHolding, kInput };
  enum Type { kInt16, kUInt16, kInt32, kUInt32, kFloat32 };
  enum Order { kBig, kLittle };

  std::string metric;
  int address = 0;  // 0-based protocol address of the first register (not 40001-style)
  Kind kind = kHolding;
  Type type = kUInt16;
  Order byte_order = kBig;
  Order word_order = kBig;
  // value = raw * scale + offset
  double scale = 1;
  double offset = 0;
  Millis interval{1000};

  bool operator==(const RegisterSpec&) const = default;
};

struct ModbusDevice {
  std::string name;  // the device name readings carry
  std::string host;  // IP address or host name
  int port = 502;
  int unit_id = 1;
  // Bounds connecting and each request/response exchange.
  Millis timeout{1000};
  std::vector<RegisterSpec> registers;

  bool operator==(const ModbusDevice&) const = default;
};

// How many 16-bit registers a value of `type` takes: 1 or 2.
int RegisterCount(RegisterSpec::Type type);

// Names as they appear in config files and in `verge-devsim modbus --print-map`.
std::string_view KindName(RegisterSpec::Kind kind);     // "holding" "input"
std::string_view TypeName(RegisterSpec::Type type);     // "int16" "uint16" "int32" ...
std::string_view OrderName(RegisterSpec::Order order);  // "big" "little"
Result<RegisterSpec::Kind> ParseKind(std::string_view text);
Result<RegisterSpec::Type> ParseType(std::string_view text);
Result<RegisterSpec::Order> ParseOrder(std::string_view text);

// Checks a device's settings without touching the network; the message lists every problem
// found, separated by "; ", so a user fixes a config file in one pass.
Status Validate(const ModbusDevice& device);

// The value of the registers `regs` (exactly RegisterCount(spec.type) of them, as read from
// the device) under `spec`. Fails on a wrong register count, a float32 NaN or infinity (a
// device's "no value"), or a result that is not finite after scaling.
Result<double> Decode(std::span<const uint16_t> regs, const RegisterSpec& spec);

// The registers that Decode turns back into `value` (integer types round to the nearest raw
// value). Fails when the raw value does not fit the type.
Result<std::vector<uint16_t>> Encode(double value, const RegisterSpec& spec);

// One read request: `count` registers of `kind` from `start`, polled every `interval`,
// carrying the values of device.registers[i] for each i in `registers`.
struct ReadBlock {
  RegisterSpec::Kind kind = RegisterSpec::kHolding;
  int start = 0;
  int count = 0;
  Millis interval{0};
  std::vector<size_t> registers;

  bool operator==(const ReadBlock&) const = default;
};

// Groups a (valid) device's registers into read requests: registers of the same kind and
// interval whose address ranges touch or overlap share one request of at most
// kMaxReadRegisters. Gaps are never read across, since devices answer unmapped addresses
// with an exception that would fail the whole request. Ordered by kind, interval, start.
std::vector<ReadBlock> PlanReads(const ModbusDevice& device);

}  // namespace verge::modbus
