// zstd compression for uplink batches and stored telemetry chunks.
// Thread-safety: the free functions are thread-safe (each call has its own context).
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"

namespace verge {

// level: 1 (fast) .. 19 (small); 3 is zstd's default and a good fit for link batches.
Result<std::string> ZstdCompress(std::string_view data, int level = 3);

// Refuses output larger than max_size (a frame from the network must not balloon the heap).
Result<std::string> ZstdDecompress(std::string_view data, size_t max_size);

}  // namespace verge
