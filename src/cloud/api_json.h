// JSON shapes of the REST API: parsing of request bodies (every one validated, with a clear
// error and never an exception) and rendering of records. Thread-safety: pure functions.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "cloud/model.h"
#include "common/duration.h"
#include "common/labels.h"
#include "common/status.h"

namespace verge::cloud {

// Largest request body the API reads.
inline constexpr size_t kMaxApiBodyBytes = 1 << 20;

// {"labels": {"k": "v", "gone": null}}: sets k, removes gone.
using LabelPatch = std::map<std::string, std::optional<std::string>>;
Result<LabelPatch> ParseLabelPatch(std::string_view body);

struct TokenCreateRequest {
  Millis ttl{24LL * 3600 * 1000};
  std::string description;
};
// {"ttl": "24h", "description": "..."}; an empty body takes the defaults.
Result<TokenCreateRequest> ParseTokenCreate(std::string_view body);

// Node names: 1–63 characters of [a-z0-9-.], starting and ending alphanumeric.
Status ValidateNodeName(std::string_view name);

// At most `max` bytes of `s`, cut at a UTF-8 character boundary, for text from nodes that
// ends up in events and API answers.
std::string ClipUtf8(std::string_view s, size_t max);

nlohmann::json NodeJson(const Node& n, bool connected);
nlohmann::json EventJson(const NodeEvent& e);
nlohmann::json TokenJson(const BootstrapToken& t, int64_t now_ms);
nlohmann::json ResourcesJson(const Resources& r);

}  // namespace verge::cloud
