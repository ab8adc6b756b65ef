#include "common/clock.h"

#include <fmt/format.h>

#include <ctime>
#include <string>

namespace verge {

std::string FormatTimeMs(int64_t wall_ms) {
  if (wall_ms <= 0) return "";
  time_t secs = static_cast<time_t>(wall_ms / 1000);
  struct tm tm {};
  gmtime_r(&secs, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, wall_ms % 1000);
}

}  // namespace verge
