// The cloud's config-file parser and validation: any bytes give a Status, never a crash.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "cloud/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  verge::cloud::CloudConfig cfg;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  if (verge::cloud::CloudConfigSchema().Parse(text, cfg, "fuzz").ok()) {
    (void)verge::cloud::ValidateCloudConfig(cfg);
    (void)verge::cloud::CloudConfigSchema().Print(cfg);
  }
  return 0;
}
