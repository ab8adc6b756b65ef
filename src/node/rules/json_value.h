// Conversion between the rule engine's Values and JSON (nlohmann::json), for the edges: the
// node's local API (`POST /rules/test`), MQTT payloads and tests. The engine itself never sees
// JSON.
//   JSON → Value: null, booleans, strings, arrays and objects as they are; integers that fit an
//   int64 become bigints, every other number (fractions, exponents, unsigned integers above
//   2^63 - 1) a float. A number written with a decimal point ("20.0") is a float.
//   Value → JSON: the reverse; NaN and infinities become null (JSON has none).
// Thread-safety: pure functions.
#pragma once

#include <nlohmann/json.hpp>
#include <string_view>

#include "common/status.h"
#include "node/rules/value.h"

namespace verge::rules {

Value FromJson(const nlohmann::json& j);
nlohmann::json ToNlohmann(const Value& v);
// Parses JSON text; kInvalidArgument with the parser's message when it is not JSON.
Result<Value> ParseJsonValue(std::string_view text);

}  // namespace verge::rules
