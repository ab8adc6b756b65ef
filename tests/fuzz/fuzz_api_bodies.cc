// REST API request bodies and targets: label patches, token requests, rule and app documents
// (and app specs as YAML), query strings.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "cloud/api_json.h"
#include "cloud/app_document.h"
#include "cloud/app_spec.h"
#include "cloud/rule_spec.h"
#include "common/http.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  (void)verge::cloud::ParseLabelPatch(text);
  (void)verge::cloud::ParseTokenCreate(text);
  (void)verge::cloud::ValidateNodeName(text);
  (void)verge::cloud::ParseRuleDocument(text, "r");
  (void)verge::cloud::ParseAppDocument(text, "a");
  if (auto spec = verge::cloud::ParseAppSpec(text); spec.ok()) {
    // What the store keeps must read back as the same spec.
    auto again = verge::cloud::ParseAppSpec(verge::cloud::AppSpecToJson(*spec));
    if (!again.ok() || !(*again == *spec)) __builtin_trap();
  }
  verge::http::Request req;
  req.target = std::string(text);
  verge::http::ParseTarget(req);
  verge::http::Response resp{400, "application/json", std::string(text)};
  (void)verge::http::StatusFromResponse(resp);
  return 0;
}
