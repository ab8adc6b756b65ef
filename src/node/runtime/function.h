// FunctionRuntime: runs function apps (Kind::kFunction), Lua 5.4 scripts that turn one event
// into zero or more output rows, inside the node process. Start loads the script
// (WorkloadSpec::artifact) and calls its `init()` once if it defines one; Call runs the handler
// (WorkloadSpec::handler, "handle" by default) on one event. Rules reach it through their
// `function` action (docs/rules.md), the local API directly.
//
// The handler receives the event as a table and returns a table (one output row), nil (none)
// or an array of tables (one row each). Values cross as JSON does: objects are tables with
// string keys, arrays are sequences (marked, so that an empty array comes back as []), null is
// nil, numbers stay integers or floats, NaN and infinities come back as null. An empty table
// is an empty object (or, returned by the handler, no rows). Tables nested deeper than
// kMaxDepth, cycles, functions and strings that are not UTF-8 cannot be returned.
//
// Sandbox. Every Lua state has only the safe libraries: base (without dofile, loadfile and
// collectgarbage; `load` takes text chunks only; setmetatable refuses __gc, so no Lua code runs
// outside a call), string, table, math, utf8, coroutine, and `os` with only time and clock. No
// io, package, require or debug. `print` appends a line to DIR/log/output.log (the app's log).
// Per call: at most max_instructions Lua instructions (a count hook aborts the call with
// "instruction limit exceeded"; the state stays usable) and function_memory_mb of Lua memory
// per state (an allocator that refuses beyond it: "memory limit exceeded"; a state still full
// after a garbage collection is closed and a fresh one loaded). The top-level code of the
// script and init() run under the same limits. Not bounded: the time spent in one library call
// written in C (a pathological string.find pattern on a large string).
//
// Concurrency. A lua_State runs one call at a time. Each function keeps a pool of up to
// max_states_per_function states: a call borrows an idle one, a new one is loaded (script and
// init()) when all are busy, and beyond the maximum the call waits for one. So calls from the
// rules' action threads and the local API run in parallel, and globals a handler keeps persist
// between calls on the same state but are not shared between states: a handler that counts
// across calls needs max_states_per_function = 1.
//
// Nothing outlives the agent: Adopt is false, and the AppManager starts the function again.
//
// Thread-safety: thread-safe. The AppManager calls Start/Stop/Poll from its thread; Call and
// Stats from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <shared_mutex>
#include <string>
#include <vector>

#include "common/status.h"
#include "node/runtime/runtime.h"

namespace verge::node::runtime {

struct FunctionRuntimeOptions {
  // Lua states per loaded function: how many calls of one function run at once.
  size_t max_states_per_function = 4;
  // The largest script accepted.
  size_t max_script_bytes = 4 << 20;
};

// What one loaded function did, for status.
struct FunctionStats {
  std::string id;
  std::string app;
  uint64_t calls = 0;
  uint64_t errors = 0;  // calls that failed (handler error, a limit, unconvertible result)
  std::string last_error;
  uint64_t total_call_ns = 0;  // wall time spent in calls, waiting for a state included
  double avg_call_us = 0;
  uint64_t memory_bytes = 0;  // Lua memory in use, all states
  size_t states = 0;          // Lua states loaded
};

class FunctionRuntime : public Runtime {
 public:
  // Nesting depth of tables (and JSON) that cross a call.
  static constexpr int kMaxDepth = 64;

  explicit FunctionRuntime(FunctionRuntimeOptions options = {});
  ~FunctionRuntime() override;
  FunctionRuntime(const FunctionRuntime&) = delete;
  FunctionRuntime& operator=(const FunctionRuntime&) = delete;

  Kind kind() const override { return Kind::kFunction; }
  Status Available() const override { return Status::Ok(); }
  // Loads spec.artifact and runs its top level and init(). kInvalidArgument with the script's
  // line for syntax and load errors. Starting an id that is loaded replaces it once the new
  // script has loaded (on failure the old one keeps running).
  Result<Handle> Start(const WorkloadSpec& spec) override;
  // Unloads; calls in progress end with "function stopped". Ok if it was not loaded.
  Status Stop(const Handle& h, std::chrono::milliseconds grace) override;
  // Running while loaded; after the agent restarted (or once its states could not be
  // reloaded) it is not, and the exit says why.
  Result<Observed> Poll(const Handle& h) override;
  Result<bool> Adopt(const Handle& h) override;
  // memory_bytes: Lua memory of all its states; memory_limit_bytes: the limit per state times
  // the states loaded; cpu_usage_ns: wall time spent in calls.
  Result<Usage> GetUsage(const Handle& h) override;
  // kFailedPrecondition: functions have no exec probe.
  Result<int> Exec(const Handle& h, const std::vector<std::string>& argv,
                   std::chrono::milliseconds timeout) override;

  // Runs the handler of app `app` on `event` (a JSON object, or any JSON value) and returns
  // its rows: none for nil, one for a table, one per element for an array of tables. With
  // several replicas of the app on the node, calls take turns.
  // kUnavailable "function APP is not running on this node" (or stopped while waiting);
  // kResourceExhausted: the instruction or memory limit; kInvalidArgument: the handler raised
  // an error (its message, with the script's line), or its result cannot become rows.
  Result<std::vector<nlohmann::json>> Call(const std::string& app, const nlohmann::json& event);

  // By workload id; kNotFound when not loaded.
  Result<FunctionStats> Stats(const std::string& id) const;
  std::vector<FunctionStats> AllStats() const;

 private:
  class Function;  // one loaded function and its pool of Lua states (function.cc)

  std::shared_ptr<Function> FindApp(const std::string& app);

  const FunctionRuntimeOptions options_;
  mutable std::shared_mutex mu_;
  std::map<std::string, std::shared_ptr<Function>> by_id_;  // GUARDED_BY(mu_)
  std::map<std::string, std::vector<std::shared_ptr<Function>>, std::less<>>
      by_app_;  // GUARDED_BY(mu_)
  std::atomic<uint64_t> turn_{0};
};

}  // namespace verge::node::runtime
