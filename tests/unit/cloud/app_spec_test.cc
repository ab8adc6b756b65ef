// The `kind: App` spec: every field in YAML and JSON, every error message with its path, and
// the canonical JSON reading back to an equal spec.
#include "cloud/app_spec.h"

#include <gtest/gtest.h>

#include <functional>

namespace verge::cloud {
namespace {

const std::string kHash(64, 'a');
const std::string kRef = "sha256:" + kHash;

AppSpec MustParse(const std::string& text) {
  auto s = ParseAppSpec(text);
  EXPECT_TRUE(s.ok()) << text << "\n" << s.status().message();
  return s.ok() ? s.value() : AppSpec{};
}

struct OkCase {
  std::string name;
  std::string text;
  std::function<void(const AppSpec&)> check;
  friend void PrintTo(const OkCase& c, std::ostream* os) { *os << c.name; }
};

class AppSpecOk : public testing::TestWithParam<OkCase> {};

TEST_P(AppSpecOk, ParsesAndRoundTrips) {
  const OkCase& c = GetParam();
  auto parsed = ParseAppSpec(c.text);
  ASSERT_TRUE(parsed.ok()) << parsed.status().message();
  c.check(parsed.value());
  // The canonical JSON reads back to an equal spec, and is itself stable.
  std::string j = AppSpecToJson(parsed.value());
  auto again = ParseAppSpec(j);
  ASSERT_TRUE(again.ok()) << j << "\n" << again.status().message();
  EXPECT_EQ(again.value(), parsed.value()) << j;
  EXPECT_EQ(AppSpecToJson(again.value()), j);
  EXPECT_EQ(j.find('\n'), std::string::npos) << "compact";
}

const std::string kNative = "type: native\ncommand: [/bin/app]\n";

std::vector<OkCase> OkCases() {
  std::vector<OkCase> v = {
      {"MinimalNative", kNative,
       [](const AppSpec& s) {
         EXPECT_EQ(s.type, AppType::kNative);
         EXPECT_EQ(s.command, std::vector<std::string>{"/bin/app"});
         EXPECT_EQ(s.replicas, 1u);
         EXPECT_EQ(s.resources, AppResources{});
         EXPECT_FALSE(s.isolated_network);
         EXPECT_EQ(s.health.type, "");
         EXPECT_EQ(s.max_unavailable, 1u);
         EXPECT_EQ(s.progress_deadline_ms, 120'000);
         EXPECT_EQ(s.reschedule_after_ms, 0);
         EXPECT_EQ(s.config_mount, "/config");
       }},
      {"NativeArtifactOnly", "type: native\nartifact: " + kRef + "\nversion: 1.2.0\n",
       [](const AppSpec& s) {
         EXPECT_EQ(s.artifact, kRef);
         EXPECT_EQ(s.version, "1.2.0");
       }},
      {"Container", "type: container\nimage: " + kRef + "\ncommand: [nginx, -g, daemon off;]\n",
       [](const AppSpec& s) {
         EXPECT_EQ(s.type, AppType::kContainer);
         EXPECT_EQ(s.image, kRef);
         EXPECT_EQ(s.command.size(), 3u);
         EXPECT_EQ(s.command[2], "daemon off;");
       }},
      {"FunctionSource",
       "type: function\nsource: \"function go(e) return e end\"\nhandler: go\n"
       "limits: {instructions: 5000, memoryMB: 8}\n",
       [](const AppSpec& s) {
         EXPECT_EQ(s.type, AppType::kFunction);
         EXPECT_EQ(s.source, "function go(e) return e end");
         EXPECT_EQ(s.handler, "go");
         EXPECT_EQ(s.max_instructions, 5000u);
         EXPECT_EQ(s.function_memory_mb, 8u);
       }},
      {"FunctionArtifactDefaults", "type: function\nartifact: " + kRef + "\n",
       [](const AppSpec& s) {
         EXPECT_EQ(s.handler, "handle");
         EXPECT_EQ(s.max_instructions, 10'000'000u);
         EXPECT_EQ(s.function_memory_mb, 16u);
       }},
      {"Resources", kNative + "resources: {cpu: 250m, memory: 64Mi, gpu: 1, npu: 2}\n",
       [](const AppSpec& s) {
         EXPECT_EQ(s.resources, (AppResources{250, 64, 1, 2}));
       }},
      {"ReplicasBounds", kNative + "replicas: 10000\n",
       [](const AppSpec& s) { EXPECT_EQ(s.replicas, 10000u); }},
      {"ReplicasZero", kNative + "replicas: 0\n",
       [](const AppSpec& s) { EXPECT_EQ(s.replicas, 0u); }},
      {"Placement",
       kNative + "placement:\n"
                 "  nodeSelector: {zone: a, \"example.com/tier\": edge}\n"
                 "  affinity: [db, cache]\n"
                 "  antiAffinity: [web]\n"
                 "  constraints:\n"
                 "    - {key: cpu, op: gte, value: 2}\n"
                 "    - {key: cpu, op: gte, value: 500m}\n"
                 "    - {key: memory, op: gte, value: 1Gi}\n"
                 "    - {key: gpu, op: eq, value: 1}\n"
                 "    - {key: npu, op: lte, value: 0}\n"
                 "    - {key: region, op: eq, value: eu-west}\n"
                 "    - {key: latency, op: lte, value: 50}\n"
                 "    - {key: latency, op: lte, value: 1.5s}\n"
                 "    - {key: latency, op: lte, value: 2.5}\n"
                 "  spreadAcross: zone\n"
                 "  targetRegion: eu-west-1\n",
       [](const AppSpec& s) {
         const AppPlacement& p = s.placement;
         EXPECT_EQ(p.node_selector.at("zone"), "a");
         EXPECT_EQ(p.node_selector.at("example.com/tier"), "edge");
         EXPECT_EQ(p.affinity, (std::vector<std::string>{"db", "cache"}));
         EXPECT_EQ(p.anti_affinity, std::vector<std::string>{"web"});
         ASSERT_EQ(p.constraints.size(), 9u);
         EXPECT_EQ(p.constraints[0].number, 2000);
         EXPECT_EQ(p.constraints[0].value, "2000");
         EXPECT_EQ(p.constraints[1].number, 500);
         EXPECT_EQ(p.constraints[2].number, 1024);
         EXPECT_EQ(p.constraints[3].number, 1);
         EXPECT_EQ(p.constraints[3].op, "eq");
         EXPECT_EQ(p.constraints[4].op, "lte");
         EXPECT_EQ(p.constraints[5].value, "eu-west");
         EXPECT_EQ(p.constraints[6].number, 50);
         EXPECT_EQ(p.constraints[7].number, 1500);
         EXPECT_EQ(p.constraints[8].number, 2.5);
         EXPECT_EQ(p.constraints[8].value, "2.5");
         EXPECT_EQ(p.spread_across, "zone");
         EXPECT_EQ(p.target_region, "eu-west-1");
       }},
      {"EnvConfigPortsVolumes",
       kNative + "env: {LOG_LEVEL: debug, _X1: \"8080\"}\n"
                 "config:\n"
                 "  mountPath: /etc/app\n"
                 "  files: {app.yaml: \"a: 1\\n\", sub/dir/x.json: \"{}\"}\n"
                 "ports:\n"
                 "  - {name: http, port: 8080}\n"
                 "  - {port: 8080, protocol: udp}\n"
                 "volumes:\n"
                 "  - {name: data, mountPath: /data}\n"
                 "  - {name: logs, mountPath: /var/log/app, hostPath: /var/log/x, readOnly: true}\n"
                 "network: isolated\n",
       [](const AppSpec& s) {
         EXPECT_EQ(s.env.at("LOG_LEVEL"), "debug");
         EXPECT_EQ(s.env.at("_X1"), "8080");
         EXPECT_EQ(s.config_mount, "/etc/app");
         EXPECT_EQ(s.config_files.at("app.yaml"), "a: 1\n");
         EXPECT_EQ(s.config_files.at("sub/dir/x.json"), "{}");
         ASSERT_EQ(s.ports.size(), 2u);
         EXPECT_EQ(s.ports[0], (AppPort{"http", 8080, "tcp"}));
         EXPECT_EQ(s.ports[1], (AppPort{"", 8080, "udp"}));
         ASSERT_EQ(s.volumes.size(), 2u);
         EXPECT_EQ(s.volumes[0], (AppVolume{"data", "/data", "", false}));
         EXPECT_EQ(s.volumes[1], (AppVolume{"logs", "/var/log/app", "/var/log/x", true}));
         EXPECT_TRUE(s.isolated_network);
       }},
      {"ConfigMountOnly", kNative + "config: {mountPath: /cfg}\n",
       [](const AppSpec& s) { EXPECT_EQ(s.config_mount, "/cfg"); }},
      {"HealthExec",
       kNative + "healthCheck: {exec: {command: [/bin/check, -q]}, periodSeconds: 5, "
                 "timeoutSeconds: 2, initialDelaySeconds: 30, failureThreshold: 4}\n",
       [](const AppSpec& s) {
         EXPECT_EQ(s.health.type, "exec");
         EXPECT_EQ(s.health.command, (std::vector<std::string>{"/bin/check", "-q"}));
         EXPECT_EQ(s.health.period_ms, 5000);
         EXPECT_EQ(s.health.timeout_ms, 2000);
         EXPECT_EQ(s.health.initial_delay_ms, 30'000);
         EXPECT_EQ(s.health.failure_threshold, 4u);
       }},
      {"HealthHttp", kNative + "healthCheck: {http: {path: /healthz, port: 8080}}\n",
       [](const AppSpec& s) {
         EXPECT_EQ(s.health.type, "http");
         EXPECT_EQ(s.health.path, "/healthz");
         EXPECT_EQ(s.health.port, 8080u);
         EXPECT_EQ(s.health.period_ms, 10'000);
       }},
      {"HealthHttpDefaultPath", kNative + "healthCheck: {http: {port: 80}}\n",
       [](const AppSpec& s) { EXPECT_EQ(s.health.path, "/"); }},
      {"HealthTcp", kNative + "healthCheck: {tcp: {port: 22}}\n",
       [](const AppSpec& s) {
         EXPECT_EQ(s.health.type, "tcp");
         EXPECT_EQ(s.health.port, 22u);
       }},
      {"RolloutAndReschedule",
       kNative + "rollout: {maxUnavailable: 3, progressDeadlineSeconds: 600}\n"
                 "rescheduleAfter: 10m\n",
       [](const AppSpec& s) {
         EXPECT_EQ(s.max_unavailable, 3u);
         EXPECT_EQ(s.progress_deadline_ms, 600'000);
         EXPECT_EQ(s.reschedule_after_ms, 600'000);
       }},
      {"NullMeansAbsent", kNative + "env:\nports: ~\nversion: null\n",
       [](const AppSpec& s) {
         EXPECT_TRUE(s.env.empty());
         EXPECT_TRUE(s.ports.empty());
       }},
      {"Json",
       R"({"type": "container", "image": ")" + kRef +
           R"(", "replicas": 3, "resources": {"cpu": 0.5, "memory": "1G"},
           "placement": {"spreadAcross": "region"}, "healthCheck": {"tcp": {"port": 80}}})",
       [](const AppSpec& s) {
         EXPECT_EQ(s.type, AppType::kContainer);
         EXPECT_EQ(s.replicas, 3u);
         EXPECT_EQ(s.resources.cpu_millicores, 500u);
         EXPECT_EQ(s.resources.memory_mb, 954u);
         EXPECT_EQ(s.placement.spread_across, "region");
       }},
      {"YamlFlowMapping", "{type: native, command: [x]}",
       [](const AppSpec& s) { EXPECT_EQ(s.command, std::vector<std::string>{"x"}); }},
  };
  // Every spelling of a quantity.
  const std::pair<std::string, uint64_t> cpus[] = {
      {"250m", 250},           {"0.5", 500},  {"\"0.5\"", 500}, {"2", 2000},
      {"\"2\"", 2000},         {"1.5", 1500}, {"0", 0},         {"0.001", 1},
      {"\"1000\"", 1'000'000}, {"2.0", 2000},
  };
  for (const auto& [text, want] : cpus) {
    v.push_back({"Cpu_" + std::to_string(v.size()),
                 fmt::format("{}resources: {{cpu: {}}}\n", kNative, text),
                 [want = want](const AppSpec& s) { EXPECT_EQ(s.resources.cpu_millicores, want); }});
  }
  const std::pair<std::string, uint64_t> memories[] = {
      {"64", 64},     {"\"64\"", 64},  {"64Mi", 64}, {"64M", 62},    {"1Gi", 1024},
      {"1G", 954},    {"1.5Gi", 1536}, {"1Ki", 1},   {"2048k", 2},   {"2Ti", 2097152},
      {"1T", 953675}, {"0", 0},        {"64.0", 64}, {"\"0.5\"", 1},
  };
  for (const auto& [text, want] : memories) {
    v.push_back({"Memory_" + std::to_string(v.size()),
                 fmt::format("{}resources: {{memory: {}}}\n", kNative, text),
                 [want = want](const AppSpec& s) { EXPECT_EQ(s.resources.memory_mb, want); }});
  }
  return v;
}

INSTANTIATE_TEST_SUITE_P(AppSpec, AppSpecOk, testing::ValuesIn(OkCases()),
                         [](const auto& info) { return info.param.name; });

struct ErrCase {
  std::string name;
  std::string text;
  std::vector<std::string> want;  // each a substring of the error message
  friend void PrintTo(const ErrCase& c, std::ostream* os) { *os << c.name; }
};

class AppSpecErr : public testing::TestWithParam<ErrCase> {};

TEST_P(AppSpecErr, ReportsTheProblemWithItsPath) {
  const ErrCase& c = GetParam();
  auto parsed = ParseAppSpec(c.text);
  ASSERT_FALSE(parsed.ok()) << c.text;
  EXPECT_EQ(parsed.status().code(), Code::kInvalidArgument);
  for (const auto& w : c.want) {
    EXPECT_NE(parsed.status().message().find(w), std::string::npos)
        << "want: " << w << "\ngot:  " << parsed.status().message();
  }
}

std::vector<ErrCase> ErrCases() {
  const std::string n = kNative;
  const std::string img = "type: container\nimage: " + kRef + "\n";
  const std::string fn = "type: function\nsource: x\n";
  return {
      // Syntax and shape.
      {"NotYaml", "type: [native", {"invalid app spec: not valid YAML: line"}},
      {"NotJson", "{\"type\": \"native\"", {"invalid app spec: not valid JSON:"}},
      {"Empty", "", {"spec: is required"}},
      {"NotAMapping", "- a\n- b\n", {"spec: must be a mapping"}},
      {"DuplicateKey", n + "replicas: 1\nreplicas: 2\n", {"key \"replicas\" appears twice"}},
      {"TooDeep",
       n + "env: " + std::string(40, '[') + std::string(40, ']') + "\n",
       {"nested deeper than"}},
      {"TooDeepJson",
       "{\"a\": " + std::string(40, '[') + std::string(40, ']') + "}",
       {"nested deeper than"}},
      {"AliasBomb",
       "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
       "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c]\n"
       "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e]\n",
       {"too many values"}},
      {"TooLarge", n + "source: \"" + std::string(1 << 20, 'x') + "\"\n", {"larger than"}},
      {"UnknownField", n + "replica: 2\n", {"spec: unknown field \"replica\""}},
      {"UnknownNested",
       n + "resources: {gpus: 1}\n",
       {"spec.resources: unknown field \"gpus\" (known: cpu, memory, gpu, npu)"}},
      // type and the type rules.
      {"TypeMissing", "command: [x]\n", {"spec.type: is required (native, container or function)"}},
      {"TypeBad",
       "type: vm\n",
       {"spec.type: must be one of native, container, function (not \"vm\")"}},
      {"TypeNotString", "type: 3\n", {"spec.type: must be a string (quote it in YAML: \"3\")"}},
      {"NativeNeedsCommandOrArtifact",
       "type: native\n",
       {"spec: a native app needs command or artifact"}},
      {"NativeNoImage", n + "image: " + kRef + "\n", {"spec.image: only for type container"}},
      {"NativeNoSource",
       n + "source: x\nhandler: h\nlimits: {memoryMB: 1}\n",
       {"spec.source: only for type function", "spec.handler: only for type function",
        "spec.limits: only for type function"}},
      {"ContainerNeedsImage", "type: container\n", {"spec.image: is required for a container"}},
      {"ContainerNoArtifact",
       img + "artifact: " + kRef + "\n",
       {"spec.artifact: only for type native or function"}},
      {"FunctionNeedsCode", "type: function\n", {"spec: a function needs artifact or source"}},
      {"FunctionNotBoth",
       fn + "artifact: " + kRef + "\n",
       {"spec: a function takes artifact or source, not both"}},
      {"FunctionNoCommand",
       fn + "command: [x]\nvolumes: [{name: d, mountPath: /d}]\nhealthCheck: {tcp: {port: 1}}\n",
       {"spec.command: not for type function", "spec.volumes: not for type function",
        "spec.healthCheck: not for type function"}},
      // Scalars.
      {"VersionNumber",
       n + "version: 1.2\n",
       {"spec.version: must be a string (quote it in YAML: \"1.2\")"}},
      {"VersionSpaces", n + "version: \"1 2\"\n", {"spec.version: must be at most 64 printable"}},
      {"CommandNotList", "type: native\ncommand: /bin/x\n", {"spec.command: must be a list"}},
      {"CommandEmpty", "type: native\ncommand: []\n", {"spec.command: must not be empty"}},
      {"CommandItem",
       "type: native\ncommand: [/bin/x, 3, {a: b}]\n",
       {"spec.command[1]: must be a string (quote it in YAML: \"3\")",
        "spec.command[2]: must be a string"}},
      {"CommandProgramEmpty",
       "type: native\ncommand: [\"\"]\n",
       {"spec.command[0]: must name the program to run"}},
      {"ArtifactBad",
       "type: native\nartifact: sha256:xyz\n",
       {"spec.artifact: \"sha256:xyz\" must be \"sha256:\" and 64 lowercase hex digits"}},
      {"ImageUppercase",
       "type: container\nimage: sha256:" + std::string(64, 'A') + "\n",
       {"spec.image: \"sha256:AAAA", "an uploaded image"}},
      {"HandlerBad", fn + "handler: 1abc\n", {"spec.handler: \"1abc\" is not a Lua function name"}},
      {"LimitsBad",
       fn + "limits: {instructions: 10, memoryMB: 0, cpu: 1}\n",
       {"spec.limits.instructions: must be between 1000 and",
        "spec.limits.memoryMB: must be "
        "between 1 and 4096",
        "spec.limits: unknown field \"cpu\""}},
      {"SourceEmpty", "type: function\nsource: \"\"\n", {"spec.source: must be 1 to"}},
      // Resources.
      {"CpuUnit",
       n + "resources: {cpu: 250x}\n",
       {"spec.resources.cpu: must be a CPU quantity: \"250m\" (millicores)"}},
      {"CpuNegative", n + "resources: {cpu: -1}\n", {"spec.resources.cpu: must not be negative"}},
      {"CpuNegativeFloat",
       n + "resources: {cpu: -0.5}\n",
       {"spec.resources.cpu: must not be negative"}},
      {"CpuTooFine",
       n + "resources: {cpu: 0.0005}\n",
       {"spec.resources.cpu: must be a whole number of millicores"}},
      {"CpuFractionalMilli",
       n + "resources: {cpu: 1.5m}\n",
       {"spec.resources.cpu: millicores must be a whole number"}},
      {"CpuTooMany",
       n + "resources: {cpu: 1001}\n",
       {"spec.resources.cpu: must be at most 1000 cores"}},
      {"CpuTooManyMilli",
       n + "resources: {cpu: 1000001m}\n",
       {"spec.resources.cpu: must be at most 1000 cores"}},
      {"CpuBool", n + "resources: {cpu: true}\n", {"spec.resources.cpu: must be a CPU quantity"}},
      {"CpuExponent", n + "resources: {cpu: 1e-9}\n", {"spec.resources.cpu: must be at least 1m"}},
      {"MemoryAmbiguous",
       n + "resources: {memory: 64MB}\n",
       {"spec.resources.memory: \"MB\" is ambiguous: write \"Mi\" (2^20 bytes) or \"M\""}},
      {"MemoryUnit",
       n + "resources: {memory: 64Xi}\n",
       {"spec.resources.memory: must be a memory quantity: 64 (MB), \"64Mi\""}},
      {"MemoryFraction",
       n + "resources: {memory: 1.5}\n",
       {"spec.resources.memory: a plain number is whole MB"}},
      {"MemoryNegative",
       n + "resources: {memory: -1}\n",
       {"spec.resources.memory: must not be negative"}},
      {"MemoryTooMuch",
       n + "resources: {memory: 17Ti}\n",
       {"spec.resources.memory: must be at most 16Ti"}},
      {"MemoryNoNumber",
       n + "resources: {memory: Mi}\n",
       {"spec.resources.memory: must be a memory quantity"}},
      {"GpuNegative",
       n + "resources: {gpu: -1, npu: \"1\"}\n",
       {"spec.resources.gpu: must be between 0 and 1024",
        "spec.resources.npu: must be an integer"}},
      {"ResourcesNotMap", n + "resources: 1\n", {"spec.resources: must be a mapping"}},
      {"ReplicasTooMany", n + "replicas: 10001\n", {"spec.replicas: must be between 0 and 10000"}},
      {"ReplicasNegative", n + "replicas: -1\n", {"spec.replicas: must be between 0 and 10000"}},
      {"ReplicasFraction", n + "replicas: 1.5\n", {"spec.replicas: must be an integer"}},
      {"ReplicasString", n + "replicas: \"3\"\n", {"spec.replicas: must be an integer"}},
      {"ReplicasHuge", n + "replicas: 99999999999999999999\n", {"spec.replicas: must be"}},
      // Placement.
      {"SelectorValueNotString",
       n + "placement: {nodeSelector: {zone: 1}}\n",
       {"spec.placement.nodeSelector.zone: must be a string (quote it in YAML: \"1\")"}},
      {"SelectorBadLabel",
       n + "placement: {nodeSelector: {\"-x\": a}}\n",
       {"spec.placement.nodeSelector: label key \"-x\""}},
      {"AffinityBadName",
       n + "placement: {affinity: [Web, ok]}\n",
       {"spec.placement.affinity[0]: \"Web\" is not an app name"}},
      {"AffinityTwice",
       n + "placement: {antiAffinity: [a, a]}\n",
       {"spec.placement.antiAffinity[1]: \"a\" is listed twice"}},
      {"AffinityBoth",
       n + "placement: {affinity: [a], antiAffinity: [a]}\n",
       {"spec.placement: app \"a\" is in both affinity and antiAffinity"}},
      {"AffinityNotList",
       n + "placement: {affinity: a}\n",
       {"spec.placement.affinity: must be a list"}},
      {"ConstraintMissing",
       n + "placement: {constraints: [{}]}\n",
       {"spec.placement.constraints[0].key: is required",
        "spec.placement.constraints[0].op: is required",
        "spec.placement.constraints[0].value: is required"}},
      {"ConstraintBadKeyOp",
       n + "placement: {constraints: [{key: disk, op: gt, value: 1}]}\n",
       {"spec.placement.constraints[0].key: must be one of cpu, memory, gpu, npu, region, "
        "latency (not \"disk\")",
        "spec.placement.constraints[0].op: must be one of gte, lte, eq (not \"gt\")"}},
      {"ConstraintRegionOp",
       n + "placement: {constraints: [{key: region, op: gte, value: x}]}\n",
       {"spec.placement.constraints[0].op: region takes only eq"}},
      {"ConstraintRegionValue",
       n + "placement: {constraints: [{key: region, op: eq, value: \"eu west\"}]}\n",
       {"spec.placement.constraints[0].value: \"eu west\" is not a region name"}},
      {"ConstraintCpuValue",
       n + "placement: {constraints: [{key: cpu, op: gte, value: abc}]}\n",
       {"spec.placement.constraints[0].value: must be a CPU quantity"}},
      {"ConstraintMemoryValue",
       n + "placement: {constraints: [{key: memory, op: gte, value: 1GB}]}\n",
       {"spec.placement.constraints[0].value: \"GB\" is ambiguous"}},
      {"ConstraintGpuValue",
       n + "placement: {constraints: [{key: gpu, op: gte, value: -2}]}\n",
       {"spec.placement.constraints[0].value: must be between 0 and 1024"}},
      {"ConstraintLatencyValue",
       n + "placement: {constraints: [{key: latency, op: lte, value: fast}]}\n",
       {"spec.placement.constraints[0].value: must be milliseconds (50) or a duration"}},
      {"ConstraintNotMapping",
       n + "placement: {constraints: [cpu]}\n",
       {"spec.placement.constraints[0]: must be a mapping {key, op, value}"}},
      {"ConstraintUnknownField",
       n + "placement: {constraints: [{key: gpu, op: eq, value: 1, hard: true}]}\n",
       {"spec.placement.constraints[0]: unknown field \"hard\""}},
      {"SpreadBad",
       n + "placement: {spreadAcross: rack}\n",
       {"spec.placement.spreadAcross: must be one of region, zone (not \"rack\")"}},
      {"TargetRegionBad",
       n + "placement: {targetRegion: \"eu west\"}\n",
       {"spec.placement.targetRegion: \"eu west\" is not a region name"}},
      {"PlacementUnknown",
       n + "placement: {nodeSelecter: {}}\n",
       {"spec.placement: unknown field \"nodeSelecter\""}},
      // env and config.
      {"EnvBadName",
       n + "env: {1X: a, A-B: b}\n",
       {"spec.env: \"1X\" is not a variable name", "spec.env: \"A-B\" is not a variable name"}},
      {"EnvValueNumber",
       n + "env: {PORT: 8080}\n",
       {"spec.env.PORT: must be a string (quote it in YAML: \"8080\")"}},
      {"EnvNotMap", n + "env: [a]\n", {"spec.env: must be a mapping"}},
      {"ConfigMountRelative",
       n + "config: {mountPath: config}\n",
       {"spec.config.mountPath: must be an absolute path"}},
      {"ConfigMountDotDot",
       n + "config: {mountPath: /a/../b}\n",
       {"spec.config.mountPath: must not contain \".\" or \"..\" parts"}},
      {"ConfigFileNames",
       n + "config: {files: {../x: a, /etc/x: b, a//b: c, a/./b: d, \"\": e, ok: 1}}\n",
       {"spec.config.files: \"../x\": must not contain \".\" or \"..\" parts",
        "spec.config.files: \"/etc/x\": must be a relative path",
        "spec.config.files: \"a//b\": must not contain empty parts",
        "spec.config.files: \"a/./b\": must not contain",
        "spec.config.files: \"\": must not be empty",
        "spec.config.files.ok: must be a string (the file's content)"}},
      {"ConfigUnknown", n + "config: {path: /x}\n", {"spec.config: unknown field \"path\""}},
      // Ports and volumes.
      {"PortRange",
       n + "ports: [{port: 0}, {port: 70000}]\n",
       {"spec.ports[0].port: must be between 1 and 65535",
        "spec.ports[1].port: must be between 1 and 65535"}},
      {"PortTwice",
       n + "ports: [{port: 80}, {port: 80, protocol: tcp}]\n",
       {"spec.ports[1].port: 80/tcp is listed twice"}},
      {"PortProtocol",
       n + "ports: [{port: 80, protocol: sctp}]\n",
       {"spec.ports[0].protocol: must be one of tcp, udp (not \"sctp\")"}},
      {"PortName",
       n + "ports: [{name: HTTP, port: 80}, {name: a, port: 1}, {name: a, port: 2}]\n",
       {"spec.ports[0].name: \"HTTP\" must be 1-15 characters of [a-z0-9-]",
        "spec.ports[2].name: \"a\" is listed twice"}},
      {"PortMissing", n + "ports: [{name: web}]\n", {"spec.ports[0].port: is required"}},
      {"PortNotMapping", n + "ports: [8080]\n", {"spec.ports[0]: must be a mapping"}},
      {"VolumeMountRelative",
       n + "volumes: [{name: d, mountPath: data}]\n",
       {"spec.volumes[0].mountPath: must be an absolute path"}},
      {"VolumeHostPath",
       n + "volumes: [{name: d, mountPath: /d, hostPath: /x/../etc}]\n",
       {"spec.volumes[0].hostPath: must not contain \".\" or \"..\" parts"}},
      {"VolumeTwice",
       n + "volumes: [{name: d, mountPath: /d}, {name: d, mountPath: /d}]\n",
       {"spec.volumes[1].name: \"d\" is listed twice",
        "spec.volumes[1].mountPath: \"/d\" is mounted twice"}},
      {"VolumeRequired",
       n + "volumes: [{readOnly: yes}]\n",
       {"spec.volumes[0].name: is required", "spec.volumes[0].mountPath: is required",
        "spec.volumes[0].readOnly: must be true or false"}},
      {"VolumeOnConfig",
       n + "volumes: [{name: d, mountPath: /config}]\n",
       {"spec.volumes[0].mountPath: \"/config\" is where config is mounted"}},
      {"NetworkBad",
       n + "network: bridge\n",
       {"spec.network: must be one of host, isolated (not \"bridge\")"}},
      // Health check, rollout, rescheduleAfter.
      {"HealthNone",
       n + "healthCheck: {periodSeconds: 5}\n",
       {"spec.healthCheck: needs one of exec, http or tcp"}},
      {"HealthTwo",
       n + "healthCheck: {exec: {command: [x]}, http: {port: 80}}\n",
       {"spec.healthCheck: has exec, http: give exactly one of exec, http or tcp"}},
      {"HealthHttpPort",
       n + "healthCheck: {http: {path: healthz}}\n",
       {"spec.healthCheck.http.path: must start with /",
        "spec.healthCheck.http.port: is required"}},
      {"HealthTcpPort",
       n + "healthCheck: {tcp: {port: 0}}\n",
       {"spec.healthCheck.tcp.port: must be between 1 and 65535"}},
      {"HealthExecCommand",
       n + "healthCheck: {exec: {}}\n",
       {"spec.healthCheck.exec.command: is required"}},
      {"HealthTimes",
       n + "healthCheck: {tcp: {port: 1}, periodSeconds: 0, timeoutSeconds: 3601, "
           "initialDelaySeconds: -1, failureThreshold: 0}\n",
       {"spec.healthCheck.periodSeconds: must be between 1 and 86400",
        "spec.healthCheck.timeoutSeconds: must be between 1 and 3600",
        "spec.healthCheck.initialDelaySeconds: must be between 0 and 86400",
        "spec.healthCheck.failureThreshold: must be between 1 and 1000"}},
      {"RolloutBad",
       n + "rollout: {maxUnavailable: 0, progressDeadlineSeconds: 0}\n",
       {"spec.rollout.maxUnavailable: must be between 1 and 10000",
        "spec.rollout.progressDeadlineSeconds: must be between 1 and 86400"}},
      {"RescheduleBad", n + "rescheduleAfter: 10x\n", {"spec.rescheduleAfter: "}},
      {"RescheduleZero",
       n + "rescheduleAfter: 0s\n",
       {"spec.rescheduleAfter: must be longer than 0s"}},
      {"RescheduleNumber",
       n + "rescheduleAfter: 600\n",
       {"spec.rescheduleAfter: must be a string (quote it in YAML: \"600\")"}},
      // Everything at once.
      {"AllAtOnce",
       "type: native\nreplicas: -1\nresources: {cpu: x}\nports: [{port: 0}]\n",
       {"spec: a native app needs command or artifact",
        "spec.replicas:", "spec.resources.cpu:", "spec.ports[0].port:"}},
  };
}

INSTANTIATE_TEST_SUITE_P(AppSpec, AppSpecErr, testing::ValuesIn(ErrCases()),
                         [](const auto& info) { return info.param.name; });

TEST(AppSpec, YamlAndJsonGiveTheSameSpec) {
  AppSpec from_yaml = MustParse(
      "type: native\ncommand: [/bin/x, \"1\"]\nreplicas: 2\n"
      "resources: {cpu: 1.5, memory: 2Gi}\n"
      "placement: {nodeSelector: {zone: a}, constraints: [{key: latency, op: lte, value: 20}]}\n");
  AppSpec from_json = MustParse(
      R"({"type":"native","command":["/bin/x","1"],"replicas":2,
          "resources":{"cpu":"1500m","memory":2048},
          "placement":{"nodeSelector":{"zone":"a"},
                       "constraints":[{"key":"latency","op":"lte","value":"20ms"}]}})");
  EXPECT_EQ(from_yaml, from_json);
}

TEST(AppSpec, JsonKeepsQuotedAndPlainApart) {
  // In YAML an unquoted 2 is a number and "2" a string; JSON says so itself.
  EXPECT_FALSE(ParseAppSpec(R"({"type":"native","command":["x"],"replicas":"2"})").ok());
  EXPECT_TRUE(ParseAppSpec(R"({"type":"native","command":["x"],"replicas":2})").ok());
  EXPECT_FALSE(ParseAppSpec("type: native\ncommand: [x]\nreplicas: '2'\n").ok());
}

TEST(AppSpec, CanonicalJsonIsSortedAndOmitsWhatIsNotSet) {
  std::string j = AppSpecToJson(MustParse(kNative));
  EXPECT_EQ(j, R"({"command":["/bin/app"],"network":"host","replicas":1,)"
               R"("resources":{"cpu":"0m","gpu":0,"memory":0,"npu":0},)"
               R"("rollout":{"maxUnavailable":1,"progressDeadlineSeconds":120},"type":"native"})");
}

TEST(ArtifactRef, AcceptsOnlyLowercaseSha256) {
  EXPECT_EQ(ParseArtifactRef(kRef), kHash);
  EXPECT_EQ(ParseArtifactRef("sha256:" + std::string(64, '0')), std::string(64, '0'));
  EXPECT_FALSE(ParseArtifactRef("sha256:" + std::string(63, 'a')));
  EXPECT_FALSE(ParseArtifactRef("sha256:" + std::string(65, 'a')));
  EXPECT_FALSE(ParseArtifactRef("sha256:" + std::string(64, 'A')));
  EXPECT_FALSE(ParseArtifactRef("sha256:" + std::string(63, 'a') + "g"));
  EXPECT_FALSE(ParseArtifactRef("sha512:" + kHash));
  EXPECT_FALSE(ParseArtifactRef(kHash));
  EXPECT_FALSE(ParseArtifactRef(""));
}

TEST(AppSpec, AppNames) {
  EXPECT_TRUE(IsValidAppName("a"));
  EXPECT_TRUE(IsValidAppName("web-1"));
  EXPECT_TRUE(IsValidAppName(std::string(63, 'a')));
  EXPECT_FALSE(IsValidAppName(std::string(64, 'a')));
  EXPECT_FALSE(IsValidAppName(""));
  EXPECT_FALSE(IsValidAppName("-a"));
  EXPECT_FALSE(IsValidAppName("a-"));
  EXPECT_FALSE(IsValidAppName("A"));
  EXPECT_FALSE(IsValidAppName("a_b"));
  EXPECT_FALSE(IsValidAppName("a.b"));
}

}  // namespace
}  // namespace verge::cloud
