// Logging setup for the daemons: spdlog to stderr, one line per event, with the level the
// user chose. Thread-safety: call once from main before starting threads.
#pragma once

#include <string>

#include "common/status.h"

namespace verge {

Status SetupLogging(const std::string& level);

// Blocks SIGINT/SIGTERM/SIGHUP in the calling thread (and the threads it starts later) and
// ignores SIGPIPE; WaitForStopSignal then returns the first of them that arrives.
void PrepareSignals();
int WaitForStopSignal();

}  // namespace verge
