// The node's config-file parser, label lists and durations.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "common/bootstrap_token.h"
#include "common/duration.h"
#include "node/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  verge::node::NodeConfig cfg;
  if (verge::node::NodeConfigSchema().Parse(text, cfg, "fuzz").ok()) {
    (void)verge::node::ValidateNodeConfig(cfg);
  }
  (void)verge::node::ParseLabelList(text);
  (void)verge::ParseDuration(text);
  (void)verge::ParseBootstrapToken(text);
  return 0;
}
