#include "node/modbus/registers.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <map>
#include <set>

namespace verge::modbus {
namespace {

uint16_t Swap16(uint16_t r) { return static_cast<uint16_t>((r >> 8) | (r << 8)); }

template <typename E, size_t N>
Result<E> ParseName(std::string_view what, std::string_view text,
                    const std::pair<E, std::string_view> (&names)[N]) {
  std::string choices;
  for (const auto& [value, name] : names) {
    if (text == name) return value;
    if (!choices.empty()) choices += ", ";
    choices += name;
  }
  return Error(Code::kInvalidArgument, "unknown {} \"{}\" (expected one of: {})", what, text,
               choices);
}

constexpr std::pair<RegisterSpec::Kind, std::string_view> kKinds[] = {
    {RegisterSpec::kHolding, "holding"}, {RegisterSpec::kInput, "input"}};
constexpr std::pair<RegisterSpec::Type, std::string_view> kTypes[] = {
    {RegisterSpec::kInt16, "int16"},
    {RegisterSpec::kUInt16, "uint16"},
    {RegisterSpec::kInt32, "int32"},
    {RegisterSpec::kUInt32, "uint32"},
    {RegisterSpec::kFloat32, "float32"}};
constexpr std::pair<RegisterSpec::Order, std::string_view> kOrders[] = {
    {RegisterSpec::kBig, "big"}, {RegisterSpec::kLittle, "little"}};

template <typename E, size_t N>
std::string_view NameOf(E value, const std::pair<E, std::string_view> (&names)[N]) {
  for (const auto& [v, name] : names) {
    if (v == value) return name;
  }
  return "invalid";
}

template <typename E, size_t N>
bool Known(E value, const std::pair<E, std::string_view> (&names)[N]) {
  return NameOf(value, names) != "invalid";
}

// The range of raw values each integer type can carry.
std::pair<double, double> RawRange(RegisterSpec::Type type) {
  switch (type) {
    case RegisterSpec::kInt16:
      return {std::numeric_limits<int16_t>::min(), std::numeric_limits<int16_t>::max()};
    case RegisterSpec::kUInt16:
      return {0, std::numeric_limits<uint16_t>::max()};
    case RegisterSpec::kInt32:
      return {std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max()};
    case RegisterSpec::kUInt32:
      return {0, std::numeric_limits<uint32_t>::max()};
    case RegisterSpec::kFloat32:
      break;
  }
  return {-std::numeric_limits<float>::max(), std::numeric_limits<float>::max()};
}

}  // namespace

int RegisterCount(RegisterSpec::Type type) {
  return type == RegisterSpec::kInt16 || type == RegisterSpec::kUInt16 ? 1 : 2;
}

std::string_view KindName(RegisterSpec::Kind kind) { return NameOf(kind, kKinds); }
std::string_view TypeName(RegisterSpec::Type type) { return NameOf(type, kTypes); }
std::string_view OrderName(RegisterSpec::Order order) { return NameOf(order, kOrders); }

Result<RegisterSpec::Kind> ParseKind(std::string_view text) {
  return ParseName("register kind", text, kKinds);
}
Result<RegisterSpec::Type> ParseType(std::string_view text) {
  return ParseName("register type", text, kTypes);
}
Result<RegisterSpec::Order> ParseOrder(std::string_view text) {
  return ParseName("byte/word order", text, kOrders);
}

Status Validate(const ModbusDevice& device) {
  std::vector<std::string> errors;
  std::string dev = device.name.empty() ? "device" : fmt::format("device \"{}\"", device.name);
  if (device.name.empty()) errors.push_back("device: name is empty");
  if (device.host.empty()) errors.push_back(dev + ": host is empty");
  if (device.port < 1 || device.port > 65535) {
    errors.push_back(fmt::format("{}: port {} is not in 1..65535", dev, device.port));
  }
  if (!((device.unit_id >= 0 && device.unit_id <= 247) || device.unit_id == 255)) {
    errors.push_back(fmt::format("{}: unit_id {} is not in 0..247 or 255", dev, device.unit_id));
  }
  if (device.timeout <= Millis(0) || device.timeout > Millis(60'000)) {
    errors.push_back(
        fmt::format("{}: timeout {}ms is not in 1ms..60s", dev, device.timeout.count()));
  }
  if (device.registers.empty()) errors.push_back(dev + ": no registers");
  std::set<std::string> metrics;
  for (size_t i = 0; i < device.registers.size(); ++i) {
    const RegisterSpec& r = device.registers[i];
    std::string reg = r.metric.empty() ? fmt::format("{}: register #{}", dev, i + 1)
                                       : fmt::format("{}: register \"{}\"", dev, r.metric);
    if (r.metric.empty()) errors.push_back(reg + ": metric name is empty");
    if (!r.metric.empty() && !metrics.insert(r.metric).second) {
      errors.push_back(reg + ": metric name used twice");
    }
    if (!Known(r.kind, kKinds)) errors.push_back(reg + ": invalid kind");
    if (!Known(r.byte_order, kOrders)) errors.push_back(reg + ": invalid byte order");
    if (!Known(r.word_order, kOrders)) errors.push_back(reg + ": invalid word order");
    if (!Known(r.type, kTypes)) {
      errors.push_back(reg + ": invalid type");
    } else if (r.address < 0 || r.address + RegisterCount(r.type) - 1 > kMaxAddress) {
      errors.push_back(fmt::format("{}: address {} ({}, {} register(s)) is not in 0..{}", reg,
                                   r.address, TypeName(r.type), RegisterCount(r.type),
                                   kMaxAddress));
    }
    if (!std::isfinite(r.scale) || r.scale == 0) {
      errors.push_back(fmt::format("{}: scale {} must be finite and non-zero", reg, r.scale));
    }
    if (!std::isfinite(r.offset)) {
      errors.push_back(fmt::format("{}: offset {} must be finite", reg, r.offset));
    }
    if (r.interval <= Millis(0)) {
      errors.push_back(fmt::format("{}: interval {}ms must be positive", reg, r.interval.count()));
    }
  }
  if (errors.empty()) return Status::Ok();
  std::string msg;
  for (const auto& e : errors) {
    if (!msg.empty()) msg += "; ";
    msg += e;
  }
  return Status(Code::kInvalidArgument, msg);
}

Result<double> Decode(std::span<const uint16_t> regs, const RegisterSpec& spec) {
  const size_t want = static_cast<size_t>(RegisterCount(spec.type));
  if (regs.size() != want) {
    return Error(Code::kInvalidArgument, "\"{}\": {} needs {} register(s), got {}", spec.metric,
                 TypeName(spec.type), want, regs.size());
  }
  auto fix = [&](uint16_t r) { return spec.byte_order == RegisterSpec::kLittle ? Swap16(r) : r; };
  double raw = 0;
  if (want == 1) {
    uint16_t r = fix(regs[0]);
    raw = spec.type == RegisterSpec::kInt16 ? static_cast<double>(static_cast<int16_t>(r))
                                            : static_cast<double>(r);
  } else {
    bool high_first = spec.word_order == RegisterSpec::kBig;
    uint32_t hi = fix(high_first ? regs[0] : regs[1]);
    uint32_t lo = fix(high_first ? regs[1] : regs[0]);
    uint32_t u = (hi << 16) | lo;
    switch (spec.type) {
      case RegisterSpec::kInt32:
        raw = static_cast<int32_t>(u);
        break;
      case RegisterSpec::kUInt32:
        raw = u;
        break;
      default: {
        float f = std::bit_cast<float>(u);
        if (!std::isfinite(f)) {
          return Error(Code::kDataLoss, "\"{}\": float32 register value is {} (0x{:08X})",
                       spec.metric, std::isnan(f) ? "NaN" : "infinite", u);
        }
        raw = f;
      }
    }
  }
  double value = raw * spec.scale + spec.offset;
  if (!std::isfinite(value)) {
    return Error(Code::kDataLoss, "\"{}\": scaled value is not finite", spec.metric);
  }
  return value;
}

Result<std::vector<uint16_t>> Encode(double value, const RegisterSpec& spec) {
  if (!std::isfinite(value) || !std::isfinite(spec.scale) || spec.scale == 0) {
    return Error(Code::kInvalidArgument, "\"{}\": cannot encode {} with scale {}", spec.metric,
                 value, spec.scale);
  }
  double raw = (value - spec.offset) / spec.scale;
  if (spec.type != RegisterSpec::kFloat32) raw = std::round(raw);
  auto [lo_raw, hi_raw] = RawRange(spec.type);
  if (!(raw >= lo_raw && raw <= hi_raw)) {
    return Error(Code::kInvalidArgument, "\"{}\": {} does not fit {} with scale {} offset {}",
                 spec.metric, value, TypeName(spec.type), spec.scale, spec.offset);
  }
  auto fix = [&](uint32_t r) {
    auto w = static_cast<uint16_t>(r);
    return spec.byte_order == RegisterSpec::kLittle ? Swap16(w) : w;
  };
  uint32_t u = 0;
  switch (spec.type) {
    case RegisterSpec::kInt16:
      return std::vector<uint16_t>{fix(static_cast<uint16_t>(static_cast<int16_t>(raw)))};
    case RegisterSpec::kUInt16:
      return std::vector<uint16_t>{fix(static_cast<uint16_t>(raw))};
    case RegisterSpec::kInt32:
      u = static_cast<uint32_t>(static_cast<int32_t>(raw));
      break;
    case RegisterSpec::kUInt32:
      u = static_cast<uint32_t>(raw);
      break;
    case RegisterSpec::kFloat32:
      u = std::bit_cast<uint32_t>(static_cast<float>(raw));
      break;
  }
  uint16_t hi = fix(u >> 16), lo = fix(u & 0xFFFF);
  if (spec.word_order == RegisterSpec::kBig) return std::vector<uint16_t>{hi, lo};
  return std::vector<uint16_t>{lo, hi};
}

std::vector<ReadBlock> PlanReads(const ModbusDevice& device) {
  // Group by (kind, interval); within a group, walk registers by address.
  std::map<std::pair<int, int64_t>, std::vector<size_t>> groups;
  for (size_t i = 0; i < device.registers.size(); ++i) {
    const RegisterSpec& r = device.registers[i];
    groups[{static_cast<int>(r.kind), r.interval.count()}].push_back(i);
  }
  std::vector<ReadBlock> blocks;
  for (auto& [key, indices] : groups) {
    std::stable_sort(indices.begin(), indices.end(), [&](size_t a, size_t b) {
      return device.registers[a].address < device.registers[b].address;
    });
    ReadBlock* cur = nullptr;
    for (size_t i : indices) {
      const RegisterSpec& r = device.registers[i];
      int end = r.address + RegisterCount(r.type);
      if (cur && r.address <= cur->start + cur->count &&
          std::max(end, cur->start + cur->count) - cur->start <= kMaxReadRegisters) {
        cur->count = std::max(end, cur->start + cur->count) - cur->start;
        cur->registers.push_back(i);
        continue;
      }
      blocks.push_back(ReadBlock{r.kind, r.address, end - r.address, r.interval, {i}});
      cur = &blocks.back();
    }
  }
  return blocks;
}

}  // namespace verge::modbus
