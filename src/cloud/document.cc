#include "cloud/document.h"

#include <algorithm>

#include "cloud/api_json.h"

namespace verge::cloud {

using json = nlohmann::json;

Result<DocumentEnvelope> ParseDocumentEnvelope(std::string_view body, std::string_view path_name,
                                               const DocumentKind& k) {
  if (body.size() > kMaxApiBodyBytes) {
    return Error(Code::kResourceExhausted, "request body larger than {} bytes", kMaxApiBodyBytes);
  }
  DocumentEnvelope out;
  const json doc = json::parse(body, nullptr, false);
  if (doc.is_discarded()) return Error(Code::kInvalidArgument, "request body is not valid JSON");
  if (!doc.is_object()) {
    return Error(Code::kInvalidArgument,
                 "request body must be a JSON object: a document of kind {}", k.kind);
  }
  auto& errors = out.errors;
  for (const auto& [key, v] : doc.items()) {
    bool known =
        key == "apiVersion" || key == "kind" || key == "metadata" || key == "spec" ||
        key == "status" ||
        std::find(k.extra_fields.begin(), k.extra_fields.end(), key) != k.extra_fields.end();
    if (!known) errors.push_back(fmt::format("unknown field \"{}\"", ClipUtf8(key, 64)));
  }
  auto text = [](const json& obj, const char* key) -> const std::string* {
    auto it = obj.find(key);
    return it == obj.end() || !it->is_string() ? nullptr : it->get_ptr<const std::string*>();
  };
  if (const std::string* v = text(doc, "apiVersion"); !v) {
    errors.push_back(fmt::format("apiVersion: required, \"{}\"", k.api_version));
  } else if (*v != k.api_version) {
    errors.push_back(fmt::format("apiVersion: \"{}\" is not supported (use \"{}\")",
                                 ClipUtf8(*v, 64), k.api_version));
  }
  if (const std::string* v = text(doc, "kind"); !v) {
    errors.push_back(fmt::format("kind: required, \"{}\"", k.kind));
  } else if (*v != k.kind) {
    errors.push_back(fmt::format("kind: \"{}\" is not {} (this endpoint takes {}s)",
                                 ClipUtf8(*v, 64), k.kind, k.noun));
  }
  auto meta = doc.find("metadata");
  if (meta == doc.end() || !meta->is_object()) {
    errors.push_back(fmt::format("metadata: required, a mapping with the {}'s name", k.noun));
  } else {
    for (const auto& [key, v] : meta->items()) {
      if (key == "name" || key == "createdAt" || key == "updatedAt") continue;
      if (key != "labels" || !k.labels) {
        errors.push_back(fmt::format("metadata: unknown field \"{}\"", ClipUtf8(key, 64)));
        continue;
      }
      if (!v.is_object()) {
        errors.push_back("metadata.labels: must be a mapping of strings");
        continue;
      }
      for (const auto& [lk, lv] : v.items()) {
        if (!lv.is_string()) {
          errors.push_back(fmt::format("metadata.labels.{}: must be a string", ClipUtf8(lk, 64)));
        } else {
          out.labels[lk] = lv.get<std::string>();
        }
      }
    }
    if (const std::string* name = text(*meta, "name"); !name) {
      errors.push_back("metadata.name: required");
    } else if (*name != path_name) {
      errors.push_back(fmt::format("metadata.name \"{}\" does not match the name in the URL",
                                   ClipUtf8(*name, 80)));
    }
  }
  auto spec = doc.find("spec");
  if (spec == doc.end() || !spec->is_object()) {
    errors.push_back(fmt::format("spec: required, {}", k.spec_hint));
  } else {
    out.spec = *spec;
    out.has_spec = true;
  }
  return out;
}

}  // namespace verge::cloud
