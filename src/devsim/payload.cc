#include "devsim/payload.h"

#include <fmt/format.h>

#include <cctype>
#include <cmath>
#include <nlohmann/json.hpp>
#include <sstream>

namespace verge::devsim {

Result<DeviceCred> ParseDeviceFlag(std::string_view text) {
  auto eq = text.find('=');
  if (eq == std::string_view::npos || eq == 0 || eq + 1 == text.size()) {
    return Error(Code::kInvalidArgument, "device \"{}\" must be NAME=TOKEN", text);
  }
  return DeviceCred{std::string(text.substr(0, eq)), std::string(text.substr(eq + 1))};
}

Result<std::vector<DeviceCred>> ParseDevicesJson(std::string_view text) {
  std::vector<DeviceCred> out;
  std::istringstream in{std::string(text)};
  auto add = [&](const nlohmann::json& j, size_t n) -> Status {
    if (!j.is_object() || !j.contains("name") || !j["name"].is_string() || !j.contains("token") ||
        !j["token"].is_string() || j["name"].get<std::string>().empty() ||
        j["token"].get<std::string>().empty()) {
      return Error(Code::kInvalidArgument,
                   "device #{} must be an object with non-empty string \"name\" and \"token\"", n);
    }
    out.push_back({j["name"].get<std::string>(), j["token"].get<std::string>()});
    return Status::Ok();
  };
  try {
    while ((in >> std::ws) && in.peek() != EOF) {
      nlohmann::json j;
      in >> j;
      if (j.is_array()) {
        for (const auto& item : j) VERGE_RETURN_IF_ERROR(add(item, out.size() + 1));
      } else {
        VERGE_RETURN_IF_ERROR(add(j, out.size() + 1));
      }
    }
  } catch (const nlohmann::json::exception& e) {
    return Error(Code::kInvalidArgument, "not JSON: {}", e.what());
  }
  if (out.empty()) return Error(Code::kInvalidArgument, "no devices");
  return out;
}

Status ValidateMetricName(std::string_view metric) {
  if (metric.empty() || metric.size() > 64) {
    return Error(Code::kInvalidArgument, "metric \"{}\": names are 1..64 characters", metric);
  }
  for (unsigned char c : metric) {
    if (!std::isalnum(c) && c != '_' && c != '-' && c != '.' && c != ':') {
      return Error(Code::kInvalidArgument,
                   "metric \"{}\": use letters, digits, '_', '-', '.' and ':' only", metric);
    }
  }
  return Status::Ok();
}

Result<PayloadFormat> ParsePayloadFormat(std::string_view text) {
  if (text == "json") return PayloadFormat::kJson;
  if (text == "ndjson") return PayloadFormat::kNdjson;
  return Error(Code::kInvalidArgument, "format \"{}\" is not json or ndjson", text);
}

std::string_view ContentType(PayloadFormat format) {
  return format == PayloadFormat::kJson ? "application/json" : "application/x-ndjson";
}

std::string FormatPayload(const std::vector<data::Reading>& readings, PayloadFormat format) {
  std::string out;
  out.reserve(readings.size() * 64 + 2);
  bool json = format == PayloadFormat::kJson;
  if (json) out += '[';
  for (size_t i = 0; i < readings.size(); ++i) {
    const data::Reading& r = readings[i];
    if (json && i > 0) out += ',';
    double value = std::round(r.value * 1e4) / 1e4;
    if (value == 0) value = 0;  // no "-0"
    fmt::format_to(std::back_inserter(out), R"({{"metric":"{}","value":{},"timestamp":{}}})",
                   r.metric, value, r.ts_ns / 1'000'000);
    if (!json) out += '\n';
  }
  if (json) out += ']';
  return out;
}

ReadingSource::ReadingSource(std::string device, const std::vector<std::string>& metrics,
                             uint64_t seed, double reading_interval_s)
    : device_(std::move(device)), dt_s_(reading_interval_s * static_cast<double>(metrics.size())) {
  for (const std::string& m : metrics) {
    signals_.emplace_back(PresetFor(m), DeriveSeed(seed, device_ + "/" + m));
  }
}

std::vector<data::Reading> ReadingSource::Next(size_t n, int64_t ts_ns) {
  return NextAt(n, ts_ns, 0);
}

std::vector<data::Reading> ReadingSource::NextAt(size_t n, int64_t first_ts_ns, int64_t step_ns) {
  std::vector<data::Reading> out;
  out.reserve(n);
  for (size_t i = 0; i < n && !signals_.empty(); ++i) {
    Signal& s = signals_[next_];
    int64_t ts_ns = first_ts_ns + static_cast<int64_t>(i) * step_ns;
    out.push_back({device_, s.spec().metric, ts_ns, s.Next(dt_s_)});
    next_ = (next_ + 1) % signals_.size();
  }
  return out;
}

}  // namespace verge::devsim
