// AppSpec: the spec of a `kind: App` document (docs/apps.md), parsed and validated.
//
//   apiVersion: verge/v1
//   kind: App
//   metadata: {name: NAME, labels: {...}}
//   spec:
//     type: native | container | function
//     version: "1.2.0"
//     command: ["/bin/sh", "-c", "..."]     # native: argv; container: overrides the image's
//     artifact: sha256:<64 hex>             # native executable/tarball, Lua script
//     image: sha256:<64 hex>                # container: an OCI image archive
//     source: "function handle(e) ... end"  # function: the script inline (instead of artifact)
//     handler: handle                       # function entry point
//     limits: {instructions: 10000000, memoryMB: 16}   # function, per call
//     resources: {cpu: 250m | 0.25 | 2, memory: 64Mi | 64M | 1Gi | 64, gpu: 0, npu: 0}
//     replicas: 1
//     placement:
//       nodeSelector: {k: v}
//       affinity: [APP...]          # only on nodes that run these apps
//       antiAffinity: [APP...]      # never on nodes that run these apps (itself: one per node)
//       constraints: [{key: cpu|memory|gpu|npu|region|latency, op: gte|lte|eq, value: ...}]
//       spreadAcross: region | zone
//       targetRegion: eu-west
//     env: {K: V}
//     config: {mountPath: /config, files: {name: content}}
//     ports: [{name: http, port: 8080, protocol: tcp}]
//     volumes: [{name: data, mountPath: /data, hostPath: /var/lib/x, readOnly: false}]
//     network: host | isolated
//     healthCheck: {exec: {command: [...]}} | {http: {path: /healthz, port: 8080}} |
//                  {tcp: {port: 8080}}, plus periodSeconds, timeoutSeconds,
//                  initialDelaySeconds, failureThreshold
//     rollout: {maxUnavailable: 1, progressDeadlineSeconds: 120}
//     rescheduleAfter: 10m          # default never: an offline edge keeps running its apps
//
// Quantities follow Kubernetes. cpu: "250m" is 250 millicores; a number or a numeric string
// is cores ("0.5", 0.5 = 500 millicores; 2 = 2000), at most 1000 cores, in whole millicores.
// memory is kept in MB of 2^20 bytes (what nodes report: MemTotal / 1024): a plain number is MB
// (64 = 64 MB); a string takes a suffix, binary Ki Mi Gi Ti (2^10...) or decimal k M G T
// (10^3...), and is rounded up to whole MB ("64Mi" = 64, "1Gi" = 1024, "1G" = 954); "64MB" is
// refused as ambiguous. Health check and rollout times are whole seconds; rescheduleAfter is a
// duration ("10m").
// Type rules: native needs command or artifact; container needs image; function needs artifact
// or source (not both). image is for containers only; source, handler and limits for functions
// only; a function takes no command, volumes or health check (it runs per event in a sandbox).
//
// Parsing collects every problem at once; the result is a plain value the scheduler, the
// store (as canonical JSON) and the desired state use.
// Thread-safety: plain values and pure functions.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace verge::cloud {

enum class AppType { kNative, kContainer, kFunction };
std::string_view AppTypeName(AppType t);

struct AppResources {
  uint64_t cpu_millicores = 0;
  uint64_t memory_mb = 0;
  uint32_t gpu = 0;
  uint32_t npu = 0;
  bool operator==(const AppResources&) const = default;
};

struct AppConstraint {
  std::string key;  // cpu | memory | gpu | npu | region | latency
  std::string op;   // gte | lte | eq
  // cpu in millicores, memory in MB, latency in ms; region a string (eq only).
  std::string value;
  double number = 0;  // value as a number, for every key but region
  bool operator==(const AppConstraint&) const = default;
};

struct AppPlacement {
  std::map<std::string, std::string> node_selector;
  std::vector<std::string> affinity;
  std::vector<std::string> anti_affinity;
  std::vector<AppConstraint> constraints;
  std::string spread_across;  // "" | region | zone
  std::string target_region;
  bool operator==(const AppPlacement&) const = default;
};

struct AppHealthCheck {
  std::string type;  // "" (none) | exec | http | tcp
  std::vector<std::string> command;
  std::string path = "/";
  uint32_t port = 0;
  int64_t period_ms = 10'000;
  int64_t timeout_ms = 1'000;
  int64_t initial_delay_ms = 0;
  uint32_t failure_threshold = 3;
  bool operator==(const AppHealthCheck&) const = default;
};

struct AppPort {
  std::string name;
  uint32_t port = 0;
  std::string protocol = "tcp";
  bool operator==(const AppPort&) const = default;
};

struct AppVolume {
  std::string name;
  std::string mount_path;
  std::string host_path;  // "" : a directory the node keeps for the app
  bool read_only = false;
  bool operator==(const AppVolume&) const = default;
};

struct AppSpec {
  AppType type = AppType::kNative;
  std::string version;
  std::vector<std::string> command;
  std::string artifact;  // "sha256:<hex>" or ""
  std::string image;     // "sha256:<hex>" or ""
  std::string source;    // inline Lua
  std::string handler = "handle";
  uint64_t max_instructions = 10'000'000;
  uint64_t function_memory_mb = 16;
  AppResources resources;
  uint32_t replicas = 1;
  AppPlacement placement;
  std::map<std::string, std::string> env;
  std::string config_mount = "/config";
  std::map<std::string, std::string> config_files;
  std::vector<AppPort> ports;
  std::vector<AppVolume> volumes;
  bool isolated_network = false;
  AppHealthCheck health;
  uint32_t max_unavailable = 1;
  int64_t progress_deadline_ms = 120'000;
  int64_t reschedule_after_ms = 0;  // 0: never
  bool operator==(const AppSpec&) const = default;
};

// Parses `spec` (a YAML or JSON object: the document's spec) — kInvalidArgument listing every
// problem, each with its field path ("spec.resources.memory: ..."). The caller checks
// apiVersion, kind and metadata.
// Parses YAML (plain scalars typed as YAML 1.2 does: 2 is a number, "2" a string) or, for text
// starting with "{", JSON. At most kMaxApiBodyBytes.
Result<AppSpec> ParseAppSpec(std::string_view spec_yaml_or_json);
// The spec as compact JSON in the document's own field names; ParseAppSpec reads it back to an
// equal AppSpec. What the store keeps and the API shows.
std::string AppSpecToJson(const AppSpec& spec);
// "sha256:<64 lowercase hex>" → the hex; nullopt for anything else.
std::optional<std::string> ParseArtifactRef(std::string_view ref);
// App names (metadata.name, affinity lists): [a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?.
bool IsValidAppName(std::string_view name);

inline constexpr uint32_t kMaxAppReplicas = 10'000;

}  // namespace verge::cloud
