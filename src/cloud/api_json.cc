#include "cloud/api_json.h"

#include "common/clock.h"
#include "common/labels.h"

namespace verge::cloud {
namespace {

using json = nlohmann::json;

bool IsAlnum(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; }

Result<json> ParseObject(std::string_view body) {
  if (body.size() > kMaxApiBodyBytes) {
    return Error(Code::kResourceExhausted, "request body larger than {} bytes", kMaxApiBodyBytes);
  }
  json j = json::parse(body, nullptr, false);
  if (j.is_discarded()) return Error(Code::kInvalidArgument, "request body is not valid JSON");
  if (!j.is_object()) return Error(Code::kInvalidArgument, "request body must be a JSON object");
  return j;
}

}  // namespace

Status ValidateNodeName(std::string_view name) {
  bool ok = !name.empty() && name.size() <= 63 && IsAlnum(name.front()) && IsAlnum(name.back());
  for (char c : name) {
    if (!(std::islower(static_cast<unsigned char>(c)) ||
          std::isdigit(static_cast<unsigned char>(c)) || c == '-' || c == '.')) {
      ok = false;
    }
  }
  if (!ok) {
    return Error(Code::kInvalidArgument,
                 "node name \"{}\" must be 1-63 characters of [a-z0-9-.], starting and ending "
                 "with a letter or digit",
                 name.substr(0, 80));
  }
  return Status::Ok();
}

Result<LabelPatch> ParseLabelPatch(std::string_view body) {
  VERGE_ASSIGN_OR_RETURN(json j, ParseObject(body));
  for (auto& [k, v] : j.items()) {
    if (k != "labels") return Error(Code::kInvalidArgument, "unknown field \"{}\"", k);
  }
  if (!j.contains("labels") || !j["labels"].is_object()) {
    return Error(Code::kInvalidArgument, "\"labels\" must be an object of label: value|null");
  }
  LabelPatch patch;
  for (auto& [k, v] : j["labels"].items()) {
    if (v.is_null()) {
      VERGE_RETURN_IF_ERROR(ValidateLabel(k, ""));
      patch[k] = std::nullopt;
    } else if (v.is_string()) {
      VERGE_RETURN_IF_ERROR(ValidateLabel(k, v.get_ref<const std::string&>()));
      patch[k] = v.get<std::string>();
    } else {
      return Error(Code::kInvalidArgument, "label \"{}\" must be a string or null", k);
    }
  }
  if (patch.empty()) return Error(Code::kInvalidArgument, "no labels to change");
  return patch;
}

Result<TokenCreateRequest> ParseTokenCreate(std::string_view body) {
  TokenCreateRequest req;
  if (body.find_first_not_of(" \t\r\n") == std::string_view::npos) return req;
  VERGE_ASSIGN_OR_RETURN(json j, ParseObject(body));
  for (auto& [k, v] : j.items()) {
    if (k == "ttl") {
      if (!v.is_string())
        return Error(Code::kInvalidArgument, "\"ttl\" must be a duration string like \"24h\"");
      VERGE_ASSIGN_OR_RETURN(req.ttl, ParseDuration(v.get<std::string>()));
    } else if (k == "description") {
      if (!v.is_string()) return Error(Code::kInvalidArgument, "\"description\" must be a string");
      req.description = v.get<std::string>();
      if (req.description.size() > 256) {
        return Error(Code::kInvalidArgument, "\"description\" is longer than 256 characters");
      }
    } else {
      return Error(Code::kInvalidArgument, "unknown field \"{}\"", k);
    }
  }
  return req;
}

std::string ClipUtf8(std::string_view s, size_t max) {
  if (s.size() <= max) return std::string(s);
  size_t n = max;
  // Back off continuation bytes (10xxxxxx) so that no character is cut in two.
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return std::string(s.substr(0, n));
}

json ResourcesJson(const Resources& r) {
  return {{"cpuMillicores", r.cpu_millicores},
          {"memoryMB", r.memory_mb},
          {"storageGB", r.storage_gb},
          {"gpu", r.gpu},
          {"npu", r.npu}};
}

json NodeJson(const Node& n, bool connected) {
  return {
      {"name", n.name},
      {"type", n.type},
      {"region", n.region},
      {"labels", n.labels},
      {"capabilities", n.capabilities},
      {"resources", ResourcesJson(n.capacity)},
      {"used", ResourcesJson(n.used)},
      {"ip", n.ip},
      {"addresses", n.addresses},
      {"agentVersion", n.agent_version},
      {"hostname", n.hostname},
      {"os", n.os},
      {"arch", n.arch},
      {"status", NodeStatusName(n.status)},
      {"statusSince", FormatTimeMs(n.status_since_ms)},
      {"lastHeartbeat", n.last_heartbeat_ms ? json(FormatTimeMs(n.last_heartbeat_ms)) : json()},
      {"connected", connected},
      {"createdAt", FormatTimeMs(n.created_ms)},
      {"certificate", {{"serial", n.cert_serial}, {"notAfter", FormatTimeMs(n.cert_not_after_ms)}}},
      {"desiredVersion", n.desired_version},
      {"appliedVersion", n.applied_version},
      {"stateError", n.state_error},
  };
}

json EventJson(const NodeEvent& e) {
  return {{"id", e.id},
          {"node", e.node},
          {"time", FormatTimeMs(e.ts_ms)},
          {"type", e.type},
          {"message", e.message}};
}

json TokenJson(const BootstrapToken& t, int64_t now_ms) {
  std::string state = t.revoked                                       ? "revoked"
                      : (t.expires_ms != 0 && now_ms >= t.expires_ms) ? "expired"
                                                                      : "active";
  return {{"id", t.id},
          {"description", t.description},
          {"createdAt", FormatTimeMs(t.created_ms)},
          {"expiresAt", t.expires_ms ? json(FormatTimeMs(t.expires_ms)) : json()},
          {"state", state},
          {"uses", t.uses}};
}

}  // namespace verge::cloud
