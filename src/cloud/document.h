// The envelope every declarative document of the API shares (kind: Rule, kind: App):
// apiVersion, kind, metadata (name, optional labels) and spec, checked the same way for every
// kind, so that a mistake reads the same whatever the document.
// Thread-safety: pure functions.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "cloud/model.h"
#include "common/status.h"

namespace verge::cloud {

struct DocumentKind {
  std::string_view kind;         // "Rule"
  std::string_view api_version;  // "verge/v1"
  std::string_view noun;         // "rule": in messages ("the rule's name", "takes rules")
  std::string_view spec_hint;    // "a mapping with sql and actions"
  bool labels = false;           // metadata.labels allowed
  std::vector<std::string_view> extra_fields;  // top-level fields beyond the envelope's
};

struct DocumentEnvelope {
  // The document's spec when it is a mapping (else empty, and an error says so).
  nlohmann::json spec = nlohmann::json::object();
  bool has_spec = false;
  Labels labels;
  // Every problem of the envelope; the caller adds the spec's and reports them together.
  std::vector<std::string> errors;
};

// kResourceExhausted past kMaxApiBodyBytes; kInvalidArgument when the body is not a JSON
// object. Every other problem (wrong kind, name not `path_name`, ...) is in errors.
Result<DocumentEnvelope> ParseDocumentEnvelope(std::string_view body, std::string_view path_name,
                                               const DocumentKind& kind);

}  // namespace verge::cloud
