#include "cloud/app_document.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <nlohmann/json.hpp>

#include "cloud/api_json.h"
#include "cloud/document.h"

namespace verge::cloud {
namespace {

using json = nlohmann::json;

}  // namespace

std::string WorkloadId(const std::string& app, uint32_t replica) {
  return fmt::format("{}-{}", app, replica);
}

Result<AppDocument> ParseAppDocument(std::string_view body, std::string_view path_name) {
  static const DocumentKind kKind{.kind = "App",
                                  .api_version = kAppApiVersion,
                                  .noun = "app",
                                  .spec_hint = "a mapping with at least type",
                                  .labels = true,
                                  .extra_fields = {}};
  VERGE_ASSIGN_OR_RETURN(DocumentEnvelope env, ParseDocumentEnvelope(body, path_name, kKind));
  std::vector<std::string>& errors = env.errors;
  AppDocument out;
  out.name = std::string(path_name);
  out.labels = std::move(env.labels);
  if (env.has_spec) {
    auto parsed = ParseAppSpec(env.spec.dump());
    if (parsed.ok()) {
      out.spec = std::move(*parsed);
    } else {
      errors.push_back(parsed.status().message());
    }
  }
  if (!errors.empty()) {
    return Error(Code::kInvalidArgument, "invalid app \"{}\": {}", ClipUtf8(path_name, 80),
                 fmt::join(errors, "; "));
  }
  return out;
}

Status WorkloadToProto(const DesiredWorkload& w, v1::Workload* out) {
  VERGE_ASSIGN_OR_RETURN(AppSpec spec, ParseAppSpec(w.spec_json));
  const Placement& p = w.placement;
  out->set_id(WorkloadId(p.app, p.replica));
  out->set_app(p.app);
  out->set_revision(p.revision);
  out->set_updated_ms(w.revision_created_ms);
  out->set_version(spec.version);
  out->set_type(std::string(AppTypeName(spec.type)));
  for (const auto& c : spec.command) out->add_command(c);
  std::string ref = spec.type == AppType::kContainer ? spec.image : spec.artifact;
  if (auto hex = ParseArtifactRef(ref)) out->set_artifact_sha256(*hex);
  out->set_source(spec.source);
  out->set_handler(spec.handler);
  out->set_max_instructions(spec.max_instructions);
  out->set_function_memory_mb(spec.function_memory_mb);
  for (const auto& [k, v] : spec.env) (*out->mutable_env())[k] = v;
  out->set_config_mount(spec.config_mount);
  for (const auto& [k, v] : spec.config_files) (*out->mutable_config_files())[k] = v;
  for (const auto& port : spec.ports) {
    auto* pp = out->add_ports();
    pp->set_name(port.name);
    pp->set_port(port.port);
    pp->set_protocol(port.protocol);
  }
  for (const auto& vol : spec.volumes) {
    auto* vv = out->add_volumes();
    vv->set_name(vol.name);
    vv->set_mount_path(vol.mount_path);
    vv->set_host_path(vol.host_path);
    vv->set_read_only(vol.read_only);
  }
  out->set_isolated_network(spec.isolated_network);
  auto* r = out->mutable_resources();
  r->set_cpu_millicores(spec.resources.cpu_millicores);
  r->set_memory_mb(spec.resources.memory_mb);
  r->set_gpu(spec.resources.gpu);
  r->set_npu(spec.resources.npu);
  if (!spec.health.type.empty()) {
    auto* h = out->mutable_health();
    h->set_type(spec.health.type);
    for (const auto& c : spec.health.command) h->add_command(c);
    h->set_path(spec.health.path);
    h->set_port(spec.health.port);
    h->set_period_ms(static_cast<uint32_t>(spec.health.period_ms));
    h->set_timeout_ms(static_cast<uint32_t>(spec.health.timeout_ms));
    h->set_initial_delay_ms(static_cast<uint32_t>(spec.health.initial_delay_ms));
    h->set_failure_threshold(spec.health.failure_threshold);
  }
  return Status::Ok();
}

WorkloadStatusRecord WorkloadStatusFromProto(const std::string& node, const v1::WorkloadStatus& s,
                                             int64_t reported_ms) {
  WorkloadStatusRecord r;
  r.node = node;
  r.id = ClipUtf8(s.id(), 128);
  r.app = ClipUtf8(s.app(), 128);
  r.revision = s.revision();
  r.status = ClipUtf8(s.status(), 32);
  r.ready = s.ready();
  r.restarts = s.restarts();
  r.last_error = ClipUtf8(s.last_error(), 2000);
  r.started_ms = s.started_ms();
  r.cpu_millicores = s.cpu_millicores();
  r.memory_bytes = s.memory_bytes();
  r.oom_kills = s.oom_kills();
  r.reported_ms = reported_ms;
  return r;
}

}  // namespace verge::cloud
