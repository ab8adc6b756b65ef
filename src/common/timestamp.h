// Timestamps as people and APIs write them: RFC 3339 text for output, and the forms a query
// accepts for its time range. Shared by the cloud's telemetry API and the node's local API.
// Thread-safety: free functions, thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

namespace verge {

// RFC 3339 UTC with as many fraction digits as the value needs (none for whole seconds).
std::string FormatTimeNs(int64_t ns);

// A time argument: RFC 3339 (any fraction digits, Z or an offset), epoch milliseconds (digits
// only), "now", or a duration meaning that long ago ("1h", "-1h", "90s"). Never overflows.
Result<int64_t> ParseTimeArg(std::string_view text, int64_t now_ns);

}  // namespace verge
