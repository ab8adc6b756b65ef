// Apps as the REST API and the link carry them: the `kind: App` document of
// PUT /api/v1/apps/NAME (metadata and the spec, parsed by ParseAppSpec with every problem
// reported at once), the verge.v1.Workload a node receives for each replica placed on it, and
// the statuses nodes report. Shapes are documented in docs/apps.md.
// Thread-safety: pure functions.
#pragma once

#include <string>
#include <string_view>

#include "cloud/app_spec.h"
#include "cloud/model.h"
#include "common/status.h"
#include "verge/v1/link.pb.h"

namespace verge::cloud {

inline constexpr std::string_view kAppApiVersion = "verge/v1";

// A `kind: App` document: metadata and the parsed spec.
struct AppDocument {
  std::string name;
  Labels labels;
  AppSpec spec;
};
// Parses the body of PUT /api/v1/apps/NAME (YAML or JSON): apiVersion verge/v1, kind App,
// metadata.name equal to `path_name`, metadata.labels, spec. What the API answers besides
// (status, metadata times) is ignored, so a GET answer can be put back. kInvalidArgument lists
// every problem.
Result<AppDocument> ParseAppDocument(std::string_view body, std::string_view path_name);

// The replica as a node receives it.
Status WorkloadToProto(const DesiredWorkload& w, v1::Workload* out);
WorkloadStatusRecord WorkloadStatusFromProto(const std::string& node, const v1::WorkloadStatus& s,
                                             int64_t reported_ms);

// "<app>-<replica>": the replica's name on its node.
std::string WorkloadId(const std::string& app, uint32_t replica);

}  // namespace verge::cloud
