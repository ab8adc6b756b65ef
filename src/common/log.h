// Logging setup for the daemons: spdlog to stderr, one line per event, with the level the
// user chose. Thread-safety: call once from main before starting threads.
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"

namespace verge {

Status SetupLogging(const std::string& level);
// True for the levels both daemons accept: trace, debug, info, warn, error.
bool IsLogLevel(std::string_view level);

// Blocks SIGINT/SIGTERM/SIGHUP in the calling thread (and the threads it starts later) and
// ignores SIGPIPE; WaitForStopSignal then returns the first of them that arrives.
void PrepareSignals();
int WaitForStopSignal();

}  // namespace verge
