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

// Parses an RFC 3339 date-time into Unix nanoseconds: "2026-11-21T10:00:00Z",
// "2026-11-21T10:00:00.123456789+01:00". Accepts "t" or a space for "T" and "z" for "Z"
// (RFC 3339 section 5.6 allows both); requires seconds and a zone; keeps up to nine fraction
// digits and ignores the rest; a leap second (:60) counts as the first second of the next
// minute. The error says what is wrong.
Result<int64_t> ParseRfc3339(std::string_view text);

// A time argument: RFC 3339 (any fraction digits, Z or an offset), epoch milliseconds (digits
// only), "now", or a duration meaning that long ago ("1h", "-1h", "90s"). Never overflows.
Result<int64_t> ParseTimeArg(std::string_view text, int64_t now_ns);

}  // namespace verge
