#include "node/runtime/internal.h"

#include <fmt/format.h>

#include <cstdlib>
#include <cstring>
#include <string_view>

#include "common/fs.h"

namespace verge::node::runtime {

std::optional<ExitRecord> ReadExitRecord(const std::string& dir) {
  auto text = ReadFile(dir + "/exit");
  if (!text.ok()) return std::nullopt;
  ExitRecord rec;
  bool any = false;
  size_t start = 0;
  while (start < text->size()) {
    size_t end = text->find('\n', start);
    if (end == std::string::npos) end = text->size();
    std::string_view line = std::string_view(*text).substr(start, end - start);
    start = end + 1;
    size_t eq = line.find('=');
    if (eq == std::string_view::npos) continue;
    std::string_view key = line.substr(0, eq);
    std::string value(line.substr(eq + 1));
    if (key == "message") {
      rec.message = value;
      continue;
    }
    char* endp = nullptr;
    long long v = std::strtoll(value.c_str(), &endp, 10);
    if (endp == value.c_str() || *endp != '\0') continue;
    if (key == "code") {
      rec.code = static_cast<int>(v);
      any = true;
    } else if (key == "signal") {
      rec.signal = static_cast<int>(v);
      any = true;
    } else if (key == "oom_kills") {
      rec.oom_kills = v > 0 ? static_cast<uint64_t>(v) : 0;
    }
  }
  if (!any) return std::nullopt;
  return rec;
}

std::string SignalName(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  return abbrev != nullptr ? fmt::format("SIG{}", abbrev) : fmt::format("signal {}", sig);
}

void DescribeExit(ExitInfo& info) {
  if (info.message.empty()) {
    info.message = info.signal > 0 ? fmt::format("killed by {}", SignalName(info.signal))
                                   : fmt::format("exit code {}", info.exit_code);
  }
  if (info.oom_killed) info.message += " (out of memory)";
}

}  // namespace verge::node::runtime
