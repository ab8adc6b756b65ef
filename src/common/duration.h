// Durations as users write them in flags and config files: "500ms", "3s", "90s", "5m", "24h",
// and compounds such as "1h30m". Thread-safety: pure functions.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "common/status.h"

namespace verge {

using Millis = std::chrono::milliseconds;

// Accepts one or more <non-negative integer or decimal><unit> parts, unit in ms|s|m|h|d.
Result<Millis> ParseDuration(std::string_view text);

// The shortest exact spelling: 1500ms -> "1500ms", 90000ms -> "90s", 300000ms -> "5m".
std::string FormatDuration(Millis d);

}  // namespace verge
