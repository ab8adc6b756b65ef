#include "node/data/clean.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <limits>
#include <unordered_set>

namespace verge::data {
namespace {

constexpr double kInfinity = std::numeric_limits<double>::infinity();

// Names from producers other than the parser are unchecked: keep what we echo short.
std::string_view Clip(std::string_view s) {
  if (s.size() <= kMaxNameLength) return s;
  size_t n = kMaxNameLength;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return s.substr(0, n);
}

std::string BadName(std::string_view what, std::string_view name) {
  return fmt::format("{} {:?} is not a valid name: want 1..{} of [A-Za-z0-9_.:-]", what, Clip(name),
                     kMaxNameLength);
}

struct Problem {
  RejectReason reason;  // what the readings of a metric with this problem are rejected with
  std::string message;
};

// What makes a spec unusable, apart from its name.
std::vector<Problem> SpecProblems(const MetricSpec& m, const UnitTable& units) {
  std::vector<Problem> problems;
  if (!m.unit.empty()) {
    if (m.type == MetricType::kBool) {
      problems.push_back({RejectReason::kBadUnit, "a bool metric cannot have a unit"});
    } else if (units.Lookup(m.unit) == nullptr) {
      problems.push_back(
          {RejectReason::kBadUnit, fmt::format("unit {:?} is not in the unit table", m.unit)});
    }
  }
  if (m.min && !std::isfinite(*m.min)) {
    problems.push_back({RejectReason::kOutOfRange, "min is not a finite number"});
  }
  if (m.max && !std::isfinite(*m.max)) {
    problems.push_back({RejectReason::kOutOfRange, "max is not a finite number"});
  }
  if (m.min && m.max && *m.min > *m.max) {
    problems.push_back({RejectReason::kOutOfRange,
                        fmt::format("min {} is above max {}: no value fits", *m.min, *m.max)});
  }
  return problems;
}

Status JoinErrors(const std::vector<std::string>& errors) {
  if (errors.empty()) return Status::Ok();
  return Error(Code::kInvalidArgument, "{}", fmt::join(errors, "; "));
}

}  // namespace

Status ValidateSchema(const DeviceSchema& schema, const UnitTable& units) {
  std::vector<std::string> errors;
  if (!IsValidName(schema.device)) errors.push_back(BadName("device", schema.device));
  std::unordered_set<std::string_view> seen;
  for (const MetricSpec& m : schema.metrics) {
    std::string where = fmt::format("device {:?} metric {:?}", Clip(schema.device), Clip(m.name));
    if (!IsValidName(m.name)) {
      errors.push_back(BadName(fmt::format("device {:?} metric", Clip(schema.device)), m.name));
    } else if (!seen.insert(m.name).second) {
      errors.push_back(where + ": declared twice");
    }
    for (const Problem& p : SpecProblems(m, units)) errors.push_back(where + ": " + p.message);
  }
  return JoinErrors(errors);
}

Cleaner::Cleaner(UnitTable units, CleanerOptions options)
    : units_(std::move(units)), options_(options) {
  options_.dedupe_window = std::max<size_t>(options_.dedupe_window, 2);
  options_.max_series = std::max<size_t>(options_.max_series, 1);
}

Status Cleaner::SetSchemas(std::vector<DeviceSchema> schemas) {
  std::vector<std::string> errors;
  decltype(devices_) devices;
  for (DeviceSchema& schema : schemas) {
    if (Status st = ValidateSchema(schema, units_); !st.ok()) errors.push_back(st.message());
    if (!IsValidName(schema.device)) continue;
    auto [it, inserted] = devices.try_emplace(schema.device);
    if (!inserted) {
      errors.push_back(fmt::format("device {:?} has more than one schema; the first one is used",
                                   schema.device));
      continue;
    }
    CompiledDevice& device = it->second;
    device.allow_undeclared = schema.allow_undeclared;
    for (MetricSpec& spec : schema.metrics) {
      if (!IsValidName(spec.name) || device.metrics.contains(spec.name)) continue;
      CompiledMetric m;
      m.type = spec.type;
      m.min = spec.min.value_or(-kInfinity);
      m.max = spec.max.value_or(kInfinity);
      m.unit = spec.unit;
      if (std::vector<Problem> problems = SpecProblems(spec, units_); !problems.empty()) {
        m.broken = problems.front().reason;
        m.broken_message = fmt::format("metric {:?} of device {:?} has an unusable schema: {}",
                                       spec.name, schema.device, problems.front().message);
      } else if (!spec.unit.empty()) {
        m.conversion = *units_.Lookup(spec.unit);
      }
      device.metrics.emplace(std::move(spec.name), std::move(m));
    }
  }
  devices_ = std::move(devices);
  last_device_ = nullptr;
  last_device_valid_ = false;
  return JoinErrors(errors);
}

const Cleaner::CompiledDevice* Cleaner::FindDevice(std::string_view device) {
  if (last_device_valid_ && device == last_device_name_) return last_device_;
  auto it = devices_.find(device);
  last_device_ = it == devices_.end() ? nullptr : &it->second;
  last_device_name_.assign(device);
  last_device_valid_ = true;
  return last_device_;
}

std::optional<Rejection> Cleaner::Check(Reading& r) {
  auto reject = [&](RejectReason reason, std::string message) {
    return Rejection{0, std::string(Clip(r.metric)), reason, std::move(message)};
  };
  const CompiledDevice* device = FindDevice(r.device);
  const CompiledMetric* spec = nullptr;
  if (device == nullptr) {
    if (!options_.allow_unknown_devices) {
      return reject(RejectReason::kUnknownDevice,
                    fmt::format("device {:?} has no schema on this node", Clip(r.device)));
    }
    if (!IsValidName(r.device)) return reject(RejectReason::kBadName, BadName("device", r.device));
  } else if (auto it = device->metrics.find(r.metric); it != device->metrics.end()) {
    spec = &it->second;
  } else if (!device->allow_undeclared) {
    return reject(
        RejectReason::kUnknownMetric,
        fmt::format("metric {:?} is not declared for device {:?}", Clip(r.metric), r.device));
  }
  if (spec == nullptr && !IsValidName(r.metric)) {
    return reject(RejectReason::kBadName, BadName("metric", r.metric));
  }
  // Other producers (Modbus float registers) can hand us NaN or infinity; JSON cannot.
  if (!std::isfinite(r.value)) {
    return reject(RejectReason::kBadValue,
                  fmt::format("value of {:?} is {}", Clip(r.metric), r.value));
  }
  if (spec != nullptr) {
    if (spec->broken) return reject(*spec->broken, spec->broken_message);
    if (spec->type == MetricType::kInt && std::trunc(r.value) != r.value) {
      return reject(RejectReason::kBadValue,
                    fmt::format("value {} of {} is not an integer", r.value, r.metric));
    }
    if (spec->type == MetricType::kBool && r.value != 0 && r.value != 1) {
      return reject(RejectReason::kBadValue,
                    fmt::format("value {} of {} is not a boolean (0 or 1)", r.value, r.metric));
    }
    double value = spec->conversion.Apply(r.value);
    const std::string& unit = spec->conversion.to;  // canonical; empty without a unit
    if (!std::isfinite(value)) {
      return reject(RejectReason::kBadValue,
                    fmt::format("value {} {} of {} is out of range once converted to {}", r.value,
                                spec->unit, r.metric, unit));
    }
    if (value < spec->min) {
      return reject(RejectReason::kOutOfRange,
                    fmt::format("value {}{}{} of {} is below the minimum {}{}{}", value,
                                unit.empty() ? "" : " ", unit, r.metric, spec->min,
                                unit.empty() ? "" : " ", unit));
    }
    if (value > spec->max) {
      return reject(RejectReason::kOutOfRange,
                    fmt::format("value {}{}{} of {} is above the maximum {}{}{}", value,
                                unit.empty() ? "" : " ", unit, r.metric, spec->max,
                                unit.empty() ? "" : " ", unit));
    }
    r.value = value;
  }
  if (SeenOrRemember(r)) {
    return reject(RejectReason::kDuplicate, fmt::format("{} of {} at {} ns was already accepted",
                                                        Clip(r.metric), Clip(r.device), r.ts_ns));
  }
  return std::nullopt;
}

void Cleaner::Forget(std::span<const Reading> readings) {
  for (const Reading& r : readings) {
    key_.assign(r.device);
    key_.push_back('\0');
    key_.append(r.metric);
    auto it = series_.find(std::string_view(key_));
    if (it == series_.end()) continue;
    std::vector<int64_t>& v = it->second->ts;
    auto pos = std::lower_bound(v.begin(), v.end(), r.ts_ns);
    if (pos == v.end() || *pos != r.ts_ns) continue;
    if (v.size() == 1) {
      lru_.erase(it->second);
      series_.erase(it);
    } else {
      v.erase(pos);
    }
  }
  counters_.accepted -= std::min<uint64_t>(counters_.accepted, readings.size());
}

bool Cleaner::SeenOrRemember(const Reading& r) {
  // Names reaching here are valid, so they hold no '\0' and the key is unambiguous.
  key_.assign(r.device);
  key_.push_back('\0');
  key_.append(r.metric);
  const int64_t ts = r.ts_ns;

  Series* series = nullptr;
  if (auto it = series_.find(std::string_view(key_)); it != series_.end()) {
    lru_.splice(lru_.begin(), lru_, it->second);
    series = &*it->second;
    std::vector<int64_t>& v = series->ts;
    // In-order data, the common case, is newer than everything remembered.
    if (ts <= v.back() && std::binary_search(v.begin(), v.end(), ts)) return true;
  }
  bool older_than_remembered = series == nullptr || ts < series->ts.front();
  if (older_than_remembered && seen_before_ && seen_before_(r)) return true;

  if (series == nullptr) {
    if (series_.size() >= options_.max_series) {
      series_.erase(std::string_view(lru_.back().key));
      lru_.pop_back();
    }
    lru_.push_front(Series{key_, {ts}, false});
    series_.emplace(std::string_view(lru_.front().key), lru_.begin());
    return false;
  }
  std::vector<int64_t>& v = series->ts;
  if (series->trimmed && ts < v.front()) return false;  // below what the window vouches for
  if (v.size() >= options_.dedupe_window) {
    v.erase(v.begin(), v.begin() + static_cast<ptrdiff_t>(v.size() - options_.dedupe_window / 2));
    series->trimmed = true;
    if (ts < v.front()) return false;
  }
  v.insert(std::upper_bound(v.begin(), v.end(), ts), ts);
  return false;
}

void Cleaner::CleanSpan(std::vector<Reading>& readings, std::vector<uint32_t>* item_of,
                        std::vector<Rejection>& rejected) {
  if (item_of != nullptr && item_of->size() != readings.size()) {
    assert(item_of->empty() && "item_of must be empty or parallel to readings");
    item_of->clear();
    item_of = nullptr;
  }
  size_t kept = 0;
  for (size_t i = 0; i < readings.size(); ++i) {
    if (std::optional<Rejection> rejection = Check(readings[i])) {
      rejection->item = item_of != nullptr ? (*item_of)[i] : i;
      ++counters_[rejection->reason];
      rejected.push_back(std::move(*rejection));
      continue;
    }
    ++counters_.accepted;
    if (kept != i) {
      readings[kept] = std::move(readings[i]);
      if (item_of != nullptr) (*item_of)[kept] = (*item_of)[i];
    }
    ++kept;
  }
  readings.erase(readings.begin() + static_cast<ptrdiff_t>(kept), readings.end());
  if (item_of != nullptr) item_of->resize(kept);
}

void Cleaner::Clean(ParseResult& batch) {
  CleanSpan(batch.readings, &batch.item_of, batch.rejected);
}

void Cleaner::Clean(std::vector<Reading>& in_out, std::vector<Rejection>& rejected) {
  CleanSpan(in_out, nullptr, rejected);
}

}  // namespace verge::data
