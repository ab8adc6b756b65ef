// Rule specs as the node's POST /rules and the cloud's rule documents carry them: any bytes,
// parsed as JSON and, when they are, validated (fields, actions, options, streams, SQL).
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string_view>

#include "node/rules/spec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;
  (void)verge::rules::ParseRuleSpec(j);
  if (j.is_object()) {
    if (auto it = j.find("actions"); it != j.end()) (void)verge::rules::ParseActions(*it);
    if (auto it = j.find("options"); it != j.end()) (void)verge::rules::ParseRuleOptions(*it);
  }
  return 0;
}
